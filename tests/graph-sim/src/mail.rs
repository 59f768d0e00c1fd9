//! Outlook mail: folders (well-known names, child and hidden folders), messages (JSON and MIME),
//! attachments, per-folder message delta and `mailFolders/delta`.

use crate::http::{Req, Resp};
use crate::model::{Kind, Obj, ObjExt};
use crate::state::Tenant;
use crate::util::{self, Rng};
use serde_json::{json, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;

#[derive(Default, Clone, Debug)]
pub struct MailStore {
    pub boxes: BTreeMap<String, Mailbox>,
    /// Attachment upload sessions by id (see [`crate::mail_upload`]).
    pub sessions: BTreeMap<String, crate::mail_upload::UploadSession>,
}

#[derive(Clone, Debug, Default)]
pub struct Mailbox {
    pub folders: BTreeMap<String, Folder>,
    pub messages: BTreeMap<String, Message>,
}

#[derive(Clone, Debug)]
pub struct Folder {
    pub id: String,
    pub name: String,
    /// `None` = top level (child of msgfolderroot).
    pub parent: Option<String>,
    pub well_known: Option<&'static str>,
    pub hidden: bool,
    pub seq: u64,
    pub created_seq: u64,
    pub deleted: bool,
}

#[derive(Clone, Debug)]
pub struct Attachment {
    pub id: String,
    pub name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
    pub inline: bool,
    /// `Content-ID` without angle brackets (inline images referenced as `cid:…`).
    pub content_id: Option<String>,
    pub modified: String,
}

#[derive(Clone, Debug)]
pub struct Message {
    pub id: String,
    pub folder: String,
    pub data: Obj,
    pub attachments: Vec<Attachment>,
    /// The MIME text when the message was created from MIME (returned verbatim by `$value`).
    pub mime: Option<String>,
    /// Single-value extended properties set on create (`"Integer 0x0E07"` → `"1"`).
    pub ext: BTreeMap<String, String>,
    pub seq: u64,
    pub created_seq: u64,
    pub deleted: bool,
}

const WELL_KNOWN: &[(&str, &str, bool)] = &[
    ("inbox", "Inbox", false),
    ("drafts", "Drafts", false),
    ("sentitems", "Sent Items", false),
    ("deleteditems", "Deleted Items", false),
    ("junkemail", "Junk Email", false),
    ("archive", "Archive", false),
    ("outbox", "Outbox", false),
    ("conversationhistory", "Conversation History", false),
    ("syncissues", "Sync Issues", true),
];

fn outlook_id(prefix: &str, parts: &[&str]) -> String {
    let h1 = util::fnv1a(parts.join("|").as_bytes());
    let h2 = util::fnv1a(format!("{h1}|x").as_bytes());
    let mut b = h1.to_le_bytes().to_vec();
    b.extend(h2.to_le_bytes());
    format!("{prefix}{}AAA=", util::b64url(&b))
}

fn default_mailbox(user: &str) -> Mailbox {
    let mut mb = Mailbox::default();
    for (wk, name, hidden) in WELL_KNOWN {
        let id = outlook_id("AAMkAD", &[user, wk]);
        mb.folders.insert(
            id.clone(),
            Folder {
                id,
                name: name.to_string(),
                parent: None,
                well_known: Some(wk),
                hidden: *hidden,
                seq: 1,
                created_seq: 1,
                deleted: false,
            },
        );
    }
    mb
}

impl MailStore {
    pub fn view(&self, user: &str) -> Cow<'_, Mailbox> {
        match self.boxes.get(user) {
            Some(b) => Cow::Borrowed(b),
            None => Cow::Owned(default_mailbox(user)),
        }
    }
    pub fn materialize(&mut self, user: &str) -> &mut Mailbox {
        self.boxes
            .entry(user.to_string())
            .or_insert_with(|| default_mailbox(user))
    }
    pub fn dump(&self) -> Value {
        let mut out = serde_json::Map::new();
        for (u, mb) in &self.boxes {
            let folders: BTreeMap<&String, Value> = mb
                .folders
                .values()
                .filter(|f| !f.deleted)
                .map(|f| (&f.id, json!({"displayName": f.name, "parent": f.parent, "wellKnownName": f.well_known, "isHidden": f.hidden})))
                .collect();
            let msgs: BTreeMap<&String, Value> = mb
                .messages
                .values()
                .filter(|m| !m.deleted)
                .map(|m| {
                    let atts: Vec<Value> = m.attachments.iter().map(|a| json!({"id": a.id, "name": a.name, "sha256": hex_of(&util::sha256(&a.bytes))})).collect();
                    (&m.id, json!({"folder": m.folder, "data": m.data, "attachments": atts}))
                })
                .collect();
            out.insert(u.clone(), json!({"folders": folders, "messages": msgs}));
        }
        Value::Object(out)
    }
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const SUBJECTS: &[&str] = &[
    "Quarterly business review",
    "Updated project timeline",
    "Lunch on Friday?",
    "Security awareness training",
    "Invoice #{n} attached",
    "Re: Customer escalation",
    "Team offsite agenda",
    "Holiday hours update",
    "Budget approval needed",
    "Welcome to the team!",
    "Release notes {n}",
    "Weekly status report",
];

/// Generates mailboxes for the first `n` member users.
pub fn generate(t: &mut Tenant, rng: &mut Rng, users: &[crate::model::Id], n: usize) {
    let base = t.base_time;
    for uid in users.iter().take(n) {
        let (upn, dn) = match t.get(Kind::User, uid) {
            Some(u) => (
                u.str("userPrincipalName").unwrap_or("").to_string(),
                u.str("displayName").unwrap_or("").to_string(),
            ),
            None => continue,
        };
        let mut mb = default_mailbox(uid);
        let inbox = mb
            .folders
            .values()
            .find(|f| f.well_known == Some("inbox"))
            .map(|f| f.id.clone())
            .unwrap_or_default();
        let sent = mb
            .folders
            .values()
            .find(|f| f.well_known == Some("sentitems"))
            .map(|f| f.id.clone())
            .unwrap_or_default();
        let mut folders = vec![inbox.clone()];
        for name in ["Projects", "Receipts"].iter().take(1 + rng.below(2)) {
            let id = outlook_id("AAMkAD", &[uid, name]);
            mb.folders.insert(
                id.clone(),
                Folder {
                    id: id.clone(),
                    name: name.to_string(),
                    parent: Some(inbox.clone()),
                    well_known: None,
                    hidden: false,
                    seq: 1,
                    created_seq: 1,
                    deleted: false,
                },
            );
            folders.push(id);
        }
        let count = 4 + rng.below(16);
        for i in 0..count {
            let folder = if i % 5 == 4 {
                sent.clone()
            } else {
                folders[rng.below(folders.len())].clone()
            };
            let other = users[rng.below(users.len())].clone();
            let (oupn, odn) = t
                .get(Kind::User, &other)
                .map(|u| {
                    (
                        u.str("userPrincipalName").unwrap_or("").to_string(),
                        u.str("displayName").unwrap_or("").to_string(),
                    )
                })
                .unwrap_or_default();
            let (from, to) = if folder == sent {
                ((dn.clone(), upn.clone()), (odn, oupn))
            } else {
                ((odn, oupn), (dn.clone(), upn.clone()))
            };
            let when = base - (rng.below(200 * 86400)) as i64;
            let subject = rng
                .pick(SUBJECTS)
                .replace("{n}", &(1000 + rng.below(9000)).to_string());
            let text = format!(
                "Hi {},\r\n\r\nPlease see the notes about \"{subject}\".\r\n\r\nThanks,\r\n{}",
                to.0.split(' ').next().unwrap_or(""),
                from.0
            );
            let id = outlook_id("AAMkAGI2", &[uid, &i.to_string()]);
            let data = message_data(
                &id,
                &subject,
                &text,
                "text",
                &from,
                &[to],
                when,
                folder != sent,
                false,
            );
            let mut atts = vec![];
            if rng.chance(0.2) {
                let body = format!(
                    "Attachment for {subject}\n{}",
                    "data,".repeat(20 + rng.below(50))
                );
                atts.push(Attachment {
                    id: outlook_id("AAMkAGI2att", &[uid, &i.to_string()]),
                    name: "notes.txt".into(),
                    content_type: "text/plain".into(),
                    bytes: body.into_bytes(),
                    inline: false,
                    content_id: None,
                    modified: util::iso(when),
                });
            }
            let seq = 1;
            mb.messages.insert(
                id.clone(),
                Message {
                    id,
                    folder,
                    data,
                    attachments: atts,
                    mime: None,
                    ext: BTreeMap::new(),
                    seq,
                    created_seq: seq,
                    deleted: false,
                },
            );
        }
        t.mail.boxes.insert(uid.to_string(), mb);
    }
}

#[allow(clippy::too_many_arguments)]
fn message_data(
    id: &str,
    subject: &str,
    body: &str,
    content_type: &str,
    from: &(String, String),
    to: &[(String, String)],
    when: i64,
    read: bool,
    draft: bool,
) -> Obj {
    let addr = |(n, a): &(String, String)| json!({"emailAddress": {"name": n, "address": a}});
    let preview: String = strip_html(body).chars().take(255).collect();
    json!({
        "createdDateTime": util::iso(when), "categories": [], "receivedDateTime": util::iso(when), "sentDateTime": util::iso(when - 2),
        "internetMessageId": format!("<{}@contoso.onmicrosoft.com>", &util::b64url(&util::sha1(id.as_bytes()))[..16]),
        "subject": subject, "bodyPreview": preview.trim(), "importance": "normal",
        "conversationId": format!("AAQkAD{}=", &util::b64url(&util::sha1(subject.as_bytes()))[..12]),
        "isDeliveryReceiptRequested": false, "isReadReceiptRequested": false, "isRead": read, "isDraft": draft,
        "inferenceClassification": "focused",
        "body": {"contentType": content_type, "content": body},
        "sender": addr(from), "from": addr(from),
        "toRecipients": to.iter().map(addr).collect::<Vec<_>>(), "ccRecipients": [], "bccRecipients": [], "replyTo": [],
        "flag": {"flagStatus": "notFlagged"}
    })
    .as_object()
    .cloned()
    .unwrap_or_default()
}

fn strip_html(s: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

fn render_folder(mb: &Mailbox, f: &Folder) -> Value {
    let children = mb
        .folders
        .values()
        .filter(|c| !c.deleted && c.parent.as_deref() == Some(&f.id))
        .count();
    let msgs: Vec<&Message> = mb
        .messages
        .values()
        .filter(|m| !m.deleted && m.folder == f.id)
        .collect();
    let unread = msgs
        .iter()
        .filter(|m| m.data.get("isRead") == Some(&json!(false)))
        .count();
    json!({
        "id": f.id, "displayName": f.name, "parentFolderId": f.parent.clone().unwrap_or_else(|| "AAMkADmsgfolderroot".into()),
        "childFolderCount": children, "unreadItemCount": unread, "totalItemCount": msgs.len(), "sizeInBytes": msgs.len() * 2048,
        "isHidden": f.hidden
    })
}

/// `PR_MESSAGE_FLAGS` and `PR_MESSAGE_SIZE` as Graph names them.
pub const PR_MESSAGE_FLAGS: &str = "Integer 0x0E07";
pub const PR_MESSAGE_SIZE: &str = "Integer 0x0E08";

/// `Integer 0x0e07` → `Integer 0x0E07` (types and tags compare case-insensitively).
fn canonical_prop_id(id: &str) -> String {
    match id.trim().split_once(' ') {
        Some((ty, tag)) => {
            let tag = tag.trim();
            let tag = match tag.strip_prefix("0x").or_else(|| tag.strip_prefix("0X")) {
                Some(hex) => format!("0x{}", hex.to_ascii_uppercase()),
                None => tag.to_string(),
            };
            let mut t = ty.to_ascii_lowercase();
            if let Some(first) = t.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            format!("{t} {tag}")
        }
        None => id.trim().to_string(),
    }
}

/// The extended property ids asked for by
/// `$expand=singleValueExtendedProperties($filter=id eq '…' or id eq '…')`; `None` if not
/// expanded, empty if expanded without a filter (then only stored properties are listed).
fn expanded_props(req: &Req) -> Option<Vec<String>> {
    let exp = req.q("$expand")?;
    let lower = exp.to_ascii_lowercase();
    let at = lower.find("singlevalueextendedproperties")?;
    let rest = &exp[at..];
    let mut ids = vec![];
    let mut tail = rest;
    while let Some(i) = tail.find('\'') {
        let after = &tail[i + 1..];
        let Some(j) = after.find('\'') else { break };
        ids.push(canonical_prop_id(&after[..j]));
        tail = &after[j + 1..];
    }
    Some(ids)
}

/// The value of an extended property of a message: stored ones, and the computed
/// `PR_MESSAGE_SIZE` (the MIME's length) and `PR_MESSAGE_FLAGS` (read and draft bits).
fn prop_value(m: &Message, id: &str) -> Option<String> {
    if let Some(v) = m.ext.get(id) {
        return Some(v.clone());
    }
    match id {
        PR_MESSAGE_SIZE => Some(to_mime(m).len().to_string()),
        PR_MESSAGE_FLAGS => {
            let read = m.data.get("isRead") == Some(&json!(true));
            let draft = m.data.get("isDraft") == Some(&json!(true));
            Some(((read as i64) | if draft { 8 } else { 0 }).to_string())
        }
        _ => None,
    }
}

fn render_message(req: &Req, m: &Message, select: Option<&[String]>) -> Value {
    let mut v = render_message_plain(req, m, select);
    if let Some(ids) = expanded_props(req) {
        let props: Vec<Value> = if ids.is_empty() {
            m.ext
                .iter()
                .map(|(k, v)| json!({"id": k, "value": v}))
                .collect()
        } else {
            ids.iter()
                .filter_map(|id| prop_value(m, id).map(|v| json!({"id": id, "value": v})))
                .collect()
        };
        v["singleValueExtendedProperties"] = json!(props);
    }
    v
}

/// Whether Exchange can produce this message's MIME. Imported MIME whose multipart structure
/// is broken (a multipart type without a boundary, or a boundary that never closes) cannot be
/// converted back: `$value` answers 400 `ErrorMimeContentConversionFailed`, as EWS does for
/// items whose MIME conversion fails.
pub fn mime_convertible(m: &Message) -> bool {
    let Some(text) = &m.mime else { return true };
    let (headers, body) = split_headers(text);
    let ct = hget(&headers, "content-type").unwrap_or("text/plain");
    if !ct.to_ascii_lowercase().starts_with("multipart/") {
        return true;
    }
    match param(ct, "boundary") {
        Some(b) if !b.is_empty() => body.contains(&format!("--{b}--")),
        _ => false,
    }
}

fn render_message_plain(req: &Req, m: &Message, select: Option<&[String]>) -> Value {
    let mut d = m.data.clone();
    let change_key = util::b64url(&util::sha1(format!("{}:{}", m.id, m.seq).as_bytes()));
    let mut out = serde_json::Map::new();
    out.insert("@odata.etag".into(), json!(format!("W/\"{change_key}\"")));
    out.insert("id".into(), json!(m.id));
    let modified = d
        .get("lastModifiedDateTime")
        .cloned()
        .unwrap_or_else(|| d.get("createdDateTime").cloned().unwrap_or(Value::Null));
    let text_pref = req
        .prefer_value("outlook.body-content-type")
        .is_some_and(|v| v == "text");
    if text_pref {
        if let Some(body) = d.get_mut("body").and_then(Value::as_object_mut) {
            if body.get("contentType") == Some(&json!("html")) {
                let text = strip_html(body.get("content").and_then(Value::as_str).unwrap_or(""));
                body.insert("contentType".into(), json!("text"));
                body.insert("content".into(), json!(text.trim()));
            }
        }
    }
    let order = [
        "createdDateTime",
        "lastModifiedDateTime",
        "changeKey",
        "categories",
        "receivedDateTime",
        "sentDateTime",
        "hasAttachments",
        "internetMessageId",
        "subject",
        "bodyPreview",
        "importance",
        "parentFolderId",
        "conversationId",
        "isDeliveryReceiptRequested",
        "isReadReceiptRequested",
        "isRead",
        "isDraft",
        "webLink",
        "inferenceClassification",
        "body",
        "sender",
        "from",
        "toRecipients",
        "ccRecipients",
        "bccRecipients",
        "replyTo",
        "flag",
    ];
    for k in order {
        let v = match k {
            "lastModifiedDateTime" => modified.clone(),
            "changeKey" => json!(change_key),
            "hasAttachments" => json!(m.attachments.iter().any(|a| !a.inline)),
            "parentFolderId" => json!(m.folder),
            "webLink" => json!(format!(
                "https://outlook.office365.com/owa/?ItemID={}&exvsurl=1&viewmodel=ReadMessageItem",
                util::pct_encode(&m.id)
            )),
            _ => d.get(k).cloned().unwrap_or(Value::Null),
        };
        if select.is_none_or(|s| s.iter().any(|x| x.eq_ignore_ascii_case(k))) {
            out.insert(k.to_string(), v);
        }
    }
    Value::Object(out)
}

fn to_mime(m: &Message) -> String {
    if let Some(mime) = &m.mime {
        return mime.clone();
    }
    let s = |k: &str| {
        m.data
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let addr = |v: &Value| {
        let n = v
            .pointer("/emailAddress/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let a = v
            .pointer("/emailAddress/address")
            .and_then(Value::as_str)
            .unwrap_or("");
        format!("{n} <{a}>")
    };
    let list = |k: &str| {
        m.data
            .get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().map(addr).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    let date = util::parse_iso(&s("sentDateTime"))
        .map(util::rfc2822)
        .unwrap_or_default();
    let body_type = m
        .data
        .pointer("/body/contentType")
        .and_then(Value::as_str)
        .unwrap_or("text");
    let body = m
        .data
        .pointer("/body/content")
        .and_then(Value::as_str)
        .unwrap_or("");
    let ct = if body_type == "html" {
        "text/html"
    } else {
        "text/plain"
    };
    let mut out = String::new();
    out.push_str(&format!(
        "From: {}\r\n",
        m.data.get("from").map(addr).unwrap_or_default()
    ));
    out.push_str(&format!("To: {}\r\n", list("toRecipients")));
    let cc = list("ccRecipients");
    if !cc.is_empty() {
        out.push_str(&format!("CC: {cc}\r\n"));
    }
    out.push_str(&format!(
        "Subject: {}\r\nDate: {date}\r\nMessage-ID: {}\r\n",
        s("subject"),
        s("internetMessageId")
    ));
    out.push_str("Content-Language: en-US\r\nMIME-Version: 1.0\r\n");
    if m.attachments.is_empty() {
        out.push_str(&format!("Content-Type: {ct}; charset=\"utf-8\"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n"));
    } else {
        let boundary = "_004_sim_boundary_";
        out.push_str(&format!(
            "Content-Type: multipart/mixed;\r\n\tboundary=\"{boundary}\"\r\n\r\n"
        ));
        out.push_str(&format!("--{boundary}\r\nContent-Type: {ct}; charset=\"utf-8\"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n\r\n"));
        for a in &m.attachments {
            let b64 = util::b64(&a.bytes);
            let wrapped: Vec<String> = b64
                .as_bytes()
                .chunks(76)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            out.push_str(&format!(
                "--{boundary}\r\nContent-Type: {}; name=\"{}\"\r\nContent-Description: {}\r\nContent-Disposition: attachment; filename=\"{}\"; size={}\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n\r\n",
                a.content_type, a.name, a.name, a.name, a.bytes.len(), wrapped.join("\r\n")
            ));
        }
        out.push_str(&format!("--{boundary}--\r\n"));
    }
    out
}

/// A parsed MIME message: headers, body, attachments.
pub struct ParsedMime {
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub html: bool,
    pub attachments: Vec<MimeAttachment>,
}

/// An attachment found in MIME: a leaf part with a file name (or a non-text part with a
/// `Content-ID`, named after it), at any multipart depth.
pub struct MimeAttachment {
    pub name: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
    /// `Content-Disposition: inline`.
    pub inline: bool,
    pub content_id: Option<String>,
}

fn split_headers(s: &str) -> (Vec<(String, String)>, String) {
    let norm = s.replace("\r\n", "\n");
    let (head, body) = norm.split_once("\n\n").unwrap_or((&norm, ""));
    let mut headers: Vec<(String, String)> = vec![];
    for line in head.lines() {
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    (headers, body.to_string())
}

fn hget<'a>(h: &'a [(String, String)], k: &str) -> Option<&'a str> {
    h.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(k))
        .map(|(_, v)| v.as_str())
}

fn param(v: &str, name: &str) -> Option<String> {
    v.split(';').map(str::trim).find_map(|p| {
        let (k, val) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| val.trim().trim_matches('"').to_string())
    })
}

pub fn parse_mime(text: &str) -> ParsedMime {
    let (headers, body) = split_headers(text);
    let mut out = ParsedMime {
        headers: headers.clone(),
        body: String::new(),
        html: false,
        attachments: vec![],
    };
    parse_entity(&headers, &body, &mut out, 0);
    out
}

fn decode_body(h: &[(String, String)], b: &str) -> Vec<u8> {
    match hget(h, "content-transfer-encoding")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("base64") => util::b64_decode(b).unwrap_or_default(),
        Some("quoted-printable") => qp_decode(b),
        _ => b.as_bytes().to_vec(),
    }
}

/// Quoted-printable (RFC 2045 §6.7) over `\n`-normalised text: soft breaks, `=XX`.
fn qp_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let lines: Vec<&str> = s.split('\n').collect();
    for (i, line) in lines.iter().enumerate() {
        let line = line.trim_end_matches([' ', '\t']);
        let (line, soft) = match line.strip_suffix('=') {
            Some(l) => (l, true),
            None => (line, false),
        };
        let b = line.as_bytes();
        let mut j = 0;
        while j < b.len() {
            let hex = (b[j] == b'=' && j + 3 <= b.len())
                .then(|| std::str::from_utf8(&b[j + 1..j + 3]).ok())
                .flatten()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(v) => {
                    out.push(v);
                    j += 3;
                }
                None => {
                    out.push(b[j]);
                    j += 1;
                }
            }
        }
        if !soft && i + 1 < lines.len() {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// One entity (the message, or a part): multiparts recurse (at most 16 deep); a leaf with a
/// file name is an attachment, the first other text leaf is the body.
fn parse_entity(headers: &[(String, String)], body: &str, out: &mut ParsedMime, depth: usize) {
    let ct = hget(headers, "content-type")
        .unwrap_or("text/plain")
        .to_string();
    let lower = ct.to_ascii_lowercase();
    if lower.starts_with("multipart/") && depth < 16 {
        let boundary = param(&ct, "boundary").unwrap_or_default();
        let delim = format!("--{boundary}");
        for part in body.split(&delim).skip(1) {
            if part.starts_with("--") {
                break;
            }
            let (ph, pb) = split_headers(part.trim_start_matches('\n'));
            let pb = pb.strip_suffix('\n').unwrap_or(&pb).to_string();
            parse_entity(&ph, &pb, out, depth + 1);
        }
        return;
    }
    if depth == 0 {
        out.html = lower.starts_with("text/html");
        out.body = String::from_utf8_lossy(&decode_body(headers, body.trim_end())).into_owned();
        return;
    }
    let disp = hget(headers, "content-disposition").unwrap_or("");
    let content_id = hget(headers, "content-id")
        .map(|c| {
            c.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
        .filter(|c| !c.is_empty());
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("application/octet-stream")
        .trim()
        .to_string();
    let fname = param(disp, "filename")
        .or_else(|| param(&ct, "name"))
        .or_else(|| content_id.clone().filter(|_| !lower.starts_with("text/")));
    if let Some(name) = fname {
        out.attachments.push(MimeAttachment {
            name,
            content_type: mime,
            bytes: decode_body(headers, body.trim_end()),
            inline: disp.trim().to_ascii_lowercase().starts_with("inline"),
            content_id,
        });
    } else if out.body.is_empty() && lower.starts_with("text/") {
        out.html = lower.starts_with("text/html");
        out.body = String::from_utf8_lossy(&decode_body(headers, body.trim_end())).into_owned();
    }
}

fn parse_addr(s: &str) -> (String, String) {
    let s = s.trim();
    if let (Some(a), Some(b)) = (s.find('<'), s.find('>')) {
        (
            s[..a].trim().trim_matches('"').to_string(),
            s[a + 1..b].to_string(),
        )
    } else {
        (String::new(), s.to_string())
    }
}

fn resolve_folder(mb: &Mailbox, key: &str) -> Option<String> {
    let k = key.trim_matches(|c| c == '\'' || c == '(' || c == ')');
    if mb.folders.get(k).is_some_and(|f| !f.deleted) {
        return Some(k.to_string());
    }
    mb.folders
        .values()
        .find(|f| !f.deleted && f.well_known.is_some_and(|w| w.eq_ignore_ascii_case(k)))
        .map(|f| f.id.clone())
}

fn mail_error(status: u16, code: &str, msg: &str) -> Resp {
    Resp::error(status, code, msg)
}

/// `/users/{id}/{rest...}` for mail paths.
pub fn handle(t: &mut Tenant, req: &Req, uid: &str, rest: &[String]) -> Resp {
    let guest = t.get(Kind::User, uid).and_then(|u| u.str("userType")) == Some("Guest");
    if guest {
        return mail_error(
            404,
            "MailboxNotEnabledForRESTAPI",
            "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
        );
    }
    let write = req.is_write();
    let perms = if write {
        crate::auth::perms::MAIL_W
    } else {
        crate::auth::perms::MAIL_R
    };
    if crate::auth::require(&req.app, perms).is_err() {
        return mail_error(
            403,
            "ErrorAccessDenied",
            "Access is denied. Check credentials and try again.",
        );
    }
    let r: Vec<&str> = rest.iter().map(String::as_str).collect();
    let lower: Vec<String> = r.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    match (req.method.as_str(), l.as_slice()) {
        ("GET", ["mailfolders"]) => {
            let mb = t.mail.view(uid);
            let hidden = req.q("includeHiddenFolders") == Some("true");
            let items: Vec<Value> = mb
                .folders
                .values()
                .filter(|f| !f.deleted && f.parent.is_none() && (hidden || !f.hidden))
                .map(|f| render_folder(&mb, f))
                .collect();
            let n = items.len();
            Resp::ok(json!({"@odata.context": format!("{}/{}/$metadata#users('{uid}')/mailFolders", req.base, req.version), "value": items})).with_objects(n)
        }
        ("POST", ["mailfolders"]) | ("POST", ["mailfolders", _, "childfolders"]) => {
            let body = match req.json_body() {
                Ok(b) => b,
                Err(e) => return e,
            };
            let Some(name) = body
                .get("displayName")
                .and_then(Value::as_str)
                .map(str::to_string)
            else {
                return mail_error(
                    400,
                    "ErrorInvalidRequest",
                    "The displayName property is required.",
                );
            };
            let parent = if l.len() == 3 {
                match resolve_folder(&t.mail.view(uid), r[1]) {
                    Some(p) => Some(p),
                    None => {
                        return mail_error(
                            404,
                            "ErrorItemNotFound",
                            "The specified object was not found in the store.",
                        )
                    }
                }
            } else {
                None
            };
            let seq = t.next_seq();
            let id = outlook_id("AAMkAD", &[uid, &name, &seq.to_string()]);
            let mb = t.mail.materialize(uid);
            if mb
                .folders
                .values()
                .any(|f| !f.deleted && f.parent == parent && f.name.eq_ignore_ascii_case(&name))
            {
                return mail_error(
                    409,
                    "ErrorFolderExists",
                    "A folder with the specified name already exists.",
                );
            }
            let hidden = body
                .get("isHidden")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            mb.folders.insert(
                id.clone(),
                Folder {
                    id: id.clone(),
                    name,
                    parent,
                    well_known: None,
                    hidden,
                    seq,
                    created_seq: seq,
                    deleted: false,
                },
            );
            let f = mb.folders[&id].clone();
            Resp::created(render_folder(mb, &f))
        }
        ("GET", ["mailfolders", "delta"]) => folders_delta(t, req, uid),
        ("GET", ["mailfolders", _]) => {
            let mb = t.mail.view(uid);
            match resolve_folder(&mb, r[1]) {
                Some(f) => Resp::ok(render_folder(&mb, &mb.folders[&f])),
                None => mail_error(
                    404,
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.",
                ),
            }
        }
        ("DELETE", ["mailfolders", _]) => {
            let Some(f) = resolve_folder(&t.mail.view(uid), r[1]) else {
                return mail_error(
                    404,
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.",
                );
            };
            let seq = t.next_seq();
            let mb = t.mail.materialize(uid);
            if mb.folders[&f].well_known.is_some() {
                return mail_error(
                    403,
                    "ErrorDeleteDistinguishedFolder",
                    "Distinguished folders cannot be deleted.",
                );
            }
            let fo = mb.folders.get_mut(&f).unwrap();
            fo.deleted = true;
            fo.seq = seq;
            for m in mb
                .messages
                .values_mut()
                .filter(|m| m.folder == f && !m.deleted)
            {
                m.deleted = true;
                m.seq = seq;
            }
            Resp::no_content()
        }
        ("GET", ["mailfolders", _, "childfolders"]) => {
            let mb = t.mail.view(uid);
            let Some(f) = resolve_folder(&mb, r[1]) else {
                return mail_error(
                    404,
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.",
                );
            };
            let hidden = req.q("includeHiddenFolders") == Some("true");
            let items: Vec<Value> = mb
                .folders
                .values()
                .filter(|c| !c.deleted && c.parent.as_deref() == Some(&f) && (hidden || !c.hidden))
                .map(|c| render_folder(&mb, c))
                .collect();
            let n = items.len();
            Resp::ok(json!({"@odata.context": format!("{}/{}/$metadata#users('{uid}')/mailFolders('{f}')/childFolders", req.base, req.version), "value": items})).with_objects(n)
        }
        ("GET", ["mailfolders", _, "messages", "delta"]) => {
            let mb = t.mail.view(uid);
            let Some(f) = resolve_folder(&mb, r[1]) else {
                return mail_error(
                    404,
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.",
                );
            };
            drop(mb);
            messages_delta(t, req, uid, &f)
        }
        ("GET", ["mailfolders", _, "messages"]) => {
            let mb = t.mail.view(uid);
            let Some(f) = resolve_folder(&mb, r[1]) else {
                return mail_error(
                    404,
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.",
                );
            };
            list_messages(req, &mb, Some(&f))
        }
        ("POST", ["mailfolders", _, "messages"]) => {
            let Some(f) = resolve_folder(&t.mail.view(uid), r[1]) else {
                return mail_error(
                    404,
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.",
                );
            };
            create_message(t, req, uid, &f)
        }
        ("GET", ["messages"]) => {
            let mb = t.mail.view(uid);
            list_messages(req, &mb, None)
        }
        ("POST", ["messages"]) => {
            let f = resolve_folder(&t.mail.view(uid), "drafts").unwrap_or_default();
            create_message(t, req, uid, &f)
        }
        (_, ["mailfolders", _, "messages", _, ..]) => message_ops(t, req, uid, &r[3..]),
        (_, ["messages", _, ..]) => message_ops(t, req, uid, &r[1..]),
        _ => Resp::error(400, "BadRequest", "Resource not found for the segment."),
    }
}

fn list_messages(req: &Req, mb: &Mailbox, folder: Option<&str>) -> Resp {
    let top = match crate::query::top_of(req, 10, 1000) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let skip: usize = req.q("$skip").and_then(|s| s.parse().ok()).unwrap_or(0);
    let select: Option<Vec<String>> = req
        .q("$select")
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect());
    // `$filter`: Outlook supports many; the simulator knows `internetMessageId eq '…'` (how
    // clients look a message up by its RFC 822 id) and refuses the rest as Outlook refuses
    // invalid filters.
    let by_imid = match req.q("$filter") {
        None => None,
        Some(f) => match parse_imid_filter(f) {
            Some(v) => Some(v),
            None => {
                return mail_error(
                    400,
                    "ErrorInvalidUrlQueryFilter",
                    "The query filter contains one or more invalid nodes.",
                )
            }
        },
    };
    let mut msgs: Vec<&Message> = mb
        .messages
        .values()
        .filter(|m| !m.deleted && folder.is_none_or(|f| m.folder == f))
        .filter(|m| {
            by_imid.as_deref().is_none_or(|want| {
                m.data.get("internetMessageId").and_then(Value::as_str) == Some(want)
            })
        })
        .collect();
    msgs.sort_by(|a, b| {
        b.data
            .get("receivedDateTime")
            .and_then(Value::as_str)
            .cmp(&a.data.get("receivedDateTime").and_then(Value::as_str))
            .then(a.id.cmp(&b.id))
    });
    let total = msgs.len();
    let page: Vec<Value> = msgs
        .iter()
        .skip(skip)
        .take(top)
        .map(|m| render_message(req, m, select.as_deref()))
        .collect();
    let n = page.len();
    let mut out = json!({"@odata.context": format!("{}/{}/$metadata#users/messages", req.base, req.version), "value": page});
    if skip + top < total {
        let base = req.self_url_without(&["$skip"]);
        let sep = if base.contains('?') { '&' } else { '?' };
        out["@odata.nextLink"] = json!(format!("{base}{sep}$skip={}", skip + top));
    }
    let mut r = Resp::ok(out).with_objects(n);
    if req.prefer_value("outlook.body-content-type").is_some() {
        r = r.with_header(
            "Preference-Applied",
            format!(
                "outlook.body-content-type=\"{}\"",
                req.prefer_value("outlook.body-content-type")
                    .unwrap_or_default()
            ),
        );
    }
    r
}

/// `internetMessageId eq '<…>'` → the id (`''` unescaped).
fn parse_imid_filter(f: &str) -> Option<String> {
    let f = f.trim();
    let (prop, rest) = f.split_once(char::is_whitespace)?;
    if !prop.eq_ignore_ascii_case("internetMessageId") {
        return None;
    }
    let rest = rest.trim_start();
    let (op, val) = rest.split_once(char::is_whitespace)?;
    if !op.eq_ignore_ascii_case("eq") {
        return None;
    }
    let val = val.trim();
    let inner = val.strip_prefix('\'')?.strip_suffix('\'')?;
    Some(inner.replace("''", "'"))
}

/// Graph's request size limit for creating a message (larger ones need an upload session).
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// Stores a message from raw MIME directly in a mailbox (as mail delivered over SMTP would
/// arrive, with no request size limit): large messages and malformed samples for tests.
/// `folder` is a folder id or well-known name. Returns the message id.
pub fn insert_mime(t: &mut Tenant, uid: &str, folder: &str, mime: &str) -> Option<String> {
    let fid = resolve_folder(&t.mail.view(uid), folder)?;
    let now = t.now();
    let seq = t.next_seq();
    let id = outlook_id("AAMkAGI2", &[uid, "smtp", &seq.to_string()]);
    let mut msg = message_from_mime(&id, mime, now, &fid, seq, ("".into(), "".into()));
    msg.data.insert("isDraft".into(), json!(false));
    msg.data.insert("isRead".into(), json!(false));
    t.mail.materialize(uid).messages.insert(id.clone(), msg);
    Some(id)
}

/// Changes about `percent`% of the messages of every generated mailbox: a third marked
/// read/unread, a third deleted, and as many new messages delivered to the inbox. Returns
/// (changed, deleted, added).
pub fn churn(t: &mut Tenant, percent: f64, seed: u64) -> (usize, usize, usize) {
    let mut rng = Rng::derive(seed, "mail-churn");
    let users: Vec<String> = t.mail.boxes.keys().cloned().collect();
    let (mut changed, mut deleted, mut added) = (0, 0, 0);
    for uid in users {
        let ids: Vec<String> = t.mail.boxes[&uid]
            .messages
            .values()
            .filter(|m| !m.deleted)
            .map(|m| m.id.clone())
            .collect();
        for id in ids {
            if !rng.chance(percent / 100.0) {
                continue;
            }
            let seq = t.next_seq();
            let m = t.mail.materialize(&uid).messages.get_mut(&id).unwrap();
            match rng.below(3) {
                0 => {
                    let read = m.data.get("isRead") == Some(&json!(true));
                    m.data.insert("isRead".into(), json!(!read));
                    m.seq = seq;
                    changed += 1;
                }
                1 => {
                    m.deleted = true;
                    m.seq = seq;
                    deleted += 1;
                }
                _ => {
                    let n = seq;
                    let mime = format!(
                        "From: Churn <churn@contoso.com>\r\nTo: {uid}\r\nSubject: New mail {n}\r\n\
                         Date: Mon, 30 Nov 2026 05:00:00 +0000\r\nMessage-ID: <churn-{n}@contoso.com>\r\n\
                         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n\r\nNew message {n}\r\n"
                    );
                    insert_mime(t, &uid, "inbox", &mime);
                    added += 1;
                }
            }
        }
    }
    (changed, deleted, added)
}

fn create_message(t: &mut Tenant, req: &Req, uid: &str, folder: &str) -> Resp {
    let now = t.now();
    let seq = t.next_seq();
    let id = outlook_id("AAMkAGI2", &[uid, "new", &seq.to_string()]);
    let (upn, dn) = t
        .get(Kind::User, uid)
        .map(|u| {
            (
                u.str("userPrincipalName").unwrap_or("").to_string(),
                u.str("displayName").unwrap_or("").to_string(),
            )
        })
        .unwrap_or_default();
    let ct = req
        .header("content-type")
        .unwrap_or("application/json")
        .to_ascii_lowercase();
    if req.body.len() > MAX_REQUEST_BYTES {
        return mail_error(
            413,
            "ErrorRequestEntityTooLarge",
            "The request is larger than 4 MB; use an upload session.",
        );
    }
    let msg = if ct.starts_with("text/plain") {
        let Some(raw) = util::b64_decode(&String::from_utf8_lossy(&req.body)) else {
            return mail_error(
                400,
                "ErrorMimeContentInvalidBase64String",
                "Invalid base64 string for MIME content.",
            );
        };
        let text = String::from_utf8_lossy(&raw).into_owned();
        if parse_mime(&text).headers.is_empty() {
            return mail_error(
                400,
                "ErrorMimeContentInvalid",
                "The MIME content is not valid.",
            );
        }
        message_from_mime(&id, &text, now, folder, seq, (dn.clone(), upn.clone()))
    } else {
        let body = match req.json_body() {
            Ok(b) => b,
            Err(e) => return e,
        };
        let addr = |v: &Value| {
            (
                v.pointer("/emailAddress/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                v.pointer("/emailAddress/address")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            )
        };
        let from = body
            .get("from")
            .map(addr)
            .unwrap_or((dn.clone(), upn.clone()));
        let to: Vec<(String, String)> = body
            .get("toRecipients")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(addr).collect())
            .unwrap_or_default();
        let content = body
            .pointer("/body/content")
            .and_then(Value::as_str)
            .unwrap_or("");
        let ctype = body
            .pointer("/body/contentType")
            .and_then(Value::as_str)
            .unwrap_or("text")
            .to_ascii_lowercase();
        let mut data = message_data(
            &id,
            body.get("subject").and_then(Value::as_str).unwrap_or(""),
            content,
            &ctype,
            &from,
            &to,
            now,
            true,
            true,
        );
        for k in [
            "ccRecipients",
            "bccRecipients",
            "replyTo",
            "categories",
            "importance",
            "flag",
            "isRead",
            "internetMessageId",
        ] {
            if let Some(v) = body.get(k) {
                data.insert(k.into(), v.clone());
            }
        }
        // Extended properties can only be given on create. PR_MESSAGE_FLAGS (0x0E07) decides
        // read (MSGFLAG_READ = 1) and draft (MSGFLAG_UNSENT = 8) state, as in Exchange.
        let mut ext = BTreeMap::new();
        if let Some(list) = body
            .get("singleValueExtendedProperties")
            .and_then(Value::as_array)
        {
            for p in list {
                let (Some(pid), Some(v)) = (
                    p.get("id").and_then(Value::as_str),
                    p.get("value").and_then(Value::as_str),
                ) else {
                    return mail_error(
                        400,
                        "ErrorInvalidExtendedProperty",
                        "An extended property needs a string id and a string value.",
                    );
                };
                ext.insert(canonical_prop_id(pid), v.to_string());
            }
        }
        if let Some(flags) = ext
            .get(PR_MESSAGE_FLAGS)
            .and_then(|v| v.trim().parse::<i64>().ok())
        {
            data.insert("isRead".into(), json!(flags & 1 == 1));
            data.insert("isDraft".into(), json!(flags & 8 == 8));
        }
        let mut atts = vec![];
        if let Some(list) = body.get("attachments").and_then(Value::as_array) {
            for (i, a) in list.iter().enumerate() {
                let bytes = a
                    .get("contentBytes")
                    .and_then(Value::as_str)
                    .and_then(util::b64_decode)
                    .unwrap_or_default();
                atts.push(Attachment {
                    id: outlook_id("AAMkAGI2att", &[&id, &i.to_string()]),
                    name: a
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("attachment")
                        .into(),
                    content_type: a
                        .get("contentType")
                        .and_then(Value::as_str)
                        .unwrap_or("application/octet-stream")
                        .into(),
                    bytes,
                    inline: a.get("isInline").and_then(Value::as_bool).unwrap_or(false),
                    content_id: a
                        .get("contentId")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    modified: util::iso(now),
                });
            }
        }
        Message {
            id: id.clone(),
            folder: folder.to_string(),
            data,
            attachments: atts,
            mime: None,
            ext,
            seq,
            created_seq: seq,
            deleted: false,
        }
    };
    let out = render_message(req, &msg, None);
    t.mail.materialize(uid).messages.insert(id, msg);
    Resp::created(out)
}

/// A message imported from MIME text (kept verbatim for `$value`), created as a draft.
fn message_from_mime(
    id: &str,
    text: &str,
    now: i64,
    folder: &str,
    seq: u64,
    owner: (String, String),
) -> Message {
    let p = parse_mime(text);
    let from = hget(&p.headers, "from").map(parse_addr).unwrap_or(owner);
    let to: Vec<(String, String)> = hget(&p.headers, "to")
        .map(|v| v.split(',').map(parse_addr).collect())
        .unwrap_or_default();
    let when = hget(&p.headers, "date")
        .and_then(parse_rfc2822)
        .unwrap_or(now);
    let mut data = message_data(
        id,
        hget(&p.headers, "subject").unwrap_or(""),
        &p.body,
        if p.html { "html" } else { "text" },
        &from,
        &to,
        when,
        true,
        true,
    );
    if let Some(mid) = hget(&p.headers, "message-id") {
        data.insert("internetMessageId".into(), json!(mid));
    }
    data.insert("createdDateTime".into(), json!(util::iso(now)));
    let atts = p
        .attachments
        .into_iter()
        .enumerate()
        .map(|(i, a)| Attachment {
            id: outlook_id("AAMkAGI2att", &[id, &i.to_string()]),
            name: a.name,
            content_type: a.content_type,
            bytes: a.bytes,
            inline: a.inline,
            content_id: a.content_id,
            modified: util::iso(now),
        })
        .collect();
    Message {
        id: id.to_string(),
        folder: folder.to_string(),
        data,
        attachments: atts,
        mime: Some(text.to_string()),
        ext: BTreeMap::new(),
        seq,
        created_seq: seq,
        deleted: false,
    }
}

fn parse_rfc2822(s: &str) -> Option<i64> {
    // "Thu, 1 Jan 2025 10:00:00 +0000"
    let parts: Vec<&str> = s.split_whitespace().collect();
    let p = if parts.first().is_some_and(|x| x.ends_with(',')) {
        &parts[1..]
    } else {
        &parts[..]
    };
    if p.len() < 4 {
        return None;
    }
    const MON: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let m = MON
        .iter()
        .position(|x| p[1].to_ascii_lowercase().starts_with(x))?
        + 1;
    let d: u32 = p[0].parse().ok()?;
    let y: i32 = p[2].parse().ok()?;
    util::parse_iso(&format!("{y:04}-{m:02}-{d:02}T{}Z", p[3]))
}

fn message_ops(t: &mut Tenant, req: &Req, uid: &str, r: &[&str]) -> Resp {
    let mid = r[0];
    let not_found = || {
        mail_error(
            404,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        )
    };
    let exists = t
        .mail
        .view(uid)
        .messages
        .get(mid)
        .is_some_and(|m| !m.deleted);
    if !exists {
        return not_found();
    }
    let lower: Vec<String> = r[1..].iter().map(|s| s.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    match (req.method.as_str(), l.as_slice()) {
        ("GET", []) => {
            let mb = t.mail.view(uid);
            let select: Option<Vec<String>> = req
                .q("$select")
                .map(|s| s.split(',').map(|x| x.trim().to_string()).collect());
            let mut v = render_message(req, &mb.messages[mid], select.as_deref());
            v.as_object_mut().unwrap().shift_insert(
                0,
                "@odata.context".into(),
                json!(format!(
                    "{}/{}/$metadata#users('{uid}')/messages/$entity",
                    req.base, req.version
                )),
            );
            let mut resp = Resp::ok(v).with_objects(1);
            if let Some(p) = req.prefer_value("outlook.body-content-type") {
                resp = resp.with_header(
                    "Preference-Applied",
                    format!("outlook.body-content-type=\"{p}\""),
                );
            }
            resp
        }
        ("GET", ["$value"]) => {
            let mb = t.mail.view(uid);
            let m = &mb.messages[mid];
            if !mime_convertible(m) {
                return mail_error(
                    400,
                    "ErrorMimeContentConversionFailed",
                    "The MIME content conversion failed.",
                );
            }
            Resp::text(200, to_mime(m), "text/plain")
        }
        ("PATCH", []) => {
            let body = match req.json_body() {
                Ok(b) => b,
                Err(e) => return e,
            };
            let seq = t.next_seq();
            let now = t.now_iso();
            let state_only = body.keys().all(|k| {
                matches!(
                    k.as_str(),
                    "isRead" | "categories" | "flag" | "inferenceClassification"
                )
            });
            let mb = t.mail.materialize(uid);
            let m = mb.messages.get_mut(mid).unwrap();
            for (k, v) in body {
                if matches!(
                    k.as_str(),
                    "isRead"
                        | "subject"
                        | "body"
                        | "categories"
                        | "importance"
                        | "flag"
                        | "toRecipients"
                        | "ccRecipients"
                        | "bccRecipients"
                        | "replyTo"
                        | "inferenceClassification"
                ) {
                    m.data.insert(k, v);
                }
            }
            m.data.insert("lastModifiedDateTime".into(), json!(now));
            m.seq = seq;
            // Read state, flag, categories and classification are not part of the content:
            // the stored MIME stays; other changes regenerate it.
            if !state_only {
                m.mime = None;
            }
            let m = m.clone();
            Resp::ok(render_message(req, &m, None))
        }
        ("DELETE", []) => {
            let seq = t.next_seq();
            let m = t.mail.materialize(uid).messages.get_mut(mid).unwrap();
            m.deleted = true;
            m.seq = seq;
            Resp::no_content()
        }
        ("GET", ["attachments"]) => {
            let mb = t.mail.view(uid);
            // `$select` keeps the listed properties (with `@odata.type` and `id`), so a client
            // can list large attachments without their `contentBytes`.
            let select: Option<Vec<String>> = req.q("$select").map(|s| {
                s.split(',')
                    .map(|x| x.trim().to_ascii_lowercase())
                    .collect()
            });
            let items: Vec<Value> = mb.messages[mid]
                .attachments
                .iter()
                .map(|a| {
                    let mut v = render_attachment(a, true);
                    if let (Some(sel), Some(o)) = (&select, v.as_object_mut()) {
                        o.retain(|k, _| {
                            k == "@odata.type" || k == "id" || sel.contains(&k.to_ascii_lowercase())
                        });
                    }
                    v
                })
                .collect();
            let n = items.len();
            Resp::ok(json!({"@odata.context": format!("{}/{}/$metadata#users('{uid}')/messages('{mid}')/attachments", req.base, req.version), "value": items})).with_objects(n)
        }
        ("POST", ["attachments"]) => {
            let body = match req.json_body() {
                Ok(b) => b,
                Err(e) => return e,
            };
            let Some(bytes) = body
                .get("contentBytes")
                .and_then(Value::as_str)
                .and_then(util::b64_decode)
            else {
                return mail_error(
                    400,
                    "ErrorInvalidRequest",
                    "contentBytes is required for a fileAttachment.",
                );
            };
            if bytes.len() > 3 * 1024 * 1024 {
                return mail_error(
                    413,
                    "ErrorAttachmentSizeLimitExceeded",
                    "Attachments larger than 3 MB need an upload session.",
                );
            }
            let seq = t.next_seq();
            let now = t.now_iso();
            let m = t.mail.materialize(uid).messages.get_mut(mid).unwrap();
            let a = Attachment {
                id: outlook_id("AAMkAGI2att", &[mid, &seq.to_string()]),
                name: body
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("attachment")
                    .into(),
                content_type: body
                    .get("contentType")
                    .and_then(Value::as_str)
                    .unwrap_or("application/octet-stream")
                    .into(),
                bytes,
                inline: body
                    .get("isInline")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                content_id: body
                    .get("contentId")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                modified: now,
            };
            let out = render_attachment(&a, true);
            attach(m, a, seq);
            Resp::created(out)
        }
        ("POST", ["attachments", "createuploadsession"]) => {
            crate::mail_upload::create_session(t, req, uid, mid)
        }
        ("GET", ["attachments", aid]) | ("GET", ["attachments", aid, "$value"]) => {
            let mb = t.mail.view(uid);
            let Some(a) = mb.messages[mid]
                .attachments
                .iter()
                .find(|a| a.id.eq_ignore_ascii_case(aid))
            else {
                return not_found();
            };
            if l.len() == 3 {
                Resp::bytes(200, a.bytes.clone(), &a.content_type)
            } else {
                Resp::ok(render_attachment(a, true))
            }
        }
        _ => Resp::error(
            405,
            "ErrorInvalidRequest",
            "The OData request is not supported.",
        ),
    }
}

/// Adds an attachment to a message. Exchange re-renders the MIME of a changed item; for a
/// message imported from MIME the simulator keeps the imported text and adds the attachment
/// as a base64 part of its top-level `multipart/mixed` (wrapping a message that is not one),
/// so headers, body and the other parts stay as they were.
pub fn attach(m: &mut Message, a: Attachment, seq: u64) {
    if let Some(text) = m.mime.take() {
        m.mime = Some(mime_with_part(&text, &a));
    }
    m.attachments.push(a);
    m.data.insert("hasAttachments".into(), json!(true));
    m.seq = seq;
}

/// `text` with `a` as one more part of its top-level `multipart/mixed` (base64 in lines of
/// 76); a message that is not `multipart/mixed` is wrapped in one, its content headers moving
/// into the first part.
fn mime_with_part(text: &str, a: &Attachment) -> String {
    let nl = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let b64 = util::b64(&a.bytes);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap_or(""))
        .collect();
    with_part(text, a, nl, &lines.join(nl))
}

fn with_part(text: &str, a: &Attachment, nl: &str, b64: &str) -> String {
    let disposition = if a.inline { "inline" } else { "attachment" };
    let cid = a
        .content_id
        .as_ref()
        .map(|c| format!("Content-ID: <{c}>{nl}"))
        .unwrap_or_default();
    let part = |boundary: &str| {
        format!(
            "--{boundary}{nl}Content-Type: {ct}; name=\"{name}\"{nl}Content-Description: {name}{nl}\
             Content-Disposition: {disposition}; filename=\"{name}\"; size={size}{nl}{cid}\
             Content-Transfer-Encoding: base64{nl}{nl}{b64}{nl}",
            ct = a.content_type,
            name = a.name,
            size = a.bytes.len(),
        )
    };
    let sep = format!("{nl}{nl}");
    let (head, body) = match text.find(&sep) {
        Some(i) => (&text[..i], &text[i + sep.len()..]),
        None => (text, ""),
    };
    let (headers, _) = split_headers(text);
    let ct = hget(&headers, "content-type").unwrap_or("text/plain");
    if ct.to_ascii_lowercase().starts_with("multipart/mixed") {
        if let Some(b) = param(ct, "boundary").filter(|b| !b.is_empty()) {
            let close = format!("--{b}--");
            if let Some(at) = body.rfind(&close) {
                return format!("{head}{sep}{}{}{}", &body[..at], part(&b), &body[at..]);
            }
        }
    }
    // Wrap: the content headers move into the first part.
    let boundary = format!(
        "_sim_mixed_{}_",
        &util::b64url(&util::sha1(text.as_bytes()))[..12]
    );
    let mut outer = Vec::new();
    let mut inner = Vec::new();
    let mut current_is_content = false;
    for line in head.split(nl) {
        let continuation = line.starts_with(' ') || line.starts_with('\t');
        if !continuation {
            let name = line
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            current_is_content = name.starts_with("content-");
        }
        if current_is_content {
            inner.push(line);
        } else {
            outer.push(line);
        }
    }
    if inner.is_empty() {
        inner.push("Content-Type: text/plain; charset=\"us-ascii\"");
    }
    format!(
        "{}{nl}Content-Type: multipart/mixed;{nl}\tboundary=\"{boundary}\"{nl}{nl}--{boundary}{nl}{}{nl}{nl}{body}{}{}--{boundary}--{nl}",
        outer.join(nl),
        inner.join(nl),
        if body.ends_with(nl) { "" } else { nl },
        part(&boundary),
    )
}

fn render_attachment(a: &Attachment, bytes: bool) -> Value {
    let mut v = json!({"@odata.type": "#microsoft.graph.fileAttachment", "@odata.mediaContentType": a.content_type, "id": a.id,
        "lastModifiedDateTime": a.modified, "name": a.name, "contentType": a.content_type, "size": a.bytes.len(),
        "isInline": a.inline, "contentId": a.content_id, "contentLocation": null});
    if bytes {
        v["contentBytes"] = json!(util::b64(&a.bytes));
    }
    v
}

fn delta_page_size(req: &Req) -> usize {
    req.prefer_value("odata.maxpagesize")
        .and_then(|v| v.parse().ok())
        .or_else(|| req.q("$top").and_then(|v| v.parse().ok()))
        .unwrap_or(10)
        .clamp(1, 1000)
}

fn messages_delta(t: &mut Tenant, req: &Req, uid: &str, folder: &str) -> Resp {
    // Token state: since (exclusive), until (inclusive), cursor (last id), change types.
    let (since, until, after) = if let Some(tok) = req.q("$deltatoken") {
        match util::decode_token(tok) {
            Some(v) if v["f"] == json!(folder) => (v["s"].as_u64().unwrap_or(0), t.seq, None),
            _ => return mail_error(400, "SyncStateInvalid", "The sync state is invalid."),
        }
    } else if let Some(tok) = req.q("$skiptoken") {
        match util::decode_token(tok) {
            Some(v) if v["f"] == json!(folder) => (
                v["s"].as_u64().unwrap_or(0),
                v["u"].as_u64().unwrap_or(0),
                v["c"].as_str().map(str::to_string),
            ),
            _ => return mail_error(400, "SyncStateInvalid", "The sync state is invalid."),
        }
    } else {
        (0, t.seq, None)
    };
    let change_type = req.q("changeType").map(str::to_ascii_lowercase);
    let select: Option<Vec<String>> = req
        .q("$select")
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect());
    let size = delta_page_size(req);
    let mb = t.mail.view(uid);
    let mut out = vec![];
    let mut last = None;
    let mut more = false;
    for m in mb
        .messages
        .values()
        .filter(|m| m.folder == folder && m.seq > since && m.seq <= until)
    {
        if after.as_ref().is_some_and(|a| m.id.as_str() <= a.as_str()) {
            continue;
        }
        let kind = if m.deleted {
            "deleted"
        } else if m.created_seq > since {
            "created"
        } else {
            "updated"
        };
        if m.deleted && (m.created_seq > since || since == 0) {
            continue; // never seen by this client
        }
        if change_type.as_deref().is_some_and(|c| c != kind) {
            continue;
        }
        if out.len() == size {
            more = true;
            break;
        }
        if m.deleted {
            out.push(json!({"@odata.type": "#microsoft.graph.message", "id": m.id, "@removed": {"reason": "deleted"}}));
        } else {
            let mut v = render_message(req, m, select.as_deref());
            v.as_object_mut().unwrap().shift_insert(
                0,
                "@odata.type".into(),
                json!("#microsoft.graph.message"),
            );
            out.push(v);
        }
        last = Some(m.id.clone());
    }
    let n = out.len();
    let ctx = format!("{}/{}/$metadata#Collection(message)", req.base, req.version);
    let base = req.self_url_without(&["$deltatoken", "$skiptoken"]);
    let sep = if base.contains('?') { '&' } else { '?' };
    let mut body = json!({"@odata.context": ctx, "value": out});
    if more {
        let tok = util::encode_token(&json!({"f": folder, "s": since, "u": until, "c": last}));
        body["@odata.nextLink"] = json!(format!("{base}{sep}$skiptoken={tok}"));
    } else {
        let tok = util::encode_token(&json!({"f": folder, "s": until}));
        body["@odata.deltaLink"] = json!(format!("{base}{sep}$deltatoken={tok}"));
    }
    Resp::ok(body).with_objects(n)
}

fn folders_delta(t: &mut Tenant, req: &Req, uid: &str) -> Resp {
    let since = match req.q("$deltatoken").map(util::decode_token) {
        Some(Some(v)) => v["s"].as_u64().unwrap_or(0),
        Some(None) => return mail_error(400, "SyncStateInvalid", "The sync state is invalid."),
        None => 0,
    };
    let mb = t.mail.view(uid);
    let mut out = vec![];
    for f in mb.folders.values().filter(|f| f.seq > since) {
        if f.deleted {
            if f.created_seq <= since && since > 0 {
                out.push(json!({"@odata.type": "#microsoft.graph.mailFolder", "id": f.id, "@removed": {"reason": "deleted"}}));
            }
        } else {
            let mut v = render_folder(&mb, f);
            v.as_object_mut().unwrap().shift_insert(
                0,
                "@odata.type".into(),
                json!("#microsoft.graph.mailFolder"),
            );
            out.push(v);
        }
    }
    let n = out.len();
    let base = req.self_url_without(&["$deltatoken", "$skiptoken"]);
    let sep = if base.contains('?') { '&' } else { '?' };
    let tok = util::encode_token(&json!({"s": t.seq}));
    Resp::ok(json!({"@odata.context": format!("{}/{}/$metadata#Collection(mailFolder)", req.base, req.version), "value": out,
        "@odata.deltaLink": format!("{base}{sep}$deltatoken={tok}")})).with_objects(n)
}
