//! Jobs that wait for others, on the real engine: a three-job chain,
//! submitted last-first, passes a file from the first to the third through
//! `outputs` and `/orion/inputs/<job>/`; a failing first job fails the job
//! after it with the reason.

use std::time::Duration;

use orion_runtime::image;
use serde_json::{json, Value};

use crate::support::*;

fn step(name: &str, cmd: &str, after: Value, outputs: Value) -> Value {
    json!({
        "name": name,
        "type": "batch",
        "after": after,
        "task": {
            "image": image::DEMO_IMAGE,
            "command": ["sh", "-c", cmd],
            "outputs": outputs,
            "resources": { "cpu": 0.05, "memory_mb": 16 }
        },
        "restart": { "attempts": 0 },
        "reschedule": { "unlimited": false, "attempts": 0 }
    })
}

#[tokio::test]
async fn a_chain_passes_a_file_along_and_a_failure_stops_it() {
    if !engine().await {
        return;
    }
    let solo = Solo::start("e2e-deps").await;
    let addr = solo.addr.clone();
    let third = step(
        "third",
        "cat /orion/inputs/second/result.json; echo done; sleep 60",
        json!([{ "job": "second" }]),
        json!([]),
    );
    let second = step(
        "second",
        "sed s/41/42/ /orion/inputs/first/result.json > /workspace/result.json",
        json!([{ "job": "first", "condition": "complete" }]),
        json!(["/workspace/result.json"]),
    );
    let first = step(
        "first",
        "sleep 1; echo '{\"n\": 41}' > /workspace/result.json",
        json!([]),
        json!(["/workspace/result.json"]),
    );
    for spec in [&third, &second, &first] {
        submit(&addr, spec).await.unwrap();
    }
    let waiting = get_json(&format!("{addr}/v1/jobs/third")).await.unwrap();
    assert!(
        waiting["waiting"]
            .as_str()
            .unwrap()
            .starts_with("waiting for job second"),
        "{waiting}"
    );
    let alloc = running_alloc(&addr, "third", Duration::from_secs(90)).await;
    let logs = wait_for("third's output", Duration::from_secs(30), async || {
        let t = get_text(&format!("{addr}/v1/allocations/{alloc}/logs")).await?;
        t.contains("done").then_some(t)
    })
    .await;
    assert!(logs.contains("{\"n\": 42}"), "{logs}");
    // The first two completed, in order, and kept their outputs.
    let j = get_json(&format!("{addr}/v1/jobs/second")).await.unwrap();
    assert_eq!(j["health"], "complete");
    let out = &j["allocations"][0]["outputs"]["/workspace/result.json"];
    assert!(out.is_string(), "{j}");

    // A failing first job fails the one after it.
    submit(&addr, &step("breaks", "exit 1", json!([]), json!([])))
        .await
        .unwrap();
    submit(
        &addr,
        &step("never", "echo no", json!([{ "job": "breaks" }]), json!([])),
    )
    .await
    .unwrap();
    let j = wait_for("never to fail", Duration::from_secs(60), async || {
        let j = get_json(&format!("{addr}/v1/jobs/never")).await?;
        (j["health"] == "failed").then_some(j)
    })
    .await;
    assert_eq!(j["waiting"], "dependency breaks failed");
    assert!(j["allocations"].as_array().unwrap().is_empty());
    // A path that is not absolute is refused.
    let e = submit(&addr, &step("rel", "true", json!([]), json!(["out.json"])))
        .await
        .unwrap_err();
    assert!(e.starts_with("400") && e.contains("task.outputs[0]"), "{e}");
}
