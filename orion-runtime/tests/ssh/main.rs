//! `SshRuntime` against a real OpenSSH server: one binary, a module per area.
//!
//! Every test that needs a server starts its own through [`support::Sshd`]:
//! `/usr/sbin/sshd -D` on a free 127.0.0.1 port, with host and user keys made
//! by `ssh-keygen` in a tempdir, killed with everything under it when the test
//! ends, also when it fails. Without `sshd` the tests print `SKIP: ...` and
//! pass, unless CI (`CI` set, as `true` or `1`), where they fail. No traffic leaves 127.0.0.1.

mod support;

mod adopt;
mod breaker;
mod config;
mod dropped;
mod hostkey;
mod jobs;
mod pool;
mod signals;
mod suite;
