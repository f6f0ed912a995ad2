//! `Cluster::plan_job`: what submitting a spec would do, worked out on a copy
//! of the state with the real reconciler and scheduler; nothing is written.

use serde::{Deserialize, Serialize};

use super::{Cluster, ClusterError};
use crate::command::Command;
use crate::model::AllocId;
use crate::spec::JobSpec;

/// What a submission would do (`job plan`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobPlan {
    /// The job.
    pub name: String,
    /// Its version now; none for a new job.
    pub version: Option<u64>,
    /// Its modify index now (0 for a new job): give it to
    /// [`Cluster::submit_checked`] (`job run --check-index`).
    pub modify_index: u64,
    /// Whether the spec differs from the current one.
    pub changed: bool,
    /// The spec's changes, a unified diff of the two as JSON.
    pub diff: String,
    /// Allocations it would create.
    pub create: usize,
    /// Allocations it would stop.
    pub stop: usize,
    /// Running allocations it would move to the new version in place.
    pub in_place: usize,
    /// Why placements would fail, one line per reason.
    pub unplaced: Vec<String>,
    /// How the new version would roll out, when it starts a deployment
    /// (`create` and `stop` count the whole rollout, not its first step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
}

impl Cluster {
    /// A dry run of submitting `spec`: the spec diff and the allocations the
    /// next reconcile pass would create, stop or update in place, with the
    /// scheduler's explanation of what would not fit. Writes nothing.
    pub fn plan_job(&self, spec: &JobSpec) -> Result<JobPlan, ClusterError> {
        spec.validate()?;
        let mut state = (*self.inner.store.replica().current()).clone();
        let current = state.jobs.get(&spec.name).cloned();
        let before: Vec<(AllocId, u64)> = state
            .allocs_of_job(&spec.name)
            .filter(|a| a.is_live())
            .map(|a| (a.id.clone(), a.job_version))
            .collect();
        let index = state.applied_index + 1;
        // Counted as if the rollout went through at once: the totals it will
        // create and stop, not only its first step.
        let mut whole = spec.clone();
        whole.update = Some(crate::spec::UpdateSpec {
            max_parallel: spec.replicas.max(1),
            canary: 0,
            order: crate::spec::UpdateOrder::StopFirst,
            ..spec.update_policy()
        });
        state.apply(index, &Command::UpsertJob { spec: whole });
        let rollout = state.active_deployment(&spec.name).map(|_| {
            let u = spec.update_policy();
            let order = match u.order {
                crate::spec::UpdateOrder::StopFirst => "stop first",
                crate::spec::UpdateOrder::StartFirst => "start first",
            };
            let old = before.len();
            match u.canary {
                _ if old == 0 => "a new deployment: every replica at once".to_string(),
                0 => format!("rolling, {} at a time ({order})", u.max_parallel),
                c => format!(
                    "{c} canar{} beside the running version, then rolling {} at a time ({order}) once promoted{}",
                    if c == 1 { "y" } else { "ies" },
                    u.max_parallel,
                    if u.auto_promote { " automatically" } else { "" }
                ),
            }
        });
        let version = state.jobs[&spec.name].version;
        let in_place = before
            .iter()
            .filter(|(id, v)| {
                *v != version
                    && state
                        .allocs
                        .get(id)
                        .is_some_and(|a| a.job_version == version)
            })
            .count();
        let plan = crate::reconcile::plan(&state, &*self.inner.scheduler, 100_000, index);
        let mine = |id: &str| state.allocs.get(id).is_some_and(|a| a.job == spec.name);
        let mut unplaced: Vec<String> = plan
            .unplaced
            .iter()
            .filter(|u| u.slot.job == spec.name)
            .map(|u| u.reason.clone())
            .collect();
        unplaced.sort();
        unplaced.dedup();
        let show = |s: Option<&JobSpec>| {
            s.map(|s| serde_json::to_string_pretty(s).unwrap_or_default() + "\n")
                .unwrap_or_default()
        };
        let (old, new) = (show(current.as_ref().map(|j| &j.spec)), show(Some(spec)));
        let diff = similar::TextDiff::from_lines(&old, &new)
            .unified_diff()
            .header("current", "submitted")
            .to_string();
        Ok(JobPlan {
            name: spec.name.clone(),
            version: current.as_ref().map(|j| j.version),
            modify_index: current.as_ref().map_or(0, |j| j.modify_index),
            changed: current.as_ref().is_none_or(|j| j.spec != *spec),
            diff,
            create: plan
                .placements
                .iter()
                .filter(|p| p.slot.job == spec.name && p.slot.existing.is_none())
                .count()
                + plan
                    .unplaced
                    .iter()
                    .filter(|u| u.slot.job == spec.name && u.slot.existing.is_none())
                    .count(),
            stop: plan.stops.iter().filter(|s| mine(&s.id)).count(),
            in_place,
            unplaced,
            rollout,
        })
    }
}
