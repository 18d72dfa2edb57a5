//! SCIM 2.0 users and groups as Microsoft Entra ID and Okta send them
//! (RFC 7643 resources, RFC 7644 filters and PATCH). Pure: JSON bytes or
//! values in, typed values and JSON out; no I/O, no clock.
//!
//! What is strict and what is tolerant:
//! - Strict: a resource names its core schema in `schemas`, a user has a
//!   non-empty `userName`, a group a non-empty `displayName`; filters are
//!   exactly the `attr eq "value"` (joined by `and`) subset both IdPs send,
//!   and anything else is an `invalidFilter` error that names the
//!   unsupported part instead of being ignored.
//! - Tolerant: attribute names, operators, PATCH `op` names and schema URNs
//!   compare case-insensitively (RFC 7643 §2.1; Entra sends `"Replace"`),
//!   `active` may be the strings `"True"`/`"False"` (Entra's pre-2020 PATCH
//!   behaviour, still the default without the `aadOptscim062020` flag), and
//!   attributes Kontor does not keep (`nickName`, `phoneNumbers`,
//!   `password`, `employeeNumber`, ...) are accepted and listed by name in
//!   the change set's `ignored`, never their values.
//!
//! PATCH is applied to a working copy and the result is compared with the
//! original, so a [`UserChanges`] / [`GroupChanges`] lists only what really
//! changed and a failing operation leaves the resource untouched.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The core User schema.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The core Group schema.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The enterprise User extension (RFC 7643 §4.3); Kontor keeps `department`.
pub const ENTERPRISE_USER_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// The list response message.
pub const LIST_RESPONSE_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// The error message.
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// The PATCH request message.
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// The media type of every SCIM answer (RFC 7644 §8.1).
pub const CONTENT_TYPE: &str = "application/scim+json";

/// Largest request body accepted (a group with many members fits).
pub const BODY_BYTES_MAX: usize = 1024 * 1024;
/// Most operations in one PATCH request.
pub const OPERATIONS_MAX: usize = 1_000;
/// Most members named in one request.
pub const MEMBERS_PER_REQUEST_MAX: usize = 10_000;
/// Most e-mail addresses of one user.
pub const EMAILS_MAX: usize = 32;
/// Longest filter expression.
pub const FILTER_BYTES_MAX: usize = 1024;
/// Most comparisons joined by `and` in one filter.
pub const FILTER_COMPARISONS_MAX: usize = 8;
/// Largest page a list answer holds (`count` is capped to this).
pub const PAGE_COUNT_MAX: usize = 100;
/// Longest string attribute value (userName, displayName, ids, ...).
pub const VALUE_BYTES_MAX: usize = 1024;

/// What went wrong with a SCIM request. Messages name the attribute or the
/// unsupported part, never a value that could be a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The body is larger than [`BODY_BYTES_MAX`].
    #[error("request body is too large (limit {limit} bytes)")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// More items than a limit allows.
    #[error("too many {what} (limit {limit})")]
    TooMany {
        /// What was counted.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// Not JSON, or not the JSON shape of the message.
    #[error("invalid syntax: {0}")]
    InvalidSyntax(String),
    /// A required attribute is missing or a value has the wrong type.
    #[error("invalid value: {0}")]
    InvalidValue(String),
    /// A filter outside the supported subset.
    #[error("unsupported filter: {0}")]
    InvalidFilter(String),
    /// A PATCH path that cannot be parsed or is not allowed for the op.
    #[error("invalid path: {0}")]
    InvalidPath(String),
    /// A PATCH path whose filter matched nothing, or a remove without path.
    #[error("no target: {0}")]
    NoTarget(String),
    /// An attempt to change a read-only or immutable attribute.
    #[error("{0} cannot be changed")]
    Mutability(String),
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The `scimType` detail codes of RFC 7644 §3.12.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimType {
    /// The filter syntax was invalid or is not supported.
    InvalidFilter,
    /// The filter yields more results than the server will process.
    TooMany,
    /// One or more unique attribute values are in use.
    Uniqueness,
    /// An attempt to modify an immutable or read-only attribute.
    Mutability,
    /// The request body structure was invalid.
    InvalidSyntax,
    /// The PATCH path was invalid or not supported.
    InvalidPath,
    /// The PATCH path did not yield anything to operate on.
    NoTarget,
    /// A required value was missing or a value was not compatible.
    InvalidValue,
}

impl ScimType {
    /// The code as it appears in `scimType`.
    pub fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
        }
    }
}

/// An error answer (`urn:ietf:params:scim:api:messages:2.0:Error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimError {
    /// The HTTP status, sent as a string in the body (RFC 7644 §3.12).
    pub status: u16,
    /// The detail code, for 400 and 409 answers.
    pub scim_type: Option<ScimType>,
    /// A human-readable message.
    pub detail: String,
}

impl ScimError {
    /// A 404 for a resource that does not exist.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self {
            status: 404,
            scim_type: None,
            detail: detail.into(),
        }
    }

    /// A 409 `uniqueness` answer (Entra and Okta stop on it, as they should).
    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self {
            status: 409,
            scim_type: Some(ScimType::Uniqueness),
            detail: detail.into(),
        }
    }

    /// The JSON body of the answer.
    pub fn to_json(&self) -> Value {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let Some(kind) = self.scim_type {
            body["scimType"] = Value::String(kind.as_str().to_owned());
        }
        body
    }
}

impl From<&Error> for ScimError {
    fn from(error: &Error) -> Self {
        let (status, scim_type) = match error {
            Error::TooLarge { .. } | Error::TooMany { .. } => (413, None),
            Error::InvalidSyntax(_) => (400, Some(ScimType::InvalidSyntax)),
            Error::InvalidValue(_) => (400, Some(ScimType::InvalidValue)),
            Error::InvalidFilter(_) => (400, Some(ScimType::InvalidFilter)),
            Error::InvalidPath(_) => (400, Some(ScimType::InvalidPath)),
            Error::NoTarget(_) => (400, Some(ScimType::NoTarget)),
            Error::Mutability(_) => (400, Some(ScimType::Mutability)),
        };
        Self {
            status,
            scim_type,
            detail: error.to_string(),
        }
    }
}

impl From<Error> for ScimError {
    fn from(error: Error) -> Self {
        Self::from(&error)
    }
}

/// The `name` complex attribute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Name {
    /// Given name.
    pub given_name: Option<String>,
    /// Family name.
    pub family_name: Option<String>,
    /// The full name as displayed.
    pub formatted: Option<String>,
}

impl Name {
    fn is_empty(&self) -> bool {
        self.given_name.is_none() && self.family_name.is_none() && self.formatted.is_none()
    }
}

/// One entry of `emails`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// The address.
    pub value: String,
    /// The primary address.
    pub primary: bool,
    /// The `type` (`work`, `home`, `other`).
    pub kind: Option<String>,
}

/// Server-kept `meta` data, rendered in answers and never read from requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// When the resource was created.
    pub created: Option<OffsetDateTime>,
    /// When it last changed.
    pub last_modified: Option<OffsetDateTime>,
    /// An entity tag (`W/"..."`), if the caller keeps versions.
    pub version: Option<String>,
}

/// A SCIM User as Kontor keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimUser {
    /// Kontor's id (`None` until created).
    pub id: Option<String>,
    /// The IdP's id for the user.
    pub external_id: Option<String>,
    /// The unique sign-in name.
    pub user_name: String,
    /// The person's name.
    pub name: Name,
    /// The name to display.
    pub display_name: Option<String>,
    /// E-mail addresses.
    pub emails: Vec<Email>,
    /// Whether the user may use Kontor.
    pub active: bool,
    /// The enterprise extension's `department`.
    pub department: Option<String>,
    /// Server-kept metadata.
    pub meta: Meta,
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's SCIM id (a Kontor user id).
    pub value: String,
    /// The name the IdP shows for it.
    pub display: Option<String>,
}

/// A SCIM Group as Kontor keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimGroup {
    /// Kontor's id (`None` until created).
    pub id: Option<String>,
    /// The IdP's id for the group.
    pub external_id: Option<String>,
    /// The group's unique name (Entra matches groups on it).
    pub display_name: String,
    /// Members.
    pub members: Vec<Member>,
    /// Server-kept metadata.
    pub meta: Meta,
}

// ---------------------------------------------------------------------------
// Parsing resources.

fn parse_body(body: &[u8]) -> Result<Value> {
    if body.len() > BODY_BYTES_MAX {
        return Err(Error::TooLarge {
            limit: BODY_BYTES_MAX,
        });
    }
    serde_json::from_slice(body)
        .map_err(|e| Error::InvalidSyntax(format!("request body is not json ({e})")))
}

/// The value of `name` in `obj`, compared case-insensitively (RFC 7643 §2.1).
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

fn require_schema(obj: &Map<String, Value>, schema: &str) -> Result<()> {
    let schemas = field(obj, "schemas")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            Error::InvalidValue(format!("schemas is required and must name {schema}"))
        })?;
    if schemas
        .iter()
        .filter_map(Value::as_str)
        .any(|s| s.eq_ignore_ascii_case(schema))
    {
        Ok(())
    } else {
        Err(Error::InvalidValue(format!("schemas must name {schema}")))
    }
}

/// An optional string attribute: absent or null is `None`; an empty
/// string is `None` too (IdPs send `""` for a cleared mapping).
fn opt_string(value: Option<&Value>, what: &str) -> Result<Option<String>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s.len() > VALUE_BYTES_MAX => Err(Error::InvalidValue(format!(
            "{what} is longer than {VALUE_BYTES_MAX} bytes"
        ))),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Error::InvalidValue(format!("{what} must be a string"))),
    }
}

fn required_string(value: Option<&Value>, what: &str) -> Result<String> {
    opt_string(value, what)?.ok_or_else(|| Error::InvalidValue(format!("{what} is required")))
}

/// A boolean, also from Entra's legacy `"True"` / `"False"` strings.
fn boolean(value: &Value, what: &str) -> Result<bool> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(Error::InvalidValue(format!("{what} must be a boolean"))),
    }
}

fn parse_name(value: Option<&Value>) -> Result<Name> {
    match value {
        None | Some(Value::Null) => Ok(Name::default()),
        Some(Value::Object(obj)) => Ok(Name {
            given_name: opt_string(field(obj, "givenName"), "name.givenName")?,
            family_name: opt_string(field(obj, "familyName"), "name.familyName")?,
            formatted: opt_string(field(obj, "formatted"), "name.formatted")?,
        }),
        Some(_) => Err(Error::InvalidValue("name must be an object".into())),
    }
}

fn parse_email(value: &Value) -> Result<Email> {
    let obj = value
        .as_object()
        .ok_or_else(|| Error::InvalidValue("an emails entry must be an object".into()))?;
    Ok(Email {
        value: required_string(field(obj, "value"), "emails.value")?,
        primary: match field(obj, "primary") {
            None | Some(Value::Null) => false,
            Some(v) => boolean(v, "emails.primary")?,
        },
        kind: opt_string(field(obj, "type"), "emails.type")?,
    })
}

/// A list of e-mail entries; a single object counts as a list of one.
fn parse_emails(value: Option<&Value>) -> Result<Vec<Email>> {
    let items: Vec<&Value> = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(other @ Value::Object(_)) => vec![other],
        Some(_) => return Err(Error::InvalidValue("emails must be an array".into())),
    };
    if items.len() > EMAILS_MAX {
        return Err(Error::TooMany {
            what: "emails",
            limit: EMAILS_MAX,
        });
    }
    let emails = items
        .into_iter()
        .map(parse_email)
        .collect::<Result<Vec<_>>>()?;
    if emails.iter().filter(|e| e.primary).count() > 1 {
        return Err(Error::InvalidValue(
            "at most one emails entry may be primary".into(),
        ));
    }
    Ok(emails)
}

fn parse_members(value: Option<&Value>) -> Result<Vec<Member>> {
    let items: Vec<&Value> = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(other @ Value::Object(_)) => vec![other],
        Some(_) => return Err(Error::InvalidValue("members must be an array".into())),
    };
    if items.len() > MEMBERS_PER_REQUEST_MAX {
        return Err(Error::TooMany {
            what: "members",
            limit: MEMBERS_PER_REQUEST_MAX,
        });
    }
    let mut members: Vec<Member> = Vec::with_capacity(items.len());
    for item in items {
        let obj = item
            .as_object()
            .ok_or_else(|| Error::InvalidValue("a members entry must be an object".into()))?;
        let member = Member {
            value: required_string(field(obj, "value"), "members.value")?,
            display: opt_string(field(obj, "display"), "members.display")?,
        };
        if !members.iter().any(|m| m.value == member.value) {
            members.push(member);
        }
    }
    Ok(members)
}

impl ScimUser {
    /// Parses a POST or PUT body.
    pub fn from_json(body: &[u8]) -> Result<Self> {
        Self::from_value(&parse_body(body)?)
    }

    /// Parses a user from a JSON value. `meta` and unknown attributes are
    /// ignored; `id` is read so a PUT can be checked against the target.
    pub fn from_value(value: &Value) -> Result<Self> {
        let obj = value
            .as_object()
            .ok_or_else(|| Error::InvalidSyntax("a user must be a json object".into()))?;
        require_schema(obj, USER_SCHEMA)?;
        let department = match field(obj, ENTERPRISE_USER_SCHEMA) {
            None | Some(Value::Null) => None,
            Some(Value::Object(ext)) => opt_string(field(ext, "department"), "department")?,
            Some(_) => {
                return Err(Error::InvalidValue(
                    "the enterprise extension must be an object".into(),
                ));
            }
        };
        Ok(Self {
            id: opt_string(field(obj, "id"), "id")?,
            external_id: opt_string(field(obj, "externalId"), "externalId")?,
            user_name: required_string(field(obj, "userName"), "userName")?,
            name: parse_name(field(obj, "name"))?,
            display_name: opt_string(field(obj, "displayName"), "displayName")?,
            emails: parse_emails(field(obj, "emails"))?,
            active: match field(obj, "active") {
                None | Some(Value::Null) => true,
                Some(v) => boolean(v, "active")?,
            },
            department,
            meta: Meta::default(),
        })
    }

    /// The user as a SCIM answer; `base_url` is the SCIM root (for example
    /// `https://kontor.example/scim/v2`), used for `meta.location`.
    pub fn to_json(&self, base_url: &str) -> Value {
        let mut schemas = vec![Value::from(USER_SCHEMA)];
        let mut body = Map::new();
        if let Some(id) = &self.id {
            body.insert("id".into(), Value::from(id.as_str()));
        }
        if let Some(external_id) = &self.external_id {
            body.insert("externalId".into(), Value::from(external_id.as_str()));
        }
        body.insert("userName".into(), Value::from(self.user_name.as_str()));
        if !self.name.is_empty() {
            let mut name = Map::new();
            insert_opt(&mut name, "givenName", &self.name.given_name);
            insert_opt(&mut name, "familyName", &self.name.family_name);
            insert_opt(&mut name, "formatted", &self.name.formatted);
            body.insert("name".into(), Value::Object(name));
        }
        insert_opt(&mut body, "displayName", &self.display_name);
        let emails: Vec<Value> = self
            .emails
            .iter()
            .map(|e| {
                let mut entry = Map::new();
                entry.insert("value".into(), Value::from(e.value.as_str()));
                insert_opt(&mut entry, "type", &e.kind);
                entry.insert("primary".into(), Value::Bool(e.primary));
                Value::Object(entry)
            })
            .collect();
        if !emails.is_empty() {
            body.insert("emails".into(), Value::Array(emails));
        }
        body.insert("active".into(), Value::Bool(self.active));
        if let Some(department) = &self.department {
            schemas.push(Value::from(ENTERPRISE_USER_SCHEMA));
            body.insert(
                ENTERPRISE_USER_SCHEMA.into(),
                json!({ "department": department }),
            );
        }
        body.insert(
            "meta".into(),
            render_meta(&self.meta, "User", base_url, "Users", self.id.as_deref()),
        );
        body.insert("schemas".into(), Value::Array(schemas));
        Value::Object(body)
    }
}

impl ScimGroup {
    /// Parses a POST or PUT body.
    pub fn from_json(body: &[u8]) -> Result<Self> {
        Self::from_value(&parse_body(body)?)
    }

    /// Parses a group from a JSON value (Entra adds a Microsoft schema URN
    /// beside the core one; that is fine).
    pub fn from_value(value: &Value) -> Result<Self> {
        let obj = value
            .as_object()
            .ok_or_else(|| Error::InvalidSyntax("a group must be a json object".into()))?;
        require_schema(obj, GROUP_SCHEMA)?;
        Ok(Self {
            id: opt_string(field(obj, "id"), "id")?,
            external_id: opt_string(field(obj, "externalId"), "externalId")?,
            display_name: required_string(field(obj, "displayName"), "displayName")?,
            members: parse_members(field(obj, "members"))?,
            meta: Meta::default(),
        })
    }

    /// The group as a SCIM answer. Entra asks with
    /// `excludedAttributes=members`: pass `include_members = false` then.
    pub fn to_json(&self, base_url: &str, include_members: bool) -> Value {
        let mut body = Map::new();
        body.insert("schemas".into(), json!([GROUP_SCHEMA]));
        if let Some(id) = &self.id {
            body.insert("id".into(), Value::from(id.as_str()));
        }
        insert_opt(&mut body, "externalId", &self.external_id);
        body.insert(
            "displayName".into(),
            Value::from(self.display_name.as_str()),
        );
        if include_members {
            let base = base_url.trim_end_matches('/');
            let members: Vec<Value> = self
                .members
                .iter()
                .map(|m| {
                    let mut entry = Map::new();
                    entry.insert("value".into(), Value::from(m.value.as_str()));
                    entry.insert(
                        "$ref".into(),
                        Value::String(format!("{base}/Users/{}", m.value)),
                    );
                    insert_opt(&mut entry, "display", &m.display);
                    Value::Object(entry)
                })
                .collect();
            body.insert("members".into(), Value::Array(members));
        }
        body.insert(
            "meta".into(),
            render_meta(&self.meta, "Group", base_url, "Groups", self.id.as_deref()),
        );
        Value::Object(body)
    }
}

fn insert_opt(obj: &mut Map<String, Value>, key: &str, value: &Option<String>) {
    if let Some(v) = value {
        obj.insert(key.into(), Value::from(v.as_str()));
    }
}

fn render_meta(
    meta: &Meta,
    resource_type: &str,
    base_url: &str,
    endpoint: &str,
    id: Option<&str>,
) -> Value {
    let mut out = Map::new();
    out.insert("resourceType".into(), Value::from(resource_type));
    for (key, at) in [
        ("created", meta.created),
        ("lastModified", meta.last_modified),
    ] {
        if let Some(text) = at.and_then(|t| t.format(&Rfc3339).ok()) {
            out.insert(key.into(), Value::String(text));
        }
    }
    if let Some(id) = id {
        out.insert(
            "location".into(),
            Value::String(format!(
                "{}/{endpoint}/{id}",
                base_url.trim_end_matches('/')
            )),
        );
    }
    insert_opt(&mut out, "version", &meta.version);
    Value::Object(out)
}

// ---------------------------------------------------------------------------
// Lists and pages.

/// `startIndex` and `count` of a list request (RFC 7644 §3.4.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// 1-based index of the first result.
    pub start_index: usize,
    /// Most results to return, at most [`PAGE_COUNT_MAX`].
    pub count: usize,
}

impl Page {
    /// Reads the query parameters. Values below 1 (or below 0 for `count`)
    /// are raised as RFC 7644 says; a `count` above the maximum is lowered;
    /// a value that is not an integer is an `invalidValue` error.
    pub fn from_query(start_index: Option<&str>, count: Option<&str>) -> Result<Self> {
        let parse = |s: Option<&str>, what: &str| -> Result<Option<i64>> {
            s.map(|s| {
                s.trim()
                    .parse::<i64>()
                    .map_err(|_| Error::InvalidValue(format!("{what} must be an integer")))
            })
            .transpose()
        };
        let start = parse(start_index, "startIndex")?.unwrap_or(1).max(1);
        let count = parse(count, "count")?
            .unwrap_or(PAGE_COUNT_MAX as i64)
            .clamp(0, PAGE_COUNT_MAX as i64);
        Ok(Self {
            start_index: usize::try_from(start).unwrap_or(usize::MAX),
            count: usize::try_from(count).unwrap_or(0),
        })
    }

    /// Zero-based offset of the first result.
    pub fn offset(&self) -> usize {
        self.start_index.saturating_sub(1)
    }
}

/// A list answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ListResponse {
    /// Matches in total, across all pages.
    pub total_results: usize,
    /// 1-based index of the first resource in this page.
    pub start_index: usize,
    /// The page's resources, already rendered.
    pub resources: Vec<Value>,
}

impl ListResponse {
    /// The JSON body; `itemsPerPage` is the number of resources returned.
    /// Okta wants the numbers as integers, not strings.
    pub fn to_json(&self) -> Value {
        json!({
            "schemas": [LIST_RESPONSE_SCHEMA],
            "totalResults": self.total_results,
            "startIndex": self.start_index,
            "itemsPerPage": self.resources.len(),
            "Resources": self.resources,
        })
    }
}

// ---------------------------------------------------------------------------
// Filters.

/// Which endpoint a filter or path is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    /// `/Users`.
    User,
    /// `/Groups`.
    Group,
}

/// A filterable attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterAttr {
    /// `id` (case-exact).
    Id,
    /// `externalId` (case-exact).
    ExternalId,
    /// `userName` (case-insensitive).
    UserName,
    /// `displayName` (case-insensitive).
    DisplayName,
    /// `emails.value`, or `emails[type eq "work"].value` with `kind`.
    EmailValue {
        /// The `type` the entry must have.
        kind: Option<String>,
    },
    /// `members.value` (also written `members`).
    MemberValue,
}

/// One `attr eq "value"` comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// The attribute.
    pub attr: FilterAttr,
    /// The value it must equal.
    pub value: String,
}

/// A parsed filter: every comparison must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The comparisons joined by `and`.
    pub comparisons: Vec<Comparison>,
}

impl Filter {
    /// Whether a user matches.
    pub fn matches_user(&self, user: &ScimUser) -> bool {
        self.comparisons.iter().all(|c| match &c.attr {
            FilterAttr::Id => user.id.as_deref() == Some(c.value.as_str()),
            FilterAttr::ExternalId => user.external_id.as_deref() == Some(c.value.as_str()),
            FilterAttr::UserName => user.user_name.eq_ignore_ascii_case(&c.value),
            FilterAttr::DisplayName => user
                .display_name
                .as_deref()
                .is_some_and(|d| d.eq_ignore_ascii_case(&c.value)),
            FilterAttr::EmailValue { kind } => user.emails.iter().any(|e| {
                e.value.eq_ignore_ascii_case(&c.value)
                    && kind.as_deref().is_none_or(|k| {
                        e.kind.as_deref().is_some_and(|t| t.eq_ignore_ascii_case(k))
                    })
            }),
            FilterAttr::MemberValue => false,
        })
    }

    /// Whether a group matches.
    pub fn matches_group(&self, group: &ScimGroup) -> bool {
        self.comparisons.iter().all(|c| match &c.attr {
            FilterAttr::Id => group.id.as_deref() == Some(c.value.as_str()),
            FilterAttr::ExternalId => group.external_id.as_deref() == Some(c.value.as_str()),
            FilterAttr::DisplayName => group.display_name.eq_ignore_ascii_case(&c.value),
            FilterAttr::MemberValue => group.members.iter().any(|m| m.value == c.value),
            FilterAttr::UserName | FilterAttr::EmailValue { .. } => false,
        })
    }
}

/// Parses a `filter` query parameter (already percent-decoded).
pub fn parse_filter(input: &str, kind: ResourceKind) -> Result<Filter> {
    if input.len() > FILTER_BYTES_MAX {
        return Err(Error::InvalidFilter(format!(
            "the filter is longer than {FILTER_BYTES_MAX} bytes"
        )));
    }
    let mut cursor = Cursor::new(input);
    let mut comparisons = Vec::new();
    loop {
        cursor.skip_ws();
        if cursor.at_end() {
            return Err(Error::InvalidFilter(if comparisons.is_empty() {
                "the filter is empty".into()
            } else {
                "'and' must be followed by a comparison".into()
            }));
        }
        if cursor.peek() == Some('(') {
            return Err(Error::InvalidFilter(
                "grouping with parentheses is not supported".into(),
            ));
        }
        let path = cursor.attr_path(Error::InvalidFilter)?;
        if path.eq_ignore_ascii_case("not") {
            return Err(Error::InvalidFilter("'not' is not supported".into()));
        }
        let attr = filter_attr(&path, kind)?;
        cursor.skip_ws();
        let op = cursor.word();
        if op.is_empty() {
            return Err(Error::InvalidFilter(format!(
                "'{path}' must be followed by an operator"
            )));
        }
        if !op.eq_ignore_ascii_case("eq") {
            return Err(Error::InvalidFilter(format!(
                "operator '{op}' is not supported (only eq)"
            )));
        }
        cursor.skip_ws();
        let value = cursor.string_value()?;
        comparisons.push(Comparison { attr, value });
        if comparisons.len() > FILTER_COMPARISONS_MAX {
            return Err(Error::InvalidFilter(format!(
                "more than {FILTER_COMPARISONS_MAX} comparisons"
            )));
        }
        cursor.skip_ws();
        if cursor.at_end() {
            break;
        }
        let joiner = cursor.word();
        if joiner.eq_ignore_ascii_case("and") {
            continue;
        }
        if joiner.eq_ignore_ascii_case("or") {
            return Err(Error::InvalidFilter("'or' is not supported".into()));
        }
        let rest = if joiner.is_empty() {
            cursor.rest().chars().take(20).collect()
        } else {
            joiner
        };
        return Err(Error::InvalidFilter(format!("unexpected '{rest}'")));
    }
    Ok(Filter { comparisons })
}

/// Strips a core schema URN prefix (`urn:...:core:2.0:User:userName`).
fn strip_core_urn(path: &str, kind: ResourceKind) -> &str {
    let schema = match kind {
        ResourceKind::User => USER_SCHEMA,
        ResourceKind::Group => GROUP_SCHEMA,
    };
    let named = path
        .get(..schema.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(schema));
    if named && path.as_bytes().get(schema.len()) == Some(&b':') {
        // The byte after the schema is ASCII, so this is a char boundary.
        &path[schema.len() + 1..]
    } else {
        path
    }
}

fn filter_attr(path: &str, kind: ResourceKind) -> Result<FilterAttr> {
    let unsupported = || {
        Error::InvalidFilter(format!(
            "attribute '{path}' cannot be filtered on for {}",
            match kind {
                ResourceKind::User => "users",
                ResourceKind::Group => "groups",
            }
        ))
    };
    let parsed = PathSyntax::parse(strip_core_urn(path, kind), Error::InvalidFilter)?;
    let attr = parsed.attr.to_ascii_lowercase();
    let sub = parsed.sub.as_deref().map(str::to_ascii_lowercase);
    let simple = parsed.filter.is_none() && sub.is_none();
    match (kind, attr.as_str()) {
        (_, "id") if simple => Ok(FilterAttr::Id),
        (_, "externalid") if simple => Ok(FilterAttr::ExternalId),
        (_, "displayname") if simple => Ok(FilterAttr::DisplayName),
        (ResourceKind::User, "username") if simple => Ok(FilterAttr::UserName),
        (ResourceKind::User, "emails") if matches!(sub.as_deref(), None | Some("value")) => {
            match parsed.filter {
                None => Ok(FilterAttr::EmailValue { kind: None }),
                Some(f) if f.attr.eq_ignore_ascii_case("type") => Ok(FilterAttr::EmailValue {
                    kind: Some(f.value),
                }),
                Some(f) => Err(Error::InvalidFilter(format!(
                    "emails[...] supports only 'type eq', not '{}'",
                    f.attr
                ))),
            }
        }
        (ResourceKind::Group, "members")
            if parsed.filter.is_none() && matches!(sub.as_deref(), None | Some("value")) =>
        {
            Ok(FilterAttr::MemberValue)
        }
        _ => Err(unsupported()),
    }
}

/// A tiny cursor over filter and path text.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    /// Up to the next whitespace.
    fn word(&mut self) -> String {
        let start = self.pos;
        while self.peek().is_some_and(|c| !c.is_whitespace()) {
            self.bump();
        }
        self.text[start..self.pos].to_owned()
    }

    /// An attribute path, brackets included (`emails[type eq "work"].value`).
    fn attr_path(&mut self, err: fn(String) -> Error) -> Result<String> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == '[' {
                self.bump();
                let mut in_string = false;
                loop {
                    match self.bump() {
                        None => return Err(err("'[' is not closed".into())),
                        Some('\\') if in_string => {
                            self.bump();
                        }
                        Some('"') => in_string = !in_string,
                        Some(']') if !in_string => break,
                        Some(_) => {}
                    }
                }
            } else if c.is_whitespace() {
                break;
            } else {
                self.bump();
            }
        }
        let path = &self.text[start..self.pos];
        if path.is_empty() {
            return Err(err("an attribute name is missing".into()));
        }
        Ok(path.to_owned())
    }

    /// A JSON string literal.
    fn string_value(&mut self) -> Result<String> {
        if self.peek() != Some('"') {
            let word = self.word();
            return Err(Error::InvalidFilter(if word.is_empty() {
                "a comparison value is missing".into()
            } else {
                format!("value '{word}' must be a double-quoted string")
            }));
        }
        let start = self.pos;
        self.bump();
        loop {
            match self.bump() {
                None => return Err(Error::InvalidFilter("a string is not closed".into())),
                Some('\\') => {
                    self.bump();
                }
                Some('"') => break,
                Some(_) => {}
            }
        }
        serde_json::from_str::<String>(&self.text[start..self.pos])
            .map_err(|_| Error::InvalidFilter("a string has an invalid escape".into()))
    }
}

/// The syntax of an attribute path: `[urn:]attr[\[filter\]][.sub]`, the
/// schema URN already stripped by the caller.
struct PathSyntax {
    attr: String,
    filter: Option<ValueFilter>,
    sub: Option<String>,
}

/// The `[x eq "v"]` part of a path.
struct ValueFilter {
    attr: String,
    value: String,
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '$'))
}

impl PathSyntax {
    fn parse(path: &str, err: fn(String) -> Error) -> Result<Self> {
        let bad = |what: &str| err(format!("'{path}' {what}"));
        let (head, filter, tail) = match path.find('[') {
            Some(open) => {
                let close = path.rfind(']').ok_or_else(|| bad("has an unclosed '['"))?;
                if close < open {
                    return Err(bad("has brackets in the wrong order"));
                }
                let inner = &path[open + 1..close];
                (
                    &path[..open],
                    Some(Self::value_filter(inner, err)?),
                    &path[close + 1..],
                )
            }
            None => {
                let (head, tail) = match path.find('.') {
                    Some(dot) => (&path[..dot], &path[dot..]),
                    None => (path, ""),
                };
                (head, None, tail)
            }
        };
        let sub = match tail {
            "" => None,
            t => match t.strip_prefix('.') {
                Some(s) if is_name(s) => Some(s.to_owned()),
                _ => return Err(bad("has an invalid sub-attribute")),
            },
        };
        if !is_name(head) {
            return Err(bad("is not an attribute path"));
        }
        Ok(Self {
            attr: head.to_owned(),
            filter,
            sub,
        })
    }

    fn value_filter(inner: &str, err: fn(String) -> Error) -> Result<ValueFilter> {
        let mut cursor = Cursor::new(inner);
        cursor.skip_ws();
        let attr = cursor.word();
        cursor.skip_ws();
        let op = cursor.word();
        if !is_name(&attr) || !op.eq_ignore_ascii_case("eq") {
            return Err(err(format!(
                "the value filter '{inner}' is not supported (only 'attr eq \"value\"')"
            )));
        }
        cursor.skip_ws();
        let value = cursor.string_value().map_err(|e| err(e.to_string()))?;
        cursor.skip_ws();
        if !cursor.at_end() {
            return Err(err(format!(
                "the value filter '{inner}' is not supported (one comparison only)"
            )));
        }
        Ok(ValueFilter { attr, value })
    }
}

// ---------------------------------------------------------------------------
// PATCH.

/// A PATCH operation's kind; `op` compares case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchOpKind {
    /// `add`.
    Add,
    /// `replace`.
    Replace,
    /// `remove`.
    Remove,
}

/// One operation of a PATCH request.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOperation {
    /// What to do.
    pub op: PatchOpKind,
    /// Where; `None` means the value is an object of attributes.
    pub path: Option<String>,
    /// The value, if any.
    pub value: Option<Value>,
}

/// A PATCH request (`urn:ietf:params:scim:api:messages:2.0:PatchOp`).
#[derive(Debug, Clone, PartialEq)]
pub struct PatchRequest {
    /// The operations, applied in order.
    pub operations: Vec<PatchOperation>,
}

impl PatchRequest {
    /// Parses a PATCH body.
    pub fn from_json(body: &[u8]) -> Result<Self> {
        Self::from_value(&parse_body(body)?)
    }

    /// Parses a PATCH request from a JSON value.
    pub fn from_value(value: &Value) -> Result<Self> {
        let obj = value
            .as_object()
            .ok_or_else(|| Error::InvalidSyntax("a patch request must be a json object".into()))?;
        require_schema(obj, PATCH_OP_SCHEMA)?;
        let ops = field(obj, "Operations")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::InvalidSyntax("Operations must be an array".into()))?;
        if ops.is_empty() {
            return Err(Error::InvalidSyntax("Operations is empty".into()));
        }
        if ops.len() > OPERATIONS_MAX {
            return Err(Error::TooMany {
                what: "operations",
                limit: OPERATIONS_MAX,
            });
        }
        let operations = ops
            .iter()
            .map(|op| {
                let op = op.as_object().ok_or_else(|| {
                    Error::InvalidSyntax("an operation must be a json object".into())
                })?;
                let name = field(op, "op")
                    .and_then(Value::as_str)
                    .ok_or_else(|| Error::InvalidSyntax("an operation needs an op".into()))?;
                let kind = if name.eq_ignore_ascii_case("add") {
                    PatchOpKind::Add
                } else if name.eq_ignore_ascii_case("replace") {
                    PatchOpKind::Replace
                } else if name.eq_ignore_ascii_case("remove") {
                    PatchOpKind::Remove
                } else {
                    return Err(Error::InvalidSyntax(format!(
                        "op '{name}' is not supported"
                    )));
                };
                let path = match field(op, "path") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) if s.trim().is_empty() => None,
                    Some(Value::String(s)) => Some(s.trim().to_owned()),
                    Some(_) => return Err(Error::InvalidSyntax("path must be a string".into())),
                };
                let value = field(op, "value").cloned();
                if kind != PatchOpKind::Remove && value.is_none() {
                    return Err(Error::InvalidValue(format!("op '{name}' needs a value")));
                }
                Ok(PatchOperation {
                    op: kind,
                    path,
                    value,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { operations })
    }
}

/// What a user PATCH or PUT changed. `Some(None)` means "cleared"; `None`
/// means "unchanged".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserChanges {
    /// New userName.
    pub user_name: Option<String>,
    /// New externalId.
    pub external_id: Option<Option<String>>,
    /// New displayName.
    pub display_name: Option<Option<String>>,
    /// New name.givenName.
    pub given_name: Option<Option<String>>,
    /// New name.familyName.
    pub family_name: Option<Option<String>>,
    /// New name.formatted.
    pub formatted_name: Option<Option<String>>,
    /// The whole new list of e-mail addresses, if it changed.
    pub emails: Option<Vec<Email>>,
    /// New active flag.
    pub active: Option<bool>,
    /// New enterprise department.
    pub department: Option<Option<String>>,
    /// Paths of attributes Kontor does not keep, accepted and not applied.
    pub ignored: Vec<String>,
}

impl UserChanges {
    /// Whether nothing that Kontor keeps changed.
    pub fn is_empty(&self) -> bool {
        self.user_name.is_none()
            && self.external_id.is_none()
            && self.display_name.is_none()
            && self.given_name.is_none()
            && self.family_name.is_none()
            && self.formatted_name.is_none()
            && self.emails.is_none()
            && self.active.is_none()
            && self.department.is_none()
    }

    fn between(before: &ScimUser, after: &ScimUser, ignored: Vec<String>) -> Self {
        fn changed<T: PartialEq + Clone>(a: &T, b: &T) -> Option<T> {
            (a != b).then(|| b.clone())
        }
        Self {
            user_name: changed(&before.user_name, &after.user_name),
            external_id: changed(&before.external_id, &after.external_id),
            display_name: changed(&before.display_name, &after.display_name),
            given_name: changed(&before.name.given_name, &after.name.given_name),
            family_name: changed(&before.name.family_name, &after.name.family_name),
            formatted_name: changed(&before.name.formatted, &after.name.formatted),
            emails: changed(&before.emails, &after.emails),
            active: changed(&before.active, &after.active),
            department: changed(&before.department, &after.department),
            ignored,
        }
    }
}

/// What a group PATCH or PUT changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupChanges {
    /// New displayName.
    pub display_name: Option<String>,
    /// New externalId (`Some(None)`: cleared).
    pub external_id: Option<Option<String>>,
    /// Members that were not members before.
    pub members_added: Vec<Member>,
    /// Ids of members that are no longer members.
    pub members_removed: Vec<String>,
    /// Paths of attributes Kontor does not keep, accepted and not applied.
    pub ignored: Vec<String>,
}

impl GroupChanges {
    /// Whether nothing that Kontor keeps changed.
    pub fn is_empty(&self) -> bool {
        self.display_name.is_none()
            && self.external_id.is_none()
            && self.members_added.is_empty()
            && self.members_removed.is_empty()
    }

    fn between(before: &ScimGroup, after: &ScimGroup, ignored: Vec<String>) -> Self {
        Self {
            display_name: (before.display_name != after.display_name)
                .then(|| after.display_name.clone()),
            external_id: (before.external_id != after.external_id)
                .then(|| after.external_id.clone()),
            members_added: after
                .members
                .iter()
                .filter(|m| !before.members.iter().any(|b| b.value == m.value))
                .cloned()
                .collect(),
            members_removed: before
                .members
                .iter()
                .filter(|b| !after.members.iter().any(|m| m.value == b.value))
                .map(|b| b.value.clone())
                .collect(),
            ignored,
        }
    }
}

/// Applies a PATCH to `user`. On error `user` is left as it was.
pub fn apply_user_patch(user: &mut ScimUser, patch: &PatchRequest) -> Result<UserChanges> {
    let mut work = user.clone();
    let mut ignored = Vec::new();
    for op in &patch.operations {
        match &op.path {
            Some(path) => {
                let target = user_target(path)?;
                apply_user_op(&mut work, op.op, &target, op.value.as_ref(), &mut ignored)?;
            }
            None => {
                if op.op == PatchOpKind::Remove {
                    return Err(Error::NoTarget("remove needs a path".into()));
                }
                let obj = op
                    .value
                    .as_ref()
                    .and_then(Value::as_object)
                    .ok_or_else(|| {
                        Error::InvalidValue(
                            "an operation without path needs an object value".into(),
                        )
                    })?;
                for (key, value) in obj {
                    if key.eq_ignore_ascii_case("schemas") {
                        continue;
                    }
                    let target = user_target(key)?;
                    apply_user_op(&mut work, op.op, &target, Some(value), &mut ignored)?;
                }
            }
        }
    }
    let changes = UserChanges::between(user, &work, ignored);
    *user = work;
    Ok(changes)
}

/// Applies a PUT: `incoming` replaces every attribute Kontor keeps; `id`
/// and `meta` stay. A body `id` other than the target's is refused.
pub fn replace_user(user: &mut ScimUser, incoming: ScimUser) -> Result<UserChanges> {
    if incoming.id.is_some() && incoming.id != user.id {
        return Err(Error::Mutability("id".into()));
    }
    let work = ScimUser {
        id: user.id.clone(),
        meta: user.meta.clone(),
        ..incoming
    };
    let changes = UserChanges::between(user, &work, Vec::new());
    *user = work;
    Ok(changes)
}

/// Applies a PATCH to `group`. On error `group` is left as it was.
///
/// Removing a member that is not a member is not an error: IdPs retry
/// removals, and the end state is what they asked for.
pub fn apply_group_patch(group: &mut ScimGroup, patch: &PatchRequest) -> Result<GroupChanges> {
    let mut work = group.clone();
    let mut ignored = Vec::new();
    for op in &patch.operations {
        match &op.path {
            Some(path) => {
                let target = group_target(path)?;
                apply_group_op(&mut work, op.op, &target, op.value.as_ref(), &mut ignored)?;
            }
            None => {
                if op.op == PatchOpKind::Remove {
                    return Err(Error::NoTarget("remove needs a path".into()));
                }
                let obj = op
                    .value
                    .as_ref()
                    .and_then(Value::as_object)
                    .ok_or_else(|| {
                        Error::InvalidValue(
                            "an operation without path needs an object value".into(),
                        )
                    })?;
                for (key, value) in obj {
                    if key.eq_ignore_ascii_case("schemas") {
                        continue;
                    }
                    let target = group_target(key)?;
                    apply_group_op(&mut work, op.op, &target, Some(value), &mut ignored)?;
                }
            }
        }
    }
    let changes = GroupChanges::between(group, &work, ignored);
    *group = work;
    Ok(changes)
}

/// Applies a PUT to a group; `id` and `meta` stay.
pub fn replace_group(group: &mut ScimGroup, incoming: ScimGroup) -> Result<GroupChanges> {
    if incoming.id.is_some() && incoming.id != group.id {
        return Err(Error::Mutability("id".into()));
    }
    let work = ScimGroup {
        id: group.id.clone(),
        meta: group.meta.clone(),
        ..incoming
    };
    let changes = GroupChanges::between(group, &work, Vec::new());
    *group = work;
    Ok(changes)
}

/// Where a user PATCH operation points.
enum UserTarget {
    Id,
    Meta,
    Active,
    UserName,
    ExternalId,
    DisplayName,
    Name,
    GivenName,
    FamilyName,
    Formatted,
    Emails,
    /// `emails[type eq "x"].value` (or `emails.value`: the primary one).
    EmailValue(EmailSelector),
    /// `emails[type eq "x"]`: whole entries.
    EmailEntries(EmailSelector),
    Enterprise,
    Department,
    Ignored(String),
}

/// Which e-mail entries a path selects.
#[derive(Clone)]
enum EmailSelector {
    Primary,
    Type(String),
    Value(String),
}

impl EmailSelector {
    fn matches(&self, email: &Email) -> bool {
        match self {
            EmailSelector::Primary => email.primary,
            EmailSelector::Type(t) => email
                .kind
                .as_deref()
                .is_some_and(|k| k.eq_ignore_ascii_case(t)),
            EmailSelector::Value(v) => email.value.eq_ignore_ascii_case(v),
        }
    }
}

/// Splits a schema URN off a path: `(Some(schema), rest)` for a known
/// schema, `(None, path)` for a plain path. A path in an unknown extension
/// comes back as `Err(())` so the caller can list it as ignored.
fn split_urn<'a>(
    path: &'a str,
    schemas: &[&'static str],
) -> Result<(Option<&'static str>, &'a str), ()> {
    if !path
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
    {
        return Ok((None, path));
    }
    for schema in schemas {
        if !path
            .get(..schema.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(schema))
        {
            continue;
        }
        match path.as_bytes().get(schema.len()) {
            None => return Ok((Some(schema), "")),
            // The byte after the schema is ASCII, so this is a char boundary.
            Some(b':') => return Ok((Some(schema), &path[schema.len() + 1..])),
            Some(_) => {}
        }
    }
    Err(())
}

fn user_target(path: &str) -> Result<UserTarget> {
    let (schema, rest) = match split_urn(path, &[ENTERPRISE_USER_SCHEMA, USER_SCHEMA]) {
        Ok(split) => split,
        Err(()) => return Ok(UserTarget::Ignored(path.to_owned())),
    };
    if schema == Some(ENTERPRISE_USER_SCHEMA) {
        if rest.is_empty() {
            return Ok(UserTarget::Enterprise);
        }
        let parsed = PathSyntax::parse(rest, Error::InvalidPath)?;
        return Ok(
            if parsed.attr.eq_ignore_ascii_case("department")
                && parsed.filter.is_none()
                && parsed.sub.is_none()
            {
                UserTarget::Department
            } else {
                UserTarget::Ignored(path.to_owned())
            },
        );
    }
    if rest.is_empty() {
        return Err(Error::InvalidPath(format!(
            "'{path}' names a schema, not an attribute"
        )));
    }
    let parsed = PathSyntax::parse(rest, Error::InvalidPath)?;
    let attr = parsed.attr.to_ascii_lowercase();
    let sub = parsed.sub.as_deref().map(str::to_ascii_lowercase);
    if attr == "emails" {
        let selector = match parsed.filter {
            None => None,
            Some(f) if f.attr.eq_ignore_ascii_case("type") => Some(EmailSelector::Type(f.value)),
            Some(f) if f.attr.eq_ignore_ascii_case("value") => Some(EmailSelector::Value(f.value)),
            Some(f) => {
                return Err(Error::InvalidFilter(format!(
                    "emails[...] supports only 'type eq' and 'value eq', not '{}'",
                    f.attr
                )));
            }
        };
        return Ok(match (selector, sub.as_deref()) {
            (None, None) => UserTarget::Emails,
            (None, Some("value")) => UserTarget::EmailValue(EmailSelector::Primary),
            (Some(s), Some("value")) => UserTarget::EmailValue(s),
            (Some(s), None) => UserTarget::EmailEntries(s),
            _ => UserTarget::Ignored(path.to_owned()),
        });
    }
    if parsed.filter.is_some() {
        // A filter on a multi-valued attribute Kontor does not keep
        // (phoneNumbers[type eq "work"].value, addresses[...]) is fine to
        // ignore; on a single-valued one it is a malformed path.
        return match attr.as_str() {
            "active" | "username" | "externalid" | "displayname" | "name" | "id" => Err(
                Error::InvalidPath(format!("'{path}' filters a single-valued attribute")),
            ),
            _ => Ok(UserTarget::Ignored(path.to_owned())),
        };
    }
    Ok(match (attr.as_str(), sub.as_deref()) {
        ("id", None) => UserTarget::Id,
        ("meta", _) => UserTarget::Meta,
        ("active", None) => UserTarget::Active,
        ("username", None) => UserTarget::UserName,
        ("externalid", None) => UserTarget::ExternalId,
        ("displayname", None) => UserTarget::DisplayName,
        ("name", None) => UserTarget::Name,
        ("name", Some("givenname")) => UserTarget::GivenName,
        ("name", Some("familyname")) => UserTarget::FamilyName,
        ("name", Some("formatted")) => UserTarget::Formatted,
        ("active" | "username" | "externalid" | "displayname" | "id", Some(_)) => {
            return Err(Error::InvalidPath(format!(
                "'{path}' has a sub-attribute on a simple attribute"
            )));
        }
        _ => UserTarget::Ignored(path.to_owned()),
    })
}

fn note_ignored(ignored: &mut Vec<String>, path: &str) {
    if ignored.len() < 64 && !ignored.iter().any(|p| p == path) {
        ignored.push(path.to_owned());
    }
}

fn apply_user_op(
    user: &mut ScimUser,
    op: PatchOpKind,
    target: &UserTarget,
    value: Option<&Value>,
    ignored: &mut Vec<String>,
) -> Result<()> {
    use PatchOpKind::{Add, Remove, Replace};
    let set = matches!(op, Add | Replace);
    // `value` is present for add and replace (checked when parsing).
    let v = value.unwrap_or(&Value::Null);
    match target {
        UserTarget::Ignored(path) => note_ignored(ignored, path),
        UserTarget::Meta => note_ignored(ignored, "meta"),
        UserTarget::Id => {
            if !set || opt_string(Some(v), "id")? != user.id {
                return Err(Error::Mutability("id".into()));
            }
        }
        UserTarget::Active if set => user.active = boolean(v, "active")?,
        UserTarget::Active => {
            return Err(Error::InvalidValue("active cannot be removed".into()));
        }
        UserTarget::UserName if set => user.user_name = required_string(Some(v), "userName")?,
        UserTarget::UserName => {
            return Err(Error::InvalidValue(
                "userName is required and cannot be removed".into(),
            ));
        }
        UserTarget::ExternalId => user.external_id = set_or_clear(set, v, "externalId")?,
        UserTarget::DisplayName => user.display_name = set_or_clear(set, v, "displayName")?,
        UserTarget::GivenName => user.name.given_name = set_or_clear(set, v, "name.givenName")?,
        UserTarget::FamilyName => {
            user.name.family_name = set_or_clear(set, v, "name.familyName")?;
        }
        UserTarget::Formatted => user.name.formatted = set_or_clear(set, v, "name.formatted")?,
        UserTarget::Department => user.department = set_or_clear(set, v, "department")?,
        UserTarget::Name if set => {
            let obj = v
                .as_object()
                .ok_or_else(|| Error::InvalidValue("name must be an object".into()))?;
            // Sub-attributes not given stay (RFC 7644 §3.5.2.3).
            for (key, sub) in obj {
                let target = match key.to_ascii_lowercase().as_str() {
                    "givenname" => UserTarget::GivenName,
                    "familyname" => UserTarget::FamilyName,
                    "formatted" => UserTarget::Formatted,
                    _ => UserTarget::Ignored(format!("name.{key}")),
                };
                apply_user_op(user, op, &target, Some(sub), ignored)?;
            }
        }
        UserTarget::Name => user.name = Name::default(),
        UserTarget::Enterprise if set => {
            let obj = v.as_object().ok_or_else(|| {
                Error::InvalidValue("the enterprise extension must be an object".into())
            })?;
            for (key, sub) in obj {
                let target = if key.eq_ignore_ascii_case("department") {
                    UserTarget::Department
                } else {
                    UserTarget::Ignored(format!("{ENTERPRISE_USER_SCHEMA}:{key}"))
                };
                apply_user_op(user, op, &target, Some(sub), ignored)?;
            }
        }
        UserTarget::Enterprise => user.department = None,
        UserTarget::Emails => match op {
            Replace => user.emails = parse_emails(Some(v))?,
            Add => {
                for email in parse_emails(Some(v))? {
                    add_email(user, email)?;
                }
            }
            Remove => match value {
                // Entra's legacy style names the values to remove.
                Some(v) if !v.is_null() => {
                    for email in parse_emails(Some(v))? {
                        user.emails
                            .retain(|e| !e.value.eq_ignore_ascii_case(&email.value));
                    }
                }
                _ => user.emails.clear(),
            },
        },
        UserTarget::EmailValue(selector) if set => {
            let address = required_string(Some(v), "emails.value")?;
            match user.emails.iter_mut().find(|e| selector.matches(e)) {
                Some(entry) => entry.value = address,
                None => {
                    let kind = match selector {
                        EmailSelector::Type(t) => Some(t.clone()),
                        EmailSelector::Primary | EmailSelector::Value(_) => None,
                    };
                    let primary =
                        user.emails.is_empty() || matches!(selector, EmailSelector::Primary);
                    add_email(
                        user,
                        Email {
                            value: address,
                            primary,
                            kind,
                        },
                    )?;
                }
            }
        }
        UserTarget::EmailEntries(selector) if set => {
            let mut email = parse_email(v)?;
            match user.emails.iter_mut().find(|e| selector.matches(e)) {
                Some(entry) => {
                    if email.kind.is_none() {
                        email.kind = entry.kind.clone();
                    }
                    let primary = email.primary;
                    *entry = email;
                    if primary {
                        keep_one_primary(user, |e| selector.matches(e));
                    }
                }
                None => {
                    if let (EmailSelector::Type(t), None) = (selector, &email.kind) {
                        email.kind = Some(t.clone());
                    }
                    add_email(user, email)?;
                }
            }
        }
        UserTarget::EmailValue(selector) | UserTarget::EmailEntries(selector) => {
            let before = user.emails.len();
            user.emails.retain(|e| !selector.matches(e));
            if user.emails.len() == before {
                return Err(Error::NoTarget("the emails filter matched no entry".into()));
            }
        }
    }
    Ok(())
}

fn set_or_clear(set: bool, value: &Value, what: &str) -> Result<Option<String>> {
    if set {
        opt_string(Some(value), what)
    } else {
        Ok(None)
    }
}

/// Adds an address, or updates the entry that has it.
fn add_email(user: &mut ScimUser, email: Email) -> Result<()> {
    let primary = email.primary;
    let address = email.value.clone();
    match user
        .emails
        .iter_mut()
        .find(|e| e.value.eq_ignore_ascii_case(&email.value))
    {
        Some(entry) => {
            entry.primary |= email.primary;
            if email.kind.is_some() {
                entry.kind = email.kind;
            }
        }
        None => {
            if user.emails.len() >= EMAILS_MAX {
                return Err(Error::TooMany {
                    what: "emails",
                    limit: EMAILS_MAX,
                });
            }
            user.emails.push(email);
        }
    }
    if primary {
        keep_one_primary(user, |e| e.value.eq_ignore_ascii_case(&address));
    }
    Ok(())
}

/// Only the first entry `is_new` selects stays primary.
fn keep_one_primary(user: &mut ScimUser, is_new: impl Fn(&Email) -> bool) {
    let mut seen = false;
    for entry in &mut user.emails {
        if entry.primary && is_new(entry) && !seen {
            seen = true;
        } else {
            entry.primary = false;
        }
    }
}

/// Where a group PATCH operation points.
enum GroupTarget {
    Id,
    DisplayName,
    ExternalId,
    Members,
    Member(String),
    Ignored(String),
}

fn group_target(path: &str) -> Result<GroupTarget> {
    let (schema, rest) = match split_urn(path, &[GROUP_SCHEMA]) {
        Ok(split) => split,
        Err(()) => return Ok(GroupTarget::Ignored(path.to_owned())),
    };
    if schema.is_some() && rest.is_empty() {
        return Err(Error::InvalidPath(format!(
            "'{path}' names a schema, not an attribute"
        )));
    }
    let parsed = PathSyntax::parse(rest, Error::InvalidPath)?;
    let attr = parsed.attr.to_ascii_lowercase();
    if attr == "members" {
        return match (parsed.filter, parsed.sub) {
            (None, None) => Ok(GroupTarget::Members),
            (Some(f), None) if f.attr.eq_ignore_ascii_case("value") => {
                Ok(GroupTarget::Member(f.value))
            }
            (Some(f), None) => Err(Error::InvalidFilter(format!(
                "members[...] supports only 'value eq', not '{}'",
                f.attr
            ))),
            (_, Some(_)) => Err(Error::InvalidPath(format!(
                "'{path}': members sub-attributes cannot be patched"
            ))),
        };
    }
    let simple = parsed.filter.is_none() && parsed.sub.is_none();
    Ok(match attr.as_str() {
        "id" if simple => GroupTarget::Id,
        "displayname" if simple => GroupTarget::DisplayName,
        "externalid" if simple => GroupTarget::ExternalId,
        "id" | "displayname" | "externalid" => {
            return Err(Error::InvalidPath(format!(
                "'{path}' is not a valid path for a simple attribute"
            )));
        }
        _ => GroupTarget::Ignored(path.to_owned()),
    })
}

fn apply_group_op(
    group: &mut ScimGroup,
    op: PatchOpKind,
    target: &GroupTarget,
    value: Option<&Value>,
    ignored: &mut Vec<String>,
) -> Result<()> {
    use PatchOpKind::{Add, Remove, Replace};
    let set = matches!(op, Add | Replace);
    let v = value.unwrap_or(&Value::Null);
    match target {
        GroupTarget::Ignored(path) => note_ignored(ignored, path),
        GroupTarget::Id => {
            if !set || opt_string(Some(v), "id")? != group.id {
                return Err(Error::Mutability("id".into()));
            }
        }
        GroupTarget::DisplayName if set => {
            group.display_name = required_string(Some(v), "displayName")?;
        }
        GroupTarget::DisplayName => {
            return Err(Error::InvalidValue(
                "displayName is required and cannot be removed".into(),
            ));
        }
        GroupTarget::ExternalId => group.external_id = set_or_clear(set, v, "externalId")?,
        GroupTarget::Members => match op {
            Add => {
                for member in parse_members(Some(v))? {
                    if !group.members.iter().any(|m| m.value == member.value) {
                        group.members.push(member);
                    }
                }
            }
            Replace => group.members = parse_members(Some(v))?,
            Remove => match value {
                // Entra without `aadOptscim062020` names the members to
                // remove in the value instead of the path.
                Some(v) if !v.is_null() => {
                    let gone = parse_members(Some(v))?;
                    group
                        .members
                        .retain(|m| !gone.iter().any(|g| g.value == m.value));
                }
                _ => group.members.clear(),
            },
        },
        GroupTarget::Member(id) if op == Remove => group.members.retain(|m| &m.value != id),
        GroupTarget::Member(_) => {
            return Err(Error::InvalidPath(
                "members[value eq ...] can only be removed; add members with path 'members'".into(),
            ));
        }
    }
    Ok(())
}
