//! The crate's one error type.

/// Everything that can go wrong in provisioning.
///
/// Each variant has a stable machine-readable [`Error::code`] that the HTTP
/// layer sends to clients and the attempt log records. Messages are
/// lowercase, without a trailing period, and never carry secret material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request body is not the JSON we expect.
    #[error("malformed request: {0}")]
    MalformedRequest(String),
    /// The request body exceeds the limit.
    #[error("request body exceeds {0} bytes")]
    BodyTooLarge(usize),
    /// The CSR could not be parsed (not PEM, not DER, not PKCS#10).
    #[error("malformed certificate signing request")]
    MalformedCsr,
    /// The CSR's self-signature does not verify.
    #[error("certificate signing request signature does not verify")]
    CsrSignature,
    /// The CSR's key is not an ECDSA P-256 key (RSA, another curve, wrong size).
    #[error("unsupported key: {0}")]
    UnsupportedKey(&'static str),
    /// The CSR requests an extension that we do not accept.
    #[error("certificate signing request asks for an unsupported extension")]
    CsrExtension,
    /// The X25519 identity key is not 32 bytes of hex.
    #[error("identity key must be 32 bytes, hex encoded")]
    IdentityKey,
    /// A field of the request is out of its allowed range.
    #[error("invalid field {field}: {reason}")]
    InvalidField {
        /// Name of the field.
        field: &'static str,
        /// Why it was refused.
        reason: &'static str,
    },
    /// No token with that id exists, or its secret does not match.
    #[error("unknown enrollment token")]
    UnknownToken,
    /// The token expired.
    #[error("enrollment token expired")]
    TokenExpired,
    /// The token has been used as often as it may.
    #[error("enrollment token used up")]
    TokenUsedUp,
    /// An admin revoked the token.
    #[error("enrollment token revoked")]
    TokenRevoked,
    /// The user is blocked.
    #[error("user is blocked")]
    UserBlocked,
    /// The user is not admitted by the token's binding or the allow-list.
    #[error("user is not allowed to enroll with this token")]
    UserNotAllowed,
    /// The presented certificate is not one of ours, or was tampered with.
    #[error("certificate was not issued by this organisation")]
    UnknownCertificate,
    /// The presented certificate is outside its validity period.
    #[error("certificate is expired or not yet valid")]
    CertificateExpired,
    /// The presented certificate is revoked.
    #[error("certificate is revoked")]
    CertificateRevoked,
    /// Proof of possession of the old key is missing or wrong.
    #[error("proof of possession of the current key does not verify")]
    ProofOfPossession,
    /// The thing named does not exist (token, device, user's devices, CRL).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Too many device requests at once; the client should retry later.
    #[error("too many requests in progress, retry later")]
    Busy,
    /// Too many requests from this client address; retry after the given
    /// number of seconds.
    #[error("too many requests from this address, retry in {retry_after_s} s")]
    RateLimited {
        /// Seconds until a retry may succeed.
        retry_after_s: u64,
    },
    /// The admin credential is missing or wrong.
    #[error("admin credential missing or wrong")]
    Unauthorized,
    /// The key-encryption key is missing or malformed.
    #[error("key-encryption key: {0}")]
    Kek(&'static str),
    /// A sealed CA key did not open (wrong key-encryption key or damaged file).
    #[error("sealed key {0} does not open: wrong key-encryption key or damaged file")]
    SealedKey(String),
    /// The root key is not in the data directory (kept offline).
    #[error("root key is offline: supply the sealed root key file")]
    RootKeyOffline,
    /// The PKI files in the data directory are inconsistent.
    #[error("pki data directory: {0}")]
    PkiState(String),
    /// File I/O failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Certificate or CRL generation failed.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// The store cannot be reached or written right now (database
    /// restarting, network cut, disk full); the client should retry.
    #[error("the store is unavailable, retry later")]
    Unavailable(String),
    /// The store failed.
    #[error("store error: {0}")]
    Store(String),
}

impl Error {
    /// The stable code of this error, as sent in API answers and recorded in
    /// the attempt log.
    pub fn code(&self) -> &'static str {
        match self {
            Error::MalformedRequest(_) => "malformed_request",
            Error::BodyTooLarge(_) => "body_too_large",
            Error::MalformedCsr => "malformed_csr",
            Error::CsrSignature => "csr_signature_invalid",
            Error::UnsupportedKey(_) => "unsupported_key",
            Error::CsrExtension => "csr_extension_unsupported",
            Error::IdentityKey => "invalid_identity_key",
            Error::InvalidField { .. } => "invalid_field",
            Error::UnknownToken => "token_unknown",
            Error::TokenExpired => "token_expired",
            Error::TokenUsedUp => "token_used_up",
            Error::TokenRevoked => "token_revoked",
            Error::UserBlocked => "user_blocked",
            Error::UserNotAllowed => "user_not_allowed",
            Error::UnknownCertificate => "certificate_unknown",
            Error::CertificateExpired => "certificate_expired",
            Error::CertificateRevoked => "certificate_revoked",
            Error::ProofOfPossession => "proof_of_possession_invalid",
            Error::NotFound(_) => "not_found",
            Error::Unauthorized => "unauthorized",
            Error::Busy => "busy",
            Error::RateLimited { .. } => "rate_limited",
            Error::Unavailable(_) => "unavailable",
            Error::Kek(_)
            | Error::SealedKey(_)
            | Error::RootKeyOffline
            | Error::PkiState(_)
            | Error::Io { .. }
            | Error::Rcgen(_)
            | Error::Store(_) => "internal",
        }
    }

    /// Whether the error is the client's fault (answered with a 4xx).
    pub fn is_client_error(&self) -> bool {
        !matches!(self.code(), "internal" | "unavailable")
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub(crate) fn store(e: impl std::fmt::Display) -> Self {
        Error::Store(e.to_string())
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
