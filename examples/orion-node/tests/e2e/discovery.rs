//! Discovery and load balancing on the real engine: a 3-node cluster (host
//! IPs 127.0.0.1-3, each node with its own DNS port) runs three instances of a
//! busybox httpd whose `/` names its allocation; the catalog, `dig` and the
//! balancer on every node see them, follow a killed one and a sick one; and a
//! client going through the balancer without pause sees no failed request
//! while four replicas roll start-first, and at most 1% stop-first.

use orion_core::testing::OutputWithin;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orion_runtime::image;
use serde_json::{json, Value};

use crate::support::*;

/// busybox httpd: `/` answers `<alloc> v<V>`; `/cgi-bin/health` answers 500
/// once `/tmp/sick` exists.
fn workload(name: &str, replicas: u32, v: u32, lb: Value, update: Value) -> Value {
    let script = "mkdir -p /tmp/www/cgi-bin; \
        printf '#!/bin/sh\\nif [ -f /tmp/sick ]; then echo \"Status: 500\"; else echo \"Status: 200\"; fi\\necho\\necho ok\\n' > /tmp/www/cgi-bin/health; \
        chmod +x /tmp/www/cgi-bin/health; echo \"$ORION_ALLOC_ID v$V\" > /tmp/www/index.html; \
        exec httpd -f -p 80 -h /tmp/www";
    json!({
        "name": name,
        "replicas": replicas,
        "strategy": "spread",
        "task": {
            "image": image::DEMO_IMAGE,
            "command": ["sh", "-c", script],
            "env": { "V": v.to_string() },
            "ports": [{ "name": "http", "container_port": 80, "lb": lb }],
            "resources": { "cpu": 0.05, "memory_mb": 16 },
            "health_checks": [{
                "type": "http", "port": "http", "path": "/cgi-bin/health",
                "interval": "300ms", "timeout": "250ms", "grace": "0s", "failures": 2
            }]
        },
        "update": update
    })
}

/// `dig` answers for `name`, one line each.
fn dig(server: SocketAddr, name: &str, qtype: &str) -> Vec<String> {
    let out = Command::new("dig")
        .args([
            &format!("@{}", server.ip()),
            "-p",
            &server.port().to_string(),
            name,
            qtype,
            "+short",
            "+time=2",
            "+tries=1",
        ])
        .output()
        .expect("dig (dnsutils) is needed: .ci/run installs it");
    assert!(out.status.success(), "dig failed: {out:?}");
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

async fn instances(addr: &str, service: &str) -> Option<(u64, Vec<Value>)> {
    let r = reqwest::get(format!("{addr}/v1/services/{service}"))
        .await
        .ok()?;
    let index = r
        .headers()
        .get("x-orion-index")?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    Some((index, r.json::<Vec<Value>>().await.ok()?))
}

/// `n` GETs of `/` through the balancer at `lb`, counted by allocation.
async fn spread(lb: SocketAddr, n: usize) -> BTreeMap<String, usize> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut out = BTreeMap::new();
    for i in 0..n {
        let r = http
            .get(format!("http://{lb}/"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {i} through {lb}: {e}"));
        assert_eq!(r.status(), 200, "request {i} through {lb}");
        let body = r.text().await.unwrap();
        let alloc = body
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        *out.entry(alloc).or_insert(0) += 1;
    }
    out
}

fn docker(args: &[&str]) {
    let out = Command::new("docker")
        .args(args)
        .output_within(orion_core::testing::DOCKER_CALL)
        .unwrap();
    assert!(out.status.success(), "docker {args:?}: {out:?}");
}

#[tokio::test]
async fn catalog_dns_and_balancer_on_three_nodes_follow_kills_and_sickness() {
    if !engine().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let test = "e2e-disc";
    let ids: Vec<String> = (0..3).map(|i| node_id(&format!("{test}-m{i}"))).collect();
    let _cleanup = Containers(ids.clone());
    let mut nodes: Vec<Node> = Vec::new();
    let mut dns = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let mut spec = NodeSpec::new(id, dir.path());
        let ip = format!("127.0.0.{}", i + 1);
        let d: SocketAddr = format!("{ip}:{}", free_port()).parse().unwrap();
        spec.extra
            .extend(["--host-ip".into(), ip, "--dns".into(), d.to_string()]);
        if let Some(first) = nodes.first() {
            spec.extra.extend(["--join".to_string(), first.spec.addr()]);
        }
        dns.push(d);
        nodes.push(Node::start_ready(&spec).await);
    }
    let addrs: Vec<String> = nodes.iter().map(|n| n.spec.addr()).collect();
    let port = free_port();
    let lb_at = |i: usize| -> SocketAddr { format!("127.0.0.{}:{port}", i + 1).parse().unwrap() };
    let spec = workload(
        "web",
        3,
        1,
        json!({ "port": port, "mode": "http" }),
        json!(null),
    );
    let spec = {
        let mut s = spec;
        s.as_object_mut().unwrap().remove("update");
        s
    };
    wait_for(
        "the job to be accepted",
        Duration::from_secs(30),
        async || submit(&addrs[0], &spec).await.ok(),
    )
    .await;
    // Three healthy instances, one per node, in every node's catalog.
    let (_, all) = wait_for(
        "3 healthy instances in the catalog",
        Duration::from_secs(90),
        async || {
            let (i, v) = instances(&addrs[2], "web").await?;
            (v.len() == 3).then_some((i, v))
        },
    )
    .await;
    let mut ips: Vec<&str> = all.iter().map(|i| i["address"].as_str().unwrap()).collect();
    ips.sort();
    assert_eq!(ips, ["127.0.0.1", "127.0.0.2", "127.0.0.3"], "{all:?}");
    // dig, against a node's own DNS: A and SRV.
    let a = dig(dns[1], "web.service.orion", "A");
    assert_eq!(a, ["127.0.0.1", "127.0.0.2", "127.0.0.3"]);
    let srv = dig(dns[2], "_web._tcp.service.orion", "SRV");
    assert_eq!(srv.len(), 3, "{srv:?}");
    for i in &all {
        let p = i["port"].as_u64().unwrap().to_string();
        assert!(
            srv.iter().any(|l| l.split_whitespace().nth(2) == Some(&p)),
            "{srv:?} lacks {i}"
        );
    }
    assert!(dig(dns[0], "nothing.service.orion", "A").is_empty());

    // Round robin through any node's balancer reaches all three, evenly.
    for a in &addrs {
        wait_for(
            "the balancer to list 3 backends",
            Duration::from_secs(10),
            async || {
                let v = get_json(&format!("{a}/v1/services/web/lb")).await?;
                (v[0]["backends"].as_array()?.len() == 3).then_some(())
            },
        )
        .await;
    }
    let got = spread(lb_at(1), 3000).await;
    assert_eq!(got.len(), 3, "{got:?}");
    for n in got.values() {
        assert!(
            n.abs_diff(1000) <= 50,
            "round robin off by more than 5%: {got:?}"
        );
    }

    // Kill one instance's container: once its node notices, the catalog and
    // DNS of another node drop it within a second, and a blocking query that
    // was waiting returns.
    let (index, _) = instances(&addrs[0], "web").await.unwrap();
    let blocking = {
        let url = format!("{}/v1/services/web?index={index}&wait=30s", addrs[0]);
        tokio::spawn(async move {
            let t = Instant::now();
            let r = reqwest::get(url).await.unwrap();
            let i: u64 = r.headers()["x-orion-index"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            (t.elapsed(), i)
        })
    };
    let victim = all[0]["alloc"].as_str().unwrap().to_string();
    let victim_ip = all[0]["address"].as_str().unwrap().to_string();
    let container = Containers::running_of_alloc(&victim).remove(0);
    docker(&["kill", &container]);
    wait_for(
        "the victim's node to notice",
        Duration::from_secs(10),
        async || {
            let a = get_json(&format!("{}/v1/allocations/{victim}", addrs[0])).await?;
            (a["state"] != "running").then_some(())
        },
    )
    .await;
    let noticed = Instant::now();
    wait_for(
        "the catalog and DNS to drop the victim",
        Duration::from_secs(5),
        async || {
            let (_, v) = instances(&addrs[2], "web").await?;
            let in_catalog = v.iter().any(|i| i["alloc"] == victim.as_str());
            let in_dns = dig(dns[2], "web.service.orion", "A").contains(&victim_ip);
            (!in_catalog && !in_dns).then_some(())
        },
    )
    .await;
    let took = noticed.elapsed();
    // Generous: the point is that they follow the node's notice promptly,
    // beside three node processes on two cores.
    assert!(
        took < Duration::from_secs(5),
        "catalog and DNS took {took:?} after the node noticed"
    );
    let (waited, new_index) = blocking.await.unwrap();
    assert!(
        new_index > index && waited < Duration::from_secs(20),
        "{waited:?} {new_index}"
    );

    // Make a (restarted or replaced) instance sick: after its node reports it
    // unhealthy, no request reaches it.
    let (_, now) = wait_for(
        "3 healthy instances again",
        Duration::from_secs(90),
        async || {
            let (i, v) = instances(&addrs[0], "web").await?;
            (v.len() == 3).then_some((i, v))
        },
    )
    .await;
    let sick = now[1]["alloc"].as_str().unwrap().to_string();
    let container = Containers::running_of_alloc(&sick).remove(0);
    docker(&["exec", &container, "touch", "/tmp/sick"]);
    wait_for(
        "the sick instance's node to report it",
        Duration::from_secs(20),
        async || {
            let a = get_json(&format!("{}/v1/allocations/{sick}", addrs[0])).await?;
            (a["health"]["status"] == "unhealthy"
                || a["desired"] != "run"
                || a["state"] != "running")
                .then_some(())
        },
    )
    .await;
    for i in 0..3 {
        let got = spread(lb_at(i), 100).await;
        assert!(
            !got.contains_key(&sick),
            "a request reached the sick instance via node {i}: {got:?}"
        );
    }
    drop(nodes);
}

/// Sends GETs through `lb` without pause until `stop`, counting answers and failures.
fn client_loop(
    lb: SocketAddr,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, usize, Vec<String>)> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let (mut ok, mut failed, mut errors) = (0, 0, Vec::new());
        while !stop.load(Ordering::SeqCst) {
            match http.get(format!("http://{lb}/")).send().await {
                Ok(r) if r.status() == 200 => ok += 1,
                Ok(r) => {
                    failed += 1;
                    errors.push(format!(
                        "{}: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    ));
                }
                Err(e) => {
                    failed += 1;
                    errors.push(e.to_string());
                }
            }
        }
        (ok, failed, errors)
    })
}

fn write(dir: &Path, name: &str, spec: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(spec).unwrap()).unwrap();
    path.to_string_lossy().into_owned()
}

async fn rolled(addr: &str, version: u64) {
    wait_for(
        &format!("version {version} rolled out"),
        Duration::from_secs(120),
        async || {
            let d = get_json(&format!("{addr}/v1/jobs/roll/deployment")).await?;
            assert_ne!(d["status"], "failed", "{d}");
            (d["job_version"] == version && d["status"] == "successful").then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn no_request_fails_through_the_balancer_during_rolling_updates() {
    if !engine().await {
        return;
    }
    let solo = Solo::start("e2e-lbroll").await;
    let addr = solo.addr.clone();
    let port = free_port();
    let lb = json!({ "port": port, "mode": "http" });
    let order = |o: &str| json!({ "max_parallel": 1, "order": o, "min_healthy_time": "1s", "healthy_deadline": "30s", "progress_deadline": "60s" });
    let v1 = workload("roll", 4, 1, lb.clone(), order("start_first"));
    submit(&addr, &v1).await.unwrap();
    wait_for("4 healthy backends", Duration::from_secs(90), async || {
        let v = get_json(&format!("{addr}/v1/services/roll/lb")).await?;
        (v[0]["backends"].as_array()?.len() == 4).then_some(())
    })
    .await;
    rolled(&addr, 1).await;
    let at: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    for (version, how) in [(2u64, "start_first"), (3, "stop_first")] {
        let stop = Arc::new(AtomicBool::new(false));
        let client = client_loop(at, stop.clone());
        tokio::time::sleep(Duration::from_millis(500)).await;
        let spec = workload("roll", 4, version as u32, lb.clone(), order(how));
        write(solo.dir.path(), &format!("v{version}.json"), &spec);
        submit(&addr, &spec).await.unwrap();
        rolled(&addr, version).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::SeqCst);
        let (ok, failed, errors) = client.await.unwrap();
        eprintln!("rolling update {how}: {ok} requests answered, {failed} failed {errors:?}");
        assert!(ok > 100, "{how}: only {ok} requests went through");
        if how == "start_first" {
            assert_eq!(failed, 0, "{how}: {errors:?}");
        } else {
            assert!(
                failed * 100 <= ok + failed,
                "{how}: {failed} of {} failed: {errors:?}",
                ok + failed
            );
        }
        // Every answer now comes from the new version.
        let body = reqwest::get(format!("http://{at}/"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(body.trim().ends_with(&format!("v{version}")), "{body}");
    }
}

/// busybox httpd naming its allocation at `/`, and at `/cgi-bin/slow` after 3 s.
fn named(name: &str, replicas: u32, lb: Value, service: &str) -> Value {
    let script = "mkdir -p /tmp/www/cgi-bin; \
        printf '#!/bin/sh\\nsleep 3\\necho\\necho %s\\n' \"$ORION_ALLOC_ID\" > /tmp/www/cgi-bin/slow; \
        chmod +x /tmp/www/cgi-bin/slow; echo \"$ORION_ALLOC_ID\" > /tmp/www/index.html; \
        exec httpd -f -p 80 -h /tmp/www";
    json!({
        "name": name,
        "replicas": replicas,
        "task": {
            "image": image::DEMO_IMAGE,
            "command": ["sh", "-c", script],
            "ports": [{ "name": "http", "container_port": 80, "lb": lb }],
            "resources": { "cpu": 0.05, "memory_mb": 16 },
            "service": { "name": service }
        }
    })
}

async fn lb_ready(addr: &str, service: &str, n: usize) {
    wait_for(
        &format!("{n} backends of {service}"),
        Duration::from_secs(90),
        async || {
            let v = get_json(&format!("{addr}/v1/services/{service}/lb")).await?;
            (v[0]["bound"] == true && v[0]["backends"].as_array()?.len() == n).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn weighted_ip_hash_and_least_conn_on_real_containers() {
    if !engine().await {
        return;
    }
    let solo = Solo::start("e2e-lbalg").await;
    let addr = solo.addr.clone();
    let at = |port: u16| -> SocketAddr { format!("127.0.0.1:{port}").parse().unwrap() };

    // Weighted: two jobs of one service, weights 1 and 3.
    let wt = free_port();
    let w = |weight: u32| json!({ "port": wt, "mode": "http", "algorithm": "weighted", "weight": weight });
    submit(&addr, &named("wt-a", 1, w(1), "wt")).await.unwrap();
    submit(&addr, &named("wt-b", 1, w(3), "wt")).await.unwrap();
    // IP hash over three.
    let ih = free_port();
    submit(
        &addr,
        &named(
            "ih",
            3,
            json!({ "port": ih, "mode": "http", "algorithm": "ip_hash" }),
            "ih",
        ),
    )
    .await
    .unwrap();
    // Least connections over three.
    let lc = free_port();
    submit(
        &addr,
        &named(
            "lc",
            3,
            json!({ "port": lc, "mode": "http", "algorithm": "least_conn" }),
            "lc",
        ),
    )
    .await
    .unwrap();
    lb_ready(&addr, "wt", 2).await;
    lb_ready(&addr, "ih", 3).await;
    lb_ready(&addr, "lc", 3).await;
    // These have no health checks: an instance is a backend once it runs,
    // maybe before httpd listens. Wait until each answers through its listener.
    for port in [wt, ih, lc] {
        wait_for(
            "the instances to answer",
            Duration::from_secs(30),
            async || {
                let ok = (0..6).all(|_| true);
                let mut fine = ok;
                for _ in 0..6 {
                    let r = reqwest::get(format!("http://{}/", at(port))).await.ok()?;
                    fine &= r.status() == 200;
                }
                fine.then_some(())
            },
        )
        .await;
    }

    let got = spread(at(wt), 2000).await;
    let job_of = |alloc: &str| alloc.rsplitn(3, '-').last().unwrap_or_default().to_string();
    let mut by_job = BTreeMap::new();
    for (alloc, n) in &got {
        *by_job.entry(job_of(alloc)).or_insert(0) += n;
    }
    assert!(
        by_job["wt-a"].abs_diff(500) <= 25 && by_job["wt-b"].abs_diff(1500) <= 75,
        "weights 1:3: {by_job:?}"
    );

    let mut used = std::collections::BTreeSet::new();
    for last in 10..30u8 {
        let from: std::net::IpAddr = [127, 0, 0, last].into();
        let http = reqwest::Client::builder()
            .local_address(from)
            .build()
            .unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..10 {
            let r = http
                .get(format!("http://{}/", at(ih)))
                .send()
                .await
                .unwrap();
            seen.insert(r.text().await.unwrap().trim().to_string());
        }
        assert_eq!(seen.len(), 1, "client {from} moved: {seen:?}");
        used.extend(seen);
    }
    assert!(used.len() >= 2, "20 clients on {used:?}");

    // Two slow requests hold two instances; quick ones all go to the third.
    let slow = |n: u64| {
        let url = format!("http://{}/cgi-bin/slow", at(lc));
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(n * 200)).await;
            reqwest::get(url)
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
                .trim()
                .to_string()
        })
    };
    let (a, b) = (slow(0), slow(1));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let quick = spread(at(lc), 10).await;
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert_ne!(a, b, "the two slow requests shared an instance");
    assert_eq!(quick.len(), 1, "{quick:?}");
    let idle = quick.keys().next().unwrap();
    assert!(
        idle != &a && idle != &b,
        "quick requests went to a busy instance: {quick:?} ({a}, {b})"
    );
}
