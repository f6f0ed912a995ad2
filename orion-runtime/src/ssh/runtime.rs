//! `impl Runtime for SshRuntime`: each call in terms of the pool, the remote
//! commands and the task table.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use orion_core::runtime::{ExecOutput, Exits, Logs, Owner, Stats};
use orion_core::{ContainerInfo, ContainerState, Runtime, RuntimeError, TaskLaunch};
use tokio::sync::watch;
use tracing::debug;

use super::pool::lock;
use super::remote;
use super::task::{self, ended_within, Progress, Task};
use super::SshRuntime;

/// How long `start` waits for the remote process to announce its pid.
const START_WAIT: Duration = Duration::from_secs(10);

/// How long a SIGKILLed task may take to be reported gone.
const KILL_WAIT: Duration = Duration::from_secs(10);

impl SshRuntime {
    /// Makes the remote directory (with the script) for a reserved task.
    async fn make_dir(&self, launch: &TaskLaunch) -> Result<String, RuntimeError> {
        let script = launch.task.script.as_ref();
        let command = remote::make_dir(&launch.alloc_id, script.is_some());
        let content = script.map(|s| s.content.as_bytes()).unwrap_or_default();
        let out = remote::run(&self.inner.pool, &command, content).await?;
        let dir = out.stdout.trim();
        if out.exit_code != 0 || !dir.starts_with('/') {
            return Err(RuntimeError::Engine {
                op: "create",
                source: format!(
                    "making the remote directory failed (exit {}): {}",
                    out.exit_code,
                    out.stderr.trim()
                )
                .into(),
            });
        }
        Ok(dir.to_string())
    }

    /// Signals the running task's process group and waits up to `within` for
    /// it to end; whether it did. A task not running is done at once.
    async fn signal(&self, id: &str, sig: &str, within: Duration) -> Result<bool, RuntimeError> {
        let running = self.inner.table.with(id, |t| {
            (t.state == ContainerState::Running)
                .then(|| t.run.as_ref().map(|(rx, _)| rx.clone()))
                .flatten()
        })?;
        let Some(mut rx) = running else {
            return Ok(true);
        };
        let pid =
            match tokio::time::timeout(START_WAIT, rx.wait_for(|p| p.pid.is_some() || p.ended))
                .await
            {
                Ok(Ok(p)) if p.ended => return Ok(true),
                Ok(Ok(p)) => p.pid,
                _ => None,
            };
        let Some(pid) = pid else {
            return Err(RuntimeError::Engine {
                op: "stop",
                source: format!("{id} never announced its remote pid").into(),
            });
        };
        let out = remote::run(&self.inner.pool, &remote::signal(pid, sig), b"").await?;
        debug!(task = %id, pid, signal = sig, code = out.exit_code, "signalled");
        Ok(ended_within(&mut rx, within).await)
    }

    /// Kills the process group a task ran before a restart, if it has one.
    async fn kill_orphan(&self, id: &str) -> Result<(), RuntimeError> {
        let (Some(pid), Some(dir)) = self.inner.table.with(id, |t| (t.orphan, t.dir.clone()))?
        else {
            return Ok(());
        };
        let command = remote::signal_orphan(pid, "KILL", &dir);
        remote::run(&self.inner.pool, &command, b"").await?;
        self.inner.table.with(id, |t| t.orphan = None)?;
        Ok(())
    }

    /// The task's remote directory and environment script, for running in it.
    fn workspace(&self, id: &str) -> Result<(String, zeroize::Zeroizing<Vec<u8>>), RuntimeError> {
        let host = self.inner.config.target.host.clone();
        self.inner.table.with(id, |t| {
            let dir = t
                .dir
                .clone()
                .ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
            Ok((dir, remote::env_script(&t.launch, &host)?))
        })?
    }
}

#[async_trait]
impl Runtime for SshRuntime {
    fn name(&self) -> &str {
        "ssh"
    }

    async fn ping(&self) -> Result<(), RuntimeError> {
        let out = remote::run(&self.inner.pool, "true", b"").await?;
        match out.exit_code {
            0 => Ok(()),
            code => Err(RuntimeError::Unavailable(format!(
                "ssh {}: `true` exited {code}",
                self.inner.config.target
            ))),
        }
    }

    async fn version(&self) -> Result<String, RuntimeError> {
        let out = remote::run(&self.inner.pool, "uname -sr", b"").await?;
        Ok(format!(
            "ssh {} ({})",
            self.inner.config.target,
            out.stdout.trim()
        ))
    }

    async fn ensure_image(&self, image: &str) -> Result<(), RuntimeError> {
        if image.is_empty() {
            return Ok(());
        }
        Err(RuntimeError::Image {
            image: image.to_string(),
            reason: "the ssh runtime runs commands and scripts, not images".into(),
        })
    }

    async fn create(&self, launch: &TaskLaunch) -> Result<ContainerInfo, RuntimeError> {
        remote::task_argv(launch)?;
        remote::env_script(launch, &self.inner.config.target.host)?;
        let id = launch.container_name();
        {
            let mut tasks = lock(&self.inner.table.tasks);
            if tasks.contains_key(&id) {
                return Err(RuntimeError::Engine {
                    op: "create",
                    source: format!("a task named {id} exists").into(),
                });
            }
            let task = Task {
                launch: launch.clone(),
                dir: None,
                state: ContainerState::Created,
                error: None,
                run_id: 0,
                run: None,
                orphan: None,
            };
            tasks.insert(id.clone(), task);
        }
        match self.make_dir(launch).await {
            Ok(dir) => {
                let info = self.inner.table.with(&id, |t| {
                    t.dir = Some(dir);
                    t.info(&id)
                });
                self.inner.table.save(&id, None);
                info
            }
            Err(e) => {
                lock(&self.inner.table.tasks).remove(&id);
                Err(e)
            }
        }
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let (dir, env) = self.workspace(id)?;
        let (argv, alloc, running) = self.inner.table.with(id, |t| {
            (
                remote::task_argv(&t.launch),
                t.launch.alloc_id.clone(),
                t.state == ContainerState::Running,
            )
        })?;
        if running {
            return Ok(());
        }
        let argv = argv?;
        self.kill_orphan(id).await?;
        let command = remote::run_in(&dir, &argv, true);
        let (ch, lease) = self.inner.pool.channel().await?;
        let failed = |e: russh::Error| {
            RuntimeError::Unavailable(format!("ssh {}: start: {e}", self.inner.config.target))
        };
        ch.exec(true, command).await.map_err(failed)?;
        ch.data_bytes(Bytes::copy_from_slice(&env))
            .await
            .map_err(failed)?;
        ch.eof().await.map_err(failed)?;
        let (tx, mut rx) = watch::channel(Progress::default());
        self.inner.table.with(id, |t| {
            t.run_id += 1;
            t.state = ContainerState::Running;
            t.error = None;
            let runner = task::runner(
                self.inner.table.clone(),
                id.to_string(),
                t.run_id,
                alloc,
                ch,
                lease,
                tx,
            );
            if let Some((_, old)) = t.run.replace((rx.clone(), tokio::spawn(runner))) {
                old.abort();
            }
        })?;
        let announced =
            tokio::time::timeout(START_WAIT, rx.wait_for(|p| p.pid.is_some() || p.ended)).await;
        if let Ok(Ok(p)) = announced {
            if p.pid.is_some() {
                self.inner.table.save(id, p.pid);
            }
        }
        Ok(())
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        if self.signal(id, "TERM", grace).await? || self.signal(id, "KILL", KILL_WAIT).await? {
            return Ok(());
        }
        Err(RuntimeError::Engine {
            op: "stop",
            source: format!("{id} did not end after SIGKILL").into(),
        })
    }

    async fn kill(&self, id: &str) -> Result<(), RuntimeError> {
        if self.signal(id, "KILL", KILL_WAIT).await? {
            return Ok(());
        }
        Err(RuntimeError::Engine {
            op: "kill",
            source: format!("{id} did not end after SIGKILL").into(),
        })
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        self.kill(id).await?;
        self.kill_orphan(id).await?;
        let (dir, alloc) = self
            .inner
            .table
            .with(id, |t| (t.dir.clone(), t.launch.alloc_id.clone()))?;
        if let Some(dir) = dir {
            remote::run(&self.inner.pool, &remote::remove_dir(&dir), b"").await?;
        }
        if let Some(mut task) = lock(&self.inner.table.tasks).remove(id) {
            if let Some((_, runner)) = task.run.take() {
                runner.abort();
            }
        }
        let logs = self.inner.table.log_dir(&alloc);
        if let Err(e) = tokio::fs::remove_dir_all(&logs).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                debug!(path = %logs.display(), error = %e, "cannot remove a task's logs");
            }
        }
        Ok(())
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        self.inner.table.with(id, |t| t.info(id))
    }

    /// The tasks it made for the owner. The agent lists on every tick, so
    /// this is also where the target's health is checked: a `true` over the
    /// pool at most every `keepalive` while it answers, and on every call
    /// once it has not (each failure counts toward the breaker, and an open
    /// breaker answers at once): the node reports unhealthy while the target
    /// cannot be reached, and ready again once it can.
    async fn list(&self, owner: &Owner) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let due =
            lock(&self.inner.checked).is_none_or(|t| t.elapsed() >= self.inner.config.keepalive);
        if due {
            self.ping().await?;
            *lock(&self.inner.checked) = Some(std::time::Instant::now());
        }
        Ok(self.inner.table.list(owner))
    }

    async fn exits(&self, owner: &Owner) -> Result<Exits, RuntimeError> {
        let owner = owner.clone();
        let rx = self.inner.table.exits.subscribe();
        let feed = futures::stream::unfold(rx, move |mut rx| {
            let owner = owner.clone();
            async move {
                loop {
                    match rx.recv().await {
                        Ok(e) if e.cluster_id == owner.cluster_id && e.node_id == owner.node_id => {
                            return Some((Ok(e.alloc_id), rx))
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
        Ok(feed.boxed())
    }

    async fn logs(&self, id: &str, follow: bool) -> Result<Logs, RuntimeError> {
        let (alloc, run) = self.inner.table.with(id, |t| {
            let run = t.run.as_ref().map(|(rx, _)| rx.clone());
            (t.launch.alloc_id.clone(), run.filter(|_| follow))
        })?;
        Ok(task::logs(self.inner.table.log_dir(&alloc), run))
    }

    /// Unsupported: the ssh runtime does not sample remote resource use.
    async fn stats(&self, id: &str) -> Result<Stats, RuntimeError> {
        self.inner.table.with(id, |_| ())?;
        Err(RuntimeError::Unsupported(
            "the ssh runtime does not report resource use".into(),
        ))
    }

    async fn exec(&self, id: &str, cmd: &[String]) -> Result<ExecOutput, RuntimeError> {
        let (dir, env) = self.workspace(id)?;
        if cmd.is_empty() {
            return Err(RuntimeError::Engine {
                op: "exec",
                source: "no command given".into(),
            });
        }
        remote::run(&self.inner.pool, &remote::run_in(&dir, cmd, false), &env).await
    }
}
