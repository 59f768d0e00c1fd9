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

/// Upload sessions one attachment may start after its first one failed (see [`attach`]).
pub const MAX_NEW_SESSIONS: u32 = 2;

/// How an attachment was attached, for the action's notes.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Attached {
    /// The attachment's name.
    pub name: String,
    /// Upload sessions started after a session's range `PUT` failed.
    pub new_sessions: u32,
    /// A range `PUT` failed, and the attachment was there all the same: the lost answer was
    /// the last range's (nothing was uploaded again).
    pub found_after_failure: bool,
    /// Why each failed session stopped, in order.
    pub failures: Vec<String>,
}

impl Attached {
    /// What the action's outcome says about this attachment: `None` when its upload went
    /// through at the first try.
    pub fn note(&self) -> Option<String> {
        let last = self.failures.last()?;
        let mut note = match self.new_sessions {
            0 => format!("the upload of `{}` failed ({last})", self.name),
            n => format!(
                "`{}` needed {n} new upload session{} after a range's upload failed (the last \
                 failure: {last})",
                self.name,
                if n == 1 { "" } else { "s" }
            ),
        };
        if self.found_after_failure {
            note.push_str(
                "; the attachment was on the message all the same (the lost answer was the \
                 last range's), so it was not uploaded again",
            );
        }
        Some(note)
    }
}

/// Why [`upload`] stopped.
enum Failure {
    /// A range `PUT` failed. `retry`: in a way a new session may get past (a transport
    /// failure or the host's exhausted retries, 404 (the session is gone), 416 (the session
    /// has other bytes than sent: a retried range whose first answer was lost), 429, 5xx, or
    /// an answer that does not fit the upload); other refusals would only come again.
    Put { why: String, retry: bool },
    /// Reading or decoding the stored MIME failed: a new session would fail the same way.
    Local(String),
}

/// Whether a range `PUT` answered `status` may succeed in a new session.
fn worth_a_new_session(status: u16) -> bool {
    matches!(status, 404 | 416 | 429) || status >= 500 || (200..300).contains(&status)
}

/// The ids of the live attachments named `name` that are at least `size` bytes (Graph's
/// `size` of an attachment counts its properties too, so it is never less than its bytes).
fn matching_ids(live: &[Value], name: &str, size: u64) -> Vec<String> {
    live.iter()
        .filter(|v| v.get("name").and_then(Value::as_str) == Some(name))
        .filter(|v| v.get("size").and_then(Value::as_u64).unwrap_or(0) >= size)
        .filter_map(|v| v.get("id").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// Attaches `a` to the message `id` of `mailbox`.
///
/// Files of [`SESSION_MIN`] and more go through an upload session. When a range `PUT` of
/// it fails ([`Failure::Put`]), the session is cancelled (`DELETE` on the upload URL, a 404
/// is fine) and the message's attachments are listed: one with this name and size that was
/// not there before the session means the last range was taken and only its answer was
/// lost, so the attachment is done; otherwise a new session uploads it from byte 0, at most
/// [`MAX_NEW_SESSIONS`] times, and then the attachment fails, named in the error. (Outlook
/// documents no status read of its upload sessions, so the upload never goes on from the
/// middle; an attachment exists only once its last range is taken, so a failed session
/// leaves none behind.)
pub fn attach(
    mailbox: &str,
    id: &str,
    c: &ContentRef,
    a: &Attachment,
) -> Result<Attached, PluginError> {
    let mut done = Attached {
        name: a.name.clone(),
        ..Attached::default()
    };
    let size = decoded_size(c, &a.leaf).map_err(PluginError::Other)?;
    if size < SESSION_MIN {
        post_small(mailbox, id, c, a)?;
        return Ok(done);
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
    let list = |when: &str| -> Result<Vec<String>, PluginError> {
        let live = graph::get_all(&format!(
            "/v1.0/users/{mailbox}/messages/{id}/attachments?$select=id,name,size,contentType,isInline"
        ))
        .map_err(|e| {
            PluginError::Other(format!(
                "listing the message's attachments {when} of `{}` failed: {}",
                a.name,
                describe(&e)
            ))
        })?;
        Ok(matching_ids(&live, &a.name, size))
    };
    let mut before = list("before the upload")?;
    loop {
        let session = graph::send_json(graph::json_request(
            "POST",
            &format!("/v1.0/users/{mailbox}/messages/{id}/attachments/createUploadSession"),
            &json!({ "AttachmentItem": item }),
        ))
        .map_err(|e| crate::forbidden(e, "Mail.ReadWrite"))?;
        let url = graph::upload_url(&session)?;
        let failure = match upload(&url, c, a, size) {
            Ok(()) => return Ok(done),
            Err(f) => f,
        };
        cancel(&url);
        let (why, retry) = match failure {
            Failure::Local(why) => (why, false),
            Failure::Put { why, retry } => (why, retry),
        };
        if !retry {
            return Err(PluginError::Other(format!(
                "uploading the attachment `{}` ({size} bytes) failed: {why}",
                a.name
            )));
        }
        done.failures.push(why);
        let now = list("after a failed upload")?;
        if now.iter().any(|i| !before.contains(i)) {
            done.found_after_failure = true;
            return Ok(done);
        }
        if done.new_sessions == MAX_NEW_SESSIONS {
            return Err(PluginError::Other(format!(
                "uploading the attachment `{}` ({size} bytes) failed in {} upload sessions (each \
                 cancelled, no part of it left on the message); the last failure: {}",
                a.name,
                MAX_NEW_SESSIONS + 1,
                done.failures.last().map(String::as_str).unwrap_or_default()
            )));
        }
        done.new_sessions += 1;
        before = now;
    }
}

/// Cancels an upload session. Best effort: a 404 means it is gone already (finished,
/// expired or cancelled), and one that cannot be cancelled expires on its own; nothing is
/// sent to it again either way.
fn cancel(url: &str) {
    let _ = graph::send(graph::request("DELETE", url));
}

/// `PUT`s the decoded body in slices of [`SLICE`], in order.
fn upload(url: &str, c: &ContentRef, a: &Attachment, size: u64) -> Result<(), Failure> {
    let mut buf: Vec<u8> = Vec::with_capacity(SLICE + 512 * 1024);
    let mut sent = 0u64;
    // Why a `PUT` failed, when that stopped the decoding.
    let mut failed: Option<Failure> = None;
    let put = |slice: &[u8], sent: &mut u64| -> Result<(), Failure> {
        let end = *sent + slice.len() as u64;
        let range = format!("bytes {}-{}/{size}", *sent, end - 1);
        let resp =
            graph::send(graph::upload_range(url, *sent, size, slice.to_vec())).map_err(|e| {
                Failure::Put {
                    why: format!("{range}: {}", describe(&e)),
                    retry: !matches!(e, PluginError::Refused(_)),
                }
            })?;
        let last = end == size;
        match resp.status {
            201 if last => {}
            200 if !last => {
                let next = graph::json_or_error("PUT upload URL", &resp)
                    .ok()
                    .and_then(|v| graph::next_expected_start(&v));
                if next != Some(end) {
                    return Err(Failure::Put {
                        why: format!("{range}: the session expects {next:?} next"),
                        retry: true,
                    });
                }
            }
            status => {
                let e = graph::decode_error("PUT upload URL", status, &resp.body);
                return Err(Failure::Put {
                    why: format!("{range}: HTTP {status} {}: {}", e.code, e.message),
                    retry: worth_a_new_session(status),
                });
            }
        }
        *sent = end;
        Ok(())
    };
    let decoded = mime::decode_leaf(&reader(c), &a.leaf, &mut |b| {
        buf.extend_from_slice(b);
        while buf.len() >= SLICE && sent + (SLICE as u64) < size {
            if let Err(f) = put(&buf[..SLICE], &mut sent) {
                failed = Some(f);
                return Err("a range upload failed".into());
            }
            buf.drain(..SLICE);
        }
        Ok(())
    });
    if let Err(why) = decoded {
        return Err(failed.unwrap_or(Failure::Local(why)));
    }
    if sent + buf.len() as u64 != size {
        return Err(Failure::Local(format!(
            "decoded {} bytes, expected {size}",
            sent + buf.len() as u64
        )));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_attachment_is_matched_by_name_and_size() {
        let live = vec![
            json!({"id": "a1", "name": "review.mp4", "size": 8_000_000}),
            // Graph's size counts the attachment's properties too.
            json!({"id": "a2", "name": "review.mp4", "size": 8_000_237}),
            json!({"id": "a3", "name": "review.mp4", "size": 3_932_160}),
            json!({"id": "a4", "name": "Review.mp4", "size": 8_000_000}),
            json!({"id": "a5", "name": "numbers.csv", "size": 9_000_000}),
            json!({"id": "a6", "name": "review.mp4"}),
        ];
        assert_eq!(matching_ids(&live, "review.mp4", 8_000_000), ["a1", "a2"]);
        assert!(matching_ids(&[], "review.mp4", 1).is_empty());
    }

    #[test]
    fn only_failures_a_new_session_may_get_past_start_one() {
        for status in [404, 416, 429, 500, 502, 503, 504, 200, 201] {
            assert!(worth_a_new_session(status), "{status}");
        }
        for status in [400, 401, 403, 409, 413] {
            assert!(!worth_a_new_session(status), "{status}");
        }
    }

    #[test]
    fn the_note_says_when_an_attachment_needed_a_new_session() {
        let mut a = Attached {
            name: "review.mp4".into(),
            ..Attached::default()
        };
        assert_eq!(a.note(), None, "a first-try upload needs no note");
        a.failures
            .push("bytes 3932160-7864319/8000000: HTTP 416".into());
        a.new_sessions = 1;
        assert_eq!(
            a.note().unwrap(),
            "`review.mp4` needed 1 new upload session after a range's upload failed (the last \
             failure: bytes 3932160-7864319/8000000: HTTP 416)"
        );
        let found = Attached {
            name: "review.mp4".into(),
            new_sessions: 0,
            found_after_failure: true,
            failures: vec!["bytes 7864320-7999999/8000000: HTTP 404".into()],
        };
        let note = found.note().unwrap();
        assert!(
            note.starts_with("the upload of `review.mp4` failed (bytes 7864320"),
            "{note}"
        );
        assert!(note.ends_with("so it was not uploaded again"), "{note}");
    }
}
