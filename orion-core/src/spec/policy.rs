//! A job's lifecycle policies: how a new version rolls out (`update`), how a
//! task that exits or turns unhealthy is restarted in place (`restart`), and how
//! an allocation whose restarts are spent is replaced (`reschedule`).
//!
//! All three sit on the job, not the task: changing a policy changes how Orion
//! treats the containers, not what runs in them, so it is made in place and
//! starts no new container.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which comes first when an allocation is replaced by a new version.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum UpdateOrder {
    /// Stop the old copy, then start the new one: never more copies than
    /// `replicas` (and their resources) at once.
    #[default]
    StopFirst,
    /// Start the new copy beside the old one and stop the old one once the new
    /// one counts as healthy: never fewer healthy copies than `replicas`.
    StartFirst,
}

/// How a new version of a service job replaces the running one (Nomad's
/// `update` block, Swarm's `update_config`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSpec {
    /// At most this many allocations are being replaced at once. Default 1.
    #[serde(default = "defaults::max_parallel")]
    pub max_parallel: u32,
    /// A new allocation counts once it has been healthy (running, for a task
    /// without checks) this long without a break. Default 10 s.
    #[serde(default = "defaults::min_healthy_time", with = "humantime_serde")]
    #[schema(value_type = String)]
    pub min_healthy_time: Duration,
    /// A new allocation not counted by then fails the deployment. Default 5 min.
    #[serde(default = "defaults::healthy_deadline", with = "humantime_serde")]
    #[schema(value_type = String)]
    pub healthy_deadline: Duration,
    /// A deployment in which no allocation has come to count for this long
    /// fails (it covers an update that cannot be placed). Default 10 min.
    #[serde(default = "defaults::progress_deadline", with = "humantime_serde")]
    #[schema(value_type = String)]
    pub progress_deadline: Duration,
    /// A failed deployment puts the job back to its last stable version, as a
    /// new version and deployment. Default false.
    #[serde(default)]
    pub auto_revert: bool,
    /// New allocations started beside the old set, which waits for a promotion
    /// before the rollout goes on. `canary: replicas` is blue-green. Default 0.
    #[serde(default)]
    pub canary: u32,
    /// Promote the canaries once all of them count as healthy. Default false.
    #[serde(default)]
    pub auto_promote: bool,
    /// Stop first or start first. Default stop_first.
    #[serde(default)]
    pub order: UpdateOrder,
    /// System jobs: the pause between one node's update and the next.
    /// Default 30 s.
    #[serde(default = "defaults::stagger", with = "humantime_serde")]
    #[schema(value_type = String)]
    pub stagger: Duration,
}

/// What a task's restarts back off by.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    /// The same delay every time.
    #[default]
    Constant,
    /// The delay doubles with each restart in the interval, up to `max_delay`.
    Exponential,
}

/// What happens once a task's restarts in the interval are spent.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RestartMode {
    /// The allocation fails, and the `reschedule` policy replaces it.
    #[default]
    Fail,
    /// Wait until the interval has passed and restart again, on the same node.
    Delay,
}

/// How a task that exits, is OOM-killed or turns unhealthy is restarted in
/// place (Nomad's `restart` block; its service defaults).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestartSpec {
    /// Restarts allowed within `interval`. Default 2.
    #[serde(default = "defaults::restart_attempts")]
    pub attempts: u32,
    /// The window restarts are counted in. Default 30 min.
    #[serde(default = "defaults::restart_interval", with = "humantime_serde")]
    #[schema(value_type = String)]
    pub interval: Duration,
    /// Wait before a restart. Default 15 s.
    #[serde(default = "defaults::restart_delay", with = "humantime_serde")]
    #[schema(value_type = String)]
    pub delay: Duration,
    /// Fail (then reschedule) or wait out the interval. Default fail.
    #[serde(default)]
    pub mode: RestartMode,
    /// Constant or exponential. Default constant.
    #[serde(default)]
    pub backoff: Backoff,
    /// Longest delay, for exponential backoff. Default 5 min.
    #[serde(default = "defaults::restart_max_delay", with = "humantime_serde")]
    #[schema(value_type = String)]
    pub max_delay: Duration,
}

/// How delays between reschedules grow.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum DelayFunction {
    /// The same delay every time.
    Constant,
    /// Doubling.
    #[default]
    Exponential,
    /// 1, 1, 2, 3, 5, … times the delay.
    Fibonacci,
}

/// How an allocation whose restarts are spent is replaced (Nomad's
/// `reschedule` block; its service defaults).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RescheduleSpec {
    /// Wait before the first replacement. Default 30 s.
    #[serde(default = "defaults::reschedule_delay", with = "humantime_serde")]
    #[schema(value_type = String)]
    pub delay: Duration,
    /// Constant, exponential or fibonacci. Default exponential.
    #[serde(default)]
    pub delay_function: DelayFunction,
    /// Longest delay. Default 1 h.
    #[serde(default = "defaults::reschedule_max_delay", with = "humantime_serde")]
    #[schema(value_type = String)]
    pub max_delay: Duration,
    /// Replace without limit. Default true (for services).
    #[serde(default = "defaults::unlimited")]
    pub unlimited: bool,
    /// Replacements allowed within `interval` when not unlimited. Default 0.
    #[serde(default)]
    pub attempts: u32,
    /// The window `attempts` are counted in. Default 24 h.
    #[serde(default = "defaults::reschedule_interval", with = "humantime_serde")]
    #[schema(value_type = String)]
    pub interval: Duration,
}

impl Default for UpdateSpec {
    fn default() -> Self {
        UpdateSpec {
            max_parallel: defaults::max_parallel(),
            min_healthy_time: defaults::min_healthy_time(),
            healthy_deadline: defaults::healthy_deadline(),
            progress_deadline: defaults::progress_deadline(),
            auto_revert: false,
            canary: 0,
            auto_promote: false,
            order: UpdateOrder::StopFirst,
            stagger: defaults::stagger(),
        }
    }
}

impl Default for RestartSpec {
    fn default() -> Self {
        RestartSpec {
            attempts: defaults::restart_attempts(),
            interval: defaults::restart_interval(),
            delay: defaults::restart_delay(),
            mode: RestartMode::Fail,
            backoff: Backoff::Constant,
            max_delay: defaults::restart_max_delay(),
        }
    }
}

impl Default for RescheduleSpec {
    fn default() -> Self {
        RescheduleSpec {
            delay: defaults::reschedule_delay(),
            delay_function: DelayFunction::Exponential,
            max_delay: defaults::reschedule_max_delay(),
            unlimited: defaults::unlimited(),
            attempts: 0,
            interval: defaults::reschedule_interval(),
        }
    }
}

/// The defaults of the policies, with why.
pub mod defaults {
    use std::time::Duration;

    /// 1: Nomad's and Swarm's default; the slowest, and the safest.
    pub fn max_parallel() -> u32 {
        1
    }
    /// 10 s: Nomad's default; a task that crashes on its first requests shows it
    /// within seconds.
    pub fn min_healthy_time() -> Duration {
        Duration::from_secs(10)
    }
    /// 5 min: Nomad's default; room for an image pull and a slow start.
    pub fn healthy_deadline() -> Duration {
        Duration::from_secs(300)
    }
    /// 10 min: Nomad's default; twice the healthy deadline, so one slow
    /// allocation does not fail the whole deployment.
    pub fn progress_deadline() -> Duration {
        Duration::from_secs(600)
    }
    /// 30 s: Nomad's default for system jobs.
    pub fn stagger() -> Duration {
        Duration::from_secs(30)
    }
    /// 2: Nomad's service default; a crash or two is survived in place.
    pub fn restart_attempts() -> u32 {
        2
    }
    /// 30 min: Nomad's service default.
    pub fn restart_interval() -> Duration {
        Duration::from_secs(1800)
    }
    /// 15 s: Nomad's default; a crash loop cannot spin the engine.
    pub fn restart_delay() -> Duration {
        Duration::from_secs(15)
    }
    /// 5 min: a crash loop with exponential backoff settles at a few
    /// restarts an hour.
    pub fn restart_max_delay() -> Duration {
        Duration::from_secs(300)
    }
    /// 30 s: Nomad's service default.
    pub fn reschedule_delay() -> Duration {
        Duration::from_secs(30)
    }
    /// 1 h: Nomad's service default.
    pub fn reschedule_max_delay() -> Duration {
        Duration::from_secs(3600)
    }
    /// true: a service is replaced as long as it is wanted.
    pub fn unlimited() -> bool {
        true
    }
    /// 24 h: Nomad's batch default window.
    pub fn reschedule_interval() -> Duration {
        Duration::from_secs(86400)
    }
}

impl UpdateSpec {
    /// Every problem with it, as (field under `at`, problem).
    pub fn problems(&self, at: &str, replicas: u32) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |f: &str, p: String| out.push((format!("{at}.{f}"), p));
        if self.max_parallel == 0 {
            bad("max_parallel", "must be at least 1".into());
        }
        if self.canary > replicas {
            bad(
                "canary",
                format!("{} is more than the {replicas} replicas", self.canary),
            );
        }
        for (f, d) in [
            ("healthy_deadline", self.healthy_deadline),
            ("progress_deadline", self.progress_deadline),
        ] {
            if d.is_zero() {
                bad(f, "must be more than zero".into());
            }
        }
        if self.min_healthy_time >= self.healthy_deadline && !self.healthy_deadline.is_zero() {
            bad(
                "min_healthy_time",
                format!(
                    "{} must be below healthy_deadline {}",
                    humantime::format_duration(self.min_healthy_time),
                    humantime::format_duration(self.healthy_deadline)
                ),
            );
        }
        if self.healthy_deadline > self.progress_deadline && !self.progress_deadline.is_zero() {
            bad(
                "progress_deadline",
                format!(
                    "{} must not be below healthy_deadline {}",
                    humantime::format_duration(self.progress_deadline),
                    humantime::format_duration(self.healthy_deadline)
                ),
            );
        }
        out
    }
}

impl RestartSpec {
    /// A batch job's defaults: 3 attempts within 24 h, 15 s apart, then fail
    /// (a run to completion may retry more, over a longer window, than a
    /// service that should simply stay up).
    pub fn batch() -> RestartSpec {
        RestartSpec {
            attempts: 3,
            interval: std::time::Duration::from_secs(86400),
            ..RestartSpec::default()
        }
    }

    /// Every problem with it, as (field under `at`, problem).
    pub fn problems(&self, at: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.interval.is_zero() {
            out.push((format!("{at}.interval"), "must be more than zero".into()));
        }
        if self.max_delay < self.delay {
            out.push((
                format!("{at}.max_delay"),
                "must not be below delay".to_string(),
            ));
        }
        out
    }

    /// The delay before restart number `n` (0-based) within the interval, before
    /// jitter.
    pub fn delay_for(&self, n: u32) -> Duration {
        match self.backoff {
            Backoff::Constant => self.delay,
            Backoff::Exponential => self
                .delay
                .saturating_mul(2u32.saturating_pow(n.min(20)))
                .min(self.max_delay),
        }
    }
}

impl RescheduleSpec {
    /// A batch job's defaults (Nomad's): one replacement within 24 h, after
    /// 5 s — a run that failed on two nodes is failed.
    pub fn batch() -> RescheduleSpec {
        RescheduleSpec {
            delay: std::time::Duration::from_secs(5),
            delay_function: DelayFunction::Constant,
            unlimited: false,
            attempts: 1,
            ..RescheduleSpec::default()
        }
    }

    /// Every problem with it, as (field under `at`, problem).
    pub fn problems(&self, at: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !self.unlimited && self.interval.is_zero() {
            out.push((format!("{at}.interval"), "must be more than zero".into()));
        }
        if self.max_delay < self.delay {
            out.push((
                format!("{at}.max_delay"),
                "must not be below delay".to_string(),
            ));
        }
        out
    }

    /// The delay before replacement number `n` (0-based) of a slot.
    pub fn delay_for(&self, n: u32) -> Duration {
        let factor: u32 = match self.delay_function {
            DelayFunction::Constant => 1,
            DelayFunction::Exponential => 2u32.saturating_pow(n.min(20)),
            DelayFunction::Fibonacci => {
                let (mut a, mut b) = (1u32, 1u32);
                for _ in 0..n.min(40) {
                    (a, b) = (b, a.saturating_add(b));
                }
                a
            }
        };
        self.delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Up to 25% of `d` added, from `seed` (deterministic: the same seed, the same
/// jitter), so tasks that failed together do not retry together.
pub fn jittered(d: Duration, seed: u64) -> Duration {
    // splitmix64: a well-spread value from any seed.
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let frac = (z % 1000) as f64 / 1000.0 * 0.25;
    d + d.mul_f64(frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_delays_follow_the_backoff() {
        let mut r = RestartSpec {
            delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(5),
            ..RestartSpec::default()
        };
        assert_eq!(r.delay_for(3), Duration::from_secs(1));
        r.backoff = Backoff::Exponential;
        let got: Vec<u64> = (0..5).map(|n| r.delay_for(n).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 5, 5]);
    }

    #[test]
    fn reschedule_delays_follow_their_function() {
        let mut r = RescheduleSpec {
            delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(100),
            ..RescheduleSpec::default()
        };
        let secs =
            |r: &RescheduleSpec| (0..6).map(|n| r.delay_for(n).as_secs()).collect::<Vec<_>>();
        assert_eq!(secs(&r), [1, 2, 4, 8, 16, 32]);
        r.delay_function = DelayFunction::Fibonacci;
        assert_eq!(secs(&r), [1, 1, 2, 3, 5, 8]);
        r.delay_function = DelayFunction::Constant;
        assert_eq!(secs(&r), [1, 1, 1, 1, 1, 1]);
        r.delay_function = DelayFunction::Exponential;
        r.max_delay = Duration::from_secs(10);
        assert_eq!(secs(&r), [1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn jitter_adds_at_most_a_quarter() {
        let d = Duration::from_secs(100);
        let all: Vec<Duration> = (0..1000).map(|s| jittered(d, s)).collect();
        assert!(all.iter().all(|j| *j >= d && *j <= d + d / 4));
        assert!(all.iter().any(|j| *j > d + d / 8), "jitter is spread");
    }

    #[test]
    fn bad_update_blocks_name_their_fields() {
        let u = UpdateSpec {
            max_parallel: 0,
            canary: 5,
            ..UpdateSpec::default()
        };
        let fields: Vec<String> = u.problems("update", 3).into_iter().map(|p| p.0).collect();
        assert_eq!(fields, ["update.max_parallel", "update.canary"]);
    }
}
