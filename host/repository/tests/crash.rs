//! Kill-at-every-step: a backup (and a prune) whose storage fails after the N-th write, for
//! every N, leaves a repository `check` passes and the next run completes. Plus a real
//! SIGKILL of a child process mid-run.

use crate::common;

use std::io::{BufRead, BufReader};
use std::sync::Arc;

use cairn_repository::*;
use common::*;
use serde_json::json;

const USERS: usize = 90;
const MESSAGES: usize = 12;
const GROUPS: usize = 40;

fn chunker() -> ChunkerParams {
    ChunkerParams {
        min_size: 4 * 1024,
        avg_size: 8 * 1024,
        max_size: 32 * 1024,
    }
}

fn opts() -> WriterOptions {
    WriterOptions {
        pack: Some(PackParams {
            target_size: 24 * 1024,
            zstd_level: 1,
            frame_size: 8 * 1024,
        }),
        checkpoint_interval: Some(std::time::Duration::ZERO),
        ..Default::default()
    }
}

/// The run under test: a full listing with checkpoints, a mailbox with binary parts, and a
/// change listing merged onto the parent. Resumes if `resume` is given.
fn run(repo: &Repository, resume: Option<&RunProgress>) -> Result<Id> {
    let w = match resume {
        Some(r) => SnapshotWriter::resume(repo, r, opts())?,
        None => SnapshotWriter::new(repo, opts())?,
    };
    if !matches!(w.task_progress("entra/users"), Some(TaskProgress::Done(_))) {
        let t = w.task("entra/users", TaskMode::Full)?;
        let start: usize = t.resumed_cursor().map(|c| c.parse().unwrap()).unwrap_or(0);
        for i in start..USERS {
            let (b, id) = (user(i, 1), user_id(i));
            t.put_item(&Item {
                kind: "user",
                id: &id,
                name: "u",
                body: &b,
                parts: vec![],
            })?;
            if i % 30 == 29 {
                t.checkpoint((i + 1).to_string())?;
            }
        }
        t.finish(Some("users-delta-2".into()))?;
    }
    if !matches!(w.task_progress("mail/alice"), Some(TaskProgress::Done(_))) {
        let t = w.task("mail/alice", TaskMode::Full)?;
        let start: usize = t.resumed_cursor().map(|c| c.parse().unwrap()).unwrap_or(0);
        for i in start..MESSAGES {
            let part = t.write_part("mime", &noise(i as u64 % 5, 20_000 + i * 1000))?;
            t.put_item(&Item {
                kind: "message",
                id: &format!("m{i}"),
                name: "m",
                body: &json!({"i": i}),
                parts: vec![part],
            })?;
            if i % 4 == 3 {
                t.checkpoint((i + 1).to_string())?;
            }
        }
        t.finish(None)?;
    }
    if !matches!(w.task_progress("entra/groups"), Some(TaskProgress::Done(_))) {
        let t = w.task("entra/groups", TaskMode::Changes)?;
        for i in 0..5 {
            t.put_item(&Item {
                kind: "group",
                id: &format!("g{i}"),
                name: "g",
                body: &json!({"g": i, "v": 2}),
                parts: vec![],
            })?;
        }
        t.delete_item("group", "g39");
        t.finish(Some("groups-delta-2".into()))?;
    }
    w.commit(json!({"run": 2}))
}

fn baseline(repo: &Repository) {
    let w = SnapshotWriter::new(repo, opts()).unwrap();
    let t = w.task("entra/users", TaskMode::Full).unwrap();
    for i in 0..USERS {
        let (b, id) = (user(i, if i % 2 == 0 { 1 } else { 0 }), user_id(i));
        t.put_item(&Item {
            kind: "user",
            id: &id,
            name: "u",
            body: &b,
            parts: vec![],
        })
        .unwrap();
    }
    t.finish(Some("users-delta-1".into())).unwrap();
    let g = w.task("entra/groups", TaskMode::Full).unwrap();
    for i in 0..GROUPS {
        g.put_item(&Item {
            kind: "group",
            id: &format!("g{i}"),
            name: "g",
            body: &json!({"g": i, "v": 1}),
            parts: vec![],
        })
        .unwrap();
    }
    g.finish(Some("groups-delta-1".into())).unwrap();
    w.commit(json!({"run": 1})).unwrap();
}

fn verify_final(repo: &Repository, id: &Id) {
    let s = repo.snapshot(id).unwrap();
    assert!(!s.partial);
    let users = repo
        .tree_entries(s.task("entra/users").unwrap().tree)
        .unwrap();
    assert_eq!(users.len(), USERS);
    for e in users.iter().step_by(17) {
        let i = usize::from_str_radix(&e.id[..8], 16).unwrap();
        assert_eq!(repo.read_item(e).unwrap(), user(i, 1));
    }
    let mail = repo
        .tree_entries(s.task("mail/alice").unwrap().tree)
        .unwrap();
    assert_eq!(mail.len(), MESSAGES);
    for e in &mail {
        let i: usize = e.id[1..].parse().unwrap();
        assert_eq!(
            repo.read_part(&e.parts[0]).unwrap(),
            noise(i as u64 % 5, 20_000 + i * 1000)
        );
    }
    let groups = repo
        .tree_entries(s.task("entra/groups").unwrap().tree)
        .unwrap();
    assert_eq!(groups.len(), GROUPS - 1);
    let g0 = groups.iter().find(|e| e.id == "g0").unwrap();
    assert_eq!(repo.read_item(g0).unwrap(), json!({"g": 0, "v": 2}));
    let g10 = groups.iter().find(|e| e.id == "g10").unwrap();
    assert_eq!(repo.read_item(g10).unwrap(), json!({"g": 10, "v": 1}));
}

#[test]
fn backup_killed_after_every_write_recovers() {
    let mut n = 0;
    let mut resumed = 0;
    let total = loop {
        let t = init_repo_with(InitOptions {
            chunker: chunker(),
            ..Default::default()
        });
        baseline(&t.repo);
        let key = t.repo.id_key().clone();
        let failing = FailAfter::new(t.backend(), n);
        let fr = Repository::open(
            failing.clone() as Arc<dyn Backend>,
            OpenOptions {
                id_key: Some(key.clone()),
            },
        )
        .unwrap();
        match run(&fr, None) {
            Ok(id) => {
                // Enough writes allowed to finish: the loop has covered every step.
                verify_final(&fr, &id);
                break n;
            }
            Err(e) => assert!(e.to_string().contains("injected failure"), "step {n}: {e}"),
        }
        // The crashed repository checks clean (orphans are only warnings) …
        let clean = t.reopen();
        let rep = clean
            .check(&CheckOptions {
                read_data: ReadData::All,
                ..Default::default()
            })
            .unwrap();
        assert!(rep.is_ok(), "after a crash at write {n}:\n{rep}");
        assert_eq!(
            clean.snapshots().unwrap().len(),
            1,
            "no half snapshot at step {n}"
        );
        // … and the next run completes, resuming if there is a checkpoint.
        let runs = clean.unfinished_runs().unwrap();
        if !runs.is_empty() {
            resumed += 1;
        }
        let id =
            run(&clean, runs.first()).unwrap_or_else(|e| panic!("rerun after crash at {n}: {e}"));
        verify_final(&clean, &id);
        let rep = clean
            .check(&CheckOptions {
                read_data: ReadData::All,
                ..Default::default()
            })
            .unwrap();
        assert!(rep.is_ok(), "after rerun (crash at {n}):\n{rep}");
        n += 1;
        assert!(n < 2000, "runaway");
    };
    eprintln!("crash-tested {total} write steps, {resumed} resumed from a checkpoint");
    assert!(total > 20, "the run should take many writes, took {total}");
    assert!(
        resumed > total / 2,
        "most crashes resume from a checkpoint ({resumed} of {total})"
    );
}

#[test]
fn prune_killed_after_every_write_recovers() {
    let mut n = 0;
    loop {
        let t = init_repo_with(InitOptions {
            chunker: chunker(),
            ..Default::default()
        });
        baseline(&t.repo);
        let keep = run(&t.repo, None).unwrap();
        t.repo
            .forget(
                &ForgetPolicy {
                    keep_last: Some(1),
                    ..Default::default()
                },
                false,
            )
            .unwrap();
        let now = chrono::Utc::now();
        let o = |s| PruneOptions {
            grace: chrono::Duration::zero(),
            now: Some(now + chrono::Duration::seconds(s)),
            // Any unused share: how much of the partly used pack is unused depends on the random
            // id key (keyed chunking and pack layout), and the test must always repack.
            repack_threshold: (s == 1).then_some(0.000_1),
            ..Default::default()
        };
        t.repo.prune(&o(0)).unwrap(); // phase one done cleanly
        let failing = FailAfter::new(t.backend(), n);
        let fr = Repository::open(
            failing as Arc<dyn Backend>,
            OpenOptions {
                id_key: Some(t.repo.id_key().clone()),
            },
        )
        .unwrap();
        let done = match fr.prune(&o(1)) {
            Ok(rep) => {
                assert!(
                    !rep.repacked.is_empty(),
                    "the run exercises repacking: {rep:?}"
                );
                true
            }
            Err(_) => false,
        };
        let clean = t.reopen();
        let rep = clean
            .check(&CheckOptions {
                read_data: ReadData::All,
                ..Default::default()
            })
            .unwrap();
        assert!(rep.is_ok(), "after prune crash at write {n}:\n{rep}");
        verify_final(&clean, &keep);
        clean.prune(&o(2)).unwrap();
        clean.prune(&o(3)).unwrap();
        check_ok(&clean);
        verify_final(&clean, &keep);
        // And a backup still works.
        backup_users(&clean, 10, |_| 9, WriterOptions::default());
        check_ok(&clean);
        if done {
            assert!(n > 3, "phase two should take several writes");
            break;
        }
        n += 1;
        assert!(n < 500, "runaway");
    }
}

/// The child half of the SIGKILL test: runs a long backup, printing each checkpoint.
#[test]
fn sigkill_child() {
    let Ok(path) = std::env::var("CAIRN_TEST_SIGKILL_REPO") else {
        return; // only meaningful when spawned by the test below
    };
    let key = IdKey::from_hex(&std::env::var("CAIRN_TEST_SIGKILL_KEY").unwrap()).unwrap();
    let repo = Repository::open(
        dir_backend(std::path::Path::new(&path)),
        OpenOptions { id_key: Some(key) },
    )
    .unwrap();
    let runs = repo.unfinished_runs().unwrap();
    let w = match runs.first() {
        Some(r) => SnapshotWriter::resume(&repo, r, opts()).unwrap(),
        None => SnapshotWriter::new(&repo, opts()).unwrap(),
    };
    let t = w.task("entra/users", TaskMode::Full).unwrap();
    let start: usize = t.resumed_cursor().map(|c| c.parse().unwrap()).unwrap_or(0);
    let slow = std::env::var("CAIRN_TEST_SIGKILL_SLOW").is_ok();
    for i in start..3000 {
        let (b, id) = (user(i, 5), user_id(i));
        t.put_item(&Item {
            kind: "user",
            id: &id,
            name: "u",
            body: &b,
            parts: vec![],
        })
        .unwrap();
        if i % 100 == 99 {
            t.checkpoint((i + 1).to_string()).unwrap();
            println!("CHECKPOINT {}", i + 1);
            if slow {
                std::thread::sleep(std::time::Duration::from_millis(30));
            }
        }
    }
    t.finish(None).unwrap();
    let id = w.commit(json!({})).unwrap();
    println!("COMMITTED {id}");
}

#[test]
fn sigkill_mid_run_then_rerun_completes() {
    let t = init_repo();
    let exe = std::env::current_exe().unwrap();
    // libtest names the child test by its path in the test binary, without the crate name.
    let child_test = match module_path!().split_once("::") {
        Some((_, module)) => format!("{module}::sigkill_child"),
        None => "sigkill_child".to_string(),
    };
    let spawn = |slow: bool| {
        let mut c = std::process::Command::new(&exe);
        c.args([
            "--exact",
            child_test.as_str(),
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CAIRN_TEST_SIGKILL_REPO", t.path())
        .env("CAIRN_TEST_SIGKILL_KEY", t.repo.id_key().to_hex())
        .stdout(std::process::Stdio::piped());
        if slow {
            c.env("CAIRN_TEST_SIGKILL_SLOW", "1");
        }
        c.spawn().unwrap()
    };
    let mut child = spawn(true);
    let out = child.stdout.take().unwrap();
    let mut seen = 0;
    for line in BufReader::new(out).lines() {
        let line = line.unwrap();
        if line.starts_with("CHECKPOINT") {
            seen += 1;
            if seen == 5 {
                child.kill().unwrap(); // SIGKILL
                break;
            }
        }
    }
    child.wait().unwrap();
    assert_eq!(seen, 5);
    let r = t.reopen();
    assert!(r.snapshots().unwrap().is_empty());
    let rep = r
        .check(&CheckOptions {
            read_data: ReadData::All,
            ..Default::default()
        })
        .unwrap();
    assert!(rep.is_ok(), "{rep}");
    let runs = r.unfinished_runs().unwrap();
    assert_eq!(runs.len(), 1);
    let cursor = match &runs[0].checkpoint.tasks[0].cursor {
        Some(c) => c.parse::<usize>().unwrap(),
        None => panic!("no cursor"),
    };
    assert!(
        cursor >= 500,
        "resumes from a checkpoint at or after the 5th: {cursor}"
    );
    // Rerun: resumes and commits.
    let child = spawn(false);
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("COMMITTED"), "{text}");
    let first_cp: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("CHECKPOINT ").map(|n| n.parse().unwrap()))
        .unwrap();
    assert!(
        first_cp > cursor,
        "the rerun continued after {cursor}, first checkpoint {first_cp}"
    );
    let r = t.reopen();
    let s = r.latest_snapshot().unwrap().unwrap();
    assert_eq!(s.snapshot.tasks[0].items, 3000);
    check_ok(&r);
}
