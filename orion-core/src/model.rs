//! The cluster's nouns: nodes, jobs as stored, allocations and their states.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::spec::{JobSpec, Protocol, Resources};

/// Failed starts in a row after which an allocation is replaced. Three: with the
/// agent's backoff (1 s, 2 s, 4 s) a task that cannot start on its node moves on
/// after about 7 s, while a one-off failure is simply retried.
pub const RESCHEDULE_AFTER_FAILURES: u32 = 3;

/// This host's wall clock in unix milliseconds (0 before 1970): the one
/// clock reading behind start and finish times, deployment verdicts, plans'
/// `now_ms` and garbage collection's ages. The state machine never calls it;
/// times reach it inside commands.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A node's identity, unique in the cluster (`n1`, a host name).
pub type NodeId = String;

/// An allocation's identity, unique in the cluster (`web-0-1f`).
pub type AllocId = String;

/// A node's part in the cluster.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// A Raft voter that also runs tasks; the leader among them reconciles.
    #[default]
    Manager,
    /// Runs tasks only; takes no part in votes.
    Worker,
}

impl fmt::Display for NodeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NodeRole::Manager => "manager",
            NodeRole::Worker => "worker",
        })
    }
}

impl std::str::FromStr for NodeRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "manager" => Ok(NodeRole::Manager),
            "worker" => Ok(NodeRole::Worker),
            other => Err(format!(
                "unknown role {other:?}: expected manager or worker"
            )),
        }
    }
}

/// Whether a node can take work, as committed through the store.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    /// Alive and its runtime answers.
    #[default]
    Ready,
    /// Alive, but its runtime does not answer; see [`Node::health`].
    Unhealthy,
    /// Declared dead by membership; its allocations are lost.
    Down,
}

impl fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NodeStatus::Ready => "ready",
            NodeStatus::Unhealthy => "unhealthy",
            NodeStatus::Down => "down",
        })
    }
}

/// Where a node can be reached.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeAddrs {
    /// HTTP API (`127.0.0.1:8080`).
    pub http: String,
    /// Raft RPCs, for managers (`127.0.0.1:7946`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raft: Option<String>,
    /// Gossip (`127.0.0.1:7947`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gossip: Option<String>,
}

/// What a node says about itself when it registers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeInfo {
    /// Its id.
    pub id: NodeId,
    /// Its addresses.
    pub addrs: NodeAddrs,
    /// Manager or worker.
    pub role: NodeRole,
    /// What it offers to tasks.
    pub capacity: Resources,
    /// Free-form tags that selectors match (`disk=ssd`, `gpu=true`).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Host IP that published ports bind to.
    pub host_ip: String,
    /// Inclusive range dynamic host ports come from.
    pub port_range: (u16, u16),
    /// Host paths (and everything under them) that tasks may mount; none by
    /// default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_volumes: Vec<String>,
    /// The id of the data key it holds ([`crate::secret::DataKey::id`]), so
    /// that tasks using secrets are placed only where they can be opened;
    /// none when it holds no key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_key_id: Option<String>,
    /// The runtime its tasks run on (`docker`, `process`, `ssh`; absent:
    /// docker), which decides what tasks it can take ([`runs_on`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// What its runtime warns of (limits it cannot enforce), if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_warning: Option<String>,
}

/// Whether runtime `runtime` (none: docker) runs images; the process and
/// SSH runtimes run commands and scripts on their host instead.
pub fn runs_images(runtime: Option<&str>) -> bool {
    !matches!(runtime.unwrap_or("docker"), "process" | "ssh")
}

/// Whether a node with runtime `runtime` (none: docker) can run `task`;
/// otherwise why not. Docker runs images (a script gets its runner image);
/// the process and SSH runtimes run commands and scripts, not images; any
/// other (the fake and hollow runtimes of tests) runs anything.
pub fn runs_on(runtime: Option<&str>, task: &crate::spec::TaskSpec) -> Result<(), &'static str> {
    let script = task.script.is_some();
    match runtime.unwrap_or("docker") {
        "docker" if task.image.is_empty() && !script => {
            Err("no image: needs a node with the process or ssh runtime")
        }
        "process" | "ssh" if !task.image.is_empty() && !script => {
            Err("an image needs a node with the docker runtime")
        }
        _ => Ok(()),
    }
}

impl NodeInfo {
    /// Whether tasks here may mount host path `path`: it is one of the allowed
    /// paths or under one.
    pub fn allows_host_path(&self, path: &str) -> bool {
        self.host_volumes.iter().any(|allowed| {
            let allowed = allowed.trim_end_matches('/');
            path == allowed || path.starts_with(&format!("{allowed}/")) || allowed.is_empty()
        })
    }
}

/// A named volume: data that lives on one node and outlives the tasks that
/// mount it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Volume {
    /// Its name (DNS-safe).
    pub name: String,
    /// The node its data is on; tasks that mount it run there.
    pub node: NodeId,
    /// `ready`, or `deleting` until its node has removed the data.
    pub state: VolumeState,
    /// Store index that created it.
    pub create_index: u64,
}

/// Whether a volume may be mounted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VolumeState {
    /// It can be mounted.
    Ready,
    /// Deleted; its node removes the data, then forgets it.
    Deleting,
}

impl fmt::Display for VolumeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VolumeState::Ready => "ready",
            VolumeState::Deleting => "deleting",
        })
    }
}

/// A node as the cluster knows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Node {
    /// What the node registered.
    #[serde(flatten)]
    pub info: NodeInfo,
    /// Ready, unhealthy or down.
    pub status: NodeStatus,
    /// Why it is not ready, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// Draining: no new work, and its allocations move elsewhere.
    #[serde(default)]
    pub draining: bool,
    /// Its number in the cluster, given once when it first registers: the
    /// slot of every system job's allocation on it.
    #[serde(default)]
    pub seq: u32,
}

impl Node {
    /// The node's id.
    pub fn id(&self) -> &NodeId {
        &self.info.id
    }

    /// Whether the scheduler may place new work here.
    pub fn schedulable(&self) -> bool {
        self.status == NodeStatus::Ready && !self.draining
    }
}

/// Whether a job should be running.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Its allocations are kept running.
    #[default]
    Running,
    /// Stopped by a user; its allocations are stopped.
    Stopped,
}

/// How a job is doing, derived from its allocations: `running` when every
/// wanted replica runs, `degraded` when some do, `pending` when none does yet,
/// `stopped` once a user stopped it. The one spelling `job list`, `job status`
/// and the API use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobHealth {
    /// Every wanted replica of the job runs.
    Running,
    /// Some run, fewer than wanted.
    Degraded,
    /// None runs (yet).
    Pending,
    /// Stopped by a user.
    Stopped,
    /// A batch job whose every replica completed.
    Complete,
    /// A batch job with a replica that failed for good (no restart or
    /// reschedule left).
    Failed,
    /// A periodic job: it runs nothing itself; its runs are jobs of their own.
    Periodic,
}

impl JobHealth {
    /// The health of `job` from its allocations: as [`JobHealth::of`], and
    /// for a batch job `complete` once every replica completed, `failed` once
    /// one failed for good.
    pub fn assess<'a>(job: &Job, allocs: impl Iterator<Item = &'a Allocation>) -> JobHealth {
        let (mut running, mut complete, mut failed) = (0, 0u32, false);
        for a in allocs.filter(|a| a.job_version == job.version || a.is_live()) {
            if a.is_live() && a.state == AllocState::Running {
                running += 1;
            }
            if a.state == AllocState::Complete && a.job_version == job.version {
                complete += 1;
            }
            if a.is_live() && a.failed_here() && a.finished_ms.is_some() {
                failed = true;
            }
        }
        if job.spec.schedule.is_some() && job.status == JobStatus::Running {
            return JobHealth::Periodic;
        }
        match job.spec.kind {
            crate::spec::JobKind::Batch if job.status == JobStatus::Running => {
                if failed {
                    JobHealth::Failed
                } else if complete >= job.spec.replicas {
                    JobHealth::Complete
                } else if running > 0 {
                    // Running towards completion (some may wait for parallelism).
                    JobHealth::Running
                } else {
                    JobHealth::Pending
                }
            }
            _ => JobHealth::of(job, running),
        }
    }

    /// The health of `job` with `running` of its allocations running.
    pub fn of(job: &Job, running: usize) -> JobHealth {
        match job.status {
            JobStatus::Stopped => JobHealth::Stopped,
            JobStatus::Running if running >= job.spec.replicas as usize => JobHealth::Running,
            JobStatus::Running if running == 0 => JobHealth::Pending,
            JobStatus::Running => JobHealth::Degraded,
        }
    }
}

impl fmt::Display for JobHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobHealth::Running => "running",
            JobHealth::Degraded => "degraded",
            JobHealth::Pending => "pending",
            JobHealth::Stopped => "stopped",
            JobHealth::Complete => "complete",
            JobHealth::Failed => "failed",
            JobHealth::Periodic => "periodic",
        })
    }
}

/// A job as stored: the spec as submitted and its version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Job {
    /// The spec, exactly as submitted (after validation).
    pub spec: JobSpec,
    /// Bumped on every change of spec or of status.
    pub version: u64,
    /// Running or stopped.
    pub status: JobStatus,
    /// Store index at which this version was committed.
    pub modify_index: u64,
    /// Store index at which the job was first submitted: its age, which orders
    /// jobs of one priority when capacity is short.
    #[serde(default)]
    pub create_index: u64,
    /// Replicas the scheduler could not place in its last pass, and why (one
    /// line for the job, so a job of 100,000 replicas that does not fit says
    /// so without a record per replica).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unplaced: Option<String>,
    /// For a periodic job's run: the periodic job that launched it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// What the cluster keeps of a periodic job's schedule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PeriodicState {
    /// Ticks after this (Unix ms) are due; the last tick handled, or when the
    /// schedule started.
    pub last_tick_ms: u64,
    /// Runs launched.
    pub launched: u64,
    /// Ticks not launched, most recent last (the last 20).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedTick>,
}

/// A tick that launched no run, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SkippedTick {
    /// The tick, Unix ms.
    pub tick_ms: u64,
    /// Why (`run web-periodic-1767600000 still running`).
    pub reason: String,
}

/// One version of a job as it was submitted, kept for `job history` and
/// `job revert`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobVersion {
    /// The version.
    pub version: u64,
    /// The spec of that version.
    pub spec: JobSpec,
    /// Whether a deployment of it succeeded (or it changed nothing that runs
    /// from a stable version): what `revert` and `auto_revert` go back to.
    pub stable: bool,
    /// Store index at which it was submitted.
    pub submit_index: u64,
}

/// Where a deployment is.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum DeploymentStatus {
    /// Rolling out.
    #[default]
    Running,
    /// Paused by a user: no further allocation is replaced until resumed.
    Paused,
    /// Every replica runs the new version and counts as healthy.
    Successful,
    /// An allocation was not healthy in time, or no progress was made, or a
    /// user failed it; the rollout stopped.
    Failed,
    /// A newer version (or a stop) replaced it before it ended.
    Cancelled,
}

impl DeploymentStatus {
    /// Whether it still rolls out (running or paused).
    pub fn is_active(self) -> bool {
        matches!(self, DeploymentStatus::Running | DeploymentStatus::Paused)
    }
}

impl fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self).ok();
        f.write_str(s.as_ref().and_then(|v| v.as_str()).unwrap_or("?"))
    }
}

/// The rollout of one job version: created when a version changes what runs,
/// ended when every replica runs it and counts as healthy, or when it fails.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Deployment {
    /// Its id, unique in the cluster.
    pub id: u64,
    /// The job.
    pub job: String,
    /// The version it rolls out (follows in-place changes made meanwhile).
    pub job_version: u64,
    /// Running, paused, successful, failed or cancelled.
    pub status: DeploymentStatus,
    /// What it is doing or why it ended.
    pub description: String,
    /// Replicas wanted.
    pub desired: u32,
    /// Canaries it starts before the rest (0: none).
    pub canaries: u32,
    /// Whether its canaries were promoted.
    pub promoted: bool,
    /// Allocations of the new version placed so far (live or not).
    pub placed: u32,
    /// New allocations that count as healthy.
    pub healthy: u32,
    /// New allocations that failed their deployment.
    pub unhealthy: u32,
    /// The version it went back to, when it failed and was reverted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverted_to: Option<u64>,
    /// Store index of its last progress (an allocation came to count); the
    /// leader measures `progress_deadline` from when it saw that index.
    pub progress_index: u64,
    /// When an allocation last came to count (unix ms, by the clock of the node
    /// that judged it): a system job's next node waits `stagger` after it.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub progress_ms: u64,
    /// Store index that created it.
    pub create_index: u64,
    /// Store index of its last change.
    pub modify_index: u64,
}

/// What Orion wants of an allocation.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum DesiredState {
    /// Keep it running (or run it to completion, for batch).
    #[default]
    Run,
    /// Stop it and remove its container.
    Stop,
}

impl fmt::Display for DesiredState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DesiredState::Run => "run",
            DesiredState::Stop => "stop",
        })
    }
}

/// What is observed of an allocation.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum AllocState {
    /// Not placed on a node yet; [`Allocation::message`] says why.
    #[default]
    Pending,
    /// Placed; its node has not reported it running yet.
    Starting,
    /// Its container runs.
    Running,
    /// Its container exited; it will be restarted unless done.
    Exited,
    /// Its container could not start; retried with backoff.
    Failed,
    /// Batch task finished with exit code 0.
    Complete,
    /// Stopped on purpose and removed.
    Stopped,
    /// Its node went down; a replacement is placed elsewhere.
    Lost,
}

impl AllocState {
    /// Whether this state is final: the allocation will never run again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            AllocState::Complete | AllocState::Stopped | AllocState::Lost
        )
    }
}

impl fmt::Display for AllocState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self).ok();
        f.write_str(s.as_ref().and_then(|v| v.as_str()).unwrap_or("?"))
    }
}

/// A container port bound to a host port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PortBinding {
    /// The port's name in the spec.
    pub name: String,
    /// Port inside the container.
    pub container_port: u16,
    /// Port on the host.
    pub host_port: u16,
    /// tcp or udp.
    pub protocol: Protocol,
    /// Host IP the port is published on.
    pub host_ip: String,
}

impl fmt::Display for PortBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{} -> {}:{}",
            self.name, self.container_port, self.protocol, self.host_ip, self.host_port
        )
    }
}

/// What the health checks of a running task last concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Started, not yet passed its checks (or still in its grace).
    Starting,
    /// Its checks pass.
    Healthy,
    /// Its checks failed `failures` times in a row.
    Unhealthy,
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        })
    }
}

/// An allocation's health: the status, and the output of the last failing
/// probe. Written only on transitions, never per probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// Starting, healthy or unhealthy.
    pub status: HealthStatus,
    /// What the last failing probe said (`GET / answered 500`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

/// One copy of a job's task, bound (or waiting to be bound) to a node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Allocation {
    /// Its id.
    pub id: AllocId,
    /// The job it belongs to.
    pub job: String,
    /// The job version it runs.
    pub job_version: u64,
    /// Which replica it is (0-based); a replacement takes the same slot.
    pub slot: u32,
    /// The node it is placed on; none while pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeId>,
    /// What it reserves on its node.
    pub resources: Resources,
    /// Host ports assigned to its named ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortBinding>,
    /// What Orion wants of it.
    pub desired: DesiredState,
    /// What was last observed of it.
    pub state: AllocState,
    /// Why it is pending, failed or stopped; the last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Exit code of its last exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// The outputs it left when it completed, by path, base64-encoded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
    /// Its health, for a task with health checks once it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// How often its node restarted it in place.
    #[serde(default)]
    pub restarts: u32,
    /// Failed attempts to start it since it last ran; past a few, the reconciler
    /// replaces it (possibly elsewhere, with other host ports).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failures: u32,
    /// Its node gave up restarting it: its `restart` policy is spent (mode
    /// fail). The reconciler replaces it under the `reschedule` policy, or
    /// leaves it failed when that is spent too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gave_up: bool,
    /// When its task first ran (unix ms, its node's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    /// When it finished for good: completed, or failed with no restart left
    /// (unix ms, its node's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    /// Replacements of failed allocations its slot went through before it
    /// (carried from each to the next, so backoff belongs to the slot).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reschedules: u32,
    /// Its node waits this long before starting it (ms): the slot's reschedule
    /// backoff, with jitter.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub start_delay_ms: u64,
    /// When its slot's earlier allocations were replaced (unix ms, by the
    /// leader's clock; the last 32): the reschedule policy's `attempts` count
    /// those within its `interval`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reschedule_times_ms: Vec<u64>,
    /// The deployment that created it, while that deployment watches it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<u64>,
    /// Its deployment's verdict: true once it has been healthy for
    /// `min_healthy_time`, false when it was not by `healthy_deadline` (or its
    /// checks turned unhealthy). Set once by its node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_healthy: Option<bool>,
    /// Store index that created it.
    pub create_index: u64,
    /// Store index of its last change.
    pub modify_index: u64,
}

impl Allocation {
    /// How long it ran, start to finish, once finished (ms).
    pub fn duration_ms(&self) -> Option<u64> {
        Some(self.finished_ms?.saturating_sub(self.started_ms?))
    }

    /// Whether it holds resources on its node: placed, wanted and not finished.
    pub fn holds_resources(&self) -> bool {
        self.node.is_some() && self.desired == DesiredState::Run && !self.state.is_terminal()
    }

    /// Whether it failed to start often enough to be replaced: a host port held
    /// by another process, an image this node cannot get, a runtime that refuses it.
    pub fn should_reschedule(&self) -> bool {
        self.is_live() && self.node.is_some() && self.failed_here()
    }

    /// Whether it failed on its node for good: its restarts are spent, or it
    /// could not be started there [`RESCHEDULE_AFTER_FAILURES`] times. Its node
    /// stops trying; the scheduler avoids that node for the job's replacements.
    pub fn failed_here(&self) -> bool {
        self.gave_up || self.failures >= RESCHEDULE_AFTER_FAILURES
    }

    /// Whether it still counts as the live copy of its slot.
    pub fn is_live(&self) -> bool {
        self.desired == DesiredState::Run && !self.state.is_terminal()
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}
