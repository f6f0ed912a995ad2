//! Replacements away from where the job failed.

use super::Scorer;
use crate::scheduler::candidate::{Ask, Candidate};

/// −1 on a node where an allocation of this job failed for good (its restarts
/// spent, or it could not be started there), 0 elsewhere: Nomad's reschedule
/// penalty. The explanation shows it by name (`avoid-failed -1.000`).
#[derive(Debug, Default, Clone, Copy)]
pub struct AvoidFailed;

impl Scorer for AvoidFailed {
    fn name(&self) -> &'static str {
        "avoid-failed"
    }

    fn score(&self, c: &Candidate<'_>, ask: &Ask<'_>) -> f64 {
        if ask.failed_on.iter().any(|n| n == c.node.id()) {
            -1.0
        } else {
            0.0
        }
    }
}
