//! Secrets in the state machine: sealed versions written and forgotten (see
//! [`crate::secret`]).

use super::{Change, ClusterState};
use crate::command::{Refusal, Response};
use crate::model::JobStatus;
use crate::secret::{Secret, SecretVersion, KEPT_SECRET_VERSIONS};

impl ClusterState {
    /// Takes version `v` of secret `name` when it is the next one; answers
    /// the same version with the same ciphertext as done (a retried
    /// proposal), and refuses anything else.
    pub(super) fn put_secret(
        &mut self,
        index: u64,
        name: &str,
        v: &SecretVersion,
        changes: &mut Vec<Change>,
    ) -> Response {
        let current = self.secrets.get(name).map_or(0, Secret::version);
        if v.version != current + 1 {
            let kept = self
                .secrets
                .get(name)
                .is_some_and(|s| s.versions.iter().any(|k| k == v));
            if kept {
                return Response::Done;
            }
            return Response::Refused {
                refusal: Refusal::Stale,
                reason: format!(
                    "secret {name:?} is at version {current}; this write was sealed as version {}: write it again",
                    v.version
                ),
            };
        }
        let secret = self
            .secrets
            .entry(name.to_string())
            .or_insert_with(|| Secret {
                name: name.to_string(),
                versions: Vec::new(),
                created_ms: v.created_ms,
                create_index: index,
                modify_index: index,
            });
        secret.versions.push(v.clone());
        let excess = secret.versions.len().saturating_sub(KEPT_SECRET_VERSIONS);
        secret.versions.drain(..excess);
        secret.modify_index = index;
        changes.push(Change::Secret { name: name.into() });
        Response::Done
    }

    /// Forgets secret `name`, unless a running job uses it.
    pub(super) fn delete_secret(&mut self, name: &str, changes: &mut Vec<Change>) -> Response {
        if !self.secrets.contains_key(name) {
            return Response::Refused {
                refusal: Refusal::UnknownSecret,
                reason: format!("no secret named {name:?}"),
            };
        }
        let users = self.secret_users(name);
        if !users.is_empty() {
            return Response::Refused {
                refusal: Refusal::Conflict,
                reason: format!(
                    "secret {name:?} is used by job {}: stop it first",
                    users.join(", ")
                ),
            };
        }
        self.secrets.remove(name);
        changes.push(Change::Secret { name: name.into() });
        Response::Done
    }

    /// The running jobs whose task uses secret `name`.
    pub fn secret_users(&self, name: &str) -> Vec<&str> {
        self.jobs
            .values()
            .filter(|j| j.status == JobStatus::Running)
            .filter(|j| j.spec.task.secret_names().contains(name))
            .map(|j| j.spec.name.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::secret::{seal, DataKey, Plaintext};
    use crate::spec::JobSpec;

    fn put(s: &mut ClusterState, index: u64, name: &str, v: &SecretVersion) -> Response {
        s.apply(
            index,
            &Command::PutSecret {
                name: name.into(),
                version: v.clone(),
            },
        )
        .0
    }

    fn sealed(key: &DataKey, name: &str, version: u64) -> SecretVersion {
        let value = Plaintext::new(format!("value {version}").into_bytes());
        seal(key, name, version, &value, version * 10)
    }

    #[test]
    fn versions_follow_each_other_and_the_last_five_are_kept() {
        let key = DataKey::generate();
        let mut s = ClusterState::default();
        for n in 1..=7 {
            let (r, changes) = s.apply(
                n,
                &Command::PutSecret {
                    name: "db".into(),
                    version: sealed(&key, "db", n),
                },
            );
            assert_eq!(r, Response::Done, "version {n}");
            assert_eq!(changes, [Change::Secret { name: "db".into() }]);
        }
        let db = &s.secrets["db"];
        assert_eq!(db.version(), 7);
        let kept: Vec<u64> = db.versions.iter().map(|v| v.version).collect();
        assert_eq!(kept, [3, 4, 5, 6, 7]);
        assert_eq!(
            (db.created_ms, db.create_index, db.modify_index),
            (10, 1, 7)
        );
    }

    #[test]
    fn a_retried_write_is_done_once_and_a_stale_one_refused() {
        let key = DataKey::generate();
        let mut s = ClusterState::default();
        let v1 = sealed(&key, "db", 1);
        assert_eq!(put(&mut s, 1, "db", &v1), Response::Done);
        // The same proposal committed twice.
        assert_eq!(put(&mut s, 2, "db", &v1), Response::Done);
        assert_eq!(s.secrets["db"].versions.len(), 1);
        // Two writers who both saw version 0: the second is refused.
        let other = sealed(&key, "db", 1);
        let r = put(&mut s, 3, "db", &other);
        assert!(
            matches!(&r, Response::Refused { reason, .. } if reason.contains("at version 1")),
            "{r:?}"
        );
        // A gap is refused too.
        assert!(matches!(
            put(&mut s, 4, "db", &sealed(&key, "db", 3)),
            Response::Refused { .. }
        ));
        assert_eq!(s.secrets["db"].versions, [v1]);
    }

    #[test]
    fn a_secret_a_running_job_uses_is_not_deleted() {
        let key = DataKey::generate();
        let mut s = ClusterState::default();
        put(&mut s, 1, "db", &sealed(&key, "db", 1));
        put(&mut s, 2, "tls", &sealed(&key, "tls", 1));
        let spec = JobSpec::service("api", "img")
            .secret("db")
            .env_from_secret("TLS", "tls");
        s.apply(3, &Command::UpsertJob { spec });
        for name in ["db", "tls"] {
            let r = s.apply(4, &Command::DeleteSecret { name: name.into() }).0;
            assert!(
                matches!(&r, Response::Refused { reason, .. } if reason.contains("used by job api")),
                "{r:?}"
            );
        }
        s.apply(
            5,
            &Command::StopJob {
                name: "api".into(),
                purge: false,
            },
        );
        let (r, changes) = s.apply(6, &Command::DeleteSecret { name: "db".into() });
        assert_eq!(r, Response::Done);
        assert_eq!(changes, [Change::Secret { name: "db".into() }]);
        assert!(!s.secrets.contains_key("db"));
        let r = s.apply(7, &Command::DeleteSecret { name: "db".into() }).0;
        assert!(matches!(
            &r,
            Response::Refused {
                refusal: Refusal::UnknownSecret,
                ..
            }
        ));
    }

    #[test]
    fn secrets_survive_a_snapshot_and_an_empty_state_has_none_in_it() {
        let empty = ClusterState::default().to_snapshot();
        assert!(!String::from_utf8_lossy(&empty).contains("secrets"));
        let key = DataKey::generate();
        let mut s = ClusterState::default();
        put(&mut s, 1, "db", &sealed(&key, "db", 1));
        let back = ClusterState::from_snapshot(&s.to_snapshot()).unwrap();
        assert_eq!(back.secrets, s.secrets);
    }
}
