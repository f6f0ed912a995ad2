//! The accept loop every Orion listener uses (`orion_core::serve`), on
//! loopback: half-open requests are cut at the head deadline, connections
//! past the limit wait in the backlog instead of being served (and are served
//! once room frees), idle keep-alives are closed while a request in flight
//! still gets its answer, oversized heads are refused with 431.

use std::time::{Duration, Instant};

use axum::routing::get;
use orion_core::serve::{serve, ServeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(config: ServeConfig) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let app = axum::Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/ws",
            get(|ws: axum::extract::ws::WebSocketUpgrade| async {
                ws.on_upgrade(|mut socket| async move {
                    // Echo until the client goes.
                    while let Some(Ok(m)) = socket.recv().await {
                        if socket.send(m).await.is_err() {
                            break;
                        }
                    }
                })
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(1_500)).await;
                "slow ok"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(serve(listener, app, config, async {
        let _ = rx.await;
    }));
    (addr, tx)
}

/// Reads until the peer closes; what it sent, or `None` if it stayed open
/// past `limit`.
async fn read_to_close(s: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut got = Vec::new();
    match tokio::time::timeout(limit, s.read_to_end(&mut got)).await {
        Ok(_) => Some(String::from_utf8_lossy(&got).into_owned()),
        Err(_) => None,
    }
}

async fn request(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    read_to_close(&mut s, Duration::from_secs(10))
        .await
        .expect("an answer")
}

/// 200 clients that start a request head and never finish it are all cut off
/// at the deadline, and the listener answers others meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_requests_are_cut_at_the_head_deadline() {
    let (addr, _stop) = start(ServeConfig {
        header_read_timeout: Duration::from_millis(400),
        ..ServeConfig::default()
    })
    .await;
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(s);
    }
    let t = Instant::now();
    assert!(request(addr, "/").await.ends_with("ok"));
    for s in &mut slow {
        let got = read_to_close(s, Duration::from_secs(5)).await;
        assert!(got.is_some(), "a half-open request was held past 5 s");
    }
    let took = t.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// Past `max_connections` a client waits in the backlog, unanswered; when
/// room frees it is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_wait_until_room_frees() {
    let (addr, _stop) = start(ServeConfig {
        max_connections: 8,
        header_read_timeout: Duration::from_millis(800),
        ..ServeConfig::default()
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    let waiting = tokio::spawn(async move { (request(addr, "/").await, Instant::now()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "served past the limit");
    let (answer, at) = waiting.await.unwrap();
    assert!(answer.ends_with("ok"), "{answer}");
    // Served once the silent ones were cut at their head deadline.
    assert!(at - t >= Duration::from_millis(400), "{:?}", at - t);
    drop(silent);
}

/// A keep-alive connection that goes quiet is closed after the idle timeout;
/// a request in flight for longer than it still gets its whole answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_and_requests_in_flight_finish() {
    let (addr, _stop) = start(ServeConfig {
        idle_timeout: Duration::from_millis(300),
        ..ServeConfig::default()
    })
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let t = Instant::now();
    let got = read_to_close(&mut s, Duration::from_secs(5))
        .await
        .expect("closed when idle");
    assert!(got.ends_with("ok"), "{got}");
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );

    let answer = request(addr, "/slow").await;
    assert!(answer.ends_with("slow ok"), "{answer}");
}

/// On stop the listener closes; a request in flight finishes first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_lets_a_request_in_flight_finish() {
    let (addr, stop) = start(ServeConfig::default()).await;
    let slow = tokio::spawn(request(addr, "/slow"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(()).unwrap();
    assert!(slow.await.unwrap().ends_with("slow ok"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(TcpStream::connect(addr).await.is_err(), "still listening");
}

/// A connection upgraded to a WebSocket keeps its room under the limit until
/// the socket ends, though its HTTP connection is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_keeps_its_room_until_it_ends() {
    let (addr, _stop) = start(ServeConfig {
        max_connections: 1,
        ..ServeConfig::default()
    })
    .await;
    let mut ws = TcpStream::connect(addr).await.unwrap();
    ws.write_all(
        b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = vec![0; 1024];
    let n = ws.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 101"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waiting = tokio::spawn(async move { request(addr, "/").await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !waiting.is_finished(),
        "served while the WebSocket held the only room"
    );
    drop(ws);
    let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served once the WebSocket ended")
        .unwrap();
    assert!(answer.ends_with("ok"), "{answer}");
}

/// A head over the cap (one huge header, or many) gets 431 and the
/// connection ends; a head under it is served, and so are other clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_are_refused() {
    let (addr, _stop) = start(ServeConfig::default()).await;
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\nHost: t\r\n{many}Connection: close\r\n\r\n");
    for head in [huge, many] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // The server may close before it has read everything.
        let _ = s.write_all(head.as_bytes()).await;
        let got = read_to_close(&mut s, Duration::from_secs(10))
            .await
            .expect("the connection ends");
        assert!(
            got.starts_with("HTTP/1.1 431"),
            "{} bytes: {:.80}",
            head.len(),
            got
        );
    }
    let fits = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(30 * 1024)
    );
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(fits.as_bytes()).await.unwrap();
    let got = read_to_close(&mut s, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        got.starts_with("HTTP/1.1 200") && got.ends_with("ok"),
        "{got}"
    );
    assert!(request(addr, "/").await.ends_with("ok"));
}
