//! The encrypted local store: a key file wrapped by scrypt(PIN) exactly as
//! protocol.md says, and a SQLite database whose sensitive columns are
//! records encrypted under that key, each bound to its table and row.
//!
//! Files in the data directory: `store.key` (the key file), `agent.db`,
//! `pin-attempts.json` (failed PIN entries and the policy's limit: needed
//! before unlocking, so not encrypted, and secret-free), and `WIPED` after a
//! wipe. A wipe removes the key file first: from then on the rest is
//! unreadable even if deleting it fails.

use std::path::{Path, PathBuf};

use kontor_crypto::{RecordCipher, StoreKey};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

const KEY_FILE: &str = "store.key";
const DB_FILE: &str = "agent.db";
const ATTEMPTS_FILE: &str = "pin-attempts.json";
const WIPED_FILE: &str = "WIPED";

/// Failed PIN entries so far and the limit before a wipe.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Attempts {
    failed: u32,
    max: u32,
}

/// An unlocked local store.
pub struct LocalStore {
    dir: PathBuf,
    conn: Connection,
    cipher: RecordCipher,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// One message as the device keeps it (decrypted in memory only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// `user:<id>` or `group:<hex>`.
    pub conversation: String,
    /// The sending user.
    pub from_user: String,
    /// The sending device, hex.
    pub from_device: String,
    /// Whether this device sent it.
    pub outgoing: bool,
    /// The kind from the inner content (`text`, `file`, `system`, ...), or
    /// `broadcast` for a message from the administration (made only from a
    /// relay command, see [`crate::command`]).
    pub kind: String,
    /// The text, for text messages; a summary otherwise.
    pub text: String,
    /// The sender's clock, for display.
    pub sent_at_ms: i64,
    /// The attachment a file message carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<AttachmentRef>,
}

/// Where a received file is and how to open it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRef {
    /// The blob id, hex.
    pub blob_id: String,
    /// The blob's 64-byte key, hex (kept encrypted in the store).
    pub key: String,
    /// The uploading device, hex (bound into the blob's MAC).
    pub sender_device: String,
    /// File name.
    pub name: String,
    /// Media type.
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
}

/// A pinned contact device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// The user the device belongs to.
    pub user: String,
    /// Its identity key, hex.
    pub identity_key: String,
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, e))?;
    file.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    file.sync_all().map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

fn read_attempts(dir: &Path) -> Result<Attempts> {
    let path = dir.join(ATTEMPTS_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text)
        .map_err(|_| Error::Corrupt(format!("{} is not valid", path.display())))
}

fn write_attempts(dir: &Path, attempts: Attempts) -> Result<()> {
    let text = serde_json::to_vec(&attempts).map_err(|e| Error::Corrupt(e.to_string()))?;
    write_private(&dir.join(ATTEMPTS_FILE), &text)
}

/// The PIN as scrypt sees it: Unicode NFC, so "Prüfung" typed with a
/// composed or a decomposed ü unlocks the same store.
fn normalize_pin(pin: &str) -> Zeroizing<String> {
    use unicode_normalization::UnicodeNormalization;
    Zeroizing::new(pin.nfc().collect())
}

/// Whether `dir` holds an enrolled store.
pub fn exists(dir: &Path) -> bool {
    dir.join(KEY_FILE).exists()
}

/// Whether `dir` was wiped.
pub fn was_wiped(dir: &Path) -> bool {
    dir.join(WIPED_FILE).exists()
}

/// Destroys the store: the key file first, then the database and the rest.
pub fn wipe(dir: &Path) -> Result<()> {
    let key = dir.join(KEY_FILE);
    if key.exists() {
        // Overwrite, then remove: the key file is what makes the data readable.
        let len = std::fs::metadata(&key).map(|m| m.len()).unwrap_or(0);
        let _ = std::fs::write(&key, vec![0u8; usize::try_from(len).unwrap_or(0)]);
        std::fs::remove_file(&key).map_err(|e| Error::io(&key, e))?;
    }
    for name in [DB_FILE, "agent.db-wal", "agent.db-shm", ATTEMPTS_FILE] {
        let path = dir.join(name);
        if path.exists() {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    write_private(&dir.join(WIPED_FILE), b"wiped\n")
}

fn migrate(conn: &Connection) -> Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(Error::db)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(Error::db)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, record BLOB NOT NULL);
         CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, record BLOB NOT NULL);
         CREATE TABLE IF NOT EXISTS seen (digest BLOB PRIMARY KEY);
         CREATE TABLE IF NOT EXISTS contacts (device TEXT PRIMARY KEY, record BLOB NOT NULL);",
    )
    .map_err(Error::db)
}

impl LocalStore {
    /// Creates a store in `dir` under `pin` (scrypt N = 2^17), with the
    /// policy's limit of failed PIN entries.
    pub fn create(dir: &Path, pin: &str, max_failed_attempts: u32) -> Result<Self> {
        if exists(dir) {
            return Err(Error::AlreadyEnrolled(dir.display().to_string()));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let (key, file) =
            kontor_crypto::create_key_file(&mut kontor_crypto::os_rng(), &normalize_pin(pin))
                .map_err(|e| Error::Corrupt(e.to_string()))?;
        let _ = std::fs::remove_file(dir.join(WIPED_FILE));
        write_attempts(
            dir,
            Attempts {
                failed: 0,
                max: max_failed_attempts.max(1),
            },
        )?;
        write_private(&dir.join(KEY_FILE), &file)?;
        Self::open_db(dir, &key)
    }

    /// Unlocks the store with `pin`. A wrong PIN counts; at the policy's
    /// limit the store is wiped.
    pub fn unlock(dir: &Path, pin: &str) -> Result<Self> {
        if !exists(dir) {
            return Err(if was_wiped(dir) {
                Error::Wiped
            } else {
                Error::NotEnrolled(dir.display().to_string())
            });
        }
        let key_path = dir.join(KEY_FILE);
        let file = std::fs::read(&key_path).map_err(|e| Error::io(&key_path, e))?;
        let mut attempts = read_attempts(dir)?;
        match kontor_crypto::open_key_file(&file, &normalize_pin(pin)) {
            Ok(key) => {
                if attempts.failed != 0 {
                    attempts.failed = 0;
                    write_attempts(dir, attempts)?;
                }
                Self::open_db(dir, &key)
            }
            Err(kontor_crypto::Error::Pin) => {
                attempts.failed += 1;
                if attempts.failed >= attempts.max {
                    wipe(dir)?;
                    return Err(Error::Wiped);
                }
                write_attempts(dir, attempts)?;
                Err(Error::WrongPin {
                    left: attempts.max - attempts.failed,
                })
            }
            Err(e) => Err(Error::Corrupt(format!("key file: {e}"))),
        }
    }

    fn open_db(dir: &Path, key: &StoreKey) -> Result<Self> {
        let path = dir.join(DB_FILE);
        let conn = Connection::open(&path).map_err(Error::db)?;
        migrate(&conn)?;
        Ok(Self {
            dir: dir.to_owned(),
            conn,
            cipher: RecordCipher::new(key),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores a secret value under `name`.
    pub fn put_secret(&self, name: &str, value: &[u8]) -> Result<()> {
        let record = self.cipher.seal(
            &mut kontor_crypto::os_rng(),
            "secrets",
            name.as_bytes(),
            value,
        );
        self.conn
            .execute(
                "INSERT INTO secrets (name, record) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET record = excluded.record",
                params![name, record],
            )
            .map_err(Error::db)?;
        Ok(())
    }

    /// A secret value.
    pub fn secret(&self, name: &str) -> Result<Zeroizing<Vec<u8>>> {
        let record: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT record FROM secrets WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(Error::db)?;
        let record = record.ok_or_else(|| Error::Corrupt(format!("secret {name} missing")))?;
        self.cipher
            .open("secrets", name.as_bytes(), &record)
            .map_err(|_| Error::Corrupt(format!("secret {name} failed authentication")))
    }

    /// A secret as UTF-8 text.
    pub fn secret_text(&self, name: &str) -> Result<String> {
        String::from_utf8(self.secret(name)?.to_vec())
            .map_err(|_| Error::Corrupt(format!("secret {name} is not text")))
    }

    /// Stores a received message unless `(sender device, message id)` was
    /// seen before (a replay: `false`, nothing stored). Both in one
    /// transaction: a message is never marked seen without being stored.
    pub fn add_received(
        &self,
        sender_device: &[u8; 16],
        message_id: &[u8; 16],
        message: &StoredMessage,
    ) -> Result<bool> {
        let digest: [u8; 32] = Sha256::new()
            .chain_update(sender_device)
            .chain_update(message_id)
            .finalize()
            .into();
        let tx = self.conn.unchecked_transaction().map_err(Error::db)?;
        let new = tx
            .execute(
                "INSERT OR IGNORE INTO seen (digest) VALUES (?1)",
                [digest.to_vec()],
            )
            .map_err(Error::db)?
            == 1;
        if new {
            self.insert_message(&tx, message)?;
            tx.commit().map_err(Error::db)?;
        }
        Ok(new)
    }

    /// Stores a message (one this device sent); returns its local id.
    pub fn add_message(&self, message: &StoredMessage) -> Result<i64> {
        let tx = self.conn.unchecked_transaction().map_err(Error::db)?;
        let id = self.insert_message(&tx, message)?;
        tx.commit().map_err(Error::db)?;
        Ok(id)
    }

    fn insert_message(
        &self,
        tx: &rusqlite::Transaction<'_>,
        message: &StoredMessage,
    ) -> Result<i64> {
        let id: i64 = tx
            .query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM messages", [], |r| {
                r.get(0)
            })
            .map_err(Error::db)?;
        let plain =
            Zeroizing::new(serde_json::to_vec(message).map_err(|e| Error::Corrupt(e.to_string()))?);
        let record = self.cipher.seal(
            &mut kontor_crypto::os_rng(),
            "messages",
            &id.to_be_bytes(),
            &plain,
        );
        tx.execute(
            "INSERT INTO messages (id, record) VALUES (?1, ?2)",
            params![id, record],
        )
        .map_err(Error::db)?;
        Ok(id)
    }

    /// Every stored message, oldest first.
    pub fn messages(&self) -> Result<Vec<StoredMessage>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, record FROM messages ORDER BY id")
            .map_err(Error::db)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
            .map_err(Error::db)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, record) = row.map_err(Error::db)?;
            let plain = self
                .cipher
                .open("messages", &id.to_be_bytes(), &record)
                .map_err(|_| Error::Corrupt(format!("message {id} failed authentication")))?;
            out.push(
                serde_json::from_slice(&plain)
                    .map_err(|_| Error::Corrupt(format!("message {id} is not valid")))?,
            );
        }
        Ok(out)
    }

    /// A pinned contact device.
    pub fn contact(&self, device_hex: &str) -> Result<Option<Contact>> {
        let record: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT record FROM contacts WHERE device = ?1",
                [device_hex],
                |r| r.get(0),
            )
            .optional()
            .map_err(Error::db)?;
        let Some(record) = record else {
            return Ok(None);
        };
        let plain = self
            .cipher
            .open("contacts", device_hex.as_bytes(), &record)
            .map_err(|_| Error::Corrupt("contact failed authentication".into()))?;
        serde_json::from_slice(&plain)
            .map(Some)
            .map_err(|_| Error::Corrupt("contact is not valid".into()))
    }

    /// Pins a contact device's key.
    pub fn put_contact(&self, device_hex: &str, contact: &Contact) -> Result<()> {
        let plain = serde_json::to_vec(contact).map_err(|e| Error::Corrupt(e.to_string()))?;
        let record = self.cipher.seal(
            &mut kontor_crypto::os_rng(),
            "contacts",
            device_hex.as_bytes(),
            &plain,
        );
        self.conn
            .execute(
                "INSERT INTO contacts (device, record) VALUES (?1, ?2) ON CONFLICT (device) DO UPDATE SET record = excluded.record",
                params![device_hex, record],
            )
            .map_err(Error::db)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Each create/unlock runs scrypt at N = 2^17 (about half a second).

    #[test]
    fn records_are_encrypted_and_a_wrong_pin_limit_wipes() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::create(dir.path(), "4711", 2).unwrap();
        store.put_secret("identity", b"very secret marker").unwrap();
        let message = StoredMessage {
            conversation: "user:ben".into(),
            from_user: "ben".into(),
            from_device: "00".into(),
            outgoing: false,
            kind: "text".into(),
            text: "MARKER-TEXT-4711".into(),
            sent_at_ms: 1,
            attachment: None,
        };
        assert!(store.add_received(&[1; 16], &[2; 16], &message).unwrap());
        // A replay is refused and not stored twice.
        assert!(!store.add_received(&[1; 16], &[2; 16], &message).unwrap());
        assert_eq!(store.messages().unwrap().len(), 1);
        drop(store);
        let db = std::fs::read(dir.path().join(DB_FILE)).unwrap();
        let wal = std::fs::read(dir.path().join("agent.db-wal")).unwrap_or_default();
        for bytes in [&db, &wal] {
            assert!(!bytes.windows(16).any(|w| w == b"MARKER-TEXT-4711"));
            assert!(!bytes.windows(18).any(|w| w == b"very secret marker"));
        }
        let store = LocalStore::unlock(dir.path(), "4711").unwrap();
        assert_eq!(store.messages().unwrap()[0].text, "MARKER-TEXT-4711");
        assert_eq!(
            &store.secret("identity").unwrap()[..],
            b"very secret marker"
        );
        drop(store);
        assert!(matches!(
            LocalStore::unlock(dir.path(), "0000"),
            Err(Error::WrongPin { left: 1 })
        ));
        assert!(matches!(
            LocalStore::unlock(dir.path(), "0000"),
            Err(Error::Wiped)
        ));
        assert!(!dir.path().join(KEY_FILE).exists());
        assert!(matches!(
            LocalStore::unlock(dir.path(), "4711"),
            Err(Error::Wiped)
        ));
    }

    #[test]
    fn a_pin_unlocks_whether_its_umlaut_is_composed_or_not() {
        let dir = tempfile::tempdir().unwrap();
        drop(LocalStore::create(dir.path(), "Pr\u{fc}fung1", 5).unwrap());
        assert!(LocalStore::unlock(dir.path(), "Pru\u{308}fung1").is_ok());
    }

    #[test]
    fn a_corrupt_key_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        drop(LocalStore::create(dir.path(), "4711", 5).unwrap());
        std::fs::write(dir.path().join(KEY_FILE), b"KTRK\x01garbage").unwrap();
        assert!(matches!(
            LocalStore::unlock(dir.path(), "4711"),
            Err(Error::Corrupt(_))
        ));
        assert!(matches!(
            LocalStore::unlock(&dir.path().join("nothing"), "4711"),
            Err(Error::NotEnrolled(_))
        ));
    }
}
