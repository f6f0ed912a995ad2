//! What a sealed packet carries: a whole chitchat envelope, or one of two
//! fragments of an envelope too large to fit one datagram once sealed.
//!
//! # Why fragments
//!
//! chitchat 0.13 fills a reply's delta up to a hard-coded 65,507 bytes (its
//! crate-private `MAX_UDP_DATAGRAM_PAYLOAD_SIZE`, the largest IPv4 UDP
//! payload): `delta_mtu` subtracts only its own header and the digest, and a
//! transport has no way to ask for less (`ChannelTransport::with_mtu` merely
//! refuses larger messages). Sealing adds 33 bytes, and the frame kind one
//! more, so a full-size envelope cannot travel in one sealed datagram. Such
//! envelopes are exactly the ones that matter (a node catching up on a large
//! cluster's state gets full deltas round after round), so dropping them
//! would stall the catch-up for good. Instead an envelope longer than
//! [`MAX_WHOLE`] is sent as two fragments, each sealed on its own and each
//! within 65,507 bytes; the receiver reassembles them before chitchat sees
//! anything. Envelopes of up to 65,473 bytes, that is every gossip message of
//! a cluster whose state has not outgrown one datagram, still travel whole.
//!
//! ```text
//! whole     [0x00][envelope]
//! fragment  [0x01][message id u32 LE][index u8][count u8][chunk]
//! ```
//!
//! Frames are inside the ciphertext: only key holders can make or read them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::transport::packet::SEAL_OVERHEAD;

/// Largest datagram sent, and the largest envelope chitchat reads
/// (chitchat's `MAX_UDP_DATAGRAM_PAYLOAD_SIZE`: 65,535 − 20 − 8).
pub(crate) const MAX_DATAGRAM: usize = 65_507;
/// Largest plaintext whose sealed packet fits [`MAX_DATAGRAM`].
const MAX_PLAINTEXT: usize = MAX_DATAGRAM - SEAL_OVERHEAD;
/// Largest envelope sent whole (65,473 bytes).
pub(crate) const MAX_WHOLE: usize = MAX_PLAINTEXT - 1;
/// Kind, message id, index, count.
const FRAGMENT_HEADER_LEN: usize = 1 + 4 + 1 + 1;
/// Largest chunk of an envelope one fragment carries.
const MAX_CHUNK: usize = MAX_PLAINTEXT - FRAGMENT_HEADER_LEN;
/// Fragments per envelope: two carry any envelope of up to
/// [`MAX_DATAGRAM`] bytes, which is all chitchat sends.
const MAX_FRAGMENTS: usize = 2;
const _: () = assert!(MAX_FRAGMENTS * MAX_CHUNK >= MAX_DATAGRAM);

const WHOLE: u8 = 0;
const FRAGMENT: u8 = 1;

/// Senders with a half-received envelope kept at once. Fragments are only
/// taken from key holders, and each sender has at most one envelope in
/// flight, so this is the number of peers catching up at the same moment.
const MAX_PARTIALS: usize = 64;
/// How long half an envelope waits for its other half. Both are sent back to
/// back; a second later the other half is lost, as a lost datagram would be.
const PARTIAL_TTL: Duration = Duration::from_secs(1);

/// An envelope larger than any chitchat sends.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TooLarge(pub usize);

/// The frames that carry `envelope`: one whole frame, or two fragments
/// numbered `message`.
pub(crate) fn split(envelope: &[u8], message: u32) -> Result<Vec<Vec<u8>>, TooLarge> {
    if envelope.len() <= MAX_WHOLE {
        let mut frame = Vec::with_capacity(1 + envelope.len());
        frame.push(WHOLE);
        frame.extend_from_slice(envelope);
        return Ok(vec![frame]);
    }
    if envelope.len() > MAX_DATAGRAM {
        return Err(TooLarge(envelope.len()));
    }
    let count = envelope.len().div_ceil(MAX_CHUNK);
    debug_assert!(count <= MAX_FRAGMENTS);
    // Halves, rather than one full chunk and a sliver: both datagrams stay
    // well under the limit.
    let chunk_len = envelope.len().div_ceil(count);
    let frames = envelope
        .chunks(chunk_len)
        .enumerate()
        .map(|(index, chunk)| {
            let mut frame = Vec::with_capacity(FRAGMENT_HEADER_LEN + chunk.len());
            frame.push(FRAGMENT);
            frame.extend_from_slice(&message.to_le_bytes());
            frame.push(index as u8);
            frame.push(count as u8);
            frame.extend_from_slice(chunk);
            frame
        })
        .collect();
    Ok(frames)
}

/// A frame that is neither a whole envelope nor a well-formed fragment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed;

/// Envelopes being put back together, one per sender at most.
#[derive(Default)]
pub(crate) struct Reassembler {
    partial: HashMap<SocketAddr, Partial>,
}

/// Half of an envelope from one sender.
struct Partial {
    message: u32,
    chunks: [Option<Vec<u8>>; MAX_FRAGMENTS],
    since: Instant,
}

impl Reassembler {
    /// Takes the opened frame `plaintext` from `from`; returns the envelope
    /// once it is whole (`None` while waiting for another fragment).
    pub(crate) fn push(
        &mut self,
        from: SocketAddr,
        mut plaintext: Vec<u8>,
        now: Instant,
    ) -> Result<Option<Vec<u8>>, Malformed> {
        match plaintext.first() {
            Some(&WHOLE) => {
                plaintext.remove(0);
                return Ok(Some(plaintext));
            }
            Some(&FRAGMENT) if plaintext.len() > FRAGMENT_HEADER_LEN => {}
            _ => return Err(Malformed),
        }
        let message = u32::from_le_bytes(plaintext[1..5].try_into().expect("4 bytes"));
        let (index, count) = (plaintext[5] as usize, plaintext[6] as usize);
        if count != MAX_FRAGMENTS || index >= count {
            return Err(Malformed);
        }
        let chunk = plaintext.split_off(FRAGMENT_HEADER_LEN);

        self.partial
            .retain(|_, partial| now.duration_since(partial.since) < PARTIAL_TTL);
        let partial = match self.partial.get_mut(&from) {
            // A newer message replaces an unfinished one: its other half is lost.
            Some(partial) if partial.message == message => partial,
            _ => {
                if self.partial.len() >= MAX_PARTIALS && !self.partial.contains_key(&from) {
                    self.evict_oldest();
                }
                self.partial.insert(
                    from,
                    Partial {
                        message,
                        chunks: Default::default(),
                        since: now,
                    },
                );
                self.partial.get_mut(&from).expect("just inserted")
            }
        };
        partial.chunks[index] = Some(chunk);
        if partial.chunks.iter().any(Option::is_none) {
            return Ok(None);
        }
        let partial = self.partial.remove(&from).expect("present");
        let envelope: Vec<u8> = partial.chunks.into_iter().flatten().flatten().collect();
        if envelope.len() > MAX_DATAGRAM {
            return Err(Malformed);
        }
        Ok(Some(envelope))
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .partial
            .iter()
            .min_by_key(|(_, partial)| partial.since)
            .map(|(addr, _)| *addr);
        if let Some(addr) = oldest {
            self.partial.remove(&addr);
        }
    }

    /// Senders with half an envelope kept.
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.partial.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn envelope(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn sizes_match_the_datagram_limit() {
        assert_eq!(MAX_WHOLE, 65_473);
        assert_eq!(MAX_WHOLE + 1 + SEAL_OVERHEAD, MAX_DATAGRAM);
    }

    #[test]
    fn small_envelopes_travel_whole() {
        let mut reassembler = Reassembler::default();
        for len in [0, 1, 1_000, MAX_WHOLE] {
            let frames = split(&envelope(len), 7).unwrap();
            assert_eq!(frames.len(), 1);
            assert!(frames[0].len() + SEAL_OVERHEAD <= MAX_DATAGRAM);
            let out = reassembler
                .push(addr(1), frames[0].clone(), Instant::now())
                .unwrap();
            assert_eq!(out, Some(envelope(len)));
        }
    }

    #[test]
    fn large_envelopes_travel_in_two_fragments_in_any_order() {
        let now = Instant::now();
        for len in [MAX_WHOLE + 1, MAX_DATAGRAM] {
            let frames = split(&envelope(len), 42).unwrap();
            assert_eq!(frames.len(), 2);
            for frame in &frames {
                assert!(frame.len() + SEAL_OVERHEAD <= MAX_DATAGRAM);
            }
            let mut reassembler = Reassembler::default();
            assert_eq!(reassembler.push(addr(1), frames[1].clone(), now), Ok(None));
            assert_eq!(
                reassembler.push(addr(1), frames[0].clone(), now),
                Ok(Some(envelope(len)))
            );
            assert_eq!(reassembler.pending(), 0);
        }
        assert_eq!(
            split(&envelope(MAX_DATAGRAM + 1), 1),
            Err(TooLarge(MAX_DATAGRAM + 1))
        );
    }

    #[test]
    fn halves_of_different_messages_or_senders_do_not_mix() {
        let now = Instant::now();
        let first = split(&envelope(MAX_DATAGRAM), 1).unwrap();
        let second = split(&envelope(MAX_WHOLE + 10), 2).unwrap();
        let mut reassembler = Reassembler::default();
        assert_eq!(reassembler.push(addr(1), first[0].clone(), now), Ok(None));
        assert_eq!(reassembler.push(addr(2), second[0].clone(), now), Ok(None));
        // Message 2 from sender 1 replaces its unfinished message 1.
        assert_eq!(reassembler.push(addr(1), second[0].clone(), now), Ok(None));
        assert_eq!(reassembler.push(addr(1), first[1].clone(), now), Ok(None));
        assert_eq!(
            reassembler.push(addr(2), second[1].clone(), now),
            Ok(Some(envelope(MAX_WHOLE + 10)))
        );
        assert_eq!(reassembler.pending(), 1);
    }

    #[test]
    fn a_lone_half_expires_and_partials_are_bounded() {
        let now = Instant::now();
        let frames = split(&envelope(MAX_DATAGRAM), 1).unwrap();
        let mut reassembler = Reassembler::default();
        reassembler.push(addr(1), frames[0].clone(), now).unwrap();
        let later = now + PARTIAL_TTL;
        assert_eq!(
            reassembler.push(addr(1), frames[1].clone(), later),
            Ok(None)
        );
        assert_eq!(reassembler.pending(), 1, "only the late half is kept");

        for port in 0..(MAX_PARTIALS as u16 + 10) {
            reassembler
                .push(addr(port), frames[0].clone(), later)
                .unwrap();
        }
        assert_eq!(reassembler.pending(), MAX_PARTIALS);
    }

    #[test]
    fn malformed_frames_are_refused() {
        let now = Instant::now();
        let mut reassembler = Reassembler::default();
        let mut bad_count = split(&envelope(MAX_DATAGRAM), 1).unwrap()[0].clone();
        bad_count[6] = 3;
        let mut bad_index = bad_count.clone();
        bad_index[6] = 2;
        bad_index[5] = 2;
        for frame in [
            vec![],
            vec![2, 1, 2],
            vec![FRAGMENT, 0, 0],
            bad_count,
            bad_index,
        ] {
            assert_eq!(reassembler.push(addr(1), frame, now), Err(Malformed));
        }
        assert_eq!(reassembler.pending(), 0);
    }
}
