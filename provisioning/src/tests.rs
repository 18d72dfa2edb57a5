//! Unit tests of the pure parts: key sealing, tokens, OIDs and ids.

use crate::keystore::{self, Kek};
use crate::store::{TokenBinding, TokenRecord};
use crate::token::{self, TokenSpec};
use crate::types::{CertSerial, DeviceId};
use crate::{Error, IDENTITY_KEY_OID};

fn rng() -> impl rand_core::CryptoRng {
    rand_core::UnwrapErr(rand::rngs::SysRng)
}

#[test]
fn sealed_key_opens_only_with_same_kek_and_label() {
    let kek = Kek::from_bytes([1; 32]);
    let sealed = keystore::seal(&kek, "issuing-1", b"pkcs8 bytes", &mut rng());
    assert_eq!(
        keystore::open(&kek, "issuing-1", &sealed)
            .unwrap()
            .as_slice(),
        b"pkcs8 bytes"
    );
    assert!(keystore::open(&Kek::from_bytes([2; 32]), "issuing-1", &sealed).is_err());
    assert!(
        keystore::open(&kek, "root", &sealed).is_err(),
        "label is bound"
    );
    let mut tampered = sealed.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(keystore::open(&kek, "issuing-1", &tampered).is_err());
    assert!(keystore::open(&kek, "issuing-1", b"KTPK1").is_err());
    assert!(!String::from_utf8_lossy(&sealed).contains("pkcs8"));
}

#[test]
fn kek_parses_hex_and_hides_itself() {
    let kek = Kek::from_hex(&format!("  {}\n", "ab".repeat(32))).unwrap();
    assert_eq!(kek.to_hex().as_str(), "ab".repeat(32));
    assert_eq!(format!("{kek:?}"), "Kek([redacted])");
    assert!(matches!(Kek::from_hex("abcd"), Err(Error::Kek(_))));
}

fn spec(max_uses: u32) -> TokenSpec {
    TokenSpec {
        binding: TokenBinding::User("alice".into()),
        max_uses,
        lifetime_seconds: 60,
        label: String::new(),
    }
}

fn check(token: &str, record: &TokenRecord, now: i64) -> Result<(), &'static str> {
    token::parse(token)
        .and_then(|p| token::check(&p, record, now))
        .map_err(|e| e.code())
}

#[test]
fn token_checks_in_order() {
    let (token, record) = token::generate(&spec(2), 100, &mut rng()).unwrap();
    let text = token.expose_secret();
    assert_eq!(format!("{token:?}"), "EnrollmentToken([redacted])");
    assert!(
        !format!("{record:?}").contains(&text[21..]),
        "record holds no secret"
    );
    assert_eq!(check(text, &record, 100), Ok(()));
    assert_eq!(check(text, &record, 160), Err("token_expired"));
    assert_eq!(
        check(
            text,
            &TokenRecord {
                uses: 2,
                ..record.clone()
            },
            100
        ),
        Err("token_used_up")
    );
    assert_eq!(
        check(
            text,
            &TokenRecord {
                revoked_at: Some(1),
                ..record.clone()
            },
            100
        ),
        Err("token_revoked")
    );
    // A wrong secret is "unknown", even for a revoked token: no oracle.
    let mut wrong = text.to_owned();
    let last = if wrong.ends_with('0') { "1" } else { "0" };
    wrong.replace_range(wrong.len() - 1.., last);
    assert_eq!(
        check(
            &wrong,
            &TokenRecord {
                revoked_at: Some(1),
                ..record.clone()
            },
            100
        ),
        Err("token_unknown")
    );
    for garbage in [
        "",
        "kt1_",
        "kt1_zz_zz",
        "kt2_0011223344556677_00",
        &text[..text.len() - 2],
    ] {
        assert_eq!(
            check(garbage, &record, 100),
            Err("token_unknown"),
            "{garbage}"
        );
    }
}

#[test]
fn token_spec_limits() {
    assert!(token::generate(&spec(0), 0, &mut rng()).is_err());
    assert!(token::generate(&spec(100_001), 0, &mut rng()).is_err());
    let forever = TokenSpec {
        lifetime_seconds: 400 * 24 * 3600,
        ..spec(1)
    };
    assert!(token::generate(&forever, 0, &mut rng()).is_err());
    let empty = TokenSpec {
        binding: TokenBinding::Department(String::new()),
        ..spec(1)
    };
    assert!(token::generate(&empty, 0, &mut rng()).is_err());
}

#[test]
fn token_qr_code_is_svg() {
    let (token, _) = token::generate(&spec(1), 0, &mut rng()).unwrap();
    let svg = token.qr_svg("https://enroll.example.org").unwrap();
    assert!(
        svg.starts_with("<?xml") && svg.contains("<svg"),
        "{}",
        &svg[..60]
    );
}

#[test]
fn allow_list_matching() {
    assert!(token::allow_list_matches("@example.org", "a@example.org"));
    assert!(token::allow_list_matches("@example.org", "A@Example.ORG"));
    assert!(!token::allow_list_matches("@example.org", "@example.org"));
    assert!(!token::allow_list_matches(
        "@example.org",
        "a@evil-example.org.com"
    ));
    assert!(token::allow_list_matches("a@example.org", "a@example.org"));
    assert!(!token::allow_list_matches("a@example.org", "b@example.org"));
}

#[test]
fn identity_oid_encoding_matches_text_and_placeholder_length() {
    let arcs: Vec<u128> = IDENTITY_KEY_OID
        .split('.')
        .map(|a| a.parse().unwrap())
        .collect();
    let real = crate::pki::oid_content(&arcs);
    let placeholder =
        crate::pki::oid_content(&[2, 25, 16_089_734_061_462_546_405, 1_239_637_126_111_145_484]);
    assert_eq!(
        real.len(),
        placeholder.len(),
        "the swap must keep every length"
    );
    assert_eq!(real[0], 0x69, "2.25");
    // Known encoding of a small OID: 1.2.840.10045.2.1.
    assert_eq!(
        crate::pki::oid_content(&[1, 2, 840, 10045, 2, 1]),
        [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]
    );
}

#[test]
fn ids_round_trip() {
    let device = DeviceId::random(&mut rng());
    assert_eq!(DeviceId::from_urn(&device.urn()), Some(device));
    assert_eq!(DeviceId::from_hex(&device.to_string()), Some(device));
    assert!(DeviceId::from_urn("urn:other:00").is_none());
    let serial = CertSerial::random(&mut rng());
    assert_eq!(serial.as_bytes()[0] & 0xc0, 0x40);
    assert_eq!(CertSerial::from_hex(&serial.to_string()), Some(serial));
    assert!(CertSerial::from_slice(&[0x80; 16]).is_none());
    assert!(CertSerial::from_slice(&[0x40; 15]).is_none());
}

#[test]
fn csr_garbage_is_refused_without_panic() {
    for input in [&b""[..], b"\x30", b"\x30\x82\xff\xff", &[0x30; 5000]] {
        assert!(crate::csr::verify_csr(input).is_err());
    }
    assert!(matches!(
        crate::csr::csr_pem_to_der("not pem"),
        Err(Error::MalformedCsr)
    ));
    assert!(crate::csr::parse_identity_key(&"00".repeat(32)).is_err());
    assert!(crate::csr::parse_identity_key(&"0g".repeat(32)).is_err());
}
