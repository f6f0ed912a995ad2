//! Fakes of the seams, for testing logic without I/O (feature `testing`).
//!
//! - [`MemStore`]: a single-replica store that commits by applying at once.
//! - [`FakeRuntime`]: containers as entries in a map; records calls, injects failures.
//! - [`StaticMembership`]: a scripted member list and event stream.
//! - [`fuzz`]: the bodies of the fuzz targets, and their corpus.

pub mod fixtures;
pub mod fuzz;
mod membership;
mod runtime;
pub mod runtime_suite;
pub mod sim;
mod store;
pub mod store_suite;

pub use membership::StaticMembership;
pub use runtime::{FakeRuntime, RuntimeCall};
pub use store::MemStore;

/// Loop settings for tests: the control loop and the agent tick every 50 ms
/// instead of every second, so a test sees a change within a few ticks.
pub fn fast_loops() -> crate::ClusterConfig {
    let mut c = crate::ClusterConfig::default();
    c.control.reconcile_interval = std::time::Duration::from_millis(50);
    c.agent.tick = std::time::Duration::from_millis(50);
    c
}

/// Whether this runs in CI: `CI` is set to anything but empty, `0`, `false` or
/// `no` (CI services set `CI=true`, some `CI=1`). Tests that need an outside
/// tool (the Docker engine, busybox, promtool) fail there instead of skipping.
pub fn in_ci() -> bool {
    ci_value(std::env::var("CI").ok().as_deref())
}

fn ci_value(v: Option<&str>) -> bool {
    v.map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| !matches!(v.as_str(), "" | "0" | "false" | "no"))
}

/// How long a test waits for one `docker` command (or engine call) before it
/// calls the engine hung and fails: far above what a healthy engine takes on a
/// loaded 2-core machine, far below a hang.
pub const DOCKER_CALL: std::time::Duration = std::time::Duration::from_secs(90);

/// [`std::process::Command::output`] with a bound: a command that has not
/// exited within the limit is killed and the call fails with
/// [`std::io::ErrorKind::TimedOut`] (a hung engine fails a test instead of
/// hanging it). Stdin is closed, as with `output`.
pub trait OutputWithin {
    /// Runs the command to completion within `limit`, collecting its output.
    fn output_within(
        &mut self,
        limit: std::time::Duration,
    ) -> std::io::Result<std::process::Output>;
}

impl OutputWithin for std::process::Command {
    fn output_within(
        &mut self,
        limit: std::time::Duration,
    ) -> std::io::Result<std::process::Output> {
        use std::io::Read;
        use std::process::Stdio;
        let mut child = self
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let drain = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut bytes);
                }
                bytes
            })
        };
        let stdout = drain(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let stderr = drain(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let deadline = std::time::Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("{self:?} did not finish within {limit:?}"),
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        Ok(std::process::Output {
            status,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::OutputWithin;
    use std::process::Command;
    use std::time::Duration;

    #[test]
    fn a_command_past_its_limit_is_killed_and_fails() {
        let out = Command::new("sh")
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .output_within(Duration::from_secs(30))
            .unwrap();
        assert_eq!(
            (out.status.code(), &out.stdout[..], &out.stderr[..]),
            (Some(3), &b"out\n"[..], &b"err\n"[..])
        );
        let hung = Command::new("sleep")
            .arg("600")
            .output_within(Duration::from_millis(200))
            .unwrap_err();
        assert_eq!(hung.kind(), std::io::ErrorKind::TimedOut, "{hung}");
    }

    #[test]
    fn ci_is_any_value_but_off() {
        for on in ["true", "1", "TRUE", "yes", "github"] {
            assert!(super::ci_value(Some(on)), "{on}");
        }
        for off in ["", "0", "false", "False", "no"] {
            assert!(!super::ci_value(Some(off)), "{off:?}");
        }
        assert!(!super::ci_value(None));
    }
}
