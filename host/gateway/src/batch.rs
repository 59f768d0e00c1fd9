//! JSON batching: any number of requests as `$batch` calls of at most 20, with `dependsOn`,
//! responses matched back by id, and throttled items re-sent after the longest `Retry-After`.
//!
//! A `$batch` call whose items are all identity reads (or ask for it with
//! `x-ms-throttle-priority: low`) is low priority: paced by the identity budget (see the
//! `pacer` module) and sent with `x-ms-throttle-priority: low`, on the call and on each item.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use cairn_runtime::{BatchItem, HttpResponse};
use serde_json::{json, Map, Value};

use crate::client::{allowed_header, error_summary, Outgoing, Received};
use crate::error::GatewayError;
use crate::pacer::{self, Priority, PRIORITY_HEADER};
use crate::retry;
use crate::stats::Counters;
use crate::{header, Inner};

/// Graph's limit of requests per `$batch`.
pub const MAX_BATCH: usize = 20;

struct Prepared {
    version: String,
    method: String,
    /// Relative to the version root: `/users?$top=5`.
    url: String,
    headers: Map<String, Value>,
    body: Option<Value>,
    depends_on: Vec<usize>,
    mailbox: Option<String>,
    /// SharePoint resource units the item costs (None: not SharePoint).
    sharepoint_cost: Option<u32>,
    idempotent: bool,
    /// Low for identity reads (and identity items that ask for it); never low for Outlook or
    /// SharePoint items, which have limits of their own.
    priority: Priority,
}

impl Prepared {
    /// Spends the identity budget (no mailbox, not SharePoint).
    fn identity(&self) -> bool {
        self.mailbox.is_none() && self.sharepoint_cost.is_none()
    }
}

fn prepare(inner: &Inner, i: usize, item: BatchItem, n: usize) -> Result<Prepared, GatewayError> {
    let bad = |m: String| GatewayError::Batch(format!("request {i}: {m}"));
    let url = &item.request.url;
    let rel = url
        .path()
        .strip_prefix(inner.base.path())
        .ok_or_else(|| bad("not on this connection's Graph endpoint".into()))?;
    let (version, path) = match rel.split_once('/') {
        Some((v, p)) if !v.is_empty() => (v.to_string(), format!("/{p}")),
        _ => {
            return Err(bad(format!(
                "`{}` has no version segment (/v1.0/… or /beta/…)",
                url.path()
            )))
        }
    };
    let url_rel = match url.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut headers = Map::new();
    for (k, v) in &item.request.headers {
        if allowed_header(k) {
            headers.insert(k.clone(), Value::String(v.clone()));
        }
    }
    let body = if item.request.body.is_empty() {
        None
    } else {
        let ct = header(&item.request.headers, "content-type").map(str::to_ascii_lowercase);
        match ct {
            None => {
                // Graph requires Content-Type with a body; JSON is the only sensible guess.
                match serde_json::from_slice::<Value>(&item.request.body) {
                    Ok(v) => {
                        headers.insert("Content-Type".into(), json!("application/json"));
                        Some(v)
                    }
                    Err(_) => {
                        return Err(bad(
                            "has a body that is not JSON and no Content-Type header (Graph \
                             requires Content-Type on batch requests with a body)"
                                .into(),
                        ))
                    }
                }
            }
            Some(ct) if ct.contains("json") => Some(
                serde_json::from_slice::<Value>(&item.request.body).map_err(|e| {
                    bad(format!(
                        "Content-Type is {ct} but the body is not JSON: {e}"
                    ))
                })?,
            ),
            Some(_) => Some(Value::String(
                base64::engine::general_purpose::STANDARD.encode(&item.request.body),
            )),
        }
    };
    let mut deps: Vec<usize> = vec![];
    for d in item.depends_on {
        let d = d as usize;
        if d >= n {
            return Err(bad(format!(
                "depends on request {d}, but there are only {n}"
            )));
        }
        if d == i {
            return Err(bad("depends on itself".into()));
        }
        if !deps.contains(&d) {
            deps.push(d);
        }
    }
    let mailbox = inner.mailbox_of(url);
    let sharepoint_cost = inner.sharepoint_cost(&item.request.method, url);
    let priority = if mailbox.is_some() || sharepoint_cost.is_some() {
        Priority::Normal
    } else {
        Priority::requested(&item.request.headers).unwrap_or(
            if item.request.method.eq_ignore_ascii_case("GET") {
                Priority::Low
            } else {
                Priority::Normal
            },
        )
    };
    Ok(Prepared {
        mailbox,
        sharepoint_cost,
        priority,
        idempotent: retry::idempotent(&item.request.method),
        version,
        method: item.request.method.to_ascii_uppercase(),
        url: url_rel,
        headers,
        body,
        depends_on: deps,
    })
}

/// A dependency order (stable: lowest index first among the ready), or the items in a cycle.
fn topo_order(items: &[Prepared]) -> Result<Vec<usize>, Vec<usize>> {
    let n = items.len();
    let mut indeg: Vec<usize> = items.iter().map(|p| p.depends_on.len()).collect();
    let mut dependents: Vec<Vec<usize>> = vec![vec![]; n];
    for (i, p) in items.iter().enumerate() {
        for &d in &p.depends_on {
            dependents[d].push(i);
        }
    }
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &j in &dependents[i] {
            indeg[j] -= 1;
            if indeg[j] == 0 {
                ready.insert(j);
            }
        }
    }
    if order.len() < n {
        return Err((0..n).filter(|&i| indeg[i] > 0).collect());
    }
    Ok(order)
}

fn failed_dependency(dep: usize) -> HttpResponse {
    HttpResponse {
        status: 424,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: serde_json::to_vec(&json!({"error": {
            "code": "FailedDependency",
            "message": format!("The request depends on request {dep}, which failed."),
        }}))
        .unwrap_or_default(),
    }
}

/// An item of the `$batch` response as an [`HttpResponse`].
fn item_response(v: &Value) -> HttpResponse {
    let status = v.get("status").and_then(Value::as_u64).unwrap_or(0) as u16;
    let headers: Vec<(String, String)> = v
        .get("headers")
        .and_then(Value::as_object)
        .map(|h| {
            h.iter()
                .map(|(k, v)| {
                    let s = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), s)
                })
                .collect()
        })
        .unwrap_or_default();
    let ct = header(&headers, "content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    let body = match v.get("body") {
        None | Some(Value::Null) => vec![],
        Some(Value::String(s)) if !ct.contains("json") => {
            if ct.starts_with("text/") || ct.contains("xml") {
                s.as_bytes().to_vec()
            } else {
                // Binary bodies come base64-encoded.
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .unwrap_or_else(|_| s.as_bytes().to_vec())
            }
        }
        Some(other) => serde_json::to_vec(other).unwrap_or_default(),
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn id_of(v: &Value) -> Option<usize> {
    match v.get("id")? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64().map(|n| n as usize),
        _ => None,
    }
}

pub(crate) async fn run(
    inner: &Arc<Inner>,
    items: Vec<BatchItem>,
    task: &Arc<Counters>,
) -> Result<Vec<HttpResponse>, GatewayError> {
    let n = items.len();
    if n == 0 {
        return Ok(vec![]);
    }
    let fail = |e: GatewayError| {
        task.failure();
        e
    };
    let mut prepared = Vec::with_capacity(n);
    for (i, it) in items.into_iter().enumerate() {
        prepared.push(prepare(inner, i, it, n).map_err(fail)?);
    }
    let order = topo_order(&prepared).map_err(|cycle| {
        fail(GatewayError::Batch(format!(
            "the dependsOn of requests {cycle:?} form a cycle"
        )))
    })?;

    let policy = inner.retry.clone();
    let mut results: Vec<Option<HttpResponse>> = vec![None; n];
    // Attempts that count against the budget (a dependent re-sent only because its
    // dependency was throttled does not spend one), and times each item was sent.
    let mut attempts: Vec<u32> = vec![0; n];
    let mut sent: Vec<u32> = vec![0; n];
    let mut waited = Duration::ZERO;
    let mut round: u32 = 0;

    while results.iter().any(Option::is_none) {
        // Items whose dependency already failed (in an earlier batch) fail without a request.
        for &i in &order {
            if results[i].is_some() {
                continue;
            }
            if let Some(&d) = prepared[i]
                .depends_on
                .iter()
                .find(|&&d| results[d].as_ref().is_some_and(|r| r.status >= 400))
            {
                results[i] = Some(failed_dependency(d));
            }
        }
        // The next batch: pending items in dependency order, each with all its pending
        // dependencies in the same batch, one version per batch.
        let mut chunk: Vec<usize> = vec![];
        let mut version: Option<&str> = None;
        for &i in &order {
            if chunk.len() >= MAX_BATCH {
                break;
            }
            if results[i].is_some() {
                continue;
            }
            let p = &prepared[i];
            if version.is_some_and(|v| v != p.version) {
                continue;
            }
            let deps_ok = p
                .depends_on
                .iter()
                .all(|&d| results[d].is_some() || chunk.contains(&d));
            if deps_ok {
                version.get_or_insert(&p.version);
                chunk.push(i);
            }
        }
        if chunk.is_empty() {
            break; // everything resolved locally
        }
        round += 1;

        let low =
            inner.pacer.enabled() && chunk.iter().all(|&i| prepared[i].priority == Priority::Low);
        let mut requests = Vec::with_capacity(chunk.len());
        let mut mailboxes: BTreeSet<String> = BTreeSet::new();
        for &i in &chunk {
            let p = &prepared[i];
            let mut r = json!({"id": i.to_string(), "method": p.method, "url": p.url});
            let mut headers = p.headers.clone();
            if low
                && !headers
                    .keys()
                    .any(|k| k.eq_ignore_ascii_case(PRIORITY_HEADER))
            {
                headers.insert(PRIORITY_HEADER.into(), json!("low"));
            }
            if !headers.is_empty() {
                r["headers"] = Value::Object(headers);
            }
            if let Some(b) = &p.body {
                r["body"] = b.clone();
            }
            let deps: Vec<String> = p
                .depends_on
                .iter()
                .filter(|d| chunk.contains(d))
                .map(|d| d.to_string())
                .collect();
            if !deps.is_empty() {
                r["dependsOn"] = json!(deps);
            }
            requests.push(r);
            if let Some(m) = &p.mailbox {
                mailboxes.insert(m.clone());
            }
        }
        let resent = chunk.iter().filter(|&&i| sent[i] > 0).count() as u64;
        for &i in &chunk {
            sent[i] += 1;
        }
        task.retry(resent);
        task.batch_items(chunk.len() as u64);
        let version = prepared[chunk[0]].version.clone();
        let url = inner.base.join(&format!("{version}/$batch")).map_err(|e| {
            fail(GatewayError::Batch(format!(
                "cannot build the $batch URL: {e}"
            )))
        })?;
        let mut headers: Vec<(String, String)> = vec![
            ("Content-Type".into(), "application/json".into()),
            ("Accept".into(), "application/json".into()),
        ];
        if low {
            headers.push((PRIORITY_HEADER.into(), "low".into()));
        }
        let out = Outgoing {
            method: reqwest::Method::POST,
            url,
            headers,
            body: serde_json::to_vec(&json!({"requests": requests})).unwrap_or_default(),
            auth: true,
            idempotent: chunk.iter().all(|&i| prepared[i].idempotent),
            graph_limited: true,
            mailboxes: mailboxes.into_iter().collect(),
            stream: false,
            priority: if low { Priority::Low } else { Priority::Normal },
            conditional_access: chunk
                .iter()
                .filter(|&&i| pacer::is_conditional_access(&prepared[i].url))
                .count() as u32,
        };
        let (status, body, targets, sent_at) = match inner.execute(out, task).await? {
            Received::Buffered {
                status,
                body,
                throttle_targets,
                sent_at,
                ..
            } => (status, body, throttle_targets, sent_at),
            Received::Streaming { .. } => unreachable!("buffered request"),
        };
        if status != 200 {
            return Err(fail(GatewayError::Batch(format!(
                "Graph answered HTTP {status} to a $batch of {} request(s) ({})",
                chunk.len(),
                error_summary(&body)
            ))));
        }
        let parsed: Value = serde_json::from_slice(&body).map_err(|e| {
            fail(GatewayError::Batch(format!(
                "the $batch response is not JSON: {e}"
            )))
        })?;
        let mut by_id: HashMap<usize, HttpResponse> = HashMap::new();
        for r in parsed
            .get("responses")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if let Some(id) = id_of(r) {
                by_id.insert(id, item_response(r));
            }
        }

        // Classify: done, or to be sent again (throttled / transient, and dependents that got
        // 424 only because of them).
        let mut again: Vec<usize> = vec![];
        let mut longest: Option<Duration> = None;
        let mut any_without_retry_after = false;
        let mut throttled_here = 0u64;
        // What the identity items say about the budget: the highest use any reported (items
        // are charged one after another), and whether the budget itself throttled any.
        let mut budget_use: Option<f64> = None;
        let mut budget_throttle: Option<Option<Duration>> = None;
        for &i in &chunk {
            let Some(resp) = by_id.remove(&i) else {
                return Err(fail(GatewayError::Batch(format!(
                    "the $batch response has no response for request {i}"
                ))));
            };
            task.resource_units(&resp.headers);
            if prepared[i].identity() {
                if retry::is_throttle(resp.status) {
                    if pacer::is_budget_throttle(&resp.headers) {
                        let ra = retry::retry_after_of(&resp.headers);
                        budget_throttle = Some(budget_throttle.flatten().max(ra));
                    }
                } else if let Some(u) = pacer::reported_use(&resp.headers) {
                    budget_use = Some(budget_use.map_or(u, |b: f64| b.max(u)));
                }
            }
            if retry::is_throttle(resp.status) {
                throttled_here += 1;
                if resp.status == 429 && pacer::is_conditional_access(&prepared[i].url) {
                    inner.ca_gate.on_throttle(Instant::now());
                }
            } else if let Some(ru) = prepared[i].sharepoint_cost {
                task.sharepoint_units(ru);
            }
            attempts[i] += 1;
            let transient = retry::retryable_status(resp.status, prepared[i].idempotent);
            if transient && attempts[i] < policy.max_attempts {
                match retry::retry_after_of(&resp.headers) {
                    Some(ra) => longest = Some(longest.map_or(ra, |l| l.max(ra))),
                    None => any_without_retry_after = true,
                }
                again.push(i);
            }
            results[i] = Some(resp);
        }
        task.throttled(throttled_here);
        if let Some(u) = budget_use {
            inner.pacer.observe(sent_at, u);
        }
        if let Some(ra) = budget_throttle {
            inner.pacer.on_throttle(Instant::now(), ra);
        }
        // 424s caused by an item that is being re-sent are re-sent with it.
        let mut changed = true;
        while changed {
            changed = false;
            for &i in &chunk {
                if again.contains(&i) {
                    continue;
                }
                let is_424 = results[i].as_ref().is_some_and(|r| r.status == 424);
                if is_424 && prepared[i].depends_on.iter().any(|d| again.contains(d)) {
                    attempts[i] = attempts[i].saturating_sub(1);
                    again.push(i);
                    changed = true;
                }
            }
        }
        if again.is_empty() {
            continue;
        }
        let mut wait = longest.unwrap_or(Duration::ZERO);
        if any_without_retry_after {
            wait = wait.max(retry::backoff(&policy, round));
        }
        if throttled_here > 0 {
            for (l, epoch) in &targets {
                l.on_throttle(*epoch, longest);
            }
        }
        if waited + wait > policy.max_total_wait {
            // Out of budget: the items keep their last (throttled) response; results of items
            // that succeeded — possibly writes — are never thrown away.
            tracing::info!(
                target: "cairn_gateway",
                "$batch: {} item(s) still throttled after {waited:.1?} of waiting; returning their last responses",
                again.len()
            );
            continue;
        }
        tracing::debug!(target: "cairn_gateway", "$batch: re-sending {} item(s) in {wait:.2?}", again.len());
        for &i in &again {
            results[i] = None;
        }
        waited += wait;
        task.waited(wait);
        tokio::time::sleep(wait).await;
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every item resolved"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(deps: &[usize]) -> Prepared {
        Prepared {
            version: "v1.0".into(),
            method: "GET".into(),
            url: "/x".into(),
            headers: Map::new(),
            body: None,
            depends_on: deps.to_vec(),
            mailbox: None,
            sharepoint_cost: None,
            idempotent: true,
            priority: Priority::Low,
        }
    }

    #[test]
    fn topological_order_is_stable_and_finds_cycles() {
        let items = vec![p(&[2]), p(&[]), p(&[1]), p(&[])];
        assert_eq!(topo_order(&items).unwrap(), vec![1, 2, 0, 3]);
        let cyc = vec![p(&[1]), p(&[0]), p(&[])];
        assert_eq!(topo_order(&cyc).unwrap_err(), vec![0, 1]);
    }

    #[test]
    fn item_bodies() {
        let r = item_response(&json!({"id": "1", "status": 200,
            "headers": {"Content-Type": "application/json"}, "body": {"a": 1}}));
        assert_eq!(r.body, br#"{"a":1}"#);
        let r = item_response(&json!({"id": "1", "status": 200,
            "headers": {"Content-Type": "text/plain"}, "body": "hello"}));
        assert_eq!(r.body, b"hello");
        let r = item_response(&json!({"id": "1", "status": 200,
            "headers": {"Content-Type": "application/octet-stream"}, "body": "AAEC"}));
        assert_eq!(r.body, vec![0, 1, 2]);
        let r = item_response(&json!({"id": "1", "status": 204, "headers": {}}));
        assert!(r.body.is_empty());
        assert_eq!(r.status, 204);
    }
}
