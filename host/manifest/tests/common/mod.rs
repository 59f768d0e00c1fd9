#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use cairn_manifest::{parse_with_env, Diagnostic, Manifest, Severity};

pub const R1: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

/// A valid manifest; the line numbers below are relied on by the tests.
pub const BASE: &str = r#"version = 1

[connections.contoso]
tenant = "contoso.onmicrosoft.com"
client_id = "11111111-2222-3333-4444-555555555555"
client_secret = "env:CAIRN_CLIENT_SECRET"

[collectors.entra]
plugin = "entra"
connection = "contoso"

[sinks.local]
plugin = "age-sink"
url = "/var/backups/cairn"
recipients = ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]
inputs = ["entra"]
"#;

/// `BASE` with one exact line replaced (the replacement may span several lines).
pub fn base_with(old_line: &str, new: &str) -> String {
    let count = BASE.lines().filter(|l| *l == old_line).count();
    assert_eq!(count, 1, "line {old_line:?} must occur once in BASE");
    BASE.lines()
        .map(|l| {
            if l == old_line {
                new.to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

pub fn env() -> BTreeMap<String, String> {
    let mut e = BTreeMap::new();
    e.insert("CAIRN_CLIENT_SECRET".into(), "s3cr3t-from-env".into());
    e.insert("BUCKET".into(), "contoso-backups".into());
    e
}

pub fn parse(text: &str) -> Result<Manifest, cairn_manifest::Diagnostics> {
    parse_with_env("cairn.toml", text, Path::new("/etc/cairn"), &env())
}

pub fn ok(text: &str) -> Manifest {
    match parse(text) {
        Ok(m) => m,
        Err(d) => panic!("expected a valid manifest, got:\n{d}"),
    }
}

pub fn errors(text: &str) -> Vec<Diagnostic> {
    match parse(text) {
        Ok(_) => panic!("expected errors, the manifest parsed:\n{text}"),
        Err(d) => d.0,
    }
}

fn dump(ds: &[Diagnostic]) -> String {
    ds.iter().map(|d| format!("{d}\n")).collect()
}

/// The one diagnostic on `line` whose message contains `needle`.
pub fn find<'a>(ds: &'a [Diagnostic], line: usize, needle: &str) -> &'a Diagnostic {
    let hits: Vec<&Diagnostic> = ds
        .iter()
        .filter(|d| d.line == line && d.message.contains(needle))
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "expected one diagnostic at line {line} containing {needle:?}, got:\n{}",
        dump(ds)
    );
    hits[0]
}

/// Asserts the manifest has exactly one error, at `line`, containing `needle`, whose help
/// contains `help`; returns it.
pub fn only_error(text: &str, line: usize, needle: &str, help: &str) -> Diagnostic {
    let ds = errors(text);
    let errs: Vec<&Diagnostic> = ds
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    assert_eq!(
        errs.len(),
        1,
        "expected exactly one error, got:\n{}",
        dump(&ds)
    );
    let d = find(&ds, line, needle).clone();
    assert_eq!(d.file, "cairn.toml");
    let h = d.help.clone().unwrap_or_default();
    assert!(h.contains(help), "help {h:?} should contain {help:?}\n{d}");
    d
}
