//! Wycheproof's x25519, hkdf_sha256, hmac_sha256 and aes_cbc_pkcs5 sets,
//! run through the primitives protocol v1 uses.

use kontor_crypto::__primitives as p;
use kontor_crypto::{
    DeviceId, Error, IdentityPublic, IdentitySecret, MessageId, Recipient, Sender,
};
use wycheproof::TestResult;

#[test]
fn wycheproof_x25519() {
    let set = wycheproof::xdh::TestSet::load(wycheproof::xdh::TestName::X25519).unwrap();
    let mut run = 0;
    for group in &set.test_groups {
        for test in &group.tests {
            let (Ok(scalar), Ok(public)) = (
                <[u8; 32]>::try_from(&test.private_key[..]),
                <[u8; 32]>::try_from(&test.public_key[..]),
            ) else {
                // Keys of the wrong length cannot reach X25519 through our
                // fixed-size types; the parser refuses them.
                assert!(
                    IdentityPublic::from_hex(&hex::encode(&test.public_key[..])).is_err()
                        || test.private_key.len() != 32
                );
                continue;
            };
            let shared = p::x25519(scalar, public);
            match test.result {
                TestResult::Valid | TestResult::Acceptable => {
                    assert_eq!(&shared[..], &test.shared_secret[..], "tcId {}", test.tc_id);
                }
                TestResult::Invalid => {
                    assert_ne!(&shared[..], &test.shared_secret[..], "tcId {}", test.tc_id);
                }
            }
            // Protocol v1 refuses any key agreement that ends in zeros.
            if shared == [0u8; 32] {
                let sender = IdentitySecret::from_bytes(scalar);
                let result = kontor_crypto::seal(
                    &mut kontor_crypto::os_rng(),
                    MessageId([1; 16]),
                    Sender {
                        device_id: DeviceId([2; 16]),
                        identity: &sender,
                    },
                    &[Recipient {
                        device_id: DeviceId([3; 16]),
                        identity: IdentityPublic(public),
                    }],
                    b"x",
                );
                assert_eq!(result.unwrap_err(), Error::LowOrder, "tcId {}", test.tc_id);
            }
            run += 1;
        }
    }
    assert!(run > 400, "ran only {run} x25519 cases");
}

#[test]
fn wycheproof_hkdf_sha256() {
    let set = wycheproof::hkdf::TestSet::load(wycheproof::hkdf::TestName::HkdfSha256).unwrap();
    let mut run = 0;
    for group in &set.test_groups {
        for test in &group.tests {
            let mut expected = vec![0u8; test.size];
            let derived = hkdf::Hkdf::<sha2::Sha256>::new(Some(&test.salt), &test.ikm)
                .expand(&test.info, &mut expected);
            match test.result {
                TestResult::Valid | TestResult::Acceptable => {
                    derived.unwrap();
                    assert_eq!(&expected[..], &test.okm[..], "tcId {}", test.tc_id);
                    // Our 64-byte HKDF agrees on every common prefix.
                    let ours = p::hkdf64(&test.salt, &test.ikm, &[&test.info]);
                    let n = test.size.min(64);
                    assert_eq!(&ours[..n], &test.okm[..n], "tcId {}", test.tc_id);
                }
                TestResult::Invalid => {
                    // The invalid cases ask for more than 255 * 32 bytes.
                    assert!(derived.is_err(), "tcId {}", test.tc_id);
                }
            }
            run += 1;
        }
    }
    assert!(run > 50, "ran only {run} hkdf cases");
}

#[test]
fn wycheproof_hmac_sha256() {
    let set = wycheproof::mac::TestSet::load(wycheproof::mac::TestName::HmacSha256).unwrap();
    let mut run = 0;
    for group in &set.test_groups {
        let tag_len = group.tag_size / 8;
        for test in &group.tests {
            let ours = p::hmac(&test.key, &[&test.msg]);
            let matches = ours[..tag_len] == test.tag[..];
            match test.result {
                TestResult::Valid | TestResult::Acceptable => {
                    assert!(matches, "tcId {}", test.tc_id);
                    if tag_len == 32 {
                        assert!(p::hmac_verify(&test.key, &[&test.msg], &test.tag));
                    }
                }
                TestResult::Invalid => {
                    assert!(!matches || test.tag.len() != tag_len, "tcId {}", test.tc_id);
                    assert!(
                        !p::hmac_verify(&test.key, &[&test.msg], &test.tag),
                        "tcId {}",
                        test.tc_id
                    );
                }
            }
            run += 1;
        }
    }
    assert!(run > 100, "ran only {run} hmac cases");
}

#[test]
fn wycheproof_aes_cbc_pkcs5_256_bit_keys() {
    let set = wycheproof::cipher::TestSet::load(wycheproof::cipher::TestName::AesCbcPkcs5).unwrap();
    let mut run = 0;
    for group in set.test_groups.iter().filter(|g| g.key_size == 256) {
        for test in &group.tests {
            let key: [u8; 32] = test.key[..].try_into().unwrap();
            let iv: [u8; 16] = test.nonce[..].try_into().unwrap();
            let decrypted = p::cbc_decrypt(&key, &iv, &test.ct);
            match test.result {
                TestResult::Valid | TestResult::Acceptable => {
                    assert_eq!(
                        p::cbc_encrypt(&key, &iv, &test.pt),
                        &test.ct[..],
                        "tcId {}",
                        test.tc_id
                    );
                    assert_eq!(&decrypted.unwrap()[..], &test.pt[..], "tcId {}", test.tc_id);
                }
                TestResult::Invalid => {
                    assert!(decrypted.is_none(), "tcId {}", test.tc_id);
                }
            }
            run += 1;
        }
    }
    assert!(run > 50, "ran only {run} aes-cbc cases");
}
