//! The scale-out store: PostgreSQL through a small deadpool connection
//! pool, every table in one schema chosen at connect time (so tests can use
//! a fresh schema each). Several relay nodes share it.
//!
//! Storing a message is one transaction. Per-device transaction-scoped
//! advisory locks, taken in a fixed order, serialise concurrent stores for
//! the same recipient across nodes, so a queue never grows past its limit;
//! the unique (sender, message id) key makes retries race-free.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use kontor_provisioning::DeviceId;
use tokio_postgres::{NoTls, Row};

use super::*;
use crate::error::Error;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/postgres/0001_init.sql")),
    (
        2,
        include_str!("../../migrations/postgres/0002_command_delivered.sql"),
    ),
    (
        3,
        include_str!("../../migrations/postgres/0003_queue_len.sql"),
    ),
    (
        4,
        include_str!("../../migrations/postgres/0004_store_functions.sql"),
    ),
];
/// Connections per node.
const POOL_SIZE: usize = 16;
/// How long a request waits for a connection, for a new connection to open,
/// or for a returned one to be checked, before it is answered 503.
const POOL_TIMEOUT: Duration = Duration::from_secs(5);

/// The PostgreSQL implementation of every relay store trait.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    schema: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

fn db(e: impl Into<Fault>) -> Error {
    match e.into() {
        Fault::Postgres(e) if e.code() == Some(&tokio_postgres::error::SqlState::DISK_FULL) => {
            Error::StorageFull(e.to_string())
        }
        Fault::Postgres(e) if kontor_provisioning::store::postgres_unavailable(&e) => {
            Error::Unavailable(e.to_string())
        }
        Fault::Postgres(e) => Error::Store(e.to_string()),
        Fault::Pool(PoolError::Backend(e)) => db(e),
        // Timeouts and a closed pool: the database is out of reach.
        Fault::Pool(e @ (PoolError::Timeout(_) | PoolError::Closed)) => {
            Error::Unavailable(e.to_string())
        }
        Fault::Pool(e) => Error::Store(e.to_string()),
        Fault::Other(e) => Error::Store(e),
    }
}

/// What the store's calls fail with, for [`db`].
enum Fault {
    Postgres(tokio_postgres::Error),
    Pool(PoolError),
    Other(String),
}

impl From<tokio_postgres::Error> for Fault {
    fn from(e: tokio_postgres::Error) -> Self {
        Fault::Postgres(e)
    }
}

impl From<PoolError> for Fault {
    fn from(e: PoolError) -> Self {
        Fault::Pool(e)
    }
}

impl From<deadpool_postgres::BuildError> for Fault {
    fn from(e: deadpool_postgres::BuildError) -> Self {
        Fault::Other(e.to_string())
    }
}

/// `relay_store_message`'s full-queue refusal (SQLSTATE KR001, the device
/// in hex as the message), or whatever else failed.
fn queue_full_or_db(e: tokio_postgres::Error) -> Error {
    if let Some(full) = e.as_db_error().filter(|d| d.code().code() == "KR001") {
        return match hex::decode(full.message())
            .map_err(|_| ())
            .and_then(|b| device_of(&b).map_err(|_| ()))
        {
            Ok(device) => Error::QueueFull(device.to_string()),
            Err(()) => Error::Store("a full queue named no device".into()),
        };
    }
    db(e)
}

fn device_of(bytes: &[u8]) -> Result<DeviceId> {
    let array: [u8; 16] = bytes
        .try_into()
        .map_err(|_| Error::Store("stored device id is not 16 bytes".into()))?;
    Ok(DeviceId::from_bytes(array))
}

fn id_of(bytes: &[u8]) -> Result<Id16> {
    bytes
        .try_into()
        .map_err(|_| Error::Store("stored id is not 16 bytes".into()))
}

/// Queue entries with their bodies, as `pending` and `pending_after` select them.
fn queued_messages(rows: Vec<tokio_postgres::Row>) -> Result<Vec<QueuedMessage>> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(QueuedMessage {
            seq: seq(row.try_get(0).map_err(db)?),
            received_at_ms: row.try_get(1).map_err(db)?,
            delivery: row.try_get(2).map_err(db)?,
            body: row.try_get(3).map_err(db)?,
        });
    }
    Ok(out)
}

fn seq(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// A stable 64-bit lock key per device.
fn lock_key(device: &DeviceId) -> i64 {
    let b = device.as_bytes();
    i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

impl PostgresStore {
    /// Connects to `url`, creates `schema` if needed, and applies
    /// migrations there. `schema` must be a plain identifier.
    pub async fn connect(url: &str, schema: &str) -> Result<Self> {
        if schema.is_empty()
            || !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            || schema.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(Error::Config("schema must be a plain identifier".into()));
        }
        let mut config: tokio_postgres::Config = url.parse().map_err(db)?;
        config.application_name(format!("kontor-relay/{schema}"));
        config.connect_timeout(POOL_TIMEOUT);
        config.options(format!("-c search_path={schema}"));
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .recycle_timeout(Some(POOL_TIMEOUT))
            .build()
            .map_err(db)?;
        let store = Self {
            pool,
            schema: schema.to_owned(),
        };
        let mut client = store.pool.get().await.map_err(db)?;
        client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .await
            .map_err(db)?;
        let tx = client.transaction().await.map_err(db)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS relay_migrations (version BIGINT PRIMARY KEY); \
             LOCK TABLE relay_migrations IN EXCLUSIVE MODE",
        )
        .await
        .map_err(db)?;
        for (version, sql) in MIGRATIONS {
            let done = tx
                .query_opt(
                    "SELECT 1 FROM relay_migrations WHERE version = $1",
                    &[version],
                )
                .await
                .map_err(db)?
                .is_some();
            if !done {
                tx.batch_execute(sql).await.map_err(db)?;
                tx.execute(
                    "INSERT INTO relay_migrations (version) VALUES ($1)",
                    &[version],
                )
                .await
                .map_err(db)?;
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(store)
    }

    /// The schema this store works in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Drops the schema and everything in it (for tests).
    pub async fn drop_schema(&self) -> Result<()> {
        let client = self.pool.get().await.map_err(db)?;
        client
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.schema))
            .await
            .map_err(db)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(db)
    }

    /// A pooled connection and `sql` prepared on it once (a statement
    /// given as text is parsed on every call: one more round trip).
    async fn prepared(
        &self,
        sql: &str,
    ) -> Result<(deadpool_postgres::Object, tokio_postgres::Statement)> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(db)?;
        Ok((client, statement))
    }
}

impl MessageStore for PostgresStore {
    async fn store_message(&self, m: &NewMessage, queue_len_max: u64) -> Result<Stored> {
        // One round trip: `relay_store_message` (migration 0004) does the
        // whole store as one statement.
        let devices: Vec<Vec<u8>> = m
            .deliveries
            .iter()
            .map(|(d, _)| d.as_bytes().to_vec())
            .collect();
        let deliveries: Vec<Vec<u8>> = m.deliveries.iter().map(|(_, d)| d.clone()).collect();
        let mut keys: Vec<i64> = m.deliveries.iter().map(|(d, _)| lock_key(d)).collect();
        keys.sort_unstable();
        keys.dedup();
        let blobs: Vec<Vec<u8>> = m.blob_ids.iter().map(|b| b.to_vec()).collect();
        let limit = i64::try_from(queue_len_max).unwrap_or(i64::MAX);
        let (client, statement) = self.prepared("SELECT r_seq, r_device, r_outcome FROM relay_store_message($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)").await?;
        let rows = client
            .query(
                &statement,
                &[
                    &m.sender_device.as_bytes().to_vec(),
                    &m.message_id.to_vec(),
                    &m.body_hash.to_vec(),
                    &m.body,
                    &devices,
                    &deliveries,
                    &keys,
                    &blobs,
                    &m.received_at_ms,
                    &m.expires_at_ms,
                    &limit,
                ],
            )
            .await
            .map_err(queue_full_or_db)?;
        let mut seqs = Vec::with_capacity(rows.len());
        for row in rows {
            let outcome: &str = row.try_get(2).map_err(db)?;
            match outcome {
                "duplicate" => return Ok(Stored::Duplicate),
                "replay" => return Err(Error::Replay),
                _ => {
                    let s: i64 = row.try_get(0).map_err(db)?;
                    let d: Vec<u8> = row.try_get(1).map_err(db)?;
                    seqs.push((device_of(&d)?, seq(s)));
                }
            }
        }
        Ok(Stored::New(seqs))
    }

    async fn pending(
        &self,
        device: DeviceId,
        now_ms: i64,
        skip: &[u64],
        limit: usize,
    ) -> Result<Vec<QueuedMessage>> {
        // The skipped entries (sent on a live connection, not yet
        // acknowledged) are left out by PostgreSQL, so their bodies are not
        // read.
        let skip: Vec<i64> = skip.iter().filter_map(|s| i64::try_from(*s).ok()).collect();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (client, statement) = self
            .prepared(
                "SELECT q.seq, q.received_at_ms, q.delivery, b.body FROM relay_queue q \
                 JOIN relay_bodies b ON b.id = q.body_id \
                 WHERE q.device = $1 AND q.expires_at_ms > $2 AND q.seq <> ALL($4) \
                 ORDER BY q.seq LIMIT $3",
            )
            .await?;
        let rows = client
            .query(
                &statement,
                &[&device.as_bytes().to_vec(), &now_ms, &limit, &skip],
            )
            .await
            .map_err(db)?;
        queued_messages(rows)
    }

    async fn pending_after(
        &self,
        device: DeviceId,
        now_ms: i64,
        after: u64,
        limit: usize,
    ) -> Result<Vec<QueuedMessage>> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (client, statement) = self
            .prepared(
                "SELECT q.seq, q.received_at_ms, q.delivery, b.body FROM relay_queue q \
                 JOIN relay_bodies b ON b.id = q.body_id \
                 WHERE q.device = $1 AND q.seq > $4 AND q.expires_at_ms > $2 \
                 ORDER BY q.seq LIMIT $3",
            )
            .await?;
        let rows = client
            .query(
                &statement,
                &[&device.as_bytes().to_vec(), &now_ms, &limit, &after],
            )
            .await
            .map_err(db)?;
        queued_messages(rows)
    }

    async fn ack(&self, device: DeviceId, seqs: &[u64]) -> Result<usize> {
        let seqs: Vec<i64> = seqs.iter().filter_map(|s| i64::try_from(*s).ok()).collect();
        // One round trip: `relay_ack` (migration 0004).
        let (client, statement) = self.prepared("SELECT relay_ack($1, $2)").await?;
        let row = client
            .query_one(&statement, &[&device.as_bytes().to_vec(), &seqs])
            .await
            .map_err(db)?;
        let n: i64 = row.try_get(0).map_err(db)?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    async fn drop_queue(&self, device: DeviceId) -> Result<usize> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let bodies = tx
            .query(
                "DELETE FROM relay_queue WHERE device = $1 RETURNING body_id",
                &[&device.as_bytes().to_vec()],
            )
            .await
            .map_err(db)?;
        let ids: Vec<i64> = bodies
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()
            .map_err(db)?;
        drop_orphans(&tx, &ids).await?;
        tx.commit().await.map_err(db)?;
        Ok(ids.len())
    }

    async fn queue_len(&self, device: DeviceId) -> Result<u64> {
        let (client, statement) = self
            .prepared("SELECT n FROM relay_queue_len WHERE device = $1")
            .await?;
        let row = client
            .query_opt(&statement, &[&device.as_bytes().to_vec()])
            .await
            .map_err(db)?;
        match row {
            Some(row) => Ok(seq(row.try_get(0).map_err(db)?)),
            None => Ok(0),
        }
    }

    async fn expire_messages(&self, now_ms: i64) -> Result<usize> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let bodies = tx
            .query(
                "DELETE FROM relay_queue WHERE expires_at_ms <= $1 RETURNING body_id",
                &[&now_ms],
            )
            .await
            .map_err(db)?;
        let ids: Vec<i64> = bodies
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()
            .map_err(db)?;
        tx.execute(
            "DELETE FROM relay_seen WHERE expires_at_ms <= $1",
            &[&now_ms],
        )
        .await
        .map_err(db)?;
        drop_orphans(&tx, &ids).await?;
        tx.execute(
            "DELETE FROM relay_bodies WHERE expires_at_ms <= $1",
            &[&now_ms],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(ids.len())
    }
}

/// Deletes those bodies that no queue row references any more; returns
/// how many went.
async fn drop_orphans(tx: &deadpool_postgres::Transaction<'_>, ids: &[i64]) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    tx.execute(
        "DELETE FROM relay_bodies b WHERE b.id = ANY($1) AND NOT EXISTS (SELECT 1 FROM relay_queue q WHERE q.body_id = b.id)",
        &[&ids],
    )
    .await
    .map_err(db)
}

fn group_from(head: &Row, members: &[Row], id: Id16) -> Result<Group> {
    let mut list = Vec::with_capacity(members.len());
    for row in members {
        let role: String = row.try_get(1).map_err(db)?;
        list.push(GroupMember {
            user_id: row.try_get(0).map_err(db)?,
            role: GroupRole::parse(&role)
                .ok_or_else(|| Error::Store(format!("unknown group role {role:?}")))?,
        });
    }
    Ok(Group {
        id,
        name: head.try_get(0).map_err(db)?,
        created_by: head.try_get(1).map_err(db)?,
        created_at_ms: head.try_get(2).map_err(db)?,
        members: list,
    })
}

impl PostgresStore {
    async fn load_group(
        &self,
        client: &deadpool_postgres::Object,
        id: Id16,
    ) -> Result<Option<Group>> {
        let Some(head) = client
            .query_opt(
                "SELECT name, created_by, created_at_ms FROM relay_groups WHERE id = $1",
                &[&id.to_vec()],
            )
            .await
            .map_err(db)?
        else {
            return Ok(None);
        };
        let members = client
            .query("SELECT user_id, role FROM relay_group_members WHERE group_id = $1 ORDER BY user_id", &[&id.to_vec()])
            .await
            .map_err(db)?;
        group_from(&head, &members, id).map(Some)
    }
}

impl GroupStore for PostgresStore {
    async fn create_group(&self, group: &Group) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let n = tx
            .execute(
                "INSERT INTO relay_groups (id, name, created_by, created_at_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
                &[&group.id.to_vec(), &group.name, &group.created_by, &group.created_at_ms],
            )
            .await
            .map_err(db)?;
        if n == 0 {
            return Err(Error::Replay);
        }
        for m in &group.members {
            tx.execute(
                "INSERT INTO relay_group_members (group_id, user_id, role) VALUES ($1, $2, $3)",
                &[&group.id.to_vec(), &m.user_id, &m.role.as_str()],
            )
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn group(&self, id: Id16) -> Result<Option<Group>> {
        let client = self.client().await?;
        self.load_group(&client, id).await
    }

    async fn rename_group(&self, id: Id16, name: &str) -> Result<bool> {
        let n = self
            .client()
            .await?
            .execute(
                "UPDATE relay_groups SET name = $2 WHERE id = $1",
                &[&id.to_vec(), &name],
            )
            .await
            .map_err(db)?;
        Ok(n > 0)
    }

    async fn put_member(&self, id: Id16, member: &GroupMember) -> Result<bool> {
        let n = self
            .client()
            .await?
            .execute(
                "INSERT INTO relay_group_members (group_id, user_id, role) SELECT id, $2, $3 FROM relay_groups WHERE id = $1 \
                 ON CONFLICT (group_id, user_id) DO UPDATE SET role = excluded.role",
                &[&id.to_vec(), &member.user_id, &member.role.as_str()],
            )
            .await
            .map_err(db)?;
        Ok(n > 0)
    }

    async fn remove_member(&self, id: Id16, user_id: &str) -> Result<bool> {
        let n = self
            .client()
            .await?
            .execute(
                "DELETE FROM relay_group_members WHERE group_id = $1 AND user_id = $2",
                &[&id.to_vec(), &user_id],
            )
            .await
            .map_err(db)?;
        Ok(n > 0)
    }

    async fn groups_of_user(&self, user_id: &str) -> Result<Vec<Group>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT group_id FROM relay_group_members WHERE user_id = $1 ORDER BY group_id",
                &[&user_id],
            )
            .await
            .map_err(db)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: Vec<u8> = row.try_get(0).map_err(db)?;
            if let Some(group) = self.load_group(&client, id_of(&id)?).await? {
                out.push(group);
            }
        }
        Ok(out)
    }
}

impl BlobStore for PostgresStore {
    async fn put_blob(&self, blob: &BlobRecord) -> Result<()> {
        let n = self
            .client()
            .await?
            .execute(
                "INSERT INTO relay_blobs (id, owner, bytes, created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (id) DO NOTHING",
                &[&blob.id.to_vec(), &blob.owner_device.as_bytes().to_vec(), &blob.bytes, &blob.created_at_ms, &blob.expires_at_ms],
            )
            .await
            .map_err(db)?;
        if n == 0 { Err(Error::Replay) } else { Ok(()) }
    }

    async fn blob_for(
        &self,
        id: Id16,
        device: DeviceId,
        now_ms: i64,
    ) -> Result<Option<BlobRecord>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT owner, bytes, created_at_ms, expires_at_ms FROM relay_blobs b WHERE b.id = $1 AND b.expires_at_ms > $3 \
                 AND (b.owner = $2 OR EXISTS (SELECT 1 FROM relay_blob_grants g WHERE g.blob_id = b.id AND g.device = $2))",
                &[&id.to_vec(), &device.as_bytes().to_vec(), &now_ms],
            )
            .await
            .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        let owner: Vec<u8> = row.try_get(0).map_err(db)?;
        Ok(Some(BlobRecord {
            id,
            owner_device: device_of(&owner)?,
            bytes: row.try_get(1).map_err(db)?,
            created_at_ms: row.try_get(2).map_err(db)?,
            expires_at_ms: row.try_get(3).map_err(db)?,
        }))
    }

    async fn blob_owner(&self, id: Id16) -> Result<Option<DeviceId>> {
        let (client, statement) = self
            .prepared("SELECT owner FROM relay_blobs WHERE id = $1")
            .await?;
        let row = client
            .query_opt(&statement, &[&id.to_vec()])
            .await
            .map_err(db)?;
        match row {
            Some(row) => {
                let owner: Vec<u8> = row.try_get(0).map_err(db)?;
                Ok(Some(device_of(&owner)?))
            }
            None => Ok(None),
        }
    }

    async fn expire_blobs(&self, now_ms: i64) -> Result<usize> {
        let n = self
            .client()
            .await?
            .execute(
                "DELETE FROM relay_blobs WHERE expires_at_ms <= $1",
                &[&now_ms],
            )
            .await
            .map_err(db)?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

fn command_from(row: &Row) -> Result<CommandRecord> {
    let device: Vec<u8> = row.try_get(1).map_err(db)?;
    Ok(CommandRecord {
        id: seq(row.try_get(0).map_err(db)?),
        device: device_of(&device)?,
        kind: row.try_get(2).map_err(db)?,
        payload: row.try_get(3).map_err(db)?,
        created_at_ms: row.try_get(4).map_err(db)?,
        acked_at_ms: row.try_get(5).map_err(db)?,
        receipt: row.try_get(6).map_err(db)?,
        delivered_at_ms: row.try_get(7).map_err(db)?,
    })
}

const COMMAND_COLUMNS: &str =
    "id, device, kind, payload, created_at_ms, acked_at_ms, receipt, delivered_at_ms";

impl CommandStore for PostgresStore {
    async fn queue_command(
        &self,
        device: DeviceId,
        kind: &str,
        payload: &str,
        now_ms: i64,
    ) -> Result<u64> {
        let row = self
            .client()
            .await?
            .query_one(
                "INSERT INTO relay_commands (device, kind, payload, created_at_ms) VALUES ($1, $2, $3, $4) RETURNING id",
                &[&device.as_bytes().to_vec(), &kind, &payload, &now_ms],
            )
            .await
            .map_err(db)?;
        Ok(seq(row.try_get(0).map_err(db)?))
    }

    async fn pending_commands(&self, device: DeviceId) -> Result<Vec<CommandRecord>> {
        let rows = self
            .client()
            .await?
            .query(
                &format!("SELECT {COMMAND_COLUMNS} FROM relay_commands WHERE device = $1 AND acked_at_ms IS NULL ORDER BY id"),
                &[&device.as_bytes().to_vec()],
            )
            .await
            .map_err(db)?;
        rows.iter().map(command_from).collect()
    }

    async fn mark_commands_delivered(
        &self,
        device: DeviceId,
        ids: &[u64],
        now_ms: i64,
    ) -> Result<()> {
        let ids: Vec<i64> = ids
            .iter()
            .filter_map(|id| i64::try_from(*id).ok())
            .collect();
        self.client()
            .await?
            .execute(
                "UPDATE relay_commands SET delivered_at_ms = $3 WHERE id = ANY($1) AND device = $2 AND delivered_at_ms IS NULL",
                &[&ids, &device.as_bytes().to_vec(), &now_ms],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn ack_command(
        &self,
        device: DeviceId,
        id: u64,
        receipt: &str,
        now_ms: i64,
    ) -> Result<bool> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(false);
        };
        let n = self
            .client()
            .await?
            .execute(
                "UPDATE relay_commands SET acked_at_ms = $3, receipt = $4 WHERE id = $1 AND device = $2 AND acked_at_ms IS NULL",
                &[&id, &device.as_bytes().to_vec(), &now_ms, &receipt],
            )
            .await
            .map_err(db)?;
        Ok(n > 0)
    }

    async fn commands_of_device(&self, device: DeviceId) -> Result<Vec<CommandRecord>> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {COMMAND_COLUMNS} FROM relay_commands WHERE device = $1 ORDER BY id"
                ),
                &[&device.as_bytes().to_vec()],
            )
            .await
            .map_err(db)?;
        rows.iter().map(command_from).collect()
    }
}

impl DeviceStateStore for PostgresStore {
    async fn device_state(&self, device: DeviceId) -> Result<Option<DeviceState>> {
        let (client, statement) = self.prepared("SELECT push_kind, push_token, last_seen_ms, wiped_at_ms FROM relay_devices WHERE device = $1").await?;
        let row = client
            .query_opt(&statement, &[&device.as_bytes().to_vec()])
            .await
            .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        let kind: Option<String> = row.try_get(0).map_err(db)?;
        let token: Option<String> = row.try_get(1).map_err(db)?;
        Ok(Some(DeviceState {
            device,
            push: match (kind.as_deref(), token) {
                (Some("apns"), Some(t)) => Some(PushTarget::Apns(t)),
                (Some("fcm"), Some(t)) => Some(PushTarget::Fcm(t)),
                _ => None,
            },
            last_seen_ms: row.try_get(2).map_err(db)?,
            wiped_at_ms: row.try_get(3).map_err(db)?,
        }))
    }

    async fn set_push_target(&self, device: DeviceId, push: Option<&PushTarget>) -> Result<()> {
        let (kind, token) = match push {
            Some(PushTarget::Apns(t)) => (Some("apns"), Some(t.clone())),
            Some(PushTarget::Fcm(t)) => (Some("fcm"), Some(t.clone())),
            None => (None, None),
        };
        self.client()
            .await?
            .execute(
                "INSERT INTO relay_devices (device, push_kind, push_token) VALUES ($1, $2, $3) \
                 ON CONFLICT (device) DO UPDATE SET push_kind = excluded.push_kind, push_token = excluded.push_token",
                &[&device.as_bytes().to_vec(), &kind, &token],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn touch_device(&self, device: DeviceId, now_ms: i64) -> Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO relay_devices (device, last_seen_ms) VALUES ($1, $2) \
                 ON CONFLICT (device) DO UPDATE SET last_seen_ms = excluded.last_seen_ms",
                &[&device.as_bytes().to_vec(), &now_ms],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn mark_wiped(&self, device: DeviceId, now_ms: i64) -> Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO relay_devices (device, wiped_at_ms) VALUES ($1, $2) \
                 ON CONFLICT (device) DO UPDATE SET wiped_at_ms = excluded.wiped_at_ms",
                &[&device.as_bytes().to_vec(), &now_ms],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn wiped_devices(&self, devices: &[DeviceId]) -> Result<Vec<DeviceId>> {
        let devices: Vec<Vec<u8>> = devices.iter().map(|d| d.as_bytes().to_vec()).collect();
        let (client, statement) = self
            .prepared(
                "SELECT device FROM relay_devices WHERE device = ANY($1) AND wiped_at_ms IS NOT NULL",
            )
            .await?;
        let rows = client.query(&statement, &[&devices]).await.map_err(db)?;
        rows.iter()
            .map(|row| device_of(&row.try_get::<_, Vec<u8>>(0).map_err(db)?))
            .collect()
    }
}

/// Deletes a user's rows inside `tx` (see [`ErasureStore::erase_user`]).
async fn erase_user_tx(
    tx: &deadpool_postgres::Transaction<'_>,
    user_id: &str,
    devices: &[Vec<u8>],
) -> Result<UserRows> {
    let mut erased = UserRows {
        devices: tx
            .execute(
                "DELETE FROM relay_devices WHERE device = ANY($1)",
                &[&devices],
            )
            .await
            .map_err(db)?,
        ..UserRows::default()
    };
    // Queue entries, then the bodies they alone referenced.
    let bodies: Vec<i64> = tx
        .query(
            "DELETE FROM relay_queue WHERE device = ANY($1) RETURNING body_id",
            &[&devices],
        )
        .await
        .map_err(db)?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<std::result::Result<_, _>>()
        .map_err(db)?;
    erased.queued = u64::try_from(bodies.len()).unwrap_or(u64::MAX);
    erased.bodies = drop_orphans(tx, &bodies).await?;
    erased.seen = tx
        .execute("DELETE FROM relay_seen WHERE sender = ANY($1)", &[&devices])
        .await
        .map_err(db)?;
    // Grants are counted here rather than left to the cascade.
    erased.grants = tx
        .execute(
            "DELETE FROM relay_blob_grants WHERE device = ANY($1) \
             OR blob_id IN (SELECT id FROM relay_blobs WHERE owner = ANY($1))",
            &[&devices],
        )
        .await
        .map_err(db)?;
    erased.blobs = tx
        .execute("DELETE FROM relay_blobs WHERE owner = ANY($1)", &[&devices])
        .await
        .map_err(db)?;
    erased.commands = tx
        .execute(
            "DELETE FROM relay_commands WHERE device = ANY($1)",
            &[&devices],
        )
        .await
        .map_err(db)?;
    let groups: Vec<Vec<u8>> = tx
        .query(
            "DELETE FROM relay_group_members WHERE user_id = $1 RETURNING group_id",
            &[&user_id],
        )
        .await
        .map_err(db)?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<std::result::Result<_, _>>()
        .map_err(db)?;
    erased.memberships = u64::try_from(groups.len()).unwrap_or(u64::MAX);
    erased.groups_deleted = tx
        .execute(
            "DELETE FROM relay_groups g WHERE g.id = ANY($1) \
             AND NOT EXISTS (SELECT 1 FROM relay_group_members m WHERE m.group_id = g.id)",
            &[&groups],
        )
        .await
        .map_err(db)?;
    erased.groups_creator_cleared = tx
        .execute(
            "UPDATE relay_groups SET created_by = '' WHERE created_by = $1",
            &[&user_id],
        )
        .await
        .map_err(db)?;
    Ok(erased)
}

impl ErasureStore for PostgresStore {
    async fn erase_user(&self, user_id: &str, devices: &[DeviceId]) -> Result<UserRows> {
        let devices: Vec<Vec<u8>> = devices.iter().map(|d| d.as_bytes().to_vec()).collect();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let erased = erase_user_tx(&tx, user_id, &devices).await?;
        tx.commit().await.map_err(db)?;
        Ok(erased)
    }

    async fn user_rows(&self, user_id: &str, devices: &[DeviceId]) -> Result<UserRows> {
        let devices: Vec<Vec<u8>> = devices.iter().map(|d| d.as_bytes().to_vec()).collect();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let found = erase_user_tx(&tx, user_id, &devices).await?;
        tx.rollback().await.map_err(db)?;
        Ok(found)
    }
}
