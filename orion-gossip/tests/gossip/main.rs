//! Integration tests of `ChitchatMembership`: several in-process nodes over
//! real UDP on 127.0.0.1 and over chitchat's in-memory transport.
//!
//! - `contract`: the single-node `Membership` contract, fake and adapter alike.
//! - `udp`: joining with full metadata, `publish` as `Updated`, failure
//!   detection within 3 s, restarts with a new generation, cluster isolation.
//! - `partition`: cutting a node off and healing it.
//! - `encryption`: sealed gossip over real UDP: keyed members converge,
//!   strangers and garbage are dropped and counted, keys rotate live.

mod contract;
mod encryption;
mod partition;
mod support;
mod udp;
