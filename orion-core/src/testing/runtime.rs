//! `FakeRuntime`: containers as entries in a map; records calls, injects failures.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::runtime::{
    labels, ContainerInfo, ContainerState, ExecOutput, Exits, LogChunk, LogStream, Logs, Owner,
    Runtime, RuntimeError, Stats, TaskLaunch,
};

/// One call a [`FakeRuntime`] received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuntimeCall {
    /// `ensure_image(image)`.
    EnsureImage(String),
    /// `create` of an allocation.
    Create(String),
    /// `start(container)`.
    Start(String),
    /// `stop(container)`.
    Stop(String),
    /// `kill(container)`.
    Kill(String),
    /// `remove(container)`.
    Remove(String),
    /// `remove_volume(name)`.
    RemoveVolume(String),
}

#[derive(Debug, Default)]
struct Inner {
    containers: BTreeMap<String, (BTreeMap<String, String>, ContainerInfo)>,
    calls: Vec<RuntimeCall>,
    unavailable: Option<String>,
    missing_images: BTreeSet<String>,
    next_id: u64,
    /// Files tasks "wrote", by allocation and path.
    files: BTreeMap<(String, String), Vec<u8>>,
    /// The last launch created for each allocation.
    launches: BTreeMap<String, TaskLaunch>,
    /// Open [`Runtime::exits`] streams.
    exit_watchers: Vec<(Owner, ExitSender)>,
}

type ExitSender = tokio::sync::mpsc::UnboundedSender<Result<String, RuntimeError>>;

impl Inner {
    /// Moves container `id` to `state`, telling the exit watchers of its
    /// owner when it stops running.
    fn set_state(&mut self, id: &str, state: ContainerState) {
        let Some((labels, c)) = self.containers.get_mut(id) else {
            return;
        };
        let was_running = c.state == ContainerState::Running;
        c.state = state;
        if !was_running || c.state == ContainerState::Running {
            return;
        }
        let (cluster, node) = (labels.get(labels::CLUSTER), labels.get(labels::NODE));
        let alloc = c.alloc_id.clone();
        self.exit_watchers.retain(|(owner, tx)| {
            if cluster != Some(&owner.cluster_id) || node != Some(&owner.node_id) {
                return !tx.is_closed();
            }
            tx.send(Ok(alloc.clone())).is_ok()
        });
    }
}

/// A runtime whose containers are entries in a map.
///
/// Started containers run until a test calls [`FakeRuntime::exit`] or Orion stops them.
#[derive(Debug, Default)]
pub struct FakeRuntime {
    inner: Mutex<Inner>,
}

impl FakeRuntime {
    /// An empty runtime that answers every call.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call fail as an unreachable engine would (`None` heals it).
    pub fn set_unavailable(&self, why: Option<&str>) {
        self.inner.lock().unavailable = why.map(str::to_string);
    }

    /// Makes `ensure_image` fail for this image.
    pub fn remove_image(&self, image: &str) {
        self.inner.lock().missing_images.insert(image.to_string());
    }

    /// The container of an allocation exits with `code`, as if killed behind Orion's back.
    pub fn exit(&self, alloc_id: &str, code: i64) -> bool {
        let mut inner = self.inner.lock();
        let found = inner
            .containers
            .iter()
            .find(|(_, (_, c))| c.alloc_id == alloc_id)
            .map(|(id, _)| id.clone());
        match found {
            Some(id) => {
                inner.set_state(&id, ContainerState::Exited { code });
                true
            }
            None => false,
        }
    }

    /// The task of an allocation "writes" `path` (what [`Runtime::read_file`]
    /// then reads from its container).
    pub fn write_file(&self, alloc_id: &str, path: &str, content: &[u8]) {
        self.inner
            .lock()
            .files
            .insert((alloc_id.to_string(), path.to_string()), content.to_vec());
    }

    /// The last launch `create` was given for an allocation: what its
    /// container would have been made of (mounts, environment, secret
    /// values in `secret_env`).
    pub fn launch_of(&self, alloc_id: &str) -> Option<TaskLaunch> {
        self.inner.lock().launches.get(alloc_id).cloned()
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<RuntimeCall> {
        self.inner.lock().calls.clone()
    }

    /// Containers now present, running or not.
    pub fn containers(&self) -> Vec<ContainerInfo> {
        self.inner
            .lock()
            .containers
            .values()
            .map(|(_, c)| c.clone())
            .collect()
    }

    /// Running containers of one allocation.
    pub fn running(&self, alloc_id: &str) -> usize {
        self.containers()
            .iter()
            .filter(|c| c.alloc_id == alloc_id && c.state == ContainerState::Running)
            .count()
    }

    fn check(
        &self,
        call: Option<RuntimeCall>,
    ) -> Result<parking_lot::MutexGuard<'_, Inner>, RuntimeError> {
        let mut inner = self.inner.lock();
        if let Some(why) = &inner.unavailable {
            return Err(RuntimeError::Unavailable(why.clone()));
        }
        if let Some(call) = call {
            inner.calls.push(call);
        }
        Ok(inner)
    }

    fn with<R>(
        &self,
        call: Option<RuntimeCall>,
        id: &str,
        f: impl FnOnce(&mut ContainerInfo) -> R,
    ) -> Result<R, RuntimeError> {
        let mut inner = self.check(call)?;
        match inner.containers.get_mut(id) {
            Some((_, c)) => Ok(f(c)),
            None => Err(RuntimeError::NotFound(id.to_string())),
        }
    }
}

#[async_trait]
impl Runtime for FakeRuntime {
    fn name(&self) -> &str {
        "fake"
    }

    async fn ping(&self) -> Result<(), RuntimeError> {
        self.check(None).map(|_| ())
    }

    async fn version(&self) -> Result<String, RuntimeError> {
        self.check(None).map(|_| "fake".to_string())
    }

    async fn ensure_image(&self, image: &str) -> Result<(), RuntimeError> {
        let inner = self.check(Some(RuntimeCall::EnsureImage(image.to_string())))?;
        if inner.missing_images.contains(image) {
            return Err(RuntimeError::Image {
                image: image.to_string(),
                reason: "not found locally and no registry answers".into(),
            });
        }
        Ok(())
    }

    async fn create(&self, launch: &TaskLaunch) -> Result<ContainerInfo, RuntimeError> {
        let mut inner = self.check(Some(RuntimeCall::Create(launch.alloc_id.clone())))?;
        let name = launch.container_name();
        if inner
            .containers
            .values()
            .any(|(l, _)| l.get("name") == Some(&name))
        {
            return Err(RuntimeError::Engine {
                op: "create",
                source: format!("container name {name} is in use").into(),
            });
        }
        inner.next_id += 1;
        let id = format!("fake{:06}", inner.next_id);
        let info = ContainerInfo {
            id: id.clone(),
            alloc_id: launch.alloc_id.clone(),
            job: launch.job.clone(),
            state: ContainerState::Created,
            ports: launch.ports.clone(),
            error: None,
            health: None,
        };
        let mut l = launch.labels();
        l.insert("name".into(), name);
        inner.containers.insert(id, (l, info.clone()));
        inner
            .launches
            .insert(launch.alloc_id.clone(), launch.clone());
        Ok(info)
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.with(Some(RuntimeCall::Start(id.into())), id, |c| {
            c.state = ContainerState::Running
        })
    }

    async fn stop(&self, id: &str, _grace: Duration) -> Result<(), RuntimeError> {
        let mut inner = self.check(Some(RuntimeCall::Stop(id.into())))?;
        match inner.containers.get(id) {
            Some((_, c)) if c.state == ContainerState::Running => {
                inner.set_state(id, ContainerState::Exited { code: 143 });
                Ok(())
            }
            Some(_) => Ok(()),
            None => Err(RuntimeError::NotFound(id.to_string())),
        }
    }

    async fn kill(&self, id: &str) -> Result<(), RuntimeError> {
        let mut inner = self.check(Some(RuntimeCall::Kill(id.into())))?;
        if !inner.containers.contains_key(id) {
            return Err(RuntimeError::NotFound(id.to_string()));
        }
        inner.set_state(id, ContainerState::Exited { code: 137 });
        Ok(())
    }

    async fn exits(&self, owner: &Owner) -> Result<Exits, RuntimeError> {
        let mut inner = self.check(None)?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        inner.exit_watchers.push((owner.clone(), tx));
        Ok(Box::pin(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
        ))
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let mut inner = self.check(Some(RuntimeCall::Remove(id.into())))?;
        // Forced removal of a running container is an exit too.
        inner.set_state(id, ContainerState::Exited { code: 137 });
        inner
            .containers
            .remove(id)
            .map(|_| ())
            .ok_or_else(|| RuntimeError::NotFound(id.to_string()))
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        self.with(None, id, |c| c.clone())
    }

    async fn list(&self, owner: &Owner) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let inner = self.check(None)?;
        Ok(inner
            .containers
            .values()
            .filter(|(l, _)| {
                l.get(labels::CLUSTER) == Some(&owner.cluster_id)
                    && l.get(labels::NODE) == Some(&owner.node_id)
            })
            .map(|(_, c)| c.clone())
            .collect())
    }

    async fn logs(&self, id: &str, _follow: bool) -> Result<Logs, RuntimeError> {
        let line = self.with(None, id, |c| {
            format!("fake container {} of {}\n", c.id, c.alloc_id)
        })?;
        let chunk = LogChunk {
            stream: LogStream::Stdout,
            data: line.into(),
        };
        Ok(Box::pin(futures::stream::iter([Ok(chunk)])))
    }

    async fn stats(&self, id: &str) -> Result<Stats, RuntimeError> {
        self.with(None, id, |_| Stats::default())
    }

    async fn read_file(&self, id: &str, path: &str, limit: u64) -> Result<Vec<u8>, RuntimeError> {
        let alloc = self.with(None, id, |c| c.alloc_id.clone())?;
        let inner = self.inner.lock();
        let content = inner
            .files
            .get(&(alloc, path.to_string()))
            .ok_or_else(|| RuntimeError::NotFound(format!("{path} in {id}")))?;
        if content.len() as u64 > limit {
            return Err(RuntimeError::Engine {
                op: "reading a file",
                source: format!(
                    "{path} is {} bytes, over the limit of {limit}",
                    content.len()
                )
                .into(),
            });
        }
        Ok(content.clone())
    }

    async fn exec(&self, id: &str, cmd: &[String]) -> Result<ExecOutput, RuntimeError> {
        self.with(None, id, |_| ExecOutput {
            exit_code: 0,
            stdout: cmd.join(" "),
            stderr: String::new(),
            truncated: false,
        })
    }

    /// A `cat`: what is written to stdin comes back as stdout, and the command
    /// ends (exit code 0) when stdin is closed. The container must exist.
    async fn exec_attach(
        &self,
        id: &str,
        _cmd: &[String],
        _tty: bool,
    ) -> Result<crate::runtime::ExecSession, RuntimeError> {
        use futures::StreamExt;
        self.with(None, id, |_| ())?;
        let (input, output) = tokio::io::duplex(64 * 1024);
        let output = tokio_util_like::chunks(output)
            .map(|r| r.map(crate::runtime::ExecChunk::Stdout))
            .boxed();
        Ok(crate::runtime::ExecSession {
            id: format!("exec-{id}"),
            stdin: Box::pin(input),
            output,
        })
    }

    async fn exec_resize(&self, _exec: &str, _rows: u16, _cols: u16) -> Result<(), RuntimeError> {
        Ok(())
    }

    async fn exec_exit_code(&self, _exec: &str) -> Result<Option<i64>, RuntimeError> {
        Ok(Some(0))
    }

    /// Records the call; volumes hold nothing here, so every removal succeeds.
    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        let mut inner = self.inner.lock();
        if let Some(why) = &inner.unavailable {
            return Err(RuntimeError::Unavailable(why.clone()));
        }
        inner
            .calls
            .push(RuntimeCall::RemoveVolume(name.to_string()));
        Ok(())
    }
}

/// Reading an async reader as a stream of chunks.
mod tokio_util_like {
    use futures::Stream;
    use tokio::io::{AsyncRead, AsyncReadExt};

    use crate::runtime::RuntimeError;

    pub fn chunks<R: AsyncRead + Unpin + Send + 'static>(
        reader: R,
    ) -> impl Stream<Item = Result<Vec<u8>, RuntimeError>> + Send {
        futures::stream::unfold(reader, |mut r| async move {
            let mut buf = vec![0u8; 4096];
            match r.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(buf), r))
                }
                Err(e) => Some((
                    Err(RuntimeError::Engine {
                        op: "exec",
                        source: e.into(),
                    }),
                    r,
                )),
            }
        })
    }
}
