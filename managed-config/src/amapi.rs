//! Android Management API: the `managedProperties` schema Google derives
//! from `app_restrictions.xml` (what `kontor config schema --format amapi`
//! shows), and a concrete `applications[].managedConfiguration` for a policy.

use serde_json::{Value as J, json};

use crate::model::{BundleId, KEYS, Kind, Lang, Policy};
use crate::{Error, android};

/// The schema as the API's `Application.managedProperties`, English texts.
pub fn managed_properties() -> Result<String, Error> {
    let properties: Vec<J> = KEYS
        .iter()
        .map(|spec| {
            let (kind, default, options) = match spec.kind {
                Kind::Bool { default } => ("BOOL", Some(J::Bool(default)), None),
                Kind::Integer { default, .. } => ("INTEGER", Some(J::from(default)), None),
                Kind::String { .. } => ("STRING", None, None),
                Kind::Choice { default, options } => {
                    ("CHOICE", Some(J::from(default)), Some(options))
                }
                Kind::MultiSelect { default, options } => (
                    "MULTISELECT",
                    Some(J::from(default.to_vec())),
                    Some(options),
                ),
                Kind::Hidden { value } => ("HIDDEN", Some(J::from(value)), None),
            };
            let mut p = json!({
                "key": spec.key,
                "type": kind,
                "title": spec.title.get(Lang::En),
                "description": spec.description.get(Lang::En),
            });
            if let Some(default) = default {
                p["defaultValue"] = default;
            }
            if let Some(options) = options {
                p["entries"] = options
                    .iter()
                    .map(|o| json!({"value": o.value, "name": o.label.get(Lang::En)}))
                    .collect();
            }
            p
        })
        .collect();
    pretty(&json!({ "managedProperties": properties }))
}

/// A policy fragment installing the app with `policy` as its managed
/// configuration: `{"applications": [{"packageName", "managedConfiguration"}]}`.
pub fn application_policy(policy: &Policy, package_name: &BundleId) -> Result<String, Error> {
    let configuration = J::Object(android::bundle_map(policy)?);
    pretty(&json!({
        "applications": [{
            "packageName": package_name.as_str(),
            "managedConfiguration": configuration,
        }]
    }))
}

fn pretty(value: &J) -> Result<String, Error> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| Error::Encode {
            format: "json",
            detail: e.to_string(),
        })
}
