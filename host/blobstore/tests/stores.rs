//! Blob stores against real servers (moto for S3, Azurite for Azure Blob) and the local
//! directory store, plus whole repositories on them.

mod servers;

use std::sync::Arc;

use cairn_blobstore::{BlobStore, StoreOptions};
use cairn_repository::*;
use serde_json::json;
use servers::*;

/// The Backend contract every store must meet.
fn exercise(store: &BlobStore) {
    assert_eq!(store.list("").unwrap(), vec![]);
    assert!(store.get("snapshots/nope").unwrap_err().is_not_found());
    assert_eq!(
        store.put("data/ab/abc", b"one".to_vec()).unwrap(),
        PutOutcome::Created
    );
    assert_eq!(
        store.put("data/ab/abc", b"two".to_vec()).unwrap(),
        PutOutcome::AlreadyExisted,
        "create-if-absent"
    );
    assert_eq!(
        store.get("data/ab/abc").unwrap(),
        b"one",
        "the first write wins"
    );
    store.put("data/cd/cde", vec![7; 100_000]).unwrap();
    store.put("snapshots/s1", b"{}".to_vec()).unwrap();
    store.put("snapshots2/x", b"{}".to_vec()).unwrap();
    let mut all: Vec<String> = store.list("").unwrap().into_iter().map(|o| o.key).collect();
    all.sort();
    assert_eq!(
        all,
        vec!["data/ab/abc", "data/cd/cde", "snapshots/s1", "snapshots2/x"]
    );
    let data = store.list("data/").unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(
        data.iter()
            .find(|o| o.key == "data/cd/cde")
            .unwrap()
            .size
            .unwrap(),
        100_000
    );
    let snaps: Vec<String> = store
        .list("snapshots/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        snaps,
        vec!["snapshots/s1"],
        "prefix listing is by string prefix"
    );
    assert_eq!(
        store.list("data/ab/abc").unwrap().len(),
        1,
        "an exact key lists itself"
    );
    assert_eq!(
        store.delete("snapshots/s1").unwrap(),
        DeleteOutcome::Deleted
    );
    assert!(store.get("snapshots/s1").unwrap_err().is_not_found());
    assert!(matches!(
        store.delete("snapshots/s1").unwrap(),
        DeleteOutcome::NotFound | DeleteOutcome::Deleted
    ));
}

fn repository_round_trip(backend: Arc<dyn Backend>) {
    let repo = Repository::init(backend.clone(), InitOptions::default()).unwrap();
    let key = repo.id_key().clone();
    let small = PackParams {
        target_size: 64 * 1024,
        zstd_level: 3,
        frame_size: 16 * 1024,
    };
    for v in 0..2u8 {
        let w = SnapshotWriter::new(
            &repo,
            WriterOptions {
                pack: Some(small),
                ..Default::default()
            },
        )
        .unwrap();
        let t = w.task("entra/users", TaskMode::Full).unwrap();
        // An incompressible photo that changes between runs: its old chunks become garbage.
        let photo: Vec<u8> = (0..600_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 ^ v)
            .collect();
        let part = t.write_part("photo", &photo).unwrap();
        t.put_item(&Item {
            kind: "photo",
            id: "p",
            name: "p",
            body: &json!({}),
            parts: vec![part],
        })
        .unwrap();
        for i in 0..200 {
            let body = json!({"id": i, "displayName": format!("User {i}"), "v": if i < 3 { v } else { 0 }});
            t.put_item(&Item {
                kind: "user",
                id: &format!("u{i:04}"),
                name: "u",
                body: &body,
                parts: vec![],
            })
            .unwrap();
        }
        t.finish(Some(format!("delta-{v}"))).unwrap();
        w.commit(json!({})).unwrap();
    }
    let r = Repository::open(backend, OpenOptions { id_key: Some(key) }).unwrap();
    let snaps = r.snapshots().unwrap();
    assert_eq!(snaps.len(), 2);
    let d = r.diff(&snaps[0].snapshot, &snaps[1].snapshot).unwrap();
    assert_eq!(d.tasks[0].changed.len(), 3 + 1);
    let e = r
        .find_entry(snaps[1].snapshot.tasks[0].tree, "photo", "p")
        .unwrap()
        .unwrap();
    let photo: Vec<u8> = (0..600_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 ^ 1)
        .collect();
    assert_eq!(r.read_part(&e.parts[0]).unwrap(), photo);
    let rep = r
        .check(&CheckOptions {
            read_data: ReadData::All,
            ..Default::default()
        })
        .unwrap();
    assert!(rep.is_ok(), "{rep}");
    r.forget(
        &ForgetPolicy {
            keep_last: Some(1),
            ..Default::default()
        },
        false,
    )
    .unwrap();
    let now = chrono::Utc::now();
    let o = |s| PruneOptions {
        grace: chrono::Duration::zero(),
        now: Some(now + chrono::Duration::seconds(s)),
        // Whether the old photo's chunks sit in packs of their own or share packs with live
        // items depends on the random id key (keyed chunking); repacking any partly used pack
        // makes the garbage deletable either way.
        repack_threshold: (s == 0).then_some(0.000_1),
        ..Default::default()
    };
    r.prune(&o(0)).unwrap();
    let p = r.prune(&o(1)).unwrap();
    assert!(p.refused.is_empty(), "{p:?}");
    assert!(p.deleted.iter().any(|k| k.starts_with("data/")), "{p:?}");
    let rep = r
        .check(&CheckOptions {
            read_data: ReadData::All,
            ..Default::default()
        })
        .unwrap();
    assert!(rep.is_ok(), "{rep}");
}

#[test]
fn local_directory_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/repo");
    let store = BlobStore::open(path.to_str().unwrap(), &StoreOptions::new()).unwrap();
    assert_eq!(store.list("").unwrap(), vec![]);
    assert!(!path.exists(), "opening and reading create nothing");
    exercise(&store);
    let url = format!("file://{}", dir.path().join("other").display());
    let store = BlobStore::open(&url, &StoreOptions::new()).unwrap();
    repository_round_trip(Arc::new(store));
    assert!(BlobStore::open("ftp://x/y", &StoreOptions::new()).is_err());
    // Usable from inside an async runtime (the engine's), without "runtime within runtime" panics.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let inner = dir.path().join("async");
    rt.block_on(async move {
        let store = BlobStore::open(inner.to_str().unwrap(), &StoreOptions::new()).unwrap();
        assert_eq!(store.put("k", b"v".to_vec()).unwrap(), PutOutcome::Created);
        assert_eq!(store.get("k").unwrap(), b"v");
        drop(store); // dropping its runtime inside another runtime is fine too
    });
    // GCS builds (no test server): a URL with explicit anonymous options is accepted.
    let gs = BlobStore::open(
        "gs://bucket/prefix",
        &[("skip_signature".to_string(), "true".to_string())]
            .into_iter()
            .collect(),
    );
    assert!(gs.is_ok(), "{:?}", gs.err());
}

#[test]
fn s3_store_on_moto() {
    let moto = moto();
    moto_bucket(moto.port, "plain", None);
    let store = BlobStore::open("s3://plain/some/prefix", &moto_options(moto.port)).unwrap();
    exercise(&store);
    // Objects land under the prefix.
    let (_, listing) = http(moto.port, "GET", "/plain?list-type=2", &[], b"").unwrap();
    assert!(
        listing.contains("<Key>some/prefix/data/ab/abc</Key>"),
        "{listing}"
    );
    let repo_store = BlobStore::open("s3://plain/repo", &moto_options(moto.port)).unwrap();
    repository_round_trip(Arc::new(repo_store));
    // Two backups into one S3 repository at the same time both succeed.
    let shared: Arc<dyn Backend> =
        Arc::new(BlobStore::open("s3://plain/shared", &moto_options(moto.port)).unwrap());
    let repo = Repository::init(shared.clone(), InitOptions::default()).unwrap();
    let handles: Vec<_> = (0..2)
        .map(|k| {
            let repo = repo.clone();
            std::thread::spawn(move || {
                let w = SnapshotWriter::new(
                    &repo,
                    WriterOptions {
                        parent: ParentChoice::None,
                        ..Default::default()
                    },
                )
                .unwrap();
                let t = w.task("t", TaskMode::Full).unwrap();
                for i in 0..300 {
                    t.put_item(&Item {
                        kind: "k",
                        id: &format!("{i}"),
                        name: "n",
                        body: &json!({"i": i, "writer": k}),
                        parts: vec![],
                    })
                    .unwrap();
                }
                t.finish(None).unwrap();
                w.commit(json!({})).unwrap()
            })
        })
        .collect();
    let ids: Vec<Id> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_ne!(ids[0], ids[1]);
    assert_eq!(repo.snapshots().unwrap().len(), 2);
    let rep = repo
        .check(&CheckOptions {
            read_data: ReadData::All,
            ..Default::default()
        })
        .unwrap();
    assert!(rep.is_ok(), "{rep}");
    // A bucket that does not exist: a clear error, not a panic.
    let bad = BlobStore::open("s3://missing-bucket/x", &moto_options(moto.port)).unwrap();
    assert!(bad.put("k", b"v".to_vec()).is_err());
}

#[test]
fn object_lock_refusals_are_reported_not_fatal() {
    let moto = moto();
    moto_bucket(moto.port, "locked", Some(1));
    let mut opts = moto_options(moto.port);
    opts.insert("checksum_algorithm".into(), "sha256".into());
    let store = BlobStore::open("s3://locked/scratch", &opts).unwrap();
    store.put("marks/x", b"{}".to_vec()).unwrap();
    match store.delete("marks/x").unwrap() {
        DeleteOutcome::Refused(why) => assert!(why.contains("AccessDenied"), "{why}"),
        other => panic!("a locked object must refuse deletion, got {other:?}"),
    }
    assert_eq!(store.get("marks/x").unwrap(), b"{}", "still there");
    let backend: Arc<dyn Backend> = Arc::new(BlobStore::open("s3://locked/repo", &opts).unwrap());
    let repo = Repository::init(backend.clone(), InitOptions::default()).unwrap();
    let mk = |v: u32| {
        let w = SnapshotWriter::new(&repo, WriterOptions::default()).unwrap();
        let t = w.task("t", TaskMode::Full).unwrap();
        for i in 0..100 {
            t.put_item(&Item {
                kind: "k",
                id: &format!("{i}"),
                name: "n",
                body: &json!({"i": i, "v": v}),
                parts: vec![],
            })
            .unwrap();
        }
        t.finish(None).unwrap();
        w.commit(json!({})).unwrap()
    };
    mk(1);
    let keep = mk(2);
    let f = repo
        .forget(
            &ForgetPolicy {
                keep_last: Some(1),
                ..Default::default()
            },
            false,
        )
        .unwrap();
    assert_eq!(f.refused.len(), 1, "{f:?}");
    let now = chrono::Utc::now();
    let o = |s| PruneOptions {
        grace: chrono::Duration::zero(),
        now: Some(now + chrono::Duration::seconds(s)),
        ..Default::default()
    };
    repo.prune(&o(0)).unwrap();
    let p = repo.prune(&o(1)).unwrap();
    assert!(
        p.refused.iter().any(|(k, _)| k.starts_with("data/")),
        "{p:?}"
    );
    let rep = repo
        .check(&CheckOptions {
            read_data: ReadData::All,
            ..Default::default()
        })
        .unwrap();
    assert!(rep.is_ok(), "{rep}");
    assert_eq!(
        repo.snapshots()
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect::<Vec<_>>(),
        vec![keep]
    );
    mk(3);
    assert!(repo.check(&CheckOptions::default()).unwrap().is_ok());
}

#[test]
fn azure_store_on_azurite() {
    let az = azurite();
    azurite_container(az.port, "backups");
    let store = BlobStore::open("az://backups/tenant-a", &azurite_options(az.port)).unwrap();
    exercise(&store);
    let repo_store = BlobStore::open("az://backups/repo", &azurite_options(az.port)).unwrap();
    repository_round_trip(Arc::new(repo_store));
}
