//! Durability: what was applied before a shutdown is in the replica after reopening,
//! from log replay, from a snapshot plus the log after it, or from a snapshot alone.

use orion_core::{Command, JobSpec, Store};
use orion_store::{Engine, RaftStore};

use crate::{init_tracing, start_node, start_single, state_of, write_workload, WAIT};

async fn stop(store: RaftStore) {
    store.shutdown().await.expect("shutdown");
    drop(store);
}

async fn restart_recovers_everything(engine: Engine) {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_single("n1", dir.path(), engine, |_| {}).await;
    let last = write_workload(&node.store, 5).await;
    let before = state_of(&node.store);
    assert_eq!(before["allocs"].as_object().map(|a| a.len()), Some(10));
    stop(node.store).await;

    // The replica is whole as soon as open returns: the committed log was replayed.
    let node = start_node("n1", dir.path(), engine, |_| {}).await;
    assert!(node.store.replica().applied_index() >= last);
    assert_eq!(state_of(&node.store), before);
    // Restarting never re-initializes: this is a no-op, and the node leads again.
    node.store
        .initialize_single()
        .await
        .expect("initialize again");
    let next = node
        .store
        .propose(Command::UpsertJob {
            spec: JobSpec::service("after", "nginx"),
        })
        .await
        .expect("propose after restart");
    assert!(next.index > last);
    stop(node.store).await;
}

/// Every job and allocation survives a restart on sled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_restart_recovers_every_job_and_allocation() {
    restart_recovers_everything(Engine::Sled).await;
}

/// Every job and allocation survives a restart on redb.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_restart_recovers_every_job_and_allocation() {
    restart_recovers_everything(Engine::Redb).await;
}

async fn snapshot_purge_then_restart(engine: Engine) {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let tune = |c: &mut orion_store::RaftStoreConfig| {
        c.snapshot_threshold = 20;
        c.snapshot_keep = 5;
    };
    let node = start_single("n1", dir.path(), engine, tune).await;
    let last = write_workload(&node.store, 15).await;
    // The policy snapshots every 20 entries and purges behind it, keeping 5.
    let status = node
        .store
        .wait_log_status(WAIT, |s| s.snapshot > 0 && s.purged > 0)
        .await
        .expect("snapshot and purge happen");
    assert!(
        status.purged < status.snapshot,
        "keeps some log: {status:?}"
    );
    // A few more writes land in the log after the snapshot.
    for i in 0..3 {
        node.store
            .propose(Command::UpsertJob {
                spec: JobSpec::service(format!("tail-{i}"), "nginx"),
            })
            .await
            .expect("propose");
    }
    let before = state_of(&node.store);
    stop(node.store).await;

    let node = start_node("n1", dir.path(), engine, tune).await;
    assert!(node.store.replica().applied_index() > last);
    assert_eq!(state_of(&node.store), before, "snapshot + log tail replay");

    // An explicit snapshot covering everything, then a restart from it alone.
    node.store
        .initialize_single()
        .await
        .expect("initialize again");
    node.store.snapshot_now().await.expect("snapshot now");
    let s = node.store.log_status();
    assert!(s.snapshot >= s.last_applied.saturating_sub(1), "{s:?}");
    stop(node.store).await;
    let node = start_node("n1", dir.path(), engine, tune).await;
    assert_eq!(state_of(&node.store), before, "snapshot-only recovery");
    stop(node.store).await;
}

/// A snapshot with the log purged behind it, then a restart, loses nothing (sled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_snapshot_purge_then_restart_recovers() {
    snapshot_purge_then_restart(Engine::Sled).await;
}

/// A snapshot with the log purged behind it, then a restart, loses nothing (redb).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_snapshot_purge_then_restart_recovers() {
    snapshot_purge_then_restart(Engine::Redb).await;
}
