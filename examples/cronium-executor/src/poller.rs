//! The job-queue poller of Cronium's design, over its HTTP queue contract:
//!
//! | call | contract |
//! |---|---|
//! | `GET {queue}/api/internal/jobs/queue?limit=N` | `PollJobs`: up to N pending jobs (JSON array of [`CroniumJob`]) |
//! | `POST {queue}/api/internal/jobs/{id}/ack` | `AcknowledgeJob` |
//! | `POST {queue}/api/internal/jobs/{id}/status` `{status, details}` | `UpdateJobStatus` |
//! | `POST {queue}/api/internal/jobs/{id}/logs` `[{seq, stream, line}]` | `StreamLogs` |
//!
//! It polls a batch while it has room to run another job (a concurrency
//! limit), holds what it got in a local priority queue and runs the highest
//! priority first, and backs off exponentially
//! (between `min_interval` and `max_interval`) while the queue is empty.

use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{watch, Semaphore};

use crate::{CroniumJob, ExecutionUpdate, Executor};

/// How the poller polls.
#[derive(Clone, Debug)]
pub struct PollerConfig {
    /// The queue's base URL (`http://127.0.0.1:9000`).
    pub queue: String,
    /// Most jobs asked for per poll. Default 10.
    pub batch_size: usize,
    /// Most jobs running at once. Default 4.
    pub concurrency: usize,
    /// The wait after a poll that found jobs. Default 100 ms.
    pub min_interval: Duration,
    /// The longest wait between empty polls. Default 5 s.
    pub max_interval: Duration,
}

impl PollerConfig {
    /// The defaults, against `queue`.
    pub fn new(queue: impl Into<String>) -> Self {
        PollerConfig {
            queue: queue.into(),
            batch_size: 10,
            concurrency: 4,
            min_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(5),
        }
    }
}

/// A log entry as `StreamLogs` sends it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Its number in the job's output.
    pub seq: u64,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The line.
    pub line: String,
}

/// A held job, ordered by priority, then arrival.
struct Held(u8, std::cmp::Reverse<u64>, CroniumJob);

impl PartialEq for Held {
    fn eq(&self, o: &Self) -> bool {
        (self.0, self.1) == (o.0, o.1)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.0, self.1).cmp(&(o.0, o.1))
    }
}

/// Polls a queue and runs its jobs on an [`Executor`].
pub struct Poller {
    exec: Executor,
    config: PollerConfig,
    http: reqwest::Client,
}

impl Poller {
    /// A poller for `exec` as `config` says.
    pub fn new(exec: Executor, config: PollerConfig) -> Self {
        Poller {
            exec,
            config,
            http: {
                orion::tls::ensure_default_provider();
                reqwest::Client::new()
            },
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/api/internal/jobs{path}",
            self.config.queue.trim_end_matches('/')
        )
    }

    /// Runs until `stop` turns true; jobs already running finish.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let slots = Arc::new(Semaphore::new(this.config.concurrency));
        let mut held: BinaryHeap<Held> = BinaryHeap::new();
        let mut arrived = 0u64;
        let mut wait = this.config.min_interval;
        let mut running = tokio::task::JoinSet::new();
        loop {
            if *stop.borrow() {
                break;
            }
            // A batch is fetched while there is room to run one more and the
            // local queue is not full: held jobs then run by priority.
            let room = slots.available_permits().saturating_sub(held.len());
            let mut got = 0;
            if room > 0 && held.len() < this.config.batch_size {
                let limit = this.config.batch_size - held.len();
                if let Ok(jobs) = this.poll(limit).await {
                    got = jobs.len();
                    for job in jobs {
                        if this.post(&format!("/{}/ack", job.id), &json!({})).await {
                            arrived += 1;
                            held.push(Held(job.priority, std::cmp::Reverse(arrived), job));
                        }
                    }
                }
            }
            // Highest priority first, as far as there is room.
            while let Some(permit) = held
                .peek()
                .and_then(|_| slots.clone().try_acquire_owned().ok())
            {
                let Held(_, _, job) = held.pop().expect("peeked");
                let this = this.clone();
                running.spawn(async move {
                    this.run_one(job).await;
                    drop(permit);
                });
            }
            wait = if got > 0 || room == 0 {
                this.config.min_interval
            } else {
                (wait * 2).min(this.config.max_interval)
            };
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                _ = tokio::time::sleep(wait) => {}
            }
            while running.try_join_next().is_some() {}
        }
        while running.join_next().await.is_some() {}
    }

    async fn poll(&self, limit: usize) -> Result<Vec<CroniumJob>, reqwest::Error> {
        self.http
            .get(format!("{}?limit={limit}", self.url("/queue")))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
    }

    async fn post(&self, path: &str, body: &serde_json::Value) -> bool {
        match self.http.post(self.url(path)).json(body).send().await {
            Ok(r) => r.status().is_success(),
            Err(_) => false,
        }
    }

    async fn status(&self, id: &str, status: &str, details: serde_json::Value) {
        self.post(
            &format!("/{id}/status"),
            &json!({ "status": status, "details": details }),
        )
        .await;
    }

    async fn flush(&self, id: &str, logs: &mut Vec<LogEntry>) {
        if !logs.is_empty() {
            let body = serde_json::to_value(&*logs).unwrap_or_default();
            self.post(&format!("/{id}/logs"), &body).await;
            logs.clear();
        }
    }

    async fn run_one(&self, job: CroniumJob) {
        let id = job.id.clone();
        if let Err(errors) = self.exec.validate(&job) {
            let why: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            self.status(&id, "failed", json!({ "errors": why })).await;
            return;
        }
        let mut logs = Vec::new();
        let mut updates = self.exec.execute(&job);
        while let Some(u) = updates.next().await {
            match u {
                ExecutionUpdate::Log { seq, stream, line } => {
                    logs.push(LogEntry { seq, stream, line });
                    if logs.len() >= 100 {
                        self.flush(&id, &mut logs).await;
                    }
                }
                ExecutionUpdate::Status { status } => {
                    self.flush(&id, &mut logs).await;
                    self.status(&id, &status, json!({})).await;
                }
                ExecutionUpdate::Progress { attempt, of } => {
                    self.status(&id, "running", json!({ "attempt": attempt, "of": of }))
                        .await;
                }
                ExecutionUpdate::Error { message } => {
                    self.flush(&id, &mut logs).await;
                    self.status(&id, "error", json!({ "message": message }))
                        .await;
                }
                ExecutionUpdate::Complete { status, exit_code } => {
                    self.flush(&id, &mut logs).await;
                    self.status(&id, &status, json!({ "exit_code": exit_code }))
                        .await;
                }
            }
        }
        self.exec.cleanup(&job).await;
    }
}
