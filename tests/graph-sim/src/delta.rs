//! Delta queries for directory collections: a change sequence per object plus tombstones, so an
//! incremental round returns exactly the objects changed since the token.

use crate::http::{Req, Resp};
use crate::model::*;
use crate::query;
use crate::render;
use crate::state::{Tenant, MANAGER, MEMBERS};
use crate::util;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Members emitted per group entry; larger groups repeat across entries/pages.
pub const MEMBER_SLICE: usize = 1000;

fn sync_state_not_found() -> Resp {
    Resp::error(
        400,
        "syncStateNotFound",
        "The sync state generation is not found. The delta token is expired and data must be synchronized again.",
    )
}

/// `GET /{collection}/delta`.
pub fn delta(t: &mut Tenant, req: &Req, kind: Kind) -> Resp {
    let now = t.now();
    let ttl = t.cfg.delta_token_ttl.as_secs() as i64;
    let bad_token = || {
        Resp::error(
            400,
            "Request_BadRequest",
            "The delta token is invalid or malformed.",
        )
    };
    if req.q("$orderby").is_some() {
        return Resp::bad_request("$orderby is not supported with delta queries.");
    }
    if req
        .q("$deltatoken")
        .is_some_and(|t| t.eq_ignore_ascii_case("latest"))
    {
        let ids = match filter_ids(req) {
            Ok(i) => i,
            Err(e) => return e,
        };
        let select_raw = req.q("$select").map(str::to_string);
        return delta_link_only(req, kind, t.seq, select_raw, ids, now);
    }
    // A deltatoken starts a round, a skiptoken continues one; both are checked for expiry.
    let continuing = req.q("$deltatoken").is_none() && req.q("$skiptoken").is_some();
    let state = match req.q("$deltatoken").or(req.q("$skiptoken")) {
        Some(tok) => {
            let Some(v) = util::decode_token(tok).filter(|v| v["k"] == json!(kind.name())) else {
                return bad_token();
            };
            if now - v["t"].as_i64().unwrap_or(0) > ttl {
                return sync_state_not_found();
            }
            Some(v)
        }
        None => None,
    };
    // since (exclusive), until (inclusive), cursor id, member offset, $select, id filter, $expand.
    let (since, until, cursor, moff, select_raw, ids, expand_raw) = match &state {
        Some(v) => (
            v["s"].as_u64().unwrap_or(0),
            if continuing {
                v["u"].as_u64().unwrap_or(0)
            } else {
                t.seq
            },
            v["c"].as_str().map(str::to_string),
            v["m"].as_u64().unwrap_or(0) as usize,
            v["sel"].as_str().map(str::to_string),
            ids_of(v),
            v["x"].as_str().map(str::to_string),
        ),
        None => {
            let ids = match filter_ids(req) {
                Ok(i) => i,
                Err(e) => return e,
            };
            (
                0,
                t.seq,
                None,
                0,
                req.q("$select").map(str::to_string),
                ids,
                req.q("$expand").map(str::to_string),
            )
        }
    };
    let select = match render::parse_select(kind, select_raw.as_deref(), false) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let with_members = matches!(
        kind,
        Kind::Group | Kind::DirectoryRole | Kind::AdministrativeUnit
    ) && (select.is_none()
        || select
            .as_ref()
            .is_some_and(|s| s.iter().any(|x| x.eq_ignore_ascii_case("members")))
        || expand_raw
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case("members")));
    let with_manager = kind == Kind::User
        && select
            .as_ref()
            .is_some_and(|s| s.iter().any(|x| x.eq_ignore_ascii_case("manager")));
    let minimal = req.prefers("return=minimal") && since > 0;
    let page_size = req
        .prefer_value("odata.maxpagesize")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(1, 999);

    let mut values: Vec<Value> = vec![];
    let mut next: Option<(String, usize)> = None;
    let range_start = cursor.clone();
    let map = t.map(kind);
    let iter: Box<dyn Iterator<Item = (&Id, &Stored)>> = match &range_start {
        Some(c) => Box::new(map.range::<str, _>((
            std::ops::Bound::Included(c.as_str()),
            std::ops::Bound::Unbounded,
        ))),
        None => Box::new(map.iter()),
    };
    for (id, o) in iter {
        if o.seq <= since || o.seq > until {
            continue;
        }
        if let Some(ids) = &ids {
            if !ids.iter().any(|x| x == &**id) {
                continue;
            }
        }
        let entry_members: Vec<(Id, bool)> = if with_members {
            if since == 0 || o.created_seq > since {
                o.link(MEMBERS)
                    .filter(|m| t.find_live(m).is_some())
                    .map(|m| (m.clone(), true))
                    .collect()
            } else {
                let mut net: BTreeMap<Id, bool> = BTreeMap::new();
                for (seq, m, added) in &o.member_log {
                    if *seq > since && *seq <= until {
                        net.insert(m.clone(), *added);
                    }
                }
                net.into_iter().collect()
            }
        } else {
            vec![]
        };
        // manager@delta (users, when $select names manager).
        let manager_delta: Option<Vec<Value>> = (with_manager && o.is_live()).then(|| {
            let entries: Vec<(Id, bool)> = if since == 0 || o.created_seq > since {
                o.link(MANAGER).map(|m| (m.clone(), true)).collect()
            } else {
                let mut net: BTreeMap<Id, bool> = BTreeMap::new();
                for (seq, m, set) in &o.manager_log {
                    if *seq > since && *seq <= until {
                        net.insert(m.clone(), *set);
                    }
                }
                net.into_iter().collect()
            };
            entries
                .into_iter()
                .map(|(m, set)| {
                    let mut e = json!({"@odata.type": "#microsoft.graph.user", "id": &*m});
                    if !set {
                        e["@removed"] = json!({"reason": "deleted"});
                    }
                    e
                })
                .collect()
        });
        let removed = match o.life {
            Life::Live => None,
            Life::Deleted(_) => Some("changed"),
            Life::Gone => Some("deleted"),
        };
        if let Some(reason) = removed {
            if since > 0 && o.created_seq > since {
                continue; // created and removed within the window: the client never saw it
            }
            if values.len() >= page_size {
                next = Some((id.to_string(), 0));
                break;
            }
            values.push(json!({"id": &**id, "@removed": {"reason": reason}}));
            continue;
        }
        // Live object: full (or minimal) properties, members in slices.
        let start = if cursor.as_deref() == Some(&**id) {
            moff
        } else {
            0
        };
        let mut offset = start;
        loop {
            if values.len() >= page_size {
                next = Some((id.to_string(), offset));
                break;
            }
            let mut m: Map<String, Value> = if offset > 0 {
                // Continuation slice: the id and the next members only.
                let mut m = Map::new();
                m.insert("id".into(), json!(&**id));
                m
            } else if minimal && o.created_seq <= since {
                let mut m = Map::new();
                m.insert("id".into(), json!(&**id));
                for (p, s) in &o.prop_seq {
                    if *s > since && select.as_ref().is_none_or(|sel| sel.iter().any(|x| x == p)) {
                        m.insert(p.clone(), render::prop(o, p));
                    }
                }
                m
            } else {
                let sel: Option<Vec<String>> = select.as_ref().map(|s| {
                    s.iter()
                        .filter(|x| {
                            !x.eq_ignore_ascii_case("members") && !x.eq_ignore_ascii_case("manager")
                        })
                        .cloned()
                        .collect()
                });
                render::render(o, sel.as_deref())
            };
            let slice: Vec<Value> = entry_members
                .iter()
                .skip(offset)
                .take(MEMBER_SLICE)
                .map(|(mid, added)| {
                    let ty = t
                        .kind_of
                        .get(mid)
                        .map(|k| k.odata_type_name())
                        .unwrap_or("user");
                    let mut e =
                        json!({"@odata.type": format!("#microsoft.graph.{ty}"), "id": &**mid});
                    if !added {
                        e["@removed"] = json!({"reason": "deleted"});
                    }
                    e
                })
                .collect();
            let n = slice.len();
            if with_members && (n > 0 || (offset == 0 && !entry_members.is_empty())) {
                m.insert("members@delta".into(), Value::Array(slice));
            }
            if let (0, Some(md)) = (offset, &manager_delta) {
                if !md.is_empty() {
                    m.insert("manager@delta".into(), Value::Array(md.clone()));
                }
            }
            values.push(Value::Object(m));
            offset += n;
            if offset >= entry_members.len() {
                break;
            }
        }
        if next.is_some() {
            break;
        }
    }
    let objects = values.len();
    let ctx = render::context(
        &req.base,
        &req.version,
        kind.context(),
        if cursor.is_none() {
            select.as_deref()
        } else {
            None
        },
        false,
    );
    let mut out = Map::new();
    out.insert("@odata.context".into(), json!(ctx));
    let base = format!(
        "{}/{}/{}/delta",
        req.base,
        req.version,
        collection_path(kind)
    );
    match next {
        Some((c, m)) => {
            let tok = util::encode_token(
                &json!({"k": kind.name(), "s": since, "u": until, "c": c, "m": m, "sel": select_raw, "x": expand_raw, "f": ids, "t": now}),
            );
            out.insert(
                "@odata.nextLink".into(),
                json!(format!("{base}?$skiptoken={tok}")),
            );
        }
        None => {
            let tok = util::encode_token(
                &json!({"k": kind.name(), "s": until, "sel": select_raw, "x": expand_raw, "f": ids, "t": now}),
            );
            out.insert(
                "@odata.deltaLink".into(),
                json!(format!("{base}?$deltatoken={tok}")),
            );
        }
    }
    out.insert("value".into(), Value::Array(values));
    Resp::ok(Value::Object(out)).with_objects(objects)
}

fn collection_path(kind: Kind) -> &'static str {
    match kind {
        Kind::AdministrativeUnit => "administrativeUnits",
        k => k.name(),
    }
}

fn ids_of(v: &Value) -> Option<Vec<String>> {
    v["f"].as_array().map(|a| {
        a.iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect()
    })
}

fn filter_ids(req: &Req) -> Result<Option<Vec<String>>, Resp> {
    let Some(f) = req.q("$filter") else {
        return Ok(None);
    };
    let e = query::parse_filter(f)
        .map_err(|m| Resp::bad_request(&format!("Invalid filter clause: {m}")))?;
    match query::id_list(&e) {
        Some(ids) if ids.len() <= 50 => Ok(Some(ids)),
        Some(_) => Err(Resp::bad_request("Delta $filter supports at most 50 ids.")),
        None => Err(Resp::error(
            400,
            "Request_UnsupportedQuery",
            "Delta queries support $filter only as \"id eq '...' or ...\".",
        )),
    }
}

fn delta_link_only(
    req: &Req,
    kind: Kind,
    since: u64,
    sel: Option<String>,
    ids: Option<Vec<String>>,
    now: i64,
) -> Resp {
    let tok = util::encode_token(
        &json!({"k": kind.name(), "s": since, "sel": sel, "x": req.q("$expand"), "f": ids, "t": now}),
    );
    Resp::ok(json!({
        "@odata.context": render::context(&req.base, &req.version, kind.context(), None, false),
        "@odata.deltaLink": format!("{}/{}/{}/delta?$deltatoken={tok}", req.base, req.version, collection_path(kind)),
        "value": []
    }))
}
