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
use orion::{Cluster, DockerRuntime, JobSpec, Node, NodeConfig};

use crate::cli::DevArgs;
use crate::out::note;
use crate::{demo, node};

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

/// The ports dev node `i` of `n` binds: HTTP, Raft and gossip (0: any free
/// one), and its slice of the task port range.
fn ports(i: usize, n: usize, args: &DevArgs) -> Result<(u16, u16, u16, (u16, u16))> {
    let i16 = i as u16;
    if let Some(base) = args.port_base {
        if u32::from(base) + 100 + 100 * n as u32 > u32::from(u16::MAX) {
            bail!(
                "--port-base {base}: the nodes need the {} ports above it",
                100 + 100 * n
            );
        }
        let lo = base + 100 + 100 * i16;
        return Ok((base + i16, base + 10 + i16, base + 20 + i16, (lo, lo + 99)));
    }
    let (lo, hi) = args.port_range;
    let slice = (u32::from(hi) - u32::from(lo) + 1) / n as u32;
    if slice == 0 {
        bail!("--port-range {lo}-{hi}: fewer ports than nodes");
    }
    let start = u32::from(lo) + slice * i as u32;
    let end = start + slice - 1;
    let http = args
        .http_port
        .checked_add(i16)
        .ok_or_else(|| anyhow::anyhow!("--http-port {}: too high for {n} nodes", args.http_port))?;
    Ok((http, 0, 0, (start as u16, end as u16)))
}

/// The node config of dev node `i` of `n`: its shape's capacity and tags, its
/// ports, and a slice of the task port range of its own (the nodes share one
/// engine).
fn config(
    i: usize,
    n: usize,
    shape: &Shape,
    dir: &std::path::Path,
    args: &DevArgs,
    join: Option<String>,
) -> Result<NodeConfig> {
    let (http, raft, gossip, range) = ports(i, n, args)?;
    let mut c = NodeConfig::default();
    c.data_dir = dir.join(shape.name);
    c.http = ([127, 0, 0, 1], http).into();
    c.raft = ([127, 0, 0, 1], raft).into();
    c.gossip = ([127, 0, 0, 1], gossip).into();
    c.node_id = Some(shape.name.to_string());
    c.tags = shape
        .tags
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    c.cpu = Some(shape.cpu);
    c.memory_mb = Some(shape.memory_mb);
    c.disk_mb = Some(10_000);
    c.port_range = range;
    c.join = join.into_iter().collect();
    c.join_timeout = Duration::from_secs(60);
    // A throwaway cluster on loopback, one command: no tokens to pass around
    // (each node warns about it at start and in /health).
    c.insecure_dev = true;
    Ok(c)
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
    let tmp;
    let dir: PathBuf = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::Builder::new().prefix("orion-dev-").tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    // The nodes shut down together; peers' complaints about each other going
    // away are noise here.
    let level = "info,openraft=off";
    let log_file = dir.join("dev.log");
    if args.verbose {
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        crate::init_logging(level, std::io::stderr, tty);
    } else {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let file = std::fs::File::create(&log_file)
            .with_context(|| format!("creating {}", log_file.display()))?;
        crate::init_logging(level, std::sync::Mutex::new(file), false);
    }
    let runtime: Arc<dyn orion_core::Runtime> = match args.runtime {
        crate::cli::RuntimeKind::Docker => {
            let docker = DockerRuntime::connect_local()?;
            note!(
                "building the example image {} from this binary (when absent or stale)…",
                demo::IMAGE
            );
            demo::ensure_image(&docker)
                .await
                .context("preparing the example image (is the Docker engine running?)")?;
            Arc::new(docker)
        }
        crate::cli::RuntimeKind::Process => {
            note!("running the example job as processes of this binary (no Docker needed)…");
            orion::ProcessRuntime::new(orion::ProcessConfig::new(&dir))?
        }
        crate::cli::RuntimeKind::Ssh => {
            bail!("dev runs --runtime docker or process; an ssh node is an agent: orion-node agent --runtime ssh --ssh-target user@host --ssh-key FILE")
        }
    };
    let mut nodes: Vec<Cluster> = Vec::new();
    for (i, shape) in SHAPES.iter().take(args.nodes).enumerate() {
        let join = nodes
            .first()
            .and_then(|n| n.http_addr())
            .map(|a| a.to_string());
        let node = Node::from_config(config(i, args.nodes, shape, &dir, &args, join)?)
            .runtime_shared(runtime.clone())
            .start()
            .await?;
        node.ready(Duration::from_secs(30)).await?;
        nodes.push(node);
    }
    let first = nodes[0].clone();
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
    if args.runtime == crate::cli::RuntimeKind::Process {
        for spec in &mut jobs {
            as_process(spec, &dir)?;
        }
    }
    for spec in &jobs {
        first.submit(spec.clone()).await?;
    }
    for j in &jobs {
        first
            .wait_running(&j.name, j.replicas as usize, Duration::from_secs(60))
            .await?;
    }
    let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
    print_summary(&first, &names);
    if !args.verbose {
        note!("      (the nodes log to {})", log_file.display());
    }

    if !args.once {
        note!("\nPress Ctrl-C to stop the cluster (its containers are removed).");
        node::shutdown_signal().await;
    }
    for name in &names {
        note!("stopping job {name}…");
        first.stop_job(name, false).await?;
    }
    let mut stopped = Ok(());
    for name in &names {
        if let Err(e) = first.wait_stopped(name, Duration::from_secs(60)).await {
            stopped = Err(e.into());
        }
    }
    for n in nodes.iter().rev() {
        n.shutdown().await;
    }
    stopped
}

/// The example job for process nodes: this binary serving the page from
/// `<dir>/www` on the port the node gives it (`ORION_PORT_HTTP`).
fn as_process(spec: &mut JobSpec, dir: &std::path::Path) -> Result<()> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let www = dir.join("www");
    std::fs::create_dir_all(&www).with_context(|| format!("creating {}", www.display()))?;
    let page = format!(
        "<!doctype html>\n<html><head><title>Orion</title></head>\n<body><h1>{}</h1></body></html>\n",
        orion::image::DEMO_GREETING
    );
    std::fs::write(www.join("index.html"), page)?;
    spec.task.image.clear();
    spec.task.command = vec![
        "sh".into(),
        "-c".into(),
        format!(
            "exec '{}' demo-web --port \"$ORION_PORT_HTTP\" --dir '{}'",
            exe.display(),
            www.display()
        ),
    ];
    Ok(())
}

fn print_summary(c: &Cluster, jobs: &[&str]) {
    note!("\nOrion dev cluster is up:");
    let leader = c.leader().leader;
    for n in c.nodes() {
        let i = &n.node.info;
        let tags: Vec<String> = i.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let role = if leader.as_deref() == Some(i.id.as_str()) {
            format!("{} (leader)", i.role)
        } else {
            i.role.to_string()
        };
        note!(
            "  node {:<6} {:<17} {:>6} MB  {:<12} api http://{}",
            i.id,
            role,
            i.capacity.memory_mb,
            tags.join(","),
            i.addrs.http
        );
    }
    for job in jobs {
        note!("\njob {job}: replicas and where they landed:");
        let mut allocs = c.allocations(Some(job));
        allocs.retain(|a| a.is_live());
        allocs.sort_by_key(|a| a.slot);
        for a in allocs {
            let node = a.node.as_deref().unwrap_or("-");
            for p in &a.ports {
                note!(
                    "  {}[{}] on {node:<6} open http://{}:{}/",
                    job,
                    a.slot,
                    p.host_ip,
                    p.host_port
                );
            }
        }
    }
    let api = c.http_addr().map(|a| a.to_string()).unwrap_or_default();
    note!(
        "\nTry:  orion-node --addr http://{api} job status {}",
        jobs[0]
    );
    note!("      orion-node --addr http://{api} node list");
}
