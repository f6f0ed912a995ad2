//! The contract every [`Store`] implementation passes: the [`MemStore`](super::MemStore)
//! fake and `orion-store`'s `RaftStore` (both engines) run the same cases.
//!
//! Call [`run`] with a function that makes a fresh, writable store (a single-node
//! store already bootstrapped). Each case gets its own store and shuts it down.
//! Indexes are only compared with each other, never with fixed numbers: a Raft log
//! holds entries (membership, blank) that are not commands.
//!
//! ```no_run
//! # async fn demo() {
//! use orion_core::testing::{store_suite, MemStore};
//! store_suite::run(|| async { MemStore::new("n1") }).await;
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

use futures::future::join_all;

use crate::command::{Command, Response};
use crate::spec::JobSpec;
use crate::state::Change;
use crate::store::Store;

/// How long any one wait in the suite may take before the case fails.
const WAIT: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {WAIT:?}: {what}"),
    }
}

fn spec(name: &str) -> JobSpec {
    JobSpec::service(name, "nginx").port("http", 80)
}

fn upsert(spec: JobSpec) -> Command {
    Command::UpsertJob { spec }
}

/// One case of the suite: a name and what it does to a fresh store.
type Case = (
    &'static str,
    fn(&dyn Store) -> futures::future::BoxFuture<'_, ()>,
);

/// Runs every case, each on a fresh store from `fresh`.
pub async fn run<S, F, Fut>(mut fresh: F)
where
    S: Store,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    let cases: [Case; 8] = [
        ("leads_itself", |s| Box::pin(leads_itself(s))),
        ("propose_applies_and_answers", |s| {
            Box::pin(propose_applies_and_answers(s))
        }),
        ("applied_index_and_changes_are_watchable", |s| {
            Box::pin(applied_index_and_changes_are_watchable(s))
        }),
        ("proposals_apply_in_order", |s| {
            Box::pin(proposals_apply_in_order(s))
        }),
        ("concurrent_proposals_get_distinct_indexes", |s| {
            Box::pin(concurrent_proposals_get_distinct_indexes(s))
        }),
        ("job_submission_is_idempotent", |s| {
            Box::pin(job_submission_is_idempotent(s))
        }),
        ("refused_command_changes_nothing", |s| {
            Box::pin(refused_command_changes_nothing(s))
        }),
        ("read_barrier_sees_own_writes", |s| {
            Box::pin(read_barrier_sees_own_writes(s))
        }),
    ];
    for (name, case) in cases {
        let store = fresh().await;
        tracing::info!(case = name, "store suite");
        case(&store).await;
        within("shutdown", store.shutdown())
            .await
            .unwrap_or_else(|e| panic!("{name}: shutdown failed: {e}"));
    }
}

/// A fresh single-node store leads, and says so.
pub async fn leads_itself(store: &dyn Store) {
    let mut rx = store.leadership();
    let l = within("leadership", rx.wait_for(|l| l.is_self))
        .await
        .expect("leadership watch open")
        .clone();
    assert!(l.leader.is_some(), "a leader that is self has an id: {l:?}");
    assert!(l.term >= 1, "a leader has a term: {l:?}");
}

/// `propose` returns only once the command is applied, with the state machine's answer.
pub async fn propose_applies_and_answers(store: &dyn Store) {
    let applied = within("propose", store.propose(upsert(spec("web"))))
        .await
        .expect("propose");
    assert_eq!(
        applied.response,
        Response::Job {
            name: "web".into(),
            version: 1,
            changed: true
        }
    );
    assert!(applied.index >= 1);
    let replica = store.replica();
    assert!(replica.applied_index() >= applied.index);
    let version = replica.read(|s| s.jobs.get("web").map(|j| j.version));
    assert_eq!(version, Some(1), "applied before propose returned");
}

/// The applied-index watch and the change stream both report a proposal.
pub async fn applied_index_and_changes_are_watchable(store: &dyn Store) {
    let replica = store.replica();
    let mut applied_rx = replica.subscribe_applied();
    let mut changes = replica.subscribe_changes();
    let applied = within("propose", store.propose(upsert(spec("api"))))
        .await
        .expect("propose");
    within(
        "applied watch",
        applied_rx.wait_for(|i| *i >= applied.index),
    )
    .await
    .expect("applied watch open");
    let batch = within("change batch", async {
        loop {
            let b = changes.recv().await.expect("change stream open");
            if b.index == applied.index {
                return b;
            }
            assert!(b.index < applied.index, "batches come in index order");
        }
    })
    .await;
    assert!(
        batch.changes.contains(&Change::Job { name: "api".into() }),
        "{batch:?}"
    );
}

/// Sequential proposals get increasing indexes and apply in that order.
pub async fn proposals_apply_in_order(store: &dyn Store) {
    let mut changes = store.replica().subscribe_changes();
    let mut last = 0;
    for n in 1..=10u64 {
        let s = spec("ordered").env("N", n.to_string());
        let applied = within("propose", store.propose(upsert(s)))
            .await
            .expect("propose");
        assert!(applied.index > last, "index {} after {last}", applied.index);
        last = applied.index;
        assert_eq!(
            applied.response,
            Response::Job {
                name: "ordered".into(),
                version: n,
                changed: true
            }
        );
    }
    let mut seen = Vec::new();
    while seen.len() < 10 {
        let b = within("change batch", changes.recv())
            .await
            .expect("change stream open");
        seen.push(b.index);
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    let env = store.replica().read(|s| {
        s.jobs
            .get("ordered")
            .and_then(|j| j.spec.task.env.get("N").cloned())
    });
    assert_eq!(env.as_deref(), Some("10"), "the last write wins");
}

/// Proposals racing each other all commit, each at its own index.
pub async fn concurrent_proposals_get_distinct_indexes(store: &dyn Store) {
    let proposals = (0..16).map(|i| store.propose(upsert(spec(&format!("job-{i}")))));
    let results = within("concurrent proposals", join_all(proposals)).await;
    let mut indexes: Vec<u64> = results
        .into_iter()
        .map(|r| r.expect("propose").index)
        .collect();
    indexes.sort_unstable();
    indexes.dedup();
    assert_eq!(indexes.len(), 16, "distinct indexes: {indexes:?}");
    let jobs = store.replica().read(|s| s.jobs.len());
    assert_eq!(jobs, 16);
    assert!(store.replica().applied_index() >= indexes[15]);
}

/// Submitting the same spec twice is a no-op the second time.
pub async fn job_submission_is_idempotent(store: &dyn Store) {
    let first = within("propose", store.propose(upsert(spec("once"))))
        .await
        .expect("propose");
    let second = within("propose", store.propose(upsert(spec("once"))))
        .await
        .expect("propose");
    assert!(second.index > first.index);
    assert_eq!(
        second.response,
        Response::Job {
            name: "once".into(),
            version: 1,
            changed: false
        }
    );
    let version = store.replica().read(|s| s.jobs["once"].version);
    assert_eq!(version, 1);
}

/// A command the state machine refuses still commits, answers why, and changes nothing.
pub async fn refused_command_changes_nothing(store: &dyn Store) {
    let applied = within(
        "propose",
        store.propose(Command::StopJob {
            name: "ghost".into(),
            purge: false,
        }),
    )
    .await
    .expect("propose");
    assert!(
        matches!(applied.response, Response::Refused { .. }),
        "{:?}",
        applied.response
    );
    assert!(store.replica().read(|s| s.jobs.is_empty()));
}

/// After a read barrier the replica reflects every write made before it.
pub async fn read_barrier_sees_own_writes(store: &dyn Store) {
    let applied = within("propose", store.propose(upsert(spec("read"))))
        .await
        .expect("propose");
    within("read barrier", store.read_barrier())
        .await
        .expect("read barrier");
    assert!(store.replica().applied_index() >= applied.index);
    assert!(store.replica().read(|s| s.jobs.contains_key("read")));
}

#[cfg(test)]
mod tests {
    use crate::testing::MemStore;

    #[tokio::test]
    async fn mem_store_passes_the_store_suite() {
        super::run(|| async { MemStore::new("n1") }).await;
    }
}
