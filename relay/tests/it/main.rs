//! Integration tests of the relay.

mod nodes;
mod service;
mod tls;
