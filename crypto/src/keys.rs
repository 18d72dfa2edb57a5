//! Keys and identifiers: newtypes so that a device id cannot be passed where
//! a message id belongs, and secrets that zeroize and never print.

use std::fmt;

use rand_core::CryptoRng;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::Error;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 16]);

        impl $name {
            /// A fresh random id.
            pub fn random(rng: &mut (impl CryptoRng + ?Sized)) -> Self {
                let mut bytes = [0u8; 16];
                rng.fill_bytes(&mut bytes);
                Self(bytes)
            }

            /// The 16 bytes of the id.
            pub fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }

            /// Parses 32 lowercase or uppercase hex digits.
            pub fn from_hex(hex_str: &str) -> Result<Self, Error> {
                parse_hex_array(hex_str, stringify!($name)).map(Self)
            }

            /// The id as 32 lowercase hex digits.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
    };
}

id_type!(
    /// A device's id: 16 random bytes assigned at enrollment.
    DeviceId
);
id_type!(
    /// A message's id: 16 random bytes chosen by the sender.
    MessageId
);
id_type!(
    /// An attachment's id: 16 random bytes chosen by the uploader.
    BlobId
);

impl DeviceId {
    /// The device id of an organisation's archive key (16 zero bytes).
    pub const ARCHIVE: DeviceId = DeviceId([0u8; 16]);
}

/// A device's (or the archive's) X25519 identity public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdentityPublic(pub [u8; 32]);

impl IdentityPublic {
    /// The 32 bytes of the key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses 64 hex digits.
    pub fn from_hex(hex_str: &str) -> Result<Self, Error> {
        parse_hex_array(hex_str, "identity public key").map(Self)
    }

    /// The key as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for IdentityPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityPublic({})", self.to_hex())
    }
}

/// A device's X25519 identity private key. Zeroized on drop; never printed.
///
/// The public key is computed once, when the key is made: sealing and
/// opening need it for every message.
#[derive(Clone)]
pub struct IdentitySecret {
    secret: StaticSecret,
    public: IdentityPublic,
}

impl IdentitySecret {
    /// A fresh random key.
    pub fn generate(rng: &mut (impl CryptoRng + ?Sized)) -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(bytes.as_mut());
        Self::from_bytes(*bytes)
    }

    /// The key from its 32 private bytes (clamped by X25519 when used).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let secret = StaticSecret::from(bytes);
        let public = IdentityPublic(PublicKey::from(&secret).to_bytes());
        Self { secret, public }
    }

    /// Parses 64 hex digits.
    pub fn from_hex(hex_str: &str) -> Result<Self, Error> {
        let bytes = Zeroizing::new(parse_hex_array::<32>(hex_str, "identity private key")?);
        Ok(Self::from_bytes(*bytes))
    }

    /// The 32 private bytes, for storing the key in the device's encrypted store.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.secret.to_bytes())
    }

    /// The matching public key.
    pub fn public(&self) -> IdentityPublic {
        self.public
    }

    /// X25519 with a peer's public key; the raw 32-byte output (which may be
    /// all zeros for a low-order peer key: callers check).
    pub(crate) fn diffie_hellman(&self, peer: &IdentityPublic) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(
            self.secret
                .diffie_hellman(&PublicKey::from(peer.0))
                .to_bytes(),
        )
    }
}

impl fmt::Debug for IdentitySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdentitySecret([redacted])")
    }
}

/// A message's 64-byte content key (`CK`): encryption half, MAC half.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ContentKey(pub(crate) [u8; 64]);

impl ContentKey {
    /// A fresh random content key.
    pub fn generate(rng: &mut (impl CryptoRng + ?Sized)) -> Self {
        let mut key = Self([0u8; 64]);
        rng.fill_bytes(&mut key.0);
        key
    }

    /// The key from its 64 bytes (an attachment key carried in a message).
    pub fn from_bytes(bytes: [u8; 64]) -> Self {
        Self(bytes)
    }

    /// Parses 128 hex digits.
    pub fn from_hex(hex_str: &str) -> Result<Self, Error> {
        let bytes = Zeroizing::new(parse_hex_array::<64>(hex_str, "content key")?);
        Ok(Self(*bytes))
    }

    /// The 64 key bytes, to carry an attachment key inside a message.
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }
}

impl fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContentKey([redacted])")
    }
}

/// Parses exactly `N` bytes of hex.
pub(crate) fn parse_hex_array<const N: usize>(
    hex_str: &str,
    what: &'static str,
) -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    hex::decode_to_slice(hex_str, &mut out).map_err(|err| Error::Invalid {
        what,
        why: match err {
            hex::FromHexError::InvalidStringLength | hex::FromHexError::OddLength => "wrong length",
            hex::FromHexError::InvalidHexCharacter { .. } => "not hex",
        },
    })?;
    Ok(out)
}
