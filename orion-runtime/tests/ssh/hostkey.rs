//! The server's host key is checked against known_hosts: a key other than the
//! recorded one, or a host not recorded, is refused with a message naming the
//! host and the offered key's fingerprint.

use orion_core::Runtime;
use orion_runtime::ssh::SshRuntime;

use crate::sshd_or_skip;
use crate::support::{fingerprint, keygen, path, write_known_hosts};

/// known_hosts holds another key for `[127.0.0.1]:port`: refused, naming the
/// host, the server's SHA256 fingerprint and the mismatch; no connection is
/// authenticated.
#[tokio::test]
async fn a_wrong_host_key_is_refused() {
    let sshd = sshd_or_skip!();
    keygen(&path(&sshd, "other_host_key"));
    let other = std::fs::read_to_string(path(&sshd, "other_host_key.pub")).expect("other key");
    let known = path(&sshd, "wrong_known_hosts");
    write_known_hosts(&known, sshd.port, &other);
    let mut config = sshd.config();
    config.known_hosts = Some(known);
    let rt = SshRuntime::new(config).expect("builds");
    let e = rt
        .ping()
        .await
        .expect_err("a wrong host key is refused")
        .to_string();
    eprintln!("refused: {e}");
    let host = format!("[127.0.0.1]:{}", sshd.port);
    let offered = fingerprint(&path(&sshd, "host_key.pub"));
    assert!(e.contains(&host), "{e}");
    assert!(e.contains(&offered), "{e} should name {offered}");
    assert!(e.contains("does not match"), "{e}");
    assert_eq!(rt.pool_stats().opened, 0);
    assert_eq!(sshd.accepted(), 0, "{}", sshd.log());
}

/// An empty known_hosts: the host is unknown, and refused the same way.
#[tokio::test]
async fn an_unknown_host_is_refused() {
    let sshd = sshd_or_skip!();
    let known = path(&sshd, "empty_known_hosts");
    std::fs::write(&known, "").expect("write");
    let mut config = sshd.config();
    config.known_hosts = Some(known);
    let rt = SshRuntime::new(config).expect("builds");
    let e = rt
        .ping()
        .await
        .expect_err("an unknown host is refused")
        .to_string();
    eprintln!("refused: {e}");
    let offered = fingerprint(&path(&sshd, "host_key.pub"));
    assert!(e.contains(&format!("[127.0.0.1]:{}", sshd.port)), "{e}");
    assert!(e.contains(&offered) && e.contains("unknown host"), "{e}");
}
