//! The XMPP side of the comparison: Prosody 0.12 and ejabberd 23.01 from
//! Debian, each started fresh by the harness in a temporary directory, and
//! a small XMPP client that drives them through the [`Peer`] interface.
//!
//! Both servers are configured alike: c2s on 127.0.0.1 with direct TLS
//! (XEP-0368, both support it, so there is no STARTTLS round trip), a
//! self-signed certificate the client pins, SQLite storage (accounts,
//! offline messages, MUC rooms), a MUC component, no in-band
//! registration, no rate limits or shapers, a high offline-message cap,
//! logs at warning level. Users `u0`.. share one password and are written
//! into the server's SQLite store before it starts.
//!
//! # Layout
//!
//! - [`xml`]: the incremental stream parser (bytes in, stanzas out).
//! - [`client`]: login, the reader task, [`XmppTx`], [`XmppRx`], [`XmppIdle`].
//! - [`server`]: configuration, provisioning, process start and stop.
//! - [`setup`]: installs the packages and stops the system's instances.

pub mod client;
pub mod server;
pub mod xml;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio_rustls::TlsConnector;

use client::{Session, Target};
pub use client::{XmppIdle, XmppRx, XmppTx};
use server::Layout;

use crate::peer::{GroupRef, Peer};

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XmppKind {
    /// Prosody (Lua, one process, epoll).
    Prosody,
    /// ejabberd (Erlang/OTP).
    Ejabberd,
}

impl std::fmt::Display for XmppKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            XmppKind::Prosody => "prosody",
            XmppKind::Ejabberd => "ejabberd",
        })
    }
}

/// How to start a server.
#[derive(Debug, Clone)]
pub struct XmppOptions {
    /// Which server.
    pub kind: XmppKind,
    /// Users to provision (`u0`..`u{users-1}`).
    pub users: usize,
    /// Payload size in bytes (at least 8).
    pub payload: usize,
    /// The core to pin the server to (`taskset -c`), if any.
    pub cpu: Option<usize>,
    /// A directory the harness owns; the instance lives in it.
    pub dir: PathBuf,
}

/// A running Prosody or ejabberd.
pub struct XmppPeer {
    kind: XmppKind,
    users: usize,
    layout: Layout,
    child: tokio::process::Child,
    target: Target,
    /// Each user's rooms, joined whenever the user connects.
    rooms: Mutex<HashMap<usize, Vec<String>>>,
    next_room: AtomicUsize,
}

/// The packages [`setup`] installs.
const PACKAGES: [&str; 4] = [
    "prosody",
    "lua-dbi-sqlite3",
    "ejabberd",
    "erlang-p1-sqlite3",
];

/// The harness's setup step for XMPP: installs Prosody, ejabberd and their
/// SQLite drivers with apt-get if missing, then stops the instances the
/// packages start system-wide so they do not compete. Idempotent.
pub fn setup() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if !missing.is_empty() {
        eprintln!("installing {}", missing.join(" "));
        if apt_install(&missing).is_err() {
            // A fresh machine may have no package lists yet.
            apt(&["update"]).context("apt-get update")?;
            apt_install(&missing)?;
        }
    }
    stop_system_instance("prosody", "/run/prosody/prosody.pid")?;
    stop_system_instance("ejabberd", "/run/ejabberd/ejabberd.pid")?;
    Ok(())
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains("install ok installed")
        })
}

fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(packages);
    apt(&args).with_context(|| format!("apt-get install {}", packages.join(" ")))
}

fn apt(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .context("running apt-get (is this Debian, and are we root?)")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(10).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "apt-get {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            tail.join("\n")
        );
    }
    Ok(())
}

/// `service NAME stop`, then SIGTERM to the pid in `pidfile` if that
/// process still runs (containers often have no init scripts running).
fn stop_system_instance(name: &str, pidfile: &str) -> anyhow::Result<()> {
    // Fails when the service is not running or there is no `service`:
    // both are fine, the pidfile check below is what counts.
    let _ = Command::new("service").args([name, "stop"]).output();
    let Ok(text) = std::fs::read_to_string(pidfile) else {
        return Ok(());
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return Ok(());
    };
    if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
        return Ok(());
    }
    eprintln!("stopping the system's {name} (pid {pid})");
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    if !status.success() {
        bail!("could not stop the system's {name} (pid {pid} from {pidfile})");
    }
    for _ in 0..100 {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the system's {name} (pid {pid}) did not stop within 10 s")
}

impl XmppPeer {
    /// Writes the configuration, certificate and users into `opts.dir`,
    /// starts the server and waits until `u0` can log in.
    pub async fn start(opts: XmppOptions) -> anyhow::Result<Self> {
        let kind = opts.kind;
        let layout = Layout {
            dir: opts.dir.clone(),
            port: server::free_port()?,
        };
        let cert = server::prepare(&kind, &layout, opts.users.max(1))
            .with_context(|| format!("preparing {kind} in {}", layout.dir.display()))?;
        let target = Target {
            server: match kind {
                XmppKind::Prosody => "prosody",
                XmppKind::Ejabberd => "ejabberd",
            },
            addr: SocketAddr::from(([127, 0, 0, 1], layout.port)),
            domain: server::DOMAIN.into(),
            muc_domain: server::MUC_DOMAIN.into(),
            password: server::PASSWORD.into(),
            payload: opts.payload.max(8),
            tls: tls_connector(cert)?,
        };
        let mut child =
            server::spawn(&kind, &layout, opts.cpu).with_context(|| format!("starting {kind}"))?;
        let probe = target.clone();
        server::wait_ready(&kind, &layout, &mut child, || {
            let probe = probe.clone();
            async move {
                Session::login(&probe, 0, "probe")
                    .await?
                    .ping_and_close()
                    .await
            }
        })
        .await?;
        Ok(Self {
            kind,
            users: opts.users,
            layout,
            child,
            target,
            rooms: Mutex::new(HashMap::new()),
            next_room: AtomicUsize::new(0),
        })
    }

    /// Stops the server (SIGTERM, then SIGKILL after 15 s).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        server::stop(&self.kind, &mut self.child)
            .await
            .with_context(|| format!("stopping {}", self.kind))
    }

    /// The server's log and console tails, for error reports.
    pub fn log_tails(&self) -> String {
        server::log_tails(&self.kind, &self.layout)
    }

    fn rooms_of(&self, user: usize) -> Vec<String> {
        let rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        rooms.get(&user).cloned().unwrap_or_default()
    }

    fn check_user(&self, user: usize) -> anyhow::Result<()> {
        if user >= self.users {
            bail!(
                "{}: user {user} does not exist ({} provisioned)",
                self.kind,
                self.users
            );
        }
        Ok(())
    }
}

/// TLS 1.2/1.3 with ring, trusting only the harness's certificate, with
/// session resumption off so every connection pays a full handshake.
fn tls_connector(cert_der: Vec<u8>) -> anyhow::Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from(cert_der))?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(TlsConnector::from(Arc::new(config)))
}

impl Peer for XmppPeer {
    type Tx = XmppTx;
    type Rx = XmppRx;
    type Idle = XmppIdle;

    fn name(&self) -> String {
        self.kind.to_string()
    }

    fn pids(&self) -> Vec<u32> {
        self.child.id().map(server::pids_of).unwrap_or_default()
    }

    fn users(&self) -> usize {
        self.users
    }

    fn group_mode(&self) -> &'static str {
        "MUC, the server fans out: one groupchat message to the room, which \
         the MUC service copies to every joined occupant (the sender's echo \
         is ignored)"
    }

    async fn connect(&self, user: usize) -> anyhow::Result<(XmppTx, XmppRx)> {
        self.check_user(user)?;
        let session = Session::login(&self.target, user, "bench").await?;
        session
            .into_halves(
                &self.target,
                true,
                &self.rooms_of(user),
                &format!("u{user}"),
            )
            .await
    }

    /// No available presence: the user stays offline for 1:1 messages
    /// (its rooms are still joined, since only occupants may post).
    async fn connect_sender(&self, user: usize) -> anyhow::Result<XmppTx> {
        self.check_user(user)?;
        let session = Session::login(&self.target, user, "sender").await?;
        let (tx, _rx) = session
            .into_halves(
                &self.target,
                false,
                &self.rooms_of(user),
                &format!("u{user}"),
            )
            .await?;
        Ok(tx)
    }

    async fn connect_idle(&self, user: usize, n: usize) -> anyhow::Result<XmppIdle> {
        self.check_user(user)?;
        Session::login(&self.target, user, &format!("idle{n}"))
            .await?
            .into_idle()
            .await
    }

    async fn handshake(&self, user: usize) -> anyhow::Result<()> {
        self.check_user(user)?;
        Session::login(&self.target, user, "hs")
            .await?
            .ping_and_close()
            .await
    }

    /// The first member creates the room on its own short connection, makes
    /// it persistent (so it exists while empty) and leaves; members join it
    /// whenever they connect.
    async fn create_group(&self, members: &[usize]) -> anyhow::Result<GroupRef> {
        let (&owner, _) = members.split_first().context("a group needs members")?;
        for &m in members {
            self.check_user(m)?;
        }
        let n = self.next_room.fetch_add(1, Ordering::Relaxed);
        let room = format!("g{n}@{}", self.target.muc_domain);
        let nick = format!("u{owner}");
        let session = Session::login(&self.target, owner, "create").await?;
        let (mut tx, _rx) = session.into_halves(&self.target, false, &[], &nick).await?;
        tx.join(std::slice::from_ref(&room), &nick).await?;
        tx.configure_room(&room).await?;
        tx.leave_and_close(&room, &nick)
            .await
            .with_context(|| format!("{}: leaving {room} after creating it", self.kind))?;
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        for &m in members {
            rooms.entry(m).or_default().push(room.clone());
        }
        Ok(GroupRef {
            id: room,
            members: members.to_vec(),
        })
    }
}
