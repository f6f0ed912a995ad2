//! [`AllocTable`]: the allocations and the indexes derived from them (by job, by
//! node, use per node, tallies per job) behind one type, so no change to an
//! allocation can leave an index behind: the only ways in are
//! [`insert`](AllocTable::insert), [`modify`](AllocTable::modify) and
//! [`remove`](AllocTable::remove), and each keeps every index in step.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::{JobTally, NodeUsage};
use crate::model::{AllocId, Allocation, Node, NodeId};

/// Allocations by id, with their indexes. Serializes as the plain map; the
/// indexes are rebuilt when it is read back.
#[derive(Clone, Debug, Default)]
pub struct AllocTable {
    allocs: BTreeMap<AllocId, Allocation>,
    by_job: HashMap<String, BTreeSet<AllocId>>,
    by_node: HashMap<NodeId, BTreeSet<AllocId>>,
    /// Ordered like the state's nodes, so [`AllocTable::with_usage`] is a merge.
    usage: BTreeMap<NodeId, NodeUsage>,
    tally: HashMap<String, JobTally>,
}

/// Two tables are equal when they hold the same allocations (the indexes follow).
impl PartialEq for AllocTable {
    fn eq(&self, other: &Self) -> bool {
        self.allocs == other.allocs
    }
}

impl std::ops::Index<&str> for AllocTable {
    type Output = Allocation;
    fn index(&self, id: &str) -> &Allocation {
        &self.allocs[id]
    }
}

impl Serialize for AllocTable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.allocs.serialize(s)
    }
}

impl<'de> Deserialize<'de> for AllocTable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let allocs = BTreeMap::<AllocId, Allocation>::deserialize(d)?;
        let mut table = AllocTable::default();
        for (_, a) in allocs {
            table.insert(a);
        }
        Ok(table)
    }
}

impl AllocTable {
    /// One allocation.
    pub fn get(&self, id: &str) -> Option<&Allocation> {
        self.allocs.get(id)
    }

    /// Whether an allocation exists.
    pub fn contains_key(&self, id: &str) -> bool {
        self.allocs.contains_key(id)
    }

    /// Every allocation, in id order.
    pub fn values(&self) -> impl Iterator<Item = &Allocation> + '_ {
        self.allocs.values()
    }

    /// Every allocation id, in order.
    pub fn keys(&self) -> impl Iterator<Item = &AllocId> + '_ {
        self.allocs.keys()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.allocs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.allocs.is_empty()
    }

    /// The allocations as a plain map.
    pub fn as_map(&self) -> &BTreeMap<AllocId, Allocation> {
        &self.allocs
    }

    /// Allocations of one job, in id order.
    pub fn of_job<'a>(&'a self, job: &str) -> impl Iterator<Item = &'a Allocation> + 'a {
        self.by_job
            .get(job)
            .into_iter()
            .flatten()
            .filter_map(|id| self.allocs.get(id))
    }

    /// Ids of one job's allocations.
    pub(crate) fn ids_of_job(&self, job: &str) -> Vec<AllocId> {
        self.by_job
            .get(job)
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// Allocations placed on one node.
    pub fn on_node<'a>(&'a self, node: &str) -> impl Iterator<Item = &'a Allocation> + 'a {
        self.by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|id| self.allocs.get(id))
    }

    /// Ids of the allocations placed on one node.
    pub(crate) fn ids_on_node(&self, node: &str) -> Vec<AllocId> {
        self.by_node
            .get(node)
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// What is in use on a node, when anything is.
    pub fn usage(&self, node: &str) -> Option<&NodeUsage> {
        self.usage.get(node)
    }

    /// What a job's allocations add up to; none when it has none.
    pub fn tally(&self, job: &str) -> Option<&JobTally> {
        self.tally.get(job)
    }

    /// `nodes` (in id order) each with what is in use on it, by a merge rather
    /// than a lookup per node.
    pub fn with_usage<'a>(
        &'a self,
        nodes: impl Iterator<Item = &'a Node> + 'a,
    ) -> impl Iterator<Item = (&'a Node, Option<&'a NodeUsage>)> + 'a {
        let mut usage = self.usage.iter().peekable();
        nodes.map(move |n| {
            while usage
                .next_if(|(id, _)| id.as_str() < n.id().as_str())
                .is_some()
            {}
            let u = usage.next_if(|(id, _)| *id == n.id()).map(|(_, u)| u);
            (n, u)
        })
    }

    /// Adds (or replaces) an allocation, indexing it.
    pub(crate) fn insert(&mut self, a: Allocation) {
        let id = a.id.clone();
        self.remove(&id);
        self.allocs.insert(id.clone(), a);
        self.index(&id);
    }

    /// Changes one allocation with `f`, keeping every index in step; returns it
    /// as changed, or `None` when there is no such allocation.
    pub(crate) fn modify(
        &mut self,
        id: &str,
        f: impl FnOnce(&mut Allocation),
    ) -> Option<&Allocation> {
        if !self.allocs.contains_key(id) {
            return None;
        }
        self.unindex(id);
        f(self.allocs.get_mut(id).expect("present"));
        self.index(id);
        self.allocs.get(id)
    }

    /// Removes an allocation and its index entries.
    pub(crate) fn remove(&mut self, id: &str) -> Option<Allocation> {
        self.unindex(id);
        self.allocs.remove(id)
    }

    /// Checks every index against the allocations: each is rebuilt from
    /// scratch and compared with the one kept in step (empty entries aside,
    /// and CPU to within rounding). The first difference found, or `Ok`.
    pub fn check_indexes(&self) -> Result<(), String> {
        let mut fresh = AllocTable::default();
        for (id, a) in &self.allocs {
            if *id != a.id {
                return Err(format!("allocation {:?} is filed under {id:?}", a.id));
            }
            fresh.allocs.insert(id.clone(), a.clone());
            fresh.index(id);
        }
        let sets = |m: &HashMap<String, BTreeSet<AllocId>>| -> BTreeMap<String, BTreeSet<AllocId>> {
            m.iter()
                .filter(|(_, s)| !s.is_empty())
                .map(|(k, s)| (k.clone(), s.clone()))
                .collect()
        };
        if sets(&self.by_job) != sets(&fresh.by_job) {
            return Err(format!(
                "by-job index {:?}, allocations say {:?}",
                sets(&self.by_job),
                sets(&fresh.by_job)
            ));
        }
        if sets(&self.by_node) != sets(&fresh.by_node) {
            return Err(format!(
                "by-node index {:?}, allocations say {:?}",
                sets(&self.by_node),
                sets(&fresh.by_node)
            ));
        }
        let tallies = |m: &HashMap<String, JobTally>| -> BTreeMap<String, JobTally> {
            m.iter()
                .filter(|(_, t)| !t.is_empty())
                .map(|(k, t)| (k.clone(), t.clone()))
                .collect()
        };
        if tallies(&self.tally) != tallies(&fresh.tally) {
            return Err(format!(
                "job tallies {:?}, allocations say {:?}",
                tallies(&self.tally),
                tallies(&fresh.tally)
            ));
        }
        let nodes: BTreeSet<&NodeId> = self.usage.keys().chain(fresh.usage.keys()).collect();
        for node in nodes {
            let zero = NodeUsage::default();
            let kept = self.usage.get(node).unwrap_or(&zero);
            let want = fresh.usage.get(node).unwrap_or(&zero);
            let same = (kept.used.cpu - want.used.cpu).abs() < 1e-6
                && kept.used.memory_mb == want.used.memory_mb
                && kept.used.disk_mb == want.used.disk_mb
                && kept.ports == want.ports
                && kept.port_holders == want.port_holders
                && kept.per_job == want.per_job;
            if !same {
                return Err(format!(
                    "usage of node {node:?} is {kept:?}, its allocations say {want:?}"
                ));
            }
        }
        Ok(())
    }

    fn index(&mut self, id: &str) {
        let a = &self.allocs[id];
        // Look up before inserting: most keys exist, and `entry` would clone them.
        match self.by_job.get_mut(&a.job) {
            Some(set) => set.insert(a.id.clone()),
            None => self
                .by_job
                .entry(a.job.clone())
                .or_default()
                .insert(a.id.clone()),
        };
        match self.tally.get_mut(&a.job) {
            Some(t) => t.count(a, true),
            None => self.tally.entry(a.job.clone()).or_default().count(a, true),
        }
        if let Some(node) = &a.node {
            match self.by_node.get_mut(node) {
                Some(set) => set.insert(a.id.clone()),
                None => self
                    .by_node
                    .entry(node.clone())
                    .or_default()
                    .insert(a.id.clone()),
            };
            if a.holds_resources() {
                if !self.usage.contains_key(node) {
                    self.usage.insert(node.clone(), NodeUsage::default());
                }
                let u = self.usage.get_mut(node).expect("just inserted");
                u.used = u.used.add(&a.resources);
                for p in &a.ports {
                    let key = (p.host_port, p.protocol);
                    *u.port_holders.entry(key).or_default() += 1;
                    u.ports.insert(key);
                }
                match u.per_job.get_mut(&a.job) {
                    Some(n) => *n += 1,
                    None => {
                        u.per_job.insert(a.job.clone(), 1);
                    }
                }
            }
        }
    }

    fn unindex(&mut self, id: &str) {
        let Some(a) = self.allocs.get(id) else { return };
        if let Some(t) = self.tally.get_mut(&a.job) {
            t.count(a, false);
            if t.is_empty() {
                self.tally.remove(&a.job);
            }
        }
        if let Some(set) = self.by_job.get_mut(&a.job) {
            set.remove(id);
            if set.is_empty() {
                self.by_job.remove(&a.job);
            }
        }
        if let Some(node) = &a.node {
            if let Some(set) = self.by_node.get_mut(node) {
                set.remove(id);
            }
            if a.holds_resources() {
                if let Some(u) = self.usage.get_mut(node) {
                    u.used = u.used.saturating_sub(&a.resources);
                    for p in &a.ports {
                        let key = (p.host_port, p.protocol);
                        if let Some(n) = u.port_holders.get_mut(&key) {
                            *n -= 1;
                            if *n == 0 {
                                u.port_holders.remove(&key);
                                u.ports.remove(&key);
                            }
                        }
                    }
                    if let Some(n) = u.per_job.get_mut(&a.job) {
                        *n -= 1;
                        if *n == 0 {
                            u.per_job.remove(&a.job);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AllocState, DesiredState};
    use crate::spec::Resources;

    fn alloc(id: &str, job: &str, node: Option<&str>) -> Allocation {
        Allocation {
            id: id.into(),
            job: job.into(),
            job_version: 1,
            slot: 0,
            node: node.map(Into::into),
            resources: Resources {
                cpu: 1.0,
                memory_mb: 100,
                disk_mb: 0,
            },
            ports: Vec::new(),
            desired: DesiredState::Run,
            state: AllocState::Running,
            message: None,
            exit_code: None,
            outputs: Default::default(),
            health: None,
            restarts: 0,
            failures: 0,
            gave_up: false,
            started_ms: None,
            finished_ms: None,
            reschedules: 0,
            start_delay_ms: 0,
            reschedule_times_ms: Vec::new(),
            deployment: None,
            deploy_healthy: None,
            create_index: 1,
            modify_index: 1,
        }
    }

    /// Found by the state machine's invariant check: two allocations on one
    /// node holding one host port (a runtime's bindings are taken as
    /// reported) — when one stopped, the port left the node's index while
    /// the other still held it, and could be placed again.
    #[test]
    fn a_port_two_allocations_hold_stays_taken_until_both_let_go() {
        let port = crate::model::PortBinding {
            name: "http".into(),
            container_port: 80,
            host_port: 32001,
            protocol: crate::spec::Protocol::Tcp,
            host_ip: "127.0.0.1".into(),
        };
        let mut t = AllocTable::default();
        for id in ["a", "b"] {
            let mut a = alloc(id, "web", Some("n1"));
            a.ports = vec![port.clone()];
            t.insert(a);
        }
        let key = (32001, crate::spec::Protocol::Tcp);
        t.modify("a", |a| a.state = AllocState::Stopped);
        assert!(
            t.usage("n1").unwrap().ports.contains(&key),
            "b still holds it"
        );
        t.check_indexes().unwrap();
        t.remove("b");
        assert!(!t.usage("n1").unwrap().ports.contains(&key));
        t.check_indexes().unwrap();
    }

    #[test]
    fn every_way_in_keeps_the_indexes_in_step() {
        let mut t = AllocTable::default();
        t.insert(alloc("a", "web", Some("n1")));
        t.insert(alloc("b", "web", None));
        assert_eq!(t.of_job("web").count(), 2);
        assert_eq!(t.on_node("n1").count(), 1);
        assert_eq!(t.usage("n1").unwrap().used.memory_mb, 100);
        t.modify("b", |a| a.node = Some("n1".into()));
        assert_eq!(t.usage("n1").unwrap().used.memory_mb, 200);
        t.modify("a", |a| a.state = AllocState::Stopped);
        assert_eq!(
            t.usage("n1").unwrap().used.memory_mb,
            100,
            "finished: frees"
        );
        t.remove("b");
        assert_eq!(t.usage("n1").unwrap().used.memory_mb, 0);
        assert_eq!(t.of_job("web").count(), 1);
        assert!(t.modify("ghost", |_| {}).is_none());

        // Read back from its serialized form, the indexes are the same.
        let json = serde_json::to_string(&t).unwrap();
        let back: AllocTable = serde_json::from_str(&json).unwrap();
        assert_eq!(back.as_map(), t.as_map());
        assert_eq!(back.on_node("n1").count(), t.on_node("n1").count());
        assert_eq!(back.tally("web"), t.tally("web"));
    }
}
