//! The event stream (`GET /v1/events`, Nomad's `/v1/event/stream` shape):
//! every committed change as an event — its log index, topic, key and the
//! object as it is after the change (none once removed) — as newline-delimited
//! JSON, or Server-Sent Events. A client resumes from the index it last saw
//! (`?index=N`, or SSE's `Last-Event-ID`) and misses nothing the node still
//! keeps: the last [`KEPT_BATCHES`] committed changes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::replica::{ChangeBatch, Replica};
use crate::state::{Change, ClusterState};

/// Change batches a node keeps for clients that resume.
pub const KEPT_BATCHES: usize = 4096;

/// What an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Topic {
    /// A job was written or removed.
    Job,
    /// An allocation.
    Allocation,
    /// A node.
    Node,
    /// A job's deployment.
    Deployment,
    /// A named volume.
    Volume,
}

impl std::str::FromStr for Topic {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "job" => Ok(Topic::Job),
            "allocation" | "alloc" => Ok(Topic::Allocation),
            "node" => Ok(Topic::Node),
            "deployment" => Ok(Topic::Deployment),
            "volume" => Ok(Topic::Volume),
            other => Err(format!(
                "unknown topic {other:?}: expected job, allocation, node, deployment or volume"
            )),
        }
    }
}

/// One event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// The log index of the change.
    pub index: u64,
    /// What it is about.
    pub topic: Topic,
    /// Its key: the job's or volume's name, the allocation's or node's id.
    pub key: String,
    /// The object after the change, as read when the event is sent; none
    /// once removed.
    #[schema(value_type = Object)]
    pub object: Option<serde_json::Value>,
}

/// The changes a node keeps for resuming clients.
#[derive(Default)]
pub struct EventLog {
    kept: Mutex<VecDeque<Arc<ChangeBatch>>>,
}

impl EventLog {
    /// Keeps `replica`'s batches from now on, until `shutdown`.
    pub fn follow(
        self: &Arc<Self>,
        replica: &Arc<Replica>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let log = self.clone();
        let mut rx = replica.subscribe_changes();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.wait_for(|s| *s) => break,
                    b = rx.recv() => match b {
                        Ok(batch) => log.keep(batch),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => break,
                    },
                }
            }
        })
    }

    fn keep(&self, batch: Arc<ChangeBatch>) {
        let mut kept = self.kept.lock().expect("event log");
        kept.push_back(batch);
        while kept.len() > KEPT_BATCHES {
            kept.pop_front();
        }
    }

    /// The kept batches after `index`, and whether the log still reaches
    /// back to it (else the client missed some and should re-read state).
    pub fn since(&self, index: u64) -> (Vec<Arc<ChangeBatch>>, bool) {
        let kept = self.kept.lock().expect("event log");
        let complete = kept.front().is_none_or(|b| b.index <= index + 1) || index == 0;
        (
            kept.iter().filter(|b| b.index > index).cloned().collect(),
            complete,
        )
    }
}

/// The events of one batch on `topics` (all when empty), with each object
/// read from `state`.
pub fn events_of(batch: &ChangeBatch, topics: &[Topic], state: &ClusterState) -> Vec<Event> {
    let mut out = Vec::new();
    for c in &batch.changes {
        let (topic, key, object) = match c {
            Change::Job { name } => (
                Topic::Job,
                name.clone(),
                state
                    .jobs
                    .get(name)
                    .and_then(|j| serde_json::to_value(j).ok()),
            ),
            Change::Deployment { job } => (
                Topic::Deployment,
                job.clone(),
                state
                    .latest_deployment(job)
                    .and_then(|d| serde_json::to_value(d).ok()),
            ),
            Change::Alloc { id, .. } => (
                Topic::Allocation,
                id.clone(),
                state
                    .allocs
                    .get(id)
                    .and_then(|a| serde_json::to_value(a).ok()),
            ),
            Change::Node { id } => (
                Topic::Node,
                id.clone(),
                state
                    .nodes
                    .get(id)
                    .and_then(|n| serde_json::to_value(n).ok()),
            ),
            Change::Volume { name } => (
                Topic::Volume,
                name.clone(),
                state
                    .volumes
                    .get(name)
                    .and_then(|v| serde_json::to_value(v).ok()),
            ),
        };
        if topics.is_empty() || topics.contains(&topic) {
            out.push(Event {
                index: batch.index,
                topic,
                key,
                object,
            });
        }
    }
    out
}
