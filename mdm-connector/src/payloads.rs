//! The few payloads the connector's service sends, built by the pure
//! builders of [`crate::apple`] and [`crate::android`] (this module only
//! adapts their inputs).

use kontor_managed_config::{OrgId, Policy, Restrictions, ServerUrl, UserIdentity};

/// Apple `RemoveApplication` for the app, as an XML plist command.
pub fn remove_application(command_uuid: &str, bundle_id: &str) -> Result<String, String> {
    let mut command = plist::Dictionary::new();
    command.insert("RequestType".into(), "RemoveApplication".into());
    command.insert("Identifier".into(), bundle_id.into());
    wrap(command_uuid, command)
}

/// Apple `Settings` with an `ApplicationConfiguration` item carrying the
/// user's configuration with the new restrictions.
pub fn settings_restrictions(
    command_uuid: &str,
    bundle_id: &str,
    server_url: &str,
    org: &str,
    user: &str,
    restrictions: &Restrictions,
) -> Result<String, String> {
    let e = |e: kontor_managed_config::Error| e.to_string();
    let mut policy = Policy::new(
        ServerUrl::parse(server_url).map_err(e)?,
        OrgId::parse(org).map_err(e)?,
    );
    policy.user_identity = Some(UserIdentity::parse(user).map_err(e)?);
    policy.restrictions = restrictions.clone();
    let configuration = kontor_managed_config::apple::configuration(&policy).map_err(e)?;
    let mut item = plist::Dictionary::new();
    item.insert("Item".into(), "ApplicationConfiguration".into());
    item.insert("Identifier".into(), bundle_id.into());
    item.insert(
        "Configuration".into(),
        plist::Value::Dictionary(configuration),
    );
    let mut command = plist::Dictionary::new();
    command.insert("RequestType".into(), "Settings".into());
    command.insert(
        "Settings".into(),
        plist::Value::Array(vec![plist::Value::Dictionary(item)]),
    );
    wrap(command_uuid, command)
}

fn wrap(command_uuid: &str, command: plist::Dictionary) -> Result<String, String> {
    let mut top = plist::Dictionary::new();
    top.insert("Command".into(), plist::Value::Dictionary(command));
    top.insert("CommandUUID".into(), command_uuid.into());
    let mut out = Vec::new();
    plist::Value::Dictionary(top)
        .to_writer_xml(&mut out)
        .map_err(|e| e.to_string())?;
    String::from_utf8(out).map_err(|e| e.to_string())
}

/// Android `devices.issueCommand` body clearing the app's data.
pub fn clear_app_data(package: &str) -> Result<serde_json::Value, String> {
    Ok(serde_json::json!({
        "type": "CLEAR_APP_DATA",
        "clearAppsDataParams": { "packageNames": [package] },
    }))
}
