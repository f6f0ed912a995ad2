//! The dashboard's first load against a node holding 1,000 allocations: one
//! in-process node (fake runtime, in-memory store, its HTTP API on loopback)
//! running 10 jobs of 100 replicas, all `running`.
//!
//! - `dashboard/http/{jobs,topology}`: what a browser's first load of the page
//!   fetches, in its order, over one keep-alive connection pool: `/ui/`, then
//!   `app.js` and `style.css` together, then the view's API reads and the
//!   leader status together (`/v1/jobs` and `/v1/deployments` for the landing
//!   page; `/v1/nodes` and `/v1/allocations`, all 1,000, for the topology).
//!   The event stream the page opens last is not counted: it stays open.
//! - `dashboard/browser/{jobs,topology}` (when Chromium and chromedriver are on
//!   the PATH): a headless Chromium, from `about:blank` to the view drawn with
//!   every job row (jobs) or every allocation box (topology), as WebDriver
//!   sees it: navigation until the load event, then a script that waits frame
//!   by frame for the rows. The pages answer `Cache-Control: no-cache` without
//!   validators, so every load fetches everything again, as a first one does.
//! - Printed first: the bytes of each response, and the browser's own count
//!   (Resource Timing's `transferSize`, the navigation's DOMContentLoaded).
//!
//! Run: `cargo bench -p orion-node --bench dashboard`

#[path = "../tests/e2e/support.rs"]
#[allow(dead_code)]
mod support;

#[path = "../tests/e2e/browser.rs"]
#[allow(dead_code)]
mod browser;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use orion_core::testing::{FakeRuntime, MemStore};
use orion_core::{AllocState, Cluster, JobSpec, NodeProfile, Resources};
use tokio::runtime::Runtime;

const JOBS: usize = 10;
const PER_JOB: u32 = 100;

/// The views measured: (name, API reads on first draw, what shows it drawn).
const VIEWS: [(&str, &[&str], &str); 2] = [
    (
        "jobs",
        &["/v1/jobs", "/v1/deployments"],
        "document.querySelectorAll('[data-job]').length",
    ),
    (
        "topology",
        &["/v1/nodes", "/v1/allocations"],
        "document.querySelectorAll('a[data-alloc]').length",
    ),
];

async fn node() -> Cluster {
    let mut p = NodeProfile::default();
    p.id = Some("bench".into());
    p.capacity = Some(Resources {
        cpu: 1_000.0,
        memory_mb: 1_000_000,
        disk_mb: 1_000_000,
    });
    let c = Cluster::builder()
        .node(p)
        .runtime(FakeRuntime::new())
        .store(MemStore::new("bench"))
        .http("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    c.ready(Duration::from_secs(10)).await.unwrap();
    for j in 0..JOBS {
        let mut spec = JobSpec::service(format!("web-{j}"), "bench/web:1").replicas(PER_JOB);
        spec.task.resources.cpu = 0.1;
        spec.task.resources.memory_mb = 64;
        c.submit(spec).await.unwrap();
    }
    let want = JOBS * PER_JOB as usize;
    let deadline = Instant::now() + Duration::from_secs(120);
    while c
        .allocations(None)
        .iter()
        .filter(|a| a.state == AllocState::Running)
        .count()
        < want
    {
        assert!(Instant::now() < deadline, "{want} allocations never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c
}

/// One first load of a view over HTTP: its time and each response's bytes.
async fn http_load(
    http: &reqwest::Client,
    base: &str,
    reads: &[&str],
) -> (Duration, Vec<(String, usize)>) {
    let fetch = async |path: String| {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        let n = r.bytes().await.unwrap().len();
        (path, n)
    };
    let t = Instant::now();
    let mut sizes = vec![fetch("/ui/".into()).await];
    let (js, css) = tokio::join!(fetch("/ui/app.js".into()), fetch("/ui/style.css".into()));
    sizes.extend([js, css]);
    let mut paths: Vec<String> = reads.iter().map(|p| p.to_string()).collect();
    paths.push("/v1/status/leader".into());
    sizes.extend(futures::future::join_all(paths.into_iter().map(fetch)).await);
    (t.elapsed(), sizes)
}

/// Goes from `about:blank` to `view` drawn with `want` items; how long it took.
async fn browser_load(
    c: &fantoccini::Client,
    base: &str,
    view: &str,
    count: &str,
    want: usize,
) -> Duration {
    c.goto("about:blank").await.unwrap();
    let t = Instant::now();
    c.goto(&format!("{base}/ui/#/{view}")).await.unwrap();
    let script = format!(
        "const done = arguments[arguments.length - 1];
         const check = () => ({count}) >= {want} ? done(true) : requestAnimationFrame(check);
         check();"
    );
    c.execute_async(&script, Vec::new()).await.unwrap();
    t.elapsed()
}

fn dashboard(cr: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let cluster = rt.block_on(node());
    let base = format!("http://{}", cluster.http_addr().unwrap());
    orion_core::tls::ensure_default_provider();
    let http = reqwest::Client::new();
    let mut group = cr.benchmark_group("dashboard");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for (view, reads, _) in VIEWS {
        let (_, sizes) = rt.block_on(http_load(&http, &base, reads));
        let total: usize = sizes.iter().map(|(_, n)| n).sum();
        let each: Vec<String> = sizes.iter().map(|(p, n)| format!("{p} {n}")).collect();
        println!(
            "dashboard {view}, {} allocations: first load {total} bytes ({})",
            JOBS * PER_JOB as usize,
            each.join(", ")
        );
        group.bench_function(format!("http/{view}"), |b| {
            b.to_async(&rt).iter_custom(async |iters| {
                let mut sum = Duration::ZERO;
                for _ in 0..iters {
                    sum += http_load(&http, &base, reads).await.0;
                }
                sum
            })
        });
    }
    if let Some((chromium, driver)) = browser::browser_tools() {
        let b = rt.block_on(browser::Browser::start(&chromium, &driver));
        for (view, _, count) in VIEWS {
            let want = if view == "jobs" {
                JOBS
            } else {
                JOBS * PER_JOB as usize
            };
            rt.block_on(async {
                browser_load(b.client(), &base, view, count, want).await;
                let seen = b
                    .client()
                    .execute(
                        "const r = performance.getEntriesByType('resource');
                         const n = performance.getEntriesByType('navigation')[0];
                         return { bytes: n.transferSize + r.reduce((s, e) => s + e.transferSize, 0),
                                  requests: r.length + 1,
                                  dom_ms: n.domContentLoadedEventEnd, load_ms: n.loadEventEnd };",
                        Vec::new(),
                    )
                    .await
                    .unwrap();
                println!("dashboard {view} in Chromium: {seen}");
            });
            group.bench_function(format!("browser/{view}"), |bench| {
                bench.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut sum = Duration::ZERO;
                        for _ in 0..iters {
                            sum += browser_load(b.client(), &base, view, count, want).await;
                        }
                        sum
                    })
                })
            });
        }
        rt.block_on(b.close());
    }
    group.finish();
    rt.block_on(cluster.shutdown());
}

criterion_group!(benches, dashboard);
criterion_main!(benches);
