//! The entra plugin against the Graph simulator's `small` tenant: a full backup equals the
//! simulator's state, incremental runs follow churn, expired delta tokens fall back to a full
//! read, and a missing permission fails only the tasks that need it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use cairn_entra_tests::{gateway, instance, reason_of, run_all, runtime, Recorder, Snapshot};
use cairn_gateway::Gateway;
use cairn_graph_sim::testkit::Client;
use cairn_graph_sim::{Profile, SimConfig, SimHandle, Simulator};
use cairn_runtime::types::{Listing, PluginError, Removal};
use serde_json::{json, Value};

const MICROSOFT_TENANT: &str = "f8cdef31-a31e-4b4a-93e4-5f571e91255a";

/// A simulator on a background tokio runtime; plugin calls run on the test thread.
struct Env {
    sim: SimHandle,
    wasm: Arc<cairn_runtime::Runtime>,
    rt: tokio::runtime::Runtime,
    _cache: tempfile::TempDir,
}

impl Env {
    fn start(seed: u64) -> Env {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let sim = rt
            .block_on(Simulator::start(SimConfig::new(Profile::Small, seed)))
            .unwrap();
        let cache = tempfile::tempdir().unwrap();
        Env {
            wasm: runtime(cache.path()),
            sim,
            rt,
            _cache: cache,
        }
    }

    /// A gateway for the app, and a recording connection through it.
    fn connect(&self, client_id: &str, secret: &str) -> (Arc<Gateway>, Arc<Recorder>) {
        let gw = gateway(self.rt.handle().clone(), &self.sim, client_id, secret);
        let rec = Recorder::new(gw.for_task("entra"));
        (gw, rec)
    }

    /// The default app (every permission).
    fn connect_default(&self) -> (Arc<Gateway>, Arc<Recorder>) {
        self.connect(self.sim.client_id(), self.sim.client_secret())
    }

    /// A control-plane Graph call with the default app's token.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut c = Client::new(&self.sim.base_url()).with_token(self.sim.access_token());
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let r = self
            .rt
            .block_on(c.send(
                method,
                path,
                &[("Content-Type", "application/json")],
                &bytes,
            ))
            .unwrap();
        let status = r.status;
        (status, r.json())
    }

    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self.call(method, path, body);
        assert!((200..300).contains(&s), "{method} {path}: {s} {v}");
        v
    }
}

/// Dump collection → item kind.
const KINDS: &[(&str, &str)] = &[
    ("users", "user"),
    ("groups", "group"),
    ("applications", "application"),
    ("servicePrincipals", "servicePrincipal"),
    ("administrativeUnits", "administrativeUnit"),
    ("roleDefinitions", "unifiedRoleDefinition"),
    ("roleAssignments", "unifiedRoleAssignment"),
    ("oauth2PermissionGrants", "oauth2PermissionGrant"),
    ("appRoleAssignments", "appRoleAssignment"),
    ("conditionalAccessPolicies", "conditionalAccessPolicy"),
    ("namedLocations", "namedLocation"),
    (
        "authenticationStrengthPolicies",
        "authenticationStrengthPolicy",
    ),
    ("domains", "domain"),
];

/// Properties the plugin deliberately does not back up (see `plugins/entra/src/types.rs`).
const NOT_BACKED_UP: &[&str] = &[
    "passwordProfile",
    "signInActivity",
    "aboutMe",
    "birthday",
    "hireDate",
    "interests",
    "mySite",
    "pastProjects",
    "preferredName",
    "responsibilities",
    "schools",
    "skills",
    "mailboxSettings",
    "allowExternalSenders",
    "autoSubscribeNewMembers",
    "hideFromAddressLists",
    "hideFromOutlookClients",
    "isSubscribedByMail",
    "unseenCount",
    // Not a v1.0 property of unifiedRoleAssignment (beta, deprecated); the simulator stores it.
    "resourceScope",
];

fn live_ids(dump: &Value, collection: &str) -> BTreeSet<String> {
    dump[collection]
        .as_object()
        .unwrap_or_else(|| panic!("dump has no {collection}"))
        .iter()
        .filter(|(_, o)| o.get("@sim.deleted").is_none())
        .map(|(id, _)| id.clone())
        .collect()
}

/// `have` holds everything `want` has: objects key by key, arrays element by element.
fn covers(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| h.get(k).is_some_and(|hv| covers(hv, wv))),
        (Value::Array(h), Value::Array(w)) => {
            h.len() == w.len() && h.iter().zip(w).all(|(a, b)| covers(a, b))
        }
        (h, w) => h == w,
    }
}

fn ids_of(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Compares the backed-up items with the simulator's state: every live object with every
/// property it has, every relationship, nothing extra. `orphans_allowed`: membership links whose
/// container item is absent are ignored (a container removed during an incremental run; see
/// the plugin's docs).
fn compare(snap: &Snapshot, dump: &Value, orphans_allowed: bool) {
    let all_live: BTreeSet<String> = KINDS.iter().flat_map(|(c, _)| live_ids(dump, c)).collect();
    let live_refs = |o: &Value, rel: &str| -> BTreeSet<String> {
        o[format!("@sim.{rel}")]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .filter(|id| all_live.contains(*id))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    for (collection, kind) in KINDS {
        let items = snap.of_kind(kind);
        let want = live_ids(dump, collection);
        let have: BTreeSet<String> = items.keys().cloned().collect();
        assert_eq!(
            have.difference(&want).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "{kind}: items the tenant does not have"
        );
        assert_eq!(
            want.difference(&have).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "{kind}: objects missing from the backup"
        );
        for id in &want {
            let o = &dump[collection][id];
            let item = &items[id];
            for (k, v) in o.as_object().unwrap() {
                if (k.starts_with('@') && k != "@odata.type") || NOT_BACKED_UP.contains(&k.as_str())
                {
                    continue;
                }
                assert!(
                    item.get(k).is_some_and(|iv| covers(iv, v)),
                    "{kind} {id}: property {k} is {v} in the tenant, {:?} in the backup",
                    item.get(k)
                );
            }
            for (rel, nav) in [
                ("owners", "owners"),
                (
                    "federatedIdentityCredentials",
                    "federatedIdentityCredentials",
                ),
                ("extensionProperties", "extensionProperties"),
                ("scopedRoleMembers", "scopedRoleMembers"),
            ] {
                let expected: BTreeSet<String> = if rel == "owners" {
                    live_refs(o, rel)
                } else {
                    ids_of(&o[format!("@sim.{rel}")])
                };
                let embeds = matches!(
                    (*kind, rel),
                    ("group" | "application" | "servicePrincipal", "owners")
                        | (
                            "application",
                            "federatedIdentityCredentials" | "extensionProperties"
                        )
                        | ("administrativeUnit", "scopedRoleMembers")
                );
                if embeds {
                    let mut have = ids_of(&item[nav]);
                    if orphans_allowed && rel == "owners" {
                        // The simulator keeps owner links of hard-deleted objects and does not
                        // list the owning object in delta then: after an incremental run the
                        // item may still name the deleted owner. Consumers skip references to
                        // objects that are not in the snapshot.
                        have.retain(|i| all_live.contains(i));
                    }
                    assert_eq!(have, expected, "{kind} {id}: {nav}");
                } else {
                    assert!(
                        expected.is_empty(),
                        "{kind} {id} has {rel} the plugin does not read"
                    );
                }
            }
        }
    }
    // Membership links: exactly the live members of every backed-up container.
    for (collection, kind, link_kind, field) in [
        ("groups", "group", "groupMember", "groupId"),
        (
            "administrativeUnits",
            "administrativeUnit",
            "administrativeUnitMember",
            "administrativeUnitId",
        ),
    ] {
        let containers = snap.of_kind(kind);
        let mut links: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (id, body) in snap.of_kind(link_kind) {
            let (c, m) = id.split_once('/').expect("link ids are container/member");
            assert_eq!(body[field], json!(c), "{id}");
            assert_eq!(body["member"]["id"], json!(m), "{id}");
            assert!(body["member"]["@odata.type"]
                .as_str()
                .is_some_and(|t| t.starts_with("#microsoft.graph.")));
            if !containers.contains_key(c) {
                assert!(
                    orphans_allowed,
                    "{link_kind} {id}: its container is not in the backup"
                );
                continue;
            }
            links
                .entry(c.to_string())
                .or_default()
                .insert(m.to_string());
        }
        for id in live_ids(dump, collection) {
            let expected = live_refs(&dump[collection][&id], "members");
            let have = links.remove(&id).unwrap_or_default();
            assert_eq!(have, expected, "{kind} {id}: members");
        }
        assert!(
            links.is_empty(),
            "links of containers the tenant lacks: {links:?}"
        );
    }
    // Annotations: first-party references, credential metadata only.
    for (id, sp) in snap.of_kind("servicePrincipal") {
        let first_party = sp["appOwnerOrganizationId"] == json!(MICROSOFT_TENANT);
        assert_eq!(
            sp.get("@cairn.reference").is_some(),
            first_party,
            "servicePrincipal {id}"
        );
    }
    for kind in ["application", "servicePrincipal"] {
        for (id, o) in snap.of_kind(kind) {
            let creds = o["passwordCredentials"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert_eq!(
                o.get("@cairn.secrets").is_some(),
                !creds.is_empty(),
                "{kind} {id}"
            );
            assert!(
                creds.iter().all(|c| c["secretText"].is_null()),
                "{kind} {id}"
            );
        }
    }
    // Singletons.
    let org = snap.of_kind("organization");
    assert_eq!(org.len(), 1);
    assert!(covers(org.values().next().unwrap(), &dump["organization"]));
    for (kind, slot) in [
        ("authorizationPolicy", "authorizationPolicy"),
        (
            "identitySecurityDefaultsEnforcementPolicy",
            "securityDefaults",
        ),
    ] {
        let items = snap.of_kind(kind);
        assert_eq!(items.len(), 1, "{kind}");
        assert!(
            covers(items.values().next().unwrap(), &dump[slot]),
            "{kind}"
        );
    }
    let policy = snap.of_kind("authenticationMethodsPolicy");
    assert_eq!(policy.len(), 1);
    let configs = snap.of_kind("authenticationMethodConfiguration");
    let want = ids_of(&dump["authenticationMethodsPolicy"]["authenticationMethodConfigurations"]);
    assert!(!want.is_empty());
    assert_eq!(configs.keys().cloned().collect::<BTreeSet<_>>(), want);
    for c in dump["authenticationMethodsPolicy"]["authenticationMethodConfigurations"]
        .as_array()
        .unwrap()
    {
        assert!(covers(&configs[c["id"].as_str().unwrap()], c), "{c}");
    }
}

const DELTA_TASKS: &[&str] = &[
    "users",
    "groups",
    "administrativeUnits",
    "applications",
    "servicePrincipals",
    "oauth2PermissionGrants",
];

#[test]
fn full_then_incremental_backup_matches_the_tenant() {
    let env = Env::start(11);
    let dump0 = env.sim.dump();
    let users: Vec<String> = dump0["users"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, u)| {
            !u["userPrincipalName"]
                .as_str()
                .unwrap_or("")
                .starts_with("admin@")
        })
        .map(|(id, _)| id.clone())
        .collect();
    // Soft-deleted before the first run, restored before the second.
    let restored = users[0].clone();
    env.ok("DELETE", &format!("/v1.0/users/{restored}"), None);

    // ---------------------------------------------------------------- first run: full
    let (gw1, rec1) = env.connect_default();
    let mut inst = instance(&env.wasm, rec1.clone(), &json!({}));
    let mut snap = Snapshot::default();
    let run1 = run_all(&mut inst, &mut snap);
    for (task, r) in &run1.tasks {
        assert!(r.error.is_none(), "{task}: {:?}", r.error);
        assert_eq!(r.listing, Some(Listing::Full), "{task}");
        assert!(r.removed.is_empty(), "{task}");
    }
    for task in DELTA_TASKS {
        let state = snap
            .states
            .get(*task)
            .unwrap_or_else(|| panic!("{task} keeps no state"));
        let st: Value = serde_json::from_str(state).unwrap();
        assert!(
            st["deltaLink"].as_str().unwrap().contains("$deltatoken="),
            "{task}: {st}"
        );
    }
    // The simulator has no PIM and no authentication contexts: those tasks say they skipped.
    for task in ["roleEligibilitySchedules", "authenticationContexts"] {
        let r = &run1.tasks[task];
        assert!(r.items.is_empty());
        assert!(
            r.notes.iter().any(|n| n.contains("skipped")),
            "{task}: {:?}",
            r.notes
        );
    }
    compare(&snap, &env.sim.dump(), false);
    let stats1 = gw1.stats().total;
    let (requests1, batch_items1) = (stats1.requests, stats1.batch_items);
    assert!(batch_items1 > 0, "relationships are read through $batch");
    // Members come from members@delta: no per-group member reads.
    assert!(rec1
        .paths
        .lock()
        .unwrap()
        .iter()
        .all(|p| !p.ends_with("/members")));

    // ---------------------------------------------------------------- changes
    let churn = env.sim.churn(10.0);
    assert!(churn.total() > 0);
    let dump1 = env.sim.dump();
    let live_users: Vec<String> = users
        .iter()
        .filter(|u| dump1["users"][u.as_str()].get("@sim.deleted").is_none())
        .filter(|u| dump1["users"].get(u.as_str()).is_some())
        .cloned()
        .collect();
    let (patched, soft, hard, joiner) = (
        live_users[1].clone(),
        live_users[2].clone(),
        live_users[3].clone(),
        live_users[4].clone(),
    );
    env.ok(
        "POST",
        &format!("/v1.0/directory/deletedItems/{restored}/restore"),
        None,
    );
    env.ok(
        "PATCH",
        &format!("/v1.0/users/{patched}"),
        Some(json!({"jobTitle": "Chief Restore Tester"})),
    );
    env.ok("DELETE", &format!("/v1.0/users/{soft}"), None);
    assert_eq!(env.sim.delete(std::slice::from_ref(&hard), true).0, 1);
    let created = env.ok(
        "POST",
        "/v1.0/users",
        Some(
            json!({"accountEnabled": true, "displayName": "Nova Tester", "mailNickname": "novat",
            "userPrincipalName": format!("novat@{}", env.sim.domain()),
            "passwordProfile": {"password": "Xy!12345678", "forceChangePasswordNextSignIn": true}}),
        ),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A group with assigned membership: one member joins, one leaves.
    let (group, leaver) = dump1["groups"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, g)| g.get("@sim.deleted").is_none() && g["membershipRule"].is_null())
        .find_map(|(id, g)| {
            g["@sim.members"]
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .find(|m| {
                    live_users.iter().any(|u| u == m) && ![&soft, &hard].contains(&&m.to_string())
                })
                .map(|m| (id.clone(), m.to_string()))
        })
        .expect("a group with a live user member");
    let (s, _) = env.call(
        "POST",
        &format!("/v1.0/groups/{group}/members/$ref"),
        Some(json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{joiner}")})),
    );
    assert!(s == 204 || s == 400, "add member: {s}");
    env.ok(
        "DELETE",
        &format!("/v1.0/groups/{group}/members/{leaver}/$ref"),
        None,
    );
    // An application gains an owner and a federated credential.
    let app = dump1["applications"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, a)| a.get("@sim.deleted").is_none() && a["displayName"] != json!("Cairn"))
        .map(|(id, _)| id.clone())
        .unwrap();
    env.ok(
        "POST",
        &format!("/v1.0/applications/{app}/owners/$ref"),
        Some(json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{patched}")})),
    );
    let fic = env.ok(
        "POST",
        &format!("/v1.0/applications/{app}/federatedIdentityCredentials"),
        Some(json!({"name": "github-main", "issuer": "https://token.actions.githubusercontent.com",
            "subject": "repo:contoso/app:ref:refs/heads/main", "audiences": ["api://AzureADTokenExchange"]})),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A Conditional Access policy is switched to report-only (no delta: read fully).
    let ca = dump1["conditionalAccessPolicies"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    env.ok(
        "PATCH",
        &format!("/v1.0/identity/conditionalAccess/policies/{ca}"),
        Some(json!({"state": "enabledForReportingButNotEnforced"})),
    );

    // ---------------------------------------------------------------- second run: changes
    let (gw2, rec2) = env.connect_default();
    let mut inst = instance(&env.wasm, rec2.clone(), &json!({}));
    let run2 = run_all(&mut inst, &mut snap);
    for (task, r) in &run2.tasks {
        assert!(r.error.is_none(), "{task}: {:?}", r.error);
        let want = if DELTA_TASKS.contains(&task.as_str()) {
            Listing::Changes
        } else {
            Listing::Full
        };
        assert_eq!(r.listing, Some(want), "{task}");
        assert!(
            r.notes.is_empty() || !DELTA_TASKS.contains(&task.as_str()),
            "{task}: {:?}",
            r.notes
        );
    }
    let dump2 = env.sim.dump();
    compare(&snap, &dump2, true);

    let users_run = &run2.tasks["users"];
    let item = |kind: &str, id: &str| {
        run2.tasks
            .values()
            .flat_map(|r| r.items.iter())
            .find(|i| i.kind == kind && i.id == id)
            .map(|i| serde_json::from_str::<Value>(&i.body).unwrap())
    };
    assert!(item("user", &restored).is_some(), "restored user listed");
    assert!(item("user", &created).is_some(), "created user listed");
    assert_eq!(
        item("user", &patched).unwrap()["jobTitle"],
        json!("Chief Restore Tester")
    );
    assert_eq!(
        reason_of(users_run, "user", &soft),
        Some(Removal::SoftDeleted)
    );
    assert_eq!(
        reason_of(users_run, "user", &hard),
        Some(Removal::HardDeleted)
    );
    // Only changes were listed.
    let live_user_count = live_ids(&dump2, "users").len();
    assert!(
        users_run.items.len() < live_user_count / 2,
        "{} of {live_user_count}",
        users_run.items.len()
    );
    let groups_run = &run2.tasks["groups"];
    assert!(groups_run
        .items
        .iter()
        .any(|i| i.kind == "groupMember" && i.id == format!("{group}/{joiner}")));
    assert!(reason_of(groups_run, "groupMember", &format!("{group}/{leaver}")).is_some());
    let app_item = item("application", &app).expect("changed application listed");
    assert!(ids_of(&app_item["owners"]).contains(&patched));
    assert!(ids_of(&app_item["federatedIdentityCredentials"]).contains(&fic));
    assert_eq!(
        snap.of_kind("conditionalAccessPolicy")[&ca]["state"],
        json!("enabledForReportingButNotEnforced")
    );
    // Churn: every change shows up as an item or a tombstone with the right reason.
    let tombstone = |id: &str| {
        run2.tasks
            .values()
            .flat_map(|r| r.removed.iter())
            .find(|t| t.id == id)
            .map(|t| t.reason)
    };
    let listed = |id: &str| {
        run2.tasks
            .values()
            .flat_map(|r| r.items.iter())
            .any(|i| i.id == id)
    };
    for id in churn
        .created
        .iter()
        .chain(&churn.updated)
        .chain(&churn.membership_changed)
    {
        assert!(
            listed(id) || tombstone(id).is_some(),
            "churned {id} not in the incremental run"
        );
    }
    for id in &churn.soft_deleted {
        if *id != restored {
            assert_eq!(tombstone(id), Some(Removal::SoftDeleted), "{id}");
        }
    }
    for id in &churn.hard_deleted {
        assert_eq!(tombstone(id), Some(Removal::HardDeleted), "{id}");
    }
    // Incremental is cheaper: far fewer requests, no per-group member reads.
    let stats2 = gw2.stats().total;
    let (requests2, items2) = (stats2.requests, stats2.batch_items);
    assert!(
        requests2 <= requests1,
        "{requests2} requests vs {requests1}"
    );
    assert!(
        items2 < batch_items1,
        "{items2} batch items vs {batch_items1}"
    );
    assert!(rec2
        .paths
        .lock()
        .unwrap()
        .iter()
        .all(|p| !p.ends_with("/members")));
}

#[test]
fn expired_delta_tokens_fall_back_to_a_full_read() {
    let env = Env::start(12);
    let config = json!({"types": ["users", "groups"]});
    let mut inst = instance(&env.wasm, env.connect_default().1, &config);
    let mut snap = Snapshot::default();
    let run1 = run_all(&mut inst, &mut snap);
    assert_eq!(run1.tasks.len(), 2);
    env.sim.churn(5.0);
    env.sim.advance_clock(Duration::from_secs(8 * 86_400));
    // Access tokens expired too: the gateway fetches a new one.
    let mut inst = instance(&env.wasm, env.connect_default().1, &config);
    let run2 = run_all(&mut inst, &mut snap);
    let dump = env.sim.dump();
    for task in ["users", "groups"] {
        let r = &run2.tasks[task];
        assert!(r.error.is_none(), "{task}: {:?}", r.error);
        assert_eq!(r.listing, Some(Listing::Full), "{task}");
        assert!(
            r.notes
                .iter()
                .any(|n| n.contains("expired") && n.contains("full read")),
            "{task}: {:?}",
            r.notes
        );
    }
    assert_eq!(
        snap.of_kind("user")
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>(),
        live_ids(&dump, "users")
    );
    assert_eq!(
        snap.of_kind("group")
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>(),
        live_ids(&dump, "groups")
    );
    // A third run is incremental again from the new delta links.
    let run3 = run_all(&mut inst, &mut snap);
    assert_eq!(run3.tasks["users"].listing, Some(Listing::Changes));
    assert!(run3.tasks["users"].items.is_empty());
}

#[test]
fn a_missing_permission_fails_only_the_tasks_that_need_it() {
    let env = Env::start(13);
    let perms = [
        "User.Read.All",
        "Group.Read.All",
        "AdministrativeUnit.Read.All",
        "RoleManagement.Read.Directory",
        "DelegatedPermissionGrant.Read.All",
        "Domain.Read.All",
        "Organization.Read.All",
    ];
    let app = env.sim.add_app(&perms);
    let mut inst = instance(
        &env.wasm,
        env.connect(&app.client_id, &app.client_secret).1,
        &json!({}),
    );
    let mut snap = Snapshot::default();
    let run = run_all(&mut inst, &mut snap);
    for (task, r) in &run.tasks {
        let want = match task.as_str() {
            "applications" | "servicePrincipals" | "appRoleAssignments" => {
                Some("Application.Read.All")
            }
            "conditionalAccessPolicies"
            | "namedLocations"
            | "authenticationStrengthPolicies"
            | "authenticationMethodsPolicy"
            | "authorizationPolicy"
            | "securityDefaults" => Some("Policy.Read.All"),
            _ => None,
        };
        match (want, &r.error) {
            (Some(p), Some(PluginError::PermissionDenied(got))) => assert_eq!(got, p, "{task}"),
            (None, None) => {}
            (w, e) => panic!("{task}: expected {w:?}, got {e:?}"),
        }
    }
    assert!(!snap.of_kind("user").is_empty());
    assert!(!snap.of_kind("groupMember").is_empty());
}

#[test]
fn describe_plan_and_config() {
    let env = Env::start(14);
    let graph = env.connect_default().1;
    let plugin = env
        .wasm
        .load_file(std::path::Path::new(cairn_entra_tests::ENTRA))
        .unwrap();
    let info = plugin.info();
    assert_eq!(info.name, "entra");
    for k in [
        "user",
        "group",
        "groupMember",
        "unifiedRoleAssignment",
        "servicePrincipal",
        "oauth2PermissionGrant",
        "conditionalAccessPolicy",
        "namedLocation",
        "domain",
        "organization",
    ] {
        assert!(info.item_kinds.iter().any(|x| x == k), "{k}");
    }
    for p in [
        "User.Read.All",
        "Group.Read.All",
        "Application.Read.All",
        "Policy.Read.All",
        "RoleManagement.Read.Directory",
        "AdministrativeUnit.Read.All",
        "Domain.Read.All",
        "Organization.Read.All",
        "RoleEligibilitySchedule.Read.Directory",
    ] {
        assert!(info.permissions.iter().any(|x| x.name == p), "{p}");
    }
    let schema: Value = serde_json::from_str(&info.config_schema).unwrap();
    assert_eq!(
        schema["properties"]["types"]["items"]["enum"]
            .as_array()
            .unwrap()
            .len(),
        19
    );
    let mut inst = instance(
        &env.wasm,
        graph.clone(),
        &json!({"types": ["domains", "organization"], "exclude_first_party": true}),
    );
    let tasks = inst.plan_tasks().unwrap().unwrap();
    assert_eq!(
        tasks.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["domains", "organization"]
    );
    let mut bad = instance(&env.wasm, graph.clone(), &json!({"types": ["devices"]}));
    match bad.plan_tasks().unwrap() {
        Err(PluginError::Config(m)) => assert!(m.contains("devices"), "{m}"),
        other => panic!("{other:?}"),
    }
    // exclude_first_party leaves Microsoft's service principals out.
    let mut inst = instance(
        &env.wasm,
        graph,
        &json!({"types": ["servicePrincipals"], "exclude_first_party": true}),
    );
    let mut snap = Snapshot::default();
    run_all(&mut inst, &mut snap);
    let sps = snap.of_kind("servicePrincipal");
    assert!(!sps.is_empty());
    assert!(sps
        .values()
        .all(|s| s["appOwnerOrganizationId"] != json!(MICROSOFT_TENANT)));
}
