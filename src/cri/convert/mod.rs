//! Conversions between CRI messages and domain requests/records. Pure functions: they
//! validate and translate, and never touch the system.

pub mod container;
pub mod event;
pub mod metrics;
pub mod pod;
pub mod resources;
pub mod userns;
