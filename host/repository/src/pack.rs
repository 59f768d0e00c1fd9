//! Packs: many blobs in one stored object, compressed in zstd frames.
//!
//! ```text
//! "CAIRNPK1" | frame_0 | frame_1 | … | frame_k | header | header_len: u32 LE | "CAIRNPK1"
//! ```
//! Each frame is one zstd frame holding one or more whole blobs (small blobs are grouped up to
//! the frame size so similar JSON compresses together; a large chunk gets a frame of its own).
//! The header is zstd-compressed canonical JSON listing the frames and their blobs, so a pack
//! can be re-indexed without the index. Reading one blob decompresses only its frame.

use serde::{Deserialize, Serialize};

use crate::canonical::to_canonical_vec;
use crate::id::{Id, IdKey};

/// Leading and trailing magic.
pub const PACK_MAGIC: &[u8; 8] = b"CAIRNPK1";

/// What a blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobKind {
    /// Canonical JSON body of an item (data class).
    Item,
    /// A content-defined chunk of a binary part (data class).
    Chunk,
    /// A tree node (metadata class).
    Tree,
}

/// Which kind of pack (and so which key prefix / object class).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackKind {
    /// `data/…`: items and chunks.
    Data,
    /// `tree/…`: tree nodes.
    Tree,
}

impl PackKind {
    /// The pack kind a blob kind goes into.
    pub fn for_blob(kind: BlobKind) -> PackKind {
        match kind {
            BlobKind::Tree => PackKind::Tree,
            BlobKind::Item | BlobKind::Chunk => PackKind::Data,
        }
    }

    /// Key prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            PackKind::Data => crate::backend::keys::DATA_PREFIX,
            PackKind::Tree => crate::backend::keys::TREE_PREFIX,
        }
    }

    /// Storage key of a pack.
    pub fn key(self, id: &Id) -> String {
        crate::backend::keys::pack(self.prefix(), id)
    }
}

/// A blob inside a frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobEntry {
    /// Keyed hash of the blob's plaintext.
    pub id: Id,
    /// What it is.
    pub kind: BlobKind,
    /// Offset in the decompressed frame.
    pub offset: u32,
    /// Length (decompressed).
    pub length: u32,
}

/// A zstd frame inside a pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameEntry {
    /// Byte offset of the frame in the pack.
    pub offset: u64,
    /// Compressed length.
    pub length: u32,
    /// Decompressed length.
    pub raw_length: u32,
    /// Blobs in it, in order.
    pub blobs: Vec<BlobEntry>,
}

#[derive(Serialize, Deserialize)]
struct PackHeader {
    version: u32,
    frames: Vec<FrameEntry>,
}

/// A finished pack, ready to store.
pub struct FinishedPack {
    /// Keyed hash of `bytes`: the pack's name.
    pub id: Id,
    /// Data or tree.
    pub kind: PackKind,
    /// The whole object.
    pub bytes: Vec<u8>,
    /// Its frames (what the index records).
    pub frames: Vec<FrameEntry>,
}

/// Accumulates blobs into a pack.
pub struct PackBuilder {
    kind: PackKind,
    level: i32,
    frame_target: usize,
    buf: Vec<u8>,
    frame_raw: Vec<u8>,
    frame_blobs: Vec<BlobEntry>,
    frames: Vec<FrameEntry>,
    blobs: usize,
}

impl PackBuilder {
    /// An empty pack of `kind`, compressing at zstd `level`, grouping small blobs into frames of
    /// about `frame_target` bytes.
    pub fn new(kind: PackKind, level: i32, frame_target: usize) -> Self {
        let mut buf = Vec::with_capacity(1 << 20);
        buf.extend_from_slice(PACK_MAGIC);
        PackBuilder {
            kind,
            level,
            frame_target: frame_target.max(1024),
            buf,
            frame_raw: Vec::new(),
            frame_blobs: Vec::new(),
            frames: Vec::new(),
            blobs: 0,
        }
    }

    /// Number of blobs added.
    pub fn blob_count(&self) -> usize {
        self.blobs
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.blobs == 0
    }

    /// Approximate size of the pack if finished now.
    pub fn approx_size(&self) -> usize {
        self.buf.len() + self.frame_raw.len() / 3
    }

    /// Append a blob.
    pub fn add(&mut self, id: Id, kind: BlobKind, data: &[u8]) {
        self.blobs += 1;
        if data.len() >= self.frame_target / 2 {
            self.flush_frame();
            self.frame_raw.extend_from_slice(data);
            self.frame_blobs.push(BlobEntry {
                id,
                kind,
                offset: 0,
                length: data.len() as u32,
            });
            self.flush_frame();
            return;
        }
        self.frame_blobs.push(BlobEntry {
            id,
            kind,
            offset: self.frame_raw.len() as u32,
            length: data.len() as u32,
        });
        self.frame_raw.extend_from_slice(data);
        if self.frame_raw.len() >= self.frame_target {
            self.flush_frame();
        }
    }

    fn flush_frame(&mut self) {
        if self.frame_blobs.is_empty() {
            return;
        }
        let compressed = zstd::bulk::compress(&self.frame_raw, self.level)
            .expect("zstd compression into a Vec does not fail");
        self.frames.push(FrameEntry {
            offset: self.buf.len() as u64,
            length: compressed.len() as u32,
            raw_length: self.frame_raw.len() as u32,
            blobs: std::mem::take(&mut self.frame_blobs),
        });
        self.buf.extend_from_slice(&compressed);
        self.frame_raw.clear();
    }

    /// Close the pack: header, trailer, name.
    pub fn finish(mut self, key: &IdKey) -> FinishedPack {
        self.flush_frame();
        let header = PackHeader {
            version: 1,
            frames: self.frames.clone(),
        };
        let json = to_canonical_vec(&header).expect("pack header serialises");
        let compressed = zstd::bulk::compress(&json, 3).expect("zstd compression");
        self.buf.extend_from_slice(&compressed);
        self.buf
            .extend_from_slice(&(compressed.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(PACK_MAGIC);
        let id = key.hash(&self.buf);
        FinishedPack {
            id,
            kind: self.kind,
            bytes: self.buf,
            frames: self.frames,
        }
    }
}

/// Decompress one frame from a pack's bytes (which may be truncated after it).
pub fn read_frame(
    pack: &[u8],
    frame_offset: u64,
    length: u32,
    raw_length: u32,
) -> Result<Vec<u8>, String> {
    let start = frame_offset as usize;
    let end = start
        .checked_add(length as usize)
        .ok_or_else(|| "frame offset overflows".to_string())?;
    if end > pack.len() {
        return Err(format!(
            "truncated: frame at {start}..{end} but the object has {} bytes",
            pack.len()
        ));
    }
    let raw = zstd::bulk::decompress(&pack[start..end], raw_length as usize)
        .map_err(|e| format!("frame at offset {start} does not decompress: {e}"))?;
    if raw.len() != raw_length as usize {
        return Err(format!(
            "frame at offset {start} decompresses to {} bytes, expected {raw_length}",
            raw.len()
        ));
    }
    Ok(raw)
}

/// Parse a whole pack's header (for check and rebuilding the index).
pub fn parse_header(pack: &[u8]) -> Result<Vec<FrameEntry>, String> {
    let n = pack.len();
    if n < 2 * PACK_MAGIC.len() + 4 {
        return Err(format!("truncated: only {n} bytes"));
    }
    if &pack[..8] != PACK_MAGIC {
        return Err("does not start with the pack magic".into());
    }
    if &pack[n - 8..] != PACK_MAGIC {
        return Err("does not end with the pack magic (truncated?)".into());
    }
    let hlen = u32::from_le_bytes(pack[n - 12..n - 8].try_into().expect("4 bytes")) as usize;
    if hlen + 20 > n {
        return Err(format!("header length {hlen} exceeds the object"));
    }
    let hbytes = &pack[n - 12 - hlen..n - 12];
    let json =
        zstd::stream::decode_all(hbytes).map_err(|e| format!("header does not decompress: {e}"))?;
    let header: PackHeader =
        serde_json::from_slice(&json).map_err(|e| format!("header is not valid: {e}"))?;
    Ok(header.frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trip() {
        let key = IdKey::from_bytes([1; 32]);
        let mut b = PackBuilder::new(PackKind::Data, 3, 4096);
        let mut blobs = Vec::new();
        for i in 0..50u32 {
            let data =
                format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(i as usize * 7)).into_bytes();
            let id = key.hash(&data);
            b.add(id, BlobKind::Item, &data);
            blobs.push((id, data));
        }
        let big = vec![42u8; 10_000];
        b.add(key.hash(&big), BlobKind::Chunk, &big);
        blobs.push((key.hash(&big), big));
        let p = b.finish(&key);
        assert_eq!(p.id, key.hash(&p.bytes));
        let frames = parse_header(&p.bytes).unwrap();
        assert_eq!(frames, p.frames);
        let mut found = 0;
        for f in &frames {
            let raw = read_frame(&p.bytes, f.offset, f.length, f.raw_length).unwrap();
            for be in &f.blobs {
                let data = &raw[be.offset as usize..(be.offset + be.length) as usize];
                assert_eq!(key.hash(data), be.id);
                assert!(blobs.iter().any(|(id, d)| *id == be.id && d == data));
                found += 1;
            }
        }
        assert_eq!(found, blobs.len());
        // Truncation breaks the header but earlier frames stay readable.
        let cut = &p.bytes[..p.bytes.len() / 2];
        assert!(parse_header(cut).is_err());
        let f0 = &frames[0];
        assert!(read_frame(cut, f0.offset, f0.length, f0.raw_length).is_ok());
    }
}
