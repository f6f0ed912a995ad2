//! Table tests of the filter-and-score scheduler over built states.

use super::*;
use crate::command::{Command, Plan};
use crate::spec::{Constraint, ConstraintOp, PortSpec, Protocol};
use crate::testing::fixtures::{job, node, tagged, StateBuilder};

fn slots(job: &str, version: u64, n: u32) -> Vec<SlotRef> {
    (0..n)
        .map(|slot| SlotRef {
            job: job.into(),
            version,
            slot,
            existing: None,
            replaces: None,
            pin: None,
        })
        .collect()
}

fn run(state: &ClusterState, requests: &[SlotRef]) -> Schedule {
    FilterScoreScheduler::default().schedule(state, requests, &[], 7)
}

#[test]
fn places_on_the_only_node_that_fits() {
    let s = StateBuilder::new()
        .node(node("small", 1.0, 512))
        .node(node("big", 8.0, 16_384))
        .job(job("web", 1, 0.5, 4096))
        .build();
    let out = run(&s, &slots("web", 1, 1));
    assert_eq!(out.placements.len(), 1);
    assert_eq!(out.placements[0].node, "big");
}

#[test]
fn single_node_explanation_gives_figures() {
    let s = StateBuilder::new()
        .node(node("n1", 4.0, 3900))
        .job(job("huge", 1, 0.1, 64_000))
        .build();
    let out = run(&s, &slots("huge", 1, 1));
    assert!(out.placements.is_empty());
    assert_eq!(
        out.unplaced[0].reason,
        "1 node: insufficient memory (need 64000 MB, free 3900)"
    );
}

/// Every filter that rejects a node counts: the small untagged nodes are both
/// too small and without the tag, so all eight lack the tag and five memory.
#[test]
fn explanation_counts_every_filter_per_node() {
    let mut b = StateBuilder::new();
    for i in 0..5 {
        b = b.node(node(&format!("small{i}"), 1.0, 256));
    }
    for i in 0..3 {
        b = b.node(tagged(
            node(&format!("cpu{i}"), 8.0, 8192),
            &[("gpu", "false")],
        ));
    }
    let spec = job("ml", 1, 0.5, 1024).selector("gpu", "true");
    let s = b.job(spec).build();
    let out = run(&s, &slots("ml", 1, 1));
    assert_eq!(
        out.unplaced[0].reason,
        "0/8 nodes: 8 selector gpu=true, 5 insufficient memory"
    );
    // One node, two reasons: both, with figures where they have them.
    let s = StateBuilder::new()
        .node(node("small", 1.0, 256))
        .job(job("ml", 1, 0.5, 1024).selector("gpu", "true"))
        .build();
    assert_eq!(
        run(&s, &slots("ml", 1, 1)).unplaced[0].reason,
        "1 node: insufficient memory (need 1024 MB, free 256), selector gpu=true"
    );
}

/// The issue's own example at scale: counts per filter, with thousands separated.
#[test]
fn explanation_at_five_thousand_nodes_counts_each_filter() {
    let mut b = StateBuilder::new();
    // The small nodes have the tag (they fail on memory alone), the cpu nodes
    // the memory (they fail on the tag alone): each counts under one filter.
    for i in 0..4_100 {
        b = b.node(tagged(
            node(&format!("small{i:04}"), 4.0, 1024),
            &[("gpu", "true")],
        ));
    }
    for i in 0..880 {
        b = b.node(tagged(
            node(&format!("cpu{i:03}"), 8.0, 32_768),
            &[("gpu", "false")],
        ));
    }
    for i in 0..20 {
        b = b.node(tagged(
            node(&format!("gpu{i:02}"), 8.0, 32_768),
            &[("gpu", "true"), ("kind", "gpu")],
        ));
    }
    // A load balancer holds host port 80 on every GPU node.
    let mut lb = job("lb", 20, 0.1, 64)
        .selector("gpu", "true")
        .selector("kind", "gpu");
    lb.task.ports.push(PortSpec {
        name: "http".into(),
        container_port: 80,
        host_port: Some(80),
        protocol: Protocol::Tcp,
        lb: None,
    });
    lb.distinct_hosts = true;
    let mut ml = job("ml", 1, 1.0, 4096).selector("gpu", "true");
    ml.task.ports = lb.task.ports.clone();
    b = b.job(lb).job(ml);
    let placed = run(b.state(), &slots("lb", 1, 20));
    assert_eq!(placed.placements.len(), 20);
    b.apply(Command::ApplyPlan {
        plan: Plan {
            placements: placed.placements,
            ..Default::default()
        },
    });
    let out = run(b.state(), &slots("ml", 1, 1));
    assert_eq!(
        out.unplaced[0].reason,
        "0/5,000 nodes: 4,100 insufficient memory, 880 selector gpu=true, 20 port 80 taken"
    );
}

/// The cluster's default strategy applies to jobs that choose none; a job's own
/// choice wins over it.
#[test]
fn the_cluster_default_strategy_applies_unless_the_job_chooses() {
    let s = |strategy: Option<Strategy>| {
        let mut spec = job("web", 1, 1.0, 1024);
        spec.strategy = strategy;
        StateBuilder::new()
            .node(node("a", 4.0, 4096))
            .node(node("b", 4.0, 4096))
            .job(spec)
            .build()
    };
    let spread_cluster = FilterScoreScheduler::new(SchedulerConfig {
        default_strategy: Strategy::Spread,
        ..SchedulerConfig::default()
    });
    let reqs = slots("web", 1, 2);
    let nodes =
        |out: Schedule| -> Vec<String> { out.placements.into_iter().map(|p| p.node).collect() };
    let n = nodes(spread_cluster.schedule(&s(None), &reqs, &[], 7));
    assert_ne!(n[0], n[1], "cluster default spread: {n:?}");
    let n = nodes(spread_cluster.schedule(&s(Some(Strategy::Binpack)), &reqs, &[], 7));
    assert_eq!(n[0], n[1], "the job's bin-pack wins: {n:?}");
    let n = nodes(run(&s(None), &reqs));
    assert_eq!(n[0], n[1], "Orion's default is bin-pack: {n:?}");
}

/// Between nodes equally full, job anti-affinity sends a replica to the node
/// without one; without that scorer the tie goes either way.
#[test]
fn anti_affinity_breaks_ties_away_from_a_jobs_own_replicas() {
    let mut b = StateBuilder::new()
        .node(node("a", 4.0, 4096))
        .node(node("b", 4.0, 4096))
        .job(job("web", 2, 1.0, 1024))
        .job(job("other", 1, 1.0, 1024));
    let at = |job: &str, node: &str| Placement {
        slot: slots(job, 1, 1).remove(0),
        node: node.into(),
        ports: Vec::new(),
    };
    b.apply(Command::ApplyPlan {
        plan: Plan {
            placements: vec![at("web", "a"), at("other", "b")],
            ..Default::default()
        },
    });
    let second = &slots("web", 1, 2)[1..];
    let without = FilterScoreScheduler::with_pipeline(
        SchedulerConfig::default(),
        filter::default_filters(),
        vec![(Box::new(score::FreeResources::default()), 1.0)],
    );
    let mut went_to_a = 0;
    for seed in 0..32 {
        let with = run_seeded(b.state(), second, seed);
        assert_eq!(with.placements[0].node, "b", "seed {seed}");
        let out = without.schedule(b.state(), second, &[], seed);
        went_to_a += usize::from(out.placements[0].node == "a");
    }
    assert!(went_to_a > 0, "without anti-affinity some ties go to a");
}

fn run_seeded(state: &ClusterState, requests: &[SlotRef], seed: u64) -> Schedule {
    FilterScoreScheduler::default().schedule(state, requests, &[], seed)
}

/// Work that does not ask for a tag leaves tagged nodes to the jobs that do, when a
/// plain node fits: the bounded walk opens plain nodes first and the scorer prefers
/// them, so exhaustive scoring decides alike.
#[test]
fn untagged_work_leaves_tagged_nodes_to_jobs_that_ask_for_them() {
    let s = StateBuilder::new()
        .node(tagged(node("a-gpu", 4.0, 8192), &[("gpu", "true")]))
        .node(node("b-plain", 4.0, 8192))
        .node(node("c-plain", 4.0, 8192))
        .job(job("web", 3, 2.0, 2048))
        .job(job("ml", 1, 4.0, 4096).selector("gpu", "true"))
        .build();
    let mut reqs = slots("web", 1, 3);
    reqs.extend(slots("ml", 1, 1));
    let bounded = SchedulerConfig {
        exhaustive_below: 0,
        ..SchedulerConfig::default()
    };
    for config in [bounded, SchedulerConfig::exhaustive()] {
        let out = FilterScoreScheduler::new(config).schedule(&s, &reqs, &[], 7);
        let on: Vec<_> = out.placements.iter().map(|p| p.node.as_str()).collect();
        assert_eq!(on.len(), 4, "{out:?}");
        assert!(on[..3].iter().all(|n| n.ends_with("plain")), "{on:?}");
        assert_eq!(on[3], "a-gpu");
    }
}

#[test]
fn a_plan_accounts_for_its_own_earlier_placements() {
    let s = StateBuilder::new()
        .node(node("n1", 2.0, 1024))
        .node(node("n2", 2.0, 1024))
        .job(job("web", 5, 1.0, 512))
        .build();
    let out = run(&s, &slots("web", 1, 5));
    assert_eq!(out.placements.len(), 4);
    assert_eq!(out.unplaced.len(), 1);
    assert!(
        out.unplaced[0]
            .reason
            .starts_with("0/2 nodes: 2 insufficient"),
        "{}",
        out.unplaced[0].reason
    );
}

#[test]
fn binpack_fills_one_node_spread_uses_both() {
    let base = || {
        StateBuilder::new()
            .node(node("a", 4.0, 4096))
            .node(node("b", 4.0, 4096))
    };
    let mut spec = job("web", 2, 1.0, 1024);
    spec.replicas = 1; // no anti-affinity pull
    let s = base().job(spec.clone()).build();
    let out = run(&s, &slots("web", 1, 2));
    assert_eq!(out.placements[0].node, out.placements[1].node, "bin-pack");
    spec.strategy = Some(Strategy::Spread);
    let s = base().job(spec).build();
    let out = run(&s, &slots("web", 1, 2));
    assert_ne!(out.placements[0].node, out.placements[1].node, "spread");
}

#[test]
fn distinct_hosts_keeps_replicas_apart() {
    let mut spec = job("db", 3, 0.1, 64);
    spec.distinct_hosts = true;
    let s = StateBuilder::new()
        .node(node("a", 4.0, 4096))
        .node(node("b", 4.0, 4096))
        .job(spec)
        .build();
    let out = run(&s, &slots("db", 1, 3));
    assert_eq!(out.placements.len(), 2);
    assert_ne!(out.placements[0].node, out.placements[1].node);
    assert!(
        out.unplaced[0].reason.contains("2 job already on node"),
        "{}",
        out.unplaced[0].reason
    );
}

#[test]
fn static_port_conflicts_are_filtered_and_dynamic_ports_are_distinct() {
    let mut spec = job("lb", 2, 0.1, 64);
    spec.task.ports = vec![PortSpec {
        name: "http".into(),
        container_port: 80,
        host_port: Some(8080),
        protocol: Protocol::Tcp,
        lb: None,
    }];
    let s = StateBuilder::new()
        .node(node("a", 4.0, 4096))
        .job(spec)
        .job(job("web", 3, 0.1, 64).port("http", 80).port("admin", 81))
        .build();
    let out = run(&s, &slots("lb", 1, 2));
    assert_eq!(out.placements.len(), 1);
    assert_eq!(out.unplaced[0].reason, "1 node: port 8080 taken");

    let out = run(&s, &slots("web", 1, 3));
    let mut ports: Vec<u16> = out
        .placements
        .iter()
        .flat_map(|p| p.ports.iter().map(|b| b.host_port))
        .collect();
    assert_eq!(ports.len(), 6);
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 6, "host ports are never given twice");
    assert!(ports.iter().all(|p| (32000..=32767).contains(p)));
}

#[test]
fn committed_ports_are_not_reused() {
    let mut b = StateBuilder::new()
        .node(node("a", 4.0, 4096))
        .job(job("web", 1, 0.1, 64).port("http", 80));
    let first = run(b.state(), &slots("web", 1, 1));
    b.apply(Command::ApplyPlan {
        plan: Plan {
            placements: first.placements.clone(),
            ..Plan::default()
        },
    });
    let mut b = b.job(job("api", 1, 0.1, 64).port("http", 80));
    let second = run(b.state_mut(), &slots("api", 1, 1));
    assert_ne!(
        first.placements[0].ports[0].host_port,
        second.placements[0].ports[0].host_port
    );
}

#[test]
fn constraint_operators_select_nodes() {
    let mut spec = job("j", 1, 0.1, 64);
    spec.constraints = vec![
        Constraint {
            key: "zone".into(),
            op: ConstraintOp::In,
            values: vec!["a".into(), "b".into()],
        },
        Constraint {
            key: "spot".into(),
            op: ConstraintOp::NotExists,
            values: vec![],
        },
    ];
    let s = StateBuilder::new()
        .node(tagged(node("n1", 4.0, 4096), &[("zone", "c")]))
        .node(tagged(
            node("n2", 4.0, 4096),
            &[("zone", "a"), ("spot", "1")],
        ))
        .node(tagged(node("n3", 4.0, 4096), &[("zone", "b")]))
        .job(spec)
        .build();
    let out = run(&s, &slots("j", 1, 1));
    assert_eq!(out.placements[0].node, "n3");

    // Exists and not-equals.
    let mut spec = job("k", 3, 0.1, 64);
    spec.constraints = vec![
        Constraint {
            key: "disk".into(),
            op: ConstraintOp::Exists,
            values: vec![],
        },
        Constraint {
            key: "zone".into(),
            op: ConstraintOp::Ne,
            values: vec!["a".into()],
        },
    ];
    let s = StateBuilder::new()
        .node(tagged(
            node("m1", 4.0, 4096),
            &[("disk", "ssd"), ("zone", "a")],
        ))
        .node(tagged(
            node("m2", 4.0, 4096),
            &[("disk", "hdd"), ("zone", "b")],
        ))
        .node(tagged(node("m3", 4.0, 4096), &[("zone", "b")]))
        .node(tagged(node("m4", 4.0, 4096), &[("disk", "ssd")]))
        .job(spec)
        .build();
    let out = run(&s, &slots("k", 1, 3));
    assert_eq!(out.placements.len(), 3);
    assert!(
        out.placements
            .iter()
            .all(|p| p.node == "m2" || p.node == "m4"),
        "{out:?}"
    );
}

#[test]
fn unready_and_draining_nodes_get_nothing() {
    let mut b = StateBuilder::new()
        .node(node("down", 4.0, 4096))
        .node(node("drain", 4.0, 4096))
        .job(job("web", 1, 0.1, 64));
    b.apply(Command::SetNodeStatus {
        id: "down".into(),
        status: crate::model::NodeStatus::Down,
        reason: None,
    });
    b.apply(Command::SetDrain {
        id: "drain".into(),
        draining: true,
    });
    let out = run(b.state(), &slots("web", 1, 1));
    assert_eq!(
        out.unplaced[0].reason,
        "0/2 nodes: 1 node down, 1 node draining"
    );
}

#[test]
fn same_seed_same_schedule_and_no_panic_on_degenerate_input() {
    let mut b = StateBuilder::new();
    for i in 0..50 {
        b = b.node(node(&format!("n{i:02}"), 4.0, 4096));
    }
    b = b.node(node("zero", 0.0, 0)).job(job("web", 300, 0.3, 200));
    let s = b.build();
    let reqs = slots("web", 1, 300);
    assert_eq!(run(&s, &reqs), run(&s, &reqs));
    let empty = StateBuilder::new().job(job("web", 1, 0.1, 64)).build();
    assert_eq!(
        run(&empty, &slots("web", 1, 1)).unplaced[0].reason,
        "no nodes in the cluster"
    );
    let big = StateBuilder::new()
        .node(node("n", 1.0, 64))
        .job(job("web", 10_000, 0.1, 64))
        .build();
    let out = run(&big, &slots("web", 1, 10_000));
    assert_eq!(out.placements.len() + out.unplaced.len(), 10_000);
}

#[test]
fn stopping_allocations_free_their_resources_for_the_plan() {
    let mut b = StateBuilder::new()
        .node(node("a", 1.0, 1024))
        .job(job("web", 1, 1.0, 1024).port("http", 80));
    let first = run(b.state(), &slots("web", 1, 1));
    b.apply(Command::ApplyPlan {
        plan: Plan {
            placements: first.placements,
            ..Plan::default()
        },
    });
    let mut b = b.job(job("web", 1, 1.0, 1024).port("http", 80).env("V", "2"));
    let old: Vec<AllocId> = b.state().allocs.keys().cloned().collect();
    let s = b.state_mut();
    assert!(run(s, &slots("web", 2, 1)).placements.is_empty());
    let out = FilterScoreScheduler::default().schedule(s, &slots("web", 2, 1), &old, 7);
    assert_eq!(out.placements.len(), 1);
}

#[test]
fn explain_placement_gives_the_rejection_or_each_scorers_part() {
    let s = StateBuilder::new()
        .node(node("small", 1.0, 512))
        .node(node("big", 8.0, 16_384))
        .job(job("web", 2, 0.5, 1024))
        .build();
    let sched = FilterScoreScheduler::default();
    let v = sched.explain_placement(&s, "web", "small").expect("known");
    assert_eq!(
        v.to_string(),
        "small: insufficient memory (need 1024 MB, free 512)"
    );
    let v = sched.explain_placement(&s, "web", "big").expect("known");
    assert_eq!(v.rejection, None);
    let names: Vec<_> = v.scores.iter().map(|(n, _, _)| *n).collect();
    assert_eq!(
        names,
        [
            "avoid-failed",
            "free-resources",
            "job-anti-affinity",
            "reserve-tagged"
        ]
    );
    assert!(v.to_string().starts_with("big: score 0."), "{v}");
    assert!(sched.explain_placement(&s, "web", "nope").is_none());
    assert!(sched.explain_placement(&s, "nope", "big").is_none());
}

/// Places the first `jobs` jobs of the workload mix (20 replicas each) on 400
/// mixed nodes, bounded (never exhaustive for being small) and exhaustive.
fn bounded_and_exhaustive(jobs: usize) -> [crate::testing::sim::packing::Packing; 2] {
    use crate::testing::sim::packing::{place_in_passes, Packing};
    use crate::testing::sim::workload::{mixed_jobs, mixed_nodes};
    let run = |config: SchedulerConfig| {
        let mut b = StateBuilder::new();
        for n in mixed_nodes(400) {
            b = b.node(n);
        }
        let mut reqs = Vec::new();
        for spec in mixed_jobs(0, jobs, 20, 400) {
            reqs.extend(crate::testing::sim::workload::slots(&spec, 1));
            b = b.job(spec);
        }
        let sched = FilterScoreScheduler::new(config);
        place_in_passes(&mut b, &sched, &reqs, 1_000, 1);
        Packing::of(b.state())
    };
    let bounded = run(SchedulerConfig {
        exhaustive_below: 0,
        ..SchedulerConfig::default()
    });
    let exhaustive = run(SchedulerConfig::exhaustive());
    println!("{jobs} jobs\nbounded:    {bounded}\nexhaustive: {exhaustive}");
    [bounded, exhaustive]
}

/// On the same input, the bounded scheduler packs about as well as exhaustive
/// scoring: it places no fewer tasks and uses at most 2% more nodes per core
/// placed, and 2% more of their capacity. Checked where the whole mix fits (50
/// jobs, about 15% of the CPU: nodes used compare like for like) and where some
/// selector jobs cannot all fit (200 jobs, about 58%). (The `scheduler` bench
/// prints the full comparison at 1,000 and 10,000 nodes.)
#[test]
fn bounded_packing_is_within_two_percent_of_exhaustive() {
    let [bounded, exhaustive] = bounded_and_exhaustive(50);
    assert_eq!(bounded.allocs, 1_000, "everything fits");
    assert_eq!(exhaustive.allocs, 1_000, "everything fits");
    assert!(bounded.nodes_used as f64 <= exhaustive.nodes_used as f64 * 1.02);
    assert!(bounded.capacity_used <= exhaustive.capacity_used * 1.02);

    let [bounded, exhaustive] = bounded_and_exhaustive(200);
    assert!(bounded.allocs >= exhaustive.allocs);
    assert!(bounded.nodes_per_100_cores() <= exhaustive.nodes_per_100_cores() * 1.02);
    assert!(
        bounded.capacity_used / bounded.cpu_placed
            <= exhaustive.capacity_used / exhaustive.cpu_placed * 1.02
    );
    assert!(bounded.cpu_util_used >= exhaustive.cpu_util_used - 2.0);
}

/// Jobs made from one template that fit nowhere are explained once and alike;
/// a job that differs in what decides feasibility is explained on its own.
#[test]
fn a_crowd_of_alike_unplaceable_jobs_is_explained_alike() {
    let mut b = StateBuilder::new().node(node("n1", 4.0, 4096));
    let mut reqs = Vec::new();
    for i in 0..50 {
        let spec = job(&format!("ml{i:02}"), 1, 1.0, 512).selector("gpu", "true");
        reqs.extend(slots(&spec.name, 1, 1));
        b = b.job(spec);
    }
    b = b.job(job("huge", 1, 1.0, 1 << 20));
    reqs.extend(slots("huge", 1, 1));
    let out = run(b.state(), &reqs);
    assert_eq!(out.unplaced.len(), 51);
    assert!(out.unplaced[..50]
        .iter()
        .all(|u| u.reason == "1 node: selector gpu=true"));
    assert_eq!(
        out.unplaced[50].reason,
        "1 node: insufficient memory (need 1048576 MB, free 4096)"
    );
}

/// A job mounting a named volume goes only to the volume's node; a missing
/// volume or a host path no node allows leaves it pending, saying so.
#[test]
fn volumes_pin_jobs_to_their_node_and_host_paths_need_leave() {
    let mut big = node("big", 16.0, 65_536);
    big.host_volumes = vec!["/srv".into()];
    let mut b = StateBuilder::new()
        .node(big)
        .node(node("small", 2.0, 2048))
        .node(node("other", 2.0, 2048));
    b.apply(Command::CreateVolume {
        name: "data".into(),
        node: "small".into(),
    });
    let s = b
        .job(job("db", 2, 0.5, 256).volume("data", "/data"))
        .build();
    let out = run(&s, &slots("db", 1, 2));
    assert_eq!(out.placements.len(), 2, "{:?}", out.unplaced);
    assert!(
        out.placements.iter().all(|p| p.node == "small"),
        "binpack would choose big"
    );

    let s = StateBuilder::new()
        .node(node("n1", 2.0, 2048))
        .node(node("n2", 2.0, 2048))
        .job(job("db", 1, 0.5, 256).volume("nope", "/data"))
        .build();
    let out = run(&s, &slots("db", 1, 1));
    assert_eq!(
        out.unplaced[0].reason,
        "0/2 nodes: 2 volume nope does not exist"
    );

    let mut bind = job("logs", 1, 0.5, 256);
    for (path, target) in [("/srv/logs", "/logs"), ("/etc", "/host-etc")] {
        bind.task.volumes.push(crate::spec::VolumeMount {
            name: None,
            host_path: Some(path.into()),
            target: target.into(),
            read_only: true,
        });
    }
    let mut big = node("big", 16.0, 65_536);
    big.host_volumes = vec!["/srv".into(), "/etc/orion".into()];
    let s = StateBuilder::new().node(big).job(bind).build();
    let out = run(&s, &slots("logs", 1, 1));
    assert_eq!(out.unplaced[0].reason, "1 node: host path /etc not allowed");
}
