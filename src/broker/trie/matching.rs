//! Answering "who wants this topic?": the walk that
//! [`SubscriptionTrie::match_topic`] takes for every PUBLISH.
//!
//! Owns: MQTT topic-filter matching (`+` matches one level, `#` the rest
//! and the parent level, empty levels are levels, and no leading wildcard
//! matches a `$` topic, [MQTT-4.7.2-1]) as an iterative walk with a small
//! inline stack, reporting plain subscribers and shared groups. Does not
//! own: building or pruning the trie (`trie.rs`), or picking a member of a
//! matched shared group (`trie/shared.rs`, called by the caller).

use std::hash::Hash;

use smallvec::SmallVec;

use super::node::Node;
use super::{next_level, SharedGroup, SubscriptionTrie, END};

impl<K: Copy + Eq + Hash, V> SubscriptionTrie<K, V> {
    /// Calls `visit` once per non-shared subscription whose filter matches
    /// `topic` (a key with two matching filters is visited twice), and
    /// `visit_shared` once per matching shared group. Order is unspecified.
    /// Does not allocate for topics of up to 16 levels.
    pub fn match_topic(
        &self,
        topic: &str,
        mut visit: impl FnMut(K, &V),
        mut visit_shared: impl FnMut(&str, &SharedGroup<K, V>),
    ) {
        let bytes = topic.as_bytes();
        // [MQTT-4.7.2-1]: no wildcard first level for `$` topics.
        let system = bytes.first() == Some(&b'$');
        let mut pending: SmallVec<[(&Node<K, V>, usize); 16]> = SmallVec::new();
        let mut node = &self.root;
        let mut pos = 0;
        loop {
            if pos == END {
                node.subs.visit(&mut visit, &mut visit_shared);
                // `#` also matches the parent level.
                if let Some(leaf) = node.hash() {
                    leaf.visit(&mut visit, &mut visit_shared);
                }
            } else {
                let (level, next) = next_level(bytes, pos);
                if let (Some(wild), true) = (&node.wild, pos != 0 || !system) {
                    if let Some(leaf) = &wild.hash {
                        leaf.visit(&mut visit, &mut visit_shared);
                    }
                    if let Some(plus) = &wild.plus {
                        pending.push((plus, next));
                    }
                }
                if let Some(child) = node.children.get(level) {
                    node = child;
                    pos = next;
                    continue;
                }
            }
            match pending.pop() {
                Some((n, p)) => {
                    node = n;
                    pos = p;
                }
                None => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{f, keys, plain_matches, trie_with, Trie};

    /// Filters without wildcards match only the identical topic name;
    /// matching is case sensitive (§4.7.3).
    #[test]
    fn exact_filter_matches_only_the_same_topic() {
        let trie = trie_with(&["a/b/c", "a/b", "A/b/c"]);
        assert_eq!(keys(&trie, "a/b/c"), [0]);
        assert_eq!(keys(&trie, "a/b"), [1]);
        assert_eq!(keys(&trie, "A/b/c"), [2]);
        assert!(keys(&trie, "a/b/c/d").is_empty());
        assert!(keys(&trie, "a").is_empty());
        assert!(keys(&trie, "x").is_empty());
    }

    /// `+` matches exactly one level, which may be empty: "sport/+" matches
    /// "sport/" but not "sport" or "sport/a/b" ([MQTT-4.7.1-3] in 3.1.1
    /// numbering, §4.7.1.3 examples).
    #[test]
    fn plus_matches_exactly_one_level() {
        let trie = trie_with(&["sport/+", "+/+", "+", "sport/+/player1"]);
        assert_eq!(keys(&trie, "sport/tennis"), [0, 1]);
        assert_eq!(keys(&trie, "sport/"), [0, 1]);
        assert_eq!(keys(&trie, "sport"), [2]);
        assert!(keys(&trie, "sport/tennis/x").is_empty());
        assert_eq!(keys(&trie, "sport/tennis/player1"), [3]);
        assert_eq!(keys(&trie, "sport//player1"), [3]);
        // "/finance" has two levels, the first empty.
        assert_eq!(keys(&trie, "/finance"), [1]);
    }

    /// `#` matches any number of levels, including the parent level:
    /// "sport/tennis/player1/#" matches "sport/tennis/player1" and
    /// "sport/#" matches "sport" ([MQTT-4.7.1-2] in 3.1.1 numbering); "#"
    /// alone matches every topic.
    #[test]
    fn hash_matches_children_and_parent() {
        let trie = trie_with(&["sport/tennis/player1/#", "sport/#", "#", "sport/+/#"]);
        assert_eq!(keys(&trie, "sport/tennis/player1"), [0, 1, 2, 3]);
        assert_eq!(keys(&trie, "sport/tennis/player1/ranking"), [0, 1, 2, 3]);
        assert_eq!(
            keys(&trie, "sport/tennis/player1/score/wimbledon"),
            [0, 1, 2, 3]
        );
        assert_eq!(keys(&trie, "sport"), [1, 2]);
        assert_eq!(keys(&trie, "sport/tennis"), [1, 2, 3]);
        assert_eq!(keys(&trie, "sport/"), [1, 2, 3]);
        assert_eq!(keys(&trie, "sports"), [2]);
        assert_eq!(keys(&trie, "x/y/z"), [2]);
    }

    /// Topics beginning with `$` are not matched by a filter whose first
    /// level is `#` or `+` [MQTT-4.7.2-1]; filters naming the `$` level
    /// match them, and `$` further down is an ordinary character.
    #[test]
    fn dollar_topics_are_not_matched_by_leading_wildcards() {
        let trie = trie_with(&[
            "#",
            "+/monitor/Clients",
            "$SYS/#",
            "$SYS/monitor/+",
            "a/+",
            "a/#",
        ]);
        assert_eq!(keys(&trie, "$SYS/monitor/Clients"), [2, 3]);
        assert_eq!(keys(&trie, "$SYS"), [2]);
        assert!(keys(&trie, "$other/x").is_empty());
        assert_eq!(keys(&trie, "x/monitor/Clients"), [0, 1]);
        assert_eq!(keys(&trie, "a/$b"), [0, 4, 5]);
    }

    /// Empty levels are levels: "a//b", "/a" and "a/" are distinct topics
    /// (§4.7.1.3: "/finance" is two levels, the first empty).
    #[test]
    fn empty_levels_are_significant() {
        let trie = trie_with(&["a//b", "/a", "a/", "a/b", "/", "a/+/b", "+/a"]);
        assert_eq!(keys(&trie, "a//b"), [0, 5]);
        assert_eq!(keys(&trie, "/a"), [1, 6]);
        assert_eq!(keys(&trie, "a/"), [2]);
        assert_eq!(keys(&trie, "a/b"), [3]);
        assert_eq!(keys(&trie, "/"), [4]);
        assert!(keys(&trie, "a").is_empty());
        assert!(keys(&trie, "a/b/").is_empty());
    }

    /// A shared subscription `$share/{ShareName}/{filter}` matches like its
    /// filter (§4.8.2); the group is reported once per matching filter and
    /// the caller picks one member per message. A client may hold a plain
    /// subscription to the same filter alongside.
    #[test]
    fn shared_groups_are_matched_and_round_robin() {
        let mut trie = Trie::new();
        trie.insert(&f("$share/g/a/+"), 1, "s1");
        trie.insert(&f("$share/g/a/+"), 2, "s2");
        trie.insert(&f("$share/g/a/+"), 3, "s3");
        trie.insert(&f("$share/h/a/#"), 4, "h4");
        trie.insert(&f("a/+"), 1, "plain");
        assert_eq!(trie.len(), 5);
        assert_eq!(trie.get(&f("$share/g/a/+"), 1), Some(&"s1"));
        assert_eq!(trie.get(&f("a/+"), 1), Some(&"plain"));
        assert_eq!(trie.get(&f("$share/h/a/+"), 1), None);

        let mut groups = Vec::new();
        let mut picks = Vec::new();
        for _ in 0..4 {
            groups.clear();
            trie.match_topic(
                "a/x",
                |_, _| {},
                |name, group| {
                    groups.push((
                        name.to_owned(),
                        group.members().iter().map(|m| m.0).collect::<Vec<_>>(),
                    ));
                    if name == "g" {
                        picks.push(group.next_member().unwrap().0);
                    }
                },
            );
            groups.sort();
        }
        assert_eq!(
            groups,
            [("g".to_owned(), vec![1, 2, 3]), ("h".to_owned(), vec![4])]
        );
        assert_eq!(picks, [1, 2, 3, 1]);
        assert_eq!(plain_matches(&trie, "a/x"), [(1, "plain")]);

        // Removing a member that the cursor already passed keeps the turn
        // on the member that was due next (3, then 1 again).
        assert_eq!(trie.remove(&f("$share/g/a/+"), 2), Some("s2"));
        let mut next = Vec::new();
        for _ in 0..3 {
            trie.match_topic(
                "a/y",
                |_, _| {},
                |name, group| {
                    if name == "g" {
                        next.push(group.next_member().unwrap().0);
                    }
                },
            );
        }
        assert_eq!(next, [3, 1, 3]);
        // A shared `#` group also matches the parent level.
        let mut seen = Vec::new();
        trie.match_topic("a", |_, _| {}, |name, _| seen.push(name.to_owned()));
        assert_eq!(seen, ["h"]);
    }

    /// The same share name on two different filters forms two groups; a
    /// topic matching both reports each.
    #[test]
    fn same_group_name_on_two_filters_is_two_groups() {
        let mut trie = Trie::new();
        trie.insert(&f("$share/g/a/+"), 1, "plus");
        trie.insert(&f("$share/g/a/b"), 2, "exact");
        let mut seen = Vec::new();
        trie.match_topic(
            "a/b",
            |_, _| panic!("no plain subscriptions"),
            |name, group| seen.push((name.to_owned(), group.members()[0].1)),
        );
        seen.sort();
        assert_eq!(seen, [("g".to_owned(), "exact"), ("g".to_owned(), "plus")]);
        let group = {
            let mut size = 0;
            trie.match_topic("a/c", |_, _| {}, |_, g| size = g.len());
            size
        };
        assert_eq!(group, 1);
    }
}
