//! Autoscaling through the handle: a job's scaling state, and setting a
//! count by hand.

use serde::{Deserialize, Serialize};

use super::{submitted, Cluster, ClusterError, Submitted};
use crate::command::{Command, Refusal};
use crate::scaling::{ScaledBy, ScalingRecord, ScalingSpec};

/// A scaling job's autoscaling, as `GET /v1/jobs/{name}/scaling` and
/// `job status` show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScalingView {
    /// The job.
    pub job: String,
    /// The count it runs at now.
    pub replicas: u32,
    /// Its policy.
    pub policy: ScalingSpec,
    /// The bounds now (a schedule window moves them).
    pub min: u32,
    /// The bounds now.
    pub max: u32,
    /// The schedule policy whose window is open, by its index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<usize>,
    /// A count set by hand suspends the policy until then (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_until_ms: Option<u64>,
    /// When the count last changed (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change_ms: Option<u64>,
    /// The latest evaluation, whatever it decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<ScalingRecord>,
    /// The last changes of the count, oldest first (at most
    /// [`crate::scaling::KEPT_DECISIONS`]).
    pub decisions: Vec<ScalingRecord>,
}

impl Cluster {
    /// Job `name`'s autoscaling; `None` when the job has no scaling block
    /// (an error when there is no such job).
    pub fn scaling(&self, name: &str) -> Result<Option<ScalingView>, ClusterError> {
        let now = crate::model::unix_ms();
        self.inner.store.replica().read(|s| {
            let job = s
                .jobs
                .get(name)
                .ok_or_else(|| ClusterError::JobNotFound(name.into()))?;
            let Some(policy) = job.spec.scaling.clone() else {
                return Ok(None);
            };
            let kept = s.scaling.get(name).cloned().unwrap_or_default();
            let (min, max, window) = crate::scaling::bounds(&policy, now);
            Ok(Some(ScalingView {
                job: name.to_string(),
                replicas: job.spec.replicas,
                policy,
                min,
                max,
                window,
                suspended_until_ms: Some(kept.memory.manual_until_ms).filter(|t| *t > now),
                last_change_ms: Some(kept.memory.last_change_ms).filter(|t| *t > 0),
                last: kept.last,
                decisions: kept.decisions,
            }))
        })
    }

    /// Sets job `name`'s count by hand (`job scale`). On a job with a
    /// scaling policy the count must lie within its bounds, and the policy
    /// is suspended for its longer cooldown
    /// ([`crate::scaling::manual_suspension`]).
    pub async fn scale(&self, name: &str, replicas: u32) -> Result<Submitted, ClusterError> {
        let kind = self
            .inner
            .store
            .replica()
            .read(|s| s.jobs.get(name).map(|j| j.spec.kind))
            .ok_or_else(|| ClusterError::JobNotFound(name.into()))?;
        if kind == crate::spec::JobKind::System {
            return Err(crate::spec::SpecError::one(
                "replicas",
                "a system job runs one copy on every eligible node: it has no count to set",
            )
            .into());
        }
        if replicas > crate::spec::MAX_REPLICAS {
            return Err(crate::spec::SpecError::one(
                "replicas",
                format!(
                    "{replicas} is more than the limit of {}",
                    crate::spec::MAX_REPLICAS
                ),
            )
            .into());
        }
        let record = ScalingRecord {
            at_ms: crate::model::unix_ms(),
            from: 0,
            to: replicas,
            reason: format!("set by hand to {replicas}"),
            by: ScaledBy::Hand,
            inputs: Default::default(),
            instances: 0,
        };
        let cmd = Command::Scale {
            job: name.to_string(),
            record,
            memory: Default::default(),
        };
        match self.propose(cmd).await {
            Err(ClusterError::Refused {
                kind: Refusal::UnknownJob,
                ..
            }) => Err(ClusterError::JobNotFound(name.into())),
            other => submitted(other?),
        }
    }
}
