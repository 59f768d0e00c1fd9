//! Prefix tombstones (`kind` + `{prefix}/*`): a change listing removes every item of the kind
//! under the prefix (a deleted group's membership links), nothing else, and the diff lists them.

mod common;

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
