//! Nodes in containers on a private Docker network, for partitions: the node image
//! is built from the binary under test (plus the libraries `ldd` lists and a static
//! busybox), the Docker socket is shared so tasks still run on the engine, and a
//! node is cut off with `docker network disconnect`.

use orion_core::testing::OutputWithin;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// `docker …`, panicking with stderr on failure; returns stdout.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output_within(orion_core::testing::DOCKER_CALL)
        .expect("running docker");
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Builds (once per binary) the node image: `orion-node` with its libraries
/// (the history checker's image, the same for both).
pub async fn node_image() -> String {
    orion_history::cluster::node_image(Path::new(BIN))
        .await
        .expect("building the node image")
}

/// A host port range of 32 ports for one boxed node, which no other node of this
/// test run uses (boxed clusters of one run start in parallel, and their tasks all
/// publish on the host's loopback). Below the ephemeral range, and apart from
/// [`port_range`]'s blocks (20000–31999) and the dev cluster's 32000–32767:
/// 16000–19999 split into 4 blocks by process id, 31 ranges each.
fn boxed_port_range() -> (u16, u16) {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let block = 16000 + (std::process::id() % 4) as u16 * 1000;
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    assert!(n < 31, "more than 31 boxed nodes in one test run");
    let lo = block + n * 32;
    (lo, lo + 31)
}

/// A private network and the node containers on it; all removed on drop.
pub struct BoxedCluster {
    pub net: String,
    pub prefix: String,
    pub nodes: Vec<BoxedNode>,
    pub _tasks: Containers,
}

/// One node container.
#[derive(Clone, Debug)]
pub struct BoxedNode {
    pub id: String,
    pub container: String,
    pub ip: String,
}

impl BoxedNode {
    /// The node's API from the host, over the private network.
    pub fn addr(&self) -> String {
        format!("http://{}:8080", self.ip)
    }

    /// Runs the CLI inside the node's container against its own API (works while
    /// the node is cut off from the network).
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .args([
                "exec",
                &self.container,
                "orion-node",
                "--addr",
                "http://127.0.0.1:8080",
            ])
            .args(args)
            .output_within(orion_core::testing::DOCKER_CALL)
            .expect("docker exec")
    }

    /// GETs `path` from the node's own API inside its container (busybox `wget`), so
    /// it works while the node is cut off. The response headers (names lowercased)
    /// and body; `None` unless the answer is a success.
    pub fn get_inside(&self, path: &str) -> Option<(BTreeMap<String, String>, String)> {
        let url = format!("http://127.0.0.1:8080{path}");
        // No `-T`: the static busybox 1.35 of Debian 12 crashes (SIGSEGV) with it.
        let out = Command::new("docker")
            .args(["exec", &self.container])
            .args(["wget", "-S", "-q", "-O", "-", &url])
            .output_within(orion_core::testing::DOCKER_CALL)
            .expect("docker exec");
        if !out.status.success() {
            return None;
        }
        // `-S` prints the status line and the headers, indented, on stderr.
        let headers = String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter_map(|l| l.trim().split_once(": "))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Some((headers, String::from_utf8_lossy(&out.stdout).to_string()))
    }

    /// The index the node's replica has applied, read inside its container (works
    /// cut off). Raft's commit index is not exposed; applied ≤ committed, and only
    /// committed entries are ever applied.
    pub fn applied_index(&self) -> Option<u64> {
        let (headers, _) = self.get_inside("/v1/status/leader")?;
        headers.get("x-orion-index")?.parse().ok()
    }
}

impl BoxedCluster {
    /// Starts `n` manager nodes in containers; the first bootstraps, the rest join.
    pub async fn start(test: &str, n: usize) -> BoxedCluster {
        BoxedCluster::start_with(test, &vec![&[][..]; n]).await
    }

    /// Starts one node per entry of `flags`, each with those extra agent flags
    /// (`--role worker`, `--tag k=v`); the first bootstraps, so it must be a manager.
    pub async fn start_with(test: &str, flags: &[&[&str]]) -> BoxedCluster {
        let n = flags.len();
        let image = node_image().await;
        let prefix = node_id(test);
        let net = format!("{prefix}-net");
        let mut subnet = None;
        for k in 0..50u32 {
            let octet = 16 + (std::process::id() + k) % 200;
            let s = format!("10.{octet}.{}.0/24", (std::process::id() / 200 + k) % 250);
            let ok = Command::new("docker")
                .args(["network", "create", "--subnet", &s, &net])
                .output_within(orion_core::testing::DOCKER_CALL)
                .unwrap()
                .status
                .success();
            if ok {
                subnet = Some(s);
                break;
            }
        }
        let subnet = subnet.expect("a free subnet for the test network");
        let base = subnet.trim_end_matches(".0/24").to_string();
        let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-n{i}")).collect();
        let mut c = BoxedCluster {
            net,
            prefix: prefix.clone(),
            nodes: Vec::new(),
            _tasks: Containers(ids.clone()),
        };
        for (i, id) in ids.iter().enumerate() {
            let ip = format!("{base}.{}", 11 + i);
            let node = BoxedNode {
                id: id.clone(),
                container: id.clone(),
                ip: ip.clone(),
            };
            let (lo, hi) = boxed_port_range();
            let mut args: Vec<String> = [
                "run",
                "-d",
                "--name",
                id,
                "--network",
                &c.net,
                "--ip",
                &ip,
                "-v",
                "/var/run/docker.sock:/var/run/docker.sock",
                "-e",
                "ORION_LOG=info,openraft=warn",
                &image,
                "orion-node",
                "agent",
                "--node-id",
                id,
                "--data-dir",
                "/data",
                "--http",
                "0.0.0.0:8080",
                // Partition tests drive the API with plain HTTP, no tokens.
                "--insecure-dev",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.extend([
                "--advertise-http".into(),
                format!("{ip}:8080"),
                "--raft".into(),
                format!("{ip}:7946"),
                "--gossip".into(),
                format!("{ip}:7947"),
                "--port-range".into(),
                format!("{lo}-{hi}"),
                "--cpu".into(),
                "2".into(),
                "--memory-mb".into(),
                "2048".into(),
            ]);
            if let Some(first) = c.nodes.first() {
                args.extend(["--join".into(), first.addr()]);
            }
            args.extend(flags[i].iter().map(|f| f.to_string()));
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            docker(&argv);
            let addr = node.addr();
            wait_for(
                &format!("{id} to answer"),
                Duration::from_secs(60),
                async || get_json(&format!("{addr}/health")).await,
            )
            .await;
            c.nodes.push(node);
        }
        let first = c.nodes[0].addr();
        wait_for("every node ready", Duration::from_secs(60), async || {
            let nodes = get_json(&format!("{first}/v1/nodes")).await?;
            let ready = nodes
                .as_array()?
                .iter()
                .filter(|n| n["status"] == "ready")
                .count();
            (ready == n).then_some(())
        })
        .await;
        c
    }

    /// Cuts a node off the network: it keeps running, alone.
    pub fn cut(&self, i: usize) {
        docker(&["network", "disconnect", &self.net, &self.nodes[i].container]);
    }

    /// Puts a node back on the network with its address.
    pub fn heal(&self, i: usize) {
        docker(&[
            "network",
            "connect",
            "--ip",
            &self.nodes[i].ip,
            &self.net,
            &self.nodes[i].container,
        ]);
    }

    /// The leader as the nodes in `among` agree on it.
    pub async fn leader(&self, among: &[usize]) -> Option<usize> {
        let mut seen: Option<String> = None;
        for &i in among {
            let l = get_json(&format!("{}/v1/status/leader", self.nodes[i].addr())).await?;
            let id = l["leader"].as_str()?.to_string();
            if seen.as_ref().is_some_and(|s| *s != id) {
                return None;
            }
            seen = Some(id);
        }
        let id = seen?;
        self.nodes.iter().position(|n| n.id == id)
    }

    /// A node's log, for failure messages.
    pub fn logs(&self, i: usize) -> String {
        let out = Command::new("docker")
            .args(["logs", "--tail", "60", &self.nodes[i].container])
            .output_within(orion_core::testing::DOCKER_CALL)
            .unwrap();
        String::from_utf8_lossy(&out.stderr).to_string()
    }

    /// Jobs and allocations as a node sees them after a linearizable read barrier.
    pub async fn state(&self, i: usize) -> Option<(Value, Value)> {
        let a = self.nodes[i].addr();
        let jobs = get_json(&format!("{a}/v1/jobs?consistent=true")).await?;
        let allocs = get_json(&format!("{a}/v1/allocations?consistent=true")).await?;
        Some((jobs, allocs))
    }

    /// Every node of `among` sees the same jobs and allocations (linearizable
    /// reads) and `via` reports every node ready: their states, else `None`.
    pub async fn converged(&self, among: &[usize], via: &str) -> Option<Vec<(Value, Value)>> {
        let mut states = Vec::new();
        for &i in among {
            states.push(self.state(i).await?);
        }
        let same = states.windows(2).all(|w| w[0] == w[1]);
        let ready = get_json(&format!("{via}/v1/nodes"))
            .await?
            .as_array()?
            .iter()
            .all(|n| n["status"] == "ready");
        (same && ready).then_some(states)
    }
}

impl Drop for BoxedCluster {
    fn drop(&mut self) {
        for n in &self.nodes {
            let _ = Command::new("docker")
                .args(["rm", "-f", &n.container])
                .output_within(orion_core::testing::DOCKER_CALL);
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &self.net])
            .output_within(orion_core::testing::DOCKER_CALL);
        let _ = &self.prefix;
    }
}
