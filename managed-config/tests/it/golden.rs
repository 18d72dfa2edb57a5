//! Every encoder's output against its golden file.

use kontor_managed_config::model::Lang;
use kontor_managed_config::{amapi, android, appconfig, apple};

use crate::{app, example_policy, fixture};

/// Compares `actual` with the golden file `expected` (relative to
/// `fixtures/managed-config`), or rewrites the file when `KONTOR_BLESS=1`.
fn check(actual: &str, expected: &str) {
    let path = fixture(expected);
    if std::env::var_os("KONTOR_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().expect("fixture has a parent")).expect("mkdir");
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let golden = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with KONTOR_BLESS=1 to create it",
            path.display()
        )
    });
    assert!(
        golden == actual,
        "{} differs from the encoder output; review and run with KONTOR_BLESS=1 to update.\n\
         --- actual ---\n{actual}",
        path.display()
    );
}

#[test]
fn android_restrictions_schema() {
    check(
        &android::restrictions_xml().unwrap(),
        "android/res/xml/app_restrictions.xml",
    );
    check(
        &android::strings_xml(Lang::En).unwrap(),
        "android/res/values/strings.xml",
    );
    check(
        &android::strings_xml(Lang::De).unwrap(),
        "android/res/values-de/strings.xml",
    );
}

#[test]
fn android_bundle_json() {
    check(
        &android::bundle_json(&example_policy()).unwrap(),
        "android/bundle.json",
    );
}

#[test]
fn amapi_schema_and_policy() {
    check(
        &amapi::managed_properties().unwrap(),
        "amapi/managed_properties.json",
    );
    check(
        &amapi::application_policy(&example_policy(), &app()).unwrap(),
        "amapi/policy.json",
    );
}

#[test]
fn apple_plists() {
    let policy = example_policy();
    check(
        &apple::configuration_plist(&policy).unwrap(),
        "apple/configuration.plist",
    );
    check(
        &apple::install_application(&policy, &app()).unwrap(),
        "apple/install_application.plist",
    );
    check(
        &apple::settings_command(&policy, &app()).unwrap(),
        "apple/settings.plist",
    );
}

#[test]
fn appconfig_specfile() {
    check(
        &appconfig::specfile(&app()).unwrap(),
        "appconfig/specfile.xml",
    );
}
