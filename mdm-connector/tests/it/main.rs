//! Integration tests of the MDM connector.
#![allow(missing_docs)]
