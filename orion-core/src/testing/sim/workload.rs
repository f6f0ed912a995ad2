//! Deterministic heterogeneous clusters and job mixes for benches, quality
//! comparisons and simulations.
//!
//! Nodes come in four sizes with different CPU-to-memory ratios (so either
//! dimension can bind first), 20% of them tagged `disk=ssd` and a quarter of those
//! also `gpu=true`. Jobs cycle through a mix of web services, APIs, workers,
//! memory-heavy caches, SSD databases, GPU jobs and load balancers on fixed host
//! ports with distinct hosts.

use std::collections::BTreeMap;

use crate::command::SlotRef;
use crate::model::{NodeAddrs, NodeInfo, NodeRole};
use crate::spec::{JobSpec, PortSpec, Protocol, Resources};

/// splitmix64: a tiny deterministic hash, so workloads need no random source.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The id of the `i`-th node (`node-00042`), sorting in index order.
pub fn node_id(i: usize) -> String {
    format!("node-{i:05}")
}

/// The `i`-th node of a heterogeneous cluster.
///
/// Sizes (cores / GiB): 40% 4/8, 30% 8/32, 20% 16/32, 10% 32/128. Every fifth node
/// is tagged `disk=ssd`; every twentieth also `gpu=true`. Dynamic ports
/// 20000–32767.
pub fn mixed_node(i: usize) -> NodeInfo {
    let (cpu, gib) = match mix(i as u64) % 10 {
        0..=3 => (4.0, 8),
        4..=6 => (8.0, 32),
        7 | 8 => (16.0, 32),
        _ => (32.0, 128),
    };
    let mut tags = BTreeMap::new();
    if i.is_multiple_of(5) {
        tags.insert("disk".to_string(), "ssd".to_string());
    }
    if i.is_multiple_of(20) {
        tags.insert("gpu".to_string(), "true".to_string());
    }
    let id = node_id(i);
    NodeInfo {
        addrs: NodeAddrs {
            http: format!("10.0.{}.{}:8080", i / 250, i % 250),
            raft: None,
            gossip: None,
        },
        id,
        role: NodeRole::Worker,
        capacity: Resources {
            cpu,
            memory_mb: gib * 1024,
            disk_mb: gib * 8 * 1024,
        },
        tags,
        host_ip: format!("10.0.{}.{}", i / 250, i % 250),
        port_range: (20000, 32767),
        host_volumes: Vec::new(),
        data_key_id: None,
        runtime: None,
        runtime_warning: None,
    }
}

/// `n` nodes of [`mixed_node`].
pub fn mixed_nodes(n: usize) -> Vec<NodeInfo> {
    (0..n).map(mixed_node).collect()
}

/// The `i`-th job of the mix, with `replicas` replicas (load balancers are capped
/// at a quarter of `nodes`, since they want distinct hosts).
///
/// Per 20 jobs: 10 web (0.25 core, 256 MiB, one dynamic port), 5 api (0.5 core,
/// 1 GiB, two dynamic ports), 2 workers (1 core, 2 GiB), 1 SSD database (2 cores,
/// 4 GiB, `disk=ssd`), 1 load balancer (0.5 core, 512 MiB, a fixed host port,
/// distinct hosts) and 1 that alternates between a cache (1 core, 8 GiB) and a GPU
/// job (4 cores, 16 GiB, `gpu=true`).
pub fn mixed_job(i: usize, replicas: u32, nodes: usize) -> JobSpec {
    let base = |kind: &str| JobSpec::service(format!("{kind}-{i:05}"), "registry.local/app:1");
    match i % 20 {
        0..=9 => base("web").resources(0.25, 256).port("http", 8080),
        10..=14 => base("api")
            .resources(0.5, 1024)
            .port("http", 8080)
            .port("grpc", 9090),
        15 | 16 => base("worker").resources(1.0, 2048),
        17 => base("db").resources(2.0, 4096).selector("disk", "ssd"),
        18 => {
            let mut spec = base("lb").resources(0.5, 512);
            spec.task.ports.push(PortSpec {
                name: "http".into(),
                container_port: 80,
                host_port: Some(8000 + (i as u32 / 20) % 1000),
                protocol: Protocol::Tcp,
                lb: None,
            });
            spec.distinct_hosts = true;
            return spec.replicas(replicas.min((nodes as u32 / 4).max(1)));
        }
        _ if (i / 20).is_multiple_of(2) => base("cache").resources(1.0, 8192),
        _ => base("ml").resources(4.0, 16_384).selector("gpu", "true"),
    }
    .replicas(replicas)
}

/// `count` jobs of the mix, starting at job `first`.
pub fn mixed_jobs(first: usize, count: usize, replicas: u32, nodes: usize) -> Vec<JobSpec> {
    (first..first + count)
        .map(|i| mixed_job(i, replicas, nodes))
        .collect()
}

/// Placement requests for every replica of a job at `version`.
pub fn slots(spec: &JobSpec, version: u64) -> Vec<SlotRef> {
    (0..spec.replicas)
        .map(|slot| SlotRef {
            job: spec.name.clone(),
            version,
            slot,
            existing: None,
            replaces: None,
            pin: None,
        })
        .collect()
}
