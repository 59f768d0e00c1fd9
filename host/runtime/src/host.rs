//! The host side of each plugin instance: its store data and the imports it may call.

use std::io::Read;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::cairn::plugin::{blob_store, content, graph, log, remap, snapshot, types};
use crate::capabilities::{check_headers, resolve_url_with, BatchItem, HttpRequest};
use crate::output::OutputTail;
use crate::Capabilities;

/// Longest log message kept from a plugin; longer ones are cut.
const MAX_LOG_MESSAGE: usize = 4096;

/// Caps linear memory and tables, and remembers whether the cap was hit (to tell "memory" from
/// other traps).
pub(crate) struct MemoryLimiter {
    pub(crate) cap: usize,
    pub(crate) hit: bool,
    /// The largest linear memory granted so far, in bytes (linear memory never shrinks).
    pub(crate) peak: usize,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.hit = true;
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A table element is a pointer-sized reference; hold tables to the same byte budget.
        if desired.saturating_mul(8) > self.cap {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }
}

/// Raised by the epoch callback when a call exceeds its guest-time limit.
#[derive(Debug)]
pub(crate) struct DeadlineExceeded;

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("guest time limit exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// The data of one plugin instance's `Store`.
pub(crate) struct HostState {
    pub(crate) plugin: String,
    pub(crate) task: Option<String>,
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) caps: Capabilities,
    pub(crate) stderr: OutputTail,
    /// When the current export call started.
    pub(crate) call_started: Instant,
    /// Time the current call spent in host imports (not counted against the guest limit).
    pub(crate) host_time: Duration,
    /// Guest-time limit of the current call.
    pub(crate) guest_limit: Duration,
}

impl HostState {
    pub(crate) fn new(plugin: &str, caps: Capabilities, memory_cap: usize) -> Self {
        let stderr = OutputTail::default();
        let mut wasi = WasiCtx::builder();
        // No arguments, no environment, no preopened directories, no network, no stdin.
        wasi.stdout(OutputTail::default())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        HostState {
            plugin: plugin.to_string(),
            task: None,
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                cap: memory_cap,
                hit: false,
                peak: 0,
            },
            caps,
            stderr,
            call_started: Instant::now(),
            host_time: Duration::ZERO,
            guest_limit: Duration::from_secs(60),
        }
    }

    /// Guest time used by the current call so far.
    pub(crate) fn guest_time(&self) -> Duration {
        self.call_started.elapsed().saturating_sub(self.host_time)
    }

    /// Runs `f` as host work: its duration does not count against the guest's time limit.
    fn in_host<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        let start = Instant::now();
        let r = f(self);
        self.host_time += start.elapsed();
        r
    }

    fn graph_request(
        &self,
        base: &url::Url,
        req: graph::Request,
    ) -> Result<HttpRequest, graph::RequestError> {
        let graph_conn = self.caps.graph.clone();
        let preauthenticated =
            |u: &url::Url| graph_conn.as_ref().is_some_and(|g| g.preauthenticated(u));
        let url = resolve_url_with(base, &req.url, &preauthenticated)
            .map_err(graph::RequestError::Refused)?;
        let method = req.method.to_ascii_uppercase();
        if !matches!(
            method.as_str(),
            "GET" | "POST" | "PATCH" | "PUT" | "DELETE" | "HEAD"
        ) {
            return Err(graph::RequestError::Refused(format!(
                "HTTP method `{}` is not allowed",
                req.method
            )));
        }
        let headers = check_headers(req.headers).map_err(graph::RequestError::Refused)?;
        let body = match req.body {
            graph::Body::None => Vec::new(),
            graph::Body::Bytes(b) => b,
            graph::Body::Stored(c) => self.read_content(&c)?,
            graph::Body::StoredBase64(c) => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .encode(self.read_content(&c)?)
                    .into_bytes()
            }
        };
        Ok(HttpRequest {
            method,
            url,
            headers,
            body,
        })
    }

    fn read_content(&self, c: &types::ContentRef) -> Result<Vec<u8>, graph::RequestError> {
        let store = self.caps.content.as_ref().ok_or_else(|| {
            graph::RequestError::Refused("this plugin has no access to stored content".into())
        })?;
        let r = crate::ContentRef {
            id: c.id.clone(),
            size: c.size,
        };
        let mut out = Vec::with_capacity(c.size.min(1 << 30) as usize);
        while (out.len() as u64) < c.size {
            let want = (c.size - out.len() as u64).min(8 << 20) as u32;
            let chunk = store
                .read(&r, out.len() as u64, want)
                .map_err(graph::RequestError::Unavailable)?;
            if chunk.is_empty() {
                return Err(graph::RequestError::Unavailable(format!(
                    "stored content {} ended early",
                    c.id
                )));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    fn no_graph(&self) -> graph::RequestError {
        graph::RequestError::Refused(format!(
            "plugin `{}` is not bound to a Graph connection (give it `connection = \"…\"` in the manifest)",
            self.plugin
        ))
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl graph::Host for HostState {
    fn send(&mut self, req: graph::Request) -> Result<graph::Response, graph::RequestError> {
        let conn = self.caps.graph.clone().ok_or_else(|| self.no_graph())?;
        let http = self.graph_request(conn.base_url(), req)?;
        self.in_host(|_| conn.send(http))
            .map(to_response)
            .map_err(graph::RequestError::Unavailable)
    }

    fn batch(
        &mut self,
        reqs: Vec<graph::BatchRequest>,
    ) -> Result<Vec<graph::Response>, graph::RequestError> {
        let conn = self.caps.graph.clone().ok_or_else(|| self.no_graph())?;
        let n = reqs.len() as u32;
        let mut items = Vec::with_capacity(reqs.len());
        for r in reqs {
            if let Some(bad) = r.depends_on.iter().find(|&&d| d >= n) {
                return Err(graph::RequestError::Refused(format!(
                    "batch request depends on index {bad}, but the batch has {n} requests"
                )));
            }
            items.push(BatchItem {
                request: self.graph_request(conn.base_url(), r.request)?,
                depends_on: r.depends_on,
            });
        }
        self.in_host(|_| conn.batch(items))
            .map(|rs| rs.into_iter().map(to_response).collect())
            .map_err(graph::RequestError::Unavailable)
    }
}

fn to_response(r: crate::HttpResponse) -> graph::Response {
    graph::Response {
        status: r.status,
        headers: r
            .headers
            .into_iter()
            .map(|(name, value)| graph::Header { name, value })
            .collect(),
        body: r.body,
    }
}

impl content::Host for HostState {
    fn download(&mut self, req: graph::Request) -> Result<types::ContentRef, graph::RequestError> {
        let conn = self.caps.graph.clone().ok_or_else(|| self.no_graph())?;
        let store = self.caps.content.clone().ok_or_else(|| {
            graph::RequestError::Refused("this plugin may not store content".into())
        })?;
        let http = self.graph_request(conn.base_url(), req)?;
        self.in_host(|_| {
            let mut reader: Box<dyn Read + Send> = conn
                .download(http)
                .map_err(graph::RequestError::Unavailable)?;
            store
                .store(&mut reader)
                .map(|c| types::ContentRef {
                    id: c.id,
                    size: c.size,
                })
                .map_err(graph::RequestError::Unavailable)
        })
    }

    fn download_many(
        &mut self,
        reqs: Vec<content::DownloadRequest>,
    ) -> Vec<Result<types::ContentRef, graph::RequestError>> {
        let conn = match self.caps.graph.clone() {
            Some(c) => c,
            None => return reqs.iter().map(|_| Err(self.no_graph())).collect(),
        };
        let Some(store) = self.caps.content.clone() else {
            return reqs
                .iter()
                .map(|_| {
                    Err(graph::RequestError::Refused(
                        "this plugin may not store content".into(),
                    ))
                })
                .collect();
        };
        // Check every request first (refusals are per entry), then run the downloads.
        let jobs: Vec<Result<(HttpRequest, Option<String>), graph::RequestError>> = reqs
            .into_iter()
            .map(|d| {
                self.graph_request(conn.base_url(), d.request)
                    .map(|r| (r, d.content_type))
            })
            .collect();
        self.in_host(|_| download_all(conn.as_ref(), store.as_ref(), jobs))
    }

    fn read(
        &mut self,
        content: types::ContentRef,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>, String> {
        let store = self
            .caps
            .content
            .clone()
            .ok_or("this plugin has no access to stored content")?;
        let r = crate::ContentRef {
            id: content.id,
            size: content.size,
        };
        self.in_host(|_| store.read(&r, offset, len.min(16 << 20)))
    }
}

/// Downloads run at once by one `download-many` call: Outlook's per-mailbox concurrency
/// (the gateway's limiters still apply to each request).
const DOWNLOADS_AT_ONCE: usize = 4;

type DownloadResult = Result<types::ContentRef, graph::RequestError>;

/// Runs the checked downloads on up to [`DOWNLOADS_AT_ONCE`] threads, each streaming its body
/// into `store`; results in the order of `jobs`.
fn download_all(
    conn: &dyn crate::GraphConnection,
    store: &dyn crate::ContentStore,
    jobs: Vec<Result<(HttpRequest, Option<String>), graph::RequestError>>,
) -> Vec<DownloadResult> {
    let one = |http: HttpRequest, content_type: Option<String>| -> DownloadResult {
        let mut reader: Box<dyn Read + Send> = conn
            .download(http)
            .map_err(graph::RequestError::Unavailable)?;
        store
            .store_typed(&mut reader, content_type.as_deref())
            .map(|c| types::ContentRef {
                id: c.id,
                size: c.size,
            })
            .map_err(graph::RequestError::Unavailable)
    };
    let n = jobs.len();
    let queue = std::sync::Mutex::new(jobs.into_iter().enumerate());
    let results = std::sync::Mutex::new(
        (0..n)
            .map(|_| None)
            .collect::<Vec<Option<DownloadResult>>>(),
    );
    std::thread::scope(|scope| {
        for _ in 0..DOWNLOADS_AT_ONCE.min(n) {
            scope.spawn(|| loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                let Some((i, job)) = next else {
                    return;
                };
                let r = job.and_then(|(http, ct)| one(http, ct));
                results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(graph::RequestError::Unavailable(
                    "the download was not run (a download thread panicked)".into(),
                ))
            })
        })
        .collect()
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        let mut message = message;
        if message.len() > MAX_LOG_MESSAGE {
            let mut cut = MAX_LOG_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let plugin = self.plugin.as_str();
        let task = self.task.as_deref().unwrap_or("-");
        match level {
            log::Level::Trace => tracing::trace!(plugin, task, "{message}"),
            log::Level::Debug => tracing::debug!(plugin, task, "{message}"),
            log::Level::Info => tracing::info!(plugin, task, "{message}"),
            log::Level::Warn => tracing::warn!(plugin, task, "{message}"),
            log::Level::Error => tracing::error!(plugin, task, "{message}"),
        }
    }
}

impl blob_store::Host for HostState {
    fn put(&mut self, key: String, data: Vec<u8>) -> Result<blob_store::PutOutcome, String> {
        let store = self
            .caps
            .blob_store
            .clone()
            .ok_or("this plugin has no blob store")?;
        self.in_host(|_| store.put(&key, data)).map(|o| match o {
            crate::PutOutcome::Created => blob_store::PutOutcome::Created,
            crate::PutOutcome::AlreadyExisted => blob_store::PutOutcome::AlreadyExisted,
        })
    }

    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, String> {
        let store = self
            .caps
            .blob_store
            .clone()
            .ok_or("this plugin has no blob store")?;
        self.in_host(|_| store.get(&key))
    }

    fn list(&mut self, prefix: String) -> Result<Vec<blob_store::ObjectMeta>, String> {
        let store = self
            .caps
            .blob_store
            .clone()
            .ok_or("this plugin has no blob store")?;
        self.in_host(|_| store.list(&prefix)).map(|v| {
            v.into_iter()
                .map(|m| blob_store::ObjectMeta {
                    key: m.key,
                    size: m.size,
                })
                .collect()
        })
    }

    fn delete(&mut self, key: String) -> Result<blob_store::DeleteOutcome, String> {
        let store = self
            .caps
            .blob_store
            .clone()
            .ok_or("this plugin has no blob store")?;
        self.in_host(|_| store.delete(&key)).map(|o| match o {
            crate::DeleteOutcome::Deleted => blob_store::DeleteOutcome::Deleted,
            crate::DeleteOutcome::Refused(why) => blob_store::DeleteOutcome::Refused(why),
            crate::DeleteOutcome::NotFound => blob_store::DeleteOutcome::NotFound,
        })
    }
}

impl remap::Host for HostState {
    fn record_mapping(&mut self, kind: String, old_id: String, new_id: String) {
        match self.caps.remap.clone() {
            Some(table) => self.in_host(|_| table.record(&kind, &old_id, &new_id)),
            None => tracing::warn!(plugin = %self.plugin, "remap used outside a restore; ignored"),
        }
    }

    fn lookup(&mut self, old_id: String) -> Option<String> {
        let table = self.caps.remap.clone()?;
        self.in_host(|_| table.lookup(&old_id))
    }
}

impl snapshot::Host for HostState {
    fn get(&mut self, kind: String, id: String) -> Option<types::Item> {
        let reader = self.caps.snapshot.clone()?;
        self.in_host(|_| reader.get(&kind, &id))
    }

    fn list(&mut self, kind: String) -> Vec<snapshot::Entry> {
        let Some(reader) = self.caps.snapshot.clone() else {
            return Vec::new();
        };
        self.in_host(|_| reader.list(&kind))
            .into_iter()
            .map(|e| snapshot::Entry {
                kind: e.kind,
                id: e.id,
                display_name: e.display_name,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BatchItem, ContentRef, ContentStore, GraphConnection, HttpResponse};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// Downloads answer with the URL's path as the body, after a pause; `/fail…` fails.
    struct SlowGraph {
        base: url::Url,
        now: AtomicUsize,
        max: AtomicUsize,
    }

    impl GraphConnection for SlowGraph {
        fn base_url(&self) -> &url::Url {
            &self.base
        }
        fn send(&self, _: HttpRequest) -> Result<HttpResponse, String> {
            unreachable!("downloads only")
        }
        fn batch(&self, _: Vec<BatchItem>) -> Result<Vec<HttpResponse>, String> {
            unreachable!("downloads only")
        }
        fn download(&self, request: HttpRequest) -> Result<Box<dyn Read + Send>, String> {
            let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.max.fetch_max(n, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(30));
            self.now.fetch_sub(1, Ordering::SeqCst);
            let path = request.url.path().to_string();
            if path.starts_with("/fail") {
                return Err(format!("GET {path}: HTTP 404"));
            }
            Ok(Box::new(std::io::Cursor::new(path.into_bytes())))
        }
    }

    /// Stores nothing; the reference's id is the body and the media type it was given.
    #[derive(Default)]
    struct Echo {
        typed: Mutex<Vec<Option<String>>>,
    }

    impl ContentStore for Echo {
        fn store(&self, reader: &mut dyn Read) -> Result<ContentRef, String> {
            self.store_typed(reader, None)
        }
        fn store_typed(
            &self,
            reader: &mut dyn Read,
            content_type: Option<&str>,
        ) -> Result<ContentRef, String> {
            let mut body = String::new();
            reader
                .read_to_string(&mut body)
                .map_err(|e| e.to_string())?;
            self.typed
                .lock()
                .unwrap()
                .push(content_type.map(str::to_string));
            Ok(ContentRef {
                size: body.len() as u64,
                id: format!("{body}|{}", content_type.unwrap_or("-")),
            })
        }
        fn read(&self, _: &ContentRef, _: u64, _: u32) -> Result<Vec<u8>, String> {
            unreachable!()
        }
    }

    fn get(path: &str) -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            url: url::Url::parse(&format!("https://graph.example{path}")).unwrap(),
            headers: vec![],
            body: vec![],
        }
    }

    #[test]
    fn download_all_runs_up_to_four_at_once_in_order_with_per_entry_failures() {
        let graph = SlowGraph {
            base: url::Url::parse("https://graph.example/").unwrap(),
            now: AtomicUsize::new(0),
            max: AtomicUsize::new(0),
        };
        let store = Echo::default();
        let mut jobs = Vec::new();
        for i in 0..10 {
            let ct = (i % 2 == 0).then(|| "message/rfc822".to_string());
            jobs.push(Ok((get(&format!("/m/{i}")), ct)));
        }
        jobs[3] = Ok((get("/fail/3"), None));
        jobs[7] = Err(graph::RequestError::Refused(
            "not the bound connection".into(),
        ));
        let out = download_all(&graph, &store, jobs);
        assert_eq!(out.len(), 10);
        for (i, r) in out.iter().enumerate() {
            match i {
                3 => assert!(
                    matches!(r, Err(graph::RequestError::Unavailable(m)) if m.contains("HTTP 404"))
                ),
                7 => assert!(matches!(r, Err(graph::RequestError::Refused(_)))),
                _ => {
                    let c = r.as_ref().unwrap();
                    let ct = if i % 2 == 0 { "message/rfc822" } else { "-" };
                    assert_eq!(c.id, format!("/m/{i}|{ct}"));
                    assert_eq!(c.size, format!("/m/{i}").len() as u64);
                }
            }
        }
        let max = graph.max.load(Ordering::SeqCst);
        assert!((2..=DOWNLOADS_AT_ONCE).contains(&max), "{max} at once");
        assert_eq!(store.typed.lock().unwrap().len(), 8);
        // Nothing to do: no threads, no results.
        assert!(download_all(&graph, &store, Vec::new()).is_empty());
    }
}
