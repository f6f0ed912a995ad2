//! Helpers: free ports, members and configs, and waiting on events with timeouts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use orion_core::membership::{Member, Membership, MembershipEvent};
use orion_core::model::{NodeAddrs, NodeRole};
use orion_core::spec::Resources;
use orion_gossip::GossipConfig;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::{timeout_at, Instant};

/// Generous bound for a cluster to converge.
pub const CONVERGE: Duration = Duration::from_secs(10);
/// Generous bound for declaring a dead node (the tuning aims at < 3 s).
pub const DETECT: Duration = Duration::from_secs(5);

/// A UDP port free on 127.0.0.1 right now: bind port 0, read it, drop the socket.
/// (chitchat advertises the address it is given, so it cannot bind port 0 itself.)
pub fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .map(|addr| addr.port())
        .expect("a free UDP port on 127.0.0.1")
}

/// `127.0.0.1:port`.
pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A member with distinctive metadata, gossiping on `gossip`.
pub fn member(id: &str, gossip: SocketAddr) -> Member {
    Member {
        id: id.to_string(),
        generation: 0,
        addrs: NodeAddrs {
            http: format!("127.0.0.1:{}", gossip.port().wrapping_add(1)),
            raft: Some(format!("127.0.0.1:{}", gossip.port().wrapping_add(2))),
            gossip: Some(gossip.to_string()),
        },
        role: if id.ends_with('1') {
            NodeRole::Manager
        } else {
            NodeRole::Worker
        },
        capacity: Resources {
            cpu: 4.5,
            memory_mb: 8192,
            disk_mb: 20_000,
        },
        used: Resources::ZERO,
        tags: BTreeMap::from([
            ("zone".to_string(), format!("z-{id}")),
            ("disk".to_string(), "ssd".to_string()),
        ]),
        load: Default::default(),
        suspects: Default::default(),
        starved: false,
    }
}

/// Config for `id` listening on `addr`, joining through `seeds`, in `cluster`.
pub fn config(id: &str, addr: SocketAddr, seeds: &[SocketAddr], cluster: &str) -> GossipConfig {
    let mut config = GossipConfig::new(member(id, addr));
    config.listen_addr = addr;
    config.seeds = seeds.iter().map(ToString::to_string).collect();
    config.cluster_id = cluster.to_string();
    config
}

/// The ids of `membership`'s live set, sorted.
pub fn live_ids(membership: &dyn Membership) -> Vec<String> {
    let mut ids: Vec<String> = membership.live().into_iter().map(|m| m.id).collect();
    ids.sort();
    ids
}

/// Waits until `check` holds of `membership`'s live set, re-checking after each
/// event; panics after `within`.
pub async fn wait_live(
    membership: &dyn Membership,
    within: Duration,
    what: &str,
    check: impl Fn(&[Member]) -> bool,
) {
    let deadline = Instant::now() + within;
    // Subscribe before the first check: the live set is updated before events
    // are sent, so no change can slip between the check and the wait.
    let mut events = membership.subscribe();
    loop {
        if check(&membership.live()) {
            return;
        }
        match timeout_at(deadline, events.recv()).await {
            Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => {}
            Ok(Err(RecvError::Closed)) => panic!("{what}: event channel closed"),
            Err(_) => panic!(
                "{}: not within {within:?}; live: {:?}",
                what,
                live_ids(membership)
            ),
        }
    }
}

/// Waits until `check` holds, re-checking every 20 ms (for counters, which
/// send no events); panics after `within`.
pub async fn wait_until(within: Duration, what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    let mut ticks = tokio::time::interval(Duration::from_millis(20));
    loop {
        if check() {
            return;
        }
        if timeout_at(deadline, ticks.tick()).await.is_err() {
            panic!("{what}: not within {within:?}");
        }
    }
}

/// Waits for the first event matching `pick` and returns what it picked;
/// panics after `within`.
pub async fn next_matching<T>(
    events: &mut broadcast::Receiver<MembershipEvent>,
    within: Duration,
    what: &str,
    pick: impl Fn(&MembershipEvent) -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match timeout_at(deadline, events.recv()).await {
            Ok(Ok(event)) => {
                if let Some(picked) = pick(&event) {
                    return picked;
                }
            }
            Ok(Err(RecvError::Lagged(n))) => panic!("{what}: lagged by {n} events"),
            Ok(Err(RecvError::Closed)) => panic!("{what}: event channel closed"),
            Err(_) => panic!("{what}: not within {within:?}"),
        }
    }
}

/// Collects the events matching `pick` that arrive within `window` (used to
/// show that something does *not* happen).
pub async fn matching_within<T>(
    events: &mut broadcast::Receiver<MembershipEvent>,
    window: Duration,
    pick: impl Fn(&MembershipEvent) -> Option<T>,
) -> Vec<T> {
    let deadline = Instant::now() + window;
    let mut picked = Vec::new();
    while let Ok(received) = timeout_at(deadline, events.recv()).await {
        match received {
            Ok(event) => picked.extend(pick(&event)),
            Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => break,
        }
    }
    picked
}

/// `Some(id)` if `event` declares `id` dead.
pub fn dead(id: &str) -> impl Fn(&MembershipEvent) -> Option<()> + '_ {
    move |event| matches!(event, MembershipEvent::Dead(dead) if dead == id).then_some(())
}

/// `Some(member)` if `event` is `id` joining.
pub fn joined(id: &str) -> impl Fn(&MembershipEvent) -> Option<Member> + '_ {
    move |event| match event {
        MembershipEvent::Joined(member) if member.id == id => Some(member.clone()),
        _ => None,
    }
}

/// The member `id` as `membership` sees it.
pub fn seen(membership: &dyn Membership, id: &str) -> Option<Member> {
    membership.live().into_iter().find(|m| m.id == id)
}
