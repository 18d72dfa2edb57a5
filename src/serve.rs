//! `kontor serve`: provisioning and relay in one process.
//!
//! Embedded default: a data directory with the organisation's CA, one
//! SQLite file and an in-process bus; nothing else to run. Scale-out:
//! `--postgres URL --nats URL`, and as many nodes as wanted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use kontor_provisioning::http::AppState;
use kontor_provisioning::pki::{Pki, PkiConfig};
use kontor_provisioning::service::{ProvisioningEvent, Service, ServiceConfig};
use kontor_provisioning::{Kek, store as pstore};
use kontor_relay::bus::{Bus, LocalBus, NatsBus};
use kontor_relay::service::{Relay, RelayConfig};
use kontor_relay::store::RelayStore;
use kontor_relay::tls::{self, TlsMaterial};
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs8KeyDer,
};

/// Options of `kontor serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Data directory: CA, server certificate, SQLite database.
    #[arg(long, default_value = "kontor-data", env = "KONTOR_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Organisation name, written into every certificate.
    #[arg(long, default_value = "Kontor Demo GmbH", env = "KONTOR_ORG_NAME")]
    pub org_name: String,
    /// Address of the device API (mutual TLS).
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub device_listen: SocketAddr,
    /// Address of the enrollment API (TLS, token-authenticated).
    #[arg(long, default_value = "127.0.0.1:8444")]
    pub enroll_listen: SocketAddr,
    /// Address of the admin API (TLS, sessions and API keys).
    #[arg(long, default_value = "127.0.0.1:8445")]
    pub admin_listen: SocketAddr,
    /// The organisation's id, as devices' managed configuration names it.
    #[arg(long, default_value = "kontor", env = "KONTOR_ORG_ID", value_parser = org_id)]
    pub org_id: String,
    /// Host names and addresses devices use to reach this server (the
    /// server certificate names them).
    #[arg(long = "server-name", default_values_t = vec!["localhost".to_owned(), "127.0.0.1".to_owned()])]
    pub server_names: Vec<String>,
    /// The key that seals the CA keys at rest: a file with 64 hex digits.
    /// Without it (and without KONTOR_PKI_KEK) one is created in the data
    /// directory, which suits a trial but not production.
    #[arg(long)]
    pub kek_file: Option<PathBuf>,
    /// Bearer key for the enrollment API's admin routes (tokens, revocation).
    #[arg(long, env = "KONTOR_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// PostgreSQL URL for the scale-out mode (instead of SQLite).
    #[arg(long, requires = "nats")]
    pub postgres: Option<String>,
    /// NATS URL for the scale-out mode (instead of the in-process bus).
    #[arg(long, requires = "postgres")]
    pub nats: Option<String>,
    /// Scale-out mode: the deployment's name, which prefixes its PostgreSQL
    /// schemas (`<name>_provisioning`, `<name>_relay`) and its NATS
    /// subjects, so several deployments can share one server.
    #[arg(long, default_value = "kontor", value_parser = deployment_name)]
    pub deployment: String,
    /// APNs signing key (PKCS#8 PEM from Apple) for push hints to iOS.
    #[arg(long, requires_all = ["apns_team_id", "apns_key_id", "apns_topic"])]
    pub apns_key_file: Option<PathBuf>,
    /// Apple developer team id.
    #[arg(long)]
    pub apns_team_id: Option<String>,
    /// Id of the APNs signing key.
    #[arg(long)]
    pub apns_key_id: Option<String>,
    /// The app's bundle id.
    #[arg(long)]
    pub apns_topic: Option<String>,
    /// APNs base URL.
    #[arg(long, default_value = "https://api.push.apple.com")]
    pub apns_url: String,
    /// Firebase project id, for push hints to Android.
    #[arg(long, requires = "fcm_token_file")]
    pub fcm_project: Option<String>,
    /// File with an OAuth access token for FCM.
    #[arg(long, requires = "fcm_project")]
    pub fcm_token_file: Option<PathBuf>,
    /// FCM base URL.
    #[arg(long, default_value = "https://fcm.googleapis.com")]
    pub fcm_url: String,
    /// NanoMDM's base URL, for Apple MDM commands (wipe: RemoveApplication;
    /// policy: Settings).
    #[arg(long, requires = "nanomdm_api_key_file")]
    pub nanomdm_url: Option<String>,
    /// File with NanoMDM's API key.
    #[arg(long, requires = "nanomdm_url")]
    pub nanomdm_api_key_file: Option<PathBuf>,
    /// File with an OAuth access token for the Android Management API.
    #[arg(long)]
    pub amapi_token_file: Option<PathBuf>,
    /// The Android Management API's base URL.
    #[arg(long, default_value = "https://androidmanagement.googleapis.com")]
    pub amapi_url: String,
    /// Extra root certificate (PEM) for the MDM servers' TLS.
    #[arg(long)]
    pub mdm_ca_file: Option<PathBuf>,
    /// Allow http:// MDM URLs (local test stand-ins only).
    #[arg(long, hide = true)]
    pub danger_mdm_plaintext_http: bool,
    /// Most simultaneous connections on each listener (device, enrollment,
    /// admin); more are closed at once.
    #[arg(long, default_value_t = 10_000)]
    pub connections_max: usize,
    /// Days an undelivered message waits for its device before it is
    /// deleted.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub message_retention_days: u32,
    /// Days an uploaded attachment is kept.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub blob_retention_days: u32,
    /// Days the per-user daily message counts are kept.
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub activity_retention_days: u32,
    /// Days archive requests and their sealed parts are kept.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub archive_retention_days: u32,
    /// Days audit entries are kept; older ones are deleted behind a
    /// checkpoint that `kontor audit verify` starts from. 0 keeps them for
    /// ever.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=36500))]
    pub audit_retention_days: u32,
    /// Most simultaneous connections from one client address on each
    /// listener (devices behind one NAT share an address).
    #[arg(long, default_value_t = 1_000)]
    pub connections_per_address_max: usize,
    /// Seconds a TLS handshake may take.
    #[arg(long, default_value_t = 10)]
    pub handshake_timeout_s: u64,
    /// Seconds a client has to send a request's complete header (HTTP/1.1;
    /// also how long an idle keep-alive connection stays open).
    #[arg(long, default_value_t = 10)]
    pub header_timeout_s: u64,
    /// Seconds one request may take, its body included (a large
    /// attachment on a slow link needs them).
    #[arg(long, default_value_t = 120)]
    pub request_timeout_s: u64,
    /// Seconds a connection may stay silent in both directions.
    #[arg(long, default_value_t = 120)]
    pub idle_timeout_s: u64,
    /// Enrollments and renewals one client address may start per second,
    /// sustained.
    #[arg(long, default_value_t = 2.0)]
    pub enroll_rate_per_address: f64,
    /// ... and at once (size it for the largest roll-out wave behind one
    /// NAT address).
    #[arg(long, default_value_t = 60)]
    pub enroll_burst_per_address: u32,
    /// Admin sign-in attempts one client address may make per second,
    /// sustained (API and portal).
    #[arg(long, default_value_t = 1.0)]
    pub sign_in_rate_per_address: f64,
    /// ... and at once.
    #[arg(long, default_value_t = 20)]
    pub sign_in_burst_per_address: u32,
    /// Most live connections (WebSockets) one device may hold at once.
    #[arg(long, default_value_t = 4)]
    pub websockets_per_device_max: usize,
    /// Messages one device may post per second, sustained.
    #[arg(long, default_value_t = 20)]
    pub messages_per_device_per_s: u32,
    /// ... and at once.
    #[arg(long, default_value_t = 200)]
    pub message_burst_per_device: u32,
    /// Milliseconds a posted message waits for the recipient devices
    /// connected live to this node to acknowledge it before it is stored
    /// for those that did not; 0 stores every message before delivering it.
    #[arg(long, default_value_t = 500)]
    pub handoff_wait_ms: u64,
}

impl ServeArgs {
    /// The bounds on every listener's connections.
    fn listener_limits(&self) -> kontor_relay::http::ListenerLimits {
        kontor_relay::http::ListenerLimits {
            connections_max: self.connections_max.max(1),
            connections_per_address_max: self.connections_per_address_max.max(1),
            handshake_timeout: Duration::from_secs(self.handshake_timeout_s.max(1)),
            header_read_timeout: Duration::from_secs(self.header_timeout_s.max(1)),
            request_timeout: Duration::from_secs(self.request_timeout_s.max(1)),
            idle_timeout: Duration::from_secs(self.idle_timeout_s.max(1)),
        }
    }

    /// The relay's settings these options give.
    pub fn relay_config(&self) -> RelayConfig {
        RelayConfig {
            message_ttl: days(self.message_retention_days),
            blob_ttl: days(self.blob_retention_days),
            live_per_device_max: self.websockets_per_device_max.max(1),
            messages_per_s: self.messages_per_device_per_s.max(1),
            message_burst: self.message_burst_per_device.max(1),
            live_max: self.connections_max.max(1),
            handoff_wait: Duration::from_millis(self.handoff_wait_ms),
            ..RelayConfig::default()
        }
    }

    /// The administration's settings these options give, sealing the
    /// audit pseudonym keys under `kek`.
    pub fn admin_config(&self, enroll_url: &str, kek: &Kek) -> kontor_admin::service::AdminConfig {
        let mut config =
            kontor_admin::service::AdminConfig::new(&self.org_id, &self.org_name, enroll_url);
        config.activity_retention = days(self.activity_retention_days);
        config.archive_retention = days(self.archive_retention_days);
        config.audit_retention =
            (self.audit_retention_days > 0).then(|| days(self.audit_retention_days));
        config.pseudonym_kek = kek.clone();
        config.sign_in_per_address_per_s = self.sign_in_rate_per_address;
        config.sign_in_per_address_burst = self.sign_in_burst_per_address;
        config
    }
}

fn days(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 24 * 3600)
}

/// Runs the server until Ctrl-C.
pub fn run(args: ServeArgs) -> anyhow::Result<std::process::ExitCode> {
    // Logs go to standard error; `RUST_LOG` (e.g. `kontor=debug`) refines them.
    // They never carry message content: the server has none to log.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))?;
    Ok(std::process::ExitCode::SUCCESS)
}

fn org_id(text: &str) -> Result<String, String> {
    kontor_managed_config::OrgId::parse(text)
        .map(|_| text.to_owned())
        .map_err(|e| e.to_string())
}

fn deployment_name(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 40
        && text.starts_with(|c: char| c.is_ascii_lowercase())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(text.to_owned())
    } else {
        Err("use 1 to 40 lowercase letters, digits or _, starting with a letter".into())
    }
}

fn kek(args: &ServeArgs) -> anyhow::Result<Kek> {
    if let Some(path) = &args.kek_file {
        return Kek::from_file(path)
            .with_context(|| format!("cannot read the key file {}", path.display()));
    }
    if std::env::var_os("KONTOR_PKI_KEK").is_some() {
        return Kek::from_env().context("KONTOR_PKI_KEK is not a valid key");
    }
    let path = args.data_dir.join("kek.hex");
    if path.exists() {
        return Kek::from_file(&path).with_context(|| format!("cannot read {}", path.display()));
    }
    let kek = Kek::generate(&mut rand::rng());
    write_private(&path, kek.to_hex().as_bytes())?;
    eprintln!(
        "kontor: created {} to seal the CA keys; for production keep the key elsewhere (--kek-file or KONTOR_PKI_KEK)",
        path.display()
    );
    Ok(kek)
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    let kek = kek(&args)?;
    let now = time::OffsetDateTime::now_utc();
    let enroll_url = format!(
        "https://{}:{}",
        args.server_names[0],
        args.enroll_listen.port()
    );
    let device_url = format!(
        "https://{}:{}",
        args.server_names[0],
        args.device_listen.port()
    );
    let pki = Pki::open_or_create(
        &args.data_dir.join("pki"),
        &kek,
        PkiConfig::new(&args.org_name, &enroll_url),
        now,
        &mut rand::rng(),
    )
    .context("cannot open or create the organisation CA")?;
    // A fresh server certificate at every start: nothing to renew by hand.
    let server = pki
        .issue_server(
            &args.server_names,
            time::Duration::days(90),
            now,
            &mut rand::rng(),
        )
        .context("cannot issue the server certificate")?;
    let root_pem = pki.root_pem().to_owned();
    std::fs::write(args.data_dir.join("root.pem"), &root_pem).context("cannot write root.pem")?;
    let chain: Vec<CertificateDer<'static>> = server
        .chain_der
        .iter()
        .map(|d| CertificateDer::from(d.clone()))
        .collect();
    let key = || PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.key_pkcs8_der.to_vec()));
    let root = CertificateDer::from(pki.root_der().to_vec());
    let service_config = ServiceConfig {
        relay_url: device_url.clone(),
        policy: serde_json::json!({}),
    };

    match (&args.postgres, &args.nats) {
        (Some(pg), Some(nats)) => {
            let pstore =
                pstore::PostgresStore::connect(pg, &format!("{}_provisioning", args.deployment))
                    .await
                    .context("cannot connect to PostgreSQL (provisioning)")?;
            let rstore = kontor_relay::store::postgres::PostgresStore::connect(
                pg,
                &format!("{}_relay", args.deployment),
            )
            .await
            .context("cannot connect to PostgreSQL (relay)")?;
            let bus = NatsBus::connect(nats, &args.deployment)
                .await
                .context("cannot connect to NATS")?;
            let service = Service::new(pki, pstore, service_config).await?;
            // The administration keeps its tables in SQLite on this node
            // (ARCHITECTURE.md: a PostgreSQL store for it is still to come).
            let admin_db = args.data_dir.join("admin.db");
            tracing::warn!(
                "scale-out: the administration (admin API, portal, EMM API, audit trail) keeps its state in {} on this node; departments, barriers and restrictions are enforced only by the node whose admin API is used",
                admin_db.display()
            );
            run_listeners(
                &args, &kek, service, rstore, bus, chain, key, root, &admin_db,
            )
            .await
        }
        _ => {
            let db = args.data_dir.join("kontor.db");
            let pstore = pstore::SqliteStore::open(&db).context("cannot open the database")?;
            let rstore = kontor_relay::store::sqlite::SqliteStore::open(&db)
                .context("cannot open the database")?;
            let service = Service::new(pki, pstore, service_config).await?;
            run_listeners(
                &args,
                &kek,
                service,
                rstore,
                LocalBus::default(),
                chain,
                key,
                root,
                &db,
            )
            .await
        }
    }
}

/// How often a node re-reads the revocations even when no announcement
/// came (the bus is at-most-once, and NATS may have been away).
const REVOCATION_RELOAD: Duration = Duration::from_secs(30);

/// Keeps every node's deny list in step: announces each revocation this
/// node makes on the bus, and re-reads the revocations when any node
/// announces one (and every [`REVOCATION_RELOAD`]). Returns provisioning's
/// events, passed on unchanged for the administration to record.
fn follow_revocations<P, B>(
    service: Arc<Service<P>>,
    bus: B,
    mut events: tokio::sync::mpsc::UnboundedReceiver<ProvisioningEvent>,
) -> tokio::sync::mpsc::UnboundedReceiver<ProvisioningEvent>
where
    P: pstore::Store,
    B: Bus,
{
    let (forward, passed_on) = tokio::sync::mpsc::unbounded_channel();
    let announcer = bus.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let ProvisioningEvent::Revoked { serial, .. } = &event
                && let Err(e) = announcer.announce_revocation().await
            {
                // The other nodes still learn of it at their next re-read.
                tracing::warn!(%serial, error = %e, "revocation not announced to the other nodes");
            }
            if forward.send(event).is_err() {
                break;
            }
        }
    });
    let mut announced = bus.revocations();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(REVOCATION_RELOAD);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            tokio::select! {
                changed = announced.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                _ = every.tick() => {}
            }
            match service.reload_revocations().await {
                Ok(0) => {}
                Ok(new) => tracing::info!(new, "revocations made on other nodes now refused here"),
                Err(e) => tracing::warn!(error = %e, "cannot re-read the revocations"),
            }
        }
    });
    passed_on
}

type MdmSide = Option<Arc<dyn kontor_mdm_connector::service::MdmSide>>;

/// The MDM side of the connector: NanoMDM and/or the Android Management
/// API behind the persisted outbox, when configured.
fn mdm_side(
    args: &ServeArgs,
    db: &Path,
) -> anyhow::Result<(MdmSide, Option<kontor_mdm_connector::outbox::Deliverer>)> {
    use kontor_mdm_connector::clients::{
        AmapiClient, AmapiConfig, HttpConfig, NanoMdmClient, NanoMdmConfig, Secret, StaticToken,
    };
    use rustls_pki_types::pem::PemObject;
    let http = |url: &str| -> anyhow::Result<HttpConfig> {
        let mut config = HttpConfig::new(url.trim_end_matches('/'));
        config.danger_plaintext_http = args.danger_mdm_plaintext_http;
        if let Some(file) = &args.mdm_ca_file {
            config.roots_der = CertificateDer::pem_file_iter(file)
                .with_context(|| format!("cannot read {}", file.display()))?
                .map(|c| c.map(|c| c.to_vec()))
                .collect::<Result<_, _>>()
                .with_context(|| format!("cannot read {}", file.display()))?;
        }
        Ok(config)
    };
    let read_secret = |file: &Path| -> anyhow::Result<Secret> {
        Ok(Secret::new(
            std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?
                .trim()
                .to_owned(),
        ))
    };
    let nanomdm = match (&args.nanomdm_url, &args.nanomdm_api_key_file) {
        (Some(url), Some(file)) => Some(
            NanoMdmClient::new(NanoMdmConfig {
                http: http(url)?,
                api_key: read_secret(file)?,
                target: "nanomdm".into(),
            })
            .context("cannot set up the NanoMDM client")?,
        ),
        _ => None,
    };
    let amapi = match &args.amapi_token_file {
        Some(file) => Some(
            AmapiClient::new(
                AmapiConfig {
                    http: http(&args.amapi_url)?,
                    target: "amapi".into(),
                },
                Arc::new(StaticToken(read_secret(file)?)),
            )
            .context("cannot set up the Android Management API client")?,
        ),
        None => None,
    };
    if nanomdm.is_none() && amapi.is_none() {
        return Ok((None, None));
    }
    let outbox = Arc::new(
        kontor_mdm_connector::outbox::Outbox::open(db, Default::default())
            .context("cannot open the MDM outbox")?,
    );
    let (side, deliverer) =
        kontor_mdm_connector::mdm::OutboxMdm::new(outbox, nanomdm, amapi, Default::default());
    Ok((Some(Arc::new(side)), Some(deliverer)))
}

fn pusher(args: &ServeArgs) -> anyhow::Result<Option<kontor_relay::push::Pusher>> {
    use kontor_relay::push::{ApnsConfig, FcmConfig, PushConfig, Pusher};
    use rustls_pki_types::pem::PemObject;
    let apns = match (
        &args.apns_key_file,
        &args.apns_team_id,
        &args.apns_key_id,
        &args.apns_topic,
    ) {
        (Some(file), Some(team_id), Some(key_id), Some(topic)) => {
            let key = PrivateKeyDer::from_pem_file(file)
                .with_context(|| format!("cannot read the APNs key {}", file.display()))?;
            Some(ApnsConfig {
                base_url: args.apns_url.clone(),
                team_id: team_id.clone(),
                key_id: key_id.clone(),
                key_pkcs8_der: zeroize::Zeroizing::new(key.secret_der().to_vec()),
                topic: topic.clone(),
            })
        }
        _ => None,
    };
    let fcm = match (&args.fcm_project, &args.fcm_token_file) {
        (Some(project_id), Some(file)) => Some(FcmConfig {
            base_url: args.fcm_url.clone(),
            project_id: project_id.clone(),
            access_token: zeroize::Zeroizing::new(
                std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read the FCM token {}", file.display()))?
                    .trim()
                    .to_owned(),
            ),
        }),
        _ => None,
    };
    if apns.is_none() && fcm.is_none() {
        return Ok(None);
    }
    let config = PushConfig {
        apns,
        fcm,
        coalesce: Duration::from_secs(30),
        roots: Vec::new(),
        danger_plaintext_http2: false,
    };
    Ok(Some(
        Pusher::new(config).context("cannot set up push hints")?,
    ))
}

#[allow(clippy::too_many_arguments)]
async fn run_listeners<P, S, B>(
    args: &ServeArgs,
    kek: &Kek,
    service: Service<P>,
    relay_store: S,
    bus: B,
    chain: Vec<CertificateDer<'static>>,
    key: impl Fn() -> PrivateKeyDer<'static>,
    root: CertificateDer<'static>,
    admin_db: &Path,
) -> anyhow::Result<()>
where
    P: pstore::Store + Clone,
    S: RelayStore,
    B: Bus,
{
    let now = time::OffsetDateTime::now_utc();
    let crls: Vec<CertificateRevocationListDer<'static>> = service
        .crls(now)
        .await?
        .iter()
        .map(|crl| CertificateRevocationListDer::from(crl.to_vec()))
        .collect();
    let deny = service.deny_list();
    let device_tls = tls::server_config(
        TlsMaterial {
            server_chain: chain.clone(),
            server_key: key(),
            client_roots: vec![root],
            crls,
        },
        deny.clone(),
    )?;
    let enroll_tls = tls::server_config_without_client_auth(chain.clone(), key())?;
    let admin_tls = tls::server_config_without_client_auth(chain, key())?;
    let (policy, policy_events) = kontor_admin::policy::DirectoryPolicy::new();
    let policy = Arc::new(policy);
    let mut relay = Relay::new(
        relay_store,
        service.store().clone(),
        deny,
        bus,
        args.relay_config(),
    )
    .with_policy(policy.clone());
    if let Some(pusher) = pusher(args)? {
        relay = relay.with_pusher(Arc::new(pusher));
    }
    let (wiped_tx, mut wiped_rx) = tokio::sync::mpsc::unbounded_channel();
    let relay = Arc::new(relay.with_wipe_listener(wiped_tx));
    let (provisioning_tx, provisioning_rx) = tokio::sync::mpsc::unbounded_channel();
    let service = Arc::new(service.with_events(provisioning_tx));
    let provisioning_events =
        follow_revocations(service.clone(), relay.bus().clone(), provisioning_rx);
    let enroll_url = format!(
        "https://{}:{}",
        args.server_names[0],
        args.enroll_listen.port()
    );
    // The connector's tables name users too: removing a user erases
    // them there as well as in the administration, provisioning and relay.
    let connector_store = kontor_mdm_connector::store::ConnectorStore::open(admin_db)
        .context("cannot open the MDM connector's tables")?;
    let admin = Arc::new(
        kontor_admin::service::Admin::new(
            service.clone(),
            relay.clone(),
            kontor_admin::store::AdminStore::open(admin_db)
                .context("cannot open the administration's database")?,
            kontor_admin::audit::AuditLog::open(admin_db).context("cannot open the audit trail")?,
            policy,
            args.admin_config(&enroll_url, kek),
        )
        .await
        .context("cannot start the administration")?
        .with_eraser(Arc::new(connector_store.clone())),
    );
    tokio::spawn(admin.clone().record_events(policy_events));
    tokio::spawn(admin.clone().record_provisioning(provisioning_events));
    // A device that confirmed its wipe loses its certificate: refused at
    // the next handshake, and listed in the CRL.
    let revoker = service.clone();
    tokio::spawn(async move {
        while let Some(device) = wiped_rx.recv().await {
            match revoker
                .revoke_device(&device, "wiped", time::OffsetDateTime::now_utc())
                .await
            {
                Ok(serials) => {
                    tracing::info!(%device, revoked = serials.len(), "wiped device's certificates revoked")
                }
                Err(e) => tracing::error!(%device, error = %e, "revoking a wiped device failed"),
            }
        }
    });
    let enroll_app = kontor_admin::http::with_security_headers(kontor_provisioning::http::router(
        AppState::new(
            service.clone(),
            args.admin_key.as_deref(),
            format!("https://{}", args.enroll_listen),
        )
        .with_address_limit(args.enroll_rate_per_address, args.enroll_burst_per_address),
    ));
    let device_app = kontor_relay::http::router(relay.clone());
    let (mdm_side, deliverer) = mdm_side(args, admin_db)?;
    let connector = Arc::new(kontor_mdm_connector::service::Connector::new(
        admin.clone(),
        connector_store,
        kontor_mdm_connector::service::ConnectorConfig::default(),
        mdm_side,
    ));
    let scim = Arc::new(
        kontor_mdm_connector::scim_service::Scim::open(
            admin.clone(),
            admin_db,
            &format!(
                "https://{}:{}/scim/v2",
                args.server_names[0],
                args.admin_listen.port()
            ),
        )
        .context("cannot open the SCIM tables")?,
    );
    let admin_for_expiry = admin.clone();
    let admin_app = kontor_admin::http::router(admin.clone())
        .merge(kontor_portal::router(admin))
        .merge(kontor_mdm_connector::http::router(connector))
        .merge(kontor_mdm_connector::http::scim_router(scim));

    let device_listener = tokio::net::TcpListener::bind(args.device_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.device_listen))?;
    let enroll_listener = tokio::net::TcpListener::bind(args.enroll_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.enroll_listen))?;
    let admin_listener = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.admin_listen))?;
    tracing::info!(
        device = %device_listener.local_addr()?,
        enroll = %enroll_listener.local_addr()?,
        "listening"
    );
    println!(
        "kontor: device API (mutual TLS) on https://{}",
        device_listener.local_addr()?
    );
    println!(
        "kontor: enrollment API (TLS) on https://{}",
        enroll_listener.local_addr()?
    );
    println!(
        "kontor: admin API (TLS) on https://{}",
        admin_listener.local_addr()?
    );
    println!(
        "kontor: organisation root CA in {}",
        args.data_dir.join("root.pem").display()
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let device = tokio::spawn(kontor_relay::http::serve_tls(
        device_listener,
        device_tls,
        device_app,
        args.listener_limits(),
        stopped(stop_rx.clone()),
    ));
    let enroll = tokio::spawn(kontor_relay::http::serve_tls(
        enroll_listener,
        enroll_tls,
        enroll_app,
        args.listener_limits(),
        stopped(stop_rx.clone()),
    ));
    let admin_server = tokio::spawn(kontor_relay::http::serve_tls(
        admin_listener,
        admin_tls,
        admin_app,
        args.listener_limits(),
        stopped(stop_rx.clone()),
    ));
    let outbox = deliverer.map(|d| {
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move { d.run(stop).await })
    });
    let expiry_relay = relay.clone();
    let expiry_admin = admin_for_expiry;
    let expiry = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            if let Err(e) = expiry_relay.expire().await {
                tracing::warn!(error = %e, "expiry run failed");
            }
            let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
            if let Err(e) = expiry_admin.expire(now_ms).await {
                tracing::warn!(error = %e, "retention run failed");
            }
        }
    });
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    println!("kontor: stopping");
    let _ = stop_tx.send(true);
    expiry.abort();
    let _ = tokio::join!(device, enroll, admin_server);
    if let Some(outbox) = outbox {
        let _ = outbox.await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn parse(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("kontor").chain(args.iter().copied())).map(|c| c.serve)
    }

    #[test]
    fn retention_defaults_keep_the_documented_periods_and_the_trail_for_ever() {
        let args = parse(&[]).unwrap();
        let relay = args.relay_config();
        assert_eq!(relay.message_ttl, days(30));
        assert_eq!(relay.blob_ttl, days(30));
        let admin = args.admin_config("https://x", &Kek::from_bytes([1; 32]));
        assert_eq!(admin.activity_retention, days(400));
        assert_eq!(admin.archive_retention, days(90));
        assert_eq!(admin.audit_retention, None);
    }

    #[test]
    fn every_retention_is_a_serve_option() {
        let args = parse(&[
            "--message-retention-days",
            "2",
            "--blob-retention-days",
            "3",
            "--activity-retention-days",
            "4",
            "--archive-retention-days",
            "5",
            "--audit-retention-days",
            "1095",
        ])
        .unwrap();
        let relay = args.relay_config();
        assert_eq!((relay.message_ttl, relay.blob_ttl), (days(2), days(3)));
        let admin = args.admin_config("https://x", &Kek::from_bytes([1; 32]));
        assert_eq!(admin.activity_retention, days(4));
        assert_eq!(admin.archive_retention, days(5));
        assert_eq!(admin.audit_retention, Some(days(1095)));
        // Zero would delete at once: refused, except for the trail, where
        // it means for ever.
        for flag in [
            "--message-retention-days",
            "--blob-retention-days",
            "--activity-retention-days",
            "--archive-retention-days",
        ] {
            assert!(parse(&[flag, "0"]).is_err(), "{flag} 0");
        }
    }
}
