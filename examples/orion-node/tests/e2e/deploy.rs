//! Deployments on the real engine: a workload in three versions (v1 healthy,
//! v2 whose health endpoint answers 500, v3 healthy) rolled stop-first with
//! auto-revert, start-first, and through a canary promoted by hand, while a
//! poller reads the job every 100 ms and records the fewest healthy copies it
//! saw; and `job run`'s exit codes and last lines.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use orion_runtime::image;
use serde_json::{json, Value};

use crate::support::*;

/// The workload: busybox httpd whose `/cgi-bin/health` answers `code`, and
/// whose `/` says `v<v>`.
fn workload(name: &str, replicas: u32, v: u32, code: u16, update: Value) -> Value {
    let script = "mkdir -p /tmp/www/cgi-bin; \
        printf '#!/bin/sh\\necho \"Status: %s\"\\necho\\necho v%s\\n' \"$CODE\" \"$V\" > /tmp/www/cgi-bin/health; \
        chmod +x /tmp/www/cgi-bin/health; echo v$V > /tmp/www/index.html; \
        exec httpd -f -p 80 -h /tmp/www";
    json!({
        "name": name,
        "replicas": replicas,
        "task": {
            "image": image::DEMO_IMAGE,
            "command": ["sh", "-c", script],
            "env": { "V": v.to_string(), "CODE": code.to_string() },
            "ports": [{ "name": "http", "container_port": 80 }],
            "resources": { "cpu": 0.05, "memory_mb": 16 },
            "health_checks": [{
                "type": "http", "port": "http", "path": "/cgi-bin/health",
                "interval": "500ms", "timeout": "400ms", "grace": "0s", "failures": 3
            }]
        },
        "update": update
    })
}

/// Live allocations that run and pass their checks.
async fn healthy(addr: &str, job: &str) -> Option<Vec<Value>> {
    let j = get_json(&format!("{addr}/v1/jobs/{job}")).await?;
    Some(
        j["allocations"]
            .as_array()?
            .iter()
            .filter(|a| {
                a["desired"] == "run"
                    && a["state"] == "running"
                    && a["health"]["status"] == "healthy"
            })
            .cloned()
            .collect(),
    )
}

/// Polls the job every 100 ms and keeps the fewest healthy copies seen.
fn poller(addr: String, job: &'static str) -> (Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let fewest = Arc::new(AtomicUsize::new(usize::MAX));
    let f = fewest.clone();
    let task = tokio::spawn(async move {
        loop {
            if let Some(h) = healthy(&addr, job).await {
                f.fetch_min(h.len(), Ordering::SeqCst);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (fewest, task)
}

async fn deployment(addr: &str, job: &str) -> Option<Value> {
    get_json(&format!("{addr}/v1/jobs/{job}/deployment")).await
}

async fn wait_deployment(addr: &str, job: &str, version: u64, status: &str) -> Value {
    wait_for(
        &format!("{job} version {version} deployment {status}"),
        Duration::from_secs(90),
        async || {
            let d = deployment(addr, job).await?;
            (d["job_version"] == version && d["status"] == status).then_some(d)
        },
    )
    .await
}

fn write(dir: &Path, name: &str, spec: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(spec).unwrap()).unwrap();
    path.to_string_lossy().into_owned()
}

async fn run_cli(addr: &str, args: Vec<String>) -> std::process::Output {
    let addr = addr.to_string();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&addr, &args)
    })
    .await
    .unwrap()
}

fn last_line(out: &[u8]) -> String {
    String::from_utf8_lossy(out)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn stop_first_rolls_fail_and_revert_then_complete_with_job_run_exit_codes() {
    if !engine().await {
        return;
    }
    let solo = Solo::start("e2e-roll").await;
    let addr = solo.addr.clone();
    let update = json!({
        "max_parallel": 2, "min_healthy_time": "1s", "healthy_deadline": "20s",
        "progress_deadline": "40s", "auto_revert": true
    });
    let v1 = write(
        solo.dir.path(),
        "v1.json",
        &workload("roll", 4, 1, 200, update.clone()),
    );
    let v2 = write(
        solo.dir.path(),
        "v2.json",
        &workload("roll", 4, 2, 500, update.clone()),
    );
    let v3 = write(
        solo.dir.path(),
        "v3.json",
        &workload("roll", 4, 3, 200, update),
    );

    let out = run_cli(&addr, vec!["job".into(), "run".into(), v1]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(last_line(&out.stdout).contains("successful"), "{out:?}");
    let v1_ids: Vec<String> = healthy(&addr, "roll")
        .await
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(v1_ids.len(), 4);

    let (fewest, poll) = poller(addr.clone(), "roll");
    let out = run_cli(&addr, vec!["job".into(), "run".into(), v2]).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "a failed, reverted deployment: {out:?}"
    );
    let err = last_line(&out.stderr);
    assert!(
        err.contains("failed") && err.contains("rolling back to version 1"),
        "{err}"
    );
    // The revert is version 3, version 1's spec, as a deployment of its own.
    let d = wait_deployment(&addr, "roll", 3, "successful").await;
    assert_eq!(d["desired"], 4, "{d}");
    let now = healthy(&addr, "roll").await.unwrap();
    assert_eq!(now.len(), 4);
    let kept = now
        .iter()
        .filter(|a| v1_ids.contains(&a["id"].as_str().unwrap().to_string()))
        .count();
    assert_eq!(kept, 2, "the two copies v2 never replaced run on: {now:?}");
    for a in &now {
        let port = a["ports"][0]["host_port"].as_u64().unwrap();
        let page = get_text(&format!("http://127.0.0.1:{port}/")).await;
        assert_eq!(page.as_deref().map(str::trim), Some("v1"), "{a}");
    }

    let out = run_cli(&addr, vec!["job".into(), "run".into(), v3]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(last_line(&out.stdout).contains("successful"), "{out:?}");
    poll.abort();
    let floor = fewest.load(Ordering::SeqCst);
    assert!(
        floor >= 2,
        "never fewer than replicas - max_parallel healthy: saw {floor}"
    );
    let versions = get_json(&format!("{addr}/v1/jobs/roll/versions"))
        .await
        .unwrap();
    let stable: Vec<(u64, bool)> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["stable"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(stable, [(1, true), (2, false), (3, true), (4, true)]);
    let history = cli(&addr, &["job", "history", "roll"]);
    let text = String::from_utf8_lossy(&history.stdout);
    assert!(
        text.contains("version 2  submitted") && text.contains("changed: task.env"),
        "{text}"
    );

    // Exit status 1: an error (a spec that does not parse), nothing written.
    let bad = solo.dir.path().join("bad.yaml");
    std::fs::write(&bad, "name: roll\nreplicas: many\n").unwrap();
    let out = cli(&addr, &["job", "run", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // Exit status 2: an allocation that cannot be placed; the old version runs on.
    let mut nowhere = workload("roll", 4, 4, 200, json!({ "max_parallel": 2 }));
    nowhere["node_selectors"] = json!({ "gpu": "true" });
    let nowhere = write(solo.dir.path(), "nowhere.json", &nowhere);
    let out = run_cli(&addr, vec!["job".into(), "run".into(), nowhere]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        last_line(&out.stderr).contains("cannot be placed"),
        "{out:?}"
    );
    assert_eq!(healthy(&addr, "roll").await.unwrap().len(), 4, "v3 runs on");
}

#[tokio::test]
async fn start_first_and_a_canary_promoted_by_hand() {
    if !engine().await {
        return;
    }
    let solo = Solo::start("e2e-canary").await;
    let addr = solo.addr.clone();
    let start_first = json!({
        "max_parallel": 1, "min_healthy_time": "1s", "healthy_deadline": "20s",
        "order": "start_first"
    });
    submit(&addr, &workload("sf", 3, 1, 200, start_first.clone()))
        .await
        .unwrap();
    wait_deployment(&addr, "sf", 1, "successful").await;
    let (fewest, poll) = poller(addr.clone(), "sf");
    submit(&addr, &workload("sf", 3, 3, 200, start_first))
        .await
        .unwrap();
    wait_deployment(&addr, "sf", 2, "successful").await;
    poll.abort();
    let floor = fewest.load(Ordering::SeqCst);
    assert!(
        floor >= 3,
        "start first never runs fewer than replicas healthy: saw {floor}"
    );

    let canary = json!({ "canary": 1, "min_healthy_time": "1s", "healthy_deadline": "20s" });
    submit(&addr, &workload("can", 3, 1, 200, canary.clone()))
        .await
        .unwrap();
    wait_deployment(&addr, "can", 1, "successful").await;
    let (fewest, poll) = poller(addr.clone(), "can");
    submit(&addr, &workload("can", 3, 3, 200, canary))
        .await
        .unwrap();
    let d = wait_for("the canary healthy", Duration::from_secs(60), async || {
        let d = deployment(&addr, "can").await?;
        (d["healthy"] == 1).then_some(d)
    })
    .await;
    assert_eq!(
        d["description"], "canaries healthy; waiting for promotion",
        "{d}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let h = healthy(&addr, "can").await.unwrap();
    let versions: Vec<u64> = h
        .iter()
        .map(|a| a["job_version"].as_u64().unwrap())
        .collect();
    assert_eq!(h.len(), 4, "one canary beside the three old: {versions:?}");
    let out = cli(&addr, &["job", "promote", "can"]);
    assert!(out.status.success(), "{out:?}");
    wait_deployment(&addr, "can", 2, "successful").await;
    poll.abort();
    let floor = fewest.load(Ordering::SeqCst);
    assert!(
        floor >= 2,
        "stop first after the promotion: replicas - max_parallel: saw {floor}"
    );
    let h = healthy(&addr, "can").await.unwrap();
    assert!(
        h.iter().all(|a| a["job_version"] == 2) && h.len() == 3,
        "{h:?}"
    );
    let out = cli(&addr, &["job", "promote", "can"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is successful"), "{err}");
}

/// A task whose spec has no health checks uses its image's own HEALTHCHECK:
/// the engine runs it, the allocation's health follows it, an unhealthy task
/// is restarted in place, and a deployment waits for it to be healthy.
#[tokio::test]
async fn an_images_own_healthcheck_is_used_when_the_spec_has_none() {
    if !engine().await {
        return;
    }
    let docker = orion_runtime::DockerRuntime::connect_local().unwrap();
    let mut changes = image::demo_changes();
    changes.push(
        r#"HEALTHCHECK --interval=1s --timeout=1s --retries=2 CMD ["test", "-f", "/tmp/ok"]"#
            .to_string(),
    );
    let tag = "orion-test/web-healthcheck:1";
    image::ensure_built(&docker, tag, image::demo_rootfs, &changes)
        .await
        .unwrap();
    let solo = Solo::start("e2e-imghc").await;
    let addr = solo.addr.clone();
    let job = |name: &str, cmd: &str| {
        json!({
            "name": name,
            "task": {
                "image": tag,
                "command": ["sh", "-c", cmd],
                "resources": { "cpu": 0.05, "memory_mb": 16 }
            },
            "update": { "min_healthy_time": "1s" },
            "restart": { "delay": "1s", "attempts": 5 }
        })
    };
    submit(
        &addr,
        &job("good", "touch /tmp/ok; exec httpd -f -p 80 -h /www"),
    )
    .await
    .unwrap();
    submit(
        &addr,
        &job(
            "sours",
            "touch /tmp/ok; (sleep 4; rm /tmp/ok) & exec httpd -f -p 80 -h /www",
        ),
    )
    .await
    .unwrap();
    let d = wait_deployment(&addr, "good", 1, "successful").await;
    assert_eq!(d["healthy"], 1, "{d}");
    let a = get_json(&format!("{addr}/v1/jobs/good")).await.unwrap()["allocations"][0].clone();
    assert_eq!(a["health"]["status"], "healthy", "{a}");
    let restarted = wait_for(
        "sours restarted after turning unhealthy",
        Duration::from_secs(60),
        async || {
            let a = get_json(&format!("{addr}/v1/jobs/sours")).await?["allocations"][0].clone();
            (a["restarts"].as_u64()? >= 1).then_some(a)
        },
    )
    .await;
    assert_eq!(restarted["desired"], "run", "{restarted}");
}
