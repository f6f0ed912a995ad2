//! What a node reports about itself: [`LogStatus`], and [`Leadership`] mirrored from
//! openraft's metrics.

use openraft::{RaftMetrics, ServerState};
use orion_core::Leadership;
use tokio::sync::watch;

use crate::types::{RaftNode, RaftNodeId};

/// Where this node's log stands (for tests, benches and status pages).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStatus {
    /// Index of the last entry in the log (0: none).
    pub last_log_index: u64,
    /// Index of the last entry applied to the replica (0: none).
    pub last_applied: u64,
    /// Index the latest snapshot covers (0: none).
    pub snapshot: u64,
    /// Index up to which the log was purged (0: none).
    pub purged: u64,
}

pub(crate) fn leadership_of(m: &RaftMetrics<RaftNodeId, RaftNode>, me: RaftNodeId) -> Leadership {
    let node = m
        .current_leader
        .and_then(|l| m.membership_config.membership().get_node(&l));
    Leadership {
        leader: node.map(|n| n.id.clone()),
        leader_http: node.map(|n| n.http_addr.clone()),
        is_self: m.current_leader == Some(me) && m.state == ServerState::Leader,
        term: m.current_term,
    }
}

pub(crate) fn log_status_of(m: &RaftMetrics<RaftNodeId, RaftNode>) -> LogStatus {
    LogStatus {
        last_log_index: m.last_log_index.unwrap_or(0),
        last_applied: m.last_applied.map_or(0, |l| l.index),
        snapshot: m.snapshot.map_or(0, |l| l.index),
        purged: m.purged.map_or(0, |l| l.index),
    }
}

/// Mirrors openraft's metrics into the Leadership watch until the store stops.
pub(crate) async fn track_leadership(
    mut metrics: watch::Receiver<RaftMetrics<RaftNodeId, RaftNode>>,
    out: watch::Sender<Leadership>,
    mut stop: watch::Receiver<bool>,
    me: RaftNodeId,
) {
    loop {
        let now = leadership_of(&metrics.borrow_and_update(), me);
        out.send_if_modified(|cur| {
            let changed = *cur != now;
            *cur = now;
            changed
        });
        tokio::select! {
            r = metrics.changed() => if r.is_err() { break },
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    out.send_replace(Leadership::default());
}
