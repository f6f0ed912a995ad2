//! Membership rules: bounded voter seats, refilled on removal; snapshots for late joiners.

use std::collections::BTreeSet;

use orion_core::{NodeRole, Store};
use orion_store::Engine;

use crate::cluster::voter_ids;
use crate::{init_tracing, start_node, start_single, state_of, wait_applied, write_workload, WAIT};

fn ids(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// With `max_voters = 3`, a fourth manager stays a learner; removing a voter promotes
/// it; removing twice and adding twice change nothing; a voter re-added as a worker is
/// demoted to learner; the last voter cannot be removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voter_seats_are_bounded_and_refilled() {
    init_tracing();
    let root = tempfile::tempdir().expect("tempdir");
    let dir = |n: &str| root.path().join(n);
    let n1 = start_single("n1", &dir("n1"), Engine::Redb, |_| {}).await;
    let mut others = Vec::new();
    for id in ["n2", "n3", "n4"] {
        let n = start_node(id, &dir(id), Engine::Redb, |_| {}).await;
        n1.store
            .add_peer(n.peer(NodeRole::Manager))
            .await
            .expect("add manager");
        others.push(n);
    }
    let [n2, n3, n4] = <[_; 3]>::try_from(others).ok().expect("three nodes");
    assert_eq!(voter_ids(&n1.store), ids(&["n1", "n2", "n3"]));
    let a = write_workload(&n1.store, 1).await;
    wait_applied(&n4.store, a).await;

    n1.store.remove_peer(&"n3".into()).await.expect("remove n3");
    assert_eq!(
        voter_ids(&n1.store),
        ids(&["n1", "n2", "n4"]),
        "n4 promoted"
    );
    n1.store
        .remove_peer(&"n3".into())
        .await
        .expect("remove again");
    n1.store
        .add_peer(n2.peer(NodeRole::Manager))
        .await
        .expect("add again");
    assert_eq!(voter_ids(&n1.store), ids(&["n1", "n2", "n4"]));
    n3.store.shutdown().await.expect("shutdown n3");

    // Re-added as a worker, a voter steps down to learner and keeps replicating.
    n1.store
        .add_peer(n4.peer(NodeRole::Worker))
        .await
        .expect("demote");
    assert_eq!(voter_ids(&n1.store), ids(&["n1", "n2"]));
    let b = write_workload(&n1.store, 2).await;
    wait_applied(&n4.store, b).await;

    n1.store.remove_peer(&"n2".into()).await.expect("remove n2");
    let err = n1
        .store
        .remove_peer(&"n1".into())
        .await
        .expect_err("last voter stays");
    assert!(
        matches!(err, orion_core::StoreError::Membership(_)),
        "{err}"
    );
    for n in [n1, n2, n4] {
        n.store.shutdown().await.expect("shutdown");
    }
}

/// A worker asking to be added again (restarted with its data) is already a
/// learner: the leader writes no membership change for it, so restarts never
/// queue behind (or refuse for) a change in progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_learner_added_again_writes_nothing() {
    init_tracing();
    let root = tempfile::tempdir().expect("tempdir");
    let dir = |n: &str| root.path().join(n);
    let n1 = start_single("n1", &dir("n1"), Engine::Redb, |_| {}).await;
    let w = start_node("w", &dir("w"), Engine::Redb, |_| {}).await;
    n1.store
        .add_peer(w.peer(NodeRole::Worker))
        .await
        .expect("add worker");
    let before = n1.store.status().last_log_index;
    for _ in 0..3 {
        n1.store
            .add_peer(w.peer(NodeRole::Worker))
            .await
            .expect("add again");
    }
    assert_eq!(n1.store.status().last_log_index, before, "no entry written");
    assert_eq!(voter_ids(&n1.store), ids(&["n1"]));
    let a = write_workload(&n1.store, 1).await;
    wait_applied(&w.store, a).await;
    for n in [n1, w] {
        n.store.shutdown().await.expect("shutdown");
    }
}

/// A node that joins after the leader purged its log behind a snapshot receives the
/// snapshot over the HTTP transport and ends with the leader's state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_learner_catches_up_from_a_snapshot() {
    init_tracing();
    let root = tempfile::tempdir().expect("tempdir");
    let tune = |c: &mut orion_store::RaftStoreConfig| {
        c.snapshot_threshold = 20;
        c.snapshot_keep = 0;
    };
    let n1 = start_single("n1", &root.path().join("n1"), Engine::Sled, tune).await;
    let last = write_workload(&n1.store, 10).await;
    n1.store.snapshot_now().await.expect("snapshot");
    let s = n1
        .store
        .wait_log_status(WAIT, |s| s.purged > 0)
        .await
        .expect("log purged");
    assert!(s.purged > 1, "{s:?}");

    let n2 = start_node("n2", &root.path().join("n2"), Engine::Redb, tune).await;
    n1.store
        .add_peer(n2.peer(NodeRole::Worker))
        .await
        .expect("add learner");
    wait_applied(&n2.store, last).await;
    assert_eq!(state_of(&n2.store), state_of(&n1.store));
    // The purged prefix can only have come by snapshot (metrics may lag the install).
    n2.store
        .wait_log_status(WAIT, |s| s.snapshot > 0)
        .await
        .expect("came by snapshot");
    // Both say so in their status: n1 built one, n2 installed one, of the same size.
    let (built, got) = (n1.store.status().snapshots, n2.store.status().snapshots);
    assert!(built.built >= 1 && built.size_bytes > 0, "{built:?}");
    assert!(built.build_seconds > 0.0 && built.index > 0, "{built:?}");
    assert!(got.installed >= 1, "{got:?}");
    assert!(got.size_bytes > 0 && got.index > 0, "{got:?}");
    for n in [n1, n2] {
        n.store.shutdown().await.expect("shutdown");
    }
}
