//! Jobs that wait for others (`after`), on a node over the fakes: a chain
//! submitted backwards starts in order as each completes; a failed
//! dependency fails its dependent with the reason; `running` waits for a
//! service; a cycle is refused naming it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use orion_core::testing::{FakeRuntime, MemStore};
use orion_core::{Cluster, JobSpec, NodeProfile};
use serde_json::json;

async fn node(fake: Arc<FakeRuntime>) -> Cluster {
    let mut p = NodeProfile::default();
    p.id = Some("d1".into());
    let c = Cluster::builder()
        .node(p)
        .runtime_shared(fake)
        .store(MemStore::new("d1"))
        .config(orion_core::testing::fast_loops())
        .start()
        .await
        .unwrap();
    c.ready(Duration::from_secs(5)).await.unwrap();
    c
}

fn job(name: &str, kind: &str, after: serde_json::Value) -> JobSpec {
    serde_json::from_value(json!({
        "name": name, "type": kind,
        "task": { "image": "orion-test/web:1", "resources": { "cpu": 0.1, "memory_mb": 32 } },
        "after": after,
        "restart": { "attempts": 0 },
        "reschedule": { "unlimited": false, "attempts": 0 }
    }))
    .unwrap()
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_starts_in_order_and_a_failure_fails_its_dependents() {
    let fake = Arc::new(FakeRuntime::new());
    let c = node(fake.clone()).await;
    // Submitted last-first: the waiting says for what.
    c.submit(job("third", "batch", json!([{ "job": "second" }])))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let v = c.job("third").unwrap();
    assert_eq!(
        v.waiting.as_deref(),
        Some("waiting for job second to be submitted")
    );
    assert!(v.allocations.is_empty());
    c.submit(job(
        "second",
        "batch",
        json!([{ "job": "first", "condition": "complete" }]),
    ))
    .await
    .unwrap();
    c.submit(job("first", "batch", json!([]))).await.unwrap();
    let first = c
        .wait_running("first", 1, Duration::from_secs(10))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        c.job("second").unwrap().waiting.as_deref(),
        Some("waiting for job first to complete")
    );
    assert!(c.allocations(Some("second")).is_empty() && c.allocations(Some("third")).is_empty());
    assert!(fake.exit(&first[0].id, 0));
    let second = c
        .wait_running("second", 1, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        c.allocations(Some("third")).is_empty(),
        "third started before second completed"
    );
    assert!(fake.exit(&second[0].id, 0));
    c.wait_running("third", 1, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(c.job("third").unwrap().waiting, None);

    // A dependency that fails fails its dependent, which never starts.
    c.submit(job("breaks", "batch", json!([]))).await.unwrap();
    c.submit(job("after-breaks", "batch", json!([{ "job": "breaks" }])))
        .await
        .unwrap();
    let b = c
        .wait_running("breaks", 1, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(fake.exit(&b[0].id, 1));
    until("the dependent to fail", || {
        c.job("after-breaks")
            .is_some_and(|v| v.health.to_string() == "failed")
    })
    .await;
    let v = c.job("after-breaks").unwrap();
    assert_eq!(v.waiting.as_deref(), Some("dependency breaks failed"));
    assert!(v.allocations.is_empty());

    // `running` waits for a service to run all its replicas.
    c.submit(job(
        "waits-db",
        "batch",
        json!([{ "job": "db", "condition": "running" }]),
    ))
    .await
    .unwrap();
    let mut db = JobSpec::service("db", "orion-test/web:1")
        .replicas(2)
        .resources(0.1, 32);
    db.kind = orion_core::spec::JobKind::Service;
    c.submit(db).await.unwrap();
    c.wait_running("db", 2, Duration::from_secs(10))
        .await
        .unwrap();
    c.wait_running("waits-db", 1, Duration::from_secs(10))
        .await
        .unwrap();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependency_cycle_is_refused_naming_it() {
    let c = node(Arc::new(FakeRuntime::new())).await;
    c.submit(job("x", "batch", json!([{ "job": "y" }])))
        .await
        .unwrap();
    c.submit(job("w", "batch", json!([{ "job": "x" }])))
        .await
        .unwrap();
    let e = c
        .submit(job("y", "batch", json!([{ "job": "w" }])))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("after: dependency cycle: y -> w -> x -> y"),
        "{e}"
    );
    assert!(c.job("y").is_none());
    let e = c
        .submit(job("z", "batch", json!([{ "job": "z" }])))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("after[0].job: a job cannot wait for itself"),
        "{e}"
    );
    let bad: Result<JobSpec, _> = serde_json::from_value(json!({
        "name": "q", "type": "batch", "task": { "image": "i:1" },
        "after": [{ "job": "x", "condition": "sometime" }]
    }));
    assert!(bad.unwrap_err().to_string().contains("unknown variant"));
    c.shutdown().await;
}
