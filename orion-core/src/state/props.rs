//! Properties of the state machine over random command sequences: after every
//! command its invariants hold ([`ClusterState::check_invariants`]), and the
//! same command applied a second time leaves the state as the first left it
//! (`Store::propose` is at-least-once). Every [`Command`] kind is generated.
//!
//! Cases: `ORION_FUZZ_CASES` (default 64 sequences of up to 40 steps).

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::*;
use crate::acl::{AclToken, Scope};
use crate::command::{AllocUpdate, Placement, StopAlloc, Unplaced};
use crate::model::{Health, HealthStatus, NodeRole, PortBinding};
use crate::scaling::{ScaledBy, ScalingMemory, ScalingRecord};
use crate::secret::SecretVersion;
use crate::testing::fixtures::node;
use crate::tls::rotation::CaRecord;

const JOBS: [&str; 4] = ["web", "api", "nightly", "agent"];
const NODES: [&str; 3] = ["n1", "n2", "n3"];

/// One step of a history, in terms of what the state holds when it is
/// taken: allocations, versions and rotations are picked by position or
/// offset from the current ones, so most steps hit something that exists.
#[derive(Clone, Debug)]
enum Step {
    Init(u8),
    Upsert(JobPick),
    UpsertIfUnchanged(JobPick, u8),
    Stop(u8, bool),
    Deployment(u8, u8, u8, bool),
    Revert(u8, Option<u8>, u8),
    PeriodicStart(u64),
    PeriodicTick(u64, bool),
    PeriodicForce(u64),
    PeriodicDue(u64),
    Register(u8, u8, u8),
    NodeStatus(u8, u8, bool),
    Drain(u8, bool),
    RemoveNode(u8),
    Reconcile(u64, u64),
    RawPlan(Vec<RawPlacement>, Vec<u16>, Vec<(u8, u8)>),
    Report(Vec<Report>),
    CreateVolume(u8, u8),
    DeleteVolume(u8),
    ForgetVolume(u8),
    AclBootstrap(u8),
    AclUpsert(u8),
    JoinToken(bool, u8),
    AclRevoke(u8),
    PutSecret(u8, u8, u8),
    DeleteSecret(u8),
    GossipKeyring(u8, u8),
    CaSet(u8, bool, u8),
    CaAdopted(u8, u8),
    CaFinished(u8),
    Scale(u8, u32, bool, u8, u64),
    Batch(Vec<Step>, u64),
}

/// A job spec to submit: which job, which shape, and what varies.
#[derive(Clone, Debug)]
struct JobPick {
    job: u8,
    replicas: u32,
    memory_mb: u64,
    env: u8,
    port: bool,
}

#[derive(Clone, Debug)]
struct RawPlacement {
    job: u8,
    slot: u8,
    node: u8,
    existing: Option<u16>,
    stale: bool,
    port: Option<u16>,
}

#[derive(Clone, Debug)]
struct Report {
    alloc: u16,
    other_node: bool,
    state: u8,
    restarts: Option<u8>,
    failures: Option<u8>,
    exit_code: Option<i8>,
    port: Option<u16>,
    health: Option<u8>,
    deploy_healthy: Option<bool>,
    gave_up: bool,
    at_ms: Option<u64>,
}

fn job_pick() -> impl Strategy<Value = JobPick> {
    (0u8..4, 0u32..4, 1u64..4, 0u8..3, any::<bool>()).prop_map(|(job, replicas, m, env, port)| {
        JobPick {
            job,
            replicas,
            memory_mb: m * 256,
            env,
            port,
        }
    })
}

fn report() -> impl Strategy<Value = Report> {
    (
        (
            any::<u16>(),
            prop::bool::weighted(0.1),
            0u8..8,
            prop::option::of(0u8..4),
            prop::option::of(0u8..4),
        ),
        (
            prop::option::of(any::<i8>()),
            prop::option::of(32000u16..32004),
            prop::option::of(0u8..3),
            prop::option::of(any::<bool>()),
            prop::bool::weighted(0.1),
            prop::option::of(0u64..100_000),
        ),
    )
        .prop_map(
            |(
                (alloc, other_node, state, restarts, failures),
                (exit_code, port, health, deploy_healthy, gave_up, at_ms),
            )| Report {
                alloc,
                other_node,
                state,
                restarts,
                failures,
                exit_code,
                port,
                health,
                deploy_healthy,
                gave_up,
                at_ms,
            },
        )
}

fn raw_placement() -> impl Strategy<Value = RawPlacement> {
    (
        0u8..4,
        0u8..4,
        0u8..4,
        prop::option::of(any::<u16>()),
        prop::bool::weighted(0.2),
        prop::option::of(32000u16..32004),
    )
        .prop_map(|(job, slot, node, existing, stale, port)| RawPlacement {
            job,
            slot,
            node,
            existing,
            stale,
            port,
        })
}

fn leaf() -> impl Strategy<Value = Step> {
    let t = 0u64..600_000;
    prop_oneof![
        1 => (0u8..2).prop_map(Step::Init),
        6 => job_pick().prop_map(Step::Upsert),
        1 => (job_pick(), 0u8..3).prop_map(|(j, s)| Step::UpsertIfUnchanged(j, s)),
        2 => (0u8..4, prop::bool::weighted(0.3)).prop_map(|(j, p)| Step::Stop(j, p)),
        1 => (0u8..4, 0u8..3, 0u8..4, any::<bool>()).prop_map(|(j, d, a, r)| Step::Deployment(j, d, a, r)),
        1 => (0u8..4, prop::option::of(0u8..6), 0u8..3).prop_map(|(j, v, f)| Step::Revert(j, v, f)),
        1 => t.clone().prop_map(Step::PeriodicStart),
        1 => (t.clone(), any::<bool>()).prop_map(|(t, m)| Step::PeriodicTick(t, m)),
        1 => t.clone().prop_map(Step::PeriodicForce),
        2 => t.clone().prop_map(Step::PeriodicDue),
        3 => (0u8..3, 1u8..5, 1u8..5).prop_map(|(n, c, m)| Step::Register(n, c, m)),
        2 => (0u8..3, 0u8..3, any::<bool>()).prop_map(|(n, s, r)| Step::NodeStatus(n, s, r)),
        1 => (0u8..3, any::<bool>()).prop_map(|(n, d)| Step::Drain(n, d)),
        1 => (0u8..4).prop_map(Step::RemoveNode),
        8 => (any::<u64>(), t.clone()).prop_map(|(s, now)| Step::Reconcile(s, now)),
        2 => (
            prop::collection::vec(raw_placement(), 0..4),
            prop::collection::vec(any::<u16>(), 0..3),
            prop::collection::vec((0u8..4, 0u8..4), 0..2),
        )
            .prop_map(|(p, s, u)| Step::RawPlan(p, s, u)),
        8 => prop::collection::vec(report(), 1..4).prop_map(Step::Report),
        1 => (0u8..2, 0u8..4).prop_map(|(v, n)| Step::CreateVolume(v, n)),
        1 => (0u8..2).prop_map(Step::DeleteVolume),
        1 => (0u8..2).prop_map(Step::ForgetVolume),
        1 => (0u8..2).prop_map(Step::AclBootstrap),
        1 => (0u8..3).prop_map(Step::AclUpsert),
        1 => (any::<bool>(), 0u8..2).prop_map(|(r, h)| Step::JoinToken(r, h)),
        1 => (0u8..3).prop_map(Step::AclRevoke),
        1 => (0u8..2, 0u8..3, 0u8..2).prop_map(|(n, v, c)| Step::PutSecret(n, v, c)),
        1 => (0u8..2).prop_map(Step::DeleteSecret),
        1 => (0u8..3, 0u8..2).prop_map(|(v, c)| Step::GossipKeyring(v, c)),
        1 => (0u8..3, any::<bool>(), 0u8..2).prop_map(|(r, f, c)| Step::CaSet(r, f, c)),
        1 => (0u8..4, 0u8..2).prop_map(|(n, r)| Step::CaAdopted(n, r)),
        1 => (0u8..2).prop_map(Step::CaFinished),
        2 => (0u8..4, 0u32..6, any::<bool>(), 0u8..3, t).prop_map(|(j, to, h, f, at)| Step::Scale(j, to, h, f, at)),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        20 => leaf(),
        1 => (prop::collection::vec(leaf(), 1..4), any::<u64>()).prop_map(|(s, id)| Step::Batch(s, id)),
    ]
}

/// The job a pick names, in one of four shapes: a service with a canary
/// update, a service with an autoscaling policy, a periodic batch job, a
/// system job.
fn spec_of(p: &JobPick) -> JobSpec {
    let name = JOBS[p.job as usize % JOBS.len()];
    let port = if p.port {
        "\n  ports: [{name: http, container_port: 80}]"
    } else {
        ""
    };
    let yaml = match p.job % 4 {
        0 => format!(
            "name: {name}\ntype: service\nreplicas: {r}\nupdate: {{canary: 1, max_parallel: 1, auto_revert: true}}\ntask:\n  image: img:{e}\n  resources: {{cpu: 0.5, memory_mb: {m}}}{port}\n",
            r = p.replicas.max(1),
            e = p.env,
            m = p.memory_mb
        ),
        1 => format!(
            "name: {name}\ntype: service\nreplicas: {r}\nscaling:\n  min: 1\n  max: 5\n  policies: [{{step: {{metric: cpu, above: 80, add: 1}}}}]\ntask:\n  image: img:{e}\n  resources: {{cpu: 0.25, memory_mb: {m}}}{port}\n",
            r = p.replicas.max(1),
            e = p.env,
            m = p.memory_mb
        ),
        2 => format!(
            "name: {name}\ntype: batch\nschedule: {{cron: \"*/5 * * * *\", concurrency: {c}}}\ntask:\n  image: img:{e}\n  resources: {{cpu: 0.25, memory_mb: {m}}}\n",
            c = if p.env == 0 { "forbid" } else { "allow" },
            e = p.env,
            m = p.memory_mb
        ),
        _ => format!(
            "name: {name}\ntype: system\ntask:\n  image: img:{e}\n  resources: {{cpu: 0.1, memory_mb: {m}}}{port}\n",
            e = p.env,
            m = p.memory_mb / 4
        ),
    };
    JobSpec::parse(&yaml).unwrap_or_else(|e| panic!("template {yaml}: {e}"))
}

fn pick<T: Clone>(items: &[T], i: u16) -> Option<T> {
    (!items.is_empty()).then(|| items[i as usize % items.len()].clone())
}

fn sealed(version: u64, c: u8) -> SecretVersion {
    SecretVersion {
        version,
        created_ms: 1_000 + version,
        key_id: "k1".into(),
        nonce: "bm9uY2Vub25jZTEy".into(),
        ciphertext: format!("Y2lwaGVy{c}"),
    }
}

fn token(t: u8) -> AclToken {
    AclToken {
        accessor: format!("{t:016x}"),
        name: format!("t{t}"),
        scopes: [Scope::Read].into(),
        created_ms: 1,
        hash: format!("{t:02x}").repeat(32),
    }
}

/// The command a step stands for in state `s`.
fn command(s: &ClusterState, step: &Step) -> Command {
    let job = |j: u8| JOBS[j as usize % JOBS.len()].to_string();
    let node_id = |n: u8| {
        NODES
            .get(n as usize)
            .copied()
            .unwrap_or("ghost")
            .to_string()
    };
    let allocs: Vec<&Allocation> = s.allocs.values().collect();
    match step {
        Step::Init(c) => Command::InitCluster {
            cluster_id: format!("c{c}"),
        },
        Step::Upsert(p) => Command::UpsertJob { spec: spec_of(p) },
        Step::UpsertIfUnchanged(p, stale) => {
            let spec = spec_of(p);
            let now = s.jobs.get(&spec.name).map_or(0, |j| j.modify_index);
            Command::UpsertJobIfUnchanged {
                index: now.saturating_sub(*stale as u64),
                spec,
            }
        }
        Step::Stop(j, purge) => Command::StopJob {
            name: job(*j),
            purge: *purge,
        },
        Step::Deployment(j, d, a, r) => {
            let latest = s
                .deployments
                .get(&job(*j))
                .and_then(|d| d.last())
                .map_or(0, |d| d.id);
            Command::Deployment {
                job: job(*j),
                deployment: latest.saturating_sub(*d as u64),
                action: [
                    DeploymentAction::Promote,
                    DeploymentAction::Pause,
                    DeploymentAction::Resume,
                    DeploymentAction::Fail,
                ][*a as usize % 4],
                reason: r.then(|| "by hand".to_string()),
            }
        }
        Step::Revert(j, v, f) => {
            let current = s.jobs.get(&job(*j)).map_or(0, |j| j.version);
            Command::RevertJob {
                name: job(*j),
                version: v.map(|v| current.saturating_sub(v as u64)),
                // As `Cluster::revert` writes it: the version seen, none
                // only for a job that does not exist (a log written before
                // `from` has none either, and reverts again each time).
                from: match f {
                    1 => Some(current.saturating_sub(1)),
                    _ => s.jobs.get(&job(*j)).map(|j| j.version),
                },
            }
        }
        Step::PeriodicStart(t) => Command::PeriodicStart {
            job: job(2),
            since_ms: *t,
        },
        Step::PeriodicTick(t, missed) => Command::PeriodicTick {
            job: job(2),
            tick_ms: *t,
            missed: *missed,
        },
        Step::PeriodicForce(t) => Command::PeriodicForce {
            job: job(2),
            now_ms: *t,
        },
        Step::PeriodicDue(now) => Command::Batch {
            commands: crate::periodic::due(s, *now),
            id: Some(*now),
        },
        Step::Register(n, c, m) => {
            let mut info = node(&node_id(*n), *c as f64, *m as u64 * 1024);
            info.port_range = (32000, 32003);
            Command::RegisterNode { info }
        }
        Step::NodeStatus(n, st, r) => Command::SetNodeStatus {
            id: node_id(*n),
            status: [NodeStatus::Ready, NodeStatus::Unhealthy, NodeStatus::Down][*st as usize % 3],
            reason: r.then(|| "engine gone".to_string()),
        },
        Step::Drain(n, d) => Command::SetDrain {
            id: node_id(*n),
            draining: *d,
        },
        Step::RemoveNode(n) => Command::RemoveNode { id: node_id(*n) },
        Step::Reconcile(seed, now) => {
            let scheduler = crate::scheduler::FilterScoreScheduler::default();
            Command::ApplyPlan {
                plan: crate::reconcile::plan_at(s, &scheduler, 8, *seed, Some(*now)),
            }
        }
        Step::RawPlan(places, stops, unplaced) => {
            let pending: Vec<&&Allocation> = allocs.iter().filter(|a| a.node.is_none()).collect();
            let slot_of = |j: u8, slot: u8, existing: Option<u16>, stale: bool| {
                let name = job(j);
                let version = s.jobs.get(&name).map_or(1, |j| j.version) + stale as u64;
                SlotRef {
                    existing: existing
                        .and_then(|i| pick(&pending, i))
                        .filter(|a| a.job == name)
                        .map(|a| a.id.clone()),
                    job: name,
                    version,
                    slot: slot as u32,
                    replaces: None,
                    pin: None,
                }
            };
            Command::ApplyPlan {
                plan: Plan {
                    stops: stops
                        .iter()
                        .filter_map(|i| pick(&allocs, *i))
                        .map(|a| StopAlloc {
                            id: a.id.clone(),
                            reason: "by plan".into(),
                        })
                        .collect(),
                    placements: places
                        .iter()
                        .map(|p| Placement {
                            slot: slot_of(p.job, p.slot, p.existing, p.stale),
                            node: node_id(p.node),
                            ports: p.port.map(binding).into_iter().collect(),
                        })
                        .collect(),
                    unplaced: unplaced
                        .iter()
                        .map(|(j, slot)| Unplaced {
                            slot: slot_of(*j, *slot, None, false),
                            reason: "0/3 nodes fit".into(),
                        })
                        .collect(),
                    now_ms: 5_000,
                    job_unplaced: Vec::new(),
                },
            }
        }
        Step::Report(reports) => Command::UpdateAllocs {
            updates: reports
                .iter()
                .filter_map(|r| {
                    let a = pick(&allocs, r.alloc)?;
                    let from = match (&a.node, r.other_node) {
                        (Some(n), false) => n.clone(),
                        _ => "n9".to_string(),
                    };
                    let state = [
                        AllocState::Pending,
                        AllocState::Starting,
                        AllocState::Running,
                        AllocState::Exited,
                        AllocState::Failed,
                        AllocState::Complete,
                        AllocState::Stopped,
                        AllocState::Lost,
                    ][r.state as usize % 8];
                    Some(AllocUpdate {
                        message: (state != AllocState::Running).then(|| format!("{state:?}")),
                        exit_code: r.exit_code.map(i64::from),
                        ports: r.port.map(|p| vec![binding(p)]),
                        health: r.health.map(|h| Health {
                            status: [
                                HealthStatus::Starting,
                                HealthStatus::Healthy,
                                HealthStatus::Unhealthy,
                            ][h as usize % 3],
                            output: None,
                        }),
                        restarts: r.restarts.map(u32::from),
                        failures: r.failures.map(u32::from),
                        deploy_healthy: r.deploy_healthy,
                        gave_up: r.gave_up,
                        at_ms: r.at_ms,
                        ..AllocUpdate::new(a.id.clone(), from, state)
                    })
                })
                .collect(),
        },
        Step::CreateVolume(v, n) => Command::CreateVolume {
            name: format!("vol{v}"),
            node: node_id(*n),
        },
        Step::DeleteVolume(v) => Command::DeleteVolume {
            name: format!("vol{v}"),
        },
        Step::ForgetVolume(v) => Command::ForgetVolume {
            name: format!("vol{v}"),
        },
        Step::AclBootstrap(k) => Command::AclBootstrap {
            key: format!("{k:02x}").repeat(32),
            token: token(0),
            raft_secret: Some("ab".repeat(32)),
        },
        Step::AclUpsert(t) => Command::AclUpsertToken { token: token(*t) },
        Step::JoinToken(manager, h) => Command::JoinTokenSet {
            role: if *manager {
                NodeRole::Manager
            } else {
                NodeRole::Worker
            },
            hash: format!("{h:02x}").repeat(32),
        },
        Step::AclRevoke(t) => Command::AclRevokeToken {
            accessor: format!("{t:016x}"),
        },
        Step::PutSecret(n, v, c) => {
            let name = format!("s{n}");
            let current = s
                .secrets
                .get(&name)
                .and_then(|s| s.versions.last())
                .map_or(0, |v| v.version);
            Command::PutSecret {
                version: sealed((current + 1).saturating_sub(*v as u64), *c),
                name,
            }
        }
        Step::DeleteSecret(n) => Command::DeleteSecret {
            name: format!("s{n}"),
        },
        Step::GossipKeyring(v, c) => {
            let current = s.gossip_keyring.as_ref().map_or(0, |k| k.version);
            Command::GossipKeyringSet {
                sealed: sealed((current + 1).saturating_sub(*v as u64), *c),
            }
        }
        Step::CaSet(r, finished, c) => {
            let next = s.ca.as_ref().map_or(0, |ca| ca.rotation + 1);
            let rotation = next.saturating_sub(*r as u64);
            Command::CaSet {
                record: CaRecord {
                    rotation,
                    roots_pem: format!("roots-{rotation}-{c}"),
                    name: format!("ca-{rotation}"),
                    cert_pem: format!("cert-{rotation}-{c}"),
                    key: sealed(1, *c),
                    cross_pem: (rotation > 0).then(|| "cross".to_string()),
                    adopted: Default::default(),
                    finished: *finished || rotation == 0,
                },
            }
        }
        Step::CaAdopted(n, r) => Command::CaAdopted {
            node: node_id(*n),
            rotation: s
                .ca
                .as_ref()
                .map_or(0, |ca| ca.rotation)
                .saturating_sub(*r as u64),
        },
        Step::CaFinished(r) => Command::CaFinished {
            rotation: s
                .ca
                .as_ref()
                .map_or(0, |ca| ca.rotation)
                .saturating_sub(*r as u64),
        },
        Step::Scale(j, to, by_hand, f, at) => {
            let name = job(*j);
            let from = s
                .jobs
                .get(&name)
                .map_or(0, |j| j.spec.replicas)
                .saturating_sub(*f as u32);
            Command::Scale {
                job: name,
                record: ScalingRecord {
                    at_ms: *at,
                    from,
                    to: *to,
                    reason: "load".into(),
                    by: if *by_hand {
                        ScaledBy::Hand
                    } else {
                        ScaledBy::Policy
                    },
                    inputs: Default::default(),
                    instances: from,
                },
                memory: ScalingMemory {
                    last_change_ms: *at,
                    recommendations: vec![(*at, *to)],
                    manual_until_ms: 0,
                },
            }
        }
        Step::Batch(steps, id) => Command::Batch {
            commands: steps.iter().map(|st| command(s, st)).collect(),
            id: Some(*id),
        },
    }
}

fn binding(port: u16) -> PortBinding {
    PortBinding {
        name: "http".into(),
        container_port: 80,
        host_port: port,
        protocol: Protocol::Tcp,
        host_ip: "127.0.0.1".into(),
    }
}

use crate::testing::fuzz::{cases, normalized};

/// Where two JSON values differ, as `path: once → twice` lines.
fn json_diff(path: &str, a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter()
                .flat_map(|k| {
                    let null = Value::Null;
                    json_diff(
                        &format!("{path}.{k}"),
                        x.get(k).unwrap_or(&null),
                        y.get(k).unwrap_or(&null),
                    )
                })
                .collect()
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .flat_map(|(i, (x, y))| json_diff(&format!("{path}[{i}]"), x, y))
            .collect(),
        _ if a == b => Vec::new(),
        _ => vec![format!("{path}: {a} → {b}")],
    }
}

/// Runs a history: each step's command applied once (checking the
/// invariants), and to a copy a second time (checking nothing changed).
fn run(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut s = ClusterState::default();
    let mut index = 0;
    for step in steps {
        let cmd = command(&s, step);
        index += 1;
        s.apply(index, &cmd);
        if let Err(broken) = s.check_invariants() {
            return Err(TestCaseError::fail(format!("after {cmd:?}: {broken}")));
        }
        let once = normalized(&s);
        let mut twice = s.clone();
        twice.apply(index + 1, &cmd);
        let again = normalized(&twice);
        if again != once {
            return Err(TestCaseError::fail(format!(
                "applied twice differs from once: {cmd:?}\n{}",
                json_diff("", &once, &again).join("\n")
            )));
        }
        index += 1;
    }
    let restored = ClusterState::from_snapshot(&s.to_snapshot()).unwrap();
    restored
        .check_invariants()
        .map_err(|e| TestCaseError::fail(format!("restored snapshot: {e}")))?;
    prop_assert_eq!(normalized(&restored), normalized(&s));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(64),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any command sequence keeps the indexes consistent with the maps, and
    /// every command applied twice is applied once.
    #[test]
    fn any_history_keeps_invariants_and_every_command_is_idempotent(
        steps in prop::collection::vec(step(), 1..40)
    ) {
        run(&steps)?;
    }
}
