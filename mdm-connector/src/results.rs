//! What MDMs report back, parsed with the `plist` crate and `serde_json`.
//!
//! - Apple: the device's command result plist (`UDID`, `CommandUUID`,
//!   `Status`, `ErrorChain`, and the answers of the
//!   ManagedApplicationConfiguration and ManagedApplicationFeedback queries),
//!   either raw ([`apple_command_result`]) or inside the JSON event NanoMDM's
//!   webhook posts ([`nanomdm_webhook`]: topic `mdm.Connect`, the plist
//!   base64 in `acknowledge_event.raw_payload`).
//! - Android: a Pub/Sub push of the Android Management API
//!   ([`android_push`]: `message.data` is the base64 JSON of the changed
//!   resource, `message.attributes.notificationType` says which), the
//!   Device resource with its apps' keyed app states ([`android_device`]),
//!   and the Operation of an issued command ([`android_operation`]).
//!
//! Input comes from outside: every function bounds its size
//! ([`MAX_INPUT_BYTES`]) and nesting ([`MAX_DEPTH`]), and answers malformed
//! input with an [`Error`] naming the problem, never a panic. Apple plists
//! must be XML, which is what devices send; binary plists are refused.

use std::collections::BTreeMap;
use std::io::Cursor;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use plist::{Dictionary, Value};
use serde::Deserialize;

use crate::android::DeviceName;

/// Largest input any parser here accepts.
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;

/// Deepest element nesting accepted in an Apple plist (the `plist` root
/// counts as one level). Command results nest a handful of levels.
pub const MAX_DEPTH: usize = 32;

/// Every way a parser of this module can refuse its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is larger than [`MAX_INPUT_BYTES`].
    #[error("input is {size_bytes} bytes, more than the limit of {max_bytes}")]
    TooLarge {
        /// Input size.
        size_bytes: usize,
        /// The limit.
        max_bytes: usize,
    },
    /// The plist nests deeper than [`MAX_DEPTH`].
    #[error("plist nests deeper than {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// The input is not an XML plist.
    #[error("malformed plist: {detail}")]
    Plist {
        /// The parser's message.
        detail: String,
    },
    /// The input is not the JSON expected.
    #[error("malformed {what} json: {detail}")]
    Json {
        /// What was being read.
        what: &'static str,
        /// The parser's message, naming the field where it can.
        detail: String,
    },
    /// A base64 field does not decode.
    #[error("field `{field}` is not valid base64: {detail}")]
    Base64 {
        /// The field.
        field: &'static str,
        /// The decoder's message.
        detail: String,
    },
    /// A required key is absent.
    #[error("key `{key}` is required but missing")]
    MissingKey {
        /// The key.
        key: &'static str,
    },
    /// A key has a value of the wrong type.
    #[error("key `{key}`: expected {expected}")]
    WrongType {
        /// The key, with its path where it is nested.
        key: String,
        /// The type wanted.
        expected: &'static str,
    },
    /// `Status` is none of Acknowledged, Error, CommandFormatError, Idle,
    /// NotNow.
    #[error("unknown command status `{status}`")]
    UnknownStatus {
        /// The status as found.
        status: String,
    },
    /// NanoMDM's event and the device's plist disagree on a field.
    #[error("webhook says {field} is `{webhook}` but the device's plist says `{device}`")]
    Mismatch {
        /// The field.
        field: &'static str,
        /// NanoMDM's value.
        webhook: String,
        /// The plist's value.
        device: String,
    },
}

/// The `Status` of an Apple command result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandStatus {
    /// The device ran the command.
    Acknowledged,
    /// The command failed; see the error chain.
    Error,
    /// The command was malformed.
    CommandFormatError,
    /// The device has no result to report and asks for the next command.
    Idle,
    /// The device cannot run the command now (e.g. locked) and will ask
    /// again later.
    NotNow,
}

impl CommandStatus {
    /// Parses Apple's spelling.
    pub fn parse(status: &str) -> Result<Self, Error> {
        Ok(match status {
            "Acknowledged" => CommandStatus::Acknowledged,
            "Error" => CommandStatus::Error,
            "CommandFormatError" => CommandStatus::CommandFormatError,
            "Idle" => CommandStatus::Idle,
            "NotNow" => CommandStatus::NotNow,
            other => {
                return Err(Error::UnknownStatus {
                    status: other.to_owned(),
                });
            }
        })
    }

    /// Apple's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandStatus::Acknowledged => "Acknowledged",
            CommandStatus::Error => "Error",
            CommandStatus::CommandFormatError => "CommandFormatError",
            CommandStatus::Idle => "Idle",
            CommandStatus::NotNow => "NotNow",
        }
    }
}

/// One entry of a result's `ErrorChain`, outermost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainedError {
    /// `ErrorCode`.
    pub code: i64,
    /// `ErrorDomain`, e.g. `MCMDMErrorDomain`.
    pub domain: String,
    /// `LocalizedDescription`, in the device's language.
    pub localized_description: Option<String>,
    /// `USEnglishDescription`.
    pub us_english_description: Option<String>,
}

/// One app's dictionary in a query's answer: its configuration
/// (ManagedApplicationConfiguration) or the feedback it wrote
/// (ManagedApplicationFeedback); `None` when the app has none.
///
/// `Debug` prints the dictionary's keys only: a configuration holds the
/// enrollment token, which must not reach a log line.
#[derive(Clone, PartialEq)]
pub struct AppDictionary {
    /// The app's bundle identifier.
    pub identifier: String,
    /// The dictionary.
    pub dictionary: Option<Dictionary>,
}

impl std::fmt::Debug for AppDictionary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppDictionary")
            .field("identifier", &self.identifier)
            .field(
                "keys",
                &self
                    .dictionary
                    .as_ref()
                    .map(|d| d.keys().collect::<Vec<_>>()),
            )
            .finish()
    }
}

/// A command-specific answer carried by a result.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// No answer this module reads.
    None,
    /// `ApplicationConfigurations` of ManagedApplicationConfiguration.
    ApplicationConfigurations(Vec<AppDictionary>),
    /// `ManagedApplicationFeedback` of ManagedApplicationFeedback.
    ManagedApplicationFeedback(Vec<AppDictionary>),
}

/// An Apple device's answer to a command.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandResult {
    /// `UDID` (device channel of a device enrollment).
    pub udid: Option<String>,
    /// `EnrollmentID` (User Enrollment).
    pub enrollment_id: Option<String>,
    /// `CommandUUID`; absent only when the status is `Idle`.
    pub command_uuid: Option<String>,
    /// `Status`.
    pub status: CommandStatus,
    /// `ErrorChain`, empty unless the command failed.
    pub error_chain: Vec<ChainedError>,
    /// The command-specific answer.
    pub answer: Answer,
}

/// A NanoMDM webhook event.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEvent {
    /// `topic`, e.g. `mdm.Connect` or `mdm.Authenticate`.
    pub topic: String,
    /// `event_id`, if NanoMDM set one.
    pub event_id: Option<String>,
    /// `created_at`, as NanoMDM wrote it (RFC 3339).
    pub created_at: Option<String>,
    /// The command result of an `mdm.Connect` event; `None` for check-in
    /// events, which this module does not read.
    pub result: Option<CommandResult>,
}

/// Parses a device's command result plist.
pub fn apple_command_result(plist: &[u8]) -> Result<CommandResult, Error> {
    check_size(plist)?;
    check_depth(plist)?;
    let value = Value::from_reader_xml(Cursor::new(plist)).map_err(|e| Error::Plist {
        detail: e.to_string(),
    })?;
    let Value::Dictionary(dict) = value else {
        return Err(Error::Plist {
            detail: "top level is not a dictionary".into(),
        });
    };
    let status = CommandStatus::parse(
        &string(&dict, "Status")?.ok_or(Error::MissingKey { key: "Status" })?,
    )?;
    let command_uuid = string(&dict, "CommandUUID")?;
    if command_uuid.is_none() && status != CommandStatus::Idle {
        return Err(Error::MissingKey { key: "CommandUUID" });
    }
    let error_chain = match dict.get("ErrorChain") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| chained_error(item, i))
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(Error::WrongType {
                key: "ErrorChain".into(),
                expected: "an array",
            });
        }
    };
    let answer = if dict.contains_key("ApplicationConfigurations") {
        Answer::ApplicationConfigurations(app_dictionaries(
            &dict,
            "ApplicationConfigurations",
            "Configuration",
        )?)
    } else if dict.contains_key("ManagedApplicationFeedback") {
        Answer::ManagedApplicationFeedback(app_dictionaries(
            &dict,
            "ManagedApplicationFeedback",
            "Feedback",
        )?)
    } else {
        Answer::None
    };
    Ok(CommandResult {
        udid: string(&dict, "UDID")?,
        enrollment_id: string(&dict, "EnrollmentID")?,
        command_uuid,
        status,
        error_chain,
        answer,
    })
}

/// Parses the JSON event NanoMDM's webhook posts. For `mdm.Connect` the
/// device's plist is decoded and parsed, and NanoMDM's copies of its status,
/// command UUID and UDID must agree with it.
pub fn nanomdm_webhook(json: &[u8]) -> Result<WebhookEvent, Error> {
    #[derive(Deserialize)]
    struct RawEvent {
        topic: String,
        event_id: Option<String>,
        created_at: Option<String>,
        acknowledge_event: Option<RawAcknowledge>,
    }
    #[derive(Deserialize)]
    struct RawAcknowledge {
        udid: Option<String>,
        enrollment_id: Option<String>,
        status: Option<String>,
        command_uuid: Option<String>,
        raw_payload: Option<String>,
    }

    check_size(json)?;
    let event: RawEvent = serde_json::from_slice(json).map_err(|e| Error::Json {
        what: "nanomdm webhook",
        detail: e.to_string(),
    })?;
    let result = if event.topic == "mdm.Connect" {
        let ack = event.acknowledge_event.ok_or(Error::MissingKey {
            key: "acknowledge_event",
        })?;
        let raw = ack.raw_payload.ok_or(Error::MissingKey {
            key: "acknowledge_event.raw_payload",
        })?;
        let plist = BASE64.decode(raw.as_bytes()).map_err(|e| Error::Base64 {
            field: "acknowledge_event.raw_payload",
            detail: e.to_string(),
        })?;
        let result = apple_command_result(&plist)?;
        agree(
            "status",
            ack.status.as_deref(),
            Some(result.status.as_str()),
        )?;
        agree(
            "command_uuid",
            ack.command_uuid.as_deref(),
            result.command_uuid.as_deref(),
        )?;
        agree("udid", ack.udid.as_deref(), result.udid.as_deref())?;
        agree(
            "enrollment_id",
            ack.enrollment_id.as_deref(),
            result.enrollment_id.as_deref(),
        )?;
        Some(result)
    } else {
        None
    };
    Ok(WebhookEvent {
        topic: event.topic,
        event_id: event.event_id.filter(|id| !id.is_empty()),
        created_at: event.created_at,
        result,
    })
}

/// `KeyedAppState.severity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
pub enum Severity {
    /// `SEVERITY_UNSPECIFIED`, also what an absent severity means.
    #[default]
    #[serde(rename = "SEVERITY_UNSPECIFIED")]
    Unspecified,
    /// `INFO`.
    #[serde(rename = "INFO")]
    Info,
    /// `ERROR`.
    #[serde(rename = "ERROR")]
    Error,
}

/// A state an app reported through the keyed app states API.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyedAppState {
    /// The app's key for the state.
    pub key: String,
    /// How serious it is.
    #[serde(default)]
    pub severity: Severity,
    /// A human-readable message.
    pub message: Option<String>,
    /// Machine-readable data.
    pub data: Option<String>,
    /// When the state was first reported (RFC 3339).
    pub create_time: Option<String>,
    /// When it was last updated (RFC 3339).
    pub last_update_time: Option<String>,
}

/// One app on an Android device, as the device reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationReport {
    /// The package name.
    pub package_name: String,
    /// The version code.
    pub version_code: Option<i64>,
    /// The version name.
    pub version_name: Option<String>,
    /// `INSTALLED` or `REMOVED`.
    pub state: Option<String>,
    /// The keyed app states the app reported.
    #[serde(default)]
    pub keyed_app_states: Vec<KeyedAppState>,
}

/// The fields Kontor reads of an Android Management API Device resource.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// `enterprises/{enterpriseId}/devices/{deviceId}`.
    #[serde(deserialize_with = "device_name")]
    pub name: DeviceName,
    /// The state the server wants, e.g. `ACTIVE`, `DISABLED`.
    pub state: Option<String>,
    /// The state the device is in.
    pub applied_state: Option<String>,
    /// The policy the device should have.
    pub policy_name: Option<String>,
    /// The policy the device has.
    pub applied_policy_name: Option<String>,
    /// When the device last reported (RFC 3339).
    pub last_status_report_time: Option<String>,
    /// The enrollment token's `additionalData`.
    pub enrollment_token_data: Option<String>,
    /// The apps on the device, if application reports are enabled.
    #[serde(default)]
    pub application_reports: Vec<ApplicationReport>,
}

/// The `error` of a finished Operation (a google.rpc.Status).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OperationError {
    /// The gRPC status code.
    #[serde(default)]
    pub code: i32,
    /// The message.
    #[serde(default)]
    pub message: String,
}

/// The Operation `issueCommand` returns and COMMAND notifications carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// `enterprises/{e}/devices/{d}/operations/{o}`.
    pub name: String,
    /// Whether the command has finished.
    pub done: bool,
    /// Set when it failed.
    pub error: Option<OperationError>,
    /// `metadata.type`, the command's type, e.g. `CLEAR_APP_DATA`.
    pub command_type: Option<String>,
    /// `metadata.errorCode`, e.g. `UNSUPPORTED`.
    pub command_error_code: Option<String>,
    /// `metadata.clearAppsDataStatus.results`: package name to
    /// `clearingResult` (e.g. `SUCCESS`, `APP_NOT_FOUND`).
    pub clear_app_results: BTreeMap<String, String>,
}

/// What a Pub/Sub push of the Android Management API carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// `ENROLLMENT`: a device enrolled.
    Enrollment(Device),
    /// `STATUS_REPORT`: a device reported its status.
    StatusReport(Device),
    /// `COMMAND`: an issued command changed state.
    Command(Operation),
    /// Any other type (`USAGE_LOGS`, `ENTERPRISE_UPGRADE`, the test message
    /// sent when the topic is set up); its data is not read.
    Other {
        /// `notificationType` as found.
        notification_type: String,
    },
}

/// A Pub/Sub push message of the Android Management API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushMessage {
    /// `message.messageId`.
    pub message_id: Option<String>,
    /// `message.publishTime` (RFC 3339).
    pub publish_time: Option<String>,
    /// `subscription`.
    pub subscription: Option<String>,
    /// The decoded notification.
    pub notification: Notification,
}

/// Parses the JSON body Pub/Sub pushes to Kontor's endpoint.
pub fn android_push(json: &[u8]) -> Result<PushMessage, Error> {
    #[derive(Deserialize)]
    struct RawPush {
        message: RawMessage,
        subscription: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct RawMessage {
        #[serde(default)]
        attributes: BTreeMap<String, String>,
        data: Option<String>,
        message_id: Option<String>,
        publish_time: Option<String>,
    }

    check_size(json)?;
    let push: RawPush = serde_json::from_slice(json).map_err(|e| Error::Json {
        what: "pub/sub push",
        detail: e.to_string(),
    })?;
    let message = push.message;
    let kind = message
        .attributes
        .get("notificationType")
        .ok_or(Error::MissingKey {
            key: "message.attributes.notificationType",
        })?
        .clone();
    let data = || -> Result<Vec<u8>, Error> {
        let text = message.data.as_deref().ok_or(Error::MissingKey {
            key: "message.data",
        })?;
        BASE64.decode(text.as_bytes()).map_err(|e| Error::Base64 {
            field: "message.data",
            detail: e.to_string(),
        })
    };
    let notification = match kind.as_str() {
        "ENROLLMENT" => Notification::Enrollment(android_device(&data()?)?),
        "STATUS_REPORT" => Notification::StatusReport(android_device(&data()?)?),
        "COMMAND" => Notification::Command(android_operation(&data()?)?),
        _ => Notification::Other {
            notification_type: kind,
        },
    };
    Ok(PushMessage {
        message_id: message.message_id,
        publish_time: message.publish_time,
        subscription: push.subscription,
        notification,
    })
}

/// Parses a Device resource.
pub fn android_device(json: &[u8]) -> Result<Device, Error> {
    check_size(json)?;
    serde_json::from_slice(json).map_err(|e| Error::Json {
        what: "device",
        detail: e.to_string(),
    })
}

/// Parses an Operation resource.
pub fn android_operation(json: &[u8]) -> Result<Operation, Error> {
    #[derive(Deserialize)]
    struct RawOperation {
        name: String,
        #[serde(default)]
        done: bool,
        error: Option<OperationError>,
        metadata: Option<RawCommand>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct RawCommand {
        #[serde(rename = "type")]
        kind: Option<String>,
        error_code: Option<String>,
        clear_apps_data_status: Option<RawClearStatus>,
    }
    #[derive(Deserialize)]
    struct RawClearStatus {
        #[serde(default)]
        results: BTreeMap<String, RawPerApp>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct RawPerApp {
        clearing_result: Option<String>,
    }

    check_size(json)?;
    let raw: RawOperation = serde_json::from_slice(json).map_err(|e| Error::Json {
        what: "operation",
        detail: e.to_string(),
    })?;
    let metadata = raw.metadata;
    let (command_type, command_error_code, clear) = match metadata {
        Some(m) => (m.kind, m.error_code, m.clear_apps_data_status),
        None => (None, None, None),
    };
    Ok(Operation {
        name: raw.name,
        done: raw.done,
        error: raw.error,
        command_type,
        command_error_code,
        clear_app_results: clear
            .map(|c| {
                c.results
                    .into_iter()
                    .map(|(package, r)| {
                        let result = r
                            .clearing_result
                            .unwrap_or_else(|| "CLEARING_RESULT_UNSPECIFIED".into());
                        (package, result)
                    })
                    .collect()
            })
            .unwrap_or_default(),
    })
}

fn device_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DeviceName, D::Error> {
    let text = String::deserialize(d)?;
    DeviceName::parse(&text).map_err(serde::de::Error::custom)
}

fn check_size(input: &[u8]) -> Result<(), Error> {
    if input.len() > MAX_INPUT_BYTES {
        Err(Error::TooLarge {
            size_bytes: input.len(),
            max_bytes: MAX_INPUT_BYTES,
        })
    } else {
        Ok(())
    }
}

/// Refuses a plist that nests deeper than [`MAX_DEPTH`] elements before the
/// `plist` crate builds (and later drops, recursively) its value tree.
fn check_depth(xml: &[u8]) -> Result<(), Error> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut depth = 0usize;
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(_)) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(Error::TooDeep { max: MAX_DEPTH });
                }
            }
            Ok(Event::End(_)) => depth = depth.saturating_sub(1),
            Ok(Event::Eof) => return Ok(()),
            Ok(_) => {}
            Err(e) => {
                return Err(Error::Plist {
                    detail: e.to_string(),
                });
            }
        }
        buf.clear();
    }
}

/// The string at `key`, `None` if absent, an error if not a string.
fn string(dict: &Dictionary, key: &str) -> Result<Option<String>, Error> {
    match dict.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Error::WrongType {
            key: key.to_owned(),
            expected: "a string",
        }),
    }
}

fn chained_error(item: &Value, index: usize) -> Result<ChainedError, Error> {
    let path = |key: &str| format!("ErrorChain[{index}].{key}");
    let dict = item.as_dictionary().ok_or_else(|| Error::WrongType {
        key: format!("ErrorChain[{index}]"),
        expected: "a dictionary",
    })?;
    let code = match dict.get("ErrorCode") {
        Some(Value::Integer(i)) => i.as_signed().ok_or_else(|| Error::WrongType {
            key: path("ErrorCode"),
            expected: "an integer that fits 64 bits",
        })?,
        Some(_) => {
            return Err(Error::WrongType {
                key: path("ErrorCode"),
                expected: "an integer",
            });
        }
        None => return Err(Error::MissingKey { key: "ErrorCode" }),
    };
    let text = |key: &str| -> Result<Option<String>, Error> {
        match dict.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Error::WrongType {
                key: path(key),
                expected: "a string",
            }),
        }
    };
    Ok(ChainedError {
        code,
        domain: text("ErrorDomain")?.ok_or(Error::MissingKey { key: "ErrorDomain" })?,
        localized_description: text("LocalizedDescription")?,
        us_english_description: text("USEnglishDescription")?,
    })
}

/// The `[{Identifier, <inner>}]` array at `key`.
fn app_dictionaries(
    dict: &Dictionary,
    key: &'static str,
    inner: &'static str,
) -> Result<Vec<AppDictionary>, Error> {
    let Some(Value::Array(items)) = dict.get(key) else {
        return Err(Error::WrongType {
            key: key.to_owned(),
            expected: "an array",
        });
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let here = |k: &str| format!("{key}[{i}].{k}");
            let item = item.as_dictionary().ok_or_else(|| Error::WrongType {
                key: format!("{key}[{i}]"),
                expected: "a dictionary",
            })?;
            let identifier = match item.get("Identifier") {
                Some(Value::String(s)) => s.clone(),
                Some(_) => {
                    return Err(Error::WrongType {
                        key: here("Identifier"),
                        expected: "a string",
                    });
                }
                None => return Err(Error::MissingKey { key: "Identifier" }),
            };
            let dictionary = match item.get(inner) {
                None => None,
                Some(Value::Dictionary(d)) => Some(d.clone()),
                Some(_) => {
                    return Err(Error::WrongType {
                        key: here(inner),
                        expected: "a dictionary",
                    });
                }
            };
            Ok(AppDictionary {
                identifier,
                dictionary,
            })
        })
        .collect()
}

/// NanoMDM's copy of a field must equal the device's where both are set.
fn agree(field: &'static str, webhook: Option<&str>, device: Option<&str>) -> Result<(), Error> {
    match (webhook, device) {
        (Some(w), Some(d)) if !w.is_empty() && w != d => Err(Error::Mismatch {
            field,
            webhook: w.to_owned(),
            device: d.to_owned(),
        }),
        _ => Ok(()),
    }
}
