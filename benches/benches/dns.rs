//! One node's DNS (hickory-server over the node's own replica): a small Rust
//! load client sends `web.service.orion. A` (3 healthy instances) and
//! `_web._tcp.service.orion. SRV` over UDP on loopback.
//!
//! - `dns/{a,srv}`: criterion's time per query, one in flight.
//! - Then, printed: p50 / p99 of 20,000 sequential A queries, and queries per
//!   second with 32 sockets each keeping one query in flight for 3 s.
//!
//! The node runs on its own 2-thread runtime with the fake runtime and the
//! in-memory store (answers come from the replica either way).
//! Run: `cargo bench -p orion-benches --bench dns`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use orion_core::testing::{FakeRuntime, MemStore};
use orion_core::{Cluster, JobSpec, NodeProfile};
use tokio::net::UdpSocket;

fn query(name: &str, qtype: RecordType, id: u16) -> Vec<u8> {
    let mut m = Message::new();
    m.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m.to_vec().unwrap()
}

async fn ask(sock: &UdpSocket, q: &[u8], answers: usize) {
    sock.send(q).await.unwrap();
    let mut buf = [0u8; 1500];
    let n = sock.recv(&mut buf).await.unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.answers().len(), answers);
}

fn dns(c: &mut Criterion) {
    let node_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (cluster, addr): (Cluster, SocketAddr) = node_rt.block_on(async {
        let mut p = NodeProfile::default();
        p.id = Some("bench".into());
        p.port_range = (41100, 41115);
        let c = Cluster::builder()
            .node(p)
            .runtime(FakeRuntime::new())
            .store(MemStore::new("bench"))
            .dns("127.0.0.1:0".parse().unwrap())
            .start()
            .await
            .unwrap();
        c.ready(Duration::from_secs(5)).await.unwrap();
        c.submit(
            JobSpec::service("web", "bench/web:1")
                .port("http", 80)
                .replicas(3)
                .resources(0.1, 32),
        )
        .await
        .unwrap();
        c.wait_running("web", 3, Duration::from_secs(10))
            .await
            .unwrap();
        let addr = c.dns_addr().unwrap();
        (c, addr)
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sock = rt.block_on(async {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.connect(addr).await.unwrap();
        s
    });
    let a = query("web.service.orion.", RecordType::A, 1);
    let srv = query("_web._tcp.service.orion.", RecordType::SRV, 2);
    let mut g = c.benchmark_group("dns");
    g.bench_function("a", |b| b.to_async(&rt).iter(|| ask(&sock, &a, 1)));
    g.bench_function("srv", |b| b.to_async(&rt).iter(|| ask(&sock, &srv, 3)));
    g.finish();

    let mut lat: Vec<Duration> = rt.block_on(async {
        let mut out = Vec::with_capacity(20_000);
        for _ in 0..20_000 {
            let t = Instant::now();
            ask(&sock, &a, 1).await;
            out.push(t.elapsed());
        }
        out
    });
    lat.sort();
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
    eprintln!("dns latency A: p50 {:.1?}, p99 {:.1?}", pct(0.5), pct(0.99));

    let n: u64 = rt.block_on(async {
        let stop_at = Instant::now() + Duration::from_secs(3);
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let a = a.clone();
                tokio::spawn(async move {
                    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                    s.connect(addr).await.unwrap();
                    let mut n = 0u64;
                    while Instant::now() < stop_at {
                        ask(&s, &a, 1).await;
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
        n
    });
    eprintln!(
        "dns throughput: {:.0} queries/s (32 in flight)",
        n as f64 / 3.0
    );
    drop(cluster);
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = dns
}
criterion_main!(benches);
