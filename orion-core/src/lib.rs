//! Orion's core: the domain model, the four seams, the scheduler, the reconciler,
//! the control loops, the [`Cluster`] builder and the HTTP API.
//!
//! This crate knows no adapter. Docker, openraft and chitchat live in
//! `orion-runtime`, `orion-store` and `orion-gossip`, which depend on it.
//!
//! # Layout
//!
//! - [`spec`]: the job spec (health checks, volumes, and the `update`,
//!   `restart` and `reschedule` policies included), parsing (JSON, YAML, many
//!   documents at once, Compose files) and validation.
//! - [`model`]: nodes, jobs as stored, allocations.
//! - [`command`]: the commands the store replicates, and plans.
//! - [`state`]: the deterministic state machine that applies them, job
//!   versions and deployments included.
//! - [`tls`]: the cluster CA, node certificates, mutual TLS and join tokens.
//! - [`replica`]: the state machine as stores share it, with change notifications.
//! - [`secret`]: secrets sealed under the cluster's data key (AES-256-GCM),
//!   and the value-in-clear type that never prints.
//! - [`at_rest`]: autolock: the unlock key and node-private files sealed
//!   under it.
//! - Seams: [`runtime`] (`Runtime`), [`store`] (`Store`), [`membership`]
//!   (`Membership`), [`scheduler`] (`Scheduler`).
//! - [`reconcile`]: the pure reconciler (desired vs observed → plan).
//! - [`catalog`]: services and their instances, read off the allocations.
//! - [`metrics`]: the node's Prometheus registry (`GET /metrics`); [`events`]:
//!   the event stream (`GET /v1/events`).
//! - Loops: [`agent`] (every node: drive the runtime, probe health, restart
//!   under the restart policy, judge deployments, remove deleted volumes),
//!   [`control`] (the leader: liveness, reconciliation, progress deadlines).
//! - [`cluster`]: the [`Cluster`] handle and its builder, waiting and dry runs
//!   (`plan_job`); [`api`]: the HTTP API and its OpenAPI document.
//! - [`testing`] (feature `testing`): fakes of the seams.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod acl;
pub mod agent;
pub mod api;
pub mod at_rest;
pub mod batching;
pub mod catalog;
pub mod cluster;
pub mod command;
pub mod control;
pub mod dns;
pub mod events;
pub mod gossip_keys;
pub mod lb;
pub mod liveness;
pub mod membership;
pub mod metered;
pub mod metrics;
pub mod model;
pub mod periodic;
pub mod reconcile;
pub mod replica;
pub mod runtime;
pub mod scaling;
pub mod scheduler;
pub mod secret;
pub mod serve;
pub mod spec;
pub mod state;
pub mod store;
pub mod tls;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use agent::AgentConfig;
pub use cluster::{
    Cluster, ClusterBuilder, ClusterConfig, ClusterError, JobPlan, JobView, NodeProfile, NodeView,
    ScalingView, Submitted,
};
pub use command::{
    AllocUpdate, Command, Placement, Plan, Refusal, Response, SlotRef, StopAlloc, Unplaced,
};
pub use control::ControlConfig;
pub use membership::{Member, Membership, MembershipError, MembershipEvent, SoloMembership};
pub use model::{
    AllocId, AllocState, Allocation, DesiredState, Health, HealthStatus, Job, JobHealth, JobStatus,
    Node, NodeAddrs, NodeId, NodeInfo, NodeRole, NodeStatus, PortBinding,
};
pub use replica::{ChangeBatch, Replica};
pub use runtime::{ContainerInfo, ContainerState, Owner, Runtime, RuntimeError, TaskLaunch};
pub use scheduler::{FilterScoreScheduler, Scheduler, SchedulerConfig};
pub use spec::{
    Constraint, ConstraintOp, JobKind, JobSpec, PortSpec, Protocol, Resources, SpecError, Strategy,
    TaskSpec,
};
pub use state::{Change, ClusterState};
pub use store::{Applied, Leadership, Peer, SnapshotStatus, Store, StoreError, StoreStatus};
