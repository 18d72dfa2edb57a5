//! Each Apple output checked against the matching schema of Apple's
//! device-management repository (`../shared/schemas/apple-device-management`):
//! every key known at its level, of the declared type, inside its `rangelist`,
//! and every `presence: required` key present.

use kontor_managed_config::apple;
use plist::{Dictionary, Value};
use yaml_rust2::{Yaml, YamlLoader};

use crate::{app, example_policy, schema};

/// The YAML document of `mdm/commands/<name>.yaml`, or `None` if absent.
fn command_schema(name: &str) -> Option<Yaml> {
    let path = schema(&format!("apple-device-management/mdm/commands/{name}.yaml"))?;
    let text = std::fs::read_to_string(&path).expect("read schema");
    let mut docs = YamlLoader::load_from_str(&text).expect("schema is YAML");
    assert_eq!(docs.len(), 1, "{name}: one YAML document");
    Some(docs.remove(0))
}

fn plist(xml: &str) -> Dictionary {
    match Value::from_reader_xml(xml.as_bytes()).expect("output is a plist") {
        Value::Dictionary(d) => d,
        other => panic!("top level is not a dictionary: {other:?}"),
    }
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

/// Checks a command (without its envelope) against `doc`'s payload keys.
fn check_command(command: &Dictionary, doc: &Yaml) -> Vec<String> {
    let mut errors = Vec::new();
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

#[test]
fn install_application_matches_its_schema() {
    let Some(doc) = command_schema("application.install") else {
        return;
    };
    let command = plist(&apple::install_application(&example_policy(), &app()).unwrap());
    assert_eq!(check_command(&command, &doc), Vec::<String>::new());
}

#[test]
fn settings_matches_its_schema() {
    let Some(doc) = command_schema("settings") else {
        return;
    };
    let command = plist(&apple::settings_command(&example_policy(), &app()).unwrap());
    assert_eq!(check_command(&command, &doc), Vec::<String>::new());
}

/// The configuration alone is what the device reports back in a
/// ManagedApplicationConfiguration response; check it in that place.
#[test]
fn configuration_matches_the_managed_application_configuration_response() {
    let Some(doc) = command_schema("managed.application.configuration") else {
        return;
    };
    let configuration = plist(&apple::configuration_plist(&example_policy()).unwrap());
    let mut item = Dictionary::new();
    item.insert("Identifier".into(), app().as_str().into());
    item.insert("Configuration".into(), Value::Dictionary(configuration));
    let mut response = Dictionary::new();
    response.insert(
        "ApplicationConfigurations".into(),
        Value::Array(vec![item.into()]),
    );
    let mut errors = Vec::new();
    check_dict(
        &response,
        doc["responsekeys"].as_vec().expect("responsekeys"),
        "response",
        &mut errors,
    );
    assert_eq!(errors, Vec::<String>::new());
}

/// The checker itself must be able to fail: a command missing a required key,
/// with a key of the wrong type, and with an unknown key is reported three
/// times.
#[test]
fn checker_reports_schema_violations() {
    let Some(doc) = command_schema("settings") else {
        return;
    };
    let mut command = plist(&apple::settings_command(&example_policy(), &app()).unwrap());
    let Some(Value::Array(items)) = command.get_mut("Settings") else {
        panic!("Settings array")
    };
    let item = items[0].as_dictionary_mut().expect("item dict");
    item.remove("Identifier");
    item.insert("Configuration".into(), Value::String("not a dict".into()));
    command.insert("Bogus".into(), Value::Boolean(true));
    let errors = check_command(&command, &doc);
    assert_eq!(errors.len(), 3, "{errors:#?}");
}
