//! Fault injection: rules by path pattern and rate, seeded and reproducible.

use crate::util::Rng;
use serde::{Deserialize, Serialize};

/// What a matching rule does to the request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum FaultKind {
    /// A 5xx (500, 502, 503, 504 …) with or without `Retry-After` (seconds, may be decimal).
    ServerError {
        status: u16,
        #[serde(default, rename = "retryAfter")]
        retry_after: Option<f64>,
    },
    /// A 429 `TooManyRequests` with or without `Retry-After`.
    Throttle {
        #[serde(default, rename = "retryAfter")]
        retry_after: Option<f64>,
    },
    /// The connection is dropped mid-response.
    DropConnection,
    /// The request is served (whatever it changes stays changed), then the connection is
    /// dropped instead of its answer: the client cannot tell whether it was acted on, e.g. an
    /// upload `PUT` whose bytes the service took. In a `$batch` the item is served and
    /// answered 500.
    DropAnswer,
    /// The response is delayed by this many milliseconds (then served normally).
    Slow { millis: u64 },
    /// The bearer token is rejected as expired (401 `InvalidAuthenticationToken`).
    ExpiredToken,
    /// 410 Gone with a `Location` to restart the sync (delta paths).
    Resync,
    /// Any Graph error with this status, `error.code` and message, e.g. 404
    /// `ErrorItemNotFound` for a message that vanished between a delta page and its download.
    Error {
        status: u16,
        code: String,
        #[serde(default)]
        message: String,
    },
}

/// A fault rule. `path` is a glob over the request path (`*` matches anything, e.g.
/// `/v1.0/users/delta*` or `*/messages*`); `rate` in [0, 1]; `max` limits how often it fires;
/// `after` lets the first N matching requests through (a fault in the middle of paging);
/// `query`, when set, is a text the request's query string must contain (case-insensitive), e.g.
/// `skiptoken` for the follow-up pages of a listing.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FaultRule {
    pub path: String,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default = "one")]
    pub rate: f64,
    #[serde(flatten)]
    pub kind: FaultKind,
    #[serde(default)]
    pub max: Option<u64>,
    #[serde(default)]
    pub hits: u64,
    #[serde(default)]
    pub after: u64,
    #[serde(default)]
    pub query: Option<String>,
    /// Matching requests seen so far (for `after`).
    #[serde(default)]
    pub seen: u64,
}

fn one() -> f64 {
    1.0
}

impl FaultRule {
    pub fn new(path: &str, kind: FaultKind) -> Self {
        FaultRule {
            path: path.into(),
            method: None,
            rate: 1.0,
            kind,
            max: None,
            hits: 0,
            after: 0,
            query: None,
            seen: 0,
        }
    }
    pub fn rate(mut self, rate: f64) -> Self {
        self.rate = rate;
        self
    }
    pub fn times(mut self, n: u64) -> Self {
        self.max = Some(n);
        self
    }
    /// Lets the first `n` matching requests through; the rule applies from the next one on
    /// (e.g. a 410 on the second page of a delta round).
    pub fn after(mut self, n: u64) -> Self {
        self.after = n;
        self
    }
    /// Only requests whose query string contains `text` (case-insensitive).
    pub fn query(mut self, text: &str) -> Self {
        self.query = Some(text.to_ascii_lowercase());
        self
    }
    pub fn method(mut self, m: &str) -> Self {
        self.method = Some(m.to_ascii_uppercase());
        self
    }
}

pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let t: Vec<char> = text.to_ascii_lowercase().chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == t[ti] || p[pi] == '?') {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

pub struct Faults {
    pub rules: Vec<FaultRule>,
    rng: Rng,
}

impl Faults {
    pub fn new(seed: u64) -> Self {
        Faults {
            rules: vec![],
            rng: Rng::derive(seed, "faults"),
        }
    }
    /// The fault to apply to this request (`target`: its path and query), if any (rules are
    /// tried in order).
    pub fn pick(&mut self, method: &str, target: &str) -> Option<FaultKind> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let query = query.to_ascii_lowercase();
        for r in self.rules.iter_mut() {
            if r.max.is_some_and(|m| r.hits >= m) {
                continue;
            }
            if r.method
                .as_deref()
                .is_some_and(|m| !m.eq_ignore_ascii_case(method))
            {
                continue;
            }
            if !glob(&r.path, path) {
                continue;
            }
            if r.query
                .as_deref()
                .is_some_and(|q| !query.contains(&q.to_ascii_lowercase()))
            {
                continue;
            }
            r.seen += 1;
            if r.seen <= r.after {
                continue;
            }
            let roll = self.rng.unit();
            if roll < r.rate {
                r.hits += 1;
                return Some(r.kind.clone());
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn globbing() {
        assert!(glob("/v1.0/users*", "/v1.0/users/delta"));
        assert!(glob(
            "*/messages*",
            "/v1.0/users/a/mailFolders/b/messages/delta"
        ));
        assert!(!glob("/v1.0/groups*", "/v1.0/users"));
        assert!(glob("*", "/anything"));
    }
    #[test]
    fn seeded_and_limited() {
        let run = || {
            let mut f = Faults::new(42);
            f.rules
                .push(FaultRule::new("*", FaultKind::DropConnection).rate(0.5));
            (0..50)
                .map(|_| f.pick("GET", "/v1.0/users").is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
        let mut f = Faults::new(1);
        f.rules
            .push(FaultRule::new("*", FaultKind::ExpiredToken).times(2));
        let hits = (0..10).filter(|_| f.pick("GET", "/x").is_some()).count();
        assert_eq!(hits, 2);
        // `after`: the first three matching requests pass, the next two fail, then none.
        let mut f = Faults::new(1);
        f.rules.push(
            FaultRule::new("/v1.0/drives/*", FaultKind::Resync)
                .after(3)
                .times(2),
        );
        assert!(f.pick("GET", "/v1.0/users").is_none());
        let fired: Vec<bool> = (0..7)
            .map(|_| f.pick("GET", "/v1.0/drives/d/root/delta").is_some())
            .collect();
        assert_eq!(fired, [false, false, false, true, true, false, false]);
        // `query`: only the follow-up pages of a listing (the path alone cannot tell them apart).
        let mut f = Faults::new(1);
        f.rules.push(
            FaultRule::new("/v1.0/groups/delta*", FaultKind::Slow { millis: 1 }).query("SkipToken"),
        );
        assert!(f
            .pick("GET", "/v1.0/groups/delta?$select=id,members")
            .is_none());
        assert!(f.pick("GET", "/v1.0/groups/delta").is_none());
        assert!(f.pick("GET", "/v1.0/groups/delta?$skiptoken=abc").is_some());
        let r: FaultRule =
            serde_json::from_str(r#"{"path":"*","type":"slow","millis":5,"query":"deltatoken"}"#)
                .unwrap();
        assert_eq!(r.query.as_deref(), Some("deltatoken"));
    }
    #[test]
    fn error_fault_shape() {
        let r: FaultRule = serde_json::from_str(
            r#"{"path":"*/$value","type":"error","status":404,"code":"ErrorItemNotFound"}"#,
        )
        .unwrap();
        assert_eq!(
            r.kind,
            FaultKind::Error {
                status: 404,
                code: "ErrorItemNotFound".into(),
                message: String::new()
            }
        );
    }
    #[test]
    fn drop_answer_shape() {
        let r: FaultRule = serde_json::from_str(
            r#"{"path":"*/uploadSession","method":"PUT","type":"dropAnswer","after":1,"max":1}"#,
        )
        .unwrap();
        assert_eq!(r.kind, FaultKind::DropAnswer);
        assert_eq!(
            (r.after, r.max, r.method.as_deref()),
            (1, Some(1), Some("PUT"))
        );
        assert_eq!(
            serde_json::to_value(FaultKind::DropAnswer).unwrap(),
            serde_json::json!({"type": "dropAnswer"})
        );
    }
    #[test]
    fn serde_shape() {
        let r: FaultRule = serde_json::from_str(r#"{"path":"/v1.0/users*","rate":0.5,"type":"serverError","status":503,"retryAfter":1.5}"#).unwrap();
        assert_eq!(
            r.kind,
            FaultKind::ServerError {
                status: 503,
                retry_after: Some(1.5)
            }
        );
    }
}
