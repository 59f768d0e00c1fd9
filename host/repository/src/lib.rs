//! The Cairn repository: immutable, content-addressed, deduplicated, compressed snapshots of
//! collector output. Format: `docs/repository.md`.
//!
//! * [`Repository::init`] / [`Repository::open`] over any [`Backend`] (the repository never
//!   encrypts; an encrypting backend decides recipients by [`ObjectClass`]).
//! * [`SnapshotWriter`] → [`TaskWriter`] per collector task → items, tombstones, binary parts
//!   (FastCDC-chunked while streaming), checkpoints; [`SnapshotWriter::commit`] → snapshot id.
//! * Readers: [`Repository::snapshots`], [`Repository::tree_entries`],
//!   [`Repository::read_item`], [`Repository::part_reader`], [`Repository::diff`].
//! * Restore journals: [`Repository::append_journal`], [`Repository::journal`],
//!   [`Repository::journals`].
//! * Maintenance: [`Repository::check`], [`Repository::forget`], [`Repository::prune`],
//!   [`Repository::hold`].
#![warn(missing_docs)]

pub mod backend;
pub mod canonical;
mod error;
mod id;
pub mod index;
mod journal;
mod maintenance;
mod mime;
pub mod pack;
mod repo;
mod snapshot;
pub mod tree;
mod writer;

pub use backend::{Backend, BackendError, DeleteOutcome, ObjectClass, ObjectInfo, PutOutcome};
/// Re-exported so callers can hold signing keys without depending on ed25519-dalek.
pub use ed25519_dalek::{SigningKey, VerifyingKey};
pub use error::{Error, Result};
pub use id::{Id, IdKey, IdParseError};
pub use journal::{journal_key, JournalRecord};
pub use maintenance::{
    CheckOptions, CheckReport, ForgetPolicy, ForgetReport, Mark, Problem, PruneOptions,
    PruneReport, ReadData, RepairReport,
};
pub use repo::{
    ChunkerParams, Config, InitOptions, KeyObject, OpenOptions, PackParams, PartReader, Repository,
    SnapshotDiff, SnapshotInfo, TaskDiff, WriterKeyFile, FORMAT_NAME, FORMAT_VERSION,
};
pub use snapshot::{
    format_time, generate_signing_key, signing_key_from_hex, Snapshot, SnapshotSignature,
    TaskRecord, TaskStatus,
};
pub use tree::{ContentRef, Entry, PartRef};
pub use writer::{
    Checkpoint, CheckpointTask, Chunking, ContentWriter, Item, ItemOutcome, ParentChoice,
    RunProgress, SnapshotWriter, TaskMode, TaskProgress, TaskWriter, WriteStats, WriterOptions,
};
