//! Counters the benchmarks report.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Request counters since start (or the last reset).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SimStats {
    /// Every HTTP request (Graph, token endpoint, control API).
    pub requests: u64,
    /// Graph requests (`/v1.0`, `/beta`), counting a `$batch` once.
    pub graph_requests: u64,
    pub token_requests: u64,
    pub batch_requests: u64,
    /// Sub-requests inside `$batch` bodies.
    pub batch_items: u64,
    /// 429 responses (including per-item 429s inside batches).
    pub throttled: u64,
    /// Identity resource units charged.
    pub ru_spent: u64,
    /// SharePoint resource units charged.
    pub sharepoint_ru_spent: u64,
    pub write_units: u64,
    /// Collection pages served (responses with a `value` array).
    pub pages: u64,
    pub objects_returned: u64,
    pub faults_injected: u64,
    pub dropped: u64,
    /// Responses by status code.
    pub status: BTreeMap<u16, u64>,
}

impl SimStats {
    pub fn count_status(&mut self, status: u16) {
        *self.status.entry(status).or_insert(0) += 1;
    }
}
