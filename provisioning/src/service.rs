//! The provisioning service: enrollment, renewal, revocation and CRLs on
//! top of the [`Pki`] and a [`Store`]. Time comes in as an argument; the
//! HTTP shell passes the clock.
//!
//! Every enrollment and renewal attempt, accepted or refused, is written to
//! the [`AttemptLog`](crate::store::AttemptLog) with its outcome code.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rand_core::CryptoRng;
use ring::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use time::OffsetDateTime;

use crate::csr::{parse_identity_key, verify_csr};
use crate::error::{Error, Result};
use crate::pki::{DeviceCertRequest, IssuedCertificate, Pki};
use crate::store::{
    AttemptKind, AttemptRecord, CertificateRecord, Erased, RevocationRecord, Store, TokenBinding,
    TokenRecord, UserStatus,
};
use crate::token::{self, EnrollmentToken, TokenInfo, TokenSpec};
use crate::types::{CertSerial, DeviceId};

/// Domain separation for the renewal proof of possession.
pub const RENEW_PROOF_CONTEXT: &[u8] = b"kontor-renew-v1\0";

/// Platforms a device may name.
pub const PLATFORMS: &[&str] = &["ios", "ipados", "android", "macos", "windows", "linux"];

/// Longest device name, in characters.
pub const DEVICE_NAME_CHARS_MAX: usize = 64;

/// Serials the relay's TLS verifier must refuse, shared with it. Updated in
/// the same call that records a revocation, so a revocation takes effect at
/// once, without waiting for a CRL reload.
#[derive(Clone, Debug, Default)]
pub struct DenyList(Arc<RwLock<HashSet<CertSerial>>>);

impl DenyList {
    /// Whether `serial` (raw serial bytes from a certificate) is revoked.
    pub fn contains_raw(&self, serial: &[u8]) -> bool {
        CertSerial::from_slice(serial).is_some_and(|s| self.contains(&s))
    }

    /// Whether `serial` is revoked.
    pub fn contains(&self, serial: &CertSerial) -> bool {
        self.0
            .read()
            .map(|set| set.contains(serial))
            .unwrap_or(true)
    }

    fn insert(&self, serial: CertSerial) {
        if let Ok(mut set) = self.0.write() {
            set.insert(serial);
        }
    }

    fn extend(&self, serials: impl IntoIterator<Item = CertSerial>) {
        if let Ok(mut set) = self.0.write() {
            set.extend(serials);
        }
    }

    /// Number of revoked serials.
    pub fn len(&self) -> usize {
        self.0.read().map(|set| set.len()).unwrap_or(0)
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the service answers besides certificates.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Where the device connects after enrollment.
    pub relay_url: String,
    /// The policy handed to devices, opaque JSON from configuration until
    /// managed-config provides the model.
    pub policy: serde_json::Value,
}

/// A device enrollment request, as received.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The enrollment token (`kt1_...`).
    pub token: String,
    /// PKCS#10 request, PEM.
    pub csr: String,
    /// X25519 identity public key, 64 hex digits.
    pub identity_key: String,
    /// One of [`PLATFORMS`].
    pub platform: String,
    /// Device name, at most [`DEVICE_NAME_CHARS_MAX`] characters.
    pub device_name: String,
    /// The user, as the EMM passed it; required for department and
    /// allow-list tokens, optional (must match) for user tokens.
    #[serde(default)]
    pub user: Option<String>,
}

/// How the device proved it holds the key of the certificate it renews.
#[derive(Clone, Debug)]
pub enum Possession {
    /// The certificate came from a mutual-TLS handshake, which proved it.
    Handshake,
    /// The certificate came in the request body; the device signed
    /// `RENEW_PROOF_CONTEXT || new CSR DER` with the certificate's key
    /// (ECDSA P-256 SHA-256, DER signature). May be `None` when the new CSR
    /// uses the same key as the certificate: then the CSR's own signature is
    /// the proof.
    Body(Option<Vec<u8>>),
}

/// A renewal request, independent of where the certificate came from.
#[derive(Clone, Debug)]
pub struct RenewRequest {
    /// The device's current certificate, DER.
    pub cert_der: Vec<u8>,
    /// How possession of its key was shown.
    pub possession: Possession,
    /// The new CSR, DER.
    pub csr_der: Vec<u8>,
}

/// The answer to a successful enrollment or renewal.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Enrolled {
    /// The device id.
    pub device_id: String,
    /// The new certificate's serial (hex).
    pub serial: String,
    /// The device certificate followed by its issuing CA, PEM.
    pub chain: String,
    /// The root CA, PEM (the trust anchor for the relay's server
    /// certificate check, if the relay uses the organisation CA).
    pub root: String,
    /// End of validity, Unix seconds.
    pub not_after: i64,
    /// Where to connect.
    pub relay_url: String,
    /// The device policy (opaque JSON for now).
    pub policy: serde_json::Value,
}

struct CachedCrl {
    der: Arc<Vec<u8>>,
    this_update: OffsetDateTime,
}

/// What provisioning reports to whoever keeps the audit trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProvisioningEvent {
    /// An enrollment or renewal attempt, accepted or refused.
    Attempt(AttemptRecord),
    /// A certificate was revoked.
    Revoked {
        /// Its serial.
        serial: CertSerial,
        /// Its device.
        device: DeviceId,
        /// Its user.
        user: String,
        /// Why.
        reason: String,
    },
}

/// The service: PKI + store + deny list + CRL cache.
pub struct Service<S> {
    events: Option<tokio::sync::mpsc::UnboundedSender<ProvisioningEvent>>,
    pki: RwLock<Pki>,
    store: S,
    config: ServiceConfig,
    deny: DenyList,
    crls: Mutex<HashMap<u32, CachedCrl>>,
    crl_number: AtomicU64,
}

impl<S> std::fmt::Debug for Service<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

fn os_rng() -> impl CryptoRng {
    rand_core::UnwrapErr(rand::rngs::SysRng)
}

/// The stored form of an issued certificate; the caller fills in who and
/// where from.
fn certificate_record(
    cert: &IssuedCertificate,
    identity_key: [u8; 32],
    now: OffsetDateTime,
) -> CertificateRecord {
    CertificateRecord {
        serial: cert.serial,
        device_id: cert.device_id,
        user_id: String::new(),
        issuer_generation: cert.issuer_generation,
        not_before: unix(cert.not_before),
        not_after: unix(cert.not_after),
        der: cert.der.clone(),
        identity_key,
        platform: String::new(),
        device_name: String::new(),
        token_id: None,
        renewed_from: None,
        issued_at: unix(now),
    }
}

fn check_text(field: &'static str, value: &str, chars_max: usize) -> Result<()> {
    if value.is_empty() || value.chars().count() > chars_max || value.chars().any(char::is_control)
    {
        return Err(Error::InvalidField {
            field,
            reason: "empty, too long or not printable",
        });
    }
    Ok(())
}

impl<S: Store> Service<S> {
    /// A service over a loaded PKI and a store; loads the deny list from
    /// the store's revocations.
    pub async fn new(pki: Pki, store: S, config: ServiceConfig) -> Result<Self> {
        let service = Service {
            events: None,
            pki: RwLock::new(pki),
            store,
            config,
            deny: DenyList::default(),
            crls: Mutex::new(HashMap::new()),
            crl_number: AtomicU64::new(0),
        };
        service.reload_revocations().await?;
        Ok(service)
    }

    /// Reports every attempt and revocation to `events` (the audit trail).
    pub fn with_events(
        mut self,
        events: tokio::sync::mpsc::UnboundedSender<ProvisioningEvent>,
    ) -> Self {
        self.events = Some(events);
        self
    }

    fn report(&self, event: ProvisioningEvent) {
        if let Some(events) = &self.events {
            let _ = events.send(event);
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The deny list to hand to the relay's TLS verifier.
    pub fn deny_list(&self) -> DenyList {
        self.deny.clone()
    }

    /// Re-reads revocations from the store (another node may have revoked)
    /// and drops cached CRLs when it found new ones. Adds to the deny list,
    /// never takes from it: a revocation this node records while the read
    /// is under way is in the list already and stays there. Returns how
    /// many serials were new.
    pub async fn reload_revocations(&self) -> Result<usize> {
        let serials: Vec<CertSerial> = self
            .store
            .revocations()
            .await?
            .into_iter()
            .map(|r| r.serial)
            .filter(|s| !self.deny.contains(s))
            .collect();
        let new = serials.len();
        if new > 0 {
            self.deny.extend(serials);
            self.crls_lock()?.clear();
        }
        Ok(new)
    }

    fn pki_read(&self) -> Result<std::sync::RwLockReadGuard<'_, Pki>> {
        self.pki
            .read()
            .map_err(|_| Error::PkiState("pki lock poisoned".into()))
    }

    fn crls_lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<u32, CachedCrl>>> {
        self.crls
            .lock()
            .map_err(|_| Error::PkiState("crl cache lock poisoned".into()))
    }

    /// The root certificate, PEM.
    pub fn root_pem(&self) -> Result<String> {
        Ok(self.pki_read()?.root_pem().to_owned())
    }

    /// Rotates the issuing CA (see [`Pki::rotate_issuing`]).
    pub fn rotate_issuing(
        &self,
        kek: &crate::Kek,
        root_key_file: Option<&std::path::Path>,
        now: OffsetDateTime,
    ) -> Result<u32> {
        let mut pki = self
            .pki
            .write()
            .map_err(|_| Error::PkiState("pki lock poisoned".into()))?;
        pki.rotate_issuing(kek, root_key_file, now, &mut os_rng())
    }

    // --- tokens ------------------------------------------------------------

    /// Creates a token; the returned secret exists nowhere else.
    pub async fn create_token(
        &self,
        spec: &TokenSpec,
        now: OffsetDateTime,
    ) -> Result<(EnrollmentToken, TokenInfo)> {
        let (token, record) = token::generate(spec, unix(now), &mut os_rng())?;
        self.store.insert_token(&record).await?;
        Ok((token, TokenInfo::from(&record)))
    }

    /// All tokens, without secrets.
    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>> {
        Ok(self
            .store
            .tokens()
            .await?
            .iter()
            .map(TokenInfo::from)
            .collect())
    }

    /// Revokes a token.
    pub async fn revoke_token(&self, id: &str, now: OffsetDateTime) -> Result<()> {
        if self.store.revoke_token(id, unix(now)).await? {
            Ok(())
        } else {
            Err(Error::NotFound("token"))
        }
    }

    // --- enrollment ----------------------------------------------------------

    /// Records a request refused before it could be read (oversize body,
    /// malformed JSON).
    pub async fn record_refused(&self, kind: AttemptKind, error: &Error, now: OffsetDateTime) {
        let attempt = AttemptRecord {
            at: unix(now),
            kind: kind.as_str().to_owned(),
            outcome: error.code().to_owned(),
            token_id: None,
            user_id: None,
            device_id: None,
            serial: None,
        };
        self.record(&attempt).await;
    }

    async fn record(&self, attempt: &AttemptRecord) {
        self.report(ProvisioningEvent::Attempt(attempt.clone()));
        if let Err(e) = self.store.record_attempt(attempt).await {
            tracing::error!(error = %e, outcome = %attempt.outcome, "could not record enrollment attempt");
        }
    }

    /// Enrolls a device: checks request, token and user, issues the
    /// certificate, counts the token use and stores the certificate.
    pub async fn enroll(&self, request: &EnrollRequest, now: OffsetDateTime) -> Result<Enrolled> {
        let mut attempt = AttemptRecord {
            at: unix(now),
            kind: AttemptKind::Enroll.as_str().to_owned(),
            outcome: String::new(),
            token_id: None,
            user_id: None,
            device_id: None,
            serial: None,
        };
        let result = self.enroll_inner(request, now, &mut attempt).await;
        attempt.outcome = match &result {
            Ok(_) => "accepted".to_owned(),
            Err(e) => e.code().to_owned(),
        };
        self.record(&attempt).await;
        result
    }

    async fn enroll_inner(
        &self,
        request: &EnrollRequest,
        now: OffsetDateTime,
        attempt: &mut AttemptRecord,
    ) -> Result<Enrolled> {
        // 1. The request itself: nothing stateful yet.
        if !PLATFORMS.contains(&request.platform.as_str()) {
            return Err(Error::InvalidField {
                field: "platform",
                reason: "unknown platform",
            });
        }
        check_text("device_name", &request.device_name, DEVICE_NAME_CHARS_MAX)?;
        if let Some(user) = &request.user {
            check_text("user", user, 256)?;
        }
        let identity_key = parse_identity_key(&request.identity_key)?;
        let csr = verify_csr(&crate::csr::csr_pem_to_der(&request.csr)?)?;

        // 2. The token.
        let presented = token::parse(&request.token)?;
        attempt.token_id = Some(presented.id.clone());
        let record = self
            .store
            .token(&presented.id)
            .await?
            .ok_or(Error::UnknownToken)?;
        token::check(&presented, &record, unix(now))?;

        // 3. The user.
        let user_id = self.admitted_user(&record, request.user.as_deref()).await?;
        attempt.user_id = Some(user_id.clone());
        if let Some(user) = self.store.user(&user_id).await?
            && user.status == UserStatus::Blocked
        {
            return Err(Error::UserBlocked);
        }

        // 4. Issue in memory, then count the use; only then store and answer.
        let mut rng = os_rng();
        let device_id = DeviceId::random(&mut rng);
        attempt.device_id = Some(device_id.to_string());
        let issued = {
            let pki = self.pki_read()?;
            let cert_request = DeviceCertRequest {
                csr: &csr,
                device_id,
                identity_key,
                serial: CertSerial::random(&mut rng),
            };
            let issued = pki.issue_device(&cert_request, now)?;
            let chain = pki.chain_pem(&issued);
            (issued, chain, pki.root_pem().to_owned())
        };
        if !self.store.consume_token(&record.id, unix(now)).await? {
            // Another enrollment took the last use (or an admin revoked the
            // token) since we read it; the certificate is discarded.
            return Err(Error::TokenUsedUp);
        }
        let (cert, chain, root) = issued;
        let stored = CertificateRecord {
            user_id: user_id.clone(),
            platform: request.platform.clone(),
            device_name: request.device_name.clone(),
            token_id: Some(record.id.clone()),
            ..certificate_record(&cert, identity_key, now)
        };
        self.store.insert_certificate(&stored).await?;
        attempt.serial = Some(cert.serial.to_string());
        Ok(self.answer(&cert, chain, root))
    }

    async fn admitted_user(&self, token: &TokenRecord, requested: Option<&str>) -> Result<String> {
        match &token.binding {
            TokenBinding::User(user) => match requested {
                Some(requested) if requested != user => Err(Error::UserNotAllowed),
                _ => Ok(user.clone()),
            },
            TokenBinding::Department(department) => {
                let requested = requested.ok_or(Error::InvalidField {
                    field: "user",
                    reason: "required for a department token",
                })?;
                match self.store.user(requested).await? {
                    Some(user) if user.department.as_deref() == Some(department) => {
                        Ok(requested.to_owned())
                    }
                    _ => Err(Error::UserNotAllowed),
                }
            }
            TokenBinding::AllowListEntry(entry) => {
                let requested = requested.ok_or(Error::InvalidField {
                    field: "user",
                    reason: "required for an allow-list token",
                })?;
                if token::allow_list_matches(entry, requested)
                    && self.store.allow_list_contains(entry).await?
                {
                    Ok(requested.to_owned())
                } else {
                    Err(Error::UserNotAllowed)
                }
            }
        }
    }

    fn answer(&self, cert: &IssuedCertificate, chain: String, root: String) -> Enrolled {
        Enrolled {
            device_id: cert.device_id.to_string(),
            serial: cert.serial.to_string(),
            chain,
            root,
            not_after: unix(cert.not_after),
            relay_url: self.config.relay_url.clone(),
            policy: self.config.policy.clone(),
        }
    }

    // --- renewal ---------------------------------------------------------------

    /// Renews a device certificate: the current one must be ours, known,
    /// unexpired and unrevoked, its user not blocked, and possession of its
    /// key shown. The new certificate keeps the device id and identity key.
    pub async fn renew(&self, request: &RenewRequest, now: OffsetDateTime) -> Result<Enrolled> {
        let mut attempt = AttemptRecord {
            at: unix(now),
            kind: AttemptKind::Renew.as_str().to_owned(),
            outcome: String::new(),
            token_id: None,
            user_id: None,
            device_id: None,
            serial: None,
        };
        let result = self.renew_inner(request, now, &mut attempt).await;
        attempt.outcome = match &result {
            Ok(_) => "accepted".to_owned(),
            Err(e) => e.code().to_owned(),
        };
        self.record(&attempt).await;
        result
    }

    async fn renew_inner(
        &self,
        request: &RenewRequest,
        now: OffsetDateTime,
        attempt: &mut AttemptRecord,
    ) -> Result<Enrolled> {
        let info = self.pki_read()?.verify_device_cert(&request.cert_der)?;
        attempt.device_id = Some(info.device_id.to_string());
        attempt.serial = Some(info.serial.to_string());
        let record = self
            .store
            .certificate(&info.serial)
            .await?
            .ok_or(Error::UnknownCertificate)?;
        if record.der != request.cert_der {
            return Err(Error::UnknownCertificate);
        }
        attempt.user_id = Some(record.user_id.clone());
        if now < info.not_before || now >= info.not_after {
            return Err(Error::CertificateExpired);
        }
        if self.deny.contains(&info.serial) {
            return Err(Error::CertificateRevoked);
        }
        let csr = verify_csr(&request.csr_der)?;
        match &request.possession {
            Possession::Handshake => {}
            Possession::Body(None) if csr.public_key == info.public_key => {}
            Possession::Body(None) => return Err(Error::ProofOfPossession),
            Possession::Body(Some(signature)) => {
                let mut message = RENEW_PROOF_CONTEXT.to_vec();
                message.extend_from_slice(&request.csr_der);
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &info.public_key.as_bytes()[..])
                    .verify(&message, signature)
                    .map_err(|_| Error::ProofOfPossession)?;
            }
        }
        if let Some(user) = self.store.user(&record.user_id).await?
            && user.status == UserStatus::Blocked
        {
            return Err(Error::UserBlocked);
        }
        let (cert, chain, root) = {
            let pki = self.pki_read()?;
            let cert_request = DeviceCertRequest {
                csr: &csr,
                device_id: info.device_id,
                identity_key: info.identity_key,
                serial: CertSerial::random(&mut os_rng()),
            };
            let issued = pki.issue_device(&cert_request, now)?;
            let chain = pki.chain_pem(&issued);
            (issued, chain, pki.root_pem().to_owned())
        };
        let stored = CertificateRecord {
            user_id: record.user_id.clone(),
            platform: record.platform.clone(),
            device_name: record.device_name.clone(),
            renewed_from: Some(info.serial),
            ..certificate_record(&cert, info.identity_key, now)
        };
        self.store.insert_certificate(&stored).await?;
        attempt.serial = Some(cert.serial.to_string());
        Ok(self.answer(&cert, chain, root))
    }

    // --- revocation ----------------------------------------------------------

    /// Revokes every certificate of a device. Returns the serials newly revoked.
    pub async fn revoke_device(
        &self,
        device: &DeviceId,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<CertSerial>> {
        let certs = self.store.certificates_of_device(device).await?;
        self.revoke_all(certs, reason, now).await
    }

    /// Revokes every certificate of every device of a user.
    pub async fn revoke_user(
        &self,
        user_id: &str,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<CertSerial>> {
        let certs = self.store.certificates_of_user(user_id).await?;
        self.revoke_all(certs, reason, now).await
    }

    /// Erases a user (DSGVO Art. 17): every certificate of theirs not yet
    /// revoked is revoked first (deny-list at once, CRL next), then every
    /// row naming them or their devices is deleted in one transaction
    /// ([`ErasureStore::erase_user`](crate::store::ErasureStore::erase_user)).
    /// The revocations stay, naming serials only, so the devices stay
    /// refused. Idempotent: erasing an erased user revokes and deletes
    /// nothing.
    pub async fn erase_user(
        &self,
        user_id: &str,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<Erased> {
        let certs = self.store.certificates_of_user(user_id).await?;
        if !certs.is_empty() {
            self.revoke_all(certs, reason, now).await?;
        }
        self.store.erase_user(user_id).await
    }

    async fn revoke_all(
        &self,
        certs: Vec<CertificateRecord>,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<CertSerial>> {
        if certs.is_empty() {
            return Err(Error::NotFound("certificate"));
        }
        let mut revoked = Vec::new();
        for cert in certs {
            let record = RevocationRecord {
                serial: cert.serial,
                issuer_generation: cert.issuer_generation,
                revoked_at: unix(now),
                not_after: cert.not_after,
                reason: reason.to_owned(),
            };
            if self.store.insert_revocation(&record).await? {
                revoked.push(cert.serial);
                self.report(ProvisioningEvent::Revoked {
                    serial: cert.serial,
                    device: cert.device_id,
                    user: cert.user_id.clone(),
                    reason: reason.to_owned(),
                });
            }
            // Deny first, CRL next: the relay refuses the serial from now on.
            self.deny.insert(cert.serial);
            self.crls_lock()?.remove(&cert.issuer_generation);
        }
        Ok(revoked)
    }

    /// The CRLs of every issuing CA generation, DER: what the relay's
    /// client-certificate verifier is built with (next to the deny list,
    /// which takes effect without rebuilding it).
    pub async fn crls(&self, now: OffsetDateTime) -> Result<Vec<Arc<Vec<u8>>>> {
        let generations: Vec<u32> = self
            .pki_read()?
            .issuing()
            .iter()
            .map(|ca| ca.generation())
            .collect();
        let mut crls = Vec::with_capacity(generations.len());
        for generation in generations {
            crls.push(self.crl(Some(generation), now).await?);
        }
        Ok(crls)
    }

    /// The CRL of issuing CA `generation` (the current one if `None`), DER.
    /// Regenerated after a revocation and when half its validity has passed.
    pub async fn crl(&self, generation: Option<u32>, now: OffsetDateTime) -> Result<Arc<Vec<u8>>> {
        let (generation, refresh_after) = {
            let pki = self.pki_read()?;
            let generation = generation.unwrap_or(pki.current().generation());
            if pki.generation(generation).is_none() {
                return Err(Error::NotFound("crl"));
            }
            (generation, pki.config().crl_validity / 2)
        };
        if let Some(cached) = self.crls_lock()?.get(&generation)
            && now - cached.this_update < refresh_after
            && now >= cached.this_update
        {
            return Ok(cached.der.clone());
        }
        let revoked: Vec<(CertSerial, OffsetDateTime)> = self
            .store
            .revocations()
            .await?
            .into_iter()
            // An expired certificate fails validation anyway; RFC 5280
            // lets it leave the CRL, which keeps the CRL small.
            .filter(|r| r.issuer_generation == generation && r.not_after > unix(now))
            .map(|r| {
                (
                    r.serial,
                    OffsetDateTime::from_unix_timestamp(r.revoked_at).unwrap_or(now),
                )
            })
            .collect();
        // CRL numbers must grow: milliseconds since the epoch, bumped past the
        // last one, survive restarts without storage.
        let millis = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        let number = self
            .crl_number
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(millis.max(last + 1))
            })
            .map_or(millis, |last| millis.max(last + 1));
        let der = Arc::new(self.pki_read()?.crl(generation, &revoked, number, now)?);
        self.crls_lock()?.insert(
            generation,
            CachedCrl {
                der: der.clone(),
                this_update: now,
            },
        );
        Ok(der)
    }
}
