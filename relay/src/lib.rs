//! Kontor relay: the messaging backend. It stores and forwards sealed
//! messages between enrolled devices without being able to read one.
//!
//! A sender posts one envelope (the body once, a header and wrap per
//! recipient device, protocol.md); the relay checks that the sender may
//! reach every recipient, hands the message to the recipient devices live
//! on this node, stores the body once and a queue entry for every device
//! that did not acknowledge it in time, in one transaction, and only then
//! answers 2xx. Devices receive live over WebSocket or fetch what waited,
//! and acknowledge.
//!
//! # Layout
//! - [`wire`]: the device API's binary formats (pure).
//! - [`store`]: storage traits cut by capability, with SQLite and
//!   PostgreSQL implementations and one migrations folder per backend.
//! - [`tls`]: the device listener's mutual TLS, with the deny list checked
//!   at every handshake.
//! - [`service`]: the core of every device request, behind HTTP and TLS.
//! - [`http`]: `router(relay)` and `serve_tls`, the device API and its
//!   WebSocket.
//! - [`client`]: a device's TLS client for the relay and enrollment APIs.
//! - [`push`]: content-free push hints through APNs and FCM.
//! - [`bus`]: hints between nodes (in-process, or NATS).
//! - [`handoff`]: a message for a device live on this node goes straight
//!   to its connection, and is stored only if not acknowledged in time.
//! - [`error`]: the one [`Error`], which is also the HTTP error answer.

pub mod bus;
pub mod client;
pub mod error;
pub mod handoff;
pub mod http;
pub mod push;
pub mod service;
pub mod store;
pub mod tls;
pub mod wire;

pub use error::{Error, Result};
