//! The `Scheduler` seam and Orion's filter-and-score scheduler.
//!
//! Placement is pure: `(committed state, requests) → placements + explanations`.
//! No I/O, no clock; randomness only from the seed the caller passes.
//!
//! ```text
//!  requests ──► PlanView: every node with what is free on it (committed use, minus
//!               │         what this call stops), over a FreeIndex of the
//!               │         schedulable ones: (in use | empty, CPU step, memory)
//!               ▼
//!  for each request, the plan so far accounted for:
//!    walk the index from the nodes the strategy prefers — bin-pack: nodes in use,
//!    least CPU then least memory left first; spread: empty nodes, most left first;
//!    either way empty plain nodes before empty tagged ones — visiting only nodes
//!    with the CPU and memory asked
//!                   │
//!                   ▼
//!    filters, cheapest first ──► reject ───────────────┐
//!    (ready · resources · constraints · static ports ·  │ none feasible at all?
//!     distinct hosts · dynamic ports)                   │ explain: every node's
//!                   │ feasible                          │ first rejection, counted
//!                   ▼                                   ▼ (once per job and call)
//!    scorers × weights (free resources · job anti-affinity · reserve tagged) over
//!    the first K = 16 feasible (every one below 128 nodes); ties broken by a hash
//!    of (seed, node); stop early after 512 nodes looked at once one fits
//!                   │
//!                   ▼
//!    host ports: fixed as given, dynamic from a bitmap of the node's range ──►
//!    placement; the node's free resources and its index entry are updated
//! ```
//!
//! # Why bounded, and what it costs
//!
//! Scoring every feasible node for every placement is `O(nodes)` each: at 10,000
//! nodes exhaustive scoring placed about 2,000 tasks/s in the quality run of the
//! `scheduler` bench. Orion scores the first 16 feasible nodes of an index walk
//! instead, the nodes the strategy prefers coming first, so the sample is the best
//! part of the cluster rather than a random one (Nomad samples randomly, with
//! log2(n) candidates; kube-scheduler scores a share of the nodes it finds
//! feasible).
//!
//! - The index is keyed on CPU in eighth-core steps and then memory, so a walk
//!   never visits a node short of either: nodes full on one dimension cost nothing
//!   however many there are (the first version, ordered by memory only, walked
//!   thousands of CPU-full nodes per placement on a half-full cluster: 13,000
//!   placements/s at 10,000 nodes).
//! - Nodes in use come before empty ones for bin-pack, so a node is opened only
//!   when too few in use fit.
//! - A free dynamic port is a word scan of a per-node bitmap built when the plan
//!   first touches the node; the dynamic-port filter is a count comparison.
//! - A job that fits nowhere is explained once per call, and so is every job with
//!   the same feasibility key (same resources, constraints and ports): 1,000
//!   pending jobs from two templates on 10,000 nodes cost 13 ms a pass, not
//!   850 ms.
//!
//! Measured by the `scheduler` bench (heterogeneous nodes, 20% tagged, fixed and
//! dynamic ports, a cluster half full, a 5,000-request pass): a median of 331,000
//! placements/s at 10,000 nodes on one core of this 2-core machine when quiet
//! (115,000 to 180,000 in earlier runs with builds on the other core); 13,000
//! before the CPU-and-memory index. What
//! remains per pass is reading every node once into the [`PlanView`] (~1.5 ms at
//! 10,000 nodes) and, per placement, filtering and scoring 16 nodes and allocating
//! the placement's strings.
//!
//! # Tagged nodes
//!
//! Tags mark nodes that some jobs need (SSDs, GPUs), so work that does not ask for
//! a tag is kept off tagged nodes when a plain node will do, in two places:
//!
//! - the index walks empty plain nodes before empty tagged ones, so such work
//!   opens a plain node first (and an ask only tagged nodes can meet skips the
//!   empty plain ones);
//! - the `reserve-tagged` scorer prefers, among nodes about as full, one without
//!   tags the job does not ask for. It is also what gives exhaustive scoring the
//!   walk's preference, so that comparing the two measures what bounding costs
//!   rather than two different policies.
//!
//! Before this, bin-pack opened the tightest empty node whatever its tags: once
//! the small plain nodes were in use it opened small SSD and GPU nodes before
//! bigger plain ones (8,016 nodes for the mix without selectors at 10,000 nodes,
//! now 7,122); and exhaustive scoring, which ranks by share of each node, filled
//! tagged nodes with untagged work and then could not place some GPU jobs (0.64%
//! fewer tasks on the whole mix at 70% of the CPU), or opened bigger SSD nodes for
//! the databases (2% fewer nodes than bounded on the mix at 15%, of the same
//! capacity).
//!
//! # Quality against exhaustive scoring
//!
//! Same input, placed in passes of 5,000 and committed through the state machine,
//! at 10,000 nodes (the `scheduler` bench prints these and 1,000 nodes too):
//!
//! - the whole mix at 15% of the CPU (everything fits for both; like for like):
//!   the same 4,021 nodes, the same capacity;
//! - the whole mix at 70% (some GPU jobs cannot all fit): both place 118,316
//!   tasks; bounded uses 0.30% more nodes but 1.25% less capacity, fuller (CPU
//!   +1.15 points, memory +2.4), with 3.5% more room for the largest tasks;
//! - the mix without selector jobs at 50%: 8.8% fewer nodes and 2.4% less
//!   capacity than exhaustive, which still opens small tagged nodes (for a cache or
//!   a load balancer, the share of an empty 4-core node it fills outweighs the
//!   reserve-tagged penalty) where the walk opens only plain ones; 2.2% less room
//!   for the largest tasks.
//!
//! At 1,000 nodes: −0.26%, −0.89% and −10.4% nodes, the same tasks placed.
//! `tests::bounded_packing_is_within_two_percent_of_exhaustive` holds the line at
//! 400 nodes in the test suite.
//!
//! Correctness does not depend on the bound: until one feasible node is found the
//! walk goes on over every node that has the CPU and memory, so a request is never
//! reported unschedulable while some node fits it (`props` checks this against
//! exhaustive search).

pub mod candidate;
pub mod explain;
pub mod filter;
pub mod index;
pub mod ports;
pub mod score;
pub mod view;

use std::collections::HashMap;

use crate::command::{Placement, SlotRef, Unplaced};
use crate::model::AllocId;
use crate::spec::Strategy;
use crate::state::ClusterState;

pub use candidate::{Ask, Candidate};
pub use explain::{Explanation, NodeVerdict, Reason};
pub use filter::Filter;
pub use index::FreeIndex;
pub use score::Scorer;
pub use view::PlanView;

/// What one scheduling pass decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Schedule {
    /// Requests placed, in request order.
    pub placements: Vec<Placement>,
    /// Requests that fit nowhere, with why.
    pub unplaced: Vec<Unplaced>,
}

/// Pure placement.
///
/// # Correctness
///
/// - No node is given more than its free capacity, counting committed allocations,
///   earlier placements of the same call, and minus the `stopping` allocations.
/// - No host port is given twice on one node.
/// - The same state, requests and seed give the same schedule.
pub trait Scheduler: Send + Sync + std::fmt::Debug {
    /// Places every request it can; the rest come back unplaced with an explanation.
    fn schedule(
        &self,
        state: &ClusterState,
        requests: &[SlotRef],
        stopping: &[AllocId],
        seed: u64,
    ) -> Schedule;
}

/// How the filter-and-score scheduler searches.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SchedulerConfig {
    /// Strategy for jobs that do not choose one.
    pub default_strategy: Strategy,
    /// Score at most this many feasible nodes per placement; 0 scores all.
    pub candidates: usize,
    /// With this many schedulable nodes or fewer, every feasible node is scored.
    pub exhaustive_below: usize,
    /// Once at least one feasible node is found, stop after looking at this many
    /// nodes even if fewer than `candidates` were feasible; 0 for no limit. Until
    /// one is found the walk goes on, so a request is never unplaced while a node
    /// fits it.
    pub scan_limit: usize,
}

impl Default for SchedulerConfig {
    /// Bin-pack by default (Nomad's default, and the one that leaves room for large
    /// tasks). 16 candidates: the free-capacity index yields them in the strategy's
    /// order, so more buy little quality (see the `scheduler` bench) and cost time
    /// linearly. Exhaustive up to 128 nodes, where it is cheap. A scan limit of 512
    /// bounds the walk for jobs whose selectors match few nodes.
    fn default() -> Self {
        SchedulerConfig {
            default_strategy: Strategy::Binpack,
            candidates: 16,
            exhaustive_below: 128,
            scan_limit: 512,
        }
    }
}

impl SchedulerConfig {
    /// A configuration that scores every feasible node, for comparison.
    pub fn exhaustive() -> Self {
        SchedulerConfig {
            candidates: 0,
            scan_limit: 0,
            ..Self::default()
        }
    }
}

/// Filters then scorers, over a free-capacity index.
#[derive(Debug)]
pub struct FilterScoreScheduler {
    config: SchedulerConfig,
    filters: Vec<Box<dyn Filter>>,
    scorers: Vec<(Box<dyn Scorer>, f64)>,
}

impl Default for FilterScoreScheduler {
    fn default() -> Self {
        Self::new(SchedulerConfig::default())
    }
}

impl FilterScoreScheduler {
    /// The default pipeline with a configuration.
    pub fn new(config: SchedulerConfig) -> Self {
        FilterScoreScheduler {
            config,
            filters: filter::default_filters(),
            scorers: score::default_scorers(),
        }
    }

    /// A custom pipeline.
    pub fn with_pipeline(
        config: SchedulerConfig,
        filters: Vec<Box<dyn Filter>>,
        scorers: Vec<(Box<dyn Scorer>, f64)>,
    ) -> Self {
        FilterScoreScheduler {
            config,
            filters,
            scorers,
        }
    }

    /// The first filter that rejects, if any.
    fn reject(&self, c: &Candidate<'_>, ask: &Ask<'_>) -> Option<Reason> {
        self.filters.iter().find_map(|f| f.check(c, ask).err())
    }

    fn score(&self, c: &Candidate<'_>, ask: &Ask<'_>) -> f64 {
        self.scorers.iter().map(|(s, w)| w * s.score(c, ask)).sum()
    }

    /// Explains why an ask fits on no node of the view: every filter's
    /// rejection of every node, counted per reason (so `0/4 nodes: 4
    /// insufficient memory, 2 selector disk=ssd` says all that stands in the way).
    pub fn explain(&self, view: &PlanView<'_>, ask: &Ask<'_>) -> Explanation {
        let mut tally = explain::Tally::default();
        for c in view.nodes.iter() {
            tally.node(self.filters.iter().filter_map(|f| f.check(c, ask).err()));
        }
        tally.finish(ask)
    }

    /// What the pipeline thinks of one job on one node of committed state: the
    /// first filter that rejects it, or each scorer's score and weight. `None` when
    /// the job or the node is unknown.
    ///
    /// ```no_run
    /// # let state = orion_core::ClusterState::default();
    /// use orion_core::FilterScoreScheduler;
    ///
    /// let verdict = FilterScoreScheduler::default().explain_placement(&state, "web", "n1");
    /// if let Some(v) = verdict {
    ///     // "n1: insufficient memory (need 1024 MB, free 512)", or
    ///     // "n1: score 0.362 = 1 × free-resources 0.462 + 0.5 × job-anti-affinity -0.100
    ///     //  + 0.1 × reserve-tagged -0.500"
    ///     println!("{v}");
    /// }
    /// ```
    pub fn explain_placement(
        &self,
        state: &ClusterState,
        job: &str,
        node: &str,
    ) -> Option<NodeVerdict> {
        let spec = &state.jobs.get(job)?.spec;
        let view = PlanView::new(state, &[]);
        let c = &view.nodes[view.position(node)?];
        let ask = Ask::new(spec, self.config.default_strategy)
            .pin_volumes(&state.volumes)
            .check_secrets(&state.secrets);
        let rejection = self.reject(c, &ask).map(|r| match r.detail() {
            Some(d) => format!("{} ({d})", r.label(&ask)),
            None => r.label(&ask),
        });
        let scores = self
            .scorers
            .iter()
            .map(|(s, w)| (s.name(), s.score(c, &ask), *w))
            .collect();
        Some(NodeVerdict {
            node: node.to_string(),
            rejection,
            scores,
        })
    }

    /// The best node for the ask, if any fits: the best score among the first
    /// `candidates` feasible nodes of the index walk (all of them when exhaustive).
    fn pick(&self, view: &PlanView<'_>, ask: &Ask<'_>, seed: u64) -> Option<usize> {
        let cfg = &self.config;
        let exhaustive = cfg.candidates == 0 || view.schedulable() <= cfg.exhaustive_below;
        let mut best: Option<(f64, u64, usize)> = None;
        let (mut found, mut scanned) = (0, 0);
        for i in view.walk(ask) {
            scanned += 1;
            let c = &view.nodes[i];
            if self.reject(c, ask).is_none() {
                let key = (self.score(c, ask), tiebreak(seed, i), i);
                let better = match best {
                    None => true,
                    Some((s, t, _)) => {
                        key.0 > s + 1e-12 || ((key.0 - s).abs() <= 1e-12 && key.1 > t)
                    }
                };
                if better {
                    best = Some(key);
                }
                found += 1;
                if !exhaustive && found >= cfg.candidates {
                    break;
                }
            }
            if !exhaustive && found > 0 && cfg.scan_limit > 0 && scanned >= cfg.scan_limit {
                break;
            }
        }
        best.map(|(_, _, i)| i)
    }

    /// Places a request pinned to one node (a system job's) there, or says why
    /// that node cannot take it.
    fn place_pinned<'a>(
        &self,
        view: &mut PlanView<'a>,
        ask: &Ask<'a>,
        slot: &SlotRef,
        node: &str,
    ) -> Result<Placement, String> {
        let unplaced = |reason: String| reason;
        let i = view
            .position(node)
            .ok_or_else(|| unplaced(format!("node {node} is gone")))?;
        if let Some(r) = self.reject(&view.nodes[i], ask) {
            let why = match r.detail() {
                Some(d) => format!("{} ({d})", r.label(ask)),
                None => r.label(ask),
            };
            return Err(unplaced(format!("node {node}: {why}")));
        }
        let ports = view.assign_ports(i, ask).ok_or_else(|| {
            unplaced(format!(
                "node {node}: not enough free ports in range for {} ports",
                ask.spec.task.ports.len()
            ))
        })?;
        let taken: Vec<_> = ports.iter().map(|b| (b.host_port, b.protocol)).collect();
        view.take(i, &ask.spec.name, &ask.need, &taken);
        Ok(Placement {
            slot: slot.clone(),
            node: node.to_string(),
            ports,
        })
    }

    /// Places one request on the view, or says why it cannot be placed; the flag
    /// is true when no node fits the job at all (so none will for this pass).
    fn place_one<'a>(
        &self,
        view: &mut PlanView<'a>,
        ask: &Ask<'a>,
        slot: &SlotRef,
        seed: u64,
    ) -> Result<Placement, (String, bool)> {
        let Some(i) = self.pick(view, ask, seed) else {
            return Err((self.explain(view, ask).to_string(), true));
        };
        let Some(ports) = view.assign_ports(i, ask) else {
            return Err((
                format!(
                    "node {}: not enough free ports in range for {} ports",
                    view.nodes[i].node.id(),
                    ask.spec.task.ports.len()
                ),
                false,
            ));
        };
        let taken: Vec<_> = ports.iter().map(|b| (b.host_port, b.protocol)).collect();
        view.take(i, &ask.spec.name, &ask.need, &taken);
        Ok(Placement {
            slot: slot.clone(),
            node: view.nodes[i].node.id().clone(),
            ports,
        })
    }
}

impl Scheduler for FilterScoreScheduler {
    fn schedule(
        &self,
        state: &ClusterState,
        requests: &[SlotRef],
        stopping: &[AllocId],
        seed: u64,
    ) -> Schedule {
        let mut view = PlanView::new(state, stopping);
        let mut asks: Vec<JobAsk<'_>> = Vec::new();
        let mut by_name: HashMap<&str, usize> = HashMap::new();
        // Requests come grouped by job: look the job up once per run of them.
        let mut last: Option<(&str, usize)> = None;
        // Explanations of asks that fit nowhere, by what decides feasibility, so a
        // crowd of pending jobs made from one template costs one scan, not one each.
        let mut nowhere: HashMap<String, String> = HashMap::new();
        let mut out = Schedule::default();
        for (n, slot) in requests.iter().enumerate() {
            let k = match last {
                Some((name, k)) if name == slot.job => k,
                _ => {
                    let Some(job) = state.jobs.get(&slot.job) else {
                        continue;
                    };
                    let name = job.spec.name.as_str();
                    let k = *by_name.entry(name).or_insert_with(|| {
                        let ask = Ask::new(&job.spec, self.config.default_strategy)
                            .pin_volumes(&state.volumes)
                            .check_secrets(&state.secrets)
                            .note_failures(state);
                        let shape = ask.feasibility_key();
                        let known = nowhere.get(&shape).cloned();
                        asks.push(JobAsk {
                            ask,
                            shape,
                            nowhere: known,
                        });
                        asks.len() - 1
                    });
                    last = Some((name, k));
                    k
                }
            };
            let job = &mut asks[k];
            if let Some(node) = &slot.pin {
                match self.place_pinned(&mut view, &job.ask, slot, node) {
                    Ok(p) => out.placements.push(p),
                    Err(reason) => out.unplaced.push(Unplaced {
                        slot: slot.clone(),
                        reason,
                    }),
                }
                continue;
            }
            if let Some(reason) = &job.nowhere {
                out.unplaced.push(Unplaced {
                    slot: slot.clone(),
                    reason: reason.clone(),
                });
                continue;
            }
            let seed = seed ^ (n as u64).wrapping_mul(0x9e37_79b9);
            match self.place_one(&mut view, &job.ask, slot, seed) {
                Ok(p) => out.placements.push(p),
                Err((reason, fits_nowhere)) => {
                    // Within one call free resources only shrink, so a job that fit
                    // nowhere once fits nowhere for the rest of it: explain it once.
                    if fits_nowhere {
                        job.nowhere = Some(reason.clone());
                        nowhere.insert(job.shape.clone(), reason.clone());
                    }
                    out.unplaced.push(Unplaced {
                        slot: slot.clone(),
                        reason,
                    });
                }
            }
        }
        out
    }
}

/// A job's ask within one call, and why it fits nowhere once that is known.
struct JobAsk<'a> {
    ask: Ask<'a>,
    /// [`Ask::feasibility_key`].
    shape: String,
    nowhere: Option<String>,
}

/// A deterministic per-(seed, node) number that breaks ties between equal scores.
fn tiebreak(seed: u64, i: usize) -> u64 {
    // splitmix64
    let mut z = seed.wrapping_add((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod props;
