//! The command line, as clap types.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Orion: a small, embeddable container orchestrator.
#[derive(Debug, Parser)]
#[command(name = "orion-node", version, about)]
pub struct Cli {
    /// The node API to talk to (for `job` and `node` commands); without a
    /// scheme, `https://` when a CA is given (`--ca-cert`), else `http://`.
    #[arg(
        long,
        global = true,
        env = "ORION_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub addr: String,
    /// The API token to send (`Authorization: Bearer`). A new cluster's first
    /// node writes its management token to `<data-dir>/management.token`.
    #[arg(long, global = true, env = "ORION_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The cluster CA to verify the node's certificate against (the first
    /// node writes it to `<data-dir>/tls/ca.pem` and logs its fingerprint).
    #[arg(long, global = true, env = "ORION_CACERT")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// On an error, print its backtrace too (when `RUST_BACKTRACE` is set).
    #[arg(long, global = true)]
    pub debug: bool,
    /// Log lines as text or as JSON objects (one per line: timestamp, level,
    /// target, message and fields), for log shippers.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "ORION_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// Log level or filter (`debug`, `info,orion_core::agent=debug`)
    /// [default: info for the agent, warn for the CLI]; `ORION_LOG` or
    /// `RUST_LOG` win over it.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node: store, gossip, agent, control loop and HTTP API.
    Agent(Box<AgentArgs>),
    /// Run a local development cluster with the example job.
    Dev(DevArgs),
    /// Apply many job specs at once: YAML streams, JSON arrays, directories of
    /// them, Compose files; all are checked first, then written in one commit.
    Apply {
        /// A spec file, a directory of them, or `-` for standard input; repeat
        /// for more.
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
    },
    /// Submit, inspect and stop jobs.
    #[command(subcommand)]
    Job(JobCommand),
    /// Inspect and manage nodes.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Named volumes: data on one node that outlives its tasks.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Secrets: values tasks read as files (or variables), never shown again.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// The service catalog: running allocations with named ports.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// The cluster itself: join tokens, its CA.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// API tokens and their scopes.
    #[command(subcommand)]
    Acl(AclCommand),
    /// Reach an allocation's task: logs, exec, stats.
    #[command(subcommand)]
    Alloc(AllocCommand),
    /// Serve the demo page (what the dev cluster's image runs).
    #[command(hide = true)]
    DemoWeb {
        /// Port to listen on, on every address.
        #[arg(long, default_value_t = 80)]
        port: u16,
        /// Directory to serve.
        #[arg(long, default_value = "/www")]
        dir: PathBuf,
    },
    /// Show the cluster's events (committed changes, leader changes): those the
    /// node still keeps, or with `-f` new ones as they happen.
    Events {
        /// Keep following.
        #[arg(short, long)]
        follow: bool,
        /// Only these topics, `job`, `allocation`, `node`, `deployment`,
        /// `volume`, `secret`, `leader`, each optionally with a key (`job:web`); repeat
        /// for more.
        #[arg(long = "topic")]
        topics: Vec<String>,
        /// Start after this log index [default: the oldest kept, or now with -f].
        #[arg(long)]
        index: Option<u64>,
        /// Print each event's JSON, one per line.
        #[arg(long)]
        json: bool,
    },
    /// Print the shell code that registers completions
    /// (`source <(orion-node completions bash)`).
    Completions {
        /// The shell.
        shell: CompletionShell,
    },
}

/// Shells that completions are made for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CompletionShell {
    /// Bash.
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
    /// Elvish.
    Elvish,
    /// PowerShell.
    Powershell,
}

/// `orion-node agent` flags; a config file (`--config`, YAML or JSON) may set any of
/// them under the same names (with `_` for `-`), and flags win.
#[derive(Debug, Args, Clone, Default)]
pub struct AgentArgs {
    /// Config file mirroring these flags.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// What runs the tasks: `docker` (the local engine), `process` (plain
    /// processes of this agent, for hosts without Docker: tasks give a
    /// command and no image) or `ssh` (processes on the server of
    /// `--ssh-target`).
    #[arg(long, value_enum, default_value_t = RuntimeKind::Docker)]
    pub runtime: RuntimeKind,
    /// With `--runtime ssh`: the server tasks run on, `user@host[:port]`.
    #[arg(long)]
    pub ssh_target: Option<String>,
    /// With `--runtime ssh`: the private key to log in with (unencrypted;
    /// key authentication only).
    #[arg(long)]
    pub ssh_key: Option<PathBuf>,
    /// With `--runtime ssh`: the known-hosts file the server's host key is
    /// checked against [default: ~/.ssh/known_hosts].
    #[arg(long)]
    pub ssh_known_hosts: Option<PathBuf>,
    /// Where the node keeps its data.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// HTTP API address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// DNS address to answer the service catalog on, UDP and TCP [default:
    /// 127.0.0.1:8600; skipped with a warning when that port is taken].
    #[arg(long, conflicts_with = "no_dns")]
    pub dns: Option<SocketAddr>,
    /// Serve no DNS.
    #[arg(long)]
    pub no_dns: bool,
    /// The domain DNS answers for [default: orion.].
    #[arg(long)]
    pub dns_domain: Option<String>,
    /// TTL of DNS records, seconds [default: 0].
    #[arg(long)]
    pub dns_ttl: Option<u32>,
    /// An upstream DNS server (`IP:PORT`) for names outside the domain; repeat
    /// for more [default: none, those are refused].
    #[arg(long = "dns-forward")]
    pub dns_forward: Vec<SocketAddr>,
    /// The image that runs a script language when a script task names none,
    /// `LANG=IMAGE` (`sh=alpine:3`); repeat for more [default: alpine:3, bash:5,
    /// python:3-slim, node:22-slim — which must be on the node].
    #[arg(long = "script-image", value_parser = parse_script_image)]
    pub script_images: Vec<(orion_core::spec::Lang, String)>,
    /// How often the agent samples each task's CPU, memory and network for
    /// `alloc stats --history` and `/metrics` [default: 10s].
    #[arg(long, value_parser = parse_duration)]
    pub stats_interval: Option<std::time::Duration>,
    /// Run no load balancer (no job's `lb.port` is listened on here).
    #[arg(long)]
    pub no_lb: bool,
    /// No TLS and no API tokens: for a throwaway cluster on one machine only
    /// (the node warns at every start and in `/health`).
    #[arg(long)]
    pub insecure_dev: bool,
    /// The join token to join a secure cluster with (`ORN-1-…`, from
    /// `orion-node cluster join-token worker|manager` on a manager).
    #[arg(long, env = "ORION_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    /// Autolock (Swarm's): keep the data dir's secret files (data key, CA
    /// key, join tokens, gossip keys) sealed under an unlock key, printed
    /// once at the first start with it; a restarted node then opens nothing
    /// until `orion-node cluster unlock` gives it the key. Stays on once on.
    #[arg(long)]
    pub autolock: bool,
    /// A file holding the unlock key (`ORNKEY-1-…`) of an autolocked data
    /// dir: the node opens directly instead of waiting for `cluster unlock`
    /// [default: ORION_UNLOCK_KEY, else wait].
    #[arg(long)]
    pub unlock_key_file: Option<PathBuf>,
    /// The unlock key itself (prefer --unlock-key-file).
    #[arg(
        long = "unlock-key",
        env = "ORION_UNLOCK_KEY",
        hide_env_values = true,
        hide = true
    )]
    pub unlock_key: Option<String>,
    /// How long the node certificates this node issues last (`90d`, `12h`,
    /// `30s`); each node renews its own at 50–80% of its life [default: 90d].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub cert_expiry: Option<std::time::Duration>,
    /// This node's id [default: the one stored in the data dir, else the host name].
    #[arg(long)]
    pub node_id: Option<String>,
    /// A tag for selectors, `key=value`; repeat for more.
    #[arg(long = "tag", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
    /// CPU cores offered to tasks [default: detected].
    #[arg(long)]
    pub cpu: Option<f64>,
    /// Memory offered to tasks, MiB [default: detected].
    #[arg(long)]
    pub memory_mb: Option<u64>,
    /// Disk offered to tasks, MiB [default: 0].
    #[arg(long)]
    pub disk_mb: Option<u64>,
    /// Host IP that task ports are published on [default: 127.0.0.1].
    #[arg(long)]
    pub host_ip: Option<std::net::IpAddr>,
    /// Dynamic host port range, `LOW-HIGH` [default: 32000-32767].
    #[arg(long, value_parser = orion::parse_port_range)]
    pub port_range: Option<(u16, u16)>,
    /// HTTP address of a member, to join its cluster; repeat for more (tried in
    /// turn).
    #[arg(long)]
    pub join: Vec<String>,
    /// How long to keep trying `--join`: seconds, or a duration like `90s`, `2m`
    /// [default: 2m].
    #[arg(long, value_parser = parse_duration)]
    pub join_timeout: Option<std::time::Duration>,
    /// manager (votes; may lead) or worker (runs tasks only) [default: manager].
    #[arg(long)]
    pub role: Option<orion::NodeRole>,
    /// Raft address to listen on and advertise [default: 127.0.0.1:7946].
    #[arg(long)]
    pub raft: Option<SocketAddr>,
    /// Gossip (UDP) address to listen on and advertise [default: 127.0.0.1:7947].
    #[arg(long)]
    pub gossip: Option<SocketAddr>,
    /// HTTP address other nodes and clients reach this node at, when it differs
    /// from `--http` (e.g. `--http 0.0.0.0:8080`) [default: the bound address].
    #[arg(long)]
    pub advertise_http: Option<String>,
    /// Most Raft voters the cluster grows to (3 or 5); further managers stay
    /// non-voting. Read by the first node [default: 3].
    #[arg(long)]
    pub max_voters: Option<usize>,
    /// A host path tasks may mount (and everything under it); repeat for more
    /// [default: none].
    #[arg(long = "host-volume")]
    pub host_volumes: Vec<PathBuf>,
    /// Storage engine of the Raft log: redb or sled [default: redb].
    #[arg(long)]
    pub engine: Option<orion::Engine>,
    /// A file holding the cluster's data key (64 hex digits, as the first
    /// node keeps it in `<data-dir>/data.key`), for a node that joins an
    /// `--insecure-dev` cluster (a secure join receives it with the node's
    /// certificate): it is kept in this node's data dir [default: the one in
    /// the data dir, or the join's; the first node of a new cluster makes
    /// one].
    #[arg(long)]
    pub data_key_file: Option<PathBuf>,
    /// Where tasks' secret files are written, on a tmpfs [default:
    /// /dev/shm/orion-secrets].
    #[arg(long)]
    pub secrets_dir: Option<PathBuf>,
}

fn parse_script_image(s: &str) -> Result<(orion_core::spec::Lang, String), String> {
    let (lang, image) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: give LANG=IMAGE (sh=alpine:3)"))?;
    let lang = orion_core::spec::Lang::ALL
        .into_iter()
        .find(|l| l.name() == lang)
        .ok_or_else(|| format!("{lang:?} is not a script language: sh, bash, python or node"))?;
    if image.is_empty() {
        return Err("the image is empty".into());
    }
    Ok((lang, image.to_string()))
}

/// `orion-node dev` flags.
/// What runs a node's tasks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeKind {
    /// The local Docker engine.
    #[default]
    Docker,
    /// Plain processes of the agent.
    Process,
    /// Processes on a server reached over SSH.
    Ssh,
}

#[derive(Debug, Args, Clone)]
pub struct DevArgs {
    /// How many nodes (1 to 3): large, small, gpu.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// What runs the tasks: `docker`, or `process` (no Docker needed: the
    /// example job is this binary serving its page as a process).
    #[arg(long, value_enum, default_value_t = RuntimeKind::Docker)]
    pub runtime: RuntimeKind,
    /// Where the nodes keep their data [default: a fresh temporary directory].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// HTTP port of the first node; the others take the next ones.
    #[arg(long, default_value_t = 8080)]
    pub http_port: u16,
    /// Host ports the nodes' tasks are published on, `LOW-HIGH`, split evenly
    /// between the nodes (they share one engine).
    #[arg(long, value_parser = orion::parse_port_range, default_value = "32000-32767")]
    pub port_range: (u16, u16),
    /// Every port from here up instead: node i serves HTTP on BASE+i, Raft on
    /// BASE+10+i and gossip on BASE+20+i, and publishes tasks from BASE+100
    /// (100 ports per node). Two dev clusters with bases 100 apart never collide.
    #[arg(long, conflicts_with_all = ["http_port", "port_range"])]
    pub port_base: Option<u16>,
    /// Log to the terminal instead of `<data dir>/dev.log`.
    #[arg(short, long)]
    pub verbose: bool,
    /// Start the cluster and the job, print where it runs, and exit (leaving the
    /// containers stopped and removed) instead of running until Ctrl-C.
    #[arg(long)]
    pub once: bool,
}

/// How a list or status is printed: a table by default.
#[derive(Debug, Args, Clone, Default)]
pub struct Output {
    /// Print the API's JSON.
    #[arg(long, conflicts_with = "template")]
    pub json: bool,
    /// Print through a Go template over the API's JSON, e.g.
    /// `-t '{{range .}}{{.name}} {{.health}}{{"\n"}}{{end}}'`.
    #[arg(short = 't', long = "template")]
    pub template: Option<String>,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured only on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

/// `orion-node job periodic …`.
#[derive(Debug, Subcommand)]
pub enum PeriodicCommand {
    /// Launch a run of a periodic job now, off its schedule.
    Force {
        /// The periodic job's name.
        name: String,
    },
}

/// `orion-node job …`.
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Submit a job spec (YAML or JSON); the same name again is a new version.
    Run {
        /// The spec file (`-` for standard input).
        file: PathBuf,
        /// Write only if the job's modify index is still this (`job plan`
        /// prints it; 0: only if the job is new).
        #[arg(long)]
        check_index: Option<u64>,
        /// Return once submitted instead of following the deployment. (Without
        /// it: exit 0 when the deployment succeeds, 2 when it fails or is
        /// reverted or an allocation cannot be placed, 1 on an error.)
        #[arg(short, long)]
        detach: bool,
    },
    /// Let a deployment waiting on its canaries go on.
    Promote {
        /// The job's name.
        name: String,
    },
    /// Submit a kept version again as the newest (by default the last stable
    /// one before the current).
    Revert {
        /// The job's name.
        name: String,
        /// The version to go back to.
        version: Option<u64>,
    },
    /// A job's latest deployment: show it, pause, resume or fail it.
    #[command(subcommand)]
    Deployment(DeploymentCommand),
    /// Forget finished batch jobs and stopped jobs (the leader also forgets
    /// finished batch jobs a day after they finished).
    Gc,
    /// A periodic job: launch a run now.
    #[command(subcommand)]
    Periodic(PeriodicCommand),
    /// A job's kept versions, each with its diff from the one before.
    History {
        /// The job's name.
        name: String,
        /// Print each version's diff too.
        #[arg(short, long)]
        patch: bool,
    },
    /// A dry run: the spec's diff from the running one, and the allocations it
    /// would create, stop or change in place; writes nothing.
    Plan {
        /// The spec file (`-` for standard input).
        file: PathBuf,
    },
    /// The output of every allocation of a job, across nodes, each line
    /// prefixed with its allocation; with -f, follows them, and the
    /// allocations that replace them, until interrupted.
    Logs {
        /// The job's name.
        name: String,
        /// Keep streaming, picking up new allocations as they start.
        #[arg(short, long)]
        follow: bool,
    },
    /// Show a job and where its allocations run.
    Status {
        /// The job's name.
        name: String,
        /// Output: the API's JSON, or a Go template over it.
        #[command(flatten)]
        out: Output,
        /// Show every kept allocation, older versions' finished ones too.
        #[arg(long)]
        all: bool,
    },
    /// Stop a job.
    Stop {
        /// The job's name.
        name: String,
        /// Also forget the job.
        #[arg(long)]
        purge: bool,
    },
    /// Change a service job's replica count: made in place, so the running
    /// replicas keep their allocations and only the difference starts or stops.
    Scale {
        /// The job's name.
        name: String,
        /// The replica count wanted.
        replicas: u32,
    },
    /// List jobs.
    List {
        /// Output: the API's JSON, or a Go template over it.
        #[command(flatten)]
        out: Output,
    },
}

/// `orion-node job deployment …`.
#[derive(Debug, Subcommand)]
pub enum DeploymentCommand {
    /// Show the job's latest deployment.
    Status {
        /// The job's name.
        name: String,
        /// Output: the API's JSON, or a Go template over it.
        #[command(flatten)]
        out: Output,
    },
    /// Replace no further allocation until resumed.
    Pause {
        /// The job's name.
        name: String,
    },
    /// Go on after a pause.
    Resume {
        /// The job's name.
        name: String,
    },
    /// End it as failed (and revert, with `auto_revert`).
    Fail {
        /// The job's name.
        name: String,
    },
}

/// `orion-node alloc …`; asked of any node, answered by the one that runs it.
#[derive(Debug, Subcommand)]
pub enum AllocCommand {
    /// Show one allocation as JSON.
    Status {
        /// The allocation's id.
        id: String,
        /// Output: a Go template over the JSON.
        #[command(flatten)]
        out: Output,
    },
    /// Print the task's output.
    Logs {
        /// The allocation's id.
        id: String,
        /// Keep streaming until the task exits.
        #[arg(short, long)]
        follow: bool,
    },
    /// Run a command in the task and print its output.
    Exec {
        /// Pass stdin through and stream output as it comes (over a WebSocket).
        #[arg(short, long)]
        interactive: bool,
        /// Allocate a TTY (with -i: a shell, full-screen programs); its size
        /// follows the terminal's.
        #[arg(short, long)]
        tty: bool,
        /// The allocation's id.
        id: String,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
    /// Show the task's resource use: CPU in percent of a core, memory of its
    /// limit (`--json` for the raw figures).
    Stats {
        /// The allocation's id.
        id: String,
        /// Also show the samples the node kept (every 10 s, the last hour).
        #[arg(long)]
        history: bool,
        /// Output: a Go template over the JSON.
        #[command(flatten)]
        out: Output,
    },
}

/// `orion-node service …`.
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// List services with their instance counts.
    List {
        /// Output: the API's JSON, or a Go template over it.
        #[command(flatten)]
        out: Output,
    },
    /// A service's instances: where to reach each, and its health.
    Status {
        /// The service's name.
        name: String,
        /// Show unhealthy instances too.
        #[arg(long)]
        all: bool,
        /// Output: the API's JSON, or a Go template over it.
        #[command(flatten)]
        out: Output,
    },
}

/// `orion-node volume …`.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a named volume on a node (tasks that mount it run there).
    Create {
        /// Its name (DNS-safe).
        name: String,
        /// The node its data lives on [default: the node asked].
        #[arg(long)]
        node: Option<String>,
    },
    /// List volumes.
    List {
        /// Output: the API's JSON, or a Go template over it.
        #[command(flatten)]
        out: Output,
    },
    /// Delete a volume no running job mounts; its node removes the data.
    Delete {
        /// Its name.
        name: String,
    },
}

/// A node role, as the CLI takes it.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    /// A Raft voter that also runs tasks.
    Manager,
    /// Runs tasks only.
    Worker,
}

impl RoleArg {
    /// As the API names it.
    pub fn as_str(self) -> &'static str {
        match self {
            RoleArg::Manager => "manager",
            RoleArg::Worker => "worker",
        }
    }
}

/// `orion-node cluster …`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Print the join token for a role (only the node that made it holds it:
    /// tokens are stored as hashes), or with `--rotate` make a new one; the
    /// old one then stops working for new joins, nodes already in stay.
    JoinToken {
        /// Whose token.
        #[arg(value_enum)]
        role: RoleArg,
        /// Make a new token.
        #[arg(long)]
        rotate: bool,
        /// Print only the token.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print the cluster's CA certificate and its SHA-256 fingerprint (fetched
    /// without verification: compare the fingerprint with the one the first
    /// node logged before trusting it); `ca rotate` rolls a new CA, `ca
    /// status` shows a rotation's progress.
    Ca {
        /// What to do [default: print the CA].
        #[command(subcommand)]
        action: Option<CaCommand>,
    },
    /// The gossip keyring (Nomad's `operator gossip keyring`): every node
    /// seals gossip with the primary key and accepts any installed one.
    /// Rotate with install, then use, then remove the old key.
    #[command(subcommand)]
    GossipKey(GossipKeyCommand),
    /// Unlock an autolocked node restarted without its key (`--addr` is
    /// that node): it then opens its store and starts.
    Unlock {
        /// A file holding the unlock key [default: ORION_UNLOCK_KEY, else
        /// one line read from standard input].
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Print the unlock key this (autolocked) node's files are sealed under.
    UnlockKey {
        /// Print only the key.
        #[arg(short, long)]
        quiet: bool,
    },
}

/// `orion-node cluster ca …`.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Roll a new cluster CA with no downtime (Swarm's `swarm ca --rotate`):
    /// cross-signed by the old one while every node renews under it; when
    /// every node is done, only the new CA is trusted. Then give the CLI the
    /// new CA (`cluster ca > ca.pem`) and hand out the new join tokens
    /// (`cluster join-token`: their CA digest changed).
    Rotate {
        /// Wait until every node is done and the rotation is over.
        #[arg(long)]
        wait: bool,
        /// How long to wait with --wait (e.g. 5m).
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// The CA's rotation: which one, whether it is over, the nodes done and
    /// those it waits for.
    Status,
}

/// `orion-node cluster gossip-key …`.
#[derive(Debug, Subcommand)]
pub enum GossipKeyCommand {
    /// List the keys' ids and which one seals (never a key).
    List,
    /// Install a key on every node (accepted from now on, not yet sealing);
    /// prints its id.
    Install {
        /// The key, 32 bytes in standard base64 [default: one made by the
        /// node].
        #[arg(long)]
        key: Option<String>,
    },
    /// Make an installed key the one every node seals with.
    Use {
        /// Its id (8 hex digits, as `list` shows).
        id: String,
    },
    /// Remove a key (not the primary): packets sealed with it are dropped.
    #[command(visible_alias = "rm")]
    Remove {
        /// Its id.
        id: String,
    },
    /// Print a new random key (nothing is sent).
    Generate,
}

/// `orion-node secret …`.
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Write a secret, or a new version of one: sealed by the node that
    /// takes it, and never shown again.
    Create {
        /// Its name (DNS-safe).
        name: String,
        /// The file holding its value (at most 1 MiB), or `-` for standard
        /// input.
        #[arg(long = "from-file", short = 'f')]
        from_file: PathBuf,
    },
    /// List secrets: names, versions and times (never a value).
    List {
        /// Output: the API's JSON, or a Go template over it.
        #[command(flatten)]
        out: Output,
    },
    /// Forget a secret and its versions (refused while a running job uses it).
    #[command(visible_alias = "delete")]
    Rm {
        /// Its name.
        name: String,
    },
}

/// `orion-node acl …`.
#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

/// `orion-node acl token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token; its secret is printed this once.
    Create {
        /// What it is for.
        #[arg(long)]
        name: String,
        /// A scope: read, submit, exec, operator, management; repeat for more.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
    /// List tokens (never their secrets).
    List {
        /// Output: the API's JSON, or a Go template over it.
        #[command(flatten)]
        out: Output,
    },
    /// Revoke a token: refused on every node from now on.
    Revoke {
        /// Its accessor (from `acl token list`).
        accessor: String,
    },
}

/// `orion-node node …`.
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List nodes.
    List {
        /// Output: the API's JSON, or a Go template over it.
        #[command(flatten)]
        out: Output,
    },
    /// Move a node's allocations elsewhere and keep new ones off.
    Drain {
        /// The node's id.
        id: String,
        /// Return at once instead of waiting until nothing runs there.
        #[arg(long)]
        detach: bool,
        /// Give up waiting after this long (`90s`, `10m`, `1h`) [default: 1h].
        #[arg(long, value_parser = parse_duration, default_value = "1h")]
        deadline: std::time::Duration,
    },
    /// End a drain.
    Undrain {
        /// The node's id.
        id: String,
    },
    /// Remove a node from the cluster (and from the voters).
    Remove {
        /// The node's id.
        id: String,
        /// Remove it even though it is still alive (it may rejoin; its tasks
        /// keep running beside their replacements until it stops).
        #[arg(long)]
        force: bool,
    },
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("tag {s:?} is not key=value")),
    }
}

/// A duration: plain seconds (`30`) or with a unit (`500ms`, `90s`, `2m`).
pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration ({e}); write 30, 30s, 2m or 500ms"))
}
