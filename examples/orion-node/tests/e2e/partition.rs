//! Partitions, for real: nodes in containers on a private Docker network; the
//! leader of three managers, or a worker beside them, is cut off with `docker
//! network disconnect` and later reconnected.

use orion_core::testing::OutputWithin;
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

/// Cut the leader off: the minority commits nothing (a write sent to it fails with
/// a reason, its applied index stands still, and the write never appears) and
/// starts nothing new; the majority elects a leader and
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
    // What the old leader had applied once the majority moved on without it: it
    // applied everything committed before the cut long ago (apply follows commit
    // within milliseconds), and can apply nothing more until it rejoins.
    let minority_index = c.nodes[leader]
        .applied_index()
        .expect("the cut-off node answers a local read");
    // The majority marks the cut-off node down and runs its replica elsewhere,
    // relaxing nothing: distinct_hosts leaves one slot pending with a reason.
    wait_for(
        "the cut-off node marked down",
        Duration::from_secs(30),
        async || (node_status(&via, &leader_id).await? == "down").then_some(()),
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
    let write_at = Instant::now();
    let out = std::process::Command::new("docker")
        .args(["exec", &c.nodes[leader].container, "sh", "-c", &write])
        .output_within(orion_core::testing::DOCKER_CALL)
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!(
        "minority write refused after {:?}: {}",
        write_at.elapsed(),
        stderr.trim()
    );
    assert!(
        !out.status.success(),
        "the minority must not accept a write: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The CLI says which command failed and why: the old leader knows it has
    // heard from no majority, so it refuses without appending (and at once, the cut
    // being older than an RPC timeout by now).
    assert!(
        stderr.contains("job run: ") && stderr.contains("heard from no majority"),
        "the minority's refusal says why: {stderr}"
    );
    // Below the 10 s propose timeout it must not wait out, with room for a
    // loaded machine.
    assert!(
        write_at.elapsed() < Duration::from_secs(8),
        "refused without waiting out the propose timeout"
    );
    let (_, status) = c.nodes[leader]
        .get_inside("/v1/status/leader")
        .expect("the cut-off node answers its status");
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["is_self"], true, "{status}");
    assert_eq!(
        status["quorum_lost"], true,
        "it says it is cut off: {status}"
    );
    // The minority commits nothing: its applied index stood still through the
    // write (refused before reaching the log), while the
    // majority committed the node's loss, the replacement and the scale-down.
    let majority_index = applied_index(&via).await.unwrap();
    assert_eq!(
        c.nodes[leader].applied_index(),
        Some(minority_index),
        "the cut-off node applied entries while cut off"
    );
    assert!(
        majority_index > minority_index,
        "the majority committed past the minority: {majority_index} vs {minority_index}"
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
        async || c.converged(&all, &via).await,
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

/// The running containers of `node`, panicking if one of `kept` is not among them.
fn still_running(node: &str, kept: &BTreeSet<String>) -> BTreeSet<String> {
    let now: BTreeSet<String> = Containers::running_of_node(node).into_iter().collect();
    assert!(
        kept.is_subset(&now),
        "the cut-off worker stopped tasks: kept {kept:?}, running {now:?}"
    );
    now
}

/// The allocations of `job` in a `/v1/allocations` or `/v1/jobs/{name}` answer.
fn allocs_of<'a>(allocs: &'a Value, job: &str) -> Vec<&'a Value> {
    allocs
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["job"] == job)
        .collect()
}

/// Panics if an allocation runs more than one container.
fn assert_none_twice(allocs: &Value) {
    for a in allocs.as_array().into_iter().flatten() {
        let id = a["id"].as_str().unwrap();
        let n = Containers::running_of_alloc(id).len();
        assert!(n <= 1, "allocation {id} runs {n} containers");
    }
}

/// Cut a worker off: it keeps its tasks running and still answers local reads from
/// its replica (a linearizable read fails); the managers mark it down, lose its
/// allocations and place the replicas elsewhere where the job allows it (`roam`),
/// or leave them pending with the reason where it does not (`edge`, pinned to the
/// worker's tag). After healing, the worker stops its stale containers, no
/// allocation ever runs two containers, and all four nodes converge to one state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_worker_keeps_its_tasks_and_stops_them_once_healed() {
    if !engine().await {
        return;
    }
    let worker: &[&str] = &["--role", "worker", "--tag", "edge=yes"];
    let c = BoxedCluster::start_with("wpart", &[&[], &[], &[], worker]).await;
    let (managers, w) = ([0, 1, 2], 3);
    let worker_id = c.nodes[w].id.clone();
    let via = c.nodes[managers[0]].addr();
    let nodes = get_json(&format!("{via}/v1/nodes")).await.unwrap();
    let role = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == worker_id.as_str())
        .map(|n| n["role"].clone());
    assert_eq!(role, Some(Value::from("worker")), "{nodes}");

    // `edge` may run on the worker only. `roam` may run anywhere, but is placed
    // while the managers drain, so both its replicas start on the worker too.
    for m in managers {
        let out = cli(&via, &["node", "drain", &c.nodes[m].id]);
        assert!(out.status.success(), "{out:?}");
    }
    let mut edge = web_json("edge", 1);
    edge["node_selectors"] = serde_json::json!({ "edge": "yes" });
    submit(&via, &edge).await.unwrap();
    submit(&via, &web_json("roam", 2)).await.unwrap();
    let cut_off: BTreeSet<String> = wait_for(
        "edge and roam running on the worker",
        Duration::from_secs(60),
        async || {
            let (e, r) = (running(&via, "edge").await, running(&via, "roam").await);
            let on_worker = e.iter().chain(&r).all(|a| a["node"] == worker_id.as_str());
            let ids = e
                .iter()
                .chain(&r)
                .map(|a| a["id"].as_str().unwrap().to_string());
            (e.len() == 1 && r.len() == 2 && on_worker).then(|| ids.collect())
        },
    )
    .await;
    for m in managers {
        let out = cli(&via, &["node", "undrain", &c.nodes[m].id]);
        assert!(out.status.success(), "{out:?}");
    }
    let before: BTreeSet<String> = Containers::running_of_node(&worker_id)
        .into_iter()
        .collect();
    assert_eq!(before.len(), 3, "one container per allocation: {before:?}");

    let cut_at = Instant::now();
    c.cut(w);
    // A linearizable read needs the leader: on the cut-off worker it fails once the
    // store's propose budget (10 s) runs out. Asked now, checked after the waits.
    let linearizable = {
        let node = c.nodes[w].clone();
        std::thread::spawn(move || node.get_inside("/v1/allocations?consistent=true"))
    };
    wait_for(
        "the worker marked down",
        Duration::from_secs(30),
        async || {
            still_running(&worker_id, &before);
            (node_status(&via, &worker_id).await? == "down").then_some(())
        },
    )
    .await;
    println!("worker cut -> marked down: {:?}", cut_at.elapsed());
    // Taken well after the cut, so nothing committed before it is still on its way.
    let worker_index = c.nodes[w].applied_index().unwrap();
    let allocs = wait_for(
        "roam replaced on the managers, edge pending",
        Duration::from_secs(60),
        async || {
            still_running(&worker_id, &before);
            let allocs = get_json(&format!("{via}/v1/allocations")).await?;
            let roam = allocs_of(&allocs, "roam");
            let lost = roam.iter().filter(|a| a["state"] == "lost").count();
            let elsewhere = roam
                .iter()
                .filter(|a| a["state"] == "running" && a["desired"] == "run")
                .filter(|a| a["node"] != worker_id.as_str())
                .count();
            let edge = allocs_of(&allocs, "edge");
            let edge_lost = edge.iter().any(|a| a["state"] == "lost");
            let edge_pending = edge.iter().any(|a| a["state"] == "pending");
            (lost == 2 && elsewhere == 2 && edge_lost && edge_pending).then_some(allocs)
        },
    )
    .await;
    println!(
        "worker cut -> roam running on the managers: {:?}",
        cut_at.elapsed()
    );
    let pending = allocs_of(&allocs, "edge")
        .into_iter()
        .find(|a| a["state"] == "pending")
        .unwrap();
    assert!(
        pending["message"].as_str().unwrap().contains("selector"),
        "edge's replacement says why it waits: {pending}"
    );
    assert_none_twice(&allocs);

    // The worker still answers from its own replica, which stands where it was cut
    // off: its three allocations running on it, nothing of the majority's since.
    let (headers, body) = c.nodes[w]
        .get_inside("/v1/allocations")
        .expect("the cut-off worker answers a local read");
    assert_eq!(
        headers.get("x-orion-consistency").map(String::as_str),
        Some("local")
    );
    assert_eq!(
        headers.get("x-orion-index"),
        Some(&worker_index.to_string()),
        "the cut-off worker applied entries"
    );
    let local: Value = serde_json::from_str(&body).unwrap();
    let mine: BTreeSet<String> = running_ids(&local);
    assert_eq!(mine.len(), 3, "{local}");
    assert!(
        local
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["node"] == worker_id.as_str()),
        "{local}"
    );
    let out = c.nodes[w].cli(&["job", "status", "roam"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(table.contains("running 2/2"), "{table}");
    assert_eq!(
        linearizable.join().unwrap(),
        None,
        "a linearizable read on the cut-off worker must fail"
    );
    println!(
        "worker cut -> linearizable read refused: {:?}",
        cut_at.elapsed()
    );
    let during = still_running(&worker_id, &before);
    assert_eq!(during, before, "the cut-off worker started containers");

    c.heal(w);
    let healed = Instant::now();
    let mut stopped_after = None;
    wait_for(
        "the worker's stale containers stopped and removed",
        Duration::from_secs(60),
        async || {
            if let Some(allocs) = get_json(&format!("{via}/v1/allocations")).await {
                assert_none_twice(&allocs);
            }
            let all: BTreeSet<String> = Containers::of(&worker_id).into_iter().collect();
            let live: BTreeSet<String> = Containers::running_of_node(&worker_id)
                .into_iter()
                .collect();
            if stopped_after.is_none() && live.is_disjoint(&before) {
                stopped_after = Some(healed.elapsed());
            }
            all.is_disjoint(&before).then_some(())
        },
    )
    .await;
    println!(
        "worker heal -> stale containers stopped: {:?}, removed: {:?}",
        stopped_after.unwrap(),
        healed.elapsed()
    );
    let all = [0, 1, 2, 3];
    let states = wait_for(
        "all four to converge to one state, edge back on the worker",
        Duration::from_secs(60),
        async || {
            let states = c.converged(&all, &via).await?;
            (running_ids(&states[0].1).len() == 3).then_some(states)
        },
    )
    .await;
    println!("worker heal -> converged: {:?}", healed.elapsed());
    let allocs = &states[0].1;
    assert_none_twice(allocs);
    // The worker's reports of its old allocations did not bring them back.
    for a in allocs.as_array().unwrap() {
        if cut_off.contains(a["id"].as_str().unwrap()) {
            assert_eq!(a["state"], "lost", "{a}");
        }
    }
    for id in running_ids(allocs) {
        assert_eq!(
            Containers::running_of_alloc(&id).len(),
            1,
            "running allocation {id} has one container"
        );
    }
    let edge: Vec<&Value> = allocs_of(allocs, "edge")
        .into_iter()
        .filter(|a| a["state"] == "running")
        .collect();
    assert_eq!(edge.len(), 1, "{allocs}");
    assert_eq!(edge[0]["node"], worker_id.as_str(), "edge runs on its tag");
    assert!(
        !before.contains(&Containers::running_of_alloc(edge[0]["id"].as_str().unwrap())[0]),
        "edge runs in a new container"
    );
}
