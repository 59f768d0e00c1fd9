//! `cairn init` as a process: the starter manifest, the key pair, owner-only files, the
//! repository, and never overwriting.

use std::path::Path;
use std::process::Command;

fn cairn() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
    c.env("CAIRN_CLIENT_SECRET", "not-a-real-secret")
        .env_remove("CAIRN_MANIFEST");
    c
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_with_keys_writes_a_valid_manifest_owner_only_keys_and_the_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    let out = cairn()
        .args(["init", "--with-keys", "--json", "--dir"])
        .arg(&dir)
        .args(["--tenant", "contoso.onmicrosoft.com"])
        .args(["--client-id", "11111111-2222-3333-4444-555555555555"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let recipient = v["recipient"].as_str().unwrap();
    assert!(recipient.starts_with("age1"), "{v}");
    assert_eq!(
        v["repositories"],
        serde_json::json!([{"sink": "local", "created": true}])
    );

    let manifest = dir.join("cairn.toml");
    let identity = dir.join("restore-identity.txt");
    let key = dir.join("local.writer-key.json");
    let text_ = std::fs::read_to_string(&manifest).unwrap();
    assert!(
        text_.contains(recipient),
        "the generated recipient is in the manifest"
    );
    assert!(
        text_.contains("restore-identity.txt"),
        "and where its key is"
    );
    let secret = std::fs::read_to_string(&identity).unwrap();
    assert!(secret.contains("AGE-SECRET-KEY-1"));
    assert!(
        !text_.contains("AGE-SECRET-KEY-1"),
        "no private key in the manifest"
    );
    assert!(key.exists(), "the writer key file");
    assert!(
        dir.join("repository").join("config").exists(),
        "the repository"
    );
    #[cfg(unix)]
    for f in [&manifest, &identity, &key] {
        assert_eq!(mode(f), 0o600, "{} is owner-only", f.display());
    }

    // It validates as written (with the secret the manifest refers to in the environment).
    let out = cairn()
        .args(["validate", "-m"])
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // The repository opens: an empty snapshot list.
    let out = cairn()
        .args(["snapshots", "--json", "-m"])
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
        serde_json::json!([])
    );

    // Never overwrites: a second init refuses and leaves everything as it was.
    let before = std::fs::read(&manifest).unwrap();
    let out = cairn()
        .args(["init", "--with-keys", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("already exists"), "{}", text(&out));
    assert_eq!(std::fs::read(&manifest).unwrap(), before);
    assert_eq!(std::fs::read_to_string(&identity).unwrap(), secret);
    // --repositories on a set-up directory: nothing to create.
    let out = cairn()
        .args(["init", "--repositories", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("already set up"), "{}", text(&out));
}

#[test]
fn init_without_keys_leaves_the_recipients_to_choose_then_creates_the_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("site");
    let out = cairn().args(["init", "--dir"]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("set the recipients"), "{}", text(&out));
    assert!(!dir.join("repository").exists());
    assert!(!dir.join("restore-identity.txt").exists());
    let manifest = dir.join("cairn.toml");
    // The placeholder recipient is reported until it is replaced.
    let out = cairn()
        .args(["validate", "-m"])
        .arg(&manifest)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("cairn.toml:"), "{}", text(&out));
    let out = cairn()
        .args(["init", "--repositories", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // With a recipient filled in, `init --repositories` creates the repository.
    let text_ = std::fs::read_to_string(&manifest).unwrap();
    let start = text_.find("\"age1-REPLACE-ME\"").unwrap();
    let end = start + text_[start..].find('\n').unwrap();
    let edited = format!(
        "{}\"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\",{}",
        &text_[..start],
        &text_[end..]
    );
    std::fs::write(&manifest, edited).unwrap();
    let out = cairn()
        .args(["init", "--repositories", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("created the repository of sink `local`"));
    assert!(dir.join("repository").join("config").exists());
}
