//! The administration's one error type, and its HTTP form.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Everything the administration refuses or fails at. Messages are
/// lowercase, name the problem, and never carry secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Input that is malformed or out of range.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// No or bad credentials, or an expired session.
    #[error("not signed in: {0}")]
    Unauthenticated(&'static str),
    /// Signed in, but the role does not allow it.
    #[error("your role does not allow this ({0})")]
    Forbidden(&'static str),
    /// A state change without the session's CSRF token.
    #[error("missing or wrong CSRF token (send the X-CSRF-Token header your session was given)")]
    Csrf,
    /// The body's content type is not the one the endpoint takes (this
    /// also refuses cross-site form posts).
    #[error("content type must be {0}")]
    UnsupportedMediaType(&'static str),
    /// Too many sign-in attempts.
    #[error("too many sign-in attempts, retry in {retry_after_s} s")]
    RateLimited {
        /// Seconds until the next attempt is accepted.
        retry_after_s: u64,
    },
    /// Something that does not exist in the caller's organisation.
    #[error("{0} not found")]
    NotFound(String),
    /// The request conflicts with the current state.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database failed.
    #[error("storage failed: {0}")]
    Store(String),
    /// The relay refused or failed.
    #[error(transparent)]
    Relay(#[from] kontor_relay::Error),
    /// Provisioning refused or failed.
    #[error(transparent)]
    Provisioning(#[from] kontor_provisioning::Error),
    /// The audit trail could not be written: nothing was done.
    #[error("audit trail not written, action not taken: {0}")]
    Audit(String),
}

/// Shorthand.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Store(e.to_string())
    }
}

impl From<crate::audit::Error> for Error {
    fn from(e: crate::audit::Error) -> Self {
        Error::Audit(e.to_string())
    }
}

impl Error {
    /// A short machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "invalid",
            Error::Unauthenticated(_) => "unauthenticated",
            Error::Forbidden(_) => "forbidden",
            Error::Csrf => "csrf",
            Error::UnsupportedMediaType(_) => "content_type",
            Error::RateLimited { .. } => "rate_limited",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::Store(_) | Error::Audit(_) => "internal",
            Error::Relay(_) => "relay",
            Error::Provisioning(_) => "provisioning",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Invalid(_) => StatusCode::BAD_REQUEST,
            Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) | Error::Csrf => StatusCode::FORBIDDEN,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Store(_) | Error::Audit(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::Relay(e) => e.status(),
            Error::Provisioning(e) if e.code() == "not_found" => StatusCode::NOT_FOUND,
            Error::Provisioning(e) if e.is_client_error() => StatusCode::BAD_REQUEST,
            Error::Provisioning(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "admin request failed");
        }
        let mut response = (
            status,
            Json(serde_json::json!({ "error": self.code(), "message": self.to_string() })),
        )
            .into_response();
        if let Error::RateLimited { retry_after_s } = self
            && let Ok(v) = axum::http::HeaderValue::from_str(&retry_after_s.to_string())
        {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        response
    }
}
