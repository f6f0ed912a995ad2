//! Bad input is refused at the door, each error one line naming the flag.

use orion_runtime::ssh::{SshConfig, SshRuntime, SshTarget};

use crate::support::{have_openssh, keygen};

/// A target that does not parse names `--ssh-target` and what is wrong.
#[test]
fn a_bad_target_names_the_flag() {
    let e = SshTarget::parse("no-user-here:22")
        .expect_err("no user")
        .to_string();
    assert!(
        e.starts_with("--ssh-target \"no-user-here:22\": no user"),
        "{e}"
    );
    let e = SshTarget::parse("root@host:99999")
        .expect_err("port")
        .to_string();
    assert!(e.contains("--ssh-target") && e.contains("99999"), "{e}");
    assert!(!e.contains('\n'));
}

/// A missing key file, an encrypted one, a missing known_hosts: each refused
/// by `SshRuntime::new`, naming `--ssh-key` / `--ssh-known-hosts` and the path.
#[test]
fn missing_files_name_their_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = SshTarget::parse("root@127.0.0.1:1").expect("target");
    let missing_key = dir.path().join("no_such_key");
    let config = SshConfig::new(target.clone(), &missing_key, dir.path().join("data"));
    let e = SshRuntime::new(config)
        .expect_err("missing key")
        .to_string();
    assert_eq!(
        e,
        format!("--ssh-key {}: no such file", missing_key.display())
    );

    let not_a_key = dir.path().join("not_a_key");
    std::fs::write(&not_a_key, "hello").expect("write");
    let config = SshConfig::new(target.clone(), &not_a_key, dir.path().join("data"));
    let e = SshRuntime::new(config).expect_err("not a key").to_string();
    assert!(
        e.starts_with("--ssh-key") && e.contains("not a usable private key"),
        "{e}"
    );

    if !have_openssh() {
        return;
    }
    let key = dir.path().join("key");
    keygen(&key);
    let missing_known = dir.path().join("no_known_hosts");
    let mut config = SshConfig::new(target.clone(), &key, dir.path().join("data"));
    config.known_hosts = Some(missing_known.clone());
    let e = SshRuntime::new(config)
        .expect_err("missing known_hosts")
        .to_string();
    assert_eq!(
        e,
        format!(
            "--ssh-known-hosts {}: no such file",
            missing_known.display()
        )
    );

    let locked = dir.path().join("locked_key");
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "a passphrase", "-f"])
        .arg(&locked)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    let config = SshConfig::new(target, &locked, dir.path().join("data"));
    let e = SshRuntime::new(config).expect_err("encrypted").to_string();
    assert!(e.starts_with("--ssh-key") && e.contains("encrypted"), "{e}");
    assert!(!e.contains("a passphrase"));
}
