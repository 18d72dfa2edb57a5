//! The PKI core checked by outside tools: openssl verifies certificates and
//! CRLs, Python's `cryptography` reads the identity-key extension.

use kontor_provisioning::csr::{csr_pem_to_der, verify_csr};
use kontor_provisioning::pki::DeviceCertRequest;
use kontor_provisioning::{CertSerial, DeviceId, IDENTITY_KEY_OID};

use crate::common::*;

fn issue(
    pki: &kontor_provisioning::Pki,
    identity_key: [u8; 32],
) -> kontor_provisioning::pki::IssuedCertificate {
    let (_key, csr) = device_csr();
    let csr = verify_csr(&csr_pem_to_der(&csr).unwrap()).unwrap();
    let request = DeviceCertRequest {
        csr: &csr,
        device_id: DeviceId::random(&mut rng()),
        identity_key,
        serial: CertSerial::random(&mut rng()),
    };
    pki.issue_device(&request, now()).unwrap()
}

#[test]
fn openssl_verifies_device_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = new_pki(&dir.path().join("pki"));
    let cert = issue(&pki, [9u8; 32]);
    std::fs::write(dir.path().join("root.pem"), pki.root_pem()).unwrap();
    std::fs::write(dir.path().join("issuing.pem"), pki.current().cert_pem()).unwrap();
    std::fs::write(dir.path().join("device.pem"), &cert.pem).unwrap();
    let (ok, out) = run(
        "openssl",
        &[
            "verify",
            "-x509_strict",
            "-purpose",
            "sslclient",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "issuing.pem",
            "device.pem",
        ],
        dir.path(),
    );
    assert!(ok, "openssl verify failed: {out}");
    assert!(out.contains("device.pem: OK"), "{out}");

    let (ok, text) = run(
        "openssl",
        &["x509", "-in", "device.pem", "-noout", "-text"],
        dir.path(),
    );
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("URI:{}", cert.device_id.urn())),
        "{text}"
    );
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    assert!(text.contains("Digital Signature"), "{text}");
    assert!(
        text.contains(&format!("{BASE_URL}/pki/crl/1.der")),
        "{text}"
    );
    assert!(text.contains("X509v3 Subject Key Identifier"), "{text}");
    assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(text.contains(IDENTITY_KEY_OID), "{text}");
}

#[test]
fn python_cryptography_reads_identity_key_extension() {
    let dir = tempfile::tempdir().unwrap();
    let pki = new_pki(&dir.path().join("pki"));
    let mut identity = [0u8; 32];
    for (i, b) in identity.iter_mut().enumerate() {
        *b = i as u8 + 1;
    }
    let cert = issue(&pki, identity);
    std::fs::write(dir.path().join("device.pem"), &cert.pem).unwrap();
    let script = format!(
        "from cryptography import x509\n\
         c = x509.load_pem_x509_certificate(open('device.pem','rb').read())\n\
         e = c.extensions.get_extension_for_oid(x509.ObjectIdentifier('{IDENTITY_KEY_OID}'))\n\
         v = e.value.value\n\
         assert not e.critical\n\
         assert v[:2] == b'\\x04\\x20', v\n\
         print(v[2:].hex())\n"
    );
    let (ok, out) = run("python3", &["-c", &script], dir.path());
    assert!(ok, "python failed: {out}");
    assert_eq!(out.trim(), hex::encode(identity));
}

#[test]
fn openssl_verifies_crl_listing_revoked_serial() {
    let dir = tempfile::tempdir().unwrap();
    let pki = new_pki(&dir.path().join("pki"));
    let cert = issue(&pki, [3u8; 32]);
    let crl = pki.crl(1, &[(cert.serial, now())], 1, now()).unwrap();
    std::fs::write(dir.path().join("crl.der"), &crl).unwrap();
    std::fs::write(dir.path().join("issuing.pem"), pki.current().cert_pem()).unwrap();
    let (ok, out) = run(
        "openssl",
        &[
            "crl",
            "-in",
            "crl.der",
            "-inform",
            "DER",
            "-CAfile",
            "issuing.pem",
            "-verify",
            "-noout",
            "-text",
        ],
        dir.path(),
    );
    assert!(ok, "openssl crl failed: {out}");
    assert!(out.contains("verify OK"), "{out}");
    assert!(out.contains("Next Update"), "{out}");
    assert!(
        out.to_uppercase()
            .contains(&cert.serial.to_string().to_uppercase()),
        "{out}"
    );
}

#[test]
fn rotation_keeps_old_certificates_valid() {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    let mut pki = new_pki(&pki_dir);
    let old = issue(&pki, [1u8; 32]);
    let old_chain = pki.chain_pem(&old);
    assert_eq!(
        pki.rotate_issuing(&kek(), None, now(), &mut rng()).unwrap(),
        2
    );
    let new = issue(&pki, [2u8; 32]);
    assert_eq!(new.issuer_generation, 2);
    // Both verify against the one root; each chain names its own issuer.
    for (name, chain, cert) in [("old", old_chain, &old), ("new", pki.chain_pem(&new), &new)] {
        let parts: Vec<&str> = chain
            .split_inclusive("-----END CERTIFICATE-----\n")
            .collect();
        assert_eq!(parts.len(), 2);
        std::fs::write(dir.path().join(format!("{name}.pem")), parts[0]).unwrap();
        std::fs::write(dir.path().join(format!("{name}-ca.pem")), parts[1]).unwrap();
        std::fs::write(dir.path().join("root.pem"), pki.root_pem()).unwrap();
        let ca = format!("{name}-ca.pem");
        let leaf = format!("{name}.pem");
        let (ok, out) = run(
            "openssl",
            &["verify", "-CAfile", "root.pem", "-untrusted", &ca, &leaf],
            dir.path(),
        );
        assert!(ok, "{name}: {out}");
        assert_eq!(
            pki.verify_device_cert(&cert.der).unwrap().issuer_generation,
            cert.issuer_generation
        );
    }
    // A restart loads both generations with the root key offline.
    std::fs::rename(
        pki_dir.join("root.key.sealed"),
        dir.path().join("root.key.offline"),
    )
    .unwrap();
    let mut reopened = new_pki(&pki_dir);
    assert_eq!(reopened.issuing().len(), 2);
    assert_eq!(reopened.root_der(), pki.root_der());
    assert!(matches!(
        reopened.rotate_issuing(&kek(), None, now(), &mut rng()),
        Err(kontor_provisioning::Error::RootKeyOffline)
    ));
    let offline = dir.path().join("root.key.offline");
    assert_eq!(
        reopened
            .rotate_issuing(&kek(), Some(&offline), now(), &mut rng())
            .unwrap(),
        3
    );
}

#[test]
fn wrong_kek_does_not_open_keys() {
    let dir = tempfile::tempdir().unwrap();
    let _ = new_pki(dir.path());
    let other = kontor_provisioning::Kek::from_bytes([8u8; 32]);
    let err = kontor_provisioning::Pki::open_or_create(
        dir.path(),
        &other,
        kontor_provisioning::PkiConfig::new("Example Org", BASE_URL),
        now(),
        &mut rng(),
    )
    .unwrap_err();
    assert!(
        matches!(err, kontor_provisioning::Error::SealedKey(_)),
        "{err}"
    );
    assert!(!format!("{other:?}").contains("07"), "kek must not print");
}

#[test]
fn openssl_verifies_server_certificate_for_the_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let pki = new_pki(&dir.path().join("pki"));
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let server = pki
        .issue_server(&names, time::Duration::days(90), now(), &mut rng())
        .unwrap();
    assert_eq!(server.chain_der.len(), 2);
    std::fs::write(dir.path().join("root.pem"), pki.root_pem()).unwrap();
    std::fs::write(dir.path().join("chain.pem"), &server.chain_pem).unwrap();
    let (ok, out) = run(
        "openssl",
        &[
            "verify",
            "-x509_strict",
            "-purpose",
            "sslserver",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "chain.pem",
            "-verify_hostname",
            "localhost",
            "chain.pem",
        ],
        dir.path(),
    );
    assert!(ok, "openssl verify failed: {out}");
    // Not usable as a device (client) certificate.
    let (ok, out) = run(
        "openssl",
        &[
            "verify",
            "-x509_strict",
            "-purpose",
            "sslclient",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "chain.pem",
            "chain.pem",
        ],
        dir.path(),
    );
    assert!(
        !ok,
        "a server certificate verified as a client certificate: {out}"
    );
    assert!(
        pki.issue_server(&[], time::Duration::days(1), now(), &mut rng())
            .is_err()
    );
}
