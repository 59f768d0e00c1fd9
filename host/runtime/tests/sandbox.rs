//! Hostile plugins are stopped or refused with clear errors, and the same host process then
//! runs a well-behaved plugin.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_runtime::types::{NextStep, PluginError, PluginKind};
use cairn_runtime::{
    BatchItem, Capabilities, GraphConnection, HttpRequest, HttpResponse, Limits, LoadError,
    PluginCallError, Runtime, RuntimeConfig, TrapReason,
};
use url::Url;

/// A Graph connection double that answers a users delta round and records what it was sent.
/// (End-to-end runs against the Graph simulator live with the backup engine.)
struct RecordingGraph {
    base: Url,
    sent: Mutex<Vec<HttpRequest>>,
}

impl RecordingGraph {
    fn new() -> Arc<Self> {
        Arc::new(RecordingGraph {
            base: Url::parse("https://graph.example.test/").unwrap(),
            sent: Mutex::new(Vec::new()),
        })
    }
}

impl GraphConnection for RecordingGraph {
    fn base_url(&self) -> &Url {
        &self.base
    }
    fn send(&self, request: HttpRequest) -> Result<HttpResponse, String> {
        let first = !request.url.as_str().contains("skiptoken");
        self.sent.lock().unwrap().push(request);
        let body = if first {
            serde_json::json!({
                "@odata.nextLink": "https://graph.example.test/v1.0/users/delta?$skiptoken=page2",
                "value": [{"id": "u1", "displayName": "Adele Vance"}]
            })
        } else {
            serde_json::json!({
                "@odata.deltaLink": "https://graph.example.test/v1.0/users/delta?$deltatoken=t1",
                "value": [{"id": "u2", "displayName": "Alex Wilber"}, {"id": "u3", "@removed": {"reason": "changed"}}]
            })
        };
        Ok(HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        })
    }
    fn batch(&self, _: Vec<BatchItem>) -> Result<Vec<HttpResponse>, String> {
        Err("not used".into())
    }
    fn download(&self, _: HttpRequest) -> Result<Box<dyn std::io::Read + Send>, String> {
        Err("not used".into())
    }
}

fn runtime(cache: &Path) -> Arc<Runtime> {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.to_path_buf()),
        fuel: false,
        limits: Limits {
            memory_bytes: 64 << 20,
            call_timeout: Duration::from_secs(2),
            fuel_per_call: None,
        },
    })
    .unwrap()
}

/// Runs the hostile plugin's `plan` with `behaviour` and returns the outcome.
fn hostile_plan(
    rt: &Arc<Runtime>,
    behaviour: &str,
    graph: Option<Arc<dyn GraphConnection>>,
) -> Result<Result<Vec<cairn_runtime::types::Task>, PluginError>, PluginCallError> {
    let plugin = rt
        .load_file(Path::new(cairn_test_plugins::HOSTILE))
        .unwrap();
    let mut inst = plugin
        .instantiate_default(Capabilities {
            graph,
            ..Default::default()
        })
        .unwrap();
    inst.configure(&serde_json::json!({ "behaviour": behaviour }).to_string())
        .unwrap()
        .unwrap();
    let result = inst.plan_tasks();
    // Whatever the plugin tried, its memory never went past the cap.
    assert!(inst.linear_memory_peak() <= 64 << 20);
    if result.is_err() {
        assert!(inst.is_poisoned(), "a stopped instance is discarded");
        assert!(matches!(
            inst.plan_tasks(),
            Err(PluginCallError::Poisoned { .. })
        ));
    }
    result
}

/// The well-behaved example plugin runs a full delta round through the same runtime.
fn good_plugin_runs(rt: &Arc<Runtime>) {
    let graph = RecordingGraph::new();
    let plugin = rt
        .load_file(Path::new(cairn_test_plugins::HELLO_COLLECTOR))
        .unwrap();
    let mut inst = plugin
        .instantiate_default(Capabilities {
            graph: Some(graph.clone()),
            ..Default::default()
        })
        .unwrap();
    inst.configure("{}").unwrap().unwrap();
    let tasks = inst.plan_tasks().unwrap().unwrap();
    assert_eq!(tasks.len(), 1);
    // The instance's linear memory is accounted from its creation.
    let peak = inst.linear_memory_peak();
    assert!((64 << 10..64 << 20).contains(&peak), "{peak}");
    let step1 = inst.run_step(&tasks[0], None, None).unwrap().unwrap();
    assert_eq!(step1.items.len(), 1);
    assert_eq!(step1.items[0].display_name, "Adele Vance");
    let NextStep::More(cursor) = step1.next else {
        panic!("first page has a next link")
    };
    let step2 = inst
        .run_step(&tasks[0], None, Some(&cursor))
        .unwrap()
        .unwrap();
    assert_eq!(step2.items.len(), 1);
    assert_eq!(step2.removed.len(), 1);
    assert!(matches!(step2.next, NextStep::Done(ref d) if d.ends_with("deltatoken=t1")));
    let sent = graph.sent.lock().unwrap();
    assert_eq!(sent.len(), 2);
    assert!(sent[0]
        .url
        .as_str()
        .starts_with("https://graph.example.test/v1.0/users/delta?$select="));
    assert!(
        sent.iter().all(|r| r
            .headers
            .iter()
            .all(|(n, _)| !n.eq_ignore_ascii_case("authorization"))),
        "the plugin sets no credentials; the gateway adds them"
    );
}

#[test]
fn endless_loop_is_stopped_by_the_deadline() {
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(cache.path());
    let started = Instant::now();
    let err = hostile_plan(&rt, "loop", None).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped promptly"
    );
    assert!(
        matches!(err.reason(), Some(TrapReason::Timeout { .. })),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("plugin `hostile`"), "{msg}");
    assert!(msg.contains("collector.plan"), "{msg}");
    assert!(msg.contains("timeout"), "{msg}");
    good_plugin_runs(&rt);
}

#[test]
fn memory_bomb_is_stopped_at_the_cap() {
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(cache.path());
    let err = hostile_plan(&rt, "allocate", None).unwrap_err();
    assert!(
        matches!(err.reason(), Some(TrapReason::Memory { cap_bytes }) if *cap_bytes == 64 << 20),
        "{err}"
    );
    assert!(err.to_string().contains("64 MiB memory cap"), "{err}");
    good_plugin_runs(&rt);
}

#[test]
fn panic_is_reported_with_its_message() {
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(cache.path());
    let err = hostile_plan(&rt, "panic", None).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err.reason(), Some(TrapReason::Trap(_))), "{msg}");
    assert!(msg.contains("hostile plugin panics on purpose"), "{msg}");
    good_plugin_runs(&rt);
}

#[test]
fn files_are_out_of_reach() {
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(cache.path());
    let result = hostile_plan(&rt, "read-file", None).expect("the call itself completes");
    let err = result.expect_err("no file system is granted");
    let msg = format!("{err:?}");
    assert!(msg.contains("cannot read /etc/passwd"), "{msg}");
    assert!(!msg.contains("root:"), "nothing of the file leaks: {msg}");
    good_plugin_runs(&rt);
}

#[test]
fn unbound_hosts_are_refused() {
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(cache.path());
    let graph = RecordingGraph::new();
    let result = hostile_plan(&rt, "unbound-host", Some(graph.clone())).unwrap();
    match result {
        Err(PluginError::Refused(msg)) => {
            assert!(msg.contains("https://evil.example.com"), "{msg}");
            assert!(msg.contains("not the plugin's bound connection"), "{msg}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(graph.sent.lock().unwrap().is_empty(), "nothing was sent");
    good_plugin_runs(&rt);
}

#[test]
fn plugins_cannot_set_authorization() {
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(cache.path());
    let graph = RecordingGraph::new();
    let result = hostile_plan(&rt, "auth-header", Some(graph.clone())).unwrap();
    match result {
        Err(PluginError::Refused(msg)) => assert!(msg.contains("`Authorization` header"), "{msg}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(graph.sent.lock().unwrap().is_empty(), "nothing was sent");
    good_plugin_runs(&rt);
}

#[test]
fn graph_without_a_binding_is_refused() {
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(cache.path());
    match hostile_plan(&rt, "auth-header", None).unwrap() {
        Err(PluginError::Refused(msg)) => {
            assert!(msg.contains("not bound to a Graph connection"), "{msg}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn sockets_are_refused_at_load() {
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(cache.path());
    let err = match rt.load_file(Path::new(cairn_test_plugins::HOSTILE_SOCKET)) {
        Err(e) => e,
        Ok(_) => panic!("a plugin importing wasi:sockets must not load"),
    };
    assert!(matches!(err, LoadError::ForbiddenImport { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("wasi:sockets/"), "{msg}");
    assert!(msg.contains("no network access"), "{msg}");
    good_plugin_runs(&rt);
}

#[test]
fn describe_reports_name_kinds_schema_and_permissions() {
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(cache.path());
    let plugin = rt
        .load_file(Path::new(cairn_test_plugins::HELLO_COLLECTOR))
        .unwrap();
    let info = plugin.info();
    assert_eq!(info.name, "hello-collector");
    assert_eq!(info.version, "0.1.0");
    assert_eq!(info.kinds, vec![PluginKind::Collector]);
    assert_eq!(info.item_kinds, vec!["user".to_string()]);
    assert_eq!(info.permissions[0].name, "User.Read.All");
    let schema: serde_json::Value = serde_json::from_str(&info.config_schema).unwrap();
    assert_eq!(schema["type"], "object");
}

#[test]
fn non_components_are_rejected_clearly() {
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(cache.path());
    let text = match rt.load("notes.wasm", b"this is not wasm at all") {
        Err(e) => e.to_string(),
        Ok(_) => panic!("must not load"),
    };
    assert!(text.contains("not a WebAssembly file"), "{text}");
    let core = match rt.load("core.wasm", b"\0asm\x01\0\0\0") {
        Err(e) => e.to_string(),
        Ok(_) => panic!("must not load"),
    };
    assert!(
        core.contains("core WebAssembly module, not a component"),
        "{core}"
    );
}

#[test]
fn compiled_components_are_cached_on_disk() {
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(cache.path());
    rt.load_file(Path::new(cairn_test_plugins::HELLO_COLLECTOR))
        .unwrap();
    let entries: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1, "one entry per component");
    // A damaged entry is discarded and recompiled, not trusted.
    std::fs::write(&entries[0], b"garbage").unwrap();
    let again = rt
        .load_file(Path::new(cairn_test_plugins::HELLO_COLLECTOR))
        .unwrap();
    assert_eq!(again.name(), "hello-collector");
    assert!(std::fs::metadata(&entries[0]).unwrap().len() > 1000);
}

#[test]
fn several_instances_run_independently() {
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(cache.path());
    let plugin = rt
        .load_file(Path::new(cairn_test_plugins::HOSTILE))
        .unwrap();
    let mut bad = plugin.instantiate_default(Capabilities::default()).unwrap();
    let mut good = plugin.instantiate_default(Capabilities::default()).unwrap();
    bad.configure(r#"{"behaviour":"panic"}"#).unwrap().unwrap();
    good.configure(r#"{"behaviour":"none"}"#).unwrap().unwrap();
    assert!(bad.plan_tasks().is_err());
    let tasks = good.plan_tasks().unwrap().unwrap();
    let mut cursor = None;
    let mut ids = Vec::new();
    loop {
        let step = good
            .run_step(&tasks[0], None, cursor.as_deref())
            .unwrap()
            .unwrap();
        ids.extend(step.items.into_iter().map(|i| i.id));
        match step.next {
            NextStep::More(c) => cursor = Some(c),
            NextStep::Done(_) => break,
        }
    }
    assert_eq!(ids, ["thing-0", "thing-1", "thing-2"]);
}
