//! The policy model: every managed key Kontor understands ([`KEYS`]) and the
//! typed [`Policy`] those keys describe.
//!
//! [`KEYS`] is the one source every encoder is generated from: key name, type,
//! default, constraint, English and German title and description, and the EMM
//! variable that fills the key where one exists. [`Policy`] is what the device
//! acts on; [`Policy::settings`] turns it into concrete key-value pairs and
//! [`crate::decode`] turns key-value pairs back into it.

use std::collections::BTreeMap;
use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::Error;

/// Version of this key set. Sent as the hidden `config_version` key and as the
/// AppConfig specfile's `version`; bump it when a key changes meaning.
pub const CONFIG_VERSION: i64 = 1;

/// A text in the two languages Kontor ships: English and German.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Text {
    /// English.
    pub en: &'static str,
    /// German.
    pub de: &'static str,
}

/// A language of [`Text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English, the default locale of every generated schema.
    En,
    /// German.
    De,
}

impl Lang {
    /// Both languages, default first.
    pub const ALL: [Lang; 2] = [Lang::En, Lang::De];

    /// The language code (`en`, `de`) used by AppConfig and Android resources.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::De => "de",
        }
    }
}

impl Text {
    /// The text in `lang`.
    pub fn get(&self, lang: Lang) -> &'static str {
        match lang {
            Lang::En => self.en,
            Lang::De => self.de,
        }
    }
}

/// The section of the admin console a key is shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    /// Where and how the device enrolls.
    Enrollment,
    /// Who uses the device.
    User,
    /// What the user may share.
    Restrictions,
    /// The PIN that protects the local store.
    Pin,
    /// Device behaviour: offline use, wipe, logging.
    Device,
}

impl Group {
    /// All groups, in console order.
    pub const ALL: [Group; 5] = [
        Group::Enrollment,
        Group::User,
        Group::Restrictions,
        Group::Pin,
        Group::Device,
    ];

    /// The group's title.
    pub fn title(self) -> Text {
        match self {
            Group::Enrollment => Text {
                en: "Enrollment",
                de: "Registrierung",
            },
            Group::User => Text {
                en: "User",
                de: "Benutzer",
            },
            Group::Restrictions => Text {
                en: "Restrictions",
                de: "Einschränkungen",
            },
            Group::Pin => Text {
                en: "PIN",
                de: "PIN",
            },
            Group::Device => Text {
                en: "Device",
                de: "Gerät",
            },
        }
    }
}

/// A user attribute the EMM substitutes into a key when it delivers the
/// configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmmVariable {
    /// The user's e-mail address.
    EmailAddress,
    /// The user's Microsoft userPrincipalName.
    UserPrincipalName,
}

impl EmmVariable {
    /// The AppConfig `userVariable` name.
    pub fn appconfig_name(self) -> &'static str {
        match self {
            EmmVariable::EmailAddress => "emailAddress",
            EmmVariable::UserPrincipalName => "upn",
        }
    }

    /// How the common EMMs spell the variable in a free-text configuration
    /// value, as `(emm, placeholder)`. Shown in descriptions for admins.
    pub fn placeholders(self) -> &'static [(&'static str, &'static str)] {
        match self {
            EmmVariable::EmailAddress => &[
                ("Microsoft Intune", "{{mail}}"),
                ("Workspace ONE", "{EmailAddress}"),
                ("Ivanti", "$EMAIL$"),
                ("Jamf Pro", "$EMAIL"),
            ],
            EmmVariable::UserPrincipalName => &[
                ("Microsoft Intune", "{{userprincipalname}}"),
                ("Workspace ONE", "{UserPrincipalName}"),
                ("Ivanti", "$USER_UPN$"),
            ],
        }
    }
}

/// What a string key must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringRule {
    /// An `https://` URL with a host.
    HttpsUrl,
    /// Letters, digits, `.`, `_` and `-`.
    Identifier,
    /// An opaque token of URL-safe characters (`A-Z a-z 0-9 . _ ~ + / = -`).
    Token,
    /// Any text without control characters.
    Text,
}

/// One option of a choice or multi-select key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    /// The value sent to the app; never translated.
    pub value: &'static str,
    /// What the admin console shows.
    pub label: Text,
}

/// The type of a key, with its default and constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `true` or `false`.
    Bool {
        /// Value when the key is absent.
        default: bool,
    },
    /// A whole number in `min..=max` (inside the 32-bit range Android allows).
    Integer {
        /// Value when the key is absent.
        default: i64,
        /// Smallest allowed value.
        min: i64,
        /// Largest allowed value.
        max: i64,
    },
    /// Text of `min_chars..=max_chars` characters following `rule`.
    String {
        /// Shortest allowed length in characters.
        min_chars: usize,
        /// Longest allowed length in characters.
        max_chars: usize,
        /// What the text must look like.
        rule: StringRule,
    },
    /// Exactly one of `options`.
    Choice {
        /// Value when the key is absent.
        default: &'static str,
        /// The allowed values.
        options: &'static [Choice],
    },
    /// Any subset of `options`, each at most once.
    MultiSelect {
        /// Value when the key is absent.
        default: &'static [&'static str],
        /// The allowed values.
        options: &'static [Choice],
    },
    /// A string the admin does not edit; it always carries `value`.
    Hidden {
        /// The only accepted value.
        value: &'static str,
    },
}

impl Kind {
    /// The name of the type in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::Bool { .. } => "a boolean",
            Kind::Integer { .. } => "an integer",
            Kind::String { .. } | Kind::Choice { .. } | Kind::Hidden { .. } => "a string",
            Kind::MultiSelect { .. } => "an array of strings",
        }
    }
}

/// Everything Kontor knows about one managed key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    /// The key as the EMM sends it. Unique; flat (no nesting), so that every
    /// EMM's console can edit it.
    pub key: &'static str,
    /// Type, default and constraint.
    pub kind: Kind,
    /// Console section.
    pub group: Group,
    /// Whether the device cannot run without it. Required keys have no default.
    pub required: bool,
    /// Short label.
    pub title: Text,
    /// One or two sentences for the admin.
    pub description: Text,
    /// The EMM variable that fills the key, where one exists.
    pub emm_variable: Option<EmmVariable>,
}

/// Key names, so code never spells them twice.
pub mod keys {
    /// Base URL of the organisation's Kontor server.
    pub const SERVER_URL: &str = "server_url";
    /// Organisation id.
    pub const ORGANISATION_ID: &str = "organisation_id";
    /// Enrollment token.
    pub const ENROLLMENT_TOKEN: &str = "enrollment_token";
    /// The user's identity (e-mail).
    pub const USER_IDENTITY: &str = "user_identity";
    /// The user's department.
    pub const DEPARTMENT: &str = "department";
    /// Copy and paste out of Kontor.
    pub const ALLOW_COPY_PASTE: &str = "allow_copy_paste";
    /// Attachment kinds the user may send.
    pub const ALLOWED_ATTACHMENTS: &str = "allowed_attachments";
    /// Forwarding messages.
    pub const ALLOW_FORWARDING: &str = "allow_forwarding";
    /// Screenshots of the app.
    pub const ALLOW_SCREENSHOTS: &str = "allow_screenshots";
    /// Minimum PIN length.
    pub const PIN_MIN_LENGTH: &str = "pin_min_length";
    /// PIN character set.
    pub const PIN_KIND: &str = "pin_kind";
    /// Failed PIN attempts before the local store is wiped.
    pub const PIN_MAX_FAILED_ATTEMPTS: &str = "pin_max_failed_attempts";
    /// Hours the app works without reaching the server.
    pub const OFFLINE_GRACE_HOURS: &str = "offline_grace_hours";
    /// Wipe the local store now.
    pub const REMOTE_WIPE: &str = "remote_wipe";
    /// Log level.
    pub const LOG_LEVEL: &str = "log_level";
    /// Version of the key set the EMM was configured with.
    pub const CONFIG_VERSION: &str = "config_version";
}

const ATTACHMENT_OPTIONS: &[Choice] = &[
    Choice {
        value: "images",
        label: Text {
            en: "Images",
            de: "Bilder",
        },
    },
    Choice {
        value: "videos",
        label: Text {
            en: "Videos",
            de: "Videos",
        },
    },
    Choice {
        value: "audio",
        label: Text {
            en: "Audio",
            de: "Audio",
        },
    },
    Choice {
        value: "files",
        label: Text {
            en: "Files",
            de: "Dateien",
        },
    },
];

const PIN_KIND_OPTIONS: &[Choice] = &[
    Choice {
        value: "digits",
        label: Text {
            en: "Digits only",
            de: "Nur Ziffern",
        },
    },
    Choice {
        value: "alphanumeric",
        label: Text {
            en: "Letters and digits",
            de: "Buchstaben und Ziffern",
        },
    },
];

const LOG_LEVEL_OPTIONS: &[Choice] = &[
    Choice {
        value: "error",
        label: Text {
            en: "Errors",
            de: "Fehler",
        },
    },
    Choice {
        value: "warn",
        label: Text {
            en: "Warnings",
            de: "Warnungen",
        },
    },
    Choice {
        value: "info",
        label: Text {
            en: "Information",
            de: "Informationen",
        },
    },
    Choice {
        value: "debug",
        label: Text {
            en: "Debugging",
            de: "Fehlersuche",
        },
    },
];

/// Every managed key Kontor understands, in console order.
pub const KEYS: &[KeySpec] = &[
    KeySpec {
        key: keys::SERVER_URL,
        kind: Kind::String {
            min_chars: 9,
            max_chars: 2048,
            rule: StringRule::HttpsUrl,
        },
        group: Group::Enrollment,
        required: true,
        title: Text {
            en: "Server URL",
            de: "Server-URL",
        },
        description: Text {
            en: "Base URL of your organisation's Kontor server, starting with https://.",
            de: "Basis-URL des Kontor-Servers Ihrer Organisation, beginnend mit https://.",
        },
        emm_variable: None,
    },
    KeySpec {
        key: keys::ORGANISATION_ID,
        kind: Kind::String {
            min_chars: 1,
            max_chars: 64,
            rule: StringRule::Identifier,
        },
        group: Group::Enrollment,
        required: true,
        title: Text {
            en: "Organisation ID",
            de: "Organisations-ID",
        },
        description: Text {
            en: "Identifier of your organisation on the Kontor server.",
            de: "Kennung Ihrer Organisation auf dem Kontor-Server.",
        },
        emm_variable: None,
    },
    KeySpec {
        key: keys::ENROLLMENT_TOKEN,
        kind: Kind::String {
            min_chars: 16,
            max_chars: 512,
            rule: StringRule::Token,
        },
        group: Group::Enrollment,
        required: false,
        title: Text {
            en: "Enrollment token",
            de: "Registrierungstoken",
        },
        description: Text {
            en: "One-use or bulk token from the Kontor admin portal; the device uses it once to get its certificate.",
            de: "Einmal- oder Sammeltoken aus dem Kontor-Adminportal; das Gerät nutzt es einmal, um sein Zertifikat zu erhalten.",
        },
        emm_variable: None,
    },
    KeySpec {
        key: keys::USER_IDENTITY,
        kind: Kind::String {
            min_chars: 1,
            max_chars: 256,
            rule: StringRule::Text,
        },
        group: Group::User,
        required: false,
        title: Text {
            en: "User identity",
            de: "Benutzeridentität",
        },
        description: Text {
            en: "The user's e-mail address; let the EMM fill it from its user directory.",
            de: "E-Mail-Adresse des Benutzers; lassen Sie das EMM sie aus seinem Benutzerverzeichnis einsetzen.",
        },
        emm_variable: Some(EmmVariable::EmailAddress),
    },
    KeySpec {
        key: keys::DEPARTMENT,
        kind: Kind::String {
            min_chars: 1,
            max_chars: 128,
            rule: StringRule::Text,
        },
        group: Group::User,
        required: false,
        title: Text {
            en: "Department",
            de: "Abteilung",
        },
        description: Text {
            en: "Department the user belongs to; departments can be closed areas.",
            de: "Abteilung des Benutzers; Abteilungen können geschlossene Bereiche sein.",
        },
        emm_variable: None,
    },
    KeySpec {
        key: keys::ALLOW_COPY_PASTE,
        kind: Kind::Bool { default: true },
        group: Group::Restrictions,
        required: false,
        title: Text {
            en: "Allow copy and paste",
            de: "Kopieren und Einfügen erlauben",
        },
        description: Text {
            en: "Whether text may be copied out of Kontor into other apps.",
            de: "Ob Text aus Kontor in andere Apps kopiert werden darf.",
        },
        emm_variable: None,
    },
    KeySpec {
        key: keys::ALLOWED_ATTACHMENTS,
        kind: Kind::MultiSelect {
            default: &["images", "videos", "audio", "files"],
            options: ATTACHMENT_OPTIONS,
        },
        group: Group::Restrictions,
        required: false,
        title: Text {
            en: "Allowed attachments",
            de: "Erlaubte Anhänge",
        },
        description: Text {
            en: "Kinds of attachment users may send; an empty selection allows text only.",
            de: "Arten von Anhängen, die Benutzer senden dürfen; eine leere Auswahl erlaubt nur Text.",
        },
        emm_variable: None,
    },
    KeySpec {
        key: keys::ALLOW_FORWARDING,
        kind: Kind::Bool { default: true },
        group: Group::Restrictions,
        required: false,
        title: Text {
            en: "Allow forwarding",
            de: "Weiterleiten erlauben",
        },
        description: Text {
            en: "Whether messages may be forwarded to other chats.",
            de: "Ob Nachrichten in andere Chats weitergeleitet werden dürfen.",
        },
        emm_variable: None,
    },
    KeySpec {
        key: keys::ALLOW_SCREENSHOTS,
        kind: Kind::Bool { default: false },
        group: Group::Restrictions,
        required: false,
        title: Text {
            en: "Allow screenshots",
            de: "Bildschirmfotos erlauben",
        },
        description: Text {
            en: "Whether the app lets the system take screenshots and screen recordings of it.",
            de: "Ob die App Bildschirmfotos und Bildschirmaufnahmen durch das System zulässt.",
        },
        emm_variable: None,
    },
    KeySpec {
        key: keys::PIN_MIN_LENGTH,
        kind: Kind::Integer {
            default: 6,
            min: 4,
            max: 16,
        },
        group: Group::Pin,
        required: false,
        title: Text {
            en: "Minimum PIN length",
            de: "Minimale PIN-Länge",
        },
        description: Text {
            en: "Fewest characters a PIN may have (4 to 16).",
            de: "Mindestanzahl der Zeichen einer PIN (4 bis 16).",
        },
        emm_variable: None,
    },
    KeySpec {
        key: keys::PIN_KIND,
        kind: Kind::Choice {
            default: "digits",
            options: PIN_KIND_OPTIONS,
        },
        group: Group::Pin,
        required: false,
        title: Text {
            en: "PIN characters",
            de: "PIN-Zeichen",
        },
        description: Text {
            en: "Whether the PIN is digits only or may mix letters and digits.",
            de: "Ob die PIN nur aus Ziffern besteht oder Buchstaben und Ziffern mischen darf.",
        },
        emm_variable: None,
    },
    KeySpec {
        key: keys::PIN_MAX_FAILED_ATTEMPTS,
        kind: Kind::Integer {
            default: 10,
            min: 3,
            max: 20,
        },
        group: Group::Pin,
        required: false,
        title: Text {
            en: "Failed PIN attempts before wipe",
            de: "Fehlversuche bis zur Löschung",
        },
        description: Text {
            en: "Wrong PIN entries in a row after which the local store is wiped (3 to 20).",
            de: "Falsche PIN-Eingaben in Folge, nach denen der lokale Speicher gelöscht wird (3 bis 20).",
        },
        emm_variable: None,
    },
    KeySpec {
        key: keys::OFFLINE_GRACE_HOURS,
        kind: Kind::Integer {
            default: 72,
            min: 1,
            max: 720,
        },
        group: Group::Device,
        required: false,
        title: Text {
            en: "Offline grace period (hours)",
            de: "Offline-Kulanzzeit (Stunden)",
        },
        description: Text {
            en: "Hours the app stays usable without reaching the server before it locks (1 to 720).",
            de: "Stunden, die die App ohne Serververbindung nutzbar bleibt, bevor sie sperrt (1 bis 720).",
        },
        emm_variable: None,
    },
    KeySpec {
        key: keys::REMOTE_WIPE,
        kind: Kind::Bool { default: false },
        group: Group::Device,
        required: false,
        title: Text {
            en: "Wipe Kontor data",
            de: "Kontor-Daten löschen",
        },
        description: Text {
            en: "When on, the app destroys its keys and local store at its next start.",
            de: "Wenn aktiv, vernichtet die App beim nächsten Start ihre Schlüssel und ihren lokalen Speicher.",
        },
        emm_variable: None,
    },
    KeySpec {
        key: keys::LOG_LEVEL,
        kind: Kind::Choice {
            default: "warn",
            options: LOG_LEVEL_OPTIONS,
        },
        group: Group::Device,
        required: false,
        title: Text {
            en: "Log level",
            de: "Protokollstufe",
        },
        description: Text {
            en: "How much the app writes to its local diagnostic log.",
            de: "Wie viel die App in ihr lokales Diagnoseprotokoll schreibt.",
        },
        emm_variable: None,
    },
    KeySpec {
        key: keys::CONFIG_VERSION,
        kind: Kind::Hidden { value: "1" },
        group: Group::Device,
        required: false,
        title: Text {
            en: "Configuration version",
            de: "Konfigurationsversion",
        },
        description: Text {
            en: "Version of the Kontor configuration keys; set automatically.",
            de: "Version der Kontor-Konfigurationsschlüssel; wird automatisch gesetzt.",
        },
        emm_variable: None,
    },
];

/// The spec of `key`, if Kontor knows it.
pub fn spec(key: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|spec| spec.key == key)
}

/// One concrete value of a managed key, typed as every EMM can carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    /// A boolean.
    Bool(bool),
    /// An integer (always inside the 32-bit range).
    Integer(i64),
    /// A string (string, choice and hidden keys).
    String(String),
    /// A list of strings (multi-select keys).
    StringList(Vec<String>),
}

/// The base URL of the organisation's Kontor server: `https://` and a host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerUrl(String);

/// The organisation's id on its Kontor server.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrgId(String);

/// The user's identity as the EMM knows it, usually the e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserIdentity(String);

/// The user's department.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Department(String);

/// A one-use or bulk enrollment token. Secret: zeroized on drop, `[redacted]`
/// in `Debug`, compared in constant time.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct EnrollmentToken(String);

macro_rules! text_type {
    ($ty:ident, $key:expr) => {
        impl $ty {
            /// Checks `text` against the key's rule.
            pub fn parse(text: &str) -> Result<Self, Error> {
                check_string($key, text).map(|()| Self(text.to_owned()))
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_type!(ServerUrl, keys::SERVER_URL);
text_type!(OrgId, keys::ORGANISATION_ID);
text_type!(UserIdentity, keys::USER_IDENTITY);
text_type!(Department, keys::DEPARTMENT);

impl EnrollmentToken {
    /// Checks `text` against the token rule.
    pub fn parse(text: &str) -> Result<Self, Error> {
        check_string(keys::ENROLLMENT_TOKEN, text).map(|()| Self(text.to_owned()))
    }

    /// The secret token, for the encoders and for enrollment. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for EnrollmentToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnrollmentToken([redacted])")
    }
}

impl PartialEq for EnrollmentToken {
    fn eq(&self, other: &Self) -> bool {
        // Constant time in the content; the length is not secret.
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl Eq for EnrollmentToken {}

/// Kinds of attachment a user may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Attachment {
    /// Pictures.
    Images,
    /// Videos.
    Videos,
    /// Voice messages and audio files.
    Audio,
    /// Any other file.
    Files,
}

impl Attachment {
    /// All kinds, in option order.
    pub const ALL: [Attachment; 4] = [
        Attachment::Images,
        Attachment::Videos,
        Attachment::Audio,
        Attachment::Files,
    ];

    /// The value sent to the app.
    pub fn as_str(self) -> &'static str {
        match self {
            Attachment::Images => "images",
            Attachment::Videos => "videos",
            Attachment::Audio => "audio",
            Attachment::Files => "files",
        }
    }

    fn from_value(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == value)
    }
}

/// Which characters a PIN may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PinKind {
    /// Digits only.
    Digits,
    /// Letters and digits.
    Alphanumeric,
}

impl PinKind {
    /// The value sent to the app.
    pub fn as_str(self) -> &'static str {
        match self {
            PinKind::Digits => "digits",
            PinKind::Alphanumeric => "alphanumeric",
        }
    }
}

/// How much the app logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// Also informational events.
    Info,
    /// Everything useful for debugging (never message content).
    Debug,
}

impl LogLevel {
    /// The value sent to the app.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

/// What the user may share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restrictions {
    /// Copy and paste out of Kontor.
    pub copy_paste: bool,
    /// Attachment kinds the user may send; empty means text only.
    pub attachments: std::collections::BTreeSet<Attachment>,
    /// Forwarding messages to other chats.
    pub forwarding: bool,
    /// Screenshots of the app (the app sets the platform's secure flag when
    /// this is off).
    pub screenshots: bool,
}

/// The PIN that protects the local store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinPolicy {
    /// Fewest characters, 4 to 16.
    pub min_length: u8,
    /// Allowed characters.
    pub kind: PinKind,
    /// Wrong entries in a row before the local store is wiped, 3 to 20.
    pub max_failed_attempts: u8,
}

/// The typed policy a device acts on.
///
/// Build it with [`Policy::new`] (every optional key at its default) and set
/// fields; the numeric fields must stay inside their [`KEYS`] range, which
/// [`Policy::validate`] checks and every encoder calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Base URL of the Kontor server.
    pub server_url: ServerUrl,
    /// Organisation id.
    pub organisation_id: OrgId,
    /// Enrollment token, while the device still has to enroll.
    pub enrollment_token: Option<EnrollmentToken>,
    /// The user's identity.
    pub user_identity: Option<UserIdentity>,
    /// The user's department.
    pub department: Option<Department>,
    /// Sharing restrictions.
    pub restrictions: Restrictions,
    /// PIN rules.
    pub pin: PinPolicy,
    /// Hours the app works without reaching the server, 1 to 720.
    pub offline_grace_hours: u16,
    /// Wipe the local store at the next start.
    pub remote_wipe: bool,
    /// Log level.
    pub log_level: LogLevel,
}

impl Policy {
    /// A policy for `server_url` and `organisation_id` with every other key at
    /// its default.
    pub fn new(server_url: ServerUrl, organisation_id: OrgId) -> Self {
        Policy {
            server_url,
            organisation_id,
            enrollment_token: None,
            user_identity: None,
            department: None,
            restrictions: Restrictions {
                copy_paste: true,
                attachments: Attachment::ALL.into_iter().collect(),
                forwarding: true,
                screenshots: false,
            },
            pin: PinPolicy {
                min_length: 6,
                kind: PinKind::Digits,
                max_failed_attempts: 10,
            },
            offline_grace_hours: 72,
            remote_wipe: false,
            log_level: LogLevel::Warn,
        }
    }

    /// Checks the numeric fields against their ranges in [`KEYS`].
    pub fn validate(&self) -> Result<(), Error> {
        for (key, value) in [
            (keys::PIN_MIN_LENGTH, i64::from(self.pin.min_length)),
            (
                keys::PIN_MAX_FAILED_ATTEMPTS,
                i64::from(self.pin.max_failed_attempts),
            ),
            (
                keys::OFFLINE_GRACE_HOURS,
                i64::from(self.offline_grace_hours),
            ),
        ] {
            check_integer(key, value)?;
        }
        Ok(())
    }

    /// The policy as concrete key-value pairs, in [`KEYS`] order; keys whose
    /// value is absent are left out. Checks [`Policy::validate`] first.
    pub fn settings(&self) -> Result<Vec<(&'static str, Setting)>, Error> {
        self.validate()?;
        let text = |s: &str| Setting::String(s.to_owned());
        let mut out = vec![
            (keys::SERVER_URL, text(self.server_url.as_str())),
            (keys::ORGANISATION_ID, text(self.organisation_id.as_str())),
        ];
        if let Some(token) = &self.enrollment_token {
            out.push((keys::ENROLLMENT_TOKEN, text(token.expose())));
        }
        if let Some(user) = &self.user_identity {
            out.push((keys::USER_IDENTITY, text(user.as_str())));
        }
        if let Some(department) = &self.department {
            out.push((keys::DEPARTMENT, text(department.as_str())));
        }
        let r = &self.restrictions;
        out.extend([
            (keys::ALLOW_COPY_PASTE, Setting::Bool(r.copy_paste)),
            (
                keys::ALLOWED_ATTACHMENTS,
                Setting::StringList(
                    r.attachments
                        .iter()
                        .map(|a| a.as_str().to_owned())
                        .collect(),
                ),
            ),
            (keys::ALLOW_FORWARDING, Setting::Bool(r.forwarding)),
            (keys::ALLOW_SCREENSHOTS, Setting::Bool(r.screenshots)),
            (
                keys::PIN_MIN_LENGTH,
                Setting::Integer(self.pin.min_length.into()),
            ),
            (keys::PIN_KIND, text(self.pin.kind.as_str())),
            (
                keys::PIN_MAX_FAILED_ATTEMPTS,
                Setting::Integer(self.pin.max_failed_attempts.into()),
            ),
            (
                keys::OFFLINE_GRACE_HOURS,
                Setting::Integer(self.offline_grace_hours.into()),
            ),
            (keys::REMOTE_WIPE, Setting::Bool(self.remote_wipe)),
            (keys::LOG_LEVEL, text(self.log_level.as_str())),
            (keys::CONFIG_VERSION, text(&CONFIG_VERSION.to_string())),
        ]);
        Ok(out)
    }

    /// Builds a policy from typed settings; absent optional keys take their
    /// default. Used by the decoders once raw values are typed.
    pub(crate) fn from_settings(mut s: BTreeMap<&'static str, Setting>) -> Result<Self, Error> {
        let server_url = ServerUrl(take_string(&mut s, keys::SERVER_URL)?);
        let organisation_id = OrgId(take_string(&mut s, keys::ORGANISATION_ID)?);
        let mut policy = Policy::new(server_url, organisation_id);
        if let Some(Setting::String(v)) = s.remove(keys::ENROLLMENT_TOKEN) {
            policy.enrollment_token = Some(EnrollmentToken(v));
        }
        if let Some(Setting::String(v)) = s.remove(keys::USER_IDENTITY) {
            policy.user_identity = Some(UserIdentity(v));
        }
        if let Some(Setting::String(v)) = s.remove(keys::DEPARTMENT) {
            policy.department = Some(Department(v));
        }
        let r = &mut policy.restrictions;
        if let Some(Setting::Bool(v)) = s.remove(keys::ALLOW_COPY_PASTE) {
            r.copy_paste = v;
        }
        if let Some(Setting::StringList(v)) = s.remove(keys::ALLOWED_ATTACHMENTS) {
            // The decoder has checked every value against the options.
            r.attachments = v.iter().filter_map(|a| Attachment::from_value(a)).collect();
        }
        if let Some(Setting::Bool(v)) = s.remove(keys::ALLOW_FORWARDING) {
            r.forwarding = v;
        }
        if let Some(Setting::Bool(v)) = s.remove(keys::ALLOW_SCREENSHOTS) {
            r.screenshots = v;
        }
        if let Some(Setting::Integer(v)) = s.remove(keys::PIN_MIN_LENGTH) {
            policy.pin.min_length = narrow(keys::PIN_MIN_LENGTH, v)?;
        }
        if let Some(Setting::String(v)) = s.remove(keys::PIN_KIND) {
            policy.pin.kind = if v == "alphanumeric" {
                PinKind::Alphanumeric
            } else {
                PinKind::Digits
            };
        }
        if let Some(Setting::Integer(v)) = s.remove(keys::PIN_MAX_FAILED_ATTEMPTS) {
            policy.pin.max_failed_attempts = narrow(keys::PIN_MAX_FAILED_ATTEMPTS, v)?;
        }
        if let Some(Setting::Integer(v)) = s.remove(keys::OFFLINE_GRACE_HOURS) {
            policy.offline_grace_hours = narrow(keys::OFFLINE_GRACE_HOURS, v)?;
        }
        if let Some(Setting::Bool(v)) = s.remove(keys::REMOTE_WIPE) {
            policy.remote_wipe = v;
        }
        if let Some(Setting::String(v)) = s.remove(keys::LOG_LEVEL) {
            policy.log_level = match v.as_str() {
                "error" => LogLevel::Error,
                "info" => LogLevel::Info,
                "debug" => LogLevel::Debug,
                _ => LogLevel::Warn,
            };
        }
        Ok(policy)
    }
}

fn take_string(
    s: &mut BTreeMap<&'static str, Setting>,
    key: &'static str,
) -> Result<String, Error> {
    match s.remove(key) {
        Some(Setting::String(v)) => Ok(v),
        _ => Err(Error::Missing { key }),
    }
}

fn narrow<T: TryFrom<i64>>(key: &'static str, value: i64) -> Result<T, Error> {
    T::try_from(value).map_err(|_| Error::Invalid {
        key,
        rule: format!("{value} is out of range"),
    })
}

/// Checks an integer against the range of `key` in [`KEYS`].
pub(crate) fn check_integer(key: &'static str, value: i64) -> Result<(), Error> {
    if let Some(KeySpec {
        kind: Kind::Integer { min, max, .. },
        ..
    }) = spec(key)
        && (value < *min || value > *max)
    {
        return Err(Error::Invalid {
            key,
            rule: format!("must be between {min} and {max}, got {value}"),
        });
    }
    Ok(())
}

/// Checks a string against the length and rule of `key` in [`KEYS`].
pub(crate) fn check_string(key: &'static str, text: &str) -> Result<(), Error> {
    let Some(KeySpec {
        kind:
            Kind::String {
                min_chars,
                max_chars,
                rule,
            },
        ..
    }) = spec(key)
    else {
        return Ok(());
    };
    let chars = text.chars().count();
    if chars < *min_chars || chars > *max_chars {
        return Err(Error::Invalid {
            key,
            rule: format!("must be {min_chars} to {max_chars} characters long, got {chars}"),
        });
    }
    let ok = match rule {
        StringRule::HttpsUrl => text.strip_prefix("https://").is_some_and(|rest| {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !host.starts_with(':') && rest.chars().all(|c| c.is_ascii_graphic())
        }),
        StringRule::Identifier => text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')),
        StringRule::Token => text.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '+' | '/' | '=' | '-')
        }),
        StringRule::Text => !text.chars().any(char::is_control),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            key,
            rule: rule_text(*rule).to_owned(),
        })
    }
}

fn rule_text(rule: StringRule) -> &'static str {
    match rule {
        StringRule::HttpsUrl => "must be an https:// url with a host and no spaces",
        StringRule::Identifier => "must use only letters, digits, '.', '_' and '-'",
        StringRule::Token => "must use only letters, digits and . _ ~ + / = -",
        StringRule::Text => "must not contain control characters",
    }
}

/// The app's bundle identifier (Apple) or package name (Android). One id
/// serves both platforms, so it follows the strictest rule, the AppConfig
/// specfile's: two or more dot-separated parts of ASCII letters and digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BundleId(String);

impl BundleId {
    /// The id Kontor's apps ship under.
    pub const DEFAULT: &'static str = "com.kontor.messenger";

    /// Checks `id`.
    pub fn parse(id: &str) -> Result<Self, Error> {
        let parts: Vec<&str> = id.split('.').collect();
        let ok = id.len() <= 255
            && parts.len() >= 2
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric()));
        if ok {
            Ok(BundleId(id.to_owned()))
        } else {
            Err(Error::InvalidAppId { id: id.to_owned() })
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for BundleId {
    fn default() -> Self {
        BundleId(Self::DEFAULT.to_owned())
    }
}

impl fmt::Display for BundleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
