//! Outlook upload URLs (attachment upload sessions) and SharePoint drive upload URLs are
//! pre-authenticated: the gateway sends them without the bearer token (the simulator, like
//! Outlook and SharePoint, refuses a Graph token there with 401), in the mailbox's Outlook slots
//! or SharePoint's (counting its resource units), and keeps their `authtoken` / `tempauth` out
//! of error messages.

use crate::common;

use cairn_graph_sim::util::b64;
use cairn_graph_sim::{FaultKind, FaultRule};
use cairn_runtime::{GraphConnection, HttpRequest};
use common::*;
use serde_json::json;

const MIME: &str = "From: A <a@contoso.com>\r\nTo: B <b@contoso.com>\r\nSubject: Upload\r\n\
Message-ID: <upload-gw@contoso.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nHi\r\n";

fn body_request(
    conn: &dyn GraphConnection,
    method: &str,
    path: &str,
    ct: &str,
    body: Vec<u8>,
) -> HttpRequest {
    HttpRequest {
        headers: vec![("Content-Type".into(), ct.into())],
        body,
        ..request(conn, method, path)
    }
}

#[test]
fn upload_urls_are_sent_without_the_token_and_never_shown_with_it() {
    let env = Env::small();
    let gw = env.gateway();
    let conn = gw.for_task("restore");
    let user = env
        .sim
        .with_tenant(|t| t.mail.boxes.keys().next().unwrap().clone());
    let created = conn
        .send(body_request(
            &*conn,
            "POST",
            &format!("/v1.0/users/{user}/mailFolders/inbox/messages"),
            "text/plain",
            b64(MIME.as_bytes()).into_bytes(),
        ))
        .unwrap();
    assert_eq!(created.status, 201);
    let mid = json(&created)["id"].as_str().unwrap().to_string();
    let size = 3 * 1024 * 1024 + 10;
    let s = conn
        .send(body_request(
            &*conn,
            "POST",
            &format!(
                "/v1.0/users/{user}/messages/{}/attachments/createUploadSession",
                cairn_graph_sim::util::pct_encode(&mid)
            ),
            "application/json",
            json!({"AttachmentItem": {"attachmentType": "file", "name": "a.bin", "size": size}})
                .to_string()
                .into_bytes(),
        ))
        .unwrap();
    assert_eq!(s.status, 201, "{}", String::from_utf8_lossy(&s.body));
    let url = json(&s)["uploadUrl"].as_str().unwrap().to_string();
    let token = url.split("authtoken=").nth(1).unwrap().to_string();
    let data = vec![7u8; size];
    let put = |from: usize, to: usize| {
        let mut r = body_request(
            &*conn,
            "PUT",
            &url,
            "application/octet-stream",
            data[from..to].to_vec(),
        );
        r.headers.push((
            "Content-Range".into(),
            format!("bytes {from}-{}/{size}", to - 1),
        ));
        conn.send(r)
    };
    // A 503 on the upload URL is retried like any other (a PUT is idempotent); the error
    // message of a failure names the URL without its authtoken.
    let unavailable = FaultKind::ServerError {
        status: 503,
        retry_after: Some(0.01),
    };
    env.sim
        .add_fault(FaultRule::new("/api/v2.0/*", unavailable.clone()).times(1));
    let r = put(0, 2 * 1024 * 1024).unwrap();
    assert_eq!(
        r.status,
        200,
        "no bearer token: {}",
        String::from_utf8_lossy(&r.body)
    );
    let r = put(2 * 1024 * 1024, size).unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert!(header(&r, "location").unwrap().contains("/Attachments('"));
    let stats = gw.stats().tasks["restore"].clone();
    assert!(stats.retries >= 1, "{stats:?}");

    env.sim
        .add_fault(FaultRule::new("/api/v2.0/*", unavailable));
    let err = put(0, 10).unwrap_err();
    assert!(err.contains("AttachmentSessions"), "{err}");
    assert!(
        !err.contains(&token),
        "the authtoken stays out of messages: {err}"
    );
    assert!(!err.contains("authtoken"), "{err}");
}

#[test]
fn the_connection_vouches_for_its_clouds_outlook_upload_urls_only() {
    use cairn_gateway::{Cloud, Credential, Gateway, GatewayConfig};
    let gw = Gateway::connect(
        GatewayConfig::new(
            "contoso.onmicrosoft.com",
            "client-id",
            Credential::secret("s"),
        )
        .with_cloud(Cloud::Global),
    )
    .unwrap();
    let conn = gw.for_task("restore");
    let docs = "https://outlook.office.com/api/v2.0/Users('a8e8e219-4931-95c1-b73d-62626fd79c32@72aa88bf-76f0-494f-91ab-2d7cd730db47')/Messages('AAMkADI5MAAIT3drCAAA=')/AttachmentSessions('AAMkADI5MAAIT3k0tAAA=')?authtoken=eyJhbGciOiJSUzI1NiIsImtpZCI6IktmYUNIUlN6bllHMmNI";
    assert!(conn.preauthenticated(&url::Url::parse(docs).unwrap()));
    let drive = "https://contoso.sharepoint.com/sites/Finance/_api/v2.0/drives/b!abc/items/01PARENT/uploadSession?guid='6f1c6b2e-1a52-4c39-9e0d-6b2f5d1e0a11'&overwrite=False&rename=False&dc=0&tempauth=eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0";
    assert!(conn.preauthenticated(&url::Url::parse(drive).unwrap()));
    for other in [
        docs.replace("outlook.office.com", "evil.example.com"),
        docs.split('?').next().unwrap().to_string(),
        "https://outlook.office.com/api/v2.0/me/messages".to_string(),
        drive.replace("contoso.sharepoint.com", "contoso.sharepoint.us"),
        drive.replace("contoso.sharepoint.com", "evil.example.com"),
        drive.split('?').next().unwrap().to_string(),
    ] {
        assert!(
            !conn.preauthenticated(&url::Url::parse(&other).unwrap()),
            "{other}"
        );
    }
}

#[test]
fn drive_upload_urls_are_sent_without_the_token_as_sharepoint_requests() {
    let env = Env::small();
    let gw = env.gateway();
    let conn = gw.for_task("restore");
    let (drive, root) = env.sim.with_tenant(|t| {
        let d = t.drives.drives.values().next().unwrap();
        (d.id.clone(), d.root.clone())
    });
    let session = |name: &str| {
        let s = conn
            .send(body_request(
                &*conn,
                "POST",
                &format!("/v1.0/drives/{drive}/items/{root}:/{name}:/createUploadSession"),
                "application/json",
                json!({"item": {"@microsoft.graph.conflictBehavior": "fail"}})
                    .to_string()
                    .into_bytes(),
            ))
            .unwrap();
        assert_eq!(s.status, 200, "{}", String::from_utf8_lossy(&s.body));
        json(&s)["uploadUrl"].as_str().unwrap().to_string()
    };
    let unit = 320 * 1024;
    let size = unit + 5;
    let data = vec![3u8; size];
    let put = |url: &str, from: usize, to: usize| {
        let mut r = body_request(
            &*conn,
            "PUT",
            url,
            "application/octet-stream",
            data[from..to].to_vec(),
        );
        r.headers.push((
            "Content-Range".into(),
            format!("bytes {from}-{}/{size}", to - 1),
        ));
        conn.send(r)
    };
    env.sim.reset_stats();
    let before = gw.stats().tasks.get("restore").cloned().unwrap_or_default();
    let url = session("Big.bin");
    assert!(conn.preauthenticated(&url::Url::parse(&url).unwrap()));
    // Without the token (the simulator answers 401 to one), in SharePoint's budget.
    let r = put(&url, 0, unit).unwrap();
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let r = put(&url, unit, size).unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(json(&r)["size"], json!(size));
    let after = gw.stats().tasks["restore"].clone();
    assert_eq!(
        after.sharepoint_resource_units - before.sharepoint_resource_units,
        env.sim.stats().sharepoint_ru_spent,
        "the gateway counts what SharePoint charges"
    );
    assert_eq!(env.sim.stats().sharepoint_ru_spent, 2 + 2 + 2);

    // A 503 is retried (a PUT is idempotent); a failure's message names the URL without its
    // tempauth.
    let unavailable = FaultKind::ServerError {
        status: 503,
        retry_after: Some(0.01),
    };
    let url = session("Other.bin");
    let token = url.split("tempauth=").nth(1).unwrap().to_string();
    env.sim
        .add_fault(FaultRule::new("*/_api/v2.0/*", unavailable.clone()).times(1));
    assert_eq!(put(&url, 0, unit).unwrap().status, 202);
    assert!(gw.stats().tasks["restore"].retries > after.retries);
    env.sim
        .add_fault(FaultRule::new("*/_api/v2.0/*", unavailable));
    let err = put(&url, unit, size).unwrap_err();
    assert!(err.contains("uploadSession"), "{err}");
    assert!(
        !err.contains(&token),
        "the tempauth stays out of messages: {err}"
    );
    assert!(!err.contains("tempauth"), "{err}");
}
