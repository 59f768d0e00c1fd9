//! init/open, items, parts, dedup, change listings, diff, signing, resume.

use crate::common;

use std::sync::Arc;

use cairn_repository::*;
use common::*;
use serde_json::json;

#[test]
fn open_missing_and_non_repository_and_newer_version_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Missing directory.
    let missing = dir.path().join("nope");
    let err = Repository::open(dir_backend(&missing), OpenOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, Error::NoRepository { .. }), "{err}");
    assert!(err.to_string().contains("no Cairn repository"), "{err}");
    assert!(!missing.exists(), "open must not create the directory");

    // A directory with other files.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), b"hello").unwrap();
    let err = Repository::open(dir_backend(&other), OpenOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, Error::NotARepository { .. }), "{err}");
    assert!(err.to_string().contains("notes.txt"), "{err}");
    // init refuses a non-empty directory.
    let err = Repository::init(dir_backend(&other), InitOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, Error::InitRefused { .. }), "{err}");
    assert_eq!(
        std::fs::read_dir(&other).unwrap().count(),
        1,
        "nothing written"
    );

    // A config that is not ours.
    let foreign = dir.path().join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("config"), br#"{"version":2,"id":"x"}"#).unwrap();
    let err = Repository::open(dir_backend(&foreign), OpenOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, Error::NotARepository { .. }), "{err}");

    // Newer format version.
    let t = init_repo();
    let cfg_path = t.path().join("config");
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    cfg["version"] = json!(FORMAT_VERSION + 1);
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let before = t.keys();
    let err = Repository::open(t.backend(), OpenOptions::default())
        .err()
        .unwrap();
    assert!(
        matches!(err, Error::NewerVersion { found, .. } if found == FORMAT_VERSION + 1),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade Cairn"), "{err}");
    assert_eq!(t.keys(), before, "nothing written");
}

#[test]
fn init_open_keys_and_reinit() {
    let t = init_repo();
    let keys = t.keys();
    assert!(keys.contains(&"config".to_string()));
    assert_eq!(keys.iter().filter(|k| k.starts_with("keys/")).count(), 1);
    // Open with the key from keys/ (what a reader with the identity does) …
    let r = Repository::open(t.backend(), OpenOptions::default()).unwrap();
    assert_eq!(r.id_key(), t.repo.id_key());
    // … or from the writer key file.
    let wk = t.repo.writer_key_file();
    let k = IdKey::from_hex(&wk.id_key).unwrap();
    Repository::open(t.backend(), OpenOptions { id_key: Some(k) }).unwrap();
    // A wrong key is refused.
    let err = Repository::open(
        t.backend(),
        OpenOptions {
            id_key: Some(IdKey::generate()),
        },
    )
    .err()
    .unwrap();
    assert!(matches!(err, Error::WrongIdKey { .. }), "{err}");
    // init on an existing repository is refused.
    let err = Repository::init(t.backend(), InitOptions::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("already exists"), "{err}");
}

#[test]
fn items_round_trip_and_unchanged_backup_adds_only_a_snapshot() {
    let t = init_repo();
    let s1 = backup_users(&t.repo, 500, |_| 0, WriterOptions::default());
    let r = t.reopen();
    let snap = r.snapshot(&s1).unwrap();
    assert_eq!(snap.tasks.len(), 1);
    let task = &snap.tasks[0];
    assert_eq!(task.items, 500);
    assert_eq!(task.checkpoint.as_deref(), Some("delta-500"));
    let entries = r.tree_entries(task.tree).unwrap();
    assert_eq!(entries.len(), 500);
    let mut sorted = entries.clone();
    sorted.sort_by(|a, b| a.key().cmp(&b.key()));
    assert_eq!(entries, sorted, "entries are sorted by (kind, id)");
    let e = r
        .find_entry(task.tree, "user", &user_id(42))
        .unwrap()
        .unwrap();
    assert_eq!(e.name, "User 42");
    assert_eq!(r.read_item(&e).unwrap(), user(42, 0));
    // The stored body is canonical JSON (sorted keys, no spaces).
    let bytes = r.read_item_bytes(&e).unwrap();
    assert_eq!(bytes, canonical::canonical_bytes(&user(42, 0)));

    // The same data again: nothing new but the snapshot (trees and bodies dedup).
    let before: std::collections::BTreeSet<String> = t.keys().into_iter().collect();
    let s2 = backup_users(&t.repo, 500, |_| 0, WriterOptions::default());
    let after: std::collections::BTreeSet<String> = t.keys().into_iter().collect();
    let new: Vec<&String> = after.difference(&before).collect();
    assert_eq!(
        new,
        vec![&format!("snapshots/{s2}")],
        "only the snapshot is new"
    );
    let snap2 = r.snapshot(&s2).unwrap();
    assert_eq!(snap2.parent, Some(s1), "hash chain");
    assert_eq!(
        snap2.tasks[0].tree, task.tree,
        "identical tree reused by id"
    );
    // Key order in the input does not matter.
    let w = SnapshotWriter::new(&r, WriterOptions::default()).unwrap();
    let tw = w.task("entra/users", TaskMode::Full).unwrap();
    for i in (0..500).rev() {
        let mut body = serde_json::Map::new();
        let u = user(i, 0);
        let obj = u.as_object().unwrap();
        let mut ks: Vec<&String> = obj.keys().collect();
        ks.reverse();
        for k in ks {
            body.insert(k.clone(), obj[k].clone());
        }
        let body = serde_json::Value::Object(body);
        let id = user_id(i);
        let name = format!("User {i}");
        let out = tw
            .put_item(&Item {
                kind: "user",
                id: &id,
                name: &name,
                body: &body,
                parts: vec![],
            })
            .unwrap();
        assert!(!out.stored, "reordered keys dedup");
    }
    // JSON text with other spacing and member order dedups too.
    let text = "{ \"revision\": 0, \"id\": \"".to_string() + &user_id(3) + "\" }";
    let a = tw.put_item_json("probe", "p1", "p", &text, vec![]).unwrap();
    let b = tw
        .put_item_json(
            "probe",
            "p1",
            "p",
            &format!("{{\"id\":\"{}\",\"revision\":0}}", user_id(3)),
            vec![],
        )
        .unwrap();
    assert_eq!(a.body, b.body);
    assert!(!b.stored);
    assert!(tw
        .put_item_json("probe", "bad", "p", "{not json", vec![])
        .is_err());
    tw.delete_item("probe", "p1");
    let rec = tw.finish(None).unwrap();
    assert_eq!(rec.tree, task.tree);
    w.commit(json!({})).unwrap();
    check_ok(&r);
}

#[test]
fn change_listing_merges_onto_parent_and_diff_is_exact() {
    let t = init_repo();
    let s1 = backup_users(&t.repo, 300, |_| 0, WriterOptions::default());
    let r = t.reopen();
    let w = SnapshotWriter::new(&r, WriterOptions::default()).unwrap();
    assert_eq!(w.parent(), Some(s1));
    assert_eq!(
        w.parent_task("entra/users").unwrap().checkpoint.as_deref(),
        Some("delta-300")
    );
    let tw = w.task("entra/users", TaskMode::Changes).unwrap();
    // change 3, delete 2, add 1
    for i in [5usize, 100, 299] {
        let body = user(i, 1);
        let id = user_id(i);
        tw.put_item(&Item {
            kind: "user",
            id: &id,
            name: "changed",
            body: &body,
            parts: vec![],
        })
        .unwrap();
    }
    tw.delete_item("user", &user_id(7));
    tw.delete_item("user", &user_id(8));
    let body = user(1000, 0);
    let nid = user_id(1000);
    tw.put_item(&Item {
        kind: "user",
        id: &nid,
        name: "new",
        body: &body,
        parts: vec![],
    })
    .unwrap();
    let rec = tw.finish(Some("delta-next".into())).unwrap();
    assert_eq!(rec.items, 300 - 2 + 1);
    let s2 = w.commit(json!({"changes": 6})).unwrap();
    let a = r.snapshot(&s1).unwrap();
    let b = r.snapshot(&s2).unwrap();
    let entries = r.tree_entries(b.tasks[0].tree).unwrap();
    assert_eq!(entries.len(), 299);
    assert_eq!(
        r.read_item(entries.iter().find(|e| e.id == user_id(5)).unwrap())
            .unwrap(),
        user(5, 1)
    );
    assert_eq!(
        r.read_item(entries.iter().find(|e| e.id == user_id(6)).unwrap())
            .unwrap(),
        user(6, 0)
    );
    assert!(entries.iter().all(|e| e.id != user_id(7)));

    let d = r.diff(&a, &b).unwrap();
    assert_eq!(d.tasks.len(), 1);
    let td = &d.tasks[0];
    let ids = |v: &Vec<Entry>| v.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&td.added), vec![user_id(1000)]);
    assert_eq!(ids(&td.removed), vec![user_id(7), user_id(8)]);
    let changed: Vec<String> = td.changed.iter().map(|(o, _)| o.id.clone()).collect();
    assert_eq!(changed, vec![user_id(5), user_id(100), user_id(299)]);
    for (o, n) in &td.changed {
        assert_ne!(o.content_id(r.id_key()), n.content_id(r.id_key()));
    }
    // Diff of a snapshot with itself is empty.
    assert!(r.diff(&b, &b).unwrap().tasks.is_empty());
    check_ok(&r);
}

#[test]
fn parts_are_chunked_streamed_and_deduplicated_across_items() {
    let t = init_repo_with(InitOptions {
        chunker: ChunkerParams {
            min_size: 8 * 1024,
            avg_size: 32 * 1024,
            max_size: 128 * 1024,
        },
        ..Default::default()
    });
    let r = &t.repo;
    let attachment = noise(7, 3 * 1024 * 1024 + 123);
    let w = SnapshotWriter::new(r, WriterOptions::default()).unwrap();
    let tw = w.task("mail/alice", TaskMode::Full).unwrap();
    // Mailbox 1: header + attachment, streamed in odd-sized pieces.
    let mut cw = tw.content_writer();
    use std::io::Write;
    cw.write_all(b"From: alice\r\nSubject: report\r\n\r\n")
        .unwrap();
    for piece in attachment.chunks(7777) {
        cw.write_all(piece).unwrap();
    }
    let mime1 = cw.finish().unwrap().named("mime");
    tw.put_item(&Item {
        kind: "message",
        id: "m1",
        name: "report",
        body: &json!({"subject":"report"}),
        parts: vec![mime1.clone()],
    })
    .unwrap();
    tw.finish(None).unwrap();
    let before = w.stats();
    let tw2 = w.task("mail/bob", TaskMode::Full).unwrap();
    // Mailbox 2: a different header, the same attachment (from a reader).
    let mut data = b"From: carol\r\nTo: bob\r\nSubject: Fwd: report\r\n\r\n".to_vec();
    data.extend_from_slice(&attachment);
    let mime2 = tw2.write_part_from("mime", &data[..]).unwrap();
    tw2.put_item(&Item {
        kind: "message",
        id: "m9",
        name: "fwd",
        body: &json!({"subject":"Fwd: report"}),
        parts: vec![mime2.clone()],
    })
    .unwrap();
    tw2.finish(None).unwrap();
    let after = w.stats();
    let id = w.commit(json!({})).unwrap();
    let new_bytes = after.new_bytes - before.new_bytes;
    assert!(
        new_bytes < 300 * 1024,
        "the repeated attachment should be stored once; second mailbox added {new_bytes} bytes"
    );
    assert!(mime1.chunks.len() > 10);
    let shared = mime2
        .chunks
        .iter()
        .filter(|c| mime1.chunks.contains(c))
        .count();
    assert!(
        shared >= mime1.chunks.len() - 3,
        "{shared} of {} chunks shared",
        mime1.chunks.len()
    );
    // Read back, streaming.
    let r2 = t.reopen();
    let snap = r2.snapshot(&id).unwrap();
    let e = r2
        .find_entry(snap.task("mail/bob").unwrap().tree, "message", "m9")
        .unwrap()
        .unwrap();
    assert_eq!(e.parts[0].size, data.len() as u64);
    let mut back = Vec::new();
    std::io::copy(&mut r2.part_reader(&e.parts[0]), &mut back).unwrap();
    assert_eq!(back, data);
    // Chunking does not depend on how the stream was split.
    let tw3 = SnapshotWriter::new(&r2, WriterOptions::default()).unwrap();
    let t3 = tw3.task("x", TaskMode::Full).unwrap();
    assert_eq!(t3.write_part("mime", &data).unwrap(), mime2);
    check_ok(&r2);
}

#[test]
fn signed_snapshots_verify_and_tampering_is_detected() {
    let key = generate_signing_key();
    let pk = hex::encode(key.verifying_key().as_bytes());
    let t = init_repo_with(InitOptions {
        signers: vec![pk.clone()],
        ..Default::default()
    });
    let s1 = backup_users(
        &t.repo,
        20,
        |_| 0,
        WriterOptions {
            signing_key: Some(key.clone()),
            ..Default::default()
        },
    );
    let snap = t.repo.snapshot(&s1).unwrap();
    assert_eq!(snap.verify_signature().unwrap(), Some(pk.clone()));
    check_ok(&t.repo);
    // An unsigned snapshot is an error when signers are configured.
    let s2 = backup_users(&t.repo, 20, |_| 1, WriterOptions::default());
    let r = t.repo.check(&CheckOptions::default()).unwrap();
    assert!(
        r.errors
            .iter()
            .any(|p| p.message.contains("not signed") && p.snapshots == vec![s2]),
        "{r}"
    );
    // A tampered snapshot (re-written with a changed tag, old signature) fails verification.
    let mut forged = snap.clone();
    forged.tags.push("forged".into());
    assert!(forged.verify_signature().is_err());
    let bytes = canonical::to_canonical_vec(&forged).unwrap();
    let fid = t.repo.id_key().hash(&bytes);
    t.repo
        .backend()
        .put(&format!("snapshots/{fid}"), bytes)
        .unwrap();
    let r = t.repo.check(&CheckOptions::default()).unwrap();
    assert!(
        r.errors
            .iter()
            .any(|p| p.snapshots == vec![fid] && p.message.contains("tampered")),
        "{r}"
    );
}

#[test]
fn broken_chain_is_reported_but_forgotten_parents_are_fine() {
    let t = init_repo();
    let s1 = backup_users(&t.repo, 10, |_| 0, WriterOptions::default());
    let s2 = backup_users(&t.repo, 10, |_| 1, WriterOptions::default());
    check_ok(&t.repo);
    // Deleting s1 behind the repository's back breaks the chain.
    std::fs::remove_file(t.path().join(format!("snapshots/{s1}"))).unwrap();
    let r = t.repo.check(&CheckOptions::default()).unwrap();
    assert!(
        r.errors
            .iter()
            .any(|p| p.snapshots == vec![s2] && p.message.contains("broken chain")),
        "{r}"
    );
    // A forget record makes it a legitimate gap.
    t.repo
        .backend()
        .put(&format!("forgotten/{s1}"), b"{}".to_vec())
        .unwrap();
    check_ok(&t.repo);
}

#[test]
fn interrupted_run_resumes_from_checkpoint() {
    let t = init_repo();
    let r = &t.repo;
    let opts = || WriterOptions {
        pack: Some(small_packs()),
        checkpoint_interval: Some(std::time::Duration::ZERO),
        ..Default::default()
    };
    {
        let w = SnapshotWriter::new(r, opts()).unwrap();
        let done = w.task("entra/groups", TaskMode::Full).unwrap();
        done.put_item(&Item {
            kind: "group",
            id: "g1",
            name: "G1",
            body: &json!({"id":"g1"}),
            parts: vec![],
        })
        .unwrap();
        done.finish(Some("groups-delta".into())).unwrap();
        let tw = w.task("entra/users", TaskMode::Full).unwrap();
        for i in 0..150 {
            put_user(&tw, i, 0);
            if i == 99 {
                tw.checkpoint("page-100").unwrap();
            }
        }
        // Dropped without finishing or committing: the process died.
    }
    assert!(r.snapshots().unwrap().is_empty());
    let rep = check_ok(r);
    assert!(
        !rep.warnings
            .iter()
            .any(|w| w.object.starts_with("checkpoints/")),
        "{rep}"
    );
    let runs = r.unfinished_runs().unwrap();
    assert_eq!(runs.len(), 1);
    let w = SnapshotWriter::resume(r, &runs[0], opts()).unwrap();
    assert!(matches!(
        w.task_progress("entra/groups"),
        Some(TaskProgress::Done(_))
    ));
    match w.task_progress("entra/users") {
        Some(TaskProgress::Resumable { cursor, items }) => {
            assert_eq!(cursor.as_deref(), Some("page-100"));
            assert_eq!(items, 100);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        w.task("entra/groups", TaskMode::Full).is_err(),
        "finished tasks are not redone"
    );
    let tw = w.task("entra/users", TaskMode::Full).unwrap();
    assert_eq!(tw.resumed_cursor(), Some("page-100"));
    let before = w.stats();
    for i in 100..200 {
        put_user(&tw, i, 0);
    }
    tw.finish(Some("users-delta".into())).unwrap();
    assert_eq!(
        w.stats().items - before.items,
        100,
        "only the rest was sent"
    );
    let run = w.run_id().to_string();
    let id = w.commit(json!({})).unwrap();
    let s = r.snapshot(&id).unwrap();
    assert_eq!(s.run, run);
    assert_eq!(s.task("entra/users").unwrap().items, 200);
    assert_eq!(
        s.task("entra/groups").unwrap().checkpoint.as_deref(),
        Some("groups-delta")
    );
    assert!(r.unfinished_runs().unwrap().is_empty());
    check_ok(r);
}

#[test]
fn step_checkpoints_are_written_once_per_interval() {
    let t = init_repo();
    let r = &t.repo;
    {
        let w = SnapshotWriter::new(
            r,
            WriterOptions {
                pack: Some(small_packs()),
                checkpoint_interval: Some(std::time::Duration::from_secs(3600)),
                ..Default::default()
            },
        )
        .unwrap();
        let tw = w.task("entra/users", TaskMode::Full).unwrap();
        put_user(&tw, 0, 0);
        assert!(
            !tw.checkpoint_if_due("page-1").unwrap(),
            "none before the interval has passed since the run started"
        );
        tw.checkpoint("page-1").unwrap(); // explicit: always written
        put_user(&tw, 1, 0);
        assert!(
            !tw.checkpoint_if_due("page-2").unwrap(),
            "the next waits for the interval"
        );
        // Killed here: the rerun starts from the last written checkpoint.
    }
    let runs = r.unfinished_runs().unwrap();
    assert_eq!(runs.len(), 1);
    let w = SnapshotWriter::resume(
        r,
        &runs[0],
        WriterOptions {
            checkpoint_interval: Some(std::time::Duration::ZERO),
            ..Default::default()
        },
    )
    .unwrap();
    match w.task_progress("entra/users") {
        Some(TaskProgress::Resumable { cursor, items }) => {
            assert_eq!(cursor.as_deref(), Some("page-1"));
            assert_eq!(items, 1);
        }
        other => panic!("unexpected {other:?}"),
    }
    let tw = w.task("entra/users", TaskMode::Full).unwrap();
    put_user(&tw, 1, 0);
    assert!(tw.checkpoint_if_due("page-2").unwrap());
    assert!(
        tw.checkpoint_if_due("page-3").unwrap(),
        "a zero interval writes after every step"
    );
    tw.finish(Some("users-delta".into())).unwrap();
    let id = w.commit(json!({})).unwrap();
    assert_eq!(
        r.snapshot(&id).unwrap().task("entra/users").unwrap().items,
        2
    );
    check_ok(r);
}

#[test]
fn failed_and_carried_tasks() {
    let t = init_repo();
    let r = &t.repo;
    let s1 = {
        let w = SnapshotWriter::new(r, WriterOptions::default()).unwrap();
        for name in ["a", "b", "c"] {
            let tw = w.task(name, TaskMode::Full).unwrap();
            tw.put_item(&Item {
                kind: "k",
                id: name,
                name,
                body: &json!({"n": name}),
                parts: vec![],
            })
            .unwrap();
            tw.finish(Some(format!("cp-{name}"))).unwrap();
        }
        w.commit(json!({})).unwrap()
    };
    let w = SnapshotWriter::new(
        r,
        WriterOptions {
            tags: vec!["nightly".into()],
            ..Default::default()
        },
    )
    .unwrap();
    let ta = w.task("a", TaskMode::Full).unwrap();
    ta.put_item(&Item {
        kind: "k",
        id: "half",
        name: "x",
        body: &json!(1),
        parts: vec![],
    })
    .unwrap();
    ta.fail("Graph returned 503 five times").unwrap();
    let tn = w.task("new", TaskMode::Full).unwrap();
    tn.fail("boom").unwrap();
    w.carry_remaining().unwrap();
    let s2 = w.commit(json!({"requests": 12})).unwrap();
    let snap = r.snapshot(&s2).unwrap();
    let p = r.snapshot(&s1).unwrap();
    assert!(snap.partial);
    assert_eq!(snap.failed_tasks, vec!["a".to_string(), "new".to_string()]);
    assert_eq!(snap.tags, vec!["nightly".to_string()]);
    assert_eq!(snap.stats["requests"], json!(12));
    assert_eq!(
        snap.stats["repository"]["items"],
        json!(1),
        "the writer's counters are added"
    );
    let a = snap.task("a").unwrap();
    assert_eq!(a.status, TaskStatus::Failed);
    assert_eq!(
        a.tree,
        p.task("a").unwrap().tree,
        "failed task keeps the parent's tree"
    );
    assert_eq!(a.checkpoint.as_deref(), Some("cp-a"), "and its checkpoint");
    assert_eq!(snap.task("b").unwrap().status, TaskStatus::Carried);
    assert_eq!(snap.task("new").unwrap().items, 0);
    check_ok(r);
}

#[test]
fn two_backups_at_once_both_succeed() {
    let t = init_repo();
    let r1 = t.reopen();
    let r2 = t.reopen();
    let h1 = std::thread::spawn(move || {
        backup_users(
            &r1,
            400,
            |i| i % 3,
            WriterOptions {
                pack: Some(small_packs()),
                parent: ParentChoice::None,
                ..Default::default()
            },
        )
    });
    let h2 = std::thread::spawn(move || {
        backup_users(
            &r2,
            400,
            |i| i % 5,
            WriterOptions {
                pack: Some(small_packs()),
                parent: ParentChoice::None,
                ..Default::default()
            },
        )
    });
    let a = h1.join().unwrap();
    let b = h2.join().unwrap();
    assert_ne!(a, b);
    let r = t.reopen();
    assert_eq!(r.snapshots().unwrap().len(), 2);
    let sa = r.snapshot(&a).unwrap();
    let e = r
        .find_entry(sa.tasks[0].tree, "user", &user_id(7))
        .unwrap()
        .unwrap();
    assert_eq!(r.read_item(&e).unwrap(), user(7, 1));
    check_ok(&r);
    // Parent by tag: two tenants in one repository chain separately.
    let t1 = backup_users(
        &r,
        5,
        |_| 0,
        WriterOptions {
            tags: vec!["tenant:a".into()],
            ..Default::default()
        },
    );
    let _t2 = backup_users(
        &r,
        5,
        |_| 1,
        WriterOptions {
            tags: vec!["tenant:b".into()],
            ..Default::default()
        },
    );
    let w = SnapshotWriter::new(
        &r,
        WriterOptions {
            parent: ParentChoice::LatestTagged(vec!["tenant:a".into()]),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(w.parent(), Some(t1));
    drop(w);
    let w = SnapshotWriter::new(
        &r,
        WriterOptions {
            parent: ParentChoice::LatestTagged(vec!["tenant:c".into()]),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(w.parent(), None);
    drop(w);
    // Many writers through one shared SnapshotWriter (tasks in parallel).
    let w = Arc::new(
        SnapshotWriter::new(
            &r,
            WriterOptions {
                pack: Some(small_packs()),
                ..Default::default()
            },
        )
        .unwrap(),
    );
    let hs: Vec<_> = (0..4)
        .map(|k| {
            let w = w.clone();
            std::thread::spawn(move || {
                let tw = w.task(&format!("mail/{k}"), TaskMode::Full).unwrap();
                for i in 0..200 {
                    let (b, id) = (user(i * 10 + k, 0), user_id(i));
                    tw.put_item(&Item {
                        kind: "message",
                        id: &id,
                        name: "m",
                        body: &b,
                        parts: vec![],
                    })
                    .unwrap();
                }
                tw.finish(None).unwrap();
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let w = Arc::try_unwrap(w).ok().unwrap();
    let id = w.commit(json!({})).unwrap();
    assert_eq!(r.snapshot(&id).unwrap().tasks.len(), 4);
    check_ok(&r);
}

#[test]
fn dropped_task_writer_is_recorded_as_failed_and_key_files_round_trip() {
    let t = init_repo();
    let r = &t.repo;
    let w = SnapshotWriter::new(r, WriterOptions::default()).unwrap();
    {
        let tw = w.task("crashy", TaskMode::Full).unwrap();
        tw.put_item(&Item {
            kind: "k",
            id: "1",
            name: "n",
            body: &json!(1),
            parts: vec![],
        })
        .unwrap();
        // dropped, as when the task's thread panics
    }
    assert_eq!(w.task_progress("crashy"), Some(TaskProgress::Abandoned));
    let ok = w.task("fine", TaskMode::Full).unwrap();
    ok.finish(None).unwrap();
    let id = w.commit(json!({})).unwrap();
    let s = r.snapshot(&id).unwrap();
    assert!(s.partial);
    assert_eq!(s.failed_tasks, vec!["crashy".to_string()]);

    let path = t.dir.path().join("writer.key");
    let mut kf = r.writer_key_file();
    kf.extra
        .insert("metadata_identity".into(), json!("AGE-SECRET-KEY-1…"));
    kf.save(&path).unwrap();
    assert!(kf.save(&path).is_err(), "never overwrites a key file");
    let back = WriterKeyFile::load(&path).unwrap();
    assert_eq!(back.extra["metadata_identity"], json!("AGE-SECRET-KEY-1…"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    Repository::open(
        t.backend(),
        OpenOptions {
            id_key: Some(back.id_key().unwrap()),
        },
    )
    .unwrap();
}

#[test]
fn object_classes_separate_contents_from_metadata() {
    let t = init_repo();
    let r = &t.repo;
    let w = SnapshotWriter::new(
        r,
        WriterOptions {
            checkpoint_interval: Some(std::time::Duration::ZERO),
            ..Default::default()
        },
    )
    .unwrap();
    let tw = w.task("mail/a", TaskMode::Full).unwrap();
    let part = tw.write_part("mime", &noise(1, 500_000)).unwrap();
    tw.put_item(&Item {
        kind: "message",
        id: "m",
        name: "secret subject",
        body: &json!({"body": "secret"}),
        parts: vec![part],
    })
    .unwrap();
    tw.checkpoint("c").unwrap();
    tw.finish(None).unwrap();
    let id = w.commit(json!({})).unwrap();
    r.hold(&id, "case").unwrap();
    let mut seen_data = 0;
    for k in t.keys() {
        let class = ObjectClass::of_key(&k);
        if k.starts_with("data/") {
            seen_data += 1;
            assert_eq!(class, ObjectClass::Data);
            let bytes = std::fs::read(t.path().join(&k)).unwrap();
            for f in pack::parse_header(&bytes).unwrap() {
                for b in f.blobs {
                    assert!(
                        matches!(b.kind, pack::BlobKind::Item | pack::BlobKind::Chunk),
                        "{k}: {b:?}"
                    );
                }
            }
        } else {
            assert_eq!(class, ObjectClass::Metadata, "{k}");
            let bytes = std::fs::read(t.path().join(&k)).unwrap();
            if k.starts_with("tree/") {
                for f in pack::parse_header(&bytes).unwrap() {
                    assert!(
                        f.blobs.iter().all(|b| b.kind == pack::BlobKind::Tree),
                        "{k}"
                    );
                }
            }
            // Item contents never appear in metadata objects (they may be compressed, so
            // check the decompressed form too).
            let plain = zstd_or_plain(&bytes);
            assert!(!contains(&plain, b"secret\""), "item body leaked into {k}");
        }
    }
    assert!(seen_data >= 1);
}

fn contains(h: &[u8], n: &[u8]) -> bool {
    h.windows(n.len()).any(|w| w == n)
}

fn zstd_or_plain(b: &[u8]) -> Vec<u8> {
    if b.starts_with(b"CAIRNPK1") {
        // A tree pack: decompress every frame.
        let mut out = Vec::new();
        for f in pack::parse_header(b).unwrap() {
            out.extend(pack::read_frame(b, f.offset, f.length, f.raw_length).unwrap());
        }
        return out;
    }
    if b.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return zstd::stream::decode_all(b).unwrap();
    }
    b.to_vec()
}

#[test]
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Repository>();
    send_sync::<SnapshotWriter>();
    send_sync::<TaskWriter>();
    send::<ContentWriter<'static>>();
    send::<PartReader>();
    send_sync::<Arc<dyn Backend>>();
}

#[test]
fn bad_parameters_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let be = dir_backend(&dir.path().join("r"));
    for chunker in [
        ChunkerParams {
            min_size: 10,
            avg_size: 1000,
            max_size: 4000,
        },
        ChunkerParams {
            min_size: 4096,
            avg_size: 1024,
            max_size: 8192,
        },
        ChunkerParams {
            min_size: 4096,
            avg_size: 8192,
            max_size: 64 << 20,
        },
    ] {
        let err = Repository::init(
            be.clone(),
            InitOptions {
                chunker,
                ..Default::default()
            },
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("chunker sizes"), "{err}");
    }
    let err = Repository::init(
        be.clone(),
        InitOptions {
            pack: PackParams {
                target_size: 0,
                zstd_level: 3,
                frame_size: 65536,
            },
            ..Default::default()
        },
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("pack parameters"), "{err}");
    assert!(!dir.path().join("r").exists(), "nothing written");
    let t = init_repo();
    let bad = WriterOptions {
        pack: Some(PackParams {
            target_size: 1 << 20,
            zstd_level: 99,
            frame_size: 65536,
        }),
        ..Default::default()
    };
    assert!(SnapshotWriter::new(&t.repo, bad).is_err());
}
