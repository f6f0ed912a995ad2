//! Table tests of rollouts: the reconciler and the state machine together,
//! with nodes' reports played by hand.

use super::*;
use crate::command::{AllocUpdate, Command, Response};
use crate::model::{DeploymentStatus, JobVersion};
use crate::scheduler::FilterScoreScheduler;
use crate::spec::{JobSpec, UpdateOrder, UpdateSpec};
use crate::state::DeploymentAction;
use crate::testing::fixtures::{job, node, StateBuilder};

/// One reconcile pass, committed.
fn pass(b: &mut StateBuilder) -> bool {
    let p = plan(b.state(), &FilterScoreScheduler::default(), 10_000, 1);
    if p.is_empty() {
        return false;
    }
    let r = b.apply(Command::ApplyPlan { plan: p });
    assert!(
        matches!(r, Response::Plan { ref refused, .. } if refused.is_empty()),
        "{r:?}"
    );
    true
}

fn settle(b: &mut StateBuilder) {
    for _ in 0..10 {
        if !pass(b) {
            return;
        }
    }
    panic!("did not settle");
}

fn live(b: &StateBuilder, job: &str) -> Vec<Allocation> {
    b.state()
        .allocs_of_job(job)
        .filter(|a| a.is_live())
        .cloned()
        .collect()
}

/// Nodes report every placed live allocation running; those of a deployment
/// that have no verdict yet get `verdict`.
fn report(b: &mut StateBuilder, job: &str, verdict: bool) {
    let updates = live(b, job)
        .into_iter()
        .filter(|a| a.node.is_some())
        .map(|a| AllocUpdate {
            deploy_healthy: a
                .deployment
                .filter(|_| a.deploy_healthy.is_none())
                .map(|_| verdict),
            ..AllocUpdate::new(a.id, a.node.unwrap(), AllocState::Running)
        })
        .collect();
    b.apply(Command::UpdateAllocs { updates });
}

fn running_of(b: &StateBuilder, job: &str, version: u64) -> usize {
    live(b, job)
        .iter()
        .filter(|a| a.job_version == version && a.state == AllocState::Running)
        .count()
}

fn deployment(b: &StateBuilder, job: &str) -> crate::model::Deployment {
    b.state()
        .latest_deployment(job)
        .cloned()
        .expect("a deployment")
}

fn with_update(spec: JobSpec, u: UpdateSpec) -> JobSpec {
    spec.update(u)
}

/// A job of `replicas` running v1 (its first deployment done).
fn running(replicas: u32, u: UpdateSpec) -> StateBuilder {
    let mut b = StateBuilder::new()
        .node(node("n1", 16.0, 16384))
        .job(with_update(job("web", replicas, 0.5, 256), u));
    settle(&mut b);
    report(&mut b, "web", true);
    settle(&mut b);
    assert_eq!(deployment(&b, "web").status, DeploymentStatus::Successful);
    b
}

fn v2(replicas: u32, u: UpdateSpec) -> Command {
    Command::UpsertJob {
        spec: with_update(job("web", replicas, 0.5, 256).env("V", "2"), u),
    }
}

/// Rolls until the deployment ends, recording the fewest running copies seen
/// and the most new copies in flight.
fn roll(b: &mut StateBuilder, verdict: bool) -> (usize, usize) {
    roll_job(b, "web", verdict)
}

fn roll_job(b: &mut StateBuilder, job: &str, verdict: bool) -> (usize, usize) {
    let (mut fewest, mut most_in_flight) = (usize::MAX, 0);
    for _ in 0..40 {
        pass(b);
        let now = live(b, job);
        let running = now
            .iter()
            .filter(|a| a.state == AllocState::Running)
            .count();
        fewest = fewest.min(running);
        let in_flight = now
            .iter()
            .filter(|a| a.deployment.is_some() && a.deploy_healthy.is_none())
            .count();
        most_in_flight = most_in_flight.max(in_flight);
        if !deployment(b, job).status.is_active() {
            break;
        }
        report(b, job, verdict);
        // A stop is confirmed by the node.
        let stopped: Vec<AllocUpdate> = b
            .state()
            .allocs_of_job(job)
            .filter(|a| a.desired == crate::model::DesiredState::Stop && !a.state.is_terminal())
            .map(|a| AllocUpdate::new(a.id.clone(), a.node.clone().unwrap(), AllocState::Stopped))
            .collect();
        b.apply(Command::UpdateAllocs { updates: stopped });
    }
    (fewest, most_in_flight)
}

#[test]
fn a_rolling_update_replaces_at_most_max_parallel_at_a_time() {
    let u = UpdateSpec {
        max_parallel: 2,
        ..Default::default()
    };
    let mut b = running(5, u.clone());
    b.apply(v2(5, u));
    assert_eq!(deployment(&b, "web").status, DeploymentStatus::Running);
    let (fewest, in_flight) = roll(&mut b, true);
    let d = deployment(&b, "web");
    assert_eq!(d.status, DeploymentStatus::Successful, "{d:?}");
    assert_eq!((d.placed, d.healthy), (5, 5));
    assert_eq!(in_flight, 2, "never more than max_parallel in flight");
    assert!(
        fewest >= 3,
        "never fewer than replicas - max_parallel running: {fewest}"
    );
    assert_eq!(running_of(&b, "web", 2), 5);
    let stable: Vec<(u64, bool)> = b
        .state()
        .versions_of("web")
        .iter()
        .map(|v: &JobVersion| (v.version, v.stable))
        .collect();
    assert_eq!(stable, [(1, true), (2, true)]);
}

#[test]
fn start_first_stops_the_old_copy_only_once_its_replacement_counts() {
    let u = UpdateSpec {
        order: UpdateOrder::StartFirst,
        ..Default::default()
    };
    let mut b = running(3, u.clone());
    b.apply(v2(3, u));
    pass(&mut b);
    let now = live(&b, "web");
    assert_eq!(now.len(), 4, "one new copy beside the three old: {now:?}");
    assert_eq!(running_of(&b, "web", 1), 3);
    // Not yet healthy: nothing more happens.
    report(&mut b, "web", true);
    let (fewest, _) = roll(&mut b, true);
    assert!(fewest >= 3, "never fewer than replicas running: {fewest}");
    assert_eq!(deployment(&b, "web").status, DeploymentStatus::Successful);
}

#[test]
fn canaries_wait_for_a_promotion_then_the_rollout_goes_on() {
    let u = UpdateSpec {
        canary: 1,
        ..Default::default()
    };
    let mut b = running(3, u.clone());
    b.apply(v2(3, u));
    settle(&mut b);
    report(&mut b, "web", true);
    settle(&mut b);
    assert_eq!(running_of(&b, "web", 1), 3, "the old set runs on");
    assert_eq!(running_of(&b, "web", 2), 1, "beside one canary");
    let d = deployment(&b, "web");
    assert_eq!(d.description, "canaries healthy; waiting for promotion");
    let r = b.apply(Command::Deployment {
        job: "web".into(),
        deployment: d.id,
        action: DeploymentAction::Promote,
        reason: None,
    });
    assert_eq!(r, Response::Done);
    roll(&mut b, true);
    assert_eq!(deployment(&b, "web").status, DeploymentStatus::Successful);
    assert_eq!(running_of(&b, "web", 2), 3);
    assert_eq!(live(&b, "web").len(), 3);
}

#[test]
fn blue_green_is_canary_replicas_and_promotion_switches_at_once() {
    let u = UpdateSpec {
        canary: 3,
        auto_promote: true,
        ..Default::default()
    };
    let mut b = running(3, u.clone());
    b.apply(v2(3, u));
    settle(&mut b);
    assert_eq!(live(&b, "web").len(), 6, "the green set beside the blue");
    report(&mut b, "web", true);
    assert!(
        deployment(&b, "web").promoted,
        "promoted once all are healthy"
    );
    settle(&mut b);
    let now = live(&b, "web");
    assert!(now.iter().all(|a| a.job_version == 2), "{now:?}");
    assert_eq!(deployment(&b, "web").status, DeploymentStatus::Successful);
}

#[test]
fn a_failed_allocation_fails_the_deployment_and_auto_revert_keeps_the_old_copies() {
    let u = UpdateSpec {
        auto_revert: true,
        ..Default::default()
    };
    let mut b = running(3, u.clone());
    let v1_ids: Vec<String> = live(&b, "web").into_iter().map(|a| a.id).collect();
    b.apply(v2(3, u));
    pass(&mut b);
    assert_eq!(running_of(&b, "web", 1), 2, "one replaced (stop first)");
    report(&mut b, "web", false);
    let failed = &b.state().deployments_of("web")[1];
    assert_eq!(failed.status, DeploymentStatus::Failed);
    assert_eq!(failed.reverted_to, Some(1));
    assert!(
        failed.description.contains("rolling back to version 1"),
        "{}",
        failed.description
    );
    let job = &b.state().jobs["web"];
    assert_eq!(job.version, 3);
    assert_eq!(
        job.spec.task.env.get("V"),
        None,
        "version 3 is version 1's spec"
    );
    roll(&mut b, true);
    assert_eq!(deployment(&b, "web").status, DeploymentStatus::Successful);
    let now = live(&b, "web");
    assert_eq!(now.len(), 3);
    let kept = now.iter().filter(|a| v1_ids.contains(&a.id)).count();
    assert_eq!(kept, 2, "the copies that never stopped run on as version 3");
}

#[test]
fn a_failed_deployment_without_revert_replaces_nothing_more() {
    let mut b = running(3, UpdateSpec::default());
    b.apply(v2(3, UpdateSpec::default()));
    pass(&mut b);
    report(&mut b, "web", false);
    assert_eq!(deployment(&b, "web").status, DeploymentStatus::Failed);
    settle(&mut b);
    assert_eq!(running_of(&b, "web", 1), 2, "the rest of version 1 runs on");
    assert_eq!(b.state().jobs["web"].version, 2);
}

#[test]
fn a_paused_deployment_replaces_nothing_until_resumed() {
    let mut b = running(3, UpdateSpec::default());
    b.apply(v2(3, UpdateSpec::default()));
    let id = deployment(&b, "web").id;
    let act = |action| Command::Deployment {
        job: "web".into(),
        deployment: id,
        action,
        reason: None,
    };
    assert_eq!(b.apply(act(DeploymentAction::Pause)), Response::Done);
    settle(&mut b);
    assert_eq!(running_of(&b, "web", 1), 3);
    assert_eq!(b.apply(act(DeploymentAction::Resume)), Response::Done);
    roll(&mut b, true);
    assert_eq!(deployment(&b, "web").status, DeploymentStatus::Successful);
}

#[test]
fn scaling_during_a_deployment_is_made_in_place_and_the_deployment_follows() {
    let mut b = running(2, UpdateSpec::default());
    b.apply(v2(2, UpdateSpec::default()));
    pass(&mut b);
    b.apply(v2(4, UpdateSpec::default()));
    let d = deployment(&b, "web");
    assert_eq!(
        (d.job_version, d.desired, d.status),
        (3, 4, DeploymentStatus::Running)
    );
    roll(&mut b, true);
    assert_eq!(deployment(&b, "web").status, DeploymentStatus::Successful);
    assert_eq!(running_of(&b, "web", 3), 4);
}

#[test]
fn bad_deployment_actions_and_reverts_are_refused_and_change_nothing() {
    let mut b = running(2, UpdateSpec::default());
    let d = deployment(&b, "web");
    let facts = |b: &StateBuilder| {
        let s = b.state();
        serde_json::to_string(&(&s.jobs, &s.deployments, &s.versions, s.allocs.as_map())).unwrap()
    };
    let before = facts(&b);
    let refused = |r: Response| match r {
        Response::Refused { reason, .. } => reason,
        other => panic!("not refused: {other:?}"),
    };
    let act = |deployment, action| Command::Deployment {
        job: "web".into(),
        deployment,
        action,
        reason: None,
    };
    let why = refused(b.apply(act(d.id, DeploymentAction::Pause)));
    assert!(why.contains("is successful"), "{why}");
    let why = refused(b.apply(act(99, DeploymentAction::Promote)));
    assert!(why.contains("no deployment 99"), "{why}");
    let why = refused(b.apply(Command::RevertJob {
        name: "web".into(),
        version: Some(7),
        from: None,
    }));
    assert!(why.contains("no version 7"), "{why}");
    let why = refused(b.apply(Command::RevertJob {
        name: "web".into(),
        version: None,
        from: None,
    }));
    assert!(why.contains("no stable version"), "{why}");
    assert_eq!(facts(&b), before, "refusals change nothing");
    b.apply(v2(2, UpdateSpec::default()));
    let d = deployment(&b, "web");
    let why = refused(b.apply(act(d.id, DeploymentAction::Promote)));
    assert!(why.contains("no canaries"), "{why}");
}

#[test]
fn revert_by_hand_goes_back_to_a_kept_version() {
    let mut b = running(2, UpdateSpec::default());
    b.apply(v2(2, UpdateSpec::default()));
    roll(&mut b, true);
    let r = b.apply(Command::RevertJob {
        name: "web".into(),
        version: None,
        from: None,
    });
    assert!(
        matches!(
            r,
            Response::Job {
                version: 3,
                changed: true,
                ..
            }
        ),
        "{r:?}"
    );
    assert_eq!(b.state().jobs["web"].spec.task.env.get("V"), None);
    roll(&mut b, true);
    assert_eq!(running_of(&b, "web", 3), 2);
}

fn system_job() -> JobSpec {
    let mut spec = job("agent", 1, 0.1, 64).selector("role", "edge");
    spec.kind = crate::spec::JobKind::System;
    spec
}

fn nodes_of(b: &StateBuilder, job: &str) -> Vec<String> {
    let mut n: Vec<String> = live(b, job).into_iter().filter_map(|a| a.node).collect();
    n.sort();
    n
}

#[test]
fn a_system_job_runs_once_on_every_eligible_node_and_follows_them() {
    use crate::testing::fixtures::tagged;
    let edge = |id: &str| tagged(node(id, 4.0, 4096), &[("role", "edge")]);
    let mut b = StateBuilder::new()
        .node(edge("e1"))
        .node(edge("e2"))
        .node(node("core", 4.0, 4096))
        .node(edge("e3"))
        .job(system_job());
    settle(&mut b);
    assert_eq!(
        nodes_of(&b, "agent"),
        ["e1", "e2", "e3"],
        "not on the node without the tag"
    );
    report(&mut b, "agent", true);
    settle(&mut b);
    assert_eq!(deployment(&b, "agent").status, DeploymentStatus::Successful);

    // A node that joins gets one; a drained node loses its own.
    b.apply(Command::RegisterNode { info: edge("e4") });
    settle(&mut b);
    assert_eq!(nodes_of(&b, "agent"), ["e1", "e2", "e3", "e4"]);
    b.apply(Command::SetDrain {
        id: "e2".into(),
        draining: true,
    });
    settle(&mut b);
    assert_eq!(
        nodes_of(&b, "agent"),
        ["e1", "e3", "e4"],
        "not moved elsewhere"
    );
    // A node whose tags stop matching loses it too.
    b.apply(Command::RegisterNode {
        info: node("e3", 4.0, 4096),
    });
    settle(&mut b);
    assert_eq!(nodes_of(&b, "agent"), ["e1", "e4"]);

    // An update rolls node by node (max_parallel 1).
    let mut v2 = system_job();
    v2.task.env.insert("V".into(), "2".into());
    b.apply(Command::UpsertJob { spec: v2 });
    pass(&mut b);
    let new = live(&b, "agent")
        .iter()
        .filter(|a| a.job_version == 2)
        .count();
    assert_eq!(new, 1, "one node at a time");
    roll_job(&mut b, "agent", true);
    assert_eq!(deployment(&b, "agent").status, DeploymentStatus::Successful);
    assert!(live(&b, "agent").iter().all(|a| a.job_version == 2));
    assert_eq!(nodes_of(&b, "agent"), ["e1", "e4"]);
}

/// With the leader's clock, a system job's next node waits `stagger` after
/// the last one came to count, and the reschedule policy counts only the
/// reschedules within its interval.
#[test]
fn stagger_and_the_reschedule_interval_follow_the_leaders_clock() {
    use crate::testing::fixtures::tagged;
    let edge = |id: &str| tagged(node(id, 4.0, 4096), &[("role", "edge")]);
    let mut b = StateBuilder::new()
        .node(edge("e1"))
        .node(edge("e2"))
        .job(system_job());
    settle(&mut b);
    report(&mut b, "agent", true);
    let mut v2 = system_job();
    v2.task.env.insert("V".into(), "2".into());
    v2.update = Some(UpdateSpec {
        stagger: std::time::Duration::from_secs(30),
        ..Default::default()
    });
    b.apply(Command::UpsertJob { spec: v2 });
    let sched = FilterScoreScheduler::default();
    let at = |b: &mut StateBuilder, now: u64| {
        let p = plan_at(b.state(), &sched, 100, 1, Some(now));
        b.apply(Command::ApplyPlan { plan: p });
    };
    at(&mut b, 1_000_000);
    // The first node's new allocation counts at t = 1,000 s (its node's clock).
    let updates = live(&b, "agent")
        .into_iter()
        .filter(|a| a.job_version == 2)
        .map(|a| AllocUpdate {
            deploy_healthy: Some(true),
            at_ms: Some(1_000_000),
            ..AllocUpdate::new(a.id, a.node.unwrap(), AllocState::Running)
        })
        .collect();
    b.apply(Command::UpdateAllocs { updates });
    at(&mut b, 1_000_000);
    let new = |b: &StateBuilder| {
        live(b, "agent")
            .iter()
            .filter(|a| a.job_version == 2)
            .count()
    };
    assert_eq!(new(&b), 1, "the second node waits the stagger");
    at(&mut b, 1_029_000);
    assert_eq!(new(&b), 1, "still within it");
    at(&mut b, 1_031_000);
    assert_eq!(new(&b), 2, "then it goes");

    // Reschedules: one allowed per hour.
    let mut spec = job("crash", 1, 0.1, 64);
    spec.reschedule = Some(crate::spec::RescheduleSpec {
        unlimited: false,
        attempts: 1,
        interval: std::time::Duration::from_secs(3600),
        ..Default::default()
    });
    let mut b = StateBuilder::new()
        .node(node("n1", 4.0, 4096))
        .node(node("n2", 4.0, 4096))
        .job(spec);
    settle(&mut b);
    let give_up = |b: &mut StateBuilder| {
        let a = live(b, "crash")
            .into_iter()
            .find(|a| a.node.is_some())
            .unwrap();
        b.apply(Command::UpdateAllocs {
            updates: vec![AllocUpdate {
                gave_up: true,
                ..AllocUpdate::new(a.id.clone(), a.node.clone().unwrap(), AllocState::Failed)
            }],
        });
        a.id
    };
    let first = give_up(&mut b);
    at(&mut b, 10_000_000);
    let second = live(&b, "crash")
        .into_iter()
        .find(|a| a.id != first)
        .expect("replaced");
    assert_eq!(second.reschedule_times_ms, [10_000_000]);
    give_up(&mut b);
    at(&mut b, 10_000_000 + 1_800_000);
    assert_eq!(
        live(&b, "crash").len(),
        1,
        "spent within the hour: stays failed"
    );
    at(&mut b, 10_000_000 + 3_700_000);
    let third = live(&b, "crash").into_iter().find(|a| a.id != second.id);
    assert!(
        third.is_some_and(|a| a.reschedules == 2),
        "an hour later it may be replaced again"
    );
}

/// A revert proposed twice (a retry after a timeout) reverts once; one made
/// from a version the job has left is refused.
#[test]
fn a_revert_applied_twice_reverts_once() {
    let mut b = running(2, UpdateSpec::default());
    b.apply(v2(2, UpdateSpec::default()));
    roll(&mut b, true);
    let cmd = Command::RevertJob {
        name: "web".into(),
        version: None,
        from: Some(2),
    };
    let first = b.apply(cmd.clone());
    assert!(
        matches!(
            first,
            Response::Job {
                version: 3,
                changed: true,
                ..
            }
        ),
        "{first:?}"
    );
    let again = b.apply(cmd);
    assert!(
        matches!(
            again,
            Response::Job {
                version: 3,
                changed: false,
                ..
            }
        ),
        "{again:?}"
    );
    assert_eq!(b.state().jobs["web"].version, 3);
    let stale = b.apply(Command::RevertJob {
        name: "web".into(),
        version: Some(2),
        from: Some(2),
    });
    assert!(matches!(stale, Response::Refused { .. }), "{stale:?}");
}
