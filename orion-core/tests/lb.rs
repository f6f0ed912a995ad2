//! The load balancer over the fakes, with real sockets: the fake runtime
//! "runs" the allocations, and each test serves their host ports itself (an
//! HTTP server or a TCP one that names the allocation), so every request goes
//! client → the node's listener → a backend and back, as in production.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orion_core::lb::ListenerStats;
use orion_core::model::{AllocState, DesiredState};
use orion_core::spec::LbSpec;
use orion_core::testing::{FakeRuntime, MemStore};
use orion_core::{Cluster, JobSpec, NodeProfile};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// 16 consecutive loopback ports that are free now, below Linux's ephemeral
/// range (32768+) so that no listener picked by port 0 and no client socket
/// takes one later: the node's dynamic range.
fn free_block() -> (u16, u16) {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let base = 24000 + (std::process::id() % 32) as u16 * 256;
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst) % 16;
        let lo = base + n * 16;
        if (lo..lo + 16).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return (lo, lo + 15);
        }
    }
}

async fn node(name: &str) -> Cluster {
    let mut p = NodeProfile::default();
    p.id = Some(name.into());
    p.port_range = free_block();
    let c = Cluster::builder()
        .node(p)
        .runtime_shared(Arc::new(FakeRuntime::new()))
        .store(MemStore::new(name))
        .config(orion_core::testing::fast_loops())
        .http("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    c.ready(Duration::from_secs(5)).await.unwrap();
    c
}

fn lb(v: Value) -> LbSpec {
    serde_json::from_value(v).unwrap()
}

fn job(name: &str, replicas: u32, lb_spec: LbSpec) -> JobSpec {
    let mut spec = JobSpec::service(name, "orion-test/web:1")
        .port("http", 80)
        .replicas(replicas)
        .resources(0.1, 32);
    spec.task.ports[0].lb = Some(lb_spec);
    spec
}

/// What a test backend answers: `/` with `status` and its allocation id,
/// `/health` with `health`, `/slow` after a second.
#[derive(Default)]
struct Ctl {
    status: AtomicU16,
    health: AtomicU16,
}

async fn serve_http(addr: SocketAddr, id: String, ctl: Arc<Ctl>) {
    use axum::http::StatusCode;
    use axum::routing::get;
    ctl.status.store(200, Ordering::SeqCst);
    ctl.health.store(200, Ordering::SeqCst);
    let (c1, c2) = (ctl.clone(), ctl.clone());
    let app = axum::Router::new()
        .route(
            "/",
            get(move || {
                let code = c1.status.load(Ordering::SeqCst);
                let id = id.clone();
                async move { (StatusCode::from_u16(code).unwrap(), id) }
            }),
        )
        .route(
            "/health",
            get(move || {
                let code = c2.health.load(Ordering::SeqCst);
                async move { StatusCode::from_u16(code).unwrap() }
            }),
        );
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
}

/// A TCP backend: names its allocation on accept, then holds the connection
/// until the client closes it.
async fn serve_tcp(addr: SocketAddr, id: String) {
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let id = id.clone();
            tokio::spawn(async move {
                let _ = s.write_all(format!("{id}\n").as_bytes()).await;
                let mut buf = [0u8; 64];
                while matches!(tokio::io::AsyncReadExt::read(&mut s, &mut buf).await, Ok(n) if n > 0)
                {
                }
            });
        }
    });
}

/// The running allocations of `job` and the address of their port.
async fn running(c: &Cluster, job: &str, n: usize) -> Vec<(String, SocketAddr)> {
    c.wait_running(job, n, Duration::from_secs(10))
        .await
        .unwrap();
    c.allocations(Some(job))
        .into_iter()
        .filter(|a| a.desired == DesiredState::Run && a.state == AllocState::Running)
        .map(|a| {
            let p = &a.ports[0];
            (
                a.id.clone(),
                SocketAddr::new(p.host_ip.parse().unwrap(), p.host_port),
            )
        })
        .collect()
}

/// Waits until this node's listener on `service` is bound with `n` backends
/// (not counting draining ones).
async fn backends(c: &Cluster, service: &str, n: usize) -> ListenerStats {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = c.lb_stats(Some(service));
        if let Some(l) = stats.first() {
            if l.bound && l.backends.iter().filter(|b| !b.draining).count() == n {
                return l.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "listener of {service} with {n} backends: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// `n` GETs of `/` through `port`, counted by the answering allocation.
async fn spread(port: u16, n: usize) -> BTreeMap<String, usize> {
    let http = client();
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let r = http
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        *out.entry(r.text().await.unwrap()).or_insert(0) += 1;
    }
    out
}

/// As [`spread`], showing the node's listener and allocations on a failure.
async fn spread_or_show(c: &Cluster, job: &str, port: u16, n: usize) -> BTreeMap<String, usize> {
    let http = client();
    let mut out = BTreeMap::new();
    for i in 0..n {
        let r = http
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        if status != 200 {
            let allocs: Vec<_> = c
                .allocations(Some(job))
                .into_iter()
                .map(|a| (a.id, a.desired, a.state, a.health.map(|h| h.status)))
                .collect();
            panic!(
                "request {i}: {status} {text}; listener {:?}; allocations {allocs:?}",
                c.lb_stats(None)
            );
        }
        *out.entry(text).or_insert(0) += 1;
    }
    out
}

fn within(got: usize, want: usize, pct: usize) -> bool {
    got.abs_diff(want) * 100 <= want * pct
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_weighted_and_ip_hash_spread_as_they_say() {
    let c = node("lb-spread").await;
    // Round robin over three instances, http mode.
    let rr = free_port();
    c.submit(job("web", 3, lb(json!({ "port": rr, "mode": "http" }))))
        .await
        .unwrap();
    for (id, addr) in running(&c, "web", 3).await {
        serve_http(addr, id, Arc::default()).await;
    }
    backends(&c, "web", 3).await;
    let got = spread(rr, 3000).await;
    assert_eq!(got.len(), 3, "{got:?}");
    for n in got.values() {
        assert!(
            within(*n, 1000, 5),
            "round robin off by more than 5%: {got:?}"
        );
    }

    // Weighted: two jobs of one service share a listener, weights 1 and 3.
    let wt = free_port();
    let mut a = job(
        "wt-a",
        1,
        lb(json!({ "port": wt, "mode": "http", "algorithm": "weighted", "weight": 1 })),
    );
    let mut b = job(
        "wt-b",
        1,
        lb(json!({ "port": wt, "mode": "http", "algorithm": "weighted", "weight": 3 })),
    );
    for s in [&mut a, &mut b] {
        s.task.service = Some(orion_core::spec::ServiceSpec {
            name: Some("wt".into()),
            ..Default::default()
        });
    }
    c.submit(a).await.unwrap();
    c.submit(b).await.unwrap();
    let (ida, addra) = running(&c, "wt-a", 1).await.remove(0);
    let (idb, addrb) = running(&c, "wt-b", 1).await.remove(0);
    serve_http(addra, ida.clone(), Arc::default()).await;
    serve_http(addrb, idb.clone(), Arc::default()).await;
    backends(&c, "wt", 2).await;
    let got = spread(wt, 2000).await;
    assert!(
        within(got[&ida], 500, 5) && within(got[&idb], 1500, 5),
        "weights 1:3: {got:?}"
    );

    // IP hash: each client address (127.0.0.10-29) stays on one instance.
    let ih = free_port();
    c.submit(job(
        "ih",
        3,
        lb(json!({ "port": ih, "mode": "http", "algorithm": "ip_hash" })),
    ))
    .await
    .unwrap();
    for (id, addr) in running(&c, "ih", 3).await {
        serve_http(addr, id, Arc::default()).await;
    }
    backends(&c, "ih", 3).await;
    let mut used = std::collections::BTreeSet::new();
    for last in 10..30u8 {
        let from: IpAddr = [127, 0, 0, last].into();
        let http = reqwest::Client::builder()
            .local_address(from)
            .build()
            .unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..20 {
            let r = http
                .get(format!("http://127.0.0.1:{ih}/"))
                .send()
                .await
                .unwrap();
            seen.insert(r.text().await.unwrap());
        }
        assert_eq!(seen.len(), 1, "client {from} moved between {seen:?}");
        used.extend(seen);
    }
    assert!(used.len() >= 2, "20 clients all hashed to {used:?}");

    // Per-backend figures on this node.
    let stats = c.lb_stats(Some("web"));
    let total: u64 = stats[0].backends.iter().map(|b| b.requests).sum();
    assert_eq!(total, 3000, "{stats:?}");
    assert!(stats[0]
        .backends
        .iter()
        .all(|b| b.errors == 0 && b.latency_ms > 0.0));
    let api = c.http_addr().unwrap();
    let body: Value = client()
        .get(format!("http://{api}/v1/services/web/lb"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body[0]["port"], rr);
    assert_eq!(body[0]["backends"].as_array().unwrap().len(), 3);
    let r = client()
        .get(format!("http://{api}/v1/services/nope/lb"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let metrics = client()
        .get(format!("http://{api}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"orion_lb_requests_total{service="web",outcome="ok"} 3000"#),
        "{metrics}"
    );
    c.shutdown().await;
}

/// Opens a connection through a tcp listener and reads which instance it reached.
async fn open(port: u16) -> (String, tokio::net::TcpStream) {
    let s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    (line.trim().to_string(), r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_favours_the_idle_instance_and_a_stopping_one_drains() {
    let c = node("lb-least").await;
    let port = free_port();
    c.submit(job(
        "hold",
        3,
        lb(json!({ "port": port, "algorithm": "least_conn", "drain": "20s" })),
    ))
    .await
    .unwrap();
    for (id, addr) in running(&c, "hold", 3).await {
        serve_tcp(addr, id).await;
    }
    backends(&c, "hold", 3).await;
    let mut conns: HashMap<String, Vec<tokio::net::TcpStream>> = HashMap::new();
    for _ in 0..6 {
        let (id, s) = open(port).await;
        conns.entry(id).or_default().push(s);
    }
    assert!(
        conns.values().all(|v| v.len() == 2),
        "6 long connections over 3: {:?}",
        conns.keys()
    );
    // Free one instance: both new connections go to it.
    let idle = conns.keys().next().unwrap().clone();
    conns.remove(&idle);
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..2 {
        let (id, s) = open(port).await;
        assert_eq!(
            id, idle,
            "least_conn sent a connection past the idle instance"
        );
        conns.entry(id).or_default().push(s);
    }

    // Scale to 2: the stopped instance leaves the balancer at once but keeps
    // running while a connection to it is open.
    c.submit(job(
        "hold",
        2,
        lb(json!({ "port": port, "algorithm": "least_conn", "drain": "20s" })),
    ))
    .await
    .unwrap();
    let stopping = loop {
        if let Some(a) = c
            .allocations(Some("hold"))
            .into_iter()
            .find(|a| a.desired == DesiredState::Stop)
        {
            break a.id;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let stats = backends(&c, "hold", 2).await;
    assert!(
        stats
            .backends
            .iter()
            .any(|b| b.alloc == stopping && b.draining && b.active == 2),
        "{stats:?}"
    );
    for _ in 0..6 {
        let (id, s) = open(port).await;
        assert_ne!(id, stopping, "a new connection reached a stopping instance");
        drop(s);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let state = |c: &Cluster| {
        c.allocations(Some("hold"))
            .into_iter()
            .find(|a| a.id == stopping)
            .map(|a| a.state)
    };
    assert_eq!(
        state(&c),
        Some(AllocState::Running),
        "stopped while connections were open"
    );
    conns.remove(&stopping);
    let deadline = Instant::now() + Duration::from_secs(5);
    while state(&c) == Some(AllocState::Running) {
        assert!(
            Instant::now() < deadline,
            "not stopped after its connections closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_instances_get_no_request_and_dead_ones_are_retried_past() {
    let c = node("lb-health").await;
    let port = free_port();
    let mut spec = job("hc", 3, lb(json!({ "port": port, "mode": "http" })));
    let mut check = orion_core::spec::HealthCheck::new(orion_core::spec::CheckKind::Http);
    check.port = Some("http".into());
    check.path = Some("/health".into());
    check.interval = Duration::from_millis(300);
    check.timeout = Duration::from_millis(250);
    check.grace = Duration::from_secs(1);
    check.failures = 3;
    spec = spec.health_check(check);
    spec.restart = Some(serde_json::from_value(json!({ "mode": "fail", "attempts": 0 })).unwrap());
    c.submit(spec).await.unwrap();
    let allocs = running(&c, "hc", 3).await;
    let mut ctls = HashMap::new();
    for (id, addr) in &allocs {
        let ctl = Arc::new(Ctl::default());
        serve_http(*addr, id.clone(), ctl.clone()).await;
        ctls.insert(id.clone(), ctl);
    }
    // Healthy once the checks pass.
    backends(&c, "hc", 3).await;
    let (sick, _) = &allocs[0];
    ctls[sick].health.store(500, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reported = c.allocations(Some("hc")).into_iter().any(|a| {
            a.id == *sick
                && (a
                    .health
                    .as_ref()
                    .is_some_and(|h| h.status != orion_core::model::HealthStatus::Healthy)
                    || !a.is_live())
        });
        if reported {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sick instance was never reported"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The balancer follows the committed report.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let got = spread_or_show(&c, "hc", port, 300).await;
    assert!(
        !got.contains_key(sick),
        "requests reached an unhealthy instance: {got:?}"
    );

    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_backend_is_marked_down_and_requests_are_retried_past_it() {
    let c = node("lb-passive").await;
    let port = free_port();
    c.submit(job("pas", 3, lb(json!({ "port": port, "mode": "http" }))))
        .await
        .unwrap();
    let allocs = running(&c, "pas", 3).await;
    // The first instance's process is not listening (its node has not noticed).
    let dead = allocs[0].0.clone();
    for (id, addr) in &allocs[1..] {
        serve_http(*addr, id.clone(), Arc::default()).await;
    }
    backends(&c, "pas", 3).await;
    let got = spread(port, 300).await; // asserts every answer is a 200
    assert!(!got.contains_key(&dead), "{got:?}");
    let stats = c.lb_stats(Some("pas"));
    let d = stats[0].backends.iter().find(|b| b.alloc == dead).unwrap();
    assert!(d.down && d.errors >= 1, "{d:?}");
    assert!(
        d.errors <= 3,
        "a down backend is skipped for its backoff, not tried per request: {d:?}"
    );

    // tcp mode: the connection is retried on another backend too.
    let tport = free_port();
    c.submit(job("tpas", 2, lb(json!({ "port": tport }))))
        .await
        .unwrap();
    let allocs = running(&c, "tpas", 2).await;
    serve_tcp(allocs[1].1, allocs[1].0.clone()).await;
    backends(&c, "tpas", 2).await;
    for _ in 0..10 {
        let (id, _s) = open(tport).await;
        assert_eq!(id, allocs[1].0);
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_breaker_sticky_cookie_and_slow_start() {
    let c = node("lb-guards").await;
    let http = client();
    // Rate limit: 5 a second, burst 5.
    let rl = free_port();
    c.submit(job(
        "rl",
        1,
        lb(json!({ "port": rl, "mode": "http", "rate_limit": { "per_second": 5, "burst": 5 } })),
    ))
    .await
    .unwrap();
    let (id, addr) = running(&c, "rl", 1).await.remove(0);
    serve_http(addr, id, Arc::default()).await;
    backends(&c, "rl", 1).await;
    let mut codes = BTreeMap::new();
    for _ in 0..20 {
        let r = http
            .get(format!("http://127.0.0.1:{rl}/"))
            .send()
            .await
            .unwrap();
        *codes.entry(r.status().as_u16()).or_insert(0) += 1;
    }
    assert!(
        (5..=7).contains(&codes[&200]) && codes[&429] >= 13,
        "{codes:?}"
    );

    // Circuit breaker: 3 failures in a row open it for a second.
    let cb = free_port();
    c.submit(job("cb", 1, lb(json!({ "port": cb, "mode": "http", "circuit_breaker": { "failures": 3, "open_for": "1s" } }))))
        .await
        .unwrap();
    let (id, addr) = running(&c, "cb", 1).await.remove(0);
    let ctl = Arc::new(Ctl::default());
    serve_http(addr, id, ctl.clone()).await;
    ctl.status.store(500, Ordering::SeqCst);
    backends(&c, "cb", 1).await;
    ctl.status.store(500, Ordering::SeqCst);
    for _ in 0..3 {
        let r = http
            .get(format!("http://127.0.0.1:{cb}/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 500);
    }
    let r = http
        .get(format!("http://127.0.0.1:{cb}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("circuit breaker of service cb is open"));
    let before = c.lb_stats(Some("cb"))[0].backends[0].requests;
    ctl.status.store(200, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = http
        .get(format!("http://127.0.0.1:{cb}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the trial after open_for goes through");
    let r = http
        .get(format!("http://127.0.0.1:{cb}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a good trial closes it");
    assert_eq!(c.lb_stats(Some("cb"))[0].backends[0].requests, before + 2);

    // Sticky cookie: the first answer sets it; with it, one instance.
    let sc = free_port();
    c.submit(job(
        "sc",
        3,
        lb(json!({ "port": sc, "mode": "http", "sticky": "cookie" })),
    ))
    .await
    .unwrap();
    for (id, addr) in running(&c, "sc", 3).await {
        serve_http(addr, id, Arc::default()).await;
    }
    backends(&c, "sc", 3).await;
    let r = http
        .get(format!("http://127.0.0.1:{sc}/"))
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let first = r.text().await.unwrap();
    assert_eq!(cookie, format!("orion-lb-{sc}={first}"));
    for _ in 0..20 {
        let r = http
            .get(format!("http://127.0.0.1:{sc}/"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert!(r.headers().get("set-cookie").is_none());
        assert_eq!(r.text().await.unwrap(), first);
    }
    assert_eq!(
        spread(sc, 30).await.len(),
        3,
        "without the cookie, round robin"
    );

    // Slow start: a third instance added under a 3 s ramp gets a small share
    // at first (a tenth of a full one: about 1 in 21).
    let ss = free_port();
    let ss_job = |n| {
        job(
            "ss",
            n,
            lb(json!({ "port": ss, "mode": "http", "slow_start": "3s" })),
        )
    };
    c.submit(ss_job(2)).await.unwrap();
    let old = running(&c, "ss", 2).await;
    for (id, addr) in &old {
        serve_http(*addr, id.clone(), Arc::default()).await;
    }
    backends(&c, "ss", 2).await;
    tokio::time::sleep(Duration::from_millis(3100)).await;
    c.submit(ss_job(3)).await.unwrap();
    let new = running(&c, "ss", 3)
        .await
        .into_iter()
        .find(|(id, _)| old.iter().all(|(o, _)| o != id))
        .unwrap();
    serve_http(new.1, new.0.clone(), Arc::default()).await;
    backends(&c, "ss", 3).await;
    let got = spread(ss, 300).await;
    let share = got.get(&new.0).copied().unwrap_or(0);
    assert!(
        share > 0 && share < 45,
        "a new instance took {share} of 300 at the start of its ramp: {got:?} {:?}",
        c.lb_stats(Some("ss"))
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_listener_specs_are_refused_naming_the_field() {
    let c = node("lb-bad").await;
    let api = c.http_addr().unwrap();
    let (lo, _) = c.node_info().port_range;
    let taken = free_port();
    c.submit(job("first", 1, lb(json!({ "port": taken }))))
        .await
        .unwrap();
    let http = client();
    let base = json!({
        "name": "bad", "task": {
            "image": "orion-test/web:1", "resources": { "cpu": 0.1, "memory_mb": 32 },
            "ports": [{ "name": "http", "container_port": 80, "lb": {} }]
        }
    });
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({ "port": 9000, "algorithm": "fastest" }),
            "task.ports[0].lb.algorithm",
            "unknown variant",
        ),
        (
            json!({ "port": 80 }),
            "task.ports[0].lb.port",
            "outside the allowed range 1024-65535",
        ),
        (
            json!({ "port": 9000, "weight": 0 }),
            "task.ports[0].lb.weight",
            "must be positive",
        ),
        (
            json!({ "port": 9000, "sticky": "cookie" }),
            "task.ports[0].lb.sticky",
            "needs mode: http",
        ),
        (
            json!({ "port": 9000, "rate_limit": { "per_second": 0 } }),
            "task.ports[0].lb.rate_limit.per_second",
            "must be positive",
        ),
        (
            json!({ "port": 9000, "colour": "red" }),
            "task.ports[0].lb",
            "unknown field",
        ),
        (
            json!({ "port": taken }),
            "task.ports[0].lb.port",
            "is already the load balancer of service",
        ),
        (
            json!({ "port": lo }),
            "task.ports[0].lb.port",
            "dynamic port range",
        ),
        (
            json!({ "port": api.port() }),
            "task.ports[0].lb.port",
            "http port",
        ),
    ];
    for (lb, field, problem) in cases {
        let mut spec = base.clone();
        spec["task"]["ports"][0]["lb"] = lb.clone();
        let r = http
            .post(format!("http://{api}/v1/jobs"))
            .json(&spec)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{lb}");
        let body = r.text().await.unwrap();
        assert!(
            body.contains(field) && body.contains(problem),
            "{lb}: {body}"
        );
    }
    // A fixed host port on another job's listener port is refused too.
    let mut spec = base.clone();
    spec["task"]["ports"][0] = json!({ "name": "http", "container_port": 80, "host_port": taken });
    let r = http
        .post(format!("http://{api}/v1/jobs"))
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("task.ports[0].host_port"));
    // Nothing was written.
    assert!(c.job("bad").is_none());
    c.shutdown().await;
}
