//! The linearizability check of the job store: each job is a register (the
//! value of its last write, and whether it runs), and linearizability is
//! local, so each job's sub-history is checked on its own with a
//! Wing–Gong–Lowe checker (`todc-utils`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use todc_utils::linearizability::history::{Action, History};
use todc_utils::linearizability::WGLChecker;
use todc_utils::specifications::Specification;

use crate::history::{Call, JobState, Op, Outcome};

/// One operation as the model applies it: the call with what it returned.
#[derive(Clone, Copy, Debug)]
pub enum ModelOp {
    /// A write acknowledged, or of unknown outcome (it may take effect).
    Write(u32),
    /// A read that returned this state.
    Read(JobState),
    /// A stop acknowledged (the job existed), or of unknown outcome.
    Stop {
        /// Whether it was acknowledged (else its outcome is unknown).
        acknowledged: bool,
    },
    /// A stop answered "no such job".
    StopNotFound,
}

/// The sequential specification of one job of the store.
pub struct JobSpec;

impl Specification for JobSpec {
    type State = JobState;
    type Operation = ModelOp;

    fn init() -> JobState {
        None
    }

    fn apply(op: &ModelOp, state: &JobState) -> (bool, JobState) {
        match *op {
            ModelOp::Write(v) => (true, Some((v, true))),
            ModelOp::Read(seen) => (seen == *state, *state),
            ModelOp::Stop { acknowledged } => match state {
                Some((v, _)) => (true, Some((*v, false))),
                // A stop of a job that does not exist is refused: an
                // acknowledged one cannot go here, an unknown one did nothing.
                None => (!acknowledged, None),
            },
            ModelOp::StopNotFound => (state.is_none(), *state),
        }
    }
}

/// What the check found for one job.
#[derive(Clone, Debug)]
pub struct KeyResult {
    /// The job.
    pub key: String,
    /// Operations checked (after dropping those that certainly did nothing).
    pub checked: usize,
    /// Writes of unknown outcome whose value no read saw, dropped (see
    /// [`prune`]).
    pub pruned: usize,
    /// Whether its history is linearizable.
    pub linearizable: bool,
}

/// Operations of one job that the model needs: the certainly failed ones did
/// nothing and go; a write of unknown outcome whose value no read returned,
/// made after an acknowledged write of the job had completed, goes too: the
/// job existed before it and no read depends on it, so a linearization
/// without it is one with it placed last (its response is at the end), and
/// the converse search only grows. Keeping them makes the search exponential
/// in their number.
pub fn prune(ops: &[Op]) -> (Vec<Op>, usize) {
    let seen: BTreeSet<u32> = ops
        .iter()
        .filter_map(|o| match o.outcome {
            Outcome::Read(Some((v, _))) => Some(v),
            _ => None,
        })
        .collect();
    let first_ack = ops
        .iter()
        .filter(|o| matches!(o.call, Call::Write(_)) && o.outcome == Outcome::Ok)
        .map(|o| o.completed)
        .min();
    let mut pruned = 0;
    let kept = ops
        .iter()
        .filter(|o| {
            if o.outcome == Outcome::Failed {
                return false;
            }
            if let (Call::Write(v), Outcome::Unknown) = (o.call, o.outcome) {
                if !seen.contains(&v) && first_ack.is_some_and(|t| t < o.invoked) {
                    pruned += 1;
                    return false;
                }
            }
            true
        })
        .cloned()
        .collect();
    (kept, pruned)
}

fn model_op(op: &Op) -> ModelOp {
    match (op.call, op.outcome) {
        (Call::Write(v), _) => ModelOp::Write(v),
        (Call::Read, Outcome::Read(s)) => ModelOp::Read(s),
        (Call::Stop, Outcome::NotFound) => ModelOp::StopNotFound,
        (Call::Stop, o) => ModelOp::Stop {
            acknowledged: o == Outcome::Ok,
        },
        (Call::Read, o) => panic!("a read that returned nothing ({o:?}) is not checked"),
    }
}

/// Whether one job's operations are linearizable. Operations of unknown
/// outcome complete after every other (they never answered).
pub fn linearizable(ops: &[Op]) -> bool {
    if ops.is_empty() {
        return true;
    }
    // (time, 0 = call / 1 = response, index): at equal times calls go first,
    // which makes the two operations concurrent (the lenient reading).
    let mut marks: Vec<(Duration, u8, usize)> = Vec::new();
    for (i, o) in ops.iter().enumerate() {
        marks.push((o.invoked, 0, i));
        let done = if o.outcome == Outcome::Unknown {
            Duration::MAX
        } else {
            o.completed
        };
        marks.push((done, 1, i));
    }
    marks.sort();
    let actions: Vec<(usize, Action<ModelOp>)> = marks
        .into_iter()
        .map(|(_, kind, i)| {
            let op = model_op(&ops[i]);
            let action = if kind == 0 {
                Action::Call(op)
            } else {
                Action::Response(op)
            };
            (ops[i].process, action)
        })
        .collect();
    WGLChecker::<JobSpec>::is_linearizable(History::from_actions(actions))
}

/// Checks every job's sub-history.
pub fn check(ops: &[Op]) -> Vec<KeyResult> {
    let mut by_key: BTreeMap<&str, Vec<Op>> = BTreeMap::new();
    for o in ops {
        by_key.entry(&o.key).or_default().push(o.clone());
    }
    by_key
        .into_iter()
        .map(|(key, ops)| {
            let (kept, pruned) = prune(&ops);
            KeyResult {
                key: key.to_string(),
                checked: kept.len(),
                pruned,
                linearizable: linearizable(&kept),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(process: usize, call: Call, at: (u64, u64), outcome: Outcome) -> Op {
        Op {
            client: process,
            process,
            key: "k".into(),
            node: "n".into(),
            call,
            invoked: Duration::from_millis(at.0),
            completed: Duration::from_millis(at.1),
            outcome,
            detail: String::new(),
        }
    }

    #[test]
    fn sequential_writes_and_reads_pass_and_a_stale_read_fails() {
        let mut h = vec![
            op(0, Call::Write(1), (0, 10), Outcome::Ok),
            op(0, Call::Write(2), (20, 30), Outcome::Ok),
            op(1, Call::Read, (40, 50), Outcome::Read(Some((2, true)))),
        ];
        assert!(linearizable(&h));
        // A read after the second write completed returns the first value.
        h.push(op(1, Call::Read, (60, 70), Outcome::Read(Some((1, true)))));
        assert!(!linearizable(&h));
    }

    #[test]
    fn a_read_concurrent_with_a_write_may_see_either_value() {
        let h = vec![
            op(0, Call::Write(1), (0, 10), Outcome::Ok),
            op(0, Call::Write(2), (20, 100), Outcome::Ok),
            op(1, Call::Read, (30, 40), Outcome::Read(Some((2, true)))),
            op(2, Call::Read, (50, 60), Outcome::Read(Some((2, true)))),
        ];
        assert!(linearizable(&h));
        // ...but once one read saw the new value a later one cannot see the old.
        let h = vec![
            op(0, Call::Write(1), (0, 10), Outcome::Ok),
            op(0, Call::Write(2), (20, 100), Outcome::Ok),
            op(1, Call::Read, (30, 40), Outcome::Read(Some((2, true)))),
            op(2, Call::Read, (50, 60), Outcome::Read(Some((1, true)))),
        ];
        assert!(!linearizable(&h));
    }

    #[test]
    fn an_unknown_write_may_take_effect_late_or_never() {
        let late = vec![
            op(0, Call::Write(1), (0, 10), Outcome::Ok),
            op(0, Call::Write(2), (20, 30), Outcome::Unknown),
            op(1, Call::Read, (40, 50), Outcome::Read(Some((1, true)))),
            op(1, Call::Read, (60, 70), Outcome::Read(Some((2, true)))),
        ];
        assert!(linearizable(&late));
        // Once it was seen, the value before it cannot come back.
        let mut back = late.clone();
        back.push(op(1, Call::Read, (80, 90), Outcome::Read(Some((1, true)))));
        assert!(!linearizable(&back));
        // A lost acknowledged write: the later read sees the value before it.
        let lost = vec![
            op(0, Call::Write(1), (0, 10), Outcome::Ok),
            op(0, Call::Write(2), (20, 30), Outcome::Ok),
            op(1, Call::Read, (40, 50), Outcome::Read(Some((1, true)))),
        ];
        assert!(!linearizable(&lost));
    }

    #[test]
    fn stops_keep_the_value_and_not_found_means_no_job() {
        let h = vec![
            op(0, Call::Stop, (0, 10), Outcome::NotFound),
            op(0, Call::Write(7), (20, 30), Outcome::Ok),
            op(0, Call::Stop, (40, 50), Outcome::Ok),
            op(1, Call::Read, (60, 70), Outcome::Read(Some((7, false)))),
        ];
        assert!(linearizable(&h));
        let wrong = vec![
            op(0, Call::Write(7), (0, 10), Outcome::Ok),
            op(0, Call::Stop, (20, 30), Outcome::NotFound),
        ];
        assert!(!linearizable(&wrong));
        let still_running = vec![
            op(0, Call::Write(7), (0, 10), Outcome::Ok),
            op(0, Call::Stop, (20, 30), Outcome::Ok),
            op(1, Call::Read, (40, 50), Outcome::Read(Some((7, true)))),
        ];
        assert!(!linearizable(&still_running));
    }

    #[test]
    fn unobserved_unknown_writes_after_an_acknowledged_one_are_pruned() {
        let h = vec![
            op(0, Call::Write(1), (0, 10), Outcome::Ok),
            op(0, Call::Write(2), (20, 30), Outcome::Unknown),
            op(1, Call::Write(3), (25, 35), Outcome::Unknown),
            op(2, Call::Read, (40, 50), Outcome::Read(Some((3, true)))),
            op(3, Call::Write(4), (40, 50), Outcome::Failed),
        ];
        let (kept, pruned) = prune(&h);
        assert_eq!(pruned, 1, "only the unseen unknown write goes");
        assert_eq!(kept.len(), 3, "the failed write goes too");
        assert!(kept.iter().all(|o| o.call != Call::Write(2)));
        assert!(linearizable(&kept));
        // An unknown write before any acknowledged one stays: a stop may
        // depend on it having created the job.
        let early = vec![
            op(0, Call::Write(1), (0, 10), Outcome::Unknown),
            op(1, Call::Stop, (20, 30), Outcome::Ok),
        ];
        let (kept, pruned) = prune(&early);
        assert_eq!((kept.len(), pruned), (2, 0));
        assert!(linearizable(&kept));
    }

    #[test]
    fn check_splits_by_job() {
        let mut a = op(0, Call::Write(1), (0, 10), Outcome::Ok);
        a.key = "a".into();
        let mut b = op(1, Call::Read, (20, 30), Outcome::Read(Some((1, true))));
        b.key = "b".into();
        let results = check(&[a, b]);
        assert_eq!(results.len(), 2);
        assert!(results[0].linearizable, "a: one write");
        assert!(!results[1].linearizable, "b read a value written to a");
    }
}
