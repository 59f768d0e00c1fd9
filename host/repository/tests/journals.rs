//! Restore journals: numbered, immutable records that check, forget and prune leave alone.

use crate::common;

use cairn_repository::*;
use chrono::{Duration, Utc};
use common::*;
use serde_json::json;

#[test]
fn journal_records_are_numbered_immutable_and_listed() {
    let t = init_repo();
    let r = &t.repo;
    assert!(r.journals().unwrap().is_empty());
    assert_eq!(r.next_journal_seq("r-1").unwrap(), 0);

    let s0 = r
        .append_journal("r-1", 0, &json!({"type": "start"}))
        .unwrap();
    let s1 = r
        .append_journal("r-1", 1, &json!({"type": "actions", "n": 1}))
        .unwrap();
    assert_eq!((s0, s1), (0, 1));
    // A taken number is never overwritten: the record goes to the next free number.
    let s2 = r
        .append_journal("r-1", 0, &json!({"type": "actions", "n": 2}))
        .unwrap();
    assert_eq!(s2, 2);
    r.append_journal("r-2", 0, &json!({"type": "start"}))
        .unwrap();

    assert_eq!(r.journals().unwrap(), vec!["r-1", "r-2"]);
    assert_eq!(r.next_journal_seq("r-1").unwrap(), 3);
    let recs = r.journal("r-1").unwrap();
    assert_eq!(
        recs.iter().map(|x| x.seq).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(recs[0].body, json!({"type": "start"}));
    assert_eq!(recs[2].body["n"], 2);
    // Readable after reopening, keys as documented.
    let again = t.reopen();
    assert_eq!(again.journal("r-1").unwrap(), recs);
    assert!(t.keys().contains(&"journals/r-1/0000000002".to_string()));
    assert_eq!(journal_key("r-1", 7), "journals/r-1/0000000007");
    // Metadata class: a sink encrypts journals to the writer's metadata identity as well.
    assert_eq!(
        ObjectClass::of_key(&journal_key("r-1", 0)),
        ObjectClass::Metadata
    );
}

#[test]
fn bad_restore_ids_are_refused() {
    let t = init_repo();
    for bad in ["", "a/b", "../x", ".hidden", &"x".repeat(65)] {
        let e = t.repo.append_journal(bad, 0, &json!({})).unwrap_err();
        assert!(e.to_string().contains("not a valid restore id"), "{e}");
    }
}

#[test]
fn check_forget_and_prune_leave_journals_alone() {
    let t = init_repo();
    let r = &t.repo;
    backup_users(r, 300, |_| 0, WriterOptions::default());
    backup_users(r, 300, |_| 1, WriterOptions::default());
    r.append_journal("restore-a", 0, &json!({"type": "start"}))
        .unwrap();
    r.append_journal("restore-a", 1, &json!({"type": "end"}))
        .unwrap();
    let journal_keys = |t: &TestRepo| -> Vec<String> {
        t.keys()
            .into_iter()
            .filter(|k| k.starts_with("journals/"))
            .collect()
    };
    let before = journal_keys(&t);
    assert_eq!(before.len(), 2);

    check_ok(r);
    r.forget(
        &ForgetPolicy {
            keep_last: Some(1),
            ..Default::default()
        },
        false,
    )
    .unwrap();
    let now = Utc::now();
    for at in [now, now + Duration::days(3)] {
        let report = r
            .prune(&PruneOptions {
                grace: Duration::hours(1),
                now: Some(at),
                ..Default::default()
            })
            .unwrap();
        assert!(
            report.deleted.iter().all(|k| !k.starts_with("journals/")),
            "{report:?}"
        );
    }
    check_ok(r);
    assert_eq!(journal_keys(&t), before);
    assert_eq!(r.journal("restore-a").unwrap().len(), 2);
}
