//! Jobs that wait for other jobs: `after: [{ job: build, condition: complete }]`.
//! A job with dependencies gets no allocation until each dependency meets its
//! condition (checked once: a job that has started is not held back again);
//! a dependency that fails fails it, with the reason.

use serde::{Deserialize, Serialize};

/// One job another waits for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    /// The job waited for (it may not be submitted yet).
    pub job: String,
    /// What it must reach. Default complete.
    #[serde(default)]
    pub condition: Condition,
}

/// What a dependency must reach.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    /// Every replica completed (a batch job).
    #[default]
    Complete,
    /// Every replica running and passing its checks.
    Healthy,
    /// Every replica running.
    Running,
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Condition::Complete => "complete",
            Condition::Healthy => "be healthy",
            Condition::Running => "be running",
        })
    }
}
