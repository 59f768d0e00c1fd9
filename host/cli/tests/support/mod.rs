//! What the process tests share: a simulated tenant in this process, directories set up with
//! `cairn init`, and running the `cairn` binary against them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cairn_graph_sim::{SimConfig, SimHandle, Simulator};

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
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let sim = rt.block_on(Simulator::start(cfg)).unwrap();
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
