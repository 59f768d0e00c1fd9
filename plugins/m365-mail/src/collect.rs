//! One mailbox task, step by step.
//!
//! - **Step 1** reads `mailFolders/delta` (from the stored folder delta link, if any) to its end
//!   and lists the `mailbox` item, the changed `mailFolder` items and removed folders. It decides
//!   the task's listing: `full` on the first run (or when the stored state is unreadable),
//!   `changes` afterwards. It downloads nothing (the host opens the task's storage with the
//!   first step's items).
//! - **Later steps** walk the folders one message delta page at a time
//!   (`mailFolders/{id}/messages/delta`, from the folder's stored delta link), fetching each
//!   listed message's MIME (`$value`): messages up to [`BATCH_MIME_MAX`] in `$batch` calls
//!   (inline parts), larger ones streamed by the host into the repository, up to 4 at once
//!   (`content.download-many`, labelled `message/rfc822` so the host chunks them at their MIME
//!   structure and a shared attachment is stored once); the first pages of several folders
//!   share a `$batch` and a step. `@removed` messages become tombstones.
//! - **State** for the next run: `{"v":1,"foldersDelta":"…","folders":[ids],"links":{folderId:
//!   deltaLink}}`. **Cursor**: the run's progress (folder queue position, next page, the new
//!   links of finished folders).
//!
//! Message items are keyed `{folderId}/{messageId}`, so a folder's messages can be removed
//! together with a prefix tombstone (`{folderId}/*`, see `wit/types.wit`).
//!
//! Expired or invalid tokens (410, `syncStateNotFound`, `SyncStateInvalid`): an expired folder
//! delta link reads the folder list again (folders missing from it, compared with the state's
//! list, are tombstoned); an expired message delta link re-reads **that folder only** from the
//! start, with a note: one step ends with the prefix tombstones of the folder's messages (and
//! errors), the next ones list the folder again, so messages deleted while the token was
//! invalid leave the snapshot too. A deleted folder is a tombstone of its `mailFolder` item and
//! prefix tombstones of its messages.

use std::collections::{BTreeMap, BTreeSet};

use cairn_sdk::content;
use cairn_sdk::graph::{self, Page};
use cairn_sdk::prelude::*;
use cairn_sdk::{ContentRef, Item, Part, PartData};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::Config;

/// `PR_MESSAGE_SIZE`: the message's size in bytes, as Graph's extended property id.
pub const PR_MESSAGE_SIZE: &str = "Integer 0x0E08";

/// Message properties kept in the metadata record.
pub const MESSAGE_SELECT: &str = "id,parentFolderId,internetMessageId,conversationId,\
receivedDateTime,sentDateTime,createdDateTime,lastModifiedDateTime,isRead,isDraft,flag,\
categories,importance,subject,from,hasAttachments";

/// Folder counters that change with every message: left out of `mailFolder` items.
const FOLDER_VOLATILE: &[&str] = &[
    "totalItemCount",
    "unreadItemCount",
    "sizeInBytes",
    "childFolderCount",
    "@odata.etag",
];

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct State {
    v: u32,
    folders_delta: String,
    folders: Vec<String>,
    links: BTreeMap<String, String>,
    /// Messages with a `messageError` item in the snapshot.
    #[serde(default)]
    errors: BTreeSet<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    /// `true` = full listing.
    full: bool,
    /// The new folder delta link.
    fd: String,
    /// Folders to walk, in order.
    folders: Vec<String>,
    /// Position in `folders`.
    i: usize,
    /// Next page of the current folder, if it is part-way.
    url: Option<String>,
    /// The current folder is being read from the start after its token expired.
    #[serde(default)]
    resync: bool,
    /// New message delta links of the folders finished in this run.
    links: BTreeMap<String, String>,
    /// Messages with a `messageError` item (from the state, updated as the run goes).
    #[serde(default)]
    errors: BTreeSet<String>,
    /// Messages per folder (`totalItemCount`) as the folder listing said, in a full listing:
    /// how many folders' first pages fit in one step's `$batch`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    counts: BTreeMap<String, u64>,
}

fn user_of(task: &Task) -> Result<(String, Value), PluginError> {
    let params: Value = serde_json::from_str(&task.params)?;
    let user = params
        .get("user")
        .and_then(Value::as_str)
        .ok_or_else(|| PluginError::Other(format!("task {} has no `user` parameter", task.id)))?
        .to_string();
    Ok((user, params))
}

fn get_paged(url: &str, page_size: u32) -> Result<Value, PluginError> {
    graph::send_json(graph::with_header(
        graph::request("GET", url),
        "Prefer",
        &format!("odata.maxpagesize={page_size}"),
    ))
}

fn error_words(e: &PluginError) -> String {
    match e {
        PluginError::Graph(g) => format!("{} {}", g.status, g.code),
        PluginError::Other(m) | PluginError::Refused(m) | PluginError::Config(m) => m.clone(),
        PluginError::PermissionDenied(p) => format!("permission {p} missing"),
    }
}

/// Graph's mail sync errors that mean "start this sync again" (besides [`graph::is_resync`]).
fn is_resync(e: &PluginError) -> bool {
    graph::is_resync(e)
        || matches!(e, PluginError::Graph(g) if g.code.eq_ignore_ascii_case("SyncStateInvalid"))
}

pub fn run_step(
    cfg: &Config,
    task: &Task,
    state: Option<String>,
    cursor: Option<String>,
) -> Result<Step, PluginError> {
    let (user, params) = user_of(task)?;
    match cursor {
        None => first_step(&user, &params, state),
        Some(c) => {
            let c: Cursor = serde_json::from_str(&c)
                .map_err(|e| PluginError::Other(format!("unreadable cursor: {e}")))?;
            message_step(cfg, &user, state, c)
        }
    }
}

fn folders_url(user: &str) -> String {
    format!("/v1.0/users/{user}/mailFolders/delta")
}

fn first_step(user: &str, params: &Value, state: Option<String>) -> Result<Step, PluginError> {
    let mut note = None;
    let prev: Option<State> = match state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match serde_json::from_str::<State>(s) {
            Ok(st) if st.v == 1 => Some(st),
            _ => {
                note = Some("the stored state is not readable; full read".to_string());
                None
            }
        },
    };
    let full = prev.is_none();
    // Folder delta, to its end (folders are few).
    let start = prev
        .as_ref()
        .map(|p| p.folders_delta.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| folders_url(user));
    let mut folder_relisted = full;
    let mut url = start;
    let mut values: Vec<Value> = Vec::new();
    let mut removed_ids: Vec<String> = Vec::new();
    let folders_delta = loop {
        let page = match get_paged(&url, 200) {
            Ok(b) => Page::parse(&b)?,
            Err(e) if is_resync(&e) && !folder_relisted => {
                warn(&format!(
                    "mailbox {user}: folder delta token expired ({}); listing folders again",
                    error_words(&e)
                ));
                note = Some(format!(
                    "folder delta token expired ({}); folders listed again",
                    error_words(&e)
                ));
                folder_relisted = true;
                values.clear();
                removed_ids.clear();
                url = folders_url(user);
                continue;
            }
            Err(e) => return Err(mail_error(e, user)),
        };
        values.extend(page.value);
        removed_ids.extend(page.removed.into_iter().map(|(id, _)| id));
        match (page.next_link, page.delta_link) {
            (Some(next), _) => url = next,
            (None, Some(delta)) => break delta,
            (None, None) => break String::new(),
        }
    };

    let mut items = vec![Item {
        kind: "mailbox".into(),
        id: user.to_string(),
        display_name: params
            .get("upn")
            .and_then(Value::as_str)
            .unwrap_or(user)
            .to_string(),
        body: json!({
            "id": user,
            "userPrincipalName": params.get("upn"),
            "displayName": params.get("displayName"),
            "mail": params.get("mail"),
        })
        .to_string(),
        parts: vec![],
    }];
    let mut current: Vec<String> = match (&prev, folder_relisted) {
        (Some(p), false) => p.folders.clone(),
        _ => Vec::new(),
    };
    for f in &values {
        let Some(id) = f.get("id").and_then(Value::as_str) else {
            continue;
        };
        let mut body: Map<String, Value> = f.as_object().cloned().unwrap_or_default();
        for k in FOLDER_VOLATILE {
            body.remove(*k);
        }
        body.insert("mailbox".into(), json!(user));
        items.push(Item {
            kind: "mailFolder".into(),
            id: id.to_string(),
            display_name: f
                .get("displayName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            body: Value::Object(body).to_string(),
            parts: vec![],
        });
        if !current.iter().any(|c| c == id) {
            current.push(id.to_string());
        }
    }
    let mut removed: Vec<Tombstone> = Vec::new();
    current.retain(|c| !removed_ids.contains(c));
    let mut gone_folders: Vec<(String, Removal)> = Vec::new();
    if !full {
        for id in &removed_ids {
            gone_folders.push((id.clone(), Removal::HardDeleted));
        }
        // A relisted folder tree: what the state knew and the listing lacks is gone.
        if folder_relisted {
            if let Some(p) = &prev {
                for id in p.folders.iter().filter(|id| !current.contains(id)) {
                    gone_folders.push((id.clone(), Removal::Gone));
                }
            }
        }
    }
    let mut errors: BTreeSet<String> = prev.as_ref().map(|p| p.errors.clone()).unwrap_or_default();
    let counts: BTreeMap<String, u64> = if full {
        values
            .iter()
            .filter_map(|f| {
                Some((
                    f.get("id")?.as_str()?.to_string(),
                    f.get("totalItemCount")?.as_u64()?,
                ))
            })
            .collect()
    } else {
        BTreeMap::new()
    };
    for (id, reason) in gone_folders {
        removed.push(Tombstone {
            kind: "mailFolder".into(),
            id: id.clone(),
            reason,
        });
        removed.extend(folder_contents_gone(&id, &mut errors));
    }
    let cursor = Cursor {
        full,
        fd: folders_delta,
        folders: current,
        i: 0,
        url: None,
        resync: false,
        links: BTreeMap::new(),
        errors,
        counts,
    };
    Ok(Step {
        listing: if full {
            Listing::Full
        } else {
            Listing::Changes
        },
        items,
        removed,
        next: NextStep::More(serde_json::to_string(&cursor)?),
        note,
    })
}

/// The item id of a message: `{folderId}/{messageId}`.
pub fn message_key(folder: &str, message: &str) -> String {
    format!("{folder}/{message}")
}

/// Prefix tombstones for every message (and message error) of a folder.
fn folder_contents_gone(folder: &str, errors: &mut BTreeSet<String>) -> Vec<Tombstone> {
    let prefix = format!("{folder}/");
    errors.retain(|e| !e.starts_with(&prefix));
    ["message", "messageError"]
        .into_iter()
        .map(|kind| Tombstone {
            kind: kind.into(),
            id: format!("{prefix}*"),
            reason: Removal::Gone,
        })
        .collect()
}

fn messages_url(user: &str, folder: &str) -> String {
    format!(
        "/v1.0/users/{user}/mailFolders/{folder}/messages/delta?$select={MESSAGE_SELECT}\
         &$expand=singleValueExtendedProperties($filter=id%20eq%20'{}')",
        PR_MESSAGE_SIZE.replace(' ', "%20")
    )
}

fn mail_error(e: PluginError, _user: &str) -> PluginError {
    crate::forbidden(e, "Mail.Read")
}

fn message_step(
    cfg: &Config,
    user: &str,
    state: Option<String>,
    mut c: Cursor,
) -> Result<Step, PluginError> {
    let prev: Option<State> = state
        .as_deref()
        .and_then(|s| serde_json::from_str::<State>(s).ok());
    let listing = if c.full {
        Listing::Full
    } else {
        Listing::Changes
    };
    let mut items: Vec<Item> = Vec::new();
    let mut removed: Vec<Tombstone> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    // Several small pages may share a step; a step ends after about one page of messages.
    let budget = cfg.page_size as usize;
    // The folder's first request: its stored delta link, or a fresh round.
    let start_url = |k: usize, resync: bool| -> String {
        let folder = &c.folders[k];
        prev.as_ref()
            .filter(|_| !c.full && !resync)
            .and_then(|p| p.links.get(folder))
            .cloned()
            .unwrap_or_else(|| messages_url(user, folder))
    };
    // The first pages of the next folders go in one `$batch` (Graph runs 4 per mailbox at
    // once) instead of one request each: in a change listing up to 20 folders (most have one
    // short page of changes, usually none); in a full listing as many as the step's budget
    // holds by the folders' message counts (most folders are empty). A page with more (a
    // next link) continues on its own.
    let mut prefetched: BTreeMap<usize, graph::Response> = BTreeMap::new();
    while c.i < c.folders.len() && items.len() < budget {
        let folder = c.folders[c.i].clone();
        if c.url.is_none() && !c.resync && !prefetched.contains_key(&c.i) {
            let end = if c.full {
                first_pages_fitting(&c, budget.saturating_sub(items.len()), cfg.page_size)
            } else {
                (c.i + 20).min(c.folders.len())
            };
            if end - c.i > 1 {
                let mut batch = graph::Batch::new();
                for k in c.i..end {
                    batch.push(graph::with_header(
                        graph::request("GET", &start_url(k, false)),
                        "Prefer",
                        &format!("odata.maxpagesize={}", cfg.page_size),
                    ));
                }
                prefetched.extend((c.i..end).zip(batch.send()?));
            }
        }
        let url = match &c.url {
            Some(u) => u.clone(),
            None => start_url(c.i, c.resync),
        };
        let fetched = match prefetched
            .remove(&c.i)
            .filter(|_| c.url.is_none() && !c.resync)
        {
            Some(resp) => graph::json_or_error(&format!("GET {url}"), &resp),
            None => get_paged(&url, cfg.page_size),
        };
        let body = match fetched {
            Ok(b) => b,
            Err(e) if is_resync(&e) && !c.resync && !c.full => {
                let why = error_words(&e);
                warn(&format!(
                    "mailbox {user}: message delta token of folder {folder} expired ({why}); \
                     reading that folder again"
                ));
                notes.push(format!(
                    "message delta token of folder {folder} expired ({why}); full pass of that folder"
                ));
                // This step drops the folder's messages; the next ones list them again (the
                // host applies a step's items before its tombstones).
                removed.extend(folder_contents_gone(&folder, &mut c.errors));
                c.resync = true;
                c.url = Some(messages_url(user, &folder));
                break;
            }
            Err(PluginError::Graph(g)) if g.status == 404 => {
                // The folder went away after the folder delta listed it: the next run's folder
                // delta reports it.
                notes.push(format!(
                    "folder {folder} vanished during the run ({} {})",
                    g.status, g.code
                ));
                c.i += 1;
                c.url = None;
                c.resync = false;
                continue;
            }
            Err(e) => return Err(mail_error(e, user)),
        };
        let page = Page::parse(&body)?;
        let mut fetched = fetch_mime(user, &page.value, cfg)?;
        for (i, m) in page.value.iter().enumerate() {
            message_items(
                cfg,
                user,
                fetched.remove(&i),
                &folder,
                m,
                &mut items,
                &mut removed,
                &mut c.errors,
            )?;
        }
        for (id, _) in &page.removed {
            let key = message_key(&folder, id);
            removed.push(Tombstone {
                kind: "message".into(),
                id: key.clone(),
                reason: Removal::HardDeleted,
            });
            if c.errors.remove(&key) {
                removed.push(Tombstone {
                    kind: "messageError".into(),
                    id: key,
                    reason: Removal::Gone,
                });
            }
        }
        match (page.next_link, page.delta_link) {
            (Some(next), _) => c.url = Some(next),
            (None, delta) => {
                if let Some(d) = delta {
                    c.links.insert(folder, d);
                }
                c.i += 1;
                c.url = None;
                c.resync = false;
            }
        }
    }
    let note = (!notes.is_empty()).then(|| notes.join("; "));
    let next = if c.i >= c.folders.len() {
        let state = State {
            v: 1,
            folders_delta: c.fd.clone(),
            folders: c.folders.clone(),
            links: c.links.clone(),
            errors: c.errors.clone(),
        };
        NextStep::Done(serde_json::to_string(&state)?)
    } else {
        NextStep::More(serde_json::to_string(&c)?)
    };
    Ok(Step {
        listing,
        items,
        removed,
        next,
        note,
    })
}

/// The end (exclusive) of the run of folders from `c.i` whose first pages fit in `room`
/// items by their message counts (each at most a page); at least one folder, at most 20 (a
/// `$batch`). A folder without a count is taken as a full page.
fn first_pages_fitting(c: &Cursor, room: usize, page_size: u32) -> usize {
    let page = page_size.max(1) as u64;
    let mut room = room as u64;
    let mut end = c.i;
    while end < c.folders.len() && end - c.i < 20 {
        let need = c
            .counts
            .get(&c.folders[end])
            .copied()
            .unwrap_or(page)
            .min(page);
        if end > c.i && need > room {
            break;
        }
        room = room.saturating_sub(need);
        end += 1;
    }
    end
}

/// The size Graph reports in `PR_MESSAGE_SIZE`, if expanded.
fn size_of(m: &Value) -> Option<u64> {
    m.get("singleValueExtendedProperties")
        .and_then(Value::as_array)?
        .iter()
        .find(|p| {
            p.get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| id.eq_ignore_ascii_case(PR_MESSAGE_SIZE))
        })
        .and_then(|p| p.get("value"))
        .and_then(|v| match v {
            Value::String(s) => s.parse().ok(),
            Value::Number(n) => n.as_u64(),
            _ => None,
        })
}

/// The metadata record of a message as Graph listed it.
fn metadata(user: &str, m: &Value, size: Option<u64>) -> Map<String, Value> {
    let mut body = Map::new();
    for k in MESSAGE_SELECT.split(',') {
        if let Some(v) = m.get(k) {
            body.insert(k.to_string(), v.clone());
        }
    }
    body.insert("size".into(), json!(size));
    body.insert("mailbox".into(), json!(user));
    body
}

fn error_item(id: &str, subject: &str, body: Value) -> Item {
    Item {
        kind: "messageError".into(),
        id: id.to_string(),
        display_name: format!(
            "{}: {subject}",
            body.get("reason")
                .and_then(Value::as_str)
                .unwrap_or("error")
        ),
        body: body.to_string(),
        parts: vec![],
    }
}

/// The items of one listed message: its record with the MIME part, or its error.
/// Messages up to this size (by `PR_MESSAGE_SIZE`) are fetched in `$batch` calls and stored
/// as inline parts: Graph runs up to 4 of a batch's requests against a mailbox at once, so a
/// page of small messages costs one or two round trips instead of one per message. Larger (or
/// unsized) messages are streamed through `content.download-many`, up to 4 at once.
pub const BATCH_MIME_MAX: u64 = 64 * 1024;

/// A message's MIME as fetched for its page.
enum Fetched {
    /// A small message's `$value` from a `$batch` (any status).
    Batched(graph::Response),
    /// A larger message streamed into the repository (or why not).
    Streamed(Result<ContentRef, PluginError>),
}

/// `$value` of the page's messages, by their index in the page: small ones (by
/// `PR_MESSAGE_SIZE`) in `$batch` calls, larger or unsized ones streamed into the repository
/// by the host, up to 4 at once (`content.download-many`), chunked at their MIME structure.
/// Messages over `maxMessageBytes` are not fetched.
fn fetch_mime(
    user: &str,
    page: &[Value],
    cfg: &Config,
) -> Result<BTreeMap<usize, Fetched>, PluginError> {
    let mut batch = graph::Batch::new();
    let mut batched = Vec::new();
    let mut streams = Vec::new();
    let mut streamed = Vec::new();
    for (i, m) in page.iter().enumerate() {
        let Some(id) = m.get("id").and_then(Value::as_str) else {
            continue;
        };
        let size = size_of(m);
        if size.is_some_and(|s| s > cfg.max_message_bytes) {
            continue;
        }
        let req = graph::request("GET", &format!("/v1.0/users/{user}/messages/{id}/$value"));
        if size.is_some_and(|s| s <= BATCH_MIME_MAX) {
            batch.push(req);
            batched.push(i);
        } else {
            streams.push((req, Some(content::MESSAGE_RFC822.to_string())));
            streamed.push(i);
        }
    }
    let mut out = BTreeMap::new();
    if !batch.is_empty() {
        out.extend(
            batched
                .into_iter()
                .zip(batch.send()?.into_iter().map(Fetched::Batched)),
        );
    }
    if !streams.is_empty() {
        out.extend(
            streamed.into_iter().zip(
                content::download_many(streams)
                    .into_iter()
                    .map(Fetched::Streamed),
            ),
        );
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn message_items(
    cfg: &Config,
    user: &str,
    fetched: Option<Fetched>,
    folder_id: &str,
    m: &Value,
    items: &mut Vec<Item>,
    removed: &mut Vec<Tombstone>,
    errors: &mut BTreeSet<String>,
) -> Result<(), PluginError> {
    let Some(graph_id) = m.get("id").and_then(Value::as_str) else {
        return Ok(());
    };
    let key = message_key(folder_id, graph_id);
    let id = key.as_str();
    let subject = m
        .get("subject")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let size = size_of(m);
    let mut body = metadata(user, m, size);
    let folder = m.get("parentFolderId").cloned().unwrap_or(Value::Null);
    let record = |body: Map<String, Value>, parts: Vec<Part>| Item {
        kind: "message".into(),
        id: id.to_string(),
        display_name: subject.clone(),
        body: Value::Object(body).to_string(),
        parts,
    };
    if let Some(sz) = size.filter(|s| *s > cfg.max_message_bytes) {
        let detail = format!(
            "{sz} bytes is over the size limit of {} bytes (maxMessageBytes); MIME not downloaded",
            cfg.max_message_bytes
        );
        body.insert("@cairn.error".into(), json!(detail));
        items.push(record(body, vec![]));
        errors.insert(id.to_string());
        items.push(error_item(
            id,
            &subject,
            json!({"mailbox": user, "messageId": graph_id, "parentFolderId": folder, "reason": "tooLarge",
                   "size": sz, "limit": cfg.max_message_bytes, "detail": detail}),
        ));
        return Ok(());
    }
    let fetched: Result<PartData, PluginError> = match fetched {
        Some(Fetched::Batched(resp)) if (200..300).contains(&resp.status) => {
            Ok(PartData::Inline(resp.body))
        }
        Some(Fetched::Streamed(r)) => r.map(PartData::Stored),
        Some(Fetched::Batched(resp)) => {
            let label = format!("GET /v1.0/users/{user}/messages/{graph_id}/$value");
            let g = graph::decode_error(&label, resp.status, &resp.body);
            Err(PluginError::Other(format!(
                "{label}: HTTP {} ({}: {})",
                g.status, g.code, g.message
            )))
        }
        None => content::download_many(vec![(
            graph::request(
                "GET",
                &format!("/v1.0/users/{user}/messages/{graph_id}/$value"),
            ),
            Some(content::MESSAGE_RFC822.to_string()),
        )])
        .pop()
        .unwrap_or_else(|| Err(PluginError::Other("the host returned no download".into())))
        .map(PartData::Stored),
    };
    match fetched {
        Ok(mime) => {
            let len = match &mime {
                PartData::Inline(b) => b.len() as u64,
                PartData::Stored(c) => c.size,
            };
            if size.is_none() {
                body.insert("size".into(), json!(len));
            }
            items.push(record(body, vec![mime_part(mime)]));
            if errors.remove(id) {
                removed.push(Tombstone {
                    kind: "messageError".into(),
                    id: id.to_string(),
                    reason: Removal::Gone,
                });
            }
        }
        Err(e) => {
            let status = content::failed_status(&e);
            let detail = error_words(&e);
            match status {
                Some(404) => {
                    // Deleted between the delta page and the download: the next delta round
                    // reports its removal.
                    errors.insert(id.to_string());
                    items.push(error_item(
                        id,
                        &subject,
                        json!({"mailbox": user, "messageId": graph_id, "parentFolderId": folder,
                               "reason": "vanished", "status": 404, "detail": detail}),
                    ));
                }
                Some(s) if (400..500).contains(&s) && s != 429 => {
                    body.insert("@cairn.error".into(), json!(detail));
                    items.push(record(body, vec![]));
                    errors.insert(id.to_string());
                    items.push(error_item(
                        id,
                        &subject,
                        json!({"mailbox": user, "messageId": graph_id, "parentFolderId": folder,
                               "reason": "mimeUnavailable", "status": s, "detail": detail}),
                    ));
                }
                // Throttling past the host's retry budget, 5xx, network: fail the task; the
                // next run resumes from the last checkpoint.
                _ => return Err(e),
            }
        }
    }
    Ok(())
}

fn mime_part(data: PartData) -> Part {
    Part {
        name: "mime".into(),
        content_type: "message/rfc822".into(),
        data,
    }
}
