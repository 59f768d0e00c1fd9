//! `age-sink`: wraps each repository object as a standard age file (<https://age-encryption.org>)
//! and places it in the host's blob store.
//!
//! - **Write-only backups.** Encryption needs only public keys: X25519 (`age1…`) and SSH
//!   (`ssh-ed25519 …`, `ssh-rsa …`) recipients. The backup machine holds no key that opens item
//!   contents.
//! - **Two object classes** (see `docs/repository.md`): keys under `data/` (item bodies and
//!   attachments) are encrypted to `recipients` only; every other key (index, trees, snapshots,
//!   checkpoints, config) also to `metadata_recipients` — the writer's metadata identity, which
//!   lets a write-only backup machine deduplicate and resume without reading contents.
//! - **Reading** uses `identities` (age identity files or unencrypted OpenSSH private keys),
//!   given at restore time; the writer passes its metadata identity to read metadata.
//!
//! Every stored object decrypts with the `age` command-line tool: `age -d -i key.txt object`.

use std::io::{Read, Write};
use std::str::FromStr;
use std::sync::OnceLock;

use age::{Identity, Recipient};
use cairn_sdk::prelude::*;
use cairn_sdk::{DeleteOutcome, PutOutcome};
use serde::Deserialize;

/// The sink's manifest configuration.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Public keys that can read everything (the restore keys).
    recipients: Vec<String>,
    /// Extra public keys for metadata objects only (the writer's metadata identity).
    #[serde(default)]
    metadata_recipients: Vec<String>,
    /// Secret identities for reading, as the text of age identity files or OpenSSH private keys.
    #[serde(default)]
    identities: Vec<String>,
}

/// Parsed configuration, kept for the instance's life.
struct Keys {
    recipients: Vec<Box<dyn Recipient + Send + Sync>>,
    metadata_recipients: Vec<Box<dyn Recipient + Send + Sync>>,
    identities: Vec<Box<dyn Identity + Send + Sync>>,
    /// The public recipients as configured, for error messages.
    recipient_names: Vec<String>,
}

static KEYS: OnceLock<Result<Keys, String>> = OnceLock::new();

fn keys() -> Result<&'static Keys, SinkError> {
    KEYS.get_or_init(|| {
        let cfg: Config = config().map_err(|e| format!("{e:?}"))?;
        parse_keys(cfg)
    })
    .as_ref()
    .map_err(|e| SinkError::Config(e.clone()))
}

fn parse_keys(cfg: Config) -> Result<Keys, String> {
    if cfg.recipients.is_empty() {
        return Err("`recipients` is empty: name at least one age1… or ssh public key".into());
    }
    let recipients = cfg
        .recipients
        .iter()
        .map(|r| parse_recipient(r))
        .collect::<Result<Vec<_>, _>>()?;
    let metadata_recipients = cfg
        .metadata_recipients
        .iter()
        .map(|r| parse_recipient(r))
        .collect::<Result<Vec<_>, _>>()?;
    let mut identities = Vec::new();
    for (n, text) in cfg.identities.iter().enumerate() {
        identities.extend(parse_identities(text).map_err(|e| format!("identity #{}: {e}", n + 1))?);
    }
    Ok(Keys {
        recipients,
        metadata_recipients,
        identities,
        recipient_names: cfg.recipients.iter().map(|r| abbreviate(r)).collect(),
    })
}

fn parse_recipient(text: &str) -> Result<Box<dyn Recipient + Send + Sync>, String> {
    let text = text.trim();
    if text.starts_with("age1") {
        return age::x25519::Recipient::from_str(text)
            .map(|r| Box::new(r) as Box<dyn Recipient + Send + Sync>)
            .map_err(|e| format!("`{}` is not a valid age recipient: {e}", abbreviate(text)));
    }
    if text.starts_with("ssh-") {
        return age::ssh::Recipient::from_str(text)
            .map(|r| Box::new(r) as Box<dyn Recipient + Send + Sync>)
            .map_err(|e| {
                format!(
                    "`{}` is not a usable SSH recipient: {e:?}",
                    abbreviate(text)
                )
            });
    }
    if text.starts_with("AGE-SECRET-KEY-") {
        return Err(
            "a secret key was given as a recipient; give its public `age1…` key instead \
                    (age-keygen -y key.txt)"
                .into(),
        );
    }
    Err(format!(
        "`{}` is neither an age recipient (age1…) nor an SSH public key (ssh-ed25519 …, ssh-rsa …)",
        abbreviate(text)
    ))
}

fn parse_identities(text: &str) -> Result<Vec<Box<dyn Identity + Send + Sync>>, String> {
    if text.contains("-----BEGIN") {
        let identity = age::ssh::Identity::from_buffer(text.as_bytes(), None)
            .map_err(|e| format!("cannot read the SSH private key: {e}"))?;
        return match identity {
            age::ssh::Identity::Unencrypted(_) => Ok(vec![Box::new(identity)]),
            age::ssh::Identity::Encrypted(_) => Err(
                "the SSH private key is passphrase-protected; use an unencrypted copy or an age identity"
                    .into(),
            ),
            age::ssh::Identity::Unsupported(k) => Err(format!("unsupported SSH key type: {k:?}")),
        };
    }
    let mut out: Vec<Box<dyn Identity + Send + Sync>> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let id = age::x25519::Identity::from_str(line).map_err(|_| {
            "not an age identity file (lines of AGE-SECRET-KEY-1…) nor an OpenSSH private key"
                .to_string()
        })?;
        out.push(Box::new(id));
    }
    if out.is_empty() {
        return Err("the identity file holds no keys".into());
    }
    Ok(out)
}

/// Shortens a public key for messages.
fn abbreviate(key: &str) -> String {
    let key = key.trim();
    if key.len() > 24 {
        format!("{}…{}", &key[..14], &key[key.len() - 6..])
    } else {
        key.to_string()
    }
}

fn is_data(key: &str) -> bool {
    key.starts_with("data/")
}

fn encrypt(keys: &Keys, key: &str, plaintext: &[u8]) -> Result<Vec<u8>, SinkError> {
    let mut recipients: Vec<&dyn Recipient> = keys
        .recipients
        .iter()
        .map(|r| r.as_ref() as &dyn Recipient)
        .collect();
    if !is_data(key) {
        recipients.extend(
            keys.metadata_recipients
                .iter()
                .map(|r| r.as_ref() as &dyn Recipient),
        );
    }
    let encryptor = age::Encryptor::with_recipients(recipients.into_iter())
        .map_err(|e| SinkError::Config(format!("cannot encrypt to the recipients: {e}")))?;
    let mut out = Vec::with_capacity(plaintext.len() + 256);
    let mut writer = encryptor
        .wrap_output(&mut out)
        .map_err(|e| SinkError::Store(format!("encrypting {key}: {e}")))?;
    writer
        .write_all(plaintext)
        .and_then(|_| writer.finish().map(|_| ()))
        .map_err(|e| SinkError::Store(format!("encrypting {key}: {e}")))?;
    Ok(out)
}

fn decrypt(keys: &Keys, key: &str, ciphertext: &[u8]) -> Result<Vec<u8>, SinkError> {
    if keys.identities.is_empty() {
        return Err(SinkError::Config(
            "reading needs an identity: give the age identity file (or SSH private key) of one \
             of the recipients"
                .into(),
        ));
    }
    let decryptor = age::Decryptor::new(ciphertext).map_err(|e| match e {
        age::DecryptError::InvalidHeader | age::DecryptError::UnknownFormat => {
            SinkError::Corrupt(format!("{key} is not an age file (bad header)"))
        }
        other => SinkError::Corrupt(format!("{key}: {other}")),
    })?;
    let mut reader = decryptor
        .decrypt(keys.identities.iter().map(|i| i.as_ref() as &dyn Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => SinkError::CannotDecrypt(format!(
                "this identity cannot decrypt {key} (the repository's recipients are: {})",
                keys.recipient_names.join(", ")
            )),
            other => SinkError::Corrupt(format!("{key}: {other}")),
        })?;
    let mut out = Vec::with_capacity(ciphertext.len());
    reader
        .read_to_end(&mut out)
        .map_err(|e| SinkError::Corrupt(format!("{key} is damaged or truncated: {e}")))?;
    Ok(out)
}

struct AgeSink;

impl Plugin for AgeSink {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "age-sink",
            env!("CARGO_PKG_VERSION"),
            "Encrypts every object as a standard age file to X25519 or SSH recipients",
        )
        .sink()
        .config_schema(serde_json::json!({
            "type": "object",
            "required": ["recipients"],
            "properties": {
                "recipients": {
                    "type": "array", "minItems": 1, "items": {"type": "string"},
                    "description": "Public keys that can read the repository: age1… or ssh-ed25519/ssh-rsa"
                },
                "metadata_recipients": {
                    "type": "array", "items": {"type": "string"},
                    "description": "Extra public keys for metadata objects only (the writer's metadata identity)"
                },
                "identities": {
                    "type": "array", "items": {"type": "string"}, "x-cairn-secret": true,
                    "description": "Identity files (age or OpenSSH private keys) used to read"
                }
            },
            "additionalProperties": false
        }))
    }

    fn configured() -> Result<(), PluginError> {
        Self::check_config()
    }
}

impl AgeSink {
    fn check_config() -> Result<(), PluginError> {
        keys().map(|_| ()).map_err(|e| match e {
            SinkError::Config(m) => PluginError::Config(m),
            other => PluginError::Other(format!("{other:?}")),
        })
    }
}

impl Sink for AgeSink {
    fn put(key: String, data: Vec<u8>) -> Result<bool, SinkError> {
        let keys = keys()?;
        let wrapped = encrypt(keys, &key, &data)?;
        Ok(BlobStore::put(&key, &wrapped)? == PutOutcome::Created)
    }

    fn get(key: String) -> Result<Vec<u8>, SinkError> {
        let keys = keys()?;
        let wrapped = BlobStore::get(&key)?.ok_or(SinkError::NotFound)?;
        decrypt(keys, &key, &wrapped)
    }

    fn list(prefix: String) -> Result<Vec<String>, SinkError> {
        Ok(BlobStore::list(&prefix)?
            .into_iter()
            .map(|m| m.key)
            .collect())
    }

    fn delete(key: String) -> Result<bool, SinkError> {
        match BlobStore::delete(&key)? {
            DeleteOutcome::Deleted | DeleteOutcome::NotFound => Ok(true),
            DeleteOutcome::Refused(why) => {
                warn(&format!("the store refused to delete {key}: {why}"));
                Ok(false)
            }
        }
    }
}

cairn_sdk::export_sink!(AgeSink);
