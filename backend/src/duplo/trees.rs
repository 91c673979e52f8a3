//! Each VPS's newest point's tree, kept in memory for its next cycle while the trees fit in a
//! budget of bytes. A VPS's tree is as large as its file system (a Debian VPS has tens of
//! thousands of entries, a few hundred bytes each): ten thousand of them would not fit in any
//! controller. The least recently used tree goes first when a new one does not fit; a VPS whose
//! tree went reads its newest point from storage at its next cycle (`Duplo::take_for_cycle`), which
//! costs that cycle a read of the point's segments and nothing else.

use crate::storage::tree::Tree;
use serverware_shared::VpsId;
use std::collections::{BTreeMap, HashMap};

struct Kept {
    tree: Tree,
    bytes: usize,
    used: u64,
}

pub struct Trees {
    kept: HashMap<VpsId, Kept>,
    /// Least recently used first (a use's number → its VPS).
    order: BTreeMap<u64, VpsId>,
    next_use: u64,
    bytes: usize,
    budget: usize,
}

impl Trees {
    pub fn new(budget: usize) -> Trees {
        Trees {
            kept: HashMap::new(),
            order: BTreeMap::new(),
            next_use: 0,
            bytes: 0,
            budget,
        }
    }

    /// Keeps `tree` as the VPS's (replacing its old one), then drops the least recently used
    /// others until all fit; a tree larger than the whole budget is not kept.
    pub fn put(&mut self, vps_id: VpsId, tree: Tree) {
        self.remove(vps_id);
        let bytes = tree.approx_bytes();
        if bytes > self.budget {
            return;
        }
        while self.bytes + bytes > self.budget {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(k) = self.kept.remove(&oldest) {
                self.bytes -= k.bytes;
            }
        }
        let used = self.next_use;
        self.next_use += 1;
        self.order.insert(used, vps_id);
        self.bytes += bytes;
        self.kept.insert(vps_id, Kept { tree, bytes, used });
    }

    pub fn remove(&mut self, vps_id: VpsId) -> Option<Tree> {
        let k = self.kept.remove(&vps_id)?;
        self.order.remove(&k.used);
        self.bytes -= k.bytes;
        Some(k.tree)
    }

    pub fn get(&self, vps_id: VpsId) -> Option<&Tree> {
        self.kept.get(&vps_id).map(|k| &k.tree)
    }

    pub fn contains(&self, vps_id: VpsId) -> bool {
        self.kept.contains_key(&vps_id)
    }

    /// The bytes the kept trees take (estimated), and how many there are.
    pub fn usage(&self) -> (usize, usize) {
        (self.bytes, self.kept.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serverware_shared::duplo::{Entry, EntryKind};

    fn tree(files: usize) -> Tree {
        let mut entries = vec![Entry::new(b"", EntryKind::Dir)];
        entries.extend((0..files).map(|i| Entry::new(format!("f{i}").as_bytes(), EntryKind::File)));
        Tree::from_entries(entries)
    }

    #[test]
    fn trees_past_the_budget_go_least_recently_used_first() {
        let one = tree(100).approx_bytes();
        assert!(one > 100 * std::mem::size_of::<Entry>());
        let mut t = Trees::new(one * 3);
        for id in 1..=3 {
            t.put(VpsId(id), tree(100));
        }
        assert_eq!(t.usage(), (one * 3, 3));
        // VPS 1's tree comes back from a cycle (used again): 2 is now the oldest.
        let back = t.remove(VpsId(1)).unwrap();
        t.put(VpsId(1), back);
        t.put(VpsId(4), tree(100));
        assert!(!t.contains(VpsId(2)), "the least recently used goes");
        for id in [1, 3, 4] {
            assert!(t.contains(VpsId(id)));
        }
        assert_eq!(t.usage(), (one * 3, 3));
        // A tree larger than the whole budget is not kept, and drops nothing for it.
        t.put(VpsId(5), tree(1000));
        assert!(!t.contains(VpsId(5)));
        assert_eq!(t.usage().1, 3);
        // Replacing a VPS's tree counts it once.
        t.put(VpsId(3), tree(100));
        assert_eq!(t.usage(), (one * 3, 3));
        assert_eq!(t.get(VpsId(3)).map(|x| x.approx_bytes()), Some(one));
        // A budget of nothing keeps nothing.
        let mut none = Trees::new(0);
        none.put(VpsId(1), tree(1));
        assert_eq!(none.usage(), (0, 0));
    }
}
