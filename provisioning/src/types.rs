//! Newtypes for the ids this crate hands out.

use rand_core::CryptoRng;

/// A device id: 16 random bytes, written as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId([u8; 16]);

impl DeviceId {
    /// A fresh random device id.
    pub fn random(rng: &mut (impl CryptoRng + ?Sized)) -> Self {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        DeviceId(bytes)
    }

    /// A device id from its bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        DeviceId(bytes)
    }

    /// The 16 bytes of the id.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses 32 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(DeviceId(bytes))
    }

    /// Parses `urn:kontor:device:<hex>`.
    pub fn from_urn(urn: &str) -> Option<Self> {
        DeviceId::from_hex(urn.strip_prefix("urn:kontor:device:")?)
    }

    /// `urn:kontor:device:<hex>`, the name in the certificate.
    pub fn urn(&self) -> String {
        format!("urn:kontor:device:{self}")
    }
}

impl std::fmt::Display for DeviceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceId({self})")
    }
}

/// A certificate serial number as we issue them: 16 bytes, the first byte
/// in `0x40..=0x7f` so the DER INTEGER is positive and always 16 bytes long
/// (126 random bits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertSerial([u8; 16]);

impl CertSerial {
    /// A serial from 16 random bytes (the top two bits are fixed).
    pub fn from_random(mut bytes: [u8; 16]) -> Self {
        bytes[0] = (bytes[0] & 0x3f) | 0x40;
        CertSerial(bytes)
    }

    /// A fresh random serial.
    pub fn random(rng: &mut (impl CryptoRng + ?Sized)) -> Self {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        CertSerial::from_random(bytes)
    }

    /// A serial as read from a certificate; `None` unless it has our shape.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let bytes: [u8; 16] = bytes.try_into().ok()?;
        (bytes[0] & 0xc0 == 0x40).then_some(CertSerial(bytes))
    }

    /// Parses 32 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        CertSerial::from_slice(&bytes)
    }

    /// The 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl std::fmt::Display for CertSerial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for CertSerial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CertSerial({self})")
    }
}
