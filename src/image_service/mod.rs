//! Images: pulling, verifying, storing, listing and removing them.
//!
//! `reference` parses image names, `registry` talks to registries, `digest` hashes and
//! verifies, `manifest` parses image documents and `content` keeps them.

pub mod content;
pub mod digest;
pub mod manifest;
pub mod reference;
pub mod registry;
pub mod unpack;
