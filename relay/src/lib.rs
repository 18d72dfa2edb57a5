//! Kontor relay: the messaging backend. It stores and forwards sealed
//! messages between enrolled devices without being able to read one.
//!
//! A sender posts one envelope (the body once, a header and wrap per
//! recipient device, protocol.md); the relay checks that the sender may
//! reach every recipient, stores the body once and a queue entry per device
//! in one transaction, and only then answers 2xx. Devices receive live over
//! WebSocket or fetch what waited, and acknowledge.
//!
//! # Layout
//! - [`wire`]: the device API's binary formats (pure).
//! - [`store`]: storage traits cut by capability, with SQLite and
//!   PostgreSQL implementations and one migrations folder per backend.
//! - [`error`]: the one [`Error`], which is also the HTTP error answer.

pub mod error;
pub mod store;
pub mod wire;

pub use error::{Error, Result};
