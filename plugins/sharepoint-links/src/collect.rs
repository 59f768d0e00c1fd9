//! The collector's step: one page of a drive's `root/delta`, the permissions of the page's
//! changed shared items, and (opt-in) their content.

use cairn_sdk::graph::{self, Page};
use cairn_sdk::prelude::*;
use cairn_sdk::{ContentRef, Item};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::perms::{self, str_of};
use crate::{forbidden_as, load_config, DRIVE_ITEM, SHARING};

/// Items per delta page. A page's shared items each cost a 5-RU permission read, so a step
/// stays well inside the smallest SharePoint budget (1,250 RU per minute).
const PAGE_SIZE: u32 = 200;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Full,
    Changes,
}

/// Cursor: the listing mode chosen in the run's first step, the next page, and how often this
/// run's enumeration was reset and started again.
#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    m: Mode,
    u: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    r: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Resets of one run's enumeration after which the task gives up (a fresh enumeration that is
/// reset again and again means the service cannot list the drive now; the next run retries).
const MAX_RESTARTS: u32 = 3;

/// State kept for the next run.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct State {
    delta_link: String,
    content: bool,
}

/// Why a delta page was not read.
enum DeltaFail {
    /// Graph reset the enumeration (410 `resyncRequired`, `resyncChanges*`, an expired
    /// token): start again from `location` (Graph's `Location` header, a fresh enumeration),
    /// or from the drive's initial delta URL when it gives none.
    Reset {
        why: String,
        location: Option<String>,
    },
    Other(PluginError),
}

fn delta_get(url: &str) -> Result<Value, DeltaFail> {
    // `deltashowsharingchanges`: SharePoint reports items whose sharing changed (otherwise a
    // permission change alone need not surface in delta); `hierarchicalsharing` marks only
    // the items whose own permissions differ from their parent's as shared.
    let req = graph::with_header(
        graph::request("GET", url),
        "Prefer",
        &format!("odata.maxpagesize={PAGE_SIZE}, deltashowsharingchanges, hierarchicalsharing"),
    );
    let label = format!("GET {}", url.split('?').next().unwrap_or(url));
    let resp = graph::send(req).map_err(DeltaFail::Other)?;
    match graph::json_or_error(&label, &resp) {
        Ok(v) => Ok(v),
        Err(e) if graph::is_resync(&e) => Err(DeltaFail::Reset {
            why: why(&e),
            location: resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("location"))
                .and_then(|h| relative_url(&h.value)),
        }),
        Err(e) => Err(DeltaFail::Other(e)),
    }
}

/// A `Location` URL as the path (and query) the plugin sends: Graph gives an absolute URL;
/// only a drive delta URL is followed.
fn relative_url(location: &str) -> Option<String> {
    let rest = match location.split_once("://") {
        Some((_, after)) => &after[after.find('/')?..],
        None => location,
    };
    let path = rest.split('?').next().unwrap_or(rest);
    (path.starts_with("/v1.0/drives/") && path.ends_with("/delta")).then(|| rest.to_string())
}

fn why(e: &PluginError) -> String {
    match e {
        PluginError::Graph(g) => format!("{} {}", g.status, g.code),
        other => format!("{other:?}"),
    }
}

pub fn run_step(
    task: Task,
    state: Option<String>,
    cursor: Option<String>,
) -> Result<Step, PluginError> {
    let cfg = load_config()?;
    let params: Value = serde_json::from_str(&task.params)?;
    let drive_id = str_of(&params, "driveId").to_string();
    if drive_id.is_empty() {
        return Err(PluginError::Other(format!(
            "task `{}` has no driveId",
            task.id
        )));
    }
    let initial = format!("/v1.0/drives/{drive_id}/root/delta");
    let mut notes: Vec<String> = Vec::new();
    let first_step = cursor.is_none();
    let (mut mode, url, restarts) = match cursor {
        Some(c) => {
            let c: Cursor = serde_json::from_str(&c).map_err(|e| {
                PluginError::Other(format!("cannot read the cursor of {}: {e}", task.id))
            })?;
            (c.m, c.u, c.r)
        }
        None => match state.as_deref().filter(|s| !s.is_empty()) {
            None => (Mode::Full, initial.clone(), 0),
            Some(s) => match serde_json::from_str::<State>(s) {
                Ok(st) if st.content == cfg.content => (Mode::Changes, st.delta_link, 0),
                Ok(_) => {
                    notes.push(format!(
                        "the content setting changed since the last run; full read of {}",
                        task.label
                    ));
                    (Mode::Full, initial.clone(), 0)
                }
                Err(_) => {
                    notes.push(format!(
                        "the stored state of {} is not readable; full read",
                        task.label
                    ));
                    (Mode::Full, initial.clone(), 0)
                }
            },
        },
    };
    let body = match delta_get(&url) {
        Ok(b) => b,
        // At the first step the listing is still open: the run becomes a full listing.
        Err(DeltaFail::Reset { why: w, location }) if first_step => {
            warn(&format!(
                "{}: drive delta answered {w}; full resync of the drive",
                task.label
            ));
            notes.push(format!(
                "drive delta answered {w}; full resync of {}",
                task.label
            ));
            mode = Mode::Full;
            let fresh = location.unwrap_or_else(|| initial.clone());
            match delta_get(&fresh) {
                Ok(b) => b,
                Err(DeltaFail::Reset { why: w, .. }) => {
                    return Err(PluginError::Other(format!(
                        "{}: a fresh delta enumeration of the drive was reset too ({w}); the \
                         next run starts over",
                        task.label
                    )))
                }
                Err(DeltaFail::Other(e)) => return Err(forbidden_as(e, "Files.Read.All")),
            }
        }
        // Later in a run (the host has fixed the listing): Graph's resync rule — enumerate the
        // drive again from the start and apply the differences, so items not listed again are
        // gone. This step removes every item the task holds (`*` tombstones, no items); the
        // following steps list the fresh enumeration page by page.
        Err(DeltaFail::Reset { why: w, location }) => {
            if restarts >= MAX_RESTARTS {
                return Err(PluginError::Other(format!(
                    "{}: the drive's delta enumeration was reset {} times in this run (last: \
                     {w}); the next run starts over",
                    task.label,
                    restarts + 1
                )));
            }
            let msg = format!(
                "drive delta answered {w} in the middle of the run; {} is listed again from \
                 the start, and items not listed again are removed",
                task.label
            );
            warn(&format!("{}: {msg}", task.label));
            notes.push(msg);
            let fresh = location.unwrap_or_else(|| initial.clone());
            let all = |kind: &str| Tombstone {
                kind: kind.into(),
                id: "*".into(),
                reason: Removal::Gone,
            };
            return Ok(Step {
                listing: listing_of(mode),
                items: Vec::new(),
                removed: vec![all(DRIVE_ITEM), all(SHARING)],
                next: NextStep::More(encode_cursor(mode, &fresh, restarts + 1)),
                note: join(notes),
            });
        }
        Err(DeltaFail::Other(e)) => return Err(forbidden_as(e, "Files.Read.All")),
    };
    if cfg.content && first_step {
        // The host opens a task's storage when the first step's items arrive, and content can
        // only be stored after that: with content on, the first step only settles the listing
        // (full, or changes from a delta link that is still valid) and lists nothing; the next
        // step reads the same page again (a delta page can be read again).
        let again = if mode == Mode::Full { &initial } else { &url };
        return Ok(Step {
            listing: listing_of(mode),
            items: Vec::new(),
            removed: Vec::new(),
            next: NextStep::More(encode_cursor(mode, again, restarts)),
            note: join(notes),
        });
    }
    let page = Page::parse(&body)?;

    let mut items: Vec<Item> = Vec::new();
    let mut removed: Vec<Tombstone> = Vec::new();
    let tomb = |kind: &str, id: &str, reason: Removal| Tombstone {
        kind: kind.into(),
        id: id.into(),
        reason,
    };
    // (index into `items`, item id, path, name) of shared items whose permissions to read.
    let mut shared: Vec<(usize, String, String, String)> = Vec::new();
    for v in &page.value {
        let id = str_of(v, "id").to_string();
        if id.is_empty() {
            continue;
        }
        if v.get("deleted").is_some() {
            if mode == Mode::Changes {
                removed.push(tomb(DRIVE_ITEM, &id, Removal::HardDeleted));
                removed.push(tomb(SHARING, &id, Removal::HardDeleted));
            }
            continue;
        }
        let path = perms::item_path(v);
        let name = str_of(v, "name").to_string();
        let mut body = v.clone();
        if let Some(m) = body.as_object_mut() {
            m.remove("@microsoft.graph.downloadUrl");
            m.retain(|k, _| !k.starts_with("@odata."));
            m.insert("@cairn.path".into(), json!(path));
        }
        let mut parts = Vec::new();
        if cfg.content && v.get("file").is_some() {
            match download(&drive_id, &id) {
                Ok(r) => parts.push(Part {
                    name: "content".into(),
                    content_type: v
                        .get("file")
                        .map(|f| str_of(f, "mimeType"))
                        .filter(|m| !m.is_empty())
                        .unwrap_or("application/octet-stream")
                        .to_string(),
                    data: PartData::Stored(r),
                }),
                Err(e) => {
                    warn(&format!("{}: content of {path}: {e}", task.label));
                    notes.push(format!("content of {path} not backed up: {e}"));
                    body["@cairn.contentError"] = json!(e);
                }
            }
        }
        let is_root = v.get("root").is_some();
        let display = if is_root {
            "/".to_string()
        } else {
            path.clone()
        };
        if v.get("shared").is_some() && !is_root {
            shared.push((items.len(), id.clone(), path, name));
        } else if mode == Mode::Changes {
            // Not shared (any more): its sharing item, if the last snapshot had one, goes.
            removed.push(tomb(SHARING, &id, Removal::Gone));
        }
        items.push(Item {
            kind: DRIVE_ITEM.into(),
            id,
            display_name: display,
            body: body.to_string(),
            parts,
        });
    }

    // Permissions of the page's changed shared items, batched (5 RU each).
    let mut batch = graph::Batch::new();
    for (_, id, _, _) in &shared {
        batch.push(graph::request(
            "GET",
            &format!("/v1.0/drives/{drive_id}/items/{id}/permissions"),
        ));
    }
    let responses = batch.send()?;
    for ((idx, id, path, name), resp) in shared.into_iter().zip(responses) {
        let label = format!("GET /v1.0/drives/{drive_id}/items/{id}/permissions");
        match graph::json_or_error(&label, &resp) {
            Ok(list) => {
                let all: Vec<Value> = list
                    .get("value")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if all.is_empty() {
                    if mode == Mode::Changes {
                        removed.push(tomb(SHARING, &id, Removal::Gone));
                    }
                    continue;
                }
                let body = json!({
                    "driveId": drive_id, "itemId": id, "path": path, "name": name,
                    "permissions": perms::normalize_all(&all),
                });
                items.push(Item {
                    kind: SHARING.into(),
                    id,
                    display_name: path,
                    body: body.to_string(),
                    parts: Vec::new(),
                });
            }
            Err(e) if matches!(&e, PluginError::Graph(g) if g.status == 404) => {
                // Listed by delta, gone by the time we asked: recorded on the item; the next
                // delta round reports its deletion.
                let msg = format!(
                    "{path} vanished between the delta listing and its permissions read ({}); \
                     its sharing is not in this snapshot",
                    why(&e)
                );
                warn(&format!("{}: {msg}", task.label));
                notes.push(msg.clone());
                let mut b: Value = serde_json::from_str(&items[idx].body)?;
                b["@cairn.sharingError"] = json!(msg);
                items[idx].body = b.to_string();
                if mode == Mode::Changes {
                    removed.push(tomb(SHARING, &id, Removal::Gone));
                }
            }
            Err(e) => return Err(forbidden_as(e, "Files.Read.All")),
        }
    }

    let next = match (&page.next_link, &page.delta_link) {
        (Some(n), _) => NextStep::More(encode_cursor(mode, n, restarts)),
        (None, Some(d)) => NextStep::Done(
            serde_json::to_string(&State {
                delta_link: d.clone(),
                content: cfg.content,
            })
            .expect("state serialises"),
        ),
        (None, None) => NextStep::Done(String::new()),
    };
    Ok(Step {
        listing: listing_of(mode),
        items,
        removed,
        next,
        note: join(notes),
    })
}

fn listing_of(mode: Mode) -> Listing {
    match mode {
        Mode::Full => Listing::Full,
        Mode::Changes => Listing::Changes,
    }
}

fn encode_cursor(mode: Mode, url: &str, restarts: u32) -> String {
    serde_json::to_string(&Cursor {
        m: mode,
        u: url.to_string(),
        r: restarts,
    })
    .expect("cursor serialises")
}

fn join(notes: Vec<String>) -> Option<String> {
    if notes.is_empty() {
        None
    } else {
        Some(notes.join("; "))
    }
}

/// Streams an item's content into the repository through the host.
fn download(drive_id: &str, item_id: &str) -> Result<ContentRef, String> {
    let req = graph::request(
        "GET",
        &format!("/v1.0/drives/{drive_id}/items/{item_id}/content"),
    );
    cairn_sdk::bindings::cairn::plugin::content::download(&req).map_err(|e| match e {
        graph::RequestError::Refused(m) => format!("refused: {m}"),
        graph::RequestError::Unavailable(m) => m,
    })
}
