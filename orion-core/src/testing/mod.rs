//! Fakes of the seams, for testing logic without I/O (feature `testing`).
//!
//! - [`MemStore`]: a single-replica store that commits by applying at once.
//! - [`FakeRuntime`]: containers as entries in a map; records calls, injects failures.
//! - [`StaticMembership`]: a scripted member list and event stream.
//! - [`fuzz`]: the bodies of the fuzz targets, and their corpus.

pub mod fixtures;
pub mod fuzz;
mod membership;
mod runtime;
pub mod runtime_suite;
pub mod sim;
mod store;
pub mod store_suite;

pub use membership::StaticMembership;
pub use runtime::{FakeRuntime, RuntimeCall};
pub use store::MemStore;

/// Loop settings for tests: the control loop and the agent tick every 50 ms
/// instead of every second, so a test sees a change within a few ticks.
pub fn fast_loops() -> crate::ClusterConfig {
    let mut c = crate::ClusterConfig::default();
    c.control.reconcile_interval = std::time::Duration::from_millis(50);
    c.agent.tick = std::time::Duration::from_millis(50);
    c
}
