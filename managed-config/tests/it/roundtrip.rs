//! Model -> each format -> decoder -> the same model, for random policies;
//! and the defaults every schema format announces agree with the model's.

use std::collections::BTreeMap;

use kontor_managed_config::model::{KEYS, Kind, Setting};
use kontor_managed_config::{
    Attachment, BundleId, Department, EnrollmentToken, LogLevel, OrgId, PinKind, PinPolicy, Policy,
    Restrictions, ServerUrl, UserIdentity, amapi, android, apple, decode,
};
use proptest::prelude::*;

fn policy() -> impl Strategy<Value = Policy> {
    // Free text draws from letters, umlauts, XML and JSON specials; `{`, `$`
    // and `%` stay out because they could spell an EMM placeholder, which the
    // decoders rightly refuse to take as a value.
    let text = "[a-zA-Z0-9äöüÄÖÜß&<>\"'@._ -]{0,40}[a-zA-Z0-9äöüß&<>@._-]";
    (
        (
            "[a-z0-9]{1,20}(\\.[a-z0-9]{1,10}){0,2}(:[0-9]{2,5})?(/[a-zA-Z0-9._~-]{0,12}){0,3}",
            "[A-Za-z0-9._-]{1,64}",
            proptest::option::of("[A-Za-z0-9._~+/=-]{16,80}"),
            proptest::option::of(text),
            proptest::option::of(text),
        ),
        (
            any::<bool>(),
            proptest::sample::subsequence(Attachment::ALL.to_vec(), 0..=4),
            any::<bool>(),
            any::<bool>(),
        ),
        (
            4u8..=16,
            prop_oneof![Just(PinKind::Digits), Just(PinKind::Alphanumeric)],
            3u8..=20,
        ),
        (
            1u16..=720,
            any::<bool>(),
            prop_oneof![
                Just(LogLevel::Error),
                Just(LogLevel::Warn),
                Just(LogLevel::Info),
                Just(LogLevel::Debug)
            ],
        ),
    )
        .prop_map(
            |((host, org, token, user, department), r, pin, device)| Policy {
                server_url: ServerUrl::parse(&format!("https://{host}"))
                    .expect("generated url is valid"),
                organisation_id: OrgId::parse(&org).expect("generated org id is valid"),
                enrollment_token: token
                    .map(|t| EnrollmentToken::parse(&t).expect("generated token is valid")),
                user_identity: user
                    .map(|u| UserIdentity::parse(&u).expect("generated identity is valid")),
                department: department
                    .map(|d| Department::parse(&d).expect("generated department is valid")),
                restrictions: Restrictions {
                    copy_paste: r.0,
                    attachments: r.1.into_iter().collect(),
                    forwarding: r.2,
                    screenshots: r.3,
                },
                pin: PinPolicy {
                    min_length: pin.0,
                    kind: pin.1,
                    max_failed_attempts: pin.2,
                },
                offline_grace_hours: device.0,
                remote_wipe: device.1,
                log_level: device.2,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn apple_configuration_round_trips(p in policy()) {
        let plist = apple::configuration_plist(&p).unwrap();
        let d = decode::apple_plist(plist.as_bytes()).unwrap();
        prop_assert!(d.unknown.is_empty() && d.placeholders.is_empty());
        prop_assert_eq!(d.policy, p);
    }

    #[test]
    fn apple_commands_round_trip(p in policy()) {
        let app = BundleId::default();
        let install = apple::install_application(&p, &app).unwrap();
        prop_assert_eq!(&decode::apple_command(install.as_bytes()).unwrap().policy, &p);
        let settings = apple::settings_command(&p, &app).unwrap();
        prop_assert_eq!(&decode::apple_command(settings.as_bytes()).unwrap().policy, &p);
    }

    #[test]
    fn amapi_policy_round_trips(p in policy()) {
        let json = amapi::application_policy(&p, &BundleId::default()).unwrap();
        let d = decode::amapi_policy(json.as_bytes(), BundleId::DEFAULT).unwrap();
        prop_assert!(d.unknown.is_empty() && d.placeholders.is_empty());
        prop_assert_eq!(d.policy, p);
    }

    #[test]
    fn android_bundle_and_plain_json_round_trip(p in policy()) {
        let json = android::bundle_json(&p).unwrap();
        prop_assert_eq!(&decode::android_bundle_json(json.as_bytes()).unwrap().policy, &p);
        prop_assert_eq!(&decode::json(json.as_bytes()).unwrap().policy, &p);
    }

    /// Arbitrary bytes never panic any decoder.
    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode::apple_plist(&bytes);
        let _ = decode::apple_command(&bytes);
        let _ = decode::android_bundle_json(&bytes);
        let _ = decode::amapi_policy(&bytes, BundleId::DEFAULT);
        let _ = decode::json(&bytes);
        let _ = decode::toml(&String::from_utf8_lossy(&bytes));
    }

    /// Arbitrary values under known keys give a policy or an error, never a
    /// panic, and an error always names the key.
    #[test]
    fn wrong_values_name_their_key(key_index in 0..KEYS.len(), value in any_json()) {
        let key = KEYS[key_index].key;
        let mut doc = serde_json::json!({
            "server_url": "https://kontor.example.org",
            "organisation_id": "example",
        });
        doc[key] = value;
        if let Err(e) = decode::json(doc.to_string().as_bytes()) {
            let message = e.to_string();
            prop_assert!(message.contains(&format!("`{key}`")), "{} does not name {}", message, key);
        }
    }
}

fn any_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value as J;
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        any::<i64>().prop_map(J::from),
        any::<f64>().prop_map(J::from),
        ".{0,20}".prop_map(J::String),
        Just(J::String("$EMAIL$".into())),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(J::Array),
            proptest::collection::btree_map("[a-z]{1,5}", inner, 0..4)
                .prop_map(|m| J::Object(m.into_iter().collect())),
        ]
    })
}

/// The defaults each schema announces, as the model's settings for a policy
/// with every optional key at its default.
fn model_defaults() -> BTreeMap<&'static str, Setting> {
    let p = Policy::new(
        ServerUrl::parse("https://kontor.example.org").unwrap(),
        OrgId::parse("example").unwrap(),
    );
    p.settings()
        .unwrap()
        .into_iter()
        .filter(|(k, _)| !KEYS.iter().any(|s| s.key == *k && s.required))
        .collect()
}

fn setting_text(setting: &Setting) -> serde_json::Value {
    match setting {
        Setting::Bool(b) => (*b).into(),
        Setting::Integer(i) => (*i).into(),
        Setting::String(s) => s.clone().into(),
        Setting::StringList(l) => l.clone().into(),
    }
}

#[test]
fn amapi_schema_defaults_match_the_model() {
    let schema: serde_json::Value =
        serde_json::from_str(&amapi::managed_properties().unwrap()).unwrap();
    let defaults = model_defaults();
    for property in schema["managedProperties"].as_array().unwrap() {
        let key = property["key"].as_str().unwrap();
        match defaults.get(key) {
            Some(setting) => assert_eq!(property["defaultValue"], setting_text(setting), "{key}"),
            None => assert!(
                property.get("defaultValue").is_none(),
                "{key} has no model default"
            ),
        }
    }
    assert_eq!(
        schema["managedProperties"].as_array().unwrap().len(),
        KEYS.len()
    );
}

#[test]
fn every_spec_default_is_valid_for_its_own_key() {
    for spec in KEYS {
        let value = match spec.kind {
            Kind::Bool { default } => serde_json::json!(default),
            Kind::Integer { default, .. } => serde_json::json!(default),
            Kind::Choice { default, .. } => serde_json::json!(default),
            Kind::MultiSelect { default, .. } => serde_json::json!(default),
            Kind::Hidden { value } => serde_json::json!(value),
            Kind::String { .. } => continue,
        };
        let mut doc =
            serde_json::json!({"server_url": "https://kontor.example.org", "organisation_id": "x"});
        doc[spec.key] = value;
        let decoded = decode::json(doc.to_string().as_bytes());
        assert!(decoded.is_ok(), "{}: {decoded:?}", spec.key);
    }
}
