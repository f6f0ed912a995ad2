//! The event stream's delivery delay: one node (fake runtime, in-memory
//! store, its HTTP API on loopback) with 10 clients following
//! `GET /v1/events?topic=job` as ndjson; each sample submits one job through
//! the library and waits until all 10 clients have its event.
//!
//! - `events/submit_to_10_clients`: criterion's time per sample (submit →
//!   the tenth client has the event).
//! - Then, printed: p50 / p99 over 10 × 2,000 receipts of the delay from the
//!   submission's commit (the moment `submit` returned) to each client's
//!   receipt, and of `submit` itself (the in-memory commit). An event can
//!   reach a client before `submit` returns (the replica applies, then the
//!   proposer hears back): such receipts count as 0.
//!
//! Run: `cargo bench -p orion-benches --bench events`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use orion_core::testing::{FakeRuntime, MemStore};
use orion_core::{Cluster, JobSpec, NodeProfile};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const CLIENTS: usize = 10;

/// A client following the job events; sends (job name, receipt time).
async fn follow(addr: std::net::SocketAddr, tx: mpsc::UnboundedSender<(String, Instant)>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /v1/events?topic=job HTTP/1.1\r\nHost: bench\r\n\r\n")
        .await
        .unwrap();
    let mut lines = BufReader::new(s).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if !line.starts_with('{') {
            continue; // headers and chunk sizes
        }
        let at = Instant::now();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if let Some(k) = v["key"].as_str() {
            if tx.send((k.to_string(), at)).is_err() {
                return;
            }
        }
    }
}

struct Bench {
    cluster: Cluster,
    rx: mpsc::UnboundedReceiver<(String, Instant)>,
    next: u64,
    /// Receipts that came before their sample waited for them.
    early: HashMap<String, Vec<Instant>>,
}

impl Bench {
    /// Submits one job; (when submit returned, how long it took, the 10 receipts).
    async fn one(&mut self) -> (Instant, Duration, Vec<Instant>) {
        self.next += 1;
        let name = format!("ev{}", self.next);
        let t = Instant::now();
        self.cluster
            .submit(JobSpec::service(&name, "bench/web:1").replicas(0))
            .await
            .unwrap();
        let committed = Instant::now();
        let mut got = self.early.remove(&name).unwrap_or_default();
        while got.len() < CLIENTS {
            let (k, at) = self.rx.recv().await.unwrap();
            if k == name {
                got.push(at);
            } else {
                self.early.entry(k).or_default().push(at);
            }
        }
        (committed, committed - t, got)
    }
}

fn events(c: &mut Criterion) {
    let node_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cluster = node_rt.block_on(async {
        let mut p = NodeProfile::default();
        p.id = Some("bench".into());
        let c = Cluster::builder()
            .node(p)
            .runtime(FakeRuntime::new())
            .store(MemStore::new("bench"))
            .http("127.0.0.1:0".parse().unwrap())
            .start()
            .await
            .unwrap();
        c.ready(Duration::from_secs(5)).await.unwrap();
        c
    });
    let addr = cluster.http_addr().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    for _ in 0..CLIENTS {
        rt.spawn(follow(addr, tx.clone()));
    }
    let mut b = Bench {
        cluster,
        rx,
        next: 0,
        early: HashMap::new(),
    };
    // Every client is following once a first event reaches all of them.
    rt.block_on(async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        b.one().await
    });
    let mut g = c.benchmark_group("events");
    g.bench_function("submit_to_10_clients", |bench| {
        bench.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    b.one().await;
                    total += t.elapsed();
                }
                total
            })
        })
    });
    g.finish();

    let (mut delays, mut submits) = (Vec::new(), Vec::new());
    rt.block_on(async {
        for _ in 0..2_000 {
            let (committed, took, got) = b.one().await;
            submits.push(took);
            delays.extend(got.iter().map(|at| at.saturating_duration_since(committed)));
        }
    });
    delays.sort();
    submits.sort();
    let pct = |v: &[Duration], p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    eprintln!(
        "event delivery, commit -> each of {CLIENTS} clients: p50 {:.1?}, p99 {:.1?} ({} receipts); submit itself: p50 {:.1?}, p99 {:.1?}",
        pct(&delays, 0.5),
        pct(&delays, 0.99),
        delays.len(),
        pct(&submits, 0.5),
        pct(&submits, 0.99)
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = events
}
criterion_main!(benches);
