//! Plugin configs: JSON Schema validation mapped back to manifest lines, `x-cairn-secret`
//! fields, and resolving their references.

use std::collections::BTreeSet;
use std::ops::Range;

use serde_json::Value;

use crate::diagnostic::{Diagnostic, Severity};
use crate::model::{Collector, Manifest, PluginRef, PluginRole, Sink};
use crate::parse::{did_you_mean, join_path};
use crate::secret::{
    parse_ref, probe, resolve_secret_with, Env, ProcessEnv, RefParse, SecretError,
};

/// The schema keyword that marks a config field as a secret.
pub const SECRET_KEYWORD: &str = "x-cairn-secret";

/// A collector or a sink: something with a plugin and a plugin config.
#[derive(Debug, Clone, Copy)]
pub enum PluginEntry<'a> {
    /// A `[collectors.*]` entry.
    Collector(&'a Collector),
    /// A `[sinks.*]` entry.
    Sink(&'a Sink),
}

impl<'a> From<&'a Collector> for PluginEntry<'a> {
    fn from(c: &'a Collector) -> Self {
        PluginEntry::Collector(c)
    }
}

impl<'a> From<&'a Sink> for PluginEntry<'a> {
    fn from(s: &'a Sink) -> Self {
        PluginEntry::Sink(s)
    }
}

impl PluginEntry<'_> {
    /// The entry's name.
    pub fn name(&self) -> &str {
        match self {
            PluginEntry::Collector(c) => &c.name,
            PluginEntry::Sink(s) => &s.name,
        }
    }

    /// Its plugin.
    pub fn plugin(&self) -> &PluginRef {
        match self {
            PluginEntry::Collector(c) => &c.plugin,
            PluginEntry::Sink(s) => &s.plugin,
        }
    }

    /// Collector or sink.
    pub fn role(&self) -> PluginRole {
        match self {
            PluginEntry::Collector(_) => PluginRole::Collector,
            PluginEntry::Sink(_) => PluginRole::Sink,
        }
    }

    /// Key path of the table: `collectors.entra`, `sinks.local`.
    pub fn path(&self) -> String {
        match self {
            PluginEntry::Collector(c) => join_path("collectors", &c.name),
            PluginEntry::Sink(s) => join_path("sinks", &s.name),
        }
    }

    /// The config the plugin receives, secrets still as references: the `config` table; for a
    /// sink with `recipients`, with `recipients` added.
    pub fn plugin_config(&self) -> Value {
        match self {
            PluginEntry::Collector(c) => c.config.clone(),
            PluginEntry::Sink(s) => {
                let mut v = s.config.clone();
                if !s.recipients.is_empty() {
                    if let Value::Object(m) = &mut v {
                        m.entry("recipients").or_insert_with(|| {
                            Value::Array(s.recipients.iter().cloned().map(Value::String).collect())
                        });
                    }
                }
                v
            }
        }
    }
}

/// Every collector and sink of a manifest, collectors first.
pub fn entries(m: &Manifest) -> Vec<PluginEntry<'_>> {
    m.collectors
        .values()
        .map(PluginEntry::Collector)
        .chain(m.sinks.values().map(PluginEntry::Sink))
        .collect()
}

/// Failure to build a plugin's resolved config. Never contains a secret value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A secret field's reference could not be resolved.
    #[error("[{table}] {field}: {source}")]
    Secret {
        /// `collectors.entra.config`.
        table: String,
        /// The field, relative to the config (`password`, `auth.token`).
        field: String,
        /// Why.
        #[source]
        source: SecretError,
    },
    /// A secret field holds an inline value and the manifest does not allow that.
    #[error("[{table}] {field} is a secret written inline (allow_inline_secrets is not set)")]
    InlineSecret {
        /// `collectors.entra.config`.
        table: String,
        /// The field.
        field: String,
    },
    /// A secret field's reference is malformed, or not a string.
    #[error("[{table}] {field}: {message}")]
    BadReference {
        /// `collectors.entra.config`.
        table: String,
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// The config a plugin receives, with the references in its schema's `x-cairn-secret` fields
/// replaced by the secrets' values. This is the only place plugin config secrets are resolved;
/// the result holds secret values: hand it to the plugin and drop it, never log it.
pub fn resolve_plugin_config<'a>(
    manifest: &Manifest,
    entry: impl Into<PluginEntry<'a>>,
    schema: &Value,
) -> Result<Value, ConfigError> {
    resolve_plugin_config_with(manifest, entry, schema, &ProcessEnv)
}

/// [`resolve_plugin_config`] with an explicit environment.
pub fn resolve_plugin_config_with<'a>(
    manifest: &Manifest,
    entry: impl Into<PluginEntry<'a>>,
    schema: &Value,
    env: &dyn Env,
) -> Result<Value, ConfigError> {
    let entry = entry.into();
    let mut config = entry.plugin_config();
    let table = format!("{}.config", entry.path());
    for ptr in secret_pointers(schema, &config) {
        let field = pointer_to_path("", &ptr);
        let Some(slot) = config.pointer_mut(&ptr) else {
            continue;
        };
        let Value::String(s) = slot else {
            return Err(ConfigError::BadReference {
                table,
                field,
                message: "a secret field must be a string: \"env:NAME\" or \"file:/path\"".into(),
            });
        };
        match parse_ref(s, &manifest.base_dir) {
            RefParse::Ref(r) => {
                let secret =
                    resolve_secret_with(&r, env).map_err(|source| ConfigError::Secret {
                        table: table.clone(),
                        field: field.clone(),
                        source,
                    })?;
                *slot = Value::String(secret.expose().to_string());
            }
            RefParse::Inline if manifest.allow_inline_secrets => {}
            RefParse::Inline => return Err(ConfigError::InlineSecret { table, field }),
            RefParse::Bad(message, _) => {
                return Err(ConfigError::BadReference {
                    table,
                    field,
                    message,
                })
            }
        }
    }
    Ok(config)
}

/// JSON pointers (RFC 6901) of the values in `instance` that `schema` marks with
/// `"x-cairn-secret": true` (for a marked array, each of its elements). Follows `properties`, `additionalProperties`, `items`,
/// `prefixItems`, `allOf`/`anyOf`/`oneOf` and local `$ref`s (`#/$defs/…`, `#/definitions/…`).
pub fn secret_pointers(schema: &Value, instance: &Value) -> Vec<String> {
    let mut out = BTreeSet::new();
    walk(schema, schema, instance, String::new(), &mut out, 0);
    out.into_iter().collect()
}

fn escape_token(t: &str) -> String {
    t.replace('~', "~0").replace('/', "~1")
}

fn unescape_token(t: &str) -> String {
    t.replace("~1", "/").replace("~0", "~")
}

/// The schema and the subschemas it is combined with (allOf/anyOf/oneOf, $ref).
fn alternatives<'s>(root: &'s Value, schema: &'s Value, depth: usize, out: &mut Vec<&'s Value>) {
    if depth > 32 || !schema.is_object() {
        return;
    }
    out.push(schema);
    if let Some(Value::String(r)) = schema.get("$ref") {
        if let Some(ptr) = r.strip_prefix('#') {
            if let Some(target) = root.pointer(ptr) {
                alternatives(root, target, depth + 1, out);
            }
        }
    }
    for k in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(list)) = schema.get(k) {
            for s in list {
                alternatives(root, s, depth + 1, out);
            }
        }
    }
}

fn walk(
    root: &Value,
    schema: &Value,
    inst: &Value,
    ptr: String,
    out: &mut BTreeSet<String>,
    depth: usize,
) {
    if depth > 64 {
        return;
    }
    let mut alts = Vec::new();
    alternatives(root, schema, 0, &mut alts);
    if alts
        .iter()
        .any(|s| s.get(SECRET_KEYWORD) == Some(&Value::Bool(true)))
    {
        // A secret list (e.g. identity files): each element is a reference.
        match inst {
            Value::Array(items) => {
                for i in 0..items.len() {
                    out.insert(format!("{ptr}/{i}"));
                }
            }
            _ => {
                out.insert(ptr);
            }
        }
        return;
    }
    match inst {
        Value::Object(map) => {
            for (k, v) in map {
                let sub: Vec<&Value> = alts
                    .iter()
                    .filter_map(|s| {
                        s.get("properties")
                            .and_then(|p| p.get(k))
                            .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
                    })
                    .collect();
                for s in sub {
                    walk(
                        root,
                        s,
                        v,
                        format!("{ptr}/{}", escape_token(k)),
                        out,
                        depth + 1,
                    );
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                for s in &alts {
                    let sub = s
                        .get("prefixItems")
                        .and_then(|p| p.get(i))
                        .or_else(|| s.get("items").filter(|a| a.is_object()));
                    if let Some(sub) = sub {
                        walk(root, sub, v, format!("{ptr}/{i}"), out, depth + 1);
                    }
                }
            }
        }
        _ => {}
    }
}

/// A JSON pointer as a manifest key path under `prefix` (`types[2]`, `auth.token`).
fn pointer_to_path(prefix: &str, ptr: &str) -> String {
    let mut path = prefix.to_string();
    for tok in ptr.split('/').skip(1) {
        let tok = unescape_token(tok);
        if tok.parse::<usize>().is_ok() && !path.is_empty() && !tok.starts_with('+') {
            // Array index, unless the parent is an object with a numeric key; the caller
            // cannot tell cheaply, and manifests rarely use numeric keys.
            path.push_str(&format!("[{tok}]"));
        } else {
            path = join_path(&path, &tok);
        }
    }
    path
}

/// The manifest key path of a value of an entry's plugin config, given as a JSON pointer:
/// under `<entry>.config`, except a sink's `recipients` (written beside `config`).
fn instance_path(entry: &PluginEntry<'_>, ptr: &str) -> String {
    if let PluginEntry::Sink(s) = entry {
        let from_top = (ptr == "/recipients" || ptr.starts_with("/recipients/"))
            && s.config.get("recipients").is_none();
        if from_top {
            return pointer_to_path(&entry.path(), ptr);
        }
    }
    pointer_to_path(&format!("{}.config", entry.path()), ptr)
}

struct Reporter<'m> {
    m: &'m Manifest,
    out: Vec<Diagnostic>,
    masks: Vec<Range<usize>>,
}

impl Reporter<'_> {
    fn at(
        &mut self,
        paths: &[&str],
        key: bool,
        severity: Severity,
        message: String,
        help: Option<String>,
    ) {
        for p in paths {
            let span = if key {
                self.m.key_span(p)
            } else {
                self.m.span(p)
            };
            if let Some(span) = span {
                let d = self
                    .m
                    .source
                    .diag(severity, span, message, help, &self.masks);
                self.out.push(d);
                return;
            }
        }
        self.out.push(Diagnostic::unlocated(
            severity,
            self.m.file_name(),
            message,
            help,
        ));
    }
}

/// Checks every collector's and sink's plugin: that it is known, that its config satisfies the
/// plugin's JSON Schema, and that its `x-cairn-secret` fields are references that resolve.
///
/// `bundled` are the names of the bundled plugins (for did-you-mean). `schema_of` returns a
/// plugin's config schema (from `describe()`), or why it cannot (unknown name, unreadable
/// file, wrong kind of plugin for the role).
pub fn check_plugin_configs(
    m: &Manifest,
    bundled: &[&str],
    schema_of: impl FnMut(&PluginRef, PluginRole) -> Result<Value, String>,
) -> Vec<Diagnostic> {
    check_plugin_configs_with(m, bundled, schema_of, &ProcessEnv)
}

/// [`check_plugin_configs`] with an explicit environment.
pub fn check_plugin_configs_with(
    m: &Manifest,
    bundled: &[&str],
    mut schema_of: impl FnMut(&PluginRef, PluginRole) -> Result<Value, String>,
    env: &dyn Env,
) -> Vec<Diagnostic> {
    let mut r = Reporter {
        m,
        out: Vec::new(),
        masks: Vec::new(),
    };
    for entry in entries(m) {
        let base = entry.path();
        let plugin_path = format!("{base}.plugin");
        let schema = match schema_of(entry.plugin(), entry.role()) {
            Ok(s) => s,
            Err(why) => {
                let (msg, help) = match entry.plugin() {
                    PluginRef::Bundled(n) if !bundled.contains(&n.as_str()) => (
                        format!("unknown plugin `{n}`"),
                        Some(match did_you_mean(n, bundled.iter().copied()) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => format!(
                                "bundled plugins are {}; a plugin file is given by a path \
                                 ending in .wasm",
                                bundled
                                    .iter()
                                    .map(|b| format!("`{b}`"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        }),
                    ),
                    p => (format!("plugin `{p}`: {why}"), None),
                };
                r.at(&[&plugin_path, &base], false, Severity::Error, msg, help);
                continue;
            }
        };
        let config = entry.plugin_config();
        let config_path = format!("{base}.config");
        let secrets = secret_pointers(&schema, &config);
        // Mask inline secret values before any diagnostic quotes their lines.
        for ptr in &secrets {
            if let Some(span) = m.span(&instance_path(&entry, ptr)) {
                r.masks.push(span);
            }
        }
        check_config_secrets(&mut r, &entry, &config, &config_path, &secrets, env);
        validate(&mut r, &entry, &schema, &config, &config_path, &secrets);
    }
    crate::diagnostic::sort_diagnostics(&mut r.out);
    r.out
}

fn check_config_secrets(
    r: &mut Reporter<'_>,
    entry: &PluginEntry<'_>,
    config: &Value,
    config_path: &str,
    secrets: &[String],
    env: &dyn Env,
) {
    for ptr in secrets {
        let path = instance_path(entry, ptr);
        let rel = pointer_to_path("", ptr);
        let table = format!("[{config_path}]");
        let Some(v) = config.pointer(ptr) else {
            continue;
        };
        let Value::String(s) = v else {
            r.at(
                &[&path, config_path, &entry.path()],
                false,
                Severity::Error,
                format!("{table} {rel}: a secret must be a reference string"),
                Some(format!("write {rel} = \"env:NAME\" or \"file:/path\"")),
            );
            continue;
        };
        match parse_ref(s, &r.m.base_dir) {
            RefParse::Inline if r.m.allow_inline_secrets => {}
            RefParse::Inline => r.at(
                &[&path, config_path, &entry.path()],
                false,
                Severity::Error,
                format!("{table} {rel} is a secret written inline"),
                Some(format!(
                    "the plugin marks `{rel}` as a secret: put it in an environment variable and \
                     write {rel} = \"env:NAME\", or in a file and write {rel} = \"file:/path\" (or \
                     set allow_inline_secrets = true at the top of the manifest)"
                )),
            ),
            RefParse::Bad(msg, help) => r.at(
                &[&path, config_path, &entry.path()],
                false,
                Severity::Error,
                format!("{table} {rel}: {msg}"),
                Some(help),
            ),
            RefParse::Ref(rf) => {
                if let Err(e) = probe(&rf, env) {
                    r.at(
                        &[&path, config_path, &entry.path()],
                        false,
                        Severity::Error,
                        format!("{table} {rel}: {e}"),
                        Some(crate::checks::secret_help(&rf, &e)),
                    );
                }
            }
        }
    }
}

fn type_word(t: &str) -> &str {
    match t {
        "object" => "a table",
        "array" => "an array",
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        "boolean" => "a boolean",
        other => other,
    }
}

fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

fn validate(
    r: &mut Reporter<'_>,
    entry: &PluginEntry<'_>,
    schema: &Value,
    config: &Value,
    config_path: &str,
    secrets: &[String],
) {
    struct Refuse;
    impl boon::UrlLoader for Refuse {
        fn load(&self, url: &str) -> Result<Value, Box<dyn std::error::Error>> {
            Err(format!("external schema references are not loaded ({url})").into())
        }
    }
    let mut compiler = boon::Compiler::new();
    compiler.set_default_draft(boon::Draft::V2020_12);
    compiler.use_loader(Box::new(Refuse));
    let mut schemas = boon::Schemas::new();
    let loc = "urn:cairn:plugin-config";
    let compiled = match compiler.add_resource(loc, schema.clone()) {
        Ok(()) => compiler.compile(loc, &mut schemas),
        Err(e) => Err(e),
    };
    let plugin_path = format!("{}.plugin", entry.path());
    let idx = match compiled {
        Ok(i) => i,
        Err(e) => {
            r.at(
                &[&plugin_path, &entry.path()],
                false,
                Severity::Error,
                format!(
                    "plugin `{}` has an invalid config schema: {e}",
                    entry.plugin()
                ),
                Some("this is a bug in the plugin; report it to its author".into()),
            );
            return;
        }
    };
    let Err(err) = schemas.validate(config, idx) else {
        return;
    };
    let mut leaves = Vec::new();
    flatten(&err, &mut leaves);
    let table = format!("[{config_path}]");
    for e in leaves {
        let ptr: String = e
            .instance_location
            .tokens
            .iter()
            .map(|t| match t {
                boon::InstanceToken::Prop(p) => format!("/{}", escape_token(p)),
                boon::InstanceToken::Item(i) => format!("/{i}"),
            })
            .collect();
        // Never quote a secret's value; its form is checked separately. (A type error quotes
        // no value, and a list marked secret may be given as something else.)
        let at_secret = secrets
            .iter()
            .any(|s| ptr == *s || ptr.starts_with(&format!("{s}/")));
        if at_secret && !matches!(e.kind, boon::ErrorKind::Type { .. }) {
            continue;
        }
        let rel = pointer_to_path("", &ptr);
        let here = instance_path(entry, &ptr);
        let lead = if rel.is_empty() {
            table.clone()
        } else {
            format!("{table} {rel}")
        };
        let props: Vec<String> = schema_props_at(schema, config, &ptr);
        let value = config.pointer(&ptr);
        use boon::ErrorKind as K;
        match &e.kind {
            K::AdditionalProperties { got } => {
                for k in got {
                    let key_path = join_path(&here, k);
                    let help = did_you_mean(k, props.iter().map(String::as_str))
                        .map(|s| format!("did you mean `{s}`?"))
                        .or_else(|| {
                            (!props.is_empty()).then(|| {
                                format!(
                                    "keys here are {}",
                                    props
                                        .iter()
                                        .map(|p| format!("`{p}`"))
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                )
                            })
                        });
                    r.at(
                        &[&key_path, &here, config_path, &entry.path()],
                        true,
                        Severity::Error,
                        format!(
                            "unknown key `{k}` in {}",
                            if rel.is_empty() {
                                table.clone()
                            } else {
                                format!("{table} {rel}")
                            }
                        ),
                        help,
                    );
                }
            }
            K::Required { want } => {
                for k in want {
                    r.at(
                        &[&here, config_path, &entry.path()],
                        false,
                        Severity::Error,
                        format!("{lead}: missing `{k}`"),
                        Some(format!(
                            "the plugin `{}` requires `{k}`{}",
                            entry.plugin(),
                            describe_prop(schema, config, &ptr, k)
                                .map(|d| format!(": {d}"))
                                .unwrap_or_default()
                        )),
                    );
                }
            }
            K::Type { got, want } => {
                let want = want
                    .iter()
                    .map(|t| type_word(&t.to_string()).to_string())
                    .collect::<Vec<_>>()
                    .join(" or ");
                r.at(
                    &[&here, config_path, &entry.path()],
                    false,
                    Severity::Error,
                    format!(
                        "{lead}: expected {want}, found {}",
                        match value {
                            Some(Value::Number(n)) if n.is_f64() => "a float".to_string(),
                            Some(Value::Number(_)) => "an integer".to_string(),
                            _ => type_word(&got.to_string()).to_string(),
                        }
                    ),
                    None,
                );
            }
            K::Enum { want } => {
                let choices = want.iter().map(show).collect::<Vec<_>>().join(", ");
                let got = value.map(show).unwrap_or_default();
                let help = match value {
                    Some(Value::String(s)) => {
                        did_you_mean(s, want.iter().filter_map(|w| w.as_str()))
                            .map(|s| format!("did you mean \"{s}\"?"))
                    }
                    _ => None,
                };
                r.at(
                    &[&here, config_path, &entry.path()],
                    false,
                    Severity::Error,
                    format!("{lead}: {got} is not one of {choices}"),
                    help,
                );
            }
            K::AnyOf | K::OneOf(None) => r.at(
                &[&here, config_path, &entry.path()],
                false,
                Severity::Error,
                format!(
                    "{lead}: {} matches none of the allowed forms",
                    value.map(show).unwrap_or_default()
                ),
                e.causes
                    .first()
                    .map(|c| format!("for instance: {}", c.kind)),
            ),
            other => r.at(
                &[&here, config_path, &entry.path()],
                false,
                Severity::Error,
                format!("{lead}: {other}"),
                None,
            ),
        }
    }
}

fn flatten<'a, 's, 'v>(
    e: &'a boon::ValidationError<'s, 'v>,
    out: &mut Vec<&'a boon::ValidationError<'s, 'v>>,
) {
    use boon::ErrorKind as K;
    match &e.kind {
        K::AnyOf | K::OneOf(_) => out.push(e),
        _ if e.causes.is_empty() => out.push(e),
        _ => {
            for c in &e.causes {
                flatten(c, out);
            }
        }
    }
}

/// The subschemas that apply at `ptr` (following the instance).
fn schemas_at<'s>(root: &'s Value, inst: &Value, ptr: &str) -> Vec<&'s Value> {
    let mut cur = vec![root];
    let mut v = inst;
    for tok in ptr.split('/').skip(1) {
        let tok = unescape_token(tok);
        let mut next = Vec::new();
        for s in &cur {
            let mut alts = Vec::new();
            alternatives(root, s, 0, &mut alts);
            for a in alts {
                let sub = if v.is_array() {
                    tok.parse::<usize>().ok().and_then(|i| {
                        a.get("prefixItems")
                            .and_then(|p| p.get(i))
                            .or_else(|| a.get("items").filter(|x| x.is_object()))
                    })
                } else {
                    a.get("properties")
                        .and_then(|p| p.get(&tok))
                        .or_else(|| a.get("additionalProperties").filter(|x| x.is_object()))
                };
                next.extend(sub);
            }
        }
        cur = next;
        v = match v {
            Value::Array(a) => tok
                .parse::<usize>()
                .ok()
                .and_then(|i| a.get(i))
                .unwrap_or(&Value::Null),
            Value::Object(o) => o.get(&tok).unwrap_or(&Value::Null),
            _ => &Value::Null,
        };
    }
    let mut all = Vec::new();
    for s in cur {
        alternatives(root, s, 0, &mut all);
    }
    all
}

fn schema_props_at(root: &Value, inst: &Value, ptr: &str) -> Vec<String> {
    let mut out = BTreeSet::new();
    for s in schemas_at(root, inst, ptr) {
        if let Some(Value::Object(p)) = s.get("properties") {
            out.extend(p.keys().cloned());
        }
    }
    out.into_iter().collect()
}

fn describe_prop(root: &Value, inst: &Value, ptr: &str, key: &str) -> Option<String> {
    schemas_at(root, inst, ptr).into_iter().find_map(|s| {
        s.get("properties")?
            .get(key)?
            .get("description")?
            .as_str()
            .map(str::to_string)
    })
}
