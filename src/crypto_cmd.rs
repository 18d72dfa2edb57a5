//! `kontor crypto ...`: tools around protocol v1.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

/// `kontor crypto` subcommands.
#[derive(Debug, Subcommand)]
pub enum CryptoCommand {
    /// Check a protocol v1 test-vector file (envelope or store vectors, in
    /// protocol.md's format, written by anyone). Prints `N passed, M failed`
    /// and exits non-zero on any failure.
    VerifyVectors {
        /// The JSON vector file.
        file: PathBuf,
    },
}

/// Runs a `kontor crypto` subcommand.
pub fn run(command: CryptoCommand) -> anyhow::Result<ExitCode> {
    match command {
        CryptoCommand::VerifyVectors { file } => verify_vectors(&file),
    }
}

fn verify_vectors(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let json = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read vector file {}", file.display()))?;
    let report = kontor_crypto::vectors::check_json(&json)
        .with_context(|| format!("cannot check {}", file.display()))?;
    for (name, why) in &report.failed {
        println!("FAILED {name}: {why}");
    }
    println!("{} passed, {} failed", report.passed, report.failed.len());
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
