//! Orion's replicated store: the `Store` seam's real adapter, [`RaftStore`] —
//! openraft 0.9 (`storage-v2`) over a small storage-engine seam (sled or redb),
//! with its own HTTP transport.
//!
//! # Layout
//!
//! - [`config`]: [`RaftStoreConfig`] and [`Engine`].
//! - [`store`]: [`RaftStore`], the `orion_core::Store` implementation; forwarding of
//!   leader-only calls from followers. `status`: [`LogStatus`] and leadership.
//! - `leader`: what the leader does with those calls (commit, read index, membership).
//! - [`types`]: openraft's type config, [`RaftNode`], node-id hashing.
//! - [`engine`]: the [`LogEngine`](engine::LogEngine) seam, [`engine::SledEngine`],
//!   [`engine::RedbEngine`].
//! - [`log_store`]: openraft's `RaftLogStorage` over an engine.
//! - [`state_machine`]: openraft's `RaftStateMachine` over `orion_core::Replica`,
//!   snapshots included.
//! - `fuzz` (feature `testing`): the body of the Raft RPC and forwarding fuzz
//!   target.
//! - [`network`] (client) and `server` (axum routes): the HTTP transport; `rpc`: the
//!   forwarded calls' wire format.
//!
//! # Serving
//!
//! Raft RPCs and forwarded calls live under `/raft/*`: [`RaftStore::serve`] runs them
//! on a listener in a task the store owns, or [`RaftStore::router`] hands the routes
//! out to mount elsewhere. Peers reach a node at [`RaftStoreConfig::raft_addr`].
//!
//! # Lifecycle
//!
//! ```text
//! open ─► serve ─► initialize_single (first manager only; no-op on restart)
//!                  or wait to be added by the leader (add_peer: learner, then voter)
//!      ─► propose / read_barrier / add_peer / remove_peer (any node; forwarded)
//!      ─► shutdown (stops Raft and the server, flushes and closes the engine)
//! ```
//!
//! # Engines
//!
//! [`Engine::Redb`] is the default, chosen by the `store_engines` benchmark; the
//! figures are in [`Engine`]'s docs.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod config;
pub mod engine;
#[cfg(any(test, feature = "testing"))]
pub mod fuzz;
mod leader;
pub mod log_store;
pub mod network;
mod rpc;
mod server;
pub mod state_machine;
mod status;
pub mod store;
pub mod types;

pub use config::{ConfigError, Engine, RaftStoreConfig};
pub use store::{LogStatus, RaftStore};
pub use types::{node_id_of, RaftNode, TypeConfig};
