//! A simulated cluster and the workloads it runs: thousands of virtual nodes driven
//! by the real reconciler, scheduler and state machine, for scale benches and
//! failure-behaviour tests.
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
