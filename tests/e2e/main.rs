//! End-to-end tests of the `kontor` binary: real processes, as a user runs them.

mod admin;
mod agent;
mod archive;
mod config_cli;
mod crypto_cli;
mod emm;
mod faults;
mod flood;
mod portal;
mod relay_crash;
mod scale_out;
mod serve;

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs the built `kontor` binary with `args`.
pub fn kontor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kontor"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("the kontor binary runs")
}

/// The project root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Standard output as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}
