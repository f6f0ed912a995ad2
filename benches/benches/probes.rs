//! What health checks cost the agent: CPU time of the thread that runs them
//! per 1,000 http probes against a local listener on loopback (on another
//! thread, so its work is not counted), with the agent's own probe code
//! (`orion_core::agent::health::probe`).
//!
//! - `probes/http_1000_sequential`: one after another, as one task's checks are.
//! - `probes/http_1000_100_at_once`: 100 in flight at a time, as a node with
//!   many checked tasks whose probes fall due together.
//!
//! The figure criterion prints is CPU time, not wall time (`iter_custom`).
//! Run: `cargo bench -p orion-benches --bench probes`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use orion_core::agent::health::probe;
use orion_core::spec::{CheckKind, HealthCheck};
use orion_core::testing::FakeRuntime;
use orion_core::{PortBinding, Protocol};

/// This thread's CPU time so far (`/proc/thread-self/schedstat`, in ns): the
/// probes run on a current-thread runtime, so it is all their work.
fn cpu_time() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    let ns: u64 = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("schedstat's first field");
    Duration::from_nanos(ns)
}

/// A minimal HTTP listener on its own thread (and runtime), so its work is
/// not on the probing thread's clock: every connection gets `200 OK` and is
/// closed. Answers with its port.
fn listener() -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send(l.local_addr().unwrap().port()).unwrap();
            loop {
                let Ok((mut s, _)) = l.accept().await else { continue };
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
                        .await;
                });
            }
        });
    });
    rx.recv().expect("the listener's port")
}

fn probes(c: &mut Criterion) {
    let port = listener();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut check = HealthCheck::new(CheckKind::Http);
    check.port = Some("http".into());
    check.path = Some("/index.html".into());
    let ports = vec![PortBinding {
        name: "http".into(),
        container_port: 80,
        host_port: port,
        protocol: Protocol::Tcp,
        host_ip: "127.0.0.1".into(),
    }];
    let runtime = FakeRuntime::new();
    rt.block_on(probe(&check, &ports, &runtime, "none"))
        .expect("the listener answers");

    let mut group = c.benchmark_group("probes");
    group.sample_size(20);
    group.bench_function("http_1000_sequential", |b| {
        b.iter_custom(|iters| {
            let before = cpu_time();
            rt.block_on(async {
                for _ in 0..iters * 1000 {
                    probe(&check, &ports, &runtime, "none")
                        .await
                        .expect("healthy");
                }
            });
            cpu_time() - before
        })
    });
    group.bench_function("http_1000_100_at_once", |b| {
        b.iter_custom(|iters| {
            let before = cpu_time();
            rt.block_on(async {
                use futures::StreamExt;
                for _ in 0..iters {
                    let all = (0..1000).map(|_| probe(&check, &ports, &runtime, "none"));
                    let results: Vec<_> = futures::stream::iter(all)
                        .buffer_unordered(100)
                        .collect()
                        .await;
                    assert!(results.iter().all(Result::is_ok), "every probe answered");
                }
            });
            cpu_time() - before
        })
    });
    group.finish();
}

criterion_group!(benches, probes);
criterion_main!(benches);
