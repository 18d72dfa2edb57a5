//! Erasure (DSGVO Art. 17) and export (Art. 15, 20) beyond the
//! administration's own tables.
//!
//! Removing a user erases them from the administration, provisioning and
//! the relay, which the administration reaches directly, and from every
//! component that registered a [`UserEraser`] (the MDM connector's device
//! mappings and commands, SCIM's attributes): those crates build on this
//! one, so the administration cannot name them.

use std::future::Future;
use std::pin::Pin;

use kontor_provisioning::DeviceId;

use crate::error::Result;

/// A future an [`UserEraser`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Personal data another component keeps about users: exported with
/// theirs, erased with them.
pub trait UserEraser: Send + Sync {
    /// A short name for the audit trail's erasure record and the data
    /// export (`connector`).
    fn name(&self) -> &'static str;

    /// Every row [`UserEraser::erase_user`] would delete, as JSON, for the
    /// user's data export (DSGVO Art. 15 and 20).
    fn export_user<'a>(
        &'a self,
        org: &'a str,
        user_id: &'a str,
        devices: &'a [DeviceId],
    ) -> BoxFuture<'a, Result<serde_json::Value>>;

    /// Deletes every row that names `user_id` of `org` or one of
    /// `devices`, and returns how many went. Called before provisioning
    /// erases the devices, after their certificates were revoked; must be
    /// idempotent, because a removal that failed half-way is retried from
    /// the start.
    fn erase_user<'a>(
        &'a self,
        org: &'a str,
        user_id: &'a str,
        devices: &'a [DeviceId],
    ) -> BoxFuture<'a, Result<u64>>;
}
