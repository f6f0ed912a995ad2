//! `SshConfig` and `SshTarget`: which server, which key, how many connections,
//! and when to stop trying; checked at the door with errors naming the flag.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use russh::keys::PrivateKey;

/// The CLI flag a target comes from, named in its errors.
pub const TARGET_FLAG: &str = "--ssh-target";
/// The CLI flag the key file comes from.
pub const KEY_FLAG: &str = "--ssh-key";
/// The CLI flag the known-hosts file comes from.
pub const KNOWN_HOSTS_FLAG: &str = "--ssh-known-hosts";

/// The port an [`SshTarget`] without one connects to.
pub const DEFAULT_PORT: u16 = 22;

/// A remote account: `user@host:port`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct SshTarget {
    /// The account to log in as.
    pub user: String,
    /// The server's name or address (an IPv6 address without brackets).
    pub host: String,
    /// Its SSH port.
    pub port: u16,
}

impl SshTarget {
    /// Parses `user@host`, `user@host:port` or `user@[v6addr]:port`.
    ///
    /// ```
    /// use orion_runtime::ssh::SshTarget;
    ///
    /// let t = SshTarget::parse("deploy@10.0.0.5:2222")?;
    /// assert_eq!((t.user.as_str(), t.host.as_str(), t.port), ("deploy", "10.0.0.5", 2222));
    /// assert_eq!(SshTarget::parse("deploy@box")?.port, 22);
    /// assert!(SshTarget::parse("box:22").unwrap_err().to_string().contains("--ssh-target"));
    /// # Ok::<(), orion_runtime::ssh::SshConfigError>(())
    /// ```
    pub fn parse(input: &str) -> Result<SshTarget, SshConfigError> {
        let bad = |reason: &str| SshConfigError::Target {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let (user, rest) = input
            .rsplit_once('@')
            .ok_or_else(|| bad("no user: want user@host[:port]"))?;
        if user.is_empty() {
            return Err(bad("the user before @ is empty"));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("an opening [ without a closing ]"))?;
            match after {
                "" => (host, None),
                p => (
                    host,
                    Some(
                        p.strip_prefix(':')
                            .ok_or_else(|| bad("want :port after ]"))?,
                    ),
                ),
            }
        } else {
            match rest.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(bad("the host after @ is empty"));
        }
        if host.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(bad("the host has a space or a slash in it"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(0) => return Err(bad("port 0 is not a port")),
                Ok(p) => p,
                Err(_) => return Err(bad(&format!("port {p:?} is not a number from 1 to 65535"))),
            },
        };
        Ok(SshTarget {
            user: user.to_string(),
            host: host.to_string(),
            port,
        })
    }

    /// How known-hosts files name it: `host` on port 22, `[host]:port` otherwise.
    pub fn known_hosts_name(&self) -> String {
        if self.port == DEFAULT_PORT {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for SshTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}@[{}]:{}", self.user, self.host, self.port)
        } else {
            write!(f, "{}@{}:{}", self.user, self.host, self.port)
        }
    }
}

impl std::str::FromStr for SshTarget {
    type Err = SshConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SshTarget::parse(s)
    }
}

/// How an [`SshRuntime`](super::SshRuntime) reaches its server and how hard it tries.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SshConfig {
    /// The account tasks run as (`--ssh-target`).
    pub target: SshTarget,
    /// The private key it logs in with (`--ssh-key`); unencrypted OpenSSH or
    /// PEM, ed25519, ECDSA or RSA. Its contents are never logged.
    pub key_file: PathBuf,
    /// The known-hosts file the server's key must be in (`--ssh-known-hosts`).
    ///
    /// Default `None`: `~/.ssh/known_hosts`, where `ssh` itself looks, so a
    /// server an operator has logged in to once is trusted the same way.
    pub known_hosts: Option<PathBuf>,
    /// The most connections open to the target at once.
    ///
    /// Default 5: one connection carries many channels (OpenSSH allows 10
    /// sessions per connection by default, `MaxSessions`), so five carry 50
    /// running tasks, while staying far below sshd's `MaxStartups` (10).
    pub pool_max: usize,
    /// How long an unused connection stays open; zero closes it as soon as it
    /// is idle (a new connection per job).
    ///
    /// Default 5 min: long enough to carry a cron-like burst of jobs on one
    /// handshake, short enough not to hold server slots overnight.
    pub idle_timeout: Duration,
    /// How often idle connections are pinged (and busy ones sent keepalives);
    /// one that does not answer is dropped.
    ///
    /// Default 30 s: well inside the idle timeouts of common NAT and firewall
    /// state tables (minutes), and cheap.
    pub keepalive: Duration,
    /// How long one connection attempt (TCP, handshake, authentication) may take.
    ///
    /// Default 10 s: a reachable server answers in well under a second; a
    /// silent one should count as a failure soon.
    pub connect_timeout: Duration,
    /// Consecutive failed connection attempts that open the circuit breaker.
    ///
    /// Default 5: one or two failures are a blip; five in a row mean the server
    /// is down or refusing, and waiting out `breaker_open_for` spares it.
    pub breaker_failures: u32,
    /// How long the breaker stays open before one trial attempt (half-open).
    ///
    /// Default 60 s: a restarting server is usually back within a minute.
    pub breaker_open_for: Duration,
    /// Where tasks' output is kept, `<data_dir>/<alloc>/stdout|stderr`, so that
    /// logs outlive the channel.
    pub data_dir: PathBuf,
}

impl SshConfig {
    /// A configuration with the defaults documented on each field.
    ///
    /// ```no_run
    /// use orion_runtime::ssh::{SshConfig, SshTarget};
    ///
    /// let target = SshTarget::parse("deploy@10.0.0.5")?;
    /// let config = SshConfig::new(target, "/etc/orion/id_ed25519", "/var/lib/orion/ssh");
    /// config.check()?;
    /// # Ok::<(), orion_runtime::ssh::SshConfigError>(())
    /// ```
    pub fn new(
        target: SshTarget,
        key_file: impl Into<PathBuf>,
        data_dir: impl Into<PathBuf>,
    ) -> SshConfig {
        SshConfig {
            target,
            key_file: key_file.into(),
            known_hosts: None,
            pool_max: 5,
            idle_timeout: Duration::from_secs(300),
            keepalive: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            breaker_failures: 5,
            breaker_open_for: Duration::from_secs(60),
            data_dir: data_dir.into(),
        }
    }

    /// The known-hosts file in use: [`known_hosts`](Self::known_hosts), else
    /// `$HOME/.ssh/known_hosts`.
    pub fn known_hosts_path(&self) -> Result<PathBuf, SshConfigError> {
        if let Some(p) = &self.known_hosts {
            return Ok(p.clone());
        }
        std::env::var_os("HOME")
            .map(|home| Path::new(&home).join(".ssh").join("known_hosts"))
            .ok_or_else(|| SshConfigError::KnownHosts {
                path: PathBuf::from("~/.ssh/known_hosts"),
                reason: "$HOME is not set; name the file".into(),
            })
    }

    /// Checks everything that can be checked without the server: the key file
    /// loads, the known-hosts file exists, and the numbers make sense.
    pub fn check(&self) -> Result<(), SshConfigError> {
        self.load_key()?;
        let known = self.known_hosts_path()?;
        if let Err(e) = std::fs::File::open(&known) {
            return Err(SshConfigError::KnownHosts {
                path: known,
                reason: io_reason(&e),
            });
        }
        if self.pool_max == 0 {
            return Err(SshConfigError::Field {
                field: "pool_max",
                reason: "must be at least 1".into(),
            });
        }
        if self.breaker_failures == 0 {
            return Err(SshConfigError::Field {
                field: "breaker_failures",
                reason: "must be at least 1".into(),
            });
        }
        for (field, d) in [
            ("keepalive", self.keepalive),
            ("connect_timeout", self.connect_timeout),
        ] {
            if d.is_zero() {
                return Err(SshConfigError::Field {
                    field,
                    reason: "must be longer than zero".into(),
                });
            }
        }
        Ok(())
    }

    /// Reads and decodes the private key (never printing any of it).
    pub(crate) fn load_key(&self) -> Result<PrivateKey, SshConfigError> {
        let bad = |reason: String| SshConfigError::KeyFile {
            path: self.key_file.clone(),
            reason,
        };
        let text = std::fs::read_to_string(&self.key_file).map_err(|e| bad(io_reason(&e)))?;
        russh::keys::decode_secret_key(&text, None).map_err(|e| match e {
            russh::keys::Error::KeyIsEncrypted => {
                bad("the key is encrypted; the ssh runtime takes unencrypted keys only".into())
            }
            other => bad(format!("not a usable private key ({other})")),
        })
    }
}

/// "does not exist", "permission denied", or the error's text.
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "cannot be read (permission denied)".into(),
        _ => e.to_string(),
    }
}

/// Why an [`SshConfig`] cannot be used; each names the flag or field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SshConfigError {
    /// The target does not parse.
    #[error("{TARGET_FLAG} {input:?}: {reason}")]
    Target {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The key file is missing, unreadable or not a key.
    #[error("{KEY_FLAG} {}: {reason}", path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The known-hosts file is missing or unreadable.
    #[error("{KNOWN_HOSTS_FLAG} {}: {reason}", path.display())]
    KnownHosts {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A numeric setting is out of range.
    #[error("ssh config {field}: {reason}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_and_without_ports() {
        let t = SshTarget::parse("root@127.0.0.1:2222").expect("parses");
        assert_eq!(t.to_string(), "root@127.0.0.1:2222");
        assert_eq!(t.known_hosts_name(), "[127.0.0.1]:2222");
        let t = SshTarget::parse("me@host").expect("parses");
        assert_eq!((t.port, t.known_hosts_name().as_str()), (22, "host"));
        let t = SshTarget::parse("me@[::1]:23").expect("parses");
        assert_eq!((t.host.as_str(), t.port), ("::1", 23));
        assert_eq!(t.to_string(), "me@[::1]:23");
    }

    #[test]
    fn bad_targets_say_what_is_wrong() {
        for (input, want) in [
            ("host:22", "no user"),
            ("@host", "user before @ is empty"),
            ("me@", "host after @ is empty"),
            ("me@host:ssh", "not a number"),
            ("me@host:0", "port 0"),
            ("me@host:70000", "not a number"),
            ("me@[::1", "closing ]"),
        ] {
            let e = SshTarget::parse(input).expect_err(input).to_string();
            assert!(e.starts_with("--ssh-target"), "{e}");
            assert!(e.contains(want), "{input}: {e}");
        }
    }
}
