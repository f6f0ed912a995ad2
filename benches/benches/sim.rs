//! The simulated cluster at scale: wall time to place and run 100,000 and then
//! 1,000,000 tasks on 5,000 virtual nodes, through the real reconciler, scheduler
//! and state machine (`orion_core::testing::sim::Sim`), with reports from the
//! virtual agents; then 1% of the nodes fail and their tasks are replaced.
//!
//! Not criterion: one run of each takes seconds to a minute, so this prints wall
//! times (and where they went) instead of sampling.
//!
//! Run: `cargo bench -p orion-benches --bench sim` (`SIM_TASKS=100000` for one size,
//! `SIM_PASS=20000` for another pass size than the control loop's 5,000).

use std::time::Instant;

use orion_core::model::AllocState;
use orion_core::spec::JobSpec;
use orion_core::testing::sim::workload::node_id;
use orion_core::testing::sim::{audit, Sim, SimConfig};
use orion_core::{NodeAddrs, NodeInfo, NodeRole, Resources};

const NODES: usize = 5_000;
const REPLICAS: u32 = 1_000;

/// A 64-core, 256 GiB node: room for 200 of the tasks below and more.
fn node(i: usize) -> NodeInfo {
    NodeInfo {
        id: node_id(i),
        addrs: NodeAddrs {
            http: format!("10.1.{}.{}:8080", i / 250, i % 250),
            raft: None,
            gossip: None,
        },
        role: NodeRole::Worker,
        capacity: Resources {
            cpu: 64.0,
            memory_mb: 256 * 1024,
            disk_mb: 1 << 20,
        },
        tags: Default::default(),
        host_ip: format!("10.1.{}.{}", i / 250, i % 250),
        port_range: (20000, 32767),
        host_volumes: Vec::new(),
        data_key_id: None,
        runtime: None,
        runtime_warning: None,
    }
}

/// Job `i`: 1,000 replicas of a small web task with one dynamic port, or every
/// fourth job a worker without ports.
fn job(i: usize) -> JobSpec {
    let spec = JobSpec::service(format!("job-{i:05}"), "registry.local/app:1")
        .replicas(REPLICAS)
        .resources(0.25, 256);
    if i % 4 == 3 {
        spec
    } else {
        spec.port("http", 8080)
    }
}

fn run(tasks: usize) {
    let mut config = SimConfig::default();
    if let Some(pass) = std::env::var("SIM_PASS").ok().and_then(|p| p.parse().ok()) {
        config.max_placements_per_pass = pass;
        config.reports_per_entry = pass;
    }
    let mut sim = Sim::new(config);
    sim.add_nodes((0..NODES).map(node));
    let t = Instant::now();
    sim.submit((0..tasks / REPLICAS as usize).map(job));
    let passes = sim.settle(10_000).expect("settles");
    let wall = t.elapsed().as_secs_f64();
    let running = sim.count(AllocState::Running);
    let s = &sim.stats;
    println!(
        "sim/{tasks} tasks on {NODES} nodes: {running} running in {wall:.2} s ({:.0} placements/s), {passes} passes; plan {:.2} s, apply {:.2} s, reports {:.2} s",
        running as f64 / wall,
        s.plan_time.as_secs_f64(),
        s.apply_time.as_secs_f64(),
        s.report_time.as_secs_f64(),
    );
    assert_eq!(running, tasks, "every task runs");
    assert!(sim.read(audit).is_empty(), "no over-commit");

    let t = Instant::now();
    let failed = NODES / 100;
    for i in 0..failed {
        sim.fail_node(&node_id(i * 100));
    }
    let lost = sim.count(AllocState::Lost);
    sim.settle(10_000).expect("settles after failures");
    let running = sim.count(AllocState::Running);
    println!(
        "sim/{tasks} tasks on {NODES} nodes: {failed} nodes down, {lost} allocations lost, replaced and running again ({running}) in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(running, tasks, "every task runs again");
}

fn main() {
    // `cargo bench` passes `--bench`; this binary takes no other arguments.
    let sizes = std::env::var("SIM_TASKS").unwrap_or_else(|_| "100000,1000000".into());
    for tasks in sizes.split(',').filter_map(|s| s.trim().parse().ok()) {
        run(tasks);
    }
}
