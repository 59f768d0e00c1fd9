//! The manifest's canonical content and its hash (a snapshot's `manifest_hash`).

use serde_json::{json, Map, Value};

use crate::model::*;
use crate::secret::SecretRef;

fn secret_ref(r: &SecretRef) -> Value {
    match r {
        SecretRef::Env(n) => json!({ "env": n }),
        SecretRef::File(p) => json!({ "file": p.display().to_string() }),
        // The value is never part of the canonical content.
        SecretRef::Inline(_) => json!("inline"),
    }
}

fn plugin(p: &PluginRef) -> Value {
    match p {
        PluginRef::Bundled(n) => json!({ "bundled": n }),
        PluginRef::File(f) => json!({ "file": f.display().to_string() }),
    }
}

fn limits(l: &Limits) -> Value {
    json!({ "memory_mb": l.memory_mb, "timeout_secs": l.timeout_secs, "fuel": l.fuel })
}

/// Sorts object keys recursively (the workspace's serde_json keeps insertion order).
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                out.insert(k.clone(), canonical(&m[k]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

impl Manifest {
    /// The manifest's effective content as JSON with sorted keys: every table after defaults,
    /// interpolation and path resolution, secrets as their references (`{"env": NAME}`,
    /// `{"file": path}`, or `"inline"` — never a value). Plugin configs are included as
    /// written (their secret fields hold references unless inline secrets are allowed).
    pub fn canonical_json(&self) -> Value {
        let connections: Map<String, Value> = self
            .connections
            .iter()
            .map(|(n, c)| {
                let credential = match &c.credential {
                    Credential::Secret(r) => json!({ "client_secret": secret_ref(r) }),
                    Credential::Certificate { cert, key } => json!({
                        "certificate": secret_ref(cert),
                        "certificate_key": secret_ref(key),
                    }),
                };
                (
                    n.clone(),
                    json!({
                        "tenant": c.tenant,
                        "client_id": c.client_id,
                        "credential": credential,
                        "cloud": c.cloud.as_str(),
                        "authority_url": c.authority_url,
                        "graph_url": c.graph_url,
                    }),
                )
            })
            .collect();
        let collectors: Map<String, Value> = self
            .collectors
            .iter()
            .map(|(n, c)| {
                (
                    n.clone(),
                    json!({
                        "plugin": plugin(&c.plugin),
                        "connection": c.connection,
                        "concurrency": c.concurrency,
                        "limits": limits(&c.limits),
                        "config": c.config,
                    }),
                )
            })
            .collect();
        let sinks: Map<String, Value> = self
            .sinks
            .iter()
            .map(|(n, s)| {
                let store: Map<String, Value> = s
                    .store
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            StoreOption::Value(x) => json!(x),
                            StoreOption::Secret(r) => json!({ "secret": secret_ref(r) }),
                        };
                        (k.clone(), v)
                    })
                    .collect();
                (
                    n.clone(),
                    json!({
                        "plugin": plugin(&s.plugin),
                        "url": s.url,
                        "recipients": s.recipients,
                        "key_file": s.key_file.as_ref().map(|p| p.display().to_string()),
                        "inputs": s.inputs,
                        "collectors": s.collectors,
                        "store": store,
                        "zstd_level": s.write.zstd_level,
                        "pack_size_mb": s.write.pack_size_mb,
                        "limits": limits(&s.limits),
                        "config": s.config,
                    }),
                )
            })
            .collect();
        let retention = self.retention.as_ref().map(|r| {
            json!({
                "keep_last": r.keep_last,
                "keep_hourly": r.keep_hourly,
                "keep_daily": r.keep_daily,
                "keep_weekly": r.keep_weekly,
                "keep_monthly": r.keep_monthly,
                "keep_yearly": r.keep_yearly,
                "keep_within_secs": r.keep_within.map(|d| d.as_secs()),
                "keep_tags": r.keep_tags,
            })
        });
        let schedule = self.schedule.as_ref().map(|s| {
            json!({
                "backup": s.backup.as_ref().map(|c| c.as_str()),
                "check": s.check.as_ref().map(|c| c.as_str()),
                "prune": s.prune.as_ref().map(|c| c.as_str()),
            })
        });
        canonical(&json!({
            "version": self.version,
            "connections": connections,
            "collectors": collectors,
            "sinks": sinks,
            "retention": retention,
            "schedule": schedule,
        }))
    }

    /// A stable hash of [`Manifest::canonical_json`]: 64 hex digits (BLAKE3). Comments,
    /// formatting, key order and table order do not change it; any effective setting does.
    /// Secret values are not part of it (only their references).
    pub fn hash(&self) -> String {
        let text = serde_json::to_string(&self.canonical_json()).expect("JSON values serialize");
        let mut h = blake3::Hasher::new();
        h.update(b"cairn-manifest-hash-v1\n");
        h.update(text.as_bytes());
        h.finalize().to_hex().to_string()
    }
}
