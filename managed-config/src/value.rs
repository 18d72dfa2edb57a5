//! [`Value`]: a raw configuration value as a device receives it, before it is
//! checked against the model. Each decoder parses its format with a real
//! parser and lowers it to this one tree, with a depth limit.

use std::collections::BTreeMap;
use std::io::Cursor;

use crate::{Error, MAX_DEPTH, MAX_INPUT_BYTES};

/// A raw value from a plist, JSON or TOML document.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A boolean.
    Bool(bool),
    /// An integer; wide enough for every signed and unsigned 64-bit input.
    Integer(i128),
    /// A floating point number.
    Real(f64),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// A dictionary (plist dict, JSON object, TOML table).
    Dict(BTreeMap<String, Value>),
    /// Binary data (plist `<data>`).
    Data(Vec<u8>),
    /// A date, in the source format's text form.
    Date(String),
    /// JSON `null`.
    Null,
}

impl Value {
    /// The name of the value's type in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Bool(_) => "a boolean",
            Value::Integer(_) => "an integer",
            Value::Real(_) => "a real number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Dict(_) => "a dictionary",
            Value::Data(_) => "data",
            Value::Date(_) => "a date",
            Value::Null => "null",
        }
    }
}

pub(crate) fn check_size(input: &[u8]) -> Result<(), Error> {
    if input.len() > MAX_INPUT_BYTES {
        return Err(Error::TooLarge {
            size_bytes: input.len(),
            max_bytes: MAX_INPUT_BYTES,
        });
    }
    Ok(())
}

/// Parses an XML, binary or ASCII plist with the plist crate, then lowers it
/// with a depth limit.
///
/// plist builds its tree without recursion, but dropping a deeply nested
/// `plist::Value` recurses once per level; a hostile input nested a hundred
/// thousand levels deep would exhaust the stack. So the parsed tree is always
/// taken apart iteratively ([`dismantle`]) instead of dropped.
pub(crate) fn from_plist(input: &[u8]) -> Result<Value, Error> {
    check_size(input)?;
    let parsed = plist::Value::from_reader(Cursor::new(input)).map_err(|e| Error::Syntax {
        format: "plist",
        detail: e.to_string(),
    })?;
    let lowered = from_plist_value(&parsed, 0);
    dismantle(parsed);
    lowered
}

fn from_plist_value(value: &plist::Value, depth: usize) -> Result<Value, Error> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep { max: MAX_DEPTH });
    }
    Ok(match value {
        plist::Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| from_plist_value(v, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        plist::Value::Dictionary(dict) => Value::Dict(
            dict.iter()
                .map(|(k, v)| Ok((k.clone(), from_plist_value(v, depth + 1)?)))
                .collect::<Result<_, Error>>()?,
        ),
        plist::Value::Boolean(b) => Value::Bool(*b),
        plist::Value::Data(d) => Value::Data(d.clone()),
        plist::Value::Date(d) => plist_date(*d)?,
        plist::Value::Real(r) => Value::Real(*r),
        plist::Value::Integer(i) => match (i.as_signed(), i.as_unsigned()) {
            (Some(v), _) => Value::Integer(v.into()),
            (None, Some(v)) => Value::Integer(v.into()),
            (None, None) => {
                return Err(Error::Syntax {
                    format: "plist",
                    detail: "bad integer".into(),
                });
            }
        },
        plist::Value::String(s) => Value::String(s.clone()),
        plist::Value::Uid(_) => {
            return Err(Error::Syntax {
                format: "plist",
                detail: "keyed-archiver uids are not configuration".into(),
            });
        }
        // plist's Value is non-exhaustive.
        _ => {
            return Err(Error::Syntax {
                format: "plist",
                detail: "unsupported plist value".into(),
            });
        }
    })
}

/// A plist date as an XML plist writes it (RFC 3339, UTC). plist's own
/// `Date::to_xml_format` panics on a date RFC 3339 cannot write, before the
/// year 0 or after 9999, which a binary plist can hold (a float of seconds):
/// such a date is refused instead (found by the `managed_config_plist` fuzz
/// target; input in `fixtures/fuzz-regressions/`).
fn plist_date(date: plist::Date) -> Result<Value, Error> {
    let out_of_range = || Error::Syntax {
        format: "plist",
        detail: "a date outside the years 0000 to 9999".into(),
    };
    let at = std::time::SystemTime::from(date);
    let nanos = match at.duration_since(std::time::UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_nanos()).map_err(|_| out_of_range())?,
        Err(before) => -i128::try_from(before.duration().as_nanos()).map_err(|_| out_of_range())?,
    };
    let utc = time::OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| out_of_range())?;
    utc.format(&time::format_description::well_known::Rfc3339)
        .map(Value::Date)
        .map_err(|_| out_of_range())
}

/// Drops a plist tree without recursion: children are moved onto a work list
/// before their parent is dropped, so every drop is shallow.
fn dismantle(value: plist::Value) {
    let mut work = vec![value];
    while let Some(value) = work.pop() {
        match value {
            plist::Value::Array(items) => work.extend(items),
            plist::Value::Dictionary(dict) => work.extend(dict.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

/// Parses JSON with serde_json (whose own recursion limit also applies).
pub(crate) fn from_json(input: &[u8]) -> Result<Value, Error> {
    check_size(input)?;
    let json: serde_json::Value = serde_json::from_slice(input).map_err(|e| Error::Syntax {
        format: "json",
        detail: e.to_string(),
    })?;
    from_json_value(&json, 0)
}

pub(crate) fn from_json_value(json: &serde_json::Value, depth: usize) -> Result<Value, Error> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep { max: MAX_DEPTH });
    }
    Ok(match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(v), _, _) => Value::Integer(v.into()),
            (None, Some(v), _) => Value::Integer(v.into()),
            (None, None, Some(v)) => Value::Real(v),
            (None, None, None) => {
                return Err(Error::Syntax {
                    format: "json",
                    detail: format!("bad number {n}"),
                });
            }
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| from_json_value(v, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        serde_json::Value::Object(map) => Value::Dict(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), from_json_value(v, depth + 1)?)))
                .collect::<Result<_, Error>>()?,
        ),
    })
}

/// Parses TOML with the toml crate.
pub(crate) fn from_toml(input: &str) -> Result<Value, Error> {
    check_size(input.as_bytes())?;
    let table: toml::Table = input.parse().map_err(|e: toml::de::Error| Error::Syntax {
        format: "toml",
        detail: e.message().to_owned(),
    })?;
    from_toml_table(&table, 0)
}

fn from_toml_table(table: &toml::Table, depth: usize) -> Result<Value, Error> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep { max: MAX_DEPTH });
    }
    Ok(Value::Dict(
        table
            .iter()
            .map(|(k, v)| Ok((k.clone(), from_toml_value(v, depth + 1)?)))
            .collect::<Result<_, Error>>()?,
    ))
}

fn from_toml_value(value: &toml::Value, depth: usize) -> Result<Value, Error> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep { max: MAX_DEPTH });
    }
    Ok(match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::Integer((*i).into()),
        toml::Value::Float(f) => Value::Real(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::Date(d.to_string()),
        toml::Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| from_toml_value(v, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(t) => from_toml_table(t, depth)?,
    })
}
