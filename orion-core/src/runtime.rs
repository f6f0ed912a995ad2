//! The `Runtime` seam: start, stop, inspect and list a node's task containers.
//!
//! Adapters: `DockerRuntime` (bollard) in `orion-runtime`; `FakeRuntime` in
//! [`crate::testing`]. Every container an adapter creates carries labels with the
//! cluster, node, job and allocation ids ([`labels`]), so that a restarted agent can
//! find and adopt its containers instead of starting duplicates.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::model::{AllocId, NodeId, PortBinding};
use crate::spec::TaskSpec;

/// Label keys every task container carries.
pub mod labels {
    /// The cluster's id.
    pub const CLUSTER: &str = "orion.cluster";
    /// The node that runs it.
    pub const NODE: &str = "orion.node";
    /// Its job's name.
    pub const JOB: &str = "orion.job";
    /// Its job's version.
    pub const VERSION: &str = "orion.version";
    /// Its allocation's id.
    pub const ALLOC: &str = "orion.alloc";
}

/// Everything a runtime needs to create one allocation's container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskLaunch {
    /// Owner: the cluster.
    pub cluster_id: String,
    /// Owner: the node.
    pub node_id: NodeId,
    /// The allocation.
    pub alloc_id: AllocId,
    /// Its job.
    pub job: String,
    /// Its job version.
    pub job_version: u64,
    /// What to run.
    pub task: TaskSpec,
    /// Host ports to publish.
    pub ports: Vec<PortBinding>,
    /// How locked down it runs (resolved from the job's kind and the task's
    /// `security`).
    pub security: crate::spec::Security,
    /// Environment variables whose values come from secrets
    /// (`env_from_secret`), set beside `task.env`. Their values print as
    /// `<redacted>` and are never serialized: they reach the engine's create
    /// call and nothing else.
    #[serde(skip)]
    pub secret_env: BTreeMap<String, crate::secret::Plaintext>,
}

impl TaskLaunch {
    /// The labels the container carries.
    pub fn labels(&self) -> BTreeMap<String, String> {
        [
            (labels::CLUSTER, self.cluster_id.clone()),
            (labels::NODE, self.node_id.clone()),
            (labels::JOB, self.job.clone()),
            (labels::VERSION, self.job_version.to_string()),
            (labels::ALLOC, self.alloc_id.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// A container name unique per cluster and allocation.
    pub fn container_name(&self) -> String {
        let cluster: String = self.cluster_id.chars().take(8).collect();
        format!("orion-{cluster}-{}", self.alloc_id)
    }
}

/// Which containers [`Runtime::list`] returns: those of one node of one cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The cluster's id.
    pub cluster_id: String,
    /// The node's id.
    pub node_id: NodeId,
}

/// A container's run state as the runtime reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum ContainerState {
    /// Created, never started.
    Created,
    /// Running.
    Running,
    /// Exited with a code.
    Exited {
        /// The exit code (137 after a kill).
        code: i64,
    },
    /// Anything else the engine reports (paused, restarting, dead), by name.
    Other {
        /// The engine's word for it.
        name: String,
    },
}

/// [`ContainerInfo::error`] of a container the kernel killed for going over
/// its memory limit.
pub const OOM_KILLED: &str = "OOMKilled";

/// What the runtime knows of one task container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerInfo {
    /// The runtime's id for it.
    pub id: String,
    /// The allocation it runs (from its labels).
    pub alloc_id: AllocId,
    /// Its job (from its labels).
    pub job: String,
    /// Its state.
    pub state: ContainerState,
    /// Its published ports, as bound.
    pub ports: Vec<PortBinding>,
    /// The engine's error, when it failed to start; [`OOM_KILLED`] when it
    /// was killed for going over its memory limit.
    pub error: Option<String>,
    /// What the engine's own health check (an image's `HEALTHCHECK`) says of
    /// it, when the image has one; the agent uses it for a task whose spec
    /// has no health checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::model::Health>,
}

/// Resource use of one container at one moment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Stats {
    /// Memory in use, in bytes.
    pub memory_bytes: u64,
    /// Memory limit, in bytes (0: none).
    pub memory_limit_bytes: u64,
    /// Total CPU time consumed, in nanoseconds.
    pub cpu_total_ns: u64,
    /// Processes running.
    pub pids: u64,
    /// Bytes received over the network since the task started.
    #[serde(default)]
    pub network_rx_bytes: u64,
    /// Bytes sent over the network since the task started.
    #[serde(default)]
    pub network_tx_bytes: u64,
}

/// The result of running a command in a container.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExecOutput {
    /// Its exit code.
    pub exit_code: i64,
    /// What it wrote to stdout.
    pub stdout: String,
    /// What it wrote to stderr.
    pub stderr: String,
    /// Whether either stream went past [`EXEC_OUTPUT_MAX`] and was cut there
    /// (the command still ran to its end; `alloc exec -i` streams it whole).
    #[serde(default)]
    pub truncated: bool,
}

/// The most of each stream (stdout, stderr) a collected exec keeps: 1 MiB.
/// Past it the output is read and dropped, so a command printing 50 MB costs
/// the node 2 MiB, not 50 (or the 300 MB a JSON answer of it took).
pub const EXEC_OUTPUT_MAX: usize = 1024 * 1024;

/// A command running in a container with its input and output attached
/// (`alloc exec -i -t`).
pub struct ExecSession {
    /// The runtime's id of the exec, for [`Runtime::exec_resize`] and
    /// [`Runtime::exec_exit_code`].
    pub id: String,
    /// The command's stdin; shutting it down (or dropping it) closes it.
    pub stdin: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    /// Its output as it is produced; ends when the command does.
    pub output: BoxStream<'static, Result<ExecChunk, RuntimeError>>,
}

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecSession").field("id", &self.id).finish()
    }
}

/// A piece of an attached command's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecChunk {
    /// From stdout (or the TTY, which merges both).
    Stdout(Vec<u8>),
    /// From stderr.
    Stderr(Vec<u8>),
}

/// Which stream a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A piece of a container's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogChunk {
    /// stdout or stderr.
    pub stream: LogStream,
    /// The bytes.
    pub data: bytes::Bytes,
}

/// Logs as a stream of chunks; ends when the container does (with `follow`) or at the end.
pub type Logs = BoxStream<'static, Result<LogChunk, RuntimeError>>;

/// The allocation ids of an owner's containers as they exit (see [`Runtime::exits`]).
pub type Exits = BoxStream<'static, Result<AllocId, RuntimeError>>;

/// Boxed cause of a runtime failure.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a runtime call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The engine does not answer; retry later, and report the node unhealthy.
    #[error("runtime unavailable: {0}")]
    Unavailable(String),
    /// The image is not present and could not be pulled.
    #[error("image {image:?} is not available: {reason}")]
    Image {
        /// The image reference.
        image: String,
        /// Why it could not be had.
        reason: String,
    },
    /// No such container.
    #[error("no container {0}")]
    NotFound(String),
    /// This runtime cannot do that.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// The engine refused or failed an operation.
    #[error("{op} failed: {source}")]
    Engine {
        /// The operation.
        op: &'static str,
        /// The engine's error.
        #[source]
        source: BoxError,
    },
}

impl RuntimeError {
    /// Whether retrying the same call later may succeed without anything else changing.
    pub fn is_retryable(&self) -> bool {
        matches!(self, RuntimeError::Unavailable(_))
    }
}

/// Runs task containers on this host.
///
/// # Correctness
///
/// - [`create`](Runtime::create) labels the container with [`TaskLaunch::labels`] and
///   names it [`TaskLaunch::container_name`]; creating a name that exists fails
///   rather than making a second container.
/// - [`list`](Runtime::list) returns every container with the owner's labels,
///   running or not, so nothing this node started is ever orphaned.
/// - `stop`, `kill` and `remove` on a container already gone return
///   [`RuntimeError::NotFound`], which callers treat as done.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// A short name for logs (`docker`).
    fn name(&self) -> &str;

    /// Whether the engine answers.
    async fn ping(&self) -> Result<(), RuntimeError>;

    /// The engine's version, for `/health`; [`RuntimeError::Unsupported`] by
    /// default.
    async fn version(&self) -> Result<String, RuntimeError> {
        Err(RuntimeError::Unsupported("version".into()))
    }

    /// What this node's operators should know about the runtime, shown in
    /// `/health` and `node list` (the process runtime: limits it cannot
    /// enforce here); none by default.
    fn warning(&self) -> Option<String> {
        None
    }

    /// Makes sure the image is present locally, pulling it when it is not.
    async fn ensure_image(&self, image: &str) -> Result<(), RuntimeError>;

    /// Creates (does not start) the allocation's container.
    async fn create(&self, launch: &TaskLaunch) -> Result<ContainerInfo, RuntimeError>;

    /// Starts a created or exited container.
    async fn start(&self, id: &str) -> Result<(), RuntimeError>;

    /// Asks the container to stop, killing it after `grace`.
    async fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError>;

    /// Kills the container at once.
    async fn kill(&self, id: &str) -> Result<(), RuntimeError>;

    /// Removes a stopped container (forcefully, if it still runs).
    async fn remove(&self, id: &str) -> Result<(), RuntimeError>;

    /// One container's current state.
    async fn inspect(&self, id: &str) -> Result<ContainerInfo, RuntimeError>;

    /// Every container the owner created, in any state.
    async fn list(&self, owner: &Owner) -> Result<Vec<ContainerInfo>, RuntimeError>;

    /// The allocation id of each of the owner's containers as it exits (ends,
    /// is stopped or killed, from inside or behind Orion's back), for as long
    /// as the stream is held, so that the agent notices an exit when it
    /// happens instead of on its next tick. An id may come more than once and
    /// an exit while no stream is held is not replayed: the agent still
    /// lists on its tick, this only makes it prompt. Runtimes without an event
    /// feed answer [`RuntimeError::Unsupported`] (the default).
    async fn exits(&self, owner: &Owner) -> Result<Exits, RuntimeError> {
        let _ = owner;
        Err(RuntimeError::Unsupported("exit events".into()))
    }

    /// The container's output; with `follow`, keeps streaming until it exits.
    async fn logs(&self, id: &str, follow: bool) -> Result<Logs, RuntimeError>;

    /// A sample of the container's resource use.
    async fn stats(&self, id: &str) -> Result<Stats, RuntimeError>;

    /// The contents of regular file `path` in container `id`, running or
    /// exited; [`RuntimeError::NotFound`] when there is no such file, an
    /// [`RuntimeError::Engine`] error when it is larger than `limit` bytes.
    async fn read_file(&self, id: &str, path: &str, limit: u64) -> Result<Vec<u8>, RuntimeError> {
        let _ = (id, path, limit);
        Err(RuntimeError::Unsupported(format!(
            "{} cannot read files out of a task",
            self.name()
        )))
    }

    /// Runs a command inside the running container and collects its output,
    /// the first [`EXEC_OUTPUT_MAX`] bytes of each stream (`truncated` says
    /// when there was more).
    async fn exec(&self, id: &str, cmd: &[String]) -> Result<ExecOutput, RuntimeError>;

    /// Starts `cmd` in the running container with stdin, stdout and stderr
    /// attached, on a TTY when `tty` (stdout and stderr then come merged).
    /// Runtimes without it answer [`RuntimeError::Unsupported`].
    async fn exec_attach(
        &self,
        id: &str,
        cmd: &[String],
        tty: bool,
    ) -> Result<ExecSession, RuntimeError> {
        let _ = (cmd, tty);
        Err(RuntimeError::Unsupported(format!(
            "the {} runtime cannot attach to {id}",
            self.name()
        )))
    }

    /// Resizes an attached exec's TTY.
    async fn exec_resize(&self, exec: &str, rows: u16, cols: u16) -> Result<(), RuntimeError> {
        let _ = (rows, cols);
        Err(RuntimeError::Unsupported(format!("resizing exec {exec}")))
    }

    /// An attached exec's exit code, once it has ended (`None` while it runs).
    async fn exec_exit_code(&self, exec: &str) -> Result<Option<i64>, RuntimeError> {
        Err(RuntimeError::Unsupported(format!(
            "exit code of exec {exec}"
        )))
    }

    /// Removes a named volume's data on this host (see [`volume_name`]); one
    /// already gone is done. Runtimes without volumes answer
    /// [`RuntimeError::Unsupported`].
    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        Err(RuntimeError::Unsupported(format!(
            "the {} runtime has no volumes (removing {name})",
            self.name()
        )))
    }
}

/// The runtime's name for a cluster volume on a node: `orion-<node>-<volume>`,
/// so nodes (or clusters) sharing one engine never share a volume by accident.
pub fn volume_name(node: &str, volume: &str) -> String {
    format!("orion-{node}-{volume}")
}
