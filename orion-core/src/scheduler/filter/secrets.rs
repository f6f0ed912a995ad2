//! Secrets: a job that uses secrets runs only where they can be opened.

use super::Filter;
use crate::scheduler::candidate::{Ask, Candidate};
use crate::scheduler::explain::Reason;

/// Rejects every node when one of the job's secrets does not exist, and
/// nodes that do not hold the data key its secrets are sealed under (none, or
/// another): there the task could not be given them.
#[derive(Debug, Default)]
pub struct SecretFilter;

impl Filter for SecretFilter {
    fn name(&self) -> &'static str {
        "secrets"
    }

    fn check(&self, c: &Candidate<'_>, ask: &Ask<'_>) -> Result<(), Reason> {
        match &ask.secrets {
            None => Ok(()),
            Some(Err(_)) => Err(Reason::Secret),
            Some(Ok(key)) => match c.node.info.data_key_id.as_deref() {
                Some(held) if held == key => Ok(()),
                Some(_) => Err(Reason::OtherDataKey),
                None => Err(Reason::NoDataKey),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::command::{Command, SlotRef};
    use crate::scheduler::{FilterScoreScheduler, Scheduler};
    use crate::secret::{seal, DataKey, Plaintext};
    use crate::testing::fixtures::{job, node, StateBuilder};

    fn slot(job: &str) -> Vec<SlotRef> {
        vec![SlotRef {
            job: job.into(),
            version: 1,
            slot: 0,
            existing: None,
            replaces: None,
            pin: None,
        }]
    }

    fn put(b: &mut StateBuilder, key: &DataKey, name: &str) {
        let value = Plaintext::new(b"v".to_vec());
        b.apply(Command::PutSecret {
            name: name.into(),
            version: seal(key, name, 1, &value, 0),
        });
    }

    /// A job whose secret is missing is placed nowhere and says which one; a
    /// job whose secrets exist goes only to nodes holding their data key.
    #[test]
    fn secrets_must_exist_and_their_key_be_on_the_node() {
        let key = DataKey::generate();
        let mut keyed = node("keyed", 1.0, 1024);
        keyed.data_key_id = Some(key.id());
        let mut other = node("other", 8.0, 16_384);
        other.data_key_id = Some(DataKey::generate().id());
        let bare = node("bare", 8.0, 16_384);
        let mut b = StateBuilder::new().node(keyed).node(other).node(bare);
        put(&mut b, &key, "db");
        let s = b
            .job(job("api", 1, 0.5, 256).secret("db"))
            .job(
                job("lost", 1, 0.5, 256)
                    .secret("db")
                    .env_from_secret("T", "nope"),
            )
            .job(job("plain", 1, 0.5, 256))
            .build();
        let run = |j: &str| FilterScoreScheduler::default().schedule(&s, &slot(j), &[], 7);
        let out = run("api");
        assert_eq!(out.placements.len(), 1, "{:?}", out.unplaced);
        assert_eq!(
            out.placements[0].node, "keyed",
            "binpack alone would choose a big one"
        );
        let out = run("lost");
        assert_eq!(
            out.unplaced[0].reason,
            "0/3 nodes: 3 secret nope does not exist"
        );
        assert_eq!(run("plain").placements.len(), 1);

        let mut b = StateBuilder::new().node(node("bare", 8.0, 16_384)).node({
            let mut n = node("other", 8.0, 16_384);
            n.data_key_id = Some(DataKey::generate().id());
            n
        });
        put(&mut b, &key, "db");
        let s = b.job(job("api", 1, 0.5, 256).secret("db")).build();
        let out = FilterScoreScheduler::default().schedule(&s, &slot("api"), &[], 7);
        let why = &out.unplaced[0].reason;
        assert!(
            why.contains("1 no data key on node") && why.contains("1 another data key on node"),
            "{why}"
        );
        assert_eq!(crate::metrics::unplaced_reason(why), "secret");
    }
}
