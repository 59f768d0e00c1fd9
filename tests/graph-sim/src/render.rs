//! Rendering stored objects as Graph does: default property sets, `$select`, defaults for unset
//! properties, write-only and conditional properties.

use crate::http::Resp;
use crate::model::*;
use serde_json::{json, Value};

/// Parses `$select` (comma-separated, case-insensitive names resolved to the schema's spelling).
pub fn parse_select(
    kind: Kind,
    raw: Option<&str>,
    single: bool,
) -> Result<Option<Vec<String>>, Resp> {
    let Some(raw) = raw else { return Ok(None) };
    let schema = schema(kind);
    let mut out = vec![];
    for name in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if name == "*" {
            return Ok(Some(schema.props.keys().cloned().collect()));
        }
        let resolved = schema
            .props
            .keys()
            .find(|k| k.eq_ignore_ascii_case(name))
            .cloned();
        let name = match resolved {
            Some(n) => n,
            None if kind == Kind::NamedLocation
                || name.starts_with("extension_")
                || name.contains('/')
                || name.eq_ignore_ascii_case("members")
                || name.eq_ignore_ascii_case("owners")
                || name.eq_ignore_ascii_case("manager") =>
            {
                name.to_string()
            }
            None => {
                return Err(Resp::bad_request(&format!(
                    "Could not find a property named '{name}' on type 'microsoft.graph.{}'.",
                    kind.odata_type_name()
                )))
            }
        };
        if !single && schema.single_only.contains(&name.as_str()) {
            return Err(Resp::not_implemented());
        }
        out.push(name);
    }
    Ok(Some(out))
}

/// Value of a property as Graph would return it (stored or default).
pub fn prop(o: &Stored, name: &str) -> Value {
    if name == "id" {
        return json!(&*o.id);
    }
    let lazy = if o.lazy.is_some() && !o.data.contains_key(name) {
        o.lazy_prop(name)
    } else {
        None
    };
    let schema = schema(o.kind);
    match (o.data.get(name).or(lazy.as_ref()), schema.props.get(name)) {
        (Some(v), Some(d)) => fill_defaults(v, d),
        (Some(v), None) => v.clone(),
        (None, Some(d)) => d.clone(),
        (None, None) => {
            if o.kind == Kind::NamedLocation {
                let t = o.str("@odata.type").unwrap_or("");
                named_location_template(t)
                    .get(name)
                    .cloned()
                    .unwrap_or(Value::Null)
            } else {
                Value::Null
            }
        }
    }
}

/// Renders an object. `select`: `None` = the default property set.
pub fn render(o: &Stored, select: Option<&[String]>) -> Obj {
    let schema = schema(o.kind);
    let mut m = Obj::new();
    if o.kind == Kind::NamedLocation {
        if let Some(t) = o.data.get("@odata.type") {
            m.insert("@odata.type".into(), t.clone());
        }
    }
    m.insert("id".into(), json!(&*o.id));
    match select {
        None => {
            for name in &schema.defaults {
                if name != "id" {
                    m.insert(name.clone(), prop(o, name));
                }
            }
        }
        Some(sel) => {
            for name in schema.props.keys() {
                if name != "id" && sel.iter().any(|s| s == name) {
                    m.insert(name.clone(), prop(o, name));
                }
            }
        }
    }
    if o.kind == Kind::NamedLocation {
        let t = o.str("@odata.type").unwrap_or("").to_string();
        if let Value::Object(tpl) = named_location_template(&t) {
            for k in tpl.keys() {
                if select.is_none_or(|s| s.iter().any(|x| x == k)) {
                    m.insert(k.clone(), prop(o, k));
                }
            }
        }
    }
    // Properties stored outside the schema (extension attributes, open types).
    for (k, v) in &o.data {
        if k.starts_with('@') || m.contains_key(k) || schema.has(k) {
            continue;
        }
        let include = match select {
            Some(sel) => sel.iter().any(|s| s == k),
            None => o.kind != Kind::User && !k.starts_with("extension_"),
        };
        if include {
            m.insert(k.clone(), v.clone());
        }
    }
    if let Some(sel) = select {
        for s in sel {
            if !m.contains_key(s)
                && !s.contains('/')
                && !matches!(s.as_str(), "members" | "owners" | "manager")
            {
                m.insert(s.clone(), Value::Null);
            }
        }
    }
    // Secrets are never returned; certificate keys only with $select=keyCredentials.
    if let Some(Value::Array(creds)) = m.get_mut("passwordCredentials") {
        for c in creds.iter_mut() {
            if let Some(c) = c.as_object_mut() {
                c.insert("secretText".into(), Value::Null);
            }
        }
    }
    let key_selected = select.is_some_and(|s| s.iter().any(|x| x == "keyCredentials"));
    if !key_selected {
        if let Some(Value::Array(creds)) = m.get_mut("keyCredentials") {
            for c in creds.iter_mut() {
                if let Some(c) = c.as_object_mut() {
                    c.insert("key".into(), Value::Null);
                }
            }
        }
    }
    m
}

/// `@odata.context` for a collection or entity.
pub fn context(
    base: &str,
    version: &str,
    set: &str,
    select: Option<&[String]>,
    entity: bool,
) -> String {
    let mut s = format!("{base}/{version}/$metadata#{set}");
    if let Some(sel) = select {
        s.push('(');
        s.push_str(&sel.join(","));
        s.push(')');
    }
    if entity {
        s.push_str("/$entity");
    }
    s
}
