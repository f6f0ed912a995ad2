//! `GossipError`: why starting membership failed.

use std::error::Error as StdError;
use std::net::SocketAddr;

use orion_core::membership::MembershipError;

use crate::codec::EncodeError;
use crate::config::ConfigError;

/// Why [`ChitchatMembership::start`](crate::ChitchatMembership::start) failed.
/// None of these is retryable as is: fix the config or free the address.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GossipError {
    /// The config does not validate.
    #[error("invalid gossip config")]
    Config(#[from] ConfigError),
    /// The local member cannot be published.
    #[error("cannot publish the local member")]
    Encode(#[from] EncodeError),
    /// The gossip socket could not be opened (address in use, not local, …).
    #[error("cannot start gossip on {addr}")]
    Start {
        /// The listen address.
        addr: SocketAddr,
        /// What the transport said.
        #[source]
        source: Box<dyn StdError + Send + Sync + 'static>,
    },
}

impl From<GossipError> for MembershipError {
    fn from(err: GossipError) -> Self {
        MembershipError::Transport(error_chain(&err))
    }
}

/// `err` and its causes, joined with `: `.
pub(crate) fn error_chain(err: &dyn StdError) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_error_keeps_the_cause() {
        let err = GossipError::Config(ConfigError::EmptyNodeId);
        let MembershipError::Transport(message) = MembershipError::from(err) else {
            panic!("expected a transport error");
        };
        assert_eq!(message, "invalid gossip config: member id is empty");
    }
}
