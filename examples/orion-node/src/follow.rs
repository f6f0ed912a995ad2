//! `job run` following its deployment until it ends, as Nomad's `job run`
//! does: a live line per version (desired / placed / healthy) on a terminal,
//! a line per change otherwise, and an exit status that says how it ended.

use std::time::Duration;

use anyhow::Result;
use orion_core::model::{Deployment, DeploymentStatus};
use orion_core::{AllocState, JobView};

use crate::out::say;

/// How a followed submission ended badly: exit status 2, as Nomad's
/// `job run` (a failed or reverted deployment, or an allocation that cannot be
/// placed). Anything else that goes wrong is an error, status 1.
#[derive(Debug)]
pub struct Unsuccessful(pub String);

impl std::fmt::Display for Unsuccessful {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsuccessful {}

/// How often the job is read while following.
const POLL: Duration = Duration::from_millis(250);

/// Follows job `name` at `version` (as just submitted) until its deployment
/// ends; without a deployment (an in-place change, a batch job), until its
/// allocations of the version run.
pub async fn follow(http: &reqwest::Client, base: &str, name: &str, version: u64) -> Result<()> {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = tty.then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.enable_steady_tick(Duration::from_millis(120));
        b
    });
    let mut last = String::new();
    // The deployment of the submitted version, once seen: followed by id, so
    // a revert (a newer deployment) does not pass for it.
    let mut mine: Option<u64> = None;
    let result = loop {
        let r = crate::client::send(http.get(format!("{base}/v1/jobs/{name}")), "job run", base)
            .await?;
        let mut view: JobView = r.json().await?;
        let latest = view.deployment.as_ref().map(|d| d.id);
        if mine.is_none() || latest != mine {
            let r =
                crate::client::send(http.get(format!("{base}/v1/deployments")), "job run", base)
                    .await?;
            let all: Vec<Deployment> = r.json().await?;
            let ours = all
                .into_iter()
                .filter(|d| d.job == name)
                .find(|d| match mine {
                    Some(id) => d.id == id,
                    None => d.job_version == version,
                });
            mine = mine.or(ours.as_ref().map(|d| d.id));
            view.deployment = ours;
        }
        let line = progress(&view, version);
        if line != last {
            match &bar {
                Some(b) => b.set_message(line.clone()),
                None => eprintln!("{line}"),
            }
            last = line;
        }
        if let Some(end) = ended(&view, version) {
            break end;
        }
        tokio::time::sleep(POLL).await;
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    match result {
        Ok(msg) => {
            say!("{msg}");
            Ok(())
        }
        Err(msg) => Err(Unsuccessful(msg).into()),
    }
}

/// The deployment that rolls out `version` (or the newer one it followed
/// into in place).
fn deployment_of(view: &JobView, version: u64) -> Option<&Deployment> {
    view.deployment
        .as_ref()
        .filter(|d| d.job_version >= version)
}

/// One line of progress: per version, desired / placed / healthy.
fn progress(view: &JobView, version: u64) -> String {
    match deployment_of(view, version) {
        Some(d) => {
            let mut line = format!(
                "deployment {} of {} version {}: {}  desired {}  placed {}  healthy {}",
                d.id, d.job, d.job_version, d.status, d.desired, d.placed, d.healthy
            );
            if d.unhealthy > 0 {
                line.push_str(&format!("  unhealthy {}", d.unhealthy));
            }
            if d.canaries > 0 {
                line.push_str(&format!(
                    "  canaries {}{}",
                    d.canaries,
                    if d.promoted { " (promoted)" } else { "" }
                ));
            }
            let old = view
                .allocations
                .iter()
                .filter(|a| a.is_live() && a.job_version < d.job_version)
                .count();
            if old > 0 {
                line.push_str(&format!("  (older versions: {old} live)"));
            }
            line.push_str(&format!("  — {}", d.description));
            line
        }
        None => format!(
            "job {} version {}: running {}/{}",
            view.job.spec.name, view.job.version, view.running, view.job.spec.replicas
        ),
    }
}

/// How the follow ends, once it does: `Ok(last line)` or `Err(why)`.
fn ended(view: &JobView, version: u64) -> Option<Result<String, String>> {
    // A newer version than we submitted, not made in place by our deployment:
    // someone else's change (or an auto-revert, which the deployment says).
    let unplaced = view.allocations.iter().find(|a| {
        a.is_live()
            && a.job_version >= version
            && a.node.is_none()
            && a.state == AllocState::Pending
            && a.message.is_some()
    });
    if let Some(a) = unplaced {
        return Some(Err(format!(
            "job {} version {}: allocation {} cannot be placed: {} (the deployment waits, and fails at its progress deadline)",
            view.job.spec.name,
            a.job_version,
            a.id,
            a.message.as_deref().unwrap_or("")
        )));
    }
    let failed = view
        .allocations
        .iter()
        .find(|a| a.is_live() && a.job_version >= version && a.failed_here());
    if let Some(a) = failed {
        return Some(Err(format!(
            "job {} version {}: allocation {} failed on node {}: {} (it is replaced under the job's reschedule policy)",
            view.job.spec.name,
            a.job_version,
            a.id,
            a.node.as_deref().unwrap_or("-"),
            a.message.as_deref().unwrap_or("")
        )));
    }
    match deployment_of(view, version) {
        Some(d) => match d.status {
            DeploymentStatus::Successful => Some(Ok(format!(
                "deployment {} of {} version {}: successful — {}",
                d.id, d.job, d.job_version, d.description
            ))),
            DeploymentStatus::Failed | DeploymentStatus::Cancelled => Some(Err(format!(
                "deployment {} of {} version {}: {} — {}",
                d.id, d.job, d.job_version, d.status, d.description
            ))),
            DeploymentStatus::Running | DeploymentStatus::Paused => None,
        },
        None if view.job.version > version => Some(Ok(format!(
            "job {}: version {} was replaced by version {}",
            view.job.spec.name, version, view.job.version
        ))),
        None => (view.running >= view.job.spec.replicas as usize).then(|| {
            Ok(format!(
                "job {} version {}: running {}/{}",
                view.job.spec.name, view.job.version, view.running, view.job.spec.replicas
            ))
        }),
    }
}
