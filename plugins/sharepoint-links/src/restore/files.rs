//! File content: files deleted or changed since the snapshot come back from their backed-up
//! `content` part, never overwriting a live file.
//!
//! **Plan.** For each selected `driveItem` that is a file with a `content` part, the live drive
//! (listed once by delta, see [`LiveDrive`]) says what became of it:
//! - still there with the snapshot's content (the stored `file.hashes` equal the live ones) →
//!   nothing;
//! - still there with other content → a copy of the snapshot's bytes beside it,
//!   `Payroll (restored 2026-11-30).xlsx`; the live file is never touched;
//! - gone → restored at its original path (missing parent folders re-created first); if
//!   another file now has that path, beside that one as a copy instead.
//!
//! A copy with the snapshot's content already beside the file (`… (restored <any date>)…`), or a
//! file with equal content at the original path, counts as done, so a re-plan after apply (or
//! `cairn restore verify`) is empty. Without a `content` part nothing is planned here (the
//! sharing planner keeps its manual step for a deleted item).
//!
//! The re-created item's new id is recorded in `remap` (old → new), and the sharing actions of
//! the item depend on this action and address the new id (see [`Fate`]).
//!
//! **Apply.** Up to [`SIMPLE_MAX`] bytes: one `PUT …/items/{parent}:/{name}:/content` with
//! `@microsoft.graph.conflictBehavior=fail` and the stored content as the body (streamed by the
//! host). Larger files: `createUploadSession` (conflict behaviour `fail`), then `PUT`s of
//! [`FRAGMENT`] bytes (a multiple of 320 KiB) read from the snapshot by ranges, to the
//! pre-authenticated upload URL (the host sends it without the token). A file already at the
//! target with the snapshot's content is "already done"; one with other content is never
//! overwritten (the action fails and says so). A range `PUT` that fails after the host's
//! retries, or is answered 416 (a retried range whose first answer was lost), is followed by
//! a status read of the session (`GET` on the upload URL) and the upload goes on from its
//! `nextExpectedRanges`, as Microsoft documents for resuming; a session that is gone (404) is
//! replaced by a new one (after checking whether the lost answer was the last range's, which
//! made the file). Bounded: a few status reads in a row without progress, or three sessions,
//! and the action fails. An upload that stops half way leaves no file (Graph makes the file
//! when the last byte arrives); the session is cancelled, and a re-run uploads again from the
//! start (an action's progress is not kept across applies: the restorer contract records only
//! finished actions).

use std::collections::{BTreeMap, BTreeSet};

use cairn_sdk::graph::{self, Body, Header};
use cairn_sdk::prelude::*;
use cairn_sdk::{content, record_mapping, snapshot_item, ContentRef, PartData};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::perms::str_of;
use crate::{forbidden_as, DRIVE_ITEM};

/// Files up to this size go up in one `PUT …:/content` (Graph's limit for a simple upload
/// is 250 MB, but Microsoft advises upload sessions above 4 MiB).
pub const SIMPLE_MAX: u64 = 4 * 1024 * 1024;
/// Bytes per upload-session `PUT`: 10 × 320 KiB (fragments must be multiples of 320 KiB).
pub const FRAGMENT: u64 = 10 * 320 * 1024;
/// Status reads in a row, after failed `PUT`s, that do not get an upload further before it
/// gives up (see `send_fragments`).
const MAX_STALLED: u32 = 3;
/// Upload sessions one apply may start for a file (a new one when the last is gone).
const MAX_SESSIONS: u32 = 3;

const WRITE_PERMISSION: &str = "Files.ReadWrite.All";

/// Hash facets of `file.hashes`, compared in this order (the first both sides have decides).
const HASHES: [&str; 4] = ["sha256Hash", "quickXorHash", "sha1Hash", "crc32Hash"];

/// What became of a snapshot item, for the sharing planner.
#[derive(Debug, Clone, PartialEq)]
pub enum Fate {
    /// Re-created by this action: its sharing goes onto the new item after it (empty live
    /// permissions; the item's id comes from `remap` at apply time).
    Recreated(String),
    /// Gone, but an item with its content is live under this id (restored earlier).
    LiveAt(String),
}

/// A live drive item as the plan needs it.
#[derive(Debug, Clone)]
pub struct LiveItem {
    pub id: String,
    pub name: String,
    pub parent: Option<String>,
    pub folder: bool,
    pub shared: bool,
    pub size: u64,
    pub hashes: Value,
}

/// A drive as it is now, from one delta enumeration (2 SharePoint RU a page, instead of a read
/// per item). Paths are worked out from parent ids (delta does not give paths on SharePoint).
#[derive(Debug, Default)]
pub struct LiveDrive {
    pub items: BTreeMap<String, LiveItem>,
    root: Option<String>,
    children: BTreeMap<String, Vec<String>>,
}

impl LiveDrive {
    /// Lists drive `drive_id` by `root/delta` (a full enumeration).
    pub fn list(drive_id: &str) -> Result<LiveDrive, PluginError> {
        let mut values = Vec::new();
        for page in graph::pages(&format!("/v1.0/drives/{drive_id}/root/delta")) {
            let page = page.map_err(|e| forbidden_as(e, "Files.Read.All"))?;
            values.extend(page.value);
        }
        Ok(LiveDrive::from_values(&values))
    }

    /// From delta's driveItems (deleted ones are left out).
    pub fn from_values(values: &[Value]) -> LiveDrive {
        let mut d = LiveDrive::default();
        for v in values {
            let id = str_of(v, "id");
            if id.is_empty() || v.get("deleted").is_some() {
                continue;
            }
            if v.get("root").is_some() {
                d.root = Some(id.to_string());
            }
            let parent = v
                .get("parentReference")
                .map(|p| str_of(p, "id"))
                .filter(|p| !p.is_empty() && v.get("root").is_none())
                .map(str::to_string);
            if let Some(p) = &parent {
                d.children
                    .entry(p.clone())
                    .or_default()
                    .push(id.to_string());
            }
            d.items.insert(
                id.to_string(),
                LiveItem {
                    id: id.to_string(),
                    name: str_of(v, "name").to_string(),
                    parent,
                    folder: v.get("folder").is_some() || v.get("root").is_some(),
                    shared: v.get("shared").is_some(),
                    size: v.get("size").and_then(Value::as_u64).unwrap_or(0),
                    hashes: v.pointer("/file/hashes").cloned().unwrap_or(Value::Null),
                },
            );
        }
        d
    }

    /// The live children of `parent`.
    pub fn children_of(&self, parent: &str) -> impl Iterator<Item = &LiveItem> {
        self.children
            .get(parent)
            .into_iter()
            .flatten()
            .filter_map(|id| self.items.get(id))
    }

    /// The item at `path` (`/Finance/Payroll.xlsx`; names compare case-insensitively, as
    /// SharePoint's do); `/` is the root.
    pub fn at_path(&self, path: &str) -> Option<&LiveItem> {
        let mut cur = self.items.get(self.root.as_ref()?)?;
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            cur = self
                .children_of(&cur.id)
                .find(|c| c.name.eq_ignore_ascii_case(seg))?;
        }
        Some(cur)
    }
}

/// Whether a live file has the content a snapshot file had: the first hash both sides carry
/// decides (sizes must agree too); `None` when they share no hash.
pub fn same_content(snap_hashes: &Value, snap_size: u64, live: &LiveItem) -> Option<bool> {
    if live.folder {
        return Some(false);
    }
    if live.size != snap_size {
        return Some(false);
    }
    HASHES.iter().find_map(|h| {
        let a = snap_hashes.get(*h).and_then(Value::as_str)?;
        let b = live.hashes.get(*h).and_then(Value::as_str)?;
        (!a.is_empty() && !b.is_empty()).then(|| a.eq_ignore_ascii_case(b))
    })
}

/// `name` split into stem and extension (`Payroll`, `.xlsx`); a leading dot is not one.
fn split_ext(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    }
}

/// The name of a restored copy: `Payroll (restored 2026-11-30).xlsx`, and from `n = 2`
/// `Payroll (restored 2026-11-30 2).xlsx`.
pub fn restored_name(name: &str, date: &str, n: u32) -> String {
    let (stem, ext) = split_ext(name);
    if n <= 1 {
        format!("{stem} (restored {date}){ext}")
    } else {
        format!("{stem} (restored {date} {n}){ext}")
    }
}

/// Whether `candidate` is a restored copy of `name` (of any date and number).
pub fn is_restored_copy_of(candidate: &str, name: &str) -> bool {
    let (stem, ext) = split_ext(name);
    let c = candidate.to_lowercase();
    let prefix = format!("{} (restored ", stem.to_lowercase());
    let suffix = format!("){}", ext.to_lowercase());
    let Some(inner) = c
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(&suffix))
    else {
        return false;
    };
    let (date, n) = match inner.split_once(' ') {
        Some((d, n)) => (d, Some(n)),
        None => (inner, None),
    };
    let date_ok = date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    date_ok && n.is_none_or(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The folder part of a path (`/Finance/Q1` of `/Finance/Q1/Payroll.xlsx`; `` for the root).
fn folder_of(path: &str) -> &str {
    path.rfind('/').map(|i| &path[..i]).unwrap_or("")
}

/// A path as Graph's path syntax wants it (each segment percent-encoded).
fn encode_path(path: &str) -> String {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(graph::encode)
        .collect::<Vec<_>>()
        .join("/")
}

/// What `apply` needs, in the action's payload.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FilePayload {
    /// `upload` (a file) or `folder`.
    op: String,
    drive_id: String,
    /// The snapshot item (empty for a folder the snapshot does not name).
    item_id: String,
    /// The live folder to write into; without it, the folder at `folder`.
    parent_id: Option<String>,
    /// Path of the target folder (`/Finance`; empty for the root).
    folder: String,
    /// The name to create.
    name: String,
    /// The snapshot path, for messages.
    path: String,
    size: u64,
    hashes: Value,
    /// The original is gone: record old → new in `remap`.
    remap: bool,
}

/// A selected file with backed-up content.
struct Candidate {
    id: String,
    drive: String,
    path: String,
    name: String,
    size: u64,
    hashes: Value,
    /// The snapshot id of its parent folder.
    parent: String,
}

/// The plan's file actions and what became of each selected item.
#[derive(Default)]
pub struct Planned {
    pub actions: Vec<Action>,
    pub fates: BTreeMap<String, Fate>,
    /// The drives listed (the sharing planner reuses them).
    pub live: BTreeMap<String, LiveDrive>,
}

fn candidate(id: &str) -> Result<Option<Candidate>, PluginError> {
    let Some(it) = snapshot_item(DRIVE_ITEM, id) else {
        return Ok(None);
    };
    let b: Value = serde_json::from_str(&it.body)?;
    if b.get("root").is_some() || b.get("file").is_none() {
        return Ok(None);
    }
    let Some(size) = it
        .parts
        .iter()
        .find(|p| p.name == "content")
        .map(|p| match &p.data {
            PartData::Stored(c) => c.size,
            PartData::Inline(v) => v.len() as u64,
        })
    else {
        return Ok(None);
    };
    let parent = b.get("parentReference");
    Ok(Some(Candidate {
        id: id.to_string(),
        drive: parent
            .map(|p| str_of(p, "driveId"))
            .unwrap_or("")
            .to_string(),
        path: str_of(&b, "@cairn.path").to_string(),
        name: str_of(&b, "name").to_string(),
        size,
        hashes: b.pointer("/file/hashes").cloned().unwrap_or(Value::Null),
        parent: parent.map(|p| str_of(p, "id")).unwrap_or("").to_string(),
    }))
}

/// The snapshot ids of a file's ancestor folders by path (`/Finance` → id), walking
/// `parentReference.id` through the snapshot.
fn snapshot_folders(mut cur: String, known: &mut BTreeMap<(String, String), String>, drive: &str) {
    for _ in 0..256 {
        let Some(it) = snapshot_item(DRIVE_ITEM, &cur) else {
            return;
        };
        let Ok(b) = serde_json::from_str::<Value>(&it.body) else {
            return;
        };
        if b.get("root").is_some() {
            return;
        }
        known.insert(
            (drive.to_string(), str_of(&b, "@cairn.path").to_lowercase()),
            cur.clone(),
        );
        match b.get("parentReference").map(|p| str_of(p, "id")) {
            Some(p) if !p.is_empty() => cur = p.to_string(),
            _ => return,
        }
    }
}

fn words_size(n: u64) -> String {
    if n >= 1024 * 1024 {
        format!("{n} bytes, {:.1} MiB", n as f64 / (1024.0 * 1024.0))
    } else {
        format!("{n} bytes")
    }
}

/// What to do about one file of the snapshot, given the live drive.
#[derive(Debug, PartialEq)]
enum Decision {
    /// The drive has the snapshot's content: under the file's id (`live_at` none), or — the
    /// file itself gone — as item `live_at` (at its path, or a restored copy).
    Nothing { live_at: Option<String> },
    /// Gone, and its path is free: back to its path.
    RestoreAtPath,
    /// A copy named `name` in live folder `parent`, beside the live file or folder that has
    /// other content or the path; `remap`: the original is gone (the copy takes its place).
    Copy {
        parent: String,
        name: String,
        remap: bool,
        why: String,
        beside_folder: bool,
    },
}

/// Decides for file `c` against `live` (`today` names copies).
fn decide(c: &Candidate, live: &LiveDrive, today: &str) -> Decision {
    let (beside, remap, why) = match live.items.get(&c.id).filter(|x| !x.folder) {
        Some(x) if same_content(&c.hashes, c.size, x) == Some(true) => {
            return Decision::Nothing { live_at: None }
        }
        Some(x) => (
            x,
            false,
            "its content differs from the snapshot's".to_string(),
        ),
        None => match live.at_path(&c.path) {
            Some(x) if same_content(&c.hashes, c.size, x) == Some(true) => {
                return Decision::Nothing {
                    live_at: Some(x.id.clone()),
                }
            }
            Some(x) => (
                x,
                true,
                format!(
                    "deleted since the snapshot, and another {} now has its path",
                    if x.folder { "folder" } else { "file" }
                ),
            ),
            None => return Decision::RestoreAtPath,
        },
    };
    let Some(parent) = beside.parent.clone() else {
        return Decision::Nothing { live_at: None };
    };
    let siblings: Vec<&LiveItem> = live.children_of(&parent).collect();
    // A copy with the snapshot's content is there already (an earlier restore).
    if let Some(done) = siblings.iter().find(|s| {
        is_restored_copy_of(&s.name, &c.name) && same_content(&c.hashes, c.size, s) == Some(true)
    }) {
        return Decision::Nothing {
            live_at: remap.then(|| done.id.clone()),
        };
    }
    let name = (1..)
        .map(|n| restored_name(&c.name, today, n))
        .find(|n| !siblings.iter().any(|s| s.name.eq_ignore_ascii_case(n)))
        .expect("some name is free");
    Decision::Copy {
        parent,
        name,
        remap,
        why,
        beside_folder: beside.folder,
    }
}

/// Plans the file actions for `selection` (today's date `YYYY-MM-DD` names restored copies).
pub fn plan(selection: &[Selected], today: &str) -> Result<Planned, PluginError> {
    let mut out = Planned::default();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut cands: Vec<Candidate> = Vec::new();
    for s in selection {
        if s.kind != DRIVE_ITEM || !seen.insert(s.id.as_str()) {
            continue;
        }
        if let Some(c) = candidate(&s.id)? {
            if !c.drive.is_empty() && !c.path.is_empty() {
                cands.push(c);
            }
        }
    }
    for c in &cands {
        if let std::collections::btree_map::Entry::Vacant(slot) = out.live.entry(c.drive.clone()) {
            slot.insert(LiveDrive::list(&c.drive)?);
        }
    }
    // Folders to re-create, by (drive, lower-case path) → action id.
    let mut folder_actions: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut folder_ids: BTreeMap<(String, String), String> = BTreeMap::new();
    for c in &cands {
        let live = &out.live[&c.drive];
        let large = c.size > SIMPLE_MAX;
        let how = if large {
            " through an upload session"
        } else {
            ""
        };
        let (parent, name, remap, why, beside_folder) = match decide(c, live, today) {
            Decision::Nothing { live_at } => {
                if let Some(x) = live_at {
                    // Restored earlier: its sharing is compared with that item's.
                    out.fates.insert(c.id.clone(), Fate::LiveAt(x));
                }
                continue;
            }
            Decision::Copy {
                parent,
                name,
                remap,
                why,
                beside_folder,
            } => (parent, name, remap, why, beside_folder),
            Decision::RestoreAtPath => {
                // Back to its path, parent folders first.
                let folder = folder_of(&c.path).to_string();
                let mut depends: Vec<String> = Vec::new();
                let mut at = String::new();
                for seg in folder.split('/').filter(|s| !s.is_empty()) {
                    let parent_path = at.clone();
                    at = format!("{at}/{seg}");
                    if live.at_path(&at).is_some_and(|x| x.folder) {
                        continue;
                    }
                    let key = (c.drive.clone(), at.to_lowercase());
                    if let Some(aid) = folder_actions.get(&key) {
                        depends = vec![aid.clone()];
                        continue;
                    }
                    if !folder_ids.contains_key(&key) {
                        snapshot_folders(c.parent.clone(), &mut folder_ids, &c.drive);
                    }
                    let old = folder_ids.get(&key).cloned().unwrap_or_default();
                    let aid = if old.is_empty() {
                        format!("{DRIVE_ITEM}/{}:{at}/folder", c.drive)
                    } else {
                        format!("{DRIVE_ITEM}/{old}/folder")
                    };
                    out.actions.push(Action {
                        id: aid.clone(),
                        kind: ActionKind::Recreate,
                        item_kind: DRIVE_ITEM.into(),
                        item_id: old.clone(),
                        display_name: at.clone(),
                        summary: format!("re-create the folder {at}"),
                        reason: "deleted since the snapshot; restored files go into it".into(),
                        depends_on: depends.clone(),
                        payload: serde_json::to_string(&FilePayload {
                            op: "folder".into(),
                            drive_id: c.drive.clone(),
                            item_id: old.clone(),
                            parent_id: None,
                            folder: parent_path,
                            name: seg.to_string(),
                            path: at.clone(),
                            size: 0,
                            hashes: Value::Null,
                            remap: true,
                        })?,
                    });
                    if !old.is_empty() {
                        // A shared folder's links and grants go onto the new folder.
                        out.fates.insert(old.clone(), Fate::Recreated(aid.clone()));
                    }
                    folder_actions.insert(key, aid.clone());
                    depends = vec![aid];
                }
                let aid = format!("{DRIVE_ITEM}/{}/restore", c.id);
                out.actions.push(Action {
                    id: aid.clone(),
                    kind: ActionKind::Recreate,
                    item_kind: DRIVE_ITEM.into(),
                    item_id: c.id.clone(),
                    display_name: c.path.clone(),
                    summary: format!("restore file {} ({}){how}", c.path, words_size(c.size)),
                    reason: "deleted since the snapshot".into(),
                    depends_on: depends,
                    payload: serde_json::to_string(&FilePayload {
                        op: "upload".into(),
                        drive_id: c.drive.clone(),
                        item_id: c.id.clone(),
                        parent_id: None,
                        folder,
                        name: c.name.clone(),
                        path: c.path.clone(),
                        size: c.size,
                        hashes: c.hashes.clone(),
                        remap: true,
                    })?,
                });
                out.fates.insert(c.id.clone(), Fate::Recreated(aid));
                continue;
            }
        };
        let folder = folder_of(&c.path);
        let shown = format!("{folder}/{name}");
        let aid = format!("{DRIVE_ITEM}/{}/copy", c.id);
        let live_what = if beside_folder { "folder" } else { "file" };
        out.actions.push(Action {
            id: aid.clone(),
            kind: ActionKind::Recreate,
            item_kind: DRIVE_ITEM.into(),
            item_id: c.id.clone(),
            display_name: c.path.clone(),
            summary: format!(
                "restore the snapshot's {} ({}) beside the live {live_what} as `{name}`{how}; the live {live_what} is not overwritten",
                c.path,
                words_size(c.size)
            ),
            reason: why,
            depends_on: Vec::new(),
            payload: serde_json::to_string(&FilePayload {
                op: "upload".into(),
                drive_id: c.drive.clone(),
                item_id: c.id.clone(),
                parent_id: Some(parent),
                folder: folder.to_string(),
                name,
                path: shown,
                size: c.size,
                hashes: c.hashes.clone(),
                remap,
            })?,
        });
        if remap {
            out.fates.insert(c.id.clone(), Fate::Recreated(aid));
        }
    }
    Ok(out)
}

fn not_found(e: &PluginError) -> bool {
    matches!(e, PluginError::Graph(g) if g.status == 404)
}

/// A live item by its path (`None`: not there).
fn get_by_path(drive: &str, path: &str) -> Result<Option<Value>, PluginError> {
    let enc = encode_path(path);
    let url = if enc.is_empty() {
        format!("/v1.0/drives/{drive}/root")
    } else {
        format!("/v1.0/drives/{drive}/root:/{enc}")
    };
    match graph::get_json(&url) {
        Ok(v) => Ok(Some(v)),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(forbidden_as(e, "Files.Read.All")),
    }
}

/// The child `name` of live folder `parent` (`None`: not there).
fn get_child(drive: &str, parent: &str, name: &str) -> Result<Option<Value>, PluginError> {
    let url = format!(
        "/v1.0/drives/{drive}/items/{parent}:/{}",
        graph::encode(name)
    );
    match graph::get_json(&url) {
        Ok(v) => Ok(Some(v)),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(forbidden_as(e, "Files.Read.All")),
    }
}

fn live_of(v: &Value) -> LiveItem {
    LiveDrive::from_values(std::slice::from_ref(v))
        .items
        .into_values()
        .next()
        .unwrap_or(LiveItem {
            id: String::new(),
            name: String::new(),
            parent: None,
            folder: false,
            shared: false,
            size: 0,
            hashes: Value::Null,
        })
}

fn outcome(new_id: Option<String>, notes: Vec<String>, already_done: bool) -> Outcome {
    Outcome {
        new_id,
        notes,
        already_done,
    }
}

pub fn apply(a: &Action) -> Result<Outcome, PluginError> {
    let p: FilePayload = serde_json::from_str(&a.payload)?;
    match p.op.as_str() {
        "folder" => apply_folder(&p),
        "upload" => apply_upload(&p),
        other => Err(PluginError::Other(format!(
            "action {}: unknown operation `{other}`",
            a.id
        ))),
    }
}

fn apply_folder(p: &FilePayload) -> Result<Outcome, PluginError> {
    let path = format!("{}/{}", p.folder, p.name);
    let found = |v: Value, already: bool| {
        let id = str_of(&v, "id").to_string();
        if v.get("folder").is_none() {
            return Err(PluginError::Other(format!(
                "{path} is a file now, not a folder; files to restore into it cannot go there"
            )));
        }
        // Without a snapshot id there is nothing to map (the journal maps the action's item).
        if p.item_id.is_empty() {
            return Ok(outcome(None, vec![format!("folder {path}: {id}")], already));
        }
        if p.remap && id != p.item_id {
            record_mapping(DRIVE_ITEM, &p.item_id, &id);
        }
        Ok(outcome(Some(id), vec![], already))
    };
    if let Some(v) = get_by_path(&p.drive_id, &path)? {
        return found(v, true);
    }
    let parent = get_by_path(&p.drive_id, &p.folder)?.ok_or_else(|| {
        PluginError::Other(format!(
            "the folder {} that {path} goes into does not exist",
            if p.folder.is_empty() { "/" } else { &p.folder }
        ))
    })?;
    let url = format!(
        "/v1.0/drives/{}/items/{}/children",
        p.drive_id,
        str_of(&parent, "id")
    );
    let body = json!({"name": p.name, "folder": {}, "@microsoft.graph.conflictBehavior": "fail"});
    let resp = graph::send(graph::json_request("POST", &url, &body))?;
    match graph::json_or_error(&format!("POST {url}"), &resp) {
        Ok(v) => found(v, false),
        // Made meanwhile (by a concurrent action or person): use it.
        Err(PluginError::Graph(g)) if g.status == 409 => match get_by_path(&p.drive_id, &path)? {
            Some(v) => found(v, true),
            None => Err(PluginError::Graph(g)),
        },
        Err(e) => Err(forbidden_as(e, WRITE_PERMISSION)),
    }
}

/// The stored content of the snapshot item.
fn stored_content(item_id: &str) -> Result<(PartData, String), PluginError> {
    let it = snapshot_item(DRIVE_ITEM, item_id).ok_or_else(|| {
        PluginError::Other(format!("drive item {item_id} is not in the snapshot"))
    })?;
    it.parts
        .into_iter()
        .find(|part| part.name == "content")
        .map(|part| (part.data, part.content_type))
        .ok_or_else(|| PluginError::Other(format!("drive item {item_id} has no stored content")))
}

/// The outcome for a file already at the target: done if it has the snapshot's content,
/// else an error (never overwritten).
fn existing(p: &FilePayload, v: &Value, shown: &str) -> Result<Outcome, PluginError> {
    let live = live_of(v);
    if same_content(&p.hashes, p.size, &live) == Some(true) {
        if p.remap {
            record_mapping(DRIVE_ITEM, &p.item_id, &live.id);
        }
        return Ok(outcome(
            p.remap.then(|| live.id.clone()),
            vec![format!("{shown} is there with the snapshot's content")],
            true,
        ));
    }
    Err(PluginError::Other(format!(
        "another {} named `{}` appeared at {shown} after the plan; it was not overwritten: \
         plan the restore again",
        if live.folder { "folder" } else { "file" },
        p.name
    )))
}

fn apply_upload(p: &FilePayload) -> Result<Outcome, PluginError> {
    let parent = match &p.parent_id {
        Some(id) => id.clone(),
        None => {
            let v = get_by_path(&p.drive_id, &p.folder)?.ok_or_else(|| {
                PluginError::Other(format!(
                    "the folder {} that {} goes into does not exist",
                    p.folder, p.path
                ))
            })?;
            str_of(&v, "id").to_string()
        }
    };
    let shown = format!("{}/{}", p.folder, p.name);
    if let Some(v) = get_child(&p.drive_id, &parent, &p.name)? {
        return existing(p, &v, &shown);
    }
    let (data, content_type) = stored_content(&p.item_id)?;
    let created = if p.size <= SIMPLE_MAX {
        let url = format!(
            "/v1.0/drives/{}/items/{parent}:/{}:/content?@microsoft.graph.conflictBehavior=fail",
            p.drive_id,
            graph::encode(&p.name)
        );
        let req = graph::Request {
            method: "PUT".into(),
            url: url.clone(),
            headers: vec![Header {
                name: "Content-Type".into(),
                value: content_type,
            }],
            body: match data {
                PartData::Stored(c) => Body::Stored(c),
                PartData::Inline(b) => Body::Bytes(b),
            },
        };
        let resp = graph::send(req)?;
        graph::json_or_error(
            &format!("PUT {}", url.split('?').next().unwrap_or("")),
            &resp,
        )
        .map(|item| Uploaded {
            item,
            resumed: 0,
            sessions: 0,
        })
    } else {
        let c = match data {
            PartData::Stored(c) => c,
            PartData::Inline(_) => {
                return Err(PluginError::Other(format!(
                    "the content of {} is inline but over {SIMPLE_MAX} bytes",
                    p.path
                )))
            }
        };
        upload_session(p, &parent, &c)
    };
    let up = match created {
        Ok(up) => up,
        // A file of that name appeared between the check and the upload.
        Err(PluginError::Graph(g)) if g.status == 409 => {
            return match get_child(&p.drive_id, &parent, &p.name)? {
                Some(v) => existing(p, &v, &shown),
                None => Err(PluginError::Graph(g)),
            };
        }
        Err(e) => return Err(forbidden_as(e, WRITE_PERMISSION)),
    };
    let live = live_of(&up.item);
    if same_content(&p.hashes, p.size, &live) == Some(false) {
        return Err(PluginError::Other(format!(
            "{shown} was uploaded, but Graph reports other content for it ({} bytes) than the \
             snapshot's ({} bytes, hashes {})",
            live.size, p.size, p.hashes
        )));
    }
    if p.remap {
        record_mapping(DRIVE_ITEM, &p.item_id, &live.id);
    }
    let note = if p.remap && p.parent_id.is_none() {
        format!("restored {shown} ({})", words_size(p.size))
    } else {
        format!(
            "restored the snapshot's {} as {shown} ({})",
            p.item_path_or_name(),
            words_size(p.size)
        )
    };
    let mut notes = vec![note];
    if up.resumed > 0 || up.sessions > 1 {
        notes.push(format!(
            "the upload went on from the session's status after {} failed range{}{}",
            up.resumed,
            if up.resumed == 1 { "" } else { "s" },
            match up.sessions {
                0 | 1 => String::new(),
                n => format!(", in {n} upload sessions (a session was lost)"),
            }
        ));
    }
    Ok(outcome(p.remap.then(|| live.id.clone()), notes, false))
}

impl FilePayload {
    fn item_path_or_name(&self) -> &str {
        if self.path.is_empty() {
            &self.name
        } else {
            &self.path
        }
    }
}

/// How an upload through a session went.
struct Uploaded {
    /// The new driveItem.
    item: Value,
    /// Times the upload went on from the session's status after a `PUT` failed.
    resumed: u32,
    /// Sessions used (more than one when a session vanished half way).
    sessions: u32,
}

/// Why [`send_fragments`] stopped.
enum Stop {
    /// The session is gone (404: expired, cancelled or finished): a new one may be started.
    Gone(PluginError),
    /// Anything else: the upload fails with this.
    Failed(PluginError),
}

/// Uploads stored content `c` through an upload session into folder `parent`; returns the
/// new driveItem (or the Graph error of the session, e.g. 409 when the name is taken).
///
/// A `PUT` that fails is followed by a status read and the upload goes on from there (see
/// [`send_fragments`]). When the session is gone (404) the file may have been made by the
/// last range (its answer lost): if a file with the snapshot's content is at the name, that
/// is the upload's; otherwise a new session starts from the first byte, at most
/// [`MAX_SESSIONS`] in all.
fn upload_session(p: &FilePayload, parent: &str, c: &ContentRef) -> Result<Uploaded, PluginError> {
    let url = format!(
        "/v1.0/drives/{}/items/{parent}:/{}:/createUploadSession",
        p.drive_id,
        graph::encode(&p.name)
    );
    let body = json!({"item": {"@microsoft.graph.conflictBehavior": "fail", "name": p.name}});
    let mut resumed = 0;
    for sessions in 1..=MAX_SESSIONS {
        let session = graph::send_json(graph::json_request("POST", &url, &body))?;
        let upload_url = graph::upload_url(&session)?;
        let gone = match send_fragments(&upload_url, c, &p.name, &mut resumed) {
            Ok(item) => {
                return Ok(Uploaded {
                    item,
                    resumed,
                    sessions,
                })
            }
            Err(Stop::Gone(e)) => e,
            Err(Stop::Failed(e)) => {
                if !matches!(&e, PluginError::Graph(g) if g.status == 409) {
                    // Best effort: an abandoned session expires on its own otherwise.
                    let _ = graph::send(graph::request("DELETE", &upload_url));
                }
                return Err(e);
            }
        };
        if let Some(v) = get_child(&p.drive_id, parent, &p.name)? {
            // The last range was taken and its answer lost, or another file took the name.
            if same_content(&p.hashes, p.size, &live_of(&v)) == Some(true) {
                return Ok(Uploaded {
                    item: v,
                    resumed,
                    sessions,
                });
            }
            return Err(PluginError::Other(format!(
                "the upload session of `{}` ended and another file has that name in {} now; \
                 it was not overwritten: plan the restore again",
                p.name,
                if p.folder.is_empty() { "/" } else { &p.folder }
            )));
        }
        if sessions == MAX_SESSIONS {
            return Err(PluginError::Other(format!(
                "the upload of `{}` lost its session {MAX_SESSIONS} times; the last: {gone}",
                p.name
            )));
        }
    }
    unreachable!("the loop returns on its last round")
}

/// Reads `len` bytes of the stored content `c` from `at`.
fn read_range(c: &ContentRef, at: u64, len: u64, name: &str) -> Result<Vec<u8>, PluginError> {
    let mut bytes = Vec::with_capacity(len as usize);
    while (bytes.len() as u64) < len {
        let want = (len - bytes.len() as u64) as u32;
        let chunk = content::read(c, at + bytes.len() as u64, want)?;
        if chunk.is_empty() {
            return Err(PluginError::Other(format!(
                "the stored content of `{name}` ended at {} of {} bytes",
                at + bytes.len() as u64,
                c.size
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Whether a failed `PUT` may have been taken or may succeed when sent again: a transport
/// failure or an exhausted retry budget (the host's `unavailable`), 416 (the session has
/// other bytes than the client thought, e.g. a retried range whose first answer was lost),
/// and 5xx/429 that outlived the host's retries. Other refusals (400, 401, 403, 409, 413)
/// would only be refused again.
fn worth_a_status_read(e: &PluginError) -> bool {
    match e {
        PluginError::Graph(g) => g.status == 416 || g.status == 429 || g.status >= 500,
        PluginError::Other(_) => true,
        _ => false,
    }
}

/// `PUT`s `c` to the upload URL in fragments of [`FRAGMENT`], following the session's
/// `nextExpectedRanges`. After a `PUT` that failed in a way a status read can settle (see
/// [`worth_a_status_read`]) it `GET`s the upload URL and goes on from the first missing byte
/// it names (counted in `resumed`); after [`MAX_STALLED`] such rounds in a row that do not
/// get the upload past the furthest byte it had reached, it gives up. A 404 (from a `PUT` or
/// the status read) is [`Stop::Gone`].
fn send_fragments(url: &str, c: &ContentRef, name: &str, resumed: &mut u32) -> Result<Value, Stop> {
    let size = c.size;
    let mut at = 0u64;
    // The furthest the session is known to have got, and rounds since it last moved.
    let mut furthest = 0u64;
    let mut stalled = 0u32;
    loop {
        let len = (size - at).min(FRAGMENT);
        let bytes = read_range(c, at, len, name).map_err(Stop::Failed)?;
        let end = at + len - 1;
        let label = format!("PUT upload session of `{name}` (bytes {at}-{end}/{size})");
        let sent =
            graph::send(graph::upload_range(url, at, size, bytes)).and_then(|resp| {
                match resp.status {
                    200..=202 => graph::json_or_error(&label, &resp).map(|v| (resp.status, v)),
                    _ => Err(graph::json_or_error(&label, &resp)
                        .err()
                        .unwrap_or_else(|| {
                            PluginError::Other(format!("{label}: unexpected HTTP {}", resp.status))
                        })),
                }
            });
        let (next, read_status) = match sent {
            Ok((200 | 201, item)) => return Ok(item),
            Ok((_, v)) => (graph::next_expected_start(&v).unwrap_or(end + 1), false),
            Err(e) if not_found(&e) => return Err(Stop::Gone(e)),
            Err(e) if worth_a_status_read(&e) => {
                *resumed += 1;
                stalled += 1;
                if stalled > MAX_STALLED {
                    return Err(Stop::Failed(PluginError::Other(format!(
                        "{label}: gave up after {MAX_STALLED} status reads of the upload session \
                         without progress; the last failure: {e}"
                    ))));
                }
                // Ask the session where it stands.
                let next = match graph::get_json(url) {
                    Err(e) if not_found(&e) => return Err(Stop::Gone(e)),
                    Err(e) => return Err(Stop::Failed(e)),
                    Ok(v) => graph::next_expected_start(&v).ok_or_else(|| {
                        Stop::Failed(PluginError::Other(format!(
                            "{label} failed ({e}), and the session names no next range"
                        )))
                    })?,
                };
                (next, true)
            }
            Err(e) => return Err(Stop::Failed(e)),
        };
        if next >= size {
            return Err(Stop::Failed(PluginError::Other(format!(
                "{label}: the session expects byte {next} of {size} next"
            ))));
        }
        if next > furthest {
            furthest = next;
            stalled = 0;
        } else if !read_status && next <= at {
            // A 202 that sends the upload back (the service lost bytes): fine a few times,
            // the snapshot's bytes can be read again. (A status read counted already.)
            stalled += 1;
            if stalled > MAX_STALLED {
                return Err(Stop::Failed(PluginError::Other(format!(
                    "{label}: the session went back to byte {next} {stalled} times"
                ))));
            }
        }
        at = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restored_copies_are_named_beside_the_original() {
        assert_eq!(
            restored_name("Payroll.xlsx", "2026-11-30", 1),
            "Payroll (restored 2026-11-30).xlsx"
        );
        assert_eq!(
            restored_name("Payroll.xlsx", "2026-11-30", 2),
            "Payroll (restored 2026-11-30 2).xlsx"
        );
        assert_eq!(
            restored_name("archive.tar.gz", "2026-11-30", 1),
            "archive.tar (restored 2026-11-30).gz"
        );
        assert_eq!(
            restored_name("README", "2026-11-30", 1),
            "README (restored 2026-11-30)"
        );
        assert_eq!(
            restored_name(".env", "2026-11-30", 1),
            ".env (restored 2026-11-30)"
        );
    }

    #[test]
    fn restored_copies_are_recognised_whatever_their_date() {
        for yes in [
            "Payroll (restored 2026-11-30).xlsx",
            "payroll (Restored 2027-01-02).XLSX",
            "Payroll (restored 2026-11-30 3).xlsx",
        ] {
            assert!(is_restored_copy_of(yes, "Payroll.xlsx"), "{yes}");
        }
        for no in [
            "Payroll.xlsx",
            "Payroll (restored).xlsx",
            "Payroll (restored 2026-11-3).xlsx",
            "Payroll (restored 2026-11-30 x).xlsx",
            "Payroll (restored 2026-11-30).docx",
            "Payroll 2 (restored 2026-11-30).xlsx",
        ] {
            assert!(!is_restored_copy_of(no, "Payroll.xlsx"), "{no}");
        }
    }

    fn item(id: &str, name: &str, parent: Option<&str>, file: Option<(&str, u64)>) -> Value {
        let mut v = json!({"id": id, "name": name});
        match parent {
            Some(p) => v["parentReference"] = json!({"id": p, "driveId": "d"}),
            None => v["root"] = json!({}),
        }
        match file {
            Some((h, size)) => {
                v["file"] = json!({"hashes": {"sha256Hash": h, "quickXorHash": "q"}});
                v["size"] = json!(size);
            }
            None => v["folder"] = json!({"childCount": 0}),
        }
        v
    }

    fn drive() -> LiveDrive {
        LiveDrive::from_values(&[
            item("r", "root", None, None),
            item("f", "Finance", Some("r"), None),
            item("p", "Payroll.xlsx", Some("f"), Some(("AB12", 10))),
            json!({"id": "gone", "name": "Old.txt", "deleted": {}, "parentReference": {"id": "f"}}),
        ])
    }

    #[test]
    fn live_paths_come_from_parent_ids() {
        let d = drive();
        assert_eq!(d.at_path("/").unwrap().id, "r");
        assert_eq!(d.at_path("/finance/PAYROLL.xlsx").unwrap().id, "p");
        assert!(
            d.at_path("/Finance/Old.txt").is_none(),
            "deleted items are not live"
        );
        assert!(d.at_path("/Finance/Missing.xlsx").is_none());
        assert_eq!(d.children_of("f").count(), 1);
    }

    #[test]
    fn content_compares_by_the_first_common_hash_and_the_size() {
        let d = drive();
        let p = &d.items["p"];
        assert_eq!(
            same_content(&json!({"sha256Hash": "ab12"}), 10, p),
            Some(true)
        );
        assert_eq!(
            same_content(&json!({"sha256Hash": "ab13"}), 10, p),
            Some(false)
        );
        assert_eq!(
            same_content(&json!({"sha256Hash": "ab12"}), 11, p),
            Some(false)
        );
        // sha256 is compared before quickXor, whatever the order of the keys.
        assert_eq!(
            same_content(&json!({"quickXorHash": "q", "sha256Hash": "ff"}), 10, p),
            Some(false)
        );
        assert_eq!(
            same_content(&json!({"quickXorHash": "q"}), 10, p),
            Some(true)
        );
        assert_eq!(same_content(&json!({"sha1Hash": "x"}), 10, p), None);
        assert_eq!(same_content(&json!({}), 0, &d.items["f"]), Some(false));
    }

    fn cand(id: &str, path: &str, hash: &str, size: u64) -> Candidate {
        Candidate {
            id: id.into(),
            drive: "d".into(),
            path: path.into(),
            name: path.rsplit('/').next().unwrap().into(),
            size,
            hashes: json!({"sha256Hash": hash}),
            parent: "f".into(),
        }
    }

    const TODAY: &str = "2026-11-30";

    #[test]
    fn an_equal_file_needs_nothing_a_changed_one_a_copy_beside_it() {
        let d = drive();
        assert_eq!(
            decide(&cand("p", "/Finance/Payroll.xlsx", "ab12", 10), &d, TODAY),
            Decision::Nothing { live_at: None }
        );
        // Overwritten (other hash, or other size): a copy beside it; the original keeps its id.
        for c in [
            cand("p", "/Finance/Payroll.xlsx", "ffff", 10),
            cand("p", "/Finance/Payroll.xlsx", "ab12", 11),
        ] {
            assert_eq!(
                decide(&c, &d, TODAY),
                Decision::Copy {
                    parent: "f".into(),
                    name: "Payroll (restored 2026-11-30).xlsx".into(),
                    remap: false,
                    why: "its content differs from the snapshot's".into(),
                    beside_folder: false,
                }
            );
        }
    }

    #[test]
    fn a_deleted_file_goes_back_to_its_path_or_beside_what_took_it() {
        let d = drive();
        // Gone, path free (its folder too): back to its path.
        assert_eq!(
            decide(&cand("gone", "/Finance/Old.txt", "aa", 3), &d, TODAY),
            Decision::RestoreAtPath
        );
        assert_eq!(
            decide(&cand("x", "/Archive/2025/Old.txt", "aa", 3), &d, TODAY),
            Decision::RestoreAtPath
        );
        // Gone, and the file at its path has its content (restored earlier): that item.
        assert_eq!(
            decide(
                &cand("old-id", "/Finance/Payroll.xlsx", "AB12", 10),
                &d,
                TODAY
            ),
            Decision::Nothing {
                live_at: Some("p".into())
            }
        );
        // Gone, and another file has its path: a copy beside it that takes its place.
        let Decision::Copy {
            name, remap, why, ..
        } = decide(
            &cand("old-id", "/Finance/Payroll.xlsx", "99", 10),
            &d,
            TODAY,
        )
        else {
            panic!("a copy")
        };
        assert_eq!(name, "Payroll (restored 2026-11-30).xlsx");
        assert!(remap);
        assert_eq!(
            why,
            "deleted since the snapshot, and another file now has its path"
        );
        // A folder has its path.
        let Decision::Copy {
            beside_folder,
            parent,
            ..
        } = decide(&cand("old-id", "/Finance", "99", 10), &d, TODAY)
        else {
            panic!("a copy")
        };
        assert!(beside_folder);
        assert_eq!(parent, "r");
    }

    #[test]
    fn an_earlier_copy_counts_and_a_taken_copy_name_is_numbered() {
        let mut values = vec![
            item("r", "root", None, None),
            item("f", "Finance", Some("r"), None),
            item("p", "Payroll.xlsx", Some("f"), Some(("NEW", 10))),
            // Another restore's copy, other content, today's name.
            item(
                "c1",
                "Payroll (restored 2026-11-30).xlsx",
                Some("f"),
                Some(("OTHER", 10)),
            ),
        ];
        let d = LiveDrive::from_values(&values);
        let Decision::Copy { name, .. } =
            decide(&cand("p", "/Finance/Payroll.xlsx", "OLD", 10), &d, TODAY)
        else {
            panic!("a copy")
        };
        assert_eq!(name, "Payroll (restored 2026-11-30 2).xlsx");
        // A copy with the snapshot's content, of any date: done.
        values.push(item(
            "c2",
            "Payroll (restored 2026-11-02).xlsx",
            Some("f"),
            Some(("OLD", 10)),
        ));
        let d = LiveDrive::from_values(&values);
        assert_eq!(
            decide(&cand("p", "/Finance/Payroll.xlsx", "OLD", 10), &d, TODAY),
            Decision::Nothing { live_at: None }
        );
        // The original gone and another file at its path: the copy is the original's new self.
        assert_eq!(
            decide(&cand("gone", "/Finance/Payroll.xlsx", "OLD", 10), &d, TODAY),
            Decision::Nothing {
                live_at: Some("c2".into())
            }
        );
    }

    #[test]
    fn paths_are_split_and_encoded_for_graph() {
        assert_eq!(folder_of("/Finance/Q1/Payroll.xlsx"), "/Finance/Q1");
        assert_eq!(folder_of("/Payroll.xlsx"), "");
        assert_eq!(encode_path("/Finance/Q 1"), "Finance/Q%201");
        assert_eq!(encode_path(""), "");
        assert_eq!(FRAGMENT % (320 * 1024), 0);
    }
}
