//! The restore journal, written into the repository as results arrive (group commit: one
//! record per batch of finished actions), and read back to resume.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::Context;
use cairn_repository::Repository;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::restorer::Remap;

/// What became of one action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JournalEntry {
    /// The action's id in the combined plan (`entra:user/…/recreate`).
    pub action: String,
    /// The collector whose restorer ran it.
    pub plugin: String,
    /// `undelete`, `recreate`, `update`, `link`, `unlink`, `manual`.
    pub kind: String,
    pub item_kind: String,
    /// The object's id in the snapshot (the old id).
    pub item_id: String,
    pub display_name: String,
    /// The object's id after the action, if it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_id: Option<String>,
    /// `done`, `already-done`, `failed`, `manual` or `skipped` (a dependency failed).
    pub outcome: String,
    /// The error (failed, skipped) or the instruction (manual).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub time: String,
}

impl JournalEntry {
    /// Done in this or an earlier run (skipped on re-runs).
    pub fn is_done(&self) -> bool {
        matches!(self.outcome.as_str(), "done" | "already-done")
    }
}

/// What earlier runs of a restore left in its journal.
#[derive(Debug, Default)]
pub struct Prior {
    /// Apply attempts started.
    pub attempts: usize,
    /// Actions journaled as done or already done, by action id.
    pub done: HashMap<String, JournalEntry>,
    /// Every entry, in journal order.
    pub entries: Vec<JournalEntry>,
    /// Old → new id mappings: (kind, old, new).
    pub mappings: Vec<(String, String, String)>,
    /// The start records (header of each attempt).
    pub starts: Vec<serde_json::Value>,
    /// The end records.
    pub ends: Vec<serde_json::Value>,
}

/// Reads the journal of `restore` (empty if there is none).
pub fn read_journal(repo: &Repository, restore: &str) -> anyhow::Result<Prior> {
    let mut prior = Prior::default();
    for rec in repo
        .journal(restore)
        .with_context(|| format!("reading the journal of restore {restore}"))?
    {
        match rec.body["type"].as_str() {
            Some("start") => {
                prior.attempts += 1;
                prior.starts.push(rec.body);
            }
            Some("end") => prior.ends.push(rec.body),
            Some("actions") => {
                #[derive(Deserialize)]
                struct Batch {
                    #[serde(default)]
                    entries: Vec<JournalEntry>,
                    #[serde(default)]
                    mappings: Vec<(String, String, String)>,
                }
                let b: Batch = serde_json::from_value(rec.body).with_context(|| {
                    format!("journal record {} of restore {restore} is damaged", rec.seq)
                })?;
                for e in b.entries {
                    if let Some(new) = &e.new_id {
                        prior
                            .mappings
                            .push((e.item_kind.clone(), e.item_id.clone(), new.clone()));
                    }
                    if e.is_done() {
                        prior.done.insert(e.action.clone(), e.clone());
                    }
                    prior.entries.push(e);
                }
                prior.mappings.extend(b.mappings);
            }
            _ => {}
        }
    }
    Ok(prior)
}

/// Writes journal records on a background thread: each record holds every entry that finished
/// while the previous record was being stored, plus the id mappings recorded meanwhile.
pub struct JournalWriter {
    tx: Option<mpsc::Sender<JournalEntry>>,
    handle: Option<JoinHandle<()>>,
    state: Arc<Mutex<WriterState>>,
    repo: Repository,
    restore: String,
    remap: Arc<Remap>,
}

#[derive(Default)]
struct WriterState {
    next_seq: u64,
    error: Option<String>,
    records: u64,
}

impl JournalWriter {
    /// Starts the journal of an apply attempt with its `start` record.
    pub fn start(
        repo: &Repository,
        restore: &str,
        header: serde_json::Value,
        remap: Arc<Remap>,
    ) -> anyhow::Result<JournalWriter> {
        let seq = repo.next_journal_seq(restore)?;
        let mut header = header;
        header["type"] = json!("start");
        let used = repo
            .append_journal(restore, seq, &header)
            .with_context(|| format!("writing the journal of restore {restore}"))?;
        let state = Arc::new(Mutex::new(WriterState {
            next_seq: used + 1,
            error: None,
            records: 1,
        }));
        let (tx, rx) = mpsc::channel::<JournalEntry>();
        let handle = {
            let repo = repo.clone();
            let restore = restore.to_string();
            let state = state.clone();
            let remap = remap.clone();
            std::thread::Builder::new()
                .name("cairn-journal".into())
                .spawn(move || {
                    while let Ok(first) = rx.recv() {
                        let mut entries = vec![first];
                        while let Ok(more) = rx.try_recv() {
                            entries.push(more);
                        }
                        write_batch(&repo, &restore, &state, entries, &remap);
                    }
                })?
        };
        Ok(JournalWriter {
            tx: Some(tx),
            handle: Some(handle),
            state,
            repo: repo.clone(),
            restore: restore.to_string(),
            remap,
        })
    }

    /// Queues an entry (written with the next record).
    pub fn record(&self, entry: JournalEntry) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(entry);
        }
    }

    /// The first write error, if any (the apply stops taking new actions).
    pub fn error(&self) -> Option<String> {
        self.state.lock().expect("journal lock").error.clone()
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.state.lock().expect("journal lock").records
    }

    /// Writes what is queued and the `end` record.
    pub fn finish(mut self, end: serde_json::Value) -> anyhow::Result<u64> {
        drop(self.tx.take());
        if let Some(h) = self.handle.take() {
            h.join()
                .map_err(|_| anyhow::anyhow!("the journal thread panicked"))?;
        }
        // Mappings recorded without an entry to carry them.
        let rest = self.remap.take_new();
        if !rest.is_empty() {
            write_mappings(&self.repo, &self.restore, &self.state, rest);
        }
        let mut end = end;
        end["type"] = json!("end");
        let seq = self.state.lock().expect("journal lock").next_seq;
        self.repo
            .append_journal(&self.restore, seq, &end)
            .with_context(|| format!("writing the journal of restore {}", self.restore))?;
        let st = self.state.lock().expect("journal lock");
        match &st.error {
            Some(e) => Err(anyhow::anyhow!("writing the journal: {e}")),
            None => Ok(st.records + 1),
        }
    }
}

fn write_batch(
    repo: &Repository,
    restore: &str,
    state: &Mutex<WriterState>,
    entries: Vec<JournalEntry>,
    remap: &Remap,
) {
    let mappings = remap.take_new();
    put(
        repo,
        restore,
        state,
        json!({"type": "actions", "entries": entries, "mappings": mappings}),
    );
}

fn write_mappings(
    repo: &Repository,
    restore: &str,
    state: &Mutex<WriterState>,
    mappings: Vec<(String, String, String)>,
) {
    put(
        repo,
        restore,
        state,
        json!({"type": "actions", "entries": [], "mappings": mappings}),
    );
}

fn put(repo: &Repository, restore: &str, state: &Mutex<WriterState>, body: serde_json::Value) {
    let seq = state.lock().expect("journal lock").next_seq;
    match repo.append_journal(restore, seq, &body) {
        Ok(used) => {
            let mut st = state.lock().expect("journal lock");
            st.next_seq = used + 1;
            st.records += 1;
        }
        Err(e) => {
            tracing::error!(restore, "writing a journal record: {e}");
            let mut st = state.lock().expect("journal lock");
            st.error.get_or_insert_with(|| e.to_string());
        }
    }
}

/// Counts of entries by outcome.
pub fn outcome_counts<'a>(
    entries: impl IntoIterator<Item = &'a JournalEntry>,
) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in entries {
        *m.entry(e.outcome.clone()).or_insert(0) += 1;
    }
    m
}
