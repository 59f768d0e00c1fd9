//! Integration tests, one binary for the crate (each test binary links the whole host, so
//! one link instead of one per file keeps CI's build time and disk use down).

mod links;
mod mail;
mod mail_content;
mod mail_large;
