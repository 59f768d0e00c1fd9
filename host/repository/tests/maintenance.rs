//! check (corruption, truncation), forget (policies, tags, legal hold), prune (two phases,
//! grace, dry run, refused deletes, concurrent backups).

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;

use cairn_repository::*;
use chrono::{Duration, TimeZone, Utc};
use common::*;
use serde_json::json;

fn pack_of(r: &Repository, blob: &Id) -> String {
    let idx = r.refresh_index().unwrap();
    let l = idx.locations(blob)[0];
    l.pack_kind.key(&l.pack)
}

fn change_users(r: &Repository, which: &[usize], version: usize) -> Id {
    let w = SnapshotWriter::new(r, WriterOptions::default()).unwrap();
    let tw = w.task("entra/users", TaskMode::Changes).unwrap();
    for &i in which {
        put_user(&tw, i, version);
    }
    tw.finish(None).unwrap();
    w.commit(json!({})).unwrap()
}

#[test]
fn check_names_corrupt_and_truncated_objects_and_the_snapshots_needing_them() {
    let t = init_repo();
    let r = &t.repo;
    let s1 = backup_users(r, 2000, |_| 0, WriterOptions::default());
    let s2 = change_users(r, &[10, 20, 30, 40, 50], 1);
    check_ok(r);
    let snap1 = r.snapshot(&s1).unwrap();
    let snap2 = r.snapshot(&s2).unwrap();
    let e20 = r
        .find_entry(snap2.tasks[0].tree, "user", &user_id(20))
        .unwrap()
        .unwrap();
    let pack2 = pack_of(r, &e20.body);
    let e_old = r
        .find_entry(snap1.tasks[0].tree, "user", &user_id(1500))
        .unwrap()
        .unwrap();
    let pack1 = pack_of(r, &e_old.body);
    assert_ne!(pack1, pack2);

    // Flip a byte in the middle of the pack only s2 needs.
    let p2 = t.path().join(&pack2);
    let mut bytes = std::fs::read(&p2).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&p2, &bytes).unwrap();
    let fresh = t.reopen();
    let structure = fresh.check(&CheckOptions::default()).unwrap();
    assert!(
        structure.is_ok(),
        "a flipped data byte is invisible without reading data:\n{structure}"
    );
    let rep = fresh
        .check(&CheckOptions {
            read_data: ReadData::All,
            ..Default::default()
        })
        .unwrap();
    let p = rep
        .errors
        .iter()
        .find(|p| p.object == pack2)
        .unwrap_or_else(|| panic!("{rep}"));
    assert_eq!(p.snapshots, vec![s2], "{rep}");
    assert!(
        p.message.contains("does not match its name"),
        "{}",
        p.message
    );
    // Unaffected items still read.
    let ok = fresh
        .find_entry(snap2.tasks[0].tree, "user", &user_id(1500))
        .unwrap()
        .unwrap();
    assert_eq!(fresh.read_item(&ok).unwrap(), user(1500, 0));

    // Truncate a pack both snapshots need: found without reading data.
    let p1 = t.path().join(&pack1);
    let b1 = std::fs::read(&p1).unwrap();
    std::fs::write(&p1, &b1[..b1.len() / 4]).unwrap();
    let fresh = t.reopen();
    let rep = fresh.check(&CheckOptions::default()).unwrap();
    let p = rep
        .errors
        .iter()
        .find(|p| p.object == pack1)
        .unwrap_or_else(|| panic!("{rep}"));
    assert!(p.message.contains("truncated"), "{}", p.message);
    let mut needed = p.snapshots.clone();
    needed.sort();
    let mut both = vec![s1, s2];
    both.sort();
    assert_eq!(needed, both);
    // Items in the first frames of the truncated pack still read; ones past the cut fail
    // cleanly; items in other packs are unaffected.
    let entries = fresh.tree_entries(snap1.tasks[0].tree).unwrap();
    let (mut good, mut bad) = (0, 0);
    for e in &entries {
        match fresh.read_item(e) {
            Ok(v) => {
                assert_eq!(v["displayName"], json!(e.name));
                good += 1
            }
            Err(err) => {
                assert!(err.to_string().contains(&pack1), "{err}");
                bad += 1
            }
        }
    }
    assert!(good > 1000 && bad > 0, "good {good} bad {bad}");

    // A missing tree pack is named with its snapshots, structure-only.
    let tree_pack = pack_of(&fresh, &snap2.tasks[0].tree);
    std::fs::remove_file(t.path().join(&tree_pack)).unwrap();
    let rep = t.reopen().check(&CheckOptions::default()).unwrap();
    assert!(
        rep.errors.iter().any(|p| p.object == tree_pack
            && p.message.contains("missing")
            && p.snapshots.contains(&s2)),
        "{rep}"
    );
}

#[test]
fn read_data_subsets() {
    let t = init_repo();
    backup_users(
        &t.repo,
        3000,
        |_| 0,
        WriterOptions {
            pack: Some(small_packs()),
            ..Default::default()
        },
    );
    let all = check_ok(&t.repo);
    assert!(all.packs_read >= 4, "{all}");
    let mut sum = 0;
    for n in 1..=3 {
        let r = t
            .repo
            .check(&CheckOptions {
                read_data: format!("{n}/3").parse().unwrap(),
                ..Default::default()
            })
            .unwrap();
        assert!(r.is_ok());
        sum += r.packs_read;
    }
    assert_eq!(sum, all.packs_read, "n/3 subsets partition the packs");
    let r = t
        .repo
        .check(&CheckOptions {
            read_data: "0%".parse().unwrap(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.packs_read, 0);
    let r = t
        .repo
        .check(&CheckOptions {
            read_data: "100%".parse().unwrap(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.packs_read, all.packs_read);
    assert!("0/3".parse::<ReadData>().is_err());
    assert!("150%".parse::<ReadData>().is_err());
}

fn snapshot_at(r: &Repository, t: chrono::DateTime<Utc>, tags: &[&str], v: usize) -> Id {
    backup_users(
        r,
        5,
        |_| v,
        WriterOptions {
            time: Some(t),
            tags: tags.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        },
    )
}

#[test]
fn forget_policies_tags_and_legal_hold() {
    let t = init_repo();
    let r = &t.repo;
    let base = Utc.with_ymd_and_hms(2024, 1, 1, 12, 0, 0).unwrap();
    // 60 days, two snapshots a day (03:00 and 15:00).
    let mut ids = Vec::new();
    for d in 0..60 {
        for h in [3, 15] {
            let time = base + Duration::days(d) + Duration::hours(h - 12);
            ids.push((time, snapshot_at(r, time, &[], (d * 2 + h) as usize)));
        }
    }
    let newest = ids.last().unwrap().1;
    let oldest = ids[0].1;
    r.hold(&oldest, "litigation 2024-17").unwrap();
    let before = t.keys();
    let policy = ForgetPolicy {
        keep_daily: Some(7),
        keep_weekly: Some(4),
        keep_last: Some(3),
        ..Default::default()
    };
    let dry = r.forget(&policy, true).unwrap();
    assert_eq!(t.keys(), before, "dry run writes nothing");
    let kept: BTreeSet<Id> = dry.keep.iter().map(|(id, _)| *id).collect();
    assert!(kept.contains(&newest));
    assert!(kept.contains(&oldest), "held snapshot kept");
    let hold_reason = &dry.keep.iter().find(|(id, _)| *id == oldest).unwrap().1;
    assert_eq!(hold_reason, &vec!["legal hold".to_string()]);
    // last 3 = day 59 x2 + day 58 15:00; daily 7 = days 59..53 (15:00 each); weekly 4 adds
    // the newest of 3 earlier ISO weeks; + hold.
    let daily: Vec<Id> = dry
        .keep
        .iter()
        .filter(|(_, r)| r.contains(&"daily".to_string()))
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(daily.len(), 7);
    let weekly = dry
        .keep
        .iter()
        .filter(|(_, r)| r.contains(&"weekly".to_string()))
        .count();
    assert_eq!(weekly, 4);
    assert_eq!(dry.forget.len() + dry.keep.len(), 120);
    let expected_kept = {
        let mut s = BTreeSet::new();
        s.insert(ids[119].1);
        s.insert(ids[118].1);
        s.insert(ids[117].1);
        for d in 53..60 {
            s.insert(ids[d * 2 + 1].1);
        }
        s.insert(oldest);
        s
    };
    // 2024-01-01 is a Monday; day 59 is Thursday 29 Feb. The two newest ISO weeks' newest
    // snapshots are already kept; weekly adds Sunday 18 Feb (day 48) and Sunday 11 Feb (day 41).
    let mut expected_kept = expected_kept;
    expected_kept.insert(ids[48 * 2 + 1].1);
    expected_kept.insert(ids[41 * 2 + 1].1);
    assert_eq!(kept, expected_kept);

    let rep = r.forget(&policy, false).unwrap();
    assert_eq!(rep.forget.len(), dry.forget.len());
    let live: BTreeSet<Id> = r.snapshots().unwrap().iter().map(|s| s.id).collect();
    assert_eq!(live, kept);
    check_ok(r);
    // The held snapshot survives any policy, even keep-last 1.
    r.forget(
        &ForgetPolicy {
            keep_last: Some(1),
            ..Default::default()
        },
        false,
    )
    .unwrap();
    let live: BTreeSet<Id> = r.snapshots().unwrap().iter().map(|s| s.id).collect();
    assert_eq!(live, [newest, oldest].into_iter().collect());
    // Released, it can go.
    assert_eq!(r.release_hold(&oldest).unwrap(), DeleteOutcome::Deleted);
    r.forget(
        &ForgetPolicy {
            keep_last: Some(1),
            ..Default::default()
        },
        false,
    )
    .unwrap();
    assert_eq!(r.snapshots().unwrap().len(), 1);
    check_ok(r);
    // No rule: refuse.
    assert!(r.forget(&ForgetPolicy::default(), false).is_err());
}

#[test]
fn forget_within_and_tags() {
    let t = init_repo();
    let r = &t.repo;
    let base = Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0).unwrap();
    let a = snapshot_at(r, base, &["monthly"], 1);
    let b = snapshot_at(r, base + Duration::days(10), &["adhoc"], 2);
    let c = snapshot_at(r, base + Duration::days(20), &["adhoc"], 3);
    let d = snapshot_at(r, base + Duration::days(29), &[], 4);
    // Within 10 days of the newest: c and d; keep-tag monthly: a.
    let rep = r
        .forget(
            &ForgetPolicy {
                keep_within: Some(Duration::days(10)),
                keep_tags: vec!["monthly".into()],
                ..Default::default()
            },
            true,
        )
        .unwrap();
    assert_eq!(rep.forget, vec![b]);
    // Restricted to snapshots tagged adhoc, keep the last one: only b goes.
    let rep = r
        .forget(
            &ForgetPolicy {
                keep_last: Some(1),
                tags: vec!["adhoc".into()],
                ..Default::default()
            },
            false,
        )
        .unwrap();
    assert_eq!(rep.forget, vec![b]);
    let live: Vec<Id> = r.snapshots().unwrap().iter().map(|s| s.id).collect();
    assert_eq!(live, vec![a, c, d]);
}

#[test]
fn prune_two_phases_with_grace_and_dry_run() {
    let t = init_repo();
    let r = &t.repo;
    let now = Utc::now();
    let s1 = backup_users(r, 1500, |_| 0, WriterOptions::default());
    let _s2 = backup_users(r, 1500, |_| 1, WriterOptions::default());
    let s3 = backup_users(
        r,
        1500,
        |i| if i < 15 { 2 } else { 1 },
        WriterOptions::default(),
    );
    r.forget(
        &ForgetPolicy {
            keep_last: Some(1),
            ..Default::default()
        },
        false,
    )
    .unwrap();
    assert_eq!(r.snapshots().unwrap().len(), 1);
    let size0 = t.total_bytes();

    let opts = |dry: bool, at: chrono::DateTime<Utc>| PruneOptions {
        grace: Duration::hours(1),
        dry_run: dry,
        now: Some(at),
        ..Default::default()
    };
    let before = t.keys();
    let dry = r.prune(&opts(true, now)).unwrap();
    assert!(!dry.marked.is_empty(), "{dry:?}");
    assert_eq!(t.keys(), before, "dry run changes nothing");

    // Phase one: mark.
    let p1 = r.prune(&opts(false, now)).unwrap();
    assert_eq!(p1.marked, dry.marked);
    assert!(
        p1.deleted
            .iter()
            .all(|k| !k.starts_with("data/") && !k.starts_with("tree/")),
        "{p1:?}"
    );
    assert!(t.keys().iter().any(|k| k.starts_with("marks/")));
    check_ok(r);
    // Within the grace period: nothing deleted.
    let p2 = r.prune(&opts(false, now + Duration::minutes(30))).unwrap();
    assert!(p2.marked.is_empty());
    assert_eq!(p2.pending.len(), p1.marked.len());
    assert!(p2.deleted.iter().all(|k| !k.starts_with("data/")));
    // After it: deleted, with the index rewritten first.
    let dry3 = r.prune(&opts(true, now + Duration::hours(2))).unwrap();
    assert_eq!(dry3.deleted.len(), p1.marked.len());
    let p3 = r.prune(&opts(false, now + Duration::hours(2))).unwrap();
    assert!(p3.index_rewritten);
    for k in &p1.marked {
        assert!(p3.deleted.contains(k), "{k} not deleted: {p3:?}");
    }
    assert!(p3.refused.is_empty());
    assert!(!t.keys().iter().any(|k| k.starts_with("marks/")));
    let size1 = t.total_bytes();
    assert!(
        size1 < size0 * 2 / 3,
        "prune freed space: {size0} -> {size1}"
    );
    // The kept snapshot is whole.
    let fresh = t.reopen();
    check_ok(&fresh);
    let s = fresh.snapshot(&s3).unwrap();
    for e in fresh.tree_entries(s.tasks[0].tree).unwrap() {
        fresh.read_item(&e).unwrap();
    }
    assert!(fresh.snapshot(&s1).is_err());
    // Nothing left to do.
    let p4 = fresh.prune(&opts(false, now + Duration::hours(4))).unwrap();
    assert!(p4.marked.is_empty() && p4.pending.is_empty(), "{p4:?}");
}

#[test]
fn refused_deletes_are_reported_and_nothing_breaks() {
    let t = init_repo();
    let locked: Arc<dyn Backend> = Arc::new(NoDelete(t.backend()));
    let r = Repository::open(
        locked,
        OpenOptions {
            id_key: Some(t.repo.id_key().clone()),
        },
    )
    .unwrap();
    backup_users(&r, 800, |_| 0, WriterOptions::default());
    let keep = backup_users(&r, 800, |_| 1, WriterOptions::default());
    let f = r
        .forget(
            &ForgetPolicy {
                keep_last: Some(1),
                ..Default::default()
            },
            false,
        )
        .unwrap();
    assert_eq!(f.refused.len(), 1, "{f:?}");
    assert_eq!(
        r.snapshots().unwrap().len(),
        1,
        "forgotten even though the object stays"
    );
    let now = Utc::now();
    let o = |at| PruneOptions {
        grace: Duration::zero(),
        now: Some(at),
        ..Default::default()
    };
    r.prune(&o(now)).unwrap();
    let p = r.prune(&o(now + Duration::seconds(1))).unwrap();
    assert!(!p.refused.is_empty(), "{p:?}");
    assert!(p.refused.iter().all(|(_, why)| why.contains("locked")));
    let rep = r
        .check(&CheckOptions {
            read_data: ReadData::All,
            ..Default::default()
        })
        .unwrap();
    assert!(rep.is_ok(), "{rep}");
    assert_eq!(r.snapshots().unwrap()[0].id, keep);
    // Backups go on.
    backup_users(&r, 800, |_| 2, WriterOptions::default());
    check_ok(&r);
}

#[test]
fn prune_is_safe_against_a_concurrent_backup() {
    let t = init_repo();
    let r = &t.repo;
    // s1's data becomes unreferenced once s1 is forgotten.
    let s1 = backup_users(r, 600, |_| 7, WriterOptions::default());
    backup_users(r, 600, |_| 8, WriterOptions::default());
    r.forget(
        &ForgetPolicy {
            keep_last: Some(1),
            ..Default::default()
        },
        false,
    )
    .unwrap();
    let now = Utc::now();
    let o = |at, grace| PruneOptions {
        grace,
        now: Some(at),
        ..Default::default()
    };

    // A backup that started before the mark deduplicates against the doomed packs …
    let w = SnapshotWriter::new(r, WriterOptions::default()).unwrap();
    let tw = w.task("entra/users", TaskMode::Full).unwrap();
    for i in 0..600 {
        let (b, id) = (user(i, 7), user_id(i));
        assert!(
            !tw.put_item(&Item {
                kind: "user",
                id: &id,
                name: "u",
                body: &b,
                parts: vec![]
            })
            .unwrap()
            .stored
        );
    }
    tw.finish(None).unwrap();
    // … prune marks them (phase one) while the backup runs …
    let p1 = r.prune(&o(now, Duration::hours(1))).unwrap();
    assert!(!p1.marked.is_empty());
    // … the backup commits inside the grace period …
    let s3 = w.commit(json!({})).unwrap();
    // … so phase two spares what the new snapshot needs.
    let p2 = r
        .prune(&o(now + Duration::hours(2), Duration::hours(1)))
        .unwrap();
    assert!(!p2.spared.is_empty(), "{p2:?}");
    let fresh = t.reopen();
    check_ok(&fresh);
    let e = fresh
        .find_entry(
            fresh.snapshot(&s3).unwrap().tasks[0].tree,
            "user",
            &user_id(3),
        )
        .unwrap()
        .unwrap();
    assert_eq!(fresh.read_item(&e).unwrap(), user(3, 7));

    // A backup that starts after a mark does not deduplicate against marked packs.
    fresh
        .forget(
            &ForgetPolicy {
                keep_last: Some(1),
                ..Default::default()
            },
            false,
        )
        .unwrap(); // drops s3's predecessor
    let p = fresh
        .prune(&o(now + Duration::hours(3), Duration::hours(1)))
        .unwrap();
    let _ = p;
    let w = SnapshotWriter::new(&fresh, WriterOptions::default()).unwrap();
    let tw = w.task("entra/users", TaskMode::Full).unwrap();
    let (b, id) = (user(1, 8), user_id(1));
    let out = tw
        .put_item(&Item {
            kind: "user",
            id: &id,
            name: "u",
            body: &b,
            parts: vec![],
        })
        .unwrap();
    assert!(out.stored, "a blob only in a marked pack is stored again");
    tw.finish(None).unwrap();
    w.commit(json!({})).unwrap();
    check_ok(&fresh);

    // A backup that outlives the grace period and loses a pack to phase two fails loudly
    // at commit instead of writing a snapshot with missing data.
    let t = init_repo();
    let r = &t.repo;
    backup_users(r, 300, |_| 1, WriterOptions::default());
    backup_users(r, 300, |_| 2, WriterOptions::default());
    r.forget(
        &ForgetPolicy {
            keep_last: Some(1),
            ..Default::default()
        },
        false,
    )
    .unwrap();
    let w = SnapshotWriter::new(r, WriterOptions::default()).unwrap();
    let tw = w.task("entra/users", TaskMode::Full).unwrap();
    for i in 0..300 {
        put_user(&tw, i, 1);
    }
    tw.finish(None).unwrap();
    r.prune(&o(now, Duration::zero())).unwrap();
    let p = r
        .prune(&o(now + Duration::seconds(5), Duration::zero()))
        .unwrap();
    assert!(p.deleted.iter().any(|k| k.starts_with("data/")), "{p:?}");
    let err = w.commit(json!({})).err().unwrap();
    assert!(matches!(err, Error::ConcurrentPrune(_)), "{err}");
    check_ok(r);
    let _ = s1;
}

#[test]
fn unfinished_runs_protect_their_data_until_they_expire() {
    let t = init_repo();
    let r = &t.repo;
    backup_users(r, 50, |_| 0, WriterOptions::default());
    {
        let w = SnapshotWriter::new(
            r,
            WriterOptions {
                checkpoint_interval: Some(std::time::Duration::ZERO),
                ..Default::default()
            },
        )
        .unwrap();
        let tw = w.task("mail/x", TaskMode::Full).unwrap();
        let part = tw.write_part("mime", &noise(3, 300_000)).unwrap();
        tw.put_item(&Item {
            kind: "message",
            id: "m",
            name: "m",
            body: &json!({"s": 1}),
            parts: vec![part],
        })
        .unwrap();
        tw.checkpoint("c1").unwrap();
    }
    let now = Utc::now();
    let o = |at| PruneOptions {
        grace: Duration::zero(),
        now: Some(at),
        ..Default::default()
    };
    r.prune(&o(now)).unwrap();
    let p = r.prune(&o(now + Duration::seconds(1))).unwrap();
    assert!(!p.deleted.iter().any(|k| k.starts_with("data/")), "{p:?}");
    let runs = r.unfinished_runs().unwrap();
    assert_eq!(runs.len(), 1);
    // After the expiry, the checkpoint goes and its data with it (two phases).
    let later = now + Duration::days(8);
    r.prune(&o(later)).unwrap();
    let p = r.prune(&o(later + Duration::seconds(1))).unwrap();
    assert!(p.deleted.iter().any(|k| k.starts_with("data/")), "{p:?}");
    assert!(r.unfinished_runs().unwrap().is_empty());
    check_ok(r);
}

#[test]
fn damaged_index_and_snapshot_objects_are_named_and_the_index_can_be_rebuilt() {
    let t = init_repo();
    let r = &t.repo;
    let s1 = backup_users(r, 300, |_| 0, WriterOptions::default());
    let s2 = change_users(r, &[1, 2, 3], 1);
    // Garble the index file written by the second run.
    let mut idx: Vec<String> = t
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("index/"))
        .collect();
    idx.sort_by_key(|k| {
        std::fs::metadata(t.path().join(k))
            .unwrap()
            .modified()
            .unwrap()
    });
    let victim = idx.last().unwrap().clone();
    std::fs::write(t.path().join(&victim), b"garbage").unwrap();
    let fresh = t.reopen();
    let rep = fresh.check(&CheckOptions::default()).unwrap();
    assert!(
        rep.errors
            .iter()
            .any(|p| p.object == victim && p.message.contains("unreadable index")),
        "{rep}"
    );
    assert!(
        rep.errors
            .iter()
            .any(|p| p.message.contains("in no index") && p.snapshots == vec![s2]),
        "{rep}"
    );
    assert!(
        !rep.errors.iter().any(|p| p.snapshots.contains(&s1)),
        "s1 is unaffected:\n{rep}"
    );
    // Reading s1 still works.
    let e = fresh
        .find_entry(
            fresh.snapshot(&s1).unwrap().tasks[0].tree,
            "user",
            &user_id(9),
        )
        .unwrap()
        .unwrap();
    assert_eq!(fresh.read_item(&e).unwrap(), user(9, 0));
    // Rebuild from pack headers.
    let dry = fresh.repair_index(true).unwrap();
    assert!(!dry.packs_indexed.is_empty() && dry.index_written.is_none());
    let fix = fresh.repair_index(false).unwrap();
    assert_eq!(fix.superseded, vec![victim.clone()]);
    assert!(fix.index_written.is_some());
    check_ok(&fresh);
    let e = fresh
        .find_entry(
            fresh.snapshot(&s2).unwrap().tasks[0].tree,
            "user",
            &user_id(2),
        )
        .unwrap()
        .unwrap();
    assert_eq!(fresh.read_item(&e).unwrap(), user(2, 1));

    // A damaged snapshot object is named.
    let key = format!("snapshots/{s1}");
    let mut b = std::fs::read(t.path().join(&key)).unwrap();
    b[10] ^= 1;
    std::fs::write(t.path().join(&key), b).unwrap();
    let rep = t.reopen().check(&CheckOptions::default()).unwrap();
    assert!(
        rep.errors
            .iter()
            .any(|p| p.object == key && p.snapshots == vec![s1]),
        "{rep}"
    );
}

#[test]
fn prune_repacks_partly_used_packs() {
    let t = init_repo();
    let r = &t.repo;
    backup_users(r, 3000, |_| 0, WriterOptions::default());
    // 70% of the users change: the first snapshot's pack is 30% live after forget.
    let s2 = backup_users(
        r,
        3000,
        |i| usize::from(i % 10 < 7),
        WriterOptions::default(),
    );
    r.forget(
        &ForgetPolicy {
            keep_last: Some(1),
            ..Default::default()
        },
        false,
    )
    .unwrap();
    let now = Utc::now();
    let o = |s: i64, th: Option<f64>, dry: bool| PruneOptions {
        grace: Duration::zero(),
        now: Some(now + Duration::seconds(s)),
        repack_threshold: th,
        dry_run: dry,
        ..Default::default()
    };
    let plain = r.prune(&o(0, None, true)).unwrap();
    assert!(plain.partly_used_packs >= 1, "{plain:?}");
    assert!(plain.unused_bytes_in_used_packs > 300_000, "{plain:?}");
    assert!(plain.repacked.is_empty());
    let before = t.total_bytes();
    let dry = r.prune(&o(0, Some(0.5), true)).unwrap();
    assert!(!dry.repacked.is_empty(), "{dry:?}");
    assert_eq!(t.total_bytes(), before, "dry run");
    let p1 = r.prune(&o(0, Some(0.5), false)).unwrap();
    assert_eq!(p1.repacked, dry.repacked);
    assert!(p1.repack_errors.is_empty());
    for k in &p1.repacked {
        assert!(p1.marked.contains(k), "repacked packs are marked");
    }
    check_ok(r);
    let p2 = r.prune(&o(1, Some(0.5), false)).unwrap();
    for k in &p1.repacked {
        assert!(p2.deleted.contains(k), "{k} deleted in phase two: {p2:?}");
    }
    let after = t.total_bytes();
    assert!(
        after < before * 2 / 3,
        "repacking freed space: {before} -> {after}"
    );
    let fresh = t.reopen();
    check_ok(&fresh);
    let s = fresh.snapshot(&s2).unwrap();
    for e in fresh.tree_entries(s.tasks[0].tree).unwrap() {
        let i = usize::from_str_radix(&e.id[..8], 16).unwrap();
        assert_eq!(
            fresh.read_item(&e).unwrap(),
            user(i, usize::from(i % 10 < 7))
        );
    }
    let p3 = fresh.prune(&o(2, Some(0.5), false)).unwrap();
    assert!(p3.repacked.is_empty() && p3.marked.is_empty(), "{p3:?}");
}

#[test]
fn prune_refuses_when_a_snapshot_cannot_be_read() {
    let t = init_repo();
    let r = &t.repo;
    let s1 = backup_users(r, 100, |_| 0, WriterOptions::default());
    backup_users(r, 100, |_| 1, WriterOptions::default());
    let key = format!("snapshots/{s1}");
    std::fs::write(t.path().join(&key), b"{garbled").unwrap();
    let before = t.keys();
    let err = r.prune(&PruneOptions::default()).err().unwrap();
    assert!(
        err.to_string().contains("prune needs every snapshot"),
        "{err}"
    );
    assert_eq!(t.keys(), before, "nothing marked or deleted");
    // Listing for people still works, skipping the damaged one.
    assert_eq!(r.snapshots().unwrap().len(), 1);

    // An unreadable index file also stops prune (its packs would look like orphans).
    let t = init_repo();
    let r = &t.repo;
    backup_users(r, 100, |_| 0, WriterOptions::default());
    let idx = t
        .keys()
        .into_iter()
        .find(|k| k.starts_with("index/"))
        .unwrap();
    std::fs::write(t.path().join(&idx), b"garbage").unwrap();
    let before = t.keys();
    let err = r.prune(&PruneOptions::default()).err().unwrap();
    assert!(err.to_string().contains("repair_index"), "{err}");
    assert_eq!(t.keys(), before);
    r.repair_index(false).unwrap();
    let p = r.prune(&PruneOptions::default()).unwrap();
    assert!(
        p.marked.is_empty(),
        "nothing in use is marked after the repair: {p:?}"
    );
    check_ok(r);
}

#[test]
fn check_warns_when_an_unfinished_run_cannot_resume() {
    let t = init_repo();
    let r = &t.repo;
    {
        let w = SnapshotWriter::new(r, WriterOptions::default()).unwrap();
        let tw = w.task("entra/users", TaskMode::Full).unwrap();
        for i in 0..50 {
            put_user(&tw, i, 0);
        }
        tw.checkpoint("50").unwrap();
    }
    let rep = check_ok(r);
    assert!(rep.warnings.is_empty(), "{rep}");
    // Lose the tree pack the checkpoint needs.
    let tree_pack = t
        .keys()
        .into_iter()
        .find(|k| k.starts_with("tree/"))
        .unwrap();
    std::fs::remove_file(t.path().join(&tree_pack)).unwrap();
    let rep = t.reopen().check(&CheckOptions::default()).unwrap();
    let w = rep
        .warnings
        .iter()
        .find(|w| w.object.starts_with("checkpoints/"))
        .unwrap_or_else(|| panic!("{rep}"));
    assert!(w.message.contains("cannot resume"), "{}", w.message);
}
