//! Partitions, for real: three nodes in containers on a private Docker network;
//! the leader is cut off with `docker network disconnect` and later reconnected.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::boxed::BoxedCluster;
use crate::support::*;

fn running_ids(allocs: &Value) -> BTreeSet<String> {
    allocs
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["state"] == "running" && a["desired"] == "run")
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect()
}

/// Cut the leader off: the minority commits nothing (a write sent to it fails and
/// never appears) and starts nothing new; the majority elects a leader and
/// reschedules the cut-off node's work; after healing the cluster converges to one
/// state, the old leader stops its stale containers, and no allocation runs twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_leader_yields_to_the_majority_and_rejoins() {
    if !engine().await {
        return;
    }
    let c = BoxedCluster::start("part", 3).await;
    let all = [0, 1, 2];
    let leader = wait_for("a leader", Duration::from_secs(30), async || {
        c.leader(&all).await
    })
    .await;
    let majority: Vec<usize> = all.iter().copied().filter(|i| *i != leader).collect();
    let via = c.nodes[majority[0]].addr();
    let mut spec = web_json("part", 3);
    spec["distinct_hosts"] = Value::Bool(true);
    submit(&via, &spec).await.unwrap();
    wait_for(
        "3 running, one per node",
        Duration::from_secs(60),
        async || (running(&via, "part").await.len() == 3).then_some(()),
    )
    .await;
    let leader_id = c.nodes[leader].id.clone();
    let containers_before: BTreeSet<String> = Containers::of(&leader_id).into_iter().collect();

    let cut_at = Instant::now();
    c.cut(leader);
    let new_leader = wait_for(
        "the majority to elect a leader",
        Duration::from_secs(30),
        async || c.leader(&majority).await.filter(|l| *l != leader),
    )
    .await;
    println!("partition -> new leader elected: {:?}", cut_at.elapsed());
    // The majority marks the cut-off node down and runs its replica elsewhere,
    // relaxing nothing: distinct_hosts leaves one slot pending with a reason.
    wait_for(
        "the cut-off node marked down",
        Duration::from_secs(30),
        async || {
            let nodes = get_json(&format!("{via}/v1/nodes")).await?;
            let n = nodes
                .as_array()?
                .iter()
                .find(|n| n["id"] == leader_id.as_str())?
                .clone();
            (n["status"] == "down").then_some(())
        },
    )
    .await;
    let job = wait_for(
        "the lost slot handled",
        Duration::from_secs(30),
        async || {
            let job = get_json(&format!("{via}/v1/jobs/part")).await?;
            let allocs = job["allocations"].as_array()?;
            let lost = allocs.iter().any(|a| a["state"] == "lost");
            // The replacement is planned in a later command than the loss.
            let pending = allocs.iter().any(|a| a["state"] == "pending");
            (lost && pending).then_some(job)
        },
    )
    .await;
    let pending: Vec<&Value> = job["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "pending")
        .collect();
    assert_eq!(pending.len(), 1, "{job}");
    assert!(
        pending[0]["message"]
            .as_str()
            .unwrap()
            .contains("distinct hosts"),
        "{job}"
    );
    // Scale to 2, which the majority can hold: the cluster acts without the old leader.
    spec["replicas"] = Value::from(2);
    submit(&via, &spec).await.unwrap();
    wait_for(
        "2 running on the majority",
        Duration::from_secs(60),
        async || {
            let r = running(&via, "part").await;
            (r.len() == 2 && r.iter().all(|a| a["node"] != leader_id.as_str())).then_some(())
        },
    )
    .await;
    println!(
        "partition -> work running on the majority: {:?}",
        cut_at.elapsed()
    );

    // The minority: a write sent to it fails, and it starts nothing new.
    let out = c.nodes[leader].cli(&["job", "run", "-"]);
    assert!(!out.status.success(), "an empty spec is refused anyway");
    let path = "/tmp/minority.json";
    let write = format!(
        "echo '{}' > {path} && orion-node --addr http://127.0.0.1:8080 job run {path}",
        web_json("minority", 1)
    );
    let out = std::process::Command::new("docker")
        .args(["exec", &c.nodes[leader].container, "sh", "-c", &write])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the minority must not accept a write: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let now: BTreeSet<String> = Containers::of(&leader_id).into_iter().collect();
    // ...and keeps running what it had: a node cut off keeps its tasks up.
    let running_now: BTreeSet<String> = Containers::running_of_node(&leader_id)
        .into_iter()
        .collect();
    assert_eq!(
        running_now, containers_before,
        "the cut-off node's tasks keep running"
    );
    assert!(
        now.is_subset(&containers_before),
        "the minority started containers: {now:?}"
    );

    c.heal(leader);
    let healed = Instant::now();
    wait_for(
        "one leader for all three",
        Duration::from_secs(60),
        async || c.leader(&all).await,
    )
    .await;
    let states = wait_for(
        "all three to converge to one state",
        Duration::from_secs(60),
        async || {
            let mut states = Vec::new();
            for i in all {
                states.push(c.state(i).await?);
            }
            let same = states.windows(2).all(|w| w[0] == w[1]);
            let node_ok = get_json(&format!("{via}/v1/nodes"))
                .await?
                .as_array()?
                .iter()
                .all(|n| n["status"] == "ready");
            (same && node_ok).then_some(states)
        },
    )
    .await;
    println!("heal -> converged: {:?}", healed.elapsed());
    let (jobs, allocs) = &states[0];
    let names: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert!(
        !names.contains(&"minority"),
        "the minority's write never committed: {names:?}"
    );
    wait_for(
        "stale containers stopped, none running twice",
        Duration::from_secs(60),
        async || {
            let live = running_ids(allocs);
            let stale: Vec<String> = Containers::of(&leader_id)
                .into_iter()
                .filter(|c| containers_before.contains(c))
                .collect();
            let once = live
                .iter()
                .all(|a| Containers::running_of_alloc(a).len() <= 1);
            (stale.is_empty() && once).then_some(())
        },
    )
    .await;
    let _ = new_leader;
    let _ = c.logs(leader);
}
