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
    /// Slots the scheduler could not place, per pass.
    pub unplaced: Counter,
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
            unplaced: Counter::default(),
            plan_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            lb_requests: Family::default(),
            lb_duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.00005, 2.0, 20))
            }),
            lb_active: Family::default(),
            task_cpu: Family::default(),
            task_memory: Family::default(),
            task_rx: Family::default(),
            task_tx: Family::default(),
            allocations: Family::default(),
            nodes: Family::default(),
            deployments: Family::default(),
            jobs: Gauge::default(),
            applied_index: Gauge::default(),
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
                "Slots left unplaced, counted per pass",
                m.unplaced.clone(),
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
