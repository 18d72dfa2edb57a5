//! `kontor admin`: administration tasks run on the server's data
//! directory, for what must work before anyone can sign in.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use zeroize::Zeroizing;

/// `kontor admin ...`
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an owner account (the first one, or after losing access).
    /// The password comes from KONTOR_ADMIN_PASSWORD or the first line of
    /// standard input.
    CreateOwner {
        /// The server's data directory.
        #[arg(long, default_value = "kontor-data", env = "KONTOR_DATA_DIR")]
        data_dir: PathBuf,
        /// The sign-in name.
        #[arg(long)]
        login: String,
        /// The organisation (as `kontor serve --org-id`).
        #[arg(long, default_value = "kontor", env = "KONTOR_ORG_ID")]
        org_id: String,
        /// The organisation's name.
        #[arg(long, default_value = "Kontor Demo GmbH", env = "KONTOR_ORG_NAME")]
        org_name: String,
        /// The server runs on PostgreSQL (the administration's tables are
        /// then in admin.db).
        #[arg(long)]
        scale_out: bool,
    },
}

/// Runs a `kontor admin` command.
pub fn run(cmd: AdminCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AdminCommand::CreateOwner {
            data_dir,
            login,
            org_id,
            org_name,
            scale_out,
        } => {
            let password = match std::env::var("KONTOR_ADMIN_PASSWORD") {
                Ok(p) => Zeroizing::new(p),
                Err(_) => {
                    let mut line = Zeroizing::new(String::new());
                    std::io::stdin()
                        .lock()
                        .read_line(&mut line)
                        .context("cannot read the password from standard input")?;
                    Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned())
                }
            };
            if !data_dir.is_dir() {
                bail!(
                    "{} is not a data directory; start kontor serve once or create it",
                    data_dir.display()
                );
            }
            let db = data_dir.join(if scale_out { "admin.db" } else { "kontor.db" });
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let store = kontor_admin::store::AdminStore::open(&db)
                    .with_context(|| format!("cannot open {}", db.display()))?;
                let audit = kontor_admin::audit::AuditLog::open(&db)
                    .with_context(|| format!("cannot open the audit trail in {}", db.display()))?;
                kontor_admin::service::create_owner(
                    &store, &audit, &org_id, &org_name, &login, &password,
                )
                .await
                .context("cannot create the owner")?;
                println!("kontor: owner {login} of {org_id} created; sign in on the admin API");
                anyhow::Ok(ExitCode::SUCCESS)
            })
        }
    }
}
