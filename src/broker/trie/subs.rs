//! The subscriptions that end at one trie node (or at one `#` leaf): the
//! plain subscribers, a key index for long lists, and the shared groups.
//!
//! Owns: the subscriber list's layout (a `SmallVec` with one inline slot,
//! a key → position index built above `INDEX_ABOVE` subscribers and dropped
//! below `INDEX_BELOW`, shared groups in a boxed side record most nodes never
//! allocate), and insert, replace, remove and visit on it. Does not own: the
//! trie's shape or matching (`trie.rs`, `trie/node.rs`, `trie/matching.rs`)
//! or a shared group's round robin (`trie/shared.rs`).

use std::collections::HashMap;
use std::hash::Hash;
use std::mem;

use ahash::RandomState;
use smallvec::SmallVec;

use super::SharedGroup;

/// A node builds a key → position index above this many plain subscribers.
pub(crate) const INDEX_ABOVE: usize = 16;
/// ... and drops it again below this many.
const INDEX_BELOW: usize = 8;

/// Rarely needed parts of a subscriber list, boxed so most nodes pay one
/// pointer for them.
struct Extra<K, V> {
    /// Key → position in `Subs::plain`, kept only for long lists.
    index: Option<HashMap<K, u32, RandomState>>,
    groups: Vec<SharedGroup<K, V>>,
}

/// The subscriptions that end at one node (or at one `#` leaf).
pub(super) struct Subs<K, V> {
    plain: SmallVec<[(K, V); 1]>,
    extra: Option<Box<Extra<K, V>>>,
}

impl<K: Copy + Eq + Hash, V> Subs<K, V> {
    pub(super) fn new() -> Self {
        Subs {
            plain: SmallVec::new(),
            extra: None,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.extra.is_none()
    }

    #[cfg(test)]
    pub(super) fn count(&self) -> usize {
        self.plain.len()
            + self
                .extra
                .as_ref()
                .map_or(0, |e| e.groups.iter().map(SharedGroup::len).sum())
    }

    fn position(&self, key: K) -> Option<usize> {
        match self.extra.as_ref().and_then(|e| e.index.as_ref()) {
            Some(index) => index.get(&key).map(|&i| i as usize),
            None => self.plain.iter().position(|(k, _)| *k == key),
        }
    }

    pub(super) fn insert(&mut self, group: Option<&str>, key: K, value: V) -> Option<V> {
        match group {
            None => self.insert_plain(key, value),
            Some(name) => {
                let extra = self.extra.get_or_insert_with(|| {
                    Box::new(Extra {
                        index: None,
                        groups: Vec::new(),
                    })
                });
                let i = match extra.groups.iter().position(|g| &*g.name == name) {
                    Some(i) => i,
                    None => {
                        extra.groups.push(SharedGroup::new(name));
                        extra.groups.len() - 1
                    }
                };
                extra.groups[i].insert(key, value)
            }
        }
    }

    fn insert_plain(&mut self, key: K, value: V) -> Option<V> {
        if let Some(i) = self.position(key) {
            return Some(mem::replace(&mut self.plain[i].1, value));
        }
        if self.plain.len() < INDEX_ABOVE {
            // Short lists grow one slot at a time (most have one or two
            // entries); long ones grow geometrically.
            self.plain.reserve_exact(1);
        }
        self.plain.push((key, value));
        let n = self.plain.len();
        match self.extra.as_mut().and_then(|e| e.index.as_mut()) {
            Some(index) => {
                index.insert(key, (n - 1) as u32);
            }
            None if n > INDEX_ABOVE => {
                let mut index = HashMap::with_capacity_and_hasher(n * 2, RandomState::new());
                index.extend(
                    self.plain
                        .iter()
                        .enumerate()
                        .map(|(i, (k, _))| (*k, i as u32)),
                );
                let extra = self.extra.get_or_insert_with(|| {
                    Box::new(Extra {
                        index: None,
                        groups: Vec::new(),
                    })
                });
                extra.index = Some(index);
            }
            None => {}
        }
        None
    }

    pub(super) fn remove(&mut self, group: Option<&str>, key: K) -> Option<V> {
        let removed = match group {
            None => self.remove_plain(key),
            Some(name) => {
                let extra = self.extra.as_mut()?;
                let gi = extra.groups.iter().position(|g| &*g.name == name)?;
                let value = extra.groups[gi].remove(key)?;
                if extra.groups[gi].is_empty() {
                    extra.groups.swap_remove(gi);
                    if extra.groups.is_empty() {
                        extra.groups = Vec::new();
                    }
                }
                Some(value)
            }
        };
        if let Some(extra) = &self.extra {
            if extra.index.is_none() && extra.groups.is_empty() {
                self.extra = None;
            }
        }
        removed
    }

    fn remove_plain(&mut self, key: K) -> Option<V> {
        let i = self.position(key)?;
        let (_, value) = self.plain.swap_remove(i);
        if let Some(extra) = self.extra.as_mut() {
            if let Some(index) = extra.index.as_mut() {
                index.remove(&key);
                if i < self.plain.len() {
                    index.insert(self.plain[i].0, i as u32);
                }
                if self.plain.len() < INDEX_BELOW {
                    extra.index = None;
                }
            }
        }
        if self.plain.spilled() && self.plain.capacity() > 2 * self.plain.len() + 2 {
            self.plain.shrink_to_fit();
        }
        Some(value)
    }

    pub(super) fn group_mut(&mut self, name: &str) -> Option<&mut SharedGroup<K, V>> {
        let extra = self.extra.as_mut()?;
        extra.groups.iter_mut().find(|g| &*g.name == name)
    }

    pub(super) fn get(&self, group: Option<&str>, key: K) -> Option<&V> {
        match group {
            None => self.position(key).map(|i| &self.plain[i].1),
            Some(name) => self
                .extra
                .as_ref()?
                .groups
                .iter()
                .find(|g| &*g.name == name)?
                .get(key),
        }
    }

    #[inline]
    pub(super) fn visit(
        &self,
        visit: &mut impl FnMut(K, &V),
        visit_shared: &mut impl FnMut(&str, &SharedGroup<K, V>),
    ) {
        for (k, v) in &self.plain {
            visit(*k, v);
        }
        if let Some(extra) = &self.extra {
            for group in &extra.groups {
                visit_shared(&group.name, group);
            }
        }
    }
}

impl<K, V> Subs<K, V> {
    /// `new` without the key bounds, for `Node::empty`.
    pub(super) fn empty() -> Self {
        Subs {
            plain: SmallVec::new(),
            extra: None,
        }
    }
}
