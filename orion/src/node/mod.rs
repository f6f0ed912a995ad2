//! [`Node`]: one whole node of an Orion cluster — store (bootstrap or join),
//! gossip, agent, control loop and HTTP API — started from one [`NodeConfig`].
//!
//! ```text
//!  NodeConfig ──validate──▶ data dir + node-id file ──▶ bind HTTP
//!        │                                                     │
//!        ▼                                                     ▼
//!  autolocked? locked API until the unlock key (see autolock) ──▶ bind Raft, gossip
//!        │                                                     │
//!        ▼                                                     ▼
//!  RaftStore::open ──serve Raft──▶ bootstrap (no join) | join (POST /v1/cluster/peers)
//!        │                                                     │
//!        ▼                                                     ▼
//!  ChitchatMembership (seeded from the members) ──▶ orion_core::Cluster (agent,
//!                                                    control loop, HTTP API)
//! ```

mod autolock;
mod ca;
mod config;
mod data_key;
mod gossip_keys;
mod identity;
mod join;
mod store_guard;
mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use orion_core::{
    Cluster, ClusterConfig, ClusterError, Member, NodeAddrs, NodeProfile, NodeRole, Peer,
    Resources, Runtime, Store, StoreError,
};
use orion_gossip::{ChitchatMembership, GossipConfig};
use orion_store::{Engine, RaftStore, RaftStoreConfig};
use tracing::info;

pub use autolock::is_locked as is_autolocked;
pub use config::{parse_port_range, ConfigError, NodeConfig};
pub use data_key::DATA_KEY_FILE;
pub use tls::TLS_DIR;

/// Starts whole nodes: `Node::builder()` (every default), or
/// [`Node::from_config`] (a config read from a file). The running node is a
/// [`Cluster`] handle.
///
/// ```no_run
/// use orion::{DockerRuntime, Node, NodeRole};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let cluster = Node::builder()
///     .node_id("n2")
///     .data_dir("/var/lib/orion")
///     .join(["10.0.0.1:8080"])
///     .role(NodeRole::Manager)
///     .runtime(DockerRuntime::connect_local()?)
///     .start()
///     .await?;
/// println!("{} is up; the leader is {:?}", cluster.node_id(), cluster.leader().leader);
/// cluster.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Node;

impl Node {
    /// A builder with every default of [`NodeConfig`]: a manager forming (or, on
    /// a restart, rejoining) its own cluster in `./orion-data`, listening on
    /// Orion's ports on loopback.
    pub fn builder() -> NodeBuilder {
        Node::from_config(NodeConfig::default())
    }

    /// A builder starting from `config` (a config file's contents, say).
    pub fn from_config(config: NodeConfig) -> NodeBuilder {
        NodeBuilder {
            config,
            runtime: None,
        }
    }
}

/// Why a node did not start. Nothing it had opened is left running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// A config field cannot work.
    #[error("invalid node config: {0}")]
    Config(#[from] ConfigError),
    /// No runtime was given.
    #[error("no runtime: give one with .runtime(..) (DockerRuntime::connect_local()?, say)")]
    NoRuntime,
    /// The data dir was made for another node.
    #[error("data dir {dir} belongs to node {stored:?}, not {given:?}: start it as {stored:?}, or give a fresh data dir")]
    WrongNode {
        /// The data dir.
        dir: PathBuf,
        /// The id it was first started with.
        stored: String,
        /// The id this start asked for.
        given: String,
    },
    /// Reading or writing the data dir failed.
    #[error("data dir {path}: {source}")]
    DataDir {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A listen address could not be bound.
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        /// Which listener (`http`, `raft`, `gossip`).
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store failed to open, serve or bootstrap.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The data dir held a store that is gone or empty now: starting would
    /// make a new, empty cluster beside the old one's containers.
    #[error("data dir {dir} held a Raft store, and {what}: not starting a new, empty cluster on it. Restore the data dir from a backup, or remove it and rejoin the cluster from its peers (orion-node agent --join <a manager> --data-dir <a new dir>)")]
    StoreGone {
        /// The data dir.
        dir: PathBuf,
        /// What is missing.
        what: String,
    },
    /// No member took this node within `join_timeout`, or one refused it.
    #[error("join: {0}")]
    Join(String),
    /// Gossip could not start.
    #[error("gossip on {addr}: {reason}")]
    Gossip {
        /// The gossip address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The node's loops could not start.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A file at rest could not be read or written: sealed (autolock) and
    /// the unlock key given is not its, or damaged, or unreadable.
    #[error(transparent)]
    AtRest(#[from] orion_core::at_rest::AtRestError),
}

/// Builds one node; see [`Node`]. Every setter writes one field of the
/// [`NodeConfig`] it holds, so none overrides another.
#[must_use = "a builder does nothing until .start() is awaited"]
pub struct NodeBuilder {
    config: NodeConfig,
    runtime: Option<Arc<dyn Runtime>>,
}

impl std::fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("config", &self.config)
            .field("runtime", &self.runtime.is_some())
            .finish()
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty => |$c:ident, $v:ident| $set:expr;)*) => {$(
        $(#[$doc])*
        pub fn $name(mut self, $v: $ty) -> Self {
            let $c = &mut self.config;
            $set;
            self
        }
    )*};
}

impl NodeBuilder {
    setters! {
        /// This node's id ([`NodeConfig::node_id`]).
        node_id: impl Into<String> => |c, v| c.node_id = Some(v.into());
        /// Where it keeps its data ([`NodeConfig::data_dir`]).
        data_dir: impl Into<PathBuf> => |c, v| c.data_dir = v.into();
        /// Manager or worker ([`NodeConfig::role`]).
        role: NodeRole => |c, v| c.role = v;
        /// Members to join through ([`NodeConfig::join`]); empty forms a new cluster.
        join: impl IntoIterator<Item = impl Into<String>> => |c, v| c.join = v.into_iter().map(Into::into).collect();
        /// How long to keep trying to join ([`NodeConfig::join_timeout`]).
        join_timeout: std::time::Duration => |c, v| c.join_timeout = v;
        /// The HTTP API's listen address ([`NodeConfig::http`]).
        http: SocketAddr => |c, v| c.http = v;
        /// DNS listen address ([`NodeConfig::dns`]); port 0 picks a free one.
        dns: SocketAddr => |c, v| c.dns = Some(v);
        /// DNS domain ([`NodeConfig::dns_domain`]).
        dns_domain: impl Into<String> => |c, v| c.dns_domain = v.into();
        /// DNS record TTL, seconds ([`NodeConfig::dns_ttl`]).
        dns_ttl: u32 => |c, v| c.dns_ttl = v;
        /// Adds an upstream DNS server for other names ([`NodeConfig::dns_forward`]).
        dns_forward: SocketAddr => |c, v| c.dns_forward.push(v);
        /// The image that runs a script language ([`NodeConfig::script_images`]).
        script_image: (orion_core::spec::Lang, &str) => |c, v| { c.script_images.insert(v.0, v.1.into()); };
        /// Whether to run the load balancer ([`NodeConfig::load_balancer`]).
        load_balancer: bool => |c, v| c.load_balancer = v;
        /// The Raft listen address ([`NodeConfig::raft`]).
        raft: SocketAddr => |c, v| c.raft = v;
        /// The gossip listen address ([`NodeConfig::gossip`]).
        gossip: SocketAddr => |c, v| c.gossip = v;
        /// The HTTP address others reach this node at ([`NodeConfig::advertise_http`]).
        advertise_http: impl Into<String> => |c, v| c.advertise_http = Some(v.into());
        /// Adds a tag for selectors ([`NodeConfig::tags`]).
        tag: (&str, &str) => |c, v| { c.tags.insert(v.0.into(), v.1.into()); };
        /// CPU cores offered to tasks ([`NodeConfig::cpu`]).
        cpu: f64 => |c, v| c.cpu = Some(v);
        /// Memory offered to tasks, MiB ([`NodeConfig::memory_mb`]).
        memory_mb: u64 => |c, v| c.memory_mb = Some(v);
        /// Disk offered to tasks, MiB ([`NodeConfig::disk_mb`]).
        disk_mb: u64 => |c, v| c.disk_mb = Some(v);
        /// Host IP task ports are published on ([`NodeConfig::host_ip`]).
        host_ip: std::net::IpAddr => |c, v| c.host_ip = v;
        /// Dynamic host port range ([`NodeConfig::port_range`]).
        port_range: (u16, u16) => |c, v| c.port_range = v;
        /// Raft log engine ([`NodeConfig::engine`]).
        engine: Engine => |c, v| c.engine = v;
        /// Most Raft voters ([`NodeConfig::max_voters`]).
        max_voters: usize => |c, v| c.max_voters = v;
        /// Gossip cluster name ([`NodeConfig::cluster_name`]).
        cluster_name: impl Into<String> => |c, v| c.cluster_name = v.into();
        /// Allows tasks to mount a host path and what is under it ([`NodeConfig::host_volumes`]).
        host_volume: impl Into<PathBuf> => |c, v| c.host_volumes.push(v.into());
        /// Tuning of the node's loops ([`NodeConfig::loops`]).
        loops: ClusterConfig => |c, v| c.loops = v;
        /// Turns token checks off, for a throwaway cluster ([`NodeConfig::insecure_dev`]).
        insecure_dev: bool => |c, v| c.insecure_dev = v;
        /// The join token presented when joining ([`NodeConfig::join_token`]).
        join_token: impl Into<String> => |c, v| c.join_token = Some(v.into());
        /// How long issued node certificates last ([`NodeConfig::cert_expiry`]).
        cert_expiry: std::time::Duration => |c, v| c.cert_expiry = v;
        /// The cluster's data key, for a node that joins ([`NodeConfig::data_key`]).
        data_key: orion_core::secret::DataKey => |c, v| c.data_key = Some(v);
        /// Where tasks' secret files go, on a tmpfs ([`NodeConfig::secrets_dir`]).
        secrets_dir: impl Into<PathBuf> => |c, v| c.secrets_dir = v.into();
        /// Keeps the data dir's secret files sealed under an unlock key ([`NodeConfig::autolock`]).
        autolock: bool => |c, v| c.autolock = v;
        /// The unlock key of an autolocked data dir ([`NodeConfig::unlock_key`]).
        unlock_key: orion_core::at_rest::UnlockKey => |c, v| c.unlock_key = Some(v);
    }

    /// Listens for HTTP, Raft and gossip on free loopback ports: for tests and
    /// for several nodes in one process.
    pub fn loopback_ports(self) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        self.http(any).raft(any).gossip(any).dns(any)
    }

    /// The runtime this node drives.
    pub fn runtime<R: Runtime>(self, runtime: R) -> Self {
        self.runtime_shared(Arc::new(runtime))
    }

    /// The runtime, shared with the caller.
    pub fn runtime_shared(mut self, runtime: Arc<dyn Runtime>) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// The config as set so far.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Starts the node: checks the config, opens the data dir (refusing one made
    /// for another node), binds its HTTP listener; an autolocked data dir
    /// without [`NodeConfig::unlock_key`] then waits, serving only the locked
    /// API on it, until `POST /v1/cluster/unlock` brings its key (logged once,
    /// with how to unlock). Then it binds the Raft and gossip listeners, opens and serves the store,
    /// bootstraps a new cluster or joins through `join`, starts gossip seeded from
    /// the members, then the agent, the control loop and the HTTP API.
    ///
    /// Returns once the loops run; [`Cluster::ready`] waits for the node to be
    /// registered with the leader.
    pub async fn start(self) -> Result<Cluster, NodeError> {
        let c = self.config;
        c.validate()?;
        orion_core::tls::ensure_default_provider();
        let runtime = self.runtime.ok_or(NodeError::NoRuntime)?;
        let dir = &c.data_dir;
        std::fs::create_dir_all(dir).map_err(|source| NodeError::DataDir {
            path: dir.clone(),
            source,
        })?;
        let id = identity::node_id(dir, c.node_id.as_deref())?;
        // A data dir whose store was made and is gone never starts afresh.
        store_guard::check(dir)?;
        // A new data dir forming a new cluster: it makes the data key.
        let fresh = c.join.is_empty() && !dir.join("store").exists();

        let http = bind("http", c.http, std::net::TcpListener::bind(c.http))?;
        let http_bound = bind("http", c.http, http.local_addr())?;
        let http_addr = c
            .advertise_http
            .clone()
            .unwrap_or_else(|| http_bound.to_string());
        // Autolock: a locked data dir opens only with its unlock key; until
        // then no store, no Raft or gossip port, only the locked API.
        let was_locked = autolock::is_locked(dir);
        let unlock_key = autolock::unlock(&c, &id, &http).await?;
        let raft_listener = bind("raft", c.raft, tokio::net::TcpListener::bind(c.raft).await)?;
        let raft_addr = bind("raft", c.raft, raft_listener.local_addr())?;
        let gossip_addr = bind("gossip", c.gossip, gossip_port(c.gossip))?;

        // Secure (the default): the node's TLS material, made by the first
        // node, received at join, or kept from an earlier start.
        let material = if c.insecure_dev {
            None
        } else {
            let tls_dir = dir.join(tls::TLS_DIR);
            std::fs::create_dir_all(&tls_dir).map_err(|source| NodeError::DataDir {
                path: tls_dir.clone(),
                source,
            })?;
            let raft = raft_addr.to_string();
            let me = tls::subject(&id, c.role, &[http_addr.as_str(), raft.as_str()]);
            let sealed = unlock_key.as_ref();
            Some(match tls::load(&tls_dir, sealed)? {
                Some(m) => m,
                None if c.join.is_empty() => {
                    tls::create(&tls_dir, &c.cluster_name, &me, c.cert_expiry, sealed)?
                }
                None => {
                    let token = c.join_token.as_deref().ok_or_else(|| {
                        NodeError::Join(
                            "joining a secure cluster needs its join token (--join-token ORN-1-…; \
                             `orion-node cluster join-token worker` on a manager prints it)"
                                .into(),
                        )
                    })?;
                    tls::join(&tls_dir, &c.join, token, &me, c.join_timeout, sealed).await?
                }
            })
        };
        let tls_state = material.as_ref().map(|m| m.tls.clone());
        // The data key: kept here, else given, else carried by the join,
        // else (a new cluster) made; before the store opens, so a store never
        // outlives the start that was to make its cluster's key.
        let granted = material.as_ref().and_then(|m| m.data_key.clone());
        let granted_gossip = material.as_ref().and_then(|m| m.gossip_keys.clone());
        // The key the files are sealed under: the one checked or made above,
        // or the cluster's, carried by a manager's join.
        let unlock_key = material.as_ref().and_then(|m| m.unlock_key.clone());
        let data_key = data_key::load_or_make(
            dir,
            c.data_key.as_ref().or(granted.as_ref()),
            fresh,
            unlock_key.as_ref(),
        )?;
        if let Some(key) = &unlock_key {
            autolock::seal_all(dir, key)?;
            if !was_locked {
                info!(key_id = %key.id(), "autolock on: the data dir's secret files are sealed; a restarted node needs the unlock key (`orion-node cluster unlock`)");
            }
        }

        let mut store_config = RaftStoreConfig::new(id.clone(), dir.join("store"));
        store_config.engine = c.engine;
        store_config.raft_addr = raft_addr.to_string();
        store_config.http_addr = http_addr.clone();
        store_config.max_voters = c.max_voters;
        let store = RaftStore::open_tls(store_config, tls_state.clone()).await?;
        store_guard::mark(dir)?;
        let pki = material.map(|m| {
            let pki = orion_core::cluster::pki::Pki::new(
                m.tls,
                m.ca,
                c.cert_expiry,
                Some(dir.join(tls::TLS_DIR).join("join-tokens.json")),
            );
            Arc::new(match m.unlock_key {
                Some(k) => pki.sealed_under(k),
                None => pki,
            })
        });
        match bootstrap_or_join(
            &store,
            raft_listener,
            &c,
            &id,
            &http_addr,
            raft_addr,
            tls_state.as_ref(),
        )
        .await
        {
            Ok(seeds) => {
                // Secure: gossip is sealed from the first packet.
                let gossip_keys = if c.insecure_dev {
                    Ok(None)
                } else {
                    gossip_keys::initial(
                        &dir.join(tls::TLS_DIR),
                        &store,
                        data_key.as_ref(),
                        granted_gossip,
                        c.join.is_empty(),
                        unlock_key.as_ref(),
                    )
                };
                let gossip_keys = match gossip_keys {
                    Ok(k) => k,
                    Err(e) => {
                        let _ = store.shutdown().await;
                        return Err(e);
                    }
                };
                let ring = match gossip_keys.as_ref().map(gossip_keys::keyring).transpose() {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = store.shutdown().await;
                        return Err(e);
                    }
                };
                if !c.insecure_dev && ring.is_none() {
                    tracing::warn!("this node has no gossip key (it joined before the cluster sealed its gossip): it gossips in clear text");
                }
                let membership = start_gossip(
                    &c,
                    &id,
                    &http_addr,
                    raft_addr,
                    gossip_addr,
                    seeds,
                    ring.clone(),
                )
                .await
                .map_err(|e| (e, store.clone()));
                let membership = match membership {
                    Ok(m) => m,
                    Err((e, store)) => {
                        let _ = store.shutdown().await;
                        return Err(e);
                    }
                };
                let mut profile = NodeProfile::default();
                profile.id = Some(id.clone());
                profile.role = c.role;
                profile.capacity = Some(capacity(&c));
                profile.tags = c.tags.clone();
                profile.host_ip = c.host_ip.to_string();
                profile.port_range = c.port_range;
                profile.advertise_http = Some(http_addr.clone());
                profile.raft_addr = Some(raft_addr.to_string());
                profile.gossip_addr = Some(gossip_addr.to_string());
                profile.host_volumes = c
                    .host_volumes
                    .iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect();
                let mut loops = c.loops.clone();
                loops.acl = orion_core::acl::AclConfig {
                    enforce: !c.insecure_dev,
                    insecure_dev: c.insecure_dev,
                };
                let mut builder = Cluster::builder()
                    .node(profile)
                    .runtime_shared(runtime)
                    .store(store.clone())
                    .membership(membership.clone())
                    .config(loops)
                    .load_balancer(c.load_balancer)
                    .scripts(orion_core::agent::Scripts {
                        // The engine binds it by path: make it absolute.
                        dir: std::path::absolute(c.data_dir.join("scripts"))
                            .unwrap_or_else(|_| c.data_dir.join("scripts")),
                        images: c.script_images.clone(),
                    })
                    .dns_config(orion_core::dns::DnsConfig {
                        domain: c.dns_domain.clone(),
                        ttl: c.dns_ttl,
                        forward: c.dns_forward.clone(),
                    })
                    .secrets_dir(c.secrets_dir.clone())
                    .http_listener(http);
                if let Some(pki) = &pki {
                    builder = builder.pki(pki.clone());
                }
                if let Some(key) = data_key.clone() {
                    builder = builder.data_key(key);
                }
                match c.dns {
                    // The default port taken (another node on this host): no DNS
                    // here, said once — decided when binding, so two nodes
                    // starting at once cannot both see it free.
                    Some(addr) if addr == config::DEFAULT_DNS => {
                        builder = builder.dns_if_free(addr)
                    }
                    Some(addr) => builder = builder.dns(addr),
                    None => {}
                }
                let started = builder.start().await;
                match started {
                    Ok(cluster) => {
                        if !c.insecure_dev && c.join.is_empty() {
                            let made = async {
                                bootstrap_tokens(&cluster, &c.data_dir).await?;
                                cluster
                                    .ensure_join_tokens()
                                    .await
                                    .map_err(NodeError::Cluster)
                            };
                            if let Err(e) = made.await {
                                cluster.shutdown().await;
                                return Err(e);
                            }
                        }
                        if let (Some(ring), Some(mut keys)) = (ring, gossip_keys) {
                            if c.join.is_empty() {
                                // The first node commits the key its gossip
                                // uses (kept if one is committed already).
                                match cluster.ensure_gossip_keys(keys.clone()).await {
                                    Ok(k) => keys = k,
                                    Err(e) => {
                                        tracing::warn!(error = %error_text(&e), "the gossip keyring could not be committed yet; this node goes on with its own")
                                    }
                                }
                            }
                            gossip_keys::spawn_follow(
                                cluster.background(),
                                membership.clone(),
                                ring,
                                keys,
                                dir.join(tls::TLS_DIR),
                                unlock_key.clone(),
                            );
                        }
                        if let Some(pki) = &pki {
                            if c.role == NodeRole::Manager && pki.ca().is_some() {
                                // The CA key into the replicated state, sealed
                                // (once: kept when a record is committed).
                                if let Err(e) = cluster.ensure_ca_record().await {
                                    tracing::warn!(error = %error_text(&e), "the CA record could not be committed yet; the next manager start tries again");
                                }
                            }
                            ca::spawn_follow(
                                cluster.background(),
                                pki.clone(),
                                dir.join(tls::TLS_DIR),
                            );
                            info!(fingerprint = %format!("SHA256:{}", pki.ca_fingerprint()), ca = %dir.join(tls::TLS_DIR).join("ca.pem").display(), "TLS on: the cluster CA (pin this fingerprint; give the file to the CLI as --ca-cert)");
                            let replica = store.replica().clone();
                            let raft = raft_addr.to_string();
                            tls::spawn_renewal(
                                pki.clone(),
                                dir.join(tls::TLS_DIR),
                                tls::subject(&id, c.role, &[http_addr.as_str(), raft.as_str()]),
                                move || {
                                    replica.read(|s| {
                                        s.nodes
                                            .values()
                                            .filter(|n| n.info.role == NodeRole::Manager)
                                            .map(|n| n.info.addrs.http.clone())
                                            .collect()
                                    })
                                },
                                cluster.on_shutdown(),
                            );
                        }
                        info!(node_id = %id, http = %http_addr, raft = %raft_addr, gossip = %gossip_addr, "orion node running");
                        Ok(cluster)
                    }
                    Err(e) => {
                        orion_core::Membership::shutdown(&membership).await;
                        let _ = store.shutdown().await;
                        Err(e.into())
                    }
                }
            }
            Err(e) => {
                let _ = store.shutdown().await;
                Err(e)
            }
        }
    }
}

/// The file the first node keeps the bootstrap management token in.
pub const MANAGEMENT_TOKEN_FILE: &str = "management.token";

/// On the first node of a cluster, the first time: makes the management token
/// and keeps it in `<data_dir>/management.token`, readable by this user only.
/// The secret is written (to a `.new` file, synced) before it is committed and
/// the file renamed after, so a crash in between leaves a `.new` file that the
/// next start recognizes. A restart of a bootstrapped cluster changes nothing.
async fn bootstrap_tokens(cluster: &Cluster, dir: &std::path::Path) -> Result<(), NodeError> {
    let path = dir.join(MANAGEMENT_TOKEN_FILE);
    let pending = dir.join(format!("{MANAGEMENT_TOKEN_FILE}.new"));
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| NodeError::DataDir { path, source }
    };
    let write = |secret: &str| {
        orion_core::cluster::pki::write_synced_private(&pending, format!("{secret}\n").as_bytes())
    };
    if cluster
        .bootstrap_acl(write)
        .await
        .map_err(NodeError::Cluster)?
    {
        std::fs::rename(&pending, &path).map_err(io(&path))?;
        info!(path = %path.display(), "API tokens are on: the management token is in this file");
    } else if !path.exists() {
        // Committed, then stopped before the rename: the pending file holds it.
        let kept = std::fs::read_to_string(&pending).unwrap_or_default();
        if cluster.token_for(kept.trim()).is_some() {
            std::fs::rename(&pending, &path).map_err(io(&path))?;
        }
    }
    Ok(())
}

/// Serves the store's Raft RPCs, then bootstraps a one-voter cluster (no `join`)
/// or asks a member to add this node; returns the gossip seeds: the members'
/// gossip addresses from the join, and on a restart those the replica knows.
async fn bootstrap_or_join(
    store: &RaftStore,
    raft_listener: tokio::net::TcpListener,
    c: &NodeConfig,
    id: &str,
    http_addr: &str,
    raft_addr: SocketAddr,
    tls: Option<&orion_core::tls::TlsState>,
) -> Result<Vec<String>, NodeError> {
    store.serve(raft_listener)?;
    let mut seeds = if c.join.is_empty() {
        store.initialize_single().await?;
        Vec::new()
    } else {
        let me = Peer {
            id: id.to_string(),
            raft_addr: raft_addr.to_string(),
            http_addr: http_addr.to_string(),
            role: c.role,
        };
        if store.own_record().await.as_ref() == Some(&me) {
            // Restarted with its data: a member already, it catches up from
            // the leader on its own, whether or not `join` answers now.
            info!(node = %id, "already a member of the cluster (its data dir holds the membership): not joining again");
            Vec::new()
        } else {
            join::join(&c.join, &me, c.join_timeout, tls).await?
        }
    };
    seeds.extend(store.replica().read(|s| {
        s.nodes
            .values()
            .filter(|n| n.info.id != id)
            .filter_map(|n| n.info.addrs.gossip.clone())
            .collect::<Vec<_>>()
    }));
    seeds.sort();
    seeds.dedup();
    Ok(seeds)
}

async fn start_gossip(
    c: &NodeConfig,
    id: &str,
    http_addr: &str,
    raft_addr: SocketAddr,
    gossip_addr: SocketAddr,
    seeds: Vec<String>,
    keyring: Option<orion_gossip::Keyring>,
) -> Result<ChitchatMembership, NodeError> {
    let member = Member {
        id: id.to_string(),
        generation: 0,
        addrs: NodeAddrs {
            http: http_addr.to_string(),
            raft: Some(raft_addr.to_string()),
            gossip: Some(gossip_addr.to_string()),
        },
        role: c.role,
        capacity: capacity(c),
        used: Resources::ZERO,
        tags: c.tags.clone(),
        load: Default::default(),
        suspects: Default::default(),
        starved: false,
    };
    let mut gossip = GossipConfig::new(member);
    gossip.listen_addr = gossip_addr;
    gossip.seeds = seeds;
    gossip.cluster_id = c.cluster_name.clone();
    gossip.keyring = keyring;
    ChitchatMembership::start(gossip)
        .await
        .map_err(|e| NodeError::Gossip {
            addr: gossip_addr,
            reason: error_text(&e),
        })
}

/// A listener's I/O result, as the error naming it.
fn bind<T>(what: &'static str, addr: SocketAddr, r: std::io::Result<T>) -> Result<T, NodeError> {
    r.map_err(|source| NodeError::Bind { what, addr, source })
}

/// An error and its causes on one line.
pub(crate) fn error_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text
}

/// The gossip address: as given, or with a port free on its IP now when it is 0
/// (chitchat advertises the address it binds, so it cannot pick one itself).
fn gossip_port(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    std::net::UdpSocket::bind(addr)?.local_addr()
}

/// What the node offers: the config where given, else what the host has (CPU
/// and memory as [`orion_core::cluster::host_capacity`] detects them, disk as
/// the space free on the data dir's file system).
pub(crate) fn capacity(c: &NodeConfig) -> Resources {
    capacity_over(c, orion_core::cluster::host_capacity())
}

/// [`capacity`] over what was `detected`.
fn capacity_over(c: &NodeConfig, detected: Resources) -> Resources {
    Resources {
        cpu: c.cpu.unwrap_or(detected.cpu),
        memory_mb: c.memory_mb.unwrap_or(detected.memory_mb),
        disk_mb: c
            .disk_mb
            .unwrap_or_else(|| free_disk_mb(&c.data_dir).unwrap_or(detected.disk_mb)),
    }
}

/// Space free to unprivileged users on the file system holding `dir`, in MB.
fn free_disk_mb(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize) / (1024 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_not_given_is_detected_and_given_wins() {
        let dir = tempfile::tempdir().unwrap();
        let config = NodeConfig {
            data_dir: dir.path().to_path_buf(),
            ..NodeConfig::default()
        };
        let detected = Resources {
            cpu: 3.0,
            memory_mb: 1234,
            disk_mb: 0,
        };
        let c = capacity_over(&config, detected);
        assert_eq!(
            (c.cpu, c.memory_mb),
            (3.0, 1234),
            "the detected CPU and memory"
        );
        let free = rustix::fs::statvfs(dir.path()).unwrap();
        let free_mb = free.f_bavail * free.f_frsize / (1024 * 1024);
        // The file system's free space, give or take what other writers did
        // between the two reads.
        assert!(
            c.disk_mb > 0 && c.disk_mb.abs_diff(free_mb) < 1024,
            "{} vs {free_mb}",
            c.disk_mb
        );
        let missing = NodeConfig {
            data_dir: dir.path().join("not-there"),
            ..NodeConfig::default()
        };
        assert_eq!(
            capacity_over(&missing, detected).disk_mb,
            0,
            "no file system to read: the detected disk (none)"
        );
        let given = NodeConfig {
            cpu: Some(2.5),
            memory_mb: Some(512),
            disk_mb: Some(7),
            ..config
        };
        let c = capacity_over(&given, detected);
        assert_eq!((c.cpu, c.memory_mb, c.disk_mb), (2.5, 512, 7));
    }
}
