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
    /// Print every personal datum the server holds about a user as JSON
    /// (DSGVO Art. 15 and 20), through the admin API with the API key in
    /// KONTOR_API_KEY.
    ExportUser {
        /// The user.
        #[arg(long)]
        user: String,
        #[command(flatten)]
        remote: Remote,
    },
}

/// Where a running server's admin API is.
#[derive(Debug, clap::Args)]
pub struct Remote {
    /// The admin API's address (host:port).
    #[arg(long, default_value = "localhost:8445")]
    pub server: String,
    /// The organisation's root CA (PEM), to check the server.
    #[arg(long, default_value = "kontor-data/root.pem")]
    pub ca: PathBuf,
}

/// Runs a `kontor admin` command.
pub fn run(cmd: AdminCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AdminCommand::ExportUser { user, remote } => export_user(&user, &remote),
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

fn export_user(user: &str, remote: &Remote) -> anyhow::Result<ExitCode> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let key = Zeroizing::new(
        std::env::var("KONTOR_API_KEY").context("set KONTOR_API_KEY to an admin API key")?,
    );
    let root = CertificateDer::from_pem_file(&remote.ca)
        .with_context(|| format!("cannot read the root CA {}", remote.ca.display()))?;
    let host = remote
        .server
        .rsplit_once(':')
        .map(|(h, _)| h)
        .context("--server must be host:port")?;
    let address = remote.server.replace("localhost:", "127.0.0.1:");
    if user.is_empty() || user.contains(['/', '?', '#', '%']) {
        bail!("--user {user:?} is not a user id");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = kontor_relay::client::DeviceClient::anonymous(&address, host, &root)
            .context("cannot set up TLS to the server")?;
        let auth = format!("Bearer {}", key.as_str());
        let answer = client
            .request_with(
                "GET",
                &format!("/v1/users/{user}/export"),
                &[("authorization", auth.as_str())],
                Vec::new(),
            )
            .await
            .with_context(|| format!("cannot reach {}", remote.server))?;
        if answer.status != 200 {
            bail!("the server refused: {}", answer.code());
        }
        println!("{}", serde_json::to_string_pretty(&answer.json())?);
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
