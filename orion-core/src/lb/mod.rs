//! The load balancer on every node. A job's port may ask for a listener
//! (`ports[].lb`, [`crate::spec::LbSpec`]); every node then accepts on that
//! port, on its host IP, and proxies to the healthy instances of the job's
//! service wherever they run — the same instances discovery serves
//! ([`crate::catalog`]), read off the node's own replica.
//!
//! - **Health-aware.** An instance leaves every node's balancer as soon as its
//!   node reports it unhealthy or its stop is committed (the agent then drains
//!   it: see [`Balancer::active`]). Passively, a backend whose connection fails
//!   is marked down for a backoff (1 s, doubling to 30 s) and the connection (or
//!   request, when it has no body) is retried once on another backend: nothing
//!   was sent yet, so a retry cannot duplicate work.
//! - **Algorithms** ([`pick`]): round robin and weighted (nginx's smooth
//!   weighted round robin), least connections, IP hash (weighted rendezvous
//!   hashing: only the clients of a leaving instance move), least time.
//! - **Slow start** ramps a new instance's share from a tenth to all of it;
//!   **sticky** sessions by client IP or, in http mode, by a cookie; a per-node
//!   **rate limit** (token bucket: a refused connection is closed, a refused
//!   request answered 429) and **circuit breaker** (503 while open, then one
//!   trial).
//! - **Modes**: `tcp` proxies connections (`copy_bidirectional`, TCP_NODELAY on
//!   both legs); `http` proxies HTTP/1.1 requests with hyper (pooled keep-alive
//!   connections to backends, `x-forwarded-for`). Upgrades (WebSocket) need
//!   `tcp` mode.
//!
//! Draining sees this node's own connections: the agent stopping an instance
//! waits until none of them is open (at least [`DRAIN_SETTLE`], at most the
//! port's `lb.drain`). Other nodes have taken the instance out by then — they
//! apply the same committed stop — so no new connection reaches it; a long
//! connection through another node is cut when the task stops.

pub mod pick;
mod plan;

pub use plan::{conflicts, listener_conflicts, node_conflicts, plan, BackendPlan, ListenerPlan};

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::{Body as _, Incoming};
use hyper::{header, Request, Response, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::metrics::Metrics;
use crate::model::{AllocId, NodeId};
use crate::replica::Replica;
use crate::spec::{Algorithm, LbMode, LbSpec, Sticky};
use crate::state::Change;
use pick::{Admit, Breaker, Bucket, Candidate, Turns};

/// The least time an agent drains a stopping instance for, even when this
/// node has no connection to it open: long enough for every node to apply the
/// committed stop and take the instance out.
pub const DRAIN_SETTLE: Duration = Duration::from_secs(1);

/// How often listeners that could not bind are tried again.
const RETRY_BIND: Duration = Duration::from_secs(5);

/// How long a client IP stays stuck to its instance without a connection.
const STICKY_IDLE: Duration = Duration::from_secs(30 * 60);

type Body = BoxBody<Bytes, hyper::Error>;

/// A node's load balancer: its listeners and what they know of their backends.
pub struct Balancer {
    replica: Arc<Replica>,
    bind_ip: IpAddr,
    listeners: RwLock<BTreeMap<u16, Arc<Listener>>>,
    /// Ports that could not be bound, and why.
    problems: RwLock<BTreeMap<u16, String>>,
    /// Backends taken out while connections to them were open.
    retired: Mutex<Vec<Arc<Backend>>>,
    client: Client<HttpConnector, Body>,
    metrics: Arc<Metrics>,
    epoch: Instant,
}

/// One listener: a port, its service and its backends.
pub struct Listener {
    port: u16,
    service: String,
    spec: RwLock<LbSpec>,
    backends: RwLock<Arc<Vec<Arc<Backend>>>>,
    turns: Mutex<Turns>,
    sticky: Mutex<HashMap<IpAddr, (AllocId, Instant)>>,
    bucket: Mutex<Option<Bucket>>,
    breaker: Mutex<Breaker>,
    rate_limited: AtomicU64,
    broken: AtomicU64,
    no_backend: AtomicU64,
    accept: Mutex<Option<JoinHandle<()>>>,
    metrics: Arc<Metrics>,
    epoch: Instant,
}

/// One backend: an instance and what this node has seen of it.
pub struct Backend {
    /// The listener it belongs to.
    port: u16,
    alloc: AllocId,
    job: String,
    node: NodeId,
    addr: SocketAddr,
    weight: u32,
    key: u64,
    first_seen: Instant,
    active: AtomicU32,
    requests: AtomicU64,
    errors: AtomicU64,
    /// EWMA of the response time (connect time in tcp mode), µs, as f64 bits.
    latency_ewma: AtomicU64,
    latency_total_us: AtomicU64,
    down: Mutex<(u32, Option<Instant>)>,
}

/// A listener as `GET /v1/services/{name}/lb` shows it (this node's view).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ListenerStats {
    /// The port.
    pub port: u16,
    /// Its service.
    pub service: String,
    /// Its algorithm.
    pub algorithm: Algorithm,
    /// Its mode.
    pub mode: LbMode,
    /// Whether this node accepts on it; when not, why.
    pub bound: bool,
    /// Why it could not be bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Connections or requests refused by the rate limit.
    pub rate_limited: u64,
    /// Refused while the circuit breaker was open.
    pub breaker_refused: u64,
    /// Whether the circuit breaker is open now.
    pub breaker_open: bool,
    /// Refused for want of any healthy instance.
    pub no_backend: u64,
    /// Its backends.
    pub backends: Vec<BackendStats>,
}

/// One backend's figures on this node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackendStats {
    /// The allocation.
    pub alloc: AllocId,
    /// Its job.
    pub job: String,
    /// Its node.
    pub node: NodeId,
    /// Where it is reached.
    pub address: String,
    /// Its configured weight.
    pub weight: u32,
    /// The share of its weight it gets now (below 1 during slow start).
    pub share: f64,
    /// Connections (tcp) or requests (http) open to it.
    pub active: u32,
    /// Connections or requests it was sent.
    pub requests: u64,
    /// Of those, failed ones (refused connections; 5xx and broken answers).
    pub errors: u64,
    /// Recent response time (EWMA), ms.
    pub latency_ms: f64,
    /// Mean response time, ms.
    pub mean_latency_ms: f64,
    /// Marked down after a failed connection.
    pub down: bool,
    /// Taken out (its stop is committed), still with connections open.
    pub draining: bool,
}

/// Why a listener refused a connection or request.
enum Refusal {
    RateLimited,
    Open,
}

/// Counts one open connection or request against a backend while alive.
struct Open(Arc<Backend>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Backend {
    fn new(port: u16, p: &BackendPlan) -> Backend {
        Backend {
            port,
            alloc: p.alloc.clone(),
            job: p.job.clone(),
            node: p.node.clone(),
            addr: p.addr,
            weight: p.weight,
            key: pick::hash_str(&p.alloc),
            first_seen: Instant::now(),
            active: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency_ewma: AtomicU64::new(0f64.to_bits()),
            latency_total_us: AtomicU64::new(0),
            down: Mutex::new((0, None)),
        }
    }

    fn open(self: &Arc<Self>) -> Open {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        Open(self.clone())
    }

    fn is_down(&self, now: Instant) -> bool {
        self.down.lock().1.is_some_and(|until| now < until)
    }

    fn latency_us(&self) -> f64 {
        f64::from_bits(self.latency_ewma.load(Ordering::Relaxed))
    }

    /// It answered (or accepted) after `took`.
    fn answered(&self, took: Duration, error: bool) {
        let us = took.as_secs_f64() * 1e6;
        let old = self.latency_us();
        let new = if old == 0.0 { us } else { old * 0.8 + us * 0.2 };
        self.latency_ewma.store(new.to_bits(), Ordering::Relaxed);
        self.latency_total_us
            .fetch_add(us as u64, Ordering::Relaxed);
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        *self.down.lock() = (0, None);
    }

    /// Its connection failed: down for a backoff.
    fn failed(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut d = self.down.lock();
        d.0 += 1;
        d.1 = Some(Instant::now() + pick::down_for(d.0));
    }

    fn stats(&self, slow_start: Duration, draining: bool) -> BackendStats {
        let requests = self.requests.load(Ordering::Relaxed);
        let total = self.latency_total_us.load(Ordering::Relaxed) as f64;
        BackendStats {
            alloc: self.alloc.clone(),
            job: self.job.clone(),
            node: self.node.clone(),
            address: self.addr.to_string(),
            weight: self.weight,
            share: pick::slow_start_share(self.first_seen.elapsed(), slow_start),
            active: self.active.load(Ordering::Relaxed),
            requests,
            errors: self.errors.load(Ordering::Relaxed),
            latency_ms: self.latency_us() / 1000.0,
            mean_latency_ms: if requests == 0 {
                0.0
            } else {
                total / requests as f64 / 1000.0
            },
            down: self.is_down(Instant::now()),
            draining,
        }
    }
}

fn ip_key(ip: IpAddr) -> u64 {
    let v = match ip {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => {
            let n = u128::from(v6);
            (n as u64) ^ ((n >> 64) as u64)
        }
    };
    pick::mix(v)
}

impl Listener {
    fn new(plan: &ListenerPlan, metrics: Arc<Metrics>, epoch: Instant) -> Listener {
        let l = Listener {
            port: plan.port,
            service: plan.service.clone(),
            spec: RwLock::new(plan.spec.clone()),
            backends: RwLock::new(Arc::new(Vec::new())),
            turns: Mutex::new(Turns::default()),
            sticky: Mutex::new(HashMap::new()),
            bucket: Mutex::new(None),
            breaker: Mutex::new(Breaker::default()),
            rate_limited: AtomicU64::new(0),
            broken: AtomicU64::new(0),
            no_backend: AtomicU64::new(0),
            accept: Mutex::new(None),
            metrics,
            epoch,
        };
        l.configure(&plan.spec);
        l
    }

    fn configure(&self, spec: &LbSpec) {
        let changed = *self.spec.read() != *spec;
        let mut bucket = self.bucket.lock();
        if changed || bucket.is_none() != spec.rate_limit.is_none() {
            *bucket = spec.rate_limit.as_ref().map(|r| {
                Bucket::new(
                    r.per_second,
                    r.burst.unwrap_or(r.per_second),
                    self.epoch.elapsed(),
                )
            });
        }
        if changed {
            *self.spec.write() = spec.clone();
        }
    }

    /// Takes the backends of `plan`, keeping what is known of those it had;
    /// returns the ones it dropped.
    fn set_backends(&self, plan: &[BackendPlan]) -> Vec<Arc<Backend>> {
        let old = self.backends.read().clone();
        let mut next = Vec::with_capacity(plan.len());
        for p in plan {
            let kept = old
                .iter()
                .find(|b| b.alloc == p.alloc && b.addr == p.addr)
                .cloned();
            next.push(kept.unwrap_or_else(|| Arc::new(Backend::new(self.port, p))));
        }
        let dropped = old
            .iter()
            .filter(|b| !next.iter().any(|n| Arc::ptr_eq(n, b)))
            .cloned()
            .collect();
        if old.len() != next.len() || old.iter().zip(&next).any(|(a, b)| !Arc::ptr_eq(a, b)) {
            *self.backends.write() = Arc::new(next);
        }
        dropped
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn admit(&self) -> Result<Admit, Refusal> {
        if let Some(b) = self.bucket.lock().as_mut() {
            if !b.take(self.now()) {
                self.rate_limited.fetch_add(1, Ordering::Relaxed);
                return Err(Refusal::RateLimited);
            }
        }
        if self.spec.read().circuit_breaker.is_none() {
            return Ok(Admit::Yes);
        }
        match self.breaker.lock().admit(self.now()) {
            Admit::No => {
                self.broken.fetch_add(1, Ordering::Relaxed);
                Err(Refusal::Open)
            }
            a => Ok(a),
        }
    }

    fn outcome(&self, ok: bool) {
        let Some(cb) = self.spec.read().circuit_breaker.clone() else {
            return;
        };
        let mut b = self.breaker.lock();
        if ok {
            b.success();
        } else {
            b.failure(self.now(), cb.failures, cb.open_for);
        }
    }

    /// The backend for a client, never `exclude`.
    fn choose(
        &self,
        client: IpAddr,
        cookie: Option<&str>,
        exclude: Option<&AllocId>,
    ) -> Option<Arc<Backend>> {
        let backends = self.backends.read().clone();
        if backends.is_empty() {
            return None;
        }
        let (algorithm, sticky, slow_start) = {
            let s = self.spec.read();
            (s.algorithm, s.sticky, s.slow_start)
        };
        let now = Instant::now();
        let usable = |b: &&Arc<Backend>| !b.is_down(now) && Some(&b.alloc) != exclude;
        let stuck = match sticky {
            Sticky::Cookie => cookie.map(str::to_string),
            Sticky::Ip => self.sticky.lock().get(&client).map(|(a, _)| a.clone()),
            Sticky::None => None,
        };
        if let Some(b) = stuck.and_then(|id| backends.iter().filter(usable).find(|b| b.alloc == id))
        {
            if sticky == Sticky::Ip {
                self.sticky.lock().insert(client, (b.alloc.clone(), now));
            }
            return Some(b.clone());
        }
        let cands: Vec<Candidate> = backends
            .iter()
            .map(|b| {
                let weight = if algorithm == Algorithm::Weighted || algorithm == Algorithm::IpHash {
                    f64::from(b.weight)
                } else {
                    1.0
                };
                Candidate {
                    weight: weight
                        * pick::slow_start_share(now.duration_since(b.first_seen), slow_start),
                    active: b.active.load(Ordering::Relaxed),
                    latency_us: b.latency_us(),
                    down: b.is_down(now),
                    key: b.key,
                }
            })
            .collect();
        let ex = exclude.and_then(|id| backends.iter().position(|b| b.alloc == *id));
        let i = pick::pick(
            algorithm,
            &cands,
            &mut self.turns.lock(),
            ip_key(client),
            ex,
        )?;
        let chosen = backends[i].clone();
        if sticky == Sticky::Ip {
            self.sticky
                .lock()
                .insert(client, (chosen.alloc.clone(), now));
        }
        Some(chosen)
    }

    fn record(&self, outcome: &'static str, took: Option<Duration>) {
        let labels = crate::metrics::LbLabels {
            service: self.service.clone(),
            outcome: outcome.to_string(),
        };
        self.metrics.lb_requests.get_or_create(&labels).inc();
        if let Some(t) = took {
            self.metrics
                .lb_duration
                .get_or_create(&crate::metrics::ServiceLabel {
                    service: self.service.clone(),
                })
                .observe(t.as_secs_f64());
        }
    }

    /// Proxies one inbound connection in tcp mode.
    async fn tcp(self: Arc<Self>, mut inbound: TcpStream, peer: SocketAddr) {
        let _ = inbound.set_nodelay(true);
        match self.admit() {
            Ok(_) => {}
            Err(Refusal::RateLimited) => return self.record("rate_limited", None),
            Err(Refusal::Open) => return self.record("breaker_open", None),
        }
        let connect_timeout = self.spec.read().connect_timeout;
        let mut exclude = None;
        for _ in 0..2 {
            let Some(b) = self.choose(peer.ip(), None, exclude.as_ref()) else {
                self.no_backend.fetch_add(1, Ordering::Relaxed);
                return self.record("no_backend", None);
            };
            let open = b.open();
            let t = Instant::now();
            match tokio::time::timeout(connect_timeout, TcpStream::connect(b.addr)).await {
                Ok(Ok(mut out)) => {
                    let _ = out.set_nodelay(true);
                    b.answered(t.elapsed(), false);
                    self.outcome(true);
                    let began = Instant::now();
                    let r = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    self.record(
                        if r.is_ok() { "ok" } else { "reset" },
                        Some(began.elapsed()),
                    );
                    drop(open);
                    return;
                }
                Ok(Err(e)) => debug!(backend = %b.addr, error = %e, "backend refused"),
                Err(_) => debug!(backend = %b.addr, "backend connect timed out"),
            }
            drop(open);
            b.failed();
            self.outcome(false);
            self.record("connect_failed", None);
            exclude = Some(b.alloc.clone());
        }
    }

    /// Serves one inbound connection in http mode.
    async fn http(
        self: Arc<Self>,
        client: Client<HttpConnector, Body>,
        inbound: TcpStream,
        peer: SocketAddr,
    ) {
        let _ = inbound.set_nodelay(true);
        let svc = hyper::service::service_fn(move |req| {
            let l = self.clone();
            let c = client.clone();
            async move { Ok::<_, Infallible>(l.forward(c, req, peer).await) }
        });
        if let Err(e) = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(inbound), svc)
            .await
        {
            debug!(error = %e, "lb http connection ended");
        }
    }

    fn cookie_name(&self) -> String {
        format!("orion-lb-{}", self.port)
    }

    async fn forward(
        &self,
        client: Client<HttpConnector, Body>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Body> {
        match self.admit() {
            Ok(_) => {}
            Err(Refusal::RateLimited) => {
                self.record("rate_limited", None);
                return plain(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded\n");
            }
            Err(Refusal::Open) => {
                self.record("breaker_open", None);
                return plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("circuit breaker of service {} is open\n", self.service),
                );
            }
        }
        let cookie_name = self.cookie_name();
        let sticky = self.spec.read().sticky;
        let cookie = (sticky == Sticky::Cookie)
            .then(|| cookie_value(req.headers(), &cookie_name))
            .flatten();
        let (mut parts, body) = req.into_parts();
        for h in HOP_BY_HOP {
            parts.headers.remove(*h);
        }
        let forwarded = match parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(prev) => format!("{prev}, {}", peer.ip()),
            None => peer.ip().to_string(),
        };
        if let Ok(v) = header::HeaderValue::from_str(&forwarded) {
            parts.headers.insert("x-forwarded-for", v);
        }
        let retryable = body.is_end_stream();
        let mut body = Some(body.boxed());
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let mut exclude = None;
        for _ in 0..2 {
            let Some(b) = self.choose(peer.ip(), cookie.as_deref(), exclude.as_ref()) else {
                self.no_backend.fetch_add(1, Ordering::Relaxed);
                self.record("no_backend", None);
                return plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("no healthy instance of service {}\n", self.service),
                );
            };
            let mut p = parts.clone();
            p.uri = match format!("http://{}{path}", b.addr).parse() {
                Ok(u) => u,
                Err(_) => return plain(StatusCode::BAD_REQUEST, "bad request target\n"),
            };
            let body = body
                .take()
                .unwrap_or_else(|| Empty::new().map_err(|n: Infallible| match n {}).boxed());
            let open = b.open();
            let t = Instant::now();
            match client.request(Request::from_parts(p, body)).await {
                Ok(resp) => {
                    let took = t.elapsed();
                    let failed = resp.status().is_server_error();
                    b.answered(took, failed);
                    self.outcome(!failed);
                    self.record(if failed { "5xx" } else { "ok" }, Some(took));
                    let set_cookie =
                        sticky == Sticky::Cookie && cookie.as_deref() != Some(&b.alloc);
                    let (mut rp, rbody) = resp.into_parts();
                    if set_cookie {
                        if let Ok(v) = header::HeaderValue::from_str(&format!(
                            "{cookie_name}={}; Path=/; HttpOnly",
                            b.alloc
                        )) {
                            rp.headers.append(header::SET_COOKIE, v);
                        }
                    }
                    // The request counts as open until its answer is read.
                    let body = rbody
                        .map_frame(move |f| {
                            let _ = &open;
                            f
                        })
                        .boxed();
                    return Response::from_parts(rp, body);
                }
                Err(e) if e.is_connect() => {
                    drop(open);
                    debug!(backend = %b.addr, error = %e, "backend refused");
                    b.failed();
                    self.outcome(false);
                    self.record("connect_failed", None);
                    if !retryable {
                        break;
                    }
                    exclude = Some(b.alloc.clone());
                }
                Err(e) => {
                    drop(open);
                    b.errors.fetch_add(1, Ordering::Relaxed);
                    self.outcome(false);
                    self.record("error", None);
                    return plain(
                        StatusCode::BAD_GATEWAY,
                        format!("backend {}: {e}\n", b.addr),
                    );
                }
            }
        }
        plain(
            StatusCode::BAD_GATEWAY,
            format!(
                "no instance of service {} accepted the request\n",
                self.service
            ),
        )
    }

    fn stats(
        &self,
        bound: bool,
        problem: Option<String>,
        retired: &[Arc<Backend>],
    ) -> ListenerStats {
        let spec = self.spec.read().clone();
        let mut backends: Vec<BackendStats> = self
            .backends
            .read()
            .iter()
            .map(|b| b.stats(spec.slow_start, false))
            .collect();
        backends.extend(retired.iter().map(|b| b.stats(spec.slow_start, true)));
        ListenerStats {
            port: self.port,
            service: self.service.clone(),
            algorithm: spec.algorithm,
            mode: spec.mode,
            bound,
            problem,
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            breaker_refused: self.broken.load(Ordering::Relaxed),
            breaker_open: self.breaker.lock().is_open(self.now()),
            no_backend: self.no_backend.load(Ordering::Relaxed),
            backends,
        }
    }
}

/// Headers that concern one connection, not the request.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

fn cookie_value(headers: &header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn plain(status: StatusCode, text: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(text.into()))
            .map_err(|n: Infallible| match n {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

impl Balancer {
    /// A balancer binding its listeners on `bind_ip` (the node's host IP).
    pub fn new(replica: Arc<Replica>, bind_ip: IpAddr, metrics: Arc<Metrics>) -> Arc<Balancer> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Arc::new(Balancer {
            replica,
            bind_ip,
            listeners: RwLock::new(BTreeMap::new()),
            problems: RwLock::new(BTreeMap::new()),
            retired: Mutex::new(Vec::new()),
            client,
            metrics,
            epoch: Instant::now(),
        })
    }

    /// Follows the replica until `stop` turns true: every committed change to
    /// jobs or allocations re-reads the listeners and their backends.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut changes = self.replica.subscribe_changes();
        let mut retry = tokio::time::interval(RETRY_BIND);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.sync().await;
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                _ = retry.tick() => {}
                r = changes.recv() => match r {
                    Ok(b) if !b.changes.iter().any(|c| matches!(c, Change::Job { .. } | Change::Alloc { .. })) => continue,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            }
        }
        for l in std::mem::take(&mut *self.listeners.write()).into_values() {
            if let Some(t) = l.accept.lock().take() {
                t.abort();
            }
        }
    }

    /// Makes the listeners match the committed state once.
    pub async fn sync(&self) {
        let plans = self.replica.read(plan);
        let wanted: BTreeMap<u16, &ListenerPlan> = plans.iter().map(|p| (p.port, p)).collect();
        let mut dropped = Vec::new();
        // Listeners no longer asked for (or now of another service) stop accepting.
        let gone: Vec<Arc<Listener>> = {
            let mut ls = self.listeners.write();
            let ports: Vec<u16> = ls
                .iter()
                .filter(|(port, l)| wanted.get(port).is_none_or(|p| p.service != l.service))
                .map(|(port, _)| *port)
                .collect();
            ports.into_iter().filter_map(|p| ls.remove(&p)).collect()
        };
        for l in gone {
            info!(port = l.port, service = %l.service, "load balancer listener closed");
            if let Some(t) = l.accept.lock().take() {
                t.abort();
            }
            dropped.extend(l.set_backends(&[]));
        }
        self.problems
            .write()
            .retain(|port, _| wanted.contains_key(port));
        for (port, p) in &wanted {
            let existing = self.listeners.read().get(port).cloned();
            let listener = match existing {
                Some(l) => l,
                None => match self.bind(p).await {
                    Some(l) => l,
                    None => continue,
                },
            };
            listener.configure(&p.spec);
            dropped.extend(listener.set_backends(&p.backends));
            listener
                .sticky
                .lock()
                .retain(|_, (_, at)| at.elapsed() < STICKY_IDLE);
        }
        let mut retired = self.retired.lock();
        retired.extend(dropped);
        retired.retain(|b| b.active.load(Ordering::Relaxed) > 0);
        for l in self.listeners.read().values() {
            let active: u32 = l
                .backends
                .read()
                .iter()
                .chain(retired.iter().filter(|b| b.port == l.port))
                .map(|b| b.active.load(Ordering::Relaxed))
                .sum();
            self.metrics
                .lb_active
                .get_or_create(&crate::metrics::ServiceLabel {
                    service: l.service.clone(),
                })
                .set(i64::from(active));
        }
    }

    async fn bind(&self, p: &ListenerPlan) -> Option<Arc<Listener>> {
        let addr = SocketAddr::new(self.bind_ip, p.port);
        let socket = match TcpListener::bind(addr).await {
            Ok(s) => s,
            Err(e) => {
                let problem = format!("cannot listen on {addr}: {e}");
                let mut problems = self.problems.write();
                if problems.get(&p.port) != Some(&problem) {
                    warn!(service = %p.service, %problem, "load balancer listener not bound");
                    problems.insert(p.port, problem);
                }
                return None;
            }
        };
        self.problems.write().remove(&p.port);
        let listener = Arc::new(Listener::new(p, self.metrics.clone(), self.epoch));
        let l = listener.clone();
        let client = self.client.clone();
        let mode = p.spec.mode;
        let task = tokio::spawn(async move {
            loop {
                match socket.accept().await {
                    Ok((stream, peer)) => {
                        let l = l.clone();
                        match mode {
                            LbMode::Tcp => tokio::spawn(l.tcp(stream, peer)),
                            LbMode::Http => tokio::spawn(l.http(client.clone(), stream, peer)),
                        };
                    }
                    Err(e) => {
                        warn!(error = %e, "load balancer accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        *listener.accept.lock() = Some(task);
        info!(%addr, service = %p.service, algorithm = ?p.spec.algorithm, mode = ?p.spec.mode, "load balancer listening");
        self.listeners.write().insert(p.port, listener.clone());
        Some(listener)
    }

    /// Connections (tcp) or requests (http) this node's balancer has open to
    /// `alloc`, whether it is still a backend or already taken out: what the
    /// agent waits on before it stops the task.
    pub fn active(&self, alloc: &str) -> u32 {
        let live: u32 = self
            .listeners
            .read()
            .values()
            .flat_map(|l| {
                l.backends
                    .read()
                    .clone()
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .filter(|b| b.alloc == alloc)
            .map(|b| b.active.load(Ordering::Relaxed))
            .sum();
        let retired: u32 = self
            .retired
            .lock()
            .iter()
            .filter(|b| b.alloc == alloc)
            .map(|b| b.active.load(Ordering::Relaxed))
            .sum();
        live + retired
    }

    /// This node's listeners of `service` (every listener when `None`) and
    /// their backends' figures, including ports it could not bind.
    pub fn stats(&self, service: Option<&str>) -> Vec<ListenerStats> {
        let plans = self.replica.read(plan);
        let retired = self.retired.lock().clone();
        let listeners = self.listeners.read();
        let problems = self.problems.read();
        plans
            .iter()
            .filter(|p| service.is_none_or(|s| p.service == s))
            .map(|p| match listeners.get(&p.port) {
                Some(l) => {
                    let mine: Vec<Arc<Backend>> = retired
                        .iter()
                        .filter(|b| b.port == p.port)
                        .cloned()
                        .collect();
                    l.stats(true, None, &mine)
                }
                None => ListenerStats {
                    port: p.port,
                    service: p.service.clone(),
                    algorithm: p.spec.algorithm,
                    mode: p.spec.mode,
                    bound: false,
                    problem: problems.get(&p.port).cloned(),
                    rate_limited: 0,
                    breaker_refused: 0,
                    breaker_open: false,
                    no_backend: 0,
                    backends: Vec::new(),
                },
            })
            .collect()
    }

    /// Ports this node was asked to listen on and could not, with why.
    pub fn problems(&self) -> BTreeMap<u16, String> {
        self.problems.read().clone()
    }
}
