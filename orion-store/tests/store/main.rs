//! `RaftStore` integration tests: the shared store suite on both engines, restart
//! recovery, snapshots, and a multi-node cluster over the HTTP transport on loopback.

mod cluster;
mod membership;
mod restart;
mod suite;

use std::path::Path;
use std::time::Duration;

use orion_core::{
    AllocState, AllocUpdate, Command, JobSpec, NodeAddrs, NodeInfo, NodeRole, Peer, Placement,
    Plan, Resources, SlotRef, Store,
};
use orion_store::{Engine, RaftStore, RaftStoreConfig};

/// Longest any single condition in these tests is waited for.
pub const WAIT: Duration = Duration::from_secs(20);

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A node of a test cluster: its store and how it was configured.
pub struct TestNode {
    /// The store.
    pub store: RaftStore,
    /// Its config (the raft address is the bound port).
    pub config: RaftStoreConfig,
}

impl TestNode {
    /// This node as a peer with `role`.
    pub fn peer(&self, role: NodeRole) -> Peer {
        Peer {
            id: self.config.node_id.clone(),
            raft_addr: self.config.raft_addr.clone(),
            http_addr: self.config.http_addr.clone(),
            role,
        }
    }
}

/// Opens and serves a store for `id` in `dir` on a fresh loopback port.
pub async fn start_node(
    id: &str,
    dir: &Path,
    engine: Engine,
    tune: impl FnOnce(&mut RaftStoreConfig),
) -> TestNode {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut config = RaftStoreConfig::new(id, dir);
    config.engine = engine;
    config.raft_addr = addr.to_string();
    config.http_addr = format!("127.0.0.1:{}", 18000 + addr.port() % 1000);
    tune(&mut config);
    let store = RaftStore::open(config.clone()).await.expect("open store");
    store.serve(listener).expect("serve");
    TestNode { store, config }
}

/// A started, bootstrapped single-node store.
pub async fn start_single(
    id: &str,
    dir: &Path,
    engine: Engine,
    tune: impl FnOnce(&mut RaftStoreConfig),
) -> TestNode {
    let node = start_node(id, dir, engine, tune).await;
    node.store.initialize_single().await.expect("initialize");
    node
}

/// Waits until `store`'s replica has applied `index`.
pub async fn wait_applied(store: &RaftStore, index: u64) {
    tokio::time::timeout(WAIT, store.replica().wait_for(index))
        .await
        .unwrap_or_else(|_| panic!("{store:?} did not apply {index} within {WAIT:?}"));
}

/// Persistent parts of the state (everything but the applied index), for comparison.
pub fn state_of(store: &RaftStore) -> serde_json::Value {
    store.replica().read(|s| {
        serde_json::json!({
            "cluster": s.cluster_id,
            "jobs": s.jobs,
            "nodes": s.nodes,
            "allocs": s.allocs,
        })
    })
}

fn node_info(id: &str) -> NodeInfo {
    NodeInfo {
        id: id.into(),
        addrs: NodeAddrs {
            http: format!("{id}:8080"),
            raft: None,
            gossip: None,
        },
        role: NodeRole::Worker,
        capacity: Resources {
            cpu: 8.0,
            memory_mb: 16_384,
            disk_mb: 10_000,
        },
        tags: Default::default(),
        host_ip: "127.0.0.1".into(),
        port_range: (20_000, 30_000),
        host_volumes: Vec::new(),
        data_key_id: None,
        runtime: None,
        runtime_warning: None,
    }
}

/// Writes a small cluster's worth of state: nodes, jobs, placed and running
/// allocations. Returns the index of the last write.
pub async fn write_workload(store: &dyn Store, jobs: usize) -> u64 {
    let put = |cmd| async move { store.propose(cmd).await.expect("propose") };
    let mut last = put(Command::InitCluster {
        cluster_id: "c-test".into(),
    })
    .await
    .index;
    for n in ["w1", "w2"] {
        last = last.max(
            put(Command::RegisterNode { info: node_info(n) })
                .await
                .index,
        );
    }
    for j in 0..jobs {
        let name = format!("job-{j}");
        let spec = JobSpec::service(&name, "nginx")
            .replicas(2)
            .resources(0.1, 64);
        last = last.max(put(Command::UpsertJob { spec }).await.index);
        let placements = (0..2)
            .map(|slot| Placement {
                slot: SlotRef {
                    job: name.clone(),
                    version: 1,
                    slot,
                    existing: None,
                    replaces: None,
                    pin: None,
                },
                node: if slot == 0 { "w1".into() } else { "w2".into() },
                ports: Vec::new(),
            })
            .collect();
        let plan = Plan {
            placements,
            ..Default::default()
        };
        last = last.max(put(Command::ApplyPlan { plan }).await.index);
    }
    let updates: Vec<AllocUpdate> = store.replica().read(|s| {
        s.allocs
            .values()
            .map(|a| {
                AllocUpdate::new(
                    a.id.clone(),
                    a.node.clone().unwrap_or_default(),
                    AllocState::Running,
                )
            })
            .collect()
    });
    last.max(put(Command::UpdateAllocs { updates }).await.index)
}
