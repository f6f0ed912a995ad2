//! A system job on real nodes: one allocation on each of three nodes; a
//! fourth node that joins gets one; a drained node loses its own, and nothing
//! moves elsewhere.

use std::time::Duration;

use orion_runtime::image;
use serde_json::{json, Value};

use crate::support::*;

async fn nodes_running(addr: &str, job: &str) -> Option<Vec<String>> {
    let j = get_json(&format!("{addr}/v1/jobs/{job}")).await?;
    let mut nodes: Vec<String> = j["allocations"]
        .as_array()?
        .iter()
        .filter(|a| a["desired"] == "run" && a["state"] == "running")
        .filter_map(|a| a["node"].as_str().map(str::to_string))
        .collect();
    nodes.sort();
    Some(nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_job_follows_nodes_that_join_and_drain() {
    if !engine().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let c = LocalCluster::start(dir.path(), "e2e-system", 3, 0).await;
    let addr = c.nodes[0].spec.addr();
    let spec: Value = json!({
        "name": "everywhere",
        "type": "system",
        "task": {
            "image": image::DEMO_IMAGE,
            "command": ["httpd", "-f", "-p", "80", "-h", "/www"],
            "ports": [{ "name": "http", "container_port": 80 }],
            "resources": { "cpu": 0.05, "memory_mb": 16 }
        },
        "update": { "min_healthy_time": "1s" }
    });
    submit(&addr, &spec).await.unwrap();
    let mut ids: Vec<String> = c.nodes.iter().map(|n| n.spec.id.clone()).collect();
    ids.sort();
    let want = ids.clone();
    wait_for("one on each node", Duration::from_secs(60), async || {
        (nodes_running(&addr, "everywhere").await? == want).then_some(())
    })
    .await;

    // A fourth node joins and gets one.
    let id = node_id("e2e-system-m3");
    let _cleanup = Containers(vec![id.clone()]);
    let mut spec4 = NodeSpec::new(&id, dir.path());
    spec4.extra.extend(["--join".to_string(), addr.clone()]);
    let _n4 = Node::start_ready(&spec4).await;
    ids.push(id.clone());
    ids.sort();
    let want = ids.clone();
    wait_for("one on the new node", Duration::from_secs(60), async || {
        (nodes_running(&addr, "everywhere").await? == want).then_some(())
    })
    .await;

    // A drained node loses it, and it goes nowhere else.
    let drained = c.nodes[1].spec.id.clone();
    let out = cli(&addr, &["node", "drain", &drained, "--detach"]);
    assert!(out.status.success(), "{out:?}");
    let want: Vec<String> = ids.iter().filter(|n| **n != drained).cloned().collect();
    wait_for(
        "gone from the drained node",
        Duration::from_secs(60),
        async || (nodes_running(&addr, "everywhere").await? == want).then_some(()),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(nodes_running(&addr, "everywhere").await.unwrap(), want);
    let j = get_json(&format!("{addr}/v1/jobs/everywhere"))
        .await
        .unwrap();
    let stopped = j["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["node"] == drained.as_str())
        .unwrap()
        .clone();
    assert_eq!(stopped["message"], "node is draining", "{stopped}");
}
