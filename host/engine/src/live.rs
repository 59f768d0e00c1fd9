//! The live tenant as a snapshot: the manifest's collectors run into a scratch repository held
//! in memory, keyed like the operator's repository so that unchanged items have the same ids.
//! `cairn diff <snapshot> live` compares a backup with it.

use std::sync::Arc;

use anyhow::Context;
use cairn_blobstore::BlobStore;
use cairn_repository::{InitOptions, Repository, Snapshot, WriterOptions};

use crate::backup::{run_backup, BackupReport, CollectorSpec, SinkTarget};

/// A backup of the live tenant in a scratch repository (gone when dropped).
pub struct LiveSnapshot {
    pub repo: Repository,
    pub snapshot: Snapshot,
    pub report: BackupReport,
}

/// Runs `collectors` into a new in-memory repository that shares `like`'s id key and chunker
/// parameters. It is a full read of the tenant (no delta state), and nothing is written to disk
/// or to `like`.
pub fn backup_live(
    collectors: &[CollectorSpec],
    like: &Repository,
) -> anyhow::Result<LiveSnapshot> {
    let config = like.config();
    let backend = Arc::new(BlobStore::in_memory().context("creating the scratch store")?);
    let repo = Repository::init(
        backend,
        InitOptions {
            chunker: config.chunker,
            pack: config.pack,
            signers: Vec::new(),
            id_key: Some(like.id_key().clone()),
        },
    )
    .context("creating the scratch repository")?;
    let target = SinkTarget {
        name: "live".to_string(),
        repo: repo.clone(),
        inputs: collectors.iter().map(|c| c.name.clone()).collect(),
        writer_options: WriterOptions::default(),
    };
    let report = run_backup(collectors, &[target], None)?;
    let info = repo
        .latest_snapshot()?
        .context("the live run wrote no snapshot")?;
    Ok(LiveSnapshot {
        repo,
        snapshot: info.snapshot,
        report,
    })
}
