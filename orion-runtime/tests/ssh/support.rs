//! Shared helpers: a real OpenSSH server on a free 127.0.0.1 port (or a skip),
//! keys made by `ssh-keygen`, runtimes configured for it, launches, waits.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use orion_core::runtime::{LogStream, Owner, TaskLaunch};
use orion_core::{ContainerInfo, ContainerState, Resources, Runtime, TaskSpec};
use orion_runtime::ssh::{SshConfig, SshRuntime, SshTarget};

/// The OpenSSH server the tests start.
pub const SSHD: &str = "/usr/sbin/sshd";

/// Whether the tests can run: `sshd` and `ssh-keygen` exist. When they do not,
/// prints `SKIP: ...` and answers false, unless CI (`CI` set, as `true` or `1`), where it fails.
pub fn have_openssh() -> bool {
    let missing = [SSHD, "/usr/bin/ssh-keygen"]
        .into_iter()
        .find(|p| !Path::new(p).exists());
    match missing {
        None => true,
        Some(p) if orion_core::testing::in_ci() => {
            panic!("{p} is missing in CI: install openssh-server")
        }
        Some(p) => {
            eprintln!("SKIP: {p} is missing (apt-get install openssh-server)");
            false
        }
    }
}

/// Starts an [`Sshd`], or returns from the test (skip rule in [`have_openssh`]).
#[macro_export]
macro_rules! sshd_or_skip {
    () => {
        match $crate::support::Sshd::start() {
            Some(sshd) => sshd,
            None => return,
        }
    };
}

/// Runs `ssh-keygen` to make an unencrypted ed25519 key at `path` (and `path.pub`).
pub fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "orion-test", "-f"])
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success(), "ssh-keygen failed for {}", path.display());
}

/// The `SHA256:...` fingerprint of a public key file.
pub fn fingerprint(pub_file: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(pub_file)
        .output()
        .expect("ssh-keygen -l runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no fingerprint in {text:?}"))
        .to_string()
}

/// A running `sshd -D` of its own, with its keys and files in a tempdir;
/// killed (with every process it started) when dropped.
pub struct Sshd {
    /// Keys, config, log, known_hosts, and the runtime's data dir.
    pub dir: tempfile::TempDir,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
}

impl Sshd {
    /// Generates keys and a config and starts the server; `None` when skipping.
    pub fn start() -> Option<Sshd> {
        if !have_openssh() {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("user_key"));
        std::fs::copy(d.join("user_key.pub"), d.join("authorized_keys")).expect("authorized_keys");
        // sshd refuses to start without its privilege separation directory
        // (only root can make it; a failure shows in sshd's log).
        let _ = std::fs::create_dir_all("/run/sshd");
        let port = free_port();
        let config = format!(
            "ListenAddress 127.0.0.1\n\
             HostKey {d}/host_key\n\
             AuthorizedKeysFile {d}/authorized_keys\n\
             PidFile {d}/sshd.pid\n\
             StrictModes no\n\
             UsePAM no\n\
             PermitRootLogin prohibit-password\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             LogLevel VERBOSE\n\
             MaxStartups 100\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).expect("sshd_config");
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).expect("host key");
        write_known_hosts(&d.join("known_hosts"), port, &host_pub);
        let mut sshd = Sshd {
            dir,
            port,
            child: None,
        };
        sshd.launch();
        Some(sshd)
    }

    /// Starts the server process (again) on the same port, and waits until it
    /// accepts TCP connections.
    pub fn launch(&mut self) {
        let d = self.dir.path();
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(SSHD)
                .arg("-D")
                .arg("-f")
                .arg(d.join("sshd_config"))
                .arg("-p")
                .arg(self.port.to_string())
                .arg("-E")
                .arg(d.join("sshd.log"))
                .process_group(0)
                .stdin(Stdio::null())
                .spawn()
                .expect("sshd starts")
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not listen on {}: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server and every process under it (sessions, and what they run).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let mut pids = descendants(child.id());
            pids.push(child.id());
            kill9(&pids);
            let _ = child.wait();
        }
    }

    /// Kills only the server's own processes (listener and per-connection
    /// sshd), leaving what the sessions run orphaned; returns those others,
    /// for the caller to kill once it has looked.
    pub fn kill_sshd_only(&mut self) -> Vec<u32> {
        let Some(mut child) = self.child.take() else {
            return Vec::new();
        };
        let all = descendants(child.id());
        let (sshd, others): (Vec<u32>, Vec<u32>) =
            all.into_iter().partition(|pid| comm(*pid) == "sshd");
        let mut sshd = sshd;
        sshd.push(child.id());
        kill9(&sshd);
        let _ = child.wait();
        others
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// How many connections the server accepted (`Accepted publickey` lines).
    pub fn accepted(&self) -> usize {
        self.log().matches("Accepted publickey").count()
    }

    /// `root@127.0.0.1:<port>` (whoever runs the tests).
    pub fn target(&self) -> SshTarget {
        SshTarget::parse(&format!("{}@127.0.0.1:{}", user(), self.port)).expect("target")
    }

    /// A config for this server: its user key, its known_hosts, a data dir in
    /// the tempdir.
    pub fn config(&self) -> SshConfig {
        let d = self.dir.path();
        let mut config = SshConfig::new(self.target(), d.join("user_key"), d.join("data"));
        config.known_hosts = Some(d.join("known_hosts"));
        config.connect_timeout = Duration::from_secs(5);
        config
    }

    /// A runtime with [`config`](Self::config).
    pub fn runtime(&self) -> SshRuntime {
        SshRuntime::new(self.config()).expect("the runtime builds")
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Writes `[127.0.0.1]:PORT <type> <key>` for the host key.
pub fn write_known_hosts(path: &Path, port: u16, host_pub: &str) {
    let mut parts = host_pub.split_whitespace();
    let (kind, key) = (parts.next().expect("type"), parts.next().expect("key"));
    std::fs::write(path, format!("[127.0.0.1]:{port} {kind} {key}\n")).expect("known_hosts");
}

/// The user running the tests.
pub fn user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The processes under `pid`, children first found first.
fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| Some((p, ppid(p)?)))
        .collect();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// A process's parent, from `/proc/<pid>/stat`.
fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// A process's command name.
fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// SIGKILLs the processes.
pub fn kill9(pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg("-9")
        .args(pids.iter().map(|p| p.to_string()))
        .stderr(Stdio::null())
        .status();
}

/// A TCP port free on 127.0.0.1 at the time of asking.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

/// An owner of a cluster of its own.
pub fn owner() -> Owner {
    Owner {
        cluster_id: format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        node_id: "n1".to_string(),
    }
}

/// A launch of `task` for `owner`, with a fresh allocation id.
pub fn launch_for(owner: &Owner, task: TaskSpec) -> TaskLaunch {
    TaskLaunch {
        cluster_id: owner.cluster_id.clone(),
        node_id: owner.node_id.clone(),
        alloc_id: format!("a{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        job: "ssh-job".to_string(),
        job_version: 1,
        task,
        ports: Vec::new(),
        security: Default::default(),
        secret_env: Default::default(),
    }
}

/// A task without an image running `argv`.
pub fn task(argv: &[&str]) -> TaskSpec {
    TaskSpec {
        image: String::new(),
        outputs: Vec::new(),
        script: None,
        security: None,
        command: argv.iter().map(|s| s.to_string()).collect(),
        args: Vec::new(),
        env: Default::default(),
        resources: Resources::default(),
        ports: Vec::new(),
        volumes: Vec::new(),
        secrets: Vec::new(),
        env_from_secret: Default::default(),
        health_checks: Vec::new(),
        service: None,
        timeout: None,
        metrics: None,
    }
}

/// A task running an `sh` script.
pub fn script_task(content: &str) -> TaskSpec {
    let mut t = task(&[]);
    t.script = Some(orion_core::spec::ScriptSpec {
        lang: orion_core::spec::Lang::Sh,
        content: content.to_string(),
        args: Vec::new(),
    });
    t
}

/// Waits (up to `within`) until the task has exited; its last inspection.
pub async fn exited(rt: &SshRuntime, id: &str, within: Duration) -> ContainerInfo {
    let deadline = Instant::now() + within;
    loop {
        let info = rt.inspect(id).await.expect("inspect");
        if matches!(info.state, ContainerState::Exited { .. }) {
            return info;
        }
        assert!(Instant::now() < deadline, "{id} did not exit: {info:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Create, start, wait for the exit; returns the id and the last inspection.
pub async fn run_to_end(rt: &SshRuntime, launch: &TaskLaunch) -> (String, ContainerInfo) {
    let id = rt.create(launch).await.expect("create").id;
    rt.start(&id).await.expect("start");
    let info = exited(rt, &id, Duration::from_secs(30)).await;
    (id, info)
}

/// The task's stdout and stderr as text (`follow` as asked).
pub async fn logs(rt: &SshRuntime, id: &str, follow: bool) -> (String, String) {
    let mut stream = rt.logs(id, follow).await.expect("logs");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("logs end")
    {
        let chunk = chunk.expect("log chunk");
        match chunk.stream {
            LogStream::Stdout => out.extend_from_slice(&chunk.data),
            LogStream::Stderr => err.extend_from_slice(&chunk.data),
        }
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

/// A path under the server's tempdir.
pub fn path(sshd: &Sshd, name: &str) -> PathBuf {
    sshd.dir.path().join(name)
}

/// Whether a process with `marker` in its command line runs (the server is
/// this host).
pub fn pgrep(marker: &str) -> bool {
    std::process::Command::new("pgrep")
        .args(["-f", marker])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
