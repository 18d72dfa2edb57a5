//! The device API over HTTP: `router(relay) -> Router` and `serve_tls`.
//!
//! Every handler takes the device from the connection's verified client
//! certificate ([`PeerIdentity`], put into each request by [`serve_tls`]),
//! never from the request, and authenticates it against provisioning's
//! records on every request.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use kontor_provisioning::DeviceId;
use kontor_provisioning::store::{CertificateStore, UserDirectory};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::bus::{Bus, HintKind};
use crate::error::{Error, Result};
use crate::handoff::Offered;
use crate::service::{DeviceContext, Relay};
use crate::store::{CommandRecord, GroupMember, GroupRole, PushTarget, RelayStore};
use crate::tls::{PeerIdentity, peer_identity};
use crate::wire::{self, BATCH_CONTENT_TYPE, ENVELOPE_CONTENT_TYPE, Id16};

/// HSTS for every answer: two years, subdomains included.
pub const HSTS: &str = "max-age=63072000; includeSubDomains";
/// How often a live connection re-reads its queue without a hint, so a
/// lost bus hint delays a delivery by at most this.
const POLL_INTERVAL: Duration = Duration::from_secs(20);
/// How many acknowledgement writes of one live connection run at once.
const ACKS_IN_FLIGHT: usize = 2;
/// How many looks' worth (`fetch_max` each) of acknowledged sequence
/// numbers one live connection may hold read but not yet written; the
/// socket is not read above that.
const ACKS_WAITING_LOOKS: usize = 4;
/// How long a live connection that the relay ends (a send failed because
/// the device had closed, a revocation, a silent device) still reads what
/// the device sent before, for the acknowledgements in it.
const LEFT_WAIT: Duration = Duration::from_millis(50);
/// The OpenAPI document of the device API.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// The shared state of the handlers.
pub type AppState<S, P, B> = Arc<Relay<S, P, B>>;
/// The device API.
pub fn router<S, P, B>(relay: AppState<S, P, B>) -> Router
where
    S: RelayStore,
    P: CertificateStore + UserDirectory + 'static,
    B: Bus,
{
    let blob_max = relay.config().blob_bytes_max;
    let body_max = relay.config().body_bytes_max
        + relay.config().recipients_max * (wire::DELIVERY_LEN + 16)
        + 64 * 1024;
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/me", get(Api::<S, P, B>::me))
        .route(
            "/v1/users/{user}/devices",
            get(Api::<S, P, B>::user_devices),
        )
        .route("/v1/devices/{id}", get(Api::<S, P, B>::device_entry))
        .route(
            "/v1/messages",
            post(Api::<S, P, B>::post_message)
                .get(Api::<S, P, B>::fetch_messages)
                .layer(DefaultBodyLimit::max(body_max)),
        )
        .route("/v1/messages/ack", post(Api::<S, P, B>::ack_messages))
        .route(
            "/v1/groups",
            post(Api::<S, P, B>::create_group).get(Api::<S, P, B>::my_groups),
        )
        .route("/v1/groups/{id}", get(Api::<S, P, B>::group))
        .route("/v1/groups/{id}/name", put(Api::<S, P, B>::rename_group))
        .route("/v1/groups/{id}/members", post(Api::<S, P, B>::put_member))
        .route(
            "/v1/groups/{id}/members/{user}",
            delete(Api::<S, P, B>::remove_member),
        )
        .route(
            "/v1/blobs/{id}",
            put(Api::<S, P, B>::put_blob)
                .get(Api::<S, P, B>::get_blob)
                .layer(DefaultBodyLimit::max(blob_max)),
        )
        .route("/v1/push", put(Api::<S, P, B>::set_push))
        .route("/v1/commands", get(Api::<S, P, B>::commands))
        .route("/v1/commands/{id}/ack", post(Api::<S, P, B>::ack_command))
        .route("/v1/ws", get(Api::<S, P, B>::websocket))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(axum::middleware::map_response(json_rejections))
        .layer(axum::middleware::map_response(add_hsts))
        .with_state(relay)
}

/// axum answers a request its extractors refuse (a body over the limit,
/// say) in plain text; the device API answers every error in its JSON
/// shape, `{"error": {"code", "message"}}`, as the document says.
async fn json_rejections(response: Response) -> Response {
    let status = response.status();
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !plain || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "content_type",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let (parts, body) = response.into_parts();
    let message = match axum::body::to_bytes(body, 4096).await {
        Ok(text) if !status.is_server_error() => String::from_utf8_lossy(&text).into_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    let mut answer = (status, Json(body)).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().append(name, value.clone());
        }
    }
    answer
}

/// Adds the HSTS header to every answer of `router` (for the other HTTPS
/// listeners of the same process).
pub fn with_hsts(router: Router) -> Router {
    router.layer(axum::middleware::map_response(add_hsts))
}

async fn add_hsts(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static(HSTS),
    );
    response
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

fn parse_id(text: &str, what: &'static str) -> Result<Id16> {
    let mut id = [0u8; 16];
    hex::decode_to_slice(text, &mut id)
        .map_err(|_| Error::BadRequest(format!("{what} must be 32 hex digits")))?;
    Ok(id)
}

fn require_content_type(headers: &HeaderMap, expected: &'static str) -> Result<()> {
    let given = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if given.split(';').next().map(str::trim) != Some(expected) {
        return Err(Error::ContentType(expected));
    }
    Ok(())
}

fn json_body<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T> {
    require_content_type(headers, "application/json")?;
    serde_json::from_slice(body).map_err(|e| Error::BadRequest(format!("invalid JSON: {e}")))
}

#[derive(Serialize)]
struct Me {
    device_id: String,
    user_id: String,
    identity_key: String,
}

#[derive(Deserialize)]
struct FetchQuery {
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    seqs: Vec<u64>,
}

#[derive(Serialize)]
struct GroupView {
    id: String,
    name: String,
    created_by: String,
    members: Vec<MemberView>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberView {
    user_id: String,
    role: String,
}

impl From<crate::store::Group> for GroupView {
    fn from(g: crate::store::Group) -> Self {
        Self {
            id: hex::encode(g.id),
            name: g.name,
            created_by: g.created_by,
            members: g
                .members
                .into_iter()
                .map(|m| MemberView {
                    user_id: m.user_id,
                    role: m.role.as_str().to_owned(),
                })
                .collect(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateGroup {
    id: String,
    name: String,
    #[serde(default)]
    members: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rename {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushBody {
    apns: Option<String>,
    fcm: Option<String>,
}

#[derive(Serialize)]
struct CommandView {
    id: u64,
    kind: String,
    payload: serde_json::Value,
    created_at_ms: i64,
}

fn command_view(c: CommandRecord) -> CommandView {
    CommandView {
        id: c.id,
        kind: c.kind,
        payload: serde_json::from_str(&c.payload).unwrap_or(serde_json::Value::Null),
        created_at_ms: c.created_at_ms,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandAck {
    receipt: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFrame {
    ack: Vec<u64>,
}

/// The sequence numbers one text frame of a live connection acknowledges.
/// Its only form is `{"ack": [seq, ...]}`.
fn acks_of(text: &str) -> Result<Vec<u64>> {
    serde_json::from_str::<ClientFrame>(text)
        .map(|frame| frame.ack)
        .map_err(|e| Error::BadRequest(format!("invalid frame: {e}")))
}

/// Reads what is left in a live connection's socket after the relay's
/// side ended it, for at most [`LEFT_WAIT`]: the acknowledgements in it go
/// to `into` (until it holds `max`), so they are written rather than lost
/// with the socket. Stops at the end of the stream, a close, a read error
/// or a text frame that is not an acknowledgement (other frames are
/// skipped, as in the loop).
async fn read_left<S>(rx: &mut S, into: &mut Vec<u64>, max: usize)
where
    S: futures_util::Stream<Item = std::result::Result<Message, axum::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + LEFT_WAIT;
    while into.len() < max {
        match tokio::time::timeout_at(deadline, rx.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => match acks_of(text.as_str()) {
                Ok(acks) => into.extend(acks),
                Err(_) => return,
            },
            Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) | Err(_) => return,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// The bounds on one listener's connections: the I/O shell's share of "a
/// limit on everything". Request bodies are bounded by each router.
#[derive(Debug, Clone)]
pub struct ListenerLimits {
    /// Most connections open at once (handshakes included); more are
    /// closed at once.
    pub connections_max: usize,
    /// Most connections open at once from one client address, so one host
    /// cannot take every place (devices behind one NAT share an address).
    pub connections_per_address_max: usize,
    /// Longest TLS handshake.
    pub handshake_timeout: Duration,
    /// HTTP/1.1: longest wait for a request's complete header, from the
    /// moment the connection waits for one (so it also ends idle
    /// keep-alive connections and slowloris headers).
    pub header_read_timeout: Duration,
    /// Longest a request may take, its body included (not a WebSocket
    /// after its upgrade); past it the answer is `408`.
    pub request_timeout: Duration,
    /// A connection without a byte in either direction for this long is
    /// closed (HTTP/2 has no header timeout; this bounds it too).
    pub idle_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            connections_max: 10_000,
            connections_per_address_max: 1_000,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// Connections open per client address, and their places.
#[derive(Default)]
struct PerAddress(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

/// One connection's place in [`PerAddress`]; given back when dropped.
struct AddressSlot {
    table: Arc<PerAddress>,
    address: std::net::IpAddr,
}

impl PerAddress {
    fn take(self: &Arc<Self>, address: std::net::IpAddr, max: usize) -> Option<AddressSlot> {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = map.entry(address).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            table: self.clone(),
            address,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = self
            .table
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.address) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.address);
            }
        }
    }
}

/// A stream that notes the time of its last read or write, for the idle
/// timeout.
struct Watched<T> {
    inner: T,
    last: Arc<std::sync::atomic::AtomicU64>,
    epoch: tokio::time::Instant,
}

impl<T> Watched<T> {
    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, std::sync::atomic::Ordering::Relaxed);
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Watched<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Serves `app` over TLS until `shutdown` resolves, within `limits`: the
/// connection caps (overall and per client address), the handshake,
/// header, request and idle timeouts. The verified client certificate's
/// identity (where there is one) and the client's address are put into
/// every request.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let permits = Arc::new(Semaphore::new(limits.connections_max));
    let per_address = Arc::new(PerAddress::default());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(100);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(100)
        .max_header_list_size(64 * 1024);
    // No HTTP/2 keep-alive pings: the client's answer to a ping is traffic,
    // so an idle connection would never reach the idle timeout below, which
    // already closes a connection whose peer has gone.
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors, say: pause rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Without it a small write (a delivered message, a 201) waits in
        // the kernel for the acknowledgement of the one before (Nagle's
        // algorithm), which the peer may hold back for its delayed-ACK
        // timer, 40 ms or more on Linux.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%addr, error = %e, "cannot turn off Nagle's algorithm");
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Over the connection limit: close at once rather than queue.
            tracing::debug!(%addr, "connection limit reached, closed");
            drop(stream);
            continue;
        };
        let Some(slot) = per_address.take(addr.ip(), limits.connections_per_address_max) else {
            tracing::debug!(%addr, "per-address connection limit reached, closed");
            drop(stream);
            continue;
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let _places = (permit, slot);
            let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream))
                .await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%addr, "handshake timed out");
                    return;
                }
            };
            // Listeners without client certificates (enrollment) have no
            // identity; the device API refuses requests without one.
            let identity = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|leaf| peer_identity(leaf).ok());
            let request_timeout = limits.request_timeout;
            let service = hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    // The client's address, for per-address limits (admin sign-in).
                    request
                        .extensions_mut()
                        .insert(axum::extract::ConnectInfo(addr));
                    if let Some(identity) = identity {
                        request.extensions_mut().insert(identity);
                    }
                    let app = app.clone();
                    async move {
                        match tokio::time::timeout(
                            request_timeout,
                            tower::ServiceExt::oneshot(app, request),
                        )
                        .await
                        {
                            Ok(answer) => answer,
                            Err(_) => Ok(request_timed_out()),
                        }
                    }
                },
            );
            let last = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let io = Watched {
                inner: tls,
                last: last.clone(),
                epoch: tokio::time::Instant::now(),
            };
            let epoch = io.epoch;
            let connection =
                builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(io), service);
            let connection = watcher.watch(connection.into_owned());
            tokio::pin!(connection);
            // The idle watchdog: checks a few times per idle period.
            let mut tick =
                tokio::time::interval((limits.idle_timeout / 4).max(Duration::from_millis(100)));
            loop {
                tokio::select! {
                    ended = &mut connection => {
                        if let Err(e) = ended {
                            tracing::debug!(error = %e, "connection ended");
                        }
                        break;
                    }
                    _ = tick.tick() => {
                        let last = Duration::from_millis(last.load(std::sync::atomic::Ordering::Relaxed));
                        if epoch.elapsed().saturating_sub(last) >= limits.idle_timeout {
                            tracing::debug!(%addr, "idle connection closed");
                            break;
                        }
                    }
                }
            }
        });
    }
    // Give open connections a moment to finish their requests.
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
}

/// The answer to a request that took longer than the listener allows.
fn request_timed_out() -> Response {
    let body = serde_json::json!({
        "error": { "code": "request_timeout", "message": "the request took too long" }
    });
    (StatusCode::REQUEST_TIMEOUT, Json(body)).into_response()
}

/// The handlers, with the bounds on the relay's parts stated once.
struct Api<S, P, B>(std::marker::PhantomData<(S, P, B)>);

impl<S, P, B> Api<S, P, B>
where
    S: RelayStore,
    P: CertificateStore + UserDirectory + 'static,
    B: Bus,
{
    async fn device(
        relay: &Relay<S, P, B>,
        peer: Option<Extension<PeerIdentity>>,
    ) -> Result<DeviceContext> {
        let Some(Extension(peer)) = peer else {
            return Err(Error::DeviceRefused("no client certificate"));
        };
        relay.authenticate(peer.device_id, peer.serial).await
    }

    async fn me(
        State(relay): State<AppState<S, P, B>>,
        peer: Option<Extension<PeerIdentity>>,
    ) -> Result<Json<Me>> {
        let d = Self::device(&relay, peer).await?;
        Ok(Json(Me {
            device_id: d.device_id.to_string(),
            user_id: d.user_id,
            identity_key: hex::encode(d.identity_key),
        }))
    }

    async fn user_devices(
        State(relay): State<AppState<S, P, B>>,
        peer: Option<Extension<PeerIdentity>>,
        Path(user): Path<String>,
    ) -> Result<Response> {
        let d = Self::device(&relay, peer).await?;
        let devices = relay.devices_of_user(&d, &user).await?;
        Ok(Json(serde_json::json!({ "user_id": user, "devices": devices })).into_response())
    }

    async fn device_entry(
        State(relay): State<AppState<S, P, B>>,
        peer: Option<Extension<PeerIdentity>>,
        Path(id): Path<String>,
    ) -> Result<Response> {
        let d = Self::device(&relay, peer).await?;
        let id = DeviceId::from_bytes(parse_id(&id, "device id")?);
        let (user_id, device) = relay.device_entry(&d, id).await?;
        Ok(Json(serde_json::json!({ "user_id": user_id, "device": device })).into_response())
    }

    async fn post_message(
        State(relay): State<AppState<S, P, B>>,
        peer: Option<Extension<PeerIdentity>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response> {
        let d = Self::device(&relay, peer).await?;
        require_content_type(&headers, ENVELOPE_CONTENT_TYPE)?;
        let outcome = relay.post_message(&d, &body).await?;
        let status = if outcome.new {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok((status, Json(outcome)).into_response())
    }

    async fn fetch_messages(
        State(relay): State<AppState<S, P, B>>,
        peer: Option<Extension<PeerIdentity>>,
        query: Result<Query<FetchQuery>, QueryRejection>,
    ) -> Result<Response> {
        let d = Self::device(&relay, peer).await?;
        let Query(query) =
            query.map_err(|_| Error::BadRequest("limit must be a number from 0 up".into()))?;
        let limit = query.limit.unwrap_or(relay.config().fetch_max);
        let messages = relay.fetch(&d, &[], limit).await?;
        let frames: Vec<Vec<u8>> = messages
            .iter()
            .map(|m| {
                wire::encode_frame(
                    m.seq,
                    u64::try_from(m.received_at_ms).unwrap_or(0),
                    &m.delivery,
                    &m.body,
                )
            })
            .collect();
        Ok((
            [(header::CONTENT_TYPE, BATCH_CONTENT_TYPE)],
            wire::encode_batch(&frames),
        )
            .into_response())
    }

    async fn ack_messages(
        State(relay): State<AppState<S, P, B>>,
        peer: Option<Extension<PeerIdentity>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response> {
        let d = Self::device(&relay, peer).await?;
        let ack: AckBody = json_body(&headers, &body)?;
        let n = relay.ack(&d, &ack.seqs).await?;
        Ok(Json(serde_json::json!({ "acknowledged": n })).into_response())
    }

    async fn create_group(
        State(relay): State<AppState<S, P, B>>,
        peer: Option<Extension<PeerIdentity>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response> {
        let d = Self::device(&relay, peer).await?;
        let req: CreateGroup = json_body(&headers, &body)?;
        let id = parse_id(&req.id, "group id")?;
        let group = relay.create_group(&d, id, &req.name, &req.members).await?;
        Ok((StatusCode::CREATED, Json(GroupView::from(group))).into_response())
    }

    async fn my_groups(
        State(relay): State<AppState<S, P, B>>,
        peer: Option<Extension<PeerIdentity>>,
    ) -> Result<Response> {
        let d = Self::device(&relay, peer).await?;
        let groups: Vec<GroupView> = relay
            .my_groups(&d)
            .await?
            .into_iter()
            .map(GroupView::from)
            .collect();
        Ok(Json(serde_json::json!({ "groups": groups })).into_response())
    }

    async fn group(
        State(relay): State<AppState<S, P, B>>,
        peer: Option<Extension<PeerIdentity>>,
        Path(id): Path<String>,
    ) -> Result<Response> {
        let d = Self::device(&relay, peer).await?;
        let group = relay.group(&d, parse_id(&id, "group id")?).await?;
        Ok(Json(GroupView::from(group)).into_response())
    }

    async fn rename_group(
        State(relay): State<AppState<S, P, B>>,
        peer: Option<Extension<PeerIdentity>>,
        Path(id): Path<String>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response> {
        let d = Self::device(&relay, peer).await?;
        let req: Rename = json_body(&headers, &body)?;
        let group = relay
            .rename_group(&d, parse_id(&id, "group id")?, &req.name)
            .await?;
        Ok(Json(GroupView::from(group)).into_response())
    }

    async fn put_member(
        State(relay): State<AppState<S, P, B>>,
        peer: Option<Extension<PeerIdentity>>,
        Path(id): Path<String>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response> {
        let d = Self::device(&relay, peer).await?;
        let req: MemberView = json_body(&headers, &body)?;
        let role = GroupRole::parse(&req.role)
            .ok_or_else(|| Error::BadRequest("role must be admin or member".into()))?;
        let group = relay
            .put_member(
                &d,
                parse_id(&id, "group id")?,
                GroupMember {
                    user_id: req.user_id,
                    role,
                },
            )
            .await?;
        Ok(Json(GroupView::from(group)).into_response())
    }

    async fn remove_member(
        State(relay): State<AppState<S, P, B>>,
        peer: Option<Extension<PeerIdentity>>,
        Path((id, user)): Path<(String, String)>,
    ) -> Result<Response> {
        let d = Self::device(&relay, peer).await?;
        relay
            .remove_member(&d, parse_id(&id, "group id")?, &user)
            .await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    async fn put_blob(
        State(relay): State<AppState<S, P, B>>,
        peer: Option<Extension<PeerIdentity>>,
        Path(id): Path<String>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response> {
        let d = Self::device(&relay, peer).await?;
        require_content_type(&headers, "application/octet-stream")?;
        relay
            .put_blob(&d, parse_id(&id, "blob id")?, body.to_vec())
            .await?;
        Ok(StatusCode::CREATED.into_response())
    }

    async fn get_blob(
        State(relay): State<AppState<S, P, B>>,
        peer: Option<Extension<PeerIdentity>>,
        Path(id): Path<String>,
    ) -> Result<Response> {
        let d = Self::device(&relay, peer).await?;
        let bytes = relay.blob(&d, parse_id(&id, "blob id")?).await?;
        Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
    }

    async fn set_push(
        State(relay): State<AppState<S, P, B>>,
        peer: Option<Extension<PeerIdentity>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response> {
        let d = Self::device(&relay, peer).await?;
        let req: PushBody = json_body(&headers, &body)?;
        let target = match (req.apns, req.fcm) {
            (Some(t), None) => Some(PushTarget::Apns(t)),
            (None, Some(t)) => Some(PushTarget::Fcm(t)),
            (None, None) => None,
            (Some(_), Some(_)) => {
                return Err(Error::BadRequest("give apns or fcm, not both".into()));
            }
        };
        relay.set_push(&d, target).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    async fn commands(
        State(relay): State<AppState<S, P, B>>,
        peer: Option<Extension<PeerIdentity>>,
    ) -> Result<Response> {
        let d = Self::device(&relay, peer).await?;
        let list: Vec<CommandView> = relay
            .commands(&d)
            .await?
            .into_iter()
            .map(command_view)
            .collect();
        Ok(Json(serde_json::json!({ "commands": list })).into_response())
    }

    async fn ack_command(
        State(relay): State<AppState<S, P, B>>,
        peer: Option<Extension<PeerIdentity>>,
        Path(id): Path<String>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response> {
        let d = Self::device(&relay, peer).await?;
        let id: u64 = id
            .parse()
            .map_err(|_| Error::BadRequest("command id must be a number".into()))?;
        let req: CommandAck = json_body(&headers, &body)?;
        relay.ack_command(&d, id, &req.receipt).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    async fn websocket(
        State(relay): State<AppState<S, P, B>>,
        peer: Option<Extension<PeerIdentity>>,
        upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    ) -> Result<Response> {
        let d = Self::device(&relay, peer).await?;
        // A plain GET, or a broken upgrade: the documented 400 in JSON
        // (axum would answer 400, 405 or 426 in plain text).
        let upgrade =
            upgrade.map_err(|e| Error::BadRequest(format!("not a WebSocket upgrade: {e}")))?;
        // Counted from before the upgrade until the socket closes.
        let slot = relay.live_slot(d.device_id)?;
        // tungstenite allocates its read buffer eagerly (128 KiB by
        // default) for every socket; a device sends only small ack frames,
        // so 1 KiB serves it (the buffer grows for a larger frame) and an
        // idle connection stays small. Frames go out as they are sent
        // (each send flushes anyway).
        Ok(upgrade
            .read_buffer_size(1024)
            .write_buffer_size(0)
            .max_message_size(64 * 1024)
            .on_upgrade(move |socket| async move {
                let _slot = slot;
                if let Err(e) = Self::live(relay, d, socket).await {
                    tracing::debug!(error = %e, "live connection ended");
                }
            }))
    }

    /// A live connection: sends what waits, then whatever a hint announces,
    /// and takes acknowledgements as `{"ack": [seq, ...]}` text frames.
    async fn live(
        relay: AppState<S, P, B>,
        device: DeviceContext,
        socket: WebSocket,
    ) -> Result<()> {
        let mut hints = relay.bus().subscribe(device.device_id).await?;
        let limit = relay.config().fetch_max;
        // Messages handed straight to this connection (crate::handoff):
        // sent, the sender's request waiting for the acknowledgement.
        let mut inbox = relay.handoffs().open(device.device_id, limit);
        let mut offered = Offered::default();
        let (mut tx, mut rx) = socket.split();
        // Sent on this connection, not yet acknowledged: never sent twice here.
        let mut sent: HashSet<u64> = HashSet::new();
        let mut sent_commands: HashSet<u64> = HashSet::new();
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        let mut look_messages = true;
        let mut look_commands = true;
        // Everything in the queue numbered up to `sent_up_to` was sent on
        // this connection (or acknowledged), and a device's queue entries
        // become visible in sequence order: a hint needs only a look above
        // it. The periodic look reads the whole queue, leaving out what
        // was sent, in case an entry ever became visible out of order.
        let mut sent_up_to = 0u64;
        let mut whole_queue = true;
        // A look returns at most `fetch_max`; when it came back full, more
        // may wait, and the loop looks again at once (not at the next hint
        // or re-read) as long as at most `fetch_max` sent messages wait
        // for their acknowledgement: a device that was offline gets its
        // queue at the pace it acknowledges, never more than two looks
        // ahead of it.
        // A phone that changed networks leaves a connection nobody closes;
        // it would hold one of the device's places until TCP gives up.
        // Every re-read also pings, and a connection that sent nothing
        // (not even the pong) for three rounds is ended.
        let mut heard = tokio::time::Instant::now();
        let mut rounds = 0u32;
        // Acknowledgements are written while the loop goes on sending: an
        // acknowledgement waits for the writer's synced commit, and a
        // message that arrives meanwhile must not wait for it too. The
        // socket is read on while they are written, so that a device
        // that acknowledges and closes has its acknowledgements read
        // before anything else is sent to it: those read wait in
        // `waiting` (up to `ACKS_WAITING_LOOKS` looks' worth) and go out
        // in writes of up to a look each, `ACKS_IN_FLIGHT` at once. What
        // they name leaves `sent` only once written, so a re-read never
        // sends it again here.
        let mut waiting: Vec<u64> = Vec::new();
        let mut acking = FuturesUnordered::new();
        let (relay_ref, device_ref) = (&relay, &device);
        let write_acks = |seqs: Vec<u64>| async move {
            relay_ref.ack(device_ref, &seqs).await?;
            Ok::<_, Error>(seqs)
        };
        // Whether the device's side ended the connection (closed, or its
        // socket failed): otherwise what it sent before is read after.
        let mut read_ended = false;
        let outcome: Result<()> = async {
            loop {
                if look_messages && sent.len() <= limit {
                    // Whatever was stored before this is in what the look
                    // reads: offers need not wait for it any more.
                    inbox.take_stored();
                    relay.still_allowed(&device).await?;
                    let batch = if whole_queue {
                        let skip: Vec<u64> = sent.iter().copied().collect();
                        relay.fetch(&device, &skip, limit).await?
                    } else {
                        relay.fetch_after(&device, sent_up_to, limit).await?
                    };
                    whole_queue = false;
                    let full = batch.len() >= limit;
                    // One write per frame: a look's frames gathered in
                    // tungstenite's write buffer would leave that buffer
                    // allocated, at its largest, for the connection's
                    // life (BENCHMARKS.md, 2026-12-04, evening).
                    for m in batch {
                        sent_up_to = sent_up_to.max(m.seq);
                        let frame = wire::encode_frame(
                            m.seq,
                            u64::try_from(m.received_at_ms).unwrap_or(0),
                            &m.delivery,
                            &m.body,
                        );
                        tx.send(Message::Binary(frame.into()))
                            .await
                            .map_err(|e| Error::BadRequest(e.to_string()))?;
                        sent.insert(m.seq);
                    }
                    look_messages = full;
                }
                if look_commands {
                    for c in relay.commands(&device).await? {
                        if sent_commands.insert(c.id) {
                            let text =
                                serde_json::json!({ "command": command_view(c) }).to_string();
                            tx.send(Message::Text(text.into()))
                                .await
                                .map_err(|e| Error::BadRequest(e.to_string()))?;
                        }
                    }
                    look_commands = false;
                }
                // Ready at once while a full look left more to read and the
                // device keeps up; hints, re-reads and acknowledgements
                // compete with it as equals.
                let again = look_messages && sent.len() <= limit;
                while acking.len() < ACKS_IN_FLIGHT && !waiting.is_empty() {
                    let seqs: Vec<u64> = waiting.drain(..waiting.len().min(limit)).collect();
                    acking.push(write_acks(seqs));
                }
                tokio::select! {
                    () = std::future::ready(()), if again => {}
                    hint = hints.recv() => {
                        let Some(first) = hint else {
                            return Err(Error::Bus("subscription ended".into()));
                        };
                        // A burst of hints (one per message) is one look.
                        let mut next = Some(first);
                        while let Some(h) = next {
                            match h.kind {
                                HintKind::Message => look_messages = true,
                                HintKind::Command => look_commands = true,
                            }
                            next = hints.try_recv();
                        }
                    }
                    _ = poll.tick() => {
                        look_messages = true;
                        whole_queue = true;
                        look_commands = true;
                        rounds += 1;
                        // The first tick comes at once: no ping then.
                        if rounds > 1 {
                            if heard.elapsed() > POLL_INTERVAL * 3 {
                                return Err(Error::BadRequest("live connection silent".into()));
                            }
                            tx.send(Message::Ping(Bytes::new()))
                                .await
                                .map_err(|e| Error::BadRequest(e.to_string()))?;
                        }
                    }
                    offer = inbox.recv() => {
                        // Refused (dropped: the sender's request stores
                        // it) while a look is owed or a message was stored
                        // for this device since the last look, so that a
                        // handed-off message never overtakes one already
                        // queued; while too many wait for their
                        // acknowledgement; and once the certificate is
                        // revoked (the next look ends the connection).
                        if inbox.take_stored() {
                            look_messages = true;
                        }
                        if offered.len() >= limit {
                            offered.forget_given_up();
                        }
                        if look_messages || offered.len() >= limit || relay.revoked(&device) {
                            continue;
                        }
                        tx.send(Message::Binary(offer.frame.into()))
                            .await
                            .map_err(|e| Error::BadRequest(e.to_string()))?;
                        offered.sent(offer.seq, offer.taken);
                    }
                    Some(written) = acking.next(), if !acking.is_empty() => {
                        let written: Vec<u64> = written?;
                        for seq in written {
                            sent.remove(&seq);
                        }
                    }
                    incoming = rx.next(), if waiting.len() < ACKS_WAITING_LOOKS * limit => {
                        heard = tokio::time::Instant::now();
                        match incoming {
                            Some(Ok(Message::Text(text))) => {
                                let mut acks = acks_of(text.as_str()).inspect_err(|_| {
                                    read_ended = true;
                                })?;
                                if !acks.is_empty() {
                                    inbox.heard();
                                }
                                offered.acknowledge(&mut acks);
                                // Up to two looks are in flight: one frame may
                                // acknowledge them all (within the frame size);
                                // the writes take a look's worth each.
                                waiting.extend(acks);
                            }
                            Some(Ok(Message::Close(_))) | None => {
                                read_ended = true;
                                return Ok(());
                            }
                            Some(Ok(_)) => {}
                            Some(Err(e)) => {
                                read_ended = true;
                                return Err(Error::BadRequest(e.to_string()));
                            }
                        }
                    }
                }
            }
        }
        .await;
        // Ended on the relay's side (a send into a socket the device had
        // closed, say): what the device sent before may still wait in the
        // socket, unread.
        if !read_ended {
            read_left(&mut rx, &mut waiting, ACKS_WAITING_LOOKS * limit).await;
        }
        // What the device acknowledged of the frames handed to it is
        // told to their senders; the rest (dropped with `offered` and the
        // inbox) are stored by them.
        offered.acknowledge(&mut waiting);
        drop(inbox);
        drop(offered);
        // However the connection ended, what the device acknowledged
        // before is written: it is never lost with the socket.
        for seqs in waiting.chunks(limit) {
            acking.push(write_acks(seqs.to_vec()));
        }
        while let Some(written) = acking.next().await {
            written?;
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use futures_util::stream;

    use super::*;

    fn ack(seqs: &str) -> std::result::Result<Message, axum::Error> {
        Ok(Message::Text(format!("{{\"ack\":{seqs}}}").into()))
    }

    async fn left(frames: Vec<std::result::Result<Message, axum::Error>>, max: usize) -> Vec<u64> {
        let mut rx = stream::iter(frames);
        let mut into = Vec::new();
        read_left(&mut rx, &mut into, max).await;
        into
    }

    #[tokio::test]
    async fn acknowledgements_left_in_the_socket_are_read_up_to_a_close() {
        let frames = vec![
            ack("[1,2]"),
            Ok(Message::Ping(Bytes::new())),
            ack("[3]"),
            Ok(Message::Close(None)),
            ack("[4]"),
        ];
        assert_eq!(left(frames, 100).await, vec![1, 2, 3]);
    }

    #[tokio::test]
    async fn reading_what_is_left_stops_at_a_frame_that_is_no_acknowledgement() {
        let frames = vec![
            ack("[1]"),
            Ok(Message::Text("{\"ack\":[2],\"more\":1}".into())),
            ack("[3]"),
        ];
        assert_eq!(left(frames, 100).await, vec![1]);
    }

    #[tokio::test]
    async fn reading_what_is_left_stops_at_a_read_error_and_at_the_bound() {
        let frames = vec![
            ack("[1]"),
            Err(axum::Error::new(std::io::Error::from(
                std::io::ErrorKind::ConnectionReset,
            ))),
            ack("[2]"),
        ];
        assert_eq!(left(frames, 100).await, vec![1]);
        let frames = vec![ack("[1,2]"), ack("[3]"), ack("[4]")];
        assert_eq!(left(frames, 3).await, vec![1, 2, 3]);
    }

    #[tokio::test]
    async fn a_socket_with_nothing_left_is_given_up_after_the_wait() {
        let mut rx = stream::pending::<std::result::Result<Message, axum::Error>>();
        let mut into = Vec::new();
        let started = tokio::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(10), read_left(&mut rx, &mut into, 100))
            .await
            .expect("read_left gives up after LEFT_WAIT");
        assert!(started.elapsed() >= LEFT_WAIT);
        assert!(into.is_empty());
    }
}
