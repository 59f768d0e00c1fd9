//! Checks that look at the outside world: do the secrets the manifest references exist?

use crate::diagnostic::{Diagnostic, Severity};
use crate::model::{Credential, Manifest, StoreOption};
use crate::parse::join_path;
use crate::secret::{probe, Env, ProcessEnv, SecretError, SecretRef};

/// Checks that every secret reference of the manifest's connections and sink stores resolves:
/// the environment variable is set and not empty, the file exists, is readable and is text.
/// Warns when a secret file can be read by other users. Diagnostics carry the key's line and
/// never the secret's value. (Plugin config secrets are checked by
/// [`crate::check_plugin_configs`], which knows their schemas.)
pub fn check_secrets(m: &Manifest) -> Vec<Diagnostic> {
    check_secrets_with(m, &ProcessEnv)
}

/// [`check_secrets`] with an explicit environment.
pub fn check_secrets_with(m: &Manifest, env: &dyn Env) -> Vec<Diagnostic> {
    let mut refs: Vec<(String, &SecretRef, bool)> = Vec::new();
    for (name, c) in &m.connections {
        let base = join_path("connections", name);
        match &c.credential {
            Credential::Secret(r) => refs.push((format!("{base}.client_secret"), r, true)),
            Credential::Certificate { cert, key } => {
                refs.push((format!("{base}.certificate"), cert, false));
                refs.push((format!("{base}.certificate_key"), key, true));
            }
        }
    }
    for (name, s) in &m.sinks {
        for (k, v) in &s.store {
            if let StoreOption::Secret(r) = v {
                refs.push((
                    join_path(&format!("{}.store", join_path("sinks", name)), k),
                    r,
                    true,
                ));
            }
        }
    }
    let mut out = Vec::new();
    for (path, r, secret) in refs {
        if let SecretRef::Inline(_) = r {
            continue;
        }
        let (table, key) = path.rsplit_once('.').unwrap_or(("", &path));
        if let Err(e) = probe(r, env) {
            let help = match (secret, r) {
                (false, SecretRef::File(p)) => format!(
                    "the app's certificate (PEM) should be at {}; check the path",
                    p.display()
                ),
                _ => secret_help(r, &e),
            };
            out.push(m.diagnostic(
                &path,
                Severity::Error,
                format!("`{key}` in [{table}]: {e}"),
                Some(help),
            ));
            continue;
        }
        #[cfg(unix)]
        if let (true, SecretRef::File(p)) = (secret, r) {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(p) {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    out.push(m.diagnostic(
                        &path,
                        Severity::Warning,
                        format!(
                            "`{key}` in [{table}]: secret file {} can be read by other users (mode {mode:04o})",
                            p.display()
                        ),
                        Some(format!("chmod 600 {}", p.display())),
                    ));
                }
            }
        }
        #[cfg(not(unix))]
        let _ = secret;
    }
    crate::diagnostic::sort_diagnostics(&mut out);
    out
}

/// How to fix an unresolvable secret reference.
pub(crate) fn secret_help(r: &SecretRef, e: &SecretError) -> String {
    match (r, e) {
        (SecretRef::Env(n), SecretError::EnvUnset { .. } | SecretError::EnvEmpty { .. }) => {
            format!(
                "set {n} in cairn's environment (for a service, e.g. an EnvironmentFile= readable \
             only by its user), or reference a file instead: \"file:/path\""
            )
        }
        (SecretRef::File(p), SecretError::FileUnreadable { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            format!(
                "create {} holding only the secret, readable only by cairn's user (chmod 600)",
                p.display()
            )
        }
        (SecretRef::File(p), SecretError::FileUnreadable { .. }) => format!(
            "make {} readable by the user cairn runs as (and by no one else)",
            p.display()
        ),
        _ => "check the reference points at the right secret".into(),
    }
}
