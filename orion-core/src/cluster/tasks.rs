//! Reaching a running task: its logs, a command run in it, its resource use.
//! Only the node that runs an allocation can; others say which node does.

use crate::agent::stats::{Sample, TaskStats};
use crate::model::Allocation;
use crate::runtime::{ContainerInfo, ExecOutput, ExecSession, Logs, Owner};

use super::{Cluster, ClusterError};

impl Cluster {
    /// One allocation, from this node's replica.
    pub fn allocation(&self, id: &str) -> Option<Allocation> {
        self.inner
            .store
            .replica()
            .read(|s| s.allocs.get(id).cloned())
    }

    /// The container of an allocation placed on this node.
    async fn container_of(&self, id: &str) -> Result<ContainerInfo, ClusterError> {
        let a = self
            .allocation(id)
            .ok_or_else(|| ClusterError::AllocNotFound(id.into()))?;
        let node = a.node.clone().unwrap_or_default();
        if node != self.inner.node.id {
            let http = self
                .inner
                .store
                .replica()
                .read(|s| s.nodes.get(&node).map(|n| n.info.addrs.http.clone()));
            return Err(ClusterError::Elsewhere { node, http });
        }
        let cluster_id = self.inner.store.replica().read(|s| s.cluster_id.clone());
        let owner = Owner {
            cluster_id: cluster_id.unwrap_or_default(),
            node_id: self.inner.node.id.clone(),
        };
        let containers = self.inner.runtime.list(&owner).await?;
        containers
            .into_iter()
            .find(|c| c.alloc_id == id)
            .ok_or_else(|| ClusterError::NoContainer(id.into()))
    }

    /// The output of an allocation's task; with `follow`, streams until it exits.
    ///
    /// Once the container is gone (the task finished or was replaced) this
    /// node's kept copy of its output is served instead (see
    /// [`crate::agent::kept_logs`]).
    pub async fn logs(&self, id: &str, follow: bool) -> Result<Logs, ClusterError> {
        match self.container_of(id).await {
            Ok(c) => Ok(self.inner.runtime.logs(&c.id, follow).await?),
            Err(ClusterError::NoContainer(_)) => {
                crate::agent::kept_logs::read(&self.inner.task_files, id)
                    .ok_or_else(|| ClusterError::NoContainer(id.into()))
            }
            Err(e) => Err(e),
        }
    }

    /// Runs a command inside an allocation's running task.
    pub async fn exec(&self, id: &str, cmd: &[String]) -> Result<ExecOutput, ClusterError> {
        let c = self.container_of(id).await?;
        Ok(self.inner.runtime.exec(&c.id, cmd).await?)
    }

    /// Starts a command in an allocation's running task with its input and
    /// output attached (on a TTY when `tty`).
    pub async fn exec_attach(
        &self,
        id: &str,
        cmd: &[String],
        tty: bool,
    ) -> Result<ExecSession, ClusterError> {
        let c = self.container_of(id).await?;
        Ok(self.inner.runtime.exec_attach(&c.id, cmd, tty).await?)
    }

    /// Resizes an attached exec's TTY.
    pub async fn exec_resize(&self, exec: &str, rows: u16, cols: u16) -> Result<(), ClusterError> {
        Ok(self.inner.runtime.exec_resize(exec, rows, cols).await?)
    }

    /// An attached exec's exit code once it has ended.
    pub async fn exec_exit_code(&self, exec: &str) -> Result<Option<i64>, ClusterError> {
        Ok(self.inner.runtime.exec_exit_code(exec).await?)
    }

    /// A sample of an allocation's resource use taken now, with CPU and
    /// memory as percentages; with `history`, the samples this node kept
    /// too (see [`crate::agent::stats`]).
    pub async fn stats(&self, id: &str, history: bool) -> Result<TaskStats, ClusterError> {
        let c = self.container_of(id).await?;
        let raw = self.inner.runtime.stats(&c.id).await?;
        let kept = &self.inner.stats;
        Ok(TaskStats {
            alloc: id.to_string(),
            interval_s: kept.config().interval.as_secs_f64(),
            current: kept.current(id, raw),
            history: history.then(|| kept.samples(id)),
        })
    }

    /// The latest kept sample of every task this node runs.
    pub fn task_samples(&self) -> Vec<(crate::metrics::TaskLabels, Sample)> {
        self.inner.stats.latest()
    }
}
