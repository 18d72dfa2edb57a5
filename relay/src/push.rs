//! Push hints for devices that are not connected: "something is waiting",
//! nothing else. No content, no sender, no conversation ever leaves for
//! Apple or Google.
//!
//! APNs: HTTP/2 to `{base}/3/device/{token}`, authenticated by an ES256
//! provider token (JWT, renewed before Apple's one-hour limit), a
//! background push (`content-available`). FCM: HTTP v1
//! `{base}/v1/projects/{project}/messages:send` with an OAuth bearer token
//! and a data-only message. Hints are coalesced per device: at most one per
//! [`PushConfig::coalesce`] interval.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kontor_provisioning::DeviceId;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::store::PushTarget;

/// The only APNs payload Kontor sends.
pub const APNS_PAYLOAD: &str = r#"{"aps":{"content-available":1}}"#;
/// Provider tokens are renewed after this long (Apple refuses tokens older
/// than one hour and rate-limits renewals faster than every 20 minutes).
const JWT_LIFETIME: Duration = Duration::from_secs(50 * 60);

/// APNs settings.
#[derive(Clone)]
pub struct ApnsConfig {
    /// `https://api.push.apple.com` in production.
    pub base_url: String,
    /// The Apple developer team id (JWT `iss`).
    pub team_id: String,
    /// The key id of the signing key (JWT `kid`).
    pub key_id: String,
    /// The P-256 signing key from Apple, PKCS#8 DER.
    pub key_pkcs8_der: Zeroizing<Vec<u8>>,
    /// The app's bundle id (`apns-topic`).
    pub topic: String,
}

/// FCM settings.
#[derive(Clone)]
pub struct FcmConfig {
    /// `https://fcm.googleapis.com` in production.
    pub base_url: String,
    /// The Firebase project id.
    pub project_id: String,
    /// An OAuth 2.0 access token for the FCM scope. Obtaining and renewing
    /// it from a service account is the deployment's job for now.
    pub access_token: Zeroizing<String>,
}

/// Push settings.
#[derive(Clone)]
pub struct PushConfig {
    /// APNs, if configured.
    pub apns: Option<ApnsConfig>,
    /// FCM, if configured.
    pub fcm: Option<FcmConfig>,
    /// At most one hint per device per this interval.
    pub coalesce: Duration,
    /// Trust anchors for the push services; empty means the system's.
    pub roots: Vec<Vec<u8>>,
    /// Speak HTTP/2 without TLS (test stand-ins only).
    pub danger_plaintext_http2: bool,
}

/// What a hint did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Sent to the push service, which accepted it.
    Sent,
    /// A hint for this device went out less than the interval ago.
    Coalesced,
    /// No push service is configured for this target's kind.
    NotConfigured,
}

/// Sends push hints.
pub struct Pusher {
    http: reqwest::Client,
    config: PushConfig,
    apns_key: Option<EcdsaKeyPair>,
    jwt: Mutex<Option<(String, Instant)>>,
    last: Mutex<HashMap<DeviceId, Instant>>,
}

impl std::fmt::Debug for Pusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pusher").finish_non_exhaustive()
    }
}

/// The APNs provider token: `base64url(header) . base64url(claims) . base64url(r || s)`.
pub fn apns_jwt(
    key: &EcdsaKeyPair,
    team_id: &str,
    key_id: &str,
    issued_at_s: u64,
) -> Result<String> {
    let header = serde_json::json!({ "alg": "ES256", "kid": key_id });
    let claims = serde_json::json!({ "iss": team_id, "iat": issued_at_s });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key
        .sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes())
        .map_err(|_| Error::Config("cannot sign the APNs provider token".into()))?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.as_ref())
    ))
}

/// The FCM message: data only, high priority, collapsing, nothing readable.
pub fn fcm_message(token: &str) -> serde_json::Value {
    serde_json::json!({
        "message": {
            "token": token,
            "android": { "priority": "high", "collapse_key": "kontor", "ttl": "86400s" },
            "data": { "k": "1" }
        }
    })
}

impl Pusher {
    /// A pusher from its configuration; checks the APNs key.
    pub fn new(config: PushConfig) -> Result<Self> {
        let apns_key = match &config.apns {
            Some(apns) => Some(
                EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &apns.key_pkcs8_der,
                    &ring::rand::SystemRandom::new(),
                )
                .map_err(|_| Error::Config("the APNs key is not a PKCS#8 P-256 key".into()))?,
            ),
            None => None,
        };
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(4);
        let mut roots = rustls::RootCertStore::empty();
        for der in &config.roots {
            roots
                .add(rustls::pki_types::CertificateDer::from(der.clone()))
                .map_err(|e| Error::Config(format!("push trust anchor: {e}")))?;
        }
        if roots.is_empty() {
            roots.add_parsable_certificates(rustls_native_roots());
        }
        let mut tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // Always our rustls configuration (ring): reqwest has no provider of its own.
        builder = builder.tls_backend_preconfigured(tls);
        if config.danger_plaintext_http2 {
            builder = builder.http2_prior_knowledge();
        }
        let http = builder
            .build()
            .map_err(|e| Error::Config(format!("push client: {e}")))?;
        Ok(Self {
            http,
            config,
            apns_key,
            jwt: Mutex::new(None),
            last: Mutex::new(HashMap::new()),
        })
    }

    /// Sends a hint to `device` unless one went out within the interval.
    pub async fn hint(&self, device: DeviceId, target: &PushTarget) -> Result<PushOutcome> {
        let configured = match target {
            PushTarget::Apns(_) => self.config.apns.is_some(),
            PushTarget::Fcm(_) => self.config.fcm.is_some(),
        };
        if !configured {
            return Ok(PushOutcome::NotConfigured);
        }
        {
            let mut last = self
                .last
                .lock()
                .map_err(|_| Error::Config("push state poisoned".into()))?;
            let now = Instant::now();
            if last
                .get(&device)
                .is_some_and(|at| now.duration_since(*at) < self.config.coalesce)
            {
                return Ok(PushOutcome::Coalesced);
            }
            if last.len() > 100_000 {
                let window = self.config.coalesce;
                last.retain(|_, at| now.duration_since(*at) < window);
            }
            last.insert(device, now);
        }
        match target {
            PushTarget::Apns(token) => self.send_apns(token).await?,
            PushTarget::Fcm(token) => self.send_fcm(token).await?,
        }
        Ok(PushOutcome::Sent)
    }

    fn provider_token(&self, apns: &ApnsConfig, key: &EcdsaKeyPair) -> Result<String> {
        let mut cached = self
            .jwt
            .lock()
            .map_err(|_| Error::Config("push state poisoned".into()))?;
        if let Some((jwt, at)) = cached.as_ref()
            && at.elapsed() < JWT_LIFETIME
        {
            return Ok(jwt.clone());
        }
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let jwt = apns_jwt(key, &apns.team_id, &apns.key_id, now_s)?;
        *cached = Some((jwt.clone(), Instant::now()));
        Ok(jwt)
    }

    async fn send_apns(&self, token: &str) -> Result<()> {
        let (Some(apns), Some(key)) = (&self.config.apns, &self.apns_key) else {
            return Ok(());
        };
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::BadRequest("APNs device token must be hex".into()));
        }
        let jwt = self.provider_token(apns, key)?;
        let expiration = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() + 86_400)
            .unwrap_or(0);
        let response = self
            .http
            .post(format!(
                "{}/3/device/{token}",
                apns.base_url.trim_end_matches('/')
            ))
            .header("authorization", format!("bearer {jwt}"))
            .header("apns-topic", &apns.topic)
            .header("apns-push-type", "background")
            .header("apns-priority", "5")
            .header("apns-expiration", expiration.to_string())
            .header("apns-collapse-id", "kontor")
            .header("content-type", "application/json")
            .body(APNS_PAYLOAD)
            .send()
            .await
            .map_err(|e| Error::Push(format!("APNs request failed: {e}")))?;
        if !response.status().is_success() {
            return Err(Error::Push(format!("APNs answered {}", response.status())));
        }
        Ok(())
    }

    async fn send_fcm(&self, token: &str) -> Result<()> {
        let Some(fcm) = &self.config.fcm else {
            return Ok(());
        };
        let response = self
            .http
            .post(format!(
                "{}/v1/projects/{}/messages:send",
                fcm.base_url.trim_end_matches('/'),
                fcm.project_id
            ))
            .bearer_auth(fcm.access_token.as_str())
            .json(&fcm_message(token))
            .send()
            .await
            .map_err(|e| Error::Push(format!("FCM request failed: {e}")))?;
        if !response.status().is_success() {
            return Err(Error::Push(format!("FCM answered {}", response.status())));
        }
        Ok(())
    }
}

/// The system's trust anchors (Debian's ca-certificates), as DER.
fn rustls_native_roots() -> Vec<rustls::pki_types::CertificateDer<'static>> {
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

/// Shared handle used by the relay.
pub type SharedPusher = Arc<Pusher>;
