//! A shared subscription group (`$share/{group}/{filter}`) on one filter:
//! its members in the order they joined and a round-robin cursor.
//!
//! Owns: membership and the cursor. Does not own: which member gets a
//! message beyond offering the cursor (the caller skips offline members),
//! or balancing across cores (`crate::server::core`).

use std::cell::Cell;
use std::mem;

/// The members of one shared subscription group (`$share/{group}/{filter}`)
/// on one filter, in the order they joined, with a round-robin cursor.
pub struct SharedGroup<K, V> {
    pub(super) name: Box<str>,
    members: Vec<(K, V)>,
    cursor: Cell<usize>,
}

impl<K: Copy + Eq, V> SharedGroup<K, V> {
    pub(super) fn new(name: &str) -> Self {
        SharedGroup {
            name: name.into(),
            members: Vec::new(),
            cursor: Cell::new(0),
        }
    }

    /// The share name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The members, in insertion order (a re-subscribe keeps its place).
    pub fn members(&self) -> &[(K, V)] {
        &self.members
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Member `n` modulo the group size; `None` only for an empty group.
    pub fn pick(&self, n: usize) -> Option<(K, &V)> {
        if self.members.is_empty() {
            return None;
        }
        let (k, v) = &self.members[n % self.members.len()];
        Some((*k, v))
    }

    /// The member under the round-robin cursor, advancing the cursor. A
    /// caller that finds the member unable to take the message calls it
    /// again, at most `len()` times.
    pub fn next_member(&self) -> Option<(K, &V)> {
        let n = self.cursor.get();
        let picked = self.pick(n)?;
        self.cursor.set(n % self.members.len() + 1);
        Some(picked)
    }

    pub(super) fn position(&self, key: K) -> Option<usize> {
        self.members.iter().position(|(k, _)| *k == key)
    }

    pub(super) fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.position(key) {
            Some(i) => Some(mem::replace(&mut self.members[i].1, value)),
            None => {
                self.members.push((key, value));
                None
            }
        }
    }

    pub(super) fn remove(&mut self, key: K) -> Option<V> {
        let i = self.position(key)?;
        let (_, value) = self.members.remove(i);
        // Keep the cursor on the member that would have come next.
        let cursor = self.cursor.get();
        if i < cursor {
            self.cursor.set(cursor - 1);
        }
        if self.members.capacity() > 2 * self.members.len() + 4 {
            self.members.shrink_to_fit();
        }
        Some(value)
    }

    pub(super) fn get(&self, key: K) -> Option<&V> {
        self.position(key).map(|i| &self.members[i].1)
    }
}
