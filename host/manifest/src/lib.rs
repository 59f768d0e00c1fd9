//! Cairn's manifest, `cairn.toml`: parsing, validation with located diagnostics, secret
//! references, and the starter manifest `cairn init` writes.
//!
//! ```no_run
//! let m = match cairn_manifest::load(std::path::Path::new("cairn.toml")) {
//!     Ok(m) => m,
//!     Err(diags) => {
//!         eprintln!("{diags}"); // every problem, each with file:line:col and help
//!         std::process::exit(2);
//!     }
//! };
//! for w in &m.warnings {
//!     eprintln!("{w}");
//! }
//! let problems = cairn_manifest::check_secrets(&m);
//! # let _ = problems;
//! ```
//!
//! * [`parse`] / [`load`] check everything that needs nothing outside the file and report every
//!   problem, not just the first ([`Diagnostics`]).
//! * [`check_secrets`] and [`check_plugin_configs`] check what needs the environment, the
//!   file system or the plugins.
//! * Secrets are [`SecretRef`]s until [`resolve_secret`] (or [`resolve_plugin_config`] for
//!   plugin config fields marked `"x-cairn-secret": true`) turns them into a [`Secret`], whose
//!   `Debug` and `Display` print `***`. No diagnostic or error contains a secret's value.

#![warn(missing_docs)]

mod checks;
mod diagnostic;
mod hash;
mod model;
mod parse;
mod plugin_config;
mod secret;
mod starter;
pub mod values;

pub use checks::{check_secrets, check_secrets_with};
pub use diagnostic::{Diagnostic, Diagnostics, Location, Severity};
pub use model::{
    Cloud, Collector, Connection, Credential, Limits, Manifest, PluginRef, PluginRole, Retention,
    Schedule, Sink, StoreLocation, StoreOption, WriteOptions, MANIFEST_VERSION, STORE_SECRET_KEYS,
};
pub use parse::{did_you_mean, load, load_with_env, parse, parse_with_env};
pub use plugin_config::{
    check_plugin_configs, check_plugin_configs_with, entries, resolve_plugin_config,
    resolve_plugin_config_with, secret_pointers, ConfigError, PluginEntry, SECRET_KEYWORD,
};
pub use secret::{
    resolve_secret, resolve_secret_with, Env, ProcessEnv, Secret, SecretError, SecretRef,
    MAX_SECRET_FILE,
};
pub use starter::{starter_manifest, StarterOptions};
pub use values::Cron;

/// Resolves every store option of a sink for `cairn_blobstore` (secret options read from
/// their references). The map holds secret values: pass it to the store and drop it.
pub fn resolve_store_options(
    sink: &Sink,
) -> Result<std::collections::BTreeMap<String, String>, SecretError> {
    resolve_store_options_with(sink, &ProcessEnv)
}

/// [`resolve_store_options`] with an explicit environment.
pub fn resolve_store_options_with(
    sink: &Sink,
    env: &dyn Env,
) -> Result<std::collections::BTreeMap<String, String>, SecretError> {
    sink.store
        .iter()
        .map(|(k, v)| {
            Ok((
                k.clone(),
                match v {
                    StoreOption::Value(s) => s.clone(),
                    StoreOption::Secret(r) => resolve_secret_with(r, env)?.expose().to_string(),
                },
            ))
        })
        .collect()
}
