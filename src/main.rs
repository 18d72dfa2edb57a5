//! `kontor`: the one binary of the product.
//!
//! Each subcommand lives in its own module under `src/`; this file only
//! parses the command line and dispatches. Libraries return typed errors;
//! here they become `anyhow` errors with context for the operator.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod admin_cmd;
mod agent_cmd;
mod archive_cmd;
mod audit_cmd;
mod config_cmd;
mod crypto_cmd;
mod demo;
mod serve;

/// mimalloc rather than glibc's malloc: the relay allocates and frees
/// small buffers per request from one worker thread and a writer thread,
/// where glibc's arenas spent about a tenth of the server's CPU
/// (BENCHMARKS.md, "2026-12-04, evening").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Kontor: a secure messenger your organisation runs itself.
#[derive(Debug, Parser)]
#[command(name = "kontor", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// End-to-end cryptography tools (protocol v1).
    #[command(subcommand)]
    Crypto(crypto_cmd::CryptoCommand),
    /// The device side: enroll, send, receive, wipe.
    Agent(agent_cmd::AgentArgs),
    /// The organisation's archive key: make it, open archive parts.
    #[command(subcommand)]
    Archive(archive_cmd::ArchiveCommand),
    /// Managed configuration: schemas for EMM consoles, rendering, checks.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Show, step by step, what this build of Kontor does.
    Demo(demo::DemoArgs),
    /// The administration's audit trail: verify its chain, export it.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCmd),
    /// Administration tasks on the server's data directory.
    #[command(subcommand)]
    Admin(admin_cmd::AdminCommand),
    /// Run the server: enrollment and relay, on SQLite by default.
    Serve(Box<serve::ServeArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Admin(cmd) => admin_cmd::run(cmd),
        Command::Agent(args) => agent_cmd::run(args),
        Command::Archive(cmd) => archive_cmd::run(cmd),
        Command::Audit(cmd) => audit_cmd::run(cmd),
        Command::Config(cmd) => config_cmd::run(cmd),
        Command::Crypto(cmd) => crypto_cmd::run(cmd),
        Command::Demo(args) => demo::run(args),
        Command::Serve(args) => serve::run(*args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
