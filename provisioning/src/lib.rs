//! Kontor provisioning: the organisation's CA, enrollment tokens, device
//! certificates from PKCS#10 requests, renewal and revocation.
//!
//! # Layout
//!
//! - [`pki`]: the root and issuing CAs, device certificate issuance and CRL
//!   signing; pure apart from loading and saving the CA files.
//! - [`keystore`]: CA private keys sealed at rest (AES-256-GCM under a KEK).
//! - [`csr`]: PKCS#10 parsing and checks (key type, signature, extensions).
//! - [`types`]: `DeviceId`, `CertSerial`.
//! - [`error`]: the one [`Error`] enum with stable codes.

pub mod csr;
pub mod error;
pub mod http;
pub mod keystore;
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
