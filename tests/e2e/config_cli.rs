//! `kontor config` as an EMM administrator uses it.

use crate::{kontor, root, stdout};

const POLICY: &str = "fixtures/managed-config/policy.toml";

#[test]
fn render_gives_the_golden_files_for_every_format() {
    for (format, golden) in [
        (
            "apple-plist",
            "fixtures/managed-config/apple/configuration.plist",
        ),
        (
            "android-bundle-json",
            "fixtures/managed-config/android/bundle.json",
        ),
        ("amapi-json", "fixtures/managed-config/amapi/policy.json"),
    ] {
        let out = kontor(&["config", "render", "--format", format, "--in", POLICY]);
        assert!(
            out.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expected = std::fs::read_to_string(root().join(golden)).unwrap();
        assert_eq!(stdout(&out).trim_end(), expected.trim_end(), "{format}");
    }
}

#[test]
fn schemas_are_printed_and_written() {
    let out = kontor(&["config", "schema", "--format", "appconfig"]);
    assert!(stdout(&out).contains("<managedAppConfiguration>"));
    let out = kontor(&["config", "schema", "--format", "amapi"]);
    assert!(stdout(&out).contains("managedProperties"));
    let dir = tempfile::tempdir().unwrap();
    let out = kontor(&[
        "config",
        "schema",
        "--format",
        "android",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success());
    for (file, golden) in [
        (
            "res/xml/app_restrictions.xml",
            "fixtures/managed-config/android/res/xml/app_restrictions.xml",
        ),
        (
            "res/values-de/strings.xml",
            "fixtures/managed-config/android/res/values-de/strings.xml",
        ),
    ] {
        assert_eq!(
            std::fs::read_to_string(dir.path().join(file))
                .unwrap()
                .trim_end(),
            std::fs::read_to_string(root().join(golden))
                .unwrap()
                .trim_end()
        );
    }
}

#[test]
fn check_accepts_what_devices_receive_and_names_the_broken_rule() {
    for file in [
        "fixtures/managed-config/apple/configuration.plist",
        "fixtures/managed-config/android/bundle.json",
        POLICY,
    ] {
        let out = kontor(&["config", "check", file]);
        assert!(out.status.success(), "{file}: {}", stdout(&out));
        assert!(stdout(&out).contains("valid policy for https://kontor.example.org"));
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"server_url": "https://kontor.example.org", "organisation_id": "x", "pin_min_length": 99}"#).unwrap();
    let out = kontor(&["config", "check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("key `pin_min_length`"),
        "{}",
        stdout(&out)
    );
    let placeholder = dir.path().join("emm.json");
    std::fs::write(&placeholder, r#"{"server_url": "https://kontor.example.org", "organisation_id": "x", "user_identity": "$EMAIL$"}"#).unwrap();
    let out = kontor(&["config", "check", placeholder.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unsubstituted EMM variable `$EMAIL$`"),
        "{:?}",
        out
    );
    let out = kontor(&[
        "config",
        "render",
        "--format",
        "apple-plist",
        "--in",
        "no/such.toml",
    ]);
    assert_eq!(out.status.code(), Some(2));
}
