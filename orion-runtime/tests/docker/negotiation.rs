//! API version negotiation against a scripted engine (no real engine needed).

use std::sync::{Arc, Mutex};

use orion_core::runtime::Runtime;
use orion_runtime::{DockerConfig, DockerRuntime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A fake engine on a Unix socket that claims API `version`, answers every request with
/// its version document, and records each request line.
async fn scripted_engine(
    path: &std::path::Path,
    version: &'static str,
) -> (Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::UnixListener::bind(path).expect("bind");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = vec![0; 4096];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            let line = head.lines().next().unwrap_or_default().to_string();
            record.lock().unwrap().push(line);
            let body = format!(r#"{{"ApiVersion":"{version}","Version":"scripted"}}"#);
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
        }
    });
    (seen, task)
}

/// Against an engine that speaks an older API than bollard's default, the client steps
/// down to it on first use, and every later request names that version in its path.
#[tokio::test]
async fn requests_speak_the_engines_older_api_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old-engine.sock");
    let (seen, engine) = scripted_engine(&path, "1.40").await;
    let rt = DockerRuntime::connect({
        let mut c = DockerConfig::default();
        c.host = Some(format!("unix://{}", path.display()));
        c
    })
    .expect("connect");
    assert!(seen.lock().unwrap().is_empty(), "connect does no I/O");

    assert_eq!(rt.api_version().await.expect("negotiated"), "1.40");
    rt.ping().await.expect("ping");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0], "GET /version HTTP/1.1");
    assert_eq!(seen[1], "GET /v1.40/_ping HTTP/1.1");
    engine.abort();
}
