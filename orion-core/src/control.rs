//! The leader's control loop: node liveness and reconciliation.
//!
//! ```text
//!  wake: committed change │ tick │ leadership change │ membership event
//!                         ▼
//!            am I the Raft leader? ── no ──► sleep
//!                         │ yes
//!                         ▼
//!   gossip says dead / absent too long ──► SetNodeStatus(down)   (Raft decides)
//!   gossip says alive, state says down ──► SetNodeStatus(ready)
//!                         ▼
//!      reconcile::plan(state) ──► ApplyPlan (only when it changes something)
//! ```
//!
//! Errors never end the loop: a failed proposal is logged and the next wake
//! retries from fresh state. A deposed leader's proposals fail to commit; and a
//! leader that cannot confirm its leadership with a quorum (a read barrier, at
//! most once per `quorum_check` interval) does not act at all, so a leader cut off
//! from the majority stops deciding as soon as it can know.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::command::Command;
use crate::membership::{Membership, MembershipEvent};
use crate::model::{NodeId, NodeStatus};
use crate::reconcile;
use crate::scheduler::Scheduler;
use crate::store::Store;

/// How the leader paces reconciliation and judges liveness.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ControlConfig {
    /// Reconcile at least this often, even when nothing changed.
    pub reconcile_interval: Duration,
    /// Most placements requested in one pass (one Raft entry); the rest follow in
    /// the next pass.
    pub max_placements_per_pass: usize,
    /// A node absent from membership's live set this long is marked down, even
    /// without a dead event (it may have died while there was no leader).
    pub absent_grace: Duration,
    /// How long a confirmation of leadership by a quorum is trusted before the
    /// leader confirms again (a read barrier: one heartbeat round).
    pub quorum_check: Duration,
    /// Finished batch jobs are forgotten this long after they finished.
    pub gc_after: Duration,
    /// Autoscaling reads a node's report only while it is younger than this
    /// (a node whose reports stop counts for nothing rather than for its
    /// last figures).
    pub load_max_age: Duration,
    /// When a lost node is down, and when this node is starved
    /// ([`crate::liveness`]).
    pub liveness: crate::liveness::LivenessConfig,
}

impl Default for ControlConfig {
    /// 1 s: pending allocations are retried about once a second. 5,000 placements
    /// keep one Raft entry under a few MB. 5 s of absence is longer than gossip's own
    /// detection, so it only catches nodes gossip never reported. Finished batch
    /// jobs are kept a day (Kubernetes' and Nomad's order of magnitude), then
    /// forgotten. A load report is trusted for 35 s: three of the stats
    /// sampler's default 10 s rounds, and a little.
    fn default() -> Self {
        ControlConfig {
            reconcile_interval: Duration::from_secs(1),
            max_placements_per_pass: 5_000,
            absent_grace: Duration::from_secs(5),
            quorum_check: Duration::from_millis(500),
            gc_after: Duration::from_secs(24 * 3600),
            load_max_age: Duration::from_secs(35),
            liveness: Default::default(),
        }
    }
}

/// How often the leader looks for finished jobs to forget.
const GC_EVERY: Duration = Duration::from_secs(60);

pub(crate) struct Control {
    pub(crate) node_id: NodeId,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) membership: Arc<dyn Membership>,
    pub(crate) scheduler: Arc<dyn Scheduler>,
    pub(crate) config: ControlConfig,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    pub(crate) local_health: Arc<crate::liveness::LocalHealth>,
}

impl Control {
    pub(crate) async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let replica = self.store.replica().clone();
        let mut applied = replica.subscribe_applied();
        let mut leadership = self.store.leadership();
        let mut events = self.membership.subscribe();
        let mut tick = tokio::time::interval(self.config.reconcile_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut absent_since: HashMap<NodeId, Instant> = HashMap::new();
        // Nodes gossip declared dead, kept until they are live again: the
        // verdict may wait for a second member to confirm.
        let mut dead: HashSet<NodeId> = HashSet::new();
        let mut confirmed: Option<Instant> = None;
        let mut progress: HashMap<u64, (u64, Instant)> = HashMap::new();
        let mut last_gc = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => break,
                r = applied.changed() => if r.is_err() { break },
                r = leadership.changed() => if r.is_err() { break },
                _ = tick.tick() => {}
                ev = events.recv() => match ev {
                    Ok(MembershipEvent::Dead(id)) => { dead.insert(id); }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => {}
                },
            }
            let (leader, quorum_lost) = {
                let l = leadership.borrow_and_update();
                (l.is_self, l.quorum_lost)
            };
            if !leader || quorum_lost {
                self.metrics
                    .control_pass(if leader { "quorum_lost" } else { "follower" });
                absent_since.clear();
                dead.clear();
                confirmed = None;
                progress.clear();
                continue;
            }
            if !self.confirm_leadership(&mut confirmed).await {
                self.metrics.control_pass("unconfirmed");
                continue;
            }
            self.liveness(&mut absent_since, &mut dead).await;
            self.periodic().await;
            self.reconcile().await;
            self.autoscale().await;
            self.progress_deadlines(&mut progress).await;
            if last_gc.elapsed() >= GC_EVERY {
                last_gc = Instant::now();
                self.collect_finished_jobs().await;
            }
            self.metrics.control_pass("acted");
        }
        debug!(node_id = %self.node_id, "control loop stopped");
    }

    /// Whether a quorum still follows this leader: trusted for `quorum_check`, then
    /// confirmed again with a read barrier (bounded by twice that interval).
    async fn confirm_leadership(&self, confirmed: &mut Option<Instant>) -> bool {
        let fresh = confirmed.is_some_and(|t| t.elapsed() < self.config.quorum_check);
        if fresh {
            return true;
        }
        let limit = self.config.quorum_check * 2 + Duration::from_millis(500);
        match tokio::time::timeout(limit, self.store.read_barrier()).await {
            Ok(Ok(())) => {
                *confirmed = Some(Instant::now());
                true
            }
            Ok(Err(e)) => {
                warn!(node_id = %self.node_id, error = %e, "leadership not confirmed by a quorum; not acting");
                *confirmed = None;
                false
            }
            Err(_) => {
                warn!(node_id = %self.node_id, "no quorum answered in time; not acting as leader");
                *confirmed = None;
                false
            }
        }
    }

    /// Commits what gossip says of node liveness, once confirmed
    /// ([`crate::liveness::verdict`]).
    async fn liveness(
        &self,
        absent_since: &mut HashMap<NodeId, Instant>,
        dead: &mut HashSet<NodeId>,
    ) {
        let members = self.membership.live();
        let live: Vec<NodeId> = members.iter().map(|m| m.id.clone()).collect();
        let nodes: Vec<(NodeId, NodeStatus)> = self.store.replica().read(|s| {
            s.nodes
                .values()
                .map(|n| (n.id().clone(), n.status))
                .collect()
        });
        let now = Instant::now();
        for (id, status) in nodes {
            let alive = live.contains(&id);
            if alive {
                absent_since.remove(&id);
                dead.remove(&id);
            }
            let declared_dead = dead.contains(&id) && !alive;
            let lost_for = if alive {
                Duration::ZERO
            } else {
                now.duration_since(*absent_since.entry(id.clone()).or_insert(now))
            };
            let absent_too_long = !alive && lost_for >= self.config.absent_grace;
            let cmd = if status != NodeStatus::Down && (declared_dead || absent_too_long) {
                use crate::liveness::{verdict, Verdict};
                let starved = self.local_health.starved();
                let reason = match verdict(&id, &self.node_id, starved, &members) {
                    Verdict::Down { accusers } => {
                        format!("lost by {} (gossip)", accusers.join(" and "))
                    }
                    Verdict::Unconfirmable
                        if lost_for >= self.config.liveness.unconfirmed_grace =>
                    {
                        format!(
                            "lost for {} s and no member that is not starved could confirm or deny it",
                            lost_for.as_secs()
                        )
                    }
                    v => {
                        debug!(node_id = %id, verdict = ?v, "node lost but not confirmed yet");
                        continue;
                    }
                };
                info!(node_id = %id, %reason, "node is dead; marking it down");
                self.metrics.failure_detections.inc();
                Command::SetNodeStatus {
                    id,
                    status: NodeStatus::Down,
                    reason: Some(reason),
                }
            } else if status == NodeStatus::Down && alive {
                info!(node_id = %id, "node is alive again; marking it ready");
                Command::SetNodeStatus {
                    id,
                    status: NodeStatus::Ready,
                    reason: None,
                }
            } else {
                continue;
            };
            if let Err(e) = self.store.propose(cmd).await {
                warn!(error = %e, "could not commit a node's liveness");
            }
        }
    }

    /// Forgets batch jobs finished more than `gc_after` ago.
    /// Commits the periodic jobs' ticks that are due ([`crate::periodic::due`]),
    /// one after another: each is keyed by its tick, so one proposed twice (a
    /// retry, a leader change) is refused, not launched again.
    async fn periodic(&self) {
        let now = crate::model::unix_ms();
        let due = self.store.replica().read(|s| crate::periodic::due(s, now));
        for cmd in due {
            match self.store.propose(cmd).await {
                Ok(crate::store::Applied {
                    response: crate::command::Response::Refused { reason, .. },
                    ..
                }) => debug!(%reason, "periodic tick refused"),
                Ok(_) => {}
                Err(e) => {
                    warn!(error = %e, "could not commit a periodic tick");
                    return;
                }
            }
        }
    }

    async fn collect_finished_jobs(&self) {
        let now = crate::model::unix_ms();
        let age = self.config.gc_after.as_millis() as u64;
        let names = self.store.replica().read(|s| s.finished_jobs(now, age));
        for name in names {
            info!(job = %name, "forgetting a finished job");
            let cmd = Command::StopJob { name, purge: true };
            if let Err(e) = self.store.propose(cmd).await {
                warn!(error = %e, "could not forget a finished job");
            }
        }
    }

    /// Fails each running deployment in which no allocation has come to count
    /// for its `progress_deadline`, as measured by this leader from when it
    /// saw the deployment's last progress (a new leader starts the clock again,
    /// so a deadline can stretch by up to one leader change).
    async fn progress_deadlines(&self, seen: &mut HashMap<u64, (u64, Instant)>) {
        let now = Instant::now();
        let running: Vec<(String, u64, u64, Duration)> = self.store.replica().read(|s| {
            s.deployments
                .values()
                .filter_map(|l| l.last())
                .filter(|d| d.status == crate::model::DeploymentStatus::Running)
                .filter_map(|d| {
                    let deadline = s.jobs.get(&d.job)?.spec.update_policy().progress_deadline;
                    Some((d.job.clone(), d.id, d.progress_index, deadline))
                })
                .collect()
        });
        seen.retain(|id, _| running.iter().any(|r| r.1 == *id));
        for (job, id, index, deadline) in running {
            let entry = seen.entry(id).or_insert((index, now));
            if entry.0 != index {
                *entry = (index, now);
            }
            if now.duration_since(entry.1) < deadline {
                continue;
            }
            let reason = format!(
                "no allocation became healthy within its progress_deadline of {}",
                humantime::format_duration(deadline)
            );
            warn!(%job, deployment = id, %reason, "deployment failed");
            let cmd = Command::Deployment {
                job,
                deployment: id,
                action: crate::state::DeploymentAction::Fail,
                reason: Some(reason),
            };
            if let Err(e) = self.store.propose(cmd).await {
                warn!(error = %e, "could not fail a deployment");
            }
        }
    }

    /// Evaluates each scaling job whose evaluation is due (by the committed
    /// time of its last one, so a new leader keeps the pace) from the loads
    /// its nodes report through membership, and commits each evaluation with
    /// its inputs, reason and memory ([`Command::Scale`]): a change of count,
    /// or the memory a later decision needs (stabilization, cooldowns).
    async fn autoscale(&self) {
        // The loop wakes on every commit: with no scaling job, read nothing more.
        if !self
            .store
            .replica()
            .read(|s| s.jobs.values().any(|j| j.spec.scaling.is_some()))
        {
            return;
        }
        let now = crate::model::unix_ms();
        let max_age = self.config.load_max_age.as_millis() as u64;
        let members = self.membership.live();
        // Decide on a snapshot, not inside the replica's lock.
        let s = self.store.replica().current();
        let cmds: Vec<Command> = {
            s.jobs
                .values()
                .filter(|j| {
                    j.status == crate::model::JobStatus::Running
                        && j.spec.kind == crate::spec::JobKind::Service
                })
                .filter_map(|j| {
                    let sc = j.spec.scaling.as_ref()?;
                    let kept = s.scaling.get(&j.spec.name);
                    if !crate::scaling::due(sc, kept, now) {
                        return None;
                    }
                    let loads = members
                        .iter()
                        .filter_map(|m| m.load.get(&j.spec.name).map(|l| (&m.id, l)));
                    let (obs, serving) = crate::scaling::observe(&s, j, loads, now, max_age);
                    let memory = kept.map(|k| k.memory.clone()).unwrap_or_default();
                    let d = crate::scaling::decide(sc, &obs, &memory);
                    Some(Command::Scale {
                        job: j.spec.name.clone(),
                        record: crate::scaling::ScalingRecord {
                            at_ms: now,
                            from: obs.current,
                            to: d.to,
                            reason: d.reason,
                            by: crate::scaling::ScaledBy::Policy,
                            inputs: obs
                                .metrics
                                .iter()
                                .map(|(m, v)| (m.to_string(), (v * 100.0).round() / 100.0))
                                .collect(),
                            instances: serving,
                        },
                        memory: d.memory,
                    })
                })
                .collect()
        };
        drop(s);
        for cmd in cmds {
            let Command::Scale { job, record, .. } = &cmd else {
                continue;
            };
            let (job, from, to, reason) =
                (job.clone(), record.from, record.to, record.reason.clone());
            match self.store.propose(cmd).await {
                Ok(crate::store::Applied {
                    response: crate::command::Response::Refused { reason, .. },
                    ..
                }) => debug!(%job, %reason, "scaling evaluation refused"),
                Ok(_) if from != to => info!(%job, from, to, %reason, "job scaled"),
                Ok(_) => debug!(%job, %reason, "scaling evaluated"),
                Err(e) => {
                    warn!(error = %e, "could not commit a scaling evaluation");
                    return;
                }
            }
        }
    }

    #[tracing::instrument(name = "control_pass", skip_all, fields(node_id = %self.node_id))]
    async fn reconcile(&self) {
        let replica = self.store.replica();
        if replica.read(|s| s.cluster_id.is_none()) {
            let cluster_id = uuid::Uuid::new_v4().simple().to_string();
            info!(%cluster_id, "forming a new cluster");
            if let Err(e) = self
                .store
                .propose(Command::InitCluster { cluster_id })
                .await
            {
                warn!(error = %e, "could not name the cluster");
                return;
            }
        }
        let max = self.config.max_placements_per_pass;
        // Plan on a snapshot: a whole reconcile-and-schedule pass must not hold
        // the replica's lock, which appliers and API reads wait on.
        let state = replica.current();
        let now_ms = crate::model::unix_ms();
        let started = Instant::now();
        let plan = reconcile::plan_at(
            &state,
            &*self.scheduler,
            max,
            state.applied_index,
            Some(now_ms),
        );
        self.metrics.record_plan(started.elapsed(), &plan.unplaced);
        drop(state);
        if plan.is_empty() {
            return;
        }
        debug!(
            stops = plan.stops.len(),
            placements = plan.placements.len(),
            unplaced = plan.unplaced.len(),
            "applying plan"
        );
        match self.store.propose(Command::ApplyPlan { plan }).await {
            Ok(applied) => {
                if let crate::command::Response::Plan { placed, .. } = &applied.response {
                    self.metrics.placements.inc_by(*placed as u64);
                }
                debug!(index = applied.index, response = ?applied.response, "plan applied")
            }
            Err(e) => warn!(error = %e, "could not commit a plan"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::command::Response;
    use crate::membership::SoloMembership;
    use crate::replica::Replica;
    use crate::scheduler::FilterScoreScheduler;
    use crate::store::{Applied, Leadership, StoreError};
    use crate::testing::fixtures::{job, node};
    use crate::testing::MemStore;

    /// A leader whose quorum can be taken away: `read_barrier` fails while cut off.
    struct Isolable {
        inner: MemStore,
        cut: AtomicBool,
    }

    #[async_trait]
    impl Store for Isolable {
        async fn propose(&self, cmd: Command) -> Result<Applied, StoreError> {
            self.inner.propose(cmd).await
        }
        fn replica(&self) -> &Arc<Replica> {
            self.inner.replica()
        }
        async fn read_barrier(&self) -> Result<(), StoreError> {
            if self.cut.load(Ordering::SeqCst) {
                Err(StoreError::NoLeader("cut off".into()))
            } else {
                Ok(())
            }
        }
        fn leadership(&self) -> watch::Receiver<Leadership> {
            self.inner.leadership()
        }
        async fn shutdown(&self) -> Result<(), StoreError> {
            Ok(())
        }
    }

    fn placed(store: &Isolable) -> usize {
        store
            .replica()
            .read(|s| s.allocs.values().filter(|a| a.node.is_some()).count())
    }

    /// A running control loop: stop it, or read its pass counts.
    struct Running {
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
        metrics: Arc<crate::metrics::Metrics>,
    }

    impl Running {
        /// Waits until the loop has counted `n` more passes as `outcome` (so it
        /// ran, and decided what it decided, that many times).
        async fn passes(&self, outcome: &str, n: u64) {
            let from = self.metrics.control_passes_of(outcome);
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.metrics.control_passes_of(outcome) < from + n {
                assert!(Instant::now() < deadline, "no {n} {outcome} passes");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }

        async fn stop(self) {
            self.stop.send_replace(true);
            self.task.await.unwrap();
        }
    }

    /// Runs the control loop of a single node `n1` over `store`, on a fast tick.
    fn run_solo(store: Arc<dyn Store>) -> Running {
        run_solo_with(store, Arc::new(FilterScoreScheduler::default()))
    }

    /// [`run_solo`] with `scheduler`.
    fn run_solo_with(store: Arc<dyn Store>, scheduler: Arc<dyn Scheduler>) -> Running {
        let member = crate::cluster::builder::member_of(&node("n1", 4.0, 4096));
        let metrics: Arc<crate::metrics::Metrics> = Default::default();
        let control = Control {
            node_id: "n1".into(),
            store,
            membership: Arc::new(SoloMembership::new(member)),
            scheduler,
            config: ControlConfig {
                reconcile_interval: Duration::from_millis(20),
                quorum_check: Duration::from_millis(20),
                ..ControlConfig::default()
            },
            metrics: metrics.clone(),
            local_health: Default::default(),
        };
        let (stop, rx) = watch::channel(false);
        Running {
            stop,
            task: tokio::spawn(control.run(rx)),
            metrics,
        }
    }

    fn status_of(store: &MemStore, id: &str) -> (NodeStatus, Option<String>) {
        store.replica().read(|s| {
            let n = &s.nodes[id];
            (n.status, n.health.clone())
        })
    }

    /// A node only the leader has lost is not marked down while another
    /// member still hears it; once that member accuses it too, it is, naming
    /// both (Lifeguard's confirmation, [`crate::liveness::verdict`]).
    #[tokio::test]
    async fn a_node_is_down_only_once_a_second_member_confirms() {
        let store = Arc::new(MemStore::new("n1"));
        store.apply_now(&Command::InitCluster {
            cluster_id: "c".into(),
        });
        for n in ["n1", "n2", "n3"] {
            store.apply_now(&Command::RegisterNode {
                info: node(n, 4.0, 4096),
            });
        }
        let member = |id: &str| crate::cluster::builder::member_of(&node(id, 4.0, 4096));
        let membership = Arc::new(crate::testing::StaticMembership::new(member("n1")));
        membership.join(member("n2"));
        membership.join(member("n3"));
        let control = Control {
            node_id: "n1".into(),
            store: store.clone(),
            membership: membership.clone(),
            scheduler: Arc::new(FilterScoreScheduler::default()),
            config: ControlConfig {
                reconcile_interval: Duration::from_millis(20),
                quorum_check: Duration::from_millis(20),
                absent_grace: Duration::from_millis(50),
                ..ControlConfig::default()
            },
            metrics: Default::default(),
            local_health: Default::default(),
        };
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(control.run(rx));

        membership.kill("n3");
        // Past the absence grace (the loop ticks every 20 ms, so the dead
        // event and the grace are both seen), a job submitted now is placed
        // by a pass that judged n3 lost, and waited.
        tokio::time::sleep(Duration::from_millis(200)).await;
        store.apply_now(&Command::UpsertJob {
            spec: job("probe", 1, 0.1, 64),
        });
        let started = Instant::now();
        while store
            .replica()
            .read(|s| s.allocs.values().all(|a| a.node.is_none()))
        {
            assert!(started.elapsed() < Duration::from_secs(5), "never placed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            status_of(&store, "n3").0,
            NodeStatus::Ready,
            "n2 still hears n3"
        );

        let mut accuser = member("n2");
        accuser.suspects = ["n3".to_string()].into();
        membership.publish(accuser).await.unwrap();
        let started = Instant::now();
        let reason = loop {
            let (status, reason) = status_of(&store, "n3");
            if status == NodeStatus::Down {
                break reason.unwrap_or_default();
            }
            assert!(started.elapsed() < Duration::from_secs(5), "never down");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(reason.contains("n1 and n2"), "{reason}");
        stop.send_replace(true);
        task.await.unwrap();
    }

    /// A deployment in which no allocation comes to count (here no agent
    /// reports at all) fails at its progress deadline, by the leader's clock.
    #[tokio::test]
    async fn a_deployment_without_progress_fails_at_its_deadline() {
        let store = Arc::new(MemStore::new("n1"));
        store.apply_now(&Command::InitCluster {
            cluster_id: "c".into(),
        });
        store.apply_now(&Command::RegisterNode {
            info: node("n1", 4.0, 4096),
        });
        let control = run_solo(store.clone());
        let spec = job("web", 1, 0.1, 64).update(crate::spec::UpdateSpec {
            min_healthy_time: Duration::ZERO,
            healthy_deadline: Duration::from_millis(100),
            progress_deadline: Duration::from_millis(300),
            ..Default::default()
        });
        store.apply_now(&Command::UpsertJob { spec });
        let started = Instant::now();
        let failed = loop {
            let d = store
                .replica()
                .read(|s| s.latest_deployment("web").cloned())
                .unwrap();
            if d.status == crate::model::DeploymentStatus::Failed {
                break d;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "never failed: {d:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(
            failed
                .description
                .contains("no allocation became healthy within its progress_deadline of 300ms"),
            "{}",
            failed.description
        );
        control.stop().await;
    }

    /// A leader that cannot confirm its leadership with a quorum places nothing; once
    /// the quorum answers again it does.
    #[tokio::test]
    async fn a_leader_without_a_quorum_does_not_act() {
        let store = Arc::new(Isolable {
            inner: MemStore::new("n1"),
            cut: AtomicBool::new(true),
        });
        store.inner.apply_now(&Command::InitCluster {
            cluster_id: "c".into(),
        });
        store.inner.apply_now(&Command::RegisterNode {
            info: node("n1", 4.0, 4096),
        });
        let control = run_solo(store.clone());
        let r = store.inner.apply_now(&Command::UpsertJob {
            spec: job("web", 2, 0.1, 64),
        });
        assert!(matches!(r.response, Response::Job { .. }));
        // The loop ran with the job committed and declined to act, several times.
        control.passes("unconfirmed", 3).await;
        assert_eq!(control.metrics.control_passes_of("acted"), 0);
        assert_eq!(
            placed(&store),
            0,
            "a leader cut off from its quorum must not place"
        );
        store.cut.store(false, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(5);
        while placed(&store) < 2 {
            assert!(
                Instant::now() < deadline,
                "the confirmed leader never placed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        control.stop().await;
    }

    /// A leader whose store says it has heard from no majority does not act, even
    /// though its read barrier answers; once the quorum is back it does.
    #[tokio::test]
    async fn a_leader_whose_store_lost_its_quorum_does_not_act() {
        let store = Arc::new(MemStore::new("n1"));
        store.apply_now(&Command::InitCluster {
            cluster_id: "c".into(),
        });
        store.apply_now(&Command::RegisterNode {
            info: node("n1", 4.0, 4096),
        });
        store.set_quorum_lost(true);
        let control = run_solo(store.clone());
        store.apply_now(&Command::UpsertJob {
            spec: job("web", 2, 0.1, 64),
        });
        control.passes("quorum_lost", 3).await;
        assert_eq!(control.metrics.control_passes_of("acted"), 0);
        let placed_on = |s: &MemStore| {
            s.replica()
                .read(|st| st.allocs.values().filter(|a| a.node.is_some()).count())
        };
        assert_eq!(placed_on(&store), 0, "a cut-off leader must not place");
        store.set_quorum_lost(false);
        let deadline = Instant::now() + Duration::from_secs(5);
        while placed_on(&store) < 2 {
            assert!(Instant::now() < deadline, "the leader never placed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        control.stop().await;
    }

    /// A scheduler that, while it plans, checks whether anyone holds the
    /// replica's lock (the control loop must plan on a snapshot, so appliers
    /// and API reads never wait for a pass).
    #[derive(Debug)]
    struct LockProbe {
        replica: Arc<Replica>,
        inner: FilterScoreScheduler,
        calls: std::sync::atomic::AtomicUsize,
        locked: AtomicBool,
    }

    impl Scheduler for LockProbe {
        fn schedule(
            &self,
            state: &crate::state::ClusterState,
            requests: &[crate::command::SlotRef],
            stopping: &[crate::model::AllocId],
            seed: u64,
        ) -> crate::scheduler::Schedule {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.replica.is_locked() {
                self.locked.store(true, Ordering::SeqCst);
            }
            self.inner.schedule(state, requests, stopping, seed)
        }
    }

    /// The reconcile-and-schedule pass runs without holding the replica's lock.
    #[tokio::test]
    async fn the_loop_plans_without_holding_the_replicas_lock() {
        let store = Arc::new(MemStore::new("n1"));
        store.apply_now(&Command::InitCluster {
            cluster_id: "c".into(),
        });
        store.apply_now(&Command::RegisterNode {
            info: node("n1", 4.0, 4096),
        });
        let probe = Arc::new(LockProbe {
            replica: store.replica().clone(),
            inner: FilterScoreScheduler::default(),
            calls: Default::default(),
            locked: AtomicBool::new(false),
        });
        let control = run_solo_with(store.clone(), probe.clone());
        store.apply_now(&Command::UpsertJob {
            spec: job("web", 2, 0.1, 64),
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while store
            .replica()
            .read(|s| s.allocs.values().filter(|a| a.node.is_some()).count())
            < 2
        {
            assert!(Instant::now() < deadline, "never placed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        control.stop().await;
        assert!(probe.calls.load(Ordering::SeqCst) > 0, "the scheduler ran");
        assert!(
            !probe.locked.load(Ordering::SeqCst),
            "the replica was locked while the scheduler planned"
        );
    }
}
