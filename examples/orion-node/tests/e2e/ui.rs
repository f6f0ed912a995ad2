//! The web dashboard (`/ui`) in a real browser: headless Chromium, driven over
//! WebDriver (a chromedriver this test starts, through `fantoccini`), against
//! one node on the real engine. Proves the pages read the live API, follow the
//! event stream without a reload, submit through the editor, and show a log
//! line holding markup as text. Saves a screenshot of each page under
//! `target/ui-screenshots/`.
//!
//! Without Chromium or chromedriver on the PATH it prints `SKIP: …` and passes,
//! except under CI (`CI` set, as `true` or `1`), where it fails (like a missing engine).

use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use orion_runtime::image;
use serde_json::{json, Value};

use crate::browser::*;
use crate::support::*;

/// Clicks the element `css` finds, again while it is missing or was
/// replaced between finding and clicking (a live view redraws itself).
async fn click(c: &Client, css: &str) {
    let deadline = Instant::now() + PAGE_WAIT;
    loop {
        let err = match c.find(Locator::Css(css)).await {
            Ok(e) => match e.click().await {
                Ok(()) => return,
                Err(err) => err,
            },
            Err(err) => err,
        };
        assert!(Instant::now() < deadline, "cannot click {css}: {err}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Goes to a dashboard page (`#/…`) and waits until its view is drawn.
async fn open(c: &Client, base: &str, page: &str, view: &str) {
    c.goto(&format!("{base}/ui/#/{page}")).await.unwrap();
    wait_js(
        c,
        &format!("the {view} view"),
        &format!("return document.getElementById('view').dataset.view === '{view}'"),
    )
    .await;
}

/// Saves the page as `target/ui-screenshots/<name>.png`.
async fn screenshot(c: &Client, name: &str) {
    // The test binary is target/<profile>/deps/e2e-…: three up is target/.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.ancestors().nth(3).unwrap().join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.expect("a screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// A job whose task prints markup, then waits.
fn xss_job() -> Value {
    json!({
        "name": "markup",
        "task": {
            "image": image::DEMO_IMAGE,
            "command": ["sh", "-c", "echo '<script>window.pwned=1</script>'; echo '<img src=x onerror=window.pwned=2>'; sleep 3600"],
            "resources": { "cpu": 0.1, "memory_mb": 16 }
        }
    })
}

/// The dashboard against one node, check by check: the jobs page lists a job
/// submitted before it loaded, and one submitted through the API while it is
/// open (no reload: a marker set on the page survives); the nodes page shows
/// the node's cpu and memory bars with the capacity it registered and the use
/// of its allocations, and the topology its allocations; the editor shows the
/// API's refusal of a bad spec, then plans a typed YAML spec and runs it
/// (checked through the API); the job page shows its allocation with a port
/// link, a stats chart and its logs, and scales and reverts it; a task's
/// `<script>` log line shows as text and runs nothing; the events page lists
/// a stop as it happens; drain and undrain reach the node. Every page is
/// captured.
#[tokio::test]
async fn dashboard_pages_follow_the_cluster_in_a_real_browser() {
    if !engine().await {
        return;
    }
    let Some((chromium, chromedriver)) = browser_tools() else {
        return;
    };
    let solo = Solo::start("e2e-ui").await;
    let addr = solo.addr.clone();
    submit(&addr, &web_json("early", 1)).await.unwrap();
    submit(&addr, &xss_job()).await.unwrap();
    running_alloc(&addr, "early", Duration::from_secs(60)).await;
    let browser = Browser::start(&chromium, &chromedriver).await;
    let c = browser.client();

    // 1. A running job submitted before the page loaded.
    open(c, &addr, "jobs", "jobs").await;
    wait_js(
        c,
        "job early listed as running",
        "const r = document.querySelector('tr[data-job=\"early\"]'); return r && r.dataset.health === 'running'",
    )
    .await;

    // 2. A job submitted through the API while the page is open appears without a reload.
    c.execute("window.__noReload = 'still here'; return true", Vec::new())
        .await
        .unwrap();
    submit(&addr, &web_json("late", 1)).await.unwrap();
    wait_js(
        c,
        "job late to appear",
        "return document.querySelector('tr[data-job=\"late\"]') !== null",
    )
    .await;
    let marker = c
        .execute("return window.__noReload || null", Vec::new())
        .await
        .unwrap();
    assert_eq!(marker, "still here", "the jobs page reloaded");
    running_alloc(&addr, "late", Duration::from_secs(60)).await;
    wait_js(
        c,
        "job late to run",
        "const r = document.querySelector('tr[data-job=\"late\"]'); return r && r.dataset.health === 'running'",
    )
    .await;
    screenshot(c, "jobs").await;

    // 3. The node with its capacity bars (the test node registers 2 cpu, 2048 MB).
    open(c, &addr, "nodes", "nodes").await;
    let node = &solo.spec.id;
    let bars = wait_js(
        c,
        "the node's bars",
        &format!(
            "const n = document.querySelector('[data-node=\"{node}\"]');
             if (!n) return null;
             const bar = (k) => n.querySelector('.bar[data-kind=\"' + k + '\"]');
             if (!bar('cpu') || !bar('memory')) return null;
             if (Number(bar('cpu').dataset.used) <= 0) return null; // use shows once the jobs are counted
             return ['cpu', 'memory'].map((k) => ({{ kind: k, used: Number(bar(k).dataset.used),
               capacity: Number(bar(k).dataset.capacity), width: bar(k).firstChild.getBoundingClientRect().width }}));"
        ),
    )
    .await;
    assert_eq!(bars[0]["capacity"], 2.0, "{bars}");
    assert_eq!(bars[1]["capacity"], 2048.0, "{bars}");
    for b in bars.as_array().unwrap() {
        assert!(b["used"].as_f64().unwrap() > 0.0, "{bars}");
        assert!(b["width"].as_f64().unwrap() > 0.0, "a bar drawn: {bars}");
    }
    screenshot(c, "nodes").await;

    open(c, &addr, "topology", "topology").await;
    wait_js(
        c,
        "allocations in the node's box",
        &format!(
            "return document.querySelectorAll('[data-node=\"{node}\"] .topo-alloc').length >= 3"
        ),
    )
    .await;
    screenshot(c, "topology").await;

    // 4. The editor: a refused spec shows the API's own words; a typed spec is planned, then run.
    open(c, &addr, "editor", "editor").await;
    let text = c.find(Locator::Id("editor-text")).await.unwrap();
    text.send_keys("name: typed\nreplicas: -1\n").await.unwrap();
    click(c, "#plan-btn").await;
    let refusal = wait_js(
        c,
        "the plan's refusal",
        "const e = document.querySelector('#editor-result .api-error'); return e && e.innerText",
    )
    .await;
    let refusal = refusal.as_str().unwrap();
    assert!(
        refusal.contains("invalid job spec") && refusal.contains("replicas"),
        "{refusal}"
    );
    text.clear().await.unwrap();
    let yaml = format!(
        "name: typed\nreplicas: 1\ntask:\n  image: {}\n  command: [httpd, -f, -p, \"80\", -h, /www]\n  ports: [{{name: http, container_port: 80}}]\n  resources: {{cpu: 0.1, memory_mb: 32}}\n",
        image::DEMO_IMAGE
    );
    text.send_keys(&yaml).await.unwrap();
    click(c, "#plan-btn").await;
    let plan = wait_js(
        c,
        "the plan",
        "const p = document.querySelector('#editor-result .plan');
         return p && !document.getElementById('run-btn').disabled && { ...p.dataset, diff: p.innerText }",
    )
    .await;
    assert_eq!(plan["job"], "typed", "{plan}");
    assert_eq!(plan["create"], "1", "{plan}");
    assert!(
        plan["diff"]
            .as_str()
            .unwrap()
            .contains("+  \"name\": \"typed\""),
        "{plan}"
    );
    screenshot(c, "editor").await;
    click(c, "#run-btn").await;
    wait_js(
        c,
        "the submission's answer",
        "const d = document.getElementById('run-done'); return d && d.dataset.job === 'typed'",
    )
    .await;
    let typed = running_alloc(&addr, "typed", Duration::from_secs(60)).await;

    // The job page: its allocation, a chart drawn from the stats history, its logs.
    open(c, &addr, "jobs/typed", "job").await;
    wait_js(
        c,
        "the allocation, its chart and its logs",
        &format!(
            "return document.querySelector('tr[data-alloc=\"{typed}\"] a[data-port=\"http\"]') !== null
               && document.querySelector('.chart[data-alloc=\"{typed}\"] .plots:not([hidden])') !== null
               && document.querySelector('#logs[data-alloc=\"{typed}\"]') !== null"
        ),
    )
    .await;
    screenshot(c, "job").await;

    // Scale (the spec read, changed and written back), then revert to version 1.
    let scale = c.find(Locator::Id("scale-input")).await.unwrap();
    scale.clear().await.unwrap();
    scale.send_keys("2").await.unwrap();
    click(c, "#scale-btn").await;
    let job_is = async |version: u64, replicas: u64| {
        wait_for(
            &format!("typed at version {version} with {replicas} replicas"),
            PAGE_WAIT,
            async || {
                let j = get_json(&format!("{addr}/v1/jobs/typed")).await?;
                (j["version"] == version && j["spec"]["replicas"] == replicas).then_some(())
            },
        )
        .await
    };
    job_is(2, 2).await;
    wait_js(
        c,
        "version 1 to revert to",
        "return document.querySelector('#revert-version option[value=\"1\"]') !== null",
    )
    .await;
    click(c, "#revert-version option[value=\"1\"]").await;
    click(c, "#revert-btn").await;
    job_is(3, 1).await;

    // 5. Markup in a log line is text, and runs nothing.
    let markup = running_alloc(&addr, "markup", Duration::from_secs(60)).await;
    open(c, &addr, &format!("allocs/{markup}"), "alloc").await;
    let lines = wait_js(
        c,
        "the markup log lines",
        "const l = [...document.querySelectorAll('#logs .log-line')].map((e) => e.textContent);
         return l.length >= 2 && l",
    )
    .await;
    assert_eq!(lines[0], "<script>window.pwned=1</script>", "{lines}");
    assert_eq!(lines[1], "<img src=x onerror=window.pwned=2>", "{lines}");
    let sneaked = c
        .execute(
            "return [typeof window.pwned, document.querySelectorAll('#logs script, #logs img').length]",
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(sneaked, json!(["undefined", 0]));
    wait_js(
        c,
        "the allocation's chart",
        "return document.querySelector('.chart .plots:not([hidden]), .chart .error, .chart .note') !== null",
    )
    .await;
    screenshot(c, "alloc").await;

    // The events page: changes kept from before it opened, and new ones as they come.
    open(c, &addr, "events", "events").await;
    wait_js(
        c,
        "events listed",
        "return document.querySelectorAll('#events-list tbody tr').length > 0",
    )
    .await;
    let stop = reqwest::Client::new()
        .delete(format!("{addr}/v1/jobs/late"))
        .send()
        .await
        .unwrap();
    assert!(stop.status().is_success());
    wait_js(
        c,
        "job late's stop as an event",
        "return [...document.querySelectorAll('#events-list tr[data-topic=\"Job\"]')].some((r) => r.innerText.includes('late') && r.innerText.includes('stopped'))",
    )
    .await;
    screenshot(c, "events").await;

    // Drain and undrain from the nodes page.
    open(c, &addr, "nodes", "nodes").await;
    for (verb, draining) in [("drain", true), ("undrain", false)] {
        let button = format!("[data-node=\"{node}\"] button[data-action=\"{verb}\"]");
        // The last action's answer is cleared first, so what is read below
        // is this click's (the view's text is shown if none comes).
        c.execute(
            "document.getElementById('action-result').replaceChildren()",
            Vec::new(),
        )
        .await
        .unwrap();
        click(c, &button).await;
        let said = wait_js(
            c,
            &format!("the answer to {verb}"),
            "return document.getElementById('action-result').innerText",
        )
        .await;
        let want = if draining {
            "draining"
        } else {
            "no longer draining"
        };
        assert!(
            said.as_str().is_some_and(|t| t.contains(want)),
            "{verb} answered: {said}"
        );
        wait_for(
            &format!("{node} draining={draining}"),
            PAGE_WAIT,
            async || {
                let nodes = get_json(&format!("{addr}/v1/nodes")).await?;
                (nodes[0]["draining"] == draining).then_some(())
            },
        )
        .await;
    }

    browser.close().await;
}
