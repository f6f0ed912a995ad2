//! Log streaming from the real engine: a container prints N numbered lines
//! as fast as it can (`seq 1 N`); one client follows them through Orion's
//! API as Server-Sent Events, another with `docker logs -f -t`, in the same
//! run.
//!
//! - `logs/orion_sse_N` and `logs/docker_logs_N`: criterion's time from the
//!   request to the last of N lines received (lines/s = N / the median).
//! - Printed: for a second task writing 100 lines/s while both clients
//!   follow, the p50 / p99 delay from each line's engine timestamp (when the
//!   engine took it from the container's stdout, `docker logs -t`) to its
//!   receipt by each client — the same clock on this host.
//!
//! N is 200,000 (`ORION_BENCH_LINES`). Run: `cargo bench -p orion-node --bench logs`

#[path = "../tests/e2e/support.rs"]
#[allow(dead_code)]
mod support;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use orion_runtime::image;
use serde_json::json;
use support::*;
use tokio::runtime::Runtime;

fn lines() -> u64 {
    std::env::var("ORION_BENCH_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128
}

/// The engine's timestamp of each line (ns since the epoch), by line number.
fn engine_times(container: &str) -> Vec<i128> {
    let out = Command::new("docker")
        .args(["logs", "-t", container])
        .output()
        .expect("docker logs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(t, _)| t.to_string()))
        .map(|t| parse_rfc3339_ns(&t))
        .collect()
}

fn parse_rfc3339_ns(t: &str) -> i128 {
    // 2026-12-02T00:57:03.123456789Z
    let ts = humantime::parse_rfc3339_weak(&t[..19]).expect("timestamp");
    let secs = ts.duration_since(UNIX_EPOCH).unwrap().as_secs() as i128;
    let frac = t[20..t.len() - 1].to_string();
    let frac_ns: i128 = format!("{frac:0<9}")[..9].parse().unwrap_or(0);
    secs * 1_000_000_000 + frac_ns
}

/// Follows the allocation's logs as SSE until line `n`; the receipt time of each.
async fn orion_sse(addr: &str, alloc: &str, n: u64) -> (Duration, Vec<i128>) {
    orion_core::tls::ensure_default_provider();
    let http = reqwest::Client::new();
    let start = Instant::now();
    let mut r = http
        .get(format!("{addr}/v1/allocations/{alloc}/logs?follow=true"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("logs");
    let mut got = Vec::with_capacity(n as usize);
    let mut buf = Vec::new();
    while let Some(chunk) = r.chunk().await.expect("chunk") {
        let at = now_ns();
        buf.extend_from_slice(&chunk);
        let mut from = 0;
        while let Some(end) = buf[from..].windows(2).position(|w| w == b"\n\n") {
            got.push(at);
            from += end + 2;
        }
        buf.drain(..from);
        if got.len() as u64 >= n {
            break;
        }
    }
    (start.elapsed(), got)
}

/// `docker logs -f -t` until line `n`; the receipt time of each.
fn docker_follow(container: &str, n: u64) -> (Duration, Vec<i128>) {
    let start = Instant::now();
    let mut child = Command::new("docker")
        .args(["logs", "-f", container])
        .stdout(Stdio::piped())
        .spawn()
        .expect("docker logs -f");
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut got = Vec::with_capacity(n as usize);
    for _ in out.lines() {
        got.push(now_ns());
        if got.len() as u64 >= n {
            break;
        }
    }
    let took = start.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    (took, got)
}

fn delays(engine: &[i128], got: &[i128]) -> (f64, f64) {
    let mut d: Vec<i128> = engine
        .iter()
        .zip(got)
        .map(|(e, g)| (g - e).max(0))
        .collect();
    d.sort();
    let p = |q: f64| d[((d.len() - 1) as f64 * q) as usize] as f64 / 1e6;
    (p(0.5), p(0.99))
}

fn logs(cr: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    if !rt.block_on(engine()) {
        return;
    }
    let n = lines();
    let solo = rt.block_on(Solo::start("bench-logs"));
    let addr = solo.addr.clone();
    let job = json!({
        "name": "lines",
        "task": {
            "image": image::DEMO_IMAGE,
            "command": ["sh", "-c", format!("seq 1 {n}; sleep 3600")],
            "resources": { "cpu": 1.0, "memory_mb": 64 }
        }
    });
    rt.block_on(submit(&addr, &job)).expect("submit");
    let alloc = rt.block_on(running_alloc(&addr, "lines", Duration::from_secs(60)));
    let container = Containers::running_of_alloc(&alloc).remove(0);
    // Wait until the engine has all of them.
    while engine_times(&container).len() < n as usize {
        std::thread::sleep(Duration::from_millis(200));
    }
    let engine = engine_times(&container);
    let mut group = cr.benchmark_group("logs");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(30));
    let mut orion_delays = Vec::new();
    group.bench_function(format!("orion_sse_{n}"), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let (t, got) = rt.block_on(orion_sse(&addr, &alloc, n));
                    assert_eq!(got.len() as u64, n);
                    orion_delays.push(delays(&engine, &got));
                    t
                })
                .sum()
        })
    });
    let mut docker_delays = Vec::new();
    group.bench_function(format!("docker_logs_{n}"), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let (t, got) = docker_follow(&container, n);
                    assert_eq!(got.len() as u64, n);
                    docker_delays.push(delays(&engine, &got));
                    t
                })
                .sum()
        })
    });
    group.finish();
    // These follow lines the engine already has: the delay is how far behind
    // the engine each client reads a backlog, not a live write's latency.
    for (name, d) in [
        ("orion sse", &orion_delays),
        ("docker logs -f", &docker_delays),
    ] {
        if let Some((p50, p99)) = d.last() {
            eprintln!("{name}: backlog delay p50 {p50:.0} ms, p99 {p99:.0} ms (last sample)");
        }
    }

    // Live: a second task prints a line every 10 ms; each client reads while
    // it writes. Delay from the engine's timestamp to receipt.
    let live = json!({
        "name": "live",
        "task": {
            "image": image::DEMO_IMAGE,
            "command": ["sh", "-c", "i=0; while [ $i -lt 500 ]; do i=$((i+1)); echo $i; usleep 10000; done; sleep 3600"],
            "resources": { "cpu": 0.5, "memory_mb": 32 }
        }
    });
    rt.block_on(submit(&addr, &live)).expect("submit");
    let alloc = rt.block_on(running_alloc(&addr, "live", Duration::from_secs(60)));
    let container = Containers::running_of_alloc(&alloc).remove(0);
    let docker = {
        let c = container.clone();
        std::thread::spawn(move || docker_follow(&c, 500))
    };
    let (_, got) = rt.block_on(orion_sse(&addr, &alloc, 500));
    let (_, dgot) = docker.join().unwrap();
    let engine = engine_times(&container);
    let (o50, o99) = delays(&engine, &got);
    let (d50, d99) = delays(&engine, &dgot);
    eprintln!("live, 100 lines/s: orion sse p50 {o50:.2} ms p99 {o99:.2} ms; docker logs -f p50 {d50:.2} ms p99 {d99:.2} ms");
}

criterion_group!(benches, logs);
criterion_main!(benches);
