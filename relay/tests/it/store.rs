//! The storage contract (`store/mod.rs`) checked on every backend: SQLite in
//! memory, SQLite in a file, and PostgreSQL when `KONTOR_TEST_POSTGRES_URL`
//! is set (each test in a fresh schema, dropped when the test passes).
//!
//! Each case is one generic function over a [`Backend`]; `on_every_store!`
//! runs it on all three.

use std::path::PathBuf;
use std::sync::Mutex;

use kontor_provisioning::DeviceId;
use kontor_relay::Error;
use kontor_relay::store::postgres::PostgresStore;
use kontor_relay::store::sqlite::SqliteStore;
use kontor_relay::store::{
    BlobRecord, BlobStore, CommandStore, DeviceState, DeviceStateStore, Group, GroupMember,
    GroupRole, GroupStore, MessageStore, NewMessage, PushTarget, RelayStore, Stored,
};
use kontor_relay::wire::Id16;
use sha2::{Digest, Sha256};

/// A fixed "now" for every case; times are passed in, never read.
const NOW: i64 = 1_800_000_000_000;
const DAY: i64 = 86_400_000;
/// A queue limit no case reaches unless it means to.
const ROOMY: u64 = 1_000;

/// A kind of database the suite runs on.
trait Backend: Sync {
    type S: RelayStore;
    /// A fresh, empty store.
    async fn make(&self) -> Self::S;
    /// Another store on the database the last `make` created, as a second
    /// relay node (or a restarted one) would open it.
    async fn again(&self) -> Self::S;
    /// Rows in a table of the last database, counted over a connection of
    /// its own; `None` where no second connection can see the data.
    async fn rows(&self, table: &str) -> Option<i64>;
}

/// SQLite in memory: `again` is the same connection.
#[derive(Default)]
struct SqliteMemory(Mutex<Option<SqliteStore>>);

impl Backend for SqliteMemory {
    type S = SqliteStore;

    async fn make(&self) -> SqliteStore {
        let store = SqliteStore::in_memory().unwrap();
        *self.0.lock().unwrap() = Some(store.clone());
        store
    }

    async fn again(&self) -> SqliteStore {
        self.0.lock().unwrap().clone().unwrap()
    }

    async fn rows(&self, _table: &str) -> Option<i64> {
        None
    }
}

/// SQLite files in a temporary directory: `again` opens the file anew.
struct SqliteFile {
    dir: tempfile::TempDir,
    last: Mutex<(u32, Option<PathBuf>)>,
}

impl SqliteFile {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            last: Mutex::new((0, None)),
        }
    }

    fn path(&self) -> PathBuf {
        self.last.lock().unwrap().1.clone().unwrap()
    }
}

impl Backend for SqliteFile {
    type S = SqliteStore;

    async fn make(&self) -> SqliteStore {
        let path = {
            let mut last = self.last.lock().unwrap();
            last.0 += 1;
            let path = self.dir.path().join(format!("relay-{}.db", last.0));
            last.1 = Some(path.clone());
            path
        };
        SqliteStore::open(&path).unwrap()
    }

    async fn again(&self) -> SqliteStore {
        SqliteStore::open(&self.path()).unwrap()
    }

    async fn rows(&self, table: &str) -> Option<i64> {
        let conn = rusqlite::Connection::open(self.path()).unwrap();
        Some(
            conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap(),
        )
    }
}

/// PostgreSQL, a fresh random schema per `make`.
struct PostgresSchemas {
    url: String,
    schemas: Mutex<Vec<String>>,
}

impl PostgresSchemas {
    /// The backend, or `None` after saying the test is skipped.
    fn from_env() -> Option<Self> {
        let url = std::env::var("KONTOR_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty());
        let Some(url) = url else {
            println!("skipped: KONTOR_TEST_POSTGRES_URL not set");
            return None;
        };
        Some(Self {
            url,
            schemas: Mutex::new(Vec::new()),
        })
    }

    fn last(&self) -> String {
        self.schemas.lock().unwrap().last().cloned().unwrap()
    }

    async fn client(&self) -> tokio_postgres::Client {
        crate::service::pg_client(&self.url).await
    }

    /// Drops the schemas this test made (left in place when it failed, to
    /// look at).
    async fn finish(&self) {
        let schemas = self.schemas.lock().unwrap().clone();
        crate::service::drop_schemas(&self.url, &schemas).await;
    }
}

impl Backend for PostgresSchemas {
    type S = PostgresStore;

    async fn make(&self) -> PostgresStore {
        let schema = format!("relay_store_{}", hex::encode(rand::random::<[u8; 8]>()));
        self.schemas.lock().unwrap().push(schema.clone());
        PostgresStore::connect(&self.url, &schema).await.unwrap()
    }

    async fn again(&self) -> PostgresStore {
        PostgresStore::connect(&self.url, &self.last())
            .await
            .unwrap()
    }

    async fn rows(&self, table: &str) -> Option<i64> {
        let row = self
            .client()
            .await
            .query_one(
                &format!("SELECT count(*) FROM {}.{table}", self.last()),
                &[],
            )
            .await
            .unwrap();
        Some(row.get(0))
    }
}

/// Runs each named case on SQLite (in memory and in a file) and, where
/// configured, PostgreSQL.
macro_rules! on_every_store {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test]
            async fn sqlite_in_memory() {
                super::$case(&super::SqliteMemory::default()).await;
            }

            #[tokio::test]
            async fn sqlite_file() {
                super::$case(&super::SqliteFile::new()).await;
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(backend) = super::PostgresSchemas::from_env() {
                    super::$case(&backend).await;
                    backend.finish().await;
                }
            }
        }
    )*};
}

/// Runs each named case on the backends that keep data across a close:
/// SQLite in a file and, where configured, PostgreSQL.
macro_rules! on_durable_stores {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test]
            async fn sqlite_file() {
                super::$case(&super::SqliteFile::new()).await;
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(backend) = super::PostgresSchemas::from_env() {
                    super::$case(&backend).await;
                    backend.finish().await;
                }
            }
        }
    )*};
}

on_every_store!(
    a_message_is_stored_once_and_queued_per_device_in_increasing_seq,
    pending_skips_limits_and_hides_expired_entries,
    a_retry_is_a_duplicate_and_another_body_under_the_same_id_a_replay,
    a_full_queue_refuses_the_whole_message_and_stores_nothing,
    ack_deletes_only_the_devices_own_entries_and_the_body_goes_with_the_last,
    drop_queue_removes_every_entry_of_one_device,
    expiry_drops_entries_and_bodies_past_their_time,
    groups_are_created_once_renamed_and_their_members_managed,
    blobs_are_readable_by_their_owner_and_recipients_of_a_message_naming_them,
    commands_are_queued_acknowledged_once_by_their_device_and_listed,
    device_state_keeps_push_target_last_seen_and_wipe_apart,
    concurrent_retries_on_two_nodes_store_a_message_exactly_once,
    concurrent_stores_on_two_nodes_never_overfill_a_queue_or_deadlock,
    writes_committed_together_fail_alone_and_count_the_queue_exactly,
);

on_durable_stores!(a_stored_message_survives_closing_and_reopening_the_database);

fn dev(n: u8) -> DeviceId {
    DeviceId::from_bytes([n; 16])
}

/// A message from `sender` with id `[id; 16]`, to `to`, expiring in a day.
fn message(sender: DeviceId, id: u8, body: &[u8], to: &[DeviceId]) -> NewMessage {
    NewMessage {
        sender_device: sender,
        message_id: [id; 16],
        group_id: None,
        body_hash: Sha256::digest(body).into(),
        body: body.to_vec(),
        deliveries: to.iter().map(|d| (*d, delivery(*d, id))).collect(),
        blob_ids: Vec::new(),
        received_at_ms: NOW,
        expires_at_ms: NOW + DAY,
    }
}

/// A stand-in for a recipient's 305-byte header and wrap.
fn delivery(to: DeviceId, id: u8) -> Vec<u8> {
    let mut bytes = vec![id; 305];
    bytes[..16].copy_from_slice(to.as_bytes());
    bytes
}

/// The sequence numbers of a new message, in delivery order.
fn new_seqs(stored: Stored) -> Vec<(DeviceId, u64)> {
    match stored {
        Stored::New(seqs) => seqs,
        Stored::Duplicate => panic!("expected a new message, got a duplicate"),
    }
}

/// What `pending` holds for a device now: (seq, body).
async fn pending_bodies(store: &impl MessageStore, device: DeviceId) -> Vec<(u64, Vec<u8>)> {
    store
        .pending(device, NOW, &[], 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.seq, m.body))
        .collect()
}

/// Checks a table's row count where the backend can see it.
async fn check_rows(backend: &impl Backend, table: &str, expected: i64) {
    if let Some(n) = backend.rows(table).await {
        assert_eq!(n, expected, "rows in {table}");
    }
}

async fn a_message_is_stored_once_and_queued_per_device_in_increasing_seq(b: &impl Backend) {
    let s = b.make().await;
    let (alice, bob, carol) = (dev(1), dev(2), dev(3));

    let first = new_seqs(
        s.store_message(&message(alice, 1, b"one", &[bob, carol]), ROOMY)
            .await
            .unwrap(),
    );
    assert_eq!(
        first.iter().map(|(d, _)| *d).collect::<Vec<_>>(),
        [bob, carol]
    );
    assert!(first[0].1 < first[1].1);
    let second = new_seqs(
        s.store_message(&message(alice, 2, b"two", &[bob]), ROOMY)
            .await
            .unwrap(),
    );
    assert!(second[0].1 > first[1].1);

    let to_bob = s.pending(bob, NOW, &[], 10).await.unwrap();
    assert_eq!(to_bob.len(), 2);
    assert_eq!(to_bob[0].seq, first[0].1);
    assert_eq!(to_bob[0].delivery, delivery(bob, 1));
    assert_eq!(to_bob[0].body, b"one");
    assert_eq!(to_bob[0].received_at_ms, NOW);
    assert_eq!(to_bob[1].seq, second[0].1);
    assert_eq!(to_bob[1].body, b"two");
    let to_carol = s.pending(carol, NOW, &[], 10).await.unwrap();
    assert_eq!(to_carol.len(), 1);
    assert_eq!(to_carol[0].seq, first[1].1);
    assert_eq!(to_carol[0].delivery, delivery(carol, 1));
    assert_eq!(to_carol[0].body, b"one");
    assert!(s.pending(alice, NOW, &[], 10).await.unwrap().is_empty());

    assert_eq!(s.queue_len(bob).await.unwrap(), 2);
    assert_eq!(s.queue_len(carol).await.unwrap(), 1);
    assert_eq!(s.queue_len(alice).await.unwrap(), 0);
    // The body once per message, one queue row per recipient.
    check_rows(b, "relay_bodies", 2).await;
    check_rows(b, "relay_queue", 3).await;

    // Sequence numbers are never reused, even once every entry is gone.
    let last = second[0].1;
    assert_eq!(s.ack(bob, &[first[0].1, last]).await.unwrap(), 2);
    assert_eq!(s.ack(carol, &[first[1].1]).await.unwrap(), 1);
    let third = new_seqs(
        s.store_message(&message(alice, 3, b"three", &[carol]), ROOMY)
            .await
            .unwrap(),
    );
    assert!(third[0].1 > last);
}

async fn pending_skips_limits_and_hides_expired_entries(b: &impl Backend) {
    let s = b.make().await;
    let (alice, bob) = (dev(1), dev(2));
    let mut seqs = Vec::new();
    for id in 1..=5u8 {
        let mut m = message(alice, id, &[id], &[bob]);
        if id == 3 {
            m.expires_at_ms = NOW + 10;
        }
        seqs.push(new_seqs(s.store_message(&m, ROOMY).await.unwrap())[0].1);
    }
    let seqs_of = |list: Vec<kontor_relay::store::QueuedMessage>| {
        list.into_iter().map(|m| m.seq).collect::<Vec<_>>()
    };

    assert_eq!(seqs_of(s.pending(bob, NOW, &[], 10).await.unwrap()), seqs);
    assert_eq!(
        seqs_of(s.pending(bob, NOW, &[], 2).await.unwrap()),
        seqs[..2]
    );
    assert_eq!(
        seqs_of(s.pending(bob, NOW, &[seqs[0], seqs[1]], 2).await.unwrap()),
        seqs[2..4]
    );
    assert_eq!(
        seqs_of(
            s.pending(bob, NOW, &[seqs[1], 9_999_999], 10)
                .await
                .unwrap()
        ),
        [seqs[0], seqs[2], seqs[3], seqs[4]]
    );
    assert!(s.pending(bob, NOW, &[], 0).await.unwrap().is_empty());
    // At its expiry time an entry is no longer pending (expiry is exclusive).
    assert_eq!(
        seqs_of(s.pending(bob, NOW + 9, &[], 10).await.unwrap()),
        seqs
    );
    assert_eq!(
        seqs_of(s.pending(bob, NOW + 10, &[], 10).await.unwrap()),
        [seqs[0], seqs[1], seqs[3], seqs[4]]
    );
    assert!(s.pending(bob, NOW + DAY, &[], 10).await.unwrap().is_empty());
    assert!(s.pending(alice, NOW, &[], 10).await.unwrap().is_empty());

    // Above a sequence number: what a live connection that sent up to it
    // lacks, limited and without expired entries the same way.
    assert_eq!(
        seqs_of(s.pending_after(bob, NOW, 0, 10).await.unwrap()),
        seqs
    );
    assert_eq!(
        seqs_of(s.pending_after(bob, NOW, seqs[1], 10).await.unwrap()),
        seqs[2..]
    );
    assert_eq!(
        seqs_of(s.pending_after(bob, NOW, seqs[0], 2).await.unwrap()),
        seqs[1..3]
    );
    assert_eq!(
        seqs_of(s.pending_after(bob, NOW + 10, seqs[1], 10).await.unwrap()),
        [seqs[3], seqs[4]]
    );
    assert!(
        s.pending_after(bob, NOW, seqs[4], 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.pending_after(alice, NOW, 0, 10).await.unwrap().is_empty());
    // Entries stored later are numbered above every earlier one.
    let sixth = new_seqs(
        s.store_message(&message(alice, 6, &[6], &[bob]), ROOMY)
            .await
            .unwrap(),
    )[0]
    .1;
    assert_eq!(
        seqs_of(s.pending_after(bob, NOW, seqs[4], 10).await.unwrap()),
        [sixth]
    );
}

async fn a_retry_is_a_duplicate_and_another_body_under_the_same_id_a_replay(b: &impl Backend) {
    let s = b.make().await;
    let (alice, bob, carol) = (dev(1), dev(2), dev(3));
    let m = message(alice, 7, b"hello", &[bob]);
    let seq = new_seqs(s.store_message(&m, ROOMY).await.unwrap())[0].1;

    assert_eq!(s.store_message(&m, ROOMY).await, Ok(Stored::Duplicate));
    let replay = message(alice, 7, b"something else", &[bob, carol]);
    assert_eq!(s.store_message(&replay, ROOMY).await, Err(Error::Replay));
    // Neither changed anything.
    assert_eq!(pending_bodies(&s, bob).await, [(seq, b"hello".to_vec())]);
    assert_eq!(s.queue_len(carol).await.unwrap(), 0);
    check_rows(b, "relay_bodies", 1).await;
    check_rows(b, "relay_queue", 1).await;

    // Message ids are per sender: another sender may use the same one.
    let other = message(carol, 7, b"something else", &[bob]);
    new_seqs(s.store_message(&other, ROOMY).await.unwrap());
    assert_eq!(s.queue_len(bob).await.unwrap(), 2);

    // Once every copy is acknowledged the id is still remembered.
    let all: Vec<u64> = pending_bodies(&s, bob).await.iter().map(|p| p.0).collect();
    assert_eq!(s.ack(bob, &all).await.unwrap(), 2);
    assert_eq!(s.store_message(&m, ROOMY).await, Ok(Stored::Duplicate));
    assert_eq!(s.store_message(&replay, ROOMY).await, Err(Error::Replay));
    assert_eq!(s.queue_len(bob).await.unwrap(), 0);
    assert_eq!(s.queue_len(carol).await.unwrap(), 0);
    check_rows(b, "relay_bodies", 0).await;
}

async fn a_full_queue_refuses_the_whole_message_and_stores_nothing(b: &impl Backend) {
    let s = b.make().await;
    let (alice, bob, carol) = (dev(1), dev(2), dev(3));
    let first = new_seqs(
        s.store_message(&message(alice, 1, b"1", &[bob]), 2)
            .await
            .unwrap(),
    );
    new_seqs(
        s.store_message(&message(alice, 2, b"2", &[bob]), 2)
            .await
            .unwrap(),
    );

    // Carol has room, Bob has not: nobody gets it.
    let third = message(alice, 3, b"3", &[carol, bob]);
    assert_eq!(
        s.store_message(&third, 2).await,
        Err(Error::QueueFull(bob.to_string()))
    );
    assert_eq!(Error::QueueFull(bob.to_string()).to_string(), {
        format!("the queue of device {} is full", hex::encode([2u8; 16]))
    });
    assert_eq!(s.queue_len(carol).await.unwrap(), 0);
    assert_eq!(s.queue_len(bob).await.unwrap(), 2);
    check_rows(b, "relay_bodies", 2).await;
    check_rows(b, "relay_queue", 2).await;

    // A refused message was not remembered: once Bob made room it is new.
    assert_eq!(s.ack(bob, &[first[0].1]).await.unwrap(), 1);
    let seqs = new_seqs(s.store_message(&third, 2).await.unwrap());
    assert_eq!(seqs.len(), 2);
    assert_eq!(s.queue_len(carol).await.unwrap(), 1);
    assert_eq!(s.queue_len(bob).await.unwrap(), 2);
}

async fn ack_deletes_only_the_devices_own_entries_and_the_body_goes_with_the_last(
    b: &impl Backend,
) {
    let s = b.make().await;
    let (alice, bob, carol) = (dev(1), dev(2), dev(3));
    let seqs = new_seqs(
        s.store_message(&message(alice, 1, b"both", &[bob, carol]), ROOMY)
            .await
            .unwrap(),
    );
    let (to_bob, to_carol) = (seqs[0].1, seqs[1].1);

    // Bob cannot acknowledge Carol's entry.
    assert_eq!(s.ack(bob, &[to_carol]).await.unwrap(), 0);
    assert_eq!(s.queue_len(carol).await.unwrap(), 1);

    // Unknown and repeated seqs count once.
    assert_eq!(s.ack(bob, &[to_bob, to_bob, 9_999_999]).await.unwrap(), 1);
    assert_eq!(s.ack(bob, &[to_bob]).await.unwrap(), 0);
    assert_eq!(s.ack(bob, &[]).await.unwrap(), 0);
    assert!(pending_bodies(&s, bob).await.is_empty());
    // Carol's copy still reads the body.
    assert_eq!(
        pending_bodies(&s, carol).await,
        [(to_carol, b"both".to_vec())]
    );
    check_rows(b, "relay_bodies", 1).await;

    assert_eq!(s.ack(carol, &[to_carol, u64::MAX]).await.unwrap(), 1);
    check_rows(b, "relay_bodies", 0).await;
    check_rows(b, "relay_queue", 0).await;
}

async fn drop_queue_removes_every_entry_of_one_device(b: &impl Backend) {
    let s = b.make().await;
    let (alice, bob, carol) = (dev(1), dev(2), dev(3));
    for id in 1..=3u8 {
        new_seqs(
            s.store_message(&message(alice, id, &[id], &[bob]), ROOMY)
                .await
                .unwrap(),
        );
    }
    let shared = new_seqs(
        s.store_message(&message(alice, 4, b"shared", &[bob, carol]), ROOMY)
            .await
            .unwrap(),
    );

    assert_eq!(s.drop_queue(bob).await.unwrap(), 4);
    assert_eq!(s.queue_len(bob).await.unwrap(), 0);
    assert_eq!(
        pending_bodies(&s, carol).await,
        [(shared[1].1, b"shared".to_vec())]
    );
    check_rows(b, "relay_bodies", 1).await;
    assert_eq!(s.drop_queue(bob).await.unwrap(), 0);
    assert_eq!(s.drop_queue(carol).await.unwrap(), 1);
    check_rows(b, "relay_bodies", 0).await;
}

async fn expiry_drops_entries_and_bodies_past_their_time(b: &impl Backend) {
    let s = b.make().await;
    let (alice, bob, carol) = (dev(1), dev(2), dev(3));
    let mut short = message(alice, 1, b"short", &[bob, carol]);
    short.expires_at_ms = NOW + 10;
    new_seqs(s.store_message(&short, ROOMY).await.unwrap());
    let long = new_seqs(
        s.store_message(&message(alice, 2, b"long", &[bob]), ROOMY)
            .await
            .unwrap(),
    );

    assert_eq!(s.expire_messages(NOW).await.unwrap(), 0);
    assert_eq!(s.queue_len(bob).await.unwrap(), 2);
    assert_eq!(s.expire_messages(NOW + 10).await.unwrap(), 2);
    assert_eq!(s.queue_len(bob).await.unwrap(), 1);
    assert_eq!(s.queue_len(carol).await.unwrap(), 0);
    assert_eq!(
        pending_bodies(&s, bob).await,
        [(long[0].1, b"long".to_vec())]
    );
    check_rows(b, "relay_bodies", 1).await;
    assert_eq!(s.expire_messages(NOW + 10).await.unwrap(), 0);
    assert_eq!(s.expire_messages(NOW + DAY).await.unwrap(), 1);
    check_rows(b, "relay_bodies", 0).await;
    check_rows(b, "relay_queue", 0).await;
}

fn member(user_id: &str, role: GroupRole) -> GroupMember {
    GroupMember {
        user_id: user_id.to_owned(),
        role,
    }
}

fn group(id: u8, name: &str, members: Vec<GroupMember>) -> Group {
    Group {
        id: [id; 16],
        name: name.to_owned(),
        created_by: "anna".to_owned(),
        created_at_ms: NOW,
        members,
    }
}

async fn groups_are_created_once_renamed_and_their_members_managed(b: &impl Backend) {
    let s = b.make().await;
    let unknown: Id16 = [99; 16];
    let team = group(
        1,
        "Team",
        vec![
            member("zoe", GroupRole::Member),
            member("anna", GroupRole::Admin),
        ],
    );
    s.create_group(&team).await.unwrap();
    let stored = s.group(team.id).await.unwrap().unwrap();
    assert_eq!(stored.name, "Team");
    assert_eq!(stored.created_by, "anna");
    assert_eq!(stored.created_at_ms, NOW);
    // Members come back ordered by user id.
    assert_eq!(
        stored.members,
        [
            member("anna", GroupRole::Admin),
            member("zoe", GroupRole::Member)
        ]
    );
    assert_eq!(
        s.create_group(&group(1, "Other", vec![])).await,
        Err(Error::Replay)
    );
    assert_eq!(s.group(team.id).await.unwrap().unwrap().name, "Team");
    assert_eq!(s.group(unknown).await.unwrap(), None);

    assert!(s.rename_group(team.id, "Renamed").await.unwrap());
    assert_eq!(s.group(team.id).await.unwrap().unwrap().name, "Renamed");
    assert!(!s.rename_group(unknown, "Nothing").await.unwrap());

    assert!(
        s.put_member(team.id, &member("bob", GroupRole::Member))
            .await
            .unwrap()
    );
    assert!(
        s.put_member(team.id, &member("zoe", GroupRole::Admin))
            .await
            .unwrap()
    );
    assert_eq!(
        s.group(team.id).await.unwrap().unwrap().members,
        [
            member("anna", GroupRole::Admin),
            member("bob", GroupRole::Member),
            member("zoe", GroupRole::Admin)
        ]
    );
    assert!(
        !s.put_member(unknown, &member("bob", GroupRole::Member))
            .await
            .unwrap()
    );
    assert_eq!(s.group(unknown).await.unwrap(), None);

    assert!(s.remove_member(team.id, "bob").await.unwrap());
    assert!(!s.remove_member(team.id, "bob").await.unwrap());
    assert!(!s.remove_member(unknown, "anna").await.unwrap());
    assert!(s.groups_of_user("bob").await.unwrap().is_empty());

    let pair = group(2, "Pair", vec![member("anna", GroupRole::Admin)]);
    s.create_group(&pair).await.unwrap();
    let of_anna = s.groups_of_user("anna").await.unwrap();
    assert_eq!(of_anna.len(), 2);
    let renamed = of_anna.iter().find(|g| g.id == team.id).unwrap();
    assert_eq!(renamed.name, "Renamed");
    assert_eq!(renamed.members.len(), 2);
    assert!(of_anna.contains(&pair));
    assert_eq!(
        s.groups_of_user("zoe").await.unwrap(),
        [s.group(team.id).await.unwrap().unwrap()]
    );
    assert!(s.groups_of_user("nobody").await.unwrap().is_empty());
}

async fn blobs_are_readable_by_their_owner_and_recipients_of_a_message_naming_them(
    b: &impl Backend,
) {
    let s = b.make().await;
    let (alice, bob, carol) = (dev(1), dev(2), dev(3));
    let blob = BlobRecord {
        id: [5; 16],
        owner_device: alice,
        bytes: b"ciphertext".to_vec(),
        created_at_ms: NOW,
        expires_at_ms: NOW + DAY,
    };
    s.put_blob(&blob).await.unwrap();
    let taken = BlobRecord {
        owner_device: carol,
        ..blob.clone()
    };
    assert_eq!(s.put_blob(&taken).await, Err(Error::Replay));
    assert_eq!(s.blob_owner(blob.id).await.unwrap(), Some(alice));
    assert_eq!(s.blob_owner([6; 16]).await.unwrap(), None);

    assert_eq!(
        s.blob_for(blob.id, alice, NOW).await.unwrap(),
        Some(blob.clone())
    );
    assert_eq!(s.blob_for(blob.id, bob, NOW).await.unwrap(), None);
    assert_eq!(s.blob_for([6; 16], alice, NOW).await.unwrap(), None);

    // A message naming the blob lets its recipients read it, nobody else.
    let mut m = message(alice, 1, b"see attachment", &[bob]);
    m.blob_ids = vec![blob.id];
    let seqs = new_seqs(s.store_message(&m, ROOMY).await.unwrap());
    assert_eq!(
        s.blob_for(blob.id, bob, NOW).await.unwrap(),
        Some(blob.clone())
    );
    assert_eq!(s.blob_for(blob.id, carol, NOW).await.unwrap(), None);
    // Acknowledging the message does not take the right away.
    assert_eq!(s.ack(bob, &[seqs[0].1]).await.unwrap(), 1);
    assert_eq!(
        s.blob_for(blob.id, bob, NOW).await.unwrap(),
        Some(blob.clone())
    );
    check_rows(b, "relay_blob_grants", 1).await;

    // Expired blobs are not returned, then deleted with their grants.
    assert_eq!(s.blob_for(blob.id, alice, NOW + DAY).await.unwrap(), None);
    assert_eq!(s.blob_for(blob.id, bob, NOW + DAY).await.unwrap(), None);
    assert_eq!(s.expire_blobs(NOW).await.unwrap(), 0);
    assert_eq!(s.expire_blobs(NOW + DAY).await.unwrap(), 1);
    assert_eq!(s.blob_owner(blob.id).await.unwrap(), None);
    check_rows(b, "relay_blob_grants", 0).await;
    // A new blob under the old id carries no old grant.
    s.put_blob(&taken).await.unwrap();
    assert_eq!(s.blob_for(blob.id, bob, NOW).await.unwrap(), None);
    assert_eq!(s.blob_for(blob.id, carol, NOW).await.unwrap(), Some(taken));
}

async fn commands_are_queued_acknowledged_once_by_their_device_and_listed(b: &impl Backend) {
    let s = b.make().await;
    let (alice, bob, carol) = (dev(1), dev(2), dev(3));
    let first = s
        .queue_command(alice, "policy", r#"{"pin":true}"#, NOW)
        .await
        .unwrap();
    let for_bob = s
        .queue_command(bob, "wipe", r#"{"reason":"lost"}"#, NOW + 1)
        .await
        .unwrap();
    let second = s
        .queue_command(alice, "wipe", r#"{"reason":"left"}"#, NOW + 2)
        .await
        .unwrap();
    assert!(first < for_bob && for_bob < second);

    let pending = s.pending_commands(alice).await.unwrap();
    assert_eq!(
        pending.iter().map(|c| c.id).collect::<Vec<_>>(),
        [first, second]
    );
    assert_eq!(pending[0].device, alice);
    assert_eq!(pending[0].kind, "policy");
    assert_eq!(pending[0].payload, r#"{"pin":true}"#);
    assert_eq!(pending[0].created_at_ms, NOW);
    assert_eq!(pending[0].acked_at_ms, None);
    assert_eq!(pending[0].receipt, None);

    // Only the command's own device acknowledges it, and only once.
    assert!(!s.ack_command(bob, first, "{}", NOW + 5).await.unwrap());
    assert!(
        s.ack_command(alice, first, r#"{"ok":true}"#, NOW + 5)
            .await
            .unwrap()
    );
    assert!(!s.ack_command(alice, first, "{}", NOW + 6).await.unwrap());
    assert!(!s.ack_command(alice, 9_999_999, "{}", NOW).await.unwrap());
    assert!(!s.ack_command(alice, u64::MAX, "{}", NOW).await.unwrap());

    let pending = s.pending_commands(alice).await.unwrap();
    assert_eq!(pending.iter().map(|c| c.id).collect::<Vec<_>>(), [second]);
    let all = s.commands_of_device(alice).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].id, first);
    assert_eq!(all[0].acked_at_ms, Some(NOW + 5));
    assert_eq!(all[0].receipt.as_deref(), Some(r#"{"ok":true}"#));
    assert_eq!(all[1], pending[0]);
    assert_eq!(s.pending_commands(bob).await.unwrap().len(), 1);
    assert!(s.commands_of_device(carol).await.unwrap().is_empty());
    assert!(s.pending_commands(carol).await.unwrap().is_empty());
}

async fn device_state_keeps_push_target_last_seen_and_wipe_apart(b: &impl Backend) {
    let s = b.make().await;
    let (alice, bob, carol) = (dev(1), dev(2), dev(3));
    let state = |push, last_seen_ms, wiped_at_ms| DeviceState {
        device: alice,
        push,
        last_seen_ms,
        wiped_at_ms,
    };
    assert_eq!(s.device_state(alice).await.unwrap(), None);

    s.touch_device(alice, NOW).await.unwrap();
    assert_eq!(
        s.device_state(alice).await.unwrap(),
        Some(state(None, Some(NOW), None))
    );
    let apns = PushTarget::Apns("a1b2c3".to_owned());
    s.set_push_target(alice, Some(&apns)).await.unwrap();
    assert_eq!(
        s.device_state(alice).await.unwrap(),
        Some(state(Some(apns), Some(NOW), None))
    );
    let fcm = PushTarget::Fcm("registration:token".to_owned());
    s.set_push_target(alice, Some(&fcm)).await.unwrap();
    s.touch_device(alice, NOW + 1).await.unwrap();
    assert_eq!(
        s.device_state(alice).await.unwrap(),
        Some(state(Some(fcm.clone()), Some(NOW + 1), None))
    );
    s.mark_wiped(alice, NOW + 2).await.unwrap();
    assert_eq!(
        s.device_state(alice).await.unwrap(),
        Some(state(Some(fcm), Some(NOW + 1), Some(NOW + 2)))
    );
    s.set_push_target(alice, None).await.unwrap();
    assert_eq!(
        s.device_state(alice).await.unwrap(),
        Some(state(None, Some(NOW + 1), Some(NOW + 2)))
    );

    // Each call also creates the state of a device not seen before.
    let bob_push = PushTarget::Apns("ff".to_owned());
    s.set_push_target(bob, Some(&bob_push)).await.unwrap();
    assert_eq!(
        s.device_state(bob).await.unwrap(),
        Some(DeviceState {
            device: bob,
            push: Some(bob_push),
            last_seen_ms: None,
            wiped_at_ms: None,
        })
    );
    s.mark_wiped(carol, NOW).await.unwrap();
    assert_eq!(
        s.device_state(carol).await.unwrap(),
        Some(DeviceState {
            device: carol,
            push: None,
            last_seen_ms: None,
            wiped_at_ms: Some(NOW),
        })
    );
    assert_eq!(s.device_state(dev(4)).await.unwrap(), None);

    // Which of several devices are wiped, in one read: alice and carol
    // (bob has a state without a wipe, dev(4) none at all).
    let mut wiped = s.wiped_devices(&[alice, bob, carol, dev(4)]).await.unwrap();
    wiped.sort_by_key(|d| *d.as_bytes());
    let mut expected = vec![alice, carol];
    expected.sort_by_key(|d| *d.as_bytes());
    assert_eq!(wiped, expected);
    assert!(s.wiped_devices(&[bob]).await.unwrap().is_empty());
    assert!(s.wiped_devices(&[]).await.unwrap().is_empty());
}

async fn concurrent_retries_on_two_nodes_store_a_message_exactly_once(b: &impl Backend) {
    let one = b.make().await;
    let two = b.again().await;
    let (alice, bob, carol) = (dev(1), dev(2), dev(3));

    // Twenty copies of one message at once: one is new, the rest retries.
    let m = message(alice, 1, b"once", &[bob, carol]);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = if i % 2 == 0 { one.clone() } else { two.clone() };
        let m = m.clone();
        tasks.push(tokio::spawn(
            async move { store.store_message(&m, ROOMY).await },
        ));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap().unwrap());
    }
    let new = outcomes
        .iter()
        .filter(|o| matches!(o, Stored::New(_)))
        .count();
    assert_eq!(new, 1, "{outcomes:?}");
    assert_eq!(one.queue_len(bob).await.unwrap(), 1);
    assert_eq!(two.queue_len(carol).await.unwrap(), 1);
    check_rows(b, "relay_bodies", 1).await;

    // Twenty different bodies under one id at once: one wins, the rest are
    // replays.
    let mut tasks = Vec::new();
    for i in 0..20u8 {
        let store = if i % 2 == 0 { one.clone() } else { two.clone() };
        let m = message(alice, 2, &[i], &[bob]);
        tasks.push(tokio::spawn(
            async move { store.store_message(&m, ROOMY).await },
        ));
    }
    let mut new = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(Stored::New(_)) => new += 1,
            Err(Error::Replay) => {}
            other => panic!("expected new or replay, got {other:?}"),
        }
    }
    assert_eq!(new, 1);
    assert_eq!(one.queue_len(bob).await.unwrap(), 2);
}

async fn concurrent_stores_on_two_nodes_never_overfill_a_queue_or_deadlock(b: &impl Backend) {
    let one = b.make().await;
    let two = b.again().await;
    let (alice, bob, carol) = (dev(1), dev(2), dev(3));

    let mut tasks = Vec::new();
    for id in 0..20u8 {
        let store = if id % 2 == 0 {
            one.clone()
        } else {
            two.clone()
        };
        let m = message(alice, id, &[id], &[bob]);
        tasks.push(tokio::spawn(
            async move { store.store_message(&m, 5).await },
        ));
    }
    let mut new = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(Stored::New(_)) => new += 1,
            Err(Error::QueueFull(device)) => assert_eq!(device, bob.to_string()),
            other => panic!("expected new or a full queue, got {other:?}"),
        }
    }
    assert_eq!(new, 5);
    assert_eq!(one.queue_len(bob).await.unwrap(), 5);
    assert_eq!(two.queue_len(bob).await.unwrap(), 5);

    // Recipients named in both orders at once: every store goes through.
    let mut tasks = Vec::new();
    for id in 100..120u8 {
        let store = if id % 2 == 0 {
            one.clone()
        } else {
            two.clone()
        };
        let to = if id % 4 < 2 {
            [bob, carol]
        } else {
            [carol, bob]
        };
        let m = message(alice, id, &[id], &to);
        tasks.push(tokio::spawn(
            async move { store.store_message(&m, ROOMY).await },
        ));
    }
    for task in tasks {
        new_seqs(task.await.unwrap().unwrap());
    }
    assert_eq!(one.queue_len(bob).await.unwrap(), 25);
    assert_eq!(one.queue_len(carol).await.unwrap(), 20);
    // Each device's queue reads in increasing seq, without gaps in content.
    let to_carol = one.pending(carol, NOW, &[], 100).await.unwrap();
    assert_eq!(to_carol.len(), 20);
    assert!(to_carol.windows(2).all(|w| w[0].seq < w[1].seq));
}

async fn a_stored_message_survives_closing_and_reopening_the_database(b: &impl Backend) {
    let (alice, bob) = (dev(1), dev(2));
    let m = message(alice, 1, b"kept", &[bob]);
    let seq = {
        let s = b.make().await;
        let seq = new_seqs(s.store_message(&m, ROOMY).await.unwrap())[0].1;
        s.queue_command(bob, "wipe", "{}", NOW).await.unwrap();
        seq
    };

    let s = b.again().await;
    assert_eq!(pending_bodies(&s, bob).await, [(seq, b"kept".to_vec())]);
    assert_eq!(s.pending_commands(bob).await.unwrap().len(), 1);
    // The reopened store still knows the message: a retry changes nothing.
    assert_eq!(s.store_message(&m, ROOMY).await, Ok(Stored::Duplicate));
    assert_eq!(s.queue_len(bob).await.unwrap(), 1);
}

/// Many writes at once land in the same group commit (SQLite) or in
/// concurrent transactions (PostgreSQL): each still gets its own answer, a
/// failing one (a replay, a full queue) changes nothing and leaves the
/// others stored, and the kept queue length matches the queue through
/// stores, acknowledgements, a dropped queue and expiry.
async fn writes_committed_together_fail_alone_and_count_the_queue_exactly(b: &impl Backend) {
    let s = b.make().await;
    let (alice, bob, carol, dave) = (dev(1), dev(2), dev(3), dev(4));
    // A message under id 0 first, so that a second body under it is a replay.
    new_seqs(
        s.store_message(&message(alice, 0, b"first", &[bob]), ROOMY)
            .await
            .unwrap(),
    );
    // Carol's queue takes 3 (the limit is 4, one is queued below first).
    new_seqs(
        s.store_message(&message(dave, 200, b"c", &[carol]), 4)
            .await
            .unwrap(),
    );

    let mut tasks = Vec::new();
    for id in 1..=60u8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let m = match id % 3 {
                // A replay of id 0 under another body.
                0 if id == 30 => message(alice, 0, b"other", &[bob]),
                // Carol's small queue fills up.
                0 => message(alice, id, &[id], &[carol]),
                _ => message(alice, id, &[id], &[bob]),
            };
            let limit = if m.deliveries[0].0 == carol { 4 } else { ROOMY };
            (id, s.store_message(&m, limit).await)
        }));
    }
    let (mut to_bob, mut to_carol, mut replays, mut full) = (0u64, 0u64, 0, 0);
    for task in tasks {
        match task.await.unwrap() {
            (30, Err(Error::Replay)) => replays += 1,
            (id, Ok(Stored::New(seqs))) if id % 3 == 0 => {
                assert_eq!(seqs[0].0, carol);
                to_carol += 1;
            }
            (_, Ok(Stored::New(seqs))) => {
                assert_eq!(seqs[0].0, bob);
                to_bob += 1;
            }
            (_, Err(Error::QueueFull(device))) => {
                assert_eq!(device, carol.to_string());
                full += 1;
            }
            (id, other) => panic!("message {id}: unexpected {other:?}"),
        }
    }
    assert_eq!(replays, 1);
    assert_eq!(to_bob, 40);
    assert_eq!(
        to_carol, 3,
        "carol's queue takes 3 more up to its limit of 4"
    );
    assert_eq!(full, 19 - 3);
    assert_eq!(s.queue_len(bob).await.unwrap(), 41);
    assert_eq!(s.queue_len(carol).await.unwrap(), 4);
    assert_eq!(pending_bodies(&s, bob).await.len(), 41);
    // The replay did not replace the first body.
    assert_eq!(pending_bodies(&s, bob).await[0].1, b"first".to_vec());

    // Acknowledging frees places, also unknown and repeated seqs change
    // nothing; a freed queue takes messages again.
    let seqs: Vec<u64> = pending_bodies(&s, bob)
        .await
        .iter()
        .map(|(q, _)| *q)
        .collect();
    assert_eq!(s.ack(bob, &seqs[..10]).await.unwrap(), 10);
    assert_eq!(s.ack(bob, &seqs[..10]).await.unwrap(), 0);
    assert_eq!(
        s.ack(carol, &seqs[10..12]).await.unwrap(),
        0,
        "not carol's entries"
    );
    assert_eq!(s.queue_len(bob).await.unwrap(), 31);
    let carols: Vec<u64> = pending_bodies(&s, carol)
        .await
        .iter()
        .map(|(q, _)| *q)
        .collect();
    assert_eq!(s.ack(carol, &carols[..1]).await.unwrap(), 1);
    new_seqs(
        s.store_message(&message(alice, 100, b"again", &[carol]), 4)
            .await
            .unwrap(),
    );
    assert!(matches!(
        s.store_message(&message(alice, 101, b"over", &[carol]), 4)
            .await,
        Err(Error::QueueFull(_))
    ));

    // A dropped queue counts zero; expiry counts what it removed.
    assert_eq!(s.drop_queue(carol).await.unwrap(), 4);
    assert_eq!(s.queue_len(carol).await.unwrap(), 0);
    let mut late = message(alice, 102, b"late", &[bob]);
    late.expires_at_ms = NOW + 2 * DAY;
    new_seqs(s.store_message(&late, ROOMY).await.unwrap());
    assert_eq!(s.queue_len(bob).await.unwrap(), 32);
    assert_eq!(s.expire_messages(NOW + DAY).await.unwrap(), 31);
    assert_eq!(s.queue_len(bob).await.unwrap(), 1);
    assert_eq!(pending_bodies(&s, bob).await[0].1, b"late".to_vec());
    check_rows(b, "relay_queue_len", 1).await;
    // Nothing about a device with an empty queue stays in the counts.
    assert_eq!(s.expire_messages(NOW + 3 * DAY).await.unwrap(), 1);
    check_rows(b, "relay_queue_len", 0).await;
}
