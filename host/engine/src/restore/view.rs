//! One collector's items of a snapshot, as restorers read them (`snapshot` and `content`
//! imports).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use cairn_repository::{Entry, PartRef, Repository, Snapshot};
use cairn_runtime::types::{Item, Part, PartData};
use cairn_runtime::{ContentRef, ContentStore, SnapshotEntry, SnapshotReader};

/// A collector's items in a snapshot: every task named `<collector>/…`, indexed by (kind, id).
pub struct SnapshotView {
    collector: String,
    repo: Repository,
    entries: BTreeMap<(String, String), Entry>,
    parts: Mutex<PartTable>,
}

#[derive(Default)]
struct PartTable {
    by_id: HashMap<String, PartRef>,
    ids: HashMap<PartRef, String>,
    /// The last part read whole, for reads in pieces.
    last: Option<(String, Arc<Vec<u8>>)>,
}

impl SnapshotView {
    /// Loads the listing of `collector`'s tasks in `snapshot`.
    pub fn open(repo: &Repository, snapshot: &Snapshot, collector: &str) -> anyhow::Result<Self> {
        let prefix = format!("{collector}/");
        let mut entries = BTreeMap::new();
        for task in snapshot
            .tasks
            .iter()
            .filter(|t| t.name.starts_with(&prefix))
        {
            for e in repo
                .tree_entries(task.tree)
                .with_context(|| format!("reading the tree of task {}", task.name))?
            {
                entries.insert((e.kind.clone(), e.id.clone()), e);
            }
        }
        Ok(SnapshotView {
            collector: collector.to_string(),
            repo: repo.clone(),
            entries,
            parts: Mutex::new(PartTable::default()),
        })
    }

    /// The collector's name.
    pub fn collector(&self) -> &str {
        &self.collector
    }

    /// Every entry, in (kind, id) order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if the collector has no items in the snapshot.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// One entry.
    pub fn entry(&self, kind: &str, id: &str) -> Option<&Entry> {
        self.entries.get(&(kind.to_string(), id.to_string()))
    }

    /// The item's JSON body (needs an identity that decrypts data).
    pub fn body(&self, entry: &Entry) -> anyhow::Result<serde_json::Value> {
        self.repo.read_item(entry).with_context(|| {
            format!(
                "reading item {}/{} (item contents need a recipient's identity: --identity)",
                entry.kind, entry.id
            )
        })
    }

    /// A part's bytes.
    pub fn part(&self, part: &PartRef) -> anyhow::Result<Vec<u8>> {
        Ok(self.repo.read_part(part)?)
    }

    /// Checks that item contents can be read (the first item's body), so a missing identity
    /// fails up front with one clear message instead of once per item.
    pub fn probe(&self) -> anyhow::Result<()> {
        match self.entries.values().next() {
            Some(e) => self.body(e).map(|_| ()),
            None => Ok(()),
        }
    }

    fn content_id(&self, part: &PartRef) -> String {
        let mut t = self.parts.lock().expect("parts lock");
        if let Some(id) = t.ids.get(part) {
            return id.clone();
        }
        let id = format!("part-{}", t.by_id.len());
        t.by_id.insert(id.clone(), part.clone());
        t.ids.insert(part.clone(), id.clone());
        id
    }
}

impl SnapshotReader for SnapshotView {
    fn get(&self, kind: &str, id: &str) -> Option<Item> {
        let entry = self.entry(kind, id)?;
        let body = match self.repo.read_item_bytes(entry) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => {
                tracing::error!(kind, id, "reading a snapshot item for a restorer: {e}");
                return None;
            }
        };
        let parts = entry
            .parts
            .iter()
            .map(|p| Part {
                name: p.name.clone(),
                content_type: String::new(),
                data: PartData::Stored(cairn_runtime::types::ContentRef {
                    id: self.content_id(p),
                    size: p.size,
                }),
            })
            .collect();
        Some(Item {
            kind: entry.kind.clone(),
            id: entry.id.clone(),
            display_name: entry.name.clone(),
            body,
            parts,
        })
    }

    fn list(&self, kind: &str) -> Vec<SnapshotEntry> {
        self.entries
            .range((kind.to_string(), String::new())..)
            .take_while(|((k, _), _)| k == kind)
            .map(|(_, e)| SnapshotEntry {
                kind: e.kind.clone(),
                id: e.id.clone(),
                display_name: e.name.clone(),
            })
            .collect()
    }
}

impl ContentStore for SnapshotView {
    fn store(&self, _reader: &mut dyn std::io::Read) -> Result<ContentRef, String> {
        Err("restorers cannot store content".into())
    }

    fn read(&self, content: &ContentRef, offset: u64, len: u32) -> Result<Vec<u8>, String> {
        let (part, cached) = {
            let t = self.parts.lock().expect("parts lock");
            let part = t
                .by_id
                .get(&content.id)
                .cloned()
                .ok_or_else(|| format!("no stored content {} in this restore", content.id))?;
            let cached = t
                .last
                .as_ref()
                .filter(|(id, _)| id == &content.id)
                .map(|(_, b)| b.clone());
            (part, cached)
        };
        let bytes = match cached {
            Some(b) => b,
            None => {
                let b = Arc::new(self.repo.read_part(&part).map_err(|e| e.to_string())?);
                self.parts.lock().expect("parts lock").last = Some((content.id.clone(), b.clone()));
                b
            }
        };
        let start = (offset as usize).min(bytes.len());
        let end = start.saturating_add(len as usize).min(bytes.len());
        Ok(bytes[start..end].to_vec())
    }
}
