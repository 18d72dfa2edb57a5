//! Integration tests of the MDM connector.
#![allow(missing_docs)]

mod apple_schema;
mod clients;
mod erasure;
mod outbox;
mod payloads;
mod results;
mod scim;
