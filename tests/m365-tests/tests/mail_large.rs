//! A message over Graph's 4 MB request limit (a 16 MB MIME with a 6 MB and a 3.3 MB attachment,
//! a 2.9 MB quoted-printable CSV and an inline image) backed up, deleted and restored by the
//! m365-mail plugin through the runtime and the real gateway: imported without its three
//! largest attachments, which follow through upload sessions (the two over 3 MiB, in
//! 3.75 MiB PUTs to the token-free upload URL) and one `POST …/attachments`; subject, body, the
//! inline image and every attachment's name, type and decoded bytes equal the original's. A
//! second plan is empty and a re-apply is `already-done`; a restore that stops before the last
//! attachment leaves a draft that the next plan finishes (an `update` attaching what it lacks),
//! never a second message. An attached e-mail (`message/rfc822`) larger than the file beside
//! it stays in the imported MIME and only the file is attached afterwards; one too large to
//! stay goes back as a `.eml` file attachment, and the plan and the outcome say so.
//! An upload whose `PUT` answer is lost (the simulator's `dropAnswer`) still restores the
//! message in the same apply (a new session, or the attachment found made by the last range),
//! and one whose every `PUT` is refused fails after three sessions, naming the attachment.

use std::sync::Arc;

use cairn_graph_sim::mail::{self, parse_mime};
use cairn_graph_sim::testkit::Client;
use cairn_graph_sim::util::{b64, pct_encode};
use cairn_graph_sim::{FaultKind, FaultRule};
use cairn_m365_tests::*;
use cairn_runtime::types::{Action, ActionKind, Outcome, PluginError, RestoreRequest, Selected};
use cairn_runtime::{Capabilities, PluginInstance};
use serde_json::{json, Value};

sim_env! {
    /// The shared simulator environment, with this file's helpers.
    Env
}

impl Env {
    fn start() -> Env {
        Env(SimEnv::small(21))
    }

    fn send(&self, method: &str, path: &str) -> (u16, Vec<u8>) {
        let mut c = Client::new(&self.sim.base_url()).with_token(self.sim.access_token());
        let r = self.rt.block_on(c.send(method, path, &[], &[])).unwrap();
        (r.status, r.body)
    }

    fn json(&self, path: &str) -> Value {
        let (status, body) = self.send("GET", path);
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    /// Live messages of `user` with this internetMessageId: (id, isDraft).
    fn by_imid(&self, user: &str, imid: &str) -> Vec<(String, bool)> {
        let filter = pct_encode(&format!("internetMessageId eq '{imid}'"));
        self.json(&format!(
            "/v1.0/users/{user}/messages?$filter={filter}&$select=id,isDraft"
        ))["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["id"].as_str().unwrap().to_string(),
                    m["isDraft"].as_bool().unwrap(),
                )
            })
            .collect()
    }
}

const IMID: &str = "<large-1@fabrikam.com>";

fn wrap(b64: &str) -> String {
    b64.as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn bytes(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// ~2.9 MB of CSV in quoted-printable (`=` and `é` escaped, lines under 76).
fn csv() -> (Vec<u8>, String) {
    let mut plain = String::new();
    let mut qp = String::new();
    let mut i = 0;
    while plain.len() < 2_900_000 {
        let line = format!("{i},caf\u{e9},a=b,{}", i * 7919 % 100_003);
        plain.push_str(&line);
        plain.push_str("\r\n");
        qp.push_str(&line.replace('=', "=3D").replace('\u{e9}', "=C3=A9"));
        qp.push_str("\r\n");
        i += 1;
    }
    (plain.into_bytes(), qp)
}

struct Original {
    mime: String,
    video: Vec<u8>,
    slides: Vec<u8>,
    csv: Vec<u8>,
    image: Vec<u8>,
}

fn original() -> Original {
    let video = bytes(6_000_000, 1);
    let slides = bytes(3_300_000, 2);
    let image = bytes(150_000, 3);
    let (csv, csv_qp) = csv();
    let mime = format!(
        "From: Megan Bowen <megan@fabrikam.com>\r\nTo: Adele Vance <adele@contoso.com>\r\n\
         Subject: Quarterly material (large)\r\nDate: Tue, 3 Nov 2026 09:30:00 +0000\r\n\
         Message-ID: {IMID}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"mixed-1\"\r\n\r\n\
         This is a multi-part message in MIME format.\r\n--mixed-1\r\n\
         Content-Type: multipart/related; boundary=\"rel-1\"; type=\"text/html\"\r\n\r\n--rel-1\r\n\
         Content-Type: text/html; charset=\"utf-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
         <p>Hi Adele, the material for the review: <img src=3D\"cid:chart@fabrikam\"> caf=C3=A9.</p>\r\n\
         --rel-1\r\nContent-Type: image/png; name=\"chart.png\"\r\nContent-ID: <chart@fabrikam>\r\n\
         Content-Disposition: inline; filename=\"chart.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         {}\r\n--rel-1--\r\n\r\n--mixed-1\r\n\
         Content-Type: video/mp4; name=\"review.mp4\"\r\nContent-Disposition: attachment; filename=\"review.mp4\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--mixed-1\r\n\
         Content-Type: application/vnd.openxmlformats-officedocument.presentationml.presentation;\r\n\tname=\"slides.pptx\"\r\n\
         Content-Disposition: attachment;\r\n\tfilename=\"slides.pptx\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--mixed-1\r\n\
         Content-Type: text/csv; charset=\"utf-8\"; name=\"numbers.csv\"\r\n\
         Content-Disposition: attachment; filename=\"numbers.csv\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
         {csv_qp}\r\n--mixed-1--\r\n",
        wrap(&b64(&image)),
        wrap(&b64(&video)),
        wrap(&b64(&slides)),
    );
    Original {
        mime,
        video,
        slides,
        csv,
        image,
    }
}

/// A message with an attached e-mail (`message/rfc822` without a file name, as Exchange
/// writes an item attachment; its own attachment `inner` bytes) and a PDF of `pdf` bytes:
/// (MIME, the attached e-mail's text, the PDF).
fn with_attached_mail(imid: &str, inner: usize, pdf: usize) -> (String, String, Vec<u8>) {
    let inner = bytes(inner, 4);
    let pdf = bytes(pdf, 5);
    let mail = format!(
        "From: Patti Fernandez <patti@fabrikam.com>\r\nTo: Megan Bowen <megan@fabrikam.com>\r\n\
         Subject: =?utf-8?Q?Minutes_f=C3=BCr_March?=\r\nDate: Mon, 2 Nov 2026 16:00:00 +0000\r\n\
         Message-ID: <minutes-{}@fabrikam.com>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"inner-mail\"\r\n\r\n--inner-mail\r\n\
         Content-Type: text/plain; charset=\"utf-8\"\r\n\r\nThe minutes, with the scan.\r\n--inner-mail\r\n\
         Content-Type: image/tiff; name=\"scan.tif\"\r\nContent-Disposition: attachment; filename=\"scan.tif\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--inner-mail--\r\n",
        inner.len(),
        wrap(&b64(&inner)),
    );
    let mime = format!(
        "From: Megan Bowen <megan@fabrikam.com>\r\nTo: Adele Vance <adele@contoso.com>\r\n\
         Subject: Board pack\r\nDate: Tue, 3 Nov 2026 10:00:00 +0000\r\nMessage-ID: {imid}\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer-2\"\r\n\r\n--outer-2\r\n\
         Content-Type: text/plain; charset=\"utf-8\"\r\n\r\nThe minutes and the report.\r\n--outer-2\r\n\
         Content-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n{mail}\r\n--outer-2\r\n\
         Content-Type: application/pdf; name=\"report.pdf\"\r\nContent-Disposition: attachment; filename=\"report.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--outer-2--\r\n",
        wrap(&b64(&pdf)),
    );
    (mime, mail, pdf)
}

fn restorer(
    env: &Env,
    graph: Arc<dyn cairn_runtime::GraphConnection>,
    content: &Arc<MemContent>,
    snap: &Snapshot,
) -> PluginInstance {
    instance_with(
        &env.wasm,
        MAIL,
        Capabilities {
            graph: Some(graph),
            content: Some(content.clone()),
            snapshot: Some(Arc::new(SnapshotView(snap.clone()))),
            remap: Some(Arc::new(MemRemap::default())),
            ..Default::default()
        },
        &json!({}),
    )
}

fn request(key: &str) -> RestoreRequest {
    RestoreRequest {
        selection: vec![Selected {
            kind: "message".into(),
            id: key.into(),
            attributes: vec![],
        }],
        options: "{}".into(),
    }
}

/// The restored message equals the original in what Exchange keeps: subject, body, and each
/// attachment's name, type, inline flag, content id and decoded bytes.
fn assert_restored(env: &Env, user: &str, o: &Original) {
    let live = env.by_imid(user, IMID);
    assert_eq!(live.len(), 1, "restored once: {live:?}");
    let (id, draft) = &live[0];
    assert!(draft, "MIME imports are drafts");
    let id = pct_encode(id);
    let (status, raw) = env.send("GET", &format!("/v1.0/users/{user}/messages/{id}/$value"));
    assert_eq!(status, 200);
    let restored = parse_mime(&String::from_utf8(raw).unwrap());
    let want = parse_mime(&o.mime);
    let header = |p: &mail::ParsedMime, k: &str| {
        p.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    for k in ["Subject", "From", "To", "Date", "Message-ID"] {
        assert_eq!(header(&restored, k), header(&want, k), "{k}");
    }
    assert_eq!(restored.body, want.body);
    assert!(restored.body.contains("café"), "{}", restored.body);
    let mut got: Vec<_> = restored
        .attachments
        .iter()
        .map(|a| {
            (
                a.name.clone(),
                a.content_type.clone(),
                a.inline,
                a.content_id.clone(),
                a.bytes.clone(),
            )
        })
        .collect();
    got.sort();
    let mut expected = vec![
        (
            "chart.png".to_string(),
            "image/png".to_string(),
            true,
            Some("chart@fabrikam".to_string()),
            o.image.clone(),
        ),
        (
            "review.mp4".into(),
            "video/mp4".into(),
            false,
            None,
            o.video.clone(),
        ),
        (
            "slides.pptx".into(),
            "application/vnd.openxmlformats-officedocument.presentationml.presentation".into(),
            false,
            None,
            o.slides.clone(),
        ),
        (
            "numbers.csv".into(),
            "text/csv".into(),
            false,
            None,
            o.csv.clone(),
        ),
    ];
    expected.sort();
    assert_eq!(got.len(), expected.len());
    for (g, w) in got.iter().zip(&expected) {
        assert_eq!((&g.0, &g.1, g.2, &g.3), (&w.0, &w.1, w.2, &w.3));
        assert!(g.4 == w.4, "decoded bytes of {} equal the original's", g.0);
    }
    // The attachment list and `$value` of an uploaded one agree.
    let list = env.json(&format!(
        "/v1.0/users/{user}/messages/{id}/attachments?$select=name,contentType,isInline,contentId,size"
    ));
    let video = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "review.mp4")
        .unwrap();
    assert!(
        video.get("contentBytes").is_none(),
        "$select leaves contentBytes out"
    );
    let (status, bytes) = env.send(
        "GET",
        &format!(
            "/v1.0/users/{user}/messages/{id}/attachments/{}/$value",
            pct_encode(video["id"].as_str().unwrap())
        ),
    );
    assert_eq!(status, 200);
    assert!(bytes == o.video);
}

#[test]
fn a_message_over_the_import_limit_is_restored_through_upload_sessions_and_finished_after_a_stop() {
    let env = Env::start();
    let user = env
        .sim
        .with_tenant(|t| t.mail.boxes.keys().next().unwrap().clone());
    let o = original();
    assert!(o.mime.len() > 15_000_000 && o.mime.len() < 20_000_000);
    env.sim
        .with_tenant(|t| mail::insert_mime(t, &user, "inbox", &o.mime))
        .unwrap();
    // An attached e-mail of 2.4 MB beside a 1.5 MB PDF (2 MB encoded): 4.5 MB in all.
    const KEPT: &str = "<attached-kept@fabrikam.com>";
    let (kept_mime, kept_mail, kept_pdf) = with_attached_mail(KEPT, 1_800_000, 1_500_000);
    // An attached e-mail of 4 MB that cannot stay, beside a 300 KB PDF.
    const TAKEN: &str = "<attached-taken@fabrikam.com>";
    let (taken_mime, taken_mail, taken_pdf) = with_attached_mail(TAKEN, 3_000_000, 300_000);
    for m in [&kept_mime, &taken_mime] {
        env.sim
            .with_tenant(|t| mail::insert_mime(t, &user, "inbox", m))
            .unwrap();
    }

    // Back up the mailbox: the MIME is stored byte for byte.
    let gw = env.gateway();
    let content = Arc::new(MemContent::default());
    let mut collector_inst = collector(
        &env.wasm,
        gw.for_task("mail"),
        content.clone(),
        &json!({"users": [user]}),
    );
    let mut snap = Snapshot::default();
    let run = run_all(&mut collector_inst, &mut snap);
    assert!(run.tasks.values().all(|r| r.error.is_none()));
    let (key, _) = snap
        .of_kind("message")
        .into_iter()
        .find(|(_, s)| s.body["internetMessageId"] == IMID)
        .expect("the large message is backed up");
    let stored = snap.part_bytes("message", &key, "mime", &content).unwrap();
    assert!(stored == o.mime.as_bytes(), "MIME stored byte for byte");

    // While the original is there (not a draft) nothing is planned.
    let rec = Recorder::new(gw.for_task("restore"));
    let mut r = restorer(&env, rec.clone(), &content, &snap);
    assert!(r.restore_plan(&request(&key)).unwrap().unwrap().is_empty());

    // Disaster: the message is deleted.
    let live_id = env.by_imid(&user, IMID)[0].0.clone();
    let (status, _) = env.send(
        "DELETE",
        &format!("/v1.0/users/{user}/messages/{}", pct_encode(&live_id)),
    );
    assert_eq!(status, 204);

    // Plan: one action, importing without the three largest attachments.
    let plan = r.restore_plan(&request(&key)).unwrap().unwrap();
    assert_eq!(plan.len(), 1, "{plan:#?}");
    let action = plan[0].clone();
    assert_eq!(action.kind, ActionKind::Recreate);
    for name in ["review.mp4", "slides.pptx", "numbers.csv"] {
        assert!(action.summary.contains(name), "{}", action.summary);
    }
    assert!(
        !action.summary.contains("chart.png"),
        "the inline image stays in the MIME"
    );

    // Apply: upload sessions for the two files over 3 MiB (2 + 1 PUTs of 12 x 320 KiB at
    // most), one POST for the CSV.
    rec.take();
    let out = r.restore_apply(&action).unwrap().unwrap();
    assert!(!out.already_done);
    assert!(
        out.notes.iter().any(|n| n.contains("attached afterwards")),
        "{:?}",
        out.notes
    );
    let reqs = rec.take();
    let count = |pred: &dyn Fn(&String) -> bool| reqs.iter().filter(|r| pred(r)).count();
    assert_eq!(
        count(&|r| r.starts_with("POST") && r.contains("/createUploadSession")),
        2,
        "{reqs:#?}"
    );
    assert_eq!(
        count(&|r| r.starts_with("PUT") && r.contains("/AttachmentSessions(")),
        3,
        "{reqs:#?}"
    );
    assert_eq!(
        count(&|r| r.starts_with("POST") && r.ends_with("/attachments")),
        1,
        "{reqs:#?}"
    );
    assert_restored(&env, &user, &o);

    // Verify: nothing to do; a re-apply finds it done.
    assert!(r.restore_plan(&request(&key)).unwrap().unwrap().is_empty());
    let again = r.restore_apply(&action).unwrap().unwrap();
    assert!(again.already_done);
    assert_eq!(env.by_imid(&user, IMID).len(), 1);

    // A restore that stops before the last attachment (the CSV's POST fails) ...
    let restored_id = env.by_imid(&user, IMID)[0].0.clone();
    env.send(
        "DELETE",
        &format!("/v1.0/users/{user}/messages/{}", pct_encode(&restored_id)),
    );
    let mut fault = FaultRule::new(
        "*/attachments",
        FaultKind::Error {
            status: 400,
            code: "ErrorInvalidRequest".into(),
            message: "injected".into(),
        },
    )
    .times(1);
    fault.method = Some("POST".into());
    env.sim.add_fault(fault);
    let failed = r.restore_apply(&action).unwrap();
    let err = failed.expect_err("the stopped restore fails its action");
    assert!(
        format!("{err:?}").contains("run the restore again"),
        "{err:?}"
    );
    let live = env.by_imid(&user, IMID);
    assert_eq!(live.len(), 1);
    // ... leaves a draft the next plan finishes: attach the CSV, nothing else, no second message.
    let plan = r.restore_plan(&request(&key)).unwrap().unwrap();
    assert_eq!(plan.len(), 1, "{plan:#?}");
    assert_eq!(plan[0].kind, ActionKind::Update);
    assert!(
        plan[0].summary.contains("numbers.csv"),
        "{}",
        plan[0].summary
    );
    assert!(
        !plan[0].summary.contains("review.mp4"),
        "{}",
        plan[0].summary
    );
    let out = r.restore_apply(&plan[0]).unwrap().unwrap();
    assert!(!out.already_done);
    assert!(
        out.notes.iter().any(|n| n.contains("numbers.csv")),
        "{:?}",
        out.notes
    );
    assert_restored(&env, &user, &o);
    assert!(r.restore_plan(&request(&key)).unwrap().unwrap().is_empty());

    // The attached e-mail and the PDF: deleted, planned, restored.
    let key_of = |imid: &str| {
        snap.of_kind("message")
            .into_iter()
            .find(|(_, s)| s.body["internetMessageId"] == imid)
            .expect("backed up")
            .0
    };
    let restore = |r: &mut PluginInstance, imid: &str| {
        let live_id = env.by_imid(&user, imid)[0].0.clone();
        env.send(
            "DELETE",
            &format!("/v1.0/users/{user}/messages/{}", pct_encode(&live_id)),
        );
        let plan = r.restore_plan(&request(&key_of(imid))).unwrap().unwrap();
        assert_eq!(plan.len(), 1, "{plan:#?}");
        rec.take();
        let out = r.restore_apply(&plan[0]).unwrap().unwrap();
        let live = env.by_imid(&user, imid);
        assert_eq!(live.len(), 1);
        let id = pct_encode(&live[0].0);
        let (status, raw) = env.send("GET", &format!("/v1.0/users/{user}/messages/{id}/$value"));
        assert_eq!(status, 200);
        let list = env.json(&format!(
            "/v1.0/users/{user}/messages/{id}/attachments?$select=name,contentType"
        ))["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["name"].as_str().unwrap().to_string(),
                    a["contentType"].as_str().unwrap().to_string(),
                )
            })
            .collect::<Vec<_>>();
        (
            plan[0].summary.clone(),
            out.notes,
            rec.take(),
            String::from_utf8(raw).unwrap(),
            list,
        )
    };
    let attached_as_file = |mime: &str, name: &str| {
        parse_mime(mime)
            .attachments
            .into_iter()
            .find(|a| a.name == name)
            .map(|a| (a.content_type, a.bytes))
    };
    // Larger than the PDF, but the message fits with it: only the PDF is taken out (one
    // POST, under 3 MiB), and the e-mail is still the imported MIME's message/rfc822 part.
    let (summary, notes, reqs, restored, list) = restore(&mut r, KEPT);
    assert!(
        summary.contains("imported without `report.pdf`, attached afterwards)"),
        "{summary}"
    );
    assert!(!summary.contains(".eml"), "{summary}");
    assert!(!notes.iter().any(|n| n.contains(".eml")), "{notes:?}");
    let posts: Vec<&String> = reqs
        .iter()
        .filter(|r| r.starts_with("POST") && r.contains("/attachments"))
        .collect();
    assert_eq!(posts.len(), 1, "{reqs:#?}");
    assert!(
        restored.contains(&format!(
            "Content-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n{kept_mail}"
        )),
        "the attached e-mail is inside the imported MIME as it was"
    );
    assert_eq!(
        list,
        [("report.pdf".to_string(), "application/pdf".to_string())]
    );
    assert_eq!(
        attached_as_file(&restored, "report.pdf"),
        Some(("application/pdf".to_string(), kept_pdf))
    );
    // Too large to stay: the e-mail goes back as a .eml file named after its subject, and the
    // PDF (out first) fits back in; the plan and the outcome say so.
    let (summary, notes, reqs, restored, list) = restore(&mut r, TAKEN);
    assert!(
        summary.contains(
            "the attached message `Minutes für March.eml` cannot stay in the import and goes \
             back as .eml file attachment"
        ),
        "{summary}"
    );
    assert!(
        notes.contains(
            &"attached message `Minutes für March.eml` returned as a .eml file attachment (it \
              did not fit in the import; Outlook shows it as a file, not as an attached item)"
                .to_string()
        ),
        "{notes:?}"
    );
    assert_eq!(
        reqs.iter()
            .filter(|r| r.starts_with("POST") && r.contains("/createUploadSession"))
            .count(),
        1,
        "{reqs:#?}"
    );
    assert!(!restored
        .contains("Content-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n"));
    assert!(list.contains(&("report.pdf".to_string(), "application/pdf".to_string())));
    assert!(list.contains(&(
        "Minutes für March.eml".to_string(),
        "message/rfc822".to_string()
    )));
    assert_eq!(
        attached_as_file(&restored, "Minutes für March.eml"),
        Some(("message/rfc822".to_string(), taken_mail.into_bytes()))
    );
    assert_eq!(
        attached_as_file(&restored, "report.pdf"),
        Some(("application/pdf".to_string(), taken_pdf))
    );
    drop(gw);
}

/// An 8 MB attachment goes up in three ranges (two of 12 x 320 KiB and the rest). (a) The
/// second range's answer is lost (`dropAnswer`: Outlook took the bytes); the gateway sends it
/// again and gets 416; the restorer cancels the session, finds no attachment and uploads it
/// in a new session: the message is restored in the same apply, its attachment once, byte
/// for byte, and the outcome's note says a new session was needed. (b) The last range's
/// answer is lost: the range sent again finds no session (404), the listing shows the
/// attachment, and nothing is uploaded again (one copy). (c) Every `PUT` refused (500, a
/// gateway without retries): after three sessions, each cancelled, the action fails naming
/// the attachment; the draft has no part of it and no session is left open; the next apply
/// finishes the message.
#[test]
fn a_lost_upload_answer_does_not_fail_the_message_and_refused_uploads_fail_it_by_name() {
    const IMID: &str = "<lost-answer@fabrikam.com>";
    let env = Env::start();
    let user = env
        .sim
        .with_tenant(|t| t.mail.boxes.keys().next().unwrap().clone());
    let film = bytes(8_000_000, 6);
    let mime = format!(
        "From: Megan Bowen <megan@fabrikam.com>\r\nTo: Adele Vance <adele@contoso.com>\r\n\
         Subject: The launch film\r\nDate: Wed, 4 Nov 2026 08:00:00 +0000\r\n\
         Message-ID: {IMID}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"film-1\"\r\n\r\n--film-1\r\n\
         Content-Type: text/plain; charset=\"utf-8\"\r\n\r\nThe cut for Friday.\r\n--film-1\r\n\
         Content-Type: video/mp4; name=\"film.mp4\"\r\nContent-Disposition: attachment; filename=\"film.mp4\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--film-1--\r\n",
        wrap(&b64(&film)),
    );
    env.sim
        .with_tenant(|t| mail::insert_mime(t, &user, "inbox", &mime))
        .unwrap();
    let gw = env.gateway();
    let content = Arc::new(MemContent::default());
    let mut col = collector(
        &env.wasm,
        gw.for_task("mail"),
        content.clone(),
        &json!({"users": [user]}),
    );
    let mut snap = Snapshot::default();
    let run = run_all(&mut col, &mut snap);
    assert!(run.tasks.values().all(|r| r.error.is_none()));
    let (key, _) = snap
        .of_kind("message")
        .into_iter()
        .find(|(_, s)| s.body["internetMessageId"] == IMID)
        .expect("the message is backed up");
    let delete_live = || {
        for (id, _) in env.by_imid(&user, IMID) {
            let (status, _) = env.send(
                "DELETE",
                &format!("/v1.0/users/{user}/messages/{}", pct_encode(&id)),
            );
            assert_eq!(status, 204);
        }
    };
    delete_live();
    let rec = Recorder::new(gw.for_task("restore"));
    let action: Action = {
        let mut r = restorer(&env, rec.clone(), &content, &snap);
        let plan = r.restore_plan(&request(&key)).unwrap().unwrap();
        assert_eq!(plan.len(), 1, "{plan:#?}");
        assert!(plan[0].summary.contains("film.mp4"), "{}", plan[0].summary);
        plan[0].clone()
    };
    let open_sessions = || env.sim.with_tenant(|t| t.mail.sessions.len());
    // Applies the action through `graph` with `rules`: the outcome and the counts of
    // createUploadSession, range PUTs, DELETEs of upload URLs and attachment listings.
    let apply = |graph: &Arc<Recorder>, rules: Vec<FaultRule>| {
        env.sim.clear_faults();
        for r in rules {
            env.sim.add_fault(r);
        }
        graph.take();
        let out: Result<Outcome, PluginError> = restorer(&env, graph.clone(), &content, &snap)
            .restore_apply(&action)
            .unwrap();
        env.sim.clear_faults();
        let reqs = graph.take();
        let count = |method: &str, part: &str| {
            reqs.iter()
                .filter(|r| r.starts_with(method) && r.contains(part))
                .count()
        };
        let counts = [
            count("POST", "/createUploadSession"),
            count("PUT", "/AttachmentSessions("),
            count("DELETE", "/AttachmentSessions("),
            count("GET", "/attachments?"),
        ];
        (out, counts)
    };
    // The restored message: there once, its one `film.mp4` byte for byte (listed and in the
    // MIME). Returns its attachments' names.
    let restored = || {
        let live = env.by_imid(&user, IMID);
        assert_eq!(live.len(), 1, "restored once: {live:?}");
        let id = pct_encode(&live[0].0);
        let list = env.json(&format!(
            "/v1.0/users/{user}/messages/{id}/attachments?$select=id,name,size"
        ))["value"]
            .as_array()
            .unwrap()
            .clone();
        let films: Vec<&Value> = list.iter().filter(|a| a["name"] == "film.mp4").collect();
        if let [one] = films.as_slice() {
            assert_eq!(one["size"], json!(film.len()));
            let (status, raw) = env.send(
                "GET",
                &format!(
                    "/v1.0/users/{user}/messages/{id}/attachments/{}/$value",
                    pct_encode(one["id"].as_str().unwrap())
                ),
            );
            assert_eq!(status, 200);
            assert!(raw == film, "the attachment's bytes equal the original's");
            let (_, raw) = env.send("GET", &format!("/v1.0/users/{user}/messages/{id}/$value"));
            let parsed = parse_mime(&String::from_utf8(raw).unwrap());
            let part = parsed.attachments.iter().find(|a| a.name == "film.mp4");
            assert!(
                part.is_some_and(|a| a.bytes == film),
                "decoded from the MIME"
            );
        }
        assert_eq!(open_sessions(), 0, "no upload session left open");
        list.iter()
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let put = |kind: FaultKind| FaultRule::new("*/AttachmentSessions(*", kind).method("PUT");

    // (a) The second range's answer lost.
    let (out, counts) = apply(&rec, vec![put(FaultKind::DropAnswer).after(1).times(1)]);
    let out = out.unwrap_or_else(|e| panic!("{e:?}"));
    assert!(!out.already_done);
    assert!(
        out.notes.iter().any(|n| n
            .starts_with("`film.mp4` needed 1 new upload session after a range's upload failed")
            && n.contains("HTTP 416")),
        "{:?}",
        out.notes
    );
    // Sessions, PUTs (2 + 3), the cancel, the listings before and after.
    assert_eq!(counts, [2, 5, 1, 2]);
    assert_eq!(restored(), ["film.mp4"]);
    delete_live();

    // (b) The last range's answer lost: the attachment is there, not uploaded again.
    let (out, counts) = apply(&rec, vec![put(FaultKind::DropAnswer).after(2).times(1)]);
    let out = out.unwrap_or_else(|e| panic!("{e:?}"));
    assert!(
        out.notes
            .iter()
            .any(|n| n.starts_with("the upload of `film.mp4` failed (")
                && n.ends_with("so it was not uploaded again")),
        "{:?}",
        out.notes
    );
    assert_eq!(counts, [1, 3, 1, 2]);
    assert_eq!(restored(), ["film.mp4"], "one copy");
    delete_live();

    // (c) Every PUT refused: three sessions, each cancelled, then the action fails.
    let quiet_gw = env.gateway_without_retries();
    let quiet = Recorder::new(quiet_gw.for_task("restore"));
    let refused = FaultKind::ServerError {
        status: 500,
        retry_after: None,
    };
    let (out, counts) = apply(&quiet, vec![put(refused)]);
    let err = format!("{:?}", out.expect_err("the action fails"));
    assert!(
        err.contains(
            "uploading the attachment `film.mp4` (8000000 bytes) failed in 3 upload sessions"
        ) && err.contains("HTTP 500")
            && err.contains("run the restore again"),
        "{err}"
    );
    assert_eq!(counts, [3, 3, 3, 4]);
    assert!(
        restored().is_empty(),
        "the draft has no part of the attachment"
    );
    // The next apply finishes the draft.
    let (out, counts) = apply(&rec, vec![]);
    let out = out.unwrap_or_else(|e| panic!("{e:?}"));
    assert!(
        out.notes
            .iter()
            .any(|n| n.contains("finished a restored message that lacked `film.mp4`")),
        "{:?}",
        out.notes
    );
    assert_eq!(counts[..3], [1, 3, 0]);
    assert_eq!(restored(), ["film.mp4"]);
    drop((quiet_gw, gw));
}
