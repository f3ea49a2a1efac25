//! The literal children of a tree node, keyed by topic level, and what
//! the two topic trees (the subscription index and the retained store)
//! share: labels stored inline, splitting a topic into levels, and teardown
//! of a tree of any depth with bounded stack.
//!
//! Owns: the children's layout (an exact-size slice for a few, an ahash map
//! for many). Does not own: what a node holds (`trie.rs`, `retained.rs`).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::mem;

use ahash::RandomState;
use smallvec::SmallVec;

/// A child vector grows into a hash map beyond this many entries.
pub(crate) const FEW_CHILDREN: usize = 8;
/// A child map falls back to a vector at or below this many entries.
const MANY_TO_FEW: usize = 4;
/// Teardown recurses at most this deep before deferring to an explicit list.
const DISMANTLE_DEPTH: u32 = 32;
/// "No level left" position marker in walks.
pub(crate) const END: usize = usize::MAX;

/// One topic level as stored in the trie: inline up to 16 bytes.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Label(SmallVec<[u8; 16]>);

impl Label {
    pub(crate) fn new(bytes: &[u8]) -> Self {
        Label(SmallVec::from_slice(bytes))
    }

    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Hash for Label {
    // Must hash exactly like the `[u8]` it borrows as.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

impl Borrow<[u8]> for Label {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

/// The literal children of a node, keyed by level.
pub(crate) enum Children<N> {
    /// Exactly as long as needed (most nodes have one child); 16 bytes
    /// where a `Vec` would take 24.
    Few(Box<[(Label, N)]>),
    // Boxed on purpose: an inline map (with its hasher state) would make
    // every node, most of which have a handful of children, 40 bytes larger.
    #[allow(clippy::box_collection)]
    Many(Box<HashMap<Label, N, RandomState>>),
}

impl<N> Default for Children<N> {
    fn default() -> Self {
        Children::Few(Box::default())
    }
}

impl<N> Children<N> {
    pub(crate) fn len(&self) -> usize {
        match self {
            Children::Few(v) => v.len(),
            Children::Many(m) => m.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    pub(crate) fn get(&self, level: &[u8]) -> Option<&N> {
        match self {
            Children::Few(v) => v
                .iter()
                .find(|(l, _)| l.as_bytes() == level)
                .map(|(_, n)| n),
            Children::Many(m) => m.get(level),
        }
    }

    pub(crate) fn get_mut(&mut self, level: &[u8]) -> Option<&mut N> {
        match self {
            Children::Few(v) => v
                .iter_mut()
                .find(|(l, _)| l.as_bytes() == level)
                .map(|(_, n)| n),
            Children::Many(m) => m.get_mut(level),
        }
    }

    pub(crate) fn get_or_insert_with(&mut self, level: &[u8], make: impl FnOnce() -> N) -> &mut N {
        let mut make = Some(make);
        let mut make = move || (make.take().expect("called once"))();
        if let Children::Few(few) = self {
            if !few.iter().any(|(l, _)| l.as_bytes() == level) {
                let mut v = mem::take(few).into_vec();
                if v.len() >= FEW_CHILDREN {
                    let mut map =
                        HashMap::with_capacity_and_hasher(v.len() * 2, RandomState::new());
                    map.extend(v);
                    *self = Children::Many(Box::new(map));
                } else {
                    // Exact growth: most nodes have one child. The new
                    // child goes first, where the lookup below finds it.
                    v.reserve_exact(1);
                    v.insert(0, (Label::new(level), make()));
                    *few = v.into_boxed_slice();
                }
            }
        }
        match self {
            Children::Few(few) => {
                let i = few
                    .iter()
                    .position(|(l, _)| l.as_bytes() == level)
                    .expect("present");
                &mut few[i].1
            }
            Children::Many(m) => m.entry(Label::new(level)).or_insert_with(make),
        }
    }

    /// Removes a child, giving memory back as the set shrinks.
    pub(crate) fn remove(&mut self, level: &[u8]) -> Option<N> {
        match self {
            Children::Few(few) => {
                let i = few.iter().position(|(l, _)| l.as_bytes() == level)?;
                let mut v = mem::take(few).into_vec();
                let (_, node) = v.swap_remove(i);
                *few = v.into_boxed_slice();
                Some(node)
            }
            Children::Many(m) => {
                let node = m.remove(level)?;
                if m.len() <= MANY_TO_FEW {
                    let few: Box<[(Label, N)]> = m.drain().collect();
                    *self = Children::Few(few);
                } else if m.capacity() > 4 * m.len() {
                    m.shrink_to_fit();
                }
                Some(node)
            }
        }
    }

    pub(crate) fn for_each<'a>(&'a self, mut f: impl FnMut(&'a [u8], &'a N)) {
        match self {
            Children::Few(v) => v.iter().for_each(|(l, n)| f(l.as_bytes(), n)),
            Children::Many(m) => m.iter().for_each(|(l, n)| f(l.as_bytes(), n)),
        }
    }

    pub(crate) fn into_each(self, f: &mut dyn FnMut(N)) {
        match self {
            Children::Few(v) => v.into_vec().into_iter().for_each(|(_, n)| f(n)),
            Children::Many(m) => m.into_iter().for_each(|(_, n)| f(n)),
        }
    }
}

/// A tree node that can hand over its children by value, so that a tree
/// of any depth can be dropped without deep recursion.
pub(crate) trait Dismantle: Sized {
    /// Consumes the node, passing each child to `f`.
    fn into_children(self, f: &mut dyn FnMut(Self));
}

/// Drops a subtree with bounded stack use: plain recursion down to
/// [`DISMANTLE_DEPTH`], then the remaining subtrees are parked in a list
/// and dismantled from there.
pub(crate) fn dismantle<N: Dismantle>(node: N) {
    fn at<N: Dismantle>(node: N, depth: u32, deferred: &mut Vec<N>) {
        if depth == DISMANTLE_DEPTH {
            deferred.push(node);
        } else {
            node.into_children(&mut |child| at(child, depth + 1, deferred));
        }
    }
    let mut deferred = Vec::new();
    at(node, 0, &mut deferred);
    while let Some(node) = deferred.pop() {
        at(node, 0, &mut deferred);
    }
}

/// Splits a topic (or filter) at byte offset `pos` into the level starting
/// there and the offset of the next level ([`END`] if none).
#[inline]
pub(crate) fn next_level(text: &[u8], pos: usize) -> (&[u8], usize) {
    let rest = &text[pos..];
    match rest.iter().position(|&b| b == b'/') {
        Some(i) => (&rest[..i], pos + i + 1),
        None => (rest, END),
    }
}
