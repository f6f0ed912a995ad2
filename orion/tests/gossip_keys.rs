//! Sealed gossip on whole secure nodes (real Raft store, gossip over UDP on
//! 127.0.0.1, HTTP over TLS, fake runtimes): the first node makes the gossip
//! key and commits the keyring sealed under the data key; joiners receive it
//! with their certificate and gossip sealed from their first packet; a
//! clear-text stranger's packets are dropped and counted in `/metrics`; a
//! rotation through the API (install, use, remove) reaches every node's
//! transport, after which a stranger holding the old key is dropped too,
//! while the members keep gossiping.

use orion_core::testing::fixtures::files_holding;
use std::path::Path;
use std::time::Duration;

use orion::tls::TlsState;
use orion::{Cluster, GossipConfig, Node, NodeRole, MANAGEMENT_TOKEN_FILE};
use orion_core::membership::{Member, Membership};
use orion_core::testing::FakeRuntime;
use orion_core::{NodeAddrs, Resources};
use orion_gossip::keyring::{GossipKey, Keyring};
use orion_gossip::ChitchatMembership;
use serde_json::{json, Value};

async fn start(dir: &Path, name: &str, join: Option<(&Cluster, NodeRole, String)>) -> Cluster {
    let mut b = Node::builder()
        .node_id(name)
        .data_dir(dir.join(name))
        .loopback_ports()
        .loops(orion_core::testing::fast_loops())
        .join_timeout(Duration::from_secs(10))
        .runtime(FakeRuntime::new());
    if let Some((first, role, token)) = join {
        b = b
            .join([first.http_addr().unwrap().to_string()])
            .role(role)
            .join_token(token);
    }
    let c = b.start().await.unwrap();
    c.ready(Duration::from_secs(30)).await.unwrap();
    c
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A counter's value from `/metrics` (0 when absent).
    async fn metric(&self, series: &str) -> f64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

fn gossip_addr(c: &Cluster) -> std::net::SocketAddr {
    let me = c
        .membership()
        .live()
        .into_iter()
        .find(|m| m.id == *c.node_id())
        .unwrap();
    me.addrs.gossip.unwrap().parse().unwrap()
}

/// A gossip node that is not a member, seeded with `seed`, with `key` or
/// in clear text.
async fn stranger(seed: std::net::SocketAddr, key: Option<GossipKey>) -> ChitchatMembership {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut g = GossipConfig::new(Member {
        id: "stranger".into(),
        generation: 0,
        addrs: NodeAddrs {
            http: "127.0.0.1:1".into(),
            raft: None,
            gossip: Some(port.to_string()),
        },
        role: NodeRole::Manager,
        capacity: Resources::ZERO,
        used: Resources::ZERO,
        tags: Default::default(),
        load: Default::default(),
        suspects: Default::default(),
        starved: false,
    });
    g.listen_addr = port;
    g.seeds = vec![seed.to_string()];
    g.keyring = key.map(Keyring::new);
    ChitchatMembership::start(g).await.unwrap()
}

fn kept_primary(dir: &Path, node: &str) -> String {
    let text = std::fs::read(dir.join(node).join("tls/gossip-keys.json"))
        .unwrap_or_else(|e| panic!("{node}: {e}"));
    let v: Value = serde_json::from_slice(&text).unwrap();
    v["primary"].as_str().unwrap().to_string()
}

async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_is_sealed_strangers_are_dropped_and_keys_rotate_on_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let n1 = start(d, "n1", None).await;
    let manager = n1.join_token(NodeRole::Manager).unwrap();
    let worker = n1.join_token(NodeRole::Worker).unwrap();
    let n2 = start(d, "n2", Some((&n1, NodeRole::Manager, manager))).await;
    let n3 = start(d, "n3", Some((&n1, NodeRole::Worker, worker))).await;
    let ca = std::fs::read_to_string(d.join("n1/tls/ca.pem")).unwrap();
    let api = Api {
        http: reqwest::Client::builder()
            .use_preconfigured_tls(TlsState::new(&ca).unwrap().client_config())
            .build()
            .unwrap(),
        base: format!("https://{}", n1.http_addr().unwrap()),
        token: std::fs::read_to_string(d.join("n1").join(MANAGEMENT_TOKEN_FILE))
            .unwrap()
            .trim()
            .to_string(),
    };

    // One key, committed sealed, the same on every node; files are private.
    let (status, keys) = api.call("GET", "/v1/cluster/gossip-keys", None).await;
    assert_eq!(status, 200, "{keys}");
    let list = keys.as_array().unwrap();
    assert_eq!(list.len(), 1, "{keys}");
    assert_eq!(list[0]["primary"], true);
    let old_id = list[0]["id"].as_str().unwrap().to_string();
    let kept: Value =
        serde_json::from_slice(&std::fs::read(d.join("n1/tls/gossip-keys.json")).unwrap()).unwrap();
    let old_key = kept["keys"][0].as_str().unwrap().to_string();
    for n in ["n1", "n2", "n3"] {
        assert_eq!(kept_primary(d, n), old_id, "{n}");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(d.join(n).join("tls/gossip-keys.json"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{n}");
    }
    assert!(
        !keys.to_string().contains(&old_key),
        "the API never shows a key"
    );
    // Sealed in the Raft log and state: only the key file holds it in clear.
    for n in ["n1", "n2", "n3"] {
        assert_eq!(
            files_holding(&d.join(n), old_key.as_bytes()),
            [d.join(n).join("tls/gossip-keys.json").display().to_string()],
            "{n}"
        );
    }

    // Gossip flows sealed; every node sees every other.
    for c in [&n1, &n2, &n3] {
        eventually("three live members", async || {
            c.membership().live().len() == 3
        })
        .await;
    }
    eventually("sealed packets delivered", async || {
        api.metric("orion_gossip_packets_total{kind=\"delivered\"}")
            .await
            > 0.0
    })
    .await;

    // A clear-text stranger is dropped unparsed, and never becomes a member.
    let clear = stranger(gossip_addr(&n1), None).await;
    eventually("clear-text packets dropped", async || {
        api.metric("orion_gossip_packets_dropped_total{reason=\"bad_version\"}")
            .await
            > 0.0
    })
    .await;
    assert!(n1.membership().live().iter().all(|m| m.id != "stranger"));
    Membership::shutdown(&clear).await;

    // Bad input: a malformed key, an unknown id, removing the primary.
    let (status, e) = api
        .call(
            "POST",
            "/v1/cluster/gossip-keys",
            Some(json!({ "key": "AAAA" })),
        )
        .await;
    assert_eq!(status, 400, "{e}");
    assert!(e.to_string().contains("key"), "{e}");
    let (status, _) = api
        .call("POST", "/v1/cluster/gossip-keys/00000000/use", None)
        .await;
    assert_eq!(status, 404);
    let (status, e) = api
        .call("DELETE", &format!("/v1/cluster/gossip-keys/{old_id}"), None)
        .await;
    assert_eq!(status, 409, "{e}");

    // Rotation: install (made by the node), use, remove the old one.
    let (status, made) = api.call("POST", "/v1/cluster/gossip-keys", None).await;
    assert_eq!(status, 201, "{made}");
    let new_id = made["id"].as_str().unwrap().to_string();
    let (status, _) = api
        .call(
            "POST",
            &format!("/v1/cluster/gossip-keys/{new_id}/use"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = api
        .call("DELETE", &format!("/v1/cluster/gossip-keys/{old_id}"), None)
        .await;
    assert_eq!(status, 204);
    let (_, keys) = api.call("GET", "/v1/cluster/gossip-keys", None).await;
    assert_eq!(keys, json!([{ "id": new_id, "primary": true }]));
    // Every node's transport took it (the file is written after the ring).
    for n in ["n1", "n2", "n3"] {
        let name = n.to_string();
        let want = new_id.clone();
        eventually("the new key on every node", async || {
            kept_primary(d, &name) == want
        })
        .await;
    }

    // The old key no longer opens anything; members keep gossiping.
    let before = api
        .metric("orion_gossip_packets_dropped_total{reason=\"unknown_key\"}")
        .await;
    let delivered = api
        .metric("orion_gossip_packets_total{kind=\"delivered\"}")
        .await;
    let old = stranger(
        gossip_addr(&n1),
        Some(GossipKey::from_base64(&old_key).unwrap()),
    )
    .await;
    eventually("old-key packets dropped", async || {
        api.metric("orion_gossip_packets_dropped_total{reason=\"unknown_key\"}")
            .await
            > before
    })
    .await;
    Membership::shutdown(&old).await;
    eventually("sealed packets still delivered", async || {
        api.metric("orion_gossip_packets_total{kind=\"delivered\"}")
            .await
            > delivered
    })
    .await;
    assert!(n1.membership().live().iter().all(|m| m.id != "stranger"));
    for c in [&n1, &n2, &n3] {
        assert_eq!(c.membership().live().len(), 3, "{}", c.node_id());
    }

    for c in [n3, n2, n1] {
        c.shutdown().await;
    }
}
