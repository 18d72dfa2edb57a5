//! The crate's one error type.

/// Everything that can go wrong in protocol v1.
///
/// Messages are lowercase and never contain key material or plaintext. The
/// opening and key-file variants map one to one onto the step names of
/// protocol.md that the test vectors use ([`Error::step`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Opening step `version`: the first byte is not protocol version 1.
    #[error("sealed message has version {0:#04x}, this reader supports only 0x01")]
    Version(u8),
    /// Opening step `length`: the message is too short, its length field
    /// disagrees with the bytes that follow, or the body is too small.
    #[error("sealed message is malformed: {0}")]
    Length(&'static str),
    /// Opening step `recipient`: the message is addressed to another key or device.
    #[error("sealed message is addressed to another device")]
    Recipient,
    /// Opening step `sender_key`: the sender's identity key is not the one
    /// expected for the sender's device.
    #[error("sender identity key does not match the key expected for the sender device")]
    SenderKey,
    /// Opening step `low_order`: a Diffie-Hellman output is all zeros.
    #[error("a key agreement gave the all-zero output (low-order public key)")]
    LowOrder,
    /// Opening step `wrap_mac`: the wrap's MAC does not verify.
    #[error("wrap authentication failed")]
    WrapMac,
    /// Opening step `wrap_padding`: the authenticated wrap does not decrypt
    /// to exactly a content key and a body hash.
    #[error("wrap decrypts to an invalid content key block")]
    WrapPadding,
    /// Opening step `body_hash`: the body is not the one the wrap names.
    #[error("body does not match the hash in the wrap")]
    BodyHash,
    /// Opening step `body_mac`: the body's MAC does not verify.
    #[error("body authentication failed")]
    BodyMac,
    /// Opening step `body_padding`: the authenticated body has invalid padding.
    #[error("body decrypts with invalid padding")]
    BodyPadding,
    /// Sealing was asked for no recipient, or for more than the protocol limit.
    #[error("a message needs between 1 and {max} recipient devices, got {got}")]
    RecipientCount {
        /// How many recipients were given.
        got: usize,
        /// The most one message may carry.
        max: usize,
    },
    /// The plaintext does not fit the 32-bit length field.
    #[error("plaintext of {0} bytes is too large for one message")]
    TooLarge(usize),
    /// Store key file step `format`: bad magic, length, parameters or padding.
    #[error("store key file is malformed: {0}")]
    KeyFileFormat(&'static str),
    /// Store key file step `version`: an unknown key file version.
    #[error("store key file has version {0:#04x}, this reader supports only 0x01")]
    KeyFileVersion(u8),
    /// Store key file step `pin`: the PIN is wrong (or the file was altered).
    #[error("wrong PIN or altered key file")]
    Pin,
    /// The key file's scrypt cost is below what the product accepts.
    #[error("store key file uses scrypt log2(N) = {got}, below the minimum {min}")]
    WeakKeyFile {
        /// The file's log2(N).
        got: u8,
        /// The smallest log2(N) accepted.
        min: u8,
    },
    /// A stored record is malformed or fails authentication for its table and row.
    #[error("stored record failed authentication")]
    Record,
    /// An attachment is malformed or fails authentication.
    #[error("attachment failed authentication: {0}")]
    Blob(&'static str),
    /// A test-vector file is not valid JSON of a known vector format.
    #[error("vector file: {0}")]
    VectorFile(String),
    /// A hex or length error in a key or id given by the caller.
    #[error("invalid {what}: {why}")]
    Invalid {
        /// What was being parsed.
        what: &'static str,
        /// Why it was refused.
        why: &'static str,
    },
}

impl Error {
    /// The step name protocol.md gives this error (`wrap_mac`, `pin`, ...),
    /// as the test vectors spell it.
    pub fn step(&self) -> &'static str {
        match self {
            Error::Version(_) => "version",
            Error::Length(_) => "length",
            Error::Recipient => "recipient",
            Error::SenderKey => "sender_key",
            Error::LowOrder => "low_order",
            Error::WrapMac => "wrap_mac",
            Error::WrapPadding => "wrap_padding",
            Error::BodyHash => "body_hash",
            Error::BodyMac => "body_mac",
            Error::BodyPadding => "body_padding",
            Error::RecipientCount { .. } => "recipient_count",
            Error::TooLarge(_) => "too_large",
            Error::KeyFileFormat(_) => "format",
            Error::KeyFileVersion(_) => "version",
            Error::Pin => "pin",
            Error::WeakKeyFile { .. } => "weak_key_file",
            Error::Record => "record",
            Error::Blob(_) => "blob",
            Error::VectorFile(_) => "vector_file",
            Error::Invalid { .. } => "invalid",
        }
    }
}
