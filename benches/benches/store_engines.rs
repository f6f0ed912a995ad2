//! sled against redb under the Raft log, on the same work:
//!
//! - `store_engines/append/<engine>/<n>_per_append`: log appends through the
//!   `LogEngine` seam, each one fsync'd, one entry or 64 per append (entries/s).
//! - `store_engines/reopen/<engine>`: `RaftStore::open` on a store that took 100,000
//!   commands, was snapshotted and purged, then took 4,000 more: restore the
//!   snapshot and replay the tail into the replica.
//! - `store_engines/interleaved/<n>_per_append`: the same appends, alternating
//!   between the engines call by call so a busy host slows both alike; prints each
//!   engine's median and p90 latency.
//! - `store_engines/snapshot_cycle/<engine>`: the log's steady state on the real
//!   `StateMachine` and `LogStore`: cycles of 5,000 appends (64 per append, applied
//!   to the leader's state machine) then, timed, a snapshot built by the leader,
//!   received and installed by a second node's state machine, and a purge of the
//!   leader's log keeping 1,000.
//! - Printed, not timed: bytes on disk after 100,000 entries + snapshot + purge, and
//!   the proposal rate while filling (256 proposals in flight through openraft);
//!   a fixed run of 20 snapshot cycles per engine (the same work on both): each
//!   step's median and the bytes on disk after it (space amplification).
//!
//! Run: `cargo bench -p orion-benches --bench store_engines -- --warm-up-time 1 --measurement-time 3`

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{EntryPayload, RaftSnapshotBuilder};
use orion_core::replica::Replica;
use orion_core::state::ClusterState;
use orion_core::{Command, JobSpec, Store};
use orion_store::engine::{dir_size, open_engine, LogEngine, RawEntry};
use orion_store::log_store::{encode_command_entry, LogStore};
use orion_store::state_machine::StateMachine;
use orion_store::types::{Entry, LogId};
use orion_store::{Engine, RaftStore, RaftStoreConfig};
use tokio::task::JoinSet;

const ENGINES: [Engine; 2] = [Engine::Sled, Engine::Redb];
const FILL: u64 = 100_000;
const TAIL: u64 = 4_000;
const IN_FLIGHT: usize = 256;

/// A realistic command: one of 100 jobs, resubmitted with a changed env var.
fn command(i: u64) -> Command {
    Command::UpsertJob {
        spec: JobSpec::service(format!("job-{}", i % 100), "registry.local/app:1.2.3")
            .port("http", 8080)
            .resources(0.25, 256)
            .env("REVISION", i.to_string()),
    }
}

fn appends(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_engines/append");
    for engine in ENGINES {
        for per_append in [1u64, 64] {
            let dir = tempfile::tempdir().expect("tempdir");
            let log = open_engine(engine, dir.path()).expect("open engine");
            let template = encode_command_entry(1, command(1));
            let next = Cell::new(1u64);
            let batch = || -> Vec<RawEntry> {
                let start = next.get();
                next.set(start + per_append);
                (start..start + per_append)
                    .map(|i| (i, template.clone()))
                    .collect()
            };
            group.throughput(Throughput::Elements(per_append));
            let id = BenchmarkId::new(engine.name(), format!("{per_append}_per_append"));
            group.bench_function(id, |b| {
                b.iter_batched(
                    batch,
                    |entries| log.append(&entries).expect("append"),
                    BatchSize::SmallInput,
                )
            });
            log.close().expect("close");
        }
    }
    group.finish();
}

/// Entries per snapshot cycle, and log entries kept behind each snapshot.
const CYCLE: u64 = 5_000;
const KEEP: u64 = 1_000;
/// Cycles of the fixed run whose bytes on disk are printed: the same work on both
/// engines (100,000 entries), whatever number of iterations criterion picks.
const STEADY_CYCLES: u64 = 20;

/// A leader's log and state machine, and a second node's state machine that installs
/// the leader's snapshots, on one engine.
struct Pair {
    leader_engine: Arc<dyn LogEngine>,
    leader_log: LogStore,
    leader: StateMachine,
    follower: StateMachine,
    /// The next log index to append.
    next: u64,
    _dirs: [tempfile::TempDir; 2],
}

/// How long one cycle's three steps took.
#[derive(Clone, Copy, Default)]
struct CycleTimes {
    build: Duration,
    install: Duration,
    purge: Duration,
}

impl CycleTimes {
    fn total(&self) -> Duration {
        self.build + self.install + self.purge
    }
}

impl Pair {
    fn open(engine: Engine) -> Pair {
        let dirs = [
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        ];
        let open = |dir: &Path| {
            let log = open_engine(engine, dir).expect("open engine");
            let replica = Arc::new(Replica::new(ClusterState::default()));
            let sm = StateMachine::open(log.clone(), replica).expect("state machine");
            (log, sm)
        };
        let (leader_engine, leader) = open(dirs[0].path());
        let (_, follower) = open(dirs[1].path());
        Pair {
            leader_log: LogStore::new(leader_engine.clone()),
            leader_engine,
            leader,
            follower,
            next: 1,
            _dirs: dirs,
        }
    }

    fn leader_dir(&self) -> &Path {
        self._dirs[0].path()
    }

    fn follower_dir(&self) -> &Path {
        self._dirs[1].path()
    }

    /// One cycle: `CYCLE` entries appended (64 per fsync'd append, the bytes
    /// `LogStore` writes) and applied to the leader's state machine, untimed; then,
    /// timed, the leader builds a snapshot (captures and serializes the replica,
    /// persists it), the follower receives and installs it (decodes, restores,
    /// persists), and the leader purges its log up to `KEEP` entries behind.
    async fn cycle(&mut self) -> CycleTimes {
        let first = self.next;
        let end = first + CYCLE;
        self.next = end;
        for start in (first..end).step_by(64) {
            let indexes = start..(start + 64).min(end);
            let raw: Vec<RawEntry> = indexes
                .clone()
                .map(|i| (i, encode_command_entry(i, command(i))))
                .collect();
            self.leader_engine.append(&raw).expect("append");
            let entries: Vec<Entry> = indexes
                .map(|i| Entry {
                    log_id: log_id(i),
                    payload: EntryPayload::Normal(command(i)),
                })
                .collect();
            self.leader.apply(entries).await.expect("apply");
        }

        let started = Instant::now();
        let mut builder = self.leader.get_snapshot_builder().await;
        let snapshot = builder.build_snapshot().await.expect("build snapshot");
        let build = started.elapsed();
        assert_eq!(snapshot.meta.last_log_id, Some(log_id(end - 1)), "built");

        let started = Instant::now();
        let mut received = self
            .follower
            .begin_receiving_snapshot()
            .await
            .expect("receive");
        received
            .write_all(snapshot.snapshot.get_ref())
            .expect("copy");
        received.set_position(0);
        self.follower
            .install_snapshot(&snapshot.meta, received)
            .await
            .expect("install snapshot");
        let install = started.elapsed();

        let started = Instant::now();
        self.leader_log
            .purge(log_id(end - 1 - KEEP))
            .await
            .expect("purge");
        let purge = started.elapsed();
        CycleTimes {
            build,
            install,
            purge,
        }
    }
}

fn log_id(index: u64) -> LogId {
    openraft::LogId::new(openraft::CommittedLeaderId::new(1, 0), index)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    percentile(&v, 0.5)
}

/// Steady state, on the real state machine and log store: cycles of 5,000 appends
/// then a snapshot built by the leader, installed by a second node, and a purge
/// keeping 1,000. Criterion times the build + install + purge of a cycle; then a
/// fixed run of `STEADY_CYCLES` cycles on fresh directories prints each step's
/// median and the bytes on disk after it (the same work on both engines).
fn snapshot_cycles(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("store_engines/snapshot_cycle");
    group.sample_size(10);
    // The fixed run below follows only when these ran (a filtered run skips both).
    let mut ran = false;
    for engine in ENGINES {
        let mut pair = Pair::open(engine);
        group.bench_function(engine.name(), |b| {
            ran = true;
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += pair.cycle().await.total();
                    }
                    total
                })
            })
        });
    }
    group.finish();
    if !ran {
        return;
    }

    for engine in ENGINES {
        let mut pair = Pair::open(engine);
        let times: Vec<CycleTimes> = rt.block_on(async {
            let mut times = Vec::new();
            for _ in 0..STEADY_CYCLES {
                times.push(pair.cycle().await);
            }
            times
        });
        let step = |f: fn(&CycleTimes) -> Duration| median(times.iter().map(f).collect());
        println!(
            "store_engines/steady/{}: {STEADY_CYCLES} cycles of {CYCLE} entries, each a snapshot \
             built + installed on a second node + a purge keeping {KEEP}: median build {:?}, \
             install {:?}, purge {:?}, all three {:?}; bytes on disk after: leader {}, follower {}",
            engine.name(),
            step(|t| t.build),
            step(|t| t.install),
            step(|t| t.purge),
            step(CycleTimes::total),
            dir_size(pair.leader_dir()).expect("size"),
            dir_size(pair.follower_dir()).expect("size"),
        );
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

/// A/B: one append on each engine per round, order flipped every round.
fn interleaved(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_engines/interleaved");
    let template = encode_command_entry(1, command(1));
    for per_append in [1u64, 64] {
        let dirs = [
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        ];
        let logs: Vec<_> = ENGINES
            .iter()
            .zip(&dirs)
            .map(|(e, d)| open_engine(*e, d.path()).expect("open engine"))
            .collect();
        let samples = RefCell::new([Vec::new(), Vec::new()]);
        let next = Cell::new(1u64);
        group.throughput(Throughput::Elements(2 * per_append));
        group.bench_function(format!("{per_append}_per_append"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for round in 0..iters {
                    let start = next.get();
                    next.set(start + per_append);
                    let batch: Vec<RawEntry> = (start..start + per_append)
                        .map(|i| (i, template.clone()))
                        .collect();
                    let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
                    for k in order {
                        let t = Instant::now();
                        logs[k].append(&batch).expect("append");
                        let d = t.elapsed();
                        samples.borrow_mut()[k].push(d);
                        total += d;
                    }
                }
                total
            })
        });
        for (k, engine) in ENGINES.iter().enumerate() {
            let mut s = std::mem::take(&mut samples.borrow_mut()[k]);
            if s.is_empty() {
                continue;
            }
            s.sort_unstable();
            println!(
                "store_engines/interleaved/{per_append}_per_append/{}: median {:?}, p90 {:?} over {} appends",
                engine.name(),
                percentile(&s, 0.5),
                percentile(&s, 0.9),
                s.len(),
            );
            logs[k].close().expect("close");
        }
    }
    group.finish();
}

fn config(engine: Engine, dir: &Path) -> RaftStoreConfig {
    let mut c = RaftStoreConfig::new("bench", dir);
    c.engine = engine;
    c
}

/// Proposes commands `from..to`, `IN_FLIGHT` at a time.
async fn propose_range(store: &RaftStore, from: u64, to: u64) {
    let mut tasks = JoinSet::new();
    let mut i = from;
    while i < to || !tasks.is_empty() {
        while i < to && tasks.len() < IN_FLIGHT {
            let s = store.clone();
            let cmd = command(i);
            tasks.spawn(async move { s.propose(cmd).await.map(drop) });
            i += 1;
        }
        if let Some(done) = tasks.join_next().await {
            done.expect("task").expect("propose");
        }
    }
}

/// Fills a store with `FILL` commands, snapshots and purges it, prints its size, then
/// adds `TAIL` more for the reopen to replay. Returns the applied index to expect.
async fn fill(engine: Engine, dir: &Path) -> u64 {
    let store = RaftStore::open(config(engine, dir)).await.expect("open");
    store.initialize_single().await.expect("initialize");
    let started = Instant::now();
    propose_range(&store, 0, FILL).await;
    let took = started.elapsed();
    store.snapshot_now().await.expect("snapshot");
    let status = store
        .wait_log_status(Duration::from_secs(30), |s| s.purged > 0)
        .await
        .expect("purged");
    store.shutdown().await.expect("shutdown");
    drop(store);
    let bytes = dir_size(dir).expect("size");
    println!(
        "store_engines/size/{}: {bytes} bytes ({:.1} MiB) on disk after {FILL} entries + snapshot + purge \
         (snapshot at {}, purged to {}); fill rate {:.0} proposals/s",
        engine.name(),
        bytes as f64 / (1024.0 * 1024.0),
        status.snapshot,
        status.purged,
        FILL as f64 / took.as_secs_f64(),
    );
    let store = RaftStore::open(config(engine, dir)).await.expect("reopen");
    store.initialize_single().await.expect("initialize");
    propose_range(&store, FILL, FILL + TAIL).await;
    let applied = store.replica().applied_index();
    store.shutdown().await.expect("shutdown");
    applied
}

fn reopen(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("store_engines/reopen");
    group.sample_size(10);
    for engine in ENGINES {
        let dir = tempfile::tempdir().expect("tempdir");
        // Filled on first use, so a filtered run skips it.
        let mut filled = None;
        group.bench_function(engine.name(), |b| {
            let expect = *filled.get_or_insert_with(|| rt.block_on(fill(engine, dir.path())));
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let started = Instant::now();
                        let store = RaftStore::open(config(engine, dir.path()))
                            .await
                            .expect("open");
                        total += started.elapsed();
                        assert!(store.replica().applied_index() >= expect, "recovered");
                        store.shutdown().await.expect("shutdown");
                    }
                    total
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, appends, interleaved, snapshot_cycles, reopen);
criterion_main!(benches);
