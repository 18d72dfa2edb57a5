//! What Google's side reports back: Pub/Sub notifications, devices and
//! Operations from the Android Management API, its enrollment tokens and
//! error bodies, and a `Retry-After` header value.
#![no_main]

use kontor_mdm_connector::{clients, results};
use kontor_provisioning::time::OffsetDateTime;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = results::android_push(data);
    let _ = results::android_device(data);
    let _ = results::android_operation(data);
    let _ = clients::parse_operation(data);
    let _ = clients::parse_enrollment_token(data);
    let _ = clients::parse_google_error(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let now = OffsetDateTime::from_unix_timestamp(1_767_225_600).expect("fixed time");
        let _ = clients::parse_retry_after(text, now);
    }
});
