//! Index files: which blobs are in which pack, where.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::id::Id;
use crate::pack::{BlobKind, FrameEntry, PackKind};

/// One pack as an index file records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPack {
    /// Pack id (its name).
    pub id: Id,
    /// Data or tree.
    pub kind: PackKind,
    /// Stored size of the pack in bytes, as written by the repository (before any encryption).
    pub size: u64,
    /// Frames and their blobs.
    pub frames: Vec<FrameEntry>,
}

/// The content of an `index/<id>` object.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IndexFile {
    /// Format version of this file (1).
    pub version: u32,
    /// Index files this one replaces (written by prune); readers ignore superseded files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supersedes: Vec<Id>,
    /// Packs described.
    pub packs: Vec<IndexPack>,
}

/// Where a blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// Pack id.
    pub pack: Id,
    /// Pack kind.
    pub pack_kind: PackKind,
    /// Blob kind.
    pub kind: BlobKind,
    /// Frame offset in the pack.
    pub frame_offset: u64,
    /// Frame compressed length.
    pub frame_length: u32,
    /// Frame decompressed length.
    pub raw_length: u32,
    /// Blob offset in the decompressed frame.
    pub offset: u32,
    /// Blob length.
    pub length: u32,
}

/// What the in-memory index knows about a pack.
#[derive(Debug, Clone)]
pub struct PackInfo {
    /// Data or tree.
    pub kind: PackKind,
    /// Size as recorded.
    pub size: u64,
    /// Blob ids in it.
    pub blobs: Vec<Id>,
    /// Index files that list it.
    pub index_files: Vec<Id>,
}

/// All index files merged.
#[derive(Debug, Default, Clone)]
pub struct Index {
    blobs: HashMap<Id, Vec<BlobLocation>>,
    packs: HashMap<Id, PackInfo>,
    /// Index files merged (not superseded).
    pub files: Vec<Id>,
    /// Index files present but superseded by another (left over when a delete was refused).
    pub superseded: Vec<Id>,
}

impl Index {
    /// Merge the packs of one index file.
    pub fn add_file(&mut self, file_id: Id, file: &IndexFile) {
        self.files.push(file_id);
        for p in &file.packs {
            self.add_pack(Some(file_id), p);
        }
    }

    /// Merge one pack.
    pub fn add_pack(&mut self, file_id: Option<Id>, p: &IndexPack) {
        if let Some(info) = self.packs.get_mut(&p.id) {
            if let Some(f) = file_id {
                info.index_files.push(f);
            }
            return;
        }
        let mut ids = Vec::new();
        for f in &p.frames {
            for b in &f.blobs {
                ids.push(b.id);
                self.blobs.entry(b.id).or_default().push(BlobLocation {
                    pack: p.id,
                    pack_kind: p.kind,
                    kind: b.kind,
                    frame_offset: f.offset,
                    frame_length: f.length,
                    raw_length: f.raw_length,
                    offset: b.offset,
                    length: b.length,
                });
            }
        }
        self.packs.insert(
            p.id,
            PackInfo {
                kind: p.kind,
                size: p.size,
                blobs: ids,
                index_files: file_id.into_iter().collect(),
            },
        );
    }

    /// Locations of a blob (several if stored more than once).
    pub fn locations(&self, id: &Id) -> &[BlobLocation] {
        self.blobs.get(id).map(|v| v.as_slice()).unwrap_or(&[])
    }

    /// Whether a blob is indexed.
    pub fn contains(&self, id: &Id) -> bool {
        self.blobs.contains_key(id)
    }

    /// Whether a blob is indexed in a pack outside `excluded`.
    pub fn contains_outside(&self, id: &Id, excluded: &HashSet<Id>) -> Option<Id> {
        self.locations(id)
            .iter()
            .find(|l| !excluded.contains(&l.pack))
            .map(|l| l.pack)
    }

    /// All indexed packs.
    pub fn packs(&self) -> &HashMap<Id, PackInfo> {
        &self.packs
    }

    /// Number of distinct blobs.
    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }

    /// Rebuild the index-file form of some packs (for prune's consolidated index).
    pub fn to_index_packs(&self, keep: impl Fn(&Id) -> bool) -> Vec<IndexPack> {
        let mut out = Vec::new();
        let mut pack_ids: Vec<&Id> = self.packs.keys().filter(|id| keep(id)).collect();
        pack_ids.sort();
        for pid in pack_ids {
            let info = &self.packs[pid];
            let mut frames: Vec<FrameEntry> = Vec::new();
            for bid in &info.blobs {
                let loc = self
                    .locations(bid)
                    .iter()
                    .find(|l| l.pack == *pid)
                    .expect("blob listed in its pack");
                if frames.last().map(|f| f.offset) != Some(loc.frame_offset) {
                    frames.push(FrameEntry {
                        offset: loc.frame_offset,
                        length: loc.frame_length,
                        raw_length: loc.raw_length,
                        blobs: Vec::new(),
                    });
                }
                frames
                    .last_mut()
                    .expect("just pushed")
                    .blobs
                    .push(crate::pack::BlobEntry {
                        id: *bid,
                        kind: loc.kind,
                        offset: loc.offset,
                        length: loc.length,
                    });
            }
            out.push(IndexPack {
                id: *pid,
                kind: info.kind,
                size: info.size,
                frames,
            });
        }
        out
    }
}
