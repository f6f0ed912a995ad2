//! A port's load-balancer listener (`ports[].lb`): every node accepts on
//! `port` (on its host IP) and proxies to the healthy instances of the job's
//! service, wherever they run. See [`crate::lb`] for how it balances.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The listener a port asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LbSpec {
    /// The port every node accepts on (1024–65535, outside the nodes' dynamic
    /// port ranges and their own ports, and no other service's).
    pub port: u16,
    /// How a backend is chosen. Default round robin.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// `tcp` (default: connections are proxied as they are) or `http` (each
    /// request is: retries, cookies and 429/503 answers need it).
    #[serde(default)]
    pub mode: LbMode,
    /// This job's instances' weight for `weighted` (jobs sharing a service and
    /// listener split it by weight: a canary job at 1 beside a main job at 9).
    /// Default 1.
    #[serde(default = "defaults::weight")]
    pub weight: u32,
    /// A new instance's share ramps up linearly over this long from when the
    /// node's balancer first sees it healthy. Default 0: full share at once.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Duration::is_zero"
    )]
    #[schema(value_type = String)]
    pub slow_start: Duration,
    /// Keep a client on one instance while it stays healthy: by client IP, or
    /// (http mode) by a cookie the balancer sets. Default none.
    #[serde(default, skip_serializing_if = "Sticky::is_none")]
    pub sticky: Sticky,
    /// How long the agent waits, at most, for connections to an instance to
    /// close before it stops the task (the instance leaves every balancer as soon
    /// as its stop is committed). Default 10 s.
    #[serde(default = "defaults::drain", with = "humantime_serde")]
    #[schema(value_type = String)]
    pub drain: Duration,
    /// How long a backend may take to accept a connection before it counts as
    /// failed. Default 1 s.
    #[serde(default = "defaults::connect_timeout", with = "humantime_serde")]
    #[schema(value_type = String)]
    pub connect_timeout: Duration,
    /// A per-node limit on new connections (tcp) or requests (http) of the
    /// service. None by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Stop sending to the service for a while after consecutive failures.
    /// None by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
}

/// How a backend is chosen.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// In turn.
    #[default]
    RoundRobin,
    /// In turn, in proportion to the instances' jobs' `weight`.
    Weighted,
    /// The one with the fewest open connections (per weight).
    LeastConn,
    /// By a hash of the client IP: a client stays on one instance, and only the
    /// clients of an instance that leaves move.
    IpHash,
    /// The one with the lowest recent response time times its open connections
    /// (nginx's `least_time`).
    LeastTime,
}

/// What is proxied.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LbMode {
    /// Connections.
    #[default]
    Tcp,
    /// HTTP/1.1 requests.
    Http,
}

/// Session stickiness.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Sticky {
    /// None.
    #[default]
    None,
    /// By client IP.
    Ip,
    /// By a cookie (`orion-lb-<port>`), http mode only.
    Cookie,
}

impl Sticky {
    fn is_none(&self) -> bool {
        *self == Sticky::None
    }
}

/// A token bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained rate, per second, per node.
    pub per_second: u32,
    /// Burst above it. Default: one second's worth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

/// A circuit breaker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreaker {
    /// Consecutive failures (refused connections; 5xx answers in http mode)
    /// that open it. Default 5.
    #[serde(default = "defaults::failures")]
    pub failures: u32,
    /// How long it stays open before one trial is let through. Default 10 s.
    #[serde(default = "defaults::open_for", with = "humantime_serde")]
    #[schema(value_type = String)]
    pub open_for: Duration,
}

mod defaults {
    use std::time::Duration;
    pub fn weight() -> u32 {
        1
    }
    pub fn drain() -> Duration {
        Duration::from_secs(10)
    }
    pub fn connect_timeout() -> Duration {
        Duration::from_secs(1)
    }
    pub fn failures() -> u32 {
        5
    }
    pub fn open_for() -> Duration {
        Duration::from_secs(10)
    }
}

/// The lowest port a listener may ask for: below are the privileged ports.
pub const MIN_LB_PORT: u16 = 1024;

impl LbSpec {
    /// What is wrong with it on its own, each with the field under `at`.
    pub fn problems(&self, at: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.port < MIN_LB_PORT {
            out.push((
                format!("{at}.port"),
                format!(
                    "{} is outside the allowed range {MIN_LB_PORT}-65535",
                    self.port
                ),
            ));
        }
        if self.weight == 0 {
            out.push((format!("{at}.weight"), "must be positive".into()));
        }
        if self.sticky == Sticky::Cookie && self.mode != LbMode::Http {
            out.push((
                format!("{at}.sticky"),
                "cookie stickiness needs mode: http".into(),
            ));
        }
        if self.connect_timeout.is_zero() {
            out.push((
                format!("{at}.connect_timeout"),
                "must be more than zero".into(),
            ));
        }
        if let Some(r) = &self.rate_limit {
            if r.per_second == 0 {
                out.push((
                    format!("{at}.rate_limit.per_second"),
                    "must be positive".into(),
                ));
            }
            if r.burst == Some(0) {
                out.push((format!("{at}.rate_limit.burst"), "must be positive".into()));
            }
        }
        if let Some(c) = &self.circuit_breaker {
            if c.failures == 0 {
                out.push((
                    format!("{at}.circuit_breaker.failures"),
                    "must be positive".into(),
                ));
            }
            if c.open_for.is_zero() {
                out.push((
                    format!("{at}.circuit_breaker.open_for"),
                    "must be more than zero".into(),
                ));
            }
        }
        out
    }
}
