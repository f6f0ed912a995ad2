//! `orion-history`: runs the history checker by hand, for as long as asked.
//!
//! ```text
//! cargo build -p orion-node && cargo run -p orion-history -- --duration 30m
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use orion_history::nemesis::Fault;
use orion_history::{run, sibling_binary, Config};

/// Runs a real Orion cluster under faults with concurrent clients and checks
/// the recorded history for linearizability and the run's invariants.
#[derive(Parser, Debug)]
#[command(name = "orion-history", version)]
struct Args {
    /// How long clients and faults run (e.g. 60s, 30m).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// The seed of the workload's and the faults' choices (default: random).
    #[arg(long)]
    seed: Option<u64>,
    /// Managers.
    #[arg(long, default_value_t = 3)]
    managers: usize,
    /// Workers.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 6)]
    clients: usize,
    /// Jobs the clients work on.
    #[arg(long, default_value_t = 8)]
    keys: usize,
    /// Faults to choose from, comma-separated (kill, pause, restart,
    /// isolate-leader, split, bridge), or `none`.
    #[arg(long, default_value = "kill,pause,restart,isolate-leader,split,bridge")]
    faults: String,
    /// Where the history, schedule and report go.
    #[arg(long, default_value = "target/orion-history")]
    out: PathBuf,
    /// Read each node's replica instead of `?consistent=true` reads: stale
    /// reads the checker must catch (a check of the checker).
    #[arg(long)]
    local_reads: bool,
    /// The orion-node binary (default: the one beside this program).
    #[arg(long)]
    orion_node: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let faults: Result<Vec<Fault>, String> = if args.faults == "none" {
        Ok(Vec::new())
    } else {
        args.faults
            .split(',')
            .map(|f| Fault::parse(f.trim()).ok_or_else(|| format!("unknown fault {f:?}")))
            .collect()
    };
    let faults = match faults {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "error: {e} (known: kill, pause, restart, isolate-leader, split, bridge, or none)"
            );
            return ExitCode::from(2);
        }
    };
    let Some(binary) = args.orion_node.or_else(sibling_binary) else {
        eprintln!("error: no orion-node binary beside this program: build it (cargo build -p orion-node) or pass --orion-node");
        return ExitCode::from(2);
    };
    let seed = args.seed.unwrap_or_else(rand::random);
    let cfg = Config {
        binary,
        duration: args.duration,
        seed,
        managers: args.managers,
        workers: args.workers,
        clients: args.clients,
        keys: args.keys,
        faults,
        out: args.out.join(format!("seed-{seed}")),
        name: format!("oh{}", std::process::id()),
        consistent_reads: !args.local_reads,
    };
    match run(&cfg).await {
        Ok(report) => {
            print!("{}", report.text(&cfg));
            println!("files: {}", report.out.display());
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
