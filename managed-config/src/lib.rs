//! Kontor's managed configuration: one policy model, generated into every
//! format an EMM speaks, and read back the same on the device.
//!
//! Admins configure Kontor in the EMM they already run. Each EMM wants the
//! same settings in its own format; this crate keeps one model ([`KEYS`],
//! [`Policy`]) and derives every format from it, so no format can drift from
//! another. It does no I/O and reads no clock: values in, values out.
//!
//! ```
//! use kontor_managed_config::{OrgId, Policy, ServerUrl, apple, decode};
//!
//! let policy = Policy::new(
//!     ServerUrl::parse("https://kontor.example.org")?,
//!     OrgId::parse("example")?,
//! );
//! let plist = apple::configuration_plist(&policy)?;
//! assert_eq!(decode::apple_plist(plist.as_bytes())?.policy, policy);
//! # Ok::<(), kontor_managed_config::Error>(())
//! ```
//!
//! # Layout
//!
//! - [`model`]: [`KEYS`], the spec of every managed key (type, default,
//!   constraint, English and German texts, EMM variable), and the typed
//!   [`Policy`] with its newtypes.
//! - Schema encoders, generated from [`KEYS`] for the admin's console:
//!   [`android`] (`app_restrictions.xml` and its strings resources),
//!   [`appconfig`] (the AppConfig specfile), [`amapi::managed_properties`].
//! - Configuration encoders, a concrete [`Policy`] as the EMM delivers it:
//!   [`apple`] (the `Configuration` dictionary of InstallApplication and of
//!   the Settings command), [`amapi::application_policy`] (Android Management
//!   API), [`android::bundle_json`] (the restrictions bundle as JSON).
//! - [`decode`]: what the device receives back to a [`Policy`], reporting
//!   unknown keys and unsubstituted EMM variables ([`placeholder`]).
//! - [`value`]: the raw value tree every decoder lowers its format to.

pub mod amapi;
pub mod android;
pub mod appconfig;
pub mod apple;
pub mod decode;
pub mod model;
pub mod placeholder;
pub mod value;
mod xml;

pub use decode::{Decoded, Placeholder};
pub use model::{
    Attachment, BundleId, CONFIG_VERSION, Department, EnrollmentToken, KEYS, KeySpec, Kind,
    LogLevel, OrgId, PinKind, PinPolicy, Policy, Restrictions, ServerUrl, Setting, UserIdentity,
};
pub use value::Value;

/// Largest input a decoder accepts. Managed configurations are a few
/// kilobytes; EMMs cap them far below this.
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;

/// Deepest nesting of arrays and dictionaries a decoder accepts.
pub const MAX_DEPTH: usize = 32;

/// Most unknown keys a decoder keeps before it refuses the input.
pub const MAX_UNKNOWN_KEYS: usize = 256;

/// Every way this crate can fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key has a value of the wrong type.
    #[error("key `{key}`: expected {expected}, found {found}")]
    WrongType {
        /// The key.
        key: &'static str,
        /// The type the model wants.
        expected: &'static str,
        /// The type the input has.
        found: &'static str,
    },
    /// A key's value breaks its constraint.
    #[error("key `{key}`: {rule}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// The rule, with the offending value where it is not secret.
        rule: String,
    },
    /// A required key is absent.
    #[error("key `{key}` is required but missing")]
    Missing {
        /// The key.
        key: &'static str,
    },
    /// A required key holds an EMM variable the EMM did not substitute.
    #[error("key `{key}` holds the unsubstituted emm variable `{token}`")]
    Unsubstituted {
        /// The key.
        key: &'static str,
        /// The placeholder as found.
        token: String,
    },
    /// The input does not parse in its format.
    #[error("malformed {format}: {detail}")]
    Syntax {
        /// `plist`, `json`, `toml` or `xml`.
        format: &'static str,
        /// The parser's message.
        detail: String,
    },
    /// The top level of the input is not a dictionary.
    #[error("{format} top level must be a dictionary, found {found}")]
    NotADictionary {
        /// The input format.
        format: &'static str,
        /// What it is instead.
        found: &'static str,
    },
    /// The input is larger than [`MAX_INPUT_BYTES`].
    #[error("input is {size_bytes} bytes, more than the limit of {max_bytes}")]
    TooLarge {
        /// Input size.
        size_bytes: usize,
        /// The limit.
        max_bytes: usize,
    },
    /// The input nests deeper than [`MAX_DEPTH`].
    #[error("input nests deeper than {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// The input has more than [`MAX_UNKNOWN_KEYS`] unknown keys.
    #[error("input has more than {max} unknown keys")]
    TooManyKeys {
        /// The limit.
        max: usize,
    },
    /// An Android Management API policy has no application of that package.
    #[error("no application with packageName `{package_name}` in the policy")]
    NoSuchApplication {
        /// The package looked for.
        package_name: String,
    },
    /// An app bundle id or package name is malformed.
    #[error("invalid app id `{id}`: use two or more dot-separated parts of letters and digits")]
    InvalidAppId {
        /// The id given.
        id: String,
    },
    /// An encoder's writer failed.
    #[error("cannot write {format}: {detail}")]
    Encode {
        /// The output format.
        format: &'static str,
        /// The writer's message.
        detail: String,
    },
}
