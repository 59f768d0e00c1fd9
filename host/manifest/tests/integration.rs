//! Integration tests, one binary for the crate (each test binary links the whole host, so
//! one link instead of one per file keeps CI's build time and disk use down).

mod common;

mod errors;
mod plugin_config;
mod robustness;
mod secrets;
mod valid;
