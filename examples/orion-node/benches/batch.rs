//! Batch throughput on one node of the real engine: N short script jobs
//! (`echo ok`, restricted, 0.25 CPU each so 8 run at once on the bench
//! node's 2 cores) from submit to complete, against N `docker run --rm` of the
//! same image, command and limits, 8 at a time, in the same run.
//!
//! - `batch/orion_N`: one `orion-node` (`--script-image sh=<demo image>`);
//!   each sample submits N script jobs in one `POST /v1/jobs` (a JSON array)
//!   and times until every one is complete, then forgets them (`POST /v1/gc`).
//! - `batch/docker_run_N`: N `docker run --rm --cpus 0.25 -m 16m <image> sh -c
//!   'echo ok'`, 8 in flight.
//!
//! N is 100 by default. jobs/s = N / the median.
//! Run: `cargo bench -p orion-node --bench batch`
//!
//! The figure is 1,000 jobs at once. Criterion wants at least 10
//! samples a side, over two hours at that size, so `ORION_BENCH_ONCE=1000`
//! runs one round of N = 1,000 on each side instead, back to back in the
//! same process, and prints both and their ratio without criterion:
//! `ORION_BENCH_ONCE=1000 cargo bench -p orion-node --bench batch`.

#[path = "../tests/e2e/support.rs"]
#[allow(dead_code)]
mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use orion_runtime::image;
use serde_json::{json, Value};
use support::*;
use tokio::runtime::Runtime;

const AT_ONCE: usize = 8;

fn jobs() -> usize {
    std::env::var("ORION_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}

async fn orion_batch(addr: &str, round: &mut u64, n: usize) -> Duration {
    *round += 1;
    let specs: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "name": format!("b{round}-{i}"), "type": "batch",
                "task": {
                    "script": { "lang": "sh", "content": "echo ok" },
                    "resources": { "cpu": 0.25, "memory_mb": 16 }
                }
            })
        })
        .collect();
    orion_core::tls::ensure_default_provider();
    let http = reqwest::Client::new();
    let start = Instant::now();
    let r = http
        .post(format!("{addr}/v1/jobs"))
        .json(&specs)
        .send()
        .await
        .expect("submit");
    assert!(
        r.status().is_success(),
        "{}",
        r.text().await.unwrap_or_default()
    );
    let prefix = format!("b{round}-");
    wait_for(
        "every job complete",
        Duration::from_secs(3600),
        async || {
            let list = get_json(&format!("{addr}/v1/jobs")).await?;
            let done = list
                .as_array()?
                .iter()
                .filter(|j| j["name"].as_str().is_some_and(|s| s.starts_with(&prefix)))
                .filter(|j| j["health"] == "complete")
                .count();
            (done == n).then_some(())
        },
    )
    .await;
    let took = start.elapsed();
    let _ = http.post(format!("{addr}/v1/gc")).send().await;
    took
}

fn docker_batch(n: usize) -> Duration {
    let start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..AT_ONCE)
        .map(|_| {
            let next = next.clone();
            std::thread::spawn(move || {
                while next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < n {
                    let out = Command::new("docker")
                        .args([
                            "run",
                            "--rm",
                            "--cpus",
                            "0.25",
                            "-m",
                            "16m",
                            image::DEMO_IMAGE,
                        ])
                        .args(["sh", "-c", "echo ok"])
                        .output()
                        .expect("docker run");
                    assert!(out.status.success(), "{out:?}");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    start.elapsed()
}

/// One round of `n` on each side, printed (see the module docs).
fn once(rt: &Runtime, n: usize) {
    let solo = rt.block_on(Solo::start_with("bench-batch", |spec, _| {
        spec.extra
            .extend(["--script-image".into(), format!("sh={}", image::DEMO_IMAGE)]);
    }));
    let mut round = 0;
    // A short warm-up round: the image and the node's first placements.
    rt.block_on(orion_batch(&solo.addr, &mut round, AT_ONCE));
    let o = rt.block_on(orion_batch(&solo.addr, &mut round, n));
    drop(solo);
    docker_batch(AT_ONCE);
    let d = docker_batch(n);
    let rate = |t: Duration| n as f64 / t.as_secs_f64();
    println!(
        "batch once, {n} jobs, {AT_ONCE} at a time: orion {o:.1?} = {:.2} jobs/s; docker run --rm {d:.1?} = {:.2} jobs/s; orion/docker time {:.2}x",
        rate(o),
        rate(d),
        o.as_secs_f64() / d.as_secs_f64()
    );
}

fn batch(cr: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    if !rt.block_on(engine()) {
        return;
    }
    if let Some(n) = std::env::var("ORION_BENCH_ONCE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        once(&rt, n);
        return;
    }
    let n = jobs();
    let mut group = cr.benchmark_group("batch");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(60));
    let solo = rt.block_on(Solo::start_with("bench-batch", |spec, _| {
        spec.extra
            .extend(["--script-image".into(), format!("sh={}", image::DEMO_IMAGE)]);
    }));
    let mut round = 0;
    group.bench_function(format!("orion_{n}"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = orion_batch(&solo.addr, &mut round, n).await;
                    eprintln!(
                        "orion: {n} jobs in {t:.2?} = {:.1} jobs/s",
                        n as f64 / t.as_secs_f64()
                    );
                    total += t;
                }
                total
            })
        })
    });
    drop(solo);
    group.bench_function(format!("docker_run_{n}"), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let t = docker_batch(n);
                    eprintln!(
                        "docker run: {n} in {t:.2?} = {:.1} jobs/s",
                        n as f64 / t.as_secs_f64()
                    );
                    t
                })
                .sum()
        })
    });
    group.finish();
}

criterion_group!(benches, batch);
criterion_main!(benches);
