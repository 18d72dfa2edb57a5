//! The integration tests of `kontor-provisioning`, one binary.

mod common;
mod erasure;
mod golden;
mod http;
mod pki;
mod service;
mod store;
