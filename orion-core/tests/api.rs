//! The HTTP API of one in-process node over the fakes (`MemStore`, `FakeRuntime`):
//! submission in YAML and JSON, reads, stops, and every kind of bad input getting a
//! 400 that names the field while nothing is written.

use std::sync::Arc;
use std::time::Duration;

use orion_core::testing::{FakeRuntime, MemStore};
use orion_core::{Cluster, ClusterConfig, NodeProfile, Resources};
use serde_json::{json, Value};

const WEB: &str = r#"
name: web
type: service
replicas: 2
task:
  image: orion-test/web:1
  command: ["httpd", "-f", "-p", "80", "-h", "/www"]
  ports: [{ name: http, container_port: 80 }]
  resources: { cpu: 0.1, memory_mb: 32 }
  env: { GREETING: hi }
node_selectors: { disk: ssd }
"#;

fn fast() -> ClusterConfig {
    orion_core::testing::fast_loops()
}

async fn node() -> (Cluster, String, Arc<FakeRuntime>) {
    let runtime = Arc::new(FakeRuntime::new());
    let cluster = Cluster::builder()
        .node({
            let mut p = NodeProfile::default();
            p.id = Some("n1".into());
            p.capacity = Some(Resources {
                cpu: 4.0,
                memory_mb: 3900,
                disk_mb: 1000,
            });
            p.tags = [("disk".to_string(), "ssd".to_string())].into();
            p
        })
        .runtime_shared(runtime.clone())
        .store(MemStore::new("n1"))
        .config(fast())
        .http("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    cluster.ready(Duration::from_secs(5)).await.unwrap();
    let base = format!("http://{}", cluster.http_addr().unwrap());
    (cluster, base, runtime)
}

async fn wait_for<F: Fn() -> bool>(what: &str, f: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn post(base: &str, ctype: &str, body: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/jobs"))
        .header("content-type", ctype)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn get(base: &str, path: &str) -> (u16, Value) {
    let r = reqwest::get(format!("{base}{path}")).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// A YAML job is accepted, placed and run; the same body again changes nothing;
/// GET shows the spec as stored with its allocations' host ports; DELETE stops it.
#[tokio::test]
async fn submit_run_read_and_stop() {
    let (cluster, base, runtime) = node().await;
    let (status, body) = post(&base, "application/yaml", WEB).await;
    assert_eq!((status, &body["version"]), (201, &Value::from(1)));
    let (status, body) = post(&base, "application/yaml", WEB).await;
    assert_eq!((status, &body["changed"]), (200, &Value::from(false)));

    wait_for("2 running", || {
        cluster
            .allocations(Some("web"))
            .iter()
            .filter(|a| a.state == orion_core::AllocState::Running)
            .count()
            == 2
    })
    .await;
    let (status, job) = get(&base, "/v1/jobs/web").await;
    assert_eq!(status, 200);
    assert_eq!(job["spec"]["task"]["env"]["GREETING"], "hi");
    let allocs = job["allocations"].as_array().unwrap();
    assert_eq!(allocs.len(), 2);
    assert!(allocs
        .iter()
        .all(|a| a["ports"][0]["host_port"].as_u64().unwrap() >= 32000));
    assert_eq!(runtime.containers().len(), 2);

    let (_, list) = get(&base, "/v1/jobs").await;
    assert_eq!(list[0]["running"], 2);
    // Reads say which consistency they give.
    let alloc_id = allocs[0]["id"].as_str().unwrap();
    let reads = [
        "/v1/jobs".to_string(),
        "/v1/jobs/web".to_string(),
        "/v1/nodes".to_string(),
        "/v1/allocations?job=web".to_string(),
        format!("/v1/allocations/{alloc_id}"),
        "/v1/status/leader".to_string(),
    ];
    for (path, (query, kind)) in reads
        .iter()
        .flat_map(|p| [("", "local"), ("consistent=true", "linearizable")].map(|q| (p, q)))
    {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = if query.is_empty() {
            format!("{base}{path}")
        } else {
            format!("{base}{path}{sep}{query}")
        };
        let r = reqwest::get(&url).await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        assert_eq!(r.headers()["x-orion-consistency"], kind, "{url}");
        assert!(
            r.headers()["x-orion-index"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                > 0
        );
    }
    let (_, nodes) = get(&base, "/v1/nodes").await;
    assert_eq!(nodes[0]["id"], "n1");
    assert_eq!(nodes[0]["used"]["memory_mb"], 64);
    let (_, leader) = get(&base, "/v1/status/leader").await;
    assert_eq!(leader["is_self"], true);
    let (status, health) = get(&base, "/health").await;
    assert_eq!((status, &health["status"]), (200, &Value::from("healthy")));

    let r = reqwest::Client::new()
        .delete(format!("{base}/v1/jobs/web"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_for("containers gone", || runtime.containers().is_empty()).await;
    cluster.shutdown().await;
}

/// Unknown jobs, nodes and allocations get a 404 naming them, and the
/// framework's own refusals answer in the same JSON shape. (Bad specs are
/// refused in `orion/tests/bad_spec.rs`, against the real store.)
#[tokio::test]
async fn unknown_names_get_a_404_and_refusals_share_one_shape() {
    let (cluster, base, _) = node().await;
    let (status, _) = get(&base, "/v1/jobs/nope").await;
    assert_eq!(status, 404);
    let (status, _) = get(&base, "/v1/allocations?job=nope").await;
    assert_eq!(status, 404);
    let http = reqwest::Client::new();
    for (method, path, want) in [
        ("POST", "/v1/nodes/ghost/drain", "no node with id \"ghost\""),
        ("DELETE", "/v1/nodes/ghost", "no node with id \"ghost\""),
        ("DELETE", "/v1/jobs/ghost", "no job named \"ghost\""),
        (
            "GET",
            "/v1/allocations/ghost/logs",
            "no allocation \"ghost\"",
        ),
    ] {
        let r = http
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{method} {path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], want);
    }
    // The framework's own refusals answer in the same JSON shape.
    for (method, path, body, status, want) in [
        (
            "DELETE",
            "/v1/jobs/ghost?purge=maybe",
            String::new(),
            400,
            "purge",
        ),
        ("PUT", "/v1/jobs", String::new(), 405, "method not allowed"),
        (
            "GET",
            "/v1/nowhere",
            String::new(),
            404,
            "no such endpoint: GET /v1/nowhere",
        ),
        (
            "POST",
            "/v1/jobs",
            "x".repeat(5 << 20),
            413,
            "4096 KiB limit",
        ),
    ] {
        let r = http
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{method} {path}");
        let ctype = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(
            ctype.starts_with("application/json"),
            "{method} {path}: {ctype}"
        );
        let body: Value = r.json().await.unwrap();
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(want), "{method} {path}: {body}");
    }
    assert_eq!(cluster.store().replica().read(|s| s.jobs.len()), 0);
    cluster.shutdown().await;
}

const SCALED: &str = r#"
name: web
replicas: 1
task:
  image: orion-test/web:1
  ports: [{ name: http, container_port: 80 }]
  resources: { cpu: 0.1, memory_mb: 32 }
scaling:
  min: 2
  max: 6
  policies:
    - target: { metric: cpu, value: 70 }
"#;

/// A scaling block: each bad field answers 400 naming it (a batch job, min
/// above max, max above the cluster's cap, an unknown metric, a percentage
/// target of 0 or above 100, a cooldown that does not parse, a custom metric
/// without an endpoint); nothing is written. A good one starts within its
/// bounds, shows in the job and at `/scaling`; a count set by hand is checked
/// against the bounds and suspends the policy.
#[tokio::test]
async fn scaling_blocks_and_counts_set_by_hand_over_the_api() {
    let (cluster, base, _) = node().await;
    let cases: &[(String, &str, &str)] = &[
        (
            SCALED.replace("name: web\n", "name: web\ntype: batch\n"),
            "scaling",
            "only a service job scales (this one is type: batch)",
        ),
        (
            SCALED.replace("min: 2", "min: 9"),
            "scaling.min",
            "9 is above max (6)",
        ),
        (
            SCALED.replace("max: 6", "max: 1500"),
            "scaling.max",
            "1500 is above the cluster's cap of 1000 replicas",
        ),
        (
            SCALED.replace("metric: cpu", "metric: cpux"),
            "scaling.policies[0].target.metric",
            "\"cpux\" is not a metric",
        ),
        (
            SCALED.replace("value: 70", "value: 0"),
            "scaling.policies[0].target.value",
            "must be above 0",
        ),
        (
            SCALED.replace("value: 70", "value: 150"),
            "scaling.policies[0].target.value",
            "150 is above 100",
        ),
        (
            SCALED.replace("max: 6", "max: 6\n  cooldown_up: 5 parsecs"),
            "scaling.cooldown_up",
            "expected a duration",
        ),
        (
            SCALED.replace("metric: cpu", "metric: \"custom:queue_depth\""),
            "task.metrics",
            "give task.metrics { port, path }",
        ),
        (
            SCALED.replace("max: 6", "max: 6\n  surprise: 1"),
            "scaling.surprise",
            "unknown field",
        ),
    ];
    for (body, field, problem) in cases {
        let (status, err) = post(&base, "application/yaml", body).await;
        assert_eq!(status, 400, "{body}: {err}");
        let first = &err["errors"][0];
        assert_eq!(first["field"], *field, "{err}");
        assert!(
            first["problem"].as_str().unwrap().contains(problem),
            "{err}"
        );
    }
    assert_eq!(cluster.store().replica().read(|s| s.jobs.len()), 0);

    // A good block: the job starts at its min, not the spec's 1.
    let (status, _) = post(&base, "application/yaml", SCALED).await;
    assert_eq!(status, 201);
    let (status, view) = get(&base, "/v1/jobs/web/scaling").await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        (
            view["replicas"].as_u64(),
            view["min"].as_u64(),
            view["max"].as_u64()
        ),
        (Some(2), Some(2), Some(6))
    );
    let (_, job) = get(&base, "/v1/jobs/web").await;
    assert_eq!(job["scaling"]["policy"]["max"], 6, "{job}");
    // By hand: outside the bounds is refused, inside suspends the policy.
    let (status, err) = send("POST", &base, "/v1/jobs/web/scale", r#"{"replicas": 9}"#).await;
    assert_eq!(status, 409, "{err}");
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("scales between 2 and 6"),
        "{err}"
    );
    let (status, err) = send(
        "POST",
        &base,
        "/v1/jobs/web/scale",
        r#"{"replicas": "three"}"#,
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("invalid scale body"),
        "{err}"
    );
    let (status, done) = send("POST", &base, "/v1/jobs/web/scale", r#"{"replicas": 4}"#).await;
    assert_eq!(status, 200, "{done}");
    let (_, view) = get(&base, "/v1/jobs/web/scaling").await;
    assert_eq!(view["replicas"], 4);
    assert!(view["suspended_until_ms"].as_u64().is_some(), "{view}");
    assert_eq!(view["decisions"][0]["by"], "hand");
    assert_eq!(view["decisions"][0]["from"], 2);
    // The decision is an event of the `scaling` topic.
    let events = read_events(&format!("{base}/v1/events?topic=scaling:web&index=0"), 1).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0].1.as_str(), events[0].2.as_str()),
        ("Scaling", "web")
    );
    // Submitted again, the spec's replicas does not undo the count.
    post(&base, "application/yaml", SCALED).await;
    assert_eq!(
        cluster
            .store()
            .replica()
            .read(|s| s.jobs["web"].spec.replicas),
        4
    );
    let (status, _) = send("POST", &base, "/v1/jobs/ghost/scale", r#"{"replicas": 1}"#).await;
    assert_eq!(status, 404);
    post(
        &base,
        "application/yaml",
        &WEB.replace("name: web", "name: plain"),
    )
    .await;
    let (status, err) = get(&base, "/v1/jobs/plain/scaling").await;
    assert_eq!(status, 404);
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("has no scaling block"),
        "{err}"
    );
    cluster.shutdown().await;

    // A cluster with a higher cap takes the larger max.
    let mut config = fast();
    config.max_scaled_replicas = 2_000;
    let big = Cluster::builder()
        .node({
            let mut p = NodeProfile::default();
            p.id = Some("n1".into());
            p
        })
        .runtime(FakeRuntime::new())
        .store(MemStore::new("n1"))
        .config(config)
        .start()
        .await
        .unwrap();
    big.ready(Duration::from_secs(5)).await.unwrap();
    let spec = orion_core::JobSpec::parse(&SCALED.replace("max: 6", "max: 1500")).unwrap();
    big.submit(spec).await.unwrap();
    big.shutdown().await;
}

/// YAML reads with the 1.2 core schema: `y`, `yes` and `on` stay strings (a
/// constraint on values `[x, y]` is not "invalid type: boolean").
#[tokio::test]
async fn yaml_11_booleans_stay_strings() {
    let (cluster, base, _) = node().await;
    let spec = WEB.replace(
        "node_selectors: { disk: ssd }",
        "constraints: [{ key: zone, op: in, values: [x, y, on] }]",
    );
    let (status, body) = post(&base, "application/yaml", &spec).await;
    assert_eq!(status, 201, "{body}");
    let job = cluster.job("web").unwrap();
    assert_eq!(
        job.job.spec.constraints[0].values,
        ["x", "y", "on"].map(String::from)
    );
    cluster.shutdown().await;
}

/// A job too big for any node is accepted; its allocations stay pending with a
/// reason that counts what was filtered.
#[tokio::test]
async fn unschedulable_jobs_stay_pending_with_a_reason() {
    let (cluster, base, _) = node().await;
    let big = WEB
        .replace("memory_mb: 32", "memory_mb: 64000")
        .replace("replicas: 2", "replicas: 1");
    let (status, _) = post(&base, "application/yaml", &big).await;
    assert_eq!(status, 201);
    wait_for("a pending allocation", || {
        cluster
            .allocations(Some("web"))
            .iter()
            .any(|a| a.message.is_some())
    })
    .await;
    let (_, allocs) = get(&base, "/v1/allocations?job=web").await;
    assert_eq!(allocs[0]["state"], "pending");
    assert_eq!(
        allocs[0]["message"],
        "1 node: insufficient memory (need 64000 MB, free 3900)"
    );
    cluster.shutdown().await;
}

/// The API reports an unreachable runtime as an unhealthy node, with why, and
/// recovers when it answers again.
#[tokio::test]
async fn health_follows_the_runtime() {
    let (cluster, base, runtime) = node().await;
    runtime.set_unavailable(Some("engine stopped"));
    wait_for("unhealthy", || cluster.runtime_health().is_some()).await;
    let (status, body) = get(&base, "/health").await;
    assert_eq!(status, 503);
    assert!(body["reason"].as_str().unwrap().contains("engine stopped"));
    let c = &body["components"];
    assert_eq!(c["runtime"]["status"], "unhealthy", "{body}");
    assert!(c["runtime"]["error"]
        .as_str()
        .unwrap()
        .contains("engine stopped"));
    assert_eq!(
        (
            c["store"]["status"].as_str(),
            c["store"]["is_leader"].as_bool()
        ),
        (Some("healthy"), Some(true)),
        "{body}"
    );
    assert_eq!(c["membership"]["live"], 1);
    assert_eq!(c["membership"]["dead"], 0);
    assert_eq!(body["status"], "unhealthy");
    let (status, ready) = get(&base, "/health/ready").await;
    assert_eq!((status, &ready["status"]), (503, &Value::from("not ready")));
    assert!(ready["reason"].as_str().unwrap().contains("engine stopped"));
    let (status, live) = get(&base, "/health/live").await;
    assert_eq!((status, &live["status"]), (200, &Value::from("alive")));
    runtime.set_unavailable(None);
    wait_for("healthy", || cluster.runtime_health().is_none()).await;
    let (status, body) = get(&base, "/health").await;
    assert_eq!(
        (status, body["components"]["runtime"]["status"].as_str()),
        (200, Some("healthy")),
        "{body}"
    );
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["components"]["runtime"]["version"], "fake");
    assert!(
        body["components"]["runtime"]["containers"].is_u64(),
        "{body}"
    );
    assert_eq!(body["components"]["api"]["status"], "healthy");
    let (status, _) = get(&base, "/health/ready").await;
    assert_eq!(status, 200);
    cluster.shutdown().await;
}

/// Request bodies are capped by route: specs at 4 MiB, everything else at
/// 64 KiB; a declared length over the cap and a chunked body that runs past
/// it both get a 413 naming the cap and the route, and nothing is written.
#[tokio::test]
async fn request_bodies_are_capped_by_route() {
    let (cluster, base, _) = node().await;
    let http = reqwest::Client::new();
    let big = format!("name: web\n# {}\n", "x".repeat(5 * 1024 * 1024));
    let r = http
        .post(format!("{base}/v1/jobs"))
        .header("content-type", "application/yaml")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"]
            .as_str()
            .is_some_and(|m| m.contains("over the 4096 KiB limit of /v1/jobs")),
        "{e}"
    );
    // No length declared (chunked): the read fails at the cap all the same.
    let answer = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = base.trim_start_matches("http://");
        let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        sock.write_all(
            b"POST /v1/jobs HTTP/1.1\r\nHost: t\r\nContent-Type: application/yaml\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .await
        .unwrap();
        let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "z".repeat(64 * 1024));
        for _ in 0..80 {
            // The node may answer and close before the last chunk.
            if sock.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
        }
        let _ = sock.write_all(b"0\r\n\r\n").await;
        let mut got = vec![0; 4096];
        let n = sock.read(&mut got).await.unwrap();
        String::from_utf8_lossy(&got[..n]).into_owned()
    };
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("4096 KiB limit of /v1/jobs"), "{answer}");
    let r = http
        .post(format!("{base}/v1/nodes/n1/drain"))
        .header("content-type", "application/json")
        .body(format!("{{\"pad\": \"{}\"}}", "y".repeat(100 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"]
            .as_str()
            .is_some_and(|m| m.contains("over the 64 KiB limit of /v1/nodes/{id}/drain")),
        "{e}"
    );
    assert!(cluster.jobs().is_empty(), "nothing written");
    assert!(!cluster.store().replica().read(|s| s.nodes["n1"].draining));
    cluster.shutdown().await;
}

/// A store whose leader sees a follower trailing by `behind` entries.
struct Trailing {
    inner: MemStore,
    behind: std::sync::atomic::AtomicU64,
    stalled_ms: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl orion_core::Store for Trailing {
    async fn propose(
        &self,
        cmd: orion_core::Command,
    ) -> Result<orion_core::Applied, orion_core::StoreError> {
        self.inner.propose(cmd).await
    }
    fn replica(&self) -> &Arc<orion_core::Replica> {
        self.inner.replica()
    }
    async fn read_barrier(&self) -> Result<(), orion_core::StoreError> {
        self.inner.read_barrier().await
    }
    fn leadership(&self) -> tokio::sync::watch::Receiver<orion_core::Leadership> {
        self.inner.leadership()
    }
    fn status(&self) -> orion_core::StoreStatus {
        let mut s = self.inner.status();
        s.followers_behind.insert(
            "n2".into(),
            self.behind.load(std::sync::atomic::Ordering::Relaxed),
        );
        s.commit_stalled_ms = self.stalled_ms.load(std::sync::atomic::Ordering::Relaxed);
        if s.commit_stalled_ms > 0 {
            s.unapplied = 2;
        }
        s
    }
    async fn shutdown(&self) -> Result<(), orion_core::StoreError> {
        self.inner.shutdown().await
    }
}

/// `/health` shows the store's log, lag and snapshots; a store trailing by more
/// than 1,000 entries makes the node degraded (still 200) and says by how much,
/// and `/metrics` has the same figures.
#[tokio::test]
async fn health_and_metrics_show_the_store_lag() {
    let store = Arc::new(Trailing {
        inner: MemStore::new("n1"),
        behind: 3.into(),
        stalled_ms: 0.into(),
    });
    let cluster = Cluster::builder()
        .node({
            let mut p = NodeProfile::default();
            p.id = Some("n1".into());
            p
        })
        .runtime(FakeRuntime::new())
        .store_shared(store.clone())
        .config(fast())
        .http("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    cluster.ready(Duration::from_secs(5)).await.unwrap();
    let base = format!("http://{}", cluster.http_addr().unwrap());
    let (status, body) = get(&base, "/health").await;
    let s = &body["components"]["store"];
    assert_eq!(
        (status, s["status"].as_str()),
        (200, Some("healthy")),
        "{body}"
    );
    assert_eq!(s["lag"], 3, "{body}");
    assert_eq!(s["followers_behind"]["n2"], 3, "{body}");
    assert_eq!(s["unapplied"], 0, "{body}");
    assert_eq!(s["last_log_index"], s["applied_index"], "{body}");
    assert_eq!(s["snapshot"]["built"], 0, "{body}");

    store
        .behind
        .store(5_000, std::sync::atomic::Ordering::Relaxed);
    let (status, body) = get(&base, "/health").await;
    assert_eq!(status, 200, "degraded still answers 200: {body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["components"]["store"]["status"], "degraded", "{body}");
    assert!(
        body["reason"]
            .as_str()
            .is_some_and(|r| r.contains("trails by 5000 log entries")),
        "{body}"
    );
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for want in [
        "orion_store_follower_lag_entries{peer=\"n2\"} 5000",
        "orion_store_unapplied_entries 0",
        "orion_store_snapshots_total{kind=\"built\"} 0",
        "orion_store_snapshot_size_bytes 0",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }

    // Entries that wait seconds to commit (a follower of a leader without its
    // quorum still sees a leader): unhealthy, 503, and why.
    store.behind.store(0, std::sync::atomic::Ordering::Relaxed);
    store
        .stalled_ms
        .store(1_200, std::sync::atomic::Ordering::Relaxed);
    let (status, body) = get(&base, "/health").await;
    assert_eq!(status, 200, "a short wait is a commit on its way: {body}");
    assert_eq!(body["components"]["store"]["commit_stalled_ms"], 1_200);
    store
        .stalled_ms
        .store(6_500, std::sync::atomic::Ordering::Relaxed);
    let (status, body) = get(&base, "/health").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["components"]["store"]["status"], "unhealthy", "{body}");
    assert!(
        body["reason"].as_str().is_some_and(|r| r
            .contains("the store cannot commit: 2 log entries have waited 6.5 s")),
        "{body}"
    );
    cluster.shutdown().await;
}

/// Many specs in one body (a JSON array, a YAML stream) are written together in
/// one commit, or, when any is invalid, none is.
#[tokio::test]
async fn many_specs_in_one_body_are_all_or_nothing() {
    let (cluster, base, _) = node().await;
    let good = |n: &str| {
        format!(
            r#"{{"name": "{n}", "task": {{"image": "x", "resources": {{"cpu": 0.1, "memory_mb": 16}}}}}}"#
        )
    };
    let bad = format!(
        r#"[{}, {{"name": "b", "task": {{"image": ""}}}}]"#,
        good("a")
    );
    let (status, err) = post(&base, "application/json", &bad).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["errors"][0]["field"], "[1].task.image", "{err}");
    assert_eq!(cluster.store().replica().read(|s| s.jobs.len()), 0);
    let twice = format!("[{}, {}]", good("a"), good("a"));
    let (status, err) = post(&base, "application/json", &twice).await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("given twice"),
        "{err}"
    );

    let index = cluster.store().replica().applied_index();
    let (status, done) = post(
        &base,
        "application/json",
        &format!("[{}, {}]", good("a"), good("b")),
    )
    .await;
    assert_eq!(status, 201, "{done}");
    assert_eq!(done[0]["name"], "a");
    assert_eq!(done[1]["version"], 1);
    let stream = "name: c\ntask: { image: x }\n---\nname: d\ntask: { image: y }\n";
    let (status, done) = post(&base, "application/yaml", stream).await;
    assert_eq!(status, 201, "{done}");
    assert_eq!(done.as_array().map(Vec::len), Some(2));
    assert_eq!(cluster.store().replica().read(|s| s.jobs.len()), 4);
    assert!(cluster.store().replica().applied_index() > index);
    cluster.shutdown().await;
}

/// `GET /v1/openapi.json` is the OpenAPI document generated from the handlers:
/// every path and method it lists is served (none answers "no such endpoint"
/// or 405), and it lists every route of the API.
#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let (cluster, base, _) = node().await;
    let (status, doc) = get(&base, "/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with('3'), "{doc}");
    let paths = doc["paths"].as_object().unwrap();
    let mut listed: Vec<&str> = paths.keys().map(String::as_str).collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            "/health",
            "/health/live",
            "/health/ready",
            "/v1/acl/token/self",
            "/v1/acl/tokens",
            "/v1/acl/tokens/{accessor}",
            "/v1/allocations",
            "/v1/allocations/{id}",
            "/v1/allocations/{id}/exec",
            "/v1/allocations/{id}/exec/ws",
            "/v1/allocations/{id}/logs",
            "/v1/allocations/{id}/logs/ws",
            "/v1/allocations/{id}/stats",
            "/v1/cluster/ca",
            "/v1/cluster/ca/rotate",
            "/v1/cluster/ca/rotation",
            "/v1/cluster/certificate",
            "/v1/cluster/gossip-keys",
            "/v1/cluster/gossip-keys/{id}",
            "/v1/cluster/gossip-keys/{id}/use",
            "/v1/cluster/join",
            "/v1/cluster/join-tokens/{role}",
            "/v1/cluster/join-tokens/{role}/rotate",
            "/v1/cluster/peers",
            "/v1/cluster/unlock",
            "/v1/cluster/unlock-key",
            "/v1/deployments",
            "/v1/events",
            "/v1/gc",
            "/v1/jobs",
            "/v1/jobs/plan",
            "/v1/jobs/{name}",
            "/v1/jobs/{name}/deployment",
            "/v1/jobs/{name}/deployment/{action}",
            "/v1/jobs/{name}/periodic/force",
            "/v1/jobs/{name}/revert",
            "/v1/jobs/{name}/scale",
            "/v1/jobs/{name}/scaling",
            "/v1/jobs/{name}/versions",
            "/v1/nodes",
            "/v1/nodes/{id}",
            "/v1/nodes/{id}/drain",
            "/v1/nodes/{id}/undrain",
            "/v1/secrets",
            "/v1/secrets/{name}",
            "/v1/services",
            "/v1/services/{name}",
            "/v1/services/{name}/lb",
            "/v1/status/leader",
            "/v1/volumes",
            "/v1/volumes/{name}",
        ]
    );
    assert!(
        doc["components"]["schemas"]["JobSpec"].is_object(),
        "schemas are included"
    );
    let http = reqwest::Client::new();
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let url = format!(
                "{base}{}",
                path.replace("{id}", "ghost")
                    .replace("{name}", "ghost")
                    .replace("{action}", "promote")
            );
            let r = http
                .request(method.to_uppercase().parse().unwrap(), &url)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            // A stream (the event stream) is served when it starts; its body
            // never ends.
            let streams = r
                .headers()
                .get("content-type")
                .is_some_and(|v| v.to_str().unwrap_or("").contains("ndjson"));
            let body = if streams {
                String::new()
            } else {
                r.text().await.unwrap_or_default()
            };
            assert_ne!(status, 405, "{method} {path} is documented but not served");
            assert!(
                !body.contains("no such endpoint"),
                "{method} {path}: {body}"
            );
        }
    }
    assert_eq!(orion_core::api::openapi().paths.paths.len(), listed.len());
    cluster.shutdown().await;
}

/// `POST /v1/jobs/plan` is a dry run with the real reconciler and scheduler:
/// what a submission would create, stop or change in place, and why it would
/// not fit, with the spec diff; it writes nothing. `check_index` writes only
/// if the job has not changed since the index the plan printed.
#[tokio::test]
async fn plans_write_nothing_and_check_index_refuses_a_stale_write() {
    let (cluster, base, _) = node().await;
    let http = reqwest::Client::new();
    let plan = |spec: serde_json::Value| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let r = http
                .post(format!("{base}/v1/jobs/plan"))
                .json(&spec)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let web = |replicas: u32, env: &str| {
        serde_json::json!({
            "name": "web", "replicas": replicas,
            "task": { "image": "x", "resources": { "cpu": 0.1, "memory_mb": 16 }, "env": { "V": env } }
        })
    };
    let p = plan(web(2, "1")).await;
    assert_eq!(
        (p["create"].as_u64(), p["modify_index"].as_u64()),
        (Some(2), Some(0)),
        "{p}"
    );
    assert_eq!(p["changed"], true);
    assert_eq!(
        cluster.store().replica().read(|s| s.jobs.len()),
        0,
        "a plan writes nothing"
    );

    let stale = http
        .post(format!("{base}/v1/jobs?check_index=5"))
        .json(&web(2, "1"))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 409, "a new job with a non-zero index");
    let (status, _) = post(&base, "application/json", &web(2, "1").to_string()).await;
    assert_eq!(status, 201);
    wait_for("2 placed", || {
        cluster
            .allocations(Some("web"))
            .iter()
            .filter(|a| a.node.is_some())
            .count()
            == 2
    })
    .await;

    let p = plan(web(2, "1")).await;
    assert_eq!(
        (
            p["changed"].as_bool(),
            p["create"].as_u64(),
            p["stop"].as_u64()
        ),
        (Some(false), Some(0), Some(0)),
        "{p}"
    );
    let index = p["modify_index"].as_u64().unwrap();
    assert!(index > 0);
    let p = plan(web(4, "1")).await;
    assert_eq!(
        (
            p["in_place"].as_u64(),
            p["create"].as_u64(),
            p["stop"].as_u64()
        ),
        (Some(2), Some(2), Some(0)),
        "{p}"
    );
    assert!(
        p["diff"]
            .as_str()
            .unwrap()
            .contains("-  \"replicas\": 2,\n+  \"replicas\": 4,"),
        "{p}"
    );
    let p = plan(web(2, "2")).await;
    assert_eq!(
        (
            p["in_place"].as_u64(),
            p["create"].as_u64(),
            p["stop"].as_u64()
        ),
        (Some(0), Some(2), Some(2)),
        "{p}"
    );
    let mut nowhere = web(2, "2");
    nowhere["node_selectors"] = serde_json::json!({ "gpu": "true" });
    let p = plan(nowhere).await;
    assert_eq!(p["unplaced"][0], "1 node: selector gpu=true", "{p}");
    assert_eq!(p["stop"], 0, "the running version would keep running");
    assert_eq!(
        cluster.job("web").unwrap().job.version,
        1,
        "plans wrote nothing"
    );

    // Someone else changes the job: the index the plan printed is stale.
    let (status, _) = post(&base, "application/json", &web(3, "1").to_string()).await;
    assert_eq!(status, 201);
    let r = http
        .post(format!("{base}/v1/jobs?check_index={index}"))
        .json(&web(5, "1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("changed since index"),
        "{body}"
    );
    assert_eq!(
        cluster.job("web").unwrap().job.spec.replicas,
        3,
        "nothing written"
    );
    let fresh = cluster.job("web").unwrap().job.modify_index;
    let r = http
        .post(format!("{base}/v1/jobs?check_index={fresh}"))
        .json(&web(5, "1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    cluster.shutdown().await;
}

async fn send(method: &str, base: &str, path: &str, body: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .request(method.parse().unwrap(), format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Deployments and versions over the API: a new version rolls out and is
/// kept; promote, pause, resume, fail and revert that do not suit answer 404
/// or 409 naming what is missing, and change nothing.
#[tokio::test]
async fn deployments_and_versions_over_the_api_with_their_bad_input() {
    let (cluster, base, _) = node().await;
    let web = |env: &str| {
        serde_json::json!({
            "name": "web", "replicas": 2,
            "task": { "image": "orion-test/web:1", "env": { "V": env },
                      "resources": { "cpu": 0.1, "memory_mb": 32 } },
            "update": { "min_healthy_time": "0s", "max_parallel": 1 }
        })
        .to_string()
    };
    let (status, _) = send("POST", &base, "/v1/jobs/web/deployment/promote", "").await;
    assert_eq!(status, 404, "no such job");
    let (status, _) = post(&base, "application/json", &web("1")).await;
    assert_eq!(status, 201);
    let done = || {
        cluster
            .deployment("web")
            .is_some_and(|d| d.status == orion_core::model::DeploymentStatus::Successful)
    };
    wait_for("the first deployment", done).await;
    let (status, d) = get(&base, "/v1/jobs/web/deployment").await;
    assert_eq!(
        (status, d["status"].as_str()),
        (200, Some("successful")),
        "{d}"
    );

    let facts = || {
        let j = cluster.job("web").unwrap();
        let d = cluster.deployment("web");
        serde_json::to_string(&(j.job, d, cluster.versions("web"))).unwrap()
    };
    let before = facts();
    for (path, body, want, says) in [
        ("/v1/jobs/web/deployment/promote", "", 409, "is successful"),
        ("/v1/jobs/web/deployment/resume", "", 409, "is successful"),
        (
            "/v1/jobs/web/deployment/launch",
            "",
            404,
            "no deployment action",
        ),
        (
            "/v1/jobs/web/revert",
            r#"{"version": 9}"#,
            404,
            "no version 9",
        ),
        ("/v1/jobs/web/revert", "", 409, "no stable version"),
        (
            "/v1/jobs/web/revert",
            r#"{"versoin": 1}"#,
            400,
            "unknown field",
        ),
    ] {
        let (status, e) = send("POST", &base, path, body).await;
        assert_eq!(status, want, "{path} {body}: {e}");
        let msg = e["error"].as_str().unwrap_or_default();
        assert!(msg.contains(says), "{path}: {msg}");
    }
    assert_eq!(facts(), before, "nothing changed");

    let (status, _) = post(&base, "application/json", &web("2")).await;
    assert_eq!(status, 201);
    wait_for("the second deployment", || {
        cluster
            .deployment("web")
            .is_some_and(|d| d.job_version == 2 && !d.status.is_active())
    })
    .await;
    let (status, versions) = get(&base, "/v1/jobs/web/versions").await;
    assert_eq!(status, 200);
    let stable: Vec<(u64, bool)> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["stable"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(stable, [(1, true), (2, true)]);
    let (status, r) = send("POST", &base, "/v1/jobs/web/revert", "").await;
    assert_eq!((status, r["version"].as_u64()), (200, Some(3)), "{r}");
    assert_eq!(cluster.job("web").unwrap().job.spec.task.env["V"], "1");
    let (status, all) = get(&base, "/v1/deployments").await;
    assert_eq!(status, 200);
    assert_eq!(all.as_array().map(Vec::len), Some(3), "{all}");
    cluster.shutdown().await;
}

/// The catalog over the API: running allocations with named ports are
/// instances of their service (tags and metadata from `task.service`), only
/// healthy ones by default, filtered by tag; a blocking read returns as soon as
/// the service changes past its index, and after the wait with the same index
/// when nothing does.
#[tokio::test]
async fn the_service_catalog_and_its_blocking_reads() {
    let (cluster, base, _) = node().await;
    let spec = serde_json::json!({
        "name": "api", "replicas": 2,
        "task": { "image": "orion-test/web:1",
                  "ports": [{ "name": "http", "container_port": 80 }],
                  "resources": { "cpu": 0.1, "memory_mb": 32 },
                  "service": { "name": "backend", "tags": ["v1", "blue"], "meta": { "team": "core" } } }
    });
    let (status, _) = post(&base, "application/json", &spec.to_string()).await;
    assert_eq!(status, 201);
    wait_for("two instances", || cluster.service("backend").1.len() == 2).await;
    let (status, list) = get(&base, "/v1/services").await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["name"], "backend", "{list}");
    assert_eq!(
        (list[0]["instances"].as_u64(), list[0]["healthy"].as_u64()),
        (Some(2), Some(2))
    );
    let r = reqwest::get(format!("{base}/v1/services/backend?tag=blue"))
        .await
        .unwrap();
    let index: u64 = r.headers()["x-orion-index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let inst: Value = r.json().await.unwrap();
    assert_eq!(inst.as_array().map(Vec::len), Some(2), "{inst}");
    assert_eq!(inst[0]["meta"]["team"], "core");
    assert!(inst[0]["port"].as_u64().unwrap() > 0);
    let (_, none) = get(&base, "/v1/services/backend?tag=green").await;
    assert_eq!(none.as_array().map(Vec::len), Some(0));

    // Nothing changes: the wait passes with the same index.
    let start = std::time::Instant::now();
    let r = reqwest::get(format!(
        "{base}/v1/services/backend?index={index}&wait=300ms"
    ))
    .await
    .unwrap();
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        r.headers()["x-orion-index"].to_str().unwrap(),
        index.to_string()
    );

    // A scale-up changes it: the blocking read returns at once with the third.
    let url = format!("{base}/v1/services/backend?index={index}&wait=30s");
    let blocked = tokio::spawn(async move {
        let r = reqwest::get(url).await.unwrap();
        let i: u64 = r.headers()["x-orion-index"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        (i, r.json::<Value>().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut more = spec.clone();
    more["replicas"] = 3.into();
    post(&base, "application/json", &more.to_string()).await;
    let (new_index, _) = tokio::time::timeout(Duration::from_secs(10), blocked)
        .await
        .expect("the blocking read returned")
        .unwrap();
    assert!(new_index > index);
    wait_for("three instances", || {
        cluster.service("backend").1.len() == 3
    })
    .await;
    let (status, e) = get(&base, "/v1/services/backend?index=1&wait=soon").await;
    assert_eq!(status, 400, "{e}");
    cluster.shutdown().await;
}

/// `GET /metrics`: the node's registry in the Prometheus text format, with
/// cluster state read at the scrape and API requests counted by route pattern
/// (checked by promtool when it is installed, as in CI).
#[tokio::test]
async fn metrics_are_served_in_the_prometheus_text_format() {
    let (cluster, base, _) = node().await;
    let (status, _) = post(&base, "application/yaml", WEB).await;
    assert_eq!(status, 201);
    wait_for("running", || {
        cluster
            .allocations(Some("web"))
            .iter()
            .filter(|a| a.state == orion_core::AllocState::Running)
            .count()
            == 2
    })
    .await;
    let _ = get(&base, "/v1/jobs/web").await;
    let r = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(r.status(), 200);
    let ctype = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let text = r.text().await.unwrap();
    for want in [
        "orion_allocations{state=\"running\"} 2",
        "orion_nodes{state=\"ready\"} 1",
        "orion_jobs 1",
        "orion_deployments{state=",
        "orion_api_requests_total{route=\"/v1/jobs/{name}\",method=\"GET\",status=\"200\"} 1",
        "orion_api_request_duration_seconds_bucket{le=\"0.0005\",route=\"/v1/jobs\"}",
        "orion_scheduler_placements_total 2",
        "orion_scheduler_plan_duration_seconds_count",
        "orion_store_applied_index",
        "orion_store_proposals_total{outcome=\"ok\"}",
        "orion_store_commit_duration_seconds_count",
        "orion_store_batch_commands_bucket",
        "orion_store_raft_term",
        "orion_store_last_log_index",
        "orion_store_unapplied_entries 0",
        "orion_store_snapshots_total{kind=\"installed\"} 0",
        "orion_store_snapshot_size_bytes 0",
        "orion_store_snapshot_build_duration_seconds 0",
        "orion_store_is_leader 1",
        "orion_store_leader_changes_total",
        "orion_runtime_operations_total{op=\"create\",outcome=\"ok\"} 2",
        "orion_runtime_operations_total{op=\"list\",outcome=\"ok\"}",
        "orion_runtime_operation_duration_seconds_bucket{le=",
        "orion_node_allocations{state=\"running\",health=\"none\"} 2",
        "orion_gossip_members{state=\"live\"} 1",
        "orion_gossip_members{state=\"dead\"} 0",
        "orion_agent_restarts_total 0",
        "orion_failure_detections_total 0",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    match promtool {
        Ok(mut child) => {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(_) if orion_core::testing::in_ci() => {
            panic!("promtool is not installed in CI")
        }
        Err(_) => eprintln!("SKIP promtool check: promtool is not installed"),
    }
    let open = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .unwrap();
    let ctype = open.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    assert!(open.text().await.unwrap().ends_with("# EOF\n"));
    cluster.shutdown().await;
}

/// The event stream: committed changes as ndjson with their index, topic, key
/// and object; filtered by topic; a client that resumes from the last index
/// it saw gets what followed and nothing twice; SSE on `Accept`.
#[tokio::test]
async fn the_event_stream_resumes_from_an_index() {
    let (cluster, base, _) = node().await;
    let open = |url: String, sse: bool| async move {
        let mut req = reqwest::Client::new().get(url);
        if sse {
            req = req.header("accept", "text/event-stream");
        }
        req.send().await.unwrap()
    };
    let mut jobs = open(format!("{base}/v1/events?topic=job"), false).await;
    let (status, _) = post(&base, "application/yaml", WEB).await;
    assert_eq!(status, 201);
    let mut buf = String::new();
    let first: Value = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(line) = buf.split_once('\n').map(|(l, _)| l.to_string()) {
                return serde_json::from_str(&line).unwrap();
            }
            let chunk = jobs.chunk().await.unwrap().unwrap();
            buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("an event");
    assert_eq!(
        (first["topic"].as_str(), first["key"].as_str()),
        (Some("Job"), Some("web")),
        "{first}"
    );
    assert_eq!(first["object"]["spec"]["name"], "web");
    let index = first["index"].as_u64().unwrap();
    drop(jobs);

    // Resume after that index: every later change, none before, none twice.
    wait_for("running", || {
        cluster
            .allocations(Some("web"))
            .iter()
            .filter(|a| a.state == orion_core::AllocState::Running)
            .count()
            == 2
    })
    .await;
    let mut resumed = open(
        format!("{base}/v1/events?index={index}&topic=allocation"),
        true,
    )
    .await;
    let mut text = String::new();
    let ids: Vec<u64> = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let frames: Vec<u64> = text
                .split("\n\n")
                .filter_map(|f| f.lines().find_map(|l| l.strip_prefix("id: ")))
                .filter_map(|i| i.parse().ok())
                .collect();
            if frames.len() >= 4 {
                return frames;
            }
            let chunk = resumed.chunk().await.unwrap().unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("the changes since");
    assert!(ids.iter().all(|i| *i > index), "{ids:?}");
    assert!(ids.windows(2).all(|w| w[0] <= w[1]), "in order: {ids:?}");
    assert!(text.contains("event: Allocation"), "{text}");
    let (status, e) = get(&base, "/v1/events?topic=pods").await;
    assert_eq!(status, 400, "{e}");
    cluster.shutdown().await;
}

/// Reads ndjson events from `url` until `n` or the stream stays quiet for 2 s;
/// their (index, topic, key).
async fn read_events(url: &str, n: usize) -> Vec<(u64, String, String)> {
    let mut r = reqwest::get(url).await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    let mut buf = String::new();
    let mut out = Vec::new();
    while out.len() < n {
        let Ok(Ok(Some(chunk))) = tokio::time::timeout(Duration::from_secs(2), r.chunk()).await
        else {
            break;
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some((line, rest)) = buf.split_once('\n') {
            let e: Value = serde_json::from_str(line).unwrap();
            buf = rest.to_string();
            out.push((
                e["index"].as_u64().unwrap(),
                e["topic"].as_str().unwrap().to_string(),
                e["key"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

/// A client that reads 50 events, disconnects and resumes from the last
/// index it saw gets every later event exactly once: the two reads together
/// are what one read from the start gives. Filters by topic and key; bad
/// queries are refused naming the parameter.
#[tokio::test]
async fn events_resume_exactly_once_and_filter_by_key() {
    let (cluster, base, _) = node().await;
    let start = cluster.store().replica().applied_index();
    for i in 0..40 {
        let spec = json!({"name": format!("e{i}"), "task": {"image": "orion-test/web:1",
            "resources": {"cpu": 0.01, "memory_mb": 8}}});
        let (status, body) = post(&base, "application/json", &spec.to_string()).await;
        assert_eq!(status, 201, "{body}");
    }
    wait_for("every job placed", || {
        cluster
            .allocations(None)
            .iter()
            .filter(|a| a.state == orion_core::AllocState::Running)
            .count()
            == 40
    })
    .await;
    let everything = read_events(&format!("{base}/v1/events?index={start}"), usize::MAX).await;
    assert!(
        everything.len() > 80,
        "jobs and their allocations: {}",
        everything.len()
    );
    let first = read_events(&format!("{base}/v1/events?index={start}"), 50).await;
    assert_eq!(first.len(), 50);
    // Resume after the last whole index seen (a batch's events share one).
    let last = first.last().unwrap().0;
    let before: Vec<_> = first.iter().filter(|e| e.0 <= last).cloned().collect();
    let later = read_events(&format!("{base}/v1/events?index={last}"), usize::MAX).await;
    let seen_first = everything.iter().filter(|e| e.0 <= last).count();
    let mut joined = everything[..seen_first].to_vec();
    joined.extend(later.iter().cloned());
    assert_eq!(joined, everything, "resumed read = one read from the start");
    assert!(before.len() <= seen_first);
    assert!(later.iter().all(|e| e.0 > last));

    // Filters: one job's events only; a topic with any key.
    let one = read_events(
        &format!("{base}/v1/events?index={start}&topic=job:e7"),
        usize::MAX,
    )
    .await;
    assert!(
        !one.is_empty() && one.iter().all(|e| e.1 == "Job" && e.2 == "e7"),
        "{one:?}"
    );
    let mixed = read_events(
        &format!("{base}/v1/events?index={start}&topic=job:e7&topic=allocation:*"),
        usize::MAX,
    )
    .await;
    assert!(
        mixed
            .iter()
            .all(|e| (e.1 == "Job" && e.2 == "e7") || e.1 == "Allocation"),
        "{mixed:?}"
    );
    assert!(
        mixed.iter().filter(|e| e.1 == "Allocation").count() >= 40,
        "{mixed:?}"
    );

    // Bad input names the parameter.
    for (query, want) in [
        ("index=soon", "index: \"soon\" is not a log index"),
        ("topic=pods", "unknown topic \"pods\""),
        ("topic=job:", "empty key"),
        ("since=4", "unknown query parameter \"since\""),
    ] {
        let (status, e) = get(&base, &format!("/v1/events?{query}")).await;
        assert_eq!(status, 400, "{query}: {e}");
        assert!(e["error"].as_str().unwrap().contains(want), "{query}: {e}");
    }
    let long = format!("/v1/events?topic=job:{}", "x".repeat(10_000));
    let (status, e) = get(&base, &long).await;
    assert_eq!(status, 400, "{e}");
    assert!(e["error"].as_str().unwrap().contains("at most 4096"), "{e}");
    cluster.shutdown().await;
}
