//! The result parsers on the samples in `fixtures/mdm-connector/results/`:
//! each well-formed sample read field by field, each malformed one refused
//! with the error naming its problem, and arbitrary bytes never a panic.

use kontor_mdm_connector::results::{
    self, Answer, CommandResult, CommandStatus, Error, Notification, Severity,
};
use proptest::prelude::*;

use crate::payloads::{UUID, fixture};

const UDID: &str = "00008110-001A2B3C4D5E801E";

fn sample(name: &str) -> Vec<u8> {
    let path = fixture(&format!("results/{name}"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn apple(name: &str) -> CommandResult {
    results::apple_command_result(&sample(&format!("apple/{name}")))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Data-driven: `result` fails and its message starts with `expected`
/// (parser messages from serde go on with a line and column).
fn refused<T: std::fmt::Debug>(result: Result<T, Error>, expected: &str) {
    match result {
        Ok(v) => panic!("accepted, expected `{expected}`: {v:?}"),
        Err(e) => assert!(
            e.to_string().starts_with(expected),
            "got `{e}`, expected `{expected}`"
        ),
    }
}

// ---- Apple ------------------------------------------------------------------

#[test]
fn apple_acknowledged() {
    let r = apple("acknowledged.plist");
    assert_eq!(r.status, CommandStatus::Acknowledged);
    assert_eq!(r.command_uuid.as_deref(), Some(UUID));
    assert_eq!(r.udid.as_deref(), Some(UDID));
    assert_eq!(r.enrollment_id, None);
    assert!(r.error_chain.is_empty());
    assert_eq!(r.answer, Answer::None);
}

#[test]
fn apple_error_with_error_chain() {
    let r = apple("error.plist");
    assert_eq!(r.status, CommandStatus::Error);
    assert_eq!(r.error_chain.len(), 2);
    let first = &r.error_chain[0];
    assert_eq!(first.code, 12064);
    assert_eq!(first.domain, "MCMDMErrorDomain");
    assert_eq!(
        first.localized_description.as_deref(),
        Some("Die App „Kontor“ konnte nicht installiert werden.")
    );
    assert_eq!(
        first.us_english_description.as_deref(),
        Some("The app “Kontor” could not be installed.")
    );
    let second = &r.error_chain[1];
    assert_eq!(
        (second.code, second.domain.as_str()),
        (-1, "ASDErrorDomain")
    );
    assert_eq!(second.localized_description, None);
    assert_eq!(second.us_english_description, None);
}

#[test]
fn apple_not_now_idle_and_user_enrollment() {
    let r = apple("notnow.plist");
    assert_eq!(r.status, CommandStatus::NotNow);
    assert_eq!(r.command_uuid.as_deref(), Some(UUID));

    let r = apple("idle.plist");
    assert_eq!(r.status, CommandStatus::Idle);
    assert_eq!(r.command_uuid, None, "Idle carries no command");

    let r = apple("user_enrollment.plist");
    assert_eq!(r.udid, None);
    assert_eq!(
        r.enrollment_id.as_deref(),
        Some("4A1C2E3F-0B9D-4E6A-8F7C-5D2B1A0E9C8D")
    );
}

#[test]
fn apple_managed_application_configuration_answer() {
    let r = apple("managed_application_configuration.plist");
    let Answer::ApplicationConfigurations(apps) = r.answer else {
        panic!("answer: {:?}", r.answer)
    };
    assert_eq!(apps.len(), 2);
    assert_eq!(apps[0].identifier, "com.kontor.messenger");
    let config = apps[0].dictionary.as_ref().expect("configuration");
    assert_eq!(
        config["server_url"].as_string(),
        Some("https://kontor.example.org")
    );
    assert_eq!(config["pin_min_length"].as_signed_integer(), Some(8));
    let debug = format!("{:?}", apps[0]);
    assert!(debug.contains("server_url"), "{debug}");
    assert!(
        !debug.contains("https://kontor.example.org"),
        "values stay out of Debug"
    );
    assert_eq!(apps[1].identifier, "com.example.unconfigured");
    assert_eq!(apps[1].dictionary, None);
}

#[test]
fn apple_managed_application_feedback_answer() {
    let r = apple("managed_application_feedback.plist");
    let Answer::ManagedApplicationFeedback(apps) = r.answer else {
        panic!("answer: {:?}", r.answer)
    };
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].identifier, "com.kontor.messenger");
    let feedback = apps[0].dictionary.as_ref().expect("feedback");
    assert_eq!(feedback["enrolled"].as_boolean(), Some(true));
}

/// What the command builders sent is what the result names: the UUID the
/// caller chose comes back for correlation.
#[test]
fn apple_result_correlates_with_the_command_uuid() {
    let uuid = crate::payloads::uuid();
    let r = apple("acknowledged.plist");
    assert_eq!(r.command_uuid.as_deref(), Some(uuid.as_str()));
}

#[test]
fn apple_malformed_results_are_refused() {
    let p = |name: &str| results::apple_command_result(&sample(&format!("apple/malformed/{name}")));
    refused(p("not_a_plist.txt"), "malformed plist: ");
    refused(p("truncated.plist"), "malformed plist: ");
    refused(
        p("top_level_array.plist"),
        "malformed plist: top level is not a dictionary",
    );
    refused(p("unknown_status.plist"), "unknown command status `Maybe`");
    refused(
        p("missing_status.plist"),
        "key `Status` is required but missing",
    );
    refused(
        p("missing_command_uuid.plist"),
        "key `CommandUUID` is required but missing",
    );
    refused(
        p("error_chain_not_array.plist"),
        "key `ErrorChain`: expected an array",
    );
    refused(
        p("error_code_not_integer.plist"),
        "key `ErrorChain[0].ErrorCode`: expected an integer",
    );
    refused(results::apple_command_result(b""), "malformed plist: ");
}

/// A binary plist is refused: devices send XML, and only XML is checked
/// for depth before the tree is built.
#[test]
fn apple_binary_plist_is_refused() {
    let mut bytes = Vec::new();
    plist::Value::Dictionary(plist::Dictionary::from_iter([(
        "Status".to_owned(),
        plist::Value::String("Acknowledged".into()),
    )]))
    .to_writer_binary(&mut bytes)
    .unwrap();
    refused(results::apple_command_result(&bytes), "malformed plist: ");
}

#[test]
fn apple_input_limits() {
    let deep = format!(
        "<plist version=\"1.0\">{}{}</plist>",
        "<array>".repeat(50_000),
        "</array>".repeat(50_000)
    );
    refused(
        results::apple_command_result(deep.as_bytes()),
        "plist nests deeper than 32 levels",
    );
    let big = vec![b' '; results::MAX_INPUT_BYTES + 1];
    refused(
        results::apple_command_result(&big),
        "input is 1048577 bytes, more than the limit of 1048576",
    );
    refused(
        results::nanomdm_webhook(&big),
        "input is 1048577 bytes, more than the limit of 1048576",
    );
    refused(
        results::android_push(&big),
        "input is 1048577 bytes, more than the limit of 1048576",
    );
}

#[test]
fn nanomdm_webhook_samples() {
    let hook = |name: &str| {
        results::nanomdm_webhook(&sample(&format!("apple/{name}")))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    for (name, plist, status) in [
        (
            "webhook_acknowledged.json",
            "acknowledged.plist",
            CommandStatus::Acknowledged,
        ),
        ("webhook_error.json", "error.plist", CommandStatus::Error),
        ("webhook_notnow.json", "notnow.plist", CommandStatus::NotNow),
        ("webhook_idle.json", "idle.plist", CommandStatus::Idle),
        (
            "webhook_managed_application_configuration.json",
            "managed_application_configuration.plist",
            CommandStatus::Acknowledged,
        ),
    ] {
        let event = hook(name);
        assert_eq!(event.topic, "mdm.Connect");
        assert_eq!(event.event_id, None, "empty event_id reads as none");
        assert_eq!(
            event.created_at.as_deref(),
            Some("2026-11-20T09:14:03.512Z")
        );
        let result = event.result.expect("mdm.Connect carries a result");
        assert_eq!(result.status, status, "{name}");
        assert_eq!(result, apple(plist), "{name}: same as the raw plist");
    }

    let checkin = hook("webhook_checkin.json");
    assert_eq!(checkin.topic, "mdm.Authenticate");
    assert_eq!(checkin.result, None);
}

#[test]
fn nanomdm_malformed_webhooks_are_refused() {
    let hook = |name: &str| results::nanomdm_webhook(&sample(&format!("apple/malformed/{name}")));
    refused(
        hook("webhook_bad_base64.json"),
        "field `acknowledge_event.raw_payload` is not valid base64: ",
    );
    refused(
        hook("webhook_status_mismatch.json"),
        "webhook says status is `NotNow` but the device's plist says `Acknowledged`",
    );
    refused(
        hook("webhook_uuid_mismatch.json"),
        "webhook says command_uuid is `11111111-2222-3333-4444-555555555555` but the device's plist says `0F3C4B1E-6A2D-4C1B-9E57-3D0A8B5C7E21`",
    );
    refused(
        hook("webhook_missing_acknowledge_event.json"),
        "key `acknowledge_event` is required but missing",
    );
    refused(
        hook("webhook_null_raw_payload.json"),
        "key `acknowledge_event.raw_payload` is required but missing",
    );
    refused(
        hook("webhook_payload_not_a_plist.json"),
        "malformed plist: ",
    );
    refused(
        hook("webhook_not_json.json"),
        "malformed nanomdm webhook json: ",
    );
    refused(
        results::nanomdm_webhook(br#"{"event_id": "x"}"#),
        "malformed nanomdm webhook json: missing field `topic`",
    );
}

// ---- Android ----------------------------------------------------------------

#[test]
fn android_status_report_with_keyed_app_states() {
    let push = results::android_push(&sample("android/push_status_report.json")).unwrap();
    assert_eq!(push.message_id.as_deref(), Some("9876543210"));
    assert_eq!(
        push.publish_time.as_deref(),
        Some("2026-11-20T09:15:01.456Z")
    );
    assert_eq!(
        push.subscription.as_deref(),
        Some("projects/kontor-emm/subscriptions/amapi-push")
    );
    let Notification::StatusReport(device) = push.notification else {
        panic!("{:?}", push.notification)
    };
    assert_eq!(
        device,
        results::android_device(&sample("android/device.json")).unwrap(),
        "the push carries the device resource"
    );
    assert_eq!(
        device.name.as_str(),
        "enterprises/LC01example/devices/3a1f9c0d2b7e4c55"
    );
    assert_eq!(device.applied_state.as_deref(), Some("ACTIVE"));
    assert_eq!(
        device.enrollment_token_data.as_deref(),
        Some("kontor-org=example-gmbh")
    );
    assert_eq!(device.application_reports.len(), 2);
    let kontor = &device.application_reports[0];
    assert_eq!(kontor.package_name, "com.kontor.messenger");
    assert_eq!(kontor.version_code, Some(140));
    let states = &kontor.keyed_app_states;
    assert_eq!(states.len(), 3);
    assert_eq!(states[0].key, "enrollment");
    assert_eq!(states[0].severity, Severity::Info);
    assert_eq!(states[0].message.as_deref(), Some("enrolled"));
    assert_eq!(states[0].data.as_deref(), Some("device-id=d-42"));
    assert_eq!(
        states[0].create_time.as_deref(),
        Some("2026-11-18T08:05:00Z")
    );
    assert_eq!(
        states[0].last_update_time.as_deref(),
        Some("2026-11-20T09:14:00Z")
    );
    assert_eq!(states[1].severity, Severity::Error);
    assert_eq!(states[2].severity, Severity::Unspecified, "absent severity");
    assert_eq!(states[2].message, None);
    assert!(device.application_reports[1].keyed_app_states.is_empty());
}

#[test]
fn android_enrollment_command_and_other_notifications() {
    let push = results::android_push(&sample("android/push_enrollment.json")).unwrap();
    assert!(matches!(push.notification, Notification::Enrollment(_)));

    let push = results::android_push(&sample("android/push_command.json")).unwrap();
    let Notification::Command(op) = push.notification else {
        panic!("{:?}", push.notification)
    };
    assert_eq!(
        op,
        results::android_operation(&sample("android/operation.json")).unwrap()
    );
    assert!(op.done);
    assert_eq!(op.error, None);
    assert_eq!(op.command_type.as_deref(), Some("CLEAR_APP_DATA"));
    assert_eq!(op.clear_app_results["com.kontor.messenger"], "SUCCESS");
    assert_eq!(op.clear_app_results["com.example.gone"], "APP_NOT_FOUND");

    let push = results::android_push(&sample("android/push_test.json")).unwrap();
    assert_eq!(
        push.notification,
        Notification::Other {
            notification_type: "test".into()
        }
    );
}

#[test]
fn android_operation_failed_and_pending() {
    let failed = results::android_operation(&sample("android/operation_failed.json")).unwrap();
    assert!(failed.done);
    let error = failed.error.expect("error");
    assert_eq!(error.code, 9);
    assert_eq!(error.message, "The command is not supported by the device.");
    assert_eq!(failed.command_error_code.as_deref(), Some("UNSUPPORTED"));
    assert!(failed.clear_app_results.is_empty());

    let pending = results::android_operation(&sample("android/operation_pending.json")).unwrap();
    assert!(!pending.done, "absent done means not done");
    assert_eq!(pending.error, None);
    assert_eq!(pending.command_type.as_deref(), Some("CLEAR_APP_DATA"));
}

#[test]
fn android_malformed_input_is_refused() {
    let push = |name: &str| results::android_push(&sample(&format!("android/malformed/{name}")));
    refused(
        push("push_bad_base64.json"),
        "field `message.data` is not valid base64: ",
    );
    refused(
        push("push_missing_type.json"),
        "key `message.attributes.notificationType` is required but missing",
    );
    refused(
        push("push_missing_data.json"),
        "key `message.data` is required but missing",
    );
    refused(push("push_data_not_json.json"), "malformed device json: ");
    let device =
        |name: &str| results::android_device(&sample(&format!("android/malformed/{name}")));
    refused(
        device("device_unknown_severity.json"),
        "malformed device json: unknown variant `CRITICAL`",
    );
    refused(
        device("device_bad_name.json"),
        "malformed device json: invalid device name `devices/3a1f9c0d2b7e4c55`",
    );
    refused(
        device("device_missing_name.json"),
        "malformed device json: missing field `name`",
    );
    refused(
        results::android_operation(&sample("android/malformed/operation_missing_name.json")),
        "malformed operation json: missing field `name`",
    );
    refused(
        results::android_push(b"[]"),
        "malformed pub/sub push json: ",
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes give a result or an error, never a panic.
    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = results::apple_command_result(&bytes);
        let _ = results::nanomdm_webhook(&bytes);
        let _ = results::android_push(&bytes);
        let _ = results::android_device(&bytes);
        let _ = results::android_operation(&bytes);
    }

    /// Plist-shaped noise: a valid sample with a span replaced by random
    /// bytes reaches deeper into the parser than random bytes do.
    #[test]
    fn mutated_samples_never_panic(
        at in 0usize..400,
        len in 0usize..40,
        noise in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        for name in ["apple/error.plist", "apple/managed_application_configuration.plist"] {
            let mut bytes = sample(name);
            let start = at.min(bytes.len());
            let end = (start + len).min(bytes.len());
            bytes.splice(start..end, noise.iter().copied());
            let _ = results::apple_command_result(&bytes);
        }
        let mut bytes = sample("android/device.json");
        let start = at.min(bytes.len());
        let end = (start + len).min(bytes.len());
        bytes.splice(start..end, noise.iter().copied());
        let _ = results::android_device(&bytes);
    }
}
