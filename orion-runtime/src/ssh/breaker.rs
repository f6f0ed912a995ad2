//! The circuit breaker on connection attempts: closed, open until a moment,
//! half-open for one trial. Pure: the caller passes the time in.

use std::time::{Duration, Instant};

/// What the breaker lets through, as [`SshRuntime::breaker`](super::SshRuntime::breaker)
/// reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Connection attempts go through.
    Closed,
    /// Attempts fail fast until `until`.
    Open {
        /// When one trial attempt will be let through.
        until: Instant,
    },
    /// The open period is over: the next attempt is a trial; its success
    /// closes the breaker, its failure opens it again.
    HalfOpen,
}

/// Counts consecutive connection failures and decides whether an attempt may
/// be made.
#[derive(Debug)]
pub(crate) struct Breaker {
    /// Failures in a row that open it.
    threshold: u32,
    /// How long it stays open.
    open_for: Duration,
    /// Consecutive failures so far.
    failures: u32,
    /// Set while open or half-open: the end of the open period.
    open_until: Option<Instant>,
    /// Whether a half-open trial is under way (others are refused meanwhile).
    trial: bool,
    /// The last failure's message, for the refusal.
    last_error: String,
}

impl Breaker {
    /// A closed breaker.
    pub(crate) fn new(threshold: u32, open_for: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            open_for,
            failures: 0,
            open_until: None,
            trial: false,
            last_error: String::new(),
        }
    }

    /// Its state at `now`.
    pub(crate) fn state(&self, now: Instant) -> BreakerState {
        match self.open_until {
            None => BreakerState::Closed,
            Some(until) if now < until => BreakerState::Open { until },
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// Whether an attempt may be made at `now`; `Err` carries the count and
    /// the last failure for the refusal. A half-open breaker lets one through.
    pub(crate) fn admit(&mut self, now: Instant) -> Result<(), (u32, String)> {
        match self.state(now) {
            BreakerState::Closed => Ok(()),
            BreakerState::HalfOpen if !self.trial => {
                self.trial = true;
                Ok(())
            }
            _ => Err((self.failures, self.last_error.clone())),
        }
    }

    /// An attempt succeeded: closed, count reset.
    pub(crate) fn succeeded(&mut self) {
        self.failures = 0;
        self.open_until = None;
        self.trial = false;
    }

    /// An admitted attempt was given up before it ended: nothing is counted,
    /// and a half-open breaker lets the next caller make the trial.
    pub(crate) fn abandoned(&mut self) {
        self.trial = false;
    }

    /// An attempt failed at `now`: opens after `threshold` in a row, and at
    /// once when it was the half-open trial.
    pub(crate) fn failed(&mut self, now: Instant, error: &str) {
        self.failures = self.failures.saturating_add(1);
        self.last_error = error.to_string();
        self.trial = false;
        if self.open_until.is_some() || self.failures >= self.threshold {
            self.open_until = Some(now + self.open_for);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_fails_fast() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, Duration::from_secs(10));
        for _ in 0..2 {
            assert!(b.admit(t0).is_ok());
            b.failed(t0, "refused");
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
        b.failed(t0, "refused again");
        let until = t0 + Duration::from_secs(10);
        assert_eq!(b.state(t0), BreakerState::Open { until });
        assert_eq!(b.admit(t0), Err((3, "refused again".into())));
    }

    #[test]
    fn half_open_lets_one_trial_through() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, Duration::from_secs(1));
        b.failed(t0, "down");
        let later = t0 + Duration::from_secs(2);
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        assert!(b.admit(later).is_ok(), "the trial");
        assert!(
            b.admit(later).is_err(),
            "a second caller waits for the trial"
        );
        b.failed(later, "still down");
        assert!(matches!(b.state(later), BreakerState::Open { .. }));
        let after = later + Duration::from_secs(2);
        assert!(b.admit(after).is_ok());
        b.succeeded();
        assert_eq!(b.state(after), BreakerState::Closed);
        assert!(b.admit(after).is_ok());
    }

    #[test]
    fn an_abandoned_trial_frees_the_next_one() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, Duration::from_secs(1));
        b.failed(t0, "down");
        let later = t0 + Duration::from_secs(2);
        assert!(b.admit(later).is_ok());
        b.abandoned();
        assert!(b.admit(later).is_ok(), "another trial");
    }

    #[test]
    fn a_success_resets_the_count() {
        let t0 = Instant::now();
        let mut b = Breaker::new(2, Duration::from_secs(1));
        b.failed(t0, "x");
        b.succeeded();
        b.failed(t0, "x");
        assert_eq!(b.state(t0), BreakerState::Closed);
    }
}
