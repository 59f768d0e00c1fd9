//! Collection reads: `$select`, `$filter`, `$search`, `$count`, `$top`, `$expand`, keyset paging.

use crate::http::{Req, Resp};
use crate::model::*;
use crate::query;
use crate::render;
use crate::state::{Tenant, MEMBERS, OWNERS};
use serde_json::{json, Value};

pub struct ListSpec<'a> {
    /// Kind whose schema drives `$select`; `None` for mixed directoryObject lists.
    pub kind: Option<Kind>,
    /// The `@odata.context` set, e.g. `users` or `groups('id')/members`.
    pub context: String,
    pub default_top: usize,
    pub max_top: usize,
    /// Mixed lists render `@odata.type` on each entry.
    pub typed: bool,
    /// `directoryRoles` never page.
    pub no_paging: bool,
    /// Properties always rendered (e.g. `deletedDateTime` in the recycle bin).
    pub force: &'static [&'static str],
    pub source: Source<'a>,
}

/// The objects of a list.
pub enum Source<'a> {
    /// A relationship or filtered set (sorted by id here).
    List(Vec<&'a Stored>),
    /// A whole collection, already in id order, with a predicate (live objects, recycle bin):
    /// pages are read from the cursor on, without touching the rest.
    Map(
        &'a std::collections::BTreeMap<Id, Stored>,
        fn(&Stored) -> bool,
    ),
}

/// Renders an object for a list, resolving `$expand` (≤ 20 related objects, no nextLink).
pub fn render_for_list(
    t: &Tenant,
    o: &Stored,
    select: Option<&[String]>,
    expand: Option<&str>,
    typed: bool,
) -> Obj {
    let sel_for_kind: Option<Vec<String>> = select.map(|s| {
        s.iter()
            .filter(|p| schema(o.kind).has(p) || !typed)
            .cloned()
            .collect()
    });
    let mut m = render::render(o, sel_for_kind.as_deref());
    if typed {
        m.shift_insert(
            0,
            "@odata.type".into(),
            json!(format!("#microsoft.graph.{}", o.kind.odata_type_name())),
        );
    }
    if let Some(exp) = expand {
        for e in exp.split(',').map(str::trim) {
            let (rel, inner_sel) = match e.split_once('(') {
                Some((r, rest)) => (
                    r.trim(),
                    rest.trim_end_matches(')')
                        .strip_prefix("$select=")
                        .map(|s| s.split(',').map(str::to_string).collect::<Vec<_>>()),
                ),
                None => (e, None),
            };
            match rel.to_ascii_lowercase().as_str() {
                r @ ("members" | "owners") => {
                    let relname = if r == "members" { MEMBERS } else { OWNERS };
                    let list: Vec<Value> = o
                        .link(relname)
                        .filter_map(|id| t.render_ref(id, inner_sel.as_deref()))
                        .take(20)
                        .map(Value::Object)
                        .collect();
                    m.insert(r.to_string(), Value::Array(list));
                }
                "manager" => {
                    let mgr = o
                        .link("manager")
                        .next()
                        .and_then(|id| t.render_ref(id, inner_sel.as_deref()));
                    m.insert(
                        "manager".into(),
                        mgr.map(Value::Object).unwrap_or(Value::Null),
                    );
                }
                "principal" => {
                    let p = o
                        .str("principalId")
                        .and_then(|id| t.kind_of.get_key_value(id))
                        .and_then(|(id, _)| t.render_ref(id, inner_sel.as_deref()));
                    m.insert(
                        "principal".into(),
                        p.map(Value::Object).unwrap_or(Value::Null),
                    );
                }
                "roledefinition" => {
                    let d = o
                        .str("roleDefinitionId")
                        .and_then(|id| t.live(Kind::RoleDefinition, id))
                        .map(|d| render::render(d, None));
                    m.insert(
                        "roleDefinition".into(),
                        d.map(Value::Object).unwrap_or(Value::Null),
                    );
                }
                _ => {}
            }
        }
    }
    m
}

pub fn list(t: &Tenant, req: &Req, spec: ListSpec) -> Resp {
    let select = match spec.kind {
        Some(k) => match render::parse_select(k, req.q("$select"), false) {
            Ok(s) => s,
            Err(e) => return e,
        },
        None => req
            .q("$select")
            .map(|s| s.split(',').map(|x| x.trim().to_string()).collect()),
    };
    let filter = match query::filter_of(req) {
        Ok(f) => f,
        Err(e) => return e,
    };
    let advanced = req.eventual() && req.q("$count") == Some("true");
    let search = req.q("$search");
    if search.is_some() && !req.eventual() {
        return Resp::error(400, "Request_UnsupportedQuery", "Request with $search query parameter only works through MSGraph with a special request header: 'ConsistencyLevel: eventual'");
    }
    let expand = req.q("$expand");
    if expand.is_some() && (advanced || search.is_some()) {
        return Resp::error(400, "Request_UnsupportedQuery", "$expand is not supported together with advanced query options ($count, $search, ConsistencyLevel: eventual).");
    }
    if req.q("$skip").is_some() && matches!(spec.kind, Some(Kind::User | Kind::Group)) {
        return Resp::error(
            400,
            "Request_BadRequest",
            "'$skip' is not supported by the service.",
        );
    }
    let sign_in = select
        .as_ref()
        .is_some_and(|s| s.iter().any(|x| x == "signInActivity"));
    let max_top = if sign_in {
        spec.max_top.min(500)
    } else {
        spec.max_top
    };
    let top = match query::top_of(req, spec.default_top, max_top) {
        Ok(n) => n,
        Err(e) => return e,
    };
    // $orderby: displayName / userPrincipalName alone, anything else only as an advanced query.
    let order: Option<(String, bool)> = req.q("$orderby").map(|o| {
        let mut parts = o.split_whitespace();
        let prop = parts.next().unwrap_or("").to_string();
        let desc = parts.next().is_some_and(|d| d.eq_ignore_ascii_case("desc"));
        (prop, desc)
    });
    if let Some((prop, _)) = &order {
        let simple = matches!(prop.as_str(), "displayName" | "userPrincipalName")
            && filter.is_none()
            && search.is_none();
        if !simple && !advanced {
            return Resp::error(
                400,
                "Request_UnsupportedQuery",
                "Sorting not supported for current query.",
            );
        }
    }
    let cursor = match query::read_skiptoken(req) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let after = cursor.as_ref().and_then(|v| v.as_str().map(str::to_string));
    let offset = cursor.as_ref().and_then(Value::as_u64).unwrap_or(0) as usize;
    let first_page = cursor.is_none();
    let matches = |o: &Stored| {
        let get = |p: &str| {
            if p == "@odata.type" {
                // Named locations carry their own (derived) type; other objects their kind.
                match o.str("@odata.type") {
                    Some(ty) => json!(ty),
                    None => json!(format!("#microsoft.graph.{}", o.kind.odata_type_name())),
                }
            } else {
                render::prop(o, p)
            }
        };
        filter.as_ref().is_none_or(|f| query::eval(f, &get))
            && search.is_none_or(|s| query::search_matches(s, &get))
    };
    let sorted: Vec<&Stored> = match &spec.source {
        Source::List(v) => {
            let mut v = v.clone();
            v.sort_by(|a, b| a.id.cmp(&b.id));
            v
        }
        Source::Map(..) => vec![],
    };
    let count = if advanced && first_page {
        Some(match &spec.source {
            Source::List(_) => sorted.iter().filter(|o| matches(o)).count(),
            Source::Map(m, pred) => m.values().filter(|o| pred(o) && matches(o)).count(),
        })
    } else {
        None
    };
    let iter: Box<dyn Iterator<Item = &Stored>> = match (&spec.source, &after) {
        (Source::List(_), _) => Box::new(
            sorted
                .iter()
                .copied()
                .filter(|o| after.as_deref().is_none_or(|a| &*o.id > a)),
        ),
        (Source::Map(m, pred), Some(a)) => {
            let pred = *pred;
            Box::new(
                m.range::<str, _>((
                    std::ops::Bound::Excluded(a.as_str()),
                    std::ops::Bound::Unbounded,
                ))
                .map(|(_, o)| o)
                .filter(move |o| pred(o)),
            )
        }
        (Source::Map(m, pred), None) => {
            let pred = *pred;
            Box::new(m.values().filter(move |o| pred(o)))
        }
    };
    let mut page = vec![];
    let mut more = false;
    if let Some((prop, desc)) = &order {
        // Sorted reads page by offset over the sorted matches.
        let all: Vec<&Stored> = match (&spec.source, &after) {
            (Source::Map(m, pred), _) => m.values().filter(|o| pred(o)).collect(),
            (Source::List(_), _) => sorted.clone(),
        };
        let mut keyed: Vec<(String, &Stored)> = all
            .into_iter()
            .filter(|o| matches(o))
            .map(|o| {
                (
                    render::prop(o, prop).as_str().unwrap_or("").to_lowercase(),
                    o,
                )
            })
            .collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.id.cmp(&b.1.id)));
        if *desc {
            keyed.reverse();
        }
        more = keyed.len() > offset + top;
        page = keyed
            .into_iter()
            .skip(offset)
            .take(top)
            .map(|(_, o)| o)
            .collect();
        drop(iter);
    } else {
        for o in iter {
            if !matches(o) {
                continue;
            }
            if page.len() == top && !spec.no_paging {
                more = true;
                break;
            }
            page.push(o);
        }
    }
    let values: Vec<Value> = page
        .iter()
        .map(|o| {
            let mut m = render_for_list(t, o, select.as_deref(), expand, spec.typed);
            for p in spec.force {
                if !m.contains_key(*p) {
                    m.insert(p.to_string(), render::prop(o, p));
                }
            }
            Value::Object(m)
        })
        .collect();
    let n = values.len();
    let mut out = serde_json::Map::new();
    out.insert(
        "@odata.context".into(),
        json!(render::context(
            &req.base,
            &req.version,
            &spec.context,
            select.as_deref(),
            false
        )),
    );
    if let Some(c) = count {
        out.insert("@odata.count".into(), json!(c));
    }
    if more {
        let tok = if order.is_some() {
            query::make_skiptoken(req, &json!(offset + page.len()))
        } else {
            let last = page.last().map(|o| o.id.to_string()).unwrap_or_default();
            query::make_skiptoken(req, &json!(last))
        };
        let base = req.self_url_without(&["$skiptoken"]);
        let sep = if base.contains('?') { '&' } else { '?' };
        out.insert(
            "@odata.nextLink".into(),
            json!(format!("{base}{sep}$skiptoken={tok}")),
        );
    }
    out.insert("value".into(), Value::Array(values));
    Resp::ok(Value::Object(out)).with_objects(n)
}

/// `/$count` segments: need `ConsistencyLevel: eventual`.
pub fn count(req: &Req, n: usize) -> Resp {
    if !req.eventual() {
        return Resp::bad_request("$count is not currently supported.");
    }
    Resp::text(200, n.to_string(), "text/plain")
}

/// A single entity with `@odata.context`.
pub fn entity(t: &Tenant, req: &Req, o: &Stored) -> Resp {
    let select = match render::parse_select(o.kind, req.q("$select"), true) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let mut m = render_for_list(t, o, select.as_deref(), req.q("$expand"), false);
    m.shift_insert(
        0,
        "@odata.context".into(),
        json!(render::context(
            &req.base,
            &req.version,
            o.kind.context(),
            select.as_deref(),
            true
        )),
    );
    Resp::ok(Value::Object(m)).with_objects(1)
}
