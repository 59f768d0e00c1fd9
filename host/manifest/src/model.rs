//! The manifest's types.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use crate::diagnostic::{Diagnostic, Location, Severity, SourceRef};
use crate::secret::SecretRef;
use crate::values::Cron;

/// The manifest format version this crate reads.
pub const MANIFEST_VERSION: i64 = 1;

/// Store option names (object_store config keys, without their `aws_`/`azure_storage_`/
/// `google_` prefixes) whose values are secrets, so must be `env:`/`file:` references.
pub const STORE_SECRET_KEYS: &[&str] = &[
    "secret_access_key",
    "session_token",
    "token",
    "account_key",
    "access_key",
    "master_key",
    "client_secret",
    "sas_key",
    "sas_token",
    "bearer_token",
    "service_account_key",
    "fabric_session_token",
];

/// A parsed, validated manifest.
///
/// Paths in it are absolute (relative ones in the file are resolved against the manifest's
/// directory). Secrets are references; resolve them with [`crate::resolve_secret`].
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The manifest format version (`version = 1`).
    pub version: u32,
    /// `allow_inline_secrets = true`: secret fields may hold their values inline.
    pub allow_inline_secrets: bool,
    /// `[connections.<name>]`: Microsoft Graph connections.
    pub connections: BTreeMap<String, Connection>,
    /// `[collectors.<name>]`: collector plugins and their configs.
    pub collectors: BTreeMap<String, Collector>,
    /// `[sinks.<name>]`: where backups go.
    pub sinks: BTreeMap<String, Sink>,
    /// `[retention]`, used by `cairn forget`.
    pub retention: Option<Retention>,
    /// `[schedule]`.
    pub schedule: Option<Schedule>,
    /// The directory relative paths were resolved against.
    pub base_dir: PathBuf,
    /// Warnings found while parsing (the manifest is usable).
    pub warnings: Vec<Diagnostic>,
    pub(crate) source: SourceRef,
    /// Key path → (key span, value span).
    pub(crate) spans: BTreeMap<String, (Range<usize>, Range<usize>)>,
}

impl Manifest {
    /// The manifest's name in diagnostics (the path given to [`crate::load`]).
    pub fn file_name(&self) -> &str {
        &self.source.name
    }

    /// Where a key's value is, by key path: `collectors.entra`, `collectors.entra.connection`,
    /// `sinks.local.recipients[1]`, `collectors.entra.config.types[2]` (keys that are not bare
    /// TOML keys are quoted, as in TOML: `config."odd key"`). For a table, its header.
    pub fn location(&self, path: &str) -> Option<Location> {
        self.spans
            .get(path)
            .map(|(_, v)| self.source.location(v.start))
    }

    /// A diagnostic at a key path (e.g. for an engine-time failure that belongs to a manifest
    /// entry); falls back to an unlocated diagnostic if the path is unknown.
    pub fn diagnostic(
        &self,
        path: &str,
        severity: Severity,
        message: impl Into<String>,
        help: Option<String>,
    ) -> Diagnostic {
        match self.spans.get(path) {
            Some((_, v)) => self.source.diag(severity, v.clone(), message, help, &[]),
            None => Diagnostic::unlocated(severity, self.source.name.clone(), message, help),
        }
    }

    pub(crate) fn span(&self, path: &str) -> Option<Range<usize>> {
        self.spans.get(path).map(|(_, v)| v.clone())
    }

    pub(crate) fn key_span(&self, path: &str) -> Option<Range<usize>> {
        self.spans.get(path).map(|(k, _)| k.clone())
    }

    /// The sinks a collector's items go to.
    pub fn sinks_of<'a>(&'a self, collector: &'a str) -> impl Iterator<Item = &'a Sink> + 'a {
        self.sinks
            .values()
            .filter(move |s| s.collectors.iter().any(|c| c == collector))
    }
}

/// A Microsoft cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cloud {
    /// `global`: login.microsoftonline.com, graph.microsoft.com.
    #[default]
    Global,
    /// `usgov`: US Government L4 (GCC High).
    UsGov,
    /// `usgov-dod`: US Government L5 (DoD).
    UsGovDod,
    /// `china`: operated by 21Vianet.
    China,
}

impl Cloud {
    /// Every cloud, with its manifest name.
    pub const ALL: [(&'static str, Cloud); 4] = [
        ("global", Cloud::Global),
        ("usgov", Cloud::UsGov),
        ("usgov-dod", Cloud::UsGovDod),
        ("china", Cloud::China),
    ];

    /// The manifest name (`global`, `usgov`, `usgov-dod`, `china`).
    pub fn as_str(self) -> &'static str {
        Cloud::ALL
            .iter()
            .find(|(_, c)| *c == self)
            .map(|(n, _)| *n)
            .unwrap_or("global")
    }

    /// The token authority's base URL.
    pub fn authority_url(self) -> &'static str {
        match self {
            Cloud::Global => "https://login.microsoftonline.com/",
            Cloud::UsGov | Cloud::UsGovDod => "https://login.microsoftonline.us/",
            Cloud::China => "https://login.chinacloudapi.cn/",
        }
    }

    /// Microsoft Graph's root URL.
    pub fn graph_url(self) -> &'static str {
        match self {
            Cloud::Global => "https://graph.microsoft.com/",
            Cloud::UsGov => "https://graph.microsoft.us/",
            Cloud::UsGovDod => "https://dod-graph.microsoft.us/",
            Cloud::China => "https://microsoftgraph.chinacloudapi.cn/",
        }
    }
}

/// `[connections.<name>]`: a Microsoft Graph connection (an app registration in a tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The table's name.
    pub name: String,
    /// The tenant's id (GUID) or one of its domains.
    pub tenant: String,
    /// The app registration's application (client) id.
    pub client_id: String,
    /// How the app authenticates.
    pub credential: Credential,
    /// The cloud (endpoints below default from it).
    pub cloud: Cloud,
    /// The token authority's base URL (`authority_url`, else the cloud's), ending in `/`.
    pub authority_url: String,
    /// Graph's root URL (`graph_url`, else the cloud's), ending in `/`.
    pub graph_url: String,
    /// Whether `authority_url` or `graph_url` was given explicitly (the simulator, a proxy).
    pub endpoints_overridden: bool,
}

/// How a connection's app proves its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// `client_secret`.
    Secret(SecretRef),
    /// `certificate` (PEM; not secret, so a plain path is also accepted) and
    /// `certificate_key` (PEM private key, a secret reference).
    Certificate {
        /// The certificate.
        cert: SecretRef,
        /// Its private key.
        key: SecretRef,
    },
}

/// A plugin: bundled with `cairn`, or a `.wasm` component file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PluginRef {
    /// A bundled plugin by name (`entra`, `age-sink`, …).
    Bundled(String),
    /// A component file (absolute path).
    File(PathBuf),
}

impl std::fmt::Display for PluginRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginRef::Bundled(n) => f.write_str(n),
            PluginRef::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Whether a plugin is used as a collector or a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginRole {
    /// In a `[collectors.*]` table.
    Collector,
    /// In a `[sinks.*]` table.
    Sink,
}

/// Per-plugin sandbox limits (`limits = { … }`); unset fields take the runtime's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// `memory_mb`: linear memory cap, MiB (1..=65536).
    pub memory_mb: Option<u32>,
    /// `timeout_secs`: guest time per call, seconds (1..=86400).
    pub timeout_secs: Option<u32>,
    /// `fuel`: instructions per call, if the runtime meters fuel.
    pub fuel: Option<u64>,
}

/// `[collectors.<name>]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Collector {
    /// The table's name.
    pub name: String,
    /// The plugin.
    pub plugin: PluginRef,
    /// The `[connections.*]` it uses.
    pub connection: String,
    /// Tasks run at once (1..=64); `None`: the engine's default.
    pub concurrency: Option<u32>,
    /// Sandbox limits.
    pub limits: Limits,
    /// `[collectors.<name>.config]`: the plugin's own config (an object; `{}` if absent).
    /// Secret fields still hold their references; see [`crate::resolve_plugin_config`].
    pub config: serde_json::Value,
}

/// Where a sink's repository lives, from its `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A local directory (absolute).
    Local(PathBuf),
    /// `s3://bucket/prefix`.
    S3 {
        /// Bucket.
        bucket: String,
        /// Key prefix (no leading or trailing `/`; may be empty).
        prefix: String,
    },
    /// `az://container/prefix` (also `azure://`).
    Azure {
        /// Container.
        container: String,
        /// Blob prefix.
        prefix: String,
    },
    /// `gs://bucket/prefix`.
    Gcs {
        /// Bucket.
        bucket: String,
        /// Object prefix.
        prefix: String,
    },
}

/// A `[sinks.<name>.store]` option value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOption {
    /// A plain value (booleans and numbers are given as their text, as object_store wants).
    Value(String),
    /// A secret option (`secret_access_key`, `account_key`, `sas_token`, …).
    Secret(SecretRef),
}

/// Repository write options of a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteOptions {
    /// `zstd_level` (1..=22).
    pub zstd_level: Option<i32>,
    /// `pack_size_mb`: target pack size, MiB (1..=512).
    pub pack_size_mb: Option<u32>,
    /// `checkpoint_interval`: least time between the run's checkpoints, counted from its start
    /// (default 30 s; `0s` = after every step). A crash or kill loses at most this much listing, which the next run
    /// resumes from the last checkpoint.
    pub checkpoint_interval: Option<std::time::Duration>,
}

/// `[sinks.<name>]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sink {
    /// The table's name.
    pub name: String,
    /// The sink plugin.
    pub plugin: PluginRef,
    /// The store URL for `cairn_blobstore` (a relative path made absolute).
    pub url: String,
    /// The parsed location.
    pub location: StoreLocation,
    /// age recipients (`age1…`, `ssh-ed25519 …`, `ssh-rsa …`).
    pub recipients: Vec<String>,
    /// The writer's key file for this repository (absolute).
    pub key_file: Option<PathBuf>,
    /// `inputs` as written: collector names and globs.
    pub inputs: Vec<String>,
    /// The collectors `inputs` selects, sorted.
    pub collectors: Vec<String>,
    /// `[sinks.<name>.store]`: object store options.
    pub store: BTreeMap<String, StoreOption>,
    /// Repository write options.
    pub write: WriteOptions,
    /// Sandbox limits of the sink plugin.
    pub limits: Limits,
    /// `[sinks.<name>.config]`: further plugin config (an object; `{}` if absent). The plugin
    /// receives it with `recipients` added (see [`crate::resolve_plugin_config`]).
    pub config: serde_json::Value,
}

/// `[retention]`: which snapshots `cairn forget` keeps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Retention {
    /// Keep the n newest.
    pub keep_last: Option<usize>,
    /// Newest per hour, for n hours.
    pub keep_hourly: Option<usize>,
    /// Newest per day, for n days.
    pub keep_daily: Option<usize>,
    /// Newest per ISO week, for n weeks.
    pub keep_weekly: Option<usize>,
    /// Newest per month, for n months.
    pub keep_monthly: Option<usize>,
    /// Newest per year, for n years.
    pub keep_yearly: Option<usize>,
    /// Everything within this duration of the newest snapshot.
    pub keep_within: Option<Duration>,
    /// Always keep snapshots with any of these tags.
    pub keep_tags: Vec<String>,
}

/// `[schedule]`: 5-field cron expressions for an external scheduler / `cairn schedule`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Schedule {
    /// When to run `cairn backup`.
    pub backup: Option<Cron>,
    /// When to run `cairn check`.
    pub check: Option<Cron>,
    /// When to run `cairn forget --prune`.
    pub prune: Option<Cron>,
}
