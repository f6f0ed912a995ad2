//! Why a task fits nowhere: every filter's rejection of every node, counted per
//! reason (a node both too small and without the tag counts under both).
//!
//! `0/5,000 nodes: 4,100 insufficient memory, 880 selector gpu=true, 20 port 80 taken`,
//! or, for a single node, the reasons with their figures:
//! `1 node: insufficient memory (need 64000 MB, free 3900), selector gpu=true`.

use std::collections::BTreeMap;
use std::fmt;

use super::candidate::Ask;
use crate::model::NodeStatus;

/// A resource dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceKind {
    /// CPU cores.
    Cpu,
    /// Memory, MiB.
    Memory,
    /// Disk, MiB.
    Disk,
}

/// Why one node was rejected; cheap to make (no allocation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reason {
    /// The node is down or unhealthy.
    NotReady(NodeStatus),
    /// The node is draining.
    Draining,
    /// Not enough of one resource free.
    Insufficient {
        /// Which.
        kind: ResourceKind,
        /// What the task needs.
        need: f64,
        /// What the node has free.
        free: f64,
    },
    /// The ask's constraint at this position does not match the node's tags.
    Constraint(usize),
    /// A fixed host port is taken.
    PortTaken(u16),
    /// The node's dynamic port range is full.
    NoDynamicPort,
    /// A replica of the job is already there and the job asked for distinct hosts.
    DistinctHosts,
    /// The job's named volumes are on another node (or on none).
    VolumeNode,
    /// The node does not allow the ask's host path at this position.
    HostPath(u8),
    /// A secret the job uses does not exist (every node says so).
    Secret,
    /// The node holds no data key, so it cannot open the job's secrets.
    NoDataKey,
    /// The node holds another data key than the job's secrets are sealed under.
    OtherDataKey,
    /// The node's runtime cannot run the task (an image on a process node, a
    /// bare command on a Docker node): why.
    Runtime(&'static str),
}

impl Reason {
    /// The label nodes are counted under (no figures, so equal reasons group).
    pub fn label(&self, ask: &Ask<'_>) -> String {
        match self {
            Reason::NotReady(s) => format!("node {s}"),
            Reason::Draining => "node draining".into(),
            Reason::Insufficient { kind, .. } => match kind {
                ResourceKind::Cpu => "insufficient cpu".into(),
                ResourceKind::Memory => "insufficient memory".into(),
                ResourceKind::Disk => "insufficient disk".into(),
            },
            Reason::Constraint(i) => match ask.constraints.get(*i) {
                Some(c) => format!("selector {c}"),
                None => "selector".into(),
            },
            Reason::PortTaken(p) => format!("port {p} taken"),
            Reason::NoDynamicPort => "no free port in range".into(),
            Reason::DistinctHosts => "job already on node (distinct hosts)".into(),
            Reason::VolumeNode => match &ask.volume_node {
                Some(Ok(node)) => format!("volume on node {node}"),
                Some(Err(why)) => why.clone(),
                None => "volume".into(),
            },
            Reason::HostPath(i) => match ask.host_paths.get(*i as usize) {
                Some(p) => format!("host path {p} not allowed"),
                None => "host path not allowed".into(),
            },
            Reason::Secret => match &ask.secrets {
                Some(Err(why)) => why.clone(),
                _ => "secret".into(),
            },
            Reason::NoDataKey => "no data key on node (it cannot open secrets)".into(),
            Reason::OtherDataKey => {
                "another data key on node than its secrets are sealed under".into()
            }
            Reason::Runtime(why) => format!("runtime: {why}"),
        }
    }

    /// The figures behind a reason, when it has any.
    pub fn detail(&self) -> Option<String> {
        match self {
            Reason::Insufficient { kind, need, free } => Some(match kind {
                ResourceKind::Cpu => format!("need {need} cores, free {}", round2(*free)),
                ResourceKind::Memory => format!("need {need} MB, free {free}"),
                ResourceKind::Disk => format!("need {need} MB disk, free {free}"),
            }),
            _ => None,
        }
    }

    /// A cheap key that groups reasons with the same label, so labels are made
    /// once per group rather than once per node.
    fn group(&self) -> (u8, u32) {
        match self {
            Reason::NotReady(s) => (0, *s as u32),
            Reason::Draining => (1, 0),
            Reason::Insufficient { kind, .. } => (2, *kind as u32),
            Reason::Constraint(i) => (3, *i as u32),
            Reason::PortTaken(p) => (4, *p as u32),
            Reason::NoDynamicPort => (5, 0),
            Reason::DistinctHosts => (6, 0),
            Reason::VolumeNode => (7, 0),
            Reason::HostPath(i) => (8, *i as u32),
            Reason::Secret => (9, 0),
            Reason::NoDataKey => (10, 0),
            Reason::OtherDataKey => (11, 0),
            Reason::Runtime(why) => (12, why.len() as u32),
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Rejections counted per reason over every node considered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Explanation {
    /// Nodes considered.
    pub total: usize,
    /// Nodes that would fit.
    pub feasible: usize,
    /// (label, count, detail of the first node rejected for it), most common first.
    pub rejections: Vec<(String, usize, Option<String>)>,
}

/// Counts rejections node by node, then makes an [`Explanation`].
#[derive(Debug, Default)]
pub struct Tally {
    total: usize,
    feasible: usize,
    groups: BTreeMap<(u8, u32), (usize, Reason)>,
}

impl Tally {
    /// One node, with every reason any filter gave for rejecting it (none:
    /// it fits).
    pub fn node(&mut self, reasons: impl Iterator<Item = Reason>) {
        self.total += 1;
        let mut rejected = false;
        for r in reasons {
            rejected = true;
            self.groups.entry(r.group()).or_insert((0, r)).0 += 1;
        }
        if !rejected {
            self.feasible += 1;
        }
    }

    /// The counts, labelled and most common first.
    pub fn finish(self, ask: &Ask<'_>) -> Explanation {
        let mut counts: BTreeMap<String, (usize, Option<String>)> = BTreeMap::new();
        for (n, r) in self.groups.into_values() {
            counts
                .entry(r.label(ask))
                .or_insert_with(|| (0, r.detail()))
                .0 += n;
        }
        let mut rejections: Vec<_> = counts.into_iter().map(|(l, (n, d))| (l, n, d)).collect();
        rejections.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Explanation {
            total: self.total,
            feasible: self.feasible,
            rejections,
        }
    }
}

impl Explanation {
    /// Collects per-node outcomes of one reason each (`None`: feasible).
    pub fn collect<'r>(
        ask: &Ask<'_>,
        outcomes: impl Iterator<Item = Option<&'r Reason>>,
    ) -> Explanation {
        let mut tally = Tally::default();
        for outcome in outcomes {
            tally.node(outcome.into_iter().copied());
        }
        tally.finish(ask)
    }

    /// How many nodes a filter label rejected.
    pub fn count(&self, label: &str) -> usize {
        self.rejections
            .iter()
            .find(|(l, _, _)| l == label)
            .map_or(0, |r| r.1)
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.total {
            0 => return f.write_str("no nodes in the cluster"),
            1 => {
                f.write_str("1 node: ")?;
                if self.rejections.is_empty() {
                    return f.write_str(
                        "fits, but its resources were taken by other tasks in the same plan",
                    );
                }
                let parts: Vec<String> = self
                    .rejections
                    .iter()
                    .map(|(label, _, detail)| match detail {
                        Some(d) => format!("{label} ({d})"),
                        None => label.clone(),
                    })
                    .collect();
                return f.write_str(&parts.join(", "));
            }
            n => write!(f, "{}/{} nodes: ", self.feasible, thousands(n))?,
        }
        let parts: Vec<String> = self
            .rejections
            .iter()
            .map(|(label, n, _)| format!("{} {label}", thousands(*n)))
            .collect();
        if parts.is_empty() {
            f.write_str("every feasible node was taken by other tasks in the same plan")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// `12345` → `12,345`.
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// What the pipeline thinks of one job on one node (see
/// [`super::FilterScoreScheduler::explain_placement`]).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeVerdict {
    /// The node.
    pub node: String,
    /// The first filter's rejection, with its figures; none when the job fits.
    pub rejection: Option<String>,
    /// Each scorer's name, score in `[-1, 1]` and weight.
    pub scores: Vec<(&'static str, f64, f64)>,
}

impl NodeVerdict {
    /// The weighted sum the scheduler ranks by.
    pub fn total(&self) -> f64 {
        self.scores.iter().map(|(_, s, w)| s * w).sum()
    }
}

impl fmt::Display for NodeVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(r) = &self.rejection {
            return write!(f, "{}: {r}", self.node);
        }
        write!(f, "{}: score {:.3} =", self.node, self.total())?;
        for (i, (name, s, w)) in self.scores.iter().enumerate() {
            let sep = if i == 0 { "" } else { " +" };
            write!(f, "{sep} {w} × {name} {s:.3}")?;
        }
        Ok(())
    }
}
