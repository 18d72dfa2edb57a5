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
//! - [`store`]: which MDM device each enrollment token was made for, and
//!   the commands sent to MDMs with their state (SQLite).
//! - [`service`]: `Connector`, what an EMM asks for, through the
//!   administration (authorised, scoped, audited) plus the MDM side.
//! - [`payloads`]: the connector's use of the builders.
//! - [`http`]: the EMM API and SCIM routers (API keys of `emm` integrations).
//! - [`scim_service`]: SCIM users and groups on Kontor's users and departments.
//! - [`mdm`]: the outbox-backed MDM side (NanoMDM, Android Management API).

pub mod android;
pub mod apple;
pub mod clients;
pub mod http;
pub mod mdm;
pub mod outbox;
pub mod payloads;
pub mod results;
pub mod scim;
pub mod scim_service;
pub mod service;
pub mod store;
