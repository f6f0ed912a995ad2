//! The `Scheduler` seam and Orion's filter-and-score scheduler.
//!
//! Placement is pure: `(committed state, requests) → placements + explanations`.
//! No I/O, no clock; randomness only from the seed the caller passes.
//!
//! ```text
//!  requests ──► for each request (plan so far accounted for):
//!                 candidates: schedulable nodes with enough free memory, from an
//!                 index ordered by free memory (fullest first for bin-pack,
//!                 emptiest first for spread)
//!                   │
//!                   ▼
//!                 filters, cheapest first ──► reject ─┐
//!                 (ready · resources · constraints ·   │ none feasible at all?
//!                  static ports · distinct · dyn ports)│ explain: first rejection
//!                   │ feasible                         │ of every node, counted
//!                   ▼                                  ▼
//!                 scorers × weights, best of the first K feasible (all of them on
//!                 small clusters); ties broken by a hash of (seed, node)
//!                   │
//!                   ▼
//!                 host ports (fixed, or free in the node's range) ──► placement;
//!                 the node's free resources and the index are updated in place
//! ```
//!
//! Why bounded: scoring every node for every placement costs `O(nodes)` each, far
//! from 100,000 placements/s at 10,000 nodes. The free-memory index puts the nodes a
//! strategy prefers first, so the first `K` feasible are close to the best overall;
//! the `scheduler` bench measures the cost in packing quality against exhaustive
//! scoring. When the first `K` are not found, the scan continues over every node,
//! so a request is never reported unschedulable while some node fits it.

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

    /// Explains why an ask fits on no node of the view: every node's first
    /// rejection, counted per reason.
    pub fn explain(&self, view: &PlanView<'_>, ask: &Ask<'_>) -> Explanation {
        let reasons: Vec<Option<Reason>> = view.nodes.iter().map(|c| self.reject(c, ask)).collect();
        Explanation::collect(ask, reasons.iter().map(Option::as_ref))
    }

    /// What the pipeline thinks of one job on one node of committed state: the
    /// first filter that rejects it, or each scorer's score and weight. `None` when
    /// the job or the node is unknown.
    pub fn explain_placement(
        &self,
        state: &ClusterState,
        job: &str,
        node: &str,
    ) -> Option<NodeVerdict> {
        let spec = &state.jobs.get(job)?.spec;
        let view = PlanView::new(state, &[]);
        let c = &view.nodes[view.position(node)?];
        let ask = Ask::new(spec, self.config.default_strategy);
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
        for i in view.walk(&ask.need, ask.strategy) {
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

    /// Places one request on the view, or says why it cannot be placed; the flag
    /// is true when no node fits the job at all (so none will for this pass).
    fn place_one<'a>(
        &self,
        view: &mut PlanView<'a>,
        ask: &Ask<'a>,
        slot: &SlotRef,
        seed: u64,
    ) -> Result<Placement, (Unplaced, bool)> {
        let Some(i) = self.pick(view, ask, seed) else {
            let reason = self.explain(view, ask).to_string();
            let slot = slot.clone();
            return Err((Unplaced { slot, reason }, true));
        };
        let Some(ports) = view.assign_ports(i, ask) else {
            return Err((
                Unplaced {
                    slot: slot.clone(),
                    reason: format!(
                        "node {}: not enough free ports in range for {} ports",
                        view.nodes[i].node.id(),
                        ask.spec.task.ports.len()
                    ),
                },
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
                        asks.push(JobAsk {
                            ask: Ask::new(&job.spec, self.config.default_strategy),
                            nowhere: None,
                        });
                        asks.len() - 1
                    });
                    last = Some((name, k));
                    k
                }
            };
            let job = &mut asks[k];
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
                Err((u, nowhere)) => {
                    // Within one call free resources only shrink, so a job that fit
                    // nowhere once fits nowhere for the rest of it: explain it once.
                    if nowhere {
                        job.nowhere = Some(u.reason.clone());
                    }
                    out.unplaced.push(u);
                }
            }
        }
        out
    }
}

/// A job's ask within one call, and why it fits nowhere once that is known.
struct JobAsk<'a> {
    ask: Ask<'a>,
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
