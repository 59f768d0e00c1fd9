//! Large attachments through Outlook upload sessions (§8,
//! https://learn.microsoft.com/graph/outlook-large-attachments): `createUploadSession`, the
//! pre-authenticated upload URL (no `Authorization`, `authtoken` checked, expiry), ranged PUTs
//! with 200/201 and the range errors, cancel, the finished attachment in the attachment list,
//! its `$value` and the message's MIME, and Outlook's per-mailbox limits on upload requests.

use crate::common;

use cairn_graph_sim::testkit::Client;
use cairn_graph_sim::util::{b64, pct_encode};
use cairn_graph_sim::{FaultKind, FaultRule, Profile, SimConfig, SimHandle};
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const MIME: &str = "From: Alex <alex@contoso.com>\r\nTo: Bo <bo@contoso.com>\r\nSubject: Big one\r\n\
Date: Tue, 3 Nov 2026 10:00:00 +0000\r\nMessage-ID: <big-1@contoso.com>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n\r\n\
Body text\r\n--b1\r\nContent-Type: text/plain; name=\"small.txt\"\r\n\
Content-Disposition: attachment; filename=\"small.txt\"\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--b1--\r\n";

const SINGLE: &str = "From: Alex <alex@contoso.com>\r\nTo: Bo <bo@contoso.com>\r\nSubject: Plain\r\n\
Date: Tue, 3 Nov 2026 10:00:00 +0000\r\nMessage-ID: <plain-1@contoso.com>\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=\"utf-8\"\r\nContent-Transfer-Encoding: 7bit\r\n\r\nJust text.\r\n";

fn first_mailbox(sim: &SimHandle) -> String {
    sim.with_tenant(|t| t.mail.boxes.keys().next().unwrap().clone())
}

/// Imports `mime` into the inbox; returns the message id (path-encoded).
async fn import(c: &mut Client, user: &str, mime: &str) -> String {
    let r = c
        .send(
            "POST",
            &format!("/v1.0/users/{user}/mailFolders/inbox/messages"),
            &[("Content-Type", "text/plain")],
            b64(mime.as_bytes()).as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    pct_encode(r.json()["id"].as_str().unwrap())
}

async fn session(c: &mut Client, user: &str, mid: &str, item: Value) -> (u16, Value) {
    let r = c
        .post_json(
            &format!("/v1.0/users/{user}/messages/{mid}/attachments/createUploadSession"),
            &json!({ "AttachmentItem": item }),
        )
        .await;
    (r.status, r.json())
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[tokio::test]
async fn a_large_attachment_is_uploaded_in_ranges_and_becomes_part_of_the_message() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let user = first_mailbox(&sim);
    let mid = import(&mut c, &user, MIME).await;

    // Under 3 MB: post it to /attachments instead.
    let (status, err) = session(
        &mut c,
        &user,
        &mid,
        json!({"attachmentType": "file", "name": "x", "size": 1000}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        err["error"]["code"],
        "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize"
    );

    let bytes = data(3 * 1024 * 1024 + 123_457);
    let size = bytes.len();
    let (status, s) = session(
        &mut c,
        &user,
        &mid,
        json!({"attachmentType": "file", "name": "photo.jpg", "size": size, "contentType": "image/jpeg", "isInline": true, "contentId": "img1@contoso"}),
    )
    .await;
    assert_eq!(status, 201, "{s}");
    assert_eq!(s["nextExpectedRanges"], json!(["0-"]));
    assert!(s["expirationDateTime"].as_str().unwrap().ends_with('Z'));
    let url = s["uploadUrl"].as_str().unwrap().to_string();
    assert!(url.contains("/api/v2.0/Users('"), "{url}");
    assert!(url.contains("/AttachmentSessions('"), "{url}");
    assert!(url.contains("?authtoken="), "{url}");

    // The upload URL takes no bearer token; its authtoken must match.
    let chunk = 2 * 1024 * 1024;
    let first = format!("bytes 0-{}/{size}", chunk - 1);
    let r = put_range(&mut c, &url, Some(first.clone()), &bytes[..chunk]).await;
    assert_eq!(r.status, 401, "a Graph token is refused: {}", r.text());
    let mut up = Client::new(&sim.base_url());
    let forged = url.replace("authtoken=", "authtoken=x");
    let r = put_range(&mut up, &forged, Some(first.clone()), &bytes[..chunk]).await;
    assert_eq!(r.status, 401);
    // Range errors.
    let r = put_range(&mut up, &url, None::<&str>, &bytes[..chunk]).await;
    assert_eq!(r.status, 400, "Content-Range is required");
    let r = put_range(
        &mut up,
        &url,
        Some(format!("bytes 0-{}/{}", chunk - 1, size + 1)),
        &bytes[..chunk],
    )
    .await;
    assert_eq!(r.status, 400, "the total must be the session's size");
    let r = put_range(
        &mut up,
        &url,
        Some(format!("bytes 0-{}/{size}", chunk)),
        &bytes[..chunk],
    )
    .await;
    assert_eq!(r.status, 400, "the range must match the body");
    let r = put_range(
        &mut up,
        &url,
        Some(format!("bytes {chunk}-{}/{size}", size - 1)),
        &bytes[chunk..],
    )
    .await;
    assert_eq!(r.status, 416, "bytes go in order: {}", r.text());
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("starts at 0"));

    // In order: 200 with the next start, then 201 with the attachment's Location.
    let r = put_range(&mut up, &url, Some(first), &bytes[..chunk]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["nextExpectedRanges"], json!([chunk.to_string()]));
    assert!(r.json()["ExpirationDateTime"].is_string());
    let r = put_range(
        &mut up,
        &url,
        Some(format!("bytes {chunk}-{}/{size}", size - 1)),
        &bytes[chunk..],
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(r.body.is_empty());
    let location = r.header("location").unwrap().to_string();
    assert!(location.contains("/Attachments('"), "{location}");
    // The session is gone.
    let r = put_range(
        &mut up,
        &url,
        Some(format!("bytes 0-0/{size}")),
        &bytes[..1],
    )
    .await;
    assert_eq!(r.status, 404);

    // The attachment: listed, contentBytes and $value equal, in the MIME.
    let atts = c
        .get(&format!("/v1.0/users/{user}/messages/{mid}/attachments"))
        .await
        .json();
    let list = atts["value"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{atts}");
    assert_eq!(list[0]["name"], "small.txt");
    let big = &list[1];
    assert_eq!(big["name"], "photo.jpg");
    assert_eq!(big["contentType"], "image/jpeg");
    assert_eq!(big["isInline"], true);
    assert_eq!(big["contentId"], "img1@contoso");
    assert_eq!(big["size"], json!(size));
    assert_eq!(big["contentBytes"].as_str().unwrap(), b64(&bytes));
    let aid = big["id"].as_str().unwrap();
    assert!(location.contains(aid), "{location} names {aid}");
    let raw = c
        .get(&format!(
            "/v1.0/users/{user}/messages/{mid}/attachments/{}/$value",
            pct_encode(aid)
        ))
        .await;
    assert_eq!(raw.body, bytes);
    let mime = c
        .get(&format!("/v1.0/users/{user}/messages/{mid}/$value"))
        .await
        .text();
    assert!(
        mime.starts_with(&MIME[..MIME.find("--b1--").unwrap()]),
        "headers, body and the first parts stay as imported"
    );
    assert!(mime.contains("Content-ID: <img1@contoso>"));
    assert!(mime.contains("Content-Disposition: inline; filename=\"photo.jpg\""));
    assert!(mime.trim_end().ends_with("--b1--"));
    let parsed = cairn_graph_sim::mail::parse_mime(&mime);
    assert_eq!(parsed.body, "Body text");
    assert_eq!(parsed.attachments.len(), 2);
    assert_eq!(parsed.attachments[1].bytes, bytes);
    assert_eq!(
        parsed.attachments[1].content_id.as_deref(),
        Some("img1@contoso")
    );
    assert!(parsed.attachments[1].inline);
    let m = c
        .get(&format!(
            "/v1.0/users/{user}/messages/{mid}?$select=hasAttachments,subject"
        ))
        .await
        .json();
    assert_eq!(m["hasAttachments"], true);
    assert_eq!(m["subject"], "Big one");
}

#[tokio::test]
async fn a_single_part_message_is_wrapped_and_sessions_expire_and_cancel() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let user = first_mailbox(&sim);
    let mid = import(&mut c, &user, SINGLE).await;
    let bytes = data(3 * 1024 * 1024);
    let item = json!({"attachmentType": "file", "name": "report.pdf", "size": bytes.len(), "contentType": "application/pdf"});
    let mut up = Client::new(&sim.base_url());

    // Cancel: 204, then the URL is gone.
    let (_, s) = session(&mut c, &user, &mid, item.clone()).await;
    let url = s["uploadUrl"].as_str().unwrap().to_string();
    let r = up.send("DELETE", &url, &[], &[]).await.unwrap();
    assert_eq!(r.status, 204);
    let r = put_range(
        &mut up,
        &url,
        Some(format!("bytes 0-9/{}", bytes.len())),
        &bytes[..10],
    )
    .await;
    assert_eq!(r.status, 404);

    // Expiry: a session past its expirationDateTime is 404.
    let (_, s) = session(&mut c, &user, &mid, item.clone()).await;
    let url = s["uploadUrl"].as_str().unwrap().to_string();
    let r = put_range(
        &mut up,
        &url,
        Some(format!("bytes 0-9/{}", bytes.len())),
        &bytes[..10],
    )
    .await;
    assert_eq!(r.status, 200);
    sim.advance_clock(Duration::from_secs(16 * 60));
    let r = put_range(
        &mut up,
        &url,
        Some(format!("bytes 10-19/{}", bytes.len())),
        &bytes[10..20],
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text());

    // One PUT of the whole file: the single-part message becomes multipart/mixed.
    let (_, s) = session(&mut c, &user, &mid, item).await;
    let url = s["uploadUrl"].as_str().unwrap().to_string();
    let r = put_range(
        &mut up,
        &url,
        Some(format!("bytes 0-{}/{}", bytes.len() - 1, bytes.len())),
        &bytes,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let mime = c
        .get(&format!("/v1.0/users/{user}/messages/{mid}/$value"))
        .await
        .text();
    assert!(mime.contains("Subject: Plain\r\n"));
    assert!(mime.contains("Message-ID: <plain-1@contoso.com>\r\n"));
    let parsed = cairn_graph_sim::mail::parse_mime(&mime);
    assert_eq!(parsed.body, "Just text.");
    assert_eq!(parsed.attachments.len(), 1);
    assert_eq!(parsed.attachments[0].name, "report.pdf");
    assert_eq!(parsed.attachments[0].content_type, "application/pdf");
    assert_eq!(parsed.attachments[0].bytes, bytes);
}

/// What a client recovering from a lost answer relies on (§8: no status read of Outlook
/// sessions): a `dropAnswer` on an upload `PUT` takes the bytes; the range sent again is 416;
/// `DELETE` cancels (later `PUT`s 404, a second `DELETE` 404); a lost answer to the last range
/// leaves the attachment made (the range sent again is 404) and listed with its name and size.
#[tokio::test]
async fn a_lost_upload_answer_leaves_the_bytes_taken_and_a_lost_last_answer_the_attachment() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let user = first_mailbox(&sim);
    let mid = import(&mut c, &user, SINGLE).await;
    let bytes = data(3 * 1024 * 1024 + 1000);
    let size = bytes.len();
    let half = size / 2;
    let item = json!({"attachmentType": "file", "name": "deck.pptx", "size": size});
    let range = |a: usize, b: usize| format!("bytes {a}-{}/{size}", b - 1);
    let lose_next_put = || {
        sim.add_fault(
            FaultRule::new("*/AttachmentSessions(*", FaultKind::DropAnswer)
                .method("PUT")
                .times(1),
        )
    };

    // The first range's answer lost: taken all the same.
    let (_, s) = session(&mut c, &user, &mid, item.clone()).await;
    let url = s["uploadUrl"].as_str().unwrap().to_string();
    lose_next_put();
    let lost = Client::new(&sim.base_url())
        .send(
            "PUT",
            &url,
            &[("Content-Range", &range(0, half))],
            &bytes[..half],
        )
        .await;
    assert!(lost.is_err(), "the answer is dropped: {lost:?}");
    let mut up = Client::new(&sim.base_url());
    let again = put_range(&mut up, &url, Some(range(0, half)), &bytes[..half]).await;
    assert_eq!(again.status, 416, "{}", again.text());
    // Cancelled: the URL is gone.
    assert_eq!(up.send("DELETE", &url, &[], &[]).await.unwrap().status, 204);
    let r = put_range(&mut up, &url, Some(range(half, size)), &bytes[half..]).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(up.send("DELETE", &url, &[], &[]).await.unwrap().status, 404);

    // The last range's answer lost: the attachment is made.
    let (_, s) = session(&mut c, &user, &mid, item).await;
    let url = s["uploadUrl"].as_str().unwrap().to_string();
    let r = put_range(&mut up, &url, Some(range(0, half)), &bytes[..half]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    lose_next_put();
    let lost = Client::new(&sim.base_url())
        .send(
            "PUT",
            &url,
            &[("Content-Range", &range(half, size))],
            &bytes[half..],
        )
        .await;
    assert!(lost.is_err(), "the answer is dropped: {lost:?}");
    let mut up = Client::new(&sim.base_url());
    let again = put_range(&mut up, &url, Some(range(half, size)), &bytes[half..]).await;
    assert_eq!(again.status, 404, "the session ended: {}", again.text());
    assert_eq!(up.send("DELETE", &url, &[], &[]).await.unwrap().status, 404);
    let list = c
        .get(&format!(
            "/v1.0/users/{user}/messages/{mid}/attachments?$select=id,name,size,contentType,isInline"
        ))
        .await
        .json();
    let list = list["value"].as_array().unwrap();
    assert_eq!(
        list.len(),
        1,
        "one attachment, the cancelled session left none: {list:?}"
    );
    assert_eq!(list[0]["name"], "deck.pptx");
    assert_eq!(list[0]["size"], json!(size));
    assert!(list[0].get("contentBytes").is_none());
    let raw = c
        .get(&format!(
            "/v1.0/users/{user}/messages/{mid}/attachments/{}/$value",
            pct_encode(list[0]["id"].as_str().unwrap())
        ))
        .await;
    assert_eq!(raw.body, bytes);
}

#[tokio::test]
async fn upload_requests_count_against_the_mailbox_outlook_limits() {
    let mut cfg = SimConfig::new(Profile::Small, 7).with_throttling(true);
    cfg.throttle.mailbox_requests_per_10min = 4;
    let sim = start_with(cfg).await;
    let mut c = client(&sim).await;
    let user = first_mailbox(&sim);
    let mid = import(&mut c, &user, MIME).await; // 1
    let bytes = data(3 * 1024 * 1024);
    let (status, s) = session(
        &mut c,
        &user,
        &mid,
        json!({"attachmentType": "file", "name": "a.bin", "size": bytes.len()}),
    )
    .await; // 2
    assert_eq!(status, 201);
    let url = s["uploadUrl"].as_str().unwrap().to_string();
    let mut up = Client::new(&sim.base_url());
    let total = bytes.len();
    for (i, range) in [(0usize, 1_000_000usize), (1_000_000, 2_000_000)]
        .into_iter()
        .enumerate()
    {
        let r = put_range(
            &mut up,
            &url,
            Some(format!("bytes {}-{}/{total}", range.0, range.1 - 1)),
            &bytes[range.0..range.1],
        )
        .await; // 3, 4
        assert_eq!(r.status, 200, "PUT {i}: {}", r.text());
    }
    let r = put_range(
        &mut up,
        &url,
        Some(format!("bytes 2000000-{}/{total}", total - 1)),
        &bytes[2_000_000..],
    )
    .await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "ApplicationThrottled");
    assert!(r.header("retry-after").is_some());
    // Another mailbox is not affected.
    let other = sim.with_tenant(|t| t.mail.boxes.keys().nth(1).unwrap().clone());
    let r = c.get(&format!("/v1.0/users/{other}/mailFolders")).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn uploads_count_against_the_mailbox_upload_volume_limit() {
    let mut cfg = SimConfig::new(Profile::Small, 7).with_throttling(true);
    cfg.throttle.mailbox_upload_bytes_per_5min = 5 * 1024 * 1024;
    let sim = start_with(cfg).await;
    let mut c = client(&sim).await;
    let user = first_mailbox(&sim);
    let mid = import(&mut c, &user, MIME).await;
    let bytes = data(3 * 1024 * 1024);
    let total = bytes.len();
    let (_, s) = session(
        &mut c,
        &user,
        &mid,
        json!({"attachmentType": "file", "name": "a.bin", "size": total}),
    )
    .await;
    let url = s["uploadUrl"].as_str().unwrap().to_string();
    let mut up = Client::new(&sim.base_url());
    let half = total / 2;
    let r = put_range(
        &mut up,
        &url,
        Some(format!("bytes 0-{}/{total}", half - 1)),
        &bytes[..half],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = put_range(
        &mut up,
        &url,
        Some(format!("bytes {half}-{}/{total}", total - 1)),
        &bytes[half..],
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    // 3 MiB of 5 MiB used: another 3 MiB upload to the same mailbox is refused for a while.
    let (_, s) = session(
        &mut c,
        &user,
        &mid,
        json!({"attachmentType": "file", "name": "b.bin", "size": total}),
    )
    .await;
    let url = s["uploadUrl"].as_str().unwrap().to_string();
    let r = put_range(
        &mut up,
        &url,
        Some(format!("bytes 0-{}/{total}", total - 1)),
        &bytes,
    )
    .await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("MailboxUploadSize"));
    let wait: f64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(wait > 1.0, "{wait}");
}
