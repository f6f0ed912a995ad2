//! Secrets on whole nodes (real Raft store and gossip, fake runtimes): the
//! first node makes the data key and keeps it in `<data-dir>/data.key` (0600)
//! across restarts; a node that joins a secure cluster receives the key with
//! its certificate and can seal and open what the first sealed; the secrets
//! routes ask for the `operator` scope. In an insecure-dev cluster a joiner
//! given no key holds none, seals nothing (503) and gets no task that uses
//! secrets.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use orion::secret::DataKey;
use orion::tls::TlsState;
use orion::{AllocState, Cluster, JobSpec, Node, NodeRole, DATA_KEY_FILE, MANAGEMENT_TOKEN_FILE};
use orion_core::testing::FakeRuntime;
use serde_json::{json, Value};

const MARKER: &str = "orion-marker-91c2d7f04b";

struct Started {
    cluster: Cluster,
    runtime: Arc<FakeRuntime>,
}

/// Starts `name`; `join` is the member to join through and, for a secure
/// cluster, the join token.
async fn start(
    dir: &Path,
    name: &str,
    join: Option<(&Cluster, Option<(NodeRole, String)>)>,
    insecure: bool,
) -> Started {
    let runtime = Arc::new(FakeRuntime::new());
    let mut b = Node::builder()
        .node_id(name)
        .data_dir(dir.join(name))
        .secrets_dir(dir.join("shm"))
        .insecure_dev(insecure)
        .loopback_ports()
        .loops(orion_core::testing::fast_loops())
        .join_timeout(Duration::from_secs(10))
        .runtime_shared(runtime.clone());
    if let Some((first, token)) = join {
        b = b.join([first.http_addr().unwrap().to_string()]);
        if let Some((role, t)) = token {
            b = b.role(role).join_token(t);
        }
    }
    let cluster = b.start().await.unwrap();
    cluster.ready(Duration::from_secs(30)).await.unwrap();
    Started { cluster, runtime }
}

fn read_key(dir: &Path) -> DataKey {
    DataKey::from_hex(&std::fs::read_to_string(dir.join(DATA_KEY_FILE)).unwrap()).unwrap()
}

/// A client trusting the cluster CA kept by `n1` (plain HTTP works too).
fn client(dir: &Path) -> reqwest::Client {
    let b = reqwest::Client::builder();
    match std::fs::read_to_string(dir.join("n1/tls/ca.pem")) {
        Ok(ca) => b.use_preconfigured_tls(TlsState::new(&ca).unwrap().client_config()),
        Err(_) => b,
    }
    .build()
    .unwrap()
}

async fn call(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = http
        .request(method.parse().unwrap(), url)
        .bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn wait_for<F: Fn() -> bool>(what: &str, f: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn running(c: &Cluster, job: &str) -> Vec<String> {
    let mut on: Vec<String> = c
        .allocations(Some(job))
        .into_iter()
        .filter(|a| a.state == AllocState::Running)
        .map(|a| a.node.unwrap_or_default())
        .collect();
    on.sort();
    on
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_key_is_made_once_carried_by_the_join_and_secrets_open_where_it_is() {
    // Secret files on tmpfs: the whole test dir lives there (small files only).
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let d = dir.path();
    let http = || client(d);
    let n1 = start(d, "n1", None, false).await;
    let key_file = d.join("n1").join(DATA_KEY_FILE);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the key file is the owner's only");
    let key = read_key(&d.join("n1"));
    assert_eq!(n1.cluster.data_key_id(), Some(key.id()));
    let admin = std::fs::read_to_string(d.join("n1").join(MANAGEMENT_TOKEN_FILE))
        .unwrap()
        .trim()
        .to_string();

    // Joiners receive the key with their certificate (none given here).
    let manager = n1.cluster.join_token(NodeRole::Manager).unwrap();
    let worker = n1.cluster.join_token(NodeRole::Worker).unwrap();
    let n2 = start(
        d,
        "n2",
        Some((&n1.cluster, Some((NodeRole::Manager, manager)))),
        false,
    )
    .await;
    let n3 = start(
        d,
        "n3",
        Some((&n1.cluster, Some((NodeRole::Worker, worker)))),
        false,
    )
    .await;
    for n in ["n2", "n3"] {
        assert_eq!(read_key(&d.join(n)), key, "{n} keeps the cluster's key");
    }
    assert_eq!(n3.cluster.data_key_id(), Some(key.id()));

    // Sealed on a follower (forwarded to the leader as ciphertext).
    let b2 = format!("https://{}", n2.cluster.http_addr().unwrap());
    let data = base64::engine::general_purpose::STANDARD.encode(MARKER);
    let body = json!({ "name": "db", "data_base64": data });
    let url = format!("{b2}/v1/secrets");
    let (status, meta) = call(&http(), "POST", &url, &admin, Some(body)).await;
    assert_eq!(status, 201, "{meta}");

    n1.cluster
        .submit(
            JobSpec::service("api", "img")
                .replicas(3)
                .resources(0.1, 32)
                .distinct_hosts(true)
                .env_from_secret("DB", "db"),
        )
        .await
        .unwrap();
    wait_for("three replicas running", || {
        running(&n1.cluster, "api").len() == 3
    })
    .await;
    // Every node opened what n2 sealed.
    for n in [&n1, &n2, &n3] {
        let a = n
            .cluster
            .allocations(Some("api"))
            .into_iter()
            .find(|a| a.node.as_deref() == Some(n.cluster.node_id().as_str()))
            .unwrap();
        let launch = n.runtime.launch_of(&a.id).unwrap();
        assert_eq!(launch.secret_env["DB"].expose(), MARKER.as_bytes());
    }

    // The secrets routes ask for operator: a read token is refused.
    let b1 = format!("https://{}", n1.cluster.http_addr().unwrap());
    let (_, t) = call(
        &http(),
        "POST",
        &format!("{b1}/v1/acl/tokens"),
        &admin,
        Some(json!({ "name": "reader", "scopes": ["read"] })),
    )
    .await;
    let reader = t["secret"].as_str().unwrap();
    let url = format!("{b1}/v1/secrets");
    let (status, _) = call(&http(), "GET", &url, reader, None).await;
    assert_eq!(status, 403);
    let (status, list) = call(&http(), "GET", &url, &admin, None).await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["version"], 1);
    assert!(!list.to_string().contains(MARKER));

    // A restart reads the same key back (n2 keeps the quorum with it).
    n1.cluster.shutdown().await;
    let again = start(d, "n1", None, false).await;
    assert_eq!(again.cluster.data_key_id(), Some(key.id()));
    assert_eq!(read_key(&d.join("n1")), key);
    for c in [again.cluster, n3.cluster, n2.cluster] {
        c.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insecure_joiner_without_the_key_seals_nothing_and_runs_no_secret_task() {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let d = dir.path();
    let n1 = start(d, "n1", None, true).await;
    let key = read_key(&d.join("n1"));
    let n2 = start(d, "n2", Some((&n1.cluster, None)), true).await;
    assert_eq!(n2.cluster.data_key_id(), None);
    assert!(!d.join("n2").join(DATA_KEY_FILE).exists());

    let data = base64::engine::general_purpose::STANDARD.encode(MARKER);
    let body = json!({ "name": "db", "data_base64": data });
    // The keyless node cannot seal; the first can.
    let b2 = format!("http://{}", n2.cluster.http_addr().unwrap());
    let (status, e) = call(
        &client(d),
        "POST",
        &format!("{b2}/v1/secrets"),
        "",
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 503, "{e}");
    let b1 = format!("http://{}", n1.cluster.http_addr().unwrap());
    let (status, e) = call(
        &client(d),
        "POST",
        &format!("{b1}/v1/secrets"),
        "",
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{e}");

    // One replica per node: the keyless node's waits, saying why.
    n1.cluster
        .submit(
            JobSpec::service("api", "img")
                .replicas(2)
                .resources(0.1, 32)
                .distinct_hosts(true)
                .env_from_secret("DB", "db"),
        )
        .await
        .unwrap();
    wait_for("one replica running", || {
        running(&n1.cluster, "api") == ["n1"]
    })
    .await;
    wait_for("the second waiting for a key", || {
        n1.cluster.allocations(Some("api")).iter().any(|a| {
            a.state == AllocState::Pending
                && a.message
                    .as_deref()
                    .is_some_and(|m| m.contains("no data key on node"))
        })
    })
    .await;
    assert!(n2.runtime.containers().is_empty());
    let a = n1
        .cluster
        .allocations(Some("api"))
        .into_iter()
        .find(|a| a.state == AllocState::Running)
        .unwrap();
    assert_eq!(
        n1.runtime.launch_of(&a.id).unwrap().secret_env["DB"].expose(),
        MARKER.as_bytes()
    );
    assert_eq!(n1.cluster.data_key_id(), Some(key.id()));
    for c in [n2.cluster, n1.cluster] {
        c.shutdown().await;
    }
}
