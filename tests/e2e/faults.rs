//! Fault tests: the stores fail under load and the relay keeps its promise.
//!
//! A device sends continuously while PostgreSQL crashes and restarts,
//! while NATS restarts, and while the data directory's disk is full. The
//! relay must refuse cleanly while it cannot store (503 `unavailable`, 507
//! `storage_full`), never answer 2xx for a message it did not store,
//! recover by itself, and deliver every acknowledged message exactly once.
//!
//! PostgreSQL and NATS here are private instances the test starts and
//! stops (never the machine's shared services): PostgreSQL 15 from
//! `/usr/lib/postgresql/15/bin` run as the `postgres` user, NATS from
//! `/usr/sbin/nats-server`. Where they are missing, or `mount` is not
//! allowed, a test says so and passes without running.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use kontor_crypto::{IdentityPublic, MessageId, Recipient, Sender};
use kontor_relay::wire::{self, PostedEnvelope};

use crate::relay_crash::{Enrolled, enroll};
use crate::serve::{Server, free_port, root_der, start_on};

// --- the load: senders that retry until acknowledged ---------------------

/// What one sender saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Numbers of the messages that got a 2xx.
    pub acked: BTreeSet<u32>,
    /// Every answer, by status and code ("201", "503 unavailable",
    /// "transport").
    pub answers: BTreeMap<String, usize>,
    /// 2xx answers to requests sent while the store was known to be down.
    pub violations: Vec<u32>,
    /// The slowest 2xx, in milliseconds.
    pub slowest_ack_ms: u128,
}

/// A sender posting numbered messages ("nachricht N") to one recipient.
pub struct Load {
    stop: Arc<AtomicBool>,
    /// Set by the test while the store is certainly down.
    pub down: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    refusals: Arc<AtomicUsize>,
    handle: tokio::task::JoinHandle<Tally>,
}

impl Load {
    /// Starts posting messages `first..first + count` from `from` to `to`,
    /// one at a time, each sealed once and retried with the same bytes
    /// (as an agent does) on 429, 503, 507 and transport errors.
    pub fn start(from: Arc<Enrolled>, to: Recipient, first: u32, count: u32) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let down = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let refusals = Arc::new(AtomicUsize::new(0));
        let handle = {
            let (stop, down, acked, refusals) =
                (stop.clone(), down.clone(), acked.clone(), refusals.clone());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                'messages: for i in first..first + count {
                    let envelope = seal_numbered(&from, to, i);
                    // Bounded: at most about 60 s per message.
                    for _ in 0..600 {
                        if stop.load(Ordering::SeqCst) {
                            break 'messages;
                        }
                        let was_down = down.load(Ordering::SeqCst);
                        let started = Instant::now();
                        let answer = from
                            .client
                            .request(
                                "POST",
                                "/v1/messages",
                                Some(wire::ENVELOPE_CONTENT_TYPE),
                                envelope.clone(),
                            )
                            .await;
                        let key = match &answer {
                            Ok(a) if a.status < 300 => a.status.to_string(),
                            Ok(a) => format!("{} {}", a.status, a.code()),
                            Err(_) => "transport".to_owned(),
                        };
                        *tally.answers.entry(key).or_default() += 1;
                        match answer {
                            Ok(a) if a.status == 200 || a.status == 201 => {
                                if was_down {
                                    tally.violations.push(i);
                                }
                                tally.slowest_ack_ms =
                                    tally.slowest_ack_ms.max(started.elapsed().as_millis());
                                tally.acked.insert(i);
                                acked.fetch_add(1, Ordering::SeqCst);
                                // About 20 a second: the relay's sustained rate.
                                tokio::time::sleep(Duration::from_millis(40)).await;
                                continue 'messages;
                            }
                            Ok(a) if a.status == 429 => {
                                tokio::time::sleep(Duration::from_millis(500)).await;
                            }
                            Ok(a) if a.status == 503 || a.status == 507 => {
                                refusals.fetch_add(1, Ordering::SeqCst);
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            // Anything else is recorded and ends the load:
                            // the test's check of `answers` names it.
                            Ok(_) => break 'messages,
                            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                        }
                    }
                }
                tally
            })
        };
        Load {
            stop,
            down,
            acked,
            refusals,
            handle,
        }
    }

    /// How many messages got a 2xx so far.
    pub fn acked(&self) -> usize {
        self.acked.load(Ordering::SeqCst)
    }

    /// How many 503 or 507 answers the sender got so far.
    pub fn refusals(&self) -> usize {
        self.refusals.load(Ordering::SeqCst)
    }

    /// Waits (bounded by `within`) until at least `n` messages got a 2xx.
    pub async fn wait_acked(&self, n: usize, within: Duration) -> bool {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if self.acked() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.acked() >= n
    }

    /// Stops sending and returns what the sender saw.
    pub async fn finish(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(40), self.handle)
            .await
            .expect("the sender stops")
            .expect("the sender did not panic")
    }
}

/// The envelope of message `n` from `from` to `to`, plaintext "nachricht n".
fn seal_numbered(from: &Enrolled, to: Recipient, n: u32) -> Vec<u8> {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&n.to_be_bytes());
    id[4..8].copy_from_slice(&from.device_id[..4]);
    let sealed = kontor_crypto::seal(
        &mut kontor_crypto::os_rng(),
        MessageId(id),
        Sender {
            device_id: kontor_crypto::DeviceId(from.device_id),
            identity: &from.key,
        },
        &[to],
        format!("nachricht {n}").as_bytes(),
    )
    .unwrap();
    let deliveries: Vec<&[u8]> = sealed
        .deliveries()
        .iter()
        .map(|d| &d.as_bytes()[..])
        .collect();
    PostedEnvelope::encode(None, &[], &deliveries, sealed.body())
}

/// `device` as a recipient.
pub fn recipient(device: &Enrolled) -> Recipient {
    Recipient {
        device_id: kontor_crypto::DeviceId(device.device_id),
        identity: device.key.public(),
    }
}

/// Fetches and acknowledges everything waiting for `device` (bounded),
/// counting each message number it was delivered.
pub async fn drain(device: &Enrolled, from: &IdentityPublic) -> BTreeMap<u32, usize> {
    let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
    let mut failures = 0;
    for _ in 0..200 {
        let batch = match device
            .client
            .request("GET", "/v1/messages", None, Vec::new())
            .await
        {
            Ok(b) if b.status == 200 => b,
            other => {
                failures += 1;
                assert!(failures < 50, "fetching keeps failing: {other:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let frames = wire::decode_batch(&batch.body).unwrap();
        if frames.is_empty() {
            return seen;
        }
        let mut seqs = Vec::new();
        for frame in frames {
            let opened = kontor_crypto::open(&frame.sealed, &device.key, None, from).unwrap();
            let text = String::from_utf8(opened.plaintext.to_vec()).unwrap();
            let n: u32 = text.strip_prefix("nachricht ").unwrap().parse().unwrap();
            *seen.entry(n).or_default() += 1;
            seqs.push(frame.seq);
        }
        let ack = device
            .client
            .request(
                "POST",
                "/v1/messages/ack",
                Some("application/json"),
                serde_json::to_vec(&serde_json::json!({ "seqs": seqs })).unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(ack.status, 200, "{:?}", ack.json());
    }
    panic!("the queue did not drain");
}

/// Every acknowledged message delivered once, no message delivered twice.
pub fn assert_exactly_once(tally: &Tally, seen: &BTreeMap<u32, usize>) {
    for n in &tally.acked {
        assert_eq!(
            seen.get(n),
            Some(&1),
            "acknowledged message {n} delivered {:?} times",
            seen.get(n)
        );
    }
    let twice: Vec<_> = seen.iter().filter(|(_, c)| **c != 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
}

/// Only clean answers: 2xx, or a refusal the client retries.
fn assert_clean_answers(tally: &Tally, allowed: &[&str]) {
    for answer in tally.answers.keys() {
        assert!(
            answer == "200" || answer == "201" || allowed.contains(&answer.as_str()),
            "unexpected answer {answer:?}: {:?}",
            tally.answers
        );
    }
}

// --- private PostgreSQL and NATS --------------------------------------------

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const NATS_BIN: &str = "/usr/sbin/nats-server";

/// A PostgreSQL cluster of this test's own, run as the `postgres` user.
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivatePostgres {
    /// Creates and starts a cluster; `None` (with the reason printed) where
    /// this machine cannot.
    pub fn start() -> Option<Self> {
        if !Path::new(PG_BIN).join("initdb").exists() {
            println!("skipped: no PostgreSQL 15 in {PG_BIN}");
            return None;
        }
        let ids = Command::new("id").args(["-u", "postgres"]).output().ok()?;
        let gids = Command::new("id").args(["-g", "postgres"]).output().ok()?;
        let (Ok(uid), Ok(gid)) = (
            String::from_utf8_lossy(&ids.stdout).trim().parse::<u32>(),
            String::from_utf8_lossy(&gids.stdout).trim().parse::<u32>(),
        ) else {
            println!("skipped: no postgres user to run PostgreSQL as");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("kontor-pg-")
            .tempdir()
            .unwrap();
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        let pg = PrivatePostgres {
            port: free_port(),
            dir,
        };
        let init = pg.as_postgres("initdb", |c| {
            c.arg("-D").arg(pg.data()).args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ]);
        });
        if !init.status.success() {
            println!(
                "skipped: initdb failed: {}",
                String::from_utf8_lossy(&init.stderr)
            );
            return None;
        }
        pg.start_again();
        Some(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn as_postgres(&self, tool: &str, args: impl FnOnce(&mut Command)) -> std::process::Output {
        let mut command = Command::new("runuser");
        command
            .args(["-u", "postgres", "--"])
            .arg(Path::new(PG_BIN).join(tool));
        args(&mut command);
        command.stdin(Stdio::null()).output().expect("runuser runs")
    }

    /// The URL for `kontor serve --postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the (stopped) cluster and waits until it takes connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let out = self.as_postgres("pg_ctl", |c| {
            c.arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.dir.path().join("postgres.log"))
                .args(["-w", "-t", "30", "-o", &options, "start"]);
        });
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the cluster the hard way (`immediate`: no checkpoint, crash
    /// recovery at the next start), as a crash would.
    pub fn crash(&self) {
        let out = self.as_postgres("pg_ctl", |c| {
            c.arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "-t", "30", "stop"]);
        });
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.as_postgres("pg_ctl", |c| {
            c.arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"]);
        });
    }
}

/// A nats-server of this test's own, with JetStream in a temporary folder.
pub struct PrivateNats {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl PrivateNats {
    /// Starts a server; `None` (with the reason printed) where there is none.
    pub fn start() -> Option<Self> {
        if !Path::new(NATS_BIN).exists() {
            println!("skipped: no {NATS_BIN}");
            return None;
        }
        let mut nats = PrivateNats {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            child: None,
        };
        nats.start_again();
        Some(nats)
    }

    /// The URL for `kontor serve --nats`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the (stopped) server on the same port and waits until it
    /// accepts connections.
    pub fn start_again(&mut self) {
        let child = Command::new(NATS_BIN)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nats-server does not answer on {}", self.port);
    }

    /// Kills the server.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A scale-out `kontor serve` on the private services, with anna sending
/// and ben and carl receiving.
struct ScaleOut {
    _dir: tempfile::TempDir,
    server: Server,
    anna: Arc<Enrolled>,
    ben: Enrolled,
    carl: Enrolled,
}

async fn scale_out(pg: &PrivatePostgres, nats: &PrivateNats) -> ScaleOut {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start_on(
        &data,
        free_port(),
        free_port(),
        &[
            "--postgres".into(),
            pg.url(),
            "--nats".into(),
            nats.url(),
            "--deployment".into(),
            "faults".into(),
        ],
    );
    let root = root_der(&data);
    let anna = Arc::new(enroll(&server, &root, "anna@example.org").await);
    let ben = enroll(&server, &root, "ben@example.org").await;
    let carl = enroll(&server, &root, "carl@example.org").await;
    ScaleOut {
        _dir: dir,
        server,
        anna,
        ben,
        carl,
    }
}

// --- the tests ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_crashing_under_load_costs_no_acknowledged_message_and_recovers_by_itself() {
    let started = Instant::now();
    let Some(pg) = PrivatePostgres::start() else {
        return;
    };
    let Some(nats) = PrivateNats::start() else {
        return;
    };
    let s = scale_out(&pg, &nats).await;
    let load = Load::start(s.anna.clone(), recipient(&s.ben), 0, 2_000);
    assert!(
        load.wait_acked(30, Duration::from_secs(20)).await,
        "the load did not start"
    );

    pg.crash();
    // Answers to requests committed just before the crash may still be on
    // their way; from here on nothing can be stored.
    tokio::time::sleep(Duration::from_millis(300)).await;
    load.down.store(true, Ordering::SeqCst);
    let before = load.acked();
    // While PostgreSQL is down: a clear 503, for the sender and for any
    // other request (authentication reads the key directory).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let me = s
        .ben
        .client
        .request("GET", "/v1/me", None, Vec::new())
        .await
        .unwrap();
    assert_eq!((me.status, me.code().as_str()), (503, "unavailable"));
    assert!(me.headers.contains_key("retry-after"));
    assert_eq!(
        load.acked(),
        before,
        "a message was acknowledged while PostgreSQL was down"
    );

    load.down.store(false, Ordering::SeqCst);
    pg.start_again();
    let back = Instant::now();
    assert!(
        load.wait_acked(before + 20, Duration::from_secs(30)).await,
        "the relay did not recover after PostgreSQL came back"
    );
    let recovered_s = back.elapsed().as_secs_f64();
    let tally = load.finish().await;
    let seen = drain(&s.ben, &s.anna.key.public()).await;
    println!(
        "postgresql crash: {} acknowledged, answers {:?}, recovered {recovered_s:.1} s after the restart, {:.1} s in all",
        tally.acked.len(),
        tally.answers,
        started.elapsed().as_secs_f64()
    );
    assert!(
        tally.violations.is_empty(),
        "2xx while down: {:?}",
        tally.violations
    );
    assert!(
        tally.answers.contains_key("503 unavailable"),
        "the outage was not seen: {:?}",
        tally.answers
    );
    assert_clean_answers(&tally, &["503 unavailable", "transport"]);
    assert_exactly_once(&tally, &seen);
    drop(s.server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restarting_under_load_delays_no_acknowledgement_and_live_hints_come_back() {
    let started = Instant::now();
    let Some(pg) = PrivatePostgres::start() else {
        return;
    };
    let Some(mut nats) = PrivateNats::start() else {
        return;
    };
    let s = scale_out(&pg, &nats).await;
    let load = Load::start(s.anna.clone(), recipient(&s.ben), 0, 2_000);
    assert!(
        load.wait_acked(30, Duration::from_secs(20)).await,
        "the load did not start"
    );

    // The bus carries hints, not data: without NATS, messages are still
    // stored and acknowledged, promptly.
    nats.kill();
    let before = load.acked();
    assert!(
        load.wait_acked(before + 20, Duration::from_secs(10)).await,
        "messages were not acknowledged while NATS was down"
    );
    nats.start_again();

    // Live delivery works again by itself: carl's WebSocket gets a new
    // message within seconds, long before its 20 s re-read, so through a
    // hint over the reconnected NATS client.
    let tls = s.carl.client.connect().await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async("wss://localhost/v1/ws", tls)
        .await
        .unwrap();
    let carl = recipient(&s.carl);
    let mut live_after = None;
    for attempt in 0..6u32 {
        let posted = s
            .anna
            .client
            .request(
                "POST",
                "/v1/messages",
                Some(wire::ENVELOPE_CONTENT_TYPE),
                seal_numbered(&s.anna, carl, 1_000_000 + attempt),
            )
            .await
            .unwrap();
        assert!(posted.status < 300, "{:?}", posted.json());
        let sent = Instant::now();
        let arrived = tokio::time::timeout(Duration::from_millis(2_500), async {
            while let Some(Ok(frame)) = ws.next().await {
                if let tokio_tungstenite::tungstenite::Message::Binary(_) = frame {
                    return true;
                }
            }
            false
        })
        .await;
        if arrived == Ok(true) {
            live_after = Some(sent.elapsed());
            break;
        }
    }
    let live_after = live_after.expect("no live delivery after NATS came back");
    let tally = load.finish().await;
    let seen = drain(&s.ben, &s.anna.key.public()).await;
    println!(
        "nats restart: {} acknowledged, slowest acknowledgement {} ms, answers {:?}, live delivery {} ms after posting, {:.1} s in all",
        tally.acked.len(),
        tally.slowest_ack_ms,
        tally.answers,
        live_after.as_millis(),
        started.elapsed().as_secs_f64()
    );
    assert_clean_answers(&tally, &[]);
    assert!(
        tally.slowest_ack_ms < 3_000,
        "an acknowledgement waited {} ms",
        tally.slowest_ack_ms
    );
    assert_exactly_once(&tally, &seen);
    drop(s.server);
}

/// A small tmpfs mounted on a folder for one test; unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size_mib: u32) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m,mode=0700")])
            .arg("tmpfs")
            .arg(path)
            .output()
            .map_err(|e| format!("mount cannot run: {e}"))?;
        if out.status.success() {
            Ok(Tmpfs {
                path: path.to_owned(),
            })
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).output();
    }
}

/// Writes `path` until the disk is full (bounded); the bytes written.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0xa5u8; 64 * 1024];
    let mut written = 0u64;
    for _ in 0..16_384 {
        match file.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n as u64,
        }
    }
    let _ = file.flush();
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_messages_cleanly_and_loses_none_that_were_acknowledged() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let disk = match Tmpfs::mount(&data, 12) {
        Ok(disk) => disk,
        Err(why) => {
            println!("skipped: cannot mount a tmpfs for the data directory: {why}");
            return;
        }
    };
    let server = start_on(&data, free_port(), free_port(), &[]);
    let root = root_der(&data);
    let anna = Arc::new(enroll(&server, &root, "anna@example.org").await);
    let ben = enroll(&server, &root, "ben@example.org").await;
    let load = Load::start(anna.clone(), recipient(&ben), 0, 5_000);
    assert!(
        load.wait_acked(30, Duration::from_secs(20)).await,
        "the load did not start"
    );

    let ballast = data.join("ballast");
    let filled = fill(&ballast);
    // Refusals come once SQLite needs a page the disk does not have (it
    // may first reuse free pages of its write-ahead log): wait for them,
    // keeping the disk full meanwhile.
    let mut refused = false;
    for k in 0..150u32 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        fill(&data.join(format!("ballast-{k}")));
        if load.refusals() > 0 {
            refused = true;
            break;
        }
    }
    assert!(refused, "a full disk never refused a message");
    // It keeps refusing while the disk stays full (the sender retries
    // every 100 ms).
    let first = load.refusals();
    for k in 0..30u32 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        fill(&data.join(format!("ballast-more-{k}")));
    }
    let refusals_while_full = load.refusals() - first + 1;
    assert!(
        refusals_while_full >= 5,
        "only {refusals_while_full} refusals in 1.5 s of a full disk"
    );
    // A refusal says what happened and when to come back.
    let probe = anna
        .client
        .request(
            "POST",
            "/v1/messages",
            Some(wire::ENVELOPE_CONTENT_TYPE),
            seal_numbered(&anna, recipient(&ben), 9_000_000),
        )
        .await
        .unwrap();
    if probe.status == 507 {
        assert_eq!(probe.code(), "storage_full", "{:?}", probe.json());
        assert!(probe.headers.contains_key("retry-after"));
    }
    // The server is alive and still reads.
    let me = ben
        .client
        .request("GET", "/v1/me", None, Vec::new())
        .await
        .unwrap();
    assert_eq!(me.status, 200);

    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("ballast-"))
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    std::fs::remove_file(&ballast).unwrap();
    let _ = std::fs::remove_file(data.join("ballast-more"));
    let before = load.acked();
    assert!(
        load.wait_acked(before + 20, Duration::from_secs(20)).await,
        "sending did not recover after the disk had room again"
    );
    let tally = load.finish().await;
    let mut seen = drain(&ben, &anna.key.public()).await;
    // The probe may have been stored (if the disk had room again): once.
    let probe = seen.remove(&9_000_000);
    assert!(
        probe.is_none_or(|n| n == 1),
        "probe delivered {probe:?} times"
    );
    drop(server);
    let check = rusqlite::Connection::open(data.join("kontor.db"))
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |row| row.get::<_, String>(0))
        .unwrap();
    println!(
        "disk full: ballast {} KiB, {refusals_while_full} refusals in 1.5 s full, {} acknowledged, answers {:?}, integrity {check}, {:.1} s in all",
        filled / 1024,
        tally.acked.len(),
        tally.answers,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(check, "ok");
    assert!(
        tally.answers.contains_key("507 storage_full"),
        "the sender never saw the full disk: {:?}",
        tally.answers
    );
    assert_clean_answers(&tally, &["507 storage_full", "429 rate_limited"]);
    assert_exactly_once(&tally, &seen);
    drop(disk);
}
