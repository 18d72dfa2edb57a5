//! One suite for every store implementation: SQLite always, PostgreSQL
//! when `KONTOR_TEST_POSTGRES_URL` is set.

use kontor_provisioning::store::*;
use kontor_provisioning::{CertSerial, DeviceId};

use crate::common::*;

async fn suite<S: Store>(store: &S) {
    // Tokens: only the hash is stored; consume is atomic and bounded.
    let spec = kontor_provisioning::token::TokenSpec {
        binding: TokenBinding::Department("sales".into()),
        max_uses: 2,
        lifetime_seconds: 100,
        label: "two uses".into(),
    };
    let (_secret, record) = kontor_provisioning::token::generate(&spec, 1000, &mut rng()).unwrap();
    store.insert_token(&record).await.unwrap();
    assert_eq!(
        store.token(&record.id).await.unwrap().as_ref(),
        Some(&record)
    );
    assert!(store.token("0000000000000000").await.unwrap().is_none());
    assert!(store.consume_token(&record.id, 1001).await.unwrap());
    assert!(
        !store.consume_token(&record.id, 1100).await.unwrap(),
        "expired at 1100"
    );
    assert!(store.consume_token(&record.id, 1002).await.unwrap());
    assert!(
        !store.consume_token(&record.id, 1003).await.unwrap(),
        "used up"
    );
    assert_eq!(store.token(&record.id).await.unwrap().unwrap().uses, 2);
    let (_, other) = kontor_provisioning::token::generate(&spec, 2000, &mut rng()).unwrap();
    store.insert_token(&other).await.unwrap();
    assert!(store.revoke_token(&other.id, 2001).await.unwrap());
    assert!(!store.revoke_token("ffffffffffffffff", 2001).await.unwrap());
    assert!(
        !store.consume_token(&other.id, 2002).await.unwrap(),
        "revoked"
    );
    let listed = store.tokens().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].id, other.id, "newest first");
    assert_eq!(listed[0].revoked_at, Some(2001));

    // Certificates by serial, device and user.
    let device = DeviceId::random(&mut rng());
    let cert = |serial: CertSerial, renewed_from| CertificateRecord {
        serial,
        device_id: device,
        user_id: "alice@example.org".into(),
        issuer_generation: 1,
        not_before: 10,
        not_after: 20,
        der: vec![1, 2, 3],
        identity_key: [5; 32],
        platform: "ios".into(),
        device_name: "iPhone".into(),
        token_id: Some(record.id.clone()),
        renewed_from,
        issued_at: 10,
    };
    let first = cert(CertSerial::random(&mut rng()), None);
    let second = CertificateRecord {
        issued_at: 11,
        ..cert(CertSerial::random(&mut rng()), Some(first.serial))
    };
    store.insert_certificate(&first).await.unwrap();
    store.insert_certificate(&second).await.unwrap();
    assert!(
        store.insert_certificate(&first).await.is_err(),
        "serial is unique"
    );
    assert_eq!(
        store.certificate(&second.serial).await.unwrap().as_ref(),
        Some(&second)
    );
    assert_eq!(
        store.certificates_of_device(&device).await.unwrap(),
        vec![first.clone(), second.clone()]
    );
    assert_eq!(
        store
            .certificates_of_user("alice@example.org")
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(
        store
            .certificates_of_user("bob@example.org")
            .await
            .unwrap()
            .is_empty()
    );
    // Several devices at once: every certificate of each, an unknown
    // device adds nothing, none asked for gives none.
    let other_device = DeviceId::random(&mut rng());
    let third = CertificateRecord {
        device_id: other_device,
        user_id: "bob@example.org".into(),
        ..cert(CertSerial::random(&mut rng()), None)
    };
    store.insert_certificate(&third).await.unwrap();
    let mut many = store
        .device_keys(&[device, other_device, DeviceId::random(&mut rng())])
        .await
        .unwrap();
    many.sort_by_key(|k| (k.device_id == other_device, k.issued_at));
    assert_eq!(
        many,
        vec![
            DeviceKey::from(&first),
            DeviceKey::from(&second),
            DeviceKey::from(&third)
        ]
    );
    assert!(store.device_keys(&[]).await.unwrap().is_empty());

    // Revocations are idempotent.
    let revocation = RevocationRecord {
        serial: first.serial,
        issuer_generation: 1,
        revoked_at: 15,
        not_after: 20,
        reason: "device".into(),
    };
    assert!(store.insert_revocation(&revocation).await.unwrap());
    assert!(!store.insert_revocation(&revocation).await.unwrap());
    assert_eq!(store.revocations().await.unwrap(), vec![revocation]);

    // Attempts keep their order.
    for outcome in ["token_unknown", "accepted"] {
        store
            .record_attempt(&AttemptRecord {
                at: 1,
                kind: "enroll".into(),
                outcome: outcome.into(),
                token_id: None,
                user_id: Some("alice@example.org".into()),
                device_id: None,
                serial: None,
            })
            .await
            .unwrap();
    }
    let attempts = store.attempts().await.unwrap();
    assert_eq!(
        attempts
            .iter()
            .map(|a| a.outcome.as_str())
            .collect::<Vec<_>>(),
        ["token_unknown", "accepted"]
    );

    // Directory and allow-list.
    assert!(store.user("alice@example.org").await.unwrap().is_none());
    let mut alice = DirectoryUser {
        user_id: "alice@example.org".into(),
        department: Some("sales".into()),
        status: UserStatus::Active,
    };
    store.put_user(&alice).await.unwrap();
    alice.status = UserStatus::Blocked;
    store.put_user(&alice).await.unwrap();
    assert_eq!(
        store.user("alice@example.org").await.unwrap(),
        Some(alice.clone())
    );
    let bob = DirectoryUser {
        user_id: "bob@example.org".into(),
        department: None,
        status: UserStatus::Active,
    };
    store.put_user(&bob).await.unwrap();
    let mut both = store
        .users(&[
            "bob@example.org".into(),
            "nobody@example.org".into(),
            "alice@example.org".into(),
        ])
        .await
        .unwrap();
    both.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    assert_eq!(both, vec![alice, bob]);
    assert!(store.users(&[]).await.unwrap().is_empty());
    store.add_allow_list_entry("@example.org").await.unwrap();
    store.add_allow_list_entry("@example.org").await.unwrap();
    assert!(store.allow_list_contains("@example.org").await.unwrap());
    store.remove_allow_list_entry("@example.org").await.unwrap();
    assert!(!store.allow_list_contains("@example.org").await.unwrap());
}

#[tokio::test]
async fn sqlite_store_suite() {
    suite(&sqlite()).await;
}

#[tokio::test]
async fn sqlite_store_persists_and_migrates_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("provisioning.sqlite");
    {
        let store = SqliteStore::open(&path).unwrap();
        store.add_allow_list_entry("kept").await.unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert!(store.allow_list_contains("kept").await.unwrap());
}

#[tokio::test]
async fn postgres_store_suite() {
    let Some(store) = postgres().await else {
        return;
    };
    suite(&store).await;
    store.drop_schema().await.unwrap();
}

#[tokio::test]
async fn postgres_store_reconnects_after_the_connection_drops() {
    let Some(store) = postgres().await else {
        return;
    };
    store.add_allow_list_entry("before").await.unwrap();
    let schema = format!("{store:?}").split('"').nth(1).unwrap().to_owned();
    let url = std::env::var("KONTOR_TEST_POSTGRES_URL").unwrap();
    let (admin, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&format!("kontor-provisioning/{schema}")],
        )
        .await
        .unwrap();
    assert_eq!(killed.len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(store.allow_list_contains("before").await.unwrap());
    store.drop_schema().await.unwrap();
}
