//! Mounts: a job with named volumes runs only on their node; host paths only
//! where the node allows them.

use super::Filter;
use crate::scheduler::candidate::{Ask, Candidate};
use crate::scheduler::explain::Reason;

/// Rejects nodes other than the one that holds the job's named volumes (every
/// node when they are missing, deleting or on different nodes), and nodes that
/// do not allow a host path the job mounts.
#[derive(Debug, Default)]
pub struct VolumeFilter;

impl Filter for VolumeFilter {
    fn name(&self) -> &'static str {
        "volumes"
    }

    fn check(&self, c: &Candidate<'_>, ask: &Ask<'_>) -> Result<(), Reason> {
        match &ask.volume_node {
            Some(Ok(node)) if node == c.node.id() => {}
            Some(_) => return Err(Reason::VolumeNode),
            None => {}
        }
        match ask
            .host_paths
            .iter()
            .position(|p| !c.node.info.allows_host_path(p))
        {
            Some(i) => Err(Reason::HostPath(i as u8)),
            None => Ok(()),
        }
    }
}
