//! Distinct hosts: at most one replica of a job per node, when the job asks.

use super::Filter;
use crate::scheduler::candidate::{Ask, Candidate};
use crate::scheduler::explain::Reason;

/// Rejects nodes that already run (or are planned to run) a replica of a job that
/// asked for distinct hosts.
#[derive(Debug, Default)]
pub struct DistinctHostsFilter;

impl Filter for DistinctHostsFilter {
    fn name(&self) -> &'static str {
        "distinct-hosts"
    }

    fn check(&self, c: &Candidate<'_>, ask: &Ask<'_>) -> Result<(), Reason> {
        if ask.spec.distinct_hosts && c.job_count(&ask.spec.name) > 0 {
            Err(Reason::DistinctHosts)
        } else {
            Ok(())
        }
    }
}
