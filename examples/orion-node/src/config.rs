//! The agent's config file: the flags' names as YAML or JSON keys; flags win.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use serde::Deserialize;

use crate::cli::AgentArgs;

/// What a config file may set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    http: Option<SocketAddr>,
    node_id: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    cpu: Option<f64>,
    memory_mb: Option<u64>,
    disk_mb: Option<u64>,
    host_ip: Option<String>,
    port_range: Option<String>,
    join: Option<String>,
    role: Option<String>,
    raft: Option<SocketAddr>,
    gossip: Option<SocketAddr>,
    engine: Option<String>,
    advertise_http: Option<String>,
    max_voters: Option<usize>,
    join_timeout: Option<u64>,
}

/// Fills every flag not given on the command line from the config file, if any.
pub fn merge(mut args: AgentArgs) -> Result<AgentArgs> {
    let Some(path) = args.config.clone() else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let value: serde_json::Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(&text)
            .map_err(|e| anyhow!("{}: malformed JSON: {e}", path.display()))?
    } else {
        serde_saphyr::from_str(&text)
            .map_err(|e| anyhow!("{}: malformed YAML: {e}", path.display()))?
    };
    let file: FileConfig = serde_path_to_error::deserialize(value)
        .map_err(|e| anyhow!("{}: {}: {}", path.display(), e.path(), e.inner()))?;
    macro_rules! fill {
        ($($f:ident),*) => { $( if args.$f.is_none() { args.$f = file.$f; } )* };
    }
    fill!(
        data_dir,
        http,
        node_id,
        cpu,
        memory_mb,
        disk_mb,
        host_ip,
        join,
        raft,
        gossip,
        engine,
        advertise_http,
        max_voters,
        join_timeout
    );
    if args.role.is_none() {
        args.role = file
            .role
            .map(|r| {
                r.parse()
                    .map_err(|e: String| anyhow!("{}: role: {e}", path.display()))
            })
            .transpose()?;
    }
    if args.port_range.is_none() {
        if let Some(r) = file.port_range {
            let range = crate::cli::parse_range(&r)
                .map_err(|e| anyhow!("{}: port_range: {e}", path.display()))?;
            args.port_range = Some(range);
        }
    }
    for (k, v) in file.tags {
        if !args.tags.iter().any(|(key, _)| *key == k) {
            args.tags.push((k, v));
        }
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_fills_what_flags_leave_out_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.yaml");
        std::fs::write(
            &path,
            "node_id: n7\ncpu: 2\ntags: { disk: ssd }\nport_range: 33000-33100\n",
        )
        .unwrap();
        let args = AgentArgs {
            config: Some(path.clone()),
            cpu: Some(4.0),
            ..AgentArgs::default()
        };
        let merged = merge(args).unwrap();
        assert_eq!(merged.node_id.as_deref(), Some("n7"));
        assert_eq!(merged.cpu, Some(4.0), "flags win");
        assert_eq!(merged.tags, [("disk".to_string(), "ssd".to_string())]);
        assert_eq!(merged.port_range, Some((33000, 33100)));
        std::fs::write(&path, "nodeid: n7\n").unwrap();
        let err = merge(AgentArgs {
            config: Some(path),
            ..AgentArgs::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `nodeid`"), "{err}");
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
            "join": "http://127.0.0.1:8080",
            "role": "worker",
            "raft": "127.0.0.1:7000",
            "gossip": "127.0.0.1:7001",
            "engine": "sled",
            "advertise_http": "10.0.0.1:9000",
            "max_voters": 5,
            "join_timeout": 30
        });
        std::fs::write(&path, full.to_string()).unwrap();
        let m = merge(AgentArgs {
            config: Some(path.clone()),
            ..AgentArgs::default()
        })
        .unwrap();
        assert_eq!(m.data_dir, Some(PathBuf::from("/var/lib/orion")));
        assert_eq!(m.http, Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(m.node_id.as_deref(), Some("n1"));
        assert_eq!(m.tags, [("gpu".to_string(), "true".to_string())]);
        assert_eq!(
            (m.cpu, m.memory_mb, m.disk_mb),
            (Some(8.0), Some(16384), Some(100000))
        );
        assert_eq!(m.host_ip.as_deref(), Some("127.0.0.2"));
        assert_eq!(m.port_range, Some((30000, 30100)));
        assert_eq!(m.join.as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(m.role, Some("worker".parse().unwrap()));
        assert_eq!(m.raft, Some("127.0.0.1:7000".parse().unwrap()));
        assert_eq!(m.gossip, Some("127.0.0.1:7001".parse().unwrap()));
        assert_eq!(m.engine.as_deref(), Some("sled"));
        assert_eq!(m.advertise_http.as_deref(), Some("10.0.0.1:9000"));
        assert_eq!((m.max_voters, m.join_timeout), (Some(5), Some(30)));

        for (bad, names) in [
            (r#"{"port_range": "0-100"}"#, "port_range"),
            (r#"{"port_range": "200-100"}"#, "port_range"),
            (r#"{"port_range": "30000"}"#, "port_range"),
            (r#"{"role": "boss"}"#, "role"),
            (r#"{"cpu": "lots"}"#, "cpu"),
            (r#"{"http": "nowhere"}"#, "http"),
            ("{ not json", "malformed JSON"),
        ] {
            std::fs::write(&path, bad).unwrap();
            let err = merge(AgentArgs {
                config: Some(path.clone()),
                ..AgentArgs::default()
            })
            .unwrap_err()
            .to_string();
            assert!(err.contains(names), "{bad}: {err}");
            assert!(err.contains("node.json"), "names the file: {err}");
        }
    }
}
