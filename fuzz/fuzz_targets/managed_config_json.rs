//! What an Android device (or a policy file) gives the app: the app
//! restrictions bundle as JSON, an Android Management API policy, a JSON
//! policy file and a TOML policy file, decoded into a policy by
//! managed-config.
#![no_main]

use kontor_managed_config::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode::android_bundle_json(data);
    let _ = decode::amapi_policy(data, "com.kontor.messenger");
    let _ = decode::json(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = decode::toml(text);
    }
});
