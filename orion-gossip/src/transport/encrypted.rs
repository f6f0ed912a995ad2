//! `EncryptedUdpTransport`: chitchat over UDP with every packet sealed by the cluster's keyring.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport};
use chitchat::ChitchatEnvelope;
use tracing::{debug, warn};

use crate::keyring::Keyring;
use crate::transport::frame::{self, Reassembler, TooLarge};
use crate::transport::loopback::{Decoded, LoopbackCodec};
use crate::transport::packet;
use crate::transport::stats::{Counters, DropReason, PacketStats};

/// chitchat's UDP transport with authenticated encryption: every datagram is
/// sealed with AES-256-GCM under the [`Keyring`]'s primary key, and a
/// datagram is handed to chitchat only if it opens under an installed key.
///
/// # Packet format
///
/// ```text
/// [version u8 = 1][key id, 4 bytes][nonce, 12 bytes][ciphertext][tag, 16 bytes]
/// ```
///
/// The nonce is random for every packet; the first 17 bytes (version, key id,
/// nonce) are the associated data, authenticated with the ciphertext. Inside,
/// the plaintext is a frame: a whole chitchat envelope, or half of one (below).
///
/// # Receiving
///
/// A datagram that is too short, of another version, sealed with a key not
/// installed, or whose tag does not verify is dropped and counted by
/// [`DropReason`] (see [`stats`](Self::stats)); none of them reaches
/// chitchat's parser. The keyring is read for every packet, so
/// `install` / `use_key` / `remove` apply at once to a running node.
///
/// # Size: chitchat's 65,507-byte datagrams
///
/// chitchat fills each reply's delta up to 65,507 bytes (a constant it does
/// not let a transport lower), and sealing and framing add 34 bytes. An envelope that
/// would not fit one sealed datagram (over 65,473 bytes) is sent as two
/// fragments, each sealed on its own and under the limit, and put back
/// together by the receiver before chitchat sees it; [`PacketStats::fragmented`]
/// counts them. So no datagram ever exceeds 65,507 bytes, and nothing is
/// dropped for size that plain chitchat would have sent. The frame format and
/// the reasons are in the `frame` module.
///
/// # Not covered
///
/// A recorded packet can be replayed: chitchat's versioned state makes old
/// deltas and heartbeats harmless, but a replayed `Syn` is answered. The
/// source address is not authenticated either, as in plain chitchat.
///
/// ```no_run
/// use orion_gossip::keyring::Keyring;
/// use orion_gossip::transport::EncryptedUdpTransport;
/// use orion_gossip::{ChitchatMembership, GossipConfig};
///
/// # async fn example(config: GossipConfig) -> Result<(), Box<dyn std::error::Error>> {
/// let keyring = Keyring::new("bm90IGEgcmVhbCBrZXksIGp1c3QgYW4gZXhhbXBsZSE=".parse()?);
/// let transport = EncryptedUdpTransport::new(keyring);
/// let membership = ChitchatMembership::start_with_transport(config, &transport).await?;
/// println!("dropped so far: {}", transport.dropped_packets());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct EncryptedUdpTransport {
    keyring: Keyring,
    /// Shared with every socket this transport opens.
    counters: Arc<Counters>,
}

impl EncryptedUdpTransport {
    /// A transport sealing with `keyring` (a handle: changes made through any
    /// clone of it apply to the sockets at once).
    pub fn new(keyring: Keyring) -> Self {
        EncryptedUdpTransport {
            keyring,
            counters: Arc::default(),
        }
    }

    /// The keyring packets are sealed and opened with.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The counters of every socket this transport opened.
    pub fn stats(&self) -> PacketStats {
        self.counters.snapshot()
    }

    /// Datagrams dropped before chitchat saw them, for any [`DropReason`].
    pub fn dropped_packets(&self) -> u64 {
        self.counters.dropped_total()
    }
}

#[async_trait]
impl Transport for EncryptedUdpTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let socket = tokio::net::UdpSocket::bind(listen_addr)
            .await
            .with_context(|| format!("failed to bind to {listen_addr}/UDP for gossip"))?;
        let codec = LoopbackCodec::open(listen_addr).await?;
        Ok(Box::new(EncryptedSocket {
            socket,
            keyring: self.keyring.clone(),
            counters: self.counters.clone(),
            codec,
            reassembler: Reassembler::default(),
            next_message: rand::random(),
            buf: vec![0; 1 << 16],
        }))
    }
}

/// One open encrypted socket.
struct EncryptedSocket {
    /// The socket peers talk to; it only ever carries sealed packets.
    socket: tokio::net::UdpSocket,
    keyring: Keyring,
    counters: Arc<Counters>,
    /// chitchat's envelope encoding, through chitchat's own socket.
    codec: LoopbackCodec,
    reassembler: Reassembler,
    /// Number of the next fragmented envelope (random start, then counting).
    next_message: u32,
    /// Receive buffer, larger than any UDP payload.
    buf: Vec<u8>,
}

/// Like chitchat's UDP socket: these receive errors leave the socket usable.
fn is_transient_io_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::OutOfMemory
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

#[async_trait]
impl Socket for EncryptedSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.socket
            .local_addr()
            .context("failed to get UDP socket address")
    }

    /// Encodes, frames, seals and sends; `num_bytes_sent` is the envelope's
    /// encoded length, as chitchat's UDP socket reports it.
    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        let encoded = self.codec.encode(envelope).await?;
        let num_bytes_sent = encoded.len();
        let frames = frame::split(encoded, self.next_message).map_err(|TooLarge(len)| {
            anyhow::anyhow!("chitchat envelope of {len} bytes exceeds 65,507 bytes")
        })?;
        if frames.len() > 1 {
            self.next_message = self.next_message.wrapping_add(1);
            self.counters.fragmented();
        }
        for frame in frames {
            let sealed = packet::seal(&self.keyring, &frame);
            debug_assert!(sealed.len() <= frame::MAX_DATAGRAM);
            self.socket
                .send_to(&sealed, to)
                .await
                .context("failed to send chitchat message to peer")?;
            self.counters.sent();
        }
        Ok(SendOutcome { num_bytes_sent })
    }

    /// Receives until a datagram opens into an envelope chitchat parses.
    /// Cancel-safe, as chitchat's select loop needs: every step is kept in
    /// the socket.
    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            if self.codec.is_busy() {
                match self.codec.decoded().await? {
                    Decoded::Envelope {
                        from,
                        envelope,
                        len,
                    } => {
                        self.counters.delivered();
                        return Ok(RecvOutcome {
                            from_addr: from,
                            envelope,
                            num_bytes_received: len,
                        });
                    }
                    Decoded::Refused | Decoded::Lost => {
                        self.counters.dropped(DropReason::Malformed);
                        continue;
                    }
                }
            }
            let (len, from) = match self.socket.recv_from(&mut self.buf).await {
                Ok(received) => received,
                Err(err) if is_transient_io_error(&err) => {
                    warn!(error = %err, "transient UDP recv error");
                    continue;
                }
                Err(err) => return Err(err).context("fatal UDP recv error"),
            };
            self.counters.received();
            if let Some(envelope) = self.open(from, len) {
                self.codec.queue(from, envelope);
            }
        }
    }
}

impl EncryptedSocket {
    /// Opens the datagram of `len` bytes in the buffer and reassembles it;
    /// `Some` once a whole envelope is in hand. Drops are counted here.
    fn open(&mut self, from: SocketAddr, len: usize) -> Option<Vec<u8>> {
        let opened = packet::open(&self.keyring, &self.buf[..len]).and_then(|plaintext| {
            self.reassembler
                .push(from, plaintext, Instant::now())
                .map_err(|_| DropReason::Malformed)
        });
        match opened {
            Ok(envelope) => envelope,
            Err(reason) => {
                self.counters.dropped(reason);
                debug!(%from, len, %reason, "dropped a gossip packet");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chitchat::{ChitchatMessage, ProtocolVersion};
    use tokio::time::timeout;

    use super::*;
    use crate::keyring::{GossipKey, KEY_LEN};

    const WITHIN: Duration = Duration::from_secs(5);

    fn syn(cluster_id: &str) -> ChitchatEnvelope {
        ChitchatEnvelope {
            version: ProtocolVersion::V0,
            message: ChitchatMessage::Syn {
                cluster_id: cluster_id.to_string(),
                digest: Default::default(),
            },
        }
    }

    fn keyring(byte: u8) -> Keyring {
        Keyring::new(GossipKey::from_bytes([byte; KEY_LEN]))
    }

    async fn open(transport: &EncryptedUdpTransport) -> (Box<dyn Socket>, SocketAddr) {
        let socket = transport.open(([127, 0, 0, 1], 0).into()).await.unwrap();
        let addr = socket.local_addr().unwrap();
        (socket, addr)
    }

    async fn recv(socket: &mut Box<dyn Socket>) -> RecvOutcome {
        timeout(WITHIN, socket.recv())
            .await
            .expect("an envelope within 5 s")
            .unwrap()
    }

    #[tokio::test]
    async fn envelopes_round_trip_sealed_over_udp() {
        let sender = EncryptedUdpTransport::new(keyring(1));
        let receiver = EncryptedUdpTransport::new(keyring(1));
        let (mut a, a_addr) = open(&sender).await;
        let (mut b, b_addr) = open(&receiver).await;
        let outcome = a.send(b_addr, syn("secret-cluster")).await.unwrap();
        let received = recv(&mut b).await;
        assert_eq!(received.envelope, syn("secret-cluster"));
        assert_eq!(received.from_addr, a_addr);
        assert_eq!(received.num_bytes_received, outcome.num_bytes_sent);
        assert_eq!((sender.stats().sent, sender.stats().fragmented), (1, 0));
        let stats = receiver.stats();
        assert_eq!(
            (stats.received, stats.delivered, stats.dropped()),
            (1, 1, 0)
        );

        // What travels is the sealed packet, not the cluster id.
        let sniffer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        a.send(sniffer.local_addr().unwrap(), syn("secret-cluster"))
            .await
            .unwrap();
        let mut buf = vec![0; 1 << 16];
        let len = timeout(WITHIN, sniffer.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(buf[0], packet::VERSION);
        assert_eq!(len, outcome.num_bytes_sent + 1 + packet::SEAL_OVERHEAD);
        assert!(!buf[..len].windows(6).any(|w| w == b"secret"));
    }

    #[tokio::test]
    async fn bad_datagrams_are_dropped_and_counted_by_reason() {
        let keys = keyring(1);
        let transport = EncryptedUdpTransport::new(keys.clone());
        let (mut socket, addr) = open(&transport).await;
        let raw = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let clear_text = LoopbackCodec::open(addr)
            .await
            .unwrap()
            .encode(syn("orion"))
            .await
            .unwrap()
            .to_vec();
        let mut tampered = packet::seal(&keys, &[0, 1, 2, 3]);
        *tampered.last_mut().unwrap() ^= 1;
        let bad = [
            (Vec::new(), DropReason::TooShort),
            (vec![packet::VERSION; 20], DropReason::TooShort),
            (clear_text, DropReason::BadVersion),
            (
                packet::seal(&keyring(2), b"\0hello"),
                DropReason::UnknownKey,
            ),
            (tampered, DropReason::BadTag),
            (
                packet::seal(&keys, b"\0not chitchat"),
                DropReason::Malformed,
            ),
            (
                packet::seal(&keys, b"\x07no such frame"),
                DropReason::Malformed,
            ),
        ];
        for (datagram, _) in &bad {
            raw.send_to(datagram, addr).await.unwrap();
        }
        // Then one good envelope: it is the first thing `recv` returns.
        let (mut good, _) = open(&EncryptedUdpTransport::new(keys.clone())).await;
        good.send(addr, syn("orion")).await.unwrap();
        assert_eq!(recv(&mut socket).await.envelope, syn("orion"));

        let stats = transport.stats();
        for reason in DropReason::ALL {
            let expected = bad.iter().filter(|(_, r)| *r == reason).count() as u64;
            assert_eq!(stats.dropped_by(reason), expected, "{reason}");
        }
        assert_eq!(transport.dropped_packets(), bad.len() as u64);
        assert_eq!((stats.received, stats.delivered), (bad.len() as u64 + 1, 1));
    }

    #[tokio::test]
    async fn the_largest_envelope_travels_in_two_datagrams_within_the_limit() {
        let sender = EncryptedUdpTransport::new(keyring(1));
        let receiver = EncryptedUdpTransport::new(keyring(1));
        let (mut a, _) = open(&sender).await;
        let (mut b, b_addr) = open(&receiver).await;
        // 4 header bytes, 2 for the empty digest, 2 for the string's length.
        let cluster_id = "c".repeat(frame::MAX_DATAGRAM - 8);
        let outcome = a.send(b_addr, syn(&cluster_id)).await.unwrap();
        assert_eq!(outcome.num_bytes_sent, frame::MAX_DATAGRAM);
        assert_eq!(recv(&mut b).await.envelope, syn(&cluster_id));
        assert_eq!((sender.stats().sent, sender.stats().fragmented), (2, 1));
        assert_eq!(receiver.stats().delivered, 1);

        let sniffer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        a.send(sniffer.local_addr().unwrap(), syn(&cluster_id))
            .await
            .unwrap();
        let mut buf = vec![0; 1 << 16];
        for _ in 0..2 {
            let len = timeout(WITHIN, sniffer.recv(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(len <= frame::MAX_DATAGRAM, "{len} bytes");
        }
        // Just under the threshold, an envelope still travels whole.
        let whole = "c".repeat(frame::MAX_WHOLE - 8);
        a.send(b_addr, syn(&whole)).await.unwrap();
        assert_eq!(recv(&mut b).await.envelope, syn(&whole));
        assert_eq!(sender.stats().fragmented, 2);
        assert_eq!(sender.stats().sent, 5);
    }

    #[tokio::test]
    async fn a_cancelled_recv_loses_nothing() {
        let keys = keyring(1);
        let transport = EncryptedUdpTransport::new(keys.clone());
        let (mut socket, addr) = open(&transport).await;
        let (mut peer, _) = open(&EncryptedUdpTransport::new(keys)).await;
        // Cancel receives over and over, as chitchat's select loop does on
        // every gossip tick, while envelopes are on their way.
        let mut cancelled = 0;
        for round in 0..20 {
            peer.send(addr, syn(&format!("round-{round}")))
                .await
                .unwrap();
            let received = loop {
                match timeout(Duration::from_micros(1), socket.recv()).await {
                    Ok(outcome) => break outcome.unwrap(),
                    Err(_) => cancelled += 1,
                }
                assert!(cancelled < 100_000, "round {round} never received");
            };
            assert_eq!(received.envelope, syn(&format!("round-{round}")));
        }
        assert_eq!(transport.stats().dropped(), 0);
    }
}
