//! Apple: the managed app configuration as XML plist, alone (what the app
//! reads from `com.apple.configuration.managed`) and inside the two MDM
//! commands that carry it: InstallApplication's `Configuration` and the
//! Settings command's `ApplicationConfiguration` item. The commands are
//! written without the `Command`/`CommandUUID` envelope, which the MDM server
//! adds when it queues them.

use plist::{Dictionary, Value};

use crate::Error;
use crate::model::{BundleId, Policy, Setting};

/// The `Configuration` dictionary, keys in model order.
pub fn configuration(policy: &Policy) -> Result<Dictionary, Error> {
    Ok(policy
        .settings()?
        .into_iter()
        .map(|(key, setting)| {
            let value = match setting {
                Setting::Bool(b) => Value::Boolean(b),
                Setting::Integer(i) => Value::Integer(i.into()),
                Setting::String(s) => Value::String(s),
                Setting::StringList(l) => Value::Array(l.into_iter().map(Value::String).collect()),
            };
            (key.to_owned(), value)
        })
        .collect())
}

/// The `Configuration` dictionary as an XML plist document.
pub fn configuration_plist(policy: &Policy) -> Result<String, Error> {
    to_xml(Value::Dictionary(configuration(policy)?))
}

/// An InstallApplication command for `app` carrying the configuration.
pub fn install_application(policy: &Policy, app: &BundleId) -> Result<String, Error> {
    let mut command = Dictionary::new();
    command.insert("RequestType".into(), "InstallApplication".into());
    command.insert("Identifier".into(), app.as_str().into());
    command.insert(
        "Configuration".into(),
        Value::Dictionary(configuration(policy)?),
    );
    to_xml(Value::Dictionary(command))
}

/// A Settings command with one ApplicationConfiguration item for `app`.
pub fn settings_command(policy: &Policy, app: &BundleId) -> Result<String, Error> {
    let mut item = Dictionary::new();
    item.insert("Item".into(), "ApplicationConfiguration".into());
    item.insert("Identifier".into(), app.as_str().into());
    item.insert(
        "Configuration".into(),
        Value::Dictionary(configuration(policy)?),
    );
    let mut command = Dictionary::new();
    command.insert("RequestType".into(), "Settings".into());
    command.insert(
        "Settings".into(),
        Value::Array(vec![Value::Dictionary(item)]),
    );
    to_xml(Value::Dictionary(command))
}

fn to_xml(value: Value) -> Result<String, Error> {
    let mut out = Vec::new();
    value.to_writer_xml(&mut out).map_err(|e| Error::Encode {
        format: "plist",
        detail: e.to_string(),
    })?;
    out.push(b'\n');
    String::from_utf8(out).map_err(|e| Error::Encode {
        format: "plist",
        detail: e.to_string(),
    })
}
