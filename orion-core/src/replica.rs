//! A replica of the state machine as stores share it: the state behind a lock,
//! the applied index as a watch, and committed changes as a broadcast.
//!
//! Every [`crate::Store`] implementation owns one [`Replica`] and feeds it the
//! commands it commits, in order; readers (the API, the reconciler, the agent)
//! read through it and wake on its watch.

use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::command::{Command, Response};
use crate::state::{Change, ClusterState};

/// Changes made by one applied command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeBatch {
    /// The command's index in the log.
    pub index: u64,
    /// What it changed.
    pub changes: Vec<Change>,
}

/// How many change batches a slow watcher may fall behind before it must resync.
const CHANGE_BUFFER: usize = 4096;

/// The state machine plus its notifications.
#[derive(Debug)]
pub struct Replica {
    /// Shared with [`current`](Replica::current) holders; an apply changes it in
    /// place unless a snapshot is still held, and only then copies it.
    state: RwLock<Arc<ClusterState>>,
    applied: watch::Sender<u64>,
    changes: broadcast::Sender<Arc<ChangeBatch>>,
}

impl Default for Replica {
    fn default() -> Self {
        Self::new(ClusterState::default())
    }
}

impl Replica {
    /// A replica starting from `state` (empty, or restored from a snapshot).
    pub fn new(state: ClusterState) -> Self {
        let (applied, _) = watch::channel(state.applied_index);
        let (changes, _) = broadcast::channel(CHANGE_BUFFER);
        Replica {
            state: RwLock::new(Arc::new(state)),
            applied,
            changes,
        }
    }

    /// Applies a committed command at `index` and notifies watchers.
    pub fn apply(&self, index: u64, cmd: &Command) -> Response {
        let (response, changes) = Arc::make_mut(&mut self.state.write()).apply(index, cmd);
        self.publish(index, changes);
        response
    }

    /// Advances the applied index without a command (Raft's blank and membership entries).
    pub fn advance(&self, index: u64) {
        Arc::make_mut(&mut self.state.write()).applied_index = index;
        self.applied.send_replace(index);
    }

    fn publish(&self, index: u64, changes: Vec<Change>) {
        if !changes.is_empty() {
            // No receivers is fine: nobody watches yet.
            let _ = self.changes.send(Arc::new(ChangeBatch { index, changes }));
        }
        self.applied.send_replace(index);
    }

    /// Replaces the whole state (snapshot install).
    pub fn restore(&self, state: ClusterState) {
        let index = state.applied_index;
        *self.state.write() = Arc::new(state);
        self.publish(index, Vec::new());
    }

    /// Reads the state under the lock; keep `f` short, it blocks appliers.
    pub fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        f(&self.state.read())
    }

    /// Whether someone reads or writes the state under its lock right now (for
    /// tests that check a pass plans on a snapshot instead).
    #[cfg(any(test, feature = "testing"))]
    pub fn is_locked(&self) -> bool {
        self.state.is_locked()
    }

    /// The state as of now, to plan on without holding the lock that appliers
    /// and readers wait on (a control-loop pass takes this). Cheap to take; an
    /// apply while it is held copies the state once.
    pub fn current(&self) -> Arc<ClusterState> {
        self.state.read().clone()
    }

    /// A serialized copy of the state, for a snapshot.
    pub fn snapshot(&self) -> Vec<u8> {
        self.state.read().to_snapshot()
    }

    /// Index of the last command applied.
    pub fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }

    /// A watch that changes whenever a command is applied.
    pub fn subscribe_applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// A receiver of change batches from now on.
    pub fn subscribe_changes(&self) -> broadcast::Receiver<Arc<ChangeBatch>> {
        self.changes.subscribe()
    }

    /// Waits until the applied index reaches `index`.
    pub async fn wait_for(&self, index: u64) {
        let mut rx = self.applied.subscribe();
        // The sender lives as long as self, so this only ends when the index is reached.
        let _ = rx.wait_for(|i| *i >= index).await;
    }
}
