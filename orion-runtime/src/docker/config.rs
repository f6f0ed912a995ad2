//! `DockerConfig`: where the engine is and how long to wait for it.

use std::time::Duration;

/// The socket Docker listens on when nothing says otherwise.
pub const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

/// How a [`DockerRuntime`](super::DockerRuntime) reaches and drives the engine.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct DockerConfig {
    /// The engine's address: `unix:///path/docker.sock` (or a bare path), or
    /// `tcp://host:port` / `http://host:port`.
    ///
    /// Default `None`: `$DOCKER_HOST` when set, else [`DEFAULT_SOCKET`], as the
    /// `docker` CLI does, so Orion drives the same engine an operator inspects.
    pub host: Option<String>,
    /// How long the first contact (API version negotiation) and `ping` may take.
    ///
    /// Default 5 s: a local engine answers in milliseconds; an agent that waits
    /// longer only delays reporting its node unhealthy.
    pub connect_timeout: Duration,
    /// How long any other request may wait for the engine's answer (whole seconds,
    /// at least one).
    ///
    /// Default 30 s: creating a container on a loaded host with a slow storage
    /// driver takes seconds, but a wedged engine must not stall the agent forever.
    pub request_timeout: Duration,
    /// How long [`ensure_image`](orion_core::Runtime::ensure_image) may spend pulling.
    ///
    /// Default 5 min: large images over a slow link take minutes; beyond that a
    /// stalled registry is likelier than progress, and the task is better reported failed.
    pub pull_timeout: Duration,
    /// How long an `exec` may run before it is abandoned.
    ///
    /// Default 60 s: execs are health checks and operator commands, which should be
    /// short; a hung one must not hold the caller.
    pub exec_timeout: Duration,
    /// The grace the engine itself gives a container it stops (its `StopTimeout`), for
    /// stops Orion does not drive (engine shutdown, `docker stop` by hand).
    ///
    /// Default 10 s: Docker's own default, which most workloads are written for.
    pub stop_grace: Duration,
    /// The most processes one container may run; `None` for no limit.
    ///
    /// Default 1024: enough for any worker pool, small enough that a fork bomb in one
    /// task cannot exhaust the host's process table.
    pub pids_limit: Option<u32>,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            host: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            pull_timeout: Duration::from_secs(300),
            exec_timeout: Duration::from_secs(60),
            stop_grace: Duration::from_secs(10),
            pids_limit: Some(1024),
        }
    }
}

/// Why a [`DockerConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A timeout is too short to be meaningful.
    #[error("{field} must be at least {min:?}, got {got:?}")]
    TooShort {
        /// The field.
        field: &'static str,
        /// Its least useful value.
        min: Duration,
        /// The value given.
        got: Duration,
    },
    /// The host address has a scheme this adapter cannot speak.
    #[error("unsupported docker host {0:?}: expected unix://, tcp:// or http://")]
    UnsupportedHost(String),
    /// The pids limit is zero, which would forbid even the task's first process.
    #[error("pids_limit must be at least 1")]
    ZeroPidsLimit,
}

/// How to reach the engine, parsed from [`DockerConfig::host`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// A Unix socket path.
    Unix(String),
    /// An HTTP address (`host:port`).
    Http(String),
}

impl DockerConfig {
    /// Checks the values before use.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let one_sec = Duration::from_secs(1);
        let min_ms = Duration::from_millis(10);
        let checks = [
            ("connect_timeout", self.connect_timeout, min_ms),
            // bollard counts its request timeout in whole seconds.
            ("request_timeout", self.request_timeout, one_sec),
            ("pull_timeout", self.pull_timeout, one_sec),
            ("exec_timeout", self.exec_timeout, min_ms),
        ];
        for (field, got, min) in checks {
            if got < min {
                return Err(ConfigError::TooShort { field, min, got });
            }
        }
        if self.pids_limit == Some(0) {
            return Err(ConfigError::ZeroPidsLimit);
        }
        self.endpoint().map(|_| ())
    }

    /// The address to use: [`DockerConfig::host`], else `$DOCKER_HOST`, else the local socket.
    pub fn resolved_host(&self) -> String {
        self.host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| DEFAULT_SOCKET.to_string())
    }

    pub(crate) fn endpoint(&self) -> Result<Endpoint, ConfigError> {
        let host = self.resolved_host();
        if let Some(path) = host.strip_prefix("unix://") {
            Ok(Endpoint::Unix(path.to_string()))
        } else if host.starts_with('/') {
            Ok(Endpoint::Unix(host))
        } else if let Some(addr) = host
            .strip_prefix("tcp://")
            .or_else(|| host.strip_prefix("http://"))
        {
            Ok(Endpoint::Http(addr.to_string()))
        } else {
            Err(ConfigError::UnsupportedHost(host))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(DockerConfig::default().validate(), Ok(()));
    }

    #[test]
    fn sub_second_request_timeout_is_rejected() {
        let config = DockerConfig {
            request_timeout: Duration::from_millis(500),
            ..DockerConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::TooShort {
                field: "request_timeout",
                ..
            })
        ));
    }

    #[test]
    fn zero_pids_limit_is_rejected() {
        let config = DockerConfig {
            pids_limit: Some(0),
            ..DockerConfig::default()
        };
        assert_eq!(config.validate(), Err(ConfigError::ZeroPidsLimit));
    }

    #[test]
    fn hosts_parse_to_endpoints() {
        let with = |h: &str| DockerConfig {
            host: Some(h.into()),
            ..DockerConfig::default()
        };
        assert_eq!(
            with("unix:///run/d.sock").endpoint(),
            Ok(Endpoint::Unix("/run/d.sock".into()))
        );
        assert_eq!(
            with("/run/d.sock").endpoint(),
            Ok(Endpoint::Unix("/run/d.sock".into()))
        );
        assert_eq!(
            with("tcp://10.0.0.1:2375").endpoint(),
            Ok(Endpoint::Http("10.0.0.1:2375".into()))
        );
        assert!(matches!(
            with("ssh://box").validate(),
            Err(ConfigError::UnsupportedHost(_))
        ));
    }
}
