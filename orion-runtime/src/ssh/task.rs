//! The tasks an `SshRuntime` made, in memory: their launches, remote
//! directories and states; the runner that carries one run's channel, writing
//! its output to local files; and the log reader over those files.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use orion_core::runtime::{ContainerInfo, LogChunk, LogStream, Logs, Owner};
use orion_core::{ContainerState, RuntimeError, TaskLaunch};
use russh::client::Msg;
use russh::{Channel, ChannelMsg};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::{broadcast, watch};
use tracing::{debug, warn};

use super::pool::{lock, Lease};
use super::remote::{signal_number, DROPPED_CODE, PID_MARKER};

/// What a run has got to, watched by `start`, `stop` and log followers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    /// The remote pid, once announced.
    pub pid: Option<u32>,
    /// Whether the run has ended (its state is recorded by then).
    pub ended: bool,
    /// Bumped whenever output was written.
    pub output: u64,
}

/// One task.
pub(crate) struct Task {
    /// What it runs (with its secret environment, kept only here).
    pub launch: TaskLaunch,
    /// Its remote temporary directory; `None` while `create` makes it.
    pub dir: Option<String>,
    /// Its state.
    pub state: ContainerState,
    /// Why it ended badly, when it did.
    pub error: Option<String>,
    /// Which run is current (a restart starts another).
    pub run_id: u64,
    /// The current run's progress and runner, once started.
    pub run: Option<(watch::Receiver<Progress>, tokio::task::JoinHandle<()>)>,
    /// A remote pid from before a restart (see `record`), killed before a new
    /// run starts and on remove.
    pub orphan: Option<u32>,
}

impl Task {
    /// What `inspect` says of it.
    pub(crate) fn info(&self, id: &str) -> ContainerInfo {
        ContainerInfo {
            id: id.to_string(),
            alloc_id: self.launch.alloc_id.clone(),
            job: self.launch.job.clone(),
            state: self.state.clone(),
            ports: self.launch.ports.clone(),
            error: self.error.clone(),
            health: None,
        }
    }
}

/// An exit, for [`Runtime::exits`](orion_core::Runtime::exits) feeds.
#[derive(Clone, Debug)]
pub(crate) struct Exit {
    pub cluster_id: String,
    pub node_id: String,
    pub alloc_id: String,
}

/// Every task, by id.
pub(crate) struct Table {
    pub tasks: Mutex<std::collections::HashMap<String, Task>>,
    pub exits: broadcast::Sender<Exit>,
    /// `<data_dir>`: each task's output under `<alloc>/stdout|stderr`.
    pub data_dir: PathBuf,
    /// `user@host:port`, for messages.
    pub target: String,
}

impl Table {
    /// A table holding the tasks recorded under `data_dir` (see `record`).
    pub(crate) fn new(data_dir: PathBuf, target: String) -> Table {
        let adopted = super::record::load(&data_dir);
        Table {
            tasks: Mutex::new(adopted.into_iter().collect()),
            exits: broadcast::channel(256).0,
            data_dir,
            target,
        }
    }

    /// Runs `f` on task `id`, or answers NotFound.
    pub(crate) fn with<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut Task) -> T,
    ) -> Result<T, RuntimeError> {
        let mut tasks = lock(&self.tasks);
        let task = tasks
            .get_mut(id)
            .ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        Ok(f(task))
    }

    /// The owner's tasks.
    pub(crate) fn list(&self, owner: &Owner) -> Vec<ContainerInfo> {
        let mut listed: Vec<ContainerInfo> = lock(&self.tasks)
            .iter()
            .filter(|(_, t)| {
                t.launch.cluster_id == owner.cluster_id && t.launch.node_id == owner.node_id
            })
            .map(|(id, t)| t.info(id))
            .collect();
        listed.sort_by(|a, b| a.id.cmp(&b.id));
        listed
    }

    /// Saves task `id`'s record (best effort: a task whose record cannot be
    /// written runs all the same, it just will not be adopted).
    pub(crate) fn save(&self, id: &str, pid: Option<u32>) {
        let record = self.with(id, |t| {
            t.dir.clone().map(|dir| super::record::Record {
                id: id.to_string(),
                launch: t.launch.clone(),
                dir,
                pid,
            })
        });
        let Ok(Some(record)) = record else { return };
        let dir = self.log_dir(&record.launch.alloc_id);
        if let Err(e) = super::record::save(&dir, &record) {
            warn!(task = %id, error = %e, "cannot record an ssh task for adoption");
        }
    }

    /// The local directory of an allocation's output.
    pub(crate) fn log_dir(&self, alloc: &str) -> PathBuf {
        self.data_dir.join(alloc)
    }

    /// Records the end of run `run_id` of `id` (unless a newer run or a
    /// removal came first), with the pid that may still run when it ended
    /// badly, and announces it.
    fn ended(&self, id: &str, run_id: u64, code: i64, error: Option<String>, orphan: Option<u32>) {
        let exit = {
            let mut tasks = lock(&self.tasks);
            let Some(task) = tasks.get_mut(id).filter(|t| t.run_id == run_id) else {
                return;
            };
            task.state = ContainerState::Exited { code };
            task.error = error;
            task.orphan = orphan;
            Exit {
                cluster_id: task.launch.cluster_id.clone(),
                node_id: task.launch.node_id.clone(),
                alloc_id: task.launch.alloc_id.clone(),
            }
        };
        let _ = self.exits.send(exit);
    }
}

/// Where one run's output goes.
struct Sinks {
    stdout: tokio::fs::File,
    stderr: tokio::fs::File,
    /// Stdout held back until the pid line is complete.
    head: Option<Vec<u8>>,
}

impl Sinks {
    async fn open(dir: &Path) -> std::io::Result<Sinks> {
        tokio::fs::create_dir_all(dir).await?;
        let mut options = tokio::fs::OpenOptions::new();
        options.create(true).append(true);
        let open = |name: &str| options.open(dir.join(name));
        Ok(Sinks {
            stdout: open("stdout").await?,
            stderr: open("stderr").await?,
            head: Some(Vec::new()),
        })
    }

    /// Writes stdout, taking the pid line off its front first.
    async fn stdout(&mut self, data: &[u8]) -> std::io::Result<Option<u32>> {
        let Some(head) = self.head.as_mut() else {
            write(&mut self.stdout, data).await?;
            return Ok(None);
        };
        head.extend_from_slice(data);
        let Some(nl) = head.iter().position(|&b| b == b'\n') else {
            return Ok(None);
        };
        let head = self.head.take().unwrap_or_default();
        let line = String::from_utf8_lossy(&head[..nl]);
        let pid = line
            .strip_prefix(PID_MARKER)
            .and_then(|p| p.trim().parse().ok());
        let rest = if pid.is_some() {
            &head[nl + 1..]
        } else {
            &head[..]
        };
        write(&mut self.stdout, rest).await?;
        Ok(pid)
    }

    /// Writes what is held back (a run that ended before its pid line).
    async fn finish(&mut self) -> std::io::Result<()> {
        if let Some(head) = self.head.take() {
            write(&mut self.stdout, &head).await?;
        }
        Ok(())
    }
}

async fn write(file: &mut tokio::fs::File, data: &[u8]) -> std::io::Result<()> {
    file.write_all(data).await?;
    file.flush().await
}

/// What one run's channel carried to its end.
struct Outcome {
    code: Option<i64>,
    io_error: Option<String>,
}

/// Carries run `run_id` of task `id`: output to the log files, the pid and
/// the output count to `progress`, and at the end its exit code, or the
/// dropped connection, to the table.
pub(crate) async fn runner(
    table: Arc<Table>,
    id: String,
    run_id: u64,
    alloc: String,
    mut ch: Channel<Msg>,
    lease: Lease,
    progress: watch::Sender<Progress>,
) {
    let outcome = match Sinks::open(&table.log_dir(&alloc)).await {
        Ok(mut sinks) => pump(&mut ch, &mut sinks, &progress).await,
        Err(e) => Outcome {
            code: None,
            io_error: Some(format!("cannot write the task's logs: {e}")),
        },
    };
    let dropped = lease.is_closed();
    drop(lease);
    let (code, error) = match outcome {
        Outcome {
            io_error: Some(e), ..
        } => (DROPPED_CODE, Some(e)),
        Outcome { code: Some(c), .. } => (c, None),
        Outcome { code: None, .. } if dropped => (
            DROPPED_CODE,
            Some(format!(
                "the SSH connection to {} dropped while the task ran",
                table.target
            )),
        ),
        Outcome { code: None, .. } => (
            DROPPED_CODE,
            Some(format!(
                "the SSH channel to {} closed without an exit status",
                table.target
            )),
        ),
    };
    if let Some(e) = &error {
        warn!(task = %id, error = %e, "ssh task ended badly");
    } else {
        debug!(task = %id, code, "ssh task exited");
    }
    // A run that ended without its status may have left its process behind.
    let orphan = error.as_ref().and(progress.borrow().pid);
    table.ended(&id, run_id, code, error, orphan);
    progress.send_modify(|p| {
        p.ended = true;
        p.output += 1;
    });
}

/// Reads the channel to its end.
async fn pump(
    ch: &mut Channel<Msg>,
    sinks: &mut Sinks,
    progress: &watch::Sender<Progress>,
) -> Outcome {
    let mut code = None;
    while let Some(msg) = ch.wait().await {
        let written = match msg {
            ChannelMsg::Data { data } => match sinks.stdout(&data).await {
                Ok(Some(pid)) => {
                    progress.send_modify(|p| p.pid = Some(pid));
                    Ok(())
                }
                other => other.map(drop),
            },
            ChannelMsg::ExtendedData { data, ext: 1 } => write(&mut sinks.stderr, &data).await,
            ChannelMsg::ExitStatus { exit_status } => {
                code = Some(i64::from(exit_status));
                continue;
            }
            ChannelMsg::ExitSignal { signal_name, .. } => {
                code = Some(128 + signal_number(&signal_name));
                continue;
            }
            ChannelMsg::Close => break,
            _ => continue,
        };
        if let Err(e) = written {
            return Outcome {
                code,
                io_error: Some(format!("cannot write the task's logs: {e}")),
            };
        }
        progress.send_modify(|p| p.output += 1);
    }
    let io_error = sinks
        .finish()
        .await
        .err()
        .map(|e| format!("cannot write the task's logs: {e}"));
    Outcome { code, io_error }
}

/// Waits until the run has ended, for at most `within`; whether it has.
pub(crate) async fn ended_within(rx: &mut watch::Receiver<Progress>, within: Duration) -> bool {
    matches!(
        tokio::time::timeout(within, rx.wait_for(|p| p.ended)).await,
        Ok(Ok(_))
    ) || rx.borrow().ended
}

/// The output in `dir`: what is there, and with a run to follow, what comes
/// until the run ends.
pub(crate) fn logs(dir: PathBuf, follow: Option<watch::Receiver<Progress>>) -> Logs {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        if let Err(e) = tail(dir, follow, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) }).boxed()
}

type ChunkSender = tokio::sync::mpsc::Sender<Result<LogChunk, RuntimeError>>;

async fn tail(
    dir: PathBuf,
    mut follow: Option<watch::Receiver<Progress>>,
    tx: &ChunkSender,
) -> Result<(), RuntimeError> {
    let mut offsets = [0u64; 2];
    let streams = [
        (LogStream::Stdout, dir.join("stdout")),
        (LogStream::Stderr, dir.join("stderr")),
    ];
    loop {
        let done = follow.as_ref().is_none_or(|rx| rx.borrow().ended);
        for ((stream, path), offset) in streams.iter().zip(offsets.iter_mut()) {
            let data = read_from(path, offset).await?;
            if !data.is_empty() {
                let chunk = LogChunk {
                    stream: *stream,
                    data: Bytes::from(data),
                };
                if tx.send(Ok(chunk)).await.is_err() {
                    return Ok(());
                }
            }
        }
        if done {
            return Ok(());
        }
        if let Some(rx) = follow.as_mut() {
            if let Ok(Err(_)) = tokio::time::timeout(Duration::from_secs(1), rx.changed()).await {
                follow = None;
            }
        }
    }
}

/// The bytes of `path` past `offset`, moving it on; none when there is no file.
async fn read_from(path: &Path, offset: &mut u64) -> Result<Vec<u8>, RuntimeError> {
    let failed = |e: std::io::Error| RuntimeError::Engine {
        op: "logs",
        source: format!("{}: {e}", path.display()).into(),
    };
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(failed(e)),
    };
    file.seek(std::io::SeekFrom::Start(*offset))
        .await
        .map_err(failed)?;
    let mut data = Vec::new();
    file.read_to_end(&mut data).await.map_err(failed)?;
    *offset += data.len() as u64;
    Ok(data)
}
