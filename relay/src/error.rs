//! The relay's one error type, and its HTTP form.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Everything the relay refuses or fails at. Messages are lowercase, name
/// the problem, and never carry message content or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A posted envelope is malformed.
    #[error("malformed envelope: {0}")]
    BadEnvelope(&'static str),
    /// A request body other than an envelope is malformed.
    #[error("malformed request: {0}")]
    BadRequest(String),
    /// Something is larger than its limit.
    #[error("{what} larger than the limit of {max} bytes")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// Too many of something in one request.
    #[error("more {what} than the limit of {max}")]
    TooMany {
        /// What there were too many of.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// The request's content type is not the one the endpoint takes.
    #[error("content type must be {0}")]
    ContentType(&'static str),
    /// The envelope claims another sender than the authenticated device.
    #[error("the envelope names another sender device or key than this device's")]
    SenderMismatch,
    /// A recipient device is unknown, revoked or wiped.
    #[error("unknown recipient device {0}")]
    UnknownRecipient(String),
    /// A recipient's identity key is not the directory's.
    #[error("recipient device {0} has another identity key")]
    StaleRecipientKey(String),
    /// The sender may not reach a recipient (blocked, or an organisation rule).
    #[error("not allowed to reach {0}")]
    Forbidden(String),
    /// The same message id was used before for another message.
    #[error("message id already used for another message")]
    Replay,
    /// A group, blob or command does not exist or is not visible to the caller.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A recipient's queue is full.
    #[error("the queue of device {0} is full")]
    QueueFull(String),
    /// Too many requests from this device.
    #[error("too many requests, retry in {retry_after_s} s")]
    RateLimited {
        /// Seconds until a retry may succeed.
        retry_after_s: u64,
    },
    /// The device is not (or no longer) allowed to use the relay.
    #[error("device not allowed: {0}")]
    DeviceRefused(&'static str),
    /// The store cannot be reached right now (database restarting, network
    /// cut, pool exhausted): nothing was stored, the client should retry.
    #[error("the store is unavailable, retry later")]
    Unavailable(String),
    /// The store's disk is full: nothing was stored, the client should
    /// retry later.
    #[error("the server's storage is full, retry later")]
    StorageFull(String),
    /// Too many live connections (WebSockets) for this device or this node.
    #[error("too many live connections, retry in {retry_after_s} s")]
    TooManyConnections {
        /// Seconds until a retry may succeed.
        retry_after_s: u64,
    },
    /// The store failed (details in the log only).
    #[error("store error: {0}")]
    Store(String),
    /// The message bus failed (a hint may be late; nothing is lost).
    #[error("bus error: {0}")]
    Bus(String),
    /// A push service refused or could not be reached (logged; never fatal).
    #[error("push: {0}")]
    Push(String),
    /// A configuration or start-up problem.
    #[error("configuration: {0}")]
    Config(String),
    /// TLS set-up failed.
    #[error("tls: {0}")]
    Tls(String),
}

/// Result with the relay's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The stable code clients may match on.
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadEnvelope(_) => "bad_envelope",
            Error::BadRequest(_) => "bad_request",
            Error::TooLarge { .. } => "too_large",
            Error::TooMany { .. } => "too_many",
            Error::ContentType(_) => "content_type",
            Error::SenderMismatch => "sender_mismatch",
            Error::UnknownRecipient(_) => "unknown_recipient",
            Error::StaleRecipientKey(_) => "stale_recipient_key",
            Error::Forbidden(_) => "forbidden",
            Error::Replay => "replay",
            Error::NotFound(_) => "not_found",
            Error::QueueFull(_) => "queue_full",
            Error::RateLimited { .. } => "rate_limited",
            Error::DeviceRefused(_) => "device_refused",
            Error::Unavailable(_) => "unavailable",
            Error::StorageFull(_) => "storage_full",
            Error::TooManyConnections { .. } => "too_many_connections",
            Error::Store(_) | Error::Bus(_) | Error::Push(_) | Error::Config(_) | Error::Tls(_) => {
                "internal"
            }
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadEnvelope(_) | Error::BadRequest(_) | Error::TooMany { .. } => {
                StatusCode::BAD_REQUEST
            }
            Error::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::ContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::SenderMismatch | Error::Forbidden(_) | Error::DeviceRefused(_) => {
                StatusCode::FORBIDDEN
            }
            Error::UnknownRecipient(_) | Error::StaleRecipientKey(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Error::Replay => StatusCode::CONFLICT,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::QueueFull(_) => StatusCode::INSUFFICIENT_STORAGE,
            Error::RateLimited { .. } | Error::TooManyConnections { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::StorageFull(_) => StatusCode::INSUFFICIENT_STORAGE,
            Error::Store(_) | Error::Bus(_) | Error::Push(_) | Error::Config(_) | Error::Tls(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = if let Error::Unavailable(detail) | Error::StorageFull(detail) = &self {
            // Expected while a database restarts or a disk is full: the
            // detail goes to the log, the client learns only to retry.
            tracing::warn!(error = %detail, code = self.code(), "request refused");
            self.to_string()
        } else if status.is_server_error() {
            // The detail goes to the log, never to the client.
            tracing::error!(error = %self, "request failed");
            "internal error".to_owned()
        } else {
            self.to_string()
        };
        let body = serde_json::json!({ "error": { "code": self.code(), "message": message } });
        let mut response = (status, Json(body)).into_response();
        let retry_after_s = match self {
            Error::RateLimited { retry_after_s } | Error::TooManyConnections { retry_after_s } => {
                Some(retry_after_s)
            }
            Error::Unavailable(_) => Some(1),
            Error::StorageFull(_) => Some(30),
            _ => None,
        };
        if let Some(retry_after_s) = retry_after_s
            && let Ok(value) = HeaderValue::from_str(&retry_after_s.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}
