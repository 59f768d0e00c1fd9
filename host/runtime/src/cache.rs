//! The on-disk cache of compiled components.
//!
//! Key: BLAKE3 of the engine's precompile-compatibility hash (wasmtime version, target, and
//! every code-generation setting) and of the component's bytes. Entries are written to a
//! temporary file and renamed, so a crash never leaves a half entry; an entry that fails to
//! deserialize (corrupt, or from an incompatible build) is recompiled and replaced.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::component::Component;
use wasmtime::Engine;

/// Compiles `bytes`, using and filling the cache in `dir` if given.
pub(crate) fn compile(
    engine: &Engine,
    dir: Option<&Path>,
    bytes: &[u8],
) -> anyhow::Result<Component> {
    let Some(dir) = dir else {
        return Ok(Component::new(engine, bytes)?);
    };
    let path = entry_path(engine, dir, bytes);
    if path.exists() {
        // SAFETY: the file is one this cache wrote via `precompile_component` for an engine
        // with the same compatibility hash (it is part of the file name). wasmtime checks
        // the header again and refuses a mismatch; then we recompile.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => return Ok(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "discarding unusable compiled-plugin cache entry");
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let compiled = engine.precompile_component(bytes)?;
    if let Err(e) = write_atomically(&path, &compiled) {
        tracing::warn!(path = %path.display(), error = %e, "cannot write compiled-plugin cache entry");
    }
    // SAFETY: `compiled` was produced just now by `precompile_component` on this engine.
    Ok(unsafe { Component::deserialize(engine, &compiled) }?)
}

fn entry_path(engine: &Engine, dir: &Path, bytes: &[u8]) -> PathBuf {
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let mut key = blake3::Hasher::new();
    key.update(b"cairn-component-cache-v1\0wasmtime-48.0.8\0");
    key.update(&engine_hash.finish().to_le_bytes());
    key.update(bytes);
    dir.join(format!("{}.cwasm", key.finalize().to_hex()))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("cache entries live in a directory");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
