use super::*;
use crate::spec::parse_yaml_value;

/// A stack file as people write them (the voting-app shape: a cache, a
/// database, two web front ends, a worker), with the keys Orion does not carry
/// out yet.
const STACK: &str = r#"
version: "3.9"
services:
  redis:
    image: redis:alpine
    ports: ["6379"]
    networks: [frontend]
    deploy:
      replicas: 1
      update_config: { parallelism: 2, delay: 10s, monitor: 30s, order: start-first, failure_action: rollback }
      restart_policy: { condition: on-failure, max_attempts: 5, delay: 3s, window: 2m }
  db:
    image: postgres:15
    environment:
      POSTGRES_USER: postgres
      POSTGRES_PASSWORD: postgres
    volumes: ["db-data:/var/lib/postgresql/data", { type: bind, source: /etc/pg, target: /etc/postgresql, read_only: true }]
    networks: [backend]
    deploy:
      placement:
        constraints: [node.labels.disk == ssd]
  vote:
    image: example/vote:before
    ports: ["5000:80", { target: 9000, published: 9100, protocol: udp }]
    networks: [frontend]
    depends_on: [redis]
    deploy:
      replicas: 2
      resources: { limits: { cpus: "0.5", memory: 128M }, reservations: { cpus: "0.1" } }
  result:
    image: example/result:before
    entrypoint: /app/start
    command: --port 80
    ports: ["127.0.0.1:5001:80"]
    depends_on: [db]
  worker:
    image: example/worker
    command: ["dotnet", "Worker.dll"]
    environment: ["REDIS_HOST=redis", "DB_HOST=db"]
    privileged: true
    healthcheck: { test: ["CMD-SHELL", "pgrep dotnet"], interval: 30s, timeout: 5s, retries: 4, start_period: 1m }
    deploy:
      mode: replicated
      replicas: 1
      placement: { constraints: ["node.role == manager", "node.labels.zone != b"] }
networks:
  frontend:
  backend:
volumes:
  db-data:
"#;

fn convert(text: &str) -> Result<Compose, SpecError> {
    let doc = parse_yaml_value(text).unwrap();
    assert!(is_compose(&doc));
    from_compose(&doc)
}

#[test]
fn a_real_world_stack_converts_and_lists_what_it_ignores() {
    let c = convert(STACK).unwrap();
    let mut names: Vec<&str> = c.specs.iter().map(|s| s.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["db", "redis", "result", "vote", "worker"]);
    let by = |n: &str| c.specs.iter().find(|s| s.name == n).unwrap();

    let redis = by("redis");
    assert_eq!(redis.task.image, "redis:alpine");
    assert_eq!(redis.task.ports[0].name, "tcp-6379");
    assert_eq!(redis.task.ports[0].host_port, None, "unpublished: dynamic");

    let db = by("db");
    assert_eq!(db.task.env["POSTGRES_USER"], "postgres");
    assert_eq!(db.task.volumes[0].name.as_deref(), Some("db-data"));
    assert_eq!(db.task.volumes[0].target, "/var/lib/postgresql/data");
    assert_eq!(db.task.volumes[1].host_path.as_deref(), Some("/etc/pg"));
    assert!(db.task.volumes[1].read_only);
    assert_eq!(db.constraints[0].key, "disk");
    assert_eq!(db.constraints[0].op, ConstraintOp::Eq);
    assert_eq!(db.constraints[0].values, ["ssd"]);

    let vote = by("vote");
    assert_eq!(vote.replicas, 2);
    assert_eq!(vote.task.resources.cpu, 0.5, "limits win over reservations");
    assert_eq!(vote.task.resources.memory_mb, 128);
    assert_eq!(
        (
            vote.task.ports[0].container_port,
            vote.task.ports[0].host_port
        ),
        (80, Some(5000))
    );
    assert_eq!(vote.task.ports[1].name, "udp-9000");
    assert_eq!(vote.task.ports[1].protocol, Protocol::Udp);

    let result = by("result");
    assert_eq!(result.task.command, ["/app/start", "--port", "80"]);
    assert_eq!(result.task.ports[0].host_port, Some(5001));

    let worker = by("worker");
    assert_eq!(worker.task.command, ["dotnet", "Worker.dll"]);
    let check = &worker.task.health_checks[0];
    assert_eq!(check.command, ["/bin/sh", "-c", "pgrep dotnet"]);
    assert_eq!(
        (
            check.interval.as_secs(),
            check.timeout.as_secs(),
            check.failures,
            check.grace.as_secs()
        ),
        (30, 5, 4, 60)
    );
    assert_eq!(worker.task.env["DB_HOST"], "db");
    assert_eq!(
        worker.constraints.len(),
        1,
        "node.role has no tag to map to"
    );
    assert_eq!(worker.constraints[0].op, ConstraintOp::Ne);

    for expected in [
        "networks: top-level networks are not supported",
        "volumes: Orion does not create volumes",
        "services.redis.networks: not supported",
        "services.redis.deploy.update_config.delay: not supported",
        "services.vote.depends_on: not supported",
        "services.result.entrypoint: folded into the command",
        "services.worker.privileged: not supported",
        "services.worker.deploy.placement.constraints[0]: \"node.role == manager\"",
    ] {
        assert!(
            c.ignored.iter().any(|i| i.starts_with(expected)),
            "{expected:?} not in {:#?}",
            c.ignored
        );
    }
}

#[test]
fn bad_compose_files_name_the_problem() {
    let e = convert("version: '2.4'\nservices: { a: { image: x } }").unwrap_err();
    assert!(
        e.to_string()
            .contains("version: Compose file format \"2.4\" is not supported"),
        "{e}"
    );
    let e = convert("services: { web: { build: . } }").unwrap_err();
    assert!(
        e.to_string()
            .contains("services.web.image: missing: Orion builds no images"),
        "{e}"
    );
    let e = convert("services: { web: { image: x, ports: ['80-90:80'] } }").unwrap_err();
    assert!(e.to_string().contains("services.web.ports[0]"), "{e}");
    let e = convert(
        "services: { web: { image: x, deploy: { resources: { limits: { memory: lots } } } } }",
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("services.web.deploy.resources.memory"),
        "{e}"
    );
    let e = convert("services: { Web_1: { image: x } }").unwrap_err();
    assert!(e.to_string().contains("services.Web_1.name"), "{e}");
    let e = convert("services: { web: { image: x, volumes: ['./conf:/conf'] } }").unwrap_err();
    assert!(
        e.to_string().contains("a host path must be absolute"),
        "{e}"
    );
    let e = convert("services: { web: { image: x, volumes: ['/anon'] } }").unwrap_err();
    assert!(e.to_string().contains("services.web.volumes[0]"), "{e}");
    let e =
        convert("services: { web: { image: x, deploy: { update_config: { order: sideways } } } }")
            .unwrap_err();
    assert!(
        e.to_string()
            .contains("services.web.deploy.update_config.order"),
        "{e}"
    );
    let e = convert("services: { web: { image: x, deploy: { restart_policy: { delay: soon } } } }")
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("services.web.deploy.restart_policy.delay"),
        "{e}"
    );
}

#[test]
fn sizes_read_as_compose_writes_them() {
    assert_eq!(memory_mb("512M"), Some(512));
    assert_eq!(memory_mb("1g"), Some(1024));
    assert_eq!(memory_mb("1.5G"), Some(1536));
    assert_eq!(memory_mb("1048576"), Some(1));
    assert_eq!(memory_mb("64mb"), Some(64));
    assert_eq!(memory_mb("lots"), None);
}

#[test]
fn deploy_update_restart_and_global_map_to_orions_blocks() {
    use crate::spec::{JobKind, UpdateOrder};
    use std::time::Duration;
    let c = convert(STACK).unwrap();
    let redis = c.specs.iter().find(|j| j.name == "redis").unwrap();
    let u = redis.update.clone().unwrap();
    assert_eq!(
        (u.max_parallel, u.min_healthy_time, u.order, u.auto_revert),
        (2, Duration::from_secs(30), UpdateOrder::StartFirst, true)
    );
    let r = redis.restart.clone().unwrap();
    assert_eq!(
        (r.attempts, r.delay, r.interval),
        (5, Duration::from_secs(3), Duration::from_secs(120))
    );
    let g = convert(
        "services: { agent: { image: x, deploy: { mode: global, update_config: { delay: 5s } } } }",
    )
    .unwrap();
    assert_eq!(g.specs[0].kind, JobKind::System);
    assert_eq!(
        g.specs[0].update.as_ref().unwrap().stagger,
        Duration::from_secs(5)
    );
    assert!(g.specs[0].validate().is_ok());
}

/// Compose secrets: declared at the top (a file, a variable, an external
/// one), mounted by services where Compose mounts them, names made DNS-safe
/// with a note; a bad declaration or an undeclared one names its place.
#[test]
fn secrets_map_to_orion_secrets_and_mounts() {
    let c = convert(
        r#"
services:
  db:
    image: postgres
    secrets:
      - db_password
      - source: tls
        target: server.key
        mode: 0440
      - { source: shared, target: /etc/shared.conf, mode: "0444", uid: "103" }
secrets:
  db_password: { file: ./db_password.txt }
  tls: { environment: TLS_KEY }
  shared: { external: true, name: team-shared }
"#,
    )
    .unwrap();
    assert_eq!(
        c.secrets,
        vec![
            ComposeSecret {
                key: "db_password".into(),
                name: "db-password".into(),
                source: ComposeSecretSource::File("./db_password.txt".into()),
            },
            ComposeSecret {
                key: "shared".into(),
                name: "team-shared".into(),
                source: ComposeSecretSource::External,
            },
            ComposeSecret {
                key: "tls".into(),
                name: "tls".into(),
                source: ComposeSecretSource::Environment("TLS_KEY".into()),
            },
        ]
    );
    let mounts = &c.specs[0].task.secrets;
    let shown: Vec<(String, String, u32)> = mounts
        .iter()
        .map(|m| (m.name.clone(), m.target(), m.mode()))
        .collect();
    assert_eq!(
        shown,
        [
            ("db-password", "/run/secrets/db_password", 0o400),
            ("tls", "/run/secrets/server.key", 0o440),
            ("team-shared", "/etc/shared.conf", 0o444),
        ]
        .map(|(a, b, m)| (a.to_string(), b.to_string(), m))
    );
    assert!(
        c.ignored
            .iter()
            .any(|w| w.contains("secrets.db_password: kept as the Orion secret \"db-password\"")),
        "{:?}",
        c.ignored
    );
    assert!(
        c.ignored
            .iter()
            .any(|w| w.contains("services.db.secrets[2].uid: not supported")),
        "{:?}",
        c.ignored
    );
    assert!(c.specs[0].validate().is_ok());

    for (text, field, problem) in [
        (
            "services: { a: { image: x, secrets: [nope] } }",
            "services.a.secrets[0]",
            "secret \"nope\" is not declared",
        ),
        (
            "services: { a: { image: x } }\nsecrets: { s: { file: f, external: true } }",
            "secrets.s",
            "give one of file",
        ),
        (
            "services: { a: { image: x } }\nsecrets: { \"bad name!\": { file: f } }",
            "secrets.bad name!.name",
            "cannot be an Orion secret name",
        ),
        (
            "services: { a: { image: x, secrets: [{ source: s, mode: 999 }] } }\nsecrets: { s: { file: f } }",
            "services.a.secrets[0].mode",
            "not a file mode",
        ),
    ] {
        let e = convert(text).unwrap_err();
        assert!(
            e.errors
                .iter()
                .any(|f| f.field == field && f.problem.contains(problem)),
            "{text}: {e}"
        );
    }
}
