//! Start latency by runtime: submit → all running for 100 tasks on one node,
//! the Docker runtime (the local engine, busybox `sleep` in the demo image)
//! against the process runtime (`sleep` as a child process group), in one
//! run. One in-process node over `MemStore` with the fast test loops, so the
//! figure is the runtime's (and the agent's), not Raft's.
//!
//! - `start_100/docker`, `start_100/process`: one job of 100 replicas
//!   submitted, timed until the 100th runs; stopped and removed untimed.
//!
//! Run: `cargo bench -p orion-benches --bench runtimes` (Docker must answer;
//! without it only the process half runs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use orion_core::testing::MemStore;
use orion_core::{Cluster, JobSpec, NodeProfile, Resources, Runtime};
use orion_runtime::{image, DockerRuntime, ProcessConfig, ProcessRuntime};

const TASKS: usize = 100;

fn node(runtime: Arc<dyn Runtime>, rt: &tokio::runtime::Runtime) -> Cluster {
    rt.block_on(async {
        let c = Cluster::builder()
            .node({
                let mut p = NodeProfile::default();
                p.id = Some(format!("bench-rt-{}", std::process::id()));
                p.capacity = Some(Resources {
                    cpu: 64.0,
                    memory_mb: 65_536,
                    disk_mb: 0,
                });
                p
            })
            .runtime_shared(runtime)
            .store(MemStore::new(format!("bench-rt-{}", std::process::id())))
            .config(orion_core::testing::fast_loops())
            .start()
            .await
            .expect("a node");
        c.ready(Duration::from_secs(10)).await.expect("ready");
        c
    })
}

fn job(name: &str, image: &str) -> JobSpec {
    JobSpec::from_value(serde_json::json!({
        "name": name,
        "replicas": TASKS,
        "task": {
            "image": image,
            "command": ["sleep", "3600"],
            "resources": { "cpu": 0.01, "memory_mb": 8 }
        }
    }))
    .expect("a job")
}

fn start(c: &mut Criterion, label: &str, image: &str, runtime: Arc<dyn Runtime>) {
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    let cluster = node(runtime, &rt);
    let mut g = c.benchmark_group("start_100");
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(1));
    g.measurement_time(Duration::from_secs(1));
    let mut n = 0;
    g.bench_function(label, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let name = format!("start-{label}-{n}");
                total += rt.block_on(async {
                    let t0 = Instant::now();
                    cluster.submit(job(&name, image)).await.expect("submit");
                    cluster
                        .wait_running(&name, TASKS, Duration::from_secs(600))
                        .await
                        .expect("all running");
                    let took = t0.elapsed();
                    cluster.stop_job(&name, true).await.expect("stop");
                    cluster
                        .wait_stopped(&name, Duration::from_secs(600))
                        .await
                        .ok();
                    // The purge forgets the job at once; let the agent
                    // remove what it ran before the next sample.
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    took
                });
            }
            total
        })
    });
    g.finish();
    rt.block_on(cluster.shutdown());
}

fn runtimes(c: &mut Criterion) {
    let docker = DockerRuntime::connect_local().ok().filter(|d| {
        tokio::runtime::Runtime::new()
            .expect("tokio")
            .block_on(async {
                d.ping().await.is_ok()
                    && image::ensure_demo_image(d, image::DEMO_IMAGE).await.is_ok()
            })
    });
    match docker {
        Some(d) => start(c, "docker", image::DEMO_IMAGE, Arc::new(d)),
        None => eprintln!("SKIP start_100/docker: no Docker engine answers"),
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let process = ProcessRuntime::new(ProcessConfig::new(dir.path())).expect("process runtime");
    start(c, "process", "", process);
}

criterion_group!(benches, runtimes);
criterion_main!(benches);
