//! Table tests of the reconciler over states built by applying commands.

use super::*;
use crate::command::{AllocUpdate, Command, Response};
use crate::model::{DesiredState, NodeStatus};
use crate::scheduler::FilterScoreScheduler;
use crate::spec::JobKind;
use crate::testing::fixtures::{job, node, StateBuilder};

/// Runs reconcile passes, committing each plan, until a pass plans nothing.
fn converge(b: &mut StateBuilder) -> usize {
    let sched = FilterScoreScheduler::default();
    for pass in 0..10 {
        let p = plan(b.state(), &sched, 10_000, pass);
        if p.is_empty() {
            return pass as usize;
        }
        let r = b.apply(Command::ApplyPlan { plan: p });
        assert!(
            matches!(r, Response::Plan { ref refused, .. } if refused.is_empty()),
            "{r:?}"
        );
    }
    panic!("did not converge");
}

fn live(b: &StateBuilder, job: &str) -> Vec<Allocation> {
    b.state()
        .allocs_of_job(job)
        .filter(|a| a.is_live())
        .cloned()
        .collect()
}

#[test]
fn places_missing_replicas_then_rests() {
    let mut b = StateBuilder::new()
        .node(node("n1", 4.0, 4096))
        .job(job("web", 3, 0.5, 256));
    assert_eq!(converge(&mut b), 1);
    let allocs = live(&b, "web");
    assert_eq!(allocs.len(), 3);
    assert!(allocs
        .iter()
        .all(|a| a.node.as_deref() == Some("n1") && a.state == AllocState::Starting));
    let mut slots: Vec<u32> = allocs.iter().map(|a| a.slot).collect();
    slots.sort();
    assert_eq!(slots, [0, 1, 2]);
}

#[test]
fn scaling_down_stops_the_extra_slots() {
    let mut b = StateBuilder::new()
        .node(node("n1", 4.0, 4096))
        .job(job("web", 3, 0.5, 256));
    converge(&mut b);
    let mut b = b.job(job("web", 1, 0.5, 256));
    converge(&mut b);
    let v2: Vec<_> = live(&b, "web");
    assert_eq!(v2.len(), 1);
    assert_eq!(
        v2[0].job_version, 2,
        "a changed spec is a new version, rolled out"
    );
}

#[test]
fn unschedulable_stays_pending_with_reason_and_places_when_capacity_appears() {
    let mut b = StateBuilder::new()
        .node(node("n1", 4.0, 3900))
        .job(job("big", 1, 0.1, 8000));
    converge(&mut b);
    let a = &live(&b, "big")[0];
    assert_eq!(a.state, AllocState::Pending);
    assert_eq!(
        a.message.as_deref(),
        Some("1 node: insufficient memory (need 8000 MB, free 3900)")
    );
    assert_eq!(converge(&mut b), 0, "a repeated reason writes nothing");
    let mut b = b.node(node("n2", 4.0, 16_000));
    converge(&mut b);
    let placed = &live(&b, "big")[0];
    assert_eq!(placed.id, a.id, "the pending allocation itself is placed");
    assert_eq!(placed.node.as_deref(), Some("n2"));
}

#[test]
fn lost_allocations_are_replaced_on_other_nodes() {
    let mut b = StateBuilder::new()
        .node(node("n1", 4.0, 4096))
        .node(node("n2", 4.0, 4096))
        .job(job("web", 2, 0.5, 256));
    converge(&mut b);
    b.apply(Command::SetNodeStatus {
        id: "n1".into(),
        status: NodeStatus::Down,
        reason: None,
    });
    converge(&mut b);
    let allocs = live(&b, "web");
    assert_eq!(allocs.len(), 2);
    assert!(allocs.iter().all(|a| a.node.as_deref() == Some("n2")));
}

#[test]
fn draining_moves_allocations_off_the_node() {
    let mut b = StateBuilder::new()
        .node(node("n1", 4.0, 4096))
        .job(job("web", 2, 0.5, 256));
    converge(&mut b);
    let mut b = b.node(node("n2", 4.0, 4096));
    b.apply(Command::SetDrain {
        id: "n1".into(),
        draining: true,
    });
    converge(&mut b);
    assert!(live(&b, "web")
        .iter()
        .all(|a| a.node.as_deref() == Some("n2")));
    let stopped = b
        .state()
        .allocs_of_job("web")
        .filter(|a| a.desired == DesiredState::Stop)
        .count();
    assert_eq!(stopped, 2);
}

#[test]
fn completed_batch_slots_are_not_run_again() {
    let mut spec = job("once", 1, 0.1, 64);
    spec.kind = JobKind::Batch;
    let mut b = StateBuilder::new().node(node("n1", 4.0, 4096)).job(spec);
    converge(&mut b);
    let id = live(&b, "once")[0].id.clone();
    b.apply(Command::UpdateAllocs {
        updates: vec![AllocUpdate {
            id,
            node: "n1".into(),
            state: AllocState::Complete,
            message: None,
            exit_code: Some(0),
            outputs: None,
            ports: None,
            health: None,
            restarts: None,
            failures: None,
            restarted: false,
            failed_attempt: false,
            deploy_healthy: None,
            gave_up: false,
            at_ms: None,
        }],
    });
    assert_eq!(converge(&mut b), 0);
}

#[test]
fn stopped_jobs_plan_nothing() {
    let mut b = StateBuilder::new()
        .node(node("n1", 4.0, 4096))
        .job(job("web", 2, 0.5, 256));
    converge(&mut b);
    b.apply(Command::StopJob {
        name: "web".into(),
        purge: false,
    });
    assert_eq!(converge(&mut b), 0);
    assert!(live(&b, "web").is_empty());
}

/// The intent as it was before jobs were skipped: every running job read.
fn intent_reading_every_job(state: &ClusterState, max_requests: usize) -> Intent {
    let mut out = Intent::default();
    for job in fair_order(state) {
        let limit = request_limit(out.requests.len(), max_requests);
        job_intent(state, job, limit, None, &mut out);
    }
    out
}

/// A job's tally recounted from its allocations.
fn recount(state: &ClusterState, job: &str) -> Option<crate::state::JobTally> {
    let mut t = crate::state::JobTally::default();
    for a in state.allocs_of_job(job) {
        t.count(a, true);
    }
    (!t.is_empty()).then_some(t)
}

mod histories {
    use proptest::prelude::{prop, proptest, ProptestConfig};

    use super::*;
    use crate::testing::sim::{Sim, SimConfig};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Over random histories — jobs scaled and changed, nodes failing,
        /// coming back and draining, small passes — the tallies equal a recount
        /// of the allocations, and skipping settled jobs changes no intent.
        #[test]
        fn skipping_settled_jobs_changes_nothing(
            ops in prop::collection::vec((0u8..6, 0u32..12, 1u32..8), 1..25),
            max in 1usize..40,
        ) {
            let mut sim = Sim::new(SimConfig { max_placements_per_pass: max, ..SimConfig::default() });
            sim.add_nodes((0..6).map(|i| node(&format!("n{i}"), 2.0, 2048)));
            for (op, a, b) in ops {
                let n = format!("n{}", a % 6);
                match op {
                    0 => sim.submit([job(&format!("j{}", a % 3), b * 2, 0.25, 128)]),
                    1 => sim.submit([job(&format!("j{}", a % 3), b, 0.25, 128).env("V", b.to_string())]),
                    2 => sim.fail_node(&n),
                    3 => sim.recover_node(&n),
                    4 => sim.drain(&n, b % 2 == 0),
                    _ => {
                        sim.step();
                    }
                }
                sim.step();
                sim.read(|s| -> Result<(), proptest::test_runner::TestCaseError> {
                    for name in s.jobs.keys() {
                        proptest::prop_assert_eq!(s.job_tally(name).cloned(), recount(s, name));
                    }
                    proptest::prop_assert_eq!(intent(s, max), intent_reading_every_job(s, max));
                    Ok(())
                })?;
            }
        }
    }
}

#[test]
fn a_task_that_keeps_failing_to_start_is_replaced_with_other_ports() {
    let mut b = StateBuilder::new()
        .node(node("n1", 4.0, 4096))
        .job(job("web", 1, 0.5, 256).port("http", 80));
    converge(&mut b);
    let first = live(&b, "web")[0].clone();
    for n in 0..crate::model::RESCHEDULE_AFTER_FAILURES {
        assert!(
            plan(b.state(), &FilterScoreScheduler::default(), 100, 1).is_empty(),
            "retry {n} in place"
        );
        b.apply(Command::UpdateAllocs {
            updates: vec![AllocUpdate {
                message: Some("start failed: port is already allocated".into()),
                failures: Some(n + 1),
                ..AllocUpdate::new(first.id.clone(), "n1", AllocState::Failed)
            }],
        });
    }
    converge(&mut b);
    let now = live(&b, "web");
    assert_eq!(now.len(), 1);
    assert_ne!(now[0].id, first.id, "replaced by a new allocation");
    assert_ne!(
        now[0].ports[0].host_port, first.ports[0].host_port,
        "with another host port"
    );
    let old = &b.state().allocs[&first.id];
    assert_eq!(old.desired, DesiredState::Stop);
    assert!(
        old.message
            .as_deref()
            .unwrap()
            .starts_with("replaced after 3 failed starts"),
        "{old:?}"
    );
}

/// Marks every placed, live allocation of `job` running, as its node would.
fn run_all(b: &mut StateBuilder, job: &str) {
    let updates = live(b, job)
        .into_iter()
        .filter(|a| a.node.is_some())
        .map(|a| AllocUpdate::new(a.id, a.node.unwrap(), AllocState::Running))
        .collect();
    b.apply(Command::UpdateAllocs { updates });
}

/// An update that cannot be placed (a selector no node has) never stops the
/// version that runs: the old copies keep running, the new ones wait with the
/// scheduler's reason, pass after pass.
#[test]
fn an_update_that_cannot_be_placed_leaves_the_old_version_running() {
    let mut b = StateBuilder::new()
        .node(node("n1", 4.0, 4096))
        .job(job("web", 2, 0.5, 256));
    converge(&mut b);
    run_all(&mut b, "web");
    let old: Vec<String> = live(&b, "web").into_iter().map(|a| a.id).collect();
    b.apply(Command::UpsertJob {
        spec: job("web", 2, 0.5, 256)
            .selector("gpu", "true")
            .env("V", "2")
            .update(crate::spec::UpdateSpec {
                max_parallel: 2,
                ..Default::default()
            }),
    });
    converge(&mut b);
    let now = live(&b, "web");
    let running: Vec<&str> = now
        .iter()
        .filter(|a| a.state == AllocState::Running)
        .map(|a| a.id.as_str())
        .collect();
    assert_eq!(running, old, "the old version still runs");
    let pending: Vec<&Allocation> = now.iter().filter(|a| a.job_version == 2).collect();
    assert_eq!(pending.len(), 2);
    assert!(pending
        .iter()
        .all(|a| a.node.is_none() && a.message.as_deref() == Some("1 node: selector gpu=true")));
    assert!(
        plan(b.state(), &FilterScoreScheduler::default(), 100, 7).is_empty(),
        "and nothing more to do until a node matches"
    );

    // A node that matches appears: the new version is placed, then the old stops.
    b.apply(Command::RegisterNode {
        info: crate::testing::fixtures::tagged(node("gpu1", 4.0, 4096), &[("gpu", "true")]),
    });
    converge(&mut b);
    let now = live(&b, "web");
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(now
        .iter()
        .all(|a| a.job_version == 2 && a.node.as_deref() == Some("gpu1")));
}

/// Where the new version only fits once the old one is gone (one small node),
/// the update still goes through in one plan: the stop that frees the room is
/// kept because the replacement it makes room for is placed.
#[test]
fn an_update_that_needs_the_old_copys_room_still_goes_through() {
    let mut b = StateBuilder::new()
        .node(node("n1", 1.0, 512))
        .job(job("web", 1, 0.5, 400));
    converge(&mut b);
    run_all(&mut b, "web");
    b.apply(Command::UpsertJob {
        spec: job("web", 1, 0.5, 400).env("V", "2"),
    });
    converge(&mut b);
    let now = live(&b, "web");
    assert_eq!(now.len(), 1);
    assert_eq!(
        (now[0].job_version, now[0].node.as_deref()),
        (2, Some("n1"))
    );
}

/// A job that can never be placed, however big, delays no other: each pass
/// the small jobs after it (in name, and in age) are placed, every pending
/// allocation has its reason, and the big one's summary counts what has no
/// record. Higher priority is placed first when capacity is short.
#[test]
fn an_unplaceable_giant_delays_no_other_job_and_priority_goes_first() {
    let mut b = StateBuilder::new().node(node("n1", 4.0, 4096)).job(job(
        "aaa-giant",
        100_000,
        0.1,
        1_000_000,
    ));
    for i in 0..20 {
        b.apply(Command::UpsertJob {
            spec: job(&format!("small-{i}"), 1, 0.1, 64),
        });
    }
    let sched = FilterScoreScheduler::default();
    let p = plan(b.state(), &sched, 5_000, 1);
    let placed: Vec<&str> = p.placements.iter().map(|p| p.slot.job.as_str()).collect();
    assert_eq!(placed.len(), 20, "every small job placed in the first pass");
    b.apply(Command::ApplyPlan { plan: p });
    let giant = &b.state().jobs["aaa-giant"];
    let summary = giant.unplaced.as_deref().unwrap();
    assert!(
        summary.starts_with("0 of 100000 replicas placed; 100000 not: 1 node: insufficient memory"),
        "{summary}"
    );
    let pending: Vec<Allocation> = b.state().allocs_of_job("aaa-giant").cloned().collect();
    assert!(
        pending.len() <= 2_500,
        "at most half a pass: {}",
        pending.len()
    );
    assert!(
        pending.iter().all(|a| a.message.is_some()),
        "each record has its reason"
    );
    assert!(
        {
            // The reason names the memory the small jobs left free: updated once.
            let p2 = plan(b.state(), &sched, 5_000, 2);
            b.apply(Command::ApplyPlan { plan: p2 });
            plan(b.state(), &sched, 5_000, 3).is_empty()
        },
        "and then a pass writes nothing"
    );

    // Short capacity: the high-priority job is placed before an older one.
    let mut b = StateBuilder::new()
        .node(node("n1", 1.0, 1024))
        .job(job("old", 1, 1.0, 1024));
    let mut urgent = job("urgent", 1, 1.0, 1024);
    urgent.priority = 90;
    b.apply(Command::UpsertJob { spec: urgent });
    converge(&mut b);
    let runs: Vec<String> = b
        .state()
        .allocs
        .values()
        .filter(|a| a.node.is_some())
        .map(|a| a.job.clone())
        .collect();
    assert_eq!(runs, ["urgent"]);
    assert!(b.state().jobs["old"].unplaced.is_some());
}
