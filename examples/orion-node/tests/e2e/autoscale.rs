//! Autoscaling on the real engine. A busybox httpd whose `/cgi-bin/burn`
//! spins its CPU (0.25 core: the engine throttles it there) is driven through
//! the balancer above its 50% target: the job scales up, each new instance
//! healthy before the balancer sends it anything, within the seed's 60 s;
//! when the load stops it scales down after its window and cooldown while a
//! client going through the balancer sees no failed request. And on three
//! managers, a leader killed right after a step: the new leader keeps the
//! committed cooldown (no double step) and carries on.
//!
//! `ORION_AUTOSCALE_DEFAULTS=1` runs the first test at the default stats
//! interval (10 s) and evaluation interval (15 s), for the closing note's
//! figures; by default both are 2 s so the test stays short.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orion_runtime::image;
use serde_json::{json, Value};

use crate::support::*;

/// busybox httpd: `/` names its allocation; `/cgi-bin/burn` spins for a
/// while; `/metrics` serves `queue_depth <QUEUE>`.
fn burner(name: &str, lb_port: u16, scaling: Value) -> Value {
    let script = "mkdir -p /tmp/www/cgi-bin; \
        printf '#!/bin/sh\\ni=0\\nwhile [ $i -lt 3000 ]; do i=$((i+1)); done\\necho\\necho burned\\n' > /tmp/www/cgi-bin/burn; \
        chmod +x /tmp/www/cgi-bin/burn; echo \"$ORION_ALLOC_ID\" > /tmp/www/index.html; \
        echo \"queue_depth ${QUEUE:-0}\" > /tmp/www/metrics; \
        exec httpd -f -p 80 -h /tmp/www";
    json!({
        "name": name,
        "replicas": 1,
        "task": {
            "image": image::DEMO_IMAGE,
            "command": ["sh", "-c", script],
            "env": { "QUEUE": "100" },
            "ports": [{ "name": "http", "container_port": 80, "lb": { "port": lb_port, "mode": "http" } }],
            "resources": { "cpu": 0.25, "memory_mb": 16 },
            "metrics": { "port": "http", "path": "/metrics" },
            "health_checks": [{
                "type": "http", "port": "http", "path": "/",
                "interval": "300ms", "timeout": "250ms", "grace": "0s", "failures": 2
            }]
        },
        "update": { "min_healthy_time": "1s", "healthy_deadline": "30s", "progress_deadline": "60s" },
        "scaling": scaling
    })
}

async fn scaling(addr: &str, job: &str) -> Option<Value> {
    get_json(&format!("{addr}/v1/jobs/{job}/scaling")).await
}

/// The allocations the balancer at `addr` sends `service` to.
async fn backends(addr: &str, service: &str) -> Option<BTreeSet<String>> {
    let v = get_json(&format!("{addr}/v1/services/{service}/lb")).await?;
    Some(
        v[0]["backends"]
            .as_array()?
            .iter()
            .filter(|b| b["draining"] != true)
            .filter_map(|b| Some(b["alloc"].as_str()?.to_string()))
            .collect(),
    )
}

/// `n` clients sending `path` through `lb` until `stop`, each pausing
/// `pause` between requests: (answered, failed, the first failures).
fn clients(
    lb: SocketAddr,
    path: &'static str,
    n: usize,
    pause: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(usize, usize, Vec<String>)>> {
    (0..n)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let (mut ok, mut failed, mut errors) = (0, 0, Vec::new());
                while !stop.load(Ordering::SeqCst) {
                    tokio::time::sleep(pause).await;
                    match http.get(format!("http://{lb}{path}")).send().await {
                        Ok(r) if r.status() == 200 => ok += 1,
                        Ok(r) => {
                            failed += 1;
                            if errors.len() < 5 {
                                errors.push(format!("{}", r.status()));
                            }
                        }
                        Err(e) => {
                            failed += 1;
                            if errors.len() < 5 {
                                errors.push(e.to_string());
                            }
                        }
                    }
                }
                (ok, failed, errors)
            })
        })
        .collect()
}

async fn join(
    handles: Vec<tokio::task::JoinHandle<(usize, usize, Vec<String>)>>,
) -> (usize, usize, Vec<String>) {
    let mut out = (0, 0, Vec::new());
    for h in handles {
        let (ok, failed, errors) = h.await.unwrap();
        out.0 += ok;
        out.1 += failed;
        out.2.extend(errors);
    }
    out
}

#[tokio::test]
async fn cpu_load_scales_up_through_healthy_instances_and_down_without_a_failed_request() {
    if !engine().await {
        return;
    }
    let defaults = std::env::var("ORION_AUTOSCALE_DEFAULTS").is_ok_and(|v| v == "1");
    let (stats, eval) = if defaults {
        ("10s", "15s")
    } else {
        ("2s", "2s")
    };
    let solo = Solo::start_with("e2e-autoscale", |spec, _| {
        spec.extra.extend(["--stats-interval".into(), stats.into()]);
    })
    .await;
    let addr = solo.addr.clone();
    let port = free_port();
    let policy = json!({
        "min": 1, "max": 4,
        "policies": [
            { "target": { "metric": "cpu", "value": 50 } },
            // Never the largest: here to show the other inputs are read.
            { "target": { "metric": "memory", "value": 99 } },
            { "target": { "metric": "requests_per_second", "value": 100000 } }
        ],
        "evaluation_interval": eval,
        "cooldown_up": "10s", "cooldown_down": "10s", "stabilization_window": "10s"
    });
    submit(&addr, &burner("burner", port, policy))
        .await
        .unwrap();
    wait_for("one healthy backend", Duration::from_secs(60), async || {
        (backends(&addr, "burner").await?.len() == 1).then_some(())
    })
    .await;
    let lb: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // Load: 6 clients spinning the CPU of whichever instance they reach.
    let load_stop = Arc::new(AtomicBool::new(false));
    let load = clients(lb, "/cgi-bin/burn", 6, Duration::ZERO, load_stop.clone());
    let started = Instant::now();
    let mut seen_backends = BTreeSet::new();
    let up = wait_for(
        "the job to scale up and serve",
        Duration::from_secs(90),
        async || {
            let job = get_json(&format!("{addr}/v1/jobs/burner")).await?;
            let healthy: BTreeSet<String> = job["allocations"]
                .as_array()?
                .iter()
                .filter(|a| a["health"]["status"] == "healthy" && a["state"] == "running")
                .filter_map(|a| Some(a["id"].as_str()?.to_string()))
                .collect();
            let now = backends(&addr, "burner").await?;
            // Every instance the balancer sends to is healthy (checked at each
            // look, while the new ones start).
            for b in &now {
                assert!(
                    healthy.contains(b),
                    "the balancer sends to {b}, which is not healthy yet: {job}"
                );
            }
            seen_backends.extend(now.iter().cloned());
            let replicas = job["spec"]["replicas"].as_u64()?;
            (replicas >= 2 && now.len() as u64 == replicas).then(|| (replicas, started.elapsed()))
        },
    )
    .await;
    let view = scaling(&addr, "burner").await.unwrap();
    let first = &view["decisions"][0];
    assert_eq!(first["by"], "policy", "{view}");
    assert_eq!(first["from"], 1, "{view}");
    assert!(
        first["reason"]
            .as_str()
            .unwrap()
            .contains("against a target of 50"),
        "{view}"
    );
    assert!(first["inputs"]["cpu"].as_f64().unwrap() > 50.0, "{view}");
    // Memory in percent of the 16 MiB limit; requests through the balancer.
    let memory = first["inputs"]["memory"].as_f64().unwrap();
    assert!(memory > 0.0 && memory < 100.0, "{view}");
    assert!(
        first["inputs"]["requests_per_second"].as_f64().unwrap() > 0.0,
        "{view}"
    );
    let d = get_json(&format!("{addr}/v1/jobs/burner/deployment"))
        .await
        .unwrap();
    assert!(
        d["description"]
            .as_str()
            .unwrap_or_default()
            .starts_with("scaling up from")
            || d["status"] == "successful",
        "{d}"
    );
    eprintln!(
        "autoscale: load start -> {} instances serving in {:.1} s (stats every {stats}, evaluation every {eval}); seed bound 60 s",
        up.0,
        up.1.as_secs_f64()
    );
    assert!(
        up.1 < Duration::from_secs(60),
        "the seed's bound: up within 60 s of the load, took {:?}",
        up.1
    );
    // Let it reach its top under the load.
    wait_for("the job at 4", Duration::from_secs(90), async || {
        let v = scaling(&addr, "burner").await?;
        (v["replicas"] == 4 && backends(&addr, "burner").await?.len() == 4).then_some(())
    })
    .await;
    load_stop.store(true, Ordering::SeqCst);
    let (burned, _, _) = join(load).await;
    assert!(burned > 0);

    // The load ends: down to 1 after the window and the cooldown, with two
    // clients going through the balancer all along (paced: httpd forks for
    // each request, and unpaced they are a load of their own).
    let ended = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let watch = clients(lb, "/", 2, Duration::from_millis(25), stop.clone());
    let mut said = String::new();
    let down = wait_for(
        "the job to scale down",
        Duration::from_secs(120),
        async || {
            let v = scaling(&addr, "burner").await?;
            let last = v["last"].to_string();
            if last != said {
                eprintln!("autoscale: evaluated {last}");
                said = last;
            }
            let live = get_json(&format!("{addr}/v1/jobs/burner")).await?["running"].as_u64()?;
            (v["replicas"] == 1 && live == 1 && backends(&addr, "burner").await?.len() == 1)
                .then(|| ended.elapsed())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let (ok, failed, errors) = join(watch).await;
    eprintln!(
        "autoscale: load end -> down to 1 in {:.1} s (window 10 s, cooldown 10 s; seed bound 5 min); {ok} requests through the balancer during it, {failed} failed",
        down.as_secs_f64()
    );
    assert!(ok > 50, "only {ok} requests went through");
    assert_eq!(
        failed, 0,
        "requests failed during the scale-down: {errors:?}"
    );
    let view = scaling(&addr, "burner").await.unwrap();
    let decisions = view["decisions"].as_array().unwrap();
    let last = decisions.last().unwrap();
    assert_eq!(last["to"], 1, "{view}");
    assert!(
        last["reason"].as_str().unwrap().starts_with("down to"),
        "{view}"
    );
    eprintln!(
        "autoscale: {} decisions: {}",
        decisions.len(),
        decisions
            .iter()
            .map(|d| format!("{}->{}", d["from"], d["to"]))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // The scale-down is in the event stream's history of the job, and in
    // `job status`.
    let out = cli(&addr, &["job", "status", "burner"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("scaling 1..4"), "{text}");
    assert!(text.contains("-> 1: down to"), "{text}");
    // By hand: the policy is suspended, and the CLI says so.
    let out = cli(&addr, &["job", "scale", "burner", "3"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("suspended for 10s"), "{text}");
    let v = scaling(&addr, "burner").await.unwrap();
    assert!(v["suspended_until_ms"].as_u64().is_some(), "{v}");
}

/// A step policy on a custom metric every instance reports high: the first
/// step commits, the leader is killed at once, and the new leader waits out
/// the committed cooldown before the next step (one decision per step, made
/// from the count the last one left).
#[tokio::test]
async fn a_new_leader_keeps_the_committed_cooldown_and_carries_on() {
    if !engine().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(dir.path(), "e2e-autoscale-lead", 3, 0).await;
    let addr = cluster.nodes[0].spec.addr();
    let policy = json!({
        "min": 1, "max": 3,
        "policies": [{ "step": { "metric": "custom:queue_depth", "above": 10, "add": 1 } }],
        "evaluation_interval": "1s",
        "cooldown_up": "20s"
    });
    submit(&addr, &burner("stepper", free_port(), policy))
        .await
        .unwrap();
    let first = wait_for("the first step", Duration::from_secs(90), async || {
        let v = scaling(&addr, "stepper").await?;
        let d = v["decisions"].as_array()?.first()?.clone();
        Some(d)
    })
    .await;
    assert_eq!(
        (first["from"].as_u64(), first["to"].as_u64()),
        (Some(1), Some(2)),
        "{first}"
    );
    assert!(
        first["inputs"]["custom:queue_depth"].as_f64().unwrap() > 10.0,
        "{first}"
    );
    let leader = wait_for("a leader", Duration::from_secs(30), async || {
        cluster.leader().await
    })
    .await;
    cluster.nodes[leader].kill9();
    let other = cluster.other_than(leader);
    let new_leader = wait_for("a new leader", Duration::from_secs(30), async || {
        cluster.leader().await.filter(|l| *l != leader)
    })
    .await;
    // The next step, by the new leader, after the committed cooldown.
    let second = wait_for("the second step", Duration::from_secs(90), async || {
        let v = scaling(&other, "stepper").await?;
        v["decisions"].as_array()?.get(1).cloned()
    })
    .await;
    let gap = second["at_ms"].as_u64().unwrap() - first["at_ms"].as_u64().unwrap();
    eprintln!(
        "autoscale: leader {} killed after the first step; node {} made the second {gap} ms after it",
        cluster.nodes[leader].spec.id, cluster.nodes[new_leader].spec.id
    );
    assert_eq!(
        (second["from"].as_u64(), second["to"].as_u64()),
        (Some(2), Some(3)),
        "{second}"
    );
    assert!(
        gap >= 20_000,
        "the second step came {gap} ms after the first: a double step"
    );
    // At its max it stays: two decisions, no more.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let v = scaling(&other, "stepper").await.unwrap();
    assert_eq!(v["decisions"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["replicas"], 3, "{v}");
}
