//! A simulated cluster and the workloads it runs: thousands of virtual nodes driven
//! by the real reconciler, scheduler and state machine, for scale benches and
//! failure-behaviour tests.
//!
//! The `sim` bench runs 1,000,000 tasks on 5,000 virtual nodes to running in
//! about 25 s on one core of the 2-core development machine (100,000 in under
//! 3 s), in passes of the control loop's 5,000 placements; a pass over a settled
//! cluster reads no allocation (see [`crate::reconcile::intent`]). The pass size
//! hardly matters once passes cost only their own work: 20,000 a pass took 29.5 s
//! for the million, 1,000 a pass 2.6 s for the 100,000.
//!
//! - [`workload`]: deterministic heterogeneous nodes and job mixes.
//! - [`packing`]: packing quality of a state (nodes used, stranded capacity).
//! - [`Sim`]: the simulated cluster; [`audit`] checks a state for over-commit.

mod cluster;
pub mod packing;
pub mod workload;

pub use cluster::{audit, Sim, SimConfig, SimStats};

#[cfg(test)]
mod tests;
