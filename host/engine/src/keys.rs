//! Keys of an age-encrypted repository.
//!
//! - The **recipients** (public keys in the manifest) can read everything.
//! - The writer's **metadata identity** (an X25519 key made at `init`, kept in the writer's key
//!   file) can read metadata only — index, trees, snapshots, checkpoints — so a write-only
//!   backup machine deduplicates and resumes without being able to read item contents.

use std::str::FromStr;

use age::secrecy::ExposeSecret;
use cairn_repository::WriterKeyFile;

/// Member of the writer key file holding the metadata identity.
pub const METADATA_IDENTITY_FIELD: &str = "age_metadata_identity";

/// A freshly generated X25519 identity: (secret `AGE-SECRET-KEY-1…`, public `age1…`).
pub fn generate_identity() -> (String, String) {
    let id = age::x25519::Identity::generate();
    let public = id.to_public().to_string();
    (id.to_string().expose_secret().to_string(), public)
}

/// The public `age1…` key of an `AGE-SECRET-KEY-1…` identity.
pub fn public_of(secret: &str) -> Result<String, String> {
    age::x25519::Identity::from_str(secret.trim())
        .map(|i| i.to_public().to_string())
        .map_err(|_| "not an age X25519 identity (AGE-SECRET-KEY-1…)".to_string())
}

/// The metadata identity stored in a writer key file, if any.
pub fn metadata_identity(key_file: &WriterKeyFile) -> Option<String> {
    key_file
        .extra
        .get(METADATA_IDENTITY_FIELD)
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

/// The age sink's configuration for a writer: the manifest's recipients, the metadata
/// identity's public key as metadata recipient, and the metadata identity to read metadata.
/// `extra_identities` (identity files given at restore time) are added for reading.
pub fn age_sink_config(
    recipients: &[String],
    metadata_identity: Option<&str>,
    extra_identities: &[String],
) -> Result<serde_json::Value, String> {
    let mut metadata_recipients = Vec::new();
    let mut identities: Vec<String> = extra_identities.to_vec();
    if let Some(secret) = metadata_identity {
        metadata_recipients.push(public_of(secret)?);
        identities.push(secret.to_string());
    }
    Ok(serde_json::json!({
        "recipients": recipients,
        "metadata_recipients": metadata_recipients,
        "identities": identities,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identities_round_trip() {
        let (secret, public) = generate_identity();
        assert!(secret.starts_with("AGE-SECRET-KEY-1"));
        assert!(public.starts_with("age1"));
        assert_eq!(public_of(&secret).unwrap(), public);
        assert!(public_of("age1notasecret").is_err());
    }

    #[test]
    fn sink_config_adds_the_metadata_recipient() {
        let (secret, public) = generate_identity();
        let cfg = age_sink_config(&["age1xyz".into()], Some(&secret), &[]).unwrap();
        assert_eq!(cfg["metadata_recipients"][0], public.as_str());
        assert_eq!(cfg["identities"][0], secret.as_str());
        assert_eq!(cfg["recipients"][0], "age1xyz");
    }
}
