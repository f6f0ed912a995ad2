//! A real cluster of `orion-node` processes, each in its own container on a
//! private Docker network the run creates (the image is the binary under test
//! plus the libraries `ldd` lists and a static busybox), sharing the host's
//! Docker socket so tasks run on the engine. Faults are made from outside:
//! signals to the node's process (`docker kill -s KILL|STOP|CONT`), a
//! restart with its data (`docker start` of the same container keeps its
//! `/data`), and partitions as blackhole routes inside the nodes' network
//! namespaces (`ip route add blackhole <peer>`; the containers get
//! `NET_ADMIN`), so any split of the nodes can be made while the test host
//! still reaches every node.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use orion_runtime::image::{self, Rootfs};
use orion_runtime::DockerRuntime;
use serde_json::Value;

/// Longest any one `docker` command may take before the run fails (an engine
/// that answers a ping and then hangs must fail the run, not hang it).
pub const DOCKER_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `docker args…` with [`DOCKER_TIMEOUT`]; its stdout, or an error with
/// its stderr.
pub async fn docker(args: &[&str]) -> Result<String> {
    let mut cmd = tokio::process::Command::new("docker");
    cmd.args(args).kill_on_drop(true);
    let out = tokio::time::timeout(DOCKER_TIMEOUT, cmd.output())
        .await
        .with_context(|| format!("docker {}: no answer in {DOCKER_TIMEOUT:?}", args.join(" ")))?
        .context("running docker")?;
    if !out.status.success() {
        bail!(
            "docker {}: {} {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The shared libraries the binary needs, as `ldd` lists them.
fn libraries(bin: &Path) -> Result<Vec<String>> {
    let out = std::process::Command::new("ldd")
        .arg(bin)
        .output()
        .context("running ldd")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| path.to_string())
        })
        .collect())
}

/// Builds (once per binary: the tag carries its size and mtime) the image of
/// an `orion-node` binary with its libraries and a static busybox, `/data`
/// for its data dir. Returns the tag.
pub async fn node_image(bin: &Path) -> Result<String> {
    let meta = std::fs::metadata(bin)
        .with_context(|| format!("{}: the orion-node binary is not there", bin.display()))?;
    let stamp = meta
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let tag = format!("orion-test/node:{}-{stamp}", meta.len());
    let docker_rt = DockerRuntime::connect_local()?;
    let libs = libraries(bin)?;
    let bytes = std::fs::read(bin)?;
    let lib_bytes: Vec<(String, Vec<u8>)> = libs
        .iter()
        .map(|l| {
            Ok((
                l.clone(),
                std::fs::read(l).with_context(|| format!("reading {l}"))?,
            ))
        })
        .collect::<Result<_>>()?;
    image::ensure_built(
        &docker_rt,
        &tag,
        || {
            let mut root = Rootfs::busybox()?.file("/usr/local/bin/orion-node", bytes, 0o755);
            for (lib, bytes) in lib_bytes {
                root = root.file(&lib, bytes, 0o755);
            }
            Ok(root.dir("/data", 0o755))
        },
        &[
            "ENV PATH=/usr/local/bin:/bin".to_string(),
            "WORKDIR /".to_string(),
        ],
    )
    .await
    .context("building the node image")?;
    Ok(tag)
}

/// One node container.
#[derive(Clone, Debug)]
pub struct Node {
    /// Its node id (also its container's name).
    pub id: String,
    /// Its address on the private network.
    pub ip: String,
    /// Whether it is a manager (a Raft voter) or a worker.
    pub manager: bool,
}

impl Node {
    /// Its API from the test host.
    pub fn api(&self) -> String {
        format!("http://{}:8080", self.ip)
    }
}

/// The nodes, their network and the blackhole routes in place; everything
/// the run made is removed on drop (its node containers, the task containers
/// its nodes started, the network).
pub struct Cluster {
    /// The private network's name.
    pub net: String,
    /// The nodes, managers first.
    pub nodes: Vec<Node>,
    /// Blackhole routes in place: (node index, peer index).
    cuts: BTreeSet<(usize, usize)>,
    http: reqwest::Client,
}

impl Cluster {
    /// Starts `managers` managers and `workers` workers, the first
    /// bootstrapping and the rest joining it, and waits until every node is
    /// ready.
    pub async fn start(
        name: &str,
        image: &str,
        managers: usize,
        workers: usize,
    ) -> Result<Cluster> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let net = format!("{name}-net");
        let mut subnet = None;
        let pid = std::process::id();
        for k in 0..50u32 {
            let s = format!(
                "10.{}.{}.0/24",
                16 + (pid + k * 7) % 200,
                (pid / 200 + k) % 250
            );
            if docker(&["network", "create", "--subnet", &s, &net])
                .await
                .is_ok()
            {
                subnet = Some(s);
                break;
            }
        }
        let subnet = subnet.context("no free subnet for the run's network")?;
        let base = subnet.trim_end_matches(".0/24").to_string();
        let mut c = Cluster {
            net,
            nodes: Vec::new(),
            cuts: BTreeSet::new(),
            http,
        };
        for i in 0..managers + workers {
            let node = Node {
                id: format!("{name}-n{i}"),
                ip: format!("{base}.{}", 11 + i),
                manager: i < managers,
            };
            let mut args: Vec<String> = [
                "run",
                "-d",
                "--name",
                &node.id,
                "--label",
                &format!("orion-history={name}"),
                "--network",
                &c.net,
                "--ip",
                &node.ip,
                "--cap-add",
                "NET_ADMIN",
                "-v",
                "/var/run/docker.sock:/var/run/docker.sock",
                "-e",
                "ORION_LOG=info,openraft=warn",
                image,
                "orion-node",
                "agent",
                "--node-id",
                &node.id,
                "--data-dir",
                "/data",
                "--http",
                "0.0.0.0:8080",
                "--insecure-dev",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.extend([
                "--advertise-http".into(),
                format!("{}:8080", node.ip),
                "--raft".into(),
                format!("{}:7946", node.ip),
                "--gossip".into(),
                format!("{}:7947", node.ip),
                "--cpu".into(),
                "4".into(),
                "--memory-mb".into(),
                "4096".into(),
            ]);
            if !node.manager {
                args.extend(["--role".into(), "worker".into()]);
            }
            if let Some(first) = c.nodes.first() {
                args.extend(["--join".into(), first.api()]);
            }
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            docker(&argv).await?;
            c.nodes.push(node.clone());
            c.wait(
                &format!("{} to answer", node.id),
                Duration::from_secs(60),
                async |c| c.get(&node, "/health").await.map(|_| ()),
            )
            .await?;
        }
        c.wait_ready(Duration::from_secs(90)).await?;
        Ok(c)
    }

    /// Waits until the first node's view lists every node ready.
    pub async fn wait_ready(&self, limit: Duration) -> Result<()> {
        let n = self.nodes.len();
        self.wait("every node ready", limit, async |c| {
            let nodes = c.get(&c.nodes[0], "/v1/nodes").await?;
            let ready = nodes
                .as_array()?
                .iter()
                .filter(|n| n["status"] == "ready")
                .count();
            (ready == n).then_some(())
        })
        .await
    }

    /// GET `path` from a node: the JSON of a success, else `None`.
    pub async fn get(&self, node: &Node, path: &str) -> Option<Value> {
        let r = self
            .http
            .get(format!("{}{path}", node.api()))
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }

    /// Polls `f` every 250 ms until it gives a value, or fails after `limit`.
    pub async fn wait<T>(
        &self,
        what: &str,
        limit: Duration,
        mut f: impl AsyncFnMut(&Cluster) -> Option<T>,
    ) -> Result<T> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(v) = f(self).await {
                return Ok(v);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("timed out after {limit:?} waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The leader, as every node that answers names it (`None` while they
    /// disagree or none answers).
    pub async fn leader(&self) -> Option<usize> {
        let mut seen: Option<String> = None;
        for n in &self.nodes {
            let Some(l) = self.get(n, "/v1/status/leader").await else {
                continue;
            };
            let id = l["leader"].as_str()?.to_string();
            if seen.as_ref().is_some_and(|s| *s != id) {
                return None;
            }
            seen = Some(id);
        }
        let id = seen?;
        self.nodes.iter().position(|n| n.id == id)
    }

    /// Sends a signal to a node's process (`KILL`, `STOP`, `CONT`, `TERM`).
    pub async fn signal(&self, i: usize, signal: &str) -> Result<()> {
        docker(&["kill", "-s", signal, &self.nodes[i].id])
            .await
            .map(|_| ())
    }

    /// Starts a node's container again (after a kill): the same node with its
    /// data dir.
    pub async fn start_node(&mut self, i: usize) -> Result<()> {
        docker(&["start", &self.nodes[i].id]).await?;
        // A new process means a new network namespace: its routes are gone.
        self.cuts.retain(|(a, _)| *a != i);
        // ...so what the other side blocked must be blocked again on this side.
        let peers: Vec<usize> = self
            .cuts
            .iter()
            .filter(|(_, b)| *b == i)
            .map(|(a, _)| *a)
            .collect();
        for p in peers {
            self.route(i, p, true).await?;
        }
        Ok(())
    }

    /// A graceful restart: SIGTERM, up to 10 s, then the same node again.
    pub async fn restart(&mut self, i: usize) -> Result<()> {
        docker(&["stop", "-t", "10", &self.nodes[i].id]).await?;
        self.start_node(i).await
    }

    /// Whether a node's process runs.
    pub async fn is_running(&self, i: usize) -> Result<bool> {
        let s = docker(&["inspect", "-f", "{{.State.Running}}", &self.nodes[i].id]).await?;
        Ok(s == "true")
    }

    async fn route(&mut self, i: usize, peer: usize, add: bool) -> Result<()> {
        let ip = format!("{}/32", self.nodes[peer].ip);
        let verb = if add { "add" } else { "del" };
        let r = docker(&[
            "exec",
            &self.nodes[i].id,
            "busybox",
            "ip",
            "route",
            verb,
            "blackhole",
            &ip,
        ])
        .await;
        match r {
            Ok(_) => {
                if add {
                    self.cuts.insert((i, peer));
                } else {
                    self.cuts.remove(&(i, peer));
                }
                Ok(())
            }
            // A node whose process is dead has no namespace to change; its
            // routes are gone with it.
            Err(_) if !self.is_running(i).await.unwrap_or(true) => {
                self.cuts.remove(&(i, peer));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Cuts the nodes into groups that cannot reach each other; a node in no
    /// group reaches everyone (a bridge). The test host reaches every node.
    pub async fn partition(&mut self, groups: &[Vec<usize>]) -> Result<()> {
        let group_of: BTreeMap<usize, usize> = groups
            .iter()
            .enumerate()
            .flat_map(|(g, nodes)| nodes.iter().map(move |n| (*n, g)))
            .collect();
        for (&a, ga) in &group_of {
            for (&b, gb) in &group_of {
                if ga != gb && !self.cuts.contains(&(a, b)) {
                    self.route(a, b, true).await?;
                }
            }
        }
        Ok(())
    }

    /// Removes every blackhole route.
    pub async fn heal(&mut self) -> Result<()> {
        let cuts: Vec<(usize, usize)> = self.cuts.iter().copied().collect();
        for (a, b) in cuts {
            self.route(a, b, false).await?;
        }
        Ok(())
    }

    /// Whether any partition is in place.
    pub fn partitioned(&self) -> bool {
        !self.cuts.is_empty()
    }

    /// The node ids.
    pub fn ids(&self) -> BTreeSet<String> {
        self.nodes.iter().map(|n| n.id.clone()).collect()
    }

    /// Why a node's process is not running: its exit code, whether the
    /// kernel killed it for memory, the engine's error.
    pub async fn exit_state(&self, i: usize) -> String {
        docker(&[
            "inspect",
            "-f",
            "exit code {{.State.ExitCode}}, OOM-killed {{.State.OOMKilled}}, error {{printf \"%q\" .State.Error}}, finished {{.State.FinishedAt}}",
            &self.nodes[i].id,
        ])
        .await
        .unwrap_or_else(|e| format!("{e:#}"))
    }

    /// A node's whole log (stderr and stdout).
    pub async fn full_log(&self, i: usize) -> String {
        let mut cmd = tokio::process::Command::new("docker");
        cmd.args(["logs", &self.nodes[i].id]).kill_on_drop(true);
        match tokio::time::timeout(DOCKER_TIMEOUT, cmd.output()).await {
            Ok(Ok(out)) => format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            _ => "(no log)".into(),
        }
    }

    /// Removes the node containers, the task containers their nodes started
    /// and the network. Also run (without waiting) on drop.
    pub async fn remove(&mut self) {
        for n in &self.nodes {
            let _ = docker(&["rm", "-f", &n.id]).await;
            let filter = format!("label=orion.node={}", n.id);
            if let Ok(ids) = docker(&["ps", "-aq", "--filter", &filter]).await {
                for id in ids.lines() {
                    let _ = docker(&["rm", "-f", id]).await;
                }
            }
        }
        let _ = docker(&["network", "rm", &self.net]).await;
        self.nodes.clear();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The async cleanup did not run (a panic or an early return): do it
        // with blocking commands, each bounded by the engine's own answer.
        for n in &self.nodes {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", &n.id])
                .output();
            let filter = format!("label=orion.node={}", n.id);
            if let Ok(out) = std::process::Command::new("docker")
                .args(["ps", "-aq", "--filter", &filter])
                .output()
            {
                for id in String::from_utf8_lossy(&out.stdout).lines() {
                    let _ = std::process::Command::new("docker")
                        .args(["rm", "-f", id])
                        .output();
                }
            }
        }
        if !self.nodes.is_empty() {
            let _ = std::process::Command::new("docker")
                .args(["network", "rm", &self.net])
                .output();
        }
    }
}

/// Running task containers of the nodes `ids`, as (node, allocation) per
/// container.
pub async fn task_containers(ids: &BTreeSet<String>) -> Result<Vec<(String, String)>> {
    let out = docker(&[
        "ps",
        "--filter",
        "label=orion.alloc",
        "--format",
        "{{.Label \"orion.node\"}} {{.Label \"orion.alloc\"}}",
    ])
    .await?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(node, _)| ids.contains(*node))
        .map(|(n, a)| (n.to_string(), a.to_string()))
        .collect())
}
