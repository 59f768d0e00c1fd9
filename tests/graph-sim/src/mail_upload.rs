//! Large message attachments through upload sessions
//! (https://learn.microsoft.com/graph/outlook-large-attachments):
//!
//! * `POST /users/{id}/messages/{id}/attachments/createUploadSession` with
//!   `{"AttachmentItem": {attachmentType, name, size, contentType?, isInline?, contentId?}}` →
//!   201 `uploadSession {uploadUrl, expirationDateTime, nextExpectedRanges: ["0-"]}`; a file under
//!   3 MiB is refused (`ErrorAttachmentSizeShouldNotBeLessThanMinimumSize`: post it to
//!   `/attachments`), over 150 MiB too.
//! * The upload URL is Outlook's, pre-authenticated:
//!   `{base}/api/v2.0/Users('{user}@{tenant}')/Messages('{message}')/AttachmentSessions('{id}')?authtoken=…`.
//!   Requests to it carry no `Authorization` header (one that does gets 401: a Graph token is not
//!   valid for Outlook's endpoint); the `authtoken` must match. It expires at
//!   `expirationDateTime` (404 after).
//! * `PUT` with `Content-Range: bytes {start}-{end}/{total}`, bytes in order, at most 4 MiB a
//!   request: 200 `{ExpirationDateTime, nextExpectedRanges: ["{next}"]}` until the last range,
//!   which answers 201 with a `Location` naming the new attachment and an empty body. A range
//!   that does not start where the session expects is 416 (the error names the expected start);
//!   a malformed or inconsistent `Content-Range` (end before start, total other than the
//!   session's size, length other than the body's) is 400. `DELETE` cancels the session (204).
//! * The finished attachment is a `fileAttachment` of the message (`contentBytes`, `$value`) and a
//!   part of the message's MIME (`$value`, see [`crate::mail::attach`]).
//! * Requests to the upload URL are Outlook requests of that mailbox: its concurrency and
//!   request limits apply (`crate::server::serve`).

use crate::auth::Caller;
use crate::http::{Body, Req, Resp};
use crate::mail::{self, Attachment};
use crate::state::Tenant;
use crate::util;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// Smallest file an upload session takes (smaller ones are posted to `/attachments`).
pub const MIN_SESSION_BYTES: usize = 3 * 1024 * 1024;
/// Outlook's largest attachment.
pub const MAX_SESSION_BYTES: usize = 150 * 1024 * 1024;
/// Largest `PUT` body.
pub const MAX_PUT_BYTES: usize = 4 * 1024 * 1024;
/// How long an upload URL is valid.
pub const SESSION_SECONDS: i64 = 15 * 60;

#[derive(Clone, Debug)]
pub struct UploadSession {
    pub id: String,
    pub user: String,
    pub message: String,
    pub token: String,
    /// The app that created it (its Outlook limits apply to the uploads).
    pub app: String,
    pub name: String,
    pub content_type: String,
    pub size: usize,
    pub inline: bool,
    pub content_id: Option<String>,
    pub received: Vec<u8>,
    pub expires: i64,
}

/// A property of `AttachmentItem`, whatever the case of its name.
fn prop<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// `POST …/messages/{id}/attachments/createUploadSession`.
pub fn create_session(t: &mut Tenant, req: &Req, uid: &str, mid: &str) -> Resp {
    let body: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(_) => return Resp::error(400, "BadRequest", "The request body is not valid JSON."),
    };
    let Some(item) = prop(&body, "AttachmentItem") else {
        return Resp::error(
            400,
            "ErrorInvalidRequest",
            "The AttachmentItem parameter is required.",
        );
    };
    let kind = prop(item, "attachmentType")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !kind.eq_ignore_ascii_case("file") {
        return Resp::error(
            400,
            "ErrorInvalidRequest",
            "Only attachmentType 'file' can be uploaded in a session.",
        );
    }
    let Some(name) = prop(item, "name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    else {
        return Resp::error(
            400,
            "ErrorInvalidRequest",
            "AttachmentItem.name is required.",
        );
    };
    let Some(size) = prop(item, "size").and_then(Value::as_u64) else {
        return Resp::error(
            400,
            "ErrorInvalidRequest",
            "AttachmentItem.size is required.",
        );
    };
    let size = size as usize;
    if size < MIN_SESSION_BYTES {
        return Resp::error(
            400,
            "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
            "Attachment size should not be less than 3 MB; post smaller files to the attachments collection.",
        );
    }
    if size > MAX_SESSION_BYTES {
        return Resp::error(
            400,
            "ErrorAttachmentSizeLimitExceeded",
            "The attachment is larger than 150 MB.",
        );
    }
    let app = req
        .app
        .as_ref()
        .map(|c| c.client_id.clone())
        .unwrap_or_default();
    let seq = t.next_seq();
    let now = t.now();
    let id = format!(
        "AAMkAGI2upl{}=",
        util::b64url(&util::sha1(format!("{uid}|{mid}|{seq}").as_bytes()))
    );
    let token = util::b64url(&util::sha256(
        format!("{id}|{seq}|{now}|{}", t.tenant_id).as_bytes(),
    ));
    let session = UploadSession {
        id: id.clone(),
        user: uid.to_string(),
        message: mid.to_string(),
        token: token.clone(),
        app,
        name: name.to_string(),
        content_type: prop(item, "contentType")
            .and_then(Value::as_str)
            .unwrap_or("application/octet-stream")
            .to_string(),
        size,
        inline: prop(item, "isInline")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        content_id: prop(item, "contentId")
            .and_then(Value::as_str)
            .map(str::to_string),
        received: Vec::new(),
        expires: now + SESSION_SECONDS,
    };
    let url = format!(
        "{}/api/v2.0/Users('{uid}@{}')/Messages('{mid}')/AttachmentSessions('{id}')?authtoken={token}",
        req.base, t.tenant_id
    );
    let expires = util::iso(session.expires);
    t.mail.sessions.insert(id, session);
    Resp::created(json!({
        "@odata.context": format!("{}/{}/$metadata#microsoft.graph.uploadSession", req.base, req.version),
        "uploadUrl": url,
        "expirationDateTime": expires,
        "nextExpectedRanges": ["0-"],
    }))
}

/// `X` of a path segment `Name('X')`, if it is one (case-insensitive name).
fn key_of<'a>(seg: &'a str, name: &str) -> Option<&'a str> {
    let open = seg.find("('")?;
    if !seg[..open].eq_ignore_ascii_case(name) {
        return None;
    }
    seg[open + 2..].strip_suffix("')")
}

/// The parts of an upload URL path (`api/v2.0/Users('u@t')/Messages('m')/AttachmentSessions('s')`):
/// (user id, message id, session id).
pub fn parse_path(segs: &[String]) -> Option<(String, String, String)> {
    if segs.len() != 5
        || !segs[0].eq_ignore_ascii_case("api")
        || !segs[1].eq_ignore_ascii_case("v2.0")
    {
        return None;
    }
    let user = key_of(&segs[2], "Users")?;
    let user = user.split('@').next().unwrap_or(user);
    let message = key_of(&segs[3], "Messages")?;
    let session = key_of(&segs[4], "AttachmentSessions")?;
    Some((user.to_string(), message.to_string(), session.to_string()))
}

/// The caller an upload URL request is attributed to (the app that created the session), for
/// throttling; `None` if the URL names no live session.
pub fn caller_of(t: &Tenant, segs: &[String]) -> Option<Caller> {
    let (_, _, sid) = parse_path(segs)?;
    t.mail.sessions.get(&sid).map(|s| Caller {
        client_id: s.app.clone(),
        roles: BTreeSet::new(),
    })
}

/// A request to an upload URL (after the pipeline's faults and throttling).
pub fn handle(t: &mut Tenant, req: &Req) -> Resp {
    let Some((user, message, sid)) = parse_path(&req.segs) else {
        return Resp::error(
            404,
            "ErrorInvalidUrl",
            "The URL is not an upload session URL.",
        );
    };
    let now = t.now();
    let expired = t.mail.sessions.get(&sid).is_some_and(|s| now > s.expires);
    if expired {
        t.mail.sessions.remove(&sid);
    }
    let Some(session) = t.mail.sessions.get(&sid) else {
        return Resp::error(
            404,
            "ErrorItemNotFound",
            "The upload session was not found or has expired.",
        );
    };
    if session.user != user || session.message != message {
        return Resp::error(
            404,
            "ErrorItemNotFound",
            "The upload session was not found or has expired.",
        );
    }
    if req.q("authtoken") != Some(session.token.as_str()) {
        return Resp::error(
            401,
            "InvalidAuthenticationToken",
            "The authtoken of the upload URL is not valid.",
        );
    }
    match req.method.as_str() {
        "DELETE" => {
            t.mail.sessions.remove(&sid);
            Resp::no_content()
        }
        "PUT" => put(t, req, &sid),
        _ => Resp::error(
            405,
            "ErrorInvalidRequest",
            "Upload sessions accept PUT and DELETE.",
        ),
    }
}

fn put(t: &mut Tenant, req: &Req, sid: &str) -> Resp {
    let (size, next, expires) = {
        let s = &t.mail.sessions[sid];
        (s.size, s.received.len(), s.expires)
    };
    let Some((start, end, total)) = req.header("content-range").and_then(util::content_range)
    else {
        return Resp::error(
            400,
            "ErrorInvalidContentRange",
            "Content-Range must be `bytes {start}-{end}/{total}`.",
        );
    };
    if end < start || end >= total || end - start + 1 != req.body.len() {
        return Resp::error(
            400,
            "ErrorInvalidContentRange",
            &format!(
                "Content-Range {start}-{end}/{total} does not describe the {} bytes sent.",
                req.body.len()
            ),
        );
    }
    if total != size {
        return Resp::error(
            400,
            "ErrorInvalidContentRange",
            &format!("Content-Range total {total} is not the session's size {size}."),
        );
    }
    if req.body.len() > MAX_PUT_BYTES {
        return Resp::error(
            413,
            "ErrorRequestEntityTooLarge",
            "Upload at most 4 MB in one request.",
        );
    }
    if start != next {
        return Resp::error(
            416,
            "ErrorInvalidRange",
            &format!("The next expected range starts at {next}; upload the bytes in order."),
        );
    }
    let base = req.base.clone();
    let session = t.mail.sessions.get_mut(sid).expect("checked above");
    session.received.extend_from_slice(&req.body);
    if session.received.len() < session.size {
        let ctx = format!(
            "{base}/api/v2.0/$metadata#Users('{}')/Messages('{}')/AttachmentSessions/$entity",
            util::pct_encode(&session.user),
            util::pct_encode(&session.message)
        );
        return Resp::ok(json!({
            "@odata.context": ctx,
            "ExpirationDateTime": util::iso(expires),
            "nextExpectedRanges": [session.received.len().to_string()],
        }));
    }
    let s = t.mail.sessions.remove(sid).expect("checked above");
    let seq = t.next_seq();
    let modified = t.now_iso();
    let Some(m) = t
        .mail
        .materialize(&s.user)
        .messages
        .get_mut(&s.message)
        .filter(|m| !m.deleted)
    else {
        return Resp::error(
            404,
            "ErrorItemNotFound",
            "The message of the upload session no longer exists.",
        );
    };
    let aid = format!(
        "{}{}=",
        &s.message.trim_end_matches('='),
        util::b64url(&util::sha1(format!("{}|{seq}", s.id).as_bytes()))
    );
    let location = format!(
        "{base}/api/v2.0/Users('{}')/Messages('{}')/Attachments('{aid}')",
        s.user, s.message
    );
    mail::attach(
        m,
        Attachment {
            id: aid,
            name: s.name,
            content_type: s.content_type,
            bytes: s.received,
            inline: s.inline,
            content_id: s.content_id,
            modified,
        },
        seq,
    );
    Resp {
        status: 201,
        headers: vec![("Location".into(), location)],
        body: Body::Empty,
        objects: 0,
    }
}
