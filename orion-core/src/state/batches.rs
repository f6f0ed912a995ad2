//! Batches applied once: a [`Command::Batch`] committed a second time (a
//! retried proposal) is answered as the first time and changes nothing.

use serde::{Deserialize, Serialize};

use super::{Change, ClusterState};
use crate::command::{Command, Response};

/// Batches whose ids and answers the state keeps. A retried proposal commits
/// again within its budget (seconds) of the first commit; 256 batches of up
/// to 256 commands each is far more than a cluster commits in that time,
/// and their answers stay a small part of a snapshot.
pub const KEPT_BATCHES: usize = 256;

/// A batch applied recently, and what it answered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct RecentBatch {
    /// Its id.
    pub id: u64,
    /// The answers of its commands, in order.
    pub responses: Vec<Response>,
}

impl ClusterState {
    /// Applies a batch's commands in order, unless a batch with its id was
    /// applied within the last [`KEPT_BATCHES`]: then it answers as that one
    /// did. A batch without an id (an entry written before ids) always
    /// applies.
    pub(super) fn apply_batch(
        &mut self,
        index: u64,
        commands: &[Command],
        id: Option<u64>,
        changes: &mut Vec<Change>,
    ) -> Response {
        if let Some(seen) = id.and_then(|id| self.recent_batches.iter().find(|b| b.id == id)) {
            return Response::Batch {
                responses: seen.responses.clone(),
            };
        }
        let mut responses = Vec::with_capacity(commands.len());
        for c in commands {
            let (r, more) = self.apply_one(index, c);
            responses.push(r);
            changes.extend(more);
        }
        if let Some(id) = id {
            if self.recent_batches.len() >= KEPT_BATCHES {
                self.recent_batches.pop_front();
            }
            self.recent_batches.push_back(RecentBatch {
                id,
                responses: responses.clone(),
            });
        }
        Response::Batch { responses }
    }
}
