//! Failover times of real `orion-node` processes on loopback with the real Docker
//! engine, nodes killed with SIGKILL:
//!
//! - `failover/leader_kill_to_write`: three managers; SIGKILL the leader; time until
//!   a survivor accepts a write. The killed node is restarted (it rejoins and
//!   catches up) before the next sample, so each kill starts from a steady state.
//! - `failover/worker_kill_to_running`: three managers and a worker; a job's
//!   replicas spread over all four; SIGKILL the worker; time until every replica
//!   runs again elsewhere. The worker is restarted and the job rolled to a new
//!   version (so a replica lands on it again) before the next sample.
//! - `failover/{leader_kill_to_write,worker_kill_to_running}_tls`: the same
//!   on secure nodes (mutual TLS between nodes and on the API, API tokens,
//!   joined with join tokens), measured after the clear-text pair in the same
//!   run: the ratio is the cost of security on failover.
//!
//! Criterion's flat sampling: 10 samples, each of as many kills as fit its share of
//! the 60 s measurement time (about 5 leader kills or 3 worker kills a sample), so
//! the median is a median of per-sample mean times.
//! Run: `cargo bench -p orion-node --bench failover`

#[path = "../tests/e2e/support.rs"]
#[allow(dead_code)]
mod support;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use support::*;
use tokio::runtime::Runtime;

async fn leader_kill(c: &mut LocalCluster, seq: &mut u64) -> Duration {
    let leader = wait_for("a leader", Duration::from_secs(30), async || {
        c.leader().await
    })
    .await;
    let survivor = c.other_than(leader);
    let killed = Instant::now();
    c.nodes[leader].kill9();
    let mut n = *seq;
    wait_for("a write accepted", Duration::from_secs(30), async || {
        n += 1;
        submit(&survivor, &web_json(&format!("w{n}"), 0)).await.ok()
    })
    .await;
    *seq = n;
    let took = killed.elapsed();
    // Bring the node back, caught up, before the next sample: failover is
    // measured from a steady state.
    c.restart(leader).await;
    took
}

async fn worker_kill(c: &mut LocalCluster, version: &mut u64) -> Duration {
    let addr = c.nodes[0].spec.addr();
    let worker = c.nodes[3].spec.id.clone();
    *version += 1;
    let mut spec = web_json("moving", 4);
    spec["task"]["env"] = serde_json::json!({ "V": version.to_string() });
    // All four at once: this measures failover, not the rollout.
    spec["update"] = serde_json::json!({ "max_parallel": 4, "min_healthy_time": "0s" });
    submit(&addr, &spec).await.expect("submit");
    wait_for(
        "4 running, one on the worker",
        Duration::from_secs(60),
        async || {
            let r = running(&addr, "moving").await;
            let current = r.iter().all(|a| a["job_version"] == *version);
            (r.len() == 4 && current && r.iter().any(|a| a["node"] == worker.as_str()))
                .then_some(())
        },
    )
    .await;
    let killed = Instant::now();
    c.nodes[3].kill9();
    wait_for("4 running elsewhere", Duration::from_secs(60), async || {
        let r = running(&addr, "moving").await;
        (r.len() == 4 && r.iter().all(|a| a["node"] != worker.as_str())).then_some(())
    })
    .await;
    let took = killed.elapsed();
    c.restart(3).await;
    took
}

fn failover(cr: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    if !rt.block_on(engine()) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut group = cr.benchmark_group("failover");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(60));

    for secure in [false, true] {
        let suffix = if secure { "_tls" } else { "" };
        let lead = dir.path().join(format!("lead{suffix}"));
        let work = dir.path().join(format!("work{suffix}"));
        std::fs::create_dir_all(&lead).expect("mkdir");
        std::fs::create_dir_all(&work).expect("mkdir");
        let start = |d: &std::path::Path, name: &str, workers: usize| {
            let name = format!("{name}{}", if secure { "-tls" } else { "" });
            if secure {
                rt.block_on(LocalCluster::start_secure(d, &name, 3, workers))
            } else {
                rt.block_on(LocalCluster::start(d, &name, 3, workers))
            }
        };
        let mut c = start(&lead, "bench-lead", 0);
        let mut seq = 0;
        group.bench_function(format!("leader_kill_to_write{suffix}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += leader_kill(&mut c, &mut seq).await;
                    }
                    total
                })
            })
        });
        drop(c);

        let mut c = start(&work, "bench-work", 1);
        let mut version = 0;
        group.bench_function(format!("worker_kill_to_running{suffix}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += worker_kill(&mut c, &mut version).await;
                    }
                    total
                })
            })
        });
        drop(c);
    }
    group.finish();
}

criterion_group!(benches, failover);
criterion_main!(benches);
