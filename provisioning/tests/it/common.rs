//! Helpers shared by the tests: a PKI in a temporary directory, device keys
//! and CSRs, the openssl and python3 binaries.

use std::path::Path;
use std::process::Command;

use kontor_provisioning::time::OffsetDateTime;
use kontor_provisioning::{Kek, Pki, PkiConfig};

pub const BASE_URL: &str = "https://enroll.example.org";

pub fn rng() -> impl rand::CryptoRng {
    rand::rng()
}

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

pub fn kek() -> Kek {
    Kek::from_bytes([7u8; 32])
}

pub fn new_pki(dir: &Path) -> Pki {
    Pki::open_or_create(
        dir,
        &kek(),
        PkiConfig::new("Example Org", BASE_URL),
        now(),
        &mut rng(),
    )
    .unwrap()
}

/// A device key and a CSR (PEM) signed by it.
pub fn device_csr() -> (rcgen::KeyPair, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = csr_for(&key);
    (key, csr)
}

pub fn csr_for(key: &rcgen::KeyPair) -> String {
    let mut params = rcgen::CertificateParams::new(vec!["ignored.example".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ignored");
    params.serialize_request(key).unwrap().pem().unwrap()
}

pub fn run(program: &str, args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
