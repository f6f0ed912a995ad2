//! One node as a plan in progress sees it, and what one job asks of a node.

use std::collections::BTreeMap;

use crate::model::{Node, NodeStatus, Volume, VolumeState};
use crate::scheduler::explain::Reason;
use crate::scheduler::index::Slot;
use crate::scheduler::ports::PortMap;
use crate::spec::{Constraint, JobSpec, Protocol, Resources, Strategy};
use crate::state::NodeUsage;

/// One node as a plan in progress sees it.
///
/// Made for every node on every call, so it allocates nothing until the plan
/// touches the node.
#[derive(Debug)]
pub struct Candidate<'a> {
    /// The node.
    pub node: &'a Node,
    /// What committed allocations use on it.
    usage: Option<&'a NodeUsage>,
    /// Why the node takes no work (down, unhealthy, draining), read once from the
    /// node so the filter need not touch it.
    pub readiness: Result<(), Reason>,
    /// What is free now: capacity minus committed use minus this plan's placements,
    /// plus what this plan stops.
    pub free: Resources,
    /// Ports this plan took here.
    plan_ports: Vec<(u16, Protocol)>,
    /// Ports this plan frees here (allocations it stops).
    freed_ports: Vec<(u16, Protocol)>,
    /// Replicas per job this plan added (positive) or stops (negative) here; a
    /// handful of entries, so a vector beats a map.
    plan_jobs: Vec<(&'a str, i32)>,
    /// Where the search for a free dynamic port resumes.
    port_cursor: u16,
    /// The dynamic range's taken ports, TCP and UDP, built when the plan first
    /// assigns a dynamic port here.
    dynamic: Option<Box<[PortMap; 2]>>,
}

fn proto_index(p: Protocol) -> usize {
    match p {
        Protocol::Tcp => 0,
        Protocol::Udp => 1,
    }
}

impl<'a> Candidate<'a> {
    pub(crate) fn new(node: &'a Node, usage: Option<&'a NodeUsage>) -> Self {
        let used = usage.map(|u| u.used).unwrap_or(Resources::ZERO);
        let readiness = match node.status {
            NodeStatus::Ready if node.draining => Err(Reason::Draining),
            NodeStatus::Ready => Ok(()),
            status => Err(Reason::NotReady(status)),
        };
        Candidate {
            node,
            usage,
            readiness,
            free: node.info.capacity.saturating_sub(&used),
            plan_ports: Vec::new(),
            freed_ports: Vec::new(),
            plan_jobs: Vec::new(),
            port_cursor: node.info.port_range.0,
            dynamic: None,
        }
    }

    /// What the free-capacity index keys the node on.
    pub(crate) fn slot(&self) -> Slot {
        Slot {
            free: self.free,
            capacity: self.node.info.capacity,
            tagged: !self.node.info.tags.is_empty(),
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
            .filter(|u| !u.per_job.is_empty())
            .and_then(|u| u.per_job.get(job))
            .copied()
            .unwrap_or(0) as i64;
        let planned = self
            .plan_jobs
            .iter()
            .find(|(j, _)| *j == job)
            .map_or(0, |(_, n)| *n as i64);
        (committed + planned).max(0) as u32
    }

    /// Whether the dynamic range has at least `n` free ports of `protocol` besides
    /// `fixed` (the task's own fixed ports, which it takes too).
    ///
    /// Constant time while the node holds fewer ports than its range (the common
    /// case); counts precisely otherwise.
    pub fn has_dynamic_ports(
        &self,
        protocol: Protocol,
        n: usize,
        fixed: &[(u16, Protocol)],
    ) -> bool {
        let (lo, hi) = self.node.info.port_range;
        if n == 0 {
            return true;
        }
        if lo > hi {
            return false;
        }
        let size = (hi - lo) as usize + 1;
        let committed = self.usage.map_or(0, |u| u.ports.len());
        if committed + self.plan_ports.len() + fixed.len() + n <= size {
            return true;
        }
        let taken = |p: u16| match &self.dynamic {
            Some(maps) => maps[proto_index(protocol)].is_set(p),
            None => self.port_taken(p, protocol),
        };
        let free = (lo..=hi)
            .filter(|p| !taken(*p) && !fixed.contains(&(*p, protocol)))
            .take(n)
            .count();
        free >= n
    }

    /// Free dynamic host ports for `protocols`, one each, all different and none of
    /// `fixed` (the task's own fixed ports), searching from after the last port
    /// this plan took here; none when the range runs out.
    pub(crate) fn pick_dynamic_ports(
        &mut self,
        protocols: &[Protocol],
        fixed: &[(u16, Protocol)],
    ) -> Option<Vec<u16>> {
        if protocols.is_empty() {
            return Some(Vec::new());
        }
        let cursor = self.port_cursor;
        self.dynamic_maps()?;
        let maps = self.dynamic.as_deref_mut()?;
        // Ports held while the task's other ports are picked; released after, since
        // `take` marks the chosen ones for good.
        let mut held: Vec<(u16, Protocol)> = Vec::with_capacity(protocols.len() + fixed.len());
        for (p, proto) in fixed {
            let map = &mut maps[proto_index(*proto)];
            if !map.is_set(*p) {
                map.set(*p);
                held.push((*p, *proto));
            }
        }
        let mut out = Vec::with_capacity(protocols.len());
        let mut from = cursor;
        for proto in protocols {
            let map = &mut maps[proto_index(*proto)];
            let Some(port) = map.first_free_from(from) else {
                break;
            };
            map.set(port);
            held.push((port, *proto));
            out.push(port);
            from = port.saturating_add(1);
        }
        for (p, proto) in &held {
            maps[proto_index(*proto)].clear(*p);
        }
        (out.len() == protocols.len()).then_some(out)
    }

    /// The dynamic-range bitmaps, built on first use from committed ports, this
    /// plan's ports and the ports it frees.
    fn dynamic_maps(&mut self) -> Option<&[PortMap; 2]> {
        if self.dynamic.is_none() {
            let (lo, hi) = self.node.info.port_range;
            let empty = PortMap::new(lo, hi)?;
            let mut maps = Box::new([empty.clone(), empty]);
            if let Some(u) = self.usage {
                for (p, proto) in u.ports.range((lo, Protocol::Tcp)..=(hi, Protocol::Udp)) {
                    maps[proto_index(*proto)].set(*p);
                }
            }
            for (p, proto) in &self.freed_ports {
                maps[proto_index(*proto)].clear(*p);
            }
            for (p, proto) in &self.plan_ports {
                maps[proto_index(*proto)].set(*p);
            }
            self.dynamic = Some(maps);
        }
        self.dynamic.as_deref()
    }

    pub(crate) fn take(&mut self, job: &'a str, need: &Resources, ports: &[(u16, Protocol)]) {
        self.free = self.free.saturating_sub(need);
        self.plan_ports.extend_from_slice(ports);
        if let Some(maps) = self.dynamic.as_deref_mut() {
            for (p, proto) in ports {
                maps[proto_index(*proto)].set(*p);
            }
        }
        self.count_job(job, 1);
        let (lo, hi) = self.node.info.port_range;
        if let Some(last) = ports
            .iter()
            .map(|p| p.0)
            .filter(|p| (lo..=hi).contains(p))
            .max()
        {
            self.port_cursor = last.saturating_add(1);
        }
    }

    pub(crate) fn release(
        &mut self,
        job: &'a str,
        res: &Resources,
        ports: impl Iterator<Item = (u16, Protocol)>,
    ) {
        self.free = self.free.add(res).min_each(&self.node.info.capacity);
        for (p, proto) in ports {
            self.freed_ports.push((p, proto));
            self.plan_ports.retain(|k| *k != (p, proto));
            if let Some(maps) = self.dynamic.as_deref_mut() {
                maps[proto_index(proto)].clear(p);
            }
        }
        self.count_job(job, -1);
    }

    fn count_job(&mut self, job: &'a str, delta: i32) {
        match self.plan_jobs.iter_mut().find(|(j, _)| *j == job) {
            Some((_, n)) => *n += delta,
            None => self.plan_jobs.push((job, delta)),
        }
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

/// What one placement request asks for, worked out once per job and pass.
#[derive(Debug)]
pub struct Ask<'a> {
    /// The job's spec.
    pub spec: &'a JobSpec,
    /// Resources per replica.
    pub need: Resources,
    /// Tag rules, selectors first.
    pub constraints: Vec<Constraint>,
    /// Fixed host ports it needs.
    pub static_ports: Vec<(u16, Protocol)>,
    /// Protocols of the ports that need a dynamic host port.
    pub dynamic_ports: Vec<Protocol>,
    /// Bin-pack or spread.
    pub strategy: Strategy,
    /// Whether a node without tags can meet the constraints (none of them needs a
    /// tag present).
    pub untagged_fits: bool,
    /// The node its named volumes are on; an error naming why no node will do
    /// (a volume missing or being deleted, volumes on two nodes); none when it
    /// mounts no named volume. Set by [`Ask::pin_volumes`].
    pub volume_node: Option<Result<String, String>>,
    /// Host paths it mounts.
    pub host_paths: Vec<&'a str>,
    /// The id of the data key its secrets are sealed under; an error naming
    /// why no node will do (a secret missing); none when it uses no secret.
    /// Set by [`Ask::check_secrets`].
    pub secrets: Option<Result<String, String>>,
    /// Nodes where an allocation of this job failed for good (restarts spent,
    /// or it could not start there); its replacements prefer other nodes.
    pub failed_on: Vec<String>,
}

impl<'a> Ask<'a> {
    /// Works out the ask for a job under the cluster's default strategy.
    pub fn new(spec: &'a JobSpec, default_strategy: Strategy) -> Self {
        let ports = &spec.task.ports;
        let constraints = spec.all_constraints();
        Ask {
            spec,
            need: spec.task.resources,
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
            untagged_fits: constraints.iter().all(|k| k.matches(&BTreeMap::new())),
            constraints,
            volume_node: None,
            host_paths: spec
                .task
                .volumes
                .iter()
                .filter_map(|v| v.host_path.as_deref())
                .collect(),
            secrets: None,
            failed_on: Vec::new(),
        }
    }

    /// Notes the nodes where the job's allocations failed for good, from
    /// `state` (the terminal ones kept for inspection included).
    pub fn note_failures(mut self, state: &crate::state::ClusterState) -> Self {
        let mut nodes: Vec<String> = state
            .allocs_of_job(&self.spec.name)
            .filter(|a| a.failed_here())
            .filter_map(|a| a.node.clone())
            .collect();
        nodes.sort();
        nodes.dedup();
        self.failed_on = nodes;
        self
    }

    /// Pins the ask to the node of its named volumes, as `volumes` has them.
    pub fn pin_volumes(mut self, volumes: &BTreeMap<String, Volume>) -> Self {
        let mut pin: Option<Result<String, String>> = None;
        for name in self
            .spec
            .task
            .volumes
            .iter()
            .filter_map(|v| v.name.as_deref())
        {
            let here = match volumes.get(name) {
                None => Err(format!("volume {name} does not exist")),
                Some(v) if v.state == VolumeState::Deleting => {
                    Err(format!("volume {name} is being deleted"))
                }
                Some(v) => Ok(v.node.clone()),
            };
            pin = Some(match (pin, here) {
                (None, here) => here,
                (Some(Err(e)), _) | (Some(Ok(_)), Err(e)) => Err(e),
                (Some(Ok(a)), Ok(b)) if a == b => Ok(a),
                (Some(Ok(a)), Ok(b)) => Err(format!("volumes on two nodes ({a}, {b})")),
            });
        }
        self.volume_node = pin;
        self
    }

    /// Checks the secrets the ask uses exist in `secrets`, and notes the data
    /// key they are sealed under.
    pub fn check_secrets(mut self, secrets: &BTreeMap<String, crate::secret::Secret>) -> Self {
        let names = self.spec.task.secret_names();
        if names.is_empty() {
            return self;
        }
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| secrets.get(*n).and_then(|s| s.current()).is_none())
            .collect();
        self.secrets = Some(match missing.as_slice() {
            [] => {
                let mut keys: Vec<&str> = names
                    .iter()
                    .filter_map(|n| secrets.get(*n)?.current())
                    .map(|v| v.key_id.as_str())
                    .collect();
                keys.sort_unstable();
                keys.dedup();
                match keys.as_slice() {
                    [one] => Ok(one.to_string()),
                    many => Err(format!(
                        "its secrets are sealed under different data keys ({})",
                        many.join(", ")
                    )),
                }
            }
            [one] => Err(format!("secret {one} does not exist")),
            many => Err(format!("secrets {} do not exist", many.join(", "))),
        });
        self
    }

    /// What decides which nodes the ask fits on, as a key: two asks with the same
    /// key fit on the same nodes and are explained alike. The job's name is part
    /// of it only for distinct hosts, the one filter that looks at the job.
    pub fn feasibility_key(&self) -> String {
        let n = &self.need;
        let job = if self.spec.distinct_hosts {
            self.spec.name.as_str()
        } else {
            ""
        };
        format!(
            "{:x}/{}/{}/{:?}/{:?}/{:?}/{:?}/{:?}/{:?}/{job}",
            n.cpu.to_bits(),
            n.memory_mb,
            n.disk_mb,
            self.constraints,
            self.static_ports,
            self.dynamic_ports,
            self.volume_node,
            self.host_paths,
            self.secrets,
        )
    }

    /// How many dynamic ports of `protocol` it needs.
    pub fn dynamic_count(&self, protocol: Protocol) -> usize {
        self.dynamic_ports
            .iter()
            .filter(|p| **p == protocol)
            .count()
    }
}
