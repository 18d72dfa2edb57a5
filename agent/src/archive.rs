//! Archive export: the pure parts. Which stored messages a request covers,
//! the JSON document they become, how documents are split into parts, and
//! how the archive's owner opens a part. [`crate::Agent`] seals and uploads.
//!
//! One part is the document
//!
//! ```json
//! {"v":1,"request":"<32 hex>","user":"anna@example.org","device":"<32 hex>",
//!  "from_ms":0,"to_ms":10,"exported_at_ms":11,
//!  "messages":[{"conversation":"user:ben@example.org","from":"ben@example.org",
//!               "sent_at_ms":5,"kind":"text","text":"...","attachment":null}]}
//! ```
//!
//! sealed with `kontor_crypto::seal_archive_part` for the organisation's
//! archive key (recipient device id 16 zero bytes). Every message of the
//! local store is covered, sent and received, of every conversation,
//! broadcasts included, when `from_ms <= sent_at_ms < to_ms`; oldest first.
//! A file message carries its attachment's name, media type and size in
//! bytes, **not its contents** (those stay encrypted blobs on the relay; the
//! key to them is not exported either).
//!
//! The plaintext lives only in memory, in buffers that are zeroized when
//! dropped; nothing is written to disk or logged.

use kontor_crypto::{DeviceId, IdentityPublic, IdentitySecret, SealedMessage};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::store::StoredMessage;

/// The version of the document format.
pub const DOCUMENT_VERSION: u32 = 1;
/// Most plaintext bytes of one part: well below the relay's default blob
/// limit (64 MiB), so that a part plus sealing overhead always fits.
pub const PART_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Most parts of one export: every part's entry must fit the relay's 16 KiB
/// receipt. A larger export is refused; ask for a narrower range.
pub const PARTS_MAX: usize = 64;

/// What an export document says about itself.
#[derive(Debug, Clone, Serialize)]
pub struct ExportHeader {
    /// The request id, hex.
    pub request: String,
    /// The exporting user.
    pub user: String,
    /// The exporting device, hex.
    pub device: String,
    /// Start of the range, inclusive.
    pub from_ms: i64,
    /// End of the range, exclusive.
    pub to_ms: i64,
    /// When the device exported (its clock).
    pub exported_at_ms: i64,
}

/// One document, its plaintext zeroized on drop.
pub struct Part {
    /// The JSON document.
    pub document: Zeroizing<Vec<u8>>,
    /// How many messages it holds.
    pub messages: usize,
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Part")
            .field(
                "document",
                &format_args!("[{} bytes redacted]", self.document.len()),
            )
            .field("messages", &self.messages)
            .finish()
    }
}

#[derive(Serialize)]
struct Document<'a> {
    v: u32,
    #[serde(flatten)]
    header: &'a ExportHeader,
    messages: &'a [Entry<'a>],
}

#[derive(Serialize)]
struct Entry<'a> {
    conversation: &'a str,
    from: &'a str,
    sent_at_ms: i64,
    kind: &'a str,
    text: &'a str,
    attachment: Option<AttachmentMeta<'a>>,
}

#[derive(Serialize)]
struct AttachmentMeta<'a> {
    name: &'a str,
    media_type: &'a str,
    bytes: u64,
}

impl<'a> Entry<'a> {
    fn of(m: &'a StoredMessage) -> Self {
        Entry {
            conversation: &m.conversation,
            from: &m.from_user,
            sent_at_ms: m.sent_at_ms,
            kind: &m.kind,
            text: &m.text,
            attachment: m.attachment.as_ref().map(|a| AttachmentMeta {
                name: &a.name,
                media_type: &a.media_type,
                bytes: a.size,
            }),
        }
    }
}

/// The messages a request covers: `from_ms <= sent_at_ms < to_ms`, in
/// store order.
pub fn in_range(messages: &[StoredMessage], from_ms: i64, to_ms: i64) -> Vec<&StoredMessage> {
    messages
        .iter()
        .filter(|m| from_ms <= m.sent_at_ms && m.sent_at_ms < to_ms)
        .collect()
}

/// Counts serialized bytes without keeping them.
#[derive(Default)]
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn serialized_len(value: &impl Serialize) -> Result<usize> {
    let mut counter = Counter::default();
    serde_json::to_writer(&mut counter, value).map_err(|e| Error::Corrupt(e.to_string()))?;
    Ok(counter.0)
}

/// Serializes into a buffer of exactly the right size, so it never
/// reallocates and leaves no plaintext copy behind in freed memory.
fn to_zeroizing(value: &impl Serialize) -> Result<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(Vec::with_capacity(serialized_len(value)?));
    serde_json::to_writer(&mut *out, value).map_err(|e| Error::Corrupt(e.to_string()))?;
    Ok(out)
}

/// The export documents for `messages` (already filtered with
/// [`in_range`]): one part, or several of at most `part_bytes_max` bytes
/// each when the messages do not fit one. Each part is a whole document
/// with the same header. No messages still give one part, so the archive
/// learns that the range was empty. More than [`PARTS_MAX`] parts, or one
/// message that alone exceeds `part_bytes_max`, is an error.
pub fn export_parts(
    header: &ExportHeader,
    messages: &[&StoredMessage],
    part_bytes_max: usize,
) -> Result<Vec<Part>> {
    let entries: Vec<Entry<'_>> = messages.iter().map(|m| Entry::of(m)).collect();
    let empty = serialized_len(&Document {
        v: DOCUMENT_VERSION,
        header,
        messages: &[],
    })?;
    // Greedy: fill a part until the next entry (after a comma unless it is
    // the part's first) would not fit.
    let mut bounds = Vec::new();
    let (mut start, mut size) = (0, empty);
    for (i, entry) in entries.iter().enumerate() {
        let len = serialized_len(entry)?;
        if empty + len > part_bytes_max {
            return Err(Error::Archive(format!(
                "a message of {len} bytes does not fit a part of {part_bytes_max} bytes"
            )));
        }
        let comma = usize::from(i > start);
        if size + comma + len > part_bytes_max {
            bounds.push(start..i);
            (start, size) = (i, empty + len);
        } else {
            size += comma + len;
        }
    }
    bounds.push(start..entries.len());
    if bounds.len() > PARTS_MAX {
        return Err(Error::Archive(format!(
            "the export needs {} parts, at most {PARTS_MAX} are allowed: ask for a shorter range",
            bounds.len()
        )));
    }
    bounds
        .into_iter()
        .map(|range| {
            let messages = range.len();
            let document = to_zeroizing(&Document {
                v: DOCUMENT_VERSION,
                header,
                messages: &entries[range],
            })?;
            Ok(Part { document, messages })
        })
        .collect()
}

/// An opened archive part.
pub struct OpenedPart {
    /// The device that sealed it (authenticated: the part's MACs bind it).
    pub sender_device: DeviceId,
    /// The identity key it was sealed with. Opening proves the sealer held
    /// this key; compare it with the key directory to know whose it is.
    pub sender_key: IdentityPublic,
    /// The JSON document.
    pub document: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for OpenedPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedPart")
            .field("sender_device", &self.sender_device)
            .field("sender_key", &self.sender_key)
            .finish_non_exhaustive()
    }
}

/// Where the sender's identity key sits in a sealed message's header:
/// `0x01 || message_id (16) || sender_device_id (16) || IK_A.public (32) ||
/// ...` (protocol.md, "Wrap layer").
const SENDER_KEY_AT: std::ops::Range<usize> = 33..65;

/// Opens an archive part with the archive's private key: every check of
/// protocol v1, for recipient device id 16 zero bytes. The sender key is
/// taken from the header (the archive has no directory of its own); the
/// open then proves the sealer held it. The document must be a version 1
/// export naming the device that sealed it.
pub fn open_part(sealed: &[u8], archive_key: &IdentitySecret) -> Result<OpenedPart> {
    let parsed = SealedMessage::parse(sealed)
        .map_err(|e| Error::Archive(format!("not a sealed archive part ({})", e.step())))?;
    if parsed.recipient_device_id() != DeviceId::ARCHIVE {
        return Err(Error::Archive(
            "sealed for a device, not for an archive key".into(),
        ));
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&sealed[SENDER_KEY_AT]);
    let sender_key = IdentityPublic(key);
    let opened = parsed
        .open(archive_key, Some(DeviceId::ARCHIVE), &sender_key)
        .map_err(|e| match e.step() {
            "recipient" => Error::Archive("sealed for another archive key".into()),
            step => Error::Archive(format!("altered or damaged (failed at step {step})")),
        })?;
    let document: serde_json::Value = serde_json::from_slice(&opened.plaintext)
        .map_err(|_| Error::Archive("the document is not JSON".into()))?;
    if document["v"] != DOCUMENT_VERSION {
        return Err(Error::Archive(
            "the document is not a version 1 export".into(),
        ));
    }
    if document["device"] != opened.sender_device_id.to_hex() {
        return Err(Error::Archive(format!(
            "the document names another device than the one that sealed it ({})",
            opened.sender_device_id
        )));
    }
    Ok(OpenedPart {
        sender_device: opened.sender_device_id,
        sender_key,
        document: opened.plaintext,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AttachmentRef;
    use kontor_crypto::{MessageId, Sender};

    fn message(sent_at_ms: i64, text: &str) -> StoredMessage {
        StoredMessage {
            conversation: "user:ben@example.org".into(),
            from_user: "ben@example.org".into(),
            from_device: "11".repeat(16),
            outgoing: false,
            kind: "text".into(),
            text: text.into(),
            sent_at_ms,
            attachment: None,
        }
    }

    fn header() -> ExportHeader {
        ExportHeader {
            request: "ab".repeat(16),
            user: "anna@example.org".into(),
            device: "22".repeat(16),
            from_ms: 100,
            to_ms: 200,
            exported_at_ms: 300,
        }
    }

    fn texts(messages: &[&StoredMessage]) -> Vec<String> {
        messages.iter().map(|m| m.text.clone()).collect()
    }

    #[test]
    fn the_range_includes_from_and_excludes_to() {
        let messages = [
            message(99, "before"),
            message(100, "at from"),
            message(150, "inside"),
            message(199, "last inside"),
            message(200, "at to"),
            message(i64::MIN, "no clock"),
        ];
        assert_eq!(
            texts(&in_range(&messages, 100, 200)),
            ["at from", "inside", "last inside"]
        );
        assert!(in_range(&messages, 200, 201)[0].text == "at to");
        assert!(in_range(&messages, 0, 99).is_empty());
    }

    #[test]
    fn the_document_has_the_agreed_shape_without_file_contents() {
        let mut file = message(150, "[file bericht.pdf, 1234 bytes]");
        file.kind = "file".into();
        file.outgoing = true;
        file.from_user = "anna@example.org".into();
        file.attachment = Some(AttachmentRef {
            blob_id: "cc".repeat(16),
            key: "dd".repeat(64),
            sender_device: "22".repeat(16),
            name: "bericht.pdf".into(),
            media_type: "application/pdf".into(),
            size: 1234,
        });
        let mut broadcast = message(160, "Wartung um 18 Uhr");
        broadcast.kind = "broadcast".into();
        broadcast.from_user = "Administration".into();
        broadcast.conversation = "broadcast:all".into();
        broadcast.from_device = String::new();
        let messages = [message(120, "Hallo"), file, broadcast];
        let parts = export_parts(
            &header(),
            &messages.iter().collect::<Vec<_>>(),
            PART_BYTES_MAX,
        )
        .unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].messages, 3);
        let document: serde_json::Value = serde_json::from_slice(&parts[0].document).unwrap();
        assert_eq!(
            document,
            serde_json::json!({
                "v": 1, "request": "ab".repeat(16), "user": "anna@example.org",
                "device": "22".repeat(16), "from_ms": 100, "to_ms": 200, "exported_at_ms": 300,
                "messages": [
                    { "conversation": "user:ben@example.org", "from": "ben@example.org",
                      "sent_at_ms": 120, "kind": "text", "text": "Hallo", "attachment": null },
                    { "conversation": "user:ben@example.org", "from": "anna@example.org",
                      "sent_at_ms": 150, "kind": "file", "text": "[file bericht.pdf, 1234 bytes]",
                      "attachment": { "name": "bericht.pdf", "media_type": "application/pdf", "bytes": 1234 } },
                    { "conversation": "broadcast:all", "from": "Administration",
                      "sent_at_ms": 160, "kind": "broadcast", "text": "Wartung um 18 Uhr", "attachment": null },
                ],
            })
        );
        // The attachment's key and blob id stay out of the archive.
        let text = String::from_utf8(parts[0].document.to_vec()).unwrap();
        assert!(!text.contains(&"dd".repeat(64)) && !text.contains(&"cc".repeat(16)));
        // The buffer was sized exactly: no reallocation left a copy behind.
        assert_eq!(parts[0].document.capacity(), parts[0].document.len());
    }

    #[test]
    fn an_empty_range_gives_one_empty_part_and_big_exports_split() {
        let parts = export_parts(&header(), &[], PART_BYTES_MAX).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].messages, 0);
        let document: serde_json::Value = serde_json::from_slice(&parts[0].document).unwrap();
        assert_eq!(document["messages"], serde_json::json!([]));

        let messages: Vec<StoredMessage> = (0..10)
            .map(|i| message(100 + i, &"x".repeat(100)))
            .collect();
        let refs: Vec<&StoredMessage> = messages.iter().collect();
        let whole = export_parts(&header(), &refs, PART_BYTES_MAX).unwrap();
        let limit = whole[0].document.len() / 3;
        let parts = export_parts(&header(), &refs, limit).unwrap();
        assert!(parts.len() >= 3, "{}", parts.len());
        assert_eq!(parts.iter().map(|p| p.messages).sum::<usize>(), 10);
        let mut times = Vec::new();
        for part in &parts {
            assert!(part.document.len() <= limit);
            let document: serde_json::Value = serde_json::from_slice(&part.document).unwrap();
            assert_eq!(document["request"], "ab".repeat(16));
            for m in document["messages"].as_array().unwrap() {
                times.push(m["sent_at_ms"].as_i64().unwrap());
            }
        }
        assert_eq!(times, (100..110).collect::<Vec<_>>());

        // One message bigger than a part, or too many parts: refused.
        assert!(matches!(
            export_parts(&header(), &refs, 300),
            Err(Error::Archive(_))
        ));
        let many: Vec<StoredMessage> = (0..PARTS_MAX as i64 + 1)
            .map(|i| message(100 + i, "y"))
            .collect();
        let one = export_parts(&header(), &[&many[0]], PART_BYTES_MAX).unwrap();
        assert!(matches!(
            export_parts(
                &header(),
                &many.iter().collect::<Vec<_>>(),
                one[0].document.len()
            ),
            Err(Error::Archive(why)) if why.contains("parts")
        ));
    }

    #[test]
    fn a_part_opens_only_with_its_key_and_unaltered() {
        let mut rng = kontor_crypto::os_rng();
        let archive = IdentitySecret::generate(&mut rng);
        let device = IdentitySecret::generate(&mut rng);
        let device_id = DeviceId([0x22; 16]);
        let parts = export_parts(&header(), &[&message(150, "Hallo")], PART_BYTES_MAX).unwrap();
        let seal = |plaintext: &[u8]| {
            kontor_crypto::seal_archive_part(
                &mut kontor_crypto::os_rng(),
                MessageId::random(&mut kontor_crypto::os_rng()),
                Sender {
                    device_id,
                    identity: &device,
                },
                &archive.public(),
                plaintext,
            )
            .unwrap()
        };
        let sealed = seal(&parts[0].document);

        let opened = open_part(&sealed, &archive).unwrap();
        assert_eq!(&opened.document[..], &parts[0].document[..]);
        assert_eq!(opened.sender_device, device_id);
        assert_eq!(opened.sender_key, device.public());

        let wrong = IdentitySecret::generate(&mut rng);
        let err = open_part(&sealed, &wrong).unwrap_err().to_string();
        assert!(err.contains("another archive key"), "{err}");

        // Every byte of header, wrap and body is covered.
        for at in [5, 40, 100, 200, sealed.len() - 1] {
            let mut altered = sealed.clone();
            altered[at] ^= 1;
            assert!(
                matches!(open_part(&altered, &archive), Err(Error::Archive(_))),
                "byte {at}"
            );
        }
        assert!(open_part(&sealed[..100], &archive).is_err());

        // A part whose document claims another device is refused.
        let mut other = header();
        other.device = "33".repeat(16);
        let parts = export_parts(&other, &[], PART_BYTES_MAX).unwrap();
        let err = open_part(&seal(&parts[0].document), &archive)
            .unwrap_err()
            .to_string();
        assert!(err.contains("another device"), "{err}");
    }
}
