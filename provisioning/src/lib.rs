//! Kontor provisioning: the organisation's CA, enrollment tokens, device
//! certificates from PKCS#10 requests, renewal and revocation.
//!
//! A device sends an enrollment token, a P-256 CSR and its X25519 identity
//! key to `POST /v1/enroll` and gets a 90-day client certificate naming
//! `urn:kontor:device:<id>` and carrying the identity key, with the chain,
//! the relay URL and the policy. Revocation updates a [`service::DenyList`]
//! at once and the CRL served at `/pki/crl.der`.
//!
//! # Layout
//!
//! Pure core (values in, values out; time and randomness are arguments):
//!
//! - [`pki`]: the root and issuing CAs, device certificate issuance and CRL
//!   signing; only loading, creating and rotating CAs touch files.
//! - [`csr`]: PKCS#10 parsing and checks (key type, signature, extensions).
//! - [`token`]: enrollment tokens, their hashes and checks, QR codes.
//! - [`keystore`]: CA private keys sealed at rest (AES-256-GCM under a KEK).
//! - [`types`]: `DeviceId`, `CertSerial`.
//! - [`error`]: the one [`Error`] enum with stable codes.
//!
//! Shells:
//!
//! - [`service`]: enrollment, renewal, revocation and CRLs over a store.
//! - [`store`]: storage traits cut by capability; SQLite and PostgreSQL.
//! - [`http`]: `router(state) -> Router`, `serve`, and the JSON `ApiError`.
//! - [`limit`]: a token bucket per client address for unauthenticated
//!   endpoints.

pub mod csr;
pub mod error;
pub mod http;
pub mod keystore;
pub mod limit;
pub mod pki;
pub mod service;
pub mod store;
pub mod token;
pub mod types;

pub use error::{Error, Result};
pub use keystore::Kek;
pub use pki::{IDENTITY_KEY_OID, Pki, PkiConfig};
pub use time;
pub use types::{CertSerial, DeviceId};

#[cfg(test)]
mod tests;
