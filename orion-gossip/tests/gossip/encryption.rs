//! Sealed gossip over real UDP on 127.0.0.1: members with the cluster's key
//! converge; strangers, clear-text nodes and garbage are dropped and counted;
//! keys rotate under a live cluster.

use std::net::SocketAddr;
use std::time::Duration;

use chitchat::transport::{Transport, UdpTransport};
use chitchat::{ChitchatEnvelope, ChitchatMessage, ProtocolVersion};
use orion_core::membership::{Membership, MembershipEvent};
use orion_gossip::keyring::{GossipKey, Keyring};
use orion_gossip::transport::{DropReason, PacketStats};
use orion_gossip::ChitchatMembership;
use tokio::sync::broadcast::error::TryRecvError;

use crate::support::*;

/// A running node and its keyring (`None`: clear text).
struct Node {
    membership: ChitchatMembership,
    addr: SocketAddr,
    keyring: Option<Keyring>,
}

impl Node {
    /// The encrypted transport's counters now.
    fn stats(&self) -> PacketStats {
        self.membership
            .packet_stats()
            .expect("an encrypted node has packet stats")
    }

    fn keyring(&self) -> &Keyring {
        self.keyring.as_ref().expect("a keyed node")
    }
}

/// Starts `id` on a free port, seeded with `seeds`, with its own keyring
/// holding `key` (or clear text).
async fn start(id: &str, seeds: &[SocketAddr], cluster: &str, key: Option<&GossipKey>) -> Node {
    let addr = local(free_port());
    let mut config = config(id, addr, seeds, cluster);
    config.keyring = key.map(|key| Keyring::new(key.clone()));
    let keyring = config.keyring.clone();
    let membership = ChitchatMembership::start(config)
        .await
        .unwrap_or_else(|err| panic!("start {id}: {err}"));
    Node {
        membership,
        addr,
        keyring,
    }
}

/// n1, then n2 and n3 seeded with n1, all with `key`; returns once all see all three.
async fn three_keyed(cluster: &str, key: &GossipKey) -> Vec<Node> {
    let n1 = start("n1", &[], cluster, Some(key)).await;
    let n2 = start("n2", &[n1.addr], cluster, Some(key)).await;
    let n3 = start("n3", &[n1.addr], cluster, Some(key)).await;
    let nodes = vec![n1, n2, n3];
    for node in &nodes {
        wait_live(&node.membership, CONVERGE, "keyed nodes converge", |live| {
            live.len() == 3
        })
        .await;
    }
    nodes
}

/// Waits until every node has handed chitchat `envelopes` more envelopes:
/// a few gossip rounds, so that whatever was in flight has landed.
async fn gossip_rounds(nodes: &[&Node], envelopes: u64) {
    for node in nodes {
        let before = node.stats().delivered;
        wait_until(CONVERGE, "gossip goes on", || {
            node.stats().delivered >= before + envelopes
        })
        .await;
    }
}

/// The `Dead` events received so far on `events`.
fn deaths(events: &mut tokio::sync::broadcast::Receiver<MembershipEvent>) -> Vec<String> {
    let mut dead = Vec::new();
    loop {
        match events.try_recv() {
            Ok(MembershipEvent::Dead(id)) => dead.push(id),
            Ok(_) | Err(TryRecvError::Lagged(_)) => {}
            Err(TryRecvError::Empty | TryRecvError::Closed) => return dead,
        }
    }
}

async fn shutdown_all(nodes: &[&Node]) {
    for node in nodes {
        node.membership.shutdown().await;
    }
}

/// Proves: three members sharing a key converge; a member with another key
/// and a clear-text member, both seeded with n1, are never seen by them (nor
/// see them), while n1 drops and counts their packets (`UnknownKey`,
/// `BadVersion`); nothing the keyed members send each other is dropped.
#[tokio::test]
async fn same_key_members_converge_and_strangers_are_dropped() {
    let cluster = "enc-strangers";
    let key = Keyring::generate();
    let nodes = three_keyed(cluster, &key).await;
    let n1 = nodes[0].addr;
    let mut events = nodes[0].membership.subscribe();
    let stranger = start("x1", &[n1], cluster, Some(&Keyring::generate())).await;
    let clear = start("c1", &[n1], cluster, None).await;

    wait_until(CONVERGE, "n1 drops the strangers' packets", || {
        let stats = nodes[0].stats();
        stats.dropped_by(DropReason::UnknownKey) >= 5
            && stats.dropped_by(DropReason::BadVersion) >= 5
    })
    .await;
    gossip_rounds(&nodes.iter().collect::<Vec<_>>(), 10).await;

    let joined: Vec<String> = matching_within(&mut events, Duration::from_secs(1), |e| match e {
        MembershipEvent::Joined(m) => Some(m.id.clone()),
        _ => None,
    })
    .await;
    assert!(joined.is_empty(), "n1 saw {joined:?} join");
    for node in &nodes {
        assert_eq!(live_ids(&node.membership), ["n1", "n2", "n3"]);
        let stats = node.stats();
        assert_eq!(
            stats.dropped()
                - stats.dropped_by(DropReason::UnknownKey)
                - stats.dropped_by(DropReason::BadVersion),
            0,
            "{}: {stats:?}",
            node.membership.local_id()
        );
    }
    assert_eq!(live_ids(&stranger.membership), ["x1"]);
    assert_eq!(
        stranger.stats().delivered,
        0,
        "n1 never answers the stranger"
    );
    assert_eq!(live_ids(&clear.membership), ["c1"]);
    assert_eq!(clear.membership.packet_stats(), None);
    shutdown_all(&[&nodes[0], &nodes[1], &nodes[2], &stranger, &clear]).await;
}

/// Proves: the rotation a cluster runs live (install the new key on every
/// node, make it primary on every node, remove the old one everywhere)
/// keeps the members converged, nobody is declared dead, and not one packet
/// is dropped at any step; at the end only the new key is installed.
#[tokio::test]
async fn keys_rotate_under_a_live_cluster_without_a_dropped_packet() {
    let old = Keyring::generate();
    let nodes = three_keyed("enc-rotate", &old).await;
    let all: Vec<&Node> = nodes.iter().collect();
    let mut events: Vec<_> = nodes.iter().map(|n| n.membership.subscribe()).collect();
    let new = Keyring::generate();

    for node in &nodes {
        assert_eq!(node.keyring().install(new.clone()), Ok(new.id()));
    }
    gossip_rounds(&all, 10).await;
    for node in &nodes {
        node.keyring().use_key(new.id()).unwrap();
    }
    gossip_rounds(&all, 10).await;
    for node in &nodes {
        node.keyring().remove(old.id()).unwrap();
    }
    // Any packet still sealed with the old key would now be dropped.
    gossip_rounds(&all, 20).await;

    for (node, events) in nodes.iter().zip(&mut events) {
        let viewer = node.membership.local_id();
        assert_eq!(node.stats().dropped(), 0, "{viewer}: {:?}", node.stats());
        assert_eq!(deaths(events), Vec::<String>::new(), "as seen by {viewer}");
        assert_eq!(live_ids(&node.membership), ["n1", "n2", "n3"]);
        let listed = node.keyring().list();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].id, listed[0].primary),
            (new.id(), true),
            "{viewer}: {listed:?}"
        );
    }
    shutdown_all(&all).await;
}

/// Proves that removing a key revokes it: a member the rotation skipped, left
/// on the removed key only, is declared dead by the others (their packets
/// and its own are dropped as `UnknownKey` both ways), while they stay
/// together.
#[tokio::test]
async fn a_member_left_on_a_removed_key_is_cut_off() {
    let old = Keyring::generate();
    let nodes = three_keyed("enc-revoke", &old).await;
    let (rotated, left) = (&nodes[..2], &nodes[2]);
    let mut events: Vec<_> = rotated.iter().map(|n| n.membership.subscribe()).collect();
    let new = Keyring::generate();
    for node in rotated {
        node.keyring().install(new.clone()).unwrap();
    }
    for node in rotated {
        node.keyring().use_key(new.id()).unwrap();
    }
    for node in rotated {
        node.keyring().remove(old.id()).unwrap();
    }

    for (node, events) in rotated.iter().zip(&mut events) {
        next_matching(events, DETECT, "n3 declared dead", dead("n3")).await;
        assert_eq!(live_ids(&node.membership), ["n1", "n2"]);
        assert!(node.stats().dropped_by(DropReason::UnknownKey) > 0);
    }
    wait_until(DETECT, "n3 drops the new key's packets", || {
        left.stats().dropped_by(DropReason::UnknownKey) > 0
    })
    .await;
    wait_live(&left.membership, DETECT, "n3 alone", |live| live.len() == 1).await;
    shutdown_all(&nodes.iter().collect::<Vec<_>>()).await;
}

/// Proves: datagrams thrown at a member's port from a plain UDP socket
/// (empty, short, junk, an unknown key id, a forged tag, and a well-formed
/// clear-text chitchat `Syn`) are each dropped and counted under their
/// reason, never parsed: the `Syn` gets no answer, as it would from plain
/// chitchat; and the member gossips on with its peer.
#[tokio::test]
async fn garbage_at_the_port_is_dropped_counted_and_never_parsed() {
    let cluster = "enc-garbage";
    let key = Keyring::generate();
    let n1 = start("n1", &[], cluster, Some(&key)).await;
    let n2 = start("n2", &[n1.addr], cluster, Some(&key)).await;
    wait_live(&n1.membership, CONVERGE, "two nodes converge", |live| {
        live.len() == 2
    })
    .await;

    let raw = tokio::net::UdpSocket::bind(local(0)).await.unwrap();
    let mut forged = vec![1];
    forged.extend_from_slice(&key.id().to_bytes());
    forged.extend_from_slice(&[0; 12]);
    forged.extend_from_slice(b"ciphertext and a tag, both made up");
    let mut unknown = forged.clone();
    unknown[1..5].copy_from_slice(&Keyring::generate().id().to_bytes());
    for datagram in [&b""[..], &[1; 20], b"junk", &unknown, &forged] {
        raw.send_to(datagram, n1.addr).await.unwrap();
    }
    let mut plain = UdpTransport.open(local(0)).await.unwrap();
    let syn = ChitchatEnvelope {
        version: ProtocolVersion::V0,
        message: ChitchatMessage::Syn {
            cluster_id: cluster.to_string(),
            digest: Default::default(),
        },
    };
    plain.send(n1.addr, syn).await.unwrap();

    let expected = [
        (DropReason::TooShort, 2),
        (DropReason::BadVersion, 2),
        (DropReason::UnknownKey, 1),
        (DropReason::BadTag, 1),
        (DropReason::Malformed, 0),
    ];
    wait_until(CONVERGE, "n1 counts the garbage", || {
        n1.stats().dropped() >= 6
    })
    .await;
    let reply = tokio::time::timeout(Duration::from_secs(1), plain.recv()).await;
    assert!(reply.is_err(), "the clear-text Syn was answered: {reply:?}");
    let stats = n1.stats();
    for (reason, count) in expected {
        assert_eq!(stats.dropped_by(reason), count, "{reason}: {stats:?}");
    }
    gossip_rounds(&[&n1, &n2], 10).await;
    assert_eq!(n1.stats().dropped(), 6);
    assert_eq!(live_ids(&n1.membership), ["n1", "n2"]);
    shutdown_all(&[&n1, &n2]).await;
}
