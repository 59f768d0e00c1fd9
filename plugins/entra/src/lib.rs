//! # `entra`: Cairn's Microsoft Entra ID collector
//!
//! Backs up a tenant's identity control plane through Microsoft Graph v1.0, one task per object
//! type (see [`types::TYPES`]), one Graph page per step.
//!
//! ## Items
//! Every directory object or policy is one item whose kind is Graph's type name (`user`,
//! `group`, `administrativeUnit`, `unifiedRoleDefinition`, `unifiedRoleAssignment`,
//! `unifiedRoleEligibilitySchedule`, `application`, `servicePrincipal`, `appRoleAssignment`,
//! `oauth2PermissionGrant`, `conditionalAccessPolicy`, `namedLocation`,
//! `authenticationStrengthPolicy`, `authenticationContextClassReference`,
//! `authenticationMethodsPolicy`, `authenticationMethodConfiguration`, `authorizationPolicy`,
//! `identitySecurityDefaultsEnforcementPolicy`, `domain`, `organization`), whose id is the
//! object's Graph id and whose body is the object's JSON exactly as Graph returned it (with the
//! `$select` of [`types`]), plus the embedded relationships and `@cairn.*` annotations below.
//!
//! ## Relationships
//! Two rules, chosen by how Graph lets us track the relationship:
//! 1. **Memberships are one item per link.** Group and administrative-unit members are
//!    unbounded and Graph tracks them with `members@delta`, which reports single additions and
//!    removals. Each link is an item of kind `groupMember` / `administrativeUnitMember` with id
//!    `{containerId}/{memberId}` and body
//!    `{"groupId": "…", "member": {"@odata.type": "#microsoft.graph.user", "id": "…"}}`
//!    (`administrativeUnitId` for units). A removal in `members@delta` is a tombstone of that
//!    link. The user's manager is a link too (`userManager`, id `{userId}/{managerId}`, body
//!    `{"userId": "…", "manager": {…}}`, from `manager@delta` with `manager` in the users'
//!    `$select`): an unchanged manager is absent from a re-listed user's delta entry, so it
//!    cannot be a field of the user item. An object removed from the directory takes its links
//!    along: next to its own tombstone comes a **prefix tombstone** `{id}/*` of its link kind,
//!    which removes every link item under that prefix (a restored object comes back from delta
//!    with all its links).
//! 2. **Bounded per-object relationships are embedded** in the object's item, complete, under
//!    the navigation property's name and in the shape Graph's `$expand` returns them (but never
//!    truncated at 20: they are read with their own paged requests, in `$batch`):
//!    `owners` of groups, applications and service principals as references
//!    `[{"@odata.type", "id"}]`; `federatedIdentityCredentials` and `extensionProperties` of
//!    applications and `scopedRoleMembers` of administrative units as full objects. An object
//!    whose relationships change is re-listed by delta, so its item is rewritten whole.
//!
//! Relationships that are objects of their own are items of their own: role assignments
//! (`unifiedRoleAssignment`), app role assignments (`appRoleAssignment`, id
//! `{principalId}/{assignmentId}`, read from each service principal's `appRoleAssignedTo`: every
//! assignment has exactly one resource, so this lists each once — a service principal's
//! `appRoleAssignments` are the same objects seen from the principal; incremental runs are
//! described in [`assignments`]) and delegated grants (`oauth2PermissionGrant`, from the
//! delta-capable collection, which holds every service principal's `oauth2PermissionGrants`).
//!
//! ## Annotations
//! - `@cairn.secrets` (applications and service principals with `passwordCredentials`): Graph
//!   returns credential metadata only; secrets cannot be backed up and must be re-issued.
//! - `@cairn.reference` (service principals whose `appOwnerOrganizationId` is Microsoft's
//!   tenant): a first-party Microsoft service principal, present in every tenant; kept so ids
//!   can be mapped, never restored. `exclude_first_party = true` leaves them out.
//!
//! ## Incremental runs
//! Types with delta (users, groups, administrative units, applications, service principals,
//! delegated grants) end a run with the delta link as the task's state:
//! `{"deltaLink": "…", "query": "<fingerprint of the first request>"}`. The next run starts from
//! it and lists changes (`Listing::Changes`): changed objects (re-read with their embedded
//! relationships), tombstones with `soft-deleted`/`hard-deleted`, links. An expired
//! or reset token (410, `syncStateNotFound`, `resyncRequired`) or a changed query falls back to
//! a full read in the run's first step, with a note. Other types are read fully every run
//! (`Listing::Full`); unchanged objects cost nothing in the repository.
//!
//! App role assignments have no delta: see [`assignments`] for how incremental runs find their
//! changes and how stale they can get (bounded by a periodic full read).
//!
//! Cursors are small JSON: delta tasks `{"m": "full"|"changes", "u": "<nextLink>"}`, list tasks
//! `{"u": "<nextLink>"}`. Each step is one Graph page plus the `$batch` reads of that page's
//! relationships, so it is repeatable from its cursor.

use cairn_sdk::graph::{self, Page};
use cairn_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

mod assignments;
mod relations;
mod restore;
pub mod types;

use relations::{forbidden_as, get_collections, reference, strip_control, Found};
use types::{Read, TypeSpec, MICROSOFT_TENANT, PERMISSIONS, TYPES};

/// The plugin's manifest configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// Types to back up (task ids); absent = all.
    types: Option<Vec<String>>,
    /// Leave first-party Microsoft service principals out.
    exclude_first_party: bool,
    /// App role assignments: read every service principal's assignments at least every this
    /// many runs (1 = every run; 0 = no run limit).
    assignments_full_read_every: Option<u32>,
    /// App role assignments: read every service principal's assignments when the last such
    /// read is this many hours old (0 = no age limit).
    assignments_full_read_hours: Option<u32>,
}

/// Defaults of the two bounds above: with hourly backups, a full read of the app role
/// assignments once a day.
const ASSIGNMENTS_FULL_READ_EVERY: u32 = 24;
const ASSIGNMENTS_FULL_READ_HOURS: u32 = 24;

struct Entra;

impl Plugin for Entra {
    fn describe() -> PluginInfo {
        let mut kinds: Vec<&str> = Vec::new();
        for t in TYPES {
            for k in std::iter::once(&t.kind).chain(t.extra_kinds.iter()) {
                if !kinds.contains(k) {
                    kinds.push(k);
                }
            }
        }
        let names: Vec<&str> = TYPES.iter().map(|t| t.task).collect();
        let mut info = PluginInfo::new(
            "entra",
            env!("CARGO_PKG_VERSION"),
            "Backs up a Microsoft Entra ID tenant: users, groups, administrative units, roles, \
             applications, service principals, grants and identity policies",
        )
        .collector(&kinds)
        .config_schema(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "types": {
                    "description": "Object types to back up (default: all)",
                    "type": "array",
                    "items": {"enum": names},
                    "uniqueItems": true
                },
                "exclude_first_party": {
                    "description": "Leave out first-party Microsoft service principals (by default they are kept, marked as references that are never restored)",
                    "type": "boolean",
                    "default": false
                },
                "assignments_full_read_every": {
                    "description": "App role assignments have no delta: incremental runs read those of changed service principals and drop those of deleted principals; every service principal's assignments are read at least every this many runs (1 = every run, 0 = no run limit)",
                    "type": "integer",
                    "minimum": 0,
                    "default": ASSIGNMENTS_FULL_READ_EVERY
                },
                "assignments_full_read_hours": {
                    "description": "… and when the last full read of app role assignments is this many hours old (0 = no age limit)",
                    "type": "integer",
                    "minimum": 0,
                    "default": ASSIGNMENTS_FULL_READ_HOURS
                }
            }
        }));
        for (name, reason) in PERMISSIONS {
            info = info.permission(name, reason, PermissionUse::Backup);
        }
        for (name, reason) in restore::RESTORE_PERMISSIONS {
            info = info.permission(name, reason, PermissionUse::Restore);
        }
        info.restorer(&kinds)
    }
}

/// Reads and checks the configuration (unknown type names are a configuration error).
fn load_config() -> Result<Config, PluginError> {
    let cfg: Config = config()?;
    if let Some(types) = &cfg.types {
        for t in types {
            if types::by_task(t).is_none() {
                let known: Vec<&str> = TYPES.iter().map(|t| t.task).collect();
                return Err(PluginError::Config(format!(
                    "unknown type `{t}` in `types`; known types: {}",
                    known.join(", ")
                )));
            }
        }
    }
    Ok(cfg)
}

impl Collector for Entra {
    fn plan() -> Result<Vec<Task>, PluginError> {
        let cfg = load_config()?;
        Ok(TYPES
            .iter()
            .filter(|t| {
                cfg.types
                    .as_ref()
                    .is_none_or(|sel| sel.iter().any(|s| s == t.task))
            })
            .map(|t| task(t.task, t.label, json!({})))
            .collect())
    }

    fn run_step(
        task: Task,
        state: Option<String>,
        cursor: Option<String>,
    ) -> Result<Step, PluginError> {
        let spec = types::by_task(&task.id)
            .ok_or_else(|| PluginError::Other(format!("unknown task `{}`", task.id)))?;
        let cfg = load_config()?;
        match spec.read {
            Read::Delta { .. } => delta_step(spec, &cfg, state, cursor),
            Read::List => list_step(spec, cursor),
            Read::Singleton | Read::SingletonList => singleton_step(spec),
            Read::Custom if spec.task == "appRoleAssignments" => {
                assignments::step(spec, &cfg, state, cursor)
            }
            Read::Custom => auth_methods_step(spec),
        }
    }
}

impl Restorer for Entra {
    fn plan(request: RestoreRequest) -> Result<Vec<Action>, PluginError> {
        restore::EntraRestorer::plan(request)
    }
    fn apply(action: Action) -> Result<Outcome, PluginError> {
        restore::EntraRestorer::apply(action)
    }
}

cairn_sdk::export_collector_restorer!(Entra);

// ------------------------------------------------------------------------------------ cursors

/// Cursor of a delta task: the listing mode chosen in the run's first step and the next page.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct DeltaCursor {
    m: Mode,
    u: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Full,
    Changes,
}

impl Mode {
    fn listing(self) -> Listing {
        match self {
            Mode::Full => Listing::Full,
            Mode::Changes => Listing::Changes,
        }
    }
}

/// State of a delta task kept for the next run.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct DeltaState {
    delta_link: String,
    query: String,
}

/// Cursor of a list task: the next page.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct PageCursor {
    u: String,
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, s: &str) -> Result<T, PluginError> {
    serde_json::from_str(s).map_err(|e| {
        PluginError::Other(format!(
            "cannot read the {what} `{}`: {e}",
            &s[..s.len().min(80)]
        ))
    })
}

fn encode<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("cursors serialise")
}

/// FNV-1a of the first request: a changed query (new `$select`) invalidates the delta link.
fn fingerprint(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

// ------------------------------------------------------------------------------------ delta

fn delta_get(url: &str, max_page: u32) -> Result<Value, PluginError> {
    let req = graph::with_header(
        graph::request("GET", url),
        "Prefer",
        &format!("odata.maxpagesize={max_page}"),
    );
    graph::send_json(req)
}

fn delta_step(
    spec: &TypeSpec,
    cfg: &Config,
    state: Option<String>,
    cursor: Option<String>,
) -> Result<Step, PluginError> {
    let Read::Delta { links, max_page } = spec.read else {
        unreachable!("delta_step on a non-delta type")
    };
    let initial = spec.initial_url();
    let query = fingerprint(&format!("{initial} {max_page}"));
    let first_step = cursor.is_none();
    let (mut mode, url, mut note) = match cursor {
        Some(c) => {
            let c: DeltaCursor = decode("cursor", &c)?;
            (c.m, c.u, None)
        }
        None => match state.as_deref().filter(|s| !s.is_empty()) {
            None => (Mode::Full, initial.clone(), None),
            Some(s) => match serde_json::from_str::<DeltaState>(s) {
                Ok(st) if st.query == query => (Mode::Changes, st.delta_link, None),
                Ok(_) => (
                    Mode::Full,
                    initial.clone(),
                    Some(format!(
                        "the query for {} changed since the last run; full read",
                        spec.task
                    )),
                ),
                Err(_) => (
                    Mode::Full,
                    initial.clone(),
                    Some(format!(
                        "the stored state of {} is not readable; full read",
                        spec.task
                    )),
                ),
            },
        },
    };
    let body = match delta_get(&url, max_page) {
        Ok(b) => b,
        Err(e) if graph::is_resync(&e) && (first_step || mode == Mode::Full) => {
            let why = match &e {
                PluginError::Graph(g) => format!("{} {}", g.status, g.code),
                other => format!("{other:?}"),
            };
            warn(&format!(
                "{}: delta token expired or reset ({why}); reading everything again",
                spec.task
            ));
            mode = Mode::Full;
            note = Some(format!(
                "delta token expired or reset ({why}); full read of {}",
                spec.task
            ));
            delta_get(&initial, max_page).map_err(|e| forbidden_as(e, spec.permission))?
        }
        Err(e) if graph::is_resync(&e) => {
            return Err(PluginError::Other(format!(
                "{}: the delta round was reset in the middle of an incremental run; this run \
                 cannot list the changes, the next run reads everything",
                spec.task
            )))
        }
        Err(e) => return Err(forbidden_as(e, spec.permission)),
    };
    let page = Page::parse(&body)?;
    // A full read lists what exists; removals it reports (Graph includes recently deleted
    // objects in a first round) say nothing the listing does not.
    let removals: &[(String, Removal)] = match mode {
        Mode::Full => &[],
        Mode::Changes => &page.removed,
    };
    let mut removed: Vec<Tombstone> = removals
        .iter()
        .map(|(id, reason)| Tombstone {
            kind: spec.kind.into(),
            id: id.clone(),
            reason: *reason,
        })
        .collect();
    let mut items = Vec::new();
    let objects = match links.and_then(|_| link_spec(spec)) {
        Some(link) => {
            // An object that left the directory takes its links along: one prefix tombstone
            // per link kind (`{id}/*`). A restored object comes back with all its links.
            let prefixes: Vec<Tombstone> = removed
                .iter()
                .map(|t| Tombstone {
                    kind: link.kind.into(),
                    id: format!("{}/*", t.id),
                    reason: t.reason,
                })
                .collect();
            removed.extend(prefixes);
            link_items(&link, &page.value, &mut items, &mut removed)
        }
        None => page.value,
    };
    if mode == Mode::Full {
        removed.clear();
    }
    items.extend(expand_objects(spec, cfg, objects)?);
    let next = match (page.next_link, page.delta_link) {
        (Some(u), _) => NextStep::More(encode(&DeltaCursor { m: mode, u })),
        (None, Some(delta_link)) => NextStep::Done(encode(&DeltaState { delta_link, query })),
        (None, None) => {
            return Err(PluginError::Other(format!(
                "{}: a delta page has neither @odata.nextLink nor @odata.deltaLink",
                spec.task
            )))
        }
    };
    Ok(Step {
        listing: mode.listing(),
        items,
        removed,
        next,
        note,
    })
}

/// A relationship tracked by delta and stored as one item per link.
struct LinkSpec {
    /// The delta annotation: `members@delta`, `manager@delta`.
    delta: &'static str,
    /// The link item's kind.
    kind: &'static str,
    /// The body field naming the object the link starts from.
    from: &'static str,
    /// The body field holding the reference the link points to.
    to: &'static str,
}

fn link_spec(spec: &TypeSpec) -> Option<LinkSpec> {
    let (delta, kind, from, to) = match spec.task {
        "groups" => ("members@delta", "groupMember", "groupId", "member"),
        "administrativeUnits" => (
            "members@delta",
            "administrativeUnitMember",
            "administrativeUnitId",
            "member",
        ),
        "users" => ("manager@delta", "userManager", "userId", "manager"),
        _ => return None,
    };
    Some(LinkSpec {
        delta,
        kind,
        from,
        to,
    })
}

/// Splits the entries of a delta page into link items and tombstones from the link
/// annotation (`members@delta`, `manager@delta`), and returns the entries that carry the
/// object's properties (a large container repeats across entries: continuation entries carry
/// only `id` and members).
fn link_items(
    link: &LinkSpec,
    entries: &[Value],
    items: &mut Vec<Item>,
    removed: &mut Vec<Tombstone>,
) -> Vec<Value> {
    let mut objects = Vec::new();
    for entry in entries {
        let Some(cid) = entry.get("id").and_then(Value::as_str) else {
            continue;
        };
        if let Some(list) = entry.get(link.delta).and_then(Value::as_array) {
            for m in list {
                let Some(mid) = m.get("id").and_then(Value::as_str) else {
                    continue;
                };
                let link_id = format!("{cid}/{mid}");
                match m.get("@removed") {
                    Some(r) => removed.push(Tombstone {
                        kind: link.kind.into(),
                        id: link_id,
                        reason: match r.get("reason").and_then(Value::as_str) {
                            Some("changed") => Removal::SoftDeleted,
                            Some("deleted") => Removal::HardDeleted,
                            _ => Removal::Gone,
                        },
                    }),
                    None => items.push(Item {
                        kind: link.kind.into(),
                        id: link_id,
                        display_name: String::new(),
                        body: json!({link.from: cid, link.to: reference(m)}).to_string(),
                        parts: Vec::new(),
                    }),
                }
            }
        }
        let has_properties = entry.as_object().is_some_and(|o| {
            o.keys()
                .any(|k| k != "id" && !k.ends_with("@delta") && !k.starts_with("@odata."))
        });
        if has_properties {
            let mut o = entry.clone();
            if let Some(m) = o.as_object_mut() {
                m.retain(|k, _| !k.ends_with("@delta"));
            }
            objects.push(o);
        }
    }
    objects
}

/// A relationship read per object, embedded under `nav`.
struct Rel {
    nav: &'static str,
    url: fn(&str) -> String,
    /// Keep only `@odata.type` and `id` (directory object references).
    references: bool,
}

fn relations_of(task: &str) -> &'static [Rel] {
    const GROUP: &[Rel] = &[Rel {
        nav: "owners",
        url: |id| format!("/v1.0/groups/{id}/owners?$select=id&$top=999"),
        references: true,
    }];
    const AU: &[Rel] = &[Rel {
        nav: "scopedRoleMembers",
        url: |id| format!("/v1.0/directory/administrativeUnits/{id}/scopedRoleMembers"),
        references: false,
    }];
    const APP: &[Rel] = &[
        Rel {
            nav: "owners",
            url: |id| format!("/v1.0/applications/{id}/owners?$select=id&$top=999"),
            references: true,
        },
        Rel {
            nav: "federatedIdentityCredentials",
            url: |id| format!("/v1.0/applications/{id}/federatedIdentityCredentials"),
            references: false,
        },
        Rel {
            nav: "extensionProperties",
            url: |id| format!("/v1.0/applications/{id}/extensionProperties"),
            references: false,
        },
    ];
    const SP: &[Rel] = &[Rel {
        nav: "owners",
        url: |id| format!("/v1.0/servicePrincipals/{id}/owners?$select=id&$top=999"),
        references: true,
    }];
    match task {
        "groups" => GROUP,
        "administrativeUnits" => AU,
        "applications" => APP,
        "servicePrincipals" => SP,
        _ => &[],
    }
}

const SECRETS_NOTE: &str = "passwordCredentials hold metadata only: Graph never returns client \
    secrets, so they cannot be backed up; a restore must issue new secrets (addPassword)";
const REFERENCE_NOTE: &str = "first-party Microsoft service principal: present in every tenant, \
    kept to map ids, never restored";

/// Turns a page's objects into items: annotations, first-party filtering, and the embedded
/// relationships read for the whole page in one `$batch`.
fn expand_objects(
    spec: &TypeSpec,
    cfg: &Config,
    objects: Vec<Value>,
) -> Result<Vec<Item>, PluginError> {
    let mut objects: Vec<Value> = objects
        .into_iter()
        .filter(|o| o.get("id").and_then(Value::as_str).is_some())
        .collect();
    if spec.task == "servicePrincipals" {
        let first_party = |o: &Value| {
            o.get("appOwnerOrganizationId")
                .and_then(Value::as_str)
                .is_some_and(|t| t.eq_ignore_ascii_case(MICROSOFT_TENANT))
        };
        if cfg.exclude_first_party {
            objects.retain(|o| !first_party(o));
        }
        for o in objects.iter_mut() {
            if first_party(o) {
                o["@cairn.reference"] = json!(REFERENCE_NOTE);
            }
        }
    }
    for o in objects.iter_mut() {
        let has_secrets = o
            .get("passwordCredentials")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if has_secrets {
            o["@cairn.secrets"] = json!(SECRETS_NOTE);
        }
    }
    let rels = relations_of(spec.task);
    let mut keep = vec![true; objects.len()];
    if !rels.is_empty() && !objects.is_empty() {
        let mut urls = Vec::with_capacity(objects.len() * rels.len());
        for o in &objects {
            let id = o["id"].as_str().unwrap_or_default();
            for r in rels {
                urls.push((r.url)(id));
            }
        }
        let found = get_collections(&urls, spec.permission)?;
        for (i, o) in objects.iter_mut().enumerate() {
            for (j, r) in rels.iter().enumerate() {
                match &found[i * rels.len() + j] {
                    Found::Gone => keep[i] = false,
                    Found::List(values) => {
                        let list: Vec<Value> = values
                            .iter()
                            .map(|v| {
                                if r.references {
                                    reference(v)
                                } else {
                                    strip_control(v.clone())
                                }
                            })
                            .collect();
                        o[r.nav] = Value::Array(list);
                    }
                }
            }
        }
    }
    objects
        .iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(o, _)| make_item(spec.kind, o, spec.name_field))
        .collect()
}

/// An item from a Graph object; the display name falls back to `displayName`, then the id.
fn make_item(kind: &str, o: &Value, name_field: &str) -> Result<Item, PluginError> {
    let o = strip_control(o.clone());
    let mut item = item_from_json(kind, &o, name_field)?;
    if item.display_name.is_empty() {
        item.display_name = o
            .get("displayName")
            .and_then(Value::as_str)
            .unwrap_or(&item.id)
            .to_string();
    }
    Ok(item)
}

// ------------------------------------------------------------------------------------ full reads

/// Whether an error says the service does not offer this endpoint (or this tenant lacks the
/// licence for it): optional types are then skipped.
fn not_offered(e: &PluginError) -> bool {
    match e {
        PluginError::Graph(g) => {
            g.status == 404
                || g.code.to_ascii_lowercase().contains("license")
                || (g.status == 400 && g.message.contains("not found for the segment"))
        }
        _ => false,
    }
}

fn skipped(spec: &TypeSpec, e: &PluginError) -> Step {
    let why = if graph::is_forbidden(e) {
        format!("the app lacks {}", spec.permission)
    } else {
        match e {
            PluginError::Graph(g) => format!(
                "{} is not available in this tenant ({} {}: {})",
                spec.path, g.status, g.code, g.message
            ),
            other => format!("{other:?}"),
        }
    };
    warn(&format!("{}: skipped: {why}", spec.task));
    Step {
        listing: Listing::Full,
        items: Vec::new(),
        removed: Vec::new(),
        next: NextStep::Done(String::new()),
        note: Some(format!("skipped {}: {why}", spec.task)),
    }
}

fn list_step(spec: &TypeSpec, cursor: Option<String>) -> Result<Step, PluginError> {
    let url = match cursor {
        Some(c) => decode::<PageCursor>("cursor", &c)?.u,
        None => spec.initial_url(),
    };
    let body = match graph::get_json(&url) {
        Ok(b) => b,
        Err(e) if spec.optional && (graph::is_forbidden(&e) || not_offered(&e)) => {
            return Ok(skipped(spec, &e))
        }
        Err(e) => return Err(forbidden_as(e, spec.permission)),
    };
    let page = Page::parse(&body)?;
    let items = page
        .value
        .iter()
        .map(|o| make_item(spec.kind, o, spec.name_field))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Step {
        listing: Listing::Full,
        items,
        removed: Vec::new(),
        next: match page.next_link {
            Some(u) => NextStep::More(encode(&PageCursor { u })),
            None => NextStep::Done(String::new()),
        },
        note: None,
    })
}

fn full_step(items: Vec<Item>) -> Step {
    Step {
        listing: Listing::Full,
        items,
        removed: Vec::new(),
        next: NextStep::Done(String::new()),
        note: None,
    }
}

/// Singletons (`authorizationPolicy`, security defaults) and one-object collections
/// (`organization`).
fn singleton_step(spec: &TypeSpec) -> Result<Step, PluginError> {
    let body =
        graph::get_json(&spec.initial_url()).map_err(|e| forbidden_as(e, spec.permission))?;
    let objects = if spec.read == Read::SingletonList {
        Page::parse(&body)?.value
    } else {
        vec![with_id(body, spec.task)]
    };
    let items = objects
        .iter()
        .map(|o| make_item(spec.kind, o, spec.name_field))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(full_step(items))
}

/// Singletons carry an `id` (`authorizationPolicy`, a fixed GUID …); if one ever comes back
/// without, the task id stands in.
fn with_id(mut o: Value, fallback: &str) -> Value {
    if o.get("id").and_then(Value::as_str).is_none() {
        o["id"] = json!(fallback);
    }
    o
}

/// The authentication methods policy (its own properties) and each method configuration as an
/// item of its own (a restore PATCHes them one by one).
fn auth_methods_step(spec: &TypeSpec) -> Result<Step, PluginError> {
    let mut policy =
        graph::get_json(&spec.initial_url()).map_err(|e| forbidden_as(e, spec.permission))?;
    let inline = policy
        .as_object_mut()
        .and_then(|m| m.remove("authenticationMethodConfigurations"));
    let configs = match graph::get_all(&format!(
        "/v1.0{}/authenticationMethodConfigurations",
        spec.path
    )) {
        Ok(list) => list,
        Err(e) if not_offered(&e) => inline
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default(),
        Err(e) => return Err(forbidden_as(e, spec.permission)),
    };
    let mut items = vec![make_item(
        spec.kind,
        &with_id(policy, spec.task),
        spec.name_field,
    )?];
    for c in &configs {
        items.push(make_item("authenticationMethodConfiguration", c, "id")?);
    }
    Ok(full_step(items))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_entries_split_into_links_and_objects() {
        let link = link_spec(types::by_task("groups").unwrap()).unwrap();
        let entries = vec![
            json!({"id": "g1", "displayName": "G", "members@delta": [
                {"@odata.type": "#microsoft.graph.user", "id": "u1"},
                {"@odata.type": "#microsoft.graph.user", "id": "u2", "@removed": {"reason": "deleted"}}
            ]}),
            json!({"id": "g1", "members@delta": [{"@odata.type": "#microsoft.graph.group", "id": "g2"}]}),
        ];
        let mut items = Vec::new();
        let mut removed = Vec::new();
        let objects = link_items(&link, &entries, &mut items, &mut removed);
        assert_eq!(objects, vec![json!({"id": "g1", "displayName": "G"})]);
        let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["g1/u1", "g1/g2"]);
        assert!(items.iter().all(|i| i.kind == "groupMember"));
        let body: Value = serde_json::from_str(&items[1].body).unwrap();
        assert_eq!(
            body,
            json!({"groupId": "g1", "member": {"@odata.type": "#microsoft.graph.group", "id": "g2"}})
        );
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].id, "g1/u2");
        assert_eq!(removed[0].reason, Removal::HardDeleted);
    }

    #[test]
    fn cursors_and_state_round_trip() {
        let c = encode(&DeltaCursor {
            m: Mode::Changes,
            u: "https://g/v1.0/users/delta?$skiptoken=x".into(),
        });
        assert_eq!(
            c,
            r#"{"m":"changes","u":"https://g/v1.0/users/delta?$skiptoken=x"}"#
        );
        let s: DeltaState = decode(
            "state",
            r#"{"deltaLink":"https://g/d?$deltatoken=t","query":"ab"}"#,
        )
        .unwrap();
        assert_eq!(s.delta_link, "https://g/d?$deltatoken=t");
        assert_ne!(fingerprint("a"), fingerprint("b"));
    }

    #[test]
    fn optional_endpoints_recognised() {
        let e = PluginError::Graph(graph::decode_error(
            "GET /x",
            400,
            br#"{"error":{"code":"BadRequest","message":"Resource not found for the segment 'roleManagement'."}}"#,
        ));
        assert!(not_offered(&e));
        let e = PluginError::Graph(graph::decode_error(
            "GET /x",
            400,
            br#"{"error":{"code":"Request_BadRequest","message":"Invalid filter"}}"#,
        ));
        assert!(!not_offered(&e));
    }
}
