//! Shared helpers: reaching the engine (or skipping), unique owners, a cleanup guard
//! that removes every container a test started, free ports and plain HTTP.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use bollard::Docker;
use orion_core::runtime::{labels, Owner, TaskLaunch};
use orion_core::testing::DOCKER_CALL;
use orion_core::{PortBinding, Protocol, Resources, Runtime, TaskSpec};
use orion_runtime::{image, DockerConfig, DockerRuntime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Returns the engine, or, when it cannot be reached, prints `SKIP: ...` and returns
/// `None` — unless CI (`CI` set, as `true` or `1`), where an unreachable engine fails the test.
pub async fn engine() -> Option<DockerRuntime> {
    let reached = async {
        let runtime = DockerRuntime::connect(bounded())?;
        runtime.ping().await?;
        Ok::<_, orion_core::RuntimeError>(runtime)
    };
    let reached = tokio::time::timeout(DOCKER_CALL, reached)
        .await
        .unwrap_or_else(|_| {
            panic!("the docker engine hung: no ping answer within {DOCKER_CALL:?}")
        });
    match reached {
        Ok(runtime) => Some(runtime),
        Err(e) if orion_core::testing::in_ci() => {
            panic!("docker engine unreachable in CI: {e}")
        }
        Err(e) => {
            eprintln!("SKIP: docker engine unreachable: {e}");
            None
        }
    }
}

/// The runtime's configuration for tests: every engine request bounded well below
/// [`DOCKER_CALL`], so a hung engine fails the call instead of hanging the test.
fn bounded() -> DockerConfig {
    let mut config = DockerConfig::default();
    config.connect_timeout = Duration::from_secs(10);
    config.request_timeout = DOCKER_CALL;
    config
}

/// A test's engine, its own cluster id, and a guard that removes its containers.
pub struct Ctx {
    /// The runtime under test.
    pub rt: DockerRuntime,
    /// A cluster id no other test uses.
    pub cluster: String,
    _cleanup: Cleanup,
}

/// Makes a [`Ctx`] with the demo image present, or returns from the test (skip rule in
/// [`engine`]).
#[macro_export]
macro_rules! ctx_or_skip {
    () => {
        match $crate::support::Ctx::new().await {
            Some(ctx) => ctx,
            None => return,
        }
    };
}

impl Ctx {
    /// The engine, the demo image, and a fresh cluster id; `None` when skipping.
    pub async fn new() -> Option<Ctx> {
        let rt = engine().await?;
        tokio::time::timeout(
            DOCKER_CALL,
            image::ensure_demo_image(&rt, image::DEMO_IMAGE),
        )
        .await
        .expect("the docker engine hung building the demo image")
        .expect("the demo image builds");
        let cluster = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let cleanup = Cleanup {
            cluster: cluster.clone(),
        };
        Some(Ctx {
            rt,
            cluster,
            _cleanup: cleanup,
        })
    }

    /// The owner `node` of this test's cluster.
    pub fn owner(&self, node: &str) -> Owner {
        Owner {
            cluster_id: self.cluster.clone(),
            node_id: node.to_string(),
        }
    }

    /// A launch of `task` for `node` of this test's cluster, with a fresh allocation id.
    pub fn launch(&self, node: &str, task: TaskSpec) -> TaskLaunch {
        launch_for(&self.owner(node), task)
    }

    /// Creates and starts the launch; returns the container id.
    pub async fn run(&self, launch: &TaskLaunch) -> String {
        let created = self.rt.create(launch).await.expect("create");
        self.rt.start(&created.id).await.expect("start");
        created.id
    }
}

/// A launch of `task` for `owner`, with a fresh allocation id.
pub fn launch_for(owner: &Owner, task: TaskSpec) -> TaskLaunch {
    TaskLaunch {
        cluster_id: owner.cluster_id.clone(),
        node_id: owner.node_id.clone(),
        alloc_id: format!("a{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        job: "web".to_string(),
        job_version: 1,
        task,
        ports: Vec::new(),
        security: Default::default(),
        secret_env: Default::default(),
    }
}

/// A task of the demo image running `argv` (the image's httpd when empty).
pub fn task(argv: &[&str]) -> TaskSpec {
    TaskSpec {
        image: image::DEMO_IMAGE.to_string(),
        outputs: Vec::new(),
        script: None,
        security: None,
        command: argv.iter().map(|s| s.to_string()).collect(),
        args: Vec::new(),
        env: Default::default(),
        resources: Resources {
            cpu: 0.5,
            memory_mb: 64,
            disk_mb: 0,
        },
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

/// A shell loop that exits 0 on SIGTERM: stops promptly and cleanly.
pub const POLITE: &[&str] = &[
    "/bin/sh",
    "-c",
    "trap 'exit 0' TERM; while :; do sleep 0.2; done",
];

/// `http` on container port 80, published on 127.0.0.1 at a free host port.
pub fn http_port() -> PortBinding {
    PortBinding {
        name: "http".to_string(),
        container_port: 80,
        host_port: free_port(),
        protocol: Protocol::Tcp,
        host_ip: "127.0.0.1".to_string(),
    }
}

/// A TCP port free on 127.0.0.1 at the time of asking.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

/// Polls `check` until it returns `Some`, or panics after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One plain HTTP/1.0 GET of `path` from 127.0.0.1:`port`; the whole response.
pub async fn http_get_once(port: u16, path: &str) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

/// GETs `path` until the answer is a 200, within 10 s (the server may still be starting).
pub async fn http_get(port: u16, path: &str) -> String {
    eventually(
        &format!("a 200 for {path}"),
        Duration::from_secs(10),
        || async {
            match http_get_once(port, path).await {
                Ok(r) if r.lines().next().is_some_and(|l| l.contains(" 200 ")) => Some(r),
                _ => None,
            }
        },
    )
    .await
}

/// Removes, on drop, every container whose cluster label starts with the test's cluster
/// id (the runtime suite also uses `<id>-other`) — also when the test panicked.
struct Cleanup {
    cluster: String,
}

impl Cleanup {
    /// Removes the containers now, on a thread of its own (drop may run inside a runtime).
    fn run(&self) {
        let prefix = self.cluster.clone();
        let removal = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            rt.block_on(async {
                match tokio::time::timeout(DOCKER_CALL, remove_cluster(&prefix)).await {
                    Ok(r) => r.map_err(|e| e.to_string()),
                    Err(_) => Err(format!("the engine did not answer within {DOCKER_CALL:?}")),
                }
            })
        });
        if let Ok(Err(e)) = removal.join() {
            eprintln!("cleanup of {}: {e}", self.cluster);
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.run();
    }
}

/// Force-removes the containers of clusters whose id starts with `prefix`.
async fn remove_cluster(prefix: &str) -> Result<(), bollard::errors::Error> {
    let docker = Docker::connect_with_local_defaults()?
        .with_timeout(DOCKER_CALL)
        .negotiate_version()
        .await?;
    let filters: HashMap<&str, Vec<&str>> = [("label", vec![labels::CLUSTER])].into();
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    for c in docker.list_containers(Some(options)).await? {
        let ours = c
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::CLUSTER))
            .is_some_and(|cluster| cluster.starts_with(prefix));
        if let (true, Some(id)) = (ours, c.id) {
            let force = RemoveContainerOptionsBuilder::new().force(true).build();
            docker.remove_container(&id, Some(force)).await?;
        }
    }
    Ok(())
}
