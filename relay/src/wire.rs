//! The device API's binary formats: what a sender posts and what a device
//! receives. Pure: bytes in, values out.
//!
//! The relay never decrypts anything. It reads only the clear parts of each
//! delivery's 145-byte header (protocol.md, "Wrap layer"): version, message
//! id, sender device id and key, recipient device id.
//!
//! A posted envelope (`application/vnd.kontor.envelope`):
//!
//! ```text
//! "KENV" || 0x01 || u8 kind (0 direct, 1 group) || [group id (16) if kind = 1]
//!        || u16be(n_blobs) || n_blobs x blob id (16)
//!        || u16be(n_deliveries) || n_deliveries x delivery (305: header || wrap)
//!        || u32be(len(body)) || body
//! ```
//!
//! A delivered message, one per WebSocket binary frame or per batch entry
//! (`application/vnd.kontor.batch` is `u32be(count) || count x (u32be(len) || frame)`):
//!
//! ```text
//! u64be(seq) || u64be(received_at_ms) || sealed message (header || wrap || u32be(len(body)) || body)
//! ```

use kontor_provisioning::DeviceId;

use crate::error::Error;

/// Content type of a posted envelope.
pub const ENVELOPE_CONTENT_TYPE: &str = "application/vnd.kontor.envelope";
/// Content type of a batch of delivered messages.
pub const BATCH_CONTENT_TYPE: &str = "application/vnd.kontor.batch";
/// Magic bytes of a posted envelope.
pub const MAGIC: &[u8; 4] = b"KENV";
/// Envelope format version.
pub const ENVELOPE_VERSION: u8 = 0x01;
/// Protocol v1 header length.
pub const HEADER_LEN: usize = 145;
/// Protocol v1 header + wrap length.
pub const DELIVERY_LEN: usize = 305;
/// Smallest protocol v1 body: IV, one block, MAC.
pub const MIN_BODY_LEN: usize = 64;

/// A 16-byte opaque id (message, group or blob).
pub type Id16 = [u8; 16];

/// Limits applied while parsing a posted envelope.
#[derive(Debug, Clone, Copy)]
pub struct EnvelopeLimits {
    /// Largest body in bytes.
    pub body_bytes_max: usize,
    /// Most deliveries (recipient devices) in one envelope.
    pub recipients_max: usize,
    /// Most attachments named by one envelope.
    pub blobs_max: usize,
}

/// A parsed, structurally valid envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostedEnvelope {
    /// The message id every delivery header names.
    pub message_id: Id16,
    /// The sending device every header names.
    pub sender_device_id: DeviceId,
    /// The sender identity key every header names.
    pub sender_identity: [u8; 32],
    /// The group the message belongs to, if any.
    pub group_id: Option<Id16>,
    /// Attachments the message names; its recipients may download them.
    pub blob_ids: Vec<Id16>,
    /// One per recipient device, each 305 bytes, in posted order.
    pub deliveries: Vec<Delivery>,
    /// The body, stored once.
    pub body: Vec<u8>,
}

/// One recipient device's header and wrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The recipient device named in the header.
    pub recipient: DeviceId,
    /// The recipient identity key named in the header.
    pub recipient_identity: [u8; 32],
    /// Header and wrap, 305 bytes.
    pub bytes: Vec<u8>,
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Error> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        let end = end.ok_or(Error::BadEnvelope(what))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, Error> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<usize, Error> {
        let b = self.take(2, what)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    fn u32(&mut self, what: &'static str) -> Result<usize, Error> {
        let b = self.take(4, what)?;
        usize::try_from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .map_err(|_| Error::BadEnvelope(what))
    }
    fn id(&mut self, what: &'static str) -> Result<Id16, Error> {
        let mut id = [0u8; 16];
        id.copy_from_slice(self.take(16, what)?);
        Ok(id)
    }
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

impl PostedEnvelope {
    /// Parses and checks an envelope: format, limits, and that every
    /// delivery header names the same message, sender and sender key, with
    /// no recipient twice.
    pub fn parse(bytes: &[u8], limits: &EnvelopeLimits) -> Result<Self, Error> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(4, "missing magic")? != MAGIC {
            return Err(Error::BadEnvelope("not a Kontor envelope (magic)"));
        }
        let version = r.u8("missing version")?;
        if version != ENVELOPE_VERSION {
            return Err(Error::BadEnvelope("unsupported envelope version"));
        }
        let group_id = match r.u8("missing kind")? {
            0 => None,
            1 => Some(r.id("truncated group id")?),
            _ => return Err(Error::BadEnvelope("unknown envelope kind")),
        };
        let n_blobs = r.u16("truncated blob count")?;
        if n_blobs > limits.blobs_max {
            return Err(Error::TooMany {
                what: "attachments",
                max: limits.blobs_max,
            });
        }
        let mut blob_ids = Vec::with_capacity(n_blobs);
        for _ in 0..n_blobs {
            let id = r.id("truncated blob id")?;
            if blob_ids.contains(&id) {
                return Err(Error::BadEnvelope("an attachment is named twice"));
            }
            blob_ids.push(id);
        }
        let n = r.u16("truncated delivery count")?;
        if n == 0 {
            return Err(Error::BadEnvelope("no recipient"));
        }
        if n > limits.recipients_max {
            return Err(Error::TooMany {
                what: "recipient devices",
                max: limits.recipients_max,
            });
        }
        let mut deliveries: Vec<Delivery> = Vec::with_capacity(n);
        let mut first: Option<&[u8]> = None;
        for _ in 0..n {
            let d = r.take(DELIVERY_LEN, "truncated delivery")?;
            if d[0] != 0x01 {
                return Err(Error::BadEnvelope("delivery is not protocol v1"));
            }
            // Message id, sender device and sender key: bytes 1..65.
            match first {
                None => first = Some(&d[1..65]),
                Some(f) if f != &d[1..65] => {
                    return Err(Error::BadEnvelope(
                        "deliveries disagree on message, sender or sender key",
                    ));
                }
                Some(_) => {}
            }
            let recipient = DeviceId::from_bytes(array(&d[65..81]));
            if deliveries.iter().any(|x| x.recipient == recipient) {
                return Err(Error::BadEnvelope("a recipient device is named twice"));
            }
            deliveries.push(Delivery {
                recipient,
                recipient_identity: array(&d[81..113]),
                bytes: d.to_vec(),
            });
        }
        let body_len = r.u32("truncated body length")?;
        if body_len > limits.body_bytes_max {
            return Err(Error::TooLarge {
                what: "message body",
                max: limits.body_bytes_max,
            });
        }
        if body_len < MIN_BODY_LEN {
            return Err(Error::BadEnvelope(
                "body shorter than IV, one block and MAC",
            ));
        }
        let body = r
            .take(body_len, "body shorter than its length field")?
            .to_vec();
        if r.at != bytes.len() {
            return Err(Error::BadEnvelope("bytes after the body"));
        }
        // Invariant: n >= 1, so `first` was set in the loop.
        let head = first.expect("at least one delivery");
        Ok(Self {
            message_id: array(&head[0..16]),
            sender_device_id: DeviceId::from_bytes(array(&head[16..32])),
            sender_identity: array(&head[32..64]),
            group_id,
            blob_ids,
            deliveries,
            body,
        })
    }

    /// Encodes an envelope (the agent's side of [`PostedEnvelope::parse`]).
    pub fn encode(
        group_id: Option<Id16>,
        blob_ids: &[Id16],
        deliveries: &[&[u8]],
        body: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + deliveries.len() * DELIVERY_LEN + body.len());
        out.extend_from_slice(MAGIC);
        out.push(ENVELOPE_VERSION);
        match group_id {
            None => out.push(0),
            Some(id) => {
                out.push(1);
                out.extend_from_slice(&id);
            }
        }
        out.extend_from_slice(
            &u16::try_from(blob_ids.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        for id in blob_ids {
            out.extend_from_slice(id);
        }
        out.extend_from_slice(
            &u16::try_from(deliveries.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        for d in deliveries {
            out.extend_from_slice(d);
        }
        out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(body);
        out
    }
}

/// Encodes one delivered message frame.
pub fn encode_frame(seq: u64, received_at_ms: u64, delivery: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + delivery.len() + 4 + body.len());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&received_at_ms.to_be_bytes());
    out.extend_from_slice(delivery);
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A decoded delivered message frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The queue sequence number, to acknowledge.
    pub seq: u64,
    /// When the relay accepted the message.
    pub received_at_ms: u64,
    /// The sealed message for this device (protocol.md's layout).
    pub sealed: Vec<u8>,
}

/// Decodes one delivered message frame.
pub fn decode_frame(bytes: &[u8]) -> Result<Frame, Error> {
    if bytes.len() < 16 + DELIVERY_LEN + 4 {
        return Err(Error::BadEnvelope("frame too short"));
    }
    Ok(Frame {
        seq: u64::from_be_bytes(array(&bytes[0..8])),
        received_at_ms: u64::from_be_bytes(array(&bytes[8..16])),
        sealed: bytes[16..].to_vec(),
    })
}

/// Encodes a batch of frames.
pub fn encode_batch(frames: &[Vec<u8>]) -> Vec<u8> {
    let total: usize = frames.iter().map(|f| f.len() + 4).sum();
    let mut out = Vec::with_capacity(4 + total);
    out.extend_from_slice(
        &u32::try_from(frames.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    for f in frames {
        out.extend_from_slice(&u32::try_from(f.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// Decodes a batch of frames.
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<Frame>, Error> {
    let mut r = Reader { bytes, at: 0 };
    let n = r.u32("truncated batch count")?;
    let mut frames = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let len = r.u32("truncated frame length")?;
        frames.push(decode_frame(r.take(len, "truncated frame")?)?);
    }
    if r.at != bytes.len() {
        return Err(Error::BadEnvelope("bytes after the batch"));
    }
    Ok(frames)
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
