#![recursion_limit = "512"]
//! # Cairn's Microsoft Graph tenant simulator
//!
//! A faithful, stateful Microsoft Graph tenant on loopback (see the README section "Graph
//! simulator" and `shared/GRAPH.md`): the v2 token endpoint (client secret and certificate
//! assertion), directory objects with Graph's validation rules, paging, `$select`/`$filter`/
//! `$count`, delta queries with tokens, the recycle bin, throttling by resource units,
//! `$batch`, fault injection, a latency model, Microsoft 365 mail and drives, and a control API.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use cairn_graph_sim::{Profile, SimConfig, Simulator};
//! let sim = Simulator::start(SimConfig::new(Profile::Small, 1)).await?;
//! println!("Graph at {}/v1.0, token endpoint {}", sim.base_url(), sim.token_url());
//! let token = sim.access_token(); // or POST client_id/client_secret to sim.token_url()
//! let report = sim.churn(5.0);    // mutate 5 % of the directory
//! sim.advance_clock(std::time::Duration::from_secs(8 * 86_400)); // delta tokens now expired
//! println!("{:?} {}", sim.stats(), token.len());
//! # let _ = report; Ok(()) }
//! ```

pub mod auth;
pub mod batch;
pub mod certs;
pub mod config;
pub mod control;
pub mod delta;
pub mod directory;
pub mod drive;
pub mod drive_upload;
pub mod faults;
pub mod gen;
pub mod http;
pub mod list;
pub mod mail;
pub mod mail_upload;
pub mod model;
pub mod query;
pub mod render;
pub mod server;
pub mod state;
pub mod stats;
pub mod testkit;
pub mod throttle;
pub mod util;

pub use config::{LatencyModel, Profile, SimConfig, ThrottleConfig};
pub use control::{AppCredentials, ChurnReport};
pub use faults::{FaultKind, FaultRule};
pub use state::{diff_dumps, StateDiff};
pub use stats::SimStats;

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Starts simulators.
pub struct Simulator;

impl Simulator {
    /// Generates the tenant (deterministic for `config.seed` and `config.profile`), binds
    /// `127.0.0.1:{config.port}` (0 = any free port) and serves Graph in a background task of the
    /// current tokio runtime. Dropping the handle stops the server.
    pub async fn start(config: SimConfig) -> anyhow::Result<SimHandle> {
        let started = Instant::now();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await?;
        let addr = listener.local_addr()?;
        let base = format!("http://{addr}");
        let cfg = config.clone();
        let base2 = base.clone();
        let inner = tokio::task::spawn_blocking(move || server::build(cfg, base2)).await?;
        let inner = Arc::new(inner);
        let generated_in = started.elapsed();
        let app_state = inner.clone();
        let router = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let sim = app_state.clone();
            async move { server::handle(sim, req).await }
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(SimHandle {
            inner,
            addr,
            shutdown: Some(tx),
            task: Some(task),
            startup: generated_in,
        })
    }
}

/// A running simulator. All control operations are available as methods (and over HTTP under
/// `/_sim/`).
pub struct SimHandle {
    inner: Arc<server::Inner>,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    startup: Duration,
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl SimHandle {
    /// `http://127.0.0.1:{port}`; Graph is under `/v1.0` and `/beta`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
    /// `http://127.0.0.1:{port}/v1.0`
    pub fn graph_url(&self) -> String {
        format!("{}/v1.0", self.base_url())
    }
    /// `http://127.0.0.1:{port}/{tenant}/oauth2/v2.0/token`
    pub fn token_url(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.base_url(), self.tenant_id())
    }
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn tenant_id(&self) -> String {
        self.inner.tenant().tenant_id.clone()
    }
    pub fn domain(&self) -> String {
        self.inner.tenant().domain.clone()
    }
    /// The default app (holds every permission the simulator knows).
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }
    pub fn client_secret(&self) -> &str {
        &self.inner.client_secret
    }
    pub fn config(&self) -> &SimConfig {
        &self.inner.cfg
    }
    /// Time spent generating the tenant before serving.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }
    /// Connection details as JSON (what `graph-sim` prints).
    pub fn info(&self) -> serde_json::Value {
        server::info(&self.inner)
    }
    /// An access token for the default app, issued without an HTTP round trip.
    pub fn access_token(&self) -> String {
        self.token_for(&self.inner.client_id.clone())
    }
    /// An access token for any registered app (its current permissions).
    pub fn token_for(&self, client_id: &str) -> String {
        let t = self.inner.tenant();
        let roles = auth::roles_of(&t, client_id);
        let now = t.now();
        auth::issue_token(
            &t,
            client_id,
            &roles,
            now,
            now + t.cfg.token_lifetime.as_secs() as i64,
        )
    }
    /// Registers an app with a client secret and exactly these application permissions
    /// (e.g. `["User.Read.All"]`), for least-privilege tests.
    pub fn add_app(&self, permissions: &[&str]) -> AppCredentials {
        let perms: Vec<String> = permissions.iter().map(|s| s.to_string()).collect();
        control::add_app(&self.inner, "Test app", &perms)
    }
    /// Registers a certificate (DER) on an app so it can authenticate with a client assertion.
    pub fn add_certificate(&self, client_id: &str, der: &[u8]) -> anyhow::Result<String> {
        control::add_certificate(&mut self.inner.tenant(), client_id, der)
            .map_err(anyhow::Error::msg)
    }
    /// Randomly creates/updates/deletes `percent` % of users, groups, apps and service principals.
    pub fn churn(&self, percent: f64) -> ChurnReport {
        let round = self.inner.stats().requests + self.inner.tenant().seq;
        control::churn(&mut self.inner.tenant(), percent, round)
    }
    /// Deletes by id (soft where Graph soft-deletes, unless `hard`). Returns (deleted, missing ids).
    pub fn delete(&self, ids: &[String], hard: bool) -> (usize, Vec<String>) {
        control::bulk_delete(&mut self.inner.tenant(), ids, hard)
    }
    /// Advances the simulated clock (token expiry, delta token TTL, recycle-bin purge).
    pub fn advance_clock(&self, by: Duration) {
        control::advance_clock(&mut self.inner.tenant(), by.as_secs() as i64);
    }
    /// Simulated time (Unix seconds).
    pub fn now(&self) -> i64 {
        self.inner.tenant().now()
    }
    /// The full state as canonical JSON (sorted keys).
    pub fn dump(&self) -> serde_json::Value {
        self.inner.tenant().dump()
    }
    /// Compares two dumps.
    pub fn diff(a: &serde_json::Value, b: &serde_json::Value) -> StateDiff {
        diff_dumps(a, b)
    }
    pub fn add_fault(&self, rule: FaultRule) {
        self.inner.faults().rules.push(rule);
    }
    pub fn clear_faults(&self) {
        self.inner.faults().rules.clear();
    }
    pub fn stats(&self) -> SimStats {
        self.inner.stats().clone()
    }
    pub fn reset_stats(&self) {
        *self.inner.stats() = SimStats::default();
    }
    /// Direct access to the tenant state (for assertions in tests).
    pub fn with_tenant<R>(&self, f: impl FnOnce(&mut state::Tenant) -> R) -> R {
        f(&mut self.inner.tenant())
    }
    /// Identity RU budget per 10 s of this tenant (tier or configured).
    pub fn ru_per_10s(&self) -> f64 {
        self.inner.throttler().ru_capacity()
    }
    /// The lower bound on wall time for a workload under this simulator's limits and latency.
    pub fn lower_bound(&self, w: &Workload) -> Duration {
        w.lower_bound(
            self.inner.cfg.throttling.then(|| self.ru_per_10s()),
            self.inner.cfg.latency,
        )
    }
}

/// A read workload, to compute the best time any client could achieve.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Workload {
    pub requests: u64,
    pub resource_units: u64,
    pub objects: u64,
    /// Longest chain of requests that must run one after another (e.g. the pages of one list).
    pub longest_chain: u64,
    /// Objects per request in that chain.
    pub objects_per_request: u64,
    /// Requests the client runs at once.
    pub parallelism: u32,
}

impl Workload {
    /// Reading `objects` in pages of `page_size` at `ru_per_page` RU, `parallel` lists at once.
    pub fn full_read(objects: u64, page_size: u64, ru_per_page: u64, parallel: u32) -> Self {
        let pages = objects.div_ceil(page_size.max(1)).max(1);
        Workload {
            requests: pages,
            resource_units: pages * ru_per_page,
            objects,
            longest_chain: pages.div_ceil(parallel.max(1) as u64),
            objects_per_request: page_size,
            parallelism: parallel.max(1),
        }
    }
    /// max(RU budget bound, sequential page-chain bound, latency throughput bound).
    /// `ru_per_10s`: `None` when throttling is off; the first bucketful is free (burst).
    pub fn lower_bound(&self, ru_per_10s: Option<f64>, latency: Option<LatencyModel>) -> Duration {
        let ru_bound = match ru_per_10s {
            Some(cap) if cap > 0.0 => ((self.resource_units as f64 - cap).max(0.0)) / (cap / 10.0),
            _ => 0.0,
        };
        let (chain, throughput) = match latency {
            Some(l) => {
                let chain = self.longest_chain as f64
                    * l.for_objects(self.objects_per_request as usize)
                        .as_secs_f64();
                let total = self.requests as f64 * l.base.as_secs_f64()
                    + self.objects as f64 * l.per_object.as_secs_f64();
                (chain, total / self.parallelism.max(1) as f64)
            }
            None => (0.0, 0.0),
        };
        Duration::from_secs_f64(ru_bound.max(chain).max(throughput))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn lower_bound_components() {
        let w = Workload::full_read(100_000, 999, 1, 1);
        assert_eq!(w.requests, 101);
        let lat = LatencyModel {
            base: Duration::from_millis(100),
            per_object: Duration::from_micros(100),
        };
        let b = w.lower_bound(None, Some(lat));
        // 101 sequential pages of ~0.2 s
        assert!(b.as_secs_f64() > 19.0 && b.as_secs_f64() < 21.0, "{b:?}");
        let heavy = Workload {
            requests: 10_000,
            resource_units: 20_000,
            objects: 0,
            longest_chain: 1,
            objects_per_request: 0,
            parallelism: 100,
        };
        // (20,000 - 3,500) / 350 RU/s ≈ 47 s
        let b = heavy.lower_bound(Some(3500.0), None);
        assert!((b.as_secs_f64() - 47.14).abs() < 0.1, "{b:?}");
    }
}
