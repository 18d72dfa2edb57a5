//! Android Management API: the request bodies Kontor sends to
//! `androidmanagement.googleapis.com/v1`.
//!
//! - [`application`]: one entry of a policy's `applications[]`, its
//!   `managedConfiguration` managed-config's bundle for a [`Policy`] (the
//!   same key-value pairs [`kontor_managed_config::amapi::application_policy`]
//!   writes), or a `managedConfigurationTemplate` saved in the console.
//! - [`policy_patch`]: `enterprises.policies.patch` replacing a policy's
//!   `applications` and nothing else (`updateMask=applications`).
//! - [`enrollment_token`]: the body of `enterprises.enrollmentTokens.create`.
//! - [`clear_app_data`]: `enterprises.devices.issueCommand` with
//!   `CLEAR_APP_DATA`.
//!
//! Resource names are newtypes checked on construction ([`EnterpriseName`],
//! [`PolicyName`], [`DeviceName`]), as are package names ([`PackageName`]).
//! Builders return a [`Request`] (method, path under the API's base URL,
//! JSON body) so the HTTP client adds only the host and credentials.

use std::collections::BTreeMap;

use kontor_managed_config::Policy;
use serde_json::{Map, Value as J, json};

/// Longest resource id (enterprise, policy, device) accepted.
pub const MAX_RESOURCE_ID_CHARS: usize = 128;

/// Longest package name accepted.
pub const MAX_PACKAGE_NAME_CHARS: usize = 255;

/// Shortest enrollment token lifetime the API accepts.
pub const MIN_TOKEN_SECONDS: u64 = 60;

/// Longest enrollment token lifetime Kontor asks for: 90 days. The API
/// accepts more; a token that lives for months is a risk, not a feature.
pub const MAX_TOKEN_SECONDS: u64 = 90 * 24 * 3600;

/// Longest `additionalData` the API accepts.
pub const MAX_ADDITIONAL_DATA_CHARS: usize = 1024;

/// Most packages one CLEAR_APP_DATA command may name.
pub const MAX_CLEAR_PACKAGES: usize = 100;

/// Every way a builder of this module can refuse its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A package name is not two or more dot-separated Java identifiers.
    #[error(
        "invalid package name `{name}`: use two or more dot-separated parts, each a letter followed by letters, digits or underscores"
    )]
    InvalidPackageName {
        /// The text given.
        name: String,
    },
    /// A resource name does not have the form the API expects.
    #[error(
        "invalid {kind} name `{name}`: expected `{pattern}` with ids of letters, digits, `-` and `_`"
    )]
    InvalidResourceName {
        /// `enterprise`, `policy` or `device`.
        kind: &'static str,
        /// The text given.
        name: String,
        /// The expected form.
        pattern: &'static str,
    },
    /// An enrollment token lifetime is outside [`MIN_TOKEN_SECONDS`] to
    /// [`MAX_TOKEN_SECONDS`].
    #[error("enrollment token duration must be between {min} and {max} seconds, got {seconds}")]
    InvalidDuration {
        /// The lifetime given.
        seconds: u64,
        /// The shortest allowed.
        min: u64,
        /// The longest allowed.
        max: u64,
    },
    /// `additionalData` is longer than [`MAX_ADDITIONAL_DATA_CHARS`].
    #[error("additional data is {chars} characters, more than the limit of {max}")]
    AdditionalDataTooLong {
        /// Its length.
        chars: usize,
        /// The limit.
        max: usize,
    },
    /// A managed configuration template id is empty or has a character the
    /// API does not use in ids.
    #[error("invalid managed configuration template id `{id}`")]
    InvalidTemplateId {
        /// The text given.
        id: String,
    },
    /// CLEAR_APP_DATA names no package, or too many.
    #[error("clear app data needs 1 to {max} package names, got {count}")]
    BadPackageCount {
        /// Packages named.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The same package appears twice in a policy's applications.
    #[error("package `{name}` appears more than once in the applications")]
    DuplicatePackage {
        /// The package.
        name: String,
    },
    /// The policy does not encode (managed-config refused it).
    #[error("policy: {0}")]
    Policy(#[from] kontor_managed_config::Error),
    /// The JSON writer failed, or managed-config's bundle did not read back.
    #[error("cannot write json: {detail}")]
    Encode {
        /// The writer's message.
        detail: String,
    },
}

/// An Android package name: two or more dot-separated parts, each an ASCII
/// letter followed by letters, digits or underscores.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PackageName(String);

impl PackageName {
    /// Checks `name`.
    pub fn parse(name: &str) -> Result<Self, Error> {
        let part_ok = |p: &str| {
            let mut chars = p.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        let ok = name.len() <= MAX_PACKAGE_NAME_CHARS
            && name.split('.').count() >= 2
            && name.split('.').all(part_ok);
        if ok {
            Ok(PackageName(name.to_owned()))
        } else {
            Err(Error::InvalidPackageName {
                name: name.to_owned(),
            })
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `enterprises/{enterpriseId}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EnterpriseName(String);

/// `enterprises/{enterpriseId}/policies/{policyId}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyName(String);

/// `enterprises/{enterpriseId}/devices/{deviceId}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceName(String);

impl EnterpriseName {
    /// Checks `name`.
    pub fn parse(name: &str) -> Result<Self, Error> {
        resource(name, "enterprise", "enterprises/{id}", &[]).map(|_| EnterpriseName(name.into()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PolicyName {
    /// Checks `name`.
    pub fn parse(name: &str) -> Result<Self, Error> {
        resource(
            name,
            "policy",
            "enterprises/{id}/policies/{id}",
            &["policies"],
        )
        .map(|_| PolicyName(name.into()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The enterprise the policy belongs to.
    pub fn enterprise(&self) -> EnterpriseName {
        EnterpriseName(parent(&self.0))
    }
}

impl DeviceName {
    /// Checks `name`.
    pub fn parse(name: &str) -> Result<Self, Error> {
        resource(
            name,
            "device",
            "enterprises/{id}/devices/{id}",
            &["devices"],
        )
        .map(|_| DeviceName(name.into()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The enterprise the device belongs to.
    pub fn enterprise(&self) -> EnterpriseName {
        EnterpriseName(parent(&self.0))
    }
}

/// `Application.installType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallType {
    /// Installed automatically; the user cannot remove it.
    ForceInstalled,
    /// Available to install from the managed Play Store.
    Available,
    /// Installed automatically; the user can remove it.
    Preinstalled,
    /// Must be installed before setup completes.
    RequiredForSetup,
    /// Blocked from installation; an installed copy is removed.
    Blocked,
}

impl InstallType {
    /// The API's enum value.
    pub fn as_str(self) -> &'static str {
        match self {
            InstallType::ForceInstalled => "FORCE_INSTALLED",
            InstallType::Available => "AVAILABLE",
            InstallType::Preinstalled => "PREINSTALLED",
            InstallType::RequiredForSetup => "REQUIRED_FOR_SETUP",
            InstallType::Blocked => "BLOCKED",
        }
    }
}

/// A `managedConfigurationTemplate`: a configuration saved in the managed
/// configurations iframe, with values for its `$variables$`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigurationTemplate {
    /// `templateId`.
    pub template_id: String,
    /// `configurationVariables`, e.g. `"$user$"` to `"anna"`.
    pub variables: BTreeMap<String, String>,
}

/// Where an application's configuration comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppConfiguration<'a> {
    /// No configuration.
    None,
    /// `managedConfiguration` from a Kontor policy.
    Policy(&'a Policy),
    /// `managedConfigurationTemplate` saved in the console. The API ignores
    /// a template when `managedConfiguration` is set, so the two never go
    /// together.
    Template(&'a ConfigurationTemplate),
}

/// One entry of a policy's `applications[]`.
pub fn application(
    package: &PackageName,
    install_type: InstallType,
    configuration: AppConfiguration<'_>,
) -> Result<J, Error> {
    let mut app = Map::new();
    app.insert("packageName".into(), json!(package.as_str()));
    app.insert("installType".into(), json!(install_type.as_str()));
    match configuration {
        AppConfiguration::None => {}
        AppConfiguration::Policy(policy) => {
            app.insert(
                "managedConfiguration".into(),
                J::Object(managed_configuration(policy)?),
            );
        }
        AppConfiguration::Template(template) => {
            let id_ok = !template.template_id.is_empty()
                && template.template_id.len() <= MAX_RESOURCE_ID_CHARS
                && template
                    .template_id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !id_ok {
                return Err(Error::InvalidTemplateId {
                    id: template.template_id.clone(),
                });
            }
            app.insert(
                "managedConfigurationTemplate".into(),
                json!({
                    "templateId": template.template_id,
                    "configurationVariables": template.variables,
                }),
            );
        }
    }
    Ok(J::Object(app))
}

/// The `managedConfiguration` object for `policy`: managed-config's bundle
/// (`android::bundle_json`), read back into a JSON map.
pub fn managed_configuration(policy: &Policy) -> Result<Map<String, J>, Error> {
    let text = kontor_managed_config::android::bundle_json(policy)?;
    match serde_json::from_str(&text) {
        Ok(J::Object(map)) => Ok(map),
        Ok(_) => Err(Error::Encode {
            detail: "the bundle is not a json object".into(),
        }),
        Err(e) => Err(Error::Encode {
            detail: e.to_string(),
        }),
    }
}

/// An HTTP call to the Android Management API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `POST` or `PATCH`.
    pub method: &'static str,
    /// Path and query under `https://androidmanagement.googleapis.com/v1/`.
    pub path: String,
    /// The JSON body, pretty with a final newline.
    pub body: String,
}

/// `enterprises.policies.patch` setting the policy's `applications` to
/// `applications` (from [`application`]) and leaving every other field of
/// the policy as it is (`updateMask=applications`). The list replaces the
/// policy's list as a whole, so it must hold every app the policy keeps.
pub fn policy_patch(policy: &PolicyName, applications: Vec<J>) -> Result<Request, Error> {
    let mut seen = std::collections::BTreeSet::new();
    for app in &applications {
        let name = app["packageName"].as_str().unwrap_or_default();
        if !seen.insert(name.to_owned()) {
            return Err(Error::DuplicatePackage {
                name: name.to_owned(),
            });
        }
    }
    Ok(Request {
        method: "PATCH",
        path: format!("{}?updateMask=applications", policy.as_str()),
        body: pretty(&json!({ "applications": applications }))?,
    })
}

/// What an enrollment token is created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentTokenRequest {
    /// The policy the device gets on enrollment.
    pub policy: PolicyName,
    /// Lifetime in seconds, [`MIN_TOKEN_SECONDS`] to [`MAX_TOKEN_SECONDS`].
    pub duration_seconds: u64,
    /// Whether only one device may enroll with the token.
    pub one_time_only: bool,
    /// Data the API hands back in the device's `enrollmentTokenData`, at
    /// most [`MAX_ADDITIONAL_DATA_CHARS`]; never a secret.
    pub additional_data: Option<String>,
}

/// `enterprises.enrollmentTokens.create` under the policy's enterprise.
pub fn enrollment_token(request: &EnrollmentTokenRequest) -> Result<Request, Error> {
    let seconds = request.duration_seconds;
    if !(MIN_TOKEN_SECONDS..=MAX_TOKEN_SECONDS).contains(&seconds) {
        return Err(Error::InvalidDuration {
            seconds,
            min: MIN_TOKEN_SECONDS,
            max: MAX_TOKEN_SECONDS,
        });
    }
    let mut body = json!({
        "policyName": request.policy.as_str(),
        "duration": format!("{seconds}s"),
        "oneTimeOnly": request.one_time_only,
    });
    if let Some(data) = &request.additional_data {
        let chars = data.chars().count();
        if chars > MAX_ADDITIONAL_DATA_CHARS {
            return Err(Error::AdditionalDataTooLong {
                chars,
                max: MAX_ADDITIONAL_DATA_CHARS,
            });
        }
        body["additionalData"] = json!(data);
    }
    Ok(Request {
        method: "POST",
        path: format!("{}/enrollmentTokens", request.policy.enterprise().as_str()),
        body: pretty(&body)?,
    })
}

/// `enterprises.devices.issueCommand` clearing the data of `packages` on
/// `device`. The API answers with an Operation; its outcome arrives later
/// (see [`crate::results::android_operation`]).
pub fn clear_app_data(device: &DeviceName, packages: &[PackageName]) -> Result<Request, Error> {
    if packages.is_empty() || packages.len() > MAX_CLEAR_PACKAGES {
        return Err(Error::BadPackageCount {
            count: packages.len(),
            max: MAX_CLEAR_PACKAGES,
        });
    }
    let names: Vec<&str> = packages.iter().map(PackageName::as_str).collect();
    Ok(Request {
        method: "POST",
        path: format!("{}:issueCommand", device.as_str()),
        body: pretty(&json!({
            "type": "CLEAR_APP_DATA",
            "clearAppsDataParams": { "packageNames": names },
        }))?,
    })
}

/// Checks `name` is `enterprises/{id}` followed, for each of `collections`,
/// by `/{collection}/{id}`.
fn resource(
    name: &str,
    kind: &'static str,
    pattern: &'static str,
    collections: &[&str],
) -> Result<(), Error> {
    let id_ok = |id: &str| {
        !id.is_empty()
            && id.len() <= MAX_RESOURCE_ID_CHARS
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    };
    let parts: Vec<&str> = name.split('/').collect();
    let ok = parts.len() == 2 + 2 * collections.len()
        && parts[0] == "enterprises"
        && id_ok(parts[1])
        && collections
            .iter()
            .enumerate()
            .all(|(i, c)| parts[2 + 2 * i] == *c && id_ok(parts[3 + 2 * i]));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidResourceName {
            kind,
            name: name.to_owned(),
            pattern,
        })
    }
}

/// `enterprises/{id}` of a checked child resource name.
fn parent(name: &str) -> String {
    name.split('/').take(2).collect::<Vec<_>>().join("/")
}

fn pretty(value: &J) -> Result<String, Error> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| Error::Encode {
            detail: e.to_string(),
        })
}
