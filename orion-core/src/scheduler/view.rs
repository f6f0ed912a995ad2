//! The scheduler's working view of one call: every node as a [`Candidate`], kept up
//! to date as the plan consumes resources, over a [`FreeIndex`] of the schedulable
//! ones.

use std::collections::HashMap;

use super::candidate::{Ask, Candidate};
use super::index::{FreeIndex, Walk};
use crate::model::{AllocId, PortBinding};
use crate::spec::{Protocol, Resources, Strategy};
use crate::state::ClusterState;

/// Every node of the cluster as the plan in progress sees it.
#[derive(Debug)]
pub struct PlanView<'a> {
    /// All nodes, in id order.
    pub nodes: Vec<Candidate<'a>>,
    /// Schedulable nodes by free CPU and memory.
    index: FreeIndex,
}

impl<'a> PlanView<'a> {
    /// The view of committed state, with the resources and ports of `stopping`
    /// allocations counted as free (they are stopped in the same plan).
    pub fn new(state: &'a ClusterState, stopping: &[AllocId]) -> Self {
        let mut nodes: Vec<Candidate<'a>> = Vec::with_capacity(state.nodes.len());
        nodes.extend(state.nodes_with_usage().map(|(n, u)| Candidate::new(n, u)));
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
        let index = FreeIndex::build(
            nodes
                .iter()
                .enumerate()
                .filter(|(_, c)| c.readiness.is_ok())
                .map(|(i, c)| (c.slot(), i)),
        );
        PlanView { nodes, index }
    }

    /// Position of a node by id.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.nodes
            .binary_search_by(|c| c.node.id().as_str().cmp(id))
            .ok()
    }

    /// Schedulable nodes that may fit the ask's resources, in its strategy's order
    /// of preference; see [`FreeIndex::walk`].
    pub fn walk(&self, ask: &Ask<'_>) -> Walk<'_> {
        let binpack = ask.strategy == Strategy::Binpack;
        self.index.walk(&ask.need, binpack, ask.untagged_fits)
    }

    /// Records a placement on node `i`, keeping the index in step.
    pub fn take(&mut self, i: usize, job: &'a str, need: &Resources, ports: &[(u16, Protocol)]) {
        let c = &mut self.nodes[i];
        let old = c.slot();
        c.take(job, need, ports);
        self.index.update(i, &old, &c.free);
    }

    /// How many schedulable nodes there are.
    pub fn schedulable(&self) -> usize {
        self.index.len()
    }

    /// Host ports for `ask` on node `i`: fixed ones as given, dynamic ones free in
    /// the node's range and different from each other; none when the range runs out.
    pub fn assign_ports(&mut self, i: usize, ask: &Ask<'_>) -> Option<Vec<PortBinding>> {
        let c = &mut self.nodes[i];
        let mut dynamic = c
            .pick_dynamic_ports(&ask.dynamic_ports, &ask.static_ports)?
            .into_iter();
        let ports = &ask.spec.task.ports;
        let mut out = Vec::with_capacity(ports.len());
        for p in ports {
            let host_port = match p.host_port {
                Some(h) => h as u16,
                None => dynamic.next()?,
            };
            out.push(PortBinding {
                name: p.name.clone(),
                container_port: p.container_port as u16,
                host_port,
                protocol: p.protocol,
                host_ip: c.node.info.host_ip.clone(),
            });
        }
        Some(out)
    }
}
