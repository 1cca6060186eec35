//! Images: pulling, verifying, storing, listing and removing them.
//!
//! `reference` parses image names, `registry` talks to registries, `digest` hashes and
//! verifies, `unpack` extracts layers safely into directories that `snapshot` owns.

pub mod digest;
