//! Unit tests of the protocol API and the project's vector files.

use std::path::PathBuf;

use crate::store::{self, ScryptParams};
use crate::vectors::{self, Report};
use crate::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/vectors")
        .join(name)
}

/// Compares a generated vector file with the committed one, or rewrites it
/// when `KONTOR_BLESS=1`; then checks every case of the committed file.
fn check_vector_file(name: &str, generated: String) {
    let path = fixture(name);
    if std::env::var_os("KONTOR_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with KONTOR_BLESS=1 to create it)",
            path.display()
        )
    });
    assert!(
        committed == generated,
        "{} differs from what the code generates; review the change and rerun with KONTOR_BLESS=1",
        path.display()
    );
    let report = vectors::check_json(&committed).unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert!(report.passed > 10);
}

#[test]
fn envelope_vectors_match_the_fixture_and_pass() {
    let generated = vectors::generate_envelope();
    // protocol.md asks for one invalid case for every named opening step.
    let steps: std::collections::BTreeSet<_> =
        generated.invalid.iter().map(|c| c.error.as_str()).collect();
    for step in [
        "version",
        "length",
        "recipient",
        "sender_key",
        "low_order",
        "wrap_mac",
        "wrap_padding",
        "body_hash",
        "body_mac",
        "body_padding",
    ] {
        assert!(steps.contains(step), "no invalid case for {step}");
    }
    check_vector_file(
        "envelope-v1.json",
        serde_json::to_string_pretty(&generated).unwrap() + "\n",
    );
}

#[test]
fn store_vectors_match_the_fixture_and_pass() {
    let generated = vectors::generate_store();
    let steps: std::collections::BTreeSet<_> =
        generated.invalid.iter().map(|c| c.error.as_str()).collect();
    assert_eq!(steps, ["format", "pin", "version"].into_iter().collect());
    check_vector_file(
        "store-v1.json",
        serde_json::to_string_pretty(&generated).unwrap() + "\n",
    );
}

#[test]
fn a_wrong_expectation_in_a_vector_file_is_reported_as_failed() {
    let mut vectors = vectors::generate_envelope();
    vectors.invalid[0].error = "body_mac".into();
    vectors.valid[0].plaintext = "00".into();
    let report = vectors::check_envelope(&vectors);
    assert_eq!(report.failed.len(), 2);
    assert_eq!(
        report.passed,
        vectors.valid.len() + vectors.invalid.len() - 2
    );
}

#[test]
fn vector_files_of_unknown_shape_are_refused() {
    assert!(matches!(
        vectors::check_json("{}"),
        Err(Error::VectorFile(_))
    ));
    assert!(matches!(
        vectors::check_json("not json"),
        Err(Error::VectorFile(_))
    ));
    assert!(matches!(
        vectors::check_json(r#"{"protocol":"kontor-envelope-v9","valid":[],"invalid":[]}"#),
        Err(Error::VectorFile(_))
    ));
    assert_eq!(
        vectors::check_json(r#"{"protocol":"kontor-store-v1","valid":[],"invalid":[]}"#).unwrap(),
        Report::default()
    );
}

fn pair(seed: u8) -> (DeviceId, IdentitySecret) {
    (DeviceId([seed; 16]), IdentitySecret::from_bytes([seed; 32]))
}

#[test]
fn each_recipient_opens_only_its_own_message() {
    let mut rng = os_rng();
    let (alice_dev, alice) = pair(1);
    let bob = pair(2);
    let carol = pair(3);
    let recipients: Vec<_> = [&bob, &carol]
        .iter()
        .map(|(d, s)| Recipient {
            device_id: *d,
            identity: s.public(),
        })
        .collect();
    let env = seal(
        &mut rng,
        MessageId([9; 16]),
        Sender {
            device_id: alice_dev,
            identity: &alice,
        },
        &recipients,
        b"hi",
    )
    .unwrap();
    let for_bob = env.sealed_for(bob.0).unwrap();
    assert_eq!(
        &open(&for_bob, &bob.1, Some(bob.0), &alice.public())
            .unwrap()
            .plaintext[..],
        b"hi"
    );
    assert_eq!(
        open(&for_bob, &carol.1, None, &alice.public()).unwrap_err(),
        Error::Recipient
    );
    // Right key, but the caller knows its device id and it is another.
    assert_eq!(
        open(&for_bob, &bob.1, Some(carol.0), &alice.public()).unwrap_err(),
        Error::Recipient
    );
    assert_eq!(
        open(&for_bob, &bob.1, None, &carol.1.public()).unwrap_err(),
        Error::SenderKey
    );
    assert!(env.sealed_for(DeviceId([77; 16])).is_none());
}

#[test]
fn sealing_refuses_no_recipient_and_low_order_keys() {
    let mut rng = os_rng();
    let (dev, alice) = pair(1);
    let sender = Sender {
        device_id: dev,
        identity: &alice,
    };
    assert!(matches!(
        seal(&mut rng, MessageId([1; 16]), sender, &[], b"x"),
        Err(Error::RecipientCount { got: 0, .. })
    ));
    let zero = Recipient {
        device_id: DeviceId([2; 16]),
        identity: IdentityPublic([0; 32]),
    };
    assert_eq!(
        seal(&mut rng, MessageId([1; 16]), sender, &[zero], b"x").unwrap_err(),
        Error::LowOrder
    );
}

#[test]
fn truncated_and_empty_messages_fail_at_the_length_or_version_step() {
    let (_, bob) = pair(2);
    let key = bob.public();
    assert_eq!(open(&[], &bob, None, &key).unwrap_err().step(), "length");
    assert_eq!(
        open(&[0x02], &bob, None, &key).unwrap_err(),
        Error::Version(2)
    );
    assert_eq!(
        open(&[0x01; 100], &bob, None, &key).unwrap_err().step(),
        "length"
    );
    // A length field that promises more than follows.
    let mut msg = vec![0x01; envelope::DELIVERY_LEN];
    msg.extend_from_slice(&1000u32.to_be_bytes());
    msg.extend_from_slice(&[0; 64]);
    assert_eq!(open(&msg, &bob, None, &key).unwrap_err().step(), "length");
    // A body below IV + block + MAC.
    let mut msg = vec![0x01; envelope::DELIVERY_LEN];
    msg.extend_from_slice(&63u32.to_be_bytes());
    msg.extend_from_slice(&[0; 63]);
    assert_eq!(open(&msg, &bob, None, &key).unwrap_err().step(), "length");
}

#[test]
fn archive_parts_open_with_the_archive_key() {
    let mut rng = os_rng();
    let (dev, alice) = pair(1);
    let archive = IdentitySecret::generate(&mut rng);
    let part = seal_archive_part(
        &mut rng,
        MessageId([5; 16]),
        Sender {
            device_id: dev,
            identity: &alice,
        },
        &archive.public(),
        b"chat export",
    )
    .unwrap();
    let parsed = SealedMessage::parse(&part).unwrap();
    assert_eq!(parsed.recipient_device_id(), DeviceId::ARCHIVE);
    let opened = parsed
        .open(&archive, Some(DeviceId::ARCHIVE), &alice.public())
        .unwrap();
    assert_eq!(&opened.plaintext[..], b"chat export");
}

#[test]
fn blobs_round_trip_and_are_bound_to_id_and_sender() {
    let mut rng = os_rng();
    let file = vec![0xabu8; 10_000];
    let (key, blob) = encrypt_blob(&mut rng, BlobId([1; 16]), DeviceId([2; 16]), &file);
    assert_eq!(
        &decrypt_blob(&key, BlobId([1; 16]), DeviceId([2; 16]), &blob).unwrap()[..],
        &file[..]
    );
    assert!(matches!(
        decrypt_blob(&key, BlobId([9; 16]), DeviceId([2; 16]), &blob),
        Err(Error::Blob(_))
    ));
    assert!(matches!(
        decrypt_blob(&key, BlobId([1; 16]), DeviceId([9; 16]), &blob),
        Err(Error::Blob(_))
    ));
    let mut tampered = blob.clone();
    tampered[100] ^= 1;
    assert!(matches!(
        decrypt_blob(&key, BlobId([1; 16]), DeviceId([2; 16]), &tampered),
        Err(Error::Blob(_))
    ));
    assert!(matches!(
        decrypt_blob(&key, BlobId([1; 16]), DeviceId([2; 16]), &blob[..10]),
        Err(Error::Blob(_))
    ));
}

#[test]
fn key_files_open_with_the_right_pin_only() {
    let mut rng = os_rng();
    let key = StoreKey::generate(&mut rng);
    let params = ScryptParams {
        log2_n: 10,
        r: 8,
        p: 1,
    };
    let file = store::wrap_store_key(&mut rng, &key, "1234", params).unwrap();
    assert_eq!(file.len(), store::KEY_FILE_LEN);
    let opened = store::open_key_file_danger_any_cost(&file, "1234").unwrap();
    assert_eq!(opened.as_bytes(), key.as_bytes());
    assert_eq!(
        store::open_key_file_danger_any_cost(&file, "1235").unwrap_err(),
        Error::Pin
    );
    // The product refuses key files cheaper than N = 2^15.
    assert_eq!(
        open_key_file(&file, "1234").unwrap_err(),
        Error::WeakKeyFile { got: 10, min: 15 }
    );
    assert_eq!(store::key_file_params(&file).unwrap(), params);
}

#[test]
fn new_key_files_use_the_default_cost() {
    // One full-cost unlock (N = 2^17): about half a second.
    let mut rng = os_rng();
    let (key, file) = create_key_file(&mut rng, "Geheim!42").unwrap();
    assert_eq!(
        store::key_file_params(&file).unwrap(),
        ScryptParams::DEFAULT
    );
    assert_eq!(
        open_key_file(&file, "Geheim!42").unwrap().as_bytes(),
        key.as_bytes()
    );
}

#[test]
fn corrupt_key_files_are_named_errors() {
    let mut rng = os_rng();
    let key = StoreKey::generate(&mut rng);
    let params = ScryptParams {
        log2_n: 4,
        r: 8,
        p: 1,
    };
    let file = store::wrap_store_key(&mut rng, &key, "1", params).unwrap();
    for len in 0..file.len() {
        let err = store::open_key_file_danger_any_cost(&file[..len], "1").unwrap_err();
        assert_eq!(err.step(), "format", "truncated to {len}");
    }
    let mut r_zero = file.clone();
    r_zero[6..10].copy_from_slice(&0u32.to_be_bytes());
    assert_eq!(
        store::open_key_file_danger_any_cost(&r_zero, "1")
            .unwrap_err()
            .step(),
        "format"
    );
    let mut huge_r = file.clone();
    huge_r[6..10].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        store::open_key_file_danger_any_cost(&huge_r, "1")
            .unwrap_err()
            .step(),
        "format"
    );
    for i in 14..file.len() {
        let mut flipped = file.clone();
        flipped[i] ^= 0x20;
        assert_eq!(
            store::open_key_file_danger_any_cost(&flipped, "1").unwrap_err(),
            Error::Pin,
            "byte {i}"
        );
    }
}

#[test]
fn records_are_bound_to_table_and_row() {
    let mut rng = os_rng();
    let cipher = RecordCipher::new(&StoreKey::generate(&mut rng));
    let record = cipher.seal(&mut rng, "messages", b"7", b"secret text");
    assert_eq!(
        &cipher.open("messages", b"7", &record).unwrap()[..],
        b"secret text"
    );
    assert_eq!(
        cipher.open("messages", b"8", &record).unwrap_err(),
        Error::Record
    );
    assert_eq!(
        cipher.open("contacts", b"7", &record).unwrap_err(),
        Error::Record
    );
    // Table and row cannot trade bytes: ("ab", "c") is not ("a", "bc").
    let split = cipher.seal(&mut rng, "ab", b"c", b"x");
    assert_eq!(cipher.open("a", b"bc", &split).unwrap_err(), Error::Record);
    assert_eq!(
        cipher.open("messages", b"7", &record[..40]).unwrap_err(),
        Error::Record
    );
    let other = RecordCipher::new(&StoreKey::generate(&mut rng));
    assert_eq!(
        other.open("messages", b"7", &record).unwrap_err(),
        Error::Record
    );
}

#[test]
fn safety_numbers_are_symmetric_and_key_dependent() {
    let a = IdentitySecret::from_bytes([1; 32]).public();
    let b = IdentitySecret::from_bytes([2; 32]).public();
    let c = IdentitySecret::from_bytes([3; 32]).public();
    let ab = safety_number(
        fingerprint::Party {
            id: "anna@example.org",
            identity: &a,
        },
        fingerprint::Party {
            id: "ben@example.org",
            identity: &b,
        },
    );
    let ba = safety_number(
        fingerprint::Party {
            id: "ben@example.org",
            identity: &b,
        },
        fingerprint::Party {
            id: "anna@example.org",
            identity: &a,
        },
    );
    let ac = safety_number(
        fingerprint::Party {
            id: "anna@example.org",
            identity: &a,
        },
        fingerprint::Party {
            id: "ben@example.org",
            identity: &c,
        },
    );
    assert_eq!(ab, ba);
    assert_ne!(ab, ac);
    assert_eq!(ab.len(), 12 * 5 + 11);
    assert!(
        ab.split(' ')
            .all(|g| g.len() == 5 && g.bytes().all(|c| c.is_ascii_digit()))
    );
}

#[test]
fn secrets_do_not_print() {
    let mut rng = os_rng();
    let secret = IdentitySecret::from_bytes([0x42; 32]);
    let printed = format!(
        "{secret:?} {:?} {:?} {:?}",
        ContentKey::from_bytes([0x42; 64]),
        StoreKey::from_bytes([0x42; 32]),
        RecordCipher::new(&StoreKey::generate(&mut rng))
    );
    assert!(!printed.contains("4242"), "{printed}");
    assert_eq!(printed.matches("[redacted]").count(), 4);
}

#[test]
fn hex_parsing_names_the_problem() {
    assert_eq!(
        DeviceId::from_hex("abc").unwrap_err(),
        Error::Invalid {
            what: "DeviceId",
            why: "wrong length"
        }
    );
    assert_eq!(
        IdentityPublic::from_hex(&"zz".repeat(32)).unwrap_err(),
        Error::Invalid {
            what: "identity public key",
            why: "not hex"
        }
    );
}
