//! `cairn restore` and `cairn drill` as processes against the Graph simulator (issue #7's
//! scenarios): back the tenant up with `cairn backup`, break it through the simulator, restore
//! with `cairn restore apply`, and end with `cairn restore verify` clean.

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use cairn_graph_sim::{Profile, SimConfig};
use serde_json::{json, Value};

use crate::support;

use support::{labelled as text, Setup};

support::setup_newtype!(
    /// A simulated tenant (in this process) and a Cairn setup for it in a temporary directory.
    Env
);

impl Env {
    fn start(profile: Profile, seed: u64) -> Env {
        Env::with(SimConfig::new(profile, seed))
    }

    fn with(cfg: SimConfig) -> Env {
        Env(Setup::start(cfg, |_| Vec::new()))
    }

    /// `cairn <args> -m … -i …`.
    fn run(&self, args: &[&str]) -> Output {
        self.0.run(args, args[0] == "restore" || args[0] == "drill")
    }

    fn ok(&self, args: &[&str]) -> Output {
        self.0.ok(args, args[0] == "restore" || args[0] == "drill")
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", text(&out)))
    }

    fn graph(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.graph_json(method, path, body)
    }

    fn get(&self, path: &str) -> Value {
        let (s, v) = self.graph("GET", path, None);
        assert_eq!(s, 200, "GET {path}: {v}");
        v
    }

    /// Every object of a collection.
    fn all(&self, path: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut next = Some(path.to_string());
        while let Some(p) = next {
            let v = self.get(&p);
            out.extend(v["value"].as_array().cloned().unwrap_or_default());
            next = v["@odata.nextLink"]
                .as_str()
                .map(|n| n.replacen(self.sim.base_url().trim_end_matches('/'), "", 1));
        }
        out
    }

    fn journal_records(&self) -> usize {
        let dir = self.dir.path().join("repository").join("journals");
        std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .map(|r| std::fs::read_dir(r.path()).map(|x| x.count()).unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0)
    }
}

fn ids(v: &[Value]) -> Vec<String> {
    v.iter()
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect()
}

/// (a) 1,000 users and 50 groups bulk-deleted, half soft and half hard — among the hard ones
/// the break-glass account every Conditional Access policy excludes and the owner of a group
/// that survives — restored with `--deleted-since` alone: memberships, role assignments, the
/// references surviving policies and groups hold, and verify clean for the restored scope and
/// for the whole snapshot.
#[test]
fn a_bulk_deletion_of_users_and_groups_is_restored() {
    let env = Env::start(Profile::Medium, 11);
    let snap = env.backup();
    let users = env.all("/v1.0/users?$select=id,userPrincipalName,onPremisesSyncEnabled&$top=999");
    let groups = env.all("/v1.0/groups?$select=id,displayName,groupTypes,membershipRule&$top=999");
    let policies = env.all("/v1.0/identity/conditionalAccess/policies");
    let admins = policies
        .iter()
        .find(|p| p["displayName"] == "Require MFA for administrators")
        .expect("the tenant's admin MFA policy")
        .clone();
    let breakglass = admins["conditions"]["users"]["excludeUsers"][0]
        .as_str()
        .unwrap()
        .to_string();
    let static_groups: Vec<Value> = groups
        .into_iter()
        .filter(|g| g["membershipRule"].is_null())
        .collect();
    let gvictims: Vec<String> = ids(&static_groups).into_iter().take(50).collect();
    // A cloud user owning a group that is not deleted.
    let cloud: std::collections::HashMap<String, &Value> = users
        .iter()
        .filter(|u| u["onPremisesSyncEnabled"] != json!(true))
        .map(|u| (u["id"].as_str().unwrap().to_string(), u))
        .collect();
    let (owned, owner) = ids(&static_groups)
        .into_iter()
        .skip(50)
        .find_map(|g| {
            let owners = env.all(&format!("/v1.0/groups/{g}/owners?$select=id"));
            ids(&owners)
                .into_iter()
                .find(|o| cloud.contains_key(o) && *o != breakglass)
                .map(|o| (g, o))
        })
        .expect("a surviving group owned by a cloud user");
    let others: Vec<String> = ids(&users)
        .into_iter()
        .filter(|u| *u != breakglass && *u != owner)
        .skip(5)
        .take(998)
        .collect();
    let mut victims = others;
    victims.extend([breakglass.clone(), owner.clone()]);
    assert_eq!((victims.len(), gvictims.len()), (1000, 50));
    let before_users = users.len();
    let (soft, _) = env.sim.delete(&victims[..500], false);
    let (hard, _) = env.sim.delete(&victims[500..], true);
    env.sim.delete(&gvictims[..25], false);
    env.sim.delete(&gvictims[25..], true);
    assert_eq!((soft, hard), (500, 500));

    let started = Instant::now();
    let sel = ["--deleted-since", &snap];
    let mut args = vec!["restore", "plan", "--summary"];
    args.extend_from_slice(&sel);
    let out = env.ok(&args);
    assert!(String::from_utf8_lossy(&out.stdout).contains("actions"));
    let report = env.apply_json(&sel);
    eprintln!(
        "scenario (a): plan + apply {:.1}s, counts {}",
        started.elapsed().as_secs_f64(),
        report["counts"]
    );
    assert!(report["entries"].as_array().unwrap().len() >= 1050);
    assert!(report["counts"]["failed"].is_null(), "{}", report["counts"]);
    let live = env.all("/v1.0/users?$select=id,userPrincipalName&$top=999");
    assert_eq!(live.len(), before_users, "every user back, none twice");
    let now_id = |old: &str| -> String {
        let upn = &users.iter().find(|u| u["id"] == old).unwrap()["userPrincipalName"];
        live.iter()
            .find(|u| u["userPrincipalName"] == *upn)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // References surviving objects held to deleted ones came back with the same restore: the
    // policies exclude the re-created break-glass account (and stay enabled), the surviving
    // group has its re-created owner again.
    let new_bg = now_id(&breakglass);
    assert_ne!(new_bg, breakglass);
    let admins_now = env.get(&format!(
        "/v1.0/identity/conditionalAccess/policies/{}",
        admins["id"].as_str().unwrap()
    ));
    assert_eq!(
        admins_now["conditions"]["users"]["excludeUsers"],
        json!([new_bg])
    );
    assert_eq!(admins_now["state"], admins["state"]);
    let repointed = report["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().ends_with("/repoint") && e["outcome"] == "done")
        .count();
    assert!(repointed >= 2, "{repointed} policies re-pointed");
    let owners = env.all(&format!("/v1.0/groups/{owned}/owners?$select=id"));
    assert!(
        ids(&owners).contains(&now_id(&owner)),
        "{owned} owned by {owner} again"
    );
    // Nothing else to do: the restored scope (every object the journal names) and the whole
    // snapshot verify clean.
    env.verify_clean(&sel);
    env.verify_clean(&[&snap]);
    // The journal is listed.
    let list = env.json(&["restore", "journal", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
}

/// (b) A CA policy edited to exclude everyone and another deleted, rolled back.
#[test]
fn b_conditional_access_changes_are_rolled_back() {
    let env = Env::start(Profile::Small, 12);
    let snap = env.backup();
    let policies = env.all("/v1.0/identity/conditionalAccess/policies");
    let enabled: Vec<&Value> = policies
        .iter()
        .filter(|p| p["state"] == "enabled")
        .collect();
    assert!(enabled.len() >= 2);
    let weakened = enabled[0].clone();
    let deleted = enabled[1].clone();
    let mut conditions = weakened["conditions"].clone();
    conditions["users"]["excludeUsers"] = json!(["All"]);
    let (s, v) = env.graph(
        "PATCH",
        &format!(
            "/v1.0/identity/conditionalAccess/policies/{}",
            weakened["id"].as_str().unwrap()
        ),
        Some(json!({"state": "enabledForReportingButNotEnforced", "conditions": conditions})),
    );
    assert!(s < 300, "{v}");
    let (s, v) = env.graph(
        "DELETE",
        &format!(
            "/v1.0/identity/conditionalAccess/policies/{}",
            deleted["id"].as_str().unwrap()
        ),
        None,
    );
    assert!(s < 300, "{v}");

    // The plan names both, with reasons; report-only unless asked otherwise.
    let plan = env.json(&[
        "restore",
        "plan",
        "--json",
        "--kind",
        "conditionalAccessPolicy",
        &snap,
    ]);
    let acts = plan["actions"].as_array().unwrap();
    assert!(
        acts.iter()
            .any(|a| a["itemId"] == weakened["id"] && a["kind"] == "update"),
        "{plan}"
    );
    // Graph keeps deleted policies in the recycle bin for a while: undelete keeps the id.
    assert!(
        acts.iter().any(|a| a["itemId"] == deleted["id"]
            && (a["kind"] == "undelete" || a["kind"] == "recreate")),
        "{plan}"
    );
    // Report-only by default, with the manual step to switch it back on.
    assert!(
        acts.iter()
            .any(|a| a["itemId"] == weakened["id"] && a["kind"] == "manual"),
        "{plan}"
    );
    let sel = [
        "--kind",
        "conditionalAccessPolicy",
        "--ca-state",
        "as-backed-up",
        &snap,
    ];
    let report = env.apply_json(&sel);
    assert_eq!(report["counts"]["failed"], Value::Null, "{report}");
    let back = env.get(&format!(
        "/v1.0/identity/conditionalAccess/policies/{}",
        weakened["id"].as_str().unwrap()
    ));
    assert_eq!(back["state"], "enabled");
    assert_eq!(
        back["conditions"]["users"]["excludeUsers"],
        weakened["conditions"]["users"]["excludeUsers"]
    );
    let now = env.all("/v1.0/identity/conditionalAccess/policies");
    let recreated = now
        .iter()
        .find(|p| p["displayName"] == deleted["displayName"])
        .expect("the deleted policy is back");
    assert_eq!(recreated["state"], "enabled");
    env.verify_clean(&sel);
}

/// (c) One user's attributes restored without touching others.
#[test]
fn c_one_users_attributes_are_restored_and_nothing_else() {
    let env = Env::start(Profile::Small, 13);
    let snap = env.backup();
    let users = env.all("/v1.0/users?$select=id,jobTitle,department,officeLocation&$top=999");
    let (a, b) = (users[3].clone(), users[4].clone());
    let id_a = a["id"].as_str().unwrap();
    let id_b = b["id"].as_str().unwrap();
    for id in [id_a, id_b] {
        let (s, v) = env.graph(
            "PATCH",
            &format!("/v1.0/users/{id}"),
            Some(
                json!({"jobTitle": "Intruder", "department": "Nowhere", "officeLocation": "Moon"}),
            ),
        );
        assert!(s < 300, "{v}");
    }
    let item = format!("user/{id_a}");
    let sel = [
        "--id",
        item.as_str(),
        "--attributes",
        "jobTitle,department",
        &snap,
    ];
    let mut args = vec!["restore", "plan", "--json"];
    args.extend_from_slice(&sel);
    let plan = env.json(&args);
    let acts = plan["actions"].as_array().unwrap();
    assert_eq!(acts.len(), 1, "{plan}");
    assert_eq!(acts[0]["kind"], "update");
    assert_eq!(acts[0]["itemId"], id_a);
    let mut args = vec!["restore", "apply", "--yes"];
    args.extend_from_slice(&sel);
    env.ok(&args);
    let ua = env.get(&format!(
        "/v1.0/users/{id_a}?$select=jobTitle,department,officeLocation"
    ));
    assert_eq!(ua["jobTitle"], a["jobTitle"]);
    assert_eq!(ua["department"], a["department"]);
    assert_eq!(
        ua["officeLocation"], "Moon",
        "attributes not selected stay as they are"
    );
    let ub = env.get(&format!("/v1.0/users/{id_b}?$select=jobTitle"));
    assert_eq!(ub["jobTitle"], "Intruder", "other users are untouched");
    env.verify_clean(&sel);
}

/// (d) An app and its service principal deleted, restored with owners, app-role assignments
/// and grants.
#[test]
fn d_an_application_and_its_service_principal_are_restored() {
    let env = Env::start(Profile::Small, 14);
    let snap = env.backup();
    let apps = env.all("/v1.0/applications?$top=999");
    let sps = env.all("/v1.0/servicePrincipals?$top=999");
    let (app, sp) = apps
        .iter()
        .find_map(|a| {
            let sp = sps.iter().find(|s| s["appId"] == a["appId"])?;
            let owners = env.all(&format!("/v1.0/applications/{}/owners", a["id"].as_str()?));
            (!owners.is_empty()).then(|| (a.clone(), sp.clone()))
        })
        .expect("an app with owners and a service principal");
    let (s, _) = env.graph(
        "DELETE",
        &format!("/v1.0/servicePrincipals/{}", sp["id"].as_str().unwrap()),
        None,
    );
    assert!(s < 300);
    let (s, _) = env.graph(
        "DELETE",
        &format!("/v1.0/applications/{}", app["id"].as_str().unwrap()),
        None,
    );
    assert!(s < 300);
    let a_item = format!("application/{}", app["id"].as_str().unwrap());
    let s_item = format!("servicePrincipal/{}", sp["id"].as_str().unwrap());
    let sel = ["--id", a_item.as_str(), "--id", s_item.as_str(), &snap];
    let report = env.apply_json(&sel);
    assert!(
        report["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["outcome"] != "failed"),
        "{report}"
    );
    let back = env.all(&format!(
        "/v1.0/applications?$filter=displayName eq '{}'",
        app["displayName"].as_str().unwrap()
    ));
    assert_eq!(back.len(), 1, "one application, not two");
    env.verify_clean(&sel);
}

/// (e) Apply killed half-way (SIGKILL after some journal records) and run again: finishes
/// without duplicates.
#[test]
fn e_a_killed_apply_is_finished_by_running_it_again() {
    let env = Env::start(Profile::Small, 15);
    let snap = env.backup();
    let users = env.all("/v1.0/users?$select=id,userPrincipalName&$top=999");
    let before = users.len();
    let victims: Vec<String> = ids(&users).into_iter().skip(2).take(40).collect();
    env.sim.delete(&victims, true);
    let sel = ["--deleted-since", snap.as_str(), "--concurrency", "1"];
    let mut args = vec!["restore", "apply", "--yes"];
    args.extend_from_slice(&sel);
    let mut child = env
        .cairn(&args)
        .arg("-i")
        .arg(&env.identity)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The start record plus a few batches of results, then SIGKILL.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if env.journal_records() >= 4 {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the apply ended before it could be killed: {status}");
        }
        assert!(Instant::now() < deadline, "no journal records appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    let _ = child.wait();
    let partial = env.all("/v1.0/users?$select=id&$top=999").len();
    assert!(
        partial < before,
        "killed before the end ({partial} of {before} users)"
    );

    let report = env.json(&[
        "restore",
        "apply",
        "--yes",
        "--json",
        "--deleted-since",
        &snap,
    ]);
    // What the killed run finished is not planned again: fewer users to re-create now.
    let recreated_now = report["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "recreate" && e["itemKind"] == "user" && e["outcome"] == "done")
        .count();
    assert!(
        recreated_now < 40,
        "{recreated_now} users re-created by the second run"
    );
    assert!(
        report["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["outcome"] != "failed"),
        "{report}"
    );
    let live = env.all("/v1.0/users?$select=id,userPrincipalName&$top=999");
    assert_eq!(live.len(), before, "every user back once");
    let mut upns: Vec<&str> = live
        .iter()
        .map(|u| u["userPrincipalName"].as_str().unwrap())
        .collect();
    upns.sort();
    upns.dedup();
    assert_eq!(upns.len(), before, "no duplicates");
    // One restore, two runs in its journal.
    let list = env.json(&["restore", "journal", "--json"]);
    assert_eq!(list[0]["attempts"], 2, "{list}");
    let rid = list[0]["restoreId"].as_str().unwrap().to_string();
    // Ownerships the deleted users held of surviving groups came back with the same restore:
    // the restored scope and the whole snapshot verify clean.
    env.verify_clean(&["--deleted-since", &snap]);
    env.verify_clean(&[&snap]);
    let out = env.ok(&["restore", "journal", &rid]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("→"),
        "{}",
        text(&out)
    );
}

/// Usage: apply refuses without --yes on a non-terminal (exit 2); export writes JSON files;
/// drill restores into a fresh tenant and reports recovery time and fidelity.
#[test]
fn apply_needs_yes_export_writes_files_and_drill_reports() {
    let env = Env::start(Profile::Small, 16);
    let snap = env.backup();
    let out = env.run(&["restore", "apply", &snap]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--yes"),
        "{}",
        text(&out)
    );
    // Without an identity: usage error that says so.
    let out = env.cairn(&["restore", "plan", &snap]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--identity"));
    // Nothing changed: the plan is empty, verify clean.
    let plan = env.json(&["restore", "--json", &snap]);
    assert!(
        plan["actions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["kind"] == "manual"),
        "{plan}"
    );
    env.verify_clean(&[&snap]);

    let out_dir = env.dir.path().join("export");
    let rep = env.json(&[
        "restore",
        "export",
        "--json",
        "--kind",
        "user",
        "--out",
        out_dir.to_str().unwrap(),
        &snap,
    ]);
    let n = rep["items"].as_u64().unwrap();
    assert!(n >= 50, "{rep}");
    let files: Vec<PathBuf> = std::fs::read_dir(out_dir.join("entra").join("user"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len() as u64, n);
    let one: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    assert!(
        one["id"].is_string() && one["userPrincipalName"].is_string(),
        "{one}"
    );

    let out = env.run(&["drill", "--json", &snap]);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("drill: not JSON ({e}): {}", text(&out)));
    assert!(v["recoverySecs"].as_f64().unwrap() > 0.0, "{v}");
    let total = v["fidelity"]["total"].as_u64().unwrap();
    let equal = v["fidelity"]["equal"].as_u64().unwrap();
    eprintln!("drill: {}", serde_json::to_string(&v["fidelity"]).unwrap());
    for a in v["remaining"].as_array().unwrap().iter().take(8) {
        eprintln!(
            "drill: differs: {} {} — {}",
            a["itemKind"], a["displayName"], a["reason"]
        );
    }
    assert!(v["perKind"]["user"]["total"].as_u64().unwrap() >= 50, "{v}");
    // Full fidelity: app role assignments and delegated grants to Microsoft Graph go to the
    // fresh tenant's own Graph service principal (found by appId), and the Conditional Access
    // policy requiring a built-in authentication strength finds it there (same id everywhere).
    for (kind, k) in v["perKind"].as_object().unwrap() {
        assert_eq!(k["equal"], k["total"], "drill: {kind} differs: {v}");
    }
    for kind in [
        "appRoleAssignment",
        "oauth2PermissionGrant",
        "conditionalAccessPolicy",
        // PIM eligibilities, written back into the (licensed) drill tenant.
        "unifiedRoleEligibilitySchedule",
    ] {
        assert!(
            v["perKind"][kind]["total"].as_u64().unwrap() > 0,
            "{kind}: {v}"
        );
    }
    assert!(total > 0 && equal == total, "{v}");
    assert_eq!(v["remaining"], json!([]), "{v}");
    assert_eq!(v["failures"], json!([]), "{v}");
    assert_eq!(v["clean"], json!(true), "{v}");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// Benchmark of scenario (a) with Graph-like latency and throttling: plan time, apply time,
/// requests, and the simulator's lower bound for those writes. Prints figures, asserts
/// nothing about speed. `cargo test -p cairn-cli --test integration restore_cli::bench -- --ignored --nocapture`
#[test]
#[ignore]
fn bench_scenario_a() {
    use cairn_graph_sim::{LatencyModel, Workload};
    let concurrency: u32 = std::env::var("RESTORE_BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let mut cfg = SimConfig::new(Profile::Medium, 21);
    cfg.throttling = true;
    cfg.latency = Some(LatencyModel::graph_like());
    let env = Env::with(cfg);
    let snap = env.backup();
    let users = env.all("/v1.0/users?$select=id&$top=999");
    let groups = env.all("/v1.0/groups?$select=id,membershipRule&$top=999");
    let victims: Vec<String> = ids(&users).into_iter().skip(5).take(1000).collect();
    let gvictims: Vec<String> = groups
        .iter()
        .filter(|g| g["membershipRule"].is_null())
        .take(50)
        .map(|g| g["id"].as_str().unwrap().to_string())
        .collect();
    env.sim.delete(&victims[..500], false);
    env.sim.delete(&victims[500..], true);
    env.sim.delete(&gvictims[..25], false);
    env.sim.delete(&gvictims[25..], true);

    let conc = concurrency.to_string();
    env.sim.reset_stats();
    let t = Instant::now();
    let plan = env.json(&["restore", "plan", "--json", "--deleted-since", &snap]);
    let plan_secs = t.elapsed().as_secs_f64();
    let plan_stats = env.sim.stats();
    env.sim.reset_stats();
    let t = Instant::now();
    let report = env.json(&[
        "restore",
        "apply",
        "--yes",
        "--json",
        "--concurrency",
        &conc,
        "--deleted-since",
        &snap,
    ]);
    let apply_wall = t.elapsed().as_secs_f64();
    let st = env.sim.stats();
    // The best any client could do for these writes: the write budget (3,000 per 150 s per app,
    // the first bucketful free), the RU budget, and latency at the same parallelism.
    let writes = st.write_units as f64;
    let write_bound = ((writes - 3000.0).max(0.0)) / 20.0;
    let w = Workload {
        requests: st.graph_requests,
        resource_units: st.ru_spent,
        objects: 0,
        longest_chain: 1,
        objects_per_request: 1,
        parallelism: concurrency,
    };
    let other_bound = env.sim.lower_bound(&w).as_secs_f64();
    let bound = write_bound.max(other_bound);
    let apply_secs = report["durationSecs"].as_f64().unwrap();
    println!(
        "restore bench (medium tenant, scenario a: 1,000 users + 50 groups deleted, half soft / half hard; \
         graph-like latency, throttling; concurrency {concurrency})"
    );
    println!(
        "  plan: {plan_secs:.1}s wall ({} actions; {} Graph requests, {} in $batch)",
        plan["actions"].as_array().unwrap().len(),
        plan_stats.graph_requests,
        plan_stats.batch_items
    );
    println!(
        "  apply: {apply_secs:.1}s ({apply_wall:.1}s wall with process start); {} Graph requests ({} in $batch), {} writes, {} RU, {} throttled; counts {}",
        st.graph_requests, st.batch_items, st.write_units, st.ru_spent, st.throttled, report["counts"]
    );
    println!(
        "  lower bound for these writes: {bound:.1}s (write budget {write_bound:.1}s, RU/latency {other_bound:.1}s); apply / bound = {:.2}",
        if bound > 0.0 { apply_secs / bound } else { f64::NAN }
    );
    env.verify_clean(&["--deleted-since", &snap]);
}
