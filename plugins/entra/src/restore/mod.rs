//! # The `entra` restorer
//!
//! Plans the restore of snapshot items against the live tenant and applies the plan one action
//! at a time (see `/work/notes/restore-contract.md`, agreed with the host's restore engine).
//!
//! - **Objects** (users, groups, administrative units, applications, service principals,
//!   Conditional Access policies, named locations): in the recycle bin → `undelete` (keeps the
//!   id); absent → `recreate` (new id recorded in `remap`; an application also gets a new
//!   `appId`, recorded under its old `appId`, and its service principal is re-created for it);
//!   live but different → `update`, a PATCH of the changed writable attributes only
//!   ([`spec`] holds the per-kind writable lists).
//! - **Relationships** → `link` / `unlink`: group members and owners, application and service
//!   principal owners, administrative unit members, directory role assignments, app role
//!   assignments, delegated grants, federated identity credentials, user managers.
//! - **Conditional Access**: named locations come before the policies that reference them;
//!   policies are written in report-only state unless `caState = as-backed-up`; user, group,
//!   role, location and application references are rewritten through `remap`.
//! - **Authentication contexts** (`c1` … `c99`, required by CA policies): compared with live;
//!   differing → PATCH of `displayName` / `description` / `isAvailable`; missing → PATCH with
//!   the same id (Graph creates it); written before the CA policies that require them.
//! - **PIM role eligibilities**: missing ones (principal, role definition and scope compared
//!   through `remap`) are written back with an `adminAssign` request carrying the backed-up
//!   period, after the principal and unit exist; expired ones become a note; eligibilities added
//!   since the snapshot are kept, as role assignments are.
//! - **Manual steps** with the exact instruction: passwords of re-created users, client secrets
//!   and certificates of re-created applications, domains, dynamic membership, first-party
//!   Microsoft service principals, what cannot be mapped to another tenant.
//!
//! `apply` keeps no state between calls: the payload names the snapshot objects and the
//! options; everything else comes from the snapshot, `remap` and live Graph at apply time, so
//! re-applying finds the work done (`already-done`).

use std::collections::BTreeMap;

use cairn_sdk::graph;
use cairn_sdk::prelude::*;
use cairn_sdk::{current_id, snapshot_item};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod apply;
mod pim;
mod plan;
mod policy;
mod spec;

pub use spec::RESTORE_PERMISSIONS;

/// Restore options (the request's `options` JSON; unknown keys are ignored).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Options {
    /// `report-only` (default) or `as-backed-up`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_state: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub only_missing: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cross_tenant: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub domain_map: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_time: Option<String>,
}

impl Options {
    pub fn parse(s: &str) -> Result<Options, PluginError> {
        if s.trim().is_empty() {
            return Ok(Options::default());
        }
        let o: Options = serde_json::from_str(s)
            .map_err(|e| PluginError::Config(format!("restore options: {e}")))?;
        match o.ca_state.as_deref() {
            None | Some("report-only") | Some("as-backed-up") => Ok(o),
            Some(other) => Err(PluginError::Config(format!(
                "restore option caState = `{other}`: use `report-only` or `as-backed-up`"
            ))),
        }
    }

    pub fn report_only(&self) -> bool {
        self.ca_state.as_deref() != Some("as-backed-up")
    }

    /// Rewrites the domain of an address through `domainMap` (cross-tenant restores).
    pub fn map_domain(&self, addr: &str) -> String {
        if let Some((local, dom)) = addr.rsplit_once('@') {
            for (from, to) in &self.domain_map {
                if dom.eq_ignore_ascii_case(from) {
                    return format!("{local}@{to}");
                }
            }
        }
        addr.to_string()
    }
}

/// What `apply` does, as the action's payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Op {
    /// Restore `kind`/`id` from the directory (or Conditional Access) recycle bin.
    Undelete { kind: String, id: String },
    /// Create `kind`/`id` anew from the snapshot.
    Recreate { kind: String, id: String },
    /// PATCH the listed attributes of `kind`/`id` back to the snapshot's values.
    Update {
        kind: String,
        id: String,
        attributes: Vec<String>,
    },
    /// Add (`link`) or remove (`unlink`) `member` in `rel` (`members`/`owners`) of a container.
    Ref {
        container_kind: String,
        container: String,
        rel: String,
        member: String,
    },
    /// Set the user's manager.
    Manager { user: String, manager: String },
    /// A directory role assignment (snapshot item id).
    RoleAssignment { id: String },
    /// A PIM role eligibility (snapshot item id): an `adminAssign` request.
    RoleEligibility { id: String },
    /// An app role assignment (snapshot item id).
    AppRoleAssignment { id: String },
    /// A delegated permission grant (snapshot item id): created, or its scope PATCHed.
    Grant { id: String },
    /// A federated identity credential of an application (by its immutable name).
    Fic { app: String, name: String },
    /// A unit-scoped role member of an administrative unit (the `id` of the snapshot's entry in
    /// the unit's `scopedRoleMembers`).
    ScopedRoleMember { au: String, id: String },
    /// A directory extension property of an application (by its short name, without the
    /// `extension_<appId>_` prefix, which changes with the appId).
    ExtensionProperty { app: String, name: String },
    /// Re-point the reference lists of a surviving Conditional Access policy `id` at objects
    /// this restore brings back (and leave out references to objects that no longer exist);
    /// the rest of the live policy, its state included, is kept as it is.
    Repoint { id: String, refs: Vec<RefFix> },
    /// Something only the operator can do.
    Manual,
}

/// One reference of a CA policy to fix: in the list at `list` (a JSON pointer such as
/// `/conditions/users/excludeUsers`), the object `old` (an old id; an old appId for `appId`)
/// is written as the id it has now, or removed when `drop` (it no longer exists).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RefFix {
    pub list: String,
    pub kind: String,
    pub old: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drop: bool,
}

/// The payload: the operation and the options it runs under.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Payload {
    #[serde(flatten)]
    pub op: Op,
    #[serde(default)]
    pub opts: Options,
}

pub struct EntraRestorer;

impl EntraRestorer {
    pub fn plan(request: RestoreRequest) -> Result<Vec<Action>, PluginError> {
        let opts = Options::parse(&request.options)?;
        plan::plan(&request.selection, opts)
    }

    pub fn apply(action: Action) -> Result<Outcome, PluginError> {
        if action.kind == ActionKind::Manual {
            return Ok(Outcome {
                new_id: None,
                notes: Vec::new(),
                already_done: false,
            });
        }
        let payload: Payload = serde_json::from_str(&action.payload).map_err(|e| {
            PluginError::Other(format!(
                "action {}: the payload is not an entra restore payload: {e}",
                action.id
            ))
        })?;
        apply::apply(&action, payload)
    }
}

// ------------------------------------------------------------------------------------ helpers

/// A snapshot object: its body (JSON) and display name.
#[derive(Debug, Clone)]
pub struct Snap {
    pub body: Value,
    pub name: String,
}

pub fn snap(kind: &str, id: &str) -> Option<Snap> {
    let it = snapshot_item(kind, id)?;
    let body: Value = serde_json::from_str(&it.body).ok()?;
    let name = if it.display_name.is_empty() {
        body.get("displayName")
            .and_then(Value::as_str)
            .unwrap_or(id)
            .to_string()
    } else {
        it.display_name
    };
    Some(Snap { body, name })
}

/// Reads a snapshot object or fails with a message naming it.
pub fn snap_required(kind: &str, id: &str) -> Result<Snap, PluginError> {
    snap(kind, id).ok_or_else(|| {
        PluginError::Other(format!("{kind} {id} is not in the snapshot being restored"))
    })
}

/// The id the object `old` has in the target tenant now, if it is known: remap's new id, or
/// (same tenant) the old id itself.
pub fn target_id(old: &str, opts: &Options) -> Option<String> {
    let cur = current_id(old);
    if cur != old || !opts.cross_tenant {
        Some(cur)
    } else {
        None
    }
}

/// Like [`target_id`], and a first-party Microsoft service principal (kept in the snapshot as a
/// `@cairn.reference`) is found in another tenant by its appId, which is the same everywhere
/// while its object id is not; the match is recorded in `remap`, so later plans, applies and
/// verifies compare through it.
pub fn resolve(kind: &str, old: &str, opts: &Options) -> Result<Option<String>, PluginError> {
    if let Some(t) = target_id(old, opts) {
        return Ok(Some(t));
    }
    if kind != "servicePrincipal" && kind != "directoryObject" {
        return Ok(None);
    }
    match snap("servicePrincipal", old) {
        Some(s) if s.body.get("@cairn.reference").is_some() => by_app_id(old, &s.body),
        _ => Ok(None),
    }
}

/// The target tenant's service principal with the appId of the snapshot's `sp` (old id `old`),
/// recorded in `remap` when found.
pub fn by_app_id(old: &str, sp: &Value) -> Result<Option<String>, PluginError> {
    let Some(app_id) = str_of(sp, "appId") else {
        return Ok(None);
    };
    let found = get_opt(&format!(
        "/v1.0/servicePrincipals(appId='{app_id}')?$select=id"
    ))?
    .and_then(|v| str_of(&v, "id").map(str::to_string));
    if let Some(new) = &found {
        if new != old {
            cairn_sdk::record_mapping("servicePrincipal", old, new);
        }
    }
    Ok(found)
}

/// Rewrites the references of a CA policy's `conditions` in `want`: `keep(kind, old id)` gives
/// the id to write, or `None` to leave a reference to an object that does not exist out (it
/// matches nobody, and Graph refuses unknown ids).
pub fn ca_desired(want: &mut Map<String, Value>, keep: &dyn Fn(&str, &str) -> Option<String>) {
    // A custom authentication strength re-created by this restore has a new id.
    if let Some(Value::String(sid)) = want
        .get_mut("grantControls")
        .and_then(|g| g.pointer_mut("/authenticationStrength/id"))
    {
        *sid = current_id(sid);
    }
    let Some(cond) = want.get_mut("conditions") else {
        return;
    };
    for (ptr, k) in plan::CA_REFS {
        let rel = ptr.trim_start_matches("/conditions");
        if let Some(Value::Array(a)) = cond.pointer_mut(rel) {
            let mut out = Vec::with_capacity(a.len());
            for v in a.drain(..) {
                match v.as_str() {
                    Some(s) if plan::is_guid(s) && s != "00000000-0000-0000-0000-000000000000" => {
                        if let Some(n) = keep(k, s) {
                            out.push(Value::String(n));
                        }
                    }
                    _ => out.push(v),
                }
            }
            *a = out;
        }
    }
}

/// `{"@odata.id": ".../directoryObjects/{id}"}` for `$ref` writes.
pub fn ref_body(id: &str) -> Value {
    serde_json::json!({
        "@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{id}")
    })
}

pub fn str_of<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

/// JSON equality where a missing key equals `null` (Graph renders unset properties either way).
pub fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    let a = a.unwrap_or(&Value::Null);
    let b = b.unwrap_or(&Value::Null);
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x
            .keys()
            .chain(y.keys())
            .filter(|k| !k.starts_with("@odata.") || *k == "@odata.type")
            .all(|k| same(x.get(k), y.get(k))),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(Some(p), Some(q)))
        }
        _ => a == b,
    }
}

/// The prefix of the tag a re-created application carries (`cairn-restore:<old id>`): a rerun
/// after a create whose answer was lost finds the application by it (`tags/any(…)`).
pub const RESTORE_TAG: &str = "cairn-restore:";

/// The restore marker of the snapshot object `old`.
pub fn restore_tag(old: &str) -> String {
    format!("{RESTORE_TAG}{old}")
}

fn is_restore_tag(v: &Value) -> bool {
    v.as_str().is_some_and(|t| t.starts_with(RESTORE_TAG))
}

/// `tags` without restore markers (`None` when it is not a list).
fn tags_without_markers(v: Option<&Value>) -> Option<Value> {
    let a = v?.as_array()?;
    Some(Value::Array(
        a.iter().filter(|t| !is_restore_tag(t)).cloned().collect(),
    ))
}

/// The attributes of `desired` (restricted to `attrs`) whose values differ in `live`. `tags` are
/// compared without restore markers, and a PATCH of them keeps the live object's marker.
pub fn diff(desired: &Map<String, Value>, live: &Value, attrs: &[String]) -> Map<String, Value> {
    let mut out = Map::new();
    for a in attrs {
        let want = desired.get(a.as_str());
        if a == "tags" {
            let (w, l) = (
                tags_without_markers(want),
                tags_without_markers(live.get("tags")),
            );
            if w.is_some() && l.is_some() {
                if w != l {
                    let mut tags = w.and_then(|w| w.as_array().cloned()).unwrap_or_default();
                    if let Some(Value::Array(lt)) = live.get("tags") {
                        tags.extend(lt.iter().filter(|t| is_restore_tag(t)).cloned());
                    }
                    out.insert(a.clone(), Value::Array(tags));
                }
                continue;
            }
        }
        if !same(want, live.get(a.as_str())) {
            out.insert(a.clone(), want.cloned().unwrap_or(Value::Null));
        }
    }
    out
}

/// True if the error is Graph's 404.
pub fn is_not_found(e: &PluginError) -> bool {
    matches!(e, PluginError::Graph(g) if g.status == 404)
}

/// GET that maps 404 to `None`.
pub fn get_opt(url: &str) -> Result<Option<Value>, PluginError> {
    match graph::get_json(url) {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A random password that meets Entra's complexity rules (upper, lower, digit, symbol; 24
/// characters) from WASI's random source. Never logged, returned or journaled.
pub fn random_password() -> Result<String, PluginError> {
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
    const DIGIT: &[u8] = b"23456789";
    const SYMBOL: &[u8] = b"!#$%*+-=?@^_";
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)
        .map_err(|e| PluginError::Other(format!("no random source for a password: {e}")))?;
    let sets = [UPPER, LOWER, DIGIT, SYMBOL];
    let all: Vec<u8> = sets.concat();
    let pw: String = bytes
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let set: &[u8] = if i < 4 { sets[i] } else { &all };
            set[*b as usize % set.len()] as char
        })
        .collect();
    Ok(pw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn options_parse_and_validate() {
        let o = Options::parse(r#"{"caState":"as-backed-up","onlyMissing":true,"x":1}"#).unwrap();
        assert!(!o.report_only());
        assert!(o.only_missing);
        assert!(Options::parse("").unwrap().report_only());
        assert!(matches!(
            Options::parse(r#"{"caState":"enabled"}"#),
            Err(PluginError::Config(_))
        ));
        let o = Options::parse(r#"{"domainMap":{"contoso.com":"fabrikam.com"}}"#).unwrap();
        assert_eq!(o.map_domain("a@Contoso.com"), "a@fabrikam.com");
        assert_eq!(o.map_domain("a@other.com"), "a@other.com");
    }

    #[test]
    fn payload_round_trips() {
        let p = Payload {
            op: Op::Update {
                kind: "user".into(),
                id: "u1".into(),
                attributes: vec!["jobTitle".into()],
            },
            opts: Options::default(),
        };
        let s = serde_json::to_string(&p).unwrap();
        assert_eq!(
            s,
            r#"{"op":"update","kind":"user","id":"u1","attributes":["jobTitle"],"opts":{}}"#
        );
        assert_eq!(serde_json::from_str::<Payload>(&s).unwrap(), p);
    }

    #[test]
    fn loose_equality_and_diff() {
        assert!(same(None, Some(&Value::Null)));
        assert!(same(
            Some(&json!({"a": 1, "b": null})),
            Some(&json!({"a": 1, "@odata.context": "x"}))
        ));
        assert!(!same(Some(&json!([1, 2])), Some(&json!([2, 1]))));
        let desired = json!({"jobTitle": "A", "city": null});
        let d = diff(
            desired.as_object().unwrap(),
            &json!({"jobTitle": "B"}),
            &["jobTitle".into(), "city".into()],
        );
        assert_eq!(Value::Object(d), json!({"jobTitle": "A"}));
    }

    #[test]
    fn restore_markers_are_not_a_difference() {
        let m = restore_tag("old-app");
        let attrs = ["tags".to_string()];
        let want = json!({"tags": ["a", "cairn-restore:older"]});
        let want = want.as_object().unwrap();
        // The live object's marker (and the snapshot's from an earlier restore) are ignored.
        assert!(diff(want, &json!({"tags": ["a", m]}), &attrs).is_empty());
        // A real difference is written with the live marker kept.
        let d = diff(want, &json!({"tags": ["b", m]}), &attrs);
        assert_eq!(Value::Object(d), json!({"tags": ["a", m]}));
        // Not lists: compared as they are.
        let d = diff(want, &json!({}), &attrs);
        assert_eq!(
            Value::Object(d),
            json!({"tags": ["a", "cairn-restore:older"]})
        );
    }
}
