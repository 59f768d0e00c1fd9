//! Integration tests, one binary for the crate (each test binary links the whole host, so
//! one link instead of one per file keeps CI's build time and disk use down).

mod common;

mod basics;
mod crash;
mod journals;
mod maintenance;
mod mime_chunking;
mod prefix_tombstones;
