//! Periodic jobs on a node over the fakes: ticks launch runs named after
//! them, one per tick; `forbid` skips while a run lives and says so; a forced
//! run; and schedules that cannot work are refused naming the field.

use std::sync::Arc;
use std::time::{Duration, Instant};

use orion_core::testing::{FakeRuntime, MemStore};
use orion_core::{Cluster, JobSpec, NodeProfile};
use serde_json::{json, Value};

async fn node(fake: Arc<FakeRuntime>) -> Cluster {
    let mut p = NodeProfile::default();
    p.id = Some("p1".into());
    let c = Cluster::builder()
        .node(p)
        .runtime_shared(fake)
        .store(MemStore::new("p1"))
        .config(orion_core::testing::fast_loops())
        .http("127.0.0.1:0".parse().unwrap())
        .start()
        .await
        .unwrap();
    c.ready(Duration::from_secs(5)).await.unwrap();
    c
}

fn periodic(name: &str, concurrency: &str) -> JobSpec {
    serde_json::from_value(json!({
        "name": name, "type": "batch",
        "task": { "image": "orion-test/web:1", "resources": { "cpu": 0.1, "memory_mb": 32 } },
        "schedule": { "cron": "* * * * * *", "concurrency": concurrency,
                      "history": { "successful": 10, "failed": 10 } }
    }))
    .unwrap()
}

fn tick_of(run: &str) -> u64 {
    run.rsplit('-').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tick_launches_one_run_and_forbid_skips_while_one_lives() {
    let fake = Arc::new(FakeRuntime::new());
    let c = node(fake.clone()).await;
    c.submit(periodic("every", "allow")).await.unwrap();
    c.submit(periodic("single", "forbid")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3500)).await;

    let every = c.job("every").unwrap();
    assert_eq!(every.health.to_string(), "periodic");
    assert!(
        every.allocations.is_empty(),
        "the periodic job itself runs nothing"
    );
    let p = every.periodic.unwrap();
    let ticks: Vec<u64> = p.runs.iter().map(|r| tick_of(&r.name)).collect();
    assert!((2..=4).contains(&ticks.len()), "{ticks:?}");
    assert!(
        ticks.windows(2).all(|w| w[1] == w[0] + 1),
        "one run per second: {ticks:?}"
    );
    assert_eq!(p.launched as usize, ticks.len());
    assert_eq!(p.next_ms.len(), 3);
    assert!(p.next_ms[0] / 1000 > *ticks.last().unwrap());
    // Each run is a batch job of its own, with the parent's task, placed.
    let first = c.job(&p.runs[0].name).unwrap();
    assert_eq!(first.job.parent.as_deref(), Some("every"));
    assert_eq!(first.allocations.len(), 1);

    // forbid: the first run never ends here (the fake runs it until told), so
    // every later tick is skipped, with the reason.
    let single = c.job("single").unwrap().periodic.unwrap();
    assert_eq!(single.runs.len(), 1, "{single:?}");
    assert!(single.skipped.len() >= 2, "{single:?}");
    assert!(
        single.skipped[0].reason.contains("still running"),
        "{single:?}"
    );
    // Once it completes, the next tick launches again.
    let run = c.job(&single.runs[0].name).unwrap();
    assert!(fake.exit(&run.allocations[0].id, 0));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = c.job("single").unwrap().periodic.unwrap();
        if s.runs.len() == 2 {
            assert_eq!(s.runs[0].health.to_string(), "complete");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no run after the first completed: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Forced: a run now, through the API.
    let api = c.http_addr().unwrap();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("http://{api}/v1/jobs/every/periodic/force"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(body["run"].as_str().unwrap().starts_with("every-periodic-"));
    let r = http
        .post(format!("http://{api}/v1/jobs/nope/periodic/force"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_that_cannot_work_are_refused_naming_the_field() {
    let c = node(Arc::new(FakeRuntime::new())).await;
    let api = c.http_addr().unwrap();
    let http = reqwest::Client::new();
    let base = json!({
        "name": "rep", "type": "batch",
        "task": { "image": "orion-test/web:1", "resources": { "cpu": 0.1, "memory_mb": 32 } },
        "schedule": { "cron": "*/5 * * * *" }
    });
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({ "schedule": { "cron": "* 25 * * *" } }),
            "schedule.cron",
            "field 2 (hour) \\\"25\\\"",
        ),
        (
            json!({ "schedule": { "cron": "* * *" } }),
            "schedule.cron",
            "has 3 fields",
        ),
        (
            json!({ "schedule": { "cron": "* * * * *", "time_zone": "Mars/Olympus" } }),
            "schedule.time_zone",
            "not a known time zone",
        ),
        (
            json!({ "schedule": { "cron": "* * * * *", "concurrency": "sometimes" } }),
            "schedule.concurrency",
            "unknown variant",
        ),
        (
            json!({ "type": "service" }),
            "schedule",
            "only a batch job can be periodic",
        ),
        (
            json!({ "name": "a-name-that-is-too-long-for-periodic-jobs" }),
            "name",
            "at most 40 characters",
        ),
        (
            json!({ "name": "rep-periodic-1767600000" }),
            "name",
            "only the cluster launches",
        ),
    ];
    for (patch, field, problem) in cases {
        let mut spec = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let r = http
            .post(format!("http://{api}/v1/jobs"))
            .json(&spec)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{patch}");
        let body = r.text().await.unwrap();
        assert!(
            body.contains(field) && body.contains(problem),
            "{patch}: {body}"
        );
    }
    assert!(c.jobs().is_empty(), "nothing was written");
    c.shutdown().await;
}
