//! The age sink: objects are standard age files (the `age` CLI decrypts them), data is readable
//! only by the recipients, metadata also by the writer's metadata identity, and a wrong key gets
//! a clear message. Repositories work through it end to end.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use cairn_engine::keys::{age_sink_config, generate_identity};
use cairn_engine::{PluginRef, PluginRegistry, SinkBackend};
use cairn_repository::{Backend, BackendError, InitOptions, OpenOptions, PutOutcome, Repository};
use cairn_runtime::{Limits, Runtime, RuntimeConfig};

fn registry() -> PluginRegistry {
    let cache = std::env::temp_dir().join("cairn-test-component-cache");
    PluginRegistry::new(
        Runtime::new(RuntimeConfig {
            cache_dir: Some(cache),
            ..Default::default()
        })
        .unwrap(),
    )
}

fn sink(
    reg: &PluginRegistry,
    dir: &Path,
    config: serde_json::Value,
) -> anyhow::Result<SinkBackend> {
    let store = cairn_blobstore::open_backend(dir.to_str().unwrap(), &Default::default())?;
    let plugin = reg.get(&PluginRef::Bundled("age-sink".into()))?;
    SinkBackend::new(plugin, store, &config, Limits::default())
}

/// A backup writer's sink: encrypted to `recipient`, and (metadata) to the metadata identity
/// `meta_secret` it holds; it has no restore key.
fn writer_sink(
    reg: &PluginRegistry,
    dir: &Path,
    recipient: &str,
    meta_secret: &str,
) -> SinkBackend {
    let config = age_sink_config(&[recipient.to_string()], Some(meta_secret), &[]).unwrap();
    sink(reg, dir, config).unwrap()
}

fn age_cli() -> &'static str {
    let ok = Command::new("age")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "the `age` command-line tool is needed for this test: apt-get install age (CI installs it)"
    );
    "age"
}

#[test]
fn stored_objects_decrypt_with_the_age_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = generate_identity();
    let reg = registry();
    let backend = sink(
        &reg,
        dir.path(),
        age_sink_config(&[public], None, std::slice::from_ref(&secret)).unwrap(),
    )
    .unwrap();
    let plaintext = b"{\"displayName\":\"Adele Vance\"}".to_vec();
    assert_eq!(
        backend.put("data/ab/abcdef", plaintext.clone()).unwrap(),
        PutOutcome::Created
    );
    assert_eq!(
        backend.put("data/ab/abcdef", plaintext.clone()).unwrap(),
        PutOutcome::AlreadyExisted,
        "create-if-absent"
    );
    let stored = std::fs::read(dir.path().join("data/ab/abcdef")).unwrap();
    assert!(
        stored.starts_with(b"age-encryption.org/v1\n"),
        "a standard age file"
    );
    assert!(
        !stored.windows(11).any(|w| w == b"Adele Vance"),
        "encrypted"
    );

    let key_file = dir.path().join("key.txt");
    std::fs::write(&key_file, format!("{secret}\n")).unwrap();
    let out = Command::new(age_cli())
        .arg("-d")
        .arg("-i")
        .arg(&key_file)
        .arg(dir.path().join("data/ab/abcdef"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, plaintext);
    assert_eq!(backend.get("data/ab/abcdef").unwrap(), plaintext);
}

#[test]
fn objects_encrypted_by_the_age_cli_are_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = generate_identity();
    std::fs::create_dir_all(dir.path().join("snapshots")).unwrap();
    let out = Command::new(age_cli())
        .args(["-r", &public, "-o"])
        .arg(dir.path().join("snapshots/x"))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"written by age")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    let reg = registry();
    let backend = sink(
        &reg,
        dir.path(),
        age_sink_config(&[public], None, &[secret]).unwrap(),
    )
    .unwrap();
    assert_eq!(backend.get("snapshots/x").unwrap(), b"written by age");
}

#[test]
fn ssh_ed25519_recipients_work_with_the_age_cli() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let public = std::fs::read_to_string(fixtures.join("test_ed25519.pub")).unwrap();
    let private = std::fs::read_to_string(fixtures.join("test_ed25519")).unwrap();
    let reg = registry();
    let backend = sink(
        &reg,
        dir.path(),
        serde_json::json!({"recipients": [public.trim()], "identities": [private]}),
    )
    .unwrap();
    backend.put("index/1", b"index bytes".to_vec()).unwrap();
    assert_eq!(backend.get("index/1").unwrap(), b"index bytes");
    let out = Command::new(age_cli())
        .arg("-d")
        .arg("-i")
        .arg(fixtures.join("test_ed25519"))
        .arg(dir.path().join("index/1"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"index bytes");
}

#[test]
fn the_metadata_identity_reads_metadata_but_not_data() {
    let dir = tempfile::tempdir().unwrap();
    let (restore_secret, restore_public) = generate_identity();
    let (meta_secret, _) = generate_identity();
    let reg = registry();
    // The writer: recipients + its metadata identity; it holds no restore key.
    let writer = writer_sink(&reg, dir.path(), &restore_public, &meta_secret);
    writer
        .put("data/00/item", b"mailbox contents".to_vec())
        .unwrap();
    writer.put("index/abc", b"index".to_vec()).unwrap();
    assert_eq!(writer.get("index/abc").unwrap(), b"index");
    let err = writer.get("data/00/item").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("cannot decrypt data/00/item"), "{msg}");
    assert!(
        msg.contains(&restore_public[..14]),
        "names the recipients: {msg}"
    );
    assert!(
        !msg.contains("AGE-SECRET-KEY"),
        "no secret in errors: {msg}"
    );

    // The restore machine reads everything.
    let reader = sink(
        &reg,
        dir.path(),
        age_sink_config(&[restore_public], None, &[restore_secret]).unwrap(),
    )
    .unwrap();
    assert_eq!(reader.get("data/00/item").unwrap(), b"mailbox contents");
    assert_eq!(reader.get("index/abc").unwrap(), b"index");
    assert!(matches!(
        reader.get("index/missing"),
        Err(BackendError::NotFound { .. })
    ));
}

#[test]
fn bad_configuration_fails_at_start_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry();
    let err = match sink(
        &reg,
        dir.path(),
        serde_json::json!({"recipients": ["age1notavalidkey"]}),
    ) {
        Err(e) => format!("{e:#}"),
        Ok(_) => panic!("must fail"),
    };
    assert!(err.contains("is not a valid age recipient"), "{err}");
    let (secret, _) = generate_identity();
    let err = match sink(
        &reg,
        dir.path(),
        serde_json::json!({"recipients": [secret]}),
    ) {
        Err(e) => format!("{e:#}"),
        Ok(_) => panic!("must fail"),
    };
    assert!(err.contains("secret key was given as a recipient"), "{err}");
    assert!(
        !err.contains("AGE-SECRET-KEY-1"),
        "the secret is not echoed: {err}"
    );
}

#[test]
fn a_repository_works_through_the_sink() {
    let dir = tempfile::tempdir().unwrap();
    let (restore_secret, restore_public) = generate_identity();
    let (meta_secret, _) = generate_identity();
    let reg = registry();
    let writer: Arc<dyn Backend> =
        Arc::new(writer_sink(&reg, dir.path(), &restore_public, &meta_secret));
    let repo = Repository::init(writer.clone(), InitOptions::default()).unwrap();
    let id_key = repo.id_key().clone();
    // Every stored object is an age file.
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            bytes.starts_with(b"age-encryption.org/v1\n"),
            "{}",
            entry.display()
        );
    }
    // The writer reopens with its key file's id key (it cannot read keys/).
    Repository::open(
        writer,
        OpenOptions {
            id_key: Some(id_key),
        },
    )
    .unwrap();
    // A restore machine with the recipient's identity opens it without the key file.
    let reader: Arc<dyn Backend> = Arc::new(
        sink(
            &reg,
            dir.path(),
            age_sink_config(&[restore_public], None, &[restore_secret]).unwrap(),
        )
        .unwrap(),
    );
    let reopened = Repository::open(reader, OpenOptions::default()).unwrap();
    assert_eq!(reopened.config().id, repo.config().id);
    // A stranger's key gets the clear message.
    let (other_secret, other_public) = generate_identity();
    let stranger: Arc<dyn Backend> = Arc::new(
        sink(
            &reg,
            dir.path(),
            age_sink_config(&[other_public], None, &[other_secret]).unwrap(),
        )
        .unwrap(),
    );
    let err = match Repository::open(stranger, OpenOptions::default()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a stranger must not open the repository"),
    };
    assert!(err.contains("cannot decrypt"), "{err}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
