//! `kontor archive ...`: the organisation's archive key, kept away from
//! the server. `keygen` makes the X25519 key pair (the private half into a
//! new file only its owner can read; the public half goes into archive
//! requests); `open` opens the parts devices uploaded and prints, or
//! writes, their JSON documents.
//!
//! Opening checks every MAC before anything is decrypted; the parts are all
//! opened before anything is printed or written, so a wrong key or an
//! altered part names the file and changes nothing. An opened part proves
//! that it was sealed with the identity key its header names (shown on
//! standard error); compare that key with the key directory to know which
//! device it belongs to. Parts carry file metadata, never file contents.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use kontor_crypto::IdentitySecret;
use zeroize::Zeroizing;

/// `kontor archive` subcommands.
#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// Make an archive key pair: the private key (64 hex digits) goes into
    /// a new file readable only by you; the public key is printed, for the
    /// administration's archive requests.
    Keygen {
        /// The new private key file (refuses to overwrite).
        #[arg(long)]
        out: PathBuf,
    },
    /// Open archive parts with the archive private key and print their JSON
    /// documents, one per line (or write them with `--out`).
    Open {
        /// The archive private key file (from `kontor archive keygen`).
        #[arg(long)]
        key: PathBuf,
        /// Write one `<part name>.json` per part into this directory instead
        /// of printing (never overwrites).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The sealed part files, as downloaded.
        #[arg(required = true)]
        parts: Vec<PathBuf>,
    },
}

/// Runs a `kontor archive` subcommand.
pub fn run(command: ArchiveCommand) -> anyhow::Result<ExitCode> {
    match command {
        ArchiveCommand::Keygen { out } => keygen(&out),
        ArchiveCommand::Open { key, out, parts } => open(&key, out.as_deref(), &parts),
    }
}

fn keygen(out: &Path) -> anyhow::Result<ExitCode> {
    let secret = IdentitySecret::generate(&mut kontor_crypto::os_rng());
    let mut text = Zeroizing::new(hex::encode(&secret.to_bytes()[..]));
    text.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| {
            format!(
                "cannot create {} (an existing file is never overwritten)",
                out.display()
            )
        })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", out.display()))?;
    println!("{}", secret.public().to_hex());
    eprintln!(
        "wrote the archive private key to {}; keep it offline, away from the server",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn read_key(path: &Path) -> anyhow::Result<IdentitySecret> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?,
    );
    IdentitySecret::from_hex(text.trim()).map_err(|_| {
        anyhow::anyhow!(
            "{}: not an archive private key (64 hex digits)",
            path.display()
        )
    })
}

fn open(key: &Path, out: Option<&Path>, parts: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let secret = read_key(key)?;
    // Everything is opened first: a bad part stops before any output.
    let mut opened = Vec::with_capacity(parts.len());
    for path in parts {
        let sealed =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let part = kontor_agent::archive::open_part(&sealed, &secret)
            .with_context(|| format!("{}: cannot open this archive part", path.display()))?;
        opened.push((path, part));
    }
    match out {
        None => {
            let mut stdout = std::io::stdout().lock();
            for (path, part) in &opened {
                stdout.write_all(&part.document)?;
                stdout.write_all(b"\n")?;
                sealed_by(path, part);
            }
            stdout.flush()?;
        }
        Some(dir) => {
            let targets = targets(dir, parts)?;
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for ((path, part), target) in opened.iter().zip(&targets) {
                // The documents are plaintext: readable by their owner only.
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(target)
                    .with_context(|| format!("cannot create {}", target.display()))?;
                file.write_all(&part.document)
                    .and_then(|()| file.sync_all())
                    .with_context(|| format!("cannot write {}", target.display()))?;
                sealed_by(path, part);
                println!("{}", target.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One `<file stem>.json` per part in `dir`; refuses duplicates and files
/// that exist, before anything is written.
fn targets(dir: &Path, parts: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = Vec::with_capacity(parts.len());
    for path in parts {
        let stem = path
            .file_stem()
            .with_context(|| format!("{}: names no file", path.display()))?;
        let mut name = stem.to_os_string();
        name.push(".json");
        let target = dir.join(name);
        if out.contains(&target) {
            bail!(
                "two parts would be written to {}; rename one",
                target.display()
            );
        }
        if target.exists() {
            bail!("{} exists; it is never overwritten", target.display());
        }
        out.push(target);
    }
    Ok(out)
}

fn sealed_by(path: &Path, part: &kontor_agent::archive::OpenedPart) {
    eprintln!(
        "{}: sealed by device {} with identity key {}",
        path.display(),
        part.sender_device,
        part.sender_key.to_hex()
    );
}
