//! [`RaftStoreConfig`]: who this node is, where its data lives, and Raft's timing.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which storage engine holds the Raft log, vote and snapshot.
///
/// **redb is the default, by measurement.** `cargo bench -p orion-benches --bench
/// store_engines -- --warm-up-time 1 --measurement-time 3` (criterion medians on a
/// 2-core VM shared with other builds; both engines fsync'd for real — see
/// [`crate::engine::SledEngine`] on sled's own sync):
///
/// | work | sled | redb |
/// |---|---|---|
/// | append, 1 entry per fsync (A/B interleaved) | 283 µs (p90 436 µs) | 360 µs (p90 450 µs) |
/// | append, 64 entries per fsync (A/B interleaved) | 1.30 ms (p90 1.78 ms) | 1.07 ms (p90 1.35 ms) |
/// | append, 64 per fsync (criterion, alone) | 33.2 k entries/s | 90.6 k entries/s |
/// | proposals through openraft, 256 in flight | 1,619/s | 1,229/s |
/// | on disk after 100,000 entries + snapshot + purge | 16.0 MiB | 3.4 MiB |
/// | on disk in steady state (snapshot + purge every 5,000) | 8.0 MiB | 2.3 MiB |
/// | reopen: restore snapshot + replay 4,000 entries | 34.3 ms | 29.7 ms |
///
/// The write path is a wash: one fsync dominates both, sled is ~25% quicker per
/// single-entry append (so per proposal, as openraft 0.9 appends each client write
/// on its own), redb ~20% quicker on batches (replication, catch-up), and the sign
/// flipped between runs on this noisy host. What never flipped: redb takes 3.5–5×
/// less disk and reopens as fast or faster. It also has a maintained, stable file
/// format and a real fsync on commit, where sled 0.34 dates from 2021 and needs an
/// extra `fdatasync` to be durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// sled 0.34: log-structured, syncs with `flush()`.
    Sled,
    /// redb 4: one copy-on-write B-tree file, syncs on an immediate commit.
    #[default]
    Redb,
}

impl Engine {
    /// The engine's name (`sled`, `redb`).
    pub fn name(self) -> &'static str {
        match self {
            Engine::Sled => "sled",
            Engine::Redb => "redb",
        }
    }
}

impl std::str::FromStr for Engine {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sled" => Ok(Engine::Sled),
            "redb" => Ok(Engine::Redb),
            other => Err(ConfigError(format!(
                "unknown engine {other:?}: expected sled or redb"
            ))),
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid store config: {0}")]
#[non_exhaustive]
pub struct ConfigError(pub String);

/// How to open a [`crate::RaftStore`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RaftStoreConfig {
    /// This node's id, unique in the cluster. Default `n1`: a one-node cluster needs
    /// no thought; every multi-node cluster sets it.
    pub node_id: String,
    /// Where the log, vote and snapshots live. Default `/var/lib/orion/store`, under
    /// Orion's data directory.
    pub data_dir: PathBuf,
    /// The storage engine. Default [`Engine::default`] (chosen by measurement).
    pub engine: Engine,
    /// The Raft address peers reach this node at (`host:port`). Default
    /// `127.0.0.1:7946`, Orion's Raft port.
    pub raft_addr: String,
    /// The HTTP API address clients reach this node at, reported as
    /// [`orion_core::Leadership::leader_http`]. Default `127.0.0.1:8080`, Orion's API port.
    pub http_addr: String,
    /// How often the leader sends heartbeats. Default 100 ms: cheap on loopback and
    /// LAN, and several fit in the election timeout, so one lost heartbeat never
    /// triggers an election. It is also openraft's deadline for each append-entries
    /// RPC (the follower's fsync included).
    pub heartbeat_interval: Duration,
    /// Shortest election timeout. Default 250 ms: two and a half heartbeats, which
    /// rides out a late heartbeat or two on a busy host.
    ///
    /// Failover takes a leader lease (openraft: `election_timeout_max`, during which
    /// followers still trust the old leader and refuse votes) plus a random election
    /// timeout in `[min, max)`: about 1 s with the defaults (0.8–1.2 s measured on
    /// loopback in `three_managers_replicate_forward_and_fail_over`), well under 2 s.
    pub election_timeout_min: Duration,
    /// Longest election timeout (each election draws a random value in between), and
    /// the leader lease. Default 500 ms: a range as wide as its floor makes split
    /// votes rare, and the lease is five heartbeats.
    pub election_timeout_max: Duration,
    /// Deadline of an RPC other than append-entries: votes use the election timeout,
    /// this bounds snapshot chunks, forwarded calls and reads of the leader. Default
    /// 2 s: a 1 MiB snapshot chunk as JSON over a LAN fits with room to spare.
    pub rpc_timeout: Duration,
    /// How long `propose` and `read_barrier` keep trying, through forwarding and
    /// elections, before giving up. Default 10 s: several elections' worth.
    pub propose_timeout: Duration,
    /// How long a membership change may take, a new learner catching up included.
    /// Default 60 s: a learner may need a whole snapshot.
    pub membership_timeout: Duration,
    /// Build a snapshot once this many entries were applied since the last one
    /// (the log before it is then purged). Default 5 000: replay on restart stays
    /// well under a second while snapshots, which serialize the whole state, stay rare.
    pub snapshot_threshold: u64,
    /// Entries kept in the log behind the snapshot, so a briefly lagging follower
    /// catches up from the log instead of a full snapshot. Default 1 000.
    pub snapshot_keep: u64,
    /// Most voters the store creates by itself; further managers stay learners.
    /// Default 3: tolerates one failure at the lowest write latency (5 tolerates two).
    pub max_voters: usize,
}

impl Default for RaftStoreConfig {
    fn default() -> Self {
        RaftStoreConfig {
            node_id: "n1".into(),
            data_dir: PathBuf::from("/var/lib/orion/store"),
            engine: Engine::default(),
            raft_addr: "127.0.0.1:7946".into(),
            http_addr: "127.0.0.1:8080".into(),
            heartbeat_interval: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(250),
            election_timeout_max: Duration::from_millis(500),
            rpc_timeout: Duration::from_secs(2),
            propose_timeout: Duration::from_secs(10),
            membership_timeout: Duration::from_secs(60),
            snapshot_threshold: 5_000,
            snapshot_keep: 1_000,
            max_voters: 3,
        }
    }
}

fn check_addr(field: &str, addr: &str) -> Result<(), ConfigError> {
    let ok = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if ok {
        Ok(())
    } else {
        Err(ConfigError(format!("{field} {addr:?} is not host:port")))
    }
}

impl RaftStoreConfig {
    /// How long a leader may hear from no majority before it counts itself cut
    /// off: twice the longest election timeout (1 s by default), by when the
    /// followers it lost have stopped waiting for it and elected another leader.
    pub fn quorum_lost_after(&self) -> Duration {
        self.election_timeout_max * 2
    }

    /// A config for `node_id` storing in `data_dir`, everything else default.
    pub fn new(node_id: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        RaftStoreConfig {
            node_id: node_id.into(),
            data_dir: data_dir.into(),
            ..Default::default()
        }
    }

    /// Checks the config can work: ids and addresses present, timeouts ordered.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError(m));
        if self.node_id.trim().is_empty() {
            return err("node_id is empty".into());
        }
        check_addr("raft_addr", &self.raft_addr)?;
        check_addr("http_addr", &self.http_addr)?;
        if self.heartbeat_interval.is_zero() {
            return err("heartbeat_interval is zero".into());
        }
        if self.election_timeout_min <= self.heartbeat_interval {
            return err(format!(
                "election_timeout_min ({:?}) must exceed heartbeat_interval ({:?})",
                self.election_timeout_min, self.heartbeat_interval
            ));
        }
        if self.election_timeout_max <= self.election_timeout_min {
            return err(format!(
                "election_timeout_max ({:?}) must exceed election_timeout_min ({:?})",
                self.election_timeout_max, self.election_timeout_min
            ));
        }
        for (name, d) in [
            ("rpc_timeout", self.rpc_timeout),
            ("propose_timeout", self.propose_timeout),
            ("membership_timeout", self.membership_timeout),
        ] {
            if d.is_zero() {
                return err(format!("{name} is zero"));
            }
        }
        if self.snapshot_threshold == 0 {
            return err("snapshot_threshold is zero".into());
        }
        if self.max_voters == 0 || self.max_voters.is_multiple_of(2) || self.max_voters > 7 {
            return err(format!(
                "max_voters is {}: use an odd number from 1 to 7",
                self.max_voters
            ));
        }
        Ok(())
    }

    /// openraft's config from this one.
    pub(crate) fn raft_config(&self) -> Result<openraft::Config, ConfigError> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        openraft::Config {
            cluster_name: "orion".into(),
            heartbeat_interval: ms(self.heartbeat_interval),
            election_timeout_min: ms(self.election_timeout_min),
            election_timeout_max: ms(self.election_timeout_max),
            install_snapshot_timeout: ms(self.rpc_timeout),
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_threshold),
            max_in_snapshot_log_to_keep: self.snapshot_keep,
            snapshot_max_chunk_size: 1024 * 1024,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ConfigError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_maps_to_openraft() {
        let c = RaftStoreConfig::default();
        c.validate().expect("default validates");
        let rc = c.raft_config().expect("openraft accepts it");
        assert_eq!(rc.heartbeat_interval, 100);
        assert_eq!(rc.election_timeout_max, 500);
    }

    #[test]
    fn rejects_bad_values() {
        let bad = [
            RaftStoreConfig {
                node_id: " ".into(),
                ..Default::default()
            },
            RaftStoreConfig {
                raft_addr: "nohost".into(),
                ..Default::default()
            },
            RaftStoreConfig {
                election_timeout_min: Duration::from_millis(50),
                ..Default::default()
            },
            RaftStoreConfig {
                election_timeout_max: Duration::from_millis(200),
                ..Default::default()
            },
            RaftStoreConfig {
                max_voters: 4,
                ..Default::default()
            },
            RaftStoreConfig {
                snapshot_threshold: 0,
                ..Default::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
        assert_eq!("sled".parse::<Engine>(), Ok(Engine::Sled));
        assert!("rocks".parse::<Engine>().is_err());
    }
}
