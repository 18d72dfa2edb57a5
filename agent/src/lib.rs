//! Kontor agent: what an employee's phone runs, as a library a mobile app
//! embeds and as `kontor agent` here.
//!
//! Enrollment needs no user action but choosing a PIN: the agent reads the
//! managed configuration the EMM pushed, makes its X25519 identity key and
//! its P-256 TLS key, enrolls with the token and keeps everything in a
//! store encrypted under a key wrapped by scrypt(PIN). Messages are sealed
//! for every device of the recipient and the sender's own other devices,
//! opened only after every check of protocol v1, filed under the
//! conversation named inside them, and acknowledged only once stored.
//!
//! # Layout
//! - [`agent`]: [`Agent`]: enroll, open, send, receive, commands, wipe.
//! - [`command`]: the commands the relay queues (wipe, policy, broadcast,
//!   archive), parsed and checked; their payloads and receipts.
//! - [`archive`]: archive export documents (range, format, parts) and
//!   opening a part with the archive key.
//! - [`store`]: the PIN-protected local store.
//! - [`error`]: the one [`Error`].

pub mod agent;
pub mod archive;
pub mod command;
pub mod error;
pub mod store;

pub use agent::{Agent, EnrollOptions};
pub use error::{Error, Result};
