//! The embedded store: one SQLite file in WAL mode with `synchronous=FULL`
//! (a message acknowledged to its sender survives a crash or power loss).
//!
//! Writes go to one writer thread that commits them in groups: it takes
//! every write waiting in its queue, runs each in its own savepoint inside
//! one `BEGIN IMMEDIATE` transaction, commits once (one WAL sync for the
//! group) and only then answers each caller. A write that fails rolls back
//! to its savepoint and leaves the others in the group alone; a failed
//! commit fails every write of the group, so nothing is answered as stored
//! that is not. Under load the group grows by itself while the previous
//! commit syncs: no timer, no added latency when idle. A stored message,
//! the most frequent write, runs without a savepoint (see `Checked`).
//!
//! Reads run on a few read-only connections on tokio's blocking pool, so
//! they do not wait behind the writer's sync (WAL lets readers see the last
//! commit). An in-memory database has one connection, shared by both.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use kontor_provisioning::DeviceId;
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};
use tokio::sync::oneshot;

use super::*;
use crate::error::Error;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_init.sql")),
    (
        2,
        include_str!("../../migrations/sqlite/0002_command_delivered.sql"),
    ),
    (
        3,
        include_str!("../../migrations/sqlite/0003_queue_len.sql"),
    ),
    (
        4,
        include_str!("../../migrations/sqlite/0004_queue_len_insert.sql"),
    ),
];

/// Read connections of a file database.
const READERS: usize = 4;
/// At most this many writes share one commit.
const GROUP_MAX: usize = 512;
/// How many point lookups one batched read runs on the calling task; more
/// go to the blocking pool (a message may name a thousand recipients).
const INLINE_LOOKUPS_MAX: usize = 8;

/// The SQLite implementation of every relay store trait.
#[derive(Clone)]
pub struct SqliteStore {
    writer: mpsc::Sender<Box<dyn Job>>,
    readers: Arc<Readers>,
}

struct Readers {
    conns: Vec<Arc<Mutex<Connection>>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

fn db(e: rusqlite::Error) -> Error {
    // A full disk refuses the write cleanly (the transaction rolls back):
    // the client is told so and retries later.
    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
        return Error::StorageFull(e.to_string());
    }
    Error::Store(e.to_string())
}

fn device_from(bytes: Vec<u8>) -> rusqlite::Result<DeviceId> {
    let array: [u8; 16] = bytes
        .try_into()
        .map_err(|_| rusqlite::Error::IntegralValueOutOfRange(0, 16))?;
    Ok(DeviceId::from_bytes(array))
}

fn id_from(bytes: Vec<u8>) -> rusqlite::Result<Id16> {
    bytes
        .try_into()
        .map_err(|_| rusqlite::Error::IntegralValueOutOfRange(0, 16))
}

fn seq(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// A write transaction holding the database's write lock from its start.
fn immediate(conn: &mut Connection) -> Result<Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)
}

fn configure(conn: &Connection) -> Result<()> {
    stable_plans(conn)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(db)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(db)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
    // Every write runs in a savepoint, whose undo pages SQLite keeps in a
    // sub-journal: in memory up to 64 KiB, then in a temporary file, opened
    // and written with a syscall per page. A stored message touches more
    // than that, so 6% of the writer's time under ingest went to a file
    // nobody reads. In memory the sub-journal is dropped at each release.
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(db)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(db)?;
    Ok(())
}

/// [`MessageStore::pending`]: a device's queue, without what was sent live.
const PENDING_SQL: &str = "SELECT q.seq, q.received_at_ms, q.delivery, b.body FROM relay_queue q \
     JOIN relay_bodies b ON b.id = q.body_id \
     WHERE q.device = ?1 AND q.expires_at_ms > ?2 \
     AND q.seq NOT IN (SELECT value FROM json_each(?4)) \
     ORDER BY q.seq LIMIT ?3";

/// [`MessageStore::pending_after`]: a device's queue past a sequence number.
const PENDING_AFTER_SQL: &str = "SELECT q.seq, q.received_at_ms, q.delivery, b.body FROM relay_queue q \
     JOIN relay_bodies b ON b.id = q.body_id \
     WHERE q.device = ?1 AND q.seq > ?4 AND q.expires_at_ms > ?2 \
     ORDER BY q.seq LIMIT ?3";

/// Turns on SQLite's query planner stability guarantee for `conn`. Without
/// it, SQLite 3.54 marks a statement whose `LIMIT` is a bound parameter
/// (`pending`, `pending_after`) for a new compilation every time a value
/// is bound, so each execution parsed and planned its SQL again: 19% of
/// the relay's CPU in the group workload. The plans do not depend on the
/// bound values here (every hot query walks an index in its order).
fn stable_plans(conn: &Connection) -> Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map_err(db)?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = migrate(Connection::open(path).map_err(db)?)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let reader = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE
                    | OpenFlags::SQLITE_OPEN_URI
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(db)?;
            reader
                .busy_timeout(std::time::Duration::from_secs(5))
                .map_err(db)?;
            reader.pragma_update(None, "query_only", "ON").map_err(db)?;
            stable_plans(&reader)?;
            readers.push(Arc::new(Mutex::new(reader)));
        }
        Self::start(Arc::new(Mutex::new(conn)), readers)
    }

    /// An in-memory database, for tests: one connection for reads and writes.
    pub fn in_memory() -> Result<Self> {
        let conn = Arc::new(Mutex::new(migrate(
            Connection::open_in_memory().map_err(db)?,
        )?));
        Self::start(conn.clone(), vec![conn])
    }

    fn start(conn: Arc<Mutex<Connection>>, readers: Vec<Arc<Mutex<Connection>>>) -> Result<Self> {
        let (writer, jobs) = mpsc::channel();
        std::thread::Builder::new()
            .name("kontor-relay-db".into())
            .spawn(move || write_loop(&conn, &jobs))
            .map_err(|e| Error::Store(format!("cannot start the database writer: {e}")))?;
        Ok(Self {
            writer,
            readers: Arc::new(Readers {
                conns: readers,
                next: AtomicUsize::new(0),
            }),
        })
    }

    /// Runs a read on one of the read connections.
    async fn read<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        let readers = &self.readers;
        let i = readers.next.fetch_add(1, Ordering::Relaxed) % readers.conns.len();
        let conn = readers.conns[i].clone();
        tokio::task::spawn_blocking(move || {
            let guard = conn
                .lock()
                .map_err(|_| Error::Store("database lock poisoned".into()))?;
            f(&guard)
        })
        .await
        .map_err(|e| Error::Store(format!("database task failed: {e}")))?
    }

    /// A point lookup (one row by its key, microseconds): runs at once on
    /// the calling task on a free read connection, and only when all are
    /// busy on the blocking pool. Every request makes a few of these; a
    /// trip through the pool each cost more than the lookup itself.
    async fn lookup<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        for conn in &self.readers.conns {
            if let Ok(guard) = conn.try_lock() {
                return f(&guard);
            }
        }
        self.read(f).await
    }

    /// Runs a write in the next group commit; answers once it is durable.
    /// `f` runs inside a savepoint: when it fails, its changes are undone
    /// and the group's others stay.
    async fn write<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(Box::new(Write {
                f: Some(f),
                result: None,
                reply,
            }))
            .map_err(|_| Error::Store("the database writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| Error::Store("the database writer has stopped".into()))?
    }
}

impl SqliteStore {
    /// Runs a write in two steps in the next group commit, without a
    /// savepoint (see [`Checked`]); answers once it is durable.
    async fn write_checked<R, C, A>(&self, check: C, apply: A) -> Result<R>
    where
        R: Send + 'static,
        C: FnOnce(&Connection) -> Result<Option<R>> + Send + 'static,
        A: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(Box::new(Checked {
                check: Some(check),
                apply: Some(apply),
                wrote: false,
                write: Write {
                    f: None,
                    result: None,
                    reply,
                },
            }))
            .map_err(|_| Error::Store("the database writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| Error::Store("the database writer has stopped".into()))?
    }
}

fn migrate(mut conn: Connection) -> Result<Connection> {
    configure(&conn)?;
    let tx = immediate(&mut conn)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS relay_migrations (version INTEGER PRIMARY KEY)")
        .map_err(db)?;
    for (version, sql) in MIGRATIONS {
        let done: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM relay_migrations WHERE version = ?1)",
                [version],
                |row| row.get(0),
            )
            .map_err(db)?;
        if !done {
            tx.execute_batch(sql).map_err(db)?;
            tx.execute(
                "INSERT INTO relay_migrations (version) VALUES (?1)",
                [version],
            )
            .map_err(db)?;
        }
    }
    tx.commit().map_err(db)?;
    Ok(conn)
}

/// One write waiting for the writer thread.
trait Job: Send {
    /// Whether the write runs in its own savepoint (see [`Checked`] for
    /// the writes that do not).
    fn guarded(&self) -> bool {
        true
    }
    /// Runs the write; false if it failed (and must be rolled back).
    fn run(&mut self, conn: &Connection) -> bool;
    /// For a write without a savepoint that failed: whether it had begun
    /// to write, so that only undoing the whole group undoes it.
    fn wrote(&self) -> bool {
        false
    }
    /// The write's own error, if it failed.
    fn error(&self) -> Option<Error>;
    /// Answers the caller: with the write's result, or with `failure` if the
    /// group's transaction did not commit (a write that failed by itself
    /// keeps its own error).
    fn finish(self: Box<Self>, failure: Option<Error>);
}

struct Write<R, F> {
    f: Option<F>,
    result: Option<Result<R>>,
    reply: oneshot::Sender<Result<R>>,
}

impl<R, F> Job for Write<R, F>
where
    R: Send,
    F: FnOnce(&Connection) -> Result<R> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(f) = self.f.take() else { return false };
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| f(conn)))
            .unwrap_or_else(|_| Err(Error::Store("a database write panicked".into())));
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn error(&self) -> Option<Error> {
        match &self.result {
            Some(Err(e)) => Some(e.clone()),
            _ => None,
        }
    }

    fn finish(self: Box<Self>, failure: Option<Error>) {
        let answer = match (self.result, failure) {
            (Some(Err(own)), _) => Err(own),
            (_, Some(failure)) => Err(failure),
            (Some(Ok(value)), None) => Ok(value),
            (None, None) => Err(Error::Store("a database write was not run".into())),
        };
        // The caller may have gone (a closed connection): the write stands.
        let _ = self.reply.send(answer);
    }
}

/// A write in two steps that runs without a savepoint of its own: `check`
/// only reads, and either answers at once (`Some`) or lets `apply` write;
/// `apply` fails only as the database does (full disk, I/O), never for a
/// reason of the request.
///
/// A savepoint is not free here: SQLite copies into its sub-journal every
/// page that a savepoint's statements touch and that existed when it was
/// opened, so that `ROLLBACK TO` can restore it. A stored message touches
/// about ten (its body, its queue entry and that entry's three indexes, the
/// seen id, the queue length), and in ingest those copies (`memjrnlWrite`,
/// `subjournalPageIfRequired`) were a quarter of the writer thread. What a
/// savepoint is for, refusing one write and keeping the group's others, is
/// what `check` does before anything is written. When `apply` fails after
/// all, the whole group is undone and every write in it answered with that
/// failure, as for a failed commit: nothing is answered as stored that
/// is not.
struct Checked<R, C, A> {
    check: Option<C>,
    apply: Option<A>,
    wrote: bool,
    write: Write<R, fn(&Connection) -> Result<R>>,
}

impl<R, C, A> Job for Checked<R, C, A>
where
    R: Send,
    C: FnOnce(&Connection) -> Result<Option<R>> + Send,
    A: FnOnce(&Connection) -> Result<R> + Send,
{
    fn guarded(&self) -> bool {
        false
    }

    fn run(&mut self, conn: &Connection) -> bool {
        let (Some(check), Some(apply)) = (self.check.take(), self.apply.take()) else {
            return false;
        };
        let checked = std::panic::catch_unwind(AssertUnwindSafe(|| check(conn)))
            .unwrap_or_else(|_| Err(Error::Store("a database write panicked".into())));
        let result = match checked {
            Ok(None) => {
                self.wrote = true;
                std::panic::catch_unwind(AssertUnwindSafe(|| apply(conn)))
                    .unwrap_or_else(|_| Err(Error::Store("a database write panicked".into())))
            }
            Ok(Some(answer)) => Ok(answer),
            Err(e) => Err(e),
        };
        let ok = result.is_ok();
        self.write.result = Some(result);
        ok
    }

    fn wrote(&self) -> bool {
        self.wrote
    }

    fn error(&self) -> Option<Error> {
        self.write.error()
    }

    fn finish(self: Box<Self>, failure: Option<Error>) {
        Box::new(self.write).finish(failure);
    }
}

/// The writer thread: takes what is queued, commits it as one group.
fn write_loop(conn: &Mutex<Connection>, jobs: &mpsc::Receiver<Box<dyn Job>>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < GROUP_MAX {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        match conn.lock() {
            Ok(guard) => commit_group(&guard, group),
            Err(_) => {
                for job in group {
                    job.finish(Some(Error::Store("database lock poisoned".into())));
                }
            }
        }
    }
}

/// Runs one of the writer's own statements (prepared once); false if it
/// failed.
fn statement(conn: &Connection, sql: &str) -> bool {
    conn.prepare_cached(sql)
        .and_then(|mut stmt| stmt.execute([]))
        .is_ok()
}

/// Runs `group` in one transaction, each write in a savepoint, and answers
/// each after the commit.
fn commit_group(conn: &Connection, group: Vec<Box<dyn Job>>) {
    let mut rest = group.into_iter();
    let mut ran: Vec<Box<dyn Job>> = Vec::new();
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let e = db(e);
        for job in rest {
            job.finish(Some(e.clone()));
        }
        return;
    }
    while let Some(mut job) = rest.next() {
        let guarded = job.guarded();
        let ok = (!guarded || statement(conn, "SAVEPOINT w")) && job.run(conn);
        let closed = if !guarded {
            // Failed after it began to write: only the group's rollback
            // undoes it (see `Checked`).
            !ok && job.wrote()
        } else if ok {
            !statement(conn, "RELEASE w")
        } else {
            !(statement(conn, "ROLLBACK TO w") && statement(conn, "RELEASE w"))
        };
        if closed || conn.is_autocommit() {
            // SQLite ended the whole transaction (a full disk can): every
            // write of the group so far is undone and fails; the rest
            // start a new group.
            let cause = job
                .error()
                .unwrap_or_else(|| Error::Store("the transaction was rolled back".into()));
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            job.finish(Some(cause.clone()));
            for done in ran {
                done.finish(Some(cause.clone()));
            }
            commit_group(conn, rest.collect());
            return;
        }
        ran.push(job);
    }
    let failure = conn.execute_batch("COMMIT").err().map(db);
    if failure.is_some() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for job in ran {
        job.finish(failure.clone());
    }
}

/// [`MessageStore::store_message`]'s check: `Some` answers without
/// writing (a message stored before), an error refuses it, `None` lets
/// [`store_message_apply`] write it.
fn store_message_check(
    tx: &Connection,
    m: &NewMessage,
    queue_len_max: u64,
) -> Result<Option<Stored>> {
    let sender = m.sender_device.as_bytes().to_vec();
    let seen: Option<Vec<u8>> = tx
        .prepare_cached("SELECT body_hash FROM relay_seen WHERE sender = ?1 AND message_id = ?2")
        .map_err(db)?
        .query_row(params![sender, m.message_id.to_vec()], |row| row.get(0))
        .optional()
        .map_err(db)?;
    if let Some(hash) = seen {
        return if hash == m.body_hash {
            Ok(Some(Stored::Duplicate))
        } else {
            Err(Error::Replay)
        };
    }
    for (device, _) in &m.deliveries {
        let len: i64 = tx
            .prepare_cached("SELECT n FROM relay_queue_len WHERE device = ?1")
            .map_err(db)?
            .query_row([device.as_bytes().to_vec()], |row| row.get(0))
            .optional()
            .map_err(db)?
            .unwrap_or(0);
        if seq(len) >= queue_len_max {
            return Err(Error::QueueFull(device.to_string()));
        }
    }
    Ok(None)
}

/// Writes a message [`store_message_check`] let through.
fn store_message_apply(tx: &Connection, m: &NewMessage) -> Result<Stored> {
    let sender = m.sender_device.as_bytes().to_vec();
    tx.prepare_cached(
        "INSERT INTO relay_seen (sender, message_id, body_hash, expires_at_ms) VALUES (?1, ?2, ?3, ?4)",
    )
    .map_err(db)?
    .execute(params![sender, m.message_id.to_vec(), m.body_hash.to_vec(), m.expires_at_ms])
    .map_err(db)?;
    if m.deliveries.is_empty() {
        // Nobody to deliver to: remember the id, keep no body.
        return Ok(Stored::New(Vec::new()));
    }
    tx.prepare_cached("INSERT INTO relay_bodies (body, expires_at_ms) VALUES (?1, ?2)")
        .map_err(db)?
        .execute(params![m.body, m.expires_at_ms])
        .map_err(db)?;
    let body_id = tx.last_insert_rowid();
    let mut seqs = Vec::with_capacity(m.deliveries.len());
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO relay_queue (device, body_id, delivery, received_at_ms, expires_at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(db)?;
        // Kept here, not by a trigger (migration 0004).
        let mut count = tx
            .prepare_cached(
                "INSERT INTO relay_queue_len (device, n) VALUES (?1, 1) \
                 ON CONFLICT (device) DO UPDATE SET n = n + 1",
            )
            .map_err(db)?;
        let mut grant = tx
            .prepare_cached("INSERT OR IGNORE INTO relay_blob_grants (blob_id, device) SELECT id, ?2 FROM relay_blobs WHERE id = ?1")
            .map_err(db)?;
        for (device, delivery) in &m.deliveries {
            insert
                .execute(params![
                    device.as_bytes().to_vec(),
                    body_id,
                    delivery,
                    m.received_at_ms,
                    m.expires_at_ms
                ])
                .map_err(db)?;
            seqs.push((*device, seq(tx.last_insert_rowid())));
            count.execute([device.as_bytes().to_vec()]).map_err(db)?;
            for blob in &m.blob_ids {
                grant
                    .execute(params![blob.to_vec(), device.as_bytes().to_vec()])
                    .map_err(db)?;
            }
        }
    }
    Ok(Stored::New(seqs))
}

/// Deletes every body no queue entry references any more (a full pass, for
/// expiry).
fn drop_orphan_bodies(conn: &Connection) -> Result<()> {
    conn.execute(
        "DELETE FROM relay_bodies WHERE NOT EXISTS (SELECT 1 FROM relay_queue q WHERE q.body_id = relay_bodies.id)",
        [],
    )
    .map_err(db)?;
    Ok(())
}

/// Deletes those of `body_ids` that no queue entry references any more.
/// Returns how many went.
///
/// One statement for the whole list, not one per body: every statement in
/// a write's savepoint opens a statement journal, and releasing it walks
/// the in-memory sub-journal from its start (`memjrnlTruncate`), so a
/// statement per row made a write of `n` rows cost `n²` (an acknowledgement
/// of a few hundred messages kept the writer thread busy for seconds).
fn drop_orphans_of(conn: &Connection, body_ids: &[i64]) -> Result<u64> {
    if body_ids.is_empty() {
        return Ok(0);
    }
    let ids = json_list(body_ids)?;
    let dropped = conn
        .prepare_cached(
            "DELETE FROM relay_bodies WHERE id IN (SELECT value FROM json_each(?1)) \
             AND NOT EXISTS (SELECT 1 FROM relay_queue q WHERE q.body_id = relay_bodies.id)",
        )
        .map_err(db)?
        .execute([ids])
        .map_err(db)?;
    Ok(erased_rows(dropped))
}

/// A list of numbers as a JSON array, for `json_each` (one bound value,
/// however long the list).
fn json_list<T: serde::Serialize>(values: &[T]) -> Result<String> {
    serde_json::to_string(values).map_err(|e| Error::Store(format!("cannot encode a list: {e}")))
}

impl MessageStore for SqliteStore {
    async fn store_message(&self, message: &NewMessage, queue_len_max: u64) -> Result<Stored> {
        let message = Arc::new(message.clone());
        let checked = message.clone();
        self.write_checked(
            move |tx| store_message_check(tx, &checked, queue_len_max),
            move |tx| store_message_apply(tx, &message),
        )
        .await
    }

    async fn pending(
        &self,
        device: DeviceId,
        now_ms: i64,
        skip: &[u64],
        limit: usize,
    ) -> Result<Vec<QueuedMessage>> {
        // The skipped entries (sent on a live connection, not yet
        // acknowledged) are left out by SQLite, so their bodies are not read.
        let skip = serde_json::to_string(skip)
            .map_err(|e| Error::Store(format!("cannot encode the skip list: {e}")))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(PENDING_SQL).map_err(db)?;
            let rows = stmt
                .query_map(
                    params![device.as_bytes().to_vec(), now_ms, limit, skip],
                    queued_message,
                )
                .map_err(db)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db)
        })
        .await
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
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(PENDING_AFTER_SQL).map_err(db)?;
            let rows = stmt
                .query_map(
                    params![device.as_bytes().to_vec(), now_ms, limit, after],
                    queued_message,
                )
                .map_err(db)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db)
        })
        .await
    }

    async fn ack(&self, device: DeviceId, seqs: &[u64]) -> Result<usize> {
        let seqs = seqs.to_vec();
        self.write(move |tx| {
            // One statement for every seq (see `drop_orphans_of`). Seqs
            // beyond SQLite's integer range cannot name a row: left out.
            let seqs: Vec<i64> = seqs
                .into_iter()
                .filter_map(|s| i64::try_from(s).ok())
                .collect();
            if seqs.is_empty() {
                return Ok(0);
            }
            let bodies: Vec<i64> = {
                // Only the device's own rows: another device's seq matches nothing.
                let mut delete = tx
                    .prepare_cached(
                        "DELETE FROM relay_queue WHERE device = ?1 \
                         AND seq IN (SELECT value FROM json_each(?2)) RETURNING body_id",
                    )
                    .map_err(db)?;
                let rows = delete
                    .query_map(
                        params![device.as_bytes().to_vec(), json_list(&seqs)?],
                        |r| r.get(0),
                    )
                    .map_err(db)?;
                rows.collect::<rusqlite::Result<_>>().map_err(db)?
            };
            drop_orphans_of(tx, &bodies)?;
            Ok(bodies.len())
        })
        .await
    }

    async fn drop_queue(&self, device: DeviceId) -> Result<usize> {
        self.write(move |tx| {
            let bodies: Vec<i64> = {
                let mut delete = tx
                    .prepare_cached("DELETE FROM relay_queue WHERE device = ?1 RETURNING body_id")
                    .map_err(db)?;
                let rows = delete
                    .query_map([device.as_bytes().to_vec()], |r| r.get(0))
                    .map_err(db)?;
                rows.collect::<rusqlite::Result<_>>().map_err(db)?
            };
            drop_orphans_of(tx, &bodies)?;
            Ok(bodies.len())
        })
        .await
    }

    async fn queue_len(&self, device: DeviceId) -> Result<u64> {
        self.lookup(move |conn| {
            let n: i64 = conn
                .query_row(
                    "SELECT n FROM relay_queue_len WHERE device = ?1",
                    [device.as_bytes().to_vec()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?
                .unwrap_or(0);
            Ok(seq(n))
        })
        .await
    }

    async fn expire_messages(&self, now_ms: i64) -> Result<usize> {
        self.write(move |tx| {
            let n = tx
                .execute(
                    "DELETE FROM relay_queue WHERE expires_at_ms <= ?1",
                    [now_ms],
                )
                .map_err(db)?;
            tx.execute("DELETE FROM relay_seen WHERE expires_at_ms <= ?1", [now_ms])
                .map_err(db)?;
            drop_orphan_bodies(tx)?;
            Ok(n)
        })
        .await
    }
}

fn load_group(conn: &Connection, id: Id16) -> Result<Option<Group>> {
    let head: Option<(String, String, i64)> = conn
        .query_row(
            "SELECT name, created_by, created_at_ms FROM relay_groups WHERE id = ?1",
            [id.to_vec()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(db)?;
    let Some((name, created_by, created_at_ms)) = head else {
        return Ok(None);
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT user_id, role FROM relay_group_members WHERE group_id = ?1 ORDER BY user_id",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map([id.to_vec()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(db)?;
    let mut members = Vec::new();
    for row in rows {
        let (user_id, role) = row.map_err(db)?;
        let role = GroupRole::parse(&role)
            .ok_or_else(|| Error::Store(format!("unknown group role {role:?}")))?;
        members.push(GroupMember { user_id, role });
    }
    Ok(Some(Group {
        id,
        name,
        created_by,
        created_at_ms,
        members,
    }))
}

impl GroupStore for SqliteStore {
    async fn create_group(&self, group: &Group) -> Result<()> {
        let group = group.clone();
        self.write(move |tx| {
            let inserted = tx
                .execute(
                    "INSERT OR IGNORE INTO relay_groups (id, name, created_by, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
                    params![group.id.to_vec(), group.name, group.created_by, group.created_at_ms],
                )
                .map_err(db)?;
            if inserted == 0 {
                return Err(Error::Replay);
            }
            for m in &group.members {
                tx.execute(
                    "INSERT INTO relay_group_members (group_id, user_id, role) VALUES (?1, ?2, ?3)",
                    params![group.id.to_vec(), m.user_id, m.role.as_str()],
                )
                .map_err(db)?;
            }
            Ok(())
        })
        .await
    }

    async fn group(&self, id: Id16) -> Result<Option<Group>> {
        self.lookup(move |conn| load_group(conn, id)).await
    }

    async fn rename_group(&self, id: Id16, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.write(move |conn| {
            Ok(conn
                .execute(
                    "UPDATE relay_groups SET name = ?2 WHERE id = ?1",
                    params![id.to_vec(), name],
                )
                .map_err(db)?
                > 0)
        })
        .await
    }

    async fn put_member(&self, id: Id16, member: &GroupMember) -> Result<bool> {
        let member = member.clone();
        self.write(move |tx| {
            let exists: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM relay_groups WHERE id = ?1)",
                    [id.to_vec()],
                    |r| r.get(0),
                )
                .map_err(db)?;
            if exists {
                tx.execute(
                    "INSERT INTO relay_group_members (group_id, user_id, role) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (group_id, user_id) DO UPDATE SET role = excluded.role",
                    params![id.to_vec(), member.user_id, member.role.as_str()],
                )
                .map_err(db)?;
            }
            Ok(exists)
        })
        .await
    }

    async fn remove_member(&self, id: Id16, user_id: &str) -> Result<bool> {
        let user_id = user_id.to_owned();
        self.write(move |conn| {
            Ok(conn
                .execute(
                    "DELETE FROM relay_group_members WHERE group_id = ?1 AND user_id = ?2",
                    params![id.to_vec(), user_id],
                )
                .map_err(db)?
                > 0)
        })
        .await
    }

    async fn groups_of_user(&self, user_id: &str) -> Result<Vec<Group>> {
        let user_id = user_id.to_owned();
        self.read(move |conn| {
            let ids: Vec<Id16> = {
                let mut stmt = conn
                    .prepare_cached("SELECT group_id FROM relay_group_members WHERE user_id = ?1 ORDER BY group_id")
                    .map_err(db)?;
                let rows = stmt.query_map([user_id], |r| id_from(r.get(0)?)).map_err(db)?;
                rows.collect::<rusqlite::Result<_>>().map_err(db)?
            };
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(group) = load_group(conn, id)? {
                    out.push(group);
                }
            }
            Ok(out)
        })
        .await
    }
}

impl BlobStore for SqliteStore {
    async fn put_blob(&self, blob: &BlobRecord) -> Result<()> {
        let blob = blob.clone();
        self.write(move |conn| {
            let n = conn
                .execute(
                    "INSERT OR IGNORE INTO relay_blobs (id, owner, bytes, created_at_ms, expires_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![blob.id.to_vec(), blob.owner_device.as_bytes().to_vec(), blob.bytes, blob.created_at_ms, blob.expires_at_ms],
                )
                .map_err(db)?;
            if n == 0 { Err(Error::Replay) } else { Ok(()) }
        })
        .await
    }

    async fn blob_for(
        &self,
        id: Id16,
        device: DeviceId,
        now_ms: i64,
    ) -> Result<Option<BlobRecord>> {
        self.read(move |conn| {
            conn.query_row(
                "SELECT owner, bytes, created_at_ms, expires_at_ms FROM relay_blobs b WHERE b.id = ?1 AND b.expires_at_ms > ?3 \
                 AND (b.owner = ?2 OR EXISTS (SELECT 1 FROM relay_blob_grants g WHERE g.blob_id = b.id AND g.device = ?2))",
                params![id.to_vec(), device.as_bytes().to_vec(), now_ms],
                |r| {
                    Ok(BlobRecord {
                        id,
                        owner_device: device_from(r.get(0)?)?,
                        bytes: r.get(1)?,
                        created_at_ms: r.get(2)?,
                        expires_at_ms: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(db)
        })
        .await
    }

    async fn blob_owner(&self, id: Id16) -> Result<Option<DeviceId>> {
        self.lookup(move |conn| {
            conn.prepare_cached("SELECT owner FROM relay_blobs WHERE id = ?1")
                .map_err(db)?
                .query_row([id.to_vec()], |r| device_from(r.get(0)?))
                .optional()
                .map_err(db)
        })
        .await
    }

    async fn expire_blobs(&self, now_ms: i64) -> Result<usize> {
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM relay_blobs WHERE expires_at_ms <= ?1",
                [now_ms],
            )
            .map_err(db)
        })
        .await
    }
}

fn command_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<CommandRecord> {
    Ok(CommandRecord {
        id: seq(r.get(0)?),
        device: device_from(r.get(1)?)?,
        kind: r.get(2)?,
        payload: r.get(3)?,
        created_at_ms: r.get(4)?,
        acked_at_ms: r.get(5)?,
        receipt: r.get(6)?,
        delivered_at_ms: r.get(7)?,
    })
}

const COMMAND_COLUMNS: &str =
    "id, device, kind, payload, created_at_ms, acked_at_ms, receipt, delivered_at_ms";

impl CommandStore for SqliteStore {
    async fn queue_command(
        &self,
        device: DeviceId,
        kind: &str,
        payload: &str,
        now_ms: i64,
    ) -> Result<u64> {
        let (kind, payload) = (kind.to_owned(), payload.to_owned());
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO relay_commands (device, kind, payload, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![device.as_bytes().to_vec(), kind, payload, now_ms],
            )
            .map_err(db)?;
            Ok(seq(conn.last_insert_rowid()))
        })
        .await
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
        self.write(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "UPDATE relay_commands SET delivered_at_ms = ?3 WHERE id = ?1 AND device = ?2 AND delivered_at_ms IS NULL",
                )
                .map_err(db)?;
            for id in ids {
                stmt.execute(params![id, device.as_bytes().to_vec(), now_ms])
                    .map_err(db)?;
            }
            Ok(())
        })
        .await
    }

    async fn pending_commands(&self, device: DeviceId) -> Result<Vec<CommandRecord>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {COMMAND_COLUMNS} FROM relay_commands WHERE device = ?1 AND acked_at_ms IS NULL ORDER BY id"
                ))
                .map_err(db)?;
            let rows = stmt.query_map([device.as_bytes().to_vec()], command_from).map_err(db)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db)
        })
        .await
    }

    async fn ack_command(
        &self,
        device: DeviceId,
        id: u64,
        receipt: &str,
        now_ms: i64,
    ) -> Result<bool> {
        let receipt = receipt.to_owned();
        let Ok(id) = i64::try_from(id) else {
            return Ok(false);
        };
        self.write(move |conn| {
            Ok(conn
                .execute(
                    "UPDATE relay_commands SET acked_at_ms = ?3, receipt = ?4 WHERE id = ?1 AND device = ?2 AND acked_at_ms IS NULL",
                    params![id, device.as_bytes().to_vec(), now_ms, receipt],
                )
                .map_err(db)?
                > 0)
        })
        .await
    }

    async fn commands_of_device(&self, device: DeviceId) -> Result<Vec<CommandRecord>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {COMMAND_COLUMNS} FROM relay_commands WHERE device = ?1 ORDER BY id"
                ))
                .map_err(db)?;
            let rows = stmt
                .query_map([device.as_bytes().to_vec()], command_from)
                .map_err(db)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db)
        })
        .await
    }
}

impl DeviceStateStore for SqliteStore {
    async fn device_state(&self, device: DeviceId) -> Result<Option<DeviceState>> {
        self.lookup(move |conn| {
            conn.prepare_cached(
                "SELECT push_kind, push_token, last_seen_ms, wiped_at_ms FROM relay_devices WHERE device = ?1",
            )
            .map_err(db)?
            .query_row(
                [device.as_bytes().to_vec()],
                |r| {
                    let kind: Option<String> = r.get(0)?;
                    let token: Option<String> = r.get(1)?;
                    Ok(DeviceState {
                        device,
                        push: match (kind.as_deref(), token) {
                            (Some("apns"), Some(t)) => Some(PushTarget::Apns(t)),
                            (Some("fcm"), Some(t)) => Some(PushTarget::Fcm(t)),
                            _ => None,
                        },
                        last_seen_ms: r.get(2)?,
                        wiped_at_ms: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(db)
        })
        .await
    }

    async fn set_push_target(&self, device: DeviceId, push: Option<&PushTarget>) -> Result<()> {
        let (kind, token) = match push {
            Some(PushTarget::Apns(t)) => (Some("apns"), Some(t.clone())),
            Some(PushTarget::Fcm(t)) => (Some("fcm"), Some(t.clone())),
            None => (None, None),
        };
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO relay_devices (device, push_kind, push_token) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (device) DO UPDATE SET push_kind = excluded.push_kind, push_token = excluded.push_token",
                params![device.as_bytes().to_vec(), kind, token],
            )
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn touch_device(&self, device: DeviceId, now_ms: i64) -> Result<()> {
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO relay_devices (device, last_seen_ms) VALUES (?1, ?2) \
                 ON CONFLICT (device) DO UPDATE SET last_seen_ms = excluded.last_seen_ms",
                params![device.as_bytes().to_vec(), now_ms],
            )
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn mark_wiped(&self, device: DeviceId, now_ms: i64) -> Result<()> {
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO relay_devices (device, wiped_at_ms) VALUES (?1, ?2) \
                 ON CONFLICT (device) DO UPDATE SET wiped_at_ms = excluded.wiped_at_ms",
                params![device.as_bytes().to_vec(), now_ms],
            )
            .map_err(db)?;
            Ok(())
        })
        .await
    }

    async fn wiped_devices(&self, devices: &[DeviceId]) -> Result<Vec<DeviceId>> {
        let devices = devices.to_vec();
        let n = devices.len();
        let check = move |conn: &Connection| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT 1 FROM relay_devices WHERE device = ?1 AND wiped_at_ms IS NOT NULL",
                )
                .map_err(db)?;
            let mut wiped = Vec::new();
            for device in devices {
                if statement.exists([device.as_bytes().to_vec()]).map_err(db)? {
                    wiped.push(device);
                }
            }
            Ok(wiped)
        };
        if n <= INLINE_LOOKUPS_MAX {
            self.lookup(check).await
        } else {
            self.read(check).await
        }
    }
}

/// A queue entry with its body, as `pending` and `pending_after` select it.
fn queued_message(row: &rusqlite::Row<'_>) -> rusqlite::Result<QueuedMessage> {
    Ok(QueuedMessage {
        seq: seq(row.get(0)?),
        received_at_ms: row.get(1)?,
        delivery: row.get(2)?,
        body: row.get(3)?,
    })
}

/// Rows changed by one statement, as the erasure counts them.
fn erased_rows(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Deletes a user's rows inside `tx` (see [`ErasureStore::erase_user`]).
fn erase_user_tx(tx: &Connection, user_id: &str, devices: &[Vec<u8>]) -> Result<UserRows> {
    let mut erased = UserRows::default();
    for device in devices {
        erased.devices += erased_rows(
            tx.execute("DELETE FROM relay_devices WHERE device = ?1", [device])
                .map_err(db)?,
        );
        // Queue entries, then the bodies they alone referenced.
        let bodies: Vec<i64> = {
            let mut stmt = tx
                .prepare("DELETE FROM relay_queue WHERE device = ?1 RETURNING body_id")
                .map_err(db)?;
            let rows = stmt.query_map([device], |r| r.get(0)).map_err(db)?;
            rows.collect::<rusqlite::Result<_>>().map_err(db)?
        };
        erased.queued += erased_rows(bodies.len());
        erased.bodies += drop_orphans_of(tx, &bodies)?;
        erased.seen += erased_rows(
            tx.execute("DELETE FROM relay_seen WHERE sender = ?1", [device])
                .map_err(db)?,
        );
        // Grants are counted here rather than left to the cascade.
        erased.grants += erased_rows(
            tx.execute(
                "DELETE FROM relay_blob_grants WHERE device = ?1 \
                 OR blob_id IN (SELECT id FROM relay_blobs WHERE owner = ?1)",
                [device],
            )
            .map_err(db)?,
        );
        erased.blobs += erased_rows(
            tx.execute("DELETE FROM relay_blobs WHERE owner = ?1", [device])
                .map_err(db)?,
        );
        erased.commands += erased_rows(
            tx.execute("DELETE FROM relay_commands WHERE device = ?1", [device])
                .map_err(db)?,
        );
    }
    let groups: Vec<Vec<u8>> = {
        let mut stmt = tx
            .prepare("DELETE FROM relay_group_members WHERE user_id = ?1 RETURNING group_id")
            .map_err(db)?;
        let rows = stmt.query_map([user_id], |r| r.get(0)).map_err(db)?;
        rows.collect::<rusqlite::Result<_>>().map_err(db)?
    };
    erased.memberships = erased_rows(groups.len());
    for group in groups {
        erased.groups_deleted += erased_rows(
            tx.execute(
                "DELETE FROM relay_groups WHERE id = ?1 \
                 AND NOT EXISTS (SELECT 1 FROM relay_group_members m WHERE m.group_id = ?1)",
                [group],
            )
            .map_err(db)?,
        );
    }
    erased.groups_creator_cleared = erased_rows(
        tx.execute(
            "UPDATE relay_groups SET created_by = '' WHERE created_by = ?1",
            [user_id],
        )
        .map_err(db)?,
    );
    Ok(erased)
}

impl ErasureStore for SqliteStore {
    async fn erase_user(&self, user_id: &str, devices: &[DeviceId]) -> Result<UserRows> {
        let user_id = user_id.to_owned();
        let devices: Vec<Vec<u8>> = devices.iter().map(|d| d.as_bytes().to_vec()).collect();
        self.write(move |conn| erase_user_tx(conn, &user_id, &devices))
            .await
    }

    async fn user_rows(&self, user_id: &str, devices: &[DeviceId]) -> Result<UserRows> {
        let user_id = user_id.to_owned();
        let devices: Vec<Vec<u8>> = devices.iter().map(|d| d.as_bytes().to_vec()).collect();
        // The erasure's own statements, undone: counts exactly what
        // erasure would delete.
        self.write(move |conn| {
            conn.execute_batch("SAVEPOINT dry_run").map_err(db)?;
            let found = erase_user_tx(conn, &user_id, &devices);
            conn.execute_batch("ROLLBACK TO dry_run; RELEASE dry_run")
                .map_err(db)?;
            found
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;

    use super::*;

    /// A bound `LIMIT` must not make SQLite compile the queue reads again on
    /// every execution (see [`stable_plans`]).
    #[tokio::test]
    async fn reading_a_queue_again_does_not_compile_its_statement_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("relay.sqlite")).unwrap();
        let device = DeviceId::from_bytes([1; 16]);
        for limit in [10, 20, 10, 30, 500] {
            store.pending_after(device, 0, 0, limit).await.unwrap();
            store.pending(device, 0, &[3], limit).await.unwrap();
        }
        let mut checked = 0;
        for conn in &store.readers.conns {
            let conn = conn.lock().unwrap();
            for sql in [PENDING_SQL, PENDING_AFTER_SQL] {
                let statement = conn.prepare_cached(sql).unwrap();
                assert_eq!(statement.get_status(StatementStatus::RePrepare), 0, "{sql}");
                checked += 1;
            }
        }
        assert!(checked > 0);
    }

    /// The writer keeps its savepoints' sub-journals in memory (see
    /// [`configure`]).
    #[tokio::test]
    async fn the_writer_keeps_temporary_data_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("relay.sqlite")).unwrap();
        let temp_store: i64 = store
            .write(|conn| {
                conn.query_row("PRAGMA temp_store", [], |row| row.get(0))
                    .map_err(db)
            })
            .await
            .unwrap();
        assert_eq!(temp_store, 2, "2 is MEMORY");
    }

    /// The bundled SQLite is compiled with `HAVE_FDATASYNC` (the
    /// workspace's `.cargo/config.toml` sets `LIBSQLITE3_FLAGS`, which
    /// cargo passes to every build of this workspace, libsqlite3-sys's
    /// build script included): a commit's sync is fdatasync(2), not an
    /// fsync(2) that also writes the file's inode. Without the setting,
    /// this crate is compiled without it too.
    #[test]
    fn the_bundled_sqlite_syncs_with_fdatasync() {
        let flags = option_env!("LIBSQLITE3_FLAGS").unwrap_or_default();
        assert!(
            flags.split_whitespace().any(|f| f == "-DHAVE_FDATASYNC=1"),
            "LIBSQLITE3_FLAGS is {flags:?}"
        );
    }

    fn scratch() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (v INTEGER PRIMARY KEY)")
            .unwrap();
        conn
    }

    fn rows(conn: &Connection) -> Vec<i64> {
        let mut stmt = conn.prepare("SELECT v FROM t ORDER BY v").unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    type Answer = oneshot::Receiver<Result<i64>>;

    /// A write in its own savepoint that inserts `v`, or fails after
    /// inserting it when `fail`.
    fn guarded(v: i64, fail: bool) -> (Box<dyn Job>, Answer) {
        let (reply, answer) = oneshot::channel();
        let f = move |conn: &Connection| {
            conn.execute("INSERT INTO t (v) VALUES (?1)", [v])
                .map_err(db)?;
            if fail {
                return Err(Error::Replay);
            }
            Ok(v)
        };
        let job = Write {
            f: Some(f),
            result: None,
            reply,
        };
        (Box::new(job), answer)
    }

    /// A [`Checked`] write of `v`: refused by its check, or failing in its
    /// apply after it inserted `v`, or stored.
    fn checked(v: i64, refuse: bool, fail: bool) -> (Box<dyn Job>, Answer) {
        let (reply, answer) = oneshot::channel();
        let check = move |_: &Connection| {
            if refuse {
                Err(Error::QueueFull(format!("{v}")))
            } else {
                Ok(None)
            }
        };
        let apply = move |conn: &Connection| {
            conn.execute("INSERT INTO t (v) VALUES (?1)", [v])
                .map_err(db)?;
            if fail {
                // As a full disk would fail it, after its first insert.
                return Err(Error::StorageFull("disk full".into()));
            }
            Ok(v)
        };
        let job = Checked {
            check: Some(check),
            apply: Some(apply),
            wrote: false,
            write: Write {
                f: None,
                result: None,
                reply,
            },
        };
        (Box::new(job), answer)
    }

    fn answered(mut answer: Answer) -> Result<i64> {
        answer.try_recv().expect("every write is answered")
    }

    /// A write refused by its check changes nothing and costs the group's
    /// others nothing, like a guarded write that fails.
    #[test]
    fn a_checked_write_refused_by_its_check_leaves_the_group_alone() {
        let conn = scratch();
        let (a, a_answer) = checked(1, false, false);
        let (b, b_answer) = checked(2, true, false);
        let (c, c_answer) = guarded(3, true);
        let (d, d_answer) = guarded(4, false);
        commit_group(&conn, vec![a, b, c, d]);
        assert_eq!(answered(a_answer).unwrap(), 1);
        assert!(matches!(answered(b_answer), Err(Error::QueueFull(_))));
        assert!(matches!(answered(c_answer), Err(Error::Replay)));
        assert_eq!(answered(d_answer).unwrap(), 4);
        assert_eq!(rows(&conn), vec![1, 4]);
        assert!(conn.is_autocommit(), "the group is committed");
    }

    /// A checked write that fails after it began to write has no savepoint
    /// to undo it: the whole group so far is undone and answered with its
    /// failure, and the writes after it are committed in a group of their
    /// own. Nothing is answered as stored that is not.
    #[test]
    fn a_checked_write_failing_as_it_writes_undoes_the_group_so_far() {
        let conn = scratch();
        let (a, a_answer) = guarded(1, false);
        let (b, b_answer) = checked(2, false, false);
        let (c, c_answer) = checked(3, false, true);
        let (d, d_answer) = checked(4, false, false);
        let (e, e_answer) = guarded(5, false);
        commit_group(&conn, vec![a, b, c, d, e]);
        for answer in [a_answer, b_answer, c_answer] {
            assert!(matches!(answered(answer), Err(Error::StorageFull(_))));
        }
        assert_eq!(answered(d_answer).unwrap(), 4);
        assert_eq!(answered(e_answer).unwrap(), 5);
        assert_eq!(rows(&conn), vec![4, 5]);
        assert!(conn.is_autocommit(), "no transaction is left open");
    }
}
