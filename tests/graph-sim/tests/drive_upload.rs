//! Drive uploads (§8, https://learn.microsoft.com/graph/api/driveitem-createuploadsession and
//! driveitem-put-content): `@microsoft.graph.conflictBehavior` on a simple upload and on folder
//! creation, path addressing (`root:/a/b`, `items/{id}:/name:/…`), and upload sessions — the
//! pre-authenticated SharePoint upload URL (no `Authorization`, `tempauth` checked), ranged PUTs
//! with 202 + `nextExpectedRanges` and 201 with the driveItem at the end, 416 on a wrong range,
//! 320 KiB fragments, a name taken meanwhile (409), status, cancel and expiry, and SharePoint
//! resource units for the upload URL.

use crate::common;

use cairn_graph_sim::testkit::{Client, HttpResponse};
use cairn_graph_sim::util::pct_encode;
use cairn_graph_sim::{FaultKind, FaultRule, Profile, SimHandle};
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const UNIT: usize = 320 * 1024;

/// A drive with a top-level folder: (drive id, folder id, folder name).
fn drive_and_folder(sim: &SimHandle) -> (String, String, String) {
    sim.with_tenant(|t| {
        let d = t.drives.drives.values().next().unwrap();
        let f = d
            .items
            .values()
            .find(|i| i.folder && i.parent.as_deref() == Some(d.root.as_str()))
            .unwrap();
        (d.id.clone(), f.id.clone(), f.name.clone())
    })
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + i / 977) as u8).collect()
}

/// The live file `name` in folder `parent`: (id, content).
fn file_in(sim: &SimHandle, drive: &str, parent: &str, name: &str) -> Option<(String, Vec<u8>)> {
    sim.with_tenant(|t| {
        t.drives.drives[drive]
            .items
            .values()
            .find(|i| !i.deleted && i.parent.as_deref() == Some(parent) && i.name == name)
            .map(|i| (i.id.clone(), i.content.clone()))
    })
}

#[tokio::test]
async fn simple_uploads_and_folders_honour_the_conflict_behaviour_and_paths_resolve() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let (drive, folder, fname) = drive_and_folder(&sim);
    let put = |name: &str, conflict: Option<&str>| {
        let q = conflict
            .map(|b| format!("?@microsoft.graph.conflictBehavior={b}"))
            .unwrap_or_default();
        format!(
            "/v1.0/drives/{drive}/items/{folder}:/{}:/content{q}",
            pct_encode(name)
        )
    };
    let r = c
        .send(
            "PUT",
            &put("Notes 1.txt", Some("fail")),
            &[("Content-Type", "text/plain")],
            b"one",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let first = r.json();
    assert_eq!(first["name"], "Notes 1.txt");
    // `fail`: the name is taken, nothing changes.
    let r = c
        .send("PUT", &put("notes 1.TXT", Some("fail")), &[], b"two")
        .await
        .unwrap();
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "nameAlreadyExists");
    assert_eq!(
        file_in(&sim, &drive, &folder, "Notes 1.txt").unwrap().1,
        b"one"
    );
    // `rename`: a free name beside it.
    let r = c
        .send("PUT", &put("Notes 1.txt", Some("rename")), &[], b"three")
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["name"], "Notes 1 1.txt");
    // Default (`replace`): the same item, new content.
    let r = c
        .send("PUT", &put("Notes 1.txt", None), &[], b"four")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["id"], first["id"]);
    assert_eq!(
        file_in(&sim, &drive, &folder, "Notes 1.txt").unwrap().1,
        b"four"
    );
    let r = c
        .send("PUT", &put("x.txt", Some("sideways")), &[], b"")
        .await
        .unwrap();
    assert_eq!(r.status, 400);

    // Path addressing: root:/folder/name, with and without the closing colon, and children.
    let by_path = c
        .get(&format!(
            "/v1.0/drives/{drive}/root:/{}/Notes%201.txt",
            pct_encode(&fname)
        ))
        .await;
    assert_eq!(by_path.status, 200, "{}", by_path.text());
    assert_eq!(by_path.json()["id"], first["id"]);
    assert!(by_path.json()["file"]["hashes"]["sha256Hash"].is_string());
    let relative = c
        .get(&format!(
            "/v1.0/drives/{drive}/items/{folder}:/Notes%201.txt:"
        ))
        .await;
    assert_eq!(relative.json()["id"], first["id"]);
    let kids = c
        .get(&format!(
            "/v1.0/drives/{drive}/root:/{}:/children",
            pct_encode(&fname)
        ))
        .await
        .json();
    assert!(kids["value"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["id"] == first["id"]));
    let missing = c
        .get(&format!(
            "/v1.0/drives/{drive}/root:/No%20such/Notes%201.txt"
        ))
        .await;
    assert_eq!(missing.status, 404);
    // A simple upload into a folder that does not exist is 404.
    let r = c
        .send(
            "PUT",
            &format!("/v1.0/drives/{drive}/root:/No%20such/a.txt:/content"),
            &[],
            b"x",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 404);

    // Folders: `fail` by default (409 on a taken name), `rename` on request.
    let children = format!("/v1.0/drives/{drive}/items/{folder}/children");
    let made = c
        .post_json(
            &children,
            &json!({"name": "Q1", "folder": {}, "@microsoft.graph.conflictBehavior": "fail"}),
        )
        .await;
    assert_eq!(made.status, 201);
    let again = c
        .post_json(&children, &json!({"name": "q1", "folder": {}}))
        .await;
    assert_eq!(again.status, 409);
    let renamed = c
        .post_json(
            &children,
            &json!({"name": "Q1", "folder": {}, "@microsoft.graph.conflictBehavior": "rename"}),
        )
        .await;
    assert_eq!(renamed.status, 201);
    assert_eq!(renamed.json()["name"], "Q1 1");
}

async fn create_session(
    c: &mut Client,
    drive: &str,
    folder: &str,
    name: &str,
    conflict: &str,
) -> HttpResponse {
    c.post_json(
        &format!(
            "/v1.0/drives/{drive}/items/{folder}:/{}:/createUploadSession",
            pct_encode(name)
        ),
        &json!({"item": {"@microsoft.graph.conflictBehavior": conflict, "name": name}}),
    )
    .await
}

#[tokio::test]
async fn a_large_file_goes_up_through_an_upload_session_in_ranges() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let (drive, folder, _) = drive_and_folder(&sim);
    let size = 2 * 4 * UNIT + 12_345;
    let bytes = data(size);
    sim.reset_stats();
    let s = create_session(&mut c, &drive, &folder, "Big.bin", "fail").await;
    assert_eq!(s.status, 200, "{}", s.text());
    let s = s.json();
    let url = s["uploadUrl"].as_str().unwrap().to_string();
    assert!(s["expirationDateTime"].is_string());
    // SharePoint's shape: the site's path, `_api/v2.0`, a guid and a tempauth.
    assert!(url.contains("/_api/v2.0/drives/"), "{url}");
    assert!(url.contains("/uploadSession?guid='"), "{url}");
    assert!(url.contains("&tempauth="), "{url}");

    // Pre-authenticated: a bearer token is refused, a wrong tempauth too.
    let first = &bytes[..4 * UNIT];
    let range0 = format!("bytes 0-{}/{size}", 4 * UNIT - 1);
    let r = put_range(&mut c, &url, Some(&range0), first).await;
    assert_eq!(
        r.status,
        401,
        "a Graph token is not valid there: {}",
        r.text()
    );
    let mut up = Client::new(&sim.base_url());
    let forged = format!("{}x", url);
    assert_eq!(
        put_range(&mut up, &forged, Some(&range0), first)
            .await
            .status,
        401
    );

    // Fragments: not a multiple of 320 KiB (400), out of order (416), then in order (202).
    let r = put_range(
        &mut up,
        &url,
        Some(&format!("bytes 0-99/{size}")),
        &bytes[..100],
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = put_range(
        &mut up,
        &url,
        Some(&format!("bytes {}-{}/{size}", 4 * UNIT, 8 * UNIT - 1)),
        &bytes[4 * UNIT..8 * UNIT],
    )
    .await;
    assert_eq!(r.status, 416, "{}", r.text());
    let r = put_range(&mut up, &url, Some(&range0), first).await;
    assert_eq!(r.status, 202, "{}", r.text());
    let expected = format!("{}-{}", 4 * UNIT, size - 1);
    assert_eq!(r.json()["nextExpectedRanges"], json!([expected]));
    // The same range again overlaps what was received: 416.
    assert_eq!(
        put_range(&mut up, &url, Some(&range0), first).await.status,
        416
    );
    // A total other than the file's is 400.
    let r = put_range(
        &mut up,
        &url,
        Some(&format!("bytes {}-{}/{}", 4 * UNIT, 8 * UNIT - 1, size + 1)),
        &bytes[4 * UNIT..8 * UNIT],
    )
    .await;
    assert_eq!(r.status, 400);
    // Status: where the session stands; nothing is in the drive yet.
    let st = up.get(&url).await;
    assert_eq!(st.status, 200);
    assert_eq!(st.json()["nextExpectedRanges"], json!([expected]));
    assert!(file_in(&sim, &drive, &folder, "Big.bin").is_none());

    let r = put_range(
        &mut up,
        &url,
        Some(&format!("bytes {}-{}/{size}", 4 * UNIT, 8 * UNIT - 1)),
        &bytes[4 * UNIT..8 * UNIT],
    )
    .await;
    assert_eq!(r.status, 202);
    let r = put_range(
        &mut up,
        &url,
        Some(&format!("bytes {}-{}/{size}", 8 * UNIT, size - 1)),
        &bytes[8 * UNIT..],
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let item: Value = r.json();
    assert_eq!(item["name"], "Big.bin");
    assert_eq!(item["size"], json!(size));
    let (id, content) = file_in(&sim, &drive, &folder, "Big.bin").unwrap();
    assert_eq!(item["id"], id.as_str());
    assert_eq!(content, bytes);
    // The session is over.
    assert_eq!(up.get(&url).await.status, 404);
    // The upload URL's requests are SharePoint's: 2 RU a write (the createUploadSession POST
    // and 8 PUTs that reached the session, refused ones included), 1 a status read (2 GETs).
    // The PUT with a bearer token never reached it.
    let st = sim.stats();
    assert_eq!(st.sharepoint_ru_spent, 2 + 8 * 2 + 2, "{st:?}");

    // `fail` on a taken name: refused at once.
    let s = create_session(&mut c, &drive, &folder, "big.BIN", "fail").await;
    assert_eq!(s.status, 409);
    // `replace` (a new version): 200 with the same item at the end.
    let s = create_session(&mut c, &drive, &folder, "Big.bin", "replace").await;
    let url = s.json()["uploadUrl"].as_str().unwrap().to_string();
    let r = put_range(&mut up, &url, Some("bytes 0-2/3"), b"new").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["id"], id.as_str());
}

#[tokio::test]
async fn sessions_end_by_conflict_cancel_or_expiry() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let mut up = Client::new(&sim.base_url());
    let (drive, folder, _) = drive_and_folder(&sim);
    let bytes = data(UNIT + 10);
    let size = bytes.len();

    // A file of the name appears while the session runs: the last byte gets 409, and the
    // file that appeared keeps its content.
    let s = create_session(&mut c, &drive, &folder, "Race.bin", "fail").await;
    let url = s.json()["uploadUrl"].as_str().unwrap().to_string();
    let r = put_range(
        &mut up,
        &url,
        Some(&format!("bytes 0-{}/{size}", UNIT - 1)),
        &bytes[..UNIT],
    )
    .await;
    assert_eq!(r.status, 202);
    let r = c
        .send(
            "PUT",
            &format!("/v1.0/drives/{drive}/items/{folder}:/Race.bin:/content"),
            &[],
            b"theirs",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    let r = put_range(
        &mut up,
        &url,
        Some(&format!("bytes {UNIT}-{}/{size}", size - 1)),
        &bytes[UNIT..],
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(
        file_in(&sim, &drive, &folder, "Race.bin").unwrap().1,
        b"theirs"
    );

    // Cancelled: 204, then 404; no file.
    let s = create_session(&mut c, &drive, &folder, "Cancelled.bin", "fail").await;
    let url = s.json()["uploadUrl"].as_str().unwrap().to_string();
    let r = put_range(
        &mut up,
        &url,
        Some(&format!("bytes 0-{}/{size}", UNIT - 1)),
        &bytes[..UNIT],
    )
    .await;
    assert_eq!(r.status, 202);
    assert_eq!(up.delete(&url).await.status, 204);
    assert_eq!(up.get(&url).await.status, 404);
    assert!(file_in(&sim, &drive, &folder, "Cancelled.bin").is_none());

    // Expired: 404 itemNotFound.
    let s = create_session(&mut c, &drive, &folder, "Late.bin", "fail").await;
    let url = s.json()["uploadUrl"].as_str().unwrap().to_string();
    sim.advance_clock(Duration::from_secs(2 * 3600));
    let r = put_range(
        &mut up,
        &url,
        Some(&format!("bytes 0-{}/{size}", size - 1)),
        &bytes,
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "itemNotFound");
    assert!(file_in(&sim, &drive, &folder, "Late.bin").is_none());
}

/// Resuming (https://learn.microsoft.com/graph/api/driveitem-createuploadsession#resuming-an-in-progress-upload):
/// a `dropAnswer` fault takes a range and drops the connection instead of the 202; the status
/// read names the range after it, the same range again is 416 with Graph's error body, the
/// upload goes on from the status, and the session's log shows each range taken once.
#[tokio::test]
async fn a_range_whose_answer_was_lost_was_taken_and_the_status_says_what_is_next() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let mut up = Client::new(&sim.base_url());
    let (drive, folder, _) = drive_and_folder(&sim);
    let size = 3 * UNIT + 77;
    let bytes = data(size);
    let s = create_session(&mut c, &drive, &folder, "Resumed.bin", "fail").await;
    let url = s.json()["uploadUrl"].as_str().unwrap().to_string();
    let range = |a: usize, b: usize| format!("bytes {a}-{}/{size}", b - 1);
    assert_eq!(
        put_range(&mut up, &url, Some(&range(0, UNIT)), &bytes[..UNIT])
            .await
            .status,
        202
    );
    // The second range's answer is lost (the bytes were taken).
    sim.add_fault(
        FaultRule::new("*/uploadSession", FaultKind::DropAnswer)
            .method("PUT")
            .times(1),
    );
    // (A fresh connection: the test client sends again on a reused one that closes.)
    let lost = Client::new(&sim.base_url())
        .send(
            "PUT",
            &url,
            &[
                ("Content-Type", "application/octet-stream"),
                ("Content-Range", &range(UNIT, 2 * UNIT)),
            ],
            &bytes[UNIT..2 * UNIT],
        )
        .await;
    assert!(lost.is_err(), "the answer is dropped: {lost:?}");
    let mut up = Client::new(&sim.base_url());
    let st = up.get(&url).await;
    assert_eq!(st.status, 200, "{}", st.text());
    let st = st.json();
    assert_eq!(
        st["nextExpectedRanges"],
        json!([format!("{}-{}", 2 * UNIT, size - 1)])
    );
    assert!(st["expirationDateTime"].is_string());
    // Sending it again, as a client that does not ask first would: 416 with Graph's body.
    let again = put_range(
        &mut up,
        &url,
        Some(&range(UNIT, 2 * UNIT)),
        &bytes[UNIT..2 * UNIT],
    )
    .await;
    assert_eq!(again.status, 416, "{}", again.text());
    assert_eq!(again.json()["error"]["code"], "invalidRange");
    let r = put_range(
        &mut up,
        &url,
        Some(&range(2 * UNIT, size)),
        &bytes[2 * UNIT..],
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        file_in(&sim, &drive, &folder, "Resumed.bin").unwrap().1,
        bytes
    );
    // Finished: the session is gone.
    assert_eq!(up.get(&url).await.status, 404);
    let log: Vec<(Option<(usize, usize)>, u16)> = sim.with_tenant(|t| {
        t.drives
            .uploads
            .iter()
            .map(|u| (u.range, u.status))
            .collect()
    });
    assert_eq!(
        log,
        [
            (Some((0, UNIT - 1)), 202),
            (Some((UNIT, 2 * UNIT - 1)), 202),
            (Some((UNIT, 2 * UNIT - 1)), 416),
            (Some((2 * UNIT, size - 1)), 201),
        ]
    );
    let st = sim.stats();
    assert_eq!((st.faults_injected, st.dropped), (1, 1), "{st:?}");

    // On a Graph path too: the group is created although its answer was lost.
    sim.add_fault(
        FaultRule::new("/v1.0/groups", FaultKind::DropAnswer)
            .method("POST")
            .times(1),
    );
    let mut fresh = Client::new(&sim.base_url()).with_token(sim.access_token());
    let body = json!({"displayName": "Lost Answer", "mailEnabled": false, "mailNickname": "lostanswer", "securityEnabled": true});
    let lost = fresh
        .send(
            "POST",
            "/v1.0/groups",
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
        .await;
    assert!(lost.is_err(), "{lost:?}");
    let found = c
        .get("/v1.0/groups?$filter=displayName%20eq%20'Lost%20Answer'")
        .await;
    assert_eq!(found.json()["value"].as_array().unwrap().len(), 1);
}
