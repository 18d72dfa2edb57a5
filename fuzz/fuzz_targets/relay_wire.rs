//! The device API's binary formats: a posted envelope (what any enrolled
//! device may send the relay), checked with the relay's default limits, and
//! the delivered frames and batches (what the agent reads from the relay).
#![no_main]

use std::sync::LazyLock;

use kontor_relay::service::RelayConfig;
use kontor_relay::wire::{self, EnvelopeLimits, PostedEnvelope};
use libfuzzer_sys::fuzz_target;

static LIMITS: LazyLock<EnvelopeLimits> = LazyLock::new(|| {
    let config = RelayConfig::default();
    EnvelopeLimits {
        body_bytes_max: config.body_bytes_max,
        recipients_max: config.recipients_max,
        blobs_max: config.blobs_per_message_max,
    }
});

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = PostedEnvelope::parse(data, &LIMITS) {
        assert!(
            !envelope.deliveries.is_empty(),
            "an envelope without recipients"
        );
        assert!(envelope.deliveries.len() <= LIMITS.recipients_max);
        assert!(envelope.blob_ids.len() <= LIMITS.blobs_max);
        assert!(envelope.body.len() <= LIMITS.body_bytes_max);
        for (i, d) in envelope.deliveries.iter().enumerate() {
            assert_eq!(d.bytes.len(), wire::DELIVERY_LEN);
            assert!(
                envelope.deliveries[..i]
                    .iter()
                    .all(|e| e.recipient != d.recipient),
                "a recipient twice"
            );
        }
        let deliveries: Vec<&[u8]> = envelope.deliveries.iter().map(|d| &d.bytes[..]).collect();
        let again = PostedEnvelope::encode(
            envelope.group_id,
            &envelope.blob_ids,
            &deliveries,
            &envelope.body,
        );
        assert_eq!(again, data, "an envelope does not encode back to itself");
    }
    if let Ok(frame) = wire::decode_frame(data) {
        // The relay does not check the sealed message's own length field
        // (the agent's protocol checks do); where it is right, the frame
        // must encode back to itself.
        let (delivery, rest) = frame.sealed.split_at(wire::DELIVERY_LEN);
        let (declared, body) = rest.split_at(4);
        let declared = u32::from_be_bytes(declared.try_into().expect("4 bytes"));
        if usize::try_from(declared).ok() == Some(body.len()) {
            let again = wire::encode_frame(frame.seq, frame.received_at_ms, delivery, body);
            assert_eq!(again, data, "a frame does not encode back to itself");
        }
    }
    let _ = wire::decode_batch(data);
});
