//! Builders for test states: nodes, jobs, and a state built by applying commands.

use std::collections::BTreeMap;

use crate::command::{Command, Response};
use crate::model::{NodeAddrs, NodeInfo, NodeRole};
use crate::spec::{JobSpec, Resources};
use crate::state::ClusterState;

/// A ready manager node with `cpu` cores and `memory_mb` MiB, ports 32000–32767.
pub fn node(id: &str, cpu: f64, memory_mb: u64) -> NodeInfo {
    NodeInfo {
        id: id.to_string(),
        addrs: NodeAddrs {
            http: format!("127.0.0.1:0/{id}"),
            raft: None,
            gossip: None,
        },
        role: NodeRole::Manager,
        capacity: Resources {
            cpu,
            memory_mb,
            disk_mb: 100_000,
        },
        tags: BTreeMap::new(),
        host_ip: "127.0.0.1".into(),
        port_range: (32000, 32767),
        host_volumes: Vec::new(),
        data_key_id: None,
        runtime: None,
        runtime_warning: None,
    }
}

/// `node` with tags.
pub fn tagged(mut info: NodeInfo, tags: &[(&str, &str)]) -> NodeInfo {
    info.tags = tags
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    info
}

/// A service job of `replicas` replicas needing `cpu` cores and `memory_mb` MiB each.
pub fn job(name: &str, replicas: u32, cpu: f64, memory_mb: u64) -> JobSpec {
    JobSpec::service(name, "orion-test/web:1")
        .replicas(replicas)
        .resources(cpu, memory_mb)
}

/// A cluster state built by applying commands in order, as the store would.
#[derive(Debug, Default)]
pub struct StateBuilder {
    state: ClusterState,
    index: u64,
}

impl StateBuilder {
    /// An empty state with a cluster id.
    pub fn new() -> Self {
        let mut b = StateBuilder::default();
        b.apply(Command::InitCluster {
            cluster_id: "c0ffee00".into(),
        });
        b
    }

    /// Applies a command; returns the state machine's answer.
    pub fn apply(&mut self, cmd: Command) -> Response {
        self.index += 1;
        self.state.apply(self.index, &cmd).0
    }

    /// Registers a node.
    pub fn node(mut self, info: NodeInfo) -> Self {
        self.apply(Command::RegisterNode { info });
        self
    }

    /// Submits a job.
    pub fn job(mut self, spec: JobSpec) -> Self {
        self.apply(Command::UpsertJob { spec });
        self
    }

    /// The state so far.
    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    /// The state so far, mutably (for applying further commands directly).
    pub fn state_mut(&mut self) -> &mut ClusterState {
        &mut self.state
    }

    /// The state.
    pub fn build(self) -> ClusterState {
        self.state
    }
}

/// Every file under `dir` whose bytes hold `needle`, for tests proving a
/// secret is nowhere on disk. Files that vanish while it walks (a running
/// node's temporaries) are skipped.
pub fn files_holding(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if t.is_file() => {
                    let bytes = std::fs::read(&path).unwrap_or_default();
                    if bytes.windows(needle.len()).any(|w| w == needle) {
                        found.push(path.display().to_string());
                    }
                }
                _ => {}
            }
        }
    }
    found
}
