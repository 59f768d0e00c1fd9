//! What the process tests share: a simulated tenant in this process, directories set up with
//! `cairn init`, and running the `cairn` binary against them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cairn_graph_sim::{SimConfig, SimHandle, Simulator};

/// The simulator started with `cfg` on a runtime of its own.
pub fn simulator(cfg: SimConfig) -> (tokio::runtime::Runtime, SimHandle) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sim = rt.block_on(Simulator::start(cfg)).unwrap();
    (rt, sim)
}

/// A simulator (on its own runtime) and a temporary directory.
pub struct Env {
    // Field order is drop order: the simulator stops before its runtime goes.
    pub sim: SimHandle,
    pub rt: tokio::runtime::Runtime,
    pub dir: tempfile::TempDir,
    /// The client id and secret the manifests use (the simulator's default app unless set).
    pub client_id: String,
    pub client_secret: String,
}

impl Env {
    pub fn start(cfg: SimConfig) -> Env {
        let (rt, sim) = simulator(cfg);
        let client_id = sim.client_id().to_string();
        let client_secret = sim.client_secret().to_string();
        Env {
            sim,
            rt,
            dir: tempfile::tempdir().unwrap(),
            client_id,
            client_secret,
        }
    }

    /// `cairn init --with-keys` in `<tmp>/<name>` against the simulator; returns the manifest.
    pub fn init(&self, name: &str) -> PathBuf {
        let dir = self.dir.path().join(name);
        let out = self
            .cairn()
            .args(["init", "--with-keys", "--dir"])
            .arg(&dir)
            .args(["--endpoint", &self.sim.base_url()])
            .args(["--tenant", &self.sim.tenant_id()])
            .args(["--client-id", &self.client_id])
            .output()
            .unwrap();
        assert_ok(&out);
        dir.join("cairn.toml")
    }

    /// The `cairn` binary with the client secret in the environment the starter manifest names.
    pub fn cairn(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.env("CAIRN_CLIENT_SECRET", &self.client_secret)
            .env("RUST_LOG", "warn")
            .env_remove("CAIRN_MANIFEST");
        c
    }

    /// Runs `cairn <args> -m <manifest>`.
    pub fn run(&self, manifest: &Path, args: &[&str]) -> Output {
        self.cairn()
            .args(args)
            .arg("-m")
            .arg(manifest)
            .output()
            .unwrap()
    }

    /// Runs a `--json` command and parses its output (asserting success).
    pub fn json(&self, manifest: &Path, args: &[&str]) -> serde_json::Value {
        let out = self.run(manifest, args);
        assert_ok(&out);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", text(&out)))
    }
}

/// stdout and stderr together, for messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn assert_ok(out: &Output) {
    assert!(out.status.success(), "{:?}: {}", out.status, text(out));
}

/// The restore identity `cairn init --with-keys` wrote beside the manifest.
pub fn identity(manifest: &Path) -> PathBuf {
    manifest.parent().unwrap().join("restore-identity.txt")
}

/// (kind, id) → name of every item of a snapshot, from `cairn ls --json`.
pub fn items(
    env: &Env,
    manifest: &Path,
    snapshot: &str,
) -> std::collections::BTreeMap<(String, String), String> {
    env.json(manifest, &["ls", snapshot, "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                (
                    e["kind"].as_str().unwrap().to_string(),
                    e["id"].as_str().unwrap().to_string(),
                ),
                e["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// A collector table for [`Setup::start`], next to `entra`.
pub struct Collector {
    pub name: &'static str,
    pub plugin: &'static str,
    /// Its `config`, as a TOML inline table (`{ users = ["…"] }`).
    pub config: Option<String>,
}

/// A simulated tenant (in this process) and a Cairn setup for it written straight into a
/// temporary directory, without `cairn init`: a manifest with the `entra` collector and any
/// others, one age sink that takes them all (its repository created), the restore identity
/// and the client secret in files beside the manifest.
pub struct Setup {
    // Field order is drop order: the simulator stops before its runtime goes.
    pub sim: SimHandle,
    pub rt: tokio::runtime::Runtime,
    pub dir: tempfile::TempDir,
    pub manifest: PathBuf,
    pub identity: PathBuf,
}

impl Setup {
    /// Starts the simulator with `cfg` and writes the setup; `collectors` names the
    /// collectors besides `entra` (it may look at the simulated tenant to choose them).
    pub fn start(cfg: SimConfig, collectors: impl FnOnce(&SimHandle) -> Vec<Collector>) -> Setup {
        let (rt, sim) = simulator(cfg);
        let dir = tempfile::tempdir().unwrap();
        let (secret_key, recipient) = cairn_engine::keys::generate_identity();
        let identity = dir.path().join("restore-identity.txt");
        std::fs::write(&identity, format!("{secret_key}\n")).unwrap();
        std::fs::write(dir.path().join("client-secret.txt"), sim.client_secret()).unwrap();
        let mut tables = String::new();
        let mut inputs = vec!["\"entra\"".to_string()];
        for c in collectors(&sim) {
            tables.push_str(&format!(
                "\n[collectors.{}]\nplugin = \"{}\"\nconnection = \"tenant\"\n",
                c.name, c.plugin
            ));
            if let Some(config) = &c.config {
                tables.push_str(&format!("config = {config}\n"));
            }
            inputs.push(format!("\"{}\"", c.name));
        }
        let manifest = dir.path().join("cairn.toml");
        std::fs::write(
            &manifest,
            format!(
                r#"version = 1

[connections.tenant]
tenant = "{tenant}"
client_id = "{client}"
client_secret = "file:client-secret.txt"
authority_url = "{url}"
graph_url = "{url}"

[collectors.entra]
plugin = "entra"
connection = "tenant"
{tables}
[sinks.local]
plugin = "age-sink"
url = "repository"
recipients = ["{recipient}"]
key_file = "writer-key.json"
inputs = [{inputs}]
"#,
                tenant = sim.tenant_id(),
                client = sim.client_id(),
                url = sim.base_url().trim_end_matches('/'),
                inputs = inputs.join(", "),
            ),
        )
        .unwrap();
        let m = cairn_manifest::load(&manifest).unwrap();
        let registry = cairn_engine::PluginRegistry::new(
            cairn_runtime::Runtime::new(cairn_runtime::RuntimeConfig {
                cache_dir: Some(std::env::temp_dir().join("cairn-test-component-cache")),
                ..Default::default()
            })
            .unwrap(),
        );
        cairn_engine::setup::init_sinks(&m, &registry).unwrap();
        Setup {
            sim,
            rt,
            dir,
            manifest,
            identity,
        }
    }

    /// `cairn <args> -m <manifest>`, quiet, with no standard input.
    pub fn cairn(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.args(args)
            .arg("-m")
            .arg(&self.manifest)
            .env("RUST_LOG", "warn")
            .env(
                "XDG_CACHE_HOME",
                std::env::temp_dir().join("cairn-test-xdg-cache"),
            )
            .env_remove("CAIRN_MANIFEST")
            .stdin(std::process::Stdio::null());
        c
    }

    /// Runs `cairn <args> -m …` (with `-i <restore identity>` when `identity`).
    pub fn run(&self, args: &[&str], identity: bool) -> Output {
        let mut c = self.cairn(args);
        if identity {
            c.arg("-i").arg(&self.identity);
        }
        c.output().unwrap()
    }

    /// [`Setup::run`], asserting success.
    pub fn ok(&self, args: &[&str], identity: bool) -> Output {
        let out = self.run(args, identity);
        assert!(
            out.status.success(),
            "cairn {args:?} exited {:?}\n{}",
            out.status.code(),
            labelled(&out)
        );
        out
    }

    /// Runs a `--json` command and parses its output (asserting success).
    pub fn json(&self, args: &[&str], identity: bool) -> serde_json::Value {
        let out = self.ok(args, identity);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", labelled(&out)))
    }

    /// `cairn backup --json`: its report (asserting success).
    pub fn backup_report(&self) -> serde_json::Value {
        self.json(&["backup", "--json"], false)
    }

    /// Backs up; returns the snapshot id (of the one sink).
    pub fn backup(&self) -> String {
        self.backup_report()["sinks"][0]["snapshot"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        let mut c = cairn_graph_sim::testkit::Client::new(&self.sim.base_url())
            .with_token(self.sim.access_token());
        let r = self
            .rt
            .block_on(c.send(method, path, headers, body))
            .unwrap();
        (r.status, r.body)
    }

    /// A Graph call to the simulator with its default app's token and no body: status and
    /// the body's bytes.
    pub fn graph_raw(&self, method: &str, path: &str) -> (u16, Vec<u8>) {
        self.send(method, path, &[], &[])
    }

    /// A Graph call with an optional JSON body: status and JSON body (`null` when empty).
    pub fn graph_json(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let (status, body) = self.send(
            method,
            path,
            &[("Content-Type", "application/json")],
            &bytes,
        );
        let v = if body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&body).unwrap()
        };
        (status, v)
    }

    /// `cairn restore apply --yes --json <selection>` (with the restore identity): its report,
    /// asserting success.
    pub fn apply_json(&self, selection: &[&str]) -> serde_json::Value {
        let mut args = vec!["restore", "apply", "--yes", "--json"];
        args.extend_from_slice(selection);
        self.json(&args, true)
    }

    /// [`Setup::apply_json`] of a selection of one item: asserts that the report has one
    /// entry and that it is done; returns that entry.
    pub fn apply_one(&self, selection: &[&str]) -> serde_json::Value {
        let applied = self.apply_json(selection);
        let entries = applied["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "{applied}");
        assert_eq!(entries[0]["outcome"], "done", "{applied}");
        entries[0].clone()
    }

    /// `cairn restore verify --json <selection>`: the process's output and its report.
    pub fn verify_json(&self, selection: &[&str]) -> (Output, serde_json::Value) {
        let mut args = vec!["restore", "verify", "--json"];
        args.extend_from_slice(selection);
        let out = self.run(&args, true);
        let v = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("verify: not JSON ({e}): {}", labelled(&out)));
        (out, v)
    }

    /// Asserts that `cairn restore verify <selection>` is clean (exit 0, nothing remaining);
    /// returns its report.
    pub fn verify_clean(&self, selection: &[&str]) -> serde_json::Value {
        let (out, v) = self.verify_json(selection);
        assert!(
            out.status.success() && v["remaining"].as_array().unwrap().is_empty(),
            "verify not clean: {}",
            serde_json::to_string_pretty(&v["remaining"]).unwrap()
        );
        v
    }

    /// [`Setup::graph_json`], asserting a 2xx status; returns the JSON body.
    pub fn graph_ok(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let (status, v) = self.graph_json(method, path, body);
        assert!(status < 300, "{method} {path}: {status}");
        v
    }
}

/// `struct $name(Setup)`, dereferencing to [`Setup`]: a test file's own set-up, whose `impl`
/// adds what only that file needs.
macro_rules! setup_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        struct $name($crate::support::Setup);

        impl std::ops::Deref for $name {
            type Target = $crate::support::Setup;
            fn deref(&self) -> &$crate::support::Setup {
                &self.0
            }
        }
    };
}
pub(crate) use setup_newtype;

/// stdout and stderr, each under a heading, for failure messages.
pub fn labelled(out: &Output) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
