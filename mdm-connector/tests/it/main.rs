//! Integration tests of the MDM connector.
#![allow(missing_docs)]

mod clients;
mod outbox;
mod scim;
