//! `plan`: the selection (expanded to its relationships) compared with the live tenant.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use cairn_sdk::graph::{self, Batch};
use cairn_sdk::prelude::*;
use cairn_sdk::{snapshot_entries, snapshot_item};
use serde_json::{Map, Value};

use super::pim;
use super::policy;
use super::spec::{self, KindSpec, KINDS};
use super::{diff, same, snap, str_of, target_id, Op, Options, Payload, RefFix, Snap};
use crate::relations::{get_collections, Found};

/// What the live tenant holds for a snapshot object.
#[derive(Debug, Clone)]
pub enum State {
    /// Live, at this id, with these attributes.
    Live(String, Value),
    /// In the directory recycle bin (or the Conditional Access one), with these attributes.
    Deleted(Value),
    /// Neither: it must be re-created.
    Absent,
}

impl State {
    fn is_live(&self) -> bool {
        matches!(self, State::Live(..))
    }
}

/// Relationship kinds that are items of their own.
const LINK_KINDS: &[&str] = &[
    "groupMember",
    "userManager",
    "administrativeUnitMember",
    "unifiedRoleAssignment",
    "appRoleAssignment",
    "oauth2PermissionGrant",
    pim::KIND,
];

struct Planner {
    opts: Options,
    /// Status of every object looked at, by old id: (kind, status).
    status: HashMap<String, (String, State)>,
    /// The action that makes an object exist (undelete or re-create), by old id.
    creator: HashMap<String, String>,
    /// Authentication context id → the action writing it back (Conditional Access policies that
    /// require the context wait for it).
    contexts: HashMap<String, String>,
    /// Old ids of objects re-created (they get new ids).
    recreated: HashSet<String>,
    /// `onlyMissing`: old ids of objects an earlier run of a restore into this tenant re-created
    /// (live at the new id `remap` knows); their relationships and the references to them are
    /// planned again, their attributes are not compared.
    earlier: HashSet<String>,
    objects: Vec<Action>,
    updates: Vec<Action>,
    links: Vec<Action>,
    ca: Vec<Action>,
    manual: Vec<Action>,
    seen: HashSet<String>,
}

enum Phase {
    Objects,
    Updates,
    Links,
    Ca,
    Manual,
}

#[allow(clippy::too_many_arguments)]
fn action(
    id: String,
    kind: ActionKind,
    item_kind: &str,
    item_id: &str,
    name: &str,
    summary: String,
    reason: String,
    depends_on: Vec<String>,
    payload: String,
) -> Action {
    Action {
        id,
        kind,
        item_kind: item_kind.into(),
        item_id: item_id.into(),
        display_name: name.into(),
        summary,
        reason,
        depends_on,
        payload,
    }
}

impl Planner {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        phase: Phase,
        id: String,
        kind: ActionKind,
        item_kind: &str,
        item_id: &str,
        name: &str,
        summary: String,
        reason: String,
        deps: Vec<String>,
        op: Op,
    ) {
        if !self.seen.insert(id.clone()) {
            return;
        }
        let payload = serde_json::to_string(&Payload {
            op,
            opts: self.opts.clone(),
        })
        .expect("payloads serialise");
        let mut deps: Vec<String> = deps.into_iter().filter(|d| *d != id).collect();
        deps.sort();
        deps.dedup();
        let a = action(
            id, kind, item_kind, item_id, name, summary, reason, deps, payload,
        );
        match phase {
            Phase::Objects => self.objects.push(a),
            Phase::Updates => self.updates.push(a),
            Phase::Links => self.links.push(a),
            Phase::Ca => self.ca.push(a),
            Phase::Manual => self.manual.push(a),
        }
    }

    fn manual(&mut self, id: String, item_kind: &str, item_id: &str, name: &str, text: String) {
        self.push(
            Phase::Manual,
            id,
            ActionKind::Manual,
            item_kind,
            item_id,
            name,
            text,
            "Microsoft Graph cannot do this; the operator must".into(),
            vec![],
            Op::Manual,
        );
    }

    /// Whether the object will exist once the plan's object actions ran.
    fn will_exist(&self, old: &str) -> bool {
        self.creator.contains_key(old)
            || self
                .status
                .get(old)
                .is_some_and(|(_, s)| matches!(s, State::Live(..)))
    }

    fn deps_of(&self, olds: &[&str]) -> Vec<String> {
        olds.iter()
            .filter_map(|o| self.creator.get(*o).cloned())
            .collect()
    }

    fn kind_of(&self, old: &str) -> Option<&str> {
        self.status.get(old).map(|(k, _)| k.as_str())
    }
}

/// Reads the live state of `ids` (old ids) of one kind.
fn lookup(
    spec: &KindSpec,
    ids: &[String],
    opts: &Options,
) -> Result<HashMap<String, State>, PluginError> {
    let mut out = HashMap::new();
    let mut targets: Vec<(String, String)> = Vec::new();
    for old in ids {
        match super::resolve(spec.kind, old, opts)? {
            Some(t) => targets.push((old.clone(), t)),
            None => {
                out.insert(old.clone(), State::Absent);
            }
        }
    }
    if targets.is_empty() {
        return Ok(out);
    }
    let select = if spec.select {
        format!("?$select={}", spec.select_list())
    } else {
        String::new()
    };
    let mut live: HashMap<String, Value> = HashMap::new();
    if spec.select && targets.len() <= 40 {
        let mut batch = Batch::new();
        for (_, t) in &targets {
            batch.push(graph::request(
                "GET",
                &format!("{}{select}", spec.object_url(t)),
            ));
        }
        for ((_, t), resp) in targets.iter().zip(batch.send()?) {
            if resp.status == 404 {
                continue;
            }
            let v = graph::json_or_error(&format!("GET {}", spec.object_url(t)), &resp)?;
            live.insert(t.clone(), v);
        }
    } else {
        let url = if spec.select {
            format!("/v1.0{}{select}&$top=999", spec.path)
        } else {
            format!("/v1.0{}", spec.path)
        };
        for o in graph::get_all(&url)? {
            if let Some(id) = str_of(&o, "id") {
                live.insert(id.to_string(), o.clone());
            }
        }
    }
    let mut deleted: HashMap<String, Value> = HashMap::new();
    let missing = targets.iter().any(|(_, t)| !live.contains_key(t));
    if missing {
        let url = if spec.recycle {
            Some(format!(
                "/v1.0/directory/deletedItems/microsoft.graph.{}{select}",
                spec.kind
            ))
        } else {
            spec.ca_recycle
                .map(|c| format!("/beta/identity/conditionalAccess/deletedItems/{c}"))
        };
        if let Some(url) = url {
            for o in graph::get_all(&url)? {
                if let Some(id) = str_of(&o, "id") {
                    deleted.insert(id.to_string(), o.clone());
                }
            }
        }
    }
    for (old, t) in targets {
        let s = match (live.remove(&t), deleted.remove(&t)) {
            (Some(v), _) => State::Live(t, v),
            (None, Some(d)) => State::Deleted(d),
            (None, None) => absent_sp_by_app_id(spec.kind, &old)?
                .map(|n| State::Live(n, Value::Null))
                .unwrap_or(State::Absent),
        };
        out.insert(old, s);
    }
    Ok(out)
}

/// A first-party Microsoft service principal not at its old id (same tenant: removed and
/// re-added by Microsoft) is the tenant's service principal with its appId, if there is one.
fn absent_sp_by_app_id(kind: &str, old: &str) -> Result<Option<String>, PluginError> {
    if kind != "servicePrincipal" {
        return Ok(None);
    }
    match snap("servicePrincipal", old) {
        Some(s) if s.body.get("@cairn.reference").is_some() => super::by_app_id(old, &s.body),
        _ => Ok(None),
    }
}

/// The attributes a create or PATCH would carry, from the snapshot (references not remapped;
/// see `apply::desired` for the apply-time body).
pub fn desired(kind: &str, body: &Value, opts: &Options) -> Map<String, Value> {
    let Some(spec) = spec::of(kind) else {
        return Map::new();
    };
    let mut m = Map::new();
    for a in spec.writable.iter().chain(spec.create_only) {
        if let Some(v) = body.get(*a) {
            m.insert(a.to_string(), v.clone());
        }
    }
    if kind == "user" {
        if let Some(upn) = str_of(body, "userPrincipalName") {
            m.insert(
                "userPrincipalName".into(),
                Value::String(opts.map_domain(upn)),
            );
        }
        if let Some(Value::Array(mails)) = body.get("otherMails") {
            let mapped: Vec<Value> = mails
                .iter()
                .map(|v| match v.as_str() {
                    Some(s) => Value::String(opts.map_domain(s)),
                    None => v.clone(),
                })
                .collect();
            m.insert("otherMails".into(), Value::Array(mapped));
        }
    }
    m
}

/// CA reference lists: (pointer, kind of the objects referenced).
pub const CA_REFS: &[(&str, &str)] = &[
    ("/conditions/users/includeUsers", "user"),
    ("/conditions/users/excludeUsers", "user"),
    ("/conditions/users/includeGroups", "group"),
    ("/conditions/users/excludeGroups", "group"),
    ("/conditions/users/includeRoles", "role"),
    ("/conditions/users/excludeRoles", "role"),
    ("/conditions/locations/includeLocations", "namedLocation"),
    ("/conditions/locations/excludeLocations", "namedLocation"),
    ("/conditions/applications/includeApplications", "appId"),
    ("/conditions/applications/excludeApplications", "appId"),
];

/// The authentication strength a CA policy requires (its id), if any.
pub fn ca_strength(body: &Value) -> Option<&str> {
    body.pointer("/grantControls/authenticationStrength/id")
        .and_then(Value::as_str)
}

/// True for a GUID (references); keywords such as `All` or `GuestsOrExternalUsers` are not.
pub fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// A CA reference list, readable: `/conditions/users/excludeUsers` → `exclude users`.
pub fn list_label(ptr: &str) -> String {
    let last = ptr.rsplit('/').next().unwrap_or(ptr);
    let mut out = String::with_capacity(last.len() + 2);
    for c in last.chars() {
        if c.is_ascii_uppercase() {
            out.push(' ');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// What became of an object a surviving CA policy references, as the plan sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum RefEnd {
    /// Re-created by this restore: a new id (`Some` once `remap` knows it, on a re-run).
    Recreated(Option<String>),
    /// Restored from the recycle bin by this restore (same id).
    Undeleted,
    /// Neither live nor restored: the reference matches nobody.
    Gone,
    /// Live and untouched, or not an object reference the restore rewrites (roles).
    Unchanged,
}

/// The references of a surviving policy (snapshot body `snap`, live body `live`) to fix:
/// those to objects the restore brings back that the live policy does not name by their
/// current id, and — only when the policy is written anyway — those to objects that are gone
/// and that the live policy still names (Graph refuses a policy that names unknown ids).
pub fn ca_repoints(snap: &Value, live: &Value, end: &dyn Fn(&str, &str) -> RefEnd) -> Vec<RefFix> {
    let mut fixes = Vec::new();
    let mut stale = Vec::new();
    for (ptr, k, id) in ca_refs(snap) {
        let names = |x: &str| {
            live.pointer(ptr)
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(x)))
        };
        let fix = |drop: bool| RefFix {
            list: ptr.into(),
            kind: k.into(),
            old: id.clone(),
            drop,
        };
        match end(k, &id) {
            RefEnd::Recreated(known) => {
                // Done once the live list names the new id and no longer the old one.
                let current = known.as_deref().is_some_and(|n| n != id && names(n));
                if !current || names(&id) {
                    fixes.push(fix(false));
                }
            }
            RefEnd::Undeleted if !names(&id) => fixes.push(fix(false)),
            RefEnd::Gone if names(&id) => stale.push(fix(true)),
            _ => {}
        }
    }
    if !fixes.is_empty() {
        fixes.extend(stale);
    }
    fixes
}

/// The GUID references of a CA policy: (pointer, kind, id).
pub fn ca_refs(body: &Value) -> Vec<(&'static str, &'static str, String)> {
    let mut out = Vec::new();
    for (p, k) in CA_REFS {
        if let Some(Value::Array(a)) = body.pointer(p) {
            for v in a {
                if let Some(s) = v.as_str() {
                    if is_guid(s) && s != "00000000-0000-0000-0000-000000000000" {
                        out.push((*p, *k, s.to_string()));
                    }
                }
            }
        }
    }
    out
}

/// The selection grouped: object kinds → ids → attributes; relationship items; other kinds.
type Objects = BTreeMap<String, BTreeMap<String, Vec<String>>>;

pub fn plan(selection: &[Selected], opts: Options) -> Result<Vec<Action>, PluginError> {
    let mut objs: Objects = BTreeMap::new();
    let mut rel_items: Vec<(String, String)> = Vec::new();
    let mut domains: Vec<String> = Vec::new();
    let mut other: BTreeMap<String, usize> = BTreeMap::new();
    let mut policies: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in selection {
        if policy::of(&s.kind).is_some() {
            policies
                .entry(s.kind.clone())
                .or_default()
                .push(s.id.clone());
        } else if spec::of(&s.kind).is_some() {
            objs.entry(s.kind.clone())
                .or_default()
                .insert(s.id.clone(), s.attributes.clone());
        } else if LINK_KINDS.contains(&s.kind.as_str()) {
            rel_items.push((s.kind.clone(), s.id.clone()));
        } else if s.kind == "domain" {
            domains.push(s.id.clone());
        } else {
            *other.entry(s.kind.clone()).or_default() += 1;
        }
    }
    let mut p = Planner {
        opts: opts.clone(),
        status: HashMap::new(),
        creator: HashMap::new(),
        contexts: HashMap::new(),
        recreated: HashSet::new(),
        earlier: HashSet::new(),
        objects: Vec::new(),
        updates: Vec::new(),
        links: Vec::new(),
        ca: Vec::new(),
        manual: Vec::new(),
        seen: HashSet::new(),
    };

    // A selected application brings its service principal; a selected CA policy the named
    // locations it references.
    let whole = |objs: &Objects, kind: &str| -> Vec<String> {
        objs.get(kind)
            .map(|m| {
                m.iter()
                    .filter(|(_, a)| a.is_empty())
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default()
    };
    let apps = whole(&objs, "application");
    if !apps.is_empty() {
        let app_ids: HashSet<String> = apps
            .iter()
            .filter_map(|a| snap("application", a))
            .filter_map(|s| str_of(&s.body, "appId").map(str::to_string))
            .collect();
        for e in snapshot_entries("servicePrincipal") {
            if let Some(sp) = snap("servicePrincipal", &e.id) {
                if str_of(&sp.body, "appId").is_some_and(|a| app_ids.contains(a)) {
                    objs.entry("servicePrincipal".into())
                        .or_default()
                        .entry(e.id.clone())
                        .or_default();
                }
            }
        }
    }
    for ca in whole(&objs, "conditionalAccessPolicy") {
        if let Some(s) = snap("conditionalAccessPolicy", &ca) {
            for (_, k, id) in ca_refs(&s.body) {
                if k == "namedLocation" && snapshot_item("namedLocation", &id).is_some() {
                    objs.entry("namedLocation".into())
                        .or_default()
                        .entry(id)
                        .or_default();
                }
            }
        }
    }

    // Live state of every selected object.
    for spec in KINDS {
        let Some(ids) = objs.get(spec.kind) else {
            continue;
        };
        let ids: Vec<String> = ids.keys().cloned().collect();
        for (old, s) in lookup(spec, &ids, &opts)? {
            p.status.insert(old, (spec.kind.to_string(), s));
        }
    }
    if opts.only_missing {
        // Live objects are left alone, except those a restore re-created earlier (a run that
        // stopped half-way may not have linked them yet, nor re-pointed what references them).
        for (kind, ids) in objs.iter_mut() {
            ids.retain(|id, _| match p.status.get(id) {
                Some((k, State::Live(t, _))) if k == kind => {
                    let earlier = !opts.cross_tenant
                        && t != id
                        && !(kind == "servicePrincipal"
                            && snap(kind, id)
                                .is_some_and(|s| s.body.get("@cairn.reference").is_some()));
                    if earlier {
                        p.earlier.insert(id.clone());
                    }
                    earlier
                }
                _ => true,
            });
        }
    }

    // What the selected CA policies reference: their live state decides which references stay.
    let mut ca_ends: BTreeSet<String> = BTreeSet::new();
    let mut nl_ends: Vec<String> = Vec::new();
    for ca in objs
        .get("conditionalAccessPolicy")
        .into_iter()
        .flat_map(|m| m.keys())
    {
        if let Some(s) = snap("conditionalAccessPolicy", ca) {
            for (_, k, id) in ca_refs(&s.body) {
                match k {
                    "user" | "group" => {
                        ca_ends.insert(id);
                    }
                    "namedLocation" if !p.status.contains_key(&id) && !nl_ends.contains(&id) => {
                        nl_ends.push(id)
                    }
                    _ => {}
                }
            }
        }
    }
    resolve_endpoints(&mut p, &ca_ends)?;
    resolve_named_locations(&mut p, nl_ends)?;

    // Tenant policies: compared first, so that the re-creation of a custom authentication
    // strength is known to the Conditional Access policies that require it.
    let mut planned_policies = Vec::new();
    // Authentication contexts too: the policies that require one are written after it.
    let early = |k: &str| {
        matches!(
            k,
            "authenticationStrengthPolicy" | "unifiedRoleDefinition" | policy::AUTH_CONTEXT
        )
    };
    for (kind, ids) in policies.iter().filter(|(k, _)| early(k)) {
        for pl in policy::plan(kind, ids, &opts, &|_| false)? {
            // `onlyMissing` leaves live objects alone.
            if opts.only_missing && matches!(pl.step, policy::Step::Update(_)) {
                continue;
            }
            if pl.kind == policy::AUTH_CONTEXT {
                let verb = match pl.step {
                    policy::Step::Update(_) => Some("update"),
                    policy::Step::Recreate => Some("recreate"),
                    policy::Step::Manual(..) => None,
                };
                if let Some(v) = verb {
                    p.contexts
                        .insert(pl.id.clone(), format!("{}/{}/{v}", pl.kind, pl.id));
                }
            } else if pl.step == policy::Step::Recreate {
                p.creator
                    .insert(pl.id.clone(), format!("{}/{}/recreate", pl.kind, pl.id));
                p.recreated.insert(pl.id.clone());
            }
            planned_policies.push(pl);
        }
    }

    // Objects: undelete / re-create / update.
    for spec in KINDS {
        let Some(ids) = objs.get(spec.kind) else {
            continue;
        };
        for (old, attrs) in ids {
            if p.earlier.contains(old) {
                continue;
            }
            let Some(s) = snap(spec.kind, old) else {
                continue;
            };
            let status = p
                .status
                .get(old)
                .map(|(_, s)| s.clone())
                .unwrap_or(State::Absent);
            plan_object(&mut p, spec, old, attrs, &s, &status)?;
        }
    }

    // Relationships of the objects restored whole, and relationship items selected directly.
    let mut scope: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (kind, ids) in &objs {
        scope.insert(kind.clone(), whole(&objs, kind));
        let _ = ids;
    }
    plan_relationships(&mut p, &scope, &rel_items)?;
    // References surviving policies hold to what this plan brings back.
    let ca_in_scope: HashSet<String> = objs
        .get("conditionalAccessPolicy")
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    plan_ca_repoints(&mut p, &ca_in_scope)?;

    // The other policies after the objects: their group targets may come back in this plan.
    for (kind, ids) in policies.iter().filter(|(k, _)| !early(k)) {
        let back = |g: &str| p.will_exist(g);
        for pl in policy::plan(kind, ids, &opts, &back)? {
            if !(opts.only_missing && matches!(pl.step, policy::Step::Update(_))) {
                planned_policies.push(pl);
            }
        }
    }
    for pl in planned_policies {
        push_policy(&mut p, pl);
    }
    for d in domains {
        plan_domain(&mut p, &d)?;
    }
    for (kind, n) in other {
        p.manual(
            format!("{kind}/*/manual"),
            &kind,
            "*",
            &kind,
            format!(
                "restore the {n} selected {kind} item(s) by hand: the entra restorer does not \
                 write {kind} objects; compare them with `cairn show` and set them in the portal"
            ),
        );
    }

    let mut out = Vec::new();
    out.append(&mut p.objects);
    out.append(&mut p.updates);
    out.append(&mut p.links);
    out.append(&mut p.ca);
    out.append(&mut p.manual);
    Ok(out)
}

/// One planned step for a tenant policy object as an action.
fn push_policy(p: &mut Planner, pl: policy::Planned) {
    let kind = pl.kind;
    let old = pl.id.as_str();
    let groups: Vec<&str> = pl.groups.iter().map(String::as_str).collect();
    let deps = p.deps_of(&groups);
    match pl.step {
        policy::Step::Update(attributes) => p.push(
            Phase::Updates,
            format!("{kind}/{old}/update"),
            ActionKind::Update,
            kind,
            old,
            &pl.name,
            pl.summary,
            pl.reason,
            deps,
            Op::Update {
                kind: kind.into(),
                id: old.into(),
                attributes,
            },
        ),
        policy::Step::Recreate => p.push(
            Phase::Objects,
            format!("{kind}/{old}/recreate"),
            ActionKind::Recreate,
            kind,
            old,
            &pl.name,
            pl.summary,
            pl.reason,
            deps,
            Op::Recreate {
                kind: kind.into(),
                id: old.into(),
            },
        ),
        policy::Step::Manual(suffix, text) => {
            p.manual(format!("{kind}/{old}/{suffix}"), kind, old, &pl.name, text)
        }
    }
}

fn verb(kind: ActionKind) -> &'static str {
    match kind {
        ActionKind::Undelete => "undelete",
        ActionKind::Recreate => "recreate",
        ActionKind::Update => "update",
        ActionKind::Link => "link",
        ActionKind::Unlink => "unlink",
        ActionKind::Manual => "manual",
    }
}

fn label(kind: &str) -> &str {
    match kind {
        "user" => "user",
        "group" => "group",
        "administrativeUnit" => "administrative unit",
        "application" => "application",
        "servicePrincipal" => "service principal",
        "conditionalAccessPolicy" => "Conditional Access policy",
        "namedLocation" => "named location",
        other => other,
    }
}

fn plan_object(
    p: &mut Planner,
    spec: &KindSpec,
    old: &str,
    attrs: &[String],
    s: &Snap,
    status: &State,
) -> Result<(), PluginError> {
    let kind = spec.kind;
    let name = s.name.clone();
    let is_ca = kind == "conditionalAccessPolicy";
    let phase = || if is_ca { Phase::Ca } else { Phase::Objects };
    let uphase = || if is_ca { Phase::Ca } else { Phase::Updates };
    if kind == "servicePrincipal" && s.body.get("@cairn.reference").is_some() {
        if !status.is_live() {
            let app_id = str_of(&s.body, "appId").unwrap_or_default();
            let found = super::get_opt(&format!("/v1.0/servicePrincipals(appId='{app_id}')"))?;
            if found.is_none() {
                p.manual(
                    format!("{kind}/{old}/manual"),
                    kind,
                    old,
                    &name,
                    format!(
                        "first-party Microsoft service principal {name} (appId {app_id}) is not in \
                         the tenant: it is never restored from a backup; it reappears when the \
                         Microsoft service is used or consented to"
                    ),
                );
            }
        }
        return Ok(());
    }
    // Attribute-level restores patch only the named writable attributes of a live object.
    let writable: Vec<String> = spec
        .writable
        .iter()
        .map(|a| a.to_string())
        .filter(|a| attrs.is_empty() || attrs.contains(a))
        .collect();
    if !attrs.is_empty() {
        let ignored: Vec<&String> = attrs
            .iter()
            .filter(|a| !spec.writable.contains(&a.as_str()))
            .collect();
        if !ignored.is_empty() {
            p.manual(
                format!("{kind}/{old}/manual/attributes"),
                kind,
                old,
                &name,
                format!(
                    "attribute(s) {} of {} {name} are read-only or computed in Graph and were not \
                     restored",
                    ignored
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    label(kind)
                ),
            );
        }
    }
    let mut want = desired(kind, &s.body, &p.opts);
    if is_ca {
        let keep = |k: &str, old: &str| -> Option<String> {
            match k {
                "role" => Some(old.to_string()),
                "appId" => Some(cairn_sdk::current_id(old)),
                _ if p.will_exist(old) => {
                    Some(target_id(old, &p.opts).unwrap_or_else(|| old.to_string()))
                }
                _ => None,
            }
        };
        super::ca_desired(&mut want, &keep);
        ca_gone_notes(p, old, &name, &s.body);
    }
    match status {
        State::Live(_, live) => {
            let mut d = diff(&want, live, &writable);
            if is_ca {
                d.remove("state");
                if let Some(st) = ca_target_state(&p.opts, &s.body, live) {
                    if writable.iter().any(|w| w == "state") {
                        d.insert("state".into(), Value::String(st));
                    }
                }
                // References re-created in this restore change ids: the policy must follow.
                let follows = ca_refs(&s.body)
                    .iter()
                    .any(|(_, _, id)| p.recreated.contains(id));
                if follows && !d.contains_key("conditions") {
                    d.insert("conditions".into(), Value::Null);
                }
            }
            if !d.is_empty() {
                let keys: Vec<String> = d.keys().cloned().collect();
                let deps = ca_deps(p, kind, &s.body);
                p.push(
                    uphase(),
                    format!("{kind}/{old}/update"),
                    ActionKind::Update,
                    kind,
                    old,
                    &name,
                    format!("PATCH {} {name}: {}", label(kind), keys.join(", ")),
                    format!(
                        "live values differ from the snapshot in {}",
                        keys.join(", ")
                    ),
                    deps,
                    Op::Update {
                        kind: kind.into(),
                        id: old.into(),
                        attributes: keys,
                    },
                );
            }
            if is_ca {
                ca_manual(p, old, &name, &s.body, live);
            }
        }
        State::Deleted(deleted) => {
            let aid = format!("{kind}/{old}/undelete");
            p.push(
                phase(),
                aid.clone(),
                ActionKind::Undelete,
                kind,
                old,
                &name,
                format!(
                    "restore {} {name} from the recycle bin (keeps its id)",
                    label(kind)
                ),
                "deleted since the snapshot; still in the recycle bin".into(),
                ca_deps(p, kind, &s.body),
                Op::Undelete {
                    kind: kind.into(),
                    id: old.into(),
                },
            );
            p.creator.insert(old.to_string(), aid.clone());
            let mut d = diff(&want, deleted, &writable);
            if is_ca {
                d.remove("state");
                if let Some(st) = ca_target_state(&p.opts, &s.body, deleted) {
                    d.insert("state".into(), Value::String(st.clone()));
                    ca_manual(p, old, &name, &s.body, &serde_json::json!({ "state": st }));
                }
            }
            if !d.is_empty() {
                let keys: Vec<String> = d.keys().cloned().collect();
                p.push(
                    uphase(),
                    format!("{kind}/{old}/update"),
                    ActionKind::Update,
                    kind,
                    old,
                    &name,
                    format!("PATCH {} {name}: {}", label(kind), keys.join(", ")),
                    format!(
                        "the deleted object differs from the snapshot in {}",
                        keys.join(", ")
                    ),
                    vec![aid],
                    Op::Update {
                        kind: kind.into(),
                        id: old.into(),
                        attributes: keys,
                    },
                );
            }
        }
        State::Absent => plan_recreate(p, spec, old, s)?,
    }
    Ok(())
}

/// The state a CA policy is written with (report-only unless `caState = as-backed-up`), or
/// `None` to leave the live state alone (it equals the snapshot's, or already is the target).
pub fn ca_target_state(opts: &Options, snap_body: &Value, live: &Value) -> Option<String> {
    let snap_state = str_of(snap_body, "state").unwrap_or("disabled");
    let live_state = str_of(live, "state");
    if live_state == Some(snap_state) {
        return None;
    }
    let target = if opts.report_only() && snap_state == "enabled" {
        "enabledForReportingButNotEnforced"
    } else {
        snap_state
    };
    (live_state != Some(target)).then(|| target.to_string())
}

fn ca_manual(p: &mut Planner, old: &str, name: &str, snap_body: &Value, live: &Value) {
    if str_of(snap_body, "state") == Some("enabled")
        && p.opts.report_only()
        && str_of(live, "state") != Some("enabled")
    {
        p.manual(
            format!("conditionalAccessPolicy/{old}/manual/enable"),
            "conditionalAccessPolicy",
            old,
            name,
            format!(
                "Conditional Access policy {name} was enabled at the snapshot and is restored in \
                 report-only state: review its report-only results in the sign-in logs, then set \
                 it to On (state `enabled`)"
            ),
        );
    }
}

fn ca_deps(p: &Planner, kind: &str, body: &Value) -> Vec<String> {
    if kind != "conditionalAccessPolicy" {
        return Vec::new();
    }
    let refs = ca_refs(body);
    let mut ids: Vec<&str> = refs.iter().map(|(_, _, id)| id.as_str()).collect();
    if let Some(sid) = ca_strength(body) {
        ids.push(sid);
    }
    let mut deps = p.deps_of(&ids);
    deps.extend(
        ca_contexts(body)
            .into_iter()
            .filter_map(|c| p.contexts.get(c).cloned()),
    );
    deps
}

/// The authentication contexts (`c1` … `c99`) a CA policy requires.
pub fn ca_contexts(body: &Value) -> Vec<&str> {
    body.pointer("/conditions/applications/includeAuthenticationContextClassReferences")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn plan_recreate(p: &mut Planner, spec: &KindSpec, old: &str, s: &Snap) -> Result<(), PluginError> {
    let kind = spec.kind;
    let name = s.name.clone();
    let b = &s.body;
    let why = if p.opts.cross_tenant {
        "cross-tenant restore: every object is created in the target tenant".to_string()
    } else {
        "absent from the tenant and from the recycle bin".to_string()
    };
    if kind == "user" && b.get("onPremisesSyncEnabled") == Some(&Value::Bool(true)) {
        p.manual(
            format!("user/{old}/manual"),
            kind,
            old,
            &name,
            format!(
                "user {name} is synchronised from on-premises Active Directory: restore it there \
                 (AD recycle bin) and let Entra Connect sync it; a cloud copy would conflict"
            ),
        );
        return Ok(());
    }
    let group_types = b
        .get("groupTypes")
        .map(|g| g.to_string())
        .unwrap_or_default();
    if kind == "group"
        && b.get("mailEnabled") == Some(&Value::Bool(true))
        && !group_types.contains("Unified")
    {
        p.manual(
            format!("group/{old}/manual"),
            kind,
            old,
            &name,
            format!(
                "group {name} is a distribution list or mail-enabled security group, which Graph \
                 cannot create: re-create it in Exchange Online (New-DistributionGroup) with the \
                 members listed in the snapshot"
            ),
        );
        return Ok(());
    }
    let aid = format!("{kind}/{old}/recreate");
    let mut deps = ca_deps(p, kind, b);
    if kind == "servicePrincipal" {
        // The service principal of a re-created application is created for its new appId.
        if let Some(app_id) = str_of(b, "appId") {
            let app = snapshot_entries("application").into_iter().find(|e| {
                snap("application", &e.id).is_some_and(|a| str_of(&a.body, "appId") == Some(app_id))
            });
            match app {
                Some(a) => deps.extend(p.creator.get(&a.id).cloned()),
                None => {
                    p.manual(
                        format!("{kind}/{old}/manual"),
                        kind,
                        old,
                        &name,
                        format!(
                            "service principal {name} belongs to application {app_id}, which is \
                             not in this snapshot (a multi-tenant app from another tenant): \
                             re-consent to that application to bring it back"
                        ),
                    );
                    return Ok(());
                }
            }
        }
    }
    let mut summary = format!("re-create {} {name} (new id)", label(kind));
    if kind == "application" {
        summary = format!("re-create application {name} (new id and new appId)");
    }
    if kind == "conditionalAccessPolicy" {
        let state = ca_target_state(&p.opts, b, &Value::Null).unwrap_or_default();
        summary = format!("re-create Conditional Access policy {name} in state {state}");
    }
    p.push(
        if kind == "conditionalAccessPolicy" {
            Phase::Ca
        } else {
            Phase::Objects
        },
        aid.clone(),
        ActionKind::Recreate,
        kind,
        old,
        &name,
        summary,
        why,
        deps,
        Op::Recreate {
            kind: kind.into(),
            id: old.into(),
        },
    );
    p.creator.insert(old.to_string(), aid);
    p.recreated.insert(old.to_string());
    // What Graph cannot bring back.
    match kind {
        "conditionalAccessPolicy" => ca_manual(p, old, &name, b, &Value::Null),
        "user" => {
            let upn = str_of(b, "userPrincipalName")
                .map(|u| p.opts.map_domain(u))
                .unwrap_or_else(|| name.clone());
            p.manual(
                format!("user/{old}/manual/password"),
                kind,
                old,
                &name,
                format!(
                    "reset the password of {upn} (re-created; its old password cannot be \
                     restored; a random one was set with change-at-next-sign-in) and have the \
                     user register MFA methods again"
                ),
            );
        }
        "group" if group_types.contains("DynamicMembership") => {
            p.manual(
                format!("group/{old}/manual/dynamic"),
                kind,
                old,
                &name,
                format!(
                    "group {name} has dynamic membership: Entra re-computes its members from the \
                     rule `{}`; check the result once processing finishes",
                    str_of(b, "membershipRule").unwrap_or("")
                ),
            );
        }
        "application" => {
            let mut creds: Vec<(&str, &Value)> = Vec::new();
            for c in b
                .get("passwordCredentials")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                creds.push(("client secret", c));
            }
            for c in b
                .get("keyCredentials")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                creds.push(("certificate", c));
            }
            for (what, c) in creds {
                let key = str_of(c, "keyId").unwrap_or("?");
                let cname = str_of(c, "displayName").unwrap_or("(unnamed)");
                let end = str_of(c, "endDateTime").unwrap_or("an unknown date");
                let hint = str_of(c, "hint")
                    .map(|h| format!(", hint {h}…"))
                    .unwrap_or_default();
                let tense = match p.opts.snapshot_time.as_deref() {
                    Some(t) if end < t => "expired on",
                    _ => "expires on",
                };
                let todo = if what == "certificate" {
                    "upload the certificate again (Certificates & secrets → Upload certificate) and"
                } else {
                    "issue a new client secret (addPassword) and"
                };
                p.manual(
                    format!("application/{old}/manual/{what}/{key}"),
                    kind,
                    old,
                    &name,
                    format!(
                        "application {name} was re-created with a new appId: {todo} update its \
                         clients; the old {what} `{cname}` (keyId {key}{hint}) {tense} {end} and \
                         cannot be restored"
                    ),
                );
            }
        }
        _ => {}
    }
    if p.opts.cross_tenant && kind == "conditionalAccessPolicy" {
        for (_, k, id) in ca_refs(b) {
            if k == "role" {
                // Built-in role template ids are the same in every tenant; custom ones are not.
                let exists = super::get_opt(&format!(
                    "/v1.0/roleManagement/directory/roleDefinitions/{id}?$select=id"
                ))?
                .is_some();
                if !exists {
                    p.manual(
                        format!("conditionalAccessPolicy/{old}/manual/role/{id}"),
                        kind,
                        old,
                        &name,
                        format!(
                            "Conditional Access policy {name} references the custom role {id} \
                             of the source tenant, which has no counterpart here: add the \
                             matching role to the policy by hand (it is left out)"
                        ),
                    );
                }
            }
        }
    }
    Ok(())
}

fn plan_domain(p: &mut Planner, id: &str) -> Result<(), PluginError> {
    let live = super::get_opt(&format!("/v1.0/domains/{id}"))?;
    let verified = live
        .as_ref()
        .is_some_and(|d| d.get("isVerified") == Some(&Value::Bool(true)));
    if !verified {
        let name = p.opts.map_domain(&format!("x@{id}"));
        let name = name.trim_start_matches("x@").to_string();
        p.manual(
            format!("domain/{id}/manual"),
            "domain",
            id,
            &name,
            format!(
                "add the domain {name} to the tenant (if absent) and verify it: publish the TXT \
                 record from GET /domains/{name}/verificationDnsRecords, then POST \
                 /domains/{name}/verify; users with this UPN suffix need it first"
            ),
        );
    }
    Ok(())
}

// ------------------------------------------------------------------------------ relationships

/// A relationship edge from the snapshot.
struct Edge {
    /// Container (group, unit, application, service principal) kind and old id.
    ckind: &'static str,
    container: String,
    /// `members` / `owners`.
    rel: &'static str,
    member: String,
}

fn ref_ids(body: &Value, nav: &str) -> Vec<String> {
    body.get(nav)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| str_of(r, "id").map(str::to_string))
        .collect()
}

/// Loads every item of a kind from the snapshot (relationship objects).
fn all_items(kind: &str) -> Vec<(String, Value)> {
    snapshot_entries(kind)
        .into_iter()
        .filter_map(|e| snap(kind, &e.id).map(|s| (e.id, s.body)))
        .collect()
}

fn container_path(kind: &str) -> &'static str {
    match kind {
        "group" => "/groups",
        "administrativeUnit" => "/directory/administrativeUnits",
        "application" => "/applications",
        _ => "/servicePrincipals",
    }
}

/// Finds the kind of snapshot objects referenced by id only and looks up their live state.
fn resolve_endpoints(p: &mut Planner, ids: &BTreeSet<String>) -> Result<(), PluginError> {
    let mut by_kind: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for id in ids {
        if p.status.contains_key(id) {
            continue;
        }
        let kind = [
            "user",
            "group",
            "servicePrincipal",
            "administrativeUnit",
            "application",
        ]
        .into_iter()
        .find(|k| snapshot_item(k, id).is_some());
        match kind {
            Some(k) => by_kind.entry(k).or_default().push(id.clone()),
            None => {
                // Not in the snapshot: only the live tenant can say whether it exists.
                let exists = match target_id(id, &p.opts) {
                    Some(t) => {
                        super::get_opt(&format!("/v1.0/directoryObjects/{t}?$select=id"))?.is_some()
                    }
                    None => false,
                };
                let s = if exists {
                    State::Live(id.clone(), Value::Null)
                } else {
                    State::Absent
                };
                p.status.insert(id.clone(), ("directoryObject".into(), s));
            }
        }
    }
    for (k, ids) in by_kind {
        let spec = spec::of(k).expect("directory kinds have specs");
        for (old, s) in lookup(spec, &ids, &p.opts)? {
            p.status.insert(old, (k.to_string(), s));
        }
    }
    Ok(())
}

/// Looks up the live state of named locations referenced by CA policies (not looked at yet).
fn resolve_named_locations(p: &mut Planner, ids: Vec<String>) -> Result<(), PluginError> {
    for nl in ids {
        if p.status.contains_key(&nl) {
            continue;
        }
        let live = match target_id(&nl, &p.opts) {
            Some(t) => super::get_opt(&format!(
                "/v1.0/identity/conditionalAccess/namedLocations/{t}"
            ))?
            .map(|v| State::Live(t, v)),
            None => None,
        };
        p.status
            .insert(nl, ("namedLocation".into(), live.unwrap_or(State::Absent)));
    }
    Ok(())
}

/// "user 'Adele V' (id)" for a referenced object, or its id and kind when it is not in the
/// snapshot.
fn ref_name(p: &Planner, kind: &str, id: &str) -> String {
    let k = p
        .kind_of(id)
        .filter(|k| *k != "directoryObject")
        .unwrap_or(kind)
        .to_string();
    match snap(&k, id) {
        Some(s) => format!("{} '{}' ({id})", label(&k), s.name),
        None => format!("{} {id}", label(&k)),
    }
}

/// One manual note per reference of a CA policy to an object that neither exists nor comes
/// back with this restore: such a reference is left out of what is written (it would match
/// nobody, and Graph refuses unknown ids), and the operator is told which one it was.
fn ca_gone_notes(p: &mut Planner, pol: &str, name: &str, body: &Value) {
    for (ptr, k, id) in ca_refs(body) {
        if !matches!(k, "user" | "group" | "namedLocation") || p.will_exist(&id) {
            continue;
        }
        let what = ref_name(p, k, &id);
        let state = match p.status.get(&id).map(|(_, s)| s) {
            Some(State::Deleted(_)) => "is in the recycle bin and not part of this restore",
            _ if snapshot_item(k, &id).is_none() && p.kind_of(&id) == Some("directoryObject") => {
                "no longer exists and is not in the snapshot"
            }
            _ => "no longer exists and is not part of this restore",
        };
        let list = list_label(ptr);
        let key = ptr.rsplit('/').next().unwrap_or(ptr);
        p.manual(
            format!("conditionalAccessPolicy/{pol}/manual/ref/{key}/{id}"),
            "conditionalAccessPolicy",
            pol,
            name,
            format!(
                "Conditional Access policy '{name}': the reference to {what} in {list} is left \
                 out because it {state}; restore that object and plan again, or set the policy's \
                 {list} by hand"
            ),
        );
    }
}

/// Surviving Conditional Access policies (not restored themselves) that reference objects
/// this plan brings back: a re-created user, group, named location or application has a new
/// id (appId), so the policy would name nobody. One `update` per policy rewrites only those
/// references (and leaves out references to objects that are gone), never its state.
fn plan_ca_repoints(p: &mut Planner, in_scope: &HashSet<String>) -> Result<(), PluginError> {
    if p.creator.is_empty() && p.earlier.is_empty() {
        return Ok(());
    }
    // Policies name applications by appId: the old appIds of re-created applications.
    let new_apps: HashMap<String, String> = p
        .recreated
        .iter()
        .chain(&p.earlier)
        .filter(|o| p.kind_of(o) == Some("application"))
        .filter_map(|o| {
            let s = snap("application", o)?;
            str_of(&s.body, "appId").map(|a| (a.to_string(), o.clone()))
        })
        .collect();
    let touches = |k: &str, id: &str| match k {
        "user" | "group" | "namedLocation" => p.creator.contains_key(id) || p.earlier.contains(id),
        "appId" => new_apps.contains_key(id),
        _ => false,
    };
    let mut cands: Vec<(String, Snap)> = Vec::new();
    for e in snapshot_entries("conditionalAccessPolicy") {
        if in_scope.contains(&e.id) {
            continue;
        }
        let Some(s) = snap("conditionalAccessPolicy", &e.id) else {
            continue;
        };
        if ca_refs(&s.body).iter().any(|(_, k, id)| touches(k, id)) {
            cands.push((e.id, s));
        }
    }
    if cands.is_empty() {
        return Ok(());
    }
    let spec = spec::of("conditionalAccessPolicy").expect("CA policies have a spec");
    let ids: Vec<String> = cands.iter().map(|(i, _)| i.clone()).collect();
    let states = lookup(spec, &ids, &p.opts)?;
    let mut ends: BTreeSet<String> = BTreeSet::new();
    let mut nls: Vec<String> = Vec::new();
    for (_, s) in &cands {
        for (_, k, id) in ca_refs(&s.body) {
            match k {
                "user" | "group" => {
                    ends.insert(id);
                }
                "namedLocation" => nls.push(id),
                _ => {}
            }
        }
    }
    resolve_endpoints(p, &ends)?;
    resolve_named_locations(p, nls)?;
    for (pid, s) in cands {
        // A policy that is itself gone is not a survivor: restoring it is its own selection.
        let Some(State::Live(_, live)) = states.get(&pid) else {
            continue;
        };
        let end = |k: &str, id: &str| -> RefEnd {
            match k {
                "appId" if new_apps.contains_key(id) => {
                    let n = cairn_sdk::current_id(id);
                    RefEnd::Recreated((n != id).then_some(n))
                }
                "user" | "group" | "namedLocation" => {
                    if p.recreated.contains(id) || p.earlier.contains(id) {
                        RefEnd::Recreated(target_id(id, &p.opts).filter(|t| t != id))
                    } else if p.creator.contains_key(id) {
                        RefEnd::Undeleted
                    } else if !p.will_exist(id) {
                        RefEnd::Gone
                    } else {
                        RefEnd::Unchanged
                    }
                }
                _ => RefEnd::Unchanged,
            }
        };
        let fixes = ca_repoints(&s.body, live, &end);
        if fixes.is_empty() {
            continue;
        }
        let mut parts = Vec::new();
        let mut deps = Vec::new();
        for f in &fixes {
            let list = list_label(&f.list);
            let text = if f.drop {
                format!(
                    "{list}: drop {} (it no longer exists and is not restored)",
                    ref_name(p, &f.kind, &f.old)
                )
            } else if f.kind == "appId" {
                let app = &new_apps[&f.old];
                deps.extend(p.creator.get(app).cloned());
                let name = snap("application", app).map(|a| a.name).unwrap_or_default();
                format!(
                    "{list}: appId {} → the new appId of re-created application '{name}'",
                    f.old
                )
            } else {
                deps.extend(p.creator.get(&f.old).cloned());
                let k = p.kind_of(&f.old).unwrap_or(f.kind.as_str()).to_string();
                let name = snap(&k, &f.old).map(|x| x.name).unwrap_or_default();
                if p.recreated.contains(&f.old) || p.earlier.contains(&f.old) {
                    format!("{list}: {} → re-created {} '{name}'", f.old, label(&k))
                } else {
                    format!(
                        "{list}: add back {} '{name}' ({}, restored from the recycle bin)",
                        label(&k),
                        f.old
                    )
                }
            };
            parts.push(text);
        }
        p.push(
            Phase::Ca,
            format!("conditionalAccessPolicy/{pid}/repoint"),
            ActionKind::Update,
            "conditionalAccessPolicy",
            &pid,
            &s.name,
            format!(
                "re-point Conditional Access policy '{}' {}",
                s.name,
                parts.join("; ")
            ),
            "the policy was not deleted, but it references objects this restore brings back \
             (a re-created object has a new id); only these references are rewritten, its \
             state and other conditions stay as they are"
                .into(),
            deps,
            Op::Repoint {
                id: pid.clone(),
                refs: fixes,
            },
        );
        ca_gone_notes(p, &pid, &s.name, &s.body);
    }
    Ok(())
}

/// Explains why a relationship cannot be restored: an endpoint is neither live nor restored.
/// True if every end of a relationship (checked in order) will exist after the restore;
/// otherwise the manual step naming the first end that will not, and false.
fn ends_will_exist(p: &mut Planner, action_id: &str, what: &str, ends: &[&str]) -> bool {
    match ends.iter().find(|e| !p.will_exist(e)) {
        Some(gone) => {
            missing_endpoint(p, action_id, what, gone);
            false
        }
        None => true,
    }
}

fn missing_endpoint(p: &mut Planner, action_id: &str, what: &str, id: &str) {
    let kind = p.kind_of(id).unwrap_or("directoryObject").to_string();
    let name = snap(&kind, id)
        .map(|s| s.name)
        .unwrap_or_else(|| id.to_string());
    let state = match p.status.get(id).map(|(_, s)| s) {
        Some(State::Deleted(_)) => "is in the recycle bin",
        _ => "is not in the tenant",
    };
    p.manual(
        format!("{action_id}/manual"),
        &kind,
        id,
        &name,
        format!(
            "{what} cannot be restored: {} {name} ({id}) {state} and is not part of this \
             restore; select it too (or restore it first), then plan again",
            label(&kind)
        ),
    );
}

fn plan_relationships(
    p: &mut Planner,
    scope: &BTreeMap<String, Vec<String>>,
    rel_items: &[(String, String)],
) -> Result<(), PluginError> {
    let in_scope = |k: &str| -> HashSet<String> {
        scope
            .get(k)
            .map(|v| v.iter().cloned().collect())
            .unwrap_or_default()
    };
    let users = in_scope("user");
    let groups = in_scope("group");
    let aus = in_scope("administrativeUnit");
    let apps = in_scope("application");
    let sps = in_scope("servicePrincipal");
    let principals: HashSet<String> = users.iter().chain(&groups).chain(&sps).cloned().collect();
    let selected_rel: HashSet<(String, String)> = rel_items.iter().cloned().collect();
    let want_rel = |k: &str, id: &str| selected_rel.contains(&(k.to_string(), id.to_string()));

    // Membership edges.
    let mut edges: Vec<Edge> = Vec::new();
    if !users.is_empty()
        || !groups.is_empty()
        || selected_rel.iter().any(|(k, _)| k == "groupMember")
    {
        for e in snapshot_entries("groupMember") {
            let Some((g, m)) = e.id.split_once('/') else {
                continue;
            };
            if groups.contains(g)
                || users.contains(m)
                || principals.contains(m)
                || want_rel("groupMember", &e.id)
            {
                if snapshot_item("group", g).is_none() {
                    continue;
                }
                edges.push(Edge {
                    ckind: "group",
                    container: g.into(),
                    rel: "members",
                    member: m.into(),
                });
            }
        }
    }
    if !users.is_empty()
        || !aus.is_empty()
        || selected_rel
            .iter()
            .any(|(k, _)| k == "administrativeUnitMember")
    {
        for e in snapshot_entries("administrativeUnitMember") {
            let Some((a, m)) = e.id.split_once('/') else {
                continue;
            };
            if aus.contains(a)
                || principals.contains(m)
                || want_rel("administrativeUnitMember", &e.id)
            {
                if snapshot_item("administrativeUnit", a).is_none() {
                    continue;
                }
                edges.push(Edge {
                    ckind: "administrativeUnit",
                    container: a.into(),
                    rel: "members",
                    member: m.into(),
                });
            }
        }
    }
    // Owners of containers restored whole.
    for (k, set) in [
        ("group", &groups),
        ("application", &apps),
        ("servicePrincipal", &sps),
    ] {
        for c in set {
            if let Some(s) = snap(k, c) {
                if s.body.get("@cairn.reference").is_some() {
                    continue;
                }
                for o in ref_ids(&s.body, "owners") {
                    edges.push(Edge {
                        ckind: match k {
                            "group" => "group",
                            "application" => "application",
                            _ => "servicePrincipal",
                        },
                        container: c.clone(),
                        rel: "owners",
                        member: o,
                    });
                }
            }
        }
    }

    // Ownerships a restored user or service principal held of containers not restored whole.
    let owners_in_scope: HashSet<&String> = users.iter().chain(&sps).collect();
    if !owners_in_scope.is_empty() {
        for (k, set) in [
            ("group", &groups),
            ("application", &apps),
            ("servicePrincipal", &sps),
        ] {
            for e in snapshot_entries(k) {
                if set.contains(&e.id) {
                    continue;
                }
                let Some(s) = snap(k, &e.id) else { continue };
                for o in ref_ids(&s.body, "owners") {
                    if owners_in_scope.contains(&o) {
                        edges.push(Edge {
                            ckind: match k {
                                "group" => "group",
                                "application" => "application",
                                _ => "servicePrincipal",
                            },
                            container: e.id.clone(),
                            rel: "owners",
                            member: o,
                        });
                    }
                }
            }
        }
    }

    // Relationship objects: each kept when it was selected itself or when one of its ends is
    // restored (an end: a field that names an object after a prefix, and the restored set).
    let need_objects = !principals.is_empty() || !aus.is_empty() || !rel_items.is_empty();
    type End<'a> = (&'static str, &'static str, &'a HashSet<String>);
    let related = |kind: &str, ends: &[End]| -> Vec<(String, Value)> {
        if !need_objects {
            return Vec::new();
        }
        all_items(kind)
            .into_iter()
            .filter(|(id, b)| {
                want_rel(kind, id)
                    || ends.iter().any(|(field, prefix, set)| {
                        str_of(b, field)
                            .and_then(|x| x.strip_prefix(prefix))
                            .is_some_and(|x| set.contains(x))
                    })
            })
            .collect()
    };
    let role_assignments = related(
        "unifiedRoleAssignment",
        &[
            ("principalId", "", &principals),
            ("directoryScopeId", "/administrativeUnits/", &aus),
        ],
    );
    let eligibilities = related(
        pim::KIND,
        &[
            ("principalId", "", &principals),
            ("directoryScopeId", "/administrativeUnits/", &aus),
        ],
    );
    let app_roles = related(
        "appRoleAssignment",
        &[("principalId", "", &principals), ("resourceId", "", &sps)],
    );
    let grants = related(
        "oauth2PermissionGrant",
        &[
            ("principalId", "", &users),
            ("clientId", "", &sps),
            ("resourceId", "", &sps),
        ],
    );
    // Managers: `userManager` link items `{userId}/{managerId}`.
    let managers: Vec<(String, String)> =
        if users.is_empty() && !selected_rel.iter().any(|(k, _)| k == "userManager") {
            Vec::new()
        } else {
            snapshot_entries("userManager")
                .into_iter()
                .filter_map(|e| {
                    let (u, m) = e.id.split_once('/')?;
                    // A restored user's manager, and a surviving user managed by a restored one.
                    (users.contains(u) || users.contains(m) || want_rel("userManager", &e.id))
                        .then(|| (u.to_string(), m.to_string()))
                })
                .collect()
        };

    // Live state of every endpoint not looked at yet.
    let mut endpoints: BTreeSet<String> = BTreeSet::new();
    for e in &edges {
        endpoints.insert(e.container.clone());
        endpoints.insert(e.member.clone());
    }
    for (_, b) in role_assignments.iter().chain(&app_roles).chain(&grants) {
        for k in ["principalId", "resourceId", "clientId"] {
            if let Some(x) = str_of(b, k) {
                endpoints.insert(x.to_string());
            }
        }
    }
    for (_, b) in role_assignments.iter().chain(&eligibilities) {
        if let Some(x) = str_of(b, "principalId") {
            endpoints.insert(x.to_string());
        }
        if let Some(a) =
            str_of(b, "directoryScopeId").and_then(|s| s.strip_prefix("/administrativeUnits/"))
        {
            endpoints.insert(a.to_string());
        }
    }
    for (u, m) in &managers {
        endpoints.insert(u.clone());
        endpoints.insert(m.clone());
    }
    // Unit-scoped role members: of units restored whole, and those naming a restored principal.
    // In another tenant the role ids differ; the unit-scoped role assignments carry the same.
    let mut scoped: Vec<(String, Value)> = Vec::new();
    if !p.opts.cross_tenant && (!aus.is_empty() || !principals.is_empty()) {
        for e in snapshot_entries("administrativeUnit") {
            let Some(s) = snap("administrativeUnit", &e.id) else {
                continue;
            };
            for m in s
                .body
                .get("scopedRoleMembers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let pid = m.pointer("/roleMemberInfo/id").and_then(Value::as_str);
                if aus.contains(&e.id) || pid.is_some_and(|x| principals.contains(x)) {
                    endpoints.insert(e.id.clone());
                    endpoints.extend(pid.map(str::to_string));
                    scoped.push((e.id.clone(), m.clone()));
                }
            }
        }
    }
    resolve_endpoints(p, &endpoints)?;

    plan_edges(p, &edges, &groups, &aus)?;
    plan_managers(p, &managers)?;
    plan_role_assignments(p, &role_assignments)?;
    plan_scoped_role_members(p, &scoped, &role_assignments)?;
    plan_eligibilities(p, &eligibilities)?;
    plan_app_role_assignments(p, &app_roles)?;
    plan_grants(p, &grants)?;
    plan_fics(p, &apps)?;
    plan_extension_properties(p, &apps)?;
    Ok(())
}

fn live_target(p: &Planner, old: &str) -> Option<String> {
    match p.status.get(old).map(|(_, s)| s) {
        Some(State::Live(t, _)) => Some(t.clone()),
        _ => None,
    }
}

fn plan_edges(
    p: &mut Planner,
    edges: &[Edge],
    groups: &HashSet<String>,
    aus: &HashSet<String>,
) -> Result<(), PluginError> {
    // Live members/owners of live containers (one $batch).
    let mut keys: Vec<(String, &'static str)> = Vec::new();
    for e in edges {
        let k = (e.container.clone(), e.rel);
        if live_target(p, &e.container).is_some() && !keys.contains(&k) {
            keys.push(k);
        }
    }
    // Whole live containers are compared for unlinks too.
    for g in groups {
        for rel in ["members", "owners"] {
            if live_target(p, g).is_some() && !keys.contains(&(g.clone(), rel)) {
                keys.push((g.clone(), rel));
            }
        }
    }
    for a in aus {
        if live_target(p, a).is_some() && !keys.contains(&(a.clone(), "members")) {
            keys.push((a.clone(), "members"));
        }
    }
    let urls: Vec<String> = keys
        .iter()
        .map(|(c, rel)| {
            let kind = p.kind_of(c).unwrap_or("group").to_string();
            let t = live_target(p, c).unwrap_or_default();
            format!(
                "/v1.0{}/{t}/{rel}?$select=id&$top=999",
                container_path(&kind)
            )
        })
        .collect();
    let found = get_collections(&urls, "Group.ReadWrite.All")?;
    let mut live: HashMap<(String, &'static str), HashSet<String>> = HashMap::new();
    for (k, f) in keys.into_iter().zip(found) {
        if let Found::List(v) = f {
            live.insert(
                k,
                v.iter()
                    .filter_map(|o| str_of(o, "id").map(str::to_string))
                    .collect(),
            );
        }
    }
    let mut wanted: HashMap<(String, &'static str), HashSet<String>> = HashMap::new();
    // Names and the dynamic flag, read once per object (containers hold many links).
    let mut cache: HashMap<(String, String), (String, bool)> = HashMap::new();
    let mut info = |kind: &str, id: &str| -> (String, bool) {
        cache
            .entry((kind.to_string(), id.to_string()))
            .or_insert_with(|| match snap(kind, id) {
                Some(s) => {
                    let dynamic = s
                        .body
                        .get("groupTypes")
                        .is_some_and(|g| g.to_string().contains("DynamicMembership"));
                    (s.name, dynamic)
                }
                None => (id.to_string(), false),
            })
            .clone()
    };
    for e in edges {
        let (cname, dynamic) = info(e.ckind, &e.container);
        let mkind = p
            .kind_of(&e.member)
            .unwrap_or("directoryObject")
            .to_string();
        let (mname, _) = info(&mkind, &e.member);
        let (item_kind, item_id, aid) = if e.rel == "members" {
            let k = if e.ckind == "group" {
                "groupMember"
            } else {
                "administrativeUnitMember"
            };
            let id = format!("{}/{}", e.container, e.member);
            (k.to_string(), id.clone(), format!("{k}/{id}/link"))
        } else {
            (
                e.ckind.to_string(),
                e.container.clone(),
                format!("{}/{}/owners/{}/link", e.ckind, e.container, e.member),
            )
        };
        if e.ckind == "group" && e.rel == "members" && dynamic {
            continue;
        }
        let what = format!(
            "{} {mname} of {} {cname}",
            if e.rel == "members" {
                "membership of"
            } else {
                "ownership by"
            },
            label(e.ckind)
        );
        if !ends_will_exist(p, &aid, &what, &[&e.container, &e.member]) {
            continue;
        }
        if let Some(t) = target_id(&e.member, &p.opts) {
            wanted
                .entry((e.container.clone(), e.rel))
                .or_default()
                .insert(t.clone());
            let present = live
                .get(&(e.container.clone(), e.rel))
                .is_some_and(|s| s.contains(&t));
            if present && !p.recreated.contains(&e.member) {
                continue;
            }
        }
        // Restoring an object from the recycle bin brings its memberships and ownerships back
        // (Graph keeps them while it is there): only links to re-created objects are needed.
        let in_bin = |id: &str| matches!(p.status.get(id), Some((_, State::Deleted(_))));
        let recreated = p.recreated.contains(&e.member) || p.recreated.contains(&e.container);
        if (in_bin(&e.container) || in_bin(&e.member)) && !recreated {
            continue;
        }
        let deps = p.deps_of(&[&e.container, &e.member]);
        p.push(
            Phase::Links,
            aid,
            ActionKind::Link,
            &item_kind,
            &item_id,
            &format!("{cname} ← {mname}"),
            format!(
                "add {} {mname} to the {} of {} {cname}",
                label(&mkind),
                e.rel,
                label(e.ckind)
            ),
            format!(
                "in the snapshot, {mname} is one of the {} of {cname}",
                e.rel
            ),
            deps,
            Op::Ref {
                container_kind: e.ckind.into(),
                container: e.container.clone(),
                rel: e.rel.into(),
                member: e.member.clone(),
            },
        );
    }
    // Unlinks: members and owners added after the snapshot to containers restored whole.
    if p.opts.only_missing {
        return Ok(());
    }
    let mut containers: Vec<(String, &'static str, &'static str)> = Vec::new();
    for g in groups {
        if let Some(s) = snap("group", g) {
            if !s
                .body
                .get("groupTypes")
                .is_some_and(|t| t.to_string().contains("DynamicMembership"))
            {
                containers.push((g.clone(), "group", "members"));
            }
        }
        containers.push((g.clone(), "group", "owners"));
    }
    for a in aus {
        containers.push((a.clone(), "administrativeUnit", "members"));
    }
    for (c, ckind, rel) in containers {
        let Some(live_set) = live.get(&(c.clone(), rel)) else {
            continue;
        };
        let empty = HashSet::new();
        let want = wanted.get(&(c.clone(), rel)).unwrap_or(&empty);
        let cname = snap(ckind, &c).map(|s| s.name).unwrap_or_else(|| c.clone());
        let mut extra: Vec<&String> = live_set.iter().filter(|m| !want.contains(*m)).collect();
        extra.sort();
        for m in extra {
            let item_id = format!("{c}/{m}");
            p.push(
                Phase::Links,
                format!("{ckind}/{c}/{rel}/{m}/unlink"),
                ActionKind::Unlink,
                if rel == "members" && ckind == "group" {
                    "groupMember"
                } else if rel == "members" {
                    "administrativeUnitMember"
                } else {
                    ckind
                },
                &item_id,
                &cname,
                format!("remove {m} from the {rel} of {} {cname}", label(ckind)),
                format!("{m} was added to {cname} after the snapshot"),
                vec![],
                Op::Ref {
                    container_kind: ckind.into(),
                    container: c.clone(),
                    rel: rel.into(),
                    member: m.clone(),
                },
            );
        }
    }
    Ok(())
}

fn plan_managers(p: &mut Planner, managers: &[(String, String)]) -> Result<(), PluginError> {
    let live_users: Vec<(&String, &String, String)> = managers
        .iter()
        .filter_map(|(u, m)| live_target(p, u).map(|t| (u, m, t)))
        .collect();
    let mut batch = Batch::new();
    for (_, _, t) in &live_users {
        batch.push(graph::request(
            "GET",
            &format!("/v1.0/users/{t}/manager?$select=id"),
        ));
    }
    let mut current: HashMap<String, Option<String>> = HashMap::new();
    for ((u, _, _), r) in live_users.iter().zip(batch.send()?) {
        let id = if r.status == 404 {
            None
        } else {
            let v = graph::json_or_error("GET manager", &r)?;
            str_of(&v, "id").map(str::to_string)
        };
        current.insert((*u).clone(), id);
    }
    for (u, m) in managers {
        let name = snap("user", u).map(|s| s.name).unwrap_or_else(|| u.clone());
        let aid = format!("user/{u}/manager/link");
        if !p.will_exist(u) {
            continue;
        }
        if !p.will_exist(m) {
            missing_endpoint(p, &aid, &format!("the manager of {name}"), m);
            continue;
        }
        // A live user keeps its link to a manager in the recycle bin; the undelete brings it back.
        let manager_in_bin = matches!(p.status.get(m), Some((_, State::Deleted(_))));
        if manager_in_bin && live_target(p, u).is_some() && !p.recreated.contains(m) {
            continue;
        }
        let t = target_id(m, &p.opts);
        if t.is_some() && current.get(u).cloned().flatten() == t && !p.recreated.contains(m) {
            continue;
        }
        let mname = snap("user", m).map(|s| s.name).unwrap_or_else(|| m.clone());
        p.push(
            Phase::Links,
            aid,
            ActionKind::Link,
            "user",
            u,
            &name,
            format!("set the manager of {name} to {mname}"),
            "the manager differs from the snapshot".into(),
            p.deps_of(&[u, m]),
            Op::Manager {
                user: u.clone(),
                manager: m.clone(),
            },
        );
    }
    Ok(())
}

/// A role granted to a principal at a scope (the tenant or an administrative unit) — what a role
/// assignment and a PIM eligibility both are, as the restore plans them.
struct RoleGrant<'a> {
    /// The role definition's snapshot id.
    role: &'a str,
    /// Whether this plan re-creates the (custom) role definition, so nothing live holds it yet.
    role_recreated: bool,
    principal: &'a str,
    unit: Option<&'a str>,
}

impl RoleGrant<'_> {
    /// The dependencies of writing the grant back, or `None` when there is nothing to do: an end
    /// will not exist (a manual step is recorded for `action_id`), or the grant is in `live`
    /// (matched on role, principal and scope through remap) and none of its ends is re-created.
    fn needed(
        &self,
        p: &mut Planner,
        live: &[Value],
        action_id: &str,
        what: &str,
    ) -> Option<Vec<String>> {
        // The principal, then the administrative unit of a unit-scoped grant.
        let ends: Vec<&str> = std::iter::once(self.principal).chain(self.unit).collect();
        if !ends_will_exist(p, action_id, what, &ends) {
            return None;
        }
        let role = cairn_sdk::current_id(self.role);
        let principal = target_id(self.principal, &p.opts);
        let scope = match self.unit {
            Some(a) => target_id(a, &p.opts).map(|t| format!("/administrativeUnits/{t}")),
            None => Some("/".to_string()),
        };
        let present = !self.role_recreated
            && live.iter().any(|l| {
                str_of(l, "roleDefinitionId") == Some(role.as_str())
                    && principal
                        .as_deref()
                        .is_some_and(|t| str_of(l, "principalId") == Some(t))
                    && scope
                        .as_deref()
                        .is_some_and(|s| str_of(l, "directoryScopeId") == Some(s))
            });
        let unit_recreated = self.unit.is_some_and(|a| p.recreated.contains(a));
        if present && !p.recreated.contains(self.principal) && !unit_recreated {
            return None;
        }
        let mut deps = p.deps_of(&[self.principal, self.role]);
        if let Some(a) = self.unit {
            deps.extend(p.deps_of(&[a]));
        }
        Some(deps)
    }
}

fn plan_role_assignments(p: &mut Planner, items: &[(String, Value)]) -> Result<(), PluginError> {
    if items.is_empty() {
        return Ok(());
    }
    let live = graph::get_all("/v1.0/roleManagement/directory/roleAssignments?$top=999")?;
    let defs: HashSet<String> =
        graph::get_all("/v1.0/roleManagement/directory/roleDefinitions?$select=id")?
            .iter()
            .filter_map(|d| str_of(d, "id").map(str::to_string))
            .collect();
    for (id, b) in items {
        let rd = str_of(b, "roleDefinitionId").unwrap_or_default();
        let pid = str_of(b, "principalId").unwrap_or_default();
        let scope = str_of(b, "directoryScopeId").unwrap_or("/");
        let au = scope.strip_prefix("/administrativeUnits/");
        let aid = format!("unifiedRoleAssignment/{id}/link");
        let pname = p
            .kind_of(pid)
            .and_then(|k| snap(k, pid))
            .map(|s| s.name)
            .unwrap_or_else(|| pid.to_string());
        let what = format!("role assignment {rd} of {pname} at scope {scope}");
        // A custom role definition this plan re-creates is assigned at its new id.
        let rd_new = p.creator.contains_key(rd);
        let trd = cairn_sdk::current_id(rd);
        if !defs.contains(&trd) && !rd_new {
            p.manual(
                format!("{aid}/manual"),
                "unifiedRoleAssignment",
                id,
                &pname,
                format!(
                    "{what} cannot be restored: the role definition {rd} does not exist in the \
                     tenant (a custom role of the source tenant); create the role, then assign \
                     it to {pname} by hand"
                ),
            );
            continue;
        }
        let grant = RoleGrant {
            role: rd,
            role_recreated: rd_new,
            principal: pid,
            unit: au,
        };
        let Some(deps) = grant.needed(p, &live, &aid, &what) else {
            continue;
        };
        p.push(
            Phase::Links,
            aid,
            ActionKind::Link,
            "unifiedRoleAssignment",
            id,
            &pname,
            format!("assign role {rd} to {pname} at scope {scope}"),
            "the role assignment is in the snapshot, not in the tenant".into(),
            deps,
            Op::RoleAssignment { id: id.clone() },
        );
    }
    Ok(())
}

/// PIM role eligibilities: each backed-up one the tenant lacks (matched on principal, role
/// definition and directory scope, through `remap`) is written back with an `adminAssign`
/// request after its principal and unit exist; one that has expired since is a note, not a
/// request; a tenant without PIM gets one manual step for them all. Eligibilities added since
/// the snapshot are left alone, as role assignments are.
fn plan_eligibilities(p: &mut Planner, items: &[(String, Value)]) -> Result<(), PluginError> {
    if items.is_empty() {
        return Ok(());
    }
    let name_of = |p: &Planner, pid: &str| {
        p.kind_of(pid)
            .and_then(|k| snap(k, pid))
            .map(|s| s.name)
            .unwrap_or_else(|| pid.to_string())
    };
    let live = match graph::get_all(&format!("{}?$top=999", pim::SCHEDULES)) {
        Ok(l) => l,
        Err(e) if pim::unlicensed(&e) => {
            let mut who: Vec<String> = items
                .iter()
                .map(|(_, b)| name_of(p, str_of(b, "principalId").unwrap_or_default()))
                .collect();
            who.sort();
            who.dedup();
            p.manual(
                format!("{}/*/manual", pim::KIND),
                pim::KIND,
                "*",
                "PIM role eligibilities",
                format!(
                    "{} PIM role eligibilit{} ({}) cannot be restored: the tenant has no \
                     Microsoft Entra ID P2 or Governance licence ({e}); license it and plan \
                     again, or assign the roles by hand",
                    items.len(),
                    if items.len() == 1 { "y" } else { "ies" },
                    who.join(", ")
                ),
            );
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let defs: HashSet<String> =
        graph::get_all("/v1.0/roleManagement/directory/roleDefinitions?$select=id")?
            .iter()
            .filter_map(|d| str_of(d, "id").map(str::to_string))
            .collect();
    let now = pim::now_secs();
    for (id, b) in items {
        let rd = str_of(b, "roleDefinitionId").unwrap_or_default();
        let pid = str_of(b, "principalId").unwrap_or_default();
        let scope = str_of(b, "directoryScopeId").unwrap_or("/");
        let au = scope.strip_prefix("/administrativeUnits/");
        let aid = format!("{}/{id}/link", pim::KIND);
        let pname = name_of(p, pid);
        let role = snap("unifiedRoleDefinition", rd)
            .map(|s| s.name)
            .unwrap_or_else(|| rd.to_string());
        let what = format!("the PIM eligibility of {pname} for {role} at scope {scope}");
        if let Some(end) = pim::expired_at(b, now) {
            p.manual(
                format!("{}/{id}/expired", pim::KIND),
                pim::KIND,
                id,
                &pname,
                format!(
                    "{what} is not re-created: it expired at {end}; make {pname} eligible \
                     again in PIM if that is still wanted"
                ),
            );
            continue;
        }
        // A custom role definition this plan re-creates is assigned at its new id.
        let rd_new = p.creator.contains_key(rd);
        let trd = cairn_sdk::current_id(rd);
        if !defs.contains(&trd) && !rd_new {
            p.manual(
                format!("{aid}/manual"),
                pim::KIND,
                id,
                &pname,
                format!(
                    "{what} cannot be restored: the role definition {rd} does not exist in the \
                     tenant (a custom role of the source tenant); create the role, then make \
                     {pname} eligible for it by hand"
                ),
            );
            continue;
        }
        let grant = RoleGrant {
            role: rd,
            role_recreated: rd_new,
            principal: pid,
            unit: au,
        };
        let Some(deps) = grant.needed(p, &live, &aid, &what) else {
            continue;
        };
        p.push(
            Phase::Links,
            aid,
            ActionKind::Link,
            pim::KIND,
            id,
            &pname,
            format!(
                "make {pname} eligible for {role} at scope {scope} ({}; PIM adminAssign)",
                pim::period(b)
            ),
            "the PIM eligibility is in the snapshot, not in the tenant".into(),
            deps,
            Op::RoleEligibility { id: id.clone() },
        );
    }
    Ok(())
}

fn plan_app_role_assignments(
    p: &mut Planner,
    items: &[(String, Value)],
) -> Result<(), PluginError> {
    if items.is_empty() {
        return Ok(());
    }
    let mut resources: Vec<String> = Vec::new();
    for (_, b) in items {
        if let Some(r) = str_of(b, "resourceId") {
            if let Some(t) = live_target(p, r) {
                if !resources.contains(&t) {
                    resources.push(t);
                }
            }
        }
    }
    let urls: Vec<String> = resources
        .iter()
        .map(|r| format!("/v1.0/servicePrincipals/{r}/appRoleAssignedTo?$top=999"))
        .collect();
    let mut live: Vec<Value> = Vec::new();
    for f in get_collections(&urls, "AppRoleAssignment.ReadWrite.All")? {
        if let Found::List(v) = f {
            live.extend(v);
        }
    }
    for (id, b) in items {
        let pid = str_of(b, "principalId").unwrap_or_default();
        let rid = str_of(b, "resourceId").unwrap_or_default();
        let role = str_of(b, "appRoleId").unwrap_or_default();
        let pname = str_of(b, "principalDisplayName").unwrap_or(pid).to_string();
        let rname = str_of(b, "resourceDisplayName").unwrap_or(rid).to_string();
        let aid = format!("appRoleAssignment/{id}/link");
        let what = format!("app role assignment of {pname} to {rname}");
        if !ends_will_exist(p, &aid, &what, &[pid, rid]) {
            continue;
        }
        let tp = target_id(pid, &p.opts);
        let tr = target_id(rid, &p.opts);
        let present = live.iter().any(|l| {
            tp.as_deref()
                .is_some_and(|t| str_of(l, "principalId") == Some(t))
                && tr
                    .as_deref()
                    .is_some_and(|t| str_of(l, "resourceId") == Some(t))
                && str_of(l, "appRoleId") == Some(role)
        });
        if present && !p.recreated.contains(pid) && !p.recreated.contains(rid) {
            continue;
        }
        p.push(
            Phase::Links,
            aid,
            ActionKind::Link,
            "appRoleAssignment",
            id,
            &format!("{pname} → {rname}"),
            format!("assign app role {role} of {rname} to {pname}"),
            "the app role assignment is in the snapshot, not in the tenant".into(),
            p.deps_of(&[pid, rid]),
            Op::AppRoleAssignment { id: id.clone() },
        );
    }
    Ok(())
}

/// The live grant matching a snapshot grant (same client, resource, consent type, principal).
pub fn matching_grant<'a>(
    live: &'a [Value],
    client: &str,
    resource: &str,
    consent: &str,
    principal: Option<&str>,
) -> Option<&'a Value> {
    live.iter().find(|l| {
        str_of(l, "clientId") == Some(client)
            && str_of(l, "resourceId") == Some(resource)
            && str_of(l, "consentType") == Some(consent)
            && str_of(l, "principalId") == principal
    })
}

/// Scopes as a set (order and spacing do not matter to Graph).
pub fn scope_set(s: Option<&str>) -> BTreeSet<String> {
    s.unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn plan_grants(p: &mut Planner, items: &[(String, Value)]) -> Result<(), PluginError> {
    if items.is_empty() {
        return Ok(());
    }
    let live = graph::get_all("/v1.0/oauth2PermissionGrants")?;
    for (id, b) in items {
        let cid = str_of(b, "clientId").unwrap_or_default();
        let rid = str_of(b, "resourceId").unwrap_or_default();
        let pid = str_of(b, "principalId");
        let consent = str_of(b, "consentType").unwrap_or("AllPrincipals");
        let cname = snap("servicePrincipal", cid)
            .map(|s| s.name)
            .unwrap_or_else(|| cid.to_string());
        let rname = snap("servicePrincipal", rid)
            .map(|s| s.name)
            .unwrap_or_else(|| rid.to_string());
        let aid = format!("oauth2PermissionGrant/{id}/link");
        let what = format!("delegated grant of {rname} to {cname}");
        let mut ends = vec![cid, rid];
        ends.extend(pid);
        if let Some(missing) = ends.iter().find(|e| !p.will_exist(e)) {
            missing_endpoint(p, &aid, &what, missing);
            continue;
        }
        let t = |x: &str| target_id(x, &p.opts);
        let found = match (t(cid), t(rid)) {
            (Some(c), Some(r)) => {
                let tp = pid.and_then(t);
                if pid.is_some() && tp.is_none() {
                    None
                } else {
                    matching_grant(&live, &c, &r, consent, tp.as_deref())
                }
            }
            _ => None,
        };
        let recreated = ends.iter().any(|e| p.recreated.contains(*e));
        let (kind, verb_text) = match found {
            Some(l) if !recreated => {
                if scope_set(str_of(l, "scope")) == scope_set(str_of(b, "scope")) {
                    continue;
                }
                (ActionKind::Update, "set the scopes of")
            }
            _ => (ActionKind::Link, "grant"),
        };
        p.push(
            Phase::Links,
            format!("oauth2PermissionGrant/{id}/{}", verb(kind)),
            kind,
            "oauth2PermissionGrant",
            id,
            &format!("{cname} → {rname}"),
            format!(
                "{verb_text} delegated permissions `{}` of {rname} to {cname} ({consent})",
                str_of(b, "scope").unwrap_or("").trim()
            ),
            "the delegated grant differs from the snapshot".into(),
            p.deps_of(&ends),
            Op::Grant { id: id.clone() },
        );
    }
    Ok(())
}

fn plan_scoped_role_members(
    p: &mut Planner,
    scoped: &[(String, Value)],
    assignments: &[(String, Value)],
) -> Result<(), PluginError> {
    if scoped.is_empty() {
        return Ok(());
    }
    let mut units: Vec<(String, String)> = Vec::new();
    for (au, _) in scoped {
        if let Some(t) = live_target(p, au) {
            if !units.iter().any(|(a, _)| a == au) {
                units.push((au.clone(), t));
            }
        }
    }
    let urls: Vec<String> = units
        .iter()
        .map(|(_, t)| format!("/v1.0/directory/administrativeUnits/{t}/scopedRoleMembers"))
        .collect();
    let mut live: HashMap<String, Vec<Value>> = HashMap::new();
    for ((au, _), f) in units.iter().zip(get_collections(
        &urls,
        "RoleManagement.ReadWrite.Directory",
    )?) {
        if let Found::List(v) = f {
            live.insert(au.clone(), v);
        }
    }
    for (au, m) in scoped {
        let (Some(sid), Some(pid)) = (
            str_of(m, "id"),
            m.pointer("/roleMemberInfo/id").and_then(Value::as_str),
        ) else {
            continue;
        };
        let role = str_of(m, "roleId").unwrap_or_default();
        let aname = snap("administrativeUnit", au)
            .map(|s| s.name)
            .unwrap_or_else(|| au.clone());
        let pname = m
            .pointer("/roleMemberInfo/displayName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| pid.to_string());
        let aid = format!("administrativeUnit/{au}/scopedRoleMembers/{sid}/link");
        let what =
            format!("scoped role member {pname} (role {role}) of administrative unit {aname}");
        if !ends_will_exist(p, &aid, &what, &[au, pid]) {
            continue;
        }
        let tp = target_id(pid, &p.opts);
        let present = live.get(au).is_some_and(|l| {
            l.iter().any(|x| {
                str_of(x, "roleId") == Some(role)
                    && tp.as_deref().is_some_and(|t| {
                        x.pointer("/roleMemberInfo/id").and_then(Value::as_str) == Some(t)
                    })
            })
        });
        if present && !p.recreated.contains(pid) && !p.recreated.contains(au) {
            continue;
        }
        let mut deps = p.deps_of(&[au, pid]);
        // Graph shows a unit-scoped role assignment as a scoped role member too: that first.
        let scope = format!("/administrativeUnits/{au}");
        for (rid, b) in assignments {
            let link = format!("unifiedRoleAssignment/{rid}/link");
            if str_of(b, "principalId") == Some(pid)
                && str_of(b, "directoryScopeId") == Some(scope.as_str())
                && p.seen.contains(&link)
            {
                deps.push(link);
            }
        }
        p.push(
            Phase::Links,
            aid,
            ActionKind::Link,
            "administrativeUnit",
            au,
            &format!("{aname} ← {pname}"),
            format!(
                "add {pname} as scoped role member (role {role}) of administrative unit {aname}"
            ),
            "the unit-scoped role member is in the snapshot, not in the tenant".into(),
            deps,
            Op::ScopedRoleMember {
                au: au.clone(),
                id: sid.to_string(),
            },
        );
    }
    Ok(())
}

/// The short name of a directory extension property: `extension_<appId>_name` → `name`.
pub fn ext_short(name: &str) -> &str {
    name.strip_prefix("extension_")
        .and_then(|r| r.split_once('_'))
        .map(|(_, n)| n)
        .unwrap_or(name)
}

/// The applications among `apps` whose snapshot holds a non-empty `list` (a collection under
/// `applications/{id}/`), in id order, and the live `list` of each one that is live, by its index
/// in the first (read in `$batch`).
type AppsWithList = (Vec<(String, Snap)>, HashMap<usize, Vec<Value>>);

fn apps_with_list(
    p: &Planner,
    apps: &HashSet<String>,
    list: &str,
) -> Result<AppsWithList, PluginError> {
    let mut with: Vec<(String, Snap)> = apps
        .iter()
        .filter_map(|a| snap("application", a).map(|s| (a.clone(), s)))
        .filter(|(_, s)| {
            s.body
                .get(list)
                .and_then(Value::as_array)
                .is_some_and(|l| !l.is_empty())
        })
        .collect();
    with.sort_by(|a, b| a.0.cmp(&b.0));
    let live_apps: Vec<(usize, String)> = with
        .iter()
        .enumerate()
        .filter_map(|(i, (a, _))| live_target(p, a).map(|t| (i, t)))
        .collect();
    let mut live = HashMap::new();
    let urls: Vec<String> = live_apps
        .iter()
        .map(|(_, t)| format!("/v1.0/applications/{t}/{list}"))
        .collect();
    for ((i, _), f) in live_apps
        .iter()
        .zip(get_collections(&urls, "Application.ReadWrite.All")?)
    {
        if let Found::List(v) = f {
            live.insert(*i, v);
        }
    }
    Ok((with, live))
}

/// Directory extension properties of applications restored whole, compared by short name (the
/// full name carries the appId, which a re-created application does not keep).
fn plan_extension_properties(p: &mut Planner, apps: &HashSet<String>) -> Result<(), PluginError> {
    let (with, live) = apps_with_list(p, apps, "extensionProperties")?;
    for (i, (a, s)) in with.iter().enumerate() {
        let mut added = Vec::new();
        for x in s.body["extensionProperties"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let Some(full) = str_of(x, "name") else {
                continue;
            };
            let short = ext_short(full);
            let present = live.get(&i).is_some_and(|l| {
                l.iter()
                    .any(|y| str_of(y, "name").map(ext_short) == Some(short))
            });
            if present && !p.recreated.contains(a) {
                continue;
            }
            let targets = x
                .get("targetObjects")
                .and_then(Value::as_array)
                .map(|t| {
                    t.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            p.push(
                Phase::Links,
                format!("application/{a}/extensionProperties/{short}/link"),
                ActionKind::Link,
                "application",
                a,
                &s.name,
                format!(
                    "add directory extension `{short}` ({}{}, for {targets}) to application {}",
                    str_of(x, "dataType").unwrap_or("String"),
                    if x.get("isMultiValued") == Some(&Value::Bool(true)) {
                        ", multi-valued"
                    } else {
                        ""
                    },
                    s.name
                ),
                "the extension property is in the snapshot, not in the tenant".into(),
                p.deps_of(&[a]),
                Op::ExtensionProperty {
                    app: a.clone(),
                    name: short.to_string(),
                },
            );
            added.push(short.to_string());
        }
        if p.recreated.contains(a) && !added.is_empty() {
            p.manual(
                format!("application/{a}/manual/extensionProperties"),
                "application",
                a,
                &s.name,
                format!(
                    "application {} was re-created with a new appId, so its directory extensions \
                     ({}) are named extension_<new appId>_<name> now: values users, groups or \
                     devices held under the old names are not restored — set them again, and \
                     update what reads them by the old names",
                    s.name,
                    added.join(", ")
                ),
            );
        }
    }
    Ok(())
}

fn plan_fics(p: &mut Planner, apps: &HashSet<String>) -> Result<(), PluginError> {
    let (with, live) = apps_with_list(p, apps, "federatedIdentityCredentials")?;
    for (i, (a, s)) in with.iter().enumerate() {
        for f in s.body["federatedIdentityCredentials"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let Some(fname) = str_of(f, "name") else {
                continue;
            };
            let existing = live
                .get(&i)
                .and_then(|l| l.iter().find(|x| str_of(x, "name") == Some(fname)));
            let kind = match existing {
                Some(x)
                    if ["issuer", "subject", "audiences", "description"]
                        .iter()
                        .all(|k| same(x.get(*k), f.get(*k))) =>
                {
                    continue
                }
                Some(_) => ActionKind::Update,
                None => ActionKind::Link,
            };
            p.push(
                Phase::Links,
                format!(
                    "application/{a}/federatedIdentityCredentials/{fname}/{}",
                    verb(kind)
                ),
                kind,
                "application",
                a,
                &s.name,
                format!(
                    "{} federated credential `{fname}` of application {} (issuer {}, subject {})",
                    if kind == ActionKind::Link {
                        "add"
                    } else {
                        "reset"
                    },
                    s.name,
                    str_of(f, "issuer").unwrap_or(""),
                    str_of(f, "subject").unwrap_or("")
                ),
                "the federated credential differs from the snapshot".into(),
                p.deps_of(&[a]),
                Op::Fic {
                    app: a.clone(),
                    name: fname.to_string(),
                },
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ca_state_is_report_only_unless_as_backed_up() {
        let report = Options::default();
        let as_is = Options::parse(r#"{"caState":"as-backed-up"}"#).unwrap();
        let snap = json!({"state": "enabled"});
        let weakened = json!({"state": "disabled"});
        assert_eq!(
            ca_target_state(&report, &snap, &weakened).as_deref(),
            Some("enabledForReportingButNotEnforced")
        );
        assert_eq!(
            ca_target_state(&as_is, &snap, &weakened).as_deref(),
            Some("enabled")
        );
        // Already report-only after a restore: nothing more to do (verify is clean).
        let restored = json!({"state": "enabledForReportingButNotEnforced"});
        assert_eq!(ca_target_state(&report, &snap, &restored), None);
        assert_eq!(ca_target_state(&report, &snap, &snap), None);
        // A disabled policy is restored disabled.
        let off = json!({"state": "disabled"});
        assert_eq!(
            ca_target_state(&report, &off, &Value::Null).as_deref(),
            Some("disabled")
        );
    }

    #[test]
    fn ca_references_are_rewritten_or_dropped() {
        let u1 = "11111111-1111-1111-1111-111111111111";
        let u2 = "22222222-2222-2222-2222-222222222222";
        let nl = "33333333-3333-3333-3333-333333333333";
        let body = json!({
            "conditions": {
                "users": {"includeUsers": ["All"], "excludeUsers": [u1, u2]},
                "locations": {"includeLocations": [nl, "AllTrusted"]}
            }
        });
        assert_eq!(ca_refs(&body).len(), 3);
        let mut want = body.as_object().unwrap().clone();
        let keep = |k: &str, id: &str| -> Option<String> {
            match (k, id) {
                ("user", x) if x == u1 => Some("new-u1".into()),
                ("namedLocation", _) => Some(id.to_string()),
                _ => None,
            }
        };
        super::super::ca_desired(&mut want, &keep);
        assert_eq!(
            Value::Object(want),
            json!({"conditions": {
                "users": {"includeUsers": ["All"], "excludeUsers": ["new-u1"]},
                "locations": {"includeLocations": [nl, "AllTrusted"]}
            }})
        );
        assert!(is_guid(u1) && !is_guid("All") && !is_guid("GuestsOrExternalUsers"));
    }

    #[test]
    fn surviving_policies_repoint_only_references_to_restored_objects() {
        let (breakglass, kept, gone, grp, nl, role) = (
            "11111111-1111-1111-1111-111111111111",
            "22222222-2222-2222-2222-222222222222",
            "33333333-3333-3333-3333-333333333333",
            "44444444-4444-4444-4444-444444444444",
            "55555555-5555-5555-5555-555555555555",
            "62e90394-69f5-4237-9190-012177145e10",
        );
        let snap = json!({"conditions": {
            "users": {"includeRoles": [role], "excludeUsers": [breakglass, kept, gone],
                      "includeGroups": [grp]},
            "locations": {"includeLocations": [nl, "AllTrusted"]}
        }});
        // Graph kept the stale ids; the group came back from the recycle bin already.
        let live = snap.clone();
        let end = |k: &str, id: &str| -> RefEnd {
            match (k, id) {
                (_, x) if x == breakglass => RefEnd::Recreated(None),
                (_, x) if x == grp => RefEnd::Undeleted,
                (_, x) if x == gone => RefEnd::Gone,
                _ => RefEnd::Unchanged,
            }
        };
        let fixes = ca_repoints(&snap, &live, &end);
        let got: Vec<(&str, &str, bool)> = fixes
            .iter()
            .map(|f| (f.list.as_str(), f.old.as_str(), f.drop))
            .collect();
        assert_eq!(
            got,
            [
                ("/conditions/users/excludeUsers", breakglass, false),
                ("/conditions/users/excludeUsers", gone, true),
            ]
        );
        // A policy that names only live and gone objects is not touched at all.
        let quiet = |k: &str, id: &str| {
            if id == gone {
                RefEnd::Gone
            } else {
                end(k, kept)
            }
        };
        assert!(ca_repoints(&snap, &live, &quiet).is_empty());
        // Once the live policy names the new id, nothing is left to do (re-plan, verify).
        let mut fixed = live.clone();
        fixed["conditions"]["users"]["excludeUsers"] = json!(["new-bg", kept]);
        let after = |k: &str, id: &str| match id {
            x if x == breakglass => RefEnd::Recreated(Some("new-bg".into())),
            _ => end(k, id),
        };
        assert!(ca_repoints(&snap, &fixed, &after).is_empty());
        // A group the live policy lost while in the recycle bin is added back.
        let mut lost = fixed.clone();
        lost["conditions"]["users"]["includeGroups"] = json!([]);
        let fixes = ca_repoints(&snap, &lost, &after);
        assert_eq!(fixes.len(), 1);
        assert_eq!((fixes[0].old.as_str(), fixes[0].drop), (grp, false));
        assert_eq!(list_label(&fixes[0].list), "include groups");
    }

    #[test]
    fn extension_properties_compare_by_short_name() {
        assert_eq!(
            ext_short("extension_b7d8e5fa2c8b4a1e9a3f0c6d5e4b3a21_costCenter"),
            "costCenter"
        );
        assert_eq!(
            ext_short("extension_abc_with_underscores"),
            "with_underscores"
        );
        assert_eq!(ext_short("costCenter"), "costCenter");
    }

    #[test]
    fn desired_attributes_follow_the_table_and_domain_map() {
        let opts = Options::parse(r#"{"domainMap":{"contoso.com":"fabrikam.com"}}"#).unwrap();
        let user = json!({"id": "u", "displayName": "A", "userPrincipalName": "a@contoso.com",
            "createdDateTime": "2020-01-01T00:00:00Z", "mail": "a@contoso.com", "jobTitle": "X"});
        let d = desired("user", &user, &opts);
        assert_eq!(
            Value::Object(d),
            json!({"displayName": "A", "userPrincipalName": "a@fabrikam.com", "jobTitle": "X"})
        );
    }
}
