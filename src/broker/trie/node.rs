//! A trie node: its literal children, the subscriptions that end at it,
//! and its wildcard branches (the `+` child and the `#` leaf), with the
//! steps the trie takes through them.
//!
//! Owns: the node's layout (56 bytes with 16 bytes of key and value, the
//! wildcard branches boxed together since most nodes have neither) and
//! following, detaching and tearing down its branches. Does not own: the
//! children's container (`trie/children.rs`), the subscriber lists
//! (`trie/subs.rs`), or what a walk from the root does (`trie.rs`,
//! `trie/matching.rs`).

use std::hash::Hash;

use super::subs::Subs;
use super::{Children, Dismantle};

pub(super) struct Node<K, V> {
    pub(super) children: Children<Node<K, V>>,
    /// Subscriptions whose filter ends at this node.
    pub(super) subs: Subs<K, V>,
    /// The wildcard branches, boxed together: most nodes have neither.
    pub(super) wild: Option<Box<Wild<K, V>>>,
}

pub(super) struct Wild<K, V> {
    /// The `+` child.
    pub(super) plus: Option<Node<K, V>>,
    /// Subscriptions whose filter ends in `#` right below this node.
    pub(super) hash: Option<Subs<K, V>>,
}

impl<K: Copy + Eq + Hash, V> Node<K, V> {
    pub(super) fn new() -> Self {
        Node {
            children: Children::default(),
            subs: Subs::new(),
            wild: None,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.children.is_empty() && self.wild.is_none() && self.subs.is_empty()
    }

    #[inline]
    pub(super) fn plus(&self) -> Option<&Self> {
        self.wild.as_ref()?.plus.as_ref()
    }

    #[inline]
    pub(super) fn hash(&self) -> Option<&Subs<K, V>> {
        self.wild.as_ref()?.hash.as_ref()
    }

    pub(super) fn wild_mut(&mut self) -> &mut Wild<K, V> {
        self.wild.get_or_insert_with(|| {
            Box::new(Wild {
                plus: None,
                hash: None,
            })
        })
    }

    /// Drops the wildcard box once both branches are gone.
    pub(super) fn tidy_wild(&mut self) {
        if let Some(wild) = &self.wild {
            if wild.plus.is_none() && wild.hash.is_none() {
                self.wild = None;
            }
        }
    }

    /// Follows one filter level (`+` or literal; never `#`).
    pub(super) fn step(&self, level: &str) -> Option<&Self> {
        if level == "+" {
            self.plus()
        } else {
            self.children.get(level.as_bytes())
        }
    }

    pub(super) fn step_mut(&mut self, level: &str) -> Option<&mut Self> {
        if level == "+" {
            self.wild.as_mut()?.plus.as_mut()
        } else {
            self.children.get_mut(level.as_bytes())
        }
    }

    /// Detaches the child reached by `level` (`+` or literal).
    pub(super) fn detach(&mut self, level: &str) -> Option<Self> {
        if level == "+" {
            let plus = self.wild.as_mut()?.plus.take();
            self.tidy_wild();
            plus
        } else {
            self.children.remove(level.as_bytes())
        }
    }
}

impl<K, V> Node<K, V> {
    /// `new` without the key bounds, for `Drop`.
    pub(super) fn empty() -> Self {
        Node {
            children: Children::default(),
            subs: Subs::empty(),
            wild: None,
        }
    }
}

impl<K, V> Dismantle for Node<K, V> {
    fn into_children(self, f: &mut dyn FnMut(Self)) {
        let Node { children, wild, .. } = self;
        children.into_each(f);
        if let Some(plus) = wild.and_then(|w| w.plus) {
            f(plus);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::mem;

    use super::super::children::Label;
    use super::*;

    /// Memory guard: a node with 16 bytes of key and value stays at 56
    /// bytes (1M subscriptions in about 130 MiB, see benches/RESULTS.md).
    #[test]
    fn nodes_stay_compact() {
        assert_eq!(mem::size_of::<Label>(), 24);
        assert_eq!(mem::size_of::<Children<Node<u64, u64>>>(), 16);
        assert_eq!(mem::size_of::<Node<u64, u64>>(), 56);
    }
}
