//! CA private keys at rest: AES-256-GCM under a key-encryption key (KEK).
//!
//! A sealed key file is `KTPK1 || nonce (12 bytes) || ciphertext || tag`.
//! The additional authenticated data is the magic followed by the key's
//! label (`root`, `issuing-3`), so a sealed file cannot be swapped for
//! another one under the same KEK without the open failing.

use std::path::Path;

use rand_core::CryptoRng;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};

const MAGIC: &[u8; 5] = b"KTPK1";

/// Name of the environment variable that may hold the KEK as 64 hex digits.
pub const KEK_ENV: &str = "KONTOR_PKI_KEK";

/// The 32-byte key-encryption key that seals the CA private keys.
///
/// Zeroizes on drop; `Debug` prints `[redacted]`.
#[derive(Clone)]
pub struct Kek([u8; 32]);

impl Drop for Kek {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek([redacted])")
    }
}

impl Kek {
    /// A KEK from raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Kek(bytes)
    }

    /// A KEK from 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes)
            .map_err(|_| Error::Kek("expected 64 hex digits"))?;
        Ok(Kek(bytes))
    }

    /// Reads the KEK from a file holding either 32 raw bytes or 64 hex digits.
    pub fn from_file(path: &Path) -> Result<Self> {
        let content = Zeroizing::new(std::fs::read(path).map_err(|e| Error::io(path, e))?);
        if content.len() == 32 {
            let mut bytes = [0u8; 32];
            bytes.copy_from_slice(&content);
            return Ok(Kek(bytes));
        }
        let text = std::str::from_utf8(&content)
            .map_err(|_| Error::Kek("file is neither 32 bytes nor hex"))?;
        Kek::from_hex(text)
    }

    /// Reads the KEK from the `KONTOR_PKI_KEK` environment variable.
    pub fn from_env() -> Result<Self> {
        let value = Zeroizing::new(
            std::env::var(KEK_ENV).map_err(|_| Error::Kek("KONTOR_PKI_KEK is not set"))?,
        );
        Kek::from_hex(&value)
    }

    /// A fresh random KEK, e.g. for tests or `kontor pki init`.
    pub fn generate(rng: &mut (impl CryptoRng + ?Sized)) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        Kek(bytes)
    }

    /// The KEK as 64 hex digits, for writing it to the operator's vault.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0))
    }

    fn aead(&self) -> LessSafeKey {
        // A 32-byte slice is always a valid AES-256 key: local invariant.
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0).expect("32-byte AES-256 key"))
    }
}

fn aad(label: &str) -> Vec<u8> {
    let mut aad = MAGIC.to_vec();
    aad.extend_from_slice(label.as_bytes());
    aad
}

/// Seals `plaintext` (a PKCS#8 key) under `kek`, bound to `label`.
pub fn seal(
    kek: &Kek,
    label: &str,
    plaintext: &[u8],
    rng: &mut (impl CryptoRng + ?Sized),
) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let mut buffer = plaintext.to_vec();
    // Sealing in place only fails when the plaintext exceeds GCM's limit of
    // 64 GiB; a key is a few hundred bytes: local invariant.
    kek.aead()
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(label)),
            &mut buffer,
        )
        .expect("key far below the AES-GCM size limit");
    let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + buffer.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&buffer);
    buffer.zeroize();
    out
}

/// Opens a sealed key; fails without detail if the KEK or the label is wrong
/// or the file was altered.
pub fn open(kek: &Kek, label: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let wrong = || Error::SealedKey(label.to_owned());
    let rest = sealed.strip_prefix(MAGIC.as_slice()).ok_or_else(wrong)?;
    if rest.len() < NONCE_LEN {
        return Err(wrong());
    }
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
    let mut buffer = Zeroizing::new(ciphertext.to_vec());
    let plain_len = kek
        .aead()
        .open_in_place(nonce, Aad::from(aad(label)), &mut buffer)
        .map_err(|_| wrong())?
        .len();
    buffer.truncate(plain_len);
    Ok(buffer)
}
