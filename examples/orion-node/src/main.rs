//! `orion-node`: Orion's reference binary — a node agent and a CLI client.
//!
//! - `orion-node agent …` runs a node (store, gossip, agent, control loop, HTTP API)
//!   until SIGINT or SIGTERM.
//! - `orion-node dev` runs a local cluster with an example job on this machine.
//! - `orion-node job …` / `orion-node node …` talk to a node's HTTP API.
//!
//! Everything of substance is in the library crates; this is clap, tracing setup,
//! and signal → shutdown.

mod apply;
mod attach;
mod cli;
mod client;
mod config;
mod demo;
mod dev;
mod follow;
mod node;
mod out;
mod secret;
mod template;

use anyhow::Result;
use clap::Parser;

/// Runs the command; an error prints as one line (`error: …` with its causes),
/// and its backtrace only with `--debug` while `RUST_BACKTRACE` is set.
fn main() -> std::process::ExitCode {
    // `COMPLETE=bash orion-node …`: the shell asking for completions (see
    // `orion-node completions`); answers and exits.
    clap_complete::CompleteEnv::with_factory(<cli::Cli as clap::CommandFactory>::command)
        .complete();
    let cli = cli::Cli::parse();
    let debug = cli.debug;
    orion_core::tls::ensure_default_provider();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<follow::Unsuccessful>().is_some() => {
            eprintln!("{e}");
            std::process::ExitCode::from(2)
        }
        Err(e) => {
            if debug && std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
                eprintln!("error: {e:?}");
            } else {
                eprintln!("error: {e:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs to `writer` at `ORION_LOG`'s filter, else `RUST_LOG`'s, else
/// `--log-level`, else `default_level`; coloured only when `colour` (a person
/// reads it: never into a file or a pipe). JSON lines carry the fields of the
/// spans they happen in (the node id of an agent pass, an API request's route).
pub(crate) fn init_logging<W>(default_level: &str, writer: W, colour: bool)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let level = LOG_LEVEL
        .get()
        .and_then(Clone::clone)
        .unwrap_or_else(|| default_level.to_string());
    let filter = tracing_subscriber::EnvFilter::try_from_env("ORION_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_env("RUST_LOG"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let json = LOG_JSON.load(std::sync::atomic::Ordering::Relaxed);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.with_ansi(colour).init();
    }
}

/// `--log-level`, set once from the flags before logging starts.
static LOG_LEVEL: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Whether log lines are JSON (`--log-format json`), set once from the flags
/// before logging starts.
static LOG_JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

async fn run(cli: cli::Cli) -> Result<()> {
    LOG_JSON.store(
        cli.log_format == cli::LogFormat::Json,
        std::sync::atomic::Ordering::Relaxed,
    );
    let _ = LOG_LEVEL.set(cli.log_level.clone());
    client::set_token(cli.token.clone())?;
    client::set_ca(cli.ca_cert.as_deref())?;
    let stderr_is_tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    match cli.command {
        cli::Command::Agent(_) => {
            init_logging("info,openraft=warn", std::io::stderr, stderr_is_tty)
        }
        // The dev cluster sets up its own logging (to a file unless -v).
        cli::Command::Dev(_) => {}
        _ => init_logging(
            "warn,rustls_platform_verifier=off",
            std::io::stderr,
            stderr_is_tty,
        ),
    }
    match cli.command {
        cli::Command::Agent(args) => node::run_agent(*args).await,
        cli::Command::Dev(args) => dev::run(args).await,
        cli::Command::Apply { files } => apply::apply(&cli.addr, &files).await,
        cli::Command::Job(cmd) => client::job(&cli.addr, cmd).await,
        cli::Command::Node(cmd) => client::node(&cli.addr, cmd).await,
        cli::Command::Volume(cmd) => client::volume(&cli.addr, cmd).await,
        cli::Command::Secret(cmd) => secret::secret(&cli.addr, cmd).await,
        cli::Command::Service(cmd) => client::service(&cli.addr, cmd).await,
        cli::Command::Acl(cmd) => client::acl(&cli.addr, cmd).await,
        cli::Command::Cluster(cmd) => client::cluster(&cli.addr, cmd).await,
        cli::Command::Alloc(cmd) => client::alloc(&cli.addr, cmd).await,
        cli::Command::DemoWeb { port, dir } => demo::serve(port, dir).await,
        cli::Command::Completions { shell } => completions(shell),
        cli::Command::Events {
            follow,
            topics,
            index,
            json,
        } => client::events(&cli.addr, follow, &topics, index, json).await,
    }
}

/// Prints the shell code that registers this binary's completions. They are
/// dynamic (the shell asks the binary, `COMPLETE=<shell> orion-node …`), so they
/// work past the first word and for the hyphenated name, where clap_complete's
/// static scripts do not (clap-rs/clap#6421).
fn completions(shell: cli::CompletionShell) -> Result<()> {
    use clap_complete::env::{Bash, Elvish, EnvCompleter, Fish, Powershell, Zsh};
    let completer: &dyn EnvCompleter = match shell {
        cli::CompletionShell::Bash => &Bash,
        cli::CompletionShell::Zsh => &Zsh,
        cli::CompletionShell::Fish => &Fish,
        cli::CompletionShell::Elvish => &Elvish,
        cli::CompletionShell::Powershell => &Powershell,
    };
    let exe = std::env::current_exe()?;
    let mut script = Vec::new();
    completer.write_registration(
        "COMPLETE",
        "orion-node",
        "orion-node",
        &exe.to_string_lossy(),
        &mut script,
    )?;
    out::raw(format_args!("{}", String::from_utf8_lossy(&script)), true);
    Ok(())
}
