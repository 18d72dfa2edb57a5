//! Integration tests of the relay.

mod erasure;
mod nodes;
mod openapi;
mod push;
#[macro_use]
mod service;
mod store;
mod tls;
