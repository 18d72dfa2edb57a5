//! `kontor audit ...`: check and export the administration audit trail in
//! `<data-dir>/kontor.db`. Both open the database read-only.

use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use kontor_admin::audit::{self, AuditLog, Filter};

/// Entries fetched per query while exporting.
const PAGE: usize = 1_000;

/// `kontor audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Check the hash chain of the audit trail. Prints `audit trail intact:
    /// N entries, head HASH` (after audit retention, followed by the
    /// checkpoint it started from) and exits 0, or names the first edited,
    /// deleted or reordered entry, or a checkpoint no retention run
    /// recorded, and exits 1.
    Verify {
        /// The server's data directory.
        #[arg(long, default_value = "kontor-data", env = "KONTOR_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Write audit entries to stdout, oldest first, one per line. Filters
    /// combine; text filters match exactly, and an actor or target also
    /// matches the pseudonym the trail names that user by. JSON lines carry
    /// a `names` object resolving pseudonyms (erased users stay
    /// pseudonyms); syslog lines carry pseudonyms only.
    Export {
        /// The server's data directory.
        #[arg(long, default_value = "kontor-data", env = "KONTOR_DATA_DIR")]
        data_dir: PathBuf,
        /// JSON lines, or RFC 5424 syslog lines (facility authpriv) for a
        /// collector off this host.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        /// Only this organisation's entries.
        #[arg(long)]
        org: Option<String>,
        /// Only entries by this actor.
        #[arg(long)]
        actor: Option<String>,
        /// Only this action, like `device.wipe`.
        #[arg(long)]
        action: Option<String>,
        /// Only entries about this target.
        #[arg(long)]
        target: Option<String>,
        /// Only entries at or after this time (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        since: Option<i64>,
        /// Only entries before this time (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        until: Option<i64>,
        /// HOSTNAME of syslog lines [default: this machine's name].
        #[arg(long)]
        hostname: Option<String>,
    },
}

/// How `kontor audit export` writes entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line; hashes in hex.
    Jsonl,
    /// RFC 5424 syslog lines.
    Syslog,
}

/// Runs a `kontor audit` subcommand.
pub fn run(cmd: AuditCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCmd::Verify { data_dir } => verify(&data_dir),
        AuditCmd::Export {
            data_dir,
            format,
            org,
            actor,
            action,
            target,
            since,
            until,
            hostname,
        } => {
            if let (Some(since), Some(until)) = (since, until)
                && since > until
            {
                anyhow::bail!("--since is after --until");
            }
            let filter = Filter {
                org,
                actor,
                action,
                target,
                since_ms: since,
                until_ms: until,
                after_seq: None,
                limit: PAGE,
            };
            filter.validate()?;
            let hostname = hostname.unwrap_or_else(this_host);
            export(&data_dir, format, filter, &hostname)
        }
    }
}

fn database(data_dir: &Path) -> PathBuf {
    data_dir.join("kontor.db")
}

fn verify(data_dir: &Path) -> anyhow::Result<ExitCode> {
    let path = database(data_dir);
    let report = audit::verify_database(&path)
        .with_context(|| format!("cannot verify the audit trail in {}", path.display()))?;
    println!("{report}");
    Ok(if report.is_intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn export(
    data_dir: &Path,
    format: ExportFormat,
    mut filter: Filter,
    hostname: &str,
) -> anyhow::Result<ExitCode> {
    let path = database(data_dir);
    let log = AuditLog::open_read_only(&path)
        .with_context(|| format!("cannot open the audit trail in {}", path.display()))?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    let written = (|| -> anyhow::Result<()> {
        loop {
            let page = log.query(&filter).context("cannot read the audit trail")?;
            // JSON lines name what pseudonyms stand for (until erasure);
            // syslog lines, meant for a collector off this host where
            // erasure cannot reach, keep the pseudonyms.
            let names = match format {
                ExportFormat::Jsonl => log.names(&page).context("cannot read the audit trail")?,
                ExportFormat::Syslog => audit::Names::new(),
            };
            for entry in &page {
                let line = match format {
                    ExportFormat::Jsonl => audit::json_line_named(entry, &names),
                    ExportFormat::Syslog => audit::syslog_line(entry, hostname),
                };
                writeln!(out, "{line}")?;
            }
            match page.last() {
                Some(last) if page.len() == PAGE => filter.after_seq = Some(last.seq),
                _ => break,
            }
        }
        out.flush()?;
        Ok(())
    })();
    match written {
        // A reader that stops early (`| head`) is not an error.
        Err(err)
            if err
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == ErrorKind::BrokenPipe) =>
        {
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => Err(err),
        Ok(()) => Ok(ExitCode::SUCCESS),
    }
}

fn parse_time(input: &str) -> Result<i64, String> {
    audit::parse_rfc3339_ms(input).map_err(|err| err.to_string())
}

/// This machine's name, or empty (written as `-`) where it cannot be read.
fn this_host() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|file| std::fs::read_to_string(file).ok())
        .map(|name| name.trim().to_owned())
        .unwrap_or_default()
}
