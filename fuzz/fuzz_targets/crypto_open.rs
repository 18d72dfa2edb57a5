//! Protocol v1 as a recipient sees it: sealed messages, attachments and
//! archive parts, all bytes from the relay.
//!
//! The first byte picks the mode, the rest is the input:
//! - 0: the bytes as a sealed message, parsed and opened with a fixed
//!   recipient key (that of the first valid vector, so its sealed message is
//!   a seed that reaches the MACs);
//! - 1: the bytes as an attachment, decrypted under a fixed key;
//! - 2: the bytes as a plaintext, sealed to the fixed recipient and opened
//!   again: it must come back unchanged;
//! - 3: as 2, then one byte of the sealed message is changed (position and
//!   XOR mask from the input): opening must fail, every byte is
//!   authenticated;
//! - 4: the bytes as an archive document, sealed as an archive part and
//!   opened with the agent's `open_part`.
#![no_main]

use std::sync::LazyLock;

use kontor_crypto::envelope::{
    Recipient, SealRandomness, SealedMessage, Sender, seal_with_danger_fixed_randomness,
};
use kontor_crypto::{BlobId, ContentKey, DeviceId, IdentityPublic, IdentitySecret, MessageId};
use libfuzzer_sys::fuzz_target;

/// The first valid vector of fixtures/vectors/envelope-v1.json ("empty"):
/// its first recipient's private key and its sender's public key.
const RECIPIENT_PRIVATE: &str = "ed6788e882eff8ce315ed78fb783935d7cc1f7f67a88cbf50b94f17bed7af603";
const RECIPIENT_DEVICE: &str = "226a918e7f3361afbe9eef36df6665c6";
const SENDER_PUBLIC: &str = "9a21ff2e816333a3647be989990c6b0f87460e8402400540b6bdd6233e37d24b";

struct Keys {
    recipient: IdentitySecret,
    recipient_device: DeviceId,
    expected_sender: IdentityPublic,
    sender: IdentitySecret,
    sender_device: DeviceId,
    randomness: SealRandomness,
    blob_key: ContentKey,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| Keys {
    recipient: IdentitySecret::from_hex(RECIPIENT_PRIVATE).expect("fixed key"),
    recipient_device: DeviceId::from_hex(RECIPIENT_DEVICE).expect("fixed id"),
    expected_sender: IdentityPublic::from_hex(SENDER_PUBLIC).expect("fixed key"),
    sender: IdentitySecret::from_bytes([0x5a; 32]),
    sender_device: DeviceId([0x11; 16]),
    randomness: SealRandomness {
        content_key: ContentKey::from_bytes([0x33; 64]),
        body_iv: [0x44; 16],
        ephemeral: IdentitySecret::from_bytes([0x55; 32]),
        wrap_ivs: vec![[0x66; 16]],
    },
    blob_key: ContentKey::from_bytes([0x77; 64]),
});

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let keys = &*KEYS;
    match mode % 5 {
        0 => open_raw(keys, input),
        1 => {
            let _ = kontor_crypto::decrypt_blob(
                &keys.blob_key,
                BlobId([0x22; 16]),
                keys.sender_device,
                input,
            );
        }
        2 => {
            let sealed = seal(keys, keys.recipient_device, input);
            let opened = SealedMessage::parse(&sealed)
                .and_then(|m| {
                    m.open(
                        &keys.recipient,
                        Some(keys.recipient_device),
                        &keys.sender.public(),
                    )
                })
                .expect("a message sealed to us opens");
            assert_eq!(&opened.plaintext[..], input);
        }
        3 => {
            let Some((position, rest)) = input.split_first_chunk::<3>() else {
                return;
            };
            let mask = position[2] | 1;
            let mut sealed = seal(keys, keys.recipient_device, rest);
            let at = usize::from(u16::from_be_bytes([position[0], position[1]])) % sealed.len();
            sealed[at] ^= mask;
            let opened = SealedMessage::parse(&sealed).and_then(|m| {
                m.open(
                    &keys.recipient,
                    Some(keys.recipient_device),
                    &keys.sender.public(),
                )
            });
            assert!(opened.is_err(), "a changed byte at {at} went unnoticed");
        }
        _ => {
            // What `seal_archive_part` makes: a message for device id zero.
            let part = seal(keys, DeviceId::ARCHIVE, input);
            let _ = kontor_agent::archive::open_part(&part, &keys.recipient);
        }
    }
});

fn open_raw(keys: &Keys, input: &[u8]) {
    let Ok(message) = SealedMessage::parse(input) else {
        return;
    };
    let _ = message.message_id();
    let _ = message.recipient_device_id();
    // As the agent does: with the key pinned for the sender device, and with
    // the key the header itself names (so step 4 passes on mutated headers).
    let _ = message.open(
        &keys.recipient,
        Some(keys.recipient_device),
        &keys.expected_sender,
    );
    let named = IdentityPublic(input[33..65].try_into().expect("parse checked the length"));
    let _ = message.open(&keys.recipient, None, &named);
}

fn seal(keys: &Keys, device_id: DeviceId, plaintext: &[u8]) -> Vec<u8> {
    let recipient = Recipient {
        device_id,
        identity: keys.recipient.public(),
    };
    let envelope = seal_with_danger_fixed_randomness(
        &keys.randomness,
        MessageId([0x88; 16]),
        Sender {
            device_id: keys.sender_device,
            identity: &keys.sender,
        },
        &[recipient],
        plaintext,
    )
    .expect("one recipient, small plaintext");
    envelope.deliveries()[0].sealed_message(envelope.body())
}
