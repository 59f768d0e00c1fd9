//! `cairn validate` as a process: every manifest problem with file, line and fix, exit 2.

use std::process::Command;

fn validate(dir: &std::path::Path, text: &str) -> (Option<i32>, String) {
    let path = dir.join("cairn.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["validate", "-m"])
        .arg(&path)
        .env("CAIRN_TEST_SECRET", "not-a-real-secret")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

const GOOD: &str = r#"version = 1

[connections.contoso]
tenant = "contoso.onmicrosoft.com"
client_id = "11111111-2222-3333-4444-555555555555"
client_secret = "env:CAIRN_TEST_SECRET"

[collectors.entra]
plugin = "entra"
connection = "contoso"

[sinks.local]
plugin = "age-sink"
url = "repository"
recipients = ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]
key_file = "writer-key.json"
inputs = ["entra"]
"#;

#[test]
fn a_good_manifest_validates() {
    let dir = tempfile::tempdir().unwrap();
    let (code, text) = validate(dir.path(), GOOD);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("ok"), "{text}");
}

#[test]
fn each_problem_is_reported_with_line_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let bad = GOOD
        .replace("connection = \"contoso\"", "conection = \"contoso\"")
        .replace("inputs = [\"entra\"]", "inputs = [\"entra\", \"mail*\"]");
    let (code, text) = validate(dir.path(), &bad);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("cairn.toml:10:1"), "{text}");
    assert!(text.contains("did you mean `connection`?"), "{text}");

    let (code, text) = validate(
        dir.path(),
        &GOOD.replace("plugin = \"entra\"", "plugin = \"entr\""),
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("entra"),
        "suggests the bundled plugin: {text}"
    );

    let (code, text) = validate(
        dir.path(),
        &GOOD.replace("env:CAIRN_TEST_SECRET", "env:CAIRN_TEST_MISSING_SECRET"),
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("CAIRN_TEST_MISSING_SECRET"), "{text}");

    let (code, text) = validate(
        dir.path(),
        &GOOD.replace("env:CAIRN_TEST_SECRET", "hunter2-inline"),
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(
        !text.contains("hunter2-inline"),
        "a secret is never echoed: {text}"
    );
}
