//! Orion, the embeddable container orchestrator, in one crate.
//!
//! A whole cluster node — Raft-replicated state, the scheduler, the node agent
//! driving Docker, the HTTP API — runs in-process behind one builder:
//!
//! ```no_run
//! use orion::{Cluster, DockerRuntime, JobSpec};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let cluster = Cluster::builder()
//!     .data_dir("/var/lib/orion")
//!     .runtime(DockerRuntime::connect_local()?)
//!     .start()
//!     .await?;
//! let job = cluster.submit(JobSpec::service("web", "nginx").port("http", 80).replicas(3)).await?;
//! println!("web is at version {}", job.version);
//! # Ok(()) }
//! ```
//!
//! This crate adds nothing but defaults: [`Cluster::builder`] is
//! [`orion_core::Cluster::builder`] with the durable [`RaftStore`] as the store of
//! a single-node cluster in the builder's data dir. Everything else is re-exported
//! from `orion-core` (the model, the seams, the scheduler, the API),
//! `orion-runtime` ([`DockerRuntime`]), `orion-store` ([`RaftStore`]) and
//! `orion-gossip` ([`ChitchatMembership`]). A multi-node setup wires the store and
//! gossip itself, as `orion-node agent` does.
//!
//! # Layout
//!
//! - [`Cluster`]: the builder with defaults; the running handle is
//!   [`ClusterHandle`] (`orion_core::Cluster`).
//! - [`RaftStoreFactory`]: opens a one-voter [`RaftStore`] in `<data dir>/store`.

use std::sync::Arc;

use async_trait::async_trait;

pub use orion_core::*;
pub use orion_core::{Cluster as ClusterHandle, ClusterBuilder};
pub use orion_gossip::{ChitchatMembership, GossipConfig};
pub use orion_runtime::{image, DockerConfig, DockerRuntime};
pub use orion_store::{Engine, RaftStore, RaftStoreConfig};

/// Builds a node with Orion's default adapters.
#[derive(Debug, Clone, Copy)]
pub struct Cluster;

impl Cluster {
    /// A builder whose store, unless given, is a durable single-node [`RaftStore`]
    /// in the data dir (the default engine, redb).
    pub fn builder() -> ClusterBuilder {
        orion_core::Cluster::builder().store_factory(Arc::new(RaftStoreFactory::default()))
    }
}

/// Opens a [`RaftStore`] for one node and makes it a one-voter cluster when it is new.
#[derive(Debug, Clone, Default)]
pub struct RaftStoreFactory {
    /// The storage engine.
    pub engine: Engine,
}

#[async_trait]
impl StoreFactory for RaftStoreFactory {
    async fn open(&self, ctx: &StoreContext) -> Result<Arc<dyn Store>, StoreError> {
        let mut config = RaftStoreConfig::new(ctx.node.id.clone(), ctx.data_dir.join("store"));
        config.engine = self.engine;
        // A single node exchanges no Raft RPCs; the addresses only describe it.
        config.raft_addr = ctx
            .node
            .addrs
            .raft
            .clone()
            .unwrap_or_else(|| "127.0.0.1:7946".into());
        if !ctx.node.addrs.http.is_empty() {
            config.http_addr = ctx.node.addrs.http.clone();
        }
        let store = RaftStore::open(config).await?;
        store.initialize_single().await?;
        Ok(Arc::new(store))
    }
}
