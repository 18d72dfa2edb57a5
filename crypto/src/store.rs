//! The device's local store key: a random 32-byte key wrapped by
//! scrypt(PIN) in a key file, and the record cipher derived from it
//! (protocol.md, "Local store").
//!
//! ```text
//! key_file = "KTRK" || 0x01 || u8(log2 N) || u32be(r) || u32be(p) || salt(16)
//!            || iv(16) || CBC(pin_key[0..32], iv, K) (48) || HMAC(pin_key[32..64], all before)
//! ```
//!
//! A record is `iv || CBC(enc, iv, plaintext) || HMAC(mac, "kontor-v1-record"
//! || u32be(len(table)) || table || u32be(len(row_id)) || row_id || iv || ct)`
//! under `HKDF(salt = "", ikm = K, info = "kontor-v1-store", L = 64)`.

use std::fmt;

use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::Error;
use crate::primitives::{self, BLOCK_LEN, MAC_LEN};

/// The key file's magic bytes.
pub const MAGIC: &[u8; 4] = b"KTRK";
/// The key file version this code reads and writes.
pub const KEY_FILE_VERSION: u8 = 0x01;
/// The exact length of a v1 key file.
pub const KEY_FILE_LEN: usize = 4 + 1 + 1 + 4 + 4 + 16 + 16 + 48 + MAC_LEN;
/// log2(N) for new key files.
pub const DEFAULT_LOG2_N: u8 = 17;
/// The smallest log2(N) the product opens (OWASP ASVS's scrypt floor).
pub const MIN_LOG2_N: u8 = 15;
/// Bounds that keep a hostile key file from demanding unbounded memory or
/// time (scrypt needs 128 * r * N bytes): at most 1 GiB.
const MAX_LOG2_N: u8 = 20;
const MAX_R: u32 = 32;
const MAX_P: u32 = 16;
const MAX_SCRYPT_BYTES: u64 = 1 << 30;

const STORE_INFO: &[u8] = b"kontor-v1-store";
const RECORD_LABEL: &[u8] = b"kontor-v1-record";
const HEADER_LEN: usize = 4 + 1 + 1 + 4 + 4 + 16;

/// The 32-byte store key `K`. Zeroized on drop; never printed.
#[derive(Clone)]
pub struct StoreKey(Zeroizing<[u8; 32]>);

impl StoreKey {
    /// A fresh random store key.
    pub fn generate(rng: &mut (impl CryptoRng + ?Sized)) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(key.as_mut());
        Self(key)
    }

    /// The key from its bytes (test vectors).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreKey([redacted])")
    }
}

/// scrypt cost parameters as the key file records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScryptParams {
    /// log2 of the CPU/memory cost N.
    pub log2_n: u8,
    /// Block size r (8 in new files).
    pub r: u32,
    /// Parallelism p (1 in new files).
    pub p: u32,
}

impl ScryptParams {
    /// The parameters of new key files: N = 2^17, r = 8, p = 1.
    pub const DEFAULT: ScryptParams = ScryptParams {
        log2_n: DEFAULT_LOG2_N,
        r: 8,
        p: 1,
    };

    fn check(&self) -> Result<scrypt::Params, Error> {
        // The shift is evaluated only once log2_n is known to be small.
        if self.log2_n == 0
            || self.log2_n > MAX_LOG2_N
            || !(1..=MAX_R).contains(&self.r)
            || !(1..=MAX_P).contains(&self.p)
            || (128u64 * u64::from(self.r)) << self.log2_n > MAX_SCRYPT_BYTES
        {
            return Err(Error::KeyFileFormat("scrypt parameters out of range"));
        }
        scrypt::Params::new(self.log2_n, self.r, self.p)
            .map_err(|_| Error::KeyFileFormat("scrypt parameters out of range"))
    }
}

/// Creates a key file for a fresh store key under `pin`, with the default
/// cost. Returns the key and the file's bytes.
pub fn create_key_file(
    rng: &mut (impl CryptoRng + ?Sized),
    pin: &str,
) -> Result<(StoreKey, Vec<u8>), Error> {
    let key = StoreKey::generate(rng);
    let file = wrap_store_key(rng, &key, pin, ScryptParams::DEFAULT)?;
    Ok((key, file))
}

/// Wraps an existing store key under `pin` (a PIN change re-wraps the same key).
pub fn wrap_store_key(
    rng: &mut (impl CryptoRng + ?Sized),
    key: &StoreKey,
    pin: &str,
    params: ScryptParams,
) -> Result<Vec<u8>, Error> {
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    rng.fill_bytes(&mut salt);
    rng.fill_bytes(&mut iv);
    wrap_store_key_with(key, pin, params, &salt, &iv)
}

/// Wraps with a given salt and IV (test vectors; never reuse them).
pub fn wrap_store_key_with(
    key: &StoreKey,
    pin: &str,
    params: ScryptParams,
    salt: &[u8; 16],
    iv: &[u8; 16],
) -> Result<Vec<u8>, Error> {
    let scrypt_params = params.check()?;
    let pin_key = pin_key(pin, salt, &scrypt_params);
    let (enc, mac) = primitives::split_key(&pin_key);
    let mut file = Vec::with_capacity(KEY_FILE_LEN);
    file.extend_from_slice(MAGIC);
    file.push(KEY_FILE_VERSION);
    file.push(params.log2_n);
    file.extend_from_slice(&params.r.to_be_bytes());
    file.extend_from_slice(&params.p.to_be_bytes());
    file.extend_from_slice(salt);
    file.extend_from_slice(iv);
    file.extend_from_slice(&primitives::cbc_encrypt(enc, iv, key.as_bytes()));
    let tag = primitives::hmac(mac, &[&file]);
    file.extend_from_slice(&tag);
    Ok(file)
}

/// Unlocks a key file with `pin`. Refuses files whose scrypt cost is below
/// [`MIN_LOG2_N`].
pub fn open_key_file(file: &[u8], pin: &str) -> Result<StoreKey, Error> {
    let parsed = parse_key_file(file)?;
    if parsed.params.log2_n < MIN_LOG2_N {
        return Err(Error::WeakKeyFile {
            got: parsed.params.log2_n,
            min: MIN_LOG2_N,
        });
    }
    unlock(file, &parsed, pin)
}

/// Unlocks a key file of any valid cost, including ones too weak for the
/// product: for test vectors and tests only.
pub fn open_key_file_danger_any_cost(file: &[u8], pin: &str) -> Result<StoreKey, Error> {
    let parsed = parse_key_file(file)?;
    unlock(file, &parsed, pin)
}

/// The scrypt parameters a key file names, after checking its format.
pub fn key_file_params(file: &[u8]) -> Result<ScryptParams, Error> {
    parse_key_file(file).map(|parsed| parsed.params)
}

struct ParsedKeyFile {
    params: ScryptParams,
    scrypt: scrypt::Params,
}

fn parse_key_file(file: &[u8]) -> Result<ParsedKeyFile, Error> {
    if file.len() < HEADER_LEN {
        return Err(Error::KeyFileFormat("truncated"));
    }
    if &file[..4] != MAGIC {
        return Err(Error::KeyFileFormat("not a Kontor key file"));
    }
    if file[4] != KEY_FILE_VERSION {
        return Err(Error::KeyFileVersion(file[4]));
    }
    if file.len() != KEY_FILE_LEN {
        return Err(Error::KeyFileFormat("wrong length"));
    }
    let params = ScryptParams {
        log2_n: file[5],
        r: u32::from_be_bytes([file[6], file[7], file[8], file[9]]),
        p: u32::from_be_bytes([file[10], file[11], file[12], file[13]]),
    };
    let scrypt = params.check()?;
    Ok(ParsedKeyFile { params, scrypt })
}

fn unlock(file: &[u8], parsed: &ParsedKeyFile, pin: &str) -> Result<StoreKey, Error> {
    let salt = &file[14..30];
    let iv = &file[30..46];
    let ct = &file[46..94];
    let tag = &file[94..];
    let pin_key = pin_key(pin, salt, &parsed.scrypt);
    let (enc, mac) = primitives::split_key(&pin_key);
    if !primitives::hmac_verify(mac, &[&file[..94]], tag) {
        return Err(Error::Pin);
    }
    let mut iv_array = [0u8; 16];
    iv_array.copy_from_slice(iv);
    let key = primitives::cbc_decrypt(enc, &iv_array, ct)
        .ok_or(Error::KeyFileFormat("invalid padding"))?;
    let key: [u8; 32] = key[..]
        .try_into()
        .map_err(|_| Error::KeyFileFormat("wrapped key is not 32 bytes"))?;
    Ok(StoreKey::from_bytes(key))
}

fn pin_key(pin: &str, salt: &[u8], params: &scrypt::Params) -> Zeroizing<[u8; 64]> {
    let mut out = Zeroizing::new([0u8; 64]);
    // Invariant: 64 bytes is a valid scrypt output length.
    scrypt::scrypt(pin.as_bytes(), salt, params, out.as_mut())
        .expect("64 bytes is a valid scrypt output length");
    out
}

/// Encrypts and authenticates the store's records, each bound to its table
/// and row id so a record cannot be moved to another row or table.
pub struct RecordCipher {
    keys: Zeroizing<[u8; 64]>,
}

impl fmt::Debug for RecordCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecordCipher([redacted])")
    }
}

impl RecordCipher {
    /// The record keys of a store key.
    pub fn new(store_key: &StoreKey) -> Self {
        Self {
            keys: primitives::hkdf64(b"", store_key.as_bytes(), &[STORE_INFO]),
        }
    }

    /// Encrypts a record for `table` and `row_id` with a fresh IV.
    pub fn seal(
        &self,
        rng: &mut (impl CryptoRng + ?Sized),
        table: &str,
        row_id: &[u8],
        plaintext: &[u8],
    ) -> Vec<u8> {
        let mut iv = [0u8; 16];
        rng.fill_bytes(&mut iv);
        self.seal_with_iv(&iv, table, row_id, plaintext)
    }

    /// Encrypts with a given IV (test vectors; never reuse one).
    pub fn seal_with_iv(
        &self,
        iv: &[u8; 16],
        table: &str,
        row_id: &[u8],
        plaintext: &[u8],
    ) -> Vec<u8> {
        let (enc, mac) = primitives::split_key(&self.keys);
        let ct = primitives::cbc_encrypt(enc, iv, plaintext);
        let tag = record_mac(mac, table, row_id, iv, &ct);
        [&iv[..], &ct, &tag].concat()
    }

    /// Verifies (constant time) and decrypts a record read from `table` at `row_id`.
    pub fn open(
        &self,
        table: &str,
        row_id: &[u8],
        record: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        if record.len() < BLOCK_LEN + BLOCK_LEN + MAC_LEN {
            return Err(Error::Record);
        }
        let (enc, mac) = primitives::split_key(&self.keys);
        let (iv, rest) = record.split_at(BLOCK_LEN);
        let (ct, tag) = rest.split_at(rest.len() - MAC_LEN);
        let expected = record_mac(mac, table, row_id, iv, ct);
        if !bool::from(expected.ct_eq(tag)) {
            return Err(Error::Record);
        }
        let mut iv_array = [0u8; 16];
        iv_array.copy_from_slice(iv);
        primitives::cbc_decrypt(enc, &iv_array, ct).ok_or(Error::Record)
    }
}

fn record_mac(key: &[u8; 32], table: &str, row_id: &[u8], iv: &[u8], ct: &[u8]) -> [u8; MAC_LEN] {
    let table_len = u32::try_from(table.len()).unwrap_or(u32::MAX).to_be_bytes();
    let row_len = u32::try_from(row_id.len())
        .unwrap_or(u32::MAX)
        .to_be_bytes();
    primitives::hmac(
        key,
        &[
            RECORD_LABEL,
            &table_len,
            table.as_bytes(),
            &row_len,
            row_id,
            iv,
            ct,
        ],
    )
}
