//! The restore engine with an in-process restorer over a fake tenant: selection, combined plan,
//! dependency order, concurrency, failures, journal, resume, verify and export.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_engine::restore::{
    apply, export, plan, preload, verify, ApplyOptions, Part, Remap, RestoreContext, Restorer,
    Selector, SnapshotView,
};
use cairn_repository::{InitOptions, Item, Repository, SnapshotWriter, TaskMode, WriterOptions};
use cairn_runtime::types::{Action, ActionKind, Outcome, RestoreRequest};
use cairn_runtime::RemapTable;
use serde_json::json;

const USERS: usize = 60;
const GROUPS: usize = 4;

/// A tenant that lost everything: the restorer re-creates users and groups (new ids, recorded
/// in remap) and links memberships once both ends exist.
struct FakeTenant {
    remap: Arc<Remap>,
    /// Live objects by (new) id.
    live: Mutex<HashSet<String>>,
    links: Mutex<HashSet<(String, String)>>,
    applies: Mutex<HashMap<String, usize>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
    /// Actions that fail (by plugin action id).
    failing: Mutex<HashSet<String>>,
    /// Fail every action after this many applies (a stop half-way).
    budget: Mutex<Option<usize>>,
    /// A manual step is planned for this user.
    manual_for: String,
}

impl FakeTenant {
    fn new(remap: Arc<Remap>) -> Arc<Self> {
        Arc::new(FakeTenant {
            remap,
            live: Mutex::new(HashSet::new()),
            links: Mutex::new(HashSet::new()),
            applies: Mutex::new(HashMap::new()),
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
            failing: Mutex::new(HashSet::new()),
            budget: Mutex::new(None),
            manual_for: "u0".into(),
        })
    }

    fn current(&self, old: &str) -> String {
        self.remap.lookup(old).unwrap_or_else(|| old.to_string())
    }

    fn exists(&self, old: &str) -> bool {
        self.live.lock().unwrap().contains(&self.current(old))
    }
}

fn action(
    id: String,
    kind: ActionKind,
    item_kind: &str,
    item_id: &str,
    deps: Vec<String>,
) -> Action {
    Action {
        id,
        kind,
        item_kind: item_kind.into(),
        item_id: item_id.into(),
        display_name: item_id.into(),
        summary: format!("{kind:?} {item_kind} {item_id}"),
        reason: "absent from the tenant".into(),
        depends_on: deps,
        payload: json!({"id": item_id}).to_string(),
    }
}

impl Restorer for FakeTenant {
    fn plan(&self, request: &RestoreRequest) -> Result<Vec<Action>, String> {
        let opts: serde_json::Value = serde_json::from_str(&request.options).unwrap();
        assert!(opts["snapshotTime"].is_string(), "{opts}");
        let mut out = Vec::new();
        for s in &request.selection {
            match s.kind.as_str() {
                "user" | "group" => {
                    if !self.exists(&s.id) {
                        out.push(action(
                            format!("{}/{}/recreate", s.kind, s.id),
                            ActionKind::Recreate,
                            &s.kind,
                            &s.id,
                            vec![],
                        ));
                    }
                    if s.id == self.manual_for {
                        out.push(action(
                            format!("user/{}/password", s.id),
                            ActionKind::Manual,
                            "user",
                            &s.id,
                            vec![format!("user/{}/recreate", s.id)]
                                .into_iter()
                                .filter(|_| !self.exists(&s.id))
                                .collect(),
                        ));
                    }
                }
                "groupMember" => {
                    let (g, u) = s.id.split_once('/').unwrap();
                    let linked = self
                        .links
                        .lock()
                        .unwrap()
                        .contains(&(self.current(g), self.current(u)));
                    if !linked {
                        let deps = [("group", g), ("user", u)]
                            .iter()
                            .filter(|(_, id)| !self.exists(id))
                            .map(|(k, id)| format!("{k}/{id}/recreate"))
                            .collect();
                        out.push(action(
                            format!("groupMember/{}/link", s.id),
                            ActionKind::Link,
                            "groupMember",
                            &s.id,
                            deps,
                        ));
                    }
                }
                _ => {}
            }
        }
        // A dependency on an object outside the selection is not part of this plan.
        let planned: HashSet<String> = out.iter().map(|a| a.id.clone()).collect();
        for a in &mut out {
            a.depends_on.retain(|d| planned.contains(d));
        }
        // Links first in the plugin's list: the engine must order by depends-on.
        out.sort_by_key(|a| a.kind != ActionKind::Link);
        Ok(out)
    }

    fn apply(&self, a: &Action) -> Result<Outcome, String> {
        let n = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(n, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(2));
        let r = (|| {
            {
                let mut b = self.budget.lock().unwrap();
                if let Some(left) = b.as_mut() {
                    if *left == 0 {
                        return Err("stopped".to_string());
                    }
                    *left -= 1;
                }
            }
            *self
                .applies
                .lock()
                .unwrap()
                .entry(a.id.clone())
                .or_default() += 1;
            if self.failing.lock().unwrap().contains(&a.id) {
                return Err(format!("Graph answered 400 to {}", a.id));
            }
            match a.kind {
                ActionKind::Recreate => {
                    if self.exists(&a.item_id) {
                        return Ok(Outcome {
                            new_id: None,
                            notes: vec![],
                            already_done: true,
                        });
                    }
                    let new = format!("new-{}", a.item_id);
                    self.live.lock().unwrap().insert(new.clone());
                    self.remap.record(&a.item_kind, &a.item_id, &new);
                    Ok(Outcome {
                        new_id: Some(new),
                        notes: vec![],
                        already_done: false,
                    })
                }
                ActionKind::Link => {
                    let (g, u) = a.item_id.split_once('/').unwrap();
                    if !self.exists(g) || !self.exists(u) {
                        return Err(format!("link {} before its ends exist", a.item_id));
                    }
                    let fresh = self
                        .links
                        .lock()
                        .unwrap()
                        .insert((self.current(g), self.current(u)));
                    Ok(Outcome {
                        new_id: None,
                        notes: vec![],
                        already_done: !fresh,
                    })
                }
                k => Err(format!("unexpected {k:?}")),
            }
        })();
        self.running.fetch_sub(1, Ordering::SeqCst);
        r
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    repo: Repository,
    ctx: RestoreContext,
    tenant: Arc<FakeTenant>,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = cairn_blobstore::open_backend(
        dir.path().join("repo").to_str().unwrap(),
        &Default::default(),
    )
    .unwrap();
    let repo = Repository::init(store, InitOptions::default()).unwrap();
    let w = SnapshotWriter::new(&repo, WriterOptions::default()).unwrap();
    let t = w.task("fake/directory", TaskMode::Full).unwrap();
    let put = |kind: &str, id: &str, name: &str, parts: Vec<cairn_repository::PartRef>| {
        t.put_item(&Item {
            kind,
            id,
            name,
            body: &json!({"id": id, "displayName": name}),
            parts,
        })
        .unwrap();
    };
    for i in 0..USERS {
        put("user", &format!("u{i}"), &format!("User {i}"), vec![]);
    }
    for g in 0..GROUPS {
        put("group", &format!("g{g}"), &format!("Group {g}"), vec![]);
        for i in (g..USERS).step_by(GROUPS) {
            put("groupMember", &format!("g{g}/u{i}"), "", vec![]);
        }
    }
    let part = t.write_part("photo", b"\x89PNG fake bytes").unwrap();
    put("device", "d1", "Kiosk: lobby/1", vec![part]);
    t.finish(None).unwrap();
    let snap_id = w.commit(json!({})).unwrap();
    let info = repo.find_snapshot(&snap_id.to_string()).unwrap();
    let view = Arc::new(SnapshotView::open(&repo, &info.snapshot, "fake").unwrap());
    let remap = Arc::new(Remap::default());
    let tenant = FakeTenant::new(remap.clone());
    let ctx = RestoreContext {
        snapshot_id: info.id,
        snapshot: info.snapshot.clone(),
        parts: vec![Part {
            collector: "fake".into(),
            view,
            restorer: Some(tenant.clone()),
        }],
        remap,
        target_connection: None,
    };
    Setup {
        _dir: dir,
        repo,
        ctx,
        tenant,
    }
}

fn opts(repo: &Repository) -> ApplyOptions {
    ApplyOptions {
        concurrency: 6,
        journal: Some(repo.clone()),
        who: "tester@host".into(),
        on_result: None,
    }
}

#[test]
fn whole_snapshot_plan_apply_verify_with_journal() {
    let s = setup();
    let sel = Selector::default();
    let p = plan(&s.ctx, &sel, &json!({"caState": "report-only"})).unwrap();
    let members = USERS; // every user is in exactly one group
    assert_eq!(p.actions.len(), USERS + GROUPS + members + 1);
    assert!(p.actions.iter().all(|a| a.id.starts_with("fake:")));
    assert_eq!(p.options["caState"], "report-only");
    assert_eq!(p.options["onlyMissing"], false);
    // Dependency order: every action after what it depends on.
    let pos: HashMap<&str, usize> = p
        .actions
        .iter()
        .enumerate()
        .map(|(i, a)| (a.id.as_str(), i))
        .collect();
    for (i, a) in p.actions.iter().enumerate() {
        for d in &a.depends_on {
            assert!(pos[d.as_str()] < i, "{} before {d}", a.id);
        }
    }
    // Same inputs, same restore id and hash.
    let again = plan(&s.ctx, &sel, &json!({"caState": "report-only"})).unwrap();
    assert_eq!(
        (&again.restore_id, &again.plan_hash),
        (&p.restore_id, &p.plan_hash)
    );
    let other = plan(&s.ctx, &sel, &json!({"caState": "as-backed-up"})).unwrap();
    assert_ne!(other.restore_id, p.restore_id);

    let prior = preload(&s.ctx, &s.repo, &p.restore_id).unwrap();
    assert_eq!(prior.attempts, 0);
    let report = apply(&s.ctx, &p, &prior, &opts(&s.repo)).unwrap();
    assert!(report.failures().is_empty(), "{:?}", report.failures());
    assert_eq!(report.counts["done"], USERS + GROUPS + members);
    assert_eq!(report.counts["manual"], 1);
    assert!(
        s.tenant.max_running.load(Ordering::SeqCst) > 1,
        "independent actions run concurrently"
    );
    assert!(s.tenant.applies.lock().unwrap().values().all(|&n| n == 1));
    assert_eq!(s.tenant.links.lock().unwrap().len(), members);

    // The journal holds every result and every mapping.
    let j = cairn_engine::restore::read_journal(&s.repo, &p.restore_id).unwrap();
    assert_eq!(j.attempts, 1);
    assert_eq!(j.ends.len(), 1);
    assert_eq!(j.done.len(), USERS + GROUPS + members);
    assert_eq!(j.mappings.len(), 2 * (USERS + GROUPS));
    let e = &j.done["fake:user/u3/recreate"];
    assert_eq!(e.new_id.as_deref(), Some("new-u3"));
    assert_eq!(e.item_id, "u3");
    assert_eq!(s.repo.journals().unwrap(), vec![p.restore_id.clone()]);
    let start = &j.starts[0];
    assert_eq!(start["who"], "tester@host");
    assert_eq!(start["planHash"], p.plan_hash.as_str());

    let v = verify(&s.ctx, &p).unwrap();
    assert!(v.is_clean(), "{:?}", v.remaining);
    assert_eq!(v.manual.len(), 1);
    assert_eq!(
        v.fidelity(),
        (USERS + GROUPS + members + 1, USERS + GROUPS + members + 1)
    );
}

#[test]
fn failures_skip_dependents_and_a_rerun_finishes_without_duplicates() {
    let s = setup();
    s.tenant
        .failing
        .lock()
        .unwrap()
        .insert("group/g1/recreate".into());
    let p = plan(&s.ctx, &Selector::default(), &json!({})).unwrap();
    let prior = preload(&s.ctx, &s.repo, &p.restore_id).unwrap();
    let r = apply(&s.ctx, &p, &prior, &opts(&s.repo)).unwrap();
    let failed: Vec<_> = r.failures();
    let g1_members = (1..USERS).step_by(GROUPS).count();
    assert_eq!(failed.len(), 1 + g1_members);
    assert_eq!(r.counts["failed"], 1);
    assert_eq!(r.counts["skipped"], g1_members);
    assert!(failed.iter().filter(|e| e.outcome == "skipped").all(|e| e
        .message
        .as_deref()
        .unwrap()
        .contains("fake:group/g1/recreate")));
    let v = verify(&s.ctx, &p).unwrap();
    assert_eq!(v.remaining.len(), 1 + g1_members);
    assert_eq!(v.per_kind["group"].differing, 1);
    assert_eq!(v.per_kind["groupMember"].differing, g1_members);

    // The cause is fixed; the same plan again applies only what is missing.
    s.tenant.failing.lock().unwrap().clear();
    let prior = preload(&s.ctx, &s.repo, &p.restore_id).unwrap();
    assert_eq!(prior.attempts, 1);
    let r2 = apply(&s.ctx, &p, &prior, &opts(&s.repo)).unwrap();
    assert!(r2.failures().is_empty(), "{:?}", r2.failures());
    assert_eq!(r2.done_earlier, p.actions.len() - 1 - 1 - g1_members);
    assert_eq!(r2.counts["done"], 1 + g1_members);
    let applies = s.tenant.applies.lock().unwrap();
    assert_eq!(applies["group/g1/recreate"], 2);
    assert!(applies
        .iter()
        .filter(|(k, _)| k.as_str() != "group/g1/recreate")
        .all(|(_, &n)| n == 1));
    drop(applies);
    assert!(verify(&s.ctx, &p).unwrap().is_clean());
}

#[test]
fn a_stopped_apply_resumes_from_the_journal_in_a_new_context() {
    let s = setup();
    *s.tenant.budget.lock().unwrap() = Some(25);
    let sel = Selector {
        kinds: vec!["user".into(), "group".into(), "groupMember".into()],
        ..Default::default()
    };
    let p = plan(&s.ctx, &sel, &json!({})).unwrap();
    let r = apply(&s.ctx, &p, &Default::default(), &opts(&s.repo)).unwrap();
    assert_eq!(r.counts["done"], 25);

    // A new process: empty remap, the tenant as it is. Pre-loading the journal gives the new
    // ids back, so the plan skips what exists and nothing is created twice.
    let remap = Arc::new(Remap::default());
    let tenant = Arc::new(FakeTenant {
        remap: remap.clone(),
        live: Mutex::new(s.tenant.live.lock().unwrap().clone()),
        links: Mutex::new(s.tenant.links.lock().unwrap().clone()),
        applies: Mutex::new(HashMap::new()),
        running: AtomicUsize::new(0),
        max_running: AtomicUsize::new(0),
        failing: Mutex::new(HashSet::new()),
        budget: Mutex::new(None),
        manual_for: "u0".into(),
    });
    let ctx = RestoreContext {
        snapshot_id: s.ctx.snapshot_id,
        snapshot: s.ctx.snapshot.clone(),
        parts: vec![Part {
            collector: "fake".into(),
            view: s.ctx.parts[0].view.clone(),
            restorer: Some(tenant.clone()),
        }],
        remap: remap.clone(),
        target_connection: None,
    };
    let prior = preload(&ctx, &s.repo, &p.restore_id).unwrap();
    // The 25 re-created objects (each journaled with its entry and as a recorded mapping).
    assert_eq!(remap.len(), 25);
    assert_eq!(prior.done.len(), 25);
    let p2 = plan(&ctx, &sel, &json!({})).unwrap();
    assert_eq!(p2.restore_id, p.restore_id, "the same restore");
    assert_eq!(p2.actions.len(), p.actions.len() - 25);
    let r2 = apply(&ctx, &p2, &prior, &opts(&s.repo)).unwrap();
    assert!(r2.failures().is_empty(), "{:?}", r2.failures());
    assert!(tenant.applies.lock().unwrap().values().all(|&n| n == 1));
    let created = s.tenant.applies.lock().unwrap().len() + tenant.applies.lock().unwrap().len();
    assert_eq!(
        created,
        p.actions.len() - 1,
        "every non-manual action applied once overall"
    );
    assert!(verify(&ctx, &p2).unwrap().is_clean());
    assert_eq!(
        cairn_engine::restore::read_journal(&s.repo, &p.restore_id)
            .unwrap()
            .attempts,
        2
    );
}

#[test]
fn selectors_narrow_the_request() {
    let s = setup();
    let sel = Selector {
        kinds: vec!["user".into()],
        names: vec!["User 1*".into()],
        attributes: vec!["jobTitle".into()],
        ..Default::default()
    };
    let p = plan(&s.ctx, &sel, &json!({})).unwrap();
    let req = &p.requests["fake"];
    // User 1, User 10 … User 19
    assert_eq!(req.selection.len(), 11);
    assert!(req
        .selection
        .iter()
        .all(|x| x.attributes == vec!["jobTitle"]));
    let ids = Selector {
        ids: vec!["user/u5".into(), "g2/u6".into()],
        only_missing: true,
        ..Default::default()
    };
    let p = plan(&s.ctx, &ids, &json!({})).unwrap();
    let sel: Vec<_> = p.requests["fake"]
        .selection
        .iter()
        .map(|x| x.id.as_str())
        .collect();
    assert_eq!(sel, vec!["g2/u6", "u5"]);
    assert_eq!(p.options["onlyMissing"], true);
    assert!(p.summary()["selected"] == 2);
}

#[test]
fn export_writes_one_file_per_object_and_parts_beside() {
    let s = setup();
    let out = s._dir.path().join("export");
    let r = export(
        &s.ctx,
        &Selector {
            kinds: vec!["user".into(), "device".into(), "groupMember".into()],
            ..Default::default()
        },
        &out,
    )
    .unwrap();
    assert_eq!(r.items, USERS + USERS + 1);
    assert_eq!(r.parts, 1);
    let u: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("fake/user/User 7__u7.json")).unwrap())
            .unwrap();
    assert_eq!(u["id"], "u7");
    assert!(out.join("fake/groupMember/g3_u7.json").exists());
    let d: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("fake/device/Kiosk_ lobby_1__d1.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(d["@cairn.parts"][0]["file"], "Kiosk_ lobby_1__d1.photo");
    assert_eq!(
        std::fs::read(out.join("fake/device/Kiosk_ lobby_1__d1.photo")).unwrap(),
        b"\x89PNG fake bytes"
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("export.json")).unwrap()).unwrap();
    assert_eq!(meta["items"], USERS * 2 + 1);
}
