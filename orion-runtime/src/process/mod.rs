//! [`ProcessRuntime`]: a task's `command` run as a plain child process group
//! of the agent, for hosts without Docker (Nomad's `raw_exec`).
//!
//! - Each task gets a directory `<data dir>/process/<id>/`: `work/` (its
//!   working directory), `stdout` and `stderr` (rotated at a size cap by copy
//!   and truncate, one old copy `.1` kept: the process keeps its descriptors,
//!   so it outlives the agent) and `record.json` (0600: what to run, its pid
//!   and the pid's start time).
//! - Environment: the spec's, its secrets, and for each named port
//!   `ORION_PORT_<NAME>` (the host port, which the process binds itself) and
//!   `ORION_ADDR_<NAME>` (`ip:port`), like Nomad's `NOMAD_PORT_<label>`.
//! - Limits through the node's cgroup hierarchy where the agent may write it:
//!   v1 (`memory/orion/<id>`, `cpu/orion/<id>` with a CFS quota) or v2
//!   (`orion/<id>` with `memory.max`, `cpu.max`); otherwise memory by
//!   `setrlimit(RLIMIT_AS)` and no CPU limit, which [`ProcessRuntime::limits`]
//!   and the runtime's version line (shown in `/health`) say.
//! - Stop: SIGTERM to the group, SIGKILL after the grace. An exit code `n`
//!   reports `n`, a signal `s` reports `128 + s`, as Docker does; a SIGKILL
//!   after the memory cgroup hit its limit reports [`OOM_KILLED`].
//! - Adoption: an agent that restarts reads the records and finds each
//!   running process again by its pid *and* its start time (field 22 of
//!   `/proc/<pid>/stat`), so a reused pid is never taken for the task. The
//!   exit code of a process that ends while no agent waits for it is not
//!   known: it reports -1 with that said.
//!
//! What does not apply: images (a task with an `image` is not for this
//! runtime; the scheduler keeps such tasks off process nodes), volumes,
//! network counters (0), `exec_attach`. A script task runs its interpreter
//! on the host with the script from the agent's scripts directory.

mod cgroup;
mod procfs;

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt as _, ExitStatusExt};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use orion_core::model::PortBinding;
use orion_core::runtime::{
    ContainerInfo, ContainerState, ExecOutput, Exits, LogChunk, LogStream, Logs, Owner, Runtime,
    RuntimeError, Stats, TaskLaunch, EXEC_OUTPUT_MAX, OOM_KILLED,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tracing::{debug, warn};

pub use cgroup::Limits;

/// Where a process runtime keeps its tasks, and how it caps their logs.
#[derive(Clone, Debug)]
pub struct ProcessConfig {
    /// The node's data dir; tasks live under `<dir>/process/`.
    pub data_dir: PathBuf,
    /// Each of a task's `stdout` and `stderr` is rotated past this size.
    pub log_max_bytes: u64,
    /// The cgroup hierarchy (`/sys/fs/cgroup`); none: do not use cgroups.
    pub cgroup_root: Option<PathBuf>,
}

impl ProcessConfig {
    /// Tasks under `data_dir`, logs capped at 10 MiB, the host's cgroups.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ProcessConfig {
            data_dir: data_dir.into(),
            log_max_bytes: 10 << 20,
            cgroup_root: Some("/sys/fs/cgroup".into()),
        }
    }
}

/// What a task's record keeps on disk.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    id: String,
    labels: BTreeMap<String, String>,
    /// What to run (the agent's launch, secrets included: the file is 0600,
    /// as an engine keeps them in a container's configuration).
    launch: TaskLaunchRecord,
    /// The running process, once started.
    pid: Option<i32>,
    /// Its start time (clock ticks after boot), to tell a reused pid.
    start_time: Option<u64>,
    /// The exit the runtime saw, if it saw one.
    exit: Option<i64>,
    /// Why it failed, when it did.
    error: Option<String>,
    started: bool,
    /// This runtime's own child, waited for: until the waiter records its
    /// exit, a dead pid means "exit about to be recorded", not "code unknown".
    #[serde(skip)]
    waited: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct TaskLaunchRecord {
    task: orion_core::TaskSpec,
    ports: Vec<PortBinding>,
    secret_env: BTreeMap<String, String>,
}

/// Runs tasks as processes on this host.
pub struct ProcessRuntime {
    root: PathBuf,
    log_max_bytes: u64,
    limits: Limits,
    /// Records by id, as on disk.
    tasks: Mutex<HashMap<String, Record>>,
    /// Allocation ids (with their owner labels) as their processes exit.
    exits: broadcast::Sender<(String, String, String)>,
    /// A handle to itself for the tasks it spawns.
    me: std::sync::Weak<ProcessRuntime>,
}

impl std::fmt::Debug for ProcessRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessRuntime")
            .field("root", &self.root)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn engine(op: &'static str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Engine {
        op,
        source: e.to_string().into(),
    }
}

impl ProcessRuntime {
    /// A runtime keeping its tasks under `config.data_dir`; reads the
    /// records of tasks an earlier agent started (adoption).
    pub fn new(config: ProcessConfig) -> Result<Arc<Self>, RuntimeError> {
        let root = config.data_dir.join("process");
        std::fs::create_dir_all(&root).map_err(|e| {
            engine(
                "creating the task directory",
                format!("{}: {e}", root.display()),
            )
        })?;
        let limits = Limits::detect(config.cgroup_root.as_deref());
        if let Some(w) = limits.warning() {
            warn!(warning = %w, "process runtime: limits");
        }
        let mut tasks = HashMap::new();
        for entry in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            let file = entry.path().join("record.json");
            match std::fs::read(&file).map(|b| serde_json::from_slice::<Record>(&b)) {
                Ok(Ok(r)) => {
                    tasks.insert(r.id.clone(), r);
                }
                Ok(Err(e)) => {
                    warn!(file = %file.display(), error = %e, "process runtime: unreadable record")
                }
                Err(_) => {}
            }
        }
        let (exits, _) = broadcast::channel(1024);
        let rt = Arc::new_cyclic(|me| ProcessRuntime {
            root,
            log_max_bytes: config.log_max_bytes,
            limits,
            tasks: Mutex::new(tasks),
            exits,
            me: me.clone(),
        });
        // Adopted processes: watched by polling, as they are not our children.
        let running: Vec<(String, i32, Option<u64>)> = rt
            .tasks
            .lock()
            .values()
            .filter(|r| r.exit.is_none())
            .filter_map(|r| Some((r.id.clone(), r.pid?, r.start_time)))
            .collect();
        for (id, pid, start) in running {
            if procfs::alive(pid, start) {
                debug!(%id, pid, "process runtime: adopted a running task");
                rt.clone().watch_adopted(id, pid, start);
            } else {
                rt.finish(
                    &id,
                    -1,
                    Some("exited while no agent watched it: its exit code is unknown".into()),
                );
            }
        }
        Ok(rt)
    }

    /// Waits up to `limit` for task `id`'s exit to be recorded (by the waiter
    /// of a child, or the watcher of an adopted process); whether it was.
    async fn await_exit(&self, id: &str, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let done = self.tasks.lock().get(id).is_none_or(|r| r.exit.is_some());
            if done {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// How limits are enforced here.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    fn save(&self, r: &Record) -> Result<(), RuntimeError> {
        let path = self.dir(&r.id).join("record.json");
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(r).map_err(|e| engine("saving a task record", e))?;
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&bytes))
            .and_then(|()| std::fs::rename(&tmp, &path));
        written.map_err(|e| engine("saving a task record", format!("{}: {e}", path.display())))
    }

    fn get(&self, id: &str) -> Result<Record, RuntimeError> {
        self.tasks
            .lock()
            .get(id)
            .cloned()
            .ok_or_else(|| RuntimeError::NotFound(id.to_string()))
    }

    /// Records an exit and tells the exit feed.
    fn finish(&self, id: &str, code: i64, error: Option<String>) {
        let rec = {
            let mut tasks = self.tasks.lock();
            let Some(r) = tasks.get_mut(id) else { return };
            if r.exit.is_some() {
                return;
            }
            r.exit = Some(code);
            if error.is_some() {
                r.error = error;
            }
            r.clone()
        };
        if let Err(e) = self.save(&rec) {
            warn!(%id, error = %e, "process runtime: could not save an exit");
        }
        let label = |k: &str| rec.labels.get(k).cloned().unwrap_or_default();
        let _ = self.exits.send((
            label(orion_core::runtime::labels::CLUSTER),
            label(orion_core::runtime::labels::NODE),
            label(orion_core::runtime::labels::ALLOC),
        ));
    }

    fn watch_adopted(self: Arc<Self>, id: String, pid: i32, start: Option<u64>) {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if !self.tasks.lock().contains_key(&id) {
                    return;
                }
                self.rotate(&id);
                if !procfs::alive(pid, start) {
                    let oom = self.limits.oom_killed(&id);
                    self.finish(
                        &id,
                        if oom { 137 } else { -1 },
                        Some(if oom {
                            OOM_KILLED.to_string()
                        } else {
                            "exited while the agent was not its parent: its exit code is unknown"
                                .into()
                        }),
                    );
                    return;
                }
            }
        });
    }

    /// Copies a log past the cap to `.1` and truncates it (the process
    /// writes with O_APPEND, so it carries on at the new end).
    fn rotate(&self, id: &str) {
        for name in ["stdout", "stderr"] {
            let path = self.dir(id).join(name);
            let big = std::fs::metadata(&path).is_ok_and(|m| m.len() > self.log_max_bytes);
            if big {
                let _ = std::fs::copy(&path, path.with_extension("1"))
                    .and_then(|_| std::fs::OpenOptions::new().write(true).open(&path))
                    .and_then(|f| f.set_len(0));
            }
        }
    }

    fn info(&self, r: &Record) -> ContainerInfo {
        let state = match (r.started, r.exit, r.pid) {
            (_, Some(code), _) => ContainerState::Exited { code },
            (true, None, Some(pid)) if r.waited || procfs::alive(pid, r.start_time) => {
                ContainerState::Running
            }
            (true, None, _) => ContainerState::Exited { code: -1 },
            (false, None, _) => ContainerState::Created,
        };
        ContainerInfo {
            id: r.id.clone(),
            alloc_id: r
                .labels
                .get(orion_core::runtime::labels::ALLOC)
                .cloned()
                .unwrap_or_default(),
            job: r
                .labels
                .get(orion_core::runtime::labels::JOB)
                .cloned()
                .unwrap_or_default(),
            state,
            ports: r.launch.ports.clone(),
            error: r.error.clone(),
            health: None,
        }
    }

    /// The environment of a task: the spec's, its secrets, and the ports'.
    fn env(l: &TaskLaunchRecord) -> BTreeMap<String, String> {
        let mut env = l.task.env.clone();
        env.extend(l.secret_env.clone());
        for p in &l.ports {
            let name = p.name.to_ascii_uppercase().replace('-', "_");
            let ip = match p.host_ip.as_str() {
                "" | "0.0.0.0" => "127.0.0.1",
                ip => ip,
            };
            env.insert(format!("ORION_PORT_{name}"), p.host_port.to_string());
            env.insert(
                format!("ORION_ADDR_{name}"),
                format!("{ip}:{}", p.host_port),
            );
        }
        env
    }

    /// The argv: command then args, with any volume target in them (a script
    /// the agent mounts at `/orion/script`) replaced by its host path.
    fn argv(task: &orion_core::TaskSpec) -> Vec<String> {
        let mounts: HashMap<&str, &str> = task
            .volumes
            .iter()
            .filter_map(|v| Some((v.target.as_str(), v.host_path.as_deref()?)))
            .collect();
        task.command
            .iter()
            .chain(task.args.iter())
            .map(|a| {
                mounts
                    .get(a.as_str())
                    .map_or_else(|| a.clone(), |h| h.to_string())
            })
            .collect()
    }

    fn command(&self, r: &Record, argv: &[String]) -> Result<std::process::Command, RuntimeError> {
        let (prog, rest) = argv
            .split_first()
            .ok_or_else(|| engine("starting a process", "the task has no command"))?;
        let mut cmd = std::process::Command::new(prog);
        cmd.args(rest)
            .current_dir(self.dir(&r.id).join("work"))
            .env_clear()
            .env(
                "PATH",
                std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
            )
            .env("HOME", self.dir(&r.id).join("work"))
            .envs(Self::env(&r.launch))
            .stdin(std::process::Stdio::null());
        Ok(cmd)
    }
}

#[async_trait]
impl Runtime for ProcessRuntime {
    fn name(&self) -> &str {
        "process"
    }

    async fn ping(&self) -> Result<(), RuntimeError> {
        Ok(())
    }

    fn warning(&self) -> Option<String> {
        self.limits.warning().map(|w| format!("task limits {w}"))
    }

    async fn version(&self) -> Result<String, RuntimeError> {
        Ok(format!(
            "process runtime; limits: {}",
            self.limits.describe()
        ))
    }

    async fn ensure_image(&self, image: &str) -> Result<(), RuntimeError> {
        if image.is_empty() {
            return Ok(());
        }
        Err(RuntimeError::Image {
            image: image.to_string(),
            reason: "the process runtime runs commands, not images".into(),
        })
    }

    async fn create(&self, launch: &TaskLaunch) -> Result<ContainerInfo, RuntimeError> {
        let id = launch.container_name();
        if launch.task.command.is_empty() {
            return Err(engine(
                "creating a process task",
                "the task has no command (the process runtime runs a command, not an image)",
            ));
        }
        let dir = self.dir(&id);
        let record = {
            let mut tasks = self.tasks.lock();
            if tasks.contains_key(&id) || dir.exists() {
                return Err(engine(
                    "creating a process task",
                    format!("a task named {id} exists already"),
                ));
            }
            let r = Record {
                id: id.clone(),
                labels: launch.labels(),
                launch: TaskLaunchRecord {
                    task: launch.task.clone(),
                    ports: launch.ports.clone(),
                    secret_env: launch
                        .secret_env
                        .iter()
                        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v.expose()).into_owned()))
                        .collect(),
                },
                pid: None,
                start_time: None,
                exit: None,
                error: None,
                started: false,
                waited: false,
            };
            tasks.insert(id.clone(), r.clone());
            r
        };
        let made = std::fs::create_dir_all(dir.join("work"));
        if let Err(e) = made {
            self.tasks.lock().remove(&id);
            return Err(engine(
                "creating a process task",
                format!("{}: {e}", dir.display()),
            ));
        }
        self.save(&record)?;
        Ok(self.info(&record))
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let mut r = self.get(id)?;
        if r.pid.is_some_and(|p| procfs::alive(p, r.start_time)) && r.exit.is_none() {
            return Ok(());
        }
        let argv = Self::argv(&r.launch.task);
        if argv.is_empty() {
            return Err(engine("starting a process", "the task has no command"));
        }
        let limits = self.limits.prepare(id, &r.launch.task.resources)?;
        let mut wrapped = vec![
            "/bin/sh".to_string(),
            "-c".into(),
            limits.script(),
            "orion-task".into(),
        ];
        wrapped.extend(argv.iter().cloned());
        let mut cmd = self.command(&r, &wrapped)?;
        let open = |name: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir(id).join(name))
                .map_err(|e| engine("opening a task's log", e))
        };
        cmd.stdout(open("stdout")?).stderr(open("stderr")?);
        cmd.process_group(0);
        let child = tokio::process::Command::from(cmd)
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| engine("starting a process", format!("{}: {e}", argv[0])))?;
        let pid = child.id().map(|p| p as i32);
        r.pid = pid;
        r.start_time = pid.and_then(procfs::start_time);
        r.exit = None;
        r.error = None;
        r.started = true;
        r.waited = true;
        self.tasks.lock().insert(id.to_string(), r.clone());
        self.save(&r)?;
        // Our child: waited for, so its exit code is known.
        let me = self.me.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            let mut child = child;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let status = loop {
                tokio::select! {
                    s = child.wait() => break s,
                    _ = tick.tick() => { if let Some(me) = me.upgrade() { me.rotate(&id); } }
                }
            };
            let Some(me) = me.upgrade() else { return };
            let (code, error) = match status {
                Ok(s) => match (s.code(), s.signal()) {
                    (Some(c), _) => (i64::from(c), None),
                    (None, Some(sig)) => {
                        let oom = sig == Signal::SIGKILL as i32 && me.limits.oom_killed(&id);
                        (128 + i64::from(sig), oom.then(|| OOM_KILLED.to_string()))
                    }
                    _ => (-1, None),
                },
                Err(e) => (-1, Some(format!("waiting for the process: {e}"))),
            };
            me.finish(&id, code, error);
        });
        Ok(())
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let r = self.get(id)?;
        let Some(pid) = r
            .pid
            .filter(|p| r.exit.is_none() && procfs::alive(*p, r.start_time))
        else {
            return Ok(());
        };
        let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
        if self.await_exit(id, grace).await {
            return Ok(());
        }
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        self.await_exit(id, Duration::from_secs(5)).await;
        Ok(())
    }

    async fn kill(&self, id: &str) -> Result<(), RuntimeError> {
        let r = self.get(id)?;
        if let Some(pid) = r
            .pid
            .filter(|p| r.exit.is_none() && procfs::alive(*p, r.start_time))
        {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            self.await_exit(id, Duration::from_secs(5)).await;
        }
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let r = self.get(id)?;
        if let Some(pid) = r.pid.filter(|p| procfs::alive(*p, r.start_time)) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            for _ in 0..40 {
                if !procfs::alive(pid, r.start_time) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        self.tasks.lock().remove(id);
        let _ = std::fs::remove_dir_all(self.dir(id));
        self.limits.remove(id);
        Ok(())
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        Ok(self.info(&self.get(id)?))
    }

    async fn list(&self, owner: &Owner) -> Result<Vec<ContainerInfo>, RuntimeError> {
        use orion_core::runtime::labels::{CLUSTER, NODE};
        let tasks: Vec<Record> = self.tasks.lock().values().cloned().collect();
        Ok(tasks
            .iter()
            .filter(|r| {
                r.labels.get(CLUSTER) == Some(&owner.cluster_id)
                    && r.labels.get(NODE) == Some(&owner.node_id)
            })
            .map(|r| self.info(r))
            .collect())
    }

    async fn exits(&self, owner: &Owner) -> Result<Exits, RuntimeError> {
        let owner = owner.clone();
        let rx = tokio_stream::wrappers::BroadcastStream::new(self.exits.subscribe());
        Ok(rx
            .filter_map(move |e| {
                let owner = owner.clone();
                async move {
                    match e {
                        Ok((c, n, alloc)) if c == owner.cluster_id && n == owner.node_id => {
                            Some(Ok(alloc))
                        }
                        _ => None,
                    }
                }
            })
            .boxed())
    }

    async fn logs(&self, id: &str, follow: bool) -> Result<Logs, RuntimeError> {
        self.get(id)?;
        let dir = self.dir(id);
        let me = self.me.clone();
        let id = id.to_string();
        let stream = async_stream(dir, follow, move || {
            me.upgrade()
                .and_then(|m| m.tasks.lock().get(&id).map(|r| r.exit.is_some()))
                .unwrap_or(true)
        });
        Ok(stream)
    }

    async fn stats(&self, id: &str) -> Result<Stats, RuntimeError> {
        let r = self.get(id)?;
        let limit = r.launch.task.resources.memory_mb * 1024 * 1024;
        let Some(pid) = r
            .pid
            .filter(|p| r.exit.is_none() && procfs::alive(*p, r.start_time))
        else {
            return Ok(Stats {
                memory_limit_bytes: limit,
                ..Stats::default()
            });
        };
        let g = procfs::group(pid);
        Ok(Stats {
            memory_bytes: self
                .limits
                .memory_usage(id)
                .filter(|b| *b > 0)
                .unwrap_or(g.rss_bytes),
            memory_limit_bytes: limit,
            cpu_total_ns: g.cpu_ns,
            pids: g.pids,
            network_rx_bytes: 0,
            network_tx_bytes: 0,
        })
    }

    async fn read_file(&self, id: &str, path: &str, limit: u64) -> Result<Vec<u8>, RuntimeError> {
        self.get(id)?;
        let file = self.dir(id).join("work").join(path.trim_start_matches('/'));
        let meta = std::fs::metadata(&file)
            .map_err(|_| RuntimeError::NotFound(format!("{path} in {id}")))?;
        if !meta.is_file() {
            return Err(RuntimeError::NotFound(format!("{path} in {id}")));
        }
        if meta.len() > limit {
            return Err(engine(
                "reading a file",
                format!("{path} is {} bytes, over the limit of {limit}", meta.len()),
            ));
        }
        std::fs::read(&file).map_err(|e| engine("reading a file", e))
    }

    async fn exec(&self, id: &str, cmd: &[String]) -> Result<ExecOutput, RuntimeError> {
        let r = self.get(id)?;
        if !r
            .pid
            .is_some_and(|p| r.exit.is_none() && procfs::alive(p, r.start_time))
        {
            return Err(engine("exec", format!("task {id} is not running")));
        }
        let mut c = self.command(&r, cmd)?;
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let out = tokio::process::Command::from(c)
            .output()
            .await
            .map_err(|e| {
                engine(
                    "exec",
                    format!("{}: {e}", cmd.first().map_or("", String::as_str)),
                )
            })?;
        let cut =
            |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(EXEC_OUTPUT_MAX)]).into_owned();
        Ok(ExecOutput {
            exit_code: out.status.code().map_or_else(
                || 128 + i64::from(out.status.signal().unwrap_or(0)),
                i64::from,
            ),
            stdout: cut(&out.stdout),
            stderr: cut(&out.stderr),
            truncated: out.stdout.len() > EXEC_OUTPUT_MAX || out.stderr.len() > EXEC_OUTPUT_MAX,
        })
    }
}

/// A task's logs: stdout's (rotated copy first), then stderr's; with
/// `follow`, new output of either as it is written, until `ended` and both
/// are read to their ends.
fn async_stream(dir: PathBuf, follow: bool, ended: impl Fn() -> bool + Send + 'static) -> Logs {
    let stream = futures::stream::unfold(
        (dir, [0u64, 0u64], false, ended, false),
        move |(dir, mut offsets, mut first_done, ended, finished)| async move {
            if finished {
                return None;
            }
            loop {
                if !first_done {
                    first_done = true;
                    let mut chunks = Vec::new();
                    for (i, (name, stream)) in
                        [("stdout", LogStream::Stdout), ("stderr", LogStream::Stderr)]
                            .into_iter()
                            .enumerate()
                    {
                        let old =
                            std::fs::read(dir.join(name).with_extension("1")).unwrap_or_default();
                        let now = std::fs::read(dir.join(name)).unwrap_or_default();
                        offsets[i] = now.len() as u64;
                        let mut data = old;
                        data.extend(now);
                        if !data.is_empty() {
                            chunks.push(Ok(LogChunk {
                                stream,
                                data: data.into(),
                            }));
                        }
                    }
                    let done = !follow;
                    return Some((
                        futures::stream::iter(chunks),
                        (dir, offsets, first_done, ended, done),
                    ));
                }
                let over = ended();
                let mut chunks = Vec::new();
                for (i, (name, stream)) in
                    [("stdout", LogStream::Stdout), ("stderr", LogStream::Stderr)]
                        .into_iter()
                        .enumerate()
                {
                    let now = std::fs::read(dir.join(name)).unwrap_or_default();
                    let len = now.len() as u64;
                    if len < offsets[i] {
                        // Rotated: carry on from its start.
                        offsets[i] = 0;
                    }
                    if len > offsets[i] {
                        chunks.push(Ok(LogChunk {
                            stream,
                            data: now[offsets[i] as usize..].to_vec().into(),
                        }));
                        offsets[i] = len;
                    }
                }
                if !chunks.is_empty() || over {
                    return Some((
                        futures::stream::iter(chunks),
                        (dir, offsets, first_done, ended, over),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        },
    )
    .flatten();
    stream.boxed()
}

/// The path helper tests use.
#[doc(hidden)]
pub fn task_dir(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join("process").join(id)
}
