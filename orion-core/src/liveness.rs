//! Failure detection the Lifeguard way, on top of gossip's phi-accrual
//! detector: a suspicion is not a verdict.
//!
//! - **Accusations are published.** Every node puts the nodes it has lost
//!   (registered, not live in its gossip view) in its own membership record
//!   ([`crate::membership::Member::suspects`]), so the accusation travels by
//!   gossip to every member, the suspect included.
//! - **A second member confirms.** The leader commits a node `down` only when
//!   at least two members accuse it — or every other live member, when fewer
//!   than two are left (a two-node cluster) — see [`verdict`]. A node that
//!   only the leader lost (a one-way cut, a slow link) keeps running its work
//!   as long as some other member still hears it: that member's silence is
//!   the refutation.
//! - **A starved node stops accusing.** A node whose own event loop lags
//!   ([`LocalHealth`]: a 100 ms timer that fires late by at least
//!   [`LivenessConfig::starved_lag`] within the last
//!   [`LivenessConfig::starved_window`]) cannot tell a dead peer from its own
//!   stall: it publishes no accusations, its record says `starved`, it does
//!   not count as a confirmation (nor as a defence), and its `/health` says
//!   so. When no member that is not starved is left to confirm or defend, a
//!   lost node is marked down after [`LivenessConfig::unconfirmed_grace`]
//!   instead: slower, never stuck.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::membership::Member;

/// The thresholds of [`LocalHealth`] and [`verdict`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct LivenessConfig {
    /// A node whose 100 ms timer fired this late is starved...
    pub starved_lag: Duration,
    /// ...for this long after.
    pub starved_window: Duration,
    /// A lost node that no member can confirm or defend (every other one is
    /// starved) is marked down after this long anyway.
    pub unconfirmed_grace: Duration,
}

impl Default for LivenessConfig {
    /// 300 ms of lag (a quarter of the fastest gossip death, about 1.2 s, so
    /// a node stalled long enough to see healthy peers as dead is starved
    /// first); 10 s of starvation after; 15 s to mark an unconfirmable node
    /// down (Swarm's and Nomad's order of reaction).
    fn default() -> Self {
        LivenessConfig {
            starved_lag: Duration::from_millis(300),
            starved_window: Duration::from_secs(10),
            unconfirmed_grace: Duration::from_secs(15),
        }
    }
}

/// How well this node's own event loop keeps time.
#[derive(Debug, Default)]
pub struct LocalHealth {
    starved: AtomicBool,
    /// The worst lag of the current window, in ms.
    worst_lag_ms: AtomicU64,
}

impl LocalHealth {
    /// Whether the node is starved now.
    pub fn starved(&self) -> bool {
        self.starved.load(Ordering::Relaxed)
    }

    /// The worst lag seen in the current window.
    pub fn worst_lag(&self) -> Duration {
        Duration::from_millis(self.worst_lag_ms.load(Ordering::Relaxed))
    }

    /// What `/health` says while starved.
    pub fn warning(&self) -> Option<String> {
        self.starved().then(|| {
            format!(
                "this node is starved (its event loop lagged {} ms): it accuses no other node of being down",
                self.worst_lag().as_millis()
            )
        })
    }

    /// Records one timer round that fired `lag` late at `now`; `last_bad` is
    /// when the last round over the threshold came. Pure, for tests.
    fn observe(
        &self,
        lag: Duration,
        now: Instant,
        last_bad: &mut Option<Instant>,
        cfg: &LivenessConfig,
    ) {
        if lag >= cfg.starved_lag {
            *last_bad = Some(now);
            self.worst_lag_ms
                .fetch_max(lag.as_millis() as u64, Ordering::Relaxed);
        }
        let starved = last_bad.is_some_and(|t| now.duration_since(t) < cfg.starved_window);
        if !starved {
            self.worst_lag_ms.store(0, Ordering::Relaxed);
        }
        self.starved.store(starved, Ordering::Relaxed);
    }
}

/// Measures the event loop's lag every 100 ms until shutdown.
pub(crate) async fn watch_lag(
    health: Arc<LocalHealth>,
    cfg: LivenessConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    const ROUND: Duration = Duration::from_millis(100);
    let mut last_bad = None;
    loop {
        let before = Instant::now();
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(ROUND) => {}
        }
        let now = Instant::now();
        let lag = now.duration_since(before).saturating_sub(ROUND);
        health.observe(lag, now, &mut last_bad, &cfg);
    }
}

/// What the leader may conclude about a node it has lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Enough members confirm: mark it down.
    Down {
        /// Who accused it (the leader included when it counts).
        accusers: Vec<String>,
    },
    /// Not confirmed yet: another member still hears it, or has not lost it
    /// yet.
    Wait {
        /// Accusations so far.
        accusers: usize,
        /// Accusations needed.
        required: usize,
    },
    /// No member that is not starved is left to ask: mark it down once it has
    /// been lost for [`LivenessConfig::unconfirmed_grace`].
    Unconfirmable,
}

/// Whether `subject`, which the leader (`leader`, starved or not) has lost,
/// is down: at least two accusations, or every other live member's when
/// fewer than two could accuse. `live` is the leader's view of the live
/// members (the subject is not among them; the leader is).
pub fn verdict(subject: &str, leader: &str, leader_starved: bool, live: &[Member]) -> Verdict {
    let mut accusers = Vec::new();
    let mut voters = 0;
    if !leader_starved {
        voters += 1;
        accusers.push(leader.to_string());
    }
    for m in live {
        if m.id == leader || m.id == subject || m.starved {
            continue;
        }
        voters += 1;
        if m.suspects.contains(subject) {
            accusers.push(m.id.clone());
        }
    }
    if voters == 0 {
        return Verdict::Unconfirmable;
    }
    let required = voters.min(2);
    if accusers.len() >= required {
        Verdict::Down { accusers }
    } else {
        Verdict::Wait {
            accusers: accusers.len(),
            required,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str, suspects: &[&str], starved: bool) -> Member {
        let mut m =
            crate::cluster::builder::member_of(&crate::testing::fixtures::node(id, 4.0, 4096));
        m.suspects = suspects.iter().map(|s| s.to_string()).collect();
        m.starved = starved;
        m
    }

    #[test]
    fn a_second_member_must_confirm() {
        // Leader a lost c; b still hears it: no verdict.
        let live = [m("a", &["c"], false), m("b", &[], false)];
        assert_eq!(
            verdict("c", "a", false, &live),
            Verdict::Wait {
                accusers: 1,
                required: 2
            }
        );
        // b lost it too: down, by both.
        let live = [m("a", &["c"], false), m("b", &["c"], false)];
        assert_eq!(
            verdict("c", "a", false, &live),
            Verdict::Down {
                accusers: vec!["a".into(), "b".into()]
            }
        );
        // Of five, two accusations are enough; the other two may not know yet.
        let live = [
            m("a", &["e"], false),
            m("b", &[], false),
            m("c", &["e"], false),
            m("d", &[], false),
        ];
        assert!(matches!(
            verdict("e", "a", false, &live),
            Verdict::Down { .. }
        ));
    }

    #[test]
    fn in_a_two_node_cluster_the_leader_alone_decides() {
        let live = [m("a", &["b"], false)];
        assert_eq!(
            verdict("b", "a", false, &live),
            Verdict::Down {
                accusers: vec!["a".into()]
            }
        );
    }

    #[test]
    fn starved_members_neither_accuse_nor_defend() {
        // The leader is starved: it does not count; b and c must both accuse.
        let live = [
            m("a", &["d"], false),
            m("b", &["d"], false),
            m("c", &[], false),
        ];
        assert_eq!(
            verdict("d", "a", true, &live),
            Verdict::Wait {
                accusers: 1,
                required: 2
            }
        );
        let live = [
            m("a", &["d"], false),
            m("b", &["d"], false),
            m("c", &["d"], false),
        ];
        assert_eq!(
            verdict("d", "a", true, &live),
            Verdict::Down {
                accusers: vec!["b".into(), "c".into()]
            }
        );
        let live = [
            m("a", &["d"], false),
            m("b", &["d"], false),
            m("c", &[], true),
        ];
        // c is starved: b's accusation and the leader's are enough.
        assert!(matches!(
            verdict("d", "a", false, &live),
            Verdict::Down { .. }
        ));
        // A starved leader alone with the subject: nobody can say.
        assert_eq!(
            verdict("b", "a", true, &[m("a", &[], true)]),
            Verdict::Unconfirmable
        );
        // A starved leader and one other member: that one decides.
        let live = [m("a", &[], true), m("b", &[], false)];
        assert_eq!(
            verdict("c", "a", true, &live),
            Verdict::Wait {
                accusers: 0,
                required: 1
            }
        );
    }

    #[test]
    fn a_late_timer_starves_the_node_for_the_window() {
        let cfg = LivenessConfig::default();
        let h = LocalHealth::default();
        let t0 = Instant::now();
        let mut last = None;
        h.observe(Duration::from_millis(20), t0, &mut last, &cfg);
        assert!(!h.starved() && h.warning().is_none());
        h.observe(
            Duration::from_millis(450),
            t0 + Duration::from_secs(1),
            &mut last,
            &cfg,
        );
        assert!(h.starved());
        assert!(h.warning().unwrap().contains("450 ms"), "{:?}", h.warning());
        h.observe(
            Duration::from_millis(10),
            t0 + Duration::from_secs(9),
            &mut last,
            &cfg,
        );
        assert!(h.starved(), "still within the window");
        h.observe(
            Duration::from_millis(10),
            t0 + Duration::from_secs(12),
            &mut last,
            &cfg,
        );
        assert!(!h.starved() && h.worst_lag() == Duration::ZERO);
    }
}
