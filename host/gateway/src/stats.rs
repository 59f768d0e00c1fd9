//! Per-task counters and their serialisable snapshot (stored in snapshots, exported as
//! Prometheus text).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Live counters of one task (shared by every handle `for_task` gave out for that name).
#[derive(Debug, Default)]
pub struct Counters {
    requests: AtomicU64,
    batch_items: AtomicU64,
    retries: AtomicU64,
    throttled: AtomicU64,
    resource_units: AtomicU64,
    sharepoint_resource_units: AtomicU64,
    bytes_received: AtomicU64,
    wait_micros: AtomicU64,
    queue_micros: AtomicU64,
    paced_micros: AtomicU64,
    read_ahead: AtomicU64,
    read_ahead_used: AtomicU64,
    failures: AtomicU64,
}

impl Counters {
    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Relaxed);
    }
    pub(crate) fn batch_items(&self, n: u64) {
        self.batch_items.fetch_add(n, Relaxed);
    }
    pub(crate) fn retry(&self, n: u64) {
        self.retries.fetch_add(n, Relaxed);
    }
    pub(crate) fn throttled(&self, n: u64) {
        self.throttled.fetch_add(n, Relaxed);
    }
    pub(crate) fn resource_units(&self, headers: &[(String, String)]) {
        if let Some(ru) = crate::header(headers, crate::pacer::RESOURCE_UNIT_HEADER)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
        {
            self.resource_units.fetch_add(ru.round() as u64, Relaxed);
        }
    }
    pub(crate) fn sharepoint_units(&self, n: u32) {
        self.sharepoint_resource_units.fetch_add(n as u64, Relaxed);
    }
    pub(crate) fn bytes(&self, n: u64) {
        self.bytes_received.fetch_add(n, Relaxed);
    }
    pub(crate) fn waited(&self, d: Duration) {
        self.wait_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }
    pub(crate) fn queued(&self, d: Duration) {
        self.queue_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }
    pub(crate) fn paced(&self, d: Duration) {
        self.paced_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }
    pub(crate) fn read_ahead(&self) {
        self.read_ahead.fetch_add(1, Relaxed);
    }
    pub(crate) fn read_ahead_used(&self) {
        self.read_ahead_used.fetch_add(1, Relaxed);
    }
    pub(crate) fn failure(&self) {
        self.failures.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> TaskStats {
        TaskStats {
            requests: self.requests.load(Relaxed),
            batch_items: self.batch_items.load(Relaxed),
            retries: self.retries.load(Relaxed),
            throttled: self.throttled.load(Relaxed),
            resource_units: self.resource_units.load(Relaxed),
            sharepoint_resource_units: self.sharepoint_resource_units.load(Relaxed),
            bytes_received: self.bytes_received.load(Relaxed),
            wait_seconds: self.wait_micros.load(Relaxed) as f64 / 1e6,
            queue_seconds: self.queue_micros.load(Relaxed) as f64 / 1e6,
            paced_seconds: self.paced_micros.load(Relaxed) as f64 / 1e6,
            pages_read_ahead: self.read_ahead.load(Relaxed),
            pages_read_ahead_used: self.read_ahead_used.load(Relaxed),
            failures: self.failures.load(Relaxed),
        }
    }
}

/// What one task (or the whole connection) cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskStats {
    /// HTTP requests sent (every attempt; a `$batch` POST counts once; downloads from
    /// pre-authenticated URLs count too). Token requests are not included.
    pub requests: u64,
    /// Sub-requests sent inside `$batch` bodies (re-sent items count again).
    pub batch_items: u64,
    /// Attempts beyond the first: re-sent requests and re-sent `$batch` items.
    pub retries: u64,
    /// Throttled responses, 429 and 503 (including `$batch` items).
    pub throttled: u64,
    /// Sum of `x-ms-resource-unit` response headers (including `$batch` items).
    pub resource_units: u64,
    /// SharePoint/OneDrive resource units of the requests that were served (not throttled),
    /// by Microsoft's documented costs (SharePoint sends no per-request header): 5 per
    /// permission operation, 2 per multi-item query or write, 1 otherwise.
    #[serde(default)]
    pub sharepoint_resource_units: u64,
    /// Response body bytes received (all attempts, downloads included).
    pub bytes_received: u64,
    /// Time spent sleeping before retries (`Retry-After` and backoff).
    pub wait_seconds: f64,
    /// Time spent waiting for a concurrency slot, for a connection-wide throttling pause or
    /// for the identity budget (includes `paced_seconds`).
    pub queue_seconds: f64,
    /// Time low-priority requests (`$batch` identity reads) waited for the identity budget to
    /// have room above the reserve kept for page chains.
    #[serde(default)]
    pub paced_seconds: f64,
    /// Pages requested ahead of the caller (their requests are counted in `requests`).
    #[serde(default)]
    pub pages_read_ahead: u64,
    /// Pages read ahead that the caller then asked for (the rest were requests in vain).
    #[serde(default)]
    pub pages_read_ahead_used: u64,
    /// Calls that returned an error (budget exhausted, refused token, transport failure).
    pub failures: u64,
}

impl TaskStats {
    fn add(&mut self, o: &TaskStats) {
        self.requests += o.requests;
        self.batch_items += o.batch_items;
        self.retries += o.retries;
        self.throttled += o.throttled;
        self.resource_units += o.resource_units;
        self.sharepoint_resource_units += o.sharepoint_resource_units;
        self.bytes_received += o.bytes_received;
        // Whole microseconds, so totals print (and parse back) exactly.
        self.wait_seconds = micros(self.wait_seconds + o.wait_seconds);
        self.queue_seconds = micros(self.queue_seconds + o.queue_seconds);
        self.paced_seconds = micros(self.paced_seconds + o.paced_seconds);
        self.pages_read_ahead += o.pages_read_ahead;
        self.pages_read_ahead_used += o.pages_read_ahead_used;
        self.failures += o.failures;
    }
}

/// A snapshot of a gateway's counters: per task and in total.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GatewayStats {
    /// The connection's name.
    pub connection: String,
    pub total: TaskStats,
    pub tasks: BTreeMap<String, TaskStats>,
    /// Token requests made (successful or not).
    pub token_requests: u64,
    /// The adaptive connection-wide concurrency limit now.
    pub concurrency_limit: f64,
    /// The most requests that were in flight at once.
    pub peak_in_flight: u64,
    /// How often throttling shrank the limit.
    pub limit_decreases: u64,
    /// The fraction of the identity RU budget in use that Graph last reported (0.8 stands for
    /// "80 % or less"; 1.0 after a throttled response); `None` before any report.
    #[serde(default)]
    pub budget_use: Option<f64>,
    /// Low-priority requests that waited for the identity budget.
    #[serde(default)]
    pub low_priority_holds: u64,
}

impl GatewayStats {
    pub(crate) fn from_tasks(connection: &str, tasks: BTreeMap<String, TaskStats>) -> Self {
        let mut total = TaskStats::default();
        for t in tasks.values() {
            total.add(t);
        }
        GatewayStats {
            connection: connection.to_string(),
            total,
            tasks,
            ..Default::default()
        }
    }

    /// The counters in the Prometheus text exposition format, one series per task
    /// (`cairn_graph_*{connection="…",task="…"}`) plus the connection's gauges.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let conn = escape_label(&self.connection);
        type Get = fn(&TaskStats) -> f64;
        let series: [(&str, &str, &str, Get); 11] = [
            (
                "cairn_graph_requests_total",
                "counter",
                "HTTP requests sent to Graph (every attempt)",
                |t| t.requests as f64,
            ),
            (
                "cairn_graph_batch_items_total",
                "counter",
                "Sub-requests sent inside $batch bodies",
                |t| t.batch_items as f64,
            ),
            (
                "cairn_graph_retries_total",
                "counter",
                "Requests and batch items sent again",
                |t| t.retries as f64,
            ),
            (
                "cairn_graph_throttled_total",
                "counter",
                "Throttled responses (429, 503)",
                |t| t.throttled as f64,
            ),
            (
                "cairn_graph_resource_units_total",
                "counter",
                "Sum of x-ms-resource-unit",
                |t| t.resource_units as f64,
            ),
            (
                "cairn_graph_sharepoint_resource_units_total",
                "counter",
                "SharePoint resource units of served requests (documented costs)",
                |t| t.sharepoint_resource_units as f64,
            ),
            (
                "cairn_graph_received_bytes_total",
                "counter",
                "Response body bytes received",
                |t| t.bytes_received as f64,
            ),
            (
                "cairn_graph_retry_wait_seconds_total",
                "counter",
                "Time slept before retries",
                |t| t.wait_seconds,
            ),
            (
                "cairn_graph_queue_wait_seconds_total",
                "counter",
                "Time waited for a concurrency slot",
                |t| t.queue_seconds,
            ),
            (
                "cairn_graph_paced_wait_seconds_total",
                "counter",
                "Time low-priority requests waited for the identity budget",
                |t| t.paced_seconds,
            ),
            (
                "cairn_graph_failures_total",
                "counter",
                "Calls that returned an error",
                |t| t.failures as f64,
            ),
        ];
        for (name, kind, help, get) in series {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (task, t) in &self.tasks {
                let _ = writeln!(
                    out,
                    "{name}{{connection=\"{conn}\",task=\"{}\"}} {}",
                    escape_label(task),
                    fmt_num(get(t))
                );
            }
        }
        let gauges: [(&str, &str, &str, f64); 5] = [
            (
                "cairn_graph_token_requests_total",
                "counter",
                "Token requests made",
                self.token_requests as f64,
            ),
            (
                "cairn_graph_concurrency_limit",
                "gauge",
                "Adaptive connection-wide concurrency limit",
                self.concurrency_limit,
            ),
            (
                "cairn_graph_peak_in_flight",
                "gauge",
                "Most requests in flight at once",
                self.peak_in_flight as f64,
            ),
            (
                "cairn_graph_limit_decreases_total",
                "counter",
                "Times throttling shrank the limit",
                self.limit_decreases as f64,
            ),
            (
                "cairn_graph_low_priority_holds_total",
                "counter",
                "Low-priority requests that waited for the identity budget",
                self.low_priority_holds as f64,
            ),
        ];
        for (name, kind, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name}{{connection=\"{conn}\"}} {}", fmt_num(v));
        }
        out
    }
}

fn micros(seconds: f64) -> f64 {
    (seconds * 1e6).round() / 1e6
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_and_prometheus() {
        let a = Counters::default();
        a.request();
        a.request();
        a.throttled(1);
        a.resource_units(&[("x-ms-resource-unit".into(), "2".into())]);
        a.waited(Duration::from_millis(1500));
        let b = Counters::default();
        b.request();
        b.bytes(10);
        let mut tasks = BTreeMap::new();
        tasks.insert("users".to_string(), a.snapshot());
        tasks.insert("gro\"ups".to_string(), b.snapshot());
        let s = GatewayStats::from_tasks("prod", tasks);
        assert_eq!(s.total.requests, 3);
        assert_eq!(s.total.resource_units, 2);
        assert_eq!(s.total.bytes_received, 10);
        assert!((s.total.wait_seconds - 1.5).abs() < 1e-9);
        let text = s.to_prometheus();
        assert!(
            text.contains("cairn_graph_requests_total{connection=\"prod\",task=\"users\"} 2"),
            "{text}"
        );
        assert!(text.contains("task=\"gro\\\"ups\""), "{text}");
        assert!(
            text.contains(
                "cairn_graph_retry_wait_seconds_total{connection=\"prod\",task=\"users\"} 1.5"
            ),
            "{text}"
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["tasks"]["users"]["throttled"], 1);
    }
}
