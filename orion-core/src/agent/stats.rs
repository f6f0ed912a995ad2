//! Task stats over time: the agent samples each running task of its node
//! every [`StatsConfig::interval`] (10 s by default) and keeps the last
//! [`StatsConfig::kept`] samples per allocation (an hour at the default), with
//! CPU as a percentage of one core (`docker stats`' convention: 200% is two
//! cores busy) computed between two samples. The same samples feed the
//! per-task Prometheus series (`orion_task_*`, labels job, alloc, node) and
//! `GET /v1/allocations/{id}/stats?history=true`; autoscaling reads them too.
//!
//! A series is dropped when its container is gone.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::debug;

use crate::metrics::{Metrics, TaskLabels};
use crate::model::{AllocId, NodeId};
use crate::runtime::{ContainerState, Owner, Runtime, Stats};
use crate::store::Store;

/// How often tasks are sampled, and how many samples are kept.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct StatsConfig {
    /// Time between two samples of a task.
    pub interval: Duration,
    /// Samples kept per allocation.
    pub kept: usize,
}

impl Default for StatsConfig {
    /// Every 10 s, an hour kept (360 samples): fine enough for a chart and
    /// for autoscaling's averages, at one stats call per task per 10 s.
    fn default() -> Self {
        StatsConfig {
            interval: Duration::from_secs(10),
            kept: 360,
        }
    }
}

/// One sample of a task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Sample {
    /// When it was taken, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// CPU since the previous sample, in percent of one core; none for the
    /// first sample.
    pub cpu_percent: Option<f64>,
    /// Memory in use, in bytes.
    pub memory_bytes: u64,
    /// Memory limit, in bytes (0: none).
    pub memory_limit_bytes: u64,
    /// Bytes received, since the task started.
    pub network_rx_bytes: u64,
    /// Bytes sent, since the task started.
    pub network_tx_bytes: u64,
}

/// What `GET /v1/allocations/{id}/stats` answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskStats {
    /// The allocation.
    pub alloc: AllocId,
    /// Time between two kept samples, in seconds.
    pub interval_s: f64,
    /// A sample taken now.
    pub current: CurrentStats,
    /// The kept samples, oldest first (only with `?history=true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<Sample>>,
}

/// A sample taken now, with the percentages worked out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CurrentStats {
    /// The runtime's raw figures.
    #[serde(flatten)]
    pub raw: Stats,
    /// CPU since the last kept sample, in percent of one core (none until
    /// one is kept).
    pub cpu_percent: Option<f64>,
    /// Memory in use, in percent of the limit (none without a limit).
    pub memory_percent: Option<f64>,
}

/// The kept samples of one allocation.
#[derive(Debug)]
struct Series {
    labels: TaskLabels,
    /// The last raw sample and when it was taken.
    last: Option<(Instant, Stats)>,
    /// The one before it.
    before_last: Option<(Instant, Stats)>,
    samples: VecDeque<Sample>,
}

/// The samples of every task of a node.
#[derive(Debug, Default)]
pub struct StatsHistory {
    series: Mutex<HashMap<AllocId, Series>>,
    config: StatsConfig,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// CPU between two raw samples taken `wall` apart, in percent of one core.
pub fn cpu_percent(before: &Stats, after: &Stats, wall: Duration) -> Option<f64> {
    let wall = wall.as_nanos() as f64;
    if wall <= 0.0 || after.cpu_total_ns < before.cpu_total_ns {
        return None;
    }
    Some((after.cpu_total_ns - before.cpu_total_ns) as f64 / wall * 100.0)
}

impl StatsHistory {
    /// An empty history with these settings.
    pub fn new(config: StatsConfig) -> Self {
        StatsHistory {
            series: Mutex::default(),
            config,
        }
    }

    /// The settings.
    pub fn config(&self) -> &StatsConfig {
        &self.config
    }

    /// Keeps a raw sample of `alloc` taken at `at`, and brings its
    /// Prometheus series up to date.
    pub fn record(&self, labels: TaskLabels, at: Instant, raw: Stats, metrics: Option<&Metrics>) {
        let mut all = self.series.lock();
        let series = all.entry(labels.alloc.clone()).or_insert_with(|| Series {
            labels: labels.clone(),
            last: None,
            before_last: None,
            samples: VecDeque::new(),
        });
        let before = series.last.as_ref();
        let cpu = before.and_then(|(t, s)| cpu_percent(s, &raw, at.duration_since(*t)));
        if let Some(m) = metrics {
            m.record_task(&labels, before.map(|(_, s)| s), &raw);
        }
        series.samples.push_back(Sample {
            at_ms: now_ms(),
            cpu_percent: cpu,
            memory_bytes: raw.memory_bytes,
            memory_limit_bytes: raw.memory_limit_bytes,
            network_rx_bytes: raw.network_rx_bytes,
            network_tx_bytes: raw.network_tx_bytes,
        });
        while series.samples.len() > self.config.kept.max(1) {
            series.samples.pop_front();
        }
        series.before_last = series.last.replace((at, raw));
    }

    /// Forgets every allocation not in `live`, and its Prometheus series.
    pub fn retain(&self, live: &std::collections::HashSet<AllocId>, metrics: Option<&Metrics>) {
        self.series.lock().retain(|id, s| {
            let keep = live.contains(id);
            if !keep {
                if let Some(m) = metrics {
                    m.forget_task(&s.labels);
                }
            }
            keep
        });
    }

    /// The kept samples of `alloc`, oldest first.
    pub fn samples(&self, alloc: &str) -> Vec<Sample> {
        self.series
            .lock()
            .get(alloc)
            .map(|s| s.samples.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The latest kept sample of `alloc` (without copying the others).
    pub fn last(&self, alloc: &str) -> Option<Sample> {
        self.series.lock().get(alloc)?.samples.back().cloned()
    }

    /// A fresh raw sample of `alloc` with its percentages, CPU worked out
    /// against the latest kept sample at least [`MIN_CPU_WINDOW`] old
    /// (engines refresh their figures about once a second: Docker's are
    /// cached that long, so a shorter window would read as idle).
    pub fn current(&self, alloc: &str, raw: Stats) -> CurrentStats {
        let cpu = self.series.lock().get(alloc).and_then(|s| {
            let (t, before) = [&s.last, &s.before_last]
                .into_iter()
                .flatten()
                .find(|(t, _)| t.elapsed() >= MIN_CPU_WINDOW)?;
            cpu_percent(before, &raw, t.elapsed())
        });
        let memory_percent = (raw.memory_limit_bytes > 0)
            .then(|| raw.memory_bytes as f64 / raw.memory_limit_bytes as f64 * 100.0);
        CurrentStats {
            raw,
            cpu_percent: cpu,
            memory_percent,
        }
    }

    /// Every allocation with samples, with its latest one (what autoscaling
    /// and `/metrics` read).
    pub fn latest(&self) -> Vec<(TaskLabels, Sample)> {
        self.series
            .lock()
            .values()
            .filter_map(|s| Some((s.labels.clone(), s.samples.back()?.clone())))
            .collect()
    }
}

/// The shortest time a CPU percentage is worked out over.
pub const MIN_CPU_WINDOW: Duration = Duration::from_millis(1500);

/// How many tasks are sampled at once.
const PARALLEL_SAMPLES: usize = 8;

/// Samples this node's running tasks every interval until `shutdown`.
pub async fn run_sampler(
    node_id: NodeId,
    store: Arc<dyn Store>,
    runtime: Arc<dyn Runtime>,
    history: Arc<StatsHistory>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(history.config().interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        let Some(cluster_id) = store.replica().read(|s| s.cluster_id.clone()) else {
            continue;
        };
        let owner = Owner {
            cluster_id,
            node_id: node_id.clone(),
        };
        let containers = match runtime.list(&owner).await {
            Ok(c) => c,
            Err(e) => {
                debug!(node_id = %node_id, error = %e, "stats: cannot list containers");
                continue;
            }
        };
        let running: Vec<_> = containers
            .into_iter()
            .filter(|c| c.state == ContainerState::Running)
            .collect();
        let live = running.iter().map(|c| c.alloc_id.clone()).collect();
        history.retain(&live, Some(&metrics));
        let samples: Vec<_> = futures::stream::iter(running)
            .map(|c| {
                let runtime = runtime.clone();
                async move {
                    let s = runtime.stats(&c.id).await;
                    (c, Instant::now(), s)
                }
            })
            .buffer_unordered(PARALLEL_SAMPLES)
            .collect()
            .await;
        for (c, at, s) in samples {
            match s {
                Ok(raw) => history.record(
                    TaskLabels {
                        job: c.job.clone(),
                        alloc: c.alloc_id.clone(),
                        node: node_id.clone(),
                    },
                    at,
                    raw,
                    Some(&metrics),
                ),
                Err(e) => debug!(alloc = %c.alloc_id, error = %e, "stats: no sample"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(cpu_ns: u64, mem: u64) -> Stats {
        Stats {
            cpu_total_ns: cpu_ns,
            memory_bytes: mem,
            memory_limit_bytes: 4 * mem,
            ..Stats::default()
        }
    }

    fn labels(alloc: &str) -> TaskLabels {
        TaskLabels {
            job: "web".into(),
            alloc: alloc.into(),
            node: "n1".into(),
        }
    }

    #[test]
    fn cpu_is_a_percentage_of_one_core_between_samples() {
        let second = Duration::from_secs(1);
        assert_eq!(
            cpu_percent(&raw(0, 1), &raw(500_000_000, 1), second),
            Some(50.0)
        );
        assert_eq!(
            cpu_percent(&raw(0, 1), &raw(2_000_000_000, 1), second),
            Some(200.0)
        );
        // A counter that went backwards (a restarted container) says nothing.
        assert_eq!(cpu_percent(&raw(9, 1), &raw(1, 1), second), None);
        assert_eq!(cpu_percent(&raw(0, 1), &raw(1, 1), Duration::ZERO), None);
    }

    #[test]
    fn history_keeps_the_last_samples_and_forgets_gone_allocations() {
        let h = StatsHistory::new(StatsConfig {
            interval: Duration::from_secs(10),
            kept: 3,
        });
        let t0 = Instant::now();
        for i in 0..5u64 {
            h.record(
                labels("a1"),
                t0 + Duration::from_secs(10 * i),
                raw(i * 1_000_000_000, 100 + i),
                None,
            );
        }
        let s = h.samples("a1");
        assert_eq!(s.len(), 3);
        assert_eq!(
            s.iter().map(|s| s.memory_bytes).collect::<Vec<_>>(),
            [102, 103, 104]
        );
        // 1 s of CPU every 10 s: 10% of a core.
        assert!(s
            .iter()
            .all(|s| (s.cpu_percent.unwrap() - 10.0).abs() < 1e-9));
        h.record(labels("b1"), t0, raw(0, 1), None);
        assert_eq!(h.samples("b1")[0].cpu_percent, None, "no previous sample");
        h.retain(&["b1".to_string()].into_iter().collect(), None);
        assert!(h.samples("a1").is_empty());
        assert_eq!(h.latest().len(), 1);
    }

    #[test]
    fn memory_percent_needs_a_limit() {
        let h = StatsHistory::new(StatsConfig::default());
        let c = h.current("x", raw(0, 25));
        assert_eq!(c.memory_percent, Some(25.0));
        assert_eq!(c.cpu_percent, None);
        let unlimited = Stats {
            memory_bytes: 5,
            ..Stats::default()
        };
        assert_eq!(h.current("x", unlimited).memory_percent, None);
    }
}
