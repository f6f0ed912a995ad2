//! What Orion's load balancer adds to a request: the same keep-alive HTTP
//! client sends `GET /` straight to an instance and through a node's
//! listener (http mode, and tcp mode), in the same run.
//!
//! - The instance is a small hyper server on its own thread; the node (store,
//!   agent, balancer) runs on its own 2-thread runtime, with the fake runtime
//!   standing in for the engine (the balancer's path is the production one:
//!   committed allocations → catalog → listener → backend socket).
//! - `lb_request/{direct,via_lb_http,via_lb_tcp}`: criterion's time per request
//!   (one in flight).
//! - Then, printed: p50 / p99 of 20,000 requests on each path and what the
//!   balancer adds at each; and throughput with 64 requests in flight, with the
//!   process's CPU time per request on each path — the difference is the
//!   balancer's cost, and 1 s over it is the requests per second one core of
//!   balancing carries.
//!
//! Run: `cargo bench -p orion-benches --bench lb`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use orion_core::testing::{FakeRuntime, MemStore};
use orion_core::{Cluster, JobSpec, NodeProfile};

/// The process's CPU time (user + system) from `/proc/self/stat`.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// An HTTP/1.1 keep-alive server on its own thread answering `ok`.
fn backend() -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap().port()).unwrap();
            loop {
                let Ok((s, _)) = l.accept().await else {
                    continue;
                };
                let _ = s.set_nodelay(true);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            b"ok\n",
                        ))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
    });
    rx.recv().unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Setup {
    direct: SocketAddr,
    http: SocketAddr,
    tcp: SocketAddr,
    _node: tokio::runtime::Runtime,
    _cluster: Cluster,
}

fn setup() -> Setup {
    let node_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (b1, b2) = (backend(), backend());
    let (l_http, l_tcp) = (free_port(), free_port());
    let cluster = node_rt.block_on(async {
        let mut p = NodeProfile::default();
        p.id = Some("bench".into());
        p.port_range = (41000, 41015);
        let c = Cluster::builder()
            .node(p)
            .runtime(FakeRuntime::new())
            .store(MemStore::new("bench"))
            .start()
            .await
            .unwrap();
        c.ready(Duration::from_secs(5)).await.unwrap();
        for (name, host_port, lb) in [
            (
                "via-http",
                b1,
                format!(r#"{{"port":{l_http},"mode":"http"}}"#),
            ),
            ("via-tcp", b2, format!(r#"{{"port":{l_tcp},"mode":"tcp"}}"#)),
        ] {
            let mut spec = JobSpec::service(name, "bench/web:1")
                .port("http", 80)
                .resources(0.1, 32);
            spec.task.ports[0].host_port = Some(u32::from(host_port));
            spec.task.ports[0].lb = Some(serde_json::from_str(&lb).unwrap());
            c.submit(spec).await.unwrap();
            c.wait_running(name, 1, Duration::from_secs(10))
                .await
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while c
                .lb_stats(Some(name))
                .first()
                .is_none_or(|l| !l.bound || l.backends.is_empty())
            {
                assert!(Instant::now() < deadline, "listener of {name}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        c
    });
    let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    Setup {
        direct: at(b1),
        http: at(l_http),
        tcp: at(l_tcp),
        _node: node_rt,
        _cluster: cluster,
    }
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

fn client() -> HttpClient {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(c)
}

async fn get(client: &HttpClient, uri: &hyper::Uri) {
    let r = client.get(uri.clone()).await.expect("request");
    assert!(r.status().is_success());
    let body = r.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&body[..], b"ok\n");
}

fn uri(a: SocketAddr) -> hyper::Uri {
    format!("http://{a}/").parse().unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn lb(c: &mut Criterion) {
    let s = setup();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = client();
    let paths = [
        ("direct", uri(s.direct)),
        ("via_lb_http", uri(s.http)),
        ("via_lb_tcp", uri(s.tcp)),
    ];
    let mut g = c.benchmark_group("lb_request");
    for (name, u) in &paths {
        g.bench_function(*name, |b| b.to_async(&rt).iter(|| get(&http, u)));
    }
    g.finish();

    // Percentiles, interleaved so that noise hits every path alike.
    let mut samples: Vec<Vec<Duration>> = (0..3).map(|_| Vec::with_capacity(20_000)).collect();
    rt.block_on(async {
        for _ in 0..20_000 {
            for (i, (_, u)) in paths.iter().enumerate() {
                let t = Instant::now();
                get(&http, u).await;
                samples[i].push(t.elapsed());
            }
        }
    });
    let mut p = Vec::new();
    for (i, (name, _)) in paths.iter().enumerate() {
        samples[i].sort();
        let (p50, p99) = (percentile(&samples[i], 0.5), percentile(&samples[i], 0.99));
        eprintln!("lb latency {name:<12} p50 {p50:>10.1?}  p99 {p99:>10.1?}");
        p.push((p50, p99));
    }
    for (i, name) in [(1, "http"), (2, "tcp")] {
        eprintln!(
            "lb added ({name}): p50 {:.1?}, p99 {:.1?}",
            p[i].0.saturating_sub(p[0].0),
            p[i].1.saturating_sub(p[0].1)
        );
    }

    // Throughput with 64 in flight for 3 s per path, and CPU per request.
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut cost = Vec::new();
    for (name, u) in &paths {
        let (n, wall, cpu) = multi.block_on(async {
            let http = Arc::new(client());
            let stop_at = Instant::now() + Duration::from_secs(3);
            let cpu0 = process_cpu();
            let t = Instant::now();
            let tasks: Vec<_> = (0..64)
                .map(|_| {
                    let http = http.clone();
                    let u = u.clone();
                    tokio::spawn(async move {
                        let mut n = 0u64;
                        while Instant::now() < stop_at {
                            get(&http, &u).await;
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            let mut n = 0;
            for t in tasks {
                n += t.await.unwrap();
            }
            (n, t.elapsed(), process_cpu() - cpu0)
        });
        let per = cpu.as_secs_f64() * 1e6 / n as f64;
        eprintln!(
            "lb throughput {name:<12} {:>8.0} req/s (64 in flight), process CPU {per:.1} µs/request",
            n as f64 / wall.as_secs_f64()
        );
        cost.push(per);
    }
    for (i, name) in [(1, "http"), (2, "tcp")] {
        let added = cost[i] - cost[0];
        eprintln!(
            "lb cost ({name}): {added:.1} µs CPU per request more than direct → {:.0} req/s per core of balancing",
            1e6 / added.max(0.1)
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = lb
}
criterion_main!(benches);
