//! Forced chunk cuts and MIME-aware chunking: content stays byte for byte, and an attachment
//! that several messages share is stored once whatever headers surround each copy.

use crate::common;

use std::io::Write;

use cairn_repository::*;
use common::*;
use serde_json::json;

fn small_chunks() -> TestRepo {
    init_repo_with(InitOptions {
        chunker: ChunkerParams {
            min_size: 8 * 1024,
            avg_size: 32 * 1024,
            max_size: 128 * 1024,
        },
        ..Default::default()
    })
}

/// Standard base64, wrapped at 76 columns with CRLF (as Outlook writes attachments).
fn base64_lines(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len() * 4 / 3 + 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                s.push(A[(n >> shift) as usize & 63] as char);
            } else {
                s.push('=');
            }
        }
    }
    s.as_bytes()
        .chunks(76)
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn message(headers: &str, boundary: &str, text: &str, attachment_b64: &str) -> Vec<u8> {
    format!(
        "{headers}MIME-Version: 1.0\r\nContent-Type: multipart/mixed;\r\n\tboundary=\"{boundary}\"\r\n\r\n\
         --{boundary}\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n\r\n{text}\r\n\r\n\
         --{boundary}\r\nContent-Type: application/octet-stream; name=\"q4.xlsx\"\r\n\
         Content-Disposition: attachment; filename=\"q4.xlsx\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         {attachment_b64}\r\n\r\n--{boundary}--\r\n"
    )
    .into_bytes()
}

fn read_back(repo: &Repository, part: &PartRef) -> Vec<u8> {
    let mut back = Vec::new();
    std::io::copy(&mut repo.part_reader(part), &mut back).unwrap();
    back
}

#[test]
fn forced_cuts_keep_content_identical_and_chunk_each_stretch_on_its_own() {
    let t = small_chunks();
    let w = SnapshotWriter::new(&t.repo, WriterOptions::default()).unwrap();
    let tw = w.task("t", TaskMode::Full).unwrap();
    let a = noise(1, 100_000);
    let b = noise(2, 700_000);
    // `a`, a cut, `b` (twice: a second cut with nothing written in between changes nothing).
    let mut cw = tw.content_writer();
    for piece in a.chunks(4093) {
        cw.write_all(piece).unwrap();
    }
    cw.cut().unwrap();
    cw.cut().unwrap();
    for piece in b.chunks(10_007) {
        cw.write_all(piece).unwrap();
    }
    let joined = cw.finish().unwrap().named("p");
    assert_eq!(joined.size, (a.len() + b.len()) as u64);
    // `b` chunks exactly as it does standalone, and `a` as it does standalone.
    let alone_a = tw.write_part("a", &a).unwrap();
    let alone_b = tw.write_part("b", &b).unwrap();
    let want: Vec<Id> = alone_a
        .chunks
        .iter()
        .chain(&alone_b.chunks)
        .copied()
        .collect();
    assert_eq!(joined.chunks, want);
    // Without the cut, the stretch across the join is chunked differently.
    let mut plain = tw.content_writer();
    plain.write_all(&a).unwrap();
    plain.write_all(&b).unwrap();
    let plain = plain.finish().unwrap();
    assert_ne!(plain.chunks, want);
    tw.put_item(&Item {
        kind: "blob",
        id: "1",
        name: "",
        body: &json!({}),
        parts: vec![joined.clone()],
    })
    .unwrap();
    tw.finish(None).unwrap();
    w.commit(json!({})).unwrap();
    let r = t.reopen();
    let mut ab = a.clone();
    ab.extend_from_slice(&b);
    assert_eq!(read_back(&r, &joined), ab);
    check_ok(&r);
}

#[test]
fn chunking_by_content_type() {
    for ct in [
        "message/rfc822",
        "Message/RFC822; charset=utf-8",
        " message/global ",
    ] {
        assert_eq!(Chunking::for_content_type(ct), Chunking::Mime, "{ct}");
    }
    for ct in [
        "text/plain",
        "application/octet-stream",
        "",
        "multipart/mixed",
    ] {
        assert_eq!(
            Chunking::for_content_type(ct),
            Chunking::ContentDefined,
            "{ct}"
        );
    }
}

#[test]
fn a_shared_attachment_is_stored_once_across_differently_wrapped_messages() {
    let t = small_chunks();
    let attachment = base64_lines(&noise(7, 1_500_000));
    // Twenty messages: different senders, recipients, ids, boundaries and body texts (so the
    // attachment starts at a different offset in each), the same attachment.
    let messages: Vec<Vec<u8>> = (0..20)
        .map(|i| {
            let headers = format!(
                "From: Finance {i} <finance{i}@contoso.com>\r\nTo: user{i}@contoso.com\r\n\
                 Subject: Q4 figures{}\r\nMessage-ID: <q4-{i}@contoso.com>\r\n",
                " (again)".repeat(i % 4)
            );
            let text = format!("Figures attached.{}", " Thanks!".repeat(i * 3));
            message(
                &headers,
                &format!("_b{i}_{}", "x".repeat(i)),
                &text,
                &attachment,
            )
        })
        .collect();
    let w = SnapshotWriter::new(&t.repo, WriterOptions::default()).unwrap();
    let mut refs = Vec::new();
    let mut first_new = 0;
    for (i, m) in messages.iter().enumerate() {
        let before = w.stats().new_bytes;
        let blobs_before = w.stats().new_blobs;
        let tw = w
            .task(&format!("mail/mailbox/{i}"), TaskMode::Full)
            .unwrap();
        // Streamed in odd-sized pieces (as a download arrives) for odd mailboxes, in one
        // piece (an inline part) for even ones.
        let part = if i % 2 == 1 {
            let mut cw = tw.content_writer_with(Chunking::Mime);
            for piece in m.chunks(1000 + 37 * i) {
                cw.write_all(piece).unwrap();
            }
            cw.finish().unwrap().named("mime")
        } else {
            tw.write_part_with("mime", Chunking::Mime, m).unwrap()
        };
        tw.put_item(&Item {
            kind: "message",
            id: &format!("inbox/{i}"),
            name: "Q4 figures",
            body: &json!({"i": i}),
            parts: vec![part.clone()],
        })
        .unwrap();
        tw.finish(None).unwrap();
        let added = w.stats().new_bytes - before;
        if i == 0 {
            first_new = added;
            assert!(added as usize >= attachment.len(), "{added}");
        } else {
            // New: the message's header block, the text part's header and body, the
            // attachment part's header (its boundary differs), the closing boundary, the item
            // body and the task's tree (which lists every chunk id, ~70 bytes each).
            let blobs = w.stats().new_blobs - blobs_before;
            assert!(blobs <= 7, "message {i} added {blobs} new blobs");
            let limit = 1024 + 80 * part.chunks.len() as u64;
            assert!(
                added < limit,
                "message {i} added {added} new bytes (limit {limit}); the attachment should be shared"
            );
        }
        refs.push(part);
    }
    // The attachment's chunks are the same in every message.
    let common: Vec<&Id> = refs[0]
        .chunks
        .iter()
        .filter(|c| refs.iter().all(|r| r.chunks.contains(c)))
        .collect();
    assert!(
        common.len() >= refs[0].chunks.len() - 5,
        "{} of {} chunks in every message",
        common.len(),
        refs[0].chunks.len()
    );
    let total = w.stats().new_bytes;
    assert!(
        (total as f64) < first_new as f64 * 1.1,
        "20 copies stored {total} new bytes, one copy {first_new}"
    );
    let id = w.commit(json!({})).unwrap();
    // Every message reads back byte for byte.
    let r = t.reopen();
    let snap = r.snapshot(&id).unwrap();
    for (i, m) in messages.iter().enumerate() {
        let task = snap.task(&format!("mail/mailbox/{i}")).unwrap();
        let e = r
            .find_entry(task.tree, "message", &format!("inbox/{i}"))
            .unwrap()
            .unwrap();
        assert_eq!(e.parts[0].size, m.len() as u64);
        assert_eq!(&read_back(&r, &e.parts[0]), m, "message {i}");
    }
    check_ok(&r);
}

#[test]
fn content_defined_chunking_alone_pays_per_copy() {
    // The same messages with plain content-defined chunking: each copy costs at least the
    // chunk around its own headers (what MIME chunking removes).
    let t = small_chunks();
    let attachment = base64_lines(&noise(7, 600_000));
    let w = SnapshotWriter::new(&t.repo, WriterOptions::default()).unwrap();
    let tw = w.task("t", TaskMode::Full).unwrap();
    let m0 = message("To: a\r\n", "b0", "hi", &attachment);
    tw.write_part("mime", &m0).unwrap();
    let before = w.stats().new_bytes;
    let m1 = message("To: somebody else\r\nCc: c\r\n", "b1", "hello", &attachment);
    let cdc = tw.write_part("mime", &m1).unwrap();
    let cdc_added = w.stats().new_bytes - before;
    let before = w.stats().new_bytes;
    tw.write_part_with("mime", Chunking::Mime, &m0).unwrap();
    let mid = w.stats().new_bytes;
    let mime = tw.write_part_with("mime", Chunking::Mime, &m1).unwrap();
    let mime_added = w.stats().new_bytes - mid;
    assert!(mid > before, "MIME chunking of m0 makes new chunks");
    assert!(cdc_added >= 8 * 1024, "{cdc_added}");
    assert!(mime_added < 1024, "{mime_added}");
    assert_eq!(cdc.size, mime.size);
    tw.finish(None).unwrap();
}
