//! Images: pulling, verifying, storing, listing and removing them.
//!
//! `digest` hashes and verifies, `manifest` parses the image documents and `content` keeps
//! them. Registry access, unpacking and the image RPCs build on these.

pub mod content;
pub mod digest;
pub mod manifest;
