//! A message over Graph's 4 MB request limit as processes: `cairn backup` of a mailbox holding
//! a 9 MB message into the encrypted repository, the message deleted, `cairn restore apply --id
//! message/…` brings it back through an upload session (the restorer reads the stored MIME by
//! ranges from the repository), the attachments' decoded bytes equal the original's, a second
//! apply creates nothing and `cairn restore verify` is clean.

use cairn_graph_sim::mail::{self, parse_mime};
use cairn_graph_sim::util::{b64, pct_encode};
use cairn_graph_sim::{Profile, SimConfig};
use serde_json::Value;

use crate::support;

use support::{Collector, Setup};

const IMID: &str = "<large-cli@fabrikam.com>";

fn wrap(s: &str) -> String {
    s.as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n")
}

#[test]
fn a_large_message_comes_back_through_an_upload_session() {
    let mut user = String::new();
    let env = Setup::start(SimConfig::new(Profile::Small, 41), |sim| {
        user = sim.with_tenant(|t| t.mail.boxes.keys().next().unwrap().clone());
        vec![Collector {
            name: "mail",
            plugin: "m365-mail",
            config: Some(format!("{{ users = [\"{user}\"] }}")),
        }]
    });
    let big: Vec<u8> = (0..6_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let notes = "Minutes =E2=80=94 see the recording.\r\n".repeat(10);
    let mime = format!(
        "From: Megan <megan@fabrikam.com>\r\nTo: Adele <adele@contoso.com>\r\nSubject: Recording\r\n\
         Date: Wed, 4 Nov 2026 08:00:00 +0000\r\nMessage-ID: {IMID}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n--m\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
         {notes}--m\r\nContent-Type: audio/mpeg; name=\"call.mp3\"\r\n\
         Content-Disposition: attachment; filename=\"call.mp3\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         {}\r\n--m--\r\n",
        wrap(&b64(&big))
    );
    env.sim
        .with_tenant(|t| mail::insert_mime(t, &user, "inbox", &mime))
        .unwrap();

    let snap = env.backup();
    let find = || -> Vec<Value> {
        let filter = pct_encode(&format!("internetMessageId eq '{IMID}'"));
        let (status, v) = env.graph_json(
            "GET",
            &format!("/v1.0/users/{user}/messages?$filter={filter}&$select=id,parentFolderId"),
            None,
        );
        assert_eq!(status, 200);
        v["value"].as_array().unwrap().clone()
    };
    let original = find().remove(0);
    let id = original["id"].as_str().unwrap().to_string();
    let key = format!(
        "message/{}/{id}",
        original["parentFolderId"].as_str().unwrap()
    );
    let (status, _) = env.graph_raw(
        "DELETE",
        &format!("/v1.0/users/{user}/messages/{}", pct_encode(&id)),
    );
    assert_eq!(status, 204);

    let sel = ["--id", key.as_str(), snap.as_str()];
    let entry = env.apply_one(&sel);
    assert!(
        entry["notes"].to_string().contains("attached afterwards"),
        "{entry}"
    );
    let back = find();
    assert_eq!(back.len(), 1);
    let (status, raw) = env.graph_raw(
        "GET",
        &format!(
            "/v1.0/users/{user}/messages/{}/$value",
            pct_encode(back[0]["id"].as_str().unwrap())
        ),
    );
    assert_eq!(status, 200);
    let restored = parse_mime(&String::from_utf8(raw).unwrap());
    let want = parse_mime(&mime);
    assert_eq!(restored.body, want.body);
    assert!(restored.body.contains("Minutes — see"), "{}", restored.body);
    assert_eq!(restored.attachments.len(), 1);
    assert_eq!(restored.attachments[0].name, "call.mp3");
    assert_eq!(restored.attachments[0].content_type, "audio/mpeg");
    assert!(restored.attachments[0].bytes == big, "decoded bytes equal");

    // A second apply creates nothing; verify is clean.
    let again = env.apply_json(&sel);
    for e in again["entries"].as_array().unwrap() {
        assert_ne!(e["outcome"], "done", "{again}");
    }
    assert_eq!(find().len(), 1);
    env.verify_clean(&sel);
}
