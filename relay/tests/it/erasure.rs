//! Erasure of a user (DSGVO Art. 17) in the relay's store, on SQLite in a
//! file and on PostgreSQL when `KONTOR_TEST_POSTGRES_URL` is set: after
//! `erase_user`, no row of any relay table names the user or one of their
//! devices, and nobody else's rows changed.
//!
//! The tables are read over a connection of the test's own, so the check
//! does not depend on the store's queries.

use std::path::PathBuf;

use kontor_provisioning::DeviceId;
use kontor_relay::store::postgres::PostgresStore;
use kontor_relay::store::sqlite::SqliteStore;
use kontor_relay::store::{
    BlobRecord, BlobStore, CommandStore, DeviceStateStore, ErasureStore, Group, GroupMember,
    GroupRole, GroupStore, MessageStore, NewMessage, PushTarget, RelayStore, Stored, UserRows,
};
use sha2::{Digest, Sha256};

const NOW: i64 = 1_800_000_000_000;
const DAY: i64 = 86_400_000;
const ROOMY: u64 = 1_000;

/// What the test looks for in every row.
enum Needle {
    /// A user id, stored as text.
    User(&'static str),
    /// A device id, stored as 16 bytes (or as hex in text).
    Device(DeviceId),
}

/// A database the case runs on, read back over a connection of its own.
trait Backend: Sync {
    type S: RelayStore;
    async fn make(&self) -> Self::S;
    /// `table.column` (or `table` where the backend sees whole rows) of
    /// every value that contains a needle.
    async fn naming(&self, needle: &Needle) -> Vec<String>;
}

struct SqliteFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl SqliteFile {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        Self { _dir: dir, path }
    }
}

impl Backend for SqliteFile {
    type S = SqliteStore;

    async fn make(&self) -> SqliteStore {
        SqliteStore::open(&self.path).unwrap()
    }

    async fn naming(&self, needle: &Needle) -> Vec<String> {
        let forms: Vec<Vec<u8>> = match needle {
            Needle::User(user) => vec![user.as_bytes().to_vec()],
            Needle::Device(d) => vec![d.as_bytes().to_vec(), d.to_string().into_bytes()],
        };
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
            let names: Vec<String> = stmt.column_names().map(str::to_owned).collect();
            let mut rows = stmt.query([]).unwrap();
            while let Some(row) = rows.next().unwrap() {
                for (i, name) in names.iter().enumerate() {
                    let bytes = match row.get_ref(i).unwrap() {
                        rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                            t
                        }
                        _ => continue,
                    };
                    if forms.iter().any(|f| contains(bytes, f)) {
                        found.push(format!("{table}.{name}"));
                    }
                }
            }
        }
        found
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// PostgreSQL in a fresh schema, dropped when the case passed.
struct Postgres {
    url: String,
    schema: String,
}

impl Postgres {
    fn from_env() -> Option<Self> {
        let Some(url) = std::env::var("KONTOR_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            println!("skipped: KONTOR_TEST_POSTGRES_URL not set");
            return None;
        };
        Some(Self {
            url,
            schema: format!("relay_erase_{}", hex::encode(rand::random::<[u8; 8]>())),
        })
    }

    async fn client(&self) -> tokio_postgres::Client {
        crate::service::pg_client(&self.url).await
    }

    async fn finish(&self) {
        crate::service::drop_schemas(&self.url, std::slice::from_ref(&self.schema)).await;
    }
}

impl Backend for Postgres {
    type S = PostgresStore;

    async fn make(&self) -> PostgresStore {
        PostgresStore::connect(&self.url, &self.schema)
            .await
            .unwrap()
    }

    async fn naming(&self, needle: &Needle) -> Vec<String> {
        // A row as text shows bytea as `\x` and hex, text as it is.
        let form = match needle {
            Needle::User(user) => (*user).to_owned(),
            Needle::Device(d) => d.to_string(),
        };
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
            let rows = client
                .query(
                    &format!("SELECT t::text FROM {}.{table} t", self.schema),
                    &[],
                )
                .await
                .unwrap();
            for row in rows {
                let text: String = row.get(0);
                if text.contains(&form) {
                    found.push(table.clone());
                }
            }
        }
        found
    }
}

macro_rules! on_durable_stores {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test]
            async fn sqlite_file() {
                super::$case(&super::SqliteFile::new()).await;
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(backend) = super::Postgres::from_env() {
                    super::$case(&backend).await;
                    backend.finish().await;
                }
            }
        }
    )*};
}

on_durable_stores!(
    erasing_a_user_leaves_no_row_naming_them_or_their_devices_and_nothing_else_changes,
    erasing_an_unknown_user_or_twice_changes_nothing,
);

/// A device whose id no message, blob or group id below contains.
fn dev(n: u8) -> DeviceId {
    DeviceId::from_bytes([n; 16])
}

/// A message from `sender`, to `to`, naming `blobs`. Each delivery is laid
/// out like the protocol's header (version, message id, sender device),
/// so the sender's device id is in it as in a real one.
fn message(
    sender: DeviceId,
    id: u8,
    body: &[u8],
    to: &[DeviceId],
    blobs: &[[u8; 16]],
) -> NewMessage {
    let delivery = |_: DeviceId| {
        let mut bytes = vec![1u8];
        bytes.extend_from_slice(&[id; 16]);
        bytes.extend_from_slice(sender.as_bytes());
        bytes.resize(305, id);
        bytes
    };
    NewMessage {
        sender_device: sender,
        message_id: [id; 16],
        group_id: None,
        body_hash: Sha256::digest(body).into(),
        body: body.to_vec(),
        deliveries: to.iter().map(|d| (*d, delivery(*d))).collect(),
        blob_ids: blobs.to_vec(),
        received_at_ms: NOW,
        expires_at_ms: NOW + DAY,
    }
}

fn blob(id: u8, owner: DeviceId) -> BlobRecord {
    BlobRecord {
        id: [id; 16],
        owner_device: owner,
        bytes: format!("ciphertext {id}").into_bytes(),
        created_at_ms: NOW,
        expires_at_ms: NOW + DAY,
    }
}

fn group(id: u8, created_by: &str, members: &[&str]) -> Group {
    Group {
        id: [id; 16],
        name: format!("group {id}"),
        created_by: created_by.to_owned(),
        created_at_ms: NOW,
        members: members
            .iter()
            .map(|m| GroupMember {
                user_id: (*m).to_owned(),
                role: GroupRole::Member,
            })
            .collect(),
    }
}

fn stored(s: Stored) -> Vec<(DeviceId, u64)> {
    match s {
        Stored::New(seqs) => seqs,
        Stored::Duplicate => panic!("expected a new message"),
    }
}

async fn erasing_a_user_leaves_no_row_naming_them_or_their_devices_and_nothing_else_changes(
    b: &impl Backend,
) {
    let s = b.make().await;
    let (anna, anna_tablet, bob, carol) = (dev(0xa1), dev(0xa2), dev(0xb1), dev(0xc1));
    let anna_user = "anna@acme.test";

    // Anna's device state, commands, uploads; Bob's and Carol's alike.
    s.set_push_target(anna, Some(&PushTarget::Apns("anna-push-token".into())))
        .await
        .unwrap();
    s.touch_device(anna_tablet, NOW).await.unwrap();
    s.mark_wiped(anna_tablet, NOW).await.unwrap();
    s.set_push_target(bob, Some(&PushTarget::Fcm("bob-push-token".into())))
        .await
        .unwrap();
    s.queue_command(anna, "policy", "{}", NOW).await.unwrap();
    s.queue_command(anna_tablet, "wipe", "{\"reason\":\"lost\"}", NOW)
        .await
        .unwrap();
    let bobs_command = s.queue_command(bob, "policy", "{}", NOW).await.unwrap();
    s.put_blob(&blob(10, anna)).await.unwrap();
    s.put_blob(&blob(20, bob)).await.unwrap();

    // Messages to Anna (one shared with Carol), from Anna to Bob naming
    // her upload, from Bob to Anna naming his.
    s.store_message(
        &message(bob, 1, b"to anna", &[anna, anna_tablet], &[[20; 16]]),
        ROOMY,
    )
    .await
    .unwrap();
    let shared = stored(
        s.store_message(
            &message(bob, 2, b"to anna and carol", &[anna, carol], &[]),
            ROOMY,
        )
        .await
        .unwrap(),
    );
    let from_anna = stored(
        s.store_message(&message(anna, 3, b"from anna", &[bob], &[[10; 16]]), ROOMY)
            .await
            .unwrap(),
    );
    s.store_message(&message(carol, 4, b"to bob", &[bob], &[]), ROOMY)
        .await
        .unwrap();

    // Groups: one Anna made and shares with Bob, one only she is left
    // in, one without her.
    s.create_group(&group(1, anna_user, &[anna_user, "bob@acme.test"]))
        .await
        .unwrap();
    s.create_group(&group(2, "bob@acme.test", &[anna_user]))
        .await
        .unwrap();
    s.create_group(&group(
        3,
        "bob@acme.test",
        &["bob@acme.test", "carol@acme.test"],
    ))
    .await
    .unwrap();

    // The scan sees her before the erasure.
    let named = b.naming(&Needle::User(anna_user)).await;
    assert!(
        named.iter().any(|t| t.starts_with("relay_group_members")),
        "{named:?}"
    );
    assert!(
        named.iter().any(|t| t.starts_with("relay_groups")),
        "{named:?}"
    );
    let named = b.naming(&Needle::Device(anna_tablet)).await;
    for table in [
        "relay_devices",
        "relay_queue",
        "relay_commands",
        "relay_blob_grants",
    ] {
        assert!(
            named.iter().any(|t| t.starts_with(table)),
            "{table}: {named:?}"
        );
    }

    let before = s.user_rows(anna_user, &[anna, anna_tablet]).await.unwrap();
    let expected = UserRows {
        devices: 2,
        queued: 3,
        bodies: 1,
        seen: 1,
        blobs: 1,
        // Both of Anna's devices to Bob's upload, Bob's to hers.
        grants: 3,
        commands: 2,
        memberships: 2,
        groups_deleted: 1,
        groups_creator_cleared: 1,
    };
    assert_eq!(before, expected);
    // Counting changed nothing.
    assert_eq!(
        s.user_rows(anna_user, &[anna, anna_tablet]).await.unwrap(),
        expected
    );

    let erased = s.erase_user(anna_user, &[anna, anna_tablet]).await.unwrap();
    assert_eq!(erased, expected);
    assert_eq!(
        s.erase_user(anna_user, &[anna, anna_tablet]).await.unwrap(),
        UserRows::default(),
        "a second erasure finds nothing"
    );

    // Nothing names Anna. Her devices are named only in the header of
    // the message she sent Bob, which waits for him: it is his
    // correspondence, and goes when he fetches it or it expires.
    assert_eq!(
        b.naming(&Needle::User(anna_user)).await,
        Vec::<String>::new()
    );
    for device in [anna, anna_tablet] {
        let found = b.naming(&Needle::Device(device)).await;
        assert!(
            found
                .iter()
                .all(|t| t.starts_with("relay_queue") && device == anna),
            "{device}: {found:?}"
        );
    }
    let to_bob = s.pending(bob, NOW, &[], 10).await.unwrap();
    assert_eq!(to_bob.len(), 2);
    assert_eq!(to_bob[0].seq, from_anna[0].1);
    assert_eq!(to_bob[0].body, b"from anna");
    s.ack(bob, &[to_bob[0].seq]).await.unwrap();
    for device in [anna, anna_tablet] {
        assert_eq!(
            b.naming(&Needle::Device(device)).await,
            Vec::<String>::new()
        );
    }

    // Everyone else's rows are as they were.
    let carols = s.pending(carol, NOW, &[], 10).await.unwrap();
    assert_eq!(carols.len(), 1);
    assert_eq!(carols[0].seq, shared[1].1);
    assert_eq!(carols[0].body, b"to anna and carol");
    assert_eq!(
        s.pending(bob, NOW, &[], 10).await.unwrap()[0].body,
        b"to bob"
    );
    let bob_state = s.device_state(bob).await.unwrap().unwrap();
    assert_eq!(
        bob_state.push,
        Some(PushTarget::Fcm("bob-push-token".into()))
    );
    assert_eq!(s.device_state(anna).await.unwrap(), None);
    let bobs = s.commands_of_device(bob).await.unwrap();
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].id, bobs_command);
    assert_eq!(s.blob_owner([20; 16]).await.unwrap(), Some(bob));
    assert!(s.blob_for([20; 16], bob, NOW).await.unwrap().is_some());
    assert_eq!(s.blob_owner([10; 16]).await.unwrap(), None);
    let shared_group = s.group([1; 16]).await.unwrap().unwrap();
    assert_eq!(shared_group.created_by, "");
    assert_eq!(
        shared_group.members,
        [GroupMember {
            user_id: "bob@acme.test".into(),
            role: GroupRole::Member
        }]
    );
    assert_eq!(s.group([2; 16]).await.unwrap(), None);
    assert_eq!(
        s.group([3; 16]).await.unwrap().unwrap(),
        group(3, "bob@acme.test", &["bob@acme.test", "carol@acme.test"])
    );
    assert_eq!(s.groups_of_user("bob@acme.test").await.unwrap().len(), 2);
}

async fn erasing_an_unknown_user_or_twice_changes_nothing(b: &impl Backend) {
    let s = b.make().await;
    let bob = dev(0xb1);
    s.store_message(&message(dev(0xc1), 1, b"to bob", &[bob], &[]), ROOMY)
        .await
        .unwrap();
    s.create_group(&group(1, "bob@acme.test", &["bob@acme.test"]))
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(
            s.erase_user("nobody@acme.test", &[dev(0x99)])
                .await
                .unwrap(),
            UserRows::default()
        );
        assert_eq!(
            s.erase_user("nobody@acme.test", &[]).await.unwrap(),
            UserRows::default()
        );
    }
    assert_eq!(s.queue_len(bob).await.unwrap(), 1);
    assert!(s.group([1; 16]).await.unwrap().is_some());
}
