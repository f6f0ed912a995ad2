//! Periodic jobs on the real engine: `*/2 * * * * *` launches one run per
//! tick (each a real container that runs `echo` and completes), with none
//! missed and none twice — also across a leader SIGKILL in a 3-manager
//! cluster; `forbid` with a run longer than the period skips and records it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use orion_runtime::image;
use serde_json::{json, Value};

use crate::support::*;

fn periodic(name: &str, cmd: &str, concurrency: &str) -> Value {
    json!({
        "name": name,
        "type": "batch",
        "task": {
            "image": image::DEMO_IMAGE,
            "command": ["sh", "-c", cmd],
            "resources": { "cpu": 0.05, "memory_mb": 16 }
        },
        "schedule": {
            "cron": "*/2 * * * * *", "concurrency": concurrency,
            "history": { "successful": 100, "failed": 100 }
        }
    })
}

/// The runs' ticks (Unix seconds) and healths, and the skips, from any node.
async fn runs(addr: &str, job: &str) -> Option<(Vec<(u64, String)>, Vec<Value>, u64)> {
    let j = get_json(&format!("{addr}/v1/jobs/{job}")).await?;
    let p = &j["periodic"];
    let runs = p["runs"]
        .as_array()?
        .iter()
        .filter_map(|r| {
            let name = r["name"].as_str()?;
            let tick = name.rsplit('-').next()?.parse().ok()?;
            Some((tick, r["health"].as_str()?.to_string()))
        })
        .collect();
    Some((
        runs,
        p["skipped"].as_array()?.clone(),
        p["launched"].as_u64()?,
    ))
}

/// Every tick from the first run's to the last's is there once: 2 s apart.
fn assert_every_tick(ticks: &[u64]) {
    let set: BTreeSet<u64> = ticks.iter().copied().collect();
    assert_eq!(set.len(), ticks.len(), "a tick launched twice: {ticks:?}");
    let v: Vec<u64> = set.into_iter().collect();
    assert!(v.iter().all(|t| t % 2 == 0), "{v:?}");
    assert!(
        v.windows(2).all(|w| w[1] == w[0] + 2),
        "a tick missed: {v:?}"
    );
}

#[tokio::test]
async fn every_tick_runs_once_and_forbid_skips_on_one_node() {
    if !engine().await {
        return;
    }
    let solo = Solo::start("e2e-cron").await;
    let addr = solo.addr.clone();
    submit(&addr, &periodic("tick", "echo ok", "allow"))
        .await
        .unwrap();
    submit(&addr, &periodic("long", "sleep 5", "forbid"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let (tick, _, launched) = runs(&addr, "tick").await.unwrap();
    let ticks: Vec<u64> = tick.iter().map(|(t, _)| *t).collect();
    assert!((5..=7).contains(&ticks.len()), "12 s of */2: {ticks:?}");
    assert_eq!(launched as usize, ticks.len());
    assert_every_tick(&ticks);
    // They ran for real: all but maybe the newest completed.
    let complete = tick.iter().filter(|(_, h)| h == "complete").count();
    assert!(complete + 1 >= tick.len(), "{tick:?}");

    let (long, skipped, _) = runs(&addr, "long").await.unwrap();
    assert!(long.len() >= 2 && long.len() <= 4, "{long:?}");
    assert!(
        !skipped.is_empty(),
        "forbid with a 5 s run every 2 s skipped nothing"
    );
    assert!(
        skipped
            .iter()
            .all(|s| s["reason"].as_str().unwrap().contains("still running")),
        "{skipped:?}"
    );
    // Forced by hand, on the CLI.
    let out = cli(&addr, &["job", "periodic", "force", "tick"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("launched tick-periodic-"));
    let status = cli(&addr, &["job", "status", "tick"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("schedule \"*/2 * * * * *\"") && text.contains("next: "),
        "{text}"
    );
}

#[tokio::test]
async fn a_leader_kill_neither_repeats_nor_loses_a_tick() {
    if !engine().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::start(dir.path(), "e2e-cronha", 3, 0).await;
    let first = c.nodes[0].spec.addr();
    submit(&first, &periodic("ha", "echo ok", "allow"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let leader = wait_for("a leader", Duration::from_secs(10), async || {
        c.leader().await
    })
    .await;
    c.nodes[leader].kill9();
    let survivor = c.other_than(leader);
    let killed = Instant::now();
    wait_for("a new leader", Duration::from_secs(30), async || {
        let l = get_json(&format!("{survivor}/v1/status/leader")).await?;
        (l["leader"].is_string() && l["leader"] != c.nodes[leader].spec.id.as_str()).then_some(())
    })
    .await;
    eprintln!("new leader after {:?}", killed.elapsed());
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (runs, skipped, launched) = runs(&survivor, "ha").await.unwrap();
    let ticks: Vec<u64> = runs.iter().map(|(t, _)| *t).collect();
    assert!(
        skipped.is_empty(),
        "a tick was missed within its deadline: {skipped:?}"
    );
    assert_eq!(launched as usize, ticks.len());
    assert!(ticks.len() >= 6, "{ticks:?}");
    assert_every_tick(&ticks);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        now - ticks.last().unwrap() <= 4,
        "ticks stopped at {ticks:?} (now {now})"
    );
}
