//! The connector's core: what an EMM asks for, done through the
//! administration (so it is authorised by the integration's role, scoped to
//! its organisation and audited) plus the matching MDM-side command, sent
//! through the outbox so nothing is lost while an MDM is down.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use kontor_admin::audit::Outcome;
use kontor_admin::directory::{RestrictionSettings, Scope};
use kontor_admin::service::{Admin, InviteRequest, Principal};
use kontor_managed_config::{BundleId, Policy, amapi, android, apple, decode};
use kontor_provisioning::store as pstore;
use kontor_relay::bus::Bus;
use kontor_relay::store::RelayStore;
use serde::{Deserialize, Serialize};

use crate::store::{ConnectorStore, IdField, MdmCommand, MdmDevice, StoreError};

/// Everything the connector refuses or fails at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input, named.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Nothing matches in the caller's organisation.
    #[error("{0} not found")]
    NotFound(String),
    /// The administration refused or failed.
    #[error(transparent)]
    Admin(#[from] kontor_admin::Error),
    /// Our storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A payload could not be built.
    #[error("payload: {0}")]
    Payload(String),
    /// The MDM side could not be queued.
    #[error("mdm command not queued: {0}")]
    Mdm(String),
}

/// Shorthand.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed future, for the object-safe [`MdmSide`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Sends commands to the MDM servers (through the persisted outbox).
pub trait MdmSide: Send + Sync + 'static {
    /// Queues a raw Apple MDM command plist for an enrollment id.
    fn apple_command<'a>(
        &'a self,
        enrollment_id: &'a str,
        command_uuid: &'a str,
        plist: String,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// Queues an Android Management API request (`path` under `/v1/`,
    /// JSON `body`) about a device.
    fn android_command<'a>(
        &'a self,
        device_name: &'a str,
        command_id: &'a str,
        path: String,
        body: String,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// The app as MDMs know it.
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    /// The iOS bundle id.
    pub bundle_id: String,
    /// The Android package name.
    pub android_package: String,
}

impl Default for ConnectorConfig {
    fn default() -> Self {
        ConnectorConfig {
            bundle_id: BundleId::DEFAULT.to_owned(),
            android_package: BundleId::DEFAULT.to_owned(),
        }
    }
}

/// The MDM's identifiers of a device.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeviceIds {
    /// Apple UDID.
    #[serde(default)]
    pub udid: Option<String>,
    /// Serial number.
    #[serde(default)]
    pub serial: Option<String>,
    /// Android Management API device name.
    #[serde(default)]
    pub android_device: Option<String>,
    /// The MDM's enrollment id (NanoMDM), when not the UDID.
    #[serde(default)]
    pub enrollment_id: Option<String>,
}

impl DeviceIds {
    fn is_empty(&self) -> bool {
        self.udid.is_none()
            && self.serial.is_none()
            && self.android_device.is_none()
            && self.enrollment_id.is_none()
    }

    fn validate(&self) -> Result<()> {
        let check = |name: &str, v: &Option<String>, ok: &dyn Fn(char) -> bool| {
            if let Some(v) = v
                && (v.is_empty() || v.len() > 200 || !v.chars().all(ok))
            {
                return Err(Error::Invalid(format!(
                    "{name} {v:?} is not a valid identifier"
                )));
            }
            Ok(())
        };
        let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
        check("udid", &self.udid, &plain)?;
        check("serial", &self.serial, &plain)?;
        check("enrollment_id", &self.enrollment_id, &|c| {
            plain(c) || c == ':'
        })?;
        if let Some(name) = &self.android_device {
            let parts: Vec<&str> = name.split('/').collect();
            let ok = parts.len() == 4
                && parts[0] == "enterprises"
                && parts[2] == "devices"
                && [parts[1], parts[3]]
                    .iter()
                    .all(|p| !p.is_empty() && p.chars().all(plain));
            if !ok {
                return Err(Error::Invalid(format!(
                    "android_device {name:?} must be enterprises/{{id}}/devices/{{id}}"
                )));
            }
        }
        Ok(())
    }
}

/// The formats a configuration is rendered in.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Apple managed app configuration (plist dictionary).
    ApplePlist,
    /// Android restrictions bundle as JSON.
    AndroidJson,
    /// Android Management API policy `applications[]` entry.
    Amapi,
}

/// An EMM's request for one device's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigurationRequest {
    /// The user (created if new).
    pub user_id: String,
    /// Display name for a new user.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Department for a new user.
    #[serde(default)]
    pub department: Option<String>,
    /// The format.
    pub format: Format,
    /// The MDM's identifiers of the device the configuration is for.
    #[serde(default)]
    pub device: DeviceIds,
}

/// Which devices a wipe is for: exactly one field.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WipeRequest {
    /// Every device of a user.
    #[serde(default)]
    pub user_id: Option<String>,
    /// A Kontor device id.
    #[serde(default)]
    pub device_id: Option<String>,
    /// Devices the MDM knows by this UDID.
    #[serde(default)]
    pub udid: Option<String>,
    /// ... this serial number.
    #[serde(default)]
    pub serial: Option<String>,
    /// ... this Android device name.
    #[serde(default)]
    pub android_device: Option<String>,
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0),
    )
    .unwrap_or(i64::MAX)
}

/// A new random id as a UUID string (version 4).
pub fn new_uuid() -> String {
    let mut b = [0u8; 16];
    kontor_admin::auth::fill_random(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b).to_uppercase();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The connector.
pub struct Connector<P, S, B> {
    admin: Arc<Admin<P, S, B>>,
    store: ConnectorStore,
    config: ConnectorConfig,
    mdm: Option<Arc<dyn MdmSide>>,
}

impl<P, S, B> std::fmt::Debug for Connector<P, S, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").finish_non_exhaustive()
    }
}

/// What one device's wipe did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WipeOutcome {
    /// The Kontor device, hex (absent when the MDM device never enrolled).
    pub device: Option<String>,
    /// The user.
    pub user_id: String,
    /// The Kontor wipe (relay command, certificate revoked on the device's receipt).
    pub wipe: Option<serde_json::Value>,
    /// The MDM-side command id, if one was queued.
    pub mdm_command: Option<String>,
}

impl<P, S, B> Connector<P, S, B>
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    /// A connector over the administration.
    pub fn new(
        admin: Arc<Admin<P, S, B>>,
        store: ConnectorStore,
        config: ConnectorConfig,
        mdm: Option<Arc<dyn MdmSide>>,
    ) -> Self {
        Connector {
            admin,
            store,
            config,
            mdm,
        }
    }

    /// The administration (for authentication).
    pub fn admin(&self) -> &Arc<Admin<P, S, B>> {
        &self.admin
    }

    /// The store.
    pub fn store(&self) -> &ConnectorStore {
        &self.store
    }

    async fn record(
        &self,
        p: &Principal,
        action: &str,
        target: &str,
        outcome: Outcome,
        detail: serde_json::Value,
    ) -> Result<()> {
        self.admin
            .record(p, action, target, outcome, detail)
            .await?;
        Ok(())
    }

    fn render(&self, policy: &Policy, format: Format) -> Result<String> {
        let bad = |e: kontor_managed_config::Error| Error::Payload(e.to_string());
        match format {
            Format::ApplePlist => apple::configuration_plist(policy).map_err(bad),
            Format::AndroidJson => android::bundle_json(policy).map_err(bad),
            Format::Amapi => {
                let package = BundleId::parse(&self.config.android_package).map_err(bad)?;
                amapi::application_policy(policy, &package).map_err(bad)
            }
        }
    }

    /// One device's managed configuration with a fresh one-use enrollment
    /// token; the MDM's identifiers are kept so a later wipe by serial
    /// number finds the Kontor device that enrolled with it.
    pub async fn configuration(
        &self,
        p: &Principal,
        req: &ConfigurationRequest,
    ) -> Result<serde_json::Value> {
        req.device.validate()?;
        // The trail names the user by pseudonym (erasable mapping).
        let user = self.admin.pseudonym(&p.org, &req.user_id).await?;
        let detail =
            serde_json::json!({ "user": user, "format": req.format, "device": req.device });
        self.record(p, "emm.configuration", &user, Outcome::Requested, detail)
            .await?;
        let invitation = self
            .admin
            .invite(
                p,
                &InviteRequest {
                    user_id: req.user_id.clone(),
                    display_name: req.display_name.clone(),
                    department: req.department.clone(),
                    devices: Some(1),
                },
            )
            .await?;
        let token_id = invitation["token_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if !req.device.is_empty() {
            self.store
                .put_device(MdmDevice {
                    token_id: token_id.clone(),
                    org: p.org.clone(),
                    user_id: req.user_id.clone(),
                    udid: req.device.udid.clone(),
                    serial: req.device.serial.clone(),
                    android_device: req.device.android_device.clone(),
                    enrollment_id: req
                        .device
                        .enrollment_id
                        .clone()
                        .or_else(|| req.device.udid.clone()),
                    created_at_ms: now_ms(),
                })
                .await?;
        }
        let plist = invitation["managed_config"]["apple_plist"]
            .as_str()
            .unwrap_or_default();
        let policy = decode::apple_plist(plist.as_bytes())
            .map_err(|e| Error::Payload(e.to_string()))?
            .policy;
        let configuration = self.render(&policy, req.format)?;
        self.record(
            p,
            "emm.configuration",
            &user,
            Outcome::Done,
            serde_json::json!({ "token": token_id }),
        )
        .await?;
        Ok(serde_json::json!({
            "user_id": req.user_id,
            "token_id": token_id,
            "expires_at": invitation["expires_at"],
            "format": req.format,
            "configuration": configuration,
        }))
    }

    /// A department's configuration with one bulk token (`uses`
    /// enrollments); the EMM fills in each user's identity (its own
    /// variable for the user's e-mail address, under the key
    /// `user_identity`).
    pub async fn bulk_configuration(
        &self,
        p: &Principal,
        department: &str,
        uses: u32,
        format: Format,
    ) -> Result<serde_json::Value> {
        let (token, token_id) = self.admin.department_token(p, department, uses).await?;
        let bad = |e: kontor_managed_config::Error| Error::Payload(e.to_string());
        let mut policy = Policy::new(
            kontor_managed_config::ServerUrl::parse(&self.admin.config().enroll_url)
                .map_err(bad)?,
            kontor_managed_config::OrgId::parse(&p.org).map_err(bad)?,
        );
        policy.enrollment_token =
            Some(kontor_managed_config::EnrollmentToken::parse(&token).map_err(bad)?);
        policy.department =
            Some(kontor_managed_config::Department::parse(department).map_err(bad)?);
        let configuration = self.render(&policy, format)?;
        self.record(
            p,
            "emm.bulk_configuration",
            department,
            Outcome::Done,
            serde_json::json!({ "token": token_id, "uses": uses }),
        )
        .await?;
        Ok(
            serde_json::json!({ "department": department, "token_id": token_id, "uses": uses, "format": format, "configuration": configuration }),
        )
    }

    /// Wipes what the request names: the Kontor side (relay wipe; the
    /// certificate is revoked on the device's receipt) and the MDM side
    /// (RemoveApplication for Apple, CLEAR_APP_DATA for Android) in one
    /// call. Unknown identifiers change nothing.
    pub async fn wipe(&self, p: &Principal, req: &WipeRequest) -> Result<Vec<WipeOutcome>> {
        let given = [
            &req.user_id,
            &req.device_id,
            &req.udid,
            &req.serial,
            &req.android_device,
        ]
        .iter()
        .filter(|v| v.is_some())
        .count();
        if given != 1 {
            return Err(Error::Invalid(
                "name exactly one of user_id, device_id, udid, serial, android_device".into(),
            ));
        }
        // Resolve everything first: nothing happens unless all is found.
        let mut targets: Vec<(Option<String>, String, Option<MdmDevice>)> = Vec::new();
        if let Some(user) = &req.user_id {
            for (device, _, token) in self.admin.user_devices(p, user).await? {
                let mapping = match token {
                    Some(t) => self.store.device_of_token(&t).await?,
                    None => None,
                };
                targets.push((Some(device.to_string()), user.clone(), mapping));
            }
            if targets.is_empty() {
                return Err(Error::NotFound(format!("a current device of {user}")));
            }
        } else if let Some(device) = &req.device_id {
            let user = self.admin.device_owner(p, device).await?;
            let token = self
                .admin
                .user_devices(p, &user)
                .await?
                .into_iter()
                .find(|(d, _, _)| d.to_string() == *device)
                .and_then(|(_, _, t)| t);
            let mapping = match token {
                Some(t) => self.store.device_of_token(&t).await?,
                None => None,
            };
            targets.push((Some(device.clone()), user, mapping));
        } else {
            let (field, value) = match (&req.udid, &req.serial, &req.android_device) {
                (Some(v), _, _) => (IdField::Udid, v),
                (_, Some(v), _) => (IdField::Serial, v),
                (_, _, Some(v)) => (IdField::AndroidDevice, v),
                _ => unreachable_none()?,
            };
            let mappings = self.store.devices_by(&p.org, field, value).await?;
            if mappings.is_empty() {
                return Err(Error::NotFound(format!(
                    "a device with that identifier ({value})"
                )));
            }
            for m in mappings {
                let device = self
                    .admin
                    .user_devices(p, &m.user_id)
                    .await?
                    .into_iter()
                    .find(|(_, _, t)| t.as_deref() == Some(m.token_id.as_str()))
                    .map(|(d, _, _)| d.to_string());
                targets.push((device, m.user_id.clone(), Some(m)));
            }
        }
        let user = match &req.user_id {
            Some(user) => Some(self.admin.pseudonym(&p.org, user).await?),
            None => None,
        };
        let detail = serde_json::json!({
            "user_id": user, "device_id": req.device_id, "udid": req.udid,
            "serial": req.serial, "android_device": req.android_device, "devices": targets.len(),
        });
        self.record(p, "emm.wipe", "-", Outcome::Requested, detail)
            .await?;
        let mut out = Vec::new();
        for (device, user, mapping) in targets {
            let wipe = match &device {
                Some(d) => Some(self.admin.wipe_device(p, d, false).await?),
                None => None,
            };
            let mdm_command = match &mapping {
                Some(m) => self.mdm_wipe(p, m, device.as_deref()).await?,
                None => None,
            };
            out.push(WipeOutcome {
                device,
                user_id: user,
                wipe,
                mdm_command,
            });
        }
        let mut recorded = serde_json::to_value(&out).unwrap_or_default();
        if let Some(items) = recorded.as_array_mut() {
            for item in items {
                if let Some(user) = item.get_mut("user_id")
                    && let Some(clear) = user.as_str()
                {
                    *user = serde_json::Value::String(self.admin.pseudonym(&p.org, clear).await?);
                }
            }
        }
        self.record(p, "emm.wipe", "-", Outcome::Done, recorded)
            .await?;
        Ok(out)
    }

    async fn mdm_wipe(
        &self,
        p: &Principal,
        m: &MdmDevice,
        device: Option<&str>,
    ) -> Result<Option<String>> {
        let Some(mdm) = &self.mdm else {
            return Ok(None);
        };
        let command_id = new_uuid();
        let (platform, kind, target) = if let Some(enrollment) =
            m.enrollment_id.as_ref().or(m.udid.as_ref())
        {
            let plist = crate::payloads::remove_application(&command_id, &self.config.bundle_id)
                .map_err(Error::Payload)?;
            mdm.apple_command(enrollment, &command_id, plist)
                .await
                .map_err(Error::Mdm)?;
            ("apple", "remove_application", enrollment.clone())
        } else if let Some(name) = &m.android_device {
            let (path, body) = crate::payloads::clear_app_data(name, &self.config.android_package)
                .map_err(Error::Payload)?;
            mdm.android_command(name, &command_id, path, body)
                .await
                .map_err(Error::Mdm)?;
            ("android", "clear_app_data", name.clone())
        } else {
            return Ok(None);
        };
        let now = now_ms();
        self.store
            .put_command(MdmCommand {
                command_id: command_id.clone(),
                org: p.org.clone(),
                platform: platform.into(),
                kind: kind.into(),
                mdm_target: target.clone(),
                device: device.map(str::to_owned),
                user_id: Some(m.user_id.clone()),
                status: "queued".into(),
                detail: "{}".into(),
                created_at_ms: now,
                updated_at_ms: now,
            })
            .await?;
        self.record(
            p,
            &format!("mdm.{kind}"),
            &target,
            Outcome::Requested,
            serde_json::json!({ "command": command_id, "platform": platform }),
        )
        .await?;
        Ok(Some(command_id))
    }

    /// Sets restrictions through the administration (the relay enforces
    /// them and devices get them at once) and sends the matching MDM-side
    /// configuration update (Apple: a Settings command with the new
    /// ApplicationConfiguration, per mapped device of the affected users).
    pub async fn policy(
        &self,
        p: &Principal,
        scope: Scope,
        id: &str,
        settings: Option<RestrictionSettings>,
    ) -> Result<serde_json::Value> {
        let users = self.admin.set_restrictions(p, scope, id, settings).await?;
        let mut commands = Vec::new();
        if let Some(mdm) = &self.mdm {
            let affected = self.affected_users(p, scope, id).await?;
            for user in affected {
                let restrictions = self.admin.effective_restrictions(p, &user).await?;
                for (_, _, token) in self.admin.user_devices(p, &user).await? {
                    let Some(token) = token else { continue };
                    let Some(m) = self.store.device_of_token(&token).await? else {
                        continue;
                    };
                    let Some(enrollment) = m.enrollment_id.clone().or(m.udid.clone()) else {
                        continue;
                    };
                    let command_id = new_uuid();
                    let plist = crate::payloads::settings_restrictions(
                        &command_id,
                        &self.config.bundle_id,
                        &self.admin.config().enroll_url,
                        &p.org,
                        &user,
                        &restrictions,
                    )
                    .map_err(Error::Payload)?;
                    mdm.apple_command(&enrollment, &command_id, plist)
                        .await
                        .map_err(Error::Mdm)?;
                    let now = now_ms();
                    self.store
                        .put_command(MdmCommand {
                            command_id: command_id.clone(),
                            org: p.org.clone(),
                            platform: "apple".into(),
                            kind: "settings".into(),
                            mdm_target: enrollment,
                            device: None,
                            user_id: Some(user.clone()),
                            status: "queued".into(),
                            detail: "{}".into(),
                            created_at_ms: now,
                            updated_at_ms: now,
                        })
                        .await?;
                    commands.push(command_id);
                }
            }
        }
        Ok(serde_json::json!({ "users_updated": users, "mdm_commands": commands }))
    }

    async fn affected_users(&self, p: &Principal, scope: Scope, id: &str) -> Result<Vec<String>> {
        let filter = match scope {
            Scope::User => return Ok(vec![id.to_owned()]),
            Scope::Department => kontor_admin::directory::UserFilter {
                department: Some(id.to_owned()),
                ..Default::default()
            },
            Scope::Org | Scope::Group => kontor_admin::directory::UserFilter::default(),
        };
        Ok(self
            .admin
            .users(p, &filter)
            .await?
            .into_iter()
            .map(|u| u.user_id)
            .collect())
    }

    /// A NanoMDM webhook event: a command result is matched to the command
    /// we sent (by CommandUUID, within the integration's organisation) and
    /// its state recorded; `false` when the event is not about one of ours.
    pub async fn nanomdm_event(&self, p: &Principal, body: &[u8]) -> Result<bool> {
        let event = crate::results::nanomdm_webhook(body)
            .map_err(|e| Error::Invalid(format!("webhook: {e}")))?;
        let Some(result) = event.result else {
            return Ok(false);
        };
        let Some(uuid) = &result.command_uuid else {
            return Ok(false);
        };
        let Some(command) = self.store.command(uuid).await? else {
            return Ok(false);
        };
        if command.org != p.org || command.platform != "apple" {
            return Ok(false);
        }
        let device = result
            .udid
            .clone()
            .or(result.enrollment_id.clone())
            .unwrap_or_default();
        if device != command.mdm_target {
            return Err(Error::Invalid(format!(
                "webhook: command {uuid} was sent to another device than {device}"
            )));
        }
        use crate::results::CommandStatus as St;
        let status = match result.status {
            St::Acknowledged => "acknowledged",
            St::Error | St::CommandFormatError => "error",
            St::NotNow => "not_now",
            St::Idle => return Ok(false),
        };
        let errors: Vec<serde_json::Value> = result
            .error_chain
            .iter()
            .map(|e| serde_json::json!({ "code": e.code, "domain": e.domain, "description": e.us_english_description.clone().or(e.localized_description.clone()) }))
            .collect();
        let detail = serde_json::json!({ "status": result.status.as_str(), "errors": errors, "event": event.event_id });
        self.store
            .set_command_status(uuid, status, &detail.to_string(), now_ms())
            .await?;
        let outcome = if status == "error" {
            Outcome::Failed
        } else {
            Outcome::Done
        };
        self.record(
            p,
            &format!("mdm.{}", command.kind),
            &command.mdm_target,
            outcome,
            detail,
        )
        .await?;
        Ok(true)
    }

    /// An Android Management API notification (Pub/Sub push): a COMMAND
    /// notification settles the latest command of its kind sent to that
    /// device; status reports are recorded.
    pub async fn android_event(&self, p: &Principal, body: &[u8]) -> Result<bool> {
        use crate::results::Notification as N;
        let push = crate::results::android_push(body)
            .map_err(|e| Error::Invalid(format!("notification: {e}")))?;
        match push.notification {
            N::Command(op) => {
                let device = op
                    .name
                    .split("/operations/")
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let kind = match op.command_type.as_deref() {
                    Some("CLEAR_APP_DATA") => "clear_app_data",
                    _ => return Ok(false),
                };
                let pending = self.store.commands(&p.org).await?.into_iter().find(|c| {
                    c.platform == "android"
                        && c.kind == kind
                        && c.mdm_target == device
                        && matches!(c.status.as_str(), "queued" | "sent")
                });
                let Some(command) = pending else {
                    return Ok(false);
                };
                if !op.done {
                    return Ok(false);
                }
                let (status, outcome) = match (&op.error, &op.command_error_code) {
                    (None, None) => ("acknowledged", Outcome::Done),
                    _ => ("error", Outcome::Failed),
                };
                let detail = serde_json::json!({
                    "operation": op.name, "error": op.error.as_ref().map(|e| e.message.clone()),
                    "command_error": op.command_error_code, "results": op.clear_app_results,
                });
                self.store
                    .set_command_status(&command.command_id, status, &detail.to_string(), now_ms())
                    .await?;
                self.record(p, "mdm.clear_app_data", &device, outcome, detail)
                    .await?;
                Ok(true)
            }
            N::StatusReport(device) | N::Enrollment(device) => {
                let detail = serde_json::json!({
                    "state": device.applied_state,
                    "keyed_app_states": device.application_reports.iter().flat_map(|r| r.keyed_app_states.iter()).map(|k| serde_json::json!({ "key": k.key, "severity": k.severity, "message": k.message })).collect::<Vec<_>>(),
                });
                self.record(
                    p,
                    "mdm.android_status",
                    device.name.as_str(),
                    Outcome::Done,
                    detail,
                )
                .await?;
                Ok(true)
            }
            N::Other { .. } => Ok(false),
        }
    }

    /// The commands sent to MDMs, with their reported state.
    pub async fn commands(&self, p: &Principal) -> Result<Vec<MdmCommand>> {
        // Any integration of the organisation may read them.
        self.admin.users(p, &Default::default()).await?;
        Ok(self.store.commands(&p.org).await?)
    }
}

fn unreachable_none<T>() -> Result<T> {
    Err(Error::Invalid("no identifier given".into()))
}
