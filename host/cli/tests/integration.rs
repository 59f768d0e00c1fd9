//! Integration tests, one binary for the crate (each test binary links the whole host, so
//! one link instead of one per file keeps CI's build time and disk use down).

mod support;

mod backup_cli;
mod demo_cli;
mod init_cli;
mod links_cli;
mod m365_cli;
mod mail_large_cli;
mod maintenance_cli;
mod object_lock_cli;
mod plugins_cli;
mod restore_cli;
mod resume_cli;
mod sim_cli;
mod validate_cli;
