//! `apply`: one action, from its payload, the snapshot, `remap` and live Graph. Nothing is kept
//! between calls; every action first looks whether its effect is already there.

use cairn_sdk::graph::{self, Batch};
use cairn_sdk::prelude::*;
use cairn_sdk::{current_id, record_mapping, snapshot_item};
use serde_json::{json, Map, Value};

use super::pim;
use super::plan::{
    ca_refs, ca_target_state, desired, ext_short, list_label, matching_grant, scope_set,
};
use super::policy;
use super::spec::{self, KindSpec};
use super::{
    ca_desired, diff, get_opt, is_not_found, random_password, ref_body, resolve, restore_tag, same,
    snap_required, str_of, Op, Options, Payload, RefFix, RESTORE_TAG,
};

fn done(new_id: Option<String>, notes: Vec<String>) -> Outcome {
    Outcome {
        new_id,
        notes,
        already_done: false,
    }
}

fn already(new_id: Option<String>, note: String) -> Outcome {
    Outcome {
        new_id,
        notes: vec![note],
        already_done: true,
    }
}

fn kind_spec(kind: &str) -> Result<&'static KindSpec, PluginError> {
    spec::of(kind).ok_or_else(|| PluginError::Other(format!("the restorer does not write {kind}")))
}

/// The live id of an object this action needs, or an error saying it is not there yet.
fn need(kind: &str, old: &str, opts: &Options) -> Result<String, PluginError> {
    resolve(kind, old, opts)?.ok_or_else(|| {
        PluginError::Other(format!(
            "{kind} {old} has no counterpart in the target tenant yet: apply the action that \
             re-creates it first"
        ))
    })
}

fn is_already_exists(e: &PluginError) -> bool {
    matches!(e, PluginError::Graph(g) if g.status == 400 && g.message.contains("already exist"))
}

pub fn apply(action: &Action, payload: Payload) -> Result<Outcome, PluginError> {
    let opts = payload.opts;
    match payload.op {
        Op::Recreate { kind, id } if policy::of(&kind).is_some() => {
            policy::recreate(&kind, &id, &opts)
        }
        Op::Update {
            kind,
            id,
            attributes,
        } if policy::of(&kind).is_some() => policy::update(&kind, &id, &attributes, &opts),
        Op::Undelete { kind, id } => undelete(&kind, &id, &opts),
        Op::Recreate { kind, id } => recreate(&kind, &id, &opts),
        Op::Update {
            kind,
            id,
            attributes,
        } => update(&kind, &id, &attributes, &opts),
        Op::Ref {
            container_kind,
            container,
            rel,
            member,
        } => reference(
            action.kind,
            &container_kind,
            &container,
            &rel,
            &member,
            &opts,
        ),
        Op::Manager { user, manager } => set_manager(&user, &manager, &opts),
        Op::RoleAssignment { id } => role_assignment(&id, &opts),
        Op::RoleEligibility { id } => role_eligibility(&id, &opts),
        Op::AppRoleAssignment { id } => app_role_assignment(&id, &opts),
        Op::Grant { id } => grant(&id, &opts),
        Op::Fic { app, name } => fic(&app, &name, &opts),
        Op::ScopedRoleMember { au, id } => scoped_role_member(&au, &id, &opts),
        Op::ExtensionProperty { app, name } => extension_property(&app, &name, &opts),
        Op::Repoint { id, refs } => repoint(&id, &refs, &opts),
        Op::Manual => Ok(Outcome {
            new_id: None,
            notes: Vec::new(),
            already_done: false,
        }),
    }
}

// ------------------------------------------------------------------------------------ objects

fn undelete(kind: &str, id: &str, opts: &Options) -> Result<Outcome, PluginError> {
    let spec = kind_spec(kind)?;
    let t = need(kind, id, opts)?;
    let url = match spec.ca_recycle {
        Some(c) => format!("/beta/identity/conditionalAccess/deletedItems/{c}/{t}/restore"),
        None => format!("/v1.0/directory/deletedItems/{t}/restore"),
    };
    match graph::send_json(graph::request("POST", &url)) {
        Ok(_) => Ok(done(None, vec![])),
        Err(e) if is_not_found(&e) => {
            if get_opt(&format!("{}?$select=id", spec.object_url(&t)))?.is_some() {
                Ok(already(None, format!("{kind} {t} is already live")))
            } else {
                Err(PluginError::Other(format!(
                    "{kind} {t} is neither in the recycle bin nor live any more (purged since \
                     the plan?); plan the restore again to re-create it"
                )))
            }
        }
        Err(e) => Err(e),
    }
}

/// The body a create or PATCH writes for `kind`, at apply time (references through `remap`).
fn apply_desired(
    kind: &str,
    body: &Value,
    opts: &Options,
    live: &Value,
) -> Result<Map<String, Value>, PluginError> {
    let mut want = desired(kind, body, opts);
    if kind == "conditionalAccessPolicy" {
        let refs = ca_refs(body);
        // Which referenced objects exist now (one $batch).
        let mut urls: Vec<(String, String)> = Vec::new();
        for (_, k, old) in &refs {
            let t = match *k {
                "role" => Some(old.clone()),
                "appId" => None,
                "namedLocation" => super::target_id(old, opts),
                _ => resolve(k, old, opts)?,
            };
            let Some(t) = t else { continue };
            let url = match *k {
                "role" => format!("/v1.0/roleManagement/directory/roleDefinitions/{t}?$select=id"),
                "namedLocation" => format!("/v1.0/identity/conditionalAccess/namedLocations/{t}"),
                "appId" => continue,
                _ => format!("/v1.0/directoryObjects/{t}?$select=id"),
            };
            urls.push((old.clone(), url));
        }
        let mut batch = Batch::new();
        for (_, u) in &urls {
            batch.push(graph::request("GET", u));
        }
        let mut exists = std::collections::HashSet::new();
        for ((old, _), r) in urls.iter().zip(batch.send()?) {
            if (200..300).contains(&r.status) {
                exists.insert(old.clone());
            }
        }
        let keep = |k: &str, old: &str| -> Option<String> {
            match k {
                "appId" => Some(current_id(old)),
                "role" => exists.contains(old).then(|| old.to_string()),
                _ => exists
                    .contains(old)
                    .then(|| super::target_id(old, opts))
                    .flatten(),
            }
        };
        ca_desired(&mut want, &keep);
        let state = ca_target_state(opts, body, live)
            .or_else(|| str_of(live, "state").map(str::to_string))
            .unwrap_or_else(|| "disabled".into());
        want.insert("state".into(), Value::String(state));
    }
    Ok(want)
}

fn strip_nulls(m: &mut Map<String, Value>) {
    m.retain(|_, v| !v.is_null());
}

fn recreate(kind: &str, id: &str, opts: &Options) -> Result<Outcome, PluginError> {
    let spec = kind_spec(kind)?;
    let s = snap_required(kind, id)?;
    // Created by an earlier run of this restore (remap knows it)?
    let cur = current_id(id);
    if cur != id || !opts.cross_tenant {
        let select = if spec.select { "?$select=id" } else { "" };
        if cur != id && get_opt(&format!("{}{select}", spec.object_url(&cur)))?.is_some() {
            return Ok(already(
                Some(cur.clone()),
                format!("{kind} already re-created as {cur}"),
            ));
        }
    }
    // Created but not recorded (a crash between the POST and the mapping)? Look by unique key.
    if let Some((found, how)) = find_existing(kind, id, &s.body, opts)? {
        record(kind, id, &s.body, &found)?;
        // It may differ from the snapshot (another tenant's object with the same key).
        let attrs: Vec<String> = spec.writable.iter().map(|a| a.to_string()).collect();
        let out = update(kind, id, &attrs, opts)?;
        let mut notes = vec![format!("found {kind} {found} by {how}; mapped to it")];
        notes.extend(out.notes);
        return Ok(Outcome {
            new_id: Some(found),
            notes,
            already_done: out.already_done,
        });
    }
    let mut body = apply_desired(kind, &s.body, opts, &Value::Null)?;
    strip_nulls(&mut body);
    let mut notes = Vec::new();
    match kind {
        "user" => {
            body.insert(
                "passwordProfile".into(),
                json!({"password": random_password()?, "forceChangePasswordNextSignIn": true}),
            );
            notes.push(
                "a random password was set (change required at next sign-in); it is not \
                 recorded anywhere"
                    .to_string(),
            );
        }
        "servicePrincipal" => {
            let old_app = str_of(&s.body, "appId").unwrap_or_default();
            body.insert("appId".into(), Value::String(current_id(old_app)));
        }
        "namedLocation" => {
            if let Some(t) = s.body.get("@odata.type") {
                body.insert("@odata.type".into(), t.clone());
            }
        }
        "application" => {
            // The marker a rerun finds it by if this POST's answer is lost (display names
            // are not unique); an earlier restore's marker in the snapshot is replaced.
            let mut tags: Vec<Value> = body
                .get("tags")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter(|t| !t.as_str().is_some_and(|t| t.starts_with(RESTORE_TAG)))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            tags.push(Value::String(restore_tag(id)));
            body.insert("tags".into(), Value::Array(tags));
        }
        _ => {}
    }
    let url = format!("/v1.0{}", spec.path);
    let created = graph::send_json(graph::json_request("POST", &url, &Value::Object(body)))?;
    let new = str_of(&created, "id")
        .ok_or_else(|| PluginError::Other(format!("POST {url} returned no id")))?
        .to_string();
    record(kind, id, &s.body, &new)?;
    if kind == "application" {
        if let Some(a) = str_of(&created, "appId") {
            notes.push(format!("new appId {a}"));
        }
    }
    Ok(done(Some(new), notes))
}

/// Records old → new; for applications also the old appId → the new one.
fn record(kind: &str, old: &str, body: &Value, new: &str) -> Result<(), PluginError> {
    if kind == "application" {
        if let Some(old_app) = str_of(body, "appId") {
            let live = graph::get_json(&format!("/v1.0/applications/{new}?$select=appId"))?;
            if let Some(new_app) = str_of(&live, "appId") {
                record_mapping("appId", old_app, new_app);
            }
        }
    }
    record_mapping(kind, old, new);
    Ok(())
}

fn quote(s: &str) -> String {
    graph::encode(&s.replace('\'', "''"))
}

/// An object this restore created earlier but did not record (the create's answer was lost, or
/// the process died before the journal record), found by its unique key: users by
/// userPrincipalName, groups by mailNickname and display name, service principals by appId,
/// applications by the `cairn-restore:<old id>` tag their create wrote, units, Conditional
/// Access policies and named locations by display name among objects that are not the
/// snapshot's own.
fn find_existing(
    kind: &str,
    old: &str,
    body: &Value,
    opts: &Options,
) -> Result<Option<(String, String)>, PluginError> {
    let id_of = |v: Option<Value>| v.and_then(|v| str_of(&v, "id").map(str::to_string));
    let not_snapshot =
        |ids: Vec<String>| ids.into_iter().find(|i| snapshot_item(kind, i).is_none());
    Ok(match kind {
        "user" => {
            let Some(upn) = str_of(body, "userPrincipalName") else {
                return Ok(None);
            };
            let upn = opts.map_domain(upn);
            id_of(get_opt(&format!(
                "/v1.0/users/{}?$select=id",
                graph::encode(&upn)
            ))?)
            .map(|i| (i, format!("userPrincipalName {upn}")))
        }
        "group" => {
            let Some(n) = str_of(body, "mailNickname") else {
                return Ok(None);
            };
            let name = str_of(body, "displayName");
            let all = graph::get_all(&format!(
                "/v1.0/groups?$filter=mailNickname%20eq%20'{}'&$select=id,displayName",
                quote(n)
            ))?;
            not_snapshot(
                all.iter()
                    .filter(|g| name.is_none() || str_of(g, "displayName") == name)
                    .filter_map(|g| str_of(g, "id").map(str::to_string))
                    .collect(),
            )
            .map(|i| (i, format!("mailNickname {n} and display name")))
        }
        "application" => {
            let tag = restore_tag(old);
            let all = graph::get_all(&format!(
                "/v1.0/applications?$filter=tags/any(t:t%20eq%20'{}')&$select=id",
                quote(&tag)
            ))?;
            let ids: Vec<String> = all
                .iter()
                .filter_map(|o| str_of(o, "id").map(str::to_string))
                .collect();
            if ids.len() > 1 {
                return Err(PluginError::Other(format!(
                    "{} applications carry the tag {tag} ({}): keep one, delete the others, \
                     then apply again",
                    ids.len(),
                    ids.join(", ")
                )));
            }
            ids.into_iter()
                .next()
                .map(|i| (i, format!("its tag {tag}")))
        }
        "servicePrincipal" => {
            let app = current_id(str_of(body, "appId").unwrap_or_default());
            id_of(get_opt(&format!(
                "/v1.0/servicePrincipals(appId='{app}')?$select=id"
            ))?)
            .map(|i| (i, format!("appId {app}")))
        }
        "administrativeUnit" => {
            let Some(n) = str_of(body, "displayName") else {
                return Ok(None);
            };
            let path = kind_spec(kind)?.path;
            let all = graph::get_all(&format!(
                "/v1.0{path}?$filter=displayName%20eq%20'{}'&$select=id",
                quote(n)
            ))?;
            not_snapshot(
                all.iter()
                    .filter_map(|o| str_of(o, "id").map(str::to_string))
                    .collect(),
            )
            .map(|i| (i, format!("displayName {n}")))
        }
        "conditionalAccessPolicy" | "namedLocation" => {
            let Some(n) = str_of(body, "displayName") else {
                return Ok(None);
            };
            let all = graph::get_all(&format!("/v1.0{}", kind_spec(kind)?.path))?;
            not_snapshot(
                all.iter()
                    .filter(|o| str_of(o, "displayName") == Some(n))
                    .filter_map(|o| str_of(o, "id").map(str::to_string))
                    .collect(),
            )
            .map(|i| (i, format!("displayName {n}")))
        }
        _ => None,
    })
}

fn update(
    kind: &str,
    id: &str,
    attributes: &[String],
    opts: &Options,
) -> Result<Outcome, PluginError> {
    let spec = kind_spec(kind)?;
    let s = snap_required(kind, id)?;
    let t = need(kind, id, opts)?;
    let url = spec.object_url(&t);
    let live = if spec.select {
        graph::get_json(&format!("{url}?$select=id,{}", attributes.join(",")))?
    } else {
        graph::get_json(&url)?
    };
    let want = apply_desired(kind, &s.body, opts, &live)?;
    let mut d = diff(&want, &live, attributes);
    if kind == "conditionalAccessPolicy" && !attributes.iter().any(|a| a == "state") {
        d.remove("state");
    }
    if d.is_empty() {
        return Ok(already(
            None,
            format!("{kind} {t} already equals the snapshot"),
        ));
    }
    let keys: Vec<String> = d.keys().cloned().collect();
    graph::send_json(graph::json_request("PATCH", &url, &Value::Object(d)))?;
    Ok(done(None, vec![format!("patched {}", keys.join(", "))]))
}

/// Rewrites one reference list of a CA policy: `old` becomes `new` where it stands (or `new`
/// is inserted at `at`, its place in the snapshot, when the list lost `old`); `new = None`
/// removes `old`. Returns what changed, if anything.
pub fn repoint_list(
    list: &mut Vec<Value>,
    old: &str,
    new: Option<&str>,
    at: Option<usize>,
) -> Option<String> {
    let pos_old = list.iter().position(|v| v.as_str() == Some(old));
    let Some(new) = new else {
        let i = pos_old?;
        list.remove(i);
        return Some(format!("{old} left out (it no longer exists)"));
    };
    let has_new = list.iter().any(|v| v.as_str() == Some(new));
    match (pos_old, has_new) {
        (Some(_), _) if new == old => None,
        (Some(i), false) => {
            list[i] = Value::String(new.to_string());
            Some(format!("{old} → {new}"))
        }
        (Some(i), true) => {
            list.remove(i);
            Some(format!("{old} removed ({new} is already there)"))
        }
        (None, false) => {
            let i = at.unwrap_or(list.len()).min(list.len());
            list.insert(i, Value::String(new.to_string()));
            Some(if new == old {
                format!("{new} added back")
            } else {
                format!("{new} added (for {old})")
            })
        }
        (None, true) => None,
    }
}

/// The array at `ptr` (under `conditions`), created empty when absent.
fn list_at<'a>(cond: &'a mut Value, ptr: &str) -> Option<&'a mut Vec<Value>> {
    let mut cur = cond;
    let parts: Vec<&str> = ptr.trim_start_matches('/').split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        if cur.is_null() {
            *cur = Value::Object(Map::new());
        }
        let obj = cur.as_object_mut()?;
        let last = i + 1 == parts.len();
        let next = obj.entry(part.to_string()).or_insert_with(|| {
            if last {
                Value::Array(Vec::new())
            } else {
                Value::Object(Map::new())
            }
        });
        if last && next.is_null() {
            *next = Value::Array(Vec::new());
        }
        cur = next;
    }
    cur.as_array_mut()
}

/// A surviving CA policy's references re-pointed at the objects the restore brought back: the
/// live policy is read, only the listed references change, and the whole `conditions` object
/// is written back (so it does not matter whether Graph merges or replaces it); the state and
/// everything else stay as they are.
fn repoint(id: &str, fixes: &[RefFix], opts: &Options) -> Result<Outcome, PluginError> {
    let kind = "conditionalAccessPolicy";
    let spec = kind_spec(kind)?;
    let s = snap_required(kind, id)?;
    let t = need(kind, id, opts)?;
    let url = spec.object_url(&t);
    let live = graph::get_json(&url)?;
    // Objects to leave out must still be gone (one $batch): one restored since stays.
    let drops: Vec<&RefFix> = fixes.iter().filter(|f| f.drop).collect();
    let mut batch = Batch::new();
    for f in &drops {
        let cur = current_id(&f.old);
        batch.push(graph::request(
            "GET",
            &if f.kind == "namedLocation" {
                format!("/v1.0/identity/conditionalAccess/namedLocations/{cur}")
            } else {
                format!("/v1.0/directoryObjects/{cur}?$select=id")
            },
        ));
    }
    let mut back = std::collections::HashSet::new();
    if !drops.is_empty() {
        for (f, r) in drops.iter().zip(batch.send()?) {
            if (200..300).contains(&r.status) {
                back.insert(f.old.clone());
            }
        }
    }
    let mut cond = live.get("conditions").cloned().unwrap_or(Value::Null);
    let mut notes = Vec::new();
    for f in fixes {
        let new = if f.drop {
            if back.contains(&f.old) {
                continue;
            }
            None
        } else {
            Some(match f.kind.as_str() {
                "appId" => current_id(&f.old),
                "namedLocation" => super::target_id(&f.old, opts).ok_or_else(|| {
                    PluginError::Other(format!(
                        "named location {} has no counterpart in the target tenant yet",
                        f.old
                    ))
                })?,
                k => need(k, &f.old, opts)?,
            })
        };
        let at = s
            .body
            .pointer(&f.list)
            .and_then(Value::as_array)
            .and_then(|a| a.iter().position(|v| v.as_str() == Some(f.old.as_str())));
        let rel = f.list.trim_start_matches("/conditions");
        let list = list_at(&mut cond, rel).ok_or_else(|| {
            PluginError::Other(format!(
                "Conditional Access policy {t}: {} is not a list",
                f.list
            ))
        })?;
        if let Some(n) = repoint_list(list, &f.old, new.as_deref(), at) {
            notes.push(format!("{}: {n}", list_label(&f.list)));
        }
    }
    if notes.is_empty() {
        return Ok(already(
            None,
            format!("{kind} {t} already references the restored objects"),
        ));
    }
    graph::send_json(graph::json_request(
        "PATCH",
        &url,
        &json!({ "conditions": cond }),
    ))?;
    Ok(done(None, notes))
}

// ------------------------------------------------------------------------------ relationships

fn container_path(kind: &str) -> &'static str {
    match kind {
        "group" => "/groups",
        "administrativeUnit" => "/directory/administrativeUnits",
        "application" => "/applications",
        _ => "/servicePrincipals",
    }
}

fn reference(
    verb: ActionKind,
    ckind: &str,
    container: &str,
    rel: &str,
    member: &str,
    opts: &Options,
) -> Result<Outcome, PluginError> {
    let tc = need(ckind, container, opts)?;
    let tm = need("directoryObject", member, opts)?;
    let base = format!("/v1.0{}/{tc}/{rel}", container_path(ckind));
    if verb == ActionKind::Unlink {
        return match graph::send_json(graph::request("DELETE", &format!("{base}/{tm}/$ref"))) {
            Ok(_) => Ok(done(None, vec![])),
            Err(e) if is_not_found(&e) => {
                Ok(already(None, format!("{tm} is not in the {rel} of {tc}")))
            }
            Err(e) => Err(e),
        };
    }
    match graph::send_json(graph::json_request(
        "POST",
        &format!("{base}/$ref"),
        &ref_body(&tm),
    )) {
        Ok(_) => Ok(done(None, vec![])),
        Err(e) if is_already_exists(&e) => Ok(already(
            None,
            format!("{tm} is already in the {rel} of {tc}"),
        )),
        Err(e) => Err(e),
    }
}

fn set_manager(user: &str, manager: &str, opts: &Options) -> Result<Outcome, PluginError> {
    let tu = need("user", user, opts)?;
    let tm = need("user", manager, opts)?;
    let current = get_opt(&format!("/v1.0/users/{tu}/manager?$select=id"))?;
    if current.as_ref().and_then(|c| str_of(c, "id")) == Some(tm.as_str()) {
        return Ok(already(
            None,
            format!("the manager of {tu} is already {tm}"),
        ));
    }
    graph::send_json(graph::json_request(
        "PUT",
        &format!("/v1.0/users/{tu}/manager/$ref"),
        &ref_body(&tm),
    ))?;
    Ok(done(None, vec![]))
}

fn item_body(kind: &str, id: &str) -> Result<Value, PluginError> {
    Ok(snap_required(kind, id)?.body)
}

/// What a backed-up role assignment or PIM eligibility grants, in this tenant's ids: the role
/// definition (a custom one re-created by this restore has a new id), the principal and the
/// directory scope (`/` or `/administrativeUnits/{id}`).
fn grant_target(b: &Value, opts: &Options) -> Result<(String, String, String), PluginError> {
    let rd = current_id(str_of(b, "roleDefinitionId").unwrap_or_default());
    let pid = need(
        "directoryObject",
        str_of(b, "principalId").unwrap_or_default(),
        opts,
    )?;
    let scope = match str_of(b, "directoryScopeId")
        .unwrap_or("/")
        .strip_prefix("/administrativeUnits/")
    {
        Some(au) => format!(
            "/administrativeUnits/{}",
            need("administrativeUnit", au, opts)?
        ),
        None => "/".to_string(),
    };
    Ok((rd, pid, scope))
}

fn role_assignment(id: &str, opts: &Options) -> Result<Outcome, PluginError> {
    let b = item_body("unifiedRoleAssignment", id)?;
    let (rd, pid, scope) = grant_target(&b, opts)?;
    let rd = rd.as_str();
    let live = graph::get_all(&format!(
        "/v1.0/roleManagement/directory/roleAssignments?$filter=principalId%20eq%20'{pid}'"
    ))?;
    if let Some(l) = live.iter().find(|l| {
        str_of(l, "roleDefinitionId") == Some(rd) && str_of(l, "directoryScopeId") == Some(&scope)
    }) {
        let lid = str_of(l, "id").unwrap_or_default().to_string();
        if lid != id {
            record_mapping("unifiedRoleAssignment", id, &lid);
        }
        return Ok(already(Some(lid), "the role assignment exists".into()));
    }
    let created = graph::send_json(graph::json_request(
        "POST",
        "/v1.0/roleManagement/directory/roleAssignments",
        &json!({"roleDefinitionId": rd, "principalId": pid, "directoryScopeId": scope}),
    ))?;
    let new = str_of(&created, "id").unwrap_or_default().to_string();
    record_mapping("unifiedRoleAssignment", id, &new);
    Ok(done(Some(new), vec![]))
}

/// A PIM role eligibility: found live (same principal, role definition and scope) → already
/// done; otherwise an `adminAssign` request with the backed-up period.
fn role_eligibility(id: &str, opts: &Options) -> Result<Outcome, PluginError> {
    let b = item_body(pim::KIND, id)?;
    let (rd, pid, scope) = grant_target(&b, opts)?;
    let live = graph::get_all(&format!(
        "{}?$filter=principalId%20eq%20'{pid}'",
        pim::SCHEDULES
    ))?;
    if let Some(l) = live.iter().find(|l| {
        str_of(l, "roleDefinitionId") == Some(rd.as_str())
            && str_of(l, "directoryScopeId") == Some(&scope)
    }) {
        let lid = str_of(l, "id").unwrap_or_default().to_string();
        if lid != id {
            record_mapping(pim::KIND, id, &lid);
        }
        return Ok(already(Some(lid), "the PIM eligibility exists".into()));
    }
    if let Some(end) = pim::expired_at(&b, pim::now_secs()) {
        return Err(PluginError::Other(format!(
            "the PIM eligibility {id} expired at {end}, after the plan was made: it is not \
             re-created"
        )));
    }
    let body = json!({
        "action": "adminAssign",
        "justification": pim::justification(id, opts.snapshot_time.as_deref()),
        "roleDefinitionId": rd,
        "directoryScopeId": scope,
        "principalId": pid,
        "scheduleInfo": pim::schedule_info(&b),
    });
    match graph::send_json(graph::json_request("POST", pim::REQUESTS, &body)) {
        Ok(created) => {
            let new = str_of(&created, "targetScheduleId")
                .or_else(|| str_of(&created, "id"))
                .unwrap_or_default()
                .to_string();
            record_mapping(pim::KIND, id, &new);
            Ok(done(Some(new), vec![]))
        }
        // Made eligible between the look above and the request.
        Err(e) if pim::exists(&e) => Ok(already(None, "the PIM eligibility exists".into())),
        Err(e) => Err(e),
    }
}

fn app_role_assignment(id: &str, opts: &Options) -> Result<Outcome, PluginError> {
    let b = item_body("appRoleAssignment", id)?;
    let role = str_of(&b, "appRoleId").unwrap_or_default();
    let pid = need(
        "directoryObject",
        str_of(&b, "principalId").unwrap_or_default(),
        opts,
    )?;
    let rid = need(
        "servicePrincipal",
        str_of(&b, "resourceId").unwrap_or_default(),
        opts,
    )?;
    let url = format!("/v1.0/servicePrincipals/{rid}/appRoleAssignedTo");
    let live = graph::get_all(&format!("{url}?$top=999"))?;
    // Item ids are `{principalId}/{assignmentId}`; remap keys Graph's own id.
    let old = str_of(&b, "id").unwrap_or(id).to_string();
    if let Some(l) = live
        .iter()
        .find(|l| str_of(l, "principalId") == Some(&pid) && str_of(l, "appRoleId") == Some(role))
    {
        let lid = str_of(l, "id").unwrap_or_default().to_string();
        if lid != old {
            record_mapping("appRoleAssignment", &old, &lid);
        }
        return Ok(already(Some(lid), "the app role assignment exists".into()));
    }
    let created = graph::send_json(graph::json_request(
        "POST",
        &url,
        &json!({"principalId": pid, "resourceId": rid, "appRoleId": role}),
    ))?;
    let new = str_of(&created, "id").unwrap_or_default().to_string();
    record_mapping("appRoleAssignment", &old, &new);
    Ok(done(Some(new), vec![]))
}

fn grant(id: &str, opts: &Options) -> Result<Outcome, PluginError> {
    let b = item_body("oauth2PermissionGrant", id)?;
    let cid = need(
        "servicePrincipal",
        str_of(&b, "clientId").unwrap_or_default(),
        opts,
    )?;
    let rid = need(
        "servicePrincipal",
        str_of(&b, "resourceId").unwrap_or_default(),
        opts,
    )?;
    let pid = match str_of(&b, "principalId") {
        Some(p) => Some(need("user", p, opts)?),
        None => None,
    };
    let consent = str_of(&b, "consentType").unwrap_or("AllPrincipals");
    let scope = str_of(&b, "scope").unwrap_or("").trim().to_string();
    let live = graph::get_all(&format!(
        "/v1.0/oauth2PermissionGrants?$filter=clientId%20eq%20'{cid}'"
    ))?;
    if let Some(l) = matching_grant(&live, &cid, &rid, consent, pid.as_deref()) {
        let lid = str_of(l, "id").unwrap_or_default().to_string();
        if lid != id {
            record_mapping("oauth2PermissionGrant", id, &lid);
        }
        if scope_set(str_of(l, "scope")) == scope_set(Some(&scope)) {
            return Ok(already(
                Some(lid),
                "the grant exists with these scopes".into(),
            ));
        }
        graph::send_json(graph::json_request(
            "PATCH",
            &format!("/v1.0/oauth2PermissionGrants/{lid}"),
            &json!({ "scope": scope }),
        ))?;
        return Ok(done(Some(lid), vec![format!("scopes set to `{scope}`")]));
    }
    let created = graph::send_json(graph::json_request(
        "POST",
        "/v1.0/oauth2PermissionGrants",
        &json!({"clientId": cid, "consentType": consent, "principalId": pid, "resourceId": rid, "scope": scope}),
    ))?;
    let new = str_of(&created, "id").unwrap_or_default().to_string();
    record_mapping("oauth2PermissionGrant", id, &new);
    Ok(done(Some(new), vec![]))
}

/// A unit-scoped role member. The outcome names no new id: the action's item is the unit.
fn scoped_role_member(au: &str, id: &str, opts: &Options) -> Result<Outcome, PluginError> {
    let b = item_body("administrativeUnit", au)?;
    let m = b
        .get("scopedRoleMembers")
        .and_then(Value::as_array)
        .and_then(|l| l.iter().find(|m| str_of(m, "id") == Some(id)))
        .ok_or_else(|| {
            PluginError::Other(format!(
                "scoped role member {id} of administrative unit {au} is not in the snapshot"
            ))
        })?;
    let role = str_of(m, "roleId").unwrap_or_default();
    let pid = need(
        "directoryObject",
        m.pointer("/roleMemberInfo/id")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        opts,
    )?;
    let ta = need("administrativeUnit", au, opts)?;
    let url = format!("/v1.0/directory/administrativeUnits/{ta}/scopedRoleMembers");
    let live = graph::get_all(&url)?;
    let exists = live.iter().any(|l| {
        str_of(l, "roleId") == Some(role)
            && l.pointer("/roleMemberInfo/id").and_then(Value::as_str) == Some(pid.as_str())
    });
    if exists {
        return Ok(already(
            None,
            format!("{pid} is already a scoped role member (role {role}) of {ta}"),
        ));
    }
    match graph::send_json(graph::json_request(
        "POST",
        &url,
        &json!({"roleId": role, "roleMemberInfo": {"id": pid}}),
    )) {
        Ok(_) => Ok(done(None, vec![])),
        Err(e) if is_already_exists(&e) => Ok(already(
            None,
            format!("{pid} is already a scoped role member of {ta}"),
        )),
        Err(e) => Err(e),
    }
}

/// A directory extension property, created under the application's current appId.
fn extension_property(app: &str, name: &str, opts: &Options) -> Result<Outcome, PluginError> {
    let b = item_body("application", app)?;
    let x = b
        .get("extensionProperties")
        .and_then(Value::as_array)
        .and_then(|l| {
            l.iter()
                .find(|x| str_of(x, "name").map(ext_short) == Some(name))
        })
        .ok_or_else(|| {
            PluginError::Other(format!(
                "extension property {name} of application {app} is not in the snapshot"
            ))
        })?;
    let ta = need("application", app, opts)?;
    let url = format!("/v1.0/applications/{ta}/extensionProperties");
    let live = graph::get_all(&url)?;
    if let Some(l) = live
        .iter()
        .find(|l| str_of(l, "name").map(ext_short) == Some(name))
    {
        return Ok(already(
            None,
            format!(
                "extension property {} exists",
                str_of(l, "name").unwrap_or(name)
            ),
        ));
    }
    let mut body = Map::new();
    body.insert("name".into(), Value::String(name.into()));
    for k in ["dataType", "targetObjects", "isMultiValued"] {
        if let Some(v) = x.get(k).filter(|v| !v.is_null()) {
            body.insert(k.into(), v.clone());
        }
    }
    let created = graph::send_json(graph::json_request("POST", &url, &Value::Object(body)))?;
    Ok(done(
        None,
        vec![format!(
            "created as {}",
            str_of(&created, "name").unwrap_or(name)
        )],
    ))
}

fn fic(app: &str, name: &str, opts: &Options) -> Result<Outcome, PluginError> {
    let b = item_body("application", app)?;
    let f = b
        .get("federatedIdentityCredentials")
        .and_then(Value::as_array)
        .and_then(|l| l.iter().find(|f| str_of(f, "name") == Some(name)))
        .ok_or_else(|| {
            PluginError::Other(format!(
                "federated credential {name} of application {app} is not in the snapshot"
            ))
        })?;
    let ta = need("application", app, opts)?;
    let url = format!("/v1.0/applications/{ta}/federatedIdentityCredentials");
    let mut want = Map::new();
    for k in ["issuer", "subject", "audiences", "description"] {
        if let Some(v) = f.get(k).filter(|v| !v.is_null()) {
            want.insert(k.into(), v.clone());
        }
    }
    let live = graph::get_all(&url)?;
    if let Some(l) = live.iter().find(|l| str_of(l, "name") == Some(name)) {
        if want.iter().all(|(k, v)| same(Some(v), l.get(k))) {
            return Ok(already(None, format!("federated credential {name} exists")));
        }
        let lid = str_of(l, "id").unwrap_or(name).to_string();
        graph::send_json(graph::json_request(
            "PATCH",
            &format!("{url}/{lid}"),
            &Value::Object(want),
        ))?;
        return Ok(done(None, vec![]));
    }
    want.insert("name".into(), Value::String(name.into()));
    graph::send_json(graph::json_request("POST", &url, &Value::Object(want)))?;
    Ok(done(None, vec![]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_list_is_repointed_in_place() {
        let mut l = vec![json!("a"), json!("old"), json!("c")];
        assert_eq!(
            repoint_list(&mut l, "old", Some("new"), Some(1)).as_deref(),
            Some("old → new")
        );
        assert_eq!(l, [json!("a"), json!("new"), json!("c")]);
        // Again: nothing to do (idempotent).
        assert_eq!(repoint_list(&mut l, "old", Some("new"), Some(1)), None);
        // The list lost the old id: the new one goes where the snapshot had it.
        let mut l = vec![json!("a"), json!("c")];
        repoint_list(&mut l, "old", Some("new"), Some(1)).unwrap();
        assert_eq!(l, [json!("a"), json!("new"), json!("c")]);
        // Undeleted (same id), still there: nothing; lost: added back.
        let mut l = vec![json!("g")];
        assert_eq!(repoint_list(&mut l, "g", Some("g"), Some(0)), None);
        let mut l = vec![json!("All")];
        assert_eq!(
            repoint_list(&mut l, "g", Some("g"), Some(3)).as_deref(),
            Some("g added back")
        );
        assert_eq!(l, [json!("All"), json!("g")]);
        // Both old and new: the stale old one goes.
        let mut l = vec![json!("old"), json!("new")];
        repoint_list(&mut l, "old", Some("new"), None).unwrap();
        assert_eq!(l, [json!("new")]);
        // Gone: left out.
        let mut l = vec![json!("x"), json!("gone")];
        assert!(repoint_list(&mut l, "gone", None, None).is_some());
        assert_eq!(l, [json!("x")]);
        assert_eq!(repoint_list(&mut l, "gone", None, None), None);
    }

    #[test]
    fn lists_are_found_or_created_under_conditions() {
        let mut c = json!({"users": {"includeUsers": ["All"]}, "applications": null});
        list_at(&mut c, "/users/excludeUsers")
            .unwrap()
            .push(json!("u"));
        list_at(&mut c, "/locations/includeLocations")
            .unwrap()
            .push(json!("l"));
        assert_eq!(
            c,
            json!({"users": {"includeUsers": ["All"], "excludeUsers": ["u"]},
                   "applications": null, "locations": {"includeLocations": ["l"]}})
        );
        let mut n = Value::Null;
        assert!(list_at(&mut n, "/users/excludeGroups").is_some());
    }
}
