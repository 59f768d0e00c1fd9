//! Tenant configuration policies: the authentication methods policy and its method
//! configurations, the authorization policy, security defaults, authentication strengths,
//! directory role definitions, authentication contexts and the organization.
//!
//! Each selected item is compared with the live tenant on the properties Graph v1.0 lets an
//! app write; an equal item gets no action. A differing one is PATCHed back (only the
//! differing properties), a deleted custom strength or role definition is re-created (its new
//! id recorded in `remap`, so Conditional Access policies that name it are rewritten), and
//! deleted authentication context is written back with its own id (Graph's PATCH creates or
//! updates: context ids `c1` … `c99` are chosen by the tenant, so the id is the same in any
//! tenant), and
//! what Graph does not let the restorer write (built-in strengths and roles, the organization)
//! becomes a manual step naming the differing properties.
//!
//! Group targets (`includeTargets` / `excludeTargets`, `{"targetType": "group", "id": …}`)
//! are written through `remap`; in a cross-tenant restore a group with no counterpart is left
//! out of the target list and named in a manual step.

use std::collections::HashMap;

use cairn_sdk::graph;
use cairn_sdk::prelude::*;
use cairn_sdk::record_mapping;
use serde_json::{json, Map, Value};

use super::plan::is_guid;
use super::{diff, snap, snap_required, str_of, target_id, Options};

const METHODS_POLICY: &str = "/v1.0/policies/authenticationMethodsPolicy";
const STRENGTHS: &str = "/v1.0/policies/authenticationStrengthPolicies";
const ROLE_DEFINITIONS: &str = "/v1.0/roleManagement/directory/roleDefinitions";
const AUTH_CONTEXTS: &str = "/v1.0/identity/conditionalAccess/authenticationContextClassReferences";
/// The kind of authentication contexts (`c1` … `c99`), which Conditional Access policies require
/// in `conditions.applications.includeAuthenticationContextClassReferences`.
pub const AUTH_CONTEXT: &str = "authenticationContextClassReference";

/// One policy kind the restorer compares (and, but for the organization, writes).
#[derive(Debug)]
pub struct PolicyKind {
    pub kind: &'static str,
    pub label: &'static str,
    /// Properties compared and written; `None`: every property of the snapshot object but its
    /// `id` and annotations (method configurations: their settings differ per method).
    pub writable: Option<&'static [&'static str]>,
}

pub const POLICY_KINDS: &[PolicyKind] = &[
    PolicyKind {
        kind: "authenticationMethodsPolicy",
        label: "authentication methods policy",
        writable: Some(&[
            "policyMigrationState",
            "registrationEnforcement",
            "reportSuspiciousActivitySettings",
            "systemCredentialPreferences",
        ]),
    },
    PolicyKind {
        kind: "authenticationMethodConfiguration",
        label: "authentication method configuration",
        writable: None,
    },
    PolicyKind {
        kind: "authorizationPolicy",
        label: "authorization policy",
        writable: Some(&[
            "allowEmailVerifiedUsersToJoinOrganization",
            "allowInvitesFrom",
            "allowUserConsentForRiskyApps",
            "allowedToSignUpEmailBasedSubscriptions",
            "allowedToUseSSPR",
            "blockMsolPowerShell",
            "defaultUserRolePermissions",
            "guestUserRoleId",
            "permissionGrantPolicyIdsAssignedToDefaultUserRole",
        ]),
    },
    PolicyKind {
        kind: "identitySecurityDefaultsEnforcementPolicy",
        label: "security defaults",
        writable: Some(&["isEnabled"]),
    },
    PolicyKind {
        kind: "authenticationStrengthPolicy",
        label: "authentication strength",
        writable: Some(&["displayName", "description", "allowedCombinations"]),
    },
    PolicyKind {
        kind: AUTH_CONTEXT,
        label: "authentication context",
        writable: Some(&["displayName", "description", "isAvailable"]),
    },
    PolicyKind {
        kind: "unifiedRoleDefinition",
        label: "role definition",
        writable: Some(&["displayName", "description", "isEnabled", "rolePermissions"]),
    },
    PolicyKind {
        kind: "organization",
        label: "organization",
        writable: Some(&[
            "marketingNotificationEmails",
            "privacyProfile",
            "securityComplianceNotificationMails",
            "securityComplianceNotificationPhones",
            "technicalNotificationMails",
        ]),
    },
];

pub fn of(kind: &str) -> Option<&'static PolicyKind> {
    POLICY_KINDS.iter().find(|k| k.kind == kind)
}

/// The properties of snapshot object `body` compared with the live one.
fn attrs_of(pk: &PolicyKind, body: &Value) -> Vec<String> {
    match pk.writable {
        Some(list) => list
            .iter()
            .filter(|a| body.get(**a).is_some())
            .map(|a| a.to_string())
            .collect(),
        None => body
            .as_object()
            .map(|m| {
                m.keys()
                    .filter(|k| *k != "id" && !k.contains('@'))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// A built-in strength or role definition (the same in every tenant; never written).
fn is_builtin(kind: &str, body: &Value) -> bool {
    match kind {
        "authenticationStrengthPolicy" => str_of(body, "policyType") == Some("builtIn"),
        "unifiedRoleDefinition" => body.get("isBuiltIn") == Some(&Value::Bool(true)),
        _ => false,
    }
}

/// Whether the kind is a collection whose custom objects the restorer re-creates.
fn recreatable(kind: &str) -> bool {
    matches!(
        kind,
        "authenticationStrengthPolicy" | "unifiedRoleDefinition" | AUTH_CONTEXT
    )
}

/// The group ids (old ids) an object targets.
pub fn group_targets(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk_targets(v, &mut out);
    out
}

fn group_target(x: &Value) -> Option<String> {
    (str_of(x, "targetType") == Some("group"))
        .then(|| str_of(x, "id").filter(|i| is_guid(i)).map(str::to_string))
        .flatten()
}

fn walk_targets(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| walk_targets(x, out)),
        Value::Object(m) => {
            if let Some(id) = group_target(v) {
                out.push(id);
            }
            m.values().for_each(|x| walk_targets(x, out));
        }
        _ => {}
    }
}

/// Rewrites group targets through `remap`; those without a counterpart are left out of their
/// list and named in `unmapped`.
fn map_targets(v: &mut Value, opts: &Options, back: Back, unmapped: &mut Vec<String>) {
    match v {
        Value::Array(a) => a.retain_mut(|x| match group_target(x) {
            Some(id) => match target_id(&id, opts).or_else(|| back(&id).then(|| id.clone())) {
                Some(n) => {
                    x["id"] = Value::String(n);
                    true
                }
                None => {
                    unmapped.push(id);
                    false
                }
            },
            None => {
                map_targets(x, opts, back, unmapped);
                true
            }
        }),
        Value::Object(m) => m
            .values_mut()
            .for_each(|x| map_targets(x, opts, back, unmapped)),
        _ => {}
    }
}

/// Whether a group (old id) without a counterpart yet comes back in the plan being made (it is
/// then written under its old id in the plan's comparison; apply uses the new one).
pub type Back<'a> = &'a dyn Fn(&str) -> bool;

/// At apply time every group the plan brings back is in `remap`.
fn applied(_: &str) -> bool {
    false
}

/// The values to write, from the snapshot, group targets through `remap`.
pub fn desired(
    pk: &PolicyKind,
    body: &Value,
    opts: &Options,
    back: Back,
    unmapped: &mut Vec<String>,
) -> Map<String, Value> {
    let mut m = Map::new();
    for a in attrs_of(pk, body) {
        if let Some(v) = body.get(&a) {
            let mut v = v.clone();
            map_targets(&mut v, opts, back, unmapped);
            m.insert(a, v);
        }
    }
    m
}

/// The live state of a snapshot policy object.
#[derive(Debug, Clone)]
pub enum Live {
    /// Live at this URL, with these properties.
    At(String, Value),
    /// Not in the tenant (a deleted custom strength or role definition; a method the tenant
    /// does not offer).
    Absent,
}

fn config_url(id: &str) -> String {
    format!("{METHODS_POLICY}/authenticationMethodConfigurations/{id}")
}

/// The id a strength or role definition has in the target tenant: built-ins keep theirs
/// everywhere; custom ones through `remap` (same tenant: their own).
fn target_of(kind: &str, old: &str, body: &Value, opts: &Options) -> Option<String> {
    if is_builtin(kind, body) {
        Some(old.to_string())
    } else {
        target_id(old, opts)
    }
}

/// Reads the live state of the snapshot objects `ids` of `kind` (a few requests per kind).
pub fn lookup(
    kind: &str,
    ids: &[String],
    opts: &Options,
) -> Result<HashMap<String, Live>, PluginError> {
    let mut out = HashMap::new();
    let single = |url: &str, out: &mut HashMap<String, Live>| -> Result<(), PluginError> {
        let v = graph::get_json(url)?;
        for id in ids {
            out.insert(id.clone(), Live::At(url.to_string(), v.clone()));
        }
        Ok(())
    };
    match kind {
        "authenticationMethodsPolicy" => single(METHODS_POLICY, &mut out)?,
        "authorizationPolicy" => single("/v1.0/policies/authorizationPolicy", &mut out)?,
        "identitySecurityDefaultsEnforcementPolicy" => single(
            "/v1.0/policies/identitySecurityDefaultsEnforcementPolicy",
            &mut out,
        )?,
        "organization" => {
            let org = graph::get_all("/v1.0/organization")?;
            for id in ids {
                let s = match org.first() {
                    Some(o) => Live::At(
                        format!("/v1.0/organization/{}", str_of(o, "id").unwrap_or(id)),
                        o.clone(),
                    ),
                    None => Live::Absent,
                };
                out.insert(id.clone(), s);
            }
        }
        "authenticationMethodConfiguration" => {
            let live: HashMap<String, Value> = graph::get_all(&format!(
                "{METHODS_POLICY}/authenticationMethodConfigurations"
            ))?
            .into_iter()
            .filter_map(|c| Some((str_of(&c, "id")?.to_ascii_lowercase(), c)))
            .collect();
            for id in ids {
                let s = match live.get(&id.to_ascii_lowercase()) {
                    Some(c) => Live::At(config_url(str_of(c, "id").unwrap_or(id)), c.clone()),
                    None => Live::Absent,
                };
                out.insert(id.clone(), s);
            }
        }
        AUTH_CONTEXT => {
            // Tenant-chosen ids: the same id in any tenant.
            let live: HashMap<String, Value> = graph::get_all(AUTH_CONTEXTS)?
                .into_iter()
                .filter_map(|c| Some((str_of(&c, "id")?.to_string(), c)))
                .collect();
            for id in ids {
                let s = match live.get(id) {
                    Some(v) => Live::At(format!("{AUTH_CONTEXTS}/{id}"), v.clone()),
                    None => Live::Absent,
                };
                out.insert(id.clone(), s);
            }
        }
        "authenticationStrengthPolicy" | "unifiedRoleDefinition" => {
            let base = if kind == "unifiedRoleDefinition" {
                ROLE_DEFINITIONS
            } else {
                STRENGTHS
            };
            let live: HashMap<String, Value> = graph::get_all(base)?
                .into_iter()
                .filter_map(|c| Some((str_of(&c, "id")?.to_string(), c)))
                .collect();
            for id in ids {
                let body = snap(kind, id).map(|s| s.body).unwrap_or(Value::Null);
                let s = match target_of(kind, id, &body, opts).and_then(|t| live.get(&t)) {
                    Some(v) => Live::At(
                        format!("{base}/{}", str_of(v, "id").unwrap_or(id)),
                        v.clone(),
                    ),
                    None => Live::Absent,
                };
                out.insert(id.clone(), s);
            }
        }
        other => {
            return Err(PluginError::Other(format!(
                "the restorer does not compare {other} objects"
            )))
        }
    }
    Ok(out)
}

/// What the plan does for one selected policy object.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// PATCH these properties back.
    Update(Vec<String>),
    /// Re-create the (custom) object.
    Recreate,
    /// A manual step with this text (action id suffix, text).
    Manual(String, String),
}

/// One planned step for a policy object.
#[derive(Debug, Clone)]
pub struct Planned {
    pub kind: &'static str,
    pub id: String,
    pub name: String,
    pub step: Step,
    pub summary: String,
    pub reason: String,
    /// The old ids of the groups it targets (the plan waits for those it brings back).
    pub groups: Vec<String>,
}

/// Compares the selected objects of `kind` with the live tenant: one step per differing
/// object (none for equal ones).
pub fn plan(
    kind: &str,
    ids: &[String],
    opts: &Options,
    back: Back,
) -> Result<Vec<Planned>, PluginError> {
    let Some(pk) = of(kind) else {
        return Ok(Vec::new());
    };
    let live = lookup(kind, ids, opts)?;
    let mut out = Vec::new();
    for id in ids {
        let Some(s) = snap(kind, id) else { continue };
        let name = s.name.clone();
        let label = pk.label;
        let mut unmapped = Vec::new();
        let want = desired(pk, &s.body, opts, back, &mut unmapped);
        let attrs = attrs_of(pk, &s.body);
        let groups = group_targets(&s.body);
        let mk = |step: Step, summary: String, reason: String| Planned {
            kind: pk.kind,
            id: id.clone(),
            name: name.clone(),
            step,
            summary,
            reason,
            groups: groups.clone(),
        };
        if !unmapped.is_empty() {
            unmapped.sort();
            unmapped.dedup();
            out.push(mk(
                Step::Manual(
                    "manual/targets".into(),
                    format!(
                        "{label} {name} targets group(s) {} that have no counterpart in the \
                         target tenant: they are left out of its target lists; add the \
                         matching groups by hand",
                        unmapped.join(", ")
                    ),
                ),
                String::new(),
                String::new(),
            ));
        }
        match live.get(id).cloned().unwrap_or(Live::Absent) {
            Live::At(_, live) => {
                let d = diff(&want, &live, &attrs);
                if d.is_empty() {
                    continue;
                }
                let keys: Vec<String> = d.keys().cloned().collect();
                let list = keys.join(", ");
                if kind == "organization" {
                    out.push(mk(
                        Step::Manual(
                            "manual".into(),
                            format!(
                                "organization {name} differs from the snapshot in {list}: set \
                                 these back by hand (compare with `cairn show`); the entra \
                                 restorer does not write the organization"
                            ),
                        ),
                        String::new(),
                        String::new(),
                    ));
                } else if is_builtin(kind, &s.body) {
                    out.push(mk(
                        Step::Manual(
                            "manual".into(),
                            format!(
                                "built-in {label} {name} differs from the snapshot in {list}: \
                                 Microsoft maintains built-in ones and Graph refuses to change \
                                 them; nothing to restore"
                            ),
                        ),
                        String::new(),
                        String::new(),
                    ));
                } else {
                    out.push(mk(
                        Step::Update(keys.clone()),
                        format!("PATCH {label} {name}: {list}"),
                        format!("live values differ from the snapshot in {list}"),
                    ));
                }
            }
            Live::Absent if kind == AUTH_CONTEXT => out.push(mk(
                Step::Recreate,
                format!("re-create {label} {name} with its id {id} (PATCH creates it)"),
                if opts.cross_tenant {
                    "not in the target tenant; context ids are chosen by the tenant, so it \
                     gets the same id there"
                        .into()
                } else {
                    "deleted since the snapshot (authentication contexts have no recycle bin)"
                        .into()
                },
            )),
            Live::Absent if recreatable(kind) && !is_builtin(kind, &s.body) => {
                let why = if opts.cross_tenant && target_id(id, opts).is_none() {
                    "cross-tenant restore: custom ones are created in the target tenant"
                } else {
                    "deleted since the snapshot (strengths and role definitions have no \
                     recycle bin)"
                };
                out.push(mk(
                    Step::Recreate,
                    format!("re-create custom {label} {name} (new id, recorded in remap)"),
                    why.into(),
                ));
            }
            Live::Absent => out.push(mk(
                Step::Manual(
                    "manual".into(),
                    format!(
                        "{label} {name} is not in the target tenant and cannot be created \
                         through Graph: Microsoft provides it where the feature is available"
                    ),
                ),
                String::new(),
                String::new(),
            )),
        }
    }
    Ok(out)
}

fn outcome(new_id: Option<String>, note: Option<String>, already_done: bool) -> Outcome {
    Outcome {
        new_id,
        notes: note.into_iter().collect(),
        already_done,
    }
}

/// Applies an `update`: PATCHes the listed properties that still differ.
pub fn update(
    kind: &str,
    old: &str,
    attrs: &[String],
    opts: &Options,
) -> Result<Outcome, PluginError> {
    let pk = of(kind)
        .ok_or_else(|| PluginError::Other(format!("the restorer does not write {kind}")))?;
    let s = snap_required(kind, old)?;
    if kind == "organization" || is_builtin(kind, &s.body) {
        return Err(PluginError::Other(format!(
            "{} {} is not written by the restorer (Graph refuses it); it is a manual step",
            pk.label, s.name
        )));
    }
    let (url, live) = match lookup(kind, &[old.to_string()], opts)?.remove(old) {
        Some(Live::At(url, live)) => (url, live),
        _ => {
            return Err(PluginError::Other(format!(
                "{} {} is not in the tenant any more; plan the restore again",
                pk.label, s.name
            )))
        }
    };
    let mut unmapped = Vec::new();
    let want = desired(pk, &s.body, opts, &applied, &mut unmapped);
    let mut d = diff(&want, &live, attrs);
    if d.is_empty() {
        return Ok(outcome(
            None,
            Some(format!(
                "{} {} already equals the snapshot",
                pk.label, s.name
            )),
            true,
        ));
    }
    let keys: Vec<String> = d.keys().cloned().collect();
    if kind == "authenticationStrengthPolicy" {
        if let Some(combos) = d.remove("allowedCombinations") {
            graph::send_json(graph::json_request(
                "POST",
                &format!("{url}/updateAllowedCombinations"),
                &json!({ "allowedCombinations": combos }),
            ))?;
        }
    }
    if kind == "authenticationMethodConfiguration" {
        // Graph needs the derived type on a configuration's PATCH.
        if let Some(t) = s.body.get("@odata.type") {
            d.insert("@odata.type".into(), t.clone());
        }
    }
    if d.keys().any(|k| k != "@odata.type") {
        graph::send_json(graph::json_request("PATCH", &url, &Value::Object(d)))?;
    }
    Ok(outcome(
        None,
        Some(format!(
            "{} {}: wrote {}",
            pk.label,
            s.name,
            keys.join(", ")
        )),
        false,
    ))
}

/// Applies a `recreate` of a custom strength or role definition; the new id goes to `remap`.
pub fn recreate(kind: &str, old: &str, opts: &Options) -> Result<Outcome, PluginError> {
    let pk = of(kind)
        .filter(|_| recreatable(kind))
        .ok_or_else(|| PluginError::Other(format!("the restorer does not re-create {kind}")))?;
    let s = snap_required(kind, old)?;
    if let Some(Live::At(url, live)) = lookup(kind, &[old.to_string()], opts)?.remove(old) {
        let id = str_of(&live, "id").unwrap_or(&url).to_string();
        return Ok(outcome(
            Some(id),
            Some(format!("{} {} exists", pk.label, s.name)),
            true,
        ));
    }
    let mut unmapped = Vec::new();
    let mut body = desired(pk, &s.body, opts, &applied, &mut unmapped);
    if kind == AUTH_CONTEXT {
        // Graph's PATCH on the id creates the context (its id is the tenant's choice).
        let url = format!("{AUTH_CONTEXTS}/{old}");
        graph::send_json(graph::json_request("PATCH", &url, &Value::Object(body)))?;
        record_mapping(kind, old, old);
        return Ok(outcome(Some(old.to_string()), None, false));
    }
    let url = if kind == "unifiedRoleDefinition" {
        ROLE_DEFINITIONS
    } else {
        STRENGTHS
    };
    // Created by an earlier attempt whose answer was lost (or the process died before the
    // journal record)? A custom one's display name is unique in the tenant.
    if let Some(found) = custom_named(kind, url, &s.body)? {
        record_mapping(kind, old, &found);
        let out = update(kind, old, &attrs_of(pk, &s.body), opts)?;
        let mut notes = vec![format!(
            "found {} {found} by its display name {}; mapped to it",
            pk.label, s.name
        )];
        notes.extend(out.notes);
        return Ok(Outcome {
            new_id: Some(found),
            notes,
            already_done: out.already_done,
        });
    }
    if kind == "unifiedRoleDefinition" {
        body.entry("isEnabled").or_insert(Value::Bool(true));
    }
    let created = graph::send_json(graph::json_request("POST", url, &Value::Object(body)))?;
    let new = str_of(&created, "id")
        .ok_or_else(|| {
            PluginError::Other(format!(
                "POST {url}: Graph returned the new {} without an id",
                pk.label
            ))
        })?
        .to_string();
    record_mapping(kind, old, &new);
    Ok(outcome(Some(new), None, false))
}

/// The live custom strength or role definition (`base` lists them) with the display name of the
/// snapshot's `body`.
fn custom_named(kind: &str, base: &str, body: &Value) -> Result<Option<String>, PluginError> {
    let Some(name) = str_of(body, "displayName") else {
        return Ok(None);
    };
    Ok(graph::get_all(base)?
        .iter()
        .find(|l| !is_builtin(kind, l) && str_of(l, "displayName") == Some(name))
        .and_then(|l| str_of(l, "id").map(str::to_string)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_attributes_are_its_settings() {
        let pk = of("authenticationMethodConfiguration").unwrap();
        let body = json!({"@odata.type": "#microsoft.graph.smsAuthenticationMethodConfiguration",
            "id": "Sms", "state": "disabled", "includeTargets": [], "excludeTargets@odata.context": "x"});
        let mut a = attrs_of(pk, &body);
        a.sort();
        assert_eq!(a, vec!["includeTargets", "state"]);
        // Named lists keep only what the snapshot has.
        let pk = of("authorizationPolicy").unwrap();
        assert_eq!(
            attrs_of(
                pk,
                &json!({"id": "authorizationPolicy", "allowInvitesFrom": "none", "displayName": "x"})
            ),
            vec!["allowInvitesFrom"]
        );
    }

    #[test]
    fn group_targets_are_found_and_keywords_are_not() {
        let g = "5a1b2c3d-0000-4000-8000-00000000000a";
        let body = json!({"includeTargets": [{"targetType": "group", "id": "all_users"}],
            "excludeTargets": [{"targetType": "group", "id": g}],
            "registrationEnforcement": {"campaign": {"includeTargets": [{"targetType": "user", "id": "5a1b2c3d-0000-4000-8000-00000000000b"}]}}});
        assert_eq!(group_targets(&body), vec![g.to_string()]);
    }

    #[test]
    fn built_ins_are_recognised() {
        assert!(is_builtin(
            "authenticationStrengthPolicy",
            &json!({"policyType": "builtIn"})
        ));
        assert!(!is_builtin(
            "authenticationStrengthPolicy",
            &json!({"policyType": "custom"})
        ));
        assert!(is_builtin(
            "unifiedRoleDefinition",
            &json!({"isBuiltIn": true})
        ));
        assert!(!is_builtin(
            "unifiedRoleDefinition",
            &json!({"isBuiltIn": false})
        ));
        assert!(!recreatable("authorizationPolicy"));
        assert!(recreatable(AUTH_CONTEXT));
        assert!(!is_builtin(AUTH_CONTEXT, &json!({"id": "c1"})));
    }
}
