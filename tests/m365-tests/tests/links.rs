//! The `sharepoint-links` plugin against the Graph simulator's `small` tenant (4 sites, 4 group
//! drives, 10 OneDrives): a full backup equals the simulator's drives and permissions; an
//! incremental run reads permissions only for the items whose sharing changed; a sharing
//! disaster (a link and a grant removed, an anonymous link added) is undone by a restore with
//! `revokeAdded`, after which the live permissions equal the snapshot's (apart from new link
//! URLs and ids); a grantee re-created by the Entra restore is remapped; a 410 on drive delta
//! resyncs the drive; an item that vanishes between delta and its permissions read is recorded
//! against the item and the run goes on.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::sync::{Arc, Mutex};

use cairn_gateway::Gateway;
use cairn_graph_sim::{FaultKind, FaultRule, Profile, SimConfig};
use cairn_m365_tests::{
    instance_with, run_all, run_task, MemContent, MemRemap, Recorder, SimEnv, Snapshot,
    SnapshotView,
};
use cairn_runtime::types::{Action, ActionKind, Listing, RestoreRequest, Selected};
use cairn_runtime::{
    BatchItem, Capabilities, GraphConnection, HttpRequest, HttpResponse, PluginInstance, RemapTable,
};
use serde_json::{json, Value};
use url::Url;

/// The sharepoint-links plugin component.
const LINKS: &str = env!("WASM_CAIRN_PLUGIN_SHAREPOINT_LINKS");

/// The shared simulator environment, and the gateways behind the connections handed out.
struct Env {
    base: SimEnv,
    _gws: Mutex<Vec<Arc<Gateway>>>,
}

impl std::ops::Deref for Env {
    type Target = SimEnv;
    fn deref(&self) -> &SimEnv {
        &self.base
    }
}

impl Env {
    fn start(cfg: SimConfig) -> Env {
        Env {
            base: SimEnv::start(cfg),
            _gws: Mutex::new(Vec::new()),
        }
    }

    fn small() -> Env {
        Env::start(SimConfig::new(Profile::Small, 7))
    }

    /// A recording connection through a gateway with the default app.
    fn graph(&self) -> Arc<Recorder> {
        let gw = self.gateway();
        let rec = Recorder::new(gw.for_task("links"));
        self._gws.lock().unwrap().push(gw);
        rec
    }

    fn collector(&self, graph: Arc<dyn GraphConnection>, config: &Value) -> PluginInstance {
        self.collector_into(graph, Arc::new(MemContent::default()), config)
    }

    /// A collector whose item content goes into `content`.
    fn collector_into(
        &self,
        graph: Arc<dyn GraphConnection>,
        content: Arc<MemContent>,
        config: &Value,
    ) -> PluginInstance {
        instance_with(
            &self.wasm,
            LINKS,
            Capabilities {
                graph: Some(graph),
                content: Some(content),
                ..Default::default()
            },
            config,
        )
    }

    fn restorer(
        &self,
        graph: Arc<dyn GraphConnection>,
        snap: &Snapshot,
        remap: Arc<MemRemap>,
    ) -> PluginInstance {
        self.restorer_from(graph, Arc::new(MemContent::default()), snap, remap)
    }

    /// A restorer that reads backed-up item content from `content`.
    fn restorer_from(
        &self,
        graph: Arc<dyn GraphConnection>,
        content: Arc<MemContent>,
        snap: &Snapshot,
        remap: Arc<MemRemap>,
    ) -> PluginInstance {
        instance_with(
            &self.wasm,
            LINKS,
            Capabilities {
                graph: Some(graph),
                content: Some(content),
                remap: Some(remap),
                snapshot: Some(Arc::new(SnapshotView(snap.clone()))),
                ..Default::default()
            },
            &json!({}),
        )
    }

    /// Live permissions of every non-deleted item that has any: item id → (drive id, list).
    fn live_permissions(&self) -> BTreeMap<String, (String, Vec<Value>)> {
        self.sim.with_tenant(|t| {
            let mut out = BTreeMap::new();
            for d in t.drives.drives.values() {
                for it in d.items.values() {
                    if !it.deleted && !it.perms.is_empty() {
                        out.insert(
                            it.id.clone(),
                            (
                                d.id.clone(),
                                it.perms.iter().map(|p| Value::Object(p.clone())).collect(),
                            ),
                        );
                    }
                }
            }
            out
        })
    }

    /// Live item ids per drive.
    fn live_items(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.sim.with_tenant(|t| {
            t.drives
                .drives
                .values()
                .map(|d| {
                    (
                        d.id.clone(),
                        d.items
                            .values()
                            .filter(|i| !i.deleted)
                            .map(|i| i.id.clone())
                            .collect(),
                    )
                })
                .collect()
        })
    }
}

/// What a permission grants, without ids, URLs and share ids (which change on re-creation).
fn grants(p: &Value) -> Value {
    let who = |v: Option<&Value>| -> Value {
        let mut ids: Vec<String> = match v {
            Some(Value::Array(a)) => a
                .iter()
                .map(|g| g["user"]["id"].as_str().unwrap_or("").to_string())
                .collect(),
            Some(g @ Value::Object(_)) => vec![g["user"]["id"]
                .as_str()
                .or(g["siteUser"]["email"].as_str())
                .unwrap_or("")
                .to_string()],
            _ => vec![],
        };
        ids.sort();
        json!(ids)
    };
    json!({
        "roles": p["roles"],
        "link": p.get("link").map(|l| json!({"type": l["type"], "scope": l["scope"]})),
        "hasPassword": p["hasPassword"],
        "expirationDateTime": p["expirationDateTime"],
        "grantedToV2": who(p.get("grantedToV2")),
        "grantedToIdentitiesV2": who(p.get("grantedToIdentitiesV2")),
    })
}

fn grant_set(list: &[Value]) -> Vec<Value> {
    let mut v: Vec<Value> = list.iter().map(grants).collect();
    v.sort_by_key(|x| x.to_string());
    v
}

/// The sharing items of a snapshot: item id → permissions.
fn snapshot_sharing(snap: &Snapshot) -> BTreeMap<String, Vec<Value>> {
    snap.of_kind("sharing")
        .into_iter()
        .map(|(id, s)| (id, s.body["permissions"].as_array().cloned().unwrap()))
        .collect()
}

fn perm_reads(requests: &[String]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.starts_with("GET ") && r.contains("/permissions"))
        .cloned()
        .collect()
}

/// Everything in the snapshot, as a restore of the whole snapshot selects it.
fn whole(snap: &Snapshot) -> Vec<Selected> {
    ["driveItem", "sharing"]
        .iter()
        .flat_map(|k| {
            snap.of_kind(k).into_keys().map(|id| Selected {
                kind: k.to_string(),
                id,
                attributes: vec![],
            })
        })
        .collect()
}

fn plan(inst: &mut PluginInstance, selection: Vec<Selected>, options: Value) -> Vec<Action> {
    inst.restore_plan(&RestoreRequest {
        selection,
        options: options.to_string(),
    })
    .unwrap()
    .unwrap()
}

/// A link of `scope` without password or expiry on a file, and the file's drive.
fn find_link(env: &Env, scope: &str) -> (String, String, Value) {
    env.live_permissions()
        .into_iter()
        .find_map(|(item, (drive, perms))| {
            perms
                .into_iter()
                .find(|p| {
                    p["link"]["scope"] == scope
                        && p["hasPassword"] == false
                        && p["expirationDateTime"] == "0001-01-01T00:00:00Z"
                })
                .map(|p| (item, drive, p))
        })
        .expect("the tenant has such a link")
}

fn find_grant(env: &Env, not_item: &str) -> (String, String, Value) {
    env.live_permissions()
        .into_iter()
        .filter(|(item, _)| item != not_item)
        .find_map(|(item, (drive, perms))| {
            perms
                .into_iter()
                .find(|p| p.get("link").is_none() && p["grantedToV2"]["user"]["id"].is_string())
                .map(|p| (item, drive, p))
        })
        .expect("the tenant has a direct grant")
}

#[test]
fn full_backup_equals_the_tenant_then_incremental_reads_only_changed_shared_items() {
    let env = Env::small();
    let rec = env.graph();
    let mut col = env.collector(rec.clone(), &json!({}));
    let mut snap = Snapshot::default();
    let run = run_all(&mut col, &mut snap);

    // One task per drive: 4 sites + 4 group drives + 10 OneDrives.
    let live = env.live_items();
    let tasks: BTreeSet<String> = run.tasks.keys().cloned().collect();
    let want: BTreeSet<String> = live.keys().map(|d| format!("drive/{d}")).collect();
    assert_eq!(tasks, want);
    for r in run.tasks.values() {
        assert_eq!(r.listing, Some(Listing::Full));
        assert!(r.error.is_none());
    }
    // Every live item is a driveItem; every item with permissions a sharing item equal to them.
    let items: BTreeSet<String> = snap.of_kind("driveItem").into_keys().collect();
    let all_live: BTreeSet<String> = live.values().flatten().cloned().collect();
    assert_eq!(items, all_live);
    let perms = env.live_permissions();
    let sharing = snapshot_sharing(&snap);
    assert_eq!(
        sharing.keys().collect::<Vec<_>>(),
        perms.keys().collect::<Vec<_>>()
    );
    for (id, (_, p)) in &perms {
        assert_eq!(grant_set(&sharing[id]), grant_set(p), "item {id}");
        // Stored without the deprecated duplicates and annotations.
        for s in &sharing[id] {
            assert!(s.get("grantedTo").is_none() && s.get("@deprecated.GrantedTo").is_none());
        }
    }
    // Paths are readable.
    let any = snap
        .of_kind("sharing")
        .into_values()
        .next()
        .expect("something is shared");
    assert!(any.body["path"].as_str().unwrap().starts_with('/'));
    assert_eq!(any.name, any.body["path"].as_str().unwrap());
    // One permission read per shared item, none for the others.
    assert_eq!(perm_reads(&rec.take()).len(), perms.len());

    // No change: an incremental run lists nothing and reads no permissions.
    env.sim.reset_stats();
    let run2 = run_all(&mut col, &mut snap);
    for r in run2.tasks.values() {
        assert_eq!(r.listing, Some(Listing::Changes));
        assert!(r.items.is_empty(), "{:?}", r.items);
    }
    assert!(perm_reads(&rec.take()).is_empty());
    let quiet_ru = env.sim.stats().sharepoint_ru_spent;

    // Change the sharing of two items (a grant added to a linked item, a link added to a
    // granted one): only those two are read (5 RU each).
    let (a_item, a_drive, _) = find_link(&env, "organization");
    let (b_item, b_drive, _) = find_grant(&env, &a_item);
    let someone = env.ok("GET", "/v1.0/users?$top=1&$select=id", None)["value"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    env.ok(
        "POST",
        &format!("/v1.0/drives/{a_drive}/items/{a_item}/invite"),
        Some(json!({"recipients": [{"objectId": someone}], "roles": ["read"], "requireSignIn": true, "sendInvitation": false})),
    );
    env.ok(
        "POST",
        &format!("/v1.0/drives/{b_drive}/items/{b_item}/createLink"),
        Some(json!({"type": "edit", "scope": "anonymous"})),
    );
    env.sim.reset_stats();
    let run3 = run_all(&mut col, &mut snap);
    let reads = perm_reads(&rec.take());
    assert_eq!(reads.len(), 2, "{reads:?}");
    assert!(reads.iter().any(|r| r.contains(&a_item)) && reads.iter().any(|r| r.contains(&b_item)));
    let ru = env.sim.stats().sharepoint_ru_spent;
    assert_eq!(
        ru,
        quiet_ru + 2 * 5,
        "two permission reads on top of the delta calls"
    );
    let changed: usize = run3
        .tasks
        .values()
        .map(|r| r.of_kind("sharing").len())
        .sum();
    assert!(changed >= 1);
    // The snapshot follows the tenant again.
    let sharing = snapshot_sharing(&snap);
    for (id, (_, p)) in &env.live_permissions() {
        assert_eq!(grant_set(&sharing[id]), grant_set(p), "item {id}");
    }
    // An item whose last permission goes leaves no sharing item behind.
    let lone = env
        .live_permissions()
        .into_iter()
        .find(|(_, (_, p))| p.len() == 1)
        .expect("an item with one permission");
    let pid = lone.1 .1[0]["id"].as_str().unwrap().to_string();
    env.ok(
        "DELETE",
        &format!(
            "/v1.0/drives/{}/items/{}/permissions/{pid}",
            lone.1 .0, lone.0
        ),
        None,
    );
    let run4 = run_all(&mut col, &mut snap);
    assert!(!snapshot_sharing(&snap).contains_key(&lone.0));
    assert!(
        perm_reads(&rec.take()).is_empty(),
        "an unshared item costs no permission read"
    );
    assert!(run4.tasks.values().any(|r| r
        .removed
        .iter()
        .any(|t| t.kind == "sharing" && t.id == lone.0)));
}

#[test]
fn sharing_disaster_is_undone_by_a_restore_with_revoke() {
    let env = Env::small();
    let rec = env.graph();
    let mut col = env.collector(rec.clone(), &json!({}));
    let mut snap = Snapshot::default();
    run_all(&mut col, &mut snap);
    let before = snap.clone();

    // The disaster: a link and a grant removed, an anonymous edit link added to a file that
    // was not shared.
    let (a_item, a_drive, a_link) = find_link(&env, "organization");
    let (b_item, b_drive, b_grant) = find_grant(&env, &a_item);
    let (c_item, c_drive) = env.sim.with_tenant(|t| {
        t.drives
            .drives
            .values()
            .flat_map(|d| d.items.values().map(move |i| (d, i)))
            .find(|(_, i)| !i.deleted && !i.folder && i.perms.is_empty())
            .map(|(d, i)| (i.id.clone(), d.id.clone()))
            .unwrap()
    });
    for (drive, item, pid) in [
        (&a_drive, &a_item, a_link["id"].as_str().unwrap()),
        (&b_drive, &b_item, b_grant["id"].as_str().unwrap()),
    ] {
        env.ok(
            "DELETE",
            &format!("/v1.0/drives/{drive}/items/{item}/permissions/{pid}"),
            None,
        );
    }
    let added = env.ok(
        "POST",
        &format!("/v1.0/drives/{c_drive}/items/{c_item}/createLink"),
        Some(json!({"type": "edit", "scope": "anonymous"})),
    );

    // Without revokeAdded: the link and the grant come back, the added link stays.
    let remap = Arc::new(MemRemap::default());
    let mut res = env.restorer(rec.clone(), &before, remap.clone());
    let p = plan(&mut res, whole(&before), json!({}));
    let ids: Vec<&str> = p.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(p.len(), 2, "{ids:?}");
    assert!(p.iter().all(|a| a.kind == ActionKind::Link));

    // With it: the added link is revoked too.
    let p = plan(&mut res, whole(&before), json!({"revokeAdded": true}));
    let ids: Vec<&str> = p.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(p.len(), 3, "{ids:?}");
    let link = p
        .iter()
        .find(|a| a.item_id == a_item)
        .expect("the removed link is re-created");
    assert_eq!(link.kind, ActionKind::Link);
    assert!(
        link.summary.contains("organization-wide view link"),
        "{}",
        link.summary
    );
    let invite = p.iter().find(|a| a.item_id == b_item).unwrap();
    assert_eq!(invite.kind, ActionKind::Link);
    assert!(invite.id.ends_with("/invite"), "{}", invite.id);
    let revoke = p.iter().find(|a| a.item_id == c_item).unwrap();
    assert_eq!(revoke.kind, ActionKind::Unlink);
    assert!(
        revoke.summary.contains("anonymous edit link"),
        "{}",
        revoke.summary
    );
    // Stable ids: the same inputs plan the same actions.
    let again = plan(&mut res, whole(&before), json!({"revokeAdded": true}));
    assert_eq!(
        again.iter().map(|a| &a.id).collect::<Vec<_>>(),
        p.iter().map(|a| &a.id).collect::<Vec<_>>()
    );

    for a in &p {
        let out = res.restore_apply(a).unwrap().unwrap();
        assert!(!out.already_done, "{}", a.id);
        if a.item_id == a_item {
            let note = out.notes.join(" ");
            assert!(note.contains("new link URL"), "{note}");
            assert_ne!(out.new_id.as_deref(), a_link["id"].as_str());
            assert!(!note.contains(a_link["link"]["webUrl"].as_str().unwrap()));
        }
    }
    // Idempotent: applying again finds everything done.
    for a in &p {
        let out = res.restore_apply(a).unwrap().unwrap();
        assert!(out.already_done, "{} applied twice", a.id);
    }
    // Verify: a second plan has nothing left to do.
    let verify = plan(&mut res, whole(&before), json!({"revokeAdded": true}));
    assert!(verify.is_empty(), "{verify:?}");

    // The permission sets equal the snapshot's, apart from new link URLs and ids.
    let live = env.live_permissions();
    let snapped = snapshot_sharing(&before);
    assert_eq!(
        live.keys().collect::<Vec<_>>(),
        snapped.keys().collect::<Vec<_>>()
    );
    for (id, (_, p)) in &live {
        assert_eq!(grant_set(p), grant_set(&snapped[id]), "item {id}");
    }
    assert!(!live.contains_key(&c_item));
    let _ = added;
    // The re-created link's id is mapped old → new.
    assert!(remap.lookup(a_link["id"].as_str().unwrap()).is_some());
}

#[test]
fn a_grantee_recreated_by_the_entra_restore_is_remapped() {
    let env = Env::small();
    let rec = env.graph();
    let mut col = env.collector(rec.clone(), &json!({}));
    let mut snap = Snapshot::default();
    run_all(&mut col, &mut snap);

    // A user with a direct grant is deleted for good, and the grant goes with it.
    let (item, drive, grant) = find_grant(&env, "");
    let old_user = grant["grantedToV2"]["user"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let user = env.ok(
        "GET",
        &format!("/v1.0/users/{old_user}?$select=displayName,userPrincipalName,mailNickname,mail"),
        None,
    );
    let pid = grant["id"].as_str().unwrap();
    env.ok(
        "DELETE",
        &format!("/v1.0/drives/{drive}/items/{item}/permissions/{pid}"),
        None,
    );
    env.sim.delete(std::slice::from_ref(&old_user), true);

    // The Entra restore re-creates the user (a new id) and records the mapping.
    let created = env.ok(
        "POST",
        "/v1.0/users",
        Some(json!({
            "accountEnabled": true,
            "displayName": user["displayName"],
            "userPrincipalName": user["userPrincipalName"],
            "mailNickname": user["mailNickname"],
            "passwordProfile": {"password": "xW!9-restore-only-in-test", "forceChangePasswordNextSignIn": true}
        })),
    );
    let new_user = created["id"].as_str().unwrap().to_string();
    assert_ne!(new_user, old_user);
    let remap = Arc::new(MemRemap::default());
    remap.record("user", &old_user, &new_user);

    let mut res = env.restorer(rec.clone(), &snap, remap.clone());
    let sel = vec![Selected {
        kind: "sharing".into(),
        id: item.clone(),
        attributes: vec![],
    }];
    let p = plan(&mut res, sel.clone(), json!({}));
    let invite = p
        .iter()
        .find(|a| a.id.ends_with("/invite"))
        .unwrap_or_else(|| panic!("{p:?}"));
    res.restore_apply(invite).unwrap().unwrap();
    // The grant now names the new user, and the plan is clean.
    let (_, live) = &env.live_permissions()[&item];
    assert!(
        live.iter()
            .any(|p| p["grantedToV2"]["user"]["id"] == new_user.as_str()
                && p["roles"] == grant["roles"]),
        "{live:?}"
    );
    assert!(!live
        .iter()
        .any(|p| p["grantedToV2"]["user"]["id"] == old_user.as_str()));
    assert!(plan(&mut res, sel, json!({})).is_empty());

    // Cross-tenant: the source tenant's drives cannot be addressed; each shared item is a
    // manual step naming its links and grants.
    let cross = plan(&mut res, whole(&snap), json!({"crossTenant": true}));
    assert_eq!(cross.len(), snapshot_sharing(&snap).len());
    assert!(cross.iter().all(|a| a.kind == ActionKind::Manual));
    assert!(
        cross.iter().any(|a| a.summary.contains(" grant to ")),
        "{cross:?}"
    );
}

#[test]
fn drive_delta_410_resyncs_the_drive() {
    let env = Env::small();
    let rec = env.graph();
    let mut col = env.collector(rec.clone(), &json!({"allSites": true}));
    let tasks = col.plan_tasks().unwrap().unwrap();
    let task = &tasks[0];
    let mut snap = Snapshot::default();
    let first = run_task(&mut col, task, None);
    snap.apply(&task.id, &first);
    let state = snap.states[&task.id].clone();

    env.sim
        .add_fault(FaultRule::new("/v1.0/drives/*/root/delta", FaultKind::Resync).times(1));
    let run = run_task(&mut col, task, Some(&state));
    assert!(run.error.is_none(), "{:?}", run.error);
    assert_eq!(
        run.listing,
        Some(Listing::Full),
        "a resync is a full listing"
    );
    let note = run.notes.join(" ");
    assert!(
        note.contains("410") && note.contains("full resync"),
        "{note}"
    );
    snap.apply(&task.id, &run);
    assert_eq!(
        snap.of_kind("driveItem").len(),
        first.of_kind("driveItem").len(),
        "the resync lists every item again"
    );
    // And the next run is incremental again.
    let state = snap.states[&task.id].clone();
    let next = run_task(&mut col, task, Some(&state));
    assert_eq!(next.listing, Some(Listing::Changes));

    // With content on, the first step (which stores nothing) already settles the listing, so
    // a reset is a full listing from the start too (the host fails a mid-run switch).
    let mut col = env.collector(rec.clone(), &json!({"allSites": true, "content": true}));
    let first = run_task(&mut col, task, None);
    assert!(first.error.is_none(), "{:?}", first.error);
    let state = first.state.clone().unwrap();
    let quiet = run_task(&mut col, task, Some(&state));
    assert_eq!(quiet.listing, Some(Listing::Changes));
    env.sim
        .add_fault(FaultRule::new("/v1.0/drives/*/root/delta", FaultKind::Resync).times(1));
    let run = run_task(&mut col, task, Some(&state));
    assert!(run.error.is_none(), "{:?}", run.error);
    assert_eq!(run.listing, Some(Listing::Full));
    assert_eq!(
        run.of_kind("driveItem").len(),
        first.of_kind("driveItem").len()
    );
    assert!(run
        .of_kind("driveItem")
        .iter()
        .any(|i| i.parts.iter().any(|p| p.name == "content")));
}

/// The ids of one task's items of `kind` in the snapshot.
fn task_ids(snap: &Snapshot, task: &str, kind: &str) -> BTreeSet<String> {
    snap.tasks[task]
        .keys()
        .filter(|(k, _)| k == kind)
        .map(|(_, id)| id.clone())
        .collect()
}

/// A 410 on the second page of a drive's delta, in a full run and in an incremental one: the
/// run does not fail; one step removes every item of the task (no items), the fresh enumeration
/// from the 410's `Location` lists the drive again, and the task's tree equals the live drive
/// (what was deleted is gone, what was added is there), with the restart in the notes.
#[test]
fn drive_delta_410_in_the_middle_of_a_run_lists_the_drive_again() {
    let env = Env::small();
    let rec = env.graph();
    let mut col = env.collector(rec.clone(), &json!({"allSites": true}));
    let tasks = col.plan_tasks().unwrap().unwrap();
    let task = &tasks[0];
    let drive = task.id.strip_prefix("drive/").unwrap().to_string();
    let upload = |from: usize, n: usize| {
        for i in from..from + n {
            env.ok(
                "PUT",
                &format!("/v1.0/drives/{drive}/items/root:/bulk-{i:03}.txt:/content"),
                Some(json!(format!("file {i}"))),
            );
        }
    };
    // This drive's delta requests (a nextLink percent-encodes the `!` of a drive id).
    let delta_path = format!(
        "/v1.0/drives/*{}/root/delta",
        drive.trim_start_matches("b!")
    );
    let shared_in_drive = || -> BTreeSet<String> {
        env.live_permissions()
            .into_iter()
            .filter(|(_, (d, _))| d == &drive)
            .map(|(i, _)| i)
            .collect()
    };
    let check = |snap: &Snapshot, run: &cairn_m365_tests::TaskRun| {
        assert!(run.error.is_none(), "{:?}", run.error);
        let note = run.notes.join(" ");
        assert!(
            note.contains("410") && note.contains("listed again from the start"),
            "{note}"
        );
        let wipes: Vec<_> = run
            .log
            .iter()
            .filter(|(_, removed)| removed.iter().any(|t| t.id == "*"))
            .collect();
        assert_eq!(wipes.len(), 1, "one step restarts the listing");
        assert!(wipes[0].0.is_empty(), "the restarting step lists nothing");
        let kinds: BTreeSet<&str> = wipes[0].1.iter().map(|t| t.kind.as_str()).collect();
        assert_eq!(kinds, BTreeSet::from(["driveItem", "sharing"]));
        assert_eq!(
            task_ids(snap, &task.id, "driveItem"),
            env.live_items()[&drive],
            "the tree is the live drive"
        );
        assert_eq!(task_ids(snap, &task.id, "sharing"), shared_in_drive());
    };

    // A full run of two pages (the drive has over 200 items), reset on its second page.
    upload(0, 230);
    env.sim.add_fault(
        FaultRule::new(&delta_path, FaultKind::Resync)
            .after(1)
            .times(1),
    );
    let mut snap = Snapshot::default();
    let run = run_task(&mut col, task, None);
    assert_eq!(run.listing, Some(Listing::Full));
    snap.apply(&task.id, &run);
    check(&snap, &run);

    // An incremental run of two pages (230 new files, one shared item and one file deleted),
    // reset on its second page: it stays a change listing and still ends equal to the drive.
    upload(230, 230);
    let (gone_shared, _) = env
        .live_permissions()
        .into_iter()
        .find(|(_, (d, _))| d == &drive)
        .expect("the drive has a shared item");
    env.ok(
        "DELETE",
        &format!("/v1.0/drives/{drive}/items/{gone_shared}"),
        None,
    );
    let gone_file = task_ids(&snap, &task.id, "driveItem")
        .into_iter()
        .find(|id| {
            let it = &snap.tasks[&task.id][&("driveItem".to_string(), id.clone())];
            it.name.contains("bulk-007")
        })
        .unwrap();
    env.ok(
        "DELETE",
        &format!("/v1.0/drives/{drive}/items/{gone_file}"),
        None,
    );
    env.sim.add_fault(
        FaultRule::new(&delta_path, FaultKind::Resync)
            .after(1)
            .times(1),
    );
    rec.take();
    let state = snap.states[&task.id].clone();
    let run = run_task(&mut col, task, Some(&state));
    assert_eq!(
        run.listing,
        Some(Listing::Changes),
        "the listing stays the one the first step chose"
    );
    snap.apply(&task.id, &run);
    check(&snap, &run);
    let items = task_ids(&snap, &task.id, "driveItem");
    assert!(!items.contains(&gone_shared) && !items.contains(&gone_file));
    assert!(!task_ids(&snap, &task.id, "sharing").contains(&gone_shared));
    // The fresh enumeration reads every shared item's permissions once (Graph cannot say
    // which changed across a reset).
    assert_eq!(perm_reads(&rec.take()).len(), shared_in_drive().len());

    // The next run is incremental from the fresh enumeration's delta link, and quiet.
    let state = snap.states[&task.id].clone();
    let next = run_task(&mut col, task, Some(&state));
    assert!(next.error.is_none(), "{:?}", next.error);
    assert_eq!(next.listing, Some(Listing::Changes));
    assert!(perm_reads(&rec.take()).is_empty());
}

/// A connection that deletes a drive item just before its permissions are read, as a user
/// deleting it between the delta listing and the read would.
struct Vanisher {
    inner: Arc<dyn GraphConnection>,
    target: (String, String),
    done: Mutex<bool>,
}

impl Vanisher {
    fn maybe_vanish(&self, url: &Url) {
        let (drive, item) = &self.target;
        if url.path().ends_with(&format!("/items/{item}/permissions")) {
            let mut done = self.done.lock().unwrap();
            if !*done {
                *done = true;
                let del = Url::parse(&format!(
                    "{}v1.0/drives/{drive}/items/{item}",
                    self.inner.base_url()
                ))
                .unwrap();
                let r = self
                    .inner
                    .send(HttpRequest {
                        method: "DELETE".into(),
                        url: del,
                        headers: vec![],
                        body: vec![],
                    })
                    .unwrap();
                assert_eq!(r.status, 204);
            }
        }
    }
}

impl GraphConnection for Vanisher {
    fn base_url(&self) -> &Url {
        self.inner.base_url()
    }
    fn send(&self, request: HttpRequest) -> Result<HttpResponse, String> {
        self.maybe_vanish(&request.url);
        self.inner.send(request)
    }
    fn batch(&self, requests: Vec<BatchItem>) -> Result<Vec<HttpResponse>, String> {
        for r in &requests {
            self.maybe_vanish(&r.request.url);
        }
        self.inner.batch(requests)
    }
    fn download(&self, request: HttpRequest) -> Result<Box<dyn Read + Send>, String> {
        self.inner.download(request)
    }
}

#[test]
fn an_item_vanishing_between_delta_and_its_permissions_is_recorded_and_the_run_goes_on() {
    let env = Env::small();
    let (item, drive, _) = find_link(&env, "organization");
    let rec = env.graph();
    let van = Arc::new(Vanisher {
        inner: rec.clone(),
        target: (drive.clone(), item.clone()),
        done: Mutex::new(false),
    });
    let mut col = env.collector(van, &json!({}));
    let tasks = col.plan_tasks().unwrap().unwrap();
    let task = tasks
        .iter()
        .find(|t| t.id == format!("drive/{drive}"))
        .unwrap();
    let run = run_task(&mut col, task, None);
    assert!(run.error.is_none(), "{:?}", run.error);
    let di = run
        .of_kind("driveItem")
        .into_iter()
        .find(|i| i.id == item)
        .expect("delta listed the item");
    let body: Value = serde_json::from_str(&di.body).unwrap();
    let err = body["@cairn.sharingError"]
        .as_str()
        .expect("recorded on the item");
    assert!(err.contains("vanished") && err.contains("404"), "{err}");
    let note = run.notes.join(" ");
    assert!(
        note.contains(&di.display_name) && note.contains("vanished"),
        "{note}"
    );
    assert!(!run.of_kind("sharing").iter().any(|i| i.id == item));
    // The drive's other shared items are all there.
    let shared_live = env
        .live_permissions()
        .into_iter()
        .filter(|(_, (d, _))| *d == drive)
        .count();
    assert_eq!(run.of_kind("sharing").len(), shared_live);

    // The next run's delta reports the deletion.
    let mut snap = Snapshot::default();
    snap.apply(&task.id, &run);
    let state = snap.states[&task.id].clone();
    let next = run_task(&mut col, task, Some(&state));
    assert!(next
        .removed
        .iter()
        .any(|t| t.kind == "driveItem" && t.id == item));
}

/// A connection whose site listing looks like one that does not mark personal sites: OneDrives'
/// personal sites left out and `isPersonalSite` removed, so the plugin finds OneDrives the
/// older way, one `/users/{id}/drive` probe per user (the "before" of the planning figures).
struct UnmarkedSites {
    inner: Arc<dyn GraphConnection>,
}

impl GraphConnection for UnmarkedSites {
    fn base_url(&self) -> &Url {
        self.inner.base_url()
    }
    fn send(&self, request: HttpRequest) -> Result<HttpResponse, String> {
        let listing = request.url.path().ends_with("/getAllSites");
        let mut r = self.inner.send(request)?;
        if listing && r.status == 200 {
            let mut v: Value = serde_json::from_slice(&r.body).unwrap();
            let sites = v["value"].as_array_mut().unwrap();
            sites.retain(|s| s["isPersonalSite"] != json!(true));
            for s in sites.iter_mut() {
                s.as_object_mut().unwrap().remove("isPersonalSite");
            }
            r.body = v.to_string().into_bytes();
        }
        Ok(r)
    }
    fn batch(&self, requests: Vec<BatchItem>) -> Result<Vec<HttpResponse>, String> {
        self.inner.batch(requests)
    }
    fn download(&self, request: HttpRequest) -> Result<Box<dyn Read + Send>, String> {
        self.inner.download(request)
    }
}

/// The drive tasks a plan makes, and the requests it took.
fn plan_drives(
    env: &Env,
    graph: Arc<dyn GraphConnection>,
    rec: &Recorder,
) -> (BTreeSet<String>, Vec<String>) {
    let mut col = env.collector(graph, &json!({"allOneDrives": true}));
    rec.take();
    let tasks = col.plan_tasks().unwrap().unwrap();
    (tasks.into_iter().map(|t| t.id).collect(), rec.take())
}

/// `allOneDrives` finds OneDrives through the personal sites of the site listing: every OneDrive
/// (and nothing else), one drive read each and no per-user probe; a listing that does not mark
/// personal sites falls back to probing every user and finds the same drives.
#[test]
fn all_one_drives_are_found_through_personal_sites_without_probing_users() {
    let env = Env::small();
    let rec = env.graph();
    let one_drives: BTreeSet<String> = env.sim.with_tenant(|t| {
        t.drives
            .drives
            .values()
            .filter(|d| d.owner.0 == "user")
            .map(|d| format!("drive/{}", d.id))
            .collect()
    });
    assert_eq!(one_drives.len(), 10);
    let (tasks, reqs) = plan_drives(&env, rec.clone(), &rec);
    assert_eq!(tasks, one_drives);
    assert!(!reqs.iter().any(|r| r.contains("/users")), "{reqs:?}");
    let drive_reads: Vec<&String> = reqs.iter().filter(|r| r.ends_with("/drive")).collect();
    assert_eq!(drive_reads.len(), one_drives.len(), "{reqs:?}");

    let unmarked = Arc::new(UnmarkedSites { inner: rec.clone() });
    let (tasks, reqs) = plan_drives(&env, unmarked, &rec);
    assert_eq!(tasks, one_drives);
    let users = env
        .sim
        .with_tenant(|t| t.count_live(cairn_graph_sim::model::Kind::User));
    let probes = reqs
        .iter()
        .filter(|r| r.contains("/users/") && r.ends_with("/drive"))
        .count();
    assert_eq!(probes, users);
}

#[test]
fn content_is_opt_in_and_streamed() {
    let env = Env::small();
    let rec = env.graph();
    let content = Arc::new(MemContent::default());
    let mut col = env.collector_into(
        rec.clone(),
        content.clone(),
        &json!({"allSites": true, "content": true}),
    );
    let tasks = col.plan_tasks().unwrap().unwrap();
    let run = run_task(&mut col, &tasks[0], None);
    assert!(run.error.is_none(), "{:?}", run.error);
    let drive = tasks[0].id.trim_start_matches("drive/").to_string();
    let files: BTreeMap<String, Vec<u8>> = env.sim.with_tenant(|t| {
        t.drives.drives[&drive]
            .items
            .values()
            .filter(|i| !i.folder && !i.deleted)
            .map(|i| (i.id.clone(), i.content.clone()))
            .collect()
    });
    let mut seen = 0;
    for it in run.of_kind("driveItem") {
        let Some(bytes) = files.get(&it.id) else {
            assert!(it.parts.is_empty(), "folders have no content");
            continue;
        };
        let part = it.parts.iter().find(|p| p.name == "content").unwrap();
        let cairn_runtime::types::PartData::Stored(c) = &part.data else {
            panic!("content is stored by the host, not inline")
        };
        assert_eq!(content.bytes(&c.id).unwrap().as_slice(), bytes.as_slice());
        seen += 1;
    }
    assert_eq!(seen, files.len());
    // Without `content`, no downloads.
    let mut col = env.collector(rec.clone(), &json!({"allSites": true}));
    rec.take();
    let run = run_task(&mut col, &tasks[0], None);
    assert!(run.items.iter().all(|i| i.parts.is_empty()));
    assert!(!rec.take().iter().any(|r| r.ends_with("/content")));
}

#[test]
fn over_the_sharepoint_budget_the_backup_waits_and_completes() {
    // The same tenant twice: once to measure what a full backup of the sites costs, once with
    // a SharePoint budget a little under that.
    let config = json!({"allSites": true});
    let free = Env::small();
    let mut col = free.collector(free.graph(), &config);
    let mut want = Snapshot::default();
    free.sim.reset_stats();
    run_all(&mut col, &mut want);
    let cost = free.sim.stats().sharepoint_ru_spent;
    assert!(cost > 40, "{cost}");

    let mut cfg = SimConfig::new(Profile::Small, 7);
    cfg.throttling = true;
    cfg.throttle.sharepoint_ru_per_min = Some((cost - 12) as u32);
    let tight = Env::start(cfg);
    let mut col = tight.collector(tight.graph(), &config);
    let mut got = Snapshot::default();
    let t0 = std::time::Instant::now();
    let run = run_all(&mut col, &mut got);
    assert!(run.tasks.values().all(|r| r.error.is_none()));
    let stats = tight.sim.stats();
    assert!(stats.throttled > 0, "the budget was exceeded: {stats:?}");
    assert_eq!(stats.sharepoint_ru_spent, cost, "every request served once");
    assert!(t0.elapsed() < std::time::Duration::from_secs(60));
    assert_eq!(
        snapshot_sharing(&got).keys().collect::<Vec<_>>(),
        snapshot_sharing(&want).keys().collect::<Vec<_>>()
    );
}

/// Benchmark (ignored; `cargo test -p cairn-m365-tests --test integration links::bench -- --ignored --nocapture`):
/// the cost of planning (OneDrives by user probes and through personal sites), and SharePoint
/// resource units of a full links backup against incremental ones, on the `medium` tenant's
/// sites and OneDrives.
#[test]
#[ignore]
fn bench_sharepoint_ru_full_vs_incremental() {
    let env = Env::start(SimConfig::new(Profile::Medium, 3));
    let rec = env.graph();
    let mut col = env.collector(rec.clone(), &json!({}));
    let mut snap = Snapshot::default();
    let items: usize = env.live_items().values().map(BTreeSet::len).sum();
    let shared = env.live_permissions().len();
    // What planning alone costs (finding the drives; every run plans): OneDrives found by
    // probing every user (a site listing that does not mark personal sites), then through the
    // personal sites of `getAllSites`.
    let unmarked = Arc::new(UnmarkedSites { inner: rec.clone() });
    let mut by_users = env.collector(unmarked, &json!({}));
    env.sim.reset_stats();
    rec.take();
    let before = by_users.plan_tasks().unwrap().unwrap().len();
    let (probe_ru, probe_reqs) = (env.sim.stats().sharepoint_ru_spent, rec.take().len());
    println!("planning, OneDrives by probing every user: drives {before}, requests {probe_reqs}, SharePoint RU {probe_ru}");
    env.sim.reset_stats();
    col.plan_tasks().unwrap().unwrap();
    let plan_ru = env.sim.stats().sharepoint_ru_spent;
    let plan_reqs = rec.take().len();
    println!(
        "planning, OneDrives through personal sites: requests {plan_reqs}, SharePoint RU {plan_ru}"
    );
    let mut measure = |label: &str, snap: &mut Snapshot| {
        env.sim.reset_stats();
        rec.take();
        let t0 = std::time::Instant::now();
        let run = run_all(&mut col, snap);
        let secs = t0.elapsed().as_secs_f64();
        let s = env.sim.stats();
        let reqs = rec.take();
        println!(
            "{label:<38} drives {:>4}  requests {:>6} (tasks {:>5})  permission reads {:>5}  SharePoint RU {:>6} (tasks {:>5})  {secs:.2} s",
            run.tasks.len(),
            reqs.len(),
            reqs.len() - plan_reqs,
            perm_reads(&reqs).len(),
            s.sharepoint_ru_spent,
            s.sharepoint_ru_spent - plan_ru
        );
    };
    println!("medium tenant: {items} drive items, {shared} with permissions");
    measure("full backup", &mut snap);
    measure("incremental, nothing changed", &mut snap);
    // Change the sharing of 1% of the shared items (a grant added).
    let someone = env.ok("GET", "/v1.0/users?$top=1&$select=id", None)["value"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let n = (shared / 100).max(1);
    for (item, (drive, _)) in env.live_permissions().into_iter().take(n) {
        env.ok(
            "POST",
            &format!("/v1.0/drives/{drive}/items/{item}/invite"),
            Some(json!({"recipients": [{"objectId": someone}], "roles": ["read"], "requireSignIn": true, "sendInvitation": false})),
        );
    }
    measure(
        &format!("incremental, {n} items' sharing changed"),
        &mut snap,
    );
}

/// Writes `bytes` as the file at `path` of `drive` (folders along the path must exist) with a
/// simple upload through the default app; returns the item's id.
fn put_file(env: &Env, drive: &str, path: &str, bytes: &[u8]) -> String {
    let mut c = env.client();
    let enc: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(cairn_graph_sim::util::pct_encode)
        .collect();
    let url = format!("/v1.0/drives/{drive}/root:/{}:/content", enc.join("/"));
    let r = env
        .rt
        .block_on(c.send(
            "PUT",
            &url,
            &[("Content-Type", "application/octet-stream")],
            bytes,
        ))
        .unwrap();
    assert!(
        r.status == 200 || r.status == 201,
        "PUT {path}: {}",
        r.text()
    );
    r.json()["id"].as_str().unwrap().to_string()
}

/// The live file at `path` of `drive`: (id, content, permissions).
fn file_at(env: &Env, drive: &str, path: &str) -> Option<(String, Vec<u8>, Vec<Value>)> {
    env.sim.with_tenant(|t| {
        let d = &t.drives.drives[drive];
        let mut cur = d.root.clone();
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            cur = d
                .items
                .values()
                .find(|i| !i.deleted && i.parent.as_deref() == Some(&cur) && i.name == seg)?
                .id
                .clone();
        }
        let it = &d.items[&cur];
        Some((
            it.id.clone(),
            it.content.clone(),
            it.perms.iter().map(|p| Value::Object(p.clone())).collect(),
        ))
    })
}

/// The ransomware case: a small shared file deleted, a shared file over 4 MiB deleted with
/// the folders it was in, a third file overwritten with other bytes. The restore brings the
/// deleted files back at their paths with their backed-up bytes (the large one through an
/// upload session, after an interrupted first attempt) and their links and grants on the new
/// ids, and puts the overwritten file's old bytes beside it without touching it; applying
/// again changes nothing and a new plan is empty.
#[test]
fn deleted_and_overwritten_files_come_back_from_their_content_without_overwriting() {
    let env = Env::small();
    let rec = env.graph();
    let content = Arc::new(MemContent::default());
    // Before the backup: a small file with an organization link (given a grant too), a large
    // file in two new folders with an anonymous link, and an unshared file to be overwritten.
    // (In a site's library: the collector below backs up sites, not OneDrives.)
    let (small, drive) = env.sim.with_tenant(|t| {
        t.drives
            .drives
            .values()
            .filter(|d| d.drive_type == "documentLibrary")
            .flat_map(|d| d.items.values().map(move |i| (d, i)))
            .find(|(_, i)| {
                !i.deleted
                    && !i.folder
                    && i.perms.iter().any(|p| {
                        p.get("link").and_then(|l| l.get("scope")) == Some(&json!("organization"))
                    })
            })
            .map(|(d, i)| (i.id.clone(), d.id.clone()))
            .expect("a library file with an organization link")
    });
    let user = env.ok("GET", "/v1.0/users?$top=1&$select=id", None)["value"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    env.ok(
        "POST",
        &format!("/v1.0/drives/{drive}/items/{small}/invite"),
        Some(json!({"recipients": [{"objectId": user}], "roles": ["write"], "requireSignIn": true, "sendInvitation": false})),
    );
    let root = env
        .sim
        .with_tenant(|t| t.drives.drives[&drive].root.clone());
    let folder = env.ok(
        "POST",
        &format!("/v1.0/drives/{drive}/items/{root}/children"),
        Some(json!({"name": "Payroll Archive", "folder": {}})),
    );
    let folder_id = folder["id"].as_str().unwrap().to_string();
    let q4_id = env.ok(
        "POST",
        &format!("/v1.0/drives/{drive}/items/{folder_id}/children"),
        Some(json!({"name": "Q4", "folder": {}})),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The folder is shared too: its link comes back on the re-created folder.
    env.ok(
        "POST",
        &format!("/v1.0/drives/{drive}/items/{q4_id}/createLink"),
        Some(json!({"type": "edit", "scope": "organization"})),
    );
    let big_bytes: Vec<u8> = (0..5 * 1024 * 1024 + 12_345u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let big_path = "/Payroll Archive/Q4/Payroll 2026.xlsx";
    let big = put_file(&env, &drive, big_path, &big_bytes);
    env.ok(
        "POST",
        &format!("/v1.0/drives/{drive}/items/{big}/createLink"),
        Some(json!({"type": "view", "scope": "anonymous"})),
    );
    // Two unshared files: one to overwrite, one to delete and replace by another file.
    let unshared: Vec<(String, String)> = env.sim.with_tenant(|t| {
        let d = &t.drives.drives[&drive];
        d.items
            .values()
            .filter(|i| !i.deleted && !i.folder && i.perms.is_empty())
            .filter(|i| i.parent.as_deref() != Some(folder_id.as_str()))
            .take(2)
            .map(|it| {
                let parent = &d.items[it.parent.as_ref().unwrap()];
                let path = if parent.parent.is_none() {
                    format!("/{}", it.name)
                } else {
                    format!("/{}/{}", parent.name, it.name)
                };
                (it.id.clone(), path)
            })
            .collect()
    });
    let [(changed, changed_path), (replaced, replaced_path)] = &unshared[..] else {
        panic!("two unshared files: {unshared:?}")
    };
    let (changed, changed_path, replaced, replaced_path) = (
        changed.clone(),
        changed_path.clone(),
        replaced.clone(),
        replaced_path.clone(),
    );

    let mut col = env.collector_into(
        rec.clone(),
        content.clone(),
        &json!({"allSites": true, "content": true}),
    );
    let mut snap = Snapshot::default();
    run_all(&mut col, &mut snap);
    let items = snap.of_kind("driveItem");
    let small_path = items[&small].body["@cairn.path"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(items[&big].body["@cairn.path"], big_path);
    assert_eq!(items[&changed].body["@cairn.path"], changed_path.as_str());
    let stored = |id: &str| {
        snap.part_bytes("driveItem", id, "content", &content)
            .unwrap()
    };
    let small_bytes = stored(&small);
    assert_eq!(stored(&big), big_bytes);
    let changed_bytes = stored(&changed);
    let sharing = snapshot_sharing(&snap);

    // The disaster: the small file and the archive folder deleted, the third file overwritten.
    env.ok(
        "DELETE",
        &format!("/v1.0/drives/{drive}/items/{small}"),
        None,
    );
    env.ok(
        "DELETE",
        &format!("/v1.0/drives/{drive}/items/{folder_id}"),
        None,
    );
    let ransom = b"encrypted by ransomware".to_vec();
    put_file(&env, &drive, &changed_path, &ransom);
    env.ok(
        "DELETE",
        &format!("/v1.0/drives/{drive}/items/{replaced}"),
        None,
    );
    let newcomer = put_file(&env, &drive, &replaced_path, b"someone else's file");

    let remap = Arc::new(MemRemap::default());
    let mut res = env.restorer_from(rec.clone(), content.clone(), &snap, remap.clone());
    let p = plan(&mut res, whole(&snap), json!({}));
    for a in &p {
        eprintln!("{:?} {} — {} ({})", a.kind, a.id, a.summary, a.reason);
    }
    let by_id = |id: &str| {
        p.iter().find(|a| a.id == id).unwrap_or_else(|| {
            panic!(
                "no action {id}: {:?}",
                p.iter().map(|a| &a.id).collect::<Vec<_>>()
            )
        })
    };
    let restore_small = by_id(&format!("driveItem/{small}/restore"));
    assert_eq!(restore_small.kind, ActionKind::Recreate);
    assert_eq!(
        restore_small.summary,
        format!("restore file {small_path} ({} bytes)", small_bytes.len())
    );
    let restore_big = by_id(&format!("driveItem/{big}/restore"));
    assert!(
        restore_big.summary.starts_with(&format!(
            "restore file {big_path} ({} bytes",
            big_bytes.len()
        )) && restore_big.summary.ends_with("through an upload session"),
        "{}",
        restore_big.summary
    );
    // Its folders are re-created first, parent before child.
    let archive = by_id(&format!("driveItem/{folder_id}/folder"));
    assert_eq!(archive.summary, "re-create the folder /Payroll Archive");
    assert!(archive.depends_on.is_empty());
    let q4 = p
        .iter()
        .find(|a| a.summary == "re-create the folder /Payroll Archive/Q4")
        .unwrap();
    assert_eq!(q4.depends_on, vec![archive.id.clone()]);
    assert_eq!(restore_big.depends_on, vec![q4.id.clone()]);
    // The overwritten file: a copy beside it, never over it.
    let copy = by_id(&format!("driveItem/{changed}/copy"));
    assert!(copy.summary.contains("(restored 20"), "{}", copy.summary);
    assert!(
        copy.summary.ends_with("the live file is not overwritten"),
        "{}",
        copy.summary
    );
    assert_eq!(copy.reason, "its content differs from the snapshot's");
    // Deleted, and another file has its path now: beside that one too.
    let beside = by_id(&format!("driveItem/{replaced}/copy"));
    assert_eq!(
        beside.reason,
        "deleted since the snapshot, and another file now has its path"
    );
    // The deleted files' sharing goes onto the re-created items, after them; nothing is
    // left to the operator.
    let small_sharing: Vec<&Action> = p
        .iter()
        .filter(|a| a.item_kind == "sharing" && a.item_id == small)
        .collect();
    assert_eq!(
        small_sharing.len(),
        grant_set(&sharing[&small]).len(),
        "{small_sharing:?}"
    );
    assert!(small_sharing
        .iter()
        .all(|a| a.depends_on == vec![restore_small.id.clone()]));
    assert!(small_sharing.iter().any(|a| a.id.ends_with("/invite")));
    let big_sharing: Vec<&Action> = p
        .iter()
        .filter(|a| a.item_kind == "sharing" && a.item_id == big)
        .collect();
    assert_eq!(big_sharing.len(), 1);
    assert_eq!(big_sharing[0].depends_on, vec![restore_big.id.clone()]);
    let q4_sharing: Vec<&Action> = p
        .iter()
        .filter(|a| a.item_kind == "sharing" && a.item_id == q4_id)
        .collect();
    assert_eq!(q4_sharing.len(), 1, "{p:?}");
    assert_eq!(q4_sharing[0].depends_on, vec![q4.id.clone()]);
    assert!(!p.iter().any(|a| a.kind == ActionKind::Manual), "{p:?}");
    assert_eq!(p.len(), 6 + small_sharing.len() + 1 + 1);
    // Plan order is an order to apply in.
    for (i, a) in p.iter().enumerate() {
        for d in &a.depends_on {
            assert!(p[..i].iter().any(|b| &b.id == d), "{} before {d}", a.id);
        }
    }

    // The first attempt at the large file stops half way (its second range fails, and so does
    // the cancel): no file is left at the path, and the apply says why.
    let rule = |method: &str| {
        FaultRule::new(
            "*/_api/v2.0/*",
            FaultKind::Error {
                status: 400,
                code: "invalidRequest".into(),
                message: "injected".into(),
            },
        )
        .method(method)
        .times(1)
    };
    env.sim.add_fault(rule("PUT").after(1));
    env.sim.add_fault(rule("DELETE"));
    rec.take();
    for a in p.iter().take_while(|a| a.id != restore_big.id) {
        let out = res.restore_apply(a).unwrap().unwrap();
        assert!(!out.already_done, "{}", a.id);
    }
    let err = res.restore_apply(restore_big).unwrap().unwrap_err();
    assert!(format!("{err:?}").contains("Payroll 2026.xlsx"), "{err:?}");
    assert!(file_at(&env, &drive, big_path).is_none());
    env.sim.clear_faults();
    // This time the second range is refused once with a 416 (as when a retried PUT had
    // arrived already): the plugin asks the session where it stands and goes on from there.
    env.sim.add_fault(
        FaultRule::new(
            "*/_api/v2.0/*",
            FaultKind::Error {
                status: 416,
                code: "invalidRange".into(),
                message: "injected".into(),
            },
        )
        .method("PUT")
        .after(1)
        .times(1),
    );

    // Applied (again for the large file): everything comes back.
    for a in p.iter().skip_while(|a| a.id != restore_big.id) {
        let out = res
            .restore_apply(a)
            .unwrap()
            .unwrap_or_else(|e| panic!("{}: {e:?}", a.id));
        assert!(!out.already_done, "{}", a.id);
    }
    let requests = rec.take();
    let uploads = requests
        .iter()
        .filter(|r| r.starts_with("PUT ") && r.contains("/uploadSession"))
        .count();
    // 2 ranges the first time (the second failed), then 2 ranges of 3,276,800 bytes at most,
    // the second twice (after the 416 and one status read).
    assert_eq!(uploads, 5, "{requests:#?}");
    let status_reads = requests
        .iter()
        .filter(|r| r.starts_with("GET ") && r.contains("/uploadSession"))
        .count();
    assert_eq!(status_reads, 1, "{requests:#?}");
    assert!(requests
        .iter()
        .any(|r| r.starts_with("PUT ")
            && r.contains(":/content?@microsoft.graph.conflictBehavior=fail")));

    let (new_small, bytes, perms) =
        file_at(&env, &drive, &small_path).expect("small file restored");
    assert_ne!(new_small, small);
    assert_eq!(bytes, small_bytes);
    assert_eq!(grant_set(&perms), grant_set(&sharing[&small]));
    assert_eq!(remap.lookup(&small), Some(new_small.clone()));
    let (new_big, bytes, perms) = file_at(&env, &drive, big_path).expect("large file restored");
    // One file there: the interrupted attempt left nothing behind.
    let in_q4 = env.sim.with_tenant(|t| {
        let d = &t.drives.drives[&drive];
        let q4 = d.items[&new_big].parent.clone();
        d.items
            .values()
            .filter(|i| !i.deleted && i.parent == q4)
            .count()
    });
    assert_eq!(in_q4, 1);
    let (new_q4, _, q4_perms) = file_at(&env, &drive, "/Payroll Archive/Q4").unwrap();
    assert_eq!(grant_set(&q4_perms), grant_set(&sharing[&q4_id]));
    assert_eq!(remap.lookup(&q4_id), Some(new_q4));
    assert_eq!(bytes, big_bytes);
    assert_eq!(grant_set(&perms), grant_set(&sharing[&big]));
    assert_eq!(remap.lookup(&big), Some(new_big));
    // The overwritten file is untouched; the copy beside it holds the old bytes.
    let (same, bytes, _) = file_at(&env, &drive, &changed_path).unwrap();
    assert_eq!((same.as_str(), bytes), (changed.as_str(), ransom.clone()));
    let name = changed_path.rsplit_once('/').unwrap().1;
    let (stem, ext) = name.rsplit_once('.').unwrap();
    let copies: Vec<(String, Vec<u8>)> = env.sim.with_tenant(|t| {
        let d = &t.drives.drives[&drive];
        let parent = d.items[&changed].parent.clone();
        d.items
            .values()
            .filter(|i| {
                !i.deleted
                    && i.parent == parent
                    && i.name.starts_with(&format!("{stem} (restored "))
            })
            .map(|i| (i.name.clone(), i.content.clone()))
            .collect()
    });
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert!(
        copies[0].0.ends_with(&format!(").{ext}")),
        "{}",
        copies[0].0
    );
    assert_eq!(copies[0].1, changed_bytes);
    assert!(
        remap.lookup(&changed).is_none(),
        "the original keeps its id"
    );
    // The replaced file's old bytes are beside the newcomer, which is untouched; the copy is
    // the deleted item's new id.
    let (still, bytes, _) = file_at(&env, &drive, &replaced_path).unwrap();
    assert_eq!((still, bytes), (newcomer, b"someone else's file".to_vec()));
    let copy_id = remap
        .lookup(&replaced)
        .expect("the copy re-creates the deleted item");
    let copy_bytes = env
        .sim
        .with_tenant(|t| t.drives.drives[&drive].items[&copy_id].content.clone());
    assert_eq!(copy_bytes, stored(&replaced));

    // Again: every action finds its work done, and the tenant does not change.
    let before = env.sim.dump();
    for a in &p {
        let out = res.restore_apply(a).unwrap().unwrap();
        assert!(out.already_done, "{} applied twice", a.id);
    }
    assert_eq!(env.sim.dump(), before);
    // Verify: a new plan has nothing to do.
    let verify = plan(&mut res, whole(&snap), json!({}));
    assert!(verify.is_empty(), "{verify:?}");
}

/// A large file's restore when upload answers are lost (the simulator's `dropAnswer` fault:
/// the range is taken, the connection dropped) or its session vanishes: each time the same
/// apply finishes the file, byte for byte, one file at the path, and the simulator's log of
/// ranged `PUT`s shows no range taken twice. (1) The second range's answer lost: the gateway
/// sends it again, gets 416, the plugin reads the session's status and goes on. (2) The same
/// with a gateway that does not retry: the plugin sees the failure, reads the status, goes
/// on. (3) The last range's answer lost: the session is gone (404) and the file is there —
/// it is the upload's. (4) The session expires after the first range (404): a new session
/// from the first byte. (5) Every range after the first refused with 500: the plugin gives
/// up after three status reads without progress, the session is cancelled, no file.
#[test]
fn a_lost_upload_answer_or_session_does_not_stop_a_large_file_restore() {
    const FRAGMENT: usize = 10 * 320 * 1024;
    let env = Env::small();
    let rec = env.graph();
    let content = Arc::new(MemContent::default());
    let (drive, root) = env.sim.with_tenant(|t| {
        let d = t
            .drives
            .drives
            .values()
            .find(|d| d.drive_type == "documentLibrary")
            .unwrap();
        (d.id.clone(), d.root.clone())
    });
    let folder = env.ok(
        "POST",
        &format!("/v1.0/drives/{drive}/items/{root}/children"),
        Some(json!({"name": "Board Packs", "folder": {}})),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Three ranges: two of 3,276,800 bytes and the rest.
    let size = 2 * FRAGMENT + 54_321;
    let bytes: Vec<u8> = (0..size as u32)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8)
        .collect();
    let path = "/Board Packs/Board 2026.pdf";
    let big = put_file(&env, &drive, path, &bytes);
    let mut col = env.collector_into(
        rec.clone(),
        content.clone(),
        &json!({"allSites": true, "content": true}),
    );
    let mut snap = Snapshot::default();
    run_all(&mut col, &mut snap);
    assert_eq!(
        snap.part_bytes("driveItem", &big, "content", &content)
            .unwrap(),
        bytes
    );
    env.ok("DELETE", &format!("/v1.0/drives/{drive}/items/{big}"), None);

    let remap = Arc::new(MemRemap::default());
    let restorer = |graph: Arc<dyn GraphConnection>| {
        env.restorer_from(graph, content.clone(), &snap, remap.clone())
    };
    let p = plan(
        &mut restorer(rec.clone()),
        vec![Selected {
            kind: "driveItem".into(),
            id: big.clone(),
            attributes: vec![],
        }],
        json!({}),
    );
    assert_eq!(p.len(), 1, "{p:?}");
    let action = &p[0];
    assert!(
        action.summary.ends_with("through an upload session"),
        "{}",
        action.summary
    );
    let put =
        |method: &str, kind: FaultKind| FaultRule::new("*/uploadSession", kind).method(method);
    let no_retry = env.gateway_without_retries();
    env._gws.lock().unwrap().push(no_retry.clone());
    let quiet = Recorder::new(no_retry.for_task("links"));
    // Ranges as the session logs them: (start, end) and the status.
    let range = |i: usize| {
        let start = i * FRAGMENT;
        Some((start, (start + FRAGMENT).min(size) - 1))
    };
    let ok = |i: usize| (range(i), if i == 2 { 201 } else { 202 });
    // Applies the action through `graph` with `rules`; returns the outcome's notes, the
    // session log and the plugin's requests to upload URLs (method only).
    let run = |graph: &Arc<Recorder>, rules: Vec<FaultRule>| {
        env.sim.clear_faults();
        for r in rules {
            env.sim.add_fault(r);
        }
        env.sim.with_tenant(|t| t.drives.uploads.clear());
        graph.take();
        let out = restorer(graph.clone()).restore_apply(action).unwrap();
        env.sim.clear_faults();
        let log: Vec<(Option<(usize, usize)>, u16)> = env.sim.with_tenant(|t| {
            t.drives
                .uploads
                .iter()
                .map(|u| (u.range, u.status))
                .collect()
        });
        let calls: Vec<String> = graph
            .take()
            .into_iter()
            .filter(|r| r.contains("/uploadSession") || r.contains("createUploadSession"))
            .map(|r| {
                let (m, rest) = r.split_once(' ').unwrap();
                if rest.contains("createUploadSession") {
                    "create".to_string()
                } else {
                    m.to_string()
                }
            })
            .collect();
        (out, log, calls)
    };
    // The file is back once, byte for byte; removed again for the next case.
    let restored_once = || {
        let (id, got, _) = file_at(&env, &drive, path).expect("the file is restored");
        assert!(got == bytes, "the restored bytes differ from the backup's");
        let in_folder = env.sim.with_tenant(|t| {
            t.drives.drives[&drive]
                .items
                .values()
                .filter(|i| !i.deleted && i.parent.as_deref() == Some(folder.as_str()))
                .count()
        });
        assert_eq!(in_folder, 1, "one file in the folder");
        assert_eq!(remap.lookup(&big), Some(id.clone()));
        env.ok("DELETE", &format!("/v1.0/drives/{drive}/items/{id}"), None);
    };

    // (1) The second range's answer lost; the gateway sends it again.
    let (out, log, calls) = run(
        &rec,
        vec![put("PUT", FaultKind::DropAnswer).after(1).times(1)],
    );
    let out = out.unwrap_or_else(|e| panic!("{e:?}"));
    assert!(!out.already_done);
    assert!(
        out.notes
            .iter()
            .any(|n| n.contains("went on from the session's status after 1 failed range")),
        "{:?}",
        out.notes
    );
    assert_eq!(log, [ok(0), ok(1), (range(1), 416), ok(2)]);
    assert_eq!(calls, ["create", "PUT", "PUT", "GET", "PUT"]);
    restored_once();

    // (2) The same through a gateway that does not retry: the plugin reads the status itself.
    let (out, log, calls) = run(
        &quiet,
        vec![put("PUT", FaultKind::DropAnswer).after(1).times(1)],
    );
    out.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(log, [ok(0), ok(1), ok(2)]);
    assert_eq!(calls, ["create", "PUT", "PUT", "GET", "PUT"]);
    restored_once();

    // (3) The last range's answer lost: the file was made; the retried range finds no
    // session (404), and the file at the name with the snapshot's content is the upload's.
    let (out, log, calls) = run(
        &rec,
        vec![put("PUT", FaultKind::DropAnswer).after(2).times(1)],
    );
    let out = out.unwrap_or_else(|e| panic!("{e:?}"));
    assert!(!out.already_done);
    assert_eq!(log, [ok(0), ok(1), ok(2)]);
    assert_eq!(calls, ["create", "PUT", "PUT", "PUT"]);
    restored_once();

    // (4) The session expires after the first range: a new one, from the first byte.
    let expired = FaultKind::Error {
        status: 404,
        code: "itemNotFound".into(),
        message: "The upload session was not found or has expired.".into(),
    };
    let (out, log, calls) = run(&rec, vec![put("PUT", expired).after(1).times(1)]);
    let out = out.unwrap_or_else(|e| panic!("{e:?}"));
    assert!(
        out.notes.iter().any(|n| n.contains("in 2 upload sessions")),
        "{:?}",
        out.notes
    );
    assert_eq!(log, [ok(0), ok(0), ok(1), ok(2)]);
    assert_eq!(
        calls,
        ["create", "PUT", "PUT", "create", "PUT", "PUT", "PUT"]
    );
    restored_once();

    // (5) Every range after the first refused: three status reads without progress, then
    // the action fails, the session is cancelled and nothing is at the path.
    let refused = FaultKind::ServerError {
        status: 500,
        retry_after: None,
    };
    // (The session that (4) was told had expired is still open in the simulator.)
    let open = || env.sim.with_tenant(|t| t.drives.sessions.len());
    let before = open();
    let (out, log, calls) = run(&quiet, vec![put("PUT", refused).after(1)]);
    let err = format!("{:?}", out.unwrap_err());
    assert!(
        err.contains("gave up after 3 status reads") && err.contains("Board 2026.pdf"),
        "{err}"
    );
    assert_eq!(log, [ok(0)]);
    assert_eq!(
        calls,
        ["create", "PUT", "PUT", "GET", "PUT", "GET", "PUT", "GET", "PUT", "DELETE"]
    );
    assert!(file_at(&env, &drive, path).is_none());
    assert_eq!(open(), before, "the session is cancelled");
}
