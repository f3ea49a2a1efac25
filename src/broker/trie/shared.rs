//! A shared subscription group (`$share/{group}/{filter}`) on one filter:
//! its members in the order they joined, whether each is online, and a
//! round-robin cursor.
//!
//! Owns: membership, the online marks and the pick: round robin over the
//! members that are online, falling back to the others only when none is.
//! 5.0 §4.8.2 leaves the choice of session to the server; a session that is
//! not connected keeps its QoS 1/2 messages until its client comes back
//! (and drops QoS 0, as for any offline session), so it is picked only when
//! no member is connected. Does not own: when a member is marked (the
//! runtime tells every replica, see `crate::server::core`), or balancing
//! across cores.

use std::cell::Cell;
use std::mem;

/// The members of one shared subscription group (`$share/{group}/{filter}`)
/// on one filter, in the order they joined, with a round-robin cursor.
pub struct SharedGroup<K, V> {
    pub(super) name: Box<str>,
    members: Vec<(K, V)>,
    /// Per member, in the same order: whether its session is offline.
    offline: Vec<bool>,
    /// How many members are offline: with none, the pick is the cursor's.
    offline_count: usize,
    cursor: Cell<usize>,
}

impl<K: Copy + Eq, V> SharedGroup<K, V> {
    pub(super) fn new(name: &str) -> Self {
        SharedGroup {
            name: name.into(),
            members: Vec::new(),
            offline: Vec::new(),
            offline_count: 0,
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

    /// The next online member from the round-robin cursor, advancing the
    /// cursor past it; the member under the cursor when none is online.
    /// `None` only for an empty group.
    pub fn next_member(&self) -> Option<(K, &V)> {
        let len = self.members.len();
        if len == 0 {
            return None;
        }
        let start = self.cursor.get() % len;
        let i = if self.offline_count == 0 {
            start
        } else {
            (0..len)
                .map(|step| (start + step) % len)
                .find(|&i| !self.offline[i])
                .unwrap_or(start)
        };
        self.cursor.set(i + 1);
        let (k, v) = &self.members[i];
        Some((*k, v))
    }

    /// Whether `key` is a member marked online.
    pub fn is_online(&self, key: K) -> bool {
        self.position(key).is_some_and(|i| !self.offline[i])
    }

    /// Marks member `key` online or offline; false if it is no member.
    pub(super) fn set_online(&mut self, key: K, online: bool) -> bool {
        let Some(i) = self.position(key) else {
            return false;
        };
        if self.offline[i] == online {
            self.offline[i] = !online;
            if online {
                self.offline_count -= 1;
            } else {
                self.offline_count += 1;
            }
        }
        true
    }

    pub(super) fn position(&self, key: K) -> Option<usize> {
        self.members.iter().position(|(k, _)| *k == key)
    }

    /// Adds member `key`, or replaces its value; either way it is online
    /// (only a connected client subscribes, and a resumed session
    /// subscribes again under its new key).
    pub(super) fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.position(key) {
            Some(i) => {
                self.set_online(key, true);
                Some(mem::replace(&mut self.members[i].1, value))
            }
            None => {
                self.members.push((key, value));
                self.offline.push(false);
                None
            }
        }
    }

    pub(super) fn remove(&mut self, key: K) -> Option<V> {
        let i = self.position(key)?;
        let (_, value) = self.members.remove(i);
        if self.offline.remove(i) {
            self.offline_count -= 1;
        }
        // Keep the cursor on the member that would have come next.
        let cursor = self.cursor.get();
        if i < cursor {
            self.cursor.set(cursor - 1);
        }
        if self.members.capacity() > 2 * self.members.len() + 4 {
            self.members.shrink_to_fit();
            self.offline.shrink_to_fit();
        }
        Some(value)
    }

    pub(super) fn get(&self, key: K) -> Option<&V> {
        self.position(key).map(|i| &self.members[i].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(keys: &[u32]) -> SharedGroup<u32, ()> {
        let mut group = SharedGroup::new("g");
        for &k in keys {
            group.insert(k, ());
        }
        group
    }

    fn picks(group: &SharedGroup<u32, ()>, n: usize) -> Vec<u32> {
        (0..n).map(|_| group.next_member().unwrap().0).collect()
    }

    /// `pick` wraps around and is `None` only for an empty group.
    #[test]
    fn shared_group_pick_wraps() {
        let mut group = SharedGroup::<u32, ()>::new("g");
        assert!(group.pick(0).is_none());
        assert!(group.next_member().is_none());
        group.insert(5, ());
        group.insert(6, ());
        assert_eq!(group.pick(0).unwrap().0, 5);
        assert_eq!(group.pick(3).unwrap().0, 6);
        assert_eq!(group.name(), "g");
        assert!(!group.is_empty());
    }

    /// 5.0 §4.8.2: each message goes to one member; members whose session
    /// is offline are skipped while any member is online, and the round
    /// robin goes on among the online ones.
    #[test]
    fn offline_members_are_skipped_while_any_is_online() {
        let mut group = group(&[1, 2, 3, 4]);
        assert_eq!(picks(&group, 5), [1, 2, 3, 4, 1]);
        assert!(group.set_online(3, false));
        assert!(group.set_online(1, false));
        assert!(!group.set_online(9, false), "not a member");
        assert!(!group.is_online(1) && group.is_online(2));
        assert_eq!(picks(&group, 5), [2, 4, 2, 4, 2]);
        // Marking twice counts once.
        assert!(group.set_online(1, false));
        assert!(group.set_online(3, true));
        assert_eq!(picks(&group, 4), [3, 4, 2, 3]);
    }

    /// With no member online, the round robin goes over all of them (their
    /// sessions keep QoS 1/2 messages for their clients).
    #[test]
    fn with_none_online_every_member_takes_its_turn() {
        let mut group = group(&[1, 2, 3]);
        for k in [1, 2, 3] {
            group.set_online(k, false);
        }
        assert_eq!(picks(&group, 4), [1, 2, 3, 1]);
        group.set_online(2, true);
        assert_eq!(picks(&group, 3), [2, 2, 2]);
    }

    /// A member that subscribes again is online; one that leaves takes its
    /// mark with it, and the marks stay with their members.
    #[test]
    fn marks_follow_members_through_inserts_and_removals() {
        let mut group = group(&[1, 2, 3]);
        group.set_online(1, false);
        group.set_online(3, false);
        assert_eq!(group.remove(2), Some(()));
        assert_eq!(picks(&group, 2), [1, 3], "none online: all take turns");
        group.insert(4, ());
        assert_eq!(picks(&group, 3), [4, 4, 4]);
        group.insert(3, ());
        assert!(group.is_online(3), "a re-subscribe is online");
        assert_eq!(group.remove(1), Some(()));
        assert_eq!(group.offline_count, 0);
        assert_eq!(picks(&group, 4), [3, 4, 3, 4]);
    }
}
