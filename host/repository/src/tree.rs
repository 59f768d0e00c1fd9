//! Trees: the sorted listing of one collector task's items, as a content-defined B-tree
//! ("prolly tree") of canonical-JSON nodes.
//!
//! Leaves hold entries sorted by `(kind, id)`; inner nodes hold, per child, its first key, its
//! tree id and its entry count. A node ends after an entry whose keyed boundary hash hits
//! (within a minimum and maximum size), so boundaries depend only on the keys near them: an
//! incremental snapshot rewrites just the nodes on the paths to changed entries and reuses every
//! other node by id.

use serde::{Deserialize, Serialize};

use crate::canonical::to_canonical_vec;
use crate::error::{Error, Result};
use crate::id::{Id, IdKey};

/// A binary part of an item (MIME body, attachment, file) as a list of chunks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PartRef {
    /// The part's name within the item (`mime`, `attachment/3`, …).
    pub name: String,
    /// Total size in bytes.
    pub size: u64,
    /// Chunk blob ids, in order.
    pub chunks: Vec<Id>,
}

/// The stream of chunks of one binary content, without a name (what the chunker returns).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContentRef {
    /// Total size in bytes.
    pub size: u64,
    /// Chunk blob ids, in order.
    pub chunks: Vec<Id>,
}

impl ContentRef {
    /// Name it as a part of an item.
    pub fn named(self, name: impl Into<String>) -> PartRef {
        PartRef {
            name: name.into(),
            size: self.size,
            chunks: self.chunks,
        }
    }
}

/// One item in a task tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Item kind (`user`, `group`, `message`, …).
    pub kind: String,
    /// Item id (stable id from the source).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Blob id of the item's canonical JSON body.
    pub body: Id,
    /// Binary parts, if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<PartRef>,
}

impl Entry {
    /// The sort key.
    pub fn key(&self) -> (&str, &str) {
        (&self.kind, &self.id)
    }

    /// The content id: the body id when there are no parts, else the keyed hash of the
    /// canonical `{body, parts}`. Equal content ids ⇔ equal content.
    pub fn content_id(&self, key: &IdKey) -> Id {
        if self.parts.is_empty() {
            return self.body;
        }
        #[derive(Serialize)]
        struct C<'a> {
            body: &'a Id,
            parts: &'a [PartRef],
        }
        let bytes = to_canonical_vec(&C {
            body: &self.body,
            parts: &self.parts,
        })
        .expect("serialises");
        key.hash(&bytes)
    }

    /// Every blob this entry needs (body and chunks).
    pub fn blobs(&self) -> impl Iterator<Item = Id> + '_ {
        std::iter::once(self.body).chain(self.parts.iter().flat_map(|p| p.chunks.iter().copied()))
    }
}

/// A child reference in an inner node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Child {
    /// First key's kind.
    pub kind: String,
    /// First key's id.
    pub id: String,
    /// The child node.
    pub tree: Id,
    /// Entries below it.
    pub count: u64,
}

/// A stored tree node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// 0 for leaves.
    pub level: u32,
    /// Leaf entries (level 0).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<Entry>,
    /// Children (level > 0).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Child>,
}

impl Node {
    /// Canonical bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        to_canonical_vec(self).expect("tree node serialises")
    }

    /// Parse.
    pub fn from_bytes(b: &[u8]) -> std::result::Result<Node, serde_json::Error> {
        serde_json::from_slice(b)
    }
}

/// Node size parameters (part of format version 1; not configurable per repository).
const LEAF_MIN: usize = 4;
const LEAF_AVG: u32 = 8;
const LEAF_MAX: usize = 64;
const INNER_MIN: usize = 4;
const INNER_AVG: u32 = 32;
const INNER_MAX: usize = 256;

fn cut_after(key: &IdKey, level: u32, len: usize, kind: &str, id: &str) -> bool {
    let (min, avg, max) = if level == 0 {
        (LEAF_MIN, LEAF_AVG, LEAF_MAX)
    } else {
        (INNER_MIN, INNER_AVG, INNER_MAX)
    };
    if len >= max {
        return true;
    }
    len >= min && key.boundary_hash(level, kind, id).is_multiple_of(avg)
}

/// Build a tree from entries sorted by key (no duplicates), storing each node through `store`
/// (which returns the node's id). Returns the root id and the entry count.
pub fn build_tree<'a, I, S>(key: &IdKey, entries: I, mut store: S) -> Result<(Id, u64)>
where
    I: IntoIterator<Item = &'a Entry>,
    S: FnMut(Vec<u8>) -> Result<Id>,
{
    let mut level_children: Vec<Child> = Vec::new();
    let mut leaf: Vec<Entry> = Vec::new();
    let mut total = 0u64;
    let emit_leaf = |leaf: &mut Vec<Entry>, out: &mut Vec<Child>, store: &mut S| -> Result<()> {
        let node = Node {
            level: 0,
            entries: std::mem::take(leaf),
            children: Vec::new(),
        };
        let first = node.entries.first().map(|e| (e.kind.clone(), e.id.clone()));
        let count = node.entries.len() as u64;
        let id = store(node.to_bytes())?;
        let (kind, eid) = first.unwrap_or_default();
        out.push(Child {
            kind,
            id: eid,
            tree: id,
            count,
        });
        Ok(())
    };
    for e in entries {
        total += 1;
        leaf.push(e.clone());
        if cut_after(key, 0, leaf.len(), &e.kind, &e.id) {
            emit_leaf(&mut leaf, &mut level_children, &mut store)?;
        }
    }
    if !leaf.is_empty() || level_children.is_empty() {
        emit_leaf(&mut leaf, &mut level_children, &mut store)?;
    }
    let mut level = 1;
    while level_children.len() > 1 {
        let mut next: Vec<Child> = Vec::new();
        let mut node: Vec<Child> = Vec::new();
        let emit = |node: &mut Vec<Child>, next: &mut Vec<Child>, store: &mut S| -> Result<()> {
            let children = std::mem::take(node);
            let count = children.iter().map(|c| c.count).sum();
            let (kind, id) = (children[0].kind.clone(), children[0].id.clone());
            let n = Node {
                level,
                entries: Vec::new(),
                children,
            };
            let tree = store(n.to_bytes())?;
            next.push(Child {
                kind,
                id,
                tree,
                count,
            });
            Ok(())
        };
        for c in level_children {
            let (k, i) = (c.kind.clone(), c.id.clone());
            node.push(c);
            if cut_after(key, level, node.len(), &k, &i) {
                emit(&mut node, &mut next, &mut store)?;
            }
        }
        if !node.is_empty() {
            emit(&mut node, &mut next, &mut store)?;
        }
        level_children = next;
        level += 1;
    }
    Ok((level_children[0].tree, total))
}

/// Visit every entry of the tree under `root` in key order. `load` reads a node blob.
pub fn walk_entries<L, F>(root: Id, load: &L, visit: &mut F) -> Result<()>
where
    L: Fn(Id) -> Result<Node>,
    F: FnMut(Entry) -> Result<()>,
{
    let node = load(root)?;
    if node.level == 0 {
        for e in node.entries {
            visit(e)?;
        }
    } else {
        for c in node.children {
            walk_entries(c.tree, load, visit)?;
        }
    }
    Ok(())
}

/// Visit every node id under `root` (root included), skipping subtrees for which `enter`
/// returns false.
pub fn walk_nodes<L, F>(root: Id, load: &L, enter: &mut F) -> Result<()>
where
    L: Fn(Id) -> Result<Node>,
    F: FnMut(Id, &Node) -> bool,
{
    let node = load(root)?;
    if !enter(root, &node) {
        return Ok(());
    }
    for c in &node.children {
        walk_nodes(c.tree, load, enter)?;
    }
    Ok(())
}

/// Find one entry by key, reading only the nodes on its path.
pub fn find_entry<L>(root: Id, load: &L, kind: &str, id: &str) -> Result<Option<Entry>>
where
    L: Fn(Id) -> Result<Node>,
{
    let mut node = load(root)?;
    loop {
        if node.level == 0 {
            return Ok(node
                .entries
                .into_iter()
                .find(|e| e.kind == kind && e.id == id));
        }
        let target = (kind, id);
        let idx = node
            .children
            .partition_point(|c| (c.kind.as_str(), c.id.as_str()) <= target);
        if idx == 0 {
            return Ok(None);
        }
        let child = node.children[idx - 1].tree;
        node = load(child)?;
    }
}

pub(crate) fn corrupt_node(id: Id, e: impl std::fmt::Display) -> Error {
    Error::Corrupt {
        key: format!("tree node {id}"),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    fn entry(key: &IdKey, i: u32, v: u32) -> Entry {
        Entry {
            kind: "user".into(),
            id: format!("{i:08}"),
            name: format!("User {i}"),
            body: key.hash(format!("{i}-{v}").as_bytes()),
            parts: vec![],
        }
    }

    #[test]
    fn build_walk_find_and_reuse() {
        let key = IdKey::from_bytes([3; 32]);
        let store: RefCell<HashMap<Id, Vec<u8>>> = RefCell::new(HashMap::new());
        let put = |b: Vec<u8>| -> Result<Id> {
            let id = key.hash(&b);
            store.borrow_mut().insert(id, b);
            Ok(id)
        };
        let entries: Vec<Entry> = (0..5000).map(|i| entry(&key, i, 0)).collect();
        let (root, count) = build_tree(&key, &entries, put).unwrap();
        assert_eq!(count, 5000);
        let nodes_before = store.borrow().len();
        let load = |id: Id| -> Result<Node> {
            Ok(Node::from_bytes(store.borrow().get(&id).unwrap()).unwrap())
        };
        let mut seen = Vec::new();
        walk_entries(root, &load, &mut |e| {
            seen.push(e);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, entries);
        assert_eq!(
            find_entry(root, &load, "user", "00001234")
                .unwrap()
                .unwrap(),
            entries[1234]
        );
        assert!(find_entry(root, &load, "user", "x").unwrap().is_none());
        assert!(find_entry(root, &load, "group", "00000001")
            .unwrap()
            .is_none());

        // Change one entry: only a handful of new nodes.
        let mut changed = entries.clone();
        changed[2500] = entry(&key, 2500, 1);
        let put2 = |b: Vec<u8>| -> Result<Id> {
            let id = key.hash(&b);
            store.borrow_mut().insert(id, b);
            Ok(id)
        };
        let (root2, _) = build_tree(&key, &changed, put2).unwrap();
        assert_ne!(root, root2);
        let new_nodes = store.borrow().len() - nodes_before;
        assert!(new_nodes <= 5, "one change rewrote {new_nodes} nodes");
        // An empty tree is a valid (empty leaf) tree.
        let put3 = |b: Vec<u8>| -> Result<Id> { Ok(key.hash(&b)) };
        let (_, n) = build_tree(&key, std::iter::empty(), put3).unwrap();
        assert_eq!(n, 0);
    }
}
