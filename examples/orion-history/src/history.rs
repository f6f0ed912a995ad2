//! What the clients did: every operation's invocation and completion, in the
//! order a single clock on the test host saw them.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A job's observable state in the model: the value of its last write and
/// whether it runs (`false` once stopped). `None`: no such job.
pub type JobState = Option<(u32, bool)>;

/// What a client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// Submit the job with a spec carrying a unique value.
    Write(u32),
    /// Read the job (a linearizable read: `?consistent=true`).
    Read,
    /// Stop the job.
    Stop,
}

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A write or a stop was acknowledged.
    Ok,
    /// A read returned this state.
    Read(JobState),
    /// A stop was refused because there is no such job (404 after the
    /// proposal was applied: a linearizable observation).
    NotFound,
    /// Certainly not applied (refused before anything was proposed, or the
    /// connection was never made).
    Failed,
    /// May or may not have taken effect (a timeout, a reset connection, a
    /// 5xx): the checker lets it take effect at any point after its
    /// invocation, or never.
    Unknown,
}

/// One operation of the history.
#[derive(Clone, Debug)]
pub struct Op {
    /// The client (a task of the workload) that made it.
    pub client: usize,
    /// Its process in the checker's sense: a client takes a new process after
    /// an operation of unknown outcome, since that one never completes.
    pub process: usize,
    /// The job (the key) it is about.
    pub key: String,
    /// The node it was sent to.
    pub node: String,
    /// What it asked.
    pub call: Call,
    /// When it was sent, since the start of the run.
    pub invoked: Duration,
    /// When its answer came (or it gave up), since the start of the run.
    pub completed: Duration,
    /// How it ended.
    pub outcome: Outcome,
    /// The answer's status or the error, for a person reading the history.
    pub detail: String,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let call = match self.call {
            Call::Write(v) => format!("write {v}"),
            Call::Read => "read".to_string(),
            Call::Stop => "stop".to_string(),
        };
        let outcome = match self.outcome {
            Outcome::Ok => "ok".to_string(),
            Outcome::Read(None) => "read: none".to_string(),
            Outcome::Read(Some((v, running))) => {
                format!("read: {v} {}", if running { "running" } else { "stopped" })
            }
            Outcome::NotFound => "not found".to_string(),
            Outcome::Failed => "failed".to_string(),
            Outcome::Unknown => "unknown".to_string(),
        };
        write!(
            f,
            "[{:>9.3}s → {:>9.3}s] client {:>2} (process {:>3}) {:<8} via {:<14} {:<12} {:<22} {}",
            self.invoked.as_secs_f64(),
            self.completed.as_secs_f64(),
            self.client,
            self.process,
            self.key,
            self.node,
            call,
            outcome,
            self.detail
        )
    }
}

/// A thread-safe log of operations and events, on one clock.
pub struct Recorder {
    start: Instant,
    ops: Mutex<Vec<Op>>,
    events: Mutex<Vec<(Duration, String)>>,
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
            events: Mutex::new(Vec::new()),
        }
    }

    /// Time since the start.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Records a completed (or abandoned) operation.
    pub fn op(&self, op: Op) {
        self.ops.lock().unwrap().push(op);
    }

    /// Records a nemesis or harness event, and prints it.
    pub fn event(&self, what: impl Into<String>) {
        let at = self.now();
        let what = what.into();
        println!("[{:>9.3}s] {what}", at.as_secs_f64());
        self.events.lock().unwrap().push((at, what));
    }

    /// The operations so far, by invocation time.
    pub fn ops(&self) -> Vec<Op> {
        let mut ops = self.ops.lock().unwrap().clone();
        ops.sort_by_key(|o| (o.invoked, o.completed));
        ops
    }

    /// The events so far, in order.
    pub fn events(&self) -> Vec<(Duration, String)> {
        self.events.lock().unwrap().clone()
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}
