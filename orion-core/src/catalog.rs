//! The service catalog: every running allocation with a named port is an
//! instance of a service — its job's name, or the `service.name` its task
//! gives — with its node, address, ports, tags, metadata and health. Nothing
//! is registered or written per instance: the catalog is read off the
//! committed allocations, so it follows them exactly.
//!
//! A service's index is the highest store index of a change to any job that
//! provides it or to their allocations; a blocking read (`?index=N&wait=30s`,
//! Consul's and Nomad's contract) returns as soon as that index is no longer
//! `N`, or after the wait with the same index.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::{AllocId, AllocState, HealthStatus, Job, JobStatus, NodeId};
use crate::state::ClusterState;

/// One instance of a service: a running allocation and where to reach it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Instance {
    /// The service.
    pub service: String,
    /// The allocation.
    pub alloc: AllocId,
    /// Its job.
    pub job: String,
    /// The node it runs on.
    pub node: NodeId,
    /// The address its ports are published on (the node's host IP).
    pub address: String,
    /// Its first named port's host port.
    pub port: u16,
    /// Every named port's host port.
    pub ports: BTreeMap<String, u16>,
    /// The service's tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The service's metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    /// Running, and passing its checks if it has any (an instance whose checks
    /// have not run yet is not): what discovery and the load balancer serve.
    pub healthy: bool,
    /// Its checks' verdict, when it has checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatus>,
}

/// A service as `GET /v1/services` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServiceSummary {
    /// Its name.
    pub name: String,
    /// The tags of its instances.
    pub tags: Vec<String>,
    /// Instances running.
    pub instances: usize,
    /// Of those, how many are healthy.
    pub healthy: usize,
    /// Its index (see the module docs).
    pub index: u64,
}

/// The service a job's instances belong to.
pub fn service_of(job: &Job) -> String {
    job.spec
        .task
        .service
        .as_ref()
        .and_then(|s| s.name.clone())
        .unwrap_or_else(|| job.spec.name.clone())
}

/// The instances of `service` (healthy or not) and its index.
pub fn instances(state: &ClusterState, service: &str) -> (u64, Vec<Instance>) {
    let mut index = 0;
    let mut out = Vec::new();
    for job in state.jobs.values().filter(|j| service_of(j) == service) {
        index = index.max(job.modify_index);
        let (tags, meta) = job
            .spec
            .task
            .service
            .as_ref()
            .map(|s| (s.tags.clone(), s.meta.clone()))
            .unwrap_or_default();
        // With checks, an instance is healthy once they pass, not before.
        let checked = !job.spec.task.health_checks.is_empty();
        for a in state.allocs_of_job(&job.spec.name) {
            index = index.max(a.modify_index);
            let (Some(node), Some(first)) = (a.node.as_ref(), a.ports.first()) else {
                continue;
            };
            if !(a.is_live() && a.state == AllocState::Running && job.status == JobStatus::Running)
            {
                continue;
            }
            let health = a.health.as_ref().map(|h| h.status);
            out.push(Instance {
                service: service.to_string(),
                alloc: a.id.clone(),
                job: a.job.clone(),
                node: node.clone(),
                address: first.host_ip.clone(),
                port: first.host_port,
                ports: a
                    .ports
                    .iter()
                    .map(|p| (p.name.clone(), p.host_port))
                    .collect(),
                tags: tags.clone(),
                meta: meta.clone(),
                healthy: match health {
                    None => !checked,
                    Some(h) => h == HealthStatus::Healthy,
                },
                health,
            });
        }
    }
    out.sort_by(|a, b| a.alloc.cmp(&b.alloc));
    (index, out)
}

/// Every service with instances or a job that provides it, by name.
pub fn services(state: &ClusterState) -> Vec<ServiceSummary> {
    let names: BTreeSet<String> = state
        .jobs
        .values()
        .filter(|j| j.status == JobStatus::Running && !j.spec.task.ports.is_empty())
        .map(service_of)
        .collect();
    names
        .into_iter()
        .map(|name| {
            let (index, all) = instances(state, &name);
            let mut tags: Vec<String> = all.iter().flat_map(|i| i.tags.clone()).collect();
            tags.sort();
            tags.dedup();
            ServiceSummary {
                healthy: all.iter().filter(|i| i.healthy).count(),
                instances: all.len(),
                name,
                tags,
                index,
            }
        })
        .collect()
}
