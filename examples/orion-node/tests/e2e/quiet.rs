//! No false alarms (issue 17): a 3-manager + 2-worker cluster of real
//! `orion-node` processes beside a busy load that saturates both cores, with
//! one node's process stopped for 500 ms every 3 s (SIGSTOP / SIGCONT, each
//! node in turn, the leader included), marks no node down and holds no
//! election: every manager's term is the one it started with.
//!
//! 60 s in CI; `ORION_QUIET_SECS=600` runs the 10-minute version by hand.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// Busy loops, one per core, killed (and reaped) when dropped, also on failure.
struct Busy(Vec<Child>);

impl Busy {
    fn start() -> Busy {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Busy(
            (0..cores)
                .map(|_| {
                    Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .stdin(Stdio::null())
                        .spawn()
                        .expect("spawn a busy loop")
                })
                .collect(),
        )
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Each manager's Raft term, as its `/health` reports it.
async fn terms(c: &LocalCluster, managers: usize) -> Option<Vec<u64>> {
    let mut out = Vec::new();
    for n in &c.nodes[..managers] {
        let h = get_json(&format!("{}/health", n.spec.addr())).await?;
        out.push(h["components"]["store"]["term"].as_u64()?);
    }
    Some(out)
}

// Not met yet: the first run held 8 elections in 60 s (0 false downs): a
// follower woken from a pause elects and deposes the leader (openraft 0.9
// has no pre-vote). Run by hand with `--ignored` until Orion's own
// pre-vote elector lands.
#[ignore = "fails today: spurious elections, no pre-vote in openraft 0.9"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_cluster_with_paused_nodes_raises_no_false_alarm() {
    if !engine().await {
        return;
    }
    let secs: u64 = std::env::var("ORION_QUIET_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let managers = 3;
    let dir = tempfile::tempdir().unwrap();
    let c = LocalCluster::start(dir.path(), "e2e-quiet", managers, 2).await;
    wait_for("a leader", Duration::from_secs(30), async || {
        c.leader().await
    })
    .await;
    let before = wait_for("every term", Duration::from_secs(10), async || {
        terms(&c, managers).await
    })
    .await;

    let busy = Busy::start();
    let started = Instant::now();
    let mut next_pause = started + Duration::from_secs(3);
    let mut victim = 0;
    let (mut pauses, mut looks) = (0, 0);
    let mut alarms: Vec<String> = Vec::new();
    while started.elapsed() < Duration::from_secs(secs) {
        if Instant::now() >= next_pause {
            let n = &c.nodes[victim % c.nodes.len()];
            n.signal("STOP");
            tokio::time::sleep(Duration::from_millis(500)).await;
            n.signal("CONT");
            victim += 1;
            pauses += 1;
            next_pause += Duration::from_secs(3);
        }
        // Every node's view of every node: not ready (down, or marked lost)
        // anywhere is an alarm. A node still stopped may not answer: skip it.
        for n in &c.nodes {
            let Some(nodes) = get_json(&format!("{}/v1/nodes", n.spec.addr())).await else {
                continue;
            };
            looks += 1;
            for m in nodes.as_array().into_iter().flatten() {
                let (id, status) = (m["id"].as_str().unwrap_or(""), &m["status"]);
                if status != "ready" {
                    alarms.push(format!(
                        "{:.1} s: {} sees {id} {status} ({})",
                        started.elapsed().as_secs_f64(),
                        n.spec.id,
                        m["health"]
                    ));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(busy);
    let after = wait_for("every term", Duration::from_secs(10), async || {
        terms(&c, managers).await
    })
    .await;
    eprintln!(
        "quiet run: {secs} s, {pauses} pauses of 500 ms, {looks} looks, {} alarms, terms {before:?} → {after:?}",
        alarms.len()
    );
    assert!(looks > 0, "no node ever answered");
    assert!(alarms.is_empty(), "false alarms: {alarms:#?}");
    assert_eq!(before, after, "an election was held (terms moved)");
}
