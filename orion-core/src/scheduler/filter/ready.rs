//! Node ready and not draining.

use super::Filter;
use crate::scheduler::candidate::{Ask, Candidate};
use crate::scheduler::explain::Reason;

/// Rejects nodes that are down, unhealthy or draining (as read into
/// [`Candidate::readiness`]).
#[derive(Debug, Default)]
pub struct ReadyFilter;

impl Filter for ReadyFilter {
    fn name(&self) -> &'static str {
        "ready"
    }

    fn check(&self, c: &Candidate<'_>, _ask: &Ask<'_>) -> Result<(), Reason> {
        c.readiness
    }
}
