//! `cairn diff` after churn, at the engine level: two backups of the `small` simulator tenant
//! through `cairn_engine::backup::run_backup` into a repository, with known changes between
//! them; `cairn_engine::diff::diff_snapshots` must list exactly the items that were added,
//! removed and changed (links included), and for changed items the attributes that changed.

use std::collections::BTreeSet;
use std::sync::Arc;

use cairn_engine::backup::{run_backup, CollectorSpec, SinkTarget};
use cairn_engine::diff::diff_snapshots;
use cairn_engine::{PluginRef, PluginRegistry};
use cairn_entra_tests::{SimEnv, ENTRA};

use cairn_repository::{InitOptions, Repository, WriterOptions};
use cairn_runtime::Limits;
use serde_json::{json, Value};

fn live(dump: &Value, collection: &str, id: &str) -> bool {
    dump[collection]
        .get(id)
        .is_some_and(|o| o.get("@sim.deleted").is_none())
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn diff_after_churn_lists_exactly_the_changes() {
    let env = SimEnv::small(21);
    let sim = &env.sim;
    let reg = PluginRegistry::new(env.wasm.clone());
    let plugin = reg.get(&PluginRef::File(ENTRA.into())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store =
        cairn_blobstore::open_backend(dir.path().to_str().unwrap(), &Default::default()).unwrap();
    let repo = Repository::init(store, InitOptions::default()).unwrap();
    let gw = env.gateway();
    let collector = || CollectorSpec {
        name: "entra".into(),
        plugin: plugin.clone(),
        config: json!({}),
        graph: Some({
            let gw = gw.clone();
            Arc::new(move |task: &str| gw.for_task(task))
        }),
        concurrency: 4,
        limits: Limits::default(),
    };
    let sinks = || {
        [SinkTarget {
            name: "local".into(),
            repo: repo.clone(),
            inputs: vec!["entra".into()],
            writer_options: WriterOptions::default(),
        }]
    };
    let first = run_backup(&[collector()], &sinks(), None).unwrap();
    assert!(!first.partial(), "{:?}", first.sinks);

    // ------------------------------------------------------------ known changes
    let dump = sim.dump();
    let users = dump["users"].as_object().unwrap();
    let member_of = |id: &str, collection: &str| -> Vec<String> {
        dump[collection]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, c)| c.get("@sim.deleted").is_none())
            .filter(|(_, c)| strs(&c["@sim.members"]).iter().any(|m| m == id))
            .map(|(cid, _)| cid.clone())
            .collect()
    };
    let has_assignments = |id: &str| {
        dump["appRoleAssignments"]
            .as_object()
            .unwrap()
            .values()
            .any(|a| a["principalId"] == json!(id) || a["resourceId"] == json!(id))
    };
    let owns_something = |id: &str| {
        ["groups", "applications", "servicePrincipals"]
            .iter()
            .any(|c| {
                dump[*c]
                    .as_object()
                    .unwrap()
                    .values()
                    .any(|o| strs(&o["@sim.owners"]).iter().any(|x| x == id))
            })
    };
    let quiet_users: Vec<&String> = users
        .iter()
        .filter(|(id, u)| {
            u.get("@sim.deleted").is_none()
                && !u["userPrincipalName"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("admin@")
                && !has_assignments(id)
                && !owns_something(id)
        })
        .map(|(id, _)| id)
        .collect();
    // A user's job title changes.
    let patched = quiet_users[0].clone();
    let old_title = users[&patched]["jobTitle"].clone();
    env.ok(
        "PATCH",
        &format!("/v1.0/users/{patched}"),
        Some(json!({"jobTitle": "Chief Diff Officer"})),
    );
    // A user who is a member of groups and has a manager is soft-deleted: the user, their
    // memberships and their manager link leave; users they manage keep pointing at them.
    let leaver = quiet_users
        .iter()
        .find(|u| {
            ***u != patched
                && !member_of(u, "groups").is_empty()
                && !strs(&users[u.as_str()]["@sim.manager"]).is_empty()
        })
        .map(|u| u.to_string())
        .expect("a user with memberships and a manager");
    env.ok("DELETE", &format!("/v1.0/users/{leaver}"), None);
    // A security group with members is permanently deleted: the group and every link of it.
    let gone_group = dump["groups"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(id, g)| {
            g.get("@sim.deleted").is_none()
                && !g["groupTypes"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|x| x == "Unified"))
                && !strs(&g["@sim.members"]).is_empty()
                && !has_assignments(id)
                && !strs(&g["@sim.members"]).contains(&leaver)
        })
        .map(|(id, _)| id.clone())
        .expect("a security group with members");
    assert_eq!(sim.delete(std::slice::from_ref(&gone_group), true).0, 1);
    // A user is created.
    let created = env.ok(
        "POST",
        "/v1.0/users",
        Some(
            json!({"accountEnabled": true, "displayName": "Dee Ff", "mailNickname": "deeff",
            "userPrincipalName": format!("deeff@{}", sim.domain()),
            "passwordProfile": {"password": "Xy!12345678", "forceChangePasswordNextSignIn": true}}),
        ),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A Conditional Access policy is switched to report-only.
    let (ca, ca_old) = dump["conditionalAccessPolicies"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, p)| p["state"] == json!("enabled"))
        .map(|(id, p)| (id.clone(), p["state"].clone()))
        .expect("an enabled policy");
    env.ok(
        "PATCH",
        &format!("/v1.0/identity/conditionalAccess/policies/{ca}"),
        Some(json!({"state": "enabledForReportingButNotEnforced"})),
    );

    let second = run_backup(&[collector()], &sinks(), None).unwrap();
    assert!(!second.partial(), "{:?}", second.sinks);
    let snaps = repo.snapshots().unwrap();
    assert_eq!(snaps.len(), 2);
    let find = |id: &str| {
        repo.snapshot(&snaps.iter().find(|s| s.id.to_string() == id).unwrap().id)
            .unwrap()
    };
    let a = find(&first.sinks[0].snapshot);
    let b = find(&second.sinks[0].snapshot);
    let diff = diff_snapshots(&repo, &a, &b, true).unwrap();

    // ------------------------------------------------------------ exactly these
    let mut want: BTreeSet<(String, String, String)> = BTreeSet::new();
    let mut add = |change: &str, kind: &str, id: String| {
        want.insert((change.to_string(), kind.to_string(), id));
    };
    add("changed", "user", patched.clone());
    add("removed", "user", leaver.clone());
    for g in member_of(&leaver, "groups") {
        add("removed", "groupMember", format!("{g}/{leaver}"));
    }
    for u in member_of(&leaver, "administrativeUnits") {
        add(
            "removed",
            "administrativeUnitMember",
            format!("{u}/{leaver}"),
        );
    }
    for m in strs(&users[&leaver]["@sim.manager"]) {
        add("removed", "userManager", format!("{leaver}/{m}"));
    }
    add("removed", "group", gone_group.clone());
    for m in strs(&dump["groups"][&gone_group]["@sim.members"]) {
        if ["users", "groups", "servicePrincipals"]
            .iter()
            .any(|c| live(&dump, c, &m))
        {
            add("removed", "groupMember", format!("{gone_group}/{m}"));
        }
    }
    for parent in member_of(&gone_group, "groups") {
        add("removed", "groupMember", format!("{parent}/{gone_group}"));
    }
    for unit in member_of(&gone_group, "administrativeUnits") {
        add(
            "removed",
            "administrativeUnitMember",
            format!("{unit}/{gone_group}"),
        );
    }
    // Graph deletes the directory role assignments of a principal that is permanently deleted.
    for (id, ra) in dump["roleAssignments"].as_object().unwrap() {
        if ra["principalId"] == json!(gone_group) {
            add("removed", "unifiedRoleAssignment", id.clone());
        }
    }
    add("added", "user", created.clone());
    add("changed", "conditionalAccessPolicy", ca.clone());
    let have: BTreeSet<(String, String, String)> = diff
        .items
        .iter()
        .map(|i| (i.change.to_string(), i.kind.clone(), i.id.clone()))
        .collect();
    assert_eq!(
        have.difference(&want).collect::<Vec<_>>(),
        Vec::<&(String, String, String)>::new(),
        "listed but not changed"
    );
    assert_eq!(
        want.difference(&have).collect::<Vec<_>>(),
        Vec::<&(String, String, String)>::new(),
        "changed but not listed"
    );
    assert_eq!(diff.summary.added, 1);
    assert_eq!(diff.summary.changed, 2);
    assert_eq!(diff.summary.removed, want.len() - 3);

    // Changed attributes, with old and new values.
    let attrs = |kind: &str, id: &str| -> Vec<(String, Option<Value>, Option<Value>)> {
        diff.items
            .iter()
            .find(|i| i.kind == kind && i.id == id)
            .unwrap()
            .attributes
            .iter()
            .map(|a| (a.attribute.clone(), a.old.clone(), a.new.clone()))
            .collect()
    };
    let title_new = Some(json!("Chief Diff Officer"));
    let title_old = (!old_title.is_null()).then_some(old_title);
    assert_eq!(
        attrs("user", &patched),
        [("jobTitle".to_string(), title_old, title_new)]
    );
    let ca_attrs = attrs("conditionalAccessPolicy", &ca);
    assert!(
        ca_attrs.contains(&(
            "state".to_string(),
            Some(ca_old),
            Some(json!("enabledForReportingButNotEnforced"))
        )),
        "{ca_attrs:?}"
    );
    assert!(
        ca_attrs
            .iter()
            .all(|(a, _, _)| a == "state" || a == "modifiedDateTime"),
        "{ca_attrs:?}"
    );
}
