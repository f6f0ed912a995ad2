//! Several real `orion-node` processes on 127.0.0.1: three managers and a worker,
//! joined over HTTP, replicating over Raft, gossiping over UDP; nodes killed with
//! SIGKILL for real.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// Three managers and a worker form one cluster: every node sees four ready nodes
/// with their roles, three voters lead together, a job's replicas spread over
/// all of them (the worker included), and a follower forwards writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_managers_and_a_worker_form_a_cluster() {
    if !engine().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let c = LocalCluster::start(dir.path(), "form", 3, 1).await;
    let leader = wait_for(
        "a leader all agree on",
        Duration::from_secs(20),
        async || c.leader().await,
    )
    .await;
    let follower = c.other_than(leader);
    assert_eq!(
        submit(&follower, &web_json("spread", 4)).await,
        Ok(1),
        "a follower forwards writes"
    );
    let allocs = wait_for("4 running", Duration::from_secs(60), async || {
        let r = running(&follower, "spread").await;
        (r.len() == 4).then_some(r)
    })
    .await;
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for a in &allocs {
        *per_node
            .entry(a["node"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(per_node.len(), 4, "spread over every node: {per_node:?}");
    let worker = &c.nodes[3].spec.id;
    assert!(per_node.contains_key(worker), "the worker runs tasks");
    for n in &c.nodes {
        let nodes = get_json(&format!("{}/v1/nodes", n.spec.addr()))
            .await
            .unwrap();
        let roles: Vec<&str> = nodes
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles.iter().filter(|r| **r == "manager").count(), 3);
        assert_eq!(roles.iter().filter(|r| **r == "worker").count(), 1);
    }
    // The worker replicates state (it is a Raft learner): its local read shows the job.
    let w = c.nodes[3].spec.addr();
    let job = get_json(&format!("{w}/v1/jobs/spread")).await.unwrap();
    assert_eq!(job["version"], 1);

    // Logs, exec and stats of a task on the worker, asked of another node: the CLI
    // follows the answer naming the node that runs it.
    let on_worker = allocs
        .iter()
        .find(|a| a["node"] == worker.as_str())
        .unwrap();
    let id = on_worker["id"].as_str().unwrap();
    let first = c.nodes[0].spec.addr();
    let out = cli(&first, &["alloc", "exec", id, "cat", "/www/index.html"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Hello from Orion"));
    let out = cli(&first, &["alloc", "logs", id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&first, &["alloc", "stats", id, "--json"]);
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        stats["current"]["memory_bytes"].as_u64().unwrap() > 0,
        "{stats}"
    );
    let missing = cli(&first, &["alloc", "logs", "nope"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no allocation \"nope\""));
}

/// SIGKILL the leader: the survivors elect a new one that accepts writes.
/// Prints the time from the kill to the first accepted write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_elects_one_that_accepts_writes() {
    if !engine().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::start(dir.path(), "lead", 3, 0).await;
    let leader = wait_for("a leader", Duration::from_secs(20), async || {
        c.leader().await
    })
    .await;
    let survivor = c.other_than(leader);
    // A survivor's event stream tells of the new leader.
    let mut leader_events = reqwest::get(format!("{survivor}/v1/events?topic=leader"))
        .await
        .unwrap();
    assert_eq!(leader_events.status(), 200);
    let killed = Instant::now();
    c.nodes[leader].kill9();
    let mut tries = 0;
    wait_for(
        "a write accepted after the kill",
        Duration::from_secs(30),
        async || {
            tries += 1;
            submit(&survivor, &web_json(&format!("after-{tries}"), 0))
                .await
                .ok()
        },
    )
    .await;
    println!("leader kill -> write accepted: {:?}", killed.elapsed());
    let new_leader = wait_for("a new leader", Duration::from_secs(10), async || {
        c.leader().await
    })
    .await;
    assert_ne!(new_leader, leader);
    let event: serde_json::Value = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = String::new();
        loop {
            if let Some((line, _)) = buf.split_once('\n') {
                return serde_json::from_str(line).unwrap();
            }
            let chunk = leader_events.chunk().await.unwrap().unwrap();
            buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .expect("a leader event");
    assert_eq!(event["topic"], "Leader", "{event}");
    assert_eq!(
        event["key"],
        c.nodes[new_leader].spec.id.as_str(),
        "{event}"
    );
    assert!(event["object"]["term"].as_u64().unwrap() > 1, "{event}");
}

/// SIGKILL a worker holding replicas: gossip declares it dead, the leader marks it
/// down through Raft, and the replicas run elsewhere. Prints kill → running time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_worker_reschedules_its_replicas() {
    if !engine().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::start(dir.path(), "resched", 3, 1).await;
    let addr = c.nodes[0].spec.addr();
    submit(&addr, &web_json("moving", 4)).await.unwrap();
    let worker = c.nodes[3].spec.id.clone();
    let before = wait_for(
        "4 running, one on the worker",
        Duration::from_secs(60),
        async || {
            let r = running(&addr, "moving").await;
            (r.len() == 4 && r.iter().any(|a| a["node"] == worker.as_str())).then_some(r)
        },
    )
    .await;
    let lost: Vec<String> = before
        .iter()
        .filter(|a| a["node"] == worker.as_str())
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    let killed = Instant::now();
    c.nodes[3].kill9();
    let after = wait_for(
        "4 running without the worker",
        Duration::from_secs(30),
        async || {
            let r = running(&addr, "moving").await;
            (r.len() == 4 && r.iter().all(|a| a["node"] != worker.as_str())).then_some(r)
        },
    )
    .await;
    println!(
        "worker kill -> replicas running elsewhere: {:?}",
        killed.elapsed()
    );
    assert!(after
        .iter()
        .all(|a| !lost.contains(&a["id"].as_str().unwrap().to_string())));
    assert_eq!(node_status(&addr, &worker).await.as_deref(), Some("down"));
    // A survivor's health says the cluster is degraded, not down, and names
    // the lost member.
    let health = wait_for("degraded health", Duration::from_secs(30), async || {
        let r = reqwest::get(format!("{addr}/health")).await.ok()?;
        let code = r.status().as_u16();
        let h: serde_json::Value = r.json().await.ok()?;
        (h["status"] == "degraded").then_some((code, h))
    })
    .await;
    assert_eq!(health.0, 200, "{}", health.1);
    let m = &health.1["components"]["membership"];
    assert_eq!(m["dead"], 1, "{m}");
    assert_eq!(m["dead_members"][0], worker.as_str(), "{m}");

    // The worker comes back: it rejoins, and stops its stale containers.
    // restart() waits until it is ready again and caught up.
    c.restart(3).await;
    wait_for(
        "stale containers stopped",
        Duration::from_secs(30),
        async || {
            lost.iter()
                .all(|a| Containers::running_of_alloc(a).is_empty())
                .then_some(())
        },
    )
    .await;
}

/// A stream of 1,000 submissions with the leader SIGKILLed midway and the client
/// retrying: every acknowledged submission is present afterwards on every survivor,
/// and no allocation has two running containers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_submissions_survive_a_leader_kill() {
    if !engine().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::start(dir.path(), "stream", 3, 0).await;
    let leader = wait_for("a leader", Duration::from_secs(20), async || {
        c.leader().await
    })
    .await;
    let addrs: Vec<String> = c.nodes.iter().map(|n| n.spec.addr()).collect();
    let mut acked = Vec::new();
    let mut retries = 0;
    for i in 0..1000usize {
        if i == 500 {
            c.nodes[leader].kill9();
        }
        // One job in a hundred runs a container; the rest are empty services.
        let spec = web_json(&format!("s{i:04}"), u32::from(i.is_multiple_of(100)));
        let mut attempt = 0;
        loop {
            // The client tries the nodes in turn; a dead one just fails.
            let addr = &addrs[(i + attempt) % addrs.len()];
            match submit(addr, &spec).await {
                Ok(v) => {
                    assert_eq!(v, 1, "a retried submission is not a new version");
                    acked.push(spec["name"].as_str().unwrap().to_string());
                    break;
                }
                Err(_) => {
                    attempt += 1;
                    retries += 1;
                    assert!(attempt < 200, "job {i} never accepted");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    println!("1000 submissions acknowledged with {retries} retries");
    for (i, addr) in addrs.iter().enumerate() {
        if i == leader {
            continue;
        }
        let jobs = get_json(&format!("{addr}/v1/jobs?consistent=true"))
            .await
            .unwrap();
        let names: Vec<&str> = jobs
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["name"].as_str().unwrap())
            .collect();
        for name in &acked {
            assert!(names.contains(&name.as_str()), "{name} missing on node {i}");
        }
        assert!(jobs.as_array().unwrap().iter().all(|j| j["version"] == 1));
    }
    let survivor = c.other_than(leader);
    let allocs = wait_for(
        "the sampled jobs running",
        Duration::from_secs(60),
        async || {
            let all = get_json(&format!("{survivor}/v1/allocations")).await?;
            let running: Vec<Value> = all
                .as_array()?
                .iter()
                .filter(|a| a["state"] == "running")
                .cloned()
                .collect();
            (running.len() == 10).then_some(running)
        },
    )
    .await;
    for a in allocs {
        let id = a["id"].as_str().unwrap();
        assert_eq!(Containers::running_of_alloc(id).len(), 1, "{id} runs once");
    }
}

/// `node drain` moves a node's allocations elsewhere and keeps new ones off;
/// `node undrain` ends it. `node remove` of a manager shrinks the voter set
/// safely: the rest keep a leader and take writes, and the removed node's work
/// runs elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_undrain_and_remove() {
    if !engine().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::start(dir.path(), "drain", 3, 1).await;
    let addr = c.nodes[0].spec.addr();
    let status = get_json(&format!("{addr}/v1/status/leader")).await.unwrap();
    let managers: Vec<String> = c.nodes[..3].iter().map(|n| n.spec.id.clone()).collect();
    let mut voters: Vec<String> = status["voters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    voters.sort();
    let mut expected = managers.clone();
    expected.sort();
    assert_eq!(voters, expected, "managers vote, the worker does not");

    submit(&addr, &web_json("drained", 4)).await.unwrap();
    let worker = c.nodes[3].spec.id.clone();
    wait_for(
        "one replica on the worker",
        Duration::from_secs(60),
        async || {
            let r = running(&addr, "drained").await;
            (r.len() == 4 && r.iter().any(|a| a["node"] == worker.as_str())).then_some(())
        },
    )
    .await;
    // `node drain` waits until nothing runs there, as Nomad's does.
    let out = cli(&addr, &["node", "drain", &worker, "--deadline", "60s"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains(&format!("node {worker} drained")), "{said}");
    let nodes = get_json(&format!("{addr}/v1/nodes")).await.unwrap();
    let w = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == worker.as_str())
        .unwrap();
    assert_eq!(w["allocations"], 0, "drain returned with work left: {w}");
    wait_for(
        "nothing left on the drained worker",
        Duration::from_secs(60),
        async || {
            let r = running(&addr, "drained").await;
            let off = r.iter().all(|a| a["node"] != worker.as_str());
            (r.len() == 4 && off && Containers::of(&worker).is_empty()).then_some(())
        },
    )
    .await;
    let list = String::from_utf8_lossy(&cli(&addr, &["node", "list"]).stdout).to_string();
    assert!(list.contains("ready+drain"), "{list}");
    submit(&addr, &web_json("after-drain", 4)).await.unwrap();
    wait_for(
        "a new job placed, not on the drained node",
        Duration::from_secs(60),
        async || {
            let r = running(&addr, "after-drain").await;
            (r.len() == 4).then_some(())
        },
    )
    .await;
    assert!(running(&addr, "after-drain")
        .await
        .iter()
        .all(|a| a["node"] != worker.as_str()));
    assert!(cli(&addr, &["node", "undrain", &worker]).status.success());
    let nodes = get_json(&format!("{addr}/v1/nodes")).await.unwrap();
    let w = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == worker.as_str())
        .unwrap();
    assert_eq!(w["draining"], false);

    // Remove a manager that is not the leader.
    let leader = wait_for("a leader", Duration::from_secs(20), async || {
        c.leader().await
    })
    .await;
    let gone = (0..3).find(|i| *i != leader).unwrap();
    let gone_id = c.nodes[gone].spec.id.clone();
    let via = c.nodes[leader].spec.addr();
    // Alive, it is refused with the way to do it; stopped, it goes.
    let out = cli(&via, &["node", "remove", &gone_id]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "an alive node was removed");
    assert!(
        err.contains("is still alive: drain it") && err.contains("stop its agent"),
        "{err}"
    );
    c.nodes[gone].kill9();
    wait_for(
        "the stopped node's removal",
        Duration::from_secs(20),
        async || {
            cli(&via, &["node", "remove", &gone_id])
                .status
                .success()
                .then_some(())
        },
    )
    .await;
    let status = get_json(&format!("{via}/v1/status/leader")).await.unwrap();
    let voters: Vec<&str> = status["voters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(voters.len(), 2, "{status}");
    assert!(!voters.contains(&gone_id.as_str()));
    assert_eq!(
        submit(&via, &web_json("after-remove", 0)).await,
        Ok(1),
        "two voters still commit"
    );
    let nodes = get_json(&format!("{via}/v1/nodes")).await.unwrap();
    assert!(nodes
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["id"] != gone_id.as_str()));
    wait_for(
        "the removed node's replicas elsewhere",
        Duration::from_secs(60),
        async || {
            let r = running(&via, "drained").await;
            (r.len() == 4 && r.iter().all(|a| a["node"] != gone_id.as_str())).then_some(())
        },
    )
    .await;
}
