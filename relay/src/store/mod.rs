//! Storage traits, cut by capability, and their records.
//!
//! The database is the truth: a message is acknowledged to its sender only
//! after [`MessageStore::store_message`] committed its body and one queue
//! entry per recipient device in one transaction. Implementations:
//! [`sqlite::SqliteStore`] (embedded default) and
//! [`postgres::PostgresStore`] (scale-out); the same test suite runs on both.
//!
//! Times are milliseconds since the Unix epoch, passed in by the caller.

use std::future::Future;

use kontor_provisioning::DeviceId;

use crate::error::Result;
use crate::wire::Id16;

pub mod postgres;
pub mod sqlite;

/// A message as the relay stores it: the body once, a delivery per device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The sending device (from its certificate).
    pub sender_device: DeviceId,
    /// The sender's message id; unique per sender device.
    pub message_id: Id16,
    /// The group, for group messages.
    pub group_id: Option<Id16>,
    /// SHA-256 of the body, to tell a retry from a replay.
    pub body_hash: [u8; 32],
    /// The encrypted body.
    pub body: Vec<u8>,
    /// Recipient device and its 305-byte header and wrap.
    pub deliveries: Vec<(DeviceId, Vec<u8>)>,
    /// Attachments the message names: each recipient device may then
    /// download them.
    pub blob_ids: Vec<Id16>,
    /// When the relay accepted it.
    pub received_at_ms: i64,
    /// When undelivered copies are dropped.
    pub expires_at_ms: i64,
}

/// What storing a message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Stored now; the queue sequence number given to each recipient device.
    New(Vec<(DeviceId, u64)>),
    /// The same sender had already stored this message id with the same
    /// body: a retry. Nothing changed.
    Duplicate,
}

/// One queued message for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// Sequence number: increases with every message queued on this relay.
    pub seq: u64,
    /// When the relay accepted the message.
    pub received_at_ms: i64,
    /// The 305-byte header and wrap for this device.
    pub delivery: Vec<u8>,
    /// The body.
    pub body: Vec<u8>,
}

/// Messages: store once, queue per device, fetch, acknowledge, expire.
pub trait MessageStore: Send + Sync {
    /// Stores the body and one queue entry per recipient in one transaction.
    /// Refuses with `Error::QueueFull` (storing nothing) when a recipient
    /// already has `queue_len_max` entries, and with `Error::Replay` when
    /// the sender used this message id for another body.
    fn store_message(
        &self,
        message: &NewMessage,
        queue_len_max: u64,
    ) -> impl Future<Output = Result<Stored>> + Send;
    /// Unacknowledged, unexpired messages for `device`, oldest first, at
    /// most `limit`, skipping sequence numbers in `skip` (those already
    /// sent on a live connection).
    fn pending(
        &self,
        device: DeviceId,
        now_ms: i64,
        skip: &[u64],
        limit: usize,
    ) -> impl Future<Output = Result<Vec<QueuedMessage>>> + Send;
    /// As [`RelayStore::pending`], only the entries with a sequence number
    /// above `after`: what a live connection that has sent everything up
    /// to `after` still lacks, read without going over what it sent.
    /// Within one device's queue, entries become visible in sequence order
    /// (SQLite has one writer; PostgreSQL stores under the device's
    /// advisory lock and draws the number after taking it), so no entry
    /// numbered `after` or below appears later.
    fn pending_after(
        &self,
        device: DeviceId,
        now_ms: i64,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<QueuedMessage>>> + Send;
    /// Acknowledges (deletes) queue entries of `device`; returns how many
    /// existed. A body goes when its last queue entry does.
    fn ack(&self, device: DeviceId, seqs: &[u64]) -> impl Future<Output = Result<usize>> + Send;
    /// Drops every queue entry of `device` (remote wipe); returns how many.
    fn drop_queue(&self, device: DeviceId) -> impl Future<Output = Result<usize>> + Send;
    /// How many entries wait for `device`.
    fn queue_len(&self, device: DeviceId) -> impl Future<Output = Result<u64>> + Send;
    /// Deletes queue entries and bodies past their expiry; returns how many
    /// queue entries went.
    fn expire_messages(&self, now_ms: i64) -> impl Future<Output = Result<usize>> + Send;
}

/// A member's right in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupRole {
    /// May rename the group and add or remove members.
    Admin,
    /// May send to the group.
    Member,
}

impl GroupRole {
    /// The stored name.
    pub fn as_str(&self) -> &'static str {
        match self {
            GroupRole::Admin => "admin",
            GroupRole::Member => "member",
        }
    }

    /// Parses the stored name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "admin" => Some(GroupRole::Admin),
            "member" => Some(GroupRole::Member),
            _ => None,
        }
    }
}

/// A group member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The member's user id.
    pub user_id: String,
    /// Their right.
    pub role: GroupRole,
}

/// A group conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// 16 random bytes chosen by the creator.
    pub id: Id16,
    /// Display name (opaque to the relay; agents may encrypt it).
    pub name: String,
    /// The user who created it.
    pub created_by: String,
    /// When.
    pub created_at_ms: i64,
    /// Members, ordered by user id.
    pub members: Vec<GroupMember>,
}

/// Groups and their members.
pub trait GroupStore: Send + Sync {
    /// Creates a group with its members; `Error::Replay` if the id exists.
    fn create_group(&self, group: &Group) -> impl Future<Output = Result<()>> + Send;
    /// A group with its members.
    fn group(&self, id: Id16) -> impl Future<Output = Result<Option<Group>>> + Send;
    /// Renames a group; false if it does not exist.
    fn rename_group(&self, id: Id16, name: &str) -> impl Future<Output = Result<bool>> + Send;
    /// Adds a member or changes their role; false if the group does not exist.
    fn put_member(
        &self,
        id: Id16,
        member: &GroupMember,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Removes a member; false if they were not one.
    fn remove_member(&self, id: Id16, user_id: &str) -> impl Future<Output = Result<bool>> + Send;
    /// The groups `user_id` belongs to, with their members.
    fn groups_of_user(&self, user_id: &str) -> impl Future<Output = Result<Vec<Group>>> + Send;
}

/// An uploaded attachment (opaque ciphertext).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRecord {
    /// 16 random bytes chosen by the uploader.
    pub id: Id16,
    /// The uploading device.
    pub owner_device: DeviceId,
    /// The ciphertext.
    pub bytes: Vec<u8>,
    /// When it was uploaded.
    pub created_at_ms: i64,
    /// When it is deleted.
    pub expires_at_ms: i64,
}

/// Attachments: upload, grant, download, expire.
pub trait BlobStore: Send + Sync {
    /// Stores a blob; `Error::Replay` if the id exists.
    fn put_blob(&self, blob: &BlobRecord) -> impl Future<Output = Result<()>> + Send;
    /// A blob, if `device` may read it: its owner, or a device that received
    /// a message naming it. Expired blobs are not returned.
    fn blob_for(
        &self,
        id: Id16,
        device: DeviceId,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<BlobRecord>>> + Send;
    /// The owner of a blob, if it exists (to check a message names only the
    /// sender's own uploads).
    fn blob_owner(&self, id: Id16) -> impl Future<Output = Result<Option<DeviceId>>> + Send;
    /// Deletes expired blobs and their grants; returns how many blobs went.
    fn expire_blobs(&self, now_ms: i64) -> impl Future<Output = Result<usize>> + Send;
}

/// A command to a device: a policy update, a wipe, an archive request or a
/// broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRecord {
    /// Increases per relay.
    pub id: u64,
    /// The device it is for.
    pub device: DeviceId,
    /// `policy`, `wipe`, `archive` or `broadcast`.
    pub kind: String,
    /// JSON payload (the policy, or the wipe's reason).
    pub payload: String,
    /// When it was queued.
    pub created_at_ms: i64,
    /// When the device acknowledged it.
    pub acked_at_ms: Option<i64>,
    /// The device's receipt (JSON), for a wipe the wipe receipt.
    pub receipt: Option<String>,
    /// When it was first handed to the device (fetched, or sent live).
    pub delivered_at_ms: Option<i64>,
}

/// Commands to devices, queued and acknowledged like messages.
pub trait CommandStore: Send + Sync {
    /// Queues a command; returns its id.
    fn queue_command(
        &self,
        device: DeviceId,
        kind: &str,
        payload: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<u64>> + Send;
    /// Records that these commands were handed to the device (the first
    /// time only).
    fn mark_commands_delivered(
        &self,
        device: DeviceId,
        ids: &[u64],
        now_ms: i64,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Unacknowledged commands of a device, oldest first.
    fn pending_commands(
        &self,
        device: DeviceId,
    ) -> impl Future<Output = Result<Vec<CommandRecord>>> + Send;
    /// Records the device's acknowledgement; false if no such pending command.
    fn ack_command(
        &self,
        device: DeviceId,
        id: u64,
        receipt: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Every command of a device, acknowledged or not, oldest first.
    fn commands_of_device(
        &self,
        device: DeviceId,
    ) -> impl Future<Output = Result<Vec<CommandRecord>>> + Send;
}

/// Where to send a device's push hints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushTarget {
    /// Apple Push Notification service device token (hex).
    Apns(String),
    /// Firebase Cloud Messaging registration token.
    Fcm(String),
}

/// What the relay keeps about a device beyond its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceState {
    /// The device.
    pub device: DeviceId,
    /// Its push target, if it registered one.
    pub push: Option<PushTarget>,
    /// Last authenticated request.
    pub last_seen_ms: Option<i64>,
    /// When a wipe was confirmed by the device; a wiped device is refused.
    pub wiped_at_ms: Option<i64>,
}

/// Per-device state: push target, last seen, wiped.
pub trait DeviceStateStore: Send + Sync {
    /// The device's state, if the relay has seen it.
    fn device_state(
        &self,
        device: DeviceId,
    ) -> impl Future<Output = Result<Option<DeviceState>>> + Send;
    /// Sets or clears the push target.
    fn set_push_target(
        &self,
        device: DeviceId,
        push: Option<&PushTarget>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Records an authenticated request.
    fn touch_device(
        &self,
        device: DeviceId,
        now_ms: i64,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Records a confirmed wipe.
    fn mark_wiped(&self, device: DeviceId, now_ms: i64) -> impl Future<Output = Result<()>> + Send;
    /// Those of `devices` whose wipe was confirmed, in one read (a message
    /// checks all its recipients), in no particular order.
    fn wiped_devices(
        &self,
        devices: &[DeviceId],
    ) -> impl Future<Output = Result<Vec<DeviceId>>> + Send;
}

/// Everything the relay stores.
pub trait RelayStore:
    MessageStore
    + GroupStore
    + BlobStore
    + CommandStore
    + DeviceStateStore
    + ErasureStore
    + Clone
    + 'static
{
}

impl<T> RelayStore for T where
    T: MessageStore
        + GroupStore
        + BlobStore
        + CommandStore
        + DeviceStateStore
        + ErasureStore
        + Clone
        + 'static
{
}

/// A user's rows in the relay's tables, table by table: what
/// [`ErasureStore::erase_user`] deleted, or what
/// [`ErasureStore::user_rows`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserRows {
    /// `relay_devices` rows (push target, last seen, wipe time).
    pub devices: u64,
    /// `relay_queue` entries waiting for their devices.
    pub queued: u64,
    /// `relay_bodies` no queue entry referenced any more.
    pub bodies: u64,
    /// `relay_seen` rows: message ids their devices sent.
    pub seen: u64,
    /// `relay_blobs` their devices uploaded.
    pub blobs: u64,
    /// `relay_blob_grants` to their devices or on their blobs.
    pub grants: u64,
    /// `relay_commands` to their devices (policies, wipes and receipts).
    pub commands: u64,
    /// `relay_group_members` rows of the user.
    pub memberships: u64,
    /// `relay_groups` the user was the last member of (deleted).
    pub groups_deleted: u64,
    /// `relay_groups` whose creator was the user: the creator is cleared
    /// (the group stays with its other members).
    pub groups_creator_cleared: u64,
}

impl UserRows {
    /// Rows deleted or cleared, all tables together.
    pub fn total(&self) -> u64 {
        self.devices
            + self.queued
            + self.bodies
            + self.seen
            + self.blobs
            + self.grants
            + self.commands
            + self.memberships
            + self.groups_deleted
            + self.groups_creator_cleared
    }
}

/// Erasure of a user (DSGVO Art. 17).
pub trait ErasureStore: Send + Sync {
    /// Deletes, in one transaction, every row that names `user_id` or one
    /// of `devices`: the devices' state (push tokens), their queued
    /// messages (and bodies no other device waits for), the message ids
    /// they sent, the attachments they uploaded with every grant on them,
    /// grants to them, their commands, and the user's group memberships.
    /// A group the user was the last member of goes; one they created
    /// that others still use stays with its creator cleared.
    ///
    /// Idempotent: a second call finds nothing and returns zeros. The
    /// caller revokes the devices' certificates first, so nothing adds
    /// rows for them afterwards, and reads `devices` from provisioning
    /// before provisioning's own erasure deletes them.
    fn erase_user(
        &self,
        user_id: &str,
        devices: &[DeviceId],
    ) -> impl Future<Output = Result<UserRows>> + Send;
    /// The rows [`ErasureStore::erase_user`] would delete now, counted by
    /// running it and rolling back (for the user's data export, so the
    /// export names every table erasure reaches).
    fn user_rows(
        &self,
        user_id: &str,
        devices: &[DeviceId],
    ) -> impl Future<Output = Result<UserRows>> + Send;
}
