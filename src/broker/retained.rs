//! The retained-message store: at most one message per topic name, found
//! by topic filter when a client subscribes.
//!
//! Owns: a topic-level tree keyed by topic name, replace/remove of the one
//! retained message per topic (with pruning of emptied branches), whether
//! a cap on the number of messages admits one more (`admits`), and the
//! walk that yields every stored topic a filter matches, with the same
//! semantics as the subscription index (`+` is one level, possibly empty;
//! `#` also matches the parent level; a leading `+` or `#` does not match
//! topics beginning with `$` [MQTT-4.7.2-1]).
//!
//! Does not own: what a message is (`M` is opaque; the broker stores the
//! publish it will resend), deciding that an empty payload means "delete"
//! [MQTT-3.3.1-6], Retain Handling options, expiry, or replication between
//! cores.
//!
//! The store keeps a clone of each `TopicName` next to its message so the
//! walk can hand it out without rebuilding strings.

use std::mem;

use super::trie::{dismantle, next_level, Children, Dismantle, END};
use crate::codec::TopicName;

struct Node<M> {
    children: Children<Node<M>>,
    message: Option<Box<(TopicName, M)>>,
}

impl<M> Node<M> {
    fn new() -> Self {
        Node {
            children: Children::default(),
            message: None,
        }
    }

    fn emit(&self, f: &mut impl FnMut(&TopicName, &M)) {
        if let Some(entry) = &self.message {
            f(&entry.0, &entry.1);
        }
    }
}

impl<M> Dismantle for Node<M> {
    fn into_children(self, f: &mut dyn FnMut(Self)) {
        self.children.into_each(f);
    }
}

/// Retained messages by topic name; see the module documentation.
pub struct RetainedStore<M> {
    root: Node<M>,
    len: usize,
}

impl<M> Default for RetainedStore<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M> Drop for RetainedStore<M> {
    fn drop(&mut self) {
        mem::take(&mut self.root.children).into_each(&mut |child| dismantle(child));
    }
}

/// One pending step of a filter walk.
enum Step<'a, M> {
    /// Match the filter from byte `pos` (or [`END`]) against this node.
    Walk(&'a Node<M>, usize),
    /// Everything at and below this node matches (after a `#`).
    All(&'a Node<M>),
}

impl<M> RetainedStore<M> {
    pub fn new() -> Self {
        RetainedStore {
            root: Node::new(),
            len: 0,
        }
    }

    /// The number of retained messages.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores `message` as the retained message of `topic`, returning the
    /// one it replaces [MQTT-3.3.1-5].
    pub fn insert(&mut self, topic: &TopicName, message: M) -> Option<M> {
        let mut node = &mut self.root;
        for level in topic.as_str().split('/') {
            node = node
                .children
                .get_or_insert_with(level.as_bytes(), Node::new);
        }
        if let Some(entry) = node.message.as_mut() {
            return Some(mem::replace(&mut entry.1, message));
        }
        node.message = Some(Box::new((topic.clone(), message)));
        self.len += 1;
        None
    }

    /// Whether a message for `topic` may be stored when the store may hold
    /// at most `limit` messages (0: no limit): always for a topic that
    /// already has one (a replacement adds nothing), otherwise only below
    /// the limit. Walks the tree only once the store is full.
    pub fn admits(&self, topic: &TopicName, limit: usize) -> bool {
        limit == 0 || self.len < limit || self.get(topic).is_some()
    }

    /// Removes `topic`'s retained message and frees the branch that no
    /// longer leads to one.
    pub fn remove(&mut self, topic: &TopicName) -> Option<M> {
        let mut node = &mut self.root;
        for level in topic.as_str().split('/') {
            node = node.children.get_mut(level.as_bytes())?;
        }
        let (_, message) = *node.message.take()?;
        let prune = node.children.is_empty();
        self.len -= 1;
        if prune {
            self.prune(topic.as_str());
        }
        Some(message)
    }

    /// Detaches the longest chain at the end of `topic`'s path that holds
    /// nothing but that chain (the last node is known to be empty).
    fn prune(&mut self, topic: &str) {
        let depth = topic.split('/').count();
        // 1-based depth of the topmost node to detach.
        let mut cut = 1;
        let mut node = &self.root;
        for (j, level) in topic.split('/').enumerate() {
            let j = j + 1;
            node = match node.children.get(level.as_bytes()) {
                Some(next) => next,
                None => return,
            };
            if j < depth && (node.message.is_some() || node.children.len() != 1) {
                cut = j + 1;
            }
        }
        let mut levels = topic.split('/');
        let mut parent = &mut self.root;
        for level in levels.by_ref().take(cut - 1) {
            parent = match parent.children.get_mut(level.as_bytes()) {
                Some(next) => next,
                None => return,
            };
        }
        let Some(edge) = levels.next() else { return };
        if let Some(detached) = parent.children.remove(edge.as_bytes()) {
            dismantle(detached);
        }
    }

    /// The retained message of `topic`.
    pub fn get(&self, topic: &TopicName) -> Option<&M> {
        let mut node = &self.root;
        for level in topic.as_str().split('/') {
            node = node.children.get(level.as_bytes())?;
        }
        node.message.as_ref().map(|entry| &entry.1)
    }

    /// Calls `f` for every retained message whose topic matches the topic
    /// filter `pattern` (a filter without any `$share/{group}/` prefix:
    /// pass `TopicFilter::pattern()`). Order is unspecified.
    pub fn for_each_match(&self, pattern: &str, mut f: impl FnMut(&TopicName, &M)) {
        let filter = pattern.as_bytes();
        let mut stack: Vec<Step<'_, M>> = vec![Step::Walk(&self.root, 0)];
        while let Some(step) = stack.pop() {
            let (node, pos) = match step {
                Step::All(node) => {
                    node.emit(&mut f);
                    node.children
                        .for_each(|_, child| stack.push(Step::All(child)));
                    continue;
                }
                Step::Walk(node, pos) => (node, pos),
            };
            if pos == END {
                node.emit(&mut f);
                continue;
            }
            // [MQTT-4.7.2-1]: a wildcard first level skips `$` topics.
            let at_root = pos == 0;
            let visible = |label: &[u8]| !(at_root && label.first() == Some(&b'$'));
            let (level, next) = next_level(filter, pos);
            match level {
                b"#" => {
                    // `#` matches the parent level too [MQTT-4.7.1-2].
                    node.emit(&mut f);
                    node.children.for_each(|label, child| {
                        if visible(label) {
                            stack.push(Step::All(child));
                        }
                    });
                }
                b"+" => node.children.for_each(|label, child| {
                    if visible(label) {
                        stack.push(Step::Walk(child, next));
                    }
                }),
                _ => {
                    if let Some(child) = node.children.get(level) {
                        stack.push(Step::Walk(child, next));
                    }
                }
            }
        }
    }

    /// The number of tree nodes below the root. For tests and diagnostics;
    /// walks the whole tree.
    pub fn node_count(&self) -> usize {
        let mut count = 0;
        let mut stack = vec![&self.root];
        while let Some(node) = stack.pop() {
            count += node.children.len();
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

    fn t(text: &str) -> TopicName {
        TopicName::try_from(text).unwrap()
    }

    fn store_with(topics: &[&str]) -> RetainedStore<usize> {
        let mut store = RetainedStore::new();
        for (i, topic) in topics.iter().enumerate() {
            assert_eq!(store.insert(&t(topic), i), None);
        }
        store
    }

    /// The sorted topics that `pattern` selects.
    fn matching(store: &RetainedStore<usize>, pattern: &str) -> Vec<String> {
        let mut out = Vec::new();
        store.for_each_match(pattern, |topic, &i| {
            assert_eq!(store.get(topic), Some(&i));
            out.push(topic.as_str().to_owned());
        });
        out.sort();
        out
    }

    /// A new retained message replaces the one stored for that topic
    /// [MQTT-3.3.1-5]; `remove` returns it and `get` finds what is stored.
    #[test]
    fn insert_replaces_and_remove_returns() {
        let mut store = RetainedStore::new();
        assert!(store.is_empty());
        assert_eq!(store.insert(&t("a/b"), "one"), None);
        assert_eq!(store.insert(&t("a/b"), "two"), Some("one"));
        assert_eq!(store.len(), 1);
        assert_eq!(store.get(&t("a/b")), Some(&"two"));
        assert_eq!(store.get(&t("a")), None);
        assert_eq!(store.remove(&t("a")), None);
        assert_eq!(store.remove(&t("a/b")), Some("two"));
        assert_eq!(store.remove(&t("a/b")), None);
        assert!(store.is_empty());
    }

    /// `max_retained_messages`: at the limit a new topic is refused, while
    /// replacing or clearing a stored one still works and frees room; 0
    /// means no limit.
    #[test]
    fn admits_new_topics_only_below_the_limit() {
        let mut store = store_with(&["a", "b"]);
        assert!(!store.admits(&t("c"), 2), "a new topic at the limit");
        assert!(store.admits(&t("a"), 2), "replacing at the limit");
        assert!(store.admits(&t("c"), 3));
        assert!(store.admits(&t("c"), 0), "0 is no limit");
        // Over the limit (replicas applying what other cores stored):
        // still no new topic, still replacements.
        assert!(!store.admits(&t("c"), 1));
        assert!(store.admits(&t("b"), 1));
        // Neither a prefix nor an extension of a stored topic is stored.
        assert!(!store.admits(&t("a/b"), 2));
        store.insert(&t("x/y"), 9);
        assert!(!store.admits(&t("x"), 3));
        assert_eq!(store.remove(&t("a")), Some(0));
        assert!(!store.admits(&t("c"), 2));
        assert_eq!(store.remove(&t("b")), Some(1));
        assert!(store.admits(&t("c"), 2), "clearing frees room");
    }

    /// Without wildcards a filter selects exactly its own topic.
    #[test]
    fn exact_filter() {
        let store = store_with(&["a/b", "a/b/c", "a", "A/b"]);
        assert_eq!(matching(&store, "a/b"), ["a/b"]);
        assert_eq!(matching(&store, "a"), ["a"]);
        assert!(matching(&store, "a/x").is_empty());
    }

    /// `+` is exactly one level, possibly empty ([MQTT-4.7.1-3] in 3.1.1
    /// numbering; §4.7.1.3 examples).
    #[test]
    fn plus_is_one_level() {
        let store = store_with(&[
            "sport",
            "sport/",
            "sport/tennis",
            "sport/tennis/x",
            "/finance",
        ]);
        assert_eq!(matching(&store, "sport/+"), ["sport/", "sport/tennis"]);
        assert_eq!(matching(&store, "+"), ["sport"]);
        assert_eq!(
            matching(&store, "+/+"),
            ["/finance", "sport/", "sport/tennis"]
        );
        assert_eq!(matching(&store, "/+"), ["/finance"]);
        assert_eq!(matching(&store, "+/tennis/+"), ["sport/tennis/x"]);
    }

    /// `#` selects the parent level and everything below it
    /// ([MQTT-4.7.1-2] in 3.1.1 numbering).
    #[test]
    fn hash_selects_parent_and_subtree() {
        let store = store_with(&["sport", "sport/", "sport/tennis/player1", "sports", "x"]);
        assert_eq!(
            matching(&store, "sport/#"),
            ["sport", "sport/", "sport/tennis/player1"]
        );
        assert_eq!(matching(&store, "#").len(), 5);
        assert_eq!(matching(&store, "sport/tennis/#"), ["sport/tennis/player1"]);
        assert_eq!(matching(&store, "+/#").len(), 5);
    }

    /// A retained `$SYS/...` message is not returned for a filter whose
    /// first level is a wildcard [MQTT-4.7.2-1], but is for `$SYS/#`.
    #[test]
    fn dollar_topics_need_an_explicit_first_level() {
        let store = store_with(&["$SYS/x", "$SYS", "a/$b", "a"]);
        assert_eq!(matching(&store, "#"), ["a", "a/$b"]);
        assert_eq!(matching(&store, "+/x"), Vec::<String>::new());
        assert_eq!(matching(&store, "+"), ["a"]);
        assert_eq!(matching(&store, "$SYS/#"), ["$SYS", "$SYS/x"]);
        assert_eq!(matching(&store, "$SYS/+"), ["$SYS/x"]);
        assert_eq!(matching(&store, "a/+"), ["a/$b"]);
    }

    /// Empty levels are levels: "a//b", "/a", "a/" are separate topics.
    #[test]
    fn empty_levels_are_significant() {
        let store = store_with(&["a//b", "/a", "a/", "a/b", "/"]);
        assert_eq!(matching(&store, "a//b"), ["a//b"]);
        assert_eq!(matching(&store, "a/+/b"), ["a//b"]);
        assert_eq!(matching(&store, "+/a"), ["/a"]);
        assert_eq!(matching(&store, "a/+"), ["a/", "a/b"]);
        assert_eq!(matching(&store, "+/+"), ["/", "/a", "a/", "a/b"]);
    }

    /// Removing every message frees every node; removing one keeps the
    /// branches other messages need.
    #[test]
    fn remove_prunes() {
        let mut store = store_with(&["keep"]);
        let start = store.node_count();
        let topics = ["keep/a/b/c", "keep/a", "x/y/z", "x//", "/"];
        for topic in topics {
            store.insert(&t(topic), 0);
        }
        assert_eq!(store.remove(&t("keep/a/b")), None);
        for topic in topics {
            assert_eq!(store.remove(&t(topic)), Some(0));
        }
        assert_eq!(store.node_count(), start);
        assert_eq!(matching(&store, "#"), ["keep"]);

        let mut store = store_with(&["a/b/c/d", "a/b", "a/x/y"]);
        assert_eq!(store.node_count(), 6);
        store.remove(&t("a/b/c/d"));
        assert_eq!(store.node_count(), 4);
        store.remove(&t("a/b"));
        assert_eq!(store.node_count(), 3);
        assert_eq!(matching(&store, "#"), ["a/x/y"]);
    }

    /// A 30,000-level topic can be stored, found, removed and dropped on a
    /// test thread's stack.
    #[test]
    fn very_deep_topics_do_not_overflow_the_stack() {
        let deep = vec!["a"; 30_000].join("/");
        let mut store = RetainedStore::new();
        store.insert(&t(&deep), 1);
        store.insert(&t(&format!("{deep}/b")), 2);
        let mut seen = Vec::new();
        store.for_each_match("#", |_, &m| seen.push(m));
        seen.sort();
        assert_eq!(seen, [1, 2]);
        assert_eq!(store.remove(&t(&format!("{deep}/b"))), Some(2));
        assert_eq!(store.node_count(), 30_000);
        drop(store);
    }

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

    fn topic_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(vec!["a", "b", "", "$x", "ab"]), 1..5)
            .prop_map(|l| l.join("/"))
            .prop_filter("non-empty", |t| !t.is_empty())
    }

    fn filter_strategy() -> impl Strategy<Value = String> {
        let level = prop::sample::select(vec!["a", "b", "", "$x", "+"]);
        (prop::collection::vec(level, 0..5), any::<bool>())
            .prop_map(|(mut levels, hash)| {
                if hash || levels.is_empty() {
                    levels.push("#");
                }
                levels.join("/")
            })
            .prop_filter("non-empty", |f| !f.is_empty())
    }

    proptest! {
        /// After random stores and deletes, `for_each_match` yields exactly
        /// the stored topics the reference matcher selects, each once, and
        /// deleting everything frees every node.
        #[test]
        fn store_agrees_with_reference(
            ops in prop::collection::vec((topic_strategy(), any::<bool>(), any::<u8>()), 0..40),
            filters in prop::collection::vec(filter_strategy(), 1..8),
        ) {
            let mut store = RetainedStore::new();
            let mut model = BTreeMap::new();
            for (topic, insert, value) in &ops {
                if *insert {
                    prop_assert_eq!(store.insert(&t(topic), *value), model.insert(topic.clone(), *value));
                } else {
                    prop_assert_eq!(store.remove(&t(topic)), model.remove(topic));
                }
                prop_assert_eq!(store.len(), model.len());
            }
            for filter in &filters {
                let mut got = Vec::new();
                store.for_each_match(filter, |topic, &v| got.push((topic.as_str().to_owned(), v)));
                got.sort();
                let want: Vec<(String, u8)> = model
                    .iter()
                    .filter(|(topic, _)| reference_matches(filter, topic))
                    .map(|(topic, v)| (topic.clone(), *v))
                    .collect();
                prop_assert_eq!(got, want, "filter {}", filter);
            }
            for topic in model.keys() {
                prop_assert!(store.remove(&t(topic)).is_some());
            }
            prop_assert!(store.is_empty());
            prop_assert_eq!(store.node_count(), 0);
        }
    }
}
