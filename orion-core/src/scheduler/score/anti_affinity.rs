//! Job anti-affinity: fewer replicas of one job on one node.

use super::Scorer;
use crate::scheduler::candidate::{Ask, Candidate};

/// Penalises a node by how many replicas of the same job it already holds:
/// `−min(count, 10) / 10`.
#[derive(Debug, Default, Clone, Copy)]
pub struct JobAntiAffinity;

impl Scorer for JobAntiAffinity {
    fn name(&self) -> &'static str {
        "job-anti-affinity"
    }

    fn score(&self, c: &Candidate<'_>, ask: &Ask<'_>) -> f64 {
        if ask.spec.replicas <= 1 {
            return 0.0;
        }
        -(c.job_count(&ask.spec.name).min(10) as f64) / 10.0
    }
}
