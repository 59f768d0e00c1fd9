//! A `cairn backup` killed with SIGKILL in the middle of a run, then run again, completes from
//! its checkpoint and stores exactly what an uninterrupted backup of the same tenant stores.

use crate::support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use cairn_engine::setup::{open_sinks, Access};
use cairn_engine::PluginRegistry;
use cairn_graph_sim::{FaultKind, FaultRule, Profile, SimConfig};
use cairn_runtime::{Runtime, RuntimeConfig};
use support::{text, Env};

/// (kind, id) → (name, body, part sizes) of every item of the latest snapshot, read with the
/// restore identity.
type Items = BTreeMap<(String, String), (String, serde_json::Value, Vec<u64>)>;

fn read_latest(manifest: &Path) -> (Items, serde_json::Value) {
    let m = cairn_manifest::load(manifest).unwrap();
    let reg = PluginRegistry::new(Runtime::new(RuntimeConfig::with_default_cache()).unwrap());
    let identity = std::fs::read_to_string(support::identity(manifest)).unwrap();
    let sink = open_sinks(
        &m,
        &reg,
        &Access {
            identities: vec![identity],
        },
        None,
    )
    .unwrap()
    .remove(0);
    let info = sink.repo.find_snapshot("latest").unwrap();
    let mut items = Items::new();
    for t in &info.snapshot.tasks {
        for e in sink.repo.tree_entries(t.tree).unwrap() {
            let body = sink.repo.read_item(&e).unwrap();
            let sizes = e.parts.iter().map(|p| p.size).collect();
            let prev = items.insert(
                (e.kind.clone(), e.id.clone()),
                (e.name.clone(), body, sizes),
            );
            assert!(prev.is_none(), "{}/{} stored twice", e.kind, e.id);
        }
    }
    let summary = serde_json::json!({
        "partial": info.snapshot.partial,
        "tasks": info.snapshot.tasks.iter().map(|t| (t.name.clone(), t.items)).collect::<BTreeMap<_, _>>(),
    });
    (items, summary)
}

fn checkpoints(manifest: &Path) -> usize {
    let dir = manifest
        .parent()
        .unwrap()
        .join("repository")
        .join("checkpoints");
    // Only complete objects: the local store writes a staging file (`name#n`) and renames it.
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| !e.file_name().to_string_lossy().contains('#'))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_killed_backup_resumes_and_matches_an_uninterrupted_one() {
    let env = Env::start(SimConfig::new(Profile::Small, 11));
    // 120 more groups, so the groups delta takes two pages (100 a page) and the run writes a
    // checkpoint between them.
    env.rt.block_on(async {
        let mut c = cairn_graph_sim::testkit::Client::new(&env.sim.base_url())
            .with_token(env.sim.access_token());
        for i in 0..120 {
            let body = serde_json::json!({
                "displayName": format!("Resume test group {i}"),
                "mailEnabled": false,
                "mailNickname": format!("resume-{i}"),
                "securityEnabled": true,
            });
            let r = c
                .send(
                    "POST",
                    "/v1.0/groups",
                    &[("Content-Type", "application/json")],
                    body.to_string().as_bytes(),
                )
                .await
                .unwrap();
            assert_eq!(r.status, 201, "{}", r.text());
        }
    });
    // The groups delta's second page is slow, so the kill lands after the first page's
    // checkpoint and before the second page is stored.
    env.sim.add_fault(
        FaultRule::new("/v1.0/groups/delta*", FaultKind::Slow { millis: 4000 })
            .query("skiptoken")
            .times(1),
    );

    let interrupted = env.init("interrupted");
    // A checkpoint after every step (the default writes at most one per 30 s of the run),
    // so the kill lands between two of the groups task's checkpoints.
    let manifest = std::fs::read_to_string(&interrupted).unwrap();
    let manifest = manifest.replacen(
        "\nkey_file = ",
        "\ncheckpoint_interval = \"0s\"\nkey_file = ",
        1,
    );
    assert!(manifest.contains("checkpoint_interval"), "{manifest}");
    std::fs::write(&interrupted, manifest).unwrap();
    let mut child = env
        .cairn()
        .args(["backup", "-m"])
        .arg(&interrupted)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    // With checkpoints after every step, the second (slow) groups page is requested only once the
    // first page's items and checkpoint are stored: kill while that request is in flight.
    while checkpoints(&interrupted) == 0 || env.sim.stats().faults_injected < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no checkpoint was written"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());
    let out = env.run(&interrupted, &["snapshots", "--json"]);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
        serde_json::json!([]),
        "no snapshot from the killed run"
    );

    // The rerun resumes the interrupted run.
    let out = env.run(&interrupted, &["backup", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["sinks"][0]["resumed"], true, "{report}");
    let notes = report["tasks"]["entra/groups"]["notes"].to_string();
    assert!(
        notes.contains("resumed from the last checkpoint"),
        "{report}"
    );
    let skipped = report["tasks"]
        .as_object()
        .unwrap()
        .values()
        .filter(|t| t["notes"].to_string().contains("already finished"))
        .count();
    assert!(skipped > 0, "finished tasks are not redone: {report}");

    // The same tenant backed up without interruption.
    let clean = env.init("clean");
    let out = env.run(&clean, &["backup"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let (resumed_items, resumed_summary) = read_latest(&interrupted);
    let (clean_items, clean_summary) = read_latest(&clean);
    assert_eq!(resumed_summary, clean_summary);
    assert_eq!(resumed_items.len(), clean_items.len());
    for (key, clean_item) in &clean_items {
        assert_eq!(
            resumed_items.get(key),
            Some(clean_item),
            "{key:?} differs after the resumed run"
        );
    }
    let groups = resumed_items.keys().filter(|(k, _)| k == "group").count();
    assert!(groups > 120, "{groups} groups");
}
