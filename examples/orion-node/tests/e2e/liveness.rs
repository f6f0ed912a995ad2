//! Lifeguard-style failure detection (issue 17), on real processes: a node
//! whose process was stopped for 2 s comes back starved (its own timers ran
//! 2 s late), says so in its health and accuses nobody; the nodes it had
//! lost meanwhile stay ready; and a node that is really gone is still marked
//! down, named by the two members that lost it.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

async fn statuses(addr: &str) -> Option<Vec<(String, String, String)>> {
    let nodes = get_json(&format!("{addr}/v1/nodes")).await?;
    Some(
        nodes
            .as_array()?
            .iter()
            .map(|n| {
                (
                    n["id"].as_str().unwrap_or("").to_string(),
                    n["status"].as_str().unwrap_or("").to_string(),
                    n["health"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starved_node_accuses_nobody_and_a_dead_one_is_confirmed_by_two() {
    if !engine().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::start(dir.path(), "e2e-lifeguard", 3, 1).await;
    let leader = wait_for("a leader", Duration::from_secs(30), async || {
        c.leader().await
    })
    .await;
    let via = c.nodes[leader].spec.addr();
    // Stop the worker's process for 2 s: longer than gossip takes to declare
    // a peer dead, so on waking its detector has lost everyone at once.
    let worker = 3;
    let worker_addr = c.nodes[worker].spec.addr();
    c.nodes[worker].signal("STOP");
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.nodes[worker].signal("CONT");
    let warning = wait_for(
        "the woken node to call itself starved",
        Duration::from_secs(10),
        async || {
            let h = get_json(&format!("{worker_addr}/health")).await?;
            h["warnings"]
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .find(|w| w.contains("starved"))
                .map(str::to_string)
        },
    )
    .await;
    assert!(warning.contains("accuses no other node"), "{warning}");
    // The others were never lost by anyone but the starved node: all ready
    // (the worker itself may have been marked down while stopped, and is
    // ready again).
    wait_for("every node ready", Duration::from_secs(30), async || {
        let s = statuses(&via).await?;
        s.iter().all(|(_, st, _)| st == "ready").then_some(())
    })
    .await;
    let s = statuses(&via).await.unwrap();
    for (id, _, health) in &s {
        assert!(
            !health.contains("lost by"),
            "{id} carries an old verdict: {s:?}"
        );
    }

    // A manager that is really gone: both members that remain lose it, and
    // the verdict names two accusers.
    let victim = (0..3).find(|i| *i != leader).unwrap();
    let victim_id = c.nodes[victim].spec.id.clone();
    c.nodes[victim].kill9();
    let health = wait_for(
        "the dead node marked down",
        Duration::from_secs(30),
        async || {
            let s = statuses(&via).await?;
            let (_, st, h) = s.into_iter().find(|(id, _, _)| *id == victim_id)?;
            (st == "down").then_some(h)
        },
    )
    .await;
    assert!(
        health.contains("lost by") && health.contains(" and "),
        "{health}"
    );
}
