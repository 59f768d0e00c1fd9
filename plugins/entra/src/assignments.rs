//! App role assignments (`appRoleAssignment` items, id `{principalId}/{assignmentId}`).
//!
//! Graph has no delta for app role assignments, and the delta of users and groups does not
//! carry them. A **full read** lists every service principal's `appRoleAssignedTo` (each
//! assignment has exactly one resource, so this lists each once): a page of service principals
//! per step, their assignments in one `$batch`. Before it starts, it takes a `$deltatoken=latest`
//! link of `servicePrincipals`, `users` and `groups` (ids only), kept in the task's state.
//!
//! An **incremental run** follows those three delta rounds (ids only, one page of each per
//! step) and
//! - reads both sides (`appRoleAssignedTo`, `appRoleAssignments`) of every service principal
//!   delta reports created, changed or restored: a new application's consented permissions and
//!   users assigned to a new enterprise application are captured at once;
//! - removes all assignments of a principal that was permanently deleted, with one prefix
//!   tombstone `{principalId}/*` (Graph deletes them with it; a soft-deleted principal keeps its
//!   assignments, as Graph does, until it is restored or purged).
//!
//! What an incremental run cannot see: an assignment added to or removed from a principal and
//! a resource that both did not change (Graph reports no change for either), and the
//! assignments *to* a resource service principal that was deleted (they sit under their
//! principals' prefixes). Those show up at the next full read, which happens at least every
//! `assignments_full_read_every` runs (default 24) and when the last one is
//! `assignments_full_read_hours` old (default 24): the staleness of this one type is bounded.
//! An expired delta token (410, `syncStateNotFound`) or a changed query also gives a full read.
//!
//! State: `{"query": "<fingerprint>", "links": {"servicePrincipals": "<deltaLink>", …},
//! "runs": <incremental runs since the full read>, "fullAt": <unix seconds of the full read>}`.
//! Cursor: `{"m": "full"|"changes", "u": "<next page of service principals>", "c": {"users":
//! {"n": "<nextLink>"} | {"d": "<deltaLink>"}, …}, "runs": …, "fullAt": …}`.

use std::collections::BTreeMap;

use cairn_sdk::graph::{self, Page};
use cairn_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::relations::{forbidden_as, get_collections, Found};
use crate::types::TypeSpec;
use crate::{
    decode, delta_get, encode, fingerprint, make_item, Config, Mode, ASSIGNMENTS_FULL_READ_EVERY,
    ASSIGNMENTS_FULL_READ_HOURS,
};

/// The collections whose delta (ids only) tells an incremental run which principals changed.
/// (name, initial delta URL, permission).
const CHAINS: &[(&str, &str, &str)] = &[
    (
        "servicePrincipals",
        "/v1.0/servicePrincipals/delta?$select=id",
        "Application.Read.All",
    ),
    ("users", "/v1.0/users/delta?$select=id", "User.Read.All"),
    ("groups", "/v1.0/groups/delta?$select=id", "Group.Read.All"),
];

const FIRST_PAGE: &str = "/v1.0/servicePrincipals?$select=id&$top=999";

/// State kept for the next run.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct State {
    query: String,
    links: BTreeMap<String, String>,
    runs: u32,
    full_at: u64,
}

/// Where one delta round stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
enum Pos {
    /// The next page to read.
    #[serde(rename = "n")]
    Next(String),
    /// Finished: the link of the next round.
    #[serde(rename = "d")]
    Done(String),
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Cursor {
    m: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    u: Option<String>,
    c: BTreeMap<String, Pos>,
    runs: u32,
    full_at: u64,
}

fn query(spec: &TypeSpec) -> String {
    let chains: Vec<&str> = CHAINS.iter().map(|c| c.1).collect();
    fingerprint(&format!(
        "assignments v2 {} {}",
        spec.select.unwrap_or(&[]).join(","),
        chains.join(" ")
    ))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Why the stored state calls for a full read now, if it does.
fn full_read_due(cfg: &Config, st: &State, now: u64) -> Option<String> {
    let every = cfg
        .assignments_full_read_every
        .unwrap_or(ASSIGNMENTS_FULL_READ_EVERY);
    if every > 0 && st.runs + 1 >= every {
        return Some(format!(
            "periodic full read of app role assignments ({} incremental runs since the last, \
             assignments_full_read_every = {every})",
            st.runs
        ));
    }
    let hours = cfg
        .assignments_full_read_hours
        .unwrap_or(ASSIGNMENTS_FULL_READ_HOURS);
    if hours > 0 && now.saturating_sub(st.full_at) >= u64::from(hours) * 3600 {
        return Some(format!(
            "periodic full read of app role assignments (the last is {} h old, \
             assignments_full_read_hours = {hours})",
            now.saturating_sub(st.full_at) / 3600
        ));
    }
    None
}

/// One step of the `appRoleAssignments` task.
pub fn step(
    spec: &TypeSpec,
    cfg: &Config,
    state: Option<String>,
    cursor: Option<String>,
) -> Result<Step, PluginError> {
    let q = query(spec);
    let cursor = match cursor {
        Some(c) => decode::<Cursor>("cursor", &c)?,
        None => {
            let now = now_secs();
            let stored = state
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(serde_json::from_str::<State>);
            let why_full = match &stored {
                None => None,
                Some(Err(_)) => {
                    Some("the stored state of appRoleAssignments is not readable".into())
                }
                Some(Ok(st)) if st.query != q => {
                    Some("the query for appRoleAssignments changed since the last run".into())
                }
                Some(Ok(st)) => full_read_due(cfg, st, now),
            };
            match (stored, why_full) {
                (Some(Ok(st)), None) => {
                    let c = Cursor {
                        m: Mode::Changes,
                        u: None,
                        c: st
                            .links
                            .into_iter()
                            .map(|(k, v)| (k, Pos::Next(v)))
                            .collect(),
                        runs: st.runs + 1,
                        full_at: st.full_at,
                    };
                    return match changes_step(spec, c) {
                        Err(e) if graph::is_resync(&e) => {
                            let why = match &e {
                                PluginError::Graph(g) => format!("{} {}", g.status, g.code),
                                other => format!("{other:?}"),
                            };
                            warn(&format!(
                                "appRoleAssignments: delta token expired or reset ({why}); \
                                 reading every assignment again"
                            ));
                            full_first_step(spec, q, now, Some(format!(
                                "delta token expired or reset ({why}); full read of appRoleAssignments"
                            )))
                        }
                        other => other,
                    };
                }
                (_, why) => return full_first_step(spec, q, now, why),
            }
        }
    };
    match cursor.m {
        Mode::Full => full_step(spec, cursor, &q, None),
        Mode::Changes => changes_step(spec, cursor).map_err(|e| {
            if graph::is_resync(&e) {
                PluginError::Other(
                    "appRoleAssignments: a delta round was reset in the middle of an incremental \
                     run; this run cannot list the changes, the next run reads everything"
                        .into(),
                )
            } else {
                e
            }
        }),
    }
}

/// The first step of a full read: the delta links to follow next time, then the first page.
fn full_first_step(
    spec: &TypeSpec,
    q: String,
    now: u64,
    mut note: Option<String>,
) -> Result<Step, PluginError> {
    let mut chains = BTreeMap::new();
    for (name, url, permission) in CHAINS {
        let latest = format!("{url}&$deltatoken=latest");
        match graph::get_json(&latest) {
            Ok(body) => {
                let link = body
                    .get("@odata.deltaLink")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        PluginError::Other(format!(
                            "GET {name}/delta?$deltatoken=latest returned no @odata.deltaLink"
                        ))
                    })?;
                chains.insert(name.to_string(), Pos::Done(link.to_string()));
            }
            // Without the principal type's read permission, its deletions are seen at the next
            // full read only; the service principals' permission is the task's own.
            Err(e) if graph::is_forbidden(&e) && *name != "servicePrincipals" => {
                let msg = format!(
                    "without {permission}, app role assignments of deleted {name} leave the \
                     backup at the next full read only"
                );
                warn(&format!("appRoleAssignments: {msg}"));
                note = Some(match note {
                    Some(n) => format!("{n}; {msg}"),
                    None => msg,
                });
            }
            Err(e) => return Err(forbidden_as(e, spec.permission)),
        }
    }
    let c = Cursor {
        m: Mode::Full,
        u: Some(FIRST_PAGE.to_string()),
        c: chains,
        runs: 0,
        full_at: now,
    };
    full_step(spec, c, &q, note)
}

/// One page of service principals and their `appRoleAssignedTo`.
fn full_step(
    spec: &TypeSpec,
    mut c: Cursor,
    q: &str,
    note: Option<String>,
) -> Result<Step, PluginError> {
    let url = c.u.take().unwrap_or_else(|| FIRST_PAGE.to_string());
    let page = graph::get_page(&url).map_err(|e| forbidden_as(e, spec.permission))?;
    let ids: Vec<&str> = page
        .value
        .iter()
        .filter_map(|sp| sp.get("id").and_then(Value::as_str))
        .collect();
    let items = read_assignments(spec, &ids, false)?;
    c.u = page.next_link;
    Ok(Step {
        listing: Listing::Full,
        items,
        removed: Vec::new(),
        next: finish(c, q),
        note,
    })
}

/// One page of each unfinished delta round: assignments of changed service principals,
/// prefix tombstones for permanently deleted principals.
fn changes_step(spec: &TypeSpec, mut c: Cursor) -> Result<Step, PluginError> {
    let mut changed_sps: Vec<String> = Vec::new();
    let mut removed = Vec::new();
    for (name, _, permission) in CHAINS {
        let Some(Pos::Next(url)) = c.c.get(*name).cloned() else {
            continue;
        };
        let body = delta_get(&url, 999).map_err(|e| {
            if graph::is_resync(&e) {
                e
            } else {
                forbidden_as(e, permission)
            }
        })?;
        let page = Page::parse(&body)?;
        for (id, reason) in &page.removed {
            if *reason == Removal::HardDeleted {
                removed.push(Tombstone {
                    kind: spec.kind.into(),
                    id: format!("{id}/*"),
                    reason: Removal::HardDeleted,
                });
            }
        }
        if *name == "servicePrincipals" {
            changed_sps.extend(
                page.value
                    .iter()
                    .filter_map(|o| o.get("id").and_then(Value::as_str))
                    .map(str::to_string),
            );
        }
        let pos = match (page.next_link, page.delta_link) {
            (Some(n), _) => Pos::Next(n),
            (None, Some(d)) => Pos::Done(d),
            (None, None) => {
                return Err(PluginError::Other(format!(
                    "appRoleAssignments: a {name} delta page has neither @odata.nextLink nor \
                     @odata.deltaLink"
                )))
            }
        };
        c.c.insert(name.to_string(), pos);
    }
    let ids: Vec<&str> = changed_sps.iter().map(String::as_str).collect();
    let items = read_assignments(spec, &ids, true)?;
    let q = query(spec);
    Ok(Step {
        listing: Listing::Changes,
        items,
        removed,
        next: finish(c, &q),
        note: None,
    })
}

/// More while a page of service principals or a delta round is left, else done with the
/// state for the next run.
fn finish(c: Cursor, q: &str) -> NextStep {
    let running = c.u.is_some() || c.c.values().any(|p| matches!(p, Pos::Next(_)));
    if running {
        return NextStep::More(encode(&c));
    }
    let links =
        c.c.into_iter()
            .filter_map(|(k, p)| match p {
                Pos::Done(d) => Some((k, d)),
                Pos::Next(_) => None,
            })
            .collect();
    NextStep::Done(encode(&State {
        query: q.to_string(),
        links,
        runs: if c.m == Mode::Full { 0 } else { c.runs },
        full_at: c.full_at,
    }))
}

/// The assignments of service principals `ids`: to them as resources (`appRoleAssignedTo`),
/// and with `as_principal`, theirs as principals (`appRoleAssignments`) too.
fn read_assignments(
    spec: &TypeSpec,
    ids: &[&str],
    as_principal: bool,
) -> Result<Vec<Item>, PluginError> {
    let select = spec.select.unwrap_or(&["id"]).join(",");
    let mut urls = Vec::new();
    for id in ids {
        urls.push(format!(
            "/v1.0/servicePrincipals/{id}/appRoleAssignedTo?$select={select}&$top=999"
        ));
        if as_principal {
            urls.push(format!(
                "/v1.0/servicePrincipals/{id}/appRoleAssignments?$select={select}&$top=999"
            ));
        }
    }
    let mut items = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for found in get_collections(&urls, spec.permission)? {
        if let Found::List(values) = found {
            for a in &values {
                if let Some(item) = assignment_item(spec, a)? {
                    if seen.insert(item.id.clone()) {
                        items.push(item);
                    }
                }
            }
        }
    }
    Ok(items)
}

/// An assignment's item: id `{principalId}/{assignmentId}`, so that a principal's assignments
/// share a prefix.
fn assignment_item(spec: &TypeSpec, a: &Value) -> Result<Option<Item>, PluginError> {
    let (Some(pid), Some(aid)) = (
        a.get("principalId").and_then(Value::as_str),
        a.get("id").and_then(Value::as_str),
    ) else {
        return Ok(None);
    };
    let mut item = make_item(spec.kind, a, spec.name_field)?;
    item.id = format!("{pid}/{aid}");
    Ok(Some(item))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(every: Option<u32>, hours: Option<u32>) -> Config {
        Config {
            assignments_full_read_every: every,
            assignments_full_read_hours: hours,
            ..Config::default()
        }
    }

    #[test]
    fn full_read_is_due_by_runs_or_age() {
        let st = |runs, full_at| State {
            query: "q".into(),
            links: BTreeMap::new(),
            runs,
            full_at,
        };
        let now = 1_000_000;
        // Defaults: 24 runs or 24 hours.
        assert!(full_read_due(&cfg(None, None), &st(0, now - 3600), now).is_none());
        assert!(full_read_due(&cfg(None, None), &st(22, now), now).is_none());
        assert!(full_read_due(&cfg(None, None), &st(23, now), now).is_some());
        assert!(full_read_due(&cfg(None, None), &st(1, now - 24 * 3600), now).is_some());
        // Every run; never by count; never by age.
        assert!(full_read_due(&cfg(Some(1), Some(0)), &st(0, now), now).is_some());
        assert!(full_read_due(&cfg(Some(0), Some(0)), &st(10_000, 0), now).is_none());
        assert!(full_read_due(&cfg(Some(3), Some(0)), &st(1, 0), now).is_none());
        assert!(full_read_due(&cfg(Some(3), Some(0)), &st(2, 0), now).is_some());
    }

    #[test]
    fn cursor_and_state_shapes() {
        let mut c = BTreeMap::new();
        c.insert("users".to_string(), Pos::Next("https://g/n".into()));
        c.insert("groups".to_string(), Pos::Done("https://g/d".into()));
        let cur = Cursor {
            m: Mode::Changes,
            u: None,
            c,
            runs: 2,
            full_at: 7,
        };
        let text = encode(&cur);
        assert_eq!(
            text,
            r#"{"m":"changes","c":{"groups":{"d":"https://g/d"},"users":{"n":"https://g/n"}},"runs":2,"fullAt":7}"#
        );
        assert_eq!(decode::<Cursor>("cursor", &text).unwrap(), cur);
        // Still running: more; finished: the state keeps the delta links and the run count.
        assert!(matches!(finish(cur, "q"), NextStep::More(_)));
        let mut c = BTreeMap::new();
        c.insert("users".to_string(), Pos::Done("https://g/u".into()));
        let done = Cursor {
            m: Mode::Changes,
            u: None,
            c,
            runs: 3,
            full_at: 7,
        };
        let NextStep::Done(s) = finish(done, "q") else {
            panic!("finished")
        };
        let st: State = serde_json::from_str(&s).unwrap();
        assert_eq!(st.runs, 3);
        assert_eq!(st.links["users"], "https://g/u");
    }

    #[test]
    fn assignment_ids_start_with_the_principal() {
        let spec = crate::types::by_task("appRoleAssignments").unwrap();
        let a = serde_json::json!({"id": "a1", "principalId": "p1", "resourceId": "r1",
            "principalDisplayName": "Adele", "appRoleId": "x"});
        let item = assignment_item(spec, &a).unwrap().unwrap();
        assert_eq!(item.id, "p1/a1");
        assert_eq!(item.display_name, "Adele");
        let body: Value = serde_json::from_str(&item.body).unwrap();
        assert_eq!(body["id"], "a1");
    }
}
