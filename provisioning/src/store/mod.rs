//! Storage, cut by capability: one trait per kind of thing, so a caller
//! names only what it touches. [`SqliteStore`] and [`PostgresStore`]
//! implement all of them; the same tests run against both.
//!
//! Times are Unix seconds (`i64`). Certificates are stored whole (DER) by
//! serial. Tokens are stored only as the SHA-256 of their secret.

use std::future::Future;

use crate::error::Result;
use crate::types::{CertSerial, DeviceId};

mod postgres;
mod sqlite;

pub use postgres::{PostgresStore, unavailable as postgres_unavailable};
pub use sqlite::SqliteStore;

/// What an enrollment token admits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenBinding {
    /// Exactly this user.
    User(String),
    /// Any user of this department (per the [`UserDirectory`]).
    Department(String),
    /// Any user matching this allow-list entry while the entry is on the
    /// allow-list: an exact user id, or `@domain` for every user id ending in
    /// `@domain`.
    AllowListEntry(String),
}

impl TokenBinding {
    /// `(kind, value)` as stored.
    pub fn to_parts(&self) -> (&'static str, &str) {
        match self {
            TokenBinding::User(v) => ("user", v),
            TokenBinding::Department(v) => ("department", v),
            TokenBinding::AllowListEntry(v) => ("allow_list", v),
        }
    }

    /// The binding from its stored `(kind, value)`.
    pub fn from_parts(kind: &str, value: String) -> Option<Self> {
        match kind {
            "user" => Some(TokenBinding::User(value)),
            "department" => Some(TokenBinding::Department(value)),
            "allow_list" => Some(TokenBinding::AllowListEntry(value)),
            _ => None,
        }
    }
}

/// An enrollment token as stored: no secret, only its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// Public id (16 hex digits), the lookup key.
    pub id: String,
    /// SHA-256 of the secret part.
    pub secret_hash: [u8; 32],
    /// What the token admits.
    pub binding: TokenBinding,
    /// How many enrollments it allows.
    pub max_uses: u32,
    /// How many it has allowed so far.
    pub uses: u32,
    /// Created at.
    pub created_at: i64,
    /// Not valid from this time on.
    pub expires_at: i64,
    /// When an admin revoked it.
    pub revoked_at: Option<i64>,
    /// A free text for the admin.
    pub label: String,
}

/// A certificate we issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateRecord {
    /// Serial number, the key.
    pub serial: CertSerial,
    /// The device.
    pub device_id: DeviceId,
    /// The user the device belongs to.
    pub user_id: String,
    /// Generation of the issuing CA.
    pub issuer_generation: u32,
    /// Start of validity.
    pub not_before: i64,
    /// End of validity.
    pub not_after: i64,
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// The X25519 identity key in the certificate.
    pub identity_key: [u8; 32],
    /// Platform the device named.
    pub platform: String,
    /// Device name the device gave.
    pub device_name: String,
    /// The token used, for enrollments.
    pub token_id: Option<String>,
    /// The certificate this one renewed.
    pub renewed_from: Option<CertSerial>,
    /// When it was issued.
    pub issued_at: i64,
}

/// Of one certificate, what decides whether a device can be written to
/// with an identity key: who it is, until when, which is newest. What a
/// relay reads of every recipient of every posted message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceKey {
    /// Serial number of the certificate.
    pub serial: CertSerial,
    /// The device.
    pub device_id: DeviceId,
    /// The user the device belongs to.
    pub user_id: String,
    /// End of validity.
    pub not_after: i64,
    /// The X25519 identity key in the certificate.
    pub identity_key: [u8; 32],
    /// When the certificate was issued.
    pub issued_at: i64,
}

impl From<&CertificateRecord> for DeviceKey {
    fn from(c: &CertificateRecord) -> Self {
        DeviceKey {
            serial: c.serial,
            device_id: c.device_id,
            user_id: c.user_id.clone(),
            not_after: c.not_after,
            identity_key: c.identity_key,
            issued_at: c.issued_at,
        }
    }
}

/// A revoked certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationRecord {
    /// The serial.
    pub serial: CertSerial,
    /// Generation of the issuing CA (the CRL it goes on).
    pub issuer_generation: u32,
    /// When it was revoked.
    pub revoked_at: i64,
    /// When the certificate expires; after that it leaves the CRL.
    pub not_after: i64,
    /// Why (free text: "device", "user", "admin").
    pub reason: String,
}

/// What an attempt tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptKind {
    /// `POST /v1/enroll`.
    Enroll,
    /// `POST /v1/renew`.
    Renew,
}

impl AttemptKind {
    /// The stored name.
    pub fn as_str(&self) -> &'static str {
        match self {
            AttemptKind::Enroll => "enroll",
            AttemptKind::Renew => "renew",
        }
    }
}

/// One enrollment or renewal attempt, accepted or refused: the raw material
/// of the audit trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptRecord {
    /// When.
    pub at: i64,
    /// `enroll` or `renew`.
    pub kind: String,
    /// `accepted` or the error code.
    pub outcome: String,
    /// Token id, when one was presented and parsed (never the secret).
    pub token_id: Option<String>,
    /// The user, when known.
    pub user_id: Option<String>,
    /// The device, when known.
    pub device_id: Option<String>,
    /// The serial issued (accepted) or presented (renewal).
    pub serial: Option<String>,
}

/// Whether a user may use Kontor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserStatus {
    /// May enroll and use devices.
    Active,
    /// Blocked by an admin: no enrollment, no renewal.
    Blocked,
}

/// A user as the directory knows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryUser {
    /// The user id (e.g. the e-mail address the EMM passes).
    pub user_id: String,
    /// The department, if any.
    pub department: Option<String>,
    /// Active or blocked.
    pub status: UserStatus,
}

/// Enrollment tokens.
pub trait TokenStore: Send + Sync {
    /// Stores a new token.
    fn insert_token(&self, token: &TokenRecord) -> impl Future<Output = Result<()>> + Send;
    /// The token with this id.
    fn token(&self, id: &str) -> impl Future<Output = Result<Option<TokenRecord>>> + Send;
    /// Counts one use if the token is unrevoked, unexpired at `now` and not
    /// used up, atomically; `false` if it was not.
    fn consume_token(&self, id: &str, now: i64) -> impl Future<Output = Result<bool>> + Send;
    /// Marks the token revoked; `false` if there is no such token.
    fn revoke_token(&self, id: &str, now: i64) -> impl Future<Output = Result<bool>> + Send;
    /// All tokens, newest first.
    fn tokens(&self) -> impl Future<Output = Result<Vec<TokenRecord>>> + Send;
}

/// Issued certificates by serial.
pub trait CertificateStore: Send + Sync {
    /// Stores an issued certificate.
    fn insert_certificate(
        &self,
        cert: &CertificateRecord,
    ) -> impl Future<Output = Result<()>> + Send;
    /// The certificate with this serial.
    fn certificate(
        &self,
        serial: &CertSerial,
    ) -> impl Future<Output = Result<Option<CertificateRecord>>> + Send;
    /// All certificates of a device.
    fn certificates_of_device(
        &self,
        device: &DeviceId,
    ) -> impl Future<Output = Result<Vec<CertificateRecord>>> + Send;
    /// All certificates of a user's devices.
    fn certificates_of_user(
        &self,
        user_id: &str,
    ) -> impl Future<Output = Result<Vec<CertificateRecord>>> + Send;
    /// The [`DeviceKey`] of every certificate of each of `devices`, in one
    /// read (a posted message checks every recipient's, a group message
    /// 49 of them), in no particular order (a device named twice may have
    /// its keys twice). Narrower than the certificates: no DER, no
    /// enrollment details.
    fn device_keys(
        &self,
        devices: &[DeviceId],
    ) -> impl Future<Output = Result<Vec<DeviceKey>>> + Send;
}

/// Revocations.
pub trait RevocationStore: Send + Sync {
    /// Records a revocation; `false` if the serial was already revoked.
    fn insert_revocation(
        &self,
        revocation: &RevocationRecord,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// All revocations.
    fn revocations(&self) -> impl Future<Output = Result<Vec<RevocationRecord>>> + Send;
}

/// The log of enrollment and renewal attempts.
pub trait AttemptLog: Send + Sync {
    /// Appends one attempt.
    fn record_attempt(&self, attempt: &AttemptRecord) -> impl Future<Output = Result<()>> + Send;
    /// All attempts, oldest first.
    fn attempts(&self) -> impl Future<Output = Result<Vec<AttemptRecord>>> + Send;
}

/// Users' status and the allow-list. Owned by the administration component
/// later; provisioning only reads it, and this small table stands in until
/// then.
pub trait UserDirectory: Send + Sync {
    /// The user, if the directory knows them.
    fn user(&self, user_id: &str) -> impl Future<Output = Result<Option<DirectoryUser>>> + Send;
    /// Those of `user_ids` the directory knows, in one read, in no
    /// particular order (an id named twice may come back twice).
    fn users(&self, user_ids: &[String])
    -> impl Future<Output = Result<Vec<DirectoryUser>>> + Send;
    /// Creates or replaces a user.
    fn put_user(&self, user: &DirectoryUser) -> impl Future<Output = Result<()>> + Send;
    /// Whether `entry` is on the allow-list.
    fn allow_list_contains(&self, entry: &str) -> impl Future<Output = Result<bool>> + Send;
    /// Puts `entry` on the allow-list.
    fn add_allow_list_entry(&self, entry: &str) -> impl Future<Output = Result<()>> + Send;
    /// Takes `entry` off the allow-list.
    fn remove_allow_list_entry(&self, entry: &str) -> impl Future<Output = Result<()>> + Send;
}

/// Everything the provisioning service needs.
pub trait Store:
    TokenStore
    + CertificateStore
    + RevocationStore
    + AttemptLog
    + UserDirectory
    + ErasureStore
    + 'static
{
}

impl<T> Store for T where
    T: TokenStore
        + CertificateStore
        + RevocationStore
        + AttemptLog
        + UserDirectory
        + ErasureStore
        + 'static
{
}

pub(crate) fn serial_from_db(text: &str) -> Result<CertSerial> {
    CertSerial::from_hex(text)
        .ok_or_else(|| crate::Error::Store(format!("bad serial in store: {text}")))
}

pub(crate) fn device_from_db(text: &str) -> Result<DeviceId> {
    DeviceId::from_hex(text)
        .ok_or_else(|| crate::Error::Store(format!("bad device id in store: {text}")))
}

pub(crate) fn key32_from_db(bytes: &[u8]) -> Result<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| crate::Error::Store("bad 32-byte value in store".into()))
}

pub(crate) fn status_to_db(status: UserStatus) -> &'static str {
    match status {
        UserStatus::Active => "active",
        UserStatus::Blocked => "blocked",
    }
}

pub(crate) fn status_from_db(text: &str) -> Result<UserStatus> {
    match text {
        "active" => Ok(UserStatus::Active),
        "blocked" => Ok(UserStatus::Blocked),
        _ => Err(crate::Error::Store(format!(
            "bad user status in store: {text}"
        ))),
    }
}

/// What erasing a user removed from provisioning, table by table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Erased {
    /// `certificates` of the user's devices (device names, identity keys,
    /// the DER naming the device).
    pub certificates: u64,
    /// `tokens` bound to the user.
    pub tokens: u64,
    /// `enrollment_attempts` naming the user, one of their devices, one of
    /// their certificates' serials or one of their tokens.
    pub attempts: u64,
    /// `directory_users` rows (department, status).
    pub directory: u64,
    /// `allow_list` entries that are the user's id.
    pub allow_list: u64,
}

impl Erased {
    /// Rows deleted, all tables together.
    pub fn total(&self) -> u64 {
        self.certificates + self.tokens + self.attempts + self.directory + self.allow_list
    }
}

/// Erasure of a user (DSGVO Art. 17).
pub trait ErasureStore: Send + Sync {
    /// Deletes, in one transaction, every row that names `user_id` or one
    /// of their devices: their certificate records, the tokens bound to
    /// them, the enrollment attempts naming them, their devices, their
    /// serials or their tokens, their directory entry and their
    /// allow-list entry. Revocations stay: they name only serials, and
    /// the CRL and deny-list are built from them, so the devices stay
    /// refused; callers revoke first ([`crate::service::Service::erase_user`]
    /// does).
    ///
    /// Idempotent: a second call finds nothing and returns zeros.
    fn erase_user(&self, user_id: &str) -> impl Future<Output = Result<Erased>> + Send;
}
