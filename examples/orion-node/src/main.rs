//! `orion-node`: Orion's reference binary — a node agent and a CLI client.
//!
//! - `orion-node agent …` runs a node (store, gossip, agent, control loop, HTTP API)
//!   until SIGINT or SIGTERM.
//! - `orion-node dev` runs a local cluster with an example job on this machine.
//! - `orion-node job …` / `orion-node node …` talk to a node's HTTP API.
//!
//! Everything of substance is in the library crates; this is clap, tracing setup,
//! and signal → shutdown.

mod cli;
mod client;
mod config;
mod dev;
mod node;

use anyhow::Result;
use clap::Parser;

#[tokio::main]
async fn main() -> Result<()> {
    let cli = cli::Cli::parse();
    let default_level = match cli.command {
        cli::Command::Agent(_) => "info,openraft=warn",
        // The dev cluster shuts its nodes down together; peers' complaints about
        // each other going away are noise there.
        cli::Command::Dev(_) => "info,openraft=off",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ORION_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        cli::Command::Agent(args) => node::run_agent(*args).await,
        cli::Command::Dev(args) => dev::run(args).await,
        cli::Command::Job(cmd) => client::job(&cli.addr, cmd).await,
        cli::Command::Node(cmd) => client::node(&cli.addr, cmd).await,
        cli::Command::Alloc(cmd) => client::alloc(&cli.addr, cmd).await,
        cli::Command::Completions { shell } => {
            let mut cmd = <cli::Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "orion-node", &mut std::io::stdout());
            Ok(())
        }
    }
}
