//! The `Membership` contract, checked against both the fake and the adapter.

use orion_core::membership::{Member, Membership, MembershipEvent};
use orion_core::spec::Resources;
use orion_core::testing::StaticMembership;
use orion_gossip::transport::ChannelTransport;
use orion_gossip::ChitchatMembership;

use crate::support::*;

/// What every `Membership` must do for a single node: `live()` includes the
/// local node; `publish` reports the change once as `Updated { previous,
/// updated }` and `live()` shows it; publishing the same facts again reports
/// nothing.
async fn single_node_contract(membership: &dyn Membership, local: Member) {
    assert_eq!(membership.local_id(), &local.id);
    assert_eq!(membership.live(), vec![local.clone()]);

    let mut events = membership.subscribe();
    let mut busier = local.clone();
    busier.used = Resources {
        cpu: 0.5,
        memory_mb: 256,
        disk_mb: 0,
    };
    membership.publish(busier.clone()).await.unwrap();
    assert_eq!(
        events.recv().await.unwrap(),
        MembershipEvent::Updated {
            previous: local.clone(),
            updated: busier.clone(),
        }
    );
    assert_eq!(membership.live(), vec![busier.clone()]);

    membership.publish(busier.clone()).await.unwrap();
    assert!(
        events.try_recv().is_err(),
        "publishing the same facts again was reported"
    );
    membership.shutdown().await;
}

/// Proves the fake honours the contract the adapter is held to.
#[tokio::test]
async fn static_membership_honours_the_contract() {
    let local = member("solo", local(7947));
    single_node_contract(&StaticMembership::new(local.clone()), local).await;
}

/// Proves `ChitchatMembership` honours the contract, its generation and gossip
/// address included in the local member from the start.
#[tokio::test]
async fn chitchat_membership_honours_the_contract() {
    let addr = local(30_001);
    let mut config = config("solo", addr, &[], "contract");
    config.member.addrs.gossip = None; // filled with the advertise address
    config.generation = 42;
    let mut local = member("solo", addr);
    local.generation = 42;
    let membership = ChitchatMembership::start_with_transport(config, &ChannelTransport::default())
        .await
        .unwrap();
    single_node_contract(&membership, local).await;
}

/// Proves `publish` after `shutdown` fails with `Shutdown`, and that shutdown
/// is idempotent and frees the UDP port at once.
#[tokio::test]
async fn shutdown_frees_the_port_and_refuses_publish() {
    let addr = local(free_port());
    let membership = ChitchatMembership::start(config("n1", addr, &[], "shutdown"))
        .await
        .unwrap();
    let me = seen(&membership, "n1").unwrap();
    membership.shutdown().await;
    membership.shutdown().await;
    assert!(matches!(
        membership.publish(me).await,
        Err(orion_core::membership::MembershipError::Shutdown)
    ));
    std::net::UdpSocket::bind(addr).expect("the gossip port is free after shutdown");
}
