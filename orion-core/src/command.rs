//! The commands the store replicates, and what applying one answers.
//!
//! Every change to cluster state is one of these, committed through the store and
//! applied by every replica's [`crate::state::ClusterState::apply`] in log order.

use serde::{Deserialize, Serialize};

use crate::model::{AllocId, AllocState, NodeId, NodeInfo, NodeStatus, PortBinding};
use crate::spec::JobSpec;

/// A change to cluster state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Names the cluster once, when it is first formed (later ones are ignored).
    InitCluster {
        /// Random id that tells this cluster's containers from another's.
        cluster_id: String,
    },
    /// Creates a job or, when the spec differs, a new version of it.
    UpsertJob {
        /// The validated spec.
        spec: JobSpec,
    },
    /// As `UpsertJob`, only if the job's `modify_index` is still `index` (0: it
    /// does not exist); refused otherwise.
    UpsertJobIfUnchanged {
        /// The validated spec.
        spec: JobSpec,
        /// The job's modify index the writer saw.
        index: u64,
    },
    /// Stops a job's allocations; with `purge`, forgets the job too.
    StopJob {
        /// The job's name.
        name: String,
        /// Remove the job and its allocations from state.
        purge: bool,
    },
    /// Promotes, pauses, resumes or fails deployment `deployment` of a job
    /// (refused when that is no longer the job's latest deployment).
    Deployment {
        /// The job.
        job: String,
        /// The deployment the writer saw.
        deployment: u64,
        /// What to do.
        action: crate::state::DeploymentAction,
        /// Why, for a failure.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Submits a kept version of a job again as its newest version (by default
    /// the last stable one before the current).
    RevertJob {
        /// The job.
        name: String,
        /// The version to go back to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u64>,
        /// The job's version the writer saw: the revert is made from it, so
        /// the same command applied twice reverts once (a later application
        /// finds the job moved on and answers it unchanged).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<u64>,
    },
    /// Starts a periodic job's clock: its ticks after `since_ms` (Unix ms)
    /// are due. Ignored when the job's clock already runs. Proposed by the
    /// leader when it first sees the job.
    PeriodicStart {
        /// The periodic job.
        job: String,
        /// When its schedule starts.
        since_ms: u64,
    },
    /// One tick of a periodic job, decided by the leader: its run is launched
    /// (as the job's `concurrency` allows), or, when `missed`, the tick is
    /// recorded as past its starting deadline. Ticks apply once and in order: a
    /// tick at or before the last one handled is refused, so no leader change
    /// launches one twice.
    PeriodicTick {
        /// The periodic job.
        job: String,
        /// The tick, Unix ms (the run is named after it).
        tick_ms: u64,
        /// Record it as missed instead of launching.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        missed: bool,
    },
    /// Launches a run of a periodic job now, off its schedule
    /// (`job periodic force`).
    PeriodicForce {
        /// The periodic job.
        job: String,
        /// Now, Unix ms (the run is named after it).
        now_ms: u64,
    },
    /// A node joins, or rejoins with new facts about itself.
    RegisterNode {
        /// What the node says of itself.
        info: NodeInfo,
    },
    /// A node's readiness changes (its runtime's health, or membership's verdict).
    SetNodeStatus {
        /// The node.
        id: NodeId,
        /// Its new status.
        status: NodeStatus,
        /// Why, when it is not ready.
        reason: Option<String>,
    },
    /// Drains a node (moves its work away, keeps new work off) or ends the drain.
    SetDrain {
        /// The node.
        id: NodeId,
        /// Start (true) or end (false) the drain.
        draining: bool,
    },
    /// Forgets a node; its live allocations become lost.
    RemoveNode {
        /// The node.
        id: NodeId,
    },
    /// The leader's placement decisions, applied as one unit.
    ApplyPlan {
        /// What to place, leave pending and stop.
        plan: Plan,
    },
    /// Nodes report what they observed of their allocations.
    UpdateAllocs {
        /// One entry per allocation that changed.
        updates: Vec<AllocUpdate>,
    },
    /// Creates a named volume on a node (the same again is a no-op).
    CreateVolume {
        /// Its name.
        name: String,
        /// The node its data lives on.
        node: NodeId,
    },
    /// Deletes a named volume no live allocation mounts: it is marked deleting
    /// until its node has removed the data.
    DeleteVolume {
        /// Its name.
        name: String,
    },
    /// The volume's node removed its data: forget the volume.
    ForgetVolume {
        /// Its name.
        name: String,
    },
    /// Turns API tokens on: the hash key and the first (management) token.
    /// Taken once; refused when the cluster already has a key.
    AclBootstrap {
        /// The key token hashes are made with (64 hex digits).
        key: String,
        /// The bootstrap token (its hash, never its secret).
        token: crate::acl::AclToken,
        /// The secret of the Raft port ([`crate::acl::AclState::raft_secret`]).
        #[serde(default)]
        raft_secret: Option<String>,
    },
    /// Writes a token (made by [`crate::acl::new_token`] under the cluster's key).
    AclUpsertToken {
        /// The token (its hash, never its secret).
        token: crate::acl::AclToken,
    },
    /// Sets the hash of a role's join token (made or rotated): the old one
    /// stops working for new joins at once; nodes already in keep their
    /// certificates.
    JoinTokenSet {
        /// Whose token.
        role: crate::model::NodeRole,
        /// The keyed hash of its secret ([`crate::acl::AclState::hash`]).
        hash: String,
    },
    /// Revokes a token: from this index on it is refused on every node.
    AclRevokeToken {
        /// Its accessor.
        accessor: String,
    },
    /// Writes a new version of a secret, sealed where the request was taken
    /// (the value in clear is never in a command). Taken when it is the
    /// secret's next version (1 for a new secret); the same version again
    /// with the same ciphertext is a no-op (a retried proposal); any other
    /// version is refused, since its ciphertext is bound to its number.
    PutSecret {
        /// The secret's name.
        name: String,
        /// The sealed version.
        version: crate::secret::SecretVersion,
    },
    /// Forgets a secret and all its versions; refused while a running job
    /// uses it.
    DeleteSecret {
        /// Its name.
        name: String,
    },
    /// Replaces the cluster's gossip keyring (see [`crate::gossip_keys`]),
    /// sealed where the request was taken. Taken when it is the next version
    /// (1 for the first); the same version with the same ciphertext again is
    /// a no-op (a retried proposal); any other is refused.
    GossipKeyringSet {
        /// The sealed keyring.
        sealed: crate::secret::SecretVersion,
    },
    /// Sets the cluster CA record (see [`crate::tls::rotation`]): the first
    /// (rotation 0) when none is committed, or the next rotation when the
    /// current one is over. The same record again is a no-op (a retried
    /// proposal); any other is refused.
    CaSet {
        /// The record.
        record: crate::tls::rotation::CaRecord,
    },
    /// `node` trusts the rotating CA and holds a certificate from it.
    CaAdopted {
        /// The node.
        node: NodeId,
        /// The rotation it is done with (ignored for any other).
        rotation: u64,
    },
    /// Ends `rotation`: only the new CA is trusted from now on.
    CaFinished {
        /// The rotation (ignored when it is not the current one).
        rotation: u64,
    },
    /// Sets a job's replica count from an evaluation of its scaling policy
    /// (the leader's) or by hand (`job scale`). A policy's record is refused
    /// when the job no longer runs `record.from` replicas or was evaluated
    /// since (a deposed leader's, or a double step); the same record again is
    /// a no-op (a retried proposal). A count set by hand suspends the policy
    /// for its longer cooldown. Going up starts a deployment of the current
    /// version when none is active, so new instances count only once healthy.
    Scale {
        /// The job.
        job: String,
        /// What was decided, and from what.
        record: crate::scaling::ScalingRecord,
        /// The policy's memory after the evaluation (ignored by hand).
        #[serde(default)]
        memory: crate::scaling::ScalingMemory,
    },
    /// Several commands committed as one log entry and applied in order (group
    /// commit: see [`crate::batching::BatchingStore`]).
    ///
    /// Each command of a batch is idempotent, but a batch committed twice
    /// (a retried proposal) applies its sequence twice, and two commands that
    /// do not commute (a submit and a stop of one job) would then undo each
    /// other's duplicate. So a batch carries an id: the state machine keeps
    /// the ids and answers of the last [`crate::state::KEPT_BATCHES`] batches
    /// and answers a batch it finds among them as it did the first time,
    /// changing nothing. Make one with [`Command::batch`].
    Batch {
        /// The commands, in order.
        commands: Vec<Command>,
        /// Names the batch, random (see above); none in entries written
        /// before batches had ids, which apply as they always did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
}

impl Command {
    /// A [`Command::Batch`] of `commands` with a fresh random id.
    pub fn batch(commands: Vec<Command>) -> Command {
        Command::Batch {
            commands,
            id: Some(rand::random()),
        }
    }
}

/// Which replica of which job version an allocation is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SlotRef {
    /// The job's name.
    pub job: String,
    /// The job version the plan was made for; a plan for an older version is refused.
    pub version: u64,
    /// Replica index.
    pub slot: u32,
    /// The pending allocation this refers to, if one exists already.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing: Option<AllocId>,
    /// The failed allocation a new one replaces: the new one carries on its
    /// slot's reschedule count and waits out the reschedule backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<AllocId>,
    /// The one node it may go to (a system job's allocation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<NodeId>,
}

/// Bind a slot to a node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// The slot being placed.
    pub slot: SlotRef,
    /// Where.
    pub node: NodeId,
    /// Host ports chosen for its named ports.
    pub ports: Vec<PortBinding>,
}

/// A slot that could not be placed, with the scheduler's explanation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Unplaced {
    /// The slot.
    pub slot: SlotRef,
    /// Why nothing fits ("0/3 nodes: 3 insufficient memory").
    pub reason: String,
}

/// Stop one allocation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StopAlloc {
    /// The allocation.
    pub id: AllocId,
    /// Why (shown on the allocation).
    pub reason: String,
}

/// The leader's decisions from one reconcile pass, committed as one command.
///
/// The state machine re-checks every placement against committed state
/// (node schedulable, resources free, ports free, slot still empty, job version
/// current) and refuses those that no longer hold, so a stale or deposed
/// leader's plan cannot over-commit a node or duplicate a slot.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Allocations to stop; applied first, so their resources are free for
    /// the placements below.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stops: Vec<StopAlloc>,
    /// Slots to bind to nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placements: Vec<Placement>,
    /// Slots that stay (or become) pending, with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unplaced: Vec<Unplaced>,
    /// The leader's clock when it made the plan (unix ms; 0: none given):
    /// recorded on replacements of failed allocations.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub now_ms: u64,
    /// Per job (and version) whose replicas are not all placed: the one-line
    /// summary to keep on the job, or `None` to clear it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub job_unplaced: Vec<(String, u64, Option<String>)>,
}

impl Plan {
    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.stops.is_empty()
            && self.placements.is_empty()
            && self.unplaced.is_empty()
            && self.job_unplaced.is_empty()
    }
}

/// What a node observed of one of its allocations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AllocUpdate {
    /// The allocation.
    pub id: AllocId,
    /// The reporting node; a report from a node the allocation is not on is ignored.
    pub node: NodeId,
    /// Observed state.
    pub state: AllocState,
    /// Why, for exits and failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Exit code, for exits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// The outputs a completed batch task left, by path, base64-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<std::collections::BTreeMap<String, String>>,
    /// Host ports as the runtime bound them, for running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<PortBinding>>,
    /// Its health, when it changed (a transition of its checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::model::Health>,
    /// Its restart count with this report, when the node restarted it in place.
    /// Absolute, not a delta, so a report committed twice (a retried proposal)
    /// counts once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarts: Option<u32>,
    /// Its failed start attempts with this report, when one failed (absolute,
    /// as `restarts`; see `Allocation::failures`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<u32>,
    /// Logs written before the counters were absolute said "one more restart"
    /// with this flag; read (applied as +1 when `restarts` is absent) so old
    /// logs replay as they did, never written.
    #[serde(default, skip_serializing)]
    pub restarted: bool,
    /// As `restarted`, for failed attempts.
    #[serde(default, skip_serializing)]
    pub failed_attempt: bool,
    /// The node's verdict for the allocation's deployment (see
    /// `Allocation::deploy_healthy`); taken once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_healthy: Option<bool>,
    /// The node gave up restarting it (see `Allocation::gave_up`); taken once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gave_up: bool,
    /// When the node observed this (unix ms, its clock), for a deployment
    /// verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
}

impl crate::model::Allocation {
    /// Whether committing `u` would change this allocation: the one rule the
    /// agent (whether to report) and the state machine (whether to apply) share.
    /// An update without an exit code or ports leaves those as they are (the
    /// exit code of the last exit stays through a restart), and so do the
    /// counters; a counter it carries changes only when it differs, so the same
    /// report twice changes nothing the second time.
    pub fn changed_by(&self, u: &AllocUpdate) -> bool {
        self.state != u.state
            || self.message != u.message
            || u.exit_code.is_some_and(|c| self.exit_code != Some(c))
            || u.ports.as_ref().is_some_and(|p| *p != self.ports)
            || u.health
                .as_ref()
                .is_some_and(|h| self.health.as_ref() != Some(h))
            || u.restarts.is_some_and(|r| r != self.restarts)
            || u.failures.is_some_and(|f| f != self.failures)
            || u.restarted
            || u.failed_attempt
            || (u.deploy_healthy.is_some() && self.deploy_healthy.is_none())
            || (u.gave_up && !self.gave_up)
    }
}

impl AllocUpdate {
    /// A report that `node` observed allocation `id` in `state`, and nothing more
    /// (fill the other fields with struct-update syntax where they apply).
    pub fn new(id: impl Into<AllocId>, node: impl Into<NodeId>, state: AllocState) -> Self {
        AllocUpdate {
            id: id.into(),
            node: node.into(),
            state,
            message: None,
            exit_code: None,
            outputs: None,
            ports: None,
            health: None,
            restarts: None,
            failures: None,
            restarted: false,
            failed_attempt: false,
            deploy_healthy: None,
            gave_up: false,
            at_ms: None,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Why the state machine refused a command, as a kind callers can match.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Refusal {
    /// No job by that name.
    UnknownJob,
    /// No node with that id.
    UnknownNode,
    /// No volume by that name.
    UnknownVolume,
    /// No secret by that name.
    UnknownSecret,
    /// No API token with that accessor.
    UnknownToken,
    /// The state forbids it now: the thing exists already, is in use, or is
    /// in a state the command does not apply to.
    Conflict,
    /// Made against state that has moved on (a version, rotation or tick that
    /// is no longer the current one): look again and make it again. A command
    /// committed twice (a retried proposal) is refused so the second time.
    Stale,
    /// Arguments the state machine does not accept (outside a job's bounds,
    /// the wrong kind of job).
    Invalid,
    /// A refusal without a kind (from a node older than kinds).
    #[default]
    Other,
}

impl Response {
    /// A refusal of `kind`, saying why.
    pub fn refused(refusal: Refusal, reason: impl Into<String>) -> Response {
        Response::Refused {
            refusal,
            reason: reason.into(),
        }
    }
}

/// What applying a command answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Response {
    /// Nothing to say.
    Done,
    /// A job was written (or found unchanged).
    Job {
        /// Its name.
        name: String,
        /// Its version now.
        version: u64,
        /// False when the same spec was submitted again (idempotent retry).
        changed: bool,
    },
    /// A plan was applied.
    Plan {
        /// Placements made.
        placed: usize,
        /// Stops made.
        stopped: usize,
        /// Placements refused, each with why.
        refused: Vec<String>,
    },
    /// Allocation reports taken.
    Updated {
        /// How many changed state.
        applied: usize,
    },
    /// The command was refused; state is unchanged.
    Refused {
        /// What kind of refusal: callers match this, never the reason's text.
        /// (A node from before kinds existed sends none: [`Refusal::Other`].)
        #[serde(default)]
        refusal: Refusal,
        /// Why, for people.
        reason: String,
    },
    /// The answers to a [`Command::Batch`], in order.
    Batch {
        /// One answer per command.
        responses: Vec<Response>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ClusterState;

    /// Each "no such thing" refusal carries its kind (callers map it to a 404
    /// by the kind), and a refusal from a node older than kinds reads as
    /// `Other`.
    #[test]
    fn refusals_say_their_kind() {
        let mut s = ClusterState::default();
        let kind = |r: Response| match r {
            Response::Refused { refusal, .. } => refusal,
            other => panic!("not refused: {other:?}"),
        };
        let cases = [
            (
                Command::StopJob {
                    name: "ghost".into(),
                    purge: false,
                },
                Refusal::UnknownJob,
            ),
            (
                Command::RemoveNode { id: "ghost".into() },
                Refusal::UnknownNode,
            ),
            (
                Command::DeleteVolume {
                    name: "ghost".into(),
                },
                Refusal::UnknownVolume,
            ),
        ];
        for (i, (cmd, want)) in cases.into_iter().enumerate() {
            let (r, _) = s.apply(i as u64 + 1, &cmd);
            assert_eq!(kind(r), want, "{cmd:?}");
        }
        let old: Response = serde_json::from_str(r#"{"kind":"refused","reason":"no"}"#).unwrap();
        assert_eq!(kind(old), Refusal::Other);
        let r = Response::refused(Refusal::Stale, "again");
        let back: Response = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
