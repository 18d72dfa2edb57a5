//! Enrollment, renewal and revocation through the service, on both stores.

use kontor_provisioning::Error;
use kontor_provisioning::service::{Possession, RENEW_PROOF_CONTEXT, RenewRequest};
use kontor_provisioning::store::*;
use rcgen::SigningKey;

use crate::common::*;

async fn last_outcome<S: Store>(store: &S) -> String {
    store
        .attempts()
        .await
        .unwrap()
        .last()
        .unwrap()
        .outcome
        .clone()
}

fn der(pem: &str) -> Vec<u8> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    block.contents
}

async fn flows<S: Store + Clone>(store: S) {
    let fx = Fixture::new(store.clone()).await;
    // A second node on the same store and CA, started now: it knows only
    // of revocations made before its start until it re-reads them.
    let other_node = kontor_provisioning::service::Service::new(
        new_pki(&fx.dir.path().join("pki")),
        store,
        kontor_provisioning::service::ServiceConfig {
            relay_url: RELAY_URL.to_owned(),
            policy: serde_json::json!({}),
        },
    )
    .await
    .unwrap();
    let service = &fx.service;
    let store = service.store();

    // Department token: the user must be in the department.
    store
        .put_user(&DirectoryUser {
            user_id: "alice@example.org".into(),
            department: Some("sales".into()),
            status: UserStatus::Active,
        })
        .await
        .unwrap();
    let token = fx.token(TokenBinding::Department("sales".into()), 5).await;
    let (key, csr) = device_csr();
    let mut request = enroll_request(&token, &csr);
    assert!(matches!(
        service.enroll(&request, now()).await,
        Err(Error::InvalidField { field: "user", .. })
    ));
    request.user = Some("bob@example.org".into());
    assert!(matches!(
        service.enroll(&request, now()).await,
        Err(Error::UserNotAllowed)
    ));
    assert_eq!(last_outcome(store).await, "user_not_allowed");
    request.user = Some("alice@example.org".into());
    let enrolled = service.enroll(&request, now()).await.unwrap();
    assert_eq!(last_outcome(store).await, "accepted");
    assert_eq!(enrolled.relay_url, RELAY_URL);
    assert_eq!(enrolled.policy, serde_json::json!({ "copy_paste": false }));
    let certs = store
        .certificates_of_user("alice@example.org")
        .await
        .unwrap();
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0].serial.to_string(), enrolled.serial);
    assert_eq!(store.tokens().await.unwrap()[0].uses, 1);

    // Allow-list token: the entry must match and still be listed.
    let token = fx
        .token(TokenBinding::AllowListEntry("@example.org".into()), 1)
        .await;
    let mut request = enroll_request(&token, &device_csr().1);
    request.user = Some("carol@example.org".into());
    assert!(matches!(
        service.enroll(&request, now()).await,
        Err(Error::UserNotAllowed)
    ));
    store.add_allow_list_entry("@example.org").await.unwrap();
    request.user = Some("carol@other.org".into());
    assert!(matches!(
        service.enroll(&request, now()).await,
        Err(Error::UserNotAllowed)
    ));
    request.user = Some("carol@example.org".into());
    service.enroll(&request, now()).await.unwrap();

    // Renewal with the same key: the CSR's signature is the proof.
    let chain = enrolled.chain.clone();
    let cert_der = der(&chain);
    let renewed = service
        .renew(
            &RenewRequest {
                cert_der: cert_der.clone(),
                possession: Possession::Body(None),
                csr_der: der(&csr_for(&key)),
            },
            now(),
        )
        .await
        .unwrap();
    assert_eq!(renewed.device_id, enrolled.device_id);
    assert_ne!(renewed.serial, enrolled.serial);
    let renewed_record = store
        .certificate(&kontor_provisioning::CertSerial::from_hex(&renewed.serial).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        renewed_record.renewed_from.unwrap().to_string(),
        enrolled.serial
    );
    assert_eq!(renewed_record.user_id, "alice@example.org");
    assert_eq!(renewed_record.identity_key, [0x42; 32]);

    // Renewal with a new key needs a proof by the old key.
    let (new_key, new_csr) = device_csr();
    let new_csr_der = der(&new_csr);
    let without = RenewRequest {
        cert_der: cert_der.clone(),
        possession: Possession::Body(None),
        csr_der: new_csr_der.clone(),
    };
    assert!(matches!(
        service.renew(&without, now()).await,
        Err(Error::ProofOfPossession)
    ));
    assert_eq!(last_outcome(store).await, "proof_of_possession_invalid");
    let mut message = RENEW_PROOF_CONTEXT.to_vec();
    message.extend_from_slice(&new_csr_der);
    let wrong = RenewRequest {
        possession: Possession::Body(Some(new_key.sign(&message).unwrap())),
        ..without.clone()
    };
    assert!(matches!(
        service.renew(&wrong, now()).await,
        Err(Error::ProofOfPossession)
    ));
    let proved = RenewRequest {
        possession: Possession::Body(Some(key.sign(&message).unwrap())),
        ..without.clone()
    };
    service.renew(&proved, now()).await.unwrap();
    // From a TLS handshake the certificate alone is enough.
    let handshake = RenewRequest {
        possession: Possession::Handshake,
        ..without.clone()
    };
    service.renew(&handshake, now()).await.unwrap();

    // Expired certificate.
    let later = now() + kontor_provisioning::time::Duration::days(91);
    assert!(matches!(
        service.renew(&handshake, later).await,
        Err(Error::CertificateExpired)
    ));

    // A certificate from another organisation's CA is unknown.
    let other = Fixture::new(sqlite()).await;
    let token = other.token(TokenBinding::User("mallory".into()), 1).await;
    let foreign = other
        .service
        .enroll(&enroll_request(&token, &csr_for(&key)), now())
        .await
        .unwrap();
    let foreign_request = RenewRequest {
        cert_der: der(&foreign.chain),
        ..handshake.clone()
    };
    assert!(matches!(
        service.renew(&foreign_request, now()).await,
        Err(Error::UnknownCertificate)
    ));

    // Revocation by device: deny list at once, CRL after, renewal refused.
    let device = kontor_provisioning::DeviceId::from_hex(&enrolled.device_id).unwrap();
    let revoked = service.revoke_device(&device, "lost", now()).await.unwrap();
    assert_eq!(revoked.len(), 4, "enrollment and three renewals");
    let deny = service.deny_list();
    for serial in &revoked {
        assert!(deny.contains(serial));
    }
    assert!(matches!(
        service.renew(&handshake, now()).await,
        Err(Error::CertificateRevoked)
    ));
    let crl = service.crl(None, now()).await.unwrap();
    let (_, parsed) = x509_parser::parse_x509_crl(&crl).unwrap();
    let listed: Vec<String> = parsed
        .iter_revoked_certificates()
        .map(|r| hex::encode(r.raw_serial()))
        .collect();
    for serial in &revoked {
        assert!(
            listed.contains(&serial.to_string()),
            "{serial} missing from CRL"
        );
    }
    assert!(parsed.next_update().is_some());
    // Once the certificates have expired they leave the CRL.
    let expired_crl = service.crl(None, later).await.unwrap();
    let (_, parsed) = x509_parser::parse_x509_crl(&expired_crl).unwrap();
    assert_eq!(parsed.iter_revoked_certificates().count(), 0);

    // Revocation by user, and a restart keeps the deny list.
    let carol = service
        .revoke_user("carol@example.org", "left", now())
        .await
        .unwrap();
    assert_eq!(carol.len(), 1);
    assert!(matches!(
        service.revoke_user("nobody", "x", now()).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(
        service.reload_revocations().await.unwrap(),
        0,
        "nothing new"
    );
    assert_eq!(deny.len(), 5);

    // The other node refuses none of them until it re-reads, then all.
    let other_deny = other_node.deny_list();
    assert!(other_deny.is_empty());
    assert_eq!(other_node.reload_revocations().await.unwrap(), 5);
    for serial in revoked.iter().chain(&carol) {
        assert!(other_deny.contains(serial), "{serial} not denied");
    }
    assert_eq!(other_node.reload_revocations().await.unwrap(), 0);

    // Blocked user: no renewal, no enrollment.
    let token = fx
        .token(TokenBinding::User("dave@example.org".into()), 3)
        .await;
    let (dave_key, dave_csr) = device_csr();
    let dave = service
        .enroll(&enroll_request(&token, &dave_csr), now())
        .await
        .unwrap();
    store
        .put_user(&DirectoryUser {
            user_id: "dave@example.org".into(),
            department: None,
            status: UserStatus::Blocked,
        })
        .await
        .unwrap();
    assert!(matches!(
        service
            .enroll(&enroll_request(&token, &dave_csr), now())
            .await,
        Err(Error::UserBlocked)
    ));
    let dave_renew = RenewRequest {
        cert_der: der(&dave.chain),
        possession: Possession::Handshake,
        csr_der: der(&csr_for(&dave_key)),
    };
    assert!(matches!(
        service.renew(&dave_renew, now()).await,
        Err(Error::UserBlocked)
    ));
    assert_eq!(last_outcome(store).await, "user_blocked");
}

#[tokio::test]
async fn service_flows_on_sqlite() {
    flows(sqlite()).await;
}

#[tokio::test]
async fn service_flows_on_postgres() {
    let Some(store) = postgres().await else {
        return;
    };
    flows(store.clone()).await;
    store.drop_schema().await.unwrap();
}

#[tokio::test]
async fn renewal_after_rotation_names_the_new_issuer() {
    let fx = Fixture::new(sqlite()).await;
    let token = fx.token(TokenBinding::User("erin".into()), 1).await;
    let (key, csr) = device_csr();
    let enrolled = fx
        .service
        .enroll(&enroll_request(&token, &csr), now())
        .await
        .unwrap();
    assert_eq!(fx.service.rotate_issuing(&kek(), None, now()).unwrap(), 2);
    let renewed = fx
        .service
        .renew(
            &RenewRequest {
                cert_der: der(&enrolled.chain),
                possession: Possession::Handshake,
                csr_der: der(&csr_for(&key)),
            },
            now(),
        )
        .await
        .unwrap();
    assert!(renewed.chain.contains("-----BEGIN CERTIFICATE-----"));
    let dir = fx.dir.path();
    let parts: Vec<&str> = renewed
        .chain
        .split_inclusive("-----END CERTIFICATE-----\n")
        .collect();
    std::fs::write(dir.join("leaf.pem"), parts[0]).unwrap();
    std::fs::write(dir.join("ca.pem"), parts[1]).unwrap();
    std::fs::write(dir.join("root.pem"), &renewed.root).unwrap();
    let (ok, out) = run(
        "openssl",
        &[
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "ca.pem",
            "leaf.pem",
        ],
        dir,
    );
    assert!(ok, "{out}");
    let ca_der = der(parts[1]);
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    assert!(
        ca.subject().to_string().contains("Issuing CA 2"),
        "{}",
        ca.subject()
    );
    assert_eq!(
        fx.service.crls(now()).await.unwrap().len(),
        2,
        "one CRL per generation"
    );
    // The old generation's CRL is still served and signed by its own CA.
    let old_crl = fx.service.crl(Some(1), now()).await.unwrap();
    let (_, crl) = x509_parser::parse_x509_crl(&old_crl).unwrap();
    assert!(crl.issuer().to_string().contains("Issuing CA 1"));
}

async fn parallel_enrollments_use_a_token_at_most_n_times<S: Store>(store: S) {
    let fx = Fixture::new(store).await;
    let token = fx.token(TokenBinding::User("kim".into()), 3).await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let service = fx.service.clone();
        let request = enroll_request(&token, &device_csr().1);
        tasks.push(tokio::spawn(async move {
            service.enroll(&request, now()).await
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => accepted += 1,
            Err(e) => assert_eq!(e.code(), "token_used_up"),
        }
    }
    assert_eq!(accepted, 3);
    let store = fx.service.store();
    assert_eq!(store.certificates_of_user("kim").await.unwrap().len(), 3);
    assert_eq!(store.tokens().await.unwrap()[0].uses, 3);
    assert_eq!(
        store.attempts().await.unwrap().len(),
        10,
        "every attempt recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_enrollments_on_sqlite() {
    parallel_enrollments_use_a_token_at_most_n_times(sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_enrollments_on_postgres() {
    let Some(store) = postgres().await else {
        return;
    };
    parallel_enrollments_use_a_token_at_most_n_times(store.clone()).await;
    store.drop_schema().await.unwrap();
}
