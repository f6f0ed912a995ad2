//! Health checks on the node that runs the task: when probes are due, what
//! their results add up to (pure, [`Tracker`]), and the probes themselves
//! ([`probe`]: http and tcp through the task's host port, command through the
//! runtime's exec). Only transitions leave this module.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::model::{Health, HealthStatus, PortBinding};
use crate::runtime::Runtime;
use crate::spec::{CheckKind, HealthCheck};

/// One check's run of results.
#[derive(Clone, Debug)]
struct CheckState {
    next: Instant,
    successes: u32,
    failures: u32,
    /// Passed `successes` times since it last failed `failures` times.
    passing: bool,
    /// Failed `failures` times in a row (outside the grace).
    failing: bool,
    last_error: Option<String>,
}

/// The health of one running allocation, from its checks' results.
#[derive(Clone, Debug)]
pub struct Tracker {
    started: Instant,
    checks: Vec<CheckState>,
    status: HealthStatus,
}

impl Tracker {
    /// A task (re)started at `now`: starting, every check due at once.
    pub fn new(checks: &[HealthCheck], now: Instant) -> Tracker {
        Tracker {
            started: now,
            checks: checks
                .iter()
                .map(|_| CheckState {
                    next: now,
                    successes: 0,
                    failures: 0,
                    passing: false,
                    failing: false,
                    last_error: None,
                })
                .collect(),
            status: HealthStatus::Starting,
        }
    }

    /// The current status.
    pub fn status(&self) -> HealthStatus {
        self.status
    }

    /// Which checks are due at `now`.
    pub fn due(&self, now: Instant) -> Vec<usize> {
        (0..self.checks.len())
            .filter(|i| self.checks[*i].next <= now)
            .collect()
    }

    /// Records check `i`'s result at `now`; returns the new health when the
    /// status changed (a transition, the only thing written to the store).
    pub fn record(
        &mut self,
        check: &HealthCheck,
        i: usize,
        result: Result<(), String>,
        now: Instant,
    ) -> Option<Health> {
        let in_grace = now < self.started + check.grace;
        let c = &mut self.checks[i];
        c.next = now + check.interval;
        match result {
            Ok(()) => {
                c.failures = 0;
                c.successes += 1;
                if c.successes >= check.successes {
                    c.passing = true;
                    c.failing = false;
                }
            }
            Err(why) => {
                c.successes = 0;
                c.last_error = Some(why);
                if !in_grace {
                    c.failures += 1;
                    if c.failures >= check.failures {
                        c.failing = true;
                        c.passing = false;
                    }
                }
            }
        }
        let status = if self.checks.iter().any(|c| c.failing) {
            HealthStatus::Unhealthy
        } else if self.checks.iter().all(|c| c.passing) {
            HealthStatus::Healthy
        } else {
            self.status
        };
        if status == self.status {
            return None;
        }
        self.status = status;
        let output = match status {
            HealthStatus::Healthy => None,
            _ => self.checks.iter().find_map(|c| c.last_error.clone()),
        };
        Some(Health { status, output })
    }
}

/// Runs one probe of `check` against a task whose container is `container` and
/// whose ports are bound as `ports`; `Err` says why it failed (a timeout too).
pub async fn probe(
    check: &HealthCheck,
    ports: &[PortBinding],
    runtime: &dyn Runtime,
    container: &str,
) -> Result<(), String> {
    let attempt = async {
        match check.kind {
            CheckKind::Http => http(check, address(check, ports)?).await,
            CheckKind::Tcp => tcp(check, address(check, ports)?).await,
            CheckKind::Command => {
                let out = runtime
                    .exec(container, &check.command)
                    .await
                    .map_err(|e| format!("{}: {e}", check.command.join(" ")))?;
                if out.exit_code == 0 {
                    Ok(())
                } else {
                    let text = format!("{}{}", out.stdout, out.stderr);
                    Err(format!(
                        "{} exited {}: {}",
                        check.command.join(" "),
                        out.exit_code,
                        clip(text.trim())
                    ))
                }
            }
        }
    };
    match tokio::time::timeout(check.timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {:?}", check.timeout)),
    }
}

/// Where the check's named port is published on this node.
fn address(check: &HealthCheck, ports: &[PortBinding]) -> Result<String, String> {
    let name = check.port.as_deref().unwrap_or_default();
    let b = ports
        .iter()
        .find(|b| b.name == name)
        .ok_or_else(|| format!("port {name} is not bound"))?;
    let ip = match b.host_ip.as_str() {
        "" | "0.0.0.0" => "127.0.0.1",
        "::" => "::1",
        ip => ip,
    };
    Ok(if ip.contains(':') {
        format!("[{ip}]:{}", b.host_port)
    } else {
        format!("{ip}:{}", b.host_port)
    })
}

/// An HTTP/1.0 GET of the check's path (a probe needs the status line and a
/// little of the body, nothing more of HTTP).
async fn http(check: &HealthCheck, addr: String) -> Result<(), String> {
    let path = check.path.as_deref().unwrap_or("/");
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("GET {path}: cannot connect to {addr}: {e}"))?;
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: orion-health\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let mut answer = Vec::new();
    (&mut s)
        .take(64 * 1024)
        .read_to_end(&mut answer)
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("GET {path}: not an HTTP answer: {}", clip(&text)))?;
    let ok = match check.expect_status {
        Some(want) => status == want,
        None => (200..400).contains(&status),
    };
    if !ok {
        return Err(format!("GET {path} answered {status}"));
    }
    if let Some(want) = &check.body_contains {
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        if !body.contains(want.as_str()) {
            return Err(format!("GET {path}: the body lacks {want:?}"));
        }
    }
    Ok(())
}

/// A TCP connection; with `send`, writes it; with `expect`, reads until the
/// answer contains it.
async fn tcp(check: &HealthCheck, addr: String) -> Result<(), String> {
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    if let Some(send) = &check.send {
        s.write_all(send.as_bytes())
            .await
            .map_err(|e| format!("sending to {addr}: {e}"))?;
    }
    let Some(want) = &check.expect else {
        return Ok(());
    };
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s
            .read(&mut buf)
            .await
            .map_err(|e| format!("reading from {addr}: {e}"))?;
        if n == 0 {
            return Err(format!(
                "{addr} closed without {want:?}: {}",
                clip(&String::from_utf8_lossy(&got))
            ));
        }
        got.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&got).contains(want.as_str()) {
            return Ok(());
        }
    }
}

/// At most 200 characters of a probe's output.
fn clip(s: &str) -> String {
    if s.chars().count() > 200 {
        format!("{}…", s.chars().take(200).collect::<String>())
    } else {
        s.to_string()
    }
}

/// The delay before a probe is due, for the agent's tick (none when due).
pub fn until_due(t: &Tracker, now: Instant) -> Option<Duration> {
    t.checks
        .iter()
        .map(|c| c.next.saturating_duration_since(now))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> HealthCheck {
        let mut c = HealthCheck::new(CheckKind::Tcp);
        c.interval = Duration::from_secs(1);
        c.grace = Duration::from_secs(5);
        c.failures = 2;
        c.successes = 2;
        c
    }

    #[test]
    fn transitions_follow_successes_failures_and_the_grace() {
        let c = check();
        let t0 = Instant::now();
        let mut t = Tracker::new(std::slice::from_ref(&c), t0);
        assert_eq!(t.due(t0), [0]);
        let at = |s: u64| t0 + Duration::from_secs(s);
        // Failures in the grace do not count.
        assert_eq!(t.record(&c, 0, Err("refused".into()), at(1)), None);
        assert_eq!(t.record(&c, 0, Err("refused".into()), at(2)), None);
        assert!(t.due(at(2)).is_empty(), "next one a second later");
        assert_eq!(t.record(&c, 0, Ok(()), at(3)), None, "one of two successes");
        let h = t.record(&c, 0, Ok(()), at(4)).unwrap();
        assert_eq!((h.status, h.output), (HealthStatus::Healthy, None));
        assert_eq!(
            t.record(&c, 0, Err("GET / answered 500".into()), at(6)),
            None
        );
        let h = t
            .record(&c, 0, Err("GET / answered 500".into()), at(7))
            .unwrap();
        assert_eq!(h.status, HealthStatus::Unhealthy);
        assert_eq!(h.output.as_deref(), Some("GET / answered 500"));
        assert_eq!(t.record(&c, 0, Ok(()), at(8)), None);
        assert_eq!(
            t.record(&c, 0, Ok(()), at(9)).unwrap().status,
            HealthStatus::Healthy
        );
    }
}
