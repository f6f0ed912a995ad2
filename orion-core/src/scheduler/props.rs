//! Property tests of the scheduler over random clusters and jobs: what no
//! schedule may do, whatever the input.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::{
    any, prop, prop_assert, prop_assert_eq, proptest, ProptestConfig, TestCaseError,
};

use super::*;
use crate::command::{Command, Plan, Response};
use crate::model::{NodeStatus, PortBinding};
use crate::spec::{Constraint, ConstraintOp, JobSpec, PortSpec, Protocol, Resources};
use crate::testing::fixtures::{job, node, StateBuilder};
use crate::testing::sim::audit;
use crate::testing::sim::workload::slots;

/// A node: quarter cores, MiB, tags (bits: ssd, gpu, zone a, zone b), status
/// (0-5 ready, 6 down, 7 draining, 8 unhealthy) and dynamic-range size.
type NodeGen = (u32, u64, u8, u8, u16);

/// A job: replicas, quarter cores, MiB, selector kind, dynamic ports, a fixed port,
/// distinct hosts, spread.
type JobGen = (u32, u32, u64, u8, u8, Option<u16>, bool, bool);

fn node_gen() -> impl proptest::strategy::Strategy<Value = NodeGen> {
    (0u32..=32, 0u64..=8192, any::<u8>(), 0u8..9, 0u16..=6)
}

fn job_gen() -> impl proptest::strategy::Strategy<Value = JobGen> {
    (
        0u32..=25,
        1u32..=12,
        1u64..=3000,
        0u8..6,
        0u8..=2,
        prop::option::weighted(0.3, prop::sample::select(vec![80u16, 30_001])),
        any::<bool>(),
        any::<bool>(),
    )
}

fn make_job(i: usize, g: &JobGen) -> JobSpec {
    let &(replicas, cpu_q, mem, sel, dynamic, fixed, distinct, spread) = g;
    let mut spec = job(&format!("j{i}"), replicas, cpu_q as f64 / 4.0, mem);
    let c = |key: &str, op, values: &[&str]| Constraint {
        key: key.into(),
        op,
        values: values.iter().map(|v| v.to_string()).collect(),
    };
    match sel {
        1 => spec = spec.selector("disk", "ssd"),
        2 => spec = spec.selector("gpu", "true"),
        3 => spec.constraints = vec![c("zone", ConstraintOp::In, &["a", "b"])],
        4 => spec.constraints = vec![c("zone", ConstraintOp::Ne, &["a"])],
        5 => spec.constraints = vec![c("gpu", ConstraintOp::NotExists, &[])],
        _ => {}
    }
    for p in 0..dynamic {
        spec = spec.port(format!("p{p}"), 8000 + p as u32);
    }
    if let Some(h) = fixed {
        spec.task.ports.push(PortSpec {
            name: "fixed".into(),
            container_port: 9000,
            host_port: Some(h as u32),
            protocol: Protocol::Tcp,
            lb: None,
        });
    }
    spec.distinct_hosts = distinct;
    spec.strategy = Some(if spread {
        crate::spec::Strategy::Spread
    } else {
        crate::spec::Strategy::Binpack
    });
    spec
}

/// A state with the nodes, a first job placed and committed (so ports and
/// resources are in use), node statuses applied, and the other jobs submitted.
fn build(nodes: &[NodeGen], jobs: &[JobGen]) -> StateBuilder {
    let mut b = StateBuilder::new();
    for (i, &(cpu_q, mem, tags, _, range)) in nodes.iter().enumerate() {
        let mut info = node(&format!("n{i:02}"), cpu_q as f64 / 4.0, mem);
        // `range` ports; none when 0 (an empty range, lo > hi).
        info.port_range = (30_000, 30_000 + range - 1);
        let names = [
            ("disk", "ssd"),
            ("gpu", "true"),
            ("zone", "a"),
            ("zone", "b"),
        ];
        for (bit, (k, v)) in names.iter().enumerate() {
            if tags & (1 << bit) != 0 {
                info.tags.insert(k.to_string(), v.to_string());
            }
        }
        b = b.node(info);
    }
    if let Some(first) = jobs.first() {
        b = b.job(make_job(0, first));
        let s = FilterScoreScheduler::default().schedule(
            b.state(),
            &slots(&make_job(0, first), 1),
            &[],
            1,
        );
        let plan = Plan {
            placements: s.placements,
            ..Plan::default()
        };
        b.apply(Command::ApplyPlan { plan });
    }
    for (i, &(_, _, _, status, _)) in nodes.iter().enumerate() {
        let id = format!("n{i:02}");
        let cmd = match status {
            6 => Command::SetNodeStatus {
                id,
                status: NodeStatus::Down,
                reason: None,
            },
            7 => Command::SetDrain { id, draining: true },
            8 => Command::SetNodeStatus {
                id,
                status: NodeStatus::Unhealthy,
                reason: None,
            },
            _ => continue,
        };
        b.apply(cmd);
    }
    for (i, g) in jobs.iter().enumerate().skip(1) {
        b = b.job(make_job(i, g));
    }
    b
}

fn requests(b: &StateBuilder) -> Vec<SlotRef> {
    b.state()
        .jobs
        .values()
        .filter(|j| j.spec.name != "j0")
        .flat_map(|j| slots(&j.spec, j.version))
        .collect()
}

/// A bounded configuration, so the sampled path runs on small clusters too.
fn bounded() -> FilterScoreScheduler {
    FilterScoreScheduler::new(SchedulerConfig {
        candidates: 2,
        exhaustive_below: 0,
        scan_limit: 3,
        ..SchedulerConfig::default()
    })
}

/// Every rule a schedule must keep, checked against committed state.
fn check(state: &ClusterState, out: &Schedule) -> Result<(), TestCaseError> {
    let mut free: BTreeMap<&str, Resources> = BTreeMap::new();
    let mut ports: BTreeSet<(&str, u16, Protocol)> = BTreeSet::new();
    let mut per_job: BTreeMap<(&str, &str), u32> = BTreeMap::new();
    for n in state.nodes.values() {
        let u = state.usage(n.id());
        free.insert(n.id(), n.info.capacity.saturating_sub(&u.used));
        for (p, proto) in &u.ports {
            ports.insert((n.id(), *p, *proto));
        }
    }
    for a in state.allocs.values().filter(|a| a.holds_resources()) {
        *per_job
            .entry((a.job.as_str(), a.node.as_deref().unwrap_or("")))
            .or_default() += 1;
    }
    for p in &out.placements {
        let node = &state.nodes[&p.node];
        let spec = &state.jobs[&p.slot.job].spec;
        prop_assert!(node.schedulable(), "placed on unschedulable {}", p.node);
        for c in spec.all_constraints() {
            prop_assert!(
                c.matches(&node.info.tags),
                "{} breaks {c} on {}",
                spec.name,
                p.node
            );
        }
        let f = free.get_mut(node.id().as_str()).expect("node");
        prop_assert!(f.fits(&spec.task.resources), "over-commits {}", p.node);
        *f = f.saturating_sub(&spec.task.resources);
        prop_assert_eq!(p.ports.len(), spec.task.ports.len());
        for (b, want) in p.ports.iter().zip(&spec.task.ports) {
            let PortBinding {
                host_port,
                protocol,
                ..
            } = b;
            prop_assert!(
                ports.insert((node.id(), *host_port, *protocol)),
                "port {host_port} twice on {}",
                p.node
            );
            match want.host_port {
                Some(h) => prop_assert_eq!(h as u16, *host_port),
                None => {
                    let (lo, hi) = node.info.port_range;
                    prop_assert!((lo..=hi).contains(host_port), "dynamic port out of range");
                }
            }
        }
        let n = per_job
            .entry((spec.name.as_str(), node.id().as_str()))
            .or_default();
        *n += 1;
        prop_assert!(
            !spec.distinct_hosts || *n == 1,
            "{} twice on {}",
            spec.name,
            p.node
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// No node over-committed on any resource, no host port given twice on one
    /// node, every selector and constraint respected, dynamic ports in range,
    /// distinct hosts kept; and the state machine, re-checking the plan, refuses
    /// none of it.
    #[test]
    fn schedules_keep_every_rule(
        nodes in prop::collection::vec(node_gen(), 0..24),
        jobs in prop::collection::vec(job_gen(), 1..5),
        seed in any::<u64>(),
    ) {
        let mut b = build(&nodes, &jobs);
        let reqs = requests(&b);
        for sched in [FilterScoreScheduler::default(), bounded()] {
            let out = sched.schedule(b.state(), &reqs, &[], seed);
            prop_assert_eq!(out.placements.len() + out.unplaced.len(), reqs.len());
            check(b.state(), &out)?;
        }
        let out = bounded().schedule(b.state(), &reqs, &[], seed);
        let plan = Plan { placements: out.placements, ..Plan::default() };
        match b.apply(Command::ApplyPlan { plan }) {
            Response::Plan { refused, .. } => prop_assert!(refused.is_empty(), "{refused:?}"),
            other => prop_assert!(false, "{other:?}"),
        }
        prop_assert!(audit(b.state()).is_empty());
    }

    /// The same state, requests and seed give the same schedule.
    #[test]
    fn same_seed_same_schedule(
        nodes in prop::collection::vec(node_gen(), 0..24),
        jobs in prop::collection::vec(job_gen(), 1..5),
        seed in any::<u64>(),
    ) {
        let b = build(&nodes, &jobs);
        let reqs = requests(&b);
        let sched = bounded();
        prop_assert_eq!(
            sched.schedule(b.state(), &reqs, &[], seed),
            sched.schedule(b.state(), &reqs, &[], seed)
        );
    }

    /// A request the bounded scheduler leaves unplaced fits nowhere: exhaustive
    /// search on the state after the plan (which has no more room than the plan
    /// had when it gave up) finds no node either. A single request is placed by
    /// one exactly when it is placed by the other.
    #[test]
    fn unplaced_only_when_exhaustive_search_finds_nothing(
        nodes in prop::collection::vec(node_gen(), 0..24),
        jobs in prop::collection::vec(job_gen(), 1..5),
        seed in any::<u64>(),
    ) {
        let mut b = build(&nodes, &jobs);
        let reqs = requests(&b);
        let exhaustive = FilterScoreScheduler::new(SchedulerConfig::exhaustive());
        for one in reqs.iter().take(3) {
            let one = std::slice::from_ref(one);
            prop_assert_eq!(
                bounded().schedule(b.state(), one, &[], seed).placements.len(),
                exhaustive.schedule(b.state(), one, &[], seed).placements.len()
            );
        }
        let out = bounded().schedule(b.state(), &reqs, &[], seed);
        let unplaced: BTreeSet<String> = out.unplaced.iter().map(|u| u.slot.job.clone()).collect();
        let plan = Plan { placements: out.placements, ..Plan::default() };
        b.apply(Command::ApplyPlan { plan });
        for name in unplaced {
            let j = &b.state().jobs[&name];
            let probe = SlotRef { job: name.clone(), version: j.version, slot: u32::MAX, existing: None, replaces: None, pin: None };
            let again = exhaustive.schedule(b.state(), &[probe], &[], seed);
            prop_assert!(again.placements.is_empty(), "{name} was unplaced but fits on {}", again.placements[0].node);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Never unschedulable while some node fits, checked against the state the
    /// decision was made on (not the state after the plan, where later
    /// placements may have taken the room): the requests are scheduled one at a
    /// time by the bounded scheduler, each placement committed before the next;
    /// whenever it leaves one unplaced, exhaustive search over every node of that
    /// same state finds no node either, and when it places one, exhaustive
    /// search places it too.
    #[test]
    fn never_unplaced_while_a_node_of_the_state_before_fits(
        nodes in prop::collection::vec(node_gen(), 0..24),
        jobs in prop::collection::vec(job_gen(), 1..5),
        seed in any::<u64>(),
    ) {
        let mut b = build(&nodes, &jobs);
        let reqs = requests(&b);
        let exhaustive = FilterScoreScheduler::new(SchedulerConfig::exhaustive());
        for r in &reqs {
            let one = std::slice::from_ref(r);
            let out = bounded().schedule(b.state(), one, &[], seed);
            let wide = exhaustive.schedule(b.state(), one, &[], seed);
            if out.placements.is_empty() {
                prop_assert!(
                    wide.placements.is_empty(),
                    "{} slot {} was left unplaced ({}) but fits on {}",
                    r.job,
                    r.slot,
                    out.unplaced[0].reason,
                    wide.placements[0].node
                );
            } else {
                prop_assert_eq!(wide.placements.len(), 1, "placed by the bounded walk only");
                check(b.state(), &out)?;
                let plan = Plan { placements: out.placements, ..Plan::default() };
                match b.apply(Command::ApplyPlan { plan }) {
                    Response::Plan { placed: 1, .. } => {}
                    other => prop_assert!(false, "{other:?}"),
                }
            }
        }
    }
}

/// Degenerate input never panics: an empty cluster, zero-capacity nodes, empty
/// and one-port ranges, requests larger than any node, huge nodes, 10,000
/// replicas, requests for jobs that do not exist.
#[test]
fn degenerate_input_does_not_panic() {
    let mut b = StateBuilder::new().job(job("web", 10_000, 0.1, 64).port("http", 80));
    let reqs = slots(&b.state().jobs["web"].spec.clone(), 1);
    for sched in [FilterScoreScheduler::default(), bounded()] {
        let out = sched.schedule(b.state(), &reqs, &[], 0);
        assert_eq!(out.unplaced.len(), 10_000);
        assert_eq!(out.unplaced[0].reason, "no nodes in the cluster");
    }
    let mut zero = node("zero", 0.0, 0);
    zero.capacity.disk_mb = 0;
    let mut no_ports = node("noports", 4.0, 4096);
    no_ports.port_range = (40_000, 39_999);
    let mut one_port = node("oneport", 4.0, 4096);
    one_port.port_range = (40_000, 40_000);
    let mut huge = node("huge", 1e9, u64::MAX / 4);
    huge.port_range = (0, u16::MAX);
    for n in [zero, no_ports, one_port, huge] {
        b = b.node(n);
    }
    b = b
        .job(job("giant", 3, 2e9, 1 << 62))
        .job(job("tiny", 10_000, 0.001, 1).port("a", 1).port("b", 2));
    let mut reqs = reqs;
    reqs.extend(slots(&b.state().jobs["giant"].spec.clone(), 1));
    reqs.extend(slots(&b.state().jobs["tiny"].spec.clone(), 1));
    reqs.push(SlotRef {
        job: "ghost".into(),
        version: 1,
        slot: 0,
        existing: None,
        replaces: None,
        pin: None,
    });
    let all = [
        FilterScoreScheduler::default(),
        bounded(),
        FilterScoreScheduler::new(SchedulerConfig::exhaustive()),
    ];
    for sched in &all {
        let out = sched.schedule(b.state(), &reqs, &[], 0);
        let n = out.placements.len() + out.unplaced.len();
        assert_eq!(n, reqs.len() - 1, "the ghost is skipped");
        assert!(out.unplaced.iter().any(|u| u.slot.job == "giant"));
        assert!(out.placements.iter().any(|p| p.slot.job == "tiny"));
    }
    let out = all[0].schedule(b.state(), &reqs, &[], 0);
    let plan = Plan {
        placements: out.placements,
        ..Plan::default()
    };
    match b.apply(Command::ApplyPlan { plan }) {
        Response::Plan { refused, .. } => assert!(refused.is_empty(), "{refused:?}"),
        other => panic!("{other:?}"),
    }
    assert!(audit(b.state()).is_empty());
}
