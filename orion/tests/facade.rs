//! The facade's default: a builder given only a runtime (and a data dir) starts a
//! durable single-node cluster; a restart on the same dir finds every job and
//! allocation again.

use std::sync::Arc;
use std::time::Duration;

use orion::{AllocState, Cluster, JobSpec};
use orion_core::testing::FakeRuntime;

async fn wait_running(c: &orion::ClusterHandle, job: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let running = c
            .allocations(Some(job))
            .iter()
            .filter(|a| a.state == AllocState::Running)
            .count();
        if running == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{job}: {running}/{n} running"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A single node `solo` on `dir` with only a runtime, ready.
async fn solo(dir: &std::path::Path, runtime: Arc<FakeRuntime>) -> orion::ClusterHandle {
    let c = Cluster::builder()
        .node_id("solo")
        .data_dir(dir)
        .runtime_shared(runtime)
        .start()
        .await
        .unwrap();
    c.ready(Duration::from_secs(10)).await.unwrap();
    c
}

/// Submits `web` with two replicas and waits for both to run.
async fn run_web(c: &orion::ClusterHandle) {
    c.submit(
        JobSpec::service("web", "img")
            .replicas(2)
            .resources(0.1, 32),
    )
    .await
    .unwrap();
    wait_running(c, "web", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_runtime_gives_a_durable_single_node_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Arc::new(FakeRuntime::new());
    let c = solo(dir.path(), runtime.clone()).await;
    run_web(&c).await;
    let before: Vec<String> = c
        .allocations(Some("web"))
        .into_iter()
        .map(|a| a.id)
        .collect();
    c.shutdown().await;

    let c = solo(dir.path(), runtime.clone()).await;
    wait_running(&c, "web", 2).await;
    let after: Vec<String> = c
        .allocations(Some("web"))
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(before, after, "the same allocations after a restart");
    assert_eq!(c.job("web").unwrap().job.version, 1);
    assert_eq!(runtime.containers().len(), 2, "adopted, not duplicated");
    c.shutdown().await;
}

/// `watch` streams committed changes in log order: a submission names the job, the
/// placements name each allocation with its node, and a stop names the job again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_committed_changes_in_order() {
    use futures::StreamExt;
    use orion_core::state::Change;

    let dir = tempfile::tempdir().unwrap();
    let c = solo(dir.path(), Arc::new(FakeRuntime::new())).await;
    let mut changes = c.watch();
    run_web(&c).await;
    c.stop_job("web", false).await.unwrap();

    let (mut last_index, mut job_writes, mut placed) = (0, 0, std::collections::BTreeSet::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while job_writes < 2 || placed.len() < 2 {
        let batch = tokio::time::timeout_at(deadline, changes.next())
            .await
            .expect("changes within 10 s")
            .expect("the stream stays open");
        assert!(batch.index > last_index, "log order: {batch:?}");
        last_index = batch.index;
        for change in batch.changes {
            match change {
                Change::Job { name } if name == "web" => job_writes += 1,
                Change::Alloc {
                    id,
                    job,
                    node: Some(node),
                } if job == "web" => {
                    assert_eq!(node, "solo");
                    placed.insert(id);
                }
                _ => {}
            }
        }
    }
    let ids: std::collections::BTreeSet<String> = c
        .allocations(Some("web"))
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(placed, ids, "every allocation was announced");
    c.shutdown().await;
}
