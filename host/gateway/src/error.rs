//! Gateway errors. Messages never contain secrets, tokens or pre-authenticated URLs.

use std::time::Duration;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum GatewayError {
    /// The connection settings are unusable.
    #[error("Graph connection configuration: {0}")]
    Config(String),

    /// The token endpoint refused to issue a token (or could not be reached).
    #[error("{0}")]
    Auth(String),

    /// Graph refused a freshly issued token too.
    #[error(
        "{method} {target}: Graph refused the access token twice (401 {detail}); the app's \
         token is not accepted by this Graph endpoint"
    )]
    Unauthorized {
        method: String,
        target: String,
        detail: String,
    },

    /// The retry budget ran out.
    #[error(
        "{method} {target}: gave up after {attempts} attempt(s) and {waited:.1?} waiting ({why}); \
         last outcome: {last}"
    )]
    RetriesExhausted {
        method: String,
        target: String,
        attempts: u32,
        waited: Duration,
        why: String,
        last: String,
    },

    /// A failure that is not retried (e.g. a connection reset during a non-idempotent request).
    #[error("{method} {target}: {message}")]
    Transport {
        method: String,
        target: String,
        message: String,
    },

    /// The request is not for this connection's Graph host, or is malformed.
    #[error("{0}")]
    Request(String),

    /// A `$batch` call failed as a whole.
    #[error("$batch: {0}")]
    Batch(String),

    /// Internal failure of the gateway's runtime.
    #[error("Graph gateway runtime: {0}")]
    Runtime(String),
}
