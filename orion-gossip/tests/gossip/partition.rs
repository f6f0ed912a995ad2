//! Partitions, over chitchat's in-memory transport whose links can be cut.

use std::net::SocketAddr;

use orion_core::membership::Membership;
use orion_gossip::transport::ChannelTransport;
use orion_gossip::ChitchatMembership;
use tokio::time::Instant;

use crate::support::*;

/// Three nodes on `transport`: n1, then n2 and n3 seeded with n1 only.
async fn three_nodes(transport: &ChannelTransport) -> Vec<(ChitchatMembership, SocketAddr)> {
    let addrs: Vec<SocketAddr> = (1..=3).map(|i| local(20_000 + i)).collect();
    let mut nodes = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let seeds = if i == 0 { vec![] } else { vec![addrs[0]] };
        let config = config(&format!("n{}", i + 1), *addr, &seeds, "partition");
        let membership = ChitchatMembership::start_with_transport(config, transport)
            .await
            .expect("start over the channel transport");
        nodes.push((membership, *addr));
    }
    for (membership, _) in &nodes {
        wait_live(membership, CONVERGE, "three nodes converge", |live| {
            live.len() == 3
        })
        .await;
    }
    nodes
}

/// Cuts (or heals) every link between `addr` and `others`.
async fn set_links(
    transport: &ChannelTransport,
    addr: SocketAddr,
    others: &[SocketAddr],
    up: bool,
) {
    for other in others {
        if up {
            transport.add_link(addr, *other).await;
        } else {
            transport.remove_link(addr, *other).await;
        }
    }
}

/// Proves: a node cut off from the others is declared dead on both sides of
/// the partition (each side keeps only itself / the majority), and once the
/// links heal every node reports the others `Joined` again, with the same
/// generation (the process never restarted).
async fn partition_and_heal(cut: usize) {
    let transport = ChannelTransport::default();
    let nodes = three_nodes(&transport).await;
    let (isolated, isolated_addr) = &nodes[cut];
    let isolated_id = isolated.local_id().clone();
    let rest: Vec<&(ChitchatMembership, SocketAddr)> = nodes
        .iter()
        .filter(|(m, _)| m.local_id() != &isolated_id)
        .collect();
    let rest_addrs: Vec<SocketAddr> = rest.iter().map(|(_, a)| *a).collect();
    let mut majority_events: Vec<_> = rest.iter().map(|(m, _)| m.subscribe()).collect();

    set_links(&transport, *isolated_addr, &rest_addrs, false).await;
    let cut_at = Instant::now();
    for events in &mut majority_events {
        next_matching(
            events,
            DETECT,
            "isolated node declared dead",
            dead(&isolated_id),
        )
        .await;
    }
    println!(
        "{isolated_id} cut off: declared dead after {:?}",
        cut_at.elapsed()
    );
    wait_live(isolated, DETECT, "isolated node sees only itself", |live| {
        live.len() == 1
    })
    .await;

    set_links(&transport, *isolated_addr, &rest_addrs, true).await;
    let healed_at = Instant::now();
    for events in &mut majority_events {
        let member = next_matching(
            events,
            CONVERGE,
            "isolated node rejoins",
            joined(&isolated_id),
        )
        .await;
        assert_eq!(member.generation, isolated.generation());
    }
    wait_live(isolated, CONVERGE, "isolated node sees all again", |live| {
        live.len() == 3
    })
    .await;
    println!(
        "{isolated_id} healed: rejoined after {:?}",
        healed_at.elapsed()
    );

    for (membership, _) in &nodes {
        membership.shutdown().await;
    }
}

/// Proves [`partition_and_heal`] for a node that is not a seed: after the
/// heal it is found again by gossip to the seed (and to dead nodes).
#[tokio::test]
async fn partitioned_node_is_declared_dead_and_rejoins_when_healed() {
    partition_and_heal(2).await;
}

/// Proves [`partition_and_heal`] for the seed itself: the others keep each
/// other alive without it and find it again when the links heal.
#[tokio::test]
async fn partitioned_seed_is_declared_dead_and_rejoins_when_healed() {
    partition_and_heal(0).await;
}
