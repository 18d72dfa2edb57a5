//! Every builder's output against its golden file in
//! `fixtures/mdm-connector/` (`KONTOR_BLESS=1` rewrites them), the contents
//! that matter checked directly, and every builder's refusal of bad input.
//!
//! The helpers at the top (`fixture`, `example_policy`, the example
//! identifiers) are shared with `apple_schema` and `results`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kontor_managed_config::{BundleId, Policy, decode};
use kontor_mdm_connector::android::{
    self, AppConfiguration, ConfigurationTemplate, DeviceName, EnrollmentTokenRequest, InstallType,
    PackageName, PolicyName,
};
use kontor_mdm_connector::apple::{
    self, CommandUuid, ConfigDelivery, DataUrl, DeclarationId, Install, InstallApplication,
    LicenseAssignment, ManagedApp, ManagementFlags, StoreApp,
};
use plist::{Dictionary, Value};

/// The workspace root.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A file under `fixtures/mdm-connector/`.
pub(crate) fn fixture(name: &str) -> PathBuf {
    root().join("fixtures/mdm-connector").join(name)
}

/// The policy of managed-config's `fixtures/managed-config/policy.toml`, so
/// both crates' golden files describe the same organisation.
pub(crate) fn example_policy() -> Policy {
    let path = root().join("fixtures/managed-config/policy.toml");
    let text = std::fs::read_to_string(path).expect("fixture policy.toml");
    let decoded = decode::toml(&text).expect("policy.toml decodes");
    assert!(decoded.unknown.is_empty() && decoded.placeholders.is_empty());
    decoded.policy
}

pub(crate) const UUID: &str = "0F3C4B1E-6A2D-4C1B-9E57-3D0A8B5C7E21";
pub(crate) const STORE_ID: u64 = 6_480_000_001;

pub(crate) fn uuid() -> CommandUuid {
    CommandUuid::parse(UUID).unwrap()
}

pub(crate) fn app() -> BundleId {
    BundleId::default()
}

pub(crate) fn app_id() -> DeclarationId {
    DeclarationId::parse("com.kontor.messenger.app").unwrap()
}

pub(crate) fn asset_id() -> DeclarationId {
    DeclarationId::parse("com.kontor.messenger.config").unwrap()
}

pub(crate) fn data_url() -> DataUrl {
    DataUrl::parse("https://kontor.example.org/mdm/assets/com.kontor.messenger.config.plist")
        .unwrap()
}

/// A managed app installed from the App Store by id, its licence on the
/// device, delivered the way the Kontor app reads it.
pub(crate) fn managed_app(delivery: ConfigDelivery) -> ManagedApp {
    ManagedApp {
        app: StoreApp::store_id(STORE_ID).unwrap(),
        install: Install::Required,
        license: LicenseAssignment::Device,
        config_delivery: delivery,
    }
}

/// InstallApplication by store id with every option on.
pub(crate) fn install_all_options() -> InstallApplication {
    InstallApplication {
        app: StoreApp::store_id(STORE_ID).unwrap(),
        management_flags: ManagementFlags {
            remove_with_mdm_profile: true,
            prevent_backup: true,
        },
        vpp_license: true,
        take_over_if_installed: true,
    }
}

/// Every Apple command the builders emit for the example, with its golden
/// file name.
pub(crate) fn apple_commands() -> Vec<(&'static str, String)> {
    let policy = example_policy();
    vec![
        (
            "apple/install_application.plist",
            apple::install_application(
                &uuid(),
                &InstallApplication::new(StoreApp::BundleId(app())),
                &policy,
            )
            .unwrap(),
        ),
        (
            "apple/install_application_store_id.plist",
            apple::install_application(&uuid(), &install_all_options(), &policy).unwrap(),
        ),
        (
            "apple/settings.plist",
            apple::settings_app_configuration(&uuid(), &app(), Some(&policy)).unwrap(),
        ),
        (
            "apple/settings_remove_configuration.plist",
            apple::settings_app_configuration(&uuid(), &app(), None).unwrap(),
        ),
        (
            "apple/managed_application_configuration.plist",
            apple::managed_application_configuration(&uuid(), &[app()]).unwrap(),
        ),
        (
            "apple/managed_application_feedback.plist",
            apple::managed_application_feedback(&uuid(), &[app()], true).unwrap(),
        ),
        (
            "apple/remove_application.plist",
            apple::remove_application(&uuid(), &app()).unwrap(),
        ),
    ]
}

/// Every declaration the builders emit for the example, with its golden
/// file name.
pub(crate) fn apple_declarations() -> Vec<(&'static str, String)> {
    let policy = example_policy();
    let by_bundle = ManagedApp {
        app: StoreApp::BundleId(app()),
        install: Install::Optional,
        license: LicenseAssignment::User,
        config_delivery: ConfigDelivery::ManagedAppFramework,
    };
    vec![
        (
            "apple/declarations/app_managed.json",
            apple::app_managed_declaration(
                &app_id(),
                &managed_app(ConfigDelivery::Legacy),
                &asset_id(),
            )
            .unwrap(),
        ),
        (
            "apple/declarations/app_managed_bundle_id.json",
            apple::app_managed_declaration(&app_id(), &by_bundle, &asset_id()).unwrap(),
        ),
        (
            "apple/declarations/app_config_asset.json",
            apple::app_config_asset(&asset_id(), &data_url(), &policy)
                .unwrap()
                .declaration,
        ),
    ]
}

/// Compares `actual` with the golden file `expected`, or rewrites the file
/// when `KONTOR_BLESS=1`.
pub(crate) fn check_golden(actual: &str, expected: &str) {
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
        "{} differs from the builder output; review and run with KONTOR_BLESS=1 to update.\n\
         --- actual ---\n{actual}",
        path.display()
    );
}

pub(crate) fn plist_dict(xml: &str) -> Dictionary {
    match Value::from_reader_xml(xml.as_bytes()).expect("output is a plist") {
        Value::Dictionary(d) => d,
        other => panic!("top level is not a dictionary: {other:?}"),
    }
}

/// The `Command` dictionary of an enqueued command, after checking the
/// envelope holds exactly `Command` and `CommandUUID`.
fn command(xml: &str) -> Dictionary {
    let top = plist_dict(xml);
    let keys: Vec<&str> = top.keys().map(String::as_str).collect();
    assert_eq!(keys, ["Command", "CommandUUID"]);
    assert_eq!(top["CommandUUID"].as_string(), Some(UUID));
    top["Command"]
        .as_dictionary()
        .expect("Command dict")
        .clone()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("output is JSON")
}

fn package() -> PackageName {
    PackageName::parse("com.kontor.messenger").unwrap()
}

fn policy_name() -> PolicyName {
    PolicyName::parse("enterprises/LC01example/policies/kontor-default").unwrap()
}

fn device_name() -> DeviceName {
    DeviceName::parse("enterprises/LC01example/devices/3a1f9c0d2b7e4c55").unwrap()
}

fn template() -> ConfigurationTemplate {
    ConfigurationTemplate {
        template_id: "kontor-template-1".into(),
        variables: BTreeMap::from([("$user$".to_owned(), "anna.schmidt".to_owned())]),
    }
}

// ---- golden files ----------------------------------------------------------

#[test]
fn apple_commands_golden() {
    for (name, output) in apple_commands() {
        check_golden(&output, name);
    }
}

#[test]
fn apple_declarations_golden() {
    for (name, output) in apple_declarations() {
        check_golden(&output, name);
    }
    let asset = apple::app_config_asset(&asset_id(), &data_url(), &example_policy()).unwrap();
    check_golden(&asset.document, "apple/declarations/app_config.plist");
}

#[test]
fn android_payloads_golden() {
    let policy = example_policy();
    let with_policy = android::application(
        &package(),
        InstallType::ForceInstalled,
        AppConfiguration::Policy(&policy),
    )
    .unwrap();
    let with_template = android::application(
        &package(),
        InstallType::Available,
        AppConfiguration::Template(&template()),
    )
    .unwrap();
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap() + "\n";
    check_golden(&pretty(&with_policy), "android/application.json");
    check_golden(&pretty(&with_template), "android/application_template.json");

    let patch = android::policy_patch(&policy_name(), vec![with_policy]).unwrap();
    check_golden(&patch.body, "android/policy_patch.json");

    let token = android::enrollment_token(&EnrollmentTokenRequest {
        policy: policy_name(),
        duration_seconds: 7 * 24 * 3600,
        one_time_only: true,
        additional_data: Some("kontor-org=example-gmbh".into()),
    })
    .unwrap();
    check_golden(&token.body, "android/enrollment_token.json");

    let clear = android::clear_app_data(&device_name(), &[package()]).unwrap();
    check_golden(&clear.body, "android/clear_app_data.json");
}

// ---- contents ---------------------------------------------------------------

#[test]
fn install_application_carries_managed_configs_configuration_and_flags() {
    let policy = example_policy();
    let expected = kontor_managed_config::apple::configuration(&policy).unwrap();

    let by_bundle = command(
        &apple::install_application(
            &uuid(),
            &InstallApplication::new(StoreApp::BundleId(app())),
            &policy,
        )
        .unwrap(),
    );
    assert_eq!(
        by_bundle["RequestType"].as_string(),
        Some("InstallApplication")
    );
    assert_eq!(by_bundle["Identifier"].as_string(), Some(app().as_str()));
    assert_eq!(by_bundle["ManagementFlags"].as_signed_integer(), Some(1));
    assert_eq!(by_bundle["Configuration"].as_dictionary(), Some(&expected));
    assert!(!by_bundle.contains_key("Options"));
    assert!(!by_bundle.contains_key("ChangeManagementState"));
    assert!(!by_bundle.contains_key("iTunesStoreID"));

    let all =
        command(&apple::install_application(&uuid(), &install_all_options(), &policy).unwrap());
    assert_eq!(
        all["iTunesStoreID"].as_unsigned_integer(),
        Some(STORE_ID),
        "store id"
    );
    assert!(!all.contains_key("Identifier"));
    assert_eq!(all["ManagementFlags"].as_signed_integer(), Some(5));
    assert_eq!(
        all["Options"].as_dictionary().unwrap()["PurchaseMethod"].as_signed_integer(),
        Some(1)
    );
    assert_eq!(all["ChangeManagementState"].as_string(), Some("Managed"));
    assert_eq!(all["Configuration"].as_dictionary(), Some(&expected));
}

#[test]
fn management_flags_values() {
    let f = |remove, backup| {
        ManagementFlags {
            remove_with_mdm_profile: remove,
            prevent_backup: backup,
        }
        .value()
    };
    assert_eq!(f(false, false), None);
    assert_eq!(f(true, false), Some(1));
    assert_eq!(f(false, true), Some(4));
    assert_eq!(f(true, true), Some(5));
}

/// No flags: the key is left out, since 0 is not in Apple's rangelist.
#[test]
fn install_application_without_flags_omits_management_flags() {
    let mut install = InstallApplication::new(StoreApp::BundleId(app()));
    install.management_flags = ManagementFlags::default();
    let cmd = command(&apple::install_application(&uuid(), &install, &example_policy()).unwrap());
    assert!(!cmd.contains_key("ManagementFlags"));
}

#[test]
fn settings_carries_the_same_configuration_or_none_to_remove_it() {
    let policy = example_policy();
    let cmd = command(&apple::settings_app_configuration(&uuid(), &app(), Some(&policy)).unwrap());
    assert_eq!(cmd["RequestType"].as_string(), Some("Settings"));
    let items = cmd["Settings"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    let item = items[0].as_dictionary().unwrap();
    assert_eq!(item["Item"].as_string(), Some("ApplicationConfiguration"));
    assert_eq!(item["Identifier"].as_string(), Some(app().as_str()));
    assert_eq!(
        item["Configuration"].as_dictionary(),
        Some(&kontor_managed_config::apple::configuration(&policy).unwrap())
    );

    let removal = command(&apple::settings_app_configuration(&uuid(), &app(), None).unwrap());
    let item = removal["Settings"].as_array().unwrap()[0]
        .as_dictionary()
        .unwrap()
        .clone();
    assert!(!item.contains_key("Configuration"));
}

#[test]
fn queries_and_removal_name_the_apps() {
    let other = BundleId::parse("com.example.other").unwrap();
    let q = command(
        &apple::managed_application_configuration(&uuid(), &[app(), other.clone()]).unwrap(),
    );
    assert_eq!(
        q["RequestType"].as_string(),
        Some("ManagedApplicationConfiguration")
    );
    let ids: Vec<_> = q["Identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_string().unwrap())
        .collect();
    assert_eq!(ids, [app().as_str(), other.as_str()]);

    let f = command(&apple::managed_application_feedback(&uuid(), &[app()], false).unwrap());
    assert_eq!(
        f["RequestType"].as_string(),
        Some("ManagedApplicationFeedback")
    );
    assert_eq!(f["DeleteFeedback"].as_boolean(), Some(false));

    let r = command(&apple::remove_application(&uuid(), &app()).unwrap());
    assert_eq!(r["RequestType"].as_string(), Some("RemoveApplication"));
    assert_eq!(r["Identifier"].as_string(), Some(app().as_str()));
}

/// The asset's Size and hash are of exactly the document served, the
/// document is managed-config's configuration plist, and the ServerToken
/// follows the payload.
#[test]
fn config_asset_describes_its_document() {
    use sha2::{Digest, Sha256};
    let policy = example_policy();
    let asset = apple::app_config_asset(&asset_id(), &data_url(), &policy).unwrap();
    assert_eq!(
        asset.document,
        kontor_managed_config::apple::configuration_plist(&policy).unwrap()
    );
    let d = json(&asset.declaration);
    assert_eq!(d["Type"], "com.apple.asset.data");
    assert_eq!(d["Identifier"], asset_id().as_str());
    let reference = &d["Payload"]["Reference"];
    assert_eq!(reference["DataURL"], data_url().as_str());
    assert_eq!(reference["ContentType"], apple::CONFIG_CONTENT_TYPE);
    assert_eq!(reference["Size"], asset.document.len());
    assert_eq!(
        reference["Hash-SHA-256"],
        hex::encode(Sha256::digest(asset.document.as_bytes()))
    );
    assert_eq!(d["Payload"]["Authentication"]["Type"], "MDM");
    let token = d["ServerToken"].as_str().unwrap();
    assert_eq!(token.len(), 64);

    let mut changed = policy.clone();
    changed.offline_grace_hours += 1;
    let other = json(
        &apple::app_config_asset(&asset_id(), &data_url(), &changed)
            .unwrap()
            .declaration,
    );
    assert_ne!(
        other["ServerToken"], d["ServerToken"],
        "token follows content"
    );
}

/// The document holds the enrollment token; `Debug` must not print it.
#[test]
fn config_asset_debug_leaves_the_secret_out() {
    let policy = example_policy();
    let token = policy
        .enrollment_token
        .as_ref()
        .unwrap()
        .expose()
        .to_owned();
    let asset = apple::app_config_asset(&asset_id(), &data_url(), &policy).unwrap();
    assert!(asset.document.contains(&token));
    assert!(!format!("{asset:?}").contains(&token));
}

#[test]
fn app_managed_references_the_asset_the_chosen_way() {
    let legacy = json(
        &apple::app_managed_declaration(
            &app_id(),
            &managed_app(ConfigDelivery::Legacy),
            &asset_id(),
        )
        .unwrap(),
    );
    assert_eq!(legacy["Type"], "com.apple.configuration.app.managed");
    let p = &legacy["Payload"];
    assert_eq!(p["AppStoreID"], STORE_ID.to_string());
    assert!(p.get("BundleID").is_none());
    assert_eq!(p["InstallBehavior"]["Install"], "Required");
    assert_eq!(p["InstallBehavior"]["License"]["Assignment"], "Device");
    assert_eq!(p["LegacyAppConfigAssetReference"], asset_id().as_str());
    assert!(p.get("AppConfig").is_none());

    let framework = json(
        &apple::app_managed_declaration(
            &app_id(),
            &managed_app(ConfigDelivery::ManagedAppFramework),
            &asset_id(),
        )
        .unwrap(),
    );
    let p = &framework["Payload"];
    assert_eq!(p["AppConfig"]["DataAssetReference"], asset_id().as_str());
    assert!(p.get("LegacyAppConfigAssetReference").is_none());
    assert_ne!(framework["ServerToken"], legacy["ServerToken"]);
}

#[test]
fn android_application_uses_managed_configs_bundle() {
    let policy = example_policy();
    let app = android::application(
        &package(),
        InstallType::ForceInstalled,
        AppConfiguration::Policy(&policy),
    )
    .unwrap();
    assert_eq!(app["packageName"], "com.kontor.messenger");
    assert_eq!(app["installType"], "FORCE_INSTALLED");
    let bundle: serde_json::Value =
        serde_json::from_str(&kontor_managed_config::android::bundle_json(&policy).unwrap())
            .unwrap();
    assert_eq!(app["managedConfiguration"], bundle);
    // The same object managed-config's own AMAPI fragment carries.
    let fragment: serde_json::Value = serde_json::from_str(
        &kontor_managed_config::amapi::application_policy(&policy, &app_bundle()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        app["managedConfiguration"],
        fragment["applications"][0]["managedConfiguration"]
    );
    assert!(app.get("managedConfigurationTemplate").is_none());

    let templated = android::application(
        &package(),
        InstallType::Available,
        AppConfiguration::Template(&template()),
    )
    .unwrap();
    assert!(templated.get("managedConfiguration").is_none());
    assert_eq!(
        templated["managedConfigurationTemplate"]["templateId"],
        "kontor-template-1"
    );
    assert_eq!(
        templated["managedConfigurationTemplate"]["configurationVariables"]["$user$"],
        "anna.schmidt"
    );

    let bare =
        android::application(&package(), InstallType::Blocked, AppConfiguration::None).unwrap();
    assert_eq!(
        bare,
        serde_json::json!({"packageName": "com.kontor.messenger", "installType": "BLOCKED"})
    );
}

fn app_bundle() -> BundleId {
    BundleId::parse("com.kontor.messenger").unwrap()
}

#[test]
fn android_requests_have_method_path_and_body() {
    let app = android::application(
        &package(),
        InstallType::ForceInstalled,
        AppConfiguration::None,
    )
    .unwrap();
    let patch = android::policy_patch(&policy_name(), vec![app.clone()]).unwrap();
    assert_eq!(patch.method, "PATCH");
    assert_eq!(
        patch.path,
        "enterprises/LC01example/policies/kontor-default?updateMask=applications"
    );
    assert_eq!(
        json(&patch.body),
        serde_json::json!({"applications": [app]})
    );

    let token = android::enrollment_token(&EnrollmentTokenRequest {
        policy: policy_name(),
        duration_seconds: 3600,
        one_time_only: false,
        additional_data: None,
    })
    .unwrap();
    assert_eq!(token.method, "POST");
    assert_eq!(token.path, "enterprises/LC01example/enrollmentTokens");
    assert_eq!(
        json(&token.body),
        serde_json::json!({
            "policyName": "enterprises/LC01example/policies/kontor-default",
            "duration": "3600s",
            "oneTimeOnly": false,
        })
    );

    let clear = android::clear_app_data(&device_name(), &[package()]).unwrap();
    assert_eq!(clear.method, "POST");
    assert_eq!(
        clear.path,
        "enterprises/LC01example/devices/3a1f9c0d2b7e4c55:issueCommand"
    );
    assert_eq!(
        json(&clear.body),
        serde_json::json!({
            "type": "CLEAR_APP_DATA",
            "clearAppsDataParams": {"packageNames": ["com.kontor.messenger"]},
        })
    );
    assert_eq!(
        device_name().enterprise().as_str(),
        "enterprises/LC01example"
    );
}

// ---- refusals ---------------------------------------------------------------

/// Data-driven: `result` is an error whose message is `expected`.
fn refused<T: std::fmt::Debug, E: std::fmt::Display>(result: Result<T, E>, expected: &str) {
    match result {
        Ok(v) => panic!("accepted, expected `{expected}`: {v:?}"),
        Err(e) => assert_eq!(e.to_string(), expected),
    }
}

#[test]
fn apple_ids_are_checked() {
    for good in ["a", "0F3C4B1E-6A2D-4C1B-9E57-3D0A8B5C7E21", &"x".repeat(64)] {
        assert!(CommandUuid::parse(good).is_ok(), "{good}");
    }
    for bad in ["", "has space", "under_score", "ü", &"x".repeat(65), "a/b"] {
        refused(
            CommandUuid::parse(bad),
            &format!("invalid command uuid `{bad}`: use 1 to 64 letters, digits and hyphens"),
        );
    }
    assert!(DeclarationId::parse("com.kontor.app_1-x").is_ok());
    for bad in ["", "a b", "a/b", &"x".repeat(65)] {
        refused(
            DeclarationId::parse(bad),
            &format!(
                "invalid declaration identifier `{bad}`: use 1 to 64 letters, digits, dots, hyphens and underscores"
            ),
        );
    }
    refused(
        StoreApp::store_id(0),
        "invalid app store id 0: app store ids are positive",
    );
    for bad in [
        "http://kontor.example.org/a",
        "https://",
        "https:///path",
        "https://host/with space",
        "ftp://x",
        &format!("https://h/{}", "a".repeat(2048)),
    ] {
        refused(
            DataUrl::parse(bad),
            &format!("invalid data url `{bad}`: use an https:// url of at most 2048 characters"),
        );
    }
}

#[test]
fn apple_builders_refuse_bad_input() {
    refused(
        apple::managed_application_configuration(&uuid(), &[]),
        "ManagedApplicationConfiguration needs at least one app identifier",
    );
    refused(
        apple::managed_application_feedback(&uuid(), &[], true),
        "ManagedApplicationFeedback needs at least one app identifier",
    );
    let many = vec![app(); apple::MAX_QUERY_APPS + 1];
    refused(
        apple::managed_application_configuration(&uuid(), &many),
        "ManagedApplicationConfiguration names 101 apps, more than the limit of 100",
    );
    let mut bad_policy = example_policy();
    bad_policy.pin.min_length = 2;
    let expected = "policy: key `pin_min_length`: must be between 4 and 16, got 2";
    refused(
        apple::install_application(
            &uuid(),
            &InstallApplication::new(StoreApp::BundleId(app())),
            &bad_policy,
        ),
        expected,
    );
    refused(
        apple::settings_app_configuration(&uuid(), &app(), Some(&bad_policy)),
        expected,
    );
    refused(
        apple::app_config_asset(&asset_id(), &data_url(), &bad_policy),
        expected,
    );
}

#[test]
fn android_names_are_checked() {
    for good in ["com.kontor.messenger", "a.b", "com.example_app.x1", "A.B"] {
        assert!(PackageName::parse(good).is_ok(), "{good}");
    }
    for bad in [
        "", "single", "com..x", ".com.x", "com.1x", "com.x-y", "com.x.", "com.ü",
    ] {
        refused(
            PackageName::parse(bad),
            &format!(
                "invalid package name `{bad}`: use two or more dot-separated parts, each a letter followed by letters, digits or underscores"
            ),
        );
    }
    refused(
        PackageName::parse(&format!("a.{}", "b".repeat(254))),
        &format!(
            "invalid package name `a.{}`: use two or more dot-separated parts, each a letter followed by letters, digits or underscores",
            "b".repeat(254)
        ),
    );
    for bad in [
        "enterprises/LC01/devices",
        "enterprises/LC01/policies/x",
        "enterprise/LC01/devices/x",
        "enterprises//devices/x",
        "enterprises/LC01/devices/x/y",
        "enterprises/LC 01/devices/x",
        "enterprises/LC01/devices/x?y",
    ] {
        refused(
            DeviceName::parse(bad),
            &format!(
                "invalid device name `{bad}`: expected `enterprises/{{id}}/devices/{{id}}` with ids of letters, digits, `-` and `_`"
            ),
        );
    }
    refused(
        PolicyName::parse("enterprises/LC01/devices/x"),
        "invalid policy name `enterprises/LC01/devices/x`: expected `enterprises/{id}/policies/{id}` with ids of letters, digits, `-` and `_`",
    );
    refused(
        android::EnterpriseName::parse("enterprises/LC01/x"),
        "invalid enterprise name `enterprises/LC01/x`: expected `enterprises/{id}` with ids of letters, digits, `-` and `_`",
    );
    assert!(android::EnterpriseName::parse("enterprises/LC01example").is_ok());
}

#[test]
fn android_builders_refuse_bad_input() {
    let token = |seconds, data: Option<String>| {
        android::enrollment_token(&EnrollmentTokenRequest {
            policy: policy_name(),
            duration_seconds: seconds,
            one_time_only: true,
            additional_data: data,
        })
    };
    refused(
        token(59, None),
        "enrollment token duration must be between 60 and 7776000 seconds, got 59",
    );
    refused(
        token(android::MAX_TOKEN_SECONDS + 1, None),
        "enrollment token duration must be between 60 and 7776000 seconds, got 7776001",
    );
    assert!(
        token(60, Some("é".repeat(1024))).is_ok(),
        "limit counts characters"
    );
    refused(
        token(60, Some("x".repeat(1025))),
        "additional data is 1025 characters, more than the limit of 1024",
    );
    refused(
        android::clear_app_data(&device_name(), &[]),
        "clear app data needs 1 to 100 package names, got 0",
    );
    refused(
        android::clear_app_data(&device_name(), &vec![package(); 101]),
        "clear app data needs 1 to 100 package names, got 101",
    );
    let app =
        android::application(&package(), InstallType::Available, AppConfiguration::None).unwrap();
    refused(
        android::policy_patch(&policy_name(), vec![app.clone(), app]),
        "package `com.kontor.messenger` appears more than once in the applications",
    );
    let mut bad = template();
    bad.template_id = "has space".into();
    refused(
        android::application(
            &package(),
            InstallType::Available,
            AppConfiguration::Template(&bad),
        ),
        "invalid managed configuration template id `has space`",
    );
    let mut bad_policy = example_policy();
    bad_policy.offline_grace_hours = 0;
    refused(
        android::application(
            &package(),
            InstallType::ForceInstalled,
            AppConfiguration::Policy(&bad_policy),
        ),
        "policy: key `offline_grace_hours`: must be between 1 and 720, got 0",
    );
}
