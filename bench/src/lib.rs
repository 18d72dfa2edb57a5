//! Kontor's load harness (issue 10), not part of the shipped binary.
//!
//! It starts each system under test itself, on loopback, pinned to one
//! core: Kontor (`kontor serve`, on SQLite, on PostgreSQL, and two nodes
//! with NATS), Prosody and ejabberd (Debian's packages, configured in a
//! temporary directory). The generator runs on the other core, open-loop,
//! and records latencies in HDR histograms. See BENCHMARKS.md for the
//! commands and the figures.
//!
//! # Layout
//! - [`peer`]: what a workload needs of a system, whatever its protocol.
//! - [`kontor`]: Kontor as a peer (enrolled devices, HTTP/2 sends, WebSocket).
//! - [`xmpp`]: Prosody and ejabberd as peers (c2s over TLS, MUC).
//! - [`load`]: the workloads, open-loop, with loss and saturation checks.
//! - [`procfs`]: memory and CPU readings, pinning.
//! - [`report`]: Markdown tables and SVG charts.

pub mod kontor;
pub mod load;
pub mod peer;
pub mod procfs;
pub mod report;
pub mod xmpp;
