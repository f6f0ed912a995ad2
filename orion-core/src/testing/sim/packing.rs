//! Packing quality of a cluster state: how many nodes are in use, how much free
//! capacity is stranded, how much room is left for large tasks.
//!
//! Used to compare the bounded scheduler with exhaustive scoring on the same
//! input (see the `scheduler` bench and
//! `scheduler::tests::bounded_packing_is_within_two_percent_of_exhaustive`).

use std::fmt;

use crate::spec::Resources;
use crate::state::ClusterState;

/// The smallest task of the workload mix; free capacity that cannot host it is
/// stranded.
pub const SMALLEST: Resources = Resources {
    cpu: 0.25,
    memory_mb: 256,
    disk_mb: 0,
};

/// The largest task of the workload mix, for headroom.
pub const LARGEST: Resources = Resources {
    cpu: 4.0,
    memory_mb: 16_384,
    disk_mb: 0,
};

/// Packing figures of one state.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Packing {
    /// Allocations holding resources.
    pub allocs: usize,
    /// CPU those allocations reserve, cores: what was placed, so that packings
    /// that placed different amounts can still be compared per core placed.
    pub cpu_placed: f64,
    /// Nodes with at least one allocation.
    pub nodes_used: usize,
    /// CPU capacity of those nodes, cores: with nodes of mixed sizes, a fairer
    /// measure of what a packing occupies than their count.
    pub capacity_used: f64,
    /// CPU reserved over the capacity of the nodes in use, percent.
    pub cpu_util_used: f64,
    /// Memory reserved over the capacity of the nodes in use, percent.
    pub mem_util_used: f64,
    /// Free CPU on nodes whose free memory cannot host the smallest task, percent
    /// of all CPU.
    pub stranded_cpu: f64,
    /// Free memory on nodes whose free CPU cannot host the smallest task, percent
    /// of all memory.
    pub stranded_mem: f64,
    /// How many of the largest task still fit, each node counted on its own.
    pub large_headroom: u64,
}

impl Packing {
    /// Measures a state.
    pub fn of(state: &ClusterState) -> Packing {
        let mut p = Packing::default();
        let (mut cap_cpu, mut cap_mem, mut used_cap_cpu, mut used_cap_mem) = (0.0, 0.0, 0.0, 0.0);
        let (mut used_cpu, mut used_mem, mut str_cpu, mut str_mem) = (0.0, 0.0, 0.0, 0.0);
        for n in state.nodes.values().filter(|n| n.schedulable()) {
            let cap = n.info.capacity;
            cap_cpu += cap.cpu;
            cap_mem += cap.memory_mb as f64;
            let usage = state.usage_ref(n.id());
            let used = usage.map_or(Resources::ZERO, |u| u.used);
            let free = cap.saturating_sub(&used);
            let count: u32 = usage.map_or(0, |u| u.per_job.values().sum());
            if count > 0 {
                p.allocs += count as usize;
                p.nodes_used += 1;
                used_cap_cpu += cap.cpu;
                p.capacity_used += cap.cpu;
                used_cap_mem += cap.memory_mb as f64;
                used_cpu += used.cpu;
                p.cpu_placed += used.cpu;
                used_mem += used.memory_mb as f64;
            }
            if free.memory_mb < SMALLEST.memory_mb {
                str_cpu += free.cpu;
            }
            if free.cpu + 1e-9 < SMALLEST.cpu {
                str_mem += free.memory_mb as f64;
            }
            let fit_cpu = ((free.cpu + 1e-9) / LARGEST.cpu).floor() as u64;
            p.large_headroom += fit_cpu.min(free.memory_mb / LARGEST.memory_mb);
        }
        let pct = |a: f64, b: f64| if b > 0.0 { 100.0 * a / b } else { 0.0 };
        p.cpu_util_used = pct(used_cpu, used_cap_cpu);
        p.mem_util_used = pct(used_mem, used_cap_mem);
        p.stranded_cpu = pct(str_cpu, cap_cpu);
        p.stranded_mem = pct(str_mem, cap_mem);
        p
    }
}

impl Packing {
    /// Nodes in use per 100 cores placed: nodes used, made comparable between
    /// packings that placed different amounts.
    pub fn nodes_per_100_cores(&self) -> f64 {
        if self.cpu_placed > 0.0 {
            100.0 * self.nodes_used as f64 / self.cpu_placed
        } else {
            0.0
        }
    }
}

impl fmt::Display for Packing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} allocs ({:.0} cores) on {} nodes ({:.2} per 100 cores placed) of {:.0} cores (cpu {:.1}%, mem {:.1}% of those), stranded cpu {:.2}% mem {:.2}%, room for {} large",
            self.allocs,
            self.cpu_placed,
            self.nodes_used,
            self.nodes_per_100_cores(),
            self.capacity_used,
            self.cpu_util_used,
            self.mem_util_used,
            self.stranded_cpu,
            self.stranded_mem,
            self.large_headroom
        )
    }
}

/// Places `requests` through `scheduler` in passes of at most `chunk`, committing
/// each pass's plan through the state machine as the leader would; returns
/// (placed, unplaced, refused by the state machine).
pub fn place_in_passes(
    b: &mut crate::testing::fixtures::StateBuilder,
    scheduler: &dyn crate::scheduler::Scheduler,
    requests: &[crate::command::SlotRef],
    chunk: usize,
    seed: u64,
) -> (usize, usize, usize) {
    let (mut placed, mut unplaced, mut refused) = (0, 0, 0);
    for (pass, part) in requests.chunks(chunk.max(1)).enumerate() {
        let s = scheduler.schedule(b.state(), part, &[], seed.wrapping_add(pass as u64));
        unplaced += s.unplaced.len();
        let plan = crate::command::Plan {
            placements: s.placements,
            ..Default::default()
        };
        match b.apply(crate::command::Command::ApplyPlan { plan }) {
            crate::command::Response::Plan {
                placed: p,
                refused: r,
                ..
            } => {
                placed += p;
                refused += r.len();
            }
            other => panic!("unexpected answer to a plan: {other:?}"),
        }
    }
    (placed, unplaced, refused)
}
