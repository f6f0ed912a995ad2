//! The Docker engine restarted under a running node (issue 15). The shared
//! engine of this machine is not ours to restart, so the test runs a second
//! `dockerd` of its own (its own socket, data root and exec root) in a network
//! namespace of its own (`unshare --net`): its bridge, its routes and whatever
//! it cleans up stay there. (Run in the host's namespace with `--bridge none`,
//! a dockerd deletes the host's `docker0` on start, which broke every later
//! test on the shared engine.) The node is pointed at its socket. Stopping that engine stops its containers (no live restore);
//! the node reports itself unhealthy; when the engine is back the node
//! restarts its tasks itself (Docker's restart policy is off for Orion's
//! containers), and no allocation runs twice or goes missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use orion_runtime::{DockerConfig, DockerRuntime};
use serde_json::{json, Value};

use crate::support::*;

/// A `dockerd` of the test's own; stopped (its containers removed first) and
/// its directories removed on drop, also when the test fails.
struct Engine {
    dir: PathBuf,
    child: Option<Child>,
}

impl Engine {
    fn socket(&self) -> String {
        format!("unix://{}", self.dir.join("docker.sock").display())
    }

    fn start(dir: &Path) -> Engine {
        std::fs::create_dir_all(dir).unwrap();
        // An empty config file: the machine's /etc/docker/daemon.json sets a
        // data root of its own, which a flag may not repeat.
        std::fs::write(dir.join("daemon.json"), "{}").unwrap();
        let mut e = Engine {
            dir: dir.to_path_buf(),
            child: None,
        };
        e.run();
        e
    }

    fn run(&mut self) {
        let d = &self.dir;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("dockerd.log"))
            .unwrap();
        // unshare execs sh, which execs dockerd: the child's pid is dockerd's.
        let child = Command::new("unshare")
            .args([
                "--net",
                "sh",
                "-c",
                "ip link set lo up && exec dockerd \"$@\"",
                "dockerd",
            ])
            .arg("--config-file")
            .arg(d.join("daemon.json"))
            .arg("--host")
            .arg(self.socket())
            .arg("--data-root")
            .arg(d.join("root"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .args(["--iptables=false", "--ip6tables=false"])
            .args(["--ip-masq=false", "--storage-driver", "vfs"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting dockerd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.docker(&["info", "--format", "{{.ServerVersion}}"]).0 {
            assert!(
                Instant::now() < deadline,
                "the test's dockerd did not answer in 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `docker …` against this engine, bounded by 60 s: (success, stdout).
    fn docker(&self, args: &[&str]) -> (bool, String) {
        let mut child = Command::new("docker")
            .args(["-H", &self.socket()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut out = String::new();
                use std::io::Read;
                child
                    .stdout
                    .take()
                    .unwrap()
                    .read_to_string(&mut out)
                    .unwrap();
                return (status.success(), out.trim().to_string());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("docker {} hung for 60 s", args.join(" "));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM and wait (up to 60 s) for it to exit: it stops its containers.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Running containers of this engine, by allocation label.
    fn running_by_alloc(&self) -> BTreeMap<String, usize> {
        let (_, out) = self.docker(&[
            "ps",
            "--filter",
            "label=orion.alloc",
            "--format",
            "{{.Label \"orion.alloc\"}}",
        ]);
        let mut by = BTreeMap::new();
        for a in out.lines().filter(|l| !l.is_empty()) {
            *by.entry(a.to_string()).or_default() += 1;
        }
        by
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.child.is_some() {
            let (_, ids) = self.docker(&["ps", "-aq"]);
            for id in ids.lines().filter(|l| !l.is_empty()) {
                let _ = self.docker(&["rm", "-f", id]);
            }
        }
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sleeper(name: &str, replicas: u32) -> Value {
    json!({
        "name": name,
        "replicas": replicas,
        "task": {
            "image": orion_runtime::image::DEMO_IMAGE,
            "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
            "resources": {"cpu": 0.1, "memory_mb": 32}
        }
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_engine_gets_its_tasks_back_from_the_node_once_each() {
    if !engine().await {
        return;
    }
    if !is_root() {
        assert!(
            std::env::var("CI").is_err(),
            "running a second dockerd needs root, and CI requires this test"
        );
        eprintln!("SKIP: a second dockerd needs root");
        return;
    }
    let host_bridge = || {
        Command::new("ip")
            .args(["link", "show", "docker0"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let had_bridge = host_bridge();
    let dir = tempfile::tempdir().unwrap();
    let mut eng = Engine::start(&dir.path().join("engine"));
    let mut config = DockerConfig::default();
    config.host = Some(eng.socket());
    let rt = DockerRuntime::connect(config).unwrap();
    orion_runtime::image::ensure_demo_image(&rt, orion_runtime::image::DEMO_IMAGE)
        .await
        .expect("the task image in the test's engine");
    let mut spec = NodeSpec::new(&node_id("e2e-dockerd"), dir.path());
    spec.env.push(("DOCKER_HOST".into(), eng.socket()));
    let node = Node::start_ready(&spec).await;
    let addr = spec.addr();
    submit(&addr, &sleeper("survivor", 2)).await.unwrap();
    wait_for("2 running", Duration::from_secs(60), async || {
        (running(&addr, "survivor").await.len() == 2).then_some(())
    })
    .await;
    let before = eng.running_by_alloc();
    assert_eq!(before.len(), 2, "{before:?}");
    assert!(before.values().all(|n| *n == 1), "{before:?}");

    eng.stop();
    let reason = wait_for("the node unhealthy", Duration::from_secs(60), async || {
        let r = reqwest::get(format!("{addr}/health")).await.ok()?;
        (r.status() == 503).then_some(())?;
        let body: Value = r.json().await.ok()?;
        body["reason"].as_str().map(str::to_string)
    })
    .await;
    assert!(reason.contains("unavailable"), "{reason}");

    eng.run();
    // The engine kept the containers, stopped; the node starts the work again.
    wait_for("healthy again", Duration::from_secs(60), async || {
        get_json(&format!("{addr}/health"))
            .await
            .filter(|h| h["status"] == "healthy")
    })
    .await;
    let allocs = wait_for(
        "2 running again, one container each",
        Duration::from_secs(90),
        async || {
            let run = running(&addr, "survivor").await;
            let by = eng.running_by_alloc();
            let ids: Vec<String> = run
                .iter()
                .map(|a| a["id"].as_str().unwrap().to_string())
                .collect();
            (run.len() == 2 && by.len() == 2 && ids.iter().all(|i| by.get(i) == Some(&1)))
                .then_some(ids)
        },
    )
    .await;
    // And it stays so: sampled for 3 s, nothing starts twice.
    for _ in 0..12 {
        let after = eng.running_by_alloc();
        assert_eq!(
            after.len(),
            2,
            "running containers by allocation: {after:?}"
        );
        assert!(after.values().all(|n| *n == 1), "{after:?}");
        assert!(
            allocs.iter().all(|a| after.contains_key(a)),
            "{allocs:?} vs {after:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let job = get_json(&format!("{addr}/v1/jobs/survivor")).await.unwrap();
    let live: Vec<&Value> = job["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["desired"] == "run")
        .collect();
    assert_eq!(live.len(), 2, "two slots, no more: {job}");
    let nodes = get_json(&format!("{addr}/v1/nodes")).await.unwrap();
    assert_eq!(nodes[0]["status"], "ready", "{nodes}");
    drop(node);
    drop(eng);
    assert_eq!(
        host_bridge(),
        had_bridge,
        "the test's dockerd changed the host's docker0"
    );
}
