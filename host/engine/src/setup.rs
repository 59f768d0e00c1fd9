//! From a manifest to running parts: Graph gateways for connections, repositories for sinks
//! (through their sink plugins), collector specs for the backup run.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use cairn_gateway::{Credential, Gateway, GatewayConfig};
use cairn_manifest::{Manifest, PluginRole};
use cairn_repository::{
    Backend, IdKey, InitOptions, OpenOptions, PackParams, Repository, WriterKeyFile,
};
use cairn_runtime::Limits;

use crate::backup::{CollectorSpec, GraphFor, SinkTarget};
use crate::keys::{age_sink_config, generate_identity, metadata_identity, METADATA_IDENTITY_FIELD};
use crate::registry::{PluginRef, PluginRegistry};
use crate::sink::SinkBackend;

/// The engine's form of a manifest plugin reference.
pub fn plugin_ref(r: &cairn_manifest::PluginRef) -> PluginRef {
    match r {
        cairn_manifest::PluginRef::Bundled(n) => PluginRef::Bundled(n.clone()),
        cairn_manifest::PluginRef::File(p) => PluginRef::File(p.clone()),
    }
}

/// Sandbox limits from the manifest (defaults where unset).
pub fn limits(l: &cairn_manifest::Limits) -> Limits {
    let mut out = Limits::default();
    if let Some(mb) = l.memory_mb {
        out.memory_bytes = (mb as usize) << 20;
    }
    if let Some(s) = l.timeout_secs {
        out.call_timeout = Duration::from_secs(u64::from(s));
    }
    if let Some(f) = l.fuel {
        out.fuel_per_call = Some(f);
    }
    out
}

/// Connects a gateway for each `[connections.*]` (lazily authenticated).
pub fn gateways(manifest: &Manifest) -> anyhow::Result<BTreeMap<String, Arc<Gateway>>> {
    let mut out = BTreeMap::new();
    for (name, c) in &manifest.connections {
        let credential = match &c.credential {
            cairn_manifest::Credential::Secret(r) => {
                let secret = cairn_manifest::resolve_secret(r)
                    .with_context(|| format!("connection `{name}`: client_secret"))?;
                Credential::secret(secret.expose().to_string())
            }
            cairn_manifest::Credential::Certificate { cert, key } => {
                let cert = cairn_manifest::resolve_secret(cert)
                    .with_context(|| format!("connection `{name}`: certificate"))?;
                let key = cairn_manifest::resolve_secret(key)
                    .with_context(|| format!("connection `{name}`: certificate_key"))?;
                Credential::Certificate(
                    cairn_gateway::CertificateCredential::from_pem(
                        cert.expose().as_bytes(),
                        key.expose().as_bytes(),
                    )
                    .with_context(|| format!("connection `{name}`: certificate"))?,
                )
            }
        };
        let mut cfg = GatewayConfig::new(c.tenant.clone(), c.client_id.clone(), credential);
        cfg.name = name.clone();
        cfg.cloud = cairn_gateway::Cloud::custom(&c.authority_url, &c.graph_url)
            .with_context(|| format!("connection `{name}`"))?;
        out.insert(
            name.clone(),
            Gateway::connect(cfg).with_context(|| format!("connection `{name}`"))?,
        );
    }
    Ok(out)
}

/// Collector specs for a run (`only`: restrict to these collector names).
pub fn collectors(
    manifest: &Manifest,
    registry: &PluginRegistry,
    gateways: &BTreeMap<String, Arc<Gateway>>,
    only: &[String],
) -> anyhow::Result<Vec<CollectorSpec>> {
    let mut out = Vec::new();
    for (name, c) in &manifest.collectors {
        if !only.is_empty() && !only.contains(name) {
            continue;
        }
        let plugin = registry
            .get(&plugin_ref(&c.plugin))
            .with_context(|| format!("collector `{name}`"))?;
        let schema: serde_json::Value =
            serde_json::from_str(&plugin.info().config_schema).unwrap_or_default();
        let config = cairn_manifest::resolve_plugin_config(manifest, c, &schema)
            .map_err(|e| anyhow!("collector `{name}`: {e}"))?;
        let gateway = gateways
            .get(&c.connection)
            .cloned()
            .ok_or_else(|| anyhow!("collector `{name}`: no connection `{}`", c.connection))?;
        let graph: GraphFor = Arc::new(move |task: &str| gateway.for_task(task));
        out.push(CollectorSpec {
            name: name.clone(),
            plugin,
            config,
            graph: Some(graph),
            concurrency: c.concurrency.unwrap_or(4) as usize,
            limits: limits(&c.limits),
        });
    }
    if !only.is_empty() {
        for o in only {
            if !manifest.collectors.contains_key(o) {
                bail!("there is no collector `{o}` in {}", manifest.file_name());
            }
        }
    }
    Ok(out)
}

/// How a repository is opened: to write (the writer key file) or to read everything (identity
/// files of a recipient).
#[derive(Clone, Default)]
pub struct Access {
    /// Texts of age identity files (or OpenSSH private keys) of a recipient.
    pub identities: Vec<String>,
}

/// A sink's repository, opened.
pub struct OpenSink {
    pub name: String,
    pub repo: Repository,
    pub collectors: Vec<String>,
    pub write: cairn_manifest::WriteOptions,
}

fn sink_backend(
    manifest: &Manifest,
    registry: &PluginRegistry,
    sink: &cairn_manifest::Sink,
    metadata_secret: Option<&str>,
    access: &Access,
) -> anyhow::Result<Arc<dyn Backend>> {
    let options = cairn_manifest::resolve_store_options(sink)
        .map_err(|e| anyhow!("sink `{}`: {e}", sink.name))?;
    let store = cairn_blobstore::open_backend(&sink.url, &options)
        .with_context(|| format!("sink `{}`: opening {}", sink.name, sink.url))?;
    let plugin = registry
        .get(&plugin_ref(&sink.plugin))
        .with_context(|| format!("sink `{}`", sink.name))?;
    let schema: serde_json::Value =
        serde_json::from_str(&plugin.info().config_schema).unwrap_or_default();
    let mut config = cairn_manifest::resolve_plugin_config(manifest, sink, &schema)
        .map_err(|e| anyhow!("sink `{}`: {e}", sink.name))?;
    if plugin.name() == "age-sink" {
        let mut identities: Vec<String> = config
            .get("identities")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        identities.extend(access.identities.iter().cloned());
        config = age_sink_config(&sink.recipients, metadata_secret, &identities)
            .map_err(|e| anyhow!("sink `{}`: {e}", sink.name))?;
    }
    Ok(Arc::new(
        SinkBackend::new(plugin, store, &config, limits(&sink.limits))
            .with_context(|| format!("sink `{}`", sink.name))?,
    ))
}

fn pack_params(write: &cairn_manifest::WriteOptions) -> Option<PackParams> {
    if write.zstd_level.is_none() && write.pack_size_mb.is_none() {
        return None;
    }
    let mut p = PackParams::default();
    if let Some(l) = write.zstd_level {
        p.zstd_level = l;
    }
    if let Some(mb) = write.pack_size_mb {
        p.target_size = mb << 20;
    }
    Some(p)
}

/// Opens every sink's repository. With `access.identities` empty, opens as the writer (the key
/// file's id key and metadata identity); otherwise as a reader with the identities.
pub fn open_sinks(
    manifest: &Manifest,
    registry: &PluginRegistry,
    access: &Access,
    only: Option<&str>,
) -> anyhow::Result<Vec<OpenSink>> {
    let mut out = Vec::new();
    for (name, sink) in &manifest.sinks {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let key_file = match &sink.key_file {
            Some(p) if p.exists() => Some(
                WriterKeyFile::load(p)
                    .with_context(|| format!("sink `{name}`: key file {}", p.display()))?,
            ),
            _ => None,
        };
        if key_file.is_none() && access.identities.is_empty() {
            bail!(
                "sink `{name}`: no writer key file at {} — run `cairn init` to create the \
                 repository, or give --identity to read it",
                sink.key_file
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "(key_file not set)".into())
            );
        }
        let meta = key_file.as_ref().and_then(metadata_identity);
        let backend = sink_backend(manifest, registry, sink, meta.as_deref(), access)?;
        let id_key: Option<IdKey> = match &key_file {
            Some(k) => Some(k.id_key()?),
            None => None,
        };
        let repo = Repository::open(backend, OpenOptions { id_key })
            .with_context(|| format!("sink `{name}` ({})", sink.url))?;
        out.push(OpenSink {
            name: name.clone(),
            repo,
            collectors: sink.collectors.clone(),
            write: sink.write,
        });
    }
    if let Some(o) = only {
        if out.is_empty() {
            bail!("there is no sink `{o}` in {}", manifest.file_name());
        }
    }
    Ok(out)
}

/// Creates the repository of every sink that has none yet, and its writer key file. Returns
/// (sink, created?) per sink.
pub fn init_sinks(
    manifest: &Manifest,
    registry: &PluginRegistry,
) -> anyhow::Result<Vec<(String, bool)>> {
    let mut out = Vec::new();
    for (name, sink) in &manifest.sinks {
        let key_path = sink.key_file.clone().ok_or_else(|| {
            anyhow!("sink `{name}`: set `key_file` (where the writer's key for this repository is kept)")
        })?;
        if key_path.exists() {
            out.push((name.clone(), false));
            continue;
        }
        let (meta_secret, _) = generate_identity();
        let backend = sink_backend(
            manifest,
            registry,
            sink,
            Some(&meta_secret),
            &Access::default(),
        )?;
        let repo = Repository::init(backend, InitOptions::default())
            .with_context(|| format!("sink `{name}` ({})", sink.url))?;
        let mut key = repo.writer_key_file();
        key.extra.insert(
            METADATA_IDENTITY_FIELD.into(),
            serde_json::Value::String(meta_secret),
        );
        if let Some(dir) = key_path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        key.save(&key_path)
            .with_context(|| format!("sink `{name}`: writing {}", key_path.display()))?;
        out.push((name.clone(), true));
    }
    Ok(out)
}

/// Sink targets for a backup run.
pub fn sink_targets(sinks: &[OpenSink], manifest: &Manifest, tags: &[String]) -> Vec<SinkTarget> {
    sinks
        .iter()
        .map(|s| SinkTarget {
            name: s.name.clone(),
            repo: s.repo.clone(),
            inputs: s.collectors.clone(),
            writer_options: cairn_repository::WriterOptions {
                tags: tags.to_vec(),
                manifest_hash: Some(manifest.hash()),
                pack: pack_params(&s.write),
                checkpoint_interval: s.write.checkpoint_interval,
                ..Default::default()
            },
        })
        .collect()
}

/// Reads identity files given on the command line.
pub fn read_identities(paths: &[impl AsRef<Path>]) -> anyhow::Result<Vec<String>> {
    paths
        .iter()
        .map(|p| {
            std::fs::read_to_string(p.as_ref())
                .with_context(|| format!("reading identity file {}", p.as_ref().display()))
        })
        .collect()
}

/// The plugin role of a manifest entry, for schema lookups.
pub fn role_name(role: PluginRole) -> &'static str {
    match role {
        PluginRole::Collector => "collector",
        PluginRole::Sink => "sink",
    }
}
