//! Health checks in a task spec: `http`, `tcp` and `command` probes, run by
//! the node that runs the task.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a probe asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// An HTTP GET of `path` on the named port; healthy on an expected status
    /// (and body).
    Http,
    /// A TCP connection to the named port (optionally `send`, then `expect`).
    Tcp,
    /// `command` run in the task; healthy on exit code 0.
    Command,
}

/// One health check of a task. Durations are strings (`"500ms"`, `"10s"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// http, tcp or command.
    #[serde(rename = "type")]
    pub kind: CheckKind,
    /// The named port to probe (http and tcp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// The path to GET (http). Default `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The one status that is healthy (http). Default: any of 200–399.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<u16>,
    /// Text the body must contain (http).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    /// Bytes to send once connected (tcp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<String>,
    /// Text the answer must contain (tcp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// The command to run in the task (command).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Time between probes. Default 10 s.
    #[serde(default = "defaults::interval", with = "humantime_serde")]
    #[schema(value_type = String)]
    pub interval: Duration,
    /// A probe that takes longer fails. Default 2 s; below `interval`.
    #[serde(default = "defaults::timeout", with = "humantime_serde")]
    #[schema(value_type = String)]
    pub timeout: Duration,
    /// After a start, failures do not count for this long. Default 10 s.
    #[serde(default = "defaults::grace", with = "humantime_serde")]
    #[schema(value_type = String)]
    pub grace: Duration,
    /// Consecutive failures before unhealthy. Default 3.
    #[serde(default = "defaults::failures")]
    pub failures: u32,
    /// Consecutive successes before healthy. Default 1.
    #[serde(default = "defaults::successes")]
    pub successes: u32,
}

/// The defaults of [`HealthCheck`], with why.
pub mod defaults {
    use std::time::Duration;

    /// 10 s: Nomad's and Consul's default; a probe every few seconds per task
    /// is cheap, and a failure is found within half a minute.
    pub fn interval() -> Duration {
        Duration::from_secs(10)
    }
    /// 2 s: a healthy local service answers in milliseconds; longer is a hang.
    pub fn timeout() -> Duration {
        Duration::from_secs(2)
    }
    /// 10 s: room for a service to open its port after the container starts.
    pub fn grace() -> Duration {
        Duration::from_secs(10)
    }
    /// 3: one lost probe is noise, three in a row is a verdict.
    pub fn failures() -> u32 {
        3
    }
    /// 1: one good answer shows the service is up.
    pub fn successes() -> u32 {
        1
    }
}

impl HealthCheck {
    /// A check of `kind` with every default, for building specs in code.
    pub fn new(kind: CheckKind) -> HealthCheck {
        HealthCheck {
            kind,
            port: None,
            path: None,
            expect_status: None,
            body_contains: None,
            send: None,
            expect: None,
            command: Vec::new(),
            interval: defaults::interval(),
            timeout: defaults::timeout(),
            grace: defaults::grace(),
            failures: defaults::failures(),
            successes: defaults::successes(),
        }
    }

    /// Every problem with it, as (field under `at`, problem); `ports` are the
    /// task's port names.
    pub fn problems(&self, at: &str, ports: &[&str]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |f: &str, p: String| out.push((format!("{at}.{f}"), p));
        match self.kind {
            CheckKind::Http | CheckKind::Tcp => match &self.port {
                None => bad(
                    "port",
                    "an http or tcp check names a port of the task".into(),
                ),
                Some(p) if !ports.contains(&p.as_str()) => bad(
                    "port",
                    format!(
                        "the task has no port named {p:?} (it has: {})",
                        ports.join(", ")
                    ),
                ),
                Some(_) => {}
            },
            CheckKind::Command if self.command.is_empty() => {
                bad("command", "a command check needs a command".into())
            }
            CheckKind::Command => {}
        }
        if let Some(p) = &self.path {
            if !p.starts_with('/') {
                bad("path", format!("{p:?} must start with /"));
            }
        }
        if let Some(s) = self.expect_status {
            if !(100..=599).contains(&s) {
                bad("expect_status", format!("{s} is not an HTTP status"));
            }
        }
        for (f, d) in [("interval", self.interval), ("timeout", self.timeout)] {
            if d.is_zero() {
                bad(f, "must be more than zero".into());
            }
        }
        if !self.timeout.is_zero() && self.timeout >= self.interval {
            bad(
                "timeout",
                format!(
                    "{:?} must be below the interval {:?}",
                    self.timeout, self.interval
                ),
            );
        }
        for (f, n) in [("failures", self.failures), ("successes", self.successes)] {
            if n == 0 {
                bad(f, "must be at least 1".into());
            }
        }
        out
    }
}
