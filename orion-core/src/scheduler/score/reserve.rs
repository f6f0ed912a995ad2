//! Tagged nodes kept for the jobs that ask for their tags.

use super::Scorer;
use crate::scheduler::candidate::{Ask, Candidate};

/// Penalises a node by the tags it carries that the ask's constraints do not
/// mention: `−n / (n + 1)` for `n` such tags, so a plain node scores 0, a node
/// with one unasked tag −0.5 and one with two −0.67.
///
/// Tags mark nodes some jobs need (`disk=ssd`, `gpu=true`). Untagged work that
/// fills them when a plain node would do leaves the jobs that need them nowhere
/// to go, and opens a bigger tagged node for them when it could have filled a
/// smaller one. The free-capacity index applies the same rule to the nodes a
/// placement opens (empty plain nodes are walked before empty tagged ones); this
/// scorer applies it among the nodes in use, and gives exhaustive scoring the same
/// preference as the bounded walk.
///
/// A tag every node carries (a zone) costs every node alike: it changes no choice
/// between nodes that carry nothing else, and leaves less between them and nodes
/// that do (−0.5 against −0.67). The index cannot tell such a tag from a scarce
/// one: with one on every node there are no plain nodes for it to open first.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReserveTagged;

impl Scorer for ReserveTagged {
    fn name(&self) -> &'static str {
        "reserve-tagged"
    }

    fn score(&self, c: &Candidate<'_>, ask: &Ask<'_>) -> f64 {
        let tags = &c.node.info.tags;
        if tags.is_empty() {
            return 0.0;
        }
        let unasked = tags
            .keys()
            .filter(|k| !ask.constraints.iter().any(|r| &r.key == *k))
            .count() as f64;
        -unasked / (unasked + 1.0)
    }
}
