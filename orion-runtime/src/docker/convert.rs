//! Pure conversions between Orion's types and the engine's: the create body, the
//! port-name label, inspect results and stats. No I/O, so all of it is unit-tested.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum,
    ContainerStatsResponse, HostConfig, Mount, MountType, MountVolumeOptions,
    PortBinding as EnginePortBinding, PortMap, RestartPolicy, RestartPolicyNameEnum,
};
use orion_core::runtime::{labels, ContainerInfo, ContainerState, Stats, TaskLaunch};
use orion_core::{PortBinding, Protocol};

use super::DockerConfig;

/// Label naming the published ports, `http=80/tcp,dns=53/udp`, so that `inspect` and
/// `list` can give bound ports back their spec names.
pub const PORTS_LABEL: &str = "orion.ports";

/// The engine's key for a container port: `80/tcp`.
fn port_key(port: u16, protocol: Protocol) -> String {
    format!("{port}/{protocol}")
}

/// Parses `80/tcp` (a bare `80` is tcp).
fn parse_key(key: &str) -> Option<(u16, Protocol)> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let protocol = match proto {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        _ => return None,
    };
    Some((port.parse().ok()?, protocol))
}

/// Encodes the port names for [`PORTS_LABEL`].
pub fn encode_port_names(ports: &[PortBinding]) -> String {
    let mut seen = Vec::new();
    for p in ports {
        let entry = format!("{}={}", p.name, port_key(p.container_port, p.protocol));
        if !seen.contains(&entry) {
            seen.push(entry);
        }
    }
    seen.join(",")
}

/// Decodes [`PORTS_LABEL`]: the name of each container port; malformed entries are skipped.
pub fn decode_port_names(label: &str) -> BTreeMap<(u16, Protocol), String> {
    label
        .split(',')
        .filter_map(|entry| {
            let (name, key) = entry.split_once('=')?;
            Some((parse_key(key)?, name.to_string()))
        })
        .collect()
}

/// The `Cmd`: the task's command then its args; `None` (the image's default) when both are empty.
fn command(launch: &TaskLaunch) -> Option<Vec<String>> {
    let argv: Vec<String> = launch
        .task
        .command
        .iter()
        .chain(&launch.task.args)
        .cloned()
        .collect();
    (!argv.is_empty()).then_some(argv)
}

/// The port map to publish: each binding on the host IP it names (all interfaces when empty).
fn port_map(ports: &[PortBinding]) -> PortMap {
    let mut map: PortMap = HashMap::new();
    for p in ports {
        let binding = EnginePortBinding {
            host_ip: (!p.host_ip.is_empty()).then(|| p.host_ip.clone()),
            host_port: Some(p.host_port.to_string()),
        };
        map.entry(port_key(p.container_port, p.protocol))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(binding);
    }
    map
}

/// The task's mounts: a cluster volume as the engine volume
/// [`orion_core::runtime::volume_name`] (the engine creates it on first use,
/// labelled as Orion's), a host path as a bind.
fn mounts(launch: &TaskLaunch) -> Option<Vec<Mount>> {
    let mounts: Vec<Mount> = launch
        .task
        .volumes
        .iter()
        .map(|v| match (&v.name, &v.host_path) {
            (Some(name), _) => Mount {
                typ: Some(MountType::VOLUME),
                source: Some(orion_core::runtime::volume_name(&launch.node_id, name)),
                target: Some(v.target.clone()),
                read_only: Some(v.read_only),
                volume_options: Some(MountVolumeOptions {
                    labels: Some(HashMap::from([
                        (labels::CLUSTER.to_string(), launch.cluster_id.clone()),
                        (labels::NODE.to_string(), launch.node_id.clone()),
                    ])),
                    ..Default::default()
                }),
                ..Default::default()
            },
            (None, path) => Mount {
                typ: Some(MountType::BIND),
                source: path.clone(),
                target: Some(v.target.clone()),
                read_only: Some(v.read_only),
                ..Default::default()
            },
        })
        .collect();
    (!mounts.is_empty()).then_some(mounts)
}

/// The container's environment: the task's, then the values of its
/// `env_from_secret` (the only place they leave their redacting type; the
/// engine keeps them in the container's configuration).
fn env(launch: &TaskLaunch) -> Vec<String> {
    let plain = launch.task.env.iter().map(|(k, v)| format!("{k}={v}"));
    let secret = launch.secret_env.iter().map(|(k, v)| {
        // Checked to be UTF-8 by the agent; lossy would only ever mark a bug.
        format!("{k}={}", String::from_utf8_lossy(v.expose()))
    });
    plain.chain(secret).collect()
}

/// The container to create for an allocation.
pub fn create_body(launch: &TaskLaunch, config: &DockerConfig) -> ContainerCreateBody {
    let task = &launch.task;
    let mut labels: HashMap<String, String> = launch.labels().into_iter().collect();
    if !launch.ports.is_empty() {
        labels.insert(PORTS_LABEL.into(), encode_port_names(&launch.ports));
    }
    let ports = port_map(&launch.ports);
    let mut exposed: Vec<String> = ports.keys().cloned().collect();
    exposed.sort();
    let memory = i64::try_from(task.resources.memory_mb.saturating_mul(1024 * 1024)).ok();
    let nano_cpus = (task.resources.cpu > 0.0).then(|| (task.resources.cpu * 1e9).round() as i64);
    let sec = &launch.security;
    let memory = memory.filter(|m| *m > 0);
    // A read-only root keeps two writable places, in memory: /tmp for anyone,
    // and /workspace, owned by the task's numeric user and its working
    // directory (the engine resets a working directory's mode, so only its
    // owner can write there: with a user by name, it stays mode 1777 and is
    // not made the working directory).
    let numeric = sec.user.as_deref().and_then(|u| {
        let (uid, gid) = u.split_once(':').unwrap_or((u, u));
        (uid.parse::<u32>().is_ok() && gid.parse::<u32>().is_ok())
            .then(|| (uid.to_string(), gid.to_string()))
    });
    // The agent mounts a directory of the node at /workspace (so outputs
    // outlive the run); without one, a tmpfs.
    let workspace_mounted = task.volumes.iter().any(|v| v.target == "/workspace");
    let tmpfs = sec.read_only_root.then(|| {
        let owner = numeric
            .as_ref()
            .map(|(u, g)| format!(",uid={u},gid={g}"))
            .unwrap_or_default();
        let mut t = HashMap::from([("/tmp".to_string(), "rw,nosuid,nodev,mode=1777".to_string())]);
        if !workspace_mounted {
            t.insert(
                "/workspace".to_string(),
                format!("rw,nosuid,nodev,mode=1777{owner}"),
            );
        }
        t
    });
    let working_dir = (sec.read_only_root && (numeric.is_some() || workspace_mounted))
        .then(|| "/workspace".to_string());
    ContainerCreateBody {
        image: Some(task.image.clone()),
        user: sec.user.clone(),
        working_dir,
        cmd: command(launch),
        env: Some(env(launch)),
        labels: Some(labels),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        stop_timeout: Some(config.stop_grace.as_secs().try_into().unwrap_or(i64::MAX)),
        host_config: Some(HostConfig {
            port_bindings: (!ports.is_empty()).then_some(ports),
            memory,
            // No swap beyond memory: the engine's `memory_swap` is the total.
            memory_swap: memory.filter(|_| sec.no_swap),
            nano_cpus,
            pids_limit: sec.pids_limit.or(config.pids_limit).map(i64::from),
            cap_drop: sec.drop_all_capabilities.then(|| vec!["ALL".to_string()]),
            cap_add: (!sec.cap_add.is_empty()).then(|| sec.cap_add.clone()),
            security_opt: sec
                .no_new_privileges
                .then(|| vec!["no-new-privileges:true".to_string()]),
            readonly_rootfs: sec.read_only_root.then_some(true),
            tmpfs,
            // Orion restarts tasks itself, with backoff and rescheduling; an engine
            // restart behind its back would hide exits from it.
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            // The engine's init (tini) as PID 1: it forwards SIGTERM to the task and
            // reaps zombies, so a task that is PID-1-unaware (busybox httpd, most
            // shells) stops on `stop` instead of waiting out the whole grace.
            init: Some(true),
            mounts: mounts(launch),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    }
}

/// The state Orion sees, from the engine's status and exit code.
pub fn state(status: Option<ContainerStateStatusEnum>, exit_code: Option<i64>) -> ContainerState {
    match status {
        Some(ContainerStateStatusEnum::CREATED) => ContainerState::Created,
        Some(ContainerStateStatusEnum::RUNNING) => ContainerState::Running,
        Some(ContainerStateStatusEnum::EXITED) => ContainerState::Exited {
            code: exit_code.unwrap_or(-1),
        },
        Some(other) => ContainerState::Other {
            name: other.to_string(),
        },
        None => ContainerState::Other {
            name: "unknown".into(),
        },
    }
}

/// Bound ports of a port map, named from the label; an unnamed port is called by its key.
fn bound_ports(map: &PortMap, names: &BTreeMap<(u16, Protocol), String>) -> Vec<PortBinding> {
    let mut out: Vec<PortBinding> = Vec::new();
    for (key, bindings) in map {
        let Some((container_port, protocol)) = parse_key(key) else {
            continue;
        };
        let name = names
            .get(&(container_port, protocol))
            .cloned()
            .unwrap_or_else(|| key.clone());
        for b in bindings.iter().flatten() {
            let Some(host_port) = b.host_port.as_deref().and_then(|p| p.parse().ok()) else {
                continue;
            };
            let host_ip = b.host_ip.clone().unwrap_or_default();
            // An all-interfaces binding is reported once per address family.
            let twin = out.iter().any(|p| {
                p.container_port == container_port
                    && p.protocol == protocol
                    && p.host_port == host_port
                    && (p.host_ip == host_ip || host_ip == "::")
            });
            if !twin {
                out.push(PortBinding {
                    name: name.clone(),
                    container_port,
                    host_port,
                    protocol,
                    host_ip,
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.name, &a.host_ip, a.host_port).cmp(&(&b.name, &b.host_ip, b.host_port)));
    out
}

/// The engine's health check verdict (`starting`, `healthy`, `unhealthy`),
/// with the last failing probe's output; none when the image has no check.
fn engine_health(h: &bollard::models::Health) -> Option<orion_core::Health> {
    use bollard::models::HealthStatusEnum as S;
    use orion_core::HealthStatus;
    let status = match h.status? {
        S::STARTING => HealthStatus::Starting,
        S::HEALTHY => HealthStatus::Healthy,
        S::UNHEALTHY => HealthStatus::Unhealthy,
        _ => return None,
    };
    let output = h
        .log
        .as_ref()
        .and_then(|log| log.iter().rev().find(|r| r.exit_code != Some(0)))
        .and_then(|r| r.output.as_deref())
        .map(|o| o.trim().chars().take(200).collect::<String>())
        .filter(|o| !o.is_empty() && status != HealthStatus::Healthy);
    Some(orion_core::Health { status, output })
}

/// What Orion needs of an inspected container.
pub fn info(id: &str, c: &ContainerInspectResponse) -> ContainerInfo {
    let labels = c.config.as_ref().and_then(|cfg| cfg.labels.as_ref());
    let label = |key: &str| labels.and_then(|l| l.get(key)).cloned().unwrap_or_default();
    let names = decode_port_names(&label(PORTS_LABEL));
    // While it runs, the engine reports what it bound; otherwise, what was asked for.
    let live = c.network_settings.as_ref().and_then(|n| n.ports.as_ref());
    let asked = c
        .host_config
        .as_ref()
        .and_then(|h| h.port_bindings.as_ref());
    let mut ports = live.map(|m| bound_ports(m, &names)).unwrap_or_default();
    if ports.is_empty() {
        ports = asked.map(|m| bound_ports(m, &names)).unwrap_or_default();
    }
    let st = c.state.as_ref();
    ContainerInfo {
        id: c.id.clone().unwrap_or_else(|| id.to_string()),
        alloc_id: label(labels::ALLOC),
        job: label(labels::JOB),
        state: state(st.and_then(|s| s.status), st.and_then(|s| s.exit_code)),
        ports,
        health: st.and_then(|s| s.health.as_ref()).and_then(engine_health),
        error: match st {
            Some(s) if s.oom_killed == Some(true) => Some(orion_core::runtime::OOM_KILLED.into()),
            _ => st.and_then(|s| s.error.clone()).filter(|e| !e.is_empty()),
        },
    }
}

/// Resource use from one stats sample. Memory excludes the reclaimable page cache, as
/// `docker stats` reports it.
pub fn stats(s: &ContainerStatsResponse) -> Stats {
    let mem = s.memory_stats.as_ref();
    let usage = mem.and_then(|m| m.usage).unwrap_or(0);
    let cache = mem
        .and_then(|m| m.stats.as_ref())
        .and_then(|st| {
            st.get("inactive_file")
                .or_else(|| st.get("total_inactive_file"))
        })
        .copied()
        .unwrap_or(0);
    let networks: Vec<_> = s.networks.iter().flat_map(|n| n.values()).collect();
    Stats {
        memory_bytes: usage.saturating_sub(cache),
        memory_limit_bytes: mem.and_then(|m| m.limit).unwrap_or(0),
        cpu_total_ns: s
            .cpu_stats
            .as_ref()
            .and_then(|c| c.cpu_usage.as_ref())
            .and_then(|u| u.total_usage)
            .unwrap_or(0),
        pids: s.pids_stats.as_ref().and_then(|p| p.current).unwrap_or(0),
        network_rx_bytes: networks.iter().filter_map(|n| n.rx_bytes).sum(),
        network_tx_bytes: networks.iter().filter_map(|n| n.tx_bytes).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerConfig, ContainerState as EngineState, NetworkSettings};
    use orion_core::{Resources, TaskSpec};

    fn binding(name: &str, port: u16, host: u16, protocol: Protocol, ip: &str) -> PortBinding {
        PortBinding {
            name: name.into(),
            container_port: port,
            host_port: host,
            protocol,
            host_ip: ip.into(),
        }
    }

    fn launch() -> TaskLaunch {
        TaskLaunch {
            cluster_id: "c1".into(),
            node_id: "n1".into(),
            alloc_id: "a1".into(),
            job: "web".into(),
            job_version: 3,
            task: TaskSpec {
                image: "orion-test/web:1".into(),
                outputs: Vec::new(),
                script: None,
                security: None,
                command: vec!["/bin/httpd".into(), "-f".into()],
                args: vec!["-p".into(), "80".into()],
                env: [("GREETING".to_string(), "hi".to_string())].into(),
                resources: Resources {
                    cpu: 0.5,
                    memory_mb: 64,
                    disk_mb: 0,
                },
                ports: Vec::new(),
                volumes: Vec::new(),
                secrets: Vec::new(),
                env_from_secret: Default::default(),
                health_checks: Vec::new(),
                service: None,
                timeout: None,
                metrics: None,
            },
            ports: vec![
                binding("http", 80, 8080, Protocol::Tcp, "127.0.0.1"),
                binding("dns", 53, 5353, Protocol::Udp, ""),
            ],
            security: Default::default(),
            secret_env: Default::default(),
        }
    }

    #[test]
    fn port_names_round_trip() {
        let l = launch();
        let label = encode_port_names(&l.ports);
        assert_eq!(label, "http=80/tcp,dns=53/udp");
        let names = decode_port_names(&label);
        assert_eq!(names[&(80, Protocol::Tcp)], "http");
        assert_eq!(names[&(53, Protocol::Udp)], "dns");
        assert!(decode_port_names("junk,x=nope/sctp").is_empty());
    }

    #[test]
    fn the_restricted_profile_maps_to_the_engine_and_the_default_adds_nothing() {
        let mut l = launch();
        l.security = orion_core::spec::Security::of(orion_core::spec::Profile::Restricted);
        let b = create_body(&l, &DockerConfig::default());
        let h = b.host_config.as_ref().unwrap();
        assert_eq!(b.user.as_deref(), Some("65534:65534"));
        assert_eq!(b.working_dir.as_deref(), Some("/workspace"));
        assert_eq!(h.cap_drop.as_deref(), Some(&["ALL".to_string()][..]));
        assert_eq!(
            h.security_opt.as_deref(),
            Some(&["no-new-privileges:true".to_string()][..])
        );
        assert_eq!(h.readonly_rootfs, Some(true));
        let tmpfs = h.tmpfs.as_ref().unwrap();
        assert!(tmpfs["/workspace"].ends_with("uid=65534,gid=65534"));
        assert_eq!(tmpfs["/tmp"], "rw,nosuid,nodev,mode=1777");
        assert_eq!(h.pids_limit, Some(256));
        assert_eq!(h.memory_swap, h.memory);
        // A user by name: /workspace stays writable by all, not the working dir.
        l.security.user = Some("nobody".into());
        let b = create_body(&l, &DockerConfig::default());
        assert_eq!(b.working_dir, None);
        assert!(!b.host_config.unwrap().tmpfs.unwrap()["/workspace"].contains("uid="));
        let plain = create_body(&launch(), &DockerConfig::default());
        let h = plain.host_config.unwrap();
        assert_eq!(
            (
                plain.user,
                h.cap_drop,
                h.readonly_rootfs,
                h.tmpfs,
                h.memory_swap
            ),
            (None, None, None, None, None)
        );
    }

    #[test]
    fn secret_variables_join_the_env_and_only_there() {
        let mut l = launch();
        l.secret_env.insert(
            "DB".into(),
            orion_core::secret::Plaintext::new(b"s3cret".to_vec()),
        );
        assert!(
            !format!("{l:?}").contains("s3cret"),
            "a launch prints no value"
        );
        let body = create_body(&l, &DockerConfig::default());
        assert_eq!(body.env.unwrap(), ["GREETING=hi", "DB=s3cret"]);
        assert!(!body.labels.unwrap().values().any(|v| v.contains("s3cret")));
    }

    #[test]
    fn create_body_carries_command_env_labels_ports_and_limits() {
        let body = create_body(&launch(), &DockerConfig::default());
        assert_eq!(
            body.cmd.unwrap(),
            ["/bin/httpd", "-f", "-p", "80"].map(String::from)
        );
        assert_eq!(body.env.unwrap(), ["GREETING=hi"]);
        let labels = body.labels.unwrap();
        assert_eq!(labels[labels::ALLOC], "a1");
        assert_eq!(labels[labels::VERSION], "3");
        assert_eq!(labels[PORTS_LABEL], "http=80/tcp,dns=53/udp");
        assert_eq!(body.exposed_ports.unwrap(), ["53/udp", "80/tcp"]);
        let host = body.host_config.unwrap();
        let ports = host.port_bindings.unwrap();
        let http = ports["80/tcp"].as_ref().unwrap();
        assert_eq!(http[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(http[0].host_port.as_deref(), Some("8080"));
        assert_eq!(ports["53/udp"].as_ref().unwrap()[0].host_ip, None);
        assert_eq!(host.memory, Some(64 * 1024 * 1024));
        assert_eq!(host.nano_cpus, Some(500_000_000));
        assert_eq!(host.pids_limit, Some(1024));
        assert_eq!(
            host.restart_policy.unwrap().name,
            Some(RestartPolicyNameEnum::NO)
        );
    }

    #[test]
    fn empty_command_keeps_the_image_default() {
        let mut l = launch();
        l.task.command.clear();
        l.task.args.clear();
        l.ports.clear();
        let body = create_body(&l, &DockerConfig::default());
        assert_eq!(body.cmd, None);
        assert_eq!(body.exposed_ports, None);
        assert!(!body.labels.unwrap().contains_key(PORTS_LABEL));
    }

    #[test]
    fn inspect_names_bound_ports_and_reads_state() {
        let live: PortMap = [(
            "80/tcp".to_string(),
            Some(vec![
                EnginePortBinding {
                    host_ip: Some("0.0.0.0".into()),
                    host_port: Some("8080".into()),
                },
                EnginePortBinding {
                    host_ip: Some("::".into()),
                    host_port: Some("8080".into()),
                },
            ]),
        )]
        .into();
        let labels: HashMap<String, String> = [
            (labels::ALLOC.to_string(), "a1".to_string()),
            (labels::JOB.to_string(), "web".to_string()),
            (PORTS_LABEL.to_string(), "http=80/tcp".to_string()),
        ]
        .into();
        let c = ContainerInspectResponse {
            id: Some("abc".into()),
            config: Some(ContainerConfig {
                labels: Some(labels),
                ..Default::default()
            }),
            state: Some(EngineState {
                status: Some(ContainerStateStatusEnum::EXITED),
                exit_code: Some(137),
                error: Some(String::new()),
                ..Default::default()
            }),
            network_settings: Some(NetworkSettings {
                ports: Some(live),
                ..Default::default()
            }),
            ..Default::default()
        };
        let info = info("abc", &c);
        assert_eq!(info.alloc_id, "a1");
        assert_eq!(info.job, "web");
        assert_eq!(info.state, ContainerState::Exited { code: 137 });
        assert_eq!(info.error, None);
        assert_eq!(
            info.ports,
            [binding("http", 80, 8080, Protocol::Tcp, "0.0.0.0")]
        );
    }

    #[test]
    fn other_states_keep_their_names() {
        assert_eq!(
            state(Some(ContainerStateStatusEnum::PAUSED), Some(0)),
            ContainerState::Other {
                name: "paused".into()
            }
        );
    }
}
