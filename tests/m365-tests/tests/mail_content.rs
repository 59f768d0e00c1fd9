//! How the m365-mail collector stores large messages: streamed by the host up to 4 at once
//! (`content.download-many`), byte for byte, a vanished one recorded against its message;
//! and, through the engine into an age repository, an attachment that many mailboxes share is
//! stored about once (MIME-aware chunking), reading back byte for byte.

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cairn_graph_sim::{mail, FaultKind, FaultRule, LatencyModel, Profile, SimConfig};
use cairn_m365_tests::*;
use cairn_runtime::{BatchItem, GraphConnection, HttpRequest, HttpResponse};
use serde_json::json;
use url::Url;

/// Counts downloads in flight (from the call until its body is read to the end or dropped).
struct InFlight {
    inner: Arc<dyn GraphConnection>,
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
    downloads: AtomicUsize,
}

struct Body {
    inner: Box<dyn Read + Send>,
    now: Arc<AtomicUsize>,
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

impl GraphConnection for InFlight {
    fn base_url(&self) -> &Url {
        self.inner.base_url()
    }
    fn send(&self, request: HttpRequest) -> Result<HttpResponse, String> {
        self.inner.send(request)
    }
    fn batch(&self, requests: Vec<BatchItem>) -> Result<Vec<HttpResponse>, String> {
        self.inner.batch(requests)
    }
    fn download(&self, request: HttpRequest) -> Result<Box<dyn Read + Send>, String> {
        self.downloads.fetch_add(1, Ordering::SeqCst);
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        match self.inner.download(request) {
            Ok(r) => Ok(Box::new(Body {
                inner: r,
                now: self.now.clone(),
            })),
            Err(e) => {
                self.now.fetch_sub(1, Ordering::SeqCst);
                Err(e)
            }
        }
    }
}

fn mime_with_attachment(to: &str, n: usize, boundary: &str, attachment: &str) -> String {
    format!(
        "From: Finance <finance@contoso.com>\r\nTo: {to}\r\nSubject: Q4 figures {n}\r\n\
         Date: Mon, 30 Nov 2026 06:00:00 +0000\r\nMessage-ID: <q4-{n}-{to}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\n\
         Content-Type: text/plain\r\n\r\nFigures attached ({n}).\r\n--{boundary}\r\n\
         Content-Type: application/octet-stream; name=\"q4.xlsx\"\r\n\
         Content-Disposition: attachment; filename=\"q4.xlsx\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         {attachment}\r\n--{boundary}--\r\n"
    )
}

#[test]
fn large_messages_download_concurrently_byte_for_byte_and_a_vanished_one_is_recorded() {
    let env = SimEnv::start(
        SimConfig::new(Profile::Small, 21).with_latency(LatencyModel {
            base: std::time::Duration::from_millis(40),
            per_object: std::time::Duration::ZERO,
        }),
    );
    let (sim, wasm) = (&env.sim, &env.wasm);
    let user = sim.with_tenant(|t| t.mail.boxes.keys().next().cloned().unwrap());
    let att = attachment_b64(5, 150_000);
    let mut large = Vec::new();
    for n in 0..7 {
        let mime = mime_with_attachment(&user, n, &format!("b{n}"), &att);
        let id = sim
            .with_tenant(|t| mail::insert_mime(t, &user, "inbox", &mime))
            .unwrap();
        large.push((id, mime));
    }
    let vanished = large[3].0.clone();
    sim.add_fault(
        FaultRule::new(
            &format!("/v1.0/users/{user}/messages/{vanished}/$value"),
            FaultKind::Error {
                status: 404,
                code: "ErrorItemNotFound".into(),
                message: "The specified object was not found in the store.".into(),
            },
        )
        .times(1),
    );
    let gw = env.gateway();
    let conn = Arc::new(InFlight {
        inner: gw.for_task("mail"),
        now: Arc::new(AtomicUsize::new(0)),
        max: Arc::new(AtomicUsize::new(0)),
        downloads: AtomicUsize::new(0),
    });
    let content = Arc::new(MemContent::default());
    let mut inst = collector(
        wasm,
        conn.clone(),
        content.clone(),
        &json!({"users": [user]}),
    );
    let mut snap = Snapshot::default();
    let run = run_all(&mut inst, &mut snap);
    let task = &run.tasks[&format!("mailbox/{user}")];
    assert!(task.error.is_none(), "{:?}", task.error);
    // Only the large messages are streamed (the mailbox's small ones ride in `$batch`), and
    // several at once, never more than Outlook's 4 per mailbox.
    assert_eq!(conn.downloads.load(Ordering::SeqCst), large.len());
    let max = conn.max.load(Ordering::SeqCst);
    assert!((2..=4).contains(&max), "{max} downloads in flight at most");
    let messages = snap.of_kind("message");
    for (id, mime) in &large {
        let found = messages.iter().find(|(_, m)| m.body["id"] == id.as_str());
        if *id == vanished {
            // Gone between the delta page and the download: only its error is recorded.
            assert!(found.is_none(), "the vanished message has no record");
            continue;
        }
        let (key, _) = found.unwrap_or_else(|| panic!("message {id} missing"));
        let stored = snap
            .part_bytes("message", key, "mime", &content)
            .unwrap_or_else(|| panic!("no MIME for {id}"));
        assert_eq!(stored, mime.as_bytes(), "MIME of {id}");
    }
    let errors = snap.of_kind("messageError");
    let err = errors
        .values()
        .find(|e| e.body["messageId"] == vanished.as_str())
        .expect("a messageError for the vanished message");
    assert_eq!(err.body["reason"], "vanished");
    assert_eq!(errors.len(), 1, "{errors:?}");
}

#[test]
fn an_attachment_shared_by_many_mailboxes_is_stored_about_once() {
    let env = SimEnv::small(22);
    let sim = &env.sim;
    let users: Vec<String> = sim.with_tenant(|t| t.mail.boxes.keys().take(12).cloned().collect());
    let gw = env.gateway();
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(env.wasm.clone(), dir.path());
    let plugin = mail_plugin(&env.wasm);
    let backup = || {
        let report = backup_mail(&plugin, &gw, &repo, json!({"users": users}), 4);
        assert!(!report.partial(), "{:?}", report.tasks);
        report
    };
    backup();
    let base = dir_size(dir.path());
    // The same 1 MB attachment (1.4 MB as base64) arrives in every mailbox, each copy in a
    // message with its own headers and boundary; a small shared attachment (inline part) too.
    let raw = 1_000_000;
    let att = attachment_b64(9, raw);
    let small = attachment_b64(10, 20_000);
    let mut sent = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let big = mime_with_attachment(u, i, &format!("=_big_{i}_{}", "x".repeat(i)), &att);
        let little = mime_with_attachment(u, 100 + i, &format!("s{i}"), &small);
        sim.with_tenant(|t| {
            mail::insert_mime(t, u, "inbox", &big).unwrap();
            mail::insert_mime(t, u, "inbox", &little).unwrap();
        });
        sent.push(big);
    }
    let report = backup();
    let grown = dir_size(dir.path()) - base;
    let mime_bytes: u64 = report.tasks.values().map(|t| t.content_bytes).sum();
    assert!(mime_bytes > (users.len() * att.len()) as u64);
    // One copy of the attachment (base64 of random bytes compresses to about the raw size),
    // plus per message: its own headers, the new items, trees, index and snapshot.
    let ratio = grown as f64 / raw as f64;
    assert!(
        ratio < 1.4,
        "{} copies grew the repository by {grown} bytes = {ratio:.2}x one attachment",
        users.len()
    );
    // Every copy reads back byte for byte.
    let r = &repo.reader;
    let latest = r.latest_snapshot().unwrap().unwrap();
    let mut found = 0;
    for (u, big) in users.iter().zip(&sent) {
        let task = latest.snapshot.task(&format!("mail/mailbox/{u}")).unwrap();
        let entries = r.tree_entries(task.tree).unwrap();
        let part = entries
            .iter()
            .filter(|e| e.kind == "message")
            .flat_map(|e| e.parts.iter())
            .find(|p| p.size == big.len() as u64)
            .unwrap_or_else(|| panic!("no stored MIME of {} bytes for {u}", big.len()));
        let mut back = Vec::new();
        r.part_reader(part).read_to_end(&mut back).unwrap();
        assert_eq!(back, big.as_bytes(), "mailbox {u}");
        found += 1;
    }
    assert_eq!(found, users.len());
}
