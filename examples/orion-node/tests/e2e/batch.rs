//! Batch jobs on the real engine: a run that exits 0 completes and is never
//! started again, with its exit code, start and finish times kept; one that
//! exits 3 is retried per its restart block and then fails with code 3; a
//! run past its timeout is killed with the reason; `parallelism` caps the runs
//! at once; a missing image is not retried; `job gc` forgets finished jobs.

use std::time::Duration;

use orion_runtime::image;
use serde_json::{json, Value};

use crate::support::*;

fn batch(name: &str, cmd: &str) -> Value {
    json!({
        "name": name,
        "type": "batch",
        "task": {
            "image": image::DEMO_IMAGE,
            "command": ["sh", "-c", cmd],
            "resources": { "cpu": 0.05, "memory_mb": 16 }
        },
        "restart": { "attempts": 2, "delay": "1s" },
        "reschedule": { "unlimited": false, "attempts": 0 }
    })
}

async fn job(addr: &str, name: &str) -> Option<Value> {
    get_json(&format!("{addr}/v1/jobs/{name}")).await
}

async fn wait_health(addr: &str, name: &str, health: &str) -> Value {
    wait_for(
        &format!("{name} {health}"),
        Duration::from_secs(60),
        async || {
            let j = job(addr, name).await?;
            (j["health"] == health).then_some(j)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_jobs_complete_fail_time_out_and_are_collected() {
    if !engine().await {
        return;
    }
    let solo = Solo::start("e2e-batch").await;
    let addr = solo.addr.clone();
    submit(&addr, &batch("ok", "sleep 1; echo done"))
        .await
        .unwrap();
    submit(&addr, &batch("three", "exit 3")).await.unwrap();
    let mut slow = batch("slow", "sleep 30");
    slow["task"]["timeout"] = "2s".into();
    slow["restart"] = json!({ "attempts": 0 });
    submit(&addr, &slow).await.unwrap();
    let mut wide = batch("wide", "sleep 2");
    wide["replicas"] = 4.into();
    wide["parallelism"] = 2.into();
    submit(&addr, &wide).await.unwrap();
    let mut ghost = batch("ghost", "true");
    ghost["task"]["image"] = "orion-test/does-not-exist:1".into();
    submit(&addr, &ghost).await.unwrap();

    // At most two of `wide` live at once, all four complete in the end.
    let mut most = 0;
    wait_for("wide complete", Duration::from_secs(60), async || {
        let j = job(&addr, "wide").await?;
        let live = j["allocations"]
            .as_array()?
            .iter()
            .filter(|a| a["desired"] == "run" && a["state"] != "complete")
            .count();
        most = most.max(live);
        (j["health"] == "complete").then_some(())
    })
    .await;
    assert!(most <= 2, "parallelism 2: saw {most} at once");

    let j = wait_health(&addr, "ok", "complete").await;
    let a = &j["allocations"][0];
    assert_eq!(
        (a["state"].as_str(), a["exit_code"].as_i64()),
        (Some("complete"), Some(0)),
        "{a}"
    );
    let (start, end) = (
        a["started_ms"].as_u64().unwrap(),
        a["finished_ms"].as_u64().unwrap(),
    );
    assert!(end - start >= 900, "ran about a second: {a}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = job(&addr, "ok").await.unwrap();
    assert_eq!(
        again["allocations"].as_array().unwrap().len(),
        1,
        "never started again"
    );
    assert_eq!(again["allocations"][0]["restarts"], 0);

    let j = wait_health(&addr, "three", "failed").await;
    let a = &j["allocations"][0];
    assert_eq!(
        (a["exit_code"].as_i64(), a["restarts"].as_u64()),
        (Some(3), Some(2)),
        "{a}"
    );
    assert!(
        a["message"]
            .as_str()
            .unwrap()
            .contains("restarts spent (2 within 30m)"),
        "{a}"
    );

    let j = wait_health(&addr, "slow", "failed").await;
    let msg = j["allocations"][0]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("timed out after 2s"), "{msg}");

    let j = wait_health(&addr, "ghost", "failed").await;
    let a = &j["allocations"][0];
    let msg = a["message"].as_str().unwrap();
    assert!(msg.contains("not retried"), "{msg}");
    assert_eq!(a["failures"], 1, "one attempt only: {a}");

    let out = cli(&addr, &["job", "status", "ok"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        // The task sleeps 1 s; a loaded machine adds to that.
        text.contains("status complete")
            && text.contains("exit 0 after ")
            && !text.contains("exit 0 after 0s"),
        "{text}"
    );
    let out = cli(&addr, &["job", "gc"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for name in ["ok", "three", "slow", "wide", "ghost"] {
        assert!(text.contains(name), "{name} collected: {text}");
    }
    assert!(job(&addr, "ok").await.is_none(), "forgotten");
}
