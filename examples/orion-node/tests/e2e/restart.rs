//! Restart and reschedule policies on the real engine, on a 3-node cluster: a
//! task that exits at once is restarted on its node after the policy's
//! delays (exponential, with at most 25% jitter), then — its restarts spent —
//! replaced on another node after the reschedule delay, with the reason kept;
//! and once the reschedules are spent too, its slot stays failed and no more
//! allocation records are made.

use std::time::{Duration, Instant};

use orion_runtime::image;
use serde_json::{json, Value};

use crate::support::*;

async fn allocs(addr: &str, job: &str) -> Option<Vec<Value>> {
    let j = get_json(&format!("{addr}/v1/jobs/{job}")).await?;
    j["allocations"].as_array().cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_task_backs_off_then_moves_node_then_stays_failed() {
    if !engine().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let c = LocalCluster::start(dir.path(), "e2e-crash", 3, 0).await;
    let addr = c.nodes[0].spec.addr();
    let spec = json!({
        "name": "crash",
        "task": {
            "image": image::DEMO_IMAGE,
            "command": ["sh", "-c", "sleep 0.2; exit 3"],
            "resources": { "cpu": 0.05, "memory_mb": 16 }
        },
        "restart": { "attempts": 2, "delay": "2s", "backoff": "exponential", "max_delay": "10s" },
        "reschedule": { "delay": "1s", "delay_function": "constant", "unlimited": false, "attempts": 1 }
    });
    submit(&addr, &spec).await.unwrap();

    // Each restart of the first allocation, timed from its previous start.
    let mut starts: Vec<Instant> = Vec::new();
    let mut seen_restarts = 0;
    let first = wait_for(
        "two restarts, then giving up",
        Duration::from_secs(60),
        async || {
            let all = allocs(&addr, "crash").await?;
            let a = all
                .iter()
                .find(|a| a["slot"] == 0 && a["reschedules"].is_null())?
                .clone();
            let r = a["restarts"].as_u64().unwrap_or(0);
            if starts.is_empty() && a["state"] != "pending" {
                starts.push(Instant::now());
            }
            if r > seen_restarts {
                seen_restarts = r;
                starts.push(Instant::now());
            }
            (a["state"] == "failed" || a["desired"] == "stop")
                .then_some(a)
                .filter(|a| {
                    a["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("restarts spent"))
                })
        },
    )
    .await;
    assert_eq!(seen_restarts, 2, "{first}");
    let gaps: Vec<f64> = starts
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    // The n-th restart waits delay × 2^n plus up to 25%, after a run of 0.2 s
    // and an exit the agent notices within its 1 s tick, then is started at
    // the first tick past its time (up to 1 s more) in ~0.5 s, and seen by a
    // 100 ms poll: up to ~3 s over the delay on a quiet machine, more on a
    // busy one.
    for (gap, delay) in gaps.iter().zip([2.0, 4.0]) {
        assert!(
            *gap >= delay - 0.3 && *gap <= delay * 1.25 + 4.0,
            "restart gaps {gaps:?} do not follow the 2 s, 4 s schedule"
        );
    }
    let msg = first["message"].as_str().unwrap();
    assert!(
        msg.contains("restarts spent (2 within 30m)") && msg.contains("exited with code 3"),
        "{msg}"
    );
    let first_node = first["node"].as_str().unwrap().to_string();

    // Replaced on another node, carrying the slot's reschedule count.
    let second = wait_for(
        "a replacement elsewhere",
        Duration::from_secs(30),
        async || {
            let all = allocs(&addr, "crash").await?;
            all.into_iter()
                .find(|a| a["reschedules"] == 1 && a["node"].is_string())
        },
    )
    .await;
    assert_ne!(
        second["node"].as_str().unwrap(),
        first_node,
        "avoids the node it failed on"
    );
    let all = allocs(&addr, "crash").await.unwrap();
    let old = all.iter().find(|a| a["id"] == first["id"]).unwrap();
    assert!(
        old["message"]
            .as_str()
            .unwrap()
            .starts_with("replaced: restarts spent"),
        "the reason is kept: {old}"
    );

    // Its restarts spent too, and no reschedule left: the slot stays failed.
    let last = wait_for(
        "the slot failed for good",
        Duration::from_secs(60),
        async || {
            let all = allocs(&addr, "crash").await?;
            all.into_iter()
                .find(|a| a["reschedules"] == 1 && a["gave_up"] == true && a["state"] == "failed")
        },
    )
    .await;
    assert!(
        last["message"].as_str().unwrap().contains("restarts spent"),
        "{last}"
    );
    let count = allocs(&addr, "crash").await.unwrap().len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = allocs(&addr, "crash").await.unwrap();
    assert_eq!(after.len(), count, "no more allocation records: {after:?}");
    assert_eq!(after.len(), 2);
    let status = cli(&addr, &["job", "status", "crash"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("restarts spent"), "{text}");
}
