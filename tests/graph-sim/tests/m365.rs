//! Microsoft 365 parts (§8): mail folders, messages (JSON and MIME), attachments, message delta;
//! sites, drives, drive delta, content downloads and permissions with sharing links.

use crate::common;

use cairn_graph_sim::testkit::Client;
use cairn_graph_sim::util::{b64, pct_encode};
use cairn_graph_sim::{FaultKind, FaultRule, Profile};
use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn mail_folders_messages_mime_and_attachments() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let user = sim.with_tenant(|t| {
        t.mail
            .boxes
            .iter()
            .find(|(_, b)| b.messages.values().any(|m| !m.attachments.is_empty()))
            .unwrap()
            .0
            .clone()
    });
    let folders = c
        .get(&format!("/v1.0/users/{user}/mailFolders"))
        .await
        .json();
    let names: Vec<&str> = folders["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["displayName"].as_str().unwrap())
        .collect();
    for n in ["Inbox", "Drafts", "Sent Items", "Deleted Items", "Archive"] {
        assert!(names.contains(&n), "{names:?}");
    }
    assert!(
        !names.contains(&"Sync Issues"),
        "hidden folders need includeHiddenFolders"
    );
    let all = c
        .get(&format!(
            "/v1.0/users/{user}/mailFolders?includeHiddenFolders=true"
        ))
        .await
        .json();
    assert!(all["value"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["isHidden"] == true));
    let inbox = c
        .get(&format!("/v1.0/users/{user}/mailFolders/inbox"))
        .await
        .json();
    assert_eq!(inbox["displayName"], "Inbox");
    let children = c
        .get(&format!(
            "/v1.0/users/{user}/mailFolders/inbox/childFolders"
        ))
        .await
        .json();
    assert!(!children["value"].as_array().unwrap().is_empty());
    // Messages page at 10 by default.
    let (msgs, _, _) = c
        .get_all(&format!("/v1.0/users/{user}/messages"), &[])
        .await;
    let first = c.get(&format!("/v1.0/users/{user}/messages")).await.json();
    assert!(first["value"].as_array().unwrap().len() <= 10);
    let with_att = msgs.iter().find(|m| m["hasAttachments"] == true).unwrap();
    let mid = pct_encode(with_att["id"].as_str().unwrap());
    let mime = c
        .get(&format!("/v1.0/users/{user}/messages/{mid}/$value"))
        .await;
    assert_eq!(mime.status, 200);
    assert!(mime
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let text = mime.text();
    assert!(text.contains(&format!(
        "Subject: {}",
        with_att["subject"].as_str().unwrap()
    )));
    assert!(text.contains("MIME-Version: 1.0") && text.contains("Content-Disposition: attachment"));
    let atts = c
        .get(&format!("/v1.0/users/{user}/messages/{mid}/attachments"))
        .await
        .json();
    let a = &atts["value"][0];
    assert_eq!(a["@odata.type"], "#microsoft.graph.fileAttachment");
    let bytes = cairn_graph_sim::util::b64_decode(a["contentBytes"].as_str().unwrap()).unwrap();
    let raw = c
        .get(&format!(
            "/v1.0/users/{user}/messages/{mid}/attachments/{}/$value",
            pct_encode(a["id"].as_str().unwrap())
        ))
        .await;
    assert_eq!(raw.body, bytes);
    // Text body preference is echoed.
    let r = c
        .get_with(
            &format!("/v1.0/users/{user}/messages/{mid}"),
            &[("Prefer", "outlook.body-content-type=\"text\"")],
        )
        .await;
    assert_eq!(
        r.header("preference-applied"),
        Some("outlook.body-content-type=\"text\"")
    );

    // Restore a message from MIME: a draft whose $value is the same MIME.
    let mime_in = "From: Alex Wilber <AlexW@contoso.com>\r\nTo: Adele Vance <AdeleV@contoso.com>\r\nSubject: Restored from backup\r\nDate: Mon, 3 Feb 2025 10:00:00 +0000\r\nMessage-ID: <restored-1@contoso.com>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n\r\nHello from the backup.\r\n--b1\r\nContent-Type: text/plain; name=\"a.txt\"\r\nContent-Disposition: attachment; filename=\"a.txt\"\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--b1--\r\n";
    let r = c
        .send(
            "POST",
            &format!("/v1.0/users/{user}/mailFolders/inbox/messages"),
            &[("Content-Type", "text/plain")],
            b64(mime_in.as_bytes()).as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let m = r.json();
    assert_eq!(m["isDraft"], true, "a restored message is a draft");
    assert_eq!(m["subject"], "Restored from backup");
    assert_eq!(m["hasAttachments"], true);
    assert_eq!(m["internetMessageId"], "<restored-1@contoso.com>");
    let id = pct_encode(m["id"].as_str().unwrap());
    assert_eq!(
        c.get(&format!("/v1.0/users/{user}/messages/{id}/$value"))
            .await
            .text(),
        mime_in
    );
    let atts = c
        .get(&format!("/v1.0/users/{user}/messages/{id}/attachments"))
        .await
        .json();
    assert_eq!(atts["value"][0]["contentBytes"], "aGVsbG8=");
    // JSON create.
    let r = c.post_json(&format!("/v1.0/users/{user}/messages"), &json!({"subject": "Draft", "body": {"contentType": "HTML", "content": "<p>Hi</p>"}, "toRecipients": [{"emailAddress": {"address": "a@b.c"}}]})).await;
    assert_eq!(r.status, 201);
    assert_eq!(
        r.json()["parentFolderId"],
        c.get(&format!("/v1.0/users/{user}/mailFolders/drafts"))
            .await
            .json()["id"]
    );
    // Guests have no mailbox.
    let guest = sim.with_tenant(|t| {
        t.map(cairn_graph_sim::model::Kind::User)
            .values()
            .find(|u| u.str("userType") == Some("Guest"))
            .map(|u| u.id.to_string())
    });
    if let Some(g) = guest {
        assert_eq!(
            c.get(&format!("/v1.0/users/{g}/mailFolders")).await.json()["error"]["code"],
            "MailboxNotEnabledForRESTAPI"
        );
    }
}

#[tokio::test]
async fn message_and_folder_delta() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let user = sim.with_tenant(|t| {
        t.mail
            .boxes
            .iter()
            .find(|(_, b)| b.messages.len() > 5)
            .unwrap()
            .0
            .clone()
    });
    let base = format!("/v1.0/users/{user}/mailFolders/inbox/messages/delta");
    let (items, pages, last) = c.get_all(&base, &[("Prefer", "odata.maxpagesize=2")]).await;
    let inbox_count = c
        .get(&format!("/v1.0/users/{user}/mailFolders/inbox"))
        .await
        .json()["totalItemCount"]
        .as_u64()
        .unwrap() as usize;
    assert_eq!(items.len(), inbox_count);
    assert!(pages > 1 || inbox_count <= 2);
    let link = last["@odata.deltaLink"].as_str().unwrap().to_string();
    let a = pct_encode(items[0]["id"].as_str().unwrap());
    let b = pct_encode(items[1]["id"].as_str().unwrap());
    assert_eq!(
        c.delete(&format!("/v1.0/users/{user}/messages/{a}"))
            .await
            .status,
        204
    );
    assert_eq!(
        c.patch_json(
            &format!("/v1.0/users/{user}/messages/{b}"),
            &json!({"isRead": false})
        )
        .await
        .status,
        200
    );
    let new = c
        .post_json(
            &format!("/v1.0/users/{user}/mailFolders/inbox/messages"),
            &json!({"subject": "New"}),
        )
        .await
        .json();
    let (round, _, _) = c.get_all(&link, &[]).await;
    assert_eq!(round.len(), 3, "{round:?}");
    let removed: Vec<&Value> = round
        .iter()
        .filter(|m| m.get("@removed").is_some())
        .collect();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0]["@removed"]["reason"], "deleted");
    assert!(round.iter().any(|m| m["id"] == new["id"]));
    // changeType filters the round.
    let created_only = c.get(&format!("{link}&changeType=created")).await.json();
    assert_eq!(created_only["value"].as_array().unwrap().len(), 1);
    // Folder delta.
    let (folders, _, flast) = c
        .get_all(&format!("/v1.0/users/{user}/mailFolders/delta"), &[])
        .await;
    assert!(folders.len() >= 8);
    let flink = flast["@odata.deltaLink"].as_str().unwrap().to_string();
    let nf = c
        .post_json(
            &format!("/v1.0/users/{user}/mailFolders"),
            &json!({"displayName": "Restored"}),
        )
        .await;
    assert_eq!(nf.status, 201);
    let r = c.get(&flink).await.json();
    assert!(r["value"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["displayName"] == "Restored"));
}

#[tokio::test]
async fn drives_delta_permissions_links_and_content() {
    let sim = start(Profile::Small).await;
    let mut c = client(&sim).await;
    let sites = c.get("/v1.0/sites/getAllSites").await.json();
    let site = sites["value"][0]["id"].as_str().unwrap().to_string();
    let drives = c.get(&format!("/v1.0/sites/{site}/drives")).await.json();
    let drive = drives["value"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(drives["value"][0]["driveType"], "documentLibrary");
    let od_user = sim.with_tenant(|t| {
        t.drives
            .drives
            .values()
            .find(|d| d.drive_type == "business")
            .unwrap()
            .owner
            .1
            .clone()
    });
    assert_eq!(
        c.get(&format!("/v1.0/users/{od_user}/drive")).await.json()["driveType"],
        "business"
    );
    let grp = sim.with_tenant(|t| {
        t.drives
            .drives
            .values()
            .find(|d| d.owner.0 == "group")
            .unwrap()
            .owner
            .1
            .clone()
    });
    assert_eq!(
        c.get(&format!("/v1.0/groups/{grp}/drive")).await.status,
        200
    );

    let (items, _, last) = c
        .get_all(
            &format!("/v1.0/drives/{drive}/root/delta"),
            &[("Prefer", "odata.maxpagesize=5")],
        )
        .await;
    let link = last["@odata.deltaLink"].as_str().unwrap().to_string();
    assert!(link.contains("token="));
    assert!(items.iter().any(|i| i.get("root").is_some()));
    let file = items
        .iter()
        .find(|i| i.get("file").is_some())
        .unwrap()
        .clone();
    let fid = file["id"].as_str().unwrap().to_string();
    // Content: 302 to a pre-authenticated URL on the same server.
    let r = c
        .get(&format!("/v1.0/drives/{drive}/items/{fid}/content"))
        .await;
    assert_eq!(r.status, 302);
    let loc = r.header("location").unwrap().to_string();
    let mut anon = Client::new(&sim.base_url());
    let content = anon.get(&loc).await;
    assert_eq!(content.status, 200);
    assert_eq!(
        hex(&cairn_graph_sim::util::sha256(&content.body)).to_uppercase(),
        file["file"]["hashes"]["sha256Hash"].as_str().unwrap()
    );
    // Upload one file, delete another: the next round has both (deleted facet).
    let up = c
        .send(
            "PUT",
            &format!("/v1.0/drives/{drive}/items/root:/restored.txt:/content"),
            &[("Content-Type", "text/plain")],
            b"restored bytes",
        )
        .await
        .unwrap();
    assert_eq!(up.status, 201, "{}", up.text());
    assert_eq!(
        c.delete(&format!("/v1.0/drives/{drive}/items/{fid}"))
            .await
            .status,
        204
    );
    let (round, _, _) = c.get_all(&link, &[]).await;
    assert!(round.iter().any(|i| i["name"] == "restored.txt"));
    let gone = round.iter().find(|i| i["id"] == fid.as_str()).unwrap();
    assert!(gone["deleted"].is_object());
    // token=latest.
    let latest = c
        .get(&format!("/v1.0/drives/{drive}/root/delta?token=latest"))
        .await
        .json();
    assert_eq!(latest["value"].as_array().unwrap().len(), 0);
    assert!(latest["@odata.deltaLink"].is_string());
    // 410 on demand.
    sim.add_fault(FaultRule::new("/v1.0/drives/*/root/delta", FaultKind::Resync).times(1));
    let r = c.get(&link).await;
    assert_eq!(r.status, 410);
    assert_eq!(r.json()["error"]["code"], "resyncChangesApplyDifferences");
    assert!(r.header("location").is_some());

    // Permissions: createLink 201 then 200 for the same type and scope; invite; delete.
    let other = items
        .iter()
        .filter(|i| i.get("file").is_some())
        .nth(1)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let base = format!("/v1.0/drives/{drive}/items/{other}");
    sim.reset_stats();
    let before = c.get(&format!("{base}/permissions")).await.json()["value"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        sim.stats().sharepoint_ru_spent,
        5,
        "permission reads cost 5 SharePoint RU"
    );
    let l1 = c.post_json(&format!("{base}/createLink"), &json!({"type": "view", "scope": "anonymous", "expirationDateTime": "2030-01-01T00:00:00Z", "password": "s3cret"})).await;
    assert_eq!(l1.status, 201, "{}", l1.text());
    let l1 = l1.json();
    assert_eq!(l1["link"]["type"], "view");
    assert_eq!(l1["link"]["scope"], "anonymous");
    assert_eq!(l1["hasPassword"], true);
    assert_eq!(l1["expirationDateTime"], "2030-01-01T00:00:00Z");
    assert!(l1["link"]["webUrl"]
        .as_str()
        .unwrap()
        .starts_with("https://"));
    let l2 = c
        .post_json(
            &format!("{base}/createLink"),
            &json!({"type": "view", "scope": "anonymous"}),
        )
        .await;
    assert_eq!(l2.status, 200, "an existing link of that type is returned");
    assert_eq!(l2.json()["id"], l1["id"]);
    let member = c
        .get("/v1.0/users?$top=5&$filter=userType eq 'Member'&$select=id,mail")
        .await
        .json()["value"][2]
        .clone();
    let inv = c.post_json(&format!("{base}/invite"), &json!({"recipients": [{"email": member["mail"]}, {"email": "partner@fabrikam.example"}], "roles": ["read"], "requireSignIn": true, "sendInvitation": false})).await;
    assert_eq!(inv.status, 200, "{}", inv.text());
    let granted = inv.json()["value"].as_array().unwrap().clone();
    assert_eq!(granted[0]["grantedToV2"]["user"]["id"], member["id"]);
    assert_eq!(
        granted[1]["invitation"]["email"],
        "partner@fabrikam.example"
    );
    let perms = c.get(&format!("{base}/permissions")).await.json();
    assert_eq!(perms["value"].as_array().unwrap().len(), before + 3);
    let pid = l1["id"].as_str().unwrap();
    assert_eq!(
        c.delete(&format!("{base}/permissions/{pid}")).await.status,
        204
    );
    assert_eq!(
        c.get(&format!("{base}/permissions/{pid}")).await.status,
        404
    );
    assert_eq!(
        c.post_json(&format!("{base}/createLink"), &json!({"type": "bogus"}))
            .await
            .status,
        400
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
