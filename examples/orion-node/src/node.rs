//! `orion-node agent`: the flags and config file mapped onto [`orion::Node`],
//! run until SIGINT or SIGTERM.

use anyhow::Result;
use tracing::info;

use crate::cli::AgentArgs;

/// Runs a node until SIGINT or SIGTERM; its tasks keep running and are adopted
/// when it starts again.
pub async fn run_agent(args: AgentArgs) -> Result<()> {
    let config = crate::config::node_config(&args)?;
    let runtime = match args.runtime {
        crate::cli::RuntimeKind::Ssh => ssh_runtime(&args, &config.data_dir)?,
        kind => runtime(kind, &config.data_dir)?,
    };
    // The first start of a secure cluster's first node: `cluster init`.
    let tls_dir = config.data_dir.join(orion::TLS_DIR);
    let init =
        !config.insecure_dev && config.join.is_empty() && !tls_dir.join("node.json").exists();
    let data_dir = config.data_dir.clone();
    let was_locked = orion::is_autolocked(&data_dir);
    // A locked node waits in start() for its unlock key: a signal meanwhile
    // ends it (nothing is open but the locked API).
    let start = orion::Node::from_config(config)
        .runtime_shared(runtime)
        .start();
    let cluster = tokio::select! {
        c = start => c?,
        _ = shutdown_signal() => {
            info!("shutting down a node still locked");
            return Ok(());
        }
    };
    if init {
        print_init(&cluster, &data_dir);
    }
    if !was_locked {
        print_unlock_key(&cluster);
    }
    shutdown_signal().await;
    info!("shutting down; tasks keep running and are adopted on restart");
    cluster.shutdown().await;
    Ok(())
}

/// The runtime `--runtime` names: the local engine, or processes kept
/// under the data dir.
pub fn runtime(
    kind: crate::cli::RuntimeKind,
    data_dir: &std::path::Path,
) -> Result<std::sync::Arc<dyn orion::Runtime>> {
    Ok(match kind {
        crate::cli::RuntimeKind::Docker => {
            std::sync::Arc::new(orion::DockerRuntime::connect_local()?)
        }
        crate::cli::RuntimeKind::Process => {
            orion::ProcessRuntime::new(orion::ProcessConfig::new(data_dir))?
        }
        crate::cli::RuntimeKind::Ssh => {
            anyhow::bail!("--runtime ssh: give --ssh-target user@host[:port] and --ssh-key FILE")
        }
    })
}

/// The SSH runtime of `--runtime ssh`, its flags checked before anything
/// starts: each error names its flag.
fn ssh_runtime(
    args: &AgentArgs,
    data_dir: &std::path::Path,
) -> Result<std::sync::Arc<dyn orion::Runtime>> {
    let target = args
        .ssh_target
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("--runtime ssh needs --ssh-target user@host[:port]"))?;
    let key = args.ssh_key.clone().ok_or_else(|| {
        anyhow::anyhow!("--runtime ssh needs --ssh-key FILE (key authentication only)")
    })?;
    let target = orion::SshTarget::parse(target)?;
    let mut config = orion::SshConfig::new(target, key, data_dir.join("ssh"));
    config.known_hosts = args.ssh_known_hosts.clone();
    Ok(std::sync::Arc::new(orion::SshRuntime::new(config)?))
}

/// What `docker swarm init` prints, Orion's way: the CA to pin, where the
/// management token is, and how to add managers and workers.
fn print_init(cluster: &orion::Cluster, dir: &std::path::Path) {
    let fp = cluster
        .pki()
        .map(|p| p.ca_fingerprint())
        .unwrap_or_default();
    let http = cluster
        .http_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    println!("Cluster created. Its CA: {} (SHA256 {fp}); give it to the CLI as --ca-cert or ORION_CACERT.", dir.join("tls/ca.pem").display());
    println!(
        "The management token is in {} (ORION_TOKEN).",
        dir.join(orion::MANAGEMENT_TOKEN_FILE).display()
    );
    for role in [orion::NodeRole::Manager, orion::NodeRole::Worker] {
        if let Some(t) = cluster.join_token(role) {
            println!("To add a {role}:\n    orion-node agent --join {http} --join-token {t} --data-dir DIR");
        }
    }
    println!("(`orion-node cluster join-token worker|manager [--rotate]` shows or rotates them.)");
}

/// The first start with autolock: the unlock key, shown this once (never
/// logged).
fn print_unlock_key(cluster: &orion::Cluster) {
    if let Some(key) = cluster.pki().and_then(|p| p.unlock_key()) {
        println!("Autolock is on. The unlock key, shown this once (keep it: a restarted node needs it: orion-node cluster unlock):\n    {}", key.to_text().as_str());
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
