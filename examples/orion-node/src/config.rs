//! The agent's settings: the config file (YAML or JSON, read straight into
//! [`orion::NodeConfig`], whose field names are the flags' with `_` for `-`),
//! then the flags over it; flags win.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use orion::NodeConfig;

use crate::cli::AgentArgs;

/// The node config the agent's flags and config file describe.
pub fn node_config(args: &AgentArgs) -> Result<NodeConfig> {
    let (mut c, file_has_data_dir) = match &args.config {
        Some(path) => read_file(path)?,
        None => (NodeConfig::default(), false),
    };
    macro_rules! flag {
        ($($f:ident),*) => { $( if let Some(v) = args.$f.clone() { c.$f = v; } )* };
        (opt $($f:ident),*) => { $( if let Some(v) = args.$f.clone() { c.$f = Some(v); } )* };
    }
    flag!(
        data_dir,
        http,
        raft,
        gossip,
        host_ip,
        port_range,
        role,
        engine,
        max_voters,
        dns_domain,
        dns_ttl,
        secrets_dir
    );
    if let Some(path) = &args.data_key_file {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("--data-key-file {}", path.display()))?,
        );
        let key = orion::secret::DataKey::from_hex(&text)
            .map_err(|e| anyhow!("--data-key-file {}: {e}", path.display()))?;
        c.data_key = Some(key);
    }
    if !args.dns_forward.is_empty() {
        c.dns_forward = args.dns_forward.clone();
    }
    flag!(opt node_id, cpu, memory_mb, disk_mb, advertise_http, dns);
    if args.no_dns {
        c.dns = None;
    }
    for (lang, image) in &args.script_images {
        c.script_images.insert(*lang, image.clone());
    }
    if args.no_lb {
        c.load_balancer = false;
    }
    if args.insecure_dev {
        c.insecure_dev = true;
    }
    if args.autolock {
        c.autolock = true;
    }
    c.unlock_key = unlock_key(
        "--unlock-key-file",
        args.unlock_key_file.as_deref(),
        args.unlock_key.as_deref(),
    )?;
    if let Some(t) = &args.join_token {
        c.join_token = Some(t.trim().to_string());
    }
    if let Some(t) = args.cert_expiry {
        c.cert_expiry = t;
    }
    if let Some(t) = args.stats_interval {
        c.loops.stats.interval = t;
    }
    if let Some(t) = args.join_timeout {
        c.join_timeout = t;
    }
    if !args.join.is_empty() {
        c.join = args.join.clone();
    }
    if !args.host_volumes.is_empty() {
        c.host_volumes = args.host_volumes.clone();
    }
    for (k, v) in &args.tags {
        c.tags.insert(k.clone(), v.clone());
    }
    if args.data_dir.is_none() && !file_has_data_dir {
        anyhow::bail!("--data-dir is required (or data_dir in --config)");
    }
    c.validate().map_err(|e| {
        anyhow!(
            "--{} (or {} in --config): {}",
            e.field.replace('_', "-"),
            e.field,
            e.problem
        )
    })?;
    Ok(c)
}

/// A config file, YAML or JSON; unknown keys and bad values name the key. Says
/// too whether it sets `data_dir`.
fn read_file(path: &Path) -> Result<(NodeConfig, bool)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let value: serde_json::Value = if text.trim_start().starts_with('{') {
        orion::spec::parse_json_strict(&text)
            .map_err(|e| anyhow!("{}: malformed JSON: {e}", path.display()))?
    } else {
        orion::spec::parse_yaml_value(&text)
            .map_err(|e| anyhow!("{}: malformed YAML: {e}", path.display()))?
    };
    let has_data_dir = value.get("data_dir").is_some();
    let config = serde_path_to_error::deserialize(value)
        .map_err(|e| anyhow!("{}: {}: {}", path.display(), e.path(), e.inner()))?;
    Ok((config, has_data_dir))
}

/// The unlock key from `file` (given as `flag`), else from `text`
/// (`ORION_UNLOCK_KEY`), if either is given; the error names where it came
/// from, never the key.
pub fn unlock_key(
    flag: &str,
    file: Option<&Path>,
    text: Option<&str>,
) -> Result<Option<orion::at_rest::UnlockKey>> {
    let (from, text) = match (file, text) {
        (Some(path), _) => (
            format!("{flag} {}", path.display()),
            zeroize::Zeroizing::new(
                std::fs::read_to_string(path)
                    .with_context(|| format!("{flag} {}", path.display()))?,
            ),
        ),
        (None, Some(t)) => (
            "ORION_UNLOCK_KEY".to_string(),
            zeroize::Zeroizing::new(t.to_string()),
        ),
        (None, None) => return Ok(None),
    };
    orion::at_rest::UnlockKey::parse(&text)
        .map(Some)
        .map_err(|e| anyhow!("{from}: {e}"))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;

    fn args(config: &Path) -> AgentArgs {
        AgentArgs {
            config: Some(config.to_path_buf()),
            ..AgentArgs::default()
        }
    }

    #[test]
    fn file_fills_what_flags_leave_out_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.yaml");
        std::fs::write(
            &path,
            "data_dir: /tmp/o\nnode_id: n7\ncpu: 2\ntags: { disk: ssd }\nport_range: 33000-33100\n",
        )
        .unwrap();
        let c = node_config(&AgentArgs {
            cpu: Some(4.0),
            tags: vec![("zone".into(), "a".into())],
            ..args(&path)
        })
        .unwrap();
        assert_eq!(c.node_id.as_deref(), Some("n7"));
        assert_eq!(c.cpu, Some(4.0), "flags win");
        assert_eq!(c.tags.len(), 2, "flag tags add to the file's");
        assert_eq!(c.port_range, (33000, 33100));
        std::fs::write(&path, "nodeid: n7\n").unwrap();
        let err = node_config(&args(&path)).unwrap_err().to_string();
        assert!(err.contains("unknown field `nodeid`"), "{err}");
    }

    #[test]
    fn every_flag_has_a_key_and_bad_values_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.json");
        let full = serde_json::json!({
            "data_dir": "/var/lib/orion",
            "http": "127.0.0.1:9000",
            "node_id": "n1",
            "tags": { "gpu": "true" },
            "cpu": 8.0,
            "memory_mb": 16384,
            "disk_mb": 100000,
            "host_ip": "127.0.0.2",
            "port_range": "30000-30100",
            "join": ["http://127.0.0.1:8080"],
            "role": "worker",
            "raft": "127.0.0.1:7000",
            "gossip": "127.0.0.1:7001",
            "engine": "sled",
            "advertise_http": "10.0.0.1:9000",
            "max_voters": 5,
            "join_timeout": "30s"
        });
        std::fs::write(&path, full.to_string()).unwrap();
        let m = node_config(&args(&path)).unwrap();
        assert_eq!(m.data_dir, PathBuf::from("/var/lib/orion"));
        assert_eq!(m.http, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(m.node_id.as_deref(), Some("n1"));
        assert_eq!(m.tags.get("gpu").map(String::as_str), Some("true"));
        assert_eq!(
            (m.cpu, m.memory_mb, m.disk_mb),
            (Some(8.0), Some(16384), Some(100000))
        );
        assert_eq!(m.host_ip.to_string(), "127.0.0.2");
        assert_eq!(m.port_range, (30000, 30100));
        assert_eq!(m.join, ["http://127.0.0.1:8080"]);
        assert_eq!(m.role, orion::NodeRole::Worker);
        assert_eq!(m.raft, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(m.gossip, "127.0.0.1:7001".parse().unwrap());
        assert_eq!(m.engine, orion::Engine::Sled);
        assert_eq!(m.advertise_http.as_deref(), Some("10.0.0.1:9000"));
        assert_eq!((m.max_voters, m.join_timeout), (5, Duration::from_secs(30)));

        for (bad, names) in [
            (r#"{"port_range": "0-100"}"#, "port_range"),
            (r#"{"port_range": "200-100"}"#, "port_range"),
            (r#"{"port_range": "30000"}"#, "port_range"),
            (r#"{"role": "boss"}"#, "role"),
            (r#"{"cpu": "lots"}"#, "cpu"),
            (r#"{"data_dir": "/d", "cpu": -1}"#, "cpu"),
            (r#"{"data_dir": "/d", "memory_mb": 0}"#, "memory_mb"),
            (r#"{"http": "nowhere"}"#, "http"),
            (r#"{"cpu": 1, "cpu": 2}"#, "duplicate"),
            ("{ not json", "malformed JSON"),
        ] {
            std::fs::write(&path, bad).unwrap();
            let err = node_config(&args(&path)).unwrap_err().to_string();
            assert!(err.contains(names), "{bad}: {err}");
        }
    }

    #[test]
    fn bad_flags_are_named_as_flags() {
        let dir = tempfile::tempdir().unwrap();
        let base = AgentArgs {
            data_dir: Some(dir.path().to_path_buf()),
            ..AgentArgs::default()
        };
        for (a, flag) in [
            (
                AgentArgs {
                    cpu: Some(-1.0),
                    ..base.clone()
                },
                "--cpu",
            ),
            (
                AgentArgs {
                    cpu: Some(f64::NAN),
                    ..base.clone()
                },
                "--cpu",
            ),
            (
                AgentArgs {
                    memory_mb: Some(0),
                    ..base.clone()
                },
                "--memory-mb",
            ),
            (
                AgentArgs {
                    max_voters: Some(9),
                    ..base.clone()
                },
                "--max-voters",
            ),
        ] {
            let err = node_config(&a).unwrap_err().to_string();
            assert!(err.starts_with(flag), "{err}");
        }
        let err = node_config(&AgentArgs::default()).unwrap_err().to_string();
        assert!(err.contains("--data-dir is required"), "{err}");
    }
}
