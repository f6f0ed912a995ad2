//! The scheduler at 100, 1,000 and 10,000 heterogeneous nodes.
//!
//! - `scheduler/place/<nodes>`: one `schedule` call placing a batch of requests (a
//!   control-loop pass: 5,000, or twice the node count on small clusters) on a
//!   cluster already about half full; throughput in placements/s. Nodes come in
//!   four sizes, 20% tagged; the jobs mix dynamic ports, a fixed host port with
//!   distinct hosts, selectors and memory- and CPU-heavy tasks
//!   (`orion_core::testing::sim::workload`).
//! - `scheduler/metrics/{off,on}/<nodes>`: the same call, without and with what
//!   the control loop records around it when metrics are on (the pass's
//!   duration in a histogram, each unplaced slot counted by reason, the
//!   placements counted: `Metrics::record_plan`); off and on alternate per size
//!   so machine noise falls on both alike. The ratio is the cost of metrics on
//!   the scheduling path.
//! - Printed first, not timed: packing quality of the default (bounded) scheduler
//!   against exhaustive scoring on the same input, placed in passes of 5,000 and
//!   committed through the state machine, in three cases:
//!   - the whole mix asking 15% of the CPU: everything fits for both, so nodes
//!     used compare like for like. (GPU jobs ask a sixth of the mix's CPU and GPU
//!     nodes hold about 3.5% of the cluster's CPU in shapes they fit, so the
//!     whole mix cannot fit much above 20%.)
//!   - the whole mix asking 70%: some selector jobs cannot all fit, so placed
//!     counts may differ; nodes used per 100 cores placed compares the packings
//!     whatever each placed.
//!   - the mix without selector jobs asking 50%: everything fits.
//!
//!   Set `QUALITY_NODES=1000` (comma-separated) to choose the sizes, `0` to skip;
//!   `QUALITY_EXHAUSTIVE=0` to run the default configuration only.
//! - `SCHED_PROFILE=<nodes>`: no criterion; 40 calls on the half-full cluster, with
//!   placements per wall-second and per CPU-second (for `perf record` on a busy
//!   machine).
//!
//! Run: `cargo bench -p orion-benches --bench scheduler -- --warm-up-time 1 --measurement-time 3`

use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput};
use orion_core::command::SlotRef;
use orion_core::scheduler::{FilterScoreScheduler, Scheduler, SchedulerConfig};
use orion_core::state::ClusterState;
use orion_core::testing::fixtures::StateBuilder;
use orion_core::testing::sim::packing::{place_in_passes, Packing};
use orion_core::testing::sim::workload::{mixed_jobs, mixed_nodes, slots};

const PASS: usize = 5_000;

/// Nodes registered, jobs submitted; returns the builder and the requests of
/// jobs `first..` until their CPU reaches `cpu_share` of the cluster's.
fn cluster(
    nodes: usize,
    first_job: usize,
    cpu_share: f64,
    selectors: bool,
) -> (StateBuilder, Vec<SlotRef>) {
    let mut b = StateBuilder::new();
    let infos = mixed_nodes(nodes);
    let capacity: f64 = infos.iter().map(|n| n.capacity.cpu).sum();
    for n in infos {
        b = b.node(n);
    }
    let (b, reqs) = add_jobs(
        b,
        nodes,
        first_job,
        capacity * cpu_share,
        usize::MAX,
        selectors,
    );
    (b, reqs)
}

/// Submits jobs of the mix from `first` until they ask for `cpu` cores or
/// `max_requests` placements; without `selectors`, jobs with node selectors are
/// left out (so every request can fit, and nodes used compare like for like).
fn add_jobs(
    mut b: StateBuilder,
    nodes: usize,
    first: usize,
    cpu: f64,
    max_requests: usize,
    selectors: bool,
) -> (StateBuilder, Vec<SlotRef>) {
    let mut reqs = Vec::new();
    let mut asked = 0.0;
    let mut i = first;
    while asked < cpu && reqs.len() < max_requests {
        let left = (max_requests - reqs.len()).min(50) as u32;
        let spec = mixed_jobs(i, 1, left, nodes).remove(0);
        i += 1;
        if !selectors && !spec.node_selectors.is_empty() {
            continue;
        }
        asked += spec.task.resources.cpu * spec.replicas as f64;
        reqs.extend(slots(&spec, 1));
        b = b.job(spec);
    }
    (b, reqs)
}

fn quality() {
    let sizes = std::env::var("QUALITY_NODES").unwrap_or_else(|_| "1000,10000".into());
    for nodes in sizes
        .split(',')
        .filter_map(|s| s.trim().parse::<usize>().ok())
    {
        let cases = [
            ("mix at 15% (all fits)", true, 0.15),
            ("mix at 70%", true, 0.7),
            ("no selectors at 50%", false, 0.5),
        ];
        for (workload, selectors, share) in cases {
            if nodes > 0 {
                compare(nodes, workload, selectors, share);
            }
        }
    }
}

/// Places the same workload with the default and the exhaustive configuration and
/// prints both packings and their differences.
fn compare(nodes: usize, workload: &str, selectors: bool, cpu_share: f64) {
    let mut rows = Vec::new();
    let configs = [
        ("default", SchedulerConfig::default()),
        ("exhaustive", SchedulerConfig::exhaustive()),
    ];
    let skip_exhaustive = std::env::var("QUALITY_EXHAUSTIVE").is_ok_and(|v| v == "0");
    for (name, config) in configs
        .into_iter()
        .take(if skip_exhaustive { 1 } else { 2 })
    {
        let (mut b, reqs) = cluster(nodes, 0, cpu_share, selectors);
        let sched = FilterScoreScheduler::new(config);
        let t = Instant::now();
        let (placed, unplaced, refused) = place_in_passes(&mut b, &sched, &reqs, PASS, 1);
        let secs = t.elapsed().as_secs_f64();
        let p = Packing::of(b.state());
        println!(
            "quality/{nodes} nodes/{workload}/{name:<10} placed {placed} unplaced {unplaced} refused {refused} in {secs:.2} s: {p}"
        );
        rows.push(p);
    }
    let [d, e] = rows[..] else {
        return;
    };
    let pct = |a: f64, b: f64| if b != 0.0 { 100.0 * (a - b) / b } else { 0.0 };
    let basis = if d.allocs == e.allocs {
        "same placed: like for like"
    } else {
        "placed differ: compare nodes per core placed"
    };
    println!(
        "quality/{nodes} nodes/{workload}/default vs exhaustive ({basis}): placed {:+.2}% ({:+.2}% of cores), nodes used {:+.2}%, nodes per core placed {:+.2}%, their capacity {:+.2}%, cpu use of those {:+.2} pts, mem {:+.2} pts, large-task room {:+.2}%, stranded cpu {:+.2} pts, mem {:+.2} pts",
        pct(d.allocs as f64, e.allocs as f64),
        pct(d.cpu_placed, e.cpu_placed),
        pct(d.nodes_used as f64, e.nodes_used as f64),
        pct(d.nodes_per_100_cores(), e.nodes_per_100_cores()),
        pct(d.capacity_used, e.capacity_used),
        d.cpu_util_used - e.cpu_util_used,
        d.mem_util_used - e.mem_util_used,
        pct(d.large_headroom as f64, e.large_headroom as f64),
        d.stranded_cpu - e.stranded_cpu,
        d.stranded_mem - e.stranded_mem,
    );
}

/// A cluster about half full and a batch of fresh requests.
fn half_full(nodes: usize) -> (ClusterState, Vec<SlotRef>) {
    let (mut b, fill) = cluster(nodes, 0, 0.5, true);
    let sched = FilterScoreScheduler::default();
    place_in_passes(&mut b, &sched, &fill, PASS, 1);
    let batch = PASS.min(nodes * 2);
    let (b, reqs) = add_jobs(b, nodes, 1_000_000, f64::MAX, batch, true);
    (b.build(), reqs)
}

fn place(c: &mut Criterion) {
    let mut group = c.benchmark_group("scheduler/place");
    let sched = FilterScoreScheduler::default();
    for nodes in [100, 1_000, 10_000] {
        let (state, reqs) = half_full(nodes);
        let probe = sched.schedule(&state, &reqs, &[], 7);
        println!(
            "scheduler/place/{nodes}: batch of {} requests: {} placed, {} unplaced",
            reqs.len(),
            probe.placements.len(),
            probe.unplaced.len()
        );
        group.throughput(Throughput::Elements(reqs.len() as u64));
        group.bench_function(BenchmarkId::from_parameter(nodes), |b| {
            b.iter(|| sched.schedule(&state, &reqs, &[], 7))
        });
    }
    group.finish();
}

fn metrics_cost(c: &mut Criterion) {
    let mut group = c.benchmark_group("scheduler/metrics");
    let sched = FilterScoreScheduler::default();
    let metrics = orion_core::metrics::Metrics::new();
    for nodes in [1_000, 10_000] {
        let (state, reqs) = half_full(nodes);
        group.throughput(Throughput::Elements(reqs.len() as u64));
        group.bench_function(BenchmarkId::new("off", nodes), |b| {
            b.iter(|| sched.schedule(&state, &reqs, &[], 7))
        });
        group.bench_function(BenchmarkId::new("on", nodes), |b| {
            b.iter(|| {
                let t = Instant::now();
                let s = sched.schedule(&state, &reqs, &[], 7);
                metrics.record_plan(t.elapsed(), &s.unplaced);
                metrics.placements.inc_by(s.placements.len() as u64);
                s
            })
        });
    }
    group.finish();
}

fn main() {
    if let Ok(nodes) = std::env::var("SCHED_PROFILE") {
        let nodes: usize = nodes.parse().expect("node count");
        let (state, reqs) = half_full(nodes);
        let sched = FilterScoreScheduler::default();
        let cpu = || -> f64 {
            let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
            s.split_whitespace()
                .next()
                .and_then(|x| x.parse().ok())
                .unwrap_or(0.0)
                / 1e9
        };
        let best = (0..20)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(orion_core::scheduler::PlanView::new(&state, &[]));
                t.elapsed().as_secs_f64()
            })
            .fold(f64::MAX, f64::min);
        println!("profile: PlanView::new {:.2} ms at best", best * 1e3);
        let (t, c) = (Instant::now(), cpu());
        let iters: u64 = std::env::var("SCHED_ITERS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(40);
        for i in 0..iters {
            std::hint::black_box(sched.schedule(&state, &reqs, &[], i));
        }
        let n = iters as f64 * reqs.len() as f64;
        println!(
            "profile: {:.0} placements/s wall, {:.0} per cpu-second",
            n / t.elapsed().as_secs_f64(),
            n / (cpu() - c)
        );
        return;
    }
    quality();
    let mut c = Criterion::default().configure_from_args();
    place(&mut c);
    metrics_cost(&mut c);
    c.final_summary();
}
