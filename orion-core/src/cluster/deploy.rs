//! Deployments and versions through the [`Cluster`] handle: read them, act on
//! them (promote, pause, resume, fail), and revert a job to a kept version.

use super::{submitted, Cluster, ClusterError, Submitted};
use crate::command::Command;
use crate::model::{Deployment, JobVersion};
use crate::state::DeploymentAction;

impl Cluster {
    /// A job's latest deployment, from this node's replica.
    pub fn deployment(&self, job: &str) -> Option<Deployment> {
        self.inner
            .store
            .replica()
            .read(|s| s.latest_deployment(job).cloned())
    }

    /// Every kept deployment of every job, newest first.
    pub fn deployments(&self) -> Vec<Deployment> {
        let mut all: Vec<Deployment> = self.inner.store.replica().read(|s| {
            s.deployments
                .values()
                .flat_map(|l| l.iter().cloned())
                .collect()
        });
        all.sort_by_key(|d| std::cmp::Reverse(d.id));
        all
    }

    /// The kept versions of a job, oldest first; `None` for an unknown job.
    pub fn versions(&self, job: &str) -> Option<Vec<JobVersion>> {
        self.inner.store.replica().read(|s| {
            s.jobs
                .contains_key(job)
                .then(|| s.versions_of(job).to_vec())
        })
    }

    /// Promotes, pauses, resumes or fails a job's latest deployment and
    /// answers it as it is then. An unknown job or one without a deployment
    /// is `JobNotFound` / `DeploymentNotFound`; an action that does not suit
    /// the deployment (promote without canaries, resume one that is not paused,
    /// anything on one that ended) is `Refused`, and changes nothing.
    pub async fn deployment_action(
        &self,
        job: &str,
        action: DeploymentAction,
    ) -> Result<Deployment, ClusterError> {
        if !self
            .inner
            .store
            .replica()
            .read(|s| s.jobs.contains_key(job))
        {
            return Err(ClusterError::JobNotFound(job.into()));
        }
        let d = self
            .deployment(job)
            .ok_or_else(|| ClusterError::DeploymentNotFound(job.into()))?;
        // The state machine answers a repeated action as done (a retried
        // proposal must not fail); a caller asking for one on an ended
        // deployment is told so.
        if !d.status.is_active() {
            return Err(ClusterError::refused(format!(
                "deployment {} of job {job:?} is {}: nothing to {action}",
                d.id, d.status
            )));
        }
        let reason = (action == DeploymentAction::Fail).then(|| "failed by a user".to_string());
        self.propose(Command::Deployment {
            job: job.to_string(),
            deployment: d.id,
            action,
            reason,
        })
        .await?;
        self.deployment(job)
            .ok_or_else(|| ClusterError::DeploymentNotFound(job.into()))
    }

    /// Forgets finished jobs (see [`crate::ClusterState::finished_jobs`]):
    /// those finished at least `min_age` ago, or every finished and stopped
    /// one with `None` (`job gc`). Answers the names forgotten.
    pub async fn gc(
        &self,
        min_age: Option<std::time::Duration>,
    ) -> Result<Vec<String>, ClusterError> {
        let now = crate::model::unix_ms();
        let age = min_age.map_or(0, |d| d.as_millis() as u64);
        let names = self
            .inner
            .store
            .replica()
            .read(|s| s.finished_jobs(now, age));
        for name in &names {
            self.propose(Command::StopJob {
                name: name.clone(),
                purge: true,
            })
            .await?;
        }
        Ok(names)
    }

    /// Submits a kept version of a job again as its newest version: `version`,
    /// or by default the last stable version before the current one. What
    /// still runs that version's task keeps running (moved in place).
    pub async fn revert(&self, job: &str, version: Option<u64>) -> Result<Submitted, ClusterError> {
        let versions = self
            .versions(job)
            .ok_or_else(|| ClusterError::JobNotFound(job.into()))?;
        if let Some(v) = version {
            let current = self
                .inner
                .store
                .replica()
                .read(|s| s.jobs.get(job).map(|j| j.version));
            if current != Some(v) && !versions.iter().any(|x| x.version == v) {
                let kept: Vec<String> = versions.iter().map(|x| x.version.to_string()).collect();
                return Err(ClusterError::VersionNotFound {
                    job: job.into(),
                    version: v,
                    kept: kept.join(", "),
                });
            }
        }
        let from = self
            .inner
            .store
            .replica()
            .read(|s| s.jobs.get(job).map(|j| j.version));
        submitted(
            self.propose(Command::RevertJob {
                name: job.to_string(),
                version,
                from,
            })
            .await?,
        )
    }
}

impl Cluster {
    /// Every service in the catalog, from this node's replica.
    pub fn services(&self) -> Vec<crate::catalog::ServiceSummary> {
        self.inner.store.replica().read(crate::catalog::services)
    }

    /// A service's index and instances (healthy or not), from this node's
    /// replica.
    pub fn service(&self, name: &str) -> (u64, Vec<crate::catalog::Instance>) {
        self.inner
            .store
            .replica()
            .read(|s| crate::catalog::instances(s, name))
    }

    /// A blocking read of a service: answers as soon as its index is not
    /// `index` any more, or after `wait` with it unchanged (Consul's and
    /// Nomad's blocking queries).
    pub async fn service_after(
        &self,
        name: &str,
        index: u64,
        wait: std::time::Duration,
    ) -> (u64, Vec<crate::catalog::Instance>) {
        let replica = self.inner.store.replica().clone();
        let mut changes = replica.subscribe_changes();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let now = self.service(name);
            if now.0 != index {
                return now;
            }
            match tokio::time::timeout_at(deadline, changes.recv()).await {
                Err(_) => return now,
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return now,
                Ok(_) => {}
            }
        }
    }

    /// A service's instances now, then again each time they change (healthy
    /// or not; filter on [`crate::catalog::Instance::healthy`]): what a
    /// client-side load balancer follows.
    pub fn watch_service(
        &self,
        name: &str,
    ) -> futures::stream::BoxStream<'static, Vec<crate::catalog::Instance>> {
        use futures::StreamExt;
        let cluster = self.clone();
        let name = name.to_string();
        futures::stream::unfold(None, move |last: Option<u64>| {
            let (cluster, name) = (cluster.clone(), name.clone());
            async move {
                let (index, instances) = match last {
                    None => cluster.service(&name),
                    Some(i) => {
                        cluster
                            .service_after(&name, i, std::time::Duration::from_secs(3600))
                            .await
                    }
                };
                Some((instances, Some(index)))
            }
        })
        .boxed()
    }
}
