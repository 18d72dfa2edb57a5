//! Integration tests of the relay.

mod service;
