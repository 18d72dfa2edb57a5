//! Issuance of a device certificate from a PKCS#10 request: parse and verify
//! the CSR (one ECDSA P-256 verification), build and sign the certificate
//! (one ECDSA P-256 signature) and encode it as DER and PEM. One core.
//!
//! Run with `cargo bench -p kontor-provisioning`; BENCHMARKS.md compares it
//! with `openssl speed -seconds 3 ecdsap256` from the same session.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kontor_provisioning::csr::{csr_pem_to_der, verify_csr};
use kontor_provisioning::pki::DeviceCertRequest;
use kontor_provisioning::time::OffsetDateTime;
use kontor_provisioning::{CertSerial, DeviceId, Kek, Pki, PkiConfig};

fn issue(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut rng = rand::rng();
    let now = OffsetDateTime::now_utc();
    let pki = Pki::open_or_create(
        dir.path(),
        &Kek::from_bytes([1; 32]),
        PkiConfig::new("Bench Org", "https://enroll.example.org"),
        now,
        &mut rng,
    )
    .expect("pki");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let csr_der = csr_pem_to_der(
        &rcgen::CertificateParams::default()
            .serialize_request(&key)
            .expect("csr")
            .pem()
            .expect("pem"),
    )
    .expect("der");

    let mut group = c.benchmark_group("provisioning");
    group.throughput(Throughput::Elements(1));
    group.bench_function("issue_from_csr", |b| {
        b.iter(|| {
            let csr = verify_csr(&csr_der).expect("valid csr");
            let request = DeviceCertRequest {
                csr: &csr,
                device_id: DeviceId::random(&mut rng),
                identity_key: [7; 32],
                serial: CertSerial::random(&mut rng),
            };
            pki.issue_device(&request, now).expect("issued")
        })
    });
    group.bench_function("verify_csr_only", |b| {
        b.iter(|| verify_csr(&csr_der).expect("valid csr"))
    });
    group.finish();
}

criterion_group!(benches, issue);
criterion_main!(benches);
