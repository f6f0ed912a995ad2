//! A rolling update of 10 replicas, 2 at a time, on one node of the real
//! engine: Orion against Docker Swarm on the same engine, in one run.
//!
//! - `rolling/orion_10x2`: one `orion-node`; job `roll` of 10 replicas of the
//!   demo image with an http health check every second; each sample submits a
//!   new version (an env change) with `update: {max_parallel: 2,
//!   min_healthy_time: 0s}` and times submit → deployment successful (every
//!   replica on the new version and healthy).
//! - `rolling/swarm_10x2`: `docker swarm init --advertise-addr 127.0.0.1` (only
//!   when the engine is not in a swarm already; `docker swarm leave --force` on
//!   the way out, also on a panic); service `orion-bench-roll` of 10 replicas of
//!   the same image and command with the equivalent health check (`wget` of `/`
//!   every second) and limits; each sample times `docker service update
//!   --update-parallelism 2 --env-add V=n`, which returns once the update has
//!   converged (Swarm moves on when a new task is running, which for a task with
//!   a health check means healthy — the same bar as `min_healthy_time: 0s`).
//!   Swarm's defaults otherwise: the old task, busybox httpd as PID 1, ignores
//!   SIGTERM, so each batch waits out the 10 s stop grace.
//! - `rolling/swarm_10x2_init`: the same with `--init`: the tasks run under the
//!   engine's init, as Orion runs every task, so a SIGTERM stops them at once —
//!   the like-for-like figure.
//!
//! Run: `cargo bench -p orion-node --bench rolling`

#[path = "../tests/e2e/support.rs"]
#[allow(dead_code)]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use orion_runtime::image;
use serde_json::json;
use support::*;
use tokio::runtime::Runtime;

const REPLICAS: u32 = 10;

fn roll_spec(version: u64) -> serde_json::Value {
    json!({
        "name": "roll",
        "replicas": REPLICAS,
        "task": {
            "image": image::DEMO_IMAGE,
            "command": ["httpd", "-f", "-p", "80", "-h", "/www"],
            "env": { "V": version.to_string() },
            "ports": [{ "name": "http", "container_port": 80 }],
            "resources": { "cpu": 0.05, "memory_mb": 16 },
            "health_checks": [{ "type": "http", "port": "http", "path": "/",
                                "interval": "1s", "timeout": "500ms", "grace": "0s" }]
        },
        "update": { "max_parallel": 2, "min_healthy_time": "0s" }
    })
}

async fn orion_roll(addr: &str, version: &mut u64) -> Duration {
    *version += 1;
    let v = *version;
    let start = Instant::now();
    submit(addr, &roll_spec(v)).await.expect("submit");
    wait_for(
        "the deployment to succeed",
        Duration::from_secs(300),
        async || {
            let d = get_json(&format!("{addr}/v1/jobs/roll/deployment")).await?;
            (d["job_version"] == v && d["status"] == "successful").then_some(())
        },
    )
    .await;
    start.elapsed()
}

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).output().expect("docker")
}

/// A swarm this bench made, left (with its services) when dropped.
struct Swarm {
    ours: bool,
}

impl Swarm {
    fn init() -> Option<Swarm> {
        let state = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
        let state = String::from_utf8_lossy(&state.stdout).trim().to_string();
        if state == "active" {
            eprintln!("the engine is in a swarm already: using it, leaving it as it is");
            return Some(Swarm { ours: false });
        }
        let out = docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
        if !out.status.success() {
            eprintln!("SKIP swarm: {}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
        Some(Swarm { ours: true })
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        docker(&["service", "rm", "orion-bench-roll"]);
        if self.ours {
            docker(&["swarm", "leave", "--force"]);
        }
    }
}

/// Creates the service, its tasks under the engine's init with `init`.
fn swarm_create(init: bool) {
    let replicas = REPLICAS.to_string();
    docker(&["service", "rm", "orion-bench-roll"]);
    let out = docker(&[
        "service",
        "create",
        if init { "--init" } else { "--quiet" },
        "--quiet",
        "--detach=false",
        "--no-resolve-image",
        "--name",
        "orion-bench-roll",
        "--replicas",
        &replicas,
        "--limit-cpu",
        "0.05",
        "--limit-memory",
        "16M",
        "--health-cmd",
        "wget -q -O /dev/null http://127.0.0.1:80/ || exit 1",
        "--health-interval",
        "1s",
        "--health-timeout",
        "500ms",
        "--health-start-period",
        "0s",
        "--update-parallelism",
        "2",
        "--update-delay",
        "0s",
        image::DEMO_IMAGE,
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    assert!(
        out.status.success(),
        "service create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn swarm_roll(version: &mut u64) -> Duration {
    *version += 1;
    let env = format!("V={version}");
    let start = Instant::now();
    let out = docker(&[
        "service",
        "update",
        "--quiet",
        "--detach=false",
        "--no-resolve-image",
        "--update-parallelism",
        "2",
        "--env-add",
        &env,
        "orion-bench-roll",
    ]);
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "service update: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn rolling(cr: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    if !rt.block_on(engine()) {
        return;
    }
    let mut group = cr.benchmark_group("rolling");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(60));

    let solo = rt.block_on(Solo::start("bench-roll"));
    let mut version = 0;
    rt.block_on(orion_roll(&solo.addr, &mut version));
    group.bench_function("orion_10x2", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += orion_roll(&solo.addr, &mut version).await;
                }
                total
            })
        })
    });
    drop(solo);

    if let Some(_swarm) = Swarm::init() {
        let mut version = 0;
        swarm_create(false);
        group.bench_function("swarm_10x2", |b| {
            b.iter_custom(|iters| (0..iters).map(|_| swarm_roll(&mut version)).sum())
        });
        // The same with its tasks under the engine's init, as Orion's are.
        swarm_create(true);
        group.bench_function("swarm_10x2_init", |b| {
            b.iter_custom(|iters| (0..iters).map(|_| swarm_roll(&mut version)).sum())
        });
    }
    group.finish();
}

criterion_group!(benches, rolling);
criterion_main!(benches);
