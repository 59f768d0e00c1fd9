//! Restore journals: immutable, create-if-absent records of what a restore did.
//!
//! A restore run writes numbered records under `journals/<restore id>/<seq>` (seq as 10 decimal
//! digits, so keys sort by number). Each record is a JSON value chosen by the engine (a header,
//! a batch of action results, an end summary), encoded like every metadata object (zstd of
//! canonical JSON) and stored through the same backend, hence the same sink encryption. Records
//! are never rewritten: a record whose key exists is left alone and the writer takes the next
//! number. `check`, `forget` and `prune` never read or delete journals.

use serde::Serialize;

use crate::backend::{keys, PutOutcome};
use crate::error::{Error, Result};
use crate::repo::{decode_meta, encode_meta};
use crate::Repository;

/// One stored journal record.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalRecord {
    /// Its number within the restore's journal.
    pub seq: u64,
    /// The engine's JSON.
    pub body: serde_json::Value,
}

/// The key of record `seq` of restore `restore`.
pub fn journal_key(restore: &str, seq: u64) -> String {
    format!("{}{restore}/{seq:010}", keys::JOURNALS_PREFIX)
}

/// Restore ids are short names: letters, digits, `-`, `_`, `.`; 1–64 characters.
fn check_name(restore: &str) -> Result<()> {
    let ok = !restore.is_empty()
        && restore.len() <= 64
        && !restore.starts_with('.')
        && restore
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "`{restore}` is not a valid restore id (1–64 letters, digits, `-`, `_`, `.`)"
        )))
    }
}

impl Repository {
    /// Stores a journal record for `restore` at number `seq` or, if that number is taken (an
    /// earlier or concurrent writer), at the next free one. Returns the number used.
    pub fn append_journal<T: Serialize>(&self, restore: &str, seq: u64, body: &T) -> Result<u64> {
        check_name(restore)?;
        let bytes = encode_meta(body);
        let mut seq = seq;
        loop {
            match self
                .inner
                .backend
                .put(&journal_key(restore, seq), bytes.clone())?
            {
                PutOutcome::Created => return Ok(seq),
                PutOutcome::AlreadyExisted => seq += 1,
            }
        }
    }

    /// The numbers of the records stored for `restore`, ascending.
    pub fn journal_seqs(&self, restore: &str) -> Result<Vec<u64>> {
        check_name(restore)?;
        let prefix = format!("{}{restore}/", keys::JOURNALS_PREFIX);
        let mut seqs: Vec<u64> = self
            .inner
            .backend
            .list(&prefix)?
            .iter()
            .filter_map(|o| o.key.strip_prefix(&prefix)?.parse().ok())
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        Ok(seqs)
    }

    /// The next free record number of `restore` (0 for a new journal).
    pub fn next_journal_seq(&self, restore: &str) -> Result<u64> {
        Ok(self
            .journal_seqs(restore)?
            .last()
            .map(|s| s + 1)
            .unwrap_or(0))
    }

    /// Every record of `restore`, in order.
    pub fn journal(&self, restore: &str) -> Result<Vec<JournalRecord>> {
        let mut out = Vec::new();
        for seq in self.journal_seqs(restore)? {
            let key = journal_key(restore, seq);
            let bytes = self.inner.backend.get(&key)?;
            out.push(JournalRecord {
                seq,
                body: decode_meta(&key, &bytes)?,
            });
        }
        Ok(out)
    }

    /// The restore ids that have a journal, sorted.
    pub fn journals(&self) -> Result<Vec<String>> {
        let mut ids: Vec<String> = self
            .inner
            .backend
            .list(keys::JOURNALS_PREFIX)?
            .iter()
            .filter_map(|o| {
                let rest = o.key.strip_prefix(keys::JOURNALS_PREFIX)?;
                let (id, _) = rest.split_once('/')?;
                Some(id.to_string())
            })
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}
