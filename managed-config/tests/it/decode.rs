//! What the decoders accept: every format of the example policy, defaults,
//! unknown keys and unsubstituted EMM variables.

use kontor_managed_config::decode::{self, Placeholder};
use kontor_managed_config::{
    Attachment, LogLevel, OrgId, PinKind, Policy, ServerUrl, Value, placeholder,
};

use crate::{example_policy, fixture};

fn minimal() -> Policy {
    Policy::new(
        ServerUrl::parse("https://kontor.example.org").unwrap(),
        OrgId::parse("example").unwrap(),
    )
}

#[test]
fn example_policy_reads_as_written() {
    let p = example_policy();
    assert_eq!(p.server_url.as_str(), "https://kontor.example.org");
    assert_eq!(
        p.enrollment_token.as_ref().map(|t| t.expose()),
        Some("kt1.Q2hhbmdlTWUtdGVzdC10b2tlbg")
    );
    assert_eq!(
        p.department.as_ref().map(|d| d.as_str()),
        Some("Finanzen & Controlling")
    );
    assert!(!p.restrictions.copy_paste);
    assert_eq!(
        p.restrictions.attachments,
        [Attachment::Images, Attachment::Files].into()
    );
    assert_eq!(
        (p.pin.min_length, p.pin.kind, p.pin.max_failed_attempts),
        (8, PinKind::Alphanumeric, 5)
    );
    assert_eq!((p.offline_grace_hours, p.log_level), (48, LogLevel::Info));
    assert!(
        !format!("{p:?}").contains("Q2hh"),
        "the token must not show in Debug"
    );
}

#[test]
fn golden_outputs_decode_to_the_example_policy() {
    let policy = example_policy();
    let read = |name: &str| std::fs::read(fixture(name)).unwrap();
    assert_eq!(
        decode::apple_plist(&read("apple/configuration.plist"))
            .unwrap()
            .policy,
        policy
    );
    assert_eq!(
        decode::apple_command(&read("apple/install_application.plist"))
            .unwrap()
            .policy,
        policy
    );
    assert_eq!(
        decode::apple_command(&read("apple/settings.plist"))
            .unwrap()
            .policy,
        policy
    );
    assert_eq!(
        decode::android_bundle_json(&read("android/bundle.json"))
            .unwrap()
            .policy,
        policy
    );
    assert_eq!(
        decode::json(&read("android/bundle.json")).unwrap().policy,
        policy
    );
    let amapi = decode::amapi_policy(&read("amapi/policy.json"), "com.kontor.messenger").unwrap();
    assert_eq!(amapi.policy, policy);
}

#[test]
fn absent_keys_take_their_defaults() {
    let d = decode::json(
        br#"{"server_url": "https://kontor.example.org", "organisation_id": "example"}"#,
    )
    .unwrap();
    assert_eq!(d.policy, minimal());
    assert!(d.unknown.is_empty() && d.placeholders.is_empty());
}

#[test]
fn empty_strings_and_null_count_as_absent() {
    let d = decode::json(
        br#"{"server_url": "https://kontor.example.org", "organisation_id": "example",
             "department": "", "enrollment_token": null}"#,
    )
    .unwrap();
    assert_eq!(d.policy, minimal());
}

#[test]
fn unknown_keys_are_kept_and_reported() {
    let d = decode::json(
        br#"{"server_url": "https://kontor.example.org", "organisation_id": "example",
             "future_feature": {"level": 3}, "legacy_flag": true}"#,
    )
    .unwrap();
    assert_eq!(d.policy, minimal());
    assert_eq!(
        d.unknown.keys().collect::<Vec<_>>(),
        ["future_feature", "legacy_flag"]
    );
    assert_eq!(d.unknown["legacy_flag"], Value::Bool(true));
}

/// Data-driven: the placeholder found in `input`, if any.
fn check(input: &str, expected: Option<&str>) {
    assert_eq!(placeholder::find(input), expected, "in {input:?}");
}

#[test]
fn placeholders_of_common_emms_are_recognised() {
    check("{{mail}}", Some("{{mail}}"));
    check("{{ userprincipalname }}", Some("{{ userprincipalname }}"));
    check("{EmailAddress}", Some("{EmailAddress}"));
    check("$EMAIL$", Some("$EMAIL$"));
    check("$EMAIL", Some("$EMAIL"));
    check("${user.email}", Some("${user.email}"));
    check("%email%", Some("%email%"));
    check("user-%email%@corp", Some("%email%"));
    check("anna.schmidt@example.org", None);
    check("Finanzen & Controlling", None);
    check("https://kontor.example.org/a%20b%2Fc", None);
    check("costs $5 and 100%", None);
    check("{}", None);
    check("Größe {ü}", None);
    check("", None);
}

#[test]
fn unsubstituted_optional_keys_are_reported_not_taken() {
    let d = decode::apple_plist(
        br#"<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict>
  <key>server_url</key><string>https://kontor.example.org</string>
  <key>organisation_id</key><string>example</string>
  <key>user_identity</key><string>{{mail}}</string>
  <key>department</key><string>%department%</string>
</dict></plist>"#,
    )
    .unwrap();
    assert_eq!(d.policy.user_identity, None);
    assert_eq!(d.policy.department, None);
    assert_eq!(
        d.placeholders,
        [
            Placeholder {
                key: "user_identity",
                token: "{{mail}}".into()
            },
            Placeholder {
                key: "department",
                token: "%department%".into()
            },
        ]
    );
}

#[test]
fn binary_plists_decode_too() {
    let policy = example_policy();
    let mut binary = Vec::new();
    plist::Value::Dictionary(kontor_managed_config::apple::configuration(&policy).unwrap())
        .to_writer_binary(&mut binary)
        .unwrap();
    assert_eq!(decode::apple_plist(&binary).unwrap().policy, policy);
}
