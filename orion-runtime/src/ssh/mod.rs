//! `SshRuntime`: tasks run as processes on a remote server over SSH (Cronium's
//! SSH executor), behind [`Runtime`](orion_core::Runtime).
//!
//! ```text
//!  agent ──Runtime──▶ SshRuntime ──▶ Pool (≤ pool_max connections, breaker)
//!                        │               │ one channel per task run / command
//!                        │               ▼
//!                        │        sshd on user@host:port
//!                        │          mktemp -d → script upload → sh -c 'exec cmd'
//!                        ▼
//!              <data_dir>/<alloc>/stdout|stderr   (logs outlive the channel)
//! ```
//!
//! - **create** records the launch and makes a remote temporary directory
//!   (`mktemp -d`), uploading the task's script there when it has one.
//! - **start** runs the task's `command` + `args` (or the script with its
//!   language's interpreter) in that directory as a process, with `task.env`,
//!   the secret environment and, for each port binding, `ORION_PORT_<NAME>`
//!   and `ORION_ADDR_<NAME>` (`host:port`). The environment goes over the
//!   channel's stdin, so no value is on a remote command line; the task's own
//!   stdin is then empty. The remote pid is captured; **stop** sends SIGTERM to
//!   its process group, SIGKILL after the grace; **kill** SIGKILL at once;
//!   **remove** deletes the remote directory and the local logs.
//! - **inspect** / **list** answer from what this runtime tracks: running, or
//!   exited with the channel's exit status (128+signal for a signal, as
//!   Docker reports). A connection that drops while a task runs ends it as
//!   `Exited { code: 255 }` with `error` saying so, never as a success.
//! - **logs** serves the output from the local files, following it until the
//!   task ends; **exec** runs a command in the task's directory with its env
//!   (in any state once created: the directory is there until `remove`);
//!   **exits** feeds the owner's task exits as they happen.
//! - Connections are pooled per target (one carries many channels; OpenSSH's
//!   `MaxSessions`, 10 by default, bounds channels per connection), idle ones
//!   pinged every `keepalive` and closed after `idle_timeout`. After
//!   `breaker_failures` failed connection attempts in a row the breaker opens
//!   and calls, [`ping`](orion_core::Runtime::ping) included, fail fast with
//!   [`RuntimeError::Unavailable`] for `breaker_open_for`; then one trial
//!   closes it or opens it again.
//! - The server's host key must be in the known-hosts file; an unknown or
//!   changed key is refused, naming the host and the key's SHA256
//!   fingerprint. Lines name the host exactly (`host`, `[host]:port`, or
//!   hashed `|1|...`); wildcard patterns and the `@cert-authority` /
//!   `@revoked` markers are not understood (such lines match nothing). Only
//!   key authentication, unencrypted keys; no key material is ever logged.
//!
//! Adoption after a restart is partial: each task's launch (never its
//! secrets), remote directory and pid are recorded in
//! `<data_dir>/<alloc>/task.json`, and a new `SshRuntime` on the same
//! `data_dir` lists them again, as `Exited { code: 255 }` with an error
//! saying so, since the channel that carried their exit status is gone.
//! Removing (or restarting) one kills its old process group and removes its
//! remote directory, so nothing is orphaned on the server. Secrets are not
//! recorded, so an adopted task started again runs without its secret env:
//! re-create it from its launch instead.
//!
//! What does not apply: images ([`ensure_image`](orion_core::Runtime::ensure_image)
//! accepts only `""`; the task's `image` is ignored), volumes, resource limits,
//! security settings, `stats`, `read_file`, `exec_attach`. A process whose
//! connection dropped may still run on the server until the task is removed.

mod breaker;
mod config;
mod hostkey;
mod pool;
mod record;
mod remote;
mod runtime;
mod task;

use std::fmt;
use std::sync::Arc;

pub use breaker::BreakerState;
pub use config::{
    SshConfig, SshConfigError, SshTarget, DEFAULT_PORT, KEY_FLAG, KNOWN_HOSTS_FLAG, TARGET_FLAG,
};
pub use pool::{PoolStats, CHANNELS_PER_CONNECTION};

use pool::{lock, Pool};
use task::Table;

/// Runs Orion's tasks on one remote server over SSH.
///
/// Cheap to clone: clones share the pool and the tasks.
///
/// ```no_run
/// use orion_core::Runtime;
/// use orion_runtime::ssh::{SshConfig, SshRuntime, SshTarget};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let target = SshTarget::parse("deploy@10.0.0.5:22")?;
/// let config = SshConfig::new(target, "/etc/orion/id_ed25519", "/var/lib/orion/ssh");
/// let ssh = SshRuntime::new(config)?;
/// ssh.ping().await?;
/// println!("{:?}, {} connections opened", ssh.breaker(), ssh.pool_stats().opened);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SshRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    /// The settings it was built with.
    config: SshConfig,
    /// The target's connections.
    pool: Arc<Pool>,
    /// The tasks it made.
    table: Arc<Table>,
    /// When the target last answered a health check (`true`), for
    /// [`Runtime::list`]'s check every `keepalive`.
    checked: std::sync::Mutex<Option<std::time::Instant>>,
}

impl fmt::Debug for SshRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshRuntime")
            .field("target", &self.inner.config.target.to_string())
            .field("breaker", &self.breaker())
            .field("pool", &self.pool_stats())
            .finish()
    }
}

impl SshRuntime {
    /// A runtime for the config's target, checked with [`SshConfig::check`]
    /// (the key is loaded now; `data_dir` is created). Does no network I/O:
    /// the first call connects.
    pub fn new(config: SshConfig) -> Result<SshRuntime, SshConfigError> {
        config.check()?;
        if let Err(e) = std::fs::create_dir_all(&config.data_dir) {
            return Err(SshConfigError::Field {
                field: "data_dir",
                reason: format!("cannot create {}: {e}", config.data_dir.display()),
            });
        }
        let pool = Arc::new(Pool::new(&config)?);
        let table = Arc::new(Table::new(
            config.data_dir.clone(),
            config.target.to_string(),
        ));
        Ok(SshRuntime {
            inner: Arc::new(Inner {
                config,
                pool,
                table,
                checked: std::sync::Mutex::new(None),
            }),
        })
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &SshConfig {
        &self.inner.config
    }

    /// The circuit breaker's state now.
    pub fn breaker(&self) -> BreakerState {
        self.inner.pool.breaker()
    }

    /// The connection pool's figures now.
    pub fn pool_stats(&self) -> PoolStats {
        self.inner.pool.stats()
    }

    /// Closes every connection to the target, for a graceful shutdown. Tasks
    /// still running lose their channel and are reported dropped (their remote
    /// processes may go on); a later call opens connections again.
    pub async fn shutdown(&self) {
        self.inner.pool.close_all().await;
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in lock(&self.table.tasks).values_mut() {
            if let Some((_, runner)) = task.run.take() {
                runner.abort();
            }
        }
    }
}
