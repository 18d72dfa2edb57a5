//! Safety numbers: 60 digits two users read to each other to check that
//! each holds the other's real identity key.
//!
//! Protocol.md leaves the safety number to the implementation; Kontor's is
//! shaped after Signal's: per party, SHA-512 iterated 5,200 times over a
//! label, the party's stable id and identity key; the first 30 bytes give
//! six 5-digit groups; the two halves are ordered by their bytes so both
//! users see the same number.

use sha2::{Digest, Sha512};

use crate::keys::IdentityPublic;

const LABEL: &[u8] = b"kontor-v1-safety-number";
const ITERATIONS: usize = 5_200;

/// One side of a conversation: a stable id (the user id) and a device
/// identity key.
#[derive(Debug, Clone, Copy)]
pub struct Party<'a> {
    /// The user's stable id.
    pub id: &'a str,
    /// The identity key being vouched for.
    pub identity: &'a IdentityPublic,
}

/// The 60-digit safety number of two parties, in 12 groups of 5 digits
/// separated by spaces. The same for both orders of the arguments.
pub fn safety_number(a: Party<'_>, b: Party<'_>) -> String {
    let mut halves = [half(a), half(b)];
    halves.sort();
    halves.concat().join(" ")
}

fn half(party: Party<'_>) -> Vec<String> {
    let id = party.id.as_bytes();
    // The id is length-prefixed so that id and key cannot trade bytes.
    let id_len = u32::try_from(id.len()).unwrap_or(u32::MAX).to_be_bytes();
    let mut digest = Sha512::new()
        .chain_update(LABEL)
        .chain_update(id_len)
        .chain_update(id)
        .chain_update(party.identity.as_bytes())
        .finalize();
    for _ in 1..ITERATIONS {
        digest = Sha512::new()
            .chain_update(digest)
            .chain_update(party.identity.as_bytes())
            .finalize();
    }
    digest[..30]
        .chunks_exact(5)
        .map(|chunk| {
            let value = chunk.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
            format!("{:05}", value % 100_000)
        })
        .collect()
}
