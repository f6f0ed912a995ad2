//! Bad job specs over the HTTP API of a whole node on the real Raft store: every
//! kind gets a 400 listing every problem with its field, and nothing is written —
//! the store's applied index does not move.

use std::sync::Arc;
use std::time::Duration;

use orion::Node;
use orion_core::testing::FakeRuntime;
use serde_json::Value;

const WEB: &str = r#"
name: web
type: service
replicas: 2
task:
  image: orion-test/web:1
  command: ["httpd", "-f", "-p", "80", "-h", "/www"]
  ports: [{ name: http, container_port: 80 }]
  resources: { cpu: 0.1, memory_mb: 32 }
  env: { GREETING: hi }
node_selectors: { disk: ssd }
"#;

async fn post(base: &str, ctype: &str, body: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/jobs"))
        .header("content-type", ctype)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Every kind of bad spec gets a 400 whose `errors` list is exactly the one
/// problem (field and text) the case has, or all of them when a spec has
/// several; and after them all the real store has applied nothing new (its
/// applied index is where it was, once the node had settled) and holds no job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_specs_are_refused_with_every_problem_and_write_nothing_to_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let c = Node::builder()
        .node_id("solo")
        .data_dir(dir.path())
        .loopback_ports()
        .insecure_dev(true)
        .loops(orion_core::testing::fast_loops())
        .runtime_shared(Arc::new(FakeRuntime::new()))
        .start()
        .await
        .unwrap();
    c.ready(Duration::from_secs(20)).await.unwrap();
    let base = format!("http://{}", c.http_addr().unwrap());
    // Ready: the node's own writes (the cluster's name, its registration) are
    // committed; the read barrier makes sure they are applied here too.
    let store = c.store().clone();
    store.read_barrier().await.unwrap();
    let before = store.replica().applied_index();

    let single: &[(&str, &str, &str, &str)] = &[
        (
            "application/json",
            "{\"name\": \"web\",",
            "",
            "malformed JSON",
        ),
        ("application/yaml", "name: [web", "", "malformed YAML"),
        (
            "application/yaml",
            &WEB.replace("env:", "envx:"),
            "task.envx",
            "unknown field",
        ),
        (
            "application/yaml",
            &WEB.replace("image: orion-test/web:1", "image: \"\"")
                .replace(
                    "  command: [\"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n",
                    "",
                ),
            "task.image",
            "must not be empty",
        ),
        (
            "application/yaml",
            &WEB.replace("name: web", "name: Web_App"),
            "name",
            "not DNS-safe",
        ),
        (
            "application/yaml",
            &WEB.replace("memory_mb: 32", "memory_mb: 0"),
            "task.resources.memory_mb",
            "more than zero",
        ),
        (
            "application/yaml",
            &WEB.replace("cpu: 0.1", "cpu: -2"),
            "task.resources.cpu",
            "more than zero",
        ),
        (
            "application/yaml",
            &WEB.replace("memory_mb: 32", "memory_mb: 5"),
            "task.resources.memory_mb",
            "below 6: the engine refuses",
        ),
        (
            "application/yaml",
            &WEB.replace("cpu: 0.1", "cpu: 0.005"),
            "task.resources.cpu",
            "below 0.01 cores",
        ),
        (
            "application/yaml",
            &WEB.replace("cpu: 0.1", "cpu: 1e-300"),
            "task.resources.cpu",
            "below 0.01 cores",
        ),
        (
            "application/yaml",
            &format!("{WEB}update: {{ canary: 3 }}\n"),
            "update.canary",
            "more than the 2 replicas",
        ),
        (
            "application/yaml",
            &format!("{WEB}update: {{ max_parallel: 0 }}\n"),
            "update.max_parallel",
            "at least 1",
        ),
        (
            "application/yaml",
            &format!("{WEB}update: {{ healthy_deadline: soon }}\n"),
            "update.healthy_deadline",
            "",
        ),
        (
            "application/yaml",
            &format!("{WEB}update: {{ progress_deadline: 0s }}\n"),
            "update.progress_deadline",
            "more than zero",
        ),
        (
            "application/yaml",
            &format!("{WEB}update: {{ order: sideways }}\n"),
            "update.order",
            "unknown variant",
        ),
        (
            "application/yaml",
            &format!("{WEB}restart: {{ interval: 0s }}\n"),
            "restart.interval",
            "more than zero",
        ),
        (
            "application/yaml",
            &format!("{WEB}restart: {{ mode: sometimes }}\n"),
            "restart.mode",
            "unknown variant",
        ),
        (
            "application/yaml",
            &format!("{WEB}priority: 0\n"),
            "priority",
            "not in 1-100",
        ),
        (
            "application/yaml",
            &WEB.replace("memory_mb: 32", "memory_mb: -1"),
            "task.resources.memory_mb",
            "invalid value",
        ),
        (
            "application/yaml",
            &WEB.replace(
                "ports: [{ name: http, container_port: 80 }]",
                "ports: [{ name: http, container_port: 80 }, { name: http, container_port: 81 }]",
            ),
            "task.ports[1].name",
            "duplicate port name",
        ),
        (
            "application/yaml",
            &WEB.replace("container_port: 80", "container_port: 70000"),
            "task.ports[0].container_port",
            "out of range",
        ),
        (
            "application/yaml",
            &WEB.replace(
                "env:",
                "volumes: [{ name: Bad_Name, target: /data }]\n  env:",
            ),
            "task.volumes[0].name",
            "not DNS-safe",
        ),
        (
            "application/yaml",
            &WEB.replace(
                "env:",
                "volumes: [{ name: a, host_path: /srv, target: /data }]\n  env:",
            ),
            "task.volumes[0]",
            "exactly one of name and host_path",
        ),
        (
            "application/yaml",
            &WEB.replace(
                "env:",
                "volumes: [{ host_path: ../etc, target: /data }]\n  env:",
            ),
            "task.volumes[0].host_path",
            "absolute path",
        ),
        (
            "application/yaml",
            &WEB.replace(
                "env:",
                "health_checks: [{ type: grpc, port: http }]\n  env:",
            ),
            "task.health_checks[0].type",
            "unknown variant `grpc`",
        ),
        (
            "application/yaml",
            &WEB.replace(
                "env:",
                "health_checks: [{ type: http, port: admin }]\n  env:",
            ),
            "task.health_checks[0].port",
            "no port named \"admin\"",
        ),
        (
            "application/yaml",
            &WEB.replace(
                "env:",
                "health_checks: [{ type: tcp, port: http, interval: soon }]\n  env:",
            ),
            "task.health_checks[0].interval",
            "",
        ),
        (
            "application/yaml",
            &WEB.replace(
                "env:",
                "health_checks: [{ type: tcp, port: http, interval: 1s, timeout: 2s }]\n  env:",
            ),
            "task.health_checks[0].timeout",
            "must be below the interval",
        ),
        (
            "application/json",
            r#"{"name": "web", "name": "api", "task": {"image": "x"}}"#,
            "",
            "duplicate key \"name\"",
        ),
        (
            "application/yaml",
            "name: web\nname: api\ntask: { image: x }\n",
            "",
            "duplicate",
        ),
    ];
    let several = WEB
        .replace("name: web", "name: Web_App")
        .replace("memory_mb: 32", "memory_mb: 0")
        .replace("cpu: 0.1", "cpu: -2");
    let cases = single
        .iter()
        .map(|&(ctype, body, field, problem)| (ctype, body.to_string(), vec![(field, problem)]))
        .chain([
            (
                "application/yaml",
                several,
                vec![
                    ("name", "not DNS-safe"),
                    ("task.resources.cpu", "more than zero"),
                    ("task.resources.memory_mb", "more than zero"),
                ],
            ),
            (
                "application/yaml",
                WEB.replace(
                    "env:",
                    "volumes: [{ host_path: ../etc, target: data }]\n  env:",
                ),
                vec![
                    ("task.volumes[0].host_path", "absolute path"),
                    (
                        "task.volumes[0].target",
                        "must be an absolute path other than /",
                    ),
                ],
            ),
            (
                "application/yaml",
                WEB.replace(
                    "env:",
                    "health_checks: [{ type: command, interval: 0s }]\n  env:",
                ),
                vec![
                    ("task.health_checks[0].command", "needs a command"),
                    ("task.health_checks[0].interval", "must be more than zero"),
                    (
                        "task.health_checks[0].timeout",
                        "must be below the interval 0ns",
                    ),
                ],
            ),
        ]);
    for (ctype, body, want) in cases {
        let (status, err) = post(&base, ctype, &body).await;
        assert_eq!(status, 400, "{body}: {err}");
        let errors = err["errors"].as_array().expect("an errors list");
        let got: Vec<(&str, &str)> = errors
            .iter()
            .map(|e| (e["field"].as_str().unwrap(), e["problem"].as_str().unwrap()))
            .collect();
        assert_eq!(got.len(), want.len(), "{body}: {err}");
        for ((field, problem), (want_field, want_problem)) in got.iter().zip(&want) {
            assert_eq!(field, want_field, "{err}");
            assert!(problem.contains(want_problem), "{err}");
            assert!(err["error"].as_str().unwrap().contains(problem), "{err}");
        }
    }
    store.read_barrier().await.unwrap();
    assert_eq!(
        store.replica().applied_index(),
        before,
        "a refused spec must not reach the log"
    );
    assert_eq!(store.replica().read(|s| s.jobs.len()), 0);
    c.shutdown().await;
}
