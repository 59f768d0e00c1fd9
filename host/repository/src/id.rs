//! Object and blob identifiers: keyed BLAKE3 hashes of plaintext.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 32-byte identifier: the keyed BLAKE3 hash (under the repository's id key) of some plaintext.
///
/// Blobs (item bodies, chunks, tree nodes) and stored objects (packs, index files, snapshots, …)
/// are both named this way. Printed and serialised as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(pub [u8; 32]);

impl Id {
    /// Lower-case hex form (64 characters).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex digits, for messages.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }

    /// Parse 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Id, IdParseError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| IdParseError(s.to_string()))?;
        Ok(Id(out))
    }
}

/// A string that is not 64 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("not an object id (64 hex digits): {0:?}")]
pub struct IdParseError(pub String);

impl FromStr for Id {
    type Err = IdParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Id::from_hex(s)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Id::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// The repository's secret id key: the key of the keyed hash that names every blob and object.
///
/// Created at `init`; kept in the repository under `keys/` (which the sink encrypts to the
/// recipients) and in the writer's key file. Knowing it lets a writer compute ids (dedup);
/// not knowing it, an observer of the store cannot confirm guesses about content.
#[derive(Clone, PartialEq, Eq)]
pub struct IdKey([u8; 32]);

impl fmt::Debug for IdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdKey(…)")
    }
}

impl IdKey {
    /// A fresh random key from the operating system's generator.
    pub fn generate() -> IdKey {
        IdKey(random_bytes())
    }

    /// Use the given 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> IdKey {
        IdKey(bytes)
    }

    /// Parse 64 hex digits.
    pub fn from_hex(s: &str) -> Result<IdKey, IdParseError> {
        Id::from_hex(s.trim()).map(|id| IdKey(id.0))
    }

    /// 64 hex digits. This is a secret.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The keyed hash of `data`.
    pub fn hash(&self, data: &[u8]) -> Id {
        Id(*blake3::keyed_hash(&self.0, data).as_bytes())
    }

    /// A value stored in the config that shows whether a given key is this repository's key
    /// without revealing it.
    pub fn check_value(&self) -> Id {
        self.hash(b"cairn-repository id-key check v1")
    }

    /// A secret seed for the content-defined chunker (so chunk boundaries can't be predicted
    /// from known content).
    pub fn chunker_seed(&self) -> u64 {
        let h = self.hash(b"cairn-repository chunker seed v1");
        u64::from_le_bytes(h.0[..8].try_into().expect("8 bytes"))
    }

    /// A 32-bit hash used to place content-defined boundaries between tree nodes.
    pub(crate) fn boundary_hash(&self, level: u32, kind: &str, id: &str) -> u32 {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(b"tree-boundary");
        h.update(&level.to_le_bytes());
        h.update(kind.as_bytes());
        h.update(&[0]);
        h.update(id.as_bytes());
        let out = h.finalize();
        u32::from_le_bytes(out.as_bytes()[..4].try_into().expect("4 bytes"))
    }
}

pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).expect("the operating system's random generator failed");
    out
}

/// A random 128-bit identifier in hex (repository ids, run ids).
pub(crate) fn random_hex16() -> String {
    hex::encode(random_bytes::<16>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_keyed() {
        let k = IdKey::from_bytes([7; 32]);
        let a = k.hash(b"hello");
        assert_eq!(Id::from_hex(&a.to_hex()).unwrap(), a);
        let k2 = IdKey::from_bytes([8; 32]);
        assert_ne!(
            k2.hash(b"hello"),
            a,
            "a different key names content differently"
        );
        assert!(Id::from_hex("zz").is_err());
        assert_eq!(IdKey::from_hex(&k.to_hex()).unwrap(), k);
    }
}
