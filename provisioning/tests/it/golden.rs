//! Golden files for what we emit: the parsed fields of a device certificate
//! and of a CRL made from fixed input. Random parts (CA keys, signatures,
//! key identifiers) are shown by length only. Regenerate with
//! `KONTOR_UPDATE_GOLDEN=1 cargo test -p kontor-provisioning` and review the
//! diff.

use std::fmt::Write;

use kontor_provisioning::csr::{csr_pem_to_der, verify_csr};
use kontor_provisioning::pki::DeviceCertRequest;
use kontor_provisioning::time::{Date, Month, OffsetDateTime, Time};
use kontor_provisioning::{CertSerial, DeviceId, Kek, Pki, PkiConfig};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::*;

use crate::common::*;

fn check_golden(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/provisioning")
        .join(name);
    if std::env::var_os("KONTOR_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with KONTOR_UPDATE_GOLDEN=1", path.display()));
    assert_eq!(
        actual, expected,
        "{name} differs from the golden file; if intended, regenerate it"
    );
}

fn fixed_now() -> OffsetDateTime {
    Date::from_calendar_date(2026, Month::January, 1)
        .unwrap()
        .with_time(Time::MIDNIGHT)
        .assume_utc()
}

fn fixed_pki(dir: &std::path::Path) -> Pki {
    Pki::open_or_create(
        dir,
        &Kek::from_bytes([1; 32]),
        PkiConfig::new("Example Org", BASE_URL),
        fixed_now(),
        &mut rng(),
    )
    .unwrap()
}

fn describe_extension(out: &mut String, ext: &X509Extension<'_>) {
    let what = match ext.parsed_extension() {
        ParsedExtension::SubjectAlternativeName(san) => {
            let names: Vec<String> = san
                .general_names
                .iter()
                .map(|n| match n {
                    GeneralName::URI(uri) => format!("URI:{uri}"),
                    other => format!("{other:?}"),
                })
                .collect();
            format!("subjectAltName {}", names.join(", "))
        }
        ParsedExtension::KeyUsage(ku) => format!("keyUsage {ku}"),
        ParsedExtension::ExtendedKeyUsage(eku) => format!(
            "extKeyUsage clientAuth={} serverAuth={} any={} other={}",
            eku.client_auth,
            eku.server_auth,
            eku.any,
            eku.other.len()
        ),
        ParsedExtension::BasicConstraints(bc) => format!(
            "basicConstraints ca={} pathlen={:?}",
            bc.ca, bc.path_len_constraint
        ),
        ParsedExtension::SubjectKeyIdentifier(id) => {
            format!("subjectKeyIdentifier ({} bytes)", id.0.len())
        }
        ParsedExtension::AuthorityKeyIdentifier(aki) => format!(
            "authorityKeyIdentifier keyid ({} bytes)",
            aki.key_identifier.as_ref().map_or(0, |k| k.0.len())
        ),
        ParsedExtension::CRLDistributionPoints(points) => {
            let mut uris = Vec::new();
            for point in points.iter() {
                if let Some(DistributionPointName::FullName(names)) = &point.distribution_point {
                    for name in names {
                        if let GeneralName::URI(uri) = name {
                            uris.push(uri.to_string());
                        }
                    }
                }
            }
            format!("crlDistributionPoints {}", uris.join(", "))
        }
        ParsedExtension::CRLNumber(n) => format!("cRLNumber {n}"),
        _ => format!("value {}", hex::encode(ext.value)),
    };
    writeln!(
        out,
        "extension {} critical={}: {what}",
        ext.oid, ext.critical
    )
    .unwrap();
}

#[test]
fn golden_device_certificate_fields() {
    let dir = tempfile::tempdir().unwrap();
    let pki = fixed_pki(dir.path());
    let (_key, csr) = device_csr();
    let csr = verify_csr(&csr_pem_to_der(&csr).unwrap()).unwrap();
    let mut identity_key = [0u8; 32];
    for (i, b) in identity_key.iter_mut().enumerate() {
        *b = i as u8;
    }
    let request = DeviceCertRequest {
        csr: &csr,
        device_id: DeviceId::from_bytes(
            *b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f",
        ),
        identity_key,
        serial: CertSerial::from_random([0x55; 16]),
    };
    let issued = pki.issue_device(&request, fixed_now()).unwrap();
    let (_, cert) = X509Certificate::from_der(&issued.der).unwrap();
    let mut out = String::new();
    writeln!(out, "version: {}", cert.version().0 + 1).unwrap();
    writeln!(out, "serial: {}", hex::encode(cert.raw_serial())).unwrap();
    writeln!(out, "signature: {}", cert.signature_algorithm.algorithm).unwrap();
    writeln!(out, "issuer: {}", cert.issuer()).unwrap();
    writeln!(out, "subject: {}", cert.subject()).unwrap();
    writeln!(out, "not_before: {}", cert.validity().not_before).unwrap();
    writeln!(out, "not_after: {}", cert.validity().not_after).unwrap();
    let spki = cert.public_key();
    writeln!(
        out,
        "public_key: {} {} ({} bytes)",
        spki.algorithm.algorithm,
        spki.algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|o| o.to_string())
            .unwrap_or_default(),
        spki.subject_public_key.data.len()
    )
    .unwrap();
    for ext in cert.extensions() {
        describe_extension(&mut out, ext);
    }
    check_golden("device-certificate.txt", &out);
}

#[test]
fn golden_crl_fields() {
    let dir = tempfile::tempdir().unwrap();
    let pki = fixed_pki(dir.path());
    let revoked = [
        (CertSerial::from_random([0x11; 16]), fixed_now()),
        (
            CertSerial::from_random([0x22; 16]),
            fixed_now() + kontor_provisioning::time::Duration::hours(1),
        ),
    ];
    let der = pki.crl(1, &revoked, 7, fixed_now()).unwrap();
    let (_, crl) = CertificateRevocationList::from_der(&der).unwrap();
    let mut out = String::new();
    writeln!(out, "version: {}", crl.version().map_or(1, |v| v.0 + 1)).unwrap();
    writeln!(out, "signature: {}", crl.signature_algorithm.algorithm).unwrap();
    writeln!(out, "issuer: {}", crl.issuer()).unwrap();
    writeln!(out, "this_update: {}", crl.last_update()).unwrap();
    writeln!(
        out,
        "next_update: {}",
        crl.next_update().map(|t| t.to_string()).unwrap_or_default()
    )
    .unwrap();
    for entry in crl.iter_revoked_certificates() {
        writeln!(
            out,
            "revoked: {} at {}",
            hex::encode(entry.raw_serial()),
            entry.revocation_date
        )
        .unwrap();
    }
    for ext in crl.extensions() {
        describe_extension(&mut out, ext);
    }
    check_golden("crl.txt", &out);
}
