//! The cluster PKI on whole nodes (real Raft store, gossip and HTTP, fake
//! runtime): the first node makes the CA; nodes join only with the right join
//! token (one made for their role, for this cluster, not rotated away); the
//! API and the Raft port speak TLS only, Raft asks for a member's
//! certificate, and a forged certificate (self-signed, with a member's id) is
//! refused by both; certificates renew under load without a failed request.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use orion::tls::{CertAuthority, JoinToken, NodeCert, NodeKey, Subject, TlsState};
use orion::{Cluster, Node, NodeRole, MANAGEMENT_TOKEN_FILE};
use orion_core::testing::FakeRuntime;
use serde_json::{json, Value};

async fn start(
    dir: &Path,
    name: &str,
    join: Option<&Cluster>,
    role: NodeRole,
    token: Option<&str>,
    expiry: Option<Duration>,
) -> Result<Cluster, orion::NodeError> {
    let mut b = Node::builder()
        .node_id(name)
        .data_dir(dir.join(name))
        .role(role)
        .loopback_ports()
        .loops(orion_core::testing::fast_loops())
        .join_timeout(Duration::from_secs(5))
        .runtime(FakeRuntime::new());
    if let Some(first) = join {
        b = b.join([first.http_addr().unwrap().to_string()]);
    }
    if let Some(t) = token {
        b = b.join_token(t);
    }
    if let Some(e) = expiry {
        b = b.cert_expiry(e);
    }
    let c = b.start().await?;
    c.ready(Duration::from_secs(30)).await.unwrap();
    Ok(c)
}

fn base(c: &Cluster) -> String {
    format!("https://{}", c.http_addr().unwrap())
}

/// A client trusting the CA in `dir/n1/tls/ca.pem`, presenting `cert` if given.
fn client(dir: &Path, cert: Option<NodeCert>) -> reqwest::Client {
    let ca = std::fs::read_to_string(dir.join("n1/tls/ca.pem")).unwrap();
    let tls = match cert {
        Some(c) => TlsState::with_cert(&ca, c).unwrap(),
        None => TlsState::new(&ca).unwrap(),
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(tls.client_config())
        .build()
        .unwrap()
}

fn mode(p: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions()) & 0o777
}

/// A manager certificate for `id` issued by `ca`, with `links` (PEM) after it.
fn cert_from(ca: &CertAuthority, id: &str, links: &[String]) -> NodeCert {
    let key = NodeKey::generate().unwrap();
    let now = SystemTime::now();
    let mut cert_pem = ca
        .issue(
            &Subject {
                node_id: id.into(),
                role: NodeRole::Manager,
                ips: vec![],
                dns: vec![],
            },
            &key.public_key(),
            Duration::from_secs(3600),
        )
        .unwrap();
    for l in links {
        cert_pem.push_str(l);
    }
    NodeCert {
        cert_pem,
        key_pem: key.to_pem(),
        issued: now,
        expires: now + Duration::from_secs(3600),
    }
}

/// A certificate for `id` from a CA of its own: right name, wrong signer.
fn forged(id: &str) -> NodeCert {
    cert_from(&CertAuthority::generate("evil").unwrap(), id, &[])
}

/// `c`'s own Raft address.
fn raft_addr(c: &Cluster) -> String {
    let id = c.node_id().clone();
    c.store()
        .voters()
        .into_iter()
        .find(|p| p.id == id)
        .unwrap()
        .raft_addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_only_with_the_right_token_and_strangers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let n1 = start(d, "n1", None, NodeRole::Manager, None, None)
        .await
        .unwrap();
    let tls = d.join("n1/tls");
    for (file, want) in [
        ("node.json", 0o600),
        ("ca.json", 0o600),
        ("join-tokens.json", 0o600),
    ] {
        assert_eq!(mode(&tls.join(file)), want, "{file}");
    }
    let admin = std::fs::read_to_string(d.join("n1").join(MANAGEMENT_TOKEN_FILE)).unwrap();
    let admin = admin.trim();
    let manager = n1.join_token(NodeRole::Manager).expect("made at bootstrap");
    let worker = n1.join_token(NodeRole::Worker).expect("made at bootstrap");
    let fp = n1.pki().unwrap().ca_fingerprint();
    assert!(manager.starts_with(&format!("ORN-1-{fp}-")), "{manager}");
    assert_ne!(manager, worker);

    // Plain HTTP to the API is told to use TLS; TLS without the CA is not trusted.
    let plain = reqwest::get(format!("http://{}/health", n1.http_addr().unwrap()))
        .await
        .unwrap();
    assert_eq!(plain.status(), 400);
    assert!(plain.text().await.unwrap().contains("speaks TLS"));
    let untrusting = reqwest::Client::builder()
        .use_preconfigured_tls(
            TlsState::new(&CertAuthority::generate("x").unwrap().cert_pem)
                .unwrap()
                .client_config(),
        )
        .build()
        .unwrap();
    assert!(untrusting
        .get(format!("{}/health", base(&n1)))
        .send()
        .await
        .is_err());
    let http = client(d, None);
    let h: Value = http
        .get(format!("{}/health", base(&n1)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["warnings"], json!([]), "{h}");

    // No token, another cluster's, a forged secret, the other role's: refused,
    // each saying why, none repeating the token.
    let e = start(d, "n2", Some(&n1), NodeRole::Manager, None, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("join token"), "{e}");
    let other =
        JoinToken::generate(&CertAuthority::generate("o").unwrap().fingerprint()).to_string();
    let e = start(d, "n2", Some(&n1), NodeRole::Manager, Some(&other), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not the") && e.contains("join token"), "{e}");
    assert!(!e.contains(&other[71..]), "the secret is not repeated: {e}");
    let guessed = JoinToken::generate(&fp).to_string();
    let e = start(d, "n2", Some(&n1), NodeRole::Manager, Some(&guessed), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not valid"), "{e}");
    let e = start(d, "n2", Some(&n1), NodeRole::Manager, Some(&worker), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("worker join token"), "{e}");
    let e = start(
        d,
        "n2",
        Some(&n1),
        NodeRole::Manager,
        Some("ORN-1-zz"),
        None,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("join_token") && e.contains("malformed"), "{e}");
    // The refused attempts wrote no certificate.
    assert!(!d.join("n2/tls/node.json").exists());

    // The right ones: a manager and a worker.
    let n2 = start(d, "n2", Some(&n1), NodeRole::Manager, Some(&manager), None)
        .await
        .unwrap();
    let n3 = start(d, "n3", Some(&n1), NodeRole::Worker, Some(&worker), None)
        .await
        .unwrap();
    assert!(d.join("n2/tls/ca.json").exists(), "a manager holds the CA");
    assert!(!d.join("n3/tls/ca.json").exists(), "a worker does not");
    let r = http
        .post(format!("{}/v1/jobs", base(&n3)))
        .bearer_auth(admin)
        .json(&json!({ "name": "web", "replicas": 1, "task": { "image": "x", "resources": { "cpu": 0.1, "memory_mb": 16 } } }))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "a write through the worker is forwarded over mTLS: {}",
        r.status()
    );

    // Rotating the worker token: the old one stops at once, the node it let
    // in stays.
    let r: Value = http
        .post(format!(
            "{}/v1/cluster/join-tokens/worker/rotate",
            base(&n2)
        ))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rotated = r["token"].as_str().unwrap().to_string();
    assert_ne!(rotated, worker);
    n1.store().read_barrier().await.unwrap();
    let e = start(d, "n4", Some(&n1), NodeRole::Worker, Some(&worker), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not valid"), "{e}");
    let nodes: Value = http
        .get(format!("{}/v1/nodes", base(&n1)))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(nodes.as_array().unwrap().len(), 3, "{nodes}");
    let n4 = start(d, "n4", Some(&n2), NodeRole::Worker, Some(&rotated), None)
        .await
        .unwrap();

    // The Raft port: no certificate, or a forged one with a member's id,
    // fails the handshake; a member's passes the TLS layer.
    let raft = raft_addr(&n1);
    let vote = json!({ "vote": { "leader_id": { "term": 99, "node_id": 7 }, "committed": false }, "last_log_id": null });
    for c in [client(d, None), client(d, Some(forged("n2")))] {
        let r = c
            .post(format!("https://{raft}/raft/vote"))
            .json(&vote)
            .send()
            .await;
        assert!(r.is_err(), "refused at the handshake: {r:?}");
    }
    // The API refuses the forged certificate too, even where a member's
    // certificate would be enough (adding itself as a peer).
    let r = client(d, Some(forged("n9")))
        .post(format!("{}/v1/cluster/peers", base(&n1)))
        .json(&json!({ "id": "n9", "raft_addr": "127.0.0.1:1", "http_addr": "127.0.0.1:2", "role": "manager" }))
        .send()
        .await;
    assert!(r.is_err(), "forged certificate refused by the API: {r:?}");
    assert_eq!(n1.leader().term, n2.leader().term, "no forged term");
    assert!(n1.store().voters().iter().all(|p| p.id != "n9"));

    for c in [n4, n3, n2, n1] {
        c.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_renew_under_load_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let life = Duration::from_secs(4);
    let n1 = start(d, "n1", None, NodeRole::Manager, None, Some(life))
        .await
        .unwrap();
    let worker = n1.join_token(NodeRole::Worker).unwrap();
    let n2 = start(
        d,
        "n2",
        Some(&n1),
        NodeRole::Worker,
        Some(&worker),
        Some(life),
    )
    .await
    .unwrap();
    let admin = std::fs::read_to_string(d.join("n1").join(MANAGEMENT_TOKEN_FILE)).unwrap();
    let admin = admin.trim().to_string();
    let first = [&n1, &n2].map(|c| c.pki().unwrap().tls.cert().unwrap().issued);

    // Writes through the worker (forwarded to the leader over mutual TLS)
    // and reads from both, on fresh connections, for three certificate
    // lifetimes: every one answers.
    let started = Instant::now();
    let mut done = 0;
    let mut i = 0;
    while started.elapsed() < life * 3 {
        i += 1;
        let http = client(d, None);
        let r = http
            .post(format!("{}/v1/jobs", base(&n2)))
            .bearer_auth(&admin)
            .json(
                &json!({ "name": format!("j{}", i % 5), "replicas": 0, "task": { "image": "x" } }),
            )
            .send()
            .await
            .expect("a write");
        assert!(r.status().is_success(), "write {i}: {}", r.status());
        for n in [&n1, &n2] {
            let r = http
                .get(format!("{}/v1/jobs", base(n)))
                .bearer_auth(&admin)
                .send()
                .await
                .expect("a read");
            assert!(r.status().is_success(), "read {i}: {}", r.status());
        }
        done += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(done > 20, "{done} rounds");
    for (c, before) in [&n1, &n2].into_iter().zip(first) {
        let now = c.pki().unwrap().tls.cert().unwrap();
        assert!(
            now.issued > before,
            "{} renewed its certificate",
            c.node_id()
        );
        assert!(now.expires > SystemTime::now(), "and it is current");
    }
    // What renewed is on disk: a restart uses it.
    let kept: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("n2/tls/node.json")).unwrap())
            .unwrap();
    assert!(
        kept["expires_ms"].as_u64().unwrap()
            > first[1]
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
                + 4000
    );
    n2.shutdown().await;
    n1.shutdown().await;
}

/// `POST /v1/cluster/ca/rotate` under load: a new CA, cross-signed by the
/// old, that every node moves to while writes go through a worker (forwarded
/// to the leader over mutual TLS) and reads hit every node, each on a fresh
/// connection from a client that trusts what the cluster publishes: no
/// request fails. The CA key sits in the replicated state sealed (in clear
/// only in the managers' 0600 `ca.json`). At the end only the new CA is
/// trusted, every node presents a certificate from it alone, a certificate
/// from the old CA is refused by the Raft port and the API, and the join
/// tokens name the new CA (a node joins with one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_rotates_under_load_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let n1 = start(d, "n1", None, NodeRole::Manager, None, None)
        .await
        .unwrap();
    let manager = n1.join_token(NodeRole::Manager).unwrap();
    let worker = n1.join_token(NodeRole::Worker).unwrap();
    let n2 = start(d, "n2", Some(&n1), NodeRole::Manager, Some(&manager), None)
        .await
        .unwrap();
    let n3 = start(d, "n3", Some(&n1), NodeRole::Worker, Some(&worker), None)
        .await
        .unwrap();
    let admin = std::fs::read_to_string(d.join("n1").join(MANAGEMENT_TOKEN_FILE)).unwrap();
    let admin = admin.trim().to_string();

    // The CA key in the replicated state: sealed.
    let old = n1.pki().unwrap().ca().unwrap();
    let record = n1.ca_record().expect("committed at bootstrap");
    assert_eq!((record.rotation, record.finished), (0, true));
    assert_eq!(n1.ca_signer(&record).unwrap().key_pem, old.key_pem);
    let key_line = old.key_pem.lines().nth(1).unwrap().to_string();
    let mut holding = orion_core::testing::fixtures::files_holding(d, key_line.as_bytes());
    holding.sort();
    assert_eq!(
        holding,
        ["n1/tls/ca.json", "n2/tls/ca.json"]
            .map(|f| d.join(f).display().to_string())
            .to_vec(),
        "the CA key in clear only in the managers' own files"
    );

    let load = {
        let (admin, d) = (admin.clone(), d.to_path_buf());
        let bases: Vec<String> = [&n1, &n2, &n3].map(base).to_vec();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut rounds = 0u32;
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                rounds += 1;
                let http = client(&d, None);
                let r = http
                    .post(format!("{}/v1/jobs", bases[2]))
                    .bearer_auth(&admin)
                    .json(&json!({ "name": format!("j{}", rounds % 5), "replicas": 0, "task": { "image": "x" } }))
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("write {rounds}: {e:?}"));
                assert!(r.status().is_success(), "write {rounds}: {}", r.status());
                for b in &bases {
                    let r = http
                        .get(format!("{b}/v1/jobs"))
                        .bearer_auth(&admin)
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("read {rounds} on {b}: {e:?}"));
                    assert!(r.status().is_success(), "read {rounds}: {}", r.status());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            rounds
        });
        (stop, task)
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    let http = client(d, None);
    let r = http
        .post(format!("{}/v1/cluster/ca/rotate", base(&n2)))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let started: Value = r.json().await.unwrap();
    assert_eq!(started["rotation"], 1, "{started}");
    assert_eq!(started["trusted"].as_array().unwrap().len(), 2, "{started}");
    let new_fp = started["fingerprint"].as_str().unwrap().to_string();
    assert_ne!(new_fp, old.fingerprint());
    // A second rotation while this one runs is refused.
    let again = http
        .post(format!("{}/v1/cluster/ca/rotate", base(&n1)))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    let again_status = again.status();
    let again_body = again.text().await.unwrap();
    assert!(
        again_status == 409 && again_body.contains("still under way"),
        "{again_status} {again_body}"
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let settled = |c: &Cluster| {
        let pki = c.pki().unwrap();
        let cert = pki.tls.cert().unwrap();
        orion::tls::fingerprints(&pki.tls.roots_pem()) == [new_fp.clone()]
            && orion::tls::parse_certs(&cert.cert_pem).unwrap().len() == 1
            && c.ca_record().is_some_and(|r| r.finished && r.rotation == 1)
            && orion::tls::issued_by(&cert.cert_pem, &c.ca_record().unwrap().cert_pem)
    };
    while ![&n1, &n2, &n3].into_iter().all(settled) {
        assert!(
            Instant::now() < deadline,
            "rotation not done: {:?}",
            n1.ca_status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    load.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = load.1.await.expect("no request failed");
    assert!(rounds > 10, "{rounds} rounds");

    // On disk: the new CA alone in every ca.pem, the new signer in ca.json.
    let new_ca = n1.pki().unwrap().ca().unwrap();
    assert_ne!(new_ca.name, old.name);
    for n in ["n1", "n2", "n3"] {
        let pem = std::fs::read_to_string(d.join(n).join("tls/ca.pem")).unwrap();
        assert_eq!(
            orion::tls::fingerprints(&pem),
            std::slice::from_ref(&new_fp),
            "{n}"
        );
    }
    let kept: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("n2/tls/ca.json")).unwrap()).unwrap();
    assert_eq!(kept["name"], new_ca.name.as_str());

    // A certificate from the old CA, with a member's name, no longer passes.
    let stale = cert_from(&old, "n2", &[]);
    let raft = raft_addr(&n1);
    let r = client(d, Some(stale.clone()))
        .post(format!("https://{raft}/raft/vote"))
        .json(&json!({ "vote": { "leader_id": { "term": 99, "node_id": 7 }, "committed": false }, "last_log_id": null }))
        .send()
        .await;
    assert!(r.is_err(), "old-CA certificate refused by Raft: {r:?}");
    let r = client(d, Some(stale))
        .post(format!("{}/v1/cluster/certificate", base(&n1)))
        .json(&json!({ "public_key": "AA==" }))
        .send()
        .await;
    assert!(r.is_err(), "old-CA certificate refused by the API: {r:?}");

    // The join tokens now name the new CA, and a node joins with one.
    let worker = n1.join_token(NodeRole::Worker).unwrap();
    assert_eq!(JoinToken::parse(&worker).unwrap().ca_digest, new_fp);
    let n4 = start(d, "n4", Some(&n2), NodeRole::Worker, Some(&worker), None)
        .await
        .unwrap();
    assert!(orion::tls::issued_by(
        &n4.pki().unwrap().tls.cert().unwrap().cert_pem,
        &new_ca.cert_pem
    ));
    for c in [n4, n3, n2, n1] {
        c.shutdown().await;
    }
}

/// A certificate chain longer than a node ever sends (more than one CA after
/// the node's certificate) is refused at the handshake by the Raft port and
/// the API, even when every link is signed and the chain reaches the
/// cluster's CA; the one-link chain a CA rotation uses is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_chain_too_long_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let n1 = start(d, "n1", None, NodeRole::Manager, None, None)
        .await
        .unwrap();
    let root = n1.pki().unwrap().ca().unwrap();
    let mid = CertAuthority::generate("mid").unwrap();
    let low = CertAuthority::generate("low").unwrap();
    let mid_by_root = root.cross_sign(&mid).unwrap();
    let low_by_mid = mid.cross_sign(&low).unwrap();
    let one_link = cert_from(&mid, "n7", std::slice::from_ref(&mid_by_root));
    let two_links = cert_from(&low, "n7", &[low_by_mid, mid_by_root]);
    let raft = raft_addr(&n1);

    // One link: the TLS layer lets it through (what it may do is the route's).
    let r = client(d, Some(one_link))
        .get(format!("{}/v1/cluster/ca", base(&n1)))
        .send()
        .await
        .expect("a one-link chain passes the handshake");
    assert_eq!(r.status(), 200);
    for url in [
        format!("https://{raft}/raft/vote"),
        format!("{}/v1/cluster/ca", base(&n1)),
    ] {
        let r = client(d, Some(two_links.clone())).get(&url).send().await;
        assert!(r.is_err(), "{url}: a two-link chain is refused: {r:?}");
    }
    n1.shutdown().await;
}
