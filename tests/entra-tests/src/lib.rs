//! Host-side tests of the `entra` collector plugin (`plugins/entra`), built to a component by
//! this crate's build script, run through `cairn-runtime` against the Graph simulator.
//!
//! [`SimGraph`] is **test scaffolding**: a minimal `GraphConnection` over the simulator's
//! keep-alive test client that adds the simulator's bearer token, retries 429s after
//! `Retry-After` and sends `$batch` in chunks of 20 (responses put back in request order,
//! throttled items retried). It stands in for the real gateway (`host/gateway`) until that is
//! usable here; it is not a gateway.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_graph_sim::testkit::Client;
use cairn_runtime::types::{Item, Listing, NextStep, PluginError, Removal, Task, Tombstone};
use cairn_runtime::{
    BatchItem, Capabilities, GraphConnection, HttpRequest, HttpResponse, PluginInstance, Runtime,
    RuntimeConfig,
};
use serde_json::{json, Value};
use url::Url;

/// The entra plugin component.
pub const ENTRA: &str = env!("WASM_CAIRN_PLUGIN_ENTRA");

/// Test-only Graph connection to the simulator (see the crate docs).
pub struct SimGraph {
    base: Url,
    rt: tokio::runtime::Handle,
    client: Mutex<Client>,
    /// HTTP requests sent (a `$batch` call counts once).
    pub requests: AtomicU64,
    /// Requests inside `$batch` calls.
    pub batch_items: AtomicU64,
    /// Paths requested (outside batches), for assertions.
    pub paths: Mutex<Vec<String>>,
}

impl SimGraph {
    /// A connection to the simulator at `base_url` (`http://127.0.0.1:port`) with `token`.
    pub fn new(rt: tokio::runtime::Handle, base_url: &str, token: String) -> Arc<Self> {
        Arc::new(SimGraph {
            base: Url::parse(&format!("{base_url}/")).unwrap(),
            rt,
            client: Mutex::new(Client::new(base_url).with_token(token)),
            requests: AtomicU64::new(0),
            batch_items: AtomicU64::new(0),
            paths: Mutex::new(Vec::new()),
        })
    }

    fn raw(
        &self,
        method: &str,
        target: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<HttpResponse, String> {
        let hs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        for attempt in 0..20 {
            self.requests.fetch_add(1, Ordering::Relaxed);
            let r = {
                let mut c = self.client.lock().unwrap();
                self.rt
                    .block_on(c.send(method, target, &hs, body))
                    .map_err(|e| format!("{method} {target}: {e}"))?
            };
            if r.status == 429 && attempt < 19 {
                std::thread::sleep(retry_after(&r.headers, attempt));
                continue;
            }
            return Ok(HttpResponse {
                status: r.status,
                headers: r.headers,
                body: r.body,
            });
        }
        unreachable!()
    }
}

fn retry_after(headers: &[(String, String)], attempt: u32) -> Duration {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
        .and_then(|(_, v)| v.trim().parse::<f64>().ok())
        .map(Duration::from_secs_f64)
        .unwrap_or_else(|| Duration::from_millis(200 << attempt.min(5)))
}

impl GraphConnection for SimGraph {
    fn base_url(&self) -> &Url {
        &self.base
    }

    fn send(&self, request: HttpRequest) -> Result<HttpResponse, String> {
        self.paths
            .lock()
            .unwrap()
            .push(request.url.path().to_string());
        self.raw(
            &request.method,
            request.url.as_str(),
            &request.headers,
            &request.body,
        )
    }

    fn batch(&self, requests: Vec<BatchItem>) -> Result<Vec<HttpResponse>, String> {
        let mut out: Vec<Option<HttpResponse>> = vec![None; requests.len()];
        let mut pending: Vec<usize> = (0..requests.len()).collect();
        for round in 0..20 {
            if pending.is_empty() {
                break;
            }
            let mut throttled = Vec::new();
            let mut wait = Duration::ZERO;
            for chunk in pending.chunks(20) {
                let reqs: Vec<Value> = chunk
                    .iter()
                    .map(|&i| {
                        let r = &requests[i].request;
                        let path = match r.url.query() {
                            Some(q) => format!("{}?{q}", r.url.path()),
                            None => r.url.path().to_string(),
                        };
                        let rel = path.strip_prefix("/v1.0").unwrap_or(&path).to_string();
                        let headers: serde_json::Map<String, Value> = r
                            .headers
                            .iter()
                            .map(|(k, v)| (k.clone(), json!(v)))
                            .collect();
                        let mut v =
                            json!({"id": i.to_string(), "method": r.method, "url": rel, "headers": headers});
                        if !r.body.is_empty() {
                            v["body"] = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                        }
                        v
                    })
                    .collect();
                self.batch_items
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                let body = serde_json::to_vec(&json!({ "requests": reqs })).unwrap();
                let resp = self.raw(
                    "POST",
                    "/v1.0/$batch",
                    &[("Content-Type".into(), "application/json".into())],
                    &body,
                )?;
                if resp.status != 200 {
                    return Err(format!(
                        "$batch answered {}: {}",
                        resp.status,
                        String::from_utf8_lossy(&resp.body)
                    ));
                }
                let parsed: Value =
                    serde_json::from_slice(&resp.body).map_err(|e| e.to_string())?;
                for r in parsed["responses"].as_array().cloned().unwrap_or_default() {
                    let i: usize = r["id"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .ok_or("bad id")?;
                    let status = r["status"].as_u64().unwrap_or(0) as u16;
                    let headers: Vec<(String, String)> = r["headers"]
                        .as_object()
                        .map(|h| {
                            h.iter()
                                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                                .collect()
                        })
                        .unwrap_or_default();
                    if status == 429 && round < 19 {
                        wait = wait.max(retry_after(&headers, round));
                        throttled.push(i);
                        continue;
                    }
                    let body = match &r["body"] {
                        Value::Null => Vec::new(),
                        b => serde_json::to_vec(b).unwrap(),
                    };
                    out[i] = Some(HttpResponse {
                        status,
                        headers,
                        body,
                    });
                }
            }
            pending = throttled;
            if !pending.is_empty() {
                std::thread::sleep(wait);
            }
        }
        out.into_iter()
            .enumerate()
            .map(|(i, r)| r.ok_or_else(|| format!("no response for batch item {i}")))
            .collect()
    }

    fn download(&self, _: HttpRequest) -> Result<Box<dyn std::io::Read + Send>, String> {
        Err("the entra plugin does not download content".into())
    }
}

/// A runtime with its compiled-component cache in `cache`.
pub fn runtime(cache: &std::path::Path) -> Arc<Runtime> {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.to_path_buf()),
        ..Default::default()
    })
    .unwrap()
}

/// A configured instance of the entra plugin bound to `graph`.
pub fn instance(rt: &Arc<Runtime>, graph: Arc<SimGraph>, config: &Value) -> PluginInstance {
    let plugin = rt.load_file(std::path::Path::new(ENTRA)).unwrap();
    let mut inst = plugin
        .instantiate_default(Capabilities {
            graph: Some(graph),
            ..Default::default()
        })
        .unwrap();
    inst.configure(&config.to_string()).unwrap().unwrap();
    inst
}

/// What one run of one task produced.
#[derive(Debug, Default)]
pub struct TaskRun {
    /// The listing of the first step (the mode the repository opens the task in).
    pub listing: Option<Listing>,
    pub items: Vec<Item>,
    pub removed: Vec<Tombstone>,
    /// The state returned by `done`.
    pub state: Option<String>,
    pub notes: Vec<String>,
    pub error: Option<PluginError>,
    pub steps: usize,
}

/// Runs `task` to completion (or its first error), checking that every step keeps the listing
/// of the first one.
pub fn run_task(inst: &mut PluginInstance, task: &Task, state: Option<&str>) -> TaskRun {
    let mut run = TaskRun::default();
    let mut cursor: Option<String> = None;
    loop {
        let step = match inst.run_step(task, state, cursor.as_deref()).unwrap() {
            Ok(s) => s,
            Err(e) => {
                run.error = Some(e);
                return run;
            }
        };
        run.steps += 1;
        match run.listing {
            None => run.listing = Some(step.listing),
            Some(l) => assert_eq!(
                l, step.listing,
                "task {} changed its listing mid-run",
                task.id
            ),
        }
        run.items.extend(step.items);
        run.removed.extend(step.removed);
        run.notes.extend(step.note);
        match step.next {
            NextStep::More(c) => {
                assert!(c.len() < 4096, "cursor stays small: {} bytes", c.len());
                cursor = Some(c)
            }
            NextStep::Done(s) => {
                run.state = Some(s);
                return run;
            }
        }
        assert!(run.steps < 10_000, "task {} does not finish", task.id);
    }
}

/// The repository's view of a collector's trees, emulated: per task, items by (kind, id).
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub tasks: BTreeMap<String, BTreeMap<(String, String), Value>>,
    /// Task states (delta links) for the next run.
    pub states: BTreeMap<String, String>,
}

impl Snapshot {
    /// Applies a finished task run as the repository does: a full listing replaces the task's
    /// tree, a change listing upserts items and applies tombstones.
    pub fn apply(&mut self, task: &str, run: &TaskRun) {
        assert!(run.error.is_none(), "task {task} failed: {:?}", run.error);
        let tree = self.tasks.entry(task.to_string()).or_default();
        if run.listing == Some(Listing::Full) {
            tree.clear();
        }
        for it in &run.items {
            let body: Value = serde_json::from_str(&it.body).expect("item bodies are JSON");
            tree.insert((it.kind.clone(), it.id.clone()), body);
        }
        for t in &run.removed {
            tree.remove(&(t.kind.clone(), t.id.clone()));
        }
        match &run.state {
            Some(s) if !s.is_empty() => {
                self.states.insert(task.to_string(), s.clone());
            }
            _ => {
                self.states.remove(task);
            }
        }
    }

    /// Every item of `kind` across tasks, by id.
    pub fn of_kind(&self, kind: &str) -> BTreeMap<String, Value> {
        self.tasks
            .values()
            .flat_map(|t| t.iter())
            .filter(|((k, _), _)| k == kind)
            .map(|((_, id), v)| (id.clone(), v.clone()))
            .collect()
    }
}

/// Results of running every planned task once.
pub struct Run {
    pub tasks: BTreeMap<String, TaskRun>,
}

/// Plans and runs every task, starting each from `snapshot`'s state, and applies successful
/// runs to `snapshot`.
pub fn run_all(inst: &mut PluginInstance, snapshot: &mut Snapshot) -> Run {
    let tasks = inst.plan_tasks().unwrap().unwrap();
    let mut out = BTreeMap::new();
    for t in &tasks {
        let state = snapshot.states.get(&t.id).cloned();
        let run = run_task(inst, t, state.as_deref());
        if run.error.is_none() {
            snapshot.apply(&t.id, &run);
        }
        out.insert(t.id.clone(), run);
    }
    Run { tasks: out }
}

/// A tombstone's reason, for assertions.
pub fn reason_of(run: &TaskRun, kind: &str, id: &str) -> Option<Removal> {
    run.removed
        .iter()
        .find(|t| t.kind == kind && t.id == id)
        .map(|t| t.reason)
}
