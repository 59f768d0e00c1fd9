//! The HTTP server: Graph pipeline (faults → auth → throttling → dispatch → latency), `$batch`,
//! the token endpoint and the control API under `/_sim/`.

use crate::auth;
use crate::config::SimConfig;
use crate::faults::{FaultKind, FaultRule, Faults};
use crate::http::{Body, Req, Resp};
use crate::model::Kind;
use crate::state::Tenant;
use crate::stats::SimStats;
use crate::throttle::{self, Service, Throttler};
use crate::util;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Inner {
    pub tenant: Mutex<Tenant>,
    pub throttler: Mutex<Throttler>,
    pub faults: Mutex<Faults>,
    pub stats: Mutex<SimStats>,
    pub base: String,
    pub cfg: SimConfig,
    pub client_id: String,
    pub client_secret: String,
    pub batch_counter: std::sync::atomic::AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    pub fn tenant(&self) -> std::sync::MutexGuard<'_, Tenant> {
        lock(&self.tenant)
    }
    pub fn stats(&self) -> std::sync::MutexGuard<'_, SimStats> {
        lock(&self.stats)
    }
    pub fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        lock(&self.faults)
    }
    pub fn throttler(&self) -> std::sync::MutexGuard<'_, Throttler> {
        lock(&self.throttler)
    }
}

/// Converts an internal response to an HTTP response.
fn to_http(r: Resp) -> Response {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    let headers = builder.headers_mut().unwrap();
    for (k, v) in &r.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.append(k, v);
        }
    }
    let body = match r.body {
        Body::Empty => axum::body::Body::empty(),
        Body::Json(v) => {
            headers.insert("content-type", HeaderValue::from_static("application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"));
            axum::body::Body::from(serde_json::to_vec(&v).unwrap_or_default())
        }
        Body::Bytes(b, ct) => {
            if let Ok(v) = HeaderValue::from_str(&ct) {
                headers.insert("content-type", v);
            }
            axum::body::Body::from(b)
        }
        Body::Drop => {
            let s = futures_util::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::other(
                    "connection dropped by fault injection",
                ))
            });
            axum::body::Body::from_stream(s)
        }
    };
    builder.body(body).unwrap_or_default()
}

fn headers_vec(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

pub async fn handle(sim: Arc<Inner>, req: axum::extract::Request) -> Response {
    let method = req.method().as_str().to_string();
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let headers = headers_vec(req.headers());
    let body = axum::body::to_bytes(req.into_body(), 300 * 1024 * 1024)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let path = pq.split('?').next().unwrap_or("/").to_string();
    sim.stats().requests += 1;
    if let Some(rest) = path.strip_prefix("/_sim/") {
        let r = crate::control::handle(&sim, &method, rest, &body);
        return to_http(r);
    }
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segs.len() == 4 && segs[1] == "oauth2" && segs[2] == "v2.0" && segs[3] == "token" {
        sim.stats().token_requests += 1;
        let fault = sim.faults().pick(&method, &path);
        let lose = fault == Some(FaultKind::DropAnswer);
        if let Some(f) = fault {
            sim.stats().faults_injected += 1;
            if let FaultKind::Throttle { retry_after } = f {
                // Entra throttles client-credential token requests with Retry-After: 60.
                return to_http(
                    Resp::json(429, json!({"error": "temporarily_unavailable", "error_description": "The token endpoint is throttling this client; retry after the Retry-After interval."}))
                        .with_header("Retry-After", throttle::fmt_secs(retry_after.unwrap_or(60.0))),
                );
            }
            if let Some(r) = apply_fault(&sim, &f, &path).await {
                return to_http(r);
            }
        }
        if method != "POST" {
            return to_http(Resp::error(
                405,
                "invalid_request",
                "The token endpoint accepts POST only.",
            ));
        }
        let r = auth::token_endpoint(&sim.tenant(), segs[0], &headers, &body, &sim.base);
        return to_http(answer_or_lost(&sim, r, lose));
    }
    if segs.first() == Some(&"api") {
        return to_http(upload_url(&sim, &method, &pq, headers, body, false).await);
    }
    if segs.contains(&"_api") {
        return to_http(upload_url(&sim, &method, &pq, headers, body, true).await);
    }
    if !matches!(segs.first(), Some(&"v1.0" | &"beta")) {
        return to_http(Resp::error(404, "NotFound", "Unknown path. Graph is served under /v1.0 and /beta, the token endpoint at /{tenant}/oauth2/v2.0/token, the control API under /_sim."));
    }
    let mut r = Req::parse(&method, &pq, headers, body, &sim.base);
    r.request_id = crate::http::request_id();
    sim.stats().graph_requests += 1;
    // Fault injection.
    let fault = sim.faults().pick(&method, &pq);
    let lose = fault == Some(FaultKind::DropAnswer);
    if let Some(f) = fault {
        sim.stats().faults_injected += 1;
        if let Some(resp) = apply_fault(&sim, &f, &path).await {
            sim.stats().count_status(resp.status);
            return to_http(resp);
        }
    }
    // Authentication.
    let caller = {
        let t = sim.tenant();
        auth::authenticate(&t, r.header("authorization"))
    };
    let caller = match caller {
        Ok(c) => c,
        Err(e) => {
            sim.stats().count_status(e.status);
            return to_http(e);
        }
    };
    r.app = Some(caller);
    let resp = if r.segs.len() == 1 && r.segs[0] == "$batch" {
        if r.method != "POST" {
            Resp::method_not_allowed()
        } else {
            crate::batch::run(&sim, &r).await
        }
    } else {
        serve(&sim, &r, true).await
    };
    to_http(answer_or_lost(&sim, resp, lose))
}

/// `resp`, or, when a `dropAnswer` fault applies (`lose`), a dropped connection in its place
/// (the request was served all the same).
fn answer_or_lost(sim: &Inner, resp: Resp, lose: bool) -> Resp {
    if !lose {
        return resp;
    }
    sim.stats().dropped += 1;
    Resp {
        status: 200,
        headers: vec![],
        body: Body::Drop,
        objects: 0,
    }
}

/// A request to an Outlook upload URL (`/api/v2.0/…/AttachmentSessions('…')?authtoken=…`, see
/// [`crate::mail_upload`]) or, with `drive`, to a SharePoint drive upload URL
/// (`…/_api/v2.0/drives/{d}/items/{p}/uploadSession?…&tempauth=…`, see
/// [`crate::drive_upload`]): pre-authenticated by its `authtoken` / `tempauth`, so a bearer
/// token is refused (401: a Graph token is not valid for those endpoints); faults, the
/// mailbox's Outlook limits or SharePoint's budget, latency and stats apply as to Graph
/// requests.
async fn upload_url(
    sim: &Arc<Inner>,
    method: &str,
    pq: &str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    drive: bool,
) -> Resp {
    let path = pq.split('?').next().unwrap_or("/").to_string();
    let mut r = Req::parse(method, pq, headers, body, &sim.base);
    r.request_id = crate::http::request_id();
    sim.stats().graph_requests += 1;
    let fault = sim.faults().pick(method, pq);
    let lose = fault == Some(FaultKind::DropAnswer);
    if let Some(f) = fault {
        sim.stats().faults_injected += 1;
        if let Some(resp) = apply_fault(sim, &f, &path).await {
            sim.stats().count_status(resp.status);
            return resp;
        }
    }
    if r.header("authorization").is_some() {
        sim.stats().count_status(401);
        return Resp::error(
            401,
            "InvalidAuthenticationToken",
            "The upload URL is pre-authenticated: send no Authorization header (a Graph token is not valid for this endpoint).",
        );
    }
    r.app = if drive {
        crate::drive_upload::caller_of(&sim.tenant(), &r)
    } else {
        crate::mail_upload::caller_of(&sim.tenant(), &r.segs)
    };
    let resp = serve(sim, &r, true).await;
    answer_or_lost(sim, resp, lose)
}

/// Resolves the mailbox (user id) a request targets, for Outlook limits.
fn mailbox_of(t: &Tenant, req: &Req) -> Option<String> {
    if req.version.is_empty() {
        return crate::mail_upload::parse_path(&req.segs).map(|(user, _, _)| user);
    }
    let l: Vec<String> = req.segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    if l.first().map(String::as_str) == Some("users")
        && l.len() > 2
        && (l[2] == "mailfolders" || l[2] == "messages")
    {
        let seg = &req.segs[1];
        if t.get(Kind::User, seg).is_some() {
            return Some(seg.clone());
        }
        return t
            .upn_index
            .get(&seg.to_ascii_lowercase())
            .map(|s| s.to_string())
            .or(Some(seg.clone()));
    }
    None
}

struct InflightGuard {
    sim: Arc<Inner>,
    app: String,
    mailbox: String,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.sim.throttler().leave(&self.app, &self.mailbox);
    }
}

/// One Graph request after authentication: throttling, dispatch, headers, latency, stats.
pub async fn serve(sim: &Arc<Inner>, req: &Req, allow_latency: bool) -> Resp {
    let app = req
        .app
        .as_ref()
        .map(|c| c.client_id.clone())
        .unwrap_or_default();
    let (mailbox, tenant_id) = {
        let t = sim.tenant();
        (mailbox_of(&t, req), t.tenant_id.clone())
    };
    let service = throttle::service_of(req, mailbox.clone());
    let outcome = sim
        .throttler()
        .check(req, &service, &app, &tenant_id, sim.cfg.throttling);
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            let mut s = sim.stats();
            s.throttled += 1;
            s.count_status(429);
            return e;
        }
    };
    // Released on every path, including a client that disconnects during the latency sleep.
    let guard = match (outcome.mailbox_admitted, &mailbox) {
        (true, Some(mb)) => Some(InflightGuard {
            sim: sim.clone(),
            app: app.clone(),
            mailbox: mb.clone(),
        }),
        _ => None,
    };
    let mut resp = {
        let mut t = sim.tenant();
        dispatch(&mut t, req)
    };
    if allow_latency {
        if let Some(l) = sim.cfg.latency {
            tokio::time::sleep(l.for_objects(resp.objects)).await;
        }
    }
    drop(guard);
    if matches!(service, Service::Identity | Service::ConditionalAccess) {
        resp.headers
            .push(("x-ms-resource-unit".into(), outcome.ru.to_string()));
    }
    if let Some(p) = outcome.limit_percentage {
        if service == Service::SharePoint {
            let cap = sim.throttler().sharepoint_capacity();
            resp.headers
                .push(("RateLimit-Limit".into(), format!("{}", cap as u64)));
            resp.headers.push((
                "RateLimit-Remaining".into(),
                format!("{}", ((1.0 - p) * cap).max(0.0) as u64),
            ));
            resp.headers.push(("RateLimit-Reset".into(), "60".into()));
        } else {
            resp.headers.push((
                "x-ms-throttle-limit-percentage".into(),
                format!("{:.1}", p.clamp(0.8, 1.8)),
            ));
        }
    }
    resp.headers
        .push(("request-id".into(), req.request_id.clone()));
    resp.headers.push((
        "client-request-id".into(),
        req.header("client-request-id")
            .map(str::to_string)
            .unwrap_or_else(|| req.request_id.clone()),
    ));
    resp.headers.push(("OData-Version".into(), "4.0".into()));
    resp.headers
        .push(("Cache-Control".into(), "no-cache".into()));
    let mut s = sim.stats();
    s.ru_spent += outcome.ru as u64;
    s.sharepoint_ru_spent += outcome.sharepoint_ru as u64;
    if outcome.write {
        s.write_units += 1;
    }
    s.objects_returned += resp.objects as u64;
    if resp.json_value().is_some_and(|v| v.get("value").is_some()) {
        s.pages += 1;
    }
    s.count_status(resp.status);
    resp
}

/// Routes a Graph request to its handler.
pub fn dispatch(t: &mut Tenant, req: &Req) -> Resp {
    let first = req
        .segs
        .first()
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_default();
    if req.version.is_empty() && crate::drive_upload::is_upload_path(&req.segs) {
        return crate::drive_upload::handle(t, req);
    }
    if first == "sites" || first == "drives" {
        return crate::drive::handle(t, req);
    }
    if first == "api" && req.version.is_empty() {
        return crate::mail_upload::handle(t, req);
    }
    if first == "me" {
        return Resp::bad_request("/me request is only valid with delegated authentication flow.");
    }
    if req
        .segs
        .iter()
        .any(|s| s.eq_ignore_ascii_case("deleteditems"))
        && req.method == "GET"
        && req.segs.len() <= 3
    {
        t.purge_expired();
    }
    match crate::directory::dispatch(t, req) {
        Some(r) => r,
        None => Resp::error(
            400,
            "BadRequest",
            &format!(
                "Resource not found for the segment '{}'.",
                req.segs.first().cloned().unwrap_or_default()
            ),
        ),
    }
}

async fn apply_fault(sim: &Arc<Inner>, f: &FaultKind, path: &str) -> Option<Resp> {
    match f {
        FaultKind::Slow { millis } => {
            tokio::time::sleep(Duration::from_millis(*millis)).await;
            None
        }
        // Served first; the caller drops the answer.
        FaultKind::DropAnswer => None,
        FaultKind::DropConnection => {
            sim.stats().dropped += 1;
            Some(Resp { status: 200, headers: vec![], body: Body::Drop, objects: 0 })
        }
        FaultKind::ServerError { status, retry_after } => {
            let code = match status {
                503 => "serviceNotAvailable",
                504 => "gatewayTimeout",
                502 => "badGateway",
                507 => "insufficientStorage",
                _ => "generalException",
            };
            let mut r = Resp::error(*status, code, "The service is temporarily unavailable (injected fault).");
            if let Some(s) = retry_after {
                r = r.with_header("Retry-After", throttle::fmt_secs(*s));
            }
            Some(r)
        }
        FaultKind::Throttle { retry_after } => {
            let (app, tenant) = (sim.client_id.clone(), sim.tenant().tenant_id.clone());
            sim.stats().throttled += 1;
            Some(throttle::too_many(*retry_after, "Tenant_Application", false, &app, &tenant, "ResourceUnitLimitExceeded"))
        }
        FaultKind::Error { status, code, message } => {
            let msg = if message.is_empty() { "Injected error." } else { message.as_str() };
            Some(Resp::error(*status, code, msg))
        }
        FaultKind::ExpiredToken => Some(
            Resp::error(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
                .with_header("WWW-Authenticate", "Bearer realm=\"\", error=\"invalid_token\", error_description=\"The access token has expired\""),
        ),
        FaultKind::Resync => {
            let lower = path.to_ascii_lowercase();
            if lower.contains("/drives/") {
                let loc = format!("{}{}", sim.base, path);
                Some(Resp::error(410, "resyncChangesApplyDifferences", "Resync required. Replace local items with the server's version (including deletes) if you're sure that the service was up to date with your local changes when you last sync'd.").with_header("Location", loc))
            } else {
                let loc = format!("{}{}?$deltatoken=", sim.base, path);
                Some(Resp::error(410, "resyncRequired", "The delta token is no longer valid; restart the synchronization from the Location URL.").with_header("Location", loc))
            }
        }
    }
}

/// Builds the shared state: generates the tenant and registers the default app.
pub fn build(cfg: SimConfig, base: String) -> Inner {
    let tenant_id = util::Rng::derive(cfg.seed, "tenant-id").guid();
    let mut t = Tenant::new(cfg.clone(), tenant_id);
    let app = crate::gen::generate(&mut t);
    let users = t.count_live(Kind::User);
    let throttler = Throttler::new(cfg.throttle.clone(), users);
    Inner {
        tenant: Mutex::new(t),
        throttler: Mutex::new(throttler),
        faults: Mutex::new(Faults::new(cfg.seed)),
        stats: Mutex::new(SimStats::default()),
        base,
        client_id: app.client_id,
        client_secret: app.client_secret,
        cfg,
        batch_counter: Default::default(),
    }
}

pub fn fault_rule_from(v: Value) -> Result<FaultRule, String> {
    serde_json::from_value(v).map_err(|e| e.to_string())
}

pub fn info(sim: &Inner) -> Value {
    let t = sim.tenant();
    json!({
        "url": sim.base, "graph": format!("{}/v1.0", sim.base), "beta": format!("{}/beta", sim.base),
        "token_url": format!("{}/{}/oauth2/v2.0/token", sim.base, t.tenant_id),
        "tenant_id": t.tenant_id, "domain": t.domain, "client_id": sim.client_id, "client_secret": sim.client_secret,
        "profile": sim.cfg.profile, "seed": sim.cfg.seed
    })
}
