//! [`NodeConfig`]: everything a whole node is started from, with every default in
//! one place and a reason for each.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use orion_core::{ClusterConfig, NodeRole};
use orion_store::Engine;
use serde::{Deserialize, Serialize};

/// How to start one node of an Orion cluster: who it is, where it keeps its
/// data, where it listens, what it offers tasks, and which cluster it joins.
///
/// It derives serde with the same field names as `orion-node agent`'s flags, so
/// a config file maps straight onto it; unknown keys are refused. Every field
/// has a default (see [`Default`]); [`validate`](Self::validate) runs in
/// [`NodeBuilder::start`](crate::NodeBuilder::start) and names the field of
/// the first problem it finds.
///
/// ```
/// let config: orion::NodeConfig =
///     serde_json::from_str(r#"{"node_id": "n1", "join": ["10.0.0.1:8080"], "role": "worker"}"#).unwrap();
/// assert_eq!(config.join, ["10.0.0.1:8080"]);
/// config.validate().unwrap();
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct NodeConfig {
    /// This node's id (a DNS label). `None`: the id this data dir was first
    /// started with, else the host name — so a node started by hand is named for
    /// its host and keeps its name across restarts.
    pub node_id: Option<String>,
    /// Where the node keeps its Raft state and its node-id file. Default
    /// `./orion-data`: durable and easy to find, as a node started by hand
    /// expects (the agent's packaging passes `/var/lib/orion`).
    pub data_dir: PathBuf,
    /// Manager (a Raft voter up to `max_voters`, may lead) or worker (runs tasks
    /// and replicates the log as a learner). Default manager: the first node of
    /// a cluster must be one, and a small cluster is all managers.
    pub role: NodeRole,
    /// The HTTP API's listen address. Default `127.0.0.1:8080`: Orion's API port,
    /// on loopback so nothing is exposed beyond the host unless asked. Port 0
    /// picks a free port (tests, several nodes in one process).
    pub http: SocketAddr,
    /// Where the node answers DNS for the service catalog (UDP and TCP).
    /// Default `127.0.0.1:8600`, Consul's DNS port, on loopback; when that
    /// default port is taken (a second node on one host) the node warns and
    /// serves no DNS, while an address given explicitly that cannot be bound
    /// fails the start. `None`: no DNS.
    pub dns: Option<SocketAddr>,
    /// The domain DNS answers for. Default `orion.` (`web.service.orion`).
    pub dns_domain: String,
    /// TTL of DNS records, seconds. Default 0, as Consul's: instances come and
    /// go with allocations, so resolvers should ask again.
    pub dns_ttl: u32,
    /// Servers DNS asks for names outside its domain. Default none: those are
    /// refused, so the node is never an open resolver by accident.
    pub dns_forward: Vec<SocketAddr>,
    /// The image that runs each script language when a script task names
    /// none (`sh: alpine:3`). Default none: [`orion_core::spec::Lang::default_image`].
    /// Nothing is pulled here: the image must be on the node.
    pub script_images: BTreeMap<orion_core::spec::Lang, String>,
    /// Whether the node runs the load balancer: it listens, on `host_ip`, on
    /// the `lb.port` of every job that asks for one and proxies to the
    /// service's healthy instances. Default true: nothing is bound until a job
    /// asks, and a service reached through any node is what users expect.
    pub load_balancer: bool,
    /// The Raft transport's listen address. Default `127.0.0.1:7946`, Orion's Raft
    /// port. Port 0 picks a free port.
    pub raft: SocketAddr,
    /// The gossip (UDP) listen address. Default `127.0.0.1:7947`, Orion's gossip
    /// port. Port 0 picks a port free at start (chitchat advertises the address
    /// it is given, so the port is chosen before it binds).
    pub gossip: SocketAddr,
    /// The HTTP address other nodes and clients reach this node at, when it
    /// differs from the bound one (`http: 0.0.0.0:8080`). Default `None`: the
    /// bound address.
    pub advertise_http: Option<String>,
    /// HTTP addresses of members to join through, tried in turn until one takes
    /// this node. Default empty: the node forms a new cluster of its own (or, on a
    /// restart, rejoins the one its data dir belongs to).
    pub join: Vec<String>,
    /// How long to keep trying `join` before giving up. Default 2 min: long
    /// enough for a cluster that starts all at once (the first node may still be
    /// electing itself), short enough that a wrong address fails a deploy.
    #[serde(with = "humantime_serde")]
    pub join_timeout: Duration,
    /// Tags for job selectors (`disk: ssd`). Default none.
    pub tags: BTreeMap<String, String>,
    /// CPU cores offered to tasks. Default `None`: what this process may use
    /// (which honours a cgroup CPU quota and affinity).
    pub cpu: Option<f64>,
    /// Memory offered to tasks, MiB. Default `None`: the lower of the host's
    /// memory and this process's cgroup limit.
    pub memory_mb: Option<u64>,
    /// Disk offered to tasks, MiB. Default `None`: the space free on the data
    /// dir's file system when the node starts.
    pub disk_mb: Option<u64>,
    /// Host IP task ports are published on. Default `127.0.0.1`: nothing is
    /// exposed beyond the host unless the operator says so.
    pub host_ip: IpAddr,
    /// Inclusive range of dynamic host ports. Default 32000–32767: clear of
    /// Linux's ephemeral range (32768+). Nodes sharing one host and one engine
    /// need ranges of their own.
    #[serde(with = "port_range")]
    pub port_range: (u16, u16),
    /// Host paths tasks may mount as volumes (and everything under them).
    /// Default none: a task reaches no host file unless the operator says so.
    pub host_volumes: Vec<PathBuf>,
    /// Storage engine of the Raft log. Default redb, chosen by measurement (see
    /// the README's storage-engine table).
    pub engine: Engine,
    /// Most Raft voters the cluster grows to; further managers stay learners.
    /// Read by the first node. Default 3: tolerates one failure at the lowest
    /// write latency (5 tolerates two).
    pub max_voters: usize,
    /// Name of the cluster in gossip; a node of another cluster id is ignored.
    /// Default `orion`. Two clusters sharing a network need distinct ids.
    pub cluster_name: String,
    /// Turns API token checks off, for a throwaway cluster on one machine
    /// (`orion-node dev`, tests that say why). Default false: the API asks
    /// every caller for a token with the route's scope (see
    /// [`orion_core::acl`]), and the first node of a cluster makes a
    /// management token at bootstrap, kept in `<data_dir>/management.token`
    /// (mode 0600). A node started with it warns at every start and in
    /// `/health`.
    pub insecure_dev: bool,
    /// The join token (`ORN-1-<CA digest>-<secret>`) this node presents when
    /// it joins a secure cluster through `join`: the first node makes one for
    /// managers and one for workers (kept in its
    /// `<data_dir>/tls/join-tokens.json`; `orion-node cluster join-token`
    /// shows and rotates them). Default none: what a first node, a restart
    /// and an `insecure_dev` cluster need. Never logged.
    pub join_token: Option<String>,
    /// How long node certificates issued by this node last; each node renews
    /// its own at a random point between 50% and 80% of its life, without a
    /// restart. Default 90 days, as Swarm's. At least 2 s (tests use
    /// seconds).
    #[serde(with = "humantime_serde")]
    pub cert_expiry: Duration,
    /// The cluster's data key, which secrets are sealed under (see
    /// [`orion_core::secret`]). Default none: the first start of a
    /// cluster's first node makes one, and every node keeps its key in
    /// `<data_dir>/data.key` (mode 0600) and reads it back on restart. A node
    /// that joins a secure cluster receives the key with its certificate (in
    /// the join grant, over TLS); a joiner of an `insecure_dev` cluster must
    /// be given it (it is kept the same way); without one a node seals no
    /// secrets and runs no task that uses them. Not
    /// read from config files; its `Debug` shows only its id.
    #[serde(skip)]
    pub data_key: Option<orion_core::secret::DataKey>,
    /// Autolock (Swarm's): the files in the data dir that hold cluster-wide
    /// secrets (`data.key`, `tls/ca.json`, `tls/gossip-keys.json`,
    /// `tls/join-tokens.json`) are kept sealed under an unlock key, and a
    /// restarted node opens no store until it is given the key
    /// ([`NodeConfig::unlock_key`], or `orion-node cluster unlock` against
    /// the locked API it serves meanwhile). The first start with it makes
    /// the key (or takes [`NodeConfig::unlock_key`]) and seals the files; a
    /// manager joining an autolocked cluster takes the cluster's key from
    /// the join grant, whatever this says. Once on it stays on. Default
    /// false: a node restarts unattended. Needs a secure node (not
    /// `insecure_dev`). `tls/node.json` (this node's own certificate key)
    /// is not sealed: the locked node serves the unlock over TLS with it.
    pub autolock: bool,
    /// The unlock key (`ORNKEY-1-…`) of an autolocked data dir: the start
    /// opens it directly instead of waiting for `cluster unlock`; a key that
    /// does not open it fails the start. On the first start with
    /// `autolock`, the key to seal under instead of a new one. Default none.
    /// Not read from config files (a key beside the files it unlocks
    /// unlocks nothing); its `Debug` shows only its id.
    #[serde(skip)]
    pub unlock_key: Option<orion_core::at_rest::UnlockKey>,
    /// Where the node writes its tasks' secret files, one directory per
    /// allocation. Default `/dev/shm/orion-secrets`: a tmpfs on Linux, so
    /// secrets are never written to disk; the node refuses to write them to a
    /// directory that is not on a tmpfs.
    pub secrets_dir: PathBuf,
    /// Tuning of the node's loops (control loop, agent, scheduler, group commit).
    /// Default [`ClusterConfig::default`]. Not read from config files.
    #[serde(skip)]
    pub loops: ClusterConfig,
}

/// The default DNS address ([`NodeConfig::dns`]).
pub const DEFAULT_DNS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8600);

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            node_id: None,
            data_dir: PathBuf::from("orion-data"),
            role: NodeRole::Manager,
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            dns: Some(DEFAULT_DNS),
            dns_domain: orion_core::dns::DOMAIN.into(),
            dns_ttl: 0,
            dns_forward: Vec::new(),
            load_balancer: true,
            script_images: BTreeMap::new(),
            raft: SocketAddr::from(([127, 0, 0, 1], 7946)),
            gossip: SocketAddr::from(([127, 0, 0, 1], 7947)),
            advertise_http: None,
            join: Vec::new(),
            join_timeout: Duration::from_secs(120),
            tags: BTreeMap::new(),
            cpu: None,
            memory_mb: None,
            disk_mb: None,
            host_ip: IpAddr::from([127, 0, 0, 1]),
            port_range: (32000, 32767),
            host_volumes: Vec::new(),
            engine: Engine::default(),
            max_voters: 3,
            cluster_name: "orion".into(),
            insecure_dev: false,
            join_token: None,
            cert_expiry: orion_core::tls::DEFAULT_CERT_VALIDITY,
            data_key: None,
            autolock: false,
            unlock_key: None,
            secrets_dir: PathBuf::from(orion_core::agent::secrets::DEFAULT_SECRETS_DIR),
            loops: ClusterConfig::default(),
        }
    }
}

/// A [`NodeConfig`] field that cannot work, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
#[non_exhaustive]
pub struct ConfigError {
    /// The field, as named in config files and (with `-` for `_`) flags.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl ConfigError {
    /// A problem with `field`.
    pub fn new(field: &'static str, problem: impl Into<String>) -> Self {
        ConfigError {
            field,
            problem: problem.into(),
        }
    }
}

impl NodeConfig {
    /// Checks every field can work; the first problem names its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, problem: String| Err(ConfigError::new(field, problem));
        if let Some(id) = &self.node_id {
            orion_core::spec::check_dns_label(id).map_err(|p| ConfigError::new("node_id", p))?;
        }
        let dns = orion_core::dns::DnsConfig {
            domain: self.dns_domain.clone(),
            ..Default::default()
        };
        if let Err(p) = dns.domain_name() {
            return bad("dns_domain", p);
        }
        if self.data_dir.as_os_str().is_empty() {
            return bad("data_dir", "is empty".into());
        }
        if let Some(cpu) = self.cpu {
            if !(cpu.is_finite() && cpu > 0.0) {
                return bad("cpu", format!("{cpu} is not a positive number of cores"));
            }
        }
        if self.memory_mb == Some(0) {
            return bad("memory_mb", "0: a node must offer some memory".into());
        }
        let (lo, hi) = self.port_range;
        if lo == 0 || lo > hi {
            return bad(
                "port_range",
                format!("{lo}-{hi} is empty or starts at 0 (write LOW-HIGH, 1 ≤ LOW ≤ HIGH)"),
            );
        }
        if !(1..=7).contains(&self.max_voters) {
            return bad(
                "max_voters",
                format!("{}: use 1 to 7 (3 or 5 is usual)", self.max_voters),
            );
        }
        if self.cert_expiry < Duration::from_secs(2) {
            return bad(
                "cert_expiry",
                format!("{:?} is too short: at least 2s", self.cert_expiry),
            );
        }
        if let Some(t) = &self.join_token {
            if let Err(e) = orion_core::tls::JoinToken::parse(t) {
                return bad("join_token", e.to_string());
            }
        }
        if self.join_timeout.is_zero() {
            return bad("join_timeout", "is zero".into());
        }
        if let Some(a) = &self.advertise_http {
            if !is_host_port(a) {
                return bad("advertise_http", format!("{a:?} is not host:port"));
            }
        }
        if let Some(j) = self.join.iter().find(|j| !is_host_port(strip_scheme(j))) {
            return bad(
                "join",
                format!("{j:?} is not a member's HTTP address (host:port)"),
            );
        }
        if let Some(p) = self
            .host_volumes
            .iter()
            .find(|p| !p.is_absolute() || p.components().any(|c| c.as_os_str() == ".."))
        {
            return bad(
                "host_volumes",
                format!("{} must be an absolute path without ..", p.display()),
            );
        }
        if !self.secrets_dir.is_absolute() {
            return bad(
                "secrets_dir",
                format!("{} must be an absolute path", self.secrets_dir.display()),
            );
        }
        if self.cluster_name.trim().is_empty() {
            return bad("cluster_name", "is empty".into());
        }
        // The loops' own settings, checked here too: a node refuses them before
        // it opens its store or binds anything.
        match self.loops.validate() {
            Err(orion_core::ClusterError::Config { field, problem }) => return bad(field, problem),
            Err(other) => return bad("loops", other.to_string()),
            Ok(()) => {}
        }
        if self.autolock && self.insecure_dev {
            return bad(
                "autolock",
                "needs a secure node: there is nothing sealed to lock with insecure_dev".into(),
            );
        }
        Ok(())
    }
}

/// `http://host:port/` → `host:port`.
pub(crate) fn strip_scheme(addr: &str) -> &str {
    let a = addr
        .strip_prefix("http://")
        .or_else(|| addr.strip_prefix("https://"))
        .unwrap_or(addr);
    a.trim_end_matches('/')
}

fn is_host_port(s: &str) -> bool {
    s.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

/// Parses `LOW-HIGH`.
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (lo, hi) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?}: expected LOW-HIGH, e.g. 32000-32767"))?;
    let port = |p: &str| {
        p.trim()
            .parse::<u16>()
            .map_err(|_| format!("{s:?}: {p:?} is not a port"))
    };
    let (lo, hi) = (port(lo)?, port(hi)?);
    if lo == 0 || lo > hi {
        return Err(format!("{s:?}: empty or starts at 0"));
    }
    Ok((lo, hi))
}

/// `port_range` as the string `LOW-HIGH` in config files.
mod port_range {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(r: &(u16, u16), s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}-{}", r.0, r.1))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<(u16, u16), D::Error> {
        let s = String::deserialize(d)?;
        super::parse_port_range(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip() {
        let c = NodeConfig::default();
        c.validate().unwrap();
        let json = serde_json::to_string(&c).unwrap();
        let back: NodeConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        assert!(json.contains(r#""port_range":"32000-32767""#), "{json}");
        assert!(json.contains(r#""join_timeout":"2m""#), "{json}");
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(&str, NodeConfig)> = vec![
            (
                "node_id",
                NodeConfig {
                    node_id: Some("Not_DNS".into()),
                    ..Default::default()
                },
            ),
            (
                "cpu",
                NodeConfig {
                    cpu: Some(-1.0),
                    ..Default::default()
                },
            ),
            (
                "cpu",
                NodeConfig {
                    cpu: Some(f64::NAN),
                    ..Default::default()
                },
            ),
            (
                "memory_mb",
                NodeConfig {
                    memory_mb: Some(0),
                    ..Default::default()
                },
            ),
            (
                "port_range",
                NodeConfig {
                    port_range: (0, 10),
                    ..Default::default()
                },
            ),
            (
                "port_range",
                NodeConfig {
                    port_range: (20, 10),
                    ..Default::default()
                },
            ),
            (
                "max_voters",
                NodeConfig {
                    max_voters: 0,
                    ..Default::default()
                },
            ),
            (
                "join_timeout",
                NodeConfig {
                    join_timeout: Duration::ZERO,
                    ..Default::default()
                },
            ),
            (
                "join",
                NodeConfig {
                    join: vec!["nowhere".into()],
                    ..Default::default()
                },
            ),
            (
                "advertise_http",
                NodeConfig {
                    advertise_http: Some("x".into()),
                    ..Default::default()
                },
            ),
            (
                "data_dir",
                NodeConfig {
                    data_dir: PathBuf::new(),
                    ..Default::default()
                },
            ),
            (
                "cluster_name",
                NodeConfig {
                    cluster_name: " ".into(),
                    ..Default::default()
                },
            ),
        ];
        let loops = |f: fn(&mut ClusterConfig)| {
            let mut loops = ClusterConfig::default();
            f(&mut loops);
            NodeConfig {
                loops,
                ..Default::default()
            }
        };
        let cases = cases.into_iter().chain([
            (
                "control.reconcile_interval",
                loops(|l| l.control.reconcile_interval = Duration::ZERO),
            ),
            ("agent.tick", loops(|l| l.agent.tick = Duration::ZERO)),
            (
                "stats.interval",
                loops(|l| l.stats.interval = Duration::ZERO),
            ),
            ("batch.in_flight", loops(|l| l.batch.in_flight = 0)),
        ]);
        for (field, c) in cases {
            let e = c.validate().unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert!(e.to_string().starts_with(field), "{e}");
        }
    }

    #[test]
    fn config_files_use_flag_names_and_refuse_unknown_keys() {
        let c: NodeConfig = serde_json::from_str(
            r#"{"node_id":"n7","tags":{"disk":"ssd"},"port_range":"33000-33100",
                "join_timeout":"30s","role":"worker","engine":"sled","join":["http://10.0.0.1:8080"]}"#,
        )
        .unwrap();
        assert_eq!(c.node_id.as_deref(), Some("n7"));
        assert_eq!(c.port_range, (33000, 33100));
        assert_eq!(c.join_timeout, Duration::from_secs(30));
        assert_eq!(c.role, NodeRole::Worker);
        assert_eq!(c.engine, Engine::Sled);
        c.validate().unwrap();
        let e = serde_json::from_str::<NodeConfig>(r#"{"nodeid":"n7"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `nodeid`"), "{e}");
        let e = serde_json::from_str::<NodeConfig>(r#"{"port_range":"0-9"}"#).unwrap_err();
        assert!(e.to_string().contains("starts at 0"), "{e}");
    }

    #[test]
    fn autolock_needs_a_secure_node_and_is_read_from_config_files_without_a_key() {
        let c = NodeConfig {
            autolock: true,
            insecure_dev: true,
            ..NodeConfig::default()
        };
        let e = c.validate().unwrap_err();
        assert_eq!(e.field, "autolock", "{e}");
        let c: NodeConfig = serde_json::from_str(r#"{"autolock": true}"#).unwrap();
        assert!(c.autolock && c.unlock_key.is_none());
        c.validate().unwrap();
        assert!(serde_json::from_str::<NodeConfig>(r#"{"unlock_key": "ORNKEY-1-x"}"#).is_err());
    }
}
