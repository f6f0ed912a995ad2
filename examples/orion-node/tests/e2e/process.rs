//! The process runtime end to end: `orion-node agent --runtime process` runs
//! a service (busybox httpd run directly, binding the port it is handed in
//! `ORION_PORT_HTTP`), serves it, restarts it when it is killed behind
//! Orion's back, adopts it without a duplicate when the agent is SIGKILLed
//! and started again, kills and reports a task over its memory limit, and
//! keeps an image job off the node with the reason. `dev --runtime process`
//! runs with no Docker engine reachable at all.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

fn busybox() -> Option<&'static str> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

/// The pids of the processes whose command line holds `needle`.
fn pids_with(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = state
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'));
        if !zombie
            && String::from_utf8_lossy(&cmd)
                .replace('\0', " ")
                .contains(needle)
        {
            out.push(pid);
        }
    }
    out
}

async fn page(addr: &str, job: &str) -> Option<(String, String)> {
    let j = get_json(&format!("{addr}/v1/jobs/{job}")).await?;
    let a = j["allocations"]
        .as_array()?
        .iter()
        .find(|a| a["state"] == "running" && a["health"]["status"] == "healthy")?;
    let port = a["ports"][0]["host_port"].as_u64()?;
    let body = get_text(&format!("http://127.0.0.1:{port}/")).await?;
    Some((a["id"].as_str()?.to_string(), body))
}

#[tokio::test]
async fn a_process_node_serves_restarts_adopts_and_limits_its_tasks() {
    if !engine().await {
        return;
    }
    let Some(bb) = busybox() else {
        assert!(
            !orion_core::testing::in_ci(),
            "busybox-static is needed: .ci/run installs it"
        );
        eprintln!("SKIP: no busybox binary on this host");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut spec = NodeSpec::new(&node_id("e2e-process"), dir.path());
    spec.extra.extend(["--runtime".into(), "process".into()]);
    let mut node = Node::start_ready(&spec).await;
    let addr = spec.addr();
    let marker = format!("orion-e2e-proc-{}", std::process::id());
    let web = json!({
        "name": "pweb",
        "task": {
            "command": ["sh", "-c", format!("echo hello from $ORION_ALLOC_ID > index.html; : > {marker}.conf; exec {bb} httpd -f -p $ORION_PORT_HTTP -h . -c {marker}.conf")],
            "ports": [{ "name": "http", "container_port": 80 }],
            "resources": { "cpu": 0.2, "memory_mb": 32 },
            "health_checks": [{ "type": "http", "port": "http", "path": "/", "interval": "300ms", "timeout": "250ms", "grace": "0s", "failures": 2 }]
        },
        "restart": { "attempts": 5, "interval": "1m", "delay": "200ms", "mode": "delay" }
    });
    submit(&addr, &web).await.unwrap();
    let (alloc, body) = wait_for(
        "the page through the assigned port",
        Duration::from_secs(30),
        async || page(&addr, "pweb").await,
    )
    .await;
    assert_eq!(body.trim(), format!("hello from {alloc}"));
    let first = pids_with(&marker);
    assert_eq!(first.len(), 1, "one httpd: {first:?}");

    // Killed behind Orion's back: restarted in place.
    Command::new("kill")
        .args(["-9", &first[0].to_string()])
        .status()
        .unwrap();
    wait_for("a restarted httpd", Duration::from_secs(30), async || {
        let now = pids_with(&marker);
        let j = get_json(&format!("{addr}/v1/jobs/pweb")).await?;
        let restarts = j["allocations"][0]["restarts"].as_u64()?;
        (now.len() == 1 && now[0] != first[0] && restarts >= 1).then_some(())
    })
    .await;
    wait_for("serving again", Duration::from_secs(30), async || {
        page(&addr, "pweb").await
    })
    .await;
    let before = pids_with(&marker);

    // The agent SIGKILLed and started again: the process is adopted, not
    // duplicated, and still serves.
    node.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pids_with(&marker), before, "the task outlives its agent");
    let node2 = Node::start_ready(&spec).await;
    wait_for(
        "the adopted task running",
        Duration::from_secs(30),
        async || page(&addr, "pweb").await,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        pids_with(&marker),
        before,
        "adopted: the same process, no duplicate"
    );
    let j = get_json(&format!("{addr}/v1/jobs/pweb")).await.unwrap();
    assert_eq!(j["running"], 1, "{j}");

    // Over its memory limit: killed, and reported OOM where the cgroup allows.
    let health = get_json(&format!("{addr}/health")).await.unwrap();
    let runtime_line = health.to_string();
    let hog = json!({
        "name": "phog", "type": "batch",
        "task": { "command": ["dd", "if=/dev/zero", "of=/dev/null", "bs=96M", "count=1"], "resources": { "cpu": 0.2, "memory_mb": 32 } },
        "restart": { "attempts": 0 }, "reschedule": { "attempts": 0 }
    });
    submit(&addr, &hog).await.unwrap();
    let msg = wait_for("the hog to fail", Duration::from_secs(30), async || {
        let j = get_json(&format!("{addr}/v1/jobs/phog")).await?;
        j["allocations"].as_array()?.iter().find_map(|a| {
            let m = a["message"].as_str().unwrap_or_default();
            m.contains("exited with code").then(|| m.to_string())
        })
    })
    .await;
    if runtime_line.contains("cgroup") && !runtime_line.contains("NOT fully enforced") {
        assert!(msg.contains("OOMKilled"), "{msg} ({runtime_line})");
    }
    eprintln!("process runtime: {runtime_line}\nover its limit: {msg}");

    // An image job is not for this node, and says why.
    let mut imaged = web_json("pimage", 1);
    imaged["name"] = Value::from("pimage");
    submit(&addr, &imaged).await.unwrap();
    let why = wait_for(
        "the image job's reason",
        Duration::from_secs(20),
        async || {
            let j = get_json(&format!("{addr}/v1/jobs/pimage")).await?;
            j["unplaced"].as_str().map(str::to_string)
        },
    )
    .await;
    assert!(
        why.contains("runtime: an image needs a node with the docker runtime"),
        "{why}"
    );

    // Stopping the job stops the process.
    let out = cli(&addr, &["job", "stop", "pweb"]);
    assert!(out.status.success(), "{out:?}");
    wait_for("the process to stop", Duration::from_secs(30), async || {
        pids_with(&marker).is_empty().then_some(())
    })
    .await;
    drop(node2);
}

#[test]
fn bad_runtime_flags_name_the_flag() {
    let out = Command::new(BIN)
        .args(["agent", "--runtime", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--runtime") && err.contains("nope"), "{err}");
}

/// `dev --runtime process` on a machine where no Docker engine answers.
#[test]
fn dev_runs_on_processes_without_docker() {
    let dir = tempfile::tempdir().unwrap();
    let port = port_range().0 + 8;
    let out = Command::new(BIN)
        .args([
            "dev",
            "--once",
            "--runtime",
            "process",
            "--nodes",
            "2",
            "--http-port",
            &port.to_string(),
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env("DOCKER_HOST", "unix:///nonexistent/orion-no-docker.sock")
        .env("ORION_LOG", "warn")
        .output()
        .expect("running orion-node dev");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.matches("open http://127.0.0.1:").count(),
        3,
        "{stdout}"
    );
    assert!(!stdout.contains("building the example image"), "{stdout}");
}
