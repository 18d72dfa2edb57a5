//! A persisted outbox of calls to MDM servers: what Kontor wants an MDM to
//! do is first committed to SQLite, then delivered by a [`Deliverer`] with
//! retries, exponential backoff and an idempotency key per entry, so nothing
//! enqueued is lost when the MDM is down or Kontor restarts.
//!
//! The table `mdm_outbox` ([`SCHEMA_SQL`]) lives in a database file shared
//! with other components; the outbox creates it if missing and never reads
//! or writes any other table. Every write is one transaction.
//!
//! An entry is `pending` until an answer settles it: `done` (2xx), or
//! `dead` (a 4xx other than 408/429, or too many attempts). Dead entries are
//! kept and listed, and [`Outbox::requeue`] gives one another chance.
//! Delivery is at least once: a crash between sending and recording sends
//! again after the claim lease, which is what the idempotency key is for.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::Notify;

/// The outbox's only table, created with `IF NOT EXISTS`.
pub const SCHEMA_SQL: &str = "\
CREATE TABLE IF NOT EXISTS mdm_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    target          TEXT    NOT NULL,
    method          TEXT    NOT NULL,
    url_path        TEXT    NOT NULL,
    content_type    TEXT    NOT NULL,
    body            BLOB    NOT NULL,
    idempotency_key TEXT    NOT NULL UNIQUE,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'done', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    answer          BLOB
);
CREATE INDEX IF NOT EXISTS mdm_outbox_due ON mdm_outbox (state, next_attempt_ms);
";

/// What went wrong in the outbox.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite failed.
    #[error("outbox database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// The body is over the configured limit.
    #[error("outbox body is too large ({size} bytes, limit {limit})")]
    BodyTooLarge {
        /// Size of the refused body.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Too many pending entries.
    #[error("the outbox is full ({limit} pending entries)")]
    Full {
        /// The limit.
        limit: usize,
    },
    /// A field of a new entry is malformed.
    #[error("invalid outbox {what}: {why}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// Why.
        why: &'static str,
    },
    /// No entry with this id.
    #[error("no outbox entry {0}")]
    NotFound(i64),
    /// A stored row does not decode (edited by hand?).
    #[error("outbox row {id} is corrupt: {why}")]
    Corrupt {
        /// The row.
        id: i64,
        /// Which field.
        why: &'static str,
    },
    /// The connection lock was poisoned by a panic elsewhere.
    #[error("outbox lock poisoned")]
    Poisoned,
    /// A blocking database task failed to run.
    #[error("outbox task failed: {0}")]
    Task(String),
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An entry's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId(pub i64);

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// HTTP methods the MDM APIs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET (NanoMDM's push).
    Get,
    /// PUT (NanoMDM's enqueue).
    Put,
    /// POST (AMAPI's issueCommand, enrollmentTokens).
    Post,
    /// PATCH (AMAPI's policies).
    Patch,
    /// DELETE.
    Delete,
}

impl Method {
    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "GET" => Method::Get,
            "PUT" => Method::Put,
            "POST" => Method::Post,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => return None,
        })
    }
}

/// Where an entry is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryState {
    /// Waiting to be (re)sent.
    Pending,
    /// Answered with 2xx.
    Done,
    /// Given up: kept for inspection and [`Outbox::requeue`].
    Dead,
}

impl EntryState {
    /// The state as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryState::Pending => "pending",
            EntryState::Done => "done",
            EntryState::Dead => "dead",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => EntryState::Pending,
            "done" => EntryState::Done,
            "dead" => EntryState::Dead,
            _ => return None,
        })
    }
}

/// A request to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// Which configured MDM it goes to (the [`Deliverer`]'s route name),
    /// `[a-z0-9._-]`, at most 64 bytes.
    pub target: String,
    /// The HTTP method.
    pub method: Method,
    /// Path and query below the MDM's base URL, starting with `/`.
    pub url_path: String,
    /// The body's media type.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
    /// Unique per intended effect; a repeat enqueues nothing. Sent as the
    /// `Idempotency-Key` header.
    pub idempotency_key: String,
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its id.
    pub id: EntryId,
    /// The route name.
    pub target: String,
    /// The HTTP method.
    pub method: Method,
    /// Path and query below the MDM's base URL.
    pub url_path: String,
    /// The body's media type.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
    /// The idempotency key.
    pub idempotency_key: String,
    /// Pending, done or dead.
    pub state: EntryState,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not to be sent before this.
    pub next_attempt: OffsetDateTime,
    /// When it was enqueued.
    pub created: OffsetDateTime,
    /// When it last changed.
    pub updated: OffsetDateTime,
    /// The last HTTP status received, if any.
    pub last_status: Option<u16>,
    /// The last error (no secrets: status, reason, or the MDM's message).
    pub last_error: Option<String>,
    /// The answer body of the settling response (truncated to the limit).
    pub answer: Option<Vec<u8>>,
}

/// Limits and backoff.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// Attempts after which an entry is dead.
    pub max_attempts: u32,
    /// Delay before the first retry (doubled per attempt, with jitter).
    pub backoff_base: Duration,
    /// Longest delay between attempts.
    pub backoff_max: Duration,
    /// Longest `Retry-After` honoured.
    pub retry_after_max: Duration,
    /// Largest body accepted.
    pub body_bytes_max: usize,
    /// Longest answer body kept.
    pub answer_bytes_max: usize,
    /// Most pending entries.
    pub pending_max: usize,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            // 2 s, 4 s, ... capped at 1 h: about seven hours in all.
            max_attempts: 18,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(3600),
            retry_after_max: Duration::from_secs(24 * 3600),
            body_bytes_max: 1024 * 1024,
            answer_bytes_max: 64 * 1024,
            pending_max: 100_000,
        }
    }
}

/// What [`Outbox::list`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFilter {
    /// Only entries in this state.
    pub state: Option<EntryState>,
    /// Only entries for this route.
    pub target: Option<String>,
    /// At most this many (capped at 1000), oldest first.
    pub limit: usize,
}

impl Default for ListFilter {
    fn default() -> Self {
        Self {
            state: None,
            target: None,
            limit: 100,
        }
    }
}

/// A failed attempt, as recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong.
    pub error: String,
    /// The HTTP status, if there was an answer.
    pub status: Option<u16>,
    /// The answer body, if any.
    pub answer: Option<Vec<u8>>,
    /// The server's `Retry-After`, if any.
    pub retry_after: Option<Duration>,
}

/// The outbox: one SQLite connection behind a mutex.
pub struct Outbox {
    conn: Mutex<Connection>,
    config: OutboxConfig,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

fn to_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The delay before attempt `attempts + 1` of entry `id`:
/// `base · 2^attempts`, capped, then scaled into `[½, 1]` of itself by a
/// jitter derived from the id and attempt. Deterministic, so schedules can
/// be tested, yet entries that failed together spread out.
pub fn backoff(id: EntryId, attempts: u32, config: &OutboxConfig) -> Duration {
    let factor = 1u64.checked_shl(attempts.min(40)).unwrap_or(u64::MAX);
    let base_ms = u64::try_from(config.backoff_base.as_millis()).unwrap_or(u64::MAX);
    let max_ms = u64::try_from(config.backoff_max.as_millis()).unwrap_or(u64::MAX);
    let delay_ms = base_ms.saturating_mul(factor).min(max_ms);
    let digest = Sha256::new()
        .chain_update(b"kontor-outbox-jitter")
        .chain_update(id.0.to_le_bytes())
        .chain_update(attempts.to_le_bytes())
        .finalize();
    let mut first = [0u8; 2];
    first.copy_from_slice(&digest[..2]);
    let jitter = u64::from(u16::from_le_bytes(first)); // 0..=65535
    let half = delay_ms / 2;
    Duration::from_millis(half + (delay_ms - half) * jitter / 65_535)
}

fn check_new(entry: &NewEntry, config: &OutboxConfig) -> Result<()> {
    let invalid = |what, why| Err(Error::Invalid { what, why });
    if entry.target.is_empty()
        || entry.target.len() > 64
        || !entry
            .target
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    {
        return invalid("target", "must be 1 to 64 of [a-z0-9._-]");
    }
    if !entry.url_path.starts_with('/')
        || entry.url_path.len() > 2048
        || !entry.url_path.bytes().all(|b| b.is_ascii_graphic())
    {
        return invalid("url path", "must start with / and be printable ascii");
    }
    if entry.content_type.len() > 128
        || !entry
            .content_type
            .bytes()
            .all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return invalid("content type", "must be printable ascii");
    }
    if entry.idempotency_key.is_empty()
        || entry.idempotency_key.len() > 200
        || !entry.idempotency_key.bytes().all(|b| b.is_ascii_graphic())
    {
        return invalid("idempotency key", "must be 1 to 200 printable ascii bytes");
    }
    if entry.body.len() > config.body_bytes_max {
        return Err(Error::BodyTooLarge {
            size: entry.body.len(),
            limit: config.body_bytes_max,
        });
    }
    Ok(())
}

const COLUMNS: &str = "id, target, method, url_path, content_type, body, idempotency_key, \
    state, attempts, next_attempt_ms, created_ms, updated_ms, last_status, last_error, answer";

fn read_entry(row: &Row<'_>) -> rusqlite::Result<(Entry, Option<&'static str>)> {
    let id: i64 = row.get(0)?;
    let method: String = row.get(2)?;
    let state: String = row.get(7)?;
    let attempts: i64 = row.get(8)?;
    let last_status: Option<i64> = row.get(12)?;
    let mut corrupt = None;
    let entry = Entry {
        id: EntryId(id),
        target: row.get(1)?,
        method: Method::parse(&method).unwrap_or_else(|| {
            corrupt = Some("method");
            Method::Get
        }),
        url_path: row.get(3)?,
        content_type: row.get(4)?,
        body: row.get(5)?,
        idempotency_key: row.get(6)?,
        state: EntryState::parse(&state).unwrap_or_else(|| {
            corrupt = Some("state");
            EntryState::Dead
        }),
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        next_attempt: from_ms(row.get(9)?),
        created: from_ms(row.get(10)?),
        updated: from_ms(row.get(11)?),
        last_status: last_status.and_then(|s| u16::try_from(s).ok()),
        last_error: row.get(13)?,
        answer: row.get(14)?,
    };
    Ok((entry, corrupt))
}

fn collect(rows: Vec<(Entry, Option<&'static str>)>) -> Result<Vec<Entry>> {
    rows.into_iter()
        .map(|(entry, corrupt)| match corrupt {
            Some(why) => Err(Error::Corrupt {
                id: entry.id.0,
                why,
            }),
            None => Ok(entry),
        })
        .collect()
}

impl Outbox {
    /// Opens (or creates) the database file and the outbox table.
    pub fn open(path: &Path, config: OutboxConfig) -> Result<Self> {
        Self::with_connection(Connection::open(path)?, config)
    }

    /// Uses an open connection (for example the deployment's shared file).
    pub fn with_connection(conn: Connection, config: OutboxConfig) -> Result<Self> {
        // Other components write the same file: wait for their locks
        // rather than fail. Journal mode and synchronous are the file
        // owner's choice and are left alone.
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA_SQL)?;
        Ok(Self {
            conn: Mutex::new(conn),
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OutboxConfig {
        &self.config
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>> {
        self.conn.lock().map_err(|_| Error::Poisoned)
    }

    /// Commits a new entry, due at once. A repeated idempotency key returns
    /// the existing entry's id and changes nothing.
    pub fn enqueue(&self, entry: &NewEntry, now: OffsetDateTime) -> Result<EntryId> {
        check_new(entry, &self.config)?;
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing: Option<i64> = tx
            .query_row(
                "SELECT id FROM mdm_outbox WHERE idempotency_key = ?1",
                [&entry.idempotency_key],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(id) = existing {
            return Ok(EntryId(id));
        }
        let pending: i64 = tx.query_row(
            "SELECT COUNT(*) FROM mdm_outbox WHERE state = 'pending'",
            [],
            |row| row.get(0),
        )?;
        if usize::try_from(pending).unwrap_or(usize::MAX) >= self.config.pending_max {
            return Err(Error::Full {
                limit: self.config.pending_max,
            });
        }
        let now_ms = to_ms(now);
        tx.execute(
            "INSERT INTO mdm_outbox (target, method, url_path, content_type, body, \
             idempotency_key, state, attempts, next_attempt_ms, created_ms, updated_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, ?7, ?7, ?7)",
            params![
                entry.target,
                entry.method.as_str(),
                entry.url_path,
                entry.content_type,
                entry.body,
                entry.idempotency_key,
                now_ms
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(EntryId(id))
    }

    /// Pending entries due at `now`, earliest first. Reads only.
    pub fn due(&self, now: OffsetDateTime, limit: usize) -> Result<Vec<Entry>> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM mdm_outbox WHERE state = 'pending' AND next_attempt_ms <= ?1 \
             ORDER BY next_attempt_ms, id LIMIT ?2"
        ))?;
        let rows = stmt
            .query_map(params![to_ms(now), limit_sql(limit)], read_entry)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        collect(rows)
    }

    /// Like [`Outbox::due`], and in the same transaction moves the entries'
    /// next attempt `lease` ahead, so a second deliverer does not take them
    /// and a crash mid-send retries them after the lease.
    pub fn claim(&self, now: OffsetDateTime, limit: usize, lease: Duration) -> Result<Vec<Entry>> {
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let rows = {
            let mut stmt = tx.prepare(&format!(
                "SELECT {COLUMNS} FROM mdm_outbox WHERE state = 'pending' \
                 AND next_attempt_ms <= ?1 ORDER BY next_attempt_ms, id LIMIT ?2"
            ))?;
            stmt.query_map(params![to_ms(now), limit_sql(limit)], read_entry)?
                .collect::<rusqlite::Result<Vec<_>>>()?
        };
        let until = to_ms(now).saturating_add(duration_ms(lease));
        for (entry, _) in &rows {
            tx.execute(
                "UPDATE mdm_outbox SET next_attempt_ms = ?2 WHERE id = ?1",
                params![entry.id.0, until],
            )?;
        }
        tx.commit()?;
        collect(rows)
    }

    /// Records a 2xx answer. Only a pending entry changes.
    pub fn mark_done(
        &self,
        id: EntryId,
        status: u16,
        answer: &[u8],
        now: OffsetDateTime,
    ) -> Result<()> {
        let answer = &answer[..answer.len().min(self.config.answer_bytes_max)];
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE mdm_outbox SET state = 'done', last_status = ?2, answer = ?3, \
             last_error = NULL, updated_ms = ?4 WHERE id = ?1 AND state = 'pending'",
            params![id.0, status, answer, to_ms(now)],
        )?;
        ensure_exists(&tx, id, changed)?;
        tx.commit()?;
        Ok(())
    }

    /// Records a failed attempt that may succeed later (no answer, 5xx,
    /// 408, 429): retried after the backoff, or dead after the last attempt.
    pub fn mark_failed(&self, id: EntryId, error: &str, now: OffsetDateTime) -> Result<EntryState> {
        self.mark_retry(
            id,
            &Failure {
                error: error.to_owned(),
                ..Failure::default()
            },
            now,
        )
    }

    /// Like [`Outbox::mark_failed`] with the answer's status, body and
    /// `Retry-After` (honoured up to `retry_after_max`).
    pub fn mark_retry(
        &self,
        id: EntryId,
        failure: &Failure,
        now: OffsetDateTime,
    ) -> Result<EntryState> {
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row: Option<(i64, String)> = tx
            .query_row(
                "SELECT attempts, state FROM mdm_outbox WHERE id = ?1",
                [id.0],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        let Some((attempts, state)) = row else {
            return Err(Error::NotFound(id.0));
        };
        if state != EntryState::Pending.as_str() {
            // Settled meanwhile (for example requeued and delivered by
            // another deliverer): keep what is there.
            return EntryState::parse(&state).ok_or(Error::Corrupt {
                id: id.0,
                why: "state",
            });
        }
        let attempts = u32::try_from(attempts)
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        let state = if attempts >= self.config.max_attempts {
            EntryState::Dead
        } else {
            EntryState::Pending
        };
        let delay = match failure.retry_after {
            Some(after) => after.min(self.config.retry_after_max),
            None => backoff(id, attempts, &self.config),
        };
        let answer = failure
            .answer
            .as_deref()
            .map(|a| &a[..a.len().min(self.config.answer_bytes_max)]);
        tx.execute(
            "UPDATE mdm_outbox SET state = ?2, attempts = ?3, next_attempt_ms = ?4, \
             last_status = ?5, last_error = ?6, answer = ?7, updated_ms = ?8 WHERE id = ?1",
            params![
                id.0,
                state.as_str(),
                attempts,
                to_ms(now).saturating_add(duration_ms(delay)),
                failure.status,
                truncate(&failure.error),
                answer,
                to_ms(now)
            ],
        )?;
        tx.commit()?;
        Ok(state)
    }

    /// Gives up on a pending entry at once (a 4xx that retrying cannot fix).
    pub fn mark_dead(&self, id: EntryId, failure: &Failure, now: OffsetDateTime) -> Result<()> {
        let answer = failure
            .answer
            .as_deref()
            .map(|a| &a[..a.len().min(self.config.answer_bytes_max)]);
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE mdm_outbox SET state = 'dead', attempts = attempts + 1, last_status = ?2, \
             last_error = ?3, answer = ?4, updated_ms = ?5 WHERE id = ?1 AND state = 'pending'",
            params![
                id.0,
                failure.status,
                truncate(&failure.error),
                answer,
                to_ms(now)
            ],
        )?;
        ensure_exists(&tx, id, changed)?;
        tx.commit()?;
        Ok(())
    }

    /// Makes a dead entry pending again, due at once, attempts reset (after
    /// an operator fixed the cause).
    pub fn requeue(&self, id: EntryId, now: OffsetDateTime) -> Result<()> {
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE mdm_outbox SET state = 'pending', attempts = 0, next_attempt_ms = ?2, \
             updated_ms = ?2 WHERE id = ?1 AND state = 'dead'",
            params![id.0, to_ms(now)],
        )?;
        ensure_exists(&tx, id, changed)?;
        tx.commit()?;
        Ok(())
    }

    /// One entry.
    pub fn get(&self, id: EntryId) -> Result<Option<Entry>> {
        let conn = self.lock()?;
        let row = conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM mdm_outbox WHERE id = ?1"),
                [id.0],
                read_entry,
            )
            .optional()?;
        Ok(collect(row.into_iter().collect())?.pop())
    }

    /// Entries matching `filter`, oldest first.
    pub fn list(&self, filter: &ListFilter) -> Result<Vec<Entry>> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM mdm_outbox WHERE (?1 IS NULL OR state = ?1) \
             AND (?2 IS NULL OR target = ?2) ORDER BY id LIMIT ?3"
        ))?;
        let rows = stmt
            .query_map(
                params![
                    filter.state.map(EntryState::as_str),
                    filter.target,
                    limit_sql(filter.limit.min(1000))
                ],
                read_entry,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        collect(rows)
    }
}

fn limit_sql(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Errors are kept short in the table.
fn truncate(error: &str) -> &str {
    let mut end = error.len().min(1000);
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    &error[..end]
}

/// `changed == 0` means the entry is missing or not in the state the update
/// wanted; only the first is an error (settling twice is harmless).
fn ensure_exists(tx: &rusqlite::Transaction<'_>, id: EntryId, changed: usize) -> Result<()> {
    if changed > 0 {
        return Ok(());
    }
    let exists: Option<i64> = tx
        .query_row("SELECT id FROM mdm_outbox WHERE id = ?1", [id.0], |row| {
            row.get(0)
        })
        .optional()?;
    match exists {
        Some(_) => Ok(()),
        None => Err(Error::NotFound(id.0)),
    }
}

// ---------------------------------------------------------------------------
// Delivery.

/// A boxed future, so [`Transport`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What one attempt to send an entry gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The server answered.
    Answered {
        /// HTTP status.
        status: u16,
        /// Its `Retry-After`, if any.
        retry_after: Option<Duration>,
        /// The body (the transport limits its size).
        body: Vec<u8>,
    },
    /// No answer: connection refused or reset, timeout, TLS failure, or the
    /// transport could not even build the request (no token, say).
    Failed {
        /// Why (never a secret).
        error: String,
    },
}

/// Sends an entry to its MDM. Implemented by the clients in
/// [`crate::clients`]; each request carries the entry's idempotency key.
pub trait Transport: Send + Sync {
    /// Sends one entry and reports what happened. Never panics on a bad
    /// answer; every outcome is a [`Delivery`].
    fn send<'a>(&'a self, entry: &'a Entry) -> BoxFuture<'a, Delivery>;
}

/// What to do with an entry after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: done.
    Done,
    /// Worth another attempt: no answer, 5xx, 408, 429.
    Retry,
    /// Retrying cannot help: any other status (4xx, and 1xx/3xx since the
    /// clients follow no redirects).
    Dead,
}

/// The rule that maps an attempt to a [`Verdict`].
pub fn classify(delivery: &Delivery) -> Verdict {
    match delivery {
        Delivery::Failed { .. } => Verdict::Retry,
        Delivery::Answered { status, .. } => match status {
            200..=299 => Verdict::Done,
            408 | 429 | 500..=599 => Verdict::Retry,
            _ => Verdict::Dead,
        },
    }
}

/// How the deliverer works.
#[derive(Debug, Clone)]
pub struct DelivererConfig {
    /// Entries taken per round.
    pub batch: usize,
    /// Sleep when nothing is due (a [`Deliverer::waker`] cuts it short).
    pub idle: Duration,
    /// How long a taken entry is reserved (longer than any send timeout).
    pub lease: Duration,
}

impl Default for DelivererConfig {
    fn default() -> Self {
        Self {
            batch: 32,
            idle: Duration::from_secs(2),
            lease: Duration::from_secs(300),
        }
    }
}

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Entries taken.
    pub taken: usize,
    /// Settled as done.
    pub done: usize,
    /// Scheduled for another attempt.
    pub retried: usize,
    /// Given up.
    pub dead: usize,
}

/// Takes due entries, sends each through the transport of its target and
/// records the outcome.
pub struct Deliverer {
    outbox: Arc<Outbox>,
    routes: HashMap<String, Arc<dyn Transport>>,
    config: DelivererConfig,
    wake: Arc<Notify>,
}

impl Deliverer {
    /// A deliverer with no routes yet.
    pub fn new(outbox: Arc<Outbox>, config: DelivererConfig) -> Self {
        Self {
            outbox,
            routes: HashMap::new(),
            config,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Sends entries whose `target` is `target` through `transport`.
    pub fn route(mut self, target: &str, transport: Arc<dyn Transport>) -> Self {
        self.routes.insert(target.to_owned(), transport);
        self
    }

    /// Notify this after enqueueing to deliver without waiting for the
    /// idle interval.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// One round at `now`: takes up to `batch` due entries and sends them
    /// one after the other (an MDM is not helped by bursts).
    pub async fn run_once(&self, now: OffsetDateTime) -> Result<RoundReport> {
        let (batch, lease) = (self.config.batch, self.config.lease);
        let entries = self
            .blocking(move |outbox| outbox.claim(now, batch, lease))
            .await?;
        let mut report = RoundReport {
            taken: entries.len(),
            ..RoundReport::default()
        };
        for entry in entries {
            let delivery = match self.routes.get(&entry.target) {
                Some(transport) => transport.send(&entry).await,
                None => Delivery::Failed {
                    error: format!("no transport is configured for target '{}'", entry.target),
                },
            };
            let id = entry.id;
            let verdict = classify(&delivery);
            let (status, retry_after, body, error) = match delivery {
                Delivery::Answered {
                    status,
                    retry_after,
                    body,
                } => (
                    Some(status),
                    retry_after,
                    Some(body),
                    format!("answered {status}"),
                ),
                Delivery::Failed { error } => (None, None, None, error),
            };
            let failure = Failure {
                error,
                status,
                answer: body,
                retry_after,
            };
            match verdict {
                Verdict::Done => {
                    self.blocking(move |outbox| {
                        outbox.mark_done(
                            id,
                            failure.status.unwrap_or(200),
                            failure.answer.as_deref().unwrap_or_default(),
                            now,
                        )
                    })
                    .await?;
                    report.done += 1;
                }
                Verdict::Retry => {
                    tracing::info!(entry = id.0, error = %failure.error, "mdm outbox: will retry");
                    match self
                        .blocking(move |outbox| outbox.mark_retry(id, &failure, now))
                        .await?
                    {
                        EntryState::Dead => report.dead += 1,
                        _ => report.retried += 1,
                    }
                }
                Verdict::Dead => {
                    tracing::warn!(entry = id.0, error = %failure.error, "mdm outbox: giving up");
                    self.blocking(move |outbox| outbox.mark_dead(id, &failure, now))
                        .await?;
                    report.dead += 1;
                }
            }
        }
        Ok(report)
    }

    /// Runs rounds until `shutdown` completes. A round that fails (database
    /// busy, say) is logged and tried again after the idle interval.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let full = match self.run_once(OffsetDateTime::now_utc()).await {
                Ok(report) => report.taken >= self.config.batch,
                Err(error) => {
                    tracing::error!(%error, "mdm outbox round failed");
                    false
                }
            };
            if full {
                // More may be due right now.
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::task::yield_now() => continue,
                }
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.config.idle) => {}
            }
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Outbox) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let outbox = self.outbox.clone();
        tokio::task::spawn_blocking(move || f(&outbox))
            .await
            .map_err(|e| Error::Task(e.to_string()))?
    }
}
