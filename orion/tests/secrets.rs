//! Secrets on whole nodes (real Raft store and gossip, tokens on, fake
//! runtimes): the first node makes the data key and keeps it in
//! `<data-dir>/data.key` (0600) across restarts; a node that joins is given
//! the key and can seal and open what the first sealed; a node without the
//! key gets no task that uses secrets; the secrets routes ask for the
//! `operator` scope.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use orion::secret::DataKey;
use orion::{AllocState, Cluster, JobSpec, Node, DATA_KEY_FILE, MANAGEMENT_TOKEN_FILE};
use orion_core::testing::FakeRuntime;
use serde_json::{json, Value};

const MARKER: &str = "orion-marker-91c2d7f04b";

struct Started {
    cluster: Cluster,
    runtime: Arc<FakeRuntime>,
}

async fn start(
    dir: &Path,
    name: &str,
    join: Option<(&Cluster, &str)>,
    key: Option<DataKey>,
) -> Started {
    let runtime = Arc::new(FakeRuntime::new());
    let mut b = Node::builder()
        .node_id(name)
        .data_dir(dir.join(name))
        .secrets_dir(dir.join("shm"))
        .loopback_ports()
        .loops(orion_core::testing::fast_loops())
        .join_timeout(Duration::from_secs(10))
        .runtime_shared(runtime.clone());
    if let Some((first, token)) = join {
        b = b
            .join([first.http_addr().unwrap().to_string()])
            .token(token);
    }
    if let Some(k) = key {
        b = b.data_key(k);
    }
    let cluster = b.start().await.unwrap();
    cluster.ready(Duration::from_secs(30)).await.unwrap();
    Started { cluster, runtime }
}

fn read_key(dir: &Path) -> DataKey {
    DataKey::from_hex(&std::fs::read_to_string(dir.join(DATA_KEY_FILE)).unwrap()).unwrap()
}

async fn call(method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = reqwest::Client::new()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_key_is_made_once_given_to_joiners_and_secrets_open_where_it_is() {
    // Secret files on tmpfs: the whole test dir lives there (small files only).
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let n1 = start(dir.path(), "n1", None, None).await;
    let key_file = dir.path().join("n1").join(DATA_KEY_FILE);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the key file is the owner's only");
    let key = read_key(&dir.path().join("n1"));
    assert_eq!(n1.cluster.data_key_id(), Some(key.id()));
    let admin = std::fs::read_to_string(dir.path().join("n1").join(MANAGEMENT_TOKEN_FILE))
        .unwrap()
        .trim()
        .to_string();

    // Given the key, a joiner keeps it; without one, a node holds none.
    let n2 = start(
        dir.path(),
        "n2",
        Some((&n1.cluster, &admin)),
        Some(key.clone()),
    )
    .await;
    assert_eq!(read_key(&dir.path().join("n2")), key);
    let n3 = start(dir.path(), "n3", Some((&n1.cluster, &admin)), None).await;
    assert_eq!(n3.cluster.data_key_id(), None);
    assert!(!dir.path().join("n3").join(DATA_KEY_FILE).exists());

    // Sealed on a follower (forwarded to the leader as ciphertext).
    let b2 = format!("http://{}", n2.cluster.http_addr().unwrap());
    let data = base64::engine::general_purpose::STANDARD.encode(MARKER);
    let body = json!({ "name": "db", "data_base64": data });
    let (status, meta) = call("POST", &format!("{b2}/v1/secrets"), &admin, Some(body)).await;
    assert_eq!(status, 201, "{meta}");
    // A node without the key cannot seal.
    let b3 = format!("http://{}", n3.cluster.http_addr().unwrap());
    let body = json!({ "name": "db", "data_base64": data });
    let (status, e) = call("POST", &format!("{b3}/v1/secrets"), &admin, Some(body)).await;
    assert_eq!(status, 503, "{e}");

    // One replica per node: the keyless node's waits, saying why.
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
    let running = |c: &Cluster| {
        c.allocations(Some("api"))
            .into_iter()
            .filter(|a| a.state == AllocState::Running)
            .map(|a| a.node.unwrap_or_default())
            .collect::<Vec<_>>()
    };
    wait_for("two replicas running", || running(&n1.cluster).len() == 2).await;
    let mut on = running(&n1.cluster);
    on.sort();
    assert_eq!(on, ["n1", "n2"]);
    wait_for("the third waiting for a key", || {
        n1.cluster.allocations(Some("api")).iter().any(|a| {
            a.state == AllocState::Pending
                && a.message
                    .as_deref()
                    .is_some_and(|m| m.contains("no data key on node"))
        })
    })
    .await;
    assert!(n3.runtime.containers().is_empty());
    // Both keyed nodes opened what n2 sealed.
    for n in [&n1, &n2] {
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
    let b1 = format!("http://{}", n1.cluster.http_addr().unwrap());
    let (_, t) = call(
        "POST",
        &format!("{b1}/v1/acl/tokens"),
        &admin,
        Some(json!({ "name": "reader", "scopes": ["read"] })),
    )
    .await;
    let reader = t["secret"].as_str().unwrap();
    let (status, _) = call("GET", &format!("{b1}/v1/secrets"), reader, None).await;
    assert_eq!(status, 403);
    let (status, list) = call("GET", &format!("{b1}/v1/secrets"), &admin, None).await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["version"], 1);
    assert!(!list.to_string().contains(MARKER));

    // A restart reads the same key back (n2 and n3 keep the quorum).
    n1.cluster.shutdown().await;
    let again = start(dir.path(), "n1", None, None).await;
    assert_eq!(again.cluster.data_key_id(), Some(key.id()));
    assert_eq!(read_key(&dir.path().join("n1")), key);
    for c in [again.cluster, n3.cluster, n2.cluster] {
        c.shutdown().await;
    }
}
