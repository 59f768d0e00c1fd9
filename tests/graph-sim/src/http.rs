//! Transport-independent request/response types and Graph's error shapes.

use crate::util;
use serde_json::{json, Value};

/// A Graph request after the version prefix has been split off.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    /// `v1.0` or `beta`.
    pub version: String,
    /// Decoded path segments after the version.
    pub segs: Vec<String>,
    /// Raw (still encoded) query pieces, in order, as `name=value`.
    pub raw_query: Vec<String>,
    /// Decoded query parameters.
    pub query: Vec<(String, String)>,
    /// Lower-case header names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// `http://127.0.0.1:port`
    pub base: String,
    /// Set by the auth layer.
    pub app: Option<crate::auth::Caller>,
    pub request_id: String,
}

impl Req {
    pub fn parse(
        method: &str,
        path_and_query: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        base: &str,
    ) -> Req {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let mut segs: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(util::pct_decode)
            .collect();
        let version = if segs.first().is_some_and(|s| s == "v1.0" || s == "beta") {
            segs.remove(0)
        } else {
            String::new()
        };
        let raw_query: Vec<String> = query
            .split('&')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let query = form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Req {
            method: method.to_ascii_uppercase(),
            version,
            segs,
            raw_query,
            query,
            headers,
            body,
            base: base.to_string(),
            app: None,
            request_id: String::new(),
        }
    }
    /// A query option; `$select` and `select` are the same (dollar-optional).
    pub fn q(&self, name: &str) -> Option<&str> {
        let bare = name.trim_start_matches('$');
        self.query
            .iter()
            .find(|(k, _)| {
                let k = k.trim_start_matches('$');
                k.eq_ignore_ascii_case(bare)
            })
            .map(|(_, v)| v.as_str())
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn eventual(&self) -> bool {
        self.header("consistencylevel")
            .is_some_and(|v| v.eq_ignore_ascii_case("eventual"))
    }
    pub fn prefers(&self, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("prefer"))
            .any(|(_, v)| v.to_ascii_lowercase().contains(&token.to_ascii_lowercase()))
    }
    pub fn prefer_value(&self, key: &str) -> Option<String> {
        for (k, v) in &self.headers {
            if !k.eq_ignore_ascii_case("prefer") {
                continue;
            }
            for part in v.split(',') {
                let part = part.trim();
                if let Some((pk, pv)) = part.split_once('=') {
                    if pk.trim().eq_ignore_ascii_case(key) {
                        return Some(pv.trim().trim_matches('"').to_string());
                    }
                }
            }
        }
        None
    }
    pub fn json_body(&self) -> Result<serde_json::Map<String, Value>, Resp> {
        if self.body.is_empty() {
            return Err(Resp::error(
                400,
                "BadRequest",
                "Empty Payload, JSON content expected",
            ));
        }
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(Resp::error(
                400,
                "BadRequest",
                "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
            )),
        }
    }
    /// The path after the version, e.g. `/users/abc`.
    pub fn path(&self) -> String {
        format!("/{}", self.segs.join("/"))
    }
    /// Full URL of this collection with the original query options except `drop`.
    pub fn self_url_without(&self, drop: &[&str]) -> String {
        let kept: Vec<&String> = self
            .raw_query
            .iter()
            .filter(|p| {
                let name = util::pct_decode(p.split('=').next().unwrap_or(""));
                let name = name.trim_start_matches('$');
                !drop
                    .iter()
                    .any(|d| d.trim_start_matches('$').eq_ignore_ascii_case(name))
            })
            .collect();
        let path: Vec<String> = self.segs.iter().map(|s| util::pct_encode(s)).collect();
        let mut url = format!("{}/{}/{}", self.base, self.version, path.join("/"));
        if !kept.is_empty() {
            url.push('?');
            url.push_str(
                &kept
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("&"),
            );
        }
        url
    }
    pub fn is_write(&self) -> bool {
        self.method != "GET" && self.method != "HEAD"
    }
}

#[derive(Clone, Debug)]
pub enum Body {
    Empty,
    Json(Value),
    /// Text or binary with its content type.
    Bytes(Vec<u8>, String),
    /// Abort the connection (fault injection).
    Drop,
}

#[derive(Clone, Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
    /// Objects in the response (for the latency model and stats).
    pub objects: usize,
}

impl Resp {
    pub fn json(status: u16, v: Value) -> Resp {
        Resp {
            status,
            headers: vec![],
            body: Body::Json(v),
            objects: 0,
        }
    }
    pub fn ok(v: Value) -> Resp {
        Resp::json(200, v)
    }
    pub fn created(v: Value) -> Resp {
        Resp::json(201, v)
    }
    pub fn no_content() -> Resp {
        Resp {
            status: 204,
            headers: vec![],
            body: Body::Empty,
            objects: 0,
        }
    }
    pub fn text(status: u16, s: impl Into<String>, content_type: &str) -> Resp {
        Resp {
            status,
            headers: vec![],
            body: Body::Bytes(s.into().into_bytes(), content_type.to_string()),
            objects: 0,
        }
    }
    pub fn bytes(status: u16, b: Vec<u8>, content_type: &str) -> Resp {
        Resp {
            status,
            headers: vec![],
            body: Body::Bytes(b, content_type.to_string()),
            objects: 0,
        }
    }
    /// Graph's error shape: `{"error":{"code","message","innerError":{date, request-id, client-request-id}}}`.
    pub fn error(status: u16, code: &str, message: &str) -> Resp {
        let id = request_id();
        Resp::json(
            status,
            json!({"error": {"code": code, "message": message, "innerError": {
                "date": util::iso_no_z(util::unix_now().as_secs() as i64),
                "request-id": id, "client-request-id": id}}}),
        )
    }
    pub fn not_found(id: &str) -> Resp {
        Resp::error(
            404,
            "Request_ResourceNotFound",
            &format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present."),
        )
    }
    pub fn bad_request(msg: &str) -> Resp {
        Resp::error(400, "Request_BadRequest", msg)
    }
    pub fn denied() -> Resp {
        Resp::error(
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
    }
    pub fn method_not_allowed() -> Resp {
        Resp::error(
            405,
            "Request_BadRequest",
            "Specified HTTP method is not allowed for the request target.",
        )
    }
    pub fn not_implemented() -> Resp {
        Resp::error(
            501,
            "NotImplemented",
            "This operation target is not yet supported.",
        )
    }
    pub fn with_header(mut self, k: &str, v: impl Into<String>) -> Resp {
        self.headers.push((k.to_string(), v.into()));
        self
    }
    pub fn with_objects(mut self, n: usize) -> Resp {
        self.objects = n;
        self
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json_value(&self) -> Option<&Value> {
        match &self.body {
            Body::Json(v) => Some(v),
            _ => None,
        }
    }
}

pub fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    let n = N.fetch_add(1, Ordering::Relaxed);
    util::format_guid(
        util::fnv1a(&n.to_le_bytes()),
        n.wrapping_mul(0x9E37_79B9_7F4A_7C15),
    )
}
