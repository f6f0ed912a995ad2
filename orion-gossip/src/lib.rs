//! Orion's `Membership` adapter over [chitchat](https://docs.rs/chitchat/0.13):
//! who is alive, with what capacity, tags and addresses, by gossip over UDP
//! with phi-accrual failure detection.
//!
//! Gossip informs, Raft decides: the events this crate emits are hints that the
//! leader commits through the store before anything acts on them.
//!
//! # Layout
//!
//! - [`config`] — [`GossipConfig`], its defaults and why (failure detection
//!   tuned to declare a dead node within ~2 s), and `validate()`.
//! - [`membership`] — [`ChitchatMembership`], the handle implementing
//!   [`Membership`](orion_core::membership::Membership).
//! - `events` — the task that diffs chitchat's live-node snapshots into
//!   `Joined` / `Updated` / `Dead` events.
//! - `diff` — the pure diff of two live sets.
//! - `codec` — a member as one chitchat key-value ([`MEMBER_KEY`]).
//! - `fuzz` (feature `testing`) — the body of the gossip codec fuzz target.
//! - [`error`] — [`GossipError`].
//! - [`keyring`] — [`Keyring`]: the cluster's gossip keys (install, use,
//!   remove, list), shared by a running transport.
//! - [`transport`] — [`EncryptedUdpTransport`](transport::EncryptedUdpTransport),
//!   every packet sealed with AES-256-GCM, dropped and counted unless it opens;
//!   and chitchat's own: UDP in clear text, and an in-memory one whose links can
//!   be cut, for partition tests.
//!
//! # Example
//!
//! ```no_run
//! use orion_core::membership::{Member, Membership};
//! use orion_gossip::{ChitchatMembership, GossipConfig, Keyring};
//!
//! # async fn example(me: Member) -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = GossipConfig::new(me);
//! config.seeds = vec!["10.0.0.1:7947".into()];
//! // The same key on every node; without a keyring gossip is clear text.
//! config.keyring = Some(Keyring::new(std::env::var("GOSSIP_KEY")?.parse()?));
//! let membership = ChitchatMembership::start(config).await?;
//! for member in membership.live() {
//!     println!("{} is alive at {}", member.id, member.addrs.http);
//! }
//! membership.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod codec;
pub mod config;
mod diff;
pub mod error;
mod events;
#[cfg(any(test, feature = "testing"))]
pub mod fuzz;
pub mod keyring;
pub mod membership;
pub mod transport;

pub use codec::{EncodeError, MEMBER_KEY};
pub use config::{ConfigError, GossipConfig};
pub use error::GossipError;
pub use keyring::Keyring;
pub use membership::ChitchatMembership;
