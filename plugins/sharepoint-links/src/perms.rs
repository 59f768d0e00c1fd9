//! Permissions of a drive item: how they are stored, and how a snapshot's permission is matched
//! with a live one (link URLs and permission ids change when a link is re-created, so matching
//! is by what the permission grants, not by id).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// "No expiry" as Graph writes it.
pub const NO_EXPIRY: &str = "0001-01-01T00:00:00Z";

/// A permission as stored in a `sharing` item: Graph's object without annotations
/// (`@deprecated.*`) and without the deprecated duplicates `grantedTo` / `grantedToIdentities`
/// (their V2 forms carry the same and more).
pub fn normalize(p: &Value) -> Value {
    let mut m: Map<String, Value> = p.as_object().cloned().unwrap_or_default();
    m.retain(|k, _| !k.starts_with('@') && k != "grantedTo" && k != "grantedToIdentities");
    Value::Object(m)
}

/// Permissions sorted by id (a stable body: Graph's order is not guaranteed).
pub fn normalize_all(list: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = list.iter().map(normalize).collect();
    out.sort_by(|a, b| str_of(a, "id").cmp(str_of(b, "id")));
    out
}

pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Who a grant or a specific-people link names: a directory id (user or group) when Graph
/// gives one, else an e-mail address (external guests, pending invitations).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Principal {
    /// Directory object id (may be re-mapped by an Entra restore).
    pub id: Option<String>,
    /// Lower-cased e-mail address.
    pub email: Option<String>,
    pub display: String,
}

impl Principal {
    /// From a `grantedToV2` / `grantedToIdentitiesV2` entry (`user`, `group`, `siteUser`,
    /// `siteGroup`), falling back to the permission's `invitation.email`.
    pub fn of(identity: &Value, invitation: Option<&Value>) -> Option<Principal> {
        let mut id = None;
        let mut email = None;
        let mut display = String::new();
        for facet in ["user", "group", "siteUser", "siteGroup"] {
            let Some(f) = identity.get(facet) else {
                continue;
            };
            if id.is_none() && matches!(facet, "user" | "group") {
                id = Some(str_of(f, "id").to_string()).filter(|s| !s.is_empty());
            }
            if email.is_none() {
                email = Some(str_of(f, "email").to_ascii_lowercase()).filter(|s| !s.is_empty());
            }
            if display.is_empty() {
                display = str_of(f, "displayName").to_string();
            }
        }
        if email.is_none() {
            email = invitation
                .map(|i| str_of(i, "email").to_ascii_lowercase())
                .filter(|s| !s.is_empty());
        }
        if id.is_none() && email.is_none() {
            return None;
        }
        if display.is_empty() {
            display = email.clone().or_else(|| id.clone()).unwrap_or_default();
        }
        Some(Principal { id, email, display })
    }

    /// The same principal after the restore's id re-mapping.
    pub fn remapped(&self, map: &dyn Fn(&str) -> String) -> Principal {
        Principal {
            id: self.id.as_deref().map(map),
            ..self.clone()
        }
    }

    /// Same principal: equal ids when both have one, else equal e-mail addresses.
    pub fn same(&self, other: &Principal) -> bool {
        match (&self.id, &other.id) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            _ => self.email.is_some() && self.email == other.email,
        }
    }

    /// Graph's `driveRecipient` for `invite` / `createLink`.
    pub fn recipient(&self) -> Value {
        match (&self.id, &self.email) {
            (Some(id), _) => serde_json::json!({ "objectId": id }),
            (None, Some(e)) => serde_json::json!({ "email": e }),
            (None, None) => serde_json::json!({}),
        }
    }
}

/// What a direct permission grants; inherited permissions and the owner's are not restorable
/// sharing and classify as `None`.
#[derive(Debug, Clone, PartialEq)]
pub enum Perm {
    /// A sharing link.
    Link {
        id: String,
        link_type: String,
        scope: String,
        /// For specific-people links: who it was shared with.
        grantees: Vec<Principal>,
        expiration: Option<String>,
        has_password: bool,
    },
    /// A direct grant (invite).
    Grant {
        id: String,
        principal: Principal,
        roles: BTreeSet<String>,
    },
}

impl Perm {
    pub fn classify(p: &Value) -> Option<Perm> {
        if p.get("inheritedFrom").is_some_and(|v| !v.is_null()) {
            return None;
        }
        let roles: BTreeSet<String> = p
            .get("roles")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if roles.contains("owner") {
            return None;
        }
        let id = str_of(p, "id").to_string();
        let expiration = Some(str_of(p, "expirationDateTime").to_string())
            .filter(|e| !e.is_empty() && e != NO_EXPIRY);
        if let Some(link) = p.get("link").filter(|l| l.is_object()) {
            let grantees = p
                .get("grantedToIdentitiesV2")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|g| Principal::of(g, None)).collect())
                .unwrap_or_default();
            return Some(Perm::Link {
                id,
                link_type: str_of(link, "type").to_string(),
                scope: str_of(link, "scope").to_string(),
                grantees,
                expiration,
                has_password: p.get("hasPassword").and_then(Value::as_bool) == Some(true),
            });
        }
        let principal = p
            .get("grantedToV2")
            .and_then(|g| Principal::of(g, p.get("invitation")))
            .or_else(|| {
                p.get("invitation")
                    .and_then(|i| Principal::of(&serde_json::json!({}), Some(i)))
            })?;
        Some(Perm::Grant {
            id,
            principal,
            roles,
        })
    }

    pub fn id(&self) -> &str {
        match self {
            Perm::Link { id, .. } | Perm::Grant { id, .. } => id,
        }
    }

    /// Does the live permission `live` give what this (snapshot) permission gave? Snapshot ids
    /// of principals go through `map` (the restore's re-mapping) first.
    pub fn matches(&self, live: &Perm, map: &dyn Fn(&str) -> String) -> bool {
        match (self, live) {
            (
                Perm::Link {
                    link_type: t1,
                    scope: s1,
                    grantees: g1,
                    ..
                },
                Perm::Link {
                    link_type: t2,
                    scope: s2,
                    grantees: g2,
                    ..
                },
            ) => {
                t1 == t2
                    && s1 == s2
                    && g1.len() == g2.len()
                    && g1
                        .iter()
                        .all(|a| g2.iter().any(|b| a.remapped(map).same(b)))
            }
            (
                Perm::Grant {
                    principal: p1,
                    roles: r1,
                    ..
                },
                Perm::Grant {
                    principal: p2,
                    roles: r2,
                    ..
                },
            ) => r1 == r2 && p1.remapped(map).same(p2),
            _ => false,
        }
    }

    /// The permission in words: "anonymous edit link", "write grant to Adele Vance".
    pub fn words(&self) -> String {
        match self {
            Perm::Link {
                link_type,
                scope,
                grantees,
                has_password,
                expiration,
                ..
            } => {
                let mut s = format!("{} {link_type} link", scope_words(scope));
                if !grantees.is_empty() {
                    let names: Vec<&str> = grantees.iter().map(|g| g.display.as_str()).collect();
                    s.push_str(&format!(" for {}", names.join(", ")));
                }
                if *has_password {
                    s.push_str(" (password-protected)");
                }
                if let Some(e) = expiration {
                    s.push_str(&format!(" expiring {}", &e[..e.len().min(10)]));
                }
                s
            }
            Perm::Grant {
                principal, roles, ..
            } => {
                let r: Vec<&str> = roles.iter().map(String::as_str).collect();
                format!("{} grant to {}", r.join("+"), principal.display)
            }
        }
    }

    /// A stable key for action ids: what the permission grants, without its id.
    pub fn key(&self) -> String {
        match self {
            Perm::Link {
                link_type,
                scope,
                grantees,
                ..
            } => {
                let mut k = format!("link-{link_type}-{scope}");
                let mut who: Vec<String> = grantees.iter().map(principal_key).collect();
                who.sort();
                for w in who {
                    k.push('-');
                    k.push_str(&w);
                }
                k
            }
            Perm::Grant {
                principal, roles, ..
            } => {
                let r: Vec<&str> = roles.iter().map(String::as_str).collect();
                format!("grant-{}-{}", principal_key(principal), r.join("+"))
            }
        }
    }
}

fn principal_key(p: &Principal) -> String {
    p.id.clone().or_else(|| p.email.clone()).unwrap_or_default()
}

/// "anonymous", "organization-wide", "specific-people", "existing-access".
pub fn scope_words(scope: &str) -> &str {
    match scope {
        "organization" => "organization-wide",
        "users" => "specific-people",
        "existingAccess" => "existing-access",
        other => other,
    }
}

/// The driveItem's path under its drive root: `/Finance/Payroll.xlsx`, `/` for the root.
/// Graph gives the parent's path as `/drive/root:/Finance` (or `/drives/{id}/root:/Finance`).
pub fn item_path(item: &Value) -> String {
    if item.get("root").is_some() {
        return "/".into();
    }
    let name = str_of(item, "name");
    let parent = item
        .get("parentReference")
        .and_then(|p| p.get("path"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let under = match parent.find("root:") {
        Some(i) => &parent[i + 5..],
        None => "",
    };
    let under = under.trim_end_matches('/');
    format!("{under}/{name}")
}
