//! Docker Compose files as Orion jobs: the subset `docker stack deploy` honours.
//!
//! Each service becomes a service job of its name. What maps:
//!
//! | Compose | Orion |
//! |---|---|
//! | `image` | `task.image` (required: Orion builds nothing) |
//! | `entrypoint` + `command` (string or list) | `task.command` |
//! | `environment` (map or `K=V` list) | `task.env` |
//! | `ports` (`"8080:80"`, `"80"`, `"127.0.0.1:8080:80/udp"`, long form) | `task.ports` (named `<proto>-<target>`; a published port is fixed, else dynamic) |
//! | `deploy.replicas` | `replicas` |
//! | `deploy.resources.limits` (else `reservations`) `cpus`, `memory` | `task.resources` |
//! | `deploy.placement.constraints` (`node.labels.K == V`, `!=`) | `constraints` on tags |
//! | `volumes` (`name:/target[:ro]`, `/host/path:/target`, long form) | `task.volumes` (a named volume must exist: `orion-node volume create`) |
//! | `healthcheck` (`test` as `CMD`, `CMD-SHELL` or a string; `interval`, `timeout`, `retries`, `start_period`; `disable`) | a `command` health check |
//! | `deploy.mode: global` | `type: system` |
//! | `deploy.update_config` `parallelism` (0: all), `monitor`, `order`, `failure_action: rollback`, `delay` (global only) | the `update` block: `max_parallel`, `min_healthy_time`, `order`, `auto_revert`, `stagger` |
//! | `deploy.restart_policy` `max_attempts`, `delay`, `window`, `condition: none` | the `restart` block: `attempts`, `delay`, `interval` |
//! | top-level `secrets` (`file`, `environment`, `external`, `name`) | [`Compose::secrets`]: `apply` creates a `file` or `environment` secret that does not exist yet and checks an `external` one exists |
//! | a service's `secrets` (`- name`, or `source`, `target`, `mode`) | `task.secrets`, at `/run/secrets/<name or target>` as Compose mounts them |
//!
//! Orion's secret names are DNS labels: a Compose secret `db_password` is
//! the Orion secret `db-password` (said in a warning), still mounted at
//! `/run/secrets/db_password`.
//!
//! Keys Orion does not carry out (yet) are listed in [`Compose::ignored`] with
//! what they were, never dropped silently: `build`, `links`, `privileged`,
//! `networks`, `depends_on`, `deploy.rollback_config` (a failed deployment goes
//! back with `auto_revert`), a secret's `uid` / `gid`. A bad value names its place
//! (`services.web.ports[1]`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Constraint, ConstraintOp, FieldError, JobSpec, PortSpec, Protocol, SpecError};

/// A converted Compose file.
#[derive(Clone, Debug, PartialEq)]
pub struct Compose {
    /// One service job per Compose service, in the order of the file.
    pub specs: Vec<JobSpec>,
    /// What was not carried over, each as `services.web.build: …`.
    pub ignored: Vec<String>,
    /// The secrets the file declares, in name order.
    pub secrets: Vec<ComposeSecret>,
}

/// A secret a Compose file declares (its top-level `secrets`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComposeSecret {
    /// Its key in the Compose file.
    pub key: String,
    /// The Orion secret it is (its `name`, else its key, made DNS-safe).
    pub name: String,
    /// Where its value comes from.
    pub source: ComposeSecretSource,
}

/// Where a Compose secret's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ComposeSecretSource {
    /// A file, as written (relative to the Compose file's directory).
    File(String),
    /// An environment variable of whoever applies the file.
    Environment(String),
    /// A secret that must exist already (`external: true`).
    External,
}

/// Whether a parsed YAML or JSON document is a Compose file (it has
/// `services`, and is not itself a job spec).
pub fn is_compose(doc: &Value) -> bool {
    doc.get("services").is_some_and(Value::is_object) && doc.get("task").is_none()
}

/// Keys of a service that map, and those read but not carried out yet.
const SERVICE_KEYS: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "environment",
    "ports",
    "deploy",
    "volumes",
    "healthcheck",
    "secrets",
];
const LATER: &[(&str, &str)] = &[];

/// Converts a Compose document (already parsed) into jobs.
pub fn from_compose(doc: &Value) -> Result<Compose, SpecError> {
    let mut errors = Vec::new();
    let mut ignored = Vec::new();
    if let Some(v) = doc.get("version") {
        let text = v
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string());
        if !text.starts_with('3') {
            return Err(SpecError::one(
                "version",
                format!("Compose file format {text:?} is not supported: use version 3 (or none), as docker stack deploy does"),
            ));
        }
    }
    for key in doc.as_object().into_iter().flat_map(|m| m.keys()) {
        match key.as_str() {
            "version" | "services" | "name" | "secrets" => {}
            "volumes" => ignored.push(
                "volumes: Orion does not create volumes: create each on its node with `orion-node volume create NAME --node NODE`".into(),
            ),
            _ => ignored.push(format!("{key}: top-level {key} are not supported")),
        }
    }
    let declared = match doc.get("secrets") {
        Some(v) => top_secrets(v, &mut ignored, &mut errors),
        None => BTreeMap::new(),
    };
    let services = doc["services"].as_object().cloned().unwrap_or_default();
    let mut specs = Vec::new();
    for (name, svc) in &services {
        let at = format!("services.{name}");
        match service(name, svc, &at, &declared, &mut ignored) {
            Ok(spec) => match spec.validate() {
                Ok(()) => specs.push(spec),
                Err(e) => errors.extend(e.within(&at).errors),
            },
            Err(e) => errors.push(e),
        }
    }
    if services.is_empty() {
        errors.push(FieldError {
            field: "services".into(),
            problem: "no services".into(),
        });
    }
    if errors.is_empty() {
        Ok(Compose {
            specs,
            ignored,
            secrets: declared.into_values().collect(),
        })
    } else {
        Err(SpecError { errors })
    }
}

fn bad(field: String, problem: impl Into<String>) -> FieldError {
    FieldError {
        field,
        problem: problem.into(),
    }
}

/// The top-level `secrets`, by key.
fn top_secrets(
    v: &Value,
    notes: &mut Vec<String>,
    errors: &mut Vec<FieldError>,
) -> BTreeMap<String, ComposeSecret> {
    let mut out = BTreeMap::new();
    let Some(map) = v.as_object() else {
        errors.push(bad("secrets".into(), "must be a mapping of names"));
        return out;
    };
    for (key, def) in map {
        let at = format!("secrets.{key}");
        let Some(d) = def.as_object() else {
            errors.push(bad(at, "must be a mapping (file, environment or external)"));
            continue;
        };
        let given = d.get("name").and_then(Value::as_str).unwrap_or(key);
        let name = given.to_ascii_lowercase().replace(['_', '.'], "-");
        if let Err(p) = super::check_dns_label(&name) {
            errors.push(bad(
                format!("{at}.name"),
                format!("{given:?} cannot be an Orion secret name: {p}"),
            ));
            continue;
        }
        if name != given {
            notes.push(format!(
                "{at}: kept as the Orion secret {name:?} (names are DNS labels)"
            ));
        }
        let external = match d.get("external") {
            Some(Value::Bool(b)) => *b,
            Some(Value::Object(_)) => true,
            Some(other) => {
                errors.push(bad(
                    format!("{at}.external"),
                    format!("must be true or false, not {}", short(other)),
                ));
                continue;
            }
            None => false,
        };
        let source = match (d.get("file"), d.get("environment"), external) {
            (Some(Value::String(f)), None, false) => ComposeSecretSource::File(f.clone()),
            (None, Some(Value::String(e)), false) => ComposeSecretSource::Environment(e.clone()),
            (None, None, true) => ComposeSecretSource::External,
            _ => {
                errors.push(bad(
                    at,
                    "give one of file: PATH, environment: VAR or external: true",
                ));
                continue;
            }
        };
        for k in d.keys() {
            if !["name", "file", "environment", "external"].contains(&k.as_str()) {
                notes.push(format!("{at}.{k}: not supported ({})", short(&d[k])));
            }
        }
        out.insert(
            key.clone(),
            ComposeSecret {
                key: key.clone(),
                name,
                source,
            },
        );
    }
    out
}

/// A service's `secrets`: each a declared secret, mounted where Compose
/// mounts it.
fn service_secrets(
    v: &Value,
    at: &str,
    declared: &BTreeMap<String, ComposeSecret>,
    notes: &mut Vec<String>,
) -> Result<Vec<super::SecretMount>, FieldError> {
    let list = v
        .as_array()
        .ok_or_else(|| bad(at.into(), "must be a list"))?;
    let mut out = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let here = format!("{at}[{i}]");
        let (key, target, mode) = match item {
            Value::String(k) => (k.clone(), None, None),
            Value::Object(m) => {
                let k = m
                    .get("source")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(format!("{here}.source"), "missing"))?;
                let target = match m.get("target") {
                    None => None,
                    Some(Value::String(t)) => Some(t.clone()),
                    Some(other) => {
                        return Err(bad(
                            format!("{here}.target"),
                            format!("must be a path, not {}", short(other)),
                        ))
                    }
                };
                let mode = match m.get("mode") {
                    None => None,
                    Some(x) => Some(secret_mode(x).ok_or_else(|| {
                        bad(
                            format!("{here}.mode"),
                            format!("{} is not a file mode (write it as 0440)", short(x)),
                        )
                    })?),
                };
                for k in m.keys() {
                    if !["source", "target", "mode"].contains(&k.as_str()) {
                        notes.push(format!("{here}.{k}: not supported ({})", short(&m[k])));
                    }
                }
                (k.to_string(), target, mode)
            }
            other => {
                return Err(bad(
                    here,
                    format!("must be a name or a mapping, not {}", short(other)),
                ))
            }
        };
        let secret = declared.get(&key).ok_or_else(|| {
            bad(
                here.clone(),
                format!("secret {key:?} is not declared in the top-level secrets"),
            )
        })?;
        let path = match target {
            Some(t) if t.starts_with('/') => t,
            Some(t) => format!("{}/{t}", super::SECRETS_DIR),
            None => format!("{}/{key}", super::SECRETS_DIR),
        };
        let default = format!("{}/{}", super::SECRETS_DIR, secret.name);
        out.push(super::SecretMount {
            name: secret.name.clone(),
            target: (path != default).then_some(path),
            mode: mode.map(super::FileMode),
        });
    }
    Ok(out)
}

/// A Compose file mode: a string in octal (`"0440"`), or a number as YAML
/// reads `0440` (decimal 440: its digits are the octal mode), or the mode's
/// value itself when its digits are not all octal.
fn secret_mode(v: &Value) -> Option<u32> {
    let mode = match v {
        Value::String(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8).ok()?,
        Value::Number(n) => {
            let n = u32::try_from(n.as_u64()?).ok()?;
            let digits = n.to_string();
            if digits.chars().all(|c| ('0'..='7').contains(&c)) {
                u32::from_str_radix(&digits, 8).ok()?
            } else {
                n
            }
        }
        _ => return None,
    };
    (mode <= 0o777).then_some(mode)
}

fn service(
    name: &str,
    svc: &Value,
    at: &str,
    declared: &BTreeMap<String, ComposeSecret>,
    ignored: &mut Vec<String>,
) -> Result<JobSpec, FieldError> {
    let map = svc
        .as_object()
        .ok_or_else(|| bad(at.into(), "a service must be a mapping"))?;
    let image = match map.get("image").and_then(Value::as_str) {
        Some(i) => i,
        None if map.contains_key("build") => return Err(bad(
            format!("{at}.image"),
            "missing: Orion builds no images (build it, load it on the nodes, and name it here)",
        )),
        None => return Err(bad(format!("{at}.image"), "missing")),
    };
    let mut spec = JobSpec::service(name, image);
    let mut command = words(map.get("entrypoint"), &format!("{at}.entrypoint"))?;
    if !command.is_empty() {
        ignored.push(format!(
            "{at}.entrypoint: folded into the command (Orion sets the command only)"
        ));
    }
    command.extend(words(map.get("command"), &format!("{at}.command"))?);
    spec.task.command = command;
    spec.task.env = environment(map.get("environment"), &format!("{at}.environment"))?;
    if let Some(ports) = map.get("ports") {
        let list = ports
            .as_array()
            .ok_or_else(|| bad(format!("{at}.ports"), "must be a list"))?;
        for (i, p) in list.iter().enumerate() {
            let port = port(p, &format!("{at}.ports[{i}]"))?;
            if !spec.task.ports.iter().any(|q| q.name == port.name) {
                spec.task.ports.push(port);
            }
        }
    }
    if let Some(volumes) = map.get("volumes") {
        let list = volumes
            .as_array()
            .ok_or_else(|| bad(format!("{at}.volumes"), "must be a list"))?;
        for (i, v) in list.iter().enumerate() {
            spec.task
                .volumes
                .push(mount(v, &format!("{at}.volumes[{i}]"))?);
        }
    }
    if let Some(h) = map.get("healthcheck") {
        spec.task
            .health_checks
            .extend(healthcheck(h, &format!("{at}.healthcheck"))?);
    }
    if let Some(deploy) = map.get("deploy") {
        self::deploy(&mut spec, deploy, &format!("{at}.deploy"), ignored)?;
    }
    if let Some(secrets) = map.get("secrets") {
        spec.task.secrets = service_secrets(secrets, &format!("{at}.secrets"), declared, ignored)?;
    }
    for (key, value) in map {
        if SERVICE_KEYS.contains(&key.as_str()) {
            continue;
        }
        let why = LATER
            .iter()
            .find(|(k, _)| k == key)
            .map_or("not supported", |(_, why)| why);
        ignored.push(format!("{at}.{key}: {why} ({})", short(value)));
    }
    Ok(spec)
}

/// A value in a few characters, for a warning.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

/// A command as a list of words: a list, or a string split on whitespace (as
/// Compose does, without a shell).
fn words(v: Option<&Value>, at: &str) -> Result<Vec<String>, FieldError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s.split_whitespace().map(String::from).collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| scalar(i).ok_or_else(|| bad(at.into(), "must be a list of strings")))
            .collect(),
        Some(_) => Err(bad(at.into(), "must be a string or a list")),
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn environment(v: Option<&Value>, at: &str) -> Result<BTreeMap<String, String>, FieldError> {
    let mut env = BTreeMap::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                env.insert(k.clone(), scalar(v).unwrap_or_default());
            }
        }
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let s = item
                    .as_str()
                    .ok_or_else(|| bad(format!("{at}[{i}]"), "must be KEY=VALUE"))?;
                let (k, v) = s.split_once('=').unwrap_or((s, ""));
                env.insert(k.to_string(), v.to_string());
            }
        }
        Some(_) => return Err(bad(at.into(), "must be a mapping or a list of KEY=VALUE")),
    }
    Ok(env)
}

/// `"80"`, `"8080:80"`, `"127.0.0.1:8080:80/udp"`, or `{target, published, protocol}`.
fn port(v: &Value, at: &str) -> Result<PortSpec, FieldError> {
    let (target, published, protocol) = match v {
        Value::Object(m) => {
            let target = m
                .get("target")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad(format!("{at}.target"), "missing or not a port number"))?;
            let published = match m.get("published") {
                None | Some(Value::Null) => None,
                Some(p) => Some(
                    scalar(p)
                        .and_then(|s| s.parse::<u64>().ok())
                        .ok_or_else(|| bad(format!("{at}.published"), "not a port number"))?,
                ),
            };
            let protocol = m.get("protocol").and_then(Value::as_str).unwrap_or("tcp");
            (target, published, protocol.to_string())
        }
        other => {
            let text =
                scalar(other).ok_or_else(|| bad(at.into(), "must be a string or a mapping"))?;
            let (spec, protocol) = text.split_once('/').unwrap_or((&text, "tcp"));
            let parts: Vec<&str> = spec.split(':').collect();
            let num = |s: &str| {
                s.parse::<u64>().map_err(|_| {
                    bad(
                        at.into(),
                        format!("{text:?}: {s:?} is not a port (ranges are not supported)"),
                    )
                })
            };
            match parts.as_slice() {
                [target] => (num(target)?, None, protocol.to_string()),
                [published, target] | [_, published, target] => {
                    let published = if published.is_empty() {
                        None
                    } else {
                        Some(num(published)?)
                    };
                    (num(target)?, published, protocol.to_string())
                }
                _ => {
                    return Err(bad(
                        at.into(),
                        format!("{text:?} is not [[ip:]published:]target"),
                    ))
                }
            }
        }
    };
    let protocol = match protocol.as_str() {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        other => return Err(bad(at.into(), format!("protocol {other:?}: tcp or udp"))),
    };
    let proto = if protocol == Protocol::Udp {
        "udp"
    } else {
        "tcp"
    };
    Ok(PortSpec {
        name: format!("{proto}-{target}"),
        container_port: target as u32,
        host_port: published.map(|p| p as u32),
        protocol,
        lb: None,
    })
}

/// A Compose `healthcheck` as a command check (none for `NONE` or `disable`).
fn healthcheck(h: &Value, at: &str) -> Result<Option<super::HealthCheck>, FieldError> {
    if h.get("disable").and_then(Value::as_bool) == Some(true) {
        return Ok(None);
    }
    let command = match h.get("test") {
        Some(Value::String(s)) => vec!["/bin/sh".to_string(), "-c".into(), s.clone()],
        Some(Value::Array(items)) => {
            let words: Vec<String> = items.iter().filter_map(scalar).collect();
            match words.split_first() {
                Some((kind, _)) if kind == "NONE" => return Ok(None),
                Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => rest.to_vec(),
                Some((kind, [cmd])) if kind == "CMD-SHELL" => {
                    vec!["/bin/sh".into(), "-c".into(), cmd.clone()]
                }
                _ => {
                    return Err(bad(
                        format!("{at}.test"),
                        "use [\"CMD\", …], [\"CMD-SHELL\", \"…\"], a string, or [\"NONE\"]",
                    ))
                }
            }
        }
        _ => return Err(bad(format!("{at}.test"), "missing")),
    };
    let mut check = super::HealthCheck::new(super::CheckKind::Command);
    check.command = command;
    let duration = |key: &str| -> Result<Option<std::time::Duration>, FieldError> {
        match h.get(key).and_then(Value::as_str) {
            None => Ok(None),
            Some(text) => humantime::parse_duration(text)
                .map(Some)
                .map_err(|e| bad(format!("{at}.{key}"), format!("{text:?}: {e}"))),
        }
    };
    if let Some(d) = duration("interval")? {
        check.interval = d;
    }
    if let Some(d) = duration("timeout")? {
        check.timeout = d;
    }
    if let Some(d) = duration("start_period")? {
        check.grace = d;
    }
    if let Some(n) = h.get("retries").and_then(Value::as_u64) {
        check.failures = n as u32;
    }
    Ok(Some(check))
}

/// `name:/target[:ro]`, `/host:/target[:ro]`, or `{type, source, target, read_only}`.
fn mount(v: &Value, at: &str) -> Result<super::VolumeMount, FieldError> {
    let (kind, source, target, read_only) = match v {
        Value::String(text) => {
            let parts: Vec<&str> = text.split(':').collect();
            let (source, target, mode) = match parts.as_slice() {
                [source, target] => (*source, *target, ""),
                [source, target, mode] => (*source, *target, *mode),
                _ => {
                    return Err(bad(
                        at.into(),
                        format!("{text:?} is not SOURCE:TARGET[:ro] (an anonymous volume has no name to keep it by)"),
                    ))
                }
            };
            let kind = if source.starts_with(['/', '.', '~']) {
                "bind"
            } else {
                "volume"
            };
            (
                kind.to_string(),
                source.to_string(),
                target.to_string(),
                mode.split(',').any(|m| m == "ro"),
            )
        }
        Value::Object(m) => {
            let text = |k: &str| {
                m.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            (
                text("type"),
                text("source"),
                text("target"),
                m.get("read_only").and_then(Value::as_bool).unwrap_or(false),
            )
        }
        _ => return Err(bad(at.into(), "must be a string or a mapping")),
    };
    let (name, host_path) = match kind.as_str() {
        "volume" => (Some(source), None),
        "bind" if source.starts_with('/') => (None, Some(source)),
        "bind" => {
            return Err(bad(
                at.into(),
                format!("{source:?}: a host path must be absolute (Orion runs it on another host than this file)"),
            ))
        }
        other => return Err(bad(at.into(), format!("type {other:?}: volume or bind"))),
    };
    Ok(super::VolumeMount {
        name,
        host_path,
        target,
        read_only,
    })
}

fn deploy(
    spec: &mut JobSpec,
    d: &Value,
    at: &str,
    ignored: &mut Vec<String>,
) -> Result<(), FieldError> {
    let map = d
        .as_object()
        .ok_or_else(|| bad(at.into(), "must be a mapping"))?;
    for (key, v) in map {
        match key.as_str() {
            "replicas" => {
                spec.replicas = v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| bad(format!("{at}.replicas"), "not a count"))?;
            }
            "mode" => match v.as_str() {
                Some("replicated") | None => {}
                Some("global") => spec.kind = super::JobKind::System,
                Some(other) => {
                    return Err(bad(format!("{at}.mode"), format!("unknown mode {other:?}")))
                }
            },
            "resources" => resources(spec, v, &format!("{at}.resources"))?,
            "placement" => {
                for (pk, pv) in pv_map(v) {
                    if pk == "constraints" {
                        for (i, c) in pv.as_array().into_iter().flatten().enumerate() {
                            let text = c.as_str().unwrap_or_default();
                            match constraint(text) {
                                Some(c) => spec.constraints.push(c),
                                None => ignored.push(format!(
                                    "{at}.placement.constraints[{i}]: {text:?} is not node.labels.KEY ==|!= VALUE"
                                )),
                            }
                        }
                    } else {
                        ignored.push(format!(
                            "{at}.placement.{pk}: not supported ({})",
                            short(pv)
                        ));
                    }
                }
            }
            "update_config" => update_config(spec, v, &format!("{at}.update_config"), ignored)?,
            "rollback_config" => ignored.push(format!(
                "{at}.rollback_config: a failed deployment goes back with the update block's auto_revert ({})",
                short(v)
            )),
            "restart_policy" => {
                restart_policy(spec, v, &format!("{at}.restart_policy"), ignored)?
            }
            other => ignored.push(format!("{at}.{other}: not supported ({})", short(v))),
        }
    }
    Ok(())
}

/// A Compose duration (`10s`, `1m30s`), at `at`.
fn compose_duration(v: &Value, at: &str) -> Result<std::time::Duration, FieldError> {
    let text = scalar(v).unwrap_or_default();
    humantime::parse_duration(&text).map_err(|e| bad(at.into(), format!("{text:?}: {e}")))
}

/// `deploy.update_config` as the update block: `parallelism` (0: all at
/// once), `monitor` (the time a new task must stay healthy), `order`,
/// `failure_action: rollback` (auto_revert).
fn update_config(
    spec: &mut JobSpec,
    v: &Value,
    at: &str,
    ignored: &mut Vec<String>,
) -> Result<(), FieldError> {
    let mut u = spec.update_policy();
    for (k, x) in pv_map(v) {
        match k.as_str() {
            "parallelism" => {
                let n = x
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| bad(format!("{at}.parallelism"), "not a count"))?;
                u.max_parallel = if n == 0 { spec.replicas.max(1) } else { n };
            }
            "monitor" => u.min_healthy_time = compose_duration(x, &format!("{at}.monitor"))?,
            "order" => {
                u.order = match x.as_str() {
                    Some("start-first") => super::UpdateOrder::StartFirst,
                    Some("stop-first") => super::UpdateOrder::StopFirst,
                    _ => {
                        return Err(bad(
                            format!("{at}.order"),
                            "expected start-first or stop-first",
                        ))
                    }
                }
            }
            "failure_action" => match x.as_str() {
                Some("rollback") => u.auto_revert = true,
                Some("pause") => u.auto_revert = false,
                _ => ignored.push(format!(
                    "{at}.failure_action: a failed deployment stops, or rolls back ({})",
                    short(x)
                )),
            },
            "delay" if spec.kind == super::JobKind::System => {
                u.stagger = compose_duration(x, &format!("{at}.delay"))?
            }
            other => ignored.push(format!("{at}.{other}: not supported ({})", short(x))),
        }
    }
    spec.update = Some(u);
    Ok(())
}

/// `deploy.restart_policy` as the restart block: `max_attempts`, `delay`,
/// `window` (the interval attempts are counted in); `condition: none` allows
/// no restart.
fn restart_policy(
    spec: &mut JobSpec,
    v: &Value,
    at: &str,
    ignored: &mut Vec<String>,
) -> Result<(), FieldError> {
    let mut r = spec.restart_policy();
    for (k, x) in pv_map(v) {
        match k.as_str() {
            "max_attempts" => {
                r.attempts = x
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| bad(format!("{at}.max_attempts"), "not a count"))?
            }
            "delay" => {
                r.delay = compose_duration(x, &format!("{at}.delay"))?;
                r.max_delay = r.max_delay.max(r.delay);
            }
            "window" => r.interval = compose_duration(x, &format!("{at}.window"))?,
            "condition" => match x.as_str() {
                Some("none") => r.attempts = 0,
                Some("on-failure" | "any") => {}
                _ => ignored.push(format!("{at}.condition: not supported ({})", short(x))),
            },
            other => ignored.push(format!("{at}.{other}: not supported ({})", short(x))),
        }
    }
    spec.restart = Some(r);
    Ok(())
}

fn pv_map(v: &Value) -> Vec<(&String, &Value)> {
    v.as_object()
        .map(|m| m.iter().collect())
        .unwrap_or_default()
}

fn resources(spec: &mut JobSpec, v: &Value, at: &str) -> Result<(), FieldError> {
    let pick = |which: &str| v.get(which).filter(|x| x.is_object());
    let Some(r) = pick("limits").or_else(|| pick("reservations")) else {
        return Ok(());
    };
    if let Some(cpus) = r.get("cpus") {
        spec.task.resources.cpu = scalar(cpus)
            .and_then(|s| s.parse::<f64>().ok())
            .ok_or_else(|| bad(format!("{at}.cpus"), "not a number of cores"))?;
    }
    if let Some(mem) = r.get("memory") {
        let text = scalar(mem).unwrap_or_default();
        spec.task.resources.memory_mb = memory_mb(&text).ok_or_else(|| {
            bad(
                format!("{at}.memory"),
                format!("{text:?} is not a size (512M, 1G, 1048576)"),
            )
        })?;
    }
    Ok(())
}

/// `512M`, `1g`, `1.5G`, `100k`, `1048576` (bytes) → MiB.
fn memory_mb(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, unit) = t.split_at(t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len()));
    let n: f64 = num.trim().parse().ok()?;
    let bytes = match unit {
        "" => n,
        "k" => n * 1024.0,
        "m" => n * 1024.0 * 1024.0,
        "g" => n * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((bytes / (1024.0 * 1024.0)).ceil() as u64)
}

/// `node.labels.disk == ssd` → tag `disk` equals `ssd`; `!=` → not equal.
fn constraint(text: &str) -> Option<Constraint> {
    let (key, op, value) = if let Some((k, v)) = text.split_once("==") {
        (k, ConstraintOp::Eq, v)
    } else {
        let (k, v) = text.split_once("!=")?;
        (k, ConstraintOp::Ne, v)
    };
    let key = key.trim().strip_prefix("node.labels.")?;
    Some(Constraint {
        key: key.to_string(),
        op,
        values: vec![value.trim().to_string()],
    })
}

#[cfg(test)]
mod tests;
