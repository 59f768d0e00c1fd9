//! Microsoft Graph through the host: requests, error decoding, paging, delta rounds and `$batch`.
//!
//! Every request goes to the connection the manifest binds the plugin to. The host adds the
//! token, retries throttled requests after `Retry-After`, and keeps under the tenant's budget;
//! what reaches the plugin is the final response.

use serde_json::Value;

use crate::world::cairn::plugin::graph as host;
use crate::world::cairn::plugin::types::GraphError;
use crate::{NextStep, PluginError, Step, Tombstone};

pub use host::{BatchRequest, Body, Header, Request, RequestError, Response};

impl From<RequestError> for PluginError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::Refused(m) => PluginError::Refused(m),
            RequestError::Unavailable(m) => PluginError::Other(format!("Graph unavailable: {m}")),
        }
    }
}

/// Builds a request with no body.
pub fn request(method: &str, url: &str) -> Request {
    Request {
        method: method.into(),
        url: url.into(),
        headers: Vec::new(),
        body: Body::None,
    }
}

/// Builds a request with a JSON body.
pub fn json_request(method: &str, url: &str, body: &Value) -> Request {
    Request {
        method: method.into(),
        url: url.into(),
        headers: vec![Header {
            name: "Content-Type".into(),
            value: "application/json".into(),
        }],
        body: Body::Bytes(body.to_string().into_bytes()),
    }
}

/// Builds one `PUT` of an upload session (Outlook attachments, drive items): `bytes` are the
/// file's bytes from offset `start`, of `total` in all (`Content-Range: bytes start-end/total`).
/// The upload URL is pre-authenticated; the host sends it without the bearer token.
pub fn upload_range(url: &str, start: u64, total: u64, bytes: Vec<u8>) -> Request {
    let end = start + bytes.len() as u64 - 1;
    Request {
        method: "PUT".into(),
        url: url.into(),
        headers: vec![
            Header {
                name: "Content-Type".into(),
                value: "application/octet-stream".into(),
            },
            Header {
                name: "Content-Range".into(),
                value: format!("bytes {start}-{end}/{total}"),
            },
        ],
        body: Body::Bytes(bytes),
    }
}

/// The `uploadUrl` of a `createUploadSession` answer (Outlook attachments, drive items).
pub fn upload_url(session: &Value) -> Result<String, PluginError> {
    session
        .get("uploadUrl")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| PluginError::Other("createUploadSession returned no uploadUrl".into()))
}

/// The first byte an upload session expects next: the start of the first range of its
/// `nextExpectedRanges` (`["26-"]`, `["3276800-5242879"]`); `None` when it names none.
pub fn next_expected_start(v: &Value) -> Option<u64> {
    v.get("nextExpectedRanges")?
        .as_array()?
        .first()?
        .as_str()?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Adds a header to a request.
pub fn with_header(mut req: Request, name: &str, value: &str) -> Request {
    req.headers.push(Header {
        name: name.into(),
        value: value.into(),
    });
    req
}

/// Sends a request and returns the raw response (any status).
pub fn send(req: Request) -> Result<Response, PluginError> {
    Ok(host::send(&req)?)
}

/// Sends a request; returns the JSON body of a 2xx response (`Value::Null` for an empty body),
/// or the decoded Graph error.
pub fn send_json(req: Request) -> Result<Value, PluginError> {
    let label = format!("{} {}", req.method, path_of(&req.url));
    let resp = send(req)?;
    json_or_error(&label, &resp)
}

/// GETs `url` and returns its JSON body.
pub fn get_json(url: &str) -> Result<Value, PluginError> {
    send_json(request("GET", url))
}

/// Decodes a response: the JSON body of a 2xx, or the Graph error it carries.
pub fn json_or_error(label: &str, resp: &Response) -> Result<Value, PluginError> {
    if (200..300).contains(&resp.status) {
        if resp.body.is_empty() {
            return Ok(Value::Null);
        }
        return serde_json::from_slice(&resp.body)
            .map_err(|e| PluginError::Other(format!("{label}: response is not valid JSON: {e}")));
    }
    Err(PluginError::Graph(decode_error(
        label,
        resp.status,
        &resp.body,
    )))
}

/// Decodes Graph's error body (`{"error":{"code","message"}}`); tolerates non-JSON bodies.
pub fn decode_error(label: &str, status: u16, body: &[u8]) -> GraphError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let code = error
        .and_then(|e| e.get("code"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned());
    GraphError {
        status,
        code,
        message,
        request: label.to_string(),
    }
}

/// True if the error means "this delta token is no longer valid: read everything again"
/// (410 Gone, `syncStateNotFound`, `resyncRequired`, drive `resyncChanges*`).
pub fn is_resync(err: &PluginError) -> bool {
    match err {
        PluginError::Graph(e) => {
            e.status == 410
                || e.code.eq_ignore_ascii_case("syncStateNotFound")
                || e.code.eq_ignore_ascii_case("resyncRequired")
                || e.code.starts_with("resyncChanges")
        }
        _ => false,
    }
}

/// True if the error is Graph's 403 for a missing permission.
pub fn is_forbidden(err: &PluginError) -> bool {
    matches!(err, PluginError::Graph(e) if e.status == 403)
}

/// The path part of a URL, for messages (no host, no query values that might be long).
fn path_of(url: &str) -> &str {
    let without_scheme = url.split_once("://").map(|(_, rest)| rest).unwrap_or(url);
    let path_start = if url.contains("://") {
        without_scheme.find('/').unwrap_or(without_scheme.len())
    } else {
        0
    };
    let path = &without_scheme[path_start..];
    path.split('?').next().unwrap_or(path)
}

/// One page of a Graph collection or delta round.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The page's objects (`value`). Removed objects of a delta page are in `removed`.
    pub value: Vec<Value>,
    /// Objects a delta page reports as removed (`@removed`), with their reasons.
    pub removed: Vec<(String, crate::Removal)>,
    /// `@odata.nextLink`: the absolute URL of the next page.
    pub next_link: Option<String>,
    /// `@odata.deltaLink`: the link to start the next delta round from.
    pub delta_link: Option<String>,
}

impl Page {
    /// Parses a collection or delta page.
    pub fn parse(body: &Value) -> Result<Page, PluginError> {
        let values = body
            .get("value")
            .and_then(Value::as_array)
            .ok_or_else(|| PluginError::Other("Graph page has no `value` array".into()))?;
        let mut value = Vec::with_capacity(values.len());
        let mut removed = Vec::new();
        for v in values {
            match v.get("@removed") {
                Some(r) => {
                    let id = v
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    let reason = match r.get("reason").and_then(Value::as_str) {
                        Some("changed") => crate::Removal::SoftDeleted,
                        Some("deleted") => crate::Removal::HardDeleted,
                        _ => crate::Removal::Gone,
                    };
                    removed.push((id, reason));
                }
                None => value.push(v.clone()),
            }
        }
        let link = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
        Ok(Page {
            value,
            removed,
            next_link: link("@odata.nextLink"),
            delta_link: link("@odata.deltaLink"),
        })
    }

    /// The step for a full listing: more while there is a next link, done (with the delta
    /// link as state, if any) otherwise.
    pub fn into_full_step(self, items: Vec<crate::Item>) -> Step {
        let next = self.next();
        Step {
            listing: crate::Listing::Full,
            items,
            removed: Vec::new(),
            next,
            note: None,
        }
    }

    /// The step for a delta round: `listing` says whether this round is a full read (first
    /// round, or after a resync) or changes since the stored delta link.
    pub fn into_delta_step(
        self,
        kind: &str,
        listing: crate::Listing,
        items: Vec<crate::Item>,
    ) -> Step {
        let next = self.next();
        let removed = self
            .removed
            .into_iter()
            .map(|(id, reason)| Tombstone {
                kind: kind.to_string(),
                id,
                reason,
            })
            .collect();
        Step {
            listing,
            items,
            removed,
            next,
            note: None,
        }
    }

    fn next(&self) -> NextStep {
        match (&self.next_link, &self.delta_link) {
            (Some(next), _) => NextStep::More(next.clone()),
            (None, Some(delta)) => NextStep::Done(delta.clone()),
            (None, None) => NextStep::Done(String::new()),
        }
    }
}

/// GETs one page of a collection or delta round.
pub fn get_page(url: &str) -> Result<Page, PluginError> {
    Page::parse(&get_json(url)?)
}

/// Iterates over every object of a collection, following `@odata.nextLink` to the end.
/// For small collections (policies, role definitions); large ones should page through
/// `run-step` so the host can checkpoint between pages.
pub fn pages(url: &str) -> PageIter {
    PageIter {
        next: Some(url.to_string()),
    }
}

/// Iterator over the pages of a collection; see [`pages`].
pub struct PageIter {
    next: Option<String>,
}

impl Iterator for PageIter {
    type Item = Result<Page, PluginError>;

    fn next(&mut self) -> Option<Self::Item> {
        let url = self.next.take()?;
        let page = get_page(&url);
        if let Ok(p) = &page {
            self.next = p.next_link.clone();
        }
        Some(page)
    }
}

/// Reads a whole (small) collection.
pub fn get_all(url: &str) -> Result<Vec<Value>, PluginError> {
    let mut all = Vec::new();
    for page in pages(url) {
        all.extend(page?.value);
    }
    Ok(all)
}

/// Builds a list of `$batch` requests; the host splits it into Graph batches of 20.
#[derive(Default)]
pub struct Batch {
    requests: Vec<BatchRequest>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a request; returns its index (for `depends_on` and to find its response).
    pub fn push(&mut self, req: Request) -> u32 {
        self.push_after(req, &[])
    }

    /// Adds a request that runs only after the requests at `after` succeeded (424 otherwise).
    pub fn push_after(&mut self, req: Request, after: &[u32]) -> u32 {
        self.requests.push(BatchRequest {
            request: req,
            depends_on: after.to_vec(),
        });
        (self.requests.len() - 1) as u32
    }

    /// Number of requests.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// True if there are no requests.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Sends everything; responses come back in the order the requests were pushed.
    pub fn send(self) -> Result<Vec<Response>, PluginError> {
        if self.requests.is_empty() {
            return Ok(Vec::new());
        }
        Ok(host::batch(&self.requests)?)
    }
}

/// Percent-encodes a value for use in a query string or `$filter`.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn upload_session_answers_are_read() {
        assert_eq!(
            next_expected_start(&json!({"nextExpectedRanges": ["3276800-5242879"]})),
            Some(3_276_800)
        );
        assert_eq!(
            next_expected_start(&json!({"nextExpectedRanges": ["26-"]})),
            Some(26)
        );
        assert_eq!(
            next_expected_start(&json!({"nextExpectedRanges": []})),
            None
        );
        assert_eq!(next_expected_start(&json!({})), None);
        assert_eq!(
            upload_url(&json!({"uploadUrl": "https://up/1"})).unwrap(),
            "https://up/1"
        );
        assert!(matches!(
            upload_url(&json!({"expirationDateTime": "2026-11-30T00:00:00Z"})),
            Err(PluginError::Other(m)) if m.contains("no uploadUrl")
        ));
    }

    #[test]
    fn parses_delta_page_with_removals() {
        let body = json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users",
            "@odata.nextLink": "https://graph.microsoft.com/v1.0/users/delta?$skiptoken=abc",
            "value": [
                {"id": "1", "displayName": "A"},
                {"id": "2", "@removed": {"reason": "changed"}},
                {"id": "3", "@removed": {"reason": "deleted"}}
            ]
        });
        let page = Page::parse(&body).unwrap();
        assert_eq!(page.value.len(), 1);
        assert_eq!(
            page.removed,
            vec![
                ("2".to_string(), crate::Removal::SoftDeleted),
                ("3".to_string(), crate::Removal::HardDeleted)
            ]
        );
        let step = page.into_delta_step("user", crate::Listing::Changes, vec![]);
        assert_eq!(step.removed.len(), 2);
        assert!(
            matches!(step.next, NextStep::More(ref u) if u.ends_with("$skiptoken=abc")),
            "next link becomes the cursor"
        );
    }

    #[test]
    fn last_delta_page_is_done_with_delta_link_as_state() {
        let body =
            json!({"value": [], "@odata.deltaLink": "https://g/v1.0/users/delta?$deltatoken=x"});
        let step = Page::parse(&body).unwrap().into_full_step(Vec::new());
        assert!(matches!(step.next, NextStep::Done(ref s) if s.ends_with("$deltatoken=x")));
    }

    #[test]
    fn page_without_value_is_an_error() {
        assert!(Page::parse(&json!({"error": {}})).is_err());
    }

    #[test]
    fn decodes_graph_error_body() {
        let body = br#"{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation.","innerError":{}}}"#;
        let e = decode_error("GET /v1.0/users", 403, body);
        assert_eq!(e.code, "Authorization_RequestDenied");
        assert_eq!(e.status, 403);
        assert!(is_forbidden(&PluginError::Graph(e)));
        let garbage = decode_error("GET /x", 502, b"<html>bad gateway</html>");
        assert_eq!(garbage.code, "");
        assert!(garbage.message.contains("bad gateway"));
    }

    #[test]
    fn resync_errors_are_recognised() {
        let gone = PluginError::Graph(decode_error("GET /d", 410, b""));
        assert!(is_resync(&gone));
        let expired = PluginError::Graph(decode_error(
            "GET /d",
            400,
            br#"{"error":{"code":"syncStateNotFound","message":"expired"}}"#,
        ));
        assert!(is_resync(&expired));
        assert!(!is_resync(&PluginError::Other("x".into())));
    }

    #[test]
    fn paths_for_messages_drop_host_and_query() {
        assert_eq!(
            path_of("https://graph.microsoft.com/v1.0/users?$top=5"),
            "/v1.0/users"
        );
        assert_eq!(path_of("/v1.0/groups?$select=id"), "/v1.0/groups");
    }

    #[test]
    fn encodes_query_values() {
        assert_eq!(encode("a b'c"), "a%20b%27c");
    }
}
