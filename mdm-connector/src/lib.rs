//! Kontor's EMM/MDM connector: the seam between Kontor and the EMM
//! platforms organisations already use.
//!
//! # Layout
//! - [`apple`]: Apple MDM command and declaration builders (pure), each
//!   checked against Apple's device-management schemas in the tests.
//! - [`android`]: Android Management API payloads (pure).
//! - [`results`]: parsing what MDMs report back (Apple command results,
//!   Android status notifications and keyed app states).
//! - [`scim`]: SCIM 2.0 users and groups as Entra ID and Okta send them:
//!   resources, filters, PATCH (pure).
//! - [`outbox`]: a persisted outbox of calls to MDM servers, delivered with
//!   retries, backoff and idempotency keys.
//! - [`clients`]: outbound HTTP clients for NanoMDM's command API and the
//!   Android Management API.

pub mod android;
pub mod apple;
pub mod clients;
pub mod outbox;
pub mod results;
pub mod scim;
