//! What a device sends to enroll or renew: the enrollment request's JSON,
//! the PKCS#10 request (PEM and DER) with its key and self-signature
//! checks, the X25519 identity key, the enrollment token, and the
//! certificate a renewal presents (checked against a throw-away CA made once
//! per process in the temporary directory).
//!
//! The first byte picks the mode: 0 the rest as DER (CSR and certificate),
//! 1 the rest as an enrollment request body, 2 the rest as a renewal's
//! certificate and CSR in PEM, 3 the rest as a bare token, key or PEM text.
#![no_main]

use std::sync::LazyLock;

use kontor_provisioning::csr::{
    certificate_pem_to_der, csr_pem_to_der, parse_identity_key, verify_csr,
};
use kontor_provisioning::service::EnrollRequest;
use kontor_provisioning::time::OffsetDateTime;
use kontor_provisioning::{Kek, Pki, PkiConfig, token};
use libfuzzer_sys::fuzz_target;

static PKI: LazyLock<Pki> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("kontor-fuzz-pki-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let now = OffsetDateTime::from_unix_timestamp(1_767_225_600).expect("fixed time");
    let pki = Pki::open_or_create(
        &dir,
        &Kek::from_bytes([0x24; 32]),
        PkiConfig::new("Example Org", "https://kontor.example.org"),
        now,
        &mut kontor_crypto::os_rng(),
    )
    .expect("a CA in the temporary directory");
    let _ = std::fs::remove_dir_all(&dir);
    pki
});

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            let _ = verify_csr(input);
            let _ = PKI.verify_device_cert(input);
        }
        1 => {
            if let Ok(request) = serde_json::from_slice::<EnrollRequest>(input) {
                let _ = parse_identity_key(&request.identity_key);
                if let Ok(der) = csr_pem_to_der(&request.csr) {
                    let _ = verify_csr(&der);
                }
                let _ = token::parse(&request.token);
            }
        }
        2 => {
            let Ok(text) = std::str::from_utf8(input) else {
                return;
            };
            // A renewal body carries both PEM blocks; split where the
            // second begins.
            let (certificate, csr) = text
                .find("-----BEGIN CERTIFICATE REQUEST")
                .map_or((text, ""), |at| text.split_at(at));
            if let Ok(der) = certificate_pem_to_der(certificate) {
                let _ = PKI.verify_device_cert(&der);
            }
            if let Ok(der) = csr_pem_to_der(csr) {
                let _ = verify_csr(&der);
            }
        }
        _ => {
            let Ok(text) = std::str::from_utf8(input) else {
                return;
            };
            let _ = token::parse(text);
            let _ = parse_identity_key(text);
            let _ = csr_pem_to_der(text);
        }
    }
});
