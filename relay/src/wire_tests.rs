//! Unit tests of the envelope and frame formats.

use super::*;

const LIMITS: EnvelopeLimits = EnvelopeLimits {
    body_bytes_max: 1024,
    recipients_max: 4,
    blobs_max: 2,
};

/// A delivery header as protocol v1 lays it out, wrap bytes zero.
fn delivery(message: u8, sender: u8, recipient: u8) -> Vec<u8> {
    let mut d = vec![0u8; DELIVERY_LEN];
    d[0] = 0x01;
    d[1..17].fill(message);
    d[17..33].fill(sender);
    d[33..65].fill(sender ^ 0xff);
    d[65..81].fill(recipient);
    d[81..113].fill(recipient ^ 0xff);
    d
}

fn check_refused(bytes: &[u8], expected: &str) {
    let err = PostedEnvelope::parse(bytes, &LIMITS).unwrap_err();
    assert!(
        err.to_string().contains(expected),
        "{err} does not mention {expected:?}"
    );
}

#[test]
fn a_direct_envelope_round_trips() {
    let (a, b) = (delivery(1, 2, 3), delivery(1, 2, 4));
    let bytes = PostedEnvelope::encode(None, &[[9; 16]], &[&a, &b], &[7; 64]);
    let env = PostedEnvelope::parse(&bytes, &LIMITS).unwrap();
    assert_eq!(env.message_id, [1; 16]);
    assert_eq!(env.sender_device_id, DeviceId::from_bytes([2; 16]));
    assert_eq!(env.sender_identity, [2 ^ 0xff; 32]);
    assert_eq!(env.group_id, None);
    assert_eq!(env.blob_ids, vec![[9; 16]]);
    assert_eq!(env.deliveries.len(), 2);
    assert_eq!(env.deliveries[1].recipient, DeviceId::from_bytes([4; 16]));
    assert_eq!(env.deliveries[1].recipient_identity, [4 ^ 0xff; 32]);
    assert_eq!(env.deliveries[0].bytes, a);
    assert_eq!(env.body, vec![7; 64]);
}

#[test]
fn a_group_envelope_carries_its_group() {
    let d = delivery(1, 2, 3);
    let bytes = PostedEnvelope::encode(Some([5; 16]), &[], &[&d], &[7; 64]);
    assert_eq!(
        PostedEnvelope::parse(&bytes, &LIMITS).unwrap().group_id,
        Some([5; 16])
    );
}

#[test]
fn malformed_envelopes_are_refused_with_the_reason() {
    let d = delivery(1, 2, 3);
    let good = PostedEnvelope::encode(None, &[], &[&d], &[7; 64]);
    for len in 0..good.len() {
        assert!(
            PostedEnvelope::parse(&good[..len], &LIMITS).is_err(),
            "truncated to {len}"
        );
    }
    let mut bad = good.clone();
    bad[0] = b'X';
    check_refused(&bad, "magic");
    let mut bad = good.clone();
    bad[4] = 2;
    check_refused(&bad, "version");
    let mut bad = good.clone();
    bad[5] = 7;
    check_refused(&bad, "kind");
    let mut extra = good.clone();
    extra.push(0);
    check_refused(&extra, "after the body");
    let mut v2 = d.clone();
    v2[0] = 2;
    check_refused(
        &PostedEnvelope::encode(None, &[], &[&v2], &[7; 64]),
        "protocol v1",
    );
    check_refused(
        &PostedEnvelope::encode(None, &[], &[], &[7; 64]),
        "no recipient",
    );
    check_refused(
        &PostedEnvelope::encode(None, &[], &[&d], &[7; 63]),
        "body shorter",
    );
}

#[test]
fn deliveries_must_agree_and_not_repeat() {
    let a = delivery(1, 2, 3);
    check_refused(
        &PostedEnvelope::encode(None, &[], &[&a, &delivery(9, 2, 4)], &[7; 64]),
        "disagree",
    );
    check_refused(
        &PostedEnvelope::encode(None, &[], &[&a, &delivery(1, 8, 4)], &[7; 64]),
        "disagree",
    );
    check_refused(
        &PostedEnvelope::encode(None, &[], &[&a, &a], &[7; 64]),
        "named twice",
    );
    check_refused(
        &PostedEnvelope::encode(None, &[[1; 16], [1; 16]], &[&a], &[7; 64]),
        "named twice",
    );
}

#[test]
fn limits_are_enforced() {
    let d: Vec<Vec<u8>> = (0..5).map(|i| delivery(1, 2, 10 + i)).collect();
    let refs: Vec<&[u8]> = d.iter().map(Vec::as_slice).collect();
    let err = PostedEnvelope::parse(&PostedEnvelope::encode(None, &[], &refs, &[7; 64]), &LIMITS)
        .unwrap_err();
    assert_eq!(
        err,
        Error::TooMany {
            what: "recipient devices",
            max: 4
        }
    );
    let err = PostedEnvelope::parse(
        &PostedEnvelope::encode(None, &[], &refs[..1], &[7; 1025]),
        &LIMITS,
    )
    .unwrap_err();
    assert_eq!(
        err,
        Error::TooLarge {
            what: "message body",
            max: 1024
        }
    );
    let blobs = [[1; 16], [2; 16], [3; 16]];
    let err = PostedEnvelope::parse(
        &PostedEnvelope::encode(None, &blobs, &refs[..1], &[7; 64]),
        &LIMITS,
    )
    .unwrap_err();
    assert_eq!(
        err,
        Error::TooMany {
            what: "attachments",
            max: 2
        }
    );
}

#[test]
fn frames_and_batches_round_trip() {
    let d = delivery(1, 2, 3);
    let frame = encode_frame(42, 1_700_000_000_000, &d, &[7; 64]);
    let decoded = decode_frame(&frame).unwrap();
    assert_eq!(decoded.seq, 42);
    assert_eq!(decoded.received_at_ms, 1_700_000_000_000);
    assert_eq!(&decoded.sealed[..DELIVERY_LEN], &d[..]);
    assert_eq!(
        &decoded.sealed[DELIVERY_LEN..DELIVERY_LEN + 4],
        &64u32.to_be_bytes()
    );
    let batch = encode_batch(&[frame.clone(), frame]);
    assert_eq!(decode_batch(&batch).unwrap().len(), 2);
    assert!(decode_batch(&batch[..batch.len() - 1]).is_err());
    assert!(decode_frame(&[0; 20]).is_err());
    assert_eq!(decode_batch(&encode_batch(&[])).unwrap(), vec![]);
}
