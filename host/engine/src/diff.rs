//! What changed between two snapshots: items added, removed and changed, and for changed items
//! the attributes that changed, with old and new values.

use std::collections::BTreeMap;

use cairn_repository::{Entry, Repository, Snapshot, SnapshotDiff, TaskDiff};
use serde::Serialize;
use serde_json::Value;

/// One changed attribute of an item.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AttributeChange {
    pub attribute: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
}

/// One item that differs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ItemChange {
    /// `added`, `removed` or `changed`.
    pub change: &'static str,
    pub task: String,
    pub kind: String,
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<AttributeChange>,
    /// The change in words, for kinds that have a describer (see [`describe_change`]), e.g.
    /// "anonymous edit link added to /Finance/Payroll.xlsx on 2026-11-30". Needs item bodies.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub description: Vec<String>,
}

/// Counts per change type.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DiffSummary {
    pub added: usize,
    pub removed: usize,
    pub changed: usize,
}

/// The difference between two snapshots.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Diff {
    pub summary: DiffSummary,
    pub items: Vec<ItemChange>,
}

/// Compares `old` and `new`. Reading attribute values needs a repository opened with an
/// identity that can read item contents; with `attributes = false` only ids and names are used
/// (what a write-only machine can see).
pub fn diff_snapshots(
    repo: &Repository,
    old: &Snapshot,
    new: &Snapshot,
    attributes: bool,
) -> cairn_repository::Result<Diff> {
    let d = repo.diff(old, new)?;
    describe_diff(d, (repo, old), (repo, new), attributes)
}

/// Compares `old` (in `old_repo`) with `new` (in `new_repo`, a repository that shares
/// `old_repo`'s id key, so that equal items have equal ids): the live side of
/// `cairn diff <snapshot> live`. Only tasks of `new` are compared (the collectors that ran),
/// so a collector that was not run does not show as removed, and tasks that failed are skipped.
pub fn diff_across(
    (old_repo, old): (&Repository, &Snapshot),
    (new_repo, new): (&Repository, &Snapshot),
    attributes: bool,
) -> cairn_repository::Result<Diff> {
    let mut d = SnapshotDiff::default();
    for task in &new.tasks {
        if new.failed_tasks.contains(&task.name) {
            continue; // not read in full: comparing it would report false removals
        }
        let entries = |repo: &Repository, root: Option<cairn_repository::Id>| match root {
            Some(r) => repo.tree_entries(r),
            None => Ok(Vec::new()),
        };
        let before = entries(old_repo, old.task(&task.name).map(|t| t.tree))?;
        let after = entries(new_repo, Some(task.tree))?;
        let mut before: BTreeMap<(String, String), Entry> = before
            .into_iter()
            .map(|e| ((e.kind.clone(), e.id.clone()), e))
            .collect();
        let mut t = TaskDiff {
            task: task.name.clone(),
            ..Default::default()
        };
        for e in after {
            match before.remove(&(e.kind.clone(), e.id.clone())) {
                None => t.added.push(e),
                Some(b) if b != e => t.changed.push((b, e)),
                Some(_) => {}
            }
        }
        t.removed = before.into_values().collect();
        if !(t.added.is_empty() && t.removed.is_empty() && t.changed.is_empty()) {
            d.tasks.push(t);
        }
    }
    describe_diff(d, (old_repo, old), (new_repo, new), attributes)
}

/// Turns a per-task entry diff into item changes, reading bodies (for attribute changes and
/// descriptions) from the side each entry belongs to.
fn describe_diff(
    d: SnapshotDiff,
    (old_repo, old): (&Repository, &Snapshot),
    (new_repo, new): (&Repository, &Snapshot),
    attributes: bool,
) -> cairn_repository::Result<Diff> {
    let when = when_words(&old.time, &new.time);
    let mut items = Vec::new();
    let mut summary = DiffSummary::default();
    for t in d.tasks {
        for e in t.added {
            summary.added += 1;
            let description = if attributes && has_describer(&e.kind) {
                describe_change(&e.kind, None, Some(&new_repo.read_item(&e)?), &when)
            } else {
                Vec::new()
            };
            items.push(ItemChange {
                change: "added",
                task: t.task.clone(),
                kind: e.kind,
                id: e.id,
                name: e.name,
                attributes: Vec::new(),
                description,
            });
        }
        for e in t.removed {
            summary.removed += 1;
            let description = if attributes && has_describer(&e.kind) {
                describe_change(&e.kind, Some(&old_repo.read_item(&e)?), None, &when)
            } else {
                Vec::new()
            };
            items.push(ItemChange {
                change: "removed",
                task: t.task.clone(),
                kind: e.kind,
                id: e.id,
                name: e.name,
                attributes: Vec::new(),
                description,
            });
        }
        for (a, b) in t.changed {
            summary.changed += 1;
            let (attrs, description) = if attributes {
                let old_body = old_repo.read_item(&a)?;
                let new_body = new_repo.read_item(&b)?;
                (
                    attribute_changes(&old_body, &new_body),
                    describe_change(&b.kind, Some(&old_body), Some(&new_body), &when),
                )
            } else {
                (Vec::new(), Vec::new())
            };
            items.push(ItemChange {
                change: "changed",
                task: t.task.clone(),
                kind: b.kind,
                id: b.id,
                name: b.name,
                attributes: attrs,
                description,
            });
        }
    }
    items.sort_by(|x, y| (&x.kind, &x.name, &x.id).cmp(&(&y.kind, &y.name, &y.id)));
    Ok(Diff { summary, items })
}

/// The attributes that differ between two JSON objects, with nested objects descended into
/// (`conditions.users.excludeUsers`). Arrays compare as wholes.
pub fn attribute_changes(old: &Value, new: &Value) -> Vec<AttributeChange> {
    let mut out = Vec::new();
    walk("", old, new, &mut out);
    out
}

fn walk(prefix: &str, old: &Value, new: &Value, out: &mut Vec<AttributeChange>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) if x == y => {}
                    (Some(x), Some(y)) => walk(&path, x, y, out),
                    (x, y) => out.push(AttributeChange {
                        attribute: path,
                        old: x.cloned(),
                        new: y.cloned(),
                    }),
                }
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(AttributeChange {
            attribute: prefix.to_string(),
            old: Some(a.clone()),
            new: Some(b.clone()),
        }),
    }
}

// ------------------------------------------------------------------ change descriptions

/// Whether [`describe_change`] has words for items of `kind`.
pub fn has_describer(kind: &str) -> bool {
    matches!(kind, "sharing")
}

/// The per-kind description hook: an item's change in sentences an operator reads. `old` is
/// absent for an added item, `new` for a removed one; `when` is "on 2026-11-30" or "between
/// 2026-11-29 and 2026-11-30" (the snapshots' dates). Kinds without a describer give nothing
/// (their attribute changes speak for them).
pub fn describe_change(
    kind: &str,
    old: Option<&Value>,
    new: Option<&Value>,
    when: &str,
) -> Vec<String> {
    match kind {
        "sharing" => describe_sharing(old, new, when),
        _ => Vec::new(),
    }
}

/// "on D" when both snapshots are of the same day, else "between D1 and D2".
fn when_words(old: &str, new: &str) -> String {
    let (a, b) = (&old[..old.len().min(10)], &new[..new.len().min(10)]);
    if a == b {
        format!("on {b}")
    } else {
        format!("between {a} and {b}")
    }
}

/// `sharing` items (plugin `sharepoint-links`): `{path, permissions: [...]}` with Graph's
/// permission objects; permissions are matched by id.
fn describe_sharing(old: Option<&Value>, new: Option<&Value>, when: &str) -> Vec<String> {
    let perms = |v: Option<&Value>| -> Vec<Value> {
        v.and_then(|v| v.get("permissions"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let path = new
        .or(old)
        .and_then(|v| v.get("path"))
        .and_then(Value::as_str)
        .unwrap_or("?");
    let (before, after) = (perms(old), perms(new));
    let id = |p: &Value| {
        p.get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut out = Vec::new();
    for p in &after {
        match before.iter().find(|q| id(q) == id(p)) {
            None => out.push(format!("{} added to {path} {when}", permission_words(p))),
            Some(q) if q != p => {
                let what: Vec<String> = attribute_changes(q, p)
                    .into_iter()
                    .map(|c| {
                        let show = |v: &Option<Value>| {
                            v.as_ref()
                                .map(|v| v.to_string())
                                .unwrap_or("(absent)".into())
                        };
                        format!("{} {} → {}", c.attribute, show(&c.old), show(&c.new))
                    })
                    .collect();
                out.push(format!(
                    "{} on {path} changed {when}: {}",
                    permission_words(p),
                    what.join(", ")
                ));
            }
            Some(_) => {}
        }
    }
    for q in &before {
        if !after.iter().any(|p| id(p) == id(q)) {
            out.push(format!(
                "{} removed from {path} {when}",
                permission_words(q)
            ));
        }
    }
    out
}

/// A Graph permission in words: "anonymous edit link", "organization-wide view link expiring
/// 2026-12-31", "specific-people view link for Adele Vance", "grant to Adele Vance (write)".
fn permission_words(p: &Value) -> String {
    let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    let name_of = |g: &Value| {
        ["user", "group", "siteUser", "siteGroup", "application"]
            .iter()
            .filter_map(|f| g.get(*f))
            .map(|f| {
                let n = s(f.get("displayName"));
                if n.is_empty() {
                    s(f.get("email"))
                } else {
                    n
                }
            })
            .find(|n| !n.is_empty())
    };
    let inherited = if p.get("inheritedFrom").is_some_and(|v| !v.is_null()) {
        "inherited "
    } else {
        ""
    };
    let mut out = if let Some(link) = p.get("link").filter(|l| l.is_object()) {
        let scope = s(link.get("scope"));
        let scope = match scope.as_str() {
            "organization" => "organization-wide",
            "users" => "specific-people",
            "existingAccess" => "existing-access",
            other => other,
        };
        let mut w = format!("{inherited}{scope} {} link", s(link.get("type")));
        let names: Vec<String> = p
            .get("grantedToIdentitiesV2")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(name_of).collect())
            .unwrap_or_default();
        if !names.is_empty() {
            w.push_str(&format!(" for {}", names.join(", ")));
        }
        if p.get("hasPassword").and_then(Value::as_bool) == Some(true) {
            w.push_str(" (password-protected)");
        }
        w
    } else {
        let who = p
            .get("grantedToV2")
            .and_then(name_of)
            .or_else(|| {
                p.get("invitation")
                    .map(|i| s(i.get("email")))
                    .filter(|e| !e.is_empty())
            })
            .unwrap_or_else(|| "?".into());
        let roles: Vec<String> = p
            .get("roles")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        format!("{inherited}grant to {who} ({})", roles.join(", "))
    };
    let exp = s(p.get("expirationDateTime"));
    if !exp.is_empty() && !exp.starts_with("0001-") {
        out.push_str(&format!(" expiring {}", &exp[..exp.len().min(10)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_attribute_changes_are_named_by_path() {
        let old = json!({"displayName": "Require MFA", "state": "enabled",
            "conditions": {"users": {"includeUsers": ["All"], "excludeUsers": []}}});
        let new = json!({"displayName": "Require MFA", "state": "disabled",
            "conditions": {"users": {"includeUsers": ["All"], "excludeUsers": ["u1"]}}, "extra": 1});
        let changes = attribute_changes(&old, &new);
        let names: Vec<&str> = changes.iter().map(|c| c.attribute.as_str()).collect();
        assert_eq!(names, ["conditions.users.excludeUsers", "extra", "state"]);
        assert_eq!(changes[2].old, Some(json!("enabled")));
        assert_eq!(changes[1].old, None);
    }

    #[test]
    fn sharing_changes_in_words() {
        let link = json!({"id": "p1", "roles": ["write"], "hasPassword": false,
            "expirationDateTime": "0001-01-01T00:00:00Z",
            "link": {"type": "edit", "scope": "anonymous", "webUrl": "https://x/:w:/g/abc"}});
        let grant = json!({"id": "p2", "roles": ["read"],
            "grantedToV2": {"user": {"id": "u1", "displayName": "Adele Vance", "email": "adele@contoso.com"}}});
        let org = json!({"id": "p3", "roles": ["read"], "expirationDateTime": "2026-12-31T00:00:00Z",
            "link": {"type": "view", "scope": "organization"}});
        let old = json!({"path": "/Finance/Payroll.xlsx", "permissions": [grant, org]});
        let mut org2 = org.clone();
        org2["expirationDateTime"] = json!("2027-01-31T00:00:00Z");
        let new = json!({"path": "/Finance/Payroll.xlsx", "permissions": [link, org2]});
        let d = describe_change(
            "sharing",
            Some(&old),
            Some(&new),
            &when_words("2026-11-29T05:00:00Z", "2026-11-30T05:00:00Z"),
        );
        assert_eq!(d, [
            "anonymous edit link added to /Finance/Payroll.xlsx between 2026-11-29 and 2026-11-30",
            "organization-wide view link expiring 2027-01-31 on /Finance/Payroll.xlsx changed between 2026-11-29 and 2026-11-30: expirationDateTime \"2026-12-31T00:00:00Z\" → \"2027-01-31T00:00:00Z\"",
            "grant to Adele Vance (read) removed from /Finance/Payroll.xlsx between 2026-11-29 and 2026-11-30",
        ]);
        // A whole sharing item appearing or going: every permission in it.
        let gone = describe_change("sharing", Some(&old), None, "on 2026-11-30");
        assert_eq!(gone.len(), 2);
        assert!(gone[0].starts_with(
            "grant to Adele Vance (read) removed from /Finance/Payroll.xlsx on 2026-11-30"
        ));
        assert!(describe_change("user", Some(&old), Some(&new), "on x").is_empty());
    }
}
