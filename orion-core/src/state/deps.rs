//! Dependencies between jobs, read off the state: whether a job may start.

use std::collections::BTreeMap;

use super::ClusterState;
use crate::model::{AllocState, HealthStatus, Job, JobHealth};
use crate::spec::{Condition, FieldError, JobSpec};

/// Whether a job's dependencies let it start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// It may run (no dependencies, all met, or it has started already).
    Open,
    /// It waits, and why (`waiting for job build to complete`).
    Waiting(String),
    /// A dependency failed or was stopped: it never starts.
    Failed(String),
}

impl ClusterState {
    /// Whether `job` may start. Checked until it first has an allocation: a
    /// started job is not held back again (its dependency may be collected).
    pub fn gate(&self, job: &Job) -> Gate {
        if job.spec.after.is_empty() || self.allocs_of_job(&job.spec.name).next().is_some() {
            return Gate::Open;
        }
        for d in &job.spec.after {
            let Some(dep) = self.jobs.get(&d.job) else {
                return Gate::Waiting(format!("waiting for job {} to be submitted", d.job));
            };
            let health = JobHealth::assess(dep, self.allocs_of_job(&d.job));
            let met = match d.condition {
                Condition::Complete => health == JobHealth::Complete,
                Condition::Running => health == JobHealth::Running,
                Condition::Healthy => {
                    let checked = !dep.spec.task.health_checks.is_empty();
                    health == JobHealth::Running
                        && self
                            .allocs_of_job(&d.job)
                            .filter(|a| a.is_live() && a.state == AllocState::Running)
                            .all(|a| match &a.health {
                                Some(h) => h.status == HealthStatus::Healthy,
                                None => !checked,
                            })
                }
            };
            if met {
                continue;
            }
            return match health {
                JobHealth::Failed => Gate::Failed(format!("dependency {} failed", d.job)),
                JobHealth::Stopped => Gate::Failed(format!("dependency {} was stopped", d.job)),
                JobHealth::Complete => Gate::Failed(format!(
                    "dependency {} completed and will not {}",
                    d.job, d.condition
                )),
                _ => Gate::Waiting(format!("waiting for job {} to {}", d.job, d.condition)),
            };
        }
        Gate::Open
    }
}

/// A dependency cycle `spec` would close with the jobs in `state`, as a field
/// error naming it (`after: dependency cycle: a -> b -> a`).
pub fn dependency_cycle(state: &ClusterState, spec: &JobSpec) -> Option<FieldError> {
    let mut edges: BTreeMap<&str, Vec<&str>> = state
        .jobs
        .values()
        .map(|j| {
            (
                j.spec.name.as_str(),
                j.spec.after.iter().map(|d| d.job.as_str()).collect(),
            )
        })
        .collect();
    edges.insert(
        spec.name.as_str(),
        spec.after.iter().map(|d| d.job.as_str()).collect(),
    );
    // Depth-first from the new job, looking for a way back to it.
    fn walk<'a>(
        at: &'a str,
        target: &str,
        edges: &BTreeMap<&'a str, Vec<&'a str>>,
        path: &mut Vec<&'a str>,
        seen: &mut std::collections::BTreeSet<&'a str>,
    ) -> bool {
        for next in edges.get(at).into_iter().flatten() {
            if *next == target {
                return true;
            }
            if seen.insert(next) {
                path.push(next);
                if walk(next, target, edges, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![spec.name.as_str()];
    let mut seen = Default::default();
    if walk(&spec.name, &spec.name, &edges, &mut path, &mut seen) {
        path.push(spec.name.as_str());
        return Some(FieldError {
            field: "after".into(),
            problem: format!("dependency cycle: {}", path.join(" -> ")),
        });
    }
    None
}
