//! The scheduler's working view: every node with what is free on it, kept up to
//! date as a plan consumes resources, and an index of nodes by free memory.

use std::collections::{BTreeSet, HashMap};

use crate::model::{AllocId, Node};
use crate::spec::{JobSpec, Protocol, Resources, Strategy};
use crate::state::{ClusterState, NodeUsage};

/// One node as a plan in progress sees it.
#[derive(Debug)]
pub struct Candidate<'a> {
    /// The node.
    pub node: &'a Node,
    /// What committed allocations use on it.
    usage: Option<&'a NodeUsage>,
    /// What is free now: capacity minus committed use minus this plan's placements,
    /// plus what this plan stops.
    pub free: Resources,
    /// Ports this plan took here.
    plan_ports: Vec<(u16, Protocol)>,
    /// Ports this plan frees here.
    freed_ports: Vec<(u16, Protocol)>,
    /// Replicas per job this plan added (positive) or stops (negative) here.
    plan_jobs: HashMap<String, i64>,
    /// Where the search for a free dynamic port resumes.
    port_cursor: u16,
}

impl<'a> Candidate<'a> {
    fn new(node: &'a Node, usage: Option<&'a NodeUsage>) -> Self {
        let used = usage.map(|u| u.used).unwrap_or(Resources::ZERO);
        Candidate {
            node,
            usage,
            free: node.info.capacity.saturating_sub(&used),
            plan_ports: Vec::new(),
            freed_ports: Vec::new(),
            plan_jobs: HashMap::new(),
            port_cursor: node.info.port_range.0,
        }
    }

    /// Whether a host port is in use here, committed or planned.
    pub fn port_taken(&self, port: u16, protocol: Protocol) -> bool {
        let key = (port, protocol);
        if self.plan_ports.contains(&key) {
            return true;
        }
        let committed = self.usage.is_some_and(|u| u.ports.contains(&key));
        committed && !self.freed_ports.contains(&key)
    }

    /// Replicas of `job` here, committed and planned.
    pub fn job_count(&self, job: &str) -> u32 {
        let committed = self
            .usage
            .and_then(|u| u.per_job.get(job))
            .copied()
            .unwrap_or(0) as i64;
        let planned = self.plan_jobs.get(job).copied().unwrap_or(0);
        (committed + planned).max(0) as u32
    }

    /// A free dynamic port from the node's range, not in `exclude`, or none when
    /// the range is full. The search resumes after the last port this plan took.
    pub fn free_dynamic_port(
        &self,
        protocol: Protocol,
        exclude: &[(u16, Protocol)],
    ) -> Option<u16> {
        let (lo, hi) = self.node.info.port_range;
        if lo > hi {
            return None;
        }
        let start = self.port_cursor.clamp(lo, hi);
        (start..=hi)
            .chain(lo..start)
            .find(|p| !self.port_taken(*p, protocol) && !exclude.contains(&(*p, protocol)))
    }

    fn take(&mut self, job: &str, need: &Resources, ports: &[(u16, Protocol)]) {
        self.free = self.free.saturating_sub(need);
        self.plan_ports.extend_from_slice(ports);
        *self.plan_jobs.entry(job.to_string()).or_default() += 1;
        if let Some(max) = ports.iter().map(|p| p.0).max() {
            self.port_cursor = max.saturating_add(1);
        }
    }

    fn release(
        &mut self,
        job: &str,
        res: &Resources,
        ports: impl Iterator<Item = (u16, Protocol)>,
    ) {
        self.free = self.free.add(res).min_each(&self.node.info.capacity);
        self.freed_ports.extend(ports);
        *self.plan_jobs.entry(job.to_string()).or_default() -= 1;
    }
}

impl Resources {
    /// The smaller of two on each dimension.
    pub fn min_each(&self, other: &Resources) -> Resources {
        Resources {
            cpu: self.cpu.min(other.cpu),
            memory_mb: self.memory_mb.min(other.memory_mb),
            disk_mb: self.disk_mb.min(other.disk_mb),
        }
    }
}

/// What one placement request asks for, worked out once per job.
#[derive(Debug)]
pub struct Ask<'a> {
    /// The job's spec.
    pub spec: &'a JobSpec,
    /// Resources per replica.
    pub need: Resources,
    /// Tag rules, selectors first.
    pub constraints: Vec<crate::spec::Constraint>,
    /// Fixed host ports it needs.
    pub static_ports: Vec<(u16, Protocol)>,
    /// Protocols of the ports that need a dynamic host port.
    pub dynamic_ports: Vec<Protocol>,
    /// Bin-pack or spread.
    pub strategy: Strategy,
}

impl<'a> Ask<'a> {
    /// Works out the ask for a job under the cluster's default strategy.
    pub fn new(spec: &'a JobSpec, default_strategy: Strategy) -> Self {
        let ports = &spec.task.ports;
        Ask {
            spec,
            need: spec.task.resources,
            constraints: spec.all_constraints(),
            static_ports: ports
                .iter()
                .filter_map(|p| p.host_port.map(|h| (h as u16, p.protocol)))
                .collect(),
            dynamic_ports: ports
                .iter()
                .filter(|p| p.host_port.is_none())
                .map(|p| p.protocol)
                .collect(),
            strategy: spec.strategy.unwrap_or(default_strategy),
        }
    }
}

/// Every node of the cluster as the plan in progress sees it, with an index of the
/// schedulable ones ordered by free memory.
#[derive(Debug)]
pub struct PlanView<'a> {
    /// All nodes, in id order.
    pub nodes: Vec<Candidate<'a>>,
    /// Schedulable nodes by (free memory, position in `nodes`).
    by_free_memory: BTreeSet<(u64, u32)>,
}

impl<'a> PlanView<'a> {
    /// The view of committed state, with the resources of `stopping` allocations
    /// counted as free (they are stopped in the same plan).
    pub fn new(state: &'a ClusterState, stopping: &[AllocId]) -> Self {
        let mut nodes: Vec<Candidate<'a>> = state
            .nodes
            .values()
            .map(|n| Candidate::new(n, state.usage_ref(n.id())))
            .collect();
        if !stopping.is_empty() {
            let pos: HashMap<&str, usize> = nodes
                .iter()
                .enumerate()
                .map(|(i, c)| (c.node.id().as_str(), i))
                .collect();
            for a in stopping.iter().filter_map(|id| state.allocs.get(id)) {
                let Some(&i) = a.node.as_deref().and_then(|n| pos.get(n)) else {
                    continue;
                };
                if a.holds_resources() {
                    let ports = a.ports.iter().map(|p| (p.host_port, p.protocol));
                    nodes[i].release(&a.job, &a.resources, ports);
                }
            }
        }
        let by_free_memory = nodes
            .iter()
            .enumerate()
            .filter(|(_, c)| c.node.schedulable())
            .map(|(i, c)| (c.free.memory_mb, i as u32))
            .collect();
        PlanView {
            nodes,
            by_free_memory,
        }
    }

    /// Positions of schedulable nodes with at least `memory_mb` free: fullest first
    /// (`ascending`) or emptiest first.
    pub fn by_free_memory(
        &self,
        memory_mb: u64,
        ascending: bool,
    ) -> Box<dyn Iterator<Item = usize> + '_> {
        let range = self.by_free_memory.range((memory_mb, 0)..);
        if ascending {
            Box::new(range.map(|(_, i)| *i as usize))
        } else {
            Box::new(range.rev().map(|(_, i)| *i as usize))
        }
    }

    /// Records a placement on node `i`, keeping the index in step.
    pub fn take(&mut self, i: usize, job: &str, need: &Resources, ports: &[(u16, Protocol)]) {
        let c = &mut self.nodes[i];
        let indexed = self.by_free_memory.remove(&(c.free.memory_mb, i as u32));
        c.take(job, need, ports);
        if indexed {
            self.by_free_memory.insert((c.free.memory_mb, i as u32));
        }
    }

    /// How many schedulable nodes there are.
    pub fn schedulable(&self) -> usize {
        self.by_free_memory.len()
    }
}
