//! TEMPORARY stand-in with the audit API helper-7 is building on branch
//! wt-audit; replaced on merge.
#![allow(missing_docs)]
use std::path::Path;
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Db(String),
}
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Requested,
    Done,
    Refused,
    Failed,
}

#[derive(Debug, Clone)]
pub struct NewEntry {
    pub org: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: Outcome,
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    pub seq: u64,
    pub at_ms: i64,
    pub org: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: Outcome,
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub org: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub after_seq: Option<u64>,
    pub limit: usize,
}
impl Filter {
    pub fn validate(&self) -> Result<()> {
        Ok(())
    }
}

#[derive(Clone)]
pub struct AuditLog {
    _c: Arc<Mutex<()>>,
}
impl AuditLog {
    pub fn open(_p: &Path) -> Result<Self> {
        Ok(AuditLog { _c: Arc::default() })
    }
    pub fn open_in_memory() -> Result<Self> {
        Ok(AuditLog { _c: Arc::default() })
    }
    pub fn append(&self, e: NewEntry, at_ms: i64) -> Result<Entry> {
        Ok(Entry {
            seq: 0,
            at_ms,
            org: e.org,
            actor: e.actor,
            action: e.action,
            target: e.target,
            outcome: e.outcome,
            detail: e.detail,
        })
    }
    pub fn query(&self, _f: &Filter) -> Result<Vec<Entry>> {
        Ok(vec![])
    }
}
pub fn json_line(e: &Entry) -> String {
    serde_json::to_string(e).unwrap_or_default()
}
pub fn syslog_line(e: &Entry, _h: &str) -> String {
    json_line(e)
}
