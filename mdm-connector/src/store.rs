//! The connector's tables in the deployment's SQLite database: which MDM
//! device an enrollment token was made for (so a wipe by serial number
//! finds the Kontor device that enrolled with it), and the commands sent to
//! MDMs with their reported state.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("connector storage failed: {0}")]
    Db(#[from] rusqlite::Error),
    /// A blocking task failed.
    #[error("connector storage task failed: {0}")]
    Task(String),
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS mdm_devices (
    token_id TEXT PRIMARY KEY,
    org TEXT NOT NULL,
    user_id TEXT NOT NULL,
    udid TEXT,
    serial TEXT,
    android_device TEXT,
    enrollment_id TEXT,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS mdm_devices_udid ON mdm_devices (org, udid);
CREATE INDEX IF NOT EXISTS mdm_devices_serial ON mdm_devices (org, serial);
CREATE INDEX IF NOT EXISTS mdm_devices_android ON mdm_devices (org, android_device);
CREATE TABLE IF NOT EXISTS mdm_commands (
    command_id TEXT PRIMARY KEY,
    org TEXT NOT NULL,
    platform TEXT NOT NULL,
    kind TEXT NOT NULL,
    mdm_target TEXT NOT NULL,
    device TEXT,
    user_id TEXT,
    status TEXT NOT NULL,
    detail TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS mdm_commands_org ON mdm_commands (org, created_at_ms);
";

/// The MDM's identifiers of one device, as the EMM named them when it
/// fetched the device's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MdmDevice {
    /// The enrollment token made for it.
    pub token_id: String,
    /// Organisation.
    pub org: String,
    /// Kontor user.
    pub user_id: String,
    /// Apple UDID.
    pub udid: Option<String>,
    /// Serial number.
    pub serial: Option<String>,
    /// Android Management API device name (`enterprises/…/devices/…`).
    pub android_device: Option<String>,
    /// The MDM's enrollment id (NanoMDM: the UDID, or a user-channel id).
    pub enrollment_id: Option<String>,
    /// When.
    pub created_at_ms: i64,
}

/// A command sent to an MDM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MdmCommand {
    /// Our id: the Apple CommandUUID, or the id we gave an Android command.
    pub command_id: String,
    /// Organisation.
    pub org: String,
    /// `apple` or `android`.
    pub platform: String,
    /// `remove_application`, `clear_app_data`, `settings`, `policy`.
    pub kind: String,
    /// The MDM's device (enrollment id or device name).
    pub mdm_target: String,
    /// The Kontor device, hex.
    pub device: Option<String>,
    /// The Kontor user.
    pub user_id: Option<String>,
    /// `queued`, `sent`, `acknowledged`, `error`, `not_now`, `failed`.
    pub status: String,
    /// What the MDM reported (JSON).
    pub detail: String,
    /// Created.
    pub created_at_ms: i64,
    /// Last change.
    pub updated_at_ms: i64,
}

/// The connector's database.
#[derive(Clone)]
pub struct ConnectorStore {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for ConnectorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectorStore")
    }
}

fn device_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<MdmDevice> {
    Ok(MdmDevice {
        token_id: r.get(0)?,
        org: r.get(1)?,
        user_id: r.get(2)?,
        udid: r.get(3)?,
        serial: r.get(4)?,
        android_device: r.get(5)?,
        enrollment_id: r.get(6)?,
        created_at_ms: r.get(7)?,
    })
}

fn command_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<MdmCommand> {
    Ok(MdmCommand {
        command_id: r.get(0)?,
        org: r.get(1)?,
        platform: r.get(2)?,
        kind: r.get(3)?,
        mdm_target: r.get(4)?,
        device: r.get(5)?,
        user_id: r.get(6)?,
        status: r.get(7)?,
        detail: r.get(8)?,
        created_at_ms: r.get(9)?,
        updated_at_ms: r.get(10)?,
    })
}

const DEVICE_COLUMNS: &str =
    "token_id, org, user_id, udid, serial, android_device, enrollment_id, created_at_ms";
const COMMAND_COLUMNS: &str = "command_id, org, platform, kind, mdm_target, device, user_id, status, detail, created_at_ms, updated_at_ms";

impl ConnectorStore {
    /// Opens (creating if needed) the tables in the database file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::setup(Connection::open(path)?)
    }

    /// A private in-memory database, for tests.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::setup(Connection::open_in_memory()?)
    }

    fn setup(conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(ConnectorStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Records the MDM identifiers a token was made for.
    pub async fn put_device(&self, d: MdmDevice) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                &format!("INSERT INTO mdm_devices ({DEVICE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                params![d.token_id, d.org, d.user_id, d.udid, d.serial, d.android_device, d.enrollment_id, d.created_at_ms],
            )?;
            Ok(())
        })
        .await
    }

    /// The mappings matching one identifier (`udid`, `serial` or
    /// `android_device`) in an organisation, newest first.
    pub async fn devices_by(
        &self,
        org: &str,
        field: IdField,
        value: &str,
    ) -> Result<Vec<MdmDevice>, StoreError> {
        let (org, value) = (org.to_owned(), value.to_owned());
        let column = field.column();
        self.call(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {DEVICE_COLUMNS} FROM mdm_devices WHERE org = ?1 AND {column} = ?2 ORDER BY created_at_ms DESC"
            ))?;
            let rows = stmt.query_map([org, value], device_from)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// The mapping of a token.
    pub async fn device_of_token(&self, token_id: &str) -> Result<Option<MdmDevice>, StoreError> {
        let token_id = token_id.to_owned();
        self.call(move |c| {
            Ok(c.query_row(
                &format!("SELECT {DEVICE_COLUMNS} FROM mdm_devices WHERE token_id = ?1"),
                [token_id],
                device_from,
            )
            .optional()?)
        })
        .await
    }

    /// Records a command.
    pub async fn put_command(&self, m: MdmCommand) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                &format!("INSERT INTO mdm_commands ({COMMAND_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
                params![m.command_id, m.org, m.platform, m.kind, m.mdm_target, m.device, m.user_id, m.status, m.detail, m.created_at_ms, m.updated_at_ms],
            )?;
            Ok(())
        })
        .await
    }

    /// Sets a command's status; false when there is no such command.
    pub async fn set_command_status(
        &self,
        command_id: &str,
        status: &str,
        detail: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let (id, status, detail) = (command_id.to_owned(), status.to_owned(), detail.to_owned());
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = tx.execute(
                "UPDATE mdm_commands SET status = ?2, detail = ?3, updated_at_ms = ?4 WHERE command_id = ?1",
                params![id, status, detail, now_ms],
            )?;
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }

    /// A command.
    pub async fn command(&self, command_id: &str) -> Result<Option<MdmCommand>, StoreError> {
        let id = command_id.to_owned();
        self.call(move |c| {
            Ok(c.query_row(
                &format!("SELECT {COMMAND_COLUMNS} FROM mdm_commands WHERE command_id = ?1"),
                [id],
                command_from,
            )
            .optional()?)
        })
        .await
    }

    /// The commands of an organisation, newest first.
    pub async fn commands(&self, org: &str) -> Result<Vec<MdmCommand>, StoreError> {
        let org = org.to_owned();
        self.call(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {COMMAND_COLUMNS} FROM mdm_commands WHERE org = ?1 ORDER BY created_at_ms DESC, command_id"
            ))?;
            let rows = stmt.query_map([org], command_from)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }
}

/// Which MDM identifier a lookup uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdField {
    /// Apple UDID.
    Udid,
    /// Serial number.
    Serial,
    /// Android device name.
    AndroidDevice,
}

impl IdField {
    fn column(self) -> &'static str {
        match self {
            IdField::Udid => "udid",
            IdField::Serial => "serial",
            IdField::AndroidDevice => "android_device",
        }
    }
}
