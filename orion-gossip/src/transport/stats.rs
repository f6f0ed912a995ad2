//! Packet counters of an encrypted transport: sent, received, delivered, and dropped by reason.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a received datagram was dropped before chitchat saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Shorter than a header and a tag (33 bytes), or empty.
    TooShort,
    /// The first byte is not a packet version this build reads; a clear-text
    /// chitchat packet (a node without a keyring) lands here.
    BadVersion,
    /// Sealed with a key that is not installed: a stranger, or a node still
    /// on a key this one has removed.
    UnknownKey,
    /// The tag does not verify: tampered with, truncated, or forged.
    BadTag,
    /// Authentic, but not a chitchat envelope (nor a well-formed fragment of
    /// one); chitchat's parser refused it.
    Malformed,
}

impl DropReason {
    /// Every reason, in a stable order (for metrics).
    pub const ALL: [DropReason; 5] = [
        DropReason::TooShort,
        DropReason::BadVersion,
        DropReason::UnknownKey,
        DropReason::BadTag,
        DropReason::Malformed,
    ];

    /// A metric label: `too_short`, `bad_version`, `unknown_key`, `bad_tag`, `malformed`.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::TooShort => "too_short",
            DropReason::BadVersion => "bad_version",
            DropReason::UnknownKey => "unknown_key",
            DropReason::BadTag => "bad_tag",
            DropReason::Malformed => "malformed",
        }
    }

    fn index(self) -> usize {
        match self {
            DropReason::TooShort => 0,
            DropReason::BadVersion => 1,
            DropReason::UnknownKey => 2,
            DropReason::BadTag => 3,
            DropReason::Malformed => 4,
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot of an encrypted transport's counters, since it was made.
/// Counters only grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PacketStats {
    /// Sealed datagrams sent.
    pub sent: u64,
    /// Envelopes sent as two fragments, being too large for one sealed datagram.
    pub fragmented: u64,
    /// Datagrams received, dropped or not.
    pub received: u64,
    /// Envelopes handed to chitchat.
    pub delivered: u64,
    /// Datagrams dropped, by [`DropReason::ALL`] order; read with
    /// [`dropped_by`](Self::dropped_by).
    dropped: [u64; 5],
}

impl PacketStats {
    /// Datagrams dropped for any reason.
    pub fn dropped(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// Datagrams dropped for `reason`.
    pub fn dropped_by(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }
}

/// The live counters, shared by a transport and the sockets it opened.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    sent: AtomicU64,
    fragmented: AtomicU64,
    received: AtomicU64,
    delivered: AtomicU64,
    dropped: [AtomicU64; 5],
}

impl Counters {
    pub(crate) fn sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn fragmented(&self) {
        self.fragmented.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dropped(&self, reason: DropReason) {
        self.dropped[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dropped_total(&self) -> u64 {
        self.dropped.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    pub(crate) fn snapshot(&self) -> PacketStats {
        PacketStats {
            sent: self.sent.load(Ordering::Relaxed),
            fragmented: self.fragmented.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped: std::array::from_fn(|i| self.dropped[i].load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_reason_and_in_total() {
        let counters = Counters::default();
        counters.dropped(DropReason::BadTag);
        counters.dropped(DropReason::BadTag);
        counters.dropped(DropReason::TooShort);
        counters.delivered();
        let stats = counters.snapshot();
        assert_eq!(stats.dropped(), 3);
        assert_eq!(counters.dropped_total(), 3);
        assert_eq!(stats.dropped_by(DropReason::BadTag), 2);
        assert_eq!(stats.dropped_by(DropReason::UnknownKey), 0);
        assert_eq!(stats.delivered, 1);
        let labels: Vec<&str> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            labels,
            [
                "too_short",
                "bad_version",
                "unknown_key",
                "bad_tag",
                "malformed"
            ]
        );
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
    }
}
