//! Integration tests, one binary for the crate (each test binary links the whole host, so
//! one link instead of one per file keeps CI's build time and disk use down).

mod common;

mod auth;
mod auth_contexts;
mod control;
mod delta;
mod drive_upload;
mod limits;
mod links;
mod m365;
mod mail_restore;
mod mail_upload;
mod pim;
mod policy_writes;
mod query;
mod restore_paths;
mod samples;
mod writes;
