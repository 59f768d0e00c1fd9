//! The restorer: brings back files deleted or changed since the snapshot from their backed-up
//! content ([`files`], never overwriting), compares the snapshot's sharing with the live items
//! and brings back removed links (`createLink`; Graph issues new URLs, listed in the outcome)
//! and grants (`invite`) — onto the re-created item for a file restored under a new id — and
//! with `revokeAdded` deletes permissions added after the snapshot.

mod files;

use std::collections::{BTreeMap, BTreeSet};

use cairn_sdk::graph;
use cairn_sdk::prelude::*;
use cairn_sdk::{current_id, record_mapping, snapshot_item};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::perms::{self, str_of, Perm};
use crate::{forbidden_as, DRIVE_ITEM, SHARING};
use files::{Fate, LiveDrive};

const WRITE_PERMISSION: &str = "Files.ReadWrite.All";

/// Restore options this plugin reads (others are ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Options {
    revoke_added: bool,
    cross_tenant: bool,
}

/// What `apply` needs, carried in the action's payload.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    /// `createLink`, `invite`, `revoke` or `manual`.
    op: String,
    drive_id: String,
    item_id: String,
    path: String,
    /// The snapshot's permission (createLink, invite) or the live one to delete (revoke).
    perm: Value,
}

impl Payload {
    /// A manual step about drive item `item_id` (no permission to send).
    fn manual(t: &Target, item_id: &str) -> Payload {
        Payload {
            op: "manual".into(),
            drive_id: t.drive_id.clone(),
            item_id: item_id.to_string(),
            path: t.path.clone(),
            perm: Value::Null,
        }
    }
}

/// One drive item whose sharing is to be restored.
struct Target {
    drive_id: String,
    path: String,
    /// The snapshot's permissions (normalised).
    snap: Vec<Value>,
    /// The live item the sharing goes onto: the snapshot's id, or the item that has the
    /// content now (restored under a new id by an earlier restore).
    live: String,
    /// The file action that re-creates the item in this plan: its sharing goes onto the new
    /// item after it.
    after: Option<String>,
}

fn map_id(id: &str) -> String {
    current_id(id)
}

fn options(raw: &str) -> Options {
    serde_json::from_str::<Value>(raw)
        .ok()
        .filter(Value::is_object)
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default()
}

fn permissions_url(drive: &str, item: &str) -> String {
    format!("/v1.0/drives/{drive}/items/{item}/permissions")
}

pub fn plan(request: RestoreRequest) -> Result<Vec<Action>, PluginError> {
    let opts = options(&request.options);
    let mut targets: BTreeMap<String, Target> = BTreeMap::new();
    for s in &request.selection {
        if (s.kind != SHARING && s.kind != DRIVE_ITEM) || targets.contains_key(&s.id) {
            continue;
        }
        if let Some(it) = snapshot_item(SHARING, &s.id) {
            let b: Value = serde_json::from_str(&it.body)?;
            targets.insert(
                s.id.clone(),
                Target {
                    drive_id: str_of(&b, "driveId").to_string(),
                    path: str_of(&b, "path").to_string(),
                    snap: b
                        .get("permissions")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                    live: s.id.clone(),
                    after: None,
                },
            );
        } else if let Some(it) = snapshot_item(DRIVE_ITEM, &s.id) {
            // Not shared at the snapshot: only revoking can apply to it.
            if !opts.revoke_added {
                continue;
            }
            let b: Value = serde_json::from_str(&it.body)?;
            if b.get("root").is_some() {
                continue;
            }
            let drive_id = b
                .get("parentReference")
                .map(|p| str_of(p, "driveId"))
                .unwrap_or("")
                .to_string();
            targets.insert(
                s.id.clone(),
                Target {
                    drive_id,
                    path: str_of(&b, "@cairn.path").to_string(),
                    snap: Vec::new(),
                    live: s.id.clone(),
                    after: None,
                },
            );
        }
    }
    targets.retain(|_, t| !t.drive_id.is_empty());
    if opts.cross_tenant {
        // Drive and item ids belong to the source tenant: nothing to compare against or act on.
        return Ok(targets
            .iter()
            .filter_map(|(id, t)| {
                let words: Vec<String> = t
                    .snap
                    .iter()
                    .filter_map(Perm::classify)
                    .map(|p| p.words())
                    .collect();
                (!words.is_empty()).then(|| {
                    action(
                        &format!("{SHARING}/{id}/cross-tenant"),
                        ActionKind::Manual,
                        id,
                        t,
                        format!(
                            "share {} again in the target tenant once its content is there: {}",
                            t.path,
                            words.join("; ")
                        ),
                        "a cross-tenant restore cannot address the source tenant's drives".into(),
                        Payload::manual(t, id),
                    )
                })
            })
            .collect());
    }

    // Files deleted or changed since the snapshot, from their backed-up content; their fate
    // decides where their sharing goes.
    let files::Planned {
        mut actions,
        fates,
        live: mut drives,
    } = files::plan(&request.selection, &now_iso()[..10])?;
    for (id, t) in targets.iter_mut() {
        match fates.get(id) {
            Some(Fate::Recreated(aid)) => t.after = Some(aid.clone()),
            Some(Fate::LiveAt(live)) => t.live = live.clone(),
            None => {}
        }
    }
    let mut seen: BTreeSet<String> = actions.iter().map(|a| a.id.clone()).collect();
    // A re-created item starts with no permissions of its own: every snapshot permission is
    // planned onto it, after the action that re-creates it.
    for (id, t) in targets.iter().filter(|(_, t)| t.after.is_some()) {
        let mut keys: BTreeSet<String> = BTreeSet::new();
        for raw in &t.snap {
            let Some(sp) = Perm::classify(raw) else {
                continue;
            };
            if !keys.insert(sp.key()) {
                continue;
            }
            if let Some(mut a) = restore_action(id, t, &sp, raw) {
                a.depends_on = t.after.iter().cloned().collect();
                a.reason = "the item is re-created from the snapshot's content (a new id): its \
                            sharing goes onto the new item"
                    .into();
                if seen.insert(a.id.clone()) {
                    actions.push(a);
                }
            }
        }
    }
    targets.retain(|_, t| t.after.is_none());

    // Items that had no permissions at the snapshot matter only if they are shared now: one
    // delta listing per drive says which (1–2 RU a page instead of 5 per item); drives the
    // file planning listed already are not listed again.
    let drives_to_list: BTreeSet<String> = targets
        .values()
        .filter(|t| t.snap.is_empty())
        .map(|t| t.drive_id.clone())
        .collect();
    for d in drives_to_list {
        if let std::collections::btree_map::Entry::Vacant(slot) = drives.entry(d) {
            let listed = LiveDrive::list(slot.key())?;
            slot.insert(listed);
        }
    }
    // A folder gone under its id but with a folder at its path (re-created for files this or
    // an earlier restore brought back): its sharing is compared with that folder's.
    for (id, t) in targets.iter_mut() {
        let Some(d) = drives.get(&t.drive_id) else {
            continue;
        };
        if t.live != *id || d.items.contains_key(id) || !is_folder(id) {
            continue;
        }
        if let Some(x) = d.at_path(&t.path).filter(|x| x.folder) {
            t.live = x.id.clone();
        }
    }
    let shared_now = |t: &Target| {
        drives
            .get(&t.drive_id)
            .and_then(|d| d.items.get(&t.live))
            .is_some_and(|x| x.shared)
    };

    let ids: Vec<&String> = targets
        .iter()
        .filter(|(_, t)| !t.snap.is_empty() || shared_now(t))
        .map(|(id, _)| id)
        .collect();
    let mut batch = graph::Batch::new();
    for id in &ids {
        let t = &targets[*id];
        batch.push(graph::request(
            "GET",
            &permissions_url(&t.drive_id, &t.live),
        ));
    }
    let responses = batch.send()?;
    for (id, resp) in ids.into_iter().zip(responses) {
        let t = &targets[id];
        let label = format!("GET {}", permissions_url(&t.drive_id, &t.live));
        let live_raw: Vec<Value> = match graph::json_or_error(&label, &resp) {
            Ok(v) => v
                .get("value")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            Err(e) if matches!(&e, PluginError::Graph(g) if g.status == 404) => {
                let n = t.snap.iter().filter_map(Perm::classify).count();
                let how = if has_content(id) {
                    "restore it with its driveItem selected (its content is in the snapshot) or \
                     from the site's recycle bin"
                } else {
                    "restore it from the site's recycle bin"
                };
                if n > 0 {
                    actions.push(action(
                        &format!("{SHARING}/{id}/item-missing"),
                        ActionKind::Manual,
                        id,
                        t,
                        format!(
                            "{how}: {} was deleted after the snapshot; then run this restore \
                             again to bring back its {n} link(s) and grant(s)",
                            t.path
                        ),
                        "the item no longer exists, so its sharing cannot be re-created".into(),
                        Payload::manual(t, id),
                    ));
                }
                continue;
            }
            Err(e) => return Err(forbidden_as(e, "Files.Read.All")),
        };
        let live: Vec<(Perm, &Value)> = live_raw
            .iter()
            .filter_map(|p| Perm::classify(p).map(|c| (c, p)))
            .collect();
        let mut consumed = vec![false; live.len()];
        let mut keys: BTreeSet<String> = BTreeSet::new();
        for raw in &t.snap {
            let Some(sp) = Perm::classify(raw) else {
                continue;
            };
            if !keys.insert(sp.key()) {
                continue; // the same grant twice: one is enough
            }
            if let Some(j) =
                (0..live.len()).find(|&j| !consumed[j] && sp.matches(&live[j].0, &map_id))
            {
                consumed[j] = true;
                continue;
            }
            if let Some(a) = restore_action(id, t, &sp, raw) {
                if seen.insert(a.id.clone()) {
                    actions.push(a);
                }
            }
        }
        if opts.revoke_added {
            for (j, (lp, raw)) in live.iter().enumerate() {
                if consumed[j] {
                    continue;
                }
                let a = action(
                    &format!("{SHARING}/{id}/perm-{}/revoke", lp.id()),
                    ActionKind::Unlink,
                    id,
                    t,
                    format!("remove the {} from {}", lp.words(), t.path),
                    "added after the snapshot (revokeAdded)".into(),
                    Payload {
                        op: "revoke".into(),
                        drive_id: t.drive_id.clone(),
                        item_id: t.live.clone(),
                        path: t.path.clone(),
                        perm: perms::normalize(raw),
                    },
                );
                if seen.insert(a.id.clone()) {
                    actions.push(a);
                }
            }
        }
    }
    Ok(actions)
}

fn action(
    id: &str,
    kind: ActionKind,
    item_id: &str,
    t: &Target,
    summary: String,
    reason: String,
    payload: Payload,
) -> Action {
    Action {
        id: id.to_string(),
        kind,
        item_kind: SHARING.into(),
        item_id: item_id.to_string(),
        display_name: t.path.clone(),
        summary,
        reason,
        depends_on: Vec::new(),
        payload: serde_json::to_string(&payload).expect("payload serialises"),
    }
}

/// The action that brings back a snapshot permission missing from the live item, or `None`
/// for a link that has expired since (it would not be valid anyway).
fn restore_action(item_id: &str, t: &Target, sp: &Perm, raw: &Value) -> Option<Action> {
    // A re-created item is addressed by its snapshot id, which `apply` maps to the new one.
    let payload = |op: &str| Payload {
        op: op.into(),
        drive_id: t.drive_id.clone(),
        item_id: t.live.clone(),
        path: t.path.clone(),
        perm: raw.clone(),
    };
    let words = sp.words();
    let key = sp.key();
    match sp {
        Perm::Link {
            expiration,
            has_password,
            scope,
            ..
        } => {
            if expiration
                .as_deref()
                .is_some_and(|e| e < now_iso().as_str())
            {
                return None;
            }
            if *has_password || !matches!(scope.as_str(), "anonymous" | "organization" | "users") {
                let why = if *has_password {
                    "Graph never returns link passwords, and re-creating it without one would weaken it"
                } else {
                    "Graph's createLink cannot make a link of this scope"
                };
                return Some(action(
                    &format!("{SHARING}/{item_id}/{key}/manual"),
                    ActionKind::Manual,
                    item_id,
                    t,
                    format!(
                        "re-create the {words} on {} by hand and send it to the people who had it ({why})",
                        t.path
                    ),
                    "removed after the snapshot".into(),
                    payload("manual"),
                ));
            }
            Some(action(
                &format!("{SHARING}/{item_id}/{key}/create"),
                ActionKind::Link,
                item_id,
                t,
                format!(
                    "re-create the {words} on {} (createLink; a new URL)",
                    t.path
                ),
                "removed after the snapshot".into(),
                payload("createLink"),
            ))
        }
        Perm::Grant { .. } => Some(action(
            &format!("{SHARING}/{item_id}/{key}/invite"),
            ActionKind::Link,
            item_id,
            t,
            format!("give back the {words} on {} (invite)", t.path),
            "removed after the snapshot".into(),
            payload("invite"),
        )),
    }
}

fn live_permissions(p: &Payload) -> Result<Vec<Value>, PluginError> {
    let v = graph::get_json(&permissions_url(&p.drive_id, &p.item_id))
        .map_err(|e| forbidden_as(e, "Files.Read.All"))?;
    Ok(v.get("value")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

/// The live permission that already gives what `sp` gave, if any.
fn find_live(p: &Payload, sp: &Perm) -> Result<Option<Value>, PluginError> {
    Ok(live_permissions(p)?
        .into_iter()
        .find(|l| Perm::classify(l).is_some_and(|lp| sp.matches(&lp, &map_id))))
}

fn url_of(perm: &Value) -> String {
    perm.get("link")
        .map(|l| str_of(l, "webUrl"))
        .unwrap_or("")
        .to_string()
}

/// Whether drive item `id` was a folder at the snapshot.
fn is_folder(id: &str) -> bool {
    snapshot_item(DRIVE_ITEM, id)
        .and_then(|it| serde_json::from_str::<Value>(&it.body).ok())
        .is_some_and(|b| b.get("folder").is_some())
}

/// Whether the snapshot has content for drive item `id`.
fn has_content(id: &str) -> bool {
    snapshot_item(DRIVE_ITEM, id).is_some_and(|it| it.parts.iter().any(|p| p.name == "content"))
}

pub fn apply(a: Action) -> Result<Outcome, PluginError> {
    if a.item_kind == DRIVE_ITEM {
        return files::apply(&a);
    }
    let mut p: Payload = serde_json::from_str(&a.payload)?;
    // The item may have been re-created by a file action of this restore (new id in remap).
    p.item_id = current_id(&p.item_id);
    // An outcome's `new_id` is the new id of the action's item (the drive item), and the
    // journal reads it so; a permission's new id goes to `remap` under `permission` instead,
    // so that a re-run never maps a drive item to one of its permissions.
    let done = |_permission: Option<String>, notes: Vec<String>, already: bool| Outcome {
        new_id: None,
        notes,
        already_done: already,
    };
    match p.op.as_str() {
        "createLink" => {
            let sp = Perm::classify(&p.perm).ok_or_else(|| {
                PluginError::Other(format!("action {}: not a restorable link", a.id))
            })?;
            let Perm::Link {
                link_type,
                scope,
                grantees,
                expiration,
                ..
            } = &sp
            else {
                return Err(PluginError::Other(format!("action {}: not a link", a.id)));
            };
            // Graph answers 200 with the existing link for anonymous and organization links of
            // a type; specific-people links are new every time, so look first.
            if scope == "users" {
                if let Some(l) = find_live(&p, &sp)? {
                    return Ok(done(
                        Some(str_of(&l, "id").to_string()),
                        vec![format!(
                            "{} already on {}: {}",
                            sp.words(),
                            p.path,
                            url_of(&l)
                        )],
                        true,
                    ));
                }
            }
            let mut body =
                json!({"type": link_type, "scope": scope, "retainInheritedPermissions": true});
            if let Some(e) = expiration {
                body["expirationDateTime"] = json!(e);
            }
            if !grantees.is_empty() {
                body["recipients"] = json!(grantees
                    .iter()
                    .map(|g| g.remapped(&map_id).recipient())
                    .collect::<Vec<_>>());
            }
            let url = format!("/v1.0/drives/{}/items/{}/createLink", p.drive_id, p.item_id);
            let resp = graph::send(graph::json_request("POST", &url, &body))?;
            let created = graph::json_or_error(&format!("POST {url}"), &resp)
                .map_err(|e| forbidden_as(e, WRITE_PERMISSION))?;
            let new_id = str_of(&created, "id").to_string();
            let old_id = sp.id();
            if !old_id.is_empty() && !new_id.is_empty() && old_id != new_id {
                record_mapping("permission", old_id, &new_id);
            }
            let already = resp.status == 200;
            let note = if already {
                format!("{} already on {}: {}", sp.words(), p.path, url_of(&created))
            } else {
                format!("new link URL for {}: {}", p.path, url_of(&created))
            };
            Ok(done(Some(new_id), vec![note], already))
        }
        "invite" => {
            let sp = Perm::classify(&p.perm).ok_or_else(|| {
                PluginError::Other(format!("action {}: not a restorable grant", a.id))
            })?;
            let Perm::Grant {
                principal, roles, ..
            } = &sp
            else {
                return Err(PluginError::Other(format!("action {}: not a grant", a.id)));
            };
            if let Some(l) = find_live(&p, &sp)? {
                return Ok(done(Some(str_of(&l, "id").to_string()), vec![], true));
            }
            let body = json!({
                "recipients": [principal.remapped(&map_id).recipient()],
                "roles": roles.iter().collect::<Vec<_>>(),
                "requireSignIn": true,
                "sendInvitation": false,
            });
            let url = format!("/v1.0/drives/{}/items/{}/invite", p.drive_id, p.item_id);
            let v = graph::send_json(graph::json_request("POST", &url, &body))
                .map_err(|e| forbidden_as(e, WRITE_PERMISSION))?;
            let new_id = v
                .get("value")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .map(|x| str_of(x, "id").to_string())
                .unwrap_or_default();
            if !sp.id().is_empty() && !new_id.is_empty() {
                record_mapping("permission", sp.id(), &new_id);
            }
            Ok(done(
                Some(new_id).filter(|s| !s.is_empty()),
                vec![format!("{} restored on {}", sp.words(), p.path)],
                false,
            ))
        }
        "revoke" => {
            let pid = str_of(&p.perm, "id");
            let url = format!("{}/{pid}", permissions_url(&p.drive_id, &p.item_id));
            let resp = graph::send(graph::request("DELETE", &url))?;
            match resp.status {
                200..=299 => Ok(done(None, vec![], false)),
                404 => Ok(done(None, vec![], true)),
                _ => Err(forbidden_as(
                    PluginError::Graph(graph::decode_error(
                        &format!("DELETE {url}"),
                        resp.status,
                        &resp.body,
                    )),
                    WRITE_PERMISSION,
                )),
            }
        }
        "manual" => Ok(done(None, vec![], false)),
        other => Err(PluginError::Other(format!(
            "action {}: unknown operation `{other}`",
            a.id
        ))),
    }
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ` (WASI clock).
fn now_iso() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
