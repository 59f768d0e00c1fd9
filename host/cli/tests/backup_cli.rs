//! `cairn backup` as a process against the simulator: throttling storms and server errors are
//! ridden out with nothing lost; a failing task gives exit 3 and a snapshot marked partial;
//! output piped into a reader that stops early ends quietly; `cairn diff <snapshot> live`
//! compares a backup with the tenant as it is now.

use crate::support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

use cairn_graph_sim::{FaultKind, FaultRule, Profile, SimConfig};
use support::{text, Env};

/// Ids of the live objects of a dump collection.
fn live(dump: &serde_json::Value, collection: &str) -> BTreeSet<String> {
    dump[collection]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, o)| o.get("@sim.deleted").is_none())
        .map(|(id, _)| id.clone())
        .collect()
}

#[test]
fn throttling_storms_and_server_errors_are_ridden_out_with_nothing_lost() {
    let env = Env::start(SimConfig::new(Profile::Small, 7));
    let manifest = env.init("faults");
    // A 429 storm on every Graph path (short Retry-After), and bursts of 5xx on reads, with
    // and without Retry-After.
    env.sim.add_fault(
        FaultRule::new(
            "/v1.0/*",
            FaultKind::Throttle {
                retry_after: Some(0.05),
            },
        )
        .rate(0.4)
        .times(40),
    );
    env.sim.add_fault(
        FaultRule::new(
            "/v1.0/*",
            FaultKind::ServerError {
                status: 503,
                retry_after: Some(0.05),
            },
        )
        .method("GET")
        .rate(0.3)
        .times(15),
    );
    env.sim.add_fault(
        FaultRule::new(
            "/v1.0/*",
            FaultKind::ServerError {
                status: 500,
                retry_after: None,
            },
        )
        .method("GET")
        .rate(0.2)
        .times(4),
    );
    let metrics = env.dir.path().join("metrics.prom");
    let out = env
        .cairn()
        .args(["backup", "--json", "-m"])
        .arg(&manifest)
        .arg("--metrics-file")
        .arg(&metrics)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["sinks"][0]["partial"], false, "{report}");
    let stats = env.sim.stats();
    assert!(stats.faults_injected >= 20, "the faults fired: {stats:?}");

    // The gateway saw them and retried.
    let prom = std::fs::read_to_string(&metrics).unwrap();
    let throttled: f64 = prom
        .lines()
        .filter(|l| l.starts_with("cairn_graph_throttled_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(throttled > 0.0, "throttles counted:\n{prom}");

    // Nothing lost: every live user, group, application and service principal is in the
    // snapshot, and every membership link.
    let items = support::items(&env, &manifest, "latest");
    let dump = env.sim.dump();
    for (collection, kind) in [
        ("users", "user"),
        ("groups", "group"),
        ("applications", "application"),
        ("servicePrincipals", "servicePrincipal"),
    ] {
        let have: BTreeSet<String> = items
            .keys()
            .filter(|(k, _)| k == kind)
            .map(|(_, id)| id.clone())
            .collect();
        assert_eq!(have, live(&dump, collection), "{kind}");
    }
    let all_live: BTreeSet<String> = [
        "users",
        "groups",
        "applications",
        "servicePrincipals",
        "administrativeUnits",
    ]
    .iter()
    .flat_map(|c| live(&dump, c))
    .collect();
    let expected: BTreeSet<String> = live(&dump, "groups")
        .iter()
        .flat_map(|g| {
            dump["groups"][g]["@sim.members"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m.as_str())
                .filter(|m| all_live.contains(*m))
                .map(move |m| format!("{g}/{m}"))
        })
        .collect();
    let links: BTreeSet<String> = items
        .keys()
        .filter(|(k, _)| k == "groupMember")
        .map(|(_, id)| id.clone())
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(links, expected, "membership links");

    // `cairn ls | head -1`: the reader goes away after one line; cairn ends quietly.
    let mut child = env
        .cairn()
        .args(["ls", "latest", "-m"])
        .arg(&manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(!first.is_empty());
    // The read end is closed here; cairn still has hundreds of lines to write.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

#[test]
fn a_failing_task_gives_exit_3_and_a_snapshot_marked_partial() {
    let mut env = Env::start(SimConfig::new(Profile::Small, 3));
    // An app without Policy.Read.All: the policy tasks get 403s, the others work.
    let app = env.sim.add_app(&[
        "User.Read.All",
        "Group.Read.All",
        "Application.Read.All",
        "DelegatedPermissionGrant.Read.All",
        "AdministrativeUnit.Read.All",
        "RoleManagement.Read.Directory",
        "Domain.Read.All",
        "Organization.Read.All",
    ]);
    env.client_id = app.client_id.clone();
    env.client_secret = app.client_secret.clone();
    let manifest = env.init("partial");
    let out = env.run(&manifest, &["backup"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(all.contains("PARTIAL"), "{all}");
    assert!(
        all.contains("Policy.Read.All"),
        "names the permission: {all}"
    );

    let snaps = env.json(&manifest, &["snapshots", "--json"]);
    let snap = &snaps[0];
    assert_eq!(snap["partial"], true, "{snaps}");
    let failed: Vec<&str> = snap["failedTasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        failed.contains(&"entra/conditionalAccessPolicies"),
        "{failed:?}"
    );
    assert!(!failed.contains(&"entra/users"), "{failed:?}");
    // The users made it all the same.
    let items = support::items(&env, &manifest, "latest");
    assert_eq!(
        items.keys().filter(|(k, _)| k == "user").count(),
        live(&env.sim.dump(), "users").len()
    );

    let out = env.run(&manifest, &["snapshots"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("PARTIAL: ") && table.contains("entra/conditionalAccessPolicies"),
        "{table}"
    );
}

#[test]
fn diff_against_live_shows_what_changed_since_the_backup_and_writes_nothing() {
    let env = Env::start(SimConfig::new(Profile::Small, 21));
    let manifest = env.init("live");
    support::assert_ok(&env.run(&manifest, &["backup"]));
    let identity = support::identity(&manifest);
    let identity = identity.to_str().unwrap();

    // Right after the backup, the live tenant equals the snapshot: nothing differs.
    let d = env.json(
        &manifest,
        &["diff", "latest", "live", "--json", "-i", identity],
    );
    assert_eq!(
        d["summary"],
        serde_json::json!({"added": 0, "removed": 0, "changed": 0}),
        "{d}"
    );

    // Two users deleted and a churn round (updates, creations, deletions).
    let backed_up = support::items(&env, &manifest, "latest");
    let users: Vec<String> = backed_up
        .keys()
        .filter(|(k, _)| k == "user")
        .map(|(_, id)| id.clone())
        .take(2)
        .collect();
    env.sim.delete(&users, false);
    let churn = env.sim.churn(5.0);
    let d = env.json(
        &manifest,
        &["diff", "latest", "live", "--json", "-i", identity],
    );
    let with = |change: &str, kind: &str| -> BTreeSet<String> {
        d["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["change"] == change && i["kind"] == kind)
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect()
    };
    let removed = with("removed", "user");
    for u in &users {
        assert!(removed.contains(u), "deleted user {u} not reported: {d}");
    }
    let gone: BTreeSet<&String> = users
        .iter()
        .chain(&churn.soft_deleted)
        .chain(&churn.hard_deleted)
        .collect();
    assert!(
        removed.iter().all(|u| gone.contains(u)),
        "only deleted users are removed: {removed:?}"
    );
    let changed = with("changed", "user");
    let updated_users: Vec<&String> = churn
        .updated
        .iter()
        .filter(|id| !gone.contains(id))
        .filter(|id| backed_up.contains_key(&("user".to_string(), id.to_string())))
        .collect();
    for u in &updated_users {
        assert!(changed.contains(*u), "updated user {u} not reported: {d}");
    }
    for item in d["items"].as_array().unwrap() {
        if item["change"] == "changed" {
            assert!(
                item["attributes"].as_array().is_some_and(|a| !a.is_empty()),
                "a changed item names its attributes: {item}"
            );
        }
    }

    // The comparison wrote nothing to the repository.
    let snaps = env.json(&manifest, &["snapshots", "--json"]);
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps}");
}
