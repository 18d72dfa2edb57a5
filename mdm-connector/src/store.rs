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

/// A user's rows in the connector's tables: what
/// [`ConnectorStore::erase_user`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ConnectorRows {
    /// `mdm_devices`: the MDM identifiers (UDID, serial number, Android
    /// device name) of their enrollment tokens.
    pub devices: u64,
    /// `mdm_commands` naming the user, one of their Kontor devices, or
    /// one of their MDM devices.
    pub commands: u64,
    /// `mdm_outbox` entries of those commands already delivered or given
    /// up on.
    pub outbox: u64,
    /// `scim_users`: the SCIM attributes (external id, names, e-mails).
    pub scim: u64,
}

impl ConnectorRows {
    /// Rows deleted, all tables together.
    pub fn total(&self) -> u64 {
        self.devices + self.commands + self.outbox + self.scim
    }
}

/// Whether a table exists in the connection's database (the outbox and
/// SCIM tables are made by their own components, which may not run).
fn has_table(c: &Connection, name: &str) -> rusqlite::Result<bool> {
    c.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        [name],
        |r| r.get(0),
    )
}

/// The ids of the commands naming `user_id` of `org`, one of their Kontor
/// `devices` (hex) or the MDM identifiers of their `mdm_devices` rows.
fn user_command_ids(
    c: &Connection,
    org: &str,
    user_id: &str,
    devices: &[String],
) -> rusqlite::Result<Vec<String>> {
    let mut ids = std::collections::BTreeSet::new();
    let mut by_user = c.prepare(
        "SELECT command_id FROM mdm_commands WHERE org = ?1 AND user_id = ?2 \
         UNION SELECT c.command_id FROM mdm_commands c JOIN mdm_devices d ON d.org = c.org \
         AND c.mdm_target IN (d.udid, d.serial, d.android_device, d.enrollment_id) \
         WHERE c.org = ?1 AND d.user_id = ?2",
    )?;
    for id in by_user.query_map([org, user_id], |r| r.get::<_, String>(0))? {
        ids.insert(id?);
    }
    let mut by_device =
        c.prepare("SELECT command_id FROM mdm_commands WHERE org = ?1 AND device = ?2")?;
    for device in devices {
        for id in by_device.query_map([org, device.as_str()], |r| r.get::<_, String>(0))? {
            ids.insert(id?);
        }
    }
    Ok(ids.into_iter().collect())
}

impl ConnectorStore {
    /// Erasure (DSGVO Art. 17): deletes, in one transaction, every row
    /// naming `user_id` of `org` or one of their Kontor `devices`: their
    /// MDM device mappings, the commands sent for them, those commands'
    /// outbox entries once delivered or given up on (a pending one still
    /// goes out: it carries the organisation's wipe or policy, and names
    /// only the MDM's device), and their SCIM attributes. Idempotent.
    pub async fn erase_user(
        &self,
        org: &str,
        user_id: &str,
        devices: &[kontor_provisioning::DeviceId],
    ) -> Result<ConnectorRows, StoreError> {
        let (org, user_id) = (org.to_owned(), user_id.to_owned());
        let devices: Vec<String> = devices.iter().map(ToString::to_string).collect();
        self.call(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let commands = user_command_ids(&tx, &org, &user_id, &devices)?;
            let mut rows = ConnectorRows::default();
            let has_outbox = has_table(&tx, "mdm_outbox")?;
            for id in &commands {
                if has_outbox {
                    rows.outbox += erased_rows(tx.execute(
                        "DELETE FROM mdm_outbox WHERE idempotency_key = ?1 AND state <> 'pending'",
                        [id],
                    )?);
                }
                rows.commands += erased_rows(
                    tx.execute("DELETE FROM mdm_commands WHERE command_id = ?1", [id])?,
                );
            }
            rows.devices = erased_rows(tx.execute(
                "DELETE FROM mdm_devices WHERE org = ?1 AND user_id = ?2",
                [&org, &user_id],
            )?);
            if has_table(&tx, "scim_users")? {
                rows.scim = erased_rows(tx.execute(
                    "DELETE FROM scim_users WHERE org = ?1 AND user_id = ?2",
                    [&org, &user_id],
                )?);
            }
            tx.commit()?;
            Ok(rows)
        })
        .await
    }

    /// Every row [`ConnectorStore::erase_user`] would delete, as JSON (the
    /// user's data export, DSGVO Art. 15 and 20).
    pub async fn export_user(
        &self,
        org: &str,
        user_id: &str,
        devices: &[kontor_provisioning::DeviceId],
    ) -> Result<serde_json::Value, StoreError> {
        let (org, user_id) = (org.to_owned(), user_id.to_owned());
        let devices: Vec<String> = devices.iter().map(ToString::to_string).collect();
        self.call(move |c| {
            let mdm_devices: Vec<MdmDevice> = {
                let mut stmt = c.prepare(&format!(
                    "SELECT {DEVICE_COLUMNS} FROM mdm_devices WHERE org = ?1 AND user_id = ?2 ORDER BY created_at_ms"
                ))?;
                let rows = stmt.query_map([&org, &user_id], device_from)?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut commands = Vec::new();
            let mut get = c.prepare(&format!(
                "SELECT {COMMAND_COLUMNS} FROM mdm_commands WHERE command_id = ?1"
            ))?;
            for id in user_command_ids(c, &org, &user_id, &devices)? {
                commands.push(get.query_row([id], command_from)?);
            }
            let scim = if has_table(c, "scim_users")? {
                c.query_row(
                    "SELECT external_id, given_name, family_name, emails FROM scim_users WHERE org = ?1 AND user_id = ?2",
                    [&org, &user_id],
                    |r| {
                        Ok(serde_json::json!({
                            "external_id": r.get::<_, Option<String>>(0)?,
                            "given_name": r.get::<_, Option<String>>(1)?,
                            "family_name": r.get::<_, Option<String>>(2)?,
                            "emails": serde_json::from_str::<serde_json::Value>(&r.get::<_, String>(3)?)
                                .unwrap_or_default(),
                        }))
                    },
                )
                .optional()?
            } else {
                None
            };
            Ok(serde_json::json!({
                "mdm_devices": mdm_devices,
                "mdm_commands": commands,
                "scim_attributes": scim,
            }))
        })
        .await
    }
}

/// Rows changed by one statement, as the erasure counts them.
fn erased_rows(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The connector's part of removing a user: registered with the
/// administration by `kontor serve`.
impl kontor_admin::erasure::UserEraser for ConnectorStore {
    fn name(&self) -> &'static str {
        "connector"
    }

    fn export_user<'a>(
        &'a self,
        org: &'a str,
        user_id: &'a str,
        devices: &'a [kontor_provisioning::DeviceId],
    ) -> kontor_admin::erasure::BoxFuture<'a, kontor_admin::Result<serde_json::Value>> {
        Box::pin(async move {
            ConnectorStore::export_user(self, org, user_id, devices)
                .await
                .map_err(|e| kontor_admin::Error::Store(e.to_string()))
        })
    }

    fn erase_user<'a>(
        &'a self,
        org: &'a str,
        user_id: &'a str,
        devices: &'a [kontor_provisioning::DeviceId],
    ) -> kontor_admin::erasure::BoxFuture<'a, kontor_admin::Result<u64>> {
        Box::pin(async move {
            ConnectorStore::erase_user(self, org, user_id, devices)
                .await
                .map(|rows| rows.total())
                .map_err(|e| kontor_admin::Error::Store(e.to_string()))
        })
    }
}
