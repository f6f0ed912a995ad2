//! `orion-node dev`, the README's main command, end to end.

use std::process::Command;
use std::time::Duration;

use orion_core::testing::OutputWithin;

use crate::support::*;

/// The most a dev run (or its shutdown after Ctrl-C) may take before the test
/// kills it and fails: far above a healthy run beside other tests.
const DEV_LIMIT: Duration = Duration::from_secs(300);

/// The dev cluster starts three nodes (large, small, gpu), runs the example jobs,
/// prints where each replica landed with an address to open (the gpu job on the
/// gpu node), and with `--once` cleans up after itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_runs_the_example_jobs_and_cleans_up() {
    if !engine().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Three API ports from a block below the ephemeral range that no node of this
    // run publishes tasks on (a free port picked by binding 0 says nothing about
    // the two after it, which other tests' client sockets may hold).
    let port = port_range().0;
    let out = Command::new(BIN)
        .args(["dev", "--once", "--http-port", &port.to_string()])
        .arg("--data-dir")
        .arg(dir.path())
        .env("ORION_LOG", "warn")
        .output_within(DEV_LIMIT)
        .expect("running orion-node dev --once");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for node in ["large", "small", "gpu"] {
        assert!(stdout.contains(&format!("node {node}")), "{stdout}");
    }
    let leads = stdout
        .lines()
        .find(|l| l.contains("(leader)"))
        .unwrap_or_default();
    assert!(
        leads.contains("node large") && leads.contains("manager"),
        "the large node is the manager and leads: {stdout}"
    );
    assert!(
        stdout.contains("32768 MB") && stdout.contains("gpu=true"),
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("open http://127.0.0.1:").count(),
        4,
        "{stdout}"
    );
    assert!(stdout.contains("trainer[0] on gpu"), "{stdout}");
    for node in ["large", "small", "gpu"] {
        assert!(
            Containers::of(node).is_empty(),
            "dev left containers on {node}"
        );
    }

    interrupted_through_a_closed_pipe_it_still_cleans_up(dir.path());
}

/// `dev | tee log`, then Ctrl-C: the terminal's SIGINT reaches both, so dev's
/// stdout is closed when it starts cleaning up. It must still stop and remove
/// the job's containers. On the way, `--port-base` puts every port where it
/// says, and the page of a replica (this binary, in the image it built) answers.
fn interrupted_through_a_closed_pipe_it_still_cleans_up(dir: &std::path::Path) {
    use std::io::BufRead;

    let base = port_range().0;
    let mut child = Command::new(BIN)
        .args(["dev", "--nodes", "2", "--port-base", &base.to_string()])
        .arg("--data-dir")
        .arg(dir.join("again"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running orion-node dev");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.contains("Press Ctrl-C");
        seen.push(line);
        if done {
            break;
        }
    }
    let text = seen.join("\n");
    assert!(
        text.contains(&format!("api http://127.0.0.1:{base}")),
        "{text}"
    );
    let first_task_port = base + 100;
    let url = seen
        .iter()
        .find_map(|l| l.split("open ").nth(1))
        .unwrap_or_else(|| panic!("no replica address in {text}"))
        .to_string();
    let port: u16 = url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap();
    assert!(
        (first_task_port..first_task_port + 200).contains(&port),
        "task ports from --port-base + 100: {text}"
    );
    let page = http_get(&url);
    assert!(page.contains("Hello from Orion"), "{page}");
    assert!(
        !Containers::of("large").is_empty(),
        "the job runs before the interrupt"
    );

    drop(lines); // the pipe's reader is gone, as `tee` is after Ctrl-C
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let deadline = std::time::Instant::now() + DEV_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("dev did not stop within {DEV_LIMIT:?} of Ctrl-C");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let err = stderr.join().unwrap();
    assert!(status.success(), "dev after Ctrl-C: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for node in ["large", "small"] {
        assert!(
            Containers::of(node).is_empty(),
            "dev left containers on {node} after Ctrl-C into a closed pipe"
        );
    }
}

/// A plain HTTP/1.0 GET of `http://host:port/path` over a std socket (the test
/// is synchronous), retried for a few seconds while the server starts.
fn http_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    for _ in 0..50 {
        if let Ok(mut s) = std::net::TcpStream::connect(host) {
            let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let req = format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
            let mut body = String::new();
            if s.write_all(req.as_bytes()).is_ok()
                && s.read_to_string(&mut body).is_ok()
                && !body.is_empty()
            {
                return body;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    format!("no answer from {url}")
}
