//! A simulated cluster and the workloads it runs: thousands of virtual nodes driven
//! by the real reconciler, scheduler and state machine, for scale benches and
//! failure-behaviour tests.
//!
//! - [`workload`]: deterministic heterogeneous nodes and job mixes.
//! - [`packing`]: packing quality of a state (nodes used, stranded capacity).

pub mod packing;
pub mod workload;
