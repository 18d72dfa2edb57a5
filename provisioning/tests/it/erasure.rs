//! Erasure of a user (DSGVO Art. 17) in provisioning, on SQLite in a file
//! and on PostgreSQL when `KONTOR_TEST_POSTGRES_URL` is set: after
//! `Service::erase_user`, no row names the user, their devices, their
//! certificates' serials or their tokens, except the revocations (serials
//! only, which keep the devices refused), and nobody else's rows changed.
//!
//! The tables are read over a connection of the test's own.

use std::path::PathBuf;

use kontor_provisioning::store::{
    AttemptLog, AttemptRecord, CertificateStore, DirectoryUser, Erased, PostgresStore,
    RevocationStore, SqliteStore, Store, TokenBinding, TokenStore, UserDirectory, UserStatus,
};

use crate::common::{Fixture, csr_for, enroll_request, now};

/// A database the case runs on, read back over a connection of its own.
trait Backend: Sync {
    type S: Store;
    async fn make(&self) -> Self::S;
    /// The tables with a row whose text contains `needle`.
    async fn naming(&self, needle: &str) -> Vec<String>;
}

struct SqliteFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Backend for SqliteFile {
    type S = SqliteStore;

    async fn make(&self) -> SqliteStore {
        SqliteStore::open(&self.path).unwrap()
    }

    async fn naming(&self, needle: &str) -> Vec<String> {
        let c = rusqlite::Connection::open(&self.path).unwrap();
        let tables: Vec<String> = c
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let mut found = Vec::new();
        for table in tables {
            let mut stmt = c.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
            let columns = stmt.column_count();
            let mut rows = stmt.query([]).unwrap();
            while let Some(row) = rows.next().unwrap() {
                for i in 0..columns {
                    let bytes = match row.get_ref(i).unwrap() {
                        rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                            t
                        }
                        _ => continue,
                    };
                    // Certificates (DER) name the device as text too.
                    if String::from_utf8_lossy(bytes).contains(needle) {
                        found.push(table.clone());
                    }
                }
            }
        }
        found.dedup();
        found
    }
}

struct Postgres {
    url: String,
    schema: String,
}

impl Postgres {
    async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }
}

impl Backend for Postgres {
    type S = PostgresStore;

    async fn make(&self) -> PostgresStore {
        PostgresStore::connect(&self.url, &self.schema)
            .await
            .unwrap()
    }

    async fn naming(&self, needle: &str) -> Vec<String> {
        let client = self.client().await;
        let tables = client
            .query(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
                &[&self.schema],
            )
            .await
            .unwrap();
        let mut found = Vec::new();
        for table in tables {
            let table: String = table.get(0);
            // A row as text: text as it is, bytea as `\x` and hex, so the
            // DER's device URN is looked for in hex as well.
            let rows = client
                .query(
                    &format!("SELECT t::text FROM {}.{table} t", self.schema),
                    &[],
                )
                .await
                .unwrap();
            let hex_needle = hex::encode(needle);
            for row in rows {
                let text: String = row.get(0);
                if text.contains(needle) || text.contains(&hex_needle) {
                    found.push(table.clone());
                }
            }
        }
        found.dedup();
        found
    }
}

#[tokio::test]
async fn erasure_on_sqlite_leaves_only_revocations_and_other_users_rows() {
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteFile {
        path: dir.path().join("provisioning.db"),
        _dir: dir,
    };
    erasure_leaves_only_revocations_and_other_users_rows(&backend).await;
}

#[tokio::test]
async fn erasure_on_postgres_leaves_only_revocations_and_other_users_rows() {
    let Some(url) = std::env::var("KONTOR_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        println!("skipped: KONTOR_TEST_POSTGRES_URL not set");
        return;
    };
    let backend = Postgres {
        url,
        schema: format!("prov_erase_{}", hex::encode(rand::random::<[u8; 6]>())),
    };
    erasure_leaves_only_revocations_and_other_users_rows(&backend).await;
    backend
        .client()
        .await
        .batch_execute(&format!("DROP SCHEMA {} CASCADE", backend.schema))
        .await
        .unwrap();
}

const ANNA: &str = "anna@acme.test";
const BOB: &str = "bob@acme.test";

async fn enroll<S: Store>(f: &Fixture<S>, token: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let enrolled = f
        .service
        .enroll(&enroll_request(token, &csr_for(&key)), now())
        .await
        .unwrap();
    (enrolled.device_id, enrolled.serial)
}

async fn erasure_leaves_only_revocations_and_other_users_rows(b: &impl Backend) {
    let f = Fixture::new(b.make().await).await;
    let store = f.service.store();

    // Anna: two devices from one invitation, a second invitation, a
    // directory entry, an allow-list entry, and attempts naming her only
    // by device, serial or token (a renewal, a refused enrollment).
    let invitation = f.token(TokenBinding::User(ANNA.into()), 2).await;
    let spare = f.token(TokenBinding::User(ANNA.into()), 1).await;
    let (phone, phone_serial) = enroll(&f, &invitation).await;
    let (tablet, tablet_serial) = enroll(&f, &invitation).await;
    let token_id = |secret: &str| secret.split('_').nth(1).unwrap().to_owned();
    store
        .put_user(&DirectoryUser {
            user_id: ANNA.into(),
            department: Some("Sales".into()),
            status: UserStatus::Active,
        })
        .await
        .unwrap();
    store.add_allow_list_entry(ANNA).await.unwrap();
    store.add_allow_list_entry("@acme.test").await.unwrap();
    let attempt =
        |device: Option<&str>, serial: Option<&str>, token: Option<String>| AttemptRecord {
            at: 1,
            kind: "renew".into(),
            outcome: "accepted".into(),
            token_id: token,
            user_id: None,
            device_id: device.map(str::to_owned),
            serial: serial.map(str::to_owned),
        };
    store
        .record_attempt(&attempt(Some(&phone), Some(&phone_serial), None))
        .await
        .unwrap();
    store
        .record_attempt(&attempt(None, Some(&tablet_serial), None))
        .await
        .unwrap();
    store
        .record_attempt(&attempt(None, None, Some(token_id(&spare))))
        .await
        .unwrap();

    // Bob, enrolled the same way; and a department token naming nobody.
    let bobs = f.token(TokenBinding::User(BOB.into()), 1).await;
    let (bob_device, bob_serial) = enroll(&f, &bobs).await;
    store
        .put_user(&DirectoryUser {
            user_id: BOB.into(),
            department: Some("Sales".into()),
            status: UserStatus::Active,
        })
        .await
        .unwrap();
    f.token(TokenBinding::Department("Sales".into()), 5).await;
    let tokens_before = store.tokens().await.unwrap().len();
    let attempts_before = store.attempts().await.unwrap().len();

    // The scan sees her before the erasure.
    let named = b.naming(&phone).await;
    assert!(named.contains(&"certificates".to_owned()), "{named:?}");
    assert!(
        named.contains(&"enrollment_attempts".to_owned()),
        "{named:?}"
    );
    let named = b.naming(ANNA).await;
    for table in ["tokens", "directory_users", "allow_list"] {
        assert!(named.contains(&table.to_owned()), "{table}: {named:?}");
    }

    let erased = f.service.erase_user(ANNA, "removed", now()).await.unwrap();
    assert_eq!(
        erased,
        Erased {
            certificates: 2,
            tokens: 2,
            // Two enrollments and the three attempts above.
            attempts: 5,
            directory: 1,
            allow_list: 1,
        }
    );
    // Revoked before the records went: the deny-list and the CRL keep
    // refusing her devices.
    let deny = f.service.deny_list();
    for serial in [&phone_serial, &tablet_serial] {
        let serial = kontor_provisioning::CertSerial::from_hex(serial).unwrap();
        assert!(deny.contains(&serial));
    }
    let revoked: Vec<String> = store
        .revocations()
        .await
        .unwrap()
        .iter()
        .map(|r| r.serial.to_string())
        .collect();
    assert_eq!(revoked.len(), 2);
    assert!(revoked.contains(&phone_serial) && revoked.contains(&tablet_serial));
    assert_eq!(
        f.service.erase_user(ANNA, "removed", now()).await.unwrap(),
        Erased::default(),
        "a second erasure finds nothing"
    );

    // No row names her, her devices or her tokens; her serials only in
    // the revocations.
    let mut needles = vec![ANNA.to_owned(), phone.clone(), tablet.clone()];
    needles.extend([token_id(&invitation), token_id(&spare)]);
    for needle in &needles {
        assert_eq!(b.naming(needle).await, Vec::<String>::new(), "{needle}");
    }
    for serial in [&phone_serial, &tablet_serial] {
        assert_eq!(b.naming(serial).await, ["revocations"], "{serial}");
    }
    // Her invitation is gone, so it admits nobody any more.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    assert!(
        f.service
            .enroll(&enroll_request(&spare, &csr_for(&key)), now())
            .await
            .is_err()
    );

    // Bob's rows, the department token and the domain entry are untouched.
    let bobs_certs = store.certificates_of_user(BOB).await.unwrap();
    assert_eq!(bobs_certs.len(), 1);
    assert_eq!(bobs_certs[0].device_id.to_string(), bob_device);
    assert_eq!(bobs_certs[0].serial.to_string(), bob_serial);
    assert!(store.user(BOB).await.unwrap().is_some());
    assert_eq!(store.user(ANNA).await.unwrap(), None);
    assert!(store.allow_list_contains("@acme.test").await.unwrap());
    assert_eq!(store.tokens().await.unwrap().len(), tokens_before - 2);
    // One more attempt: the refused enrollment just above.
    assert_eq!(
        store.attempts().await.unwrap().len(),
        attempts_before - 5 + 1
    );
    assert!(
        store
            .attempts()
            .await
            .unwrap()
            .iter()
            .any(|a| a.user_id.as_deref() == Some(BOB))
    );
}
