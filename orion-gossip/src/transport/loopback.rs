//! Envelope ⇄ bytes through chitchat's own UDP socket on loopback, because
//! chitchat 0.13 keeps that (de)serialization crate-private.
//!
//! # Why this exists
//!
//! In chitchat 0.13, `ChitchatEnvelope::serialize` / `deserialize` are
//! `pub(crate)`, `ChitchatEnvelope` implements neither of the public
//! `Serializable` / `Deserializable` traits, and the `Digest` inside `Syn` and
//! `SynAck` has no public way to be read, built or encoded. The only public
//! code that turns envelopes into bytes and back is chitchat's own
//! [`UdpSocket`]. So this codec keeps two of them on the loopback address:
//!
//! ```text
//! encode:  envelope ─► encoder (chitchat UdpSocket) ──bytes──► encoded (tokio, connected)
//! decode:  bytes ─► feed (tokio) ──► decoder (chitchat UdpSocket) ─► envelope
//!                   marker (tokio) ─┘   (then an end marker, from another port)
//! ```
//!
//! Only opened, authenticated plaintexts are ever fed to the decoder; network
//! datagrams never reach chitchat's parser.
//!
//! chitchat's socket silently skips what it cannot parse, so after each
//! plaintext a marker envelope is fed from a second socket: the decoder
//! returns the plaintext's envelope and then the marker, or only the marker if
//! it refused the plaintext. Results are told apart by the port they came
//! from; anything else another local process sends to the decoder's port is
//! ignored. Every step is kept in `self`, so a `recv` cancelled by chitchat's
//! select loop resumes where it stopped.
//!
//! It costs two loopback datagrams per gossip packet each way, next to the
//! UDP and AES work itself. When chitchat makes envelope encoding public
//! (quickwit-oss/chitchat#79 asks for encryption), this module becomes two
//! function calls.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use chitchat::transport::{Socket, UdpSocket};
use chitchat::{ChitchatEnvelope, ChitchatMessage, ProtocolVersion};
use tokio::time::{timeout, timeout_at, Instant};
use tracing::{debug, warn};

use crate::transport::frame::MAX_DATAGRAM;

/// How long a loopback hop may take before the datagram is taken as lost.
/// On loopback it takes microseconds; a second means it is gone.
const HOP_TIMEOUT: Duration = Duration::from_secs(1);

/// What became of a plaintext fed to the decoder.
pub(crate) enum Decoded {
    /// chitchat parsed it.
    Envelope {
        /// The peer the plaintext came from.
        from: SocketAddr,
        envelope: ChitchatEnvelope,
        /// The plaintext's length.
        len: usize,
    },
    /// chitchat's parser refused it.
    Refused,
    /// Lost on loopback (never seen in practice).
    Lost,
}

/// Where a decode stands.
enum Stage {
    Idle,
    /// Opened and reassembled, not yet fed to the decoder.
    Queued {
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    /// Fed with its marker; the decoder's output is being read.
    Fed {
        from: SocketAddr,
        len: usize,
        envelope: Option<ChitchatEnvelope>,
        deadline: Instant,
    },
}

/// Both directions of the codec (see the module docs).
pub(crate) struct LoopbackCodec {
    /// chitchat's socket that serializes: it sends envelopes to `encoded`.
    encoder: UdpSocket,
    /// Receives the encoder's bytes; connected to it, so nothing else lands here.
    encoded: tokio::net::UdpSocket,
    encoded_addr: SocketAddr,
    /// Receive buffer for `encoded`, larger than any UDP payload.
    buf: Vec<u8>,
    /// chitchat's socket that parses what `feed` and `marker` send it.
    decoder: UdpSocket,
    /// Sends plaintexts to the decoder (connected to it).
    feed: tokio::net::UdpSocket,
    feed_addr: SocketAddr,
    /// Sends the end marker to the decoder (connected to it).
    marker: tokio::net::UdpSocket,
    marker_addr: SocketAddr,
    /// A valid envelope (`BadCluster`), encoded once.
    marker_bytes: Vec<u8>,
    stage: Stage,
}

impl LoopbackCodec {
    /// Binds the codec's sockets on the loopback address of `family`'s IP
    /// version, on ports chosen by the OS.
    pub(crate) async fn open(family: SocketAddr) -> anyhow::Result<Self> {
        let loopback = match family {
            SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::LOCALHOST, 0)),
        };
        let encoder = UdpSocket::open(loopback).await?;
        let encoder_addr = encoder.local_addr()?;
        let encoded = bind_connected(loopback, encoder_addr).await?;
        let encoded_addr = encoded.local_addr()?;
        let decoder = UdpSocket::open(loopback).await?;
        let decoder_addr = decoder.local_addr()?;
        let feed = bind_connected(loopback, decoder_addr).await?;
        let marker = bind_connected(loopback, decoder_addr).await?;
        let mut codec = LoopbackCodec {
            encoder,
            encoded,
            encoded_addr,
            buf: vec![0; 1 << 16],
            decoder,
            feed_addr: feed.local_addr()?,
            feed,
            marker_addr: marker.local_addr()?,
            marker,
            marker_bytes: Vec::new(),
            stage: Stage::Idle,
        };
        codec.marker_bytes = codec
            .encode(ChitchatEnvelope {
                version: ProtocolVersion::V0,
                message: ChitchatMessage::BadCluster,
            })
            .await
            .context("cannot encode the codec's marker envelope")?
            .to_vec();
        Ok(codec)
    }

    /// chitchat's encoding of `envelope`. Fails like chitchat's own UDP
    /// socket does for an envelope over 65,507 bytes.
    pub(crate) async fn encode(&mut self, envelope: ChitchatEnvelope) -> anyhow::Result<&[u8]> {
        // Left over from an encode that was cancelled half-way, if any.
        while self.encoded.try_recv(&mut self.buf).is_ok() {}
        self.encoder
            .send(self.encoded_addr, envelope)
            .await
            .context("cannot encode a chitchat envelope")?;
        let len = timeout(HOP_TIMEOUT, self.encoded.recv(&mut self.buf))
            .await
            .context("encoded chitchat envelope lost on loopback")?
            .context("cannot read an encoded chitchat envelope")?;
        Ok(&self.buf[..len])
    }

    /// Whether a plaintext is queued or fed and its outcome not yet read.
    pub(crate) fn is_busy(&self) -> bool {
        !matches!(self.stage, Stage::Idle)
    }

    /// Queues `bytes`, an opened envelope from `from`, for decoding; read the
    /// outcome with [`decoded`](Self::decoded). At most one plaintext is in the
    /// codec at a time.
    pub(crate) fn queue(&mut self, from: SocketAddr, bytes: Vec<u8>) {
        debug_assert!(!self.is_busy());
        debug_assert!(bytes.len() <= MAX_DATAGRAM);
        self.stage = Stage::Queued { from, bytes };
    }

    /// Feeds the queued plaintext to chitchat's parser and reads what it made
    /// of it. Cancel-safe: a cancelled call resumes at the same step.
    /// Errors only if the loopback sockets are broken.
    pub(crate) async fn decoded(&mut self) -> anyhow::Result<Decoded> {
        if let Stage::Queued { .. } = self.stage {
            self.drain_decoder().await?;
            let Stage::Queued { from, bytes } = std::mem::replace(&mut self.stage, Stage::Idle)
            else {
                unreachable!("checked above");
            };
            // No await from here until the stage is `Fed`.
            if let Err(err) = self.feed_both(&bytes) {
                warn!(error = %err, "cannot feed an opened gossip packet to the local decoder");
                return Ok(Decoded::Lost);
            }
            self.stage = Stage::Fed {
                from,
                len: bytes.len(),
                envelope: None,
                deadline: Instant::now() + HOP_TIMEOUT,
            };
        }
        loop {
            let Stage::Fed { deadline, .. } = self.stage else {
                return Ok(Decoded::Lost);
            };
            let outcome = match timeout_at(deadline, self.decoder.recv()).await {
                Ok(outcome) => outcome.context("local gossip decoder failed")?,
                Err(_) => {
                    self.stage = Stage::Idle;
                    warn!("opened gossip packet lost on loopback");
                    return Ok(Decoded::Lost);
                }
            };
            if outcome.from_addr == self.feed_addr {
                if let Stage::Fed { envelope, .. } = &mut self.stage {
                    *envelope = Some(outcome.envelope);
                }
            } else if outcome.from_addr == self.marker_addr {
                let Stage::Fed {
                    from,
                    len,
                    envelope,
                    ..
                } = std::mem::replace(&mut self.stage, Stage::Idle)
                else {
                    unreachable!("checked above");
                };
                return Ok(match envelope {
                    Some(envelope) => Decoded::Envelope {
                        from,
                        envelope,
                        len,
                    },
                    None => Decoded::Refused,
                });
            } else {
                debug!(from = %outcome.from_addr, "ignored a datagram sent to the local gossip decoder");
            }
        }
    }

    /// Sends the plaintext, then the marker, without awaiting.
    fn feed_both(&self, bytes: &[u8]) -> io::Result<()> {
        self.feed.try_send(bytes)?;
        self.marker.try_send(&self.marker_bytes)?;
        Ok(())
    }

    /// Discards whatever the decoder has ready: only ever the late remains of
    /// a decode given up as lost.
    async fn drain_decoder(&mut self) -> anyhow::Result<()> {
        // `timeout` polls the receive once before looking at the clock.
        while let Ok(outcome) = timeout(Duration::ZERO, self.decoder.recv()).await {
            let outcome = outcome.context("local gossip decoder failed")?;
            debug!(from = %outcome.from_addr, "discarded a stale decoded envelope");
        }
        Ok(())
    }
}

/// A tokio UDP socket on `loopback` that sends to and only receives from `peer`.
async fn bind_connected(
    loopback: SocketAddr,
    peer: SocketAddr,
) -> anyhow::Result<tokio::net::UdpSocket> {
    let socket = tokio::net::UdpSocket::bind(loopback)
        .await
        .with_context(|| format!("cannot bind {loopback}/UDP for the gossip codec"))?;
    socket
        .connect(peer)
        .await
        .with_context(|| format!("cannot connect the gossip codec to {peer}"))?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use chitchat::ChitchatMessage;

    use super::*;

    fn syn(cluster_id: &str) -> ChitchatEnvelope {
        ChitchatEnvelope {
            version: ProtocolVersion::V0,
            message: ChitchatMessage::Syn {
                cluster_id: cluster_id.to_string(),
                digest: Default::default(),
            },
        }
    }

    fn peer() -> SocketAddr {
        "192.0.2.1:7947".parse().unwrap()
    }

    #[tokio::test]
    async fn encodes_and_decodes_like_chitchat() {
        let mut codec = LoopbackCodec::open(peer()).await.unwrap();
        let bytes = codec.encode(syn("orion")).await.unwrap().to_vec();
        // Magic number 45139, little-endian, then version 0 and type Syn.
        assert_eq!(bytes[..4], [0x53, 0xb0, 0, 0]);
        codec.queue(peer(), bytes.clone());
        let Decoded::Envelope {
            from,
            envelope,
            len,
        } = codec.decoded().await.unwrap()
        else {
            panic!("not decoded");
        };
        assert_eq!((from, envelope, len), (peer(), syn("orion"), bytes.len()));
        assert!(!codec.is_busy());
    }

    #[tokio::test]
    async fn what_chitchat_refuses_is_reported_and_the_next_one_decodes() {
        let mut codec = LoopbackCodec::open(peer()).await.unwrap();
        codec.queue(peer(), b"not chitchat".to_vec());
        assert!(matches!(codec.decoded().await.unwrap(), Decoded::Refused));
        let bytes = codec.encode(syn("next")).await.unwrap().to_vec();
        codec.queue(peer(), bytes);
        assert!(matches!(
            codec.decoded().await.unwrap(),
            Decoded::Envelope { envelope, .. } if envelope == syn("next")
        ));
    }

    #[tokio::test]
    async fn datagrams_from_other_local_sockets_are_ignored() {
        let mut codec = LoopbackCodec::open(peer()).await.unwrap();
        let intruder = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let forged = codec.encode(syn("forged")).await.unwrap().to_vec();
        let decoder_addr = codec.decoder.local_addr().unwrap();
        intruder.send_to(&forged, decoder_addr).await.unwrap();
        let bytes = codec.encode(syn("real")).await.unwrap().to_vec();
        codec.queue(peer(), bytes);
        assert!(matches!(
            codec.decoded().await.unwrap(),
            Decoded::Envelope { envelope, .. } if envelope == syn("real")
        ));
    }

    #[tokio::test]
    async fn the_largest_envelope_chitchat_sends_round_trips() {
        let mut codec = LoopbackCodec::open(peer()).await.unwrap();
        // 4 header bytes, 2 for the empty digest, 2 for the string length.
        let cluster_id = "x".repeat(MAX_DATAGRAM - 8);
        let bytes = codec.encode(syn(&cluster_id)).await.unwrap().to_vec();
        assert_eq!(bytes.len(), MAX_DATAGRAM);
        codec.queue(peer(), bytes);
        assert!(matches!(
            codec.decoded().await.unwrap(),
            Decoded::Envelope { envelope, .. } if envelope == syn(&cluster_id)
        ));
        let too_large = "x".repeat(MAX_DATAGRAM - 7);
        assert!(codec.encode(syn(&too_large)).await.is_err());
    }
}
