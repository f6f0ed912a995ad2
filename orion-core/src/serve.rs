//! Serving a router on a listener the way a node must face the network: a
//! bounded number of connections, a deadline for each request's head, and
//! idle connections closed.
//!
//! `axum::serve` accepts every connection and waits forever for a request's
//! head, so 5,000 half-open requests were held for over a minute and about
//! 20,000 used up the process's file descriptors, starving health checks and
//! Raft (which shares the table). [`serve`] is the accept loop every Orion
//! listener uses instead (the HTTP API here, the Raft port in `orion-store`):
//!
//! - at most [`ServeConfig::max_connections`] at once; past it the listener
//!   stops accepting, so new ones wait in the kernel's backlog instead of
//!   taking descriptors. The Raft port is a listener of its own with its own
//!   limit, so a flood of API clients cannot take Raft's room.
//! - a request's head must arrive within [`ServeConfig::header_read_timeout`]
//!   (hyper's), or the connection is closed, and be at most
//!   [`ServeConfig::max_header_bytes`] (and 100 headers), else 431;
//! - a connection that moves no byte for [`ServeConfig::idle_timeout`] is shut
//!   down gracefully: a request still in flight (a blocking query) finishes
//!   first, an idle keep-alive closes at once; one that moves nothing for
//!   10 min more (a client that stopped reading) is dropped.
//! - a connection upgraded to a WebSocket keeps its room until it ends.
//!
//! HTTP/1.1 with upgrades (the exec WebSocket) over hyper; graceful
//! shutdown on `stop`, in-flight requests given [`ServeConfig::drain`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

/// How a listener faces its clients. Each default says why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeConfig {
    /// Connections open at once. Default 4,096: far above what a cluster's
    /// own nodes, CLIs and dashboards open, and well inside a process's usual
    /// 1,048,576 (or 20,000) descriptors next to Raft, Docker and the
    /// balancer.
    pub max_connections: usize,
    /// Time a client has to send a whole request head. Default 10 s: a slow
    /// link sends a head in milliseconds; a client holding one open is an
    /// attack (Slowloris).
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers) read, in bytes; a
    /// larger one is answered 431 and the connection closed. Default 64 KiB:
    /// eight times a browser's cookie-laden head; hyper's own default (about
    /// 400 KiB) lets each of 4,096 connections hold that much before a route
    /// runs. Floor 8 KiB (hyper's minimum buffer).
    pub max_header_bytes: usize,
    /// A connection that moves no byte this long is shut down gracefully.
    /// Default 120 s: longer than any blocking query's wait (`wait` is capped
    /// at 10 min but a request in flight finishes first anyway), short enough
    /// that abandoned keep-alives give their room back.
    pub idle_timeout: Duration,
    /// On shutdown, how long in-flight requests get before connections are
    /// dropped. Default 5 s.
    pub drain: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            max_connections: 4_096,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            idle_timeout: Duration::from_secs(120),
            drain: Duration::from_secs(5),
        }
    }
}

/// Serves `router` on `listener` until `stop` resolves, under `config`, in
/// clear text.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    config: ServeConfig,
    stop: impl Future<Output = ()> + Send,
) {
    serve_tls(listener, router, config, None, stop).await
}

/// As [`serve`], over TLS when `tls` is given: the handshake must finish
/// within the head deadline, a client that speaks plain HTTP to it is told
/// so in one plain response, and a client certificate the config verified
/// reaches the routes as a [`PeerIdentity`](crate::tls::PeerIdentity)
/// request extension.
pub async fn serve_tls(
    listener: TcpListener,
    router: axum::Router,
    config: ServeConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: impl Future<Output = ()> + Send,
) {
    let max = config.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let room = Arc::new(Semaphore::new(max));
    let (closing, closed) = tokio::sync::watch::channel(false);
    // hyper's own HTTP/1 builder: hyper-util's `auto` first waits, with no
    // deadline, for the bytes that tell HTTP/1 from HTTP/2.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.max_header_bytes.max(8 * 1024))
        .keep_alive(true);
    let builder = Arc::new(builder);
    // hyper's buffer cap is a backstop only (one read can land past it):
    // the head's size is checked here too, before any route runs.
    let max_head = config.max_header_bytes;
    let router = router.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| async move {
            let head = head_bytes(&req);
            if head > max_head {
                use axum::response::IntoResponse;
                return (
                    axum::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    [(axum::http::header::CONNECTION, "close")],
                    format!("request head is {head} bytes, over the limit of {max_head}\n"),
                )
                    .into_response();
            }
            next.run(req).await
        },
    ));
    let mut conns = tokio::task::JoinSet::new();
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            p = room.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            _ = &mut stop => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let builder = builder.clone();
        let idle = config.idle_timeout;
        let head = config.header_read_timeout;
        let closed = closed.clone();
        let tls = tls.clone();
        conns.spawn(async move {
            let Some(tls) = tls else {
                let io = Tracked::new(stream, permit);
                return drive(io, router, None, builder, idle, closed, peer).await;
            };
            // A TLS client opens with a handshake record (0x16); anything
            // else is plain HTTP sent to a TLS port: say so and close.
            let mut first = [0u8; 1];
            match tokio::time::timeout(head, stream.peek(&mut first)).await {
                Ok(Ok(1)) if first[0] == 0x16 => {}
                Ok(Ok(1)) => {
                    use tokio::io::AsyncWriteExt;
                    let mut stream = stream;
                    let reply = format!(
                        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{PLAIN_TO_TLS}",
                        PLAIN_TO_TLS.len()
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                    let _ = stream.shutdown().await;
                    return;
                }
                _ => return,
            }
            let io = Tracked::new(stream, permit);
            let accepted =
                tokio::time::timeout(head, tokio_rustls::TlsAcceptor::from(tls).accept(io)).await;
            let io = match accepted {
                Ok(Ok(io)) => io,
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "no TLS handshake within the head deadline");
                    return;
                }
            };
            let identity = io
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| crate::tls::PeerIdentity::from_cert(c.as_ref()));
            drive(io, router, identity, builder, idle, closed, peer).await
        });
    }
    drop(listener);
    closing.send_replace(true);
    let drained = tokio::time::timeout(config.drain, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        debug!(
            left = conns.len(),
            "connections still open after the drain period: dropped"
        );
        conns.abort_all();
    }
}

/// A request head's size as sent: the request line and each header line.
fn head_bytes(req: &axum::extract::Request) -> usize {
    let line = req.method().as_str().len() + req.uri().to_string().len() + 11;
    req.headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + line
}

/// What a plain-HTTP client gets from a TLS port.
const PLAIN_TO_TLS: &str =
    "this port speaks TLS: use https:// and the cluster CA (--ca-cert, ORION_CACERT)\n";

/// Serves one connection: hyper's HTTP/1 with upgrades, closed when idle or
/// on shutdown (see the module docs).
async fn drive<S>(
    io: S,
    router: axum::Router,
    identity: Option<crate::tls::PeerIdentity>,
    builder: Arc<http1::Builder>,
    idle: Duration,
    mut closed: tokio::sync::watch::Receiver<bool>,
    peer: std::net::SocketAddr,
) where
    S: AsyncRead + AsyncWrite + Activity + Unpin + Send + 'static,
{
    let activity = io.activity();
    let service = tower::ServiceBuilder::new()
        .map_request(
            move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                if let Some(id) = &identity {
                    req.extensions_mut().insert(id.clone());
                }
                req
            },
        )
        .service(router);
    let service = TowerToHyperService::new(service);
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let check = idle.clamp(Duration::from_millis(10), Duration::from_secs(5));
    let quiet = || activity.quiet();
    let mut tick = tokio::time::interval(check);
    tick.tick().await;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    debug!(%peer, error = %e, "connection ended");
                }
                return;
            }
            _ = closed.wait_for(|c| *c) => break,
            _ = tick.tick() => if quiet() >= idle {
                debug!(%peer, "closing an idle connection");
                break;
            },
        }
    }
    // Take no further request; one in flight still finishes, unless
    // nothing moves for LONGEST_QUIET past the idle period (a client
    // that stopped reading, holding hyper mid-write).
    conn.as_mut().graceful_shutdown();
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = tick.tick() => if quiet() >= idle + LONGEST_QUIET {
                debug!(%peer, "dropping a connection that moves nothing");
                return;
            },
        }
    }
}

/// When a connection last moved a byte, shared with the task watching it.
#[derive(Clone)]
struct LastActivity {
    micros: Arc<AtomicU64>,
    started: Instant,
}

impl LastActivity {
    fn quiet(&self) -> Duration {
        let last = Duration::from_micros(self.micros.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }
}

/// A stream whose activity can be watched (through TLS, the TCP stream's).
trait Activity {
    fn activity(&self) -> LastActivity;
}

impl<S> Activity for Tracked<S> {
    fn activity(&self) -> LastActivity {
        LastActivity {
            micros: self.activity.clone(),
            started: self.started,
        }
    }
}

impl<S> Activity for tokio_rustls::server::TlsStream<Tracked<S>> {
    fn activity(&self) -> LastActivity {
        self.get_ref().0.activity()
    }
}

/// How long a request in flight may go without moving a byte before its
/// connection is dropped: the longest blocking query waits 10 min.
const LONGEST_QUIET: Duration = Duration::from_secs(600);

/// A stream that records when it last moved a byte (microseconds since the
/// connection started).
struct Tracked<S> {
    inner: S,
    activity: Arc<AtomicU64>,
    started: Instant,
    /// This connection's room under the limit, given back when the stream
    /// is dropped.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl<S> Tracked<S> {
    fn new(inner: S, permit: tokio::sync::OwnedSemaphorePermit) -> Self {
        Tracked {
            inner,
            activity: Arc::new(AtomicU64::new(0)),
            started: Instant::now(),
            _permit: permit,
        }
    }

    fn touch(&self) {
        self.activity
            .store(self.started.elapsed().as_micros() as u64, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
