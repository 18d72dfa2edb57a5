//! The only module that touches AES-CBC, HMAC, HKDF and SHA-256.
//!
//! Everything above works in terms of these few functions, so the choice of
//! primitive crates (and their generation) is visible in one place.

use aes::Aes256;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit, block_padding::Pkcs7};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// AES block and IV size in bytes.
pub const BLOCK_LEN: usize = 16;
/// HMAC-SHA256 tag and SHA-256 digest size in bytes.
pub const MAC_LEN: usize = 32;

/// AES-256-CBC with PKCS#7 padding.
pub fn cbc_encrypt(key: &[u8; 32], iv: &[u8; 16], plaintext: &[u8]) -> Vec<u8> {
    cbc::Encryptor::<Aes256>::new(key.into(), iv.into()).encrypt_padded_vec::<Pkcs7>(plaintext)
}

/// AES-256-CBC decryption; `None` when the padding (or the length) is invalid.
///
/// Callers verify a MAC over `ciphertext` first, so this is never a padding
/// oracle.
pub fn cbc_decrypt(key: &[u8; 32], iv: &[u8; 16], ciphertext: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(BLOCK_LEN) {
        return None;
    }
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    let len = cbc::Decryptor::<Aes256>::new(key.into(), iv.into())
        .decrypt_padded::<Pkcs7>(&mut buf)
        .ok()?
        .len();
    buf.truncate(len);
    Some(buf)
}

/// HMAC-SHA256 over the concatenation of `parts`.
pub fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; MAC_LEN] {
    hmac_state(key, parts).finalize().into_bytes().into()
}

/// Verifies an HMAC-SHA256 tag over the concatenation of `parts` in constant time.
pub fn hmac_verify(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    // `verify_slice` compares in constant time (subtle) and refuses a tag of
    // the wrong length.
    hmac_state(key, parts).verify_slice(tag).is_ok()
}

fn hmac_state(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    // Invariant: HMAC accepts keys of any length.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac
}

/// HKDF-SHA256 with a 64-byte output (RFC 5869), `info` given in parts.
pub fn hkdf64(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> Zeroizing<[u8; 64]> {
    let hk = hkdf::Hkdf::<Sha256>::new(Some(salt), ikm);
    let mut okm = Zeroizing::new([0u8; 64]);
    // Invariant: 64 bytes is far below HKDF-SHA256's limit of 255 * 32.
    hk.expand_multi_info(info, okm.as_mut())
        .expect("64 bytes is a valid HKDF-SHA256 output length");
    okm
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; MAC_LEN] {
    Sha256::digest(data).into()
}

/// Splits a 64-byte key into its encryption half and its MAC half.
pub fn split_key(okm: &[u8; 64]) -> (&[u8; 32], &[u8; 32]) {
    let (enc, mac) = okm.split_at(32);
    // Invariant: a 64-byte array splits into two 32-byte halves.
    (
        enc.try_into().expect("first half is 32 bytes"),
        mac.try_into().expect("second half is 32 bytes"),
    )
}

/// Raw X25519 (RFC 7748) of a scalar and a u-coordinate, for the RFC and
/// Wycheproof vector tests; protocol code goes through `IdentitySecret`.
pub fn x25519(scalar: [u8; 32], u: [u8; 32]) -> [u8; 32] {
    x25519_dalek::x25519(scalar, u)
}
