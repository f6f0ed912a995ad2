//! API tokens on whole nodes (real Raft store and gossip, fake runtime): the
//! first node makes a management token at bootstrap and keeps it in a 0600
//! file; joining takes a join token (see `tls.rs` for the refusals); every route of the API answers 401 without a
//! token and 403 with one of the wrong scope (a table over the OpenAPI
//! document, so a new route cannot be forgotten); revocation holds on every
//! node as soon as it is committed.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use orion::acl::{required_scope, Need, Scope};
use orion::{Cluster, Node, MANAGEMENT_TOKEN_FILE};
use orion_core::testing::FakeRuntime;
use serde_json::{json, Value};

async fn start(
    dir: &Path,
    name: &str,
    join: Option<&Cluster>,
    token: Option<&str>,
) -> Result<Cluster, orion::NodeError> {
    let mut b = Node::builder()
        .node_id(name)
        .data_dir(dir.join(name))
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
    let c = b.start().await?;
    c.ready(Duration::from_secs(30)).await.unwrap();
    Ok(c)
}

fn base(c: &Cluster) -> String {
    format!("https://{}", c.http_addr().unwrap())
}

/// A client trusting the cluster's CA as the first node keeps it now (the
/// nodes serve TLS; the route table rotates the CA on the way).
fn http() -> reqwest::Client {
    let ca = std::fs::read_to_string(CA.get().expect("the first node is up")).unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(orion::tls::TlsState::new(&ca).unwrap().client_config())
        .build()
        .unwrap()
}

static CA: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

async fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut r = http().request(method.to_uppercase().parse().unwrap(), url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    // A stream (events) never ends: its head is the answer.
    let body = tokio::time::timeout(Duration::from_secs(1), r.json())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(Value::Null);
    (status, body)
}

/// A token of `scopes`, made through the API with `admin`.
async fn token(base: &str, admin: &str, name: &str, scopes: &[&str]) -> String {
    let (status, t) = call(
        "POST",
        &format!("{base}/v1/acl/tokens"),
        Some(admin),
        Some(json!({ "name": name, "scopes": scopes })),
    )
    .await;
    assert_eq!(status, 201, "{t}");
    t["secret"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_guard_every_route_and_joining_and_revocation_holds_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let n1 = start(dir.path(), "n1", None, None).await.unwrap();
    let _ = CA.set(dir.path().join("n1/tls/ca.pem"));
    let file = dir.path().join("n1").join(MANAGEMENT_TOKEN_FILE);
    let admin = std::fs::read_to_string(&file).unwrap().trim().to_string();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the token file is the owner's only");
    assert!(orion::acl::is_secret_shaped(&admin), "{admin}");
    let b1 = base(&n1);

    // Joining without a join token is refused, clearly (an API token is not
    // one); with one it works.
    let err = start(dir.path(), "n2", Some(&n1), None).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("join token"), "{text}");
    let err = start(dir.path(), "n2", Some(&n1), Some(&admin))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("join_token"), "{err}");
    let join = n1.join_token(orion::NodeRole::Manager).unwrap();
    let n2 = start(dir.path(), "n2", Some(&n1), Some(&join))
        .await
        .unwrap();
    let b2 = base(&n2);

    // Health and the dashboard's files need nothing; no warning on a secure node.
    let (status, h) = call("GET", &format!("{b1}/health"), None, None).await;
    assert_eq!(status, 200, "{h}");
    assert_eq!(h["warnings"], json!([]), "{h}");

    // One token per scope but management.
    let mut by_scope = std::collections::BTreeMap::new();
    for s in [Scope::Read, Scope::Submit, Scope::Exec, Scope::Operator] {
        by_scope.insert(
            s,
            token(&b1, &admin, &format!("t-{s}"), &[s.as_str()]).await,
        );
    }

    // Every route of the document, and the routes outside it.
    let (_, doc) = call("GET", &format!("{b1}/v1/openapi.json"), Some(&admin), None).await;
    let mut routes: Vec<(String, String)> = vec![
        ("get".into(), "/v1/openapi.json".into()),
        ("get".into(), "/metrics".into()),
        ("get".into(), "/ui".into()),
    ];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            routes.push((method.clone(), path.clone()));
        }
    }
    assert!(routes.len() > 40, "{} routes", routes.len());
    let mut checked = BTreeSet::new();
    for (method, route) in &routes {
        let m: reqwest::Method = method.to_uppercase().parse().unwrap();
        let need = required_scope(&m, route);
        let url = format!(
            "{b1}{}",
            route
                .replace("{id}", "x")
                .replace("{name}", "x")
                .replace("{accessor}", "x")
                .replace("{action}", "pause")
                .replace("{role}", "worker")
                .replace("{file}", "app.js")
        );
        let (status, body) = call(method, &url, None, None).await;
        if need == Need::Nothing {
            assert_ne!(status, 401, "{method} {route} is public: {body}");
            continue;
        }
        assert_eq!(status, 401, "{method} {route} without a token: {body}");
        assert!(
            !body.to_string().contains("x\""),
            "{method} {route}: says nothing of what exists: {body}"
        );
        if let Need::Scope(s) = need {
            let wrong = by_scope
                .iter()
                .find(|(k, _)| **k != s)
                .map(|(_, t)| t)
                .unwrap();
            let (status, body) = call(method, &url, Some(wrong), None).await;
            assert_eq!(status, 403, "{method} {route} with the wrong scope: {body}");
            let right = if s == Scope::Management {
                &admin
            } else {
                &by_scope[&s]
            };
            let (status, body) = call(method, &url, Some(right), None).await;
            assert!(
                ![401, 403].contains(&status),
                "{method} {route} with scope {s}: {status} {body}"
            );
        }
        checked.insert(format!("{method} {route}"));
    }
    assert!(checked.contains("post /v1/jobs") && checked.contains("post /v1/cluster/peers"));

    // Bad tokens: malformed, unknown.
    let (status, e) = call("GET", &format!("{b1}/v1/jobs"), Some("hunter2"), None).await;
    assert_eq!(status, 401);
    assert!(e["error"].as_str().unwrap().contains("malformed"), "{e}");
    let fake = format!("orn_{}", "0".repeat(64));
    let (status, e) = call("GET", &format!("{b1}/v1/jobs"), Some(&fake), None).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (401, Some("the API token is not valid"))
    );

    // A browser's EventSource sends the token as a query parameter; the route
    // never sees it (events refuse unknown parameters).
    let r = http()
        .get(format!(
            "{b1}/v1/events?index=1&token={}",
            by_scope[&Scope::Read]
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Listing shows no secret and no hash; self says who the caller is.
    let (_, list) = call(
        "GET",
        &format!("{b2}/v1/acl/tokens"),
        Some(&by_scope[&Scope::Operator]),
        None,
    )
    .await;
    let text = list.to_string();
    assert_eq!(list.as_array().unwrap().len(), 5, "{list}");
    for secret in by_scope.values().chain([&admin]) {
        assert!(!text.contains(&secret[4..]), "a secret in the listing");
    }
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("hash").is_none()),
        "{list}"
    );
    let (status, me) = call(
        "GET",
        &format!("{b2}/v1/acl/token/self"),
        Some(&by_scope[&Scope::Submit]),
        None,
    )
    .await;
    assert_eq!((status, &me["scopes"]), (200, &json!(["submit"])), "{me}");

    // Revoked on n1: refused on n2 once n2 has applied the commit.
    let reader = &by_scope[&Scope::Read];
    let (status, _) = call("GET", &format!("{b2}/v1/jobs"), Some(reader), None).await;
    assert_eq!(status, 200);
    let accessor = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "t-read")
        .unwrap()["accessor"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = call(
        "DELETE",
        &format!("{b1}/v1/acl/tokens/{accessor}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200);
    n2.store().read_barrier().await.unwrap();
    let (status, _) = call("GET", &format!("{b2}/v1/jobs"), Some(reader), None).await;
    assert_eq!(status, 401, "revoked, refused on the other node");
    let (status, _) = call(
        "DELETE",
        &format!("{b1}/v1/acl/tokens/{accessor}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 404);

    // A token grants only scopes it holds: an operator cannot mint a
    // management token, nor revoke the bootstrap one.
    let op = &by_scope[&Scope::Operator];
    for scopes in [json!(["management"]), json!(["operator", "read"])] {
        let (status, e) = call(
            "POST",
            &format!("{b1}/v1/acl/tokens"),
            Some(op),
            Some(json!({ "name": "up", "scopes": scopes })),
        )
        .await;
        assert_eq!(status, 403, "{e}");
    }
    let (status, _) = call(
        "POST",
        &format!("{b1}/v1/acl/tokens"),
        Some(op),
        Some(json!({ "name": "op2", "scopes": ["operator"] })),
    )
    .await;
    assert_eq!(status, 201);
    let boot = n1
        .tokens()
        .into_iter()
        .find(|t| t.name == "bootstrap")
        .unwrap();
    let (status, _) = call(
        "DELETE",
        &format!("{b1}/v1/acl/tokens/{}", boot.accessor),
        Some(op),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let op2 = n1.tokens().into_iter().find(|t| t.name == "op2").unwrap();
    let (status, _) = call(
        "DELETE",
        &format!("{b1}/v1/acl/tokens/{}", op2.accessor),
        Some(op),
        None,
    )
    .await;
    assert_eq!(status, 200);

    // The Raft port answers members only: a forged vote or a stranger's
    // forwarded write is refused, while the members (which just committed
    // all of the above) pass.
    let raft = n1
        .store()
        .voters()
        .into_iter()
        .find(|p| p.id == "n1")
        .unwrap()
        .raft_addr;
    for (path, body) in [
        (
            "/raft/vote",
            json!({ "vote": { "leader_id": { "term": 99, "node_id": 7 }, "committed": false }, "last_log_id": null }),
        ),
        (
            "/raft/forward",
            json!({ "call": { "ReadIndex": null }, "budget": { "secs": 1, "nanos": 0 } }),
        ),
    ] {
        // Mutual TLS: without a member's certificate, not even a handshake.
        let r = http()
            .post(format!("https://{raft}{path}"))
            .json(&body)
            .send()
            .await;
        assert!(r.is_err(), "{path} without a member's certificate: {r:?}");
    }
    assert_eq!(n1.leader().term, n2.leader().term, "no forged term");

    // Bad input makes nothing.
    for (body, want) in [
        (json!({ "name": "x", "scopes": [] }), "at least one scope"),
        (
            json!({ "name": "x", "scopes": ["root"] }),
            "unknown variant",
        ),
        (json!({ "name": "", "scopes": ["read"] }), "1 to 64"),
        (
            json!({ "name": "x", "scopes": ["read"], "admin": true }),
            "admin",
        ),
    ] {
        let (status, e) = call(
            "POST",
            &format!("{b1}/v1/acl/tokens"),
            Some(&admin),
            Some(body),
        )
        .await;
        assert_eq!(status, 400, "{e}");
        assert!(e["error"].to_string().contains(want), "{want}: {e}");
    }
    assert_eq!(n1.tokens().len(), 4);

    n2.shutdown().await;
    n1.shutdown().await;
}

/// A restart of the first node makes no second management token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_makes_no_second_management_token() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("solo").join(MANAGEMENT_TOKEN_FILE);
    let n1 = start(dir.path(), "solo", None, None).await.unwrap();
    let admin = std::fs::read_to_string(&file).unwrap();
    n1.shutdown().await;
    drop(n1);
    let n1 = start(dir.path(), "solo", None, None).await.unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), admin);
    assert_eq!(n1.tokens().len(), 1);
    assert_eq!(
        n1.token_for(admin.trim()).map(|t| t.name),
        Some("bootstrap".to_string())
    );
    n1.shutdown().await;
}

/// A node started insecure asks for nothing and says so in `/health`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insecure_node_warns_in_health() {
    let dir = tempfile::tempdir().unwrap();
    let c = Node::builder()
        .node_id("dev")
        .data_dir(dir.path().join("dev"))
        .loopback_ports()
        .insecure_dev(true)
        .runtime(FakeRuntime::new())
        .start()
        .await
        .unwrap();
    c.ready(Duration::from_secs(30)).await.unwrap();
    // No TLS either: plain HTTP.
    let plain = format!("http://{}", c.http_addr().unwrap());
    let r = reqwest::get(format!("{plain}/v1/jobs")).await.unwrap();
    assert_eq!(r.status(), 200);
    let h: Value = reqwest::get(format!("{plain}/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        h["warnings"][0].as_str().unwrap().contains("insecure-dev"),
        "{h}"
    );
    assert!(!dir.path().join("dev").join(MANAGEMENT_TOKEN_FILE).exists());
    assert!(!dir.path().join("dev/tls").exists(), "no certificates made");
    c.shutdown().await;
}
