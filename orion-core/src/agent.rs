//! The node agent: drives this node's runtime until what runs matches the
//! allocations committed for it, and reports what it observes.
//!
//! ```text
//!   committed allocations for this node ─┐        ┌─ runtime.list(owner)
//!                                        ▼        ▼
//!                                  sync: desired vs actual
//!        container without a live allocation ──► stop, remove (report stopped)
//!        live allocation without a container  ──► ensure image, create, start
//!        container exited (service)           ──► report exited, restart after delay
//!        container running, not yet reported  ──► report running with host ports
//!                                        │
//!                                        ▼
//!                    UpdateAllocs (one command per pass) ──► store
//! ```
//!
//! It wakes on committed changes that touch its node, on the runtime's exit
//! feed ([`Runtime::exits`]: a container that ends is reported at once), and
//! on a tick (for runtimes without a feed, and anything the feed missed). Containers are found by their
//! labels, so an agent that restarts adopts what it started before.
//!
//! Until its replica has caught up with the leader once (a read barrier), the agent
//! starts and restarts nothing: a node that restarts cut off from the cluster keeps
//! what still runs, but does not bring back allocations that the cluster may have
//! replaced elsewhere while it was away. Stopping is always allowed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::command::{AllocUpdate, Command};
use crate::model::{
    AllocId, AllocState, Allocation, DesiredState, Health, HealthStatus, NodeId, NodeStatus,
    VolumeState,
};
use crate::runtime::{ContainerInfo, ContainerState, Owner, Runtime, RuntimeError, TaskLaunch};
use crate::spec::{JobKind, RestartMode, RestartSpec, TaskSpec, UpdateSpec};
use crate::state::Change;
use crate::store::Store;

/// How the agent paces itself.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct AgentConfig {
    /// How often it checks its containers without being woken.
    pub tick: Duration,
    /// Delay before a second attempt to start a task that failed to start
    /// (doubles per failed attempt, up to `max_backoff`). Restarts of tasks
    /// that ran follow the job's `restart` policy instead.
    pub restart_delay: Duration,
    /// Longest delay between start attempts.
    pub max_backoff: Duration,
    /// Most failed create / start attempts the agent makes per second, over
    /// all its tasks, so a job that can never start cannot storm the engine.
    pub max_failed_starts_per_sec: u32,
    /// How long a task has to stop before it is killed.
    pub stop_grace: Duration,
}

impl Default for AgentConfig {
    /// A 1 s tick notices an exited container within a second, where the
    /// runtime has no exit feed, at the cost of one `list` call per second. Restarts start at 1 s (a crash loop cannot spin the
    /// engine) and back off to 30 s; at most 5 failed attempts a second in all.
    /// Tasks get 10 s to stop, Docker's own default.
    fn default() -> Self {
        AgentConfig {
            tick: Duration::from_secs(1),
            restart_delay: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            max_failed_starts_per_sec: 5,
            stop_grace: Duration::from_secs(10),
        }
    }
}

/// How long one pass waits for the replica to catch up with the leader.
const CATCH_UP_WAIT: Duration = Duration::from_secs(2);

/// How many stops or starts one agent runs at once.
const PARALLEL_OPS: usize = 8;

/// The task, kind and restart policy of an allocation's job, if the job
/// still exists.
type JobOf = Option<(TaskSpec, JobKind, RestartSpec)>;

/// What the agent watches of an allocation its deployment waits on.
#[derive(Debug, Clone, Copy)]
struct DeployWatch {
    /// When this agent first saw it.
    seen: Instant,
    /// Since when it has been healthy without a break.
    healthy_since: Option<Instant>,
}

/// Per-allocation memory of the agent: when it may try again.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    next_attempt: Instant,
    failures: u32,
}

/// Wakes the agent whenever one of its containers exits ([`Runtime::exits`]),
/// so a finished task is reported when it ends rather than on the next tick.
/// Reopens the feed `retry` after it breaks (an exit in between is caught by
/// the pass that follows, or the tick), and gives up on a runtime without one.
async fn follow_exits(
    runtime: Arc<dyn Runtime>,
    store: Arc<dyn Store>,
    node_id: NodeId,
    retry: Duration,
    wake: Arc<tokio::sync::Notify>,
) {
    loop {
        let cluster_id = store.replica().read(|s| s.cluster_id.clone());
        if let Some(cluster_id) = cluster_id {
            let owner = Owner {
                cluster_id,
                node_id: node_id.clone(),
            };
            match runtime.exits(&owner).await {
                Err(RuntimeError::Unsupported(_)) => {
                    debug!(node_id = %node_id, runtime = runtime.name(), "no exit feed; exits are seen on the tick");
                    return;
                }
                Err(e) => debug!(node_id = %node_id, error = %e, "exit feed unavailable"),
                Ok(mut feed) => {
                    while let Some(exit) = feed.next().await {
                        match exit {
                            Ok(alloc) => {
                                debug!(node_id = %node_id, alloc = %alloc, "container exited");
                                wake.notify_one();
                            }
                            Err(e) => {
                                debug!(node_id = %node_id, error = %e, "exit feed broke");
                                break;
                            }
                        }
                    }
                    wake.notify_one();
                }
            }
        }
        tokio::time::sleep(retry).await;
    }
}

/// The agent of one node.
pub struct Agent {
    node_id: NodeId,
    store: Arc<dyn Store>,
    runtime: Arc<dyn Runtime>,
    config: AgentConfig,
    backoff: HashMap<AllocId, Backoff>,
    /// The health of each running allocation that has checks.
    trackers: HashMap<AllocId, health::Tracker>,
    /// Allocations whose deployment waits for this node's verdict.
    deploy_watch: HashMap<AllocId, DeployWatch>,
    /// Restarts of each allocation on this node, for its restart policy.
    restart_log: HashMap<AllocId, Vec<Instant>>,
    /// Exited (or unhealthy, stopped) allocations: when to restart, and why.
    pending_restart: HashMap<AllocId, (Instant, String)>,
    /// When each replacement that waits out its reschedule backoff may start.
    start_at: HashMap<AllocId, Instant>,
    /// Failed start attempts in the last second.
    failed_starts: std::collections::VecDeque<Instant>,
    /// When each running allocation with a timeout was first seen running.
    run_started: HashMap<AllocId, Instant>,
    /// Set while the runtime does not answer, with why.
    runtime_down: Option<String>,
    /// Whether this node's replica has caught up with the leader since start.
    caught_up: bool,
    health: watch::Sender<Option<String>>,
    /// This node's load balancer, whose connections a stopping task drains.
    lb: Option<Arc<crate::lb::Balancer>>,
    /// Where restarts and probe results are counted.
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Stopping allocations behind a load balancer: since when they drain.
    draining: HashMap<AllocId, Instant>,
    /// Where script tasks' scripts are written, and the runner images.
    scripts: Scripts,
    /// The data key, and where tasks' secret files go (on a tmpfs).
    secret_files: secrets::SecretFiles,
}

/// Where a node writes script tasks' scripts, and which image runs each
/// language when a task names none.
#[derive(Clone, Debug)]
pub struct Scripts {
    /// The directory (one subdirectory per allocation); it must be visible to
    /// the engine at the same path (the node's data dir is).
    pub dir: std::path::PathBuf,
    /// Runner image per language; [`crate::spec::Lang::default_image`] for
    /// the others.
    pub images: std::collections::BTreeMap<crate::spec::Lang, String>,
}

impl Scripts {
    /// Scripts under `dir`, the default runner images.
    pub fn in_dir(dir: impl Into<std::path::PathBuf>) -> Self {
        Scripts {
            dir: dir.into(),
            images: Default::default(),
        }
    }
}

impl Agent {
    /// An agent for `node_id`; it reports runtime health on `health`.
    pub fn new(
        node_id: NodeId,
        store: Arc<dyn Store>,
        runtime: Arc<dyn Runtime>,
        config: AgentConfig,
        health: watch::Sender<Option<String>>,
    ) -> Self {
        Agent {
            node_id,
            store,
            runtime,
            config,
            backoff: HashMap::new(),
            trackers: HashMap::new(),
            deploy_watch: HashMap::new(),
            restart_log: HashMap::new(),
            pending_restart: HashMap::new(),
            start_at: HashMap::new(),
            failed_starts: std::collections::VecDeque::new(),
            run_started: HashMap::new(),
            runtime_down: None,
            caught_up: false,
            health,
            lb: None,
            metrics: None,
            draining: HashMap::new(),
            scripts: Scripts::in_dir(std::env::temp_dir().join("orion-scripts")),
            secret_files: secrets::SecretFiles::default(),
        }
    }

    /// The data key this node opens its tasks' secrets with, and the
    /// directory (on a tmpfs) their files go under.
    pub fn with_secret_files(mut self, files: secrets::SecretFiles) -> Self {
        self.secret_files = files;
        self
    }

    /// Where this node writes scripts, and its runner images.
    pub fn with_scripts(mut self, scripts: Scripts) -> Self {
        self.scripts = scripts;
        self
    }

    /// Drains tasks behind `lb` before stopping them: a task whose port has a
    /// listener is stopped once no connection of this node's balancer to it is
    /// open (after [`crate::lb::DRAIN_SETTLE`], by which time every node has
    /// taken it out), or when its port's `lb.drain` has passed.
    pub fn with_load_balancer(mut self, lb: Option<Arc<crate::lb::Balancer>>) -> Self {
        self.lb = lb;
        self
    }

    /// Counts restarts and health probe results into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Whether `c` should stay up a while longer, draining; starts its drain.
    fn still_draining(&mut self, c: &ContainerInfo, task: Option<&TaskSpec>) -> bool {
        let (Some(lb), Some(task)) = (&self.lb, task) else {
            return false;
        };
        let Some(limit) = task
            .ports
            .iter()
            .filter_map(|p| p.lb.as_ref().map(|l| l.drain))
            .max()
        else {
            return false;
        };
        if c.state != ContainerState::Running {
            return false;
        }
        let since = *self
            .draining
            .entry(c.alloc_id.clone())
            .or_insert_with(Instant::now);
        let waited = since.elapsed();
        let open = lb.active(&c.alloc_id);
        let wait = waited < limit && (waited < crate::lb::DRAIN_SETTLE || open > 0);
        if !wait {
            info!(node_id = %self.node_id, alloc = %c.alloc_id, open, waited = ?waited, "drained");
        }
        wait
    }

    /// Runs until `shutdown` turns true, syncing on every change that touches this
    /// node and on every tick.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut changes = self.store.replica().subscribe_changes();
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let exited = Arc::new(tokio::sync::Notify::new());
        let exits = tokio::spawn(follow_exits(
            self.runtime.clone(),
            self.store.clone(),
            self.node_id.clone(),
            self.config.tick,
            exited.clone(),
        ));
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => break,
                _ = tick.tick() => {}
                _ = exited.notified() => {}
                r = changes.recv() => match r {
                    Ok(batch) if !batch.changes.iter().any(|c| self.touches_me(c)) => continue,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            }
            self.sync().await;
        }
        exits.abort();
        debug!(node_id = %self.node_id, "agent stopped");
    }

    fn touches_me(&self, c: &Change) -> bool {
        match c {
            Change::Alloc { node, .. } => node.as_ref() == Some(&self.node_id),
            Change::Node { id } => *id == self.node_id,
            Change::Job { .. }
            | Change::Deployment { .. }
            | Change::Scaling { .. }
            | Change::Secret { .. } => false,
            // Rare, and which node a removed volume was on is no longer known.
            Change::Volume { .. } => true,
        }
    }

    /// One pass: make the runtime match the committed allocations of this node.
    #[tracing::instrument(name = "agent_sync", skip_all, fields(node_id = %self.node_id))]
    pub async fn sync(&mut self) {
        if !self.caught_up {
            let barrier = tokio::time::timeout(CATCH_UP_WAIT, self.store.read_barrier()).await;
            self.caught_up = matches!(barrier, Ok(Ok(())));
            if self.caught_up {
                debug!(node_id = %self.node_id, "replica caught up; starting tasks is allowed");
            }
        }
        let replica = self.store.replica().clone();
        let Some(cluster_id) = replica.read(|s| s.cluster_id.clone()) else {
            return;
        };
        let owner = Owner {
            cluster_id: cluster_id.clone(),
            node_id: self.node_id.clone(),
        };
        let (mine, node_status, watched) = replica.read(|s| {
            let mine: Vec<(Allocation, JobOf)> = s
                .allocs_on_node(&self.node_id)
                .map(|a| {
                    let job = s
                        .jobs
                        .get(&a.job)
                        .map(|j| (j.spec.task.clone(), j.spec.kind, j.spec.restart_policy()));
                    (a.clone(), job)
                })
                .collect();
            // Allocations whose active deployment waits on their verdict, with
            // the job's update block.
            let watched: HashMap<AllocId, UpdateSpec> = mine
                .iter()
                .filter(|(a, _)| a.is_live() && a.deploy_healthy.is_none())
                .filter_map(|(a, _)| {
                    let d = s.active_deployment(&a.job)?;
                    let spec = &s.jobs.get(&a.job)?.spec;
                    (a.deployment == Some(d.id)).then(|| (a.id.clone(), spec.update_policy()))
                })
                .collect();
            (mine, s.nodes.get(&self.node_id).map(|n| n.status), watched)
        });
        let containers = match self.runtime.list(&owner).await {
            Ok(c) => {
                self.runtime_up(node_status).await;
                c
            }
            Err(e) => {
                self.runtime_failed(&e, &mine, node_status).await;
                return;
            }
        };
        let mut updates = Vec::new();
        let live: HashMap<&str, &(Allocation, JobOf)> = mine
            .iter()
            .filter(|(a, job)| a.is_live() && job.is_some())
            .map(|e| (e.0.id.as_str(), e))
            .collect();
        let by_alloc: HashMap<&str, &ContainerInfo> = containers
            .iter()
            .map(|c| (c.alloc_id.as_str(), c))
            .collect();

        // Containers nobody wants any more: stop and remove them first (in
        // parallel: each may take its whole stop grace), so their ports and memory
        // are free for what starts next.
        let tasks: HashMap<&str, &TaskSpec> = mine
            .iter()
            .filter_map(|(a, job)| job.as_ref().map(|(t, _, _)| (a.id.as_str(), t)))
            .collect();
        let mut unwanted: Vec<&ContainerInfo> = Vec::new();
        let mut draining = HashSet::new();
        for c in containers
            .iter()
            .filter(|c| !live.contains_key(c.alloc_id.as_str()))
        {
            if self.still_draining(c, tasks.get(c.alloc_id.as_str()).copied()) {
                draining.insert(c.alloc_id.as_str());
            } else {
                unwanted.push(c);
            }
        }
        self.draining.retain(|id, _| draining.contains(id.as_str()));
        let this = &*self;
        futures::stream::iter(unwanted)
            .for_each_concurrent(PARALLEL_OPS, |c| async move {
                info!(node_id = %this.node_id, alloc = %c.alloc_id, container = %c.id, "stopping container");
                this.stop_and_remove(c).await;
            })
            .await;
        for (a, _) in mine
            .iter()
            .filter(|(a, _)| !live.contains_key(a.id.as_str()))
            .filter(|(a, _)| !draining.contains(a.id.as_str()))
        {
            let stopped = a.desired == DesiredState::Stop && !a.state.is_terminal();
            if stopped || (a.is_live() && !by_alloc.contains_key(a.id.as_str())) {
                updates.push(update(
                    &self.node_id,
                    a,
                    AllocState::Stopped,
                    a.message.clone(),
                ));
            }
        }
        let mut seen = HashSet::new();
        let mut to_launch = Vec::new();
        for (id, (a, job)) in &live {
            seen.insert(id.to_string());
            let Some((task, kind, policy)) = job else {
                continue;
            };
            match by_alloc.get(id) {
                // Failed here for good: the reconciler replaces it (or leaves
                // it failed); this node tries no more.
                _ if a.failed_here() => {}
                None if self.caught_up
                    && self.may_attempt(&a.id)
                    && self.start_due(a, &mut updates) =>
                {
                    to_launch.push((a, task, *kind))
                }
                None => {}
                Some(c) => {
                    let timeout = task.timeout;
                    updates.extend(self.tend(a, *kind, policy, timeout, &task.outputs, c).await)
                }
            }
        }
        // Engine-wide bound on failures: allocations that failed before (or
        // replace one that did) start only within what is left of the budget.
        let mut budget = self.failure_budget();
        to_launch.retain(|(a, _, _)| {
            let risky = a.failures > 0 || a.reschedules > 0;
            if !risky {
                return true;
            }
            if budget == 0 {
                return false;
            }
            budget -= 1;
            true
        });
        // New containers start in parallel too: an image pull or a slow start of one
        // task does not hold up the others.
        let cluster_id = cluster_id.as_str();
        let this = &*self;
        let attempts: Vec<_> = to_launch
            .into_iter()
            .map(|(a, task, kind)| {
                let attempt = this.launch(cluster_id, a, task, kind);
                async move { (a, kind, attempt.await) }
            })
            .collect();
        let launched: Vec<_> = futures::stream::iter(attempts)
            .buffer_unordered(PARALLEL_OPS)
            .collect()
            .await;
        for (a, kind, result) in launched {
            updates.extend(self.launched(a, kind, result));
        }
        self.backoff.retain(|id, _| seen.contains(id));
        self.restart_log.retain(|id, _| seen.contains(id));
        self.pending_restart.retain(|id, _| seen.contains(id));
        self.start_at.retain(|id, _| seen.contains(id));
        self.run_started.retain(|id, _| seen.contains(id));
        let checked: Vec<(&Allocation, &TaskSpec, &RestartSpec, &ContainerInfo)> = live
            .values()
            .filter_map(|(a, job)| {
                let (task, _, policy) = job.as_ref()?;
                let c = by_alloc.get(a.id.as_str())?;
                (!task.health_checks.is_empty() && c.state == ContainerState::Running)
                    .then_some((a, task, policy, *c))
            })
            .collect();
        self.check_health(&checked, &mut updates).await;
        let engine_checked: Vec<(&Allocation, &RestartSpec, &ContainerInfo)> = live
            .values()
            .filter_map(|(a, job)| {
                let (task, _, policy) = job.as_ref()?;
                let c = by_alloc.get(a.id.as_str())?;
                (task.health_checks.is_empty()
                    && c.health.is_some()
                    && c.state == ContainerState::Running)
                    .then_some((a, policy, *c))
            })
            .collect();
        self.follow_engine_health(&engine_checked, &mut updates)
            .await;
        self.judge_deployments(&live, &by_alloc, &watched, &mut updates);
        self.report(updates).await;
        self.remove_deleted_volumes().await;
        let known = replica.read(|s| {
            s.allocs_on_node(&self.node_id)
                .map(|a| a.id.clone())
                .collect::<HashSet<AllocId>>()
        });
        kept_logs::prune(&self.scripts.dir, |a| known.contains(a));
        // Secret files only for what runs here (or is about to): also those
        // of allocations that ended while this agent was not running.
        self.secret_files.prune(cluster_id, &self.node_id, |a| {
            live.contains_key(a) || by_alloc.contains_key(a)
        });
        if let Some(m) = &self.metrics {
            m.agent_passes.inc();
        }
    }

    /// Runs the health probes that are due on the running allocations that have
    /// checks, concurrently, and reports transitions only; an allocation that
    /// turns unhealthy is restarted in place (and starts its grace again).
    async fn check_health(
        &mut self,
        running: &[(&Allocation, &TaskSpec, &RestartSpec, &ContainerInfo)],
        updates: &mut Vec<AllocUpdate>,
    ) {
        let now = Instant::now().into_std();
        let ids: HashSet<&str> = running.iter().map(|(a, _, _, _)| a.id.as_str()).collect();
        self.trackers.retain(|id, _| ids.contains(id.as_str()));
        let mut due = Vec::new();
        for (k, (a, task, _, _)) in running.iter().enumerate() {
            let t = self
                .trackers
                .entry(a.id.clone())
                .or_insert_with(|| health::Tracker::new(&task.health_checks, now));
            if t.status() == HealthStatus::Starting
                && a.health.as_ref().map(|h| h.status) != Some(HealthStatus::Starting)
            {
                updates.push(AllocUpdate {
                    health: Some(Health {
                        status: HealthStatus::Starting,
                        output: None,
                    }),
                    ..update(&self.node_id, a, AllocState::Running, a.message.clone())
                });
            }
            due.extend(t.due(now).into_iter().map(|i| (k, i)));
        }
        let runtime = &*self.runtime;
        let results = futures::future::join_all(due.iter().map(|&(k, i)| {
            let (_, task, _, c) = running[k];
            health::probe(&task.health_checks[i], &c.ports, runtime, &c.id)
        }))
        .await;
        let now = Instant::now().into_std();
        for ((k, i), result) in due.into_iter().zip(results) {
            if let Some(m) = &self.metrics {
                let outcome = if result.is_ok() { "pass" } else { "fail" };
                m.agent_probes
                    .get_or_create(&crate::metrics::OutcomeLabel {
                        outcome: outcome.into(),
                    })
                    .inc();
            }
            let (a, task, policy, c) = running[k];
            let Some(t) = self.trackers.get_mut(&a.id) else {
                continue;
            };
            let Some(h) = t.record(&task.health_checks[i], i, result, now) else {
                continue;
            };
            info!(node_id = %self.node_id, alloc = %a.id, health = %h.status, output = ?h.output, "health changed");
            let u = self.health_changed(a, c, policy, h).await;
            updates.push(u);
        }
    }

    /// The report of a health transition; an allocation that turned unhealthy
    /// is stopped, and its restart left to the restart policy (or, that spent,
    /// the node gives up on it).
    async fn health_changed(
        &mut self,
        a: &Allocation,
        c: &ContainerInfo,
        policy: &RestartSpec,
        h: Health,
    ) -> AllocUpdate {
        let mut u = update(&self.node_id, a, AllocState::Running, a.message.clone());
        if h.status == HealthStatus::Unhealthy {
            let why = format!("unhealthy: {}", h.output.clone().unwrap_or_default());
            self.trackers.remove(&a.id);
            u = self.kill_and_retry(a, c, policy, &why).await;
        }
        u.health = Some(h);
        u
    }

    /// Stops a running task that must not go on (unhealthy, timed out) and
    /// leaves its restart to the restart policy — the exit is then reported
    /// with `why` — or, that spent, gives up on it.
    async fn kill_and_retry(
        &mut self,
        a: &Allocation,
        c: &ContainerInfo,
        policy: &RestartSpec,
        why: &str,
    ) -> AllocUpdate {
        let _ = self.runtime.stop(&c.id, self.config.stop_grace).await;
        match self.next_restart(&a.id, policy) {
            Some(at) => {
                warn!(node_id = %self.node_id, alloc = %a.id, reason = %why, "stopped; restarting in place after its delay");
                self.pending_restart
                    .insert(a.id.clone(), (at, why.to_string()));
                update(&self.node_id, a, AllocState::Exited, Some(why.to_string()))
            }
            None => self.give_up(a, policy, why, None),
        }
    }

    /// Whether the current run of `a` has lasted past its task's timeout
    /// (timed from when this agent first saw it running).
    fn timed_out(&mut self, a: &Allocation, timeout: Option<Duration>) -> bool {
        let Some(limit) = timeout else { return false };
        let since = *self
            .run_started
            .entry(a.id.clone())
            .or_insert_with(Instant::now);
        since.elapsed() >= limit
    }

    /// Tasks whose spec has no health checks but whose image has a
    /// `HEALTHCHECK`: the engine runs it, and its verdict's transitions are
    /// reported (and acted on) as the agent's own probes' are.
    async fn follow_engine_health(
        &mut self,
        running: &[(&Allocation, &RestartSpec, &ContainerInfo)],
        updates: &mut Vec<AllocUpdate>,
    ) {
        for &(a, policy, c) in running {
            let Some(h) = c.health.clone() else { continue };
            if a.health.as_ref().map(|x| x.status) == Some(h.status) {
                continue;
            }
            info!(node_id = %self.node_id, alloc = %a.id, health = %h.status, output = ?h.output, "image health check changed");
            let u = self.health_changed(a, c, policy, h).await;
            updates.push(u);
        }
    }

    /// Gives each allocation its deployment waits on a verdict once there is
    /// one: healthy (running, and passing its checks if it has any) for
    /// `min_healthy_time` without a break; or not, when its checks turned
    /// unhealthy or `healthy_deadline` passed first. Timed on this node, from
    /// when this agent first saw it (an agent that restarts starts again).
    fn judge_deployments(
        &mut self,
        live: &HashMap<&str, &(Allocation, JobOf)>,
        containers: &HashMap<&str, &ContainerInfo>,
        watched: &HashMap<AllocId, UpdateSpec>,
        updates: &mut Vec<AllocUpdate>,
    ) {
        self.deploy_watch.retain(|id, _| watched.contains_key(id));
        let now = Instant::now();
        for (id, update_spec) in watched {
            let Some((a, Some((task, _, _)))) = live.get(id.as_str()).map(|e| (&e.0, &e.1)) else {
                continue;
            };
            let w = self.deploy_watch.entry(id.clone()).or_insert(DeployWatch {
                seen: now,
                healthy_since: None,
            });
            let reported = updates.iter().rev().find(|u| u.id == *id);
            let health = reported
                .and_then(|u| u.health.clone())
                .or_else(|| a.health.clone())
                .map(|h| h.status);
            let running = containers
                .get(id.as_str())
                .is_some_and(|c| c.state == ContainerState::Running);
            let healthy =
                running && (task.health_checks.is_empty() || health == Some(HealthStatus::Healthy));
            w.healthy_since = if healthy {
                Some(w.healthy_since.unwrap_or(now))
            } else {
                None
            };
            let verdict = if w
                .healthy_since
                .is_some_and(|t| now.duration_since(t) >= update_spec.min_healthy_time)
            {
                Some((true, None))
            } else if health == Some(HealthStatus::Unhealthy) {
                Some((false, Some("failed its health checks".to_string())))
            } else if now.duration_since(w.seen) >= update_spec.healthy_deadline {
                Some((
                    false,
                    Some(format!(
                        "not healthy within its healthy_deadline of {}",
                        humantime::format_duration(update_spec.healthy_deadline)
                    )),
                ))
            } else {
                None
            };
            let Some((ok, why)) = verdict else { continue };
            info!(node_id = %self.node_id, alloc = %id, healthy = ok, reason = ?why, "deployment verdict");
            self.deploy_watch.remove(id);
            let at_ms = Some(crate::model::unix_ms());
            match updates.iter_mut().rev().find(|u| u.id == *id) {
                Some(u) => {
                    u.deploy_healthy = Some(ok);
                    u.at_ms = at_ms;
                    if why.is_some() {
                        u.message = why;
                    }
                }
                None => updates.push(AllocUpdate {
                    deploy_healthy: Some(ok),
                    at_ms,
                    message: why.or_else(|| a.message.clone()),
                    ..AllocUpdate::new(a.id.clone(), self.node_id.clone(), a.state)
                }),
            }
        }
    }

    /// Removes the data of this node's volumes marked deleting, then tells the
    /// store to forget them.
    async fn remove_deleted_volumes(&self) {
        let deleting: Vec<String> = self.store.replica().read(|s| {
            s.volumes
                .values()
                .filter(|v| v.node == self.node_id && v.state == VolumeState::Deleting)
                .map(|v| v.name.clone())
                .collect()
        });
        for name in deleting {
            let docker_name = crate::runtime::volume_name(&self.node_id, &name);
            match self.runtime.remove_volume(&docker_name).await {
                Ok(()) | Err(RuntimeError::NotFound(_)) => {
                    info!(node_id = %self.node_id, volume = %name, "volume removed");
                    self.propose(Command::ForgetVolume { name }).await;
                }
                Err(e) => {
                    warn!(node_id = %self.node_id, volume = %name, error = %e, "could not remove volume")
                }
            }
        }
    }

    /// Creates and starts the container of an allocation that has none.
    async fn launch(
        &self,
        cluster_id: &str,
        a: &Allocation,
        task: &TaskSpec,
        kind: JobKind,
    ) -> Result<ContainerInfo, RuntimeError> {
        let security = task.security_for(kind);
        let mut task = task.clone();
        if let Some(script) = task.script.clone() {
            self.prepare_script(a, &script, &mut task)?;
        }
        self.prepare_files(a, &security, &mut task)?;
        let sealed = self.store.replica().read(|s| secrets::sealed_for(s, &task));
        let mut secret_env = std::collections::BTreeMap::new();
        self.secret_files.prepare(
            &sealed,
            cluster_id,
            &self.node_id,
            &a.id,
            &security,
            &mut task,
            &mut secret_env,
        )?;
        // Who and where the task is, as Nomad's NOMAD_ALLOC_ID and friends.
        task.env.insert("ORION_ALLOC_ID".into(), a.id.clone());
        task.env.insert("ORION_JOB".into(), a.job.clone());
        task.env.insert("ORION_NODE".into(), self.node_id.clone());
        for p in &a.ports {
            let name = p.name.to_ascii_uppercase().replace('-', "_");
            task.env
                .insert(format!("ORION_HOST_PORT_{name}"), p.host_port.to_string());
        }
        let launch = TaskLaunch {
            cluster_id: cluster_id.to_string(),
            node_id: self.node_id.clone(),
            alloc_id: a.id.clone(),
            job: a.job.clone(),
            job_version: a.job_version,
            task,
            ports: a.ports.clone(),
            security,
            secret_env,
        };
        info!(node_id = %self.node_id, alloc = %a.id, image = %launch.task.image, "starting task");
        let started = self.create_and_start(&launch).await;
        if started.is_err() {
            // No container holds them: the next attempt writes them again.
            self.secret_files.remove(cluster_id, &self.node_id, &a.id);
        }
        started
    }

    /// The outputs a completed task left, base64-encoded by path, and what
    /// could not be read (`output /out/x: not found`).
    async fn read_outputs(
        &self,
        c: &ContainerInfo,
        outputs: &[String],
    ) -> (std::collections::BTreeMap<String, String>, Vec<String>) {
        use base64::Engine as _;
        let mut kept = std::collections::BTreeMap::new();
        let mut problems = Vec::new();
        for path in outputs {
            match self
                .runtime
                .read_file(&c.id, path, crate::spec::MAX_OUTPUT_BYTES)
                .await
            {
                Ok(bytes) => {
                    kept.insert(
                        path.clone(),
                        base64::engine::general_purpose::STANDARD.encode(bytes),
                    );
                }
                Err(RuntimeError::NotFound(_)) => {
                    problems.push(format!("output {path}: not found"))
                }
                Err(e) => problems.push(format!("output {path}: {e}")),
            }
        }
        if !problems.is_empty() {
            warn!(node_id = %self.node_id, alloc = %c.alloc_id, problems = ?problems, "outputs not kept");
        }
        (kept, problems)
    }

    /// What a restricted task may write (a directory of the node mounted at
    /// `/workspace`, so what it leaves there outlives the run for its outputs),
    /// and the outputs of the jobs it waited for, read-only under
    /// [`crate::spec::INPUTS_DIR`].
    fn prepare_files(
        &self,
        a: &Allocation,
        security: &crate::spec::Security,
        task: &mut TaskSpec,
    ) -> Result<(), RuntimeError> {
        use base64::Engine as _;
        use std::os::unix::fs::PermissionsExt;
        let io = |what: &'static str, e: std::io::Error| RuntimeError::Engine {
            op: what,
            source: Box::new(e),
        };
        let base = self.scripts.dir.join(&a.id);
        if security.read_only_root && !task.volumes.iter().any(|v| v.target == "/workspace") {
            let ws = base.join("workspace");
            std::fs::create_dir_all(&ws).map_err(|e| io("preparing /workspace", e))?;
            std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755))
                .and_then(|()| {
                    std::fs::set_permissions(&ws, std::fs::Permissions::from_mode(0o1777))
                })
                .map_err(|e| io("preparing /workspace", e))?;
            task.volumes.push(crate::spec::VolumeMount {
                name: None,
                host_path: Some(ws.to_string_lossy().into_owned()),
                target: "/workspace".into(),
                read_only: false,
            });
        }
        let inputs = self.store.replica().read(|s| {
            let mut out: Vec<(String, String, Vec<u8>)> = Vec::new();
            let Some(job) = s.jobs.get(&a.job) else {
                return out;
            };
            for d in &job.spec.after {
                let done: Vec<&Allocation> = s
                    .allocs_of_job(&d.job)
                    .filter(|x| x.state == AllocState::Complete && !x.outputs.is_empty())
                    .collect();
                let many = done.len() > 1;
                for x in done {
                    for (path, b64) in &x.outputs {
                        let name = path.rsplit('/').next().unwrap_or("output");
                        let rel = if many {
                            format!("{}/{}/{name}", d.job, x.slot)
                        } else {
                            format!("{}/{name}", d.job)
                        };
                        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64) {
                            out.push((d.job.clone(), rel, bytes));
                        }
                    }
                }
            }
            out
        });
        let mut mounted = std::collections::BTreeSet::new();
        for (dep, rel, bytes) in inputs {
            let path = base.join("inputs").join(&rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io("writing inputs", e))?;
            }
            std::fs::write(&path, bytes).map_err(|e| io("writing inputs", e))?;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644));
            if mounted.insert(dep.clone()) {
                let dir = base.join("inputs").join(&dep);
                task.volumes.push(crate::spec::VolumeMount {
                    name: None,
                    host_path: Some(dir.to_string_lossy().into_owned()),
                    target: format!("{}/{dep}", crate::spec::INPUTS_DIR),
                    read_only: true,
                });
            }
        }
        // Directories under inputs are readable by the task's user.
        for dep in &mounted {
            let _ = set_tree_readable(&base.join("inputs").join(dep));
        }
        let _ =
            std::fs::set_permissions(base.join("inputs"), std::fs::Permissions::from_mode(0o755));
        Ok(())
    }

    /// Writes a script task's script where its container mounts it read-only
    /// (`<scripts dir>/<alloc>/script` at [`crate::spec::SCRIPT_PATH`]), and
    /// makes the task run it: the language's interpreter as the command, the
    /// node's runner image for the language when the task names no image.
    fn prepare_script(
        &self,
        a: &Allocation,
        script: &crate::spec::ScriptSpec,
        task: &mut TaskSpec,
    ) -> Result<(), RuntimeError> {
        let dir = self.scripts.dir.join(&a.id);
        let path = dir.join("script");
        let written = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&path, script.content.as_bytes()))
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            });
        if let Err(e) = written {
            return Err(RuntimeError::Engine {
                op: "writing the script",
                source: format!("{}: {e}", path.display()).into(),
            });
        }
        task.volumes.push(crate::spec::VolumeMount {
            name: None,
            host_path: Some(path.to_string_lossy().into_owned()),
            target: crate::spec::SCRIPT_PATH.into(),
            read_only: true,
        });
        task.command = script.command();
        task.args.clear();
        // A runtime without images runs the interpreter on its host.
        if task.image.is_empty() && crate::model::runs_images(Some(self.runtime.name())) {
            task.image = self
                .scripts
                .images
                .get(&script.lang)
                .cloned()
                .unwrap_or_else(|| script.lang.default_image().to_string());
        }
        Ok(())
    }

    /// What a launch attempt means for the allocation, and for its backoff.
    fn launched(
        &mut self,
        a: &Allocation,
        kind: JobKind,
        result: Result<ContainerInfo, RuntimeError>,
    ) -> Option<AllocUpdate> {
        match result {
            Ok(c) => {
                self.backoff.remove(&a.id);
                let mut u = update(&self.node_id, a, AllocState::Running, None);
                u.ports = Some(c.ports);
                Some(u)
            }
            Err(e) => {
                warn!(node_id = %self.node_id, alloc = %a.id, error = %e, "task failed to start");
                self.note_failed_start();
                self.back_off(&a.id);
                let mut u = update(
                    &self.node_id,
                    a,
                    AllocState::Failed,
                    Some(format!("start failed: {e}")),
                );
                // Each failed attempt counts towards rescheduling (absolute, so a
                // report committed twice counts once).
                u.failures = Some(a.failures + 1);
                if kind == JobKind::Batch && matches!(e, RuntimeError::Image { .. }) {
                    // Retrying here cannot bring the image: a run to completion
                    // is not retried on this node (its reschedule policy may
                    // try another).
                    u.message = Some(format!(
                        "start failed: {e}; not retried: retrying cannot fix a missing image"
                    ));
                    u.gave_up = true;
                }
                Some(u)
            }
        }
    }

    async fn create_and_start(&self, launch: &TaskLaunch) -> Result<ContainerInfo, RuntimeError> {
        self.runtime.ensure_image(&launch.task.image).await?;
        let created = self.runtime.create(launch).await?;
        if let Err(e) = self.runtime.start(&created.id).await {
            // A container that cannot start (port taken, bad command) is removed so
            // the next attempt starts clean.
            let _ = self.runtime.remove(&created.id).await;
            return Err(e);
        }
        self.runtime.inspect(&created.id).await
    }

    /// Looks after an allocation whose container exists.
    async fn tend(
        &mut self,
        a: &Allocation,
        kind: JobKind,
        policy: &RestartSpec,
        timeout: Option<Duration>,
        outputs: &[String],
        c: &ContainerInfo,
    ) -> Option<AllocUpdate> {
        if c.state != ContainerState::Running {
            self.run_started.remove(&a.id);
        }
        match &c.state {
            ContainerState::Running if self.timed_out(a, timeout) => {
                let why = format!(
                    "timed out after {}",
                    humantime::format_duration(timeout.unwrap_or_default())
                );
                warn!(node_id = %self.node_id, alloc = %a.id, "{why}; killing it");
                self.run_started.remove(&a.id);
                Some(self.kill_and_retry(a, c, policy, &why).await)
            }
            ContainerState::Running => {
                // Running well past its last restart: forget the crash history.
                let settled = self
                    .backoff
                    .get(&a.id)
                    .is_some_and(|b| Instant::now() > b.next_attempt + self.config.max_backoff);
                if settled {
                    self.backoff.remove(&a.id);
                }
                let mut u = update(&self.node_id, a, AllocState::Running, None);
                u.ports = Some(c.ports.clone());
                Some(u).filter(|u| a.changed_by(u))
            }
            ContainerState::Exited { code: 0 } if kind == JobKind::Batch => {
                // Its outputs are read before its container goes.
                let (kept, problems) = self.read_outputs(c, outputs).await;
                self.stop_and_remove(c).await;
                let why = (!problems.is_empty()).then(|| problems.join("; "));
                let mut u = update(&self.node_id, a, AllocState::Complete, why);
                u.exit_code = Some(0);
                u.outputs = (!kept.is_empty()).then_some(kept);
                Some(u)
            }
            ContainerState::Exited { code } => self.restart(a, c, *code, policy).await,
            ContainerState::Created => {
                if let Err(e) = self.runtime.start(&c.id).await {
                    self.back_off(&a.id);
                    let u = update(
                        &self.node_id,
                        a,
                        AllocState::Failed,
                        Some(format!("start failed: {e}")),
                    );
                    return Some(u).filter(|u| a.changed_by(u));
                }
                None
            }
            ContainerState::Other { .. } => None,
        }
    }

    /// Restarts an exited container when the job's `restart` policy says so;
    /// reports the exit meanwhile. Once the policy is spent (mode fail) the
    /// allocation is reported failed with `gave_up`, and the reconciler
    /// replaces it under the `reschedule` policy.
    async fn restart(
        &mut self,
        a: &Allocation,
        c: &ContainerInfo,
        code: i64,
        policy: &RestartSpec,
    ) -> Option<AllocUpdate> {
        let oom = c.error.as_deref() == Some(crate::runtime::OOM_KILLED);
        let exit = format!(
            "exited with code {code}{}",
            if oom { " (OOMKilled)" } else { "" }
        );
        let (at, why) = match self.pending_restart.get(&a.id) {
            Some((at, why)) => (*at, why.clone()),
            None => match self.next_restart(&a.id, policy) {
                Some(at) => {
                    let wait = at.saturating_duration_since(Instant::now());
                    info!(node_id = %self.node_id, alloc = %a.id, code, oom, wait = ?wait, "task exited; restarting after its delay");
                    self.pending_restart
                        .insert(a.id.clone(), (at, exit.clone()));
                    (at, exit)
                }
                None => return Some(self.give_up(a, policy, &exit, Some(code))),
            },
        };
        let mut exited = update(&self.node_id, a, AllocState::Exited, Some(why.clone()));
        exited.exit_code = Some(code);
        if !self.caught_up || Instant::now() < at {
            return Some(exited).filter(|u| a.changed_by(u));
        }
        match self.runtime.start(&c.id).await {
            Ok(()) => {
                self.pending_restart.remove(&a.id);
                self.restart_log
                    .entry(a.id.clone())
                    .or_default()
                    .push(Instant::now());
                let mut u = update(&self.node_id, a, AllocState::Running, None);
                u.ports = self.runtime.inspect(&c.id).await.ok().map(|i| i.ports);
                u.exit_code = Some(code);
                u.restarts = Some(a.restarts + 1);
                if let Some(m) = &self.metrics {
                    m.agent_restarts.inc();
                }
                Some(u)
            }
            Err(e) => {
                self.note_failed_start();
                let retry = Instant::now() + self.config.restart_delay.max(policy.delay);
                self.pending_restart
                    .insert(a.id.clone(), (retry, why.clone()));
                exited.message = Some(format!("{why}; restart failed: {e}"));
                Some(exited).filter(|u| a.changed_by(u))
            }
        }
    }

    /// When the next restart of `id` may happen under `policy`, or `None`
    /// when its restarts are spent (mode fail). Restarts are counted within
    /// the policy's interval, on this node, since this agent started.
    fn next_restart(&mut self, id: &str, policy: &RestartSpec) -> Option<Instant> {
        let now = Instant::now();
        let log = self.restart_log.entry(id.to_string()).or_default();
        log.retain(|t| now.duration_since(*t) < policy.interval);
        let n = log.len() as u32;
        if n < policy.attempts {
            let seed = id.bytes().fold(u64::from(n), |h, b| {
                h.wrapping_mul(31).wrapping_add(u64::from(b))
            });
            return Some(now + crate::spec::jittered(policy.delay_for(n), seed));
        }
        match policy.mode {
            // Wait until the oldest restart leaves the interval.
            RestartMode::Delay => Some(log[0] + policy.interval),
            RestartMode::Fail => None,
        }
    }

    /// The report that this node gives up on `a`: its restarts are spent.
    fn give_up(
        &mut self,
        a: &Allocation,
        policy: &RestartSpec,
        why: &str,
        code: Option<i64>,
    ) -> AllocUpdate {
        let msg = format!(
            "restarts spent ({} within {}): {why}",
            policy.attempts,
            humantime::format_duration(policy.interval)
        );
        warn!(node_id = %self.node_id, alloc = %a.id, reason = %msg, "giving up on the task");
        self.pending_restart.remove(&a.id);
        let mut u = update(&self.node_id, a, AllocState::Failed, Some(msg));
        u.exit_code = code;
        u.gave_up = true;
        u
    }

    /// Whether a new allocation that waits out its slot's reschedule backoff
    /// may start now; reports the wait once, on first sight.
    fn start_due(&mut self, a: &Allocation, updates: &mut Vec<AllocUpdate>) -> bool {
        if a.start_delay_ms == 0 || a.state != AllocState::Starting {
            return true;
        }
        let delay = Duration::from_millis(a.start_delay_ms);
        let at = *self.start_at.entry(a.id.clone()).or_insert_with(|| {
            let msg = format!(
                "starts in {} (reschedule backoff: replacement {} of its slot)",
                humantime::format_duration(Duration::from_secs(delay.as_secs().max(1))),
                a.reschedules
            );
            updates.push(update(&self.node_id, a, AllocState::Starting, Some(msg)));
            Instant::now() + delay
        });
        Instant::now() >= at
    }

    /// Failed starts still allowed in this second.
    fn failure_budget(&mut self) -> usize {
        let now = Instant::now();
        while self
            .failed_starts
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            self.failed_starts.pop_front();
        }
        (self.config.max_failed_starts_per_sec as usize).saturating_sub(self.failed_starts.len())
    }

    fn note_failed_start(&mut self) {
        self.failed_starts.push_back(Instant::now());
    }

    async fn stop_and_remove(&self, c: &ContainerInfo) {
        if c.state == ContainerState::Running {
            if let Err(e) = self.runtime.stop(&c.id, self.config.stop_grace).await {
                if !matches!(e, RuntimeError::NotFound(_)) {
                    warn!(container = %c.id, error = %e, "stop failed");
                }
            }
        }
        // Stopped: its output is complete; kept before the container goes,
        // with the task's files (script, workspace, inputs).
        self.keep_logs(c).await;
        let _ = std::fs::remove_dir_all(self.scripts.dir.join(&c.alloc_id));
        if let Some(cluster_id) = self.store.replica().read(|s| s.cluster_id.clone()) {
            self.secret_files
                .remove(&cluster_id, &self.node_id, &c.alloc_id);
        }
        if let Err(e) = self.runtime.remove(&c.id).await {
            if !matches!(e, RuntimeError::NotFound(_)) {
                warn!(container = %c.id, error = %e, "remove failed");
            }
        }
    }

    /// Copies a stopped container's output where the node keeps it once the
    /// container is gone (see [`kept_logs`]).
    async fn keep_logs(&self, c: &ContainerInfo) {
        match self.runtime.logs(&c.id, false).await {
            Ok(logs) => {
                if let Err(e) = kept_logs::keep(&self.scripts.dir, &c.alloc_id, logs).await {
                    warn!(alloc = %c.alloc_id, error = %e, "could not keep the task's logs");
                }
            }
            Err(e) => debug!(alloc = %c.alloc_id, error = %e, "no logs to keep"),
        }
    }

    fn may_attempt(&self, id: &str) -> bool {
        self.backoff
            .get(id)
            .is_none_or(|b| Instant::now() >= b.next_attempt)
    }

    fn back_off(&mut self, id: &str) {
        let b = self.backoff.entry(id.to_string()).or_insert(Backoff {
            next_attempt: Instant::now(),
            failures: 0,
        });
        let delay = self.config.restart_delay * 2u32.saturating_pow(b.failures.min(10));
        b.next_attempt = Instant::now() + delay.min(self.config.max_backoff);
        b.failures += 1;
    }

    async fn runtime_up(&mut self, status: Option<NodeStatus>) {
        if self.runtime_down.take().is_some() {
            info!(node_id = %self.node_id, "runtime answers again");
            self.health.send_replace(None);
        }
        if status == Some(NodeStatus::Unhealthy) {
            self.propose(Command::SetNodeStatus {
                id: self.node_id.clone(),
                status: NodeStatus::Ready,
                reason: None,
            })
            .await;
        }
    }

    async fn runtime_failed(
        &mut self,
        e: &RuntimeError,
        mine: &[(Allocation, JobOf)],
        status: Option<NodeStatus>,
    ) {
        let why = format!("{} runtime: {e}", self.runtime.name());
        if self.runtime_down.as_ref() != Some(&why) {
            warn!(node_id = %self.node_id, error = %e, "runtime does not answer");
            self.runtime_down = Some(why.clone());
            self.health.send_replace(Some(why.clone()));
        }
        if status == Some(NodeStatus::Ready) {
            self.propose(Command::SetNodeStatus {
                id: self.node_id.clone(),
                status: NodeStatus::Unhealthy,
                reason: Some(why.clone()),
            })
            .await;
        }
        let updates = mine
            .iter()
            .filter(|(a, _)| a.is_live())
            .map(|(a, _)| update(&self.node_id, a, AllocState::Failed, Some(why.clone())))
            .filter(|u| mine.iter().any(|(a, _)| a.id == u.id && a.changed_by(u)))
            .collect();
        self.report(updates).await;
    }

    async fn report(&self, updates: Vec<AllocUpdate>) {
        if !updates.is_empty() {
            self.propose(Command::UpdateAllocs { updates }).await;
        }
    }

    async fn propose(&self, cmd: Command) {
        if let Err(e) = self.store.propose(cmd).await {
            warn!(node_id = %self.node_id, error = %e, "could not report to the store; will retry");
        }
    }
}

/// Makes every directory under `dir` (and it) mode 0755.
fn set_tree_readable(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            set_tree_readable(&e.path())?;
        }
    }
    Ok(())
}

fn update(
    node: &NodeId,
    a: &Allocation,
    state: AllocState,
    message: Option<String>,
) -> AllocUpdate {
    AllocUpdate {
        message,
        at_ms: Some(crate::model::unix_ms()),
        ..AllocUpdate::new(a.id.clone(), node.clone(), state)
    }
}

pub mod health;
pub mod kept_logs;
pub(crate) mod load;
pub mod secrets;
pub mod stats;

#[cfg(test)]
mod tests;
