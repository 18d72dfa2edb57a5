//! Outbound HTTP clients for the MDM servers Kontor drives: NanoMDM's
//! command API and Google's Android Management API (AMAPI).
//!
//! Each client does two things:
//! - builds outbox entries ([`NewEntry`]) for calls that must not be lost
//!   (`*_entry` methods; pure apart from validation), and implements
//!   [`Transport`] so the [`crate::outbox::Deliverer`] can send them;
//! - calls the API directly and parses its answer (`enqueue`, `push`,
//!   `issue_command`, ...), for interactive use.
//!
//! Every request carries an `Idempotency-Key` header and a timeout, follows
//! no redirects, and goes over rustls with the ring provider and either the
//! configured trust anchors or the system's. Plain `http://` base URLs are
//! refused unless `danger_plaintext_http` is set (tests, a local sidecar).
//!
//! NanoMDM (docs/operations-guide.md and docs/openapi.yaml of
//! micromdm/nanomdm): HTTP Basic auth with user `nanomdm` and the API key;
//! `PUT /v1/enqueue/{id,id,...}` with the XML command plist as body (the
//! server ignores the content type; we send `application/xml`);
//! `GET /v1/push/{id,...}`; answers are JSON with a `status` object per
//! enrollment id (`push_result`, `push_error`, `command_error`), 200 when
//! all succeeded, 207 when some did, 500 when all failed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::outbox::{BoxFuture, Delivery, Entry, Method, NewEntry, Transport};

/// Longest answer body read.
pub const ANSWER_BYTES_MAX: usize = 1024 * 1024;
/// Most enrollment ids in one NanoMDM request.
pub const ENROLLMENT_IDS_MAX: usize = 200;
/// The default route name of a NanoMDM client in the outbox.
pub const NANOMDM_TARGET: &str = "nanomdm";
/// The default route name of an AMAPI client in the outbox.
pub const AMAPI_TARGET: &str = "amapi";
/// The idempotency header every request carries.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// What went wrong talking to an MDM.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client configuration is unusable.
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// An argument is malformed (an id, a name, a command).
    #[error("invalid {what}: {why}")]
    Invalid {
        /// What.
        what: &'static str,
        /// Why.
        why: String,
    },
    /// No answer: connection, TLS or timeout.
    #[error("request to {service} failed: {error}")]
    Transport {
        /// Which API.
        service: &'static str,
        /// What happened.
        error: String,
    },
    /// NanoMDM answered with an error status.
    #[error("nanomdm answered {status}: {detail}")]
    NanoMdm {
        /// HTTP status.
        status: u16,
        /// Its error fields, or the start of its body.
        detail: String,
    },
    /// The Android Management API answered with an error.
    #[error("android management api answered {status} {}: {}", .error.status.as_deref().unwrap_or("-"), .error.message)]
    Google {
        /// HTTP status.
        status: u16,
        /// Google's error object.
        error: GoogleError,
    },
    /// A success answer that does not parse.
    #[error("unexpected answer from {service}: {why}")]
    Answer {
        /// Which API.
        service: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// The token source could not give a token.
    #[error("no access token: {0}")]
    Token(String),
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A secret string (API key, access token): zeroized on drop, `[redacted]`
/// in `Debug`.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The secret itself, for the one header that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Connection settings shared by both clients.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// The API's base URL, without trailing slash (e.g.
    /// `https://mdm.example.org` or `https://androidmanagement.googleapis.com`).
    pub base_url: String,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Trust anchors (DER); empty means the system's roots.
    pub roots_der: Vec<Vec<u8>>,
    /// Allow `http://` base URLs (tests and local sidecars only).
    pub danger_plaintext_http: bool,
}

impl HttpConfig {
    /// Settings for `base_url` with a 30 s timeout and the system's roots.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            timeout: Duration::from_secs(30),
            roots_der: Vec::new(),
            danger_plaintext_http: false,
        }
    }
}

/// The HTTP machinery both clients share.
struct Http {
    client: reqwest::Client,
    base: String,
    service: &'static str,
}

enum Auth<'a> {
    Basic { user: &'a str, password: &'a str },
    Bearer(&'a str),
}

impl Http {
    fn new(config: &HttpConfig, service: &'static str) -> Result<Self> {
        let base = config.base_url.trim_end_matches('/').to_owned();
        let scheme_ok = base.starts_with("https://")
            || (config.danger_plaintext_http && base.starts_with("http://"));
        if !scheme_ok {
            return Err(Error::Config(format!(
                "the {service} base url must start with https://"
            )));
        }
        if base.contains(['?', '#', ' ']) {
            return Err(Error::Config(format!(
                "the {service} base url must not have a query or fragment"
            )));
        }
        let mut roots = rustls::RootCertStore::empty();
        for der in &config.roots_der {
            roots
                .add(rustls::pki_types::CertificateDer::from(der.clone()))
                .map_err(|e| Error::Config(format!("{service} trust anchor: {e}")))?;
        }
        if roots.is_empty() {
            roots.add_parsable_certificates(system_roots());
        }
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("{service} tls: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("kontor-mdm-connector/", env!("CARGO_PKG_VERSION")))
            // Always our rustls configuration (ring): reqwest has no
            // provider of its own in this tree.
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| Error::Config(format!("{service} client: {e}")))?;
        Ok(Self {
            client,
            base,
            service,
        })
    }

    /// Sends one request; every outcome is a [`Delivery`].
    async fn call(
        &self,
        method: Method,
        url_path: &str,
        content_type: &str,
        body: Vec<u8>,
        idempotency_key: &str,
        auth: Auth<'_>,
    ) -> Delivery {
        let method = match method {
            Method::Get => reqwest::Method::GET,
            Method::Put => reqwest::Method::PUT,
            Method::Post => reqwest::Method::POST,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        };
        let mut request = self
            .client
            .request(method, format!("{}{url_path}", self.base))
            .header(IDEMPOTENCY_HEADER, idempotency_key)
            .header(reqwest::header::ACCEPT, "application/json");
        request = match auth {
            Auth::Basic { user, password } => request.basic_auth(user, Some(password)),
            Auth::Bearer(token) => request.bearer_auth(token),
        };
        if !body.is_empty() || !content_type.is_empty() {
            request = request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body);
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                return Delivery::Failed {
                    error: describe(self.service, &e),
                };
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, OffsetDateTime::now_utc()));
        let mut answer = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = ANSWER_BYTES_MAX.saturating_sub(answer.len());
                    answer.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if room <= chunk.len() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    return Delivery::Failed {
                        error: describe(self.service, &e),
                    };
                }
            }
        }
        Delivery::Answered {
            status,
            retry_after,
            body: answer,
        }
    }
}

/// A transport error without the URL's query (reqwest's `Display` has the
/// URL; ours carry no secrets, but keep messages short and stable).
fn describe(service: &str, e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "broken answer body"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        format!("{service}: {kind}")
    } else {
        format!("{service}: {kind} ({detail})")
    }
}

/// Parses `Retry-After`: delay-seconds or an IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 §10.2.3). A date in the past
/// is a zero delay; anything else unparseable is `None`.
pub fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_weekday, day, month, year, clock, "GMT"] = parts.as_slice() else {
        return None;
    };
    let month = match month.to_ascii_lowercase().as_str() {
        "jan" => time::Month::January,
        "feb" => time::Month::February,
        "mar" => time::Month::March,
        "apr" => time::Month::April,
        "may" => time::Month::May,
        "jun" => time::Month::June,
        "jul" => time::Month::July,
        "aug" => time::Month::August,
        "sep" => time::Month::September,
        "oct" => time::Month::October,
        "nov" => time::Month::November,
        "dec" => time::Month::December,
        _ => return None,
    };
    let mut hms = clock.split(':').map(|n| n.parse::<u8>().ok());
    let (Some(Some(h)), Some(Some(m)), Some(Some(s)), None) =
        (hms.next(), hms.next(), hms.next(), hms.next())
    else {
        return None;
    };
    let date = time::Date::from_calendar_date(year.parse().ok()?, month, day.parse().ok()?).ok()?;
    let at = date
        .with_time(time::Time::from_hms(h, m, s).ok()?)
        .assume_utc();
    let wait = at - now;
    Some(if wait.is_negative() {
        Duration::ZERO
    } else {
        Duration::from_secs(u64::try_from(wait.whole_seconds()).unwrap_or(0))
    })
}

/// The system's trust anchors (Debian's ca-certificates), as DER.
fn system_roots() -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ]
    .iter()
    .find_map(|path| std::fs::read(path).ok())
    .map(|pem| {
        rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
            .filter_map(std::result::Result::ok)
            .collect()
    })
    .unwrap_or_default()
}

/// The start of a body, for error messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    text.chars().filter(|c| !c.is_control()).collect()
}

fn check_key(idempotency_key: &str) -> Result<()> {
    if idempotency_key.is_empty()
        || idempotency_key.len() > 200
        || !idempotency_key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(Error::Invalid {
            what: "idempotency key",
            why: "must be 1 to 200 printable ascii bytes".into(),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// NanoMDM.

/// A NanoMDM enrollment id (a device UDID, an EnrollmentID, or
/// `UDID:UserID` for a user channel).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnrollmentId(String);

impl EnrollmentId {
    /// Checks the id: 1 to 128 of `[A-Za-z0-9._:@-]` (no `,` or `/`, which
    /// would change the request path).
    pub fn parse(id: &str) -> Result<Self> {
        if id.is_empty()
            || id.len() > 128
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:@-".contains(&b))
        {
            return Err(Error::Invalid {
                what: "enrollment id",
                why: "must be 1 to 128 of [A-Za-z0-9._:@-]".into(),
            });
        }
        Ok(Self(id.to_owned()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// NanoMDM client settings.
#[derive(Debug, Clone)]
pub struct NanoMdmConfig {
    /// Base URL and TLS.
    pub http: HttpConfig,
    /// The API key (`-api` switch of nanomdm).
    pub api_key: Secret,
    /// Route name in the outbox.
    pub target: String,
}

/// One enrollment's result in a NanoMDM answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnrollmentStatus {
    /// APNs push id when the push went out.
    pub push_result: Option<String>,
    /// Why the push failed.
    pub push_error: Option<String>,
    /// Why enqueueing failed.
    pub command_error: Option<String>,
}

/// NanoMDM's API answer (`APIResult` in its OpenAPI document).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NanoMdmAnswer {
    /// Per enrollment id.
    pub status: BTreeMap<String, EnrollmentStatus>,
    /// Set when `nopush` was asked.
    pub no_push: bool,
    /// An error for the push as a whole.
    pub push_error: Option<String>,
    /// An error for the command as a whole.
    pub command_error: Option<String>,
    /// The enqueued command's UUID.
    pub command_uuid: Option<String>,
    /// The enqueued command's RequestType.
    pub request_type: Option<String>,
}

impl NanoMdmAnswer {
    /// Whether any enrollment or the whole request reports an error.
    pub fn has_errors(&self) -> bool {
        self.push_error.is_some()
            || self.command_error.is_some()
            || self
                .status
                .values()
                .any(|s| s.push_error.is_some() || s.command_error.is_some())
    }
}

fn opt_str(obj: &serde_json::Map<String, Value>, key: &str) -> Option<String> {
    obj.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Parses NanoMDM's JSON answer.
pub fn parse_nanomdm_answer(body: &[u8]) -> Result<NanoMdmAnswer> {
    let bad = |why: &str| Error::Answer {
        service: "nanomdm",
        why: why.into(),
    };
    let value: Value = serde_json::from_slice(body).map_err(|_| bad("not json"))?;
    let obj = value.as_object().ok_or_else(|| bad("not a json object"))?;
    let mut status = BTreeMap::new();
    if let Some(per_id) = obj.get("status").and_then(Value::as_object) {
        for (id, entry) in per_id {
            let entry = entry
                .as_object()
                .ok_or_else(|| bad("a status entry is not an object"))?;
            status.insert(
                id.clone(),
                EnrollmentStatus {
                    push_result: opt_str(entry, "push_result"),
                    push_error: opt_str(entry, "push_error"),
                    command_error: opt_str(entry, "command_error"),
                },
            );
        }
    }
    Ok(NanoMdmAnswer {
        status,
        no_push: obj.get("no_push").and_then(Value::as_bool).unwrap_or(false),
        push_error: opt_str(obj, "push_error"),
        command_error: opt_str(obj, "command_error"),
        command_uuid: opt_str(obj, "command_uuid"),
        request_type: opt_str(obj, "request_type"),
    })
}

/// Checks that `plist` is an XML command plist NanoMDM will accept: a dict
/// with a `CommandUUID` string and a `Command` dict with a `RequestType`.
pub fn check_command_plist(plist: &[u8]) -> Result<()> {
    let bad = |why: &str| Error::Invalid {
        what: "command plist",
        why: why.into(),
    };
    let value = plist::Value::from_reader_xml(plist).map_err(|_| bad("not an xml plist"))?;
    let dict = value.as_dictionary().ok_or_else(|| bad("not a dict"))?;
    dict.get("CommandUUID")
        .and_then(plist::Value::as_string)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("CommandUUID is missing"))?;
    dict.get("Command")
        .and_then(plist::Value::as_dictionary)
        .and_then(|c| c.get("RequestType"))
        .and_then(plist::Value::as_string)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("Command.RequestType is missing"))?;
    Ok(())
}

fn id_list(ids: &[EnrollmentId]) -> Result<String> {
    if ids.is_empty() || ids.len() > ENROLLMENT_IDS_MAX {
        return Err(Error::Invalid {
            what: "enrollment ids",
            why: format!("need 1 to {ENROLLMENT_IDS_MAX}"),
        });
    }
    Ok(ids
        .iter()
        .map(EnrollmentId::as_str)
        .collect::<Vec<_>>()
        .join(","))
}

/// A NanoMDM API client.
pub struct NanoMdmClient {
    http: Http,
    api_key: Secret,
    target: String,
}

impl NanoMdmClient {
    /// A client; checks the base URL and builds the TLS configuration.
    pub fn new(config: NanoMdmConfig) -> Result<Self> {
        Ok(Self {
            http: Http::new(&config.http, "nanomdm")?,
            api_key: config.api_key,
            target: config.target,
        })
    }

    /// The route name its entries carry.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// An outbox entry enqueueing `command_plist` for `ids` (NanoMDM pushes
    /// after enqueueing unless `no_push`).
    pub fn enqueue_entry(
        &self,
        ids: &[EnrollmentId],
        command_plist: &[u8],
        no_push: bool,
        idempotency_key: &str,
    ) -> Result<NewEntry> {
        check_command_plist(command_plist)?;
        check_key(idempotency_key)?;
        let query = if no_push { "?nopush=1" } else { "" };
        Ok(NewEntry {
            target: self.target.clone(),
            method: Method::Put,
            url_path: format!("/v1/enqueue/{}{query}", id_list(ids)?),
            content_type: "application/xml".into(),
            body: command_plist.to_vec(),
            idempotency_key: idempotency_key.to_owned(),
        })
    }

    /// An outbox entry asking NanoMDM to push to `ids`.
    pub fn push_entry(&self, ids: &[EnrollmentId], idempotency_key: &str) -> Result<NewEntry> {
        check_key(idempotency_key)?;
        Ok(NewEntry {
            target: self.target.clone(),
            method: Method::Get,
            url_path: format!("/v1/push/{}", id_list(ids)?),
            content_type: String::new(),
            body: Vec::new(),
            idempotency_key: idempotency_key.to_owned(),
        })
    }

    /// Enqueues a command now and parses the answer. 207 (some failed) is
    /// a success whose [`NanoMdmAnswer::has_errors`] is true.
    pub async fn enqueue(
        &self,
        ids: &[EnrollmentId],
        command_plist: &[u8],
        idempotency_key: &str,
    ) -> Result<NanoMdmAnswer> {
        let entry = self.enqueue_entry(ids, command_plist, false, idempotency_key)?;
        self.execute(&entry).await
    }

    /// Pushes now and parses the answer.
    pub async fn push(&self, ids: &[EnrollmentId], idempotency_key: &str) -> Result<NanoMdmAnswer> {
        let entry = self.push_entry(ids, idempotency_key)?;
        self.execute(&entry).await
    }

    async fn execute(&self, entry: &NewEntry) -> Result<NanoMdmAnswer> {
        match self
            .send_raw(
                entry.method,
                &entry.url_path,
                &entry.content_type,
                entry.body.clone(),
                &entry.idempotency_key,
            )
            .await
        {
            Delivery::Failed { error } => Err(Error::Transport {
                service: "nanomdm",
                error,
            }),
            Delivery::Answered { status, body, .. } if (200..300).contains(&status) => {
                parse_nanomdm_answer(&body)
            }
            Delivery::Answered { status, body, .. } => {
                let detail = match parse_nanomdm_answer(&body) {
                    Ok(answer) => answer
                        .command_error
                        .or(answer.push_error)
                        .or_else(|| {
                            answer
                                .status
                                .values()
                                .find_map(|s| s.command_error.clone().or(s.push_error.clone()))
                        })
                        .unwrap_or_else(|| "no detail".into()),
                    Err(_) => snippet(&body),
                };
                Err(Error::NanoMdm { status, detail })
            }
        }
    }

    async fn send_raw(
        &self,
        method: Method,
        url_path: &str,
        content_type: &str,
        body: Vec<u8>,
        idempotency_key: &str,
    ) -> Delivery {
        self.http
            .call(
                method,
                url_path,
                content_type,
                body,
                idempotency_key,
                Auth::Basic {
                    user: "nanomdm",
                    password: self.api_key.expose(),
                },
            )
            .await
    }
}

impl Transport for NanoMdmClient {
    fn send<'a>(&'a self, entry: &'a Entry) -> BoxFuture<'a, Delivery> {
        Box::pin(async move {
            if !entry.url_path.starts_with("/v1/") {
                return Delivery::Failed {
                    error: "nanomdm entries must address /v1/".into(),
                };
            }
            self.send_raw(
                entry.method,
                &entry.url_path,
                &entry.content_type,
                entry.body.clone(),
                &entry.idempotency_key,
            )
            .await
        })
    }
}

// ---------------------------------------------------------------------------
// Android Management API.

/// Gives the OAuth access token for AMAPI requests. Fetching and renewing
/// tokens (service-account JWT exchange) is outside this crate; a source
/// may cache and renew behind this call.
pub trait TokenSource: Send + Sync {
    /// The current token.
    fn token(&self) -> BoxFuture<'_, Result<Secret>>;
}

/// A fixed token from configuration.
#[derive(Debug, Clone)]
pub struct StaticToken(pub Secret);

impl TokenSource for StaticToken {
    fn token(&self) -> BoxFuture<'_, Result<Secret>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

/// A resource name (`enterprises/{e}`, `enterprises/{e}/devices/{d}`,
/// `enterprises/{e}/policies/{p}`), each id `[A-Za-z0-9._-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceName(String);

fn check_segment(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(Error::Invalid {
            what: "resource id",
            why: "must be 1 to 128 of [A-Za-z0-9._-]".into(),
        });
    }
    Ok(())
}

impl ResourceName {
    /// `enterprises/{enterprise}`.
    pub fn enterprise(enterprise: &str) -> Result<Self> {
        check_segment(enterprise)?;
        Ok(Self(format!("enterprises/{enterprise}")))
    }

    /// `enterprises/{enterprise}/devices/{device}`.
    pub fn device(enterprise: &str, device: &str) -> Result<Self> {
        check_segment(enterprise)?;
        check_segment(device)?;
        Ok(Self(format!("enterprises/{enterprise}/devices/{device}")))
    }

    /// `enterprises/{enterprise}/policies/{policy}`.
    pub fn policy(enterprise: &str, policy: &str) -> Result<Self> {
        check_segment(enterprise)?;
        check_segment(policy)?;
        Ok(Self(format!("enterprises/{enterprise}/policies/{policy}")))
    }

    /// Parses a full name as AMAPI returns it (`enterprises/LC…/devices/3a…`).
    pub fn parse(name: &str) -> Result<Self> {
        let parts: Vec<&str> = name.split('/').collect();
        match parts.as_slice() {
            ["enterprises", e] => Self::enterprise(e),
            ["enterprises", e, "devices", d] => Self::device(e, d),
            ["enterprises", e, "policies", p] => Self::policy(e, p),
            _ => Err(Error::Invalid {
                what: "resource name",
                why: "expected enterprises/{id}[/devices|policies/{id}]".into(),
            }),
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn is(&self, kind: &str) -> bool {
        match kind {
            "enterprise" => self.0.matches('/').count() == 1,
            other => self.0.split('/').nth(2) == Some(other),
        }
    }
}

/// AMAPI client settings.
#[derive(Debug, Clone)]
pub struct AmapiConfig {
    /// Base URL (`https://androidmanagement.googleapis.com`) and TLS.
    pub http: HttpConfig,
    /// Route name in the outbox.
    pub target: String,
}

/// `google.rpc.Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcStatus {
    /// The gRPC code.
    pub code: i64,
    /// The message.
    pub message: String,
}

/// A long-running operation (issueCommand's answer).
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// `enterprises/{e}/devices/{d}/operations/{o}`.
    pub name: String,
    /// Whether it finished.
    pub done: bool,
    /// The command, in `metadata` (type `CommandMetadata`… per the API).
    pub metadata: Option<Value>,
    /// The result when done.
    pub response: Option<Value>,
    /// The error when done and failed.
    pub error: Option<RpcStatus>,
}

/// A created enrollment token.
#[derive(Debug, Clone)]
pub struct EnrollmentToken {
    /// `enterprises/{e}/enrollmentTokens/{t}`.
    pub name: String,
    /// The token value a device enrolls with.
    pub value: Secret,
    /// When it expires (RFC 3339 text as sent).
    pub expiration_timestamp: Option<String>,
    /// The policy applied to enrolling devices.
    pub policy_name: Option<String>,
    /// JSON for the provisioning QR code.
    pub qr_code: Option<String>,
}

/// Google's error object (`{"error": {"code", "message", "status"}}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleError {
    /// HTTP-like code in the body.
    pub code: Option<i64>,
    /// The canonical status (`PERMISSION_DENIED`, `INVALID_ARGUMENT`, ...).
    pub status: Option<String>,
    /// Google's message (never contains our token).
    pub message: String,
}

/// Parses Google's error body; falls back to the start of the body.
pub fn parse_google_error(body: &[u8]) -> GoogleError {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let error = parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(Value::as_object);
    match error {
        Some(e) => GoogleError {
            code: e.get("code").and_then(Value::as_i64),
            status: opt_str(e, "status"),
            message: opt_str(e, "message")
                .map(|m| m.chars().take(500).collect())
                .unwrap_or_else(|| "no message".into()),
        },
        None => GoogleError {
            code: None,
            status: None,
            message: if body.is_empty() {
                "empty answer".into()
            } else {
                snippet(body)
            },
        },
    }
}

/// Parses an `Operation`.
pub fn parse_operation(body: &[u8]) -> Result<Operation> {
    let bad = |why: &str| Error::Answer {
        service: "android management api",
        why: why.into(),
    };
    let value: Value = serde_json::from_slice(body).map_err(|_| bad("not json"))?;
    let obj = value.as_object().ok_or_else(|| bad("not a json object"))?;
    Ok(Operation {
        name: opt_str(obj, "name").ok_or_else(|| bad("operation without name"))?,
        done: obj.get("done").and_then(Value::as_bool).unwrap_or(false),
        metadata: obj.get("metadata").cloned(),
        response: obj.get("response").cloned(),
        error: obj
            .get("error")
            .and_then(Value::as_object)
            .map(|e| RpcStatus {
                code: e.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: opt_str(e, "message").unwrap_or_default(),
            }),
    })
}

/// Parses an `EnrollmentToken`.
pub fn parse_enrollment_token(body: &[u8]) -> Result<EnrollmentToken> {
    let bad = |why: &str| Error::Answer {
        service: "android management api",
        why: why.into(),
    };
    let value: Value = serde_json::from_slice(body).map_err(|_| bad("not json"))?;
    let obj = value.as_object().ok_or_else(|| bad("not a json object"))?;
    Ok(EnrollmentToken {
        name: opt_str(obj, "name").ok_or_else(|| bad("token without name"))?,
        value: Secret::new(opt_str(obj, "value").ok_or_else(|| bad("token without value"))?),
        expiration_timestamp: opt_str(obj, "expirationTimestamp"),
        policy_name: opt_str(obj, "policyName"),
        qr_code: opt_str(obj, "qrCode"),
    })
}

fn json_body(value: &Value) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Invalid {
        what: "json body",
        why: e.to_string(),
    })
}

/// An Android Management API client.
pub struct AmapiClient {
    http: Http,
    tokens: Arc<dyn TokenSource>,
    target: String,
}

impl AmapiClient {
    /// A client; checks the base URL and builds the TLS configuration.
    pub fn new(config: AmapiConfig, tokens: Arc<dyn TokenSource>) -> Result<Self> {
        Ok(Self {
            http: Http::new(&config.http, "android management api")?,
            tokens,
            target: config.target,
        })
    }

    /// The route name its entries carry.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// An outbox entry for `POST /v1/{device}:issueCommand`. `command` is
    /// the `Command` object and must have a `type`.
    pub fn issue_command_entry(
        &self,
        device: &ResourceName,
        command: &Value,
        idempotency_key: &str,
    ) -> Result<NewEntry> {
        check_key(idempotency_key)?;
        if !device.is("devices") {
            return Err(Error::Invalid {
                what: "device name",
                why: "expected enterprises/{id}/devices/{id}".into(),
            });
        }
        if command
            .get("type")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(Error::Invalid {
                what: "command",
                why: "a command needs a type".into(),
            });
        }
        self.json_entry(
            Method::Post,
            format!("/v1/{}:issueCommand", device.as_str()),
            command,
            idempotency_key,
        )
    }

    /// An outbox entry for `POST /v1/{enterprise}/enrollmentTokens`.
    pub fn enrollment_token_entry(
        &self,
        enterprise: &ResourceName,
        token: &Value,
        idempotency_key: &str,
    ) -> Result<NewEntry> {
        check_key(idempotency_key)?;
        if !enterprise.is("enterprise") {
            return Err(Error::Invalid {
                what: "enterprise name",
                why: "expected enterprises/{id}".into(),
            });
        }
        self.json_entry(
            Method::Post,
            format!("/v1/{}/enrollmentTokens", enterprise.as_str()),
            token,
            idempotency_key,
        )
    }

    /// An outbox entry for `PATCH /v1/{policy}?updateMask=a,b` (an empty
    /// mask replaces the whole policy).
    pub fn patch_policy_entry(
        &self,
        policy: &ResourceName,
        body: &Value,
        update_mask: &[&str],
        idempotency_key: &str,
    ) -> Result<NewEntry> {
        check_key(idempotency_key)?;
        if !policy.is("policies") {
            return Err(Error::Invalid {
                what: "policy name",
                why: "expected enterprises/{id}/policies/{id}".into(),
            });
        }
        if update_mask.iter().any(|f| {
            f.is_empty()
                || !f
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        }) {
            return Err(Error::Invalid {
                what: "update mask",
                why: "field paths are [A-Za-z0-9_.]".into(),
            });
        }
        let query = if update_mask.is_empty() {
            String::new()
        } else {
            format!("?updateMask={}", update_mask.join(","))
        };
        self.json_entry(
            Method::Patch,
            format!("/v1/{}{query}", policy.as_str()),
            body,
            idempotency_key,
        )
    }

    fn json_entry(
        &self,
        method: Method,
        url_path: String,
        body: &Value,
        idempotency_key: &str,
    ) -> Result<NewEntry> {
        Ok(NewEntry {
            target: self.target.clone(),
            method,
            url_path,
            content_type: "application/json".into(),
            body: json_body(body)?,
            idempotency_key: idempotency_key.to_owned(),
        })
    }

    /// Issues a command now.
    pub async fn issue_command(
        &self,
        device: &ResourceName,
        command: &Value,
        idempotency_key: &str,
    ) -> Result<Operation> {
        let entry = self.issue_command_entry(device, command, idempotency_key)?;
        parse_operation(&self.execute(&entry).await?)
    }

    /// Creates an enrollment token now.
    pub async fn create_enrollment_token(
        &self,
        enterprise: &ResourceName,
        token: &Value,
        idempotency_key: &str,
    ) -> Result<EnrollmentToken> {
        let entry = self.enrollment_token_entry(enterprise, token, idempotency_key)?;
        parse_enrollment_token(&self.execute(&entry).await?)
    }

    /// Patches a policy now; returns the policy as AMAPI answers it.
    pub async fn patch_policy(
        &self,
        policy: &ResourceName,
        body: &Value,
        update_mask: &[&str],
        idempotency_key: &str,
    ) -> Result<Value> {
        let entry = self.patch_policy_entry(policy, body, update_mask, idempotency_key)?;
        serde_json::from_slice(&self.execute(&entry).await?).map_err(|_| Error::Answer {
            service: "android management api",
            why: "policy is not json".into(),
        })
    }

    async fn execute(&self, entry: &NewEntry) -> Result<Vec<u8>> {
        let token = self.tokens.token().await?;
        match self
            .send_raw(
                entry.method,
                &entry.url_path,
                &entry.content_type,
                entry.body.clone(),
                &entry.idempotency_key,
                &token,
            )
            .await
        {
            Delivery::Failed { error } => Err(Error::Transport {
                service: "android management api",
                error,
            }),
            Delivery::Answered { status, body, .. } if (200..300).contains(&status) => Ok(body),
            Delivery::Answered { status, body, .. } => Err(Error::Google {
                status,
                error: parse_google_error(&body),
            }),
        }
    }

    async fn send_raw(
        &self,
        method: Method,
        url_path: &str,
        content_type: &str,
        body: Vec<u8>,
        idempotency_key: &str,
        token: &Secret,
    ) -> Delivery {
        self.http
            .call(
                method,
                url_path,
                content_type,
                body,
                idempotency_key,
                Auth::Bearer(token.expose()),
            )
            .await
    }
}

impl Transport for AmapiClient {
    fn send<'a>(&'a self, entry: &'a Entry) -> BoxFuture<'a, Delivery> {
        Box::pin(async move {
            if !entry.url_path.starts_with("/v1/enterprises/") {
                return Delivery::Failed {
                    error: "amapi entries must address /v1/enterprises/".into(),
                };
            }
            let token = match self.tokens.token().await {
                Ok(token) => token,
                Err(e) => {
                    return Delivery::Failed {
                        error: e.to_string(),
                    };
                }
            };
            self.send_raw(
                entry.method,
                &entry.url_path,
                &entry.content_type,
                entry.body.clone(),
                &entry.idempotency_key,
                &token,
            )
            .await
        })
    }
}

/// Builds the HTTP Basic header value NanoMDM expects (for stand-ins and
/// diagnostics): `Basic base64("nanomdm:" + key)`.
pub fn nanomdm_basic_auth(api_key: &Secret) -> Zeroizing<String> {
    let raw = Zeroizing::new(format!("nanomdm:{}", api_key.expose()));
    Zeroizing::new(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw.as_bytes())
    ))
}
