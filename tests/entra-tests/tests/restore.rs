//! The entra restorer against the Graph simulator: back up the `small` tenant with the
//! collector, break it (bulk soft and hard deletes, attribute edits, membership changes,
//! Conditional Access edits and deletes, an app and its service principal deleted), plan the
//! restore, apply it, and check that a second plan has nothing left but manual steps and that
//! re-applying finds every action already done.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use cairn_entra_tests::{gateway, instance, run_all, sim_env, SimEnv, Snapshot};
use cairn_graph_sim::testkit::Client;
use cairn_graph_sim::{Profile, SimConfig, Simulator};
use cairn_runtime::types::{Action, ActionKind, Item, Outcome, RestoreRequest, Selected};
use cairn_runtime::{PluginInstance, RemapTable, SnapshotEntry, SnapshotReader};
use serde_json::{json, Value};

sim_env! {
    /// The shared simulator environment (a simulator on a background tokio runtime; plugin calls
    /// run on the test thread), with this file's helpers.
    Env
}

impl Env {
    fn start(seed: u64) -> Env {
        Env(SimEnv::small(seed))
    }

    fn get(&self, path: &str) -> Option<Value> {
        let (s, v) = self.call("GET", path, None);
        match s {
            404 => None,
            200 => Some(v),
            _ => panic!("GET {path}: {s} {v}"),
        }
    }

    /// Every object of a collection (following next links).
    fn all(&self, path: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut next = Some(path.to_string());
        while let Some(p) = next {
            let v = self.ok("GET", &p, None);
            out.extend(v["value"].as_array().cloned().unwrap_or_default());
            next = v["@odata.nextLink"]
                .as_str()
                .map(|n| n.replacen(&self.sim.base_url(), "", 1));
        }
        out
    }

    /// Backs the tenant up with the collector.
    fn backup(&self) -> Snapshot {
        let gw = self.gateway();
        let mut inst = instance(&self.wasm, gw.for_task("entra"), &json!({}));
        let mut snap = Snapshot::default();
        let run = run_all(&mut inst, &mut snap);
        for (t, r) in &run.tasks {
            assert!(r.error.is_none(), "task {t}: {:?}", r.error);
        }
        snap
    }

    /// A restorer instance over `snap` sharing `remap`.
    fn restorer(&self, snap: &Arc<SnapReader>, remap: &Arc<Remap>) -> PluginInstance {
        let gw = self.gateway();
        let plugin = self
            .wasm
            .load_file(std::path::Path::new(cairn_entra_tests::ENTRA))
            .unwrap();
        let mut inst = plugin
            .instantiate_default(cairn_runtime::Capabilities {
                graph: Some(gw.for_task("entra-restore")),
                snapshot: Some(snap.clone()),
                remap: Some(remap.clone()),
                ..Default::default()
            })
            .unwrap();
        inst.configure("{}").unwrap().unwrap();
        inst
    }
}

/// The snapshot as the restore engine hands it to the restorer.
struct SnapReader {
    items: BTreeMap<(String, String), Value>,
}

impl SnapReader {
    fn new(snap: &Snapshot) -> Arc<SnapReader> {
        let mut items = BTreeMap::new();
        for tree in snap.tasks.values() {
            for ((k, id), v) in tree {
                items.insert((k.clone(), id.clone()), v.clone());
            }
        }
        Arc::new(SnapReader { items })
    }

    fn name(body: &Value, id: &str) -> String {
        ["userPrincipalName", "displayName"]
            .iter()
            .find_map(|k| body[k].as_str())
            .unwrap_or(id)
            .to_string()
    }

    fn of_kind(&self, kind: &str) -> Vec<(&String, &Value)> {
        self.items
            .iter()
            .filter(|((k, _), _)| k == kind)
            .map(|((_, id), v)| (id, v))
            .collect()
    }
}

impl SnapshotReader for SnapReader {
    fn get(&self, kind: &str, id: &str) -> Option<Item> {
        let v = self.items.get(&(kind.to_string(), id.to_string()))?;
        Some(Item {
            kind: kind.into(),
            id: id.into(),
            display_name: Self::name(v, id),
            body: v.to_string(),
            parts: Vec::new(),
        })
    }
    fn list(&self, kind: &str) -> Vec<SnapshotEntry> {
        self.of_kind(kind)
            .into_iter()
            .map(|(id, v)| SnapshotEntry {
                kind: kind.into(),
                id: id.clone(),
                display_name: Self::name(v, id),
            })
            .collect()
    }
}

/// The restore's old → new id table.
#[derive(Default)]
struct Remap {
    map: Mutex<HashMap<String, (String, String)>>,
}

impl RemapTable for Remap {
    fn record(&self, kind: &str, old_id: &str, new_id: &str) {
        self.map
            .lock()
            .unwrap()
            .insert(old_id.into(), (kind.into(), new_id.into()));
    }
    fn lookup(&self, old_id: &str) -> Option<String> {
        self.map.lock().unwrap().get(old_id).map(|(_, n)| n.clone())
    }
}

impl Remap {
    fn new_id(&self, old: &str) -> String {
        self.lookup(old).unwrap_or_else(|| old.to_string())
    }
}

fn sel(kind: &str, id: &str) -> Selected {
    Selected {
        kind: kind.into(),
        id: id.into(),
        attributes: Vec::new(),
    }
}

fn plan(inst: &mut PluginInstance, selection: Vec<Selected>, options: Value) -> Vec<Action> {
    let req = RestoreRequest {
        selection,
        options: options.to_string(),
    };
    let actions = inst.restore_plan(&req).unwrap().unwrap();
    // Ids are unique and every dependency comes earlier in the plan.
    let mut seen = BTreeSet::new();
    for a in &actions {
        for d in &a.depends_on {
            assert!(
                seen.contains(d),
                "{} depends on {d}, which is not before it",
                a.id
            );
        }
        assert!(seen.insert(a.id.clone()), "duplicate action id {}", a.id);
    }
    actions
}

/// Applies every action in order; returns the outcomes by action id.
fn apply_all(inst: &mut PluginInstance, actions: &[Action]) -> BTreeMap<String, Outcome> {
    let mut out = BTreeMap::new();
    for a in actions {
        let o = inst
            .restore_apply(a)
            .unwrap()
            .unwrap_or_else(|e| panic!("apply {}: {e:?}", a.id));
        out.insert(a.id.clone(), o);
    }
    out
}

fn ids(actions: &[Action], kind: ActionKind) -> BTreeSet<String> {
    actions
        .iter()
        .filter(|a| a.kind == kind)
        .map(|a| a.id.clone())
        .collect()
}

fn position(actions: &[Action], id: &str) -> usize {
    actions
        .iter()
        .position(|a| a.id == id)
        .unwrap_or_else(|| panic!("no action {id} in the plan"))
}

fn not_manual(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter(|a| a.kind != ActionKind::Manual)
        .map(|a| format!("{} ({}: {})", a.id, a.summary, a.reason))
        .collect()
}

fn is_dynamic(g: &Value) -> bool {
    g["groupTypes"].to_string().contains("DynamicMembership")
}

fn is_security_only(g: &Value) -> bool {
    !g["groupTypes"].to_string().contains("Unified")
        && g["mailEnabled"] != json!(true)
        && !is_dynamic(g)
}

/// Bulk deletion of users and groups (half soft, half hard), one user's attributes changed,
/// memberships changed: plan, apply, re-plan clean, re-apply all already done; then an
/// attribute-level restore that touches only the chosen attribute.
#[test]
fn users_groups_memberships_and_owners() {
    let env = Env::start(71);
    let snap = env.backup();
    let reader = SnapReader::new(&snap);

    // Users that are direct members of static groups, and those groups.
    let groups: BTreeMap<String, Value> = snap.of_kind("group");
    let links: Vec<(String, String)> = snap
        .of_kind("groupMember")
        .keys()
        .filter_map(|k| {
            k.split_once('/')
                .map(|(g, m)| (g.to_string(), m.to_string()))
        })
        .filter(|(g, _)| groups.get(g).is_some_and(|b| !is_dynamic(b)))
        .collect();
    let users: BTreeMap<String, Value> = snap.of_kind("user");
    let mut members: Vec<String> = links
        .iter()
        .map(|(_, m)| m.clone())
        .filter(|m| {
            users
                .get(m)
                .is_some_and(|u| u["onPremisesSyncEnabled"] != json!(true))
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // Users who own groups or have a manager first: they are the ones deleted for good.
    let managed: BTreeSet<String> = snap
        .of_kind("userManager")
        .keys()
        .filter_map(|k| k.split_once('/').map(|(u, _)| u.to_string()))
        .collect();
    let owns = |u: &String| {
        groups.values().any(|g| {
            g["owners"]
                .as_array()
                .is_some_and(|o| o.iter().any(|r| r["id"] == json!(u)))
        })
    };
    members.sort_by_key(|u| !(managed.contains(u) || owns(u)));
    members.truncate(8);
    assert_eq!(members.len(), 8, "the tenant has users in static groups");
    let (hard_users, soft_users) = members.split_at(4);

    // A static security group (hard-deleted by Graph) and a Microsoft 365 group (recycle bin),
    // both with members and owners.
    let with_members = |pred: &dyn Fn(&Value) -> bool| -> String {
        groups
            .iter()
            .filter(|(id, g)| pred(g) && links.iter().filter(|(c, _)| c == *id).count() >= 2)
            .filter(|(_, g)| g["owners"].as_array().is_some_and(|o| !o.is_empty()))
            .map(|(id, _)| id.clone())
            .next()
            .expect("a group with members and owners")
    };
    let sec_group = with_members(&is_security_only);
    let m365_group = with_members(&|g: &Value| g["groupTypes"].to_string().contains("Unified"));

    // One user keeps living but has attributes changed; one live group loses a member and
    // gains another.
    let edited = users
        .keys()
        .find(|u| !members.contains(u) && users[*u]["onPremisesSyncEnabled"] != json!(true))
        .unwrap()
        .clone();
    let orig_title = users[&edited]["jobTitle"].clone();
    let orig_dept = users[&edited]["department"].clone();
    env.ok(
        "PATCH",
        &format!("/v1.0/users/{edited}"),
        Some(json!({"jobTitle": "Changed title", "department": "Changed dept"})),
    );
    let churn_group = groups
        .iter()
        .filter(|(id, g)| {
            is_security_only(g)
                && **id != sec_group
                && links
                    .iter()
                    .any(|(c, m)| c == *id && !members.contains(m) && users.contains_key(m))
        })
        .map(|(id, _)| id.clone())
        .next()
        .expect("another static group");
    let removed_member = links
        .iter()
        .find(|(c, m)| *c == churn_group && !members.contains(m) && users.contains_key(m))
        .unwrap()
        .1
        .clone();
    env.ok(
        "DELETE",
        &format!("/v1.0/groups/{churn_group}/members/{removed_member}/$ref"),
        None,
    );
    let intruder = users
        .keys()
        .find(|u| {
            !links.contains(&(churn_group.clone(), (*u).clone()))
                && !members.contains(u)
                && **u != edited
        })
        .unwrap()
        .clone();
    env.ok(
        "POST",
        &format!("/v1.0/groups/{churn_group}/members/$ref"),
        Some(json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{intruder}")})),
    );

    // The disaster.
    for u in soft_users.iter().chain(hard_users) {
        env.ok("DELETE", &format!("/v1.0/users/{u}"), None);
    }
    for u in hard_users {
        env.ok("DELETE", &format!("/v1.0/directory/deletedItems/{u}"), None);
    }
    env.ok("DELETE", &format!("/v1.0/groups/{sec_group}"), None);
    env.ok("DELETE", &format!("/v1.0/groups/{m365_group}"), None);
    assert!(env
        .get(&format!("/v1.0/directory/deletedItems/{sec_group}"))
        .is_none());
    assert!(env
        .get(&format!("/v1.0/directory/deletedItems/{m365_group}"))
        .is_some());

    let remap = Arc::new(Remap::default());
    let mut inst = env.restorer(&reader, &remap);
    let mut selection: Vec<Selected> = members.iter().map(|u| sel("user", u)).collect();
    selection.push(sel("user", &edited));
    selection.push(sel("group", &sec_group));
    selection.push(sel("group", &m365_group));
    selection.push(sel("group", &churn_group));
    let actions = plan(&mut inst, selection.clone(), json!({}));

    // Objects: recycle bin → undelete, gone → re-create, edited → PATCH of the changed
    // attributes only.
    let undeletes = ids(&actions, ActionKind::Undelete);
    let recreates = ids(&actions, ActionKind::Recreate);
    for u in soft_users {
        assert!(undeletes.contains(&format!("user/{u}/undelete")), "{u}");
    }
    for u in hard_users {
        assert!(recreates.contains(&format!("user/{u}/recreate")), "{u}");
        let manual = format!("user/{u}/manual/password");
        let m = actions.iter().find(|a| a.id == manual).expect(&manual);
        let upn = users[u]["userPrincipalName"].as_str().unwrap();
        assert!(
            m.summary.contains(upn) && m.summary.contains("reset the password"),
            "{}",
            m.summary
        );
    }
    assert!(undeletes.contains(&format!("group/{m365_group}/undelete")));
    assert!(recreates.contains(&format!("group/{sec_group}/recreate")));
    let upd = actions
        .iter()
        .find(|a| a.id == format!("user/{edited}/update"))
        .expect("update of the edited user");
    let mut patched: Vec<&str> = upd
        .summary
        .split(": ")
        .nth(1)
        .unwrap()
        .split(", ")
        .collect();
    patched.sort();
    assert_eq!(patched, ["department", "jobTitle"], "{}", upd.summary);

    // Relationships: members of the re-created group, memberships of re-created users, the
    // removed member back, the added one out, owners of the re-created group; each after the
    // objects it joins.
    let links_planned = ids(&actions, ActionKind::Link);
    for (g, m) in links.iter().filter(|(g, _)| *g == sec_group) {
        if !users.contains_key(m) && !groups.contains_key(m) {
            continue;
        }
        let id = format!("groupMember/{g}/{m}/link");
        assert!(links_planned.contains(&id), "{id}");
        assert!(position(&actions, &id) > position(&actions, &format!("group/{g}/recreate")));
    }
    for u in hard_users {
        for (g, _) in links.iter().filter(|(_, m)| m == u) {
            let id = format!("groupMember/{g}/{u}/link");
            assert!(links_planned.contains(&id), "{id}");
            assert!(position(&actions, &id) > position(&actions, &format!("user/{u}/recreate")));
        }
    }
    for o in groups[&sec_group]["owners"].as_array().unwrap() {
        let id = format!(
            "group/{sec_group}/owners/{}/link",
            o["id"].as_str().unwrap()
        );
        assert!(links_planned.contains(&id), "{id}");
    }
    assert!(links_planned.contains(&format!("groupMember/{churn_group}/{removed_member}/link")));
    assert_eq!(
        ids(&actions, ActionKind::Unlink),
        BTreeSet::from([format!("group/{churn_group}/members/{intruder}/unlink")])
    );
    // Dependency order: objects, then attributes, then relationships, then manual steps.
    let first_link = actions
        .iter()
        .position(|a| a.kind == ActionKind::Link)
        .unwrap();
    let last_object = actions
        .iter()
        .rposition(|a| matches!(a.kind, ActionKind::Undelete | ActionKind::Recreate))
        .unwrap();
    assert!(last_object < first_link);
    let first_manual = actions
        .iter()
        .position(|a| a.kind == ActionKind::Manual)
        .unwrap();
    assert!(actions[first_manual..]
        .iter()
        .all(|a| a.kind == ActionKind::Manual));

    // Apply: new ids recorded for re-created objects; passwords never leave the plugin.
    let outcomes = apply_all(&mut inst, &actions);
    for u in hard_users {
        let o = &outcomes[&format!("user/{u}/recreate")];
        let new = o
            .new_id
            .clone()
            .expect("re-created users report their new id");
        assert_ne!(&new, u);
        assert_eq!(remap.lookup(u), Some(new.clone()));
        let live = env.get(&format!("/v1.0/users/{new}")).unwrap();
        assert_eq!(live["userPrincipalName"], users[u]["userPrincipalName"]);
        assert_eq!(live["displayName"], users[u]["displayName"]);
        assert!(o
            .notes
            .iter()
            .all(|n| !n.to_lowercase().contains("password:")));
    }
    for u in soft_users {
        assert!(
            env.get(&format!("/v1.0/users/{u}")).is_some(),
            "{u} undeleted"
        );
    }
    // Ownerships and managers of re-created users, wherever they were.
    let mut checked = 0;
    for u in hard_users {
        let new = remap.new_id(u);
        for (g, body) in &groups {
            let owned = body["owners"]
                .as_array()
                .is_some_and(|o| o.iter().any(|r| r["id"] == json!(u)));
            if owned {
                let owners = env.all(&format!(
                    "/v1.0/groups/{}/owners?$select=id",
                    remap.new_id(g)
                ));
                assert!(
                    owners.iter().any(|o| o["id"] == json!(new)),
                    "{u} owns {g} again"
                );
                checked += 1;
            }
        }
        for link in snap.of_kind("userManager").keys() {
            if let Some(m) = link.strip_prefix(&format!("{u}/")) {
                let live = env.get(&format!("/v1.0/users/{new}/manager?$select=id"));
                assert_eq!(
                    live.unwrap()["id"],
                    json!(remap.new_id(m)),
                    "manager of {u}"
                );
            }
        }
    }
    assert!(checked >= 1, "no ownership or manager was exercised");
    let new_sec = remap.new_id(&sec_group);
    assert_ne!(new_sec, sec_group);
    let live_members: BTreeSet<String> = env
        .all(&format!("/v1.0/groups/{new_sec}/members?$select=id"))
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    let want_members: BTreeSet<String> = links
        .iter()
        .filter(|(g, _)| *g == sec_group)
        .map(|(_, m)| remap.new_id(m))
        .collect();
    assert_eq!(live_members, want_members);
    let select = format!("/v1.0/users/{edited}?$select=jobTitle,department");
    let live_user = env.get(&select).unwrap();
    assert_eq!(live_user["jobTitle"], orig_title);
    assert_eq!(live_user["department"], orig_dept);
    let churn: BTreeSet<String> = env
        .all(&format!("/v1.0/groups/{churn_group}/members?$select=id"))
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert!(churn.contains(&removed_member) && !churn.contains(&intruder));

    // Verify: a second plan has nothing but manual steps.
    let again = plan(&mut inst, selection.clone(), json!({}));
    assert_eq!(not_manual(&again), Vec::<String>::new());
    // Re-applying the first plan finds everything done.
    let mut inst2 = env.restorer(&reader, &remap);
    let re = apply_all(&mut inst2, &actions);
    for a in &actions {
        if a.kind != ActionKind::Manual {
            assert!(re[&a.id].already_done, "{} was applied twice", a.id);
        }
    }

    // Attribute-level restore: only jobTitle, on one user.
    env.ok(
        "PATCH",
        &format!("/v1.0/users/{edited}"),
        Some(json!({"jobTitle": "Again", "department": "Again"})),
    );
    let one = plan(
        &mut inst,
        vec![Selected {
            kind: "user".into(),
            id: edited.clone(),
            attributes: vec!["jobTitle".into()],
        }],
        json!({}),
    );
    assert_eq!(not_manual(&one).len(), 1, "{:?}", not_manual(&one));
    assert_eq!(one[0].id, format!("user/{edited}/update"));
    apply_all(&mut inst, &one);
    let live_user = env.get(&select).unwrap();
    assert_eq!(live_user["jobTitle"], orig_title);
    assert_eq!(live_user["department"], json!("Again"));

    // onlyMissing: live objects are left alone.
    env.ok("DELETE", &format!("/v1.0/users/{}", soft_users[0]), None);
    let missing = plan(&mut inst, selection, json!({"onlyMissing": true}));
    let objects: Vec<&str> = missing
        .iter()
        .filter(|a| {
            matches!(
                a.kind,
                ActionKind::Undelete | ActionKind::Recreate | ActionKind::Update
            )
        })
        .map(|a| a.id.as_str())
        .collect();
    assert_eq!(objects, [format!("user/{}/undelete", soft_users[0])]);
}

fn by_name(items: &BTreeMap<String, Value>, name: &str) -> String {
    items
        .iter()
        .find(|(_, b)| b["displayName"] == json!(name))
        .map(|(id, _)| id.clone())
        .unwrap_or_else(|| panic!("no {name} in the snapshot"))
}

/// A CA policy weakened (everyone excluded, report-only), another deleted to the recycle bin, a
/// third deleted for good with the named location it uses, a fourth referencing a group that is
/// deleted for good: named locations first, policies after what they reference, report-only
/// unless `as-backed-up`, references rewritten to the new ids.
#[test]
fn conditional_access_and_named_locations() {
    let env = Env::start(72);
    let snap = env.backup();
    let reader = SnapReader::new(&snap);
    let cas = snap.of_kind("conditionalAccessPolicy");
    let admins = by_name(&cas, "Require MFA for administrators");
    let legacy = by_name(&cas, "Block legacy authentication");
    let countries = by_name(&cas, "Block access from untrusted countries");
    let devices = by_name(&cas, "Require compliant device for Office 365");
    let location = cas[&countries]["conditions"]["locations"]["includeLocations"][0]
        .as_str()
        .expect("the policy uses a named location")
        .to_string();
    let group = cas[&devices]["conditions"]["users"]["includeGroups"][0]
        .as_str()
        .unwrap()
        .to_string();
    let pol = |id: &str| format!("/v1.0/identity/conditionalAccess/policies/{id}");

    // Weaken one policy as an attacker would.
    let mut live = env.ok("GET", &pol(&admins), None);
    live["conditions"]["users"]["excludeUsers"] = json!(["All"]);
    env.ok(
        "PATCH",
        &pol(&admins),
        Some(
            json!({"state": "enabledForReportingButNotEnforced", "conditions": live["conditions"]}),
        ),
    );
    // Delete one into the recycle bin, another for good with its named location.
    env.ok("DELETE", &pol(&legacy), None);
    env.ok("DELETE", &pol(&countries), None);
    env.ok(
        "DELETE",
        &format!("/beta/identity/conditionalAccess/deletedItems/policies/{countries}"),
        None,
    );
    env.ok(
        "DELETE",
        &format!("/v1.0/identity/conditionalAccess/namedLocations/{location}"),
        None,
    );
    let _ = env.call(
        "DELETE",
        &format!("/beta/identity/conditionalAccess/deletedItems/namedLocations/{location}"),
        None,
    );
    // Delete a group a policy includes, for good (security groups skip the recycle bin).
    env.ok("DELETE", &format!("/v1.0/groups/{group}"), None);
    let _ = env.call(
        "DELETE",
        &format!("/v1.0/directory/deletedItems/{group}"),
        None,
    );

    let remap = Arc::new(Remap::default());
    let mut inst = env.restorer(&reader, &remap);
    let selection = vec![
        sel("conditionalAccessPolicy", &admins),
        sel("conditionalAccessPolicy", &legacy),
        sel("conditionalAccessPolicy", &countries),
        sel("conditionalAccessPolicy", &devices),
        sel("group", &group),
    ];
    let actions = plan(&mut inst, selection.clone(), json!({}));
    let nl_id = format!("namedLocation/{location}/recreate");
    let ca_id = format!("conditionalAccessPolicy/{countries}/recreate");
    assert!(position(&actions, &nl_id) < position(&actions, &ca_id));
    let rec = &actions[position(&actions, &ca_id)];
    assert!(rec.depends_on.contains(&nl_id), "{:?}", rec.depends_on);
    assert!(
        rec.summary.contains("enabledForReportingButNotEnforced"),
        "{}",
        rec.summary
    );
    position(
        &actions,
        &format!("conditionalAccessPolicy/{legacy}/undelete"),
    );
    let upd = &actions[position(
        &actions,
        &format!("conditionalAccessPolicy/{admins}/update"),
    )];
    assert!(upd.summary.contains("conditions"), "{}", upd.summary);
    let dev = &actions[position(
        &actions,
        &format!("conditionalAccessPolicy/{devices}/update"),
    )];
    assert!(dev.depends_on.contains(&format!("group/{group}/recreate")));
    position(
        &actions,
        &format!("conditionalAccessPolicy/{admins}/manual/enable"),
    );

    apply_all(&mut inst, &actions);
    let new_location = remap.new_id(&location);
    assert_ne!(new_location, location);
    let new_countries = remap.new_id(&countries);
    let restored = env.ok("GET", &pol(&new_countries), None);
    assert_eq!(
        restored["state"],
        json!("enabledForReportingButNotEnforced")
    );
    assert_eq!(
        restored["conditions"]["locations"]["includeLocations"],
        json!([new_location])
    );
    let admins_live = env.ok("GET", &pol(&admins), None);
    assert_eq!(
        admins_live["conditions"]["users"]["excludeUsers"],
        cas[&admins]["conditions"]["users"]["excludeUsers"]
    );
    assert_eq!(
        admins_live["state"],
        json!("enabledForReportingButNotEnforced")
    );
    let legacy_live = env.ok("GET", &pol(&legacy), None);
    assert_eq!(
        legacy_live["state"], cas[&legacy]["state"],
        "undelete keeps the state"
    );
    let dev_live = env.ok("GET", &pol(&devices), None);
    let new_group = remap.new_id(&group);
    assert_ne!(new_group, group);
    assert!(dev_live["conditions"]["users"]["includeGroups"]
        .as_array()
        .unwrap()
        .contains(&json!(new_group)));

    // Verify: only manual steps remain; re-applying finds everything done.
    let again = plan(&mut inst, selection.clone(), json!({}));
    assert_eq!(not_manual(&again), Vec::<String>::new());
    let re = apply_all(&mut env.restorer(&reader, &remap), &actions);
    for a in actions.iter().filter(|a| a.kind != ActionKind::Manual) {
        assert!(re[&a.id].already_done, "{} was applied twice", a.id);
    }

    // As backed up: the enabled policies are switched on again.
    let full = plan(
        &mut inst,
        selection.clone(),
        json!({"caState": "as-backed-up"}),
    );
    let states: BTreeSet<String> = not_manual(&full).into_iter().collect();
    assert_eq!(states.len(), 2, "{states:?}");
    apply_all(&mut inst, &full);
    assert_eq!(
        env.ok("GET", &pol(&admins), None)["state"],
        json!("enabled")
    );
    assert_eq!(
        env.ok("GET", &pol(&new_countries), None)["state"],
        json!("enabled")
    );
    let last = plan(&mut inst, selection, json!({"caState": "as-backed-up"}));
    assert_eq!(not_manual(&last), Vec::<String>::new());
}

/// An application and its service principal deleted for good: the app comes back with a new
/// appId, its service principal for that appId, owners, federated credentials, app role
/// assignments and delegated grants; secrets and certificates are manual steps naming the
/// credential and its expiry.
#[test]
fn application_and_service_principal() {
    let env = Env::start(73);
    let snap = env.backup();
    let reader = SnapReader::new(&snap);
    let apps = snap.of_kind("application");
    let sps = snap.of_kind("servicePrincipal");
    let assignments = snap.of_kind("appRoleAssignment");
    let grants = snap.of_kind("oauth2PermissionGrant");
    let sp_of = |app_id: &Value| {
        sps.iter()
            .find(|(_, s)| s["appId"] == *app_id)
            .map(|(id, _)| id.clone())
    };
    // The app with the most to restore.
    let score = |a: &Value| -> usize {
        let Some(sp) = sp_of(&a["appId"]) else {
            return 0;
        };
        let n_assign = assignments
            .values()
            .filter(|x| x["principalId"] == json!(sp) || x["resourceId"] == json!(sp))
            .count();
        let n_grants = grants
            .values()
            .filter(|g| g["clientId"] == json!(sp))
            .count();
        1 + 3 * n_assign.min(1)
            + 3 * n_grants.min(1)
            + 2 * a["federatedIdentityCredentials"]
                .as_array()
                .map_or(0, |f| f.len().min(1))
            + a["passwordCredentials"]
                .as_array()
                .map_or(0, |p| p.len().min(1))
            + a["owners"].as_array().map_or(0, |o| o.len().min(1))
    };
    let (app, body) = apps
        .iter()
        .max_by_key(|(_, a)| score(a))
        .map(|(id, b)| (id.clone(), b.clone()))
        .unwrap();
    let sp = sp_of(&body["appId"]).expect("the app has a service principal");
    let sp_assign: Vec<&Value> = assignments
        .values()
        .filter(|x| x["principalId"] == json!(sp) || x["resourceId"] == json!(sp))
        .collect();
    let sp_grants: Vec<&Value> = grants
        .values()
        .filter(|g| g["clientId"] == json!(sp))
        .collect();
    assert!(
        !sp_assign.is_empty() || !sp_grants.is_empty(),
        "the chosen app has assignments or grants"
    );

    env.ok("DELETE", &format!("/v1.0/applications/{app}"), None);
    env.ok(
        "DELETE",
        &format!("/v1.0/directory/deletedItems/{app}"),
        None,
    );
    env.ok(
        "DELETE",
        &format!("/v1.0/directory/deletedItems/{sp}"),
        None,
    );

    let remap = Arc::new(Remap::default());
    let mut inst = env.restorer(&reader, &remap);
    let selection = vec![sel("application", &app)];
    let actions = plan(
        &mut inst,
        selection.clone(),
        json!({"snapshotTime": "2030-01-01T00:00:00Z"}),
    );
    let app_rec = format!("application/{app}/recreate");
    let sp_rec = format!("servicePrincipal/{sp}/recreate");
    assert!(position(&actions, &app_rec) < position(&actions, &sp_rec));
    assert!(actions[position(&actions, &sp_rec)]
        .depends_on
        .contains(&app_rec));
    for c in body["passwordCredentials"].as_array().into_iter().flatten() {
        let key = c["keyId"].as_str().unwrap();
        let m = &actions[position(
            &actions,
            &format!("application/{app}/manual/client secret/{key}"),
        )];
        assert!(
            m.summary.contains(c["displayName"].as_str().unwrap()),
            "{}",
            m.summary
        );
        assert!(
            m.summary.contains(c["endDateTime"].as_str().unwrap()),
            "{}",
            m.summary
        );
        assert!(m.summary.contains("expired on"), "{}", m.summary);
    }
    for f in body["federatedIdentityCredentials"]
        .as_array()
        .into_iter()
        .flatten()
    {
        position(
            &actions,
            &format!(
                "application/{app}/federatedIdentityCredentials/{}/link",
                f["name"].as_str().unwrap()
            ),
        );
    }

    let outcomes = apply_all(&mut inst, &actions);
    let new_app = outcomes[&app_rec].new_id.clone().unwrap();
    let new_sp = outcomes[&sp_rec].new_id.clone().unwrap();
    let app_live = env.ok("GET", &format!("/v1.0/applications/{new_app}"), None);
    assert_ne!(
        app_live["appId"], body["appId"],
        "a re-created app has a new appId"
    );
    assert_eq!(
        remap.lookup(body["appId"].as_str().unwrap()),
        app_live["appId"].as_str().map(str::to_string)
    );
    let sp_live = env.ok("GET", &format!("/v1.0/servicePrincipals/{new_sp}"), None);
    assert_eq!(sp_live["appId"], app_live["appId"]);
    let owners: BTreeSet<String> = env
        .all(&format!("/v1.0/applications/{new_app}/owners?$select=id"))
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect();
    let want_owners: BTreeSet<String> = body["owners"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(owners, want_owners);
    for a in &sp_assign {
        let resource = remap.new_id(a["resourceId"].as_str().unwrap());
        let principal = remap.new_id(a["principalId"].as_str().unwrap());
        let live = env.all(&format!(
            "/v1.0/servicePrincipals/{resource}/appRoleAssignedTo"
        ));
        assert!(
            live.iter()
                .any(|l| l["principalId"] == json!(principal) && l["appRoleId"] == a["appRoleId"]),
            "assignment {a} restored"
        );
    }
    for g in &sp_grants {
        let live = env.all("/v1.0/oauth2PermissionGrants");
        assert!(
            live.iter().any(|l| l["clientId"] == json!(new_sp)
                && l["resourceId"] == json!(remap.new_id(g["resourceId"].as_str().unwrap()))
                && l["consentType"] == g["consentType"]),
            "grant {g} restored"
        );
    }
    let fics = env.all(&format!(
        "/v1.0/applications/{new_app}/federatedIdentityCredentials"
    ));
    assert_eq!(
        fics.len(),
        body["federatedIdentityCredentials"]
            .as_array()
            .map_or(0, |f| f.len())
    );

    let again = plan(&mut inst, selection, json!({}));
    assert_eq!(not_manual(&again), Vec::<String>::new());
    let re = apply_all(&mut env.restorer(&reader, &remap), &actions);
    for a in actions.iter().filter(|a| a.kind != ActionKind::Manual) {
        assert!(re[&a.id].already_done, "{} was applied twice", a.id);
    }
}

/// Cross-tenant: users, a group with its members, and a CA policy restored into an empty tenant
/// with another domain. Every object is created anew, every reference remapped, UPNs rewritten
/// through `domainMap`; a second plan against the target has nothing but manual steps.
#[test]
fn cross_tenant_restore() {
    let env = Env::start(74);
    let snap = env.backup();
    let reader = SnapReader::new(&snap);
    let mut cfg = SimConfig::new(Profile::Empty, 5);
    cfg.domain = "fabrikam.onmicrosoft.com".into();
    let target = env.rt.block_on(Simulator::start(cfg)).unwrap();

    let cas = snap.of_kind("conditionalAccessPolicy");
    let devices = by_name(&cas, "Require compliant device for Office 365");
    let users_cond = &cas[&devices]["conditions"]["users"];
    let groups: Vec<String> = users_cond["includeGroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap().to_string())
        .collect();
    let excluded: Vec<String> = users_cond["excludeUsers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap().to_string())
        .collect();
    let all_users = snap.of_kind("user");
    // Distribution lists cannot be created through Graph: a manual step, and the policy is
    // created without them.
    let all_groups = snap.of_kind("group");
    let (creatable, lists): (Vec<String>, Vec<String>) = groups.iter().cloned().partition(|g| {
        is_security_only(&all_groups[g])
            || all_groups[g]["groupTypes"].to_string().contains("Unified")
    });
    assert!(!creatable.is_empty());
    let members: Vec<String> = snap
        .of_kind("groupMember")
        .keys()
        .filter_map(|k| k.split_once('/'))
        .filter(|(g, m)| *g == creatable[0] && all_users.contains_key(*m))
        .map(|(_, m)| m.to_string())
        .collect();
    let mut selection: Vec<Selected> = groups.iter().map(|g| sel("group", g)).collect();
    selection.extend(excluded.iter().map(|u| sel("user", u)));
    selection.extend(members.iter().map(|u| sel("user", u)));
    selection.push(sel("conditionalAccessPolicy", &devices));
    // An application whose service principal holds app roles of Microsoft Graph, a first-party
    // service principal every tenant has under its own object id (found there by appId).
    const GRAPH: &str = "00000003-0000-0000-c000-000000000000";
    let sps = snap.of_kind("servicePrincipal");
    let graph_old = sps
        .iter()
        .find(|(_, b)| b["appId"] == GRAPH)
        .map(|(id, _)| id.clone())
        .expect("the snapshot references Microsoft Graph");
    let to_graph: Vec<Value> = snap
        .of_kind("appRoleAssignment")
        .into_values()
        .filter(|b| b["resourceId"] == json!(graph_old))
        .collect();
    let client_old = to_graph
        .iter()
        .map(|b| b["principalId"].as_str().unwrap().to_string())
        .find(|p| sps.contains_key(p))
        .expect("a service principal holds Microsoft Graph app roles");
    let client_app_id = sps[&client_old]["appId"].as_str().unwrap().to_string();
    let (app_old, _) = snap
        .of_kind("application")
        .into_iter()
        .find(|(_, b)| b["appId"] == json!(client_app_id))
        .expect("the client is a tenant application");
    let roles_old: BTreeSet<String> = to_graph
        .iter()
        .filter(|b| b["principalId"] == json!(client_old))
        .map(|b| b["appRoleId"].as_str().unwrap().to_string())
        .collect();
    selection.push(sel("application", &app_old));
    selection.push(sel("servicePrincipal", &client_old));
    let options = json!({
        "crossTenant": true,
        "domainMap": {"contoso.onmicrosoft.com": "fabrikam.onmicrosoft.com", "contoso.com": "fabrikam.onmicrosoft.com"}
    });

    let remap = Arc::new(Remap::default());
    let gw = gateway(
        env.rt.handle().clone(),
        &target,
        target.client_id(),
        target.client_secret(),
    );
    let plugin = env
        .wasm
        .load_file(std::path::Path::new(cairn_entra_tests::ENTRA))
        .unwrap();
    let mut inst = plugin
        .instantiate_default(cairn_runtime::Capabilities {
            graph: Some(gw.for_task("entra-restore")),
            snapshot: Some(reader.clone()),
            remap: Some(remap.clone()),
            ..Default::default()
        })
        .unwrap();
    inst.configure("{}").unwrap().unwrap();

    let actions = plan(&mut inst, selection.clone(), options.clone());
    for a in &actions {
        eprintln!("{} | {} | {}", a.id, a.summary, a.reason);
    }
    assert!(ids(&actions, ActionKind::Undelete).is_empty());
    assert!(ids(&actions, ActionKind::Update).is_empty());
    for g in &creatable {
        position(&actions, &format!("group/{g}/recreate"));
    }
    for g in &lists {
        position(&actions, &format!("group/{g}/manual"));
    }
    for u in excluded.iter().chain(&members) {
        position(&actions, &format!("user/{u}/recreate"));
    }
    let ca = position(
        &actions,
        &format!("conditionalAccessPolicy/{devices}/recreate"),
    );
    for g in &creatable {
        assert!(actions[ca]
            .depends_on
            .contains(&format!("group/{g}/recreate")));
    }
    apply_all(&mut inst, &actions);

    let mut c = Client::new(&target.base_url()).with_token(target.access_token());
    let mut tget = |path: &str| -> Value { env.rt.block_on(c.get(path)).json() };
    for u in excluded.iter().chain(&members) {
        let new = remap.lookup(u).expect("every user re-created");
        let live = tget(&format!("/v1.0/users/{new}"));
        let upn = all_users[u]["userPrincipalName"].as_str().unwrap();
        let local = upn.split('@').next().unwrap();
        assert_eq!(
            live["userPrincipalName"],
            json!(format!("{local}@fabrikam.onmicrosoft.com"))
        );
    }
    let new_group = remap.lookup(&creatable[0]).unwrap();
    let live_members: BTreeSet<String> =
        tget(&format!("/v1.0/groups/{new_group}/members?$select=id"))["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect();
    let want: BTreeSet<String> = members.iter().map(|m| remap.new_id(m)).collect();
    assert_eq!(live_members, want);
    let new_ca = remap.lookup(&devices).unwrap();
    let live_ca = tget(&format!(
        "/v1.0/identity/conditionalAccess/policies/{new_ca}"
    ));
    let want_groups: Vec<Value> = creatable.iter().map(|g| json!(remap.new_id(g))).collect();
    assert_eq!(
        live_ca["conditions"]["users"]["includeGroups"],
        json!(want_groups)
    );
    let want_excl: Vec<Value> = excluded.iter().map(|u| json!(remap.new_id(u))).collect();
    assert_eq!(
        live_ca["conditions"]["users"]["excludeUsers"],
        json!(want_excl)
    );
    assert_eq!(live_ca["state"], json!("enabledForReportingButNotEnforced"));

    // The app roles of Microsoft Graph are assigned to the new service principal on the target's
    // own Graph service principal (same appRoleIds); remap maps the old Graph id to it.
    let graph_new = tget(&format!("/v1.0/servicePrincipals(appId='{GRAPH}')"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(graph_new, graph_old, "another tenant, another object id");
    assert_eq!(remap.lookup(&graph_old), Some(graph_new.clone()));
    let client_new = remap.lookup(&client_old).expect("client re-created");
    let live_roles: BTreeSet<String> = tget(&format!(
        "/v1.0/servicePrincipals/{client_new}/appRoleAssignments"
    ))["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["resourceId"] == json!(graph_new))
        .map(|a| a["appRoleId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(live_roles, roles_old);

    let again = plan(&mut inst, selection, options);
    assert_eq!(not_manual(&again), Vec::<String>::new());
}

/// Directory role assignments and administrative units: a user holding a role and an
/// administrative unit (with members and, where the tenant has one, a unit-scoped role
/// assignment) deleted for good come back with new ids; the assignments are re-created for the
/// new principal and the new unit's scope.
#[test]
fn role_assignments_and_administrative_units() {
    let env = Env::start(75);
    let snap = env.backup();
    let reader = SnapReader::new(&snap);
    let users = snap.of_kind("user");
    let assignments = snap.of_kind("unifiedRoleAssignment");
    let au_links: Vec<(String, String)> = snap
        .of_kind("administrativeUnitMember")
        .keys()
        .filter_map(|k| {
            k.split_once('/')
                .map(|(a, m)| (a.to_string(), m.to_string()))
        })
        .collect();
    let scoped = |a: &Value| {
        a["directoryScopeId"]
            .as_str()
            .and_then(|s| s.strip_prefix("/administrativeUnits/"))
            .map(str::to_string)
    };
    // A unit with members, preferring one that scopes a role assignment.
    let au = assignments
        .values()
        .filter_map(scoped)
        .find(|a| au_links.iter().any(|(x, _)| x == a))
        .or_else(|| au_links.first().map(|(a, _)| a.clone()))
        .expect("a unit with members");
    let au_scoped: Vec<&Value> = assignments
        .values()
        .filter(|a| scoped(a).as_deref() == Some(au.as_str()))
        .collect();
    // A user holding a tenant-wide role (not the first admin, who stays to run the tenant).
    let (holder, role_of_holder) = assignments
        .values()
        .filter(|a| a["directoryScopeId"] == json!("/"))
        .filter_map(|a| {
            let p = a["principalId"].as_str()?;
            let u = users.get(p)?;
            (u["onPremisesSyncEnabled"] != json!(true)
                && !u["userPrincipalName"].as_str()?.starts_with("admin@"))
            .then(|| (p.to_string(), a["roleDefinitionId"].clone()))
        })
        .next()
        .expect("a user with a role");

    env.ok("DELETE", &format!("/v1.0/users/{holder}"), None);
    env.ok(
        "DELETE",
        &format!("/v1.0/directory/deletedItems/{holder}"),
        None,
    );
    env.ok(
        "DELETE",
        &format!("/v1.0/directory/administrativeUnits/{au}"),
        None,
    );
    env.ok(
        "DELETE",
        &format!("/v1.0/directory/deletedItems/{au}"),
        None,
    );

    let remap = Arc::new(Remap::default());
    let mut inst = env.restorer(&reader, &remap);
    // describe declares the restore-time permissions.
    let info = inst.describe().unwrap();
    for p in [
        "User.ReadWrite.All",
        "RoleManagement.ReadWrite.Directory",
        "Policy.ReadWrite.ConditionalAccess",
    ] {
        assert!(
            info.permissions.iter().any(
                |x| x.name == p && x.needed_for == cairn_runtime::types::PermissionUse::Restore
            ),
            "{p}"
        );
    }
    let selection = vec![sel("user", &holder), sel("administrativeUnit", &au)];
    let actions = plan(&mut inst, selection.clone(), json!({}));
    let user_rec = format!("user/{holder}/recreate");
    let au_rec = format!("administrativeUnit/{au}/recreate");
    for (id, a) in &assignments {
        let mine = a["principalId"] == json!(holder) || scoped(a).as_deref() == Some(au.as_str());
        if !mine {
            continue;
        }
        let aid = format!("unifiedRoleAssignment/{id}/link");
        let link = &actions[position(&actions, &aid)];
        if a["principalId"] == json!(holder) {
            assert!(link.depends_on.contains(&user_rec), "{aid}");
        }
        if scoped(a).is_some() {
            assert!(link.depends_on.contains(&au_rec), "{aid}");
        }
    }
    for (a, m) in au_links.iter().filter(|(a, _)| *a == au) {
        position(&actions, &format!("administrativeUnitMember/{a}/{m}/link"));
    }

    apply_all(&mut inst, &actions);
    let new_user = remap.new_id(&holder);
    let new_au = remap.new_id(&au);
    assert_ne!(new_user, holder);
    assert_ne!(new_au, au);
    let live = env.all(&format!(
        "/v1.0/roleManagement/directory/roleAssignments?$filter=principalId%20eq%20'{new_user}'"
    ));
    assert!(live.iter().any(|l| l["roleDefinitionId"] == role_of_holder));
    let all_live = env.all("/v1.0/roleManagement/directory/roleAssignments");
    for a in &au_scoped {
        let p = remap.new_id(a["principalId"].as_str().unwrap());
        assert!(
            all_live.iter().any(|l| l["principalId"] == json!(p)
                && l["roleDefinitionId"] == a["roleDefinitionId"]
                && l["directoryScopeId"] == json!(format!("/administrativeUnits/{new_au}"))),
            "unit-scoped assignment {a} restored"
        );
    }
    let members: BTreeSet<String> = env
        .all(&format!(
            "/v1.0/directory/administrativeUnits/{new_au}/members?$select=id"
        ))
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    let want: BTreeSet<String> = au_links
        .iter()
        .filter(|(a, _)| *a == au)
        .map(|(_, m)| remap.new_id(m))
        .collect();
    assert_eq!(members, want);

    // The unit's scoped role members, after the unit-scoped role assignments.
    let snap_units = snap.of_kind("administrativeUnit");
    let srms = snap_units[&au]["scopedRoleMembers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!srms.is_empty(), "the unit has scoped role members");
    let live_srm = env.all(&format!(
        "/v1.0/directory/administrativeUnits/{new_au}/scopedRoleMembers"
    ));
    for m in &srms {
        let aid = format!(
            "administrativeUnit/{au}/scopedRoleMembers/{}/link",
            m["id"].as_str().unwrap()
        );
        let link = &actions[position(&actions, &aid)];
        assert!(link.depends_on.contains(&au_rec), "{aid}");
        let p = remap.new_id(m["roleMemberInfo"]["id"].as_str().unwrap());
        assert!(
            live_srm
                .iter()
                .any(|l| l["roleId"] == m["roleId"] && l["roleMemberInfo"]["id"] == json!(p)),
            "scoped role member {m} restored"
        );
    }
    assert_eq!(live_srm.len(), srms.len());

    let again = plan(&mut inst, selection, json!({}));
    assert_eq!(not_manual(&again), Vec::<String>::new());
    let re = apply_all(&mut env.restorer(&reader, &remap), &actions);
    for a in actions.iter().filter(|a| a.kind != ActionKind::Manual) {
        assert!(re[&a.id].already_done, "{} was applied twice", a.id);
    }
}

/// `onlyMissing` (`--deleted-since`) after a bulk deletion repairs the references objects that
/// survived hold to the deleted ones: the re-created break-glass user is excluded again by every
/// surviving Conditional Access policy (only that list rewritten, the policies' state left as
/// it is), a policy including a purged group follows the group's new id, a surviving group
/// owned by a purged user and a surviving user managed by one get them back. A policy restored
/// whole names the reference to an object that is not restored instead of dropping it silently.
#[test]
fn only_missing_repoints_references_held_by_survivors() {
    let env = Env::start(74);
    let snap = env.backup();
    let reader = SnapReader::new(&snap);
    let cas = snap.of_kind("conditionalAccessPolicy");
    let users = snap.of_kind("user");
    let groups = snap.of_kind("group");
    let cloud = |u: &str| {
        users
            .get(u)
            .is_some_and(|b| b["onPremisesSyncEnabled"] != json!(true))
    };
    let admins = by_name(&cas, "Require MFA for administrators");
    let breakglass = cas[&admins]["conditions"]["users"]["excludeUsers"][0]
        .as_str()
        .expect("the policy excludes a break-glass account")
        .to_string();
    assert!(cloud(&breakglass));
    let devices = by_name(&cas, "Require compliant device for Office 365");
    let group = cas[&devices]["conditions"]["users"]["includeGroups"][0]
        .as_str()
        .unwrap()
        .to_string();
    let ca_users: BTreeSet<String> = cas
        .values()
        .flat_map(|p| {
            ["includeUsers", "excludeUsers"]
                .iter()
                .flat_map(|l| {
                    p["conditions"]["users"][l]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                })
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect();
    // A manager of a surviving user and the owner of a surviving group, both deleted for good.
    let (report, boss) = snap
        .of_kind("userManager")
        .keys()
        .filter_map(|k| {
            k.split_once('/')
                .map(|(u, m)| (u.to_string(), m.to_string()))
        })
        .find(|(u, m)| cloud(m) && *m != breakglass && *u != breakglass && !ca_users.contains(m))
        .expect("a user with a manager");
    let (owned, owner) = groups
        .iter()
        .filter(|(g, _)| **g != group)
        .find_map(|(g, b)| {
            b["owners"].as_array()?.iter().find_map(|o| {
                let o = o["id"].as_str()?;
                (cloud(o) && o != breakglass && o != boss && o != report && !ca_users.contains(o))
                    .then(|| (g.clone(), o.to_string()))
            })
        })
        .expect("a group owned by a user");
    // A user a policy includes, deleted for good and left out of the restore.
    let (named, absent) = cas
        .iter()
        .find_map(|(p, b)| {
            b["conditions"]["users"]["includeUsers"]
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .find(|u| {
                    users.contains_key(*u)
                        && ![&breakglass, &boss, &owner].contains(&&u.to_string())
                })
                .map(|u| (p.clone(), u.to_string()))
        })
        .expect("a policy including a user");

    for u in [&breakglass, &boss, &owner, &absent] {
        env.ok("DELETE", &format!("/v1.0/users/{u}"), None);
        env.ok("DELETE", &format!("/v1.0/directory/deletedItems/{u}"), None);
    }
    env.ok("DELETE", &format!("/v1.0/groups/{group}"), None);
    let _ = env.call(
        "DELETE",
        &format!("/v1.0/directory/deletedItems/{group}"),
        None,
    );

    // The whole snapshot but `absent`, as `--deleted-since` hands it over.
    let selection: Vec<Selected> = reader
        .items
        .keys()
        .filter(|(k, id)| !(k == "user" && *id == absent))
        .map(|(k, id)| sel(k, id))
        .collect();
    let remap = Arc::new(Remap::default());
    let mut inst = env.restorer(&reader, &remap);
    let actions = plan(&mut inst, selection.clone(), json!({"onlyMissing": true}));
    let find = |id: &str| &actions[position(&actions, id)];
    for u in [&breakglass, &boss, &owner] {
        find(&format!("user/{u}/recreate"));
    }
    find(&format!("group/{group}/recreate"));
    // Every live policy excluding the break-glass account is re-pointed, after the user exists.
    let excluding: Vec<&String> = cas
        .iter()
        .filter(|(_, b)| {
            b["conditions"]["users"]["excludeUsers"]
                .as_array()
                .is_some_and(|a| a.contains(&json!(breakglass)))
        })
        .map(|(id, _)| id)
        .collect();
    assert!(excluding.len() >= 2, "{excluding:?}");
    for p in &excluding {
        let a = find(&format!("conditionalAccessPolicy/{p}/repoint"));
        assert_eq!(a.kind, ActionKind::Update);
        assert!(
            a.summary
                .starts_with("re-point Conditional Access policy '")
                && a.summary
                    .contains(&format!("exclude users: {breakglass} → re-created user '")),
            "{}",
            a.summary
        );
        assert!(a
            .depends_on
            .contains(&format!("user/{breakglass}/recreate")));
    }
    let dev = find(&format!("conditionalAccessPolicy/{devices}/repoint"));
    assert!(
        dev.summary
            .contains(&format!("include groups: {group} → re-created group '")),
        "{}",
        dev.summary
    );
    // No policy is rewritten whole or switched to report-only.
    assert!(
        !actions
            .iter()
            .any(|a| a.item_kind == "conditionalAccessPolicy" && a.id.ends_with("/update")),
        "{:?}",
        not_manual(&actions)
    );
    find(&format!("group/{owned}/owners/{owner}/link"));
    find(&format!("user/{report}/manager/link"));

    // A run that stopped once the objects were back: the same plan again still repairs the
    // references (the re-created objects are live now, at the new ids `remap` knows).
    let objects: Vec<Action> = actions
        .iter()
        .filter(|a| matches!(a.kind, ActionKind::Recreate | ActionKind::Undelete))
        .cloned()
        .collect();
    apply_all(&mut inst, &objects);
    let rest = plan(&mut inst, selection.clone(), json!({"onlyMissing": true}));
    assert!(
        ids(&rest, ActionKind::Recreate).is_empty(),
        "{:?}",
        not_manual(&rest)
    );
    assert!(
        !rest
            .iter()
            .any(|a| a.id.ends_with("/update") && a.item_kind == "user"),
        "{:?}",
        not_manual(&rest)
    );
    for p in &excluding {
        find_in(&rest, &format!("conditionalAccessPolicy/{p}/repoint"));
    }
    find_in(&rest, &format!("group/{owned}/owners/{owner}/link"));
    find_in(&rest, &format!("user/{report}/manager/link"));
    apply_all(&mut inst, &rest);
    let pol = |id: &str| {
        env.ok(
            "GET",
            &format!("/v1.0/identity/conditionalAccess/policies/{id}"),
            None,
        )
    };
    let new_bg = remap.new_id(&breakglass);
    assert_ne!(new_bg, breakglass);
    for p in &excluding {
        let live = pol(p);
        let want: Vec<Value> = cas[*p]["conditions"]["users"]["excludeUsers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| json!(remap.new_id(v.as_str().unwrap())))
            .collect();
        assert_eq!(
            live["conditions"]["users"]["excludeUsers"],
            json!(want),
            "{p}"
        );
        assert_eq!(live["state"], cas[*p]["state"], "{p}: state untouched");
    }
    let groups_now = &pol(&devices)["conditions"]["users"]["includeGroups"];
    assert!(groups_now
        .as_array()
        .unwrap()
        .contains(&json!(remap.new_id(&group))));
    assert!(!groups_now.as_array().unwrap().contains(&json!(group)));
    let owners: Vec<Value> = env.all(&format!("/v1.0/groups/{owned}/owners?$select=id"));
    assert!(owners
        .iter()
        .any(|o| o["id"] == json!(remap.new_id(&owner))));
    let mgr = env
        .get(&format!("/v1.0/users/{report}/manager?$select=id"))
        .unwrap();
    assert_eq!(mgr["id"], json!(remap.new_id(&boss)));

    // Verify as `cairn restore verify` does after `--deleted-since`: every object the restore
    // acted on, in full; and the same `onlyMissing` plan again. Only manual steps remain.
    let scope: BTreeSet<(String, String)> = actions
        .iter()
        .filter(|a| a.kind != ActionKind::Manual)
        .map(|a| (a.item_kind.clone(), a.item_id.clone()))
        .collect();
    let scope: Vec<Selected> = scope.iter().map(|(k, id)| sel(k, id)).collect();
    assert_eq!(
        not_manual(&plan(&mut inst, scope, json!({}))),
        Vec::<String>::new()
    );
    let again = plan(&mut inst, selection, json!({"onlyMissing": true}));
    assert_eq!(not_manual(&again), Vec::<String>::new());
    let re = apply_all(&mut env.restorer(&reader, &remap), &actions);
    for a in actions.iter().filter(|a| a.kind != ActionKind::Manual) {
        assert!(re[&a.id].already_done, "{} was applied twice", a.id);
    }

    // The policy naming `absent`, restored whole: the reference is left out, with a note that
    // names it.
    let one = plan(
        &mut inst,
        vec![sel("conditionalAccessPolicy", &named)],
        json!({}),
    );
    let note = find_in(
        &one,
        &format!("conditionalAccessPolicy/{named}/manual/ref/includeUsers/{absent}"),
    );
    assert_eq!(note.kind, ActionKind::Manual);
    let upn = users[&absent]["userPrincipalName"].as_str().unwrap();
    assert!(
        note.summary.contains(upn)
            && note.summary.contains("include users")
            && note.summary.contains("left out"),
        "{}",
        note.summary
    );
    apply_all(&mut inst, &one);
    let live = pol(&named);
    assert!(!live["conditions"]["users"]["includeUsers"]
        .as_array()
        .unwrap()
        .contains(&json!(absent)));
    let last = plan(
        &mut inst,
        vec![sel("conditionalAccessPolicy", &named)],
        json!({}),
    );
    assert_eq!(not_manual(&last), Vec::<String>::new());
}

fn find_in<'a>(actions: &'a [Action], id: &str) -> &'a Action {
    &actions[position(actions, id)]
}

/// An application with a directory extension property deleted for good: the property is created
/// again under the new appId (compared by its short name), with a manual step about the values
/// held under the old name.
#[test]
fn extension_properties_of_a_recreated_application() {
    let env = Env::start(76);
    let app = env.all("/v1.0/applications?$select=id,displayName")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    env.ok(
        "POST",
        &format!("/v1.0/applications/{app}/extensionProperties"),
        Some(json!({"name": "costCenter", "dataType": "String", "targetObjects": ["User"]})),
    );
    let snap = env.backup();
    let reader = SnapReader::new(&snap);
    let backed_up = &snap.of_kind("application")[&app]["extensionProperties"];
    assert_eq!(backed_up.as_array().map(Vec::len), Some(1), "{backed_up}");
    env.ok("DELETE", &format!("/v1.0/applications/{app}"), None);
    env.ok(
        "DELETE",
        &format!("/v1.0/directory/deletedItems/{app}"),
        None,
    );

    let remap = Arc::new(Remap::default());
    let mut inst = env.restorer(&reader, &remap);
    let selection = vec![sel("application", &app)];
    let actions = plan(&mut inst, selection.clone(), json!({}));
    let link = find_in(
        &actions,
        &format!("application/{app}/extensionProperties/costCenter/link"),
    );
    assert!(
        link.depends_on
            .contains(&format!("application/{app}/recreate")),
        "{:?}",
        link.depends_on
    );
    let note = find_in(
        &actions,
        &format!("application/{app}/manual/extensionProperties"),
    );
    assert!(note.summary.contains("costCenter"), "{}", note.summary);
    apply_all(&mut inst, &actions);
    let new_app = remap.new_id(&app);
    assert_ne!(new_app, app);
    let new_app_id = env.ok("GET", &format!("/v1.0/applications/{new_app}"), None)["appId"]
        .as_str()
        .unwrap()
        .replace('-', "");
    let live = env.all(&format!("/v1.0/applications/{new_app}/extensionProperties"));
    let names: Vec<&str> = live.iter().filter_map(|x| x["name"].as_str()).collect();
    assert_eq!(names, [format!("extension_{new_app_id}_costCenter")]);
    assert_eq!(live[0]["targetObjects"], json!(["User"]));

    let again = plan(&mut inst, selection, json!({}));
    assert_eq!(not_manual(&again), Vec::<String>::new());
    let re = apply_all(&mut env.restorer(&reader, &remap), &actions);
    for a in actions.iter().filter(|a| a.kind != ActionKind::Manual) {
        assert!(re[&a.id].already_done, "{} was applied twice", a.id);
    }
}

/// Tenant policies: an attacker enables SMS for everyone, removes a method's exclusions,
/// disables the registration campaign, lets users consent to apps, turns security defaults
/// off, edits a custom strength and a custom role definition and deletes others. A
/// whole-snapshot plan lists exactly those writes (untouched policies get no action); after
/// apply the tenant's policies equal the snapshot, CA policies still name the strength, and a
/// second plan has nothing to do for them.
#[test]
fn tenant_policies_are_compared_and_written_back() {
    let env = Env::start(93);
    let amp = "/v1.0/policies/authenticationMethodsPolicy";
    let cfg = |id: &str| format!("{amp}/authenticationMethodConfigurations/{id}");
    let authz = "/v1.0/policies/authorizationPolicy";
    let sd = "/v1.0/policies/identitySecurityDefaultsEnforcementPolicy";
    let strengths = "/v1.0/policies/authenticationStrengthPolicies";
    let roles = "/v1.0/roleManagement/directory/roleDefinitions";
    let groups = env.all("/v1.0/groups?$select=id,groupTypes,mailEnabled");
    let admins_group = groups
        .iter()
        .find(|g| is_security_only(g))
        .and_then(|g| g["id"].as_str())
        .unwrap()
        .to_string();

    // The hardened state the backup captures.
    env.ok(
        "PATCH",
        &cfg("Sms"),
        Some(
            json!({"@odata.type": "#microsoft.graph.smsAuthenticationMethodConfiguration", "state": "disabled"}),
        ),
    );
    env.ok(
        "PATCH",
        &cfg("Voice"),
        Some(
            json!({"@odata.type": "#microsoft.graph.voiceAuthenticationMethodConfiguration",
            "excludeTargets": [{"targetType": "group", "id": admins_group}]}),
        ),
    );
    let mut dur = env.ok("GET", authz, None)["defaultUserRolePermissions"].clone();
    dur["permissionGrantPoliciesAssigned"] = json!([]);
    env.ok(
        "PATCH",
        authz,
        Some(json!({"defaultUserRolePermissions": dur})),
    );
    env.ok("PATCH", sd, Some(json!({"isEnabled": true})));
    let spare_strength = env.ok(
        "POST",
        strengths,
        Some(
            json!({"displayName": "Keys and TAP", "description": "Onboarding", "allowedCombinations": ["fido2", "temporaryAccessPassOneTime"]}),
        ),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let spare_role = env.ok(
        "POST",
        roles,
        Some(json!({"displayName": "Helpdesk app readers", "description": "Reads apps", "isEnabled": true,
            "rolePermissions": [{"allowedResourceActions": ["microsoft.directory/applications/standard/read"], "condition": null}]})),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A Conditional Access policy requires the strength that will be deleted with it.
    let ca = env.ok(
        "POST",
        "/v1.0/identity/conditionalAccess/policies",
        Some(json!({"displayName": "Onboarding requires keys", "state": "enabled",
            "conditions": {"users": {"includeUsers": ["All"]}, "applications": {"includeApplications": ["All"]}, "clientAppTypes": ["all"]},
            "grantControls": {"operator": "OR", "authenticationStrength": {"id": spare_strength}}})),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let assignee = env.all("/v1.0/users?$select=id")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let spare_assignment = env.ok(
        "POST",
        "/v1.0/roleManagement/directory/roleAssignments",
        Some(json!({"roleDefinitionId": spare_role, "principalId": assignee, "directoryScopeId": "/"})),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let snap = env.backup();
    let reader = SnapReader::new(&snap);
    let fido_strength = by_name(
        &snap.of_kind("authenticationStrengthPolicy"),
        "Contoso FIDO2 only",
    );
    let custom_role = by_name(
        &snap.of_kind("unifiedRoleDefinition"),
        "Contoso Custom Role 1",
    );
    let single = |kind: &str| snap.of_kind(kind).keys().next().unwrap().clone();
    let (amp_id, authz_id, sd_id) = (
        single("authenticationMethodsPolicy"),
        single("authorizationPolicy"),
        single("identitySecurityDefaultsEnforcementPolicy"),
    );

    // The attack.
    env.ok(
        "PATCH",
        &cfg("Sms"),
        Some(json!({"@odata.type": "#microsoft.graph.smsAuthenticationMethodConfiguration", "state": "enabled",
            "includeTargets": [{"targetType": "group", "id": "all_users", "isRegistrationRequired": false}]})),
    );
    env.ok(
        "PATCH",
        &cfg("Voice"),
        Some(
            json!({"@odata.type": "#microsoft.graph.voiceAuthenticationMethodConfiguration", "excludeTargets": []}),
        ),
    );
    let mut re = env.ok("GET", amp, None)["registrationEnforcement"].clone();
    re["authenticationMethodsRegistrationCampaign"]["state"] = json!("disabled");
    env.ok("PATCH", amp, Some(json!({"registrationEnforcement": re})));
    dur["permissionGrantPoliciesAssigned"] =
        json!(["ManagePermissionGrantsForSelf.microsoft-user-default-legacy"]);
    env.ok(
        "PATCH",
        authz,
        Some(json!({"defaultUserRolePermissions": dur})),
    );
    env.ok("PATCH", sd, Some(json!({"isEnabled": false})));
    env.ok(
        "PATCH",
        &format!("{strengths}/{fido_strength}"),
        Some(json!({"displayName": "Contoso keys or SMS"})),
    );
    env.ok(
        "POST",
        &format!("{strengths}/{fido_strength}/updateAllowedCombinations"),
        Some(json!({"allowedCombinations": ["fido2", "password,sms"]})),
    );
    env.ok(
        "DELETE",
        &format!("/v1.0/identity/conditionalAccess/policies/{ca}"),
        None,
    );
    env.ok(
        "DELETE",
        &format!("/beta/identity/conditionalAccess/deletedItems/policies/{ca}"),
        None,
    );
    env.ok("DELETE", &format!("{strengths}/{spare_strength}"), None);
    let mut perms = snap.of_kind("unifiedRoleDefinition")[&custom_role]["rolePermissions"].clone();
    perms[0]["allowedResourceActions"]
        .as_array_mut()
        .unwrap()
        .push(json!("microsoft.directory/users/password/update"));
    env.ok(
        "PATCH",
        &format!("{roles}/{custom_role}"),
        Some(json!({"rolePermissions": perms})),
    );
    env.ok(
        "DELETE",
        &format!("/v1.0/roleManagement/directory/roleAssignments/{spare_assignment}"),
        None,
    );
    env.ok("DELETE", &format!("{roles}/{spare_role}"), None);

    // A whole-snapshot plan: exactly the attacker's changes.
    let remap = Arc::new(Remap::default());
    let mut inst = env.restorer(&reader, &remap);
    let selection: Vec<Selected> = reader.items.keys().map(|(k, id)| sel(k, id)).collect();
    let actions = plan(&mut inst, selection.clone(), json!({}));
    let got: BTreeSet<String> = actions
        .iter()
        .filter(|a| a.kind != ActionKind::Manual)
        .map(|a| a.id.clone())
        .collect();
    let want: BTreeSet<String> = [
        "authenticationMethodConfiguration/Sms/update".to_string(),
        "authenticationMethodConfiguration/Voice/update".into(),
        format!("authenticationMethodsPolicy/{amp_id}/update"),
        format!("authorizationPolicy/{authz_id}/update"),
        format!("identitySecurityDefaultsEnforcementPolicy/{sd_id}/update"),
        format!("authenticationStrengthPolicy/{fido_strength}/update"),
        format!("authenticationStrengthPolicy/{spare_strength}/recreate"),
        format!("unifiedRoleDefinition/{custom_role}/update"),
        format!("unifiedRoleDefinition/{spare_role}/recreate"),
        format!("unifiedRoleAssignment/{spare_assignment}/link"),
        format!("conditionalAccessPolicy/{ca}/recreate"),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want, "{:#?}", not_manual(&actions));
    let policy_kinds = [
        "authenticationMethodsPolicy",
        "authenticationMethodConfiguration",
        "authenticationStrengthPolicy",
        "authorizationPolicy",
        "identitySecurityDefaultsEnforcementPolicy",
        "organization",
        "unifiedRoleDefinition",
    ];
    let noise: Vec<&Action> = actions
        .iter()
        .filter(|a| a.kind == ActionKind::Manual && policy_kinds.contains(&a.item_kind.as_str()))
        .collect();
    assert!(noise.is_empty(), "manual steps for policies: {noise:#?}");
    let summary = |id: &str| actions[position(&actions, id)].summary.clone();
    assert_eq!(
        summary("authenticationMethodConfiguration/Sms/update"),
        "PATCH authentication method configuration Sms: state"
    );
    assert_eq!(
        summary("authenticationMethodConfiguration/Voice/update"),
        "PATCH authentication method configuration Voice: excludeTargets"
    );
    assert!(summary(&format!("authorizationPolicy/{authz_id}/update"))
        .ends_with(": defaultUserRolePermissions"));
    assert!(summary(&format!(
        "identitySecurityDefaultsEnforcementPolicy/{sd_id}/update"
    ))
    .ends_with(": isEnabled"));
    assert!(summary(&format!(
        "authenticationStrengthPolicy/{fido_strength}/update"
    ))
    .ends_with(": displayName, allowedCombinations"));
    assert!(
        summary(&format!("unifiedRoleDefinition/{spare_role}/recreate"))
            .contains("Helpdesk app readers")
    );

    let outcomes = apply_all(&mut inst, &actions);
    let new_strength = remap.new_id(&spare_strength);
    let new_role = remap.new_id(&spare_role);
    assert_ne!(new_strength, spare_strength);
    assert_ne!(new_role, spare_role);
    assert_eq!(
        outcomes[&format!("authenticationStrengthPolicy/{spare_strength}/recreate")].new_id,
        Some(new_strength.clone())
    );

    // The tenant's policies equal the snapshot again.
    let sms = env.ok("GET", &cfg("Sms"), None);
    assert_eq!(sms["state"], "disabled");
    let voice = env.ok("GET", &cfg("Voice"), None);
    assert_eq!(voice["excludeTargets"][0]["id"], json!(admins_group));
    let live_amp = env.ok("GET", amp, None);
    assert_eq!(
        live_amp["registrationEnforcement"],
        snap.of_kind("authenticationMethodsPolicy")[&amp_id]["registrationEnforcement"]
    );
    assert_eq!(
        env.ok("GET", authz, None)["defaultUserRolePermissions"]["permissionGrantPoliciesAssigned"],
        json!([])
    );
    assert_eq!(env.ok("GET", sd, None)["isEnabled"], true);
    let fido = env.ok("GET", &format!("{strengths}/{fido_strength}"), None);
    assert_eq!(fido["displayName"], "Contoso FIDO2 only");
    assert_eq!(fido["allowedCombinations"], json!(["fido2"]));
    let spare = env.ok("GET", &format!("{strengths}/{new_strength}"), None);
    assert_eq!(spare["displayName"], "Keys and TAP");
    assert_eq!(spare["policyType"], "custom");
    assert_eq!(
        spare["allowedCombinations"],
        json!(["fido2", "temporaryAccessPassOneTime"])
    );
    let role = env.ok("GET", &format!("{roles}/{custom_role}"), None);
    assert_eq!(
        role["rolePermissions"],
        snap.of_kind("unifiedRoleDefinition")[&custom_role]["rolePermissions"]
    );
    let spare = env.ok("GET", &format!("{roles}/{new_role}"), None);
    assert_eq!(spare["displayName"], "Helpdesk app readers");
    assert_eq!(spare["isBuiltIn"], false);
    // The re-created CA policy requires the re-created strength.
    let ca_rec = &actions[position(&actions, &format!("conditionalAccessPolicy/{ca}/recreate"))];
    assert!(ca_rec.depends_on.contains(&format!(
        "authenticationStrengthPolicy/{spare_strength}/recreate"
    )));
    let new_ca = remap.new_id(&ca);
    let live_ca = env.ok(
        "GET",
        &format!("/v1.0/identity/conditionalAccess/policies/{new_ca}"),
        None,
    );
    assert_eq!(
        live_ca["grantControls"]["authenticationStrength"]["id"],
        json!(new_strength)
    );
    // Its assignment follows the role to its new id.
    let assigned = env.all(&format!(
        "/v1.0/roleManagement/directory/roleAssignments?$filter=principalId%20eq%20'{assignee}'"
    ));
    assert!(
        assigned
            .iter()
            .any(|a| a["roleDefinitionId"] == json!(new_role)),
        "{assigned:#?}"
    );

    // Nothing left to do; re-applying finds every write done.
    let again = plan(&mut inst, selection, json!({}));
    assert!(not_manual(&again).is_empty(), "{:#?}", not_manual(&again));
    for a in actions.iter().filter(|a| a.kind != ActionKind::Manual) {
        let o = inst.restore_apply(a).unwrap().unwrap();
        assert!(o.already_done, "{} was not already done", a.id);
    }
}

/// Tenant policies restored into another (empty) tenant: the policies are written there, a
/// method's group target follows the re-created group, a target group left out of the restore
/// is dropped with a manual step naming it, the custom strength is re-created.
#[test]
fn tenant_policies_cross_tenant() {
    let env = Env::start(95);
    let amp = "/v1.0/policies/authenticationMethodsPolicy";
    let cfg = |id: &str| format!("{amp}/authenticationMethodConfigurations/{id}");
    let groups: Vec<String> = env
        .all("/v1.0/groups?$select=id,groupTypes,mailEnabled")
        .iter()
        .filter(|g| is_security_only(g))
        .map(|g| g["id"].as_str().unwrap().to_string())
        .take(2)
        .collect();
    let (kept, left_out) = (groups[0].clone(), groups[1].clone());
    env.ok(
        "PATCH",
        &cfg("Voice"),
        Some(
            json!({"@odata.type": "#microsoft.graph.voiceAuthenticationMethodConfiguration",
            "excludeTargets": [{"targetType": "group", "id": kept}]}),
        ),
    );
    env.ok(
        "PATCH",
        &cfg("Sms"),
        Some(
            json!({"@odata.type": "#microsoft.graph.smsAuthenticationMethodConfiguration",
            "state": "disabled", "excludeTargets": [{"targetType": "group", "id": left_out}]}),
        ),
    );
    let snap = env.backup();
    let reader = SnapReader::new(&snap);
    let strength = by_name(
        &snap.of_kind("authenticationStrengthPolicy"),
        "Contoso FIDO2 only",
    );
    let single = |kind: &str| snap.of_kind(kind).keys().next().unwrap().clone();
    let sd_id = single("identitySecurityDefaultsEnforcementPolicy");
    let authz_id = single("authorizationPolicy");

    let mut tcfg = SimConfig::new(Profile::Empty, 6);
    tcfg.domain = "fabrikam.onmicrosoft.com".into();
    let target = env.rt.block_on(Simulator::start(tcfg)).unwrap();
    let remap = Arc::new(Remap::default());
    let gw = gateway(
        env.rt.handle().clone(),
        &target,
        target.client_id(),
        target.client_secret(),
    );
    let plugin = env
        .wasm
        .load_file(std::path::Path::new(cairn_entra_tests::ENTRA))
        .unwrap();
    let mut inst = plugin
        .instantiate_default(cairn_runtime::Capabilities {
            graph: Some(gw.for_task("entra-restore")),
            snapshot: Some(reader.clone()),
            remap: Some(remap.clone()),
            ..Default::default()
        })
        .unwrap();
    inst.configure("{}").unwrap().unwrap();
    let selection = vec![
        sel("group", &kept),
        sel("authenticationMethodConfiguration", "Voice"),
        sel("authenticationMethodConfiguration", "Sms"),
        sel("authorizationPolicy", &authz_id),
        sel("identitySecurityDefaultsEnforcementPolicy", &sd_id),
        sel("authenticationStrengthPolicy", &strength),
    ];
    let options = json!({"crossTenant": true});
    let actions = plan(&mut inst, selection.clone(), options.clone());
    let voice = &actions[position(&actions, "authenticationMethodConfiguration/Voice/update")];
    assert!(voice.depends_on.contains(&format!("group/{kept}/recreate")));
    position(&actions, "authenticationMethodConfiguration/Sms/update");
    let note = &actions[position(
        &actions,
        "authenticationMethodConfiguration/Sms/manual/targets",
    )];
    assert!(note.summary.contains(&left_out), "{}", note.summary);
    // The empty tenant has security defaults on; the snapshot's tenant had them off.
    position(
        &actions,
        &format!("identitySecurityDefaultsEnforcementPolicy/{sd_id}/update"),
    );
    position(
        &actions,
        &format!("authenticationStrengthPolicy/{strength}/recreate"),
    );

    apply_all(&mut inst, &actions);
    let mut c = Client::new(&target.base_url()).with_token(target.access_token());
    let mut get = |path: &str| env.rt.block_on(c.get(path)).json();
    let v = get(&cfg("Voice"));
    assert_eq!(v["excludeTargets"][0]["id"], json!(remap.new_id(&kept)));
    assert_ne!(remap.new_id(&kept), kept);
    let s = get(&cfg("Sms"));
    assert_eq!(s["state"], "disabled");
    assert_eq!(s["excludeTargets"], json!([]));
    assert_eq!(
        get("/v1.0/policies/identitySecurityDefaultsEnforcementPolicy")["isEnabled"],
        false
    );
    let st = get(&format!(
        "/v1.0/policies/authenticationStrengthPolicies/{}",
        remap.new_id(&strength)
    ));
    assert_eq!(st["displayName"], "Contoso FIDO2 only");
    let again = plan(&mut inst, selection, options);
    assert!(not_manual(&again).is_empty(), "{:#?}", not_manual(&again));
}

/// Authentication contexts: one renamed and unpublished, one deleted → exactly an update and a
/// re-creation (PATCH upsert on the same id); the tenant's contexts equal the snapshot again and
/// a re-plan is empty. Then a context deleted with the Conditional Access policy that requires it
/// comes back before the policy, which depends on it.
#[test]
fn authentication_contexts_are_compared_and_written_back() {
    let env = Env::start(95);
    let acr = "/v1.0/identity/conditionalAccess/authenticationContextClassReferences";
    let cas = "/v1.0/identity/conditionalAccess/policies";
    let step_up = env.ok(
        "POST",
        cas,
        Some(json!({"displayName": "Finance step-up", "state": "enabled",
            "conditions": {"users": {"includeUsers": ["All"]},
                "applications": {"includeAuthenticationContextClassReferences": ["c3"]},
                "clientAppTypes": ["all"]},
            "grantControls": {"operator": "OR", "builtInControls": ["mfa"]}})),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    env.ok(
        "PATCH",
        &format!("{acr}/c3"),
        Some(json!({"isAvailable": true})),
    );
    let snap = env.backup();
    let backed_up = snap.of_kind("authenticationContextClassReference");
    assert_eq!(
        backed_up.keys().cloned().collect::<Vec<_>>(),
        ["c1", "c2", "c3"]
    );
    let reader = SnapReader::new(&snap);
    let selection: Vec<Selected> = reader.items.keys().map(|(k, id)| sel(k, id)).collect();
    let live_equals_snapshot = || {
        let live: BTreeMap<String, Value> = env
            .all(acr)
            .into_iter()
            .map(|c| (c["id"].as_str().unwrap().to_string(), c))
            .collect();
        assert_eq!(
            live.keys().collect::<Vec<_>>(),
            backed_up.keys().collect::<Vec<_>>()
        );
        for (id, want) in &backed_up {
            for p in ["displayName", "description", "isAvailable"] {
                assert_eq!(live[id][p], want[p], "{id}.{p}");
            }
        }
    };

    // The attack: c1 renamed and unpublished (weakens the step-up of the apps requiring it), c2
    // deleted.
    env.ok(
        "PATCH",
        &format!("{acr}/c1"),
        Some(json!({"displayName": "Unused", "isAvailable": false})),
    );
    env.ok("DELETE", &format!("{acr}/c2"), None);

    let remap = Arc::new(Remap::default());
    let mut inst = env.restorer(&reader, &remap);
    let actions = plan(&mut inst, selection.clone(), json!({}));
    let got: BTreeSet<String> = actions
        .iter()
        .filter(|a| {
            a.kind != ActionKind::Manual || a.item_kind == "authenticationContextClassReference"
        })
        .map(|a| a.id.clone())
        .collect();
    let want: BTreeSet<String> = [
        "authenticationContextClassReference/c1/update",
        "authenticationContextClassReference/c2/recreate",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    assert_eq!(got, want, "{:#?}", not_manual(&actions));
    assert_eq!(
        actions[position(&actions, "authenticationContextClassReference/c1/update")].summary,
        "PATCH authentication context Require trusted location: displayName, isAvailable"
    );
    let outcomes = apply_all(&mut inst, &actions);
    assert_eq!(
        outcomes["authenticationContextClassReference/c2/recreate"].new_id,
        Some("c2".to_string())
    );
    live_equals_snapshot();
    let again = plan(&mut inst, selection.clone(), json!({}));
    assert!(not_manual(&again).is_empty(), "{:#?}", not_manual(&again));
    for a in actions.iter().filter(|a| a.kind != ActionKind::Manual) {
        let o = inst.restore_apply(a).unwrap().unwrap();
        assert!(o.already_done, "{} was not already done", a.id);
    }

    // The policy requiring c3 deleted for good, then c3 itself: c3 comes back first.
    env.ok("DELETE", &format!("{cas}/{step_up}"), None);
    env.ok(
        "DELETE",
        &format!("/beta/identity/conditionalAccess/deletedItems/policies/{step_up}"),
        None,
    );
    env.ok("DELETE", &format!("{acr}/c3"), None);
    let actions = plan(&mut inst, selection.clone(), json!({}));
    let got: BTreeSet<String> = actions
        .iter()
        .filter(|a| a.kind != ActionKind::Manual)
        .map(|a| a.id.clone())
        .collect();
    let ctx = "authenticationContextClassReference/c3/recreate".to_string();
    let ca = format!("conditionalAccessPolicy/{step_up}/recreate");
    assert_eq!(
        got,
        [ctx.clone(), ca.clone()].into_iter().collect(),
        "{:#?}",
        not_manual(&actions)
    );
    assert!(position(&actions, &ctx) < position(&actions, &ca));
    assert!(actions[position(&actions, &ca)].depends_on.contains(&ctx));
    apply_all(&mut inst, &actions);
    live_equals_snapshot();
    let new_ca = remap.new_id(&step_up);
    let live_ca = env.ok("GET", &format!("{cas}/{new_ca}"), None);
    assert_eq!(
        live_ca["conditions"]["applications"]["includeAuthenticationContextClassReferences"],
        json!(["c3"])
    );
    let again = plan(&mut inst, selection, json!({}));
    assert!(not_manual(&again).is_empty(), "{:#?}", not_manual(&again));
}

/// PIM role eligibilities: an eligible administrator deleted for good (which takes their
/// eligibilities) and one eligibility removed from a surviving user → the plan re-creates the
/// user and writes back exactly those eligibilities (`adminAssign`, after the user exists, with
/// the backed-up period); the tenant's eligibilities equal the snapshot again, a re-plan is
/// empty and a re-apply finds everything done. An eligibility that expired since the backup is
/// a note, not a request; one added since the backup is left alone.
#[test]
fn pim_role_eligibilities_are_restored() {
    const KIND: &str = "unifiedRoleEligibilitySchedule";
    let env = Env::start(97);
    let schedules = "/v1.0/roleManagement/directory/roleEligibilitySchedules";
    let requests = "/v1.0/roleManagement/directory/roleEligibilityScheduleRequests";
    let global_admin = "62e90394-69f5-4237-9190-012177145e10";
    let user_admin = "fe930be7-5e62-47db-91af-98c3a49a38b1";
    // One more eligibility that ends a few seconds after the backup.
    let live0 = env.all(schedules);
    let taken: BTreeSet<String> = live0
        .iter()
        .map(|e| e["principalId"].as_str().unwrap().to_string())
        .collect();
    let short_lived = env
        .all("/v1.0/users?$select=id,userType&$top=999")
        .into_iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .find(|u| !taken.contains(u))
        .unwrap();
    let ends = cairn_graph_sim::util::iso(env.sim.now() + 3);
    env.ok(
        "POST",
        requests,
        Some(json!({"action": "adminAssign", "principalId": short_lived,
            "roleDefinitionId": user_admin, "directoryScopeId": "/", "justification": "temporary",
            "scheduleInfo": {"expiration": {"type": "afterDateTime", "endDateTime": ends}}})),
    );
    let snap = env.backup();
    let backed_up = snap.of_kind(KIND);
    assert_eq!(backed_up.len(), 5, "{backed_up:#?}");
    let reader = SnapReader::new(&snap);
    let selection: Vec<Selected> = reader.items.keys().map(|(k, id)| sel(k, id)).collect();

    // The victim: eligible for Global Administrator at the tenant scope. The survivor: another
    // user, whose eligibility scoped to an administrative unit is removed.
    let of = |pid: &str| -> BTreeSet<String> {
        backed_up
            .iter()
            .filter(|(_, e)| e["principalId"] == pid)
            .map(|(id, _)| id.clone())
            .collect()
    };
    let victim = backed_up
        .values()
        .find(|e| e["roleDefinitionId"] == global_admin && e["directoryScopeId"] == "/")
        .unwrap()["principalId"]
        .as_str()
        .unwrap()
        .to_string();
    let (survivor_elig, survivor) = backed_up
        .iter()
        .find(|(_, e)| {
            e["directoryScopeId"]
                .as_str()
                .unwrap()
                .starts_with("/administrativeUnits/")
                && e["principalId"] != victim.as_str()
        })
        .map(|(id, e)| (id.clone(), e.clone()))
        .unwrap();
    let short_elig = of(&short_lived).into_iter().next().unwrap();
    let victim_eligs = of(&victim);
    assert!(!victim_eligs.is_empty());

    // The attack: the victim hard-deleted, the survivor's unit-scoped eligibility removed, the
    // short-lived one removed too (it expires before the restore), and a new eligibility added.
    env.ok("DELETE", &format!("/v1.0/users/{victim}"), None);
    env.ok(
        "DELETE",
        &format!("/v1.0/directory/deletedItems/{victim}"),
        None,
    );
    for e in [&survivor, &backed_up[&short_elig]] {
        env.ok(
            "POST",
            requests,
            Some(json!({"action": "adminRemove", "principalId": e["principalId"],
                "roleDefinitionId": e["roleDefinitionId"], "directoryScopeId": e["directoryScopeId"]})),
        );
    }
    let added = env.ok(
        "POST",
        requests,
        Some(json!({"action": "adminAssign", "principalId": survivor["principalId"],
            "roleDefinitionId": global_admin, "directoryScopeId": "/", "justification": "attacker"})),
    )["targetScheduleId"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(env
        .all(schedules)
        .iter()
        .all(|e| e["principalId"] != victim.as_str()));
    // Past the short-lived eligibility's end.
    while env.sim.now() <= cairn_graph_sim::util::parse_iso(&ends).unwrap() {
        std::thread::sleep(std::time::Duration::from_millis(250));
    }

    let remap = Arc::new(Remap::default());
    let mut inst = env.restorer(&reader, &remap);
    let actions = plan(&mut inst, selection.clone(), json!({}));
    let recreate = format!("user/{victim}/recreate");
    assert_eq!(
        ids(&actions, ActionKind::Recreate),
        [recreate.clone()].into_iter().collect(),
        "{:#?}",
        not_manual(&actions)
    );
    assert!(ids(&actions, ActionKind::Undelete).is_empty());
    // Updates only of Conditional Access policies that named the victim (the hard delete took
    // the user out of them).
    for a in actions.iter().filter(|a| a.kind == ActionKind::Update) {
        assert_eq!(a.item_kind, "conditionalAccessPolicy", "{}", a.id);
        let body = &reader.items[&(a.item_kind.clone(), a.item_id.clone())];
        assert!(body.to_string().contains(&victim), "{}", a.id);
    }
    assert!(ids(&actions, ActionKind::Unlink).is_empty());
    let pim_links: BTreeSet<String> = actions
        .iter()
        .filter(|a| a.item_kind == KIND && a.kind == ActionKind::Link)
        .map(|a| a.id.clone())
        .collect();
    let want: BTreeSet<String> = victim_eligs
        .iter()
        .chain([&survivor_elig])
        .map(|id| format!("{KIND}/{id}/link"))
        .collect();
    assert_eq!(pim_links, want, "{:#?}", not_manual(&actions));
    for id in &victim_eligs {
        let a = &actions[position(&actions, &format!("{KIND}/{id}/link"))];
        assert!(a.depends_on.contains(&recreate), "{a:?}");
        assert!(position(&actions, &recreate) < position(&actions, &a.id));
    }
    let s = &actions[position(&actions, &format!("{KIND}/{survivor_elig}/link"))];
    assert!(
        s.summary.contains("User Administrator") && s.summary.contains("/administrativeUnits/"),
        "{}",
        s.summary
    );
    // The expired one is a note; the added one is not touched.
    let note = &actions[position(&actions, &format!("{KIND}/{short_elig}/expired"))];
    assert_eq!(note.kind, ActionKind::Manual);
    assert!(note.summary.contains(&ends), "{}", note.summary);
    assert!(actions.iter().all(|a| !a.id.contains(&added)));

    let outcomes = apply_all(&mut inst, &actions);
    let new_victim = remap.new_id(&victim);
    assert_ne!(new_victim, victim);
    for id in victim_eligs.iter().chain([&survivor_elig]) {
        let o = &outcomes[&format!("{KIND}/{id}/link")];
        assert!(!o.already_done);
        assert_eq!(o.new_id.as_deref(), Some(remap.new_id(id).as_str()));
    }

    // Live equals the snapshot (through remap), but for the expired one and the added one.
    let live = env.all(schedules);
    let key = |e: &Value| {
        (
            e["principalId"].as_str().unwrap().to_string(),
            e["roleDefinitionId"].as_str().unwrap().to_string(),
            e["directoryScopeId"].as_str().unwrap().to_string(),
        )
    };
    let live_keys: BTreeMap<_, &Value> = live
        .iter()
        .filter(|e| e["id"] != added.as_str())
        .map(|e| (key(e), e))
        .collect();
    assert_eq!(live_keys.len(), backed_up.len() - 1);
    for (id, e) in backed_up.iter().filter(|(id, _)| **id != short_elig) {
        let mut k = key(e);
        k.0 = remap.new_id(&k.0);
        let l = live_keys
            .get(&k)
            .unwrap_or_else(|| panic!("eligibility {id} {k:?} is not live"));
        assert_eq!(
            l["scheduleInfo"]["expiration"], e["scheduleInfo"]["expiration"],
            "{id}"
        );
        assert_eq!(
            l["scheduleInfo"]["startDateTime"], e["scheduleInfo"]["startDateTime"],
            "{id}"
        );
    }
    assert!(live.iter().any(|e| e["id"] == added.as_str()));
    let restored = env
        .get(&format!("{schedules}/{}", remap.new_id(&survivor_elig)))
        .unwrap();
    assert_eq!(restored["createdUsing"], restored["id"]);

    let again = plan(&mut inst, selection, json!({}));
    assert!(not_manual(&again).is_empty(), "{:#?}", not_manual(&again));
    for a in actions.iter().filter(|a| a.kind != ActionKind::Manual) {
        let o = inst.restore_apply(a).unwrap().unwrap();
        assert!(o.already_done, "{} was not already done", a.id);
    }
}

/// A create whose answer is lost (the simulator's `dropAnswer`: Graph made the object, the
/// connection dropped before the answer) fails its action without a mapping; the rerun finds
/// the object by its natural key (a role definition's and a strength's display name, the
/// application's `cairn-restore:<old id>` tag, a group's mailNickname, a CA policy's, a named
/// location's and a unit's display name, a user's userPrincipalName) instead of creating a
/// second one, and maps the old id to it. Every other action of the plan loses the answer of
/// its first POST as well, and its rerun finds the work done.
#[test]
fn a_lost_create_answer_is_found_again_not_duplicated() {
    use cairn_graph_sim::{FaultKind, FaultRule};
    let env = Env::start(131);
    let strengths = "/v1.0/policies/authenticationStrengthPolicies";
    let roles = "/v1.0/roleManagement/directory/roleDefinitions";
    let cap = "/v1.0/identity/conditionalAccess/policies";
    let strength = env.ok(
        "POST",
        strengths,
        Some(
            json!({"displayName": "Lost answer keys", "description": "x",
            "allowedCombinations": ["fido2"]}),
        ),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let role = env.ok(
        "POST",
        roles,
        Some(json!({"displayName": "Lost answer readers", "description": "x", "isEnabled": true,
            "rolePermissions": [{"allowedResourceActions": ["microsoft.directory/applications/standard/read"], "condition": null}]})),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let locations = "/v1.0/identity/conditionalAccess/namedLocations";
    let location = env.ok(
        "POST",
        locations,
        Some(json!({"@odata.type": "#microsoft.graph.ipNamedLocation",
            "displayName": "Lost answer office", "isTrusted": false,
            "ipRanges": [{"@odata.type": "#microsoft.graph.iPv4CidrRange", "cidrAddress": "198.51.100.0/24"}]})),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let assignee = env.all("/v1.0/users?$select=id")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let assignment = env.ok(
        "POST",
        "/v1.0/roleManagement/directory/roleAssignments",
        Some(json!({"roleDefinitionId": role, "principalId": assignee, "directoryScopeId": "/"})),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let snap = env.backup();
    let reader = SnapReader::new(&snap);
    // A delegated grant and an app role assignment to a user, deleted and restored too.
    let (grant, _) = snap
        .of_kind("oauth2PermissionGrant")
        .into_iter()
        .next()
        .unwrap();
    let (ara, ara_body) = snap
        .of_kind("appRoleAssignment")
        .into_iter()
        .find(|(_, a)| a["principalType"] == "User")
        .unwrap();
    let users = snap.of_kind("user");
    let (user, user_body) = users
        .iter()
        .find(|(id, u)| {
            **id != assignee
                && u["onPremisesSyncEnabled"] != json!(true)
                && !u["userPrincipalName"]
                    .as_str()
                    .unwrap()
                    .starts_with("admin@")
        })
        .map(|(id, u)| (id.clone(), (*u).clone()))
        .unwrap();
    let units = snap.of_kind("administrativeUnit");
    let (unit, unit_body) = units
        .iter()
        .next()
        .map(|(id, u)| (id.clone(), (*u).clone()))
        .unwrap();
    let groups = snap.of_kind("group");
    let (group, group_body) = groups
        .iter()
        .find(|(_, g)| is_security_only(g) && g["mailNickname"].is_string())
        .map(|(id, g)| (id.clone(), (*g).clone()))
        .unwrap();
    let apps = snap.of_kind("application");
    // An app with relationships to write back (owners, federated credentials).
    let rels = |a: &Value| {
        ["owners", "federatedIdentityCredentials"]
            .iter()
            .filter(|k| a[**k].as_array().is_some_and(|l| !l.is_empty()))
            .count()
    };
    let (app, app_body) = apps
        .iter()
        .max_by_key(|(_, a)| rels(a))
        .map(|(id, a)| (id.clone(), (*a).clone()))
        .unwrap();
    let cas = snap.of_kind("conditionalAccessPolicy");
    let (ca, ca_body) = cas
        .iter()
        .next()
        .map(|(id, c)| (id.clone(), (*c).clone()))
        .unwrap();

    // Everything deleted for good (no recycle bin to undelete from).
    for (path, id) in [
        ("/v1.0/users", &user),
        ("/v1.0/directory/administrativeUnits", &unit),
    ] {
        env.ok("DELETE", &format!("{path}/{id}"), None);
        env.ok(
            "DELETE",
            &format!("/v1.0/directory/deletedItems/{id}"),
            None,
        );
    }
    env.ok("DELETE", &format!("{locations}/{location}"), None);
    let _ = env.call(
        "DELETE",
        &format!("/beta/identity/conditionalAccess/deletedItems/namedLocations/{location}"),
        None,
    );
    env.ok(
        "DELETE",
        &format!("/v1.0/oauth2PermissionGrants/{grant}"),
        None,
    );
    env.ok(
        "DELETE",
        &format!(
            "/v1.0/servicePrincipals/{}/appRoleAssignedTo/{}",
            ara_body["resourceId"].as_str().unwrap(),
            ara_body["id"].as_str().unwrap()
        ),
        None,
    );
    env.ok(
        "DELETE",
        &format!("/v1.0/roleManagement/directory/roleAssignments/{assignment}"),
        None,
    );
    env.ok("DELETE", &format!("{strengths}/{strength}"), None);
    env.ok("DELETE", &format!("{roles}/{role}"), None);
    env.ok("DELETE", &format!("/v1.0/groups/{group}"), None);
    let _ = env.call(
        "DELETE",
        &format!("/v1.0/directory/deletedItems/{group}"),
        None,
    );
    env.ok("DELETE", &format!("/v1.0/applications/{app}"), None);
    env.ok(
        "DELETE",
        &format!("/v1.0/directory/deletedItems/{app}"),
        None,
    );
    env.ok("DELETE", &format!("{cap}/{ca}"), None);
    env.ok(
        "DELETE",
        &format!("/beta/identity/conditionalAccess/deletedItems/policies/{ca}"),
        None,
    );

    let name = |v: &Value| v["displayName"].as_str().unwrap().to_string();
    let app_name = name(&app_body);
    let same_name = |b: &Value| {
        apps.values()
            .filter(|a| a["displayName"] == b["displayName"])
            .count()
    };
    // (kind, old id, create path, how many live objects are the one re-created)
    type Count<'a> = Box<dyn Fn() -> usize + 'a>;
    let named = |path: &'static str, n: String| -> Count {
        let env = &env;
        Box::new(move || {
            env.all(path)
                .iter()
                .filter(|o| o["displayName"] == json!(n))
                .count()
        })
    };
    let nick = group_body["mailNickname"].as_str().unwrap().to_string();
    let app_others = same_name(&app_body) - 1;
    let unit_name = name(&unit_body);
    let unit_others = units
        .values()
        .filter(|u| u["displayName"] == json!(unit_name))
        .count()
        - 1;
    let upn = user_body["userPrincipalName"].as_str().unwrap().to_string();
    let cases: Vec<(&str, String, &str, Count)> = vec![
        (
            "authenticationStrengthPolicy",
            strength.clone(),
            strengths,
            named(strengths, "Lost answer keys".into()),
        ),
        (
            "unifiedRoleDefinition",
            role.clone(),
            roles,
            named(roles, "Lost answer readers".into()),
        ),
        (
            "group",
            group.clone(),
            "/v1.0/groups",
            Box::new(|| {
                env.all(&format!(
                    "/v1.0/groups?$filter=mailNickname%20eq%20'{nick}'&$select=id"
                ))
                .len()
            }),
        ),
        (
            "application",
            app.clone(),
            "/v1.0/applications",
            Box::new(|| {
                env.all("/v1.0/applications?$select=id,displayName")
                    .iter()
                    .filter(|a| a["displayName"] == json!(app_name))
                    .count()
                    - app_others
            }),
        ),
        (
            "conditionalAccessPolicy",
            ca.clone(),
            cap,
            named(cap, name(&ca_body)),
        ),
        (
            "namedLocation",
            location.clone(),
            locations,
            named(locations, "Lost answer office".into()),
        ),
        (
            "user",
            user.clone(),
            "/v1.0/users",
            Box::new(|| {
                usize::from(
                    env.get(&format!(
                        "/v1.0/users/{}?$select=id",
                        upn.replace('#', "%23")
                    ))
                    .is_some(),
                )
            }),
        ),
        (
            "administrativeUnit",
            unit.clone(),
            "/v1.0/directory/administrativeUnits",
            Box::new(|| {
                env.all("/v1.0/directory/administrativeUnits?$select=id,displayName")
                    .iter()
                    .filter(|u| u["displayName"] == json!(unit_name))
                    .count()
                    - unit_others
            }),
        ),
    ];
    for (_, _, _, count) in &cases {
        assert_eq!(count(), 0);
    }

    let remap = Arc::new(Remap::default());
    let mut inst = env.restorer(&reader, &remap);
    let mut selection: Vec<Selected> = cases.iter().map(|(k, id, _, _)| sel(k, id)).collect();
    selection.extend([
        sel("unifiedRoleAssignment", &assignment),
        sel("oauth2PermissionGrant", &grant),
        sel("appRoleAssignment", &ara),
    ]);
    let actions = plan(&mut inst, selection.clone(), json!({}));
    // The other actions (memberships, owners, federated credentials, the service principal …):
    // the answer of each one's first POST is lost too; the rerun must find its work done.
    let mut others_lost = Vec::new();
    for a in &actions {
        let case = cases
            .iter()
            .find(|(k, id, _, _)| a.id == format!("{k}/{id}/recreate"));
        let Some((kind, old, path, count)) = case else {
            if a.kind != ActionKind::Manual {
                env.sim.add_fault(
                    FaultRule::new("/v1.0/*", FaultKind::DropAnswer)
                        .method("POST")
                        .times(1),
                );
                let first = inst.restore_apply(a).unwrap();
                env.sim.clear_faults();
                if first.is_err() {
                    others_lost.push(a.id.clone());
                    inst.restore_apply(a)
                        .unwrap()
                        .unwrap_or_else(|e| panic!("rerun {}: {e:?}", a.id));
                }
            }
            continue;
        };
        env.sim.add_fault(
            FaultRule::new(path, FaultKind::DropAnswer)
                .method("POST")
                .times(1),
        );
        let lost = inst.restore_apply(a).unwrap();
        env.sim.clear_faults();
        assert!(
            lost.is_err(),
            "{}: the lost answer fails it: {lost:?}",
            a.id
        );
        assert_eq!(count(), 1, "{kind}: Graph made it");
        assert_eq!(remap.lookup(old), None, "{kind}: nothing was recorded");
        let o = inst
            .restore_apply(a)
            .unwrap()
            .unwrap_or_else(|e| panic!("rerun {}: {e:?}", a.id));
        assert_eq!(count(), 1, "{kind}: the rerun created no second one");
        let new = o.new_id.clone().expect("the rerun names the object");
        assert_eq!(remap.new_id(old), new, "{kind}: remap points at it");
        assert!(
            o.notes.iter().any(|n| n.starts_with("found")),
            "{kind}: {:?}",
            o.notes
        );
        if *kind == "application" {
            let live = env.ok(
                "GET",
                &format!("/v1.0/applications/{new}?$select=tags"),
                None,
            );
            assert!(live["tags"]
                .as_array()
                .unwrap()
                .contains(&json!(format!("cairn-restore:{app}"))));
        }
    }
    for what in [
        "groupMember/",
        "/owners/",
        "federatedIdentityCredentials",
        &format!("unifiedRoleAssignment/{assignment}/"),
        &format!("oauth2PermissionGrant/{grant}/"),
        &format!("appRoleAssignment/{ara}/"),
    ] {
        assert!(
            others_lost.iter().any(|a| a.contains(what)),
            "a write of {what} lost its answer too: {others_lost:#?}"
        );
    }
    // Each relationship exactly once.
    let live_assignments = env.all(&format!(
        "/v1.0/roleManagement/directory/roleAssignments?$filter=principalId%20eq%20'{assignee}'"
    ));
    assert_eq!(
        live_assignments
            .iter()
            .filter(|a| a["roleDefinitionId"] == json!(remap.new_id(&role)))
            .count(),
        1
    );
    // Verify: a second plan has nothing but manual steps (the marker is no difference).
    let again = plan(&mut inst, selection, json!({}));
    assert!(not_manual(&again).is_empty(), "{:#?}", not_manual(&again));
}
