//! Cronium's executor contract — `validate(job)`, `execute(job) -> stream of
//! ExecutionUpdate`, `cleanup(job)` — implemented over an Orion cluster
//! embedded in the same process. Each Cronium job becomes an Orion batch
//! script job (`cronium-<id>`) with its resources, timeout, retry policy and
//! priority, run restricted by default; its output streams as numbered lines
//! that continue across retries.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use futures::StreamExt;
//! use cronium_executor::{CroniumJob, Executor};
//! let data = tempfile::tempdir()?;
//! let cluster = orion::Node::builder()
//!     .node_id("cronium")
//!     .data_dir(data.path())
//!     .loopback_ports()
//!     .runtime(orion::DockerRuntime::connect_local()?)
//!     .start()
//!     .await?;
//! let exec = Executor::new(cluster);
//! let job: CroniumJob = serde_json::from_str(
//!     r#"{"id": "42", "script": {"lang": "sh", "content": "echo hi"}}"#,
//! )?;
//! let mut updates = exec.execute(&job);
//! while let Some(u) = updates.next().await {
//!     println!("{}", serde_json::to_string(&u)?);
//! }
//! exec.cleanup(&job).await;
//! # Ok(()) }
//! ```

pub mod poller;
pub use poller::{LogEntry, Poller, PollerConfig};

use std::time::Duration;

use futures::stream::{BoxStream, StreamExt};
use orion::api::logs::numbered;
use orion::model::{AllocState, JobHealth};
use orion::spec::{FieldError, JobKind, ScriptSpec};
use orion::{Cluster, JobSpec};
use serde::{Deserialize, Serialize};

/// A Cronium job, as its queue hands it over.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CroniumJob {
    /// Its id (letters, digits and `-`).
    pub id: String,
    /// The script.
    pub script: ScriptSpec,
    /// The image; the node's runner image for the language when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// CPU cores. Default 0.25.
    #[serde(default = "defaults::cpu")]
    pub cpu: f64,
    /// Memory, MiB. Default 128.
    #[serde(default = "defaults::memory_mb")]
    pub memory_mb: u64,
    /// A run longer than this is killed (and retried, if retries are left).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// Runs again after a failure, at most this many times. Default 0.
    #[serde(default)]
    pub retries: u32,
    /// The first retry's delay, doubling after. Default 1 s.
    #[serde(default = "defaults::retry_delay", with = "humantime_serde")]
    pub retry_delay: Duration,
    /// 1–100; higher runs first when capacity is short. Default 50.
    #[serde(default = "defaults::priority")]
    pub priority: u8,
}

mod defaults {
    use std::time::Duration;
    pub fn cpu() -> f64 {
        0.25
    }
    pub fn memory_mb() -> u64 {
        128
    }
    pub fn retry_delay() -> Duration {
        Duration::from_secs(1)
    }
    pub fn priority() -> u8 {
        50
    }
}

/// What `execute` reports, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExecutionUpdate {
    /// A line of output.
    Log {
        /// Its number, from 1, across retries.
        seq: u64,
        /// `stdout` or `stderr`.
        stream: String,
        /// The line.
        line: String,
    },
    /// The run's status changed: `queued`, `running`, `retrying`.
    Status {
        /// The status.
        status: String,
    },
    /// How far it is: attempts made of those allowed.
    Progress {
        /// The attempt now running, from 1.
        attempt: u32,
        /// The most attempts.
        of: u32,
    },
    /// Something went wrong (a failed attempt, a timeout, a refusal).
    Error {
        /// What.
        message: String,
    },
    /// The end: `completed` or `failed`, with the last exit code.
    Complete {
        /// `completed` or `failed`.
        status: String,
        /// The last run's exit code, if it ran.
        exit_code: Option<i64>,
    },
}

/// The executor: an embedded cluster and how jobs map onto it.
#[derive(Clone)]
pub struct Executor {
    cluster: Cluster,
}

/// The Orion job a Cronium job becomes.
pub fn job_name(job: &CroniumJob) -> String {
    format!("cronium-{}", job.id.to_ascii_lowercase())
}

impl Executor {
    /// An executor over `cluster` (a whole node embedded in this process).
    pub fn new(cluster: Cluster) -> Self {
        Executor { cluster }
    }

    /// The cluster it runs on.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The Orion batch job for `job`.
    pub fn spec(&self, job: &CroniumJob) -> Result<JobSpec, Vec<FieldError>> {
        let restart = serde_json::json!({
            "attempts": job.retries, "mode": "fail",
            "delay": humantime_serde::re::humantime::format_duration(job.retry_delay).to_string(),
            "backoff": "exponential", "interval": "24h"
        });
        let mut spec = JobSpec::service(job_name(job), job.image.clone().unwrap_or_default())
            .resources(job.cpu, job.memory_mb);
        spec.kind = JobKind::Batch;
        spec.priority = job.priority;
        spec.task.script = Some(job.script.clone());
        spec.task.timeout = job.timeout;
        spec.restart = serde_json::from_value(restart).ok();
        spec.reschedule =
            serde_json::from_value(serde_json::json!({ "unlimited": false, "attempts": 0 })).ok();
        spec.validate().map_err(|e| e.errors)?;
        Ok(spec)
    }

    /// Whether `job` can run: the problems, each naming its field.
    pub fn validate(&self, job: &CroniumJob) -> Result<(), Vec<FieldError>> {
        self.spec(job).map(|_| ())
    }

    /// Runs `job` and streams what happens, ending with `Complete`.
    pub fn execute(&self, job: &CroniumJob) -> BoxStream<'static, ExecutionUpdate> {
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let cluster = self.cluster.clone();
        let spec = self.spec(job);
        let attempts = job.retries + 1;
        tokio::spawn(async move {
            let send = |u: ExecutionUpdate| {
                let tx = tx.clone();
                async move { tx.send(u).await.is_ok() }
            };
            let spec = match spec {
                Ok(s) => s,
                Err(errors) => {
                    let msg = errors
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; ");
                    send(ExecutionUpdate::Error { message: msg }).await;
                    send(ExecutionUpdate::Complete {
                        status: "failed".into(),
                        exit_code: None,
                    })
                    .await;
                    return;
                }
            };
            let name = spec.name.clone();
            if let Err(e) = cluster.submit(spec).await {
                send(ExecutionUpdate::Error {
                    message: e.to_string(),
                })
                .await;
                send(ExecutionUpdate::Complete {
                    status: "failed".into(),
                    exit_code: None,
                })
                .await;
                return;
            }
            send(ExecutionUpdate::Status {
                status: "queued".into(),
            })
            .await;
            follow(&cluster, &name, attempts, send).await;
        });
        tokio_stream::wrappers::ReceiverStream::new(rx).boxed()
    }

    /// Forgets `job`'s Orion job (its containers are stopped and removed).
    pub async fn cleanup(&self, job: &CroniumJob) {
        let _ = self.cluster.stop_job(&job_name(job), true).await;
    }
}

/// Follows job `name` through its attempts until it completes or fails.
async fn follow<F, Fut>(cluster: &Cluster, name: &str, attempts: u32, send: F)
where
    F: Fn(ExecutionUpdate) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut seq = 0;
    let mut attempt = 0;
    loop {
        let Some(view) = cluster.job(name) else {
            send(ExecutionUpdate::Error {
                message: format!("job {name} is gone"),
            })
            .await;
            send(ExecutionUpdate::Complete {
                status: "failed".into(),
                exit_code: None,
            })
            .await;
            return;
        };
        let alloc = view.allocations.first().cloned();
        // Every attempt that has started, each said once, in order — also
        // those too quick to be seen running (a retry that ran and ended
        // between two looks).
        let finished = matches!(view.health, JobHealth::Complete | JobHealth::Failed);
        if let Some(a) = alloc
            .as_ref()
            .filter(|a| a.node.is_some() && (a.state == AllocState::Running || finished))
        {
            while attempt < a.restarts + 1 {
                if attempt > 0 {
                    send(ExecutionUpdate::Status {
                        status: "retrying".into(),
                    })
                    .await;
                }
                attempt += 1;
                started(attempt, attempts, &send).await;
            }
        }
        match (view.health, alloc) {
            (JobHealth::Complete, a) => {
                if let Some(a) = &a {
                    forward_logs(cluster, &a.id, false, &mut seq, &send).await;
                }
                send(ExecutionUpdate::Complete {
                    status: "completed".into(),
                    exit_code: a.and_then(|a| a.exit_code).or(Some(0)),
                })
                .await;
                return;
            }
            (JobHealth::Failed, a) => {
                if let Some(a) = &a {
                    forward_logs(cluster, &a.id, false, &mut seq, &send).await;
                }
                let message = a
                    .as_ref()
                    .and_then(|a| a.message.clone())
                    .unwrap_or_else(|| "failed".into());
                send(ExecutionUpdate::Error { message }).await;
                send(ExecutionUpdate::Complete {
                    status: "failed".into(),
                    exit_code: a.and_then(|a| a.exit_code),
                })
                .await;
                return;
            }
            // Until this run's output ends (its container stops).
            (_, Some(a))
                if a.state == AllocState::Running
                    && !forward_logs(cluster, &a.id, true, &mut seq, &send).await =>
            {
                return;
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Says an attempt started: `running`, then its progress.
async fn started<F, Fut>(attempt: u32, of: u32, send: &F)
where
    F: Fn(ExecutionUpdate) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    send(ExecutionUpdate::Status {
        status: "running".into(),
    })
    .await;
    send(ExecutionUpdate::Progress { attempt, of }).await;
}

/// Sends an allocation's lines after `seq` (following them while its task
/// runs, with `follow`; its kept logs once it is gone); false once the
/// receiver has gone.
async fn forward_logs<F, Fut>(
    cluster: &Cluster,
    alloc: &str,
    follow: bool,
    seq: &mut u64,
    send: &F,
) -> bool
where
    F: Fn(ExecutionUpdate) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let Ok(logs) = cluster.logs(alloc, follow).await else {
        return true;
    };
    let mut lines = numbered(logs, *seq);
    while let Some(Ok(l)) = lines.next().await {
        *seq = l.seq;
        let line = ExecutionUpdate::Log {
            seq: l.seq,
            stream: l.stream,
            line: l.line,
        };
        if !send(line).await {
            return false;
        }
    }
    true
}
