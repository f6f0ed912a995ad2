//! What every node's balancer should serve, read off the committed state: one
//! listener per `lb.port`, with the healthy instances of its service as
//! backends. Pure, and the same on every node that has applied the same index.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::catalog;
use crate::model::{AllocId, JobStatus, NodeId};
use crate::spec::{FieldError, JobSpec, LbSpec, Protocol};
use crate::state::ClusterState;

/// One listener a node should run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerPlan {
    /// The port it accepts on.
    pub port: u16,
    /// The service it balances.
    pub service: String,
    /// Its settings (those of the first job, by name, that asks for it; jobs
    /// sharing it differ only in `weight`).
    pub spec: LbSpec,
    /// The healthy, running instances, by allocation id.
    pub backends: Vec<BackendPlan>,
}

/// One backend of a listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendPlan {
    /// The allocation.
    pub alloc: AllocId,
    /// Its job.
    pub job: String,
    /// Its node.
    pub node: NodeId,
    /// Where its port is published.
    pub addr: SocketAddr,
    /// Its job's `lb.weight`.
    pub weight: u32,
}

/// Each running job's listener ports: `(port, port name, spec)`.
fn lb_ports(spec: &JobSpec) -> impl Iterator<Item = (u16, &str, &LbSpec)> {
    spec.task
        .ports
        .iter()
        .filter_map(|p| p.lb.as_ref().map(|lb| (lb.port, p.name.as_str(), lb)))
}

/// The listeners the state asks for, by port.
pub fn plan(state: &ClusterState) -> Vec<ListenerPlan> {
    let mut by_port: BTreeMap<u16, ListenerPlan> = BTreeMap::new();
    // Jobs iterate by name, so the first job of a port decides its settings.
    let mut port_jobs: BTreeMap<u16, BTreeMap<String, (String, u32)>> = BTreeMap::new();
    for job in state
        .jobs
        .values()
        .filter(|j| j.status == JobStatus::Running)
    {
        let service = catalog::service_of(job);
        for (port, name, lb) in lb_ports(&job.spec) {
            let entry = by_port.entry(port).or_insert_with(|| ListenerPlan {
                port,
                service: service.clone(),
                spec: lb.clone(),
                backends: Vec::new(),
            });
            if entry.service != service {
                // Refused at submit; a state written before the check keeps
                // the first service.
                continue;
            }
            port_jobs
                .entry(port)
                .or_default()
                .insert(job.spec.name.clone(), (name.to_string(), lb.weight));
        }
    }
    for (port, listener) in by_port.iter_mut() {
        let jobs = &port_jobs[port];
        let (_, instances) = catalog::instances(state, &listener.service);
        for i in instances.into_iter().filter(|i| i.healthy) {
            let Some((port_name, weight)) = jobs.get(&i.job) else {
                continue;
            };
            let (Some(host_port), Ok(ip)) = (i.ports.get(port_name), i.address.parse()) else {
                continue;
            };
            listener.backends.push(BackendPlan {
                alloc: i.alloc,
                job: i.job,
                node: i.node,
                addr: SocketAddr::new(ip, *host_port),
                weight: *weight,
            });
        }
    }
    by_port.into_values().collect()
}

/// Whether two jobs may share a listener: the same settings but for weight.
fn compatible(a: &LbSpec, b: &LbSpec) -> bool {
    LbSpec {
        weight: b.weight,
        ..a.clone()
    } == *b
}

/// What keeps `spec`'s load-balancer ports (and its fixed host ports) from
/// working in the cluster as it is: [`listener_conflicts`], and a node's own
/// ports or its dynamic port range. Each names the field.
pub fn conflicts(state: &ClusterState, spec: &JobSpec) -> Vec<FieldError> {
    let mut out = listener_conflicts(state, spec);
    out.extend(node_conflicts(state, spec));
    out
}

/// A listener port that is another service's listener, a listener of the same
/// service with other settings, or another job's fixed host port (and a fixed
/// host port that is another job's listener). The state machine refuses these
/// too, so two jobs submitted at once cannot both take a port.
pub fn listener_conflicts(state: &ClusterState, spec: &JobSpec) -> Vec<FieldError> {
    let mut out = Vec::new();
    // Only a listener or a fixed TCP host port can clash. Most jobs have
    // neither: they must not pay a walk over every job on each write (the
    // state machine applies every submission through here).
    if !spec
        .task
        .ports
        .iter()
        .any(|p| p.lb.is_some() || (p.host_port.is_some() && p.protocol == Protocol::Tcp))
    {
        return out;
    }
    let service = spec
        .task
        .service
        .as_ref()
        .and_then(|s| s.name.clone())
        .unwrap_or_else(|| spec.name.clone());
    let others: Vec<_> = state
        .jobs
        .values()
        .filter(|j| j.status == JobStatus::Running && j.spec.name != spec.name)
        .collect();
    for (i, p) in spec.task.ports.iter().enumerate() {
        let at = format!("task.ports[{i}]");
        if let Some(h) = p.host_port.filter(|_| p.protocol == Protocol::Tcp) {
            for other in &others {
                if lb_ports(&other.spec).any(|(port, _, _)| u32::from(port) == h) {
                    out.push(FieldError {
                        field: format!("{at}.host_port"),
                        problem: format!(
                            "port {h} is the load-balancer port of job {:?}",
                            other.spec.name
                        ),
                    });
                }
            }
        }
        let Some(lb) = &p.lb else { continue };
        let field = format!("{at}.lb.port");
        let port = lb.port;
        let mut clash = |problem: String| {
            out.push(FieldError {
                field: field.clone(),
                problem,
            })
        };
        for other in &others {
            for (theirs, _, their_lb) in lb_ports(&other.spec) {
                if theirs != port {
                    continue;
                }
                let their_service = catalog::service_of(other);
                if their_service != service {
                    clash(format!(
                        "port {port} is already the load balancer of service {their_service:?} (job {:?})",
                        other.spec.name
                    ));
                } else if !compatible(lb, their_lb) {
                    clash(format!(
                        "job {:?} serves service {service:?} on port {port} with other settings; jobs sharing a listener may differ only in weight",
                        other.spec.name
                    ));
                }
            }
            if other
                .spec
                .task
                .ports
                .iter()
                .any(|q| q.protocol == Protocol::Tcp && q.host_port == Some(u32::from(port)))
            {
                clash(format!(
                    "port {port} is a fixed host port of job {:?}",
                    other.spec.name
                ));
            }
        }
    }
    out
}

/// A listener port inside a node's dynamic port range, or one of a node's own
/// ports (HTTP, Raft, gossip).
pub fn node_conflicts(state: &ClusterState, spec: &JobSpec) -> Vec<FieldError> {
    let mut out = Vec::new();
    for (i, p) in spec.task.ports.iter().enumerate() {
        let Some(lb) = &p.lb else { continue };
        let field = format!("task.ports[{i}].lb.port");
        let port = lb.port;
        let mut clash = |problem: String| {
            out.push(FieldError {
                field: field.clone(),
                problem,
            })
        };
        for node in state.nodes.values() {
            let info = &node.info;
            let (lo, hi) = info.port_range;
            if (lo..=hi).contains(&port) {
                clash(format!(
                    "port {port} is inside node {}'s dynamic port range {lo}-{hi}",
                    info.id
                ));
            }
            let own = [
                ("http", Some(&info.addrs.http)),
                ("raft", info.addrs.raft.as_ref()),
                ("gossip", info.addrs.gossip.as_ref()),
            ];
            for (what, addr) in own {
                let taken = addr
                    .and_then(|a| a.rsplit_once(':'))
                    .and_then(|(_, p)| p.parse::<u16>().ok())
                    == Some(port);
                if taken {
                    clash(format!("port {port} is node {}'s {what} port", info.id));
                }
            }
        }
    }
    out
}
