//! The administration's tables in the deployment's SQLite database.
//!
//! One connection behind a mutex, used from blocking threads; every write
//! that must be all-or-nothing runs in one transaction. The tables live
//! beside provisioning's and the relay's, each component owning its own.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use crate::directory::{Allowance, Barriers, RestrictionSettings, Scope, UserStatus};
use crate::error::{Error, Result};
use crate::role::Role;

const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../migrations/sqlite/0001_init.sql"))];

/// An admin account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Random id, hex.
    pub id: String,
    /// The organisation it administers.
    pub org: String,
    /// Sign-in name.
    pub login: String,
    /// Role.
    pub role: Role,
    /// argon2id PHC string.
    pub password_hash: String,
    /// TOTP secret, when the second factor is on.
    pub totp_secret: Option<Vec<u8>>,
    /// The last TOTP time step used, so a code works once.
    pub totp_last_step: Option<i64>,
    /// Set when disabled.
    pub disabled_at_ms: Option<i64>,
    /// Created.
    pub created_at_ms: i64,
}

/// A user row as stored (the directory adds devices and activity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    /// User id.
    pub user_id: String,
    /// Organisation.
    pub org: String,
    /// Display name.
    pub display_name: String,
    /// Department.
    pub department: Option<String>,
    /// Status.
    pub status: UserStatus,
    /// Created.
    pub created_at_ms: i64,
}

/// A wipe as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WipeRow {
    /// Id.
    pub id: i64,
    /// Organisation.
    pub org: String,
    /// User.
    pub user_id: String,
    /// Device id, hex.
    pub device: String,
    /// The relay command.
    pub command_id: i64,
    /// Admin login.
    pub requested_by: String,
    /// When.
    pub requested_at_ms: i64,
}

/// An archive request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveRow {
    /// Id, hex.
    pub id: String,
    /// Organisation.
    pub org: String,
    /// Admin login.
    pub requested_by: String,
    /// Users.
    pub users: Vec<String>,
    /// Range start, inclusive.
    pub from_ms: i64,
    /// Range end, exclusive.
    pub to_ms: i64,
    /// When.
    pub created_at_ms: i64,
}

/// The administration's database.
#[derive(Clone)]
pub struct AdminStore {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for AdminStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminStore")
    }
}

fn account_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    let role: String = r.get(3)?;
    Ok(Account {
        id: r.get(0)?,
        org: r.get(1)?,
        login: r.get(2)?,
        role: Role::parse(&role).unwrap_or(Role::Auditor),
        password_hash: r.get(4)?,
        totp_secret: r.get(5)?,
        totp_last_step: r.get(6)?,
        disabled_at_ms: r.get(7)?,
        created_at_ms: r.get(8)?,
    })
}

const ACCOUNT_COLUMNS: &str = "id, org, login, role, password_hash, totp_secret, totp_last_step, disabled_at_ms, created_at_ms";

fn user_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRow> {
    let status: String = r.get(4)?;
    Ok(UserRow {
        user_id: r.get(0)?,
        org: r.get(1)?,
        display_name: r.get(2)?,
        department: r.get(3)?,
        status: UserStatus::parse(&status).unwrap_or(UserStatus::Blocked),
        created_at_ms: r.get(5)?,
    })
}

const USER_COLUMNS: &str = "user_id, org, display_name, department, status, created_at_ms";

impl AdminStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        Self::setup(conn)
    }

    /// A private in-memory database, for tests.
    pub fn open_in_memory() -> Result<Self> {
        Self::setup(Connection::open_in_memory()?)
    }

    fn setup(conn: Connection) -> Result<Self> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute(
            "CREATE TABLE IF NOT EXISTS admin_migrations (version INTEGER PRIMARY KEY)",
            [],
        )?;
        for (version, sql) in MIGRATIONS {
            let done: bool = conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM admin_migrations WHERE version = ?1)",
                [version],
                |r| r.get(0),
            )?;
            if !done {
                let tx = conn.unchecked_transaction()?;
                tx.execute_batch(sql)?;
                tx.execute(
                    "INSERT INTO admin_migrations (version) VALUES (?1)",
                    [version],
                )?;
                tx.commit()?;
            }
        }
        Ok(AdminStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection on a blocking thread.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut guard)
        })
        .await
        .map_err(|e| Error::Store(format!("database task failed: {e}")))?
    }

    // --- organisations and accounts --------------------------------------

    /// Creates an organisation if it does not exist.
    pub async fn ensure_org(&self, id: &str, name: &str, now_ms: i64) -> Result<()> {
        let (id, name) = (id.to_owned(), name.to_owned());
        self.call(move |c| {
            c.execute(
                "INSERT INTO admin_orgs (id, name, created_at_ms) VALUES (?1, ?2, ?3) ON CONFLICT (id) DO NOTHING",
                params![id, name, now_ms],
            )?;
            Ok(())
        })
        .await
    }

    /// The organisation's archive public key (hex), if set.
    pub async fn archive_key(&self, org: &str) -> Result<Option<String>> {
        let org = org.to_owned();
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT archive_key FROM admin_orgs WHERE id = ?1",
                [org],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()?
            .flatten())
        })
        .await
    }

    /// Sets the organisation's archive public key (hex).
    pub async fn set_archive_key(&self, org: &str, key_hex: &str) -> Result<()> {
        let (org, key) = (org.to_owned(), key_hex.to_owned());
        self.call(move |c| {
            c.execute(
                "UPDATE admin_orgs SET archive_key = ?2 WHERE id = ?1",
                params![org, key],
            )?;
            Ok(())
        })
        .await
    }

    /// Inserts an account; a taken login is a conflict.
    pub async fn insert_account(&self, a: &Account) -> Result<()> {
        let a = a.clone();
        self.call(move |c| {
            let n = c.execute(
                &format!("INSERT INTO admin_accounts ({ACCOUNT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (login) DO NOTHING"),
                params![a.id, a.org, a.login, a.role.as_str(), a.password_hash, a.totp_secret, a.totp_last_step, a.disabled_at_ms, a.created_at_ms],
            )?;
            if n == 0 {
                return Err(Error::Conflict(format!("the login {} is taken", a.login)));
            }
            Ok(())
        })
        .await
    }

    /// The account with this login.
    pub async fn account_by_login(&self, login: &str) -> Result<Option<Account>> {
        let login = login.to_owned();
        self.call(move |c| {
            Ok(c.query_row(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM admin_accounts WHERE login = ?1"),
                [login],
                account_from,
            )
            .optional()?)
        })
        .await
    }

    /// The account with this id.
    pub async fn account(&self, id: &str) -> Result<Option<Account>> {
        let id = id.to_owned();
        self.call(move |c| {
            Ok(c.query_row(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM admin_accounts WHERE id = ?1"),
                [id],
                account_from,
            )
            .optional()?)
        })
        .await
    }

    /// The accounts of an organisation.
    pub async fn accounts(&self, org: &str) -> Result<Vec<Account>> {
        let org = org.to_owned();
        self.call(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM admin_accounts WHERE org = ?1 ORDER BY login"
            ))?;
            let rows = stmt.query_map([org], account_from)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// Disables an account and ends its sessions and API keys at once, in
    /// one transaction.
    pub async fn disable_account(&self, id: &str, now_ms: i64) -> Result<bool> {
        let id = id.to_owned();
        self.call(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let n = tx.execute(
                "UPDATE admin_accounts SET disabled_at_ms = ?2 WHERE id = ?1 AND disabled_at_ms IS NULL",
                params![id, now_ms],
            )?;
            tx.execute("DELETE FROM admin_sessions WHERE account = ?1", [&id])?;
            tx.execute(
                "UPDATE admin_api_keys SET revoked_at_ms = ?2 WHERE account = ?1 AND revoked_at_ms IS NULL",
                params![id, now_ms],
            )?;
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }

    /// Sets or clears the TOTP secret.
    pub async fn set_totp(&self, id: &str, secret: Option<Vec<u8>>) -> Result<()> {
        let id = id.to_owned();
        self.call(move |c| {
            c.execute(
                "UPDATE admin_accounts SET totp_secret = ?2, totp_last_step = NULL WHERE id = ?1",
                params![id, secret],
            )?;
            Ok(())
        })
        .await
    }

    /// Records the TOTP step used; false if it (or a later one) was used
    /// already.
    pub async fn use_totp_step(&self, id: &str, step: i64) -> Result<bool> {
        let id = id.to_owned();
        self.call(move |c| {
            Ok(c.execute(
                "UPDATE admin_accounts SET totp_last_step = ?2 WHERE id = ?1 AND (totp_last_step IS NULL OR totp_last_step < ?2)",
                params![id, step],
            )? > 0)
        })
        .await
    }

    // --- sessions and API keys ---------------------------------------------

    /// Stores a new session.
    pub async fn insert_session(
        &self,
        token_hash: [u8; 32],
        account: &str,
        csrf: &str,
        now_ms: i64,
    ) -> Result<()> {
        let (account, csrf) = (account.to_owned(), csrf.to_owned());
        self.call(move |c| {
            c.execute(
                "INSERT INTO admin_sessions (token_hash, account, csrf, created_at_ms, last_used_ms) VALUES (?1, ?2, ?3, ?4, ?4)",
                params![token_hash.to_vec(), account, csrf, now_ms],
            )?;
            Ok(())
        })
        .await
    }

    /// A live session: (account, csrf, created, last used). Sessions past
    /// `idle_ms` or `absolute_ms` are deleted and not returned; a live one
    /// has its last use moved to `now_ms`.
    pub async fn touch_session(
        &self,
        token_hash: [u8; 32],
        now_ms: i64,
        idle_ms: i64,
        absolute_ms: i64,
    ) -> Result<Option<(String, String)>> {
        self.call(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let row: Option<(String, String, i64, i64)> = tx
                .query_row(
                    "SELECT account, csrf, created_at_ms, last_used_ms FROM admin_sessions WHERE token_hash = ?1",
                    [token_hash.to_vec()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()?;
            let out = match row {
                Some((account, csrf, created, last))
                    if now_ms - last < idle_ms && now_ms - created < absolute_ms =>
                {
                    tx.execute(
                        "UPDATE admin_sessions SET last_used_ms = ?2 WHERE token_hash = ?1",
                        params![token_hash.to_vec(), now_ms],
                    )?;
                    Some((account, csrf))
                }
                Some(_) => {
                    tx.execute(
                        "DELETE FROM admin_sessions WHERE token_hash = ?1",
                        [token_hash.to_vec()],
                    )?;
                    None
                }
                None => None,
            };
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    /// Ends a session.
    pub async fn delete_session(&self, token_hash: [u8; 32]) -> Result<()> {
        self.call(move |c| {
            c.execute(
                "DELETE FROM admin_sessions WHERE token_hash = ?1",
                [token_hash.to_vec()],
            )?;
            Ok(())
        })
        .await
    }

    /// Stores an API key.
    pub async fn insert_api_key(
        &self,
        id: &str,
        account: &str,
        secret_hash: [u8; 32],
        label: &str,
        now_ms: i64,
    ) -> Result<()> {
        let (id, account, label) = (id.to_owned(), account.to_owned(), label.to_owned());
        self.call(move |c| {
            c.execute(
                "INSERT INTO admin_api_keys (id, account, secret_hash, label, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, account, secret_hash.to_vec(), label, now_ms],
            )?;
            Ok(())
        })
        .await
    }

    /// An unrevoked API key: (account, secret hash).
    pub async fn api_key(&self, id: &str) -> Result<Option<(String, Vec<u8>)>> {
        let id = id.to_owned();
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT account, secret_hash FROM admin_api_keys WHERE id = ?1 AND revoked_at_ms IS NULL",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
        })
        .await
    }

    /// The API keys of the accounts of an organisation: (id, account
    /// login, label, created, revoked).
    pub async fn api_keys(&self, org: &str) -> Result<Vec<serde_json::Value>> {
        let org = org.to_owned();
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT k.id, a.login, k.label, k.created_at_ms, k.revoked_at_ms FROM admin_api_keys k JOIN admin_accounts a ON a.id = k.account WHERE a.org = ?1 ORDER BY k.created_at_ms",
            )?;
            let rows = stmt.query_map([org], |r| {
                Ok(serde_json::json!({
                    "id": r.get::<_, String>(0)?,
                    "account": r.get::<_, String>(1)?,
                    "label": r.get::<_, String>(2)?,
                    "created_at_ms": r.get::<_, i64>(3)?,
                    "revoked_at_ms": r.get::<_, Option<i64>>(4)?,
                }))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// Revokes an API key of an organisation's account.
    pub async fn revoke_api_key(&self, org: &str, id: &str, now_ms: i64) -> Result<bool> {
        let (org, id) = (org.to_owned(), id.to_owned());
        self.call(move |c| {
            Ok(c.execute(
                "UPDATE admin_api_keys SET revoked_at_ms = ?3 WHERE id = ?1 AND revoked_at_ms IS NULL AND account IN (SELECT id FROM admin_accounts WHERE org = ?2)",
                params![id, org, now_ms],
            )? > 0)
        })
        .await
    }

    // --- users ---------------------------------------------------------------

    /// A user of an organisation.
    pub async fn user(&self, org: &str, user_id: &str) -> Result<Option<UserRow>> {
        let (org, user_id) = (org.to_owned(), user_id.to_owned());
        self.call(move |c| {
            Ok(c.query_row(
                &format!("SELECT {USER_COLUMNS} FROM admin_users WHERE org = ?1 AND user_id = ?2"),
                [org, user_id],
                user_from,
            )
            .optional()?)
        })
        .await
    }

    /// A user in any organisation (user ids are unique in a deployment).
    pub async fn user_anywhere(&self, user_id: &str) -> Result<Option<UserRow>> {
        let user_id = user_id.to_owned();
        self.call(move |c| {
            Ok(c.query_row(
                &format!("SELECT {USER_COLUMNS} FROM admin_users WHERE user_id = ?1"),
                [user_id],
                user_from,
            )
            .optional()?)
        })
        .await
    }

    /// Every user of an organisation.
    pub async fn users(&self, org: &str) -> Result<Vec<UserRow>> {
        let org = org.to_owned();
        self.call(move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {USER_COLUMNS} FROM admin_users WHERE org = ?1 ORDER BY user_id"
            ))?;
            let rows = stmt.query_map([org], user_from)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// Every user of every organisation (for the relay's policy snapshot).
    pub async fn all_users(&self) -> Result<Vec<UserRow>> {
        self.call(move |c| {
            let mut stmt = c.prepare(&format!("SELECT {USER_COLUMNS} FROM admin_users"))?;
            let rows = stmt.query_map([], user_from)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// Inserts users in one transaction; a user id taken (in any
    /// organisation) fails the whole batch naming it.
    pub async fn insert_users(&self, users: Vec<UserRow>) -> Result<()> {
        self.call(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for u in &users {
                let n = tx.execute(
                    &format!("INSERT INTO admin_users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (user_id) DO NOTHING"),
                    params![u.user_id, u.org, u.display_name, u.department, u.status.as_str(), u.created_at_ms],
                )?;
                if n == 0 {
                    return Err(Error::Conflict(format!("user {} exists", u.user_id)));
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Sets status and department of users of an organisation in one
    /// transaction; every user must exist there.
    pub async fn update_users(
        &self,
        org: &str,
        changes: Vec<(String, UserStatus, Option<String>)>,
    ) -> Result<()> {
        let org = org.to_owned();
        self.call(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for (user, status, department) in &changes {
                let n = tx.execute(
                    "UPDATE admin_users SET status = ?3, department = ?4 WHERE org = ?1 AND user_id = ?2",
                    params![org, user, status.as_str(), department],
                )?;
                if n == 0 {
                    return Err(Error::NotFound(format!("user {user}")));
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Renames a user of an organisation.
    pub async fn rename_user(&self, org: &str, user_id: &str, display_name: &str) -> Result<bool> {
        let (org, user_id, name) = (org.to_owned(), user_id.to_owned(), display_name.to_owned());
        self.call(move |c| {
            Ok(c.execute(
                "UPDATE admin_users SET display_name = ?3 WHERE org = ?1 AND user_id = ?2",
                [org, user_id, name],
            )? > 0)
        })
        .await
    }

    /// Erases a user's administrative records (not the audit trail).
    pub async fn erase_user(&self, org: &str, user_id: &str) -> Result<bool> {
        let (org, user_id) = (org.to_owned(), user_id.to_owned());
        self.call(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let n = tx.execute(
                "DELETE FROM admin_users WHERE org = ?1 AND user_id = ?2",
                [&org, &user_id],
            )?;
            tx.execute("DELETE FROM admin_activity WHERE user_id = ?1", [&user_id])?;
            tx.execute(
                "DELETE FROM admin_restrictions WHERE org = ?1 AND scope = 'user' AND scope_id = ?2",
                [&org, &user_id],
            )?;
            tx.execute(
                "DELETE FROM admin_allow_list WHERE org = ?1 AND entry = ?2",
                [&org, &user_id],
            )?;
            tx.execute(
                "DELETE FROM admin_wipes WHERE org = ?1 AND user_id = ?2",
                [&org, &user_id],
            )?;
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }

    // --- departments, barriers, allow-list, restrictions --------------------

    /// Creates or updates a department.
    pub async fn put_department(&self, org: &str, name: &str, closed: bool) -> Result<()> {
        let (org, name) = (org.to_owned(), name.to_owned());
        self.call(move |c| {
            c.execute(
                "INSERT INTO admin_departments (org, name, closed) VALUES (?1, ?2, ?3) ON CONFLICT (org, name) DO UPDATE SET closed = excluded.closed",
                params![org, name, closed],
            )?;
            Ok(())
        })
        .await
    }

    /// Deletes a department with no users; its barrier rows go with it.
    pub async fn delete_department(&self, org: &str, name: &str) -> Result<bool> {
        let (org, name) = (org.to_owned(), name.to_owned());
        self.call(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let members: i64 = tx.query_row(
                "SELECT COUNT(*) FROM admin_users WHERE org = ?1 AND department = ?2",
                [&org, &name],
                |r| r.get(0),
            )?;
            if members > 0 {
                return Err(Error::Conflict(format!(
                    "department {name} still has {members} users; move them first"
                )));
            }
            let n = tx.execute(
                "DELETE FROM admin_departments WHERE org = ?1 AND name = ?2",
                [&org, &name],
            )?;
            tx.execute(
                "DELETE FROM admin_barriers WHERE org = ?1 AND (dept_a = ?2 OR dept_b = ?2)",
                [&org, &name],
            )?;
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }

    /// Sets what a pair of departments may exchange.
    pub async fn put_barrier(&self, org: &str, a: &str, b: &str, allow: Allowance) -> Result<()> {
        let (org, (a, b)) = (org.to_owned(), crate::directory::pair(a, b));
        self.call(move |c| {
            c.execute(
                "INSERT INTO admin_barriers (org, dept_a, dept_b, messages, groups_, files) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (org, dept_a, dept_b) DO UPDATE SET messages = excluded.messages, groups_ = excluded.groups_, files = excluded.files",
                params![org, a, b, allow.messages, allow.groups, allow.files],
            )?;
            Ok(())
        })
        .await
    }

    /// The departments and matrix of one organisation.
    pub async fn barriers(&self, org: &str) -> Result<Barriers> {
        let org = org.to_owned();
        self.call(move |c| {
            let mut out = Barriers::default();
            let mut stmt = c.prepare("SELECT name, closed FROM admin_departments WHERE org = ?1")?;
            for row in stmt.query_map([&org], |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?)))? {
                let (name, closed) = row?;
                out.departments.insert(name, closed);
            }
            let mut stmt = c.prepare(
                "SELECT dept_a, dept_b, messages, groups_, files FROM admin_barriers WHERE org = ?1",
            )?;
            for row in stmt.query_map([&org], |r| {
                Ok((
                    (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                    Allowance {
                        messages: r.get(2)?,
                        groups: r.get(3)?,
                        files: r.get(4)?,
                    },
                ))
            })? {
                let (key, allow) = row?;
                out.matrix.insert(key, allow);
            }
            Ok(out)
        })
        .await
    }

    /// The organisations that have users or departments.
    pub async fn orgs(&self) -> Result<Vec<String>> {
        self.call(move |c| {
            let mut stmt = c.prepare("SELECT id FROM admin_orgs ORDER BY id")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// Adds or removes an allow-list entry; false when nothing changed.
    pub async fn set_allow_list_entry(
        &self,
        org: &str,
        entry: &str,
        present: bool,
    ) -> Result<bool> {
        let (org, entry) = (org.to_owned(), entry.to_owned());
        self.call(move |c| {
            let sql = if present {
                "INSERT INTO admin_allow_list (org, entry) VALUES (?1, ?2) ON CONFLICT DO NOTHING"
            } else {
                "DELETE FROM admin_allow_list WHERE org = ?1 AND entry = ?2"
            };
            Ok(c.execute(sql, [org, entry])? > 0)
        })
        .await
    }

    /// The allow-list of an organisation.
    pub async fn allow_list(&self, org: &str) -> Result<Vec<String>> {
        let org = org.to_owned();
        self.call(move |c| {
            let mut stmt =
                c.prepare("SELECT entry FROM admin_allow_list WHERE org = ?1 ORDER BY entry")?;
            let rows = stmt.query_map([org], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// Sets (or with `None` clears) the restrictions at a scope.
    pub async fn set_restrictions(
        &self,
        org: &str,
        scope: Scope,
        scope_id: &str,
        settings: Option<&RestrictionSettings>,
    ) -> Result<()> {
        let (org, scope_id) = (org.to_owned(), scope_id.to_owned());
        let json = settings
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| Error::Store(e.to_string()))?;
        self.call(move |c| {
            match json {
                Some(json) => c.execute(
                    "INSERT INTO admin_restrictions (org, scope, scope_id, settings) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (org, scope, scope_id) DO UPDATE SET settings = excluded.settings",
                    params![org, scope.as_str(), scope_id, json],
                )?,
                None => c.execute(
                    "DELETE FROM admin_restrictions WHERE org = ?1 AND scope = ?2 AND scope_id = ?3",
                    params![org, scope.as_str(), scope_id],
                )?,
            };
            Ok(())
        })
        .await
    }

    /// Every restriction row of an organisation: (scope, id, settings).
    pub async fn restrictions(
        &self,
        org: &str,
    ) -> Result<Vec<(Scope, String, RestrictionSettings)>> {
        let org = org.to_owned();
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT scope, scope_id, settings FROM admin_restrictions WHERE org = ?1 ORDER BY scope, scope_id",
            )?;
            let rows = stmt.query_map([org], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (scope, id, json) = row?;
                let scope = Scope::parse(&scope)
                    .ok_or_else(|| Error::Store(format!("unknown scope {scope} in the database")))?;
                let settings = serde_json::from_str(&json).map_err(|e| Error::Store(e.to_string()))?;
                out.push((scope, id, settings));
            }
            Ok(out)
        })
        .await
    }

    // --- activity ------------------------------------------------------------

    /// Adds message counts for a day (`YYYY-MM-DD`).
    pub async fn add_activity(&self, day: String, counts: Vec<(String, u32, u32)>) -> Result<()> {
        self.call(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for (user, sent, received) in counts {
                tx.execute(
                    "INSERT INTO admin_activity (user_id, day, sent, received) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (user_id, day) DO UPDATE SET sent = sent + excluded.sent, received = received + excluded.received",
                    params![user, day, sent, received],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Drops activity counts of days before `before_day` (`YYYY-MM-DD`)
    /// and archive parts and requests created before `before_ms`; returns
    /// (count rows, archive requests) dropped.
    pub async fn expire(
        &self,
        before_day: String,
        archives_before_ms: i64,
    ) -> Result<(usize, usize)> {
        self.call(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let counts = tx.execute("DELETE FROM admin_activity WHERE day < ?1", [&before_day])?;
            tx.execute(
                "DELETE FROM admin_archive_parts WHERE archive IN (SELECT id FROM admin_archives WHERE created_at_ms < ?1)",
                [archives_before_ms],
            )?;
            tx.execute(
                "DELETE FROM admin_archive_devices WHERE archive IN (SELECT id FROM admin_archives WHERE created_at_ms < ?1)",
                [archives_before_ms],
            )?;
            let archives = tx.execute("DELETE FROM admin_archives WHERE created_at_ms < ?1", [archives_before_ms])?;
            tx.commit()?;
            Ok((counts, archives))
        })
        .await
    }

    /// A user's counts per day, oldest first: (day, sent, received).
    pub async fn activity(&self, user_id: &str) -> Result<Vec<(String, i64, i64)>> {
        let user_id = user_id.to_owned();
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT day, sent, received FROM admin_activity WHERE user_id = ?1 ORDER BY day",
            )?;
            let rows = stmt.query_map([user_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    // --- wipes, archives, broadcasts ------------------------------------------

    /// Records a wipe.
    pub async fn insert_wipe(&self, w: WipeRow) -> Result<i64> {
        self.call(move |c| {
            c.execute(
                "INSERT INTO admin_wipes (org, user_id, device, command_id, requested_by, requested_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![w.org, w.user_id, w.device, w.command_id, w.requested_by, w.requested_at_ms],
            )?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    /// The wipes of an organisation, newest first.
    pub async fn wipes(&self, org: &str) -> Result<Vec<WipeRow>> {
        let org = org.to_owned();
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT id, org, user_id, device, command_id, requested_by, requested_at_ms FROM admin_wipes WHERE org = ?1 ORDER BY id DESC",
            )?;
            let rows = stmt.query_map([org], |r| {
                Ok(WipeRow {
                    id: r.get(0)?,
                    org: r.get(1)?,
                    user_id: r.get(2)?,
                    device: r.get(3)?,
                    command_id: r.get(4)?,
                    requested_by: r.get(5)?,
                    requested_at_ms: r.get(6)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// Records an archive request and the devices asked, in one transaction.
    pub async fn insert_archive(
        &self,
        a: ArchiveRow,
        devices: Vec<(String, String, i64)>,
    ) -> Result<()> {
        self.call(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let users = serde_json::to_string(&a.users).map_err(|e| Error::Store(e.to_string()))?;
            tx.execute(
                "INSERT INTO admin_archives (id, org, requested_by, users, from_ms, to_ms, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![a.id, a.org, a.requested_by, users, a.from_ms, a.to_ms, a.created_at_ms],
            )?;
            for (device, user, command) in devices {
                tx.execute(
                    "INSERT INTO admin_archive_devices (archive, device, user_id, command_id) VALUES (?1, ?2, ?3, ?4)",
                    params![a.id, device, user, command],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// An archive request of an organisation and its devices: (device,
    /// user, command).
    pub async fn archive(
        &self,
        org: &str,
        id: &str,
    ) -> Result<Option<(ArchiveRow, Vec<(String, String, i64)>)>> {
        let (org, id) = (org.to_owned(), id.to_owned());
        self.call(move |c| {
            let row = c
                .query_row(
                    "SELECT id, org, requested_by, users, from_ms, to_ms, created_at_ms FROM admin_archives WHERE org = ?1 AND id = ?2",
                    [&org, &id],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, i64>(4)?,
                            r.get::<_, i64>(5)?,
                            r.get::<_, i64>(6)?,
                        ))
                    },
                )
                .optional()?;
            let Some((id, org, by, users, from_ms, to_ms, created)) = row else {
                return Ok(None);
            };
            let users: Vec<String> = serde_json::from_str(&users).map_err(|e| Error::Store(e.to_string()))?;
            let mut stmt = c.prepare(
                "SELECT device, user_id, command_id FROM admin_archive_devices WHERE archive = ?1 ORDER BY user_id, device",
            )?;
            let devices = stmt
                .query_map([&id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(Some((
                ArchiveRow { id, org, requested_by: by, users, from_ms, to_ms, created_at_ms: created },
                devices,
            )))
        })
        .await
    }

    /// The archive requests of an organisation, newest first.
    pub async fn archive_ids(&self, org: &str) -> Result<Vec<String>> {
        let org = org.to_owned();
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT id FROM admin_archives WHERE org = ?1 ORDER BY created_at_ms DESC, id",
            )?;
            let rows = stmt.query_map([org], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// Keeps a sealed part.
    pub async fn put_archive_part(
        &self,
        archive: &str,
        device: &str,
        blob_id: &str,
        bytes: Vec<u8>,
    ) -> Result<()> {
        let (archive, device, blob_id) =
            (archive.to_owned(), device.to_owned(), blob_id.to_owned());
        self.call(move |c| {
            c.execute(
                "INSERT INTO admin_archive_parts (archive, device, blob_id, bytes) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                params![archive, device, blob_id, bytes],
            )?;
            Ok(())
        })
        .await
    }

    /// The parts kept for an archive: (device, blob id, bytes).
    pub async fn archive_parts(&self, archive: &str) -> Result<Vec<(String, String, Vec<u8>)>> {
        let archive = archive.to_owned();
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT device, blob_id, bytes FROM admin_archive_parts WHERE archive = ?1 ORDER BY device, blob_id",
            )?;
            let rows = stmt.query_map([archive], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// Records a broadcast.
    pub async fn insert_broadcast(
        &self,
        org: &str,
        by: &str,
        scope: &str,
        devices: usize,
        now_ms: i64,
    ) -> Result<i64> {
        let (org, by, scope) = (org.to_owned(), by.to_owned(), scope.to_owned());
        self.call(move |c| {
            c.execute(
                "INSERT INTO admin_broadcasts (org, sent_by, scope, devices, sent_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![org, by, scope, devices as i64, now_ms],
            )?;
            Ok(c.last_insert_rowid())
        })
        .await
    }
}
