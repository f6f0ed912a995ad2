//! The replicated state machine: plain, deterministic code over in-memory maps.
//!
//! Every replica applies the same commands in the same order and so holds the same
//! [`ClusterState`]. Nothing here reads a clock, a random source or the network:
//! ids and indexes come from the log. The store persists it through its log and
//! snapshots ([`ClusterState::to_snapshot`] / [`ClusterState::from_snapshot`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::command::{AllocUpdate, Command, Placement, Plan, Refusal, Response, SlotRef, Unplaced};
use crate::model::{
    AllocId, AllocState, Allocation, DesiredState, Job, JobStatus, Node, NodeId, NodeInfo,
    NodeStatus, Volume, VolumeState,
};
use crate::spec::{JobSpec, Protocol, Resources};

mod allocs;
mod deploy;
mod deps;
pub use deps::{dependency_cycle, Gate};
mod batches;
pub use batches::KEPT_BATCHES;
mod ca;
mod invariants;
mod periodic;
mod scaling;
mod secrets;
mod tally;

pub use allocs::AllocTable;
pub use deploy::{counts_for, DeploymentAction, KEPT_DEPLOYMENTS, KEPT_VERSIONS};
pub use tally::JobTally;

/// Terminal allocations kept per job for inspection before the oldest are dropped.
pub const KEPT_TERMINAL_PER_JOB: usize = 20;

/// What is in use on one node, derived from its allocations (not persisted).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeUsage {
    /// Sum of the resources of allocations that hold resources here.
    pub used: Resources,
    /// Host ports taken here.
    pub ports: BTreeSet<(u16, Protocol)>,
    /// How many allocations hold each of `ports`: two may report one port
    /// (a runtime's bindings are taken as reported), and the port is free
    /// only once neither holds it.
    pub(crate) port_holders: BTreeMap<(u16, Protocol), u32>,
    /// Live allocations per job here.
    pub per_job: HashMap<String, u32>,
}

impl Default for NodeUsage {
    fn default() -> Self {
        // Not `Resources::default()`: that is a task's default request, not zero.
        NodeUsage {
            used: Resources::ZERO,
            ports: BTreeSet::new(),
            port_holders: BTreeMap::new(),
            per_job: HashMap::new(),
        }
    }
}

/// One change made by a command, for watchers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A job was written or removed.
    Job {
        /// Its name.
        name: String,
    },
    /// A node was written or removed.
    Node {
        /// Its id.
        id: NodeId,
    },
    /// A volume was written or removed.
    Volume {
        /// Its name.
        name: String,
    },
    /// A secret was written or removed.
    Secret {
        /// Its name.
        name: String,
    },
    /// A job's autoscaling was evaluated, or its count set by hand.
    Scaling {
        /// Its job.
        job: String,
    },
    /// A job's deployment was started, advanced or ended.
    Deployment {
        /// Its job.
        job: String,
    },
    /// An allocation was written or removed.
    Alloc {
        /// Its id.
        id: AllocId,
        /// Its job.
        job: String,
        /// Its node, if placed.
        node: Option<NodeId>,
    },
}

/// The whole cluster state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ClusterState {
    /// The cluster's id; set once by [`Command::InitCluster`].
    pub cluster_id: Option<String>,
    /// Jobs by name.
    pub jobs: BTreeMap<String, Job>,
    /// Nodes by id.
    pub nodes: BTreeMap<NodeId, Node>,
    /// Named volumes by name.
    #[serde(default)]
    pub volumes: BTreeMap<String, Volume>,
    /// Allocations by id, with the indexes derived from them; read-only from
    /// outside: only commands change them.
    pub allocs: AllocTable,
    /// Deployments per job, oldest first (the last [`KEPT_DEPLOYMENTS`]).
    #[serde(default)]
    pub deployments: BTreeMap<String, Vec<crate::model::Deployment>>,
    /// Versions per job, oldest first (the last [`KEPT_VERSIONS`]).
    #[serde(default)]
    pub versions: BTreeMap<String, Vec<crate::model::JobVersion>>,
    /// Periodic jobs' clocks, by job.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub periodic: BTreeMap<String, crate::model::PeriodicState>,
    /// API tokens (hashed) and their key.
    #[serde(default, skip_serializing_if = "crate::acl::AclState::is_empty")]
    pub acl: crate::acl::AclState,
    /// Secrets by name, sealed (see [`crate::secret`]): never a value in clear.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, crate::secret::Secret>,
    /// The gossip keyring, sealed under the data key (see
    /// [`crate::gossip_keys`]); none in a cluster with clear-text gossip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gossip_keyring: Option<crate::secret::SecretVersion>,
    /// The cluster CA: trusted roots, the signer (its key sealed under the
    /// data key) and a rotation's progress (see [`crate::tls::rotation`]);
    /// none in an insecure-dev cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<crate::tls::rotation::CaRecord>,
    /// Autoscaling's memory and decisions, by job.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scaling: BTreeMap<String, crate::scaling::JobScaling>,
    /// Index of the last command applied.
    pub applied_index: u64,
    /// Source of allocation ids; bumped on each new allocation.
    next_alloc: u64,
    /// Source of deployment ids.
    #[serde(default)]
    next_deployment: u64,
    /// Source of node numbers ([`Node::seq`]).
    #[serde(default)]
    next_node_seq: u32,
    /// The last [`KEPT_BATCHES`] batches with ids, oldest first, with their
    /// answers: a batch committed again is answered from here.
    #[serde(default, skip_serializing_if = "std::collections::VecDeque::is_empty")]
    recent_batches: std::collections::VecDeque<batches::RecentBatch>,
}

impl ClusterState {
    /// Serializes the persistent part, for a snapshot.
    pub fn to_snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("cluster state serializes")
    }

    /// Rebuilds state, indexes included, from a snapshot.
    pub fn from_snapshot(bytes: &[u8]) -> Result<ClusterState, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Allocations of one job, oldest id first.
    pub fn allocs_of_job<'a>(&'a self, job: &str) -> impl Iterator<Item = &'a Allocation> + 'a {
        self.allocs.of_job(job)
    }

    /// Allocations placed on one node.
    pub fn allocs_on_node<'a>(&'a self, node: &str) -> impl Iterator<Item = &'a Allocation> + 'a {
        self.allocs.on_node(node)
    }

    /// What is in use on a node.
    pub fn usage(&self, node: &str) -> NodeUsage {
        self.allocs.usage(node).cloned().unwrap_or_default()
    }

    /// What a job's allocations add up to; none when it has none.
    pub fn job_tally(&self, job: &str) -> Option<&JobTally> {
        self.allocs.tally(job)
    }

    /// Every node with what is in use on it, in id order, without a lookup per
    /// node (the scheduler reads them all on every pass).
    pub fn nodes_with_usage(&self) -> impl Iterator<Item = (&Node, Option<&NodeUsage>)> + '_ {
        self.allocs.with_usage(self.nodes.values())
    }

    /// Jobs garbage collection may forget at `now_ms`: batch jobs that
    /// finished (every replica complete, or one failed for good) at least
    /// `min_age_ms` ago by their allocations' finish times, and — when
    /// `min_age_ms` is 0 (a `job gc` by hand) — stopped jobs whose allocations
    /// have all stopped.
    pub fn finished_jobs(&self, now_ms: u64, min_age_ms: u64) -> Vec<String> {
        use crate::model::JobHealth;
        self.jobs
            .values()
            .filter(|j| {
                let allocs = || self.allocs_of_job(&j.spec.name);
                match JobHealth::assess(j, allocs()) {
                    JobHealth::Complete | JobHealth::Failed => {
                        let last = allocs().filter_map(|a| a.finished_ms).max().unwrap_or(0);
                        now_ms.saturating_sub(last) >= min_age_ms
                    }
                    JobHealth::Stopped => {
                        min_age_ms == 0 && allocs().all(|a| a.state.is_terminal())
                    }
                    _ => false,
                }
            })
            .map(|j| j.spec.name.clone())
            .collect()
    }

    /// The slots of a system job: the numbers of the nodes it should run on
    /// (schedulable, tags matching its selectors and constraints).
    pub fn system_slots(&self, spec: &JobSpec) -> BTreeSet<u32> {
        let constraints = spec.all_constraints();
        self.nodes
            .values()
            .filter(|n| system_eligible(n, &constraints))
            .map(|n| n.seq)
            .collect()
    }

    /// What is in use on a node, by reference.
    pub fn usage_ref(&self, node: &str) -> Option<&NodeUsage> {
        self.allocs.usage(node)
    }

    /// Applies one committed command at `index`, returning the answer and what changed.
    ///
    /// Deterministic: the same state and command give the same result on every replica.
    ///
    /// Debug builds check [`ClusterState::check_invariants`] after every
    /// command and panic, naming the command, when one is broken.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> (Response, Vec<Change>) {
        let applied = self.apply_one(index, cmd);
        #[cfg(debug_assertions)]
        if let Err(broken) = self.check_invariants() {
            panic!("state invariant broken after applying {cmd:?} at {index}: {broken}");
        }
        applied
    }

    pub(crate) fn apply_one(&mut self, index: u64, cmd: &Command) -> (Response, Vec<Change>) {
        let mut changes = Vec::new();
        self.applied_index = index;
        let response = match cmd {
            Command::InitCluster { cluster_id } => {
                if self.cluster_id.is_none() {
                    self.cluster_id = Some(cluster_id.clone());
                }
                Response::Done
            }
            Command::UpsertJob { spec } => {
                let spec = self.keep_scaled_count(spec);
                self.upsert_job(index, &spec, &mut changes)
            }
            Command::Scale {
                job,
                record,
                memory,
            } => self.scale(index, job, record, memory, &mut changes),
            Command::UpsertJobIfUnchanged { spec, index: seen } => {
                let spec = &self.keep_scaled_count(spec);
                let now = self.jobs.get(&spec.name).map_or(0, |j| j.modify_index);
                match self.jobs.get(&spec.name) {
                    // Applied twice: the first application made it so.
                    Some(j) if j.spec == *spec && j.status == JobStatus::Running => {
                        self.upsert_job(index, spec, &mut changes)
                    }
                    _ if now != *seen => Response::Refused {
                        refusal: Refusal::Stale,
                        reason: format!(
                            "job {:?} changed since index {seen} (it is at {now}): plan again",
                            spec.name
                        ),
                    },
                    _ => self.upsert_job(index, spec, &mut changes),
                }
            }
            Command::StopJob { name, purge } => self.stop_job(index, name, *purge, &mut changes),
            Command::Deployment {
                job,
                deployment,
                action,
                reason,
            } => self.deployment_action(
                index,
                job,
                *deployment,
                *action,
                reason.as_deref(),
                &mut changes,
            ),
            Command::RevertJob {
                name,
                version,
                from,
            } => self.revert_job(index, name, *version, *from, &mut changes),
            Command::PeriodicStart { job, since_ms } => {
                self.periodic_start(job, *since_ms, &mut changes)
            }
            Command::PeriodicTick {
                job,
                tick_ms,
                missed,
            } => self.periodic_tick(index, job, *tick_ms, *missed, &mut changes),
            Command::PeriodicForce { job, now_ms } => {
                self.periodic_force(index, job, *now_ms, &mut changes)
            }
            Command::RegisterNode { info } => self.register_node(index, info, &mut changes),
            Command::SetNodeStatus { id, status, reason } => {
                self.set_node_status(index, id, *status, reason.clone(), &mut changes)
            }
            Command::SetDrain { id, draining } => match self.nodes.get_mut(id) {
                Some(n) => {
                    n.draining = *draining;
                    changes.push(Change::Node { id: id.clone() });
                    Response::Done
                }
                None => unknown_node(id),
            },
            Command::RemoveNode { id } => self.remove_node(index, id, &mut changes),
            Command::ApplyPlan { plan } => self.apply_plan(index, plan, &mut changes),
            Command::UpdateAllocs { updates } => self.update_allocs(index, updates, &mut changes),
            Command::CreateVolume { name, node } => {
                self.create_volume(index, name, node, &mut changes)
            }
            Command::DeleteVolume { name } => self.delete_volume(name, &mut changes),
            Command::ForgetVolume { name } => {
                if self.volumes.remove(name).is_some() {
                    changes.push(Change::Volume { name: name.clone() });
                }
                Response::Done
            }
            Command::AclBootstrap {
                key,
                token,
                raft_secret,
            } => {
                if self.acl.key.is_some() {
                    Response::Refused {
                        refusal: Refusal::Conflict,
                        reason: "API tokens are already bootstrapped".into(),
                    }
                } else {
                    self.acl.key = Some(key.clone());
                    self.acl.raft_secret = raft_secret.clone();
                    self.acl
                        .tokens
                        .insert(token.accessor.clone(), token.clone());
                    Response::Done
                }
            }
            Command::AclUpsertToken { token } => {
                if self.acl.key.is_none() {
                    Response::Refused {
                        refusal: Refusal::Conflict,
                        reason: "API tokens are not bootstrapped".into(),
                    }
                } else {
                    self.acl
                        .tokens
                        .insert(token.accessor.clone(), token.clone());
                    Response::Done
                }
            }
            Command::JoinTokenSet { role, hash } => {
                if self.acl.key.is_none() {
                    Response::Refused {
                        refusal: Refusal::Conflict,
                        reason: "API tokens are not bootstrapped".into(),
                    }
                } else {
                    match role {
                        crate::model::NodeRole::Manager => {
                            self.acl.join_manager = Some(hash.clone())
                        }
                        crate::model::NodeRole::Worker => self.acl.join_worker = Some(hash.clone()),
                    }
                    Response::Done
                }
            }
            Command::AclRevokeToken { accessor } => match self.acl.tokens.remove(accessor) {
                Some(_) => Response::Done,
                None => Response::Refused {
                    refusal: Refusal::UnknownToken,
                    reason: format!("no token with accessor {accessor}"),
                },
            },
            Command::PutSecret { name, version } => {
                self.put_secret(index, name, version, &mut changes)
            }
            Command::DeleteSecret { name } => self.delete_secret(name, &mut changes),
            Command::GossipKeyringSet { sealed } => {
                let current = self.gossip_keyring.as_ref().map_or(0, |v| v.version);
                if self.gossip_keyring.as_ref() == Some(sealed) {
                    Response::Done
                } else if sealed.version != current + 1 {
                    Response::Refused {
                        refusal: Refusal::Stale,
                        reason: format!(
                            "the gossip keyring is at version {current}; this change was made for version {}: make it again",
                            sealed.version
                        ),
                    }
                } else {
                    self.gossip_keyring = Some(sealed.clone());
                    Response::Done
                }
            }
            Command::CaSet { record } => self.set_ca(record),
            Command::CaAdopted { node, rotation } => {
                if let Some(ca) = self.ca.as_mut() {
                    if ca.rotation == *rotation && !ca.finished {
                        ca.adopted.insert(node.clone());
                    }
                }
                Response::Done
            }
            Command::CaFinished { rotation } => {
                if let Some(ca) = self.ca.as_mut() {
                    if ca.rotation == *rotation && !ca.finished {
                        ca.roots_pem = ca.cert_pem.clone();
                        ca.cross_pem = None;
                        ca.adopted.clear();
                        ca.finished = true;
                    }
                }
                Response::Done
            }
            Command::Batch { commands, id } => self.apply_batch(index, commands, *id, &mut changes),
        };
        (response, changes)
    }

    /// Writes a job. The spec was validated where it was submitted, not here:
    /// replaying an old log must give the same state whatever this binary's
    /// validation rules have become.
    ///
    /// Only a change to what runs (the task, the kind, a job started again)
    /// needs new containers, and starts a deployment; anything else (the replica
    /// count, placement rules, policies) is made in place. Either way, live
    /// allocations whose version ran this very task move to the new version
    /// and keep their ids, containers and host ports (so a revert keeps what
    /// still runs the version it goes back to).
    pub(crate) fn upsert_job(
        &mut self,
        index: u64,
        spec: &JobSpec,
        changes: &mut Vec<Change>,
    ) -> Response {
        if let Some(e) = crate::lb::listener_conflicts(self, spec).first() {
            return Response::Refused {
                refusal: Refusal::Conflict,
                reason: e.to_string(),
            };
        }
        let prev = self.jobs.get(&spec.name);
        if let Some(job) = prev.filter(|j| j.spec == *spec && j.status == JobStatus::Running) {
            return Response::Job {
                name: spec.name.clone(),
                version: job.version,
                changed: false,
            };
        }
        let in_place = prev.is_some_and(|j| {
            j.status == JobStatus::Running && j.spec.task == spec.task && j.spec.kind == spec.kind
        });
        let prev_stable = prev.is_some_and(|j| {
            self.versions_of(&spec.name)
                .iter()
                .any(|v| v.version == j.version && v.stable)
        });
        let version = prev.map_or(1, |j| j.version + 1);
        let same_task: std::collections::HashSet<u64> = self
            .allocs
            .of_job(&spec.name)
            .filter(|a| a.is_live())
            .map(|a| a.job_version)
            .collect::<BTreeSet<u64>>()
            .into_iter()
            .filter(|v| {
                self.spec_of_version(&spec.name, *v)
                    .is_some_and(|s| s.task == spec.task && s.kind == spec.kind)
            })
            .collect();
        let create_index = prev.map_or(index, |j| j.create_index);
        self.jobs.insert(
            spec.name.clone(),
            Job {
                spec: spec.clone(),
                version,
                status: JobStatus::Running,
                modify_index: index,
                create_index,
                unplaced: None,
                parent: None,
            },
        );
        let ids: Vec<AllocId> = self
            .allocs
            .of_job(&spec.name)
            .filter(|a| a.is_live() && same_task.contains(&a.job_version))
            .map(|a| a.id.clone())
            .collect();
        for id in ids {
            self.modify_alloc(index, &id, changes, |a| a.job_version = version);
        }
        let deploys = spec.kind != crate::spec::JobKind::Batch;
        let stable = in_place && prev_stable && self.active_deployment(&spec.name).is_none();
        self.record_version(index, spec, version, stable || (!deploys && in_place));
        changes.push(Change::Job {
            name: spec.name.clone(),
        });
        if in_place {
            self.follow_in_place(index, &spec.name, changes);
        } else if deploys {
            self.start_deployment(index, &spec.name, changes);
        } else {
            self.cancel_deployment(index, &spec.name, "a batch job has no deployment", changes);
        }
        self.advance_deployment(index, &spec.name, changes);
        Response::Job {
            name: spec.name.clone(),
            version,
            changed: true,
        }
    }

    /// Submits version `version` of a job again (by default its last stable
    /// version before the current one) as a new version.
    fn revert_job(
        &mut self,
        index: u64,
        name: &str,
        version: Option<u64>,
        from: Option<u64>,
        changes: &mut Vec<Change>,
    ) -> Response {
        let Some(job) = self.jobs.get(name) else {
            return Response::Refused {
                refusal: Refusal::UnknownJob,
                reason: format!("no job named {name:?}"),
            };
        };
        if let Some(seen) = from.filter(|f| *f != job.version) {
            // Applied before (a retried proposal), or the job moved on since
            // the writer looked: the revert stands as made, or is refused.
            let target = match version {
                Some(v) => self.spec_of_version(name, v).cloned(),
                None => self
                    .spec_of_version(name, seen)
                    .and_then(|s| self.last_stable(name, seen, s))
                    .map(|v| v.spec.clone()),
            };
            return match target {
                Some(t) if t == job.spec => Response::Job {
                    name: name.to_string(),
                    version: job.version,
                    changed: false,
                },
                _ => Response::Refused {
                    refusal: Refusal::Stale,
                    reason: format!(
                        "job {name:?} changed since version {seen} (it is at {}): look again",
                        job.version
                    ),
                },
            };
        }
        let spec = match version {
            Some(v) => match self.spec_of_version(name, v) {
                Some(s) => s.clone(),
                None => {
                    let kept: Vec<String> = self
                        .versions_of(name)
                        .iter()
                        .map(|v| v.version.to_string())
                        .collect();
                    return Response::Refused {
                        refusal: Refusal::Invalid,
                        reason: format!(
                            "job {name:?} has no version {v} (kept: {})",
                            kept.join(", ")
                        ),
                    };
                }
            },
            None => match self.last_stable(name, job.version, &job.spec) {
                Some(v) => v.spec.clone(),
                None => {
                    return Response::Refused {
                        refusal: Refusal::Conflict,
                        reason: format!(
                            "job {name:?} has no stable version before {} to revert to",
                            job.version
                        ),
                    }
                }
            },
        };
        self.upsert_job(index, &spec, changes)
    }

    pub(crate) fn stop_job(
        &mut self,
        index: u64,
        name: &str,
        purge: bool,
        changes: &mut Vec<Change>,
    ) -> Response {
        let Some(job) = self.jobs.get_mut(name) else {
            return Response::Refused {
                refusal: Refusal::UnknownJob,
                reason: format!("no job named {name:?}"),
            };
        };
        let version = job.version;
        if job.status == JobStatus::Running {
            job.status = JobStatus::Stopped;
            job.version += 1;
            job.modify_index = index;
        }
        let version = if purge { version } else { job.version };
        self.cancel_deployment(index, name, "job stopped", changes);
        let ids = self.allocs.ids_of_job(name);
        for id in &ids {
            self.modify_alloc(index, id, changes, |a| {
                a.desired = DesiredState::Stop;
                if a.node.is_none() && !a.state.is_terminal() {
                    a.state = AllocState::Stopped;
                }
                if a.message.is_none() || a.node.is_none() {
                    a.message = Some("job stopped".into());
                }
            });
        }
        if purge {
            // Allocations still running are left for their nodes to stop: an agent
            // stops any container whose allocation is gone from state.
            for id in ids {
                self.allocs.remove(&id);
            }
            self.jobs.remove(name);
            self.deployments.remove(name);
            self.versions.remove(name);
            self.periodic.remove(name);
            self.scaling.remove(name);
        }
        changes.push(Change::Job { name: name.into() });
        Response::Job {
            name: name.into(),
            version,
            changed: true,
        }
    }

    fn create_volume(
        &mut self,
        index: u64,
        name: &str,
        node: &str,
        changes: &mut Vec<Change>,
    ) -> Response {
        if let Some(v) = self.volumes.get(name) {
            return match (v.node == node, v.state) {
                (true, VolumeState::Ready) => Response::Done,
                (true, VolumeState::Deleting) => Response::Refused {
                    refusal: Refusal::Conflict,
                    reason: format!(
                        "volume {name:?} is being deleted; create it again once it is gone"
                    ),
                },
                (false, _) => Response::Refused {
                    refusal: Refusal::Conflict,
                    reason: format!("volume {name:?} already exists on node {}", v.node),
                },
            };
        }
        if !self.nodes.contains_key(node) {
            return unknown_node(node);
        }
        self.volumes.insert(
            name.to_string(),
            Volume {
                name: name.to_string(),
                node: node.to_string(),
                state: VolumeState::Ready,
                create_index: index,
            },
        );
        changes.push(Change::Volume { name: name.into() });
        Response::Done
    }

    fn delete_volume(&mut self, name: &str, changes: &mut Vec<Change>) -> Response {
        if !self.volumes.contains_key(name) {
            return Response::Refused {
                refusal: Refusal::UnknownVolume,
                reason: format!("no volume named {name:?}"),
            };
        }
        let users: Vec<&str> = self
            .jobs
            .values()
            .filter(|j| j.status == JobStatus::Running)
            .filter(|j| {
                j.spec
                    .task
                    .volumes
                    .iter()
                    .any(|m| m.name.as_deref() == Some(name))
            })
            .map(|j| j.spec.name.as_str())
            .collect();
        if !users.is_empty() {
            return Response::Refused {
                refusal: Refusal::Conflict,
                reason: format!(
                    "volume {name:?} is mounted by job {}: stop it first",
                    users.join(", ")
                ),
            };
        }
        let v = self.volumes.get_mut(name).expect("checked");
        if v.state != VolumeState::Deleting {
            v.state = VolumeState::Deleting;
            changes.push(Change::Volume { name: name.into() });
        }
        Response::Done
    }

    fn register_node(
        &mut self,
        index: u64,
        info: &NodeInfo,
        changes: &mut Vec<Change>,
    ) -> Response {
        // Numbered from 1; a node from a state that had no numbers gets one
        // when it registers again.
        let seq = match self.nodes.get(&info.id) {
            Some(n) if n.seq > 0 => n.seq,
            _ => {
                self.next_node_seq += 1;
                self.next_node_seq
            }
        };
        match self.nodes.get_mut(&info.id) {
            Some(node) => {
                node.info = info.clone();
                node.seq = seq;
                if node.status == NodeStatus::Down {
                    node.status = NodeStatus::Ready;
                    node.health = None;
                }
            }
            None => {
                self.nodes.insert(
                    info.id.clone(),
                    Node {
                        info: info.clone(),
                        status: NodeStatus::Ready,
                        health: None,
                        draining: false,
                        seq,
                    },
                );
            }
        }
        let _ = index;
        changes.push(Change::Node {
            id: info.id.clone(),
        });
        Response::Done
    }

    fn set_node_status(
        &mut self,
        index: u64,
        id: &str,
        status: NodeStatus,
        reason: Option<String>,
        changes: &mut Vec<Change>,
    ) -> Response {
        let Some(node) = self.nodes.get_mut(id) else {
            return unknown_node(id);
        };
        if node.status == status && node.health == reason {
            return Response::Done;
        }
        node.status = status;
        node.health = reason;
        changes.push(Change::Node { id: id.into() });
        if status == NodeStatus::Down {
            self.lose_allocs_on(index, id, &format!("node {id} is down"), changes);
        }
        Response::Done
    }

    fn remove_node(&mut self, index: u64, id: &str, changes: &mut Vec<Change>) -> Response {
        if self.nodes.remove(id).is_none() {
            return unknown_node(id);
        }
        self.lose_allocs_on(index, id, &format!("node {id} was removed"), changes);
        changes.push(Change::Node { id: id.into() });
        Response::Done
    }

    fn lose_allocs_on(&mut self, index: u64, node: &str, why: &str, changes: &mut Vec<Change>) {
        for id in self.allocs.ids_on_node(node) {
            self.modify_alloc(index, &id, changes, |a| {
                if !a.state.is_terminal() {
                    a.state = AllocState::Lost;
                    a.message = Some(why.to_string());
                }
            });
        }
    }

    fn apply_plan(&mut self, index: u64, plan: &Plan, changes: &mut Vec<Change>) -> Response {
        let mut stopped = 0;
        for stop in &plan.stops {
            if self
                .allocs
                .get(&stop.id)
                .is_some_and(|a| a.desired == DesiredState::Run)
            {
                self.modify_alloc(index, &stop.id, changes, |a| {
                    a.desired = DesiredState::Stop;
                    a.message = Some(stop.reason.clone());
                    if a.node.is_none() {
                        a.state = AllocState::Stopped;
                    }
                });
                stopped += 1;
            }
        }
        let mut placed = 0;
        let mut refused = Vec::new();
        for p in &plan.placements {
            match self.check_placement(p) {
                Ok(()) => {
                    self.place(index, p, plan.now_ms, changes);
                    placed += 1;
                }
                Err(why) => refused.push(format!("{}[{}]: {why}", p.slot.job, p.slot.slot)),
            }
        }
        for u in &plan.unplaced {
            self.leave_pending(index, u, plan.now_ms, changes);
        }
        for (job, version, why) in &plan.job_unplaced {
            if let Some(j) = self.jobs.get_mut(job).filter(|j| j.version == *version) {
                if j.unplaced != *why {
                    j.unplaced = why.clone();
                    changes.push(Change::Job { name: job.clone() });
                }
            }
        }
        let jobs: BTreeSet<String> = plan
            .placements
            .iter()
            .map(|p| p.slot.job.clone())
            .chain(
                plan.stops
                    .iter()
                    .filter_map(|s| self.allocs.get(&s.id).map(|a| a.job.clone())),
            )
            .collect();
        for job in jobs {
            self.advance_deployment(index, &job, changes);
        }
        Response::Plan {
            placed,
            stopped,
            refused,
        }
    }

    /// Whether a slot reference still names a live slot of the current job version.
    fn check_slot(&self, slot: &SlotRef) -> Result<(), String> {
        let job = self.jobs.get(&slot.job).ok_or("job is gone")?;
        if job.status != JobStatus::Running {
            return Err("job is stopped".into());
        }
        if job.version != slot.version {
            return Err(format!(
                "plan for version {}, job is at {}",
                slot.version, job.version
            ));
        }
        match &slot.existing {
            Some(id) => {
                let a = self.allocs.get(id).ok_or("allocation is gone")?;
                if a.node.is_some() || !a.is_live() {
                    return Err("allocation is no longer pending".into());
                }
            }
            None => {
                // A copy of an older version may still hold the slot: it runs
                // until this one is placed (the reconciler then stops it).
                let taken = self
                    .allocs
                    .tally(&slot.job)
                    .is_some_and(|t| t.slot_live_at(slot.slot, slot.version));
                if taken {
                    return Err("slot is already filled".into());
                }
            }
        }
        Ok(())
    }

    fn check_placement(&self, p: &Placement) -> Result<(), String> {
        self.check_slot(&p.slot)?;
        if p.slot.pin.as_ref().is_some_and(|pin| *pin != p.node) {
            return Err(format!("pinned to another node than {}", p.node));
        }
        let node = self.nodes.get(&p.node).ok_or("node is gone")?;
        if !node.schedulable() {
            return Err(format!("node {} is not schedulable", p.node));
        }
        let need = self.jobs[&p.slot.job].spec.task.resources;
        let usage = self.allocs.usage(&p.node);
        let used = usage.map(|u| u.used).unwrap_or(Resources::ZERO);
        if !node.info.capacity.saturating_sub(&used).fits(&need) {
            return Err(format!("node {} has not enough free resources", p.node));
        }
        for b in &p.ports {
            if usage.is_some_and(|u| u.ports.contains(&(b.host_port, b.protocol))) {
                return Err(format!("port {} taken on node {}", b.host_port, p.node));
            }
        }
        Ok(())
    }

    fn place(&mut self, index: u64, p: &Placement, now_ms: u64, changes: &mut Vec<Change>) {
        let resources = self.jobs[&p.slot.job].spec.task.resources;
        let placed = |a: &mut Allocation| {
            a.node = Some(p.node.clone());
            a.ports = p.ports.clone();
            a.state = AllocState::Starting;
            a.message = None;
        };
        match &p.slot.existing {
            Some(id) => self.modify_alloc(index, id, changes, placed),
            // Made placed at once: indexed once, not as pending and again as placed.
            None => {
                let a = self.new_alloc(index, &p.slot, resources, now_ms, placed);
                changes.push(Change::Alloc {
                    id: a.id.clone(),
                    job: a.job.clone(),
                    node: a.node.clone(),
                });
            }
        }
    }

    fn leave_pending(&mut self, index: u64, u: &Unplaced, now_ms: u64, changes: &mut Vec<Change>) {
        if self.check_slot(&u.slot).is_err() {
            return;
        }
        match &u.slot.existing {
            Some(id) => {
                if self
                    .allocs
                    .get(id)
                    .is_some_and(|a| a.message.as_ref() != Some(&u.reason))
                {
                    self.modify_alloc(index, id, changes, |a| a.message = Some(u.reason.clone()));
                }
            }
            None => {
                let resources = self.jobs[&u.slot.job].spec.task.resources;
                let a = self.new_alloc(index, &u.slot, resources, now_ms, |a| {
                    a.message = Some(u.reason.clone())
                });
                changes.push(Change::Alloc {
                    id: a.id.clone(),
                    job: a.job.clone(),
                    node: None,
                });
            }
        }
    }

    /// Adds a new allocation for `slot`, pending until `f` says otherwise.
    fn new_alloc(
        &mut self,
        index: u64,
        slot: &SlotRef,
        resources: Resources,
        now_ms: u64,
        f: impl FnOnce(&mut Allocation),
    ) -> &Allocation {
        self.next_alloc += 1;
        let id = format!("{}-{}-{:x}", slot.job, slot.slot, self.next_alloc);
        let deployment = self
            .active_deployment(&slot.job)
            .filter(|d| d.job_version == slot.version)
            .map(|d| d.id);
        let mut a = Allocation {
            id: id.clone(),
            job: slot.job.clone(),
            job_version: slot.version,
            slot: slot.slot,
            node: None,
            resources,
            ports: Vec::new(),
            desired: DesiredState::Run,
            state: AllocState::Pending,
            message: None,
            exit_code: None,
            outputs: Default::default(),
            health: None,
            restarts: 0,
            failures: 0,
            gave_up: false,
            started_ms: None,
            finished_ms: None,
            reschedules: 0,
            start_delay_ms: 0,
            reschedule_times_ms: Vec::new(),
            deployment,
            deploy_healthy: None,
            create_index: index,
            modify_index: index,
        };
        if let Some(prev) = slot.replaces.as_ref().and_then(|id| self.allocs.get(id)) {
            // The slot's backoff carries on: the n-th replacement waits the
            // reschedule policy's n-th delay, with up to 25% jitter.
            let policy = self
                .jobs
                .get(&slot.job)
                .map(|j| j.spec.reschedule_policy())
                .unwrap_or_default();
            let delay =
                crate::spec::jittered(policy.delay_for(prev.reschedules), index ^ self.next_alloc);
            a.reschedules = prev.reschedules + 1;
            a.start_delay_ms = delay.as_millis() as u64;
            // When its slot was rescheduled, by the leader's clock as the plan
            // carries it (the policy's `interval` counts them).
            a.reschedule_times_ms = prev.reschedule_times_ms.clone();
            if now_ms > 0 {
                a.reschedule_times_ms.push(now_ms);
            }
            let excess = a.reschedule_times_ms.len().saturating_sub(32);
            a.reschedule_times_ms.drain(..excess);
        }
        f(&mut a);
        self.allocs.insert(a);
        self.allocs.get(&id).expect("just inserted")
    }

    fn update_allocs(
        &mut self,
        index: u64,
        updates: &[AllocUpdate],
        changes: &mut Vec<Change>,
    ) -> Response {
        let mut applied = 0;
        let mut touched_jobs = BTreeSet::new();
        let mut counted_at: Vec<(String, u64)> = Vec::new();
        for (u, started) in self.reports(updates) {
            let u = &*u;
            let Some(a) = self.allocs.get(&u.id) else {
                continue;
            };
            if a.node.as_ref() != Some(&u.node) || a.state.is_terminal() {
                continue;
            }
            if a.desired == DesiredState::Stop && u.state != AllocState::Stopped {
                // Only the confirmation that it stopped matters now.
                continue;
            }
            if !a.changed_by(u) {
                continue;
            }
            touched_jobs.insert(a.job.clone());
            self.modify_alloc(index, &u.id, changes, |a| {
                a.state = u.state;
                a.message = u.message.clone();
                if let Some(code) = u.exit_code {
                    a.exit_code = Some(code);
                }
                if let Some(o) = &u.outputs {
                    a.outputs = o.clone();
                }
                if let Some(p) = &u.ports {
                    a.ports = p.clone();
                }
                if let Some(h) = &u.health {
                    a.health = Some(h.clone());
                }
                if a.deploy_healthy.is_none() {
                    a.deploy_healthy = u.deploy_healthy;
                }
                a.gave_up |= u.gave_up;
                if a.started_ms.is_none() {
                    a.started_ms = started;
                }
                if let Some(at) = u.at_ms {
                    if u.state == AllocState::Running && a.started_ms.is_none() {
                        a.started_ms = Some(at);
                    }
                    let done = u.state == AllocState::Complete || a.gave_up;
                    if done && a.finished_ms.is_none() {
                        a.finished_ms = Some(at);
                        a.started_ms.get_or_insert(at);
                    }
                }
                if u.deploy_healthy == Some(true) {
                    if let Some(at) = u.at_ms {
                        counted_at.push((a.job.clone(), at));
                    }
                }
                match (u.restarts, u.restarted) {
                    (Some(r), _) => a.restarts = r,
                    (None, true) => a.restarts += 1,
                    (None, false) => {}
                }
                match (u.failures, u.failed_attempt) {
                    (Some(f), _) => a.failures = f,
                    (None, true) => a.failures += 1,
                    (None, false) if u.state == AllocState::Running => a.failures = 0,
                    (None, false) => {}
                }
            });
            applied += 1;
        }
        for (job, at) in counted_at {
            self.note_counted_at(&job, at);
        }
        for job in touched_jobs {
            self.collect_garbage(&job, changes);
            self.advance_deployment(index, &job, changes);
        }
        Response::Updated { applied }
    }

    /// The reports of a command as applied: one per allocation, in the order
    /// each first appears, with when it was first seen running.
    ///
    /// One agent pass may report an allocation more than once (launched,
    /// then probed, then judged). Applied one by one, a command committed
    /// twice would apply the older report again over the newer one, and what
    /// is taken once (a start or finish time, a deployment verdict) would
    /// then be taken from it. So the reports of one allocation are folded
    /// into one, as applying them in order would leave it: the last report's
    /// state and message; each field the last of them carrying it gave; the
    /// counters as the last report that set them left them (a running report
    /// without failures clears them); reports after a terminal one, from
    /// another node, or other than "stopped" for an allocation being stopped
    /// dropped, as they would have been. Logs written before the counters
    /// were absolute (`restarted` / `failed_attempt`) apply one by one, as
    /// they always did.
    fn reports<'u>(
        &self,
        updates: &'u [AllocUpdate],
    ) -> Vec<(std::borrow::Cow<'u, AllocUpdate>, Option<u64>)> {
        use std::borrow::Cow;
        if updates.iter().any(|u| u.restarted || u.failed_attempt) {
            return updates.iter().map(|u| (Cow::Borrowed(u), None)).collect();
        }
        let mut order: Vec<&str> = Vec::new();
        let mut by_alloc: HashMap<&str, Vec<&AllocUpdate>> = HashMap::new();
        for u in updates {
            by_alloc
                .entry(u.id.as_str())
                .or_insert_with(|| {
                    order.push(u.id.as_str());
                    Vec::new()
                })
                .push(u);
        }
        let mut out = Vec::with_capacity(order.len());
        for id in order {
            let group = &by_alloc[id];
            let Some(a) = self.allocs.get(id) else {
                continue;
            };
            let mut taken: Vec<&AllocUpdate> = Vec::new();
            for u in group {
                if a.node.as_ref() != Some(&u.node)
                    || (a.desired == DesiredState::Stop && u.state != AllocState::Stopped)
                {
                    continue;
                }
                taken.push(u);
                if u.state.is_terminal() {
                    break;
                }
            }
            let Some(last) = taken.last() else {
                continue;
            };
            if taken.len() == 1 {
                out.push((Cow::Borrowed(*last), None));
                continue;
            }
            let started = taken
                .iter()
                .find(|u| u.state == AllocState::Running && u.at_ms.is_some())
                .and_then(|u| u.at_ms);
            let mut m = (*last).clone();
            for u in taken.iter().rev().skip(1) {
                m.exit_code = m.exit_code.or(u.exit_code);
                m.outputs = m.outputs.take().or_else(|| u.outputs.clone());
                m.ports = m.ports.take().or_else(|| u.ports.clone());
                m.health = m.health.take().or_else(|| u.health.clone());
                m.deploy_healthy = m.deploy_healthy.or(u.deploy_healthy);
                m.at_ms = m.at_ms.or(u.at_ms);
                m.gave_up |= u.gave_up;
            }
            m.restarts = taken.iter().rev().find_map(|u| u.restarts);
            let set_failures = taken.iter().rev().find_map(|u| match u.failures {
                Some(f) => Some(Some(f)),
                None if u.state == AllocState::Running => Some(None),
                None => None,
            });
            m.failures = match set_failures {
                // The last to set them was a running report without any:
                // it clears them, as the last report here does when it is
                // running; otherwise say so outright.
                Some(None) if last.state == AllocState::Running => None,
                Some(None) => Some(0),
                Some(f) => f,
                None => None,
            };
            out.push((Cow::Owned(m), started));
        }
        out
    }

    /// Drops the oldest terminal allocations of a job beyond [`KEPT_TERMINAL_PER_JOB`].
    fn collect_garbage(&mut self, job: &str, changes: &mut Vec<Change>) {
        if self
            .allocs
            .tally(job)
            .is_none_or(|t| t.terminal() as usize <= KEPT_TERMINAL_PER_JOB)
        {
            return;
        }
        // A batch job's completed runs of its current version are its result,
        // and what keeps them from running again: never collected here (the
        // job's own garbage collection removes them with it).
        let keep_complete = self
            .jobs
            .get(job)
            .filter(|j| j.spec.kind == crate::spec::JobKind::Batch)
            .map(|j| j.version);
        let terminal: Vec<AllocId> = self
            .allocs_of_job(job)
            .filter(|a| a.state.is_terminal())
            .filter(|a| !(a.state == AllocState::Complete && Some(a.job_version) == keep_complete))
            .map(|a| (a.modify_index, a.id.clone()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|(_, id)| id)
            .collect();
        let excess = terminal.len().saturating_sub(KEPT_TERMINAL_PER_JOB);
        for id in terminal.into_iter().take(excess) {
            if let Some(a) = self.allocs.remove(&id) {
                changes.push(Change::Alloc {
                    id,
                    job: a.job,
                    node: a.node,
                });
            }
        }
    }

    /// Changes one allocation (the table keeps its indexes in step) and records
    /// the change.
    fn modify_alloc(
        &mut self,
        index: u64,
        id: &str,
        changes: &mut Vec<Change>,
        f: impl FnOnce(&mut Allocation),
    ) {
        let changed = self.allocs.modify(id, |a| {
            f(a);
            a.modify_index = index;
        });
        if let Some(a) = changed {
            changes.push(Change::Alloc {
                id: a.id.clone(),
                job: a.job.clone(),
                node: a.node.clone(),
            });
        }
    }
}

/// Whether a system job with these placement rules runs on `node`: it is
/// schedulable and its tags match every rule.
pub fn system_eligible(node: &Node, constraints: &[crate::spec::Constraint]) -> bool {
    node.schedulable() && constraints.iter().all(|c| c.matches(&node.info.tags))
}

fn unknown_node(id: &str) -> Response {
    Response::Refused {
        refusal: Refusal::UnknownNode,
        reason: format!("no node with id {id:?}"),
    }
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
