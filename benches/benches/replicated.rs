//! The replicated path: commands per second through a three-manager Raft cluster
//! on loopback (three `RaftStore`s in this process, talking HTTP over 127.0.0.1,
//! each fsync'ing its log), as concurrent clients grow from 1 to 64.
//!
//! - `replicated/submit/<clients>`: job submissions (`UpsertJob`) on the leader,
//!   through `BatchingStore` as a node sends them: concurrent clients' commands
//!   share Raft entries (group commit), which is where throughput comes from.
//! - `replicated/submit_unbatched/<clients>`: the same straight into the
//!   `RaftStore`, one entry (and one fsync per node) per command, for comparison.
//! - `replicated/alloc_updates/<clients>`: allocation status reports as agents send
//!   them, 64 updates per `UpdateAllocs` command (elements = updates), batched.
//! - `replicated/submit_via_follower/<clients>`: submissions sent to a follower,
//!   which forwards them to the leader.
//! - `replicated/metrics/{off,on}/<clients>`: `submit` without and with the
//!   store's metrics (`BatchingStore::metered`: proposals by outcome, commands
//!   per entry, commit latency, as a node runs it), each on a fresh three-node
//!   cluster so neither inherits the other's log, off and on alternating per
//!   client count. The ratio is the cost of metrics on the replicated path.
//!
//! - `replicated/tls/{off,on}/<clients>`: `submit` with the Raft RPCs in
//!   clear and over mutual TLS (a cluster CA made for the run, each store
//!   with its own node certificate, as a secure node runs them), each on a
//!   fresh three-node cluster, off and on alternating per client count. The
//!   ratio is the cost of TLS on the replicated path.
//!
//! Run: `cargo bench -p orion-benches --bench replicated -- --warm-up-time 1 --measurement-time 5`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use orion_core::batching::{BatchConfig, BatchingStore};
use orion_core::command::{AllocUpdate, Placement, Plan, SlotRef};
use orion_core::testing::fixtures;
use orion_core::{AllocState, Command, JobSpec, NodeRole, Peer, Store};
use orion_store::{RaftStore, RaftStoreConfig};
use tokio::runtime::Runtime;

const CLIENTS: [usize; 4] = [1, 4, 16, 64];
const UPDATES_PER_COMMAND: usize = 64;

struct Rig {
    stores: Vec<RaftStore>,
    _dirs: Vec<tempfile::TempDir>,
}

/// A node's TLS material from `ca`: its certificate names it a manager and
/// 127.0.0.1.
fn node_tls(ca: &orion_core::tls::CertAuthority, id: &str) -> orion_core::tls::TlsState {
    use orion_core::tls::{NodeCert, NodeKey, Subject, TlsState};
    let key = NodeKey::generate().expect("key");
    let life = Duration::from_secs(24 * 3600);
    let subject = Subject {
        node_id: id.into(),
        role: NodeRole::Manager,
        ips: vec![],
        dns: vec![],
    };
    let cert_pem = ca.issue(&subject, &key.public_key(), life).expect("issue");
    let now = std::time::SystemTime::now();
    TlsState::with_cert(
        &ca.cert_pem,
        NodeCert {
            cert_pem,
            key_pem: key.to_pem(),
            issued: now,
            expires: now + life,
        },
    )
    .expect("tls")
}

async fn open_with(
    id: &str,
    tls: Option<orion_core::tls::TlsState>,
) -> (RaftStore, tempfile::TempDir, Peer) {
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut config = RaftStoreConfig::new(id, dir.path());
    config.raft_addr = listener.local_addr().expect("addr").to_string();
    config.http_addr = "127.0.0.1:9".into();
    let peer = Peer {
        id: id.to_string(),
        raft_addr: config.raft_addr.clone(),
        http_addr: config.http_addr.clone(),
        role: NodeRole::Manager,
    };
    let store = RaftStore::open_tls(config, tls).await.expect("open");
    store.serve(listener).expect("serve");
    (store, dir, peer)
}

async fn cluster() -> Rig {
    cluster_with(false).await
}

/// Three managers, their Raft RPCs over mutual TLS when `tls`.
async fn cluster_with(tls: bool) -> Rig {
    let ca = tls.then(|| orion_core::tls::CertAuthority::generate("bench").expect("ca"));
    let mut stores = Vec::new();
    let mut dirs = Vec::new();
    let mut peers = Vec::new();
    for id in ["m1", "m2", "m3"] {
        let (s, d, p) = open_with(id, ca.as_ref().map(|ca| node_tls(ca, id))).await;
        stores.push(s);
        dirs.push(d);
        peers.push(p);
    }
    stores[0].initialize_single().await.expect("init");
    for peer in &peers[1..] {
        stores[0].add_peer(peer.clone()).await.expect("add peer");
    }
    Rig {
        stores,
        _dirs: dirs,
    }
}

impl Rig {
    fn raw(&self, i: usize) -> Arc<dyn Store> {
        Arc::new(self.stores[i].clone())
    }

    fn batched(&self, i: usize) -> Arc<dyn Store> {
        Arc::new(BatchingStore::new(self.raw(i), BatchConfig::default()))
    }

    fn metered(&self, i: usize) -> Arc<dyn Store> {
        Arc::new(BatchingStore::metered(
            self.raw(i),
            BatchConfig::default(),
            Some(Arc::new(orion_core::metrics::Metrics::new())),
        ))
    }
}

/// Runs `total` commands from `clients` concurrent tasks against `store`.
async fn drive(
    store: &Arc<dyn Store>,
    clients: usize,
    total: u64,
    make: Arc<dyn Fn(u64) -> Command + Send + Sync>,
) -> Duration {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (store, next, make) = (store.clone(), next.clone(), make.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                store.propose(make(i)).await.expect("propose");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    start.elapsed()
}

fn submissions(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let rig = rt.block_on(cluster());
    let seq = Arc::new(AtomicU64::new(0));
    let targets = [
        ("replicated/submit", rt.block_on(async { rig.batched(0) })),
        ("replicated/submit_unbatched", rig.raw(0)),
        (
            "replicated/submit_via_follower",
            rt.block_on(async { rig.batched(1) }),
        ),
    ];
    for (group_name, store) in targets {
        let mut group = c.benchmark_group(group_name);
        group.throughput(Throughput::Elements(1));
        for clients in CLIENTS {
            let seq = seq.clone();
            let make: Arc<dyn Fn(u64) -> Command + Send + Sync> = Arc::new(move |_| {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                Command::UpsertJob {
                    spec: JobSpec::service(format!("job-{n}"), "registry.local/app:1").replicas(0),
                }
            });
            let store = &store;
            group.bench_with_input(
                BenchmarkId::from_parameter(clients),
                &clients,
                |b, &clients| {
                    b.to_async(&rt)
                        .iter_custom(|iters| drive(store, clients, iters, make.clone()));
                },
            );
        }
        group.finish();
    }
}

/// Submissions off and on for each client count, each on a fresh
/// three-node cluster (a longer log or a warmer cache must not favour
/// whichever runs second): `rig(on)` makes the cluster, `store(rig, on)` the
/// store the clients drive.
fn off_and_on(
    c: &mut Criterion,
    group_name: &str,
    clients: &[usize],
    rig: impl Fn(&Runtime, bool) -> Rig,
    store: impl Fn(&Rig, bool) -> Arc<dyn Store>,
) {
    let rt = Runtime::new().expect("runtime");
    let seq = Arc::new(AtomicU64::new(0));
    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(1));
    for &clients in clients {
        for on in [false, true] {
            let rig = rig(&rt, on);
            let store = rt.block_on(async { store(&rig, on) });
            let seq = seq.clone();
            let make: Arc<dyn Fn(u64) -> Command + Send + Sync> = Arc::new(move |_| {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                Command::UpsertJob {
                    spec: JobSpec::service(format!("job-{n}"), "registry.local/app:1").replicas(0),
                }
            });
            let id = BenchmarkId::new(if on { "on" } else { "off" }, clients);
            group.bench_function(id, |b| {
                b.to_async(&rt)
                    .iter_custom(|iters| drive(&store, clients, iters, make.clone()));
            });
            rt.block_on(async {
                for s in &rig.stores {
                    let _ = s.shutdown().await;
                }
            });
        }
    }
    group.finish();
}

fn metrics_cost(c: &mut Criterion) {
    off_and_on(
        c,
        "replicated/metrics",
        &[16, 64],
        |rt, _| rt.block_on(cluster()),
        |rig, on| if on { rig.metered(0) } else { rig.batched(0) },
    );
}

fn tls_cost(c: &mut Criterion) {
    off_and_on(
        c,
        "replicated/tls",
        &[1, 16, 64],
        |rt, on| rt.block_on(cluster_with(on)),
        |rig, _| rig.batched(0),
    );
}

fn alloc_updates(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let rig = rt.block_on(cluster());
    let leader = rt.block_on(async { rig.batched(0) });
    let slots = (CLIENTS[CLIENTS.len() - 1] * UPDATES_PER_COMMAND) as u32;
    let ids: Vec<String> = rt.block_on(async {
        let mut node = fixtures::node("n1", 100_000.0, 100_000_000);
        node.port_range = (1, 1);
        leader
            .propose(Command::RegisterNode { info: node })
            .await
            .expect("node");
        let spec = JobSpec::service("load", "registry.local/app:1")
            .replicas(slots)
            .resources(0.01, 1);
        leader
            .propose(Command::UpsertJob { spec })
            .await
            .expect("job");
        let placements = (0..slots)
            .map(|slot| Placement {
                slot: SlotRef {
                    job: "load".into(),
                    version: 1,
                    slot,
                    existing: None,
                    replaces: None,
                    pin: None,
                },
                node: "n1".into(),
                ports: Vec::new(),
            })
            .collect();
        let plan = Plan {
            placements,
            ..Plan::default()
        };
        leader
            .propose(Command::ApplyPlan { plan })
            .await
            .expect("plan");
        leader
            .replica()
            .read(|s| s.allocs.keys().cloned().collect())
    });
    let ids = Arc::new(ids);
    let mut group = c.benchmark_group("replicated/alloc_updates");
    group.throughput(Throughput::Elements(UPDATES_PER_COMMAND as u64));
    for clients in CLIENTS {
        let ids = ids.clone();
        let make: Arc<dyn Fn(u64) -> Command + Send + Sync> = Arc::new(move |i| {
            // Command i reports on a window of allocations, each with a new message,
            // so every update changes state.
            let start = (i as usize * UPDATES_PER_COMMAND) % ids.len();
            let updates = (0..UPDATES_PER_COMMAND)
                .map(|k| AllocUpdate {
                    message: Some(format!("report {i}")),
                    ..AllocUpdate::new(
                        ids[(start + k) % ids.len()].clone(),
                        "n1",
                        AllocState::Running,
                    )
                })
                .collect();
            Command::UpdateAllocs { updates }
        });
        group.bench_with_input(
            BenchmarkId::from_parameter(clients),
            &clients,
            |b, &clients| {
                b.to_async(&rt)
                    .iter_custom(|iters| drive(&leader, clients, iters, make.clone()));
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    targets = submissions, alloc_updates, metrics_cost, tls_cost
}
criterion_main!(benches);
