//! Integration tests of the relay.

mod nodes;
mod push;
mod service;
mod tls;
