//! Prefix tombstones (`kind` + `{prefix}/*`): a change listing removes every item of the kind
//! under the prefix (a deleted group's membership links), nothing else, and the diff lists them;
//! `*` alone removes every item of the kind in the task (a listing restarted mid-run).

use crate::common;

use cairn_repository::*;
use common::*;
use serde_json::json;

fn put(tw: &TaskWriter, kind: &str, id: &str) {
    let body = json!({"id": id});
    tw.put_item(&Item {
        kind,
        id,
        name: id,
        body: &body,
        parts: vec![],
    })
    .unwrap();
}

#[test]
fn a_prefix_tombstone_removes_the_links_under_it_and_nothing_else() {
    let t = init_repo();
    let w = SnapshotWriter::new(&t.repo, WriterOptions::default()).unwrap();
    let tw = w.task("entra/groups", TaskMode::Full).unwrap();
    for g in ["g1", "g10", "g2"] {
        put(&tw, "group", g);
        for m in ["u1", "u2", "u3"] {
            put(&tw, "groupMember", &format!("{g}/{m}"));
        }
    }
    // An item of another kind that shares the prefix.
    put(&tw, "groupOwner", "g1/u1");
    tw.finish(Some("delta-1".into())).unwrap();
    let s1 = w.commit(json!({})).unwrap();

    let r = t.reopen();
    let w = SnapshotWriter::new(&r, WriterOptions::default()).unwrap();
    let tw = w.task("entra/groups", TaskMode::Changes).unwrap();
    assert_eq!(tw.delete_item("group", "g1"), 1);
    assert_eq!(tw.delete_item("groupMember", "g1/*"), 3);
    // A prefix with nothing under it, and a plain id that merely ends in `*`, remove nothing.
    assert_eq!(tw.delete_item("groupMember", "g9/*"), 0);
    assert_eq!(tw.delete_item("groupMember", "g2*"), 0);
    put(&tw, "groupMember", "g2/u4");
    tw.finish(Some("delta-2".into())).unwrap();
    let s2 = w.commit(json!({})).unwrap();

    let b = r.snapshot(&s2).unwrap();
    let mut ids: Vec<(String, String)> = r
        .tree_entries(b.tasks[0].tree)
        .unwrap()
        .into_iter()
        .map(|e| (e.kind, e.id))
        .collect();
    ids.sort();
    let expected: Vec<(String, String)> = [
        ("group", "g10"),
        ("group", "g2"),
        ("groupMember", "g10/u1"),
        ("groupMember", "g10/u2"),
        ("groupMember", "g10/u3"),
        ("groupMember", "g2/u1"),
        ("groupMember", "g2/u2"),
        ("groupMember", "g2/u3"),
        ("groupMember", "g2/u4"),
        ("groupOwner", "g1/u1"),
    ]
    .iter()
    .map(|(k, i)| (k.to_string(), i.to_string()))
    .collect();
    assert_eq!(ids, expected);

    let a = r.snapshot(&s1).unwrap();
    let d = r.diff(&a, &b).unwrap();
    let removed: Vec<String> = d.tasks[0]
        .removed
        .iter()
        .map(|e| format!("{}:{}", e.kind, e.id))
        .collect();
    assert_eq!(
        removed,
        [
            "group:g1",
            "groupMember:g1/u1",
            "groupMember:g1/u2",
            "groupMember:g1/u3"
        ]
    );
    let added: Vec<&str> = d.tasks[0].added.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(added, ["g2/u4"]);
    check_ok(&r);
}

#[test]
fn a_whole_kind_tombstone_clears_the_kind_and_a_relisting_keeps_only_what_it_lists() {
    let t = init_repo();
    let w = SnapshotWriter::new(&t.repo, WriterOptions::default()).unwrap();
    let tw = w.task("drive/d1", TaskMode::Full).unwrap();
    for i in ["a", "b", "c"] {
        put(&tw, "driveItem", i);
        put(&tw, "sharing", i);
    }
    tw.finish(Some("delta-1".into())).unwrap();
    let s1 = w.commit(json!({})).unwrap();

    // A change listing whose enumeration restarts: everything of both kinds goes, then the
    // fresh enumeration lists what still exists (b, c and a new d; a is gone).
    let r = t.reopen();
    let w = SnapshotWriter::new(&r, WriterOptions::default()).unwrap();
    let tw = w.task("drive/d1", TaskMode::Changes).unwrap();
    put(&tw, "driveItem", "x");
    assert_eq!(tw.delete_item("driveItem", "*"), 4);
    assert_eq!(tw.delete_item("sharing", "*"), 3);
    assert_eq!(tw.delete_item("sharing", "*"), 0);
    for i in ["b", "c", "d"] {
        put(&tw, "driveItem", i);
    }
    put(&tw, "sharing", "c");
    tw.finish(Some("delta-2".into())).unwrap();
    let s2 = w.commit(json!({})).unwrap();

    let b = r.snapshot(&s2).unwrap();
    let mut ids: Vec<String> = r
        .tree_entries(b.tasks[0].tree)
        .unwrap()
        .into_iter()
        .map(|e| format!("{}:{}", e.kind, e.id))
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        ["driveItem:b", "driveItem:c", "driveItem:d", "sharing:c"]
    );
    // Unchanged items keep their entries: the diff names only what really changed.
    let a = r.snapshot(&s1).unwrap();
    let d = r.diff(&a, &b).unwrap();
    let mut removed: Vec<String> = d.tasks[0]
        .removed
        .iter()
        .map(|e| format!("{}:{}", e.kind, e.id))
        .collect();
    removed.sort();
    assert_eq!(removed, ["driveItem:a", "sharing:a", "sharing:b"]);
    let added: Vec<String> = d.tasks[0]
        .added
        .iter()
        .map(|e| format!("{}:{}", e.kind, e.id))
        .collect();
    assert_eq!(added, ["driveItem:d"]);
    assert!(d.tasks[0].changed.is_empty());
    check_ok(&r);
}
