//! Job versions and deployments in the state machine.
//!
//! A version that changes what runs (the task, or a job started again) starts
//! a [`Deployment`]; the reconciler rolls it out under the job's `update`
//! block, and every command that touches the job's allocations advances it
//! here: counts, promotion of healthy canaries (`auto_promote`), success once
//! every replica runs the version and counts as healthy, failure when one
//! failed its deployment — with `auto_revert`, the job goes back to its last
//! stable version as a new version. All of it is deterministic: time is
//! measured by the nodes (`min_healthy_time`, `healthy_deadline`) and by the
//! leader (`progress_deadline`), and reaches the log as commands.

use serde::{Deserialize, Serialize};

use super::ClusterState;
use crate::command::{Refusal, Response};
use crate::model::{AllocState, Allocation, Deployment, DeploymentStatus, JobStatus, JobVersion};
use crate::spec::JobSpec;
use crate::state::Change;

/// Versions kept per job (the current one included).
pub const KEPT_VERSIONS: usize = 10;

/// Deployments kept per job (the latest one included).
pub const KEPT_DEPLOYMENTS: usize = 5;

/// What a user (or the leader) does to a deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeploymentAction {
    /// Let the rollout go on past its canaries.
    Promote,
    /// Replace no further allocation until resumed.
    Pause,
    /// Go on after a pause.
    Resume,
    /// End it as failed (and revert, with `auto_revert`).
    Fail,
}

impl std::fmt::Display for DeploymentAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = serde_json::to_value(self).ok();
        f.write_str(s.as_ref().and_then(|v| v.as_str()).unwrap_or("?"))
    }
}

/// Whether allocation `a` counts as healthy for deployment `d`: it said so,
/// or it ran before the deployment (moved to the version in place) and runs.
pub fn counts_for(a: &Allocation, d: &Deployment) -> bool {
    match a.deployment {
        Some(id) if id == d.id => a.deploy_healthy == Some(true),
        _ => a.state == AllocState::Running,
    }
}

impl ClusterState {
    /// The deployments kept of a job, oldest first.
    pub fn deployments_of(&self, job: &str) -> &[Deployment] {
        self.deployments.get(job).map_or(&[], Vec::as_slice)
    }

    /// A job's latest deployment.
    pub fn latest_deployment(&self, job: &str) -> Option<&Deployment> {
        self.deployments_of(job).last()
    }

    /// A job's latest deployment if it rolls out the job's current version.
    pub fn deployment_of_current(&self, job: &str) -> Option<&Deployment> {
        let version = self.jobs.get(job)?.version;
        self.latest_deployment(job)
            .filter(|d| d.job_version == version)
    }

    /// The deployment still rolling out for a job (running or paused).
    pub fn active_deployment(&self, job: &str) -> Option<&Deployment> {
        self.latest_deployment(job).filter(|d| d.status.is_active())
    }

    /// The versions kept of a job, oldest first.
    pub fn versions_of(&self, job: &str) -> &[JobVersion] {
        self.versions.get(job).map_or(&[], Vec::as_slice)
    }

    /// The spec of version `v` of a job, if kept.
    pub(crate) fn spec_of_version(&self, job: &str, v: u64) -> Option<&JobSpec> {
        let current = self
            .jobs
            .get(job)
            .filter(|j| j.version == v)
            .map(|j| &j.spec);
        current.or_else(|| {
            self.versions_of(job)
                .iter()
                .find(|x| x.version == v)
                .map(|x| &x.spec)
        })
    }

    /// The last stable version of a job before `before` whose spec differs
    /// from `spec`.
    pub fn last_stable(&self, job: &str, before: u64, spec: &JobSpec) -> Option<&JobVersion> {
        self.versions_of(job)
            .iter()
            .rev()
            .find(|v| v.version < before && v.stable && v.spec != *spec)
    }

    /// Records a new version in the job's history.
    pub(super) fn record_version(
        &mut self,
        index: u64,
        spec: &JobSpec,
        version: u64,
        stable: bool,
    ) {
        let list = self.versions.entry(spec.name.clone()).or_default();
        list.push(JobVersion {
            version,
            spec: spec.clone(),
            stable,
            submit_index: index,
        });
        let excess = list.len().saturating_sub(KEPT_VERSIONS);
        list.drain(..excess);
    }

    fn mark_stable(&mut self, job: &str, version: u64) {
        if let Some(v) = self
            .versions
            .get_mut(job)
            .and_then(|l| l.iter_mut().find(|v| v.version == version))
        {
            v.stable = true;
        }
    }

    /// Starts a deployment of the job's current version, cancelling the one
    /// still active. Canaries apply only when an older version runs.
    pub(super) fn start_deployment(&mut self, index: u64, job: &str, changes: &mut Vec<Change>) {
        let Some(j) = self.jobs.get(job) else { return };
        let (version, mut replicas, update) = (j.version, j.spec.replicas, j.spec.update_policy());
        if j.spec.kind == crate::spec::JobKind::System {
            replicas = self.system_slots(&j.spec).len() as u32;
        }
        self.cancel_deployment(
            index,
            job,
            &format!("superseded by version {version}"),
            changes,
        );
        let old_runs = self
            .allocs
            .of_job(job)
            .any(|a| a.is_live() && a.job_version != version && a.node.is_some());
        self.next_deployment += 1;
        let canaries = if old_runs { update.canary } else { 0 };
        let description = if canaries > 0 {
            format!("starting {canaries} canaries")
        } else {
            "rolling out".to_string()
        };
        let d = Deployment {
            id: self.next_deployment,
            job: job.to_string(),
            job_version: version,
            status: DeploymentStatus::Running,
            description,
            desired: replicas,
            canaries,
            promoted: false,
            placed: 0,
            healthy: 0,
            unhealthy: 0,
            reverted_to: None,
            progress_index: index,
            progress_ms: 0,
            create_index: index,
            modify_index: index,
        };
        let list = self.deployments.entry(job.to_string()).or_default();
        list.push(d);
        let excess = list.len().saturating_sub(KEPT_DEPLOYMENTS);
        list.drain(..excess);
        changes.push(Change::Deployment { job: job.into() });
    }

    /// Ends the job's active deployment as cancelled.
    pub(super) fn cancel_deployment(
        &mut self,
        index: u64,
        job: &str,
        why: &str,
        changes: &mut Vec<Change>,
    ) {
        if let Some(d) = self.active_mut(job) {
            d.status = DeploymentStatus::Cancelled;
            d.description = why.to_string();
            d.modify_index = index;
            changes.push(Change::Deployment { job: job.into() });
        }
    }

    fn active_mut(&mut self, job: &str) -> Option<&mut Deployment> {
        self.deployments
            .get_mut(job)
            .and_then(|l| l.last_mut())
            .filter(|d| d.status.is_active())
    }

    /// An in-place change of an actively deployed job: the deployment follows
    /// the new version.
    pub(super) fn follow_in_place(&mut self, index: u64, job: &str, changes: &mut Vec<Change>) {
        let Some(j) = self.jobs.get(job) else { return };
        let (version, replicas) = (j.version, j.spec.replicas);
        if let Some(d) = self.active_mut(job) {
            d.job_version = version;
            d.desired = replicas;
            d.canaries = d.canaries.min(replicas);
            d.modify_index = index;
            changes.push(Change::Deployment { job: job.into() });
        }
    }

    /// Applies a user's (or the leader's) action to deployment `id` of `job`.
    pub(super) fn deployment_action(
        &mut self,
        index: u64,
        job: &str,
        id: u64,
        action: DeploymentAction,
        reason: Option<&str>,
        changes: &mut Vec<Change>,
    ) -> Response {
        let refuse = |refusal: Refusal, reason: String| Response::Refused { refusal, reason };
        let Some(d) = self.latest_deployment(job).filter(|d| d.id == id) else {
            return refuse(
                Refusal::Stale,
                format!("job {job:?} has no deployment {id} (a newer one replaced it?)"),
            );
        };
        let status = d.status;
        match action {
            DeploymentAction::Promote if d.promoted => return Response::Done,
            DeploymentAction::Pause if status == DeploymentStatus::Paused => return Response::Done,
            DeploymentAction::Resume if status == DeploymentStatus::Running => {
                return Response::Done
            }
            DeploymentAction::Fail if status == DeploymentStatus::Failed => return Response::Done,
            _ if !status.is_active() => {
                return refuse(
                    Refusal::Conflict,
                    format!("deployment {id} of job {job:?} is {status}: nothing to {action}"),
                )
            }
            DeploymentAction::Promote if d.canaries == 0 => {
                return refuse(
                    Refusal::Conflict,
                    format!("deployment {id} of job {job:?} has no canaries to promote"),
                )
            }
            DeploymentAction::Resume if status != DeploymentStatus::Paused => {
                return refuse(
                    Refusal::Conflict,
                    format!("deployment {id} of job {job:?} is not paused"),
                )
            }
            _ => {}
        }
        match action {
            DeploymentAction::Fail => {
                self.fail_deployment(index, job, reason.unwrap_or("failed by a user"), changes)
            }
            _ => {
                let d = self.active_mut(job).expect("checked active");
                match action {
                    DeploymentAction::Promote => {
                        d.promoted = true;
                        d.description = "promoted; rolling out".into();
                    }
                    DeploymentAction::Pause => {
                        d.status = DeploymentStatus::Paused;
                        d.description = "paused by a user".into();
                    }
                    _ => {
                        d.status = DeploymentStatus::Running;
                        d.description = "resumed".into();
                        // The progress deadline starts again from the resume.
                        d.progress_index = index;
                    }
                }
                d.modify_index = index;
                changes.push(Change::Deployment { job: job.into() });
                self.advance_deployment(index, job, changes);
            }
        }
        Response::Done
    }

    /// Ends the job's active deployment as failed; with `auto_revert`, submits
    /// the last stable version again.
    pub(super) fn fail_deployment(
        &mut self,
        index: u64,
        job: &str,
        why: &str,
        changes: &mut Vec<Change>,
    ) {
        let Some(j) = self.jobs.get(job) else { return };
        let (version, revert) = (j.version, j.spec.update_policy().auto_revert);
        let target = revert
            .then(|| {
                self.last_stable(job, version, &j.spec)
                    .map(|v| (v.version, v.spec.clone()))
            })
            .flatten();
        let Some(d) = self.active_mut(job) else {
            return;
        };
        d.status = DeploymentStatus::Failed;
        d.modify_index = index;
        d.description = match &target {
            Some((v, _)) => format!("failed: {why}; rolling back to version {v}"),
            None if revert => format!("failed: {why}; no stable version to roll back to"),
            None => format!("failed: {why}"),
        };
        d.reverted_to = target.as_ref().map(|(v, _)| *v);
        changes.push(Change::Deployment { job: job.into() });
        if let Some((_, spec)) = target {
            self.upsert_job(index, &spec, changes);
        }
    }

    /// Notes when an allocation of the job's active deployment came to count.
    pub(super) fn note_counted_at(&mut self, job: &str, at_ms: u64) {
        if let Some(d) = self.active_mut(job) {
            d.progress_ms = d.progress_ms.max(at_ms);
        }
    }

    /// Brings the job's active deployment up to date with its allocations:
    /// counts, progress, auto-promotion, failure, success.
    pub(super) fn advance_deployment(&mut self, index: u64, job: &str, changes: &mut Vec<Change>) {
        let Some(d) = self.active_deployment(job) else {
            return;
        };
        let Some(j) = self.jobs.get(job) else { return };
        if j.status != JobStatus::Running || d.job_version != j.version {
            return;
        }
        let (version, replicas) = (j.version, j.spec.replicas);
        let auto_promote = j.spec.update_policy().auto_promote;
        // A system job's slots are its eligible nodes' numbers.
        let system =
            (j.spec.kind == crate::spec::JobKind::System).then(|| self.system_slots(&j.spec));
        let (mut placed, mut healthy, mut unhealthy) = (0, 0, 0);
        let mut failed_alloc = None;
        let mut counted_slots = std::collections::BTreeSet::new();
        let mut old_live = false;
        for a in self.allocs.of_job(job) {
            if a.deployment == Some(d.id) {
                placed += u32::from(a.node.is_some());
                match a.deploy_healthy {
                    Some(true) => healthy += 1,
                    Some(false) => {
                        unhealthy += 1;
                        failed_alloc.get_or_insert_with(|| {
                            let why = a.message.as_deref().unwrap_or("not healthy");
                            format!("allocation {} {why}", a.id)
                        });
                    }
                    None => {}
                }
            }
            if !a.is_live() {
                continue;
            }
            if a.job_version != version {
                old_live = true;
            } else if system
                .as_ref()
                .map_or(a.slot < replicas, |s| s.contains(&a.slot))
                && counts_for(a, d)
            {
                counted_slots.insert(a.slot);
            }
        }
        let desired = system.as_ref().map_or(replicas, |s| s.len() as u32);
        let progressed = healthy > d.healthy;
        let canaries_ready = d.canaries > 0
            && !d.promoted
            && auto_promote
            && (0..d.canaries).all(|s| counted_slots.contains(&s));
        let done = counted_slots.len() == desired as usize && !old_live;
        let changed =
            (placed, healthy, unhealthy, desired) != (d.placed, d.healthy, d.unhealthy, d.desired);
        if let Some(why) = failed_alloc.filter(|_| d.status.is_active()) {
            self.fail_deployment(index, job, &why, changes);
            return;
        }
        if !(changed || canaries_ready || done) {
            return;
        }
        let d = self.active_mut(job).expect("checked active");
        (d.placed, d.healthy, d.unhealthy, d.desired) = (placed, healthy, unhealthy, desired);
        if progressed {
            d.progress_index = index;
        }
        if canaries_ready {
            d.promoted = true;
            d.description = "canaries healthy; promoted automatically".into();
        }
        d.modify_index = index;
        if done && (d.canaries == 0 || d.promoted) {
            d.status = DeploymentStatus::Successful;
            d.description = format!("every replica runs version {version} and is healthy");
            self.mark_stable(job, version);
        } else if d.canaries > 0
            && !d.promoted
            && (0..d.canaries).all(|s| counted_slots.contains(&s))
        {
            d.description = "canaries healthy; waiting for promotion".into();
        }
        changes.push(Change::Deployment { job: job.into() });
    }
}
