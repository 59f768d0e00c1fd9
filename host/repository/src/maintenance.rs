//! check, forget, prune.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::backend::{keys, DeleteOutcome};
use crate::canonical::to_canonical_vec;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{Index, IndexFile};
use crate::pack::{parse_header, read_frame};
use crate::repo::Repository;
use crate::snapshot::{format_time, Snapshot};
use crate::tree::Node;
use crate::writer::Checkpoint;

/// A `marks/<id>` object: packs found unused by a prune, to delete after the grace period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    /// Format version (1).
    pub version: u32,
    /// When marked.
    pub time: String,
    /// Pack keys.
    pub packs: Vec<String>,
}

/// All prune marks.
pub(crate) fn load_marks(repo: &Repository) -> Result<Vec<(String, Mark)>> {
    let mut out = Vec::new();
    for o in repo.backend().list(keys::MARKS_PREFIX)? {
        match repo.get_meta::<Mark>(&o.key) {
            Ok(m) => out.push((o.key, m)),
            Err(Error::Backend(e)) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Which packs `check` reads in full.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum ReadData {
    /// None (structure only).
    #[default]
    None,
    /// All packs.
    All,
    /// Subset `n` of `m` (1-based), by pack id: `1/5` reads a fifth; `1/5`..`5/5` cover all.
    Fraction {
        /// Which part.
        n: u32,
        /// Of how many.
        m: u32,
    },
    /// A random sample of this percentage of packs.
    Percent(f64),
}

impl FromStr for ReadData {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        if s.is_empty() || s == "all" {
            return Ok(ReadData::All);
        }
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p.parse().map_err(|_| format!("not a percentage: {s}"))?;
            if !(0.0..=100.0).contains(&v) {
                return Err(format!("percentage out of range: {s}"));
            }
            return Ok(ReadData::Percent(v));
        }
        if let Some((n, m)) = s.split_once('/') {
            let n: u32 = n.parse().map_err(|_| format!("not n/m: {s}"))?;
            let m: u32 = m.parse().map_err(|_| format!("not n/m: {s}"))?;
            if m == 0 || n == 0 || n > m {
                return Err(format!("subset must be n/m with 1 <= n <= m: {s}"));
            }
            return Ok(ReadData::Fraction { n, m });
        }
        Err(format!(
            "read-data subset must be `all`, `n/m` or `p%`, got {s:?}"
        ))
    }
}

/// Options for [`Repository::check`].
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Read and verify pack contents.
    pub read_data: ReadData,
    /// Extra trusted signer public keys (hex) besides the config's.
    pub trusted_signers: Vec<String>,
    /// Fail on unsigned snapshots even when no signers are configured.
    pub require_signatures: bool,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The object concerned (storage key, or `tree node …`).
    pub object: String,
    /// What is wrong.
    pub message: String,
    /// Snapshots that need the object (empty if none or unknown).
    pub snapshots: Vec<Id>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.object, self.message)?;
        if !self.snapshots.is_empty() {
            let s: Vec<String> = self.snapshots.iter().map(|s| s.short()).collect();
            write!(f, " (needed by snapshot(s) {})", s.join(", "))?;
        }
        Ok(())
    }
}

/// What `check` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Damage: the repository cannot fully restore what it claims.
    pub errors: Vec<Problem>,
    /// Harmless findings (orphans left by interrupted runs, pending marks…).
    pub warnings: Vec<Problem>,
    /// Live snapshots checked.
    pub snapshots: usize,
    /// Indexed packs.
    pub packs: usize,
    /// Packs read in full.
    pub packs_read: usize,
    /// Blobs whose content was verified.
    pub blobs_verified: u64,
    /// Bytes read for verification.
    pub bytes_read: u64,
}

impl CheckReport {
    /// No errors.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} snapshot(s), {} pack(s), {} pack(s) read, {} blob(s) verified",
            self.snapshots, self.packs, self.packs_read, self.blobs_verified
        )?;
        for e in &self.errors {
            writeln!(f, "error: {e}")?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        if self.is_ok() {
            writeln!(f, "no errors")?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct NodeFacts {
    packs: HashSet<Id>,
    problems: BTreeSet<usize>,
}

/// Options for [`Repository::prune`].
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Packs marked at least this long ago are deleted (if still unused). Must exceed the
    /// longest backup run. Default 24 h.
    pub grace: Duration,
    /// Checkpoints of unfinished runs older than this stop protecting their data and are
    /// deleted. Default 7 days.
    pub checkpoint_expiry: Duration,
    /// Compute and report only.
    pub dry_run: bool,
    /// "Now" (tests).
    pub now: Option<DateTime<Utc>>,
    /// Repack packs in use whose unused share (by bytes) is at least this fraction (0.0–1.0):
    /// their live blobs are copied into new packs and the old packs are marked, to be deleted
    /// in phase two. Reads data packs, so it needs the identity that decrypts data.
    /// `None` (default): no repacking.
    pub repack_threshold: Option<f64>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            grace: Duration::hours(24),
            checkpoint_expiry: Duration::days(7),
            dry_run: false,
            now: None,
            repack_threshold: None,
        }
    }
}

/// What `prune` did (or would do, in a dry run).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    /// Dry run: nothing was written or deleted.
    pub dry_run: bool,
    /// Packs newly marked (phase one).
    pub marked: Vec<String>,
    /// Marked packs still within the grace period.
    pub pending: Vec<String>,
    /// Marked packs that are in use again and were spared.
    pub spared: Vec<String>,
    /// Objects deleted (phase two packs, superseded index files, marks, checkpoints).
    pub deleted: Vec<String>,
    /// Deletes the store refused: (key, reason). Reported, never fatal.
    pub refused: Vec<(String, String)>,
    /// Bytes in deleted (or to-be-deleted, dry run) packs, as indexed (or as listed).
    pub deleted_bytes: u64,
    /// Whether a consolidated index was written.
    pub index_rewritten: bool,
    /// Packs still in use that also hold unused blobs.
    pub partly_used_packs: usize,
    /// Uncompressed bytes of unused blobs inside packs still in use (what repacking frees).
    pub unused_bytes_in_used_packs: u64,
    /// Packs repacked (their live blobs copied to new packs; the packs themselves marked).
    pub repacked: Vec<String>,
    /// Packs that could not be repacked: (key, reason).
    pub repack_errors: Vec<(String, String)>,
}

/// Keep rules for [`Repository::forget`]. Like restic's: snapshots are taken newest first;
/// `keep_daily: 7` keeps the newest snapshot of each of the 7 most recent days that have one.
#[derive(Debug, Clone, Default)]
pub struct ForgetPolicy {
    /// Keep the n newest.
    pub keep_last: Option<usize>,
    /// Newest per hour, for n hours.
    pub keep_hourly: Option<usize>,
    /// Newest per day, for n days.
    pub keep_daily: Option<usize>,
    /// Newest per ISO week, for n weeks.
    pub keep_weekly: Option<usize>,
    /// Newest per month, for n months.
    pub keep_monthly: Option<usize>,
    /// Newest per year, for n years.
    pub keep_yearly: Option<usize>,
    /// Keep everything within this duration of the newest snapshot.
    pub keep_within: Option<Duration>,
    /// Always keep snapshots with any of these tags.
    pub keep_tags: Vec<String>,
    /// Only consider snapshots with all of these tags (others are left alone).
    pub tags: Vec<String>,
}

impl ForgetPolicy {
    fn is_empty(&self) -> bool {
        self.keep_last.is_none()
            && self.keep_hourly.is_none()
            && self.keep_daily.is_none()
            && self.keep_weekly.is_none()
            && self.keep_monthly.is_none()
            && self.keep_yearly.is_none()
            && self.keep_within.is_none()
            && self.keep_tags.is_empty()
    }
}

/// What `forget` decided.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ForgetReport {
    /// Dry run: nothing was written or deleted.
    pub dry_run: bool,
    /// Kept snapshots with the reasons.
    pub keep: Vec<(Id, Vec<String>)>,
    /// Forgotten snapshots.
    pub forget: Vec<Id>,
    /// Deletes the store refused (the snapshots are still forgotten logically).
    pub refused: Vec<(String, String)>,
}

#[derive(Serialize)]
struct ForgetRecord<'a> {
    snapshot: &'a Id,
    parent: &'a Option<Id>,
    time: String,
    reason: &'a str,
}

/// What [`Repository::repair_index`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairReport {
    /// Dry run: nothing was written.
    pub dry_run: bool,
    /// Packs (keys) that no readable index listed and that are now indexed from their headers.
    pub packs_indexed: Vec<String>,
    /// Packs that could not be read or parsed: (key, reason). They stay unindexed.
    pub unreadable_packs: Vec<(String, String)>,
    /// Unreadable index files the new index supersedes.
    pub superseded: Vec<String>,
    /// The index file written.
    pub index_written: Option<Id>,
}

impl Repository {
    /// Rebuild index entries from pack headers: every stored pack that no readable index file
    /// lists is read (data packs need the identity that can decrypt data) and indexed, and
    /// unreadable index files are superseded. Adopted orphan packs are harmless: prune removes
    /// the unused ones.
    pub fn repair_index(&self, dry_run: bool) -> Result<RepairReport> {
        let be = self.backend().clone();
        let (index, problems) = self.load_index_report()?;
        let mut report = RepairReport {
            dry_run,
            ..Default::default()
        };
        let mut packs = Vec::new();
        for prefix in [keys::DATA_PREFIX, keys::TREE_PREFIX] {
            let kind = if prefix == keys::DATA_PREFIX {
                crate::pack::PackKind::Data
            } else {
                crate::pack::PackKind::Tree
            };
            let mut listed = be.list(prefix)?;
            listed.sort_by(|a, b| a.key.cmp(&b.key));
            for o in listed {
                let Some(id) = keys::id_of(&o.key) else {
                    continue;
                };
                if index.packs().contains_key(&id) {
                    continue;
                }
                let bytes = match be.get(&o.key) {
                    Ok(b) => b,
                    Err(e) => {
                        report.unreadable_packs.push((o.key, e.to_string()));
                        continue;
                    }
                };
                if self.id_key().hash(&bytes) != id {
                    report
                        .unreadable_packs
                        .push((o.key, "content does not match its name".into()));
                    continue;
                }
                match parse_header(&bytes) {
                    Ok(frames) => {
                        report.packs_indexed.push(o.key);
                        packs.push(crate::index::IndexPack {
                            id,
                            kind,
                            size: bytes.len() as u64,
                            frames,
                        });
                    }
                    Err(e) => report.unreadable_packs.push((o.key, e)),
                }
            }
        }
        let mut supersedes = Vec::new();
        for (k, _) in problems {
            if let Some(id) = keys::id_of(&k) {
                supersedes.push(id);
                report.superseded.push(k);
            }
        }
        if dry_run || (packs.is_empty() && supersedes.is_empty()) {
            return Ok(report);
        }
        let file = IndexFile {
            version: 1,
            supersedes,
            packs,
        };
        report.index_written = Some(self.put_meta(keys::INDEX_PREFIX, &file)?);
        self.refresh_index()?;
        Ok(report)
    }

    /// Verify the repository. See [`CheckOptions`].
    pub fn check(&self, opts: &CheckOptions) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        let be = self.backend().clone();
        // Snapshots first, then the index (a snapshot only exists after its index).
        let forgotten = self.forgotten()?;
        let mut snaps: Vec<(Id, Snapshot)> = Vec::new();
        let mut present: HashSet<Id> = HashSet::new();
        for o in be.list(keys::SNAPSHOTS_PREFIX)? {
            let Some(id) = keys::id_of(&o.key) else {
                report.warnings.push(Problem {
                    object: o.key.clone(),
                    message: "not a snapshot name".into(),
                    snapshots: vec![],
                });
                continue;
            };
            present.insert(id);
            if forgotten.contains(&id) {
                continue;
            }
            match self.load_snapshot_key(&o.key) {
                Ok(s) => snaps.push((id, s)),
                Err(e) => report.errors.push(Problem {
                    object: o.key.clone(),
                    message: format!("unreadable snapshot: {e}"),
                    snapshots: vec![id],
                }),
            }
        }
        report.snapshots = snaps.len();
        let mut trusted: HashSet<String> = self.config().signers.iter().cloned().collect();
        trusted.extend(opts.trusted_signers.iter().cloned());
        for (id, s) in &snaps {
            let key = keys::flat(keys::SNAPSHOTS_PREFIX, id);
            if let Some(p) = &s.parent {
                if !present.contains(p) && !forgotten.contains(p) {
                    report.errors.push(Problem {
                        object: key.clone(),
                        message: format!(
                            "parent snapshot {p} is missing and was not forgotten (broken chain)"
                        ),
                        snapshots: vec![*id],
                    });
                }
            }
            match s.verify_signature() {
                Err(e) => report.errors.push(Problem {
                    object: key.clone(),
                    message: e,
                    snapshots: vec![*id],
                }),
                Ok(None) if !trusted.is_empty() || opts.require_signatures => {
                    report.errors.push(Problem {
                        object: key.clone(),
                        message: "snapshot is not signed".into(),
                        snapshots: vec![*id],
                    })
                }
                Ok(Some(pk)) if !trusted.is_empty() && !trusted.contains(&pk) => {
                    report.errors.push(Problem {
                        object: key.clone(),
                        message: format!("signed by an untrusted key {pk}"),
                        snapshots: vec![*id],
                    })
                }
                _ => {}
            }
        }

        let (index, index_problems) = self.load_index_report()?;
        for (k, m) in index_problems {
            report.errors.push(Problem {
                object: k,
                message: format!("unreadable index file: {m}"),
                snapshots: vec![],
            });
        }
        self.set_index(index.clone());
        report.packs = index.packs().len();

        // Stored packs vs index.
        let mut stored: HashMap<String, Option<u64>> = HashMap::new();
        for prefix in [keys::DATA_PREFIX, keys::TREE_PREFIX] {
            for o in be.list(prefix)? {
                stored.insert(o.key, o.size);
            }
        }
        let mut pack_problems: HashMap<Id, usize> = HashMap::new();
        let mut indexed_keys = HashSet::new();
        let mut pack_ids: Vec<&Id> = index.packs().keys().collect();
        pack_ids.sort();
        for pid in pack_ids {
            let info = &index.packs()[pid];
            let key = info.kind.key(pid);
            indexed_keys.insert(key.clone());
            let msg = match stored.get(&key) {
                None => Some("missing: listed in the index but not stored".to_string()),
                Some(Some(sz)) if *sz < info.size => Some(format!(
                    "truncated: {sz} bytes stored, {} indexed",
                    info.size
                )),
                _ => None,
            };
            if let Some(m) = msg {
                pack_problems.insert(*pid, report.errors.len());
                report.errors.push(Problem {
                    object: key,
                    message: m,
                    snapshots: vec![],
                });
            }
        }
        let mut orphans: Vec<&String> = stored
            .keys()
            .filter(|k| !indexed_keys.contains(*k))
            .collect();
        orphans.sort();
        for k in orphans {
            report.warnings.push(Problem {
                object: k.clone(),
                message: "pack in no index (left by an interrupted run; prune removes it)".into(),
                snapshots: vec![],
            });
        }

        // Trees: every node readable, every blob indexed; which packs each snapshot needs.
        let mut memo: HashMap<Id, Arc<NodeFacts>> = HashMap::new();
        let mut snap_packs: Vec<(Id, Arc<NodeFacts>)> = Vec::new();
        let mut problems: Vec<Problem> = Vec::new();
        for (sid, s) in &snaps {
            let mut facts = NodeFacts::default();
            for t in &s.tasks {
                let f = self.check_node(&index, t.tree, &t.name, &mut memo, &mut problems);
                facts.packs.extend(f.packs.iter().copied());
                facts.problems.extend(f.problems.iter().copied());
            }
            snap_packs.push((*sid, Arc::new(facts)));
        }
        for (sid, f) in &snap_packs {
            for p in &f.problems {
                problems[*p].snapshots.push(*sid);
            }
            for pk in &f.packs {
                if let Some(i) = pack_problems.get(pk) {
                    report.errors[*i].snapshots.push(*sid);
                }
            }
        }
        report.errors.extend(problems);

        // Unfinished runs: can the next backup resume from their latest checkpoint?
        for run in self.unfinished_runs()? {
            let mut memo = HashMap::new();
            let mut cp_problems = Vec::new();
            for t in &run.checkpoint.tasks {
                let roots = t.tree.into_iter().chain(t.record.as_ref().map(|r| r.tree));
                for root in roots {
                    self.check_node(&index, root, &t.name, &mut memo, &mut cp_problems);
                }
            }
            if let Some(p) = cp_problems.first() {
                report.warnings.push(Problem {
                    object: keys::flat(keys::CHECKPOINTS_PREFIX, &run.id),
                    message: format!(
                        "unfinished run {} cannot resume from this checkpoint ({} problem(s), first: {}: {}); the next backup should start a new run",
                        run.checkpoint.run,
                        cp_problems.len(),
                        p.object,
                        p.message
                    ),
                    snapshots: vec![],
                });
            }
        }

        // Read data.
        if opts.read_data != ReadData::None {
            let mut ids: Vec<Id> = index.packs().keys().copied().collect();
            ids.sort();
            let selected: Vec<Id> = match opts.read_data {
                ReadData::None => vec![],
                ReadData::All => ids,
                ReadData::Fraction { n, m } => ids
                    .into_iter()
                    .filter(|id| u32::from_be_bytes(id.0[..4].try_into().expect("4")) % m == n - 1)
                    .collect(),
                ReadData::Percent(p) => ids
                    .into_iter()
                    .filter(|_| {
                        let r = u32::from_le_bytes(crate::id::random_bytes::<4>());
                        (r as f64) < p / 100.0 * (u32::MAX as f64 + 1.0)
                    })
                    .collect(),
            };
            for pid in selected {
                if pack_problems.contains_key(&pid) {
                    continue; // already reported missing/truncated
                }
                let info = &index.packs()[&pid];
                let key = info.kind.key(&pid);
                let needed_by: Vec<Id> = snap_packs
                    .iter()
                    .filter(|(_, f)| f.packs.contains(&pid))
                    .map(|(s, _)| *s)
                    .collect();
                let mut fail = |message: String| {
                    report.errors.push(Problem {
                        object: key.clone(),
                        message,
                        snapshots: needed_by.clone(),
                    })
                };
                let bytes = match be.get(&key) {
                    Ok(b) => b,
                    Err(e) => {
                        fail(format!("unreadable: {e}"));
                        continue;
                    }
                };
                self.forget_cached_pack(&key);
                report.packs_read += 1;
                report.bytes_read += bytes.len() as u64;
                let mut issues = Vec::new();
                if self.id_key().hash(&bytes) != pid {
                    issues.push(
                        "content does not match its name (corrupted or truncated)".to_string(),
                    );
                }
                match parse_header(&bytes) {
                    Err(e) => issues.push(format!("pack header: {e}")),
                    Ok(frames) => {
                        let indexed = index.to_index_packs(|p| *p == pid);
                        if indexed.first().map(|p| &p.frames) != Some(&frames) {
                            issues.push("pack header disagrees with the index".into());
                        }
                    }
                }
                let mut bad_blobs = 0;
                for bid in &info.blobs {
                    let Some(loc) = index.locations(bid).iter().find(|l| l.pack == pid) else {
                        continue;
                    };
                    let ok = read_frame(&bytes, loc.frame_offset, loc.frame_length, loc.raw_length)
                        .ok()
                        .and_then(|f| {
                            let s = loc.offset as usize;
                            f.get(s..s + loc.length as usize)
                                .map(|b| self.id_key().hash(b) == *bid)
                        })
                        .unwrap_or(false);
                    if ok {
                        report.blobs_verified += 1;
                    } else {
                        bad_blobs += 1;
                    }
                }
                if bad_blobs > 0 {
                    issues.push(format!(
                        "{bad_blobs} of {} blob(s) unreadable or not matching their ids",
                        info.blobs.len()
                    ));
                }
                if !issues.is_empty() {
                    fail(issues.join("; "));
                }
            }
        }
        Ok(report)
    }

    fn check_node(
        &self,
        index: &Index,
        id: Id,
        task: &str,
        memo: &mut HashMap<Id, Arc<NodeFacts>>,
        problems: &mut Vec<Problem>,
    ) -> Arc<NodeFacts> {
        if let Some(f) = memo.get(&id) {
            return f.clone();
        }
        let mut facts = NodeFacts::default();
        let locs = index.locations(&id);
        if let Some(l) = locs.first() {
            facts.packs.insert(l.pack);
        }
        let node = if locs.is_empty() {
            Err(format!("tree node {id} of task {task} is in no index"))
        } else {
            self.read_blob(&id)
                .map_err(|e| e.to_string())
                .and_then(|b| Node::from_bytes(&b).map_err(|e| e.to_string()))
                .map_err(|e| format!("tree node {id} of task {task}: {e}"))
        };
        match node {
            Err(message) => {
                facts.problems.insert(problems.len());
                problems.push(Problem {
                    object: locs
                        .first()
                        .map(|l| l.pack_kind.key(&l.pack))
                        .unwrap_or_else(|| format!("tree node {id}")),
                    message,
                    snapshots: vec![],
                });
            }
            Ok(node) => {
                for e in &node.entries {
                    for b in e.blobs() {
                        match index.locations(&b).first() {
                            Some(l) => {
                                facts.packs.insert(l.pack);
                            }
                            None => {
                                facts.problems.insert(problems.len());
                                problems.push(Problem {
                                    object: format!("blob {b}"),
                                    message: format!(
                                        "needed by {}/{} in task {task}, but in no index",
                                        e.kind, e.id
                                    ),
                                    snapshots: vec![],
                                });
                            }
                        }
                    }
                }
                for c in &node.children {
                    let f = self.check_node(index, c.tree, task, memo, problems);
                    facts.packs.extend(f.packs.iter().copied());
                    facts.problems.extend(f.problems.iter().copied());
                }
            }
        }
        let f = Arc::new(facts);
        memo.insert(id, f.clone());
        f
    }

    /// Copy the live blobs of `packs` into new packs (skipping blobs that already have a copy
    /// in a pack that is neither marked nor being repacked), index them, and add the old packs
    /// to this prune's mark. A pack whose blobs cannot all be copied is left alone.
    fn repack(
        &self,
        index: &Index,
        packs: &[(Id, crate::pack::PackKind, Vec<Id>)],
        marked: &HashSet<Id>,
        report: &mut PruneReport,
    ) -> Result<()> {
        use crate::pack::{PackBuilder, PackKind};
        let cfg = self.config().pack;
        let leaving: HashSet<Id> = packs.iter().map(|(p, _, _)| *p).collect();
        let mut builders: HashMap<PackKind, PackBuilder> = HashMap::new();
        let mut new_packs = Vec::new();
        let mut copied: HashSet<Id> = HashSet::new();
        let flush = |b: PackBuilder, new_packs: &mut Vec<crate::index::IndexPack>| -> Result<()> {
            let p = b.finish(self.id_key());
            let size = p.bytes.len() as u64;
            self.backend().put(&p.kind.key(&p.id), p.bytes)?;
            new_packs.push(crate::index::IndexPack {
                id: p.id,
                kind: p.kind,
                size,
                frames: p.frames,
            });
            Ok(())
        };
        let mut ok_packs = Vec::new();
        for (pid, kind, used) in packs {
            let mut failed = None;
            for b in used {
                let elsewhere = index
                    .locations(b)
                    .iter()
                    .any(|l| !leaving.contains(&l.pack) && !marked.contains(&l.pack));
                if elsewhere || copied.contains(b) {
                    continue;
                }
                match self.read_blob(b) {
                    Ok(bytes) => {
                        let blob_kind = index.locations(b)[0].kind;
                        let builder = builders.entry(*kind).or_insert_with(|| {
                            PackBuilder::new(*kind, cfg.zstd_level, cfg.frame_size as usize)
                        });
                        builder.add(*b, blob_kind, &bytes);
                        copied.insert(*b);
                        if builder.approx_size() >= cfg.target_size as usize {
                            let full = builders.remove(kind).expect("present");
                            flush(full, &mut new_packs)?;
                        }
                    }
                    Err(e) => {
                        failed = Some(e.to_string());
                        break;
                    }
                }
            }
            let key = kind.key(pid);
            match failed {
                None => ok_packs.push(key),
                Some(e) => {
                    report.repacked.retain(|k| *k != key);
                    report.repack_errors.push((key, e));
                }
            }
        }
        for (_, b) in builders.drain() {
            if !b.is_empty() {
                flush(b, &mut new_packs)?;
            }
        }
        // New packs, then their index, then the mark (written by the caller).
        if !new_packs.is_empty() {
            self.put_meta(
                keys::INDEX_PREFIX,
                &IndexFile {
                    version: 1,
                    supersedes: Vec::new(),
                    packs: new_packs,
                },
            )?;
        }
        report.marked.extend(ok_packs);
        report.marked.sort();
        report.marked.dedup();
        Ok(())
    }

    /// Forget snapshots by policy. Held snapshots are always kept. Forgetting writes a
    /// `forgotten/<id>` record and then deletes the snapshot object; a refused delete is
    /// reported and the snapshot stays forgotten. Data is freed later by `prune`.
    pub fn forget(&self, policy: &ForgetPolicy, dry_run: bool) -> Result<ForgetReport> {
        if policy.is_empty() {
            return Err(Error::Usage(
                "no keep rule given: refusing to forget every snapshot".into(),
            ));
        }
        let holds = self.holds()?;
        let mut snaps = self.snapshots()?;
        snaps.reverse(); // newest first
        let snaps: Vec<_> = snaps
            .into_iter()
            .filter(|s| policy.tags.iter().all(|t| s.snapshot.tags.contains(t)))
            .collect();
        let times: Vec<DateTime<Utc>> = snaps
            .iter()
            .map(|s| s.snapshot.datetime().unwrap_or_else(Utc::now))
            .collect();
        let mut reasons: Vec<Vec<String>> = vec![Vec::new(); snaps.len()];
        for (i, s) in snaps.iter().enumerate() {
            if holds.contains(&s.id) {
                reasons[i].push("legal hold".into());
            }
            for t in &policy.keep_tags {
                if s.snapshot.tags.contains(t) {
                    reasons[i].push(format!("tag {t}"));
                }
            }
            if let Some(n) = policy.keep_last {
                if i < n {
                    reasons[i].push("last".into());
                }
            }
            if let (Some(d), Some(newest)) = (policy.keep_within, times.first()) {
                if times[i] >= *newest - d {
                    reasons[i].push("within".into());
                }
            }
        }
        type BucketFn = fn(&DateTime<Utc>) -> (i32, u32, u32, u32);
        let rules: [(&str, Option<usize>, BucketFn); 5] = [
            ("hourly", policy.keep_hourly, |t| {
                (t.year(), t.ordinal(), t.hour(), 0)
            }),
            ("daily", policy.keep_daily, |t| {
                (t.year(), t.ordinal(), 0, 0)
            }),
            ("weekly", policy.keep_weekly, |t| {
                let w = t.iso_week();
                (w.year(), w.week(), 0, 0)
            }),
            ("monthly", policy.keep_monthly, |t| {
                (t.year(), t.month(), 0, 0)
            }),
            ("yearly", policy.keep_yearly, |t| (t.year(), 0, 0, 0)),
        ];
        for (name, n, bucket) in rules {
            let Some(n) = n else { continue };
            let mut last = None;
            let mut count = 0;
            for (i, t) in times.iter().enumerate() {
                if count >= n {
                    break;
                }
                let b = bucket(t);
                if last != Some(b) {
                    reasons[i].push(name.to_string());
                    last = Some(b);
                    count += 1;
                }
            }
        }
        let mut report = ForgetReport {
            dry_run,
            ..Default::default()
        };
        for (s, r) in snaps.iter().zip(reasons) {
            if r.is_empty() {
                report.forget.push(s.id);
            } else {
                report.keep.push((s.id, r));
            }
        }
        if dry_run {
            return Ok(report);
        }
        for (s, _) in snaps
            .iter()
            .map(|s| (s, ()))
            .filter(|(s, _)| report.forget.contains(&s.id))
        {
            let rec = ForgetRecord {
                snapshot: &s.id,
                parent: &s.snapshot.parent,
                time: format_time(Utc::now()),
                reason: "forget policy",
            };
            self.backend().put(
                &keys::flat(keys::FORGOTTEN_PREFIX, &s.id),
                to_canonical_vec(&rec)?,
            )?;
            let key = keys::flat(keys::SNAPSHOTS_PREFIX, &s.id);
            if let DeleteOutcome::Refused(r) = self.backend().delete(&key)? {
                report.refused.push((key, r));
            }
        }
        Ok(report)
    }

    /// Two-phase prune. Phase one marks packs no live snapshot (or recent unfinished run)
    /// needs; phase two, in a later prune after the grace period, deletes marked packs that
    /// are still unused. Refused deletes are reported.
    pub fn prune(&self, opts: &PruneOptions) -> Result<PruneReport> {
        let now = opts.now.unwrap_or_else(Utc::now);
        let be = self.backend().clone();
        let mut report = PruneReport {
            dry_run: opts.dry_run,
            ..Default::default()
        };
        let mut to_delete_meta: Vec<String> = Vec::new();

        // Roots: live snapshots, then recent checkpoints of unfinished runs.
        let snaps = self.snapshots_strict().map_err(|e| {
            Error::Usage(format!(
                "prune needs every snapshot to be readable (run `check`, then forget or repair the damaged one): {e}"
            ))
        })?;
        let finished: HashSet<&str> = snaps.iter().map(|s| s.snapshot.run.as_str()).collect();
        let mut roots: Vec<Id> = snaps
            .iter()
            .flat_map(|s| s.snapshot.tasks.iter().map(|t| t.tree))
            .collect();
        let mut best: BTreeMap<String, u64> = BTreeMap::new();
        let mut cps: Vec<(String, Checkpoint)> = Vec::new();
        for o in be.list(keys::CHECKPOINTS_PREFIX)? {
            match self.get_meta::<Checkpoint>(&o.key) {
                Ok(c) => cps.push((o.key, c)),
                // Damaged beyond decoding: it protects nothing and is removed.
                Err(Error::Corrupt { .. }) => to_delete_meta.push(o.key),
                // Could not be read (network, permissions): do not guess, stop.
                Err(e) => return Err(e),
            }
        }
        for (_, c) in &cps {
            let e = best.entry(c.run.clone()).or_default();
            *e = (*e).max(c.seq);
        }
        for (k, c) in cps {
            let fresh = DateTime::parse_from_rfc3339(&c.saved)
                .map(|t| t.with_timezone(&Utc) >= now - opts.checkpoint_expiry)
                .unwrap_or(false);
            if finished.contains(c.run.as_str()) || !fresh || best[&c.run] > c.seq {
                to_delete_meta.push(k);
                continue;
            }
            for t in &c.tasks {
                roots.extend(t.tree);
                roots.extend(t.record.as_ref().map(|r| r.tree));
            }
        }

        let (index, index_problems) = self.load_index_report()?;
        if let Some((k, m)) = index_problems.first() {
            return Err(Error::Usage(format!(
                "prune needs every index file to be readable ({k}: {m}); run `check` and `repair_index` first"
            )));
        }
        self.set_index(index.clone());
        let index = Arc::new(index);
        let mut used_blobs: HashSet<Id> = HashSet::new();
        let mut seen_nodes: HashSet<Id> = HashSet::new();
        let mut stack = roots;
        while let Some(n) = stack.pop() {
            if !seen_nodes.insert(n) {
                continue;
            }
            used_blobs.insert(n);
            let node = self.load_node(n).map_err(|e| {
                Error::Usage(format!(
                    "prune needs every tree to be readable; run `check` first: {e}"
                ))
            })?;
            for e in &node.entries {
                used_blobs.extend(e.blobs());
            }
            stack.extend(node.children.iter().map(|c| c.tree));
        }
        let marks = load_marks(self)?;
        let marked_ids: HashSet<Id> = marks
            .iter()
            .flat_map(|(_, m)| m.packs.iter().filter_map(|k| keys::id_of(k)))
            .collect();
        // A blob stored twice (a writer re-stored it because its pack was marked) keeps only
        // its unmarked copies alive; a blob only in marked packs keeps those (they are spared).
        let mut used_packs: HashSet<Id> = HashSet::new();
        for b in &used_blobs {
            let locs = index.locations(b);
            if locs.is_empty() {
                // Its pack may be stored but unindexed: deleting "orphans" now could destroy it.
                return Err(Error::Usage(format!(
                    "prune found blob {b} in use but in no index; run `check` and `repair_index` first"
                )));
            }
            let unmarked: Vec<Id> = locs
                .iter()
                .map(|l| l.pack)
                .filter(|p| !marked_ids.contains(p))
                .collect();
            if unmarked.is_empty() {
                used_packs.extend(locs.iter().map(|l| l.pack));
            } else {
                used_packs.extend(unmarked);
            }
        }
        let mut stored: BTreeMap<String, Option<u64>> = BTreeMap::new();
        for prefix in [keys::DATA_PREFIX, keys::TREE_PREFIX] {
            for o in be.list(prefix)? {
                stored.insert(o.key, o.size);
            }
        }
        let mut candidates: BTreeSet<String> = BTreeSet::new();
        for k in stored.keys() {
            match keys::id_of(k) {
                Some(id) if used_packs.contains(&id) => {}
                _ => {
                    candidates.insert(k.clone());
                }
            }
        }

        let mut already_marked: HashSet<String> = HashSet::new();
        let mut delete_packs: BTreeSet<String> = BTreeSet::new();
        for (mkey, m) in &marks {
            let matured = DateTime::parse_from_rfc3339(&m.time)
                .map(|t| t.with_timezone(&Utc) <= now - opts.grace)
                .unwrap_or(false);
            for p in &m.packs {
                if !candidates.contains(p) {
                    if stored.contains_key(p) {
                        report.spared.push(p.clone());
                    }
                    continue;
                }
                already_marked.insert(p.clone());
                if matured {
                    delete_packs.insert(p.clone());
                } else {
                    report.pending.push(p.clone());
                }
            }
            if matured {
                to_delete_meta.push(mkey.clone());
            }
        }
        // Waste inside packs still in use, and which of them to repack.
        let mut repack: Vec<(Id, crate::pack::PackKind, Vec<Id>)> = Vec::new();
        {
            let mut ids: Vec<&Id> = index.packs().keys().collect();
            ids.sort();
            for pid in ids {
                if !used_packs.contains(pid) {
                    continue;
                }
                let info = &index.packs()[pid];
                let len_of = |b: &Id| {
                    index
                        .locations(b)
                        .iter()
                        .find(|l| l.pack == *pid)
                        .map(|l| l.length as u64)
                        .unwrap_or(0)
                };
                let total: u64 = info.blobs.iter().map(len_of).sum();
                let used: Vec<Id> = info
                    .blobs
                    .iter()
                    .filter(|b| used_blobs.contains(*b))
                    .copied()
                    .collect();
                let used_bytes: u64 = used.iter().map(len_of).sum();
                if used.len() < info.blobs.len() {
                    report.partly_used_packs += 1;
                    report.unused_bytes_in_used_packs += total - used_bytes;
                }
                let key = info.kind.key(pid);
                if let Some(th) = opts.repack_threshold {
                    let unused = 1.0 - used_bytes as f64 / total.max(1) as f64;
                    if used.len() < info.blobs.len()
                        && unused >= th
                        && !already_marked.contains(&key)
                    {
                        report.repacked.push(key);
                        repack.push((*pid, info.kind, used));
                    }
                }
            }
        }
        report.pending.retain(|p| !delete_packs.contains(p));
        report.pending.sort();
        report.pending.dedup();
        report.marked = candidates
            .iter()
            .filter(|p| !already_marked.contains(*p))
            .cloned()
            .collect();
        let delete_ids: HashSet<Id> = delete_packs.iter().filter_map(|k| keys::id_of(k)).collect();
        report.deleted_bytes = delete_packs
            .iter()
            .map(|k| {
                keys::id_of(k)
                    .and_then(|id| index.packs().get(&id).map(|p| p.size))
                    .or_else(|| stored.get(k).copied().flatten())
                    .unwrap_or(0)
            })
            .sum();
        // Forgotten snapshots whose delete was refused before: try again.
        let forgotten = self.forgotten()?;
        for o in be.list(keys::SNAPSHOTS_PREFIX)? {
            if keys::id_of(&o.key).is_some_and(|id| forgotten.contains(&id)) {
                to_delete_meta.push(o.key);
            }
        }
        let rewrite_index = delete_ids.iter().any(|p| index.packs().contains_key(p))
            || index.files.len() + index.superseded.len() > 16;
        if opts.dry_run {
            report.index_rewritten = rewrite_index;
            report.deleted = delete_packs.into_iter().collect();
            return Ok(report);
        }

        let delete = |key: &str, report: &mut PruneReport| -> Result<()> {
            match be.delete(key)? {
                DeleteOutcome::Deleted | DeleteOutcome::NotFound => {
                    report.deleted.push(key.to_string())
                }
                DeleteOutcome::Refused(r) => report.refused.push((key.to_string(), r)),
            }
            Ok(())
        };
        // An index without the doomed packs first, then the packs, then the old index files.
        if rewrite_index {
            let mut supersedes: Vec<Id> = index
                .files
                .iter()
                .chain(index.superseded.iter())
                .copied()
                .collect();
            supersedes.sort();
            let file = IndexFile {
                version: 1,
                supersedes: supersedes.clone(),
                packs: index.to_index_packs(|p| !delete_ids.contains(p)),
            };
            let new_id = self.put_meta(keys::INDEX_PREFIX, &file)?;
            report.index_rewritten = true;
            for p in &delete_packs {
                delete(p, &mut report)?;
            }
            for f in supersedes {
                if f != new_id {
                    delete(&keys::flat(keys::INDEX_PREFIX, &f), &mut report)?;
                }
            }
        } else {
            for p in &delete_packs {
                delete(p, &mut report)?;
            }
        }
        if !repack.is_empty() {
            self.repack(&index, &repack, &marked_ids, &mut report)?;
        }
        if !report.marked.is_empty() {
            let m = Mark {
                version: 1,
                time: format_time(now),
                packs: report.marked.clone(),
            };
            self.put_meta(keys::MARKS_PREFIX, &m)?;
        }
        for k in to_delete_meta {
            delete(&k, &mut report)?;
        }
        self.refresh_index()?;
        Ok(report)
    }
}
