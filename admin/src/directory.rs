//! The organisation's rules as data (pure): departments and their barrier
//! matrix, restrictions resolved to one effective policy, user filters and
//! the validation of user records.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kontor_managed_config::{Attachment, Restrictions};
use kontor_relay::service::Exchange;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What two departments may exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Allowance {
    /// 1:1 messages.
    pub messages: bool,
    /// Shared groups and messages in them.
    pub groups: bool,
    /// Attachments.
    pub files: bool,
}

impl Allowance {
    fn allows(self, what: Exchange) -> bool {
        match what {
            Exchange::Message => self.messages,
            Exchange::Group => self.groups,
            Exchange::File => self.files,
        }
    }
}

/// Departments and barriers of one organisation.
///
/// Inside a department everything is allowed. A *closed* department is a
/// closed area: its users exchange with another department (or with users
/// in none) only what the matrix allows for that pair. Between two open
/// departments, and for users in no department, nothing is barred.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Barriers {
    /// Department name to whether it is closed.
    pub departments: BTreeMap<String, bool>,
    /// Allowances by unordered pair (smaller name first). The empty name
    /// stands for "no department".
    pub matrix: BTreeMap<(String, String), Allowance>,
}

/// Orders a pair so (a, b) and (b, a) are one key.
pub fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

impl Barriers {
    /// May a user in department `a` exchange `what` with one in `b`?
    pub fn allows(&self, a: Option<&str>, b: Option<&str>, what: Exchange) -> bool {
        let (a, b) = (a.unwrap_or(""), b.unwrap_or(""));
        if a == b {
            return true;
        }
        let closed = |d: &str| self.departments.get(d).copied().unwrap_or(false);
        if !closed(a) && !closed(b) {
            return true;
        }
        self.matrix
            .get(&pair(a, b))
            .is_some_and(|allowance| allowance.allows(what))
    }
}

/// Restriction settings at one scope; `None` leaves a setting to others.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestrictionSettings {
    /// Copy and paste out of Kontor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_paste: Option<bool>,
    /// Attachment kinds allowed (images, videos, audio, files); empty: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<BTreeSet<String>>,
    /// Forwarding messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forwarding: Option<bool>,
    /// Screenshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screenshots: Option<bool>,
}

impl RestrictionSettings {
    /// Checks attachment kinds are known.
    pub fn validate(&self) -> Result<()> {
        if let Some(kinds) = &self.attachments {
            for kind in kinds {
                if !Attachment::ALL.iter().any(|a| a.as_str() == kind) {
                    return Err(Error::Invalid(format!(
                        "unknown attachment kind {kind:?} (use images, videos, audio, files)"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The restriction scopes, least specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The whole organisation.
    Org,
    /// A department.
    Department,
    /// A group (by id, hex).
    Group,
    /// A user.
    User,
}

impl Scope {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Org => "org",
            Scope::Department => "department",
            Scope::Group => "group",
            Scope::User => "user",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(text: &str) -> Option<Scope> {
        [Scope::Org, Scope::Department, Scope::Group, Scope::User]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// Resolves the settings that apply to one user to one effective set of
/// restrictions: everything starts allowed and the most restrictive
/// setting of any scope wins (a user-level setting cannot lift an
/// organisation-wide ban; lift it where it was set).
pub fn effective<'a>(
    applicable: impl IntoIterator<Item = &'a RestrictionSettings>,
) -> Restrictions {
    let mut out = Restrictions {
        copy_paste: true,
        attachments: Attachment::ALL.into_iter().collect(),
        forwarding: true,
        screenshots: true,
    };
    for s in applicable {
        if let Some(v) = s.copy_paste {
            out.copy_paste &= v;
        }
        if let Some(v) = s.forwarding {
            out.forwarding &= v;
        }
        if let Some(v) = s.screenshots {
            out.screenshots &= v;
        }
        if let Some(kinds) = &s.attachments {
            out.attachments.retain(|a| kinds.contains(a.as_str()));
        }
    }
    out
}

/// The restrictions as the policy-update keys a device applies (the same
/// names and encodings as the managed configuration).
pub fn restriction_keys(r: &Restrictions) -> serde_json::Value {
    use kontor_managed_config::model::keys;
    let attachments: Vec<&str> = r.attachments.iter().map(|a| a.as_str()).collect();
    serde_json::json!({
        keys::ALLOW_COPY_PASTE: r.copy_paste,
        keys::ALLOWED_ATTACHMENTS: attachments,
        keys::ALLOW_FORWARDING: r.forwarding,
        keys::ALLOW_SCREENSHOTS: r.screenshots,
    })
}

/// A user's state in the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    /// Invited, no device enrolled yet.
    Invited,
    /// At least one device enrolled.
    Active,
    /// Blocked by an admin.
    Blocked,
}

impl UserStatus {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Invited => "invited",
            UserStatus::Active => "active",
            UserStatus::Blocked => "blocked",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(text: &str) -> Option<UserStatus> {
        [UserStatus::Invited, UserStatus::Active, UserStatus::Blocked]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// A user as the administration shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// The user id (usually the e-mail address the EMM passes).
    pub user_id: String,
    /// Display name.
    pub display_name: String,
    /// Department, if any.
    pub department: Option<String>,
    /// Invited, active or blocked.
    pub status: UserStatus,
    /// When the user was created, Unix ms.
    pub created_at_ms: i64,
    /// Last contact of any of the user's devices, Unix ms.
    pub last_seen_ms: Option<i64>,
    /// Platforms of the user's current devices.
    pub platforms: Vec<String>,
    /// Number of current (unrevoked) devices.
    pub devices: usize,
}

/// Checks a user id: 3 to 254 characters, printable, no spaces, at most
/// one `@` not at either end.
pub fn check_user_id(user_id: &str) -> Result<()> {
    let ok = (3..=254).contains(&user_id.len())
        && user_id.chars().all(|c| c.is_ascii_graphic())
        && user_id.matches('@').count() <= 1
        && !user_id.starts_with('@')
        && !user_id.ends_with('@');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "user id {user_id:?}: use 3 to 254 printable characters without spaces (an e-mail address)"
        )))
    }
}

/// Checks a display name or department name: 1 to 200 characters, no
/// control characters.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    let count = name.chars().count();
    if (1..=200).contains(&count) && !name.chars().any(char::is_control) && name.trim() == name {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{what} {name:?}: use 1 to 200 characters, no control characters or outer spaces"
        )))
    }
}

/// Whether an allow-list entry admits a user: the user id itself,
/// `@domain` for every user of that domain, or `department:NAME` for the
/// users of a department (teams and business units are departments).
pub fn allow_list_admits(entry: &str, user_id: &str, department: Option<&str>) -> bool {
    if let Some(name) = entry.strip_prefix("department:") {
        return department == Some(name);
    }
    kontor_provisioning::token::allow_list_matches(entry, user_id)
}

/// Checks an allow-list entry's form.
pub fn check_allow_list_entry(entry: &str) -> Result<()> {
    if let Some(name) = entry.strip_prefix("department:") {
        return check_name("department", name);
    }
    if let Some(domain) = entry.strip_prefix('@') {
        let ok = !domain.is_empty()
            && domain.len() <= 253
            && domain.contains('.')
            && domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        return if ok {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "allow-list entry {entry:?}: a domain entry is @ followed by a domain name"
            )))
        };
    }
    check_user_id(entry)
}

/// A filter over users; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserFilter {
    /// Department name; the empty string selects users in none.
    #[serde(default)]
    pub department: Option<String>,
    /// invited, active or blocked.
    #[serde(default)]
    pub status: Option<String>,
    /// Platform of any current device (ios, android, ...).
    #[serde(default)]
    pub platform: Option<String>,
    /// `enrolled` (has a device) or `not_enrolled`.
    #[serde(default)]
    pub enrollment: Option<String>,
    /// Last seen before this many days ago (or never).
    #[serde(default)]
    pub inactive_days: Option<u32>,
    /// Last seen within this many days.
    #[serde(default)]
    pub active_days: Option<u32>,
    /// Case-insensitive text in the user id or display name.
    #[serde(default)]
    pub text: Option<String>,
}

impl UserFilter {
    /// Checks the filter names only known values.
    pub fn validate(&self) -> Result<()> {
        if let Some(status) = &self.status
            && UserStatus::parse(status).is_none()
        {
            return Err(Error::Invalid(format!(
                "filter status {status:?}: use invited, active or blocked"
            )));
        }
        if let Some(e) = &self.enrollment
            && !matches!(e.as_str(), "enrolled" | "not_enrolled")
        {
            return Err(Error::Invalid(format!(
                "filter enrollment {e:?}: use enrolled or not_enrolled"
            )));
        }
        for days in [self.inactive_days, self.active_days].into_iter().flatten() {
            if days == 0 || days > 3650 {
                return Err(Error::Invalid("filter days must be 1 to 3650".to_owned()));
            }
        }
        if self.text.as_ref().is_some_and(|t| t.chars().count() > 200) {
            return Err(Error::Invalid(
                "filter text longer than 200 characters".to_owned(),
            ));
        }
        Ok(())
    }

    /// Whether `user` matches at `now_ms`.
    pub fn matches(&self, user: &User, now_ms: i64) -> bool {
        const DAY: i64 = 86_400_000;
        if let Some(d) = &self.department
            && user.department.as_deref().unwrap_or("") != d
        {
            return false;
        }
        if let Some(s) = &self.status
            && user.status.as_str() != s
        {
            return false;
        }
        if let Some(p) = &self.platform
            && !user.platforms.iter().any(|x| x.eq_ignore_ascii_case(p))
        {
            return false;
        }
        match self.enrollment.as_deref() {
            Some("enrolled") if user.devices == 0 => return false,
            Some("not_enrolled") if user.devices > 0 => return false,
            _ => {}
        }
        if let Some(days) = self.inactive_days
            && user
                .last_seen_ms
                .is_some_and(|t| t >= now_ms - i64::from(days) * DAY)
        {
            return false;
        }
        if let Some(days) = self.active_days
            && user
                .last_seen_ms
                .is_none_or(|t| t < now_ms - i64::from(days) * DAY)
        {
            return false;
        }
        if let Some(text) = &self.text {
            let text = text.to_lowercase();
            if !user.user_id.to_lowercase().contains(&text)
                && !user.display_name.to_lowercase().contains(&text)
            {
                return false;
            }
        }
        true
    }
}

/// One CSV line to import, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportRow {
    /// 1-based line number in the file (the header is line 1).
    pub line: u64,
    /// User id.
    pub user_id: String,
    /// Display name.
    pub display_name: String,
    /// Department, if any.
    pub department: Option<String>,
}

/// What an import did or would do with one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineReport {
    /// 1-based line number.
    pub line: u64,
    /// The user id, when the line had one.
    pub user_id: Option<String>,
    /// `created`, `would_create` or `refused`.
    pub outcome: &'static str,
    /// Why it was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Parses a CSV of users with the header `user_id,display_name,department`
/// (department may be empty). Returns the good rows and a report line for
/// each refused one; duplicate user ids within the file are refused after
/// their first line. At most `max_rows` data lines.
pub fn parse_import(csv_text: &[u8], max_rows: usize) -> Result<(Vec<ImportRow>, Vec<LineReport>)> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(csv_text);
    let headers = reader
        .headers()
        .map_err(|e| Error::Invalid(format!("CSV header: {e}")))?
        .clone();
    let expected = ["user_id", "display_name", "department"];
    if headers.len() != 3 || headers.iter().zip(expected).any(|(h, e)| h != e) {
        return Err(Error::Invalid(
            "CSV header must be exactly user_id,display_name,department".to_owned(),
        ));
    }
    let mut rows = Vec::new();
    let mut refused = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for (index, record) in reader.records().enumerate() {
        if index >= max_rows {
            return Err(Error::Invalid(format!(
                "CSV has more than {max_rows} lines; split it"
            )));
        }
        let line = index as u64 + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                refused.push(LineReport {
                    line,
                    user_id: None,
                    outcome: "refused",
                    reason: Some(format!("not valid CSV: {e}")),
                });
                continue;
            }
        };
        let line = record.position().map_or(line, |p| p.line());
        let user_id = record.get(0).map(str::to_owned);
        let refuse = |reason: String| LineReport {
            line,
            user_id: user_id.clone(),
            outcome: "refused",
            reason: Some(reason),
        };
        if record.len() != 3 {
            refused.push(refuse(format!(
                "{} fields, expected 3 (user_id,display_name,department)",
                record.len()
            )));
            continue;
        }
        let (id, name, dept) = (&record[0], &record[1], &record[2]);
        if let Err(e) = check_user_id(id) {
            refused.push(refuse(e.to_string()));
            continue;
        }
        if let Err(e) = check_name("display name", name) {
            refused.push(refuse(e.to_string()));
            continue;
        }
        if !dept.is_empty()
            && let Err(e) = check_name("department", dept)
        {
            refused.push(refuse(e.to_string()));
            continue;
        }
        if let Some(first) = seen.get(id) {
            refused.push(refuse(format!("user {id} already on line {first}")));
            continue;
        }
        seen.insert(id.to_owned(), line);
        rows.push(ImportRow {
            line,
            user_id: id.to_owned(),
            display_name: name.to_owned(),
            department: (!dept.is_empty()).then(|| dept.to_owned()),
        });
    }
    Ok((rows, refused))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn barriers() -> Barriers {
        let mut b = Barriers::default();
        b.departments.insert("hr".into(), true);
        b.departments.insert("sales".into(), false);
        b.departments.insert("legal".into(), true);
        b.matrix.insert(
            pair("legal", "hr"),
            Allowance {
                messages: true,
                groups: false,
                files: false,
            },
        );
        b
    }

    #[test]
    fn closed_departments_exchange_only_what_the_matrix_allows() {
        let b = barriers();
        assert!(b.allows(Some("hr"), Some("hr"), Exchange::File));
        assert!(!b.allows(Some("hr"), Some("sales"), Exchange::Message));
        assert!(!b.allows(None, Some("hr"), Exchange::Message));
        assert!(b.allows(None, Some("sales"), Exchange::Message));
        assert!(b.allows(Some("hr"), Some("legal"), Exchange::Message));
        assert!(b.allows(Some("legal"), Some("hr"), Exchange::Message));
        assert!(!b.allows(Some("legal"), Some("hr"), Exchange::Group));
        assert!(!b.allows(Some("legal"), Some("hr"), Exchange::File));
    }

    #[test]
    fn the_most_restrictive_setting_wins() {
        let org = RestrictionSettings {
            attachments: Some(["images".into(), "files".into()].into()),
            ..Default::default()
        };
        let user = RestrictionSettings {
            copy_paste: Some(false),
            attachments: Some(["images".into(), "videos".into()].into()),
            ..Default::default()
        };
        let lift = RestrictionSettings {
            copy_paste: Some(true),
            ..Default::default()
        };
        let r = effective([&org, &user, &lift]);
        assert!(!r.copy_paste);
        assert_eq!(
            r.attachments.into_iter().collect::<Vec<_>>(),
            vec![Attachment::Images]
        );
        assert!(r.forwarding && r.screenshots);
        let keys = restriction_keys(&effective([]));
        assert_eq!(
            keys["allowed_attachments"],
            serde_json::json!(["images", "videos", "audio", "files"])
        );
        assert!(
            RestrictionSettings {
                attachments: Some(["pdf".into()].into()),
                ..Default::default()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn csv_import_reports_each_refused_line() {
        let csv = "user_id,display_name,department\n\
                   anna@example.org,Anna Schmidt,hr\n\
                   bad id,Someone,\n\
                   ben@example.org,Ben\n\
                   anna@example.org,Anna Again,\n\
                   carl@example.org,Carl,\n";
        let (rows, refused) = parse_import(csv.as_bytes(), 100).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].department.as_deref(), Some("hr"));
        assert_eq!(rows[1].department, None);
        let lines: Vec<u64> = refused.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![3, 4, 5]);
        assert!(refused[1].reason.as_ref().unwrap().contains("2 fields"));
        assert!(refused[2].reason.as_ref().unwrap().contains("line 2"));
        assert!(parse_import(b"id,name\nx,y\n", 100).is_err());
        assert!(parse_import(csv.as_bytes(), 2).is_err());
    }

    #[test]
    fn filters_check_their_values_and_match() {
        let user = User {
            user_id: "anna@example.org".into(),
            display_name: "Anna Schmidt".into(),
            department: Some("hr".into()),
            status: UserStatus::Active,
            created_at_ms: 0,
            last_seen_ms: Some(10 * 86_400_000),
            platforms: vec!["ios".into()],
            devices: 1,
        };
        let now = 12 * 86_400_000;
        let f = |json: serde_json::Value| serde_json::from_value::<UserFilter>(json).unwrap();
        assert!(f(serde_json::json!({"department": "hr", "text": "SCHMIDT"})).matches(&user, now));
        assert!(!f(serde_json::json!({"status": "blocked"})).matches(&user, now));
        assert!(f(serde_json::json!({"active_days": 3})).matches(&user, now));
        assert!(!f(serde_json::json!({"inactive_days": 3})).matches(&user, now));
        assert!(f(serde_json::json!({"inactive_days": 1})).matches(&user, now));
        assert!(
            f(serde_json::json!({"platform": "IOS", "enrollment": "enrolled"})).matches(&user, now)
        );
        assert!(f(serde_json::json!({"status": "gone"})).validate().is_err());
        assert!(f(serde_json::json!({"active_days": 0})).validate().is_err());
        assert!(
            serde_json::from_value::<UserFilter>(serde_json::json!({"colour": "red"})).is_err()
        );
    }

    #[test]
    fn allow_list_entries() {
        assert!(allow_list_admits("@example.org", "anna@example.org", None));
        assert!(allow_list_admits("department:hr", "x@y.z", Some("hr")));
        assert!(!allow_list_admits("department:hr", "x@y.z", Some("sales")));
        assert!(check_allow_list_entry("@example").is_err());
        assert!(check_allow_list_entry("@example.org").is_ok());
        assert!(check_allow_list_entry("department:").is_err());
    }
}
