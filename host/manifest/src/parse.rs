//! From TOML text to a validated [`Manifest`], collecting every problem.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::diagnostic::{sort_diagnostics, Diagnostic, Diagnostics, Severity, Source};
use crate::model::*;
use crate::secret::{parse_ref, valid_env_name, Env, ProcessEnv, RefParse, SecretRef};
use crate::values::{
    check_recipient, glob_match, is_domain, is_glob, is_guid, parse_duration, Cron,
};

type Span = Range<usize>;
type Val<'i> = Spanned<DeValue<'i>>;

/// Reads and parses a manifest file; relative paths in it are resolved against its directory.
pub fn load(path: &Path) -> Result<Manifest, Diagnostics> {
    load_with_env(path, &ProcessEnv)
}

/// [`load`] with an explicit environment for `${NAME}` interpolation.
pub fn load_with_env(path: &Path, env: &dyn Env) -> Result<Manifest, Diagnostics> {
    let name = path.display().to_string();
    let text = match std::fs::read(path) {
        Ok(b) => match String::from_utf8(b) {
            Ok(t) => t,
            Err(_) => {
                return Err(Diagnostics(vec![Diagnostic::unlocated(
                    Severity::Error,
                    name,
                    "the manifest is not UTF-8 text",
                    Some("save it as UTF-8".into()),
                )]))
            }
        },
        Err(e) => {
            return Err(Diagnostics(vec![Diagnostic::unlocated(
                Severity::Error,
                name,
                format!("cannot read the manifest: {e}"),
                (e.kind() == std::io::ErrorKind::NotFound).then(|| {
                    "create one with `cairn init`, or pass its path with --manifest".into()
                }),
            )]))
        }
    };
    let dir = path.parent().unwrap_or(Path::new(""));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let base = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    parse_with_env(&name, &text, &base, env)
}

/// Parses manifest text. `name` is used in diagnostics; relative paths are resolved against
/// `base_dir`. `${NAME}` interpolation reads the process environment.
pub fn parse(name: &str, text: &str, base_dir: &Path) -> Result<Manifest, Diagnostics> {
    parse_with_env(name, text, base_dir, &ProcessEnv)
}

/// [`parse`] with an explicit environment for `${NAME}` interpolation.
pub fn parse_with_env(
    name: &str,
    text: &str,
    base_dir: &Path,
    env: &dyn Env,
) -> Result<Manifest, Diagnostics> {
    let mut source = Source::new(name, text);
    let (doc, errors) = DeTable::parse_recoverable(text);
    let mut p = Parser {
        text,
        env,
        base_dir: base_dir.to_path_buf(),
        pending: Vec::new(),
        masks: Vec::new(),
        spans: BTreeMap::new(),
        allow_inline: false,
        suggested_inputs: BTreeSet::new(),
        inputs_unknown: false,
        connections_unknown: false,
    };
    let mut syntax_lines = BTreeSet::new();
    for e in &errors {
        let span = e.span().unwrap_or(0..0);
        syntax_lines.insert(source.location(span.start).line);
        p.err(span, e.message().to_string(), syntax_help(e.message()));
    }
    let syntax_count = p.pending.len();
    p.record(doc.get_ref(), "");
    let root = Tbl {
        path: String::new(),
        span: 0..0,
        map: doc.get_ref(),
        interp: false,
    };
    let parts = p.manifest(&root);

    // Diagnostics on a line the parser could not read are likely consequences of it.
    let mut pending = std::mem::take(&mut p.pending);
    let semantic = pending.split_off(syntax_count);
    // A value the parser recovered from a syntax error has an empty span (at the start of the
    // file): what is said about it is a consequence too.
    pending.extend(semantic.into_iter().filter(|d| match &d.span {
        Some(s) if syntax_count > 0 && s.is_empty() => false,
        Some(s) => !syntax_lines.contains(&source.location(s.start).line),
        None => true,
    }));
    source.masks = std::mem::take(&mut p.masks);
    let mut diags: Vec<Diagnostic> = pending
        .into_iter()
        .map(|d| match d.span {
            Some(span) => source.diag(d.severity, span, d.message, d.help, &[]),
            None => {
                let mut x = Diagnostic::unlocated(d.severity, name, d.message, d.help);
                x.line = 1;
                x.column = 1;
                x
            }
        })
        .collect();
    sort_diagnostics(&mut diags);
    if diags.iter().any(Diagnostic::is_error) {
        return Err(Diagnostics(diags));
    }
    let Some(parts) = parts else {
        // Every failing check reports an error; this is a safety net, not a path.
        diags.push(Diagnostic::unlocated(
            Severity::Error,
            name,
            "the manifest could not be read completely (an error went unreported: please file a bug)",
            None,
        ));
        return Err(Diagnostics(diags));
    };
    Ok(Manifest {
        version: parts.version,
        allow_inline_secrets: parts.allow_inline,
        connections: parts.connections,
        collectors: parts.collectors,
        sinks: parts.sinks,
        retention: parts.retention,
        schedule: parts.schedule,
        base_dir: base_dir.to_path_buf(),
        warnings: diags,
        source: Arc::new(source),
        spans: p.spans,
    })
}

fn syntax_help(msg: &str) -> Option<String> {
    let m = msg.to_ascii_lowercase();
    if m.contains("must be quoted") {
        Some("put the value in quotes, e.g. key = \"value\"".into())
    } else if m.contains("duplicate key") {
        Some("a key or table may appear only once; remove or rename one of them".into())
    } else if m.contains("basic string") || m.contains("literal string") {
        Some(
            "close the string on the same line (use \"\"\" … \"\"\" for a multi-line string)"
                .into(),
        )
    } else {
        None
    }
}

/// Resolves a path from the manifest: `~/…` against `$HOME`, relative against `base_dir`.
pub(crate) fn resolve_path(p: &str, base_dir: &Path) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_dir.join(path)
    }
}

/// A key as written in a key path: bare, or quoted as TOML would.
pub(crate) fn key_seg(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        serde_json::to_string(k).unwrap_or_else(|_| format!("\"{k}\""))
    }
}

pub(crate) fn join_path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key_seg(key)
    } else {
        format!("{prefix}.{}", key_seg(key))
    }
}

/// "a string", "an integer", …
pub(crate) fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// The closest candidate to `word`, if any is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let w = norm(word);
    let mut best: Option<(f64, &'a str)> = None;
    for c in candidates {
        let cn = norm(c);
        if cn == w {
            return Some(c);
        }
        let d = strsim::damerau_levenshtein(&w, &cn);
        let len = w.chars().count().max(cn.chars().count());
        let jw = strsim::jaro_winkler(&w, &cn);
        let close = d <= (len / 3).max(1) || (jw >= 0.9 && d <= len / 2);
        if close {
            let score = jw - d as f64 * 0.05;
            if best.is_none_or(|(s, _)| score > s) {
                best = Some((score, c));
            }
        }
    }
    best.map(|(_, c)| c)
}

fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

struct Pending {
    severity: Severity,
    span: Option<Span>,
    message: String,
    help: Option<String>,
}

#[derive(Clone)]
struct Tbl<'a, 'i> {
    /// Key path, also the display name: `collectors.entra`.
    path: String,
    /// The header (or the value, for an inline table).
    span: Span,
    map: &'a DeTable<'i>,
    /// `${NAME}` interpolation is on here.
    interp: bool,
}

impl<'a, 'i> Tbl<'a, 'i> {
    fn get(&self, key: &str) -> Option<&'a Val<'i>> {
        self.map
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(_, v)| v)
    }

    fn key_span(&self, key: &str) -> Option<Span> {
        self.map
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(k, _)| k.span())
    }

    fn display(&self) -> String {
        format!("[{}]", self.path)
    }

    /// "in [path]", or "at the top level".
    fn place(&self) -> String {
        if self.path.is_empty() {
            "at the top level".into()
        } else {
            format!("in [{}]", self.path)
        }
    }

    fn child(&self, key: &str, v: &'a Val<'i>) -> Option<Tbl<'a, 'i>> {
        match v.get_ref() {
            DeValue::Table(map) => Some(Tbl {
                path: join_path(&self.path, key),
                span: v.span(),
                map,
                interp: self.interp,
            }),
            _ => None,
        }
    }
}

struct Parts {
    version: u32,
    allow_inline: bool,
    connections: BTreeMap<String, Connection>,
    collectors: BTreeMap<String, Collector>,
    sinks: BTreeMap<String, Sink>,
    retention: Option<Retention>,
    schedule: Option<Schedule>,
}

struct Parser<'t> {
    text: &'t str,
    env: &'t dyn Env,
    base_dir: PathBuf,
    pending: Vec<Pending>,
    masks: Vec<Span>,
    spans: BTreeMap<String, (Span, Span)>,
    allow_inline: bool,
    /// Collectors a mistyped sink input was probably meant to name.
    suggested_inputs: BTreeSet<String>,
    /// Some sink's `inputs` could not be read: which collectors are reached is unknown.
    inputs_unknown: bool,
    /// Some collector's `connection` could not be read: which connections are used is unknown.
    connections_unknown: bool,
}

const TOP_KEYS: &[&str] = &[
    "version",
    "allow_inline_secrets",
    "connections",
    "collectors",
    "sinks",
    "retention",
    "schedule",
];
const CONNECTION_KEYS: &[&str] = &[
    "tenant",
    "client_id",
    "client_secret",
    "certificate",
    "certificate_key",
    "cloud",
    "authority_url",
    "graph_url",
    "interpolate",
];
const COLLECTOR_KEYS: &[&str] = &[
    "plugin",
    "connection",
    "concurrency",
    "limits",
    "config",
    "interpolate",
];
const SINK_KEYS: &[&str] = &[
    "plugin",
    "url",
    "recipients",
    "key_file",
    "inputs",
    "store",
    "zstd_level",
    "pack_size_mb",
    "checkpoint_interval",
    "limits",
    "config",
    "interpolate",
];
const LIMIT_KEYS: &[&str] = &["memory_mb", "timeout_secs", "fuel"];
const RETENTION_KEYS: &[&str] = &[
    "keep_last",
    "keep_hourly",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "keep_yearly",
    "keep_within",
    "keep_tags",
];
const SCHEDULE_KEYS: &[&str] = &["backup", "check", "prune"];

/// Where keys that are misplaced belong, for the help text.
fn belongs(key: &str) -> Option<&'static str> {
    Some(match key {
        "tenant" | "client_id" | "client_secret" | "certificate" | "certificate_key" | "cloud"
        | "authority_url" | "graph_url" => "a [connections.<name>] table",
        "connection" | "concurrency" => "a [collectors.<name>] table",
        "url" | "recipients" | "key_file" | "inputs" | "store" | "zstd_level" | "pack_size_mb"
        | "checkpoint_interval" => {
            "a [sinks.<name>] table"
        }
        k if RETENTION_KEYS.contains(&k) => "[retention]",
        k if SCHEDULE_KEYS.contains(&k) => "[schedule]",
        "memory_mb" | "timeout_secs" | "fuel" => "a `limits = { … }` table of a collector or sink",
        "interpolate" => "a [connections.<name>], [collectors.<name>] or [sinks.<name>] table (it switches on ${NAME} for that table)",
        _ => return None,
    })
}

impl<'t> Parser<'t> {
    fn push(
        &mut self,
        severity: Severity,
        span: Option<Span>,
        message: String,
        help: Option<String>,
    ) {
        self.pending.push(Pending {
            severity,
            span,
            message,
            help,
        });
    }

    fn err(&mut self, span: Span, message: impl Into<String>, help: Option<String>) {
        self.push(Severity::Error, Some(span), message.into(), help);
    }

    fn warn(&mut self, span: Span, message: impl Into<String>, help: Option<String>) {
        self.push(Severity::Warning, Some(span), message.into(), help);
    }

    /// Records the key and value span of every key path.
    fn record(&mut self, t: &DeTable<'_>, prefix: &str) {
        for (k, v) in t.iter() {
            let path = join_path(prefix, k.get_ref());
            self.record_value(v, &path, k.span());
        }
    }

    fn record_value(&mut self, v: &Val<'_>, path: &str, key_span: Span) {
        self.spans.insert(path.to_string(), (key_span, v.span()));
        match v.get_ref() {
            DeValue::Table(t) => self.record(t, path),
            DeValue::Array(a) => {
                for (i, e) in a.iter().enumerate() {
                    self.record_value(e, &format!("{path}[{i}]"), e.span());
                }
            }
            _ => {}
        }
    }

    /// Reports keys of `t` not in `known`, with a did-you-mean or where they belong.
    fn check_keys(&mut self, t: &Tbl<'_, '_>, known: &[&str], plugin_config: bool) {
        for (k, _) in t.map.iter() {
            let key = k.get_ref().as_ref();
            if known.contains(&key) {
                continue;
            }
            let help = if let Some(s) = did_you_mean(key, known.iter().copied()) {
                Some(format!("did you mean `{s}`?"))
            } else if let Some(place) = belongs(key) {
                Some(format!("`{key}` belongs in {place}"))
            } else if plugin_config {
                Some(format!(
                    "the plugin's own settings go in [{}.config]; keys here are {}",
                    t.path,
                    list(known)
                ))
            } else {
                Some(format!("keys here are {}", list(known)))
            };
            let place = if t.path.is_empty() {
                "at the top level".to_string()
            } else {
                format!("in {}", t.display())
            };
            self.err(k.span(), format!("unknown key `{key}` {place}"), help);
        }
    }

    fn type_err(
        &mut self,
        t: &Tbl<'_, '_>,
        key: &str,
        v: &Val<'_>,
        want: &str,
        help: Option<String>,
    ) {
        let help =
            help.or_else(|| match (want, v.get_ref()) {
                ("a string", DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_)) => {
                    let raw = self.text.get(v.span()).unwrap_or("…");
                    Some(format!("write it in quotes: {} = \"{raw}\"", key_seg(key)))
                }
                ("an integer", DeValue::String(s)) if s.trim().parse::<i64>().is_ok() => Some(
                    format!("write it without quotes: {} = {}", key_seg(key), s.trim()),
                ),
                ("a boolean", DeValue::String(s)) if s == "true" || s == "false" => {
                    Some(format!("write it without quotes: {} = {s}", key_seg(key)))
                }
                ("an array of strings", DeValue::String(s)) => {
                    Some(format!("write a list: {} = [\"{s}\"]", key_seg(key)))
                }
                _ => None,
            });
        self.err(
            v.span(),
            format!(
                "expected {want} for `{key}` {}, found {}",
                t.place(),
                type_name(v.get_ref())
            ),
            help,
        );
    }

    fn missing(&mut self, t: &Tbl<'_, '_>, key: &str, help: String) {
        // A misspelt key already drew "unknown key … did you mean `key`?".
        let misspelt = t.map.iter().any(|(k, _)| {
            let k = k.get_ref().as_ref();
            k != key && did_you_mean(k, [key]).is_some()
        });
        if misspelt {
            return;
        }
        self.err(
            t.span.clone(),
            format!("missing `{key}` {}", t.place()),
            Some(help),
        );
    }

    /// A string value (interpolated where switched on).
    fn string(&mut self, t: &Tbl<'_, '_>, key: &str) -> Option<(String, Span)> {
        let v = t.get(key)?;
        match v.get_ref() {
            DeValue::String(s) => {
                let s = self.interpolate(s, v.span(), t)?;
                Some((s, v.span()))
            }
            _ => {
                self.type_err(t, key, v, "a string", None);
                None
            }
        }
    }

    fn req_string(&mut self, t: &Tbl<'_, '_>, key: &str, help: &str) -> Option<(String, Span)> {
        if t.get(key).is_none() {
            self.missing(t, key, help.to_string());
            return None;
        }
        self.string(t, key)
    }

    fn int(&mut self, t: &Tbl<'_, '_>, key: &str, lo: i64, hi: i64) -> Option<(i64, Span)> {
        let v = t.get(key)?;
        match v.get_ref() {
            DeValue::Integer(i) => {
                let n = i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()).ok();
                match n {
                    Some(n) if (lo..=hi).contains(&n) => Some((n, v.span())),
                    _ => {
                        self.err(
                            v.span(),
                            format!(
                                "`{key}` {} is out of range: {} is not in {lo}..={hi}",
                                t.place(),
                                self.text.get(v.span()).unwrap_or("?")
                            ),
                            Some(format!("use a value from {lo} to {hi}")),
                        );
                        None
                    }
                }
            }
            _ => {
                self.type_err(t, key, v, "an integer", None);
                None
            }
        }
    }

    fn boolean(&mut self, t: &Tbl<'_, '_>, key: &str) -> Option<bool> {
        let v = t.get(key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.type_err(t, key, v, "a boolean", None);
                None
            }
        }
    }

    /// An array of strings (each interpolated where switched on).
    fn strings(&mut self, t: &Tbl<'_, '_>, key: &str) -> Option<Vec<(String, Span)>> {
        let (out, ok) = self.strings_partial(t, key)?;
        ok.then_some(out)
    }

    /// The string elements of an array, and whether every element was a valid string.
    fn strings_partial(
        &mut self,
        t: &Tbl<'_, '_>,
        key: &str,
    ) -> Option<(Vec<(String, Span)>, bool)> {
        let v = t.get(key)?;
        let DeValue::Array(a) = v.get_ref() else {
            self.type_err(t, key, v, "an array of strings", None);
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, e) in a.iter().enumerate() {
            match e.get_ref() {
                DeValue::String(s) => match self.interpolate(s, e.span(), t) {
                    Some(s) => out.push((s, e.span())),
                    None => ok = false,
                },
                other => {
                    self.err(
                        e.span(),
                        format!(
                            "expected a string for `{key}[{i}]` {}, found {}",
                            t.place(),
                            type_name(other)
                        ),
                        None,
                    );
                    ok = false;
                }
            }
        }
        Some((out, ok))
    }

    fn subtable<'a, 'i>(&mut self, t: &Tbl<'a, 'i>, key: &str) -> Option<Tbl<'a, 'i>> {
        let v = t.get(key)?;
        match t.child(key, v) {
            Some(c) => Some(c),
            None => {
                self.type_err(
                    t,
                    key,
                    v,
                    "a table",
                    Some(format!(
                        "write it as a table: [{}] on its own line followed by key = value lines, \
                         or inline: {} = {{ … }}",
                        join_path(&t.path, key),
                        key_seg(key)
                    )),
                );
                None
            }
        }
    }

    /// Replaces `${NAME}` / `${NAME:-default}` where `t.interp`; `$${` is a literal `${`.
    /// Where interpolation is off, a `${` draws a warning and the string stays as is.
    fn interpolate(&mut self, s: &str, span: Span, t: &Tbl<'_, '_>) -> Option<String> {
        if !s.contains("${") {
            return Some(s.to_string());
        }
        // Exact offsets inside the string when the source is a plain quoted copy of it.
        let raw = self.text.get(span.clone()).unwrap_or("");
        let exact = raw.len() == s.len() + 2
            && (raw.starts_with('"') || raw.starts_with('\''))
            && &raw[1..raw.len() - 1] == s;
        let at = |i: usize, len: usize| -> Span {
            if exact {
                span.start + 1 + i..span.start + 1 + i + len
            } else {
                span.clone()
            }
        };
        let owner = t.path.split('.').take(2).collect::<Vec<_>>().join(".");
        if !t.interp {
            if let Some(i) = s.find("${").filter(|&i| i == 0 || !s[..i].ends_with('$')) {
                let name: String = s[i + 2..].chars().take_while(|c| *c != '}').collect();
                self.warn(
                    at(i, name.len() + 3),
                    format!("`${{{name}}}` is left as is: interpolation is off in [{owner}]"),
                    Some(format!(
                        "to substitute environment variables here, set `interpolate = true` in \
                         [{owner}]; for secrets use a reference (\"env:NAME\") instead"
                    )),
                );
            }
            return Some(s.to_string());
        }
        let mut out = String::new();
        let mut i = 0;
        let mut ok = true;
        while i < s.len() {
            let rest = &s[i..];
            if rest.starts_with("$${") {
                out.push_str("${");
                i += 3;
                continue;
            }
            if !rest.starts_with("${") {
                let c = rest.chars().next().expect("non-empty");
                out.push(c);
                i += c.len_utf8();
                continue;
            }
            let Some(close) = rest.find('}') else {
                self.err(
                    at(i, rest.len()),
                    "unterminated `${` in an interpolated string",
                    Some("write ${NAME}, or $${ for a literal `${`".into()),
                );
                return None;
            };
            let inner = &rest[2..close];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if !valid_env_name(name) {
                self.err(
                    at(i, close + 1),
                    format!("`${{{inner}}}` does not name an environment variable"),
                    Some(
                        "write ${NAME} or ${NAME:-default}, where NAME has only letters, digits \
                         and `_`; write $${ for a literal `${`"
                            .into(),
                    ),
                );
                ok = false;
            } else {
                match (self.env.var(name), default) {
                    (Ok(v), _) => out.push_str(&v),
                    (Err(_), Some(d)) => out.push_str(d),
                    (Err(std::env::VarError::NotPresent), None) => {
                        self.err(
                            at(i, close + 1),
                            format!("environment variable {name} is not set (interpolated in [{owner}])"),
                            Some(format!(
                                "set {name} in cairn's environment, or give a default: ${{{name}:-value}}"
                            )),
                        );
                        ok = false;
                    }
                    (Err(std::env::VarError::NotUnicode(_)), None) => {
                        self.err(
                            at(i, close + 1),
                            format!("environment variable {name} is not valid UTF-8"),
                            None,
                        );
                        ok = false;
                    }
                }
            }
            i += close + 1;
        }
        ok.then_some(out)
    }

    /// A secret field: `env:NAME` or `file:/path`; inline only with `allow_inline_secrets`.
    fn secret(&mut self, t: &Tbl<'_, '_>, key: &str) -> Option<SecretRef> {
        let v = t.get(key)?;
        let DeValue::String(_) = v.get_ref() else {
            self.masks.push(v.span());
            self.type_err(
                t,
                key,
                v,
                "a string",
                Some(format!(
                    "write a reference: {} = \"env:NAME\" or \"file:/path\"",
                    key_seg(key)
                )),
            );
            return None;
        };
        let (s, span) = self.string(t, key)?;
        match parse_ref(&s, &self.base_dir) {
            RefParse::Ref(r) => Some(r),
            RefParse::Bad(msg, help) => {
                self.err(span, msg, Some(help));
                None
            }
            RefParse::Inline => {
                self.masks.push(span.clone());
                if self.allow_inline {
                    return Some(SecretRef::Inline(crate::Secret::new(s)));
                }
                let var = format!(
                    "CAIRN_{}",
                    key.to_ascii_uppercase()
                        .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
                );
                self.err(
                    span,
                    format!("`{key}` in {} is a secret written inline", t.display()),
                    Some(format!(
                        "keep secrets out of the manifest: put it in an environment variable and \
                         write {k} = \"env:{var}\", or in a file only cairn's user can read and \
                         write {k} = \"file:/etc/cairn/{file}\" (to allow inline secrets anyway, \
                         set allow_inline_secrets = true at the top)",
                        k = key_seg(key),
                        file = key.replace('_', "-")
                    )),
                );
                None
            }
        }
    }

    fn name_ok(&mut self, kind: &str, name: &str, span: Span) -> bool {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            self.err(
                span,
                format!("`{name}` is not a valid {kind} name"),
                Some(
                    "names have up to 64 letters, digits, `-` and `_`, starting with a letter or \
                     digit"
                        .into(),
                ),
            );
        }
        ok
    }

    /// The entries of a `[kind.<name>]` family of tables.
    fn family<'a, 'i>(
        &mut self,
        root: &Tbl<'a, 'i>,
        key: &str,
        kind: &str,
    ) -> Vec<(String, Tbl<'a, 'i>)> {
        if let Some(v) = root.get(key) {
            if let DeValue::Array(_) = v.get_ref() {
                self.err(
                    v.span(),
                    format!("`{key}` must be named tables, found an array"),
                    Some(format!(
                        "each {kind} is a named table: write [{key}.<name>] (e.g. [{key}.{}]), \
                         not [[{key}]]",
                        match key {
                            "connections" => "contoso",
                            "collectors" => "entra",
                            _ => "local",
                        }
                    )),
                );
                return Vec::new();
            }
        }
        let Some(t) = self.subtable(root, key) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in t.map.iter() {
            let name = k.get_ref().to_string();
            match t.child(&name, v) {
                Some(c) => {
                    if self.name_ok(kind, &name, k.span()) {
                        out.push((name, c));
                    }
                }
                None => self.err(
                    v.span(),
                    format!(
                        "`{key}.{name}` must be a table, found {}",
                        type_name(v.get_ref())
                    ),
                    Some(format!(
                        "each {kind} is a named table: write [{key}.<name>] on its own line, \
                         followed by its keys (such as `{name}`)"
                    )),
                ),
            }
        }
        out
    }

    fn interp_flag(&mut self, t: &mut Tbl<'_, '_>) {
        t.interp = false;
        if let Some(b) = self.boolean(t, "interpolate") {
            t.interp = b;
        }
    }

    fn manifest(&mut self, root: &Tbl<'_, '_>) -> Option<Parts> {
        self.check_keys(root, TOP_KEYS, false);
        let version = match root.get("version") {
            None => {
                self.push(
                    Severity::Error,
                    None,
                    "missing `version`".into(),
                    Some("add `version = 1` at the top of the manifest".into()),
                );
                None
            }
            Some(v) => match v.get_ref() {
                DeValue::Integer(_) => {
                    let n = self.int(root, "version", i64::MIN, i64::MAX).map(|x| x.0);
                    match n {
                        Some(MANIFEST_VERSION) => Some(1),
                        Some(n) => {
                            let help = if n > MANIFEST_VERSION {
                                format!(
                                    "this cairn reads manifest version {MANIFEST_VERSION}; a \
                                     newer cairn is needed for version {n}"
                                )
                            } else {
                                format!("write version = {MANIFEST_VERSION}")
                            };
                            self.err(
                                v.span(),
                                format!("unsupported manifest version {n}"),
                                Some(help),
                            );
                            // The rest follows rules this version does not know.
                            return None;
                        }
                        None => None,
                    }
                }
                _ => {
                    self.type_err(root, "version", v, "an integer", None);
                    None
                }
            },
        };
        self.allow_inline = self.boolean(root, "allow_inline_secrets").unwrap_or(false);
        if self.allow_inline {
            if let Some(s) = root.key_span("allow_inline_secrets") {
                self.warn(
                    s,
                    "inline secrets are allowed: secret values may be written in this file"
                        .to_string(),
                    Some(
                        "prefer env:NAME or file:/path references, and keep this file private"
                            .into(),
                    ),
                );
            }
        }

        let conn_tables = self.family(root, "connections", "connection");
        let coll_tables = self.family(root, "collectors", "collector");
        let sink_tables = self.family(root, "sinks", "sink");

        let mut connections = BTreeMap::new();
        let mut all_ok = version.is_some();
        for (name, t) in &conn_tables {
            match self.connection(name, t.clone()) {
                Some(c) => {
                    connections.insert(name.clone(), c);
                }
                None => all_ok = false,
            }
        }
        let conn_names: Vec<&str> = conn_tables.iter().map(|(n, _)| n.as_str()).collect();
        let mut collectors = BTreeMap::new();
        let mut used_connections = BTreeSet::new();
        for (name, t) in &coll_tables {
            match self.collector(name, t.clone(), &conn_names, &mut used_connections) {
                Some(c) => {
                    collectors.insert(name.clone(), c);
                }
                None => all_ok = false,
            }
        }
        let coll_names: Vec<&str> = coll_tables.iter().map(|(n, _)| n.as_str()).collect();
        let mut sinks = BTreeMap::new();
        let mut reached = BTreeSet::new();
        for (name, t) in &sink_tables {
            match self.sink(name, t.clone(), &coll_names, &mut reached) {
                Some(s) => {
                    sinks.insert(name.clone(), s);
                }
                None => all_ok = false,
            }
        }

        let top = |key: &str| root.key_span(key);
        if coll_tables.is_empty() {
            let help = "add a collector, e.g.\n[collectors.entra]\nplugin = \"entra\"\nconnection = \"contoso\"";
            match top("collectors") {
                Some(s) => self.err(s, "no collectors are defined", Some(help.into())),
                None => self.push(
                    Severity::Error,
                    None,
                    "no [collectors.<name>] table: nothing would be backed up".into(),
                    Some(help.into()),
                ),
            }
        }
        if conn_tables.is_empty() && !coll_tables.is_empty() {
            let help = "add a connection, e.g.\n[connections.contoso]\ntenant = \"contoso.onmicrosoft.com\"\nclient_id = \"…\"\nclient_secret = \"env:CAIRN_CLIENT_SECRET\"";
            match top("connections") {
                Some(s) => self.err(s, "no connections are defined", Some(help.into())),
                None => self.push(
                    Severity::Error,
                    None,
                    "no [connections.<name>] table: collectors need a Microsoft Graph connection"
                        .into(),
                    Some(help.into()),
                ),
            }
        }
        if sink_tables.is_empty() {
            let help = "add a sink, e.g.\n[sinks.local]\nplugin = \"age-sink\"\nurl = \"/var/backups/cairn\"\nrecipients = [\"age1…\"]\ninputs = [\"*\"]";
            match top("sinks") {
                Some(s) => self.err(s, "no sinks are defined", Some(help.into())),
                None => self.push(
                    Severity::Error,
                    None,
                    "no [sinks.<name>] table: backups would have nowhere to go".into(),
                    Some(help.into()),
                ),
            }
        } else {
            for (name, t) in &coll_tables {
                if !reached.contains(name)
                    && !self.suggested_inputs.contains(name)
                    && !self.inputs_unknown
                {
                    let first = &sink_tables[0].0;
                    self.err(
                        t.span.clone(),
                        format!("collector `{name}` is not an input of any sink: its items would go nowhere"),
                        Some(format!(
                            "add \"{name}\" (or a glob matching it) to `inputs` of a sink, e.g. [sinks.{first}]"
                        )),
                    );
                }
            }
        }
        for (name, t) in &conn_tables {
            if !used_connections.contains(name)
                && !coll_tables.is_empty()
                && !self.connections_unknown
            {
                self.warn(
                    t.span.clone(),
                    format!("connection `{name}` is not used by any collector"),
                    Some("remove it, or name it in a collector's `connection`".into()),
                );
            }
        }

        let retention = match self.subtable(root, "retention") {
            Some(t) => self.retention(t),
            None => Some(None),
        };
        let schedule = match self.subtable(root, "schedule") {
            Some(t) => self.schedule(t),
            None => Some(None),
        };
        if !all_ok {
            return None;
        }
        Some(Parts {
            version: version?,
            allow_inline: self.allow_inline,
            connections,
            collectors,
            sinks,
            retention: retention?,
            schedule: schedule?,
        })
    }

    fn connection(&mut self, name: &str, mut t: Tbl<'_, '_>) -> Option<Connection> {
        self.interp_flag(&mut t);
        self.check_keys(&t, CONNECTION_KEYS, false);
        let mut ok = true;

        let tenant = self.req_string(
            &t,
            "tenant",
            "add tenant = \"contoso.onmicrosoft.com\" (the tenant's id or one of its domains)",
        );
        if let Some((v, span)) = &tenant {
            if !is_guid(v) && !is_domain(v) {
                let help = if !v.contains('.') && is_domain(&format!("{v}.onmicrosoft.com")) {
                    format!("did you mean \"{v}.onmicrosoft.com\"?")
                } else {
                    "write the directory (tenant) id, a GUID, or a domain such as \
                     contoso.onmicrosoft.com"
                        .into()
                };
                self.err(
                    span.clone(),
                    format!("`tenant` = \"{v}\" is neither a tenant id (GUID) nor a domain"),
                    Some(help),
                );
                ok = false;
            }
        }
        let client_id = self.req_string(
            &t,
            "client_id",
            "add client_id = \"…\": the application (client) id of the app registration, a GUID",
        );
        if let Some((v, span)) = &client_id {
            if !is_guid(v) {
                self.err(
                    span.clone(),
                    format!("`client_id` = \"{v}\" is not a GUID"),
                    Some(
                        "write the app registration's application (client) id, e.g. \
                         11111111-2222-3333-4444-555555555555 (Entra admin center → App \
                         registrations → Overview)"
                            .into(),
                    ),
                );
                ok = false;
            }
        }

        let mut cloud = Cloud::Global;
        if let Some((v, span)) = self.string(&t, "cloud") {
            match Cloud::ALL.iter().find(|(n, _)| *n == v) {
                Some((_, c)) => cloud = *c,
                None => {
                    let names: Vec<&str> = Cloud::ALL.iter().map(|(n, _)| *n).collect();
                    let alias = match v.to_ascii_lowercase().replace(['-', '_', ' '], "").as_str() {
                        "public" | "azure" | "azurecloud" | "commercial" => Some("global"),
                        "gcchigh" | "usgovernment" | "azureusgovernment" | "gcch" => Some("usgov"),
                        "dod" | "usdod" => Some("usgov-dod"),
                        "21vianet" | "azurechinacloud" | "mooncake" => Some("china"),
                        _ => None,
                    };
                    let help = match alias.or_else(|| did_you_mean(&v, names.iter().copied())) {
                        Some(s) => format!("did you mean `{s}`? (clouds: {})", list(&names)),
                        None => format!("clouds are {}", list(&names)),
                    };
                    self.err(span, format!("unknown cloud `{v}`"), Some(help));
                    ok = false;
                }
            }
        }
        let authority = self.endpoint(&t, "authority_url");
        let graph = self.endpoint(&t, "graph_url");
        if matches!(authority, Some(None)) || matches!(graph, Some(None)) {
            ok = false;
        }

        let has = |k: &str| t.get(k).is_some();
        let credential = match (
            has("client_secret"),
            has("certificate"),
            has("certificate_key"),
        ) {
            (true, false, false) => self.secret(&t, "client_secret").map(Credential::Secret),
            (false, true, true) => {
                let cert = self.certificate(&t);
                let key = self.secret(&t, "certificate_key");
                match (cert, key) {
                    (Some(cert), Some(key)) => Some(Credential::Certificate { cert, key }),
                    _ => None,
                }
            }
            (true, _, _) => {
                let s = t
                    .key_span("certificate")
                    .or_else(|| t.key_span("certificate_key"));
                self.err(
                    s.unwrap_or(t.span.clone()),
                    format!("{} has both a client secret and a certificate", t.display()),
                    Some(
                        "keep one: `client_secret`, or `certificate` with `certificate_key`".into(),
                    ),
                );
                // Still check the secret's form.
                let _ = self.secret(&t, "client_secret");
                None
            }
            (false, true, false) => {
                self.err(
                    t.key_span("certificate").unwrap_or(t.span.clone()),
                    format!("`certificate` in {} has no `certificate_key`", t.display()),
                    Some(
                        "add certificate_key = \"file:/etc/cairn/app.key\" (the PEM private key; \
                         if it is in the certificate's file, name that file again)"
                            .into(),
                    ),
                );
                None
            }
            (false, false, true) => {
                self.err(
                    t.key_span("certificate_key").unwrap_or(t.span.clone()),
                    format!("`certificate_key` in {} has no `certificate`", t.display()),
                    Some(
                        "add certificate = \"file:/etc/cairn/app.crt\" (the PEM certificate)"
                            .into(),
                    ),
                );
                None
            }
            (false, false, false) => {
                self.missing(
                    &t,
                    "client_secret",
                    "add a credential: client_secret = \"env:CAIRN_CLIENT_SECRET\", or \
                     certificate = \"file:/etc/cairn/app.crt\" with certificate_key = \
                     \"file:/etc/cairn/app.key\""
                        .into(),
                );
                None
            }
        };

        let (tenant, client_id, credential) = (tenant?, client_id?, credential?);
        if !ok {
            return None;
        }
        let authority = authority.flatten();
        let graph = graph.flatten();
        Some(Connection {
            name: name.to_string(),
            tenant: tenant.0,
            client_id: client_id.0,
            credential,
            cloud,
            endpoints_overridden: authority.is_some() || graph.is_some(),
            authority_url: authority.unwrap_or_else(|| cloud.authority_url().to_string()),
            graph_url: graph.unwrap_or_else(|| cloud.graph_url().to_string()),
        })
    }

    /// `certificate`: `file:`/`env:` reference, a plain path, or inline PEM (it is public).
    fn certificate(&mut self, t: &Tbl<'_, '_>) -> Option<SecretRef> {
        let (s, span) = self.string(t, "certificate")?;
        if s.trim_start().starts_with("-----BEGIN") {
            return Some(SecretRef::Inline(crate::Secret::new(s)));
        }
        match parse_ref(&s, &self.base_dir) {
            RefParse::Ref(r) => Some(r),
            RefParse::Bad(m, h) => {
                self.err(span, m, Some(h));
                None
            }
            RefParse::Inline => Some(SecretRef::File(resolve_path(&s, &self.base_dir))),
        }
    }

    /// `None`: absent; `Some(None)`: invalid (reported); `Some(Some(url))`: valid, ends in `/`.
    fn endpoint(&mut self, t: &Tbl<'_, '_>, key: &str) -> Option<Option<String>> {
        t.get(key)?;
        let Some((s, span)) = self.string(t, key) else {
            return Some(None);
        };
        let bad = |p: &mut Self, msg: String, help: &str| {
            p.err(span.clone(), msg, Some(help.to_string()));
            Some(None)
        };
        let url = match url::Url::parse(&s) {
            Ok(u) => u,
            Err(e) => return bad(
                self,
                format!("`{key}` = \"{s}\" is not a URL: {e}"),
                "write https://host[:port][/path], e.g. http://127.0.0.1:8123 for the simulator",
            ),
        };
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return bad(
                self,
                format!("`{key}` must be an http(s) URL, not `{s}`"),
                "write https://host[:port][/path]",
            );
        }
        if !url.username().is_empty() || url.password().is_some() {
            return bad(
                self,
                format!("`{key}` must not contain a user name or password"),
                "credentials go in client_secret or certificate_key",
            );
        }
        if url.query().is_some() || url.fragment().is_some() {
            return bad(
                self,
                format!("`{key}` must not have a query or fragment"),
                "write https://host[:port][/path]",
            );
        }
        if url.scheme() == "http" {
            let loopback = match url.host() {
                Some(url::Host::Ipv4(a)) => a.is_loopback(),
                Some(url::Host::Ipv6(a)) => a.is_loopback(),
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                None => false,
            };
            if !loopback {
                return bad(
                    self,
                    format!("`{key}` uses plain http to a remote host: credentials and tokens would travel unencrypted"),
                    "use https (plain http is accepted only for loopback addresses, such as the simulator)",
                );
            }
        }
        let mut s = url.to_string();
        if !s.ends_with('/') {
            s.push('/');
        }
        Some(Some(s))
    }

    fn plugin(&mut self, t: &Tbl<'_, '_>, example: &str) -> Option<PluginRef> {
        let (s, span) = self.req_string(
            t,
            "plugin",
            &format!("add plugin = \"{example}\" (a bundled plugin's name, or a path to a .wasm component)"),
        )?;
        if s.ends_with(".wasm") || s.contains('/') || s.contains('\\') {
            if !s.ends_with(".wasm") {
                self.err(
                    span,
                    format!("`plugin` = \"{s}\" is a path but not to a .wasm file"),
                    Some("a plugin file is a WebAssembly component ending in .wasm".into()),
                );
                return None;
            }
            return Some(PluginRef::File(resolve_path(&s, &self.base_dir)));
        }
        let ok = s
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !ok {
            self.err(
                span,
                format!("`plugin` = \"{s}\" is neither a bundled plugin name nor a .wasm path"),
                Some(
                    "bundled plugins have lower-case names such as \"entra\" or \"age-sink\" \
                     (`cairn plugins list` shows them); a plugin file ends in .wasm"
                        .into(),
                ),
            );
            return None;
        }
        Some(PluginRef::Bundled(s))
    }

    fn limits(&mut self, t: &Tbl<'_, '_>) -> Option<Limits> {
        let Some(l) = self.subtable(t, "limits") else {
            return if t.get("limits").is_some() {
                None
            } else {
                Some(Limits::default())
            };
        };
        self.check_keys(&l, LIMIT_KEYS, false);
        let mut ok = true;
        let mut num = |p: &mut Self, key: &str, lo: i64, hi: i64| -> Option<i64> {
            let r = p.int(&l, key, lo, hi).map(|x| x.0);
            if r.is_none() && l.get(key).is_some() {
                ok = false;
            }
            r
        };
        let memory_mb = num(self, "memory_mb", 1, 65_536).map(|v| v as u32);
        let timeout_secs = num(self, "timeout_secs", 1, 86_400).map(|v| v as u32);
        let fuel = num(self, "fuel", 1, i64::MAX).map(|v| v as u64);
        ok.then_some(Limits {
            memory_mb,
            timeout_secs,
            fuel,
        })
    }

    fn config(&mut self, t: &Tbl<'_, '_>) -> Option<serde_json::Value> {
        let Some(c) = self.subtable(t, "config") else {
            return if t.get("config").is_some() {
                None
            } else {
                Some(serde_json::Value::Object(Default::default()))
            };
        };
        let v = t.get("config").expect("subtable exists");
        self.json_of(v, &c.path, &c)
    }

    /// A TOML value as JSON (date-times become strings), strings interpolated where on.
    fn json_of(
        &mut self,
        v: &Val<'_>,
        path: &str,
        owner: &Tbl<'_, '_>,
    ) -> Option<serde_json::Value> {
        use serde_json::Value as J;
        Some(match v.get_ref() {
            DeValue::String(s) => J::String(self.interpolate(s, v.span(), owner)?),
            DeValue::Integer(i) => {
                match i64::from_str_radix(&i.as_str().replace('_', ""), i.radix()) {
                    Ok(n) => J::from(n),
                    Err(_) => {
                        self.err(v.span(), format!("`{path}`: integer out of range"), None);
                        return None;
                    }
                }
            }
            DeValue::Float(f) => {
                let x: Option<f64> = f.as_str().replace('_', "").parse().ok();
                match x.and_then(serde_json::Number::from_f64) {
                    Some(n) => J::Number(n),
                    None => {
                        self.err(
                            v.span(),
                            format!("`{path}`: {} cannot be passed to a plugin (JSON has no inf or nan)", f.as_str()),
                            None,
                        );
                        return None;
                    }
                }
            }
            DeValue::Boolean(b) => J::Bool(*b),
            DeValue::Datetime(d) => J::String(d.to_string()),
            DeValue::Array(a) => {
                let mut out = Vec::new();
                let mut ok = true;
                for (i, e) in a.iter().enumerate() {
                    match self.json_of(e, &format!("{path}[{i}]"), owner) {
                        Some(j) => out.push(j),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                J::Array(out)
            }
            DeValue::Table(t) => {
                let mut out = serde_json::Map::new();
                let mut ok = true;
                for (k, e) in t.iter() {
                    let key = k.get_ref().to_string();
                    match self.json_of(e, &join_path(path, &key), owner) {
                        Some(j) => {
                            out.insert(key, j);
                        }
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                J::Object(out)
            }
        })
    }

    fn collector(
        &mut self,
        name: &str,
        mut t: Tbl<'_, '_>,
        connections: &[&str],
        used: &mut BTreeSet<String>,
    ) -> Option<Collector> {
        self.interp_flag(&mut t);
        self.check_keys(&t, COLLECTOR_KEYS, true);
        let plugin = self.plugin(&t, "entra");
        let connection = if connections.len() == 1 {
            self.req_string(
                &t,
                "connection",
                &format!("add connection = \"{}\"", connections[0]),
            )
        } else {
            self.req_string(
                &t,
                "connection",
                "add connection = \"<name>\", naming a [connections.<name>] table",
            )
        };
        let mut ok = true;
        if connection.is_none() {
            self.connections_unknown = true;
        }
        if let Some((c, span)) = &connection {
            if connections.contains(&c.as_str()) {
                used.insert(c.clone());
            } else if !connections.is_empty() {
                let help = match did_you_mean(c, connections.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!(
                        "connections are {}; or add a [connections.{c}] table",
                        list(connections)
                    ),
                };
                self.err(
                    span.clone(),
                    format!("collector `{name}` names connection `{c}`, which is not defined"),
                    Some(help),
                );
                ok = false;
            } else {
                ok = false;
            }
        }
        let concurrency = self.int(&t, "concurrency", 1, 64).map(|x| x.0 as u32);
        if concurrency.is_none() && t.get("concurrency").is_some() {
            ok = false;
        }
        let limits = self.limits(&t);
        let config = self.config(&t);
        let (plugin, connection, limits, config) = (plugin?, connection?, limits?, config?);
        ok.then(|| Collector {
            name: name.to_string(),
            plugin,
            connection: connection.0,
            concurrency,
            limits,
            config,
        })
    }

    fn sink(
        &mut self,
        name: &str,
        mut t: Tbl<'_, '_>,
        collectors: &[&str],
        reached: &mut BTreeSet<String>,
    ) -> Option<Sink> {
        self.interp_flag(&mut t);
        self.check_keys(&t, SINK_KEYS, true);
        let mut ok = true;
        let plugin = self.plugin(&t, "age-sink");

        // inputs first: the cross-check needs them even if the rest is broken.
        let inputs = if t.get("inputs").is_none() {
            self.missing(
                &t,
                "inputs",
                "add inputs = [\"*\"] (every collector), or list collector names and globs".into(),
            );
            self.inputs_unknown = true;
            None
        } else {
            match self.strings_partial(&t, "inputs") {
                Some((v, true)) => Some(v),
                Some((v, false)) => {
                    ok = false;
                    self.inputs_unknown = true;
                    Some(v)
                }
                None => {
                    self.inputs_unknown = true;
                    None
                }
            }
        };
        let mut matched = BTreeSet::new();
        if let Some(inputs) = &inputs {
            if inputs.is_empty() {
                self.err(
                    t.get("inputs").expect("present").span(),
                    format!("`inputs` of {} is empty", t.display()),
                    Some("name at least one collector, or \"*\" for all".into()),
                );
                self.inputs_unknown = true;
                ok = false;
            }
            for (i, span) in inputs {
                let hits: Vec<&str> = if is_glob(i) {
                    collectors
                        .iter()
                        .copied()
                        .filter(|c| glob_match(i, c))
                        .collect()
                } else {
                    collectors.iter().copied().filter(|c| c == i).collect()
                };
                if hits.is_empty() && !collectors.is_empty() {
                    let help = match (is_glob(i), did_you_mean(i, collectors.iter().copied())) {
                        (false, Some(s)) => {
                            self.suggested_inputs.insert(s.to_string());
                            format!("did you mean `{s}`?")
                        }
                        _ => format!("collectors are {}", list(collectors)),
                    };
                    let msg = if is_glob(i) {
                        format!("input `{i}` of {} matches no collector", t.display())
                    } else {
                        format!("input `{i}` of {} names no collector", t.display())
                    };
                    self.err(span.clone(), msg, Some(help));
                    ok = false;
                }
                matched.extend(hits.iter().map(|s| s.to_string()));
            }
            reached.extend(matched.iter().cloned());
        } else {
            ok = false;
        }

        let url = self.req_string(
            &t,
            "url",
            "add url = \"/var/backups/cairn\" (a directory), or s3://bucket/prefix, \
             az://container/prefix, gs://bucket/prefix",
        );
        let location = match &url {
            Some((u, span)) => self.store_location(u, span.clone()),
            None => None,
        };

        let mut recipients = Vec::new();
        if t.get("recipients").is_some() {
            match self.strings_partial(&t, "recipients") {
                Some((rs, all)) => {
                    ok &= all;
                    for (r, span) in rs {
                        if let Err((msg, help)) = check_recipient(&r) {
                            if msg.contains("private key") || msg.contains("PEM") {
                                self.masks.push(span.clone());
                                self.err(span, msg, Some(help));
                            } else {
                                let shown: String = r.chars().take(24).collect();
                                let more = if r.chars().count() > 24 { "…" } else { "" };
                                self.err(
                                    span,
                                    format!("recipient \"{shown}{more}\": {msg}"),
                                    Some(help),
                                );
                            }
                            ok = false;
                        } else {
                            recipients.push(r.trim().to_string());
                        }
                    }
                }
                None => ok = false,
            }
        }
        if recipients.is_empty()
            && t.get("recipients").is_none()
            && matches!(&plugin, Some(PluginRef::Bundled(p)) if p == "age-sink")
        {
            self.missing(
                &t,
                "recipients",
                "the age sink encrypts to recipients: add recipients = [\"age1…\"] (`cairn init \
                 --generate-key` makes a key pair; keep the private key offline)"
                    .into(),
            );
            ok = false;
        }
        let age = matches!(&plugin, Some(PluginRef::Bundled(p)) if p == "age-sink");
        if let (true, true, Some(v)) = (age, ok, t.get("recipients")) {
            if recipients.is_empty() {
                self.err(
                    v.span(),
                    format!(
                        "`recipients` of {} is empty: nobody could read the backups",
                        t.display()
                    ),
                    Some(
                        "add at least one age1… recipient or ssh-ed25519/ssh-rsa public key".into(),
                    ),
                );
                ok = false;
            }
        }

        let key_file = match self.string(&t, "key_file") {
            Some((k, _)) => Some(resolve_path(&k, &self.base_dir)),
            None => {
                if t.get("key_file").is_some() {
                    ok = false;
                }
                None
            }
        };

        let store = self.store(&t, location.as_ref());
        let zstd_level = self.int(&t, "zstd_level", 1, 22).map(|x| x.0 as i32);
        let pack_size_mb = self.int(&t, "pack_size_mb", 1, 512).map(|x| x.0 as u32);
        if (zstd_level.is_none() && t.get("zstd_level").is_some())
            || (pack_size_mb.is_none() && t.get("pack_size_mb").is_some())
        {
            ok = false;
        }
        let mut checkpoint_interval = None;
        if let Some((s, span)) = self.string(&t, "checkpoint_interval") {
            match parse_duration(&s) {
                Ok(d) => checkpoint_interval = Some(d),
                Err(e) => {
                    self.err(
                        span,
                        format!("bad duration for `checkpoint_interval`: {e}"),
                        Some("write a number and a unit: 30s, 2m, 0s (after every step)".into()),
                    );
                    ok = false;
                }
            }
        }
        let limits = self.limits(&t);
        let config = self.config(&t);
        if let (Some(c), Some(_)) = (&config, t.get("recipients")) {
            if c.get("recipients").is_some() {
                let path = format!("{}.config.recipients", t.path);
                let span = self.spans.get(&path).map(|(k, _)| k.clone());
                self.err(
                    span.unwrap_or(t.span.clone()),
                    format!(
                        "`recipients` is given both in {} and in its config",
                        t.display()
                    ),
                    Some(format!("keep the one in {}", t.display())),
                );
                ok = false;
            }
        }

        let (plugin, url, location, inputs, store, limits, config) =
            (plugin?, url?, location?, inputs?, store?, limits?, config?);
        let url = match &location {
            StoreLocation::Local(p) => p.display().to_string(),
            _ => url.0,
        };
        ok.then(|| Sink {
            name: name.to_string(),
            plugin,
            url,
            location,
            recipients,
            key_file,
            inputs: inputs.into_iter().map(|(s, _)| s).collect(),
            collectors: matched.into_iter().collect(),
            store,
            write: WriteOptions {
                zstd_level,
                pack_size_mb,
                checkpoint_interval,
            },
            limits,
            config,
        })
    }

    fn store_location(&mut self, u: &str, span: Span) -> Option<StoreLocation> {
        let help = "write a directory path, file:///path, s3://bucket/prefix, \
                    az://container/prefix or gs://bucket/prefix";
        if u.trim().is_empty() {
            self.err(span, "`url` is empty", Some(help.into()));
            return None;
        }
        let Some((scheme, rest)) = u.split_once("://") else {
            if let Some(p) = u.strip_prefix("file:") {
                return Some(StoreLocation::Local(resolve_path(p, &self.base_dir)));
            }
            return Some(StoreLocation::Local(resolve_path(u, &self.base_dir)));
        };
        let (bucket, prefix) = match rest.split_once('/') {
            Some((b, p)) => (b.to_string(), p.trim_matches('/').to_string()),
            None => (rest.to_string(), String::new()),
        };
        match scheme.to_ascii_lowercase().as_str() {
            "file" => {
                if !rest.starts_with('/') {
                    self.err(
                        span,
                        format!("`{u}` is not a local path URL"),
                        Some("a file URL has three slashes: file:///var/backups/cairn".into()),
                    );
                    return None;
                }
                Some(StoreLocation::Local(PathBuf::from(rest)))
            }
            s @ ("s3" | "az" | "azure" | "gs" | "gcs") => {
                let what = if s.starts_with('a') {
                    "container"
                } else {
                    "bucket"
                };
                if bucket.is_empty() {
                    self.err(
                        span,
                        format!("`{u}` names no {what}"),
                        Some(format!("write {s}://{what}/prefix")),
                    );
                    return None;
                }
                let valid = bucket.len() >= 3
                    && bucket.len() <= 63
                    && bucket.chars().all(|c| {
                        c.is_ascii_lowercase()
                            || c.is_ascii_digit()
                            || c == '-'
                            || c == '.'
                            || (c == '_' && what == "bucket")
                    });
                if !valid {
                    self.err(
                        span,
                        format!("`{bucket}` is not a valid {what} name"),
                        Some(format!(
                            "{what} names have 3 to 63 lower-case letters, digits, `-` and `.`"
                        )),
                    );
                    return None;
                }
                Some(match s {
                    "s3" => StoreLocation::S3 { bucket, prefix },
                    "gs" | "gcs" => StoreLocation::Gcs { bucket, prefix },
                    _ => StoreLocation::Azure {
                        container: bucket,
                        prefix,
                    },
                })
            }
            other => {
                self.err(
                    span,
                    format!("unsupported URL scheme `{other}://` in `url`"),
                    Some(help.into()),
                );
                None
            }
        }
    }

    fn store(
        &mut self,
        t: &Tbl<'_, '_>,
        location: Option<&StoreLocation>,
    ) -> Option<BTreeMap<String, StoreOption>> {
        let Some(s) = self.subtable(t, "store") else {
            return if t.get("store").is_some() {
                None
            } else {
                Some(BTreeMap::new())
            };
        };
        let known: &[&str] = match location {
            Some(StoreLocation::S3 { .. }) => S3_KEYS,
            Some(StoreLocation::Azure { .. }) => AZURE_KEYS,
            Some(StoreLocation::Gcs { .. }) => GCS_KEYS,
            Some(StoreLocation::Local(_)) => &[],
            None => &[],
        };
        let mut out = BTreeMap::new();
        let mut ok = true;
        for (k, v) in s.map.iter() {
            let key = k.get_ref().to_string();
            if key == "zstd_level" || key == "pack_size_mb" || key == "checkpoint_interval" {
                self.err(
                    k.span(),
                    format!("`{key}` is a repository option, not a store option"),
                    Some(format!("move it up into [{}], before [{}]", t.path, s.path)),
                );
                ok = false;
                continue;
            }
            if crate::diagnostic::looks_secret_key(&key) {
                match self.secret(&s, &key) {
                    Some(r) => {
                        out.insert(key, StoreOption::Secret(r));
                    }
                    None => ok = false,
                }
                continue;
            }
            let value = match v.get_ref() {
                DeValue::String(_) => self.string(&s, &key).map(|x| x.0),
                DeValue::Boolean(b) => Some(b.to_string()),
                DeValue::Integer(i) => Some(i.to_string()),
                DeValue::Float(f) => Some(f.as_str().to_string()),
                _ => {
                    self.type_err(&s, &key, v, "a string, boolean or number", None);
                    None
                }
            };
            match value {
                Some(val) => {
                    out.insert(key.clone(), StoreOption::Value(val));
                }
                None => ok = false,
            }
            if matches!(location, Some(StoreLocation::Local(_))) {
                self.warn(
                    k.span(),
                    format!("`{key}`: a local directory takes no store options"),
                    Some("store options apply to s3://, az:// and gs:// URLs".into()),
                );
            } else if !known.is_empty() && !is_known_store_key(&key, known) {
                let help = match did_you_mean(&key, known.iter().copied()) {
                    Some(sug) => format!("did you mean `{sug}`?"),
                    None => "see the object_store configuration keys for this kind of store".into(),
                };
                self.warn(
                    k.span(),
                    format!("unknown store option `{key}` for this URL"),
                    Some(help),
                );
            }
        }
        ok.then_some(out)
    }

    fn retention(&mut self, t: Tbl<'_, '_>) -> Option<Option<Retention>> {
        self.check_keys(&t, RETENTION_KEYS, false);
        let mut ok = true;
        let mut r = Retention::default();
        for (key, slot) in [
            ("keep_last", &mut r.keep_last),
            ("keep_hourly", &mut r.keep_hourly),
            ("keep_daily", &mut r.keep_daily),
            ("keep_weekly", &mut r.keep_weekly),
            ("keep_monthly", &mut r.keep_monthly),
            ("keep_yearly", &mut r.keep_yearly),
        ] {
            match self.int(&t, key, 0, u32::MAX as i64) {
                Some((n, _)) => *slot = Some(n as usize),
                None => {
                    if t.get(key).is_some() {
                        ok = false;
                    }
                }
            }
        }
        if let Some((s, span)) = self.string(&t, "keep_within") {
            match parse_duration(&s) {
                Ok(d) => r.keep_within = Some(d),
                Err(e) => {
                    self.err(
                        span,
                        format!("bad duration for `keep_within`: {e}"),
                        Some(
                            "write a number and a unit: 90m, 36h, 30d, 2w, 1y (or combined: 1d12h)"
                                .into(),
                        ),
                    );
                    ok = false;
                }
            }
        } else if t.get("keep_within").is_some() {
            ok = false;
        }
        if t.get("keep_tags").is_some() {
            match self.strings(&t, "keep_tags") {
                Some(v) => r.keep_tags = v.into_iter().map(|x| x.0).collect(),
                None => ok = false,
            }
        }
        if ok && r == Retention::default() {
            self.warn(
                t.span.clone(),
                "[retention] keeps nothing: it has no keep_* rule".to_string(),
                Some("add rules such as keep_daily = 7, or remove the table".into()),
            );
        }
        ok.then_some(Some(r))
    }

    fn schedule(&mut self, t: Tbl<'_, '_>) -> Option<Option<Schedule>> {
        self.check_keys(&t, SCHEDULE_KEYS, false);
        let mut ok = true;
        let mut s = Schedule::default();
        for (key, slot) in [
            ("backup", &mut s.backup),
            ("check", &mut s.check),
            ("prune", &mut s.prune),
        ] {
            if let Some((expr, span)) = self.string(&t, key) {
                match Cron::parse(&expr) {
                    Ok(c) => *slot = Some(c),
                    Err(e) => {
                        self.err(
                            span,
                            format!("bad cron expression for `{key}`: {e}"),
                            Some(
                                "write 5 fields: minute hour day-of-month month day-of-week, \
                                 e.g. \"0 2 * * *\" (02:00 daily), or @daily"
                                    .into(),
                            ),
                        );
                        ok = false;
                    }
                }
            } else if t.get(key).is_some() {
                ok = false;
            }
        }
        ok.then_some(Some(s))
    }
}

const CLIENT_KEYS: &[&str] = &[
    "allow_http",
    "allow_invalid_certificates",
    "connect_timeout",
    "default_content_type",
    "http1_only",
    "http2_only",
    "pool_idle_timeout",
    "pool_max_idle_per_host",
    "proxy_url",
    "proxy_ca_certificate",
    "proxy_excludes",
    "randomize_addresses",
    "timeout",
    "user_agent",
];
const S3_KEYS: &[&str] = &[
    "access_key_id",
    "secret_access_key",
    "default_region",
    "region",
    "endpoint",
    "endpoint_url",
    "session_token",
    "token",
    "virtual_hosted_style_request",
    "metadata_endpoint",
    "unsigned_payload",
    "checksum_algorithm",
    "container_credentials_relative_uri",
    "container_credentials_full_uri",
    "container_authorization_token_file",
    "web_identity_token_file",
    "role_arn",
    "role_session_name",
    "endpoint_url_sts",
    "skip_signature",
    "copy_if_not_exists",
    "conditional_put",
    "disable_tagging",
    "disable_bulk_delete",
    "request_payer",
    "server_side_encryption",
    "sse_kms_key_id",
    "sse_bucket_key_enabled",
];
const AZURE_KEYS: &[&str] = &[
    "account_name",
    "account_key",
    "access_key",
    "master_key",
    "client_id",
    "client_secret",
    "tenant_id",
    "authority_id",
    "authority_host",
    "sas_key",
    "sas_token",
    "token",
    "bearer_token",
    "use_emulator",
    "endpoint",
    "msi_endpoint",
    "object_id",
    "msi_resource_id",
    "federated_token_file",
    "use_fabric_endpoint",
    "use_azure_cli",
    "skip_signature",
    "disable_tagging",
];
const GCS_KEYS: &[&str] = &[
    "service_account",
    "service_account_path",
    "service_account_key",
    "application_credentials",
    "base_url",
    "skip_signature",
];

fn is_known_store_key(key: &str, known: &[&str]) -> bool {
    let k = key.to_ascii_lowercase();
    let bare = ["aws_", "azure_storage_", "azure_", "google_"]
        .iter()
        .find_map(|p| k.strip_prefix(p))
        .unwrap_or(&k);
    known.contains(&bare) || CLIENT_KEYS.contains(&bare)
}
