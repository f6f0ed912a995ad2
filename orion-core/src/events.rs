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
    /// A secret (its names, versions and times: never its value).
    Secret,
    /// A job's count set by its scaling policy or by hand (the decision).
    Scaling,
    /// The Raft leader changed (live only: not kept for clients that resume).
    Leader,
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
            "secret" => Ok(Topic::Secret),
            "scaling" => Ok(Topic::Scaling),
            "leader" => Ok(Topic::Leader),
            other => Err(format!(
                "unknown topic {other:?}: expected job, allocation, node, deployment, scaling, volume, secret or leader"
            )),
        }
    }
}

/// The longest `?topic=` filter list accepted, all values together.
pub const MAX_FILTER_CHARS: usize = 4096;

/// One `?topic=` filter: a topic and, after a colon, one key of it
/// (`job:web`) or any (`job`, `job:*`); `*` alone is every topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicFilter {
    /// The topic; none for `*`.
    pub topic: Option<Topic>,
    /// The key; none for any.
    pub key: Option<String>,
}

impl std::str::FromStr for TopicFilter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (topic, key) = s.split_once(':').unwrap_or((s, "*"));
        let topic = match topic {
            "*" => None,
            t => Some(t.parse()?),
        };
        let key = match key {
            "*" => None,
            "" => {
                return Err(format!(
                    "topic filter {s:?} has an empty key: write {s}* for any"
                ))
            }
            k => Some(k.to_string()),
        };
        Ok(TopicFilter { topic, key })
    }
}

/// The filters of `?topic=` values (each may hold several, comma-separated);
/// none means every event.
pub fn parse_filters(values: &[String]) -> Result<Vec<TopicFilter>, String> {
    let chars: usize = values.iter().map(String::len).sum();
    if chars > MAX_FILTER_CHARS {
        return Err(format!(
            "topic: the filters are {chars} characters long; at most {MAX_FILTER_CHARS}"
        ));
    }
    values
        .iter()
        .flat_map(|v| v.split(','))
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|e| format!("topic: {e}")))
        .collect()
}

/// Whether an event passes the filters (every event when there are none).
pub fn wanted(filters: &[TopicFilter], topic: Topic, key: &str) -> bool {
    filters.is_empty()
        || filters.iter().any(|f| {
            f.topic.is_none_or(|t| t == topic) && f.key.as_deref().is_none_or(|k| k == key)
        })
}

/// One event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// The log index of the change.
    pub index: u64,
    /// What it is about.
    pub topic: Topic,
    /// Its key: the job's, volume's or secret's name, the allocation's or node's id.
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

/// The events of one batch that pass `topics` (all when empty), with each object
/// read from `state`.
pub fn events_of(batch: &ChangeBatch, topics: &[TopicFilter], state: &ClusterState) -> Vec<Event> {
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
            Change::Scaling { job } => (
                Topic::Scaling,
                job.clone(),
                state
                    .scaling
                    .get(job)
                    .and_then(|s| serde_json::to_value(s.decisions.last()?).ok()),
            ),
            Change::Volume { name } => (
                Topic::Volume,
                name.clone(),
                state
                    .volumes
                    .get(name)
                    .and_then(|v| serde_json::to_value(v).ok()),
            ),
            Change::Secret { name } => (
                Topic::Secret,
                name.clone(),
                state
                    .secrets
                    .get(name)
                    .and_then(|s| serde_json::to_value(s.meta()).ok()),
            ),
        };
        if wanted(topics, topic, &key) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn filters(v: &[&str]) -> Result<Vec<TopicFilter>, String> {
        parse_filters(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn filters_name_a_topic_and_maybe_a_key() {
        let f = filters(&["job:web", "node:*"]).unwrap();
        assert!(wanted(&f, Topic::Job, "web"));
        assert!(!wanted(&f, Topic::Job, "api"));
        assert!(wanted(&f, Topic::Node, "n7"));
        assert!(!wanted(&f, Topic::Allocation, "web-0-1"));
        let f = filters(&["allocation,deployment"]).unwrap();
        assert!(wanted(&f, Topic::Deployment, "web"));
        assert!(wanted(&filters(&["*"]).unwrap(), Topic::Leader, "n1"));
        assert!(wanted(&[], Topic::Volume, "data"));
        let f = filters(&["secret:db"]).unwrap();
        assert!(wanted(&f, Topic::Secret, "db") && !wanted(&f, Topic::Job, "db"));
    }

    #[test]
    fn bad_filters_name_the_problem() {
        let e = filters(&["jobz:web"]).unwrap_err();
        assert!(e.contains("unknown topic \"jobz\""), "{e}");
        let e = filters(&["job:"]).unwrap_err();
        assert!(e.contains("empty key"), "{e}");
        let long = "job:".to_string() + &"x".repeat(10_000);
        let e = filters(&[long.as_str()]).unwrap_err();
        assert!(e.contains("10004 characters"), "{e}");
    }
}
