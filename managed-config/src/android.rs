//! Android: the `res/xml/app_restrictions.xml` schema an EMM reads from the
//! APK, its strings resources in English and German, and a concrete
//! configuration as the app receives it (the restrictions `Bundle` as JSON).
//!
//! Keys map to restriction types: bool, integer, string, choice,
//! multi-select and hidden. Every key is flat (no bundle or bundle_array):
//! EMM consoles such as Intune's configuration designer cannot edit nested
//! bundles, and the AppConfig specfile has no nesting at all, so one flat key
//! set is the one shape every format can carry unchanged. The output keeps
//! Android lint's rules (`ValidRestrictions`): literal unique keys, a title on
//! every restriction, entries and entryValues on choice and multi-select, a
//! default on hidden, numeric integer defaults.

use crate::Error;
use crate::model::{KEYS, Kind, Lang, Policy, Setting};
use crate::xml::Xml;

const ANDROID_NS: &str = "http://schemas.android.com/apk/res/android";

/// The resource name Kontor gives to one text of `key`:
/// `kontor_mc_<key>_<what>`.
pub fn resource_name(key: &str, what: &str) -> String {
    format!("kontor_mc_{key}_{what}")
}

/// `res/xml/app_restrictions.xml`.
pub fn restrictions_xml() -> Result<String, Error> {
    let mut x = Xml::new()?;
    x.start("restrictions", &[("xmlns:android", ANDROID_NS)])?;
    for spec in KEYS {
        let key = spec.key;
        let title = format!("@string/{}", resource_name(key, "title"));
        let description = format!("@string/{}", resource_name(key, "description"));
        let entries = format!("@array/{}", resource_name(key, "entries"));
        let entry_values = format!("@array/{}", resource_name(key, "entry_values"));
        let multi_default = format!("@array/{}", resource_name(key, "default"));
        let (kind, default) = match spec.kind {
            Kind::Bool { default } => ("bool", Some(default.to_string())),
            Kind::Integer { default, .. } => ("integer", Some(default.to_string())),
            Kind::String { .. } => ("string", None),
            Kind::Choice { default, .. } => ("choice", Some(default.to_owned())),
            Kind::MultiSelect { .. } => ("multi-select", Some(multi_default)),
            Kind::Hidden { value } => ("hidden", Some(value.to_owned())),
        };
        let mut attrs = vec![
            ("android:key", key),
            ("android:title", title.as_str()),
            ("android:description", description.as_str()),
            ("android:restrictionType", kind),
        ];
        if let Some(default) = &default {
            attrs.push(("android:defaultValue", default.as_str()));
        }
        if matches!(spec.kind, Kind::Choice { .. } | Kind::MultiSelect { .. }) {
            attrs.push(("android:entries", entries.as_str()));
            attrs.push(("android:entryValues", entry_values.as_str()));
        }
        x.empty("restriction", &attrs)?;
    }
    x.end("restrictions")?;
    x.finish()
}

/// `res/values/strings.xml` (English, with the untranslatable arrays) or
/// `res/values-de/strings.xml` (German).
pub fn strings_xml(lang: Lang) -> Result<String, Error> {
    let mut x = Xml::new()?;
    x.start("resources", &[])?;
    for spec in KEYS {
        let key = spec.key;
        x.text(
            "string",
            &[("name", &resource_name(key, "title"))],
            &escape(spec.title.get(lang)),
        )?;
        x.text(
            "string",
            &[("name", &resource_name(key, "description"))],
            &escape(spec.description.get(lang)),
        )?;
        let (options, default) = match spec.kind {
            Kind::Choice { options, .. } => (options, None),
            Kind::MultiSelect { options, default } => (options, Some(default)),
            _ => continue,
        };
        x.start("string-array", &[("name", &resource_name(key, "entries"))])?;
        for option in options {
            x.text("item", &[], &escape(option.label.get(lang)))?;
        }
        x.end("string-array")?;
        if lang == Lang::En {
            // Values and defaults are never translated; they live once, in
            // the default resources.
            let attrs = [
                ("name", resource_name(key, "entry_values")),
                ("translatable", "false".into()),
            ];
            x.start(
                "string-array",
                &attrs
                    .iter()
                    .map(|(k, v)| (*k, v.as_str()))
                    .collect::<Vec<_>>(),
            )?;
            for option in options {
                x.text("item", &[], option.value)?;
            }
            x.end("string-array")?;
            if let Some(default) = default {
                let name = resource_name(key, "default");
                x.start(
                    "string-array",
                    &[("name", &name), ("translatable", "false")],
                )?;
                for value in default {
                    x.text("item", &[], value)?;
                }
                x.end("string-array")?;
            }
        }
    }
    x.end("resources")?;
    x.finish()
}

/// Android string resources treat `'`, `"` and `\` specially and a leading
/// `@` or `?` as a reference; escape them with a backslash.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.chars().enumerate() {
        match c {
            '\'' | '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '@' | '?' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// A policy as the JSON object of its key-value pairs, typed as an Android
/// restrictions bundle carries them (bool, int, String, String[]).
pub fn bundle_json(policy: &Policy) -> Result<String, Error> {
    let map = bundle_map(policy)?;
    serde_json::to_string_pretty(&serde_json::Value::Object(map))
        .map(|s| s + "\n")
        .map_err(|e| Error::Encode {
            format: "json",
            detail: e.to_string(),
        })
}

pub(crate) fn bundle_map(
    policy: &Policy,
) -> Result<serde_json::Map<String, serde_json::Value>, Error> {
    use serde_json::Value as J;
    Ok(policy
        .settings()?
        .into_iter()
        .map(|(key, setting)| {
            let value = match setting {
                Setting::Bool(b) => J::Bool(b),
                Setting::Integer(i) => J::from(i),
                Setting::String(s) => J::String(s),
                Setting::StringList(l) => J::Array(l.into_iter().map(J::String).collect()),
            };
            (key.to_owned(), value)
        })
        .collect())
}
