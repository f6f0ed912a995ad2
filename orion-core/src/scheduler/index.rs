//! The free-capacity index: schedulable nodes in three tiers — nodes with something
//! reserved on them, empty nodes without tags, empty nodes with tags — each
//! ordered by free CPU (in steps of an eighth of a core), then by free memory.
//!
//! A walk visits only nodes with at least the asked CPU step and memory, so nodes
//! full on either dimension cost nothing however many there are. Bin-pack walks
//! nodes in use before empty ones, each tightest first (least CPU left, then least
//! memory), so a new node is opened only when few in use fit; spread walks empty
//! nodes first, each roomiest first. Either way empty nodes without tags come
//! before empty tagged ones: tags mark nodes that some jobs need (GPUs, SSDs), so
//! a job that does not ask for them opens one only when no plain node fits (see
//! [`crate::scheduler::score::ReserveTagged`] for nodes in use). A job whose
//! constraints no untagged node can meet skips the plain tier. A walk costs one
//! seek per tier, one more per CPU step that has nodes short of memory, then one
//! step per node.

use std::collections::btree_set::Range;
use std::collections::BTreeSet;
use std::ops::Bound;

use crate::spec::Resources;

/// CPU steps per core.
const STEPS_PER_CORE: f64 = 8.0;

/// Rounding slack, as in [`Resources::fits`].
const EPSILON: f64 = 1e-9;

/// Tier of nodes with something reserved.
const IN_USE: u8 = 0;
/// Tier of nodes with nothing reserved and no tags.
const EMPTY_PLAIN: u8 = 1;
/// Tier of nodes with nothing reserved and some tag.
const EMPTY_TAGGED: u8 = 2;

/// Key of a node's free CPU.
fn free_key(cpu: f64) -> u32 {
    ((cpu + EPSILON).max(0.0) * STEPS_PER_CORE) as u32
}

/// Smallest key of a node that may have `cpu` free.
fn need_key(cpu: f64) -> u32 {
    ((cpu - EPSILON).max(0.0) * STEPS_PER_CORE) as u32
}

/// (tier, free CPU step, free memory, position).
type Entry = (u8, u32, u64, u32);

/// What the index needs to know of a node: free resources, capacity, tags.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Slot {
    /// Free now.
    pub free: Resources,
    /// All of it.
    pub capacity: Resources,
    /// Whether the node carries any tag.
    pub tagged: bool,
}

fn entry(s: &Slot, i: usize) -> Entry {
    let tier = match (s.free == s.capacity, s.tagged) {
        (false, _) => IN_USE,
        (true, false) => EMPTY_PLAIN,
        (true, true) => EMPTY_TAGGED,
    };
    (tier, free_key(s.free.cpu), s.free.memory_mb, i as u32)
}

/// Schedulable nodes by tier, free CPU step and free memory.
#[derive(Debug, Default)]
pub struct FreeIndex {
    set: BTreeSet<Entry>,
}

impl FreeIndex {
    /// An index of nodes and their positions.
    pub fn build(nodes: impl Iterator<Item = (Slot, usize)>) -> Self {
        let nodes = nodes.into_iter();
        let mut entries: Vec<Entry> = Vec::with_capacity(nodes.size_hint().1.unwrap_or(0));
        entries.extend(nodes.map(|(s, i)| entry(&s, i)));
        entries.sort_unstable();
        FreeIndex {
            set: entries.into_iter().collect(),
        }
    }

    /// Moves node `i` from `old` to `new` free resources (`old` says what else the
    /// node is); false when it was not indexed (and so stays out).
    pub fn update(&mut self, i: usize, old: &Slot, new: &Resources) -> bool {
        if !self.set.remove(&entry(old, i)) {
            return false;
        }
        self.set.insert(entry(&Slot { free: *new, ..*old }, i));
        true
    }

    /// How many nodes are indexed.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether no node is indexed.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Positions of nodes that may fit `need` on CPU and memory, in bin-pack order
    /// (`binpack`) or spread order, leaving out empty untagged nodes unless
    /// `untagged` (the ask may go on a node without tags). Every node that fits and
    /// is not left out is visited; a visited node may still fall short by less than
    /// a CPU step.
    pub fn walk(&self, need: &Resources, binpack: bool, untagged: bool) -> Walk<'_> {
        let order = if binpack {
            [IN_USE, EMPTY_PLAIN, EMPTY_TAGGED]
        } else {
            [EMPTY_PLAIN, EMPTY_TAGGED, IN_USE]
        };
        let mut tiers = [IN_USE; 3];
        let mut len = 0;
        for t in order.into_iter().filter(|t| untagged || *t != EMPTY_PLAIN) {
            tiers[len] = t;
            len += 1;
        }
        let mut walk = Walk {
            set: &self.set,
            min_key: need_key(need.cpu),
            memory: need.memory_mb,
            ascending: binpack,
            tiers,
            len,
            tier: 0,
            range: None,
        };
        walk.range = Some(walk.tier_range(tiers[0]));
        walk
    }
}

/// A walk over the index; see [`FreeIndex::walk`].
///
/// It keeps one range over the current tier and steps through it, seeking past
/// a CPU step's nodes that are short of memory only when it meets one, so a step
/// where every node has the memory costs no seek at all.
#[derive(Debug)]
pub struct Walk<'s> {
    set: &'s BTreeSet<Entry>,
    min_key: u32,
    memory: u64,
    /// Tightest CPU step first (bin-pack) or roomiest first (spread).
    ascending: bool,
    /// Tiers in walk order: the first `len`.
    tiers: [u8; 3],
    len: usize,
    /// Position in `tiers`; `len` when the walk is over.
    tier: usize,
    /// What is left of the current tier, in walk order from either end.
    range: Option<Range<'s, Entry>>,
}

impl<'s> Walk<'s> {
    /// Every node of tier `t` with at least the asked CPU step (the first step
    /// starting at the asked memory, when walking up).
    fn tier_range(&self, t: u8) -> Range<'s, Entry> {
        let top = (t, u32::MAX, u64::MAX, u32::MAX);
        let memory = if self.ascending { self.memory } else { 0 };
        self.set.range((t, self.min_key, memory, 0)..=top)
    }

    /// After meeting a node of CPU step `key` short of memory: the rest of the
    /// tier without that step's other short nodes.
    fn skip_short(&self, t: u8, key: u32) -> Range<'s, Entry> {
        if self.ascending {
            // Memory rises within a step: the short nodes come first.
            self.set
                .range((t, key, self.memory, 0)..=(t, u32::MAX, u64::MAX, u32::MAX))
        } else {
            // Memory falls within a step: the short nodes come last.
            self.set.range((
                Bound::Included((t, self.min_key, 0, 0)),
                Bound::Excluded((t, key, 0, 0)),
            ))
        }
    }
}

impl Iterator for Walk<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.tier < self.len {
            let t = self.tiers[self.tier];
            let range = self.range.as_mut()?;
            let e = if self.ascending {
                range.next()
            } else {
                range.next_back()
            };
            match e {
                Some(&(_, _, memory, i)) if memory >= self.memory => return Some(i as usize),
                Some(&(_, key, _, _)) => self.range = Some(self.skip_short(t, key)),
                None => {
                    self.tier += 1;
                    self.range = self.tiers[..self.len]
                        .get(self.tier)
                        .map(|t| self.tier_range(*t));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(cpu: f64, memory_mb: u64) -> Resources {
        Resources {
            cpu,
            memory_mb,
            disk_mb: 0,
        }
    }

    fn slot(free: Resources, capacity: Resources, tagged: bool) -> Slot {
        Slot {
            free,
            capacity,
            tagged,
        }
    }

    #[test]
    fn walks_only_nodes_that_may_fit_in_strategy_order() {
        let cap = res(4.0, 8192);
        let nodes = [
            res(0.0, 8000), // 0: no CPU left
            res(1.0, 100),  // 1: no memory left
            res(1.0, 600),  // 2
            res(0.5, 2000), // 3
            res(4.0, 512),  // 4
            res(0.25, 600), // 5: CPU a step short
            cap,            // 6: empty
        ];
        let mut idx = FreeIndex::build(nodes.iter().map(|f| slot(*f, cap, false)).zip(0..));
        let need = res(0.5, 512);
        assert_eq!(
            idx.walk(&need, true, true).collect::<Vec<_>>(),
            [3, 2, 4, 6]
        );
        assert_eq!(
            idx.walk(&need, false, true).collect::<Vec<_>>(),
            [6, 4, 2, 3]
        );
        assert!(idx.update(4, &slot(nodes[4], cap, false), &res(0.5, 0)));
        assert_eq!(idx.walk(&need, true, true).collect::<Vec<_>>(), [3, 2, 6]);
        let stranger = slot(nodes[0], cap, false);
        assert!(!idx.update(9, &stranger, &res(1.0, 1)), "not indexed");
        assert_eq!(idx.len(), 7);
        let zero = res(0.0, 0);
        assert_eq!(idx.walk(&zero, true, true).count(), 7);
        assert_eq!(idx.walk(&zero, false, true).count(), 7);
        assert_eq!(FreeIndex::default().walk(&zero, false, true).count(), 0);
    }

    #[test]
    fn empty_plain_nodes_come_before_empty_tagged_ones() {
        let (small, big) = (res(4.0, 8192), res(16.0, 32_768));
        let nodes = [
            slot(small, small, true),          // 0: empty, tagged
            slot(big, big, false),             // 1: empty, plain
            slot(res(2.0, 4096), small, true), // 2: in use, tagged
            slot(small, small, false),         // 3: empty, plain
            slot(res(8.0, 4096), big, false),  // 4: in use, plain
        ];
        let mut idx = FreeIndex::build(nodes.into_iter().zip(0..));
        let need = res(1.0, 1024);
        // Bin-pack: in use (tagged or not) tightest first, then plain, then tagged.
        assert_eq!(
            idx.walk(&need, true, true).collect::<Vec<_>>(),
            [2, 4, 3, 1, 0]
        );
        // Spread: empty plain, empty tagged, in use, each roomiest first.
        assert_eq!(
            idx.walk(&need, false, true).collect::<Vec<_>>(),
            [1, 3, 0, 4, 2]
        );
        // An ask only tagged nodes can meet skips the empty plain ones.
        assert_eq!(idx.walk(&need, true, false).collect::<Vec<_>>(), [2, 4, 0]);
        assert_eq!(idx.walk(&need, false, false).collect::<Vec<_>>(), [0, 4, 2]);
        // A tagged node stays tagged when it empties.
        assert!(idx.update(2, &nodes[2], &small));
        assert_eq!(
            idx.walk(&need, true, true).collect::<Vec<_>>(),
            [4, 3, 1, 0, 2]
        );
    }
}
