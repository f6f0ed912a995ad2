//! Autoscaling in the state machine: the counts a policy or a person sets
//! (see [`crate::scaling`] for the decision and [`crate::command::Command::Scale`]).

use super::{Change, ClusterState};
use crate::command::{Refusal, Response};
use crate::model::JobStatus;
use crate::scaling::{ScaledBy, ScalingMemory, ScalingRecord, KEPT_DECISIONS};
use crate::spec::JobSpec;

impl ClusterState {
    /// `spec` as it should be written: a scaling job's count is the one it
    /// runs at (the policy's or a person's), not the spec's `replicas`,
    /// within the new bounds; a new one starts within its bounds.
    pub(super) fn keep_scaled_count(&self, spec: &JobSpec) -> JobSpec {
        let mut spec = spec.clone();
        let Some(sc) = spec.scaling.as_ref() else {
            return spec;
        };
        let (lo, hi) = (sc.min, sc.max.max(sc.min));
        if let Some(j) = self
            .jobs
            .get(&spec.name)
            .filter(|j| j.status == JobStatus::Running && j.spec.scaling.is_some())
        {
            spec.replicas = j.spec.replicas;
        }
        spec.replicas = spec.replicas.clamp(lo, hi);
        spec
    }

    /// Applies [`crate::command::Command::Scale`].
    pub(super) fn scale(
        &mut self,
        index: u64,
        job: &str,
        record: &ScalingRecord,
        memory: &ScalingMemory,
        changes: &mut Vec<Change>,
    ) -> Response {
        let refuse = |refusal: Refusal, reason: String| Response::Refused { refusal, reason };
        let Some(j) = self.jobs.get(job) else {
            return refuse(Refusal::UnknownJob, format!("no job named {job:?}"));
        };
        if j.status != JobStatus::Running {
            return refuse(Refusal::Conflict, format!("job {job:?} is stopped"));
        }
        let current = j.spec.replicas;
        let unchanged = Response::Job {
            name: job.to_string(),
            version: j.version,
            changed: false,
        };
        match record.by {
            ScaledBy::Policy => {
                if j.spec.scaling.is_none() {
                    return refuse(
                        Refusal::Invalid,
                        format!("job {job:?} has no scaling policy"),
                    );
                }
                let kept = self.scaling.get(job);
                if kept.and_then(|s| s.last.as_ref()) == Some(record) {
                    return unchanged;
                }
                if let Some(last) = kept.map(|s| s.last_eval_ms).filter(|l| record.at_ms <= *l) {
                    return refuse(Refusal::Stale, format!(
                        "job {job:?} was evaluated at {last} already, not before this evaluation at {}",
                        record.at_ms
                    ));
                }
                if current != record.from {
                    return refuse(Refusal::Stale, format!(
                        "job {job:?} runs {current} replicas now, not the {} this evaluation was made from",
                        record.from
                    ));
                }
                let entry = self.scaling.entry(job.to_string()).or_default();
                entry.memory = memory.clone();
                entry.last_eval_ms = record.at_ms;
                entry.last = Some(record.clone());
                // An evaluation that changes nothing is kept quietly: the
                // event stream carries decisions.
                if record.to == record.from {
                    return unchanged;
                }
                keep_decision(&mut entry.decisions, record);
                changes.push(Change::Scaling { job: job.into() });
            }
            ScaledBy::Hand => {
                if let Some(sc) = &j.spec.scaling {
                    if record.to < sc.min || record.to > sc.max {
                        return refuse(Refusal::Invalid, format!(
                            "job {job:?} scales between {} and {} (its scaling block): {} is outside; change scaling.min / scaling.max instead",
                            sc.min, sc.max, record.to
                        ));
                    }
                    let until = record
                        .at_ms
                        .saturating_add(crate::scaling::manual_suspension(sc).as_millis() as u64);
                    let entry = self.scaling.entry(job.to_string()).or_default();
                    entry.memory.manual_until_ms = until;
                    entry.memory.last_change_ms = record.at_ms;
                    // The same record again (a retried proposal) is kept
                    // once: the first made the count so, and `from` was
                    // rewritten to the count it found.
                    let again = entry.decisions.last().is_some_and(|d| {
                        d.by == ScaledBy::Hand
                            && d.at_ms == record.at_ms
                            && d.to == record.to
                            && d.reason == record.reason
                    });
                    if !again {
                        let mut record = record.clone();
                        record.from = current;
                        keep_decision(&mut entry.decisions, &record);
                        changes.push(Change::Scaling { job: job.into() });
                    }
                }
                if record.to == current {
                    return unchanged;
                }
            }
        }
        self.set_replicas(index, job, record.to, changes)
    }

    /// Sets a running job's count in place; going up, a deployment of its
    /// current version (when none is active) tracks the new instances, so
    /// they count only once healthy.
    fn set_replicas(
        &mut self,
        index: u64,
        job: &str,
        to: u32,
        changes: &mut Vec<Change>,
    ) -> Response {
        let Some(j) = self.jobs.get(job) else {
            return Response::Refused {
                refusal: Refusal::UnknownJob,
                reason: format!("no job named {job:?}"),
            };
        };
        let from = j.spec.replicas;
        let mut spec = j.spec.clone();
        spec.replicas = to;
        let r = self.upsert_job(index, &spec, changes);
        if to > from
            && spec.kind != crate::spec::JobKind::Batch
            && self.active_deployment(job).is_none()
        {
            self.start_deployment(index, job, changes);
            if let Some(d) = self.deployments.get_mut(job).and_then(|l| l.last_mut()) {
                d.description = format!("scaling up from {from} to {to}");
            }
            self.advance_deployment(index, job, changes);
        }
        r
    }
}

fn keep_decision(list: &mut Vec<ScalingRecord>, record: &ScalingRecord) {
    list.push(record.clone());
    let excess = list.len().saturating_sub(KEPT_DECISIONS);
    list.drain(..excess);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::command::{AllocUpdate, Command, Refusal, Response};
    use crate::model::{AllocState, DeploymentStatus};
    use crate::scaling::{
        observe, JobLoad, Metric, MetricSum, ScaledBy, ScalingMemory, ScalingPolicy, ScalingRecord,
        ScalingSpec,
    };
    use crate::scheduler::FilterScoreScheduler;
    use crate::spec::JobSpec;
    use crate::testing::fixtures::{job, node, StateBuilder};

    fn policy(min: u32, max: u32) -> ScalingSpec {
        ScalingSpec {
            min,
            max,
            policies: vec![ScalingPolicy::Target {
                metric: Metric::Cpu,
                value: 70.0,
            }],
            cooldown_up: Duration::from_secs(60),
            cooldown_down: Duration::from_secs(300),
            evaluation_interval: Duration::from_secs(15),
            stabilization_window: Duration::from_secs(300),
            tolerance: 0.1,
        }
    }

    fn scaling_job(replicas: u32) -> JobSpec {
        let mut spec = job("web", replicas, 0.1, 64);
        spec.scaling = Some(policy(2, 10));
        spec
    }

    /// Places what the reconciler asks for and reports every placed copy
    /// running (and, under a deployment, healthy when `healthy`).
    fn converge(b: &mut StateBuilder, healthy: bool) {
        for _ in 0..3 {
            let plan = crate::reconcile::plan(b.state(), &FilterScoreScheduler::default(), 100, 1);
            if !plan.is_empty() {
                b.apply(Command::ApplyPlan { plan });
            }
            let updates: Vec<AllocUpdate> = b
                .state()
                .allocs
                .values()
                .filter(|a| a.is_live() && a.node.is_some() && a.state != AllocState::Running)
                .map(|a| AllocUpdate {
                    deploy_healthy: (healthy && a.deployment.is_some()).then_some(true),
                    ..AllocUpdate::new(a.id.clone(), a.node.clone().unwrap(), AllocState::Running)
                })
                .collect();
            if !updates.is_empty() {
                b.apply(Command::UpdateAllocs { updates });
            }
        }
    }

    fn record(at_ms: u64, from: u32, to: u32) -> ScalingRecord {
        ScalingRecord {
            at_ms,
            from,
            to,
            reason: format!("up to {to}: cpu 140.0 against a target of 70"),
            by: ScaledBy::Policy,
            inputs: [("cpu".to_string(), 140.0)].into(),
            instances: from,
        }
    }

    fn scale(b: &mut StateBuilder, record: ScalingRecord) -> Response {
        b.apply(Command::Scale {
            job: "web".into(),
            memory: ScalingMemory {
                last_change_ms: record.at_ms,
                ..Default::default()
            },
            record,
        })
    }

    fn replicas(b: &StateBuilder) -> u32 {
        b.state().jobs["web"].spec.replicas
    }

    #[test]
    fn a_policy_step_goes_up_through_a_deployment_once_and_never_twice() {
        let mut b = StateBuilder::new().node(node("n1", 8.0, 8192));
        b.apply(Command::UpsertJob {
            spec: scaling_job(2),
        });
        converge(&mut b, true);
        assert_eq!(
            b.state().latest_deployment("web").unwrap().status,
            DeploymentStatus::Successful
        );
        let r = scale(&mut b, record(1_000, 2, 4));
        assert!(matches!(r, Response::Job { changed: true, .. }), "{r:?}");
        assert_eq!(replicas(&b), 4);
        let d = b.state().latest_deployment("web").unwrap().clone();
        assert_eq!(d.status, DeploymentStatus::Running);
        assert_eq!(d.description, "scaling up from 2 to 4");
        assert_eq!(d.desired, 4);
        // The same record again (a retried proposal) changes nothing.
        let again = scale(&mut b, record(1_000, 2, 4));
        assert!(
            matches!(again, Response::Job { changed: false, .. }),
            "{again:?}"
        );
        // A second leader's step made from the old count, or from an
        // evaluation no later than the committed one, is refused.
        let stale = scale(&mut b, record(2_000, 2, 4));
        assert!(
            matches!(&stale, Response::Refused { reason, .. } if reason.contains("runs 4 replicas now, not the 2")),
            "{stale:?}"
        );
        let early = scale(&mut b, record(900, 4, 6));
        assert!(
            matches!(&early, Response::Refused { reason, .. } if reason.contains("was evaluated at 1000 already")),
            "{early:?}"
        );
        assert_eq!(replicas(&b), 4);
        // The new instances are tracked by the deployment: not serving until
        // counted healthy.
        converge(&mut b, false);
        let job = b.state().jobs["web"].clone();
        assert_eq!(crate::scaling::serving(b.state(), &job).count(), 2);
        let ids: Vec<_> = b
            .state()
            .allocs_of_job("web")
            .filter(|a| a.deployment == Some(d.id))
            .map(|a| (a.id.clone(), a.node.clone().unwrap()))
            .collect();
        assert_eq!(ids.len(), 2, "the two new slots belong to the deployment");
        let updates = ids
            .into_iter()
            .map(|(id, n)| AllocUpdate {
                deploy_healthy: Some(true),
                ..AllocUpdate::new(id, n, AllocState::Running)
            })
            .collect();
        b.apply(Command::UpdateAllocs { updates });
        assert_eq!(crate::scaling::serving(b.state(), &job).count(), 4);
        assert_eq!(
            b.state().latest_deployment("web").unwrap().status,
            DeploymentStatus::Successful
        );
        let kept = &b.state().scaling["web"];
        assert_eq!(kept.decisions.len(), 1);
        assert_eq!(kept.last_eval_ms, 1_000);
        // Scaling down stops the newest slots (the highest).
        scale(&mut b, record(20_000, 4, 2));
        converge(&mut b, true);
        let mut slots: Vec<u32> = b
            .state()
            .allocs_of_job("web")
            .filter(|a| a.is_live())
            .map(|a| a.slot)
            .collect();
        slots.sort();
        assert_eq!(slots, [0, 1]);
    }

    #[test]
    fn an_evaluation_that_changes_nothing_keeps_its_memory_quietly() {
        let mut b = StateBuilder::new().node(node("n1", 8.0, 8192));
        b.apply(Command::UpsertJob {
            spec: scaling_job(2),
        });
        let version = b.state().jobs["web"].version;
        let mut hold = record(5_000, 2, 2);
        hold.reason = "holds at 2".into();
        assert!(matches!(
            scale(&mut b, hold),
            Response::Job { changed: false, .. }
        ));
        let kept = &b.state().scaling["web"];
        assert_eq!((kept.last_eval_ms, kept.decisions.len()), (5_000, 0));
        assert_eq!(b.state().jobs["web"].version, version, "no new version");
    }

    /// Found by the apply-twice property: a count set by hand, committed
    /// twice (a retried proposal), kept its decision twice — the second with
    /// `from` equal to `to`. It is kept once now.
    #[test]
    fn a_count_set_by_hand_committed_twice_is_kept_once() {
        let mut b = StateBuilder::new().node(node("n1", 8.0, 8192));
        b.apply(Command::UpsertJob {
            spec: scaling_job(2),
        });
        let hand = ScalingRecord {
            at_ms: 10_000,
            from: 0,
            to: 4,
            reason: "set by hand to 4".into(),
            by: ScaledBy::Hand,
            inputs: Default::default(),
            instances: 0,
        };
        let first = scale(&mut b, hand.clone());
        assert!(
            matches!(first, Response::Job { changed: true, .. }),
            "{first:?}"
        );
        let again = scale(&mut b, hand);
        assert!(
            matches!(again, Response::Job { changed: false, .. }),
            "{again:?}"
        );
        let kept = &b.state().scaling["web"];
        assert_eq!(kept.decisions.len(), 1, "{:?}", kept.decisions);
        assert_eq!((kept.decisions[0].from, kept.decisions[0].to), (2, 4));
        assert_eq!(replicas(&b), 4);
    }

    #[test]
    fn a_count_set_by_hand_suspends_the_policy_and_must_lie_within_its_bounds() {
        let mut b = StateBuilder::new().node(node("n1", 8.0, 8192));
        b.apply(Command::UpsertJob {
            spec: scaling_job(2),
        });
        let hand = |to| ScalingRecord {
            at_ms: 10_000,
            from: 0,
            to,
            reason: format!("set by hand to {to}"),
            by: ScaledBy::Hand,
            inputs: Default::default(),
            instances: 0,
        };
        let r = scale(&mut b, hand(11));
        assert!(
            matches!(&r, Response::Refused { reason, .. } if reason.contains("scales between 2 and 10") && reason.contains("11 is outside")),
            "{r:?}"
        );
        assert!(matches!(
            scale(&mut b, hand(5)),
            Response::Job { changed: true, .. }
        ));
        assert_eq!(replicas(&b), 5);
        let kept = &b.state().scaling["web"];
        // 300 s: the longer of the cooldowns.
        assert_eq!(kept.memory.manual_until_ms, 310_000);
        assert_eq!(kept.decisions[0].from, 2);
        assert_eq!(kept.decisions[0].by, ScaledBy::Hand);
        // A job without a policy is scaled by hand the same way.
        b.apply(Command::UpsertJob {
            spec: job("plain", 1, 0.1, 64),
        });
        let r = b.apply(Command::Scale {
            job: "plain".into(),
            record: hand(3),
            memory: Default::default(),
        });
        assert!(matches!(r, Response::Job { changed: true, .. }), "{r:?}");
        assert_eq!(b.state().jobs["plain"].spec.replicas, 3);
        assert!(!b.state().scaling.contains_key("plain"));
        let r = b.apply(Command::Scale {
            job: "nope".into(),
            record: hand(3),
            memory: Default::default(),
        });
        assert!(matches!(
            &r,
            Response::Refused {
                refusal: Refusal::UnknownJob,
                ..
            }
        ));
    }

    #[test]
    fn a_spec_submitted_again_keeps_the_count_the_job_scaled_to() {
        let mut b = StateBuilder::new().node(node("n1", 8.0, 8192));
        // A new job starts within its bounds.
        b.apply(Command::UpsertJob {
            spec: scaling_job(1),
        });
        assert_eq!(replicas(&b), 2);
        scale(&mut b, record(1_000, 2, 7));
        // Submitted again with another image and its old replicas: the
        // count stays, and the same spec again is no change.
        let mut spec = scaling_job(2);
        spec.task.image = "orion-test/web:2".into();
        b.apply(Command::UpsertJob { spec: spec.clone() });
        assert_eq!(replicas(&b), 7);
        let r = b.apply(Command::UpsertJob { spec: spec.clone() });
        assert!(matches!(r, Response::Job { changed: false, .. }), "{r:?}");
        // New bounds below the count bring it down to them.
        spec.scaling = Some(policy(1, 4));
        b.apply(Command::UpsertJob { spec });
        assert_eq!(replicas(&b), 4);
        // Stopped and purged: its scaling state goes with it.
        b.apply(Command::StopJob {
            name: "web".into(),
            purge: true,
        });
        assert!(b.state().scaling.is_empty());
    }

    #[test]
    fn observations_average_fresh_reports_over_the_serving_instances() {
        let mut b = StateBuilder::new()
            .node(node("n1", 8.0, 8192))
            .node(node("n2", 8.0, 8192));
        b.apply(Command::UpsertJob {
            spec: scaling_job(4),
        });
        converge(&mut b, true);
        let job = b.state().jobs["web"].clone();
        let load = |at_ms, cpu: f64, n, rps| JobLoad {
            at_ms,
            metrics: [
                (Metric::Cpu, MetricSum { sum: cpu, n }),
                (Metric::RequestsPerSecond, MetricSum { sum: rps, n: 0 }),
            ]
            .into(),
        };
        let (n1, n2, gone) = ("n1".to_string(), "n2".to_string(), "n9".to_string());
        let fresh1 = load(100_000, 180.0, 2, 40.0);
        let fresh2 = load(99_000, 100.0, 2, 20.0);
        let stale = load(10_000, 1000.0, 2, 1000.0);
        let (obs, serving) = observe(
            b.state(),
            &job,
            [(&n1, &fresh1), (&n2, &fresh2), (&gone, &stale)],
            100_000,
            30_000,
        );
        assert_eq!(serving, 4);
        assert_eq!(obs.current, 4);
        assert_eq!(obs.metrics[&Metric::Cpu], 70.0);
        // 60 requests/s through the balancers, over 4 instances.
        assert_eq!(obs.metrics[&Metric::RequestsPerSecond], 15.0);
        // A stale report is left out.
        let (obs, _) = observe(b.state(), &job, [(&n1, &stale)], 100_000, 30_000);
        assert!(obs.metrics.is_empty(), "{obs:?}");
    }
}
