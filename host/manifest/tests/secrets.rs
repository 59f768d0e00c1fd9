//! Secret references: resolution, checks against the environment, and that no value ever
//! reaches an error, a diagnostic or a Debug print.

use crate::common;

use std::collections::BTreeMap;

use cairn_manifest::*;
use common::*;

const VALUE: &str = "pa55-W0rd-never-print-me";

fn env_with(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn secret_prints_stars() {
    let s = Secret::new(VALUE);
    assert_eq!(format!("{s}"), "***");
    assert_eq!(format!("{s:?}"), "***");
    assert_eq!(s.expose(), VALUE);
    let r = SecretRef::Inline(Secret::new(VALUE));
    assert_eq!(format!("{r:?}"), "Inline(***)");
    assert_eq!(r.describe(), "inline value");
    assert_eq!(r.to_reference_string(), "***");
    assert_eq!(SecretRef::Env("X".into()).to_reference_string(), "env:X");
}

#[test]
fn resolves_from_the_environment() {
    let env = env_with(&[("CAIRN_S", VALUE), ("EMPTY", "")]);
    let s = resolve_secret_with(&SecretRef::Env("CAIRN_S".into()), &env).unwrap();
    assert_eq!(s.expose(), VALUE);
    let e = resolve_secret_with(&SecretRef::Env("NOPE".into()), &env).unwrap_err();
    assert_eq!(e.to_string(), "environment variable NOPE is not set");
    let e = resolve_secret_with(&SecretRef::Env("EMPTY".into()), &env).unwrap_err();
    assert_eq!(e.to_string(), "environment variable EMPTY is set but empty");
}

#[test]
fn resolves_from_files_without_trailing_newlines() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("secret");
    std::fs::write(&p, format!("{VALUE}\r\n\n")).unwrap();
    let s = resolve_secret(&SecretRef::File(p.clone())).unwrap();
    assert_eq!(s.expose(), VALUE);

    let pem = dir.path().join("key.pem");
    std::fs::write(
        &pem,
        "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    assert!(resolve_secret(&SecretRef::File(pem))
        .unwrap()
        .expose()
        .ends_with("KEY-----"));

    let missing = dir.path().join("missing");
    let e = resolve_secret(&SecretRef::File(missing.clone())).unwrap_err();
    assert!(e
        .to_string()
        .starts_with(&format!("cannot read secret file {}", missing.display())));

    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    assert!(matches!(
        resolve_secret(&SecretRef::File(empty)),
        Err(SecretError::FileEmpty { .. })
    ));

    let binary = dir.path().join("binary");
    std::fs::write(&binary, [VALUE.as_bytes(), &[0xff, 0xfe]].concat()).unwrap();
    let e = resolve_secret(&SecretRef::File(binary)).unwrap_err();
    assert!(matches!(e, SecretError::FileNotText { .. }));
    assert!(!e.to_string().contains(VALUE));

    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'a'; (MAX_SECRET_FILE + 1) as usize]).unwrap();
    assert!(matches!(
        resolve_secret(&SecretRef::File(big)),
        Err(SecretError::FileTooLarge { .. })
    ));

    assert!(resolve_secret(&SecretRef::File(dir.path().to_path_buf())).is_err());
}

#[test]
fn check_secrets_reports_unset_variables_and_missing_files_at_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    let text = base_with(
        "client_secret = \"env:CAIRN_CLIENT_SECRET\"",
        "client_secret = \"env:CAIRN_UNSET_SECRET\"",
    ) + "[sinks.local.store]\nsecret_access_key = \"file:missing-secret\"\n";
    let text = text.replace("url = \"/var/backups/cairn\"", "url = \"s3://bucket-1/x\"");
    let path = dir.path().join("cairn.toml");
    std::fs::write(&path, &text).unwrap();
    let m = load_with_env(&path, &env()).unwrap_or_else(|d| panic!("{d}"));
    let ds = check_secrets_with(&m, &env());
    assert_eq!(ds.len(), 2, "{ds:#?}");
    assert_eq!(ds[0].line, 6);
    assert_eq!(ds[0].column, 17);
    assert_eq!(
        ds[0].message,
        "`client_secret` in [connections.contoso]: environment variable CAIRN_UNSET_SECRET is not set"
    );
    assert!(ds[0]
        .help
        .as_deref()
        .unwrap()
        .contains("set CAIRN_UNSET_SECRET"));
    assert_eq!(ds[1].line, 18);
    assert!(
        ds[1]
            .message
            .contains("`secret_access_key` in [sinks.local.store]: cannot read secret file"),
        "{}",
        ds[1]
    );
    assert!(ds[1]
        .message
        .contains(&dir.path().join("missing-secret").display().to_string()));
    assert!(ds[1].help.as_deref().unwrap().contains("chmod 600"));

    // Once they exist: clean.
    let secret = dir.path().join("missing-secret");
    std::fs::write(&secret, VALUE).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let env2 = env_with(&[("CAIRN_UNSET_SECRET", VALUE)]);
    let ds = check_secrets_with(&m, &env2);
    assert!(ds.is_empty(), "{ds:#?}");
    // And the store options resolve for the blob store.
    let opts = resolve_store_options_with(&m.sinks["local"], &env2).unwrap();
    assert_eq!(opts["secret_access_key"], VALUE);
}

#[cfg(unix)]
#[test]
fn check_secrets_warns_about_files_others_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client-secret");
    std::fs::write(&secret, VALUE).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = base_with(
        "client_secret = \"env:CAIRN_CLIENT_SECRET\"",
        "client_secret = \"file:client-secret\"",
    );
    let path = dir.path().join("cairn.toml");
    std::fs::write(&path, &text).unwrap();
    let m = load(&path).unwrap();
    let ds = check_secrets(&m);
    assert_eq!(ds.len(), 1, "{ds:#?}");
    assert_eq!(ds[0].severity, Severity::Warning);
    assert_eq!(ds[0].line, 6);
    assert!(ds[0]
        .message
        .contains("can be read by other users (mode 0644)"));
    assert_eq!(
        ds[0].help.as_deref(),
        Some(format!("chmod 600 {}", secret.display()).as_str())
    );
    assert!(!ds[0].to_string().contains(VALUE));
}

#[test]
fn secret_values_never_appear_in_diagnostics() {
    // A syntax error on the secret's own line.
    let text = base_with(
        "client_secret = \"env:CAIRN_CLIENT_SECRET\"",
        &format!("client_secret = \"{VALUE}"),
    );
    let all = common::parse(&text).unwrap_err().to_string();
    assert!(all.contains("cairn.toml:6:"), "{all}");
    assert!(!all.contains(VALUE), "{all}");
    assert!(all.contains("client_secret = ***"), "{all}");

    // A wrong type on a secret field.
    let text = base_with(
        "client_secret = \"env:CAIRN_CLIENT_SECRET\"",
        "client_secret = 8675309",
    );
    let all = common::parse(&text).unwrap_err().to_string();
    assert!(!all.contains("8675309"), "{all}");

    // An inline secret in an inline table, with another error on the same line after it.
    let text = base_with("url = \"/var/backups/cairn\"", "url = \"s3://bucket-1/x\"\nstore = { secret_access_key = \"AKIAsecretVALUE\", regin = 5, bogus = [1] }");
    let all = common::parse(&text).unwrap_err().to_string();
    assert!(!all.contains("AKIAsecretVALUE"), "{all}");
    assert!(
        all.contains("store = { secret_access_key = ***, regin = 5"),
        "{all}"
    );

    // Allowed inline secrets stay out of other diagnostics on their lines too.
    let text = format!(
        "allow_inline_secrets = true\n{}",
        base_with(
            "client_secret = \"env:CAIRN_CLIENT_SECRET\"",
            &format!("client_secret = \"{VALUE}\"")
        )
    );
    let m = ok(&text);
    let d = m.diagnostic(
        "connections.contoso.client_secret",
        Severity::Error,
        "rejected by the token endpoint",
        None,
    );
    assert!(!d.to_string().contains(VALUE), "{d}");
    let rendered: String = m.warnings.iter().map(|w| w.to_string()).collect();
    assert!(!rendered.contains(VALUE));
    assert!(!format!("{m:?}").contains(VALUE));
    assert!(!m.canonical_json().to_string().contains(VALUE));

    // check_secrets never reads a value into its messages: a file holding the value is
    // simply fine; an unreadable one is reported by path.
    let ds = check_secrets_with(&m, &env());
    assert!(ds.is_empty());
}

#[test]
fn a_missing_certificate_is_reported_as_a_certificate() {
    let text = base_with(
        "client_secret = \"env:CAIRN_CLIENT_SECRET\"",
        "certificate = \"/nonexistent/app.crt\"\ncertificate_key = \"env:CAIRN_CLIENT_SECRET\"",
    );
    let m = ok(&text);
    let ds = check_secrets_with(&m, &env());
    assert_eq!(ds.len(), 1, "{ds:#?}");
    assert_eq!(ds[0].line, 6);
    assert!(ds[0].message.starts_with(
        "`certificate` in [connections.contoso]: cannot read secret file /nonexistent/app.crt"
    ));
    assert!(ds[0]
        .help
        .as_deref()
        .unwrap()
        .contains("the app's certificate (PEM)"));
}
