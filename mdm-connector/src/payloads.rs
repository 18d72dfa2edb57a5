//! The connector's use of the pure builders of [`crate::apple`] and
//! [`crate::android`]: it turns the service's plain inputs into their
//! checked types.

use kontor_managed_config::{BundleId, OrgId, Policy, Restrictions, ServerUrl, UserIdentity};

use crate::android::{self, DeviceName, PackageName};
use crate::apple::{self, CommandUuid};

/// Apple `RemoveApplication` for the app, as an XML plist command.
pub fn remove_application(command_uuid: &str, bundle_id: &str) -> Result<String, String> {
    let uuid = CommandUuid::parse(command_uuid).map_err(|e| e.to_string())?;
    let app = BundleId::parse(bundle_id).map_err(|e| e.to_string())?;
    apple::remove_application(&uuid, &app).map_err(|e| e.to_string())
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
    let uuid = CommandUuid::parse(command_uuid).map_err(|e| e.to_string())?;
    let app = BundleId::parse(bundle_id).map_err(e)?;
    apple::settings_app_configuration(&uuid, &app, Some(&policy)).map_err(|e| e.to_string())
}

/// Android `devices.issueCommand` clearing the app's data: (path, body).
pub fn clear_app_data(device: &str, package: &str) -> Result<(String, String), String> {
    let device = DeviceName::parse(device).map_err(|e| e.to_string())?;
    let package = PackageName::parse(package).map_err(|e| e.to_string())?;
    let request = android::clear_app_data(&device, &[package]).map_err(|e| e.to_string())?;
    Ok((request.path, request.body))
}
