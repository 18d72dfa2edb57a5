//! Integration tests of the MDM connector.
#![allow(missing_docs)]

mod apple_schema;
mod payloads;
mod results;
