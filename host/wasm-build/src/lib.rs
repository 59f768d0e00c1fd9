//! Used from build scripts to compile plugin crates of this workspace into WebAssembly
//! components (`wasm32-wasip2`, release profile) and find the resulting `.wasm` files.
//!
//! Each plugin is built by its own nested `cargo build -p <plugin>`, because plugins enable
//! different `cairn-sdk` features (one WIT world each) and one cargo invocation would unify
//! them. The nested build uses its own target directory next to the outer one
//! (`<target>/wasm-plugins`) so it never waits on the outer build's lock.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The WebAssembly target plugins are built for.
pub const TARGET: &str = "wasm32-wasip2";

/// A plugin crate to build: its package name and its directory relative to the workspace root.
pub struct PluginCrate<'a> {
    pub package: &'a str,
    pub dir: &'a str,
}

/// Builds the given plugin crates and returns `(package, path to .wasm)` for each.
///
/// Call from a build script. Emits `cargo:rerun-if-changed` for the plugins' sources, the SDK
/// and the WIT contract.
pub fn build_plugins(workspace: &Path, plugins: &[PluginCrate<'_>]) -> Vec<(String, PathBuf)> {
    for dir in ["wit", "sdk/src", "sdk/Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    let target_dir = nested_target_dir();
    let cargo = cargo_binary();
    let mut out = Vec::new();
    for p in plugins {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(p.dir).join("src").display()
        );
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(p.dir).join("Cargo.toml").display()
        );
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(workspace)
            .args([
                "build",
                "--profile",
                "plugin",
                "--target",
                TARGET,
                "--package",
                p.package,
            ])
            .env("CARGO_TARGET_DIR", &target_dir);
        // Settings meant for the outer (host) build must not leak into the wasm build.
        for var in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
            "CARGO_BUILD_TARGET",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_DIR_OUTER",
        ] {
            cmd.env_remove(var);
        }
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("CARGO_FEATURE_")
                || key.starts_with("CARGO_CFG_")
                || key.starts_with("DEP_")
            {
                cmd.env_remove(&key);
            }
        }
        let status = cmd
            .status()
            .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
        if !status.success() {
            panic!(
                "building plugin `{}` for {TARGET} failed (is the target installed? \
                 `rustup target add {TARGET}`)",
                p.package
            );
        }
        let file = target_dir
            .join(TARGET)
            .join("plugin")
            .join(format!("{}.wasm", p.package.replace('-', "_")));
        assert!(
            file.exists(),
            "expected {} after building {}",
            file.display(),
            p.package
        );
        out.push((p.package.to_string(), file));
    }
    out
}

/// The cargo of the toolchain compiling this build: the `cargo` beside `$RUSTC` (so a `CARGO`
/// variable inherited from another toolchain's environment cannot pick a different cargo),
/// else `$CARGO`, else `cargo` on the PATH.
fn cargo_binary() -> String {
    if let Some(rustc) = std::env::var_os("RUSTC") {
        let sibling = Path::new(&rustc).with_file_name("cargo");
        if sibling.is_file() {
            return sibling.display().to_string();
        }
    }
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// `<outer target dir>/wasm-plugins`, derived from `OUT_DIR`
/// (`<target>/<profile>/build/<pkg>-<hash>/out`, or one level deeper when cross-compiling).
fn nested_target_dir() -> PathBuf {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set for build scripts"));
    let target = out
        .ancestors()
        .find(|a| a.join("CACHEDIR.TAG").exists())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out.join("wasm-plugins-target"));
    target.join("wasm-plugins")
}

/// The workspace root, from a crate's `CARGO_MANIFEST_DIR` and its depth below the root.
pub fn workspace_root(manifest_dir: &str, depth: usize) -> PathBuf {
    let mut p = PathBuf::from(manifest_dir);
    for _ in 0..depth {
        p.pop();
    }
    p
}
