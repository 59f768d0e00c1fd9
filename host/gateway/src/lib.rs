//! # Cairn's Microsoft Graph gateway
//!
//! The host side of a plugin's `graph` import: it implements
//! [`cairn_runtime::GraphConnection`] for real Microsoft Graph (any cloud) and for the
//! simulator. Plugins never see a token; the gateway
//!
//! * gets app-only tokens by the client-credentials flow, with a client secret or a certificate
//!   assertion (PS256, `x5t#S256`), caches them, refreshes them early and single-flight, and
//!   refreshes once more when Graph answers 401;
//! * retries 429/503/504 after `Retry-After` (decimal seconds), backs off exponentially with
//!   jitter otherwise (and for transport errors and, on idempotent requests, 500/502), within a
//!   retry budget (attempts and total wait);
//! * limits concurrency per connection adaptively (AIMD: halve on throttling, grow slowly on
//!   success; a `Retry-After` pauses new requests) and per Outlook mailbox (4 by default);
//! * paces `$batch` identity reads (low priority) by the identity resource-unit budget so that
//!   page chains never find it empty, and reads each task's next page ahead while the task
//!   works on the current one;
//! * splits `$batch` calls into batches of 20 that respect `dependsOn`, and re-sends throttled
//!   items;
//! * streams downloads and follows redirects to pre-authenticated URLs **without** the token;
//! * counts requests, retries, throttles, resource units, bytes and waiting per task.
//!
//! ```no_run
//! use cairn_gateway::{Cloud, Credential, Gateway, GatewayConfig};
//! let config = GatewayConfig::new("contoso.onmicrosoft.com", "client-id", Credential::secret("…"))
//!     .with_cloud(Cloud::Global);
//! let gateway = Gateway::connect(config)?;
//! let graph = gateway.for_task("entra/users"); // Arc<dyn GraphConnection> for the runtime
//! # let _ = graph;
//! println!("{}", serde_json::to_string(&gateway.stats()).unwrap());
//! # Ok::<(), cairn_gateway::GatewayError>(())
//! ```
//!
//! ## Threads
//! The trait's methods are synchronous: plugins run on blocking threads. Each call is run as a
//! task on the gateway's tokio runtime (its own two-thread runtime, or a multi-thread runtime
//! whose [`tokio::runtime::Handle`] is given to [`Gateway::connect_with_handle`]) and the
//! calling thread parks until it finishes. Call from plain threads or `spawn_blocking`
//! threads, **not from inside a tokio worker** (an async task): the call would block that
//! worker for the whole request, and with a borrowed handle could starve the runtime the
//! request needs.

mod batch;
mod blocking;
mod client;
pub mod config;
mod download;
pub mod error;
mod limiter;
pub mod pacer;
mod prefetch;
pub mod retry;
pub mod secret;
pub mod stats;
mod token;
mod upload;

pub use config::{
    AssertionAlgorithm, CertificateCredential, Cloud, ConcurrencyConfig, Credential, GatewayConfig,
    PacingConfig, RetryPolicy, GLOBAL_GRAPH_SCOPE,
};
pub use error::GatewayError;
pub use pacer::Priority;
pub use secret::Secret;
pub use stats::{GatewayStats, TaskStats};

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_runtime::{BatchItem, GraphConnection, HttpRequest, HttpResponse};
use url::Url;

use crate::client::{Outgoing, Received};
use crate::limiter::Limiter;
use crate::pacer::Pacer;
use crate::stats::Counters;
use crate::token::TokenProvider;

/// Shared state of a connection (everything a request task needs).
pub(crate) struct Inner {
    name: String,
    base: Url,
    handle: tokio::runtime::Handle,
    http: reqwest::Client,
    tokens: TokenProvider,
    retry: RetryPolicy,
    concurrency: ConcurrencyConfig,
    request_timeout: Duration,
    limiter: Arc<Limiter>,
    pacer: Pacer,
    /// Spaces Conditional Access requests (1 per second per tenant).
    ca_gate: pacer::RateGate,
    read_ahead: bool,
    mailboxes: Mutex<HashMap<String, Arc<Limiter>>>,
    tasks: Mutex<BTreeMap<String, Arc<Counters>>>,
}

/// One Graph connection (a tenant, an app, a credential). Cheap to share; hand each task a
/// [`Gateway::for_task`] handle so its costs are attributed to it.
pub struct Gateway {
    inner: Arc<Inner>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("name", &self.inner.name)
            .field("graph", &self.inner.base.as_str())
            .finish_non_exhaustive()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            // Safe from any context, including inside another runtime.
            rt.shutdown_background();
        }
    }
}

impl Gateway {
    /// Validates the configuration and prepares the connection on a runtime of its own (two
    /// worker threads). No request is made: use [`Gateway::authenticate`] to check the
    /// credential up front.
    pub fn connect(config: GatewayConfig) -> Result<Arc<Gateway>, GatewayError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cairn-graph")
            .enable_all()
            .build()
            .map_err(|e| GatewayError::Runtime(format!("cannot start the runtime: {e}")))?;
        let handle = rt.handle().clone();
        let mut gw = Self::build(config, handle)?;
        gw.runtime = Some(rt);
        Ok(Arc::new(gw))
    }

    /// Like [`Gateway::connect`], on an existing **multi-thread** runtime.
    pub fn connect_with_handle(
        config: GatewayConfig,
        handle: tokio::runtime::Handle,
    ) -> Result<Arc<Gateway>, GatewayError> {
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return Err(GatewayError::Runtime(
                "the gateway needs a multi-thread tokio runtime (a current-thread runtime does \
                 not run its tasks while the caller waits)"
                    .into(),
            ));
        }
        Ok(Arc::new(Self::build(config, handle)?))
    }

    fn build(
        config: GatewayConfig,
        handle: tokio::runtime::Handle,
    ) -> Result<Gateway, GatewayError> {
        config.validate()?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .user_agent(config.user_agent.clone())
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| GatewayError::Runtime(format!("cannot build the HTTP client: {e}")))?;
        let c = &config.concurrency;
        let inner = Inner {
            name: config.name.clone(),
            base: config.cloud.graph_url(),
            handle,
            tokens: TokenProvider::new(http.clone(), &config),
            http,
            retry: config.retry.clone(),
            concurrency: config.concurrency.clone(),
            request_timeout: config.request_timeout,
            limiter: Limiter::new(c.initial, c.min, c.max, c.decrease_factor),
            pacer: Pacer::new(config.pacing.clone()),
            ca_gate: pacer::RateGate::new(
                config.pacing.conditional_access_interval,
                config.pacing.conditional_access_burst,
            ),
            read_ahead: config.read_ahead,
            mailboxes: Mutex::new(HashMap::new()),
            tasks: Mutex::new(BTreeMap::new()),
        };
        Ok(Gateway {
            inner: Arc::new(inner),
            runtime: None,
        })
    }

    /// The connection's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The Graph root, e.g. `https://graph.microsoft.com/`.
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// Gets a token now (or uses the cached one): checks tenant, app and credential.
    pub fn authenticate(&self) -> Result<(), GatewayError> {
        let inner = self.inner.clone();
        self.run(async move { inner.tokens.get().await.map(|_| ()) })?
    }

    /// A handle for one task: a [`GraphConnection`] whose requests are counted under `task`.
    /// Handles for the same name share counters.
    pub fn for_task(self: &Arc<Self>, task: &str) -> Arc<dyn GraphConnection> {
        self.task(task)
    }

    /// [`Gateway::for_task`] with the concrete type (typed errors).
    pub fn task(self: &Arc<Self>, task: &str) -> Arc<TaskConnection> {
        let counters = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(task.to_string())
            .or_default()
            .clone();
        Arc::new(TaskConnection {
            gateway: self.clone(),
            task: task.to_string(),
            counters,
            ahead: Default::default(),
        })
    }

    /// Counters per task and in total, and the connection's concurrency state.
    pub fn stats(&self) -> GatewayStats {
        let tasks: BTreeMap<String, TaskStats> = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.snapshot()))
            .collect();
        let mut s = GatewayStats::from_tasks(&self.inner.name, tasks);
        let l = self.inner.limiter.snapshot();
        let p = self.inner.pacer.snapshot();
        s.token_requests = self.inner.tokens.requests();
        s.budget_use = p.last_use;
        s.low_priority_holds = p.holds;
        s.concurrency_limit = l.limit;
        s.peak_in_flight = l.peak_in_flight as u64;
        s.limit_decreases = l.decreases;
        s
    }

    /// Runs `fut` on the gateway's runtime and parks the calling thread until it is done.
    fn run<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, GatewayError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        blocking::park_on(rx).map_err(|_| {
            GatewayError::Runtime(
                "the request task ended without an answer (runtime shut down?)".into(),
            )
        })
    }

    fn check_on_graph(&self, url: &Url) -> Result<(), GatewayError> {
        let b = &self.inner.base;
        let same = url.scheme() == b.scheme()
            && url.host_str() == b.host_str()
            && url.port_or_known_default() == b.port_or_known_default();
        if !same || !url.path().starts_with(b.path()) {
            return Err(GatewayError::Request(format!(
                "{} is not on this connection's Graph endpoint {}; the gateway attaches tokens \
                 only to its own Graph host",
                client::display_target(url, false),
                b
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(GatewayError::Request(
                "URLs with user information are not allowed".into(),
            ));
        }
        Ok(())
    }

    fn outgoing(&self, request: HttpRequest, stream: bool) -> Result<Outgoing, GatewayError> {
        // Outlook's pre-authenticated upload URLs carry their own credential (see `upload`):
        // sent without the token, in the mailbox's Outlook slots only.
        let upload = upload::preauthenticated(&self.inner.base, &request.url);
        if upload.is_none() {
            self.check_on_graph(&request.url)?;
        }
        let method = reqwest::Method::from_bytes(request.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| {
                GatewayError::Request(format!("`{}` is not an HTTP method", request.method))
            })?;
        // An Outlook upload goes in its mailbox's slots; a drive upload in SharePoint's.
        let mailbox = match &upload {
            Some(upload::Preauthenticated::Outlook(mailbox)) => Some(mailbox.clone()),
            _ => self.inner.mailbox_of(&request.url),
        };
        let priority = Priority::requested(&request.headers).unwrap_or_default();
        let conditional_access =
            u32::from(upload.is_none() && self.inner.is_conditional_access(&request.url));
        Ok(Outgoing {
            priority,
            conditional_access,
            idempotent: retry::idempotent(method.as_str()),
            method,
            headers: request
                .headers
                .into_iter()
                .filter(|(k, _)| client::allowed_header(k))
                .collect(),
            url: request.url,
            body: request.body,
            auth: upload.is_none(),
            graph_limited: upload.is_none(),
            mailboxes: mailbox.into_iter().collect(),
            stream,
        })
    }

    fn send_counted(
        &self,
        request: HttpRequest,
        counters: &Arc<Counters>,
    ) -> Result<HttpResponse, GatewayError> {
        let out = self
            .outgoing(request, false)
            .inspect_err(|_| counters.failure())?;
        let inner = self.inner.clone();
        let c = counters.clone();
        let received = self.run(async move { inner.execute(out, &c).await })??;
        match received {
            Received::Buffered {
                status,
                headers,
                body,
                ..
            } => Ok(HttpResponse {
                status,
                headers,
                body,
            }),
            Received::Streaming { .. } => unreachable!("buffered request"),
        }
    }

    fn batch_counted(
        &self,
        items: Vec<BatchItem>,
        counters: &Arc<Counters>,
    ) -> Result<Vec<HttpResponse>, GatewayError> {
        for it in &items {
            self.check_on_graph(&it.request.url)
                .inspect_err(|_| counters.failure())?;
        }
        let inner = self.inner.clone();
        let c = counters.clone();
        self.run(async move { batch::run(&inner, items, &c).await })?
    }

    fn download_counted(
        &self,
        request: HttpRequest,
        counters: &Arc<Counters>,
    ) -> Result<Box<dyn Read + Send>, GatewayError> {
        if !request.method.eq_ignore_ascii_case("GET") {
            counters.failure();
            return Err(GatewayError::Request(format!(
                "downloads are GET requests (got {})",
                request.method
            )));
        }
        let out = self
            .outgoing(request, true)
            .inspect_err(|_| counters.failure())?;
        let inner = self.inner.clone();
        let c = counters.clone();
        let rx = self.run(async move { download::open(&inner, out, c).await })??;
        Ok(Box::new(blocking::BlockingBody::new(rx)))
    }
}

/// A task's view of a [`Gateway`]: what the runtime gets as the plugin's `graph` capability.
pub struct TaskConnection {
    gateway: Arc<Gateway>,
    task: String,
    counters: Arc<Counters>,
    /// The page read ahead for this handle's chain (see `prefetch`).
    ahead: prefetch::Slot,
}

impl std::fmt::Debug for TaskConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskConnection")
            .field("connection", &self.gateway.inner.name)
            .field("task", &self.task)
            .finish()
    }
}

impl TaskConnection {
    pub fn task(&self) -> &str {
        &self.task
    }
    pub fn stats(&self) -> TaskStats {
        self.counters.snapshot()
    }
    /// [`GraphConnection::send`] with a typed error.
    pub fn send_request(&self, request: HttpRequest) -> Result<HttpResponse, GatewayError> {
        self.gateway
            .send_reading_ahead(request, &self.counters, &self.ahead)
    }
    /// [`GraphConnection::batch`] with a typed error.
    pub fn send_batch(&self, items: Vec<BatchItem>) -> Result<Vec<HttpResponse>, GatewayError> {
        self.gateway.batch_counted(items, &self.counters)
    }
    /// [`GraphConnection::download`] with a typed error.
    pub fn open_download(
        &self,
        request: HttpRequest,
    ) -> Result<Box<dyn Read + Send>, GatewayError> {
        self.gateway.download_counted(request, &self.counters)
    }
}

impl GraphConnection for TaskConnection {
    fn base_url(&self) -> &Url {
        &self.gateway.inner.base
    }
    fn preauthenticated(&self, url: &Url) -> bool {
        upload::preauthenticated(&self.gateway.inner.base, url).is_some()
    }
    fn send(&self, request: HttpRequest) -> Result<HttpResponse, String> {
        self.send_request(request).map_err(|e| e.to_string())
    }
    fn batch(&self, requests: Vec<BatchItem>) -> Result<Vec<HttpResponse>, String> {
        self.send_batch(requests).map_err(|e| e.to_string())
    }
    fn download(&self, request: HttpRequest) -> Result<Box<dyn Read + Send>, String> {
        self.open_download(request).map_err(|e| e.to_string())
    }
}

/// The value of a response or request header (names compare case-insensitively).
pub(crate) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}
