//! [`RaftStore`]: the `Store` seam over openraft, the engine seam and the HTTP
//! transport.
//!
//! ```text
//!  propose / read_barrier / add_peer          (any node)
//!         │
//!         ▼
//!  call_leader ── leader here? ──► Inner::lead ──► openraft (client_write,
//!         │                          ▲              read index, membership)
//!         └─ no: POST /raft/forward ─┘ on the leader
//!         │
//!         ▼
//!  wait until this node's Replica applied the answered index
//! ```
//!
//! - **Reads.** `read_barrier` is openraft's linearizable read split across nodes:
//!   the leader confirms its leadership with a quorum (`get_read_log_id`) and answers
//!   the read index; the calling node, leader or not, waits until its own replica
//!   has applied it. On the leader this is exactly `ensure_linearizable`.
//! - **No quorum, no writes.** A leader that has heard from no majority of the
//!   voters for twice the longest election timeout is cut off, or deposed without
//!   knowing it yet: it says so in [`Leadership::quorum_lost`] (its control loop
//!   then stops acting) and refuses leader calls without appending anything, at once
//!   once the silence has lasted `rpc_timeout`, so a client of a cut-off minority
//!   hears "no majority" in about 2 s instead of waiting out `propose_timeout`.
//! - **Retries.** A call is retried (within its budget) while no leader is known, the
//!   node asked is not the leader, or the leader cannot be reached at all. An answer
//!   lost after the leader got the request is not retried (`Timeout` / `Forward`):
//!   the command may still commit. A leader deposed mid-write answers "not leader"
//!   although a successor may still commit the entry; Orion's commands are
//!   idempotent or re-checked by the state machine, so the retry is harmless.
//! - **Durability.** A command is in an fsync'd log entry before it commits. The
//!   commit pointer is written lazily (synced by the next append, or `shutdown`),
//!   so after a crash `open` may replay slightly less; the rest is applied as soon
//!   as the node (or its cluster) elects a leader and commits again.
//! - **Shutdown.** Call [`Store::shutdown`]: the server task holds the store, so a
//!   dropped handle alone keeps Raft running.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use openraft::error::{InitializeError, RaftError};
use openraft::Raft;
use orion_core::{
    Applied, Command, Leadership, NodeId, NodeRole, Peer, Replica, Store, StoreError, StoreStatus,
};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{timeout_at, Instant};
use tracing::{debug, info, warn};

use crate::config::RaftStoreConfig;
use crate::engine::{open_engine, LogEngine};
use crate::log_store::{blocking, LogStore};
use crate::network::{forward, ForwardFailure, HttpNetworkFactory};
use crate::rpc::{Forwarded, LeaderCall, LeaderReply};
use crate::state_machine::StateMachine;
pub use crate::status::LogStatus;
use crate::status::{log_status_of, track_leadership, CommitStall, QuorumAck};
use crate::types::{node_id_of, RaftNode, RaftNodeId, TypeConfig};

fn storage(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Storage(Box::new(e))
}

/// Where a leader-only call goes.
enum Route {
    Local,
    Remote(RaftNode),
    Unknown,
}

/// What the store's tasks and HTTP handlers share.
pub(crate) struct Inner {
    pub(crate) config: RaftStoreConfig,
    pub(crate) id: RaftNodeId,
    pub(crate) raft: Raft<TypeConfig>,
    pub(crate) replica: Arc<Replica>,
    engine: Arc<dyn LogEngine>,
    client: reqwest::Client,
    leadership: watch::Sender<Leadership>,
    /// When this node, leading, last heard from a majority.
    pub(crate) quorum_ack: Arc<QuorumAck>,
    /// How long entries have waited in the log uncommitted.
    commit_stall: Arc<CommitStall>,
    stop: watch::Sender<bool>,
    closed: AtomicBool,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Serializes membership changes made through this node.
    pub(crate) membership_lock: tokio::sync::Mutex<()>,
    /// Snapshot figures, shared with the state machine.
    snapshots: Arc<parking_lot::Mutex<orion_core::SnapshotStatus>>,
    /// The Raft port's secret, once known.
    pub(crate) secret: Arc<crate::network::RaftSecret>,
    /// Mutual TLS on the Raft port and to peers, when on.
    tls: Option<orion_core::tls::TlsState>,
    /// `https` with TLS, else `http`.
    pub(crate) scheme: &'static str,
}

/// Orion's replicated store: openraft 0.9 over sled or redb, with its own HTTP
/// transport. Cheap to clone; every clone is the same node.
///
/// ```no_run
/// # async fn demo() -> Result<(), orion_core::StoreError> {
/// use orion_store::{RaftStore, RaftStoreConfig};
/// use orion_core::Store;
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:7946").await.unwrap();
/// let mut config = RaftStoreConfig::new("n1", "/var/lib/orion/store");
/// config.raft_addr = listener.local_addr().unwrap().to_string();
/// let store = RaftStore::open(config).await?;
/// store.serve(listener)?;            // Raft RPCs + forwarding on the Raft port
/// store.initialize_single().await?;  // first manager only; a no-op on restart
/// let spec = orion_core::JobSpec::service("web", "nginx");
/// let applied = store.propose(orion_core::Command::UpsertJob { spec }).await?;
/// # let _ = applied; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RaftStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RaftStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftStore")
            .field("node_id", &self.inner.config.node_id)
            .field("engine", &self.inner.engine.name())
            .finish_non_exhaustive()
    }
}

impl RaftStore {
    /// Opens the store in `config.data_dir`: recovers the snapshot and replays the
    /// committed log into the replica, then starts Raft (not yet serving RPCs: see
    /// [`serve`](Self::serve) / [`router`](Self::router)).
    pub async fn open(config: RaftStoreConfig) -> Result<RaftStore, StoreError> {
        RaftStore::open_tls(config, None).await
    }

    /// As [`open`](Self::open), with mutual TLS under `tls` when given: the
    /// Raft port serves TLS and asks every caller for a certificate from the
    /// cluster CA, and every RPC and forwarded call to a peer presents this
    /// node's certificate (read at each handshake, so a renewed one is used
    /// without a restart).
    pub async fn open_tls(
        config: RaftStoreConfig,
        tls: Option<orion_core::tls::TlsState>,
    ) -> Result<RaftStore, StoreError> {
        config.validate().map_err(storage)?;
        orion_core::tls::ensure_default_provider();
        let raft_config = Arc::new(config.raft_config().map_err(storage)?);
        let id = node_id_of(&config.node_id);
        let (engine_kind, dir) = (config.engine, config.data_dir.clone());
        let engine = blocking(move || open_engine(engine_kind, &dir))
            .await
            .map_err(storage)?;
        let replica = Arc::new(Replica::default());
        let sm = StateMachine::open(engine.clone(), replica.clone()).map_err(storage)?;
        let snapshots = sm.snapshot_stats();
        let mut client = reqwest::Client::builder()
            .connect_timeout(config.rpc_timeout)
            .no_proxy();
        client = match &tls {
            Some(tls) => client.use_preconfigured_tls(tls.client_config()),
            None => client.use_preconfigured_tls(orion_core::tls::plain_client_config()),
        };
        let client = client.build().map_err(storage)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let secret = Arc::new(crate::network::RaftSecret::new(replica.clone()));
        let network = HttpNetworkFactory::new(id, client.clone(), secret.clone(), scheme);
        let raft = Raft::new(id, raft_config, network, LogStore::new(engine.clone()), sm)
            .await
            .map_err(storage)?;
        let (leadership, _) = watch::channel(Leadership::default());
        let (stop, stop_rx) = watch::channel(false);
        let quorum_ack = Arc::new(QuorumAck::default());
        let commit_stall = Arc::new(CommitStall::default());
        let tracker = tokio::spawn(track_leadership(
            raft.metrics(),
            leadership.clone(),
            quorum_ack.clone(),
            commit_stall.clone(),
            stop_rx,
            id,
            (config.heartbeat_interval, config.quorum_lost_after()),
        ));
        info!(
            node_id = %config.node_id,
            engine = engine.name(),
            applied = replica.applied_index(),
            "store opened"
        );
        Ok(RaftStore {
            inner: Arc::new(Inner {
                config,
                id,
                raft,
                replica,
                engine,
                client,
                leadership,
                quorum_ack,
                commit_stall,
                stop,
                closed: AtomicBool::new(false),
                tasks: Mutex::new(vec![tracker]),
                membership_lock: tokio::sync::Mutex::new(()),
                snapshots,
                secret,
                tls,
                scheme,
            }),
        })
    }

    /// This node as a Raft member record (a manager).
    fn me(&self) -> RaftNode {
        let c = &self.inner.config;
        RaftNode {
            id: c.node_id.clone(),
            raft_addr: c.raft_addr.clone(),
            http_addr: c.http_addr.clone(),
            role: NodeRole::Manager,
        }
    }

    /// This node's record in the membership its log holds, if it holds one
    /// naming it: a node restarted with its data is already a member and needs
    /// no join (asking again would be a membership change at every restart,
    /// and a start that fails when no member answers).
    pub async fn own_record(&self) -> Option<Peer> {
        let raft = &self.inner.raft;
        if !raft.is_initialized().await.ok()? {
            return None;
        }
        // The core holds the membership it loaded; its metrics may publish it
        // a moment after the store opened.
        let mut rx = raft.metrics();
        let loaded = rx.wait_for(|m| m.membership_config.log_id().is_some());
        let m = tokio::time::timeout(Duration::from_secs(5), loaded)
            .await
            .ok()?
            .ok()?;
        m.membership_config
            .membership()
            .get_node(&self.inner.id)
            .map(RaftNode::to_peer)
    }

    /// Bootstraps a one-voter cluster of this node and waits until it leads.
    ///
    /// A no-op when the node already holds Raft state (restarted, or added to a
    /// cluster by its leader): it never re-initializes or wipes anything. Call it on
    /// the first manager only; others join through [`Store::add_peer`] on the leader.
    pub async fn initialize_single(&self) -> Result<(), StoreError> {
        let raft = &self.inner.raft;
        if raft.is_initialized().await.map_err(storage)? {
            return Ok(());
        }
        let members = BTreeMap::from([(self.inner.id, self.me())]);
        match raft.initialize(members).await {
            Ok(()) => {}
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => return Ok(()),
            Err(e) => return Err(StoreError::Membership(e.to_string())),
        }
        self.wait_for_leader(self.inner.config.propose_timeout)
            .await
            .map(drop)
    }

    /// The routes serving Raft's RPCs and forwarded calls (`/raft/*`). Mount them on
    /// the listener peers reach at [`RaftStoreConfig::raft_addr`], alone or merged into
    /// another router.
    pub fn router(&self) -> axum::Router {
        crate::server::router(self.inner.clone())
    }

    /// Serves [`router`](Self::router) on `listener` in a task the store owns; it
    /// stops on [`shutdown`](Store::shutdown). Returns the bound address.
    pub fn serve(&self, listener: tokio::net::TcpListener) -> Result<SocketAddr, StoreError> {
        let addr = listener.local_addr().map_err(storage)?;
        let router = self.router();
        let mut stop = self.inner.stop.subscribe();
        let node = self.inner.config.node_id.clone();
        let tls = self.inner.tls.as_ref().map(|t| t.server_config(true));
        let task = tokio::spawn(async move {
            let signal = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            orion_core::serve::serve_tls(listener, router, raft_listener(), tls, signal).await;
            debug!(node_id = %node, "raft server stopped");
        });
        self.inner.tasks.lock().push(task);
        Ok(addr)
    }

    /// Waits until some node leads (as this node sees it), at most `limit`.
    pub async fn wait_for_leader(&self, limit: Duration) -> Result<Leadership, StoreError> {
        let mut rx = self.inner.leadership.subscribe();
        let res = tokio::time::timeout(limit, async {
            rx.wait_for(|l| l.leader.is_some()).await.map(|l| l.clone())
        })
        .await;
        match res {
            Ok(Ok(l)) => Ok(l),
            Ok(Err(_)) => Err(StoreError::Shutdown),
            Err(_) => Err(StoreError::NoLeader(format!("no leader within {limit:?}"))),
        }
    }

    /// Where this node's log stands.
    pub fn log_status(&self) -> LogStatus {
        log_status_of(&self.inner.raft.metrics().borrow())
    }

    /// Waits until the log status satisfies `pred`, at most `limit`.
    pub async fn wait_log_status(
        &self,
        limit: Duration,
        pred: impl Fn(&LogStatus) -> bool,
    ) -> Result<LogStatus, StoreError> {
        let mut rx = self.inner.raft.metrics();
        let res = tokio::time::timeout(limit, async {
            rx.wait_for(|m| pred(&log_status_of(m)))
                .await
                .map(|m| log_status_of(&m))
        })
        .await;
        match res {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(_)) => Err(StoreError::Shutdown),
            Err(_) => Err(StoreError::Timeout),
        }
    }

    /// Builds a snapshot now (and purges the log behind it), instead of waiting for
    /// [`RaftStoreConfig::snapshot_threshold`]; returns once the snapshot exists.
    pub async fn snapshot_now(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        let mut rx = inner.raft.metrics();
        let target = rx.borrow_and_update().last_applied;
        let deadline = Instant::now() + inner.config.propose_timeout;
        loop {
            if rx.borrow_and_update().snapshot >= target {
                return Ok(());
            }
            // openraft ignores a trigger while a build (maybe of an older index) runs,
            // so trigger again until a snapshot covers the target.
            inner.raft.trigger().snapshot().await.map_err(storage)?;
            let retry = Instant::now() + inner.config.heartbeat_interval;
            if Instant::now() >= deadline {
                return Err(StoreError::Timeout);
            }
            if let Ok(Err(_)) = timeout_at(retry.min(deadline), rx.changed()).await {
                return Err(StoreError::Shutdown);
            }
        }
    }

    /// The storage engine's name (`sled`, `redb`).
    pub fn engine_name(&self) -> &'static str {
        self.inner.engine.name()
    }

    fn check_open(&self) -> Result<(), StoreError> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(StoreError::Shutdown)
        } else {
            Ok(())
        }
    }

    fn route(&self) -> Route {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        match m.current_leader {
            Some(l) if l == self.inner.id => Route::Local,
            Some(l) => m
                .membership_config
                .membership()
                .get_node(&l)
                .cloned()
                .map_or(Route::Unknown, Route::Remote),
            None => Route::Unknown,
        }
    }

    /// Waits (bounded) for Raft's view to change, e.g. a leader to be elected.
    async fn settle(&self, deadline: Instant) {
        let mut rx = self.inner.raft.metrics();
        rx.borrow_and_update();
        let cap = Instant::now() + self.inner.config.heartbeat_interval;
        let _ = timeout_at(deadline.min(cap), rx.changed()).await;
    }

    /// Carries `call` out on the leader, here or forwarded, retrying while no leader
    /// is known or the leader changes, until `budget` runs out.
    async fn call_leader(
        &self,
        call: LeaderCall,
        budget: Duration,
    ) -> Result<LeaderReply, StoreError> {
        let deadline = Instant::now() + budget;
        loop {
            self.check_open()?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let outcome = match self.route() {
                Route::Local => Ok(self.inner.lead(call.clone(), remaining).await),
                Route::Remote(leader) => {
                    // Leave the leader a margin to answer before our own deadline.
                    let fwd = Forwarded {
                        call: call.clone(),
                        budget: remaining.mul_f32(0.9),
                    };
                    let secret = self.inner.secret.get();
                    match forward(
                        &self.inner.client,
                        self.inner.scheme,
                        &leader.raft_addr,
                        &fwd,
                        remaining,
                        secret,
                    )
                    .await
                    {
                        Ok(reply) => Ok(reply),
                        Err(ForwardFailure::NotSent(e)) => {
                            Err(format!("leader {} unreachable: {e}", leader.id))
                        }
                        Err(ForwardFailure::TimedOut) => return Err(StoreError::Timeout),
                        Err(ForwardFailure::Lost(e)) => return Err(StoreError::Forward(e)),
                    }
                }
                Route::Unknown => Err("no leader is known".into()),
            };
            let why = match outcome {
                Ok(LeaderReply::Failed { error }) if error.is_retry() => format!("{error:?}"),
                Ok(LeaderReply::Failed { error }) => return Err(error.into()),
                Ok(reply) => return Ok(reply),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(StoreError::NoLeader(why));
            }
            self.settle(deadline).await;
        }
    }

    /// Waits until this node's replica applied `index`.
    async fn caught_up(&self, index: u64, deadline: Instant) -> Result<(), StoreError> {
        // Give the local apply at least an RPC's time even if the call used the budget.
        let deadline = deadline.max(Instant::now() + self.inner.config.rpc_timeout);
        timeout_at(deadline, self.inner.replica.wait_for(index))
            .await
            .map_err(|_| StoreError::Timeout)
    }
}

/// How the Raft port faces its clients: its own listener with its own room
/// (1,024 connections: peers keep a few each), so no flood of API clients can
/// take the connections Raft needs; heads and idle connections timed out as
/// on the API.
fn raft_listener() -> orion_core::serve::ServeConfig {
    orion_core::serve::ServeConfig {
        max_connections: 1_024,
        ..Default::default()
    }
}

#[async_trait]
impl Store for RaftStore {
    async fn propose(&self, cmd: Command) -> Result<Applied, StoreError> {
        let budget = self.inner.config.propose_timeout;
        let deadline = Instant::now() + budget;
        match self
            .call_leader(LeaderCall::Propose { cmd: Box::new(cmd) }, budget)
            .await?
        {
            LeaderReply::Applied { applied } => {
                self.caught_up(applied.index, deadline).await?;
                Ok(applied)
            }
            other => Err(StoreError::Forward(format!("unexpected reply {other:?}"))),
        }
    }

    fn replica(&self) -> &Arc<Replica> {
        &self.inner.replica
    }

    async fn read_barrier(&self) -> Result<(), StoreError> {
        let budget = self.inner.config.propose_timeout;
        let deadline = Instant::now() + budget;
        match self.call_leader(LeaderCall::ReadIndex, budget).await? {
            LeaderReply::ReadIndex { index } => self.caught_up(index, deadline).await,
            other => Err(StoreError::Forward(format!("unexpected reply {other:?}"))),
        }
    }

    fn leadership(&self) -> watch::Receiver<Leadership> {
        self.inner.leadership.subscribe()
    }

    async fn add_peer(&self, peer: Peer) -> Result<(), StoreError> {
        let budget = self.inner.config.membership_timeout;
        self.call_leader(LeaderCall::AddPeer { peer }, budget)
            .await
            .map(drop)
    }

    async fn remove_peer(&self, id: &NodeId) -> Result<(), StoreError> {
        let budget = self.inner.config.membership_timeout;
        let call = LeaderCall::RemovePeer { id: id.clone() };
        self.call_leader(call, budget).await.map(drop)
    }

    fn status(&self) -> StoreStatus {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        let last = m.last_log_index.unwrap_or(0);
        let applied = m.last_applied.map_or(0, |l| l.index);
        let membership = m.membership_config.membership();
        let followers_behind = m
            .replication
            .iter()
            .flatten()
            .filter(|(id, _)| **id != self.inner.id && membership.voter_ids().any(|v| v == **id))
            .filter_map(|(id, matched)| {
                let node = membership.get_node(id)?;
                Some((
                    node.id.clone(),
                    last.saturating_sub(matched.map_or(0, |l| l.index)),
                ))
            })
            .collect();
        StoreStatus {
            last_log_index: last,
            applied_index: applied,
            unapplied: last.saturating_sub(applied),
            followers_behind,
            snapshots: self.inner.snapshots.lock().clone(),
            commit_stalled_ms: u64::try_from(
                self.inner.commit_stall.observe(last, applied).as_millis(),
            )
            .unwrap_or(u64::MAX),
        }
    }

    fn voters(&self) -> Vec<Peer> {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        membership
            .voter_ids()
            .filter_map(|id| membership.get_node(&id).map(RaftNode::to_peer))
            .collect()
    }

    async fn shutdown(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        if inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        inner.stop.send_replace(true);
        if let Err(e) = inner.raft.shutdown().await {
            warn!(node_id = %inner.config.node_id, error = %e, "raft task ended badly");
        }
        let tasks: Vec<_> = inner.tasks.lock().drain(..).collect();
        for mut task in tasks {
            // In-flight forwarded calls may hold the server briefly; never forever.
            if tokio::time::timeout(inner.config.rpc_timeout, &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
        let engine = inner.engine.clone();
        blocking(move || engine.close()).await.map_err(storage)?;
        info!(node_id = %inner.config.node_id, "store shut down");
        Ok(())
    }
}
