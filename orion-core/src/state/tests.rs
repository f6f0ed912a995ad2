//! The state machine applied directly: versions, plan re-checks, node loss,
//! reports, garbage collection and snapshots.

use super::*;
use crate::command::{AllocUpdate, Placement, Plan, Refusal, Response, SlotRef, StopAlloc};
use crate::model::{AllocState, NodeStatus, PortBinding};
use crate::testing::fixtures::{job, node, StateBuilder};

fn slot(job: &str, version: u64, slot: u32) -> SlotRef {
    SlotRef {
        job: job.into(),
        version,
        slot,
        existing: None,
        replaces: None,
        pin: None,
    }
}

fn place(job: &str, version: u64, s: u32, node: &str) -> Placement {
    Placement {
        slot: slot(job, version, s),
        node: node.into(),
        ports: Vec::new(),
    }
}

fn plan(placements: Vec<Placement>) -> Command {
    Command::ApplyPlan {
        plan: Plan {
            placements,
            ..Plan::default()
        },
    }
}

fn refused(r: &Response) -> Vec<String> {
    match r {
        Response::Plan { refused, .. } => refused.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn same_spec_is_idempotent_and_a_change_is_a_new_version() {
    let mut b = StateBuilder::new();
    let spec = job("web", 2, 0.5, 256);
    let r1 = b.apply(Command::UpsertJob { spec: spec.clone() });
    let r2 = b.apply(Command::UpsertJob { spec: spec.clone() });
    let r3 = b.apply(Command::UpsertJob {
        spec: spec.replicas(3),
    });
    let v = |r: Response| match r {
        Response::Job {
            version, changed, ..
        } => (version, changed),
        other => panic!("{other:?}"),
    };
    assert_eq!([v(r1), v(r2), v(r3)], [(1, true), (1, false), (2, true)]);
}

#[test]
fn a_committed_spec_applies_whatever_todays_validation_says() {
    // Validation happens where a spec is submitted (`Cluster::submit`, the API);
    // a spec already in the log applies as it is, so replaying an old log gives
    // the same state under a binary with stricter rules.
    let mut b = StateBuilder::new();
    let mut spec = job("web", 1, 0.5, 256);
    spec.task.image.clear();
    assert!(spec.validate().is_err());
    assert!(matches!(
        b.apply(Command::UpsertJob { spec }),
        Response::Job { version: 1, .. }
    ));
    assert_eq!(b.state().jobs.len(), 1);
}

#[test]
fn plans_that_over_commit_or_duplicate_are_refused_in_part() {
    let mut b = StateBuilder::new()
        .node(node("n1", 1.0, 512))
        .job(job("web", 3, 0.5, 256));
    let r = b.apply(plan(vec![
        place("web", 1, 0, "n1"),
        place("web", 1, 0, "n1"),
        place("web", 1, 1, "n1"),
        place("web", 1, 2, "n1"),
        place("web", 9, 2, "n1"),
        place("web", 1, 2, "ghost"),
    ]));
    let why = refused(&r);
    assert_eq!(why.len(), 4, "{why:?}");
    assert!(why[0].contains("slot is already filled"));
    assert!(why[1].contains("not enough free resources"));
    assert!(why[2].contains("plan for version 9"));
    assert!(why[3].contains("node is gone"));
    let usage = b.state().usage("n1");
    assert_eq!((usage.used.memory_mb, usage.per_job["web"]), (512, 2));
}

#[test]
fn a_taken_port_refuses_the_placement() {
    let mut b = StateBuilder::new()
        .node(node("n1", 4.0, 4096))
        .job(job("web", 2, 0.1, 64));
    let port = PortBinding {
        name: "http".into(),
        container_port: 80,
        host_port: 32000,
        protocol: crate::spec::Protocol::Tcp,
        host_ip: "127.0.0.1".into(),
    };
    let mut a = place("web", 1, 0, "n1");
    a.ports = vec![port.clone()];
    let mut c = place("web", 1, 1, "n1");
    c.ports = vec![port];
    let why = refused(&b.apply(plan(vec![a, c])));
    assert_eq!(why, ["web[1]: port 32000 taken on node n1"]);
}

#[test]
fn a_down_node_loses_its_allocations_and_frees_its_resources() {
    let mut b = StateBuilder::new()
        .node(node("n1", 4.0, 4096))
        .job(job("web", 1, 0.5, 256));
    b.apply(plan(vec![place("web", 1, 0, "n1")]));
    b.apply(Command::SetNodeStatus {
        id: "n1".into(),
        status: NodeStatus::Down,
        reason: None,
    });
    let a = b.state().allocs.values().next().unwrap().clone();
    assert_eq!(a.state, AllocState::Lost);
    assert_eq!(b.state().usage("n1").used, Resources::ZERO);
    // A late report from the dead node does not resurrect it.
    b.apply(Command::UpdateAllocs {
        updates: vec![AllocUpdate::new(a.id.clone(), "n1", AllocState::Running)],
    });
    assert_eq!(b.state().allocs[&a.id].state, AllocState::Lost);
}

#[test]
fn reports_from_another_node_are_ignored() {
    let mut b = StateBuilder::new()
        .node(node("n1", 4.0, 4096))
        .job(job("web", 1, 0.5, 256));
    b.apply(plan(vec![place("web", 1, 0, "n1")]));
    let id = b.state().allocs.keys().next().unwrap().clone();
    let r = b.apply(Command::UpdateAllocs {
        updates: vec![AllocUpdate::new(id.clone(), "n2", AllocState::Running)],
    });
    assert_eq!(r, Response::Updated { applied: 0 });
    assert_eq!(b.state().allocs[&id].state, AllocState::Starting);
}

#[test]
fn terminal_allocations_are_collected_beyond_the_kept_count() {
    let mut b = StateBuilder::new()
        .node(node("n1", 64.0, 65_536))
        .job(job("web", 1, 0.1, 64));
    for round in 0..(KEPT_TERMINAL_PER_JOB + 5) {
        b.apply(plan(vec![place("web", 1, 0, "n1")]));
        let live = b
            .state()
            .allocs
            .values()
            .find(|a| a.is_live())
            .unwrap()
            .id
            .clone();
        b.apply(Command::ApplyPlan {
            plan: Plan {
                stops: vec![StopAlloc {
                    id: live.clone(),
                    reason: format!("round {round}"),
                }],
                ..Plan::default()
            },
        });
        b.apply(Command::UpdateAllocs {
            updates: vec![AllocUpdate::new(live, "n1", AllocState::Stopped)],
        });
    }
    assert_eq!(b.state().allocs.len(), KEPT_TERMINAL_PER_JOB);
}

#[test]
fn a_snapshot_round_trip_keeps_everything_and_rebuilds_indexes() {
    let mut b = StateBuilder::new()
        .node(node("n1", 4.0, 4096))
        .job(job("web", 2, 0.5, 256));
    b.apply(plan(vec![
        place("web", 1, 0, "n1"),
        place("web", 1, 1, "n1"),
    ]));
    let s = b.build();
    let restored = ClusterState::from_snapshot(&s.to_snapshot()).unwrap();
    assert_eq!(restored.to_snapshot(), s.to_snapshot());
    assert_eq!(restored.usage("n1"), s.usage("n1"));
    assert_eq!(restored.allocs_on_node("n1").count(), 2);
    assert_eq!(restored.allocs_of_job("web").count(), 2);
}

#[test]
fn purging_a_job_forgets_it_and_its_allocations() {
    let mut b = StateBuilder::new()
        .node(node("n1", 4.0, 4096))
        .job(job("web", 1, 0.5, 256));
    b.apply(plan(vec![place("web", 1, 0, "n1")]));
    b.apply(Command::StopJob {
        name: "web".into(),
        purge: true,
    });
    assert!(b.state().jobs.is_empty() && b.state().allocs.is_empty());
    assert_eq!(b.state().usage("n1").used, Resources::ZERO);
    let r = b.apply(Command::StopJob {
        name: "web".into(),
        purge: false,
    });
    assert!(matches!(r, Response::Refused { .. }));
}

/// A volume lives on one node: created once (again is a no-op, elsewhere is
/// refused), deleted only when no running job mounts it, then marked deleting
/// until its node forgets it; snapshots keep volumes.
#[test]
fn volumes_are_created_refused_in_use_and_forgotten_by_their_node() {
    let mut b = StateBuilder::new()
        .node(node("n1", 2.0, 1024))
        .node(node("n2", 2.0, 1024));
    let create = |node: &str| Command::CreateVolume {
        name: "data".into(),
        node: node.into(),
    };
    assert_eq!(b.apply(create("n1")), Response::Done);
    assert_eq!(b.apply(create("n1")), Response::Done, "the same again");
    let r = b.apply(create("n2"));
    assert!(
        matches!(&r, Response::Refused { reason, .. } if reason.contains("already exists on node n1")),
        "{r:?}"
    );
    let r = b.apply(Command::CreateVolume {
        name: "x".into(),
        node: "ghost".into(),
    });
    assert!(matches!(r, Response::Refused { .. }));

    b = b.job(job("db", 1, 0.5, 128).volume("data", "/var/lib/db"));
    let r = b.apply(Command::DeleteVolume {
        name: "data".into(),
    });
    assert!(
        matches!(&r, Response::Refused { reason, .. } if reason.contains("mounted by job db")),
        "{r:?}"
    );
    b.apply(Command::StopJob {
        name: "db".into(),
        purge: false,
    });
    assert_eq!(
        b.apply(Command::DeleteVolume {
            name: "data".into()
        }),
        Response::Done
    );
    assert_eq!(
        b.state().volumes["data"].state,
        crate::model::VolumeState::Deleting
    );
    let r = b.apply(create("n1"));
    assert!(
        matches!(&r, Response::Refused { reason, .. } if reason.contains("being deleted")),
        "{r:?}"
    );

    let snap = ClusterState::from_snapshot(&b.state().to_snapshot()).unwrap();
    assert_eq!(snap.volumes, b.state().volumes);
    b.apply(Command::ForgetVolume {
        name: "data".into(),
    });
    assert!(b.state().volumes.is_empty());
    let r = b.apply(Command::DeleteVolume {
        name: "data".into(),
    });
    assert!(
        matches!(
            &r,
            Response::Refused {
                refusal: Refusal::UnknownVolume,
                ..
            }
        ),
        "{r:?}"
    );
}

/// A change that needs no new container is made in place: scaling moves the
/// live allocations to the new version (same ids, nodes, ports); a change to
/// the task does not.
#[test]
fn a_replica_count_change_keeps_the_running_allocations() {
    let mut b = StateBuilder::new()
        .node(node("n1", 4.0, 4096))
        .job(job("web", 2, 0.5, 256));
    b.apply(plan(vec![
        place("web", 1, 0, "n1"),
        place("web", 1, 1, "n1"),
    ]));
    let before: Vec<(String, Option<String>)> = b
        .state()
        .allocs_of_job("web")
        .map(|a| (a.id.clone(), a.node.clone()))
        .collect();
    let r = b.apply(Command::UpsertJob {
        spec: job("web", 4, 0.5, 256),
    });
    assert!(
        matches!(
            r,
            Response::Job {
                version: 2,
                changed: true,
                ..
            }
        ),
        "{r:?}"
    );
    let after: Vec<(String, Option<String>, u64)> = b
        .state()
        .allocs_of_job("web")
        .map(|a| (a.id.clone(), a.node.clone(), a.job_version))
        .collect();
    assert_eq!(
        after.len(),
        2,
        "nothing new until the reconciler places slots 2 and 3"
    );
    for ((id, node), (id2, node2, v)) in before.iter().zip(&after) {
        assert_eq!((id, node, *v), (id2, node2, 2), "in place");
    }
    let mut changed = job("web", 4, 0.5, 256);
    changed.task.env.insert("V".into(), "2".into());
    b.apply(Command::UpsertJob { spec: changed });
    assert!(
        b.state().allocs_of_job("web").all(|a| a.job_version == 2),
        "a task change leaves them on the old version, to be replaced"
    );
}

/// The snapshot as JSON without the indexes a second commit moves (the applied
/// index, each allocation's modify index): what "the same state" means for a
/// command delivered twice.
fn normalized(s: &ClusterState) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("modify_index");
                m.remove("applied_index");
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v: serde_json::Value = serde_json::from_slice(&s.to_snapshot()).unwrap();
    strip(&mut v);
    v
}

/// `Store::propose` may commit a command twice (a retry after a timeout or a
/// leader change): every command kind applied a second time leaves the state
/// as the first application left it.
#[test]
fn every_command_applied_twice_is_applied_once() {
    let mut b = StateBuilder::new()
        .node(node("n1", 4.0, 4096))
        .node(node("n2", 4.0, 4096))
        .job(job("web", 2, 0.5, 256));
    b.apply(plan(vec![place("web", 1, 0, "n1")]));
    let a0 = b.state().allocs_of_job("web").next().unwrap().clone();
    let report = |u: AllocUpdate| Command::UpdateAllocs { updates: vec![u] };
    let commands = vec![
        Command::InitCluster {
            cluster_id: "c1".into(),
        },
        Command::UpsertJob {
            spec: job("api", 1, 0.5, 128),
        },
        Command::UpsertJob {
            spec: job("web", 3, 0.5, 256),
        },
        Command::UpsertJobIfUnchanged {
            spec: job("web", 3, 0.5, 128),
            index: 3,
        },
        Command::RegisterNode {
            info: node("n3", 2.0, 2048),
        },
        Command::SetNodeStatus {
            id: "n3".into(),
            status: NodeStatus::Unhealthy,
            reason: Some("engine gone".into()),
        },
        Command::SetDrain {
            id: "n2".into(),
            draining: true,
        },
        plan(vec![place("web", 2, 1, "n1"), place("api", 1, 0, "n1")]),
        report(AllocUpdate {
            ports: Some(Vec::new()),
            ..AllocUpdate::new(a0.id.clone(), "n1", AllocState::Running)
        }),
        report(AllocUpdate {
            restarts: Some(a0.restarts + 1),
            exit_code: Some(1),
            ..AllocUpdate::new(a0.id.clone(), "n1", AllocState::Running)
        }),
        report(AllocUpdate {
            failures: Some(1),
            message: Some("start failed".into()),
            ..AllocUpdate::new(a0.id.clone(), "n1", AllocState::Failed)
        }),
        report(AllocUpdate {
            gave_up: true,
            at_ms: Some(1_000),
            deploy_healthy: Some(false),
            message: Some("restarts spent".into()),
            ..AllocUpdate::new(a0.id.clone(), "n1", AllocState::Failed)
        }),
        Command::Deployment {
            job: "web".into(),
            deployment: 1,
            action: crate::state::DeploymentAction::Pause,
            reason: None,
        },
        Command::RevertJob {
            name: "web".into(),
            version: Some(1),
            from: Some(4),
        },
        Command::CreateVolume {
            name: "data".into(),
            node: "n1".into(),
        },
        Command::DeleteVolume {
            name: "data".into(),
        },
        Command::ForgetVolume {
            name: "data".into(),
        },
        Command::StopJob {
            name: "api".into(),
            purge: false,
        },
        Command::StopJob {
            name: "api".into(),
            purge: true,
        },
        Command::RemoveNode { id: "n3".into() },
        {
            let key = crate::acl::new_key();
            let (token, _) =
                crate::acl::new_token(&key, "bootstrap", [crate::acl::Scope::Management].into(), 1)
                    .unwrap();
            Command::AclBootstrap {
                key,
                token,
                raft_secret: Some(crate::acl::new_key()),
            }
        },
        Command::AclUpsertToken {
            token: crate::acl::AclToken {
                accessor: "00000000000000aa".into(),
                name: "ci".into(),
                scopes: [crate::acl::Scope::Read].into(),
                created_ms: 2,
                hash: "ab".repeat(32),
            },
        },
        Command::AclRevokeToken {
            accessor: "00000000000000aa".into(),
        },
        Command::Batch {
            commands: vec![
                Command::UpsertJob {
                    spec: job("batch-a", 1, 0.5, 64),
                },
                Command::SetDrain {
                    id: "n2".into(),
                    draining: false,
                },
            ],
            id: Some(7),
        },
    ];
    for cmd in commands {
        b.apply(cmd.clone());
        let once = normalized(b.state());
        b.apply(cmd.clone());
        assert_eq!(normalized(b.state()), once, "applied twice: {cmd:?}");
    }
    let a = &b.state().allocs[a0.id.as_str()];
    assert_eq!((a.restarts, a.failures), (1, 1), "counted once each");
}

/// Found by the apply-twice property: a batch of a submit and a stop of one
/// job, committed twice (the store retries a proposal whose leader was
/// deposed mid-write), started the stopped job again and stopped it again
/// (two versions more and a deployment). A batch now carries an id and is
/// applied once, the second commit answered as the first.
#[test]
fn a_batch_committed_twice_is_applied_once() {
    let mut b = StateBuilder::new().node(node("n1", 4.0, 4096));
    let batch = Command::Batch {
        commands: vec![
            Command::UpsertJob {
                spec: job("agent", 1, 0.1, 64),
            },
            Command::StopJob {
                name: "agent".into(),
                purge: false,
            },
        ],
        id: Some(42),
    };
    let first = b.apply(batch.clone());
    let once = normalized(b.state());
    let second = b.apply(batch);
    assert_eq!(normalized(b.state()), once);
    assert_eq!(second, first, "answered as the first time");
    assert_eq!(b.state().jobs["agent"].version, 2);
}

/// Found by the apply-twice property: a forced run of a periodic job whose
/// concurrency is `forbid`, refused while a run is live, recorded the
/// skipped tick again each time the same command was committed.
#[test]
fn a_refused_forced_run_committed_twice_is_skipped_once() {
    let spec = JobSpec::parse(
        "name: nightly\ntype: batch\nschedule: {cron: \"*/5 * * * *\", concurrency: forbid}\ntask: {image: img}\n",
    )
    .unwrap();
    let mut b = StateBuilder::new().job(spec);
    b.apply(Command::PeriodicTick {
        job: "nightly".into(),
        tick_ms: 1,
        missed: false,
    });
    let force = Command::PeriodicForce {
        job: "nightly".into(),
        now_ms: 2,
    };
    b.apply(force.clone());
    let once = normalized(b.state());
    b.apply(force);
    assert_eq!(normalized(b.state()), once);
    assert_eq!(b.state().periodic["nightly"].skipped.len(), 1);
}

/// Found by the apply-twice property: one agent pass may report an
/// allocation twice in one command (launched, then judged); committed twice,
/// the older report applied again over the newer one and gave the
/// allocation finish and start times it never had. The reports of one
/// allocation are folded into one, as applying them in order leaves it.
#[test]
fn two_reports_of_one_allocation_in_a_command_committed_twice_apply_once() {
    let mut b = StateBuilder::new()
        .node(node("n1", 4.0, 4096))
        .job(job("web", 1, 0.5, 256));
    b.apply(plan(vec![place("web", 1, 0, "n1")]));
    let id = b.state().allocs.keys().next().unwrap().clone();
    let reports = Command::UpdateAllocs {
        updates: vec![
            AllocUpdate {
                at_ms: Some(100),
                ..AllocUpdate::new(id.clone(), "n1", AllocState::Running)
            },
            AllocUpdate {
                gave_up: true,
                message: Some("restarts spent".into()),
                ..AllocUpdate::new(id.clone(), "n1", AllocState::Starting)
            },
        ],
    };
    b.apply(reports.clone());
    let once = normalized(b.state());
    let a = &b.state().allocs[id.as_str()];
    assert_eq!((a.state, a.gave_up), (AllocState::Starting, true));
    assert_eq!((a.started_ms, a.finished_ms), (Some(100), Some(100)));
    b.apply(reports);
    assert_eq!(normalized(b.state()), once);
}

/// Folding keeps what applying in order gave: a running report then an
/// exit keeps the start time, the exit code and the failures the running
/// report cleared.
#[test]
fn reports_of_one_allocation_fold_as_applied_in_order() {
    let mut b = StateBuilder::new()
        .node(node("n1", 4.0, 4096))
        .job(job("web", 1, 0.5, 256));
    b.apply(plan(vec![place("web", 1, 0, "n1")]));
    let id = b.state().allocs.keys().next().unwrap().clone();
    b.apply(Command::UpdateAllocs {
        updates: vec![AllocUpdate {
            failures: Some(2),
            ..AllocUpdate::new(id.clone(), "n1", AllocState::Failed)
        }],
    });
    b.apply(Command::UpdateAllocs {
        updates: vec![
            AllocUpdate {
                at_ms: Some(100),
                ..AllocUpdate::new(id.clone(), "n1", AllocState::Running)
            },
            AllocUpdate {
                exit_code: Some(3),
                message: Some("exited".into()),
                ..AllocUpdate::new(id.clone(), "n1", AllocState::Exited)
            },
        ],
    });
    let a = &b.state().allocs[id.as_str()];
    assert_eq!(a.state, AllocState::Exited);
    assert_eq!(
        (a.started_ms, a.exit_code, a.failures),
        (Some(100), Some(3), 0)
    );
}
