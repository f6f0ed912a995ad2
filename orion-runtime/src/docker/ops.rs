//! The longer engine conversations behind [`Runtime`](orion_core::Runtime): pulling,
//! listing, logs, stats and exec.

use std::time::Duration;

use bollard::exec::StartExecResults;
use bollard::models::ExecConfig;
use bollard::query_parameters::{
    CreateImageOptionsBuilder, EventsOptionsBuilder, InspectContainerOptions,
    ListContainersOptionsBuilder, LogsOptionsBuilder, StatsOptionsBuilder,
};
use bollard::{container::LogOutput, Docker};
use futures::{StreamExt, TryStreamExt};
use orion_core::runtime::{
    labels, ContainerInfo, ExecOutput, Exits, LogChunk, LogStream, Logs, Owner, Stats,
};
use orion_core::RuntimeError;

use super::{convert, error, DockerRuntime};

/// How many containers `list` inspects at once.
const LIST_CONCURRENCY: usize = 8;

/// How often `exec` asks whether a finished command has its exit code yet.
const EXEC_POLL: Duration = Duration::from_millis(20);

/// Splits `name[:tag]` into name and tag (`latest` when none); a digest stays in the name.
pub(crate) fn split_reference(image: &str) -> (&str, &str) {
    if image.contains('@') {
        return (image, "");
    }
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(i) => (&image[..last_slash + i], &image[last_slash + i + 1..]),
        None => (image, "latest"),
    }
}

/// What of a listed container says whether its inspection is still good:
/// its state, the exit code of an exited one (`Exited (0) …`), the health of
/// a running one (`Up 3 seconds (healthy)`).
fn summary_key(s: &bollard::models::ContainerSummary) -> String {
    let status = s.status.as_deref().unwrap_or("");
    let detail = if status.starts_with("Exited") {
        status.split_inclusive(')').next().unwrap_or(status)
    } else if status.ends_with(')') {
        status.rfind('(').map_or("", |i| &status[i..])
    } else {
        ""
    };
    format!("{:?}|{detail}", s.state)
}

impl DockerRuntime {
    /// Pulls an image, within the pull timeout; any failure is an image error.
    pub(crate) async fn pull(&self, docker: &Docker, image: &str) -> Result<(), RuntimeError> {
        let (name, tag) = split_reference(image);
        let mut options = CreateImageOptionsBuilder::new().from_image(name);
        if !tag.is_empty() {
            options = options.tag(tag);
        }
        let pull = docker
            .create_image(Some(options.build()), None, None)
            .try_for_each(|_| async { Ok(()) });
        let limit = self.config().pull_timeout;
        let image_error = |reason: String| RuntimeError::Image {
            image: image.to_string(),
            reason,
        };
        match tokio::time::timeout(limit, pull).await {
            Err(_) => Err(image_error(format!(
                "not present locally, and pulling it took longer than {limit:?}"
            ))),
            Ok(Err(e)) => Err(image_error(format!(
                "not present locally, and pulling it failed: {}",
                error::message(&e)
            ))),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// The engine's `die` events for the owner's containers, from now on: the
    /// request asks for events `since` the call, so one that happens before
    /// the stream is first polled (when the request is actually sent) is
    /// still delivered.
    pub(crate) async fn watch_exits(&self, owner: &Owner) -> Result<Exits, RuntimeError> {
        let docker = self.client().await?.clone();
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let filters: std::collections::HashMap<&str, Vec<String>> = [
            ("type", vec!["container".to_string()]),
            ("event", vec!["die".to_string()]),
            (
                "label",
                vec![
                    format!("{}={}", labels::CLUSTER, owner.cluster_id),
                    format!("{}={}", labels::NODE, owner.node_id),
                ],
            ),
        ]
        .into_iter()
        .collect();
        let options = EventsOptionsBuilder::new()
            .since(&format!("{}.{:09}", since.as_secs(), since.subsec_nanos()))
            .filters(&filters)
            .build();
        let feed = docker.events(Some(options)).filter_map(|event| async move {
            match event {
                Err(e) => Some(Err(error::general("events", e))),
                Ok(event) => event
                    .actor
                    .and_then(|a| a.attributes)
                    .and_then(|mut a| a.remove(labels::ALLOC))
                    .map(Ok),
            }
        });
        Ok(Box::pin(feed))
    }

    /// Every container with the owner's labels, inspected.
    pub(crate) async fn list_owned(
        &self,
        owner: &Owner,
    ) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let docker = self.client().await?;
        let filters = [(
            "label".to_string(),
            vec![
                format!("{}={}", labels::CLUSTER, owner.cluster_id),
                format!("{}={}", labels::NODE, owner.node_id),
            ],
        )]
        .into_iter()
        .collect();
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let summaries = docker
            .list_containers(Some(options))
            .await
            .map_err(|e| error::general("list", e))?;
        // Inspect only what changed since the last listing: a node's agent
        // lists on every pass, and inspecting every container each time costs
        // the engine one call per container per pass.
        let owner_key = format!("{}/{}", owner.cluster_id, owner.node_id);
        let keys: Vec<(String, String)> = summaries
            .iter()
            .filter_map(|s| Some((s.id.clone()?, summary_key(s))))
            .collect();
        let mut known = Vec::new();
        let mut stale = Vec::new();
        {
            let cache = self.inner.inspected.lock().expect("inspect cache");
            let mine = cache.get(&owner_key);
            for (id, key) in &keys {
                match mine.and_then(|m| m.get(id)) {
                    Some((k, info)) if k == key => {
                        known.push((id.clone(), key.clone(), info.clone()))
                    }
                    _ => stale.push((id.clone(), key.clone())),
                }
            }
        }
        let inspected: Vec<_> = futures::stream::iter(stale)
            .map(|(id, key)| async move {
                let found = docker
                    .inspect_container(&id, None::<InspectContainerOptions>)
                    .await;
                (id, key, found)
            })
            .buffered(LIST_CONCURRENCY)
            .collect()
            .await;
        for (id, key, found) in inspected {
            match found {
                Ok(c) => known.push((id.clone(), key, convert::info(&id, &c))),
                // Removed between the listing and the inspection: not there any more.
                Err(e) if error::status(&e) == Some(404) => {}
                Err(e) => return Err(error::on_container("list", &id, e)),
            }
        }
        let mut cache = self.inner.inspected.lock().expect("inspect cache");
        let mine = cache.entry(owner_key).or_default();
        mine.clear();
        let mut out = Vec::with_capacity(known.len());
        for (id, key, info) in known {
            mine.insert(id, (key, info.clone()));
            out.push(info);
        }
        Ok(out)
    }

    /// Drops what is known of container `id` (it was started, stopped or
    /// removed: the next listing inspects it again).
    pub(crate) fn forget(&self, id: &str) {
        for mine in self
            .inner
            .inspected
            .lock()
            .expect("inspect cache")
            .values_mut()
        {
            mine.remove(id);
        }
    }

    /// The container's output as a stream; checks first that it exists.
    pub(crate) async fn log_stream(&self, id: &str, follow: bool) -> Result<Logs, RuntimeError> {
        let docker = self.client().await?;
        docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| error::on_container("logs", id, e))?;
        let options = LogsOptionsBuilder::new()
            .follow(follow)
            .stdout(true)
            .stderr(true)
            .tail("all")
            .build();
        let owned_id = id.to_string();
        let stream = docker.logs(id, Some(options)).filter_map(move |item| {
            let chunk = match item {
                Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                    Some(Ok(LogChunk {
                        stream: LogStream::Stdout,
                        data: message,
                    }))
                }
                Ok(LogOutput::StdErr { message }) => Some(Ok(LogChunk {
                    stream: LogStream::Stderr,
                    data: message,
                })),
                Ok(LogOutput::StdIn { .. }) => None,
                Err(e) => Some(Err(error::on_container("logs", &owned_id, e))),
            };
            futures::future::ready(chunk)
        });
        Ok(Box::pin(stream))
    }

    /// One stats sample.
    pub(crate) async fn sample(&self, id: &str) -> Result<Stats, RuntimeError> {
        let docker = self.client().await?;
        let options = StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(true)
            .build();
        let mut samples = docker.stats(id, Some(options));
        match samples.next().await {
            Some(Ok(s)) => Ok(convert::stats(&s)),
            Some(Err(e)) => Err(error::on_container("stats", id, e)),
            None => Err(RuntimeError::Engine {
                op: "stats",
                source: format!("the engine sent no sample for {id}").into(),
            }),
        }
    }

    /// One file out of a container (the engine's archive endpoint: a tar of
    /// it), refusing more than `limit` bytes.
    pub(crate) async fn download(
        &self,
        id: &str,
        path: &str,
        limit: u64,
    ) -> Result<Vec<u8>, RuntimeError> {
        let docker = self.client().await?;
        let options = bollard::query_parameters::DownloadFromContainerOptionsBuilder::new()
            .path(path)
            .build();
        let mut stream = docker.download_from_container(id, Some(options));
        let mut tar_bytes = Vec::new();
        // The tar adds a header and padding: allow a little over the limit.
        let cap = limit.saturating_add(64 * 1024) as usize;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| match error::status(&e) {
                Some(404) => RuntimeError::NotFound(format!("{path} in {id}")),
                _ => error::on_container("reading a file", id, e),
            })?;
            tar_bytes.extend_from_slice(&chunk);
            if tar_bytes.len() > cap {
                return Err(RuntimeError::Engine {
                    op: "reading a file",
                    source: format!("{path} is over the limit of {limit} bytes").into(),
                });
            }
        }
        let mut archive = tar::Archive::new(std::io::Cursor::new(tar_bytes));
        let entries = archive.entries().map_err(|e| RuntimeError::Engine {
            op: "reading a file",
            source: Box::new(e),
        })?;
        for entry in entries {
            let mut entry = entry.map_err(|e| RuntimeError::Engine {
                op: "reading a file",
                source: Box::new(e),
            })?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let size = entry.header().size().unwrap_or(0);
            if size > limit {
                return Err(RuntimeError::Engine {
                    op: "reading a file",
                    source: format!("{path} is {size} bytes, over the limit of {limit}").into(),
                });
            }
            let mut out = Vec::with_capacity(size as usize);
            std::io::Read::read_to_end(&mut entry, &mut out).map_err(|e| RuntimeError::Engine {
                op: "reading a file",
                source: Box::new(e),
            })?;
            return Ok(out);
        }
        Err(RuntimeError::NotFound(format!(
            "{path} in {id} is not a regular file"
        )))
    }

    /// Runs a command in the container, collecting its output, within the exec timeout.
    pub(crate) async fn run_exec(
        &self,
        id: &str,
        cmd: &[String],
    ) -> Result<ExecOutput, RuntimeError> {
        let docker = self.client().await?;
        let exec = create_exec(docker, id, cmd, false, false).await?;
        let limit = self.config().exec_timeout;
        tokio::time::timeout(limit, collect_exec(docker, &exec))
            .await
            .map_err(|_| RuntimeError::Engine {
                op: "exec",
                source: format!("{cmd:?} in {id} did not finish within {limit:?}").into(),
            })?
            .map_err(|e| error::on_container("exec", id, e))
    }
}

impl DockerRuntime {
    /// Starts an exec with stdin attached (and a TTY when asked).
    pub(crate) async fn attach_exec(
        &self,
        id: &str,
        cmd: &[String],
        tty: bool,
    ) -> Result<orion_core::runtime::ExecSession, RuntimeError> {
        let docker = self.client().await?;
        let exec = create_exec(docker, id, cmd, true, tty).await?;
        match docker
            .start_exec(&exec, None)
            .await
            .map_err(|e| error::on_container("exec", id, e))?
        {
            StartExecResults::Attached { output, input } => {
                let output = output
                    .map_ok(|chunk| match chunk {
                        LogOutput::StdErr { message } => {
                            orion_core::runtime::ExecChunk::Stderr(message.to_vec())
                        }
                        LogOutput::StdOut { message }
                        | LogOutput::Console { message }
                        | LogOutput::StdIn { message } => {
                            orion_core::runtime::ExecChunk::Stdout(message.to_vec())
                        }
                    })
                    .map_err(|e| error::general("exec output", e))
                    .boxed();
                Ok(orion_core::runtime::ExecSession {
                    id: exec,
                    stdin: input,
                    output,
                })
            }
            StartExecResults::Detached => Err(RuntimeError::Engine {
                op: "exec",
                source: "the engine started the exec detached".into(),
            }),
        }
    }

    /// Resizes an exec's TTY.
    pub(crate) async fn resize_exec_tty(
        &self,
        exec: &str,
        rows: u16,
        cols: u16,
    ) -> Result<(), RuntimeError> {
        let docker = self.client().await?;
        let options = bollard::exec::ResizeExecOptions {
            height: rows,
            width: cols,
        };
        docker
            .resize_exec(exec, options)
            .await
            .map_err(|e| error::general("resize exec", e))
    }

    /// An exec's exit code, once it ended.
    pub(crate) async fn exec_code(&self, exec: &str) -> Result<Option<i64>, RuntimeError> {
        let docker = self.client().await?;
        let info = docker
            .inspect_exec(exec)
            .await
            .map_err(|e| error::general("inspect exec", e))?;
        Ok(if info.running == Some(true) {
            None
        } else {
            info.exit_code
        })
    }
}

/// Creates (does not start) an exec of `cmd` in container `id` and returns its
/// id; its output attached, with stdin attached when `stdin`, on a TTY when `tty`.
async fn create_exec(
    docker: &Docker,
    id: &str,
    cmd: &[String],
    stdin: bool,
    tty: bool,
) -> Result<String, RuntimeError> {
    let config = ExecConfig {
        attach_stdin: Some(stdin),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(tty),
        cmd: Some(cmd.to_vec()),
        ..ExecConfig::default()
    };
    docker
        .create_exec(id, config)
        .await
        .map(|e| e.id)
        .map_err(|e| error::on_container("exec", id, e))
}

/// Starts an exec attached, gathers its output, then waits for its exit code.
async fn collect_exec(
    docker: &Docker,
    exec_id: &str,
) -> Result<ExecOutput, bollard::errors::Error> {
    let mut out = ExecOutput::default();
    if let StartExecResults::Attached { mut output, .. } = docker.start_exec(exec_id, None).await? {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        // Keeps the first EXEC_OUTPUT_MAX bytes of a stream; reads on past it.
        let mut keep = |to: &mut Vec<u8>, bytes: &[u8]| {
            let room = orion_core::runtime::EXEC_OUTPUT_MAX.saturating_sub(to.len());
            if bytes.len() > room {
                out.truncated = true;
            }
            to.extend_from_slice(&bytes[..bytes.len().min(room)]);
        };
        while let Some(chunk) = output.next().await {
            match chunk? {
                LogOutput::StdErr { message } => keep(&mut stderr, &message),
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    keep(&mut stdout, &message)
                }
                LogOutput::StdIn { .. } => {}
            }
        }
        out.stdout = String::from_utf8_lossy(&stdout).into_owned();
        out.stderr = String::from_utf8_lossy(&stderr).into_owned();
    }
    // The output ends a moment before the engine records the exit code.
    loop {
        let inspected = docker.inspect_exec(exec_id).await?;
        if inspected.running != Some(true) {
            out.exit_code = inspected.exit_code.unwrap_or(-1);
            return Ok(out);
        }
        tokio::time::sleep(EXEC_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::split_reference;

    #[test]
    fn references_split_into_name_and_tag() {
        assert_eq!(split_reference("busybox"), ("busybox", "latest"));
        assert_eq!(split_reference("orion-test/web:1"), ("orion-test/web", "1"));
        assert_eq!(
            split_reference("localhost:5000/web"),
            ("localhost:5000/web", "latest")
        );
        assert_eq!(
            split_reference("localhost:5000/web:2"),
            ("localhost:5000/web", "2")
        );
        assert_eq!(split_reference("web@sha256:abc"), ("web@sha256:abc", ""));
    }
}
