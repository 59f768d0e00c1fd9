//! Mail parts added for backup and restore (§8): MIME import kept byte for byte, the 4 MB
//! request limit, `$filter` on `internetMessageId`, single-value extended properties
//! (`PR_MESSAGE_SIZE`, `PR_MESSAGE_FLAGS` on create), malformed MIME, per-mailbox limits with
//! `ApplicationThrottled`, injected errors, and mail churn.

use crate::common;

use cairn_graph_sim::mail;
use cairn_graph_sim::testkit::Client;
use cairn_graph_sim::util::{b64, pct_encode};
use cairn_graph_sim::{FaultKind, FaultRule, Profile, SimConfig};
use common::*;
use serde_json::{json, Value};

fn first_mailbox(sim: &cairn_graph_sim::SimHandle) -> String {
    sim.with_tenant(|t| t.mail.boxes.keys().next().unwrap().clone())
}

async fn post_mime(c: &mut Client, user: &str, folder: &str, mime: &[u8]) -> (u16, Value) {
    let r = c
        .send(
            "POST",
            &format!("/v1.0/users/{user}/mailFolders/{folder}/messages"),
            &[("Content-Type", "text/plain")],
            b64(mime).as_bytes(),
        )
        .await
        .unwrap();
    let status = r.status;
    (status, r.json())
}

const MIME: &str = "From: Alex <alex@contoso.com>\r\nTo: Bo <bo@contoso.com>\r\nSubject: Restored\r\n\
Date: Tue, 3 Nov 2026 10:00:00 +0000\r\nMessage-ID: <restore-1@contoso.com>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n\r\n\
Body text\r\n--b1\r\nContent-Type: application/octet-stream; name=\"a.bin\"\r\n\
Content-Disposition: attachment; filename=\"a.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQ=\r\n--b1--\r\n";

#[tokio::test]
async fn mime_import_is_kept_byte_for_byte_and_found_by_internet_message_id() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let user = first_mailbox(&sim);
    let (status, created) = post_mime(&mut c, &user, "inbox", MIME.as_bytes()).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["isDraft"], true,
        "Graph creates MIME imports as drafts"
    );
    assert_eq!(created["internetMessageId"], "<restore-1@contoso.com>");
    assert_eq!(created["hasAttachments"], true);
    let id = pct_encode(created["id"].as_str().unwrap());
    let value = c
        .get(&format!("/v1.0/users/{user}/messages/{id}/$value"))
        .await;
    assert_eq!(
        value.text(),
        MIME,
        "$value returns the imported MIME verbatim"
    );
    // State-only PATCHes keep the MIME; content changes regenerate it.
    let r = c
        .patch_json(
            &format!("/v1.0/users/{user}/messages/{id}"),
            &json!({"isRead": false, "categories": ["Red"], "flag": {"flagStatus": "flagged"}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let value = c
        .get(&format!("/v1.0/users/{user}/messages/{id}/$value"))
        .await;
    assert_eq!(value.text(), MIME);
    // $filter on internetMessageId.
    let filter = pct_encode("internetMessageId eq '<restore-1@contoso.com>'");
    let found = c
        .get(&format!(
            "/v1.0/users/{user}/mailFolders/inbox/messages?$filter={filter}&$select=id"
        ))
        .await
        .json();
    let hits = found["value"].as_array().unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["id"], created["id"]);
    let none = c
        .get(&format!(
            "/v1.0/users/{user}/mailFolders/drafts/messages?$filter={filter}"
        ))
        .await
        .json();
    assert_eq!(none["value"].as_array().unwrap().len(), 0);
    let bad = c
        .get(&format!(
            "/v1.0/users/{user}/messages?$filter={}",
            pct_encode("subject eq 'x'")
        ))
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["code"], "ErrorInvalidUrlQueryFilter");
}

#[tokio::test]
async fn extended_properties_size_and_flags() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let user = first_mailbox(&sim);
    let (_, created) = post_mime(&mut c, &user, "inbox", MIME.as_bytes()).await;
    let id = pct_encode(created["id"].as_str().unwrap());
    let expand = pct_encode(
        "singleValueExtendedProperties($filter=id eq 'Integer 0x0E08' or id eq 'Integer 0x0e07')",
    );
    let m = c
        .get(&format!(
            "/v1.0/users/{user}/messages/{id}?$select=subject&$expand={expand}"
        ))
        .await
        .json();
    let props = m["singleValueExtendedProperties"].as_array().unwrap();
    assert_eq!(
        props,
        &vec![
            json!({"id": "Integer 0x0E08", "value": MIME.len().to_string()}),
            json!({"id": "Integer 0x0E07", "value": "9"}),
        ],
        "size is the MIME's length; flags = read (1) + unsent (8)"
    );
    // Message delta expands too.
    let d = c
        .get(&format!(
            "/v1.0/users/{user}/mailFolders/inbox/messages/delta?$select=id&$expand={expand}"
        ))
        .await
        .json();
    assert!(d["value"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["singleValueExtendedProperties"][0]["id"] == "Integer 0x0E08"));
    // PR_MESSAGE_FLAGS on a JSON create: read, not a draft.
    let r = c
        .post_json(
            &format!("/v1.0/users/{user}/mailFolders/inbox/messages"),
            &json!({"subject": "JSON import", "body": {"contentType": "text", "content": "hi"},
                    "singleValueExtendedProperties": [{"id": "Integer 0x0E07", "value": "1"}]}),
        )
        .await;
    assert_eq!(r.status, 201);
    let j = r.json();
    assert_eq!(j["isDraft"], false);
    assert_eq!(j["isRead"], true);
}

#[tokio::test]
async fn request_limit_malformed_mime_and_direct_delivery() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let user = first_mailbox(&sim);
    // Over 4 MB: 413.
    let big = format!(
        "Subject: big\r\nMessage-ID: <big@x>\r\n\r\n{}",
        "x".repeat(mail::MAX_REQUEST_BYTES)
    );
    let (status, body) = post_mime(&mut c, &user, "inbox", big.as_bytes()).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "ErrorRequestEntityTooLarge");
    // No header block at all: refused.
    let (status, body) = post_mime(&mut c, &user, "inbox", b"\r\n\r\njust text").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "ErrorMimeContentInvalid");
    // Delivered directly (SMTP): a large message, and a malformed multipart one whose MIME
    // Exchange cannot convert back.
    let large = format!(
        "Subject: large\r\nMessage-ID: <large@x>\r\nContent-Type: text/plain\r\n\r\n{}\r\n",
        "y".repeat(5 * 1024 * 1024)
    );
    let large_id = sim
        .with_tenant(|t| mail::insert_mime(t, &user, "inbox", &large))
        .unwrap();
    let broken = "Subject: broken\r\nMessage-ID: <broken@x>\r\nContent-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\nno end\r\n";
    let broken_id = sim
        .with_tenant(|t| mail::insert_mime(t, &user, "inbox", broken))
        .unwrap();
    let v = c
        .get(&format!(
            "/v1.0/users/{user}/messages/{}/$value",
            pct_encode(&large_id)
        ))
        .await;
    assert_eq!(v.status, 200);
    assert_eq!(v.text(), large);
    let v = c
        .get(&format!(
            "/v1.0/users/{user}/messages/{}/$value",
            pct_encode(&broken_id)
        ))
        .await;
    assert_eq!(v.status, 400);
    assert_eq!(
        v.json()["error"]["code"],
        "ErrorMimeContentConversionFailed"
    );
    let m = c
        .get(&format!(
            "/v1.0/users/{user}/messages/{}",
            pct_encode(&broken_id)
        ))
        .await
        .json();
    assert_eq!(m["subject"], "broken", "the message itself reads fine");
    assert_eq!(m["isDraft"], false, "delivered mail is not a draft");
}

#[tokio::test]
async fn mailbox_concurrency_and_request_limits_answer_application_throttled() {
    let mut cfg = SimConfig::new(Profile::Small, 7).with_throttling(true);
    cfg.throttle.mailbox_requests_per_10min = 5;
    let sim = start_with(cfg).await;
    let mut c = client(&sim).await;
    let (a, b) = sim.with_tenant(|t| {
        let mut k = t.mail.boxes.keys();
        (k.next().unwrap().clone(), k.next().unwrap().clone())
    });
    let mut statuses = vec![];
    for _ in 0..7 {
        statuses.push(c.get(&format!("/v1.0/users/{a}/mailFolders")).await);
    }
    let throttled: Vec<_> = statuses.iter().filter(|r| r.status == 429).collect();
    assert_eq!(throttled.len(), 2, "10k/10min scaled to 5");
    assert_eq!(throttled[0].json()["error"]["code"], "ApplicationThrottled");
    assert!(throttled[0].header("retry-after").is_some());
    // Another mailbox is not affected.
    assert_eq!(
        c.get(&format!("/v1.0/users/{b}/mailFolders")).await.status,
        200
    );
}

#[tokio::test]
async fn injected_errors_and_mail_churn() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let user = first_mailbox(&sim);
    sim.add_fault(
        FaultRule::new(
            &format!("/v1.0/users/{user}/messages/*/$value"),
            FaultKind::Error {
                status: 404,
                code: "ErrorItemNotFound".into(),
                message: String::new(),
            },
        )
        .times(1),
    );
    let msgs = c
        .get(&format!("/v1.0/users/{user}/messages?$select=id"))
        .await
        .json();
    let id = pct_encode(msgs["value"][0]["id"].as_str().unwrap());
    let r = c
        .get(&format!("/v1.0/users/{user}/messages/{id}/$value"))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "ErrorItemNotFound");
    let r = c
        .get(&format!("/v1.0/users/{user}/messages/{id}/$value"))
        .await;
    assert_eq!(r.status, 200, "the rule fired once");

    let total = |sim: &cairn_graph_sim::SimHandle| {
        sim.with_tenant(|t| {
            t.mail
                .boxes
                .values()
                .map(|b| b.messages.values().filter(|m| !m.deleted).count())
                .sum::<usize>()
        })
    };
    let before = total(&sim);
    let (changed, deleted, added) = sim.with_tenant(|t| mail::churn(t, 10.0, 1));
    assert!(changed + deleted + added > 0);
    assert_eq!(total(&sim), before - deleted + added);
}
