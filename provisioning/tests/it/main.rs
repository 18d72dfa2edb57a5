//! The integration tests of `kontor-provisioning`, one binary.

mod common;
mod pki;
