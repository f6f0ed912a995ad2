//! `ClusterBuilder`: generic at build time, a plain [`Cluster`] handle at run time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::watch;
use tracing::{info, warn};

use super::{detect, Cluster, ClusterError, Inner};
use crate::agent::{Agent, AgentConfig};
use crate::batching::{BatchConfig, BatchingStore};
use crate::command::Command;
use crate::control::{Control, ControlConfig};
use crate::membership::{Member, Membership, SoloMembership};
use crate::model::{NodeAddrs, NodeId, NodeInfo, NodeRole};
use crate::runtime::Runtime;
use crate::scheduler::{FilterScoreScheduler, Scheduler, SchedulerConfig};
use crate::spec::Resources;
use crate::store::{Store, StoreError};

/// Everything tunable about a node's loops.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterConfig {
    /// The leader's control loop.
    pub control: ControlConfig,
    /// The node agent.
    pub agent: AgentConfig,
    /// The scheduler.
    pub scheduler: SchedulerConfig,
    /// Group commit of concurrent proposals.
    pub batch: BatchConfig,
}

/// What this node says about itself.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeConfig {
    /// Node id; the host name when absent.
    pub id: Option<NodeId>,
    /// Manager (votes, may lead) or worker.
    pub role: NodeRole,
    /// What tasks may use; detected from the host when absent.
    pub capacity: Option<Resources>,
    /// Tags for selectors.
    pub tags: BTreeMap<String, String>,
    /// Host IP that task ports are published on.
    pub host_ip: String,
    /// Inclusive range of dynamic host ports.
    pub port_range: (u16, u16),
    /// HTTP address other nodes and clients use; the bound address when absent.
    pub advertise_http: Option<String>,
    /// Raft address, for managers.
    pub raft_addr: Option<String>,
    /// Gossip address.
    pub gossip_addr: Option<String>,
}

impl Default for NodeConfig {
    /// Ports publish on 127.0.0.1 (nothing is exposed beyond the host unless the
    /// operator says so); dynamic ports 32000–32767, as the design, clear of
    /// Linux's ephemeral range (32768+) and of Kubernetes' NodePorts (30000–32767
    /// overlaps only its top, and Orion does not run beside kube-proxy).
    fn default() -> Self {
        NodeConfig {
            id: None,
            role: NodeRole::Manager,
            capacity: None,
            tags: BTreeMap::new(),
            host_ip: "127.0.0.1".into(),
            port_range: (32000, 32767),
            advertise_http: None,
            raft_addr: None,
            gossip_addr: None,
        }
    }
}

/// What a [`StoreFactory`] is told about the node it opens a store for.
#[derive(Clone, Debug)]
pub struct StoreContext {
    /// The node.
    pub node: NodeInfo,
    /// Where the node keeps its data.
    pub data_dir: PathBuf,
}

/// Opens the store for a node, once its identity and addresses are known.
#[async_trait]
pub trait StoreFactory: Send + Sync {
    /// Opens (or creates) the node's store.
    async fn open(&self, ctx: &StoreContext) -> Result<Arc<dyn Store>, StoreError>;
}

/// Builds and starts a node. See [`Cluster`].
#[derive(Default)]
pub struct ClusterBuilder {
    node: NodeConfig,
    data_dir: Option<PathBuf>,
    runtime: Option<Arc<dyn Runtime>>,
    store: Option<Arc<dyn Store>>,
    store_factory: Option<Arc<dyn StoreFactory>>,
    membership: Option<Arc<dyn Membership>>,
    scheduler: Option<Arc<dyn Scheduler>>,
    config: ClusterConfig,
    http: Option<std::net::TcpListener>,
    http_addr: Option<SocketAddr>,
}

impl ClusterBuilder {
    /// Sets the node id.
    pub fn node_id(mut self, id: impl Into<NodeId>) -> Self {
        self.node.id = Some(id.into());
        self
    }

    /// Sets everything the node says about itself at once.
    pub fn node(mut self, node: NodeConfig) -> Self {
        self.node = node;
        self
    }

    /// Where the node keeps its data (the store's files); `./orion-data` when a
    /// store factory needs one and none is given.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
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

    /// An opened store.
    pub fn store<S: Store>(self, store: S) -> Self {
        self.store_shared(Arc::new(store))
    }

    /// An opened store, shared with the caller.
    pub fn store_shared(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// A factory that opens the store once the node's identity is known (used when
    /// no store is given).
    pub fn store_factory(mut self, factory: Arc<dyn StoreFactory>) -> Self {
        self.store_factory = Some(factory);
        self
    }

    /// Membership; a single-node membership of this node alone when absent.
    pub fn membership_shared(mut self, membership: Arc<dyn Membership>) -> Self {
        self.membership = Some(membership);
        self
    }

    /// A scheduler other than the default filter-and-score one.
    pub fn scheduler_shared(mut self, scheduler: Arc<dyn Scheduler>) -> Self {
        self.scheduler = Some(scheduler);
        self
    }

    /// Tunes the loops.
    pub fn config(mut self, config: ClusterConfig) -> Self {
        self.config = config;
        self
    }

    /// Serves the HTTP API on this address (port 0 picks a free port).
    pub fn http(mut self, addr: SocketAddr) -> Self {
        self.http_addr = Some(addr);
        self
    }

    /// Serves the HTTP API on an already bound listener.
    pub fn http_listener(mut self, listener: std::net::TcpListener) -> Self {
        self.http = Some(listener);
        self
    }

    /// Starts the node: opens the store, registers the node, and spawns the agent,
    /// the control loop and (when asked) the HTTP API.
    pub async fn start(self) -> Result<Cluster, ClusterError> {
        let runtime = self
            .runtime
            .ok_or_else(|| ClusterError::Config("no runtime: call .runtime(..)".into()))?;
        let (lo, hi) = self.node.port_range;
        if lo == 0 || lo > hi {
            return Err(ClusterError::Config(format!(
                "port range {lo}-{hi} is empty or starts at 0"
            )));
        }
        if self.node.host_ip.parse::<std::net::IpAddr>().is_err() {
            return Err(ClusterError::Config(format!(
                "host ip {:?} is not an IP address",
                self.node.host_ip
            )));
        }
        let listener = match (self.http, self.http_addr) {
            (Some(l), _) => Some(l),
            (None, Some(addr)) => Some(std::net::TcpListener::bind(addr)?),
            (None, None) => None,
        };
        let http_addr = listener.as_ref().map(|l| l.local_addr()).transpose()?;
        let info = node_info(&self.node, http_addr);
        crate::spec::check_dns_label(&info.id)
            .map_err(|p| ClusterError::Config(format!("node id: {p}")))?;
        let store = match (self.store, self.store_factory) {
            (Some(s), _) => s,
            (None, Some(f)) => {
                // Without a data dir, `./orion-data`: durable and easy to find, as
                // a node started by hand expects.
                let data_dir = self.data_dir.unwrap_or_else(|| PathBuf::from("orion-data"));
                std::fs::create_dir_all(&data_dir)?;
                f.open(&StoreContext { node: info.clone(), data_dir }).await?
            }
            (None, None) => {
                return Err(ClusterError::Config(
                    "no store: call .store(..), or build with orion::Cluster::builder() for the default Raft store".into(),
                ))
            }
        };
        // Every proposal from this node (API, agent, control loop) goes through one
        // group-commit queue.
        let store: Arc<dyn Store> = Arc::new(BatchingStore::new(store, self.config.batch.clone()));
        let membership = self
            .membership
            .unwrap_or_else(|| Arc::new(SoloMembership::new(member_of(&info))));
        let scheduler = self
            .scheduler
            .unwrap_or_else(|| Arc::new(FilterScoreScheduler::new(self.config.scheduler.clone())));

        let (shutdown, shutdown_rx) = watch::channel(false);
        let (health_tx, runtime_health) = watch::channel(None);
        let (registered_tx, registered) = watch::channel(false);
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(register(
            store.clone(),
            membership.clone(),
            info.clone(),
            registered_tx,
            shutdown_rx.clone(),
        )));
        let agent = Agent::new(
            info.id.clone(),
            store.clone(),
            runtime.clone(),
            self.config.agent,
            health_tx,
        );
        tasks.push(tokio::spawn(agent.run(shutdown_rx.clone())));
        if info.role == NodeRole::Manager {
            let control = Control {
                node_id: info.id.clone(),
                store: store.clone(),
                membership: membership.clone(),
                scheduler,
                config: self.config.control,
            };
            tasks.push(tokio::spawn(control.run(shutdown_rx.clone())));
        }
        let inner = Arc::new(Inner {
            node: info,
            store,
            runtime,
            membership,
            shutdown,
            tasks: Mutex::new(tasks),
            runtime_health,
            http_addr,
            registered,
        });
        let cluster = Cluster::from_inner(inner.clone());
        if let Some(listener) = listener {
            listener.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let app = crate::api::router(cluster.clone());
            let stop = cluster.on_shutdown();
            inner.tasks.lock().push(tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
                {
                    warn!(error = %e, "http server failed");
                }
            }));
        }
        info!(node_id = %cluster.node_id(), http = ?http_addr, "node started");
        Ok(cluster)
    }
}

fn node_info(cfg: &NodeConfig, http: Option<SocketAddr>) -> NodeInfo {
    let advertised = cfg
        .advertise_http
        .clone()
        .or_else(|| http.map(|a| a.to_string()))
        .unwrap_or_default();
    NodeInfo {
        id: cfg.id.clone().unwrap_or_else(detect::host_name),
        addrs: NodeAddrs {
            http: advertised,
            raft: cfg.raft_addr.clone(),
            gossip: cfg.gossip_addr.clone(),
        },
        role: cfg.role,
        capacity: cfg.capacity.unwrap_or_else(detect::host_capacity),
        tags: cfg.tags.clone(),
        host_ip: cfg.host_ip.clone(),
        port_range: cfg.port_range,
    }
}

/// The membership record of a node.
pub(crate) fn member_of(info: &NodeInfo) -> Member {
    Member {
        id: info.id.clone(),
        generation: 0,
        addrs: info.addrs.clone(),
        role: info.role,
        capacity: info.capacity,
        used: Resources::ZERO,
        tags: info.tags.clone(),
    }
}

/// Registers the node with the cluster (retrying until a leader takes it), then
/// keeps its published use up to date.
async fn register(
    store: Arc<dyn Store>,
    membership: Arc<dyn Membership>,
    info: NodeInfo,
    registered: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let retry = Duration::from_millis(250);
    loop {
        match store
            .propose(Command::RegisterNode { info: info.clone() })
            .await
        {
            Ok(_) => break,
            Err(e) => tracing::debug!(error = %e, "registration not committed yet; retrying"),
        }
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(retry) => {}
        }
    }
    registered.send_replace(true);
    info!(node_id = %info.id, "node registered");
    let mut member = member_of(&info);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        let used = store.replica().read(|s| s.usage(&info.id).used);
        if used != member.used {
            member.used = used;
            if let Err(e) = membership.publish(member.clone()).await {
                warn!(error = %e, "could not publish node use");
            }
        }
    }
}
