//! The Cairn repository format (see docs/repository.md).
