//! The embedded store: one SQLite file in WAL mode, behind a mutex; every
//! call runs on tokio's blocking pool.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::*;
use crate::error::Error;

const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../../migrations/sqlite/0001_init.sql"))];

/// The SQLite implementation of every store trait.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

fn db(e: rusqlite::Error) -> Error {
    // A full disk is the operator's to fix and the client's to retry, not
    // an internal fault.
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
        return Error::Unavailable(e.to_string());
    }
    Error::Store(e.to_string())
}

/// How many point lookups [`SqliteStore::lookups`] runs on the calling task.
const INLINE_LOOKUPS_MAX: usize = 8;

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(db)?;
        Self::init(conn)
    }

    /// An in-memory database, for tests.
    pub fn in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory().map_err(db)?)
    }

    fn init(mut conn: Connection) -> Result<Self> {
        // SQLite's query planner stability guarantee: without it SQLite
        // 3.54 compiled the certificate lookup by device again on every
        // execution (it marks some statements for a new plan whenever a
        // value is bound), 8% of the relay's CPU in the group workload.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )
        .map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db)?;
        let tx = conn.transaction().map_err(db)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS provisioning_migrations (version INTEGER PRIMARY KEY)",
        )
        .map_err(db)?;
        for (version, sql) in MIGRATIONS {
            let done: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM provisioning_migrations WHERE version = ?1)",
                    [version],
                    |row| row.get(0),
                )
                .map_err(db)?;
            if !done {
                tx.execute_batch(sql).map_err(db)?;
                tx.execute(
                    "INSERT INTO provisioning_migrations (version) VALUES (?1)",
                    [version],
                )
                .map_err(db)?;
            }
        }
        tx.commit().map_err(db)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn call<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let guard = conn
                .lock()
                .map_err(|_| Error::Store("sqlite mutex poisoned".into()))?;
            f(&guard)
        })
        .await
        .map_err(|e| Error::Store(e.to_string()))?
    }

    /// A point lookup (one row by its key, microseconds): runs at once on
    /// the calling task when the connection is free, and only otherwise on
    /// the blocking pool. Every authenticated request makes a few of these;
    /// a trip through the pool each cost more than the lookup itself.
    async fn lookup<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        if let Ok(guard) = self.conn.try_lock() {
            return f(&guard);
        }
        self.call(f).await
    }

    /// `n` point lookups in one hold of the connection: on the calling task
    /// as [`SqliteStore::lookup`] when they are few, on the blocking pool
    /// when they are many (a message may name a thousand recipients).
    async fn lookups<R, F>(&self, n: usize, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        if n <= INLINE_LOOKUPS_MAX {
            self.lookup(f).await
        } else {
            self.call(f).await
        }
    }
}

fn token_from_row(row: &Row<'_>) -> rusqlite::Result<(TokenRecordRaw,)> {
    Ok((TokenRecordRaw {
        id: row.get(0)?,
        secret_hash: row.get(1)?,
        binding: row.get(2)?,
        bound_to: row.get(3)?,
        max_uses: row.get(4)?,
        uses: row.get(5)?,
        created_at: row.get(6)?,
        expires_at: row.get(7)?,
        revoked_at: row.get(8)?,
        label: row.get(9)?,
    },))
}

pub(super) struct TokenRecordRaw {
    pub id: String,
    pub secret_hash: Vec<u8>,
    pub binding: String,
    pub bound_to: String,
    pub max_uses: i64,
    pub uses: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub label: String,
}

impl TokenRecordRaw {
    pub fn into_record(self) -> Result<TokenRecord> {
        Ok(TokenRecord {
            id: self.id,
            secret_hash: key32_from_db(&self.secret_hash)?,
            binding: TokenBinding::from_parts(&self.binding, self.bound_to)
                .ok_or_else(|| Error::Store("bad token binding in store".into()))?,
            max_uses: u32::try_from(self.max_uses).map_err(Error::store)?,
            uses: u32::try_from(self.uses).map_err(Error::store)?,
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            label: self.label,
        })
    }
}

pub(super) struct CertRaw {
    pub serial: String,
    pub device_id: String,
    pub user_id: String,
    pub issuer_generation: i64,
    pub not_before: i64,
    pub not_after: i64,
    pub der: Vec<u8>,
    pub identity_key: Vec<u8>,
    pub platform: String,
    pub device_name: String,
    pub token_id: Option<String>,
    pub renewed_from: Option<String>,
    pub issued_at: i64,
}

impl CertRaw {
    pub fn into_record(self) -> Result<CertificateRecord> {
        Ok(CertificateRecord {
            serial: serial_from_db(&self.serial)?,
            device_id: device_from_db(&self.device_id)?,
            user_id: self.user_id,
            issuer_generation: u32::try_from(self.issuer_generation).map_err(Error::store)?,
            not_before: self.not_before,
            not_after: self.not_after,
            der: self.der,
            identity_key: key32_from_db(&self.identity_key)?,
            platform: self.platform,
            device_name: self.device_name,
            token_id: self.token_id,
            renewed_from: self
                .renewed_from
                .as_deref()
                .map(serial_from_db)
                .transpose()?,
            issued_at: self.issued_at,
        })
    }
}

pub(super) const CERT_COLUMNS: &str = "serial, device_id, user_id, issuer_generation, not_before, \
     not_after, der, identity_key, platform, device_name, token_id, renewed_from, issued_at";
/// The columns of a [`DeviceKey`], in [`DeviceKeyRaw`]'s order.
pub(super) const KEY_COLUMNS: &str =
    "serial, device_id, user_id, not_after, identity_key, issued_at";
pub(super) const TOKEN_COLUMNS: &str =
    "id, secret_hash, binding, bound_to, max_uses, uses, created_at, expires_at, revoked_at, label";

fn cert_from_row(row: &Row<'_>) -> rusqlite::Result<CertRaw> {
    Ok(CertRaw {
        serial: row.get(0)?,
        device_id: row.get(1)?,
        user_id: row.get(2)?,
        issuer_generation: row.get(3)?,
        not_before: row.get(4)?,
        not_after: row.get(5)?,
        der: row.get(6)?,
        identity_key: row.get(7)?,
        platform: row.get(8)?,
        device_name: row.get(9)?,
        token_id: row.get(10)?,
        renewed_from: row.get(11)?,
        issued_at: row.get(12)?,
    })
}

/// A [`DeviceKey`] as read, before its serial, device and key are checked.
pub(super) struct DeviceKeyRaw {
    pub serial: String,
    pub device_id: String,
    pub user_id: String,
    pub not_after: i64,
    pub identity_key: Vec<u8>,
    pub issued_at: i64,
}

impl DeviceKeyRaw {
    pub fn into_key(self) -> Result<DeviceKey> {
        Ok(DeviceKey {
            serial: serial_from_db(&self.serial)?,
            device_id: device_from_db(&self.device_id)?,
            user_id: self.user_id,
            not_after: self.not_after,
            identity_key: key32_from_db(&self.identity_key)?,
            issued_at: self.issued_at,
        })
    }
}

fn key_from_row(row: &Row<'_>) -> rusqlite::Result<DeviceKeyRaw> {
    Ok(DeviceKeyRaw {
        serial: row.get(0)?,
        device_id: row.get(1)?,
        user_id: row.get(2)?,
        not_after: row.get(3)?,
        identity_key: row.get(4)?,
        issued_at: row.get(5)?,
    })
}

/// One directory user by id.
fn user_row(conn: &Connection, id: String) -> Result<Option<DirectoryUser>> {
    let row = conn
        .prepare_cached(
            "SELECT user_id, department, status FROM directory_users WHERE user_id = ?1",
        )
        .map_err(db)?
        .query_row([id], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, Option<String>>(1)?,
                row.get::<_, String>(2)?,
            ))
        })
        .optional()
        .map_err(db)?;
    row.map(|(user_id, department, status)| {
        Ok(DirectoryUser {
            user_id,
            department,
            status: status_from_db(&status)?,
        })
    })
    .transpose()
}

/// The one statement [`SqliteStore::device_keys`] runs per device.
fn device_keys_sql() -> String {
    format!("SELECT {KEY_COLUMNS} FROM certificates WHERE device_id = ?1")
}

fn certs_where_sql(clause: &str) -> String {
    format!("SELECT {CERT_COLUMNS} FROM certificates WHERE {clause} ORDER BY issued_at")
}

fn certs_where(conn: &Connection, clause: &str, value: String) -> Result<Vec<CertificateRecord>> {
    let mut stmt = conn.prepare_cached(&certs_where_sql(clause)).map_err(db)?;
    let rows = stmt.query_map([value], cert_from_row).map_err(db)?;
    rows.map(|r| r.map_err(db)?.into_record()).collect()
}

impl TokenStore for SqliteStore {
    async fn insert_token(&self, token: &TokenRecord) -> Result<()> {
        let t = token.clone();
        self.call(move |conn| {
            let (kind, value) = t.binding.to_parts();
            conn.execute(
                &format!("INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
                params![
                    t.id,
                    t.secret_hash.as_slice(),
                    kind,
                    value,
                    i64::from(t.max_uses),
                    i64::from(t.uses),
                    t.created_at,
                    t.expires_at,
                    t.revoked_at,
                    t.label
                ],
            )
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRecord>> {
        let id = id.to_owned();
        self.call(move |conn| {
            conn.query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"),
                [id],
                token_from_row,
            )
            .optional()
            .map_err(db)?
            .map(|(raw,)| raw.into_record())
            .transpose()
        })
        .await
    }

    async fn consume_token(&self, id: &str, now: i64) -> Result<bool> {
        let id = id.to_owned();
        self.call(move |conn| {
            let changed = conn
                .execute(
                    "UPDATE tokens SET uses = uses + 1 WHERE id = ?1 AND revoked_at IS NULL \
                     AND expires_at > ?2 AND uses < max_uses",
                    params![id, now],
                )
                .map_err(db)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn revoke_token(&self, id: &str, now: i64) -> Result<bool> {
        let id = id.to_owned();
        self.call(move |conn| {
            let changed = conn
                .execute(
                    "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
                    params![id, now],
                )
                .map_err(db)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        self.call(|conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at DESC, id"
                ))
                .map_err(db)?;
            let rows = stmt.query_map([], token_from_row).map_err(db)?;
            rows.map(|r| r.map_err(db)?.0.into_record()).collect()
        })
        .await
    }
}

impl CertificateStore for SqliteStore {
    async fn insert_certificate(&self, cert: &CertificateRecord) -> Result<()> {
        let c = cert.clone();
        self.call(move |conn| {
            conn.execute(
                &format!(
                    "INSERT INTO certificates ({CERT_COLUMNS}) VALUES \
                     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
                ),
                params![
                    c.serial.to_string(),
                    c.device_id.to_string(),
                    c.user_id,
                    i64::from(c.issuer_generation),
                    c.not_before,
                    c.not_after,
                    c.der,
                    c.identity_key.as_slice(),
                    c.platform,
                    c.device_name,
                    c.token_id,
                    c.renewed_from.map(|s| s.to_string()),
                    c.issued_at
                ],
            )
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn certificate(&self, serial: &CertSerial) -> Result<Option<CertificateRecord>> {
        let serial = serial.to_string();
        self.lookup(move |conn| Ok(certs_where(conn, "serial = ?1", serial)?.pop()))
            .await
    }

    async fn certificates_of_device(&self, device: &DeviceId) -> Result<Vec<CertificateRecord>> {
        let device = device.to_string();
        self.lookup(move |conn| certs_where(conn, "device_id = ?1", device))
            .await
    }

    async fn certificates_of_user(&self, user_id: &str) -> Result<Vec<CertificateRecord>> {
        let user = user_id.to_owned();
        self.call(move |conn| certs_where(conn, "user_id = ?1", user))
            .await
    }

    async fn device_keys(&self, devices: &[DeviceId]) -> Result<Vec<DeviceKey>> {
        // One statement run per device under one hold of the connection:
        // as fast as an IN list here, without building SQL per count.
        let devices = devices.to_vec();
        self.lookups(devices.len(), move |conn| {
            let mut stmt = conn.prepare_cached(&device_keys_sql()).map_err(db)?;
            let mut out = Vec::new();
            for device in devices {
                let rows = stmt
                    .query_map([device.to_string()], key_from_row)
                    .map_err(db)?;
                for row in rows {
                    out.push(row.map_err(db)?.into_key()?);
                }
            }
            Ok(out)
        })
        .await
    }
}

impl RevocationStore for SqliteStore {
    async fn insert_revocation(&self, revocation: &RevocationRecord) -> Result<bool> {
        let r = revocation.clone();
        self.call(move |conn| {
            let changed = conn
                .execute(
                    "INSERT INTO revocations (serial, issuer_generation, revoked_at, not_after, reason) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (serial) DO NOTHING",
                    params![
                        r.serial.to_string(),
                        i64::from(r.issuer_generation),
                        r.revoked_at,
                        r.not_after,
                        r.reason
                    ],
                )
                .map_err(db)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn revocations(&self) -> Result<Vec<RevocationRecord>> {
        self.call(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT serial, issuer_generation, revoked_at, not_after, reason FROM revocations \
                     ORDER BY revoked_at, serial",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map([], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get(2)?,
                        row.get(3)?,
                        row.get(4)?,
                    ))
                })
                .map_err(db)?;
            rows.map(|r| {
                let (serial, generation, revoked_at, not_after, reason) = r.map_err(db)?;
                Ok(RevocationRecord {
                    serial: serial_from_db(&serial)?,
                    issuer_generation: u32::try_from(generation).map_err(Error::store)?,
                    revoked_at,
                    not_after,
                    reason,
                })
            })
            .collect()
        })
        .await
    }
}

impl AttemptLog for SqliteStore {
    async fn record_attempt(&self, attempt: &AttemptRecord) -> Result<()> {
        let a = attempt.clone();
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO enrollment_attempts (at, kind, outcome, token_id, user_id, device_id, serial) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![a.at, a.kind, a.outcome, a.token_id, a.user_id, a.device_id, a.serial],
            )
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn attempts(&self) -> Result<Vec<AttemptRecord>> {
        self.call(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT at, kind, outcome, token_id, user_id, device_id, serial \
                     FROM enrollment_attempts ORDER BY id",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map([], |row| {
                    Ok(AttemptRecord {
                        at: row.get(0)?,
                        kind: row.get(1)?,
                        outcome: row.get(2)?,
                        token_id: row.get(3)?,
                        user_id: row.get(4)?,
                        device_id: row.get(5)?,
                        serial: row.get(6)?,
                    })
                })
                .map_err(db)?;
            rows.map(|r| r.map_err(db)).collect()
        })
        .await
    }
}

impl UserDirectory for SqliteStore {
    async fn user(&self, user_id: &str) -> Result<Option<DirectoryUser>> {
        let id = user_id.to_owned();
        self.lookup(move |conn| user_row(conn, id)).await
    }

    async fn users(&self, user_ids: &[String]) -> Result<Vec<DirectoryUser>> {
        let ids = user_ids.to_vec();
        self.lookups(ids.len(), move |conn| {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                out.extend(user_row(conn, id)?);
            }
            Ok(out)
        })
        .await
    }

    async fn put_user(&self, user: &DirectoryUser) -> Result<()> {
        let u = user.clone();
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO directory_users (user_id, department, status) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (user_id) DO UPDATE SET department = excluded.department, status = excluded.status",
                params![u.user_id, u.department, status_to_db(u.status)],
            )
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn allow_list_contains(&self, entry: &str) -> Result<bool> {
        let entry = entry.to_owned();
        self.lookup(move |conn| {
            conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM allow_list WHERE entry = ?1)",
                [entry],
                |row| row.get(0),
            )
            .map_err(db)
        })
        .await
    }

    async fn add_allow_list_entry(&self, entry: &str) -> Result<()> {
        let entry = entry.to_owned();
        self.call(move |conn| {
            conn.execute(
                "INSERT INTO allow_list (entry) VALUES (?1) ON CONFLICT (entry) DO NOTHING",
                [entry],
            )
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn remove_allow_list_entry(&self, entry: &str) -> Result<()> {
        let entry = entry.to_owned();
        self.call(move |conn| {
            conn.execute("DELETE FROM allow_list WHERE entry = ?1", [entry])
                .map_err(db)?;
            Ok(())
        })
        .await
    }
}

/// The text values one query over `conn` returns in its first column.
fn erasure_texts(conn: &Connection, sql: &str, user_id: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare(sql).map_err(db)?;
    let rows = stmt.query_map([user_id], |row| row.get(0)).map_err(db)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db)
}

/// Rows changed by one statement, as the erasure counts them.
fn erased_rows(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl ErasureStore for SqliteStore {
    async fn erase_user(&self, user_id: &str) -> Result<Erased> {
        let user = user_id.to_owned();
        self.call(move |conn| {
            // The write lock from the start: no enrollment slips a row in
            // between the reads and the deletes.
            let tx = rusqlite::Transaction::new_unchecked(
                conn,
                rusqlite::TransactionBehavior::Immediate,
            )
            .map_err(db)?;
            let devices = erasure_texts(
                &tx,
                "SELECT DISTINCT device_id FROM certificates WHERE user_id = ?1",
                &user,
            )?;
            let serials = erasure_texts(
                &tx,
                "SELECT serial FROM certificates WHERE user_id = ?1",
                &user,
            )?;
            let tokens = erasure_texts(
                &tx,
                "SELECT id FROM tokens WHERE binding = 'user' AND bound_to = ?1",
                &user,
            )?;
            let mut erased = Erased {
                attempts: erased_rows(
                    tx.execute(
                        "DELETE FROM enrollment_attempts WHERE user_id = ?1",
                        [&user],
                    )
                    .map_err(db)?,
                ),
                ..Erased::default()
            };
            for (column, values) in [
                ("device_id", &devices),
                ("serial", &serials),
                ("token_id", &tokens),
            ] {
                let mut delete = tx
                    .prepare(&format!(
                        "DELETE FROM enrollment_attempts WHERE {column} = ?1"
                    ))
                    .map_err(db)?;
                for value in values {
                    erased.attempts += erased_rows(delete.execute([value]).map_err(db)?);
                }
            }
            erased.certificates = erased_rows(
                tx.execute("DELETE FROM certificates WHERE user_id = ?1", [&user])
                    .map_err(db)?,
            );
            erased.tokens = erased_rows(
                tx.execute(
                    "DELETE FROM tokens WHERE binding = 'user' AND bound_to = ?1",
                    [&user],
                )
                .map_err(db)?,
            );
            erased.directory = erased_rows(
                tx.execute("DELETE FROM directory_users WHERE user_id = ?1", [&user])
                    .map_err(db)?,
            );
            erased.allow_list = erased_rows(
                tx.execute("DELETE FROM allow_list WHERE entry = ?1", [&user])
                    .map_err(db)?,
            );
            tx.commit().map_err(db)?;
            Ok(erased)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;

    use super::*;

    /// A certificate lookup run again is not compiled again.
    #[tokio::test]
    async fn a_lookup_run_again_does_not_compile_its_statement_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("p.sqlite")).unwrap();
        for n in 0..5u8 {
            let device = DeviceId::from_bytes([n; 16]);
            store.certificates_of_device(&device).await.unwrap();
            store.device_keys(&[device]).await.unwrap();
        }
        let conn = store.conn.lock().unwrap();
        let statement = conn
            .prepare_cached(&certs_where_sql("device_id = ?1"))
            .unwrap();
        assert_eq!(statement.get_status(StatementStatus::RePrepare), 0);
        let statement = conn.prepare_cached(&device_keys_sql()).unwrap();
        assert_eq!(statement.get_status(StatementStatus::RePrepare), 0);
    }
}
