//! Helpers for driving real `orion-node` processes against the real Docker engine.
//!
//! Every node a test starts is killed when its handle drops, and a [`Containers`]
//! guard removes every container labelled with the test's node ids, also when the
//! test fails.

use orion_core::testing::{OutputWithin, DOCKER_CALL};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use orion_runtime::{image, DockerRuntime};
use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_orion-node");

/// Whether the engine answers; prints a SKIP line when it does not, and panics
/// when CI (`CI` set, as `true` or `1`) (CI must run the Docker tests).
pub async fn engine() -> bool {
    let docker = DockerRuntime::connect_local().expect("docker client");
    let ping = tokio::time::timeout(DOCKER_CALL, orion_core::Runtime::ping(&docker)).await;
    match ping
        .unwrap_or_else(|_| panic!("the docker engine hung: no ping answer within {DOCKER_CALL:?}"))
    {
        Ok(()) => {
            tokio::time::timeout(
                DOCKER_CALL,
                image::ensure_demo_image(&docker, image::DEMO_IMAGE),
            )
            .await
            .expect("the docker engine hung building the demo image")
            .expect("building the demo image");
            true
        }
        Err(e) if orion_core::testing::in_ci() => {
            panic!("docker engine unreachable in CI: {e}")
        }
        Err(e) => {
            eprintln!("SKIP: docker engine unreachable: {e}");
            false
        }
    }
}

/// A loopback port free for both TCP and UDP right now.
pub fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A dynamic host port range of 32 ports that no other node of this test run
/// uses, below Linux's ephemeral range (32768+), so that no API, Raft or gossip
/// port (picked by binding port 0) and no client socket can hold one of them.
/// Ranges 20000–31999 are split into 3 blocks by process id, 125 ranges each.
pub fn port_range() -> (u16, u16) {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let block = 20000 + (std::process::id() % 3) as u16 * 4000;
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    assert!(
        n < 125,
        "more than 125 nodes in one test run: widen port_range()"
    );
    let lo = block + n * 32;
    (lo, lo + 31)
}

/// A unique node id for this test run.
pub fn node_id(test: &str) -> String {
    format!("{test}-{}", std::process::id())
}

/// How to start one node.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub id: String,
    pub data_dir: PathBuf,
    pub http: SocketAddr,
    pub raft: SocketAddr,
    pub gossip: SocketAddr,
    pub port_range: (u16, u16),
    pub extra: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Start with API token checks (the default of a real node). False by
    /// default here: tests of other features drive the API with plain HTTP
    /// clients and the CLI, without tokens, so they run `--insecure-dev`.
    pub secure: bool,
}

impl NodeSpec {
    pub fn new(id: &str, dir: &Path) -> Self {
        let p = |port| SocketAddr::from(([127, 0, 0, 1], port));
        NodeSpec {
            id: id.to_string(),
            data_dir: dir.join(id),
            http: p(free_port()),
            raft: p(free_port()),
            gossip: p(free_port()),
            port_range: port_range(),
            extra: Vec::new(),
            env: Vec::new(),
            secure: false,
        }
    }

    pub fn addr(&self) -> String {
        if self.secure {
            format!("https://{}", self.http)
        } else {
            format!("http://{}", self.http)
        }
    }

    /// The CA a secure node trusts (its `tls/ca.pem`).
    pub fn ca_file(&self) -> PathBuf {
        self.data_dir.join("tls/ca.pem")
    }
}

/// A running `orion-node agent`; killed on drop.
pub struct Node {
    pub spec: NodeSpec,
    child: Option<Child>,
}

impl Node {
    pub fn start(spec: &NodeSpec) -> Node {
        orion::tls::ensure_default_provider();
        let (lo, hi) = spec.port_range;
        let log = std::fs::File::create(spec.data_dir.with_extension("log")).ok();
        // What the node prints (at init: the CA, tokens, an unlock key), per start.
        let out = std::fs::File::create(spec.data_dir.with_extension("out")).ok();
        let mut cmd = Command::new(BIN);
        cmd.args(["agent", "--node-id", &spec.id])
            .arg("--data-dir")
            .arg(&spec.data_dir)
            .args(["--http", &spec.http.to_string()])
            .args(["--raft", &spec.raft.to_string()])
            .args(["--gossip", &spec.gossip.to_string()])
            .args(["--port-range", &format!("{lo}-{hi}")])
            .args(["--cpu", "2", "--memory-mb", "2048"])
            .args(&spec.extra)
            .stdout(out.map_or_else(Stdio::null, Stdio::from))
            .env_remove("ORION_TOKEN")
            .env("ORION_LOG", "info,openraft=warn");
        if !spec.secure {
            cmd.arg("--insecure-dev");
        }
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        match log {
            Some(f) => cmd.stderr(f),
            None => cmd.stderr(Stdio::null()),
        };
        let child = cmd.spawn().expect("spawning orion-node");
        Node {
            spec: spec.clone(),
            child: Some(child),
        }
    }

    /// Starts the node and waits until its API answers.
    pub async fn start_ready(spec: &NodeSpec) -> Node {
        let node = Node::start(spec);
        let addr = spec.addr();
        wait_for(
            &format!("{} to answer", spec.id),
            Duration::from_secs(60),
            async || get_json(&format!("{addr}/health")).await,
        )
        .await;
        node
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to the node's process.
    #[allow(dead_code)] // not every test binary module uses it
    pub fn signal(&self, signal: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([&format!("-{signal}"), &c.id().to_string()])
                .status();
        }
    }

    /// SIGKILL, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// What this start of the node printed to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.spec.data_dir.with_extension("out")).unwrap_or_default()
    }

    /// The node's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.spec.data_dir.with_extension("log")).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            // A failing test shows what its nodes were doing.
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("---- last log lines of {} ----", self.spec.id);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Removes every container labelled with one of these node ids when dropped.
pub struct Containers(pub Vec<String>);

impl Containers {
    /// Container ids of one node, running or not.
    pub fn of(node: &str) -> Vec<String> {
        docker_ps(&["-a", "--filter", &format!("label=orion.node={node}")])
    }

    /// Running container ids of one node.
    pub fn running_of_node(node: &str) -> Vec<String> {
        docker_ps(&["--filter", &format!("label=orion.node={node}")])
    }

    /// Running container ids of one allocation.
    pub fn running_of_alloc(alloc: &str) -> Vec<String> {
        docker_ps(&["--filter", &format!("label=orion.alloc={alloc}")])
    }
}

fn docker_ps(args: &[&str]) -> Vec<String> {
    try_docker_ps(args).expect("docker ps")
}

/// `docker ps -q` with `args`, bounded by [`DOCKER_CALL`].
fn try_docker_ps(args: &[&str]) -> std::io::Result<Vec<String>> {
    let out = Command::new("docker")
        .arg("ps")
        .args(["-q", "--no-trunc"])
        .args(args)
        .output_within(DOCKER_CALL)?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

impl Drop for Containers {
    fn drop(&mut self) {
        // Never panics: it may run while a failed test unwinds.
        for node in &self.0 {
            let filter = format!("label=orion.node={node}");
            let removed = try_docker_ps(&["-a", "--filter", &filter]).and_then(|ids| {
                if ids.is_empty() {
                    return Ok(());
                }
                Command::new("docker")
                    .args(["rm", "-f"])
                    .args(&ids)
                    .output_within(DOCKER_CALL)
                    .map(drop)
            });
            if let Err(e) = removed {
                eprintln!("cleanup of node {node}'s containers: {e}");
            }
        }
    }
}

/// A test's own node on its own data dir: killed, and its containers removed,
/// when dropped (fields drop in this order).
pub struct Solo {
    /// How it was started.
    pub spec: NodeSpec,
    /// Its API, `http://…`.
    pub addr: String,
    _node: Node,
    _cleanup: Containers,
    /// Its data dir and whatever the test puts beside it.
    pub dir: tempfile::TempDir,
}

impl Solo {
    /// The node's log so far.
    pub fn log(&self) -> String {
        self._node.log()
    }

    /// Starts node `test-<pid>` and waits until its API answers.
    pub async fn start(test: &str) -> Solo {
        Solo::start_with(test, |_, _| {}).await
    }

    /// As [`Solo::start`], letting `f` adjust the spec (flags, environment)
    /// with the temporary dir at hand.
    pub async fn start_with(test: &str, f: impl FnOnce(&mut NodeSpec, &Path)) -> Solo {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = NodeSpec::new(&node_id(test), dir.path());
        f(&mut spec, dir.path());
        let cleanup = Containers(vec![spec.id.clone()]);
        let node = Node::start_ready(&spec).await;
        Solo {
            addr: spec.addr(),
            spec,
            _node: node,
            _cleanup: cleanup,
            dir,
        }
    }
}

/// Runs the CLI against a node.
pub fn cli(addr: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["--addr", addr])
        .args(args)
        .output()
        .expect("running the CLI")
}

/// Runs the CLI with its stdout already closed by the reader, as
/// `orion-node … | head -0` does: every write it makes fails.
pub fn cli_closed_stdout(addr: &str, args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(["--addr", addr])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_BACKTRACE", "1")
        .spawn()
        .expect("running the CLI");
    drop(child.stdout.take());
    child.wait_with_output().expect("waiting for the CLI")
}

/// Polls `f` until it returns `Some`, or panics after `limit` with `what`.
pub async fn wait_for<T>(what: &str, limit: Duration, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    orion::tls::ensure_default_provider();
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// GET a JSON document; `None` on any failure.
/// A client for the tests' own nodes: any certificate is accepted (a secure
/// node's is from a CA the test just saw made; the tests that check trust
/// use the CLI or their own client).
pub fn http() -> reqwest::Client {
    orion::tls::ensure_default_provider();
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = API_TOKEN.read().unwrap().as_ref() {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {t}").parse().unwrap(),
        );
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .use_preconfigured_tls(orion::tls::unverified_client_config())
        .build()
        .unwrap()
}

/// The management token a secure node's first start writes in its data dir
/// (waited for: the node writes it once its store commits it).
pub async fn management_token(data_dir: &Path) -> String {
    let file = data_dir.join("management.token");
    wait_for(
        "the management token",
        Duration::from_secs(30),
        async || {
            let t = std::fs::read_to_string(&file).ok()?;
            (!t.trim().is_empty()).then(|| t.trim().to_string())
        },
    )
    .await
}

/// The management token [`http`] sends: the last secure [`LocalCluster`]'s
/// (a process drives one secure cluster at a time).
pub static API_TOKEN: std::sync::RwLock<Option<String>> = std::sync::RwLock::new(None);

pub async fn get_json(url: &str) -> Option<Value> {
    let r = http().get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// GET a page's body; `None` on any failure.
pub async fn get_text(url: &str) -> Option<String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    let r = client.get(url).send().await.ok()?;
    r.status().is_success().then_some(())?;
    r.text().await.ok()
}

/// A node's applied log index (the `x-orion-index` header of a read).
pub async fn applied_index(addr: &str) -> Option<u64> {
    let r = http().get(format!("{addr}/v1/jobs")).send().await.ok()?;
    r.headers()
        .get("x-orion-index")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

impl LocalCluster {
    /// Restarts node `i` on its data dir and waits for steady state: one leader
    /// for all, every node ready, and the restarted node caught up with the leader.
    pub async fn restart(&mut self, i: usize) {
        self.nodes[i] = Node::start(&self.nodes[i].spec.clone());
        let me = self.nodes[i].spec.addr();
        let cluster = &*self;
        wait_for(
            "steady state after a restart",
            Duration::from_secs(60),
            async || {
                let l = cluster.leader().await?;
                let leader = cluster.nodes[l].spec.addr();
                let nodes = get_json(&format!("{leader}/v1/nodes")).await?;
                nodes
                    .as_array()?
                    .iter()
                    .all(|n| n["status"] == "ready")
                    .then_some(())?;
                let target = applied_index(&leader).await?;
                (applied_index(&me).await? >= target).then_some(())
            },
        )
        .await;
    }
}

/// A node's status (`ready`, `down`, …) as the node at `addr` reports it.
pub async fn node_status(addr: &str, id: &str) -> Option<String> {
    let nodes = get_json(&format!("{addr}/v1/nodes")).await?;
    let n = nodes.as_array()?.iter().find(|n| n["id"] == id)?;
    n["status"].as_str().map(str::to_string)
}

/// A job's running allocations from `GET /v1/allocations?job=…`.
pub async fn running(addr: &str, job: &str) -> Vec<Value> {
    let allocs = get_json(&format!("{addr}/v1/allocations?job={job}"))
        .await
        .unwrap_or(Value::Null);
    allocs
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|a| a["state"] == "running" && a["desired"] == "run")
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// A job spec file for the demo web image with `replicas`.
pub fn web_spec(dir: &Path, name: &str, replicas: u32) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    let spec = format!(
        "name: {name}\ntype: service\nreplicas: {replicas}\ntask:\n  image: {}\n  command: [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n  ports: [{{ name: http, container_port: 80 }}]\n  resources: {{ cpu: 0.1, memory_mb: 32 }}\n  env: {{ GREETING: hi }}\n",
        image::DEMO_IMAGE
    );
    std::fs::write(&path, spec).unwrap();
    path
}

/// A Unix-socket proxy in front of the real engine's socket, which a test can cut
/// and restore, as if the engine stopped and came back.
pub struct EngineProxy {
    path: PathBuf,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl EngineProxy {
    /// Starts forwarding `path` to `/var/run/docker.sock`.
    pub fn start(path: &Path) -> EngineProxy {
        let mut p = EngineProxy {
            path: path.to_path_buf(),
            task: None,
        };
        p.resume();
        p
    }

    /// `unix://…` for `DOCKER_HOST`.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Serves again after [`cut`](Self::cut).
    pub fn resume(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let listener =
            tokio::net::UnixListener::bind(&self.path).expect("binding the proxy socket");
        self.task = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                conns.spawn(async move {
                    if let Ok(mut engine) =
                        tokio::net::UnixStream::connect("/var/run/docker.sock").await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                    }
                });
            }
        }));
    }

    /// Drops every connection and the socket: the engine is unreachable.
    pub fn cut(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for EngineProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Several nodes on loopback: the first bootstraps, the rest join it.
pub struct LocalCluster {
    pub nodes: Vec<Node>,
    pub _cleanup: Containers,
}

impl LocalCluster {
    /// Starts `managers` managers and `workers` workers; waits until all registered.
    pub async fn start(dir: &Path, test: &str, managers: usize, workers: usize) -> LocalCluster {
        Self::start_as(dir, test, managers, workers, false).await
    }

    /// The same, secure (TLS everywhere, API tokens): the others join with
    /// the first node's join tokens, and [`http`] sends its management token.
    #[allow(dead_code)] // the failover bench's secure half
    pub async fn start_secure(
        dir: &Path,
        test: &str,
        managers: usize,
        workers: usize,
    ) -> LocalCluster {
        Self::start_as(dir, test, managers, workers, true).await
    }

    async fn start_as(
        dir: &Path,
        test: &str,
        managers: usize,
        workers: usize,
        secure: bool,
    ) -> LocalCluster {
        let ids: Vec<String> = (0..managers)
            .map(|i| node_id(&format!("{test}-m{i}")))
            .chain((0..workers).map(|i| node_id(&format!("{test}-w{i}"))))
            .collect();
        let cleanup = Containers(ids.clone());
        let mut nodes: Vec<Node> = Vec::new();
        let mut tokens: Option<(String, String)> = None;
        for (i, id) in ids.iter().enumerate() {
            let mut spec = NodeSpec::new(id, dir);
            spec.secure = secure;
            if let Some(first) = nodes.first() {
                spec.extra.extend(["--join".to_string(), first.spec.addr()]);
            }
            if let Some((manager, worker)) = &tokens {
                let t = if i >= managers { worker } else { manager };
                spec.extra.extend(["--join-token".to_string(), t.clone()]);
            }
            if i >= managers {
                spec.extra
                    .extend(["--role".to_string(), "worker".to_string()]);
            }
            spec.extra
                .extend(["--tag".to_string(), format!("name={id}")]);
            nodes.push(Node::start_ready(&spec).await);
            if secure && tokens.is_none() {
                let admin = management_token(&spec.data_dir).await;
                *API_TOKEN.write().unwrap() = Some(admin);
                let addr = spec.addr();
                let token = async |role: &str| {
                    wait_for(
                        &format!("the {role} join token"),
                        Duration::from_secs(30),
                        async || {
                            let v =
                                get_json(&format!("{addr}/v1/cluster/join-tokens/{role}")).await?;
                            Some(v["token"].as_str()?.to_string())
                        },
                    )
                    .await
                };
                tokens = Some((token("manager").await, token("worker").await));
            }
        }
        let c = LocalCluster {
            nodes,
            _cleanup: cleanup,
        };
        let n = c.nodes.len();
        let first = c.nodes[0].spec.addr();
        wait_for(
            "every node to register",
            Duration::from_secs(60),
            async || {
                let nodes = get_json(&format!("{first}/v1/nodes")).await?;
                let ready = nodes
                    .as_array()?
                    .iter()
                    .filter(|n| n["status"] == "ready")
                    .count();
                (ready == n).then_some(())
            },
        )
        .await;
        c
    }

    /// The leader's index in `nodes`, as the live nodes agree on it.
    pub async fn leader(&self) -> Option<usize> {
        let mut seen = None;
        for n in self.nodes.iter().filter(|n| n.is_running()) {
            let l = get_json(&format!("{}/v1/status/leader", n.spec.addr())).await?;
            let id = l["leader"].as_str()?.to_string();
            match &seen {
                None => seen = Some(id),
                Some(s) if *s != id => return None,
                _ => {}
            }
        }
        let id = seen?;
        self.nodes
            .iter()
            .position(|n| n.spec.id == id && n.is_running())
    }

    /// Any running node's API address other than `not`.
    pub fn other_than(&self, not: usize) -> String {
        self.nodes
            .iter()
            .enumerate()
            .find(|(i, n)| *i != not && n.is_running())
            .map(|(_, n)| n.spec.addr())
            .expect("a running node")
    }
}

impl Node {
    /// Whether this handle still owns a live process.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// Submits a job spec (JSON) through the API; `Ok(version)` or the error text.
pub async fn submit(addr: &str, spec: &Value) -> Result<u64, String> {
    let r = http()
        .post(format!("{addr}/v1/jobs"))
        .timeout(Duration::from_secs(15))
        .json(spec)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status();
    let body: Value = r.json().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(body["version"].as_u64().unwrap_or(0))
    } else {
        Err(format!("{status}: {body}"))
    }
}

/// Waits (up to `limit`) for a running allocation of `job`; its id.
pub async fn running_alloc(addr: &str, job: &str, limit: Duration) -> String {
    wait_for(&format!("{job} to run"), limit, async || {
        let j = get_json(&format!("{addr}/v1/jobs/{job}")).await?;
        let a = j["allocations"]
            .as_array()?
            .iter()
            .find(|a| a["state"] == "running")?;
        Some(a["id"].as_str()?.to_string())
    })
    .await
}

/// A JSON job spec for the demo web image.
pub fn web_json(name: &str, replicas: u32) -> Value {
    serde_json::json!({
        "name": name,
        "replicas": replicas,
        "strategy": "spread",
        "task": {
            "image": image::DEMO_IMAGE,
            "command": ["httpd", "-f", "-p", "80", "-h", "/www"],
            "ports": [{"name": "http", "container_port": 80}],
            "resources": {"cpu": 0.1, "memory_mb": 32}
        }
    })
}
