//! JSON batching: at most 20 requests, unique ids (case-insensitive), `dependsOn` → 424,
//! per-item throttling with inner `Retry-After`, outer 200, responses possibly reordered.

use crate::http::{Body, Req, Resp};
use crate::server::{serve, Inner};
use crate::util::{self, Rng};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

fn batch_error(msg: &str) -> Resp {
    Resp::error(400, "BadRequest", msg)
}

pub async fn run(sim: &Arc<Inner>, outer: &Req) -> Resp {
    sim.stats().batch_requests += 1;
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&outer.body) else {
        return batch_error("Invalid batch payload format.");
    };
    let Some(Value::Array(items)) = body.get("requests") else {
        return batch_error("Invalid batch payload format: 'requests' is required.");
    };
    if items.is_empty() {
        return batch_error("The batch must contain at least one request.");
    }
    if items.len() > 20 {
        return batch_error("Number of batch requests exceeds the maximum of 20.");
    }
    let mut ids: Vec<String> = vec![];
    for it in items {
        let (Some(id), Some(_), Some(_)) = (
            it.get("id").and_then(id_str),
            it.get("method").and_then(Value::as_str),
            it.get("url").and_then(Value::as_str),
        ) else {
            return batch_error("Every batch request needs id, method and url.");
        };
        if ids.iter().any(|x| x.eq_ignore_ascii_case(&id)) {
            return batch_error(&format!(
                "Batch request ids must be unique (case-insensitive); '{id}' is duplicated."
            ));
        }
        ids.push(id);
    }
    for it in items {
        if let Some(Value::Array(deps)) = it.get("dependsOn") {
            for d in deps {
                let d = id_str(d).unwrap_or_default();
                if !ids.iter().any(|x| x.eq_ignore_ascii_case(&d)) {
                    return batch_error(&format!(
                        "dependsOn references an unknown request id '{d}'."
                    ));
                }
            }
        }
    }
    sim.stats().batch_items += items.len() as u64;
    let mut results: HashMap<String, Value> = HashMap::new();
    let mut status_of: HashMap<String, u16> = HashMap::new();
    let mut pending: Vec<&Value> = items.iter().collect();
    while !pending.is_empty() {
        let before = pending.len();
        let mut next = vec![];
        for it in pending {
            let id = it.get("id").and_then(id_str).unwrap_or_default();
            let deps: Vec<String> = it
                .get("dependsOn")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(id_str)
                        .map(|s| s.to_ascii_lowercase())
                        .collect()
                })
                .unwrap_or_default();
            if deps.iter().any(|d| !status_of.contains_key(d)) {
                next.push(it);
                continue;
            }
            let failed = deps
                .iter()
                .any(|d| status_of.get(d).is_some_and(|s| *s >= 400));
            let resp = if failed {
                Resp::error(
                    424,
                    "FailedDependency",
                    "The request depends on a request that failed.",
                )
            } else {
                run_item(sim, outer, it).await
            };
            status_of.insert(id.to_ascii_lowercase(), resp.status);
            results.insert(id.clone(), item_json(&id, resp));
        }
        if next.len() == before {
            // A dependency cycle: fail the rest.
            for it in &next {
                let id = it.get("id").and_then(id_str).unwrap_or_default();
                status_of.insert(id.to_ascii_lowercase(), 424);
                results.insert(
                    id.clone(),
                    item_json(
                        &id,
                        Resp::error(424, "FailedDependency", "Circular dependsOn."),
                    ),
                );
            }
            break;
        }
        pending = next;
    }
    let mut order: Vec<String> = ids.clone();
    if sim.cfg.batch_shuffle {
        let n = sim
            .batch_counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut rng = Rng::derive(sim.cfg.seed ^ n, "batch");
        for i in (1..order.len()).rev() {
            let j = rng.below(i + 1);
            order.swap(i, j);
        }
    }
    let responses: Vec<Value> = order.iter().filter_map(|id| results.remove(id)).collect();
    Resp::ok(json!({"responses": responses}))
}

fn id_str(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

async fn run_item(sim: &Arc<Inner>, outer: &Req, it: &Value) -> Resp {
    let method = it
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or("GET")
        .to_ascii_uppercase();
    let mut url = it
        .get("url")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    for prefix in [
        "https://graph.microsoft.com/v1.0",
        "https://graph.microsoft.com/beta",
        &format!("{}/{}", outer.base, outer.version),
    ] {
        if let Some(rest) = url.strip_prefix(prefix) {
            url = rest.to_string();
        }
    }
    let url = format!("/{}/{}", outer.version, url.trim_start_matches('/'));
    let mut headers: Vec<(String, String)> = it
        .get("headers")
        .and_then(Value::as_object)
        .map(|h| {
            h.iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    let body = match it.get("body") {
        None | Some(Value::Null) => vec![],
        Some(b) => {
            let Some(ct) = headers
                .iter()
                .find(|(k, _)| k == "content-type")
                .map(|(_, v)| v.to_ascii_lowercase())
            else {
                return Resp::error(
                    400,
                    "BadRequest",
                    "Content-Type header must be specified for a request with a body.",
                );
            };
            match b {
                Value::String(s) if !ct.contains("json") => {
                    util::b64_decode(s).unwrap_or_else(|| s.as_bytes().to_vec())
                }
                other => serde_json::to_vec(other).unwrap_or_default(),
            }
        }
    };
    headers.push((
        "authorization".into(),
        outer.header("authorization").unwrap_or("").to_string(),
    ));
    let mut req = Req::parse(&method, &url, headers, body, &outer.base);
    req.app = outer.app.clone();
    req.request_id = crate::http::request_id();
    let fault = sim.faults().pick(&method, &url);
    if let Some(f) = fault {
        use crate::faults::FaultKind;
        sim.stats().faults_injected += 1;
        match f {
            FaultKind::ServerError {
                status,
                retry_after,
            } => {
                let mut r = Resp::error(
                    status,
                    "serviceNotAvailable",
                    "The service is temporarily unavailable (injected fault).",
                );
                if let Some(s) = retry_after {
                    r = r.with_header("Retry-After", crate::throttle::fmt_secs(s));
                }
                return r;
            }
            FaultKind::Throttle { retry_after } => {
                sim.stats().throttled += 1;
                return crate::throttle::too_many(
                    retry_after,
                    "Tenant_Application",
                    false,
                    &sim.client_id,
                    "",
                    "ResourceUnitLimitExceeded",
                );
            }
            FaultKind::DropConnection => {
                return Resp::error(
                    500,
                    "generalException",
                    "Internal server error (injected connection drop inside a batch).",
                )
            }
            FaultKind::ExpiredToken => {
                return Resp::error(
                    401,
                    "InvalidAuthenticationToken",
                    "Lifetime validation failed, the token is expired.",
                )
            }
            FaultKind::Resync => {
                return Resp::error(410, "resyncRequired", "The delta token is no longer valid.")
            }
            FaultKind::Error {
                status,
                code,
                message,
            } => {
                let msg = if message.is_empty() {
                    "Injected error."
                } else {
                    message.as_str()
                };
                return Resp::error(status, &code, msg);
            }
            FaultKind::DropAnswer => {
                serve(sim, &req, false).await;
                return Resp::error(
                    500,
                    "generalException",
                    "Internal server error (injected: the request was served, its answer lost).",
                );
            }
            FaultKind::Slow { .. } => {}
        }
    }
    serve(sim, &req, false).await
}

fn item_json(id: &str, r: Resp) -> Value {
    let mut headers = Map::new();
    for (k, v) in &r.headers {
        if matches!(k.as_str(), "request-id" | "client-request-id") {
            continue;
        }
        headers.insert(k.clone(), json!(v));
    }
    let body = match r.body {
        Body::Json(v) => {
            headers.insert("Content-Type".into(), json!("application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"));
            v
        }
        Body::Bytes(b, ct) => {
            headers.insert("Content-Type".into(), json!(ct));
            if ct.starts_with("text/") {
                json!(String::from_utf8_lossy(&b))
            } else {
                json!(util::b64(&b))
            }
        }
        Body::Empty | Body::Drop => Value::Null,
    };
    let mut out = json!({"id": id, "status": r.status, "headers": headers});
    if !body.is_null() {
        out["body"] = body;
    }
    out
}
