//! The storage interface the repository writes through, and the key layout.
//!
//! The repository hands a [`Backend`] opaque bytes under keys; it never encrypts. An encrypting
//! backend (the age sink plugin) decides recipients from the key's [`ObjectClass`].

use std::sync::Arc;

/// What a create-if-absent put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object did not exist and now does.
    Created,
    /// An object with that key already existed; it was left untouched. Since keys are keyed
    /// hashes of content, this means the same content is already stored: success.
    AlreadyExisted,
}

/// What a delete did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// The object is gone.
    Deleted,
    /// There was no such object.
    NotFound,
    /// The store refused (Object Lock retention, legal hold, immutability policy, permissions).
    /// Not an error: maintenance reports it and carries on.
    Refused(String),
}

/// One object in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Full key, e.g. `snapshots/3f…`.
    pub key: String,
    /// Stored size in bytes (after any encryption by the backend), if the backend knows it.
    /// `check` uses it to find truncated packs (stored size below the indexed size).
    pub size: Option<u64>,
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The key does not exist.
    #[error("object {key} not found")]
    NotFound {
        /// The key asked for.
        key: String,
    },
    /// Anything else (I/O, network, permissions, decryption).
    #[error("{op} {key}: {message}")]
    Other {
        /// `put`, `get`, `list` or `delete`.
        op: &'static str,
        /// The key or prefix.
        key: String,
        /// What went wrong, including the underlying cause.
        message: String,
    },
}

impl BackendError {
    /// A failure other than not-found.
    pub fn other(op: &'static str, key: &str, message: impl std::fmt::Display) -> Self {
        BackendError::Other {
            op,
            key: key.to_string(),
            message: message.to_string(),
        }
    }

    /// Whether this is [`BackendError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, BackendError::NotFound { .. })
    }
}

/// Object storage as the repository needs it. Keys are `/`-separated relative paths
/// (see [`keys`]). Implementations must be safe to call from several threads at once.
///
/// The trait is synchronous: the repository is CPU-bound between calls and is driven from
/// blocking threads (`tokio::task::spawn_blocking` in an async engine). Async stores run their
/// own runtime behind it (as `cairn-blobstore` does).
pub trait Backend: Send + Sync {
    /// Where this is, for messages (`/srv/backup`, `s3://bucket/prefix`, …).
    fn location(&self) -> String;

    /// Store `data` under `key` only if nothing is stored there yet ("create if absent").
    /// An existing object is not an error: return [`PutOutcome::AlreadyExisted`].
    fn put(&self, key: &str, data: Vec<u8>) -> Result<PutOutcome, BackendError>;

    /// The whole object. [`BackendError::NotFound`] if absent.
    fn get(&self, key: &str) -> Result<Vec<u8>, BackendError>;

    /// All objects whose key starts with `prefix` (`""` lists everything), in any order.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BackendError>;

    /// Remove an object. A refusal by the store is [`DeleteOutcome::Refused`], not an error.
    fn delete(&self, key: &str) -> Result<DeleteOutcome, BackendError>;
}

impl<B: Backend + ?Sized> Backend for Arc<B> {
    fn location(&self) -> String {
        (**self).location()
    }
    fn put(&self, key: &str, data: Vec<u8>) -> Result<PutOutcome, BackendError> {
        (**self).put(key, data)
    }
    fn get(&self, key: &str) -> Result<Vec<u8>, BackendError> {
        (**self).get(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        (**self).list(prefix)
    }
    fn delete(&self, key: &str) -> Result<DeleteOutcome, BackendError> {
        (**self).delete(key)
    }
}

impl<B: Backend + ?Sized> Backend for Box<B> {
    fn location(&self) -> String {
        (**self).location()
    }
    fn put(&self, key: &str, data: Vec<u8>) -> Result<PutOutcome, BackendError> {
        (**self).put(key, data)
    }
    fn get(&self, key: &str) -> Result<Vec<u8>, BackendError> {
        (**self).get(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, BackendError> {
        (**self).list(prefix)
    }
    fn delete(&self, key: &str) -> Result<DeleteOutcome, BackendError> {
        (**self).delete(key)
    }
}

/// Which readers an object is for. An encrypting backend (the age sink) encrypts
/// * [`ObjectClass::Data`] to the repository's recipients only;
/// * [`ObjectClass::Metadata`] to the recipients **and** the writer's metadata identity, so the
///   backup machine can read indexes, trees, snapshots and checkpoints (dedup, incremental runs,
///   resume) but never item contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectClass {
    /// Item bodies and binary chunks: keys under `data/`.
    Data,
    /// Everything else: `config`, `keys/`, `tree/`, `index/`, `snapshots/`, `checkpoints/`,
    /// `marks/`, `holds/`, `forgotten/`, `journals/`.
    Metadata,
}

impl ObjectClass {
    /// The class of a key: `data/…` is data, anything else metadata.
    pub fn of_key(key: &str) -> ObjectClass {
        if key.starts_with(keys::DATA_PREFIX) {
            ObjectClass::Data
        } else {
            ObjectClass::Metadata
        }
    }
}

/// The key layout (format version 1). See docs/repository.md.
pub mod keys {
    use crate::Id;

    /// The repository config (plain canonical JSON).
    pub const CONFIG: &str = "config";
    /// Id-key envelopes.
    pub const KEYS_PREFIX: &str = "keys/";
    /// Packs of item bodies and chunks (the only data-class prefix).
    pub const DATA_PREFIX: &str = "data/";
    /// Packs of tree nodes.
    pub const TREE_PREFIX: &str = "tree/";
    /// Index files.
    pub const INDEX_PREFIX: &str = "index/";
    /// Snapshots.
    pub const SNAPSHOTS_PREFIX: &str = "snapshots/";
    /// Progress of unfinished runs.
    pub const CHECKPOINTS_PREFIX: &str = "checkpoints/";
    /// Prune marks (phase one of two-phase deletion).
    pub const MARKS_PREFIX: &str = "marks/";
    /// Legal holds, one per held snapshot: `holds/<snapshot id>`.
    pub const HOLDS_PREFIX: &str = "holds/";
    /// Forget records, one per forgotten snapshot: `forgotten/<snapshot id>`.
    pub const FORGOTTEN_PREFIX: &str = "forgotten/";
    /// Restore journals: `journals/<restore id>/<seq>`.
    pub const JOURNALS_PREFIX: &str = "journals/";

    /// `data/<first two hex digits>/<id>` or `tree/…/<id>`.
    pub fn pack(prefix: &str, id: &Id) -> String {
        let h = id.to_hex();
        format!("{prefix}{}/{h}", &h[..2])
    }

    /// `<prefix><id>`.
    pub fn flat(prefix: &str, id: &Id) -> String {
        format!("{prefix}{}", id.to_hex())
    }

    /// The id at the end of a key, if it is one.
    pub fn id_of(key: &str) -> Option<Id> {
        key.rsplit('/').next().and_then(|s| Id::from_hex(s).ok())
    }
}
