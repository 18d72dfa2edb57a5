//! Kontor wire protocol v1: the end-to-end cryptography of the messenger.
//!
//! This crate implements ../shared/design/protocol.md byte for byte:
//! X25519 key agreement, HKDF-SHA256 to 512 bits, AES-256-CBC with PKCS#7
//! and HMAC-SHA256, encrypt-then-MAC, with every MAC verified in constant
//! time before anything is decrypted. It does no I/O: bytes in, bytes out.
//! Every function that needs randomness takes the caller's RNG, so test
//! vectors are reproducible; [`os_rng`] gives the operating system's.
//!
//! # Layout
//! - [`envelope`]: [`seal`] a message for many devices (one body, one wrap
//!   per device) and [`open`] what one device receives, failing with an
//!   [`Error`] that names protocol.md's step.
//! - [`blob`]: attachments, encrypted like bodies under their own key.
//! - [`store`]: the PIN-protected store key file and the record cipher.
//! - [`fingerprint`]: safety numbers users compare.
//! - [`keys`]: ids and keys; secrets zeroize on drop and print `[redacted]`.
//! - [`vectors`]: the JSON test vectors of `fixtures/vectors/`.
//! - `primitives`: the only module touching the RustCrypto primitives.
//!
//! # Example
//! ```
//! use kontor_crypto::{DeviceId, IdentitySecret, MessageId, Recipient, Sender, open, seal};
//!
//! let mut rng = kontor_crypto::os_rng();
//! let alice = IdentitySecret::generate(&mut rng);
//! let bob = IdentitySecret::generate(&mut rng);
//! let (alice_device, bob_device) = (DeviceId::random(&mut rng), DeviceId::random(&mut rng));
//!
//! let message_id = MessageId::random(&mut rng);
//! let envelope = seal(
//!     &mut rng,
//!     message_id,
//!     Sender { device_id: alice_device, identity: &alice },
//!     &[Recipient { device_id: bob_device, identity: bob.public() }],
//!     b"hello",
//! )?;
//! let sealed = envelope.sealed_for(bob_device).expect("bob is a recipient");
//! let opened = open(&sealed, &bob, Some(bob_device), &alice.public())?;
//! assert_eq!(&opened.plaintext[..], b"hello");
//! # Ok::<(), kontor_crypto::Error>(())
//! ```

pub mod blob;
pub mod envelope;
mod error;
pub mod fingerprint;
pub mod keys;
mod primitives;
pub mod store;
pub mod vectors;

#[cfg(test)]
mod tests;

pub use blob::{decrypt_blob, encrypt_blob};
pub use envelope::{
    Delivery, Opened, Recipient, SealRandomness, SealedEnvelope, SealedMessage, Sender, open, seal,
    seal_archive_part,
};
pub use error::Error;
pub use fingerprint::safety_number;
pub use keys::{BlobId, ContentKey, DeviceId, IdentityPublic, IdentitySecret, MessageId};
pub use store::{RecordCipher, StoreKey, create_key_file, open_key_file};

/// The operating system's random number generator, for callers that have
/// no RNG of their own.
pub fn os_rng() -> impl rand_core::CryptoRng {
    rand_core::UnwrapErr(rand::rngs::SysRng)
}

/// Primitive functions exposed for the RFC and Wycheproof vector tests and
/// the benchmarks. Not part of the protocol API.
#[doc(hidden)]
pub mod __primitives {
    pub use crate::primitives::*;
}
