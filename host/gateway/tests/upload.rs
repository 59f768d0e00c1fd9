//! Outlook upload URLs (attachment upload sessions) are pre-authenticated: the gateway sends
//! them without the bearer token (the simulator, like Outlook, refuses a Graph token there with
//! 401), in the mailbox's Outlook slots, and keeps their `authtoken` out of error messages.

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
    for other in [
        docs.replace("outlook.office.com", "evil.example.com"),
        docs.split('?').next().unwrap().to_string(),
        "https://outlook.office.com/api/v2.0/me/messages".to_string(),
    ] {
        assert!(
            !conn.preauthenticated(&url::Url::parse(&other).unwrap()),
            "{other}"
        );
    }
}
