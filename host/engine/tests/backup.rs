//! Backup runs through real plugins into age-encrypted repositories.

use std::path::Path;
use std::sync::Arc;

use cairn_engine::backup::{run_backup, CollectorSpec, SinkTarget};
use cairn_engine::keys::{age_sink_config, generate_identity};
use cairn_engine::{PluginRef, PluginRegistry, SinkBackend};
use cairn_repository::{Backend, InitOptions, OpenOptions, Repository, WriterOptions};
use cairn_runtime::{Limits, Runtime, RuntimeConfig};

fn registry() -> PluginRegistry {
    PluginRegistry::new(
        Runtime::new(RuntimeConfig {
            cache_dir: Some(std::env::temp_dir().join("cairn-test-component-cache")),
            ..Default::default()
        })
        .unwrap(),
    )
}

struct Repo {
    repo: Repository,
    reader: Repository,
}

fn repository(reg: &PluginRegistry, dir: &Path) -> Repo {
    let (restore_secret, restore_public) = generate_identity();
    let (meta_secret, _) = generate_identity();
    let store = cairn_blobstore::open_backend(dir.to_str().unwrap(), &Default::default()).unwrap();
    let plugin = reg.get(&PluginRef::Bundled("age-sink".into())).unwrap();
    let writer: Arc<dyn Backend> = Arc::new(
        SinkBackend::new(
            plugin.clone(),
            store.clone(),
            &age_sink_config(
                std::slice::from_ref(&restore_public),
                Some(&meta_secret),
                &[],
            )
            .unwrap(),
            Limits::default(),
        )
        .unwrap(),
    );
    let repo = Repository::init(writer, InitOptions::default()).unwrap();
    let reader: Arc<dyn Backend> = Arc::new(
        SinkBackend::new(
            plugin,
            store,
            &age_sink_config(&[restore_public], None, &[restore_secret]).unwrap(),
            Limits::default(),
        )
        .unwrap(),
    );
    let reader = Repository::open(reader, OpenOptions::default()).unwrap();
    Repo { repo, reader }
}

fn hostile(reg: &PluginRegistry, name: &str, behaviour: &str) -> CollectorSpec {
    let plugin = reg
        .get(&PluginRef::File(cairn_test_plugins::HOSTILE.into()))
        .unwrap();
    CollectorSpec {
        name: name.into(),
        plugin,
        config: serde_json::json!({ "behaviour": behaviour }),
        graph: None,
        concurrency: 2,
        limits: Limits {
            call_timeout: std::time::Duration::from_secs(2),
            ..Limits::default()
        },
    }
}

#[test]
fn a_backup_stores_every_item_and_a_second_run_adds_nothing_new() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry();
    let r = repository(&reg, dir.path());
    let sinks = [SinkTarget {
        name: "local".into(),
        repo: r.repo.clone(),
        inputs: vec!["things".into()],
        writer_options: WriterOptions::default(),
    }];
    let collectors = [hostile(&reg, "things", "none")];
    let report = run_backup(&collectors, &sinks, None).unwrap();
    assert!(!report.partial());
    assert_eq!(report.tasks["things/things"].items, 3);
    assert_eq!(report.tasks["things/things"].steps, 3);

    let snaps = r.reader.snapshots().unwrap();
    assert_eq!(snaps.len(), 1);
    let snap = r.reader.snapshot(&snaps[0].id).unwrap();
    let task = snap
        .tasks
        .iter()
        .find(|t| t.name == "things/things")
        .unwrap();
    let entries = r.reader.tree_entries(task.tree).unwrap();
    let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["thing-0", "thing-1", "thing-2"]);
    let body = r.reader.read_item(&entries[1]).unwrap();
    assert_eq!(body, serde_json::json!({"id": "thing-1", "n": 1}));

    // Same content again: a new snapshot, same tree, chained to the first.
    let report2 = run_backup(&collectors, &sinks, None).unwrap();
    assert!(!report2.partial());
    let snaps = r.reader.snapshots().unwrap();
    assert_eq!(snaps.len(), 2);
    let second = r
        .reader
        .snapshot(
            &snaps
                .iter()
                .find(|s| s.id.to_string() == report2.sinks[0].snapshot)
                .unwrap()
                .id,
        )
        .unwrap();
    assert_eq!(
        second.tasks[0].tree, task.tree,
        "unchanged content, same tree"
    );
    assert!(second.parent.is_some());
}

#[test]
fn a_failing_collector_makes_a_partial_snapshot_and_the_others_complete() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry();
    let r = repository(&reg, dir.path());
    let sinks = [SinkTarget {
        name: "local".into(),
        repo: r.repo.clone(),
        inputs: vec!["good".into(), "bad".into(), "stuck".into()],
        writer_options: WriterOptions::default(),
    }];
    let collectors = [
        hostile(&reg, "good", "none"),
        hostile(&reg, "bad", "panic"),
        hostile(&reg, "stuck", "loop"),
    ];
    let report = run_backup(&collectors, &sinks, None).unwrap();
    assert!(report.partial());
    let out = &report.sinks[0];
    assert_eq!(out.failed_tasks, ["bad/plan", "stuck/plan"]);
    assert!(report.tasks["bad/plan"]
        .error
        .as_deref()
        .unwrap()
        .contains("hostile plugin panics on purpose"));
    assert!(report.tasks["stuck/plan"]
        .error
        .as_deref()
        .unwrap()
        .contains("timeout"));
    assert_eq!(report.tasks["good/things"].items, 3);
    let snap = r
        .reader
        .snapshot(&r.reader.snapshots().unwrap()[0].id)
        .unwrap();
    assert!(snap.partial, "the snapshot says it is partial");
}

#[test]
fn two_sinks_receive_the_same_items() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let reg = registry();
    let ra = repository(&reg, a.path());
    let rb = repository(&reg, b.path());
    let sinks = [
        SinkTarget {
            name: "a".into(),
            repo: ra.repo.clone(),
            inputs: vec!["things".into()],
            writer_options: WriterOptions::default(),
        },
        SinkTarget {
            name: "b".into(),
            repo: rb.repo.clone(),
            inputs: vec!["things".into()],
            writer_options: WriterOptions::default(),
        },
    ];
    let report = run_backup(&[hostile(&reg, "things", "none")], &sinks, None).unwrap();
    assert_eq!(report.sinks.len(), 2);
    for r in [&ra, &rb] {
        let snap = r
            .reader
            .snapshot(&r.reader.snapshots().unwrap()[0].id)
            .unwrap();
        assert_eq!(snap.tasks[0].items, 3);
    }
}
