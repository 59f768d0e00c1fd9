//! Shared helpers for the repository tests (local directory stores via cairn-blobstore).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cairn_blobstore::BlobStore;
use cairn_repository::*;
use serde_json::{json, Value};

pub fn dir_backend(dir: &Path) -> Arc<dyn Backend> {
    Arc::new(BlobStore::open(dir.to_str().unwrap(), &Default::default()).unwrap())
}

pub struct TestRepo {
    pub dir: tempfile::TempDir,
    pub repo: Repository,
}

impl TestRepo {
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("repo")
    }
    pub fn backend(&self) -> Arc<dyn Backend> {
        dir_backend(&self.path())
    }
    pub fn reopen(&self) -> Repository {
        Repository::open(
            self.backend(),
            OpenOptions {
                id_key: Some(self.repo.id_key().clone()),
            },
        )
        .unwrap()
    }
    /// All object keys (relative paths) under the repository.
    pub fn keys(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .backend()
            .list("")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        v.sort();
        v
    }
    pub fn total_bytes(&self) -> u64 {
        self.backend()
            .list("")
            .unwrap()
            .iter()
            .map(|o| o.size.unwrap())
            .sum()
    }
}

pub fn small_packs() -> PackParams {
    PackParams {
        target_size: 64 * 1024,
        zstd_level: 3,
        frame_size: 16 * 1024,
    }
}

pub fn init_repo() -> TestRepo {
    init_repo_with(InitOptions::default())
}

pub fn init_repo_with(opts: InitOptions) -> TestRepo {
    let dir = tempfile::tempdir().unwrap();
    let be = dir_backend(&dir.path().join("repo"));
    let repo = Repository::init(be, opts).unwrap();
    TestRepo { dir, repo }
}

/// A synthetic Entra-like user object.
pub fn user(i: usize, version: usize) -> Value {
    json!({
        "id": format!("{:08x}-0000-4000-8000-{:012x}", i, i),
        "displayName": format!("User {i}"),
        "userPrincipalName": format!("user{i}@contoso.example"),
        "mail": format!("user{i}@contoso.example"),
        "jobTitle": (["Engineer", "Manager", "Analyst", "Designer"][i % 4]),
        "department": format!("Dept {}", i % 17),
        "accountEnabled": !i.is_multiple_of(9),
        "otherMails": [format!("u{i}@other.example")],
        "employeeId": (i * 7919) % 100000,
        "revision": version,
    })
}

pub fn user_id(i: usize) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", i, i)
}

/// Puts user `i` at `version` (stored under the name `u`) into a task.
pub fn put_user(t: &TaskWriter, i: usize, version: usize) {
    let (body, id) = (user(i, version), user_id(i));
    t.put_item(&Item {
        kind: "user",
        id: &id,
        name: "u",
        body: &body,
        parts: vec![],
    })
    .unwrap();
}

/// Write a full listing of users `0..n` (with per-user versions) as task `entra/users`.
pub fn backup_users(
    repo: &Repository,
    n: usize,
    version_of: impl Fn(usize) -> usize,
    opts: WriterOptions,
) -> Id {
    let w = SnapshotWriter::new(repo, opts).unwrap();
    let t = w.task("entra/users", TaskMode::Full).unwrap();
    for i in 0..n {
        let body = user(i, version_of(i));
        let id = user_id(i);
        let name = format!("User {i}");
        t.put_item(&Item {
            kind: "user",
            id: &id,
            name: &name,
            body: &body,
            parts: vec![],
        })
        .unwrap();
    }
    t.finish(Some(format!("delta-{n}"))).unwrap();
    w.commit(json!({"items": n})).unwrap()
}

/// Deterministic pseudo-random bytes.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn check_ok(repo: &Repository) -> CheckReport {
    let r = repo
        .check(&CheckOptions {
            read_data: ReadData::All,
            ..Default::default()
        })
        .unwrap();
    assert!(r.is_ok(), "check failed:\n{r}");
    r
}

/// A backend that fails every write (put/delete) after the first `allowed` writes, like a
/// process killed at that point (objects are written whole or not at all).
pub struct FailAfter {
    pub inner: Arc<dyn Backend>,
    pub allowed: usize,
    pub writes: AtomicUsize,
    pub log: Mutex<Vec<String>>,
}

impl FailAfter {
    pub fn new(inner: Arc<dyn Backend>, allowed: usize) -> Arc<FailAfter> {
        Arc::new(FailAfter {
            inner,
            allowed,
            writes: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
        })
    }
    fn gate(&self, op: &'static str, key: &str) -> Result<(), BackendError> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst);
        if n >= self.allowed {
            return Err(BackendError::other(
                op,
                key,
                "injected failure (simulated crash)",
            ));
        }
        self.log.lock().unwrap().push(key.to_string());
        Ok(())
    }
}

impl Backend for FailAfter {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn put(&self, key: &str, data: Vec<u8>) -> Result<PutOutcome, BackendError> {
        self.gate("put", key)?;
        self.inner.put(key, data)
    }
    fn get(&self, key: &str) -> Result<Vec<u8>, BackendError> {
        self.inner.get(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> Result<DeleteOutcome, BackendError> {
        self.gate("delete", key)?;
        self.inner.delete(key)
    }
}

/// A backend that refuses every delete (like a bucket under Object Lock).
pub struct NoDelete(pub Arc<dyn Backend>);

impl Backend for NoDelete {
    fn location(&self) -> String {
        self.0.location()
    }
    fn put(&self, key: &str, data: Vec<u8>) -> Result<PutOutcome, BackendError> {
        self.0.put(key, data)
    }
    fn get(&self, key: &str) -> Result<Vec<u8>, BackendError> {
        self.0.get(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        self.0.list(prefix)
    }
    fn delete(&self, _key: &str) -> Result<DeleteOutcome, BackendError> {
        Ok(DeleteOutcome::Refused("object is locked".into()))
    }
}
