//! Secrets on a real node and the real engine: a secret written with the CLI
//! (from a file, then a new version from stdin) reaches a restricted task as
//! a read-only file on tmpfs that its user (65534) reads, and as a variable;
//! the value is nowhere else — not in any file under the node's data dir,
//! not in its log, not in any answer of the API or the CLI, not in events —
//! and its file is gone from the node once the task stops. A task whose
//! secret does not exist is not started, and says which one.

use orion_core::testing::fixtures::files_holding;
use std::time::Duration;

use base64::Engine as _;
use orion_runtime::image;
use serde_json::{json, Value};

use crate::support::*;

/// A value no other run makes: the clock's nanoseconds and the process id.
fn marker() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("mk{nanos:x}p{:x}q", std::process::id())
}

async fn exec(addr: &str, alloc: &str, cmd: &[&str]) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{addr}/v1/allocations/{alloc}/exec"))
        .json(&json!({ "command": cmd }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn a_secret_reaches_its_task_only_and_a_missing_one_keeps_it_waiting() {
    if !engine().await {
        return;
    }
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let shm_dir = shm.path().to_path_buf();
    let solo = Solo::start_with("e2e-secret", |spec, _| {
        spec.extra
            .extend(["--secrets-dir".into(), shm_dir.display().to_string()]);
    })
    .await;
    let addr = solo.addr.clone();
    let value = marker();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&value);
    let held = tempfile::tempdir().unwrap();
    let file = held.path().join("value");
    std::fs::write(&file, format!("old-{value}")).unwrap();

    // From a file, then a new version from stdin.
    let out = cli(
        &addr,
        &[
            "secret",
            "create",
            "x",
            "--from-file",
            file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let mut child = std::process::Command::new(BIN)
        .args(["--addr", &addr, "secret", "create", "x", "--from-file", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(value.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("secret x version 2"), "{said}");
    let listed = cli(&addr, &["secret", "list"]);
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(listed.contains('x') && listed.contains('2'), "{listed}");

    let job = json!({
        "name": "sec",
        "task": {
            "image": image::DEMO_IMAGE,
            "command": ["sleep", "3600"],
            "security": "restricted",
            "secrets": [{ "name": "x" }],
            "env_from_secret": { "X_VALUE": "x" },
            "resources": { "cpu": 0.05, "memory_mb": 16 }
        }
    });
    submit(&addr, &job).await.unwrap();
    let alloc = running_alloc(&addr, "sec", Duration::from_secs(60)).await;
    let read = exec(&addr, &alloc, &["cat", "/run/secrets/x"]).await;
    assert_eq!(read["stdout"], value, "{read}");
    let who = exec(&addr, &alloc, &["sh", "-c", "id -u; echo \"$X_VALUE\""]).await;
    assert_eq!(who["stdout"], format!("65534\n{value}\n"), "{who}");
    let mounts = exec(&addr, &alloc, &["cat", "/proc/mounts"]).await;
    let line = mounts["stdout"]
        .as_str()
        .unwrap()
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("/run/secrets/x"))
        .unwrap_or_else(|| panic!("no mount at /run/secrets/x: {mounts}"))
        .to_string();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[2], "tmpfs", "{line}");
    assert!(fields[3].split(',').any(|o| o == "ro"), "{line}");
    let denied = exec(&addr, &alloc, &["sh", "-c", "echo y > /run/secrets/x"]).await;
    assert_ne!(denied["exit_code"], 0, "{denied}");

    // A task whose secret does not exist is not started; it says which.
    let mut lost = job.clone();
    lost["name"] = json!("lost");
    lost["task"]["secrets"] = json!([{ "name": "nope" }]);
    lost["task"]["env_from_secret"] = json!({});
    submit(&addr, &lost).await.unwrap();
    let why = wait_for("lost to say why", Duration::from_secs(30), async || {
        let j = get_json(&format!("{addr}/v1/jobs/lost")).await?;
        let a = &j["allocations"][0];
        let m = a["message"].as_str()?.to_string();
        (a["state"] == "pending" && m.contains("secret nope does not exist")).then_some(m)
    })
    .await;
    assert_eq!(why, "1 node: secret nope does not exist");
    let status = cli(&addr, &["job", "status", "lost"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("secret nope does not exist"),
        "{status:?}"
    );

    // The value is in no answer, no file of the node, no log line, no event.
    let mut answers = String::new();
    for path in [
        "/v1/jobs",
        "/v1/jobs/sec",
        "/v1/jobs/lost",
        "/v1/secrets",
        "/v1/secrets/x",
        "/v1/allocations",
        &format!("/v1/allocations/{alloc}"),
        "/v1/nodes",
    ] {
        answers.push_str(&get_text(&format!("{addr}{path}")).await.unwrap());
    }
    let job_view = get_json(&format!("{addr}/v1/jobs/sec")).await.unwrap();
    assert_eq!(
        job_view["spec"]["task"]["secrets"],
        json!([{ "name": "x" }])
    );
    assert_eq!(
        job_view["spec"]["task"]["env_from_secret"],
        json!({ "X_VALUE": "x" })
    );
    for args in [
        &["job", "status", "sec"][..],
        &["job", "list"],
        &["secret", "list", "--json"],
        &["events", "--json"],
    ] {
        let out = cli(&addr, args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        answers.push_str(&String::from_utf8_lossy(&out.stdout));
        answers.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    assert!(answers.contains("\"x\""), "the answers were read");
    for needle in [value.as_str(), encoded.as_str()] {
        assert!(!answers.contains(needle), "an answer holds the value");
        assert!(
            !solo.log().contains(needle),
            "the node's log holds the value"
        );
        let found = files_holding(solo.dir.path(), needle.as_bytes());
        assert!(
            found.is_empty(),
            "files under the data dir hold the value: {found:?}"
        );
    }
    // On the node, only the task's file holds it.
    let found = files_holding(&shm_dir, value.as_bytes());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains(&alloc), "{found:?}");

    // Stopped: the file goes with the container.
    let r = reqwest::Client::new()
        .delete(format!("{addr}/v1/jobs/sec"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    wait_for(
        "the secret file removed",
        Duration::from_secs(60),
        async || {
            files_holding(&shm_dir, value.as_bytes())
                .is_empty()
                .then_some(())
        },
    )
    .await;
    assert!(Containers::running_of_alloc(&alloc).is_empty());
}
