//! The subscription index: a topic-level trie mapping topic filters to the
//! subscribers (keys) that hold them, and answering "who wants this topic?"
//! for every PUBLISH.
//!
//! Owns: the trie structure, MQTT topic-filter matching (`+`, `#`, the `$`
//! rule, empty levels), the per-filter subscriber lists, and shared
//! subscription groups (`$share/{group}/{filter}`) with a round robin that
//! prefers the members marked online ([`SubscriptionTrie::set_shared_online`]).
//!
//! Does not own: what a key or a value means (the broker uses a small
//! `{core, session slot}` key and the subscription options as value), when a
//! shared-group member goes offline (the runtime marks it in every replica),
//! de-duplicating overlapping subscriptions of
//! one client, or propagation between cores (each core keeps its own
//! replica and calls `insert`/`remove` on it).
//!
//! Layout, chosen for the PUBLISH hot path and for memory at millions of
//! subscriptions:
//! - literal children live in an exact-size boxed slice (linear search, no
//!   hashing) up to `FEW_CHILDREN` (8) entries, then in an ahash map; labels
//!   up to 16 bytes are stored inline;
//! - the `+` child and the `#` leaf are dedicated fields (boxed together,
//!   since most nodes have neither), never looked up by label;
//! - a node's plain subscribers are a `SmallVec` with one inline slot that
//!   grows exactly while short; a `HashMap` index from key to position is
//!   built only above `INDEX_ABOVE` (16) subscribers, and shared groups live in
//!   a boxed side record that most nodes never allocate. A node is 56 bytes
//!   with 16 bytes of key and value; 1M subscriptions of the bench's shape
//!   take about 130 MiB of heap per replica;
//! - `match_topic` walks iteratively with a small inline stack (it
//!   allocates only for topics with more than 16 levels that also meet `+`
//!   branches at most of them), so no topic can overflow the thread stack;
//!   teardown of removed branches and of the whole trie is likewise bounded
//!   in stack depth.
//!
//! A node and its steps are in `trie/node.rs`, its subscriber lists in
//! `trie/subs.rs`, the children container in `trie/children.rs`, shared
//! groups in `trie/shared.rs`, and the matching walk in `trie/matching.rs`.

use std::hash::Hash;
use std::mem;

use crate::codec::TopicFilter;

mod children;
mod matching;
mod node;
mod shared;
mod subs;

pub(crate) use children::{dismantle, next_level, Children, Dismantle, END};
use node::Node;
pub use shared::SharedGroup;
use subs::Subs;

/// The levels of a filter's pattern that lead to nodes (a trailing `#` is
/// a leaf field, not a node), and whether it ends in `#`.
fn node_path(pattern: &str) -> (impl Iterator<Item = &str> + Clone, bool) {
    let (body, hash) = if pattern == "#" {
        (None, true)
    } else if let Some(body) = pattern.strip_suffix("/#") {
        (Some(body), true)
    } else {
        (Some(pattern), false)
    };
    (body.into_iter().flat_map(|b| b.split('/')), hash)
}

fn split_filter(filter: &TopicFilter) -> (Option<&str>, &str) {
    match filter.shared() {
        Some((group, pattern)) => (Some(group), pattern),
        None => (None, filter.as_str()),
    }
}

/// A subscription index from topic filters to `(key, value)` pairs; see the
/// module documentation.
pub struct SubscriptionTrie<K, V> {
    root: Node<K, V>,
    len: usize,
}

impl<K: Copy + Eq + Hash, V> Default for SubscriptionTrie<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> Drop for SubscriptionTrie<K, V> {
    fn drop(&mut self) {
        let root = mem::replace(&mut self.root, Node::empty());
        dismantle(root);
    }
}

impl<K: Copy + Eq + Hash, V> SubscriptionTrie<K, V> {
    pub fn new() -> Self {
        SubscriptionTrie {
            root: Node::new(),
            len: 0,
        }
    }

    /// The number of subscriptions: (filter, key) pairs, shared ones
    /// included.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `key`'s subscription to `filter`, or replaces its value and
    /// returns the old one. `$share/{group}/{pattern}` joins `group` on
    /// `pattern`; that is independent of a plain subscription to `pattern`.
    pub fn insert(&mut self, filter: &TopicFilter, key: K, value: V) -> Option<V> {
        let (group, pattern) = split_filter(filter);
        let mut node = &mut self.root;
        let mut ends_in_hash = false;
        for level in pattern.split('/') {
            match level {
                "#" => {
                    ends_in_hash = true;
                    break;
                }
                "+" => node = node.wild_mut().plus.get_or_insert_with(Node::new),
                _ => {
                    node = node
                        .children
                        .get_or_insert_with(level.as_bytes(), Node::new)
                }
            }
        }
        let subs = if ends_in_hash {
            node.wild_mut().hash.get_or_insert_with(Subs::new)
        } else {
            &mut node.subs
        };
        let old = subs.insert(group, key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes `key`'s subscription to `filter`, returning its value, and
    /// frees the nodes that no longer lead to any subscription.
    pub fn remove(&mut self, filter: &TopicFilter, key: K) -> Option<V> {
        let (group, pattern) = split_filter(filter);
        let (path, ends_in_hash) = node_path(pattern);
        let mut node = &mut self.root;
        for level in path.clone() {
            node = node.step_mut(level)?;
        }
        let removed = if ends_in_hash {
            let wild = node.wild.as_mut()?;
            let leaf = wild.hash.as_mut()?;
            let removed = leaf.remove(group, key)?;
            if leaf.is_empty() {
                wild.hash = None;
                node.tidy_wild();
            }
            removed
        } else {
            node.subs.remove(group, key)?
        };
        let prune = node.is_empty();
        self.len -= 1;
        if prune {
            self.prune(path);
        }
        Some(removed)
    }

    /// Detaches the longest chain of nodes at the end of `path` that holds
    /// nothing but that chain (the last node on the path is empty).
    fn prune<'a>(&mut self, path: impl Iterator<Item = &'a str> + Clone) {
        let depth = path.clone().count();
        // 1-based depth of the topmost node to detach.
        let mut cut = 1;
        let mut node = &self.root;
        for (j, level) in path.clone().enumerate() {
            let j = j + 1;
            node = match node.step(level) {
                Some(next) => next,
                None => return,
            };
            let only_the_chain = node.subs.is_empty()
                && node.hash().is_none()
                && node.children.len() + usize::from(node.plus().is_some()) == 1;
            if j < depth && !only_the_chain {
                cut = j + 1;
            }
        }
        if depth == 0 {
            return;
        }
        let mut levels = path;
        let mut parent = &mut self.root;
        for level in levels.by_ref().take(cut - 1) {
            parent = match parent.step_mut(level) {
                Some(next) => next,
                None => return,
            };
        }
        let Some(edge) = levels.next() else { return };
        if let Some(detached) = parent.detach(edge) {
            dismantle(detached);
        }
    }

    /// The value of `key`'s subscription to `filter`.
    pub fn get(&self, filter: &TopicFilter, key: K) -> Option<&V> {
        let (group, pattern) = split_filter(filter);
        let mut node = &self.root;
        for level in pattern.split('/') {
            if level == "#" {
                return node.hash()?.get(group, key);
            }
            node = node.step(level)?;
        }
        node.subs.get(group, key)
    }

    /// Marks `key`'s shared subscription `filter` (`$share/{group}/...`)
    /// online or offline: the group's round robin skips offline members
    /// while any member is online (see [`SharedGroup::next_member`]). A
    /// member is online when it joins. False if there is no such shared
    /// subscription.
    pub fn set_shared_online(&mut self, filter: &TopicFilter, key: K, online: bool) -> bool {
        let (Some(group), pattern) = split_filter(filter) else {
            return false;
        };
        let mut node = &mut self.root;
        let mut subs = None;
        for level in pattern.split('/') {
            if level == "#" {
                subs = node.wild.as_mut().and_then(|wild| wild.hash.as_mut());
                break;
            }
            match node.step_mut(level) {
                Some(next) => node = next,
                None => return false,
            }
        }
        let subs = match subs {
            Some(subs) => subs,
            None if pattern.ends_with('#') => return false,
            None => &mut node.subs,
        };
        subs.group_mut(group)
            .is_some_and(|g| g.set_online(key, online))
    }

    /// The number of trie nodes below the root (a `#` leaf counts as one).
    /// For tests and diagnostics; walks the whole trie.
    pub fn node_count(&self) -> usize {
        let mut count = 0;
        let mut stack = vec![&self.root];
        while let Some(node) = stack.pop() {
            if node.hash().is_some() {
                count += 1;
            }
            if let Some(plus) = node.plus() {
                count += 1;
                stack.push(plus);
            }
            count += node.children.len();
            node.children.for_each(|_, child| stack.push(child));
        }
        count
    }

    /// Counts the subscriptions by walking the trie (to check `len`).
    #[cfg(test)]
    fn count_by_walking(&self) -> usize {
        let mut count = 0;
        let mut stack = vec![&self.root];
        while let Some(node) = stack.pop() {
            count += node.subs.count() + node.hash().map_or(0, |h| h.count());
            if let Some(plus) = node.plus() {
                stack.push(plus);
            }
            node.children.for_each(|_, child| stack.push(child));
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    pub(super) fn f(text: &str) -> TopicFilter {
        TopicFilter::try_from(text).unwrap()
    }

    pub(super) type Trie = SubscriptionTrie<u32, &'static str>;

    /// The sorted (key, value) pairs of plain subscriptions matching `topic`.
    pub(super) fn plain_matches<V: Clone + Ord>(
        trie: &SubscriptionTrie<u32, V>,
        topic: &str,
    ) -> Vec<(u32, V)> {
        let mut out = Vec::new();
        trie.match_topic(topic, |k, v| out.push((k, v.clone())), |_, _| {});
        out.sort();
        out
    }

    pub(super) fn keys(trie: &Trie, topic: &str) -> Vec<u32> {
        plain_matches(trie, topic)
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    pub(super) fn trie_with(filters: &[&'static str]) -> Trie {
        let mut trie = Trie::new();
        for (i, filter) in filters.iter().enumerate() {
            trie.insert(&f(filter), i as u32, filter);
        }
        trie
    }

    /// Re-subscribing to the same filter replaces the existing subscription
    /// (§3.8.4: "it MUST replace the existing Subscription"
    /// [MQTT-3.8.4-3]) and returns the old options.
    #[test]
    fn insert_replaces_and_returns_old_value() {
        let mut trie = Trie::new();
        assert_eq!(trie.insert(&f("a/+"), 7, "one"), None);
        assert_eq!(trie.insert(&f("a/+"), 7, "two"), Some("one"));
        assert_eq!(trie.len(), 1);
        assert_eq!(trie.get(&f("a/+"), 7), Some(&"two"));
        assert_eq!(plain_matches(&trie, "a/x"), [(7, "two")]);
        assert_eq!(trie.insert(&f("a/#"), 7, "x"), None);
        assert_eq!(trie.insert(&f("a/#"), 7, "y"), Some("x"));
        assert_eq!(trie.get(&f("a/#"), 7), Some(&"y"));
        assert_eq!(trie.len(), 2);
    }

    /// Removing every subscription frees every node: the node count goes
    /// back to where it started, shared, `+` and `#` branches included.
    #[test]
    fn remove_prunes_empty_nodes() {
        let mut trie = Trie::new();
        trie.insert(&f("keep/this"), 1, "k");
        let start = trie.node_count();
        assert_eq!(start, 2);
        let filters = [
            "keep/this/and/more",
            "keep/+/x/y",
            "keep/#",
            "a/b/c/d/e",
            "a/b/c",
            "+/+/#",
            "$share/g/keep/this/z",
            "//",
            "#",
        ];
        for (i, filter) in filters.iter().enumerate() {
            trie.insert(&f(filter), 100 + i as u32, filter);
        }
        assert!(trie.node_count() > start);
        assert_eq!(trie.remove(&f("a/b/c"), 999), None, "unknown key");
        assert_eq!(trie.remove(&f("a/b/x"), 104), None, "unknown filter");
        for (i, filter) in filters.iter().enumerate().rev() {
            assert_eq!(trie.remove(&f(filter), 100 + i as u32), Some(*filter));
            assert_eq!(trie.remove(&f(filter), 100 + i as u32), None);
        }
        assert_eq!(trie.node_count(), start);
        assert_eq!(trie.len(), 1);
        assert_eq!(keys(&trie, "keep/this"), [1]);
        trie.remove(&f("keep/this"), 1);
        assert_eq!(trie.node_count(), 0);
        assert!(trie.is_empty());
    }

    /// Pruning stops at a node that still holds something and keeps
    /// sibling branches.
    #[test]
    fn remove_keeps_shared_prefixes() {
        let mut trie = trie_with(&["a/b/c/d", "a/b", "a/x/y"]);
        assert_eq!(trie.node_count(), 6);
        trie.remove(&f("a/b/c/d"), 0);
        assert_eq!(trie.node_count(), 4);
        assert_eq!(keys(&trie, "a/b"), [1]);
        trie.remove(&f("a/b"), 1);
        assert_eq!(trie.node_count(), 3);
        assert_eq!(keys(&trie, "a/x/y"), [2]);
    }

    /// [`SubscriptionTrie::set_shared_online`] marks the member in the
    /// group of the filter named (`#` leaves included) and nowhere else:
    /// not in a plain subscription, not in another group. The group picks
    /// its online members (5.0 §4.8.2); a member that joins again is online.
    #[test]
    fn shared_members_are_marked_per_filter() {
        let mut trie = Trie::new();
        for (key, value) in [(1, "g1"), (2, "g2")] {
            trie.insert(&f("$share/g/a/#"), key, value);
        }
        for (key, value) in [(1, "h1"), (2, "h2")] {
            trie.insert(&f("$share/h/a/+"), key, value);
        }
        trie.insert(&f("a/+"), 1, "plain");
        assert!(trie.set_shared_online(&f("$share/g/a/#"), 1, false));
        assert!(!trie.set_shared_online(&f("a/+"), 1, false), "not shared");
        assert!(!trie.set_shared_online(&f("$share/x/a/#"), 1, false));
        assert!(!trie.set_shared_online(&f("$share/g/b/#"), 1, false));
        assert!(!trie.set_shared_online(&f("$share/g/a/#"), 3, false));
        let picks = |trie: &Trie| {
            let mut picks = Vec::new();
            for _ in 0..4 {
                trie.match_topic(
                    "a/x",
                    |_, _| {},
                    |name, group| picks.push((name.to_owned(), *group.next_member().unwrap().1)),
                );
            }
            picks.sort();
            picks
        };
        let g = |v: &'static str| ("g".to_owned(), v);
        let h = |v: &'static str| ("h".to_owned(), v);
        assert_eq!(
            picks(&trie),
            [
                g("g2"),
                g("g2"),
                g("g2"),
                g("g2"),
                h("h1"),
                h("h1"),
                h("h2"),
                h("h2")
            ]
        );
        assert_eq!(plain_matches(&trie, "a/x"), [(1, "plain")]);
        trie.insert(&f("$share/g/a/#"), 1, "g1 again");
        assert_eq!(
            picks(&trie)[..4],
            [g("g1 again"), g("g1 again"), g("g2"), g("g2")]
        );
    }

    /// Long subscriber lists (indexed) and wide nodes (hashed children)
    /// behave like short ones, and shrink back.
    #[test]
    fn many_subscribers_and_many_children() {
        let mut trie = SubscriptionTrie::<u32, u32>::new();
        let n = 200u32;
        for k in 0..n {
            assert_eq!(trie.insert(&f("hot/topic"), k, k), None);
            assert_eq!(trie.insert(&f(&format!("wide/{k}")), k, k), None);
        }
        for k in 0..n {
            assert_eq!(trie.insert(&f("hot/topic"), k, k + 1), Some(k));
        }
        assert_eq!(trie.len(), 2 * n as usize);
        assert_eq!(plain_matches(&trie, "hot/topic").len(), n as usize);
        assert_eq!(plain_matches(&trie, "wide/17"), [(17, 17)]);
        for k in (0..n).step_by(2) {
            assert_eq!(trie.remove(&f("hot/topic"), k), Some(k + 1));
            assert_eq!(trie.remove(&f(&format!("wide/{k}")), k), Some(k));
        }
        let left = plain_matches(&trie, "hot/topic");
        assert_eq!(
            left,
            (1..n).step_by(2).map(|k| (k, k + 1)).collect::<Vec<_>>()
        );
        for k in (1..n).step_by(2) {
            assert_eq!(trie.get(&f("hot/topic"), k), Some(&(k + 1)));
            assert_eq!(trie.remove(&f("hot/topic"), k), Some(k + 1));
            assert_eq!(trie.remove(&f(&format!("wide/{k}")), k), Some(k));
        }
        assert!(trie.is_empty());
        assert_eq!(trie.node_count(), 0);
    }

    /// A filter with tens of thousands of levels (a 64 KiB topic is
    /// allowed) can be inserted, matched, removed and dropped without
    /// exhausting the stack of a test thread.
    #[test]
    fn very_deep_filters_do_not_overflow_the_stack() {
        let levels = 30_000;
        let topic = vec!["a"; levels].join("/");
        let plus = vec!["+"; levels].join("/");
        let mut trie = SubscriptionTrie::<u32, ()>::new();
        trie.insert(&f(&topic), 1, ());
        trie.insert(&f(&plus), 2, ());
        trie.insert(&f(&format!("{topic}/#")), 3, ());
        let mut seen = Vec::new();
        trie.match_topic(&topic, |k, _| seen.push(k), |_, _| {});
        seen.sort();
        assert_eq!(seen, [1, 2, 3]);
        assert_eq!(trie.remove(&f(&plus), 2), Some(()));
        assert_eq!(trie.node_count(), levels + 1);
        assert_eq!(trie.remove(&f(&format!("{topic}/#")), 3), Some(()));
        assert_eq!(trie.node_count(), levels);
        trie.insert(&f(&format!("{plus}/x")), 4, ());
        drop(trie);
    }

    /// The definition of matching the trie must agree with (§4.7).
    fn reference_matches(filter: &str, topic: &str) -> bool {
        let f: Vec<&str> = filter.split('/').collect();
        let t: Vec<&str> = topic.split('/').collect();
        if topic.starts_with('$') && (f[0] == "+" || f[0] == "#") {
            return false;
        }
        let mut i = 0;
        loop {
            if i == f.len() {
                return i == t.len();
            }
            if f[i] == "#" {
                return true;
            }
            if i == t.len() || (f[i] != "+" && f[i] != t[i]) {
                return false;
            }
            i += 1;
        }
    }

    fn topic_level() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "", "$x", "ab"])
    }

    fn topic_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec(topic_level(), 1..5)
            .prop_map(|l| l.join("/"))
            .prop_filter("non-empty", |t| !t.is_empty())
    }

    fn filter_strategy() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["a", "b", "", "$x", "+"]);
        (
            prop::collection::vec(level, 0..4),
            any::<bool>(),
            prop::sample::select(vec!["", "", "", "$share/g/", "$share/h/"]),
        )
            .prop_map(|(levels, hash, share)| {
                let mut levels = levels;
                if hash || levels.is_empty() {
                    levels.push("#");
                }
                format!("{share}{}", levels.join("/"))
            })
            .prop_filter("valid filter", |t| {
                TopicFilter::try_from(t.as_str()).is_ok()
            })
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(String, u32, u32),
        Remove(String, u32),
    }

    fn op_strategy() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (filter_strategy(), 0..4u32, any::<u32>()).prop_map(|(f, k, v)| Op::Insert(f, k, v)),
            1 => (filter_strategy(), 0..4u32).prop_map(|(f, k)| Op::Remove(f, k)),
        ]
    }

    proptest! {
        /// After random subscribes and unsubscribes, `match_topic` reports
        /// exactly the (filter, key) pairs and shared groups that the
        /// reference matcher selects, `len` and `get` agree with a map, and
        /// removing everything frees every node.
        #[test]
        fn trie_agrees_with_reference(
            ops in prop::collection::vec(op_strategy(), 0..40),
            topics in prop::collection::vec(topic_strategy(), 1..8),
        ) {
            let mut trie = SubscriptionTrie::<u32, (String, u32)>::new();
            let mut model: BTreeMap<(String, u32), u32> = BTreeMap::new();
            for op in &ops {
                match op {
                    Op::Insert(filter, k, v) => {
                        let old = trie.insert(&f(filter), *k, (filter.clone(), *v));
                        let expected = model.insert((filter.clone(), *k), *v);
                        prop_assert_eq!(old.map(|o| o.1), expected);
                    }
                    Op::Remove(filter, k) => {
                        let old = trie.remove(&f(filter), *k);
                        let expected = model.remove(&(filter.clone(), *k));
                        prop_assert_eq!(old.map(|o| o.1), expected);
                    }
                }
                prop_assert_eq!(trie.len(), model.len());
                prop_assert_eq!(trie.count_by_walking(), model.len());
            }
            for ((filter, k), v) in &model {
                prop_assert_eq!(trie.get(&f(filter), *k).map(|x| x.1), Some(*v));
            }
            for topic in &topics {
                let mut plain = Vec::new();
                let mut shared = Vec::new();
                trie.match_topic(
                    topic,
                    |k, (filter, v)| plain.push((filter.clone(), k, *v)),
                    |group, members| {
                        let filter = &members.members()[0].1 .0;
                        let list: Vec<(u32, u32)> = members.members().iter().map(|(k, (_, v))| (*k, *v)).collect();
                        shared.push((group.to_owned(), filter.clone(), list));
                    },
                );
                plain.sort();
                shared.sort();
                let mut want_plain = Vec::new();
                let mut want_shared: BTreeMap<(String, String), Vec<(u32, u32)>> = BTreeMap::new();
                for ((filter, k), v) in &model {
                    let tf = f(filter);
                    if !reference_matches(tf.pattern(), topic) {
                        continue;
                    }
                    match tf.shared() {
                        None => want_plain.push((filter.clone(), *k, *v)),
                        Some((group, _)) => want_shared
                            .entry((group.to_owned(), filter.clone()))
                            .or_default()
                            .push((*k, *v)),
                    }
                }
                want_plain.sort();
                // Members come in insertion order; compare as sets here.
                let mut got_shared: Vec<_> = shared
                    .into_iter()
                    .map(|(g, filter, mut list)| { list.sort(); ((g, filter), list) })
                    .collect();
                got_shared.sort();
                let want_shared: Vec<_> = want_shared.into_iter().collect();
                prop_assert_eq!(plain, want_plain, "topic {}", topic);
                prop_assert_eq!(got_shared, want_shared, "topic {}", topic);
            }
            for (filter, k) in model.keys() {
                prop_assert!(trie.remove(&f(filter), *k).is_some());
            }
            prop_assert!(trie.is_empty());
            prop_assert_eq!(trie.node_count(), 0);
        }
    }
}
