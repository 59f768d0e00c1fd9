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

/// Replaces `from` by `to` in the good manifest, runs `cairn validate`, and checks exit 2, the
/// `cairn.toml:LINE:` location and every expected fragment (the message and its fix).
fn expect_error(from: &str, to: &str, line: u32, fragments: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    assert!(GOOD.contains(from), "{from}");
    let (code, text) = validate(dir.path(), &GOOD.replacen(from, to, 1));
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains(&format!("cairn.toml:{line}:")),
        "line {line}: {text}"
    );
    for f in fragments {
        assert!(text.contains(f), "{f:?} in: {text}");
    }
}

#[test]
fn every_category_has_its_line_and_fix() {
    // A wrong type.
    expect_error(
        "connection = \"contoso\"",
        "connection = \"contoso\"\nconcurrency = \"four\"",
        11,
        &["expected an integer for `concurrency`"],
    );
    // An input that names no collector, and so a collector whose items would go nowhere.
    expect_error(
        "inputs = [\"entra\"]",
        "inputs = [\"mail\"]",
        17,
        &[
            "input `mail` of [sinks.local] names no collector",
            "help: collectors are `entra`",
            "is not an input of any sink",
        ],
    );
    // A reference to a connection that is not defined.
    expect_error(
        "connection = \"contoso\"",
        "connection = \"fabrikam\"",
        10,
        &[
            "names connection `fabrikam`",
            "add a [connections.fabrikam] table",
        ],
    );
    // A malformed recipient.
    expect_error(
        "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
        "age1bogus",
        15,
        &["malformed age recipient", "help: an age X25519 recipient"],
    );
    // A secret file that does not exist.
    expect_error(
        "env:CAIRN_TEST_SECRET",
        "file:/nonexistent/cairn-secret.txt",
        6,
        &["cannot read secret file", "chmod 600"],
    );
    // Plugin config checked against the plugin's own schema.
    expect_error(
        "connection = \"contoso\"",
        "connection = \"contoso\"\nconfig = { types = [\"userz\"] }",
        11,
        &["types[0]", "did you mean \"users\"?"],
    );
}

#[test]
fn commands_that_load_the_manifest_exit_2_before_doing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cairn.toml");
    std::fs::write(
        &path,
        GOOD.replace("connection = \"contoso\"", "conection = \"contoso\""),
    )
    .unwrap();
    for args in [
        &["backup"][..],
        &["snapshots"],
        &["check"],
        &["forget", "--keep-last", "1"],
        &["prune"],
        &["permissions"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(args)
            .arg("-m")
            .arg(&path)
            .env("CAIRN_TEST_SECRET", "not-a-real-secret")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {text}");
        assert!(
            text.contains("cairn.toml:10:1: error: unknown key `conection`"),
            "{args:?}: {text}"
        );
        assert!(
            text.contains("did you mean `connection`?"),
            "{args:?}: {text}"
        );
    }
    assert!(
        !dir.path().join("repository").exists(),
        "nothing was created"
    );
}
