//! `MemStore`: a single-replica store that commits by applying at once.

use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::command::Command;
use crate::model::NodeId;
use crate::replica::Replica;
use crate::store::{Applied, Leadership, Store, StoreError};

/// A store with one replica in memory; always the leader. Not durable.
#[derive(Debug)]
pub struct MemStore {
    replica: Arc<Replica>,
    /// Serializes proposals so indexes are assigned in apply order.
    next_index: Mutex<u64>,
    leadership: watch::Sender<Leadership>,
}

impl MemStore {
    /// An empty store whose leader is `node`.
    pub fn new(node: impl Into<NodeId>) -> Self {
        let (leadership, _) = watch::channel(Leadership {
            leader: Some(node.into()),
            leader_http: None,
            is_self: true,
            term: 1,
            quorum_lost: false,
        });
        MemStore {
            replica: Arc::new(Replica::default()),
            next_index: Mutex::new(0),
            leadership,
        }
    }

    /// Applies a command synchronously, for tests and simulations.
    pub fn apply_now(&self, cmd: &Command) -> Applied {
        let mut next = self.next_index.lock();
        *next += 1;
        let response = self.replica.apply(*next, cmd);
        Applied {
            index: *next,
            response,
        }
    }

    /// Says this node, leading, has heard from no majority (or has again), as a
    /// replicated store does when it is cut off.
    pub fn set_quorum_lost(&self, lost: bool) {
        self.leadership.send_modify(|l| l.quorum_lost = lost);
    }

    /// Takes leadership away (or gives it back), as a lost election would.
    pub fn set_leader(&self, is_self: bool) {
        self.leadership.send_modify(|l| {
            l.is_self = is_self;
            l.term += 1;
        });
    }
}

#[async_trait]
impl Store for MemStore {
    async fn propose(&self, cmd: Command) -> Result<Applied, StoreError> {
        if !self.leadership.borrow().is_self {
            return Err(StoreError::NoLeader("this MemStore was deposed".into()));
        }
        Ok(self.apply_now(&cmd))
    }

    fn replica(&self) -> &Arc<Replica> {
        &self.replica
    }

    async fn read_barrier(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn leadership(&self) -> watch::Receiver<Leadership> {
        self.leadership.subscribe()
    }

    async fn shutdown(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
