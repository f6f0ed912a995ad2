//! The [`Runtime`] implementation: each method one engine call, or a few.

use std::time::Duration;

use async_trait::async_trait;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, KillContainerOptionsBuilder,
    RemoveContainerOptionsBuilder, StartContainerOptions, StopContainerOptionsBuilder,
};
use orion_core::runtime::{ContainerInfo, ContainerState, ExecOutput, Exits, Logs, Owner, Stats};
use orion_core::{Runtime, RuntimeError, TaskLaunch};
use tracing::{debug, warn};

use super::{convert, error, DockerRuntime};

#[async_trait]
impl Runtime for DockerRuntime {
    fn name(&self) -> &str {
        "docker"
    }

    async fn ping(&self) -> Result<(), RuntimeError> {
        let docker = self.client().await?;
        let limit = self.config().connect_timeout;
        match tokio::time::timeout(limit, docker.ping()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(RuntimeError::Unavailable(format!(
                "ping: {}",
                error::source_chain(&e)
            ))),
            Err(_) => Err(RuntimeError::Unavailable(format!(
                "ping: no answer within {limit:?}"
            ))),
        }
    }

    async fn version(&self) -> Result<String, RuntimeError> {
        let docker = self.client().await?;
        let v = docker
            .version()
            .await
            .map_err(|e| error::general("version", e))?;
        Ok(v.version.unwrap_or_else(|| "unknown".into()))
    }

    async fn ensure_image(&self, image: &str) -> Result<(), RuntimeError> {
        if self.has_image(image).await? {
            return Ok(());
        }
        debug!(image, "image not present locally, pulling");
        let docker = self.client().await?;
        self.pull(docker, image).await
    }

    async fn create(&self, launch: &TaskLaunch) -> Result<ContainerInfo, RuntimeError> {
        let docker = self.client().await?;
        let name = launch.container_name();
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        let body = convert::create_body(launch, self.config());
        let created = match docker.create_container(Some(options), body).await {
            Ok(created) => created,
            Err(e) if error::status(&e) == Some(404) => {
                return Err(RuntimeError::Image {
                    image: launch.task.image.clone(),
                    reason: error::message(&e),
                })
            }
            Err(e) => return Err(error::general("create", e)),
        };
        for warning in &created.warnings {
            warn!(container = %name, warning = %warning, "docker warned on create");
        }
        Ok(ContainerInfo {
            id: created.id,
            alloc_id: launch.alloc_id.clone(),
            job: launch.job.clone(),
            state: ContainerState::Created,
            ports: launch.ports.clone(),
            error: None,
            health: None,
        })
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.forget(id);
        let docker = self.client().await?;
        docker
            .start_container(id, None::<StartContainerOptions>)
            .await
            .map_err(|e| error::on_container("start", id, e))
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        self.forget(id);
        // The engine answers only once the container is gone: allow it the grace too.
        let docker = self
            .client()
            .await?
            .clone()
            .with_timeout(self.config().request_timeout + grace);
        let secs = i32::try_from(grace.as_secs() + u64::from(grace.subsec_nanos() > 0))
            .unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::new().t(secs).build();
        docker
            .stop_container(id, Some(options))
            .await
            .map_err(|e| error::on_container("stop", id, e))
    }

    async fn kill(&self, id: &str) -> Result<(), RuntimeError> {
        self.forget(id);
        let docker = self.client().await?;
        let options = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
        match docker.kill_container(id, Some(options)).await {
            // Not running: already as dead as a kill would make it.
            Err(e) if error::status(&e) == Some(409) => Ok(()),
            other => other.map_err(|e| error::on_container("kill", id, e)),
        }
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        self.forget(id);
        let docker = self.client().await?;
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match docker.remove_container(id, Some(options)).await {
            // Another caller's removal is under way: it will be gone.
            Err(e)
                if error::status(&e) == Some(409)
                    && error::message(&e).contains("already in progress") =>
            {
                Ok(())
            }
            other => other.map_err(|e| error::on_container("remove", id, e)),
        }
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        let docker = self.client().await?;
        let c = docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| error::on_container("inspect", id, e))?;
        Ok(convert::info(id, &c))
    }

    async fn list(&self, owner: &Owner) -> Result<Vec<ContainerInfo>, RuntimeError> {
        self.list_owned(owner).await
    }

    async fn exits(&self, owner: &Owner) -> Result<Exits, RuntimeError> {
        self.watch_exits(owner).await
    }

    async fn logs(&self, id: &str, follow: bool) -> Result<Logs, RuntimeError> {
        self.log_stream(id, follow).await
    }

    async fn stats(&self, id: &str) -> Result<Stats, RuntimeError> {
        self.sample(id).await
    }

    async fn read_file(&self, id: &str, path: &str, limit: u64) -> Result<Vec<u8>, RuntimeError> {
        self.download(id, path, limit).await
    }

    async fn exec(&self, id: &str, cmd: &[String]) -> Result<ExecOutput, RuntimeError> {
        self.run_exec(id, cmd).await
    }

    async fn exec_attach(
        &self,
        id: &str,
        cmd: &[String],
        tty: bool,
    ) -> Result<orion_core::runtime::ExecSession, RuntimeError> {
        self.attach_exec(id, cmd, tty).await
    }

    async fn exec_resize(&self, exec: &str, rows: u16, cols: u16) -> Result<(), RuntimeError> {
        self.resize_exec_tty(exec, rows, cols).await
    }

    async fn exec_exit_code(&self, exec: &str) -> Result<Option<i64>, RuntimeError> {
        self.exec_code(exec).await
    }

    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        let docker = self.client().await?;
        match docker
            .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await
        {
            Err(e) if error::status(&e) == Some(404) => Err(RuntimeError::NotFound(name.into())),
            other => other.map_err(|e| error::general("remove volume", e)),
        }
    }
}
