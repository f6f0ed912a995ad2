//! Starting a node from resolved settings: store (served on its Raft port),
//! gossip, then the cluster with its HTTP API. Used by `agent` and by `dev`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use orion_core::{
    Cluster, ClusterConfig, Member, NodeAddrs, NodeConfig, NodeRole, NodeView, Peer, Resources,
    Runtime,
};
use orion_gossip::{ChitchatMembership, GossipConfig};
use orion_store::{Engine, RaftStore, RaftStoreConfig};
use tracing::info;

use crate::cli::AgentArgs;

/// Everything a node needs, with defaults filled in.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub http: SocketAddr,
    pub node_id: Option<String>,
    pub tags: Vec<(String, String)>,
    pub cpu: Option<f64>,
    pub memory_mb: Option<u64>,
    pub disk_mb: Option<u64>,
    pub host_ip: String,
    pub port_range: (u16, u16),
    pub join: Option<String>,
    pub role: NodeRole,
    pub raft: SocketAddr,
    pub gossip: SocketAddr,
    pub engine: Engine,
    pub advertise_http: Option<String>,
    pub max_voters: usize,
    pub join_timeout: Duration,
    pub config: ClusterConfig,
}

impl Settings {
    /// Settings from the agent's flags (and config file), defaults filled in.
    pub fn from_args(args: AgentArgs) -> Result<Settings> {
        let args = crate::config::merge(args)?;
        let engine = match args.engine.as_deref() {
            None => Engine::default(),
            Some("redb") => Engine::Redb,
            Some("sled") => Engine::Sled,
            Some(other) => bail!("unknown engine {other:?}: expected redb or sled"),
        };
        Ok(Settings {
            data_dir: args
                .data_dir
                .ok_or_else(|| anyhow!("--data-dir is required (or data_dir in --config)"))?,
            http: args.http.unwrap_or(([127, 0, 0, 1], 8080).into()),
            node_id: args.node_id,
            tags: args.tags,
            cpu: args.cpu,
            memory_mb: args.memory_mb,
            disk_mb: args.disk_mb,
            host_ip: args.host_ip.unwrap_or_else(|| "127.0.0.1".into()),
            port_range: args.port_range.unwrap_or((32000, 32767)),
            join: args.join,
            role: args.role.unwrap_or_default(),
            raft: args.raft.unwrap_or(([127, 0, 0, 1], 7946).into()),
            gossip: args.gossip.unwrap_or(([127, 0, 0, 1], 7947).into()),
            engine,
            advertise_http: args.advertise_http,
            max_voters: match args.max_voters {
                None => 3,
                Some(n @ 1..=7) => n,
                Some(n) => bail!("--max-voters {n}: use 1 to 7 (3 or 5 is usual)"),
            },
            join_timeout: Duration::from_secs(args.join_timeout.unwrap_or(120)),
            config: ClusterConfig::default(),
        })
    }
}

/// A started node and the store it owns.
pub struct RunningNode {
    pub cluster: Cluster,
}

/// The node id: given, else the one this data dir was first started with, else
/// the host name. Remembered in the data dir so a restart keeps it.
fn node_id(settings: &Settings) -> Result<String> {
    let file = settings.data_dir.join("node-id");
    let stored = std::fs::read_to_string(&file)
        .ok()
        .map(|s| s.trim().to_string());
    let id = match (&settings.node_id, stored) {
        (Some(given), Some(stored)) if *given != stored => bail!(
            "data dir {} belongs to node {stored:?}, not {given:?}",
            settings.data_dir.display()
        ),
        (Some(given), _) => given.clone(),
        (None, Some(stored)) => stored,
        (None, None) => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_lowercase())
            .unwrap_or_else(|_| "node-1".into()),
    };
    orion_core::spec::check_dns_label(&id).map_err(|p| anyhow!("node id: {p}"))?;
    std::fs::write(&file, &id).with_context(|| format!("writing {}", file.display()))?;
    Ok(id)
}

/// What the node offers: the flags where given, else what the host has (CPU and
/// memory as [`orion_core::cluster::host_capacity`] detects them, disk as the space
/// free on the data directory's file system when the node starts).
fn capacity(s: &Settings) -> Resources {
    let detected = orion_core::cluster::host_capacity();
    Resources {
        cpu: s.cpu.unwrap_or(detected.cpu),
        memory_mb: s.memory_mb.unwrap_or(detected.memory_mb),
        disk_mb: s
            .disk_mb
            .unwrap_or_else(|| free_disk_mb(&s.data_dir).unwrap_or(detected.disk_mb)),
    }
}

/// Space free to unprivileged users on the file system holding `dir`, in MB.
fn free_disk_mb(dir: &std::path::Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize) / (1024 * 1024))
}

/// Starts a node: opens and serves the store, joins or bootstraps the Raft group,
/// starts gossip, then the cluster loops and the HTTP API.
pub async fn start(settings: Settings, runtime: Arc<dyn Runtime>) -> Result<RunningNode> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating {}", settings.data_dir.display()))?;
    let id = node_id(&settings)?;
    let http = std::net::TcpListener::bind(settings.http)
        .with_context(|| format!("binding the HTTP API to {}", settings.http))?;
    let http_addr = match &settings.advertise_http {
        Some(a) => a.clone(),
        None => http.local_addr()?.to_string(),
    };
    let raft_listener = tokio::net::TcpListener::bind(settings.raft)
        .await
        .with_context(|| format!("binding Raft to {}", settings.raft))?;
    let raft_addr = raft_listener.local_addr()?;

    let mut store_config = RaftStoreConfig::new(id.clone(), settings.data_dir.join("store"));
    store_config.engine = settings.engine;
    store_config.raft_addr = raft_addr.to_string();
    store_config.http_addr = http_addr.clone();
    store_config.max_voters = settings.max_voters;
    let store = RaftStore::open(store_config)
        .await
        .context("opening the store")?;
    store.serve(raft_listener)?;

    let peer = Peer {
        id: id.clone(),
        raft_addr: raft_addr.to_string(),
        http_addr: http_addr.clone(),
        role: settings.role,
    };
    let mut seeds = Vec::new();
    match &settings.join {
        None => store
            .initialize_single()
            .await
            .context("bootstrapping the store")?,
        Some(target) => seeds = join(target, &peer, settings.join_timeout).await?,
    }
    // On a restart the replica already knows the other nodes' gossip addresses.
    seeds.extend(orion_core::Store::replica(&store).read(|s| {
        s.nodes
            .values()
            .filter(|n| n.info.id != id)
            .filter_map(|n| n.info.addrs.gossip.clone())
            .collect::<Vec<_>>()
    }));
    seeds.sort();
    seeds.dedup();

    let tags: std::collections::BTreeMap<String, String> = settings.tags.iter().cloned().collect();
    let capacity = capacity(&settings);
    let addrs = NodeAddrs {
        http: http_addr.clone(),
        raft: Some(raft_addr.to_string()),
        gossip: Some(settings.gossip.to_string()),
    };
    let member = Member {
        id: id.clone(),
        generation: 0,
        addrs: addrs.clone(),
        role: settings.role,
        capacity,
        used: Resources::ZERO,
        tags: tags.clone(),
    };
    let mut gossip = GossipConfig::new(member);
    gossip.listen_addr = settings.gossip;
    gossip.seeds = seeds;
    let membership = ChitchatMembership::start(gossip)
        .await
        .with_context(|| format!("starting gossip on {}", settings.gossip))?;

    let cluster = Cluster::builder()
        .node(NodeConfig {
            id: Some(id.clone()),
            role: settings.role,
            capacity: Some(capacity),
            tags,
            host_ip: settings.host_ip.clone(),
            port_range: settings.port_range,
            advertise_http: Some(http_addr.clone()),
            raft_addr: addrs.raft.clone(),
            gossip_addr: addrs.gossip.clone(),
        })
        .runtime_shared(runtime)
        .store(store)
        .membership_shared(Arc::new(membership))
        .config(settings.config.clone())
        .http_listener(http)
        .start()
        .await?;
    info!(node_id = %id, http = %http_addr, raft = %raft_addr, gossip = %settings.gossip, "orion node running");
    Ok(RunningNode { cluster })
}

/// Asks a member to add this node to the cluster; returns the members' gossip
/// addresses, to seed gossip with.
async fn join(target: &str, me: &Peer, limit: Duration) -> Result<Vec<String>> {
    let base = crate::client::base_url(target);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(90))
        .build()?;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let r = client
            .post(format!("{base}/v1/cluster/peers"))
            .json(me)
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => break,
            Ok(r) if r.status().is_client_error() => {
                bail!(
                    "{target} refused to add this node: {}",
                    r.text().await.unwrap_or_default()
                )
            }
            Ok(r) => info!(status = %r.status(), "join not accepted yet; retrying"),
            Err(e) => info!(error = %e, "cannot reach {target} yet; retrying"),
        }
        if tokio::time::Instant::now() > deadline {
            bail!("could not join the cluster through {target} within {limit:?}: no member answers there");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    info!(%target, role = %me.role, "joined the cluster");
    let nodes: Vec<NodeView> = client
        .get(format!("{base}/v1/nodes"))
        .send()
        .await?
        .json()
        .await?;
    Ok(nodes
        .into_iter()
        .filter_map(|n| n.node.info.addrs.gossip)
        .collect())
}

/// `orion-node agent`: runs a node until SIGINT or SIGTERM.
pub async fn run_agent(args: AgentArgs) -> Result<()> {
    let settings = Settings::from_args(args)?;
    let runtime = orion_runtime::DockerRuntime::connect_local()?;
    let node = start(settings, Arc::new(runtime)).await?;
    shutdown_signal().await;
    info!("shutting down; tasks keep running and are adopted on restart");
    node.cluster.shutdown().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_not_given_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::from_args(crate::cli::AgentArgs {
            data_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        })
        .unwrap();
        let c = capacity(&settings);
        let host = orion_core::cluster::host_capacity();
        assert_eq!(c.cpu, host.cpu);
        assert_eq!(c.memory_mb, host.memory_mb);
        assert!(c.cpu >= 1.0 && c.memory_mb > 0);
        assert!(c.disk_mb > 0, "free space of the data dir's file system");
        let given = Settings {
            cpu: Some(2.5),
            memory_mb: Some(512),
            disk_mb: Some(7),
            ..settings
        };
        let c = capacity(&given);
        assert_eq!((c.cpu, c.memory_mb, c.disk_mb), (2.5, 512, 7), "flags win");
    }
}
