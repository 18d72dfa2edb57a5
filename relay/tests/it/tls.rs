//! The device API over real mutual TLS on 127.0.0.1: live delivery over
//! WebSocket, offline fetch, groups, attachments, refusals at the handshake
//! and bad input, on SQLite and (where configured) PostgreSQL.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use kontor_relay::client::{Answer, DeviceClient};
use kontor_relay::handoff;
use kontor_relay::http::{ListenerLimits, router, serve_tls};
use kontor_relay::service::RelayConfig;
use kontor_relay::store::RelayStore;
use kontor_relay::tls::{self, TlsMaterial};
use kontor_relay::wire;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs8KeyDer,
};
use tokio_tungstenite::tungstenite::Message;

use crate::service::{Device, MakeStore, Org, Postgres, envelope, postgres_url};

on_both_stores!(
    a_message_arrives_live_over_websocket_and_is_acknowledged,
    a_hand_off_not_acknowledged_in_time_is_stored_and_sent_again,
    a_silent_device_costs_one_wait_and_takes_offers_again_once_it_acknowledges,
    a_message_is_stored_only_for_the_devices_that_did_not_take_it_live,
    without_hand_off_a_live_message_is_stored_first,
    a_queue_longer_than_one_look_arrives_at_the_pace_of_the_acknowledgements,
    acknowledgements_sent_before_closing_are_kept_and_only_the_rest_comes_again,
    an_offline_device_fetches_and_acknowledges,
    a_group_of_fifty_each_open_the_message,
    an_attachment_reaches_only_the_recipient,
    revoked_and_foreign_devices_are_refused_at_the_handshake,
    bad_input_gets_a_clear_error_and_changes_nothing,
);

struct Running {
    addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start<S: RelayStore>(org: &Org<S>) -> Running {
    start_node(org, router(org.relay.clone())).await
}

/// Serves `app` (one relay node) with the organisation's TLS material.
async fn start_node<S: RelayStore>(org: &Org<S>, app: axum::Router) -> Running {
    let limits = ListenerLimits {
        connections_max: 1000,
        ..ListenerLimits::default()
    };
    start_node_with(org, app, limits).await
}

/// Serves `app` with the organisation's TLS material within `limits`.
async fn start_node_with<S: RelayStore>(
    org: &Org<S>,
    app: axum::Router,
    limits: ListenerLimits,
) -> Running {
    let crls = org
        .service
        .crls(time::OffsetDateTime::now_utc())
        .await
        .unwrap()
        .iter()
        .map(|c| CertificateRevocationListDer::from(c.to_vec()))
        .collect();
    let material = TlsMaterial {
        server_chain: org
            .server
            .chain_der
            .iter()
            .map(|d| CertificateDer::from(d.clone()))
            .collect(),
        server_key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            org.server.key_pkcs8_der.to_vec(),
        )),
        client_roots: vec![CertificateDer::from(org.root_der.clone())],
        crls,
    };
    let config = tls::server_config(material, org.service.deny_list()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_tls(listener, config, app, limits, async move {
        let _ = stopped.await;
    }));
    Running { addr, _stop: stop }
}

/// A device's TLS client: trusts `root`, presents the device certificate.
fn client(addr: SocketAddr, root: &[u8], device: &Device) -> DeviceClient {
    DeviceClient::new(
        &addr.to_string(),
        "localhost",
        root,
        &device.chain_pem,
        &device.tls_key,
    )
    .unwrap()
}

/// A device's live connection.
type Live =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Acknowledges `seqs` in one frame on a live connection.
async fn ack_live(ws: &mut Live, seqs: &[u64]) {
    ws.send(Message::Text(
        serde_json::json!({ "ack": seqs }).to_string().into(),
    ))
    .await
    .unwrap();
}

/// A device's view of the API.
struct Phone<'a> {
    client: DeviceClient,
    device: &'a Device,
}

impl<'a> Phone<'a> {
    fn new<S: RelayStore>(org: &Org<S>, running: &Running, device: &'a Device) -> Self {
        Self {
            client: client(running.addr, &org.root_der, device),
            device,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.client
            .request("GET", path, None, Vec::new())
            .await
            .unwrap()
    }

    async fn send(&self, method: &str, path: &str, ct: &str, body: Vec<u8>) -> Answer {
        self.client
            .request(method, path, Some(ct), body)
            .await
            .unwrap()
    }

    async fn post_envelope(&self, body: Vec<u8>) -> Answer {
        self.send("POST", "/v1/messages", wire::ENVELOPE_CONTENT_TYPE, body)
            .await
    }

    /// Posts one message to `to` per text (ids 1, 2, ...); each accepted.
    async fn post_each(&self, to: &Device, texts: &[Vec<u8>]) {
        for (id, text) in (1u8..).zip(texts) {
            let posted = self
                .post_envelope(envelope(self.device, &[to], id, None, &[], text))
                .await;
            assert_eq!(posted.status, 201, "{:?}", posted.json());
        }
    }

    /// Fetches, opens (expecting `from` as the sender) and returns (seq, plaintext).
    async fn inbox(&self, from: &Device) -> Vec<(u64, Vec<u8>)> {
        let answer = self.get("/v1/messages").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.headers["content-type"], wire::BATCH_CONTENT_TYPE);
        wire::decode_batch(&answer.body)
            .unwrap()
            .into_iter()
            .map(|frame| self.open(&frame, from))
            .collect()
    }

    /// Opens a delivered frame (expecting `from` as the sender): (seq, plaintext).
    fn open(&self, frame: &wire::Frame, from: &Device) -> (u64, Vec<u8>) {
        let opened =
            kontor_crypto::open(&frame.sealed, &self.device.key, None, &from.key.public()).unwrap();
        (frame.seq, opened.plaintext.to_vec())
    }

    /// Opens the live connection (`/v1/ws`); asserts the upgrade.
    async fn live(&self) -> Live {
        let tls = self.client.connect().await.unwrap();
        let (ws, response) = tokio_tungstenite::client_async("wss://localhost/v1/ws", tls)
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 101);
        ws
    }

    async fn ack(&self, seqs: &[u64]) -> Answer {
        self.send(
            "POST",
            "/v1/messages/ack",
            "application/json",
            serde_json::to_vec(&serde_json::json!({ "seqs": seqs })).unwrap(),
        )
        .await
    }
}

/// An organisation with Anna and Ben enrolled, its device API served.
async fn anna_and_ben<M: MakeStore>(
    m: &M,
    config: RelayConfig,
) -> (Org<M::S>, Device, Device, Running) {
    let org = Org::new(m, config).await;
    let anna = org.enroll("anna@example.org").await;
    let ben = org.enroll("ben@example.org").await;
    let running = start(&org).await;
    (org, anna, ben, running)
}

/// Waits until `n` live connections on the org's node take offers: the
/// upgrade's 101 comes before the connection registers its inbox.
async fn taking_offers<S: RelayStore>(org: &Org<S>, n: usize) {
    for _ in 0..250 {
        if org.relay.handoffs().open_inboxes() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{n} live connection(s) never took offers");
}

/// A message for a device that is live on the node is handed straight to
/// its connection: the sender's 2xx waits for the device's
/// acknowledgement, and the relay keeps nothing of it.
async fn a_message_arrives_live_over_websocket_and_is_acknowledged<M: MakeStore>(m: &M) {
    let (org, anna, ben, running) = anna_and_ben(m, RelayConfig::default()).await;
    let (anna_phone, ben_phone) = (
        Phone::new(&org, &running, &anna),
        Phone::new(&org, &running, &ben),
    );

    let mut ws = ben_phone.live().await;
    taking_offers(&org, 1).await;
    let post = anna_phone.post_envelope(envelope(
        &anna,
        &[&ben],
        1,
        None,
        &[],
        b"Live: Treffen um 10",
    ));
    let receive = async {
        let frame = next_frame(&mut ws, Duration::from_secs(5))
            .await
            .expect("delivered in time");
        let (seq, text) = ben_phone.open(&frame, &anna);
        assert_eq!(text, b"Live: Treffen um 10");
        assert!(handoff::is_handoff_seq(seq), "handed off, not stored first");
        ack_live(&mut ws, &[seq]).await;
    };
    let (posted, ()) = tokio::join!(post, receive);
    assert_eq!(posted.status, 201, "{:?}", posted.json());
    assert!(ben_phone.inbox(&anna).await.is_empty(), "stored after all");
    assert!(
        next_frame(&mut ws, Duration::from_millis(300))
            .await
            .is_none(),
        "an acknowledged message sent again"
    );
}

/// A message for a live device and an offline one: the live device takes
/// it from the sender's request, the queue keeps it only for the other.
async fn a_message_is_stored_only_for_the_devices_that_did_not_take_it_live<M: MakeStore>(m: &M) {
    let (org, anna, ben, running) = anna_and_ben(m, RelayConfig::default()).await;
    let tablet = org.enroll("ben@example.org").await;
    let (anna_phone, ben_phone, ben_tablet) = (
        Phone::new(&org, &running, &anna),
        Phone::new(&org, &running, &ben),
        Phone::new(&org, &running, &tablet),
    );
    let mut ws = ben_phone.live().await;
    taking_offers(&org, 1).await;
    let post = anna_phone.post_envelope(envelope(
        &anna,
        &[&ben, &tablet],
        1,
        None,
        &[],
        b"An beide Geraete",
    ));
    let receive = async {
        let frame = next_frame(&mut ws, Duration::from_secs(5))
            .await
            .expect("delivered in time");
        let (seq, text) = ben_phone.open(&frame, &anna);
        assert_eq!(text, b"An beide Geraete");
        assert!(handoff::is_handoff_seq(seq));
        ack_live(&mut ws, &[seq]).await;
    };
    let (posted, ()) = tokio::join!(post, receive);
    assert_eq!(posted.status, 201, "{:?}", posted.json());
    assert_eq!(posted.json()["recipients"], 2);
    assert!(ben_phone.inbox(&anna).await.is_empty());
    let queued = ben_tablet.inbox(&anna).await;
    assert_eq!(queued.len(), 1, "stored for the offline device");
    assert_eq!(queued[0].1, b"An beide Geraete");
    assert!(!handoff::is_handoff_seq(queued[0].0));
}

/// A live device that does not acknowledge a handed-off message within
/// `handoff_wait`: the message is stored before the sender's 2xx and comes
/// again from the queue (the device drops the second copy as seen); a
/// late acknowledgement of the handed-off frame leaves the queue alone.
async fn a_hand_off_not_acknowledged_in_time_is_stored_and_sent_again<M: MakeStore>(m: &M) {
    let config = RelayConfig {
        handoff_wait: Duration::from_millis(200),
        ..RelayConfig::default()
    };
    let (org, anna, ben, running) = anna_and_ben(m, config).await;
    let (anna_phone, ben_phone) = (
        Phone::new(&org, &running, &anna),
        Phone::new(&org, &running, &ben),
    );
    let mut ws = ben_phone.live().await;
    taking_offers(&org, 1).await;
    let started = Instant::now();
    let posted = anna_phone
        .post_envelope(envelope(&anna, &[&ben], 1, None, &[], b"Bist du da?"))
        .await;
    assert_eq!(posted.status, 201, "{:?}", posted.json());
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(ben_phone.inbox(&anna).await.len(), 1, "stored");

    let frames = exactly(
        &mut ws,
        2,
        "the offer, then the stored copy",
        Duration::from_millis(300),
        "a third copy",
    )
    .await;
    let opened: Vec<(u64, Vec<u8>)> = frames.iter().map(|f| ben_phone.open(f, &anna)).collect();
    assert!(handoff::is_handoff_seq(opened[0].0));
    assert!(!handoff::is_handoff_seq(opened[1].0));
    assert_eq!(opened[0].1, b"Bist du da?");
    assert_eq!(opened[1].1, b"Bist du da?");

    ack_live(&mut ws, &[opened[0].0]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        ben_phone.inbox(&anna).await.len(),
        1,
        "a late hand-off ack kept the queue"
    );
    ack_live(&mut ws, &[opened[1].0]).await;
    let mut empty = false;
    for _ in 0..50 {
        if ben_phone.inbox(&anna).await.is_empty() {
            empty = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(empty, "acknowledged message still queued");
}

/// A live device that acknowledges nothing makes one sender wait, not
/// every sender: after the first offer went unanswered its connection
/// takes no offers (messages are stored, in order), until the device
/// acknowledges something.
async fn a_silent_device_costs_one_wait_and_takes_offers_again_once_it_acknowledges<
    M: MakeStore,
>(
    m: &M,
) {
    let wait = Duration::from_secs(1);
    let config = RelayConfig {
        handoff_wait: wait,
        ..RelayConfig::default()
    };
    let (org, anna, ben, running) = anna_and_ben(m, config).await;
    let (anna_phone, ben_phone) = (
        Phone::new(&org, &running, &anna),
        Phone::new(&org, &running, &ben),
    );
    let mut ws = ben_phone.live().await;
    taking_offers(&org, 1).await;
    let started = Instant::now();
    anna_phone.post_each(&ben, &[b"eins".to_vec()]).await;
    assert!(started.elapsed() >= wait, "the first sender waited");
    let started = Instant::now();
    let posted = anna_phone
        .post_envelope(envelope(&anna, &[&ben], 2, None, &[], b"zwei"))
        .await;
    assert_eq!(posted.status, 201, "{:?}", posted.json());
    assert!(started.elapsed() < wait, "the second sender did not wait");
    assert_eq!(ben_phone.inbox(&anna).await.len(), 2, "both stored");

    let frames = exactly(
        &mut ws,
        3,
        "the offer of the first, then both from the queue",
        Duration::from_millis(300),
        "a fourth frame",
    )
    .await;
    let opened: Vec<(u64, Vec<u8>)> = frames.iter().map(|f| ben_phone.open(f, &anna)).collect();
    assert!(handoff::is_handoff_seq(opened[0].0));
    assert_eq!(opened[0].1, b"eins");
    assert_eq!(
        (opened[1].1.as_slice(), opened[2].1.as_slice()),
        (&b"eins"[..], &b"zwei"[..]),
        "the queue in order"
    );
    assert!(!handoff::is_handoff_seq(opened[1].0) && !handoff::is_handoff_seq(opened[2].0));

    ack_live(&mut ws, &[opened[1].0, opened[2].0]).await;
    // The queue empties once the relay read the acknowledgement.
    let mut empty = false;
    for _ in 0..50 {
        if ben_phone.inbox(&anna).await.is_empty() {
            empty = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(empty, "acknowledged messages still queued");
    let post = anna_phone.post_envelope(envelope(&anna, &[&ben], 3, None, &[], b"drei"));
    let receive = async {
        let frame = next_frame(&mut ws, Duration::from_secs(5))
            .await
            .expect("delivered in time");
        let (seq, text) = ben_phone.open(&frame, &anna);
        assert_eq!(text, b"drei");
        assert!(handoff::is_handoff_seq(seq), "handed off again");
        ack_live(&mut ws, &[seq]).await;
    };
    let (posted, ()) = tokio::join!(post, receive);
    assert_eq!(posted.status, 201, "{:?}", posted.json());
}

/// With the hand-off off (`handoff_wait` zero), a message for a live
/// device is stored before the 2xx, then sent from the queue; its
/// acknowledgement empties the queue.
async fn without_hand_off_a_live_message_is_stored_first<M: MakeStore>(m: &M) {
    let config = RelayConfig {
        handoff_wait: Duration::ZERO,
        ..RelayConfig::default()
    };
    let (org, anna, ben, running) = anna_and_ben(m, config).await;
    let (anna_phone, ben_phone) = (
        Phone::new(&org, &running, &anna),
        Phone::new(&org, &running, &ben),
    );
    let mut ws = ben_phone.live().await;
    taking_offers(&org, 1).await;
    let posted = anna_phone
        .post_envelope(envelope(&anna, &[&ben], 1, None, &[], b"Gespeichert"))
        .await;
    assert_eq!(posted.status, 201, "{:?}", posted.json());
    let frame = next_frame(&mut ws, Duration::from_secs(5))
        .await
        .expect("delivered in time");
    let (seq, text) = ben_phone.open(&frame, &anna);
    assert_eq!(text, b"Gespeichert");
    assert!(!handoff::is_handoff_seq(seq));
    ack_live(&mut ws, &[seq]).await;
    // The acknowledgement is processed before the next fetch sees the queue empty.
    let mut empty = false;
    for _ in 0..50 {
        if ben_phone.inbox(&anna).await.is_empty() {
            empty = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(empty, "acknowledged message still queued");
}

/// The next binary frame on `ws` within `wait`, decoded; `None` if none came.
async fn next_frame<S>(ws: &mut S, wait: Duration) -> Option<wire::Frame>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Binary(bytes)))) => {
                return Some(wire::decode_frame(&bytes).unwrap());
            }
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("websocket ended: {other:?}"),
        }
    }
}

/// Exactly `n` frames, each within 5 s (else panics with `late`), then
/// none for `quiet` (else panics with `more`).
async fn exactly<S>(
    ws: &mut S,
    n: usize,
    late: &str,
    quiet: Duration,
    more: &str,
) -> Vec<wire::Frame>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut frames = Vec::new();
    for _ in 0..n {
        frames.push(next_frame(ws, Duration::from_secs(5)).await.expect(late));
    }
    assert!(next_frame(ws, quiet).await.is_none(), "{more}");
    frames
}

/// A device that was offline gets a queue longer than one look
/// (`fetch_max`) at once, not one look per hint or re-read, but never more
/// than two looks ahead of its acknowledgements; every message once.
async fn a_queue_longer_than_one_look_arrives_at_the_pace_of_the_acknowledgements<M: MakeStore>(
    m: &M,
) {
    let config = RelayConfig {
        fetch_max: 3,
        ..RelayConfig::default()
    };
    let (org, anna, ben, running) = anna_and_ben(m, config).await;
    let (anna_phone, ben_phone) = (
        Phone::new(&org, &running, &anna),
        Phone::new(&org, &running, &ben),
    );
    let texts: Vec<Vec<u8>> = (0..10).map(|i| format!("Nachricht {i}").into()).collect();
    anna_phone.post_each(&ben, &texts).await;

    let mut ws = ben_phone.live().await;
    let mut seen = Vec::new();
    // Two full looks (six messages) come at once, long before the first
    // re-read (20 s); then nothing until they are acknowledged.
    let first = exactly(
        &mut ws,
        6,
        "the second look follows the first at once",
        Duration::from_millis(500),
        "more than two looks ahead of the acknowledgements",
    )
    .await;
    seen.extend(first.iter().map(|f| ben_phone.open(f, &anna)));
    let acked: Vec<u64> = seen.iter().map(|(seq, _)| *seq).collect();
    ack_live(&mut ws, &acked).await;
    let rest = exactly(
        &mut ws,
        4,
        "the rest follows the acknowledgement",
        Duration::from_millis(300),
        "a message sent twice",
    )
    .await;
    seen.extend(rest.iter().map(|f| ben_phone.open(f, &anna)));
    let mut seqs: Vec<u64> = seen.iter().map(|(seq, _)| *seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 10, "every message once");
    let texts: Vec<String> = seen
        .iter()
        .map(|(_, p)| String::from_utf8(p.clone()).unwrap())
        .collect();
    let expected: Vec<String> = (0..10).map(|i| format!("Nachricht {i}")).collect();
    assert_eq!(texts, expected, "in the order they were sent");
}

/// Acknowledgements are written while the connection goes on (more
/// frames than are written at once, so the socket also waits for them);
/// those a device sent just before it closed are still written, and on
/// the next connection exactly the unacknowledged messages come again.
async fn acknowledgements_sent_before_closing_are_kept_and_only_the_rest_comes_again<
    M: MakeStore,
>(
    m: &M,
) {
    let (org, anna, ben, running) = anna_and_ben(m, RelayConfig::default()).await;
    let (anna_phone, ben_phone) = (
        Phone::new(&org, &running, &anna),
        Phone::new(&org, &running, &ben),
    );
    let texts: Vec<Vec<u8>> = (0..12u8).map(|i| vec![b'a' + i]).collect();
    anna_phone.post_each(&ben, &texts).await;
    let mut ws = ben_phone.live().await;
    let frames = exactly(
        &mut ws,
        12,
        "the queue comes at once",
        Duration::from_millis(300),
        "a message sent twice",
    )
    .await;
    let seqs: Vec<u64> = frames.iter().map(|f| f.seq).collect();
    // The first eight, one frame each (twice as many as are written at
    // once), then the socket is closed at once.
    for seq in &seqs[..8] {
        ack_live(&mut ws, &[*seq]).await;
    }
    ws.close(None).await.unwrap();
    drop(ws);

    let mut left = Vec::new();
    for _ in 0..100 {
        left = ben_phone.inbox(&anna).await;
        if left.len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left_seqs: Vec<u64> = left.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        left_seqs,
        seqs[8..],
        "acknowledgements lost with the socket"
    );

    let mut ws = ben_phone.live().await;
    let again = exactly(
        &mut ws,
        4,
        "the unacknowledged messages come again",
        Duration::from_millis(300),
        "an acknowledged message sent again",
    )
    .await;
    let again: Vec<(u64, Vec<u8>)> = again.iter().map(|f| ben_phone.open(f, &anna)).collect();
    let expected: Vec<(u64, Vec<u8>)> = seqs[8..]
        .iter()
        .zip(8u8..)
        .map(|(seq, i)| (*seq, vec![b'a' + i]))
        .collect();
    assert_eq!(again, expected);
}

async fn an_offline_device_fetches_and_acknowledges<M: MakeStore>(m: &M) {
    let (org, anna, ben, running) = anna_and_ben(m, RelayConfig::default()).await;
    let (anna_phone, ben_phone) = (
        Phone::new(&org, &running, &anna),
        Phone::new(&org, &running, &ben),
    );
    anna_phone
        .post_each(&ben, &[b"eins".into(), b"zwei".into(), b"drei".into()])
        .await;
    let inbox = ben_phone.inbox(&anna).await;
    let texts: Vec<&[u8]> = inbox.iter().map(|(_, t)| t.as_slice()).collect();
    assert_eq!(texts, [b"eins".as_slice(), b"zwei", b"drei"], "order kept");
    let seqs: Vec<u64> = inbox.iter().map(|(s, _)| *s).collect();
    assert_eq!(ben_phone.ack(&seqs).await.json()["acknowledged"], 3);
    assert!(ben_phone.inbox(&anna).await.is_empty());
    let me = ben_phone.get("/v1/me").await;
    assert_eq!(me.json()["user_id"], "ben@example.org");
    let directory = anna_phone.get("/v1/users/ben@example.org/devices").await;
    assert_eq!(
        directory.json()["devices"][0]["identity_key"],
        ben.key.public().to_hex()
    );
}

async fn a_group_of_fifty_each_open_the_message<M: MakeStore>(m: &M) {
    let org = Org::new(m, RelayConfig::default()).await;
    let mut members = Vec::new();
    for i in 0..50 {
        members.push(org.enroll(&format!("user{i:02}@example.org")).await);
    }
    let running = start(&org).await;
    let sender = Phone::new(&org, &running, &members[0]);
    let gid = [0x42u8; 16];
    let others: Vec<String> = (1..50).map(|i| format!("user{i:02}@example.org")).collect();
    let created = sender
        .send(
            "POST",
            "/v1/groups",
            "application/json",
            serde_json::to_vec(&serde_json::json!({
                "id": hex::encode(gid), "name": "Alle", "members": others,
            }))
            .unwrap(),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.json());
    assert_eq!(created.json()["members"].as_array().unwrap().len(), 50);
    let recipients: Vec<&Device> = members[1..].iter().collect();
    let answer = sender
        .post_envelope(envelope(
            &members[0],
            &recipients,
            7,
            Some(gid),
            &[],
            b"an alle 50",
        ))
        .await;
    assert_eq!(answer.status, 201, "{:?}", answer.json());
    assert_eq!(answer.json()["recipients"], 49);
    for member in &members[1..] {
        let inbox = Phone::new(&org, &running, member).inbox(&members[0]).await;
        assert_eq!(inbox.len(), 1);
        assert_eq!(inbox[0].1, b"an alle 50");
    }
}

async fn an_attachment_reaches_only_the_recipient<M: MakeStore>(m: &M) {
    let org = Org::new(m, RelayConfig::default()).await;
    let anna = org.enroll("anna@example.org").await;
    let ben = org.enroll("ben@example.org").await;
    let carl = org.enroll("carl@example.org").await;
    let running = start(&org).await;
    let (a, b, c) = (
        Phone::new(&org, &running, &anna),
        Phone::new(&org, &running, &ben),
        Phone::new(&org, &running, &carl),
    );
    let blob_id = [0x0b; 16];
    let (key, blob) = kontor_crypto::encrypt_blob(
        &mut kontor_crypto::os_rng(),
        kontor_crypto::BlobId(blob_id),
        kontor_crypto::DeviceId(*anna.ctx.device_id.as_bytes()),
        &vec![0x5a; 200_000],
    );
    let path = format!("/v1/blobs/{}", hex::encode(blob_id));
    assert_eq!(
        a.send("PUT", &path, "application/octet-stream", blob.clone())
            .await
            .status,
        201
    );
    assert_eq!(
        a.send("PUT", &path, "application/octet-stream", blob.clone())
            .await
            .status,
        409
    );
    assert_eq!(b.get(&path).await.status, 404);
    assert_eq!(
        a.post_envelope(envelope(
            &anna,
            &[&ben],
            1,
            None,
            &[blob_id],
            b"Datei anbei"
        ))
        .await
        .status,
        201
    );
    let downloaded = b.get(&path).await;
    assert_eq!(downloaded.status, 200);
    let file = kontor_crypto::decrypt_blob(
        &key,
        kontor_crypto::BlobId(blob_id),
        kontor_crypto::DeviceId(*anna.ctx.device_id.as_bytes()),
        &downloaded.body,
    )
    .unwrap();
    assert_eq!(file.len(), 200_000);
    assert_eq!(c.get(&path).await.status, 404);
}

async fn revoked_and_foreign_devices_are_refused_at_the_handshake<M: MakeStore>(m: &M) {
    let org = Org::new(m, RelayConfig::default()).await;
    let ben = org.enroll("ben@example.org").await;
    let running = start(&org).await;
    let phone = Phone::new(&org, &running, &ben);
    assert_eq!(phone.get("/v1/me").await.status, 200);
    org.service
        .revoke_device(&ben.ctx.device_id, "lost", time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    let refused = phone
        .client
        .request("GET", "/v1/me", None, Vec::new())
        .await;
    assert!(refused.is_err(), "a revoked device got an answer");

    // A device of another organisation: its CA is not ours.
    let other = Org::new(m, RelayConfig::default()).await;
    let eve = other.enroll("eve@other.example").await;
    let foreign = client(running.addr, &org.root_der, &eve);
    let refused = foreign.request("GET", "/v1/me", None, Vec::new()).await;
    assert!(refused.is_err(), "a foreign device got an answer");
}

async fn bad_input_gets_a_clear_error_and_changes_nothing<M: MakeStore>(m: &M) {
    let config = RelayConfig {
        body_bytes_max: 4096,
        messages_per_s: 1,
        message_burst: 12,
        ..RelayConfig::default()
    };
    let org = Org::new(m, config).await;
    let anna = org.enroll("anna@example.org").await;
    let ben = org.enroll("ben@example.org").await;
    let carl = org.enroll("carl@example.org").await;
    let running = start(&org).await;
    let (a, b, c) = (
        Phone::new(&org, &running, &anna),
        Phone::new(&org, &running, &ben),
        Phone::new(&org, &running, &carl),
    );
    let check = |answer: &Answer, status: u16, code: &str| {
        assert_eq!(
            (answer.status, answer.code().as_str()),
            (status, code),
            "{:?}",
            answer.json()
        );
        assert!(
            answer.headers["strict-transport-security"]
                .to_str()
                .unwrap()
                .starts_with("max-age=63072000")
        );
    };
    check(
        &a.post_envelope(b"KENV\x01garbage".to_vec()).await,
        400,
        "bad_envelope",
    );
    let good = envelope(&anna, &[&ben], 1, None, &[], b"hallo");
    check(
        &a.send("POST", "/v1/messages", "application/json", good.clone())
            .await,
        415,
        "content_type",
    );
    check(
        &a.post_envelope(envelope(&anna, &[&ben], 2, None, &[], &[0u8; 5000]))
            .await,
        413,
        "too_large",
    );
    let mut stranger = org.enroll("dora@example.org").await;
    org.service
        .revoke_device(
            &stranger.ctx.device_id,
            "test",
            time::OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    stranger.chain_pem.clear();
    check(
        &a.post_envelope(envelope(&anna, &[&stranger], 3, None, &[], b"x"))
            .await,
        422,
        "unknown_recipient",
    );
    check(
        &c.post_envelope(envelope(&anna, &[&ben], 4, None, &[], b"x"))
            .await,
        403,
        "sender_mismatch",
    );
    check(
        &a.send(
            "POST",
            "/v1/messages/ack",
            "application/json",
            b"{\"seqs\": \"all\"}".to_vec(),
        )
        .await,
        400,
        "bad_request",
    );
    check(&a.get("/v1/groups/zz").await, 400, "bad_request");
    assert!(
        b.inbox(&anna).await.is_empty(),
        "a refused message was stored"
    );

    // A retry is accepted once and delivered once; a replayed id with
    // another body is refused.
    assert_eq!(a.post_envelope(good.clone()).await.status, 201);
    let retry = a.post_envelope(good).await;
    assert_eq!(
        (retry.status, retry.json()["new"].clone()),
        (200, serde_json::Value::Bool(false))
    );
    check(
        &a.post_envelope(envelope(&anna, &[&ben], 1, None, &[], b"anders"))
            .await,
        409,
        "replay",
    );
    assert_eq!(b.inbox(&anna).await.len(), 1);

    // Flooding: the burst runs out, then 429 with Retry-After (bounded loop).
    let (mut limited, mut accepted) = (None, 0);
    for i in 10..40u8 {
        let answer = a
            .post_envelope(envelope(&anna, &[&carl], i, None, &[], b"flood"))
            .await;
        if answer.status == 429 {
            limited = Some(answer);
            break;
        }
        assert_eq!(answer.status, 201, "{:?}", answer.json());
        accepted += 1;
    }
    let limited = limited.expect("flooding was never limited");
    check(&limited, 429, "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
    assert_eq!(
        c.inbox(&anna).await.len(),
        accepted,
        "a rate-limited message was stored"
    );

    // HSTS on successful answers too, not only on errors.
    let spec = a.get("/v1/openapi.json").await;
    assert_eq!(spec.status, 200);
    assert_eq!(spec.json()["openapi"], "3.1.0");
    for ok in [&spec, &b.get("/v1/me").await] {
        assert!(
            ok.headers["strict-transport-security"]
                .to_str()
                .unwrap()
                .starts_with("max-age=63072000")
        );
    }
}

/// An HTTP/2 connection that stays idle is closed after the idle timeout.
/// The timeout is longer than the 30 s keep-alive interval the listener
/// used to ping at: the client's answers to those pings kept an idle
/// connection open for ever.
#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let org = Org::new(&crate::service::Sqlite, RelayConfig::default()).await;
    let ben = org.enroll("ben@example.org").await;
    let idle = Duration::from_secs(32);
    let limits = ListenerLimits {
        connections_max: 1000,
        idle_timeout: idle,
        ..ListenerLimits::default()
    };
    let running = start_node_with(&org, router(org.relay.clone()), limits).await;
    let tls = client(running.addr, &org.root_der, &ben)
        .connect()
        .await
        .unwrap();
    // hyper's client sends no pings of its own.
    let (mut h2, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    let request = hyper::Request::get("https://localhost/v1/me")
        .body(http_body_util::Empty::<axum::body::Bytes>::new())
        .unwrap();
    let answer = h2.send_request(request).await.unwrap();
    assert_eq!(answer.status(), 200);
    drop(answer);

    let started = Instant::now();
    // The watchdog looks every quarter of the idle timeout.
    let ended = tokio::time::timeout(idle + idle / 4 + Duration::from_secs(5), connection).await;
    assert!(
        ended.is_ok(),
        "an idle HTTP/2 connection was still open {:?} after its last request (idle timeout {idle:?})",
        started.elapsed()
    );
    assert!(
        started.elapsed() >= idle - Duration::from_secs(1),
        "closed after {:?}, before the idle timeout {idle:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn two_nodes_deliver_live_from_a_sender_on_one_to_a_device_connected_to_the_other() {
    let Some(pg) = postgres_url() else { return };
    let Some(nats) = std::env::var("KONTOR_TEST_NATS_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        println!("skipped: KONTOR_TEST_NATS_URL not set");
        return;
    };
    let ns = format!("test-{}", hex::encode(rand::random::<[u8; 6]>()));
    let postgres = Postgres::new(pg.clone());
    let org = Org::new(&postgres, RelayConfig::default()).await;
    let anna = org.enroll("anna@example.org").await;
    let ben = org.enroll("ben@example.org").await;
    let node_a = org
        .relay_with_bus(
            kontor_relay::bus::NatsBus::connect(&nats, &ns)
                .await
                .unwrap(),
        )
        .await;
    let store_b =
        kontor_relay::store::postgres::PostgresStore::connect(&pg, org.relay.store().schema())
            .await
            .unwrap();
    let node_b = kontor_relay::service::Relay::new(
        store_b,
        org.service.store().clone(),
        org.service.deny_list(),
        kontor_relay::bus::NatsBus::connect(&nats, &ns)
            .await
            .unwrap(),
        RelayConfig::default(),
    );
    let a = start_node(&org, router(std::sync::Arc::new(node_a))).await;
    let b = start_node(&org, router(std::sync::Arc::new(node_b))).await;
    let anna_on_a = Phone::new(&org, &a, &anna);
    let ben_on_b = Phone::new(&org, &b, &ben);
    let mut ws = ben_on_b.live().await;
    // Let node B's NATS subscription settle before the message is posted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let posted = anna_on_a
        .post_envelope(envelope(&anna, &[&ben], 1, None, &[], b"von Knoten A"))
        .await;
    assert_eq!(posted.status, 201);
    let frame = loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("delivered live")
        {
            Some(Ok(Message::Binary(bytes))) => break wire::decode_frame(&bytes).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("websocket ended: {other:?}"),
        }
    };
    // Live: through the bus hint, well before the 20 s re-read.
    assert!(started.elapsed() < Duration::from_secs(5));
    let opened = kontor_crypto::open(&frame.sealed, &ben.key, None, &anna.key.public()).unwrap();
    assert_eq!(&opened.plaintext[..], b"von Knoten A");
    postgres.finish().await;
}
