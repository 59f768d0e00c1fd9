//! # `sharepoint-links`: SharePoint / OneDrive sharing, backed up and restored
//!
//! A collector and restorer for the sharing of files in SharePoint document libraries,
//! OneDrives and group drives: which links exist (type, scope, expiry, password flag, who a
//! specific-people link names) and whom items are granted to directly.
//!
//! ## Scope (manifest `config`)
//! `allSites` (every site's document libraries, group-connected team sites included),
//! `allOneDrives` (every user's OneDrive: the personal sites `getAllSites` lists, one drive read
//! each), `sites = [...]` (by id, name, display name or URL),
//! `users = [...]` (OneDrives by user id or UPN), `groups = [...]` (group drives by group id).
//! With none of them, `allSites` and `allOneDrives`. `content = true` also backs up file content,
//! streamed by the host into the repository (never whole files in plugin memory).
//!
//! ## Tasks and items
//! One task per drive, `drive/<drive-id>`, read by `root/delta`, one page a step. Items:
//! - `driveItem` (id = the item id): Graph's driveItem (ids, name, size, hashes, `shared`
//!   facet, timestamps) plus `@cairn.path` (`/Finance/Payroll.xlsx`), and with `content = true`
//!   a `content` part.
//! - `sharing` (id = the item id) for items with permissions: `{driveId, itemId, path, name,
//!   permissions: [...]}` with every permission as Graph returns it (link type/scope/webUrl,
//!   expiry, `hasPassword`, `grantedToV2`, `grantedToIdentitiesV2`, `invitation`,
//!   `inheritedFrom`), sorted by id. One item per drive item, not per permission: Graph's
//!   delta says an item's sharing changed, not which permission went away, and a change
//!   listing can only remove what it names, so the whole set is re-read and rewritten. `cairn
//!   diff` turns the difference into sentences per permission.
//!
//! Permission reads cost 5 SharePoint resource units each, so they are made only for items
//! that delta reports changed *and* that carry the `shared` facet (batched, 20 per `$batch`).
//! An item whose `shared` facet is gone gets a tombstone for its `sharing` item instead.
//!
//! ## State and resync
//! State: `{"deltaLink": "…", "content": bool}`; cursor: `{"m": "full"|"changes", "u": "<nextLink>",
//! "r": <resets this run>}`. A 410 (`resyncRequired`, `resyncChanges*`) or an expired token at
//! the first step makes the run a full read (`Listing::Full`). Later in a run (the host has fixed
//! the listing) it follows Graph's resync rule: a step with no items removes every item of the
//! task (`*` tombstones of both kinds), and the fresh enumeration from the 410's `Location`
//! lists the drive again, so whatever it does not list again is gone. Both say so in the step's
//! note and the run log; the host counts the restart. An item that vanishes between delta
//! and its permissions read (404) is annotated `@cairn.sharingError`, named in the note, and
//! the run goes on; likewise a failed content download (`@cairn.contentError`).
//!
//! ## Restore
//! Files deleted or changed since the snapshot come back from their `content` part, never
//! overwriting a live file (`restore::files`); links and grants are compared with the live
//! item's and brought back (`createLink`, `invite`), onto the new item for a re-created file;
//! with `revokeAdded`, permissions added since are deleted.

use cairn_sdk::graph;
use cairn_sdk::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

mod collect;
mod perms;
mod restore;

/// Item kinds.
pub const DRIVE_ITEM: &str = "driveItem";
pub const SHARING: &str = "sharing";

/// The plugin's manifest configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Config {
    all_sites: bool,
    all_one_drives: bool,
    sites: Vec<String>,
    users: Vec<String>,
    groups: Vec<String>,
    /// Back up file content too.
    pub(crate) content: bool,
}

impl Config {
    fn nothing_named(&self) -> bool {
        !self.all_sites
            && !self.all_one_drives
            && self.sites.is_empty()
            && self.users.is_empty()
            && self.groups.is_empty()
    }
}

pub(crate) fn load_config() -> Result<Config, PluginError> {
    let mut cfg: Config = config()?;
    if cfg.nothing_named() {
        cfg.all_sites = true;
        cfg.all_one_drives = true;
    }
    Ok(cfg)
}

struct Links;

impl Plugin for Links {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "sharepoint-links",
            env!("CARGO_PKG_VERSION"),
            "Backs up and restores SharePoint and OneDrive sharing: drive items, sharing links \
             and direct grants (file content optional)",
        )
        .collector(&[DRIVE_ITEM, SHARING])
        .restorer(&[DRIVE_ITEM, SHARING])
        .config_schema(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "allSites": {"description": "Every SharePoint site's document libraries (group-connected sites included). Default when no scope is given.", "type": "boolean", "default": false},
                "allOneDrives": {"description": "Every user's OneDrive. Default when no scope is given.", "type": "boolean", "default": false},
                "sites": {"description": "Sites by id, name, display name or URL", "type": "array", "items": {"type": "string"}, "uniqueItems": true},
                "users": {"description": "OneDrives of these users (id or userPrincipalName)", "type": "array", "items": {"type": "string"}, "uniqueItems": true},
                "groups": {"description": "Drives of these Microsoft 365 groups (group id)", "type": "array", "items": {"type": "string"}, "uniqueItems": true},
                "content": {"description": "Also back up file content (streamed into the repository)", "type": "boolean", "default": false}
            }
        }))
        .permission(
            "Sites.Read.All",
            "list sites and their document libraries",
            PermissionUse::Backup,
        )
        .permission(
            "Files.Read.All",
            "read drive items by delta, their sharing permissions and (content = true) file content",
            PermissionUse::Backup,
        )
        .permission(
            "User.Read.All",
            "find the OneDrives of users named in `users` (and of every user when the site listing does not mark personal sites)",
            PermissionUse::Backup,
        )
        .permission(
            "Sites.ReadWrite.All",
            "re-create sharing links and grants, revoke ones added after the snapshot, upload restored files (upload sessions)",
            PermissionUse::Restore,
        )
        .permission(
            "Files.ReadWrite.All",
            "re-create sharing links (createLink) and grants (invite), delete added permissions, restore deleted or changed files and their folders",
            PermissionUse::Restore,
        )
    }

    fn configured() -> Result<(), PluginError> {
        load_config().map(|_| ())
    }
}

/// A 403 from a SharePoint endpoint as the permission the plugin lacks.
pub(crate) fn forbidden_as(e: PluginError, permission: &str) -> PluginError {
    if graph::is_forbidden(&e) {
        PluginError::PermissionDenied(permission.to_string())
    } else {
        e
    }
}

/// A drive to back up.
struct DriveRef {
    label: String,
}

fn add_drive(out: &mut BTreeMap<String, DriveRef>, drive: &Value, label: String) {
    if let Some(id) = drive.get("id").and_then(Value::as_str) {
        out.entry(id.to_string()).or_insert(DriveRef { label });
    }
}

fn is_not_found(e: &PluginError) -> bool {
    matches!(e, PluginError::Graph(g) if g.status == 404)
}

/// Reads the drive at each `(path, owner)` in `$batch` and adds it as "OneDrive of <owner>"
/// (`label` may name the owner from the drive itself); returns how many answered 404.
fn read_one_drives(
    drives: &mut BTreeMap<String, DriveRef>,
    wanted: &[(String, &str)],
    label: impl Fn(&Value, &str) -> String,
) -> Result<usize, PluginError> {
    let mut batch = graph::Batch::new();
    for (path, _) in wanted {
        batch.push(graph::request("GET", path));
    }
    let mut missing = 0usize;
    for ((path, owner), r) in wanted.iter().zip(batch.send()?) {
        match graph::json_or_error(&format!("GET {path}"), &r) {
            Ok(d) => {
                let name = label(&d, owner);
                add_drive(drives, &d, format!("OneDrive of {name}"));
            }
            Err(e) if is_not_found(&e) => missing += 1,
            Err(e) => return Err(forbidden_as(e, "Files.Read.All")),
        }
    }
    Ok(missing)
}

/// The OneDrive behind each personal site of `sites` (`/sites/{id}/drive`), named by its
/// owner's display name.
fn one_drives_of_personal_sites(
    drives: &mut BTreeMap<String, DriveRef>,
    sites: &[Value],
) -> Result<(), PluginError> {
    let wanted: Vec<(String, &str)> = sites
        .iter()
        .filter(|s| s.get("isPersonalSite").and_then(Value::as_bool) == Some(true))
        .map(|s| {
            let path = format!("/v1.0/sites/{}/drive", perms::str_of(s, "id"));
            (path, perms::str_of(s, "displayName"))
        })
        .collect();
    let owner = |d: &Value, site_name: &str| {
        d.pointer("/owner/user/displayName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .unwrap_or(site_name)
            .to_string()
    };
    // A site listed, then deleted before its drive was read, has nothing to back up.
    let gone = read_one_drives(drives, &wanted, owner)?;
    if gone > 0 {
        info(&format!(
            "{gone} personal sites had no drive any more when read"
        ));
    }
    Ok(())
}

/// Every user's OneDrive, one probe per user (`/users/{id}/drive`), named by UPN.
fn one_drives_of_users(drives: &mut BTreeMap<String, DriveRef>) -> Result<(), PluginError> {
    let users = graph::get_all("/v1.0/users?$select=id,userPrincipalName&$top=999")
        .map_err(|e| forbidden_as(e, "User.Read.All"))?;
    let wanted: Vec<(String, &str)> = users
        .iter()
        .map(|u| {
            let path = format!("/v1.0/users/{}/drive", perms::str_of(u, "id"));
            (path, perms::str_of(u, "userPrincipalName"))
        })
        .collect();
    let none = read_one_drives(drives, &wanted, |_, upn| upn.to_string())?;
    if none > 0 {
        info(&format!(
            "{none} users have no OneDrive (not provisioned, or guests)"
        ));
    }
    Ok(())
}

impl Collector for Links {
    fn plan() -> Result<Vec<Task>, PluginError> {
        let cfg = load_config()?;
        let mut drives: BTreeMap<String, DriveRef> = BTreeMap::new();
        // `getAllSites` lists every site collection, OneDrives' personal sites among them
        // (`isPersonalSite`). With `allOneDrives` it is the cheaper way to find OneDrives: one
        // read per existing OneDrive instead of one probe per user (most of whom may have
        // none). A listing that does not say which sites are personal falls back to probing
        // every user's drive.
        let listed = if cfg.all_sites || !cfg.sites.is_empty() || cfg.all_one_drives {
            Some(
                graph::get_all(
                    "/v1.0/sites/getAllSites?$select=id,name,displayName,webUrl,isPersonalSite",
                )
                .map_err(|e| forbidden_as(e, "Sites.Read.All"))?,
            )
        } else {
            None
        };
        let sites = listed.as_deref().unwrap_or_default();
        let says_personal = sites.iter().any(|s| s.get("isPersonalSite").is_some());
        let is_personal =
            |s: &Value| s.get("isPersonalSite").and_then(Value::as_bool) == Some(true);
        let mut chosen: Vec<&Value> = Vec::new();
        if cfg.all_sites {
            chosen.extend(sites.iter().filter(|s| !is_personal(s)));
        }
        for want in &cfg.sites {
            let w = want.trim_end_matches('/');
            let found = sites.iter().find(|s| {
                ["id", "name", "displayName", "webUrl"].iter().any(|k| {
                    s.get(*k)
                        .and_then(Value::as_str)
                        .is_some_and(|v| v.trim_end_matches('/').eq_ignore_ascii_case(w))
                })
            });
            match found {
                Some(s) => chosen.push(s),
                None => {
                    return Err(PluginError::Config(format!(
                        "site `{want}` in `sites` was not found; name a site by its id, \
                         name, display name or URL"
                    )))
                }
            }
        }
        for s in chosen {
            let sid = perms::str_of(s, "id");
            let sname = perms::str_of(s, "displayName");
            let list = graph::get_all(&format!("/v1.0/sites/{sid}/drives"))
                .map_err(|e| forbidden_as(e, "Sites.Read.All"))?;
            for d in list {
                let label = format!("{sname} / {}", perms::str_of(&d, "name"));
                add_drive(&mut drives, &d, label);
            }
        }
        for u in &cfg.users {
            match graph::get_json(&format!("/v1.0/users/{}/drive", graph::encode(u))) {
                Ok(d) => add_drive(&mut drives, &d, format!("OneDrive of {u}")),
                Err(PluginError::Graph(g)) if g.status == 404 && g.code == "itemNotFound" => warn(
                    &format!("user `{u}` has no OneDrive (not provisioned); skipped"),
                ),
                Err(e) if is_not_found(&e) => {
                    return Err(PluginError::Config(format!(
                        "user `{u}` in `users` was not found; name users by id or userPrincipalName"
                    )))
                }
                Err(e) => return Err(forbidden_as(e, "Files.Read.All")),
            }
        }
        if cfg.all_one_drives && says_personal {
            one_drives_of_personal_sites(&mut drives, sites)?;
        } else if cfg.all_one_drives {
            info(
                "the site listing does not say which sites are personal; finding OneDrives by user",
            );
            one_drives_of_users(&mut drives)?;
        }
        for g in &cfg.groups {
            match graph::get_json(&format!("/v1.0/groups/{}/drive", graph::encode(g))) {
                Ok(d) => add_drive(&mut drives, &d, format!("drive of group {g}")),
                Err(e) if is_not_found(&e) => {
                    return Err(PluginError::Config(format!(
                        "group `{g}` in `groups` was not found or has no drive; name Microsoft \
                         365 groups by id"
                    )))
                }
                Err(e) => return Err(forbidden_as(e, "Files.Read.All")),
            }
        }
        Ok(drives
            .into_iter()
            .map(|(id, d)| {
                task(
                    &format!("drive/{id}"),
                    &d.label,
                    json!({"driveId": id, "label": d.label}),
                )
            })
            .collect())
    }

    fn run_step(
        task: Task,
        state: Option<String>,
        cursor: Option<String>,
    ) -> Result<Step, PluginError> {
        collect::run_step(task, state, cursor)
    }
}

impl Restorer for Links {
    fn plan(request: RestoreRequest) -> Result<Vec<Action>, PluginError> {
        restore::plan(request)
    }
    fn apply(action: Action) -> Result<Outcome, PluginError> {
        restore::apply(action)
    }
}

cairn_sdk::export_collector_restorer!(Links);
