//! Repository benchmark: ingest rate, bytes stored for a full snapshot and for a second one
//! with 1% of items changed, and restore read rate. Prints figures; asserts nothing.
//!
//! `cargo bench -p cairn-repository --bench repository`
//! (sizes: CAIRN_BENCH_USERS, default 20000; CAIRN_BENCH_MESSAGES, default 400)

use std::collections::HashSet;
use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

use cairn_blobstore::BlobStore;
use cairn_repository::*;
use serde_json::{json, Value};

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from_digit((self.next() % 16) as u32, 16).unwrap())
            .collect()
    }
}

fn guid(r: &mut Rng) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        r.hex(8),
        r.hex(4),
        r.hex(4),
        r.hex(4),
        r.hex(12)
    )
}

/// An Entra user object of about 1.2 KB, deterministic in (i, version).
fn user(i: usize, version: usize) -> (String, String, Value) {
    let mut r = Rng((i as u64 + 1) * 0x9E3779B97F4A7C15);
    let id = guid(&mut r);
    let name = format!("User {i:06}");
    let v = json!({
        "id": id,
        "displayName": name,
        "givenName": format!("Given{}", r.hex(5)),
        "surname": format!("Sur{}", r.hex(6)),
        "userPrincipalName": format!("user{i}@contoso.example"),
        "mail": format!("user{i}@contoso.example"),
        "mailNickname": format!("user{i}"),
        "jobTitle": (["Engineer", "Manager", "Analyst", "Designer", "Director"][i % 5]),
        "department": format!("Department {}", i % 37),
        "officeLocation": format!("Building {} / Floor {}", i % 12, i % 7),
        "companyName": "Contoso Ltd",
        "employeeId": format!("E{:07}", r.next() % 10_000_000),
        "accountEnabled": !i.is_multiple_of(11),
        "usageLocation": (["US", "GB", "DE", "FR", "NL"][i % 5]),
        "preferredLanguage": "en-US",
        "businessPhones": [format!("+1 425 555 {:04}", r.next() % 10000)],
        "mobilePhone": format!("+1 206 555 {:04}", r.next() % 10000),
        "createdDateTime": format!("20{:02}-{:02}-{:02}T{:02}:{:02}:{:02}Z", 15 + i % 9, 1 + i % 12, 1 + i % 28, i % 24, i % 60, (i * 7) % 60),
        "onPremisesSyncEnabled": i.is_multiple_of(3),
        "onPremisesSecurityIdentifier": format!("S-1-5-21-{}-{}-{}-{}", r.next() % 1_000_000_000, r.next() % 1_000_000_000, r.next() % 1_000_000_000, 1000 + i),
        "proxyAddresses": [format!("SMTP:user{i}@contoso.example"), format!("smtp:u{i}@contoso.onmicrosoft.com")],
        "assignedLicenses": [{"skuId": guid(&mut r), "disabledPlans": [guid(&mut r)]}],
        "identities": [{"signInType": "userPrincipalName", "issuer": "contoso.example", "issuerAssignedId": format!("user{i}@contoso.example")}],
        "extension_attrs": {"costCenter": format!("CC{}", i % 101), "revision": version},
    });
    (id, name, v)
}

/// A ~100 KB MIME message; messages share one of 20 attachments (as mail does).
fn message(i: usize, version: usize) -> Vec<u8> {
    let mut r = Rng((i as u64 + 7) * 0x2545F4914F6CDD1D + version as u64);
    let mut m = format!(
        "From: sender{}@contoso.example\r\nTo: user{}@contoso.example\r\nSubject: Report {i} v{version}\r\nMessage-ID: <{}@contoso.example>\r\n\r\n",
        i % 97, i % 1000, guid(&mut r)
    )
    .into_bytes();
    for _ in 0..300 {
        m.extend_from_slice(r.hex(64).as_bytes());
        m.extend_from_slice(b"\r\n");
    }
    let mut a = Rng((i % 20) as u64 * 77 + 1);
    for _ in 0..1200 {
        m.extend_from_slice(a.hex(64).as_bytes());
        m.extend_from_slice(b"\r\n");
    }
    m
}

fn stored_bytes(be: &dyn Backend) -> u64 {
    be.list("")
        .unwrap()
        .iter()
        .map(|o| o.size.unwrap_or(0))
        .sum()
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn backup(
    repo: &Repository,
    users: usize,
    msgs: usize,
    changed: &HashSet<usize>,
    mode: TaskMode,
) -> (Id, f64, u64, u64) {
    let t0 = Instant::now();
    let w = SnapshotWriter::new(repo, WriterOptions::default()).unwrap();
    let mut raw = 0u64;
    let mut items = 0u64;
    let tu = w.task("entra/users", mode).unwrap();
    for i in 0..users {
        let v = usize::from(changed.contains(&i));
        if mode == TaskMode::Changes && v == 0 {
            continue;
        }
        let (id, name, body) = user(i, v);
        raw += serde_json::to_vec(&body).unwrap().len() as u64;
        tu.put_item(&Item {
            kind: "user",
            id: &id,
            name: &name,
            body: &body,
            parts: vec![],
        })
        .unwrap();
        items += 1;
    }
    tu.finish(Some("users-delta".into())).unwrap();
    let tm = w.task("mail/mailbox", mode).unwrap();
    for i in 0..msgs {
        let v = usize::from(changed.contains(&(users + i)));
        if mode == TaskMode::Changes && v == 0 {
            continue;
        }
        let mime = message(i, v);
        raw += mime.len() as u64;
        let part = tm.write_part_from("mime", &mime[..]).unwrap();
        let body = json!({"id": format!("msg{i}"), "subject": format!("Report {i} v{v}"), "size": mime.len()});
        tm.put_item(&Item {
            kind: "message",
            id: &format!("msg{i:05}"),
            name: "message",
            body: &body,
            parts: vec![part],
        })
        .unwrap();
        items += 1;
    }
    tm.finish(Some("mail-delta".into())).unwrap();
    let id = w.commit(json!({})).unwrap();
    (id, t0.elapsed().as_secs_f64(), raw, items)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it with few items.
    let quick = std::env::args().all(|a| a != "--bench");
    let users = env_usize("CAIRN_BENCH_USERS", if quick { 500 } else { 20_000 });
    let msgs = env_usize("CAIRN_BENCH_MESSAGES", if quick { 20 } else { 400 });
    let dir = tempfile::tempdir().unwrap();
    let be: Arc<dyn Backend> = Arc::new(
        BlobStore::open(
            dir.path().join("repo").to_str().unwrap(),
            &Default::default(),
        )
        .unwrap(),
    );
    let repo = Repository::init(be.clone(), InitOptions::default()).unwrap();
    let base = stored_bytes(be.as_ref());
    println!("repository benchmark: {users} users (~1.2 KB JSON) + {msgs} messages (~100 KB MIME, 20 shared attachments), local directory store, zstd 3, 4 MiB packs");

    let (s1, secs, raw, items) = backup(&repo, users, msgs, &HashSet::new(), TaskMode::Full);
    let full = stored_bytes(be.as_ref()) - base;
    println!(
        "snapshot 1 (full):          {items} items in {secs:.2} s = {:.0} items/s, {:.1} MiB/s ingested ({:.1} MiB in), stored {:.2} MiB",
        items as f64 / secs,
        mib(raw) / secs,
        mib(raw),
        mib(full)
    );

    let total = users + msgs;
    let mut r = Rng(42);
    let mut changed = HashSet::new();
    while changed.len() < total / 100 {
        changed.insert((r.next() % total as u64) as usize);
    }
    let before = stored_bytes(be.as_ref());
    let (_s2, secs, raw, items) = backup(&repo, users, msgs, &changed, TaskMode::Full);
    let added = stored_bytes(be.as_ref()) - before;
    println!(
        "snapshot 2 (full listing, 1% changed): {items} items in {secs:.2} s = {:.0} items/s, {:.1} MiB/s, added {:.3} MiB = {:.2}% of snapshot 1",
        items as f64 / secs,
        mib(raw) / secs,
        mib(added),
        100.0 * added as f64 / full as f64
    );
    let mut changed3 = HashSet::new();
    while changed3.len() < total / 100 {
        changed3.insert((r.next() % total as u64) as usize);
    }
    let before = stored_bytes(be.as_ref());
    let (s3, secs, _raw, items) = backup(&repo, users, msgs, &changed3, TaskMode::Changes);
    let added = stored_bytes(be.as_ref()) - before;
    println!(
        "snapshot 3 (change listing, 1% changed): {items} items in {secs:.2} s, added {:.3} MiB = {:.2}% of snapshot 1",
        mib(added),
        100.0 * added as f64 / full as f64
    );

    // Restore read: every item body and part of the latest snapshot, from a fresh open.
    let r = Repository::open(
        be.clone(),
        OpenOptions {
            id_key: Some(repo.id_key().clone()),
        },
    )
    .unwrap();
    let t0 = Instant::now();
    let snap = r.snapshot(&s3).unwrap();
    let mut bytes = 0u64;
    let mut n = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    for task in &snap.tasks {
        for e in r.tree_entries(task.tree).unwrap() {
            bytes += r.read_item_bytes(&e).unwrap().len() as u64;
            for p in &e.parts {
                let mut rd = r.part_reader(p);
                loop {
                    let k = rd.read(&mut buf).unwrap();
                    if k == 0 {
                        break;
                    }
                    bytes += k as u64;
                }
            }
            n += 1;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "restore read: {n} items, {:.1} MiB in {secs:.2} s = {:.1} MiB/s, {:.0} items/s",
        mib(bytes),
        mib(bytes) / secs,
        n as f64 / secs
    );
    let t0 = Instant::now();
    let rep = r
        .check(&CheckOptions {
            read_data: ReadData::All,
            ..Default::default()
        })
        .unwrap();
    println!(
        "check --read-data: {} packs, {:.1} MiB in {:.2} s ({})",
        rep.packs_read,
        mib(rep.bytes_read),
        t0.elapsed().as_secs_f64(),
        if rep.is_ok() { "no errors" } else { "ERRORS" }
    );
    let _ = s1;
}
