//! The HTTP shell: `router(state)` builds the axum [`Router`], [`serve`]
//! runs it on a listener. Handlers read the clock and the body, call the
//! [`Service`], and map errors through the one [`ApiError`].
//!
//! Routes:
//!
//! - `POST /v1/enroll`, `POST /v1/renew`: devices (token or certificate).
//! - `GET /pki/crl.der` (current issuing CA), `GET /pki/crl/{n}.der`
//!   (generation `n`), `GET /pki/root.pem`: public.
//! - `/v1/admin/...`: tokens and revocation, behind a bearer API key until
//!   the administration component owns them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Extension, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::error::Error;
use crate::limit::RateLimiter;
use crate::service::{EnrollRequest, Possession, RenewRequest, Service};
use crate::store::{AttemptKind, Store, TokenBinding};
use crate::token::TokenSpec;
use crate::types::DeviceId;

/// Largest request body, in bytes. An enrollment is about 1 KiB.
pub const BODY_SIZE_BYTES_MAX: usize = 16 * 1024;

/// Most enrollments and renewals in progress at once; more are answered
/// `503 busy` at once (and not recorded: under overload we write nothing).
pub const DEVICE_REQUESTS_CONCURRENT_MAX: usize = 64;

/// Enrollments and renewals a client address may start per second,
/// sustained, by default ([`AppState::with_address_limit`]).
pub const DEVICE_REQUESTS_PER_ADDRESS_PER_S: f64 = 2.0;
/// ... and at once.
pub const DEVICE_REQUESTS_PER_ADDRESS_BURST: u32 = 60;

/// What the router shares between requests.
pub struct AppState<S> {
    /// The service.
    pub service: Arc<Service<S>>,
    /// SHA-256 of the admin API key; admin routes refuse everything when unset.
    admin_key_hash: Option<[u8; 32]>,
    /// Public base URL of this service, put into token QR codes.
    public_base_url: String,
    /// Bounds the device requests in progress.
    device_permits: Arc<tokio::sync::Semaphore>,
    /// Bounds the device requests per client address.
    per_address: Arc<RateLimiter<IpAddr>>,
}

impl<S> Clone for AppState<S> {
    fn clone(&self) -> Self {
        AppState {
            service: self.service.clone(),
            admin_key_hash: self.admin_key_hash,
            public_base_url: self.public_base_url.clone(),
            device_permits: self.device_permits.clone(),
            per_address: self.per_address.clone(),
        }
    }
}

impl<S> AppState<S> {
    /// State for the router. `admin_api_key`: the bearer key for the admin
    /// routes (only its hash is kept); `None` disables them.
    pub fn new(
        service: Arc<Service<S>>,
        admin_api_key: Option<&str>,
        public_base_url: impl Into<String>,
    ) -> Self {
        AppState {
            service,
            admin_key_hash: admin_api_key.map(|k| Sha256::digest(k.as_bytes()).into()),
            public_base_url: public_base_url.into(),
            device_permits: Arc::new(tokio::sync::Semaphore::new(DEVICE_REQUESTS_CONCURRENT_MAX)),
            per_address: Arc::new(RateLimiter::new(
                DEVICE_REQUESTS_PER_ADDRESS_PER_S,
                DEVICE_REQUESTS_PER_ADDRESS_BURST,
            )),
        }
    }

    /// Allows each client address `per_s` enrollments and renewals a
    /// second, `burst` at once; more are answered `429 rate_limited` with
    /// `Retry-After` (and not recorded). Many devices behind one NAT share
    /// an address: size `burst` for the largest roll-out wave.
    pub fn with_address_limit(mut self, per_s: f64, burst: u32) -> Self {
        self.per_address = Arc::new(RateLimiter::new(per_s, burst));
        self
    }

    /// The per-address check and the concurrency permit every device
    /// request takes before anything is read or recorded.
    fn admit(
        &self,
        peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, Error> {
        if let Some(Extension(ConnectInfo(address))) = peer {
            self.per_address
                .check(&address.ip(), std::time::Instant::now())
                .map_err(|retry_after_s| Error::RateLimited { retry_after_s })?;
        }
        self.device_permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::Busy)
    }
}

/// Builds the router.
pub fn router<S: Store>(state: AppState<S>) -> Router {
    Router::new()
        .route("/v1/enroll", post(enroll::<S>))
        .route("/v1/renew", post(renew::<S>))
        .route("/pki/crl.der", get(crl_current::<S>))
        .route("/pki/crl/{file}", get(crl_generation::<S>))
        .route("/pki/root.pem", get(root_pem::<S>))
        .route(
            "/v1/admin/tokens",
            post(create_token::<S>).get(list_tokens::<S>),
        )
        .route("/v1/admin/tokens/{id}/revoke", post(revoke_token::<S>))
        .route("/v1/admin/revocations", post(revoke::<S>))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// An error answer: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl ApiError {
    /// The HTTP status for the error's code.
    pub fn status(&self) -> StatusCode {
        match self.0.code() {
            "body_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
            "busy" | "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            "rate_limited" => StatusCode::TOO_MANY_REQUESTS,
            "token_unknown"
            | "unauthorized"
            | "certificate_unknown"
            | "proof_of_possession_invalid" => StatusCode::UNAUTHORIZED,
            "token_expired"
            | "token_used_up"
            | "token_revoked"
            | "user_blocked"
            | "user_not_allowed"
            | "certificate_expired"
            | "certificate_revoked" => StatusCode::FORBIDDEN,
            "not_found" => StatusCode::NOT_FOUND,
            "internal" => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = if self.0.is_client_error() {
            self.0.to_string()
        } else if let Error::Unavailable(detail) = &self.0 {
            tracing::warn!(error = %detail, "request refused: store unavailable");
            self.0.to_string()
        } else {
            // The detail goes to the log, never to the client.
            tracing::error!(error = %self.0, "internal error");
            "internal error".to_owned()
        };
        let body = serde_json::json!({ "error": { "code": self.0.code(), "message": message } });
        let mut response = (status, axum::Json(body)).into_response();
        let retry_after_s = match self.0 {
            Error::RateLimited { retry_after_s } => Some(retry_after_s),
            Error::Busy | Error::Unavailable(_) => Some(1),
            _ => None,
        };
        if let Some(value) =
            retry_after_s.and_then(|s| axum::http::HeaderValue::from_str(&s.to_string()).ok())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

async fn read_body(body: Body) -> Result<Bytes, Error> {
    axum::body::to_bytes(body, BODY_SIZE_BYTES_MAX)
        .await
        .map_err(|_| Error::BodyTooLarge(BODY_SIZE_BYTES_MAX))
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::MalformedRequest(json_error_text(&e)))
}

fn json_error_text(e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Io | serde_json::error::Category::Eof => {
            "truncated json".to_owned()
        }
        serde_json::error::Category::Syntax => {
            format!("invalid json at line {} column {}", e.line(), e.column())
        }
        serde_json::error::Category::Data => {
            // Only serde's messages that quote field names are passed on
            // ("missing field `csr`", "unknown field `x`, expected ...");
            // type errors quote the offending value, which may be secret.
            let text = e.to_string();
            let text = text.split(" at line").next().unwrap_or_default();
            if text.starts_with("missing field") || text.starts_with("unknown field") {
                text.to_owned()
            } else {
                "a field has the wrong type".to_owned()
            }
        }
    }
}

/// Reads and parses a device request; a refusal is recorded as an attempt.
async fn device_body<T: serde::de::DeserializeOwned, S: Store>(
    state: &AppState<S>,
    kind: AttemptKind,
    body: Body,
    now: OffsetDateTime,
) -> Result<T, ApiError> {
    let parsed = match read_body(body).await {
        Ok(bytes) => parse_json(&bytes),
        Err(e) => Err(e),
    };
    match parsed {
        Ok(value) => Ok(value),
        Err(e) => {
            state.service.record_refused(kind, &e, now).await;
            Err(e.into())
        }
    }
}

async fn enroll<S: Store>(
    State(state): State<AppState<S>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Body,
) -> Result<Response, ApiError> {
    let _permit = state.admit(peer)?;
    let now = OffsetDateTime::now_utc();
    let request: EnrollRequest = device_body(&state, AttemptKind::Enroll, body, now).await?;
    let enrolled = state.service.enroll(&request, now).await?;
    Ok(axum::Json(enrolled).into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RenewBody {
    /// The current certificate, PEM.
    certificate: String,
    /// The new CSR, PEM.
    csr: String,
    /// Hex DER ECDSA signature by the current key over
    /// `RENEW_PROOF_CONTEXT || new CSR DER`; may be left out when the new
    /// CSR uses the current key.
    #[serde(default)]
    proof: Option<String>,
}

async fn renew<S: Store>(
    State(state): State<AppState<S>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Body,
) -> Result<Response, ApiError> {
    let _permit = state.admit(peer)?;
    let now = OffsetDateTime::now_utc();
    let request: RenewBody = device_body(&state, AttemptKind::Renew, body, now).await?;
    let converted = (|| {
        let cert_der = crate::csr::certificate_pem_to_der(&request.certificate)?;
        let csr_der = crate::csr::csr_pem_to_der(&request.csr)?;
        let proof = request
            .proof
            .as_deref()
            .map(|p| hex::decode(p).map_err(|_| Error::ProofOfPossession))
            .transpose()?;
        Ok::<_, Error>(RenewRequest {
            cert_der,
            possession: Possession::Body(proof),
            csr_der,
        })
    })();
    let renew_request = match converted {
        Ok(r) => r,
        Err(e) => {
            state
                .service
                .record_refused(AttemptKind::Renew, &e, now)
                .await;
            return Err(e.into());
        }
    };
    let renewed = state.service.renew(&renew_request, now).await?;
    Ok(axum::Json(renewed).into_response())
}

fn der_response(der: Arc<Vec<u8>>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/pkix-crl"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        der.as_ref().clone(),
    )
        .into_response()
}

async fn crl_current<S: Store>(State(state): State<AppState<S>>) -> Result<Response, ApiError> {
    Ok(der_response(
        state.service.crl(None, OffsetDateTime::now_utc()).await?,
    ))
}

async fn crl_generation<S: Store>(
    State(state): State<AppState<S>>,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let generation = file
        .strip_suffix(".der")
        .and_then(|n| n.parse::<u32>().ok())
        .ok_or(Error::NotFound("crl"))?;
    Ok(der_response(
        state
            .service
            .crl(Some(generation), OffsetDateTime::now_utc())
            .await?,
    ))
}

async fn root_pem<S: Store>(State(state): State<AppState<S>>) -> Result<Response, ApiError> {
    Ok((
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        state.service.root_pem()?,
    )
        .into_response())
}

fn check_admin<S>(state: &AppState<S>, headers: &HeaderMap) -> Result<(), Error> {
    let expected = state.admin_key_hash.ok_or(Error::Unauthorized)?;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(Error::Unauthorized)?;
    let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    if bool::from(hash.ct_eq(&expected)) {
        Ok(())
    } else {
        Err(Error::Unauthorized)
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTokenBody {
    binding: String,
    bound_to: String,
    #[serde(default = "one")]
    max_uses: u32,
    lifetime_seconds: i64,
    #[serde(default)]
    label: String,
}

fn one() -> u32 {
    1
}

async fn create_token<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_admin(&state, &headers)?;
    let request: CreateTokenBody = parse_json(&read_body(body).await?)?;
    let binding = TokenBinding::from_parts(&request.binding, request.bound_to).ok_or(
        Error::InvalidField {
            field: "binding",
            reason: "must be user, department or allow_list",
        },
    )?;
    let spec = TokenSpec {
        binding,
        max_uses: request.max_uses,
        lifetime_seconds: request.lifetime_seconds,
        label: request.label,
    };
    let (token, info) = state
        .service
        .create_token(&spec, OffsetDateTime::now_utc())
        .await?;
    let qr_svg = token.qr_svg(&state.public_base_url)?;
    let body =
        serde_json::json!({ "token": token.expose_secret(), "qr_svg": qr_svg, "info": info });
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

async fn list_tokens<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_admin(&state, &headers)?;
    Ok(axum::Json(state.service.list_tokens().await?).into_response())
}

async fn revoke_token<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_admin(&state, &headers)?;
    state
        .service
        .revoke_token(&id, OffsetDateTime::now_utc())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    #[serde(default)]
    device_id: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

async fn revoke<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_admin(&state, &headers)?;
    let request: RevokeBody = parse_json(&read_body(body).await?)?;
    let now = OffsetDateTime::now_utc();
    let reason = request.reason.unwrap_or_else(|| "admin".to_owned());
    if reason.len() > 256 || reason.chars().any(char::is_control) {
        return Err(Error::InvalidField {
            field: "reason",
            reason: "at most 256 printable characters",
        }
        .into());
    }
    let serials = match (request.device_id, request.user_id) {
        (Some(device), None) => {
            let device = DeviceId::from_hex(&device).ok_or(Error::InvalidField {
                field: "device_id",
                reason: "must be 32 hex digits",
            })?;
            state.service.revoke_device(&device, &reason, now).await?
        }
        (None, Some(user)) => state.service.revoke_user(&user, &reason, now).await?,
        _ => {
            return Err(Error::InvalidField {
                field: "device_id",
                reason: "give exactly one of device_id and user_id",
            }
            .into());
        }
    };
    let serials: Vec<String> = serials.iter().map(ToString::to_string).collect();
    Ok(axum::Json(serde_json::json!({ "revoked": serials })).into_response())
}
