//! Per-object relationship reads through `$batch`: one request per object and relationship, the
//! host packs them into Graph batches of 20 and retries throttled items; long lists are
//! followed page by page.

use cairn_sdk::graph::{self, Batch, Page};
use cairn_sdk::PluginError;
use serde_json::Value;

/// What a relationship read found for one object.
#[derive(Debug)]
pub enum Found {
    /// Every entry of the relationship.
    List(Vec<Value>),
    /// The object is gone (404): it was deleted between the listing and this read; the next
    /// run's delta reports the removal.
    Gone,
}

/// GETs every URL (collections) and returns all their values, in the order of `urls`.
/// A 403 becomes `PermissionDenied(permission)`.
pub fn get_collections(urls: &[String], permission: &str) -> Result<Vec<Found>, PluginError> {
    let mut batch = Batch::new();
    for u in urls {
        batch.push(graph::request("GET", u));
    }
    let responses = batch.send()?;
    if responses.len() != urls.len() {
        return Err(PluginError::Other(format!(
            "$batch returned {} responses for {} requests",
            responses.len(),
            urls.len()
        )));
    }
    let mut out = Vec::with_capacity(urls.len());
    for (url, resp) in urls.iter().zip(responses) {
        let label = format!("GET {}", url.split('?').next().unwrap_or(url));
        if resp.status == 404 {
            out.push(Found::Gone);
            continue;
        }
        let body = graph::json_or_error(&label, &resp).map_err(|e| forbidden_as(e, permission))?;
        let page = Page::parse(&body)?;
        let mut values = page.value;
        if let Some(next) = page.next_link {
            for more in graph::pages(&next) {
                values.extend(more.map_err(|e| forbidden_as(e, permission))?.value);
            }
        }
        out.push(Found::List(values));
    }
    Ok(out)
}

/// Maps Graph's 403 to the permission the type needs; other errors pass through.
pub fn forbidden_as(e: PluginError, permission: &str) -> PluginError {
    if graph::is_forbidden(&e) {
        PluginError::PermissionDenied(permission.to_string())
    } else {
        e
    }
}

/// A directory object reference as `$expand` returns it with `$select=id`:
/// `{"@odata.type": "#microsoft.graph.user", "id": "…"}`.
pub fn reference(v: &Value) -> Value {
    let mut m = serde_json::Map::new();
    if let Some(t) = v.get("@odata.type") {
        m.insert("@odata.type".into(), t.clone());
    }
    if let Some(id) = v.get("id") {
        m.insert("id".into(), id.clone());
    }
    Value::Object(m)
}

/// Drops OData control annotations that describe the response rather than the object
/// (`@odata.context`, `@odata.id`, `@odata.editLink`, …), keeping `@odata.type`.
pub fn strip_control(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.retain(|k, _| !k.starts_with("@odata.") || k == "@odata.type");
    }
    v
}
