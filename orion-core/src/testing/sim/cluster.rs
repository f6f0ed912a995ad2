//! [`Sim`]: a whole cluster in one thread — a [`MemStore`], the real reconciler and
//! scheduler, and virtual agents that report their allocations running.
//!
//! ```text
//!   submit / fail_node / recover_node / drain ──► MemStore (real state machine)
//!                                                    │ change batches
//!   step():                                          ▼
//!     reconcile::plan (real scheduler) ──► ApplyPlan ──► virtual agents note
//!                                                        the allocations on their
//!     UpdateAllocs per node (running / stopped),  ◄──── node; a node that is down
//!     gathered into Command::Batch entries               reports nothing
//! ```
//!
//! Nothing runs concurrently and nothing reads a clock except the phase timers in
//! [`SimStats`], so a run is deterministic for its inputs.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::command::{AllocUpdate, Command, Response};
use crate::control::ControlConfig;
use crate::model::{AllocState, DesiredState, NodeId, NodeInfo, NodeStatus};
use crate::reconcile;
use crate::replica::ChangeBatch;
use crate::scheduler::{FilterScoreScheduler, SchedulerConfig};
use crate::spec::JobSpec;
use crate::state::{Change, ClusterState};
use crate::testing::MemStore;

/// How the simulated cluster runs.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Most placements per reconcile pass (one `ApplyPlan`).
    pub max_placements_per_pass: usize,
    /// Most allocation reports per committed entry (one `Command::Batch` of
    /// per-node `UpdateAllocs`), as the leader's group commit gathers them.
    pub reports_per_entry: usize,
    /// The scheduler's configuration.
    pub scheduler: SchedulerConfig,
}

impl Default for SimConfig {
    /// The control loop's pass size; 5,000 reports per entry, about one pass's worth.
    fn default() -> Self {
        SimConfig {
            max_placements_per_pass: ControlConfig::default().max_placements_per_pass,
            reports_per_entry: 5_000,
            scheduler: SchedulerConfig::default(),
        }
    }
}

/// What a run did and where its time went.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SimStats {
    /// Reconcile passes that committed a plan.
    pub plans: usize,
    /// Placements committed.
    pub placed: usize,
    /// Allocation reports committed.
    pub reports: usize,
    /// Planning (intent and scheduling).
    pub plan_time: Duration,
    /// Committing plans through the state machine.
    pub apply_time: Duration,
    /// Virtual agents reading their allocations and committing reports.
    pub report_time: Duration,
}

/// A simulated cluster; see the module docs.
///
/// ```no_run
/// use orion_core::model::AllocState;
/// use orion_core::testing::sim::workload::{mixed_jobs, mixed_nodes, node_id};
/// use orion_core::testing::sim::{Sim, SimConfig};
///
/// let mut sim = Sim::new(SimConfig::default());
/// sim.add_nodes(mixed_nodes(1_000));
/// sim.submit(mixed_jobs(0, 100, 50, 1_000));
/// sim.settle(1_000).expect("settles");
/// sim.fail_node(&node_id(42));
/// sim.settle(1_000).expect("replaces what node-00042 ran");
/// println!("{} running", sim.count(AllocState::Running));
/// ```
#[derive(Debug)]
pub struct Sim {
    store: MemStore,
    changes: broadcast::Receiver<Arc<ChangeBatch>>,
    scheduler: FilterScoreScheduler,
    config: SimConfig,
    /// (node, allocation) pairs whose agent has something to look at.
    inbox: Vec<(NodeId, String)>,
    /// Nodes whose agent is dead: they report nothing.
    dead: BTreeSet<NodeId>,
    /// Totals so far.
    pub stats: SimStats,
    /// Batches committed so far: the id of the last one.
    batches: u64,
}

impl Sim {
    /// An empty cluster.
    pub fn new(config: SimConfig) -> Self {
        let store = MemStore::new("sim-leader");
        let changes = crate::store::Store::replica(&store).subscribe_changes();
        let scheduler = FilterScoreScheduler::new(config.scheduler.clone());
        let mut sim = Sim {
            store,
            changes,
            scheduler,
            config,
            inbox: Vec::new(),
            dead: BTreeSet::new(),
            stats: SimStats::default(),
            batches: 0,
        };
        sim.apply(Command::InitCluster {
            cluster_id: "5e1a7ed0".into(),
        });
        sim
    }

    /// Commits one command and hands its changes to the virtual agents.
    pub fn apply(&mut self, cmd: Command) -> Response {
        let response = self.store.apply_now(&cmd).response;
        self.route_changes();
        response
    }

    /// Applies `commands` as one batch, with the next of the simulation's
    /// own batch ids (a counter, so a run replays the same).
    fn apply_batch(&mut self, commands: Vec<Command>) -> Response {
        self.batches += 1;
        self.apply(Command::Batch {
            commands,
            id: Some(self.batches),
        })
    }

    /// Registers nodes.
    pub fn add_nodes(&mut self, nodes: impl IntoIterator<Item = NodeInfo>) {
        let commands = nodes
            .into_iter()
            .map(|info| Command::RegisterNode { info })
            .collect();
        self.apply_batch(commands);
    }

    /// Submits jobs.
    pub fn submit(&mut self, specs: impl IntoIterator<Item = JobSpec>) {
        let commands = specs
            .into_iter()
            .map(|spec| Command::UpsertJob { spec })
            .collect();
        self.apply_batch(commands);
    }

    /// Membership declares a node dead: its agent stops reporting and the leader
    /// marks it down, which loses its allocations.
    pub fn fail_node(&mut self, id: &str) {
        self.dead.insert(id.to_string());
        self.apply(Command::SetNodeStatus {
            id: id.to_string(),
            status: NodeStatus::Down,
            reason: Some("gossip declared it dead".into()),
        });
    }

    /// The node is back: ready again, its agent reporting.
    pub fn recover_node(&mut self, id: &str) {
        self.dead.remove(id);
        self.apply(Command::SetNodeStatus {
            id: id.to_string(),
            status: NodeStatus::Ready,
            reason: None,
        });
    }

    /// Starts or ends a drain.
    pub fn drain(&mut self, id: &str, draining: bool) {
        self.apply(Command::SetDrain {
            id: id.to_string(),
            draining,
        });
    }

    /// Reads committed state.
    pub fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        crate::store::Store::replica(&self.store).read(f)
    }

    /// One reconcile pass and the agents' reports that follow; returns how many
    /// commands it committed (0: nothing left to do).
    pub fn step(&mut self) -> usize {
        let t = Instant::now();
        let (scheduler, max) = (&self.scheduler, self.config.max_placements_per_pass);
        let plan = self.read(|s| reconcile::plan(s, scheduler, max, s.applied_index));
        self.stats.plan_time += t.elapsed();
        let mut committed = 0;
        if !plan.is_empty() {
            let t = Instant::now();
            if let Response::Plan { placed, .. } = self.apply(Command::ApplyPlan { plan }) {
                self.stats.placed += placed;
            }
            self.stats.plans += 1;
            self.stats.apply_time += t.elapsed();
            committed += 1;
        }
        let t = Instant::now();
        committed += self.report();
        self.stats.report_time += t.elapsed();
        committed
    }

    /// Steps until a pass commits nothing; returns the passes taken, or an error
    /// after `max_passes`.
    pub fn settle(&mut self, max_passes: usize) -> Result<usize, String> {
        for pass in 0..max_passes {
            if self.step() == 0 {
                return Ok(pass);
            }
        }
        Err(format!("not settled after {max_passes} passes"))
    }

    /// Allocations in a given state.
    pub fn count(&self, state: AllocState) -> usize {
        self.read(|s| s.allocs.values().filter(|a| a.state == state).count())
    }

    fn route_changes(&mut self) {
        loop {
            match self.changes.try_recv() {
                Ok(batch) => {
                    for c in &batch.changes {
                        if let Change::Alloc {
                            id,
                            node: Some(node),
                            ..
                        } = c
                        {
                            self.inbox.push((node.clone(), id.clone()));
                        }
                    }
                }
                Err(broadcast::error::TryRecvError::Lagged(_)) => {
                    panic!("sim fell behind the change stream")
                }
                Err(_) => break,
            }
        }
    }

    /// Every live agent looks at its changed allocations and reports what its
    /// (virtual) runtime did: started ones run, stopped ones stop.
    fn report(&mut self) -> usize {
        let mut inbox = std::mem::take(&mut self.inbox);
        inbox.sort_unstable();
        inbox.dedup();
        let dead = &self.dead;
        let updates: Vec<AllocUpdate> = self.read(|s| {
            inbox
                .iter()
                .filter(|(node, _)| !dead.contains(node))
                .filter_map(|(node, id)| {
                    let a = s.allocs.get(id)?;
                    let state = match (a.desired, a.state) {
                        (_, st) if st.is_terminal() => return None,
                        (DesiredState::Run, AllocState::Starting) => AllocState::Running,
                        (DesiredState::Stop, _) => AllocState::Stopped,
                        _ => return None,
                    };
                    (a.node.as_ref() == Some(node))
                        .then(|| AllocUpdate::new(id.clone(), node.clone(), state))
                })
                .collect()
        });
        let mut committed = 0;
        for entry in updates.chunks(self.config.reports_per_entry.max(1)) {
            // One UpdateAllocs per node, as each agent reports its own.
            let commands = entry
                .chunk_by(|a, b| a.node == b.node)
                .map(|u| Command::UpdateAllocs {
                    updates: u.to_vec(),
                })
                .collect();
            self.stats.reports += entry.len();
            self.apply_batch(commands);
            committed += 1;
        }
        committed
    }
}

/// Problems in a state that no schedule may cause: a node over-committed on a
/// resource, or a host port held twice on one node.
pub fn audit(state: &ClusterState) -> Vec<String> {
    let mut problems = Vec::new();
    for n in state.nodes.values() {
        let mut used = crate::spec::Resources::ZERO;
        let mut ports = BTreeSet::new();
        for a in state.allocs_on_node(n.id()).filter(|a| a.holds_resources()) {
            used = used.add(&a.resources);
            for p in &a.ports {
                if !ports.insert((p.host_port, p.protocol)) {
                    problems.push(format!("{}: port {} held twice", n.id(), p.host_port));
                }
            }
        }
        if !n.info.capacity.fits(&used) {
            problems.push(format!(
                "{}: over-committed: {used:?} on {:?}",
                n.id(),
                n.info.capacity
            ));
        }
    }
    problems
}
