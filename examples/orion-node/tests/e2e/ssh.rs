//! `orion-node agent --runtime ssh` against a real OpenSSH server the test
//! starts on 127.0.0.1 (its own host and user keys): a script job runs on the
//! server with its output and exit code back in the API; the server going
//! away opens the breaker and the node reports unhealthy. Bad flags are
//! refused naming the flag. (The runtime's own tests, `orion-runtime/tests/ssh`,
//! cover the contract suite, host keys, the pool and the breaker closing.)

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::*;

fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .expect("ssh-keygen (openssh-server: .ci/run installs it)");
    assert!(ok.success());
}

/// sshd on a free loopback port with keys in `dir`; killed on drop.
struct Sshd {
    child: Child,
    port: u16,
}

/// Every process under `pid` (sshd's per-connection children, and what
/// their sessions run), by parent links in `/proc`.
fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let p: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let ppid = stat
                .rsplit(')')
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((p, ppid))
        })
        .collect();
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    out
}

impl Drop for Sshd {
    fn drop(&mut self) {
        for pid in descendants(self.child.id()) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        let _ = self.child.wait();
    }
}

fn sshd(dir: &Path) -> Option<Sshd> {
    if !Path::new("/usr/sbin/sshd").exists() {
        assert!(!orion_core::testing::in_ci(), "sshd is missing in CI");
        eprintln!("SKIP: no /usr/sbin/sshd (apt-get install openssh-server)");
        return None;
    }
    keygen(&dir.join("host_key"));
    keygen(&dir.join("user_key"));
    std::fs::copy(dir.join("user_key.pub"), dir.join("authorized_keys")).unwrap();
    let _ = std::fs::create_dir_all("/run/sshd");
    let port = free_port();
    let d = dir.display();
    std::fs::write(
        dir.join("sshd_config"),
        format!("ListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\nPidFile {d}/sshd.pid\nStrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"),
    )
    .unwrap();
    let host = std::fs::read_to_string(dir.join("host_key.pub")).unwrap();
    let mut parts = host.split_whitespace();
    let (kind, key) = (parts.next().unwrap(), parts.next().unwrap());
    std::fs::write(
        dir.join("known_hosts"),
        format!("[127.0.0.1]:{port} {kind} {key}\n"),
    )
    .unwrap();
    let child = {
        use std::os::unix::process::CommandExt;
        Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-f")
            .arg(dir.join("sshd_config"))
            .args(["-p", &port.to_string(), "-E"])
            .arg(dir.join("sshd.log"))
            .process_group(0)
            .spawn()
            .unwrap()
    };
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(Sshd { child, port });
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!(
        "sshd did not listen: {}",
        std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
    );
}

fn user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn a_script_job_runs_on_the_ssh_target_and_a_dead_server_makes_the_node_unhealthy() {
    if !engine().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let Some(server) = sshd(&keys) else { return };
    let mut spec = NodeSpec::new(&node_id("e2e-ssh"), dir.path());
    spec.extra.extend([
        "--runtime".to_string(),
        "ssh".into(),
        "--ssh-target".into(),
        format!("{}@127.0.0.1:{}", user(), server.port),
        "--ssh-key".into(),
        keys.join("user_key").to_string_lossy().into_owned(),
        "--ssh-known-hosts".into(),
        keys.join("known_hosts").to_string_lossy().into_owned(),
    ]);
    let node = Node::start_ready(&spec).await;
    let addr = spec.addr();
    let job = json!({
        "name": "remote", "type": "batch",
        "task": { "script": { "lang": "sh", "content": "echo from-ssh $ORION_JOB on $(hostname); echo oops >&2; exit 3" } },
        "restart": { "attempts": 0 }, "reschedule": { "attempts": 0 }
    });
    submit(&addr, &job).await.unwrap();
    let (alloc, msg) = wait_for("the script's exit", Duration::from_secs(60), async || {
        let j = get_json(&format!("{addr}/v1/jobs/remote")).await?;
        j["allocations"].as_array()?.iter().find_map(|a| {
            let m = a["message"].as_str().unwrap_or_default();
            m.contains("exited with code")
                .then(|| (a["id"].as_str().unwrap().to_string(), m.to_string()))
        })
    })
    .await;
    assert!(msg.contains("exited with code 3"), "{msg}\n{}", node.log());
    let out = cli(&addr, &["alloc", "logs", &alloc]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("from-ssh remote on"), "{text}");
    let h = get_json(&format!("{addr}/health")).await.unwrap();
    assert_eq!(h["components"]["runtime"]["name"], "ssh", "{h}");

    // The server goes away: the breaker opens, the node reports unhealthy.
    drop(server);
    let why = wait_for("the node unhealthy", Duration::from_secs(60), async || {
        // An unhealthy node answers 503, with the same body.
        let h: serde_json::Value = http()
            .get(format!("{addr}/health"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let r = &h["components"]["runtime"];
        (r["status"] != "healthy").then(|| r["error"].to_string())
    })
    .await;
    eprintln!("ssh runtime with the server gone: {why}");
    let nodes = cli(&addr, &["node", "list"]);
    let text = String::from_utf8_lossy(&nodes.stdout);
    assert!(text.contains("unhealthy"), "{text}");
    assert!(
        text.contains("ssh breaker open for"),
        "node list says why: {text}"
    );
    drop(node);
}

#[test]
fn bad_ssh_flags_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "not a key").unwrap();
    let data = dir.path().join("data");
    let d = data.to_string_lossy().into_owned();
    let k = key.to_string_lossy().into_owned();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--runtime", "ssh"], "--ssh-target"),
        (
            vec![
                "--runtime",
                "ssh",
                "--ssh-target",
                "nouser:22",
                "--ssh-key",
                &k,
            ],
            "--ssh-target",
        ),
        (
            vec!["--runtime", "ssh", "--ssh-target", "me@127.0.0.1:1"],
            "--ssh-key",
        ),
        (
            vec![
                "--runtime",
                "ssh",
                "--ssh-target",
                "me@127.0.0.1:1",
                "--ssh-key",
                "/nonexistent/key",
            ],
            "--ssh-key",
        ),
        (
            vec![
                "--runtime",
                "ssh",
                "--ssh-target",
                "me@127.0.0.1:1",
                "--ssh-key",
                &k,
            ],
            "--ssh-key",
        ),
    ];
    let good = dir.path().join("good_key");
    let g = good.to_string_lossy().into_owned();
    let mut cases = cases;
    if Path::new("/usr/bin/ssh-keygen").exists() {
        keygen(&good);
        cases.push((
            vec![
                "--runtime",
                "ssh",
                "--ssh-target",
                "me@127.0.0.1:1",
                "--ssh-key",
                &g,
                "--ssh-known-hosts",
                "/nonexistent/known_hosts",
            ],
            "--ssh-known-hosts",
        ));
    }
    for (args, flag) in cases {
        let out = Command::new(BIN)
            .args(["agent", "--insecure-dev", "--data-dir", &d])
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{args:?}: {err}");
        assert!(!err.contains("stack backtrace"), "{err}");
    }
}
