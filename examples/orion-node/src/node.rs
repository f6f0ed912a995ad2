//! `orion-node agent`: the flags and config file mapped onto [`orion::Node`],
//! run until SIGINT or SIGTERM.

use anyhow::Result;
use tracing::info;

use crate::cli::AgentArgs;

/// Runs a node until SIGINT or SIGTERM; its tasks keep running and are adopted
/// when it starts again.
pub async fn run_agent(args: AgentArgs) -> Result<()> {
    let config = crate::config::node_config(&args)?;
    let runtime = orion::DockerRuntime::connect_local()?;
    let cluster = orion::Node::from_config(config)
        .runtime(runtime)
        .start()
        .await?;
    shutdown_signal().await;
    info!("shutting down; tasks keep running and are adopted on restart");
    cluster.shutdown().await;
    Ok(())
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
