//! Decoders for what a device actually receives, all ending in [`values`]:
//!
//! - [`apple_plist`]: the managed configuration dictionary an iOS or macOS
//!   app reads from `com.apple.configuration.managed` (XML or binary plist);
//!   [`apple_command`] takes it out of an InstallApplication or Settings
//!   command instead;
//! - [`android_bundle_json`]: the app restrictions `Bundle` as JSON;
//!   [`amapi_policy`] takes it out of an Android Management API policy;
//! - [`json`] and [`toml`]: policy files written by hand.
//!
//! Rules shared by all of them: a key Kontor does not know is kept in
//! [`Decoded::unknown`] and never fails the decode; a string holding an
//! unsubstituted EMM variable is reported in [`Decoded::placeholders`] and
//! treated as absent (an error only for a required key); an empty string or
//! JSON `null` counts as absent, because EMM consoles send those for cleared
//! fields; a wrong type or a value outside its constraint is an [`Error`] that
//! names the key and the rule.

use std::collections::BTreeMap;

use crate::model::{self, KEYS, Kind, Policy, Setting};
use crate::value::{self, Value};
use crate::{Error, MAX_UNKNOWN_KEYS, placeholder};

/// The result of decoding a configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The typed policy.
    pub policy: Policy,
    /// Keys Kontor does not know, with their values, kept for diagnostics and
    /// for newer app versions.
    pub unknown: BTreeMap<String, Value>,
    /// Keys whose value was an unsubstituted EMM variable.
    pub placeholders: Vec<Placeholder>,
}

/// A key that held an EMM variable placeholder instead of a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    /// The key.
    pub key: &'static str,
    /// The placeholder as found, e.g. `{{mail}}`.
    pub token: String,
}

/// Decodes an Apple managed configuration dictionary (XML, binary or ASCII
/// plist).
pub fn apple_plist(input: &[u8]) -> Result<Decoded, Error> {
    values(top_dict("plist", value::from_plist(input)?)?)
}

/// Decodes the `Configuration` dictionary inside an InstallApplication
/// command or a Settings command's ApplicationConfiguration item, as
/// [`crate::apple`] writes them. A command without one gives an empty
/// configuration, which then lacks the required keys.
pub fn apple_command(input: &[u8]) -> Result<Decoded, Error> {
    let mut command = top_dict("plist", value::from_plist(input)?)?;
    let configuration = match command.remove("Configuration") {
        Some(c) => c,
        None => match command.remove("Settings") {
            Some(Value::Array(items)) => items
                .into_iter()
                .find_map(|item| match item {
                    Value::Dict(mut d)
                        if d.get("Item")
                            == Some(&Value::String("ApplicationConfiguration".into())) =>
                    {
                        d.remove("Configuration")
                    }
                    _ => None,
                })
                .unwrap_or(Value::Dict(BTreeMap::new())),
            _ => Value::Dict(BTreeMap::new()),
        },
    };
    values(top_dict("plist", configuration)?)
}

/// Decodes an Android app restrictions bundle serialised as a JSON object.
/// Android bundles carry 32-bit integers; every integer key's range lies
/// inside that.
pub fn android_bundle_json(input: &[u8]) -> Result<Decoded, Error> {
    values(top_dict("json", value::from_json(input)?)?)
}

/// Decodes the `managedConfiguration` of the application `package_name` in an
/// Android Management API policy (`{"applications": [...]}`).
pub fn amapi_policy(input: &[u8], package_name: &str) -> Result<Decoded, Error> {
    let policy = top_dict("json", value::from_json(input)?)?;
    let found = match policy.get("applications") {
        Some(Value::Array(apps)) => apps.iter().find_map(|app| match app {
            Value::Dict(d)
                if d.get("packageName") == Some(&Value::String(package_name.to_owned())) =>
            {
                Some(
                    d.get("managedConfiguration")
                        .cloned()
                        .unwrap_or(Value::Dict(BTreeMap::new())),
                )
            }
            _ => None,
        }),
        _ => None,
    };
    let configuration = found.ok_or_else(|| Error::NoSuchApplication {
        package_name: package_name.to_owned(),
    })?;
    values(top_dict("json", configuration)?)
}

/// Decodes a JSON policy file: one object, keys as in [`KEYS`].
pub fn json(input: &[u8]) -> Result<Decoded, Error> {
    values(top_dict("json", value::from_json(input)?)?)
}

/// Decodes a TOML policy file: top-level keys as in [`KEYS`].
pub fn toml(input: &str) -> Result<Decoded, Error> {
    values(top_dict("toml", value::from_toml(input)?)?)
}

fn top_dict(format: &'static str, value: Value) -> Result<BTreeMap<String, Value>, Error> {
    match value {
        Value::Dict(map) => Ok(map),
        other => Err(Error::NotADictionary {
            format,
            found: other.type_name(),
        }),
    }
}

/// Checks raw key-value pairs against the model and builds the policy.
pub fn values(mut raw: BTreeMap<String, Value>) -> Result<Decoded, Error> {
    let mut settings = BTreeMap::new();
    let mut placeholders = Vec::new();
    for spec in KEYS {
        let key = spec.key;
        let value = match raw.remove(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(v) => Some(v),
        };
        let value = match value {
            Some(Value::String(s)) => match placeholder::find(&s) {
                Some(token) => {
                    if spec.required {
                        return Err(Error::Unsubstituted {
                            key,
                            token: token.to_owned(),
                        });
                    }
                    placeholders.push(Placeholder {
                        key,
                        token: token.to_owned(),
                    });
                    None
                }
                None => Some(Value::String(s)),
            },
            other => other,
        };
        match value {
            Some(v) => {
                settings.insert(key, setting(key, &spec.kind, v)?);
            }
            None if spec.required => return Err(Error::Missing { key }),
            None => {}
        }
    }
    if raw.len() > MAX_UNKNOWN_KEYS {
        return Err(Error::TooManyKeys {
            max: MAX_UNKNOWN_KEYS,
        });
    }
    Ok(Decoded {
        policy: Policy::from_settings(settings)?,
        unknown: raw,
        placeholders,
    })
}

fn setting(key: &'static str, kind: &Kind, value: Value) -> Result<Setting, Error> {
    let wrong = |v: &Value| Error::WrongType {
        key,
        expected: kind.type_name(),
        found: v.type_name(),
    };
    match (kind, value) {
        (Kind::Bool { .. }, Value::Bool(b)) => Ok(Setting::Bool(b)),
        (Kind::Integer { min, max, .. }, Value::Integer(i)) => {
            if i < i128::from(*min) || i > i128::from(*max) {
                return Err(Error::Invalid {
                    key,
                    rule: format!("must be between {min} and {max}, got {i}"),
                });
            }
            // Inside `min..=max`, so inside i64.
            Ok(Setting::Integer(i64::try_from(i).unwrap_or(*min)))
        }
        (Kind::String { .. }, Value::String(s)) => {
            model::check_string(key, &s)?;
            Ok(Setting::String(s))
        }
        (Kind::Choice { options, .. }, Value::String(s)) => {
            if options.iter().any(|o| o.value == s) {
                Ok(Setting::String(s))
            } else {
                Err(Error::Invalid {
                    key,
                    rule: one_of(options, &s),
                })
            }
        }
        (Kind::MultiSelect { options, .. }, Value::Array(items)) => {
            let mut out: Vec<String> = Vec::with_capacity(items.len());
            for item in items {
                let Value::String(s) = item else {
                    return Err(Error::WrongType {
                        key,
                        expected: "an array of strings",
                        found: "an array holding other values",
                    });
                };
                if !options.iter().any(|o| o.value == s) {
                    return Err(Error::Invalid {
                        key,
                        rule: one_of(options, &s),
                    });
                }
                if out.contains(&s) {
                    return Err(Error::Invalid {
                        key,
                        rule: format!("lists `{s}` twice"),
                    });
                }
                out.push(s);
            }
            Ok(Setting::StringList(out))
        }
        (Kind::Hidden { value }, Value::String(s)) => {
            if s == *value {
                Ok(Setting::String(s))
            } else {
                Err(Error::Invalid {
                    key,
                    rule: format!("must be `{value}`, the version this app understands, got `{s}`"),
                })
            }
        }
        (_, v) => Err(wrong(&v)),
    }
}

fn one_of(options: &[model::Choice], got: &str) -> String {
    let allowed: Vec<&str> = options.iter().map(|o| o.value).collect();
    format!("must be one of {}, got `{got}`", allowed.join(", "))
}
