//! The relay's core: every device request, independent of HTTP and TLS.
//!
//! Requests arrive with the device already authenticated by its client
//! certificate ([`DeviceContext`]); the device id is taken from there,
//! never from the request.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kontor_provisioning::service::DenyList;
use kontor_provisioning::store::{
    CertificateRecord, CertificateStore, DeviceKey, DirectoryUser, UserDirectory, UserStatus,
};
use kontor_provisioning::{CertSerial, DeviceId};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::bus::{Bus, Hint, HintKind};
use crate::error::{Error, Result};
use crate::handoff::Handoffs;
use crate::push::SharedPusher;
use crate::store::{
    BlobRecord, CommandRecord, Group, GroupMember, GroupRole, NewMessage, PushTarget,
    QueuedMessage, RelayStore, Stored,
};
use crate::wire::{self, EnvelopeLimits, Id16, PostedEnvelope};

/// A failure of provisioning's store (the key directory) as the relay's
/// error: out of reach is `Unavailable` (503), anything else internal.
fn directory_error(e: kontor_provisioning::Error) -> Error {
    if e.code() == "unavailable" {
        Error::Unavailable(e.to_string())
    } else {
        Error::Store(e.to_string())
    }
}

/// Limits and lifetimes of the relay. Every one has a default that suits a
/// small organisation.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Largest message body.
    pub body_bytes_max: usize,
    /// Most recipient devices per message.
    pub recipients_max: usize,
    /// Most attachments named per message.
    pub blobs_per_message_max: usize,
    /// Largest attachment.
    pub blob_bytes_max: usize,
    /// Most queued messages per device.
    pub queue_len_max: u64,
    /// Undelivered messages are dropped after this long.
    pub message_ttl: Duration,
    /// Attachments are deleted after this long.
    pub blob_ttl: Duration,
    /// Messages a device may post per second, sustained.
    pub messages_per_s: u32,
    /// Messages a device may post in a burst.
    pub message_burst: u32,
    /// Most messages or commands returned by one fetch.
    pub fetch_max: usize,
    /// Most members in one group.
    pub group_members_max: usize,
    /// Most live connections (WebSockets) one device may hold at once.
    pub live_per_device_max: usize,
    /// Most live connections on this node.
    pub live_max: usize,
    /// How long a posted message waits for the recipient devices live on
    /// this node to acknowledge it before it is stored for those that did
    /// not ([`crate::handoff`]); zero stores every message first.
    pub handoff_wait: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            body_bytes_max: 256 * 1024,
            recipients_max: 1_000,
            blobs_per_message_max: 16,
            blob_bytes_max: 64 * 1024 * 1024,
            queue_len_max: 10_000,
            message_ttl: Duration::from_secs(30 * 24 * 3600),
            blob_ttl: Duration::from_secs(30 * 24 * 3600),
            messages_per_s: 20,
            message_burst: 200,
            fetch_max: 500,
            group_members_max: 1_000,
            live_per_device_max: 4,
            live_max: 10_000,
            handoff_wait: Duration::from_millis(500),
        }
    }
}

/// What two users exchange, for [`ReachPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exchange {
    /// A message outside any group, and looking up the other's device keys.
    Message,
    /// Membership of the same group, and messages within it.
    Group,
    /// Downloading an attachment the other uploaded.
    File,
}

impl Exchange {
    /// Lowercase name, as recorded in the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Exchange::Message => "message",
            Exchange::Group => "group",
            Exchange::File => "file",
        }
    }
}

/// A refusal the policy caused, reported back so the administration can
/// record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The user who tried.
    pub from_user: String,
    /// The user they tried to reach, if any.
    pub to_user: Option<String>,
    /// What was refused: an [`Exchange`] name or `file_upload`.
    pub what: &'static str,
}

/// The organisation's rules the relay enforces: who may reach whom
/// (departments and barriers) and who may upload attachments. The
/// administration fills it; the default allows everything.
pub trait ReachPolicy: Send + Sync + 'static {
    /// May `from_user` exchange `what` with `to_user`?
    fn may_exchange(&self, from_user: &str, to_user: &str, what: Exchange) -> bool;
    /// May `user` upload attachments (send files)?
    fn may_send_files(&self, _user: &str) -> bool {
        true
    }
    /// Called for every refusal this policy caused, before the refusal is
    /// answered.
    fn refused(&self, _refusal: Refusal) {}
    /// Called once per new stored message with the sender's user and the
    /// other users it was queued for (activity counts; never content).
    fn posted(&self, _from_user: &str, _to_users: &[String]) {}
}

/// Everyone in the organisation may reach everyone.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl ReachPolicy for AllowAll {
    fn may_exchange(&self, _from: &str, _to: &str, _what: Exchange) -> bool {
        true
    }
}

/// An authenticated device, from its client certificate and our records.
#[derive(Debug, Clone)]
pub struct DeviceContext {
    /// From the certificate's subject alternative name.
    pub device_id: DeviceId,
    /// The certificate's serial.
    pub serial: CertSerial,
    /// The user the certificate was issued to.
    pub user_id: String,
    /// The identity key the certificate vouches for.
    pub identity_key: [u8; 32],
}

/// A device as the key directory shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirectoryDevice {
    /// Device id, hex.
    pub device_id: String,
    /// X25519 identity key, hex.
    pub identity_key: String,
    /// Platform the device named at enrollment.
    pub platform: String,
    /// The device certificate, DER as hex, for checking the CA's vouching.
    pub certificate: String,
}

/// What a post did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PostOutcome {
    /// The message id, hex.
    pub message_id: String,
    /// Devices it was queued for.
    pub recipients: usize,
    /// False when this was a retry of a message already stored.
    pub new: bool,
}

/// The relay's service: store, certificate directory, bus and policy.
pub struct Relay<S, P, B> {
    store: S,
    certs: P,
    deny: DenyList,
    bus: B,
    policy: Arc<dyn ReachPolicy>,
    config: RelayConfig,
    buckets: Mutex<HashMap<DeviceId, Bucket>>,
    live: Arc<Mutex<LiveCount>>,
    handoffs: Arc<Handoffs>,
    pusher: Option<SharedPusher>,
    wiped_listener: Option<tokio::sync::mpsc::UnboundedSender<DeviceId>>,
    identities: Mutex<HashMap<CertSerial, Identity>>,
}

/// What [`Relay::authenticate`] needs of a certificate record, kept by
/// serial so a device's requests do not read the same record every time.
/// A record never changes once issued (renewal issues a new serial), and
/// revocation is checked in the deny list before this is consulted, so on
/// a node whose deny list is current a kept entry cannot let in a
/// certificate the store would refuse. (Erasure revokes before it deletes
/// the records; a node that missed the revocation's announcement learns
/// it at its next deny-list reload, and until then a kept entry lets the
/// device in where the deleted record would have refused it.) An entry is
/// used for [`IDENTITY_TTL`] and dropped by the next expiry run after
/// that ([`Relay::expire`], every minute in `kontor serve`), so an erased
/// user's data leaves memory within minutes.
#[derive(Clone)]
struct Identity {
    device_id: DeviceId,
    user_id: String,
    identity_key: [u8; 32],
    at: Instant,
}

/// What [`Relay::newest_current`] compares of a certificate, whole or only
/// its key: `(device, serial, issued_at, not_after)`.
trait Validity {
    fn validity(&self) -> (DeviceId, CertSerial, i64, i64);

    /// Of two certificates of one device the newer is the one issued
    /// later, then the one with the higher serial.
    fn rank(&self) -> (i64, CertSerial) {
        let (_, serial, issued_at, _) = self.validity();
        (issued_at, serial)
    }
}

impl Validity for CertificateRecord {
    fn validity(&self) -> (DeviceId, CertSerial, i64, i64) {
        (self.device_id, self.serial, self.issued_at, self.not_after)
    }
}

impl Validity for DeviceKey {
    fn validity(&self) -> (DeviceId, CertSerial, i64, i64) {
        (self.device_id, self.serial, self.issued_at, self.not_after)
    }
}

/// How long an [`Identity`] is kept.
const IDENTITY_TTL: Duration = Duration::from_secs(300);
/// At most this many are kept (about 100 bytes each); when full, expired
/// entries go, and if none had expired, all of them.
const IDENTITIES_MAX: usize = 100_000;

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The live connections open on this node, in all and per device.
#[derive(Default)]
struct LiveCount {
    total: usize,
    per_device: HashMap<DeviceId, usize>,
}

/// One live connection's place in the count; gives it back when dropped.
pub struct LiveSlot {
    live: Arc<Mutex<LiveCount>>,
    device: DeviceId,
}

impl Drop for LiveSlot {
    fn drop(&mut self) {
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        live.total = live.total.saturating_sub(1);
        if let Some(n) = live.per_device.get_mut(&self.device) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                live.per_device.remove(&self.device);
            }
        }
    }
}

/// How fresh "last seen" is kept.
const LAST_SEEN_RESOLUTION_MS: i64 = 60_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl<S, P, B> Relay<S, P, B>
where
    S: RelayStore,
    P: CertificateStore + UserDirectory + 'static,
    B: Bus,
{
    /// A relay over its store, provisioning's certificate store and deny
    /// list, and a bus.
    pub fn new(store: S, certs: P, deny: DenyList, bus: B, config: RelayConfig) -> Self {
        Self {
            store,
            certs,
            deny,
            bus,
            policy: Arc::new(AllowAll),
            config,
            buckets: Mutex::new(HashMap::new()),
            live: Arc::default(),
            handoffs: Arc::default(),
            pusher: None,
            wiped_listener: None,
            identities: Mutex::new(HashMap::new()),
        }
    }

    /// Tells `listener` of every device whose wipe receipt arrived, so its
    /// certificate can be revoked.
    pub fn with_wipe_listener(
        mut self,
        listener: tokio::sync::mpsc::UnboundedSender<DeviceId>,
    ) -> Self {
        self.wiped_listener = Some(listener);
        self
    }

    /// Sends push hints to recipients that are not connected here.
    pub fn with_pusher(mut self, pusher: SharedPusher) -> Self {
        self.pusher = Some(pusher);
        self
    }

    /// Replaces the reach policy (departments, barriers).
    pub fn with_policy(mut self, policy: Arc<dyn ReachPolicy>) -> Self {
        self.policy = policy;
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The bus.
    pub fn bus(&self) -> &B {
        &self.bus
    }

    /// The configuration.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// The live connections on this node that take handed-off messages.
    pub fn handoffs(&self) -> &Arc<Handoffs> {
        &self.handoffs
    }

    /// Whether a device's certificate is on the deny list (checked in
    /// memory, for every frame handed to a live connection).
    pub fn revoked(&self, device: &DeviceContext) -> bool {
        self.deny.contains(&device.serial)
    }

    /// Authenticates a device from its verified client certificate's serial
    /// and device id: the certificate must be ours, not revoked, not
    /// expired, its user not blocked and the device not wiped.
    pub async fn authenticate(
        &self,
        device_id: DeviceId,
        serial: CertSerial,
    ) -> Result<DeviceContext> {
        if self.deny.contains(&serial) {
            return Err(Error::DeviceRefused("certificate revoked"));
        }
        let identity = self.identity(serial).await?;
        if identity.device_id != device_id {
            return Err(Error::DeviceRefused("certificate names another device"));
        }
        self.check_user_active(&identity.user_id).await?;
        let state = self.store.device_state(device_id).await?;
        if state.as_ref().is_some_and(|s| s.wiped_at_ms.is_some()) {
            return Err(Error::DeviceRefused("device wiped"));
        }
        // "Last seen" needs minutes, not milliseconds: write it at most once
        // a minute per device rather than on every request.
        let now = now_ms();
        let last_seen = state.and_then(|s| s.last_seen_ms);
        if last_seen.is_none_or(|at| now.saturating_sub(at) >= LAST_SEEN_RESOLUTION_MS) {
            // Best effort: a full disk must not also stop a device from
            // fetching and acknowledging (which frees space).
            if let Err(e) = self.store.touch_device(device_id, now).await {
                tracing::warn!(%device_id, error = %e, "last seen not recorded");
            }
        }
        Ok(DeviceContext {
            device_id,
            serial,
            user_id: identity.user_id,
            identity_key: identity.identity_key,
        })
    }

    /// The certificate record of `serial` as far as authentication needs
    /// it: kept from an earlier request, or read from provisioning and
    /// kept (see [`Identity`]).
    async fn identity(&self, serial: CertSerial) -> Result<Identity> {
        let now = Instant::now();
        {
            let kept = self
                .identities
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(i) = kept.get(&serial)
                && now.duration_since(i.at) < IDENTITY_TTL
            {
                return Ok(i.clone());
            }
        }
        let record = self
            .certs
            .certificate(&serial)
            .await
            .map_err(directory_error)?
            .ok_or(Error::DeviceRefused(
                "certificate not issued by this organisation",
            ))?;
        let mut kept = self
            .identities
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.len() >= IDENTITIES_MAX {
            kept.retain(|_, i| now.duration_since(i.at) < IDENTITY_TTL);
            if kept.len() >= IDENTITIES_MAX {
                kept.clear();
            }
        }
        let identity = Identity {
            device_id: record.device_id,
            user_id: record.user_id,
            identity_key: record.identity_key,
            at: now,
        };
        kept.insert(serial, identity.clone());
        Ok(identity)
    }

    /// Drops the kept identities older than [`IDENTITY_TTL`] at `now`;
    /// returns how many are left. [`Relay::expire`] calls it; public so a
    /// test can pass a later `now`.
    #[doc(hidden)]
    pub fn forget_identities(&self, now: Instant) -> usize {
        let mut kept = self
            .identities
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        kept.retain(|_, i| now.saturating_duration_since(i.at) < IDENTITY_TTL);
        kept.len()
    }

    /// Whether a device's session is still allowed (checked again on every
    /// request and by live connections, so a revocation or block takes
    /// effect at once).
    pub async fn still_allowed(&self, device: &DeviceContext) -> Result<()> {
        if self.deny.contains(&device.serial) {
            return Err(Error::DeviceRefused("certificate revoked"));
        }
        self.check_user_active(&device.user_id).await
    }

    async fn check_user_active(&self, user_id: &str) -> Result<()> {
        let user = self.certs.user(user_id).await.map_err(directory_error)?;
        match user {
            Some(u) if u.status == UserStatus::Blocked => Err(Error::DeviceRefused("user blocked")),
            _ => Ok(()),
        }
    }

    /// The key of the current certificate of each of `devices` that has
    /// one (see [`Relay::newest_current`]), in one read.
    async fn current_keys(&self, devices: &[DeviceId]) -> Result<HashMap<DeviceId, DeviceKey>> {
        if devices.is_empty() {
            return Ok(HashMap::new());
        }
        let keys = self
            .certs
            .device_keys(devices)
            .await
            .map_err(directory_error)?;
        Ok(self.newest_current(keys))
    }

    /// Which of `devices` are wiped, in one read (none for no devices).
    async fn wiped_among(&self, devices: &[DeviceId]) -> Result<HashSet<DeviceId>> {
        if devices.is_empty() {
            return Ok(HashSet::new());
        }
        Ok(self
            .store
            .wiped_devices(devices)
            .await?
            .into_iter()
            .collect())
    }

    /// The current certificate of a device (see [`Relay::newest_current`]).
    async fn current_certificate(&self, device_id: DeviceId) -> Result<Option<CertificateRecord>> {
        let certs = self
            .certs
            .certificates_of_device(&device_id)
            .await
            .map_err(directory_error)?;
        Ok(self.newest_current(certs).remove(&device_id))
    }

    /// Each device's current certificate among `certs`: newest, not
    /// revoked, not expired (of two issued in the same second, the larger
    /// serial).
    fn newest_current<C: Validity>(&self, certs: Vec<C>) -> HashMap<DeviceId, C> {
        let now_s = now_ms() / 1000;
        let mut current: HashMap<DeviceId, C> = HashMap::new();
        for cert in certs {
            let (device, serial, _, not_after) = cert.validity();
            if not_after <= now_s || self.deny.contains(&serial) {
                continue;
            }
            let rank = cert.rank();
            if current.get(&device).is_none_or(|have| have.rank() < rank) {
                current.insert(device, cert);
            }
        }
        current
    }

    /// One device as the key directory shows it, with its user: how a
    /// receiver learns the key it expects for a sender device. Refused
    /// (as unknown) when the caller may not reach that device's user.
    pub async fn device_entry(
        &self,
        caller: &DeviceContext,
        device_id: DeviceId,
    ) -> Result<(String, DirectoryDevice)> {
        let cert = self
            .current_certificate(device_id)
            .await?
            .ok_or(Error::NotFound("device"))?;
        if cert.user_id != caller.user_id
            && self
                .check_reach(&caller.user_id, &cert.user_id, Exchange::Message)
                .await
                .is_err()
        {
            return Err(Error::NotFound("device"));
        }
        Ok((
            cert.user_id.clone(),
            DirectoryDevice {
                device_id: device_id.to_string(),
                identity_key: hex::encode(cert.identity_key),
                platform: cert.platform,
                certificate: hex::encode(&cert.der),
            },
        ))
    }

    /// The devices of `user_id` a sender may seal for: current certificates,
    /// not wiped. Refused when the caller may not reach that user.
    pub async fn devices_of_user(
        &self,
        caller: &DeviceContext,
        user_id: &str,
    ) -> Result<Vec<DirectoryDevice>> {
        check_user_ref(user_id)?;
        if caller.user_id != user_id {
            self.check_reach(&caller.user_id, user_id, Exchange::Message)
                .await?;
        }
        let certs = self
            .certs
            .certificates_of_user(user_id)
            .await
            .map_err(directory_error)?;
        let newest = self.newest_current(certs);
        let devices: Vec<DeviceId> = newest.keys().copied().collect();
        let wiped = self.wiped_among(&devices).await?;
        let mut out = Vec::new();
        for (device_id, cert) in newest {
            if wiped.contains(&device_id) {
                continue;
            }
            out.push(DirectoryDevice {
                device_id: device_id.to_string(),
                identity_key: hex::encode(cert.identity_key),
                platform: cert.platform,
                certificate: hex::encode(&cert.der),
            });
        }
        out.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        Ok(out)
    }

    /// Whether `from` may exchange `what` with `to`: the user is not blocked
    /// and the policy allows it. Looking up keys and messaging are allowed
    /// to pairs that may share a group, since group messages need both.
    async fn check_reach(&self, from: &str, to: &str, what: Exchange) -> Result<()> {
        let user = self.certs.user(to).await.map_err(directory_error)?;
        self.reach(from, to, user.as_ref(), what)
    }

    /// [`Relay::check_reach`] with `to`'s directory entry already read.
    fn reach(
        &self,
        from: &str,
        to: &str,
        user: Option<&DirectoryUser>,
        what: Exchange,
    ) -> Result<()> {
        if matches!(user, Some(u) if u.status == UserStatus::Blocked) {
            return Err(Error::Forbidden(format!("user {to} (blocked)")));
        }
        let allowed = match what {
            Exchange::Message => {
                self.policy.may_exchange(from, to, Exchange::Message)
                    || self.policy.may_exchange(from, to, Exchange::Group)
            }
            other => self.policy.may_exchange(from, to, other),
        };
        if !allowed {
            self.policy.refused(Refusal {
                from_user: from.to_owned(),
                to_user: Some(to.to_owned()),
                what: what.as_str(),
            });
            return Err(Error::Forbidden(format!("user {to}")));
        }
        Ok(())
    }

    /// A place for one more live connection of `device`, refused with
    /// `TooManyConnections` past `live_per_device_max` for the device or
    /// `live_max` for the node.
    pub fn live_slot(&self, device: DeviceId) -> Result<LiveSlot> {
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mine = live.per_device.get(&device).copied().unwrap_or(0);
        if mine >= self.config.live_per_device_max || live.total >= self.config.live_max {
            return Err(Error::TooManyConnections { retry_after_s: 5 });
        }
        live.total += 1;
        live.per_device.insert(device, mine + 1);
        Ok(LiveSlot {
            live: self.live.clone(),
            device,
        })
    }

    fn rate_limit(&self, device: DeviceId) -> Result<()> {
        let mut buckets = self
            .buckets
            .lock()
            .map_err(|_| Error::Store("rate limiter poisoned".into()))?;
        let rate = f64::from(self.config.messages_per_s.max(1));
        let burst = f64::from(self.config.message_burst.max(1));
        let now = Instant::now();
        // Bounded memory: forget full buckets when the map grows large.
        if buckets.len() > 100_000 {
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(device).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(burst);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            let retry_after_s = ((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64;
            return Err(Error::RateLimited { retry_after_s });
        }
        bucket.tokens -= 1.0;
        Ok(())
    }

    /// Accepts a posted envelope: checks it, stores it durably, then hints
    /// the recipients' nodes. The caller answers 2xx only after this
    /// returns `Ok`.
    pub async fn post_message(&self, sender: &DeviceContext, bytes: &[u8]) -> Result<PostOutcome> {
        let limits = EnvelopeLimits {
            body_bytes_max: self.config.body_bytes_max,
            recipients_max: self.config.recipients_max,
            blobs_max: self.config.blobs_per_message_max,
        };
        let envelope = PostedEnvelope::parse(bytes, &limits)?;
        if envelope.sender_device_id != sender.device_id
            || envelope.sender_identity != sender.identity_key
        {
            return Err(Error::SenderMismatch);
        }
        self.rate_limit(sender.device_id)?;

        let group = match envelope.group_id {
            Some(id) => {
                let group = self
                    .store
                    .group(id)
                    .await?
                    .ok_or(Error::NotFound("group"))?;
                if !group.members.iter().any(|m| m.user_id == sender.user_id) {
                    return Err(Error::NotFound("group"));
                }
                Some(group)
            }
            None => None,
        };
        // Every recipient's certificates, wipe state and user are read in
        // one go (three reads, however many recipients: a group message
        // to 49 made 147), then checked delivery by delivery, in order.
        let recipients: Vec<DeviceId> = envelope.deliveries.iter().map(|d| d.recipient).collect();
        let current = self.current_keys(&recipients).await?;
        let wiped = self.wiped_among(&recipients).await?;
        let mut others: Vec<String> = current
            .values()
            .filter(|c| c.user_id != sender.user_id)
            .map(|c| c.user_id.clone())
            .collect();
        others.sort_unstable();
        others.dedup();
        let users: HashMap<String, DirectoryUser> = if others.is_empty() {
            HashMap::new()
        } else {
            self.certs
                .users(&others)
                .await
                .map_err(directory_error)?
                .into_iter()
                .map(|u| (u.user_id.clone(), u))
                .collect()
        };
        let mut reached: HashMap<String, ()> = HashMap::new();
        for delivery in &envelope.deliveries {
            let hex_id = delivery.recipient.to_string();
            let cert = current
                .get(&delivery.recipient)
                .ok_or_else(|| Error::UnknownRecipient(hex_id.clone()))?;
            if cert.identity_key != delivery.recipient_identity {
                return Err(Error::StaleRecipientKey(hex_id));
            }
            if wiped.contains(&delivery.recipient) {
                return Err(Error::UnknownRecipient(hex_id));
            }
            if cert.user_id != sender.user_id && !reached.contains_key(&cert.user_id) {
                let what = if group.is_some() {
                    Exchange::Group
                } else {
                    Exchange::Message
                };
                self.reach(
                    &sender.user_id,
                    &cert.user_id,
                    users.get(&cert.user_id),
                    what,
                )?;
                if let Some(group) = &group
                    && !group.members.iter().any(|m| m.user_id == cert.user_id)
                {
                    return Err(Error::Forbidden(format!(
                        "user {} (not in the group)",
                        cert.user_id
                    )));
                }
                reached.insert(cert.user_id.clone(), ());
            }
        }
        for blob in &envelope.blob_ids {
            match self.store.blob_owner(*blob).await? {
                Some(owner) if owner == sender.device_id => {}
                Some(_) => {
                    return Err(Error::Forbidden(
                        "an attachment uploaded by another device".into(),
                    ));
                }
                None => return Err(Error::NotFound("attachment")),
            }
        }

        let now = now_ms();
        let mut message = NewMessage {
            sender_device: sender.device_id,
            message_id: envelope.message_id,
            group_id: envelope.group_id,
            body_hash: Sha256::digest(&envelope.body).into(),
            body: envelope.body,
            deliveries: envelope
                .deliveries
                .into_iter()
                .map(|d| (d.recipient, d.bytes))
                .collect(),
            blob_ids: envelope.blob_ids,
            received_at_ms: now,
            expires_at_ms: now.saturating_add(ms(self.config.message_ttl)),
        };
        let recipients = message.deliveries.len();
        let taken = self.hand_off(&message).await;
        let mut index = 0;
        message.deliveries.retain(|_| {
            index += 1;
            !taken[index - 1]
        });
        // Every device acknowledged it: each holds it in its own store, so
        // nothing is left for the relay to keep.
        let new = if message.deliveries.is_empty() {
            true
        } else {
            let outcome = self
                .store
                .store_message(&message, self.config.queue_len_max)
                .await?;
            // Before the sender hears of it: a message it posts next must
            // not be handed off ahead of this one (crate::handoff).
            for (device, _) in &message.deliveries {
                self.handoffs.stored(*device);
            }
            matches!(outcome, Stored::New(_))
        };
        if new {
            let users: Vec<String> = reached.into_keys().collect();
            self.policy.posted(&sender.user_id, &users);
        }
        // The message is durable: hints are best effort from here on.
        for (device, _) in &message.deliveries {
            self.hint(*device, HintKind::Message).await;
        }
        Ok(PostOutcome {
            message_id: hex::encode(message.message_id),
            recipients,
            new,
        })
    }

    /// Offers `message` to the recipient devices live on this node and
    /// waits up to `handoff_wait` for their acknowledgements: which of
    /// `message.deliveries` (by index) were acknowledged. A message that
    /// names attachments is never handed off: storing it is what lets its
    /// recipients download them.
    async fn hand_off(&self, message: &NewMessage) -> Vec<bool> {
        let mut taken = vec![false; message.deliveries.len()];
        let wait = self.config.handoff_wait;
        if wait.is_zero() || !message.blob_ids.is_empty() {
            return taken;
        }
        let received_at = u64::try_from(message.received_at_ms).unwrap_or(0);
        let mut offered = Vec::new();
        for (i, (device, delivery)) in message.deliveries.iter().enumerate() {
            // Encoded only for a connection that takes offers now.
            let Some(target) = self.handoffs.target(*device) else {
                continue;
            };
            let seq = self.handoffs.next_seq();
            let frame = wire::encode_frame(seq, received_at, delivery, &message.body);
            if let Some(handed) = target.offer(seq, frame) {
                offered.push((i, handed));
            }
        }
        if offered.is_empty() {
            return taken;
        }
        let deadline = tokio::time::Instant::now() + wait;
        let told = futures_util::future::join_all(
            offered
                .into_iter()
                .map(|(i, handed)| async move { (i, handed.acknowledged(deadline).await) }),
        )
        .await;
        for (i, acknowledged) in told {
            taken[i] = acknowledged;
        }
        taken
    }

    async fn hint(&self, device: DeviceId, kind: HintKind) {
        if let Err(e) = self.bus.publish(Hint { device, kind }).await {
            tracing::warn!(%device, error = %e, "hint not published; the device finds the message on its next fetch");
        }
        let Some(pusher) = &self.pusher else { return };
        if self.bus.subscribed_here(device) {
            return;
        }
        let target = match self.store.device_state(device).await {
            Ok(Some(state)) => state.push,
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(%device, error = %e, "push target not read");
                None
            }
        };
        if let Some(target) = target {
            let pusher = pusher.clone();
            // The push service's answer must not delay the sender's 2xx.
            tokio::spawn(async move {
                if let Err(e) = pusher.hint(device, &target).await {
                    tracing::warn!(%device, error = %e, "push hint failed");
                }
            });
        }
    }

    /// Messages waiting for a device, oldest first.
    pub async fn fetch(
        &self,
        device: &DeviceContext,
        skip: &[u64],
        limit: usize,
    ) -> Result<Vec<QueuedMessage>> {
        let limit = limit.clamp(1, self.config.fetch_max);
        self.store
            .pending(device.device_id, now_ms(), skip, limit)
            .await
    }

    /// As [`Relay::fetch`], only messages numbered above `after`: for a
    /// live connection that has sent everything up to `after`.
    pub async fn fetch_after(
        &self,
        device: &DeviceContext,
        after: u64,
        limit: usize,
    ) -> Result<Vec<QueuedMessage>> {
        let limit = limit.clamp(1, self.config.fetch_max);
        self.store
            .pending_after(device.device_id, now_ms(), after, limit)
            .await
    }

    /// Acknowledges messages the device has stored.
    pub async fn ack(&self, device: &DeviceContext, seqs: &[u64]) -> Result<usize> {
        if seqs.len() > self.config.fetch_max {
            return Err(Error::TooMany {
                what: "acknowledgements",
                max: self.config.fetch_max,
            });
        }
        self.store.ack(device.device_id, seqs).await
    }

    /// Creates a group; the creator becomes its admin.
    pub async fn create_group(
        &self,
        creator: &DeviceContext,
        id: Id16,
        name: &str,
        members: &[String],
    ) -> Result<Group> {
        check_group_name(name)?;
        for user in members {
            check_user_ref(user)?;
        }
        if members.len() + 1 > self.config.group_members_max {
            return Err(Error::TooMany {
                what: "group members",
                max: self.config.group_members_max,
            });
        }
        let mut list = vec![GroupMember {
            user_id: creator.user_id.clone(),
            role: GroupRole::Admin,
        }];
        for user in members {
            if *user == creator.user_id || list.iter().any(|m| &m.user_id == user) {
                continue;
            }
            self.check_member(&creator.user_id, user).await?;
            list.push(GroupMember {
                user_id: user.clone(),
                role: GroupRole::Member,
            });
        }
        list.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        let group = Group {
            id,
            name: name.to_owned(),
            created_by: creator.user_id.clone(),
            created_at_ms: now_ms(),
            members: list,
        };
        self.store.create_group(&group).await?;
        Ok(group)
    }

    async fn check_member(&self, from: &str, user: &str) -> Result<()> {
        let known = self
            .certs
            .user(user)
            .await
            .map_err(directory_error)?
            .is_some()
            || !self
                .certs
                .certificates_of_user(user)
                .await
                .map_err(directory_error)?
                .is_empty();
        if !known {
            return Err(Error::NotFound("user"));
        }
        self.check_reach(from, user, Exchange::Group).await
    }

    /// A group, visible to its members only.
    pub async fn group(&self, caller: &DeviceContext, id: Id16) -> Result<Group> {
        let group = self
            .store
            .group(id)
            .await?
            .ok_or(Error::NotFound("group"))?;
        if !group.members.iter().any(|m| m.user_id == caller.user_id) {
            return Err(Error::NotFound("group"));
        }
        Ok(group)
    }

    /// The caller's groups.
    pub async fn my_groups(&self, caller: &DeviceContext) -> Result<Vec<Group>> {
        self.store.groups_of_user(&caller.user_id).await
    }

    async fn admin_group(&self, caller: &DeviceContext, id: Id16) -> Result<Group> {
        let group = self.group(caller, id).await?;
        let is_admin = group
            .members
            .iter()
            .any(|m| m.user_id == caller.user_id && m.role == GroupRole::Admin);
        if !is_admin {
            return Err(Error::Forbidden(
                "group (only its admins may change it)".into(),
            ));
        }
        Ok(group)
    }

    /// Renames a group (admins only).
    pub async fn rename_group(
        &self,
        caller: &DeviceContext,
        id: Id16,
        name: &str,
    ) -> Result<Group> {
        check_group_name(name)?;
        self.admin_group(caller, id).await?;
        self.store.rename_group(id, name).await?;
        self.group(caller, id).await
    }

    /// Adds a member or changes a role (admins only).
    pub async fn put_member(
        &self,
        caller: &DeviceContext,
        id: Id16,
        member: GroupMember,
    ) -> Result<Group> {
        check_user_ref(&member.user_id)?;
        let group = self.admin_group(caller, id).await?;
        let existing = group.members.iter().any(|m| m.user_id == member.user_id);
        if !existing && group.members.len() >= self.config.group_members_max {
            return Err(Error::TooMany {
                what: "group members",
                max: self.config.group_members_max,
            });
        }
        if !existing {
            self.check_member(&caller.user_id, &member.user_id).await?;
        }
        self.store.put_member(id, &member).await?;
        self.group(caller, id).await
    }

    /// Removes a member: admins remove anyone, members only themselves.
    pub async fn remove_member(
        &self,
        caller: &DeviceContext,
        id: Id16,
        user_id: &str,
    ) -> Result<()> {
        check_user_ref(user_id)?;
        if user_id == caller.user_id {
            self.group(caller, id).await?;
        } else {
            self.admin_group(caller, id).await?;
        }
        if !self.store.remove_member(id, user_id).await? {
            return Err(Error::NotFound("group member"));
        }
        Ok(())
    }

    /// Stores an uploaded attachment.
    pub async fn put_blob(&self, device: &DeviceContext, id: Id16, bytes: Vec<u8>) -> Result<()> {
        if bytes.len() > self.config.blob_bytes_max {
            return Err(Error::TooLarge {
                what: "attachment",
                max: self.config.blob_bytes_max,
            });
        }
        if bytes.is_empty() {
            return Err(Error::BadRequest("empty attachment".into()));
        }
        if !self.policy.may_send_files(&device.user_id) && !self.archive_pending(device).await? {
            self.policy.refused(Refusal {
                from_user: device.user_id.clone(),
                to_user: None,
                what: "file_upload",
            });
            return Err(Error::Forbidden(
                "uploading attachments (the organisation's policy allows this user no files)"
                    .into(),
            ));
        }
        let now = now_ms();
        self.store
            .put_blob(&BlobRecord {
                id,
                owner_device: device.device_id,
                bytes,
                created_at_ms: now,
                expires_at_ms: now.saturating_add(ms(self.config.blob_ttl)),
            })
            .await
    }

    /// An archive export may upload its sealed part even when the user may
    /// not send files: it is no file the user shares.
    async fn archive_pending(&self, device: &DeviceContext) -> Result<bool> {
        Ok(self
            .store
            .pending_commands(device.device_id)
            .await?
            .iter()
            .any(|c| c.kind == "archive"))
    }

    /// An attachment, for its uploader or a device that received a message
    /// naming it, if the uploader's user may still share files with the
    /// caller's.
    pub async fn blob(&self, device: &DeviceContext, id: Id16) -> Result<Vec<u8>> {
        let blob = self
            .store
            .blob_for(id, device.device_id, now_ms())
            .await?
            .ok_or(Error::NotFound("attachment"))?;
        if blob.owner_device != device.device_id {
            let owner = self
                .certs
                .certificates_of_device(&blob.owner_device)
                .await
                .map_err(directory_error)?
                .into_iter()
                .next()
                .map(|c| c.user_id);
            if let Some(owner) = owner
                && owner != device.user_id
            {
                self.check_reach(&owner, &device.user_id, Exchange::File)
                    .await?;
            }
        }
        Ok(blob.bytes)
    }

    /// Sets or clears the device's push target.
    pub async fn set_push(&self, device: &DeviceContext, push: Option<PushTarget>) -> Result<()> {
        if let Some(PushTarget::Apns(t) | PushTarget::Fcm(t)) = &push
            && (t.is_empty() || t.len() > 4096 || !t.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(Error::BadRequest(
                "push token must be 1 to 4096 printable characters".into(),
            ));
        }
        self.store
            .set_push_target(device.device_id, push.as_ref())
            .await
    }

    /// Queues a command (policy update, wipe, archive request or broadcast)
    /// for a device and hints it.
    pub async fn queue_command(
        &self,
        device: DeviceId,
        kind: &str,
        payload: &serde_json::Value,
    ) -> Result<u64> {
        if !matches!(kind, "policy" | "wipe" | "archive" | "broadcast") {
            return Err(Error::BadRequest(format!("unknown command kind {kind:?}")));
        }
        let id = self
            .store
            .queue_command(device, kind, &payload.to_string(), now_ms())
            .await?;
        self.hint(device, HintKind::Command).await;
        Ok(id)
    }

    /// Queues a wipe: drops the device's queued messages first, then queues
    /// the command. Revoking its certificate is provisioning's part and the
    /// caller's; a wiped device still fetches its commands until it confirms.
    pub async fn wipe_device(&self, device: DeviceId, reason: &str) -> Result<u64> {
        self.store.drop_queue(device).await?;
        self.queue_command(device, "wipe", &serde_json::json!({ "reason": reason }))
            .await
    }

    /// Commands waiting for the device, marked delivered as they are
    /// handed over.
    pub async fn commands(&self, device: &DeviceContext) -> Result<Vec<CommandRecord>> {
        let pending = self.store.pending_commands(device.device_id).await?;
        let fresh: Vec<u64> = pending
            .iter()
            .filter(|c| c.delivered_at_ms.is_none())
            .map(|c| c.id)
            .collect();
        if !fresh.is_empty() {
            self.store
                .mark_commands_delivered(device.device_id, &fresh, now_ms())
                .await?;
        }
        Ok(pending)
    }

    /// The device acknowledges a command; a wipe receipt marks it wiped.
    pub async fn ack_command(
        &self,
        device: &DeviceContext,
        id: u64,
        receipt: &serde_json::Value,
    ) -> Result<()> {
        let pending = self.store.pending_commands(device.device_id).await?;
        let command = pending
            .iter()
            .find(|c| c.id == id)
            .ok_or(Error::NotFound("command"))?;
        let receipt_text = receipt.to_string();
        if receipt_text.len() > 16 * 1024 {
            return Err(Error::TooLarge {
                what: "receipt",
                max: 16 * 1024,
            });
        }
        let now = now_ms();
        if !self
            .store
            .ack_command(device.device_id, id, &receipt_text, now)
            .await?
        {
            return Err(Error::NotFound("command"));
        }
        if command.kind == "wipe" {
            self.store.mark_wiped(device.device_id, now).await?;
            if let Some(listener) = &self.wiped_listener {
                // Whoever listens (kontor serve) revokes the certificate.
                let _ = listener.send(device.device_id);
            }
        }
        Ok(())
    }

    /// Drops expired messages and attachments, and kept certificate
    /// identities past their time; returns (messages, blobs).
    pub async fn expire(&self) -> Result<(usize, usize)> {
        self.forget_identities(Instant::now());
        let now = now_ms();
        Ok((
            self.store.expire_messages(now).await?,
            self.store.expire_blobs(now).await?,
        ))
    }
}

fn check_group_name(name: &str) -> Result<()> {
    // No control characters: PostgreSQL cannot store NUL in text (a 500
    // before this check), and names are shown to people.
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(Error::BadRequest(
            "group name must be 1 to 200 characters, no control characters".into(),
        ));
    }
    Ok(())
}

/// A user id from a request (a path, a member list): no user id has a
/// control character (PostgreSQL cannot even compare text with NUL; that
/// was a 500), so such an id is refused before any store sees it.
fn check_user_ref(user_id: &str) -> Result<()> {
    if user_id.is_empty() || user_id.chars().any(char::is_control) {
        return Err(Error::BadRequest(
            "a user id must be non-empty, without control characters".into(),
        ));
    }
    Ok(())
}
