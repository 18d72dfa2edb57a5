//! `kontor config ...`: the managed-configuration schema for an EMM
//! console, a policy rendered in an EMM's format, and a check of any file a
//! device would receive.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use kontor_managed_config::model::Lang;
use kontor_managed_config::{BundleId, Decoded, amapi, android, appconfig, apple, decode};

/// `kontor config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the managed-configuration schema an EMM console imports.
    Schema {
        /// Which schema.
        #[arg(long, value_enum)]
        format: SchemaFormat,
        /// The app's bundle id or package name.
        #[arg(long, default_value = BundleId::DEFAULT)]
        app: String,
        /// For `android`: write `res/xml/app_restrictions.xml` and the
        /// English and German `strings.xml` under this folder instead of
        /// printing the restrictions.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Render a policy file (TOML or JSON) in an EMM's format.
    Render {
        /// The output format.
        #[arg(long, value_enum)]
        format: RenderFormat,
        /// The policy file.
        #[arg(long = "in")]
        input: PathBuf,
        /// The app's bundle id or package name (for `amapi-json`).
        #[arg(long, default_value = BundleId::DEFAULT)]
        app: String,
    },
    /// Check a policy file or a managed configuration as a device receives
    /// it (Apple plist, Android bundle JSON, JSON or TOML); exits non-zero
    /// with the key and the rule when it is not valid.
    Check {
        /// The file.
        file: PathBuf,
    },
}

/// Schemas for EMM consoles.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SchemaFormat {
    /// Android `res/xml/app_restrictions.xml`.
    Android,
    /// The AppConfig specfile XML.
    Appconfig,
    /// Android Management API managed properties (JSON).
    Amapi,
}

/// Concrete configurations.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RenderFormat {
    /// Apple's managed app `Configuration` dictionary (XML plist).
    ApplePlist,
    /// An Android Management API `applications[]` entry (JSON).
    AmapiJson,
    /// An Android restrictions bundle as JSON.
    AndroidBundleJson,
}

/// Runs a `kontor config` subcommand.
pub fn run(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Schema { format, app, out } => schema(format, &app, out.as_deref()),
        ConfigCommand::Render { format, input, app } => render(format, &input, &app),
        ConfigCommand::Check { file } => check(&file),
    }
}

fn app_id(app: &str) -> anyhow::Result<BundleId> {
    BundleId::parse(app).with_context(|| "invalid --app")
}

fn schema(format: SchemaFormat, app: &str, out: Option<&Path>) -> anyhow::Result<ExitCode> {
    let app = app_id(app)?;
    match (format, out) {
        (SchemaFormat::Android, Some(dir)) => {
            let files = [
                ("res/xml/app_restrictions.xml", android::restrictions_xml()?),
                ("res/values/strings.xml", android::strings_xml(Lang::En)?),
                ("res/values-de/strings.xml", android::strings_xml(Lang::De)?),
            ];
            for (path, text) in files {
                let path = dir.join(path);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("cannot create {}", parent.display()))?;
                }
                std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                println!("wrote {}", path.display());
            }
        }
        (SchemaFormat::Android, None) => print!("{}", android::restrictions_xml()?),
        (SchemaFormat::Appconfig, _) => print!("{}", appconfig::specfile(&app)?),
        (SchemaFormat::Amapi, _) => println!("{}", amapi::managed_properties()?),
    }
    Ok(ExitCode::SUCCESS)
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() > kontor_managed_config::MAX_INPUT_BYTES {
        bail!(
            "{} is larger than {} bytes",
            path.display(),
            kontor_managed_config::MAX_INPUT_BYTES
        );
    }
    Ok(bytes)
}

/// A policy file: TOML by extension, else JSON.
fn policy_file(path: &Path) -> anyhow::Result<Decoded> {
    let bytes = read(path)?;
    let decoded = if path.extension().is_some_and(|e| e == "toml") {
        let text = std::str::from_utf8(&bytes)
            .with_context(|| format!("{} is not UTF-8", path.display()))?;
        decode::toml(text)
    } else {
        decode::json(&bytes)
    };
    decoded.with_context(|| format!("{} is not a valid policy", path.display()))
}

fn report(decoded: &Decoded) {
    for key in decoded.unknown.keys() {
        eprintln!("note: unknown key `{key}` kept but not used by this version");
    }
    for placeholder in &decoded.placeholders {
        eprintln!(
            "note: key `{}` holds the unsubstituted EMM variable `{}`; the EMM fills it per device",
            placeholder.key, placeholder.token
        );
    }
}

fn render(format: RenderFormat, input: &Path, app: &str) -> anyhow::Result<ExitCode> {
    let decoded = policy_file(input)?;
    report(&decoded);
    let policy = &decoded.policy;
    match format {
        RenderFormat::ApplePlist => print!("{}", apple::configuration_plist(policy)?),
        RenderFormat::AmapiJson => {
            println!("{}", amapi::application_policy(policy, &app_id(app)?)?)
        }
        RenderFormat::AndroidBundleJson => print!("{}", android::bundle_json(policy)?),
    }
    Ok(ExitCode::SUCCESS)
}

fn check(file: &Path) -> anyhow::Result<ExitCode> {
    let bytes = read(file)?;
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let looks_like_plist =
        bytes.starts_with(b"bplist") || bytes.windows(6).take(512).any(|w| w == b"<plist");
    let result = match ext.as_str() {
        "toml" => std::str::from_utf8(&bytes)
            .map_err(|_| anyhow::anyhow!("{} is not UTF-8", file.display()))
            .and_then(|text| decode::toml(text).map_err(anyhow::Error::from)),
        _ if ext == "plist" || looks_like_plist => {
            decode::apple_plist(&bytes).map_err(anyhow::Error::from)
        }
        _ => decode::json(&bytes).map_err(anyhow::Error::from),
    };
    match result {
        Ok(decoded) => {
            report(&decoded);
            println!(
                "{}: valid policy for {} (organisation {})",
                file.display(),
                decoded.policy.server_url.as_str(),
                decoded.policy.organisation_id.as_str()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("{}: invalid: {e:#}", file.display());
            Ok(ExitCode::FAILURE)
        }
    }
}
