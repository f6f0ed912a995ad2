//! One node: the walking skeleton's whole path, a kill -9 and restart, and an
//! engine that goes away and comes back.

use orion_core::testing::OutputWithin;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// A job submitted through the CLI runs in Docker, its page answers on the
/// reported host port (with the spec's environment), `job status` shows the port
/// mapping (and into a closed pipe ends quietly), and `job stop` removes the
/// containers.
#[tokio::test]
async fn job_runs_serves_its_page_and_stops() {
    if !engine().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spec = NodeSpec::new(&node_id("e2e-web"), dir.path());
    let _cleanup = Containers(vec![spec.id.clone()]);
    let node = Node::start_ready(&spec).await;
    let addr = spec.addr();

    let file = web_spec(dir.path(), "web", 2);
    let out = cli(&addr, &["job", "run", "-d", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("job web submitted: version 1"));

    let allocs = wait_for("2 running replicas", Duration::from_secs(60), async || {
        let r = running(&addr, "web").await;
        (r.len() == 2).then_some(r)
    })
    .await;
    for a in &allocs {
        let port = &a["ports"][0];
        let url = format!(
            "http://{}:{}",
            port["host_ip"].as_str().unwrap(),
            port["host_port"]
        );
        let page = wait_for("the page", Duration::from_secs(20), async || {
            get_text(&format!("{url}/")).await
        })
        .await;
        assert!(page.contains("Hello from Orion"), "{page}");
        let env = get_text(&format!("{url}/cgi-bin/env")).await.unwrap();
        assert!(env.contains("GREETING=hi"), "{env}");
    }

    // `job status web | head -1`: a closed stdout ends the command quietly.
    for args in [
        &["job", "status", "web"][..],
        &["job", "list"],
        &["node", "list"],
    ] {
        let out = cli_closed_stdout(&addr, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?} into a closed pipe: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }

    let status = cli(&addr, &["job", "status", "web"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("running 2/2"), "{text}");
    let p0 = &allocs[0]["ports"][0];
    let mapping = format!("http 80/tcp -> 127.0.0.1:{}", p0["host_port"]);
    assert!(text.contains(&mapping), "{text} lacks {mapping}");
    let json: Value =
        serde_json::from_slice(&cli(&addr, &["job", "status", "web", "--json"]).stdout).unwrap();
    assert_eq!(json["spec"]["replicas"], 2);

    let list = String::from_utf8_lossy(&cli(&addr, &["node", "list"]).stdout).to_string();
    assert!(list.contains(&spec.id) && list.contains("ready"), "{list}");

    assert_eq!(Containers::of(&spec.id).len(), 2);
    let out = cli(&addr, &["job", "stop", "web"]);
    assert!(out.status.success());
    wait_for(
        "the containers to go",
        Duration::from_secs(60),
        async || Containers::of(&spec.id).is_empty().then_some(()),
    )
    .await;
    let bad = cli(&addr, &["job", "status", "nope"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no job named \"nope\""));
    drop(node);
}

/// SIGKILL the node mid-run, start it again on the same data dir: the same job and
/// allocations are there, the containers are adopted (same ids), none duplicated.
#[tokio::test]
async fn restart_after_kill_adopts_containers() {
    if !engine().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spec = NodeSpec::new(&node_id("e2e-kill"), dir.path());
    let _cleanup = Containers(vec![spec.id.clone()]);
    let mut node = Node::start_ready(&spec).await;
    let addr = spec.addr();
    let file = web_spec(dir.path(), "kept", 3);
    assert!(cli(&addr, &["job", "run", "-d", file.to_str().unwrap()])
        .status
        .success());
    let before = wait_for("3 running", Duration::from_secs(60), async || {
        let r = running(&addr, "kept").await;
        (r.len() == 3).then_some(r)
    })
    .await;
    let containers_before = {
        let mut c = Containers::of(&spec.id);
        c.sort();
        c
    };
    assert_eq!(containers_before.len(), 3);

    node.kill9();
    let mut node = Node::start(&spec);
    let after = wait_for(
        "the restarted node to report 3 running",
        Duration::from_secs(60),
        async || {
            let r = running(&addr, "kept").await;
            (r.len() == 3).then_some(r)
        },
    )
    .await;
    let ids = |v: &[Value]| {
        let mut ids: Vec<String> = v
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&before), ids(&after), "same allocations after restart");
    let job = get_json(&format!("{addr}/v1/jobs/kept")).await.unwrap();
    assert_eq!(job["version"], 1);
    // Three whole agent passes after the restart (counted by the node), so
    // any duplicate it were to start would be there by now.
    let passes = async || {
        let text = get_text(&format!("{addr}/metrics")).await?;
        text.lines()
            .find(|l| l.starts_with("orion_agent_passes_total "))?
            .rsplit(' ')
            .next()?
            .parse::<f64>()
            .ok()
    };
    let from = wait_for("the agent's pass count", Duration::from_secs(30), passes).await;
    wait_for(
        "three more agent passes",
        Duration::from_secs(60),
        async || passes().await.filter(|n| *n >= from + 3.0),
    )
    .await;
    let mut containers_after = Containers::of(&spec.id);
    containers_after.sort();
    assert_eq!(
        containers_before,
        containers_after,
        "containers adopted, not recreated\n{}",
        node.log()
    );
    for a in ids(&after) {
        assert_eq!(
            Containers::running_of_alloc(&a).len(),
            1,
            "one container for {a}"
        );
    }
    node.terminate();
}

/// A container killed behind Orion's back is started again.
#[tokio::test]
async fn a_container_killed_behind_orions_back_is_restarted() {
    if !engine().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spec = NodeSpec::new(&node_id("e2e-restart"), dir.path());
    let _cleanup = Containers(vec![spec.id.clone()]);
    let _node = Node::start_ready(&spec).await;
    let addr = spec.addr();
    let file = web_spec(dir.path(), "phoenix", 1);
    assert!(cli(&addr, &["job", "run", "-d", file.to_str().unwrap()])
        .status
        .success());
    let alloc = wait_for("running", Duration::from_secs(60), async || {
        running(&addr, "phoenix").await.pop()
    })
    .await;
    let id = alloc["id"].as_str().unwrap().to_string();
    let container = Containers::running_of_alloc(&id).pop().unwrap();
    let out = std::process::Command::new("docker")
        .args(["kill", &container])
        .output_within(orion_core::testing::DOCKER_CALL)
        .unwrap();
    assert!(out.status.success());
    let restarted = wait_for("a restart", Duration::from_secs(30), async || {
        let a = get_json(&format!("{addr}/v1/jobs/phoenix")).await?;
        let a = a["allocations"][0].clone();
        (a["restarts"].as_u64() >= Some(1) && a["state"] == "running").then_some(a)
    })
    .await;
    assert_eq!(restarted["id"], alloc["id"]);
    assert_eq!(
        Containers::running_of_alloc(&id),
        vec![container],
        "restarted in place"
    );
}

/// An image that is not there and cannot be pulled fails the allocation with a
/// message naming the image; nothing hangs and the node stays healthy. A job too
/// big for the node stays pending, and `job status` shows the scheduler's reason.
#[tokio::test]
async fn a_missing_image_is_reported_on_the_allocation() {
    if !engine().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spec = NodeSpec::new(&node_id("e2e-noimage"), dir.path());
    let _cleanup = Containers(vec![spec.id.clone()]);
    let _node = Node::start_ready(&spec).await;
    let addr = spec.addr();
    let path = dir.path().join("ghost.json");
    std::fs::write(
        &path,
        r#"{"name":"ghost","task":{"image":"orion-test/does-not-exist:404"}}"#,
    )
    .unwrap();
    assert!(cli(&addr, &["job", "run", "-d", path.to_str().unwrap()])
        .status
        .success());
    let msg = wait_for("a failure message", Duration::from_secs(90), async || {
        let j = get_json(&format!("{addr}/v1/jobs/ghost")).await?;
        let a = &j["allocations"][0];
        (a["state"] == "failed").then(|| a["message"].as_str().unwrap_or("").to_string())
    })
    .await;
    assert!(msg.contains("orion-test/does-not-exist:404"), "{msg}");
    let health = get_json(&format!("{addr}/health")).await.unwrap();
    assert_eq!(health["status"], "healthy");
    assert!(
        health["components"]["runtime"]["version"].is_string(),
        "{health}"
    );

    // A job too big for the node is accepted and waits, and `job status` says why.
    std::fs::write(
        &path,
        r#"{"name":"huge","task":{"image":"orion-test/web:1","resources":{"cpu":0.1,"memory_mb":64000}}}"#,
    )
    .unwrap();
    assert!(cli(&addr, &["job", "run", "-d", path.to_str().unwrap()])
        .status
        .success());
    let status = wait_for("a pending reason", Duration::from_secs(30), async || {
        let out = cli(&addr, &["job", "status", "huge"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.contains("insufficient memory").then_some(text)
    })
    .await;
    assert!(
        status.contains("pending")
            && status.contains("1 node: insufficient memory (need 64000 MB, free "),
        "{status}"
    );
    // An honest status: pending with nothing running, never "running 0/1".
    assert!(
        status.starts_with("job huge  type service  version 1  status pending  running 0/1"),
        "{status}"
    );
    let list = String::from_utf8_lossy(&cli(&addr, &["job", "list"]).stdout).to_string();
    let line = list
        .lines()
        .find(|l| l.starts_with("huge"))
        .unwrap_or_default();
    assert!(line.contains("pending") && line.ends_with("0/1"), "{list}");
    let json: Value =
        serde_json::from_slice(&cli(&addr, &["job", "list", "--json"]).stdout).unwrap();
    let huge = json
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "huge")
        .unwrap();
    assert_eq!(
        (&huge["status"], &huge["health"]),
        (&"running".into(), &"pending".into())
    );
    let nodes: Value =
        serde_json::from_slice(&cli(&addr, &["node", "list", "--json"]).stdout).unwrap();
    assert_eq!(nodes.as_array().map(Vec::len), Some(1), "{nodes}");
    // Go templates over the same JSON; one that does not parse is refused
    // before the node is asked anything.
    let out = cli(
        &addr,
        &[
            "job",
            "list",
            "-t",
            "{{range .}}{{.name}}={{.health}};{{end}}",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("huge=pending;"),
        "{out:?}"
    );
    let out = cli(
        &addr,
        &[
            "job",
            "status",
            "huge",
            "-t",
            "{{.spec.name}} {{.health}} {{.running}}/{{.spec.replicas}}",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "huge pending 0/1");
    let out = cli("http://127.0.0.1:1", &["node", "list", "-t", "{{range .}"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success() && err.contains("the template does not parse"),
        "{err}"
    );
}

/// The engine goes away: the node reports itself unhealthy (`/health` 503, node
/// status `unhealthy` with why) and its allocations say why; when the engine comes
/// back, all recovers without a restart of the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_engine_makes_the_node_unhealthy_until_it_returns() {
    if !engine().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = EngineProxy::start(&dir.path().join("docker.sock"));
    let mut spec = NodeSpec::new(&node_id("e2e-engine"), dir.path());
    spec.env.push(("DOCKER_HOST".into(), proxy.docker_host()));
    let _cleanup = Containers(vec![spec.id.clone()]);
    let _node = Node::start_ready(&spec).await;
    let addr = spec.addr();
    let file = web_spec(dir.path(), "steady", 1);
    assert!(cli(&addr, &["job", "run", "-d", file.to_str().unwrap()])
        .status
        .success());
    wait_for("running", Duration::from_secs(60), async || {
        running(&addr, "steady").await.pop()
    })
    .await;

    proxy.cut();
    let reason = wait_for("unhealthy", Duration::from_secs(30), async || {
        let r = reqwest::get(format!("{addr}/health")).await.ok()?;
        (r.status() == 503).then_some(())?;
        let body: Value = r.json().await.ok()?;
        body["reason"].as_str().map(str::to_string)
    })
    .await;
    assert!(reason.contains("unavailable"), "{reason}");
    let node = wait_for(
        "node unhealthy in state",
        Duration::from_secs(30),
        async || {
            let nodes = get_json(&format!("{addr}/v1/nodes")).await?;
            let n = nodes[0].clone();
            (n["status"] == "unhealthy").then_some(n)
        },
    )
    .await;
    assert!(node["health"].as_str().unwrap().contains("unavailable"));
    let alloc = wait_for("allocation says why", Duration::from_secs(30), async || {
        let j = get_json(&format!("{addr}/v1/jobs/steady")).await?;
        let a = j["allocations"][0].clone();
        (a["state"] == "failed").then_some(a)
    })
    .await;
    assert!(
        alloc["message"].as_str().unwrap().contains("unavailable"),
        "{alloc}"
    );

    proxy.resume();
    wait_for("healthy again", Duration::from_secs(30), async || {
        get_json(&format!("{addr}/health"))
            .await
            .filter(|h| h["status"] == "healthy")
    })
    .await;
    wait_for("running again", Duration::from_secs(30), async || {
        running(&addr, "steady").await.pop()
    })
    .await;
    let nodes = get_json(&format!("{addr}/v1/nodes")).await.unwrap();
    assert_eq!(nodes[0]["status"], "ready");
}

/// Joining through an address where no member answers fails with a message that
/// names it, within the join timeout, and the node exits non-zero; the error is
/// one line, with no backtrace although `RUST_BACKTRACE` is set.
#[tokio::test]
async fn joining_a_dead_peer_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let spec = NodeSpec::new(&node_id("e2e-deadjoin"), dir.path());
    let dead = format!("127.0.0.1:{}", free_port());
    let (lo, hi) = spec.port_range;
    let out = std::process::Command::new(BIN)
        .args([
            "agent",
            "--node-id",
            &spec.id,
            "--join",
            &dead,
            "--join-timeout",
            "2",
            // A plain join (a secure one would first ask for a join token).
            "--insecure-dev",
        ])
        .arg("--data-dir")
        .arg(&spec.data_dir)
        .args([
            "--http",
            &spec.http.to_string(),
            "--raft",
            &spec.raft.to_string(),
        ])
        .args([
            "--gossip",
            &spec.gossip.to_string(),
            "--port-range",
            &format!("{lo}-{hi}"),
        ])
        .env("ORION_LOG", "warn")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("could not join the cluster through {dead}"))
            && err.contains("no member answers"),
        "{err}"
    );
    // One clear line, whatever RUST_BACKTRACE says (it is set in this
    // environment): no backtrace without --debug.
    assert!(!err.contains("backtrace"), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("error: join: could not join")),
        "{err}"
    );
}

/// `apply -f`: a directory of specs (a YAML stream, a JSON array) with one bad
/// file applies nothing and names the file and field; without it all are
/// written in one go and run. A Compose file with five services converts (what
/// Orion does not carry out is listed as warnings) and runs; a Compose version
/// Orion does not read is refused, writing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_takes_many_specs_and_compose_files() {
    if !engine().await {
        return;
    }
    // Secrets are kept in memory: a tmpfs of the test's own.
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let shm_dir = shm.path().display().to_string();
    let solo = Solo::start_with("e2e-apply", |spec, _| {
        spec.extra.extend(["--secrets-dir".into(), shm_dir.clone()]);
    })
    .await;
    let addr = solo.addr.clone();
    let dir = solo.dir.path();
    let specs = dir.join("specs");
    std::fs::create_dir(&specs).unwrap();
    let web = |name: &str| {
        let mut v = web_json(name, 1);
        v["task"]["resources"]["memory_mb"] = 16.into();
        v
    };
    let yaml = |v: &Value| serde_saphyr::to_string(v).unwrap();
    std::fs::write(
        specs.join("a.yaml"),
        format!("{}---\n{}", yaml(&web("a1")), yaml(&web("a2"))),
    )
    .unwrap();
    std::fs::write(
        specs.join("b.json"),
        serde_json::to_string(&[web("b1")]).unwrap(),
    )
    .unwrap();
    std::fs::write(specs.join("notes.txt"), "not a spec").unwrap();
    let mut bad = web("c1");
    bad["task"]["nope"] = 1.into();
    std::fs::write(specs.join("c.yaml"), yaml(&bad)).unwrap();

    let out = cli(&addr, &["apply", "-f", specs.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert!(err.contains("c.yaml: task.nope: unknown field"), "{err}");
    assert!(err.contains("nothing applied: 1 problem"), "{err}");
    let jobs = get_json(&format!("{addr}/v1/jobs?consistent=true"))
        .await
        .unwrap();
    assert_eq!(jobs, Value::Array(vec![]), "nothing was written");

    std::fs::remove_file(specs.join("c.yaml")).unwrap();
    let out = cli(&addr, &["apply", "-f", specs.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["a1", "a2", "b1"] {
        assert!(
            said.contains(&format!("job {name} submitted: version 1")),
            "{said}"
        );
    }

    let stack = dir.join("docker-compose.yaml");
    let mut services = String::new();
    for name in ["front", "api", "auth", "cache", "jobs"] {
        services.push_str(&format!(
            "  {name}:\n    image: {}\n    command: httpd -f -p 80 -h /www\n    environment: [ROLE={name}]\n    ports: [\"80\"]\n    networks: [backend]\n    deploy:\n      replicas: 1\n      resources: {{ limits: {{ cpus: '0.1', memory: 16M }} }}\n      update_config: {{ parallelism: 1 }}\n",
            orion_runtime::image::DEMO_IMAGE
        ));
    }
    // The last service mounts a secret from a file beside the Compose file.
    services.push_str("    secrets: [db_password]\n");
    std::fs::write(dir.join("db_password.txt"), "s3cr3t-from-compose").unwrap();
    std::fs::write(
        &stack,
        format!("version: '3.8'\nservices:\n{services}networks:\n  backend: {{}}\nsecrets:\n  db_password: {{ file: ./db_password.txt }}\n  unused: {{ external: true, name: missing-one }}\n"),
    )
    .unwrap();
    // An external secret that does not exist: nothing applied, one line each.
    let out = cli(&addr, &["apply", "-f", stack.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert!(
        err.contains("secrets.unused: the external secret \"missing-one\" does not exist"),
        "{err}"
    );
    assert!(
        get_json(&format!("{addr}/v1/jobs/front")).await.is_none(),
        "nothing written"
    );
    assert_eq!(
        get_json(&format!("{addr}/v1/secrets")).await,
        Some(serde_json::json!([])),
        "no secret created"
    );
    std::fs::write(
        &stack,
        format!("version: '3.8'\nservices:\n{services}networks:\n  backend: {{}}\nsecrets:\n  db_password: {{ file: ./db_password.txt }}\n"),
    )
    .unwrap();
    let out = cli(&addr, &["apply", "-f", stack.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: ") && err.contains("services.front.networks: not supported"),
        "{err}"
    );
    assert!(
        !err.contains("update_config"),
        "update_config maps to the update block: {err}"
    );
    for name in ["a1", "a2", "b1", "front", "api", "auth", "cache", "jobs"] {
        wait_for(
            &format!("{name} running"),
            Duration::from_secs(60),
            async || (running(&addr, name).await.len() == 1).then_some(()),
        )
        .await;
    }
    let env = running(&addr, "cache").await[0]["ports"][0]["host_port"].clone();
    let page = get_text(&format!("http://127.0.0.1:{env}/cgi-bin/env"))
        .await
        .unwrap_or_default();
    assert!(page.contains("ROLE=cache"), "{page}");
    assert!(
        err.contains("secrets.db_password: kept as the Orion secret \"db-password\""),
        "{err}"
    );
    let alloc = running(&addr, "jobs").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let read: Value = http()
        .post(format!("{addr}/v1/allocations/{alloc}/exec"))
        .json(&serde_json::json!({ "command": ["cat", "/run/secrets/db_password"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["stdout"], "s3cr3t-from-compose", "{read}");
    // Applied again: the secret is kept (said), the jobs unchanged.
    let out = cli(&addr, &["apply", "-f", stack.to_str().unwrap()]);
    let again = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{again}");
    assert!(
        again.contains("secret \"db-password\" exists: kept"),
        "{again}"
    );

    std::fs::write(&stack, "version: '2.1'\nservices: { late: { image: x } }\n").unwrap();
    let out = cli(&addr, &["apply", "-f", stack.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert!(
        err.contains("Compose file format \"2.1\" is not supported"),
        "{err}"
    );
    assert!(
        get_json(&format!("{addr}/v1/jobs/late")).await.is_none(),
        "nothing written"
    );

    // `job plan` writes nothing and prints the index `--check-index` wants.
    let planned = dir.join("planned.json");
    std::fs::write(&planned, serde_json::to_string(&web("planned")).unwrap()).unwrap();
    let out = cli(&addr, &["job", "plan", planned.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("job planned: new") && said.contains("+ 1 to create"),
        "{said}"
    );
    assert!(said.contains("job modify index 0"), "{said}");
    assert!(
        get_json(&format!("{addr}/v1/jobs/planned")).await.is_none(),
        "a plan writes nothing"
    );
    let out = cli(
        &addr,
        &[
            "job",
            "run",
            "-d",
            planned.to_str().unwrap(),
            "--check-index",
            "7",
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("changed since index 7"),
        "{out:?}"
    );
    assert!(
        get_json(&format!("{addr}/v1/jobs/planned")).await.is_none(),
        "refused: nothing written"
    );
    let out = cli(
        &addr,
        &[
            "job",
            "run",
            "-d",
            planned.to_str().unwrap(),
            "--check-index",
            "0",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(cli(&addr, &["job", "stop", "planned"]).status.success());
    for name in ["a1", "a2", "b1", "front", "api", "auth", "cache", "jobs"] {
        assert!(cli(&addr, &["job", "stop", name]).status.success());
    }
}

/// Named volumes on Docker: a task writes to one, is replaced by the job's next
/// version, and the new task reads the file on the same node. A volume in use
/// cannot be deleted; once deleted its engine volume is removed. A host path is
/// mounted only under the node's `--host-volume`; another is explained as
/// pending. A volume name that is not DNS-safe is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_volumes_keep_data_across_versions_and_host_paths_are_fenced() {
    if !engine().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("hello.txt"), "from the host\n").unwrap();
    let mut spec = NodeSpec::new(&node_id("e2e-vol"), dir.path());
    spec.extra = vec!["--host-volume".into(), shared.display().to_string()];
    let _cleanup = Containers(vec![spec.id.clone()]);
    let _node = Node::start_ready(&spec).await;
    let addr = spec.addr();
    let engine_volume = format!("orion-{}-data", spec.id);
    let _volume_cleanup = RemoveVolume(engine_volume.clone());

    let out = cli(&addr, &["volume", "create", "Bad_Name"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not DNS-safe"));
    let out = cli(&addr, &["volume", "create", "data"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = String::from_utf8_lossy(&cli(&addr, &["volume", "list"]).stdout).to_string();
    assert!(
        list.contains("data") && list.contains(&spec.id) && list.contains("ready"),
        "{list}"
    );

    let job = |version: &str, script: &str| {
        let mut v = web_json("store", 1);
        v["task"]["command"] = serde_json::json!(["sh", "-c", script]);
        v["task"]["env"] = serde_json::json!({ "V": version });
        v["task"]["volumes"] = serde_json::json!([
            { "name": "data", "target": "/data" },
            { "host_path": shared.display().to_string(), "target": "/shared", "read_only": true }
        ]);
        v
    };
    let serve = "exec httpd -f -p 80 -h /www";
    submit(
        &addr,
        &job("1", &format!("echo v1-was-here > /data/note; {serve}")),
    )
    .await
    .unwrap();
    let first = wait_for("v1 running", Duration::from_secs(60), async || {
        running(&addr, "store").await.pop()
    })
    .await;
    // Running is reported once the container starts: wait until its command
    // has written the file before replacing it.
    let v1 = first["id"].as_str().unwrap().to_string();
    wait_for("v1 wrote its note", Duration::from_secs(30), async || {
        let out = cli(&addr, &["alloc", "exec", &v1, "cat", "/data/note"]);
        String::from_utf8_lossy(&out.stdout)
            .contains("v1-was-here")
            .then_some(())
    })
    .await;
    submit(&addr, &job("2", serve)).await.unwrap();
    let second = wait_for("v2 running", Duration::from_secs(60), async || {
        running(&addr, "store")
            .await
            .into_iter()
            .find(|a| a["job_version"] == 2)
    })
    .await;
    assert_ne!(first["id"], second["id"], "the task was replaced");
    let id = second["id"].as_str().unwrap();
    let out = cli(&addr, &["alloc", "exec", id, "cat", "/data/note"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "v1-was-here\n",
        "{out:?}"
    );
    let out = cli(&addr, &["alloc", "exec", id, "cat", "/shared/hello.txt"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from the host\n");
    let out = cli(
        &addr,
        &["alloc", "exec", id, "sh", "-c", "echo x > /shared/new"],
    );
    assert!(!out.status.success(), "the host path is read-only");

    let out = cli(&addr, &["volume", "delete", "data"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("mounted by job store"));

    // A host path the node does not allow: pending, and why.
    let mut fenced = web_json("fenced", 1);
    fenced["task"]["volumes"] = serde_json::json!([{ "host_path": "/etc", "target": "/host-etc" }]);
    submit(&addr, &fenced).await.unwrap();
    let why = wait_for("a pending reason", Duration::from_secs(30), async || {
        let j = get_json(&format!("{addr}/v1/jobs/fenced")).await?;
        j["allocations"][0]["message"].as_str().map(str::to_string)
    })
    .await;
    assert_eq!(why, "1 node: host path /etc not allowed");

    assert!(cli(&addr, &["job", "stop", "store"]).status.success());
    assert!(cli(&addr, &["job", "stop", "fenced"]).status.success());
    wait_for("the volume deleted", Duration::from_secs(60), async || {
        cli(&addr, &["volume", "delete", "data"])
            .status
            .success()
            .then_some(())
    })
    .await;
    wait_for("the volume gone", Duration::from_secs(30), async || {
        let v = get_json(&format!("{addr}/v1/volumes")).await?;
        v.as_array()?.is_empty().then_some(())
    })
    .await;
    let ls = std::process::Command::new("docker")
        .args([
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("name={engine_volume}"),
        ])
        .output_within(orion_core::testing::DOCKER_CALL)
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ls.stdout).trim(),
        "",
        "the engine volume is removed"
    );
}

/// Removes an engine volume this test made, when dropped (also on failure).
struct RemoveVolume(String);

impl Drop for RemoveVolume {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["volume", "rm", "-f", &self.0])
            .output_within(orion_core::testing::DOCKER_CALL);
    }
}

/// `alloc exec -i` passes stdin through and returns the command's exit code;
/// `alloc exec -i -t`, driven through tmux as a person at a terminal, runs an
/// interactive shell on a TTY the size of the terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_exec_runs_a_shell() {
    if !engine().await {
        return;
    }
    let solo = Solo::start("e2e-exec").await;
    let addr = solo.addr.clone();
    let spec = &solo.spec;
    submit(&addr, &web_json("shell", 1)).await.unwrap();
    let alloc = wait_for("a running task", Duration::from_secs(60), async || {
        running(&addr, "shell").await.pop()
    })
    .await;
    let id = alloc["id"].as_str().unwrap().to_string();

    // Piped stdin, no TTY: output and exit code come back.
    let mut child = std::process::Command::new(BIN)
        .args(["--addr", &addr, "alloc", "exec", "-i", &id, "sh"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"echo hi-$((1+2))\necho oops >&2\nexit 3\n")
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi-3\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    assert_eq!(out.status.code(), Some(3));

    // A person at a terminal: tmux types, the pane shows what they would see.
    if !tmux_available() {
        assert!(!orion_core::testing::in_ci(), "tmux is missing in CI");
        eprintln!("SKIP: tmux not installed");
        return;
    }
    let session = Tmux::new(&format!("{}-tty", spec.id));
    session.start(&format!(
        "{BIN} --addr {addr} alloc exec -i -t {id} sh; echo EXIT=$?; sleep 60"
    ));
    session.wait_for("a prompt", |screen| {
        screen.contains('#') || screen.contains('$')
    });
    session.keys(&["echo hi-$((2+3))", "Enter"]);
    session.wait_for("the echo", |screen| screen.contains("hi-5"));
    session.keys(&["stty size", "Enter"]);
    session.wait_for("the TTY's size", |screen| screen.contains("30 100"));
    session.keys(&["exit 4", "Enter"]);
    session.wait_for("the exit code", |screen| screen.contains("EXIT=4"));
}

fn tmux_available() -> bool {
    std::process::Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A detached tmux session 100×30, killed when dropped.
struct Tmux(String);

impl Tmux {
    fn new(name: &str) -> Tmux {
        Tmux(name.replace('.', "-"))
    }

    fn start(&self, command: &str) {
        let ok = std::process::Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &self.0,
                "-x",
                "100",
                "-y",
                "30",
                command,
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux new-session");
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.0];
        args.extend(keys);
        std::process::Command::new("tmux")
            .args(&args)
            .status()
            .unwrap();
    }

    fn screen(&self) -> String {
        let out = std::process::Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.0])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, what: &str, f: impl Fn(&str) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.screen();
            if f(&screen) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "tmux: no {what} within 20 s; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

/// Scaling 2 → 4 → 1 on Docker is made in place: the first allocation keeps its
/// id, container and host port throughout and answers every request made to it
/// meanwhile; only the difference is started or stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_starts_and_stops_only_the_difference() {
    if !engine().await {
        return;
    }
    let solo = Solo::start("e2e-scale").await;
    let addr = solo.addr.clone();
    let spec = &solo.spec;
    let web = |n: u32| {
        let mut v = web_json("scaled", n);
        v["task"]["resources"]["memory_mb"] = 16.into();
        v
    };
    submit(&addr, &web(2)).await.unwrap();
    let first = wait_for("2 running", Duration::from_secs(60), async || {
        let r = running(&addr, "scaled").await;
        (r.len() == 2).then(|| r.into_iter().find(|a| a["slot"] == 0))?
    })
    .await;
    let id = first["id"].as_str().unwrap().to_string();
    let port = first["ports"][0]["host_port"].as_u64().unwrap();
    let container = Containers::running_of_alloc(&id);
    assert_eq!(container.len(), 1);
    let url = format!("http://127.0.0.1:{port}/");
    wait_for("the page", Duration::from_secs(20), async || {
        get_text(&url).await
    })
    .await;

    // Ask the first replica every 50 ms while the job scales.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (stop, url) = (stop.clone(), url.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match get_text(&url).await {
                    Some(page) if page.contains("Hello from Orion") => ok += 1,
                    _ => failed += 1,
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (ok, failed)
        })
    };
    submit(&addr, &web(4)).await.unwrap();
    wait_for("4 running", Duration::from_secs(60), async || {
        (running(&addr, "scaled").await.len() == 4).then_some(())
    })
    .await;
    let out = cli(&addr, &["job", "scale", "scaled", "1"]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        said.contains("job scaled scaled 4 -> 1: version 3"),
        "{said}{out:?}"
    );
    let last = wait_for("1 left", Duration::from_secs(60), async || {
        let j = get_json(&format!("{addr}/v1/jobs/scaled")).await?;
        let live: Vec<Value> = j["allocations"]
            .as_array()?
            .iter()
            .filter(|a| a["desired"] == "run" && a["state"] == "running")
            .cloned()
            .collect();
        let others_gone = Containers::of(&spec.id).len() == 1;
        (live.len() == 1 && others_gone).then(|| live[0].clone())
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = poller.await.unwrap();
    assert_eq!(
        last["id"],
        id.as_str(),
        "the first allocation is the one left"
    );
    assert_eq!(last["job_version"], 3, "moved to each new version in place");
    assert_eq!(last["ports"][0]["host_port"].as_u64(), Some(port));
    assert_eq!(
        Containers::running_of_alloc(&id),
        container,
        "the same container"
    );
    assert!(ok > 0 && failed == 0, "{ok} answered, {failed} failed");
}

/// An update that cannot be placed (a selector no node has) leaves the running
/// version running — its page still answers — and the new version's
/// allocations say why they wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_cannot_be_placed_leaves_v1_running() {
    if !engine().await {
        return;
    }
    let solo = Solo::start("e2e-noplace").await;
    let addr = solo.addr.clone();
    let mut v1 = web_json("steady", 2);
    v1["task"]["resources"]["memory_mb"] = 16.into();
    submit(&addr, &v1).await.unwrap();
    let before = wait_for("v1 running", Duration::from_secs(60), async || {
        let r = running(&addr, "steady").await;
        (r.len() == 2).then_some(r)
    })
    .await;
    let mut v2 = v1.clone();
    v2["node_selectors"] = serde_json::json!({ "gpu": "true" });
    v2["task"]["env"] = serde_json::json!({ "V": "2" });
    // Both replaced at once, so both wait with the reason.
    v2["update"] = serde_json::json!({ "max_parallel": 2 });
    assert_eq!(submit(&addr, &v2).await, Ok(2));
    let why = wait_for("v2's reason", Duration::from_secs(30), async || {
        let j = get_json(&format!("{addr}/v1/jobs/steady")).await?;
        let waiting: Vec<String> = j["allocations"]
            .as_array()?
            .iter()
            .filter(|a| a["job_version"] == 2)
            .filter_map(|a| a["message"].as_str().map(str::to_string))
            .collect();
        (waiting.len() == 2).then(|| waiting[0].clone())
    })
    .await;
    assert_eq!(why, "1 node: selector gpu=true");
    tokio::time::sleep(Duration::from_secs(2)).await; // a few reconcile passes
    let after = running(&addr, "steady").await;
    let ids = |v: &[Value]| {
        let mut ids: Vec<String> = v
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&after), ids(&before), "v1 still runs");
    for a in &after {
        let url = format!("http://127.0.0.1:{}/", a["ports"][0]["host_port"]);
        assert!(get_text(&url)
            .await
            .unwrap_or_default()
            .contains("Hello from Orion"));
    }
}

/// Health checks against real containers: http, tcp and command checks pass
/// and the allocation turns healthy; an http probe to a port that accepts but
/// never answers times out and the task turns unhealthy and is restarted in
/// place; a task whose command check starts failing after a while is restarted
/// in place too, and is healthy again. `job status` shows the HEALTH column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_pass_time_out_and_restart_in_place() {
    if !engine().await {
        return;
    }
    let solo = Solo::start("e2e-health").await;
    let addr = solo.addr.clone();
    let fast = |c: Value| {
        let mut c = c;
        c["interval"] = "300ms".into();
        c["timeout"] = "200ms".into();
        c["grace"] = "0s".into();
        c["failures"] = 2.into();
        c
    };
    let mut good = web_json("checked", 1);
    good["task"]["health_checks"] = serde_json::json!([
        fast(
            serde_json::json!({ "type": "http", "port": "http", "path": "/", "body_contains": "Hello" })
        ),
        fast(serde_json::json!({ "type": "tcp", "port": "http" })),
        fast(serde_json::json!({ "type": "command", "command": ["true"] })),
    ]);
    let mut hangs = web_json("hangs", 1);
    hangs["task"]["command"] = serde_json::json!([
        "sh",
        "-c",
        // A listener that accepts every connection and never answers.
        "nc -ll -p 81 -e sleep 100 & exec httpd -f -p 80 -h /www"
    ]);
    hangs["task"]["ports"] = serde_json::json!([
        { "name": "http", "container_port": 80 },
        { "name": "slow", "container_port": 81 }
    ]);
    let mut hang_check = fast(serde_json::json!({ "type": "http", "port": "slow" }));
    hang_check["grace"] = "1s".into(); // until the listener is up
    hangs["task"]["health_checks"] = serde_json::json!([hang_check]);
    let mut flaky = web_json("flaky", 1);
    flaky["task"]["command"] = serde_json::json!([
        "sh",
        "-c",
        "touch /tmp/ok; (sleep 2; rm /tmp/ok) & exec httpd -f -p 80 -h /www"
    ]);
    // A command probe is a `docker exec`, which can take longer than 200 ms
    // on a busy engine: this one has 800 ms (every second).
    let mut flaky_check =
        fast(serde_json::json!({ "type": "command", "command": ["test", "-f", "/tmp/ok"] }));
    flaky_check["timeout"] = "800ms".into();
    flaky_check["interval"] = "1s".into();
    flaky["task"]["health_checks"] = serde_json::json!([flaky_check]);
    for job in [&good, &hangs, &flaky] {
        submit(&addr, job).await.unwrap();
    }
    let alloc_of = |job: &'static str| {
        let addr = addr.clone();
        async move {
            let j = get_json(&format!("{addr}/v1/jobs/{job}")).await?;
            j["allocations"]
                .as_array()?
                .iter()
                .find(|a| a["desired"] == "run")
                .cloned()
        }
    };
    wait_for("checked healthy", Duration::from_secs(30), async || {
        let a = alloc_of("checked").await?;
        (a["health"]["status"] == "healthy").then_some(())
    })
    .await;
    let status =
        String::from_utf8_lossy(&cli(&addr, &["job", "status", "checked"]).stdout).to_string();
    assert!(
        status.contains("HEALTH") && status.contains("healthy"),
        "{status}"
    );

    // Unhealthy with the failing probe's output (until its restart's grace
    // begins again), then restarted in place.
    let unhealthy = |job: &'static str, output: &'static str| async move {
        wait_for(
            &format!("{job} unhealthy"),
            Duration::from_secs(30),
            async || {
                let a = alloc_of(job).await?;
                let h = &a["health"];
                (h["status"] == "unhealthy" && h["output"].as_str()?.contains(output)).then_some(())
            },
        )
        .await
    };
    unhealthy("hangs", "no answer within 200ms").await;
    wait_for("hangs restarted", Duration::from_secs(30), async || {
        (alloc_of("hangs").await?["restarts"].as_u64()? >= 1).then_some(())
    })
    .await;
    unhealthy("flaky", "test -f /tmp/ok exited 1").await;
    wait_for(
        "flaky restarted and healthy",
        Duration::from_secs(40),
        async || {
            let a = alloc_of("flaky").await?;
            (a["restarts"].as_u64()? >= 1 && a["health"]["status"] == "healthy").then_some(())
        },
    )
    .await;
    for job in ["checked", "hangs", "flaky"] {
        cli(&addr, &["job", "stop", job]);
    }
}

/// `--log-format json`: every line the agent logs is one JSON object with its
/// timestamp, level, target and fields — and no colour codes.
#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    if !engine().await {
        return;
    }
    let solo = Solo::start_with("e2e-jsonlog", |spec, _| {
        spec.extra
            .extend(["--log-format".to_string(), "json".to_string()]);
    })
    .await;
    submit(&solo.addr, &web_json("logged", 1)).await.unwrap();
    wait_for("running", Duration::from_secs(60), async || {
        (running(&solo.addr, "logged").await.len() == 1).then_some(())
    })
    .await;
    let log = solo.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "{log}");
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        assert!(v["fields"]["message"].is_string(), "{line}");
        assert!(!line.contains('\u{1b}'), "no colour codes: {line}");
    }
    assert!(log.contains("\"message\":\"starting task\""), "{log}");
    // Lines inside an agent pass carry the pass's span and its node id.
    let in_pass = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["span"]["name"] == "agent_sync")
        .unwrap_or_else(|| panic!("no line from inside an agent pass:\n{log}"));
    assert_eq!(
        in_pass["span"]["node_id"],
        solo.spec.id.as_str(),
        "{in_pass}"
    );
}
