//! The store's key file (`KTRK`) and its records, as read from a device's
//! disk (someone with the device may have written them).
//!
//! Every input goes through `key_file_params` (the format checks of
//! `open_key_file`, without scrypt). When the file parses and its scrypt
//! cost is tiny, it is also unlocked with a fixed PIN through
//! `open_key_file_danger_any_cost`: scrypt at the product's cost (at least
//! 2^15) would make every run take a tenth of a second, so the full unlock
//! is fuzzed only for cheap files. `open_key_file` itself is called only
//! for files it refuses before scrypt (cost below 2^15).
//!
//! Input layout: `u8 key file length || key file || u8 row id length ||
//! row id || record`; the record is opened under a fixed store key for a
//! fixed table.
#![no_main]

use std::sync::LazyLock;

use kontor_crypto::store::{MIN_LOG2_N, RecordCipher, StoreKey, key_file_params};
use libfuzzer_sys::fuzz_target;

/// Largest scrypt memory (128 · r · N · p bytes) unlocked here.
const CHEAP_SCRYPT_BYTES: u64 = 64 * 1024;

static CIPHER: LazyLock<RecordCipher> =
    LazyLock::new(|| RecordCipher::new(&StoreKey::from_bytes([0x42; 32])));

fuzz_target!(|data: &[u8]| {
    let Some((&file_len, data)) = data.split_first() else {
        return;
    };
    let (file, rest) = data.split_at(data.len().min(usize::from(file_len)));
    if let Ok(params) = key_file_params(file) {
        let cost = 128u64
            .saturating_mul(u64::from(params.r))
            .saturating_mul(1u64 << params.log2_n.min(63))
            .saturating_mul(u64::from(params.p));
        if cost <= CHEAP_SCRYPT_BYTES {
            let _ = kontor_crypto::store::open_key_file_danger_any_cost(file, "424242");
        }
        if params.log2_n < MIN_LOG2_N {
            assert!(
                kontor_crypto::open_key_file(file, "424242").is_err(),
                "open_key_file accepted a cost below its floor"
            );
        }
    }
    if let Some((row_len, record)) = rest.split_first() {
        let (row_id, record) = record.split_at(record.len().min(usize::from(*row_len)));
        let _ = CIPHER.open("messages", row_id, record);
    }
});
