//! Autolock on a node (Swarm's): which files are sealed under the unlock
//! key, and the locked API a restarted node serves until it is given it.
//!
//! ```text
//!  start ──▶ any of SEALED sealed? ──no──▶ autolock on: key given or made ──▶ normal start
//!                 │ yes                     (files sealed, key shown once)
//!                 ▼
//!          unlock_key given? ──yes──▶ opens every sealed file? ──no──▶ NodeError
//!                 │ no                          │ yes
//!                 ▼                             ▼
//!   locked API on the HTTP listener        normal start (store, gossip, agent, API)
//!   GET /health 503 {"locked":true}             ▲
//!   POST /v1/cluster/unlock {"key":..} ─────────┘ (a wrong key: 403, nothing changed)
//!   anything else 503 "this node is locked"
//! ```
//!
//! The store is not opened and the Raft and gossip ports are not bound
//! while the node is locked. `tls/node.json` (this node's own certificate
//! key) is not sealed: the locked node serves its TLS listener with it to
//! take the unlock (Swarm unlocks over a local socket instead).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use orion_core::at_rest::{self, AtRestError, UnlockKey};
use serde_json::json;
use tracing::{info, warn};

use super::{tls, NodeConfig, NodeError};

/// The files, under the data dir, that hold cluster-wide secrets: sealed
/// under the unlock key on an autolocked node.
pub(crate) const SEALED: [&str; 4] = [
    super::data_key::DATA_KEY_FILE,
    "tls/ca.json",
    "tls/gossip-keys.json",
    "tls/join-tokens.json",
];

/// What the locked API tells every caller.
const HINT: &str =
    "this node is locked (autolock): give it its unlock key with `orion-node cluster unlock`";

/// Whether the data dir `dir` is autolocked: one of its secret files is
/// sealed, so a start needs the unlock key.
pub fn is_locked(dir: &Path) -> bool {
    SEALED.iter().any(|f| at_rest::is_sealed_file(&dir.join(f)))
}

/// Checks `key` opens every sealed file under `dir`; changes nothing.
fn check(dir: &Path, key: &UnlockKey) -> Result<(), AtRestError> {
    for f in SEALED {
        let path = dir.join(f);
        if at_rest::is_sealed_file(&path) {
            at_rest::read(&path, Some(key))?;
        }
    }
    Ok(())
}

/// Seals under `key` whichever secret files are still in clear (a node
/// restarted with autolock for the first time, or a file just written by a
/// join).
pub(crate) fn seal_all(dir: &Path, key: &UnlockKey) -> Result<(), NodeError> {
    for f in SEALED {
        let path = dir.join(f);
        if at_rest::is_sealed_file(&path) {
            continue;
        }
        if let Some(clear) = at_rest::read(&path, None)? {
            at_rest::write(&path, &clear, Some(key))?;
        }
    }
    Ok(())
}

/// The key this node's files are (or are to be) sealed under, and whether
/// this start made it: on a locked data dir the key given, checked, else
/// the one an operator sends to the locked API served on `http` meanwhile;
/// on an unlocked one with `autolock`, the key given or a new one; else none.
pub(crate) async fn unlock(
    c: &NodeConfig,
    node_id: &str,
    http: &std::net::TcpListener,
) -> Result<Option<UnlockKey>, NodeError> {
    let dir = &c.data_dir;
    if c.insecure_dev {
        return Ok(None);
    }
    if !is_locked(dir) {
        return Ok(c
            .autolock
            .then(|| c.unlock_key.clone().unwrap_or_else(UnlockKey::generate)));
    }
    if !c.autolock {
        info!("the data dir is autolocked: it stays so (autolock is on whatever the flag says)");
    }
    if let Some(key) = &c.unlock_key {
        check(dir, key)?;
        return Ok(Some(key.clone()));
    }
    let tls_dir = dir.join(tls::TLS_DIR);
    let tls = tls::load_tls(&tls_dir)?.ok_or_else(|| NodeError::DataDir {
        path: tls_dir.join("node.json"),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "an autolocked node needs its certificate to serve the unlock",
        ),
    })?;
    wait_for_key(c, node_id, http, tls).await.map(Some)
}

struct Locked {
    dir: PathBuf,
    node_id: String,
    unlocked: tokio::sync::mpsc::Sender<UnlockKey>,
}

/// Serves the locked API on a copy of `http` until a request brings a key
/// that opens every sealed file; stops serving when this future is dropped.
async fn wait_for_key(
    c: &NodeConfig,
    node_id: &str,
    http: &std::net::TcpListener,
    tls: orion_core::tls::TlsState,
) -> Result<UnlockKey, NodeError> {
    let addr = http.local_addr().map_err(|source| NodeError::Bind {
        what: "http",
        addr: c.http,
        source,
    })?;
    let bind = |source| NodeError::Bind {
        what: "http",
        addr,
        source,
    };
    let copy = http.try_clone().map_err(bind)?;
    copy.set_nonblocking(true).map_err(bind)?;
    let listener = tokio::net::TcpListener::from_std(copy).map_err(bind)?;
    let (unlocked, mut keys) = tokio::sync::mpsc::channel(1);
    let state = Arc::new(Locked {
        dir: c.data_dir.clone(),
        node_id: node_id.to_string(),
        unlocked,
    });
    let router = axum::Router::new()
        .route("/health", axum::routing::get(health))
        .route("/health/ready", axum::routing::get(health))
        .route("/health/live", axum::routing::get(live))
        .route("/v1/cluster/unlock", axum::routing::post(take_key))
        .fallback(refuse)
        .with_state(state);
    // Dropping `stop` (this future ended or was dropped) stops the server.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(orion_core::serve::serve_tls(
        listener,
        router,
        c.loops.http.clone(),
        Some(tls.server_config(false)),
        async {
            let _ = stopped.await;
        },
    ));
    warn!(node_id = %node_id, http = %addr, "this node is locked (autolock): its store stays closed until it is given its unlock key (`orion-node cluster unlock --addr {addr}`, or restart with --unlock-key-file)");
    let key = keys.recv().await;
    drop(stop);
    let _ = server.await;
    info!(node_id = %node_id, "unlocked: starting");
    key.ok_or_else(|| NodeError::Join("the locked API stopped".into()))
}

fn locked_answer(code: StatusCode, node_id: &str, error: &str) -> Response {
    (
        code,
        Json(json!({
            "status": "locked",
            "locked": true,
            "node": node_id,
            "error": error,
        })),
    )
        .into_response()
}

async fn health(State(s): State<Arc<Locked>>) -> Response {
    locked_answer(StatusCode::SERVICE_UNAVAILABLE, &s.node_id, HINT)
}

/// A liveness probe: the process answers (restarting it would not unlock it).
async fn live(State(s): State<Arc<Locked>>) -> Response {
    Json(json!({ "status": "alive", "locked": true, "node": s.node_id })).into_response()
}

async fn refuse(State(s): State<Arc<Locked>>) -> Response {
    locked_answer(StatusCode::SERVICE_UNAVAILABLE, &s.node_id, HINT)
}

/// `POST /v1/cluster/unlock {"key": "ORNKEY-1-…"}`: 200 once the key opens
/// every sealed file (the node then starts), 400 for a malformed one, 403
/// for another node's; neither changes anything. The key is never logged.
async fn take_key(State(s): State<Arc<Locked>>, body: axum::body::Bytes) -> Response {
    let answer = |code, error: String| locked_answer(code, &s.node_id, &error);
    let text = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("key").and_then(|k| k.as_str()).map(str::to_string))
        .map(zeroize::Zeroizing::new);
    let Some(text) = text else {
        return answer(
            StatusCode::BAD_REQUEST,
            r#"the body is not {"key": "ORNKEY-1-…"}"#.into(),
        );
    };
    let key = match UnlockKey::parse(&text) {
        Ok(k) => k,
        Err(e) => return answer(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match check(&s.dir, &key) {
        Ok(()) => {}
        Err(AtRestError::WrongKey { .. }) => {
            warn!("an unlock with a wrong key was refused");
            return answer(
                StatusCode::FORBIDDEN,
                "this is not this node's unlock key: nothing was changed".into(),
            );
        }
        Err(e) => return answer(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
    // A second unlock while the first is taken: the node is starting anyway.
    let _ = s.unlocked.try_send(key);
    Json(json!({ "status": "unlocked", "locked": false, "node": s.node_id })).into_response()
}
