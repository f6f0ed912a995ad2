//! What a node reports about itself: [`LogStatus`], and [`Leadership`] mirrored from
//! openraft's metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

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
        quorum_lost: false,
    }
}

/// When this node, leading, last heard from a majority of the voters; shared by the
/// tracker that keeps it and the calls that refuse writes without a quorum.
#[derive(Debug, Default)]
pub(crate) struct QuorumAck(parking_lot::Mutex<Option<Instant>>);

impl QuorumAck {
    /// How long this node, leading a group of more than itself, has heard from no
    /// majority; `None` when it does not lead, leads alone, or has not been told.
    pub(crate) fn silence(&self) -> Option<Duration> {
        self.0.lock().map(|t| t.elapsed())
    }
}

/// Where this node's log last stood with entries waiting to be applied, and
/// since when: turns two looks at the log into how long the wait has lasted
/// ([`orion_core::StoreStatus::commit_stalled_ms`]).
#[derive(Debug, Default)]
pub(crate) struct CommitStall(parking_lot::Mutex<Option<(u64, Instant)>>);

impl CommitStall {
    /// Notes the log's last and applied indexes; answers how long entries have
    /// waited while the applied index stood at `applied` (zero when none waits,
    /// or the index has just moved).
    pub(crate) fn observe(&self, last: u64, applied: u64) -> Duration {
        let mut at = self.0.lock();
        if last <= applied {
            *at = None;
            return Duration::ZERO;
        }
        match *at {
            Some((a, since)) if a == applied => since.elapsed(),
            _ => {
                *at = Some((applied, Instant::now()));
                Duration::ZERO
            }
        }
    }
}

/// Mirrors openraft's metrics into the Leadership watch until the store stops, and
/// keeps [`QuorumAck`]: openraft reports how long ago a quorum acknowledged the
/// leader each time it sends metrics, so the tracker turns that into an instant
/// when metrics arrive and, between arrivals, wakes every `tick` to see whether the
/// silence has outlasted `lost_after` (a cut-off leader may send few metrics).
pub(crate) async fn track_leadership(
    mut metrics: watch::Receiver<RaftMetrics<RaftNodeId, RaftNode>>,
    out: watch::Sender<Leadership>,
    ack: Arc<QuorumAck>,
    stall: Arc<CommitStall>,
    mut stop: watch::Receiver<bool>,
    me: RaftNodeId,
    (tick, lost_after): (Duration, Duration),
) {
    // The term this node last led in, to tell a fresh election from a later report.
    let mut led: Option<u64> = None;
    'metrics: loop {
        let base = {
            let m = metrics.borrow_and_update();
            let base = leadership_of(&m, me);
            let voters = m.membership_config.membership().voter_ids().count();
            let mut at = ack.0.lock();
            *at = if base.is_self && voters > 1 {
                match m.millis_since_quorum_ack {
                    Some(ms) => Instant::now().checked_sub(Duration::from_millis(ms)),
                    // Elected, and no follower has answered yet: count from the
                    // election, so a leader cut off at once is noticed too.
                    None if led == Some(base.term) => *at,
                    None => Some(Instant::now()),
                }
            } else {
                None
            };
            led = base.is_self.then_some(base.term);
            base
        };
        loop {
            {
                let m = metrics.borrow();
                let s = log_status_of(&m);
                stall.observe(s.last_log_index, s.last_applied);
            }
            let lost = ack.silence().is_some_and(|s| s >= lost_after);
            let now = Leadership {
                quorum_lost: lost,
                ..base.clone()
            };
            out.send_if_modified(|cur| {
                let changed = *cur != now;
                *cur = now;
                changed
            });
            tokio::select! {
                // Fresh metrics first: a tick that is due at the same time must not
                // judge the silence on the previous report.
                biased;
                r = metrics.changed() => if r.is_err() { break 'metrics } else { continue 'metrics },
                _ = stop.wait_for(|s| *s) => break 'metrics,
                _ = tokio::time::sleep(tick) => {}
            }
        }
    }
    *ack.0.lock() = None;
    out.send_replace(Leadership::default());
}

pub(crate) fn log_status_of(m: &RaftMetrics<RaftNodeId, RaftNode>) -> LogStatus {
    LogStatus {
        last_log_index: m.last_log_index.unwrap_or(0),
        last_applied: m.last_applied.map_or(0, |l| l.index),
        snapshot: m.snapshot.map_or(0, |l| l.index),
        purged: m.purged.map_or(0, |l| l.index),
    }
}
