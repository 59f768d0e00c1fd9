//! Writing snapshots: tasks, items, parts, checkpoints, resume, commit.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::backend::keys;
use crate::canonical::{canonical_bytes, to_canonical_vec};
use crate::error::{Error, Result};
use crate::id::{random_hex16, Id};
use crate::index::{Index, IndexFile, IndexPack};
use crate::maintenance::load_marks;
use crate::mime::{MimeCutter, Piece};
use crate::pack::{BlobKind, PackBuilder, PackKind};
use crate::repo::{decode_meta, ChunkerParams, PackParams, Repository};
use crate::snapshot::{format_time, Snapshot, TaskRecord, TaskStatus};
use crate::tree::{build_tree, ContentRef, Entry, PartRef};

/// Which snapshot a new run builds on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ParentChoice {
    /// The newest live snapshot (the default).
    #[default]
    Latest,
    /// No parent: a fresh chain.
    None,
    /// This snapshot.
    Snapshot(Id),
    /// The newest live snapshot that has all these tags (e.g. a tenant tag, when several
    /// tenants share a repository); none if no snapshot has them.
    LatestTagged(Vec<String>),
}

/// Options for a backup run.
#[derive(Clone, Default)]
pub struct WriterOptions {
    /// Parent snapshot.
    pub parent: ParentChoice,
    /// Tags for the snapshot.
    pub tags: Vec<String>,
    /// Manifest hash (engine-computed).
    pub manifest_hash: Option<String>,
    /// Sign the snapshot with this key.
    pub signing_key: Option<SigningKey>,
    /// Override the repository's packing defaults.
    pub pack: Option<PackParams>,
    /// Override the run's start time (tests; importing).
    pub time: Option<chrono::DateTime<chrono::Utc>>,
    /// Minimum time between automatic checkpoints — after a step
    /// ([`TaskWriter::checkpoint_if_due`]) or when a task finishes — counted from the run's start
    /// (default 30 s; zero = one after every step and every finished task). Explicit
    /// checkpoints ([`TaskWriter::checkpoint`]) are always written.
    pub checkpoint_interval: Option<Duration>,
}

/// How a task lists its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskMode {
    /// Every item is listed; anything not listed is gone.
    Full,
    /// Only changes are listed (upserts and tombstones), merged onto the parent's tree for
    /// the task (an empty tree if the parent has none).
    Changes,
}

/// One item to store.
#[derive(Debug, Clone)]
pub struct Item<'a> {
    /// Kind (`user`, `group`, `message`, …).
    pub kind: &'a str,
    /// Stable id.
    pub id: &'a str,
    /// Display name.
    pub name: &'a str,
    /// JSON body (stored canonicalised).
    pub body: &'a serde_json::Value,
    /// Binary parts, already chunked with [`TaskWriter::write_part`] / [`ContentWriter`].
    pub parts: Vec<PartRef>,
}

/// What storing an item did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemOutcome {
    /// Blob id of the canonical body.
    pub body: Id,
    /// Whether the body was new to the repository (false: deduplicated).
    pub stored: bool,
}

/// Counters of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteStats {
    /// Items put.
    pub items: u64,
    /// Tombstones applied.
    pub deletions: u64,
    /// Blobs that were new.
    pub new_blobs: u64,
    /// Blobs that were already stored.
    pub deduplicated_blobs: u64,
    /// Plaintext bytes of new blobs.
    pub new_bytes: u64,
    /// Plaintext bytes handed in (all blobs, new or not).
    pub bytes_in: u64,
    /// Bytes of packs stored.
    pub stored_pack_bytes: u64,
    /// Packs stored.
    pub packs: u64,
    /// Bytes of index, checkpoint and snapshot objects stored.
    pub stored_meta_bytes: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
}

/// A task's entry in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointTask {
    /// Task name.
    pub name: String,
    /// `true` once the task finished (or failed) in this run.
    pub done: bool,
    /// Listing mode (running tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<TaskMode>,
    /// Final record (done tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<TaskRecord>,
    /// Tree of the entries so far, already merged onto the parent (running tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<Id>,
    /// Entries so far (running tasks).
    #[serde(default)]
    pub items: u64,
    /// The task's cursor: everything before it is in `tree` (running tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// A `checkpoints/<id>` object: resumable progress of an unfinished run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version (1).
    pub version: u32,
    /// Run id.
    pub run: String,
    /// Increases with every checkpoint of the run; the highest wins.
    pub seq: u64,
    /// Run start time.
    pub time: String,
    /// When this checkpoint was written.
    pub saved: String,
    /// The run's parent snapshot.
    pub parent: Option<Id>,
    /// Manifest hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_hash: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Tasks started so far.
    pub tasks: Vec<CheckpointTask>,
}

/// The latest checkpoint of an unfinished run.
#[derive(Debug, Clone)]
pub struct RunProgress {
    /// Object id of the checkpoint.
    pub id: Id,
    /// The checkpoint.
    pub checkpoint: Checkpoint,
}

/// A task's state in a run, for the engine deciding what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskProgress {
    /// Finished (or failed) in this run: do not run it again.
    Done(TaskRecord),
    /// Interrupted in an earlier attempt: reopen it with [`SnapshotWriter::task`] and continue
    /// from `cursor` (`None`: from the start; the entries stored so far are kept).
    Resumable {
        /// The cursor of the last checkpoint.
        cursor: Option<String>,
        /// Entries stored so far.
        items: u64,
    },
    /// Open right now.
    Running,
    /// Its writer was dropped without `finish` or `fail` (e.g. the task panicked). It may be
    /// opened again; if not, the snapshot records it as failed.
    Abandoned,
}

/// A task slot as seen by `save_progress`: running state, or a fixed checkpoint entry.
type Slot = (
    String,
    Option<Arc<Mutex<TaskState>>>,
    Option<CheckpointTask>,
);

struct TaskState {
    mode: TaskMode,
    entries: BTreeMap<(String, String), Entry>,
    cursor: Option<String>,
}

enum TaskSlot {
    Running(Arc<Mutex<TaskState>>),
    Done(TaskRecord),
    Resumable(CheckpointTask),
    Abandoned,
}

struct State {
    data: PackBuilder,
    tree: PackBuilder,
    pending: HashSet<Id>,
    written: HashSet<Id>,
    unindexed: Vec<IndexPack>,
    unindexed_blobs: usize,
    deduped_packs: HashSet<Id>,
    seq: u64,
    stats: WriteStats,
    poisoned: Option<String>,
    /// When the last checkpoint was written (the run's start before the first).
    last_checkpoint: Instant,
    /// Packs being uploaded right now (outside the lock).
    in_flight: usize,
}

struct Shared {
    repo: Repository,
    run: String,
    time: String,
    parent: Option<(Id, Snapshot)>,
    tags: Vec<String>,
    manifest_hash: Option<String>,
    signing_key: Option<SigningKey>,
    pack: PackParams,
    chunker: ChunkerParams,
    chunker_seed: u64,
    checkpoint_interval: Duration,
    index: Arc<Index>,
    excluded: HashSet<Id>,
    state: Mutex<State>,
    /// Signalled when an upload finishes.
    uploaded: Condvar,
    tasks: Mutex<BTreeMap<String, TaskSlot>>,
    /// Held while a checkpoint is taken and written, so checkpoints are written one at a time
    /// and a higher `seq` always records a later state of every task (two tasks checkpointing
    /// at once could otherwise store an older view under the newer number).
    saving: Mutex<()>,
}

/// Writes one snapshot. Share it between tasks with `Arc` (all methods take `&self`).
pub struct SnapshotWriter {
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SnapshotWriter {
    /// Start a new run.
    pub fn new(repo: &Repository, opts: WriterOptions) -> Result<SnapshotWriter> {
        let parent = match &opts.parent {
            ParentChoice::None => None,
            ParentChoice::Latest => repo.latest_snapshot()?.map(|s| (s.id, s.snapshot)),
            ParentChoice::Snapshot(id) => Some((*id, repo.snapshot(id)?)),
            ParentChoice::LatestTagged(tags) => repo
                .snapshots()?
                .into_iter()
                .rev()
                .find(|s| tags.iter().all(|t| s.snapshot.tags.contains(t)))
                .map(|s| (s.id, s.snapshot)),
        };
        let time = format_time(opts.time.unwrap_or_else(chrono::Utc::now));
        let tags = opts.tags.clone();
        let manifest_hash = opts.manifest_hash.clone();
        Self::start(
            repo,
            opts,
            random_hex16(),
            time,
            parent,
            tags,
            manifest_hash,
            0,
            BTreeMap::new(),
        )
    }

    /// Continue an interrupted run from its latest checkpoint (see
    /// [`Repository::unfinished_runs`]). Finished tasks stay finished; interrupted ones are
    /// [`TaskProgress::Resumable`].
    pub fn resume(
        repo: &Repository,
        run: &RunProgress,
        opts: WriterOptions,
    ) -> Result<SnapshotWriter> {
        let cp = &run.checkpoint;
        let parent = match cp.parent {
            Some(id) => Some((id, repo.snapshot(&id)?)),
            None => None,
        };
        let mut tasks = BTreeMap::new();
        for t in &cp.tasks {
            let slot = match (&t.record, t.done) {
                (Some(r), true) => TaskSlot::Done(r.clone()),
                _ => TaskSlot::Resumable(t.clone()),
            };
            tasks.insert(t.name.clone(), slot);
        }
        Self::start(
            repo,
            opts,
            cp.run.clone(),
            cp.time.clone(),
            parent,
            cp.tags.clone(),
            cp.manifest_hash.clone(),
            cp.seq,
            tasks,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn start(
        repo: &Repository,
        opts: WriterOptions,
        run: String,
        time: String,
        parent: Option<(Id, Snapshot)>,
        tags: Vec<String>,
        manifest_hash: Option<String>,
        seq: u64,
        tasks: BTreeMap<String, TaskSlot>,
    ) -> Result<SnapshotWriter> {
        let index = repo.refresh_index()?;
        // Packs a prune has marked for deletion are not deduplicated against: their blobs are
        // written again, so the run never depends on a pack that may vanish.
        let excluded = load_marks(repo)?
            .into_iter()
            .flat_map(|(_, m)| m.packs.into_iter().filter_map(|k| keys::id_of(&k)))
            .collect();
        let pack = opts.pack.unwrap_or(repo.config().pack);
        pack.validate()?;
        let level = pack.zstd_level;
        let frame = pack.frame_size as usize;
        let shared = Shared {
            repo: repo.clone(),
            run,
            time,
            parent,
            tags,
            manifest_hash,
            signing_key: opts.signing_key,
            pack,
            chunker: repo.config().chunker,
            chunker_seed: repo.id_key().chunker_seed(),
            checkpoint_interval: opts.checkpoint_interval.unwrap_or(Duration::from_secs(30)),
            index,
            excluded,
            state: Mutex::new(State {
                data: PackBuilder::new(PackKind::Data, level, frame),
                tree: PackBuilder::new(PackKind::Tree, level, frame),
                pending: HashSet::new(),
                written: HashSet::new(),
                unindexed: Vec::new(),
                unindexed_blobs: 0,
                deduped_packs: HashSet::new(),
                seq,
                stats: WriteStats::default(),
                poisoned: None,
                last_checkpoint: Instant::now(),
                in_flight: 0,
            }),
            uploaded: Condvar::new(),
            tasks: Mutex::new(tasks),
            saving: Mutex::new(()),
        };
        Ok(SnapshotWriter {
            shared: Arc::new(shared),
        })
    }

    /// The run id.
    pub fn run_id(&self) -> &str {
        &self.shared.run
    }

    /// The parent snapshot id.
    pub fn parent(&self) -> Option<Id> {
        self.shared.parent.as_ref().map(|(id, _)| *id)
    }

    /// The parent's record of a task (its checkpoint is the delta link to continue from).
    pub fn parent_task(&self, name: &str) -> Option<TaskRecord> {
        self.shared
            .parent
            .as_ref()
            .and_then(|(_, s)| s.task(name).cloned())
    }

    /// Counters so far.
    pub fn stats(&self) -> WriteStats {
        lock(&self.shared.state).stats.clone()
    }

    /// Where a task stands in this run (`None`: not started).
    pub fn task_progress(&self, name: &str) -> Option<TaskProgress> {
        lock(&self.shared.tasks).get(name).map(|s| match s {
            TaskSlot::Running(_) => TaskProgress::Running,
            TaskSlot::Done(r) => TaskProgress::Done(r.clone()),
            TaskSlot::Resumable(t) => TaskProgress::Resumable {
                cursor: t.cursor.clone(),
                items: t.items,
            },
            TaskSlot::Abandoned => TaskProgress::Abandoned,
        })
    }

    /// Open a task. A task interrupted in an earlier attempt of this run is reopened with its
    /// entries and cursor (`mode` is then the one it started with).
    pub fn task(&self, name: &str, mode: TaskMode) -> Result<TaskWriter> {
        self.shared.check_poisoned()?;
        // Claim the slot, then load the base entries without holding the task table (other
        // tasks keep going); a concurrent checkpoint waits on this task's own lock instead.
        let state = Arc::new(Mutex::new(TaskState {
            mode,
            entries: BTreeMap::new(),
            cursor: None,
        }));
        let mut guard = lock(&state);
        let base = {
            let mut tasks = lock(&self.shared.tasks);
            let base = match tasks.get(name) {
                Some(TaskSlot::Running(_)) => {
                    return Err(Error::Usage(format!("task {name} is already open")))
                }
                Some(TaskSlot::Done(_)) => {
                    return Err(Error::Usage(format!(
                        "task {name} already finished in this run"
                    )))
                }
                Some(TaskSlot::Resumable(t)) => {
                    guard.mode = t.mode.unwrap_or(mode);
                    guard.cursor = t.cursor.clone();
                    t.tree
                }
                None | Some(TaskSlot::Abandoned) => match mode {
                    TaskMode::Changes => self.parent_task(name).map(|rec| rec.tree),
                    TaskMode::Full => None,
                },
            };
            let previous = tasks.insert(name.to_string(), TaskSlot::Running(state.clone()));
            (base, previous)
        };
        let (base, previous) = base;
        if let Some(tree) = base {
            match self.shared.repo.tree_entries(tree) {
                Ok(entries) => {
                    for e in entries {
                        guard.entries.insert((e.kind.clone(), e.id.clone()), e);
                    }
                }
                Err(e) => {
                    drop(guard);
                    // Put the slot back as it was, so the caller may retry or fail the task.
                    let mut tasks = lock(&self.shared.tasks);
                    match previous {
                        Some(p) => tasks.insert(name.to_string(), p),
                        None => tasks.remove(name),
                    };
                    return Err(e);
                }
            }
        }
        let resumed_cursor = guard.cursor.clone();
        drop(guard);
        Ok(TaskWriter {
            shared: self.shared.clone(),
            name: name.to_string(),
            state,
            resumed_cursor,
        })
    }

    /// Copy a task unchanged from the parent snapshot (status `carried`).
    pub fn carry_task(&self, name: &str) -> Result<()> {
        let rec = self
            .parent_task(name)
            .ok_or_else(|| Error::Usage(format!("the parent snapshot has no task {name}")))?;
        let mut tasks = lock(&self.shared.tasks);
        if tasks.contains_key(name) {
            return Err(Error::Usage(format!(
                "task {name} was already started in this run"
            )));
        }
        tasks.insert(
            name.to_string(),
            TaskSlot::Done(TaskRecord {
                status: TaskStatus::Carried,
                error: None,
                ..rec
            }),
        );
        Ok(())
    }

    /// Carry every parent task not started in this run.
    pub fn carry_remaining(&self) -> Result<()> {
        let names: Vec<String> = match &self.shared.parent {
            Some((_, s)) => s.tasks.iter().map(|t| t.name.clone()).collect(),
            None => return Ok(()),
        };
        for n in names {
            if !lock(&self.shared.tasks).contains_key(&n) {
                self.carry_task(&n)?;
            }
        }
        Ok(())
    }

    /// A streaming writer for a large binary content (chunked as it arrives).
    pub fn content_writer(&self) -> ContentWriter<'static> {
        ContentWriter::new(self.shared.clone())
    }

    /// Write everything stored so far and a checkpoint object, so a rerun can resume.
    pub fn save_progress(&self) -> Result<()> {
        self.shared.save_progress()
    }

    /// Finish the run: store remaining packs and the index, then the snapshot object.
    /// Every task must be finished or failed; tasks interrupted in an earlier attempt and not
    /// reopened count as failed ("interrupted"). `stats` is stored as the run statistics; if it
    /// is a JSON object without a `repository` member, the writer's [`WriteStats`] are added
    /// under that name.
    pub fn commit(self, mut stats: serde_json::Value) -> Result<Id> {
        let sh = &self.shared;
        sh.check_poisoned()?;
        let mut records = Vec::new();
        {
            let tasks = lock(&sh.tasks);
            for (name, slot) in tasks.iter() {
                match slot {
                    TaskSlot::Running(_) => {
                        return Err(Error::Usage(format!(
                            "task {name} is still open: finish or fail it before commit"
                        )))
                    }
                    TaskSlot::Done(r) => records.push(r.clone()),
                    TaskSlot::Resumable(_) => {
                        records.push(sh.failed_record(name, "interrupted and not resumed")?)
                    }
                    TaskSlot::Abandoned => records.push(sh.failed_record(
                        name,
                        "the task's writer was dropped without finish or fail",
                    )?),
                }
            }
        }
        {
            let st = sh.flush_all()?;
            // A prune running concurrently may have deleted packs this run deduplicated
            // against (if the run outlived the grace period). Make sure they all still exist
            // before the snapshot can refer to them: one listing per pack directory involved.
            let mut dirs: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for p in &st.deduped_packs {
                let kind = sh
                    .index
                    .packs()
                    .get(p)
                    .map(|i| i.kind)
                    .unwrap_or(PackKind::Data);
                let key = kind.key(p);
                let dir =
                    key[..key.rfind('/').expect("pack keys have a directory") + 1].to_string();
                dirs.entry(dir).or_default().push(key);
            }
            for (dir, wanted) in dirs {
                let present: HashSet<String> = sh
                    .repo
                    .backend()
                    .list(&dir)?
                    .into_iter()
                    .map(|o| o.key)
                    .collect();
                if let Some(missing) = wanted.into_iter().find(|k| !present.contains(k)) {
                    return Err(Error::ConcurrentPrune(missing));
                }
            }
        }
        records.sort_by(|a, b| a.name.cmp(&b.name));
        let failed: Vec<String> = records
            .iter()
            .filter(|r| r.status == TaskStatus::Failed)
            .map(|r| r.name.clone())
            .collect();
        let mut snap = Snapshot {
            version: 1,
            time: sh.time.clone(),
            run: sh.run.clone(),
            parent: sh.parent.as_ref().map(|(id, _)| *id),
            manifest_hash: sh.manifest_hash.clone(),
            tags: sh.tags.clone(),
            partial: !failed.is_empty(),
            failed_tasks: failed,
            tasks: records,
            stats: {
                // The repository's own counters go in beside the engine's, unless it set them.
                if let serde_json::Value::Object(m) = &mut stats {
                    if !m.contains_key("repository") {
                        let ws = lock(&sh.state).stats.clone();
                        m.insert("repository".into(), serde_json::to_value(ws)?);
                    }
                }
                stats
            },
            signature: None,
        };
        if let Some(k) = &sh.signing_key {
            snap.sign(k);
        }
        let bytes = to_canonical_vec(&snap)?;
        let id = sh.repo.id_key().hash(&bytes);
        let n = bytes.len() as u64;
        sh.repo
            .backend()
            .put(&keys::flat(keys::SNAPSHOTS_PREFIX, &id), bytes)?;
        lock(&sh.state).stats.stored_meta_bytes += n;
        Ok(id)
    }
}

impl Shared {
    fn check_poisoned(&self) -> Result<()> {
        if let Some(p) = &lock(&self.state).poisoned {
            return Err(Error::Usage(format!(
                "this run stopped after a storage failure ({p}); start it again to resume"
            )));
        }
        Ok(())
    }

    fn failed_record(&self, name: &str, error: &str) -> Result<TaskRecord> {
        Ok(match self.parent.as_ref().and_then(|(_, s)| s.task(name)) {
            Some(p) => TaskRecord {
                status: TaskStatus::Failed,
                error: Some(error.to_string()),
                ..p.clone()
            },
            None => {
                let (tree, _) = build_tree(self.repo.id_key(), std::iter::empty(), |b| {
                    self.store_blob(BlobKind::Tree, b).map(|(id, _)| id)
                })?;
                TaskRecord {
                    name: name.to_string(),
                    tree,
                    items: 0,
                    checkpoint: None,
                    status: TaskStatus::Failed,
                    error: Some(error.to_string()),
                }
            }
        })
    }

    /// Store a blob unless already stored. Returns its id and whether it was new.
    fn store_blob(&self, kind: BlobKind, bytes: Vec<u8>) -> Result<(Id, bool)> {
        let id = self.repo.id_key().hash(&bytes);
        let mut st = lock(&self.state);
        if let Some(p) = &st.poisoned {
            return Err(Error::Usage(format!(
                "run stopped after a storage failure: {p}"
            )));
        }
        st.stats.bytes_in += bytes.len() as u64;
        if st.pending.contains(&id) || st.written.contains(&id) {
            st.stats.deduplicated_blobs += 1;
            return Ok((id, false));
        }
        if let Some(p) = self.index.contains_outside(&id, &self.excluded) {
            st.deduped_packs.insert(p);
            st.stats.deduplicated_blobs += 1;
            return Ok((id, false));
        }
        let pk = PackKind::for_blob(kind);
        st.stats.new_blobs += 1;
        st.stats.new_bytes += bytes.len() as u64;
        st.pending.insert(id);
        let full = {
            let b = match pk {
                PackKind::Data => &mut st.data,
                PackKind::Tree => &mut st.tree,
            };
            b.add(id, kind, &bytes);
            b.approx_size() >= self.pack.target_size as usize
        };
        if full {
            // Compress the header and upload outside the lock, so tasks keep adding blobs
            // (and an encrypting backend encrypts packs in parallel).
            let builder = self.take_builder(&mut st, pk);
            drop(st);
            self.upload(builder)?;
            st = lock(&self.state);
        }
        if st.unindexed_blobs >= 20_000 {
            self.write_index(&mut st)?;
        }
        Ok((id, true))
    }

    /// Swap in an empty builder and count the full one as in flight.
    fn take_builder(&self, st: &mut State, pk: PackKind) -> PackBuilder {
        let level = self.pack.zstd_level;
        let frame = self.pack.frame_size as usize;
        st.in_flight += 1;
        match pk {
            PackKind::Data => std::mem::replace(&mut st.data, PackBuilder::new(pk, level, frame)),
            PackKind::Tree => std::mem::replace(&mut st.tree, PackBuilder::new(pk, level, frame)),
        }
    }

    /// Finish and store a pack taken with `take_builder` (called without the state lock).
    fn upload(&self, builder: PackBuilder) -> Result<()> {
        let p = builder.finish(self.repo.id_key());
        let size = p.bytes.len() as u64;
        let pk = p.kind;
        let key = pk.key(&p.id);
        let put = self.repo.backend().put(&key, p.bytes);
        let mut st = lock(&self.state);
        st.in_flight -= 1;
        self.uploaded.notify_all();
        if let Err(e) = put {
            st.poisoned = Some(e.to_string());
            return Err(e.into());
        }
        let mut n = 0;
        for f in &p.frames {
            for b in &f.blobs {
                st.pending.remove(&b.id);
                st.written.insert(b.id);
                n += 1;
            }
        }
        st.unindexed_blobs += n;
        st.stats.stored_pack_bytes += size;
        st.stats.packs += 1;
        st.unindexed.push(IndexPack {
            id: p.id,
            kind: pk,
            size,
            frames: p.frames,
        });
        Ok(())
    }

    fn write_index(&self, st: &mut State) -> Result<()> {
        if st.unindexed.is_empty() {
            return Ok(());
        }
        let file = IndexFile {
            version: 1,
            supersedes: Vec::new(),
            packs: std::mem::take(&mut st.unindexed),
        };
        st.unindexed_blobs = 0;
        let bytes = crate::repo::encode_meta(&file);
        let id = self.repo.id_key().hash(&bytes);
        st.stats.stored_meta_bytes += bytes.len() as u64;
        if let Err(e) = self
            .repo
            .backend()
            .put(&keys::flat(keys::INDEX_PREFIX, &id), bytes)
        {
            st.poisoned = Some(e.to_string());
            return Err(e.into());
        }
        Ok(())
    }

    /// Store the open packs, wait for every upload in flight, then write the index. Returns
    /// with the state locked, so the caller can write a checkpoint or the snapshot next.
    fn flush_all(&self) -> Result<MutexGuard<'_, State>> {
        let mut st = lock(&self.state);
        let mut builders = Vec::new();
        for pk in [PackKind::Data, PackKind::Tree] {
            let empty = match pk {
                PackKind::Data => st.data.is_empty(),
                PackKind::Tree => st.tree.is_empty(),
            };
            if !empty {
                builders.push(self.take_builder(&mut st, pk));
            }
        }
        drop(st);
        for b in builders {
            self.upload(b)?;
        }
        let mut st = lock(&self.state);
        while st.in_flight > 0 && st.poisoned.is_none() {
            st = self.uploaded.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        if let Some(p) = &st.poisoned {
            return Err(Error::Usage(format!(
                "run stopped after a storage failure: {p}"
            )));
        }
        self.write_index(&mut st)?;
        Ok(st)
    }

    /// Writes a checkpoint if one is due: `checkpoint_interval` has passed since the last one (or
    /// since the run started). Returns whether it wrote one.
    fn save_progress_if_due(&self) -> Result<bool> {
        let _saving = lock(&self.saving);
        if lock(&self.state).last_checkpoint.elapsed() < self.checkpoint_interval {
            return Ok(false);
        }
        self.save_progress_locked()?;
        Ok(true)
    }

    fn save_progress(&self) -> Result<()> {
        let _saving = lock(&self.saving);
        self.save_progress_locked()
    }

    /// Takes and writes a checkpoint; the caller holds `saving`.
    fn save_progress_locked(&self) -> Result<()> {
        self.check_poisoned()?;
        let slots: Vec<Slot> = lock(&self.tasks)
            .iter()
            .map(|(name, slot)| match slot {
                TaskSlot::Running(s) => (name.clone(), Some(s.clone()), None),
                TaskSlot::Done(r) => (
                    name.clone(),
                    None,
                    Some(CheckpointTask {
                        name: name.clone(),
                        done: true,
                        mode: None,
                        record: Some(r.clone()),
                        tree: None,
                        items: r.items,
                        cursor: None,
                    }),
                ),
                TaskSlot::Resumable(t) => (name.clone(), None, Some(t.clone())),
                TaskSlot::Abandoned => (name.clone(), None, None),
            })
            .collect();
        let mut tasks = Vec::new();
        for (name, running, fixed) in slots {
            if let Some(t) = fixed {
                tasks.push(t);
                continue;
            }
            let Some(s) = running else {
                continue; // abandoned: not resumable
            };
            let ts = lock(&s);
            let (tree, items) = build_tree(self.repo.id_key(), ts.entries.values(), |b| {
                self.store_blob(BlobKind::Tree, b).map(|(id, _)| id)
            })?;
            tasks.push(CheckpointTask {
                name,
                done: false,
                mode: Some(ts.mode),
                record: None,
                tree: Some(tree),
                items,
                cursor: ts.cursor.clone(),
            });
        }
        let mut st = self.flush_all()?;
        st.seq += 1;
        let cp = Checkpoint {
            version: 1,
            run: self.run.clone(),
            seq: st.seq,
            time: self.time.clone(),
            saved: format_time(chrono::Utc::now()),
            parent: self.parent.as_ref().map(|(id, _)| *id),
            manifest_hash: self.manifest_hash.clone(),
            tags: self.tags.clone(),
            tasks,
        };
        let bytes = crate::repo::encode_meta(&cp);
        let id = self.repo.id_key().hash(&bytes);
        st.stats.stored_meta_bytes += bytes.len() as u64;
        st.stats.checkpoints += 1;
        if let Err(e) = self
            .repo
            .backend()
            .put(&keys::flat(keys::CHECKPOINTS_PREFIX, &id), bytes)
        {
            st.poisoned = Some(e.to_string());
            return Err(e.into());
        }
        st.last_checkpoint = Instant::now();
        Ok(())
    }

    fn store_content(&self, data: &[u8], chunking: Chunking) -> Result<ContentRef> {
        let mut w = ContentWriter::new_ref(self).with_chunking(chunking);
        w.push(data)?;
        w.finish_ref()
    }
}

/// Writes one task's listing.
pub struct TaskWriter {
    shared: Arc<Shared>,
    name: String,
    state: Arc<Mutex<TaskState>>,
    resumed_cursor: Option<String>,
}

impl TaskWriter {
    /// Task name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cursor to continue from when this task was reopened after an interruption.
    pub fn resumed_cursor(&self) -> Option<&str> {
        self.resumed_cursor.as_deref()
    }

    /// The listing mode.
    pub fn mode(&self) -> TaskMode {
        lock(&self.state).mode
    }

    /// Store an item (replacing any entry with the same kind and id).
    pub fn put_item(&self, item: &Item<'_>) -> Result<ItemOutcome> {
        let bytes = canonical_bytes(item.body);
        let (body, stored) = self.shared.store_blob(BlobKind::Item, bytes)?;
        let entry = Entry {
            kind: item.kind.to_string(),
            id: item.id.to_string(),
            name: item.name.to_string(),
            body,
            parts: item.parts.clone(),
        };
        lock(&self.state)
            .entries
            .insert((entry.kind.clone(), entry.id.clone()), entry);
        lock(&self.shared.state).stats.items += 1;
        Ok(ItemOutcome { body, stored })
    }

    /// Store an item whose body is JSON text (as a plugin hands it over); it is parsed and
    /// stored canonicalised, like [`TaskWriter::put_item`].
    pub fn put_item_json(
        &self,
        kind: &str,
        id: &str,
        name: &str,
        json: &str,
        parts: Vec<PartRef>,
    ) -> Result<ItemOutcome> {
        let body: serde_json::Value = serde_json::from_str(json)?;
        self.put_item(&Item {
            kind,
            id,
            name,
            body: &body,
            parts,
        })
    }

    /// Record that an item no longer exists (a tombstone in a change listing).
    ///
    /// A **prefix tombstone**, an id ending in `/*` (`g1/*`), removes every item of `kind`
    /// whose id starts with the text before the `*` (`g1/…`): the links of a container that
    /// left the source (WIT `tombstone`). The id `*` alone removes every item of `kind` in the
    /// task: a collector whose enumeration was reset mid-run (a drive delta's 410) clears what
    /// it listed and lists everything again. Returns how many items were removed.
    pub fn delete_item(&self, kind: &str, id: &str) -> usize {
        let prefix = match id {
            "*" => Some(""),
            _ => id.strip_suffix('*').filter(|p| p.ends_with('/')),
        };
        let removed = match prefix {
            Some(prefix) => self.delete_prefix(kind, prefix),
            None => {
                let n = lock(&self.state)
                    .entries
                    .remove(&(kind.to_string(), id.to_string()))
                    .is_some();
                usize::from(n)
            }
        };
        lock(&self.shared.state).stats.deletions += 1;
        removed
    }

    /// Removes every item of `kind` whose id starts with `prefix`; returns how many.
    pub fn delete_prefix(&self, kind: &str, prefix: &str) -> usize {
        let mut st = lock(&self.state);
        let doomed: Vec<(String, String)> = st
            .entries
            .range((kind.to_string(), prefix.to_string())..)
            .map(|(k, _)| k)
            .take_while(|(k, i)| k == kind && i.starts_with(prefix))
            .cloned()
            .collect();
        for k in &doomed {
            st.entries.remove(k);
        }
        doomed.len()
    }

    /// Chunk and store a binary part held in memory.
    pub fn write_part(&self, name: &str, data: &[u8]) -> Result<PartRef> {
        self.write_part_with(name, Chunking::ContentDefined, data)
    }

    /// Chunk and store a binary part held in memory, cut as `chunking` says (see
    /// [`Chunking::for_content_type`]).
    pub fn write_part_with(&self, name: &str, chunking: Chunking, data: &[u8]) -> Result<PartRef> {
        Ok(self.shared.store_content(data, chunking)?.named(name))
    }

    /// Chunk and store a binary part from a reader, never holding it whole in memory.
    pub fn write_part_from(&self, name: &str, mut r: impl Read) -> Result<PartRef> {
        let mut w = ContentWriter::new(self.shared.clone());
        std::io::copy(&mut r, &mut w)?;
        Ok(w.finish()?.named(name))
    }

    /// A streaming writer for a large part.
    pub fn content_writer(&self) -> ContentWriter<'static> {
        ContentWriter::new(self.shared.clone())
    }

    /// A streaming writer for a large part, cut as `chunking` says.
    pub fn content_writer_with(&self, chunking: Chunking) -> ContentWriter<'static> {
        ContentWriter::new(self.shared.clone()).with_chunking(chunking)
    }

    /// Note the task's cursor: every item before it has been put.
    pub fn set_cursor(&self, cursor: impl Into<String>) {
        lock(&self.state).cursor = Some(cursor.into());
    }

    /// Set the cursor and write a checkpoint (of the whole run), so a rerun resumes here.
    pub fn checkpoint(&self, cursor: impl Into<String>) -> Result<()> {
        self.set_cursor(cursor);
        self.shared.save_progress()
    }

    /// Set the cursor and write a checkpoint if one is due: at most one per `checkpoint_interval`
    /// (counted from the run's start, then from the last checkpoint). A checkpoint records every
    /// task of the run and flushes the open packs, so writing one per step would cost O(tasks) per step and leave many small packs;
    /// a crash loses at most one interval of work, which the rerun lists again (and dedups).
    /// Returns whether a checkpoint was written.
    pub fn checkpoint_if_due(&self, cursor: impl Into<String>) -> Result<bool> {
        self.set_cursor(cursor);
        self.shared.save_progress_if_due()
    }

    /// Finish the task: build its tree. `checkpoint` is the state to start the next run from
    /// (e.g. the delta link). May write a checkpoint (see `checkpoint_interval`).
    pub fn finish(self, checkpoint: Option<String>) -> Result<TaskRecord> {
        let (tree, items) = {
            let ts = lock(&self.state);
            build_tree(self.shared.repo.id_key(), ts.entries.values(), |b| {
                self.shared.store_blob(BlobKind::Tree, b).map(|(id, _)| id)
            })?
        };
        let rec = TaskRecord {
            name: self.name.clone(),
            tree,
            items,
            checkpoint,
            status: TaskStatus::Complete,
            error: None,
        };
        self.done(rec)
    }

    /// The task failed: the snapshot keeps the parent's tree and checkpoint for it (if any)
    /// and is marked partial.
    pub fn fail(self, error: &str) -> Result<TaskRecord> {
        let rec = self.shared.failed_record(&self.name, error)?;
        self.done(rec)
    }

    fn done(self, rec: TaskRecord) -> Result<TaskRecord> {
        lock(&self.shared.tasks).insert(self.name.clone(), TaskSlot::Done(rec.clone()));
        self.shared.save_progress_if_due()?;
        Ok(rec)
    }
}

/// The first cut point of `data` (at most `max_size`).
fn cut_point(p: ChunkerParams, seed: u64, data: &[u8]) -> usize {
    let c = fastcdc::v2020::FastCDC::with_level_and_seed(
        data,
        p.min_size,
        p.avg_size,
        p.max_size,
        fastcdc::v2020::Normalization::Level1,
        seed,
    );
    c.cut(0, data.len()).1
}

impl Drop for TaskWriter {
    fn drop(&mut self) {
        let mut tasks = lock(&self.shared.tasks);
        if let Some(TaskSlot::Running(s)) = tasks.get(&self.name) {
            if Arc::ptr_eq(s, &self.state) {
                tasks.insert(self.name.clone(), TaskSlot::Abandoned);
            }
        }
    }
}

enum SharedRef<'a> {
    Owned(Arc<Shared>),
    Borrowed(&'a Shared),
}

impl SharedRef<'_> {
    fn get(&self) -> &Shared {
        match self {
            SharedRef::Owned(a) => a,
            SharedRef::Borrowed(b) => b,
        }
    }
}

/// How a part's bytes are cut into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Chunking {
    /// Content-defined chunking (FastCDC) only.
    #[default]
    ContentDefined,
    /// MIME (`message/rfc822`): content-defined chunking between forced cuts after every
    /// header block and before every boundary line, so an attachment (or any body) that
    /// several messages share is stored once, whatever headers surround each copy.
    Mime,
}

impl Chunking {
    /// The chunking for a part of this content type: [`Chunking::Mime`] for
    /// `message/rfc822` and `message/global` (parameters and case ignored).
    pub fn for_content_type(content_type: &str) -> Chunking {
        let media = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "message/rfc822" | "message/global" => Chunking::Mime,
            _ => Chunking::ContentDefined,
        }
    }
}

/// Chunks a stream with FastCDC as it is written; each chunk is stored as it is cut, so at most
/// one maximum-size chunk is buffered. [`ContentWriter::cut`] forces a chunk boundary;
/// [`Chunking::Mime`] places forced cuts at MIME structure. [`ContentWriter::finish`] returns
/// the [`ContentRef`].
pub struct ContentWriter<'a> {
    shared: SharedRef<'a>,
    buf: Vec<u8>,
    chunks: Vec<Id>,
    size: u64,
    mime: Option<Box<MimeCutter>>,
}

impl<'a> ContentWriter<'a> {
    fn new(shared: Arc<Shared>) -> ContentWriter<'static> {
        ContentWriter {
            shared: SharedRef::Owned(shared),
            buf: Vec::new(),
            chunks: Vec::new(),
            size: 0,
            mime: None,
        }
    }

    fn new_ref(shared: &'a Shared) -> ContentWriter<'a> {
        ContentWriter {
            shared: SharedRef::Borrowed(shared),
            buf: Vec::new(),
            chunks: Vec::new(),
            size: 0,
            mime: None,
        }
    }

    fn with_chunking(mut self, chunking: Chunking) -> Self {
        self.mime = match chunking {
            Chunking::ContentDefined => None,
            Chunking::Mime => Some(Box::new(MimeCutter::new())),
        };
        self
    }

    /// Ends the current chunk here: the bytes written so far are chunked as if the content
    /// ended, and the next byte starts a new chunk. Content between two cuts is therefore
    /// chunked the same wherever it appears. A cut with nothing written since the last one
    /// does nothing.
    pub fn cut(&mut self) -> Result<()> {
        while !self.buf.is_empty() {
            let n = self.cut_point(&self.buf);
            self.emit(n.max(1))?;
        }
        Ok(())
    }

    fn params(&self) -> (ChunkerParams, u64) {
        let s = self.shared.get();
        (s.chunker, s.chunker_seed)
    }

    fn cut_point(&self, data: &[u8]) -> usize {
        let (p, seed) = self.params();
        cut_point(p, seed, data)
    }

    fn push(&mut self, data: &[u8]) -> Result<()> {
        match self.mime.take() {
            None => self.push_bytes(data),
            Some(mut m) => {
                let r = m.feed(data, &mut |p| self.piece(p));
                self.mime = Some(m);
                r
            }
        }
    }

    fn piece(&mut self, p: Piece<'_>) -> Result<()> {
        match p {
            Piece::Bytes(b) => self.push_bytes(b),
            Piece::Cut => self.cut(),
        }
    }

    fn push_bytes(&mut self, data: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(data);
        self.size += data.len() as u64;
        let max = self.params().0.max_size as usize;
        while self.buf.len() >= max {
            let n = self.cut_point(&self.buf[..max]).min(max);
            self.emit(n)?;
        }
        Ok(())
    }

    fn emit(&mut self, n: usize) -> Result<()> {
        let rest = self.buf.split_off(n);
        let chunk = std::mem::replace(&mut self.buf, rest);
        let (id, _) = self.shared.get().store_blob(BlobKind::Chunk, chunk)?;
        self.chunks.push(id);
        Ok(())
    }

    fn finish_ref(mut self) -> Result<ContentRef> {
        if let Some(mut m) = self.mime.take() {
            m.finish(&mut |p| self.piece(p))?;
        }
        self.cut()?;
        Ok(ContentRef {
            size: self.size,
            chunks: self.chunks,
        })
    }

    /// Store the rest and return the content reference.
    pub fn finish(self) -> Result<ContentRef> {
        self.finish_ref()
    }
}

impl Write for ContentWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.push(data)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Repository {
    /// Unfinished runs (no snapshot carries their run id), newest first, each with its latest
    /// checkpoint. Unreadable checkpoint objects are skipped.
    pub fn unfinished_runs(&self) -> Result<Vec<RunProgress>> {
        let finished: HashSet<String> = self
            .snapshots()?
            .into_iter()
            .map(|s| s.snapshot.run)
            .collect();
        let mut latest: BTreeMap<String, RunProgress> = BTreeMap::new();
        for o in self.backend().list(keys::CHECKPOINTS_PREFIX)? {
            let Some(id) = keys::id_of(&o.key) else {
                continue;
            };
            let cp: Checkpoint = match self
                .backend()
                .get(&o.key)
                .map_err(Error::from)
                .and_then(|b| decode_meta(&o.key, &b))
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(object = %o.key, "skipping unreadable checkpoint: {e}");
                    continue;
                }
            };
            if finished.contains(&cp.run) {
                continue;
            }
            let newer = latest
                .get(&cp.run)
                .is_none_or(|r| r.checkpoint.seq < cp.seq);
            if newer {
                latest.insert(cp.run.clone(), RunProgress { id, checkpoint: cp });
            }
        }
        let mut out: Vec<RunProgress> = latest.into_values().collect();
        out.sort_by(|a, b| b.checkpoint.saved.cmp(&a.checkpoint.saved));
        Ok(out)
    }

    /// Chunk `r` with the repository's chunker and return the chunk boundaries' sizes
    /// (for tools and tests; nothing is stored).
    pub fn chunk_sizes(&self, mut r: impl Read) -> Result<Vec<usize>> {
        let mut data = Vec::new();
        r.read_to_end(&mut data)?;
        let p = self.config().chunker;
        let c = fastcdc::v2020::FastCDC::with_level_and_seed(
            &data,
            p.min_size,
            p.avg_size,
            p.max_size,
            fastcdc::v2020::Normalization::Level1,
            self.id_key().chunker_seed(),
        );
        Ok(c.map(|ch| ch.length).collect())
    }
}
