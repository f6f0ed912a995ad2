//! Feasibility filters: each decides whether a task may go on a node at all.
//!
//! Filters run in [`default_filters`] order, cheapest and most selective first; a
//! placement stops at the first that rejects a node, an explanation asks them all.

mod distinct;
mod ports;
mod ready;
mod resources;
mod runtime;
mod secrets;
mod selector;
mod volumes;

pub use distinct::DistinctHostsFilter;
pub use ports::{DynamicPortFilter, StaticPortFilter};
pub use ready::ReadyFilter;
pub use resources::ResourcesFilter;
pub use runtime::RuntimeFilter;
pub use secrets::SecretFilter;
pub use selector::ConstraintFilter;
pub use volumes::VolumeFilter;

use super::candidate::{Ask, Candidate};
use super::explain::Reason;

/// One feasibility check.
pub trait Filter: Send + Sync + std::fmt::Debug {
    /// A short name (`resources`).
    fn name(&self) -> &'static str;

    /// Ok when the ask may go on the node; otherwise why not. Must not allocate on
    /// the common path: it runs for every node scanned.
    fn check(&self, node: &Candidate<'_>, ask: &Ask<'_>) -> Result<(), Reason>;
}

/// The default pipeline, in the order it runs.
///
/// - ready first: a node down, unhealthy or draining is out whatever it has free;
/// - runtime: a string compare, an image off process nodes and a bare command
///   off Docker nodes;
/// - resources next: the commonest reason a node is full, and three comparisons;
/// - constraints: string compares on tags, only for jobs that have them;
/// - static ports: set lookups, only for jobs with fixed host ports;
/// - distinct hosts: a map lookup, only for jobs that ask;
/// - volumes: one comparison, only for jobs that mount named volumes or host
///   paths;
/// - secrets: one comparison, only for jobs that use secrets (a missing
///   secret rejects every node, naming it);
/// - dynamic ports last: a scan of the node's range, rarely exhausted.
pub fn default_filters() -> Vec<Box<dyn Filter>> {
    vec![
        Box::new(ReadyFilter),
        Box::new(RuntimeFilter),
        Box::new(ResourcesFilter),
        Box::new(ConstraintFilter),
        Box::new(StaticPortFilter),
        Box::new(DistinctHostsFilter),
        Box::new(VolumeFilter),
        Box::new(SecretFilter),
        Box::new(DynamicPortFilter),
    ]
}
