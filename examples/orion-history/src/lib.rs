//! Orion's history checker: a real cluster of `orion-node` processes (each in
//! a container of its own on a private network, see [`cluster`]) under
//! faults ([`nemesis`]), concurrent clients submitting, stopping and reading
//! jobs each with a unique value, every operation's invocation and
//! completion recorded ([`history`]) and the whole history checked for
//! linearizability of the job store ([`check`]), with invariants beside it:
//!
//! - no acknowledged write lost (the final reads through every node, after
//!   healing, are part of the checked history);
//! - no allocation with two running containers at once (`docker ps` by
//!   label, every half second);
//! - every node converges to the same jobs and allocations after healing,
//!   and every job not stopped runs again.
//!
//! The run writes `history.txt`, `nemesis.txt` and `report.txt` to its
//! output directory; a failing run says where they are.

#![warn(missing_docs)]

pub mod check;
pub mod cluster;
pub mod history;
pub mod nemesis;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::cluster::{Cluster, Node};
use crate::history::{Call, JobState, Op, Outcome, Recorder};
use crate::nemesis::Fault;

/// What one run does.
#[derive(Clone, Debug)]
pub struct Config {
    /// The `orion-node` binary under test.
    pub binary: PathBuf,
    /// How long clients and faults run (the cluster's start and the final
    /// checks come on top).
    pub duration: Duration,
    /// The seed of the workload's and the nemesis's choices.
    pub seed: u64,
    /// Managers (Raft voters).
    pub managers: usize,
    /// Workers.
    pub workers: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Jobs the clients work on.
    pub keys: usize,
    /// The faults to choose from (none: a run without faults).
    pub faults: Vec<Fault>,
    /// Where the history, the schedule and the report go.
    pub out: PathBuf,
    /// A name for the run's containers and network.
    pub name: String,
    /// Whether clients read with `?consistent=true` (the checked claim).
    /// Without it they read each node's replica, which a cut-off or lagging
    /// node serves stale: the checker must then find anomalies, which is how
    /// one sees that it can.
    pub consistent_reads: bool,
}

/// What a run found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Operations recorded (the final reads included).
    pub ops: usize,
    /// Of them: acknowledged writes and stops, returned reads.
    pub ok: usize,
    /// Of them: certainly not applied.
    pub failed: usize,
    /// Of them: outcome unknown.
    pub unknown: usize,
    /// Operations the linearizability check looked at.
    pub checked: usize,
    /// Faults made.
    pub faults: usize,
    /// Container samples taken (each `docker ps` of the task containers).
    pub samples: usize,
    /// Everything wrong, each in a sentence. Empty: the run passed.
    pub anomalies: Vec<String>,
    /// Where the files are.
    pub out: PathBuf,
}

impl Report {
    /// Whether the run found nothing wrong.
    pub fn passed(&self) -> bool {
        self.anomalies.is_empty()
    }

    /// The report as `report.txt` has it.
    pub fn text(&self, cfg: &Config) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "seed {} · {} managers + {} workers · {} clients on {} jobs · {:?} · {} reads · faults {:?}",
            cfg.seed,
            cfg.managers,
            cfg.workers,
            cfg.clients,
            cfg.keys,
            cfg.duration,
            if cfg.consistent_reads { "linearizable" } else { "local" },
            cfg.faults.iter().map(|f| f.name()).collect::<Vec<_>>()
        );
        let _ = writeln!(
            s,
            "operations {} (ok {}, failed {}, unknown {}), checked {}, faults {}, container samples {}",
            self.ops, self.ok, self.failed, self.unknown, self.checked, self.faults, self.samples
        );
        if self.anomalies.is_empty() {
            let _ = writeln!(s, "anomalies 0");
        } else {
            let _ = writeln!(s, "anomalies {}:", self.anomalies.len());
            for a in &self.anomalies {
                let _ = writeln!(s, "  - {a}");
            }
        }
        s
    }
}

/// The job spec of a write: `restart.attempts` carries the value (a change
/// made in place, so most writes start no container), and one write in ten
/// also changes the task's environment, which rolls the job out anew.
fn spec(key: &str, value: u32, variant: bool) -> Value {
    json!({
        "name": key,
        "replicas": 1,
        "task": {
            "image": orion_runtime::image::DEMO_IMAGE,
            "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
            "env": {"VARIANT": if variant { "b" } else { "a" }},
            "resources": {"cpu": 0.05, "memory_mb": 16}
        },
        "restart": {"attempts": value}
    })
}

/// The model's view of a job read from the API.
fn job_state(job: &Value) -> Option<JobState> {
    let v = job["spec"]["restart"]["attempts"].as_u64()? as u32;
    let running = match job["status"].as_str()? {
        "running" => true,
        "stopped" => false,
        _ => return None,
    };
    Some(Some((v, running)))
}

struct Client {
    http: reqwest::Client,
    consistent: bool,
    nodes: Vec<Node>,
    keys: Vec<String>,
}

impl Client {
    /// Performs one operation against `node` and says how it ended.
    async fn perform(&self, node: &Node, key: &str, call: Call) -> (Outcome, String) {
        let api = node.api();
        let sent = match call {
            Call::Write(v) => {
                self.http
                    .post(format!("{api}/v1/jobs"))
                    .json(&spec(key, v, v % 10 == 0))
                    .send()
                    .await
            }
            Call::Stop => {
                self.http
                    .delete(format!("{api}/v1/jobs/{key}"))
                    .send()
                    .await
            }
            Call::Read => {
                let q = if self.consistent {
                    "?consistent=true"
                } else {
                    ""
                };
                self.http
                    .get(format!("{api}/v1/jobs/{key}{q}"))
                    .send()
                    .await
            }
        };
        let r = match sent {
            Ok(r) => r,
            // Never connected: the request never left, nothing can apply it.
            Err(e) if e.is_connect() => return (Outcome::Failed, format!("connect: {e}")),
            Err(e) if call == Call::Read => return (Outcome::Failed, format!("{e}")),
            Err(e) => return (Outcome::Unknown, format!("{e}")),
        };
        let status = r.status().as_u16();
        let body: Value = match r.json().await {
            Ok(b) => b,
            Err(e) if call == Call::Read => {
                return (Outcome::Failed, format!("{status}: body: {e}"));
            }
            Err(e) => return (Outcome::Unknown, format!("{status}: body: {e}")),
        };
        let detail = format!("{status} {}", body["error"].as_str().unwrap_or(""));
        let outcome = match (call, status) {
            (Call::Read, 200) => match job_state(&body) {
                Some(s) => Outcome::Read(s),
                None => {
                    let mut b = body.to_string();
                    b.truncate(300);
                    return (Outcome::Failed, format!("{status}: unreadable job {b}…"));
                }
            },
            (Call::Read, 404) => Outcome::Read(None),
            (Call::Read, _) => Outcome::Failed,
            (_, 200 | 201) => Outcome::Ok,
            (Call::Stop, 404) => Outcome::NotFound,
            // Refused on its merits before anything was proposed.
            (Call::Write(_), 400 | 409 | 422) => Outcome::Failed,
            _ => Outcome::Unknown,
        };
        (outcome, detail.trim().to_string())
    }
}

async fn client_loop(
    client: Arc<Client>,
    id: usize,
    seed: u64,
    next_value: Arc<AtomicU32>,
    next_process: Arc<AtomicUsize>,
    until: Duration,
    rec: Arc<Recorder>,
) {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(id as u64 * 7919));
    let mut process = next_process.fetch_add(1, Ordering::SeqCst);
    while rec.now() < until {
        let node = &client.nodes[rng.random_range(0..client.nodes.len())];
        let key = &client.keys[rng.random_range(0..client.keys.len())];
        let roll = rng.random_range(0..100);
        let call = if roll < 45 {
            Call::Write(next_value.fetch_add(1, Ordering::SeqCst))
        } else if roll < 90 {
            Call::Read
        } else {
            Call::Stop
        };
        let invoked = rec.now();
        let (outcome, detail) = client.perform(node, key, call).await;
        rec.op(Op {
            client: id,
            process,
            key: key.clone(),
            node: node.id.clone(),
            call,
            invoked,
            completed: rec.now(),
            outcome,
            detail,
        });
        if outcome == Outcome::Unknown {
            // That operation never completes: later ones are another process's.
            process = next_process.fetch_add(1, Ordering::SeqCst);
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..120))).await;
    }
}

/// Samples the task containers until `stop`: any allocation with two running
/// containers at once is an anomaly.
async fn container_sampler(
    ids: BTreeSet<String>,
    stop: Arc<AtomicBool>,
    rec: Arc<Recorder>,
) -> (usize, Vec<String>) {
    let mut samples = 0;
    let mut anomalies = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let sample = cluster::task_containers(&ids).await;
        match sample {
            Ok(list) => {
                samples += 1;
                anomalies.extend(twice(&list, rec.now()));
            }
            Err(e) => anomalies.push(format!("docker ps failed: {e:#}")),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    (samples, anomalies)
}

/// Allocations with more than one running container in one sample.
fn twice(list: &[(String, String)], at: Duration) -> Vec<String> {
    let mut by_alloc: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (node, alloc) in list {
        by_alloc.entry(alloc).or_default().push(node);
    }
    by_alloc
        .into_iter()
        .filter(|(_, nodes)| nodes.len() > 1)
        .map(|(alloc, nodes)| {
            format!(
                "at {:.3}s allocation {alloc} had {} running containers (on {nodes:?})",
                at.as_secs_f64(),
                nodes.len()
            )
        })
        .collect()
}

/// Runs the whole check: start the cluster, run clients and faults for the
/// configured time, heal, wait for convergence, read every job through every
/// node, check, write the files. An error is a run that could not be made
/// (the engine, the image); anomalies are in the report.
pub async fn run(cfg: &Config) -> Result<Report> {
    // reqwest is built without a default TLS provider (the workspace picks
    // ring); the run speaks plain HTTP, but a client needs one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("creating {}", cfg.out.display()))?;
    let image = cluster::node_image(&cfg.binary).await?;
    let docker_rt = orion_runtime::DockerRuntime::connect_local()?;
    orion_runtime::image::ensure_demo_image(&docker_rt, orion_runtime::image::DEMO_IMAGE)
        .await
        .context("building the task image")?;
    let rec = Arc::new(Recorder::new());
    rec.event(format!(
        "starting {} managers + {} workers",
        cfg.managers, cfg.workers
    ));
    let cluster = Cluster::start(&cfg.name, &image, cfg.managers, cfg.workers).await?;
    rec.event("cluster ready");
    let keys: Vec<String> = (0..cfg.keys).map(|k| format!("k{k}")).collect();
    let client = Arc::new(Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(1))
            .pool_max_idle_per_host(0)
            .build()?,
        consistent: cfg.consistent_reads,
        nodes: cluster.nodes.clone(),
        keys: keys.clone(),
    });
    let cluster = Arc::new(tokio::sync::RwLock::new(cluster));
    let until = rec.now() + cfg.duration;
    let next_value = Arc::new(AtomicU32::new(1));
    let next_process = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..cfg.clients)
        .map(|id| {
            tokio::spawn(client_loop(
                client.clone(),
                id,
                cfg.seed,
                next_value.clone(),
                next_process.clone(),
                until,
                rec.clone(),
            ))
        })
        .collect();
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(container_sampler(
        cluster.read().await.ids(),
        stop_sampling.clone(),
        rec.clone(),
    ));

    let mut report = Report {
        out: cfg.out.clone(),
        ..Report::default()
    };
    let mut crashes = Vec::new();
    let nemesis = {
        let mut c = cluster.write().await;
        nemesis::run(
            &mut c,
            &cfg.faults,
            cfg.seed,
            until,
            &rec,
            &mut report.faults,
            &mut crashes,
        )
        .await
    };
    for (id, state, log) in &crashes {
        let file = cfg.out.join(format!("{id}.crash.log"));
        let _ = std::fs::write(&file, log);
        report.anomalies.push(format!(
            "{id} exited on its own ({state}); its log is in {}",
            file.display()
        ));
    }
    // The nemesis holds the cluster while it runs; a fault in flight may
    // have failed half-way: heal everything whatever happened.
    let healed = heal_all(&mut *cluster.write().await, &rec).await;
    for c in clients {
        let _ = c.await;
    }
    if let Err(e) = nemesis {
        report.anomalies.push(format!("the nemesis failed: {e:#}"));
    }
    if let Err(e) = healed {
        report.anomalies.push(format!("healing failed: {e:#}"));
    }
    rec.event("clients done; waiting for the cluster to converge");
    {
        let c = cluster.read().await;
        match converge(&c, &keys).await {
            Ok(()) => rec.event("converged"),
            Err(e) => {
                report.anomalies.push(format!("{e:#}"));
                for i in 0..c.nodes.len() {
                    let _ = std::fs::write(
                        cfg.out.join(format!("{}.log", c.nodes[i].id)),
                        c.full_log(i).await,
                    );
                }
            }
        }
        // The final reads: every job through every node, linearizable. Any
        // acknowledged write lost would show here as a read the model cannot
        // place.
        let mut process = next_process.load(Ordering::SeqCst);
        for node in &c.nodes {
            for key in &keys {
                let invoked = rec.now();
                let (outcome, detail) = client.perform(node, key, Call::Read).await;
                if outcome == Outcome::Failed {
                    report.anomalies.push(format!(
                        "final read of {key} via {} failed: {detail}",
                        node.id
                    ));
                }
                rec.op(Op {
                    client: usize::MAX,
                    process,
                    key: key.clone(),
                    node: node.id.clone(),
                    call: Call::Read,
                    invoked,
                    completed: rec.now(),
                    outcome,
                    detail,
                });
                process += 1;
            }
        }
    }
    stop_sampling.store(true, Ordering::SeqCst);
    let (samples, twice) = sampler.await.unwrap_or_default();
    report.samples = samples;
    report.anomalies.extend(twice);

    let ops = rec.ops();
    report.ops = ops.len();
    for o in &ops {
        match o.outcome {
            Outcome::Failed => report.failed += 1,
            Outcome::Unknown => report.unknown += 1,
            _ => report.ok += 1,
        }
    }
    let results = check::check(&ops);
    report.checked = results.iter().map(|r| r.checked).sum();
    for r in &results {
        if !r.linearizable {
            report.anomalies.push(format!(
                "job {}: its {} operations are not linearizable (see history.txt)",
                r.key, r.checked
            ));
        }
    }
    write_files(cfg, &report, &ops, &rec.events())?;
    cluster.write().await.remove().await;
    Ok(report)
}

async fn heal_all(c: &mut Cluster, rec: &Recorder) -> Result<()> {
    rec.event("healing everything");
    c.heal().await?;
    for i in 0..c.nodes.len() {
        if !c.is_running(i).await? {
            c.start_node(i).await?;
        } else {
            // A stopped process is still "running" to Docker: continue it
            // (a no-op for one that runs).
            c.signal(i, "CONT").await?;
        }
    }
    Ok(())
}

/// After healing: a leader, every node ready, every node's linearizable view
/// of jobs and allocations the same, and every job not stopped running.
async fn converge(c: &Cluster, keys: &[String]) -> Result<()> {
    c.wait(
        "a leader every node names",
        Duration::from_secs(60),
        async |c| c.leader().await,
    )
    .await?;
    c.wait_ready(Duration::from_secs(60)).await?;
    c.wait(
        "every job not stopped running its replica",
        Duration::from_secs(90),
        async |c| {
            for key in keys {
                let Some(job) = c.get(&c.nodes[0], &format!("/v1/jobs/{key}")).await else {
                    continue;
                };
                if job["status"] == "running" && job["running"].as_u64() != Some(1) {
                    return None;
                }
            }
            Some(())
        },
    )
    .await?;
    c.wait(
        "every node's view of jobs and allocations the same",
        Duration::from_secs(60),
        async |c| {
            let mut views = BTreeSet::new();
            for node in &c.nodes {
                let jobs = c.get(node, "/v1/jobs?consistent=true").await?;
                let allocs = c.get(node, "/v1/allocations?consistent=true").await?;
                views.insert((jobs.to_string(), allocs.to_string()));
            }
            (views.len() == 1).then_some(())
        },
    )
    .await?;
    Ok(())
}

fn write_files(
    cfg: &Config,
    report: &Report,
    ops: &[Op],
    events: &[(Duration, String)],
) -> Result<()> {
    let mut h = String::new();
    for o in ops {
        let _ = writeln!(h, "{o}");
    }
    std::fs::write(cfg.out.join("history.txt"), h)?;
    let mut e = String::new();
    for (at, what) in events {
        let _ = writeln!(e, "[{:>9.3}s] {what}", at.as_secs_f64());
    }
    std::fs::write(cfg.out.join("nemesis.txt"), e)?;
    std::fs::write(cfg.out.join("report.txt"), report.text(cfg))?;
    Ok(())
}

/// The `orion-node` binary next to the running executable (cargo puts the
/// workspace's binaries in one directory), if it is there.
pub fn sibling_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join("orion-node"), dir.join("../orion-node")]
        .into_iter()
        .find(|p| Path::new(p).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_running_containers_of_one_allocation_are_an_anomaly() {
        let list = vec![
            ("n0".to_string(), "a1".to_string()),
            ("n1".to_string(), "a2".to_string()),
            ("n2".to_string(), "a1".to_string()),
        ];
        let found = twice(&list, Duration::from_secs(3));
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("a1") && found[0].contains("2 running"));
        assert!(twice(&list[..2], Duration::ZERO).is_empty());
    }

    #[test]
    fn the_model_reads_the_value_and_the_status_from_a_job() {
        let job = json!({"spec": {"name": "k0", "restart": {"attempts": 17}}, "status": "stopped"});
        assert_eq!(job_state(&job), Some(Some((17, false))));
        let job = json!({"spec": {"name": "k0", "restart": {"attempts": 3}}, "status": "running"});
        assert_eq!(job_state(&job), Some(Some((3, true))));
        assert_eq!(job_state(&json!({"name": "k0"})), None);
        // The spec a write sends carries its value where the read finds it.
        let s = spec("k0", 41, false);
        assert_eq!(s["restart"]["attempts"], 41);
        assert_eq!(
            job_state(&json!({"spec": s, "status": "running"})),
            Some(Some((41, true)))
        );
        assert_ne!(spec("k0", 40, true)["task"], s["task"]);
    }
}
