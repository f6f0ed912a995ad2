//! Scorers: rank the nodes a task fits on; the scheduler takes the highest
//! weighted sum.

mod anti_affinity;
mod avoid_failed;
mod free;
mod reserve;

pub use anti_affinity::JobAntiAffinity;
pub use avoid_failed::AvoidFailed;
pub use free::FreeResources;
pub use reserve::ReserveTagged;

use super::candidate::{Ask, Candidate};

/// One ranking criterion. Scores are in `[-1, 1]`; higher is better.
pub trait Scorer: Send + Sync + std::fmt::Debug {
    /// A short name (`free-resources`).
    fn name(&self) -> &'static str;

    /// How good the node is for the ask, after the ask's resources are taken.
    fn score(&self, node: &Candidate<'_>, ask: &Ask<'_>) -> f64;
}

/// The default scorers and their weights.
///
/// - Free resources decide (weight 1): bin-pack or spread per the job.
/// - Job anti-affinity (weight 0.5) breaks up piles of one job's replicas without
///   overriding bin-packing when the fuller node is much better.
/// - Reserve tagged (weight 0.1): between nodes about as full, a plain one over
///   one with tags the job does not ask for (an SSD node costs 0.05, a GPU-and-SSD
///   node 0.067); a tagged node five points fuller still wins, so untagged work
///   still fills tagged nodes that are in use.
/// - Avoid failed (weight 1): a node where this job failed for good scores −1,
///   as much as the whole range of free resources, so a replacement goes
///   elsewhere when anywhere else fits, and back there only when nothing else
///   does.
pub fn default_scorers() -> Vec<(Box<dyn Scorer>, f64)> {
    vec![
        (Box::new(AvoidFailed), 1.0),
        (Box::new(FreeResources::default()), 1.0),
        (Box::new(JobAntiAffinity), 0.5),
        (Box::new(ReserveTagged), 0.1),
    ]
}
