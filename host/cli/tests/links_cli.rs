//! SharePoint sharing links as processes against the Graph simulator: `cairn backup` with the
//! `sharepoint-links` collector next to `entra`, a sharing disaster (a link and a grant removed,
//! an anonymous edit link added), `cairn diff` telling it in words, `cairn restore apply
//! --revoke-added` undoing it, and `cairn restore verify` clean; deleted files restored from
//! their backed-up content with their sharing, across an interrupted apply.

use std::collections::BTreeMap;

use cairn_graph_sim::{FaultKind, FaultRule, Profile, SimConfig};
use serde_json::{json, Value};

use crate::support;

use support::{labelled as text, Collector, Setup};

support::setup_newtype!(
    /// The simulated tenant and a setup backing up `entra` and `sharepoint-links`.
    Env
);

impl Env {
    fn start(seed: u64, links_config: &str) -> Env {
        Env(Setup::start(SimConfig::new(Profile::Small, seed), |_| {
            vec![Collector {
                name: "links",
                plugin: "sharepoint-links",
                config: Some(links_config.to_string()),
            }]
        }))
    }

    /// Site and group drives' items: item id → (drive id, path, permissions).
    fn site_items(&self) -> BTreeMap<String, (String, String, Vec<Value>)> {
        self.sim.with_tenant(|t| {
            let mut out = BTreeMap::new();
            for d in t.drives.drives.values().filter(|d| d.owner.0 != "user") {
                for it in d
                    .items
                    .values()
                    .filter(|i| !i.deleted && i.parent.is_some())
                {
                    let mut parts = vec![it.name.clone()];
                    let mut cur = it.parent.clone();
                    while let Some(p) = cur {
                        let pi = &d.items[&p];
                        if pi.parent.is_some() {
                            parts.push(pi.name.clone());
                        }
                        cur = pi.parent.clone();
                    }
                    parts.reverse();
                    out.insert(
                        it.id.clone(),
                        (
                            d.id.clone(),
                            format!("/{}", parts.join("/")),
                            it.perms.iter().map(|p| Value::Object(p.clone())).collect(),
                        ),
                    );
                }
            }
            out
        })
    }
}

/// Calls `f` with every key and value of a JSON document.
fn walk(v: &Value, f: &mut dyn FnMut(&str, &Value)) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                f(k, x);
                walk(x, f);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| walk(x, f)),
        _ => {}
    }
}

/// What a permission grants, without its id, URL and share id.
fn grants(list: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = list
        .iter()
        .map(|p| {
            json!({
                "roles": p["roles"], "hasPassword": p["hasPassword"],
                "expirationDateTime": p["expirationDateTime"],
                "link": p.get("link").map(|l| json!([l["type"], l["scope"]])),
                "user": p["grantedToV2"]["user"]["id"],
            })
            .to_string()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_sharing_disaster_is_told_by_diff_and_undone_by_restore() {
    let env = Env::start(21, "{ allSites = true, content = true }");
    // File content too: streamed into the repository by the host from the second step on.
    let report = env.backup_report();
    let snap = report["sinks"][0]["snapshot"].as_str().unwrap().to_string();
    let mut content = 0;
    let mut statuses = Vec::new();
    walk(&report, &mut |k, v| match k {
        "content_bytes" => content += v.as_u64().unwrap_or(0),
        "status" => statuses.push(v.clone()),
        _ => {}
    });
    assert!(content > 0, "{report}");
    assert!(statuses.iter().all(|s| s != "failed"), "{report}");
    let before = env.site_items();

    // A removed organization link, a removed grant, an anonymous edit link on an unshared file.
    let (a, (a_drive, a_path, a_perms)) = before
        .iter()
        .find(|(_, (_, _, p))| {
            p.iter().any(|x| {
                x["link"]["scope"] == "organization"
                    && x["expirationDateTime"] == "0001-01-01T00:00:00Z"
            })
        })
        .expect("an organization link");
    let a_link = a_perms
        .iter()
        .find(|x| x["link"]["scope"] == "organization")
        .unwrap();
    let (b, (b_drive, b_path, b_perms)) = before
        .iter()
        .find(|(id, (_, _, p))| *id != a && p.iter().any(|x| x.get("link").is_none()))
        .expect("a direct grant");
    let b_grant = b_perms.iter().find(|x| x.get("link").is_none()).unwrap();
    let (c, (c_drive, c_path, _)) = before
        .iter()
        .find(|(id, (_, path, p))| p.is_empty() && path.contains('.') && *id != a && *id != b)
        .expect("an unshared file");
    for (drive, item, perm) in [(a_drive, a, a_link), (b_drive, b, b_grant)] {
        env.graph_ok(
            "DELETE",
            &format!(
                "/v1.0/drives/{drive}/items/{item}/permissions/{}",
                perm["id"].as_str().unwrap()
            ),
            None,
        );
    }
    env.graph_ok(
        "POST",
        &format!("/v1.0/drives/{c_drive}/items/{c}/createLink"),
        Some(json!({"type": "edit", "scope": "anonymous"})),
    );

    // The next backup and `cairn diff` say what happened, in words.
    let after = env.backup();
    let out = env.ok(&["diff", &snap, &after], true);
    let diff = String::from_utf8_lossy(&out.stdout);
    let who = b_grant["grantedToV2"]["user"]["displayName"]
        .as_str()
        .unwrap();
    for line in [
        format!("anonymous edit link added to {c_path} on "),
        format!("organization-wide view link removed from {a_path} on "),
        format!("grant to {who} (write) removed from {b_path} on "),
    ] {
        assert!(diff.contains(&line), "missing `{line}` in:\n{diff}");
    }

    // Restore the first snapshot's sharing, revoking what was added.
    let sel = [
        "--kind",
        "sharing,driveItem",
        "--revoke-added",
        snap.as_str(),
    ];
    let report = env.apply_json(&sel);
    let entries = report["entries"].as_array().unwrap();
    let by_item = |id: &str| -> Vec<&Value> {
        entries
            .iter()
            .filter(|e| e["itemId"] == id || e["item_id"] == id)
            .collect()
    };
    assert_eq!(by_item(a).len(), 1, "{report}");
    assert_eq!(by_item(b).len(), 1, "{report}");
    assert_eq!(by_item(c).len(), 1, "{report}");
    let notes = by_item(a)[0]["notes"].to_string();
    assert!(notes.contains("new link URL"), "{report}");
    assert!(!notes.contains(a_link["link"]["webUrl"].as_str().unwrap()));
    // The journal's human view lists the notes too (the new URL is the operator's to hand out).
    let restore_id = report["restoreId"]
        .as_str()
        .or(report["restore_id"].as_str())
        .unwrap_or_else(|| panic!("restore id in {report}"));
    let journal = text(&env.ok(&["restore", "journal", restore_id], true));
    assert!(journal.contains("new link URL"), "{journal}");
    for e in entries {
        assert_eq!(e["outcome"], "done", "{e}");
    }

    // Verify: nothing left; the permission sets are the snapshot's again.
    env.verify_clean(&sel);
    let now = env.site_items();
    for (id, (_, path, perms)) in &before {
        assert_eq!(grants(&now[id].2), grants(perms), "{path}");
    }
}

#[test]
fn a_grantee_recreated_by_the_entra_restore_gets_the_grant_back_under_the_new_id() {
    let env = Env::start(22, "{ allSites = true }");
    let snap = env.backup();
    let before = env.site_items();
    // A direct grant to a member user (not a guest).
    let (item, drive, grant) = before
        .iter()
        .find_map(|(id, (drive, _, perms))| {
            perms
                .iter()
                .find(|p| {
                    p.get("link").is_none()
                        && p["grantedToV2"]["user"]["id"].as_str().is_some_and(|u| {
                            !env.graph_ok("GET", &format!("/v1.0/users/{u}"), None)
                                ["userPrincipalName"]
                                .as_str()
                                .unwrap_or("#EXT#")
                                .contains("#EXT#")
                        })
                })
                .map(|p| (id.clone(), drive.clone(), p.clone()))
        })
        .expect("a grant to a member");
    let old_user = grant["grantedToV2"]["user"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The account is deleted for good, and its grant with it.
    env.graph_ok(
        "DELETE",
        &format!(
            "/v1.0/drives/{drive}/items/{item}/permissions/{}",
            grant["id"].as_str().unwrap()
        ),
        None,
    );
    assert_eq!(env.sim.delete(std::slice::from_ref(&old_user), true).0, 1);

    // One restore: Entra re-creates the user (new id), the links restorer re-invites it.
    let sel = ["--deleted-since", snap.as_str()];
    let report = env.apply_json(&sel);
    let entries = report["entries"].as_array().unwrap();
    let recreated = entries
        .iter()
        .find(|e| e["itemId"] == old_user.as_str() && e["kind"] == "recreate")
        .unwrap_or_else(|| panic!("the user is re-created: {report}"));
    let new_user = recreated["newId"].as_str().unwrap().to_string();
    assert_ne!(new_user, old_user);
    let invite = entries
        .iter()
        .find(|e| e["itemId"] == item.as_str())
        .unwrap_or_else(|| panic!("the grant is restored: {report}"));
    assert_eq!(invite["outcome"], "done", "{invite}");
    let now = env.site_items();
    let live = &now[&item].2;
    assert!(
        live.iter()
            .any(|p| p["grantedToV2"]["user"]["id"] == new_user.as_str()
                && p["roles"] == grant["roles"]),
        "{live:?}"
    );
    // Verify is clean: the snapshot's grant (old id) matches the live one through the journal's
    // re-mapping.
    let (_, v) = env.verify_json(&sel);
    let remaining: Vec<&Value> = v["remaining"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["itemId"] == item.as_str())
        .collect();
    assert!(remaining.is_empty(), "{v}");
}

/// A 410 on the second page of a drive's delta in a `cairn backup`: the backup completes (not
/// partial), the drive's task notes the restart and the host counts it (`restarts` in the
/// report, `cairn_task_listing_restarts` in the metrics file), and the snapshot holds exactly
/// the live items of the site drives.
#[test]
fn a_drive_delta_reset_mid_run_is_counted_and_the_backup_completes() {
    let env = Env::start(23, "{ allSites = true }");
    let drive = env.sim.with_tenant(|t| {
        t.drives
            .drives
            .values()
            .find(|d| d.owner.0 == "site")
            .unwrap()
            .id
            .clone()
    });
    // Over 200 items: the drive's delta has a second page.
    for i in 0..210 {
        env.graph_ok(
            "PUT",
            &format!("/v1.0/drives/{drive}/items/root:/bulk-{i:03}.txt:/content"),
            Some(json!(format!("file {i}"))),
        );
    }
    // This drive's delta requests (a nextLink percent-encodes the `!` of a drive id).
    env.sim.add_fault(
        FaultRule::new(
            &format!(
                "/v1.0/drives/*{}/root/delta",
                drive.trim_start_matches("b!")
            ),
            FaultKind::Resync,
        )
        .after(1)
        .times(1),
    );
    let metrics = env.dir.path().join("metrics.prom");
    let report = env.json(
        &[
            "backup",
            "--json",
            "--metrics-file",
            metrics.to_str().unwrap(),
        ],
        false,
    );
    assert_eq!(report["sinks"][0]["partial"], false, "{report}");
    let name = format!("links/drive/{drive}");
    let task = &report["tasks"][&name];
    assert_eq!(task["status"], "complete", "{report}");
    assert_eq!(task["restarts"], 1, "{task}");
    let notes = task["notes"].to_string();
    assert!(notes.contains("listed again from the start"), "{notes}");
    let prom = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        prom.lines()
            .any(|l| l == format!("cairn_task_listing_restarts{{task=\"{name}\"}} 1")),
        "{prom}"
    );
    // The snapshot's drive items are the live ones of the site and group drives.
    let items = env.json(&["ls", "latest", "driveItem", "--json"], false);
    let stored: std::collections::BTreeSet<String> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let live: std::collections::BTreeSet<String> = env.sim.with_tenant(|t| {
        t.drives
            .drives
            .values()
            .filter(|d| d.owner.0 != "user")
            .flat_map(|d| {
                d.items
                    .values()
                    .filter(|i| !i.deleted)
                    .map(|i| i.id.clone())
            })
            .collect()
    });
    assert_eq!(stored, live);
}

/// Files deleted since the snapshot come back from their backed-up content (`content = true`),
/// the large one through an upload session, with their links and grants on the new ids. An
/// apply of a saved plan that stops after the files (a grant's invite fails) finishes when the
/// same plan is applied again: the done actions are skipped and the journal's old → new ids send
/// the remaining grant to the re-created file.
#[test]
fn deleted_files_come_back_from_their_content_and_an_interrupted_apply_finishes_on_a_rerun() {
    let env = Env::start(23, "{ allSites = true, content = true }");
    let before = env.site_items();
    let (small, (drive, small_path, small_perms)) = before
        .iter()
        .find(|(_, (_, path, p))| {
            path.contains('.')
                && p.len() == 1
                && p[0]["link"]["scope"] == "organization"
                && p[0]["expirationDateTime"] == "0001-01-01T00:00:00Z"
        })
        .map(|(id, v)| (id.clone(), v.clone()))
        .expect("a file shared by one organization link");
    let small_bytes = env
        .sim
        .with_tenant(|t| t.drives.drives[&drive].items[&small].content.clone());
    // A 5 MiB file in the same library, shared by an anonymous link and a grant.
    let big_bytes: Vec<u8> = (0..5 * 1024 * 1024 + 777u32)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8)
        .collect();
    let big_path = "/Large export.bin";
    let mut c = cairn_graph_sim::testkit::Client::new(&env.sim.base_url())
        .with_token(env.sim.access_token());
    let r = env
        .rt
        .block_on(c.send(
            "PUT",
            &format!("/v1.0/drives/{drive}/root:/Large%20export.bin:/content"),
            &[("Content-Type", "application/octet-stream")],
            &big_bytes,
        ))
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let big = r.json()["id"].as_str().unwrap().to_string();
    env.graph_ok(
        "POST",
        &format!("/v1.0/drives/{drive}/items/{big}/createLink"),
        Some(json!({"type": "view", "scope": "anonymous"})),
    );
    let user = env.graph_ok("GET", "/v1.0/users?$top=1&$select=id", None)["value"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    env.graph_ok(
        "POST",
        &format!("/v1.0/drives/{drive}/items/{big}/invite"),
        Some(json!({"recipients": [{"objectId": user}], "roles": ["write"], "requireSignIn": true, "sendInvitation": false})),
    );
    let snap = env.backup();
    let big_perms = env.site_items()[&big].2.clone();

    // The disaster: both files deleted.
    for id in [&small, &big] {
        env.graph_ok("DELETE", &format!("/v1.0/drives/{drive}/items/{id}"), None);
    }

    // A saved plan: two files back at their paths, then their sharing.
    let plan_file = env.dir.path().join("files-plan.json");
    let plan_path = plan_file.to_str().unwrap();
    env.ok(
        &[
            "restore",
            "plan",
            "--kind",
            "sharing,driveItem",
            "-o",
            plan_path,
            &snap,
        ],
        true,
    );
    let plan: Value = serde_json::from_slice(&std::fs::read(&plan_file).unwrap()).unwrap();
    // (Plan ids are the collector's name and the plugin's action id.)
    let ids: Vec<&str> = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .map(|id| id.strip_prefix("links:").unwrap_or(id))
        .collect();
    for want in [
        format!("driveItem/{small}/restore"),
        format!("driveItem/{big}/restore"),
        format!("sharing/{small}/link-view-organization/create"),
        format!("sharing/{big}/link-view-anonymous/create"),
    ] {
        assert!(ids.contains(&want.as_str()), "{want} in {ids:?}");
    }
    let invite = ids
        .iter()
        .find(|i| i.starts_with(&format!("sharing/{big}/grant-")) && i.ends_with("/invite"))
        .unwrap_or_else(|| panic!("the grant's invite in {ids:?}"))
        .to_string();
    assert_eq!(ids.len(), 5, "{ids:?}");

    // The first apply: the invite fails; everything else is done (exit 3).
    env.sim.add_fault(
        FaultRule::new(
            "*/invite",
            FaultKind::Error {
                status: 400,
                code: "invalidRequest".into(),
                message: "injected".into(),
            },
        )
        .times(1),
    );
    let args = ["restore", "apply", "--yes", "--json", "--plan", plan_path];
    let out = env.run(&args, true);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    for e in report["entries"].as_array().unwrap() {
        let want = if e["action"] == format!("links:{invite}") {
            "failed"
        } else {
            "done"
        };
        assert_eq!(e["outcome"], want, "{e}");
    }
    env.sim.clear_faults();

    // Again: only the invite is applied, onto the re-created file.
    let report = env.json(&args, true);
    let entries = report["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{report}");
    assert_eq!(entries[0]["action"], format!("links:{invite}"));
    assert_eq!(entries[0]["outcome"], "done", "{report}");

    // Both files are back at their paths with the backed-up bytes and their sharing.
    let now = env.site_items();
    for (old, path, bytes, perms) in [
        (&small, small_path.as_str(), &small_bytes, &small_perms),
        (&big, big_path, &big_bytes, &big_perms),
    ] {
        let (id, (_, _, live)) = now
            .iter()
            .find(|(_, (_, p, _))| p == path)
            .unwrap_or_else(|| panic!("{path} restored"));
        assert_ne!(id, old);
        let content = env
            .sim
            .with_tenant(|t| t.drives.drives[&drive].items[id].content.clone());
        assert!(&content == bytes, "{path}: the backed-up bytes");
        assert_eq!(grants(live), grants(perms), "{path}");
    }
    let out = env.run(
        &[
            "restore",
            "verify",
            "--json",
            "--kind",
            "sharing,driveItem",
            &snap,
        ],
        true,
    );
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("verify: not JSON ({e}): {}", text(&out)));
    assert!(
        out.status.success() && v["remaining"].as_array().unwrap().is_empty(),
        "verify not clean: {v}"
    );
}
