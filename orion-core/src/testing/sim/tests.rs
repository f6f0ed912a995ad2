//! Failure behaviour of the simulated cluster: what the real reconciler,
//! scheduler and state machine do when nodes fail, come back and drain.

use super::workload::{mixed_jobs, mixed_nodes, node_id};
use super::*;
use crate::model::AllocState;
use crate::testing::fixtures::job;

/// 200 heterogeneous nodes running 100 jobs of the mix, 10 replicas each.
fn settled() -> Sim {
    let mut sim = Sim::new(SimConfig {
        max_placements_per_pass: 300,
        ..SimConfig::default()
    });
    sim.add_nodes(mixed_nodes(200));
    sim.submit(mixed_jobs(0, 100, 10, 200));
    sim.settle(100).expect("settles");
    assert!(sim.read(audit).is_empty());
    sim
}

fn busiest(sim: &Sim) -> String {
    sim.read(|s| {
        s.nodes
            .keys()
            .max_by_key(|n| s.allocs_on_node(n).filter(|a| a.is_live()).count())
            .cloned()
            .expect("nodes")
    })
}

fn on_node(sim: &Sim, node: &str) -> usize {
    sim.read(|s| s.allocs_on_node(node).filter(|a| a.is_live()).count())
}

/// Slots of running jobs with a live copy, and those with more than one.
fn live_slots(sim: &Sim) -> (usize, usize) {
    sim.read(|s| {
        let mut seen = std::collections::BTreeMap::new();
        for a in s.allocs.values().filter(|a| a.is_live()) {
            *seen.entry((a.job.clone(), a.slot)).or_insert(0) += 1;
        }
        (seen.len(), seen.values().filter(|n| **n > 1).count())
    })
}

/// A settled cluster runs every placeable slot exactly once, and a further pass
/// plans nothing (the reconciler skips settled jobs without reading them).
#[test]
fn a_settled_cluster_runs_each_slot_once_and_plans_nothing() {
    let mut sim = settled();
    let running = sim.count(AllocState::Running);
    let pending = sim.count(AllocState::Pending);
    assert!(running > 900, "{running} running");
    assert_eq!(live_slots(&sim), (running + pending, 0));
    assert_eq!(sim.step(), 0);
    let intent = sim.read(|s| crate::reconcile::intent(s, 10_000));
    assert!(intent.stops.is_empty());
    assert_eq!(
        intent.requests.len(),
        pending,
        "only the pending are asked again"
    );
}

/// A node that fails loses its tasks; they are placed and run elsewhere, and
/// nothing is placed on the dead node.
#[test]
fn a_failed_node_loses_its_tasks_and_they_run_elsewhere() {
    let mut sim = settled();
    let running = sim.count(AllocState::Running);
    let victim = busiest(&sim);
    let lost = on_node(&sim, &victim);
    assert!(lost > 0);
    sim.fail_node(&victim);
    assert_eq!(sim.count(AllocState::Lost), lost);
    assert_eq!(on_node(&sim, &victim), 0);
    sim.settle(100).expect("settles after the failure");
    assert_eq!(on_node(&sim, &victim), 0, "nothing placed on a down node");
    assert_eq!(
        sim.count(AllocState::Running),
        running,
        "replaced elsewhere"
    );
    assert_eq!(live_slots(&sim).1, 0, "no slot runs twice");
    assert!(sim.read(audit).is_empty());
}

/// A tenth of the cluster failing at once is absorbed when the rest has room,
/// and a recovered node takes new work again.
#[test]
fn many_failures_at_once_then_recovery() {
    let mut sim = settled();
    let running = sim.count(AllocState::Running);
    // Untagged nodes (tags are on every fifth), so the selector jobs keep theirs.
    for i in (3..200).step_by(10) {
        sim.fail_node(&node_id(i));
    }
    sim.settle(100).expect("settles");
    assert_eq!(sim.count(AllocState::Running), running);
    assert!(sim.read(audit).is_empty());
    sim.recover_node(&node_id(3));
    sim.submit([job("late", 30, 0.1, 64)]);
    sim.settle(100).expect("settles");
    assert_eq!(sim.count(AllocState::Running), running + 30);
}

/// Draining a node moves its tasks away and keeps new ones off it.
#[test]
fn draining_moves_tasks_off_a_node() {
    let mut sim = settled();
    let running = sim.count(AllocState::Running);
    let n = busiest(&sim);
    assert!(on_node(&sim, &n) > 0);
    sim.drain(&n, true);
    sim.settle(100).expect("settles");
    assert_eq!(on_node(&sim, &n), 0);
    assert_eq!(sim.count(AllocState::Running), running);
}

/// Tasks that fit nowhere stay pending with a reason, and run once a node that
/// fits them joins.
#[test]
fn unplaceable_tasks_wait_with_a_reason_until_capacity_joins() {
    let mut sim = Sim::new(SimConfig::default());
    sim.add_nodes(mixed_nodes(20));
    sim.submit([job("huge", 3, 1.0, 1 << 20)]);
    sim.settle(10).expect("settles");
    let reason = sim.read(|s| {
        s.allocs_of_job("huge")
            .find_map(|a| a.message.clone())
            .expect("a reason")
    });
    assert_eq!(reason, "0/20 nodes: 20 insufficient memory");
    let mut big = mixed_nodes(21).pop().expect("a node");
    big.capacity.memory_mb = 4 << 20;
    sim.add_nodes([big]);
    sim.settle(10).expect("settles");
    assert_eq!(sim.count(AllocState::Running), 3);
}

/// The same inputs give the same cluster, allocation for allocation: the state
/// machine, the reconciler and the scheduler are deterministic.
#[test]
fn a_run_is_deterministic() {
    let run = || {
        let mut sim = settled();
        sim.fail_node(&node_id(13));
        sim.settle(100).expect("settles");
        sim.read(|s| s.allocs.clone())
    };
    assert_eq!(run(), run());
}
