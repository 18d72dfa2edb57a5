//! The JSON test vectors of protocol.md ("Test vectors"): their format,
//! their generation from fixed inputs, and their checking.
//!
//! [`check_json`] checks any vector file, whoever wrote it; `kontor crypto
//! verify-vectors` is a thin wrapper around it. [`generate_envelope`] and
//! [`generate_store`] produce the project's own files from inputs derived
//! from fixed labels, so they are the same on every machine.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::envelope::{self, Recipient, SealRandomness, Sender};
use crate::keys::{
    ContentKey, DeviceId, IdentityPublic, IdentitySecret, MessageId, parse_hex_array,
};
use crate::store::{self, RecordCipher, ScryptParams, StoreKey};
use crate::{Error, primitives};

/// The `protocol` value of envelope vector files.
pub const ENVELOPE_PROTOCOL: &str = "kontor-envelope-v1";
/// The `protocol` value of store vector files.
pub const STORE_PROTOCOL: &str = "kontor-store-v1";

/// `fixtures/vectors/envelope-v1.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeVectors {
    /// Always [`ENVELOPE_PROTOCOL`].
    pub protocol: String,
    /// Cases that must seal byte for byte and open.
    pub valid: Vec<EnvelopeValid>,
    /// Cases that must fail to open at the named step.
    pub invalid: Vec<EnvelopeInvalid>,
}

/// A valid envelope case; every byte string is lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(
    missing_docs,
    reason = "the fields are protocol.md's names, documented there"
)]
pub struct EnvelopeValid {
    pub name: String,
    pub message_id: String,
    pub sender_device_id: String,
    pub sender_identity_private: String,
    pub sender_identity_public: String,
    pub ephemeral_private: String,
    pub content_key: String,
    pub body_iv: String,
    pub recipients: Vec<VectorRecipient>,
    pub plaintext: String,
}

/// One recipient device of a valid envelope case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(
    missing_docs,
    reason = "the fields are protocol.md's names, documented there"
)]
pub struct VectorRecipient {
    pub device_id: String,
    pub identity_private: String,
    pub identity_public: String,
    pub wrap_iv: String,
    pub sealed: String,
}

/// An invalid envelope case: opening `sealed` must fail at step `error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(
    missing_docs,
    reason = "the fields are protocol.md's names, documented there"
)]
pub struct EnvelopeInvalid {
    pub name: String,
    pub recipient_identity_private: String,
    pub sender_identity_public: String,
    pub sealed: String,
    pub error: String,
}

/// `fixtures/vectors/store-v1.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreVectors {
    /// Always [`STORE_PROTOCOL`].
    pub protocol: String,
    /// Key files that must be produced byte for byte and open.
    pub valid: Vec<StoreValid>,
    /// Key files that must fail to open at the named step.
    pub invalid: Vec<StoreInvalid>,
    /// Records under a store key. An addition to protocol.md's format, which
    /// fixes the record keys but not the record layout; readers that do not
    /// know it may ignore it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<RecordVector>,
}

/// A valid key file case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(
    missing_docs,
    reason = "the fields are protocol.md's names, documented there"
)]
pub struct StoreValid {
    pub name: String,
    pub pin: String,
    pub store_key: String,
    pub salt: String,
    pub log2_n: u8,
    pub r: u32,
    pub p: u32,
    pub iv: String,
    pub key_file: String,
}

/// An invalid key file case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(
    missing_docs,
    reason = "the fields are protocol.md's names, documented there"
)]
pub struct StoreInvalid {
    pub name: String,
    pub pin: String,
    pub key_file: String,
    pub error: String,
}

/// A record case: with `error` absent, sealing gives `record` and opening
/// gives `plaintext`; with `error` = "record", opening `record` for this
/// table and row must fail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs, reason = "the fields mirror the key file cases")]
pub struct RecordVector {
    pub name: String,
    pub store_key: String,
    pub table: String,
    pub row_id: String,
    pub iv: String,
    pub plaintext: String,
    pub record: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The outcome of checking a vector file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed: the case name and why.
    pub failed: Vec<(String, String)>,
}

impl Report {
    fn record(&mut self, name: &str, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => self.passed += 1,
            Err(why) => self.failed.push((name.to_owned(), why)),
        }
    }
}

/// Checks a vector file of either kind, recognised by its `protocol` field.
pub fn check_json(json: &str) -> Result<Report, Error> {
    #[derive(Deserialize)]
    struct Probe {
        protocol: String,
    }
    let probe: Probe = serde_json::from_str(json)
        .map_err(|e| Error::VectorFile(format!("not a vector file: {e}")))?;
    match probe.protocol.as_str() {
        ENVELOPE_PROTOCOL => {
            let vectors: EnvelopeVectors = serde_json::from_str(json)
                .map_err(|e| Error::VectorFile(format!("malformed envelope vectors: {e}")))?;
            Ok(check_envelope(&vectors))
        }
        STORE_PROTOCOL => {
            let vectors: StoreVectors = serde_json::from_str(json)
                .map_err(|e| Error::VectorFile(format!("malformed store vectors: {e}")))?;
            Ok(check_store(&vectors))
        }
        other => Err(Error::VectorFile(format!(
            "unknown protocol {other:?}, expected {ENVELOPE_PROTOCOL:?} or {STORE_PROTOCOL:?}"
        ))),
    }
}

/// Checks every case of an envelope vector file.
pub fn check_envelope(vectors: &EnvelopeVectors) -> Report {
    let mut report = Report::default();
    for case in &vectors.valid {
        report.record(&case.name, check_envelope_valid(case));
    }
    for case in &vectors.invalid {
        report.record(&case.name, check_envelope_invalid(case));
    }
    report
}

/// Checks every case of a store vector file.
pub fn check_store(vectors: &StoreVectors) -> Report {
    let mut report = Report::default();
    for case in &vectors.valid {
        report.record(&case.name, check_store_valid(case));
    }
    for case in &vectors.invalid {
        report.record(&case.name, check_store_invalid(case));
    }
    for case in &vectors.records {
        report.record(&case.name, check_record(case));
    }
    report
}

fn check_envelope_valid(case: &EnvelopeValid) -> Result<(), String> {
    let sender = IdentitySecret::from_hex(&case.sender_identity_private).map_err(err)?;
    expect_public(&sender, &case.sender_identity_public, "sender")?;
    let sender_device_id = DeviceId::from_hex(&case.sender_device_id).map_err(err)?;
    let message_id = MessageId::from_hex(&case.message_id).map_err(err)?;
    let plaintext = hex_bytes(&case.plaintext, "plaintext")?;
    let mut recipients = Vec::new();
    let mut wrap_ivs = Vec::new();
    for r in &case.recipients {
        let secret = IdentitySecret::from_hex(&r.identity_private).map_err(err)?;
        expect_public(&secret, &r.identity_public, "recipient")?;
        recipients.push(Recipient {
            device_id: DeviceId::from_hex(&r.device_id).map_err(err)?,
            identity: secret.public(),
        });
        wrap_ivs.push(parse_hex_array::<16>(&r.wrap_iv, "wrap_iv").map_err(err)?);
    }
    let randomness = SealRandomness {
        content_key: ContentKey::from_hex(&case.content_key).map_err(err)?,
        body_iv: parse_hex_array(&case.body_iv, "body_iv").map_err(err)?,
        ephemeral: IdentitySecret::from_hex(&case.ephemeral_private).map_err(err)?,
        wrap_ivs,
    };
    let envelope = envelope::seal_with_danger_fixed_randomness(
        &randomness,
        message_id,
        Sender {
            device_id: sender_device_id,
            identity: &sender,
        },
        &recipients,
        &plaintext,
    )
    .map_err(|e| format!("sealing failed: {e}"))?;
    for (i, (r, delivery)) in case
        .recipients
        .iter()
        .zip(envelope.deliveries())
        .enumerate()
    {
        let sealed = delivery.sealed_message(envelope.body());
        let expected = hex_bytes(&r.sealed, "sealed")?;
        if sealed != expected {
            return Err(format!(
                "recipient {i}: sealing does not give `sealed` byte for byte"
            ));
        }
        let secret = IdentitySecret::from_hex(&r.identity_private).map_err(err)?;
        let opened = envelope::open(
            &expected,
            &secret,
            Some(recipients[i].device_id),
            &sender.public(),
        )
        .map_err(|e| format!("recipient {i}: opening failed at step {}", e.step()))?;
        if opened.plaintext[..] != plaintext[..] {
            return Err(format!("recipient {i}: opening does not give `plaintext`"));
        }
    }
    Ok(())
}

fn check_envelope_invalid(case: &EnvelopeInvalid) -> Result<(), String> {
    let recipient = IdentitySecret::from_hex(&case.recipient_identity_private).map_err(err)?;
    let sender = IdentityPublic::from_hex(&case.sender_identity_public).map_err(err)?;
    let sealed = hex_bytes(&case.sealed, "sealed")?;
    match envelope::open(&sealed, &recipient, None, &sender) {
        Ok(_) => Err(format!("opened, but must fail at step {}", case.error)),
        Err(e) if e.step() == case.error => Ok(()),
        Err(e) => Err(format!(
            "failed at step {}, expected {}",
            e.step(),
            case.error
        )),
    }
}

fn check_store_valid(case: &StoreValid) -> Result<(), String> {
    let key = StoreKey::from_bytes(parse_hex_array(&case.store_key, "store_key").map_err(err)?);
    let params = ScryptParams {
        log2_n: case.log2_n,
        r: case.r,
        p: case.p,
    };
    let salt = parse_hex_array(&case.salt, "salt").map_err(err)?;
    let iv = parse_hex_array(&case.iv, "iv").map_err(err)?;
    let file = store::wrap_store_key_with(&key, &case.pin, params, &salt, &iv)
        .map_err(|e| format!("wrapping failed: {e}"))?;
    let expected = hex_bytes(&case.key_file, "key_file")?;
    if file != expected {
        return Err("wrapping does not give `key_file` byte for byte".into());
    }
    let opened = store::open_key_file_danger_any_cost(&expected, &case.pin)
        .map_err(|e| format!("opening failed at step {}", e.step()))?;
    if opened.as_bytes() != key.as_bytes() {
        return Err("opening does not give `store_key`".into());
    }
    Ok(())
}

fn check_store_invalid(case: &StoreInvalid) -> Result<(), String> {
    let file = hex_bytes(&case.key_file, "key_file")?;
    match store::open_key_file_danger_any_cost(&file, &case.pin) {
        Ok(_) => Err(format!("opened, but must fail at step {}", case.error)),
        Err(e) if e.step() == case.error => Ok(()),
        Err(e) => Err(format!(
            "failed at step {}, expected {}",
            e.step(),
            case.error
        )),
    }
}

fn check_record(case: &RecordVector) -> Result<(), String> {
    let key = StoreKey::from_bytes(parse_hex_array(&case.store_key, "store_key").map_err(err)?);
    let cipher = RecordCipher::new(&key);
    let row_id = hex_bytes(&case.row_id, "row_id")?;
    let record = hex_bytes(&case.record, "record")?;
    let opened = cipher.open(&case.table, &row_id, &record);
    match (&case.error, opened) {
        (None, Ok(plaintext)) => {
            let iv = parse_hex_array(&case.iv, "iv").map_err(err)?;
            let expected = hex_bytes(&case.plaintext, "plaintext")?;
            if cipher.seal_with_iv(&iv, &case.table, &row_id, &expected) != record {
                return Err("sealing does not give `record` byte for byte".into());
            }
            if plaintext[..] != expected[..] {
                return Err("opening does not give `plaintext`".into());
            }
            Ok(())
        }
        (None, Err(e)) => Err(format!("opening failed at step {}", e.step())),
        (Some(step), Err(e)) if e.step() == step => Ok(()),
        (Some(step), Err(e)) => Err(format!("failed at step {}, expected {step}", e.step())),
        (Some(step), Ok(_)) => Err(format!("opened, but must fail at step {step}")),
    }
}

fn expect_public(secret: &IdentitySecret, public_hex: &str, who: &str) -> Result<(), String> {
    let given = IdentityPublic::from_hex(public_hex).map_err(err)?;
    if secret.public() != given {
        return Err(format!("{who} public key does not match its private key"));
    }
    Ok(())
}

fn hex_bytes(value: &str, what: &str) -> Result<Vec<u8>, String> {
    hex::decode(value).map_err(|_| format!("{what} is not hex"))
}

fn err(e: Error) -> String {
    e.to_string()
}

// ---------------------------------------------------------------------------
// Generation of the project's own vector files.

/// Deterministic "random" bytes for a label: SHA-256 in counter mode over
/// the label. Vector inputs must be fixed, not secret.
fn fixed(label: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut counter = 0u32;
    while out.len() < len {
        out.extend_from_slice(
            &Sha256::new()
                .chain_update(b"kontor-vectors")
                .chain_update(label.as_bytes())
                .chain_update(counter.to_be_bytes())
                .finalize(),
        );
        counter += 1;
    }
    out.truncate(len);
    out
}

fn fixed_array<const N: usize>(label: &str) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&fixed(label, N));
    out
}

/// The inputs of one generated message.
struct Inputs {
    name: String,
    message_id: MessageId,
    sender_device_id: DeviceId,
    sender: IdentitySecret,
    randomness: SealRandomness,
    recipients: Vec<(DeviceId, IdentitySecret)>,
    plaintext: Vec<u8>,
}

impl Inputs {
    fn new(name: &str, recipients: usize, plaintext: Vec<u8>) -> Self {
        let l = |what: &str| format!("{name}/{what}");
        Self {
            name: name.to_owned(),
            message_id: MessageId(fixed_array(&l("message_id"))),
            sender_device_id: DeviceId(fixed_array(&l("sender_device_id"))),
            sender: IdentitySecret::from_bytes(fixed_array(&l("sender_identity"))),
            randomness: SealRandomness {
                content_key: ContentKey::from_bytes(fixed_array(&l("content_key"))),
                body_iv: fixed_array(&l("body_iv")),
                ephemeral: IdentitySecret::from_bytes(fixed_array(&l("ephemeral"))),
                wrap_ivs: (0..recipients)
                    .map(|i| fixed_array(&l(&format!("wrap_iv/{i}"))))
                    .collect(),
            },
            recipients: (0..recipients)
                .map(|i| {
                    (
                        DeviceId(fixed_array(&l(&format!("recipient_device_id/{i}")))),
                        IdentitySecret::from_bytes(fixed_array(&l(&format!(
                            "recipient_identity/{i}"
                        )))),
                    )
                })
                .collect(),
            plaintext,
        }
    }

    fn recipient_list(&self) -> Vec<Recipient> {
        self.recipients
            .iter()
            .map(|(device_id, secret)| Recipient {
                device_id: *device_id,
                identity: secret.public(),
            })
            .collect()
    }

    fn seal(&self) -> envelope::SealedEnvelope {
        // Invariant: generated inputs have 1 to 3 recipients, small
        // plaintexts and keys derived from hashes, which are not low-order.
        envelope::seal_with_danger_fixed_randomness(
            &self.randomness,
            self.message_id,
            Sender {
                device_id: self.sender_device_id,
                identity: &self.sender,
            },
            &self.recipient_list(),
            &self.plaintext,
        )
        .expect("generated inputs seal")
    }

    fn valid_case(&self) -> EnvelopeValid {
        let sealed = self.seal();
        EnvelopeValid {
            name: self.name.clone(),
            message_id: self.message_id.to_hex(),
            sender_device_id: self.sender_device_id.to_hex(),
            sender_identity_private: hex::encode(*self.sender.to_bytes()),
            sender_identity_public: self.sender.public().to_hex(),
            ephemeral_private: hex::encode(*self.randomness.ephemeral.to_bytes()),
            content_key: hex::encode(self.randomness.content_key.as_bytes()),
            body_iv: hex::encode(self.randomness.body_iv),
            recipients: self
                .recipients
                .iter()
                .zip(sealed.deliveries())
                .zip(&self.randomness.wrap_ivs)
                .map(
                    |(((device_id, secret), delivery), wrap_iv)| VectorRecipient {
                        device_id: device_id.to_hex(),
                        identity_private: hex::encode(*secret.to_bytes()),
                        identity_public: secret.public().to_hex(),
                        wrap_iv: hex::encode(wrap_iv),
                        sealed: hex::encode(delivery.sealed_message(sealed.body())),
                    },
                )
                .collect(),
            plaintext: hex::encode(&self.plaintext),
        }
    }

    /// A sealed message for recipient 0 built from a given body and wrapped
    /// plaintext, with correct MACs: what a malicious sender could produce.
    fn craft(&self, body: &[u8], wrapped: &[u8]) -> Vec<u8> {
        let (device_id, secret) = &self.recipients[0];
        let recipient = Recipient {
            device_id: *device_id,
            identity: secret.public(),
        };
        let e_pub = self.randomness.ephemeral.public();
        let header = envelope::build_header(
            self.message_id,
            self.sender_device_id,
            &self.sender.public(),
            &recipient,
            &e_pub,
        );
        let dh1 = self
            .randomness
            .ephemeral
            .diffie_hellman(&recipient.identity);
        let dh2 = self.sender.diffie_hellman(&recipient.identity);
        let okm = envelope::wrap_keys(&e_pub, &dh1, &dh2, &header);
        let wrap = envelope::build_wrap(&okm, &header, &self.randomness.wrap_ivs[0], wrapped);
        // Invariant: crafted bodies are a few blocks long.
        let len = u32::try_from(body.len()).expect("crafted bodies are small");
        [&header[..], &wrap, &len.to_be_bytes(), body].concat()
    }

    fn body_with_ct(&self, ct: &[u8]) -> Vec<u8> {
        envelope::mac_body(
            &self.randomness.content_key,
            &self.randomness.body_iv,
            b"kontor-v1-body",
            self.message_id.as_bytes(),
            &self.sender_device_id,
            ct,
        )
    }

    fn wrapped_for(&self, body: &[u8]) -> Vec<u8> {
        [
            &self.randomness.content_key.as_bytes()[..],
            &primitives::sha256(body),
        ]
        .concat()
    }

    fn invalid(&self, name: &str, sealed: Vec<u8>, error: &str) -> EnvelopeInvalid {
        self.invalid_as(
            name,
            sealed,
            error,
            &self.recipients[0].1,
            &self.sender.public(),
        )
    }

    fn invalid_as(
        &self,
        name: &str,
        sealed: Vec<u8>,
        error: &str,
        recipient: &IdentitySecret,
        sender: &IdentityPublic,
    ) -> EnvelopeInvalid {
        EnvelopeInvalid {
            name: name.to_owned(),
            recipient_identity_private: hex::encode(*recipient.to_bytes()),
            sender_identity_public: sender.to_hex(),
            sealed: hex::encode(sealed),
            error: error.to_owned(),
        }
    }
}

/// The project's envelope vectors: the valid cases protocol.md asks for and
/// one invalid case for every named opening step.
pub fn generate_envelope() -> EnvelopeVectors {
    let valid_inputs = [
        Inputs::new("empty", 1, Vec::new()),
        Inputs::new("one byte", 1, b"k".to_vec()),
        Inputs::new("exact block", 1, b"sixteen bytes!!!".to_vec()),
        Inputs::new("64 KiB", 1, fixed("64 KiB/plaintext", 64 * 1024)),
        Inputs::new(
            "group of 3",
            3,
            br#"{"v":1,"kind":"text","conversation":{"group":"g1"},"sent_at_ms":0,"text":"Hallo zusammen"}"#.to_vec(),
        ),
    ];
    let valid = valid_inputs.iter().map(Inputs::valid_case).collect();

    let base = Inputs::new("invalid base", 1, b"Treffen um 10 Uhr".to_vec());
    let envelope = base.seal();
    let good = envelope.deliveries()[0].sealed_message(envelope.body());
    let body_at = envelope::DELIVERY_LEN + 4;
    let mut invalid = Vec::new();

    let mut version = good.clone();
    version[0] = 0x02;
    invalid.push(base.invalid("version 2", version, "version"));

    let truncated = good[..good.len() - 1].to_vec();
    invalid.push(base.invalid("truncated by one byte", truncated, "length"));

    let stranger = IdentitySecret::from_bytes(fixed_array("invalid/stranger"));
    invalid.push(base.invalid_as(
        "opened by another device's key",
        good.clone(),
        "recipient",
        &stranger,
        &base.sender.public(),
    ));
    invalid.push(base.invalid_as(
        "sender key not the expected one",
        good.clone(),
        "sender_key",
        &base.recipients[0].1,
        &stranger.public(),
    ));

    let mut low_order = good.clone();
    low_order[113..145].fill(0);
    invalid.push(base.invalid("ephemeral key of low order (zero)", low_order, "low_order"));

    let mut wrap_mac = good.clone();
    wrap_mac[envelope::DELIVERY_LEN - 1] ^= 0x01;
    invalid.push(base.invalid("flipped bit in wrap_mac", wrap_mac, "wrap_mac"));

    // A wrap with a valid MAC whose plaintext is not 96 bytes.
    let mut long_wrapped = base.wrapped_for(envelope.body());
    long_wrapped.extend_from_slice(&[0u8; 15]);
    invalid.push(base.invalid(
        "wrap decrypts to 111 bytes",
        base.craft(envelope.body(), &long_wrapped),
        "wrap_padding",
    ));

    let mut tampered_body = envelope.body().to_vec();
    tampered_body[20] ^= 0x80;
    let mut body_hash = good.clone();
    body_hash[body_at + 20] ^= 0x80;
    invalid.push(base.invalid("flipped bit in body", body_hash, "body_hash"));

    // The wrap names the tampered body, so only the body MAC catches it.
    invalid.push(base.invalid(
        "flipped bit in body with matching body_hash",
        base.craft(&tampered_body, &base.wrapped_for(&tampered_body)),
        "body_mac",
    ));

    // One block whose plaintext ends in 0x00: never valid PKCS#7.
    let (ck_enc, _) = primitives::split_key(base.randomness.content_key.as_bytes());
    let block = primitives::cbc_encrypt(ck_enc, &base.randomness.body_iv, &[0u8; 16]);
    let bad_padding = base.body_with_ct(&block[..16]);
    invalid.push(base.invalid(
        "authenticated body with invalid padding",
        base.craft(&bad_padding, &base.wrapped_for(&bad_padding)),
        "body_padding",
    ));

    EnvelopeVectors {
        protocol: ENVELOPE_PROTOCOL.to_owned(),
        valid,
        invalid,
    }
}

/// The project's store vectors: key files at a small scrypt cost (protocol.md
/// allows this for vectors), one invalid case per store error, and records.
pub fn generate_store() -> StoreVectors {
    let params = ScryptParams {
        log2_n: 10,
        r: 8,
        p: 1,
    };
    let make = |name: &str, pin: &str| {
        let l = |what: &str| format!("store/{name}/{what}");
        let key = StoreKey::from_bytes(fixed_array(&l("store_key")));
        let salt: [u8; 16] = fixed_array(&l("salt"));
        let iv: [u8; 16] = fixed_array(&l("iv"));
        // Invariant: the parameters above are in range.
        let file =
            store::wrap_store_key_with(&key, pin, params, &salt, &iv).expect("valid parameters");
        StoreValid {
            name: name.to_owned(),
            pin: pin.to_owned(),
            store_key: hex::encode(key.as_bytes()),
            salt: hex::encode(salt),
            log2_n: params.log2_n,
            r: params.r,
            p: params.p,
            iv: hex::encode(iv),
            key_file: hex::encode(file),
        }
    };
    let valid = vec![
        make("six-digit PIN", "424242"),
        make("alphanumeric PIN with umlaut", "Kontor-Prüfung-2026"),
        make("empty PIN", ""),
    ];
    let base = &valid[0];
    // Invariant: the key file was just generated as hex.
    let file = hex::decode(&base.key_file).expect("generated hex");
    let invalid_case = |name: &str, pin: &str, bytes: Vec<u8>, error: &str| StoreInvalid {
        name: name.to_owned(),
        pin: pin.to_owned(),
        key_file: hex::encode(bytes),
        error: error.to_owned(),
    };
    let mut bad_magic = file.clone();
    bad_magic[0] = b'X';
    let mut bad_version = file.clone();
    bad_version[4] = 0x02;
    let mut flipped_ct = file.clone();
    flipped_ct[50] ^= 0x01;
    let mut huge_n = file.clone();
    huge_n[5] = 40;
    let invalid = vec![
        invalid_case("wrong pin", "424243", file.clone(), "pin"),
        invalid_case(
            "truncated",
            &base.pin,
            file[..file.len() - 1].to_vec(),
            "format",
        ),
        invalid_case("bad magic", &base.pin, bad_magic, "format"),
        invalid_case("log2 N out of range", &base.pin, huge_n, "format"),
        invalid_case("version 2", &base.pin, bad_version, "version"),
        invalid_case("flipped bit in wrapped key", &base.pin, flipped_ct, "pin"),
    ];

    let record_key = StoreKey::from_bytes(fixed_array("store/records/store_key"));
    let cipher = RecordCipher::new(&record_key);
    let record = |name: &str, table: &str, row_id: &[u8], plaintext: &[u8]| {
        let iv: [u8; 16] = fixed_array(&format!("store/records/{name}/iv"));
        RecordVector {
            name: name.to_owned(),
            store_key: hex::encode(record_key.as_bytes()),
            table: table.to_owned(),
            row_id: hex::encode(row_id),
            iv: hex::encode(iv),
            plaintext: hex::encode(plaintext),
            record: hex::encode(cipher.seal_with_iv(&iv, table, row_id, plaintext)),
            error: None,
        }
    };
    let message = record(
        "message row 7",
        "messages",
        &7i64.to_be_bytes(),
        b"Treffen um 10 Uhr",
    );
    let mut moved = message.clone();
    moved.name = "record moved to row 8".to_owned();
    moved.row_id = hex::encode(8i64.to_be_bytes());
    moved.error = Some("record".to_owned());
    let mut other_table = message.clone();
    other_table.name = "record moved to another table".to_owned();
    other_table.table = "contacts".to_owned();
    other_table.error = Some("record".to_owned());
    let records = vec![
        message,
        record("empty record", "settings", b"pin_policy", b""),
        moved,
        other_table,
    ];

    StoreVectors {
        protocol: STORE_PROTOCOL.to_owned(),
        valid,
        invalid,
        records,
    }
}
