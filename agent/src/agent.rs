//! The agent: enrollment from managed configuration, sending and receiving
//! sealed messages, commands (policy, wipe, broadcast, archive; see
//! [`crate::command`] for their payloads and receipts).

use std::path::{Path, PathBuf};

use kontor_crypto::{
    BlobId, DeviceId, IdentityPublic, IdentitySecret, MessageId, Recipient, SealedMessage, Sender,
};
use kontor_managed_config::{Attachment, Decoded, Policy, android, decode};
use kontor_relay::client::{Answer, DeviceClient};
use kontor_relay::wire::{self, PostedEnvelope};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::archive::{self, ExportHeader};
use crate::command::{self, ArchiveRequest, Broadcast, Command, Incoming};
use crate::error::{Error, Result};
use crate::store::{self, AttachmentRef, Contact, LocalStore, StoredMessage};

/// What enrollment needs besides the data directory.
#[derive(Debug, Clone, Copy)]
pub struct EnrollOptions<'a> {
    /// The managed configuration as the EMM delivered it (Apple plist,
    /// Android bundle JSON, or JSON).
    pub managed_config: &'a [u8],
    /// The organisation's root CA (PEM), to trust the server.
    pub ca_pem: &'a str,
    /// The PIN the user chose.
    pub pin: &'a str,
    /// A name for this device.
    pub device_name: &'a str,
    /// `ios`, `android`, `linux`, ...
    pub platform: &'a str,
}

/// An enrolled, unlocked device.
pub struct Agent {
    store: LocalStore,
    device_id: [u8; 16],
    user: String,
    identity: IdentitySecret,
    client: DeviceClient,
    relay_url: String,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("device_id", &hex::encode(self.device_id))
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The device's state, for `status`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Device id, hex.
    pub device_id: String,
    /// The user.
    pub user: String,
    /// Where the device API is.
    pub relay_url: String,
    /// Messages in the local store.
    pub messages: usize,
}

/// What a send did.
#[derive(Debug, Clone, Serialize)]
pub struct Sent {
    /// The message id, hex.
    pub message_id: String,
    /// Devices it was sealed for.
    pub devices: usize,
    /// Contacts whose identity key changed since last seen (verify their
    /// safety number).
    pub key_changes: Vec<String>,
}

/// What a receive did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Received {
    /// New messages (broadcasts from the administration included, kind
    /// `broadcast`), stored and acknowledged.
    pub messages: Vec<StoredMessage>,
    /// Messages dropped (failed authentication, replays), with the reason.
    pub dropped: Vec<String>,
    /// Policy updates applied.
    pub policy_updates: usize,
    /// The device was wiped by command.
    pub wiped: bool,
    /// Archive requests answered (exported, or refused with the reason).
    pub archives: Vec<ArchiveOutcome>,
    /// Commands other than archive requests refused (unknown kind, malformed
    /// payload), with the reason.
    pub refused_commands: Vec<String>,
}

/// What this device did with one archive request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchiveOutcome {
    /// The request id, hex (as the administration sent it).
    pub request: String,
    /// Whether the export was uploaded.
    pub archived: bool,
    /// Parts uploaded.
    pub parts: usize,
    /// Messages exported, over all parts.
    pub messages: usize,
    /// Why it was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A conversation: with a user, or a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conversation {
    /// 1:1 with this user.
    User(String),
    /// A group, by its 16-byte id.
    Group([u8; 16]),
}

impl Conversation {
    /// `user:<id>` or `group:<hex>`, or a bare user id.
    pub fn parse(text: &str) -> Result<Self> {
        match text.strip_prefix("group:") {
            Some(hex_id) => {
                let mut id = [0u8; 16];
                hex::decode_to_slice(hex_id, &mut id)
                    .map_err(|_| Error::Config("a group id is 32 hex digits".into()))?;
                Ok(Conversation::Group(id))
            }
            None => Ok(Conversation::User(
                text.strip_prefix("user:").unwrap_or(text).to_owned(),
            )),
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Conversation::User(u) => serde_json::json!({ "user": u }),
            Conversation::Group(id) => serde_json::json!({ "group": hex::encode(id) }),
        }
    }
}

/// The policy's attachment kind of a media type.
pub fn attachment_kind(media_type: &str) -> Attachment {
    match media_type.split('/').next().unwrap_or("") {
        "image" => Attachment::Images,
        "video" => Attachment::Videos,
        "audio" => Attachment::Audio,
        _ => Attachment::Files,
    }
}

/// Reads a managed configuration in any format managed-config decodes.
pub fn read_managed_config(bytes: &[u8]) -> Result<Decoded> {
    let head = &bytes[..bytes.len().min(512)];
    let is_plist = bytes.starts_with(b"bplist") || head.windows(6).any(|w| w == b"<plist");
    let decoded = if is_plist {
        decode::apple_plist(bytes)
    } else {
        decode::android_bundle_json(bytes)
    };
    decoded.map_err(|e| Error::Config(e.to_string()))
}

/// Checks a PIN against the policy.
pub fn check_pin(policy: &Policy, pin: &str) -> Result<()> {
    let chars = pin.chars().count();
    if chars < usize::from(policy.pin.min_length) {
        return Err(Error::PinPolicy(format!(
            "at least {} characters",
            policy.pin.min_length
        )));
    }
    if policy.pin.kind == kontor_managed_config::PinKind::Digits
        && !pin.chars().all(|c| c.is_ascii_digit())
    {
        return Err(Error::PinPolicy("digits only".into()));
    }
    Ok(())
}

/// `host:port` and host of an `https://` URL.
fn endpoint(url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| Error::Config(format!("{url} is not an https URL")))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h.to_owned(), p.to_owned()),
        _ => (authority.to_owned(), "443".to_owned()),
    };
    if host.is_empty() {
        return Err(Error::Config(format!("{url} names no host")));
    }
    Ok((format!("{host}:{port}"), host))
}

fn refused(answer: &Answer) -> Error {
    let json = answer.json();
    Error::Refused {
        code: json["error"]["code"].as_str().unwrap_or("http").to_owned(),
        message: json["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("status {}", answer.status)),
    }
}

/// Why a received message's sender key could not be had: only the relay's
/// definite answer that it knows no such device (to this user) drops the
/// message for good; anything else (the relay out of reach, a 5xx, the
/// local store) is an error, so the message is not acknowledged and comes
/// again.
fn sender_key_failure(e: Error) -> Error {
    match e {
        Error::Refused { code, message } if code == "not_found" => {
            Error::Dropped(format!("unknown sender device: {message}"))
        }
        other => other,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn array16(hex_text: &str, what: &str) -> Result<[u8; 16]> {
    let mut out = [0u8; 16];
    hex::decode_to_slice(hex_text, &mut out).map_err(|_| Error::Refused {
        code: "bad_answer".into(),
        message: format!("{what} is not 32 hex digits"),
    })?;
    Ok(out)
}

impl Agent {
    /// Zero-touch enrollment: reads the managed configuration, makes the
    /// identity and TLS keys, enrolls with the token, and creates the
    /// PIN-protected store. The PIN is the only thing the user chose.
    pub async fn enroll(dir: &Path, options: EnrollOptions<'_>) -> Result<Self> {
        if store::exists(dir) {
            return Err(Error::AlreadyEnrolled(dir.display().to_string()));
        }
        let decoded = read_managed_config(options.managed_config)?;
        if let Some(p) = decoded
            .placeholders
            .iter()
            .find(|p| p.key == "user_identity" || p.key == "enrollment_token")
        {
            return Err(Error::Config(format!(
                "key `{}` holds the unsubstituted EMM variable `{}`",
                p.key, p.token
            )));
        }
        let policy = decoded.policy;
        check_pin(&policy, options.pin)?;
        let token = policy
            .enrollment_token
            .as_ref()
            .ok_or_else(|| Error::Config("no enrollment_token: the EMM must deliver one".into()))?;
        let (address, host) = endpoint(policy.server_url.as_str())?;
        let root = root_der(options.ca_pem)?;
        let enroll = DeviceClient::anonymous(&address, &host, &root)
            .map_err(|e| Error::Config(e.to_string()))?;

        let identity = IdentitySecret::generate(&mut kontor_crypto::os_rng());
        let tls_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| Error::Config(e.to_string()))?;
        let csr = rcgen::CertificateParams::new(Vec::<String>::new())
            .and_then(|p| p.serialize_request(&tls_key))
            .and_then(|c| c.pem())
            .map_err(|e| Error::Config(e.to_string()))?;
        let mut body = serde_json::json!({
            "token": token.expose(),
            "csr": csr,
            "identity_key": identity.public().to_hex(),
            "platform": options.platform,
            "device_name": options.device_name,
        });
        if let Some(user) = &policy.user_identity {
            body["user"] = serde_json::Value::String(user.as_str().to_owned());
        }
        let answer = enroll
            .request(
                "POST",
                "/v1/enroll",
                Some("application/json"),
                body.to_string().into_bytes(),
            )
            .await
            .map_err(|e| Error::Unreachable(e.to_string()))?;
        if answer.status != 200 {
            return Err(refused(&answer));
        }
        let enrolled = answer.json();
        let field = |name: &str| {
            enrolled[name]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| Error::Refused {
                    code: "bad_answer".into(),
                    message: format!("enrollment answer lacks {name}"),
                })
        };
        let device_id = array16(&field("device_id")?, "device id")?;
        let chain = field("chain")?;
        let relay_url = field("relay_url")?;
        let user = match &policy.user_identity {
            Some(u) => u.as_str().to_owned(),
            None => field("user_id").unwrap_or_default(),
        };

        let store =
            LocalStore::create(dir, options.pin, u32::from(policy.pin.max_failed_attempts))?;
        store.put_secret("identity", &identity.to_bytes()[..])?;
        store.put_secret("tls_key", &tls_key.serialize_der())?;
        store.put_secret("chain", chain.as_bytes())?;
        store.put_secret("root", &root)?;
        store.put_secret("relay_url", relay_url.as_bytes())?;
        store.put_secret("user", user.as_bytes())?;
        store.put_secret("device_id", &device_id)?;
        store.put_secret("managed_config", options.managed_config)?;
        Self::from_store(store)
    }

    /// Opens an enrolled device's store with its PIN.
    pub fn open(dir: &Path, pin: &str) -> Result<Self> {
        Self::from_store(LocalStore::unlock(dir, pin)?)
    }

    fn from_store(store: LocalStore) -> Result<Self> {
        let identity_bytes: [u8; 32] = store.secret("identity")?[..]
            .try_into()
            .map_err(|_| Error::Corrupt("identity key".into()))?;
        let device_id: [u8; 16] = store.secret("device_id")?[..]
            .try_into()
            .map_err(|_| Error::Corrupt("device id".into()))?;
        let relay_url = store.secret_text("relay_url")?;
        let (address, host) = endpoint(&relay_url)?;
        let client = DeviceClient::new(
            &address,
            &host,
            &store.secret("root")?,
            &store.secret_text("chain")?,
            &store.secret("tls_key")?,
        )
        .map_err(|e| Error::Corrupt(e.to_string()))?;
        Ok(Self {
            user: store.secret_text("user")?,
            identity: IdentitySecret::from_bytes(identity_bytes),
            device_id,
            client,
            relay_url,
            store,
        })
    }

    /// The data directory.
    pub fn dir(&self) -> PathBuf {
        self.store.dir().to_owned()
    }

    /// This device's state.
    pub fn status(&self) -> Result<Status> {
        Ok(Status {
            device_id: hex::encode(self.device_id),
            user: self.user.clone(),
            relay_url: self.relay_url.clone(),
            messages: self.store.messages()?.len(),
        })
    }

    /// The stored messages, oldest first.
    pub fn inbox(&self) -> Result<Vec<StoredMessage>> {
        self.store.messages()
    }

    /// The safety number of this device and a contact device.
    pub async fn safety_number(&self, user: &str) -> Result<Vec<(String, String)>> {
        let mine = self.identity.public();
        let mut out = Vec::new();
        for (device, key) in self.devices_of(user).await? {
            let number = kontor_crypto::safety_number(
                kontor_crypto::fingerprint::Party {
                    id: &self.user,
                    identity: &mine,
                },
                kontor_crypto::fingerprint::Party {
                    id: user,
                    identity: &key,
                },
            );
            out.push((hex::encode(device), number));
        }
        Ok(out)
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Answer> {
        self.client
            .request(method, path, content_type, body)
            .await
            .map_err(|e| Error::Unreachable(e.to_string()))
    }

    async fn devices_of(&self, user: &str) -> Result<Vec<([u8; 16], IdentityPublic)>> {
        let answer = self
            .call(
                "GET",
                &format!("/v1/users/{user}/devices"),
                None,
                Vec::new(),
            )
            .await?;
        if answer.status != 200 {
            return Err(refused(&answer));
        }
        let mut out = Vec::new();
        for d in answer.json()["devices"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let id = array16(d["device_id"].as_str().unwrap_or(""), "device id")?;
            let key = IdentityPublic::from_hex(d["identity_key"].as_str().unwrap_or("")).map_err(
                |e| Error::Refused {
                    code: "bad_answer".into(),
                    message: e.to_string(),
                },
            )?;
            out.push((id, key));
        }
        Ok(out)
    }

    /// Pins `key` for `device`; returns true when it replaced another key.
    fn pin_key(&self, device: &[u8; 16], user: &str, key: &IdentityPublic) -> Result<bool> {
        let hex_id = hex::encode(device);
        let changed = match self.store.contact(&hex_id)? {
            Some(c) if c.identity_key == key.to_hex() => return Ok(false),
            Some(_) => true,
            None => false,
        };
        self.store.put_contact(
            &hex_id,
            &Contact {
                user: user.to_owned(),
                identity_key: key.to_hex(),
            },
        )?;
        Ok(changed)
    }

    /// The policy in force: the managed configuration, with the policy
    /// updates the relay pushed applied on top.
    pub fn policy(&self) -> Result<Policy> {
        let base = read_managed_config(&self.store.secret("managed_config")?)?.policy;
        let Ok(update) = self.store.secret("policy_update") else {
            return Ok(base);
        };
        let mut merged: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
            &android::bundle_json(&base).map_err(|e| Error::Config(e.to_string()))?,
        )
        .map_err(|e| Error::Config(e.to_string()))?;
        let update: serde_json::Value =
            serde_json::from_slice(&update).map_err(|e| Error::Corrupt(e.to_string()))?;
        if let Some(update) = update.as_object() {
            merged.extend(update.clone());
        }
        let bytes = serde_json::to_vec(&merged).map_err(|e| Error::Config(e.to_string()))?;
        decode::json(&bytes)
            .map(|d| d.policy)
            .map_err(|e| Error::Config(format!("pushed policy: {e}")))
    }

    /// Who a conversation's messages go to: every device of the peer (or of
    /// every group member) and this user's own other devices.
    async fn recipients_for(&self, users: &[String]) -> Result<(Vec<Recipient>, Vec<String>)> {
        let mut recipients: Vec<Recipient> = Vec::new();
        let mut key_changes = Vec::new();
        let mut all: Vec<&str> = users.iter().map(String::as_str).collect();
        if !all.contains(&self.user.as_str()) {
            all.push(&self.user);
        }
        for user in all {
            for (device, key) in self.devices_of(user).await? {
                if device == self.device_id || recipients.iter().any(|r| r.device_id.0 == device) {
                    continue;
                }
                if self.pin_key(&device, user, &key)? {
                    key_changes.push(format!("{user} (device {})", hex::encode(device)));
                }
                recipients.push(Recipient {
                    device_id: DeviceId(device),
                    identity: key,
                });
            }
        }
        Ok((recipients, key_changes))
    }

    /// Seals `content` for the conversation and posts it.
    async fn post(
        &self,
        conversation: &Conversation,
        content: serde_json::Value,
        blobs: &[[u8; 16]],
        text: String,
        attachment: Option<AttachmentRef>,
    ) -> Result<Sent> {
        let (users, group_id, name) = match conversation {
            Conversation::User(u) => (vec![u.clone()], None, format!("user:{u}")),
            Conversation::Group(id) => {
                let answer = self
                    .call(
                        "GET",
                        &format!("/v1/groups/{}", hex::encode(id)),
                        None,
                        Vec::new(),
                    )
                    .await?;
                if answer.status != 200 {
                    return Err(refused(&answer));
                }
                let members = answer.json()["members"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|m| m["user_id"].as_str().map(str::to_owned))
                    .collect();
                (members, Some(*id), format!("group:{}", hex::encode(id)))
            }
        };
        let (recipients, key_changes) = self.recipients_for(&users).await?;
        if recipients.is_empty() {
            return Err(Error::Refused {
                code: "no_devices".into(),
                message: "no enrolled device to send to".into(),
            });
        }
        let mut rng = kontor_crypto::os_rng();
        let message_id = MessageId::random(&mut rng);
        let sealed = kontor_crypto::seal(
            &mut rng,
            message_id,
            Sender {
                device_id: DeviceId(self.device_id),
                identity: &self.identity,
            },
            &recipients,
            content.to_string().as_bytes(),
        )
        .map_err(|e| Error::Config(e.to_string()))?;
        let deliveries: Vec<&[u8]> = sealed
            .deliveries()
            .iter()
            .map(|d| &d.as_bytes()[..])
            .collect();
        let envelope = PostedEnvelope::encode(group_id, blobs, &deliveries, sealed.body());
        let answer = self
            .call(
                "POST",
                "/v1/messages",
                Some(wire::ENVELOPE_CONTENT_TYPE),
                envelope,
            )
            .await?;
        if answer.status != 201 && answer.status != 200 {
            return Err(refused(&answer));
        }
        self.store.add_message(&StoredMessage {
            conversation: name,
            from_user: self.user.clone(),
            from_device: hex::encode(self.device_id),
            outgoing: true,
            kind: content["kind"].as_str().unwrap_or("text").to_owned(),
            text,
            sent_at_ms: content["sent_at_ms"].as_i64().unwrap_or(0),
            attachment,
        })?;
        Ok(Sent {
            message_id: message_id.to_hex(),
            devices: recipients.len(),
            key_changes,
        })
    }

    /// Sends a text to a user or a group.
    pub async fn send_text(&self, to: &Conversation, text: &str) -> Result<Sent> {
        if matches!(to, Conversation::User(u) if *u == self.user) {
            return Err(Error::Config("write to another user".into()));
        }
        let content = serde_json::json!({
            "v": 1, "kind": "text", "conversation": to.json(), "sent_at_ms": now_ms(), "text": text,
        });
        self.post(to, content, &[], text.to_owned(), None).await
    }

    /// Sends a file, if the policy allows its kind: encrypted under its own
    /// key, uploaded as an opaque blob, named by the message.
    pub async fn send_file(
        &self,
        to: &Conversation,
        name: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Sent> {
        let kind = attachment_kind(media_type);
        let policy = self.policy()?;
        if !policy.restrictions.attachments.contains(&kind) {
            return Err(Error::Policy {
                policy: "allowed_attachments",
                what: format!("sending {} ({media_type})", kind.as_str()),
            });
        }
        let mut rng = kontor_crypto::os_rng();
        let blob_id = kontor_crypto::BlobId::random(&mut rng);
        let (key, blob) =
            kontor_crypto::encrypt_blob(&mut rng, blob_id, DeviceId(self.device_id), bytes);
        let answer = self
            .call(
                "PUT",
                &format!("/v1/blobs/{}", blob_id.to_hex()),
                Some("application/octet-stream"),
                blob,
            )
            .await?;
        if answer.status != 201 {
            return Err(refused(&answer));
        }
        let attachment = AttachmentRef {
            blob_id: blob_id.to_hex(),
            key: hex::encode(key.as_bytes()),
            sender_device: hex::encode(self.device_id),
            name: name.to_owned(),
            media_type: media_type.to_owned(),
            size: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
        };
        let content = serde_json::json!({
            "v": 1, "kind": "file", "conversation": to.json(), "sent_at_ms": now_ms(),
            "file": { "blob_id": attachment.blob_id, "key": attachment.key, "size": attachment.size,
                      "media_type": media_type, "name": name },
        });
        let summary = format!("[file {name}, {} bytes]", bytes.len());
        self.post(to, content, &[blob_id.0], summary, Some(attachment))
            .await
    }

    /// Downloads and decrypts the attachment of stored message `index`.
    pub async fn fetch_file(&self, index: usize) -> Result<(AttachmentRef, Vec<u8>)> {
        let messages = self.store.messages()?;
        let attachment = messages
            .get(index)
            .and_then(|m| m.attachment.clone())
            .ok_or_else(|| Error::Config(format!("message {index} carries no file")))?;
        let answer = self
            .call(
                "GET",
                &format!("/v1/blobs/{}", attachment.blob_id),
                None,
                Vec::new(),
            )
            .await?;
        if answer.status != 200 {
            return Err(refused(&answer));
        }
        let key_bytes: [u8; 64] = hex::decode(&attachment.key)
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| Error::Corrupt("attachment key".into()))?;
        let plain = kontor_crypto::decrypt_blob(
            &kontor_crypto::ContentKey::from_bytes(key_bytes),
            kontor_crypto::BlobId(array16(&attachment.blob_id, "blob id")?),
            DeviceId(array16(&attachment.sender_device, "device id")?),
            &answer.body,
        )
        .map_err(|e| Error::Dropped(format!("attachment: {e}")))?;
        Ok((attachment, plain.to_vec()))
    }

    /// Copies a message's text out of Kontor, if copy and paste is allowed.
    pub fn export_text(&self, index: usize) -> Result<String> {
        if !self.policy()?.restrictions.copy_paste {
            return Err(Error::Policy {
                policy: "allow_copy_paste",
                what: "copying a message out of Kontor".into(),
            });
        }
        self.store
            .messages()?
            .get(index)
            .map(|m| m.text.clone())
            .ok_or_else(|| Error::Config(format!("no message {index}")))
    }

    /// Creates a group with `members` (user ids); this user becomes its admin.
    pub async fn create_group(&self, name: &str, members: &[String]) -> Result<String> {
        let id = kontor_crypto::BlobId::random(&mut kontor_crypto::os_rng()).to_hex();
        let body = serde_json::json!({ "id": id, "name": name, "members": members })
            .to_string()
            .into_bytes();
        let answer = self
            .call("POST", "/v1/groups", Some("application/json"), body)
            .await?;
        if answer.status != 201 {
            return Err(refused(&answer));
        }
        Ok(id)
    }

    /// This user's groups as the relay lists them (id, name, members).
    pub async fn groups(&self) -> Result<serde_json::Value> {
        let answer = self.call("GET", "/v1/groups", None, Vec::new()).await?;
        if answer.status != 200 {
            return Err(refused(&answer));
        }
        Ok(answer.json()["groups"].clone())
    }

    /// The key this device expects for a sender device: pinned, or from the
    /// directory (then pinned).
    async fn sender_key(&self, device: [u8; 16]) -> Result<(String, IdentityPublic)> {
        if let Some(contact) = self.store.contact(&hex::encode(device))? {
            let key = IdentityPublic::from_hex(&contact.identity_key)
                .map_err(|e| Error::Corrupt(e.to_string()))?;
            return Ok((contact.user, key));
        }
        let answer = self
            .call(
                "GET",
                &format!("/v1/devices/{}", hex::encode(device)),
                None,
                Vec::new(),
            )
            .await?;
        if answer.status != 200 {
            return Err(refused(&answer));
        }
        let json = answer.json();
        let user = json["user_id"].as_str().unwrap_or("").to_owned();
        let key = IdentityPublic::from_hex(json["device"]["identity_key"].as_str().unwrap_or(""))
            .map_err(|e| Error::Refused {
            code: "bad_answer".into(),
            message: e.to_string(),
        })?;
        self.pin_key(&device, &user, &key)?;
        Ok((user, key))
    }

    /// Fetches commands and messages: carries out each command (policy,
    /// wipe, broadcast, archive) and acknowledges it, then stores each
    /// authentic new message and only then acknowledges it.
    pub async fn receive(self) -> Result<(Option<Self>, Received)> {
        let mut report = Received::default();
        let answer = self.call("GET", "/v1/commands", None, Vec::new()).await?;
        if answer.status != 200 {
            return Err(refused(&answer));
        }
        let mut agent = self;
        for command in answer.json()["commands"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            agent = match agent.command(&command, &mut report).await? {
                Some(agent) => agent,
                None => return Ok((None, report)),
            };
        }
        agent.receive_messages(&mut report).await?;
        Ok((Some(agent), report))
    }

    /// Fetches the waiting messages, stores each authentic new one, then
    /// acknowledges them.
    async fn receive_messages(&self, report: &mut Received) -> Result<()> {
        let answer = self.call("GET", "/v1/messages", None, Vec::new()).await?;
        if answer.status != 200 {
            return Err(refused(&answer));
        }
        let frames = wire::decode_batch(&answer.body).map_err(|e| Error::Refused {
            code: "bad_answer".into(),
            message: e.to_string(),
        })?;
        let mut done = Vec::new();
        for frame in frames {
            match self.accept(&frame.sealed).await {
                Ok(Some(message)) => report.messages.push(message),
                Ok(None) => report.dropped.push("replay".into()),
                Err(Error::Dropped(why)) => report.dropped.push(why),
                // Anything else (store, network) stops here: not acknowledged, fetched again later.
                Err(e) => return Err(e),
            }
            done.push(frame.seq);
        }
        if !done.is_empty() {
            let body = serde_json::json!({ "seqs": done }).to_string().into_bytes();
            let answer = self
                .call("POST", "/v1/messages/ack", Some("application/json"), body)
                .await?;
            if answer.status != 200 {
                return Err(refused(&answer));
            }
        }
        Ok(())
    }

    /// Listens live over WebSocket for `duration`: stores and acknowledges
    /// each message as it arrives, calls `on_message` for it, and obeys a
    /// wipe command at once. Returns what arrived.
    pub async fn listen(
        self,
        duration: std::time::Duration,
        mut on_message: impl FnMut(&StoredMessage),
    ) -> Result<(Option<Self>, Received)> {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;

        // Whatever waited (and any pending command) first.
        let (agent, mut report) = self.receive().await?;
        let Some(mut agent) = agent else {
            return Ok((None, report));
        };
        for m in &report.messages {
            on_message(m);
        }
        let tls = agent
            .client
            .connect()
            .await
            .map_err(|e| Error::Unreachable(e.to_string()))?;
        let url = format!(
            "wss://{}/v1/ws",
            agent.relay_url.trim_start_matches("https://")
        );
        let (mut ws, _) = tokio_tungstenite::client_async(url, tls)
            .await
            .map_err(|e| Error::Unreachable(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + duration;
        loop {
            let frame = match tokio::time::timeout_at(deadline, ws.next()).await {
                Err(_) => break,
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(Error::Unreachable(e.to_string())),
                Ok(Some(Ok(frame))) => frame,
            };
            match frame {
                Message::Binary(bytes) => {
                    let frame = wire::decode_frame(&bytes).map_err(|e| Error::Refused {
                        code: "bad_answer".into(),
                        message: e.to_string(),
                    })?;
                    match agent.accept(&frame.sealed).await {
                        Ok(Some(m)) => {
                            on_message(&m);
                            report.messages.push(m);
                        }
                        Ok(None) => report.dropped.push("replay".into()),
                        Err(Error::Dropped(why)) => report.dropped.push(why),
                        Err(e) => return Err(e),
                    }
                    // Stored (or dropped for good): now acknowledge.
                    let ack = serde_json::json!({ "ack": [frame.seq] }).to_string();
                    ws.send(Message::Text(ack.into()))
                        .await
                        .map_err(|e| Error::Unreachable(e.to_string()))?;
                }
                Message::Text(text) => {
                    let frame: serde_json::Value =
                        serde_json::from_str(text.as_str()).unwrap_or_default();
                    if frame.get("command").is_some() {
                        let shown = report.messages.len();
                        agent = match agent.command(&frame["command"], &mut report).await? {
                            Some(agent) => agent,
                            None => return Ok((None, report)),
                        };
                        for m in &report.messages[shown..] {
                            on_message(m);
                        }
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        Ok((Some(agent), report))
    }

    /// Opens, checks and stores one sealed message. `Ok(None)` for a replay.
    async fn accept(&self, sealed: &[u8]) -> Result<Option<StoredMessage>> {
        let parsed = SealedMessage::parse(sealed)
            .map_err(|e| Error::Dropped(format!("malformed ({})", e.step())))?;
        let sender_device = parsed.sender_device_id();
        let (from_user, key) = self
            .sender_key(sender_device.0)
            .await
            .map_err(sender_key_failure)?;
        let opened = parsed
            .open(&self.identity, Some(DeviceId(self.device_id)), &key)
            .map_err(|e| Error::Dropped(format!("failed at step {}", e.step())))?;
        let content: serde_json::Value = serde_json::from_slice(&opened.plaintext)
            .map_err(|_| Error::Dropped("content is not JSON".into()))?;
        let kind = content["kind"].as_str().unwrap_or("").to_owned();
        if kind == command::BROADCAST_KIND {
            // Authentic, but a user posing as the administration: only the
            // relay's command channel makes broadcasts.
            return Err(Error::Dropped(format!(
                "a message from {from_user} claims to be a broadcast of the administration"
            )));
        }
        // File the message under the conversation named inside it.
        let conversation = match (
            content["conversation"]["user"].as_str(),
            content["conversation"]["group"].as_str(),
        ) {
            (Some(u), _) if u == self.user => format!("user:{from_user}"),
            (Some(u), _) => format!("user:{u}"),
            (None, Some(g)) => format!("group:{g}"),
            _ => return Err(Error::Dropped("content names no conversation".into())),
        };
        let (text, attachment) = match kind.as_str() {
            "text" => (content["text"].as_str().unwrap_or("").to_owned(), None),
            "file" => {
                let f = &content["file"];
                let attachment = AttachmentRef {
                    blob_id: f["blob_id"].as_str().unwrap_or("").to_owned(),
                    key: f["key"].as_str().unwrap_or("").to_owned(),
                    sender_device: sender_device.to_hex(),
                    name: f["name"].as_str().unwrap_or("file").to_owned(),
                    media_type: f["media_type"]
                        .as_str()
                        .unwrap_or("application/octet-stream")
                        .to_owned(),
                    size: f["size"].as_u64().unwrap_or(0),
                };
                (
                    format!("[file {}, {} bytes]", attachment.name, attachment.size),
                    Some(attachment),
                )
            }
            other => (format!("[unsupported message kind {other:?}]"), None),
        };
        let message = StoredMessage {
            conversation,
            from_user,
            from_device: sender_device.to_hex(),
            outgoing: false,
            kind,
            text,
            sent_at_ms: content["sent_at_ms"].as_i64().unwrap_or(0),
            attachment,
        };
        if !self
            .store
            .add_received(&sender_device.0, &opened.message_id.0, &message)?
        {
            return Ok(None);
        }
        Ok(Some(message))
    }

    /// Carries out one command as the relay sent it and acknowledges it,
    /// the same for `receive` and `listen`. A refused command (unknown kind,
    /// malformed payload) is acknowledged with the reason and changes
    /// nothing. `None` after a wipe: the agent is gone.
    async fn command(
        self,
        value: &serde_json::Value,
        report: &mut Received,
    ) -> Result<Option<Self>> {
        let Some(incoming) = Incoming::from_json(value) else {
            // Without an id it cannot be acknowledged; the relay always sends one.
            report
                .refused_commands
                .push("a command without id or kind".into());
            return Ok(Some(self));
        };
        let id = incoming.id;
        let command = match command::parse(&incoming) {
            Ok(command) => command,
            Err(refusal) => {
                self.ack_command(id, refusal.receipt()).await?;
                if incoming.kind == "archive" {
                    report.archives.push(ArchiveOutcome {
                        request: incoming.payload["request"]
                            .as_str()
                            .unwrap_or("")
                            .chars()
                            .take(32)
                            .collect(),
                        archived: false,
                        parts: 0,
                        messages: 0,
                        reason: Some(refusal.reason),
                    });
                } else {
                    report
                        .refused_commands
                        .push(format!("{}: {}", refusal.kind, refusal.reason));
                }
                return Ok(Some(self));
            }
        };
        match command {
            Command::Wipe => {
                self.wipe_by_command(id).await?;
                report.wiped = true;
                return Ok(None);
            }
            Command::Policy(payload) => {
                self.store
                    .put_secret("policy_update", payload.to_string().as_bytes())?;
                self.ack_command(id, serde_json::json!({ "applied": true }))
                    .await?;
                report.policy_updates += 1;
            }
            Command::Broadcast(broadcast) => {
                let stored = self.store_broadcast(id, &broadcast)?;
                // Stored (or stored before, when an earlier receipt was lost):
                // now acknowledge.
                self.ack_command(id, serde_json::json!({ "shown": true }))
                    .await?;
                report.messages.extend(stored);
            }
            Command::Archive(request) => {
                let (receipt, outcome) = self.export_archive(&request).await?;
                self.ack_command(id, receipt).await?;
                report.archives.push(outcome);
            }
        }
        Ok(Some(self))
    }

    /// Files a broadcast as a message from the administration. `None` if
    /// this command was stored before (its receipt got lost): the replay
    /// key is the command id with the broadcast's content, under the
    /// all-zero device id no device sends from.
    fn store_broadcast(
        &self,
        command_id: u64,
        broadcast: &Broadcast,
    ) -> Result<Option<StoredMessage>> {
        let digest = Sha256::new()
            .chain_update(b"kontor-broadcast")
            .chain_update(command_id.to_be_bytes())
            .chain_update(broadcast.sent_at_ms.to_be_bytes())
            .chain_update(broadcast.text.as_bytes())
            .finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        let message = StoredMessage {
            conversation: format!("broadcast:{}", broadcast.scope),
            from_user: command::ADMINISTRATION.to_owned(),
            from_device: String::new(),
            outgoing: false,
            kind: command::BROADCAST_KIND.to_owned(),
            text: broadcast.text.clone(),
            sent_at_ms: broadcast.sent_at_ms,
            attachment: None,
        };
        Ok(self
            .store
            .add_received(&DeviceId::ARCHIVE.0, &key, &message)?
            .then_some(message))
    }

    /// Exports what an archive request covers, seals each part for the
    /// archive key and uploads it as a blob. Returns the receipt: uploaded,
    /// or refused with the reason (the export is too large, the key cannot
    /// be sealed for, the relay refused an upload). A network failure is an
    /// error: the command stays pending and is carried out again later.
    ///
    /// This is not a user's file send, so the attachment policy does not
    /// apply; the relay may still refuse the upload, and that is reported.
    async fn export_archive(
        &self,
        request: &ArchiveRequest,
    ) -> Result<(serde_json::Value, ArchiveOutcome)> {
        let request_hex = hex::encode(request.request);
        let refuse = |reason: String| {
            (
                serde_json::json!({ "archived": false, "reason": reason }),
                ArchiveOutcome {
                    request: request_hex.clone(),
                    archived: false,
                    parts: 0,
                    messages: 0,
                    reason: Some(reason),
                },
            )
        };
        let messages = self.store.messages()?;
        let covered = archive::in_range(&messages, request.from_ms, request.to_ms);
        let header = ExportHeader {
            request: request_hex.clone(),
            user: self.user.clone(),
            device: hex::encode(self.device_id),
            from_ms: request.from_ms,
            to_ms: request.to_ms,
            exported_at_ms: now_ms(),
        };
        let parts = match archive::export_parts(&header, &covered, archive::PART_BYTES_MAX) {
            Ok(parts) => parts,
            Err(Error::Archive(why)) => return Ok(refuse(why)),
            Err(e) => return Err(e),
        };
        let mut rng = kontor_crypto::os_rng();
        let mut uploaded = Vec::new();
        for part in &parts {
            let message_id = MessageId::random(&mut rng);
            let sealed = match kontor_crypto::seal_archive_part(
                &mut rng,
                message_id,
                Sender {
                    device_id: DeviceId(self.device_id),
                    identity: &self.identity,
                },
                &request.archive_key,
                &part.document,
            ) {
                Ok(sealed) => sealed,
                Err(e) => {
                    return Ok(refuse(format!(
                        "cannot seal for the archive key ({})",
                        e.step()
                    )));
                }
            };
            let blob = BlobId::random(&mut rng);
            let bytes = sealed.len();
            let answer = self
                .call(
                    "PUT",
                    &format!("/v1/blobs/{}", blob.to_hex()),
                    Some("application/octet-stream"),
                    sealed,
                )
                .await?;
            if answer.status != 201 {
                return Ok(refuse(refused(&answer).to_string()));
            }
            uploaded.push(serde_json::json!({
                "blob": blob.to_hex(), "bytes": bytes, "messages": part.messages,
            }));
        }
        let outcome = ArchiveOutcome {
            request: request_hex,
            archived: true,
            parts: parts.len(),
            messages: covered.len(),
            reason: None,
        };
        Ok((
            serde_json::json!({ "archived": true, "parts": uploaded }),
            outcome,
        ))
    }

    async fn ack_command(&self, id: u64, receipt: serde_json::Value) -> Result<()> {
        let body = serde_json::json!({ "receipt": receipt })
            .to_string()
            .into_bytes();
        let answer = self
            .call(
                "POST",
                &format!("/v1/commands/{id}/ack"),
                Some("application/json"),
                body,
            )
            .await?;
        if answer.status != 204 {
            return Err(refused(&answer));
        }
        Ok(())
    }

    /// A wipe command: the key file first, then the database and keys, then
    /// the receipt (sent with the TLS identity still held in memory).
    async fn wipe_by_command(self, id: u64) -> Result<()> {
        store::wipe(self.store.dir())?;
        self.ack_command(id, serde_json::json!({ "wiped": true, "at_ms": now_ms() }))
            .await
    }

    /// Wipes this device's data locally.
    pub fn wipe(self) -> Result<()> {
        store::wipe(self.store.dir())
    }
}

fn root_der(pem: &str) -> Result<Vec<u8>> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|c| c.to_vec())
        .map_err(|_| Error::Config("the CA file is not a PEM certificate".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unknown_sender_device_drops_a_message_for_good() {
        let unknown = sender_key_failure(Error::Refused {
            code: "not_found".into(),
            message: "device not found".into(),
        });
        assert!(
            matches!(unknown, Error::Dropped(ref why) if why.contains("unknown sender device"))
        );
        // Kept (not acknowledged, fetched again) for everything passing.
        for passing in [
            Error::Unreachable("connection refused".into()),
            Error::Refused {
                code: "unavailable".into(),
                message: "store out of reach".into(),
            },
            Error::Corrupt("disk I/O error".into()),
        ] {
            let kept = sender_key_failure(passing);
            assert!(!matches!(kept, Error::Dropped(_)), "{kept}");
        }
    }
}
