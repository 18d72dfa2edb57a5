//! Attachments: a file is encrypted like a message body under its own
//! 64-byte key, with `"kontor-v1-blob"` and the blob id in place of
//! `"kontor-v1-body"` and the message id (protocol.md, "Attachments").
//!
//! The relay stores the result as an opaque blob; the message that names the
//! blob carries its id, key, size, media type and file name.

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::Error;
use crate::envelope::{self, BodyFailure, MIN_BODY_LEN};
use crate::keys::{BlobId, ContentKey, DeviceId};

const BLOB_LABEL: &[u8] = b"kontor-v1-blob";

/// Encrypts an attachment under a fresh key; returns the key (to put in the
/// message) and the blob (to upload).
pub fn encrypt_blob(
    rng: &mut (impl CryptoRng + ?Sized),
    blob_id: BlobId,
    sender_device_id: DeviceId,
    plaintext: &[u8],
) -> (ContentKey, Vec<u8>) {
    let key = ContentKey::generate(rng);
    let mut iv = [0u8; 16];
    rng.fill_bytes(&mut iv);
    let blob = encrypt_blob_with(&key, &iv, blob_id, sender_device_id, plaintext);
    (key, blob)
}

/// Encrypts with a given key and IV (test vectors; never reuse either).
pub fn encrypt_blob_with(
    key: &ContentKey,
    iv: &[u8; 16],
    blob_id: BlobId,
    sender_device_id: DeviceId,
    plaintext: &[u8],
) -> Vec<u8> {
    envelope::seal_body(
        key,
        iv,
        BLOB_LABEL,
        blob_id.as_bytes(),
        &sender_device_id,
        plaintext,
    )
}

/// Verifies and decrypts an attachment downloaded from the relay.
pub fn decrypt_blob(
    key: &ContentKey,
    blob_id: BlobId,
    sender_device_id: DeviceId,
    blob: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Error> {
    if blob.len() < MIN_BODY_LEN {
        return Err(Error::Blob("shorter than IV, one block and MAC"));
    }
    envelope::open_body(
        key.as_bytes(),
        BLOB_LABEL,
        blob_id.as_bytes(),
        &sender_device_id,
        blob,
    )
    .map_err(|failure| match failure {
        BodyFailure::Mac => Error::Blob("MAC does not verify"),
        BodyFailure::Padding => Error::Blob("invalid padding"),
    })
}
