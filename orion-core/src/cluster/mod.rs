//! The `Cluster` handle: one node of an Orion cluster running in-process.
//!
//! Built by [`ClusterBuilder`]; `Clone + Send + Sync`, no type parameters. Every
//! task it spawns (agent, control loop, registration, HTTP server) belongs to it
//! and ends on [`Cluster::shutdown`].

mod acl;
pub(crate) mod builder;
pub mod ca;
mod deploy;
mod detect;
mod gossip_keys;
pub mod pki;
mod plan;
mod scaling;
mod secrets;
mod tasks;
mod wait;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::BroadcastStream;

pub use builder::{ClusterBuilder, ClusterConfig, NodeProfile, INSECURE_DEV_WARNING};
pub use detect::{host_capacity, host_name};
pub use plan::JobPlan;
pub use scaling::ScalingView;

use crate::command::{Command, Refusal, Response};
use crate::model::{Allocation, Job, JobHealth, Node, NodeId, NodeInfo, Volume};
use crate::replica::ChangeBatch;
use crate::runtime::Runtime;
use crate::spec::{JobSpec, Resources, SpecError};
use crate::store::{Leadership, Peer, Store, StoreError};

/// Why a cluster call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The job spec is invalid; nothing was written.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// No such job.
    #[error("no job named {0:?}")]
    JobNotFound(String),
    /// No such node.
    #[error("no node with id {0:?}")]
    NodeNotFound(String),
    /// No such volume.
    #[error("no volume named {0:?}")]
    VolumeNotFound(String),
    /// The job has no deployment.
    #[error("job {0:?} has no deployment")]
    DeploymentNotFound(String),
    /// The job does not keep that version.
    #[error("job {job:?} has no version {version} (kept: {kept})")]
    VersionNotFound {
        /// The job.
        job: String,
        /// The version asked for.
        version: u64,
        /// The versions it keeps.
        kept: String,
    },
    /// The node to remove is still alive.
    #[error("node {0:?} is still alive: drain it (node drain {0}), stop its agent, then remove it (or remove it with force)")]
    NodeAlive(String),
    /// The command was refused (by the state machine, or by this node before
    /// proposing); nothing changed. Match on `kind`, never on the reason's text.
    #[error("refused: {reason}")]
    Refused {
        /// What kind of refusal.
        kind: Refusal,
        /// Why, for people.
        reason: String,
    },
    /// The caller may not do this (a join token that does not fit, a node
    /// acting for another).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The store failed or no leader is known.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The builder was given an impossible configuration.
    #[error("invalid configuration: {field}: {problem}")]
    Config {
        /// The setting, as the builder or config struct names it.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// Binding a socket or reading the data dir failed.
    #[error("i/o failed: {0}")]
    Io(#[from] std::io::Error),
    /// Timed out waiting for the cluster.
    #[error("timed out: {0}")]
    Timeout(String),
    /// No such allocation.
    #[error("no allocation {0:?}")]
    AllocNotFound(String),
    /// No API token with this accessor.
    #[error("no token with accessor {0:?}")]
    TokenNotFound(String),
    /// No such secret.
    #[error("no secret named {0:?}")]
    SecretNotFound(String),
    /// No installed gossip key has this id.
    #[error("no gossip key with id {0:?}")]
    GossipKeyNotFound(String),
    /// This node holds no data key, so it cannot seal a secret.
    #[error("this node holds no data key, so it cannot seal secrets: orion::Node makes one at the first start of a cluster's first node (kept in <data-dir>/data.key), and a node that joins a secure cluster receives it with its certificate (an insecure-dev joiner must be given it)")]
    NoDataKey,
    /// A value over its size limit; nothing was written.
    #[error("{what} is {size} bytes, over the limit of {limit} bytes ({} KiB)", .limit / 1024)]
    TooLarge {
        /// What (`secret data`).
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The allocation runs on another node; ask that one.
    #[error("allocation runs on node {node:?}{}", .http.as_ref().map(|h| format!(" at {h}")).unwrap_or_default())]
    Elsewhere {
        /// The node that runs it.
        node: NodeId,
        /// That node's HTTP API, when known.
        http: Option<String>,
    },
    /// The allocation has no container on this node (not started, or stopped).
    #[error("allocation {0:?} has no container here")]
    NoContainer(String),
    /// The runtime failed.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
}

/// What a submission answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Submitted {
    /// The job's name.
    pub name: String,
    /// Its version now.
    pub version: u64,
    /// False when the same spec was already there (a retry changes nothing).
    pub changed: bool,
}

/// A job with its allocations, as `GET /v1/jobs/{name}` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobView {
    /// The job.
    #[serde(flatten)]
    pub job: Job,
    /// How many of its live allocations run.
    pub running: usize,
    /// How it is doing: running, degraded, pending or stopped.
    pub health: JobHealth,
    /// Count of allocations per state, live ones and the kept terminal ones.
    pub summary: BTreeMap<String, usize>,
    /// Its latest deployment, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<crate::model::Deployment>,
    /// Its allocations, newest first.
    pub allocations: Vec<Allocation>,
    /// For a periodic job: its next launches and its runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub periodic: Option<PeriodicView>,
    /// The security settings its task runs with (its profile, with what the
    /// spec relaxed).
    pub security: crate::spec::Security,
    /// Why it has not started: the dependency it waits for, or the one that
    /// failed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// Its autoscaling, when it has a scaling block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<ScalingView>,
}

/// A periodic job's schedule as `job status` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PeriodicView {
    /// The next launch times (Unix ms).
    pub next_ms: Vec<u64>,
    /// Runs launched so far.
    pub launched: u64,
    /// Its runs still kept, oldest first, each with its health.
    pub runs: Vec<PeriodicRun>,
    /// Recent ticks that launched nothing, and why.
    pub skipped: Vec<crate::model::SkippedTick>,
}

/// One run of a periodic job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PeriodicRun {
    /// The run's job name.
    pub name: String,
    /// How it is doing.
    pub health: JobHealth,
}

/// A node with what is in use on it, as `GET /v1/nodes` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeView {
    /// The node.
    #[serde(flatten)]
    pub node: Node,
    /// Resources its allocations reserve.
    pub used: Resources,
    /// Its live allocations.
    pub allocations: usize,
}

pub(crate) struct Inner {
    pub(crate) node: NodeInfo,
    /// Whether this node's own event loop keeps time ([`crate::liveness`]).
    pub(crate) local_health: Arc<crate::liveness::LocalHealth>,
    /// The most replicas a scaling policy may ask for.
    pub(crate) scaling_cap: u32,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) runtime: Arc<dyn Runtime>,
    pub(crate) membership: Arc<dyn crate::membership::Membership>,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) tasks: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) runtime_health: watch::Receiver<Option<String>>,
    pub(crate) http_addr: Option<SocketAddr>,
    pub(crate) dns_addr: Option<SocketAddr>,
    pub(crate) lb: Option<Arc<crate::lb::Balancer>>,
    /// Where the agent keeps task files and kept logs.
    pub(crate) task_files: std::path::PathBuf,
    /// The cluster's data key, which this node seals secrets with.
    pub(crate) data_key: Option<crate::secret::DataKey>,
    /// Whether the API asks every caller for a token.
    pub(crate) acl_enforced: bool,
    /// Token checks turned off on purpose (`--insecure-dev`).
    pub(crate) insecure_dev: bool,
    /// The node's PKI when it serves TLS.
    pub(crate) pki: Option<Arc<pki::Pki>>,
    pub(crate) registered: watch::Receiver<bool>,
    /// The scheduler the control loop uses, for dry runs (`plan_job`).
    pub(crate) scheduler: Arc<dyn crate::scheduler::Scheduler>,
    /// This node's metrics.
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// Recent changes, for event-stream clients that resume.
    pub(crate) events: Arc<crate::events::EventLog>,
    /// Samples of this node's tasks over time.
    pub(crate) stats: Arc<crate::agent::stats::StatsHistory>,
    /// Set by whoever first stops the node (`shutdown`, or the last owning
    /// handle's drop), so the store and membership are shut down once.
    pub(crate) closed: std::sync::atomic::AtomicBool,
}

/// Held by every handle the caller has (not by the node's own tasks): when the
/// last one drops without [`Cluster::shutdown`], the node stops itself.
struct Owner(Arc<Inner>);

impl Drop for Owner {
    fn drop(&mut self) {
        let inner = self.0.clone();
        if inner.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        inner.shutdown.send_replace(true);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move { inner.stop().await });
            }
            Err(_) => tracing::warn!(
                "the last handle of node {} dropped outside a tokio runtime: its loops stop, the store is not shut down cleanly",
                inner.node.id
            ),
        }
    }
}

impl Inner {
    /// Signals every task, waits for them, then shuts down membership and the
    /// store; runs once.
    async fn stop(&self) {
        self.shutdown.send_replace(true);
        if self.closed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock());
        for t in tasks {
            if tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .is_err()
            {
                tracing::warn!("a task did not stop within 10 s");
            }
        }
        self.membership.shutdown().await;
        if let Err(e) = self.store.shutdown().await {
            tracing::warn!(error = %e, "store shutdown failed");
        }
    }
}

/// One node of an Orion cluster, running in this process.
///
/// ```no_run
/// # async fn demo(runtime: std::sync::Arc<dyn orion_core::Runtime>,
/// #               store: std::sync::Arc<dyn orion_core::Store>) -> Result<(), orion_core::ClusterError> {
/// use orion_core::{Cluster, JobSpec};
/// let cluster = Cluster::builder().runtime_shared(runtime).store_shared(store).start().await?;
/// let job = cluster.submit(JobSpec::service("web", "nginx").port("http", 80).replicas(3)).await?;
/// println!("web is at version {}", job.version);
/// # Ok(()) }
/// ```
///
/// Dropping the last handle the caller holds without [`shutdown`](Self::shutdown)
/// stops the node too (its loops, then membership and the store, on the current
/// tokio runtime); `shutdown` is the way to wait for that.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
    /// `None` in the handles the node's own tasks hold (the HTTP API's), which
    /// must not keep it alive.
    _owner: Option<Arc<Owner>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.inner.node.id)
            .finish()
    }
}

impl Cluster {
    /// Starts building a node from seams the caller brings (a runtime and a
    /// store at least). `orion::Node::builder()` builds a whole node with the
    /// Raft store and gossip.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::new()
    }

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        &self.inner.node.id
    }

    /// How well this node's own event loop keeps time: starved, it accuses
    /// no other node ([`crate::liveness`]).
    pub fn local_health(&self) -> &crate::liveness::LocalHealth {
        &self.inner.local_health
    }

    /// What this node registered about itself.
    pub fn node_info(&self) -> &NodeInfo {
        &self.inner.node
    }

    /// The DNS server's bound address, when this node serves DNS.
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.inner.dns_addr
    }

    /// This node's load-balancer listeners of `service` (all of them when
    /// `None`) with their backends' figures; empty when the node runs no
    /// balancer.
    pub fn lb_stats(&self, service: Option<&str>) -> Vec<crate::lb::ListenerStats> {
        self.inner
            .lb
            .as_ref()
            .map(|lb| lb.stats(service))
            .unwrap_or_default()
    }

    /// Load-balancer ports this node was asked to listen on and could not,
    /// with why (another process has the port, say).
    pub fn lb_problems(&self) -> std::collections::BTreeMap<u16, String> {
        self.inner
            .lb
            .as_ref()
            .map(|lb| lb.problems())
            .unwrap_or_default()
    }

    /// The HTTP API's bound address, when this node serves it.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.inner.http_addr
    }

    /// The store this node uses.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The changes this node keeps for event-stream clients that resume.
    pub fn event_log(&self) -> &Arc<crate::events::EventLog> {
        &self.inner.events
    }

    /// This node's metrics (its own registry: add to it, or encode it into a
    /// host's scrape).
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.inner.metrics
    }

    /// This node's view of the cluster's membership.
    pub fn membership(&self) -> &Arc<dyn crate::membership::Membership> {
        &self.inner.membership
    }

    /// The runtime this node drives.
    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.inner.runtime
    }

    /// The engine's version and how many containers this node has in it
    /// (either unknown when the engine does not say).
    pub async fn runtime_summary(&self) -> (Option<String>, Option<usize>) {
        let rt = &self.inner.runtime;
        let owner = self
            .inner
            .store
            .replica()
            .read(|s| s.cluster_id.clone())
            .map(|cluster_id| crate::runtime::Owner {
                cluster_id,
                node_id: self.inner.node.id.clone(),
            });
        let version = rt.version().await.ok();
        let containers = match owner {
            Some(o) => rt.list(&o).await.ok().map(|l| l.len()),
            None => None,
        };
        (version, containers)
    }

    /// Waits until this node has registered with the cluster.
    pub async fn ready(&self, timeout: Duration) -> Result<(), ClusterError> {
        let mut rx = self.inner.registered.clone();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r))
            .await
            .map_err(|_| ClusterError::Timeout("node did not register with a leader".into()))?
            .map_err(|_| ClusterError::Timeout("node shut down before registering".into()))?;
        Ok(())
    }

    /// Why this node's runtime is unhealthy, or `None` when it answers.
    pub fn runtime_health(&self) -> Option<String> {
        self.inner.runtime_health.borrow().clone()
    }

    /// Validates and submits a job. The same spec again is a no-op that answers the
    /// same version (so a client may retry); a different spec is a new version.
    pub async fn submit(&self, spec: JobSpec) -> Result<Submitted, ClusterError> {
        spec.validate()?;
        self.check_ports(&spec)?;
        submitted(self.propose(Command::UpsertJob { spec }).await?)
    }

    /// The spec's load-balancer and fixed ports against the cluster as this
    /// node's replica has it ([`crate::lb::conflicts`]), its dependencies,
    /// and its scaling `max` against the cluster's cap
    /// ([`ClusterConfig::max_scaled_replicas`](crate::ClusterConfig)).
    fn check_ports(&self, spec: &JobSpec) -> Result<(), SpecError> {
        let mut errors = self.inner.store.replica().read(|s| {
            let mut e = crate::lb::conflicts(s, spec);
            e.extend(crate::state::dependency_cycle(s, spec));
            e
        });
        if let Some(sc) = &spec.scaling {
            let cap = self.inner.scaling_cap;
            errors.extend(
                sc.problems("scaling", cap)
                    .into_iter()
                    .filter(|(_, p)| p.contains("cap of"))
                    .map(|(field, problem)| crate::spec::FieldError { field, problem }),
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(SpecError { errors })
        }
    }

    /// As [`submit`](Self::submit), only if the job has not changed since
    /// `index` (its `modify_index`, as [`plan_job`](Self::plan_job) reports it;
    /// 0: only if it does not exist yet). Otherwise refused with
    /// [`ClusterError::Refused`], writing nothing (Nomad's `-check-index`).
    pub async fn submit_checked(
        &self,
        spec: JobSpec,
        index: u64,
    ) -> Result<Submitted, ClusterError> {
        spec.validate()?;
        self.check_ports(&spec)?;
        submitted(
            self.propose(Command::UpsertJobIfUnchanged { spec, index })
                .await?,
        )
    }

    /// Validates and submits several jobs as one commit: all are written or,
    /// when any spec is invalid (or a name is given twice), none. Each answer is
    /// as [`submit`](Self::submit)'s, in order.
    pub async fn submit_all(&self, specs: Vec<JobSpec>) -> Result<Vec<Submitted>, ClusterError> {
        let mut errors = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for (i, spec) in specs.iter().enumerate() {
            if let Err(e) = spec.validate() {
                errors.extend(e.within(&format!("[{i}]")).errors);
            } else if let Err(e) = self.check_ports(spec) {
                errors.extend(e.within(&format!("[{i}]")).errors);
            }
            if !names.insert(spec.name.as_str()) {
                errors.push(crate::spec::FieldError {
                    field: format!("[{i}].name"),
                    problem: format!("job {:?} is given twice", spec.name),
                });
            }
        }
        if !errors.is_empty() {
            return Err(SpecError { errors }.into());
        }
        let commands = specs
            .into_iter()
            .map(|spec| Command::UpsertJob { spec })
            .collect();
        let responses = match self.propose(Command::batch(commands)).await? {
            Response::Batch { responses } => responses,
            other => return Err(unexpected(other)),
        };
        responses
            .into_iter()
            .map(|r| match r {
                Response::Refused { refusal, reason } => Err(ClusterError::Refused {
                    kind: refusal,
                    reason,
                }),
                r => submitted(r),
            })
            .collect()
    }

    /// Stops a job's allocations; `purge` also forgets the job.
    pub async fn stop_job(&self, name: &str, purge: bool) -> Result<Submitted, ClusterError> {
        let cmd = Command::StopJob {
            name: name.to_string(),
            purge,
        };
        match self.propose(cmd).await {
            Err(ClusterError::Refused {
                kind: Refusal::UnknownJob,
                ..
            }) => Err(ClusterError::JobNotFound(name.into())),
            other => submitted(other?),
        }
    }

    /// One job with its allocations, from this node's replica.
    pub fn job(&self, name: &str) -> Option<JobView> {
        let view = self.inner.store.replica().read(|s| {
            let job = s.jobs.get(name)?.clone();
            let mut allocations: Vec<Allocation> = s.allocs_of_job(name).cloned().collect();
            allocations.sort_by(|a, b| {
                b.create_index
                    .cmp(&a.create_index)
                    .then(a.slot.cmp(&b.slot))
            });
            let mut summary = BTreeMap::new();
            for a in &allocations {
                *summary.entry(a.state.to_string()).or_default() += 1;
            }
            let running = allocations
                .iter()
                .filter(|a| a.is_live() && a.state == crate::model::AllocState::Running)
                .count();
            let periodic = job.spec.schedule.as_ref().map(|_| {
                let clock = s.periodic.get(name).cloned().unwrap_or_default();
                PeriodicView {
                    next_ms: crate::periodic::next_launches(s, name, crate::model::unix_ms(), 3),
                    launched: clock.launched,
                    runs: s
                        .periodic_runs(name)
                        .into_iter()
                        .map(|r| PeriodicRun {
                            name: r.spec.name.clone(),
                            health: s.run_health(r),
                        })
                        .collect(),
                    skipped: clock.skipped,
                }
            });
            let (health, waiting) = match s.gate(&job) {
                crate::state::Gate::Open => (
                    crate::model::JobHealth::assess(&job, allocations.iter()),
                    None,
                ),
                crate::state::Gate::Waiting(why) => (crate::model::JobHealth::Pending, Some(why)),
                crate::state::Gate::Failed(why) => (crate::model::JobHealth::Failed, Some(why)),
            };
            Some(JobView {
                scaling: None,
                periodic,
                security: job.spec.security(),
                waiting,
                health,
                running,
                deployment: s.latest_deployment(name).cloned(),
                job,
                summary,
                allocations,
            })
        });
        view.map(|mut v| {
            v.scaling = self.scaling(name).ok().flatten();
            v
        })
    }

    /// Launches a run of periodic job `name` now, off its schedule; the run's
    /// name.
    pub async fn force_periodic(&self, name: &str) -> Result<String, ClusterError> {
        let now = crate::model::unix_ms();
        if self
            .inner
            .store
            .replica()
            .read(|s| !s.jobs.contains_key(name))
        {
            return Err(ClusterError::JobNotFound(name.to_string()));
        }
        match self
            .propose(Command::PeriodicForce {
                job: name.to_string(),
                now_ms: now,
            })
            .await?
        {
            Response::Refused {
                refusal: Refusal::UnknownJob,
                ..
            } => Err(ClusterError::JobNotFound(name.to_string())),
            Response::Refused { refusal, reason } => Err(ClusterError::Refused {
                kind: refusal,
                reason,
            }),
            _ => Ok(crate::spec::periodic_forced_child(name, now)),
        }
    }

    /// Every job, from this node's replica.
    pub fn jobs(&self) -> Vec<Job> {
        self.inner
            .store
            .replica()
            .read(|s| s.jobs.values().cloned().collect())
    }

    /// Every node with its use, from this node's replica.
    pub fn nodes(&self) -> Vec<NodeView> {
        self.inner.store.replica().read(|s| {
            s.nodes
                .values()
                .map(|n| NodeView {
                    node: n.clone(),
                    used: s.usage(n.id()).used,
                    allocations: s.allocs_on_node(n.id()).filter(|a| a.is_live()).count(),
                })
                .collect()
        })
    }

    /// Allocations, of one job or of all, from this node's replica.
    pub fn allocations(&self, job: Option<&str>) -> Vec<Allocation> {
        self.inner.store.replica().read(|s| match job {
            Some(j) => s.allocs_of_job(j).cloned().collect(),
            None => s.allocs.values().cloned().collect(),
        })
    }

    /// Waits until this node's replica reflects every write committed before the call
    /// (a linearizable read barrier), for reads that must not be stale.
    pub async fn sync(&self) -> Result<(), ClusterError> {
        Ok(self.inner.store.read_barrier().await?)
    }

    /// Who leads, as this node sees it.
    pub fn leader(&self) -> Leadership {
        self.inner.store.leadership().borrow().clone()
    }

    /// Committed changes from now on. A watcher that falls too far behind skips
    /// ahead and should re-read state.
    pub fn watch(&self) -> BoxStream<'static, ChangeBatch> {
        BroadcastStream::new(self.inner.store.replica().subscribe_changes())
            .filter_map(|r| async move { r.ok().map(|b| (*b).clone()) })
            .boxed()
    }

    /// Creates named volume `name` on `node` (this node when `None`). Tasks
    /// that mount it run on that node. Creating the same volume again is a no-op;
    /// the name on another node is refused.
    pub async fn create_volume(
        &self,
        name: &str,
        node: Option<&str>,
    ) -> Result<Volume, ClusterError> {
        crate::spec::check_dns_label(name)
            .map_err(|p| SpecError::one("name", format!("volume name {name:?}: {p}")))?;
        let node = node.unwrap_or(&self.inner.node.id).to_string();
        self.propose(Command::CreateVolume {
            name: name.into(),
            node: node.clone(),
        })
        .await
        .map_err(|e| node_error(e, &node))?;
        self.inner
            .store
            .replica()
            .read(|s| s.volumes.get(name).cloned())
            .ok_or_else(|| ClusterError::refused(format!("volume {name:?} vanished")))
    }

    /// Deletes named volume `name`: refused while a running job mounts it; its
    /// node then removes the data.
    pub async fn delete_volume(&self, name: &str) -> Result<(), ClusterError> {
        match self
            .propose(Command::DeleteVolume { name: name.into() })
            .await
        {
            Err(ClusterError::Refused {
                kind: Refusal::UnknownVolume,
                ..
            }) => Err(ClusterError::VolumeNotFound(name.into())),
            other => other.map(|_| ()),
        }
    }

    /// Every named volume, from this node's replica.
    pub fn volumes(&self) -> Vec<Volume> {
        self.inner
            .store
            .replica()
            .read(|s| s.volumes.values().cloned().collect())
    }

    /// Starts or ends draining a node.
    pub async fn drain(&self, node: &str, draining: bool) -> Result<(), ClusterError> {
        self.propose(Command::SetDrain {
            id: node.to_string(),
            draining,
        })
        .await
        .map_err(|e| node_error(e, node))
        .map(|_| ())
    }

    /// Adds a peer to the store's replication group (managers vote, workers learn).
    pub async fn add_peer(&self, peer: Peer) -> Result<(), ClusterError> {
        Ok(self.inner.store.add_peer(peer).await?)
    }

    /// Removes a node: from the voter set first, then from cluster state (its live
    /// allocations become lost and are replaced elsewhere).
    ///
    /// A node that gossip still sees alive is refused with
    /// [`ClusterError::NodeAlive`] (it would rejoin, and its tasks would run on
    /// beside their replacements) unless `force`: drain it, stop its agent, then
    /// remove it.
    ///
    /// A voter that never registered as a node (added as a peer, then gone
    /// before its agent started, or never real) is removed from the voter set
    /// all the same: every voter can be removed by id.
    pub async fn remove_node(&self, node: &str, force: bool) -> Result<(), ClusterError> {
        if !self
            .inner
            .store
            .replica()
            .read(|s| s.nodes.contains_key(node))
        {
            if self.inner.store.voters().iter().any(|p| p.id == node) {
                if !force && self.inner.membership.live().iter().any(|m| m.id == node) {
                    return Err(ClusterError::NodeAlive(node.into()));
                }
                self.inner.store.remove_peer(&node.to_string()).await?;
                return Ok(());
            }
            return Err(ClusterError::NodeNotFound(node.into()));
        }
        if !force && self.inner.membership.live().iter().any(|m| m.id == node) {
            return Err(ClusterError::NodeAlive(node.into()));
        }
        match self.inner.store.remove_peer(&node.to_string()).await {
            Ok(()) | Err(StoreError::Unsupported(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.propose(Command::RemoveNode { id: node.into() })
            .await
            .map_err(|e| node_error(e, node))
            .map(|_| ())
    }

    /// Commits a command and turns a refusal into an error.
    pub async fn propose(&self, cmd: Command) -> Result<Response, ClusterError> {
        match self.inner.store.propose(cmd).await?.response {
            Response::Refused { refusal, reason } => Err(ClusterError::Refused {
                kind: refusal,
                reason,
            }),
            r => Ok(r),
        }
    }

    /// Stops every loop this node runs, then membership and the store, and waits
    /// for them. Containers keep running: a restarted node adopts them.
    pub async fn shutdown(&self) {
        self.inner.stop().await;
    }

    /// A future that resolves when shutdown begins.
    pub fn on_shutdown(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.inner.shutdown.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }

    /// The caller's first handle: it owns the node.
    pub(crate) fn owning(inner: Arc<Inner>) -> Self {
        let owner = Some(Arc::new(Owner(inner.clone())));
        Cluster {
            inner,
            _owner: owner,
        }
    }

    /// A handle that does not keep the node alive: for a task that lives as
    /// long as the node and ends on [`Cluster::on_shutdown`] (an embedder's
    /// own loop beside the node's). Dropping every other handle stops the
    /// node even while this one is held.
    pub fn background(&self) -> Cluster {
        Cluster::internal(self.inner.clone())
    }

    /// A handle for the node's own tasks, which does not keep it alive.
    pub(crate) fn internal(inner: Arc<Inner>) -> Self {
        Cluster {
            inner,
            _owner: None,
        }
    }
}

impl ClusterError {
    /// A refusal by this node, before anything was proposed: the state (or this
    /// node's role) forbids it ([`Refusal::Conflict`]).
    pub fn refused(reason: String) -> Self {
        ClusterError::Refused {
            kind: Refusal::Conflict,
            reason,
        }
    }

    /// A configuration problem with `field`.
    pub fn config(field: &'static str, problem: impl Into<String>) -> Self {
        ClusterError::Config {
            field,
            problem: problem.into(),
        }
    }
}

fn node_error(e: ClusterError, node: &str) -> ClusterError {
    match e {
        ClusterError::Refused {
            kind: Refusal::UnknownNode,
            ..
        } => ClusterError::NodeNotFound(node.into()),
        e => e,
    }
}

/// A job write's answer as the caller sees it.
fn submitted(r: Response) -> Result<Submitted, ClusterError> {
    match r {
        Response::Job {
            name,
            version,
            changed,
        } => Ok(Submitted {
            name,
            version,
            changed,
        }),
        other => Err(unexpected(other)),
    }
}

fn unexpected(r: Response) -> ClusterError {
    ClusterError::refused(format!("unexpected answer from the state machine: {r:?}"))
}
