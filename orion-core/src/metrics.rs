//! Prometheus metrics of one node, in its own registry (no global recorder:
//! Orion is embedded in programs that may have their own). Counters and
//! histograms are bumped where things happen (the API, the control loop);
//! gauges of cluster state are read off the node's replica at each scrape.
//! `GET /metrics` serves them in the Prometheus text format;
//! [`crate::Cluster::metrics`] hands the registry to a host that merges it.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::state::ClusterState;

/// Labels of an API request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route's pattern (`/v1/jobs/{name}`).
    pub route: String,
    /// The method.
    pub method: String,
    /// The status code.
    pub status: u16,
}

/// Labels of a route's latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteOnly {
    /// The route's pattern.
    pub route: String,
}

/// One label naming a Raft peer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabel {
    /// The peer's node id.
    pub peer: String,
}

/// One label naming a kind of thing.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The kind.
    pub kind: String,
}

/// One label naming a state or status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// The state.
    pub state: String,
}

/// Labels of a load-balanced request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LbLabels {
    /// The service.
    pub service: String,
    /// `ok`, `5xx`, `error`, `reset`, `connect_failed`, `no_backend`,
    /// `rate_limited` or `breaker_open`.
    pub outcome: String,
}

/// One label naming a service.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabel {
    /// The service.
    pub service: String,
}

/// Labels of one task's series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    /// The job.
    pub job: String,
    /// The allocation.
    pub alloc: String,
    /// The node that runs it.
    pub node: String,
}

/// Labels of a runtime operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    /// The operation (`create`, `start`, `ensure_image`, …).
    pub op: String,
    /// `ok` or `error`.
    pub outcome: String,
}

/// One label naming a runtime operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpOnly {
    /// The operation.
    pub op: String,
}

/// One label naming an outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// The outcome.
    pub outcome: String,
}

/// Labels of this node's allocations.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateHealthLabels {
    /// The allocation's state.
    pub state: String,
    /// Its health (`none` without checks).
    pub health: String,
}

/// One label naming why.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// The reason's class.
    pub reason: String,
}

/// The class of a scheduler's explanation (`"0/3 nodes: 3 insufficient
/// memory"` → `memory`), so the label set stays small: the first reason it
/// names, of `no_nodes`, `cpu`, `memory`, `disk`, `ports`, `selector`,
/// `distinct_hosts`, `volume`, `host_path`, `secret`, `node_not_ready`,
/// `contention`, else `other`.
pub fn unplaced_reason(explanation: &str) -> &'static str {
    const CLASSES: [(&str, &str); 14] = [
        ("no nodes", "no_nodes"),
        ("insufficient cpu", "cpu"),
        ("insufficient memory", "memory"),
        ("insufficient disk", "disk"),
        ("port", "ports"),
        ("selector", "selector"),
        ("distinct hosts", "distinct_hosts"),
        ("volume", "volume"),
        ("host path", "host_path"),
        ("secret", "secret"),
        ("data key", "secret"),
        ("node draining", "node_not_ready"),
        ("node down", "node_not_ready"),
        ("node ", "node_not_ready"),
    ];
    if explanation.contains("taken by other tasks") {
        return "contention";
    }
    let (_, after) = explanation.split_once(": ").unwrap_or(("", explanation));
    CLASSES
        .iter()
        .filter_map(|(k, class)| after.find(k).map(|at| (at, *class)))
        .min_by_key(|(at, _)| *at)
        .map_or("other", |(_, c)| c)
}

/// A counter of seconds or bytes that can grow by fractions.
type FloatCounter = Counter<f64, std::sync::atomic::AtomicU64>;

/// A node's metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// API requests by route, method and status.
    pub api_requests: Family<RouteLabels, Counter>,
    /// API latency by route.
    pub api_latency: Family<RouteOnly, Histogram>,
    /// Placements the leader committed.
    pub placements: Counter,
    /// Slots the scheduler could not place, per pass, by reason (see
    /// [`unplaced_reason`]).
    pub unplaced: Family<ReasonLabel, Counter>,
    /// How long a reconcile-and-schedule pass took.
    pub plan_seconds: Histogram,
    /// Connections (tcp) or requests (http) through this node's load
    /// balancer, by service and outcome.
    pub lb_requests: Family<LbLabels, Counter>,
    /// How long they took (a whole connection in tcp mode; to the answer's
    /// head in http mode), by service.
    pub lb_duration: Family<ServiceLabel, Histogram>,
    /// Connections or requests open through the balancer, by service.
    pub lb_active: Family<ServiceLabel, Gauge>,
    /// Commands proposed through this node, by outcome (`ok`, `no_leader`,
    /// `timeout`, `error`).
    pub store_proposals: Family<OutcomeLabel, Counter>,
    /// Time from proposing an entry to its commit.
    pub store_commit_seconds: Histogram,
    /// Commands per committed entry (group commit).
    pub store_batch_size: Histogram,
    /// Leader changes this node saw.
    pub store_leader_changes: Counter,
    /// The Raft term (read at scrape).
    store_term: Gauge,
    /// 1 when this node leads (read at scrape).
    store_is_leader: Gauge,
    /// Runtime operations by operation and outcome.
    pub runtime_ops: Family<OpLabels, Counter>,
    /// Runtime operation latency by operation.
    pub runtime_op_seconds: Family<OpOnly, Histogram>,
    /// Tasks the agent restarted in place.
    pub agent_restarts: Counter,
    /// Health probes the agent ran, by outcome (`pass`, `fail`).
    pub agent_probes: Family<OutcomeLabel, Counter>,
    /// This node's allocations by state and health (read at scrape).
    node_allocations: Family<StateHealthLabels, Gauge>,
    /// Members by gossip state (`live`, `dead`; read at scrape).
    gossip_members: Family<StateLabel, Gauge>,
    /// Nodes this node, leading, marked down.
    pub failure_detections: Counter,
    /// Control-loop passes by outcome: `follower` (not the leader), `quorum_lost`
    /// (the store heard from no majority), `unconfirmed` (no quorum confirmed
    /// the leadership), `acted` (liveness, reconcile and the rest ran).
    pub control_passes: Family<OutcomeLabel, Counter>,
    /// Agent passes that reached the runtime (listed its containers and
    /// brought them toward the committed allocations).
    pub agent_passes: Counter,
    /// CPU time of each task of this node, from the agent's samples.
    task_cpu: Family<TaskLabels, FloatCounter>,
    /// Memory in use by each task.
    task_memory: Family<TaskLabels, Gauge>,
    /// Bytes received by each task.
    task_rx: Family<TaskLabels, Counter>,
    /// Bytes sent by each task.
    task_tx: Family<TaskLabels, Counter>,
    /// Allocations by state (read at scrape).
    allocations: Family<StateLabel, Gauge>,
    /// Nodes by status (read at scrape).
    nodes: Family<StateLabel, Gauge>,
    /// Deployments by status, latest per job (read at scrape).
    deployments: Family<StateLabel, Gauge>,
    /// Jobs (read at scrape).
    jobs: Gauge,
    /// The replica's applied log index (read at scrape).
    applied_index: Gauge,
    /// The last index in this node's log (read at scrape).
    last_log_index: Gauge,
    /// Entries in this node's log not yet applied (read at scrape).
    unapplied: Gauge,
    /// On the leader, entries each other voter trails (read at scrape).
    follower_lag: Family<PeerLabel, Gauge>,
    /// Snapshots built or installed here, by kind (from the store's count).
    snapshots: Family<KindLabel, Counter>,
    /// Size of the latest snapshot (read at scrape).
    snapshot_bytes: Gauge,
    /// How long building the latest snapshot took (read at scrape).
    snapshot_seconds: prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Sealed gossip datagrams by kind (`sent`, `received`, `delivered`,
    /// `fragmented`), from the transport's counters.
    gossip_packets: Family<KindLabel, Counter>,
    /// Gossip datagrams dropped unopened, by reason.
    gossip_dropped: Family<ReasonLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with every Orion metric in it.
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: Mutex::new(Registry::with_prefix("orion")),
            api_requests: Family::default(),
            api_latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 14))
            }),
            placements: Counter::default(),
            unplaced: Family::default(),
            plan_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            lb_requests: Family::default(),
            lb_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.00005, 2.0, 20))
            }),
            lb_active: Family::default(),
            store_proposals: Family::default(),
            store_commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            store_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            store_leader_changes: Counter::default(),
            store_term: Gauge::default(),
            store_is_leader: Gauge::default(),
            runtime_ops: Family::default(),
            runtime_op_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 2.0, 16))
            }),
            agent_restarts: Counter::default(),
            agent_probes: Family::default(),
            node_allocations: Family::default(),
            gossip_members: Family::default(),
            failure_detections: Counter::default(),
            control_passes: Family::default(),
            agent_passes: Counter::default(),
            task_cpu: Family::default(),
            task_memory: Family::default(),
            task_rx: Family::default(),
            task_tx: Family::default(),
            allocations: Family::default(),
            nodes: Family::default(),
            deployments: Family::default(),
            jobs: Gauge::default(),
            applied_index: Gauge::default(),
            last_log_index: Gauge::default(),
            unapplied: Gauge::default(),
            follower_lag: Family::default(),
            snapshots: Family::default(),
            snapshot_bytes: Gauge::default(),
            snapshot_seconds: Default::default(),
            gossip_packets: Family::default(),
            gossip_dropped: Family::default(),
        };
        {
            let mut r = m.registry.lock().expect("metrics registry");
            r.register(
                "api_requests",
                "HTTP API requests by route, method and status",
                m.api_requests.clone(),
            );
            r.register(
                "api_request_duration_seconds",
                "HTTP API latency by route",
                m.api_latency.clone(),
            );
            r.register(
                "scheduler_placements",
                "Placements committed by this node as leader",
                m.placements.clone(),
            );
            r.register(
                "scheduler_unplaced",
                "Slots left unplaced, counted per pass, by reason",
                m.unplaced.clone(),
            );
            r.register(
                "control_passes",
                "Control-loop passes by outcome (follower, quorum_lost, unconfirmed, acted)",
                m.control_passes.clone(),
            );
            r.register(
                "agent_passes",
                "Agent passes that reached the runtime",
                m.agent_passes.clone(),
            );
            r.register(
                "scheduler_plan_duration_seconds",
                "Reconcile-and-schedule pass duration",
                m.plan_seconds.clone(),
            );
            r.register(
                "lb_requests",
                "Connections or requests through this node's load balancer, by service and outcome",
                m.lb_requests.clone(),
            );
            r.register(
                "lb_request_duration_seconds",
                "Load-balanced request (http) or connection (tcp) duration, by service",
                m.lb_duration.clone(),
            );
            r.register(
                "lb_active",
                "Connections or requests open through this node's load balancer, by service",
                m.lb_active.clone(),
            );
            r.register(
                "store_proposals",
                "Commands proposed through this node, by outcome",
                m.store_proposals.clone(),
            );
            r.register(
                "store_commit_duration_seconds",
                "Time from proposing a log entry to its commit",
                m.store_commit_seconds.clone(),
            );
            r.register(
                "store_batch_commands",
                "Commands per committed log entry (group commit)",
                m.store_batch_size.clone(),
            );
            r.register(
                "store_leader_changes",
                "Leader changes this node saw",
                m.store_leader_changes.clone(),
            );
            r.register("store_raft_term", "The Raft term", m.store_term.clone());
            r.register(
                "store_is_leader",
                "1 when this node leads the Raft group",
                m.store_is_leader.clone(),
            );
            r.register(
                "runtime_operations",
                "Runtime (engine) operations by operation and outcome",
                m.runtime_ops.clone(),
            );
            r.register(
                "runtime_operation_duration_seconds",
                "Runtime (engine) operation latency by operation",
                m.runtime_op_seconds.clone(),
            );
            r.register(
                "agent_restarts",
                "Tasks this node's agent restarted in place",
                m.agent_restarts.clone(),
            );
            r.register(
                "agent_health_probes",
                "Health probes this node's agent ran, by outcome",
                m.agent_probes.clone(),
            );
            r.register(
                "node_allocations",
                "This node's allocations by state and health",
                m.node_allocations.clone(),
            );
            r.register(
                "gossip_members",
                "Cluster members by gossip state, as this node sees them",
                m.gossip_members.clone(),
            );
            r.register(
                "failure_detections",
                "Nodes this node, as leader, marked down",
                m.failure_detections.clone(),
            );
            r.register(
                "task_cpu_seconds",
                "CPU time used by a task of this node, sampled by its agent",
                m.task_cpu.clone(),
            );
            r.register(
                "task_memory_bytes",
                "Memory in use by a task of this node, sampled by its agent",
                m.task_memory.clone(),
            );
            r.register(
                "task_network_receive_bytes",
                "Bytes received by a task of this node, sampled by its agent",
                m.task_rx.clone(),
            );
            r.register(
                "task_network_transmit_bytes",
                "Bytes sent by a task of this node, sampled by its agent",
                m.task_tx.clone(),
            );
            r.register("allocations", "Allocations by state", m.allocations.clone());
            r.register("nodes", "Nodes by status", m.nodes.clone());
            r.register(
                "deployments",
                "Latest deployment of each job, by status",
                m.deployments.clone(),
            );
            r.register("jobs", "Jobs", m.jobs.clone());
            r.register(
                "store_applied_index",
                "Last log index applied by this node's replica",
                m.applied_index.clone(),
            );
            r.register(
                "store_last_log_index",
                "Last index in this node's Raft log",
                m.last_log_index.clone(),
            );
            r.register(
                "store_unapplied_entries",
                "Entries in this node's log not yet applied to its replica",
                m.unapplied.clone(),
            );
            r.register(
                "store_follower_lag_entries",
                "On the leader, how many entries each other voter's log trails",
                m.follower_lag.clone(),
            );
            r.register(
                "gossip_packets",
                "Sealed gossip datagrams, by kind: sent, received, delivered (opened and handed to gossip), fragmented",
                m.gossip_packets.clone(),
            );
            r.register(
                "gossip_packets_dropped",
                "Gossip datagrams dropped unopened, by reason: too_short, bad_version (clear text), unknown_key, bad_tag (forged or damaged), malformed",
                m.gossip_dropped.clone(),
            );
            r.register(
                "store_snapshots",
                "Snapshots this node built (log compaction) or installed from its leader",
                m.snapshots.clone(),
            );
            r.register(
                "store_snapshot_size_bytes",
                "Size of the latest snapshot built or installed here",
                m.snapshot_bytes.clone(),
            );
            r.register(
                "store_snapshot_build_duration_seconds",
                "How long building the latest snapshot took, capture to durable",
                m.snapshot_seconds.clone(),
            );
        }
        m
    }

    /// Brings a task's series up to `now`, a raw sample that follows `before`
    /// (none for its first): counters grow by the difference (by all of it
    /// after a counter went back, as a restarted container's does).
    pub fn record_task(
        &self,
        task: &TaskLabels,
        before: Option<&crate::runtime::Stats>,
        now: &crate::runtime::Stats,
    ) {
        let grow = |b: u64, n: u64| if n >= b { n - b } else { n };
        let (cpu, rx, tx) = match before {
            Some(b) => (
                grow(b.cpu_total_ns, now.cpu_total_ns),
                grow(b.network_rx_bytes, now.network_rx_bytes),
                grow(b.network_tx_bytes, now.network_tx_bytes),
            ),
            None => (now.cpu_total_ns, now.network_rx_bytes, now.network_tx_bytes),
        };
        self.task_cpu.get_or_create(task).inc_by(cpu as f64 / 1e9);
        self.task_rx.get_or_create(task).inc_by(rx);
        self.task_tx.get_or_create(task).inc_by(tx);
        self.task_memory
            .get_or_create(task)
            .set(now.memory_bytes.min(i64::MAX as u64) as i64);
    }

    /// Reads this node's own state into the gauges that are set at scrape:
    /// leadership, the allocations it runs, and what gossip says of the
    /// members.
    pub fn scrape_node(
        &self,
        node_id: &str,
        leadership: &crate::store::Leadership,
        live_members: &std::collections::HashSet<String>,
        state: &ClusterState,
    ) {
        self.store_term
            .set(leadership.term.min(i64::MAX as u64) as i64);
        self.store_is_leader.set(i64::from(leadership.is_self));
        self.node_allocations.clear();
        for a in state.allocs_on_node(node_id) {
            let health = a
                .health
                .as_ref()
                .map_or("none".to_string(), |h| h.status.to_string());
            self.node_allocations
                .get_or_create(&StateHealthLabels {
                    state: a.state.to_string(),
                    health,
                })
                .inc();
        }
        let known = state.nodes.len();
        let live = state
            .nodes
            .keys()
            .filter(|id| live_members.contains(*id))
            .count();
        self.gossip_members.clear();
        for (s, n) in [("live", live), ("dead", known - live)] {
            self.gossip_members
                .get_or_create(&StateLabel { state: s.into() })
                .set(n as i64);
        }
    }

    /// Reads the store's log, lag and snapshot figures into their gauges.
    pub fn scrape_store(&self, status: &crate::store::StoreStatus) {
        let clamp = |v: u64| v.min(i64::MAX as u64) as i64;
        self.last_log_index.set(clamp(status.last_log_index));
        self.unapplied.set(clamp(status.unapplied));
        self.follower_lag.clear();
        for (peer, behind) in &status.followers_behind {
            self.follower_lag
                .get_or_create(&PeerLabel { peer: peer.clone() })
                .set(clamp(*behind));
        }
        let snap = &status.snapshots;
        for (kind, n) in [("built", snap.built), ("installed", snap.installed)] {
            let c = self
                .snapshots
                .get_or_create(&KindLabel { kind: kind.into() });
            c.inc_by(n.saturating_sub(c.get()));
        }
        self.snapshot_bytes.set(clamp(snap.size_bytes));
        self.snapshot_seconds.set(snap.build_seconds);
    }

    /// Reads a sealed gossip transport's running totals into the packet
    /// counters: `kinds` as (`sent`, n) …, `dropped` as (reason, n).
    pub fn scrape_gossip(&self, kinds: &[(&str, u64)], dropped: &[(&str, u64)]) {
        for (kind, n) in kinds {
            let c = self.gossip_packets.get_or_create(&KindLabel {
                kind: (*kind).into(),
            });
            c.inc_by(n.saturating_sub(c.get()));
        }
        for (reason, n) in dropped {
            let c = self.gossip_dropped.get_or_create(&ReasonLabel {
                reason: (*reason).into(),
            });
            c.inc_by(n.saturating_sub(c.get()));
        }
    }

    /// Counts one control-loop pass that ended as `outcome`.
    pub fn control_pass(&self, outcome: &str) {
        self.control_passes
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Control-loop passes counted as `outcome` so far.
    pub fn control_passes_of(&self, outcome: &str) -> u64 {
        self.control_passes
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .get()
    }

    /// Plans (reconcile and schedule) and what they could not place: the
    /// pass's duration and each unplaced slot by reason class.
    pub fn record_plan(&self, took: std::time::Duration, unplaced: &[crate::command::Unplaced]) {
        self.plan_seconds.observe(took.as_secs_f64());
        for u in unplaced {
            self.unplaced
                .get_or_create(&ReasonLabel {
                    reason: unplaced_reason(&u.reason).into(),
                })
                .inc();
        }
    }

    /// Counts a runtime operation and its latency.
    pub fn runtime_op(&self, op: &str, ok: bool, took: std::time::Duration) {
        self.runtime_ops
            .get_or_create(&OpLabels {
                op: op.to_string(),
                outcome: if ok { "ok" } else { "error" }.to_string(),
            })
            .inc();
        self.runtime_op_seconds
            .get_or_create(&OpOnly { op: op.to_string() })
            .observe(took.as_secs_f64());
    }

    /// Drops a task's series (its container is gone).
    pub fn forget_task(&self, task: &TaskLabels) {
        self.task_cpu.remove(task);
        self.task_memory.remove(task);
        self.task_rx.remove(task);
        self.task_tx.remove(task);
    }

    /// The registry, for a host that adds its own metrics or merges these.
    pub fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().expect("metrics registry")
    }

    /// Every metric in the classic Prometheus text format (0.0.4), which
    /// `promtool check metrics` and every scraper read: the OpenMetrics
    /// exposition with counters' HELP and TYPE named as their `_total`
    /// samples, and no `# EOF`.
    pub fn encode_text(&self, state: &ClusterState) -> String {
        let open = self.encode(state);
        let counters: std::collections::HashSet<String> = open
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.strip_suffix(" counter"))
            .map(str::to_string)
            .collect();
        let mut out = String::with_capacity(open.len());
        for line in open.lines() {
            if line == "# EOF" || line.starts_with("# UNIT ") {
                continue;
            }
            let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
                let rest = line.strip_prefix(p)?;
                let (name, tail) = rest.split_once(' ')?;
                counters
                    .contains(name)
                    .then(|| format!("{p}{name}_total {tail}"))
            });
            out.push_str(renamed.as_deref().unwrap_or(line));
            out.push('\n');
        }
        out
    }

    /// Every metric in the OpenMetrics text format, the state gauges read off
    /// `state`.
    pub fn encode(&self, state: &ClusterState) -> String {
        self.allocations.clear();
        for a in state.allocs.values() {
            self.allocations
                .get_or_create(&StateLabel {
                    state: a.state.to_string(),
                })
                .inc();
        }
        self.nodes.clear();
        for n in state.nodes.values() {
            self.nodes
                .get_or_create(&StateLabel {
                    state: n.status.to_string(),
                })
                .inc();
        }
        self.deployments.clear();
        for d in state.deployments.values().filter_map(|l| l.last()) {
            self.deployments
                .get_or_create(&StateLabel {
                    state: d.status.to_string(),
                })
                .inc();
        }
        self.jobs.set(state.jobs.len() as i64);
        self.applied_index.set(state.applied_index as i64);
        let mut out = String::new();
        let r = self.registry.lock().expect("metrics registry");
        if prometheus_client::encoding::text::encode(&mut out, &r).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unplaced_reasons_fall_into_few_classes() {
        for (text, class) in [
            ("0/3 nodes: 3 insufficient memory", "memory"),
            ("1 node: insufficient cpu (2 asked, 1 free)", "cpu"),
            ("0/2 nodes: 1 port 8080 taken, 1 insufficient disk", "ports"),
            ("no nodes in the cluster", "no_nodes"),
            ("0/4 nodes: 4 selector zone=eu", "selector"),
            ("1 node: node draining", "node_not_ready"),
            (
                "every feasible node was taken by other tasks in the same plan",
                "contention",
            ),
            ("something new", "other"),
        ] {
            assert_eq!(unplaced_reason(text), class, "{text}");
        }
    }
}
