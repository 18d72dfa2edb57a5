//! Integration tests of kontor-crypto: the primitives against their RFC,
//! NIST and Wycheproof vectors, and property tests of the protocol.

mod primitives;
mod properties;
mod wycheproof_sets;

/// Hex to bytes, for test literals.
pub fn h(hex_str: &str) -> Vec<u8> {
    hex::decode(hex_str).expect("test literal is hex")
}

/// Hex to a fixed-size array, for test literals.
pub fn arr<const N: usize>(hex_str: &str) -> [u8; N] {
    h(hex_str)
        .try_into()
        .expect("test literal has the right length")
}
