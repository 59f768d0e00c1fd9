//! Messages over Graph's MIME import limit (4 MB a request, 3 MB of MIME before base64).
//!
//! The stored MIME is scanned by ranges ([`crate::mime::scan`]: never the whole message in
//! plugin memory) and its largest file attachments are taken out until the rest fits the limit
//! ([`crate::mime::split`]); an attached e-mail (`message/rfc822`, an item attachment in
//! Outlook) stays in the imported MIME unless the message cannot fit with it, and one taken
//! out goes back as a `.eml` file attachment (the action's summary and notes say so). The rest is imported as usual; each attachment taken out is then
//! decoded from its base64 or quoted-printable body window by window and attached to the new
//! message with its name, content type, inline flag and content id: files of 3 MiB and more
//! through an upload session (`createUploadSession`, then `PUT`s of 12 × 320 KiB to the
//! pre-authenticated upload URL, which the host sends without the token), smaller ones with one
//! `POST …/attachments`.

use cairn_sdk::graph;
use cairn_sdk::prelude::*;
use cairn_sdk::{content, ContentRef};
use serde_json::{json, Value};

use crate::mime::{self, Leaf, Split};

/// Files at least this large go through an upload session (Graph refuses smaller ones there).
pub const SESSION_MIN: u64 = 3 * 1024 * 1024;
/// Bytes per `PUT`: a multiple of 320 KiB (Microsoft's advice) under 4 MB.
pub const SLICE: usize = 12 * 320 * 1024;

/// An attachment taken out of the MIME, as it will be attached.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub leaf: Leaf,
    pub name: String,
    pub content_type: String,
    pub inline: bool,
    pub content_id: Option<String>,
    /// An attached e-mail (`message/rfc822`) going back as a `.eml` file attachment.
    pub message: bool,
}

/// How a large message is restored.
#[derive(Debug, Clone)]
pub struct Plan {
    pub split: Split,
    pub attachments: Vec<Attachment>,
    /// Names of the attachments that stay in the imported MIME (Exchange lists them too).
    pub kept_names: Vec<String>,
}

/// The name an attachment part goes by: its file name, else its content id.
fn part_name(h: &mime::PartHeaders) -> Option<String> {
    h.name.clone().or_else(|| h.content_id.clone())
}

/// A subject as a file name: characters Windows and Outlook refuse in names replaced, at most
/// 120 characters.
fn file_name(subject: &str) -> String {
    subject
        .chars()
        .map(|c| match c {
            '\\' | '/' | ':' | '*' | '?' | '"' | '<' | '>' | '|' => '_',
            c if c.is_control() => ' ',
            c => c,
        })
        .take(120)
        .collect::<String>()
        .trim()
        .trim_end_matches('.')
        .to_string()
}

fn reader(c: &ContentRef) -> impl Fn(u64, u32) -> Result<Vec<u8>, String> + '_ {
    move |at, len| content::read(c, at, len).map_err(|e| format!("reading the stored MIME: {e:?}"))
}

/// Scans the stored MIME and chooses what leaves it; `Err` says why it cannot be split.
pub fn plan(c: &ContentRef, limit: u64) -> Result<Plan, String> {
    let read = reader(c);
    let structure = mime::scan(&read, c.size)?;
    let split = mime::split(&structure, c.size, limit)?;
    let attachments = split
        .strip
        .iter()
        .enumerate()
        .map(|(i, leaf)| {
            let h = &leaf.headers;
            let ext = h.mime_type.rsplit('/').next().unwrap_or("bin");
            let message = h.is_message();
            let name = part_name(h).or_else(|| {
                message.then(|| {
                    let subject = mime::message_subject(&read, leaf)
                        .map(|s| file_name(&s))
                        .filter(|s| !s.is_empty());
                    format!(
                        "{}.eml",
                        subject.unwrap_or_else(|| format!("attached message {}", i + 1))
                    )
                })
            });
            Attachment {
                leaf: leaf.clone(),
                message,
                name: name.unwrap_or_else(|| format!("attachment-{}.{ext}", i + 1)),
                content_type: if h.mime_type.contains('/') {
                    h.mime_type.clone()
                } else {
                    "application/octet-stream".into()
                },
                inline: h.is_inline(),
                content_id: h.content_id.clone(),
            }
        })
        .collect();
    let kept_names = structure
        .leaves
        .iter()
        .filter(|l| l.headers.is_attachment() && !split.strip.contains(l))
        .filter_map(|l| part_name(&l.headers))
        .collect();
    Ok(Plan {
        split,
        attachments,
        kept_names,
    })
}

/// The MIME without the attachments taken out (at most the import limit, so it fits in memory).
pub fn reduced_mime(c: &ContentRef, split: &Split) -> Result<Vec<u8>, PluginError> {
    let mut out = Vec::with_capacity(split.kept as usize);
    for &(a, b) in &split.keep {
        let mut at = a;
        while at < b {
            let want = (b - at).min(4 << 20) as u32;
            let chunk = content::read(c, at, want)?;
            if chunk.is_empty() {
                return Err(PluginError::Other(format!(
                    "the stored MIME ended at {at} of {} bytes",
                    c.size
                )));
            }
            at += chunk.len() as u64;
            out.extend_from_slice(&chunk);
        }
    }
    Ok(out)
}

/// The attachments of `plan` that the live message `id` lacks (matched by name, counting
/// duplicates, after the ones that stay in the MIME took theirs), in order.
pub fn missing<'a>(
    mailbox: &str,
    id: &str,
    plan: &'a Plan,
) -> Result<Vec<&'a Attachment>, PluginError> {
    let live = graph::get_all(&format!(
        "/v1.0/users/{mailbox}/messages/{id}/attachments?$select=id,name,contentType,isInline"
    ))?;
    let mut names: Vec<String> = live
        .iter()
        .filter_map(|a| a.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    for kept in &plan.kept_names {
        if let Some(i) = names.iter().position(|n| n == kept) {
            names.swap_remove(i);
        }
    }
    let mut out = Vec::new();
    for a in &plan.attachments {
        match names.iter().position(|n| *n == a.name) {
            Some(i) => {
                names.swap_remove(i);
            }
            None => out.push(a),
        }
    }
    Ok(out)
}

/// Decodes the attachment's body; returns its size without keeping it.
fn decoded_size(c: &ContentRef, leaf: &Leaf) -> Result<u64, String> {
    let mut n = 0u64;
    mime::decode_leaf(&reader(c), leaf, &mut |b| {
        n += b.len() as u64;
        Ok(())
    })?;
    Ok(n)
}

fn describe(e: &PluginError) -> String {
    match e {
        PluginError::Graph(g) => format!("HTTP {} {}: {}", g.status, g.code, g.message),
        other => format!("{other:?}"),
    }
}

/// Attaches `a` to the message `id` of `mailbox`.
pub fn attach(mailbox: &str, id: &str, c: &ContentRef, a: &Attachment) -> Result<(), PluginError> {
    let size = decoded_size(c, &a.leaf).map_err(PluginError::Other)?;
    if size < SESSION_MIN {
        return post_small(mailbox, id, c, a);
    }
    let mut item = json!({
        "attachmentType": "file",
        "name": a.name,
        "size": size,
        "contentType": a.content_type,
        "isInline": a.inline,
    });
    if let Some(cid) = &a.content_id {
        item["contentId"] = json!(cid);
    }
    let session = graph::send_json(graph::json_request(
        "POST",
        &format!("/v1.0/users/{mailbox}/messages/{id}/attachments/createUploadSession"),
        &json!({ "AttachmentItem": item }),
    ))
    .map_err(|e| crate::forbidden(e, "Mail.ReadWrite"))?;
    let url = graph::upload_url(&session)?;
    let result = upload(&url, c, a, size);
    if result.is_err() {
        // Best effort: the session expires on its own otherwise.
        let _ = graph::send(graph::request("DELETE", &url));
    }
    result.map_err(|why| {
        PluginError::Other(format!(
            "uploading the attachment `{}` ({size} bytes) failed: {why}",
            a.name
        ))
    })
}

/// `PUT`s the decoded body in slices of [`SLICE`], in order.
fn upload(url: &str, c: &ContentRef, a: &Attachment, size: u64) -> Result<(), String> {
    let mut buf: Vec<u8> = Vec::with_capacity(SLICE + 512 * 1024);
    let mut sent = 0u64;
    let put = |slice: &[u8], sent: &mut u64| -> Result<(), String> {
        let end = *sent + slice.len() as u64;
        let resp = graph::send(graph::upload_range(url, *sent, size, slice.to_vec()))
            .map_err(|e| describe(&e))?;
        let last = end == size;
        match resp.status {
            201 if last => {}
            200 if !last => {
                let next = graph::json_or_error("PUT upload URL", &resp)
                    .ok()
                    .and_then(|v| graph::next_expected_start(&v));
                if next != Some(end) {
                    return Err(format!(
                        "after bytes {}-{} the session expects {next:?}",
                        *sent,
                        end - 1
                    ));
                }
            }
            status => {
                let e = graph::decode_error("PUT upload URL", status, &resp.body);
                return Err(format!(
                    "bytes {}-{}/{size}: HTTP {status} {}: {}",
                    *sent,
                    end - 1,
                    e.code,
                    e.message
                ));
            }
        }
        *sent = end;
        Ok(())
    };
    mime::decode_leaf(&reader(c), &a.leaf, &mut |b| {
        buf.extend_from_slice(b);
        while buf.len() >= SLICE && sent + (SLICE as u64) < size {
            put(&buf[..SLICE], &mut sent)?;
            buf.drain(..SLICE);
        }
        Ok(())
    })?;
    if sent + buf.len() as u64 != size {
        return Err(format!(
            "decoded {} bytes, expected {size}",
            sent + buf.len() as u64
        ));
    }
    put(&buf, &mut sent)
}

/// A file under [`SESSION_MIN`]: one `POST …/attachments` with its bytes in base64.
fn post_small(mailbox: &str, id: &str, c: &ContentRef, a: &Attachment) -> Result<(), PluginError> {
    let mut bytes = Vec::new();
    mime::decode_leaf(&reader(c), &a.leaf, &mut |b| {
        bytes.extend_from_slice(b);
        Ok(())
    })
    .map_err(PluginError::Other)?;
    let mut body = json!({
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": a.name,
        "contentType": a.content_type,
        "isInline": a.inline,
        "contentBytes": mime::base64(&bytes),
    });
    if let Some(cid) = &a.content_id {
        body["contentId"] = json!(cid);
    }
    graph::send_json(graph::json_request(
        "POST",
        &format!("/v1.0/users/{mailbox}/messages/{id}/attachments"),
        &body,
    ))
    .map_err(|e| crate::forbidden(e, "Mail.ReadWrite"))?;
    Ok(())
}
