//! Gossip transports: chitchat's UDP and in-memory ones, and [`EncryptedUdpTransport`].
//!
//! - [`UdpTransport`] — chitchat's, clear text; what [`ChitchatMembership::start`]
//!   uses when the config has no keyring.
//! - [`EncryptedUdpTransport`] — UDP with every packet sealed by a
//!   [`Keyring`](crate::keyring::Keyring) (AES-256-GCM); what `start` uses when
//!   the config has one. Its [`PacketStats`] count what was dropped, and why.
//! - [`ChannelTransport`] — chitchat's, in memory, with `remove_link` /
//!   `add_link` to cut and heal links in partition tests.
//!
//! Inside: `packet` (the sealed format), `frame` (whole envelopes and
//! fragments, and why), `loopback` (envelope encoding through chitchat's own
//! socket, which chitchat 0.13 does not expose otherwise), `stats`.
//!
//! [`ChitchatMembership::start`]: crate::ChitchatMembership::start

mod encrypted;
pub(crate) mod frame;
mod loopback;
pub(crate) mod packet;
mod stats;

pub use chitchat::transport::{ChannelTransport, Transport, UdpTransport};
pub use encrypted::EncryptedUdpTransport;
pub use stats::{DropReason, PacketStats};
