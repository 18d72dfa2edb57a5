//! Sealed messages: one body per message, one wrap per recipient device.
//!
//! The layout and every check follow protocol.md, "Content layer", "Wrap
//! layer" and "What one recipient device receives". Sealing yields a
//! [`SealedEnvelope`] (the body once plus a [`Delivery`] per device, as the
//! relay stores them); each device receives and opens a [`SealedMessage`].

use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::Error;
use crate::keys::{ContentKey, DeviceId, IdentityPublic, IdentitySecret, MessageId};
use crate::primitives::{self, BLOCK_LEN, MAC_LEN};

/// The protocol version byte of v1.
pub const VERSION: u8 = 0x01;
/// Header length: version, message id, sender device id and key, recipient
/// device id and key, ephemeral key.
pub const HEADER_LEN: usize = 1 + 16 + 16 + 32 + 16 + 32 + 32;
/// Wrap length: IV, the encrypted content key and body hash, MAC.
pub const WRAP_LEN: usize = BLOCK_LEN + 112 + MAC_LEN;
/// What the relay keeps per recipient device: header and wrap.
pub const DELIVERY_LEN: usize = HEADER_LEN + WRAP_LEN;
/// The smallest body: IV, one block, MAC.
pub const MIN_BODY_LEN: usize = BLOCK_LEN + BLOCK_LEN + MAC_LEN;
/// The most recipient devices one message may be sealed for.
pub const MAX_RECIPIENTS: usize = 10_000;

const BODY_LABEL: &[u8] = b"kontor-v1-body";
const WRAP_LABEL: &[u8] = b"kontor-v1-wrap";
/// Length of the wrapped plaintext: content key and body hash.
const WRAPPED_LEN: usize = 64 + MAC_LEN;

/// One device a message is sealed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recipient {
    /// The device's id.
    pub device_id: DeviceId,
    /// The device's identity public key, from the key directory.
    pub identity: IdentityPublic,
}

/// The sending device: its id and identity key.
#[derive(Debug, Clone, Copy)]
pub struct Sender<'a> {
    /// The sending device's id.
    pub device_id: DeviceId,
    /// The sending device's identity private key.
    pub identity: &'a IdentitySecret,
}

/// Every random input of one sealing, fixed in advance.
///
/// [`seal`] makes one from the caller's RNG. Test vectors fix it by hand;
/// production code must never reuse one (see
/// [`seal_with_danger_fixed_randomness`]).
#[derive(Debug, Clone)]
pub struct SealRandomness {
    /// The content key `CK`.
    pub content_key: ContentKey,
    /// The body IV.
    pub body_iv: [u8; 16],
    /// The ephemeral key pair `e`, shared by all wraps of the message.
    pub ephemeral: IdentitySecret,
    /// One wrap IV per recipient, in recipient order.
    pub wrap_ivs: Vec<[u8; 16]>,
}

impl SealRandomness {
    /// Fresh randomness for a message to `recipients` devices.
    pub fn generate(rng: &mut (impl CryptoRng + ?Sized), recipients: usize) -> Self {
        let content_key = ContentKey::generate(rng);
        let mut body_iv = [0u8; 16];
        rng.fill_bytes(&mut body_iv);
        let ephemeral = IdentitySecret::generate(rng);
        let wrap_ivs = (0..recipients)
            .map(|_| {
                let mut iv = [0u8; 16];
                rng.fill_bytes(&mut iv);
                iv
            })
            .collect();
        Self {
            content_key,
            body_iv,
            ephemeral,
            wrap_ivs,
        }
    }
}

/// One sealed message as the sender posts it: the body once, and one
/// header-and-wrap per recipient device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedEnvelope {
    body: Vec<u8>,
    deliveries: Vec<Delivery>,
}

impl SealedEnvelope {
    /// The encrypted body (`body_iv || body_ct || body_mac`), stored once.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// One delivery per recipient device, in the order the recipients were given.
    pub fn deliveries(&self) -> &[Delivery] {
        &self.deliveries
    }

    /// The sealed message one device receives, if the envelope names it.
    pub fn sealed_for(&self, device_id: DeviceId) -> Option<Vec<u8>> {
        self.deliveries
            .iter()
            .find(|d| d.recipient_device_id() == device_id)
            .map(|d| d.sealed_message(&self.body))
    }
}

/// What the relay keeps for one recipient device: the header and the wrap.
#[derive(Clone, PartialEq, Eq)]
pub struct Delivery(Box<[u8; DELIVERY_LEN]>);

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Delivery(to {})", self.recipient_device_id())
    }
}

impl Delivery {
    /// Parses the 305 bytes of a header and a wrap.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let array: [u8; DELIVERY_LEN] = bytes
            .try_into()
            .map_err(|_| Error::Length("a delivery is exactly 305 bytes"))?;
        Ok(Self(Box::new(array)))
    }

    /// The 305 bytes of header and wrap.
    pub fn as_bytes(&self) -> &[u8; DELIVERY_LEN] {
        &self.0
    }

    /// The recipient device named in the header.
    pub fn recipient_device_id(&self) -> DeviceId {
        Header(&self.0[..HEADER_LEN]).recipient_device_id()
    }

    /// `header || wrap || u32be(len(body)) || body`: what the device receives.
    pub fn sealed_message(&self, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(DELIVERY_LEN + 4 + body.len());
        out.extend_from_slice(&self.0[..]);
        // Invariant: bodies are built by `seal`, which refuses plaintexts
        // whose body would not fit the u32 field; the relay checks lengths of
        // bodies it receives against a far smaller limit.
        let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(body);
        out
    }
}

/// Seals `plaintext` for every device in `recipients` with fresh randomness.
pub fn seal(
    rng: &mut (impl CryptoRng + ?Sized),
    message_id: MessageId,
    sender: Sender<'_>,
    recipients: &[Recipient],
    plaintext: &[u8],
) -> Result<SealedEnvelope, Error> {
    let randomness = SealRandomness::generate(rng, recipients.len());
    seal_with_danger_fixed_randomness(&randomness, message_id, sender, recipients, plaintext)
}

/// Seals with every random input given. Reusing a [`SealRandomness`] for two
/// messages destroys their confidentiality: this exists for test vectors.
pub fn seal_with_danger_fixed_randomness(
    randomness: &SealRandomness,
    message_id: MessageId,
    sender: Sender<'_>,
    recipients: &[Recipient],
    plaintext: &[u8],
) -> Result<SealedEnvelope, Error> {
    if recipients.is_empty() || recipients.len() > MAX_RECIPIENTS {
        return Err(Error::RecipientCount {
            got: recipients.len(),
            max: MAX_RECIPIENTS,
        });
    }
    if randomness.wrap_ivs.len() != recipients.len() {
        return Err(Error::Invalid {
            what: "seal randomness",
            why: "needs exactly one wrap IV per recipient",
        });
    }
    // The body must fit the u32 length field: IV + padded ciphertext + MAC.
    let body_len = BLOCK_LEN + (plaintext.len() / BLOCK_LEN + 1) * BLOCK_LEN + MAC_LEN;
    if u32::try_from(body_len).is_err() {
        return Err(Error::TooLarge(plaintext.len()));
    }

    let body = seal_body(
        &randomness.content_key,
        &randomness.body_iv,
        BODY_LABEL,
        message_id.as_bytes(),
        &sender.device_id,
        plaintext,
    );
    let body_hash = primitives::sha256(&body);
    let sender_public = sender.identity.public();
    let ephemeral_public = randomness.ephemeral.public();

    let mut deliveries = Vec::with_capacity(recipients.len());
    for (recipient, wrap_iv) in recipients.iter().zip(&randomness.wrap_ivs) {
        let header = build_header(
            message_id,
            sender.device_id,
            &sender_public,
            recipient,
            &ephemeral_public,
        );
        let dh1 = randomness.ephemeral.diffie_hellman(&recipient.identity);
        let dh2 = sender.identity.diffie_hellman(&recipient.identity);
        if is_zero(&dh1) || is_zero(&dh2) {
            return Err(Error::LowOrder);
        }
        let okm = wrap_keys(&ephemeral_public, &dh1, &dh2, &header);
        let mut wrapped = Zeroizing::new([0u8; WRAPPED_LEN]);
        wrapped[..64].copy_from_slice(&randomness.content_key.0);
        wrapped[64..].copy_from_slice(&body_hash);
        let wrap = build_wrap(&okm, &header, wrap_iv, &wrapped[..]);
        let mut delivery = Box::new([0u8; DELIVERY_LEN]);
        delivery[..HEADER_LEN].copy_from_slice(&header);
        delivery[HEADER_LEN..].copy_from_slice(&wrap);
        deliveries.push(Delivery(delivery));
    }
    Ok(SealedEnvelope { body, deliveries })
}

/// Seals an archive part: a sealed message for the organisation's archive
/// key, whose device id is 16 zero bytes (protocol.md, "Archive export").
pub fn seal_archive_part(
    rng: &mut (impl CryptoRng + ?Sized),
    message_id: MessageId,
    sender: Sender<'_>,
    archive_key: &IdentityPublic,
    plaintext: &[u8],
) -> Result<Vec<u8>, Error> {
    let recipient = Recipient {
        device_id: DeviceId::ARCHIVE,
        identity: *archive_key,
    };
    let envelope = seal(rng, message_id, sender, &[recipient], plaintext)?;
    Ok(envelope.deliveries[0].sealed_message(&envelope.body))
}

/// A sealed message as one device receives it, with version and lengths
/// checked (steps `version` and `length`); [`SealedMessage::open`] does the rest.
#[derive(Debug, Clone, Copy)]
pub struct SealedMessage<'a> {
    header: Header<'a>,
    wrap: &'a [u8],
    body: &'a [u8],
}

/// What a successful open yields.
#[derive(Debug)]
pub struct Opened {
    /// The message id from the header (check it against replays).
    pub message_id: MessageId,
    /// The sending device.
    pub sender_device_id: DeviceId,
    /// The sending device's identity key.
    pub sender_identity: IdentityPublic,
    /// The plaintext, zeroized when dropped.
    pub plaintext: Zeroizing<Vec<u8>>,
}

impl<'a> SealedMessage<'a> {
    /// Checks steps `version` and `length` and splits the message.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let Some(&version) = bytes.first() else {
            return Err(Error::Length("empty message"));
        };
        if version != VERSION {
            return Err(Error::Version(version));
        }
        if bytes.len() < DELIVERY_LEN + 4 {
            return Err(Error::Length("shorter than header, wrap and length field"));
        }
        let (header, rest) = bytes.split_at(HEADER_LEN);
        let (wrap, rest) = rest.split_at(WRAP_LEN);
        let (len_field, body) = rest.split_at(4);
        let declared = u32::from_be_bytes([len_field[0], len_field[1], len_field[2], len_field[3]]);
        if usize::try_from(declared).ok() != Some(body.len()) {
            return Err(Error::Length("body length field disagrees with the body"));
        }
        if body.len() < MIN_BODY_LEN {
            return Err(Error::Length("body shorter than IV, one block and MAC"));
        }
        Ok(Self {
            header: Header(header),
            wrap,
            body,
        })
    }

    /// The message id named in the header (not yet authenticated).
    pub fn message_id(&self) -> MessageId {
        self.header.message_id()
    }

    /// The sender device named in the header (not yet authenticated): look
    /// up its expected identity key with this.
    pub fn sender_device_id(&self) -> DeviceId {
        self.header.sender_device_id()
    }

    /// The recipient device named in the header.
    pub fn recipient_device_id(&self) -> DeviceId {
        self.header.recipient_device_id()
    }

    /// Opens the message as `recipient`, checking protocol.md's steps 3 to 10
    /// in order. `recipient_device_id` is checked where the caller knows it;
    /// `expected_sender` is the key the caller holds for the sender device.
    pub fn open(
        &self,
        recipient: &IdentitySecret,
        recipient_device_id: Option<DeviceId>,
        expected_sender: &IdentityPublic,
    ) -> Result<Opened, Error> {
        let header = self.header;
        // Step 3: addressed to this device.
        let my_public = recipient.public();
        if !bool::from(header.recipient_identity().ct_eq(&my_public.0[..])) {
            return Err(Error::Recipient);
        }
        if let Some(id) = recipient_device_id
            && id != header.recipient_device_id()
        {
            return Err(Error::Recipient);
        }
        // Step 4: the sender key is the one expected for the sender device.
        let sender_public = header.sender_identity();
        if !bool::from(sender_public.0.ct_eq(&expected_sender.0)) {
            return Err(Error::SenderKey);
        }
        // Step 5: no low-order key agreement.
        let ephemeral_public = header.ephemeral();
        let dh1 = recipient.diffie_hellman(&ephemeral_public);
        let dh2 = recipient.diffie_hellman(&sender_public);
        if is_zero(&dh1) || is_zero(&dh2) {
            return Err(Error::LowOrder);
        }
        // Step 6: the wrap MAC, before any decryption.
        let okm = wrap_keys(&ephemeral_public, &dh1, &dh2, header.0);
        let (key_enc, key_mac) = primitives::split_key(&okm);
        let (wrap_iv, rest) = self.wrap.split_at(BLOCK_LEN);
        let (wrap_ct, wrap_mac) = rest.split_at(rest.len() - MAC_LEN);
        if !primitives::hmac_verify(key_mac, &[header.0, wrap_iv, wrap_ct], wrap_mac) {
            return Err(Error::WrapMac);
        }
        // Step 7: the wrap decrypts to exactly CK || body_hash.
        let wrapped = primitives::cbc_decrypt(key_enc, &to_iv(wrap_iv), wrap_ct)
            .filter(|w| w.len() == WRAPPED_LEN)
            .ok_or(Error::WrapPadding)?;
        let mut ck = Zeroizing::new([0u8; 64]);
        ck.copy_from_slice(&wrapped[..64]);
        let body_hash = &wrapped[64..];
        // Step 8: the body is the one this wrap names.
        if !bool::from(primitives::sha256(self.body).ct_eq(body_hash)) {
            return Err(Error::BodyHash);
        }
        // Steps 9 and 10: the body MAC, then the body.
        let plaintext = open_body(
            &ck,
            BODY_LABEL,
            header.message_id().as_bytes(),
            &header.sender_device_id(),
            self.body,
        )
        .map_err(|step| match step {
            BodyFailure::Mac => Error::BodyMac,
            BodyFailure::Padding => Error::BodyPadding,
        })?;
        Ok(Opened {
            message_id: header.message_id(),
            sender_device_id: header.sender_device_id(),
            sender_identity: sender_public,
            plaintext,
        })
    }
}

/// Parses and opens in one call; see [`SealedMessage::open`].
pub fn open(
    sealed: &[u8],
    recipient: &IdentitySecret,
    recipient_device_id: Option<DeviceId>,
    expected_sender: &IdentityPublic,
) -> Result<Opened, Error> {
    SealedMessage::parse(sealed)?.open(recipient, recipient_device_id, expected_sender)
}

/// A view of the 145 header bytes.
#[derive(Debug, Clone, Copy)]
struct Header<'a>(&'a [u8]);

impl Header<'_> {
    fn array<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&self.0[at..at + N]);
        out
    }
    fn message_id(&self) -> MessageId {
        MessageId(self.array(1))
    }
    fn sender_device_id(&self) -> DeviceId {
        DeviceId(self.array(17))
    }
    fn sender_identity(&self) -> IdentityPublic {
        IdentityPublic(self.array(33))
    }
    fn recipient_device_id(&self) -> DeviceId {
        DeviceId(self.array(65))
    }
    fn recipient_identity(&self) -> &[u8] {
        &self.0[81..113]
    }
    fn ephemeral(&self) -> IdentityPublic {
        IdentityPublic(self.array(113))
    }
}

pub(crate) fn build_header(
    message_id: MessageId,
    sender_device_id: DeviceId,
    sender_public: &IdentityPublic,
    recipient: &Recipient,
    ephemeral_public: &IdentityPublic,
) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[0] = VERSION;
    header[1..17].copy_from_slice(message_id.as_bytes());
    header[17..33].copy_from_slice(sender_device_id.as_bytes());
    header[33..65].copy_from_slice(&sender_public.0);
    header[65..81].copy_from_slice(recipient.device_id.as_bytes());
    header[81..113].copy_from_slice(&recipient.identity.0);
    header[113..145].copy_from_slice(&ephemeral_public.0);
    header
}

/// `HKDF(salt = e.public, ikm = dh1 || dh2, info = "kontor-v1-wrap" || header, L = 64)`.
pub(crate) fn wrap_keys(
    ephemeral_public: &IdentityPublic,
    dh1: &[u8; 32],
    dh2: &[u8; 32],
    header: &[u8],
) -> Zeroizing<[u8; 64]> {
    let mut ikm = Zeroizing::new([0u8; 64]);
    ikm[..32].copy_from_slice(dh1);
    ikm[32..].copy_from_slice(dh2);
    primitives::hkdf64(&ephemeral_public.0, &ikm[..], &[WRAP_LABEL, header])
}

/// `wrap_iv || CBC(key_enc, wrap_iv, wrapped) || HMAC(key_mac, header || wrap_iv || wrap_ct)`.
///
/// `wrapped` is normally `CK || body_hash`; the vector generator passes
/// other lengths to build invalid cases.
pub(crate) fn build_wrap(
    okm: &[u8; 64],
    header: &[u8],
    wrap_iv: &[u8; 16],
    wrapped: &[u8],
) -> Vec<u8> {
    let (key_enc, key_mac) = primitives::split_key(okm);
    let wrap_ct = primitives::cbc_encrypt(key_enc, wrap_iv, wrapped);
    let wrap_mac = primitives::hmac(key_mac, &[header, wrap_iv, &wrap_ct]);
    [&wrap_iv[..], &wrap_ct, &wrap_mac].concat()
}

/// `iv || CBC(ck_enc, iv, plaintext) || HMAC(ck_mac, label || id || device || iv || ct)`.
pub(crate) fn seal_body(
    key: &ContentKey,
    iv: &[u8; 16],
    label: &[u8],
    id: &[u8; 16],
    sender_device_id: &DeviceId,
    plaintext: &[u8],
) -> Vec<u8> {
    let (ck_enc, _) = primitives::split_key(&key.0);
    let ct = primitives::cbc_encrypt(ck_enc, iv, plaintext);
    mac_body(key, iv, label, id, sender_device_id, &ct)
}

/// Assembles `iv || ct || mac` for a given ciphertext (the vector generator
/// uses this directly to build bodies with bad padding).
pub(crate) fn mac_body(
    key: &ContentKey,
    iv: &[u8; 16],
    label: &[u8],
    id: &[u8; 16],
    sender_device_id: &DeviceId,
    ct: &[u8],
) -> Vec<u8> {
    let (_, ck_mac) = primitives::split_key(&key.0);
    let mac = primitives::hmac(ck_mac, &[label, id, sender_device_id.as_bytes(), iv, ct]);
    let mut body = Vec::with_capacity(BLOCK_LEN + ct.len() + MAC_LEN);
    body.extend_from_slice(iv);
    body.extend_from_slice(ct);
    body.extend_from_slice(&mac);
    body
}

/// Which body check failed.
pub(crate) enum BodyFailure {
    Mac,
    Padding,
}

/// Verifies the body MAC (constant time), then decrypts.
pub(crate) fn open_body(
    key: &[u8; 64],
    label: &[u8],
    id: &[u8; 16],
    sender_device_id: &DeviceId,
    body: &[u8],
) -> Result<Zeroizing<Vec<u8>>, BodyFailure> {
    if body.len() < MIN_BODY_LEN {
        return Err(BodyFailure::Mac);
    }
    let (ck_enc, ck_mac) = primitives::split_key(key);
    let (iv, rest) = body.split_at(BLOCK_LEN);
    let (ct, mac) = rest.split_at(rest.len() - MAC_LEN);
    if !primitives::hmac_verify(
        ck_mac,
        &[label, id, sender_device_id.as_bytes(), iv, ct],
        mac,
    ) {
        return Err(BodyFailure::Mac);
    }
    primitives::cbc_decrypt(ck_enc, &to_iv(iv), ct).ok_or(BodyFailure::Padding)
}

fn to_iv(bytes: &[u8]) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv.copy_from_slice(bytes);
    iv
}

fn is_zero(dh: &[u8; 32]) -> bool {
    bool::from(dh.ct_eq(&[0u8; 32]))
}
