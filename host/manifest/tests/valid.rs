//! Valid manifests: the full example, the examples directory, path resolution, the hash,
//! the starter manifest.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cairn_manifest::*;
use common::*;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/manifests")
}

#[test]
fn the_full_example_parses_into_the_expected_model() {
    let path = examples_dir().join("full.toml");
    let m = load(&path).unwrap_or_else(|d| panic!("{d}"));
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    assert_eq!(m.version, 1);
    assert!(!m.allow_inline_secrets);

    let c = &m.connections["contoso"];
    assert_eq!(c.tenant, "contoso.onmicrosoft.com");
    assert_eq!(c.client_id, "11111111-2222-3333-4444-555555555555");
    assert_eq!(
        c.credential,
        Credential::Secret(SecretRef::Env("CAIRN_CLIENT_SECRET".into()))
    );
    assert_eq!(c.cloud, Cloud::Global);
    assert_eq!(c.authority_url, "https://login.microsoftonline.com/");
    assert_eq!(c.graph_url, "https://graph.microsoft.com/");
    let f = &m.connections["fabrikam"];
    assert_eq!(f.cloud, Cloud::UsGov);
    assert_eq!(f.graph_url, "https://graph.microsoft.us/");
    assert!(matches!(f.credential, Credential::Certificate { .. }));

    let e = &m.collectors["entra"];
    assert_eq!(e.plugin, PluginRef::Bundled("entra".into()));
    assert_eq!(e.connection, "contoso");
    assert_eq!(e.concurrency, Some(4));
    assert_eq!(
        e.limits,
        Limits {
            memory_mb: Some(256),
            timeout_secs: Some(60),
            fuel: None
        }
    );
    assert_eq!(
        e.config,
        serde_json::json!({ "types": ["users", "groups"] })
    );
    assert_eq!(m.collectors["m365-mail"].config, serde_json::json!({}));

    let l = &m.sinks["local"];
    assert_eq!(l.plugin, PluginRef::Bundled("age-sink".into()));
    assert_eq!(l.url, "/var/backups/cairn");
    assert_eq!(
        l.location,
        StoreLocation::Local("/var/backups/cairn".into())
    );
    assert_eq!(l.recipients.len(), 2);
    assert_eq!(
        l.key_file.as_deref(),
        Some(Path::new("/etc/cairn/local.writer-key.json"))
    );
    assert_eq!(l.collectors, ["entra", "fabrikam-entra", "m365-mail"]);
    assert_eq!(
        l.write,
        WriteOptions {
            zstd_level: Some(3),
            pack_size_mb: Some(4),
            checkpoint_interval: Some(std::time::Duration::from_secs(60)),
        }
    );
    let o = &m.sinks["offsite"];
    assert_eq!(o.url, "s3://contoso-backups/cairn");
    assert_eq!(o.collectors, ["entra", "m365-mail"]);
    assert_eq!(o.store["region"], StoreOption::Value("eu-west-1".into()));
    assert_eq!(
        o.store["secret_access_key"],
        StoreOption::Secret(SecretRef::Env("AWS_SECRET_ACCESS_KEY".into()))
    );
    assert_eq!(
        m.sinks_of("fabrikam-entra")
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["local"]
    );

    let r = m.retention.as_ref().unwrap();
    assert_eq!(
        (
            r.keep_last,
            r.keep_daily,
            r.keep_weekly,
            r.keep_monthly,
            r.keep_yearly
        ),
        (Some(3), Some(7), Some(4), Some(12), Some(2))
    );
    assert_eq!(
        r.keep_within,
        Some(std::time::Duration::from_secs(30 * 86400))
    );
    let s = m.schedule.as_ref().unwrap();
    assert_eq!(s.backup.as_ref().unwrap().as_str(), "0 2 * * *");

    // Key paths map back to lines.
    assert_eq!(m.location("collectors.entra.concurrency").unwrap().line, 20);
    assert_eq!(
        m.location("collectors.entra.config.types[1]").unwrap(),
        Location {
            line: 23,
            column: 19
        }
    );
    assert_eq!(m.location("sinks.offsite.store.region").unwrap().line, 54);
    let d = m.diagnostic(
        "collectors.m365-mail.plugin",
        Severity::Error,
        "plugin failed to load",
        None,
    );
    assert_eq!(
        d.headline(),
        format!("{}:26:10: error: plugin failed to load", path.display())
    );
}

#[test]
fn every_example_manifest_parses() {
    let mut env = BTreeMap::new();
    env.insert(
        "CAIRN_SIM_CLIENT_ID".to_string(),
        "11111111-2222-3333-4444-555555555555".to_string(),
    );
    let mut n = 0;
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let m =
                load_with_env(&path, &env).unwrap_or_else(|d| panic!("{}:\n{d}", path.display()));
            assert!(
                m.warnings.is_empty(),
                "{}: {:?}",
                path.display(),
                m.warnings
            );
            n += 1;
        }
    }
    assert!(n >= 3, "only {n} examples found");
}

#[test]
fn the_simulator_example_interpolates() {
    let mut env = BTreeMap::new();
    env.insert(
        "CAIRN_SIM_CLIENT_ID".to_string(),
        "11111111-2222-3333-4444-555555555555".to_string(),
    );
    env.insert(
        "CAIRN_SIM_URL".to_string(),
        "http://127.0.0.1:40123".to_string(),
    );
    let m = load_with_env(&examples_dir().join("simulator.toml"), &env).unwrap();
    let c = &m.connections["sim"];
    assert_eq!(c.graph_url, "http://127.0.0.1:40123/");
    assert_eq!(c.tenant, "contoso.onmicrosoft.com");
    assert!(c.endpoints_overridden);
    // Without the client id the error names the variable and its line.
    let err = load_with_env(
        &examples_dir().join("simulator.toml"),
        &BTreeMap::<String, String>::new(),
    )
    .unwrap_err();
    let d = err.errors().next().unwrap();
    assert_eq!(d.line, 9);
    assert!(d.message.contains("CAIRN_SIM_CLIENT_ID is not set"), "{d}");
}

#[test]
fn relative_paths_resolve_against_the_manifest_directory() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("conf");
    std::fs::create_dir(&sub).unwrap();
    let text = base_with(
        "url = \"/var/backups/cairn\"",
        "url = \"../repo\"\nkey_file = \"keys/writer.json\"",
    )
    .replace("env:CAIRN_CLIENT_SECRET", "file:secrets/client")
    .replace("plugin = \"entra\"", "plugin = \"plugins/entra.wasm\"");
    let path = sub.join("cairn.toml");
    std::fs::write(&path, text).unwrap();
    let m = load(&path).unwrap_or_else(|d| panic!("{d}"));
    let base = std::path::absolute(&sub).unwrap();
    assert_eq!(m.base_dir, base);
    let sink = &m.sinks["local"];
    assert_eq!(sink.location, StoreLocation::Local(base.join("../repo")));
    assert_eq!(sink.url, base.join("../repo").display().to_string());
    assert_eq!(
        sink.key_file.as_deref(),
        Some(base.join("keys/writer.json").as_path())
    );
    assert_eq!(
        m.collectors["entra"].plugin,
        PluginRef::File(base.join("plugins/entra.wasm"))
    );
    assert_eq!(
        m.connections["contoso"].credential,
        Credential::Secret(SecretRef::File(base.join("secrets/client")))
    );
    // The file name in diagnostics is the path given.
    assert_eq!(m.file_name(), path.display().to_string());

    // A relative manifest path works too (its directory is the current one).
    let err = load(Path::new("no-such-dir/cairn.toml")).unwrap_err();
    assert_eq!(err.0[0].line, 0);
    assert!(err.0[0].message.contains("cannot read the manifest"));
    assert!(err.0[0].help.as_deref().unwrap().contains("cairn init"));
}

#[test]
fn the_hash_is_stable_and_excludes_secret_values() {
    let m = ok(BASE);
    let h = m.hash();
    assert_eq!(h.len(), 64);
    assert!(h.chars().all(|c| c.is_ascii_hexdigit()));

    // Comments, blank lines, key order and table order do not matter.
    let reordered = r#"# a comment
[sinks.local]
inputs = ["entra"]
recipients = ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]
url = "/var/backups/cairn"
plugin = "age-sink"

[collectors.entra]
connection = "contoso"
plugin = "entra"

[connections.contoso]
client_secret = "env:CAIRN_CLIENT_SECRET"
client_id = "11111111-2222-3333-4444-555555555555"
tenant = "contoso.onmicrosoft.com"
cloud = "global"   # the default, written out
version = 1
"#;
    // (`version` under [connections.contoso] would be an unknown key; put it first instead.)
    let reordered = format!("version = 1\n{}", reordered.replace("version = 1\n", ""));
    assert_eq!(ok(&reordered).hash(), h);

    // Any effective change changes it.
    let changed = base_with("inputs = [\"entra\"]", "inputs = [\"*\"]");
    assert_ne!(ok(&changed).hash(), h);
    let changed = base_with(
        "url = \"/var/backups/cairn\"",
        "url = \"/var/backups/other\"",
    );
    assert_ne!(ok(&changed).hash(), h);

    // Inline secret values are not part of it; their presence is.
    let with = |s: &str| {
        format!(
            "allow_inline_secrets = true\n{}",
            base_with(
                "client_secret = \"env:CAIRN_CLIENT_SECRET\"",
                &format!("client_secret = \"{s}\"")
            )
        )
    };
    let a = ok(&with("first-secret"));
    let b = ok(&with("second-secret"));
    assert_eq!(a.hash(), b.hash());
    assert_ne!(a.hash(), h);
    let canon = a.canonical_json().to_string();
    assert!(!canon.contains("first-secret"), "{canon}");
}

#[test]
fn the_starter_manifest_parses_cleanly() {
    let opts = StarterOptions {
        recipients: vec![R1.to_string()],
        identity_file: Some("/root/cairn-identity.txt".into()),
        ..Default::default()
    };
    let text = starter_manifest(&opts);
    assert!(text.contains(R1));
    assert!(text.contains("/root/cairn-identity.txt"));
    let m = parse_with_env("cairn.toml", &text, Path::new("/srv/cairn"), &env())
        .unwrap_or_else(|d| panic!("{d}\n{text}"));
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    assert_eq!(m.sinks["local"].recipients, [R1]);
    assert_eq!(
        m.sinks["local"].location,
        StoreLocation::Local("/srv/cairn/repository".into())
    );
    assert_eq!(m.collectors["entra"].connection, "main");
    assert!(m.retention.is_some() && m.schedule.is_some());
    // No secret is written into it.
    assert!(text.contains("client_secret = \"env:CAIRN_CLIENT_SECRET\""));

    // With everything given, e.g. for the simulator.
    let opts = StarterOptions {
        recipients: vec![
            R1.to_string(),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFoo ops@example".into(),
        ],
        tenant: Some("9188040d-6c67-4c5b-b112-36a304b66dad".into()),
        client_id: Some("11111111-2222-3333-4444-555555555555".into()),
        client_secret_env: Some("SIM_SECRET".into()),
        endpoint: Some("http://127.0.0.1:8123".into()),
        repository: Some("s3://bucket-1/cairn".into()),
        key_file: Some("/var/lib/cairn/writer.json".into()),
        identity_file: None,
    };
    let text = starter_manifest(&opts);
    let m = parse_with_env("cairn.toml", &text, Path::new("/srv"), &env())
        .unwrap_or_else(|d| panic!("{d}\n{text}"));
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    let c = &m.connections["main"];
    assert_eq!(c.graph_url, "http://127.0.0.1:8123/");
    assert_eq!(
        c.credential,
        Credential::Secret(SecretRef::Env("SIM_SECRET".into()))
    );
    assert_eq!(m.sinks["local"].recipients.len(), 2);
    assert_eq!(m.sinks["local"].url, "s3://bucket-1/cairn");
}

#[test]
fn the_starter_without_a_recipient_asks_for_one() {
    let text = starter_manifest(&StarterOptions::default());
    let err = parse_with_env("cairn.toml", &text, Path::new("/srv"), &env()).unwrap_err();
    let errs: Vec<_> = err.errors().collect();
    assert_eq!(errs.len(), 1, "{err}");
    let line = text
        .lines()
        .position(|l| l.contains("age1-REPLACE-ME"))
        .unwrap()
        + 1;
    assert_eq!(errs[0].line, line);
    assert!(
        errs[0].message.contains("malformed age recipient"),
        "{}",
        errs[0]
    );
}
