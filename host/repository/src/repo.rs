//! Opening, creating and reading a repository.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::Read;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use crate::backend::{keys, Backend, BackendError, PutOutcome};
use crate::canonical::to_canonical_vec;
use crate::error::{Error, Result};
use crate::id::{random_hex16, Id, IdKey};
use crate::index::{Index, IndexFile};
use crate::pack::{read_frame, BlobKind};
use crate::snapshot::{format_time, Snapshot};
use crate::tree::{self, Entry, Node, PartRef};

/// The repository format version this build writes and the highest it reads.
pub const FORMAT_VERSION: u32 = 1;
/// The `format` member of every config.
pub const FORMAT_NAME: &str = "cairn-repository";

/// Content-defined chunking parameters (fixed at init so every writer cuts alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// Minimum chunk size.
    pub min_size: u32,
    /// Average chunk size.
    pub avg_size: u32,
    /// Maximum chunk size.
    pub max_size: u32,
}

impl ChunkerParams {
    /// Check the sizes against what the chunker supports.
    pub fn validate(&self) -> Result<()> {
        use fastcdc::v2020::{
            AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN,
        };
        let p = self;
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&p.min_size)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&p.avg_size)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&p.max_size)
            && p.min_size <= p.avg_size
            && p.avg_size <= p.max_size;
        if ok {
            Ok(())
        } else {
            Err(Error::Usage(format!(
                "chunker sizes must satisfy min <= avg <= max with min in {MINIMUM_MIN}..={MINIMUM_MAX}, \
                 avg in {AVERAGE_MIN}..={AVERAGE_MAX}, max in {MAXIMUM_MIN}..={MAXIMUM_MAX}; got {p:?}"
            )))
        }
    }
}

impl PackParams {
    /// Check the packing parameters.
    pub fn validate(&self) -> Result<()> {
        if self.target_size < 4096
            || self.frame_size < 1024
            || !(-7..=22).contains(&self.zstd_level)
        {
            return Err(Error::Usage(format!(
                "pack parameters: target size >= 4096, frame size >= 1024, zstd level -7..=22; got {self:?}"
            )));
        }
        Ok(())
    }
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams {
            min_size: 64 * 1024,
            avg_size: 256 * 1024,
            max_size: 1024 * 1024,
        }
    }
}

/// Packing defaults (a writer may override them per run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackParams {
    /// Target pack size in bytes (compressed).
    pub target_size: u32,
    /// zstd level (1–22; 3 is zstd's default).
    pub zstd_level: i32,
    /// Small blobs are grouped into zstd frames of about this many bytes.
    pub frame_size: u32,
}

impl Default for PackParams {
    fn default() -> Self {
        PackParams {
            target_size: 4 * 1024 * 1024,
            zstd_level: 3,
            frame_size: 64 * 1024,
        }
    }
}

/// The `config` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Always `cairn-repository`.
    pub format: String,
    /// Format version.
    pub version: u32,
    /// Random repository id (hex).
    pub id: String,
    /// Creation time.
    pub created: String,
    /// Keyed hash of a fixed string under the id key: tells whether a key is the right one.
    pub id_key_check: Id,
    /// Chunker parameters.
    pub chunker: ChunkerParams,
    /// Packing defaults.
    pub pack: PackParams,
    /// Public keys (hex ed25519) whose snapshot signatures `check` trusts; if non-empty, every
    /// snapshot must be signed by one of them.
    #[serde(default)]
    pub signers: Vec<String>,
}

/// Content of a `keys/<id>` object. Plain JSON; an encrypting sink encrypts it to the
/// repository's recipients.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyObject {
    /// Repository id.
    pub repository: String,
    /// The id key, hex.
    pub id_key: String,
    /// When written.
    pub created: String,
}

/// What a writer keeps locally: enough to write (and dedup) without the recipients' private
/// keys. The sink adds its own members (the age metadata identity) beside these; unknown
/// members are preserved by [`WriterKeyFile::extra`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriterKeyFile {
    /// Repository id.
    pub repository: String,
    /// The id key, hex.
    pub id_key: String,
    /// Anything else (e.g. `metadata_identity` for the age sink).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl WriterKeyFile {
    /// Read a key file (JSON).
    pub fn load(path: &std::path::Path) -> Result<WriterKeyFile> {
        let b = std::fs::read(path)?;
        Ok(serde_json::from_slice(&b)?)
    }

    /// Write a key file (JSON), readable by the owner only on Unix. Refuses to overwrite.
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        use std::io::Write;
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let mut f = o.open(path)?;
        f.write_all(&serde_json::to_vec_pretty(self)?)?;
        f.sync_all()?;
        Ok(())
    }

    /// The id key.
    pub fn id_key(&self) -> Result<IdKey> {
        IdKey::from_hex(&self.id_key).map_err(|e| Error::Usage(format!("writer key file: {e}")))
    }
}

/// Options for [`Repository::init`].
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// Chunker parameters (defaults: 64 KiB / 256 KiB / 1 MiB).
    pub chunker: ChunkerParams,
    /// Packing defaults.
    pub pack: PackParams,
    /// Trusted snapshot signers (hex ed25519 public keys).
    pub signers: Vec<String>,
    /// Use this id key instead of generating one.
    pub id_key: Option<IdKey>,
}

/// Options for [`Repository::open`].
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// The id key (from the writer key file). Without it, the key is read from `keys/`
    /// (which needs an identity that can decrypt it, when the backend encrypts).
    pub id_key: Option<IdKey>,
}

pub(crate) struct Inner {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) key: IdKey,
    pub(crate) config: Config,
    index: RwLock<Option<Arc<Index>>>,
    cache: Mutex<PackCache>,
    frames: Mutex<FrameCache>,
}

/// Recently decompressed frames, keyed by (pack, frame offset).
type FrameCache = VecDeque<((Id, u64), Arc<Vec<u8>>)>;

/// An open repository. Cheap to clone; safe to share between threads.
#[derive(Clone)]
pub struct Repository {
    pub(crate) inner: Arc<Inner>,
}

/// Encode a metadata object: zstd-compressed canonical JSON.
pub(crate) fn encode_meta<T: Serialize>(v: &T) -> Vec<u8> {
    let json = to_canonical_vec(v).expect("metadata serialises");
    zstd::bulk::compress(&json, 3).expect("zstd")
}

/// Decode a metadata object: zstd-compressed or plain JSON.
pub(crate) fn decode_meta<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T> {
    let json;
    let plain = if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        json = zstd::stream::decode_all(bytes).map_err(|e| Error::Corrupt {
            key: key.to_string(),
            reason: format!("does not decompress: {e}"),
        })?;
        &json[..]
    } else {
        bytes
    };
    serde_json::from_slice(plain).map_err(|e| Error::Corrupt {
        key: key.to_string(),
        reason: format!("not valid JSON of the expected shape: {e}"),
    })
}

/// A snapshot and its id.
#[derive(Debug, Clone)]
pub struct SnapshotInfo {
    /// The snapshot's id (its object name).
    pub id: Id,
    /// The snapshot.
    pub snapshot: Snapshot,
}

/// Differences between two versions of one task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskDiff {
    /// Task name.
    pub task: String,
    /// Entries only in the newer snapshot.
    pub added: Vec<Entry>,
    /// Entries only in the older snapshot.
    pub removed: Vec<Entry>,
    /// Entries in both with different content: (old, new).
    pub changed: Vec<(Entry, Entry)>,
}

/// Differences between two snapshots, per task (tasks with no difference omitted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotDiff {
    /// Per task.
    pub tasks: Vec<TaskDiff>,
}

impl Repository {
    /// Create a repository on an empty backend. Writes `keys/<id>` then `config` (the config's
    /// presence is what makes it a repository). Returns the open repository; its id key is
    /// [`Repository::id_key`] (put it in the writer's key file).
    pub fn init(backend: Arc<dyn Backend>, opts: InitOptions) -> Result<Repository> {
        let location = backend.location();
        match backend.get(keys::CONFIG) {
            Ok(_) => {
                return Err(Error::InitRefused {
                    location,
                    reason: "a repository already exists there".into(),
                })
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        let existing = backend.list("")?;
        if let Some(o) = existing
            .iter()
            .find(|o| !o.key.starts_with(keys::KEYS_PREFIX))
        {
            return Err(Error::InitRefused {
                location,
                reason: format!("it is not empty (found {})", o.key),
            });
        }
        opts.chunker.validate()?;
        opts.pack.validate()?;
        let key = opts.id_key.unwrap_or_else(IdKey::generate);
        let now = format_time(chrono::Utc::now());
        let config = Config {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            id: random_hex16(),
            created: now.clone(),
            id_key_check: key.check_value(),
            chunker: opts.chunker,
            pack: opts.pack,
            signers: opts.signers,
        };
        let ko = KeyObject {
            repository: config.id.clone(),
            id_key: key.to_hex(),
            created: now,
        };
        let kbytes = to_canonical_vec(&ko)?;
        backend.put(&keys::flat(keys::KEYS_PREFIX, &key.hash(&kbytes)), kbytes)?;
        let cbytes = to_canonical_vec(&config)?;
        if backend.put(keys::CONFIG, cbytes)? == PutOutcome::AlreadyExisted {
            return Err(Error::InitRefused {
                location,
                reason: "another init created a repository there at the same time".into(),
            });
        }
        Ok(Repository::from_parts(backend, key, config))
    }

    fn from_parts(backend: Arc<dyn Backend>, key: IdKey, config: Config) -> Repository {
        Repository {
            inner: Arc::new(Inner {
                backend,
                key,
                config,
                index: RwLock::new(None),
                cache: Mutex::new(PackCache::new(64 << 20)),
                frames: Mutex::new(VecDeque::new()),
            }),
        }
    }

    /// Open an existing repository. Writes nothing.
    pub fn open(backend: Arc<dyn Backend>, opts: OpenOptions) -> Result<Repository> {
        let location = backend.location();
        let cbytes = match backend.get(keys::CONFIG) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => {
                let objects = backend.list("")?;
                return Err(if objects.is_empty() {
                    Error::NoRepository { location }
                } else {
                    Error::NotARepository {
                        location,
                        reason: format!(
                            "it holds {} object(s) (e.g. {}) but no `config`",
                            objects.len(),
                            objects[0].key
                        ),
                    }
                });
            }
            Err(e) => return Err(e.into()),
        };
        #[derive(Deserialize)]
        struct Head {
            format: Option<String>,
            version: Option<u32>,
        }
        let head: Head = serde_json::from_slice(&cbytes).map_err(|_| Error::NotARepository {
            location: location.clone(),
            reason: "its `config` is not a Cairn repository config".into(),
        })?;
        if head.format.as_deref() != Some(FORMAT_NAME) {
            return Err(Error::NotARepository {
                location,
                reason: "its `config` is not a Cairn repository config".into(),
            });
        }
        let version = head.version.unwrap_or(0);
        if version > FORMAT_VERSION {
            return Err(Error::NewerVersion {
                location,
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let config: Config = serde_json::from_slice(&cbytes).map_err(|e| Error::Corrupt {
            key: keys::CONFIG.into(),
            reason: e.to_string(),
        })?;
        let key = match opts.id_key {
            Some(k) => {
                if k.check_value() != config.id_key_check {
                    return Err(Error::WrongIdKey { location });
                }
                k
            }
            None => {
                let mut reasons = Vec::new();
                let mut found = None;
                for o in backend.list(keys::KEYS_PREFIX)? {
                    let r = backend
                        .get(&o.key)
                        .map_err(|e| e.to_string())
                        .and_then(|b| {
                            serde_json::from_slice::<KeyObject>(&b).map_err(|e| e.to_string())
                        })
                        .and_then(|ko| IdKey::from_hex(&ko.id_key).map_err(|e| e.to_string()));
                    match r {
                        Ok(k) if k.check_value() == config.id_key_check => {
                            found = Some(k);
                            break;
                        }
                        Ok(_) => reasons.push(format!("{}: key does not match the config", o.key)),
                        Err(e) => reasons.push(format!("{}: {e}", o.key)),
                    }
                }
                found.ok_or_else(|| Error::NoIdKey {
                    location: location.clone(),
                    reason: if reasons.is_empty() {
                        "no key objects".into()
                    } else {
                        reasons.join("; ")
                    },
                })?
            }
        };
        Ok(Repository::from_parts(backend, key, config))
    }

    /// The id key (secret: goes in the writer key file).
    pub fn id_key(&self) -> &IdKey {
        &self.inner.key
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    /// The writer key file content for this repository.
    pub fn writer_key_file(&self) -> WriterKeyFile {
        WriterKeyFile {
            repository: self.inner.config.id.clone(),
            id_key: self.inner.key.to_hex(),
            extra: Default::default(),
        }
    }

    pub(crate) fn get_meta<T: for<'de> Deserialize<'de>>(&self, key: &str) -> Result<T> {
        let b = self.inner.backend.get(key)?;
        decode_meta(key, &b)
    }

    /// Store a metadata object under `prefix` + keyed hash of its bytes.
    pub(crate) fn put_meta<T: Serialize>(&self, prefix: &str, v: &T) -> Result<Id> {
        let bytes = encode_meta(v);
        let id = self.inner.key.hash(&bytes);
        self.inner.backend.put(&keys::flat(prefix, &id), bytes)?;
        Ok(id)
    }

    /// Load (or reload) all index files. Index files that fail to load are returned as
    /// problems (key, message) and skipped.
    pub fn load_index_report(&self) -> Result<(Index, Vec<(String, String)>)> {
        let mut files: Vec<(Id, IndexFile)> = Vec::new();
        let mut problems = Vec::new();
        for o in self.inner.backend.list(keys::INDEX_PREFIX)? {
            let Some(id) = keys::id_of(&o.key) else {
                problems.push((o.key.clone(), "not an index file name".to_string()));
                continue;
            };
            match self
                .inner
                .backend
                .get(&o.key)
                .map_err(Error::from)
                .and_then(|b| decode_meta::<IndexFile>(&o.key, &b))
            {
                Ok(f) => files.push((id, f)),
                Err(e) => problems.push((o.key.clone(), e.to_string())),
            }
        }
        let superseded: HashSet<Id> = files
            .iter()
            .flat_map(|(_, f)| f.supersedes.iter().copied())
            .collect();
        // An unreadable index file that a readable one supersedes (after `repair_index`) is
        // no longer a problem.
        problems.retain(|(k, _)| keys::id_of(k).is_none_or(|id| !superseded.contains(&id)));
        let mut index = Index::default();
        files.sort_by_key(|(id, _)| *id);
        for (id, f) in &files {
            if superseded.contains(id) {
                index.superseded.push(*id);
            } else {
                index.add_file(*id, f);
            }
        }
        Ok((index, problems))
    }

    /// The merged index (loaded once, then cached; see [`Repository::refresh_index`]).
    pub fn index(&self) -> Result<Arc<Index>> {
        if let Some(i) = self.inner.index.read().expect("lock").as_ref() {
            return Ok(i.clone());
        }
        self.refresh_index()
    }

    /// Reload the index from storage.
    pub fn refresh_index(&self) -> Result<Arc<Index>> {
        let (index, problems) = self.load_index_report()?;
        for (k, p) in problems {
            tracing::warn!(object = %k, "skipping unreadable index file: {p}");
        }
        let index = Arc::new(index);
        *self.inner.index.write().expect("lock") = Some(index.clone());
        Ok(index)
    }

    pub(crate) fn set_index(&self, index: Index) {
        *self.inner.index.write().expect("lock") = Some(Arc::new(index));
    }

    /// Read a blob's plaintext (verified against its id).
    pub fn read_blob(&self, id: &Id) -> Result<Vec<u8>> {
        let mut index = self.index()?;
        if !index.contains(id) {
            // Written since the index was loaded (by this process or another)?
            index = self.refresh_index()?;
        }
        let locs = index.locations(id);
        if locs.is_empty() {
            return Err(Error::MissingBlob(*id));
        }
        let mut last_err = None;
        for loc in locs {
            let pack_key = loc.pack_kind.key(&loc.pack);
            let r = self.frame(loc, &pack_key).and_then(|frame| {
                let s = loc.offset as usize;
                let e = s + loc.length as usize;
                if e > frame.len() || self.inner.key.hash(&frame[s..e]) != *id {
                    return Err(Error::Corrupt {
                        key: pack_key.clone(),
                        reason: format!("blob {id} does not match its id"),
                    });
                }
                Ok(frame[s..e].to_vec())
            });
            match r {
                Ok(b) => return Ok(b),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.expect("at least one location"))
    }

    /// A decompressed frame (recent frames are cached: consecutive items share frames).
    fn frame(&self, loc: &crate::index::BlobLocation, pack_key: &str) -> Result<Arc<Vec<u8>>> {
        let k = (loc.pack, loc.frame_offset);
        if let Some((_, f)) = self
            .inner
            .frames
            .lock()
            .expect("lock")
            .iter()
            .find(|(key, _)| *key == k)
        {
            return Ok(f.clone());
        }
        let pack = self.pack_bytes(pack_key)?;
        let f = Arc::new(
            read_frame(&pack, loc.frame_offset, loc.frame_length, loc.raw_length).map_err(
                |reason| Error::Corrupt {
                    key: pack_key.to_string(),
                    reason,
                },
            )?,
        );
        let mut frames = self.inner.frames.lock().expect("lock");
        frames.push_back((k, f.clone()));
        if frames.len() > 32 {
            frames.pop_front();
        }
        Ok(f)
    }

    fn pack_bytes(&self, key: &str) -> Result<Arc<Vec<u8>>> {
        if let Some(b) = self.inner.cache.lock().expect("lock").get(key) {
            return Ok(b);
        }
        let b = Arc::new(self.inner.backend.get(key)?);
        self.inner
            .cache
            .lock()
            .expect("lock")
            .insert(key.to_string(), b.clone());
        Ok(b)
    }

    pub(crate) fn forget_cached_pack(&self, key: &str) {
        self.inner.cache.lock().expect("lock").remove(key);
        if let Some(id) = keys::id_of(key) {
            self.inner
                .frames
                .lock()
                .expect("lock")
                .retain(|((p, _), _)| *p != id);
        }
    }

    /// Read a tree node.
    pub fn load_node(&self, id: Id) -> Result<Node> {
        let b = self.read_blob(&id)?;
        Node::from_bytes(&b).map_err(|e| tree::corrupt_node(id, e))
    }

    /// All entries of a task tree, in key order.
    pub fn tree_entries(&self, root: Id) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        tree::walk_entries(root, &|id| self.load_node(id), &mut |e| {
            out.push(e);
            Ok(())
        })?;
        Ok(out)
    }

    /// One entry of a task tree.
    pub fn find_entry(&self, root: Id, kind: &str, id: &str) -> Result<Option<Entry>> {
        tree::find_entry(root, &|n| self.load_node(n), kind, id)
    }

    /// An item's JSON body.
    pub fn read_item(&self, entry: &Entry) -> Result<serde_json::Value> {
        let b = self.read_blob(&entry.body)?;
        Ok(serde_json::from_slice(&b)?)
    }

    /// Canonical JSON bytes of an item's body.
    pub fn read_item_bytes(&self, entry: &Entry) -> Result<Vec<u8>> {
        self.read_blob(&entry.body)
    }

    /// Stream a binary part chunk by chunk.
    pub fn part_reader(&self, part: &PartRef) -> PartReader {
        PartReader {
            repo: self.clone(),
            chunks: part.chunks.clone().into(),
            buf: Vec::new(),
            pos: 0,
        }
    }

    /// Read a whole part into memory (small parts; use [`Repository::part_reader`] otherwise).
    pub fn read_part(&self, part: &PartRef) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(part.size as usize);
        self.part_reader(part).read_to_end(&mut out)?;
        Ok(out)
    }

    /// Ids of snapshots that were forgotten (their delete may have been refused).
    pub fn forgotten(&self) -> Result<HashSet<Id>> {
        Ok(self
            .inner
            .backend
            .list(keys::FORGOTTEN_PREFIX)?
            .iter()
            .filter_map(|o| keys::id_of(&o.key))
            .collect())
    }

    /// All live (not forgotten) snapshots, oldest first. Unreadable snapshot objects are
    /// skipped with a warning (`check` reports them).
    pub fn snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        self.list_snapshots(false)
    }

    /// Like [`Repository::snapshots`], but any snapshot that cannot be read is an error (what
    /// prune needs: a snapshot it cannot see would have its data collected).
    pub fn snapshots_strict(&self) -> Result<Vec<SnapshotInfo>> {
        self.list_snapshots(true)
    }

    fn list_snapshots(&self, strict: bool) -> Result<Vec<SnapshotInfo>> {
        let forgotten = self.forgotten()?;
        let mut out = Vec::new();
        for o in self.inner.backend.list(keys::SNAPSHOTS_PREFIX)? {
            let Some(id) = keys::id_of(&o.key) else {
                continue;
            };
            if forgotten.contains(&id) {
                continue;
            }
            match self.load_snapshot_key(&o.key) {
                Ok(s) => out.push(SnapshotInfo { id, snapshot: s }),
                Err(e) if strict => return Err(e),
                Err(e) => tracing::warn!(object = %o.key, "skipping unreadable snapshot: {e}"),
            }
        }
        out.sort_by(|a, b| a.snapshot.time.cmp(&b.snapshot.time).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    pub(crate) fn load_snapshot_key(&self, key: &str) -> Result<Snapshot> {
        let b = self.inner.backend.get(key)?;
        if let Some(id) = keys::id_of(key) {
            if self.inner.key.hash(&b) != id {
                return Err(Error::Corrupt {
                    key: key.into(),
                    reason: "content does not match its name".into(),
                });
            }
        }
        decode_meta(key, &b)
    }

    /// Load one snapshot by id.
    pub fn snapshot(&self, id: &Id) -> Result<Snapshot> {
        self.load_snapshot_key(&keys::flat(keys::SNAPSHOTS_PREFIX, id))
    }

    /// Find a snapshot by id or unique id prefix, or `latest`.
    pub fn find_snapshot(&self, spec: &str) -> Result<SnapshotInfo> {
        let all = self.snapshots()?;
        if spec == "latest" {
            return all.into_iter().last().ok_or_else(|| {
                Error::SnapshotLookup("latest: the repository has no snapshots".into())
            });
        }
        let matches: Vec<SnapshotInfo> = all
            .into_iter()
            .filter(|s| s.id.to_hex().starts_with(&spec.to_lowercase()))
            .collect();
        match matches.len() {
            1 => Ok(matches.into_iter().next().expect("one")),
            0 => Err(Error::SnapshotLookup(format!("{spec}: no such snapshot"))),
            n => Err(Error::SnapshotLookup(format!(
                "{spec}: prefix matches {n} snapshots"
            ))),
        }
    }

    /// The newest live snapshot, if any.
    pub fn latest_snapshot(&self) -> Result<Option<SnapshotInfo>> {
        Ok(self.snapshots()?.into_iter().last())
    }

    /// Compare two snapshots task by task, skipping subtrees they share.
    pub fn diff(&self, old: &Snapshot, new: &Snapshot) -> Result<SnapshotDiff> {
        let mut names: Vec<&str> = old
            .tasks
            .iter()
            .chain(new.tasks.iter())
            .map(|t| t.name.as_str())
            .collect();
        names.sort();
        names.dedup();
        let mut out = SnapshotDiff::default();
        for name in names {
            let d = self.diff_trees(
                name,
                old.task(name).map(|t| t.tree),
                new.task(name).map(|t| t.tree),
            )?;
            if !(d.added.is_empty() && d.removed.is_empty() && d.changed.is_empty()) {
                out.tasks.push(d);
            }
        }
        Ok(out)
    }

    /// Compare two task trees (either may be absent).
    pub fn diff_trees(&self, task: &str, old: Option<Id>, new: Option<Id>) -> Result<TaskDiff> {
        let mut d = TaskDiff {
            task: task.to_string(),
            ..Default::default()
        };
        if old == new {
            return Ok(d);
        }
        let load = |id| self.load_node(id);
        // Nodes present in both trees hold identical entries on both sides: skip them.
        let nodes_of = |root: Option<Id>| -> Result<HashSet<Id>> {
            let mut s = HashSet::new();
            if let Some(r) = root {
                tree::walk_nodes(r, &load, &mut |id, _| {
                    s.insert(id);
                    true
                })?;
            }
            Ok(s)
        };
        // Walk the old tree fully (ids only), then the new tree, pruning shared subtrees.
        let old_nodes = nodes_of(old)?;
        let mut new_nodes = HashSet::new();
        let mut new_entries: BTreeMap<(String, String), Entry> = BTreeMap::new();
        if let Some(r) = new {
            tree::walk_nodes(r, &load, &mut |id, node| {
                new_nodes.insert(id);
                if old_nodes.contains(&id) {
                    return false;
                }
                for e in &node.entries {
                    new_entries.insert((e.kind.clone(), e.id.clone()), e.clone());
                }
                true
            })?;
        }
        let mut old_entries: BTreeMap<(String, String), Entry> = BTreeMap::new();
        if let Some(r) = old {
            tree::walk_nodes(r, &load, &mut |id, node| {
                if new_nodes.contains(&id) {
                    return false;
                }
                for e in &node.entries {
                    old_entries.insert((e.kind.clone(), e.id.clone()), e.clone());
                }
                true
            })?;
        }
        for (k, ne) in &new_entries {
            match old_entries.remove(k) {
                None => {
                    // It may sit in a shared leaf of the old tree only if the new tree had it
                    // there too, which the pruning rules out; so it is new.
                    d.added.push(ne.clone());
                }
                Some(oe) => {
                    if oe != *ne {
                        d.changed.push((oe, ne.clone()));
                    }
                }
            }
        }
        d.removed = old_entries.into_values().collect();
        Ok(d)
    }

    /// Put a legal hold on a snapshot: `forget` will never remove it.
    pub fn hold(&self, snapshot: &Id, reason: &str) -> Result<()> {
        self.snapshot(snapshot)?;
        #[derive(Serialize)]
        struct Hold<'a> {
            snapshot: &'a Id,
            reason: &'a str,
            time: String,
        }
        let bytes = to_canonical_vec(&Hold {
            snapshot,
            reason,
            time: format_time(chrono::Utc::now()),
        })?;
        self.inner
            .backend
            .put(&keys::flat(keys::HOLDS_PREFIX, snapshot), bytes)?;
        Ok(())
    }

    /// Release a legal hold. The store may refuse (returned as the outcome).
    pub fn release_hold(&self, snapshot: &Id) -> Result<crate::backend::DeleteOutcome> {
        Ok(self
            .inner
            .backend
            .delete(&keys::flat(keys::HOLDS_PREFIX, snapshot))?)
    }

    /// Snapshots under legal hold.
    pub fn holds(&self) -> Result<HashSet<Id>> {
        Ok(self
            .inner
            .backend
            .list(keys::HOLDS_PREFIX)?
            .iter()
            .filter_map(|o| keys::id_of(&o.key))
            .collect())
    }

    /// Blob kind check used by readers of unknown blobs.
    pub fn blob_kind(&self, id: &Id) -> Result<Option<BlobKind>> {
        Ok(self.index()?.locations(id).first().map(|l| l.kind))
    }
}

/// Streams a part's bytes, one chunk in memory at a time.
pub struct PartReader {
    repo: Repository,
    chunks: VecDeque<Id>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for PartReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.buf.len() {
            let Some(next) = self.chunks.pop_front() else {
                return Ok(0);
            };
            self.buf = self
                .repo
                .read_blob(&next)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A small LRU of whole pack objects, bounded by bytes.
struct PackCache {
    limit: usize,
    used: usize,
    map: HashMap<String, Arc<Vec<u8>>>,
    order: VecDeque<String>,
}

impl PackCache {
    fn new(limit: usize) -> Self {
        PackCache {
            limit,
            used: 0,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }
    fn get(&mut self, key: &str) -> Option<Arc<Vec<u8>>> {
        let v = self.map.get(key)?.clone();
        if let Some(pos) = self.order.iter().position(|k| k == key) {
            let k = self.order.remove(pos).expect("present");
            self.order.push_back(k);
        }
        Some(v)
    }
    fn insert(&mut self, key: String, v: Arc<Vec<u8>>) {
        if self.map.contains_key(&key) {
            return;
        }
        self.used += v.len();
        self.map.insert(key.clone(), v);
        self.order.push_back(key);
        while self.used > self.limit && self.order.len() > 1 {
            let k = self.order.pop_front().expect("non-empty");
            if let Some(v) = self.map.remove(&k) {
                self.used -= v.len();
            }
        }
    }
    fn remove(&mut self, key: &str) {
        if let Some(v) = self.map.remove(key) {
            self.used -= v.len();
            self.order.retain(|k| k != key);
        }
    }
}

impl From<BackendError> for std::io::Error {
    fn from(e: BackendError) -> Self {
        std::io::Error::other(e.to_string())
    }
}
