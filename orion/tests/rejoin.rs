//! A node restarted with its data is already a member: it starts, and catches
//! up from the leader, even when no address it was given to join through
//! answers (the history checker's nemesis found restarted workers exiting
//! because their `--join` target was down, or because the leader refused a
//! second membership change while one was in progress).

use std::net::SocketAddr;
use std::time::Duration;

use orion::{Cluster, JobSpec, Node, NodeRole};
use orion_core::testing::FakeRuntime;

async fn start(
    dir: &std::path::Path,
    name: &str,
    role: NodeRole,
    join: Vec<String>,
    addrs: Option<(SocketAddr, SocketAddr, SocketAddr)>,
) -> Result<Cluster, orion::NodeError> {
    let mut b = Node::builder()
        .node_id(name)
        .role(role)
        .data_dir(dir.join(name))
        .loopback_ports()
        .loops(orion_core::testing::fast_loops())
        .join(join)
        .join_timeout(Duration::from_secs(2))
        // Joins without a token: tokens have their own tests (acl.rs).
        .insecure_dev(true)
        .runtime(FakeRuntime::new());
    if let Some((http, raft, gossip)) = addrs {
        b = b.http(http).raft(raft).gossip(gossip);
    }
    b.start().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_restarted_with_its_data_starts_when_its_join_target_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let n1 = start(dir.path(), "n1", NodeRole::Manager, vec![], None)
        .await
        .unwrap();
    n1.ready(Duration::from_secs(10)).await.unwrap();
    let join = vec![n1.http_addr().unwrap().to_string()];
    let w = start(dir.path(), "w", NodeRole::Worker, join, None)
        .await
        .unwrap();
    w.ready(Duration::from_secs(30)).await.unwrap();
    let me = n1
        .nodes()
        .into_iter()
        .find(|n| n.node.info.id == "w")
        .expect("the worker registered")
        .node
        .info
        .addrs;
    let parse = |a: Option<String>| a.unwrap().parse::<SocketAddr>().unwrap();
    let addrs = (parse(Some(me.http)), parse(me.raft), parse(me.gossip));
    w.shutdown().await;

    // Written while the worker is down: it must catch up on it.
    n1.submit(
        JobSpec::service("web", "img")
            .replicas(1)
            .resources(0.1, 16),
    )
    .await
    .unwrap();

    // Nobody answers at the join address now (port 1 on loopback is closed),
    // and a fresh node given it would fail: a restarted member does not.
    let dead = vec!["127.0.0.1:1".to_string()];
    let fresh = start(dir.path(), "x", NodeRole::Worker, dead.clone(), None).await;
    let Err(err) = fresh else {
        panic!("a new node cannot join through a dead address");
    };
    assert!(
        err.to_string()
            .contains("could not join the cluster through 127.0.0.1:1"),
        "{err}"
    );
    let w = start(dir.path(), "w", NodeRole::Worker, dead, Some(addrs))
        .await
        .expect("a member restarted with its data starts without its join target");
    w.ready(Duration::from_secs(30)).await.unwrap();
    let caught_up = async {
        while w.job("web").is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), caught_up)
        .await
        .expect("the restarted worker's replica catches up with the job written while it was down");
    // It came back as the node it was: one record, still a worker.
    assert_eq!(
        n1.nodes().iter().filter(|n| n.node.info.id == "w").count(),
        1
    );
    w.shutdown().await;
    n1.shutdown().await;
}
