//! What changed between two snapshots: items added, removed and changed, and for changed items
//! the attributes that changed, with old and new values.

use cairn_repository::{Repository, Snapshot};
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
    let mut items = Vec::new();
    let mut summary = DiffSummary::default();
    for t in d.tasks {
        for e in t.added {
            summary.added += 1;
            items.push(ItemChange {
                change: "added",
                task: t.task.clone(),
                kind: e.kind,
                id: e.id,
                name: e.name,
                attributes: Vec::new(),
            });
        }
        for e in t.removed {
            summary.removed += 1;
            items.push(ItemChange {
                change: "removed",
                task: t.task.clone(),
                kind: e.kind,
                id: e.id,
                name: e.name,
                attributes: Vec::new(),
            });
        }
        for (a, b) in t.changed {
            summary.changed += 1;
            let attrs = if attributes {
                let old_body = repo.read_item(&a)?;
                let new_body = repo.read_item(&b)?;
                attribute_changes(&old_body, &new_body)
            } else {
                Vec::new()
            };
            items.push(ItemChange {
                change: "changed",
                task: t.task.clone(),
                kind: b.kind,
                id: b.id,
                name: b.name,
                attributes: attrs,
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
}
