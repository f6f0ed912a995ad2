//! Every voter can be removed by id, also one that never registered as a node
//! (a peer added straight to the store, gone before any agent of its ran).

use std::time::Duration;

use orion::{Cluster, NodeProfile, NodeRole, Peer, RaftStore, RaftStoreConfig, Store};
use orion_core::testing::FakeRuntime;

async fn store(id: &str, dir: &std::path::Path) -> (RaftStore, Peer) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = RaftStoreConfig::new(id, dir.join(id));
    config.raft_addr = listener.local_addr().unwrap().to_string();
    config.http_addr = "127.0.0.1:9".into();
    let peer = Peer {
        id: id.into(),
        raft_addr: config.raft_addr.clone(),
        http_addr: config.http_addr.clone(),
        role: NodeRole::Manager,
    };
    let s = RaftStore::open(config).await.unwrap();
    s.serve(listener).unwrap();
    (s, peer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_that_is_no_node_is_removed_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let (s1, _) = store("n1", dir.path()).await;
    s1.initialize_single().await.unwrap();
    let (s2, p2) = store("n2", dir.path()).await;
    let (s3, p3) = store("ghost", dir.path()).await;
    s1.add_peer(p2).await.unwrap();
    s1.add_peer(p3).await.unwrap();
    let mut p = NodeProfile::default();
    p.id = Some("n1".into());
    let c = Cluster::builder()
        .node(p)
        .runtime(FakeRuntime::new())
        .store(s1.clone())
        .start()
        .await
        .unwrap();
    c.ready(Duration::from_secs(10)).await.unwrap();
    let voters =
        |c: &Cluster| -> Vec<String> { c.store().voters().into_iter().map(|p| p.id).collect() };
    assert!(
        voters(&c).contains(&"ghost".to_string()),
        "{:?}",
        voters(&c)
    );
    assert!(!c.nodes().iter().any(|n| n.node.info.id == "ghost"));
    // Gone: n1 and n2 are still a majority of three.
    s3.shutdown().await.unwrap();
    c.remove_node("ghost", false).await.unwrap();
    assert_eq!(voters(&c), ["n1", "n2"]);
    let err = c.remove_node("nobody", false).await.unwrap_err();
    assert!(
        err.to_string().contains("no node with id \"nobody\""),
        "{err}"
    );
    c.shutdown().await;
    s2.shutdown().await.unwrap();
}
