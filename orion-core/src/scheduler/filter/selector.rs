//! Node selectors and constraints against node tags.

use super::Filter;
use crate::scheduler::candidate::{Ask, Candidate};
use crate::scheduler::explain::Reason;

/// Rejects nodes whose tags break one of the job's selectors or constraints
/// (equals, not-equals, exists, not-exists, in-set, not-in-set).
#[derive(Debug, Default)]
pub struct ConstraintFilter;

impl Filter for ConstraintFilter {
    fn name(&self) -> &'static str {
        "constraints"
    }

    fn check(&self, c: &Candidate<'_>, ask: &Ask<'_>) -> Result<(), Reason> {
        match ask
            .constraints
            .iter()
            .position(|k| !k.matches(&c.node.info.tags))
        {
            Some(i) => Err(Reason::Constraint(i)),
            None => Ok(()),
        }
    }
}
