//! `ChitchatMembership`: the `Membership` seam over a chitchat gossip node.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use chitchat::transport::{Transport, UdpTransport};
use chitchat::{spawn_chitchat, ChitchatHandle, Version};
use orion_core::membership::{Member, Membership, MembershipError, MembershipEvent};
use orion_core::model::NodeId;
use parking_lot::{Mutex as SyncMutex, RwLock};
use tokio::sync::{broadcast, watch, Mutex};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::codec::{self, MEMBER_KEY};
use crate::config::GossipConfig;
use crate::error::{error_chain, GossipError};
use crate::events::{Shared, Watcher};
use crate::transport::{EncryptedUdpTransport, PacketStats};

/// Membership over chitchat: gossip, phi-accrual failure detection, and each
/// node's metadata as key-values.
///
/// A cheap handle: clones share one gossip node. [`shutdown`](Membership::shutdown)
/// stops it gracefully (waits for its tasks); dropping the last clone without
/// it aborts them.
///
/// - [`live`](Membership::live) includes the local node from the start.
/// - Events are diffed from chitchat's successive live sets (see
///   the `events` module): `Joined`, `Updated { previous, updated }`, `Dead`.
///   `Suspect` is never sent: chitchat only tells live from dead.
/// - A node that restarts with a higher generation is reported `Joined` again;
///   its stale incarnation is dropped.
///
/// ```no_run
/// use orion_core::membership::{Member, Membership};
/// use orion_gossip::{ChitchatMembership, GossipConfig};
///
/// # async fn example(me: Member) -> Result<(), Box<dyn std::error::Error>> {
/// let mut config = GossipConfig::new(me);
/// config.listen_addr = "10.0.0.2:7947".parse()?;
/// config.seeds = vec!["10.0.0.1:7947".into()];
/// let membership = ChitchatMembership::start(config).await?;
/// let mut events = membership.subscribe();
/// while let Ok(event) = events.recv().await {
///     println!("{event:?}");
/// }
/// membership.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ChitchatMembership {
    inner: Arc<Inner>,
}

/// What the clones share.
struct Inner {
    /// The local node's id, for `local_id()`.
    local_id: NodeId,
    /// The local node's generation.
    generation: u64,
    /// The address peers gossip to.
    advertise_addr: SocketAddr,
    /// The encrypted transport, when gossip is sealed: its counters.
    encrypted: Option<EncryptedUdpTransport>,
    /// Live map and event channel, shared with the watcher task.
    shared: Arc<Shared>,
    /// The local key-value version the watcher has applied; `publish` waits on it.
    applied: watch::Receiver<Version>,
    /// The chitchat server; `None` once shut down.
    server: Mutex<Option<ChitchatHandle>>,
    /// Tells the watcher task to stop.
    stop: watch::Sender<bool>,
    /// The watcher task; `None` once shut down.
    watcher: SyncMutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChitchatMembership")
            .field("local_id", &self.local_id)
            .field("generation", &self.generation)
            .field("advertise_addr", &self.advertise_addr)
            .field("encrypted", &self.encrypted.is_some())
            .finish_non_exhaustive()
    }
}

impl ChitchatMembership {
    /// Validates `config`, binds its UDP listen address and starts gossiping
    /// to the seeds. Must run inside a tokio runtime.
    ///
    /// With a [`keyring`](GossipConfig::keyring) every packet is sealed
    /// ([`EncryptedUdpTransport`]) and [`packet_stats`](Self::packet_stats)
    /// counts what was dropped; without one, gossip is clear text
    /// ([`UdpTransport`]).
    pub async fn start(config: GossipConfig) -> Result<Self, GossipError> {
        match config.keyring.clone() {
            Some(keyring) => {
                let transport = EncryptedUdpTransport::new(keyring);
                Self::start_inner(config, &transport, Some(transport.clone())).await
            }
            None => Self::start_inner(config, &UdpTransport, None).await,
        }
    }

    /// As [`start`](Self::start), over any chitchat transport; tests use
    /// [`ChannelTransport`](crate::transport::ChannelTransport), whose links
    /// can be cut to make partitions. The config's keyring is not used: the
    /// transport is what it is (pass an [`EncryptedUdpTransport`] to encrypt,
    /// and read its counters from it).
    pub async fn start_with_transport(
        config: GossipConfig,
        transport: &dyn Transport,
    ) -> Result<Self, GossipError> {
        if config.keyring.is_some() {
            warn!(node_id = %config.member.id, "gossip keyring ignored: starting over the given transport");
        }
        Self::start_inner(config, transport, None).await
    }

    /// Starts over `transport`; `encrypted` is kept for [`packet_stats`](Self::packet_stats).
    async fn start_inner(
        config: GossipConfig,
        transport: &dyn Transport,
        encrypted: Option<EncryptedUdpTransport>,
    ) -> Result<Self, GossipError> {
        config.validate()?;
        let advertise_addr = config.effective_advertise_addr();
        let mut local = config.member.clone();
        local.generation = config.generation;
        local.addrs.gossip.get_or_insert(advertise_addr.to_string());
        let initial = vec![(MEMBER_KEY.to_string(), codec::encode(&local)?)];

        let server = spawn_chitchat(config.to_chitchat(), initial, transport)
            .await
            .map_err(|source| GossipError::Start {
                addr: config.listen_addr,
                source: source.into(),
            })?;
        let chitchat_id = server.chitchat_id().clone();
        let snapshots = server.with_chitchat(|c| c.live_nodes_watcher()).await;
        let server_ended = server.termination_watcher();

        let (events, _) = broadcast::channel(config.event_capacity);
        let shared = Arc::new(Shared {
            live: RwLock::new(BTreeMap::from([(local.id.clone(), local.clone())])),
            events,
        });
        let (applied_tx, applied) = watch::channel(0);
        let (stop, stop_rx) = watch::channel(false);
        let watcher = Watcher {
            local: chitchat_id,
            snapshots,
            shared: shared.clone(),
            applied: applied_tx,
        };
        let watcher = tokio::spawn(watcher.run(stop_rx, server_ended));
        info!(node_id = %local.id, generation = local.generation, addr = %advertise_addr, cluster_id = %config.cluster_id, encrypted = encrypted.is_some(), "gossip started");

        Ok(ChitchatMembership {
            inner: Arc::new(Inner {
                local_id: local.id,
                generation: config.generation,
                advertise_addr,
                encrypted,
                shared,
                applied,
                server: Mutex::new(Some(server)),
                stop,
                watcher: SyncMutex::new(Some(watcher)),
            }),
        })
    }

    /// The local node's generation (its incarnation).
    pub fn generation(&self) -> u64 {
        self.inner.generation
    }

    /// The address peers gossip to.
    pub fn gossip_addr(&self) -> SocketAddr {
        self.inner.advertise_addr
    }

    /// The encrypted transport's packet counters (sent, received, delivered,
    /// dropped by reason), for metrics and health; `None` when gossip is clear
    /// text or was started with [`start_with_transport`](Self::start_with_transport).
    pub fn packet_stats(&self) -> Option<PacketStats> {
        self.inner
            .encrypted
            .as_ref()
            .map(EncryptedUdpTransport::stats)
    }
}

#[async_trait]
impl Membership for ChitchatMembership {
    fn local_id(&self) -> &NodeId {
        &self.inner.local_id
    }

    /// Live members as of the last gossip round, the local node included; after
    /// shutdown, the last view.
    fn live(&self) -> Vec<Member> {
        self.inner.shared.live.read().values().cloned().collect()
    }

    fn subscribe(&self) -> broadcast::Receiver<MembershipEvent> {
        self.inner.shared.events.subscribe()
    }

    /// Sets the local node's key-value, then waits for the next gossip round
    /// to pick it up (one gossip interval at most), so that when this returns
    /// [`live`](Membership::live) shows it and its `Updated` event has been
    /// sent. The id and generation of `member` are ignored: they are the
    /// handle's. A `gossip` address left `None` is filled with the advertise
    /// address. Publishing identical metadata is a no-op.
    ///
    /// Errors: [`MembershipError::Shutdown`] after shutdown;
    /// [`MembershipError::Transport`] if a resource amount is not finite.
    async fn publish(&self, member: Member) -> Result<(), MembershipError> {
        let mut member = member;
        member
            .addrs
            .gossip
            .get_or_insert(self.inner.advertise_addr.to_string());
        let value = codec::encode(&member)
            .map_err(|err| MembershipError::Transport(error_chain(&GossipError::Encode(err))))?;
        let target = {
            let server = self.inner.server.lock().await;
            let server = server.as_ref().ok_or(MembershipError::Shutdown)?;
            server
                .with_chitchat(|chitchat| {
                    let state = chitchat.self_node_state();
                    state.set(MEMBER_KEY, &value);
                    state.max_version()
                })
                .await
        };
        let mut applied = self.inner.applied.clone();
        applied
            .wait_for(|version| *version >= target)
            .await
            .map_err(|_| MembershipError::Shutdown)?;
        Ok(())
    }

    /// Stops the watcher task, then the chitchat server, and waits for both;
    /// the UDP socket is closed when this returns. Peers see the node go
    /// silent and declare it dead (chitchat has no leave message). Idempotent.
    async fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
        let watcher = self.inner.watcher.lock().take();
        if let Some(watcher) = watcher {
            if let Err(err) = watcher.await {
                warn!(node_id = %self.inner.local_id, %err, "membership watcher task failed");
            }
        }
        let server = self.inner.server.lock().await.take();
        if let Some(server) = server {
            if let Err(err) = server.shutdown().await {
                warn!(node_id = %self.inner.local_id, error = %err, "gossip server failed on shutdown");
            }
            info!(node_id = %self.inner.local_id, "gossip stopped");
        }
    }
}

/// Forceful shutdown: the last handle dropped without `shutdown` aborts the tasks.
impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(watcher) = self.watcher.get_mut().take() {
            watcher.abort();
        }
        if let Some(server) = self.server.get_mut().take() {
            server.abort();
        }
    }
}
