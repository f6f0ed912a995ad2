//! Autolock on whole secure nodes (real Raft store and gossip, HTTP over
//! TLS, fake runtimes).
//!
//! - `a_restarted_autolocked_manager_opens_its_store_only_with_its_key`: the
//!   first start with autolock makes the unlock key and seals the secret
//!   files (neither the data key nor the CA key is anywhere under the data
//!   dir); restarted without the key the node serves only the locked API
//!   (`/health` 503 `locked`, a job route 503 naming the fix) and opens no
//!   store (its Raft port refuses connections, its gossip port is free); a
//!   malformed or wrong key is refused and changes no file; the right key
//!   starts it, and the secret still opens for its task and the job is
//!   still there; a restart given the key opens directly, one given a wrong
//!   key fails naming the problem.
//! - `a_manager_joining_an_autolocked_cluster_takes_its_key`: one key
//!   unlocks every manager (the join grant carries it); a worker is not given
//!   it and keeps its files in clear.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use orion::at_rest::{self, UnlockKey};
use orion::tls::TlsState;
use orion::{Cluster, JobSpec, Node, NodeRole, DATA_KEY_FILE, MANAGEMENT_TOKEN_FILE};
use orion_core::testing::fixtures::files_holding;
use orion_core::testing::FakeRuntime;
use serde_json::{json, Value};

const MARKER: &str = "orion-marker-autolock-5e1f";

/// Free loopback ports for HTTP, Raft (TCP) and gossip (UDP), kept across
/// restarts so the test can reach a node that is still locked.
fn ports() -> (SocketAddr, SocketAddr, SocketAddr) {
    let tcp = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let udp = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    (tcp(), tcp(), udp)
}

fn builder(
    dir: &Path,
    name: &str,
    (http, raft, gossip): (SocketAddr, SocketAddr, SocketAddr),
    runtime: Arc<FakeRuntime>,
) -> orion::NodeBuilder {
    Node::builder()
        .node_id(name)
        .data_dir(dir.join(name))
        .secrets_dir(dir.join("shm"))
        .loopback_ports()
        .http(http)
        .raft(raft)
        .gossip(gossip)
        .loops(orion_core::testing::fast_loops())
        .join_timeout(Duration::from_secs(10))
        .runtime_shared(runtime)
}

fn client(dir: &Path) -> reqwest::Client {
    let ca = std::fs::read_to_string(dir.join("n1/tls/ca.pem")).unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(TlsState::new(&ca).unwrap().client_config())
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
    match r.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

async fn wait_for<F: FnMut() -> bool>(what: &str, mut f: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The secret files' bytes, to show a refused unlock changed nothing.
fn sealed_files(dir: &Path) -> Vec<Vec<u8>> {
    [
        "data.key",
        "tls/ca.json",
        "tls/gossip-keys.json",
        "tls/join-tokens.json",
    ]
    .iter()
    .map(|f| std::fs::read(dir.join(f)).unwrap())
    .collect()
}

/// The value the job's task was started with on this node, once it was.
fn secret_seen(c: &Cluster, runtime: &FakeRuntime) -> Option<Vec<u8>> {
    c.allocations(Some("api"))
        .into_iter()
        .filter_map(|a| runtime.launch_of(&a.id))
        .find_map(|l| l.secret_env.get("DB").map(|v| v.expose().to_vec()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_autolocked_manager_opens_its_store_only_with_its_key() {
    // Secret files on tmpfs: the whole test dir lives there (small files only).
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let d = dir.path();
    let n1 = d.join("n1");
    let addrs = ports();
    let (http_addr, raft_addr, gossip_addr) = addrs;
    let base = format!("https://{http_addr}");

    // First start: the key is made and the files sealed.
    let runtime = Arc::new(FakeRuntime::new());
    let c = builder(d, "n1", addrs, runtime.clone())
        .autolock(true)
        .start()
        .await
        .unwrap();
    c.ready(Duration::from_secs(30)).await.unwrap();
    let key = c.pki().unwrap().unlock_key().unwrap().clone();
    assert!(orion::is_autolocked(&n1));
    for f in [
        "data.key",
        "tls/ca.json",
        "tls/gossip-keys.json",
        "tls/join-tokens.json",
    ] {
        assert!(at_rest::is_sealed_file(&n1.join(f)), "{f} is sealed");
    }
    let data_hex = at_rest::read(&n1.join(DATA_KEY_FILE), Some(&key))
        .unwrap()
        .unwrap();
    let data_hex = std::str::from_utf8(&data_hex).unwrap().trim().to_string();
    assert_eq!(data_hex.len(), 64);
    let ca: Value = serde_json::from_slice(
        &at_rest::read(&n1.join("tls/ca.json"), Some(&key))
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    // A line of the CA key's base64 body stands for the key.
    let ca_key_line = ca["key_pem"]
        .as_str()
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    assert!(ca_key_line.len() > 40, "{ca_key_line}");

    let admin = std::fs::read_to_string(n1.join(MANAGEMENT_TOKEN_FILE))
        .unwrap()
        .trim()
        .to_string();
    let http = client(d);
    let data = base64::engine::general_purpose::STANDARD.encode(MARKER);
    let (status, meta) = call(
        &http,
        "POST",
        &format!("{base}/v1/secrets"),
        &admin,
        Some(json!({ "name": "db", "data_base64": data })),
    )
    .await;
    assert_eq!(status, 201, "{meta}");
    c.submit(
        JobSpec::service("api", "img")
            .resources(0.1, 32)
            .env_from_secret("DB", "db"),
    )
    .await
    .unwrap();
    wait_for("the task started with its secret", || {
        secret_seen(&c, &runtime).is_some()
    })
    .await;
    c.shutdown().await;
    for needle in [data_hex.as_str(), ca_key_line.as_str(), &key.to_text()] {
        assert_eq!(
            files_holding(&n1, needle.as_bytes()),
            Vec::<String>::new(),
            "a key is in clear on disk"
        );
    }

    // Restarted without the key: locked.
    let runtime = Arc::new(FakeRuntime::new());
    let starting = tokio::spawn(builder(d, "n1", addrs, runtime.clone()).start());
    let mut health = (0, Value::Null);
    for _ in 0..200 {
        health = call(&http, "GET", &format!("{base}/health"), "", None).await;
        if health.0 != 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(health.0, 503, "{}", health.1);
    assert_eq!(health.1["locked"], true, "{}", health.1);
    let (status, body) = call(&http, "GET", &format!("{base}/v1/jobs"), &admin, None).await;
    assert_eq!(status, 503);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("orion-node cluster unlock"),
        "{body}"
    );
    // No store: its Raft port is not even bound, nor is gossip.
    assert!(tokio::net::TcpStream::connect(raft_addr).await.is_err());
    drop(std::net::UdpSocket::bind(gossip_addr).expect("the gossip port is free"));
    assert!(!starting.is_finished());

    // Refused keys change nothing.
    let before = sealed_files(&n1);
    let unlock = format!("{base}/v1/cluster/unlock");
    let (status, body) = call(&http, "POST", &unlock, "", Some(json!({"key": "nope"}))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("malformed unlock key"));
    let wrong = UnlockKey::generate();
    let (status, body) = call(
        &http,
        "POST",
        &unlock,
        "",
        Some(json!({"key": wrong.to_text().as_str()})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(!body.to_string().contains(&wrong.to_text()[9..]), "{body}");
    assert_eq!(sealed_files(&n1), before);
    assert!(!starting.is_finished());

    // The right key: the node starts, on the same listener.
    let (status, body) = call(
        &http,
        "POST",
        &unlock,
        "",
        Some(json!({"key": key.to_text().as_str()})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let c = tokio::time::timeout(Duration::from_secs(30), starting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    c.ready(Duration::from_secs(30)).await.unwrap();
    assert!(tokio::net::TcpStream::connect(raft_addr).await.is_ok());
    let (status, list) = call(&http, "GET", &format!("{base}/v1/secrets"), &admin, None).await;
    assert_eq!(
        (status, list[0]["name"].clone()),
        (200, json!("db")),
        "{list}"
    );
    let (status, job) = call(&http, "GET", &format!("{base}/v1/jobs/api"), &admin, None).await;
    assert_eq!(status, 200, "{job}");
    wait_for(
        "the task restarted with its secret, opened after the unlock",
        || secret_seen(&c, &runtime).as_deref() == Some(MARKER.as_bytes()),
    )
    .await;
    let (status, _) = call(&http, "POST", &unlock, "", Some(json!({"key": "x"}))).await;
    assert_eq!(status, 409, "a running node is not locked");
    c.shutdown().await;

    // Given a wrong key at start: refused, naming the problem.
    let e = builder(d, "n1", addrs, Arc::new(FakeRuntime::new()))
        .unlock_key(wrong)
        .start()
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("unlock key given is not the one"), "{e}");
    assert!(!e.contains(&key.to_text()[9..]), "{e}");
    // Given the right one: opens directly.
    let c = builder(d, "n1", addrs, Arc::new(FakeRuntime::new()))
        .unlock_key(key.clone())
        .start()
        .await
        .unwrap();
    c.ready(Duration::from_secs(30)).await.unwrap();
    assert_eq!(c.pki().unwrap().unlock_key(), Some(&key));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_joining_an_autolocked_cluster_takes_its_key() {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let d = dir.path();
    let n1 = builder(d, "n1", ports(), Arc::new(FakeRuntime::new()))
        .autolock(true)
        .start()
        .await
        .unwrap();
    n1.ready(Duration::from_secs(30)).await.unwrap();
    let key = n1.pki().unwrap().unlock_key().unwrap().clone();
    let first = n1.http_addr().unwrap().to_string();
    let join = |name: &str, role: NodeRole| {
        let token = n1.join_token(role).unwrap();
        builder(d, name, ports(), Arc::new(FakeRuntime::new()))
            .join([first.clone()])
            .role(role)
            .join_token(token)
    };
    let n2 = join("n2", NodeRole::Manager).start().await.unwrap();
    n2.ready(Duration::from_secs(30)).await.unwrap();
    assert_eq!(n2.pki().unwrap().unlock_key(), Some(&key));
    for f in [DATA_KEY_FILE, "tls/ca.json", "tls/gossip-keys.json"] {
        let path = d.join("n2").join(f);
        assert!(at_rest::is_sealed_file(&path), "{f}");
        at_rest::read(&path, Some(&key)).unwrap();
    }
    let n3 = join("n3", NodeRole::Worker).start().await.unwrap();
    n3.ready(Duration::from_secs(30)).await.unwrap();
    assert!(n3.pki().unwrap().unlock_key().is_none());
    assert!(!orion::is_autolocked(&d.join("n3")));
    for c in [n3, n2, n1] {
        c.shutdown().await;
    }
}
