//! Autoscaling: a service job's `scaling` policy and the pure decision that
//! turns what its instances report into a replica count.
//!
//! ```yaml
//! scaling:
//!   min: 2
//!   max: 10
//!   cooldown_up: 60s          # after any change, no scale-up before this
//!   cooldown_down: 300s       # after any change, no scale-down before this
//!   evaluation_interval: 15s
//!   stabilization_window: 300s
//!   tolerance: 0.1
//!   policies:
//!     - target: { metric: cpu, value: 70 }            # Kubernetes' HPA formula
//!     - step: { metric: requests_per_second, above: 800, add: 2 }
//!     - step: { metric: cpu, below: 20, remove: 1 }
//!     - schedule: { cron: "0 9 * * 1-5", time_zone: Europe/Paris, duration: 9h, min: 4 }
//! ```
//!
//! [`decide`] is the whole decision, with no clock, store or runtime: the
//! caller hands it the policy, one [`Observation`] (the healthy instances and
//! their averaged metrics) and the job's [`ScalingMemory`] (the last change
//! and recent recommendations), and gets back the count to run, the reason
//! and the memory to keep.
//!
//! - **target** (HPA): wanted = ⌈current × metric / target⌉, unless the ratio
//!   is within `tolerance` of 1 (then: current).
//! - **step**: `above` → current + `add`; `below` → current − `remove`;
//!   between them it has no say.
//! - **schedule**: while a window is open (from a cron tick for `duration`),
//!   its `min` / `max` replace the policy's bounds. Orion's addition to the
//!   seed's shape: a window needs a length, which a cron alone does not give.
//! - Several policies: the largest wanted count wins. Going down, the largest
//!   recommendation within `stabilization_window` wins (HPA's stabilization),
//!   so a dip does not drop instances a moment before the load comes back.
//! - Cooldowns: no scale-up within `cooldown_up` of the last change, no
//!   scale-down within `cooldown_down` of it. Bounds are enforced at once
//!   (a count below `min` rises without waiting), and a count set by hand
//!   suspends the policy until `manual_until_ms`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The most replicas a scaling policy may ask for unless the cluster says
/// otherwise.
pub const DEFAULT_MAX_REPLICAS_CAP: u32 = 1_000;

/// Recommendations kept for the stabilization window, at most.
const KEPT_RECOMMENDATIONS: usize = 256;

/// A service job's autoscaling policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScalingSpec {
    /// The fewest instances.
    pub min: u32,
    /// The most instances.
    pub max: u32,
    /// What decides the count (at least one).
    pub policies: Vec<ScalingPolicy>,
    /// After any change, no scale-up before this. Default 60 s.
    #[serde(default = "defaults::cooldown_up", with = "humantime_serde")]
    #[schema(value_type = String)]
    pub cooldown_up: Duration,
    /// After any change, no scale-down before this. Default 300 s.
    #[serde(default = "defaults::cooldown_down", with = "humantime_serde")]
    #[schema(value_type = String)]
    pub cooldown_down: Duration,
    /// How often the leader evaluates the policy. Default 15 s.
    #[serde(default = "defaults::evaluation_interval", with = "humantime_serde")]
    #[schema(value_type = String)]
    pub evaluation_interval: Duration,
    /// Going down, the largest recommendation within this long wins.
    /// Default 300 s.
    #[serde(default = "defaults::stabilization_window", with = "humantime_serde")]
    #[schema(value_type = String)]
    pub stabilization_window: Duration,
    /// A target policy's ratio within this of 1 changes nothing. Default 0.1.
    #[serde(default = "defaults::tolerance")]
    pub tolerance: f64,
}

mod defaults {
    use std::time::Duration;
    pub fn cooldown_up() -> Duration {
        Duration::from_secs(60)
    }
    pub fn cooldown_down() -> Duration {
        Duration::from_secs(300)
    }
    pub fn evaluation_interval() -> Duration {
        Duration::from_secs(15)
    }
    pub fn stabilization_window() -> Duration {
        Duration::from_secs(300)
    }
    pub fn tolerance() -> f64 {
        0.1
    }
}

/// One way to decide the count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ScalingPolicy {
    /// Keep `metric` at `value` on average (HPA's formula).
    Target {
        /// The metric: `cpu`, `memory`, `requests_per_second` or
        /// `custom:<name>`.
        #[schema(value_type = String)]
        metric: Metric,
        /// The value to hold it at (a percentage for cpu and memory).
        value: f64,
    },
    /// Add or remove a fixed number past a threshold.
    Step {
        /// The metric: `cpu`, `memory`, `requests_per_second` or
        /// `custom:<name>`.
        #[schema(value_type = String)]
        metric: Metric,
        /// Above this, add `add`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        above: Option<f64>,
        /// How many to add.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        add: Option<u32>,
        /// Below this, remove `remove`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        below: Option<f64>,
        /// How many to remove.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remove: Option<u32>,
    },
    /// A window that moves the bounds.
    Schedule {
        /// When the window opens (croner; 5 fields, or 6 with seconds).
        cron: String,
        /// An IANA time zone. Default UTC.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        time_zone: Option<String>,
        /// How long it stays open.
        #[serde(with = "humantime_serde")]
        #[schema(value_type = String)]
        duration: Duration,
        /// The fewest instances while open.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<u32>,
        /// The most instances while open.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<u32>,
    },
}

/// What a policy reads, averaged over a job's healthy instances.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    /// CPU, in percent of the instance's limit.
    Cpu,
    /// Memory, in percent of the instance's limit.
    Memory,
    /// Requests per second through the load balancer, per instance.
    RequestsPerSecond,
    /// A metric the task exposes (`custom:<name>`).
    Custom(String),
}

impl Metric {
    /// Whether its values are percentages (0–100).
    pub fn is_percentage(&self) -> bool {
        matches!(self, Metric::Cpu | Metric::Memory)
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Metric::Cpu => f.write_str("cpu"),
            Metric::Memory => f.write_str("memory"),
            Metric::RequestsPerSecond => f.write_str("requests_per_second"),
            Metric::Custom(n) => write!(f, "custom:{n}"),
        }
    }
}

impl std::str::FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Metric::Cpu),
            "memory" => Ok(Metric::Memory),
            "requests_per_second" => Ok(Metric::RequestsPerSecond),
            _ => match s.strip_prefix("custom:") {
                Some(n) if !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') => {
                    Ok(Metric::Custom(n.to_string()))
                }
                _ => Err(format!(
                    "{s:?} is not a metric: cpu, memory, requests_per_second or custom:<name> (a Prometheus metric name)"
                )),
            },
        }
    }
}

impl Serialize for Metric {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Metric {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl ScalingSpec {
    /// The metrics its policies read.
    pub fn metrics(&self) -> impl Iterator<Item = &Metric> {
        self.policies.iter().filter_map(|p| match p {
            ScalingPolicy::Target { metric, .. } | ScalingPolicy::Step { metric, .. } => {
                Some(metric)
            }
            ScalingPolicy::Schedule { .. } => None,
        })
    }

    /// What is wrong with it, each with its field under `at`; `cap` is the
    /// cluster's most replicas a policy may ask for.
    pub fn problems(&self, at: &str, cap: u32) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |f: String, p: String| out.push((f, p));
        if self.min > self.max {
            bad(
                format!("{at}.min"),
                format!("{} is above max ({})", self.min, self.max),
            );
        }
        if self.max == 0 {
            bad(format!("{at}.max"), "must be at least 1".into());
        }
        if self.max > cap {
            bad(
                format!("{at}.max"),
                format!("{} is above the cluster's cap of {cap} replicas", self.max),
            );
        }
        if self.policies.is_empty() {
            bad(
                format!("{at}.policies"),
                "give at least one policy (target, step or schedule)".into(),
            );
        }
        if !(0.0..1.0).contains(&self.tolerance) || self.tolerance.is_nan() {
            bad(
                format!("{at}.tolerance"),
                format!("{} is not between 0 and 1", self.tolerance),
            );
        }
        if self.evaluation_interval < Duration::from_secs(1) {
            bad(
                format!("{at}.evaluation_interval"),
                "must be at least 1s".into(),
            );
        }
        for (i, p) in self.policies.iter().enumerate() {
            let here = format!("{at}.policies[{i}]");
            match p {
                ScalingPolicy::Target { metric, value } => {
                    if !value.is_finite() || *value <= 0.0 {
                        bad(
                            format!("{here}.target.value"),
                            format!("{value} must be above 0"),
                        );
                    } else if metric.is_percentage() && *value > 100.0 {
                        bad(
                            format!("{here}.target.value"),
                            format!("{value} is above 100 (a percentage of the limit)"),
                        );
                    }
                }
                ScalingPolicy::Step {
                    metric,
                    above,
                    add,
                    below,
                    remove,
                } => {
                    let f = format!("{here}.step");
                    match (above, add, below, remove) {
                        (Some(_), Some(a), None, None) if *a > 0 => {}
                        (None, None, Some(_), Some(r)) if *r > 0 => {}
                        _ => bad(
                            f.clone(),
                            "give above with add (at least 1), or below with remove (at least 1)"
                                .into(),
                        ),
                    }
                    for v in [above, below].into_iter().flatten() {
                        if !v.is_finite() || *v < 0.0 || (metric.is_percentage() && *v > 100.0) {
                            bad(f.clone(), format!("{v} is not a threshold for {metric}"));
                        }
                    }
                }
                ScalingPolicy::Schedule {
                    cron,
                    time_zone,
                    duration,
                    min,
                    max,
                } => {
                    let f = format!("{here}.schedule");
                    if let Err(p) = crate::spec::parse_cron(cron) {
                        bad(format!("{f}.cron"), p);
                    }
                    if let Some(tz) = time_zone {
                        if let Err(p) = crate::spec::parse_time_zone(tz) {
                            bad(format!("{f}.time_zone"), p);
                        }
                    }
                    if duration.is_zero() {
                        bad(format!("{f}.duration"), "must be more than zero".into());
                    }
                    if min.is_none() && max.is_none() {
                        bad(f.clone(), "give min, max or both".into());
                    }
                    if let (Some(lo), Some(hi)) = (min, max) {
                        if lo > hi {
                            bad(format!("{f}.min"), format!("{lo} is above max ({hi})"));
                        }
                    }
                    if max.is_some_and(|m| m > cap) {
                        bad(
                            format!("{f}.max"),
                            format!("above the cluster's cap of {cap} replicas"),
                        );
                    }
                }
            }
        }
        out
    }
}

/// What a job's instances report at one evaluation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observation {
    /// When (Unix ms).
    pub at_ms: u64,
    /// The job's replica count now.
    pub current: u32,
    /// Each metric's average over the healthy instances (a metric nobody
    /// reports is absent, and its policies recommend nothing).
    pub metrics: BTreeMap<Metric, f64>,
}

/// What a job's autoscaling remembers between evaluations (committed with
/// each decision, so a new leader carries on where the old one stopped).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScalingMemory {
    /// When the count last changed (Unix ms; 0: never).
    #[serde(default)]
    pub last_change_ms: u64,
    /// Recent recommendations (Unix ms, count), oldest first.
    #[serde(default)]
    pub recommendations: Vec<(u64, u32)>,
    /// A count set by hand suspends the policy until then (Unix ms).
    #[serde(default)]
    pub manual_until_ms: u64,
}

/// Decisions kept per job (`GET /v1/jobs/{name}/scaling`).
pub const KEPT_DECISIONS: usize = 20;

/// Who set a count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScaledBy {
    /// The job's scaling policy, evaluated by the leader.
    Policy,
    /// A person (`job scale`), which suspends the policy for a while.
    Hand,
}

/// One evaluation of a job's policy, or a count set by hand, as committed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScalingRecord {
    /// When (Unix ms, the leader's clock or the API node's).
    pub at_ms: u64,
    /// The count it was made from.
    pub from: u32,
    /// The count it set (`from` when it changes nothing).
    pub to: u32,
    /// Why, in a sentence.
    pub reason: String,
    /// Who.
    pub by: ScaledBy,
    /// What the policy read: each metric's average over the healthy
    /// instances (none by hand).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, f64>,
    /// The healthy instances that reported.
    #[serde(default)]
    pub instances: u32,
}

/// A job's autoscaling as the state keeps it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobScaling {
    /// What the policy remembers between evaluations.
    #[schema(value_type = Object)]
    pub memory: ScalingMemory,
    /// When the policy was last evaluated (Unix ms).
    #[serde(default)]
    pub last_eval_ms: u64,
    /// The latest evaluation, whatever it decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<ScalingRecord>,
    /// The last [`KEPT_DECISIONS`] changes of the count (by the policy or
    /// by hand), oldest first.
    #[serde(default)]
    pub decisions: Vec<ScalingRecord>,
}

/// How long a count set by hand suspends the policy: the longer cooldown.
pub fn manual_suspension(spec: &ScalingSpec) -> Duration {
    spec.cooldown_up.max(spec.cooldown_down)
}

/// Whether the policy of a job is due for evaluation at `now_ms`.
pub fn due(spec: &ScalingSpec, state: Option<&JobScaling>, now_ms: u64) -> bool {
    let last = state.map_or(0, |s| s.last_eval_ms);
    now_ms >= last.saturating_add(spec.evaluation_interval.as_millis() as u64)
}

/// What [`decide`] concluded.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The count to run (the current one when nothing changes).
    pub to: u32,
    /// Why, in a sentence.
    pub reason: String,
    /// The memory to keep.
    pub memory: ScalingMemory,
}

impl Decision {
    /// Whether it changes the count from `current`.
    pub fn changes(&self, current: u32) -> bool {
        self.to != current
    }
}

/// The bounds at `at_ms`: the policy's, moved by any open schedule window
/// (the widest of those open).
pub fn bounds(spec: &ScalingSpec, at_ms: u64) -> (u32, u32, Option<usize>) {
    let (mut lo, mut hi, mut open) = (spec.min, spec.max, None);
    let mut first = true;
    for (i, p) in spec.policies.iter().enumerate() {
        let ScalingPolicy::Schedule {
            cron,
            time_zone,
            duration,
            min,
            max,
        } = p
        else {
            continue;
        };
        let sched = crate::spec::ScheduleSpec {
            cron: cron.clone(),
            time_zone: time_zone.clone(),
            concurrency: Default::default(),
            starting_deadline: Duration::from_secs(60),
            history: Default::default(),
        };
        let span = duration.as_millis() as u64;
        let opened = sched
            .ticks(at_ms.saturating_sub(span), at_ms, 10_000)
            .last()
            .copied();
        if opened.is_some_and(|t| at_ms < t + span) {
            if first {
                (lo, hi) = (min.unwrap_or(lo), max.unwrap_or(hi));
                first = false;
            } else {
                lo = lo.max(min.unwrap_or(lo));
                hi = hi.max(max.unwrap_or(hi));
            }
            open = Some(i);
        }
    }
    (lo, hi.max(lo), open)
}

/// Each policy's wanted count for `obs` (none for a schedule, or a policy
/// whose metric nobody reports), with a word on how it got there.
fn recommendations(spec: &ScalingSpec, obs: &Observation) -> Vec<(u32, String)> {
    let current = obs.current;
    let mut out = Vec::new();
    for p in &spec.policies {
        match p {
            ScalingPolicy::Target { metric, value } => {
                let Some(m) = obs.metrics.get(metric) else {
                    continue;
                };
                let ratio = m / value;
                if current == 0 {
                    continue;
                }
                let wanted = if (ratio - 1.0).abs() <= spec.tolerance {
                    current
                } else {
                    (f64::from(current) * ratio)
                        .ceil()
                        .clamp(0.0, f64::from(u32::MAX)) as u32
                };
                out.push((
                    wanted,
                    format!("{metric} {m:.1} against a target of {value}"),
                ));
            }
            ScalingPolicy::Step {
                metric,
                above,
                add,
                below,
                remove,
            } => {
                let Some(m) = obs.metrics.get(metric) else {
                    continue;
                };
                if let (Some(t), Some(n)) = (above, add) {
                    if m > t {
                        out.push((
                            current.saturating_add(*n),
                            format!("{metric} {m:.1} above {t}"),
                        ));
                        continue;
                    }
                }
                if let (Some(t), Some(n)) = (below, remove) {
                    if m < t {
                        out.push((
                            current.saturating_sub(*n),
                            format!("{metric} {m:.1} below {t}"),
                        ));
                        continue;
                    }
                }
                // Between its thresholds a step policy has no say: it
                // holds nothing up that another policy takes down.
            }
            ScalingPolicy::Schedule { .. } => {}
        }
    }
    out
}

/// The count `spec` wants for `obs`, given what it remembers: see the module
/// documentation for the rules. Pure.
pub fn decide(spec: &ScalingSpec, obs: &Observation, memory: &ScalingMemory) -> Decision {
    let now = obs.at_ms;
    let current = obs.current;
    let (lo, hi, window) = bounds(spec, now);
    let mut memory = memory.clone();
    let window_ms = spec.stabilization_window.as_millis() as u64;
    memory
        .recommendations
        .retain(|(at, _)| now.saturating_sub(*at) <= window_ms);
    let clamp = |n: u32| n.clamp(lo, hi);
    let done = |to: u32, reason: String, mut memory: ScalingMemory| {
        if to != current {
            memory.last_change_ms = now;
        }
        Decision { to, reason, memory }
    };

    // Out of bounds: back in at once, whatever the cooldowns.
    if current < lo || current > hi {
        let to = clamp(current);
        let why = match window {
            Some(i) => format!("the schedule (policy {i}) sets the bounds to {lo}..{hi}"),
            None => format!("the bounds are {lo}..{hi}"),
        };
        return done(to, why, memory);
    }
    if now < memory.manual_until_ms {
        return done(
            current,
            "suspended: the count was set by hand".into(),
            memory,
        );
    }
    let recs = recommendations(spec, obs);
    let Some((wanted, why)) = recs.iter().max_by_key(|(n, _)| *n).cloned() else {
        return done(current, "no metric reported yet".into(), memory);
    };
    let wanted = clamp(wanted);
    memory.recommendations.push((now, wanted));
    let excess = memory
        .recommendations
        .len()
        .saturating_sub(KEPT_RECOMMENDATIONS);
    memory.recommendations.drain(..excess);
    let since_change = now.saturating_sub(memory.last_change_ms);
    let ever_changed = memory.last_change_ms > 0;
    if wanted > current {
        if ever_changed && since_change < spec.cooldown_up.as_millis() as u64 {
            return done(
                current,
                format!("wants {wanted} ({why}), cooling down after the last change"),
                memory,
            );
        }
        return done(wanted, format!("up to {wanted}: {why}"), memory);
    }
    // Down (or nothing): the largest recommendation within the window.
    let stable = memory
        .recommendations
        .iter()
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(wanted)
        .max(wanted);
    if stable >= current {
        return done(current, format!("holds at {current}: {why}"), memory);
    }
    if ever_changed && since_change < spec.cooldown_down.as_millis() as u64 {
        return done(
            current,
            format!("wants {stable} ({why}), cooling down after the last change"),
            memory,
        );
    }
    done(stable, format!("down to {stable}: {why}"), memory)
}

#[cfg(test)]
mod tests;

/// One metric summed over a node's instances of a job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricSum {
    /// The sum.
    pub sum: f64,
    /// How many instances it sums (0 for `requests_per_second`, which is
    /// the node's balancer's rate to the job, wherever its instances run).
    pub n: u32,
}

/// What one node reports of one scaling job, through membership (gossip):
/// aggregated on the node, so no sample is ever a Raft write.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobLoad {
    /// When it was measured (Unix ms, the node's clock).
    pub at_ms: u64,
    /// Each metric's sum over the node's serving instances of the job.
    #[serde(default)]
    pub metrics: BTreeMap<Metric, MetricSum>,
}

/// The allocations of `job` that count for autoscaling: running, healthy
/// (their checks pass, when they have checks), and, when a deployment
/// tracks them, counted healthy by it.
pub fn serving<'a>(
    state: &'a crate::state::ClusterState,
    job: &'a crate::model::Job,
) -> impl Iterator<Item = &'a crate::model::Allocation> + 'a {
    let checked = !job.spec.task.health_checks.is_empty();
    let active = state.active_deployment(&job.spec.name).map(|d| d.id);
    state.allocs_of_job(&job.spec.name).filter(move |a| {
        // New under a deployment still rolling out: not until it counts.
        let pending =
            a.deployment.is_some() && a.deployment == active && a.deploy_healthy != Some(true);
        a.is_live()
            && a.node.is_some()
            && a.state == crate::model::AllocState::Running
            && !pending
            && match a.health.as_ref().map(|h| h.status) {
                None => !checked,
                Some(h) => h == crate::model::HealthStatus::Healthy,
            }
    })
}

/// What the leader sees of `job` at `now_ms` from the nodes' reports
/// (`loads`, by node; a report older than `max_age_ms`, or from a node that
/// is not ready, is left out): each metric's average over the serving
/// instances, and how many serve. Pure.
pub fn observe<'a>(
    state: &crate::state::ClusterState,
    job: &crate::model::Job,
    loads: impl IntoIterator<Item = (&'a crate::model::NodeId, &'a JobLoad)>,
    now_ms: u64,
    max_age_ms: u64,
) -> (Observation, u32) {
    let serving = serving(state, job).count() as u32;
    let mut sums: BTreeMap<Metric, MetricSum> = BTreeMap::new();
    for (node, load) in loads {
        let ready = state
            .nodes
            .get(node)
            .is_some_and(|n| n.status == crate::model::NodeStatus::Ready);
        if !ready || now_ms.saturating_sub(load.at_ms) > max_age_ms {
            continue;
        }
        for (m, s) in &load.metrics {
            let e = sums.entry(m.clone()).or_default();
            e.sum += s.sum;
            e.n += s.n;
        }
    }
    let metrics = sums
        .into_iter()
        .filter_map(|(m, s)| {
            let n = if m == Metric::RequestsPerSecond {
                serving
            } else {
                s.n
            };
            (n > 0 && s.sum.is_finite()).then(|| (m, s.sum / f64::from(n)))
        })
        .collect();
    (
        Observation {
            at_ms: now_ms,
            current: job.spec.replicas,
            metrics,
        },
        serving,
    )
}
