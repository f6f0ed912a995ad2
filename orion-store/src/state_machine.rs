//! [`StateMachine`]: openraft's state machine (`RaftStateMachine`) over Orion's
//! [`Replica`], with snapshots persisted through the [`LogEngine`].
//!
//! The replica lives in memory; durability comes from the log plus the latest
//! snapshot. On open the snapshot (if any) is restored into the replica and openraft
//! replays the committed log after it.

use std::io::Cursor;
use std::sync::Arc;
use std::time::Instant;

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, StorageError,
    StorageIOError, StoredMembership,
};
use orion_core::{ClusterState, Replica, Response, SnapshotStatus};
use tokio::sync::Mutex;

use crate::engine::{EngineError, LogEngine, MetaKey};
use crate::log_store::{blocking, from_json, to_json};
use crate::types::{Entry, LogId, RaftNode, RaftNodeId, TypeConfig};

type StoreResult<T> = Result<T, StorageError<RaftNodeId>>;
type Meta = SnapshotMeta<RaftNodeId, RaftNode>;

/// A snapshot as kept in memory and on disk.
#[derive(Clone, Debug)]
struct StoredSnapshot {
    meta: Meta,
    data: Vec<u8>,
}

fn snapshot_err(e: impl std::error::Error + 'static) -> StorageError<RaftNodeId> {
    StorageIOError::new(ErrorSubject::Snapshot(None), ErrorVerb::Write, &e).into()
}

/// Writes a snapshot's meta and bytes in one durable write.
async fn persist(engine: &Arc<dyn LogEngine>, snap: &StoredSnapshot) -> Result<(), EngineError> {
    let meta = to_json(&snap.meta).map_err(|e| EngineError::backend("json", e))?;
    let data = snap.data.clone();
    let engine = engine.clone();
    blocking(move || {
        engine.put_meta(
            &[
                (MetaKey::SnapshotMeta, &meta),
                (MetaKey::SnapshotData, &data),
            ],
            true,
        )
    })
    .await
}

/// The state machine one Raft node applies committed entries to.
pub struct StateMachine {
    replica: Arc<Replica>,
    engine: Arc<dyn LogEngine>,
    last_applied: Option<LogId>,
    membership: StoredMembership<RaftNodeId, RaftNode>,
    /// The latest snapshot, shared with builders running beside the applier. Held
    /// across the disk write, so disk and memory always agree on which is newest.
    current: Arc<Mutex<Option<StoredSnapshot>>>,
    /// Tells snapshots built in the same term and index apart.
    builds: u64,
    /// What this node did with snapshots, for [`Store::status`](orion_core::Store::status).
    stats: Arc<parking_lot::Mutex<SnapshotStatus>>,
}

impl StateMachine {
    /// Opens the state machine: restores the persisted snapshot, if any, into `replica`.
    pub fn open(engine: Arc<dyn LogEngine>, replica: Arc<Replica>) -> Result<Self, EngineError> {
        let mut sm = StateMachine {
            replica,
            engine,
            last_applied: None,
            membership: StoredMembership::default(),
            current: Arc::new(Mutex::new(None)),
            builds: 0,
            stats: Default::default(),
        };
        let meta = sm.engine.get_meta(MetaKey::SnapshotMeta)?;
        let data = sm.engine.get_meta(MetaKey::SnapshotData)?;
        if let (Some(meta), Some(data)) = (meta, data) {
            let meta: Meta = from_json(&meta).map_err(|e| EngineError::backend("json", e))?;
            let state =
                ClusterState::from_snapshot(&data).map_err(|e| EngineError::backend("json", e))?;
            sm.replica.restore(state);
            sm.last_applied = meta.last_log_id;
            sm.membership = meta.last_membership.clone();
            {
                let mut st = sm.stats.lock();
                st.index = meta.last_log_id.map_or(0, |l| l.index);
                st.size_bytes = data.len() as u64;
            }
            sm.current = Arc::new(Mutex::new(Some(StoredSnapshot { meta, data })));
        }
        Ok(sm)
    }

    /// The snapshot figures this state machine keeps, shared (the machine itself
    /// moves into Raft).
    pub fn snapshot_stats(&self) -> Arc<parking_lot::Mutex<SnapshotStatus>> {
        self.stats.clone()
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> StoreResult<(Option<LogId>, StoredMembership<RaftNodeId, RaftNode>)> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StoreResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            match entry.payload {
                EntryPayload::Blank => {
                    self.replica.advance(index);
                    out.push(Response::Done);
                }
                EntryPayload::Normal(cmd) => out.push(self.replica.apply(index, &cmd)),
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    self.replica.advance(index);
                    out.push(Response::Done);
                }
            }
            self.last_applied = Some(entry.log_id);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Capture the state now: the builder runs beside the applier, which keeps going.
        self.builds += 1;
        let started = Instant::now();
        let id = match &self.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, self.builds),
            None => format!("none-{}", self.builds),
        };
        SnapshotBuilder {
            snapshot: StoredSnapshot {
                meta: Meta {
                    last_log_id: self.last_applied,
                    last_membership: self.membership.clone(),
                    snapshot_id: id,
                },
                data: self.replica.snapshot(),
            },
            engine: self.engine.clone(),
            current: self.current.clone(),
            stats: self.stats.clone(),
            started,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StoreResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StoreResult<()> {
        let data = snapshot.into_inner();
        let state = ClusterState::from_snapshot(&data).map_err(|e| {
            StorageIOError::new(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Read,
                &e,
            )
        })?;
        let snap = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        let mut current = self.current.lock().await;
        persist(&self.engine, &snap).await.map_err(snapshot_err)?;
        self.replica.restore(state);
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        {
            let mut st = self.stats.lock();
            st.installed += 1;
            st.index = meta.last_log_id.map_or(0, |l| l.index);
            st.size_bytes = snap.data.len() as u64;
        }
        *current = Some(snap);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StoreResult<Option<Snapshot<TypeConfig>>> {
        Ok(self.current.lock().await.clone().map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

/// Persists a snapshot captured by [`StateMachine::get_snapshot_builder`].
pub struct SnapshotBuilder {
    snapshot: StoredSnapshot,
    engine: Arc<dyn LogEngine>,
    current: Arc<Mutex<Option<StoredSnapshot>>>,
    stats: Arc<parking_lot::Mutex<SnapshotStatus>>,
    /// When the state was captured: the build's duration counts from here.
    started: Instant,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StoreResult<Snapshot<TypeConfig>> {
        let mut current = self.current.lock().await;
        // Keep the newest: an installed snapshot may have overtaken this build.
        let newer = current
            .as_ref()
            .is_some_and(|c| c.meta.last_log_id >= self.snapshot.meta.last_log_id);
        if !newer {
            persist(&self.engine, &self.snapshot)
                .await
                .map_err(snapshot_err)?;
            *current = Some(self.snapshot.clone());
            let mut st = self.stats.lock();
            st.built += 1;
            st.index = self.snapshot.meta.last_log_id.map_or(0, |l| l.index);
            st.size_bytes = self.snapshot.data.len() as u64;
            st.build_seconds = self.started.elapsed().as_secs_f64();
        }
        Ok(Snapshot {
            meta: self.snapshot.meta.clone(),
            snapshot: Box::new(Cursor::new(self.snapshot.data.clone())),
        })
    }
}
