//! Secrets over the HTTP API of one in-process node on the fakes (`MemStore`,
//! `FakeRuntime`): written and listed but never read back, bad input refused
//! naming the field or the cap with nothing written, a node without a data
//! key refusing, and a task that uses a missing secret waiting, naming it,
//! until it exists.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use orion_core::secret::{DataKey, Plaintext};
use orion_core::testing::{FakeRuntime, MemStore};
use orion_core::{AllocState, Cluster, Command, NodeProfile, Resources};
use serde_json::{json, Value};

/// The value the tests write: it must appear in no answer.
const MARKER: &str = "orion-marker-3e1d8b0c5a";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

struct Node {
    cluster: Cluster,
    base: String,
    runtime: Arc<FakeRuntime>,
    _files: tempfile::TempDir,
}

/// One node, holding `key`, its secret files under a fresh dir of /dev/shm.
async fn node(key: Option<DataKey>) -> Node {
    let runtime = Arc::new(FakeRuntime::new());
    let files = tempfile::tempdir_in("/dev/shm").unwrap();
    let mut b = Cluster::builder()
        .node({
            let mut p = NodeProfile::default();
            p.id = Some("n1".into());
            p.capacity = Some(Resources {
                cpu: 4.0,
                memory_mb: 3900,
                disk_mb: 1000,
            });
            p
        })
        .runtime_shared(runtime.clone())
        .store(MemStore::new("n1"))
        .config(orion_core::testing::fast_loops())
        .secrets_dir(files.path())
        .http("127.0.0.1:0".parse().unwrap());
    if let Some(k) = key {
        b = b.data_key(k);
    }
    let cluster = b.start().await.unwrap();
    cluster.ready(Duration::from_secs(5)).await.unwrap();
    let base = format!("http://{}", cluster.http_addr().unwrap());
    Node {
        cluster,
        base,
        runtime,
        _files: files,
    }
}

async fn send(method: &str, url: &str, body: Option<Value>) -> (u16, Value, String) {
    let mut req = reqwest::Client::new().request(method.parse().unwrap(), url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
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

fn secrets_of(c: &Cluster) -> std::collections::BTreeMap<String, orion_core::secret::Secret> {
    c.store().replica().read(|s| s.secrets.clone())
}

/// Writing a secret twice makes versions 1 and 2; lists and reads show
/// names, versions and times, never the value (nor its base64); the state
/// holds only ciphertext that opens with the node's key; delete forgets it,
/// and then it is 404.
#[tokio::test]
async fn secrets_are_written_and_listed_but_never_read_back() {
    let key = DataKey::generate();
    let n = node(Some(key.clone())).await;
    let url = format!("{}/v1/secrets", n.base);
    let (status, meta, _) = send(
        "POST",
        &url,
        Some(json!({ "name": "db", "data_base64": b64(b"first") })),
    )
    .await;
    assert_eq!((status, &meta["version"]), (201, &json!(1)), "{meta}");
    let (status, meta, text) = send(
        "POST",
        &url,
        Some(json!({ "name": "db", "data_base64": b64(MARKER.as_bytes()) })),
    )
    .await;
    assert_eq!((status, &meta["version"]), (201, &json!(2)), "{meta}");
    assert!(!text.contains(MARKER) && !text.contains(&b64(MARKER.as_bytes())));

    for path in [
        "/v1/secrets",
        "/v1/secrets/db",
        "/v1/secrets?consistent=true",
    ] {
        let (status, body, text) = send("GET", &format!("{}{path}", n.base), None).await;
        assert_eq!(status, 200, "{path}: {text}");
        let one = if body.is_array() { &body[0] } else { &body };
        assert_eq!((&one["name"], &one["version"]), (&json!("db"), &json!(2)));
        assert_eq!(one["versions"].as_array().unwrap().len(), 2, "{text}");
        assert_eq!(one["versions"][1]["key_id"], json!(key.id()));
        for word in [
            MARKER,
            &b64(MARKER.as_bytes()),
            "ciphertext",
            "nonce",
            "data",
        ] {
            assert!(!text.contains(word), "{path} shows {word}: {text}");
        }
    }
    let stored = &secrets_of(&n.cluster)["db"];
    let sealed = stored.current().unwrap();
    assert!(!sealed.ciphertext.contains(MARKER));
    let opened = orion_core::secret::open(&key, "db", sealed).unwrap();
    assert_eq!(opened.expose(), MARKER.as_bytes());
    let snapshot = n.cluster.store().replica().read(|s| s.to_snapshot());
    assert!(!String::from_utf8_lossy(&snapshot).contains(MARKER));

    let (status, body, _) = send("DELETE", &format!("{url}/db"), None).await;
    assert_eq!((status, &body["deleted"]), (200, &json!(true)), "{body}");
    let (status, _, _) = send("GET", &format!("{url}/db"), None).await;
    assert_eq!(status, 404);
    let (status, _, _) = send("GET", &url, None).await;
    assert_eq!(status, 200);
    assert!(secrets_of(&n.cluster).is_empty());
    n.cluster.shutdown().await;
}

/// A value over 1 MiB gets 413 naming the cap, a body over its route's cap
/// too; a name that is not DNS-safe, bad base64 and unknown or missing
/// fields get 400 naming the field; deleting a missing secret is 404. The
/// state is the same after each.
#[tokio::test]
async fn bad_secret_input_is_refused_and_writes_nothing() {
    let n = node(Some(DataKey::generate())).await;
    let url = format!("{}/v1/secrets", n.base);
    send(
        "POST",
        &url,
        Some(json!({ "name": "db", "data_base64": b64(b"kept") })),
    )
    .await;
    let before = secrets_of(&n.cluster);
    assert_eq!(before["db"].version(), 1);

    let big = b64(&vec![7u8; 1024 * 1024 + 1]);
    let cases = [
        (json!({ "name": "db", "data_base64": big }), 413, "1024 KiB"),
        (
            json!({ "name": "Not_DNS", "data_base64": b64(b"x") }),
            400,
            "name",
        ),
        (
            json!({ "name": "db", "data_base64": "%%% not base64" }),
            400,
            "data_base64",
        ),
        (
            json!({ "name": "db", "data_base64": b64(b"x"), "data": "x" }),
            400,
            "unknown field `data`",
        ),
        (json!({ "name": "db" }), 400, "data_base64"),
    ];
    for (body, want, names) in cases {
        let (status, answer, text) = send("POST", &url, Some(body)).await;
        assert_eq!(status, want, "{text}");
        assert!(text.contains(names), "{text}");
        assert!(!text.contains("%%%"), "the input is not echoed: {text}");
        if names == "name" {
            assert_eq!(answer["errors"][0]["field"], "name", "{answer}");
        }
    }
    // A body past the route's cap is refused before it is read through.
    let huge = json!({ "name": "db", "data_base64": "A".repeat(3 * 1024 * 1024) });
    let (status, _, text) = send("POST", &url, Some(huge)).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("2048 KiB limit of /v1/secrets"), "{text}");
    let (status, body, _) = send("DELETE", &format!("{url}/nope"), None).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("nope"), "{body}");
    assert_eq!(secrets_of(&n.cluster), before, "nothing was written");
    n.cluster.shutdown().await;
}

/// Without a data key a node refuses to seal (503, saying why) and writes
/// nothing; a task using a secret sealed elsewhere is not placed on it, and
/// its allocation says the node holds no key.
#[tokio::test]
async fn a_node_without_a_data_key_refuses_secrets_and_their_tasks() {
    let n = node(None).await;
    let url = format!("{}/v1/secrets", n.base);
    let (status, body, _) = send(
        "POST",
        &url,
        Some(json!({ "name": "db", "data_base64": b64(b"x") })),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("no data key"),
        "{body}"
    );
    assert!(secrets_of(&n.cluster).is_empty());

    // Sealed by a node that holds the cluster's key.
    let key = DataKey::generate();
    let sealed = orion_core::secret::seal(&key, "db", 1, &Plaintext::new(b"x".to_vec()), 1);
    n.cluster
        .propose(Command::PutSecret {
            name: "db".into(),
            version: sealed,
        })
        .await
        .unwrap();
    n.cluster
        .submit(orion_core::JobSpec::service("api", "img").secret("db"))
        .await
        .unwrap();
    let why = || {
        n.cluster
            .allocations(Some("api"))
            .first()
            .and_then(|a| a.message.clone())
            .unwrap_or_default()
    };
    wait_for("the reason", || why().contains("no data key on node")).await;
    assert!(n.runtime.containers().is_empty());
    n.cluster.shutdown().await;
}

/// A task that uses a secret that does not exist is not started: its
/// allocation waits, naming the secret. Once the secret is written the task
/// starts with it; the job as the API shows it holds only the references, in
/// no answer is the value, and the secret cannot be deleted while the job
/// runs.
#[tokio::test]
async fn a_task_waits_for_a_missing_secret_naming_it_then_starts_with_it() {
    let n = node(Some(DataKey::generate())).await;
    let spec = json!({
        "name": "api",
        "task": {
            "image": "orion-test/web:1",
            "secrets": [{ "name": "db" }, { "name": "db", "target": "/etc/db", "mode": "0440" }],
            "env_from_secret": { "DB_PASSWORD": "db" },
        },
    });
    let (status, body, _) = send("POST", &format!("{}/v1/jobs", n.base), Some(spec)).await;
    assert_eq!(status, 201, "{body}");
    let alloc = || n.cluster.allocations(Some("api")).into_iter().next();
    wait_for("a pending allocation naming the secret", || {
        alloc().is_some_and(|a| {
            a.state == AllocState::Pending
                && a.message.as_deref() == Some("1 node: secret db does not exist")
        })
    })
    .await;
    assert!(n.runtime.containers().is_empty(), "nothing is started");
    let (_, job, _) = send("GET", &format!("{}/v1/jobs/api", n.base), None).await;
    assert!(
        job["unplaced"]
            .as_str()
            .unwrap_or("")
            .contains("secret db does not exist"),
        "{job}"
    );

    let (status, _, _) = send(
        "POST",
        &format!("{}/v1/secrets", n.base),
        Some(json!({ "name": "db", "data_base64": b64(MARKER.as_bytes()) })),
    )
    .await;
    assert_eq!(status, 201);
    wait_for("the task running", || {
        alloc().is_some_and(|a| a.state == AllocState::Running)
    })
    .await;
    let a = alloc().unwrap();
    let launch = n.runtime.launch_of(&a.id).unwrap();
    assert_eq!(launch.secret_env["DB_PASSWORD"].expose(), MARKER.as_bytes());
    let files: Vec<String> = launch
        .task
        .volumes
        .iter()
        .filter(|v| v.read_only && v.target.contains("db"))
        .map(|v| std::fs::read_to_string(v.host_path.as_ref().unwrap()).unwrap())
        .collect();
    assert_eq!(files, [MARKER, MARKER]);

    let (_, job, text) = send("GET", &format!("{}/v1/jobs/api", n.base), None).await;
    assert_eq!(
        job["spec"]["task"]["secrets"],
        json!([{ "name": "db" }, { "name": "db", "target": "/etc/db", "mode": "0440" }])
    );
    assert_eq!(
        job["spec"]["task"]["env_from_secret"],
        json!({ "DB_PASSWORD": "db" })
    );
    for path in [
        "/v1/jobs",
        "/v1/allocations",
        &format!("/v1/allocations/{}", a.id),
        "/v1/secrets",
        "/v1/nodes",
    ] {
        let (_, _, t) = send("GET", &format!("{}{path}", n.base), None).await;
        assert!(!t.contains(MARKER), "{path}: {t}");
    }
    assert!(!text.contains(MARKER), "{text}");

    let (status, body, _) = send("DELETE", &format!("{}/v1/secrets/db", n.base), None).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("used by job api"));
    n.cluster.stop_job("api", false).await.unwrap();
    wait_for("the task stopped", || n.runtime.running(&a.id) == 0).await;
    let dir = std::path::Path::new(launch.task.volumes[0].host_path.as_ref().unwrap())
        .parent()
        .unwrap()
        .to_path_buf();
    wait_for("its secret files removed", || !dir.exists()).await;
    let (status, _, _) = send("DELETE", &format!("{}/v1/secrets/db", n.base), None).await;
    assert_eq!(status, 200);
    n.cluster.shutdown().await;
}
