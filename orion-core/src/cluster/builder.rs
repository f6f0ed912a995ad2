//! `ClusterBuilder`: generic at build time, a plain [`Cluster`] handle at run time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
use crate::store::Store;

/// What a node started with `--insecure-dev` says at every start and in `/health`.
pub const INSECURE_DEV_WARNING: &str = "insecure-dev: this node checks no API tokens; anyone who reaches its API may run, stop and exec into anything. For a throwaway cluster on one machine only";

/// Everything tunable about a node's loops.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// The leader's control loop.
    pub control: ControlConfig,
    /// The node agent.
    pub agent: AgentConfig,
    /// The scheduler.
    pub scheduler: SchedulerConfig,
    /// Group commit of concurrent proposals.
    pub batch: BatchConfig,
    /// Task stats sampling.
    pub stats: crate::agent::stats::StatsConfig,
    /// How the HTTP API's listener faces clients: connection limit, head and
    /// idle timeouts.
    pub http: crate::serve::ServeConfig,
    /// API tokens.
    pub acl: crate::acl::AclConfig,
    /// The most replicas a job's scaling policy may ask for (`scaling.max`);
    /// default [`crate::scaling::DEFAULT_MAX_REPLICAS_CAP`].
    pub max_scaled_replicas: u32,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            control: Default::default(),
            agent: Default::default(),
            scheduler: Default::default(),
            batch: Default::default(),
            stats: Default::default(),
            http: Default::default(),
            acl: Default::default(),
            max_scaled_replicas: crate::scaling::DEFAULT_MAX_REPLICAS_CAP,
        }
    }
}

impl ClusterConfig {
    /// Checks every interval and bound can work; [`ClusterBuilder::start`] calls
    /// it. The error names the field (`control.reconcile_interval`).
    pub fn validate(&self) -> Result<(), ClusterError> {
        let c = &self.control;
        let a = &self.agent;
        for (field, d) in [
            ("control.reconcile_interval", c.reconcile_interval),
            ("control.quorum_check", c.quorum_check),
            ("agent.tick", a.tick),
            ("agent.max_backoff", a.max_backoff),
            ("stats.interval", self.stats.interval),
            ("http.header_read_timeout", self.http.header_read_timeout),
            ("http.idle_timeout", self.http.idle_timeout),
            // A node would count as dead between two gossip rounds; load
            // reports would never be young enough to count.
            ("control.absent_grace", c.absent_grace),
            ("control.load_max_age", c.load_max_age),
        ] {
            if d.is_zero() {
                return Err(ClusterError::config(field, "is zero"));
            }
        }
        for (field, n) in [
            ("control.max_placements_per_pass", c.max_placements_per_pass),
            ("scheduler.candidates", self.scheduler.candidates),
            ("batch.max_batch", self.batch.max_batch),
            ("batch.in_flight", self.batch.in_flight),
            ("stats.kept", self.stats.kept),
            ("http.max_connections", self.http.max_connections),
            // Zero failed starts a second would start nothing at all.
            (
                "agent.max_failed_starts_per_sec",
                a.max_failed_starts_per_sec as usize,
            ),
            ("max_scaled_replicas", self.max_scaled_replicas as usize),
        ] {
            if n == 0 {
                return Err(ClusterError::config(field, "is zero"));
            }
        }
        if a.restart_delay > a.max_backoff {
            return Err(ClusterError::config(
                "agent.restart_delay",
                format!(
                    "{:?} is above agent.max_backoff {:?}",
                    a.restart_delay, a.max_backoff
                ),
            ));
        }
        Ok(())
    }
}

/// What this node says about itself: identity, role, capacity, tags, ports and
/// the addresses it is reached at.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct NodeProfile {
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
    /// Host paths tasks may mount (and everything under them); none by default.
    pub host_volumes: Vec<String>,
}

impl Default for NodeProfile {
    /// Ports publish on 127.0.0.1 (nothing is exposed beyond the host unless the
    /// operator says so); dynamic ports 32000–32767, clear of Linux's ephemeral
    /// range (32768+).
    fn default() -> Self {
        NodeProfile {
            id: None,
            role: NodeRole::Manager,
            capacity: None,
            tags: BTreeMap::new(),
            host_ip: "127.0.0.1".into(),
            port_range: (32000, 32767),
            advertise_http: None,
            raft_addr: None,
            gossip_addr: None,
            host_volumes: Vec::new(),
        }
    }
}

/// Where the HTTP API listens.
enum HttpBind {
    Addr(SocketAddr),
    Listener(std::net::TcpListener),
}

/// Builds and starts a node from seams the caller brings. See [`Cluster`].
///
/// Every seam has a plain setter (`runtime(R)`) and a shared one
/// (`runtime_shared(Arc<dyn Runtime>)`); the runtime and the store are
/// required. Setters that would contradict each other (`node_id` and a
/// profile with another id, `http` and `http_listener`) make `start` fail
/// naming both, instead of one silently winning. `orion::Node::builder()`
/// opens the Raft store and gossip itself.
#[must_use = "a builder does nothing until .start() is awaited"]
pub struct ClusterBuilder {
    node_id: Option<NodeId>,
    profile: NodeProfile,
    runtime: Option<Arc<dyn Runtime>>,
    store: Option<Arc<dyn Store>>,
    membership: Option<Arc<dyn Membership>>,
    scheduler: Option<Arc<dyn Scheduler>>,
    config: ClusterConfig,
    http: Vec<HttpBind>,
    dns: Option<SocketAddr>,
    /// Serve no DNS (with a warning) when `dns` cannot be bound.
    dns_optional: bool,
    dns_config: crate::dns::DnsConfig,
    load_balancer: bool,
    scripts: Option<crate::agent::Scripts>,
    pki: Option<Arc<super::pki::Pki>>,
    data_key: Option<crate::secret::DataKey>,
    secrets_dir: Option<std::path::PathBuf>,
}

impl ClusterBuilder {
    pub(crate) fn new() -> Self {
        ClusterBuilder {
            node_id: None,
            profile: NodeProfile::default(),
            runtime: None,
            store: None,
            membership: None,
            scheduler: None,
            config: ClusterConfig::default(),
            http: Vec::new(),
            dns: None,
            dns_optional: false,
            dns_config: crate::dns::DnsConfig::default(),
            load_balancer: true,
            scripts: None,
            pki: None,
            data_key: None,
            secrets_dir: None,
        }
    }

    /// The cluster's data key, which secrets are sealed under (see
    /// [`crate::secret`]). Without one this node refuses to write secrets
    /// (`503`), and tasks that use secrets are not placed on it. Every node
    /// of a cluster must hold the same key: `orion::Node` makes it at the
    /// first start of a cluster's first node and keeps it in its data dir.
    pub fn data_key(mut self, key: crate::secret::DataKey) -> Self {
        self.data_key = Some(key);
        self
    }

    /// Where this node writes its tasks' secret files, one directory per
    /// allocation; it must be on a tmpfs (checked before each write). Default
    /// [`crate::agent::secrets::DEFAULT_SECRETS_DIR`].
    pub fn secrets_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.secrets_dir = Some(dir.into());
        self
    }

    /// Sets the node id (it must agree with a profile's id, if one gives it).
    pub fn node_id(mut self, id: impl Into<NodeId>) -> Self {
        self.node_id = Some(id.into());
        self
    }

    /// Sets everything the node says about itself at once.
    pub fn node(mut self, profile: NodeProfile) -> Self {
        self.profile = profile;
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

    /// Membership; a single-node membership of this node alone when absent.
    pub fn membership<M: Membership>(self, membership: M) -> Self {
        self.membership_shared(Arc::new(membership))
    }

    /// Membership, shared with the caller.
    pub fn membership_shared(mut self, membership: Arc<dyn Membership>) -> Self {
        self.membership = Some(membership);
        self
    }

    /// A scheduler other than the default filter-and-score one.
    pub fn scheduler<S: Scheduler + 'static>(self, scheduler: S) -> Self {
        self.scheduler_shared(Arc::new(scheduler))
    }

    /// A scheduler, shared with the caller.
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
        self.http.push(HttpBind::Addr(addr));
        self
    }

    /// Answers DNS for the service catalog on this address, UDP and TCP
    /// (port 0 picks a free port; see [`crate::dns`]). Off unless given.
    pub fn dns(mut self, addr: SocketAddr) -> Self {
        self.dns = Some(addr);
        self
    }

    /// As [`dns`](Self::dns), but a port that cannot be bound (another node
    /// of this host holds it) means no DNS here, with a warning, rather than
    /// an error: for a default port, bound at the moment it is taken, so two
    /// nodes starting at once cannot both pass a check and one then fail.
    pub fn dns_if_free(mut self, addr: SocketAddr) -> Self {
        self.dns = Some(addr);
        self.dns_optional = true;
        self
    }

    /// How DNS answers: its domain, TTL and upstream servers for other names
    /// (see [`crate::dns::DnsConfig`]; the default answers `orion.` with TTL 0
    /// and refuses the rest).
    pub fn dns_config(mut self, config: crate::dns::DnsConfig) -> Self {
        self.dns_config = config;
        self
    }

    /// Where script tasks' scripts are written (a directory the engine sees
    /// at the same path) and the runner image of each language. Default: a
    /// directory under the system's temporary one, the default images.
    pub fn scripts(mut self, scripts: crate::agent::Scripts) -> Self {
        self.scripts = Some(scripts);
        self
    }

    /// Serves the API over TLS with this PKI's certificate and answers the
    /// PKI's routes (join, renewal, join tokens). Without one the API is
    /// plain HTTP.
    pub fn pki(mut self, pki: Arc<super::pki::Pki>) -> Self {
        self.pki = Some(pki);
        self
    }

    /// Whether this node runs the load balancer: listens on the `lb.port` of
    /// every job that asks for one, on the node's host IP (see [`crate::lb`]).
    /// On by default: nothing is bound until a job asks.
    pub fn load_balancer(mut self, on: bool) -> Self {
        self.load_balancer = on;
        self
    }

    /// Serves the HTTP API on an already bound listener.
    pub fn http_listener(mut self, listener: std::net::TcpListener) -> Self {
        self.http.push(HttpBind::Listener(listener));
        self
    }

    /// Checks what was given fits together; returns the profile with the id set.
    fn checked_profile(&self) -> Result<NodeProfile, ClusterError> {
        let mut profile = self.profile.clone();
        match (&self.node_id, &profile.id) {
            (Some(a), Some(b)) if a != b => {
                return Err(ClusterError::config(
                    "node_id",
                    format!(".node_id({a:?}) and .node(..) with id {b:?} disagree"),
                ))
            }
            (Some(a), _) => profile.id = Some(a.clone()),
            _ => {}
        }
        if self.http.len() > 1 {
            return Err(ClusterError::config(
                "http",
                "given twice (.http and .http_listener are one setting)",
            ));
        }
        let (lo, hi) = profile.port_range;
        if lo == 0 || lo > hi {
            return Err(ClusterError::config(
                "port_range",
                format!("{lo}-{hi} is empty or starts at 0"),
            ));
        }
        if profile.host_ip.parse::<std::net::IpAddr>().is_err() {
            return Err(ClusterError::config(
                "host_ip",
                format!("{:?} is not an IP address", profile.host_ip),
            ));
        }
        if let Some(c) = profile.capacity {
            if !(c.cpu.is_finite() && c.cpu > 0.0) {
                return Err(ClusterError::config(
                    "capacity.cpu",
                    format!("{} is not a positive number of cores", c.cpu),
                ));
            }
            if c.memory_mb == 0 {
                return Err(ClusterError::config("capacity.memory_mb", "is zero"));
            }
        }
        self.config.validate()?;
        Ok(profile)
    }

    /// Starts the node: registers it, and spawns the agent, the control loop (on
    /// a manager) and, when asked, the HTTP API.
    pub async fn start(mut self) -> Result<Cluster, ClusterError> {
        crate::tls::ensure_default_provider();
        let http_serve = self.config.http.clone();
        let acl_enforced = self.config.acl.enforce;
        let insecure_dev = self.config.acl.insecure_dev;
        if insecure_dev {
            warn!("{INSECURE_DEV_WARNING}");
        }
        let profile = self.checked_profile()?;
        let runtime = self
            .runtime
            .take()
            .ok_or_else(|| ClusterError::config("runtime", "none given: call .runtime(..)"))?;
        let store = self.store.take().ok_or_else(|| {
            ClusterError::config(
                "store",
                "none given: call .store(..), or start a whole node with orion::Node::builder(), which opens the Raft store itself",
            )
        })?;
        let listener = match self.http.pop() {
            Some(HttpBind::Listener(l)) => Some(l),
            Some(HttpBind::Addr(addr)) => Some(std::net::TcpListener::bind(addr)?),
            None => None,
        };
        let http_addr = listener.as_ref().map(|l| l.local_addr()).transpose()?;
        let dns_handler =
            crate::dns::DnsHandler::with_config(store.replica().clone(), &self.dns_config)
                .map_err(|p| ClusterError::config("dns.domain", p))?;
        let dns = match self.dns {
            Some(addr) => match crate::dns::bind(addr) {
                Ok(s) => Some(s),
                Err(e) if self.dns_optional => {
                    warn!(%addr, error = %e, "the DNS port is taken: this node serves no DNS (give another address)");
                    None
                }
                Err(e) => {
                    return Err(ClusterError::config(
                        "dns",
                        format!("cannot bind {addr}: {e}"),
                    ))
                }
            },
            None => None,
        };
        let dns_addr = dns.as_ref().map(|(u, _)| u.local_addr()).transpose()?;
        let mut info = node_info(&profile, http_addr);
        info.data_key_id = self.data_key.as_ref().map(crate::secret::DataKey::id);
        info.runtime = Some(runtime.name().to_string());
        info.runtime_warning = runtime.warning();
        crate::spec::check_dns_label(&info.id).map_err(|p| ClusterError::config("node_id", p))?;
        // Every proposal from this node (API, agent, control loop) goes through one
        // group-commit queue.
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let store: Arc<dyn Store> = Arc::new(BatchingStore::metered(
            store,
            self.config.batch.clone(),
            Some(metrics.clone()),
        ));
        let runtime: Arc<dyn crate::Runtime> = Arc::new(crate::metered::MeteredRuntime::new(
            runtime,
            metrics.clone(),
        ));
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
        let (loads_tx, loads_rx) = watch::channel(Default::default());
        let local_health = Arc::new(crate::liveness::LocalHealth::default());
        tasks.push(tokio::spawn(crate::liveness::watch_lag(
            local_health.clone(),
            self.config.control.liveness.clone(),
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(register(
            store.clone(),
            membership.clone(),
            info.clone(),
            registered_tx,
            loads_rx,
            local_health.clone(),
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(count_leader_changes(
            store.leadership(),
            metrics.clone(),
            shutdown_rx.clone(),
        )));
        let scripts = self.scripts.clone().unwrap_or_else(|| {
            crate::agent::Scripts::in_dir(
                std::env::temp_dir().join(format!("orion-scripts-{}", info.id)),
            )
        });
        let lb = match self.load_balancer {
            true => {
                let ip = info.host_ip.parse().map_err(|_| {
                    ClusterError::config(
                        "host_ip",
                        format!("{:?} is not an IP address", info.host_ip),
                    )
                })?;
                let lb = crate::lb::Balancer::new(store.replica().clone(), ip, metrics.clone());
                tasks.push(tokio::spawn(lb.clone().run(shutdown_rx.clone())));
                Some(lb)
            }
            false => None,
        };
        let agent = Agent::new(
            info.id.clone(),
            store.clone(),
            runtime.clone(),
            self.config.agent,
            health_tx,
        )
        .with_load_balancer(lb.clone())
        .with_metrics(metrics.clone())
        .with_scripts(scripts.clone())
        .with_secret_files(crate::agent::secrets::SecretFiles {
            key: self.data_key.clone(),
            dir: self
                .secrets_dir
                .clone()
                .unwrap_or_else(|| crate::agent::secrets::DEFAULT_SECRETS_DIR.into()),
        });
        tasks.push(tokio::spawn(agent.run(shutdown_rx.clone())));
        let stats = Arc::new(crate::agent::stats::StatsHistory::new(
            self.config.stats.clone(),
        ));
        tasks.push(tokio::spawn(crate::agent::stats::run_sampler(
            info.id.clone(),
            store.clone(),
            runtime.clone(),
            stats.clone(),
            metrics.clone(),
            shutdown_rx.clone(),
        )));
        tasks.push(tokio::spawn(crate::agent::load::run_reporter(
            info.id.clone(),
            store.clone(),
            stats.clone(),
            lb.clone(),
            loads_tx,
            self.config.stats.interval,
            shutdown_rx.clone(),
        )));
        let events = Arc::new(crate::events::EventLog::default());
        tasks.push(events.follow(store.replica(), shutdown_rx.clone()));
        if info.role == NodeRole::Manager {
            let control = Control {
                node_id: info.id.clone(),
                store: store.clone(),
                membership: membership.clone(),
                scheduler: scheduler.clone(),
                config: self.config.control.clone(),
                metrics: metrics.clone(),
                local_health: local_health.clone(),
            };
            tasks.push(tokio::spawn(control.run(shutdown_rx.clone())));
        }
        let inner = Arc::new(Inner {
            scaling_cap: self.config.max_scaled_replicas,
            node: info,
            store,
            runtime,
            membership,
            shutdown,
            tasks: Mutex::new(tasks),
            runtime_health,
            http_addr,
            dns_addr,
            registered,
            scheduler,
            metrics,
            events,
            stats,
            lb,
            task_files: scripts.dir.clone(),
            data_key: self.data_key.take(),
            acl_enforced,
            insecure_dev,
            pki: self.pki.clone(),
            closed: Default::default(),
            local_health,
        });
        let cluster = Cluster::owning(inner.clone());
        if let Some(listener) = listener {
            listener.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            // The API holds a handle that does not keep the node alive: dropping
            // the caller's last handle still stops everything.
            let app = crate::api::router(Cluster::internal(inner.clone()));
            let stop = cluster.on_shutdown();
            let serve = http_serve;
            let tls = self.pki.as_ref().map(|p| p.tls.server_config(false));
            inner
                .tasks
                .lock()
                .push(tokio::spawn(crate::serve::serve_tls(
                    listener, app, serve, tls, stop,
                )));
        }
        if let Some((udp, tcp)) = dns {
            let stop = inner.shutdown.subscribe();
            inner.tasks.lock().push(tokio::spawn(async move {
                if let Err(e) = crate::dns::serve(dns_handler, udp, tcp, stop).await {
                    warn!(error = %e, "dns server failed");
                }
            }));
        }
        info!(node_id = %cluster.node_id(), http = ?http_addr, dns = ?dns_addr, "node started");
        Ok(cluster)
    }
}

/// Counts every change of leader this node sees (`orion_store_leader_changes`).
async fn count_leader_changes(
    mut leadership: watch::Receiver<crate::store::Leadership>,
    metrics: Arc<crate::metrics::Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut leader = leadership.borrow().leader.clone();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            r = leadership.changed() => if r.is_err() { return },
        }
        let now = leadership.borrow().leader.clone();
        if now != leader && now.is_some() {
            metrics.store_leader_changes.inc();
        }
        leader = now;
    }
}

fn node_info(cfg: &NodeProfile, http: Option<SocketAddr>) -> NodeInfo {
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
        host_volumes: cfg.host_volumes.clone(),
        data_key_id: None,
        runtime: None,
        runtime_warning: None,
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
        load: Default::default(),
        suspects: Default::default(),
        starved: false,
    }
}

/// Registers the node with the cluster (retrying until a leader takes it), then
/// keeps its published use, its autoscaling loads and its accusations (the
/// nodes it has lost, none while it is starved: [`crate::liveness`]) up to
/// date.
async fn register(
    store: Arc<dyn Store>,
    membership: Arc<dyn Membership>,
    info: NodeInfo,
    registered: watch::Sender<bool>,
    mut loads: watch::Receiver<BTreeMap<String, crate::scaling::JobLoad>>,
    health: Arc<crate::liveness::LocalHealth>,
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
    // Accusations must travel within a gossip round of a death, so this
    // wakes on every membership event, and looks every 250 ms besides
    // (starvation comes and goes without an event).
    let mut events = membership.subscribe();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
            r = loads.changed() => if r.is_err() { return },
            e = events.recv() => if matches!(e, Err(tokio::sync::broadcast::error::RecvError::Closed)) { return },
        }
        let starved = health.starved();
        let suspects: std::collections::BTreeSet<String> = if starved {
            Default::default()
        } else {
            let live: std::collections::HashSet<String> =
                membership.live().into_iter().map(|m| m.id).collect();
            store.replica().read(|s| {
                s.nodes
                    .keys()
                    .filter(|id| **id != info.id && !live.contains(*id))
                    .cloned()
                    .collect()
            })
        };
        let used = store.replica().read(|s| s.usage(&info.id).used);
        let load = loads.borrow_and_update().clone();
        if used != member.used
            || load != member.load
            || suspects != member.suspects
            || starved != member.starved
        {
            member.used = used;
            member.load = load;
            member.suspects = suspects;
            member.starved = starved;
            if let Err(e) = membership.publish(member.clone()).await {
                warn!(error = %e, "could not publish node use");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::testing::{FakeRuntime, MemStore};

    /// Every impossible loop setting is refused by `start()`, naming its field,
    /// before anything is spawned (a zero interval would otherwise panic inside
    /// a task: `tokio::time::interval(0)`).
    #[tokio::test]
    async fn start_refuses_each_impossible_setting_by_name() {
        type Edit = fn(&mut ClusterConfig);
        let cases: &[(&str, Edit)] = &[
            ("control.reconcile_interval", |c| {
                c.control.reconcile_interval = Duration::ZERO
            }),
            ("control.quorum_check", |c| {
                c.control.quorum_check = Duration::ZERO
            }),
            ("control.absent_grace", |c| {
                c.control.absent_grace = Duration::ZERO
            }),
            ("control.load_max_age", |c| {
                c.control.load_max_age = Duration::ZERO
            }),
            ("agent.tick", |c| c.agent.tick = Duration::ZERO),
            ("agent.max_backoff", |c| {
                c.agent.max_backoff = Duration::ZERO
            }),
            ("stats.interval", |c| c.stats.interval = Duration::ZERO),
            ("http.header_read_timeout", |c| {
                c.http.header_read_timeout = Duration::ZERO
            }),
            ("http.idle_timeout", |c| {
                c.http.idle_timeout = Duration::ZERO
            }),
            ("control.max_placements_per_pass", |c| {
                c.control.max_placements_per_pass = 0
            }),
            ("scheduler.candidates", |c| c.scheduler.candidates = 0),
            ("batch.max_batch", |c| c.batch.max_batch = 0),
            ("batch.in_flight", |c| c.batch.in_flight = 0),
            ("stats.kept", |c| c.stats.kept = 0),
            ("http.max_connections", |c| c.http.max_connections = 0),
            ("agent.max_failed_starts_per_sec", |c| {
                c.agent.max_failed_starts_per_sec = 0
            }),
            ("max_scaled_replicas", |c| c.max_scaled_replicas = 0),
            ("agent.restart_delay", |c| {
                c.agent.restart_delay = c.agent.max_backoff + Duration::from_secs(1)
            }),
        ];
        for (field, edit) in cases {
            let mut config = ClusterConfig::default();
            edit(&mut config);
            let runtime = Arc::new(FakeRuntime::new());
            let started = Cluster::builder()
                .node_id("n1")
                .runtime_shared(runtime.clone())
                .store(MemStore::new("n1"))
                .config(config)
                .start()
                .await;
            match started {
                Err(ClusterError::Config { field: f, .. }) => assert_eq!(f, *field),
                Err(e) => panic!("{field}: {e}"),
                Ok(_) => panic!("{field}: started"),
            }
            assert!(runtime.calls().is_empty(), "{field}: the runtime was used");
        }
        let mut fine = ClusterConfig::default();
        fine.agent.stop_grace = Duration::ZERO;
        fine.validate()
            .expect("a zero stop grace is allowed (kill at once)");
    }
}
