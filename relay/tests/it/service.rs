//! The relay's core (`Relay`) over the SQLite store and provisioning's
//! records, without HTTP: who may post what, idempotency, groups, blobs,
//! commands and wipe.

use std::sync::Arc;

use kontor_crypto::{IdentitySecret, MessageId, Recipient, Sender};
use kontor_provisioning::service::{EnrollRequest, Service, ServiceConfig};
use kontor_provisioning::store::{
    CertificateRecord, CertificateStore, DeviceKey, DirectoryUser, SqliteStore as PStore,
    TokenBinding, UserDirectory, UserStatus,
};
use kontor_provisioning::token::TokenSpec;
use kontor_provisioning::{CertSerial, DeviceId, Kek, Pki, PkiConfig};
use kontor_relay::Error;
use kontor_relay::bus::LocalBus;
use kontor_relay::service::{DeviceContext, Relay, RelayConfig};
use kontor_relay::store::postgres::PostgresStore;
use kontor_relay::store::sqlite::SqliteStore;
use kontor_relay::store::{DeviceStateStore, GroupMember, GroupRole, MessageStore, RelayStore};
use kontor_relay::wire::{self, PostedEnvelope};

/// Makes a fresh, empty relay store of one kind.
pub trait MakeStore {
    /// The store.
    type S: RelayStore;
    /// A fresh one.
    fn make(&self) -> impl std::future::Future<Output = Self::S>;
}

/// In-memory SQLite.
pub struct Sqlite;

impl MakeStore for Sqlite {
    type S = SqliteStore;
    async fn make(&self) -> SqliteStore {
        SqliteStore::in_memory().unwrap()
    }
}

/// PostgreSQL in a fresh schema per store; [`Postgres::finish`] drops
/// them when the test passed (a failed test leaves them to look at).
pub struct Postgres {
    url: String,
    schemas: std::sync::Mutex<Vec<String>>,
}

impl Postgres {
    pub fn new(url: String) -> Self {
        Self {
            url,
            schemas: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Drops every schema this made.
    pub async fn finish(&self) {
        let schemas = std::mem::take(&mut *self.schemas.lock().unwrap());
        drop_schemas(&self.url, &schemas).await;
    }
}

/// A plain client to the test database, to look at or drop schemas.
pub async fn pg_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// Drops schemas a test made (a failed test leaves them to look at).
pub async fn drop_schemas(url: &str, schemas: &[String]) {
    if schemas.is_empty() {
        return;
    }
    let client = pg_client(url).await;
    for schema in schemas {
        client
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .unwrap();
    }
}

impl MakeStore for Postgres {
    type S = PostgresStore;
    async fn make(&self) -> PostgresStore {
        let schema = format!("relay_test_{}", hex::encode(rand::random::<[u8; 8]>()));
        self.schemas.lock().unwrap().push(schema.clone());
        PostgresStore::connect(&self.url, &schema).await.unwrap()
    }
}

/// The PostgreSQL URL for tests, or `None` after saying the test is skipped.
pub fn postgres_url() -> Option<String> {
    let url = std::env::var("KONTOR_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() {
        println!("skipped: KONTOR_TEST_POSTGRES_URL not set");
    }
    url
}

/// Runs each named case on SQLite and, where configured, PostgreSQL.
macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test]
            async fn sqlite() {
                super::$case(&crate::service::Sqlite).await;
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(url) = crate::service::postgres_url() {
                    let pg = crate::service::Postgres::new(url);
                    super::$case(&pg).await;
                    pg.finish().await;
                }
            }
        }
    )*};
}

on_both_stores!(
    a_message_is_stored_once_per_device_fetched_opened_and_acknowledged,
    a_retry_is_accepted_once_and_a_replay_is_refused,
    senders_cannot_speak_for_others_or_reach_unknown_or_blocked_devices,
    a_revoked_device_is_refused_and_leaves_the_directory,
    group_messages_go_to_members_only_and_admins_manage_the_group,
    attachments_reach_only_the_recipients_of_a_message_naming_them,
    limits_refuse_floods_and_full_queues,
    a_wipe_drops_the_queue_and_the_receipt_marks_the_device_wiped,
    undelivered_messages_and_attachments_expire,
    control_characters_in_group_names_and_user_ids_are_refused_before_the_store,
);

pub struct Org<S: RelayStore> {
    _dir: tempfile::TempDir,
    /// The relay's TLS server certificate, issued by the organisation.
    pub server: kontor_provisioning::pki::ServerCertificate,
    /// The organisation root, DER.
    pub root_der: Vec<u8>,
    pub service: Arc<Service<PStore>>,
    pub relay: Arc<Relay<S, PStore, LocalBus>>,
}

impl<S: RelayStore> Org<S> {
    /// Another relay node over the same stores, with its own bus.
    pub async fn relay_with_bus<B: kontor_relay::bus::Bus>(&self, bus: B) -> Relay<S, PStore, B> {
        Relay::new(
            self.relay.store().clone(),
            self.service.store().clone(),
            self.service.deny_list(),
            bus,
            self.relay.config().clone(),
        )
    }
}

pub struct Device {
    pub ctx: DeviceContext,
    pub key: IdentitySecret,
    /// The TLS client key, PKCS#8 DER.
    pub tls_key: Vec<u8>,
    /// The device certificate and its issuing CA, PEM.
    pub chain_pem: String,
}

impl<S: RelayStore> Org<S> {
    pub async fn new(make: &impl MakeStore<S = S>, config: RelayConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let now = time::OffsetDateTime::now_utc();
        let pki = Pki::open_or_create(
            &dir.path().join("pki"),
            &Kek::from_bytes([7; 32]),
            PkiConfig::new("Test Org", "https://enroll.test"),
            now,
            &mut rand::rng(),
        )
        .unwrap();
        let server = pki
            .issue_server(
                &["localhost".to_owned()],
                time::Duration::days(1),
                now,
                &mut rand::rng(),
            )
            .unwrap();
        let root_der = pki.root_der().to_vec();
        let pstore = PStore::in_memory().unwrap();
        let service = Arc::new(
            Service::new(
                pki,
                pstore.clone(),
                ServiceConfig {
                    relay_url: "https://relay.test".into(),
                    policy: serde_json::json!({}),
                },
            )
            .await
            .unwrap(),
        );
        let relay = Arc::new(Relay::new(
            make.make().await,
            pstore,
            service.deny_list(),
            LocalBus::default(),
            config,
        ));
        Self {
            _dir: dir,
            server,
            root_der,
            service,
            relay,
        }
    }

    /// Enrolls a device for `user` through provisioning, as a phone would.
    pub async fn enroll(&self, user: &str) -> Device {
        let now = time::OffsetDateTime::now_utc();
        let spec = TokenSpec {
            binding: TokenBinding::User(user.into()),
            max_uses: 1,
            lifetime_seconds: 3600,
            label: "test".into(),
        };
        let (token, _) = self.service.create_token(&spec, now).await.unwrap();
        let tls_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .serialize_request(&tls_key)
            .unwrap()
            .pem()
            .unwrap();
        let key = IdentitySecret::generate(&mut kontor_crypto::os_rng());
        let enrolled = self
            .service
            .enroll(
                &EnrollRequest {
                    token: token.expose_secret().to_owned(),
                    csr,
                    identity_key: key.public().to_hex(),
                    platform: "android".into(),
                    device_name: format!("{user} phone"),
                    user: None,
                },
                now,
            )
            .await
            .unwrap();
        let device_id = DeviceId::from_hex(&enrolled.device_id).unwrap();
        let serial = CertSerial::from_hex(&enrolled.serial).unwrap();
        let ctx = self.relay.authenticate(device_id, serial).await.unwrap();
        Device {
            ctx,
            key,
            tls_key: tls_key.serialize_der(),
            chain_pem: enrolled.chain,
        }
    }
}

/// Seals `text` from `from` for `to` and encodes the envelope.
pub fn envelope(
    from: &Device,
    to: &[&Device],
    id: u8,
    group: Option<[u8; 16]>,
    blobs: &[[u8; 16]],
    text: &[u8],
) -> Vec<u8> {
    let recipients: Vec<Recipient> = to
        .iter()
        .map(|d| Recipient {
            device_id: kontor_crypto::DeviceId(*d.ctx.device_id.as_bytes()),
            identity: d.key.public(),
        })
        .collect();
    let sealed = kontor_crypto::seal(
        &mut kontor_crypto::os_rng(),
        MessageId([id; 16]),
        Sender {
            device_id: kontor_crypto::DeviceId(*from.ctx.device_id.as_bytes()),
            identity: &from.key,
        },
        &recipients,
        text,
    )
    .unwrap();
    let deliveries: Vec<&[u8]> = sealed
        .deliveries()
        .iter()
        .map(|d| &d.as_bytes()[..])
        .collect();
    PostedEnvelope::encode(group, blobs, &deliveries, sealed.body())
}

/// Opens everything waiting for `device` and returns the plaintexts.
pub async fn receive<S: RelayStore>(
    org: &Org<S>,
    device: &Device,
    from: &Device,
) -> Vec<(u64, Vec<u8>)> {
    let waiting = org.relay.fetch(&device.ctx, &[], 100).await.unwrap();
    waiting
        .into_iter()
        .map(|m| {
            let frame =
                wire::decode_frame(&wire::encode_frame(m.seq, 0, &m.delivery, &m.body)).unwrap();
            let opened =
                kontor_crypto::open(&frame.sealed, &device.key, None, &from.key.public()).unwrap();
            (m.seq, opened.plaintext.to_vec())
        })
        .collect()
}

async fn a_message_is_stored_once_per_device_fetched_opened_and_acknowledged<M: MakeStore>(m: &M) {
    let org = Org::new(m, RelayConfig::default()).await;
    let anna = org.enroll("anna@example.org").await;
    let ben = org.enroll("ben@example.org").await;
    let ben2 = org.enroll("ben@example.org").await;
    let outcome = org
        .relay
        .post_message(
            &anna.ctx,
            &envelope(&anna, &[&ben, &ben2], 1, None, &[], b"hallo"),
        )
        .await
        .unwrap();
    assert!(outcome.new);
    assert_eq!(outcome.recipients, 2);
    for device in [&ben, &ben2] {
        let got = receive(&org, device, &anna).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, b"hallo");
        assert_eq!(org.relay.ack(&device.ctx, &[got[0].0]).await.unwrap(), 1);
        assert!(receive(&org, device, &anna).await.is_empty());
    }
    // Authentication recorded when the device was last seen.
    let state = org
        .relay
        .store()
        .device_state(ben.ctx.device_id)
        .await
        .unwrap()
        .unwrap();
    assert!(state.last_seen_ms.is_some_and(|at| at > 0));
    // The receiver learns the key it expects for the sender device.
    let (user, entry) = org
        .relay
        .device_entry(&ben.ctx, anna.ctx.device_id)
        .await
        .unwrap();
    assert_eq!(
        (user.as_str(), entry.identity_key),
        ("anna@example.org", anna.key.public().to_hex())
    );
    assert_eq!(
        org.relay
            .device_entry(&ben.ctx, DeviceId::from_bytes([0x55; 16]))
            .await
            .unwrap_err(),
        Error::NotFound("device")
    );
    // Acknowledging another device's entry does nothing.
    assert_eq!(org.relay.ack(&anna.ctx, &[1, 2, 3]).await.unwrap(), 0);
}

async fn a_retry_is_accepted_once_and_a_replay_is_refused<M: MakeStore>(m: &M) {
    let org = Org::new(m, RelayConfig::default()).await;
    let anna = org.enroll("anna@example.org").await;
    let ben = org.enroll("ben@example.org").await;
    let first = envelope(&anna, &[&ben], 1, None, &[], b"eins");
    assert!(org.relay.post_message(&anna.ctx, &first).await.unwrap().new);
    assert!(!org.relay.post_message(&anna.ctx, &first).await.unwrap().new);
    let other = envelope(&anna, &[&ben], 1, None, &[], b"zwei");
    assert_eq!(
        org.relay.post_message(&anna.ctx, &other).await.unwrap_err(),
        Error::Replay
    );
    assert_eq!(receive(&org, &ben, &anna).await.len(), 1);
}

async fn senders_cannot_speak_for_others_or_reach_unknown_or_blocked_devices<M: MakeStore>(m: &M) {
    let org = Org::new(m, RelayConfig::default()).await;
    let anna = org.enroll("anna@example.org").await;
    let ben = org.enroll("ben@example.org").await;
    let carl = org.enroll("carl@example.org").await;
    // Ben posts Anna's envelope: the headers name Anna.
    let anna_env = envelope(&anna, &[&carl], 1, None, &[], b"x");
    assert_eq!(
        org.relay
            .post_message(&ben.ctx, &anna_env)
            .await
            .unwrap_err(),
        Error::SenderMismatch
    );
    // A recipient the directory does not know.
    let stranger = Device {
        ctx: DeviceContext {
            device_id: DeviceId::from_bytes([9; 16]),
            ..carl.ctx.clone()
        },
        key: IdentitySecret::generate(&mut kontor_crypto::os_rng()),
        tls_key: Vec::new(),
        chain_pem: String::new(),
    };
    let err = org
        .relay
        .post_message(
            &anna.ctx,
            &envelope(&anna, &[&stranger], 2, None, &[], b"x"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownRecipient(_)), "{err:?}");
    // A recipient key that is not the one in the certificate.
    let fake = Device {
        ctx: carl.ctx.clone(),
        key: IdentitySecret::generate(&mut kontor_crypto::os_rng()),
        tls_key: Vec::new(),
        chain_pem: String::new(),
    };
    let err = org
        .relay
        .post_message(&anna.ctx, &envelope(&anna, &[&fake], 3, None, &[], b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::StaleRecipientKey(_)), "{err:?}");
    // A blocked user can be neither reached nor use the relay.
    org.service
        .store()
        .put_user(&DirectoryUser {
            user_id: "carl@example.org".into(),
            department: None,
            status: UserStatus::Blocked,
        })
        .await
        .unwrap();
    let err = org
        .relay
        .post_message(&anna.ctx, &envelope(&anna, &[&carl], 4, None, &[], b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)), "{err:?}");
    assert!(matches!(
        org.relay.still_allowed(&carl.ctx).await,
        Err(Error::DeviceRefused(_))
    ));
    for d in [&ben, &carl] {
        assert!(org.relay.fetch(&d.ctx, &[], 10).await.unwrap().is_empty());
    }
}

async fn a_revoked_device_is_refused_and_leaves_the_directory<M: MakeStore>(m: &M) {
    let org = Org::new(m, RelayConfig::default()).await;
    let anna = org.enroll("anna@example.org").await;
    let ben = org.enroll("ben@example.org").await;
    assert_eq!(
        org.relay
            .devices_of_user(&anna.ctx, "ben@example.org")
            .await
            .unwrap()
            .len(),
        1
    );
    // Ben authenticated before the revocation (a cache of his certificate
    // record would hold it now): the revocation still takes effect at once.
    for _ in 0..2 {
        org.relay
            .authenticate(ben.ctx.device_id, ben.ctx.serial)
            .await
            .unwrap();
    }
    org.service
        .revoke_device(&ben.ctx.device_id, "lost", time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert!(matches!(
        org.relay
            .authenticate(ben.ctx.device_id, ben.ctx.serial)
            .await,
        Err(Error::DeviceRefused(_))
    ));
    assert!(
        org.relay
            .devices_of_user(&anna.ctx, "ben@example.org")
            .await
            .unwrap()
            .is_empty()
    );
    let err = org
        .relay
        .post_message(&anna.ctx, &envelope(&anna, &[&ben], 1, None, &[], b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnknownRecipient(_)), "{err:?}");
}

async fn group_messages_go_to_members_only_and_admins_manage_the_group<M: MakeStore>(m: &M) {
    let org = Org::new(m, RelayConfig::default()).await;
    let anna = org.enroll("anna@example.org").await;
    let ben = org.enroll("ben@example.org").await;
    let carl = org.enroll("carl@example.org").await;
    let gid = [5; 16];
    let group = org
        .relay
        .create_group(&anna.ctx, gid, "Projekt", &["ben@example.org".into()])
        .await
        .unwrap();
    assert_eq!(group.members.len(), 2);
    assert!(
        org.relay
            .post_message(
                &anna.ctx,
                &envelope(&anna, &[&ben], 1, Some(gid), &[], b"an alle")
            )
            .await
            .unwrap()
            .new
    );
    // Carl is not a member: he may not be sealed for, and cannot see the group.
    let err = org
        .relay
        .post_message(
            &anna.ctx,
            &envelope(&anna, &[&ben, &carl], 2, Some(gid), &[], b"x"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)), "{err:?}");
    assert_eq!(
        org.relay.group(&carl.ctx, gid).await.unwrap_err(),
        Error::NotFound("group")
    );
    let err = org
        .relay
        .post_message(
            &carl.ctx,
            &envelope(&carl, &[&anna], 3, Some(gid), &[], b"x"),
        )
        .await
        .unwrap_err();
    assert_eq!(err, Error::NotFound("group"));
    // Ben is a member, not an admin.
    let err = org
        .relay
        .rename_group(&ben.ctx, gid, "Neu")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)), "{err:?}");
    assert_eq!(
        org.relay
            .rename_group(&anna.ctx, gid, "Neu")
            .await
            .unwrap()
            .name,
        "Neu"
    );
    org.relay
        .put_member(
            &anna.ctx,
            gid,
            GroupMember {
                user_id: "carl@example.org".into(),
                role: GroupRole::Member,
            },
        )
        .await
        .unwrap();
    assert!(
        org.relay
            .post_message(
                &anna.ctx,
                &envelope(&anna, &[&ben, &carl], 4, Some(gid), &[], b"x")
            )
            .await
            .unwrap()
            .new
    );
    // Members may leave; unknown users cannot join.
    org.relay
        .remove_member(&carl.ctx, gid, "carl@example.org")
        .await
        .unwrap();
    assert_eq!(org.relay.my_groups(&carl.ctx).await.unwrap().len(), 0);
    let err = org
        .relay
        .put_member(
            &anna.ctx,
            gid,
            GroupMember {
                user_id: "nobody@example.org".into(),
                role: GroupRole::Member,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err, Error::NotFound("user"));
}

async fn attachments_reach_only_the_recipients_of_a_message_naming_them<M: MakeStore>(m: &M) {
    let org = Org::new(m, RelayConfig::default()).await;
    let anna = org.enroll("anna@example.org").await;
    let ben = org.enroll("ben@example.org").await;
    let carl = org.enroll("carl@example.org").await;
    let blob = [3; 16];
    org.relay
        .put_blob(&anna.ctx, blob, vec![1, 2, 3])
        .await
        .unwrap();
    assert_eq!(
        org.relay
            .put_blob(&anna.ctx, blob, vec![4])
            .await
            .unwrap_err(),
        Error::Replay
    );
    assert_eq!(
        org.relay.blob(&ben.ctx, blob).await.unwrap_err(),
        Error::NotFound("attachment")
    );
    org.relay
        .post_message(
            &anna.ctx,
            &envelope(&anna, &[&ben], 1, None, &[blob], b"file"),
        )
        .await
        .unwrap();
    assert_eq!(org.relay.blob(&ben.ctx, blob).await.unwrap(), vec![1, 2, 3]);
    assert_eq!(
        org.relay.blob(&anna.ctx, blob).await.unwrap(),
        vec![1, 2, 3]
    );
    assert_eq!(
        org.relay.blob(&carl.ctx, blob).await.unwrap_err(),
        Error::NotFound("attachment")
    );
    // Carl cannot name Anna's upload to gain access to it.
    let err = org
        .relay
        .post_message(&carl.ctx, &envelope(&carl, &[&ben], 2, None, &[blob], b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)), "{err:?}");
    let small = Org::new(
        m,
        RelayConfig {
            blob_bytes_max: 10,
            ..RelayConfig::default()
        },
    )
    .await;
    let dora = small.enroll("dora@example.org").await;
    assert!(matches!(
        small.relay.put_blob(&dora.ctx, blob, vec![0; 11]).await,
        Err(Error::TooLarge { .. })
    ));
}

async fn limits_refuse_floods_and_full_queues<M: MakeStore>(m: &M) {
    let org = Org::new(
        m,
        RelayConfig {
            messages_per_s: 1,
            message_burst: 3,
            queue_len_max: 2,
            ..RelayConfig::default()
        },
    )
    .await;
    let anna = org.enroll("anna@example.org").await;
    let ben = org.enroll("ben@example.org").await;
    let carl = org.enroll("carl@example.org").await;
    for i in 0..2 {
        org.relay
            .post_message(&anna.ctx, &envelope(&anna, &[&ben], i, None, &[], b"x"))
            .await
            .unwrap();
    }
    let err = org
        .relay
        .post_message(
            &anna.ctx,
            &envelope(&anna, &[&ben, &carl], 9, None, &[], b"x"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::QueueFull(_)), "{err:?}");
    // Nothing was stored for Carl either: one transaction.
    assert!(
        org.relay
            .fetch(&carl.ctx, &[], 10)
            .await
            .unwrap()
            .is_empty()
    );
    let err = org
        .relay
        .post_message(&anna.ctx, &envelope(&anna, &[&carl], 10, None, &[], b"x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::RateLimited { retry_after_s } if retry_after_s >= 1),
        "{err:?}"
    );
}

async fn a_wipe_drops_the_queue_and_the_receipt_marks_the_device_wiped<M: MakeStore>(m: &M) {
    let org = Org::new(m, RelayConfig::default()).await;
    let anna = org.enroll("anna@example.org").await;
    let ben = org.enroll("ben@example.org").await;
    org.relay
        .post_message(&anna.ctx, &envelope(&anna, &[&ben], 1, None, &[], b"x"))
        .await
        .unwrap();
    org.relay
        .queue_command(
            ben.ctx.device_id,
            "policy",
            &serde_json::json!({"copy_paste": false}),
        )
        .await
        .unwrap();
    let wipe = org
        .relay
        .wipe_device(ben.ctx.device_id, "lost phone")
        .await
        .unwrap();
    assert!(org.relay.fetch(&ben.ctx, &[], 10).await.unwrap().is_empty());
    let commands = org.relay.commands(&ben.ctx).await.unwrap();
    assert_eq!(
        commands.iter().map(|c| c.kind.as_str()).collect::<Vec<_>>(),
        ["policy", "wipe"]
    );
    assert_eq!(
        org.relay
            .ack_command(&ben.ctx, 999, &serde_json::json!({}))
            .await
            .unwrap_err(),
        Error::NotFound("command")
    );
    assert_eq!(
        org.relay
            .ack_command(&anna.ctx, wipe, &serde_json::json!({}))
            .await
            .unwrap_err(),
        Error::NotFound("command")
    );
    org.relay
        .ack_command(&ben.ctx, wipe, &serde_json::json!({"wiped": true}))
        .await
        .unwrap();
    assert!(matches!(
        org.relay
            .authenticate(ben.ctx.device_id, ben.ctx.serial)
            .await,
        Err(Error::DeviceRefused("device wiped"))
    ));
    assert!(
        org.relay
            .devices_of_user(&anna.ctx, "ben@example.org")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        org.relay
            .queue_command(ben.ctx.device_id, "format-disk", &serde_json::json!({}))
            .await,
        Err(Error::BadRequest(_))
    ));
}

async fn undelivered_messages_and_attachments_expire<M: MakeStore>(m: &M) {
    let org = Org::new(
        m,
        RelayConfig {
            message_ttl: std::time::Duration::ZERO,
            blob_ttl: std::time::Duration::ZERO,
            ..RelayConfig::default()
        },
    )
    .await;
    let anna = org.enroll("anna@example.org").await;
    let ben = org.enroll("ben@example.org").await;
    org.relay
        .put_blob(&anna.ctx, [8; 16], vec![1])
        .await
        .unwrap();
    org.relay
        .post_message(&anna.ctx, &envelope(&anna, &[&ben], 1, None, &[], b"x"))
        .await
        .unwrap();
    // Expired copies are never handed out, then deleted.
    assert!(org.relay.fetch(&ben.ctx, &[], 10).await.unwrap().is_empty());
    assert_eq!(
        org.relay.blob(&anna.ctx, [8; 16]).await.unwrap_err(),
        Error::NotFound("attachment")
    );
    assert_eq!(org.relay.expire().await.unwrap(), (1, 1));
    assert_eq!(
        org.relay
            .store()
            .queue_len(ben.ctx.device_id)
            .await
            .unwrap(),
        0
    );
    assert_eq!(org.relay.expire().await.unwrap(), (0, 0));
}

/// schemathesis on the device API in the PostgreSQL mode: a group name or a
/// user id with NUL answered 500 (PostgreSQL refuses NUL in text, and the
/// provisioning directory on PostgreSQL too). Such names and ids are now
/// refused as bad requests, on every store, before any store sees them,
/// and nothing changes.
async fn control_characters_in_group_names_and_user_ids_are_refused_before_the_store<
    M: MakeStore,
>(
    m: &M,
) {
    let org = Org::new(m, RelayConfig::default()).await;
    let anna = org.enroll("anna@example.org").await;
    org.enroll("ben@example.org").await;
    let gid = [9; 16];
    let bad_request = |e: Error| assert!(matches!(e, Error::BadRequest(_)), "{e:?}");
    for name in ["a\0b", "\0", "line\nbreak", "\u{9c}"] {
        bad_request(
            org.relay
                .create_group(&anna.ctx, gid, name, &[])
                .await
                .unwrap_err(),
        );
    }
    for user in ["b\0n@example.org", "", "ben@example.org\n"] {
        bad_request(
            org.relay
                .create_group(&anna.ctx, gid, "Projekt", &[user.to_owned()])
                .await
                .unwrap_err(),
        );
    }
    assert!(org.relay.my_groups(&anna.ctx).await.unwrap().is_empty());
    org.relay
        .create_group(&anna.ctx, gid, "Projekt", &["ben@example.org".into()])
        .await
        .unwrap();
    bad_request(
        org.relay
            .rename_group(&anna.ctx, gid, "Pro\0jekt")
            .await
            .unwrap_err(),
    );
    bad_request(
        org.relay
            .put_member(
                &anna.ctx,
                gid,
                GroupMember {
                    user_id: "c\0arl@example.org".into(),
                    role: GroupRole::Member,
                },
            )
            .await
            .unwrap_err(),
    );
    bad_request(
        org.relay
            .remove_member(&anna.ctx, gid, "ben@example.org\0")
            .await
            .unwrap_err(),
    );
    bad_request(
        org.relay
            .devices_of_user(&anna.ctx, "ben\0@example.org")
            .await
            .unwrap_err(),
    );
    let group = org.relay.group(&anna.ctx, gid).await.unwrap();
    assert_eq!(group.name, "Projekt");
    assert_eq!(group.members.len(), 2);
    // Names people use still work, non-Latin ones included.
    org.relay
        .rename_group(&anna.ctx, gid, "Ärger & Ölpreise 🛢")
        .await
        .unwrap();
}

/// Provisioning's SQLite store, counting the certificate reads by serial
/// and every read a posted message makes of it.
#[derive(Clone, Default)]
struct CountingCerts {
    inner: Option<PStore>,
    by_serial: Arc<std::sync::atomic::AtomicUsize>,
    /// Reads of certificates by device or of users, one or many at a time.
    per_post: Arc<std::sync::atomic::AtomicUsize>,
}

impl CountingCerts {
    fn over(inner: PStore) -> Self {
        Self {
            inner: Some(inner),
            ..Self::default()
        }
    }

    fn inner(&self) -> &PStore {
        self.inner.as_ref().expect("a store")
    }

    fn reads(&self) -> usize {
        self.by_serial.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn post_reads(&self) -> usize {
        self.per_post.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn count_post_read(&self) {
        self.per_post
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl CertificateStore for CountingCerts {
    async fn insert_certificate(
        &self,
        cert: &CertificateRecord,
    ) -> kontor_provisioning::error::Result<()> {
        self.inner().insert_certificate(cert).await
    }
    async fn certificate(
        &self,
        serial: &CertSerial,
    ) -> kontor_provisioning::error::Result<Option<CertificateRecord>> {
        self.by_serial
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner().certificate(serial).await
    }
    async fn certificates_of_device(
        &self,
        device: &DeviceId,
    ) -> kontor_provisioning::error::Result<Vec<CertificateRecord>> {
        self.count_post_read();
        self.inner().certificates_of_device(device).await
    }
    async fn certificates_of_user(
        &self,
        user_id: &str,
    ) -> kontor_provisioning::error::Result<Vec<CertificateRecord>> {
        self.inner().certificates_of_user(user_id).await
    }
    async fn device_keys(
        &self,
        devices: &[DeviceId],
    ) -> kontor_provisioning::error::Result<Vec<DeviceKey>> {
        self.count_post_read();
        self.inner().device_keys(devices).await
    }
}

impl UserDirectory for CountingCerts {
    async fn user(
        &self,
        user_id: &str,
    ) -> kontor_provisioning::error::Result<Option<DirectoryUser>> {
        self.count_post_read();
        self.inner().user(user_id).await
    }
    async fn users(
        &self,
        user_ids: &[String],
    ) -> kontor_provisioning::error::Result<Vec<DirectoryUser>> {
        self.count_post_read();
        self.inner().users(user_ids).await
    }
    async fn put_user(&self, user: &DirectoryUser) -> kontor_provisioning::error::Result<()> {
        self.inner().put_user(user).await
    }
    async fn allow_list_contains(&self, entry: &str) -> kontor_provisioning::error::Result<bool> {
        self.inner().allow_list_contains(entry).await
    }
    async fn add_allow_list_entry(&self, entry: &str) -> kontor_provisioning::error::Result<()> {
        self.inner().add_allow_list_entry(entry).await
    }
    async fn remove_allow_list_entry(&self, entry: &str) -> kontor_provisioning::error::Result<()> {
        self.inner().remove_allow_list_entry(entry).await
    }
}

/// A device's requests read its certificate record once (records never
/// change; renewal issues a new serial), while a block, a revocation and
/// an unknown serial still take effect on every request.
#[tokio::test]
async fn authentication_reads_a_certificate_record_once_and_still_refuses_at_once() {
    let org = Org::new(&Sqlite, RelayConfig::default()).await;
    let anna = org.enroll("anna@example.org").await;
    let ben = org.enroll("ben@example.org").await;
    let certs = CountingCerts::over(org.service.store().clone());
    let relay = Relay::new(
        org.relay.store().clone(),
        certs.clone(),
        org.service.deny_list(),
        LocalBus::default(),
        org.relay.config().clone(),
    );
    for _ in 0..3 {
        let ctx = relay
            .authenticate(anna.ctx.device_id, anna.ctx.serial)
            .await
            .unwrap();
        assert_eq!(ctx.user_id, "anna@example.org");
        assert_eq!(ctx.identity_key, anna.ctx.identity_key);
    }
    assert_eq!(certs.reads(), 1, "one read for three requests");

    // The kept record still names its own device only.
    let err = relay
        .authenticate(ben.ctx.device_id, anna.ctx.serial)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DeviceRefused(_)), "{err:?}");
    assert_eq!(certs.reads(), 1);

    // An unknown serial is read (and refused) every time, never kept.
    let unknown = CertSerial::from_slice(&[0x41; 16]).unwrap();
    for reads in [2, 3] {
        let err = relay
            .authenticate(anna.ctx.device_id, unknown)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::DeviceRefused(_)), "{err:?}");
        assert_eq!(certs.reads(), reads);
    }

    // A block of the user takes effect at once, the record kept or not.
    let mut user = org
        .service
        .store()
        .user("anna@example.org")
        .await
        .unwrap()
        .unwrap_or(DirectoryUser {
            user_id: "anna@example.org".into(),
            department: None,
            status: UserStatus::Active,
        });
    user.status = UserStatus::Blocked;
    org.service.store().put_user(&user).await.unwrap();
    let err = relay
        .authenticate(anna.ctx.device_id, anna.ctx.serial)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::DeviceRefused("user blocked")),
        "{err:?}"
    );
    user.status = UserStatus::Active;
    org.service.store().put_user(&user).await.unwrap();
    relay
        .authenticate(anna.ctx.device_id, anna.ctx.serial)
        .await
        .unwrap();

    // So does a revocation.
    org.service
        .revoke_device(&anna.ctx.device_id, "lost", time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    let err = relay
        .authenticate(anna.ctx.device_id, anna.ctx.serial)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::DeviceRefused("certificate revoked")),
        "{err:?}"
    );
    assert_eq!(
        certs.reads(),
        3,
        "the kept record served every request since"
    );

    // Kept entries go once past their time (the minute's expiry run).
    let now = std::time::Instant::now();
    assert_eq!(relay.forget_identities(now), 1);
    assert_eq!(
        relay.forget_identities(now + std::time::Duration::from_secs(301)),
        0
    );
}

/// A group message to many devices checks every recipient's certificate,
/// user and wipe state, each kind in one read, and still refuses a wiped
/// or blocked recipient.
#[tokio::test]
async fn a_message_to_many_reads_its_recipients_once_per_kind() {
    let org = Org::new(&Sqlite, RelayConfig::default()).await;
    let anna = org.enroll("anna@example.org").await;
    let mut others = Vec::new();
    for n in 0..6 {
        others.push(org.enroll(&format!("user{n}@example.org")).await);
    }
    let certs = CountingCerts::over(org.service.store().clone());
    let relay = Relay::new(
        org.relay.store().clone(),
        certs.clone(),
        org.service.deny_list(),
        LocalBus::default(),
        org.relay.config().clone(),
    );
    let to: Vec<&Device> = others.iter().collect();
    let before = certs.post_reads();
    let posted = relay
        .post_message(&anna.ctx, &envelope(&anna, &to, 1, None, &[], b"to six"))
        .await
        .unwrap();
    assert_eq!(posted.recipients, 6);
    assert_eq!(
        certs.post_reads() - before,
        2,
        "certificates of six devices and their six users: one read each"
    );

    // Still checked: a blocked recipient, then a wiped one.
    let mut user = DirectoryUser {
        user_id: "user3@example.org".into(),
        department: None,
        status: UserStatus::Blocked,
    };
    org.service.store().put_user(&user).await.unwrap();
    let err = relay
        .post_message(&anna.ctx, &envelope(&anna, &to, 2, None, &[], b"x"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Forbidden(m) if m.contains("user3")),
        "{err:?}"
    );
    user.status = UserStatus::Active;
    org.service.store().put_user(&user).await.unwrap();
    org.relay
        .store()
        .mark_wiped(others[4].ctx.device_id, 1)
        .await
        .unwrap();
    let err = relay
        .post_message(&anna.ctx, &envelope(&anna, &to, 3, None, &[], b"x"))
        .await
        .unwrap_err();
    let wiped = others[4].ctx.device_id.to_string();
    assert!(
        matches!(&err, Error::UnknownRecipient(d) if *d == wiped),
        "{err:?}"
    );
    // Without the wiped device the message goes to the other five.
    let to: Vec<&Device> = others
        .iter()
        .filter(|d| d.ctx.device_id.to_string() != wiped)
        .collect();
    let posted = relay
        .post_message(&anna.ctx, &envelope(&anna, &to, 4, None, &[], b"x"))
        .await
        .unwrap();
    assert_eq!(posted.recipients, 5);
}
