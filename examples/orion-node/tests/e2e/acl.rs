//! API tokens and TLS from the CLI against a real secure node (no
//! `--insecure-dev`): the management token in the data dir, the CA verified
//! with `--ca-cert` (one clear line without it), one clear line without a
//! token or with a token of the wrong scope, `acl token create | list |
//! revoke`, `cluster ca [status | rotate --wait]`, `cluster join-token
//! [--rotate]` and `cluster gossip-key list | install | use | remove`.

use std::process::Command;
use std::time::Duration;

use crate::support::*;

/// The CA file the CLI is given (set once the node is up).
static CA: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Runs the CLI against `addr` with `token` in `ORION_TOKEN` (or none),
/// verifying the node against its CA.
fn cli_as(addr: &str, token: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut c = Command::new(BIN);
    c.args(["--addr", addr])
        .args(args)
        .env_remove("ORION_TOKEN")
        .env("ORION_CACERT", CA.get().unwrap());
    if let Some(t) = token {
        c.env("ORION_TOKEN", t);
    }
    c.output().expect("running the CLI")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_uses_tokens_and_scopes_hold() {
    let solo = Solo::start_with("e2e-acl", |spec, _| spec.secure = true).await;
    let admin = management_token(&solo.spec.data_dir).await;
    assert!(!solo.log().contains(&admin), "the token is never logged");
    let _ = CA.set(solo.spec.ca_file());
    // Bare address: https, since a CA is given.
    let bare = solo.addr.trim_start_matches("https://").to_string();

    // Without the CA: one line saying what to give.
    let out = Command::new(BIN)
        .args(["--addr", &solo.addr, "job", "list"])
        .env_remove("ORION_CACERT")
        .env("ORION_TOKEN", &admin)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--ca-cert"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    // Plain HTTP to the TLS port: told so.
    let out = Command::new(BIN)
        .args(["--addr", &format!("http://{bare}"), "job", "list"])
        .env_remove("ORION_CACERT")
        .env("ORION_TOKEN", &admin)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(err.contains("speaks TLS"), "{err}");

    // The CA and its fingerprint, as the node logged it.
    let out = cli_as(&bare, None, &["cluster", "ca"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let fp = text(&out.stderr);
    let fp = fp.trim().rsplit(' ').next().unwrap().to_string();
    assert_eq!(fp.len(), 64, "{fp}");
    assert!(
        solo.log().contains(&fp),
        "the node logged the same fingerprint"
    );
    assert!(text(&out.stdout).contains("BEGIN CERTIFICATE"));

    // Join tokens: shown by the node that made them, rotated on demand,
    // never logged.
    let out = cli_as(
        &bare,
        Some(&admin),
        &["cluster", "join-token", "worker", "-q"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let worker = text(&out.stdout).trim().to_string();
    assert!(worker.starts_with(&format!("ORN-1-{fp}-")), "{worker}");
    let out = cli_as(
        &bare,
        Some(&admin),
        &["cluster", "join-token", "worker", "--rotate", "-q"],
    );
    let rotated = text(&out.stdout).trim().to_string();
    assert!(
        rotated.starts_with("ORN-1-") && rotated != worker,
        "{rotated}"
    );
    let log = solo.log();
    assert!(
        !log.contains(&worker[71..]) && !log.contains(&rotated[71..]),
        "join tokens are never logged"
    );
    let out = cli_as(&bare, None, &["cluster", "join-token", "manager"]);
    assert!(!out.status.success(), "a token needs a token");

    // The gossip keyring: one key made at init; a rotation from the CLI
    // (install, use, remove), keys never printed except by `generate`.
    let gk = |args: &[&str]| {
        let mut all = vec!["cluster", "gossip-key"];
        all.extend_from_slice(args);
        cli_as(&bare, Some(&admin), &all)
    };
    let out = gk(&["list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    let old_id = listed.split_whitespace().next().unwrap().to_string();
    assert!(
        listed.trim().ends_with("primary") && old_id.len() == 8,
        "{listed}"
    );
    let out = gk(&["generate"]);
    let key = text(&out.stdout).trim().to_string();
    assert_eq!(key.len(), 44, "{key}");
    let out = gk(&["install", "--key", &key]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let new_id = text(&out.stdout).trim().to_string();
    let out = gk(&["remove", &old_id]);
    assert!(!out.status.success(), "the primary stays");
    assert!(
        text(&out.stderr).contains("primary"),
        "{}",
        text(&out.stderr)
    );
    assert!(gk(&["use", &new_id]).status.success());
    assert!(gk(&["remove", &old_id]).status.success());
    let listed = text(&gk(&["list"]).stdout);
    assert_eq!(listed.trim(), format!("{new_id}  primary"));
    let out = gk(&["install", "--key", "short"]);
    let err = text(&out.stderr);
    assert!(!out.status.success() && err.contains("32 bytes"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(!solo.log().contains(&key), "a gossip key is never logged");

    let out = cli_as(&solo.addr, None, &["job", "list"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("ORION_TOKEN"), "{err}");
    assert!(cli_as(&solo.addr, Some(&admin), &["job", "list"])
        .status
        .success());

    let out = cli_as(
        &solo.addr,
        Some(&admin),
        &["acl", "token", "create", "--name", "ro", "--scope", "read"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ro = text(&out.stdout).trim().to_string();
    assert!(
        ro.starts_with("orn_") && ro.len() == 68,
        "the secret alone on stdout: {ro}"
    );

    let spec = solo.dir.path().join("web.json");
    std::fs::write(
        &spec,
        r#"{"name": "web", "task": {"image": "orion-test/none:1", "resources": {"cpu": 0.1, "memory_mb": 16}}}"#,
    )
    .unwrap();
    let out = cli_as(
        &solo.addr,
        Some(&ro),
        &["job", "run", spec.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("scopes do not allow"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(cli_as(&solo.addr, Some(&ro), &["job", "list"])
        .status
        .success());

    let out = cli_as(&solo.addr, Some(&admin), &["acl", "token", "list"]);
    let list = text(&out.stdout);
    assert!(list.contains("bootstrap") && list.contains("ro"), "{list}");
    assert!(!list.contains(&ro[4..]), "no secret listed");
    let accessor = list
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("ro"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let out = cli_as(
        &solo.addr,
        Some(&admin),
        &["acl", "token", "revoke", &accessor],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cli_as(&solo.addr, Some(&ro), &["job", "list"]);
    assert!(
        text(&out.stderr).contains("not valid"),
        "{}",
        text(&out.stderr)
    );

    // The CA rotated from the CLI: `--wait` follows it to the end; then the
    // old CA file no longer verifies the node (one line), the new one does.
    // (A copy: the node rewrites its own ca.pem as it rotates.)
    let old_ca = solo.dir.path().join("old-ca.pem");
    std::fs::copy(CA.get().unwrap(), &old_ca).unwrap();
    let out = cli_as(&solo.addr, Some(&admin), &["cluster", "ca", "status"]);
    let status = text(&out.stdout);
    assert!(
        out.status.success() && status.contains("settled"),
        "{status}"
    );
    let out = cli_as(
        &solo.addr,
        Some(&admin),
        &["cluster", "ca", "rotate", "--wait", "--timeout", "60s"],
    );
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    assert!(
        said.contains("CA rotation 1 started") && said.contains("is over"),
        "{said}"
    );
    // The node presents the old CA's link until its next look at the
    // record (half a second).
    let old_list = || {
        Command::new(BIN)
            .args(["--addr", &solo.addr, "job", "list"])
            .env("ORION_TOKEN", &admin)
            .env("ORION_CACERT", &old_ca)
            .output()
            .unwrap()
    };
    let mut out = old_list();
    for _ in 0..50 {
        if !out.status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        out = old_list();
    }
    let err = text(&out.stderr);
    assert!(
        !out.status.success() && err.contains("certificate"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    let out = cli_as(&solo.addr, None, &["cluster", "ca"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let new_ca = solo.dir.path().join("new-ca.pem");
    std::fs::write(&new_ca, &out.stdout).unwrap();
    let out = Command::new(BIN)
        .args(["--addr", &solo.addr, "cluster", "ca", "status"])
        .env("ORION_TOKEN", &admin)
        .env("ORION_CACERT", &new_ca)
        .output()
        .unwrap();
    let status = text(&out.stdout);
    assert!(
        out.status.success() && status.contains("rotation:  1") && status.contains("settled"),
        "{status}{}",
        text(&out.stderr)
    );
}
