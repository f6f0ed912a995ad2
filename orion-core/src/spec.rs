//! The job spec: what a user asks Orion to run, how it parses and how it is validated.
//!
//! A spec is data. JSON and YAML parse to the same [`JobSpec`]; unknown fields are
//! rejected, and every problem is reported with the path of the field that has it
//! (`task.ports[1].name: duplicate port name "http"`), before anything is written.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

pub mod compose;
mod health;
pub use health::{CheckKind, HealthCheck};
mod deps;
pub use deps::{Condition, Dependency};
mod script;
mod secrets;
pub use script::{Lang, ScriptSpec, MAX_SCRIPT_BYTES, SCRIPT_PATH};
pub use secrets::{FileMode, SecretMount, DEFAULT_SECRET_MODE, SECRETS_DIR};
mod security;
pub use security::{
    Profile, Security, SecurityOverrides, SecuritySpec, RESTRICTED_PIDS, RESTRICTED_USER,
};
mod schedule;
pub use schedule::{parse_cron, parse_time_zone, Concurrency, History, ScheduleSpec};
mod lb;
pub use lb::{Algorithm, CircuitBreaker, LbMode, LbSpec, RateLimit, Sticky, MIN_LB_PORT};
mod parse;
mod policy;
pub use parse::{parse_json_strict, parse_specs, parse_yaml_documents, parse_yaml_value};
pub use policy::{
    jittered, Backoff, DelayFunction, RescheduleSpec, RestartMode, RestartSpec, UpdateOrder,
    UpdateSpec,
};

/// The kinds of job Orion runs.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// Long-running; `replicas` copies are kept running.
    #[default]
    Service,
    /// Runs to completion; a task that exits 0 is done, one that fails is retried.
    Batch,
    /// One copy on every eligible node (its selectors and constraints
    /// decide which); `replicas` is ignored.
    System,
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobKind::Service => "service",
            JobKind::Batch => "batch",
            JobKind::System => "system",
        })
    }
}

/// How the scheduler ranks the nodes a task fits on.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Prefer fuller nodes, so whole nodes stay free for large tasks.
    #[default]
    Binpack,
    /// Prefer emptier nodes, so one node's loss touches fewer tasks.
    Spread,
}

/// A job: one task template run as one or more allocations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Unique, DNS-safe name (RFC 1123 label).
    pub name: String,
    /// Service, batch or system.
    #[serde(rename = "type", default)]
    pub kind: JobKind,
    /// How many copies to run (service and batch; ignored for system jobs).
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// What each copy runs.
    pub task: TaskSpec,
    /// Node tags that must match exactly (`disk: ssd`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selectors: BTreeMap<String, String>,
    /// Richer placement rules against node tags (not-equals, exists, in-set).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
    /// Never put two copies of this job on one node.
    #[serde(default, skip_serializing_if = "is_false")]
    pub distinct_hosts: bool,
    /// Bin-pack or spread; the cluster default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// Batch: at most this many of its replicas run at once (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
    /// 1–100 (default 50): when capacity is short, pending work of higher
    /// priority is placed first, then older jobs first. Nothing running is
    /// preempted for it (yet).
    #[serde(
        default = "default_priority",
        skip_serializing_if = "is_default_priority"
    )]
    pub priority: u8,
    /// How a new version rolls out (services and system jobs); the defaults
    /// of [`UpdateSpec`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateSpec>,
    /// How an exited or unhealthy task is restarted in place; the defaults of
    /// [`RestartSpec`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartSpec>,
    /// How an allocation whose restarts are spent is replaced; the defaults of
    /// [`RescheduleSpec`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reschedule: Option<RescheduleSpec>,
    /// Makes a batch job periodic: the job itself runs nothing, and each tick
    /// of the schedule launches a run, a child job
    /// `<name>-periodic-<unix seconds of the tick>` (a run forced by hand:
    /// `<name>-periodic-<unix milliseconds>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleSpec>,
    /// Jobs this one waits for before it starts (see [`Dependency`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<Dependency>,
    /// Autoscaling (service jobs): the leader sets `replicas` between the
    /// policy's bounds from what the instances report (see
    /// [`crate::scaling`]). Once a job scales, `replicas` in a spec submitted
    /// again is its starting count only: the count it runs at is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<crate::scaling::ScalingSpec>,
}

impl JobSpec {
    /// The security settings its task runs with: its `security`, on top of
    /// the restricted profile for batch and script tasks and the engine's
    /// defaults for the others.
    pub fn security(&self) -> Security {
        self.task.security_for(self.kind)
    }
}

impl TaskSpec {
    /// The names of the secrets it uses, as files or variables, each once.
    pub fn secret_names(&self) -> BTreeSet<&str> {
        self.secrets
            .iter()
            .map(|s| s.name.as_str())
            .chain(self.env_from_secret.values().map(String::as_str))
            .collect()
    }

    /// The security settings of this task in a job of `kind` (see
    /// [`JobSpec::security`]).
    pub fn security_for(&self, kind: JobKind) -> Security {
        let default = if kind == JobKind::Batch || self.script.is_some() {
            Profile::Restricted
        } else {
            Profile::Default
        };
        Security::resolve(self.security.as_ref(), default)
    }
}

/// The largest output file a batch task may leave.
pub const MAX_OUTPUT_BYTES: u64 = 1024 * 1024;

/// Where a dependent finds the outputs of the jobs it waited for.
pub const INPUTS_DIR: &str = "/orion/inputs";

/// The infix of a periodic job's runs' names: `<name>-periodic-<unix seconds>`.
pub const PERIODIC_INFIX: &str = "-periodic-";

/// The longest name a periodic job may have: its runs' names add
/// `-periodic-` and up to thirteen digits and must stay DNS labels.
pub const MAX_PERIODIC_NAME: usize = 63 - PERIODIC_INFIX.len() - 13;

/// The name of the run of periodic job `job` launched for the tick at
/// `tick_ms`: the tick's Unix seconds.
pub fn periodic_child(job: &str, tick_ms: u64) -> String {
    format!("{job}{PERIODIC_INFIX}{}", tick_ms / 1000)
}

/// The name of a run of `job` forced at `now_ms`: its Unix milliseconds, so it
/// never takes a tick's name.
pub fn periodic_forced_child(job: &str, now_ms: u64) -> String {
    format!("{job}{PERIODIC_INFIX}{now_ms}")
}

/// Whether `name` is that of a periodic job's run.
pub fn is_periodic_child(name: &str) -> bool {
    name.rsplit_once(PERIODIC_INFIX)
        .is_some_and(|(_, t)| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()))
}

fn default_replicas() -> u32 {
    1
}

/// The default job priority.
pub const DEFAULT_PRIORITY: u8 = 50;

fn default_priority() -> u8 {
    DEFAULT_PRIORITY
}

fn is_default_priority(p: &u8) -> bool {
    *p == DEFAULT_PRIORITY
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A placement rule on one node tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Constraint {
    /// The tag's key.
    pub key: String,
    /// How the tag is compared.
    pub op: ConstraintOp,
    /// The values compared against (one for `eq` / `ne`, any number for `in` /
    /// `not_in`, none for `exists` / `not_exists`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// The comparisons a [`Constraint`] can make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConstraintOp {
    /// The tag equals the value.
    Eq,
    /// The tag is absent or differs from the value.
    Ne,
    /// The tag is present.
    Exists,
    /// The tag is absent.
    NotExists,
    /// The tag is one of the values.
    In,
    /// The tag is absent or none of the values.
    NotIn,
}

impl Constraint {
    /// Whether a node with these tags satisfies the rule.
    pub fn matches(&self, tags: &BTreeMap<String, String>) -> bool {
        let tag = tags.get(&self.key);
        match self.op {
            ConstraintOp::Eq => tag.is_some_and(|t| self.values.first() == Some(t)),
            ConstraintOp::Ne => tag.is_none_or(|t| self.values.first() != Some(t)),
            ConstraintOp::Exists => tag.is_some(),
            ConstraintOp::NotExists => tag.is_none(),
            ConstraintOp::In => tag.is_some_and(|t| self.values.contains(t)),
            ConstraintOp::NotIn => tag.is_none_or(|t| !self.values.contains(t)),
        }
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = &self.key;
        let v = self.values.join(",");
        match self.op {
            ConstraintOp::Eq => write!(f, "{k}={v}"),
            ConstraintOp::Ne => write!(f, "{k}!={v}"),
            ConstraintOp::Exists => write!(f, "{k} exists"),
            ConstraintOp::NotExists => write!(f, "{k} absent"),
            ConstraintOp::In => write!(f, "{k} in ({v})"),
            ConstraintOp::NotIn => write!(f, "{k} not in ({v})"),
        }
    }
}

/// What one allocation runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Container image reference (`orion-test/web:1`). A script task may leave
    /// it out: the node's runner image for the script's language runs it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    /// Files a batch task leaves for the jobs that wait for it (`after`):
    /// read from its container when it completes (at most 1 MiB each), kept
    /// with the allocation, and mounted read-only in each dependent at
    /// `/orion/inputs/<job>/<file name>`. A restricted task writes them under
    /// its writable `/workspace`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,
    /// A script to run instead of a command (see [`ScriptSpec`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<ScriptSpec>,
    /// How locked down it runs: `restricted` by default for batch and script
    /// tasks, the engine's defaults for services (see [`SecuritySpec`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<SecuritySpec>,
    /// The command and its arguments; the image's default when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Extra arguments appended to `command`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// What the task reserves on its node.
    #[serde(default)]
    pub resources: Resources,
    /// Named container ports; each gets a host port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    /// What is mounted into the task: named volumes (which pin the job to the
    /// volume's node) and host paths the node allows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeMount>,
    /// Cluster secrets mounted as read-only files, each at its `target`
    /// (default `/run/secrets/<name>`); see [`SecretMount`]. A task whose
    /// secret does not exist is not placed, and says which one it waits for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretMount>,
    /// Environment variables set from secrets, variable → secret name
    /// (`PGPASSWORD: db-password`); the value must be UTF-8 text. Prefer
    /// `secrets`: the engine keeps a container's environment in its
    /// configuration on the node's disk and shows it to `docker inspect`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_from_secret: BTreeMap<String, String>,
    /// Probes run by the task's node; the task is healthy while they pass.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_checks: Vec<HealthCheck>,
    /// The service its running allocations are instances of in the catalog
    /// (by default one named after the job, with no tags).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceSpec>,
    /// A run that lasts longer is killed and fails (`timed out after 30s`);
    /// meant for batch tasks. None by default.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "humantime_serde::option"
    )]
    #[schema(value_type = Option<String>)]
    pub timeout: Option<std::time::Duration>,
    /// A Prometheus endpoint the task serves, scraped by its node's agent for
    /// autoscaling's `custom:<name>` metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsEndpoint>,
}

/// Where a task serves its Prometheus metrics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsEndpoint {
    /// The name of one of the task's ports.
    pub port: String,
    /// The path. Default `/metrics`.
    #[serde(default = "default_metrics_path")]
    pub path: String,
}

fn default_metrics_path() -> String {
    "/metrics".into()
}

/// How a task's allocations appear in the service catalog.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// The service's name (DNS-safe); the job's name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tags clients filter on (`?tag=`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

/// One mount of a task: a named volume (`name`) or a host path (`host_path`,
/// only under the paths the node's config allows), at `target`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeMount {
    /// A named volume of the cluster (`orion-node volume create`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An absolute path on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    /// Where it appears in the container (absolute).
    pub target: String,
    /// Mounted read-only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// CPU, memory and disk: what a task asks for, or what a node has.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU cores (fractions allowed).
    #[serde(default = "default_cpu")]
    pub cpu: f64,
    /// Memory in MiB.
    #[serde(default = "default_memory")]
    pub memory_mb: u64,
    /// Disk in MiB (0: the task claims none).
    #[serde(default)]
    pub disk_mb: u64,
}

/// 0.1 core: a small service's idle need, as Nomad's 100 MHz default.
fn default_cpu() -> f64 {
    0.1
}

/// 128 MiB: enough for a small service, small enough to pack densely.
fn default_memory() -> u64 {
    128
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            cpu: default_cpu(),
            memory_mb: default_memory(),
            disk_mb: 0,
        }
    }
}

impl Resources {
    /// No resources at all.
    pub const ZERO: Resources = Resources {
        cpu: 0.0,
        memory_mb: 0,
        disk_mb: 0,
    };

    /// Whether `need` fits in `self` on every dimension.
    pub fn fits(&self, need: &Resources) -> bool {
        // A small epsilon so that ten 0.1-core tasks fit on one core.
        need.cpu <= self.cpu + 1e-9
            && need.memory_mb <= self.memory_mb
            && need.disk_mb <= self.disk_mb
    }

    /// `self + other`.
    pub fn add(&self, other: &Resources) -> Resources {
        Resources {
            cpu: self.cpu + other.cpu,
            memory_mb: self.memory_mb + other.memory_mb,
            disk_mb: self.disk_mb + other.disk_mb,
        }
    }

    /// `self - other`, floored at zero.
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        Resources {
            cpu: (self.cpu - other.cpu).max(0.0),
            memory_mb: self.memory_mb.saturating_sub(other.memory_mb),
            disk_mb: self.disk_mb.saturating_sub(other.disk_mb),
        }
    }
}

/// A named container port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    /// Name the port is known by (`http`).
    pub name: String,
    /// The port inside the container.
    pub container_port: u32,
    /// A fixed host port; a free one from the node's range when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u32>,
    /// `tcp` (default) or `udp`.
    #[serde(default)]
    pub protocol: Protocol,
    /// A load-balancer listener on every node for this port (tcp only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lb: Option<LbSpec>,
}

/// Transport protocol of a port.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// The smallest CPU reservation a task may ask for: below 0.01 cores the
/// engine's CFS quota floor refuses every start (and a tiny value like 1e-300
/// rounds to no limit at all).
pub const MIN_CPU: f64 = 0.01;

/// The smallest memory reservation a task may ask for, MiB: the engine refuses
/// a memory limit under 6 MiB, so such a task could never start.
pub const MIN_MEMORY_MB: u64 = 6;

/// One problem with one field of a spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Path of the field (`task.resources.memory_mb`); empty for the document itself.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.problem)
        } else {
            write!(f, "{}: {}", self.field, self.problem)
        }
    }
}

/// Why a spec was refused: every problem found, each naming its field.
#[derive(
    Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize, utoipa::ToSchema,
)]
#[error("invalid job spec: {}", .errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct SpecError {
    /// The problems, in field order.
    pub errors: Vec<FieldError>,
}

impl SpecError {
    /// The same problems with every field under `prefix` (`[2]`, `web.yaml`).
    pub fn within(mut self, prefix: &str) -> SpecError {
        for e in &mut self.errors {
            e.field = if e.field.is_empty() {
                prefix.to_string()
            } else if e.field.starts_with('[') {
                format!("{prefix}{}", e.field)
            } else {
                format!("{prefix}.{}", e.field)
            };
        }
        self
    }

    pub(crate) fn one(field: impl Into<String>, problem: impl Into<String>) -> Self {
        SpecError {
            errors: vec![FieldError {
                field: field.into(),
                problem: problem.into(),
            }],
        }
    }
}

/// The format a spec document is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// JSON.
    Json,
    /// YAML (1.2).
    Yaml,
}

impl JobSpec {
    /// A service job with one replica of `image`, for building specs in code.
    ///
    /// ```
    /// use orion_core::JobSpec;
    /// let spec = JobSpec::service("web", "nginx").port("http", 80).replicas(3);
    /// assert!(spec.validate().is_ok());
    /// ```
    pub fn service(name: impl Into<String>, image: impl Into<String>) -> Self {
        JobSpec {
            name: name.into(),
            kind: JobKind::Service,
            replicas: 1,
            task: TaskSpec {
                image: image.into(),
                outputs: Vec::new(),
                script: None,
                security: None,
                command: Vec::new(),
                args: Vec::new(),
                env: BTreeMap::new(),
                resources: Resources::default(),
                ports: Vec::new(),
                volumes: Vec::new(),
                secrets: Vec::new(),
                env_from_secret: BTreeMap::new(),
                health_checks: Vec::new(),
                service: None,
                timeout: None,
                metrics: None,
            },
            node_selectors: BTreeMap::new(),
            constraints: Vec::new(),
            distinct_hosts: false,
            strategy: None,
            parallelism: None,
            priority: DEFAULT_PRIORITY,
            update: None,
            restart: None,
            reschedule: None,
            schedule: None,
            after: Vec::new(),
            scaling: None,
        }
    }

    /// Sets the update block.
    pub fn update(mut self, update: UpdateSpec) -> Self {
        self.update = Some(update);
        self
    }

    /// Sets the restart block.
    pub fn restart(mut self, restart: RestartSpec) -> Self {
        self.restart = Some(restart);
        self
    }

    /// The update block, or its defaults.
    pub fn update_policy(&self) -> UpdateSpec {
        self.update.clone().unwrap_or_default()
    }

    /// The restart block, or its defaults (a batch job's are its own).
    pub fn restart_policy(&self) -> RestartSpec {
        self.restart.clone().unwrap_or_else(|| match self.kind {
            JobKind::Batch => RestartSpec::batch(),
            _ => RestartSpec::default(),
        })
    }

    /// The reschedule block, or its defaults (a batch job's are its own).
    pub fn reschedule_policy(&self) -> RescheduleSpec {
        self.reschedule.clone().unwrap_or_else(|| match self.kind {
            JobKind::Batch => RescheduleSpec::batch(),
            _ => RescheduleSpec::default(),
        })
    }

    /// Sets the replica count.
    pub fn replicas(mut self, n: u32) -> Self {
        self.replicas = n;
        self
    }

    /// Adds a health check.
    pub fn health_check(mut self, check: HealthCheck) -> Self {
        self.task.health_checks.push(check);
        self
    }

    /// Mounts named volume `name` at `target`.
    pub fn volume(mut self, name: impl Into<String>, target: impl Into<String>) -> Self {
        self.task.volumes.push(VolumeMount {
            name: Some(name.into()),
            host_path: None,
            target: target.into(),
            read_only: false,
        });
        self
    }

    /// Mounts secret `name` at `/run/secrets/<name>`, mode 0400.
    pub fn secret(mut self, name: impl Into<String>) -> Self {
        self.task.secrets.push(SecretMount {
            name: name.into(),
            target: None,
            mode: None,
        });
        self
    }

    /// Sets environment variable `var` to the value of secret `name`.
    pub fn env_from_secret(mut self, var: impl Into<String>, name: impl Into<String>) -> Self {
        self.task.env_from_secret.insert(var.into(), name.into());
        self
    }

    /// Places each replica on a different node (or leaves it pending).
    pub fn distinct_hosts(mut self, distinct: bool) -> Self {
        self.distinct_hosts = distinct;
        self
    }

    /// Adds a named TCP port with a dynamic host port.
    pub fn port(mut self, name: impl Into<String>, container_port: u32) -> Self {
        self.task.ports.push(PortSpec {
            name: name.into(),
            container_port,
            host_port: None,
            protocol: Protocol::Tcp,
            lb: None,
        });
        self
    }

    /// Sets the command.
    pub fn command<I, S>(mut self, argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.task.command = argv.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the resources each replica reserves.
    pub fn resources(mut self, cpu: f64, memory_mb: u64) -> Self {
        self.task.resources.cpu = cpu;
        self.task.resources.memory_mb = memory_mb;
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.task.env.insert(key.into(), value.into());
        self
    }

    /// Requires a node tag to equal a value.
    pub fn selector(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.node_selectors.insert(key.into(), value.into());
        self
    }

    /// Parses a document, guessing the format: JSON when it starts with `{`, YAML otherwise.
    pub fn parse(text: &str) -> Result<JobSpec, SpecError> {
        let format = if text.trim_start().starts_with('{') {
            Format::Json
        } else {
            Format::Yaml
        };
        Self::parse_as(text, format)
    }

    /// Parses and validates a document in the given format.
    pub fn parse_as(text: &str, format: Format) -> Result<JobSpec, SpecError> {
        let value: serde_json::Value = match format {
            Format::Json => parse_json_strict(text)
                .map_err(|e| SpecError::one("", format!("malformed JSON: {e}")))?,
            Format::Yaml => parse_yaml_value(text)
                .map_err(|e| SpecError::one("", format!("malformed YAML: {e}")))?,
        };
        Self::from_value(value)
    }

    /// Parses a spec from a JSON value (a document already read) and validates it.
    pub fn from_value(value: serde_json::Value) -> Result<JobSpec, SpecError> {
        if !value.is_object() {
            return Err(SpecError::one("", "a job spec must be a mapping of fields"));
        }
        let spec: JobSpec = serde_path_to_error::deserialize(value).map_err(|e| {
            let field = match e.path().to_string() {
                p if p == "." => String::new(),
                p => p,
            };
            SpecError::one(field, e.into_inner().to_string())
        })?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks every field; returns all problems found, each with its field path.
    pub fn validate(&self) -> Result<(), SpecError> {
        let mut errors = Vec::new();
        let mut err = |field: String, problem: String| errors.push(FieldError { field, problem });
        if let Err(p) = check_dns_label(&self.name) {
            err("name".into(), p);
        }
        if self.kind == JobKind::System && self.update.as_ref().is_some_and(|u| u.canary > 0) {
            err(
                "update.canary".into(),
                "a system job has no canaries: it rolls out node by node".into(),
            );
        }
        if let Some(name) = self.task.service.as_ref().and_then(|s| s.name.as_ref()) {
            if let Err(p) = check_dns_label(name) {
                err("task.service.name".into(), p);
            }
        }
        if let Some(sched) = &self.schedule {
            if self.kind != JobKind::Batch {
                err(
                    "schedule".into(),
                    "only a batch job can be periodic (type: batch)".into(),
                );
            }
            if self.name.len() > MAX_PERIODIC_NAME {
                err(
                    "name".into(),
                    format!(
                        "a periodic job's name is at most {MAX_PERIODIC_NAME} characters: its runs add -periodic-<unix time>"
                    ),
                );
            }
            for (field, problem) in sched.problems("schedule") {
                err(field, problem);
            }
        }
        if is_periodic_child(&self.name) {
            err(
                "name".into(),
                format!("{:?} has the form of a periodic job's run (<name>-periodic-<unix time>), which only the cluster launches", self.name),
            );
        }
        for (i, d) in self.after.iter().enumerate() {
            if let Err(p) = check_dns_label(&d.job) {
                err(format!("after[{i}].job"), p);
            } else if d.job == self.name {
                err(
                    format!("after[{i}].job"),
                    "a job cannot wait for itself".into(),
                );
            }
        }
        if self.parallelism == Some(0) {
            err("parallelism".into(), "must be at least 1".into());
        }
        if self.task.timeout.is_some_and(|t| t.is_zero()) {
            err("task.timeout".into(), "must be more than zero".into());
        }
        if !(1..=100).contains(&self.priority) {
            err(
                "priority".into(),
                format!("{} is not in 1-100", self.priority),
            );
        }
        if self.replicas > MAX_REPLICAS {
            err(
                "replicas".into(),
                format!("{} is more than the limit of {MAX_REPLICAS}", self.replicas),
            );
        }
        let t = &self.task;
        if let Some(script) = &t.script {
            if !t.command.is_empty() {
                err(
                    "task.script".into(),
                    "give a script or a command, not both".into(),
                );
            }
            if script.content.len() > MAX_SCRIPT_BYTES {
                err(
                    "task.script.content".into(),
                    format!(
                        "{} bytes is over the limit of {MAX_SCRIPT_BYTES} (1 MiB)",
                        script.content.len()
                    ),
                );
            }
        }
        for (i, o) in t.outputs.iter().enumerate() {
            if !o.starts_with('/') || o.ends_with('/') || o.split('/').any(|c| c == "..") {
                err(
                    format!("task.outputs[{i}]"),
                    format!("{o:?} must be an absolute path to a file, without `..`"),
                );
            }
        }
        if !t.outputs.is_empty() && self.kind != JobKind::Batch {
            err(
                "task.outputs".into(),
                "only a batch task has outputs: they are read when it completes".into(),
            );
        }
        if let Some(sec) = &t.security {
            for (field, problem) in sec.problems("task.security") {
                err(field, problem);
            }
        }
        if t.image.trim().is_empty() && t.script.is_none() && t.command.is_empty() {
            err(
                "task.image".into(),
                "must not be empty: give an image (Docker nodes), or a command without one (process and ssh nodes), or a script".into(),
            );
        } else if t.image.chars().any(char::is_whitespace) {
            err(
                "task.image".into(),
                format!("{:?} contains white space", t.image),
            );
        }
        for key in t.env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                err(
                    format!("task.env.{key}"),
                    "not a valid variable name".into(),
                );
            }
        }
        let r = &t.resources;
        if !(r.cpu.is_finite() && r.cpu > 0.0) {
            err(
                "task.resources.cpu".into(),
                format!("must be more than zero, got {}", r.cpu),
            );
        }
        if r.memory_mb == 0 {
            err(
                "task.resources.memory_mb".into(),
                "must be more than zero".into(),
            );
        } else if r.memory_mb < MIN_MEMORY_MB {
            err(
                "task.resources.memory_mb".into(),
                format!(
                    "{} is below {MIN_MEMORY_MB}: the engine refuses a smaller memory limit",
                    r.memory_mb
                ),
            );
        }
        if r.cpu.is_finite() && r.cpu > 0.0 && r.cpu < MIN_CPU {
            err(
                "task.resources.cpu".into(),
                format!("{} is below {MIN_CPU} cores: the engine refuses a smaller CPU quota (and near zero runs the task with no limit at all)", r.cpu),
            );
        }
        let mut names = BTreeSet::new();
        let mut fixed = BTreeSet::new();
        for (i, p) in t.ports.iter().enumerate() {
            let at = format!("task.ports[{i}]");
            if let Err(problem) = check_dns_label(&p.name) {
                err(format!("{at}.name"), problem);
            } else if !names.insert(p.name.as_str()) {
                err(
                    format!("{at}.name"),
                    format!("duplicate port name {:?}", p.name),
                );
            }
            if !(1..=65535).contains(&p.container_port) {
                err(
                    format!("{at}.container_port"),
                    format!("{} is out of range 1-65535", p.container_port),
                );
            }
            if let Some(lb) = &p.lb {
                if p.protocol != Protocol::Tcp {
                    err(
                        format!("{at}.lb"),
                        "a load balancer needs protocol tcp".into(),
                    );
                }
                for (field, problem) in lb.problems(&format!("{at}.lb")) {
                    err(field, problem);
                }
                if !fixed.insert((u32::from(lb.port), Protocol::Tcp)) {
                    err(
                        format!("{at}.lb.port"),
                        format!("port {} is used twice", lb.port),
                    );
                }
            }
            if let Some(h) = p.host_port {
                if !(1..=65535).contains(&h) {
                    err(
                        format!("{at}.host_port"),
                        format!("{h} is out of range 1-65535"),
                    );
                } else if !fixed.insert((h, p.protocol)) {
                    err(
                        format!("{at}.host_port"),
                        format!("host port {h} is used twice"),
                    );
                }
            }
        }
        let port_names: Vec<&str> = t.ports.iter().map(|p| p.name.as_str()).collect();
        if let Some(m) = &t.metrics {
            if !port_names.contains(&m.port.as_str()) {
                err(
                    "task.metrics.port".into(),
                    format!("{:?} is not one of the task's ports", m.port),
                );
            }
            if !m.path.starts_with('/') {
                err(
                    "task.metrics.path".into(),
                    format!("{:?} must start with /", m.path),
                );
            }
        }
        if let Some(sc) = &self.scaling {
            if self.kind != JobKind::Service {
                err(
                    "scaling".into(),
                    format!(
                        "only a service job scales (this one is type: {})",
                        self.kind
                    ),
                );
            }
            for (field, problem) in sc.problems("scaling", MAX_REPLICAS) {
                err(field, problem);
            }
            if t.metrics.is_none()
                && sc
                    .metrics()
                    .any(|m| matches!(m, crate::scaling::Metric::Custom(_)))
            {
                err(
                    "task.metrics".into(),
                    "a custom:<name> scaling metric is read from the task's Prometheus endpoint: give task.metrics { port, path }".into(),
                );
            }
        }
        for (i, c) in t.health_checks.iter().enumerate() {
            for (field, problem) in c.problems(&format!("task.health_checks[{i}]"), &port_names) {
                err(field, problem);
            }
        }
        let mut targets = BTreeSet::new();
        for (i, v) in t.volumes.iter().enumerate() {
            let at = format!("task.volumes[{i}]");
            match (&v.name, &v.host_path) {
                (Some(name), None) => {
                    if let Err(p) = check_dns_label(name) {
                        err(format!("{at}.name"), p);
                    }
                }
                (None, Some(path)) => {
                    if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
                        err(
                            format!("{at}.host_path"),
                            format!("{path:?} must be an absolute path without `..`"),
                        );
                    }
                }
                _ => err(at.clone(), "give exactly one of name and host_path".into()),
            }
            if !v.target.starts_with('/') || v.target == "/" {
                err(
                    format!("{at}.target"),
                    format!("{:?} must be an absolute path other than /", v.target),
                );
            } else if !targets.insert(v.target.as_str()) {
                err(
                    format!("{at}.target"),
                    format!("{:?} is mounted twice", v.target),
                );
            }
        }
        let mut taken: BTreeSet<String> = targets.iter().map(|t| t.to_string()).collect();
        for (field, problem) in
            secrets::problems(&t.secrets, &t.env_from_secret, &t.env, &mut taken)
        {
            err(field, problem);
        }
        if let Some(u) = &self.update {
            let replicas = if self.kind == JobKind::System {
                u32::MAX
            } else {
                self.replicas
            };
            for (field, problem) in u.problems("update", replicas) {
                err(field, problem);
            }
        }
        if let Some(r) = &self.restart {
            for (field, problem) in r.problems("restart") {
                err(field, problem);
            }
        }
        if let Some(r) = &self.reschedule {
            for (field, problem) in r.problems("reschedule") {
                err(field, problem);
            }
        }
        for (k, _) in self.node_selectors.iter().filter(|(k, _)| k.is_empty()) {
            err(format!("node_selectors.{k}"), "empty tag key".into());
        }
        for (i, c) in self.constraints.iter().enumerate() {
            let at = format!("constraints[{i}]");
            if c.key.is_empty() {
                err(format!("{at}.key"), "must not be empty".into());
            }
            let n = c.values.len();
            let ok = match c.op {
                ConstraintOp::Eq | ConstraintOp::Ne => n == 1,
                ConstraintOp::Exists | ConstraintOp::NotExists => n == 0,
                ConstraintOp::In | ConstraintOp::NotIn => n >= 1,
            };
            if !ok {
                err(
                    format!("{at}.values"),
                    format!("{n} values do not suit operator {:?}", c.op),
                );
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(SpecError { errors })
        }
    }

    /// Every placement rule on node tags, selectors first.
    pub fn all_constraints(&self) -> Vec<Constraint> {
        self.node_selectors
            .iter()
            .map(|(k, v)| Constraint {
                key: k.clone(),
                op: ConstraintOp::Eq,
                values: vec![v.clone()],
            })
            .chain(self.constraints.iter().cloned())
            .collect()
    }
}

/// Most replicas one job may ask for; past this a typo is likelier than intent.
pub const MAX_REPLICAS: u32 = 100_000;

/// Checks an RFC 1123 label: 1-63 of `a-z`, `0-9`, `-`, starting and ending alphanumeric.
pub fn check_dns_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 63 {
        return Err(format!("{s:?} is longer than 63 characters"));
    }
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if !s.chars().all(ok_char) {
        return Err(format!(
            "{s:?} is not DNS-safe: use lowercase letters, digits and '-'"
        ));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err(format!("{s:?} must start and end with a letter or digit"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB_YAML: &str = r#"
name: web
type: service
replicas: 2
task:
  image: orion-test/web:1
  command: ["httpd", "-f", "-p", "80", "-h", "/www"]
  ports: [{ name: http, container_port: 80 }]
  resources: { cpu: 0.1, memory_mb: 32 }
  env: { GREETING: hi }
node_selectors: { disk: ssd }
"#;

    fn first_error(text: &str) -> FieldError {
        JobSpec::parse(text).unwrap_err().errors.remove(0)
    }

    #[test]
    fn issue_example_parses_from_yaml_and_json_alike() {
        let yaml = JobSpec::parse(WEB_YAML).unwrap();
        assert_eq!(yaml.replicas, 2);
        assert_eq!(yaml.task.ports[0].container_port, 80);
        assert_eq!(yaml.node_selectors["disk"], "ssd");
        let json = serde_json::to_string(&yaml).unwrap();
        assert_eq!(JobSpec::parse(&json).unwrap(), yaml);
    }

    #[test]
    fn unknown_field_is_named_with_its_path() {
        let e = first_error(&WEB_YAML.replace("env:", "envv:"));
        assert_eq!(e.field, "task.envv");
        assert!(e.problem.contains("unknown field `envv`"), "{e}");
    }

    #[test]
    fn malformed_documents_are_refused() {
        assert!(first_error("{ \"name\": ")
            .problem
            .starts_with("malformed JSON"));
        assert!(first_error("name: [web")
            .problem
            .starts_with("malformed YAML"));
        assert!(first_error("- a\n- b\n").problem.contains("mapping"));
    }

    #[test]
    fn bad_values_name_their_fields() {
        let cases = [
            (
                "image: orion-test/web:1\n  command: [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]",
                "image: \"\"",
                "task.image",
            ),
            ("name: web", "name: Web_1", "name"),
            ("cpu: 0.1", "cpu: 0", "task.resources.cpu"),
            ("memory_mb: 32", "memory_mb: 0", "task.resources.memory_mb"),
            ("memory_mb: 32", "memory_mb: -5", "task.resources.memory_mb"),
            (
                "container_port: 80",
                "container_port: 70000",
                "task.ports[0].container_port",
            ),
        ];
        for (from, to, field) in cases {
            let e = first_error(&WEB_YAML.replace(from, to));
            assert_eq!(e.field, field, "{to}: {e}");
        }
    }

    #[test]
    fn duplicate_port_names_are_refused() {
        let text = WEB_YAML.replace(
            "ports: [{ name: http, container_port: 80 }]",
            "ports: [{ name: http, container_port: 80 }, { name: http, container_port: 81 }]",
        );
        let e = first_error(&text);
        assert_eq!(e.field, "task.ports[1].name");
        assert!(e.problem.contains("duplicate"));
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let text = WEB_YAML
            .replace("name: web", "name: -web")
            .replace("cpu: 0.1", "cpu: -1");
        let err = JobSpec::parse(&text).unwrap_err();
        let fields: Vec<_> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "task.resources.cpu"]);
        assert!(err.to_string().starts_with("invalid job spec: name:"));
    }

    #[test]
    fn system_jobs_validate_and_refuse_canaries() {
        let system = WEB_YAML.replace("type: service", "type: system");
        assert!(JobSpec::parse(&system).is_ok());
        let e = first_error(&format!("{system}update: {{ canary: 1 }}\n"));
        assert_eq!(e.field, "update.canary");
        assert!(e.problem.contains("no canaries"), "{e}");
    }

    #[test]
    fn constraints_match_tags() {
        let tags: BTreeMap<String, String> = [("gpu".to_string(), "true".to_string())].into();
        let c = |op, values: &[&str]| Constraint {
            key: "gpu".into(),
            op,
            values: values.iter().map(|s| s.to_string()).collect(),
        };
        assert!(c(ConstraintOp::Eq, &["true"]).matches(&tags));
        assert!(!c(ConstraintOp::Ne, &["true"]).matches(&tags));
        assert!(c(ConstraintOp::Exists, &[]).matches(&tags));
        assert!(!c(ConstraintOp::NotExists, &[]).matches(&tags));
        assert!(c(ConstraintOp::In, &["false", "true"]).matches(&tags));
        assert!(c(ConstraintOp::NotIn, &["false"]).matches(&tags));
        assert!(c(ConstraintOp::Ne, &["x"]).matches(&BTreeMap::new()));
    }
}
