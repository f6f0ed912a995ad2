//! What must hold of a [`ClusterState`] after every command: the indexes agree
//! with the maps they are derived from, and every map is keyed by its values'
//! own names. Debug builds check it after every [`ClusterState::apply`]; the
//! state machine's property tests check it after every step.

use std::collections::BTreeSet;

use super::ClusterState;

impl ClusterState {
    /// Checks the state's invariants; the first one broken, or `Ok`.
    ///
    /// - The allocation table's indexes (by job, by node, use per node, tallies
    ///   per job) equal those rebuilt from its allocations.
    /// - Jobs, nodes, volumes and secrets are filed under their own names.
    /// - Node numbers are distinct and below the next one to be given.
    /// - Every allocation belongs to a job the state holds (purging a job
    ///   removes its allocations with it).
    pub fn check_invariants(&self) -> Result<(), String> {
        self.allocs.check_indexes()?;
        if let Some((k, j)) = self.jobs.iter().find(|(k, j)| **k != j.spec.name) {
            return Err(format!("job {:?} is filed under {k:?}", j.spec.name));
        }
        if let Some((k, n)) = self.nodes.iter().find(|(k, n)| *k != n.id()) {
            return Err(format!("node {:?} is filed under {k:?}", n.id()));
        }
        if let Some((k, v)) = self.volumes.iter().find(|(k, v)| **k != v.name) {
            return Err(format!("volume {:?} is filed under {k:?}", v.name));
        }
        if let Some((k, s)) = self.secrets.iter().find(|(k, s)| **k != s.name) {
            return Err(format!("secret {:?} is filed under {k:?}", s.name));
        }
        let mut seqs = BTreeSet::new();
        for n in self.nodes.values().filter(|n| n.seq > 0) {
            if !seqs.insert(n.seq) {
                return Err(format!("node number {} is given twice", n.seq));
            }
            if n.seq > self.next_node_seq {
                return Err(format!(
                    "node {:?} has number {}, past the last given ({})",
                    n.id(),
                    n.seq,
                    self.next_node_seq
                ));
            }
        }
        if let Some(a) = self
            .allocs
            .values()
            .find(|a| !self.jobs.contains_key(&a.job))
        {
            return Err(format!(
                "allocation {:?} belongs to job {:?}, which the state does not hold",
                a.id, a.job
            ));
        }
        Ok(())
    }
}
