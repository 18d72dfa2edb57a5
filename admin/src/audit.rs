//! The audit trail: every admin action, every enrollment, revocation, wipe,
//! refused access and archive access, written before the action takes
//! effect.
//!
//! # The chain
//!
//! Entries are numbered 1, 2, 3, ... without gaps. Each entry carries the
//! hash of the entry before it (32 zero bytes for entry 1) and its own hash,
//! SHA-256 over
//!
//! ```text
//! "kontor-audit-v1\0" || prev_hash(32) || u64be(seq) || i64be(at_ms)
//!   || for org, actor, action, target, outcome, compact JSON of detail:
//!        u32be(byte length) || UTF-8 bytes
//! ```
//!
//! The length prefixes keep neighbouring fields from trading bytes. The
//! detail's compact JSON is what `serde_json` writes for the value (object
//! keys sorted), which is also how it is stored. A head row keeps the number
//! and hash of the last entry, so that cutting entries off the end shows.
//!
//! # What verification detects
//!
//! [`verify_chain`] and [`AuditLog::verify`] walk the trail in order and
//! report the first of these problems:
//!
//! - an entry whose content no longer matches its hash (edited);
//! - a number out of sequence (entries deleted, inserted or reordered);
//! - an entry that matches its own hash but not its predecessor's (one of
//!   the two was rewritten together with its hash);
//! - a stored value that cannot be read back at all (edited);
//! - a trail that ends before or after the head, or whose last hash differs
//!   from the head's (entries deleted at the end, head rewritten).
//!
//! SQLite triggers refuse `UPDATE` and `DELETE` on the trail. They guard
//! against mistakes, not against an attacker: whoever can write the file can
//! drop them, so verification never relies on them.
//!
//! # The limit
//!
//! The chain is not signed. An attacker who can rewrite the whole database,
//! entries and head together, can recompute every hash from the first entry
//! they change and the trail verifies again. The defence is a copy the
//! attacker cannot reach: export the trail as syslog lines ([`syslog_line`],
//! `kontor audit export --format syslog`) to a collector off the host as it
//! grows. Every line carries its entry's hash, so the copy pins the chain and
//! a rewritten trail no longer matches it.
//!
//! # Layout
//!
//! - Pure core, no I/O, time passed in: [`NewEntry`], [`Entry`],
//!   [`entry_hash`], [`Verifier`] and [`verify_chain`], [`Filter`],
//!   [`json_line`], [`syslog_line`].
//! - SQLite shell: [`AuditLog`] (synchronous; async callers wrap it in
//!   `spawn_blocking`) and [`verify_database`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Longest org, actor, action or target, in characters.
pub const FIELD_CHARS_MAX: usize = 512;
/// Largest detail, as compact JSON, in bytes.
pub const DETAIL_BYTES_MAX: usize = 16 * 1024;
/// Most entries one [`AuditLog::query`] returns.
pub const QUERY_LIMIT_MAX: usize = 10_000;
/// The previous hash of entry 1.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// Separates this hash from every other SHA-256 use in Kontor.
const DOMAIN: &[u8] = b"kontor-audit-v1\0";
/// The structured-data id of syslog lines. 32473 is the private enterprise
/// number RFC 5612 reserves for documentation; an `@` id is ours to define.
const SD_ID: &str = "kontor@32473";
/// Syslog facility authpriv (RFC 5424 table 1).
const FACILITY_AUTHPRIV: u8 = 10;

/// An error of the audit trail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A new entry breaks a rule; nothing was written.
    #[error("invalid audit entry: {0}")]
    InvalidEntry(String),
    /// A filter breaks a rule.
    #[error("invalid audit filter: {0}")]
    InvalidFilter(String),
    /// A time is not RFC 3339.
    #[error("invalid time {input:?}: expected RFC 3339, like 2025-01-31T12:00:00Z")]
    InvalidTime {
        /// What was given.
        input: String,
    },
    /// There is no database file to open read-only.
    #[error("no database at {}", .0.display())]
    NoDatabase(PathBuf),
    /// The database exists but holds no audit trail.
    #[error("{} holds no audit trail (table admin_audit is missing)", .0.display())]
    NoTrail(PathBuf),
    /// A stored entry cannot be read back; the trail was tampered with.
    #[error("stored audit entry {seq} is malformed: its {what} cannot be read")]
    Malformed {
        /// The entry's number as stored.
        seq: i64,
        /// Which column.
        what: &'static str,
    },
    /// The trail has reached the largest number SQLite can store.
    #[error("the audit trail is full")]
    Full,
    /// The database failed, or refused a write (a trigger, a full disk).
    #[error("audit database: {0}")]
    Database(#[from] rusqlite::Error),
}

/// The result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How an audited action went. An action is logged as `requested` before it
/// takes effect and may be followed by `done` or `failed`; `refused` records
/// access that was denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// About to happen.
    Requested,
    /// Happened.
    Done,
    /// Denied by policy or permissions.
    Refused,
    /// Attempted and did not succeed.
    Failed,
}

impl Outcome {
    /// The lowercase name, as stored, hashed and exported.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Requested => "requested",
            Outcome::Done => "done",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }

    /// The outcome named `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "requested" => Some(Outcome::Requested),
            "done" => Some(Outcome::Done),
            "refused" => Some(Outcome::Refused),
            "failed" => Some(Outcome::Failed),
            _ => None,
        }
    }

    /// RFC 5424 severity: notice (5) for what went as asked, warning (4)
    /// for what was refused or failed.
    fn syslog_severity(self) -> u8 {
        match self {
            Outcome::Requested | Outcome::Done => 5,
            Outcome::Refused | Outcome::Failed => 4,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the caller records; the trail adds number, time and hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// The organisation; empty for actions outside any organisation.
    pub org: String,
    /// Who acted: an admin account, a device, `system`.
    pub actor: String,
    /// What was done, `[a-z][a-z0-9_.]*`, like `device.wipe`.
    pub action: String,
    /// What it was done to.
    pub target: String,
    /// How it went.
    pub outcome: Outcome,
    /// Anything else worth keeping, at most [`DETAIL_BYTES_MAX`] as JSON.
    pub detail: Value,
}

impl NewEntry {
    /// Checks the rules [`AuditLog::append`] enforces: actor, action and
    /// target non-empty; every text at most [`FIELD_CHARS_MAX`] characters
    /// without control characters; the action `[a-z][a-z0-9_.]*`; the detail
    /// at most [`DETAIL_BYTES_MAX`] bytes of JSON.
    pub fn validate(&self) -> Result<()> {
        let invalid = |why: String| Err(Error::InvalidEntry(why));
        for (name, value, may_be_empty) in [
            ("org", &self.org, true),
            ("actor", &self.actor, false),
            ("action", &self.action, false),
            ("target", &self.target, false),
        ] {
            if let Some(why) = text_problem(value, may_be_empty) {
                return invalid(format!("{name} {why}"));
            }
        }
        if !is_action_name(&self.action) {
            return invalid(format!(
                "action {:?} must be lowercase letters, digits, '_' and '.', starting with a letter",
                self.action
            ));
        }
        let detail_bytes = self.detail.to_string().len();
        if detail_bytes > DETAIL_BYTES_MAX {
            return invalid(format!(
                "detail is {detail_bytes} bytes of JSON, above the limit of {DETAIL_BYTES_MAX}"
            ));
        }
        Ok(())
    }
}

/// Why `value` is not acceptable as an entry's text, if it is not.
fn text_problem(value: &str, may_be_empty: bool) -> Option<String> {
    if value.is_empty() && !may_be_empty {
        return Some("is empty".to_owned());
    }
    let chars = value.chars().count();
    if chars > FIELD_CHARS_MAX {
        return Some(format!(
            "is {chars} characters, above the limit of {FIELD_CHARS_MAX}"
        ));
    }
    if value.chars().any(char::is_control) {
        return Some("contains a control character".to_owned());
    }
    None
}

fn is_action_name(action: &str) -> bool {
    let mut chars = action.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
}

/// One entry of the trail.
///
/// As JSON the hashes are lowercase hex; everything else is as named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The entry's number, from 1, without gaps.
    pub seq: u64,
    /// When it was written, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// See [`NewEntry::org`].
    pub org: String,
    /// See [`NewEntry::actor`].
    pub actor: String,
    /// See [`NewEntry::action`].
    pub action: String,
    /// See [`NewEntry::target`].
    pub target: String,
    /// See [`NewEntry::outcome`].
    pub outcome: Outcome,
    /// See [`NewEntry::detail`].
    pub detail: Value,
    /// The hash of the entry before ([`GENESIS_HASH`] for entry 1).
    #[serde(with = "hex32")]
    pub prev_hash: [u8; 32],
    /// This entry's [`entry_hash`].
    #[serde(with = "hex32")]
    pub hash: [u8; 32],
}

impl Entry {
    /// Chains `new`, written at `at_ms`, onto the trail whose last entry is
    /// `prev` ([`Head::GENESIS`] for an empty trail).
    pub fn after(prev: &Head, new: NewEntry, at_ms: i64) -> Entry {
        // 2^64 entries are out of reach; the store refuses numbers above
        // i64::MAX long before.
        let seq = prev.seq.saturating_add(1);
        let hash = entry_hash(
            &prev.hash,
            seq,
            at_ms,
            &new.org,
            &new.actor,
            &new.action,
            &new.target,
            new.outcome,
            &new.detail,
        );
        Entry {
            seq,
            at_ms,
            org: new.org,
            actor: new.actor,
            action: new.action,
            target: new.target,
            outcome: new.outcome,
            detail: new.detail,
            prev_hash: prev.hash,
            hash,
        }
    }

    /// The hash this entry's content calls for; equal to `hash` unless the
    /// entry was edited.
    pub fn computed_hash(&self) -> [u8; 32] {
        entry_hash(
            &self.prev_hash,
            self.seq,
            self.at_ms,
            &self.org,
            &self.actor,
            &self.action,
            &self.target,
            self.outcome,
            &self.detail,
        )
    }
}

/// The hash of one entry; see the module documentation for the exact bytes.
#[allow(
    clippy::too_many_arguments,
    reason = "the parameters spell out, in order, everything the hash covers"
)]
pub fn entry_hash(
    prev_hash: &[u8; 32],
    seq: u64,
    at_ms: i64,
    org: &str,
    actor: &str,
    action: &str,
    target: &str,
    outcome: Outcome,
    detail: &Value,
) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    hasher.update(prev_hash);
    hasher.update(seq.to_be_bytes());
    hasher.update(at_ms.to_be_bytes());
    let detail = detail.to_string();
    for field in [org, actor, action, target, outcome.as_str(), &detail] {
        // Fields are bounded far below 4 GiB by `NewEntry::validate`; a
        // larger hand-made one saturates rather than wrap.
        let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
        hasher.update(len.to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hasher.finalize().into()
}

/// The number and hash of the last entry of a trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The last entry's number; 0 for an empty trail.
    pub seq: u64,
    /// The last entry's hash; [`GENESIS_HASH`] for an empty trail.
    pub hash: [u8; 32],
}

impl Head {
    /// The head of an empty trail.
    pub const GENESIS: Head = Head {
        seq: 0,
        hash: GENESIS_HASH,
    };

    /// The head of a trail ending with `entry`.
    pub fn of(entry: &Entry) -> Head {
        Head {
            seq: entry.seq,
            hash: entry.hash,
        }
    }
}

/// Where a trail starts after retention deleted its oldest entries: the
/// number and hash of the last deleted entry, and when the deletion ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last deleted entry's number; the trail goes on at the next.
    pub through_seq: u64,
    /// The last deleted entry's hash, the next entry's previous hash.
    pub hash: [u8; 32],
    /// When the retention run wrote the checkpoint (ms since the epoch).
    pub at_ms: i64,
}

/// The action of the entry a retention run writes; its detail names the
/// checkpoint (`through_seq`, `checkpoint_hash`), which [`AuditLog::verify`]
/// requires.
pub const RETENTION_ACTION: &str = "audit.retention";

/// The prefix of every pseudonym in the trail.
pub const PSEUDONYM_PREFIX: &str = "pseudonym:";

/// Separates pseudonyms from every other HMAC use in Kontor.
const PSEUDONYM_DOMAIN: &[u8] = b"kontor-audit-pseudonym-v1\0";

/// The keyed pseudonym of a personal datum (a user id, a name) under an
/// organisation's audit pseudonym key: `pseudonym:` and the first 128 bits
/// of HMAC-SHA256(key, domain tag || value) in hex. The same value always
/// gives the same pseudonym, so entries about one person stay linked;
/// without the key a guessed value cannot be tested against it.
pub fn pseudonym(key: &[u8; 32], value: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(PSEUDONYM_DOMAIN);
    context.update(value.as_bytes());
    let tag = context.sign();
    format!("{PSEUDONYM_PREFIX}{}", hex::encode(&tag.as_ref()[..16]))
}

/// Whether `text` has the shape of a pseudonym.
pub fn is_pseudonym(text: &str) -> bool {
    text.strip_prefix(PSEUDONYM_PREFIX)
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The pseudonyms an entry carries: in actor, target (also as one of a
/// comma-separated list) and any string of the detail.
pub fn pseudonyms_in(entry: &Entry) -> std::collections::BTreeSet<String> {
    fn walk(value: &Value, out: &mut std::collections::BTreeSet<String>) {
        match value {
            Value::String(text) => texts(text, out),
            Value::Array(items) => items.iter().for_each(|item| walk(item, out)),
            Value::Object(fields) => fields.values().for_each(|item| walk(item, out)),
            _ => {}
        }
    }
    fn texts(text: &str, out: &mut std::collections::BTreeSet<String>) {
        for part in text.split(',') {
            if is_pseudonym(part) {
                out.insert(part.to_owned());
            }
        }
    }
    let mut out = std::collections::BTreeSet::new();
    texts(&entry.actor, &mut out);
    texts(&entry.target, &mut out);
    walk(&entry.detail, &mut out);
    out
}

/// Clear values of pseudonyms, as the mapping holds them; an erased
/// person's pseudonyms are missing and stay pseudonyms.
pub type Names = std::collections::BTreeMap<String, String>;

/// The first thing wrong with a trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The entry's content does not match its hash.
    Edited {
        /// The entry.
        seq: u64,
    },
    /// An entry's number is not the next one.
    OutOfSequence {
        /// The number that should have come.
        expected: u64,
        /// The number that came (as stored, so it may be zero or negative).
        found: i64,
    },
    /// The entry matches its own hash but its previous hash is not the
    /// hash of the entry before it.
    BrokenLink {
        /// The entry.
        seq: u64,
    },
    /// A stored column cannot be read back as what it should hold.
    Malformed {
        /// The entry's number as stored.
        seq: i64,
        /// Which column.
        what: &'static str,
    },
    /// The trail is shorter than its head says.
    EndsBeforeHead {
        /// The last entry's number.
        last: u64,
        /// The head's.
        head: u64,
    },
    /// The trail is longer than its head says.
    EndsAfterHead {
        /// The last entry's number.
        last: u64,
        /// The head's.
        head: u64,
    },
    /// The last entry's hash is not the head's.
    HeadMismatch {
        /// The last entry.
        seq: u64,
    },
    /// The stored head cannot be read back.
    MalformedHead,
    /// The retention checkpoint is not named by an `audit.retention` entry
    /// of the trail after it (checkpoint written or moved by hand).
    UnattestedCheckpoint {
        /// The checkpoint's last deleted entry.
        through_seq: u64,
    },
    /// The stored checkpoint cannot be read back.
    MalformedCheckpoint,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Edited { seq } => {
                write!(f, "entry {seq}: hash does not match its content (edited)")
            }
            Problem::OutOfSequence { expected, found } => write!(
                f,
                "entry {expected} expected, found {found} (entries deleted or reordered)"
            ),
            Problem::BrokenLink { seq } => write!(
                f,
                "entry {seq}: previous-hash link broken (entry {} or {seq} rewritten)",
                seq.saturating_sub(1)
            ),
            Problem::Malformed { seq, what } => {
                write!(f, "entry {seq}: stored {what} is malformed (edited)")
            }
            Problem::EndsBeforeHead { last, head } => write!(
                f,
                "the trail ends at entry {last} but its head says {head} (entries deleted at the end)"
            ),
            Problem::EndsAfterHead { last, head } => write!(
                f,
                "the trail goes on to entry {last} but its head says {head} (head rewritten or deleted)"
            ),
            Problem::HeadMismatch { seq } => write!(
                f,
                "entry {seq}: hash differs from the head's (last entry or head rewritten)"
            ),
            Problem::MalformedHead => f.write_str("the head is malformed (edited)"),
            Problem::UnattestedCheckpoint { through_seq } => write!(
                f,
                "the retention checkpoint at entry {through_seq} is not named by an audit.retention entry after it (checkpoint written by hand)"
            ),
            Problem::MalformedCheckpoint => {
                f.write_str("the retention checkpoint is malformed (edited)")
            }
        }
    }
}

/// The outcome of verifying a trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Where verification started: the retention checkpoint, when entries
    /// up to it were deleted by [`AuditLog::expire_before`].
    pub checkpoint: Option<Checkpoint>,
    /// How many entries checked out before the problem, or in all.
    pub entries: u64,
    /// The last entry that checked out.
    pub last: Head,
    /// The first problem, if any.
    pub problem: Option<Problem>,
}

impl Report {
    /// Whether the trail is intact.
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            None => write!(
                f,
                "audit trail intact: {} entries, head {}",
                self.entries,
                hex::encode(self.last.hash)
            )?,
            Some(problem) => write!(f, "audit trail broken: {problem}")?,
        }
        if let Some(checkpoint) = &self.checkpoint {
            write!(
                f,
                " (from the retention checkpoint: entries up to {} deleted, the last of them hashed {})",
                checkpoint.through_seq,
                hex::encode(checkpoint.hash)
            )?;
        }
        Ok(())
    }
}

/// Checks a trail one entry at a time, so that a store can stream it.
#[derive(Debug, Clone)]
pub struct Verifier {
    checkpoint: Option<Checkpoint>,
    last: Head,
    entries: u64,
    problem: Option<Problem>,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier::new()
    }
}

impl Verifier {
    /// A verifier at the start of a trail.
    pub fn new() -> Self {
        Verifier {
            checkpoint: None,
            last: Head::GENESIS,
            entries: 0,
            problem: None,
        }
    }

    /// A verifier that starts after a retention checkpoint: the next entry
    /// must be number `through_seq + 1` and link to the checkpoint's hash.
    pub fn after_checkpoint(checkpoint: Checkpoint) -> Self {
        Verifier {
            checkpoint: Some(checkpoint),
            last: Head {
                seq: checkpoint.through_seq,
                hash: checkpoint.hash,
            },
            entries: 0,
            problem: None,
        }
    }

    /// Checks the next entry. Returns whether the trail is intact so far;
    /// after the first problem further entries are ignored.
    pub fn push(&mut self, entry: &Entry) -> bool {
        if self.problem.is_some() {
            return false;
        }
        let expected = self.last.seq.saturating_add(1);
        self.problem = if entry.seq != expected {
            Some(Problem::OutOfSequence {
                expected,
                found: i64::try_from(entry.seq).unwrap_or(i64::MAX),
            })
        } else if entry.computed_hash() != entry.hash {
            Some(Problem::Edited { seq: entry.seq })
        } else if entry.prev_hash != self.last.hash {
            Some(Problem::BrokenLink { seq: entry.seq })
        } else {
            self.last = Head::of(entry);
            self.entries += 1;
            None
        };
        self.problem.is_none()
    }

    /// Records that the next stored entry cannot be read back. Returns
    /// `false`.
    pub fn push_malformed(&mut self, seq: i64, what: &'static str) -> bool {
        if self.problem.is_none() {
            self.problem = Some(Problem::Malformed { seq, what });
        }
        false
    }

    /// The report, checking the end of the trail against `head` if given.
    pub fn finish(self, head: Option<Head>) -> Report {
        let problem = self.problem.or_else(|| {
            let head = head?;
            if self.last.seq < head.seq {
                Some(Problem::EndsBeforeHead {
                    last: self.last.seq,
                    head: head.seq,
                })
            } else if self.last.seq > head.seq {
                Some(Problem::EndsAfterHead {
                    last: self.last.seq,
                    head: head.seq,
                })
            } else if self.last.hash != head.hash {
                Some(Problem::HeadMismatch { seq: head.seq })
            } else {
                None
            }
        });
        Report {
            checkpoint: self.checkpoint,
            entries: self.entries,
            last: self.last,
            problem,
        }
    }
}

/// Verifies a whole trail, oldest entry first; with `head`, also that the
/// trail ends where the head says. Reports the first problem.
pub fn verify_chain(entries: impl Iterator<Item = Entry>, head: Option<Head>) -> Report {
    let mut verifier = Verifier::new();
    for entry in entries {
        if !verifier.push(&entry) {
            break;
        }
    }
    verifier.finish(head)
}

/// Which entries to return: all conditions must hold; text matches are
/// exact, times half-open `[since_ms, until_ms)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Only this organisation's entries.
    pub org: Option<String>,
    /// Only this actor's.
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only entries about this target.
    pub target: Option<String>,
    /// Only entries at or after this time (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Only entries before this time.
    pub until_ms: Option<i64>,
    /// Only entries numbered above this, for paging.
    pub after_seq: Option<u64>,
    /// At most this many entries, 1 to [`QUERY_LIMIT_MAX`].
    pub limit: usize,
}

impl Default for Filter {
    /// Everything, a thousand entries at a time.
    fn default() -> Self {
        Filter {
            org: None,
            actor: None,
            action: None,
            target: None,
            since_ms: None,
            until_ms: None,
            after_seq: None,
            limit: 1_000,
        }
    }
}

impl Filter {
    /// Checks the filter: a limit from 1 to [`QUERY_LIMIT_MAX`], `since_ms`
    /// not after `until_ms`, no empty or overlong text.
    pub fn validate(&self) -> Result<()> {
        let invalid = |why: String| Err(Error::InvalidFilter(why));
        if self.limit == 0 {
            return invalid("limit must be at least 1".to_owned());
        }
        if self.limit > QUERY_LIMIT_MAX {
            return invalid(format!(
                "limit {} is above the maximum of {QUERY_LIMIT_MAX}",
                self.limit
            ));
        }
        if let (Some(since), Some(until)) = (self.since_ms, self.until_ms)
            && since > until
        {
            return invalid(format!("since ({since}) is after until ({until})"));
        }
        for (name, value) in self.texts() {
            if let Some(value) = value {
                if value.is_empty() {
                    return invalid(format!("{name} is empty"));
                }
                if value.chars().count() > FIELD_CHARS_MAX {
                    return invalid(format!(
                        "{name} is longer than {FIELD_CHARS_MAX} characters"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether `entry` passes the filter's conditions (the limit aside).
    pub fn matches(&self, entry: &Entry) -> bool {
        let text =
            |wanted: &Option<String>, value: &str| wanted.as_deref().is_none_or(|w| w == value);
        text(&self.org, &entry.org)
            && text(&self.actor, &entry.actor)
            && text(&self.action, &entry.action)
            && text(&self.target, &entry.target)
            && self.since_ms.is_none_or(|since| entry.at_ms >= since)
            && self.until_ms.is_none_or(|until| entry.at_ms < until)
            && self.after_seq.is_none_or(|after| entry.seq > after)
    }

    fn texts(&self) -> [(&'static str, &Option<String>); 4] {
        [
            ("org", &self.org),
            ("actor", &self.actor),
            ("action", &self.action),
            ("target", &self.target),
        ]
    }
}

/// The entry as one line of JSON, without the newline.
pub fn json_line(entry: &Entry) -> String {
    // Cannot fail: every field is a string, an integer, a unit variant or a
    // `serde_json::Value`, whose object keys are strings.
    serde_json::to_string(entry).expect("an audit entry always serialises")
}

/// The entry as one line of JSON with a `names` object mapping each of
/// its pseudonyms that `names` resolves to the clear value; without such
/// pseudonyms exactly [`json_line`]. The entry's own fields stay as stored,
/// so the line still verifies against its hash.
pub fn json_line_named(entry: &Entry, names: &Names) -> String {
    let own: serde_json::Map<String, Value> = pseudonyms_in(entry)
        .into_iter()
        .filter_map(|p| names.get(&p).map(|clear| (p, Value::String(clear.clone()))))
        .collect();
    if own.is_empty() {
        return json_line(entry);
    }
    let mut value = serde_json::to_value(entry).expect("an audit entry always serialises");
    if let Value::Object(fields) = &mut value {
        fields.insert("names".to_owned(), Value::Object(own));
    }
    value.to_string()
}

/// The entry as one RFC 5424 syslog line, without the newline:
///
/// ```text
/// <PRI>1 TIMESTAMP HOSTNAME kontor - ACTION [kontor@32473 seq=".." org=".."
///   actor=".." target=".." outcome=".." hash=".."] DETAIL-JSON
/// ```
///
/// Facility authpriv; severity notice, or warning for refused and failed
/// outcomes. The timestamp is UTC with milliseconds (`-` if the year is
/// outside 0000 to 9999). HOSTNAME and MSGID keep printable ASCII only
/// (others become `_`) and their length limits (255, 32); empty becomes
/// `-`. Parameter values escape `"`, `\` and `]`; control characters, which
/// the store never accepts, become U+FFFD so that a line stays one line.
/// The detail is written as ASCII-only JSON (`\uXXXX` escapes), so the
/// message needs no byte-order mark.
pub fn syslog_line(entry: &Entry, hostname: &str) -> String {
    let pri = FACILITY_AUTHPRIV * 8 + entry.outcome.syslog_severity();
    let timestamp = rfc3339_ms(entry.at_ms).unwrap_or_else(|| "-".to_owned());
    format!(
        "<{pri}>1 {timestamp} {hostname} kontor - {msgid} [{SD_ID} seq=\"{seq}\" org=\"{org}\" \
         actor=\"{actor}\" target=\"{target}\" outcome=\"{outcome}\" hash=\"{hash}\"] {detail}",
        hostname = header_field(hostname, 255),
        msgid = header_field(&entry.action, 32),
        seq = entry.seq,
        org = sd_value(&entry.org),
        actor = sd_value(&entry.actor),
        target = sd_value(&entry.target),
        outcome = entry.outcome.as_str(),
        hash = hex::encode(entry.hash),
        detail = ascii_json(&entry.detail),
    )
}

/// Parses an RFC 3339 time into milliseconds since the epoch (finer digits
/// are dropped, rounding down).
pub fn parse_rfc3339_ms(input: &str) -> Result<i64> {
    let invalid = || Error::InvalidTime {
        input: input.chars().take(64).collect(),
    };
    let time = OffsetDateTime::parse(input, &Rfc3339).map_err(|_| invalid())?;
    i64::try_from(time.unix_timestamp_nanos().div_euclid(1_000_000)).map_err(|_| invalid())
}

/// `at_ms` as RFC 3339 UTC with exactly three fractional digits; `None`
/// outside the years RFC 3339 can write.
fn rfc3339_ms(at_ms: i64) -> Option<String> {
    let time = OffsetDateTime::from_unix_timestamp(at_ms.div_euclid(1000)).ok()?;
    // The `time` crate writes whole seconds without a fraction, and a
    // fraction without trailing zeros; logs read better with a fixed width.
    let whole = time.format(&Rfc3339).ok()?;
    let stem = whole.strip_suffix('Z')?;
    Some(format!("{stem}.{:03}Z", at_ms.rem_euclid(1000)))
}

/// A syslog header field: printable ASCII, at most `max` characters, `-`
/// when empty (RFC 5424 §6.2).
fn header_field(value: &str, max: usize) -> String {
    let field: String = value
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(max)
        .collect();
    if field.is_empty() {
        "-".to_owned()
    } else {
        field
    }
}

/// A structured-data parameter value (RFC 5424 §6.3.3).
fn sd_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' | '\\' | ']' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Compact JSON with every non-ASCII character escaped. `serde_json` only
/// writes non-ASCII inside strings, where `\u` escapes mean the same.
fn ascii_json(value: &Value) -> String {
    let json = value.to_string();
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// Hex for the two hashes of an entry's JSON form.
mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(deserializer)?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&text, &mut bytes).map_err(serde::de::Error::custom)?;
        Ok(bytes)
    }
}

// ---------------------------------------------------------------------------
// The SQLite shell.

/// The tables, indexes and triggers of the trail (version 1). The database
/// file is shared with other components, so this touches only
/// `admin_audit*`.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS admin_audit (
    seq INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    org TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS admin_audit_at_ms ON admin_audit (at_ms);
CREATE INDEX IF NOT EXISTS admin_audit_actor ON admin_audit (actor);
CREATE INDEX IF NOT EXISTS admin_audit_target ON admin_audit (target);
CREATE TABLE IF NOT EXISTS admin_audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS admin_audit_no_update BEFORE UPDATE ON admin_audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS admin_audit_no_delete BEFORE DELETE ON admin_audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS admin_audit_at_end BEFORE INSERT ON admin_audit
WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM admin_audit)
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only: entries go at the end'); END;
CREATE TRIGGER IF NOT EXISTS admin_audit_head_no_delete BEFORE DELETE ON admin_audit_head
BEGIN SELECT RAISE(ABORT, 'the audit head cannot be deleted'); END;
CREATE TRIGGER IF NOT EXISTS admin_audit_head_forward BEFORE UPDATE ON admin_audit_head
WHEN NEW.seq IS NOT OLD.seq + 1
BEGIN SELECT RAISE(ABORT, 'the audit head moves forward one entry at a time'); END;
";

/// Version 2, privacy: the retention checkpoint (deleting entries is
/// allowed only at or below it), the per-organisation pseudonym keys
/// (sealed under the deployment's KEK) and the pseudonym mapping that
/// erasure deletes from.
const SCHEMA_V2_PRIVACY: &str = "
CREATE TABLE IF NOT EXISTS admin_audit_checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    through_seq INTEGER NOT NULL,
    hash BLOB NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS admin_audit_checkpoint_no_delete BEFORE DELETE ON admin_audit_checkpoint
BEGIN SELECT RAISE(ABORT, 'the audit checkpoint cannot be deleted'); END;
CREATE TRIGGER IF NOT EXISTS admin_audit_checkpoint_forward BEFORE UPDATE ON admin_audit_checkpoint
WHEN NEW.through_seq <= OLD.through_seq
BEGIN SELECT RAISE(ABORT, 'the audit checkpoint only moves forward'); END;
DROP TRIGGER IF EXISTS admin_audit_no_delete;
CREATE TRIGGER admin_audit_no_delete BEFORE DELETE ON admin_audit
WHEN OLD.seq > COALESCE((SELECT through_seq FROM admin_audit_checkpoint WHERE id = 1), 0)
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only: only entries at or below the retention checkpoint may be deleted'); END;
DROP TRIGGER IF EXISTS admin_audit_at_end;
CREATE TRIGGER admin_audit_at_end BEFORE INSERT ON admin_audit
WHEN NEW.seq IS NOT COALESCE(
    (SELECT MAX(seq) FROM admin_audit),
    (SELECT through_seq FROM admin_audit_checkpoint WHERE id = 1),
    0) + 1
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only: entries go at the end'); END;
CREATE TABLE IF NOT EXISTS admin_audit_keys (
    org TEXT PRIMARY KEY,
    sealed BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS admin_audit_keys_no_update BEFORE UPDATE ON admin_audit_keys
BEGIN SELECT RAISE(ABORT, 'an audit pseudonym key never changes'); END;
CREATE TABLE IF NOT EXISTS admin_audit_pseudonyms (
    pseudonym TEXT PRIMARY KEY,
    org TEXT NOT NULL,
    clear TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS admin_audit_pseudonyms_clear ON admin_audit_pseudonyms (org, clear);
";

/// The trail's migrations, applied in order once each; version 1 creates
/// only what is missing, so a trail from before migrations were recorded
/// takes them as well.
const MIGRATIONS: &[(i64, &str)] = &[(1, SCHEMA), (2, SCHEMA_V2_PRIVACY)];

const COLUMNS: &str = "seq, at_ms, org, actor, action, target, outcome, detail, prev_hash, hash";

/// The audit trail in a SQLite database.
///
/// Methods are synchronous and take the connection's lock; async callers run
/// them in `spawn_blocking`.
#[derive(Debug, Clone)]
pub struct AuditLog {
    conn: Arc<Mutex<Connection>>,
}

impl AuditLog {
    /// Opens (creating if needed) the database file, with WAL and a 5 s busy
    /// timeout, and creates the trail's tables if missing.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        Self::init(conn)
    }

    /// A trail in memory, for tests.
    pub fn open_in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    /// Opens an existing trail read-only, for verification and export.
    pub fn open_read_only(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::NoDatabase(path.to_owned()));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        if !table_exists(&conn, "admin_audit")? {
            return Err(Error::NoTrail(path.to_owned()));
        }
        Ok(Self::wrap(conn))
    }

    fn init(mut conn: Connection) -> Result<Self> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS admin_audit_migrations (version INTEGER PRIMARY KEY)",
        )?;
        for (version, sql) in MIGRATIONS {
            let done: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM admin_audit_migrations WHERE version = ?1)",
                [version],
                |row| row.get(0),
            )?;
            if !done {
                tx.execute_batch(sql)?;
                tx.execute(
                    "INSERT INTO admin_audit_migrations (version) VALUES (?1)",
                    [version],
                )?;
            }
        }
        tx.commit()?;
        Ok(Self::wrap(conn))
    }

    fn wrap(conn: Connection) -> Self {
        AuditLog {
            conn: Arc::new(Mutex::new(conn)),
        }
    }

    /// Appends `new`, written at `at_ms`, and returns the stored entry. One
    /// write transaction reads the last entry, inserts the new one and moves
    /// the head; nothing is written if `new` breaks a rule of
    /// [`NewEntry::validate`] or anything fails.
    pub fn append(&self, new: NewEntry, at_ms: i64) -> Result<Entry> {
        new.validate()?;
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let entry = append_in(&tx, new, at_ms)?;
        tx.commit()?;
        Ok(entry)
    }

    /// Deletes the entries written before `before_ms`, oldest first, up to
    /// the first entry at or after it, and records that in one write
    /// transaction: the checkpoint (number and hash of the last deleted
    /// entry) moves forward, the entries at or below it go, and an
    /// [`RETENTION_ACTION`] entry of organisation `org` naming the
    /// checkpoint is appended, written at `now_ms`. Returns the checkpoint,
    /// how many entries went and the new entry; `None` when nothing was old
    /// enough.
    pub fn expire_before(
        &self,
        before_ms: i64,
        org: &str,
        now_ms: i64,
    ) -> Result<Option<(Checkpoint, u64, Entry)>> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let first_kept: Option<i64> = tx.query_row(
            "SELECT MIN(seq) FROM admin_audit WHERE at_ms >= ?1",
            [before_ms],
            |row| row.get(0),
        )?;
        let through: Option<i64> = match first_kept {
            Some(kept) => tx.query_row(
                "SELECT MAX(seq) FROM admin_audit WHERE seq < ?1",
                [kept],
                |row| row.get(0),
            )?,
            None => tx.query_row("SELECT MAX(seq) FROM admin_audit", [], |row| row.get(0))?,
        };
        let Some(through) = through else {
            return Ok(None);
        };
        let hash = tx
            .query_row(
                "SELECT hash FROM admin_audit WHERE seq = ?1",
                [through],
                |row| Ok(blob32(row, 0)),
            )?
            .ok_or(Error::Malformed {
                seq: through,
                what: "hash",
            })?;
        let checkpoint = Checkpoint {
            through_seq: u64::try_from(through).map_err(|_| Error::Malformed {
                seq: through,
                what: "seq",
            })?,
            hash,
            at_ms: now_ms,
        };
        tx.execute(
            "INSERT INTO admin_audit_checkpoint (id, through_seq, hash, at_ms) VALUES (1, ?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET through_seq = excluded.through_seq, hash = excluded.hash, at_ms = excluded.at_ms",
            rusqlite::params![through, &hash[..], now_ms],
        )?;
        let deleted = tx.execute("DELETE FROM admin_audit WHERE seq <= ?1", [through])?;
        let record = NewEntry {
            org: org.to_owned(),
            actor: "system".to_owned(),
            action: RETENTION_ACTION.to_owned(),
            target: "-".to_owned(),
            outcome: Outcome::Done,
            detail: serde_json::json!({
                "through_seq": checkpoint.through_seq,
                "checkpoint_hash": hex::encode(hash),
                "deleted": deleted,
                "before": rfc3339_ms(before_ms),
            }),
        };
        record.validate()?;
        let entry = append_in(&tx, record, now_ms)?;
        tx.commit()?;
        Ok(Some((
            checkpoint,
            u64::try_from(deleted).unwrap_or(u64::MAX),
            entry,
        )))
    }

    /// The retention checkpoint, if retention has deleted entries.
    pub fn checkpoint(&self) -> Result<Option<Checkpoint>> {
        let conn = self.lock();
        match stored_checkpoint(&conn)? {
            StoredCheckpoint::Found(checkpoint) => Ok(Some(checkpoint)),
            StoredCheckpoint::Missing => Ok(None),
            StoredCheckpoint::Malformed => Err(Error::Malformed {
                seq: 0,
                what: "checkpoint",
            }),
        }
    }

    // --- pseudonyms ---------------------------------------------------------

    /// The sealed pseudonym key of `org`, if one was stored.
    pub fn sealed_key(&self, org: &str) -> Result<Option<Vec<u8>>> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                "SELECT sealed FROM admin_audit_keys WHERE org = ?1",
                [org],
                |row| row.get(0),
            )
            .optional()?)
    }

    /// Stores `sealed` as `org`'s pseudonym key unless it has one, and
    /// returns the one stored (so two first writers agree on one key).
    pub fn keep_sealed_key(&self, org: &str, sealed: &[u8], now_ms: i64) -> Result<Vec<u8>> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO admin_audit_keys (org, sealed, created_at_ms) VALUES (?1, ?2, ?3) ON CONFLICT (org) DO NOTHING",
            rusqlite::params![org, sealed, now_ms],
        )?;
        let stored = tx.query_row(
            "SELECT sealed FROM admin_audit_keys WHERE org = ?1",
            [org],
            |row| row.get(0),
        )?;
        tx.commit()?;
        Ok(stored)
    }

    /// Records that `pseudonym` stands for `clear` in `org`.
    pub fn remember(&self, org: &str, pseudonym: &str, clear: &str) -> Result<()> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO admin_audit_pseudonyms (pseudonym, org, clear) VALUES (?1, ?2, ?3) ON CONFLICT (pseudonym) DO NOTHING",
            rusqlite::params![pseudonym, org, clear],
        )?;
        Ok(())
    }

    /// Erasure: deletes the mapping of `clear` (and of `pseudonyms`, which
    /// may stand for other personal data of the same person) in `org`, so
    /// the trail names them only by pseudonym from now on. Returns how
    /// many mapping rows went.
    pub fn forget(&self, org: &str, clear: &str, pseudonyms: &[String]) -> Result<usize> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut n = tx.execute(
            "DELETE FROM admin_audit_pseudonyms WHERE org = ?1 AND clear = ?2",
            [org, clear],
        )?;
        for pseudonym in pseudonyms {
            n += tx.execute(
                "DELETE FROM admin_audit_pseudonyms WHERE org = ?1 AND pseudonym = ?2",
                [org, pseudonym.as_str()],
            )?;
        }
        tx.commit()?;
        Ok(n)
    }

    /// The clear values of the pseudonyms in `entries` that the mapping
    /// still holds.
    pub fn names(&self, entries: &[Entry]) -> Result<Names> {
        let wanted: Vec<String> = entries
            .iter()
            .flat_map(pseudonyms_in)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        self.names_of(&wanted)
    }

    /// The clear values of `wanted` that the mapping still holds.
    pub fn names_of(&self, wanted: &[String]) -> Result<Names> {
        let mut names = Names::new();
        if wanted.is_empty() {
            return Ok(names);
        }
        let conn = self.lock();
        if !table_exists(&conn, "admin_audit_pseudonyms")? {
            return Ok(names);
        }
        let mut stmt =
            conn.prepare_cached("SELECT clear FROM admin_audit_pseudonyms WHERE pseudonym = ?1")?;
        for pseudonym in wanted {
            if let Some(clear) = stmt
                .query_row([pseudonym], |row| row.get::<_, String>(0))
                .optional()?
            {
                names.insert(pseudonym.clone(), clear);
            }
        }
        Ok(names)
    }

    /// Every entry of `org` that concerns `clear`: as actor or target, in
    /// clear or under its pseudonym `pseudonym`, or named anywhere in the
    /// detail; oldest first, at most [`QUERY_LIMIT_MAX`].
    pub fn concerning(&self, org: &str, clear: &str, pseudonym: &str) -> Result<Vec<Entry>> {
        let conn = self.lock();
        let quoted = |text: &str| Value::String(text.to_owned()).to_string();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM admin_audit WHERE org = ?1 AND (
                actor IN (?2, ?3) OR target IN (?2, ?3)
                OR instr(target, ?3) > 0 OR instr(detail, ?4) > 0 OR instr(detail, ?5) > 0)
             ORDER BY seq LIMIT ?6"
        ))?;
        let limit = i64::try_from(QUERY_LIMIT_MAX).unwrap_or(i64::MAX);
        let mut rows = stmt.query(rusqlite::params![
            org,
            clear,
            pseudonym,
            quoted(clear),
            pseudonym,
            limit
        ])?;
        let mut entries = Vec::new();
        while let Some(row) = rows.next()? {
            entries.push(
                decode(row).map_err(|Malformed { seq, what }| Error::Malformed { seq, what })?,
            );
        }
        Ok(entries)
    }
}

/// Appends `new` inside `tx`: reads the last entry (or the checkpoint),
/// inserts the new entry and moves the head.
fn append_in(tx: &rusqlite::Transaction<'_>, new: NewEntry, at_ms: i64) -> Result<Entry> {
    let prev = last_entry(tx)?;
    let entry = Entry::after(&prev, new, at_ms);
    let seq = i64::try_from(entry.seq).map_err(|_| Error::Full)?;
    tx.execute(
        &format!(
            "INSERT INTO admin_audit ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ),
        rusqlite::params![
            seq,
            entry.at_ms,
            entry.org,
            entry.actor,
            entry.action,
            entry.target,
            entry.outcome.as_str(),
            entry.detail.to_string(),
            &entry.prev_hash[..],
            &entry.hash[..],
        ],
    )?;
    tx.execute(
        "INSERT INTO admin_audit_head (id, seq, hash) VALUES (1, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        rusqlite::params![seq, &entry.hash[..]],
    )?;
    Ok(entry)
}

impl AuditLog {
    /// The entries `filter` selects, oldest first. An actor or target
    /// filter matches the value in clear (entries from before
    /// pseudonymisation) and the pseudonym the mapping holds for it.
    pub fn query(&self, filter: &Filter) -> Result<Vec<Entry>> {
        filter.validate()?;
        let mut sql = format!("SELECT {COLUMNS} FROM admin_audit WHERE 1 = 1");
        let mut args: Vec<SqlValue> = Vec::new();
        let conn = self.lock();
        let mapped = table_exists(&conn, "admin_audit_pseudonyms")?;
        let texts = [
            ("org", &filter.org, false),
            ("actor", &filter.actor, mapped),
            ("action", &filter.action, false),
            ("target", &filter.target, mapped),
        ];
        for (column, value, pseudonymised) in texts {
            if let Some(value) = value {
                if pseudonymised {
                    sql.push_str(&format!(
                        " AND ({column} = ? OR {column} IN (SELECT pseudonym FROM admin_audit_pseudonyms WHERE clear = ?))"
                    ));
                    args.push(SqlValue::Text(value.clone()));
                } else {
                    sql.push_str(&format!(" AND {column} = ?"));
                }
                args.push(SqlValue::Text(value.clone()));
            }
        }
        let numbers = [
            (" AND at_ms >= ?", filter.since_ms),
            (" AND at_ms < ?", filter.until_ms),
            (
                " AND seq > ?",
                filter
                    .after_seq
                    .map(|after| i64::try_from(after).unwrap_or(i64::MAX)),
            ),
        ];
        for (clause, value) in numbers {
            if let Some(value) = value {
                sql.push_str(clause);
                args.push(SqlValue::Integer(value));
            }
        }
        sql.push_str(" ORDER BY seq LIMIT ?");
        // The limit is at most QUERY_LIMIT_MAX after `validate`.
        args.push(SqlValue::Integer(
            i64::try_from(filter.limit).unwrap_or(i64::MAX),
        ));

        let mut stmt = conn.prepare(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
        let mut entries = Vec::new();
        while let Some(row) = rows.next()? {
            let entry =
                decode(row).map_err(|Malformed { seq, what }| Error::Malformed { seq, what })?;
            entries.push(entry);
        }
        Ok(entries)
    }

    /// Verifies the whole trail against its head, streaming the entries in
    /// order inside one read transaction (so concurrent appends do not
    /// disturb it).
    pub fn verify(&self) -> Result<Report> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let head = stored_head(&tx)?;
        let checkpoint = stored_checkpoint(&tx)?;
        let mut verifier = match checkpoint {
            StoredCheckpoint::Found(checkpoint) => Verifier::after_checkpoint(checkpoint),
            StoredCheckpoint::Missing => Verifier::new(),
            StoredCheckpoint::Malformed => {
                let mut verifier = Verifier::new();
                verifier.problem = Some(Problem::MalformedCheckpoint);
                verifier
            }
        };
        // A checkpoint must be named by the retention entry written with
        // it; one written by hand (to hide deleted entries) is not.
        let mut attested = !matches!(checkpoint, StoredCheckpoint::Found(_));
        {
            let mut stmt =
                tx.prepare(&format!("SELECT {COLUMNS} FROM admin_audit ORDER BY seq"))?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let intact = match decode(row) {
                    Ok(entry) => {
                        if let StoredCheckpoint::Found(checkpoint) = &checkpoint
                            && attests(&entry, checkpoint)
                        {
                            attested = true;
                        }
                        verifier.push(&entry)
                    }
                    Err(Malformed { seq, what }) => verifier.push_malformed(seq, what),
                };
                if !intact {
                    break;
                }
            }
        }
        if !attested && let StoredCheckpoint::Found(checkpoint) = &checkpoint {
            verifier
                .problem
                .get_or_insert(Problem::UnattestedCheckpoint {
                    through_seq: checkpoint.through_seq,
                });
        }
        // A missing head row reads as the empty trail's head, so a trail
        // with entries but no head is reported as running past it.
        Ok(match head {
            StoredHead::Found(head) => verifier.finish(Some(head)),
            StoredHead::Missing => verifier.finish(Some(Head::GENESIS)),
            StoredHead::Malformed => {
                let mut report = verifier.finish(None);
                report.problem.get_or_insert(Problem::MalformedHead);
                report
            }
        })
    }

    /// The head as stored: the last entry's number and hash
    /// ([`Head::GENESIS`] for an empty trail).
    pub fn head(&self) -> Result<Head> {
        let conn = self.lock();
        match stored_head(&conn)? {
            StoredHead::Found(head) => Ok(head),
            StoredHead::Missing => Ok(Head::GENESIS),
            StoredHead::Malformed => Err(Error::Malformed {
                seq: 0,
                what: "head",
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held dropped any open transaction,
        // which rolled it back; the connection is still sound.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Opens the database at `path` read-only and verifies its trail.
pub fn verify_database(path: &Path) -> Result<Report> {
    AuditLog::open_read_only(path)?.verify()
}

fn table_exists(conn: &Connection, name: &str) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        [name],
        |row| row.get(0),
    )?)
}

/// What the head row holds.
enum StoredHead {
    Found(Head),
    /// No row, or no table: tampering unless the trail is empty too.
    Missing,
    /// A row whose values cannot be read back.
    Malformed,
}

fn stored_head(conn: &Connection) -> Result<StoredHead> {
    if !table_exists(conn, "admin_audit_head")? {
        return Ok(StoredHead::Missing);
    }
    let row = conn
        .query_row(
            "SELECT seq, hash FROM admin_audit_head WHERE id = 1",
            [],
            |row| Ok((integer(row, 0), blob32(row, 1))),
        )
        .optional()?;
    Ok(match row {
        None => StoredHead::Missing,
        Some((Some(seq), Some(hash))) => match u64::try_from(seq) {
            Ok(seq) => StoredHead::Found(Head { seq, hash }),
            Err(_) => StoredHead::Malformed,
        },
        Some(_) => StoredHead::Malformed,
    })
}

/// What the checkpoint row holds.
#[derive(Clone, Copy)]
enum StoredCheckpoint {
    Found(Checkpoint),
    /// No row, or no table: retention never ran.
    Missing,
    /// A row whose values cannot be read back.
    Malformed,
}

fn stored_checkpoint(conn: &Connection) -> Result<StoredCheckpoint> {
    if !table_exists(conn, "admin_audit_checkpoint")? {
        return Ok(StoredCheckpoint::Missing);
    }
    let row = conn
        .query_row(
            "SELECT through_seq, hash, at_ms FROM admin_audit_checkpoint WHERE id = 1",
            [],
            |row| Ok((integer(row, 0), blob32(row, 1), integer(row, 2))),
        )
        .optional()?;
    Ok(match row {
        None => StoredCheckpoint::Missing,
        Some((Some(seq), Some(hash), Some(at_ms))) => match u64::try_from(seq) {
            Ok(through_seq) => StoredCheckpoint::Found(Checkpoint {
                through_seq,
                hash,
                at_ms,
            }),
            Err(_) => StoredCheckpoint::Malformed,
        },
        Some(_) => StoredCheckpoint::Malformed,
    })
}

/// Whether `entry` is the retention record naming `checkpoint`.
fn attests(entry: &Entry, checkpoint: &Checkpoint) -> bool {
    entry.action == RETENTION_ACTION
        && entry.seq > checkpoint.through_seq
        && entry.detail.get("through_seq").and_then(Value::as_u64) == Some(checkpoint.through_seq)
        && entry.detail.get("checkpoint_hash").and_then(Value::as_str)
            == Some(hex::encode(checkpoint.hash).as_str())
}

/// The number and hash of the last stored entry; with no entry left, the
/// retention checkpoint's (or the empty trail's).
fn last_entry(conn: &Connection) -> Result<Head> {
    let row = conn
        .query_row(
            "SELECT seq, hash FROM admin_audit ORDER BY seq DESC LIMIT 1",
            [],
            |row| Ok((integer(row, 0), blob32(row, 1))),
        )
        .optional()?;
    let Some((seq, hash)) = row else {
        return Ok(match stored_checkpoint(conn)? {
            StoredCheckpoint::Found(checkpoint) => Head {
                seq: checkpoint.through_seq,
                hash: checkpoint.hash,
            },
            StoredCheckpoint::Missing => Head::GENESIS,
            StoredCheckpoint::Malformed => {
                return Err(Error::Malformed {
                    seq: 0,
                    what: "checkpoint",
                });
            }
        });
    };
    let seq = seq.unwrap_or(0);
    let malformed = |what| Error::Malformed { seq, what };
    let hash = hash.ok_or_else(|| malformed("hash"))?;
    let seq = u64::try_from(seq).map_err(|_| malformed("seq"))?;
    let head = Head { seq, hash };
    if let StoredHead::Found(stored) = stored_head(conn)?
        && stored != head
    {
        tracing::warn!(
            trail = seq,
            head = stored.seq,
            "the audit head does not match the last entry; verify the trail"
        );
    }
    Ok(head)
}

/// A stored entry that cannot be read back.
struct Malformed {
    seq: i64,
    what: &'static str,
}

/// Reads one row of [`COLUMNS`]. Values of the wrong type or shape are a
/// sign of tampering, reported as [`Malformed`] rather than as a database
/// error, so that verification can name the entry.
fn decode(row: &Row<'_>) -> Result<Entry, Malformed> {
    let seq = integer(row, 0).unwrap_or(0);
    let malformed = |what| Malformed { seq, what };
    let seq = u64::try_from(seq).map_err(|_| malformed("seq"))?;
    let at_ms = integer(row, 1).ok_or_else(|| malformed("at_ms"))?;
    let org = text(row, 2).ok_or_else(|| malformed("org"))?;
    let actor = text(row, 3).ok_or_else(|| malformed("actor"))?;
    let action = text(row, 4).ok_or_else(|| malformed("action"))?;
    let target = text(row, 5).ok_or_else(|| malformed("target"))?;
    let outcome = text(row, 6)
        .and_then(|name| Outcome::from_name(&name))
        .ok_or_else(|| malformed("outcome"))?;
    let detail = text(row, 7)
        .and_then(|json| serde_json::from_str(&json).ok())
        .ok_or_else(|| malformed("detail"))?;
    let prev_hash = blob32(row, 8).ok_or_else(|| malformed("prev_hash"))?;
    let hash = blob32(row, 9).ok_or_else(|| malformed("hash"))?;
    Ok(Entry {
        seq,
        at_ms,
        org,
        actor,
        action,
        target,
        outcome,
        detail,
        prev_hash,
        hash,
    })
}

fn integer(row: &Row<'_>, index: usize) -> Option<i64> {
    match row.get_ref(index).ok()? {
        ValueRef::Integer(value) => Some(value),
        _ => None,
    }
}

fn text(row: &Row<'_>, index: usize) -> Option<String> {
    match row.get_ref(index).ok()? {
        ValueRef::Text(bytes) => String::from_utf8(bytes.to_vec()).ok(),
        _ => None,
    }
}

fn blob32(row: &Row<'_>, index: usize) -> Option<[u8; 32]> {
    match row.get_ref(index).ok()? {
        ValueRef::Blob(bytes) => bytes.try_into().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
