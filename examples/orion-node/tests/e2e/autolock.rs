//! Autolock on a real secure `orion-node`: `agent --autolock` prints the
//! unlock key once on stdout (never in its log); after SIGTERM a restart
//! is locked (`/health` 503 `locked`); `cluster unlock` with a malformed or
//! a wrong key fails with one line (the same with `RUST_BACKTRACE=1`) and
//! a nonzero exit; with the right key from a file the node opens its store
//! and serves, its job still listed, and nothing printed the key again.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs the CLI against `spec`'s node, trusting its CA, with `token` (or
/// none) and `stdin` fed in.
fn cli_to(
    spec: &NodeSpec,
    token: Option<&str>,
    args: &[&str],
    stdin: &str,
) -> std::process::Output {
    let mut c = Command::new(BIN);
    c.args(["--addr", &spec.addr()])
        .args(args)
        .env_remove("ORION_TOKEN")
        .env_remove("ORION_UNLOCK_KEY")
        .env("RUST_BACKTRACE", "1")
        .env("ORION_CACERT", spec.ca_file())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(t) = token {
        c.env("ORION_TOKEN", t);
    }
    let mut child = c.spawn().expect("running the CLI");
    use std::io::Write;
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

/// The node's `/health`: status and body, once it answers.
async fn health(spec: &NodeSpec) -> (u16, serde_json::Value) {
    let url = format!("{}/health", spec.addr());
    wait_for("the node to answer", Duration::from_secs(60), async || {
        let r = http().get(&url).send().await.ok()?;
        let status = r.status().as_u16();
        Some((status, r.json().await.ok()?))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_autolocked_node_restarts_locked_and_opens_with_its_key() {
    if !engine().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut spec = NodeSpec::new(&node_id("e2e-autolock"), dir.path());
    spec.secure = true;
    spec.extra.push("--autolock".into());
    let _cleanup = Containers(vec![spec.id.clone()]);

    let mut node = Node::start(&spec);
    let key = wait_for(
        "the unlock key on stdout",
        Duration::from_secs(60),
        async || {
            node.stdout()
                .split_whitespace()
                .find(|w| w.starts_with("ORNKEY-1-"))
                .map(str::to_string)
        },
    )
    .await;
    assert_eq!(
        node.stdout().matches("ORNKEY-1-").count(),
        1,
        "printed once"
    );
    assert!(node.stdout().contains("orion-node cluster unlock"));
    let admin = management_token(&spec.data_dir).await;
    let job = web_spec(dir.path(), "web", 1);
    let out = cli_to(
        &spec,
        Some(&admin),
        &["apply", "-f", job.to_str().unwrap()],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    node.terminate();
    assert!(!node.log().contains(&key[9..]), "the key is never logged");

    // Restarted without the key: locked, the API says so.
    let node = Node::start(&spec);
    let (status, body) = health(&spec).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["locked"], true, "{body}");
    let out = cli_to(&spec, Some(&admin), &["job", "list"], "");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("this node is locked"),
        "{}",
        text(&out.stderr)
    );

    // A malformed key (from stdin), then a wrong one (from a file): one line each.
    let out = cli_to(&spec, None, &["cluster", "unlock"], "SWMKEY-1-nope\n");
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("malformed unlock key"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    let wrong = dir.path().join("wrong.key");
    std::fs::write(
        &wrong,
        orion::at_rest::UnlockKey::generate().to_text().as_str(),
    )
    .unwrap();
    let out = cli_to(
        &spec,
        None,
        &["cluster", "unlock", "--key-file", wrong.to_str().unwrap()],
        "",
    );
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("not this node's unlock key"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert_eq!(health(&spec).await.0, 503, "still locked");

    // The right key from a file: the node starts and its job is there.
    let right = dir.path().join("unlock.key");
    std::fs::write(&right, format!("{key}\n")).unwrap();
    let out = cli_to(
        &spec,
        None,
        &["cluster", "unlock", "--key-file", right.to_str().unwrap()],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("unlocked"),
        "{}",
        text(&out.stdout)
    );
    wait_for("the node to serve", Duration::from_secs(60), async || {
        let (status, _) = health(&spec).await;
        (status == 200).then_some(())
    })
    .await;
    let out = cli_to(&spec, Some(&admin), &["job", "list"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("web"), "{}", text(&out.stdout));
    let out = cli_to(&spec, Some(&admin), &["cluster", "unlock-key", "-q"], "");
    assert_eq!(text(&out.stdout).trim(), key, "{}", text(&out.stderr));
    assert!(!node.stdout().contains("ORNKEY-1-"), "not printed again");
    assert!(!node.log().contains(&key[9..]), "the key is never logged");
}
