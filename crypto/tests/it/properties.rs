//! Property tests of protocol v1: round trips, tamper detection, body swaps.

use kontor_crypto::{
    DeviceId, Error, IdentitySecret, MessageId, Recipient, SealRandomness, Sender,
    envelope::seal_with_danger_fixed_randomness, open,
};
use proptest::prelude::*;

/// Keys and randomness from proptest's seed-derived bytes.
fn secret(seed: u8, i: usize) -> IdentitySecret {
    let mut bytes = [seed; 32];
    bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
    bytes[31] = 0x40 | (seed >> 2);
    IdentitySecret::from_bytes(bytes)
}

struct Fixture {
    sender: IdentitySecret,
    sender_device: DeviceId,
    recipients: Vec<(DeviceId, IdentitySecret)>,
}

impl Fixture {
    fn new(seed: u8, n: usize) -> Self {
        Self {
            sender: secret(seed, 1000),
            sender_device: DeviceId([seed; 16]),
            recipients: (0..n)
                .map(|i| {
                    let mut id = [seed.wrapping_add(1); 16];
                    id[..8].copy_from_slice(&(i as u64).to_be_bytes());
                    (DeviceId(id), secret(seed.wrapping_add(1), i))
                })
                .collect(),
        }
    }

    fn list(&self) -> Vec<Recipient> {
        self.recipients
            .iter()
            .map(|(d, s)| Recipient {
                device_id: *d,
                identity: s.public(),
            })
            .collect()
    }

    fn seal(&self, id: [u8; 16], plaintext: &[u8]) -> kontor_crypto::SealedEnvelope {
        kontor_crypto::seal(
            &mut kontor_crypto::os_rng(),
            MessageId(id),
            Sender {
                device_id: self.sender_device,
                identity: &self.sender,
            },
            &self.list(),
            plaintext,
        )
        .unwrap()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip_for_any_size_and_recipient_count(
        seed in any::<u8>(),
        recipients in 1usize..12,
        plaintext in prop::collection::vec(any::<u8>(), 0..70_000),
    ) {
        let fx = Fixture::new(seed, recipients);
        let envelope = fx.seal([seed; 16], &plaintext);
        prop_assert_eq!(envelope.deliveries().len(), recipients);
        for (device, secret) in &fx.recipients {
            let sealed = envelope.sealed_for(*device).unwrap();
            let opened = open(&sealed, secret, Some(*device), &fx.sender.public()).unwrap();
            prop_assert_eq!(&opened.plaintext[..], &plaintext[..]);
            prop_assert_eq!(opened.sender_device_id, fx.sender_device);
            prop_assert_eq!(opened.message_id, MessageId([seed; 16]));
        }
    }

    #[test]
    fn any_flipped_bit_is_rejected(
        seed in any::<u8>(),
        plaintext in prop::collection::vec(any::<u8>(), 0..300),
        bit in any::<prop::sample::Index>(),
    ) {
        let fx = Fixture::new(seed, 1);
        let (device, secret) = &fx.recipients[0];
        let mut sealed = fx.seal([7; 16], &plaintext).sealed_for(*device).unwrap();
        let bit = bit.index(sealed.len() * 8);
        sealed[bit / 8] ^= 1 << (bit % 8);
        let result = open(&sealed, secret, Some(*device), &fx.sender.public());
        prop_assert!(result.is_err(), "bit {} flipped and still opened", bit);
    }

    #[test]
    fn a_body_swapped_between_recipients_is_rejected(
        seed in any::<u8>(),
        a in prop::collection::vec(any::<u8>(), 0..500),
        b in prop::collection::vec(any::<u8>(), 0..500),
    ) {
        // Two messages for two recipients: each recipient's header and wrap
        // combined with the body of the other message.
        let fx = Fixture::new(seed, 2);
        let first = fx.seal([1; 16], &a);
        let second = fx.seal([2; 16], &b);
        for (i, (device, secret)) in fx.recipients.iter().enumerate() {
            let swapped = first.deliveries()[i].sealed_message(second.body());
            let result = open(&swapped, secret, Some(*device), &fx.sender.public());
            prop_assert_eq!(result.unwrap_err(), Error::BodyHash);
        }
    }

    #[test]
    fn sealing_is_deterministic_given_the_randomness(
        seed in any::<u8>(),
        plaintext in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let fx = Fixture::new(seed, 3);
        let randomness = SealRandomness::generate(&mut kontor_crypto::os_rng(), 3);
        let sender = Sender { device_id: fx.sender_device, identity: &fx.sender };
        let one = seal_with_danger_fixed_randomness(&randomness, MessageId([3; 16]), sender, &fx.list(), &plaintext).unwrap();
        let two = seal_with_danger_fixed_randomness(&randomness, MessageId([3; 16]), sender, &fx.list(), &plaintext).unwrap();
        prop_assert_eq!(one, two);
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..1000)) {
        let fx = Fixture::new(1, 1);
        let _ = open(&bytes, &fx.recipients[0].1, None, &fx.sender.public());
        let _ = kontor_crypto::open_key_file(&bytes, "1234");
        let _ = kontor_crypto::store::key_file_params(&bytes);
    }
}
