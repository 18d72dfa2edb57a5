//! Kontor as a system under test: `kontor serve` started by the harness, on
//! SQLite or on PostgreSQL with NATS, one node or several, and devices that
//! speak the real device API.
//!
//! What a device does here is what the agent does on the wire:
//! - mutual TLS with a certificate the server issued at enrollment (P-256
//!   key, CSR, a one-use token), for every connection;
//! - sends: `POST /v1/messages` with a sealed envelope
//!   (`application/vnd.kontor.envelope`) over one HTTP/2 connection per
//!   sender, many requests in flight;
//! - receives: a WebSocket on `/v1/ws`, acknowledging what arrived with
//!   `{"ack": [...]}` frames.
//!
//! Envelopes are sealed with the real protocol (kontor-crypto) once per
//! sender and destination. For each send the harness then writes a fresh
//! message id into every delivery header: the id carries the harness
//! sequence number, and the relay sees a new, structurally valid message.
//! The relay cannot check a wrap's MAC (only the recipient device can), so
//! its work is exactly that of a freshly sealed message; the generator's
//! core is spared four X25519 operations per message, which would otherwise
//! bound the load it can offer. Receivers read the id from the clear header
//! and do not open the message.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures_util::{FutureExt, SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use kontor_crypto::{DeviceId, IdentitySecret, MessageId, Recipient, Sender};
use kontor_relay::wire::{self, PostedEnvelope};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, Semaphore};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::peer::{Dest, GroupRef, MessageRx, MessageTx, Peer, payload};

/// Requests one sender may have in flight (the server allows 100 HTTP/2
/// streams per connection).
const IN_FLIGHT: usize = 100;
/// Offset of the first delivery in an envelope without a group and blobs:
/// magic, version, kind, blob count, delivery count.
const DELIVERIES_AT: usize = 4 + 1 + 1 + 2 + 2;

/// Where Kontor keeps its state.
#[derive(Debug, Clone)]
pub enum Store {
    /// The embedded default: SQLite in the data directory, in-process bus.
    Sqlite,
    /// Scale-out: PostgreSQL and NATS, shared by every node.
    Postgres {
        /// PostgreSQL URL.
        url: String,
        /// NATS URL.
        nats: String,
    },
}

/// How to start Kontor.
#[derive(Debug, Clone)]
pub struct KontorOptions {
    /// The `kontor` binary (a release build).
    pub bin: PathBuf,
    /// A directory the harness owns (data directories, logs).
    pub dir: PathBuf,
    /// SQLite or PostgreSQL.
    pub store: Store,
    /// Nodes (more than one needs PostgreSQL).
    pub nodes: usize,
    /// Users to enroll, one device each.
    pub users: usize,
    /// Payload size in bytes (the plaintext sealed into each message).
    pub payload: usize,
    /// Core to pin the server(s) to.
    pub cpu: Option<usize>,
    /// A cgroup (v1 `cpu` controller) per node limiting it to this share of
    /// one core, for the scale-out figure on a small machine.
    pub cpu_share: Option<f64>,
    /// More arguments for `kontor serve`, after the harness's own.
    pub serve_args: Vec<String>,
}

/// A device the harness enrolled.
struct Device {
    user_id: String,
    device_id: [u8; 16],
    identity: IdentitySecret,
    /// Mutual TLS, ALPN h2 (sending).
    h2: Arc<rustls::ClientConfig>,
    /// Mutual TLS, HTTP/1.1 (WebSocket, handshakes).
    h1: Arc<rustls::ClientConfig>,
}

struct Node {
    child: Child,
    device_port: u16,
    cgroup: Option<PathBuf>,
}

/// A running Kontor deployment with enrolled devices.
pub struct KontorPeer {
    name: String,
    /// PostgreSQL URL and the deployment's name, whose schemas `stop` drops.
    postgres: Option<(String, String)>,
    nodes: Vec<Node>,
    devices: Vec<Arc<Device>>,
    payload: usize,
    /// Envelope templates by (sender, destination).
    templates: Mutex<HashMap<(usize, String), Arc<Template>>>,
}

/// A sealed envelope and where its message ids sit.
struct Template {
    bytes: Vec<u8>,
    id_offsets: Vec<usize>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl KontorPeer {
    /// Starts the node(s), waits until they answer, and enrolls the users.
    pub async fn start(opts: KontorOptions) -> anyhow::Result<Self> {
        if opts.nodes > 1 && matches!(opts.store, Store::Sqlite) {
            bail!("more than one Kontor node needs --postgres and --nats");
        }
        let name = match (&opts.store, opts.nodes) {
            (Store::Sqlite, _) => "kontor-sqlite".to_owned(),
            (Store::Postgres { .. }, 1) => "kontor-postgres".to_owned(),
            (Store::Postgres { .. }, n) => format!("kontor-postgres-{n}nodes"),
        };
        let admin_key = hex::encode(rand::random::<[u8; 16]>());
        let deployment = format!("bench_{}", hex::encode(rand::random::<[u8; 4]>()));
        let mut nodes = Vec::new();
        let mut enroll_port = 0;
        let first_data = opts.dir.join("node0");
        for n in 0..opts.nodes {
            let data = opts.dir.join(format!("node{n}"));
            if n > 0 {
                // Every node shares the organisation's CA and its sealing key.
                copy_dir(&first_data.join("pki"), &data.join("pki"))?;
                std::fs::copy(first_data.join("kek.hex"), data.join("kek.hex"))
                    .context("copying the first node's kek.hex")?;
            }
            let (node, enroll) = start_node(&opts, &data, n, &admin_key, &deployment).await?;
            if n == 0 {
                enroll_port = enroll;
            }
            nodes.push(node);
        }
        let root = CertificateDer::from_pem_file(first_data.join("root.pem"))
            .context("reading the server's root.pem")?
            .to_vec();
        let devices = enroll_all(enroll_port, &root, &admin_key, opts.users).await?;
        let postgres = match &opts.store {
            Store::Postgres { url, .. } => Some((url.clone(), deployment)),
            Store::Sqlite => None,
        };
        Ok(Self {
            name,
            postgres,
            nodes,
            devices,
            payload: opts.payload,
            templates: Mutex::new(HashMap::new()),
        })
    }

    /// Stops every node (SIGTERM, then SIGKILL after 10 s), then drops the
    /// deployment's PostgreSQL schemas (a run's data is of no further use,
    /// and every run makes a new deployment).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        for node in &mut self.nodes {
            stop_child(&mut node.child).await;
            if let Some(cg) = &node.cgroup {
                let _ = std::fs::remove_dir(cg);
            }
        }
        if let Some((url, deployment)) = &self.postgres {
            drop_schemas(url, deployment)
                .await
                .with_context(|| format!("dropping the schemas of deployment {deployment}"))?;
        }
        Ok(())
    }

    /// The node a user's device talks to: users are spread over nodes.
    fn port_for(&self, user: usize) -> u16 {
        self.nodes[user % self.nodes.len()].device_port
    }

    async fn template(&self, sender: usize, dest: &Dest) -> anyhow::Result<Arc<Template>> {
        let key = match dest {
            Dest::User(u) => (sender, format!("u{u}")),
            Dest::Group(g) => (sender, format!("g{}", g.id)),
        };
        if let Some(t) = self.templates.lock().await.get(&key) {
            return Ok(t.clone());
        }
        let (group, recipients): (Option<[u8; 16]>, Vec<usize>) = match dest {
            Dest::User(u) => (None, vec![*u]),
            Dest::Group(g) => {
                let mut id = [0u8; 16];
                hex::decode_to_slice(&g.id, &mut id).context("group id")?;
                (
                    Some(id),
                    g.members.iter().copied().filter(|m| *m != sender).collect(),
                )
            }
        };
        let from = &self.devices[sender];
        let to: Vec<Recipient> = recipients
            .iter()
            .map(|r| Recipient {
                device_id: DeviceId(self.devices[*r].device_id),
                identity: self.devices[*r].identity.public(),
            })
            .collect();
        let sealed = kontor_crypto::seal(
            &mut kontor_crypto::os_rng(),
            MessageId(rand::random()),
            Sender {
                device_id: DeviceId(from.device_id),
                identity: &from.identity,
            },
            &to,
            &payload(0, self.payload),
        )
        .map_err(|e| anyhow!("sealing a template: {e}"))?;
        let deliveries: Vec<&[u8]> = sealed
            .deliveries()
            .iter()
            .map(|d| &d.as_bytes()[..])
            .collect();
        let bytes = PostedEnvelope::encode(group, &[], &deliveries, sealed.body());
        let first = DELIVERIES_AT + if group.is_some() { 16 } else { 0 };
        let id_offsets = (0..deliveries.len())
            .map(|i| first + i * wire::DELIVERY_LEN + 1)
            .collect();
        let t = Arc::new(Template { bytes, id_offsets });
        self.templates.lock().await.insert(key, t.clone());
        Ok(t)
    }
}

/// Drops the schemas `kontor serve --deployment NAME` makes
/// (`NAME_provisioning`, `NAME_relay`).
async fn drop_schemas(url: &str, deployment: &str) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    // `deployment` is bench_ and hex digits: a plain identifier.
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {deployment}_provisioning, {deployment}_relay CASCADE"
        ))
        .await?;
    drop(client);
    let _ = connection.await;
    Ok(())
}

async fn start_node(
    opts: &KontorOptions,
    data: &std::path::Path,
    n: usize,
    admin_key: &str,
    deployment: &str,
) -> anyhow::Result<(Node, u16)> {
    let (device_port, enroll_port, admin_port) = (free_port()?, free_port()?, free_port()?);
    let log = std::fs::File::create(opts.dir.join(format!("node{n}.log")))?;
    let mut cmd = match opts.cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.args(["-c", &cpu.to_string()]).arg(&opts.bin);
            c
        }
        None => Command::new(&opts.bin),
    };
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(data)
        .args(["--device-listen", &format!("127.0.0.1:{device_port}")])
        .args(["--enroll-listen", &format!("127.0.0.1:{enroll_port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
        .args(["--org-id", "bench", "--connections-max", "19500"])
        // Every bench connection comes from 127.0.0.1 and idle connections
        // share the users' devices: lift the per-address and per-device
        // bounds that protect a real deployment.
        .args(["--connections-per-address-max", "19500"])
        .args(["--websockets-per-device-max", "1000"])
        // A bench sender posts far more than a person types.
        .args(["--messages-per-device-per-s", "1000000"])
        .args(["--message-burst-per-device", "1000000"])
        .args([
            "--enroll-rate-per-address",
            "10000",
            "--enroll-burst-per-address",
            "10000",
        ])
        .env("KONTOR_ADMIN_KEY", admin_key)
        // Warnings only, unless `KONTOR_BENCH_SERVER_LOG` asks for more
        // (a filter as `RUST_LOG` takes it) to see into one run.
        .env(
            "RUST_LOG",
            std::env::var("KONTOR_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true);
    if let Store::Postgres { url, nats } = &opts.store {
        cmd.args([
            "--postgres",
            url,
            "--nats",
            nats,
            "--deployment",
            deployment,
        ]);
    }
    cmd.args(&opts.serve_args);
    let mut child = cmd.spawn().context("starting kontor serve")?;
    let stdout = child.stdout.take().context("kontor serve's stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let started = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            if line.contains("root CA") {
                return Ok::<bool, std::io::Error>(true);
            }
        }
        Ok(false)
    })
    .await;
    if !matches!(started, Ok(Ok(true))) {
        let _ = child.kill().await;
        let log =
            std::fs::read_to_string(opts.dir.join(format!("node{n}.log"))).unwrap_or_default();
        let tail: String = log.lines().rev().take(20).collect::<Vec<_>>().join("\n");
        bail!("kontor serve (node {n}) did not start; its log ends with:\n{tail}");
    }
    // Keep reading stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let cgroup = match (opts.cpu_share, child.id()) {
        (Some(share), Some(pid)) => match limit_cpu(&format!("kbench-{pid}"), pid, share) {
            Ok(dir) => Some(dir),
            Err(e) => {
                let _ = child.kill().await;
                return Err(e.context(
                    "the scale-out figure needs a cgroup v1 cpu controller at /sys/fs/cgroup/cpu (root)",
                ));
            }
        },
        _ => None,
    };
    Ok((
        Node {
            child,
            device_port,
            cgroup,
        },
        enroll_port,
    ))
}

/// Puts `pid` (all its threads) into a new cgroup limited to `share` of a core.
fn limit_cpu(name: &str, pid: u32, share: f64) -> anyhow::Result<PathBuf> {
    let dir = PathBuf::from("/sys/fs/cgroup/cpu").join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let period = 100_000u64;
    let quota = (share * period as f64).round() as u64;
    std::fs::write(dir.join("cpu.cfs_period_us"), period.to_string())?;
    std::fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string())?;
    // Threads already started must be moved one by one (`tasks`).
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let tid = entry?.file_name();
        std::fs::write(dir.join("tasks"), tid.to_string_lossy().as_bytes())
            .with_context(|| format!("moving a thread into {}", dir.display()))?;
    }
    std::fs::write(dir.join("cgroup.procs"), pid.to_string())?;
    Ok(dir)
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

async fn stop_child(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.kill().await;
}

fn tls_config(
    root: &[u8],
    chain_pem: &str,
    key: &[u8],
    alpn: &[u8],
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(root.to_vec()))?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(chain_pem.as_bytes()).collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.to_vec()));
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![alpn.to_vec()];
    // Every connection is a full handshake: the storm measures just that.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

async fn enroll_all(
    enroll_port: u16,
    root: &[u8],
    admin_key: &str,
    users: usize,
) -> anyhow::Result<Vec<Arc<Device>>> {
    let client = kontor_relay::client::DeviceClient::anonymous(
        &format!("127.0.0.1:{enroll_port}"),
        "localhost",
        root,
    )?;
    let slots = Arc::new(Semaphore::new(8));
    let mut tasks = Vec::new();
    for u in 0..users {
        let (client, root, admin_key, slots) = (
            client.clone(),
            root.to_vec(),
            admin_key.to_owned(),
            slots.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire().await?;
            enroll_one(&client, &root, &admin_key, u).await
        }));
    }
    let mut devices = Vec::with_capacity(users);
    for t in tasks {
        devices.push(Arc::new(t.await??));
    }
    Ok(devices)
}

async fn enroll_one(
    client: &kontor_relay::client::DeviceClient,
    root: &[u8],
    admin_key: &str,
    u: usize,
) -> anyhow::Result<Device> {
    let user_id = format!("u{u}@bench.example");
    let bearer = format!("Bearer {admin_key}");
    let token = client
        .request_with(
            "POST",
            "/v1/admin/tokens",
            &[
                ("authorization", bearer.as_str()),
                ("content-type", "application/json"),
            ],
            serde_json::to_vec(&serde_json::json!({
                "binding": "user", "bound_to": user_id, "lifetime_seconds": 3600
            }))?,
        )
        .await?;
    if token.status != 201 {
        bail!(
            "token for {user_id}: HTTP {} {}",
            token.status,
            token.code()
        );
    }
    let token = token.json()["token"]
        .as_str()
        .context("token answer")?
        .to_owned();
    let tls_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())?
        .serialize_request(&tls_key)?
        .pem()?;
    let identity = IdentitySecret::generate(&mut kontor_crypto::os_rng());
    let answer = client
        .request(
            "POST",
            "/v1/enroll",
            Some("application/json"),
            serde_json::to_vec(&serde_json::json!({
                "token": token, "csr": csr, "identity_key": identity.public().to_hex(),
                "platform": "linux", "device_name": "bench",
            }))?,
        )
        .await?;
    if answer.status != 200 {
        bail!(
            "enrolling {user_id}: HTTP {} {}",
            answer.status,
            answer.code()
        );
    }
    let json = answer.json();
    let mut device_id = [0u8; 16];
    hex::decode_to_slice(
        json["device_id"].as_str().context("device_id")?,
        &mut device_id,
    )?;
    let chain = json["chain"].as_str().context("chain")?;
    let key = tls_key.serialize_der();
    Ok(Device {
        user_id,
        device_id,
        identity,
        h2: tls_config(root, chain, &key, b"h2")?,
        h1: tls_config(root, chain, &key, b"http/1.1")?,
    })
}

async fn tls(
    port: u16,
    config: &Arc<rustls::ClientConfig>,
) -> anyhow::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    Ok(TlsConnector::from(config.clone())
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?)
}

async fn websocket(
    port: u16,
    device: &Device,
) -> anyhow::Result<WebSocketStream<TlsStream<TcpStream>>> {
    let stream = tls(port, &device.h1).await?;
    let (ws, _) = tokio_tungstenite::client_async(format!("wss://localhost:{port}/v1/ws"), stream)
        .await
        .context("WebSocket upgrade")?;
    Ok(ws)
}

/// An idle WebSocket, read (for pings) by its own task; closed on drop.
pub struct IdleSocket(tokio::task::JoinHandle<()>);

impl Drop for IdleSocket {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The sending half: one HTTP/2 connection, many requests in flight.
pub struct KontorTx {
    sender: usize,
    peer: Arc<KontorPeer>,
    h2: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    in_flight: Arc<Semaphore>,
    failures: Arc<Mutex<Vec<String>>>,
}

impl KontorTx {
    async fn open(peer: Arc<KontorPeer>, user: usize) -> anyhow::Result<Self> {
        let stream = tls(peer.port_for(user), &peer.devices[user].h2).await?;
        let (h2, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .context("HTTP/2 handshake")?;
        tokio::spawn(conn);
        Ok(Self {
            sender: user,
            peer,
            h2,
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
            failures: Arc::new(Mutex::new(Vec::new())),
        })
    }

    async fn failed(&self) -> anyhow::Result<()> {
        let failures = self.failures.lock().await;
        match failures.first() {
            Some(f) => bail!("{} of the sends failed, the first: {f}", failures.len()),
            None => Ok(()),
        }
    }
}

impl MessageTx for KontorTx {
    async fn send(&mut self, dest: &Dest, seq: u64) -> anyhow::Result<()> {
        self.failed().await?;
        let template = self.peer.template(self.sender, dest).await?;
        let mut body = template.bytes.clone();
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&seq.to_be_bytes());
        id[8..].copy_from_slice(&rand::random::<[u8; 8]>());
        for at in &template.id_offsets {
            body[*at..*at + 16].copy_from_slice(&id);
        }
        let request = hyper::Request::post("https://localhost/v1/messages")
            .header("content-type", wire::ENVELOPE_CONTENT_TYPE)
            .body(Full::new(Bytes::from(body)))?;
        let slot = self.in_flight.clone().acquire_owned().await?;
        self.h2.ready().await.context("HTTP/2 connection")?;
        let answer = self.h2.send_request(request);
        let failures = self.failures.clone();
        tokio::spawn(async move {
            let outcome = match answer.await {
                Ok(response) if response.status().is_success() => {
                    let _ = response.into_body().collect().await;
                    None
                }
                Ok(response) => {
                    let status = response.status();
                    let body = response
                        .into_body()
                        .collect()
                        .await
                        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                        .unwrap_or_default();
                    Some(format!("HTTP {status}: {body}"))
                }
                Err(e) => Some(e.to_string()),
            };
            if let Some(f) = outcome {
                failures.lock().await.push(f);
            }
            drop(slot);
        });
        Ok(())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        let all = u32::try_from(IN_FLIGHT)?;
        let _all = self.in_flight.acquire_many(all).await?;
        self.failed().await
    }
}

/// The receiving half: the device's WebSocket.
pub struct KontorRx {
    ws: WebSocketStream<TlsStream<TcpStream>>,
}

impl MessageRx for KontorRx {
    async fn recv(&mut self) -> anyhow::Result<Vec<u64>> {
        loop {
            let mut seqs = Vec::new();
            let mut acks = Vec::new();
            let mut next = Some(self.ws.next().await);
            while let Some(item) = next.take() {
                match item {
                    None => bail!("the relay closed the WebSocket"),
                    Some(Err(e)) => bail!("WebSocket: {e}"),
                    Some(Ok(Message::Binary(frame))) => {
                        let frame = wire::decode_frame(&frame)
                            .map_err(|e| anyhow!("a delivered frame: {e}"))?;
                        // The message id sits in the clear header, after the version byte.
                        let id = frame
                            .sealed
                            .get(1..9)
                            .context("a delivered message shorter than its header")?;
                        seqs.push(u64::from_be_bytes(id.try_into()?));
                        acks.push(frame.seq);
                    }
                    Some(Ok(_)) => {}
                }
                if acks.len() < 256 {
                    next = self.ws.next().now_or_never();
                }
            }
            if !acks.is_empty() {
                let ack = serde_json::json!({ "ack": acks }).to_string();
                self.ws.send(Message::Text(ack.into())).await?;
            }
            if !seqs.is_empty() {
                return Ok(seqs);
            }
        }
    }
}

impl Peer for Arc<KontorPeer> {
    type Tx = KontorTx;
    type Rx = KontorRx;
    type Idle = IdleSocket;

    fn name(&self) -> String {
        self.name.clone()
    }

    fn pids(&self) -> Vec<u32> {
        self.nodes.iter().filter_map(|n| n.child.id()).collect()
    }

    fn users(&self) -> usize {
        self.devices.len()
    }

    fn group_mode(&self) -> &'static str {
        "one envelope per message with a delivery (305 B) per member device; the relay stores the body once and fans out"
    }

    async fn connect(&self, user: usize) -> anyhow::Result<(KontorTx, KontorRx)> {
        let ws = websocket(self.port_for(user), &self.devices[user]).await?;
        let tx = KontorTx::open(self.clone(), user).await?;
        Ok((tx, KontorRx { ws }))
    }

    async fn connect_sender(&self, user: usize) -> anyhow::Result<KontorTx> {
        KontorTx::open(self.clone(), user).await
    }

    async fn connect_idle(&self, user: usize, _n: usize) -> anyhow::Result<Self::Idle> {
        let mut ws = websocket(self.port_for(user), &self.devices[user]).await?;
        // Reading answers the relay's pings (tungstenite replies to a ping
        // on the next read), which a live device does; nothing else comes.
        let task = tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} });
        Ok(IdleSocket(task))
    }

    async fn handshake(&self, user: usize) -> anyhow::Result<()> {
        let stream = tls(self.port_for(user), &self.devices[user].h1).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        let conn = tokio::spawn(conn);
        let answer = sender
            .send_request(
                hyper::Request::get("/v1/me")
                    .header("host", "localhost")
                    .body(Full::new(Bytes::new()))?,
            )
            .await?;
        if !answer.status().is_success() {
            bail!("GET /v1/me: HTTP {}", answer.status());
        }
        let _ = answer.into_body().collect().await?;
        drop(sender);
        let _ = conn.await;
        Ok(())
    }

    async fn create_group(&self, members: &[usize]) -> anyhow::Result<GroupRef> {
        let (&owner, _) = members.split_first().context("a group needs members")?;
        let id = hex::encode(rand::random::<[u8; 16]>());
        let member_ids: Vec<&str> = members[1..]
            .iter()
            .map(|m| self.devices[*m].user_id.as_str())
            .collect();
        let body = serde_json::to_vec(&serde_json::json!({
            "id": id, "name": format!("bench {id}"), "members": member_ids,
        }))?;
        let stream = tls(self.port_for(owner), &self.devices[owner].h1).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let answer = sender
            .send_request(
                hyper::Request::post("/v1/groups")
                    .header("host", "localhost")
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))?,
            )
            .await?;
        let status = answer.status();
        let text = answer.into_body().collect().await?.to_bytes();
        if status.as_u16() != 201 {
            bail!(
                "creating a group: HTTP {status}: {}",
                String::from_utf8_lossy(&text)
            );
        }
        let group = GroupRef {
            id,
            members: members.to_vec(),
        };
        Ok(group)
    }
}
