//! The one integration-test binary of `kontor-managed-config`.
//!
//! Golden files live in `fixtures/managed-config/` at the workspace root;
//! `KONTOR_BLESS=1 cargo test -p kontor-managed-config` rewrites them. The
//! schemas the outputs are checked against are read from `../shared/schemas`
//! beside the workspace; a test whose schema is absent says so and passes.

mod android_lint;
mod appconfig_xsd;
mod apple_schema;
mod bad_input;
mod decode;
mod golden;
mod roundtrip;

use std::path::{Path, PathBuf};

use kontor_managed_config::{BundleId, Policy, decode as dec};

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture(name: &str) -> PathBuf {
    root().join("fixtures/managed-config").join(name)
}

/// A schema under `../shared/schemas`, or `None` after printing why the
/// calling test skips.
fn schema(relative: &str) -> Option<PathBuf> {
    let path = root().join("../shared/schemas").join(relative);
    if path.exists() {
        Some(path)
    } else {
        println!("skipped: {} not found", path.display());
        None
    }
}

/// The policy of `fixtures/managed-config/policy.toml`.
fn example_policy() -> Policy {
    let text = std::fs::read_to_string(fixture("policy.toml")).expect("fixture policy.toml");
    let decoded = dec::toml(&text).expect("policy.toml decodes");
    assert!(decoded.unknown.is_empty() && decoded.placeholders.is_empty());
    decoded.policy
}

fn app() -> BundleId {
    BundleId::default()
}
