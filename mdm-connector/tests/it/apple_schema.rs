//! Every Apple payload the builders emit, checked against Apple's
//! device-management schemas (`../shared/schemas/apple-device-management`
//! beside the workspace): every key known at its level, of the declared
//! type, inside its `rangelist`, every `presence: required` key present; a
//! command's `RequestType` is the schema's `payload.requesttype`, a
//! declaration's `Type` its `payload.declarationtype`.
//!
//! The checker is a generalised copy of managed-config's
//! (`managed-config/tests/it/apple_schema.rs`): it also walks JSON
//! declarations, converted to plist values, and unwraps the command
//! envelope NanoMDM takes.
//!
//! The schema release in `../shared/schemas` is Apple's iOS 18.1 one; the
//! app.managed keys that reference an app-config asset
//! (`LegacyAppConfigAssetReference`, `AppConfig`) came with iOS 18.4. When
//! the local schema lacks them, [`APP_MANAGED_18_4_KEYS`] supplies them,
//! copied from the later release of the same file (apple/device-management,
//! `declarative/declarations/configurations/app.managed.yaml`), so the check
//! stays strict for every other key.

use plist::{Dictionary, Value};
use yaml_rust2::{Yaml, YamlLoader};

use crate::payloads::{apple_commands, apple_declarations, plist_dict, root};

/// The app.managed keys added in iOS 18.4, as Apple's later schema release
/// declares them (texts shortened; `ExtensionConfigs` left out because the
/// builders do not use it).
const APP_MANAGED_18_4_KEYS: &str = r#"
- key: AppConfig
  type: <dictionary>
  presence: optional
  subkeys:
  - key: DataAssetReference
    type: <string>
    assettypes:
    - com.apple.asset.data
    asset-content-types:
    - application/plist
    - application/x-plist
    - application/xml
    - text/xml
    presence: optional
  - key: Passwords
    type: <array>
    presence: optional
    subkeys:
    - key: PasswordAppConfigItem
      type: <dictionary>
      presence: required
      subkeys:
      - key: Identifier
        type: <string>
        presence: required
      - key: AssetReference
        type: <string>
        presence: required
- key: LegacyAppConfigAssetReference
  type: <string>
  assettypes:
  - com.apple.asset.data
  asset-content-types:
  - application/plist
  - application/x-plist
  - application/xml
  - text/xml
  presence: optional
"#;

/// The YAML document at `relative` under the Apple schema folder, or `None`
/// after printing why the calling test skips.
fn schema(relative: &str) -> Option<Yaml> {
    let path = root()
        .join("../shared/schemas/apple-device-management")
        .join(relative);
    if !path.exists() {
        println!("skipped: {} not found", path.display());
        return None;
    }
    let text = std::fs::read_to_string(&path).expect("read schema");
    let mut docs = YamlLoader::load_from_str(&text).expect("schema is YAML");
    assert_eq!(docs.len(), 1, "{relative}: one YAML document");
    Some(docs.remove(0))
}

fn command_schema(name: &str) -> Option<Yaml> {
    schema(&format!("mdm/commands/{name}.yaml"))
}

/// The payload keys of app.managed, with the iOS 18.4 keys added when the
/// local release lacks them.
fn app_managed_keys(doc: &Yaml) -> Vec<Yaml> {
    let mut keys = doc["payloadkeys"].as_vec().expect("payloadkeys").clone();
    let extra = YamlLoader::load_from_str(APP_MANAGED_18_4_KEYS).expect("supplement is YAML");
    for spec in extra[0].as_vec().expect("supplement is a list") {
        if !keys.iter().any(|k| k["key"] == spec["key"]) {
            println!(
                "note: app.managed schema lacks {:?}; using the iOS 18.4 definition",
                spec["key"].as_str()
            );
            keys.push(spec.clone());
        }
    }
    keys
}

/// Checks `dict` against the key specs `keys`, collecting violations.
fn check_dict(dict: &Dictionary, keys: &[Yaml], path: &str, errors: &mut Vec<String>) {
    let any = keys.iter().find(|k| k["key"].as_str() == Some("ANY"));
    for spec in keys {
        let name = spec["key"].as_str().unwrap_or_default();
        if spec["presence"].as_str() == Some("required") && !dict.contains_key(name) {
            errors.push(format!("{path}: required key {name} is missing"));
        }
    }
    for (name, value) in dict {
        let here = format!("{path}.{name}");
        match keys
            .iter()
            .find(|k| k["key"].as_str() == Some(name.as_str()))
            .or(any)
        {
            Some(spec) => check_value(value, spec, &here, errors),
            None => errors.push(format!("{here}: key not in the schema")),
        }
    }
}

fn check_value(value: &Value, spec: &Yaml, path: &str, errors: &mut Vec<String>) {
    let ty = spec["type"].as_str().unwrap_or("<any>");
    let ok = match (ty, value) {
        ("<any>", Value::Uid(_)) => false,
        ("<any>", _) => true,
        ("<string>", Value::String(_))
        | ("<integer>", Value::Integer(_))
        | ("<real>", Value::Real(_))
        | ("<boolean>", Value::Boolean(_))
        | ("<date>", Value::Date(_))
        | ("<data>", Value::Data(_))
        | ("<array>", Value::Array(_))
        | ("<dictionary>", Value::Dictionary(_)) => true,
        _ => false,
    };
    if !ok {
        errors.push(format!("{path}: expected {ty}, found {value:?}"));
        return;
    }
    if let Some(range) = spec["rangelist"].as_vec() {
        let allowed = range.iter().any(|r| match (r, value) {
            (Yaml::String(s), Value::String(v)) => s == v,
            (Yaml::Integer(i), Value::Integer(v)) => v.as_signed() == Some(*i),
            (Yaml::Boolean(b), Value::Boolean(v)) => b == v,
            _ => false,
        });
        if !allowed {
            errors.push(format!("{path}: {value:?} is not in the rangelist"));
        }
    }
    let subkeys = spec["subkeys"]
        .as_vec()
        .map(Vec::as_slice)
        .unwrap_or_default();
    match value {
        Value::Dictionary(d) if !subkeys.is_empty() => check_dict(d, subkeys, path, errors),
        Value::Array(items) if !subkeys.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                let here = format!("{path}[{i}]");
                match element_spec(item, subkeys) {
                    Some(spec) => check_value(item, spec, &here, errors),
                    None => errors.push(format!("{here}: matches no element of the schema")),
                }
            }
        }
        _ => {}
    }
}

/// The spec an array element follows: the only one, or, for arrays of
/// alternatives such as Settings, the dictionary whose `Item` rangelist
/// names the element's `Item`.
fn element_spec<'a>(item: &Value, subkeys: &'a [Yaml]) -> Option<&'a Yaml> {
    if let [only] = subkeys {
        return Some(only);
    }
    let tag = item.as_dictionary()?.get("Item")?.as_string()?;
    subkeys.iter().find(|spec| {
        spec["subkeys"].as_vec().into_iter().flatten().any(|sub| {
            sub["key"].as_str() == Some("Item")
                && sub["rangelist"]
                    .as_vec()
                    .into_iter()
                    .flatten()
                    .any(|r| r.as_str() == Some(tag))
        })
    })
}

/// Checks an enqueued command: the envelope holds exactly `Command` and a
/// string `CommandUUID`, `Command.RequestType` is the schema's, and the rest
/// of `Command` follows `payloadkeys`.
fn check_command(top: &Dictionary, doc: &Yaml) -> Vec<String> {
    let mut errors = Vec::new();
    let keys: Vec<&str> = top.keys().map(String::as_str).collect();
    if keys != ["Command", "CommandUUID"] {
        errors.push(format!("envelope keys are {keys:?}"));
    }
    if !matches!(top.get("CommandUUID"), Some(Value::String(_))) {
        errors.push("CommandUUID is not a string".into());
    }
    let Some(Value::Dictionary(command)) = top.get("Command") else {
        errors.push("Command is not a dictionary".into());
        return errors;
    };
    let request = doc["payload"]["requesttype"]
        .as_str()
        .expect("schema names its request type");
    let mut command = command.clone();
    match command.remove("RequestType") {
        Some(Value::String(t)) if t == request => {}
        other => errors.push(format!("RequestType is {other:?}, not {request}")),
    }
    let keys = doc["payloadkeys"].as_vec().expect("payloadkeys");
    check_dict(&command, keys, request, &mut errors);
    errors
}

/// JSON as the plist value the same schema describes.
fn to_plist(json: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match json {
        J::Null => Value::String("<null>".into()),
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i.into()),
            None => Value::Real(n.as_f64().unwrap_or_default()),
        },
        J::String(s) => Value::String(s.clone()),
        J::Array(a) => Value::Array(a.iter().map(to_plist).collect()),
        J::Object(o) => Value::Dictionary(
            o.iter()
                .map(|(k, v)| (k.clone(), to_plist(v)))
                .collect::<Dictionary>(),
        ),
    }
}

/// Checks a declaration against DeclarationBase and the payload keys of its
/// type; `payload_keys` are the type's keys (possibly supplemented).
fn check_declaration(json: &str, base: &Yaml, doc: &Yaml, payload_keys: &[Yaml]) -> Vec<String> {
    let mut errors = Vec::new();
    let value: serde_json::Value = serde_json::from_str(json).expect("declaration is JSON");
    let Value::Dictionary(top) = to_plist(&value) else {
        return vec!["declaration is not an object".into()];
    };
    check_dict(
        &top,
        base["payloadkeys"].as_vec().expect("base payloadkeys"),
        "declaration",
        &mut errors,
    );
    let wanted = doc["payload"]["declarationtype"]
        .as_str()
        .expect("schema names its declaration type");
    if top.get("Type").and_then(Value::as_string) != Some(wanted) {
        errors.push(format!("Type is {:?}, not {wanted}", top.get("Type")));
    }
    for key in ["Identifier", "ServerToken"] {
        if let Some(Value::String(s)) = top.get(key)
            && s.len() > 64
        {
            errors.push(format!("{key} is longer than 64 octets"));
        }
    }
    match top.get("Payload") {
        Some(Value::Dictionary(p)) => check_dict(p, payload_keys, "Payload", &mut errors),
        other => errors.push(format!("Payload is {other:?}")),
    }
    errors
}

/// The schema file of each golden command.
fn schema_of(golden: &str) -> &'static str {
    match golden {
        g if g.contains("install_application") => "application.install",
        g if g.contains("settings") => "settings",
        g if g.contains("managed_application_configuration") => "managed.application.configuration",
        g if g.contains("managed_application_feedback") => "managed.application.feedback",
        g if g.contains("remove_application") => "application.remove",
        other => panic!("no schema known for {other}"),
    }
}

#[test]
fn every_command_matches_its_schema() {
    let mut checked = 0;
    for (name, xml) in apple_commands() {
        let Some(doc) = command_schema(schema_of(name)) else {
            return;
        };
        assert_eq!(
            check_command(&plist_dict(&xml), &doc),
            Vec::<String>::new(),
            "{name}"
        );
        checked += 1;
    }
    assert_eq!(checked, 7, "every command builder is covered");
}

#[test]
fn every_declaration_matches_its_schema() {
    let (Some(base), Some(app_managed), Some(data)) = (
        schema("declarative/declarations/declarationbase.yaml"),
        schema("declarative/declarations/configurations/app.managed.yaml"),
        schema("declarative/declarations/assets/data.yaml"),
    ) else {
        return;
    };
    let app_keys = app_managed_keys(&app_managed);
    let data_keys = data["payloadkeys"].as_vec().expect("payloadkeys").clone();
    for (name, json) in apple_declarations() {
        let (doc, keys) = if name.contains("app_managed") {
            (&app_managed, &app_keys)
        } else {
            (&data, &data_keys)
        };
        assert_eq!(
            check_declaration(&json, &base, doc, keys),
            Vec::<String>::new(),
            "{name}"
        );
        // "One and only one of AppStoreID, BundleID or ManifestURL", and a
        // licence for App Store apps: rules the schema states in prose.
        if name.contains("app_managed") {
            let v: serde_json::Value = serde_json::from_str(&json).unwrap();
            let ids = ["AppStoreID", "BundleID", "ManifestURL"]
                .iter()
                .filter(|k| v["Payload"].get(**k).is_some())
                .count();
            assert_eq!(ids, 1, "{name}: exactly one app id");
            assert!(
                v["Payload"]["InstallBehavior"]["License"]["Assignment"].is_string(),
                "{name}: licence assignment"
            );
        }
    }
}

/// The data asset's content type is one app.managed accepts for the asset
/// it references, and its URL is https as the asset schema demands.
#[test]
fn config_asset_content_type_is_one_app_managed_accepts() {
    let Some(app_managed) = schema("declarative/declarations/configurations/app.managed.yaml")
    else {
        return;
    };
    let keys = app_managed_keys(&app_managed);
    let legacy = keys
        .iter()
        .find(|k| k["key"].as_str() == Some("LegacyAppConfigAssetReference"))
        .expect("LegacyAppConfigAssetReference spec");
    let accepted: Vec<&str> = legacy["asset-content-types"]
        .as_vec()
        .expect("asset-content-types")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert!(
        accepted.contains(&kontor_mdm_connector::apple::CONFIG_CONTENT_TYPE),
        "{accepted:?}"
    );
    assert_eq!(
        legacy["assettypes"][0].as_str(),
        Some("com.apple.asset.data")
    );
}

/// The response samples the result parser tests read look like what the
/// schema says devices answer.
#[test]
fn query_answer_samples_match_the_response_schemas() {
    for (sample, schema_name) in [
        (
            "results/apple/managed_application_configuration.plist",
            "managed.application.configuration",
        ),
        (
            "results/apple/managed_application_feedback.plist",
            "managed.application.feedback",
        ),
    ] {
        let Some(doc) = command_schema(schema_name) else {
            return;
        };
        let text = std::fs::read_to_string(crate::payloads::fixture(sample)).expect("sample");
        let mut response = plist_dict(&text);
        // The keys every command result carries are not in responsekeys.
        for common in ["UDID", "CommandUUID", "Status"] {
            assert!(response.remove(common).is_some(), "{sample}: {common}");
        }
        let mut errors = Vec::new();
        check_dict(
            &response,
            doc["responsekeys"].as_vec().expect("responsekeys"),
            "response",
            &mut errors,
        );
        assert_eq!(errors, Vec::<String>::new(), "{sample}");
    }
}

/// The checker itself must be able to fail: a wrong RequestType, a missing
/// required key, a value outside a rangelist, a wrong type and an unknown
/// key are each reported; so are a declaration of the wrong type and an
/// unknown payload key.
#[test]
fn checker_reports_schema_violations() {
    let (Some(remove), Some(install)) = (
        command_schema("application.remove"),
        command_schema("application.install"),
    ) else {
        return;
    };
    let (_, xml) = apple_commands()
        .into_iter()
        .find(|(n, _)| n.contains("remove_application"))
        .unwrap();
    let mut top = plist_dict(&xml);
    let command = top
        .get_mut("Command")
        .and_then(Value::as_dictionary_mut)
        .unwrap();
    command.remove("Identifier");
    command.insert("Bogus".into(), Value::Boolean(true));
    let errors = check_command(&top, &remove);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_eq!(check_command(&top, &install).len(), 2, "wrong RequestType");

    let (_, xml) = apple_commands()
        .into_iter()
        .find(|(n, _)| n.ends_with("install_application.plist"))
        .unwrap();
    let mut top = plist_dict(&xml);
    let command = top
        .get_mut("Command")
        .and_then(Value::as_dictionary_mut)
        .unwrap();
    command.insert("ManagementFlags".into(), Value::Integer(2.into()));
    command.insert("Identifier".into(), Value::Integer(7.into()));
    let errors = check_command(&top, &install);
    assert_eq!(errors.len(), 2, "{errors:#?}");

    let (Some(base), Some(app_managed)) = (
        schema("declarative/declarations/declarationbase.yaml"),
        schema("declarative/declarations/configurations/app.managed.yaml"),
    ) else {
        return;
    };
    let keys = app_managed_keys(&app_managed);
    let (_, json) = apple_declarations().into_iter().next().unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
    v["Type"] = "com.apple.asset.data".into();
    v["Payload"]["Unknown"] = true.into();
    v["Payload"]["InstallBehavior"]["Install"] = "Sometimes".into();
    let errors = check_declaration(&v.to_string(), &base, &app_managed, &keys);
    assert_eq!(errors.len(), 3, "{errors:#?}");
}
