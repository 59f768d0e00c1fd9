//! Secret references (`env:NAME`, `file:/path`) and resolved secret values.

use std::collections::{BTreeMap, HashMap};
use std::env::VarError;
use std::fmt;
use std::path::{Path, PathBuf};

/// Largest secret file read (a PEM private key is a few KiB).
pub const MAX_SECRET_FILE: u64 = 1 << 20;

/// A secret value. `Debug` and `Display` print `***`; the value is reachable only through
/// [`Secret::expose`]. The bytes are overwritten (best effort) when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value. Do not log it, put it in an error, or keep copies.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Is the value empty?
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        bytes.fill(0);
        std::hint::black_box(&bytes);
    }
}

/// Where a secret comes from. Written in the manifest as `env:NAME` or `file:/path` (a
/// relative path is relative to the manifest's directory); [`SecretRef::Inline`] only when the
/// manifest sets `allow_inline_secrets = true`.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// An environment variable of the `cairn` process.
    Env(String),
    /// A file (its content, without trailing newlines).
    File(PathBuf),
    /// The value written in the manifest itself.
    Inline(Secret),
}

impl SecretRef {
    /// A description that never includes the value: `environment variable NAME`,
    /// `file /path`, `inline value`.
    pub fn describe(&self) -> String {
        match self {
            SecretRef::Env(n) => format!("environment variable {n}"),
            SecretRef::File(p) => format!("file {}", p.display()),
            SecretRef::Inline(_) => "inline value".to_string(),
        }
    }

    /// The reference as it would be written in a manifest (`env:NAME`, `file:/path`); `***`
    /// for an inline value.
    pub fn to_reference_string(&self) -> String {
        match self {
            SecretRef::Env(n) => format!("env:{n}"),
            SecretRef::File(p) => format!("file:{}", p.display()),
            SecretRef::Inline(_) => "***".to_string(),
        }
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(n) => f.debug_tuple("Env").field(n).finish(),
            SecretRef::File(p) => f.debug_tuple("File").field(p).finish(),
            SecretRef::Inline(_) => f.write_str("Inline(***)"),
        }
    }
}

/// Failure to resolve a secret. Never contains the secret's value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The variable is not set.
    #[error("environment variable {name} is not set")]
    EnvUnset {
        /// Its name.
        name: String,
    },
    /// The variable is set to the empty string.
    #[error("environment variable {name} is set but empty")]
    EnvEmpty {
        /// Its name.
        name: String,
    },
    /// The variable's value is not UTF-8.
    #[error("environment variable {name} is not valid UTF-8")]
    EnvNotUnicode {
        /// Its name.
        name: String,
    },
    /// The file cannot be read.
    #[error("cannot read secret file {}: {source}", path.display())]
    FileUnreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is empty (or only newlines).
    #[error("secret file {} is empty", path.display())]
    FileEmpty {
        /// The file.
        path: PathBuf,
    },
    /// The file is not UTF-8 text.
    #[error("secret file {} is not UTF-8 text", path.display())]
    FileNotText {
        /// The file.
        path: PathBuf,
    },
    /// The file is larger than [`MAX_SECRET_FILE`].
    #[error("secret file {} is larger than 1 MiB: is it the right file?", path.display())]
    FileTooLarge {
        /// The file.
        path: PathBuf,
    },
}

/// Where environment variables come from: the process ([`ProcessEnv`]) or, in tests and
/// embedders, a map.
pub trait Env {
    /// Like [`std::env::var`].
    fn var(&self, name: &str) -> Result<String, VarError>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Result<String, VarError> {
        std::env::var(name)
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Result<String, VarError> {
        self.get(name).cloned().ok_or(VarError::NotPresent)
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Result<String, VarError> {
        self.get(name).cloned().ok_or(VarError::NotPresent)
    }
}

impl<E: Env + ?Sized> Env for &E {
    fn var(&self, name: &str) -> Result<String, VarError> {
        (**self).var(name)
    }
}

/// Reads a secret from the process environment or a file.
pub fn resolve_secret(r: &SecretRef) -> Result<Secret, SecretError> {
    resolve_secret_with(r, &ProcessEnv)
}

/// [`resolve_secret`] with an explicit environment.
pub fn resolve_secret_with(r: &SecretRef, env: &dyn Env) -> Result<Secret, SecretError> {
    match r {
        SecretRef::Inline(s) => Ok(s.clone()),
        SecretRef::Env(name) => match env.var(name) {
            Ok(v) if v.is_empty() => Err(SecretError::EnvEmpty { name: name.clone() }),
            Ok(v) => Ok(Secret(v)),
            Err(VarError::NotPresent) => Err(SecretError::EnvUnset { name: name.clone() }),
            Err(VarError::NotUnicode(_)) => Err(SecretError::EnvNotUnicode { name: name.clone() }),
        },
        SecretRef::File(path) => read_secret_file(path),
    }
}

fn read_secret_file(path: &Path) -> Result<Secret, SecretError> {
    use std::io::Read;
    let unreadable = |source| SecretError::FileUnreadable {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(unreadable)?;
    let meta = f.metadata().map_err(unreadable)?;
    if meta.is_dir() {
        return Err(unreadable(std::io::Error::other("it is a directory")));
    }
    let mut bytes = Vec::new();
    f.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        bytes.fill(0);
        return Err(SecretError::FileTooLarge {
            path: path.to_path_buf(),
        });
    }
    let mut text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let mut b = e.into_bytes();
            b.fill(0);
            return Err(SecretError::FileNotText {
                path: path.to_path_buf(),
            });
        }
    };
    let keep = text.trim_end_matches(['\n', '\r']).len();
    // Overwrite the trailing bytes before truncating (they are only newlines).
    text.truncate(keep);
    if text.is_empty() {
        return Err(SecretError::FileEmpty {
            path: path.to_path_buf(),
        });
    }
    Ok(Secret(text))
}

/// Checks a secret reference without keeping its value: the variable is set and not empty,
/// or the file is readable, not empty, and text.
pub(crate) fn probe(r: &SecretRef, env: &dyn Env) -> Result<(), SecretError> {
    resolve_secret_with(r, env).map(drop)
}

/// Is `name` a valid environment variable name for `env:` and `${…}`?
pub(crate) fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// How a secret field's string was understood.
pub(crate) enum RefParse {
    Ref(SecretRef),
    /// Not `env:`/`file:`: an inline value.
    Inline,
    /// `env:`/`file:` but malformed: the message and help.
    Bad(String, String),
}

pub(crate) fn parse_ref(s: &str, base_dir: &Path) -> RefParse {
    if let Some(name) = s.strip_prefix("env:") {
        if valid_env_name(name) {
            RefParse::Ref(SecretRef::Env(name.to_string()))
        } else {
            RefParse::Bad(
                format!("`env:{name}` does not name an environment variable"),
                "write env:NAME, where NAME has only letters, digits and `_` and does not start \
                 with a digit, e.g. env:CAIRN_CLIENT_SECRET"
                    .into(),
            )
        }
    } else if let Some(rest) = s.strip_prefix("file:") {
        let rest = if let Some(r) = rest.strip_prefix("//") {
            if !r.starts_with('/') {
                return RefParse::Bad(
                    format!("`{s}` is not a file reference"),
                    "write file:/absolute/path, file:relative/path (relative to the manifest's \
                     directory) or file:///absolute/path"
                        .into(),
                );
            }
            r
        } else {
            rest
        };
        if rest.is_empty() {
            return RefParse::Bad(
                "`file:` names no file".into(),
                "write file:/path/to/secret".into(),
            );
        }
        RefParse::Ref(SecretRef::File(crate::parse::resolve_path(rest, base_dir)))
    } else {
        RefParse::Inline
    }
}
