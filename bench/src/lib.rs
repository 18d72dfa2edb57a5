//! Kontor's load harness (issue 10), not part of the shipped binary.
//!
//! It starts each system under test itself, on loopback, pinned to one
//! core: Kontor (`kontor serve`, on SQLite, on PostgreSQL, and two nodes
//! with NATS), Prosody and ejabberd (Debian's packages, configured in a
//! temporary directory). The generator runs on the other core, open-loop,
//! and records latencies in HDR histograms. See BENCHMARKS.md for the
//! commands and the figures.
//!
//! - [`peer`]: what a workload needs of a system, whatever its protocol.
//! - [`xmpp`]: Prosody and ejabberd, and the XMPP client that drives them.

pub mod peer;
pub mod xmpp;
