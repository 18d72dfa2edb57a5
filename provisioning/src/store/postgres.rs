//! The scale-out store: PostgreSQL through one pipelined tokio-postgres
//! connection, opened again when it has closed (a pool can replace it
//! without changing the traits). All tables live in one schema, chosen at
//! connect time, so tests can use a fresh schema each.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use tokio_postgres::{Client, NoTls, Row, Statement};

use super::sqlite::{
    CERT_COLUMNS, CertRaw, DeviceKeyRaw, KEY_COLUMNS, TOKEN_COLUMNS, TokenRecordRaw,
};
use super::*;
use crate::error::Error;

const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../../migrations/postgres/0001_init.sql"))];

/// The PostgreSQL implementation of every store trait.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// The connection URL (may hold a password: never printed).
    url: String,
    schema: String,
    client: RwLock<Arc<Conn>>,
}

/// The connection and the statements prepared on it: a statement given as
/// text is parsed on every call, one more round trip on the hot lookups
/// (certificate, user) every device request makes.
struct Conn {
    client: Client,
    statements: Mutex<HashMap<String, Statement>>,
}

impl Conn {
    fn new(client: Client) -> Self {
        Self {
            client,
            statements: Mutex::new(HashMap::new()),
        }
    }

    /// `sql`, prepared on this connection once.
    async fn prepared(&self, sql: &str) -> Result<Statement> {
        let lock_error = || Error::Store("postgresql statement cache poisoned".into());
        if let Some(statement) = self.statements.lock().map_err(|_| lock_error())?.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await.map_err(db)?;
        self.statements
            .lock()
            .map_err(|_| lock_error())?
            .insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

impl std::ops::Deref for Conn {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.inner.schema)
            .finish()
    }
}

fn db(e: tokio_postgres::Error) -> Error {
    if unavailable(&e) {
        return Error::Unavailable(e.to_string());
    }
    Error::Store(e.to_string())
}

/// Whether `e` means the database cannot be reached or cannot take writes
/// right now (connection refused or lost, server shutting down or starting,
/// out of disk or connections) rather than a fault of the statement. The
/// relay's PostgreSQL store classifies its errors with the same rule.
pub fn unavailable(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        // 08: connection exception, 53: insufficient resources (disk full,
        // out of memory, too many connections), 57P: shutdown, crash
        // recovery, cannot connect now.
        Some(state) => {
            let code = state.code();
            code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
        }
        // No SQLSTATE: a closed connection, an I/O error or a connect
        // timeout mean the server is out of reach; a row count or type
        // error does not.
        None => {
            e.is_closed()
                || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
                || e.to_string().starts_with("timeout")
        }
    }
}

impl PostgresStore {
    /// Connects to `url`, creates `schema` if needed, and applies migrations
    /// there. `schema` must be a plain identifier (letters, digits, `_`).
    pub async fn connect(url: &str, schema: &str) -> Result<Self> {
        if schema.is_empty()
            || !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            || schema.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(Error::Store("schema must be a plain identifier".into()));
        }
        let mut client = open_client(url, schema).await?;
        let tx = client.transaction().await.map_err(db)?;
        // Serialise concurrent migrators on one lock for this schema.
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS provisioning_migrations (version BIGINT PRIMARY KEY); \
             LOCK TABLE provisioning_migrations IN EXCLUSIVE MODE",
        )
        .await
        .map_err(db)?;
        for (version, sql) in MIGRATIONS {
            let done = tx
                .query_opt(
                    "SELECT 1 FROM provisioning_migrations WHERE version = $1",
                    &[version],
                )
                .await
                .map_err(db)?
                .is_some();
            if !done {
                tx.batch_execute(sql).await.map_err(db)?;
                tx.execute(
                    "INSERT INTO provisioning_migrations (version) VALUES ($1)",
                    &[version],
                )
                .await
                .map_err(db)?;
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                schema: schema.to_owned(),
                client: RwLock::new(Arc::new(Conn::new(client))),
            }),
        })
    }

    /// The connection, opened again if it has closed (server restart,
    /// network cut).
    async fn client(&self) -> Result<Arc<Conn>> {
        let lock_error = || Error::Store("postgresql client lock poisoned".into());
        let current = self.inner.client.read().map_err(|_| lock_error())?.clone();
        if !current.is_closed() {
            return Ok(current);
        }
        tracing::warn!("postgresql connection closed, reconnecting");
        let fresh = Arc::new(Conn::new(
            open_client(&self.inner.url, &self.inner.schema).await?,
        ));
        *self.inner.client.write().map_err(|_| lock_error())? = fresh.clone();
        Ok(fresh)
    }

    /// Drops the schema and everything in it (for tests).
    pub async fn drop_schema(&self) -> Result<()> {
        self.client()
            .await?
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.inner.schema))
            .await
            .map_err(db)
    }
}

/// Opens a connection whose `search_path` is `schema` (created if needed).
async fn open_client(url: &str, schema: &str) -> Result<Client> {
    let mut config: tokio_postgres::Config = url.parse().map_err(db)?;
    // Names the connection in pg_stat_activity, per schema.
    config.application_name(format!("kontor-provisioning/{schema}"));
    // A database that does not answer must not hold a request forever.
    config.connect_timeout(std::time::Duration::from_secs(5));
    let (client, connection) = config.connect(NoTls).await.map_err(db)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!(error = %e, "postgresql connection ended");
        }
    });
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path TO {schema}"
        ))
        .await
        .map_err(db)?;
    Ok(client)
}

fn directory_user(row: &Row) -> Result<DirectoryUser> {
    let status: String = row.try_get(2).map_err(db)?;
    Ok(DirectoryUser {
        user_id: row.try_get(0).map_err(db)?,
        department: row.try_get(1).map_err(db)?,
        status: status_from_db(&status)?,
    })
}

fn token_raw(row: &Row) -> Result<TokenRecordRaw> {
    Ok(TokenRecordRaw {
        id: row.try_get(0).map_err(db)?,
        secret_hash: row.try_get(1).map_err(db)?,
        binding: row.try_get(2).map_err(db)?,
        bound_to: row.try_get(3).map_err(db)?,
        max_uses: row.try_get(4).map_err(db)?,
        uses: row.try_get(5).map_err(db)?,
        created_at: row.try_get(6).map_err(db)?,
        expires_at: row.try_get(7).map_err(db)?,
        revoked_at: row.try_get(8).map_err(db)?,
        label: row.try_get(9).map_err(db)?,
    })
}

fn cert_raw(row: &Row) -> Result<CertRaw> {
    Ok(CertRaw {
        serial: row.try_get(0).map_err(db)?,
        device_id: row.try_get(1).map_err(db)?,
        user_id: row.try_get(2).map_err(db)?,
        issuer_generation: row.try_get(3).map_err(db)?,
        not_before: row.try_get(4).map_err(db)?,
        not_after: row.try_get(5).map_err(db)?,
        der: row.try_get(6).map_err(db)?,
        identity_key: row.try_get(7).map_err(db)?,
        platform: row.try_get(8).map_err(db)?,
        device_name: row.try_get(9).map_err(db)?,
        token_id: row.try_get(10).map_err(db)?,
        renewed_from: row.try_get(11).map_err(db)?,
        issued_at: row.try_get(12).map_err(db)?,
    })
}

/// A row of [`KEY_COLUMNS`].
fn key_raw(row: &Row) -> Result<DeviceKeyRaw> {
    Ok(DeviceKeyRaw {
        serial: row.try_get(0).map_err(db)?,
        device_id: row.try_get(1).map_err(db)?,
        user_id: row.try_get(2).map_err(db)?,
        not_after: row.try_get(3).map_err(db)?,
        identity_key: row.try_get(4).map_err(db)?,
        issued_at: row.try_get(5).map_err(db)?,
    })
}

impl PostgresStore {
    async fn certs_where(
        &self,
        clause: &str,
        value: &(dyn tokio_postgres::types::ToSql + Sync),
    ) -> Result<Vec<CertificateRecord>> {
        let conn = self.client().await?;
        let statement = conn
            .prepared(&format!(
                "SELECT {CERT_COLUMNS} FROM certificates WHERE {clause} ORDER BY issued_at"
            ))
            .await?;
        let rows = conn.query(&statement, &[value]).await.map_err(db)?;
        rows.iter()
            .map(|row| cert_raw(row)?.into_record())
            .collect()
    }
}

impl TokenStore for PostgresStore {
    async fn insert_token(&self, t: &TokenRecord) -> Result<()> {
        let (kind, value) = t.binding.to_parts();
        self.client()
            .await?
            .execute(
                &format!("INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
                &[
                    &t.id,
                    &t.secret_hash.as_slice(),
                    &kind,
                    &value,
                    &i64::from(t.max_uses),
                    &i64::from(t.uses),
                    &t.created_at,
                    &t.expires_at,
                    &t.revoked_at,
                    &t.label,
                ],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRecord>> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(db)?;
        row.map(|row| token_raw(&row)?.into_record()).transpose()
    }

    async fn consume_token(&self, id: &str, now: i64) -> Result<bool> {
        let changed = self
            .client()
            .await?
            .execute(
                "UPDATE tokens SET uses = uses + 1 WHERE id = $1 AND revoked_at IS NULL \
                 AND expires_at > $2 AND uses < max_uses",
                &[&id, &now],
            )
            .await
            .map_err(db)?;
        Ok(changed == 1)
    }

    async fn revoke_token(&self, id: &str, now: i64) -> Result<bool> {
        let changed = self
            .client()
            .await?
            .execute(
                "UPDATE tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
                &[&id, &now],
            )
            .await
            .map_err(db)?;
        Ok(changed == 1)
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        let rows = self
            .client()
            .await?
            .query(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at DESC, id"),
                &[],
            )
            .await
            .map_err(db)?;
        rows.iter()
            .map(|row| token_raw(row)?.into_record())
            .collect()
    }
}

impl CertificateStore for PostgresStore {
    async fn insert_certificate(&self, c: &CertificateRecord) -> Result<()> {
        self.client()
            .await?
            .execute(
                &format!(
                    "INSERT INTO certificates ({CERT_COLUMNS}) VALUES \
                     ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
                ),
                &[
                    &c.serial.to_string(),
                    &c.device_id.to_string(),
                    &c.user_id,
                    &i64::from(c.issuer_generation),
                    &c.not_before,
                    &c.not_after,
                    &c.der,
                    &c.identity_key.as_slice(),
                    &c.platform,
                    &c.device_name,
                    &c.token_id,
                    &c.renewed_from.map(|s| s.to_string()),
                    &c.issued_at,
                ],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn certificate(&self, serial: &CertSerial) -> Result<Option<CertificateRecord>> {
        Ok(self
            .certs_where("serial = $1", &serial.to_string())
            .await?
            .pop())
    }

    async fn certificates_of_device(&self, device: &DeviceId) -> Result<Vec<CertificateRecord>> {
        self.certs_where("device_id = $1", &device.to_string())
            .await
    }

    async fn certificates_of_user(&self, user_id: &str) -> Result<Vec<CertificateRecord>> {
        self.certs_where("user_id = $1", &user_id).await
    }

    async fn device_keys(&self, devices: &[DeviceId]) -> Result<Vec<DeviceKey>> {
        let devices: Vec<String> = devices.iter().map(ToString::to_string).collect();
        let conn = self.client().await?;
        let statement = conn
            .prepared(&format!(
                "SELECT {KEY_COLUMNS} FROM certificates WHERE device_id = ANY($1)"
            ))
            .await?;
        let rows = conn.query(&statement, &[&devices]).await.map_err(db)?;
        rows.iter().map(|row| key_raw(row)?.into_key()).collect()
    }
}

impl RevocationStore for PostgresStore {
    async fn insert_revocation(&self, r: &RevocationRecord) -> Result<bool> {
        let changed = self.client().await?.execute(
                "INSERT INTO revocations (serial, issuer_generation, revoked_at, not_after, reason) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (serial) DO NOTHING",
                &[
                    &r.serial.to_string(),
                    &i64::from(r.issuer_generation),
                    &r.revoked_at,
                    &r.not_after,
                    &r.reason,
                ],
            )
            .await
            .map_err(db)?;
        Ok(changed == 1)
    }

    async fn revocations(&self) -> Result<Vec<RevocationRecord>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT serial, issuer_generation, revoked_at, not_after, reason FROM revocations \
                 ORDER BY revoked_at, serial",
                &[],
            )
            .await
            .map_err(db)?;
        rows.iter()
            .map(|row| {
                let serial: String = row.try_get(0).map_err(db)?;
                let generation: i64 = row.try_get(1).map_err(db)?;
                Ok(RevocationRecord {
                    serial: serial_from_db(&serial)?,
                    issuer_generation: u32::try_from(generation).map_err(Error::store)?,
                    revoked_at: row.try_get(2).map_err(db)?,
                    not_after: row.try_get(3).map_err(db)?,
                    reason: row.try_get(4).map_err(db)?,
                })
            })
            .collect()
    }
}

impl AttemptLog for PostgresStore {
    async fn record_attempt(&self, a: &AttemptRecord) -> Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO enrollment_attempts (at, kind, outcome, token_id, user_id, device_id, serial) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&a.at, &a.kind, &a.outcome, &a.token_id, &a.user_id, &a.device_id, &a.serial],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn attempts(&self) -> Result<Vec<AttemptRecord>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT at, kind, outcome, token_id, user_id, device_id, serial \
                 FROM enrollment_attempts ORDER BY id",
                &[],
            )
            .await
            .map_err(db)?;
        rows.iter()
            .map(|row| {
                Ok(AttemptRecord {
                    at: row.try_get(0).map_err(db)?,
                    kind: row.try_get(1).map_err(db)?,
                    outcome: row.try_get(2).map_err(db)?,
                    token_id: row.try_get(3).map_err(db)?,
                    user_id: row.try_get(4).map_err(db)?,
                    device_id: row.try_get(5).map_err(db)?,
                    serial: row.try_get(6).map_err(db)?,
                })
            })
            .collect()
    }
}

impl UserDirectory for PostgresStore {
    async fn user(&self, user_id: &str) -> Result<Option<DirectoryUser>> {
        let conn = self.client().await?;
        let statement = conn
            .prepared("SELECT user_id, department, status FROM directory_users WHERE user_id = $1")
            .await?;
        let row = conn.query_opt(&statement, &[&user_id]).await.map_err(db)?;
        row.as_ref().map(directory_user).transpose()
    }

    async fn users(&self, user_ids: &[String]) -> Result<Vec<DirectoryUser>> {
        let conn = self.client().await?;
        let statement = conn
            .prepared(
                "SELECT user_id, department, status FROM directory_users WHERE user_id = ANY($1)",
            )
            .await?;
        let rows = conn.query(&statement, &[&user_ids]).await.map_err(db)?;
        rows.iter().map(directory_user).collect()
    }

    async fn put_user(&self, u: &DirectoryUser) -> Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO directory_users (user_id, department, status) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_id) DO UPDATE SET department = excluded.department, status = excluded.status",
                &[&u.user_id, &u.department, &status_to_db(u.status)],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn allow_list_contains(&self, entry: &str) -> Result<bool> {
        Ok(self
            .client()
            .await?
            .query_opt("SELECT 1 FROM allow_list WHERE entry = $1", &[&entry])
            .await
            .map_err(db)?
            .is_some())
    }

    async fn add_allow_list_entry(&self, entry: &str) -> Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO allow_list (entry) VALUES ($1) ON CONFLICT (entry) DO NOTHING",
                &[&entry],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn remove_allow_list_entry(&self, entry: &str) -> Result<()> {
        self.client()
            .await?
            .execute("DELETE FROM allow_list WHERE entry = $1", &[&entry])
            .await
            .map_err(db)?;
        Ok(())
    }
}

impl ErasureStore for PostgresStore {
    async fn erase_user(&self, user_id: &str) -> Result<Erased> {
        // One statement, so one transaction on the shared, pipelined
        // connection (a BEGIN there would take in other callers' queries).
        // Every part sees the snapshot from before the deletes, so the
        // attempts still find the certificates and tokens that go with
        // them.
        let row = self
            .client()
            .await?
            .query_one(
                "WITH certs AS (SELECT serial, device_id FROM certificates WHERE user_id = $1), \
                 toks AS (SELECT id FROM tokens WHERE binding = 'user' AND bound_to = $1), \
                 a AS (DELETE FROM enrollment_attempts WHERE user_id = $1 \
                     OR device_id IN (SELECT device_id FROM certs) \
                     OR serial IN (SELECT serial FROM certs) \
                     OR token_id IN (SELECT id FROM toks) RETURNING 1), \
                 c AS (DELETE FROM certificates WHERE user_id = $1 RETURNING 1), \
                 t AS (DELETE FROM tokens WHERE binding = 'user' AND bound_to = $1 RETURNING 1), \
                 d AS (DELETE FROM directory_users WHERE user_id = $1 RETURNING 1), \
                 l AS (DELETE FROM allow_list WHERE entry = $1 RETURNING 1) \
                 SELECT (SELECT count(*) FROM c), (SELECT count(*) FROM t), \
                 (SELECT count(*) FROM a), (SELECT count(*) FROM d), (SELECT count(*) FROM l)",
                &[&user_id],
            )
            .await
            .map_err(db)?;
        let count = |i: usize| -> Result<u64> {
            let n: i64 = row.try_get(i).map_err(db)?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        Ok(Erased {
            certificates: count(0)?,
            tokens: count(1)?,
            attempts: count(2)?,
            directory: count(3)?,
            allow_list: count(4)?,
        })
    }
}
