//! Free CPU, memory and disk.

use super::Filter;
use crate::scheduler::candidate::{Ask, Candidate};
use crate::scheduler::explain::{Reason, ResourceKind};

/// Rejects nodes without enough free CPU, memory or disk for the task.
#[derive(Debug, Default)]
pub struct ResourcesFilter;

impl Filter for ResourcesFilter {
    fn name(&self) -> &'static str {
        "resources"
    }

    fn check(&self, c: &Candidate<'_>, ask: &Ask<'_>) -> Result<(), Reason> {
        let (need, free) = (&ask.need, &c.free);
        if need.memory_mb > free.memory_mb {
            return Err(Reason::Insufficient {
                kind: ResourceKind::Memory,
                need: need.memory_mb as f64,
                free: free.memory_mb as f64,
            });
        }
        if need.cpu > free.cpu + 1e-9 {
            return Err(Reason::Insufficient {
                kind: ResourceKind::Cpu,
                need: need.cpu,
                free: free.cpu,
            });
        }
        if need.disk_mb > free.disk_mb {
            return Err(Reason::Insufficient {
                kind: ResourceKind::Disk,
                need: need.disk_mb as f64,
                free: free.disk_mb as f64,
            });
        }
        Ok(())
    }
}
