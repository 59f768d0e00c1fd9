//! `cairn demo` end to end, as a process: two snapshots around a disaster, a diff that shows
//! the deleted users, the weakened Conditional Access policy, the lost mail and the changed
//! sharing, and one restore that undoes all of it.

use std::process::Command;

#[test]
fn demo_backs_up_breaks_and_diffs_the_simulated_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["demo", "--json", "--dir"])
        .arg(&demo)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("5 users soft-deleted, 5 users permanently deleted"),
        "{stderr}"
    );
    for what in [
        "mail folder",
        "access to /",
        "anonymous edit link added to /",
    ] {
        assert!(stderr.contains(what), "the disaster: {what} in {stderr}");
    }
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    let diff = &doc["diff"];
    let items = diff["items"].as_array().unwrap();
    let removed_users = items
        .iter()
        .filter(|i| i["change"] == "removed" && i["kind"] == "user")
        .count();
    assert_eq!(removed_users, 10, "every deleted user shows as removed");
    let ca = items
        .iter()
        .find(|i| i["change"] == "changed" && i["kind"] == "conditionalAccessPolicy")
        .expect("the weakened policy shows as changed");
    let attrs: Vec<&str> = ca["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["attribute"].as_str().unwrap())
        .collect();
    assert!(attrs.contains(&"state"), "{attrs:?}");
    assert!(
        attrs.contains(&"conditions.users.excludeUsers"),
        "{attrs:?}"
    );

    // The recovery: a plan from the first snapshot brings back every user (5 from the recycle
    // bin, 5 re-created) and the policy, the apply fails nothing, and verify finds the tenant
    // equal to the snapshot apart from the manual steps.
    let restore = &doc["restore"];
    assert_eq!(restore["plan"]["byKind"]["undelete"], 5, "{restore}");
    assert_eq!(
        restore["plan"]["byKind"]["update"], 1,
        "the weakened policy: {restore}"
    );
    assert_eq!(
        restore["plan"]["byKind"]["unlink"], 1,
        "the attacker's anonymous link is revoked: {restore}"
    );
    let counts = restore["apply"]["counts"].as_object().unwrap();
    assert!(counts["done"].as_u64().unwrap() > 0, "{counts:?}");
    assert!(
        !counts.keys().any(|k| k == "failed" || k == "skipped"),
        "{counts:?}"
    );
    assert_eq!(
        restore["verify"]["remaining"].as_array().unwrap().len(),
        0,
        "{}",
        restore["verify"]
    );
    assert!(demo.join("restore-plan.json").exists());

    // The repository it left can be listed with the other commands.
    let json_of = |args: &[&str]| -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(args)
            .arg("-m")
            .arg(demo.join("cairn.toml"))
            .arg("-i")
            .arg(demo.join("restore-identity.txt"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let snaps = json_of(&["snapshots", "--json"]);
    assert_eq!(snaps.as_array().unwrap().len(), 2);
    // …and the restore's journal is in it.
    let journal = json_of(&["restore", "journal", "--json"]);
    assert_eq!(
        journal[0]["restoreId"], restore["plan"]["restoreId"],
        "{journal}"
    );
    assert_eq!(journal[0]["finished"], true, "{journal}");

    // The text diff: counts per kind, changed items first, at most 10 lines per change and
    // kind unless --all.
    let diff_text = |all: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.args(["diff", "-m"])
            .arg(demo.join("cairn.toml"))
            .arg("-i")
            .arg(demo.join("restore-identity.txt"))
            .args([
                snaps[0]["id"].as_str().unwrap(),
                snaps[1]["id"].as_str().unwrap(),
            ]);
        if all {
            c.arg("--all");
        }
        let out = c.output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let text = diff_text(false);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.trim_start().starts_with("removed") && l.ends_with(" user")),
        "{text}"
    );
    let first_item = lines
        .iter()
        .position(|l| l.starts_with(['~', '+', '-']))
        .unwrap();
    assert!(
        lines[first_item].starts_with("~ "),
        "changed items first: {text}"
    );
    assert!(
        lines
            .iter()
            .position(|l| l.starts_with("~ conditionalAccessPolicy"))
            .unwrap()
            < lines.iter().position(|l| l.starts_with("- ")).unwrap(),
        "changes before removals: {text}"
    );
    let count = |t: &str, kind: &str| {
        t.lines()
            .filter(|l| l.starts_with(&format!("- {kind} ")))
            .count()
    };
    assert_eq!(count(&text, "user"), 10);
    // Sharing changes in words.
    assert!(text.contains("anonymous edit link added to /"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("grant to ") && l.contains(") removed from /")),
        "{text}"
    );
    let all = diff_text(true);
    assert!(count(&all, "groupMember") > 10, "{all}");
    assert!(
        count(&text, "groupMember") == 10 && text.contains("more removed groupMember"),
        "{text}"
    );
    // A missing manifest is a usage error.
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["snapshots", "-m"])
        .arg(dir.path().join("nope.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
