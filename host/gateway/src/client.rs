//! The request pipeline: concurrency slots, token, send, classify, retry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use url::Url;

use crate::error::GatewayError;
use crate::limiter::{Limiter, Permit};
use crate::pacer::{self, Priority};
use crate::retry::{self, Budget};
use crate::stats::Counters;
use crate::Inner;

/// The slot key of SharePoint/OneDrive requests (never a mailbox id, which has no `#`).
pub(crate) const SHAREPOINT_SLOT: &str = "#sharepoint";

/// Headers a caller may not set: the gateway owns authentication, routing and framing.
const DROPPED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
];

pub(crate) fn allowed_header(name: &str) -> bool {
    !DROPPED_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// One logical request as the pipeline sends it (possibly several times).
pub(crate) struct Outgoing {
    pub method: reqwest::Method,
    pub url: Url,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Attach the bearer token (Graph) or not (pre-authenticated download URLs).
    pub auth: bool,
    pub idempotent: bool,
    /// Take a connection-wide slot (Graph requests).
    pub graph_limited: bool,
    /// Outlook mailboxes (lower-case ids) the request needs a slot of, sorted.
    pub mailboxes: Vec<String>,
    /// Return a 2xx response unread, for streaming.
    pub stream: bool,
    /// How the request competes for the identity budget and the connection's slots (only
    /// requests without a mailbox or SharePoint slot are paced).
    pub priority: Priority,
    /// Conditional Access requests it carries (a `$batch` may carry several), each waiting
    /// its turn at the connection's [`crate::pacer::RateGate`].
    pub conditional_access: u32,
}

/// Limiters a throttled response is reported to, with the epoch of the request's slot.
pub(crate) type ThrottleTargets = Vec<(Arc<Limiter>, u64)>;

pub(crate) enum Received {
    Buffered {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        throttle_targets: ThrottleTargets,
        /// When the answered attempt was sent (what the budget headers it carries refer to).
        sent_at: Instant,
    },
    Streaming {
        response: reqwest::Response,
        permits: Vec<Permit>,
    },
}

/// How a URL is shown in messages: Graph URLs with their query (Graph queries carry no
/// secrets), other URLs (pre-authenticated downloads carry a credential in the query) as
/// origin and path only.
pub(crate) fn display_target(url: &Url, graph: bool) -> String {
    let mut s = if graph {
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    } else {
        format!(
            "{}://{}{}{}",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.port().map(|p| format!(":{p}")).unwrap_or_default(),
            url.path()
        )
    };
    if s.len() > 300 {
        let mut cut = 300;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// `code: message` of a Graph error body, or a short prefix of the body.
pub(crate) fn error_summary(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if let Some(e) = v.get("error") {
        let code = e.get("code").and_then(Value::as_str).unwrap_or("");
        let msg = e.get("message").and_then(Value::as_str).unwrap_or("");
        let s = match (code.is_empty(), msg.is_empty()) {
            (false, false) => format!("{code}: {msg}"),
            (false, true) => code.to_string(),
            (true, false) => msg.to_string(),
            (true, true) => String::new(),
        };
        return truncate(s, 300);
    }
    let text = String::from_utf8_lossy(body);
    truncate(text.trim().to_string(), 200)
}

fn truncate(mut s: String, n: usize) -> String {
    if s.len() > n {
        let mut cut = n;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

fn headers_of(resp: &reqwest::Response) -> Vec<(String, String)> {
    resp.headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn describe_status(status: u16, headers: &[(String, String)], body: &[u8]) -> String {
    let mut s = format!("HTTP {status}");
    let summary = error_summary(body);
    if !summary.is_empty() {
        s.push_str(&format!(" ({summary})"));
    }
    if let Some(ra) = retry::retry_after_of(headers) {
        s.push_str(&format!(", Retry-After {:.3}s", ra.as_secs_f64()));
    }
    s
}

impl Inner {
    /// The slot holder of an Outlook mailbox, or of SharePoint ([`SHAREPOINT_SLOT`]).
    fn mailbox_limiter(&self, mailbox: &str) -> Arc<Limiter> {
        let mut m = self.mailboxes.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(mailbox.to_string())
            .or_insert_with(|| {
                let c = &self.concurrency;
                if mailbox == SHAREPOINT_SLOT {
                    Limiter::new(c.initial, c.min, c.max, c.decrease_factor)
                } else {
                    Limiter::new(c.per_mailbox, 1, c.per_mailbox, c.decrease_factor)
                }
            })
            .clone()
    }

    /// The service slot a Graph URL needs besides the connection's: the Outlook mailbox it
    /// addresses (`/users/{id}/mailFolders…`, `/users/{id}/messages…` and the other Outlook
    /// collections of a user), lower-cased, or [`SHAREPOINT_SLOT`] for SharePoint and OneDrive
    /// (`/sites…`, `/drives…`, `/shares…`, `/users|groups/{id}/drive(s)…`), which have a
    /// resource-unit budget of their own: their 429s pause SharePoint requests, not the rest of
    /// the connection.
    pub(crate) fn mailbox_of(&self, url: &Url) -> Option<String> {
        if self.sharepoint_cost("GET", url).is_some() {
            return Some(SHAREPOINT_SLOT.to_string());
        }
        let rel = url.path().strip_prefix(self.base.path())?;
        let segs: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
        // [version, "users", id, collection, …]
        if segs.len() < 4 || !segs[1].eq_ignore_ascii_case("users") {
            return None;
        }
        let coll = segs[3].to_ascii_lowercase();
        let outlook = matches!(
            coll.as_str(),
            "mailfolders"
                | "messages"
                | "events"
                | "calendar"
                | "calendars"
                | "calendarview"
                | "calendargroups"
                | "contacts"
                | "contactfolders"
                | "mailboxsettings"
                | "inferenceclassification"
                | "outlook"
        );
        outlook.then(|| segs[2].to_ascii_lowercase())
    }

    /// Whether a Graph URL on this connection is under the Conditional Access limit.
    pub(crate) fn is_conditional_access(&self, url: &Url) -> bool {
        url.path()
            .strip_prefix(self.base.path())
            .and_then(|rel| rel.split_once('/'))
            .is_some_and(|(_version, path)| crate::pacer::is_conditional_access(path))
    }

    /// SharePoint resource units a request to `url` costs, as Microsoft documents them (1 for a
    /// single-item GET, a delta call with a token or a download; 2 for a multi-item query, a
    /// delta call without a token and a write; 5 for permission operations), or `None` if the
    /// URL is not SharePoint/OneDrive.
    pub(crate) fn sharepoint_cost(&self, method: &str, url: &Url) -> Option<u32> {
        // A drive upload URL (see `upload`): a write, or a status read.
        if crate::upload::is_drive_upload(&self.base, url) {
            return Some(if method.eq_ignore_ascii_case("GET") {
                1
            } else {
                2
            });
        }
        let rel = url.path().strip_prefix(self.base.path())?;
        let segs: Vec<String> = rel
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        let sharepoint = match segs.get(1).map(String::as_str) {
            Some("sites" | "drives" | "shares") => true,
            Some("users" | "groups") => {
                matches!(segs.get(3).map(String::as_str), Some("drive" | "drives"))
            }
            _ => false,
        };
        if !sharepoint {
            return None;
        }
        let last = segs.last().map(String::as_str).unwrap_or("");
        let query = |k: &str| url.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v);
        let cost = if segs.iter().any(|s| s == "permissions")
            || matches!(last, "createlink" | "invite")
            || query("$expand").is_some_and(|e| e.contains("permissions"))
        {
            5
        } else if !method.eq_ignore_ascii_case("GET") {
            2
        } else if last == "delta" {
            if query("token").is_some() {
                1
            } else {
                2
            }
        } else if matches!(last, "children" | "drives" | "getallsites" | "sites") {
            2
        } else {
            1
        };
        Some(cost)
    }

    /// Sends `out`, retrying per the policy. Non-retryable responses (2xx–4xx, and 5xx that
    /// may not be retried) are returned; exhaustion and refusals are errors.
    pub(crate) async fn execute(
        self: &Arc<Self>,
        out: Outgoing,
        task: &Counters,
    ) -> Result<Received, GatewayError> {
        let graph = out.auth;
        let target = display_target(&out.url, graph);
        let method_s = out.method.as_str().to_string();
        let client_request_id = crate::token::guid();
        let mut budget = Budget::new(self.retry.clone());
        let mut auth_retried = false;
        // Identity requests (no Outlook mailbox, not SharePoint) spend the RU budget the pacer
        // watches; low priority applies only to them, and only while pacing is on.
        let identity = out.auth && out.mailboxes.is_empty();
        let priority = if identity && self.pacer.enabled() {
            out.priority
        } else {
            Priority::Normal
        };
        loop {
            budget.start_attempt();
            if budget.attempts > 1 {
                task.retry(1);
            }
            // Slots: mailbox first, then connection-wide, so a request waiting for a busy
            // mailbox does not hold a connection slot.
            let queued = Instant::now();
            if out.conditional_access > 0 && self.pacer.enabled() {
                task.paced(self.ca_gate.admit(out.conditional_access).await);
            }
            if priority == Priority::Low {
                // Before taking a slot: a held request must not keep one from the chains.
                task.paced(self.pacer.admit_low().await);
            }
            let mut permits: Vec<Permit> = Vec::new();
            for mb in &out.mailboxes {
                permits.push(self.mailbox_limiter(mb).acquire().await);
            }
            if out.graph_limited {
                permits.push(self.limiter.acquire_as(priority).await);
            }
            task.queued(queued.elapsed());
            // Throttles of mailbox requests are the mailbox's; others the connection's.
            let throttle_targets: ThrottleTargets = if out.mailboxes.is_empty() {
                permits
                    .iter()
                    .map(|p| (p.limiter().clone(), p.epoch()))
                    .collect()
            } else {
                permits
                    .iter()
                    .filter(|p| !Arc::ptr_eq(p.limiter(), &self.limiter))
                    .map(|p| (p.limiter().clone(), p.epoch()))
                    .collect()
            };
            let token = if out.auth {
                match self.tokens.get().await {
                    Ok(t) => Some(t),
                    Err(e) => {
                        task.failure();
                        return Err(e);
                    }
                }
            } else {
                None
            };
            let mut rb = self.http.request(out.method.clone(), out.url.clone());
            for (k, v) in &out.headers {
                rb = rb.header(k.as_str(), v.as_str());
            }
            if let Some(t) = &token {
                rb = rb.header("Authorization", format!("Bearer {}", t.expose()));
                if !out
                    .headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("client-request-id"))
                {
                    rb = rb.header("client-request-id", client_request_id.as_str());
                }
            }
            if !out.body.is_empty() {
                rb = rb.body(out.body.clone());
            }
            if !out.stream {
                rb = rb.timeout(self.request_timeout);
            }
            task.request();
            let sent_at = Instant::now();
            let resp = match rb.send().await {
                Ok(r) => r,
                Err(e) => {
                    drop(permits);
                    // A failed connect never reached the server: safe to retry any method.
                    let retry_ok = e.is_connect() || out.idempotent;
                    let what = crate::token::describe(&e.without_url());
                    if !retry_ok {
                        task.failure();
                        return Err(not_retried(method_s, target, &what));
                    }
                    self.wait_or_fail(&mut budget, None, &method_s, &target, what, task)
                        .await?;
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let headers = headers_of(&resp);
            task.resource_units(&headers);
            if identity {
                if retry::is_throttle(status) {
                    if pacer::is_budget_throttle(&headers) {
                        self.pacer
                            .on_throttle(Instant::now(), retry::retry_after_of(&headers));
                    }
                } else if let Some(used) = pacer::reported_use(&headers) {
                    self.pacer.observe(sent_at, used);
                }
            }
            // Graph requests, and drive upload URLs (SharePoint charges them; other
            // pre-authenticated URLs, such as download redirects, are counted by their Graph
            // request).
            let charged = out.auth || crate::upload::is_drive_upload(&self.base, &out.url);
            if charged && !retry::is_throttle(status) {
                if let Some(ru) = self.sharepoint_cost(out.method.as_str(), &out.url) {
                    task.sharepoint_units(ru);
                }
            }

            if status == 401 && out.auth {
                let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
                task.bytes(body.len() as u64);
                drop(permits);
                if !auth_retried {
                    auth_retried = true;
                    if let Some(t) = &token {
                        self.tokens.invalidate(t);
                    }
                    tracing::debug!(target: "cairn_gateway", "{method_s} {target}: 401, refreshing the token");
                    continue;
                }
                task.failure();
                return Err(GatewayError::Unauthorized {
                    method: method_s,
                    target,
                    detail: error_summary(&body),
                });
            }

            if retry::retryable_status(status, out.idempotent) {
                let ra = retry::retry_after_of(&headers);
                if retry::is_throttle(status) {
                    task.throttled(1);
                    if out.conditional_access > 0 && status == 429 {
                        self.ca_gate.on_throttle(Instant::now());
                    }
                    for (l, epoch) in &throttle_targets {
                        l.on_throttle(*epoch, ra);
                    }
                }
                let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
                task.bytes(body.len() as u64);
                drop(permits);
                let what = describe_status(status, &headers, &body);
                self.wait_or_fail(&mut budget, ra, &method_s, &target, what, task)
                    .await?;
                continue;
            }

            if status < 500 {
                // Every limiter the request went through may grow (a mailbox request's success
                // also says the connection is not throttled).
                for p in &permits {
                    p.limiter().on_success();
                }
            }
            if out.stream && (200..300).contains(&status) {
                return Ok(Received::Streaming {
                    response: resp,
                    permits,
                });
            }
            match resp.bytes().await {
                Ok(b) => {
                    task.bytes(b.len() as u64);
                    return Ok(Received::Buffered {
                        status,
                        headers,
                        body: b.to_vec(),
                        throttle_targets,
                        sent_at,
                    });
                }
                Err(e) => {
                    drop(permits);
                    let what = format!(
                        "reading the response failed: {}",
                        crate::token::describe(&e.without_url())
                    );
                    if !out.idempotent {
                        task.failure();
                        return Err(not_retried(method_s, target, &what));
                    }
                    self.wait_or_fail(&mut budget, None, &method_s, &target, what, task)
                        .await?;
                    continue;
                }
            }
        }
    }

    /// Sleeps before the next attempt, or fails when the budget is spent.
    async fn wait_or_fail(
        &self,
        budget: &mut Budget,
        retry_after: Option<Duration>,
        method: &str,
        target: &str,
        last: String,
        task: &Counters,
    ) -> Result<(), GatewayError> {
        match budget.next_wait(retry_after) {
            Ok(wait) => {
                tracing::debug!(
                    target: "cairn_gateway",
                    "{method} {target}: {last}; attempt {} in {wait:.2?}",
                    budget.attempts + 1
                );
                task.waited(wait);
                tokio::time::sleep(wait).await;
                Ok(())
            }
            Err(why) => {
                task.failure();
                let waited = budget.waited;
                Err(GatewayError::RetriesExhausted {
                    method: method.to_string(),
                    target: target.to_string(),
                    attempts: budget.attempts,
                    waited,
                    why,
                    last,
                })
            }
        }
    }
}

/// The error of a transport failure that is not retried: the request is not idempotent and
/// may already have been acted on.
fn not_retried(method: String, target: String, what: &str) -> GatewayError {
    GatewayError::Transport {
        message: format!("{what} (not retried: a {method} may already have been acted on)"),
        method,
        target,
    }
}
