//! What Apple's side reports back: a device's command result plist, a
//! NanoMDM webhook event (JSON with the raw plist in base64) and NanoMDM's
//! answer to an enqueue.
#![no_main]

use kontor_mdm_connector::{clients, results};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(result) = results::apple_command_result(data) {
        let _ = result.status.as_str();
    }
    let _ = results::nanomdm_webhook(data);
    if let Ok(answer) = clients::parse_nanomdm_answer(data) {
        let _ = answer.has_errors();
    }
});
