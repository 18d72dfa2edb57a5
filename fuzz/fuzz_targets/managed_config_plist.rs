//! What an iOS or macOS device receives from its MDM: the managed
//! configuration dictionary (XML, binary or ASCII plist) and the
//! InstallApplication / Settings commands that carry it, decoded into a
//! policy by managed-config.
#![no_main]

use kontor_managed_config::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode::apple_plist(data);
    let _ = decode::apple_command(data);
});
