//! Errors of the repository library.

use crate::backend::BackendError;
use crate::Id;

/// Anything that can go wrong in the repository.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Storage failed.
    #[error(transparent)]
    Backend(#[from] BackendError),

    /// `open` found nothing at the location.
    #[error("no Cairn repository at {location}: it is empty or does not exist (create one with `cairn init`)")]
    NoRepository {
        /// Backend location.
        location: String,
    },

    /// `open` found objects but no (valid) repository config.
    #[error("{location} is not a Cairn repository: {reason}")]
    NotARepository {
        /// Backend location.
        location: String,
        /// What was found instead.
        reason: String,
    },

    /// The repository was written by a newer Cairn.
    #[error("the repository at {location} has format version {found}, newer than this Cairn supports ({supported}); upgrade Cairn to use it (nothing was written)")]
    NewerVersion {
        /// Backend location.
        location: String,
        /// Version in the config.
        found: u32,
        /// Highest version this build reads.
        supported: u32,
    },

    /// `init` on a location that already holds something.
    #[error("cannot initialise a repository at {location}: {reason}")]
    InitRefused {
        /// Backend location.
        location: String,
        /// Why not.
        reason: String,
    },

    /// The id key given does not belong to this repository.
    #[error("the id key does not belong to the repository at {location} (wrong writer key file?)")]
    WrongIdKey {
        /// Backend location.
        location: String,
    },

    /// No id key given and none could be read from `keys/`.
    #[error("cannot read the repository's id key at {location}: {reason}")]
    NoIdKey {
        /// Backend location.
        location: String,
        /// Why (usually: this identity cannot decrypt `keys/`).
        reason: String,
    },

    /// A stored object could not be decoded.
    #[error("object {key} is damaged: {reason}")]
    Corrupt {
        /// The key of the object.
        key: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A blob the caller needs is in no index.
    #[error("blob {0} is not in any index (missing data)")]
    MissingBlob(Id),

    /// A snapshot id (or prefix) matched nothing, or several.
    #[error("snapshot {0}")]
    SnapshotLookup(String),

    /// Misuse of the writer API.
    #[error("{0}")]
    Usage(String),

    /// A concurrent prune removed data this run relied on.
    #[error("a concurrent prune deleted pack {0} that this backup deduplicated against; run the backup again")]
    ConcurrentPrune(String),

    /// JSON (de)serialisation failed.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),

    /// Local I/O (streams handed in by the caller).
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
