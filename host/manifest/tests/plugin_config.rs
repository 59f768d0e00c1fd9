//! Plugin configs against the plugins' JSON Schemas: errors on the config key's line,
//! unknown plugins, `x-cairn-secret` fields and their resolution.

use crate::common;

use std::collections::BTreeMap;

use cairn_manifest::*;
use common::*;
use serde_json::{json, Value};

const BUNDLED: &[&str] = &["entra", "m365-mail", "age-sink"];

fn entra_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "types": { "type": "array", "items": { "enum": ["users", "groups", "applications"] } },
            "page_size": { "type": "integer", "minimum": 1, "maximum": 999 },
            "tenant_filter": { "type": "string", "description": "only objects matching this filter" },
            "auth": {
                "type": "object",
                "properties": { "token": { "type": "string", "x-cairn-secret": true } },
                "additionalProperties": false
            },
            "password": { "$ref": "#/$defs/secret" }
        },
        "required": ["types"],
        "additionalProperties": false,
        "$defs": { "secret": { "type": "string", "x-cairn-secret": true } }
    })
}

fn age_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "recipients": { "type": "array", "minItems": 1, "items": { "type": "string" } },
            "metadata_recipients": { "type": "array", "items": { "type": "string" } }
        },
        "required": ["recipients"],
        "additionalProperties": false
    })
}

fn schema_of(p: &PluginRef, role: PluginRole) -> Result<Value, String> {
    match (p, role) {
        (PluginRef::Bundled(n), PluginRole::Collector) if n == "entra" || n == "m365-mail" => {
            Ok(entra_schema())
        }
        (PluginRef::Bundled(n), PluginRole::Sink) if n == "age-sink" => Ok(age_schema()),
        (PluginRef::Bundled(n), PluginRole::Collector) if n == "age-sink" => {
            Err("`age-sink` is a sink plugin, not a collector".into())
        }
        (PluginRef::Bundled(n), _) => Err(format!("no bundled plugin `{n}`")),
        (PluginRef::File(f), _) => Err(format!(
            "cannot read {}: No such file or directory",
            f.display()
        )),
    }
}

fn with_config(config: &str) -> String {
    base_with(
        "connection = \"contoso\"",
        &format!("connection = \"contoso\"\n[collectors.entra.config]\n{config}"),
    )
}

fn check(text: &str) -> Vec<Diagnostic> {
    check_plugin_configs_with(&ok(text), BUNDLED, schema_of, &env())
}

fn one(ds: &[Diagnostic], line: usize, msg: &str) -> Diagnostic {
    let hits: Vec<_> = ds
        .iter()
        .filter(|d| d.line == line && d.message == msg)
        .collect();
    assert_eq!(hits.len(), 1, "wanted {msg:?} at line {line} in:\n{ds:#?}");
    hits[0].clone()
}

#[test]
fn a_valid_config_has_no_diagnostics() {
    let ds = check(&with_config("types = [\"users\", \"groups\"]\npage_size = 100\nauth = { token = \"env:CAIRN_CLIENT_SECRET\" }"));
    assert!(ds.is_empty(), "{ds:#?}");
}

#[test]
fn enum_errors_point_at_the_element() {
    let ds = check(&with_config("types = [\"users\", \"groups\", \"userz\"]"));
    assert_eq!(ds.len(), 1, "{ds:#?}");
    let d = one(&ds, 12, "[collectors.entra.config] types[2]: \"userz\" is not one of \"users\", \"groups\", \"applications\"");
    assert_eq!(d.column, 29);
    assert_eq!(d.help.as_deref(), Some("did you mean \"users\"?"));
    assert_eq!(
        d.source_line.as_deref(),
        Some("types = [\"users\", \"groups\", \"userz\"]")
    );
}

#[test]
fn unknown_config_keys_get_a_did_you_mean() {
    let ds = check(&with_config("types = [\"users\"]\npage_sise = 5"));
    let d = one(
        &ds,
        13,
        "unknown key `page_sise` in [collectors.entra.config]",
    );
    assert_eq!(d.column, 1);
    assert_eq!(d.help.as_deref(), Some("did you mean `page_size`?"));
    let ds = check(&with_config(
        "types = [\"users\"]\nauth = { tokn = \"env:X\" }",
    ));
    let d = one(
        &ds,
        13,
        "unknown key `tokn` in [collectors.entra.config] auth",
    );
    assert_eq!(d.column, 10);
    assert_eq!(d.help.as_deref(), Some("did you mean `token`?"));
}

#[test]
fn missing_required_config_keys() {
    // With a config table: at its header, with the property's description.
    let ds = check(&with_config("page_size = 5"));
    let d = one(&ds, 11, "[collectors.entra.config]: missing `types`");
    assert!(
        d.help
            .as_deref()
            .unwrap()
            .contains("the plugin `entra` requires `types`"),
        "{d}"
    );
    // Without one: at the collector's table.
    let ds = check(BASE);
    let d = one(&ds, 8, "[collectors.entra.config]: missing `types`");
    assert_eq!(d.column, 1);
}

#[test]
fn ranges_and_types_in_config() {
    let ds = check(&with_config("types = [\"users\"]\npage_size = 5000"));
    let d = ds
        .iter()
        .find(|d| d.line == 13)
        .unwrap_or_else(|| panic!("{ds:#?}"));
    assert!(
        d.message
            .starts_with("[collectors.entra.config] page_size: "),
        "{d}"
    );
    assert!(d.message.contains("999"), "{d}");
    let ds = check(&with_config("types = [\"users\"]\npage_size = \"10\""));
    one(
        &ds,
        13,
        "[collectors.entra.config] page_size: expected an integer, found a string",
    );
    let ds = check(&with_config("types = \"users\""));
    one(
        &ds,
        12,
        "[collectors.entra.config] types: expected an array, found a string",
    );
}

#[test]
fn unknown_plugins_get_a_did_you_mean_over_bundled_names() {
    let text = base_with("plugin = \"entra\"", "plugin = \"entr\"");
    let ds = check(&text);
    let d = one(&ds, 9, "unknown plugin `entr`");
    assert_eq!(d.column, 10);
    assert_eq!(d.help.as_deref(), Some("did you mean `entra`?"));
    let text = base_with("plugin = \"entra\"", "plugin = \"zzz\"");
    let d = one(&check(&text), 9, "unknown plugin `zzz`");
    assert!(d
        .help
        .unwrap()
        .contains("bundled plugins are `entra`, `m365-mail`, `age-sink`"));
    // A known plugin in the wrong role: the caller's reason.
    let text = base_with("plugin = \"entra\"", "plugin = \"age-sink\"");
    one(
        &check(&text),
        9,
        "plugin `age-sink`: `age-sink` is a sink plugin, not a collector",
    );
    // A plugin file that cannot be read.
    let text = base_with("plugin = \"entra\"", "plugin = \"custom.wasm\"");
    let ds = check(&text);
    assert_eq!(ds[0].line, 9);
    assert!(
        ds[0].message.contains("/etc/cairn/custom.wasm"),
        "{}",
        ds[0]
    );
}

#[test]
fn secret_fields_must_be_references() {
    let secret = "tok-3x4mple-value";
    let text = with_config(&format!("types = [\"users\"]\nauth = {{ token = \"{secret}\" }}\npassword = \"{secret}\"\ntenant_filter = 7"));
    let ds = check(&text);
    let rendered: String = ds.iter().map(|d| format!("{d}\n")).collect();
    assert!(!rendered.contains(secret), "{rendered}");
    let d = one(
        &ds,
        13,
        "[collectors.entra.config] auth.token is a secret written inline",
    );
    assert!(d
        .help
        .as_deref()
        .unwrap()
        .contains("auth.token = \"env:NAME\""));
    assert_eq!(d.source_line.as_deref(), Some("auth = { token = *** }"));
    one(
        &ds,
        14,
        "[collectors.entra.config] password is a secret written inline",
    );
    // Other errors are still reported.
    one(
        &ds,
        15,
        "[collectors.entra.config] tenant_filter: expected a string, found an integer",
    );

    // Allowed inline: fine.
    let text = format!("allow_inline_secrets = true\n{text}").replace("tenant_filter = 7", "");
    let ds = check(&text);
    assert!(ds.is_empty(), "{ds:#?}");
}

#[test]
fn secret_references_in_config_are_checked() {
    let text = with_config(
        "types = [\"users\"]\npassword = \"env:CAIRN_UNSET\"\nauth = { token = \"env:1bad\" }",
    );
    let ds = check(&text);
    one(
        &ds,
        13,
        "[collectors.entra.config] password: environment variable CAIRN_UNSET is not set",
    );
    one(
        &ds,
        14,
        "[collectors.entra.config] auth.token: `env:1bad` does not name an environment variable",
    );
}

#[test]
fn resolve_plugin_config_replaces_secret_references_only() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "file-token\n").unwrap();
    let text = with_config("types = [\"users\"]\npassword = \"env:CAIRN_CLIENT_SECRET\"\nauth = { token = \"file:token\" }\ntenant_filter = \"env:NOT_A_SECRET_FIELD\"");
    let path = dir.path().join("cairn.toml");
    std::fs::write(&path, text).unwrap();
    let m = load_with_env(&path, &env()).unwrap();
    let c = &m.collectors["entra"];
    let resolved = resolve_plugin_config_with(&m, c, &entra_schema(), &env()).unwrap();
    assert_eq!(
        resolved,
        json!({
            "types": ["users"],
            "password": "s3cr3t-from-env",
            "auth": { "token": "file-token" },
            "tenant_filter": "env:NOT_A_SECRET_FIELD"
        })
    );
    // The manifest itself still holds the references.
    assert_eq!(c.config["password"], "env:CAIRN_CLIENT_SECRET");
    assert_eq!(
        secret_pointers(&entra_schema(), &c.config),
        ["/auth/token", "/password"]
    );

    // Failures name the field, never a value.
    let empty: BTreeMap<String, String> = BTreeMap::new();
    let e = resolve_plugin_config_with(&m, c, &entra_schema(), &empty).unwrap_err();
    assert_eq!(
        e.to_string(),
        "[collectors.entra.config] password: environment variable CAIRN_CLIENT_SECRET is not set"
    );
}

#[test]
fn resolve_plugin_config_refuses_inline_secrets_unless_allowed() {
    let text = with_config("types = [\"users\"]\npassword = \"inline-value\"");
    let m = ok(&text);
    let e = resolve_plugin_config_with(&m, &m.collectors["entra"], &entra_schema(), &env())
        .unwrap_err();
    assert!(matches!(e, ConfigError::InlineSecret { .. }));
    assert!(!e.to_string().contains("inline-value"));
    let m = ok(&format!("allow_inline_secrets = true\n{text}"));
    let v =
        resolve_plugin_config_with(&m, &m.collectors["entra"], &entra_schema(), &env()).unwrap();
    assert_eq!(v["password"], "inline-value");
}

#[test]
fn sink_configs_get_their_recipients_and_errors_point_at_them() {
    let m = ok(BASE);
    let sink = &m.sinks["local"];
    assert_eq!(
        PluginEntry::from(sink).plugin_config(),
        json!({ "recipients": [R1] })
    );
    assert!(check_plugin_configs_with(
        &m,
        BUNDLED,
        |p, r| match r {
            PluginRole::Sink => schema_of(p, r),
            PluginRole::Collector => Ok(json!({})),
        },
        &env()
    )
    .is_empty());

    // A schema that rejects ssh recipients: the error is on the recipients line.
    let strict = json!({
        "type": "object",
        "properties": { "recipients": { "type": "array", "items": { "type": "string", "pattern": "^age1" } } }
    });
    let text = base_with(
        &format!("recipients = [\"{R1}\"]"),
        &format!("recipients = [\"{R1}\", \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFoo x\"]"),
    );
    let ds = check_plugin_configs_with(
        &ok(&text),
        BUNDLED,
        |_, r| match r {
            PluginRole::Sink => Ok(strict.clone()),
            PluginRole::Collector => Ok(json!({})),
        },
        &env(),
    );
    assert_eq!(ds.len(), 1, "{ds:#?}");
    assert_eq!(ds[0].line, 15);
    assert_eq!(ds[0].column, 81);
    assert!(
        ds[0]
            .message
            .starts_with("[sinks.local.config] recipients[1]: "),
        "{}",
        ds[0]
    );

    // Further sink settings in [sinks.<name>.config] are checked too.
    let text = format!("{BASE}[sinks.local.config]\nmetadata_recipient = []\n");
    let ds = check(&text);
    let d = one(
        &ds,
        18,
        "unknown key `metadata_recipient` in [sinks.local.config]",
    );
    assert_eq!(
        d.help.as_deref(),
        Some("did you mean `metadata_recipients`?")
    );
}

#[test]
fn broken_schemas_are_the_plugins_fault_and_external_refs_are_not_loaded() {
    let m = ok(BASE);
    let ds = check_plugin_configs_with(
        &m,
        BUNDLED,
        |_, r| match r {
            PluginRole::Collector => Ok(
                json!({ "type": "object", "properties": { "x": { "$ref": "file:///etc/passwd" } } }),
            ),
            PluginRole::Sink => Ok(json!({})),
        },
        &env(),
    );
    assert_eq!(ds.len(), 1, "{ds:#?}");
    assert_eq!(ds[0].line, 9);
    assert!(
        ds[0]
            .message
            .starts_with("plugin `entra` has an invalid config schema"),
        "{}",
        ds[0]
    );
    assert!(ds[0].help.as_deref().unwrap().contains("bug in the plugin"));

    let ds = check_plugin_configs_with(
        &m,
        BUNDLED,
        |_, r| match r {
            PluginRole::Collector => Ok(json!({ "type": 17 })),
            PluginRole::Sink => Ok(json!({})),
        },
        &env(),
    );
    assert_eq!(ds.len(), 1, "{ds:#?}");
    assert!(ds[0].message.contains("invalid config schema"));
}

#[test]
fn secret_lists_hold_one_reference_per_element() {
    // As the age sink's `identities`: an array marked secret.
    let schema = json!({
        "type": "object",
        "properties": {
            "recipients": { "type": "array", "items": { "type": "string" } },
            "identities": { "type": "array", "items": { "type": "string" }, "x-cairn-secret": true }
        },
        "additionalProperties": false
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("id.txt"), "AGE-SECRET-KEY-1FROMFILE\n").unwrap();
    let text = format!(
        "{BASE}[sinks.local.config]\nidentities = [\"file:id.txt\", \"env:CAIRN_CLIENT_SECRET\"]\n"
    );
    let path = dir.path().join("cairn.toml");
    std::fs::write(&path, &text).unwrap();
    let m = load_with_env(&path, &env()).unwrap();
    let sink = &m.sinks["local"];
    assert_eq!(
        secret_pointers(&schema, &PluginEntry::from(sink).plugin_config()),
        ["/identities/0", "/identities/1"]
    );
    let ds = check_plugin_configs_with(
        &m,
        BUNDLED,
        |_, r| match r {
            PluginRole::Sink => Ok(schema.clone()),
            PluginRole::Collector => Ok(json!({})),
        },
        &env(),
    );
    assert!(ds.is_empty(), "{ds:#?}");
    let v = resolve_plugin_config_with(&m, sink, &schema, &env()).unwrap();
    assert_eq!(
        v["identities"],
        json!(["AGE-SECRET-KEY-1FROMFILE", "s3cr3t-from-env"])
    );
    assert_eq!(v["recipients"], json!([R1]));

    // An inline element is refused and masked; a non-array is a type error that shows no value.
    let text = format!("{BASE}[sinks.local.config]\nidentities = [\"AGE-SECRET-KEY-1INLINE\"]\n");
    let ds = check_plugin_configs_with(
        &ok(&text),
        BUNDLED,
        |_, r| match r {
            PluginRole::Sink => Ok(schema.clone()),
            PluginRole::Collector => Ok(json!({})),
        },
        &env(),
    );
    assert_eq!(ds.len(), 1, "{ds:#?}");
    assert_eq!(
        ds[0].message,
        "[sinks.local.config] identities[0] is a secret written inline"
    );
    assert!(!ds[0].to_string().contains("INLINE"), "{}", ds[0]);
    let text = format!("{BASE}[sinks.local.config]\nidentities = \"env:CAIRN_CLIENT_SECRET\"\n");
    let ds = check_plugin_configs_with(
        &ok(&text),
        BUNDLED,
        |_, r| match r {
            PluginRole::Sink => Ok(schema.clone()),
            PluginRole::Collector => Ok(json!({})),
        },
        &env(),
    );
    assert_eq!(ds.len(), 1, "{ds:#?}");
    assert_eq!(
        ds[0].message,
        "[sinks.local.config] identities: expected an array, found a string"
    );
}
