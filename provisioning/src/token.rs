//! Enrollment tokens: `kt1_<id>_<secret>`, 8 bytes of public id and 32 bytes
//! of secret, both hex. Only SHA-256 of the secret is stored; the check
//! compares hashes in constant time.

use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::store::{TokenBinding, TokenRecord};

const PREFIX: &str = "kt1_";

/// Longest token lifetime an admin may ask for (one year), in seconds.
pub const TOKEN_LIFETIME_SECONDS_MAX: i64 = 366 * 24 * 3600;
/// Most uses one token may allow.
pub const TOKEN_USES_MAX: u32 = 100_000;

/// A token as handed to the EMM or shown as a QR code: the only place the
/// secret exists. Zeroizes on drop; `Debug` prints `[redacted]`.
#[derive(Clone)]
pub struct EnrollmentToken(Zeroizing<String>);

impl std::fmt::Debug for EnrollmentToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnrollmentToken([redacted])")
    }
}

impl EnrollmentToken {
    /// The token text, to hand to the EMM.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The token as a QR code in SVG, carrying
    /// `{"server": <enrollment base URL>, "token": <token>}`.
    pub fn qr_svg(&self, server: &str) -> Result<String> {
        let payload = Zeroizing::new(
            serde_json::json!({ "server": server, "token": self.expose_secret() }).to_string(),
        );
        let code =
            qrcode::QrCode::with_error_correction_level(payload.as_bytes(), qrcode::EcLevel::M)
                .map_err(|_| Error::InvalidField {
                    field: "server",
                    reason: "too long for a QR code",
                })?;
        Ok(code
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(256, 256)
            .build())
    }
}

/// What an admin asks for when creating a token.
#[derive(Clone, Debug)]
pub struct TokenSpec {
    /// What the token admits.
    pub binding: TokenBinding,
    /// How many enrollments (1 for one-use).
    pub max_uses: u32,
    /// Lifetime in seconds from creation.
    pub lifetime_seconds: i64,
    /// Free text for the admin.
    pub label: String,
}

/// A token without its secret, for listings.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TokenInfo {
    /// Public id.
    pub id: String,
    /// `user`, `department` or `allow_list`.
    pub binding: String,
    /// The user, department or allow-list entry.
    pub bound_to: String,
    /// Allowed enrollments.
    pub max_uses: u32,
    /// Enrollments so far.
    pub uses: u32,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// Unix seconds, when revoked.
    pub revoked_at: Option<i64>,
    /// Free text.
    pub label: String,
}

impl From<&TokenRecord> for TokenInfo {
    fn from(record: &TokenRecord) -> Self {
        let (kind, value) = record.binding.to_parts();
        TokenInfo {
            id: record.id.clone(),
            binding: kind.to_owned(),
            bound_to: value.to_owned(),
            max_uses: record.max_uses,
            uses: record.uses,
            created_at: record.created_at,
            expires_at: record.expires_at,
            revoked_at: record.revoked_at,
            label: record.label.clone(),
        }
    }
}

fn hash(secret: &[u8; 32]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

/// Makes a new token and the record to store. Checks the spec's limits.
pub fn generate(
    spec: &TokenSpec,
    now: i64,
    rng: &mut (impl CryptoRng + ?Sized),
) -> Result<(EnrollmentToken, TokenRecord)> {
    if spec.max_uses == 0 || spec.max_uses > TOKEN_USES_MAX {
        return Err(Error::InvalidField {
            field: "max_uses",
            reason: "must be 1 to 100000",
        });
    }
    if spec.lifetime_seconds <= 0 || spec.lifetime_seconds > TOKEN_LIFETIME_SECONDS_MAX {
        return Err(Error::InvalidField {
            field: "lifetime_seconds",
            reason: "must be 1 second to 366 days",
        });
    }
    let bound = spec.binding.to_parts().1;
    if bound.is_empty() || bound.len() > 256 || bound.chars().any(char::is_control) {
        return Err(Error::InvalidField {
            field: "bound_to",
            reason: "must be 1 to 256 printable characters",
        });
    }
    if spec.label.len() > 256 || spec.label.chars().any(char::is_control) {
        return Err(Error::InvalidField {
            field: "label",
            reason: "must be at most 256 printable characters",
        });
    }
    let mut id = [0u8; 8];
    rng.fill_bytes(&mut id);
    let mut secret = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(secret.as_mut());
    let id = hex::encode(id);
    let token = EnrollmentToken(Zeroizing::new(format!(
        "{PREFIX}{id}_{}",
        hex::encode(secret.as_ref())
    )));
    let record = TokenRecord {
        id,
        secret_hash: hash(&secret),
        binding: spec.binding.clone(),
        max_uses: spec.max_uses,
        uses: 0,
        created_at: now,
        expires_at: now.saturating_add(spec.lifetime_seconds),
        revoked_at: None,
        label: spec.label.clone(),
    };
    Ok((token, record))
}

/// A presented token split into its public id and secret.
pub struct PresentedToken {
    /// The public id (safe to log).
    pub id: String,
    secret: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for PresentedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresentedToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Parses a presented token; anything malformed is an unknown token.
pub fn parse(text: &str) -> Result<PresentedToken> {
    let rest = text.strip_prefix(PREFIX).ok_or(Error::UnknownToken)?;
    let (id, secret_hex) = rest.split_once('_').ok_or(Error::UnknownToken)?;
    let mut id_bytes = [0u8; 8];
    hex::decode_to_slice(id, &mut id_bytes).map_err(|_| Error::UnknownToken)?;
    let mut secret = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(secret_hex, secret.as_mut()).map_err(|_| Error::UnknownToken)?;
    Ok(PresentedToken {
        id: id.to_ascii_lowercase(),
        secret,
    })
}

/// Checks a presented token against its record at `now`: the secret (in
/// constant time), then revocation, expiry and remaining uses.
pub fn check(presented: &PresentedToken, record: &TokenRecord, now: i64) -> Result<()> {
    if !bool::from(hash(&presented.secret).ct_eq(&record.secret_hash)) {
        return Err(Error::UnknownToken);
    }
    if record.revoked_at.is_some() {
        return Err(Error::TokenRevoked);
    }
    if now >= record.expires_at {
        return Err(Error::TokenExpired);
    }
    if record.uses >= record.max_uses {
        return Err(Error::TokenUsedUp);
    }
    Ok(())
}

/// Whether `user_id` matches an allow-list entry: equal, or the entry is
/// `@domain` and the user id ends with it.
pub fn allow_list_matches(entry: &str, user_id: &str) -> bool {
    if entry.starts_with('@') {
        user_id.len() > entry.len()
            && user_id
                .to_ascii_lowercase()
                .ends_with(&entry.to_ascii_lowercase())
    } else {
        entry == user_id
    }
}
