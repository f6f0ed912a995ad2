//! Periodic jobs in the state machine: a job with a `schedule` runs nothing
//! itself; each tick the leader commits launches a run, a batch child job
//! `<name>-periodic-<unix seconds>` with the parent's task. The tick is the
//! command's key: ticks apply once and in order, whoever leads.

use super::{Change, ClusterState};
use crate::command::{Refusal, Response};
use crate::model::{JobHealth, JobStatus, PeriodicState, SkippedTick};
use crate::spec::{periodic_child, Concurrency};

/// Skipped ticks kept per periodic job.
const SKIPS_KEPT: usize = 20;

impl ClusterState {
    /// The runs of periodic job `job`, oldest first (by launch tick).
    pub fn periodic_runs(&self, job: &str) -> Vec<&crate::model::Job> {
        let mut runs: Vec<&crate::model::Job> = self
            .jobs
            .values()
            .filter(|j| j.parent.as_deref() == Some(job))
            .collect();
        runs.sort_by_key(|j| j.create_index);
        runs
    }

    /// A run's health: running, complete, failed, stopped.
    pub fn run_health(&self, run: &crate::model::Job) -> JobHealth {
        JobHealth::assess(run, self.allocs_of_job(&run.spec.name))
    }

    fn live_runs(&self, job: &str) -> Vec<String> {
        self.periodic_runs(job)
            .into_iter()
            .filter(|r| {
                r.status == JobStatus::Running
                    && !matches!(self.run_health(r), JobHealth::Complete | JobHealth::Failed)
            })
            .map(|r| r.spec.name.clone())
            .collect()
    }

    fn periodic_job(&self, job: &str) -> Result<(), Response> {
        match self.jobs.get(job) {
            Some(j) if j.spec.schedule.is_some() && j.status == JobStatus::Running => Ok(()),
            Some(j) if j.spec.schedule.is_some() => Err(Response::Refused {
                refusal: Refusal::Conflict,
                reason: format!("periodic job {job:?} is stopped"),
            }),
            Some(_) => Err(Response::Refused {
                refusal: Refusal::Invalid,
                reason: format!("job {job:?} is not periodic (it has no schedule)"),
            }),
            None => Err(Response::Refused {
                refusal: Refusal::UnknownJob,
                reason: format!("no job named {job:?}"),
            }),
        }
    }

    pub(crate) fn periodic_start(
        &mut self,
        job: &str,
        since_ms: u64,
        changes: &mut Vec<Change>,
    ) -> Response {
        if let Err(r) = self.periodic_job(job) {
            return r;
        }
        if !self.periodic.contains_key(job) {
            self.periodic.insert(
                job.to_string(),
                PeriodicState {
                    last_tick_ms: since_ms,
                    ..Default::default()
                },
            );
            changes.push(Change::Job { name: job.into() });
        }
        Response::Done
    }

    /// Records a skipped tick, once: the same skip again (a forced run
    /// refused, proposed twice) is the one already recorded.
    fn skip(&mut self, job: &str, tick_ms: u64, reason: String) {
        let p = self.periodic.entry(job.to_string()).or_default();
        let skip = SkippedTick { tick_ms, reason };
        if p.skipped.last() == Some(&skip) {
            return;
        }
        p.skipped.push(skip);
        if p.skipped.len() > SKIPS_KEPT {
            p.skipped.remove(0);
        }
    }

    pub(crate) fn periodic_tick(
        &mut self,
        index: u64,
        job: &str,
        tick_ms: u64,
        missed: bool,
        changes: &mut Vec<Change>,
    ) -> Response {
        if let Err(r) = self.periodic_job(job) {
            return r;
        }
        let last = self.periodic.get(job).map_or(0, |p| p.last_tick_ms);
        if tick_ms <= last {
            return Response::Refused {
                refusal: Refusal::Stale,
                reason: format!(
                    "tick {tick_ms} of {job:?} is at or before the last one handled ({last})"
                ),
            };
        }
        self.periodic
            .entry(job.to_string())
            .or_default()
            .last_tick_ms = tick_ms;
        changes.push(Change::Job { name: job.into() });
        if missed {
            self.skip(
                job,
                tick_ms,
                "missed: not launched within its starting_deadline".into(),
            );
            return Response::Done;
        }
        let name = periodic_child(job, tick_ms);
        self.launch_run(index, job, name, tick_ms, changes)
    }

    pub(crate) fn periodic_force(
        &mut self,
        index: u64,
        job: &str,
        now_ms: u64,
        changes: &mut Vec<Change>,
    ) -> Response {
        if let Err(r) = self.periodic_job(job) {
            return r;
        }
        let name = crate::spec::periodic_forced_child(job, now_ms);
        self.launch_run(index, job, name, now_ms, changes)
    }

    /// Launches the run of `job` for `tick_ms`, as its concurrency allows, and
    /// forgets finished runs beyond its history.
    fn launch_run(
        &mut self,
        index: u64,
        job: &str,
        name: String,
        tick_ms: u64,
        changes: &mut Vec<Change>,
    ) -> Response {
        let parent = self.jobs[job].spec.clone();
        let schedule = parent.schedule.clone().expect("checked periodic");
        if self.jobs.contains_key(&name) {
            return Response::Refused {
                refusal: Refusal::Stale,
                reason: format!("run {name:?} already exists"),
            };
        }
        let live = self.live_runs(job);
        match schedule.concurrency {
            Concurrency::Forbid if !live.is_empty() => {
                self.skip(
                    job,
                    tick_ms,
                    format!("run {} still running", live.join(", ")),
                );
                return Response::Done;
            }
            Concurrency::Replace => {
                for run in &live {
                    self.stop_job(index, run, false, changes);
                }
            }
            _ => {}
        }
        let mut child = parent;
        child.name = name.clone();
        child.schedule = None;
        let response = self.upsert_job(index, &child, changes);
        if let Some(j) = self.jobs.get_mut(&name) {
            j.parent = Some(job.to_string());
        }
        self.periodic.entry(job.to_string()).or_default().launched += 1;
        self.prune_runs(job, &schedule.history, changes);
        response
    }

    /// Forgets the oldest finished runs beyond what the history keeps.
    fn prune_runs(&mut self, job: &str, history: &crate::spec::History, changes: &mut Vec<Change>) {
        let runs: Vec<(String, JobHealth)> = self
            .periodic_runs(job)
            .into_iter()
            .map(|r| (r.spec.name.clone(), self.run_health(r)))
            .collect();
        let mut forget = Vec::new();
        for (health, keep) in [
            (JobHealth::Complete, history.successful),
            (JobHealth::Failed, history.failed),
        ] {
            let done: Vec<&String> = runs
                .iter()
                .filter(|(_, h)| *h == health)
                .map(|(n, _)| n)
                .collect();
            let extra = done.len().saturating_sub(keep as usize);
            forget.extend(done.into_iter().take(extra).cloned());
        }
        for name in forget {
            self.forget_job(&name, changes);
        }
    }

    /// Removes a finished job and its allocations from the state.
    pub(crate) fn forget_job(&mut self, name: &str, changes: &mut Vec<Change>) {
        for id in self.allocs.ids_of_job(name) {
            if let Some(a) = self.allocs.remove(&id) {
                changes.push(Change::Alloc {
                    id: a.id.clone(),
                    job: a.job.clone(),
                    node: a.node.clone(),
                });
            }
        }
        self.jobs.remove(name);
        self.deployments.remove(name);
        self.versions.remove(name);
        changes.push(Change::Job { name: name.into() });
    }
}
