//! What a node reports for autoscaling: for each scaling job, its metrics
//! summed over this node's serving instances ([`crate::scaling::JobLoad`]),
//! published with the node's membership record every stats interval. No
//! sample becomes a Raft write: the leader reads the reports from
//! membership and commits only its decisions.
//!
//! - `cpu`: each instance's CPU in percent of its limit (`resources.cpu`
//!   cores), from the stats sampler's latest sample.
//! - `memory`: memory in use in percent of the limit.
//! - `requests_per_second`: requests (http mode) or connections (tcp) this
//!   node's balancer sent to the job's instances, wherever they run, per
//!   second since the last report; the leader divides the cluster's sum by
//!   the serving instances.
//! - `custom:<name>`: the sum of the samples named `<name>` (every label
//!   set) on the task's Prometheus endpoint (`task.metrics`), scraped here
//!   with a 2 s timeout; a gauge is meant (a counter is read as its value).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::debug;

use super::stats::StatsHistory;
use crate::model::NodeId;
use crate::scaling::{JobLoad, Metric, MetricSum};
use crate::store::Store;

/// The most a metrics endpoint may answer.
const MAX_SCRAPE_BYTES: usize = 1 << 20;

/// How long a scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// Reports this node's loads into `out` every `interval` until `shutdown`.
pub(crate) async fn run_reporter(
    node_id: NodeId,
    store: Arc<dyn Store>,
    stats: Arc<StatsHistory>,
    lb: Option<Arc<crate::lb::Balancer>>,
    out: watch::Sender<BTreeMap<String, JobLoad>>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut counted: HashMap<(u16, String), u64> = HashMap::new();
    let mut last_at = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let elapsed = now.duration_since(last_at).as_secs_f64();
        last_at = now;
        let now_ms = crate::model::unix_ms();
        // What to read: this node's serving instances of each scaling job.
        let wanted = store.replica().read(|s| {
            s.jobs
                .values()
                .filter(|j| j.status == crate::model::JobStatus::Running)
                .filter_map(|j| {
                    let sc = j.spec.scaling.as_ref()?;
                    let metrics: Vec<Metric> = sc.metrics().cloned().collect();
                    let mine: Vec<crate::model::Allocation> = crate::scaling::serving(s, j)
                        .filter(|a| a.node.as_ref() == Some(&node_id))
                        .cloned()
                        .collect();
                    Some((j.spec.name.clone(), (j.spec.task.clone(), metrics, mine)))
                })
                .collect::<BTreeMap<_, _>>()
        });
        // Requests through this node's balancer since the last report, by job.
        let mut rates: BTreeMap<String, f64> = BTreeMap::new();
        if let Some(lb) = &lb {
            let mut seen = HashMap::new();
            for l in lb.stats(None) {
                for b in l.backends {
                    let key = (l.port, b.alloc.clone());
                    let before = counted.get(&key).copied().unwrap_or(0);
                    let sent = b.requests.checked_sub(before).unwrap_or(b.requests);
                    if wanted.contains_key(&b.job) && elapsed > 0.0 {
                        *rates.entry(b.job.clone()).or_default() += sent as f64 / elapsed;
                    }
                    seen.insert(key, b.requests);
                }
            }
            counted = seen;
        }
        let mut loads = BTreeMap::new();
        for (job, (task, metrics, mine)) in wanted {
            let mut load = JobLoad {
                at_ms: now_ms,
                metrics: BTreeMap::new(),
            };
            let mut add = |m: &Metric, v: f64| {
                if v.is_finite() {
                    let e = load.metrics.entry(m.clone()).or_default();
                    e.sum += v;
                    e.n += 1;
                }
            };
            let fresh_ms = 3 * stats.config().interval.as_millis() as u64;
            for a in &mine {
                let sample = stats
                    .last(&a.id)
                    .filter(|s| now_ms.saturating_sub(s.at_ms) <= fresh_ms);
                for m in &metrics {
                    match m {
                        Metric::Cpu => {
                            if let Some(cpu) = sample.as_ref().and_then(|s| s.cpu_percent) {
                                add(m, cpu / task.resources.cpu.max(f64::MIN_POSITIVE));
                            }
                        }
                        Metric::Memory => {
                            if let Some(s) = sample.as_ref().filter(|s| s.memory_limit_bytes > 0) {
                                add(
                                    m,
                                    s.memory_bytes as f64 / s.memory_limit_bytes as f64 * 100.0,
                                );
                            }
                        }
                        Metric::RequestsPerSecond | Metric::Custom(_) => {}
                    }
                }
            }
            let custom: Vec<&str> = metrics
                .iter()
                .filter_map(|m| match m {
                    Metric::Custom(n) => Some(n.as_str()),
                    _ => None,
                })
                .collect();
            if let (false, Some(ep)) = (custom.is_empty(), task.metrics.as_ref()) {
                for a in &mine {
                    match scrape(&client, a, ep).await {
                        Ok(text) => {
                            let values = read_custom(&text, &custom);
                            for (name, v) in values {
                                add(&Metric::Custom(name), v);
                            }
                        }
                        Err(e) => debug!(alloc = %a.id, error = %e, "metrics scrape failed"),
                    }
                }
            }
            if metrics.contains(&Metric::RequestsPerSecond) {
                load.metrics.insert(
                    Metric::RequestsPerSecond,
                    MetricSum {
                        sum: rates.get(&job).copied().unwrap_or(0.0),
                        n: 0,
                    },
                );
            }
            loads.insert(job, load);
        }
        out.send_replace(loads);
    }
}

/// The text of an instance's metrics endpoint.
async fn scrape(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    a: &crate::model::Allocation,
    ep: &crate::spec::MetricsEndpoint,
) -> Result<String, String> {
    let b = a
        .ports
        .iter()
        .find(|p| p.name == ep.port)
        .ok_or_else(|| format!("port {} is not bound", ep.port))?;
    let ip = match b.host_ip.as_str() {
        "" | "0.0.0.0" => "127.0.0.1",
        "::" => "[::1]",
        ip => ip,
    };
    let uri: hyper::Uri = format!("http://{ip}:{}{}", b.host_port, ep.path)
        .parse()
        .map_err(|e| format!("{e}"))?;
    let fetch = async {
        let r = client
            .get(uri.clone())
            .await
            .map_err(|e| format!("GET {uri}: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("GET {uri} answered {}", r.status()));
        }
        let body = http_body_util::Limited::new(r.into_body(), MAX_SCRAPE_BYTES)
            .collect()
            .await
            .map_err(|e| format!("GET {uri}: {e}"))?
            .to_bytes();
        Ok(String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(SCRAPE_TIMEOUT, fetch)
        .await
        .map_err(|_| format!("GET {uri}: no answer within {SCRAPE_TIMEOUT:?}"))?
}

/// Each wanted metric's sum over its samples in a Prometheus text page
/// (absent when the page has none of it).
pub(crate) fn read_custom(text: &str, wanted: &[&str]) -> BTreeMap<String, f64> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let Ok(scrape) = prometheus_parse::Scrape::parse(lines) else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for s in scrape.samples {
        if !wanted.contains(&s.metric.as_str()) {
            continue;
        }
        let v = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        *out.entry(s.metric).or_insert(0.0) += v;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_metrics_sum_every_label_set_and_skip_the_rest() {
        let page = "# HELP queue_depth Jobs waiting.\n# TYPE queue_depth gauge\nqueue_depth{queue=\"a\"} 3\nqueue_depth{queue=\"b\"} 4.5\n# TYPE other counter\nother 9\nlatency_bucket{le=\"1\"} 2\n";
        let got = read_custom(page, &["queue_depth", "missing"]);
        assert_eq!(got.len(), 1);
        assert!((got["queue_depth"] - 7.5).abs() < 1e-9);
        assert!(read_custom("not a metrics page {{{", &["x"]).is_empty());
    }
}
