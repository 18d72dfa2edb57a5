//! Kontor administration: what the organisation buys, control.
//!
//! Admin accounts and roles, the user directory with departments and
//! barriers, restrictions resolved to one policy per device, filters and
//! bulk operations, broadcast, the hash-chained audit trail, archives and
//! remote wipe, behind an HTTPS JSON API (no client certificates).
//!
//! # Layout
//! - [`audit`]: the append-only, hash-chained audit trail (pure chain
//!   rules, a SQLite shell), its verification and its exports.
//! - [`erasure`]: the [`erasure::UserEraser`] other components register so
//!   that removing a user erases their rows too.

pub mod audit;
pub mod auth;
pub mod directory;
pub mod erasure;
pub mod error;
pub mod http;
pub mod policy;
pub mod role;
pub mod service;
pub mod store;

pub use error::{Error, Result};
