//! Restore: messages, folders or whole mailboxes, never overwriting.
//!
//! **Selection.** A selected `mailbox` brings its folders and messages; a `mailFolder` its
//! subfolders and their messages; a `message` itself. Messages whose folder is not in the
//! snapshot (the folder was deleted: orphans, see [`crate::collect`]) are ignored.
//!
//! **Where.** The target mailbox is `targetMailbox` (a user id or UPN) if given, else the
//! original owner — through `remap` when the Entra restore of the same run re-created the
//! user. Messages go into their original folder, found by id when it still exists in the
//! original mailbox and otherwise by its path of display names from the mailbox root
//! (re-created where missing, `recreate` actions recorded in `remap`); with `restoreFolder`
//! (e.g. `"Restored 2026-11-30"`) they go below a top-level folder of that name, mirroring the
//! original paths. Nothing is overwritten or moved: restores only add messages and folders.
//!
//! **Idempotent.** A message whose `internetMessageId` is already in the target folder is not
//! planned (plan lists each target folder's ids once), and `apply` looks it up again
//! (`$filter=internetMessageId eq …`) before posting, so a re-run never duplicates.
//!
//! **How.** The message's stored MIME is posted as it was backed up
//! (`POST /users/{id}/mailFolders/{id}/messages`, `Content-Type: text/plain`, base64 body
//! streamed by the host from the repository: `stored-base64`), so headers, bodies and
//! attachments arrive byte for byte. Graph creates MIME-imported messages as **drafts** and
//! accepts no extended properties with a MIME body (the `PR_MESSAGE_FLAGS` trick of JSON
//! imports cannot be combined with a byte-exact MIME import). Cairn keeps the bytes: restored
//! messages show as drafts in Outlook (sent and received dates come from the MIME headers);
//! read state, flag and categories are set back with one `PATCH` after the import. A message
//! that has no MIME in the snapshot, or whose stored MIME is not an RFC 822 message, is a
//! `manual` action or a failed action with the reason.
//!
//! **Large messages.** A message whose MIME is over Graph's 4 MB request limit (3 MB before
//! base64) is imported without its largest attachments, which are then attached one by one
//! (upload sessions for files of 3 MiB and more; see [`upload`]). Exchange stores the result and
//! renders its MIME anew, so such a message is equal in headers, body and attachment bytes,
//! names, types and content ids, not byte for byte. A crash between the import and the last
//! attachment leaves a draft that lacks attachments: plan (and verify) see it by its
//! `internetMessageId` and plan an `update` that attaches what it lacks (by name), and `apply`
//! of the original action does the same, so a re-run finishes the message instead of
//! duplicating it. Only drafts are finished; a message that is not a draft (the original) is
//! never changed. A message that cannot be split (a single part, or a body still over the
//! limit without its attachments) stays a `manual` action naming the reason.

mod upload;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cairn_sdk::graph::{self, Body, Header};
use cairn_sdk::prelude::*;
use cairn_sdk::{content, current_id, record_mapping, snapshot_entries, snapshot_item};
use cairn_sdk::{ContentRef, Item};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Graph's request limit for a MIME import, before base64 (4 MB after).
pub const MAX_MIME_IMPORT: u64 = 3 * 1024 * 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Options {
    restore_folder: Option<String>,
    target_mailbox: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct FolderPayload {
    mailbox: String,
    path: Vec<String>,
    hidden: bool,
    /// The snapshot folder it re-creates (none for the `restoreFolder` root).
    old: Option<String>,
    /// The original owner when restoring to it: the mailbox is looked up in `remap` again at
    /// apply time (the Entra restore of the same run may re-create the owner after the plan).
    #[serde(default)]
    owner: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessagePayload {
    mailbox: String,
    path: Vec<String>,
    message: String,
    internet_message_id: String,
    is_read: Option<bool>,
    flag: Option<Value>,
    categories: Option<Value>,
    /// As [`FolderPayload::owner`].
    #[serde(default)]
    owner: Option<String>,
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn body_of(item: &Item) -> Value {
    serde_json::from_str(&item.body).unwrap_or(Value::Null)
}

/// The snapshot's folders (id → body), read once per plan.
fn snapshot_folders() -> BTreeMap<String, Value> {
    snapshot_entries("mailFolder")
        .into_iter()
        .filter_map(|e| snapshot_item("mailFolder", &e.id).map(|it| (e.id, body_of(&it))))
        .collect()
}

/// A folder's path of display names from the mailbox root.
fn path_of(folders: &BTreeMap<String, Value>, id: &str) -> Option<Vec<String>> {
    let mut path = Vec::new();
    let mut cur = folders.get(id)?;
    for _ in 0..64 {
        path.push(s(cur, "displayName").to_string());
        match folders.get(s(cur, "parentFolderId")) {
            Some(p) => cur = p,
            None => {
                path.reverse();
                return Some(path);
            }
        }
    }
    None
}

/// The live folder tree of a mailbox: path → id; empty if the mailbox does not exist (its
/// owner was deleted: everything is planned, and `apply` finds the owner's new id in `remap`).
fn live_folders(mailbox: &str) -> Result<HashMap<Vec<String>, String>, PluginError> {
    let all = match graph::get_all(&format!("/v1.0/users/{mailbox}/mailFolders/delta")) {
        Ok(all) => all,
        Err(PluginError::Graph(g)) if g.status == 404 => return Ok(HashMap::new()),
        Err(e) => return Err(crate::forbidden(e, "Mail.ReadWrite")),
    };
    let by_id: BTreeMap<String, Value> = all
        .into_iter()
        .map(|f| (s(&f, "id").to_string(), f))
        .collect();
    Ok(by_id
        .keys()
        .filter_map(|id| path_of(&by_id, id).map(|p| (p, id.clone())))
        .collect())
}

/// The messages of a live folder: internetMessageId → (id, isDraft).
fn live_message_ids(
    mailbox: &str,
    folder: &str,
) -> Result<BTreeMap<String, (String, bool)>, PluginError> {
    let all = graph::get_all(&format!(
        "/v1.0/users/{mailbox}/mailFolders/{folder}/messages?$select=id,internetMessageId,isDraft&$top=999"
    ))?;
    Ok(all
        .iter()
        .map(|m| {
            (
                s(m, "internetMessageId").to_string(),
                (
                    s(m, "id").to_string(),
                    m.get("isDraft").and_then(Value::as_bool).unwrap_or(false),
                ),
            )
        })
        .collect())
}

/// The stored MIME part of a message: its size and, when stored (not inline), its reference.
type Mime = Option<(u64, Option<ContentRef>)>;

/// Resolves a mailbox (user id or UPN) to a user id.
fn user_id(key: &str) -> Result<String, PluginError> {
    let u = graph::get_json(&format!("/v1.0/users/{}?$select=id", graph::encode(key))).map_err(
        |e| match e {
            PluginError::Graph(g) if g.status == 404 => PluginError::Other(format!(
                "mailbox `{key}` does not exist in the target tenant"
            )),
            e => crate::forbidden(e, "User.Read.All"),
        },
    )?;
    Ok(s(&u, "id").to_string())
}

pub fn plan(request: RestoreRequest) -> Result<Vec<Action>, PluginError> {
    let opts: Options = serde_json::from_str(&request.options).unwrap_or_default();
    let folders = snapshot_folders();
    // Selected folders (with descendants) and messages.
    let mut want_folders: BTreeSet<String> = BTreeSet::new();
    let mut want_messages: BTreeSet<String> = BTreeSet::new();
    let mut whole_folders: BTreeSet<String> = BTreeSet::new();
    for sel in &request.selection {
        match sel.kind.as_str() {
            "mailbox" => {
                for (id, f) in &folders {
                    if s(f, "mailbox") == sel.id {
                        whole_folders.insert(id.clone());
                    }
                }
            }
            "mailFolder" if folders.contains_key(&sel.id) => {
                whole_folders.insert(sel.id.clone());
                // Descendants.
                let mut frontier = vec![sel.id.clone()];
                while let Some(p) = frontier.pop() {
                    for (id, f) in &folders {
                        if s(f, "parentFolderId") == p && whole_folders.insert(id.clone()) {
                            frontier.push(id.clone());
                        }
                    }
                }
            }
            "message" => {
                want_messages.insert(sel.id.clone());
            }
            _ => {}
        }
    }
    want_folders.extend(whole_folders.iter().cloned());
    let mut messages: Vec<(String, Value, Mime)> = Vec::new();
    let wanted_ids: Vec<String> = if whole_folders.is_empty() {
        want_messages.iter().cloned().collect()
    } else {
        snapshot_entries("message")
            .into_iter()
            .map(|e| e.id)
            .chain(want_messages.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    for id in wanted_ids {
        let Some(item) = snapshot_item("message", &id) else {
            continue;
        };
        let body = body_of(&item);
        let folder = s(&body, "parentFolderId").to_string();
        if !folders.contains_key(&folder) {
            continue; // orphan of a deleted folder
        }
        if !(want_messages.contains(&id) || whole_folders.contains(&folder)) {
            continue;
        }
        want_folders.insert(folder);
        let mime = item
            .parts
            .iter()
            .find(|p| p.name == "mime")
            .map(|p| match &p.data {
                cairn_sdk::PartData::Stored(c) => (c.size, Some(c.clone())),
                cairn_sdk::PartData::Inline(b) => (b.len() as u64, None),
            });
        messages.push((id, body, mime));
    }
    // Ancestors of wanted folders are needed to place them.
    for id in want_folders.clone() {
        let mut cur = folders.get(&id).map(|f| s(f, "parentFolderId").to_string());
        while let Some(p) = cur.filter(|p| folders.contains_key(p)) {
            want_folders.insert(p.clone());
            cur = folders.get(&p).map(|f| s(f, "parentFolderId").to_string());
        }
    }

    // Target mailboxes and their live folder trees.
    let target_override = match &opts.target_mailbox {
        Some(t) if !t.is_empty() => Some(user_id(t)?),
        _ => None,
    };
    let target_of = |source: &str| -> String {
        target_override
            .clone()
            .unwrap_or_else(|| current_id(source))
    };
    let root_prefix: Vec<String> = opts
        .restore_folder
        .iter()
        .filter(|r| !r.is_empty())
        .cloned()
        .collect();
    let mut live: HashMap<String, HashMap<Vec<String>, String>> = HashMap::new();
    let mut actions: Vec<Action> = Vec::new();
    let mut planned_folders: HashMap<(String, Vec<String>), String> = HashMap::new();

    // Folders, parents first (by path length).
    let mut ordered: Vec<(String, Vec<String>)> = want_folders
        .iter()
        .filter_map(|id| path_of(&folders, id).map(|p| (id.clone(), p)))
        .collect();
    ordered.sort_by(|a, b| a.1.len().cmp(&b.1.len()).then(a.1.cmp(&b.1)));
    let mut target_path_of: HashMap<String, (String, Vec<String>)> = HashMap::new();
    for (id, path) in &ordered {
        let f = &folders[id];
        let source = s(f, "mailbox").to_string();
        let target = target_of(&source);
        if !live.contains_key(&target) {
            live.insert(target.clone(), live_folders(&target)?);
        }
        let tree = &live[&target];
        // The original folder, still there (same mailbox, same id): use it where it is now.
        let same_box = target == source && root_prefix.is_empty();
        let live_path = same_box
            .then(|| tree.iter().find(|(_, v)| *v == id).map(|(k, _)| k.clone()))
            .flatten();
        let full: Vec<String> = match &live_path {
            Some(p) => p.clone(),
            None => {
                // Below the parent's target path (parents come first), or the root.
                let parent = s(f, "parentFolderId");
                let mut base = match target_path_of.get(parent) {
                    Some((_, pp)) => pp.clone(),
                    None => root_prefix.clone(),
                };
                base.push(path.last().cloned().unwrap_or_default());
                base
            }
        };
        let exists = live_path.is_some() || tree.contains_key(&full);
        if !root_prefix.is_empty() && !tree.contains_key(&root_prefix) {
            let key = (target.clone(), root_prefix.clone());
            if let std::collections::hash_map::Entry::Vacant(slot) = planned_folders.entry(key) {
                let aid = format!("restoreFolder/{target}/create");
                actions.push(Action {
                    id: aid.clone(),
                    kind: ActionKind::Recreate,
                    item_kind: "mailFolder".into(),
                    item_id: format!("{target}:{}", root_prefix[0]),
                    display_name: root_prefix[0].clone(),
                    summary: format!("create the folder `{}` in mailbox {target}", root_prefix[0]),
                    reason: "restored mail goes into a folder of its own".into(),
                    depends_on: vec![],
                    payload: serde_json::to_string(&FolderPayload {
                        mailbox: target.clone(),
                        path: root_prefix.clone(),
                        hidden: false,
                        old: None,
                        owner: target_override.is_none().then(|| source.clone()),
                    })?,
                });
                slot.insert(aid);
            }
        }
        target_path_of.insert(id.clone(), (target.clone(), full.clone()));
        if exists {
            continue;
        }
        let parent_key = (target.clone(), full[..full.len() - 1].to_vec());
        let depends_on: Vec<String> = planned_folders
            .get(&parent_key)
            .cloned()
            .into_iter()
            .collect();
        let aid = format!("mailFolder/{id}/recreate");
        actions.push(Action {
            id: aid.clone(),
            kind: ActionKind::Recreate,
            item_kind: "mailFolder".into(),
            item_id: id.clone(),
            display_name: s(f, "displayName").to_string(),
            summary: format!(
                "re-create the folder `{}` in mailbox {target}",
                full.join("/")
            ),
            reason: "the folder is missing from the mailbox".into(),
            depends_on,
            payload: serde_json::to_string(&FolderPayload {
                mailbox: target.clone(),
                path: full.clone(),
                hidden: f.get("isHidden").and_then(Value::as_bool).unwrap_or(false),
                old: Some(id.clone()),
                owner: target_override.is_none().then(|| source.clone()),
            })?,
        });
        planned_folders.insert((target.clone(), full), aid);
    }

    // Messages.
    let mut present: HashMap<(String, String), BTreeMap<String, (String, bool)>> = HashMap::new();
    for (id, body, mime) in messages {
        let folder = s(&body, "parentFolderId").to_string();
        let Some((target, path)) = target_path_of.get(&folder).cloned() else {
            continue;
        };
        let subject = s(&body, "subject").to_string();
        let imid = s(&body, "internetMessageId").to_string();
        let where_ = format!("{} of mailbox {target}", path.join("/"));
        let folder_action = planned_folders
            .get(&(target.clone(), path.clone()))
            .cloned();
        // Over the import limit: imported without its largest attachments, then attached.
        // (The stored MIME is scanned only when the message is planned or may need finishing.)
        let split = || -> Option<Result<upload::Plan, String>> {
            match &mime {
                Some((size, Some(c))) if *size > MAX_MIME_IMPORT => {
                    Some(upload::plan(c, MAX_MIME_IMPORT))
                }
                Some((size, None)) if *size > MAX_MIME_IMPORT => {
                    Some(Err("its MIME is inline, not stored".into()))
                }
                _ => None,
            }
        };
        let is_large = mime
            .as_ref()
            .is_some_and(|(size, _)| *size > MAX_MIME_IMPORT);
        let mut large: Option<Option<Result<upload::Plan, String>>> = None;
        let mut finish: Option<Vec<String>> = None;
        if folder_action.is_none() && !imid.is_empty() {
            let live_id = live[&target].get(&path).cloned().or_else(|| {
                (target == s(&body, "mailbox") && root_prefix.is_empty()).then(|| folder.clone())
            });
            if let Some(fid) = live_id {
                let key = (target.clone(), fid.clone());
                if !present.contains_key(&key) {
                    present.insert(key.clone(), live_message_ids(&target, &fid)?);
                }
                if let Some((live_msg, draft)) = present[&key].get(&imid) {
                    // Already there; a restored large message (a draft) may lack attachments
                    // if a restore stopped half way: finish it.
                    if !(is_large && *draft) {
                        continue;
                    }
                    let Some(Ok(plan)) = large.get_or_insert_with(split) else {
                        continue;
                    };
                    let lacking = upload::missing(&target, live_msg, plan)?;
                    if lacking.is_empty() {
                        continue;
                    }
                    finish = Some(lacking.iter().map(|a| a.name.clone()).collect());
                }
            }
        }
        let large = large.unwrap_or_else(split);
        let base = |kind: ActionKind, summary: String, reason: String, payload: String| Action {
            id: format!(
                "message/{id}/{}",
                match kind {
                    ActionKind::Manual => "manual",
                    ActionKind::Update => "finish",
                    _ => "recreate",
                }
            ),
            kind,
            item_kind: "message".into(),
            item_id: id.clone(),
            display_name: subject.clone(),
            summary,
            reason,
            depends_on: folder_action.clone().into_iter().collect(),
            payload,
        };
        let problem = match (&mime, &large) {
            (None, _) => Some(format!(
                "its MIME is not in the snapshot ({})",
                body.get("@cairn.error")
                    .and_then(Value::as_str)
                    .unwrap_or("not backed up")
            )),
            (Some((size, _)), Some(Err(why))) => Some(format!(
                "its MIME ({size} bytes) is over Graph's 4 MB import limit and cannot be split: {why}"
            )),
            _ => None,
        };
        if let Some(problem) = problem {
            actions.push(base(
                ActionKind::Manual,
                format!(
                    "restore message `{subject}` ({imid}) into {where_} by hand: {problem}; \
                     export it with `cairn show` or from another source"
                ),
                format!("the message is missing from {where_}"),
                "{}".into(),
            ));
            continue;
        }
        let payload = serde_json::to_string(&MessagePayload {
            mailbox: target.clone(),
            path: path.clone(),
            message: id.clone(),
            internet_message_id: imid.clone(),
            is_read: body.get("isRead").and_then(Value::as_bool),
            flag: body.get("flag").cloned(),
            categories: body.get("categories").cloned(),
            owner: target_override
                .is_none()
                .then(|| s(&body, "mailbox").to_string()),
        })?;
        if let Some(names) = finish {
            actions.push(base(
                ActionKind::Update,
                format!(
                    "finish the restored message `{subject}` in {where_}: attach {}",
                    backticked(names.iter().map(String::as_str))
                ),
                format!("the restored draft with internetMessageId {imid} lacks attachments (a restore stopped half way)"),
                payload,
            ));
            continue;
        }
        if let Some(Ok(plan)) = &large {
            let (size, _) = mime.clone().unwrap_or_default();
            let messages = plan.attachments.iter().filter(|a| a.message);
            let as_files = match messages.clone().count() {
                0 => String::new(),
                n => format!(
                    "; the attached message{} {} cannot stay in the import and go{} back as .eml file attachment{}",
                    if n == 1 { "" } else { "s" },
                    backticked(messages.map(|a| a.name.as_str())),
                    if n == 1 { "es" } else { "" },
                    if n == 1 { "" } else { "s" },
                ),
            };
            actions.push(base(
                ActionKind::Recreate,
                format!(
                    "restore message `{subject}` into {where_} (as a draft: Graph's MIME import; its MIME is {size} bytes, over the 4 MB request limit: imported without {}, attached afterwards{as_files})",
                    backticked(plan.attachments.iter().map(|a| a.name.as_str()))
                ),
                format!("no message with internetMessageId {imid} in {where_}"),
                payload,
            ));
            continue;
        }
        actions.push(base(
            ActionKind::Recreate,
            format!("restore message `{subject}` into {where_} (as a draft: Graph's MIME import)"),
            format!("no message with internetMessageId {imid} in {where_}"),
            payload,
        ));
    }
    Ok(actions)
}

/// `a`, `b` as "`a`, `b`" for plan summaries.
fn backticked<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Finds or creates the folder at `path` (display names from the root); returns its id and
/// whether it existed.
fn ensure_path(
    mailbox: &str,
    path: &[String],
    hidden: bool,
) -> Result<(String, bool), PluginError> {
    let mut parent: Option<String> = None;
    let mut existed = true;
    for (depth, name) in path.iter().enumerate() {
        let list_url = match &parent {
            None => format!("/v1.0/users/{mailbox}/mailFolders?includeHiddenFolders=true&$top=999"),
            Some(p) => format!(
                "/v1.0/users/{mailbox}/mailFolders/{p}/childFolders?includeHiddenFolders=true&$top=999"
            ),
        };
        let found = graph::get_all(&list_url)?
            .into_iter()
            .find(|f| s(f, "displayName").eq_ignore_ascii_case(name))
            .map(|f| s(&f, "id").to_string());
        let id = match found {
            Some(id) => id,
            None => {
                existed = false;
                let create_url = match &parent {
                    None => format!("/v1.0/users/{mailbox}/mailFolders"),
                    Some(p) => format!("/v1.0/users/{mailbox}/mailFolders/{p}/childFolders"),
                };
                let last = depth + 1 == path.len();
                let created = graph::send_json(graph::json_request(
                    "POST",
                    &create_url,
                    &json!({"displayName": name, "isHidden": last && hidden}),
                ))
                .map_err(|e| crate::forbidden(e, "Mail.ReadWrite"))?;
                s(&created, "id").to_string()
            }
        };
        parent = Some(id);
    }
    parent
        .map(|p| (p, existed))
        .ok_or_else(|| PluginError::Other("empty folder path".into()))
}

/// Checks that stored MIME starts like an RFC 822 message: header lines, then a blank line.
fn check_mime(c: &ContentRef) -> Result<(), String> {
    let head = content::read(c, 0, 64 * 1024).map_err(|e| format!("{e:?}"))?;
    crate::mime::check_head(&head, c.size)
}

pub fn apply(action: Action) -> Result<Outcome, PluginError> {
    match (action.kind, action.item_kind.as_str()) {
        (ActionKind::Manual, _) => Ok(Outcome {
            new_id: None,
            notes: vec![],
            already_done: false,
        }),
        (_, "mailFolder") => {
            let p: FolderPayload = serde_json::from_str(&action.payload)?;
            let mailbox = p.owner.as_deref().map(current_id).unwrap_or(p.mailbox);
            let (id, existed) = ensure_path(&mailbox, &p.path, p.hidden)?;
            if let Some(old) = &p.old {
                record_mapping("mailFolder", old, &id);
            }
            Ok(Outcome {
                new_id: Some(id),
                notes: vec![],
                already_done: existed,
            })
        }
        (_, "message") => apply_message(&action),
        (_, other) => Err(PluginError::Other(format!(
            "m365-mail cannot apply an action on `{other}`"
        ))),
    }
}

/// A stored MIME over the import limit: its reference and how it is split (the MIME without
/// its largest attachments, which follow); `None` under the limit. Scanned only when needed
/// (not for a message that is already there and not a draft).
fn split_stored(
    mime: &cairn_sdk::PartData,
    imid: &str,
) -> Result<Option<(ContentRef, upload::Plan)>, PluginError> {
    let cairn_sdk::PartData::Stored(c) = mime else {
        return Ok(None);
    };
    if c.size <= MAX_MIME_IMPORT {
        return Ok(None);
    }
    let plan = upload::plan(c, MAX_MIME_IMPORT).map_err(|why| {
        PluginError::Other(format!(
            "the MIME of message {imid} ({} bytes) is over Graph's 4 MB import limit and \
             cannot be split: {why}",
            c.size
        ))
    })?;
    Ok(Some((c.clone(), plan)))
}

fn apply_message(action: &Action) -> Result<Outcome, PluginError> {
    let mut p: MessagePayload = serde_json::from_str(&action.payload)?;
    if let Some(owner) = &p.owner {
        p.mailbox = current_id(owner);
    }
    let (folder, _) = ensure_path(&p.mailbox, &p.path, false)?;
    let base = format!("/v1.0/users/{}/mailFolders/{folder}/messages", p.mailbox);
    let item = snapshot_item("message", &p.message).ok_or_else(|| {
        PluginError::Other(format!("message {} is not in the snapshot", p.message))
    })?;
    let mime = item
        .parts
        .into_iter()
        .find(|part| part.name == "mime")
        .map(|part| part.data)
        .ok_or_else(|| PluginError::Other("the message has no stored MIME".into()))?;
    if !p.internet_message_id.is_empty() {
        let filter = graph::encode(&format!(
            "internetMessageId eq '{}'",
            p.internet_message_id.replace('\'', "''")
        ));
        let found = graph::get_json(&format!("{base}?$filter={filter}&$select=id,isDraft"))?;
        if let Some(existing) = found
            .get("value")
            .and_then(Value::as_array)
            .and_then(|v| v.first())
        {
            let id = s(existing, "id").to_string();
            record_mapping("message", &p.message, &id);
            let draft = existing.get("isDraft").and_then(Value::as_bool) == Some(true);
            let mut notes = vec![];
            let large = if draft {
                split_stored(&mime, &p.internet_message_id).ok().flatten()
            } else {
                None
            };
            if let Some((c, plan)) = &large {
                // A restored draft that a stopped restore left without some attachments.
                let lacking = upload::missing(&p.mailbox, &id, plan)?;
                let mut attached = vec![];
                for a in &lacking {
                    attached.push(upload::attach(&p.mailbox, &id, c, a)?);
                }
                if !lacking.is_empty() {
                    notes.push(format!(
                        "finished a restored message that lacked {}",
                        lacking
                            .iter()
                            .map(|a| format!("`{}`", a.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                    notes.extend(attached.iter().filter_map(upload::Attached::note));
                    return Ok(Outcome {
                        new_id: Some(id),
                        notes,
                        already_done: false,
                    });
                }
            }
            return Ok(Outcome {
                new_id: Some(id),
                notes,
                already_done: true,
            });
        }
    }
    let large = split_stored(&mime, &p.internet_message_id)?;
    let reduced = match &large {
        Some((c, plan)) => Some(upload::reduced_mime(c, &plan.split)?),
        None => None,
    };
    let checked = match (&mime, &reduced) {
        (_, Some(r)) => crate::mime::check_head(r, r.len() as u64),
        (cairn_sdk::PartData::Stored(c), None) => check_mime(c),
        (cairn_sdk::PartData::Inline(b), None) => crate::mime::check_head(b, b.len() as u64),
    };
    checked.map_err(|why| {
        PluginError::Other(format!(
            "the stored MIME of message {} is malformed ({why}); it was not posted",
            p.internet_message_id
        ))
    })?;
    let body = match (mime, reduced) {
        (_, Some(r)) => Body::Bytes(crate::mime::base64(&r).into_bytes()),
        (cairn_sdk::PartData::Stored(c), None) => Body::StoredBase64(c),
        (cairn_sdk::PartData::Inline(b), None) => Body::Bytes(crate::mime::base64(&b).into_bytes()),
    };
    let req = graph::Request {
        method: "POST".into(),
        url: base,
        headers: vec![Header {
            name: "Content-Type".into(),
            value: "text/plain".into(),
        }],
        body,
    };
    let created = graph::send_json(req).map_err(|e| crate::forbidden(e, "Mail.ReadWrite"))?;
    let new_id = s(&created, "id").to_string();
    record_mapping("message", &p.message, &new_id);
    // Read state, flag and categories are not in the MIME.
    let mut patch = serde_json::Map::new();
    if let Some(r) = p.is_read {
        if created.get("isRead").and_then(Value::as_bool) != Some(r) {
            patch.insert("isRead".into(), json!(r));
        }
    }
    if let Some(f) = p
        .flag
        .filter(|f| f.get("flagStatus").and_then(Value::as_str) != Some("notFlagged"))
    {
        patch.insert("flag".into(), f);
    }
    if let Some(c) = p
        .categories
        .filter(|c| c.as_array().is_some_and(|a| !a.is_empty()))
    {
        patch.insert("categories".into(), c);
    }
    let mut notes = vec!["created as a draft (Graph's MIME import)".to_string()];
    if !patch.is_empty() {
        let url = format!("/v1.0/users/{}/messages/{new_id}", p.mailbox);
        if let Err(e) = graph::send_json(graph::json_request("PATCH", &url, &Value::Object(patch)))
        {
            notes.push(format!("read state, flag or categories not set: {e:?}"));
        }
    }
    if let Some((c, plan)) = &large {
        let mut attached = vec![];
        for a in &plan.attachments {
            attached.push(upload::attach(&p.mailbox, &new_id, c, a).map_err(|e| {
                PluginError::Other(format!(
                    "message {} was imported without its large attachments, and attaching them \
                     stopped: {e:?}; run the restore again to finish the message",
                    p.internet_message_id
                ))
            })?);
        }
        notes.push(format!(
            "over the 4 MB import limit: imported without {} attachment(s), attached afterwards \
             (upload sessions for files of 3 MiB and more); Exchange re-renders the MIME",
            plan.attachments.len()
        ));
        notes.extend(attached.iter().filter_map(upload::Attached::note));
        for a in plan.attachments.iter().filter(|a| a.message) {
            notes.push(format!(
                "attached message `{}` returned as a .eml file attachment (it did not fit in \
                 the import; Outlook shows it as a file, not as an attached item)",
                a.name
            ));
        }
    }
    Ok(Outcome {
        new_id: Some(new_id),
        notes,
        already_done: false,
    })
}
