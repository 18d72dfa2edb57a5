//! The primitives under protocol v1 against the vectors of their standards:
//! RFC 7748 (X25519), RFC 5869 (HKDF-SHA256), RFC 4231 (HMAC-SHA256),
//! NIST SP 800-38A (AES-256-CBC) and RFC 7914 (scrypt).

use kontor_crypto::__primitives as p;

use crate::{arr, h};

#[test]
fn rfc7748_x25519_scalar_multiplication() {
    let cases = [
        (
            "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
            "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
            "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
        ),
        (
            "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
            "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
            "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
        ),
    ];
    for (scalar, u, out) in cases {
        assert_eq!(p::x25519(arr(scalar), arr(u)).to_vec(), h(out));
    }
}

#[test]
fn rfc7748_x25519_iterated_once_and_1000_times() {
    let mut k = [0u8; 32];
    k[0] = 9;
    let mut u = k;
    let mut after_one = [0u8; 32];
    for i in 1..=1000 {
        let next = p::x25519(k, u);
        u = k;
        k = next;
        if i == 1 {
            after_one = k;
        }
    }
    assert_eq!(
        after_one.to_vec(),
        h("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079")
    );
    assert_eq!(
        k.to_vec(),
        h("684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51")
    );
}

#[test]
fn rfc7748_diffie_hellman_alice_and_bob() {
    use kontor_crypto::IdentitySecret;
    let alice = IdentitySecret::from_hex(
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
    )
    .unwrap();
    let bob = IdentitySecret::from_hex(
        "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
    )
    .unwrap();
    assert_eq!(
        alice.public().to_hex(),
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    );
    assert_eq!(
        bob.public().to_hex(),
        "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
    );
    let shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
    assert_eq!(
        p::x25519(*alice.to_bytes(), *bob.public().as_bytes()).to_vec(),
        h(shared)
    );
    assert_eq!(
        p::x25519(*bob.to_bytes(), *alice.public().as_bytes()).to_vec(),
        h(shared)
    );
}

#[test]
fn rfc5869_hkdf_sha256() {
    // (ikm, salt, info, okm); hkdf64 gives the first 64 bytes of any longer
    // output and shorter outputs are its prefixes (HKDF's T(1) || T(2) ...).
    let cases = [
        (
            "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
            "000102030405060708090a0b0c",
            "f0f1f2f3f4f5f6f7f8f9",
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
        ),
        (
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\
             202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f\
             404142434445464748494a4b4c4d4e4f",
            "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f\
             808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f\
             a0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
            "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecf\
             d0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeef\
             f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
            "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c\
             59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71\
             cc30c58179ec3e87c14c01d5c1f3434f1d87",
        ),
        (
            "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
            "",
            "",
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
        ),
    ];
    for (ikm, salt, info, okm) in cases {
        let okm = h(okm);
        let ours = p::hkdf64(&h(salt), &h(ikm), &[&h(info)]);
        let n = okm.len().min(64);
        assert_eq!(&ours[..n], &okm[..n]);
    }
}

#[test]
fn rfc4231_hmac_sha256() {
    let cases: [(Vec<u8>, Vec<u8>, &str); 5] = [
        (
            vec![0x0b; 20],
            b"Hi There".to_vec(),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        ),
        (
            b"Jefe".to_vec(),
            b"what do ya want for nothing?".to_vec(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            vec![0xaa; 20],
            vec![0xdd; 50],
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
        ),
        (
            vec![0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        ),
        (
            vec![0xaa; 131],
            b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.".to_vec(),
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
        ),
    ];
    for (key, data, tag) in cases {
        let tag = h(tag);
        assert_eq!(p::hmac(&key, &[&data]).to_vec(), tag);
        // Split input gives the same tag; a wrong tag is refused.
        let (a, b) = data.split_at(data.len() / 2);
        assert!(p::hmac_verify(&key, &[a, b], &tag));
        let mut wrong = tag.clone();
        wrong[31] ^= 1;
        assert!(!p::hmac_verify(&key, &[&data], &wrong));
        assert!(!p::hmac_verify(&key, &[&data], &tag[..16]));
    }
}

#[test]
fn nist_sp800_38a_f25_cbc_aes256() {
    let key = arr::<32>("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4");
    let iv = arr::<16>("000102030405060708090a0b0c0d0e0f");
    let plaintext = h(
        "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51\
                       30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
    );
    let ciphertext = h(
        "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d\
                        39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b",
    );
    // Our CBC pads with PKCS#7: the NIST blocks come first, then a full
    // padding block.
    let ours = p::cbc_encrypt(&key, &iv, &plaintext);
    assert_eq!(ours.len(), 80);
    assert_eq!(&ours[..64], &ciphertext[..]);
    assert_eq!(
        &p::cbc_decrypt(&key, &iv, &ours).unwrap()[..],
        &plaintext[..]
    );
    // Without the padding block the last plaintext byte (0x10) is read as
    // padding of 16 bytes whose other bytes are not 0x10: refused.
    assert!(p::cbc_decrypt(&key, &iv, &ciphertext).is_none());
    assert!(p::cbc_decrypt(&key, &iv, &ours[..79]).is_none());
    assert!(p::cbc_decrypt(&key, &iv, &[]).is_none());
}

#[test]
fn rfc7914_scrypt() {
    let cases = [
        (
            "",
            "",
            4u8,
            1u32,
            1u32,
            "77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442\
             fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906",
        ),
        (
            "password",
            "NaCl",
            10,
            8,
            16,
            "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162\
             2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640",
        ),
    ];
    for (password, salt, log_n, r, pp, out) in cases {
        let params = scrypt::Params::new(log_n, r, pp).unwrap();
        let mut ours = [0u8; 64];
        scrypt::scrypt(password.as_bytes(), salt.as_bytes(), &params, &mut ours).unwrap();
        assert_eq!(ours.to_vec(), h(out));
    }
}
