//! The agent's one error type.

/// Everything the agent refuses or fails at. Messages name the problem and
/// never carry message content, PINs or keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The managed configuration is missing, malformed or incomplete.
    #[error("managed configuration: {0}")]
    Config(String),
    /// The PIN does not satisfy the PIN policy.
    #[error("the PIN does not satisfy the policy: {0}")]
    PinPolicy(String),
    /// A wrong PIN; `left` more tries before the store is wiped.
    #[error("wrong PIN; after {left} more wrong attempt(s) this device's data is wiped")]
    WrongPin {
        /// Attempts left.
        left: u32,
    },
    /// The store was wiped (by policy, command or the user).
    #[error("this device's Kontor data was wiped; enroll again")]
    Wiped,
    /// There is no enrolled store in the data directory.
    #[error("not enrolled: no Kontor data in {0}")]
    NotEnrolled(String),
    /// The directory already holds an enrolled store.
    #[error("already enrolled in {0}")]
    AlreadyEnrolled(String),
    /// The local store is corrupt or was altered.
    #[error("local store corrupt: {0}")]
    Corrupt(String),
    /// The server refused a request (its error code and message).
    #[error("server refused: {code}: {message}")]
    Refused {
        /// The server's stable error code.
        code: String,
        /// Its message.
        message: String,
    },
    /// The server cannot be reached or the TLS handshake failed.
    #[error("cannot reach the server: {0}")]
    Unreachable(String),
    /// A policy forbids the action.
    #[error("forbidden by policy `{policy}`: {what}")]
    Policy {
        /// The policy key.
        policy: &'static str,
        /// What was refused.
        what: String,
    },
    /// A received message failed authentication or is a replay (dropped).
    #[error("message dropped: {0}")]
    Dropped(String),
    /// An archive export could not be made, or an archive part not opened.
    #[error("archive: {0}")]
    Archive(String),
    /// A local file could not be read or written.
    #[error("{path}: {detail}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
}

/// Result with the agent's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: &std::path::Path, e: impl std::fmt::Display) -> Self {
        Error::Io {
            path: path.display().to_string(),
            detail: e.to_string(),
        }
    }

    pub(crate) fn db(e: rusqlite::Error) -> Self {
        Error::Corrupt(e.to_string())
    }
}
