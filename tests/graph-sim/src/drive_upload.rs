//! Large files through drive upload sessions
//! (https://learn.microsoft.com/graph/api/driveitem-createuploadsession):
//!
//! * `POST /drives/{d}/items/{parent}:/{name}:/createUploadSession` (a new file) or
//!   `POST /drives/{d}/items/{id}/createUploadSession` (a new version of a file), with an
//!   optional body `{"item": {"@microsoft.graph.conflictBehavior": "fail|replace|rename",
//!   "name": …}}` (the behaviour may also be the URL's query parameter; default `replace`) →
//!   200 `uploadSession {uploadUrl, expirationDateTime}`. With `fail` a name that is taken is
//!   409 `nameAlreadyExists` at once.
//! * The upload URL is SharePoint's, pre-authenticated:
//!   `{base}{site path}/_api/v2.0/drives/{d}/items/{parent}/uploadSession?guid='{id}'&overwrite=…&rename=…&dc=0&tempauth=…`
//!   (the simulator serves it on its own origin, under the site's path as SharePoint does).
//!   A request with an `Authorization` header is refused (401); the `tempauth` must match. It
//!   expires at `expirationDateTime` (404 `itemNotFound` after).
//! * `PUT` with `Content-Range: bytes {start}-{end}/{total}`, in order: 202 Accepted
//!   `{expirationDateTime, nextExpectedRanges: ["{next}-{total-1}"]}` until the last byte, which
//!   answers 201 Created with the new driveItem (200 OK when it replaced a file). A range that
//!   does not start at the next expected byte is 416 `invalidRange`; a fragment other than the
//!   last whose length is not a multiple of 320 KiB, a malformed or inconsistent
//!   `Content-Range`, or a total other than the session's is 400; over 60 MiB in one request
//!   is 413. The file appears only when the last byte arrives; a name taken meanwhile is 409
//!   under `fail` (the session ends).
//! * `GET` on the upload URL: 200 `{expirationDateTime, nextExpectedRanges}` (the range still
//!   missing, as when resuming an interrupted upload); `DELETE` cancels it (204). Once the
//!   session has expired, finished (last byte received) or been cancelled, every request to
//!   its URL is 404 `itemNotFound`, and the client starts a new session.
//! * Every ranged `PUT` to a live session is logged with its status in
//!   [`DriveStore::uploads`](crate::drive::DriveStore::uploads).
//! * Requests to the upload URL are SharePoint requests of the app that created the session
//!   (its resource-unit budget applies; 2 RU a write, 1 a status read).

use crate::auth::Caller;
use crate::drive;
use crate::http::{Req, Resp};
use crate::state::Tenant;
use crate::util;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// Fragment sizes other than the last must be multiples of this (320 KiB).
pub const FRAGMENT_UNIT: usize = 320 * 1024;
/// Largest `PUT` body.
pub const MAX_PUT_BYTES: usize = 60 * 1024 * 1024;
/// How long an upload URL is valid.
pub const SESSION_SECONDS: i64 = 60 * 60;

#[derive(Clone, Debug)]
pub struct DriveSession {
    pub id: String,
    pub drive: String,
    pub parent: String,
    pub name: String,
    pub token: String,
    /// The app that created it (its SharePoint budget applies to the uploads).
    pub app: String,
    pub conflict: String,
    /// The file's size, from the first `Content-Range` (or `item.fileSize`).
    pub size: Option<usize>,
    pub received: Vec<u8>,
    pub expires: i64,
}

/// One ranged `PUT` a live upload session received.
#[derive(Clone, Debug, PartialEq)]
pub struct UploadedRange {
    pub session: String,
    /// `Content-Range` start and end (inclusive), `None` if the header was malformed.
    pub range: Option<(usize, usize)>,
    /// The answer's status (202/200/201 when the bytes were taken).
    pub status: u16,
}

/// The site path of a drive's web URL (`https://host/sites/Finance/Shared%20Documents` →
/// `/sites/Finance`), where SharePoint serves the drive's `_api`.
fn site_path(web_url: &str) -> String {
    let after = web_url.split_once("://").map(|(_, r)| r).unwrap_or(web_url);
    let path = after.find('/').map(|i| &after[i..]).unwrap_or("");
    match path.rfind('/') {
        Some(i) if i > 0 => path[..i].to_string(),
        _ => String::new(),
    }
}

/// `POST …/createUploadSession` for `name` in folder `parent`.
pub fn create_session(t: &mut Tenant, req: &Req, drive_id: &str, parent: &str, name: &str) -> Resp {
    let body: Value = if req.body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(_) => {
                return Resp::error(400, "invalidRequest", "The request body is not valid JSON.")
            }
        }
    };
    let item = body.get("item").cloned().unwrap_or(json!({}));
    let in_body = item
        .get("@microsoft.graph.conflictBehavior")
        .and_then(Value::as_str)
        .map(str::to_string);
    let conflict = match in_body {
        Some(c) if matches!(c.as_str(), "fail" | "replace" | "rename") => c,
        Some(_) => {
            return Resp::error(
                400,
                "invalidRequest",
                "@microsoft.graph.conflictBehavior must be fail, replace or rename.",
            )
        }
        None => match drive::conflict_behavior(req, "replace") {
            Ok(c) => c.to_string(),
            Err(e) => return e,
        },
    };
    let name = item
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or(name)
        .to_string();
    let d = &t.drives.drives[drive_id];
    if !d.items.get(parent).is_some_and(|p| p.folder && !p.deleted) {
        return drive::not_found();
    }
    if conflict == "fail" && drive::child_named(d, parent, &name).is_some() {
        return Resp::error(
            409,
            "nameAlreadyExists",
            "The specified item name already exists.",
        );
    }
    let site = site_path(&d.web_url);
    let app = req
        .app
        .as_ref()
        .map(|c| c.client_id.clone())
        .unwrap_or_default();
    let seq = t.next_seq();
    let now = t.now();
    let h = util::sha256(format!("{drive_id}|{parent}|{name}|{seq}|{now}").as_bytes());
    let g: String = h[..16].iter().map(|b| format!("{b:02x}")).collect();
    let id = format!(
        "{}-{}-{}-{}-{}",
        &g[0..8],
        &g[8..12],
        &g[12..16],
        &g[16..20],
        &g[20..32]
    );
    let token = util::b64url(&util::sha256(format!("{id}|{}", t.tenant_id).as_bytes()));
    let size = item
        .get("fileSize")
        .and_then(Value::as_u64)
        .map(|n| n as usize);
    let session = DriveSession {
        id: id.clone(),
        drive: drive_id.to_string(),
        parent: parent.to_string(),
        name,
        token: token.clone(),
        app,
        conflict: conflict.clone(),
        size,
        received: Vec::new(),
        expires: now + SESSION_SECONDS,
    };
    let url = format!(
        "{}{site}/_api/v2.0/drives/{drive_id}/items/{parent}/uploadSession?guid='{id}'&overwrite={}&rename={}&dc=0&tempauth={token}",
        req.base,
        conflict == "replace",
        conflict == "rename",
    );
    let expires = util::iso(session.expires);
    t.drives.sessions.insert(id, session);
    Resp::ok(json!({
        "@odata.context": format!("{}/{}/$metadata#microsoft.graph.uploadSession", req.base, req.version),
        "uploadUrl": url,
        "expirationDateTime": expires,
    }))
}

/// Whether a path (segments, no version) is a drive upload URL's: `…/_api/v2.0/drives/{d}/items/{p}/uploadSession`.
pub fn is_upload_path(segs: &[String]) -> bool {
    parse_path(segs).is_some()
}

/// (drive, parent) of an upload URL path.
fn parse_path(segs: &[String]) -> Option<(String, String)> {
    let at = segs.iter().position(|s| s == "_api")?;
    match &segs[at..] {
        [_, v, drives, d, items, p, last]
            if v.eq_ignore_ascii_case("v2.0")
                && drives.eq_ignore_ascii_case("drives")
                && items.eq_ignore_ascii_case("items")
                && last.eq_ignore_ascii_case("uploadSession") =>
        {
            Some((d.clone(), p.clone()))
        }
        _ => None,
    }
}

/// The session id of an upload URL (`guid='…'`).
fn session_id(req: &Req) -> Option<String> {
    req.q("guid")
        .map(|g| g.trim_matches('\'').to_string())
        .filter(|g| !g.is_empty())
}

/// The caller an upload URL request is attributed to (the app that created the session), for
/// throttling; `None` if the URL names no live session.
pub fn caller_of(t: &Tenant, req: &Req) -> Option<Caller> {
    let sid = session_id(req)?;
    t.drives.sessions.get(&sid).map(|s| Caller {
        client_id: s.app.clone(),
        roles: BTreeSet::new(),
    })
}

fn status_body(s: &DriveSession) -> Value {
    let next = s.received.len();
    let range = match s.size {
        Some(size) => format!("{next}-{}", size.saturating_sub(1)),
        None => format!("{next}-"),
    };
    json!({
        "expirationDateTime": util::iso(s.expires),
        "nextExpectedRanges": [range],
    })
}

/// A request to a drive upload URL (after the pipeline's faults and throttling).
pub fn handle(t: &mut Tenant, req: &Req) -> Resp {
    let gone = || {
        Resp::error(
            404,
            "itemNotFound",
            "The upload session was not found or has expired.",
        )
    };
    let (Some((drive_id, parent)), Some(sid)) = (parse_path(&req.segs), session_id(req)) else {
        return gone();
    };
    let now = t.now();
    if t.drives.sessions.get(&sid).is_some_and(|s| now > s.expires) {
        t.drives.sessions.remove(&sid);
    }
    let Some(session) = t.drives.sessions.get(&sid) else {
        return gone();
    };
    if session.drive != drive_id || session.parent != parent {
        return gone();
    }
    if req.q("tempauth") != Some(session.token.as_str()) {
        return Resp::error(
            401,
            "unauthenticated",
            "The tempauth of the upload URL is not valid.",
        );
    }
    match req.method.as_str() {
        "GET" => Resp::ok(status_body(session)),
        "DELETE" => {
            t.drives.sessions.remove(&sid);
            Resp::no_content()
        }
        "PUT" => {
            let resp = put(t, req, &sid);
            let range = req
                .header("content-range")
                .and_then(util::content_range)
                .map(|(start, end, _)| (start, end));
            t.drives.uploads.push(UploadedRange {
                session: sid,
                range,
                status: resp.status,
            });
            resp
        }
        _ => Resp::method_not_allowed(),
    }
}

fn put(t: &mut Tenant, req: &Req, sid: &str) -> Resp {
    let Some((start, end, total)) = req.header("content-range").and_then(util::content_range)
    else {
        return Resp::error(
            400,
            "invalidRange",
            "Content-Range must be `bytes {start}-{end}/{total}`.",
        );
    };
    let len = req.body.len();
    if end < start || end >= total || end - start + 1 != len {
        return Resp::error(
            400,
            "invalidRange",
            &format!("Content-Range {start}-{end}/{total} does not describe the {len} bytes sent."),
        );
    }
    if len > MAX_PUT_BYTES {
        return Resp::error(
            413,
            "requestTooLarge",
            "Upload at most 60 MiB in one request.",
        );
    }
    let s = t.drives.sessions.get_mut(sid).expect("checked by handle");
    if s.size.is_some_and(|size| size != total) {
        return Resp::error(
            400,
            "invalidRange",
            &format!(
                "Content-Range total {total} is not the file's size {}.",
                s.size.unwrap_or(0)
            ),
        );
    }
    let next = s.received.len();
    if start != next {
        return Resp::error(
            416,
            "invalidRange",
            &format!(
                "The fragment starts at {start}, but the next expected range is {next}-{}.",
                total - 1
            ),
        );
    }
    let last = end + 1 == total;
    if !last && !len.is_multiple_of(FRAGMENT_UNIT) {
        return Resp::error(
            400,
            "invalidRange",
            "Fragments other than the last must be a multiple of 320 KiB (327,680 bytes).",
        );
    }
    s.size = Some(total);
    s.received.extend_from_slice(&req.body);
    if !last {
        return Resp::json(202, status_body(s));
    }
    let s = t.drives.sessions.remove(sid).expect("checked by handle");
    let mime = mime_of(&s.name);
    drive::write_file(
        t,
        req,
        &s.drive,
        &s.parent,
        &s.name,
        s.received,
        mime,
        &s.conflict,
    )
}

/// A file's media type by its extension (an upload session carries none).
fn mime_of(name: &str) -> &'static str {
    let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "txt" => "text/plain",
        "csv" => "text/csv",
        "md" => "text/markdown",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}
