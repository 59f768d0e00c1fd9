//! The m365-mail plugin against the Graph simulator's `small` tenant, through the runtime and
//! the real gateway: a full backup equals the mailboxes, a mailbox round trip (delete a folder
//! and messages, restore, MIME bytes and folder tree equal), restore into another mailbox and
//! a `Restored …` folder with a damaged stored MIME, incremental runs after churn (only changed
//! folders' changes are downloaded) with an expired message delta token, bad input recorded as
//! `messageError` items, scope from groups and users, and a 429 storm with one failing mailbox
//! through the engine (the run is partial, the other mailboxes complete).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cairn_gateway::{Gateway, GatewayConfig, RetryPolicy};
use cairn_graph_sim::util::pct_encode;
use cairn_graph_sim::{mail, FaultKind, FaultRule, Profile, SimConfig};
use cairn_m365_tests::*;
use cairn_runtime::types::{ActionKind, Listing, RestoreRequest, Selected};
use cairn_runtime::{Capabilities, PluginInstance, RemapTable};
use serde_json::{json, Value};

sim_env! {
    /// The shared simulator environment, with this file's helpers.
    Env
}

impl Env {
    fn start_with(cfg: SimConfig) -> Env {
        Env(SimEnv::start(cfg))
    }

    fn start(seed: u64) -> Env {
        Env(SimEnv::small(seed))
    }

    fn connect(&self) -> (Arc<Gateway>, Arc<Recorder>) {
        let gw = self.gateway();
        let rec = Recorder::new(gw.for_task("mail"));
        (gw, rec)
    }

    /// Users with generated mailboxes (messages), first `n`.
    fn mailboxes(&self, n: usize) -> Vec<String> {
        self.sim
            .with_tenant(|t| t.mail.boxes.keys().take(n).cloned().collect())
    }

    /// The `n` mailboxes with the most messages.
    fn busiest(&self, n: usize) -> Vec<String> {
        self.sim.with_tenant(|t| {
            let mut b: Vec<(usize, String)> = t
                .mail
                .boxes
                .iter()
                .map(|(u, b)| (b.messages.len(), u.clone()))
                .collect();
            b.sort_by(|a, b| b.cmp(a));
            b.into_iter().take(n).map(|(_, u)| u).collect()
        })
    }

    /// The `$value` of a live message.
    fn mime(&self, user: &str, id: &str) -> Vec<u8> {
        let mut c = self.client();
        let r = self
            .rt
            .block_on(c.send(
                "GET",
                &format!("/v1.0/users/{user}/messages/{}/$value", pct_encode(id)),
                &[],
                &[],
            ))
            .unwrap();
        assert_eq!(r.status, 200);
        r.body
    }

    /// Live folders of a mailbox: id → (displayName, parent id, hidden).
    fn live_folders(&self, user: &str) -> BTreeMap<String, Value> {
        let v = self.ok(
            "GET",
            &format!("/v1.0/users/{user}/mailFolders/delta"),
            None,
        );
        v["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["id"].as_str().unwrap().to_string(), f.clone()))
            .collect()
    }

    /// Live messages of a mailbox (all folders), with `internetMessageId`.
    fn live_messages(&self, user: &str) -> Vec<Value> {
        let mut out = vec![];
        let mut url = format!(
            "/v1.0/users/{user}/messages?$select=id,internetMessageId,parentFolderId,isRead,isDraft,subject&$top=999"
        );
        loop {
            let v = self.ok("GET", &url, None);
            out.extend(v["value"].as_array().unwrap().iter().cloned());
            match v["@odata.nextLink"].as_str() {
                Some(n) => url = n.trim_start_matches(&self.sim.base_url()).to_string(),
                None => return out,
            }
        }
    }
}

/// Path of display names from the root, over a folder map (id → folder JSON).
fn path(folders: &BTreeMap<String, Value>, id: &str) -> Vec<String> {
    let mut p = vec![];
    let mut cur = folders.get(id);
    while let Some(f) = cur {
        p.push(f["displayName"].as_str().unwrap().to_string());
        cur = folders.get(f["parentFolderId"].as_str().unwrap_or(""));
    }
    p.reverse();
    p
}

fn of_mailbox(snap: &Snapshot, kind: &str, user: &str) -> BTreeMap<String, Stored> {
    snap.of_kind(kind)
        .into_iter()
        .filter(|(_, s)| s.body["mailbox"] == user)
        .collect()
}

fn folder_bodies(snap: &Snapshot, user: &str) -> BTreeMap<String, Value> {
    of_mailbox(snap, "mailFolder", user)
        .into_iter()
        .map(|(id, s)| (id, s.body))
        .collect()
}

/// The id of the folder named `name` among a mailbox's folder bodies.
fn folder_id(folders: &BTreeMap<String, Value>, name: &str) -> String {
    folders
        .values()
        .find(|f| f["displayName"] == name)
        .unwrap_or_else(|| panic!("no folder {name}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn restorer(
    env: &Env,
    gw: &Arc<Gateway>,
    content: &Arc<MemContent>,
    snap: &Snapshot,
    remap: &Arc<MemRemap>,
) -> PluginInstance {
    instance_with(
        &env.wasm,
        MAIL,
        Capabilities {
            graph: Some(gw.for_task("restore")),
            content: Some(content.clone()),
            snapshot: Some(Arc::new(SnapshotView(snap.clone()))),
            remap: Some(remap.clone()),
            ..Default::default()
        },
        &json!({}),
    )
}

fn request(selection: &[(&str, &str)], options: Value) -> RestoreRequest {
    RestoreRequest {
        selection: selection
            .iter()
            .map(|(k, id)| Selected {
                kind: k.to_string(),
                id: id.to_string(),
                attributes: vec![],
            })
            .collect(),
        options: options.to_string(),
    }
}

/// Asserts that the snapshot's mail of `user` equals the live mailbox: folders (ids, names,
/// parents, hidden) and messages (ids, metadata, MIME bytes).
fn assert_snapshot_is_live(env: &Env, snap: &Snapshot, content: &MemContent, user: &str) {
    let live = env.live_folders(user);
    let ours = folder_bodies(snap, user);
    assert_eq!(
        ours.keys().collect::<BTreeSet<_>>(),
        live.keys().collect::<BTreeSet<_>>(),
        "folders of {user}"
    );
    for (id, f) in &live {
        assert_eq!(ours[id]["displayName"], f["displayName"]);
        assert_eq!(ours[id]["parentFolderId"], f["parentFolderId"]);
        assert_eq!(ours[id]["isHidden"], f["isHidden"]);
    }
    let msgs = of_mailbox(snap, "message", user);
    let live_msgs = env.live_messages(user);
    let ours_by_graph_id: BTreeMap<String, &Stored> = msgs
        .iter()
        .map(|(key, s)| {
            let gid = s.body["id"].as_str().unwrap().to_string();
            assert_eq!(
                key,
                &format!("{}/{gid}", s.body["parentFolderId"].as_str().unwrap())
            );
            (gid, s)
        })
        .collect();
    assert_eq!(
        ours_by_graph_id.keys().collect::<BTreeSet<_>>(),
        live_msgs
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect::<BTreeSet<_>>()
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>()
            .iter()
            .collect::<BTreeSet<_>>(),
        "messages of {user}"
    );
    for m in &live_msgs {
        let gid = m["id"].as_str().unwrap();
        let s = ours_by_graph_id[gid];
        assert_eq!(s.body["internetMessageId"], m["internetMessageId"]);
        assert_eq!(s.body["isRead"], m["isRead"]);
        let key = format!("{}/{gid}", m["parentFolderId"].as_str().unwrap());
        let stored = snap
            .part_bytes("message", &key, "mime", content)
            .expect("MIME part");
        let live_mime = env.mime(user, gid);
        assert_eq!(stored, live_mime, "MIME of {gid}");
        assert_eq!(s.body["size"], json!(live_mime.len()));
    }
}

#[test]
fn full_backup_equals_the_mailboxes_and_a_mailbox_round_trip_restores_bytes_and_tree() {
    let env = Env::start(11);
    let mut users = env.busiest(2);
    users.sort();
    let content = Arc::new(MemContent::default());
    let (gw, rec) = env.connect();
    let mut inst = collector(
        &env.wasm,
        rec.clone(),
        content.clone(),
        &json!({"users": users}),
    );
    let mut snap = Snapshot::default();
    let run = run_all(&mut inst, &mut snap);
    assert_eq!(
        run.tasks.keys().cloned().collect::<Vec<_>>(),
        users
            .iter()
            .map(|u| format!("mailbox/{u}"))
            .collect::<Vec<_>>()
    );
    for (task, r) in &run.tasks {
        assert!(r.error.is_none(), "{task}: {:?}", r.error);
        assert_eq!(r.listing, Some(Listing::Full));
    }
    for u in &users {
        assert_snapshot_is_live(&env, &snap, &content, u);
        let folders = folder_bodies(&snap, u);
        assert!(
            folders.values().any(|f| f["isHidden"] == true),
            "hidden folders are backed up"
        );
        assert!(folders
            .values()
            .any(|f| path(&folders, f["id"].as_str().unwrap()).len() == 2));
        assert_eq!(snap.of_kind("mailbox")[u].body["id"], json!(u));
    }
    assert!(snap.of_kind("messageError").is_empty());

    // Disaster in the first mailbox: a nested folder with its messages, and two inbox messages.
    let user = &users[0];
    let folders = folder_bodies(&snap, user);
    let msgs = of_mailbox(&snap, "message", user);
    let count_in = |fid: &str| {
        msgs.values()
            .filter(|m| m.body["parentFolderId"] == fid)
            .count()
    };
    let victim = folders
        .values()
        .filter(|f| path(&folders, f["id"].as_str().unwrap()).len() == 2)
        .max_by_key(|f| count_in(f["id"].as_str().unwrap()))
        .unwrap()
        .clone();
    let victim_id = victim["id"].as_str().unwrap().to_string();
    let in_victim = count_in(&victim_id);
    env.ok(
        "DELETE",
        &format!("/v1.0/users/{user}/mailFolders/{}", pct_encode(&victim_id)),
        None,
    );
    // Two messages of the fullest folder outside the victim (the inbox or sent items).
    let (_, donor) = folders
        .keys()
        .filter(|id| **id != victim_id && path(&folders, id).len() == 1)
        .map(|id| (count_in(id), id.clone()))
        .max()
        .unwrap();
    let deleted: Vec<String> = msgs
        .values()
        .filter(|m| m.body["parentFolderId"] == donor.as_str())
        .take(2)
        .map(|m| m.body["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(deleted.len(), 2, "a folder has messages to delete");
    for id in &deleted {
        env.ok(
            "DELETE",
            &format!("/v1.0/users/{user}/messages/{}", pct_encode(id)),
            None,
        );
    }

    // Restore the mailbox.
    let remap = Arc::new(MemRemap::default());
    let mut r = restorer(&env, &gw, &content, &snap, &remap);
    let req = request(&[("mailbox", user)], json!({}));
    let plan = r.restore_plan(&req).unwrap().unwrap();
    let folder_actions: Vec<_> = plan
        .iter()
        .filter(|a| a.item_kind == "mailFolder")
        .collect();
    assert_eq!(folder_actions.len(), 1, "{plan:#?}");
    assert_eq!(folder_actions[0].item_id, victim_id);
    assert_eq!(folder_actions[0].kind, ActionKind::Recreate);
    let message_actions: Vec<_> = plan.iter().filter(|a| a.item_kind == "message").collect();
    assert_eq!(message_actions.len(), in_victim + 2, "{plan:#?}");
    assert!(message_actions
        .iter()
        .all(|a| a.kind == ActionKind::Recreate));
    for a in &message_actions {
        let in_folder = msgs[&a.item_id].body["parentFolderId"] == victim_id.as_str();
        assert_eq!(a.depends_on.is_empty(), !in_folder, "{}", a.id);
    }
    for a in &plan {
        let out = r.restore_apply(a).unwrap().unwrap();
        assert!(!out.already_done, "{}", a.id);
        assert!(out.new_id.is_some());
    }
    // Verify: a second plan is empty, and re-applying finds the work done.
    let again = r.restore_plan(&req).unwrap().unwrap();
    assert!(again.is_empty(), "{again:#?}");
    let out = r.restore_apply(message_actions[0]).unwrap().unwrap();
    assert!(out.already_done, "idempotent by internetMessageId");

    // Folder tree and MIME bytes equal the snapshot's.
    let live = env.live_folders(user);
    let live_paths: BTreeSet<Vec<String>> = live.keys().map(|id| path(&live, id)).collect();
    let snap_paths: BTreeSet<Vec<String>> = folders.keys().map(|id| path(&folders, id)).collect();
    assert_eq!(live_paths, snap_paths);
    let live_msgs = env.live_messages(user);
    for m in msgs.values() {
        let imid = m.body["internetMessageId"].as_str().unwrap();
        let want_path = path(&folders, m.body["parentFolderId"].as_str().unwrap());
        let hits: Vec<&Value> = live_msgs
            .iter()
            .filter(|l| l["internetMessageId"] == imid)
            .collect();
        assert_eq!(hits.len(), 1, "{imid} once");
        assert_eq!(
            path(&live, hits[0]["parentFolderId"].as_str().unwrap()),
            want_path
        );
        let key = format!(
            "{}/{}",
            m.body["parentFolderId"].as_str().unwrap(),
            m.body["id"].as_str().unwrap()
        );
        let stored = snap.part_bytes("message", &key, "mime", &content).unwrap();
        assert_eq!(
            env.mime(user, hits[0]["id"].as_str().unwrap()),
            stored,
            "MIME bytes of {imid} (attachments included)"
        );
        if hits[0]["id"] != m.body["id"] {
            assert_eq!(hits[0]["isRead"], m.body["isRead"], "read state set back");
            assert_eq!(hits[0]["isDraft"], true, "MIME imports are drafts");
        }
    }
    assert_eq!(
        remap.lookup(&victim_id).as_deref(),
        live.iter()
            .find(|(_, f)| f["displayName"] == victim["displayName"])
            .map(|(id, _)| id.as_str())
    );
    drop(gw);
}

#[test]
fn restore_into_a_restored_folder_of_another_mailbox_with_a_damaged_mime() {
    let env = Env::start(12);
    let users = env.mailboxes(2);
    let (source, target) = (&users[0], &users[1]);
    let content = Arc::new(MemContent::default());
    let (gw, rec) = env.connect();
    let mut inst = collector(&env.wasm, rec, content.clone(), &json!({"users": [source]}));
    let mut snap = Snapshot::default();
    run_all(&mut inst, &mut snap);
    let folders = folder_bodies(&snap, source);
    let msgs = of_mailbox(&snap, "message", source);
    let inbox = folder_id(&folders, "Inbox");
    // Damage the stored MIME of one message of the inbox.
    let (damaged_key, _) = msgs
        .iter()
        .find(|(_, m)| m.body["parentFolderId"] == inbox.as_str())
        .unwrap();
    let damaged_key = damaged_key.clone();
    snap.damage_part(
        "message",
        &damaged_key,
        "mime",
        b"\x00\x01garbage without headers".to_vec(),
    );

    let target_upn = env.ok(
        "GET",
        &format!("/v1.0/users/{target}?$select=userPrincipalName"),
        None,
    )["userPrincipalName"]
        .as_str()
        .unwrap()
        .to_string();
    let remap = Arc::new(MemRemap::default());
    let mut r = restorer(&env, &gw, &content, &snap, &remap);
    let req = request(
        &[("mailFolder", &inbox)],
        json!({"restoreFolder": "Restored 2026-11-30", "targetMailbox": target_upn}),
    );
    let plan = r.restore_plan(&req).unwrap().unwrap();
    let in_inbox: Vec<&String> = msgs
        .iter()
        .filter(|(_, m)| {
            let p = path(&folders, m.body["parentFolderId"].as_str().unwrap());
            p[0] == "Inbox"
        })
        .map(|(k, _)| k)
        .collect();
    let inbox_tree = folders
        .keys()
        .filter(|id| path(&folders, id)[0] == "Inbox")
        .count();
    assert_eq!(
        plan.iter().filter(|a| a.item_kind == "mailFolder").count(),
        1 + inbox_tree,
        "the Restored root and the inbox subtree: {plan:#?}"
    );
    assert_eq!(
        plan.iter().filter(|a| a.item_kind == "message").count(),
        in_inbox.len()
    );
    let mut failed = vec![];
    for a in &plan {
        match r.restore_apply(a).unwrap() {
            Ok(_) => {}
            Err(e) => failed.push((a.item_id.clone(), format!("{e:?}"))),
        }
    }
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, damaged_key);
    assert!(failed[0].1.contains("malformed"), "{}", failed[0].1);

    // The target has Restored 2026-11-30/Inbox/... with every other message, byte for byte.
    let live = env.live_folders(target);
    let live_msgs = env.live_messages(target);
    for key in in_inbox.iter().filter(|k| ***k != damaged_key) {
        let m = &msgs[*key];
        let hit = live_msgs
            .iter()
            .find(|l| l["internetMessageId"] == m.body["internetMessageId"])
            .unwrap_or_else(|| panic!("{key} restored"));
        let mut want = vec!["Restored 2026-11-30".to_string()];
        want.extend(path(&folders, m.body["parentFolderId"].as_str().unwrap()));
        assert_eq!(path(&live, hit["parentFolderId"].as_str().unwrap()), want);
        let stored = snap.part_bytes("message", key, "mime", &content).unwrap();
        assert_eq!(env.mime(target, hit["id"].as_str().unwrap()), stored);
    }
    // The source mailbox is untouched.
    assert_eq!(env.live_messages(source).len(), msgs.len());

    // A re-created owner: the Entra restore mapped the source user to the target; restoring
    // one message without targetMailbox goes to the target, into its original path.
    remap.record("user", source, target);
    let (one_key, one) = msgs
        .iter()
        .find(|(k, m)| **k != damaged_key && m.body["parentFolderId"] != inbox.as_str())
        .unwrap();
    let plan = r
        .restore_plan(&request(&[("message", one_key)], json!({})))
        .unwrap()
        .unwrap();
    let msg_actions: Vec<_> = plan.iter().filter(|a| a.item_kind == "message").collect();
    assert_eq!(msg_actions.len(), 1, "{plan:#?}");
    for a in &plan {
        r.restore_apply(a).unwrap().unwrap();
    }
    let live = env.live_folders(target);
    let hits: Vec<Value> = env
        .live_messages(target)
        .into_iter()
        .filter(|l| l["internetMessageId"] == one.body["internetMessageId"])
        .collect();
    let paths: BTreeSet<Vec<String>> = hits
        .iter()
        .map(|h| path(&live, h["parentFolderId"].as_str().unwrap()))
        .collect();
    assert!(paths.contains(&path(
        &folders,
        one.body["parentFolderId"].as_str().unwrap()
    )));
}

/// Requests of a run, grouped: folder deltas, message deltas per folder, MIME downloads.
fn classify(reqs: &[String]) -> (usize, BTreeMap<String, usize>, usize) {
    let mut folder_deltas = 0;
    let mut message_deltas: BTreeMap<String, usize> = BTreeMap::new();
    let mut downloads = 0;
    for r in reqs {
        let path = r.split('?').next().unwrap();
        if path.ends_with("/mailFolders/delta") {
            folder_deltas += 1;
        } else if path.ends_with("/messages/delta") {
            let segs: Vec<&str> = path.split('/').collect();
            let folder = segs[segs.len() - 3].to_string();
            *message_deltas.entry(folder).or_default() += 1;
        } else if path.ends_with("/$value") {
            downloads += 1;
        }
    }
    (folder_deltas, message_deltas, downloads)
}

#[test]
fn incremental_runs_fetch_only_changes_and_an_expired_folder_token_rereads_that_folder() {
    let env = Env::start(13);
    let users = env.mailboxes(2);
    let (busy, quiet) = (&users[0], &users[1]);
    let content = Arc::new(MemContent::default());
    let (_gw, rec) = env.connect();
    let mut inst = collector(
        &env.wasm,
        rec.clone(),
        content.clone(),
        &json!({"users": users}),
    );
    let mut snap = Snapshot::default();
    run_all(&mut inst, &mut snap);
    let folders = folder_bodies(&snap, busy);
    let msgs = of_mailbox(&snap, "message", busy);
    let inbox = folder_id(&folders, "Inbox");
    let other = msgs
        .values()
        .find(|m| m.body["parentFolderId"] != inbox.as_str())
        .expect("a message outside the inbox")
        .clone();
    let in_inbox: Vec<&Stored> = msgs
        .values()
        .filter(|m| m.body["parentFolderId"] == inbox.as_str())
        .collect();
    assert!(in_inbox.len() >= 2);
    rec.take();

    // Churn in the busy mailbox: one message marked (un)read, one deleted, one delivered, one
    // new folder.
    let gid = |s: &Stored| s.body["id"].as_str().unwrap().to_string();
    env.ok(
        "PATCH",
        &format!("/v1.0/users/{busy}/messages/{}", pct_encode(&gid(&other))),
        Some(json!({"isRead": other.body["isRead"] != true})),
    );
    let gone = gid(in_inbox[0]);
    env.ok(
        "DELETE",
        &format!("/v1.0/users/{busy}/messages/{}", pct_encode(&gone)),
        None,
    );
    let new_mime =
        "From: a@contoso.com\r\nSubject: fresh\r\nMessage-ID: <fresh@x>\r\n\r\nhello\r\n";
    env.sim
        .with_tenant(|t| mail::insert_mime(t, busy, "inbox", new_mime))
        .unwrap();
    env.ok(
        "POST",
        &format!("/v1.0/users/{busy}/mailFolders"),
        Some(json!({"displayName": "Brand new"})),
    );

    let run = run_all(&mut inst, &mut snap);
    let reqs = rec.take();
    let (fd, md, downloads) = classify(&reqs);
    assert_eq!(fd, 2, "one folder delta per mailbox");
    assert_eq!(
        downloads, 2,
        "only the changed and the new message: {reqs:#?}"
    );
    let live_folder_count = env.live_folders(busy).len() + env.live_folders(quiet).len();
    assert_eq!(
        md.len(),
        live_folder_count,
        "one message delta per folder: {md:?}"
    );
    assert!(
        md.values().all(|n| *n == 1),
        "no folder needed a second page: {md:?}"
    );
    let busy_run = &run.tasks[&format!("mailbox/{busy}")];
    assert_eq!(busy_run.listing, Some(Listing::Changes));
    assert!(busy_run
        .removed
        .iter()
        .any(|t| t.kind == "message" && t.id == format!("{inbox}/{gone}")));
    assert_eq!(
        busy_run.of_kind("mailFolder").len(),
        1,
        "only the new folder is listed"
    );
    let quiet_run = &run.tasks[&format!("mailbox/{quiet}")];
    assert_eq!(quiet_run.listing, Some(Listing::Changes));
    assert!(quiet_run.of_kind("message").is_empty());
    for u in &users {
        assert_snapshot_is_live(&env, &snap, &content, u);
    }

    // The inbox's message delta token expires, and an inbox message is deleted meanwhile:
    // that folder alone is read again, and the deleted message leaves the snapshot.
    env.sim.add_fault(
        FaultRule::new(
            // The delta links Graph hands out percent-encode the folder id.
            &format!(
                "/v1.0/users/{busy}/mailFolders/{}/messages/delta*",
                pct_encode(&inbox)
            ),
            FaultKind::Resync,
        )
        .times(1),
    );
    let gone2 = gid(in_inbox[1]);
    env.sim.with_tenant(|t| {
        // Deleted without a trace in the delta (as after an expired sync state).
        t.mail
            .materialize(busy)
            .messages
            .remove(&gone2)
            .expect("message exists");
    });
    let run = run_all(&mut inst, &mut snap);
    let reqs = rec.take();
    let (_, md, downloads) = classify(&reqs);
    let busy_run = &run.tasks[&format!("mailbox/{busy}")];
    assert!(
        busy_run
            .notes
            .iter()
            .any(|n| n.contains("full pass of that folder")),
        "{:?}",
        busy_run.notes
    );
    let inbox_now = env
        .live_messages(busy)
        .iter()
        .filter(|m| m["parentFolderId"] == inbox.as_str())
        .count();
    assert_eq!(downloads, inbox_now, "only the inbox is downloaded again");
    let inbox_requests: usize = md
        .iter()
        .filter(|(f, _)| **f == inbox || **f == pct_encode(&inbox))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        inbox_requests, 2,
        "the expired token, then the fresh pass: {md:?}"
    );
    assert_eq!(busy_run.listing, Some(Listing::Changes));
    assert!(!snap
        .of_kind("message")
        .contains_key(&format!("{inbox}/{gone2}")));
    for u in &users {
        assert_snapshot_is_live(&env, &snap, &content, u);
    }
}

#[test]
fn bad_input_is_recorded_against_its_message_and_the_run_goes_on() {
    let env = Env::start(14);
    let user = env.mailboxes(1).remove(0);
    // A large message (over the configured limit), a malformed multipart one Exchange cannot
    // convert back to MIME, and one that vanishes between the delta page and its download.
    let large = format!(
        "Subject: large\r\nMessage-ID: <large@x>\r\nContent-Type: text/plain\r\n\r\n{}\r\n",
        "z".repeat(300_000)
    );
    let broken = "Subject: broken\r\nMessage-ID: <broken@x>\r\nContent-Type: multipart/mixed; boundary=\"q\"\r\n\r\n--q\r\nContent-Type: text/plain\r\n\r\nunterminated\r\n";
    let (large_id, broken_id) = env.sim.with_tenant(|t| {
        (
            mail::insert_mime(t, &user, "inbox", &large).unwrap(),
            mail::insert_mime(t, &user, "inbox", broken).unwrap(),
        )
    });
    let vanished = env
        .live_messages(&user)
        .into_iter()
        .find(|m| m["id"] != large_id.as_str() && m["id"] != broken_id.as_str())
        .unwrap();
    let vanished_id = vanished["id"].as_str().unwrap().to_string();
    env.sim.add_fault(
        FaultRule::new(
            &format!("/v1.0/users/{user}/messages/{vanished_id}/$value"),
            FaultKind::Error {
                status: 404,
                code: "ErrorItemNotFound".into(),
                message: "The specified object was not found in the store.".into(),
            },
        )
        .times(1),
    );
    let content = Arc::new(MemContent::default());
    let (_gw, rec) = env.connect();
    let mut inst = collector(
        &env.wasm,
        rec,
        content.clone(),
        &json!({"users": [user], "maxMessageBytes": 100_000}),
    );
    let mut snap = Snapshot::default();
    let run = run_all(&mut inst, &mut snap);
    let task = &run.tasks[&format!("mailbox/{user}")];
    assert!(task.error.is_none(), "{:?}", task.error);
    let errors = snap.of_kind("messageError");
    let reason_of = |gid: &str| {
        errors
            .values()
            .find(|e| e.body["messageId"] == gid)
            .map(|e| e.body["reason"].as_str().unwrap().to_string())
    };
    assert_eq!(reason_of(&large_id).as_deref(), Some("tooLarge"));
    assert_eq!(reason_of(&broken_id).as_deref(), Some("mimeUnavailable"));
    assert_eq!(reason_of(&vanished_id).as_deref(), Some("vanished"));
    assert_eq!(errors.len(), 3);
    let broken_err = errors
        .values()
        .find(|e| e.body["messageId"] == broken_id.as_str())
        .unwrap();
    assert_eq!(broken_err.body["status"], 400);
    assert!(broken_err.body["detail"]
        .as_str()
        .unwrap()
        .contains("ErrorMimeContentConversionFailed"));
    // The large one has its metadata (with the size) and no MIME; no MIME was downloaded.
    let msgs = of_mailbox(&snap, "message", &user);
    let large_rec = msgs
        .values()
        .find(|m| m.body["id"] == large_id.as_str())
        .unwrap();
    assert_eq!(large_rec.body["size"], json!(large.len()));
    assert!(large_rec.parts.is_empty());
    assert!(large_rec.body["@cairn.error"]
        .as_str()
        .unwrap()
        .contains("size limit"));
    // Every other message is complete.
    let complete = msgs.values().filter(|m| !m.parts.is_empty()).count();
    assert_eq!(complete, env.live_messages(&user).len() - 3);

    // The problems go away: the broken message is deleted, the vanished one downloads now
    // (it is changed, so the delta lists it again). Their errors leave the snapshot.
    env.ok(
        "DELETE",
        &format!("/v1.0/users/{user}/messages/{}", pct_encode(&broken_id)),
        None,
    );
    env.ok(
        "PATCH",
        &format!("/v1.0/users/{user}/messages/{}", pct_encode(&vanished_id)),
        Some(json!({"isRead": vanished["isRead"] != true})),
    );
    let run = run_all(&mut inst, &mut snap);
    assert!(run.tasks.values().all(|t| t.error.is_none()));
    let errors = snap.of_kind("messageError");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors.values().next().unwrap().body["reason"], "tooLarge");
}

#[test]
fn scope_comes_from_graph_groups_users_shared_mailboxes_and_exclusions() {
    let env = Env::start(15);
    let content = Arc::new(MemContent::default());
    let (_gw, rec) = env.connect();
    let plan = |cfg: Value| -> Vec<String> {
        let mut inst = collector(&env.wasm, rec.clone(), content.clone(), &cfg);
        let tasks = inst.plan_tasks().unwrap();
        match tasks {
            Ok(t) => t.into_iter().map(|t| t.id).collect(),
            Err(e) => vec![format!("error: {e:?}")],
        }
    };
    let users = env.ok(
        "GET",
        "/v1.0/users?$select=id,userPrincipalName,mail,userType,accountEnabled&$top=999",
        None,
    );
    let users = users["value"].as_array().unwrap().clone();
    let with_mail: Vec<&Value> = users
        .iter()
        .filter(|u| u["mail"].is_string() && u["userType"] != "Guest")
        .collect();
    let all = plan(json!({}));
    assert_eq!(all.len(), with_mail.len(), "every member user with mail");
    assert!(
        users.iter().any(|u| u["userType"] == "Guest"),
        "the tenant has guests"
    );
    let disabled: Vec<&&Value> = with_mail
        .iter()
        .filter(|u| u["accountEnabled"] == false)
        .collect();
    let no_shared = plan(json!({"sharedMailboxes": false}));
    assert_eq!(no_shared.len(), with_mail.len() - disabled.len());

    // A group's transitive members.
    let groups = env.ok("GET", "/v1.0/groups?$select=id,displayName&$top=999", None);
    let (gname, members) = groups["value"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|g| {
            let m = env.ok(
                "GET",
                &format!(
                    "/v1.0/groups/{}/transitiveMembers?$select=id&$top=999",
                    g["id"].as_str().unwrap()
                ),
                None,
            );
            let ids: BTreeSet<String> = m["value"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|x| x["@odata.type"] == "#microsoft.graph.user")
                .filter(|x| with_mail.iter().any(|u| u["id"] == x["id"]))
                .map(|x| format!("mailbox/{}", x["id"].as_str().unwrap()))
                .collect();
            let unique = groups["value"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|o| o["displayName"] == g["displayName"])
                .count()
                == 1;
            (ids.len() >= 2 && unique)
                .then(|| (g["displayName"].as_str().unwrap().to_string(), ids))
        })
        .expect("a group with mailbox members");
    let by_group: BTreeSet<String> = plan(json!({"groups": [gname]})).into_iter().collect();
    assert_eq!(by_group, members);
    // Plus one listed user by UPN, minus one excluded by id.
    let extra = with_mail
        .iter()
        .find(|u| !members.contains(&format!("mailbox/{}", u["id"].as_str().unwrap())))
        .unwrap();
    let excluded = members
        .iter()
        .next()
        .unwrap()
        .trim_start_matches("mailbox/")
        .to_string();
    let listed: BTreeSet<String> = plan(json!({
        "groups": [gname],
        "users": [extra["userPrincipalName"]],
        "exclude": [excluded],
    }))
    .into_iter()
    .collect();
    let mut want = members.clone();
    want.insert(format!("mailbox/{}", extra["id"].as_str().unwrap()));
    want.remove(&format!("mailbox/{excluded}"));
    assert_eq!(listed, want);
    // Unknown names are configuration errors.
    let bad = plan(json!({"groups": ["No such group"]}));
    assert!(bad[0].contains("no group is named"), "{bad:?}");
    let bad = plan(json!({"users": ["nobody@nowhere.example"]}));
    assert!(bad[0].contains("not a user with a mailbox"), "{bad:?}");
}

#[test]
fn a_throttling_storm_and_a_failing_mailbox_leave_the_others_complete_and_the_run_partial() {
    let env = Env::start_with(SimConfig::new(Profile::Small, 16).with_throttling(true));
    let users = env.mailboxes(5);
    let failing = users[2].clone();
    // A storm of 429s on every mail request (30%), and one mailbox that always fails.
    env.sim.add_fault(
        FaultRule::new(
            "/v1.0/users/*/m*",
            FaultKind::Throttle {
                retry_after: Some(0.02),
            },
        )
        .rate(0.3),
    );
    env.sim.add_fault(FaultRule::new(
        &format!("/v1.0/users/{failing}/*"),
        FaultKind::ServerError {
            status: 503,
            retry_after: Some(0.01),
        },
    ));
    let cloud = cairn_gateway::Cloud::custom(&env.sim.base_url(), &env.sim.base_url()).unwrap();
    let gw = Gateway::connect_with_handle(
        GatewayConfig::new(
            env.sim.tenant_id(),
            env.sim.client_id(),
            cairn_gateway::Credential::secret(env.sim.client_secret()),
        )
        .with_cloud(cloud)
        .with_retry(RetryPolicy {
            max_attempts: 12,
            max_total_wait: std::time::Duration::from_secs(5),
            base_delay: std::time::Duration::from_millis(10),
            max_delay: std::time::Duration::from_millis(100),
        }),
        env.rt.handle().clone(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(env.wasm.clone(), dir.path());
    let report = backup_mail(
        &mail_plugin(&env.wasm),
        &gw,
        &repo,
        json!({"users": users}),
        5,
    );
    env.sim.clear_faults();
    assert!(report.partial());
    assert_eq!(
        report.sinks[0].failed_tasks,
        vec![format!("mail/mailbox/{failing}")]
    );
    for u in &users {
        let t = &report.tasks[&format!("mail/mailbox/{u}")];
        if *u == failing {
            assert_eq!(t.status, "failed");
        } else {
            assert_eq!(t.status, "complete", "{u}: {:?}", t.error);
            let live = env.live_messages(u).len() as u64;
            let folders = env.live_folders(u).len() as u64;
            assert_eq!(
                t.items,
                1 + folders + live,
                "{u}: mailbox + folders + messages"
            );
        }
    }
    let stats = gw.stats();
    assert!(stats.total.throttled > 0, "the storm was felt: {stats:?}");
}
