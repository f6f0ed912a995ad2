//! Waiting on the cluster from the library: until a job's replicas run, and a
//! change stream of one job — so callers need no polling loops of their own.

use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;

use crate::model::{AllocState, Allocation};
use crate::replica::ChangeBatch;
use crate::state::Change;

use super::{Cluster, ClusterError};

impl Cluster {
    /// Waits until at least `replicas` allocations of `job`'s current version
    /// are running, as this node's replica sees them, and returns them (by
    /// slot). Wakes on every applied command, so it returns as soon as the
    /// state shows it.
    ///
    /// It first catches up with the leader (a read barrier), so a job committed
    /// through any node before the call is found.
    ///
    /// Errors: [`ClusterError::JobNotFound`] when the job does not exist (or is
    /// purged while waiting); [`ClusterError::Timeout`] at `timeout`, saying how
    /// many run and why the others do not (the scheduler's reason for pending
    /// ones, the last error of failed ones).
    ///
    /// ```no_run
    /// # async fn demo(cluster: orion_core::Cluster) -> Result<(), orion_core::ClusterError> {
    /// use std::time::Duration;
    /// for a in cluster.wait_running("web", 3, Duration::from_secs(60)).await? {
    ///     println!("{} on {:?}: {:?}", a.id, a.node, a.ports);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn wait_running(
        &self,
        job: &str,
        replicas: usize,
        timeout: Duration,
    ) -> Result<Vec<Allocation>, ClusterError> {
        // A job just submitted through another node may not have reached this
        // replica yet: catch up with the leader first.
        self.sync().await?;
        let replica = self.inner.store.replica();
        let mut applied = replica.subscribe_applied();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (running, why) = self.running_now(job)?;
            if running.len() >= replicas {
                return Ok(running);
            }
            let woke = tokio::time::timeout_at(deadline, applied.changed()).await;
            match woke {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    return Err(ClusterError::Timeout(format!(
                        "{job}: the store closed while waiting"
                    )))
                }
                Err(_) => {
                    return Err(ClusterError::Timeout(format!(
                        "{job}: {}/{replicas} running after {timeout:?}{why}",
                        running.len()
                    )))
                }
            }
        }
    }

    /// Waits until every allocation of `job` has finished (after
    /// [`stop_job`](Self::stop_job): its containers are stopped), or the job is
    /// purged.
    pub async fn wait_stopped(&self, job: &str, timeout: Duration) -> Result<(), ClusterError> {
        let replica = self.inner.store.replica();
        let mut applied = replica.subscribe_applied();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = replica.read(|s| {
                s.allocs_of_job(job)
                    .filter(|a| !a.state.is_terminal())
                    .count()
            });
            if left == 0 {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, applied.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    return Err(ClusterError::Timeout(format!(
                        "{job}: {left} allocations still not stopped after {timeout:?}"
                    )))
                }
            }
        }
    }

    /// Waits until no live allocation is left on `node` (after
    /// [`drain`](Self::drain): its work has moved elsewhere or stopped).
    pub async fn wait_drained(&self, node: &str, timeout: Duration) -> Result<(), ClusterError> {
        let replica = self.inner.store.replica();
        let mut applied = replica.subscribe_applied();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = replica.read(|s| {
                s.nodes
                    .contains_key(node)
                    .then(|| s.allocs_on_node(node).filter(|a| a.is_live()).count())
            });
            match left {
                None => return Err(ClusterError::NodeNotFound(node.into())),
                Some(0) => return Ok(()),
                Some(n) => match tokio::time::timeout_at(deadline, applied.changed()).await {
                    Ok(Ok(())) => {}
                    _ => {
                        return Err(ClusterError::Timeout(format!(
                            "node {node}: {n} allocations still on it after {timeout:?}"
                        )))
                    }
                },
            }
        }
    }

    /// The running allocations of `job`'s current version, and why others are
    /// not running (for a timeout's message).
    fn running_now(&self, job: &str) -> Result<(Vec<Allocation>, String), ClusterError> {
        self.inner.store.replica().read(|s| {
            let version = s
                .jobs
                .get(job)
                .ok_or_else(|| ClusterError::JobNotFound(job.into()))?
                .version;
            let current: Vec<&Allocation> = s
                .allocs_of_job(job)
                .filter(|a| a.job_version == version && a.is_live())
                .collect();
            let mut running: Vec<Allocation> = current
                .iter()
                .filter(|a| a.state == AllocState::Running)
                .map(|a| (*a).clone())
                .collect();
            running.sort_by_key(|a| a.slot);
            let why = current
                .iter()
                .filter(|a| a.state != AllocState::Running)
                .filter_map(|a| a.message.as_ref().map(|m| (a.state, m)))
                .next()
                .map(|(state, m)| format!("; {state}: {m}"))
                .unwrap_or_default();
            Ok((running, why))
        })
    }

    /// Committed changes to one job (the job itself and its allocations) from
    /// now on, each batch keeping only that job's changes; batches that touch
    /// it not at all are skipped. Like [`watch`](Self::watch), a watcher that
    /// falls too far behind skips ahead and should re-read state.
    pub fn watch_job(&self, job: &str) -> BoxStream<'static, ChangeBatch> {
        let job = job.to_string();
        self.watch()
            .filter_map(move |mut batch| {
                batch.changes.retain(|c| match c {
                    Change::Job { name }
                    | Change::Deployment { job: name }
                    | Change::Scaling { job: name } => *name == job,
                    Change::Alloc { job: j, .. } => *j == job,
                    Change::Node { .. } | Change::Volume { .. } | Change::Secret { .. } => false,
                });
                let keep = !batch.changes.is_empty();
                async move { keep.then_some(batch) }
            })
            .boxed()
    }
}
