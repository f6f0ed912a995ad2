//! [`MeteredRuntime`]: the node's runtime with every operation counted and
//! timed into its [`Metrics`] (`orion_runtime_operations_total{op,outcome}`,
//! `orion_runtime_operation_duration_seconds{op}`), so adapters stay thin and
//! every runtime is measured the same way. Image pulls are the
//! `ensure_image` operation. Long-lived streams (logs, exit feeds, attached
//! execs) are timed until they open.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::metrics::Metrics;
use crate::runtime::{
    ContainerInfo, ExecOutput, ExecSession, Exits, Logs, Owner, Runtime, RuntimeError, Stats,
    TaskLaunch,
};

/// A runtime whose operations are counted; see the module docs.
pub struct MeteredRuntime {
    inner: Arc<dyn Runtime>,
    metrics: Arc<Metrics>,
}

impl MeteredRuntime {
    /// Wraps `inner`, counting into `metrics`.
    pub fn new(inner: Arc<dyn Runtime>, metrics: Arc<Metrics>) -> Self {
        MeteredRuntime { inner, metrics }
    }

    async fn timed<T>(
        &self,
        op: &str,
        f: impl std::future::Future<Output = Result<T, RuntimeError>>,
    ) -> Result<T, RuntimeError> {
        let started = Instant::now();
        let r = f.await;
        // A container already gone is an answer, not an engine error.
        let ok = matches!(&r, Ok(_) | Err(RuntimeError::NotFound(_)));
        self.metrics.runtime_op(op, ok, started.elapsed());
        r
    }
}

#[async_trait]
impl Runtime for MeteredRuntime {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn ping(&self) -> Result<(), RuntimeError> {
        self.timed("ping", self.inner.ping()).await
    }
    async fn version(&self) -> Result<String, RuntimeError> {
        self.inner.version().await
    }
    fn warning(&self) -> Option<String> {
        self.inner.warning()
    }
    async fn ensure_image(&self, image: &str) -> Result<(), RuntimeError> {
        self.timed("ensure_image", self.inner.ensure_image(image))
            .await
    }
    async fn create(&self, launch: &TaskLaunch) -> Result<ContainerInfo, RuntimeError> {
        self.timed("create", self.inner.create(launch)).await
    }
    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.timed("start", self.inner.start(id)).await
    }
    async fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        self.timed("stop", self.inner.stop(id, grace)).await
    }
    async fn kill(&self, id: &str) -> Result<(), RuntimeError> {
        self.timed("kill", self.inner.kill(id)).await
    }
    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        self.timed("remove", self.inner.remove(id)).await
    }
    async fn inspect(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        self.timed("inspect", self.inner.inspect(id)).await
    }
    async fn list(&self, owner: &Owner) -> Result<Vec<ContainerInfo>, RuntimeError> {
        self.timed("list", self.inner.list(owner)).await
    }
    async fn exits(&self, owner: &Owner) -> Result<Exits, RuntimeError> {
        // Unsupported is this runtime's answer, not a failure.
        let started = Instant::now();
        let r = self.inner.exits(owner).await;
        if !matches!(r, Err(RuntimeError::Unsupported(_))) {
            self.metrics
                .runtime_op("exits", r.is_ok(), started.elapsed());
        }
        r
    }
    async fn logs(&self, id: &str, follow: bool) -> Result<Logs, RuntimeError> {
        self.timed("logs", self.inner.logs(id, follow)).await
    }
    async fn stats(&self, id: &str) -> Result<Stats, RuntimeError> {
        self.timed("stats", self.inner.stats(id)).await
    }
    async fn read_file(&self, id: &str, path: &str, limit: u64) -> Result<Vec<u8>, RuntimeError> {
        self.timed("read_file", self.inner.read_file(id, path, limit))
            .await
    }
    async fn exec(&self, id: &str, cmd: &[String]) -> Result<ExecOutput, RuntimeError> {
        self.timed("exec", self.inner.exec(id, cmd)).await
    }
    async fn exec_attach(
        &self,
        id: &str,
        cmd: &[String],
        tty: bool,
    ) -> Result<ExecSession, RuntimeError> {
        self.timed("exec_attach", self.inner.exec_attach(id, cmd, tty))
            .await
    }
    async fn exec_resize(&self, exec: &str, rows: u16, cols: u16) -> Result<(), RuntimeError> {
        self.inner.exec_resize(exec, rows, cols).await
    }
    async fn exec_exit_code(&self, exec: &str) -> Result<Option<i64>, RuntimeError> {
        self.inner.exec_exit_code(exec).await
    }
    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        self.timed("remove_volume", self.inner.remove_volume(name))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeRuntime;

    #[tokio::test]
    async fn operations_are_counted_by_outcome_and_pass_through() {
        let metrics = Arc::new(Metrics::new());
        let fake = Arc::new(FakeRuntime::new());
        fake.remove_image("gone:1");
        let rt = MeteredRuntime::new(fake.clone(), metrics.clone());
        rt.ensure_image("here:1").await.unwrap();
        assert!(rt.ensure_image("gone:1").await.is_err());
        // NotFound is an answer, not an error.
        assert!(matches!(
            rt.kill("nope").await,
            Err(RuntimeError::NotFound(_))
        ));
        let text = metrics.encode_text(&Default::default());
        for want in [
            "orion_runtime_operations_total{op=\"ensure_image\",outcome=\"ok\"} 1",
            "orion_runtime_operations_total{op=\"ensure_image\",outcome=\"error\"} 1",
            "orion_runtime_operations_total{op=\"kill\",outcome=\"ok\"} 1",
            "orion_runtime_operation_duration_seconds_count{op=\"ensure_image\"} 2",
        ] {
            assert!(text.contains(want), "{want} missing from:\n{text}");
        }
        // Default-method operations reach the wrapped runtime.
        assert!(rt
            .exits(&Owner {
                cluster_id: "c".into(),
                node_id: "n".into()
            })
            .await
            .is_ok());
    }
}
