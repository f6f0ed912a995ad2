//! `orion-node dev`: the heterogeneous local cluster of PRD §6 on loopback, with
//! the real Docker engine, running the example job.
//!
//! | node | memory | role | tags |
//! |---|---|---|---|
//! | `large` | 32 GB (simulated) | manager, first leader | `size=large` |
//! | `small` | 4 GB | manager | `size=small` |
//! | `gpu` | 16 GB | manager | `gpu=true` |
//!
//! Each node gets its own HTTP, Raft and gossip port and its own slice of the
//! dynamic port range, since they share one host and one engine.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use orion_core::{AllocState, Cluster, JobSpec, NodeRole};
use orion_runtime::{image, DockerRuntime};
use orion_store::Engine;

use crate::cli::DevArgs;
use crate::node::{self, RunningNode, Settings};

const EXAMPLE_JOB: &str = include_str!("../../jobs/web.yaml");
const GPU_JOB: &str = include_str!("../../jobs/gpu.yaml");

struct Shape {
    name: &'static str,
    memory_mb: u64,
    cpu: f64,
    tags: &'static [(&'static str, &'static str)],
}

const SHAPES: [Shape; 3] = [
    Shape {
        name: "large",
        memory_mb: 32 * 1024,
        cpu: 8.0,
        tags: &[("size", "large")],
    },
    Shape {
        name: "small",
        memory_mb: 4 * 1024,
        cpu: 2.0,
        tags: &[("size", "small")],
    },
    Shape {
        name: "gpu",
        memory_mb: 16 * 1024,
        cpu: 4.0,
        tags: &[("gpu", "true")],
    },
];

/// A free loopback port (UDP and TCP both free at the time of asking).
fn free_port() -> Result<u16> {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0")?;
        let port = udp.local_addr()?.port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
}

fn settings(
    i: usize,
    shape: &Shape,
    dir: &std::path::Path,
    args: &DevArgs,
    join: Option<String>,
) -> Result<Settings> {
    let lo = 32000 + (i as u16) * 256;
    Ok(Settings {
        data_dir: dir.join(shape.name),
        http: ([127, 0, 0, 1], args.http_port + i as u16).into(),
        node_id: Some(shape.name.to_string()),
        tags: shape
            .tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        cpu: Some(shape.cpu),
        memory_mb: Some(shape.memory_mb),
        disk_mb: Some(10_000),
        host_ip: "127.0.0.1".into(),
        port_range: (lo, lo + 255),
        join,
        role: NodeRole::Manager,
        raft: ([127, 0, 0, 1], free_port()?).into(),
        gossip: ([127, 0, 0, 1], free_port()?).into(),
        engine: Engine::default(),
        advertise_http: None,
        max_voters: 3,
        join_timeout: Duration::from_secs(60),
        config: orion_core::ClusterConfig::default(),
    })
}

async fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    while !f() {
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Runs the dev cluster until Ctrl-C (or once, with `--once`).
pub async fn run(args: DevArgs) -> Result<()> {
    if !(1..=3).contains(&args.nodes) {
        bail!("--nodes must be 1, 2 or 3 (large, small, gpu)");
    }
    let docker = DockerRuntime::connect_local()?;
    println!(
        "building the example image {} from the local busybox (when absent)…",
        image::DEMO_IMAGE
    );
    image::ensure_demo_image(&docker, image::DEMO_IMAGE)
        .await
        .context(
        "preparing the example image (is the Docker engine running, and busybox-static installed?)",
    )?;
    let tmp;
    let dir: PathBuf = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::Builder::new().prefix("orion-dev-").tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let runtime: Arc<dyn orion_core::Runtime> = Arc::new(docker);
    let mut nodes: Vec<RunningNode> = Vec::new();
    for (i, shape) in SHAPES.iter().take(args.nodes).enumerate() {
        let join = nodes
            .first()
            .map(|n| n.cluster.http_addr().unwrap().to_string());
        let node = node::start(settings(i, shape, &dir, &args, join)?, runtime.clone()).await?;
        node.cluster.ready(Duration::from_secs(30)).await?;
        nodes.push(node);
    }
    let first = nodes[0].cluster.clone();
    wait_until("every node to register", Duration::from_secs(30), || {
        first.nodes().len() == args.nodes
    })
    .await?;

    // The web job spreads over every node; with the gpu node present, a second job
    // selects it by tag.
    let mut jobs = vec![JobSpec::parse(EXAMPLE_JOB)?];
    if args.nodes == 3 {
        jobs.push(JobSpec::parse(GPU_JOB)?);
    }
    for spec in &jobs {
        first.submit(spec.clone()).await?;
    }
    let running = |name: &str| {
        first
            .allocations(Some(name))
            .iter()
            .filter(|a| a.is_live() && a.state == AllocState::Running)
            .count()
    };
    wait_until("the example jobs to run", Duration::from_secs(60), || {
        jobs.iter().all(|j| running(&j.name) == j.replicas as usize)
    })
    .await?;
    let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
    print_summary(&first, &names);

    if !args.once {
        println!("\nPress Ctrl-C to stop the cluster (its containers are removed).");
        node::shutdown_signal().await;
    }
    for name in &names {
        println!("stopping job {name}…");
        first.stop_job(name, false).await?;
    }
    let stopped = wait_until("the containers to stop", Duration::from_secs(60), || {
        names.iter().all(|name| {
            first
                .allocations(Some(name))
                .iter()
                .all(|a| a.state.is_terminal())
        })
    })
    .await;
    for n in nodes.iter().rev() {
        n.cluster.shutdown().await;
    }
    stopped
}

fn print_summary(c: &Cluster, jobs: &[&str]) {
    println!("\nOrion dev cluster is up:");
    let leader = c.leader().leader;
    for n in c.nodes() {
        let i = &n.node.info;
        let tags: Vec<String> = i.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let role = if leader.as_deref() == Some(i.id.as_str()) {
            format!("{} (leader)", i.role)
        } else {
            i.role.to_string()
        };
        println!(
            "  node {:<6} {:<17} {:>6} MB  {:<12} api http://{}",
            i.id,
            role,
            i.capacity.memory_mb,
            tags.join(","),
            i.addrs.http
        );
    }
    for job in jobs {
        println!("\njob {job}: replicas and where they landed:");
        let mut allocs = c.allocations(Some(job));
        allocs.retain(|a| a.is_live());
        allocs.sort_by_key(|a| a.slot);
        for a in allocs {
            let node = a.node.as_deref().unwrap_or("-");
            for p in &a.ports {
                println!(
                    "  {}[{}] on {node:<6} open http://{}:{}/",
                    job, a.slot, p.host_ip, p.host_port
                );
            }
        }
    }
    let api = c.http_addr().map(|a| a.to_string()).unwrap_or_default();
    println!(
        "\nTry:  orion-node --addr http://{api} job status {}",
        jobs[0]
    );
    println!("      orion-node --addr http://{api} node list");
}
