//! The leader's side of periodic jobs: which ticks are due, as commands.
//! Pure: the state machine ([`crate::state`]) decides what a tick does
//! (launch, skip under `forbid`, stop the old run under `replace`) and refuses
//! a tick twice, so a leader change neither loses nor repeats one.

use crate::command::Command;
use crate::model::JobStatus;
use crate::state::ClusterState;

/// Most ticks of one job handled in one pass (a long outage catches up over
/// several passes).
const MAX_TICKS_PER_PASS: usize = 1000;

/// The commands the leader proposes at `now_ms`, in order: a clock for each
/// periodic job that has none (its ticks start now), then for each job the
/// ticks due since its last one — those past their `starting_deadline`
/// recorded as one missed tick (the latest), the others launched in order.
pub fn due(state: &ClusterState, now_ms: u64) -> Vec<Command> {
    let mut out = Vec::new();
    for job in state.jobs.values() {
        let Some(sched) = job.spec.schedule.as_ref() else {
            continue;
        };
        if job.status != JobStatus::Running {
            continue;
        }
        let name = &job.spec.name;
        let Some(clock) = state.periodic.get(name) else {
            out.push(Command::PeriodicStart {
                job: name.clone(),
                since_ms: now_ms,
            });
            continue;
        };
        let deadline = sched.starting_deadline.as_millis() as u64;
        let ticks = sched.ticks(clock.last_tick_ms, now_ms, MAX_TICKS_PER_PASS);
        let (stale, fresh): (Vec<u64>, Vec<u64>) = ticks
            .into_iter()
            .partition(|t| now_ms.saturating_sub(*t) > deadline);
        if let Some(last) = stale.last() {
            out.push(Command::PeriodicTick {
                job: name.clone(),
                tick_ms: *last,
                missed: true,
            });
        }
        out.extend(fresh.into_iter().map(|t| Command::PeriodicTick {
            job: name.clone(),
            tick_ms: t,
            missed: false,
        }));
    }
    out
}

/// The next `n` launch times of periodic job `job` (Unix ms), after its last
/// tick or now, whichever is later.
pub fn next_launches(state: &ClusterState, job: &str, now_ms: u64, n: usize) -> Vec<u64> {
    let Some(j) = state.jobs.get(job) else {
        return Vec::new();
    };
    let Some(sched) = &j.spec.schedule else {
        return Vec::new();
    };
    let after = state
        .periodic
        .get(job)
        .map_or(now_ms, |p| p.last_tick_ms.max(now_ms));
    sched.next(after, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Concurrency, JobKind, JobSpec};
    use crate::state::Change;

    const T0: u64 = 1_767_600_000_000; // 2026-01-05 08:00:00 UTC

    fn periodic(name: &str, cron: &str, concurrency: Concurrency) -> JobSpec {
        let mut spec = JobSpec::service(name, "img:1").resources(0.1, 32);
        spec.kind = JobKind::Batch;
        spec.schedule = Some(
            serde_json::from_value(serde_json::json!({
                "cron": cron, "concurrency": concurrency, "starting_deadline": "10s",
                "history": { "successful": 2, "failed": 1 }
            }))
            .unwrap(),
        );
        spec
    }

    struct S {
        state: ClusterState,
        index: u64,
    }

    impl S {
        fn new() -> S {
            S {
                state: ClusterState::default(),
                index: 0,
            }
        }
        fn apply(&mut self, cmd: Command) -> crate::command::Response {
            self.index += 1;
            let (r, _changes): (_, Vec<Change>) = self.state.apply(self.index, &cmd);
            r
        }
        fn run_all(&mut self, now: u64) -> Vec<crate::command::Response> {
            let cmds = due(&self.state, now);
            cmds.into_iter().map(|c| self.apply(c)).collect()
        }
        fn runs(&self, job: &str) -> Vec<String> {
            self.state
                .periodic_runs(job)
                .iter()
                .map(|j| j.spec.name.clone())
                .collect()
        }
    }

    #[test]
    fn ticks_launch_once_each_in_order_whoever_proposes_them() {
        let mut s = S::new();
        s.apply(Command::UpsertJob {
            spec: periodic("rep", "*/2 * * * * *", Concurrency::Allow),
        });
        s.run_all(T0); // starts the clock
        assert!(s.runs("rep").is_empty());
        s.run_all(T0 + 5_000);
        assert_eq!(
            s.runs("rep"),
            ["rep-periodic-1767600002", "rep-periodic-1767600004"]
        );
        // A second leader proposing the same ticks again: refused, nothing new.
        for t in [T0 + 2_000, T0 + 4_000] {
            let r = s.apply(Command::PeriodicTick {
                job: "rep".into(),
                tick_ms: t,
                missed: false,
            });
            assert!(
                matches!(r, crate::command::Response::Refused { .. }),
                "{r:?}"
            );
        }
        assert_eq!(s.runs("rep").len(), 2);
        // The parent places nothing; its runs are batch jobs with its task.
        let run = &s.state.jobs["rep-periodic-1767600002"];
        assert_eq!(run.parent.as_deref(), Some("rep"));
        assert!(run.spec.schedule.is_none());
        assert_eq!(run.spec.kind, JobKind::Batch);
        let intent = crate::reconcile::intent(&s.state, 100);
        assert!(intent.requests.iter().all(|r| r.job != "rep"));
        assert!(intent
            .requests
            .iter()
            .any(|r| r.job == "rep-periodic-1767600002"));
    }

    #[test]
    fn ticks_past_the_deadline_are_recorded_missed_and_the_rest_launch() {
        let mut s = S::new();
        s.apply(Command::UpsertJob {
            spec: periodic("rep", "*/2 * * * * *", Concurrency::Allow),
        });
        s.run_all(T0);
        // 30 s without a leader: ticks older than 10 s are missed, as one record.
        let cmds = due(&s.state, T0 + 30_000);
        let missed: Vec<_> = cmds
            .iter()
            .filter(|c| matches!(c, Command::PeriodicTick { missed: true, .. }))
            .collect();
        assert_eq!(missed.len(), 1);
        s.run_all(T0 + 30_000);
        let runs = s.runs("rep");
        assert_eq!(
            runs.first().map(String::as_str),
            Some("rep-periodic-1767600020")
        );
        assert_eq!(runs.len(), 6, "{runs:?}"); // 20, 22, .., 30
        let skipped = &s.state.periodic["rep"].skipped;
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].reason.contains("starting_deadline"));
    }

    #[test]
    fn forbid_skips_while_a_run_lives_and_replace_stops_it() {
        let mut s = S::new();
        s.apply(Command::UpsertJob {
            spec: periodic("fb", "*/2 * * * * *", Concurrency::Forbid),
        });
        s.apply(Command::UpsertJob {
            spec: periodic("rp", "*/2 * * * * *", Concurrency::Replace),
        });
        s.run_all(T0);
        s.run_all(T0 + 2_000);
        s.run_all(T0 + 4_000);
        assert_eq!(s.runs("fb"), ["fb-periodic-1767600002"]);
        let skip = &s.state.periodic["fb"].skipped[0];
        assert_eq!(skip.tick_ms, T0 + 4_000);
        assert!(
            skip.reason.contains("fb-periodic-1767600002 still running"),
            "{skip:?}"
        );
        assert_eq!(s.runs("rp").len(), 2);
        let first = &s.state.jobs["rp-periodic-1767600002"];
        assert_eq!(first.status, JobStatus::Stopped, "replaced");
        assert_eq!(
            s.state.jobs["rp-periodic-1767600004"].status,
            JobStatus::Running
        );
    }

    #[test]
    fn force_launches_now_and_bad_targets_are_refused() {
        let mut s = S::new();
        s.apply(Command::UpsertJob {
            spec: periodic("rep", "0 0 1 1 *", Concurrency::Allow),
        });
        let r = s.apply(Command::PeriodicForce {
            job: "rep".into(),
            now_ms: T0 + 1_234,
        });
        assert!(matches!(r, crate::command::Response::Job { .. }), "{r:?}");
        assert_eq!(s.runs("rep"), ["rep-periodic-1767600001234"]);
        let again = s.apply(Command::PeriodicForce {
            job: "rep".into(),
            now_ms: T0 + 1_234,
        });
        assert!(matches!(again, crate::command::Response::Refused { .. }));
        s.apply(Command::UpsertJob {
            spec: JobSpec::service("web", "img:1").resources(0.1, 32),
        });
        for job in ["web", "nope"] {
            let r = s.apply(Command::PeriodicForce {
                job: job.into(),
                now_ms: T0,
            });
            assert!(
                matches!(r, crate::command::Response::Refused { .. }),
                "{job}"
            );
        }
        assert_eq!(
            next_launches(&s.state, "rep", T0, 2),
            [1_798_761_600_000, 1_830_297_600_000]
        );
    }
}
