//! Throttling (§4): the identity RU token bucket per app+tenant with documented costs and tiers,
//! write limits, the Conditional Access per-tenant limit (429 without Retry-After), Outlook
//! per-mailbox limits and the SharePoint RU budget.

use crate::config::ThrottleConfig;
use crate::http::{request_id, Req, Resp};
use crate::util;
use serde_json::json;
use std::collections::HashMap;
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct Bucket {
    pub capacity: f64,
    pub tokens: f64,
    /// Tokens per second.
    pub rate: f64,
    last: Instant,
}

impl Bucket {
    pub fn new(capacity: f64, window_secs: f64) -> Self {
        Bucket {
            capacity,
            tokens: capacity,
            rate: capacity / window_secs,
            last: Instant::now(),
        }
    }
    fn refill(&mut self) {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.capacity);
    }
    /// Takes `cost`; on failure returns seconds until it would succeed. Usage keeps counting while
    /// throttled (down to −capacity), so immediate retries push the wait further out.
    pub fn take(&mut self, cost: f64) -> Result<(), f64> {
        self.refill();
        if self.tokens >= cost {
            self.tokens -= cost;
            Ok(())
        } else {
            self.tokens = (self.tokens - cost).max(-self.capacity);
            Err(((cost - self.tokens) / self.rate).max(0.001))
        }
    }
    pub fn used_fraction(&self) -> f64 {
        1.0 - self.tokens / self.capacity
    }
}

/// What kind of limit a request falls under.
#[derive(Clone, Debug, PartialEq)]
pub enum Service {
    Identity,
    ConditionalAccess,
    Outlook(String),
    SharePoint,
}

pub fn service_of(req: &Req, mailbox: Option<String>) -> Service {
    let l: Vec<String> = req.segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    // SharePoint's drive upload URLs (`…/_api/v2.0/drives/{d}/items/{p}/uploadSession`).
    if req.version.is_empty() && l.iter().any(|s| s == "_api") {
        return Service::SharePoint;
    }
    match l.first().map(String::as_str) {
        Some("sites" | "drives") => Service::SharePoint,
        // Outlook's upload URLs (`/api/v2.0/Users('…')/Messages('…')/AttachmentSessions('…')`).
        Some("api") if req.version.is_empty() => Service::Outlook(mailbox.unwrap_or_default()),
        Some("users" | "groups") if l.get(2).is_some_and(|s| s == "drive" || s == "drives") => {
            Service::SharePoint
        }
        Some("users")
            if l.get(2)
                .is_some_and(|s| s == "mailfolders" || s == "messages") =>
        {
            Service::Outlook(mailbox.unwrap_or_default())
        }
        Some("identity") if l.get(1).is_some_and(|s| s == "conditionalaccess") => {
            Service::ConditionalAccess
        }
        _ => Service::Identity,
    }
}

/// Resource units of an identity request (§4 cost table and adjustments).
pub fn identity_cost(req: &Req) -> u32 {
    let l: Vec<String> = req.segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l: Vec<&str> = l.iter().map(String::as_str).collect();
    let base: i32 = match (req.method.as_str(), l.as_slice()) {
        ("GET", ["users", ..]) if l.get(2) == Some(&"memberof") || l.len() <= 2 => 2,
        ("GET", ["me", "memberof", ..]) => 2,
        ("GET", ["applications", ..]) if l.len() <= 2 => 2,
        ("GET", ["oauth2permissiongrants", ..]) => 2,
        ("GET", ["serviceprincipals", _, "approleassignments", ..]) => 2,
        ("GET", ["groups", _, "members", ..]) => 3,
        ("GET", ["subscribedskus", ..]) => 3,
        ("POST", ["directoryobjects", "getbyids"]) => 3,
        ("GET", ["groups", _, "transitivemembers", ..]) => 5,
        _ => 1,
    };
    let mut c = base;
    if req.q("$select").is_some() {
        c -= 1;
    }
    if req.q("$expand").is_some() {
        c += 1;
    }
    if req
        .q("$top")
        .and_then(|t| t.parse::<u32>().ok())
        .is_some_and(|t| t < 20)
    {
        c -= 1;
    }
    c.max(1) as u32
}

pub struct Throttler {
    pub cfg: ThrottleConfig,
    ru_capacity: f64,
    sharepoint_capacity: f64,
    ru: HashMap<String, Bucket>,
    writes: HashMap<String, Bucket>,
    tenant_writes: Bucket,
    ca: Bucket,
    mailbox: HashMap<(String, String), Bucket>,
    /// Outlook upload volume per (app, mailbox), in bytes.
    uploads: HashMap<(String, String), Bucket>,
    pub inflight: HashMap<(String, String), u32>,
    sharepoint: HashMap<String, Bucket>,
}

/// The documented identity tier for a tenant's user count: S < 50, M 50–500, L > 500.
pub fn tier_ru(users: usize) -> u32 {
    if users < 50 {
        3500
    } else if users <= 500 {
        5000
    } else {
        8000
    }
}

/// SharePoint RU per minute by licensed seats.
pub fn sharepoint_ru(seats: usize) -> u32 {
    match seats {
        0..=1000 => 1250,
        1001..=5000 => 2500,
        5001..=15000 => 3750,
        15001..=50000 => 5000,
        _ => 6250,
    }
}

pub struct Outcome {
    pub ru: u32,
    pub sharepoint_ru: u32,
    pub write: bool,
    /// `x-ms-throttle-limit-percentage` when above 80% of the limit.
    pub limit_percentage: Option<f64>,
    /// An Outlook request admitted under the concurrency limit (call `leave` when done).
    pub mailbox_admitted: bool,
}

impl Throttler {
    pub fn new(cfg: ThrottleConfig, users: usize) -> Self {
        let ru = cfg.ru_per_10s.unwrap_or_else(|| tier_ru(users)) as f64;
        let sp = cfg
            .sharepoint_ru_per_min
            .unwrap_or_else(|| sharepoint_ru(users)) as f64;
        Throttler {
            tenant_writes: Bucket::new(cfg.tenant_writes_per_5min as f64, 300.0),
            ca: Bucket::new(cfg.ca_requests_per_second.max(0.01) * 5.0, 5.0),
            cfg,
            ru_capacity: ru,
            sharepoint_capacity: sp,
            ru: HashMap::new(),
            writes: HashMap::new(),
            mailbox: HashMap::new(),
            uploads: HashMap::new(),
            inflight: HashMap::new(),
            sharepoint: HashMap::new(),
        }
    }
    pub fn ru_capacity(&self) -> f64 {
        self.ru_capacity
    }

    /// Charges a request; `Err` is the 429 to return.
    pub fn check(
        &mut self,
        req: &Req,
        service: &Service,
        app: &str,
        tenant: &str,
        enabled: bool,
    ) -> Result<Outcome, Resp> {
        let write = req.is_write();
        let mut out = Outcome {
            ru: 0,
            sharepoint_ru: 0,
            write,
            limit_percentage: None,
            mailbox_admitted: false,
        };
        match service {
            Service::Identity | Service::ConditionalAccess => {
                let cost = identity_cost(req);
                out.ru = cost;
                if !enabled {
                    return Ok(out);
                }
                if *service == Service::ConditionalAccess && self.ca.take(1.0).is_err() {
                    return Err(too_many(
                        None,
                        "Tenant",
                        write,
                        app,
                        tenant,
                        "CPULimitExceeded",
                    ));
                }
                let cap = self.ru_capacity;
                let b = self
                    .ru
                    .entry(app.to_string())
                    .or_insert_with(|| Bucket::new(cap, 10.0));
                if let Err(wait) = b.take(cost as f64) {
                    return Err(too_many(
                        Some(wait),
                        "Tenant_Application",
                        write,
                        app,
                        tenant,
                        "ResourceUnitLimitExceeded",
                    ));
                }
                let used = b.used_fraction();
                if used > 0.8 {
                    out.limit_percentage = Some((used * 10.0).round() / 10.0 + 0.0);
                }
                if write {
                    let wcap = self.cfg.writes_per_150s as f64;
                    let wb = self
                        .writes
                        .entry(app.to_string())
                        .or_insert_with(|| Bucket::new(wcap, 150.0));
                    if let Err(wait) = wb.take(1.0) {
                        return Err(too_many(
                            Some(wait),
                            "Tenant_Application",
                            true,
                            app,
                            tenant,
                            "WriteLimitExceeded",
                        ));
                    }
                    if let Err(wait) = self.tenant_writes.take(1.0) {
                        return Err(too_many(
                            Some(wait),
                            "Tenant",
                            true,
                            app,
                            tenant,
                            "WriteLimitExceeded",
                        ));
                    }
                }
            }
            Service::Outlook(mb) => {
                if !enabled {
                    return Ok(out);
                }
                let key = (app.to_string(), mb.clone());
                let n = self.inflight.get(&key).copied().unwrap_or(0);
                if n >= self.cfg.mailbox_concurrency {
                    return Err(Resp::error(
                        429,
                        "ApplicationThrottled",
                        "Application is over its MailboxConcurrency limit.",
                    )
                    .with_header("Retry-After", "1"));
                }
                let cap = self.cfg.mailbox_requests_per_10min as f64;
                let b = self
                    .mailbox
                    .entry(key.clone())
                    .or_insert_with(|| Bucket::new(cap, 600.0));
                if let Err(wait) = b.take(1.0) {
                    return Err(Resp::error(
                        429,
                        "ApplicationThrottled",
                        "Application is over its MailboxRequests limit.",
                    )
                    .with_header("Retry-After", fmt_secs(wait)));
                }
                if write && !req.body.is_empty() {
                    let cap = self.cfg.mailbox_upload_bytes_per_5min.max(1) as f64;
                    let b = self
                        .uploads
                        .entry(key.clone())
                        .or_insert_with(|| Bucket::new(cap, 300.0));
                    if let Err(wait) = b.take((req.body.len() as f64).min(cap)) {
                        return Err(Resp::error(
                            429,
                            "ApplicationThrottled",
                            "Application is over its MailboxUploadSize limit (150 MB per 5 minutes).",
                        )
                        .with_header("Retry-After", fmt_secs(wait)));
                    }
                }
                // Admitted: counted in flight (under the same lock) until `leave`.
                *self.inflight.entry(key).or_insert(0) += 1;
                out.mailbox_admitted = true;
            }
            Service::SharePoint => {
                let cost = crate::drive::sharepoint_cost(req);
                out.sharepoint_ru = cost;
                if !enabled {
                    return Ok(out);
                }
                let cap = self.sharepoint_capacity;
                let b = self
                    .sharepoint
                    .entry(app.to_string())
                    .or_insert_with(|| Bucket::new(cap, 60.0));
                match b.take(cost as f64) {
                    Ok(()) => {
                        if b.used_fraction() > 0.8 {
                            out.limit_percentage = Some(b.used_fraction());
                        }
                    }
                    Err(wait) => {
                        return Err(Resp::error(
                            429,
                            "activityLimitReached",
                            "The request has been throttled.",
                        )
                        .with_header("Retry-After", format!("{}", wait.ceil() as u64))
                        .with_header("RateLimit-Limit", format!("{}", cap as u64))
                        .with_header("RateLimit-Remaining", "0")
                        .with_header("RateLimit-Reset", format!("{}", wait.ceil() as u64)));
                    }
                }
            }
        }
        Ok(out)
    }
    /// Ends an Outlook request admitted by `check` (the 5th concurrent request gets 429).
    pub fn leave(&mut self, app: &str, mailbox: &str) {
        if let Some(n) = self
            .inflight
            .get_mut(&(app.to_string(), mailbox.to_string()))
        {
            *n = n.saturating_sub(1);
        }
    }
    pub fn sharepoint_capacity(&self) -> f64 {
        self.sharepoint_capacity
    }
}

/// `Retry-After` as Graph sends it: a decimal number of seconds.
pub fn fmt_secs(s: f64) -> String {
    let v = (s * 1000.0).ceil() / 1000.0;
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as u64)
    } else {
        format!("{v:.3}")
    }
}

/// The documented 429 body, with `Retry-After` (omitted when `None`) and throttle headers.
pub fn too_many(
    retry_after: Option<f64>,
    scope: &str,
    write: bool,
    app: &str,
    tenant: &str,
    info: &str,
) -> Resp {
    let id = request_id();
    let mut r = Resp::json(
        429,
        json!({"error": {"code": "TooManyRequests", "innerError": {"code": "429", "date": util::iso_no_z(util::unix_now().as_secs() as i64),
            "message": "Please retry after", "request-id": id, "status": "429"}, "message": "Please retry again later."}}),
    )
    .with_header("x-ms-throttle-scope", format!("{scope}/{}/{app}/{tenant}", if write { "Write" } else { "Read" }))
    .with_header("x-ms-throttle-information", info);
    if let Some(s) = retry_after {
        r = r.with_header("Retry-After", fmt_secs(s));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn costs() {
        let r = |m: &str, p: &str| Req::parse(m, p, vec![], vec![], "http://x");
        assert_eq!(identity_cost(&r("GET", "/v1.0/users")), 2);
        assert_eq!(identity_cost(&r("GET", "/v1.0/users?$select=id")), 1);
        assert_eq!(identity_cost(&r("GET", "/v1.0/groups/x/members")), 3);
        assert_eq!(identity_cost(&r("GET", "/v1.0/groups/x/members?$top=5")), 2);
        assert_eq!(
            identity_cost(&r("GET", "/v1.0/groups/x/transitiveMembers?$expand=x")),
            6
        );
        assert_eq!(identity_cost(&r("GET", "/v1.0/domains")), 1);
        assert_eq!(fmt_secs(2.1274), "2.128");
        assert_eq!(fmt_secs(10.0), "10");
    }
    #[test]
    fn bucket_refuses_and_keeps_counting() {
        let mut b = Bucket::new(10.0, 10.0);
        assert!(b.take(10.0).is_ok());
        let w1 = b.take(5.0).unwrap_err();
        let w2 = b.take(5.0).unwrap_err();
        assert!(
            w2 > w1,
            "retrying while throttled must push the wait out ({w1} -> {w2})"
        );
    }
}
