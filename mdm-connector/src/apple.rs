//! Apple MDM: complete commands as NanoMDM enqueues them, and the
//! declarative-management declarations that install and configure the app.
//!
//! A command is an XML plist whose top level holds `CommandUUID` and the
//! `Command` dictionary (with its `RequestType`), the raw form NanoMDM's
//! enqueue API takes. The caller chooses the [`CommandUuid`] so it can match
//! the device's answer (see [`crate::results`]) to what it sent.
//!
//! The managed app configuration inside the commands is managed-config's
//! [`kontor_managed_config::apple::configuration`]: this module only wraps
//! it, so the configuration an app gets by command, by declaration and by
//! any other route is the same dictionary.
//!
//! Declarations ([`app_managed_declaration`], [`app_config_asset`]) are JSON
//! documents for `com.apple.configuration.app.managed` and the
//! `com.apple.asset.data` asset that points at the configuration plist. Their
//! `ServerToken` is the SHA-256 of the payload, so it changes exactly when
//! the declaration does.
//!
//! Everything here is pure: values in, strings out.

use kontor_managed_config::{BundleId, Policy};
use plist::{Dictionary, Value};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Longest `CommandUUID` and declaration `Identifier` accepted; Apple asks
/// for declaration identifiers and server tokens of at most 64 octets.
pub const MAX_ID_CHARS: usize = 64;

/// Most apps one query command may name.
pub const MAX_QUERY_APPS: usize = 100;

/// Longest `DataURL` accepted.
pub const MAX_URL_CHARS: usize = 2048;

/// The media type of the configuration document a data asset points at.
pub const CONFIG_CONTENT_TYPE: &str = "application/x-plist";

/// Every way a builder of this module can refuse its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A command UUID is empty, too long or has a character outside
    /// `[A-Za-z0-9-]`.
    #[error("invalid command uuid `{uuid}`: use 1 to 64 letters, digits and hyphens")]
    InvalidCommandUuid {
        /// The text given.
        uuid: String,
    },
    /// A declaration identifier is empty, too long or has a character
    /// outside `[A-Za-z0-9._-]`.
    #[error(
        "invalid declaration identifier `{id}`: use 1 to 64 letters, digits, dots, hyphens and underscores"
    )]
    InvalidDeclarationId {
        /// The text given.
        id: String,
    },
    /// An App Store id is zero.
    #[error("invalid app store id 0: app store ids are positive")]
    InvalidStoreId,
    /// A `DataURL` is not an `https://` URL without spaces or control
    /// characters, or is too long.
    #[error("invalid data url `{url}`: use an https:// url of at most 2048 characters")]
    InvalidDataUrl {
        /// The text given.
        url: String,
    },
    /// A query command names no app.
    #[error("{request_type} needs at least one app identifier")]
    NoApps {
        /// The command.
        request_type: &'static str,
    },
    /// A query command names more than [`MAX_QUERY_APPS`] apps.
    #[error("{request_type} names {count} apps, more than the limit of {max}")]
    TooManyApps {
        /// The command.
        request_type: &'static str,
        /// Apps named.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The policy does not encode (managed-config refused it).
    #[error("policy: {0}")]
    Policy(#[from] kontor_managed_config::Error),
    /// The plist or JSON writer failed.
    #[error("cannot write {format}: {detail}")]
    Encode {
        /// `plist` or `json`.
        format: &'static str,
        /// The writer's message.
        detail: String,
    },
}

/// The `CommandUUID` of a command, chosen by the caller: 1 to 64 characters
/// of `[A-Za-z0-9-]` (a UUID fits).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommandUuid(String);

impl CommandUuid {
    /// Checks `uuid`.
    pub fn parse(uuid: &str) -> Result<Self, Error> {
        if is_id(uuid, |c| c.is_ascii_alphanumeric() || c == '-') {
            Ok(CommandUuid(uuid.to_owned()))
        } else {
            Err(Error::InvalidCommandUuid {
                uuid: uuid.to_owned(),
            })
        }
    }

    /// The UUID.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CommandUuid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `Identifier` of a declaration: 1 to 64 characters of
/// `[A-Za-z0-9._-]` (a UUID or a reverse-DNS name fits).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeclarationId(String);

impl DeclarationId {
    /// Checks `id`.
    pub fn parse(id: &str) -> Result<Self, Error> {
        if is_id(id, |c| {
            c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')
        }) {
            Ok(DeclarationId(id.to_owned()))
        } else {
            Err(Error::InvalidDeclarationId { id: id.to_owned() })
        }
    }

    /// The identifier.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where the device fetches a data asset: an `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DataUrl(String);

impl DataUrl {
    /// Checks `url`: `https://`, a host, no whitespace or control
    /// characters, at most [`MAX_URL_CHARS`].
    pub fn parse(url: &str) -> Result<Self, Error> {
        let ok = url.len() <= MAX_URL_CHARS
            && url
                .strip_prefix("https://")
                .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
            && !url.chars().any(|c| c.is_whitespace() || c.is_control());
        if ok {
            Ok(DataUrl(url.to_owned()))
        } else {
            Err(Error::InvalidDataUrl {
                url: url.to_owned(),
            })
        }
    }

    /// The URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An App Store app, named the way InstallApplication and the app.managed
/// declaration accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreApp {
    /// The App Store (iTunes) id, e.g. `361309726`.
    StoreId(u64),
    /// The bundle identifier.
    BundleId(BundleId),
}

impl StoreApp {
    /// An app by its App Store id, which must be positive.
    pub fn store_id(id: u64) -> Result<Self, Error> {
        if id == 0 {
            Err(Error::InvalidStoreId)
        } else {
            Ok(StoreApp::StoreId(id))
        }
    }
}

/// InstallApplication's `ManagementFlags`, a bitwise OR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ManagementFlags {
    /// Remove the app when the MDM profile is removed (bit 1).
    pub remove_with_mdm_profile: bool,
    /// Keep the app's data out of backups (bit 4).
    pub prevent_backup: bool,
}

impl ManagementFlags {
    /// The integer value; `None` when no flag is set, because Apple's schema
    /// allows only 1, 4 and 5 and the key is then left out.
    pub fn value(self) -> Option<i64> {
        let v = i64::from(self.remove_with_mdm_profile) | (i64::from(self.prevent_backup) << 2);
        (v != 0).then_some(v)
    }
}

/// How an App Store app is installed by InstallApplication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallApplication {
    /// The app.
    pub app: StoreApp,
    /// `ManagementFlags`.
    pub management_flags: ManagementFlags,
    /// Install with a Volume Purchase Program licence (`Options.PurchaseMethod`
    /// 1) rather than as a free app (0, left out).
    pub vpp_license: bool,
    /// Take over management if the user installed the app already
    /// (`ChangeManagementState` = `Managed`).
    pub take_over_if_installed: bool,
}

impl InstallApplication {
    /// A free App Store app, removed together with the MDM profile, no
    /// take-over: the usual way to ship Kontor.
    pub fn new(app: StoreApp) -> Self {
        InstallApplication {
            app,
            management_flags: ManagementFlags {
                remove_with_mdm_profile: true,
                prevent_backup: false,
            },
            vpp_license: false,
            take_over_if_installed: false,
        }
    }
}

/// An InstallApplication command for `install`, its `Configuration` the
/// managed app configuration of `policy`.
pub fn install_application(
    uuid: &CommandUuid,
    install: &InstallApplication,
    policy: &Policy,
) -> Result<String, Error> {
    let mut command = Dictionary::new();
    match &install.app {
        StoreApp::StoreId(id) => {
            command.insert("iTunesStoreID".into(), Value::Integer((*id).into()))
        }
        StoreApp::BundleId(id) => command.insert("Identifier".into(), id.as_str().into()),
    };
    if install.vpp_license {
        let mut options = Dictionary::new();
        options.insert("PurchaseMethod".into(), Value::Integer(1.into()));
        command.insert("Options".into(), Value::Dictionary(options));
    }
    if let Some(flags) = install.management_flags.value() {
        command.insert("ManagementFlags".into(), Value::Integer(flags.into()));
    }
    if install.take_over_if_installed {
        command.insert("ChangeManagementState".into(), "Managed".into());
    }
    command.insert(
        "Configuration".into(),
        Value::Dictionary(kontor_managed_config::apple::configuration(policy)?),
    );
    envelope(uuid, "InstallApplication", command)
}

/// A Settings command with one `ApplicationConfiguration` item for `app`:
/// `policy`'s configuration, or with `None` no `Configuration`, which removes
/// the app's configuration.
pub fn settings_app_configuration(
    uuid: &CommandUuid,
    app: &BundleId,
    policy: Option<&Policy>,
) -> Result<String, Error> {
    let mut item = Dictionary::new();
    item.insert("Item".into(), "ApplicationConfiguration".into());
    item.insert("Identifier".into(), app.as_str().into());
    if let Some(policy) = policy {
        item.insert(
            "Configuration".into(),
            Value::Dictionary(kontor_managed_config::apple::configuration(policy)?),
        );
    }
    let mut command = Dictionary::new();
    command.insert(
        "Settings".into(),
        Value::Array(vec![Value::Dictionary(item)]),
    );
    envelope(uuid, "Settings", command)
}

/// A ManagedApplicationConfiguration query: the device answers with the
/// configuration each named app currently has.
pub fn managed_application_configuration(
    uuid: &CommandUuid,
    apps: &[BundleId],
) -> Result<String, Error> {
    const REQUEST: &str = "ManagedApplicationConfiguration";
    let mut command = Dictionary::new();
    command.insert("Identifiers".into(), identifiers(REQUEST, apps)?);
    envelope(uuid, REQUEST, command)
}

/// A ManagedApplicationFeedback query: the device answers with the feedback
/// dictionary each named app wrote, and deletes it afterwards if
/// `delete_feedback`.
pub fn managed_application_feedback(
    uuid: &CommandUuid,
    apps: &[BundleId],
    delete_feedback: bool,
) -> Result<String, Error> {
    const REQUEST: &str = "ManagedApplicationFeedback";
    let mut command = Dictionary::new();
    command.insert("Identifiers".into(), identifiers(REQUEST, apps)?);
    command.insert("DeleteFeedback".into(), Value::Boolean(delete_feedback));
    envelope(uuid, REQUEST, command)
}

/// A RemoveApplication command for the managed app `app`.
pub fn remove_application(uuid: &CommandUuid, app: &BundleId) -> Result<String, Error> {
    let mut command = Dictionary::new();
    command.insert("Identifier".into(), app.as_str().into());
    envelope(uuid, "RemoveApplication", command)
}

/// `InstallBehavior.Install` of an app.managed declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Install {
    /// The user may install and remove the app.
    Optional,
    /// The device installs the app and the user cannot remove it.
    Required,
}

/// `InstallBehavior.License.Assignment`: who holds the App Store licence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LicenseAssignment {
    /// The device.
    Device,
    /// The user.
    User,
}

/// How the app receives the configuration asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigDelivery {
    /// `LegacyAppConfigAssetReference`: as with the MDM commands, in the
    /// `com.apple.configuration.managed` user defaults, which is where the
    /// Kontor app reads it today.
    Legacy,
    /// `AppConfig.DataAssetReference`: through Apple's `ManagedApp`
    /// framework (iOS 18.4 and later).
    ManagedAppFramework,
}

/// A `com.apple.configuration.app.managed` declaration for an App Store app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedApp {
    /// The app (`AppStoreID` or `BundleID`).
    pub app: StoreApp,
    /// Whether the user may remove it.
    pub install: Install,
    /// The licence; Apple requires it for App Store apps.
    pub license: LicenseAssignment,
    /// How the configuration reaches the app.
    pub config_delivery: ConfigDelivery,
}

/// The app.managed declaration `id` for `app`, its configuration the data
/// asset `config_asset` (see [`app_config_asset`]). Pretty JSON with a final
/// newline.
pub fn app_managed_declaration(
    id: &DeclarationId,
    app: &ManagedApp,
    config_asset: &DeclarationId,
) -> Result<String, Error> {
    let mut payload = serde_json::Map::new();
    match &app.app {
        StoreApp::StoreId(n) => payload.insert("AppStoreID".into(), json!(n.to_string())),
        StoreApp::BundleId(b) => payload.insert("BundleID".into(), json!(b.as_str())),
    };
    let install = match app.install {
        Install::Optional => "Optional",
        Install::Required => "Required",
    };
    let assignment = match app.license {
        LicenseAssignment::Device => "Device",
        LicenseAssignment::User => "User",
    };
    payload.insert(
        "InstallBehavior".into(),
        json!({"Install": install, "License": {"Assignment": assignment}}),
    );
    match app.config_delivery {
        ConfigDelivery::Legacy => payload.insert(
            "LegacyAppConfigAssetReference".into(),
            json!(config_asset.as_str()),
        ),
        ConfigDelivery::ManagedAppFramework => payload.insert(
            "AppConfig".into(),
            json!({"DataAssetReference": config_asset.as_str()}),
        ),
    };
    declaration(
        "com.apple.configuration.app.managed",
        id,
        serde_json::Value::Object(payload),
    )
}

/// A configuration document and the `com.apple.asset.data` declaration that
/// points at it. `Debug` leaves the document out: it holds the enrollment
/// token.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigAsset {
    /// The declaration, pretty JSON with a final newline.
    pub declaration: String,
    /// The XML plist the caller serves at the asset's `DataURL`, byte for
    /// byte: `Size` and `Hash-SHA-256` in the declaration are of these bytes.
    pub document: String,
}

impl std::fmt::Debug for ConfigAsset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigAsset")
            .field("declaration", &self.declaration)
            .field("document", &format_args!("[{} bytes]", self.document.len()))
            .finish()
    }
}

/// The data asset `id` for `policy`'s configuration, served at `data_url`;
/// the device fetches it with MDM authentication.
pub fn app_config_asset(
    id: &DeclarationId,
    data_url: &DataUrl,
    policy: &Policy,
) -> Result<ConfigAsset, Error> {
    let document = kontor_managed_config::apple::configuration_plist(policy)?;
    let payload = json!({
        "Reference": {
            "DataURL": data_url.as_str(),
            "ContentType": CONFIG_CONTENT_TYPE,
            "Size": document.len(),
            "Hash-SHA-256": hex::encode(Sha256::digest(document.as_bytes())),
        },
        "Authentication": {"Type": "MDM"},
    });
    Ok(ConfigAsset {
        declaration: declaration("com.apple.asset.data", id, payload)?,
        document,
    })
}

/// True if `id` is 1 to [`MAX_ID_CHARS`] characters, each allowed by `ok`.
fn is_id(id: &str, ok: impl Fn(char) -> bool) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_CHARS && id.chars().all(ok)
}

fn identifiers(request_type: &'static str, apps: &[BundleId]) -> Result<Value, Error> {
    if apps.is_empty() {
        return Err(Error::NoApps { request_type });
    }
    if apps.len() > MAX_QUERY_APPS {
        return Err(Error::TooManyApps {
            request_type,
            count: apps.len(),
            max: MAX_QUERY_APPS,
        });
    }
    Ok(Value::Array(
        apps.iter()
            .map(|a| Value::String(a.as_str().into()))
            .collect(),
    ))
}

/// `{Command: {RequestType, ...body}, CommandUUID}` as an XML plist.
fn envelope(uuid: &CommandUuid, request_type: &str, body: Dictionary) -> Result<String, Error> {
    let mut command = Dictionary::new();
    command.insert("RequestType".into(), request_type.into());
    for (key, value) in body {
        command.insert(key, value);
    }
    let mut top = Dictionary::new();
    top.insert("Command".into(), Value::Dictionary(command));
    top.insert("CommandUUID".into(), uuid.as_str().into());
    let mut out = Vec::new();
    Value::Dictionary(top)
        .to_writer_xml(&mut out)
        .map_err(|e| Error::Encode {
            format: "plist",
            detail: e.to_string(),
        })?;
    out.push(b'\n');
    String::from_utf8(out).map_err(|e| Error::Encode {
        format: "plist",
        detail: e.to_string(),
    })
}

/// A declaration of `declaration_type`, its `ServerToken` the SHA-256 (hex,
/// 64 characters) of the compact JSON of `payload`.
fn declaration(
    declaration_type: &str,
    id: &DeclarationId,
    payload: serde_json::Value,
) -> Result<String, Error> {
    let encode = |e: serde_json::Error| Error::Encode {
        format: "json",
        detail: e.to_string(),
    };
    let compact = serde_json::to_vec(&payload).map_err(encode)?;
    let token = hex::encode(Sha256::digest(&compact));
    let value = json!({
        "Type": declaration_type,
        "Identifier": id.as_str(),
        "ServerToken": token,
        "Payload": payload,
    });
    serde_json::to_string_pretty(&value)
        .map(|s| s + "\n")
        .map_err(encode)
}
