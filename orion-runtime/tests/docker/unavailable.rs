//! An engine that is absent, refuses, or does not answer: `Unavailable`, promptly.
//! These tests need no engine.

use std::time::{Duration, Instant};

use orion_core::runtime::{Owner, Runtime, RuntimeError};
use orion_runtime::{DockerConfig, DockerRuntime};

/// A runtime for the socket at `path`, with a short connect timeout.
fn runtime_at(path: &std::path::Path) -> DockerRuntime {
    DockerRuntime::connect({
        let mut c = DockerConfig::default();
        c.host = Some(format!("unix://{}", path.display()));
        c.connect_timeout = Duration::from_millis(500);
        c
    })
    .expect("connect is lazy and succeeds")
}

/// `ping` and `list` both fail with a retryable `Unavailable`, within `limit`.
async fn assert_unavailable(rt: &DockerRuntime, limit: Duration) {
    let owner = Owner {
        cluster_id: "c".into(),
        node_id: "n".into(),
    };
    let started = Instant::now();
    let ping = rt.ping().await.unwrap_err();
    assert!(matches!(ping, RuntimeError::Unavailable(_)), "{ping}");
    assert!(ping.is_retryable());
    let list = rt.list(&owner).await.unwrap_err();
    assert!(matches!(list, RuntimeError::Unavailable(_)), "{list}");
    assert!(started.elapsed() < limit, "took {:?}", started.elapsed());
}

/// A socket path where nothing exists: `Unavailable` at once, and the constructor (which
/// does no I/O) still succeeds.
#[tokio::test]
async fn a_missing_socket_is_unavailable_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime_at(&dir.path().join("no-docker.sock"));
    assert_unavailable(&rt, Duration::from_secs(2)).await;
}

/// A socket file nobody listens on (connection refused): `Unavailable` at once.
#[tokio::test]
async fn a_refused_connection_is_unavailable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    assert_unavailable(&runtime_at(&path), Duration::from_secs(2)).await;
}

/// An engine that accepts connections but never answers: `Unavailable` after the connect
/// timeout, not a hang.
#[tokio::test]
async fn a_silent_engine_is_unavailable_after_the_connect_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("silent.sock");
    let listener = tokio::net::UnixListener::bind(&path).expect("bind");
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    assert_unavailable(&runtime_at(&path), Duration::from_secs(4)).await;
    silent.abort();
}

/// A configuration that cannot work is refused by the constructor.
#[test]
fn an_invalid_config_is_refused_at_connect() {
    let err = DockerRuntime::connect({
        let mut c = DockerConfig::default();
        c.host = Some("ssh://somewhere".into());
        c
    })
    .unwrap_err();
    assert!(err.to_string().contains("unsupported docker host"), "{err}");
}
