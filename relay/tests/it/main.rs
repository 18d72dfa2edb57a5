//! Integration tests of the relay.

mod nodes;
mod openapi;
mod push;
mod service;
mod tls;
