//! `cairn plugins inspect` as a process.

use std::process::Command;

fn cairn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
}

#[test]
fn inspect_prints_name_kinds_schema_and_permissions() {
    let out = cairn()
        .args(["plugins", "inspect", cairn_test_plugins::HELLO_COLLECTOR])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("hello-collector 0.1.0"), "{text}");
    assert!(text.contains("kinds:       collector"), "{text}");
    assert!(text.contains("User.Read.All"), "{text}");
    assert!(text.contains("\"select\""), "schema shown: {text}");
}

#[test]
fn inspect_json_is_machine_readable() {
    let out = cairn()
        .args([
            "plugins",
            "inspect",
            "--json",
            cairn_test_plugins::ECHO_SINK,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name"], "echo-sink");
    assert_eq!(v["kinds"], serde_json::json!(["sink"]));
    assert_eq!(v["contract"], "cairn:plugin@0.1.0");
    assert_eq!(v["configSchema"]["type"], "object");
}

#[test]
fn inspect_rejects_non_components_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let text_file = dir.path().join("readme.wasm");
    std::fs::write(&text_file, "not wasm").unwrap();
    let out = cairn()
        .args(["plugins", "inspect"])
        .arg(&text_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a WebAssembly file"), "{err}");

    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let out = cairn()
        .args(["plugins", "inspect"])
        .arg(&core)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("core WebAssembly module, not a component"),
        "{err}"
    );

    let out = cairn()
        .args(["plugins", "inspect"])
        .arg(dir.path().join("missing.wasm"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn inspect_rejects_a_plugin_built_for_another_contract_version() {
    // Rewrite the contract version inside a real plugin's component type information: the
    // same-length string `0.9.0` stands for a future major the host does not implement.
    let bytes = std::fs::read(cairn_test_plugins::HELLO_COLLECTOR).unwrap();
    let needle = b"cairn:plugin/plugin@0.1.0";
    let replacement = b"cairn:plugin/plugin@0.9.0";
    let mut patched = bytes.clone();
    let mut count = 0;
    let mut i = 0;
    while i + needle.len() <= patched.len() {
        if &patched[i..i + needle.len()] == needle {
            patched[i..i + needle.len()].copy_from_slice(replacement);
            count += 1;
        }
        i += 1;
    }
    assert!(count > 0, "the component names its contract version");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("future.wasm");
    std::fs::write(&file, &patched).unwrap();
    let out = cairn()
        .args(["plugins", "inspect"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cairn:plugin@0.9.0") && err.contains("supports cairn:plugin@0.1.0"),
        "{err}"
    );
}

#[test]
fn list_shows_bundled_plugins_and_those_the_manifest_names() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("cairn.toml");
    std::fs::write(
        &manifest,
        format!(
            r#"version = 1

[connections.contoso]
tenant = "contoso.onmicrosoft.com"
client_id = "11111111-2222-3333-4444-555555555555"
client_secret = "env:CAIRN_TEST_SECRET"

[collectors.entra]
plugin = "entra"
connection = "contoso"

[collectors.hello]
plugin = {hello:?}
connection = "contoso"

[sinks.local]
plugin = "age-sink"
url = "repository"
recipients = ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]
key_file = "writer-key.json"
inputs = ["*"]
"#,
            hello = cairn_test_plugins::HELLO_COLLECTOR
        ),
    )
    .unwrap();
    let out = cairn()
        .args(["plugins", "list", "--json", "-m"])
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let find = |name: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {v}"))
            .clone()
    };
    let entra = find("entra");
    assert_eq!(entra["source"], "bundled");
    assert!(entra["kinds"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("collector")));
    assert_eq!(entra["usedBy"], serde_json::json!(["collectors.entra"]));
    assert!(entra["permissions"].to_string().contains("User.Read.All"));
    let sink = find("age-sink");
    assert_eq!(sink["kinds"], serde_json::json!(["sink"]));
    assert_eq!(sink["usedBy"], serde_json::json!(["sinks.local"]));
    let hello = find("hello-collector");
    assert_eq!(hello["source"], cairn_test_plugins::HELLO_COLLECTOR);
    assert_eq!(hello["usedBy"], serde_json::json!(["collectors.hello"]));
    assert_eq!(hello["version"], "0.1.0");

    // Text: one line per plugin; without a manifest, the bundled ones.
    let out = cairn()
        .current_dir(dir.path().join(".."))
        .args(["plugins", "list", "-m", "/nonexistent/cairn.toml"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("NAME"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("entra ")), "{text}");
    assert!(!text.contains("hello-collector"), "{text}");
}
