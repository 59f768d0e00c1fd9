//! Snapshots: the record of one backup run.

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::canonical::to_canonical_vec;
use crate::id::Id;

/// Outcome of one collector task in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Finished in this run; `tree` is its full listing.
    Complete,
    /// Failed in this run; `tree` and `checkpoint` are the parent's (if any), so the snapshot
    /// still shows the last known state and the next run retries from the parent's checkpoint.
    Failed,
    /// Not run this time; copied unchanged from the parent snapshot.
    Carried,
}

/// One task in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Task name (unique in the snapshot), e.g. `entra/users` or `mail/alice@contoso.com`.
    pub name: String,
    /// Root of the task's tree.
    pub tree: Id,
    /// Number of entries in the tree.
    pub items: u64,
    /// The task's checkpoint (delta link / cursor), opaque to the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// How the task ended.
    pub status: TaskStatus,
    /// Error message for failed tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An ed25519 signature over the snapshot's canonical JSON without the `signature` member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSignature {
    /// Public key (hex, 32 bytes).
    pub public_key: String,
    /// Signature (hex, 64 bytes).
    pub signature: String,
}

/// A snapshot object (`snapshots/<id>`), canonical JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Snapshot format version (1).
    pub version: u32,
    /// When the run started, RFC 3339 UTC.
    pub time: String,
    /// The run id (shared with the run's checkpoints).
    pub run: String,
    /// Parent snapshot (hash chain); `None` for the first.
    #[serde(default)]
    pub parent: Option<Id>,
    /// Hash of the manifest the run used, as the engine computed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_hash: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Whether some task failed.
    pub partial: bool,
    /// Names of the failed tasks.
    #[serde(default)]
    pub failed_tasks: Vec<String>,
    /// The tasks, sorted by name.
    pub tasks: Vec<TaskRecord>,
    /// Run statistics supplied by the engine (opaque).
    #[serde(default)]
    pub stats: serde_json::Value,
    /// Optional signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SnapshotSignature>,
}

impl Snapshot {
    /// The bytes a signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.signature = None;
        to_canonical_vec(&unsigned).expect("snapshot serialises")
    }

    /// Sign (replacing any signature).
    pub fn sign(&mut self, key: &SigningKey) {
        self.signature = None;
        let sig = key.sign(&self.signed_bytes());
        self.signature = Some(SnapshotSignature {
            public_key: hex::encode(key.verifying_key().as_bytes()),
            signature: hex::encode(sig.to_bytes()),
        });
    }

    /// Verify the signature, if any. `Ok(None)` if unsigned, `Ok(Some(public key hex))` if valid.
    pub fn verify_signature(&self) -> Result<Option<String>, String> {
        let Some(sig) = &self.signature else {
            return Ok(None);
        };
        let pk: [u8; 32] = hex::decode(&sig.public_key)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or("signature public key is not 32 hex bytes")?;
        let vk = VerifyingKey::from_bytes(&pk).map_err(|e| format!("bad public key: {e}"))?;
        let s: [u8; 64] = hex::decode(&sig.signature)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or("signature is not 64 hex bytes")?;
        let s = ed25519_dalek::Signature::from_bytes(&s);
        vk.verify(&self.signed_bytes(), &s)
            .map_err(|_| "signature does not match the snapshot (tampered?)".to_string())?;
        Ok(Some(sig.public_key.clone()))
    }

    /// Parsed `time`.
    pub fn datetime(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        chrono::DateTime::parse_from_rfc3339(&self.time)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    }

    /// A task by name.
    pub fn task(&self, name: &str) -> Option<&TaskRecord> {
        self.tasks.iter().find(|t| t.name == name)
    }
}

/// A signing key from 32 secret bytes in hex.
pub fn signing_key_from_hex(s: &str) -> Result<SigningKey, String> {
    let b: [u8; 32] = hex::decode(s.trim())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or("a signing key is 32 bytes in hex")?;
    Ok(SigningKey::from_bytes(&b))
}

/// A fresh random signing key.
pub fn generate_signing_key() -> SigningKey {
    SigningKey::from_bytes(&crate::id::random_bytes::<32>())
}

/// Format a time as the repository stores it.
pub fn format_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
