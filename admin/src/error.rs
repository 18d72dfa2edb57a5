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
    /// The database cannot take the write right now (its disk is full):
    /// nothing was done, the client should retry later.
    #[error("the store is unavailable, retry later")]
    Unavailable(String),
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
        // A full disk is the operator's to fix and the client's to retry,
        // not an internal fault (SQLite rolled the statement back).
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
            return Error::Unavailable(e.to_string());
        }
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
            Error::Unavailable(_) => "unavailable",
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
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Relay(e) => e.status(),
            Error::Provisioning(e) if e.code() == "not_found" => StatusCode::NOT_FOUND,
            Error::Provisioning(e) if e.is_client_error() => StatusCode::BAD_REQUEST,
            Error::Provisioning(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl Error {
    /// The message a client may see. A refusal names its problem; a
    /// failure of ours (5xx) says only what the caller should know (retry,
    /// nothing was done), since its detail (SQL, paths, the peer's error)
    /// is for the log, not for the client.
    pub fn public_message(&self) -> String {
        if !self.status().is_server_error() {
            return self.to_string();
        }
        match self {
            // Their text carries no detail (that stays in the variant).
            Error::Relay(
                e @ (kontor_relay::Error::Unavailable(_) | kontor_relay::Error::StorageFull(_)),
            ) => e.to_string(),
            Error::Provisioning(e @ kontor_provisioning::Error::Unavailable(_)) => e.to_string(),
            // Its text carries no detail either.
            Error::Unavailable(_) => self.to_string(),
            Error::Audit(_) => "audit trail not written, action not taken".to_owned(),
            _ => "internal error".to_owned(),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            // Debug: the variants' detail, which their Display leaves out.
            tracing::error!(error = ?self, "admin request failed");
        }
        let mut response = (
            status,
            Json(serde_json::json!({ "error": self.code(), "message": self.public_message() })),
        )
            .into_response();
        let retry_after_s = match self {
            Error::RateLimited { retry_after_s } => Some(retry_after_s),
            // A full disk is not freed in a second.
            Error::Unavailable(_) => Some(30),
            _ => None,
        };
        if let Some(retry_after_s) = retry_after_s
            && let Ok(v) = axum::http::HeaderValue::from_str(&retry_after_s.to_string())
        {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON body of `e` as the API answers it.
    async fn answered(e: Error) -> (StatusCode, serde_json::Value) {
        let response = e.into_response();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn a_failure_of_ours_names_no_internal_detail_to_the_client() {
        let secret_detail = "no such table: users (/var/lib/kontor/admin.sqlite)";
        for (e, expected) in [
            (Error::Store(secret_detail.into()), "internal error"),
            (
                Error::Audit(secret_detail.into()),
                "audit trail not written, action not taken",
            ),
            (
                Error::Relay(kontor_relay::Error::Unavailable(secret_detail.into())),
                "the store is unavailable, retry later",
            ),
            (
                Error::Relay(kontor_relay::Error::Store(secret_detail.into())),
                "internal error",
            ),
            (
                Error::Provisioning(kontor_provisioning::Error::Unavailable(
                    secret_detail.into(),
                )),
                "the store is unavailable, retry later",
            ),
            (
                Error::Unavailable(secret_detail.into()),
                "the store is unavailable, retry later",
            ),
        ] {
            let code = e.code();
            let (status, body) = answered(e).await;
            assert!(status.is_server_error(), "{status}");
            assert_eq!(body["error"], code);
            assert_eq!(body["message"], expected);
            assert!(!body.to_string().contains("no such table"), "{body}");
        }
    }

    #[tokio::test]
    async fn a_refusal_names_its_problem() {
        let (status, body) = answered(Error::Invalid("department \"x\" is unknown".into())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body["message"],
            "invalid request: department \"x\" is unknown"
        );
    }

    #[tokio::test]
    async fn a_full_disk_is_a_503_to_retry_not_an_internal_fault() {
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            Some("database or disk is full".into()),
        );
        let e = Error::from(full);
        assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
        let response = e.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "30");
        let other = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            None,
        );
        assert!(matches!(Error::from(other), Error::Store(_)));
    }
}
