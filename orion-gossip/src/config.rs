//! `GossipConfig`: who this node is, where it gossips, and how fast failures are detected.
//!
//! # Failure detection, and why the defaults are what they are
//!
//! chitchat 0.13's failure detector computes, for each peer,
//! `phi = time since its last new heartbeat / smoothed mean heartbeat interval`
//! and declares the peer dead when `phi > phi_threshold`; liveness is
//! re-evaluated once per gossip round. The smoothed mean is
//! `(sum of the last n ≤ heartbeat_window intervals + 5 × initial_heartbeat_interval)
//! / (n + 5)`: chitchat adds five phantom samples of the initial interval.
//!
//! A heartbeat is "new" whenever any peer's digest carries a higher counter, so
//! in a small cluster on loopback heartbeats are observed every ~35 ms with a
//! 100 ms gossip interval (measured). With chitchat's long default window (1000
//! samples) the prior fades and the timeout collapses to ~280 ms (measured): a
//! scheduler stall that long on a busy host would make healthy nodes flap.
//! Orion keeps the window as short as the prior's weight (5 samples), so the
//! prior holds half the weight and the timeout stays in a narrow band whatever
//! the cluster size, and whether the peer joined a second or a day ago:
//!
//! ```text
//! settled, 3 nodes (heartbeat seen every ~35 ms)  8 × (5 × 35 + 5 × 300) / 10 ms ≈ 1.3 s
//! settled, large cluster (once per 100 ms round)  8 × (5 × 100 + 5 × 300) / 10 ms ≈ 1.6 s
//! just joined (a single interval sampled)         8 × (100 + 5 × 300) / 6 ms      ≈ 2.1 s
//! detection ≤ timeout + one gossip round ≈ 1.4–2.2 s   (< 3 s; measured ~1.5 s on loopback)
//! ```
//!
//! So a peer silent for less than ~1.2 s is never declared dead (stall
//! tolerance), and one silent for ~2.2 s always is. [`GossipConfig::detection_time_estimate`]
//! computes the upper bound for any settings.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chitchat::{ChitchatConfig, ChitchatId, FailureDetectorConfig, ProtocolVersion};
use orion_core::membership::Member;
use orion_core::model::{NodeAddrs, NodeRole};
use orion_core::spec::Resources;

use crate::keyring::Keyring;

/// Weight of chitchat 0.13's additive smoothing prior, in samples
/// (`AdditiveSmoothing::prior_weight` in its `failure_detector.rs`).
const CHITCHAT_PRIOR_WEIGHT: f64 = 5.0;

/// How a node takes part in gossip: its identity and metadata, its addresses,
/// its peers, and the failure-detector tuning.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct GossipConfig {
    /// The local node as published to peers: id, addresses, role, capacity,
    /// used resources, tags.
    ///
    /// `member.generation` is ignored: [`generation`](Self::generation) is the
    /// one gossiped. When `member.addrs.gossip` is `None` it is filled with the
    /// advertise address. Default: an empty id, which [`validate`](Self::validate)
    /// rejects: every node must be named.
    pub member: Member,
    /// UDP address the gossip socket binds to.
    ///
    /// Default `127.0.0.1:7947`: Orion's gossip port (DESIGN.md), on loopback so
    /// that a node is reachable from other hosts only when configured to be.
    pub listen_addr: SocketAddr,
    /// Address peers gossip to; `None` means [`listen_addr`](Self::listen_addr).
    ///
    /// Default `None`: on a single host the listen address is reachable as is.
    /// Set it when binding `0.0.0.0` or behind NAT.
    pub advertise_addr: Option<SocketAddr>,
    /// Gossip addresses (`host:port`) of other nodes to join through. Host names
    /// are re-resolved every minute by chitchat.
    ///
    /// Default empty: the first node of a cluster has no one to join.
    pub seeds: Vec<String>,
    /// Name of the cluster; gossip from another cluster id is rejected.
    ///
    /// Default `"orion"`. Two Orion clusters on one network must use different
    /// ids, or they merge into one.
    pub cluster_id: String,
    /// Incarnation of this node process, gossiped as chitchat's generation id.
    ///
    /// Default: the current time in milliseconds since the Unix epoch, so a
    /// restarted node comes back with a higher generation than its previous
    /// incarnation, which peers then drop (the highest generation of an id
    /// wins). Set it explicitly only if you keep a persistent counter.
    pub generation: u64,
    /// How often this node gossips with up to three peers (and re-evaluates
    /// liveness).
    ///
    /// Default 100 ms: detection costs about eight mean heartbeat intervals
    /// plus one round (see the module docs), and 100 ms keeps it under ~2.2 s.
    /// Each round sends a digest of every node (~50 bytes each) to three peers;
    /// for clusters of several hundred nodes raise it, and the prior with it,
    /// and check [`detection_time_estimate`](Self::detection_time_estimate).
    pub gossip_interval: Duration,
    /// A peer is dead when `time since its last heartbeat / mean interval`
    /// exceeds this.
    ///
    /// Default 8 (chitchat's): with the window and prior below the mean stays
    /// within ~160–270 ms, so a peer is declared dead after 1.3–2.1 s of
    /// silence.
    pub phi_threshold: f64,
    /// Number of recent heartbeat intervals the mean is taken over.
    ///
    /// Default 5 (chitchat's is 1000): as many as the prior's phantom samples,
    /// so that [`initial_heartbeat_interval`](Self::initial_heartbeat_interval)
    /// keeps half the weight. Without that floor, fast heartbeats in small
    /// clusters shrink the timeout to a few hundred ms and nodes flap.
    pub heartbeat_window: usize,
    /// Prior heartbeat interval: five phantom samples of it are added to the
    /// measured ones.
    ///
    /// Default 300 ms: it puts the mean at ≥ 150 ms once settled (timeout
    /// ≥ 1.2 s with phi 8, tolerating stalls that long), and bounds the
    /// timeout of a peer that just joined, whose mean is almost all prior, at
    /// ~2.1 s.
    pub initial_heartbeat_interval: Duration,
    /// Heartbeat intervals longer than this are not sampled.
    ///
    /// Default 1 s: longer than any healthy interval (a few gossip rounds),
    /// shorter than the detection time, so one long gap (a pause, or a node
    /// coming back from dead) does not inflate the mean much.
    pub max_heartbeat_interval: Duration,
    /// How long a dead node's state is kept before it is forgotten.
    ///
    /// Default 1 h (chitchat's is 24 h). While kept, live nodes now and then
    /// gossip to dead ones, which is how a node that is not a seed rejoins
    /// after a partition heals; each restart leaves one dead generation behind
    /// until this passes, so it also bounds that garbage. After half of it a
    /// dead node is no longer gossiped about.
    pub dead_node_grace_period: Duration,
    /// How long deleted keys are kept as tombstones before garbage collection.
    ///
    /// Default 1 h, as the dead-node grace: a peer that missed a deletion for
    /// longer is reset with a full state transfer. Orion publishes one key that
    /// it overwrites and never deletes, so this rarely matters.
    pub marked_for_deletion_grace_period: Duration,
    /// Capacity of the event channel; a subscriber further behind loses events
    /// and should re-read `live()`.
    ///
    /// Default 1024: a burst of a whole large cluster's joins fits.
    pub event_capacity: usize,
    /// The cluster's gossip keys. When set, [`ChitchatMembership::start`]
    /// gossips over [`EncryptedUdpTransport`]: every packet is sealed with the
    /// primary key, and packets that do not open under an installed key are
    /// dropped. The keyring is a shared handle: keep a clone to rotate keys
    /// on the running node.
    ///
    /// Default `None`: clear-text gossip, as plain chitchat, for tests and
    /// `--insecure-dev`; anyone who can reach the port can then read the
    /// cluster's metadata and inject members. Compared by contents (same keys,
    /// same primary) in `PartialEq`; `Debug` shows key ids only.
    ///
    /// [`ChitchatMembership::start`]: crate::ChitchatMembership::start
    /// [`EncryptedUdpTransport`]: crate::transport::EncryptedUdpTransport
    pub keyring: Option<Keyring>,
}

impl Default for GossipConfig {
    fn default() -> Self {
        GossipConfig {
            member: Member {
                id: String::new(),
                generation: 0,
                addrs: NodeAddrs::default(),
                role: NodeRole::default(),
                capacity: Resources::ZERO,
                used: Resources::ZERO,
                tags: Default::default(),
                load: Default::default(),
                suspects: Default::default(),
                starved: false,
            },
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 7947)),
            advertise_addr: None,
            seeds: Vec::new(),
            cluster_id: "orion".to_string(),
            generation: now_millis(),
            gossip_interval: Duration::from_millis(100),
            phi_threshold: 8.0,
            heartbeat_window: 5,
            initial_heartbeat_interval: Duration::from_millis(300),
            max_heartbeat_interval: Duration::from_secs(1),
            dead_node_grace_period: Duration::from_secs(60 * 60),
            marked_for_deletion_grace_period: Duration::from_secs(60 * 60),
            event_capacity: 1024,
            keyring: None,
        }
    }
}

/// Why a [`GossipConfig`] is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `member.id` is empty.
    #[error("member id is empty")]
    EmptyNodeId,
    /// `cluster_id` is empty.
    #[error("cluster id is empty")]
    EmptyClusterId,
    /// The address peers would gossip to is `0.0.0.0`/`::` or has port 0.
    #[error("advertise address {0} is not reachable by peers: set advertise_addr")]
    UnroutableAdvertise(SocketAddr),
    /// A seed is not `host:port`.
    #[error("seed {0:?} is not host:port")]
    InvalidSeed(String),
    /// A duration that must be positive is zero.
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    /// A count that must be positive is zero.
    #[error("{0} must be greater than zero")]
    ZeroCount(&'static str),
    /// `phi_threshold` is not a positive finite number.
    #[error("phi threshold {0} must be a positive finite number")]
    PhiThreshold(f64),
    /// Healthy heartbeats (one per gossip round at most) would not be sampled.
    #[error("max heartbeat interval {max:?} is shorter than the gossip interval {gossip:?}")]
    MaxIntervalBelowGossipInterval {
        /// `max_heartbeat_interval`.
        max: Duration,
        /// `gossip_interval`.
        gossip: Duration,
    },
}

impl GossipConfig {
    /// The defaults, for this member.
    pub fn new(member: Member) -> Self {
        GossipConfig {
            member,
            ..GossipConfig::default()
        }
    }

    /// The address peers gossip to: `advertise_addr`, else `listen_addr`.
    pub fn effective_advertise_addr(&self) -> SocketAddr {
        self.advertise_addr.unwrap_or(self.listen_addr)
    }

    /// Checks the config before use; [`ChitchatMembership::start`] calls it.
    ///
    /// [`ChitchatMembership::start`]: crate::ChitchatMembership::start
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.member.id.trim().is_empty() {
            return Err(ConfigError::EmptyNodeId);
        }
        if self.cluster_id.trim().is_empty() {
            return Err(ConfigError::EmptyClusterId);
        }
        let advertise = self.effective_advertise_addr();
        if advertise.ip().is_unspecified() || advertise.port() == 0 {
            return Err(ConfigError::UnroutableAdvertise(advertise));
        }
        if let Some(seed) = self.seeds.iter().find(|s| !is_host_port(s)) {
            return Err(ConfigError::InvalidSeed(seed.clone()));
        }
        for (name, value) in [
            ("gossip_interval", self.gossip_interval),
            (
                "initial_heartbeat_interval",
                self.initial_heartbeat_interval,
            ),
            ("dead_node_grace_period", self.dead_node_grace_period),
            (
                "marked_for_deletion_grace_period",
                self.marked_for_deletion_grace_period,
            ),
        ] {
            if value.is_zero() {
                return Err(ConfigError::ZeroDuration(name));
            }
        }
        if self.heartbeat_window == 0 {
            return Err(ConfigError::ZeroCount("heartbeat_window"));
        }
        if self.event_capacity == 0 {
            return Err(ConfigError::ZeroCount("event_capacity"));
        }
        if !(self.phi_threshold.is_finite() && self.phi_threshold > 0.0) {
            return Err(ConfigError::PhiThreshold(self.phi_threshold));
        }
        if self.max_heartbeat_interval < self.gossip_interval {
            return Err(ConfigError::MaxIntervalBelowGossipInterval {
                max: self.max_heartbeat_interval,
                gossip: self.gossip_interval,
            });
        }
        Ok(())
    }

    /// Upper estimate of the time from a peer's death to its being declared
    /// dead, assuming its heartbeats were observed at least once per gossip
    /// round (small clusters observe them faster and detect sooner).
    ///
    /// `phi_threshold × mean + one gossip round`, with the mean of whichever is
    /// slower: a peer that just joined (one interval sampled) or a settled one
    /// (a full window).
    pub fn detection_time_estimate(&self) -> Duration {
        let gossip = self.gossip_interval.as_secs_f64();
        let prior = CHITCHAT_PRIOR_WEIGHT * self.initial_heartbeat_interval.as_secs_f64();
        let mean_of = |samples: f64| (samples * gossip + prior) / (samples + CHITCHAT_PRIOR_WEIGHT);
        let mean = mean_of(1.0).max(mean_of(self.heartbeat_window as f64));
        Duration::from_secs_f64(self.phi_threshold * mean) + self.gossip_interval
    }

    /// The chitchat identity of this node: id, generation, advertise address.
    pub(crate) fn chitchat_id(&self) -> ChitchatId {
        ChitchatId::new(
            self.member.id.as_str(),
            self.generation,
            self.effective_advertise_addr(),
        )
    }

    /// The chitchat config; every field set, since it has no `Default`.
    pub(crate) fn to_chitchat(&self) -> ChitchatConfig {
        ChitchatConfig {
            chitchat_id: self.chitchat_id(),
            cluster_id: self.cluster_id.clone(),
            gossip_interval: self.gossip_interval,
            listen_addr: self.listen_addr,
            seed_nodes: self.seeds.clone(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: self.phi_threshold,
                sampling_window_size: self.heartbeat_window,
                max_interval: self.max_heartbeat_interval,
                initial_interval: self.initial_heartbeat_interval,
                dead_node_grace_period: self.dead_node_grace_period,
            },
            marked_for_deletion_grace_period: self.marked_for_deletion_grace_period,
            catchup_callback: None,
            // Orion filters members without metadata itself (see `codec`).
            extra_liveness_predicate: None,
            // V1 compresses digests, but V0 is what every chitchat peer decodes.
            protocol_version: ProtocolVersion::V0,
        }
    }
}

/// Milliseconds since the Unix epoch; 0 if the clock is before it.
fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Whether `s` is `host:port` (an IPv6 host in brackets) with a non-zero port.
fn is_host_port(s: &str) -> bool {
    if s.parse::<SocketAddr>().is_ok() {
        return true;
    }
    match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty() && !host.contains(':') && port.parse::<u16>().is_ok_and(|p| p != 0)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named() -> GossipConfig {
        let mut config = GossipConfig::default();
        config.member.id = "n1".into();
        config
    }

    #[test]
    fn defaults_validate_once_named() {
        assert_eq!(
            GossipConfig::default().validate(),
            Err(ConfigError::EmptyNodeId)
        );
        assert_eq!(named().validate(), Ok(()));
    }

    #[test]
    fn default_detection_is_well_under_three_seconds() {
        let estimate = named().detection_time_estimate();
        // 8 × (100 + 5 × 300) / 6 ms + 100 ms
        assert_eq!(estimate.as_millis(), 2233, "{estimate:?}");
    }

    #[test]
    fn default_generation_is_wall_clock_millis() {
        let before = now_millis();
        let generation = GossipConfig::default().generation;
        assert!(generation >= before && generation <= now_millis());
    }

    #[test]
    fn rejects_bad_settings() {
        type Case = (fn(&mut GossipConfig), ConfigError);
        let cases: Vec<Case> = vec![
            (|c| c.cluster_id.clear(), ConfigError::EmptyClusterId),
            (
                |c| c.listen_addr = "0.0.0.0:7947".parse().unwrap(),
                ConfigError::UnroutableAdvertise("0.0.0.0:7947".parse().unwrap()),
            ),
            (
                |c| c.advertise_addr = Some("10.0.0.1:0".parse().unwrap()),
                ConfigError::UnroutableAdvertise("10.0.0.1:0".parse().unwrap()),
            ),
            (
                |c| c.seeds = vec!["seed-host".into()],
                ConfigError::InvalidSeed("seed-host".into()),
            ),
            (
                |c| c.gossip_interval = Duration::ZERO,
                ConfigError::ZeroDuration("gossip_interval"),
            ),
            (
                |c| c.heartbeat_window = 0,
                ConfigError::ZeroCount("heartbeat_window"),
            ),
            (
                |c| c.phi_threshold = f64::NAN,
                ConfigError::PhiThreshold(f64::NAN),
            ),
            (
                |c| c.max_heartbeat_interval = Duration::from_millis(50),
                ConfigError::MaxIntervalBelowGossipInterval {
                    max: Duration::from_millis(50),
                    gossip: Duration::from_millis(100),
                },
            ),
        ];
        for (edit, expected) in cases {
            let mut config = named();
            edit(&mut config);
            let err = config.validate().unwrap_err();
            // NaN != NaN: compare the messages.
            assert_eq!(err.to_string(), expected.to_string());
        }
    }

    #[test]
    fn accepts_host_names_and_ipv6_seeds() {
        let mut config = named();
        config.seeds = vec![
            "orion-0.orion:7947".into(),
            "[::1]:7947".into(),
            "127.0.0.1:7947".into(),
        ];
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn advertise_defaults_to_listen() {
        let mut config = named();
        assert_eq!(
            config.chitchat_id().gossip_advertise_addr,
            config.listen_addr
        );
        config.advertise_addr = Some("10.1.2.3:7000".parse().unwrap());
        assert_eq!(
            config.to_chitchat().chitchat_id.gossip_advertise_addr,
            "10.1.2.3:7000".parse().unwrap()
        );
    }
}
