//! Flood tests: every listener under a flood from one address stays
//! responsive to a well-behaved client from another (127.0.0.2), refuses
//! cleanly (429, 503 or a closed connection), keeps its memory bounded,
//! and is usable again from the flooding address afterwards.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use kontor_relay::client::DeviceClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::relay_crash::{enroll, enroll_from};
use crate::serve::{Server, free_port, root_der, start_on};

/// The well-behaved client's address: another host, as far as the
/// server's per-address limits are concerned.
const GOOD: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// The server's resident memory, in KiB.
fn rss_kib(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// How many more file descriptors this process may open (the flood's
/// sockets), from /proc/self/limits.
fn fd_headroom() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft: usize = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    soft.saturating_sub(200)
}

/// An anonymous client of `port` from the well-behaved address.
fn good_client(port: u16, root: &[u8]) -> DeviceClient {
    DeviceClient::anonymous(&format!("127.0.0.1:{port}"), "localhost", root)
        .unwrap()
        .from_local_address(GOOD)
}

/// `GET path` succeeds within `within`.
async fn answers(client: &DeviceClient, path: &str, within: Duration) -> Duration {
    let started = Instant::now();
    let answer = tokio::time::timeout(within, client.request("GET", path, None, Vec::new()))
        .await
        .unwrap_or_else(|_| panic!("GET {path} took longer than {within:?}"))
        .unwrap_or_else(|e| panic!("GET {path} failed: {e}"));
    assert_eq!(answer.status, 200, "GET {path}: {:?}", answer.json());
    started.elapsed()
}

/// Whether the server has closed `stream` (EOF or reset within `wait`).
async fn closed_by_server(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut byte = [0u8; 512];
    let until = Instant::now() + wait;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut byte)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // TLS alert bytes, say: keep reading until the close.
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_and_slowloris_leave_every_listener_responsive() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let limits: Vec<String> = [
        "--connections-max",
        "1500",
        "--connections-per-address-max",
        "300",
        "--handshake-timeout-s",
        "3",
        "--header-timeout-s",
        "3",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let server = start_on(&data, free_port(), free_port(), &limits);
    let root = root_der(&data);
    let anna = enroll_from(&server, &root, "anna@example.org", Some(GOOD)).await;
    let enroll_good = good_client(server.enroll_port, &root);
    let admin_good = good_client(server.admin_port, &root);
    answers(&anna.client, "/v1/me", Duration::from_secs(5)).await;
    let rss_before = rss_kib(&server);

    // 1. Plain TCP connections that never start TLS, from 127.0.0.1,
    // spread over the three listeners.
    let flood_n = 2_000.min(fd_headroom());
    let ports = [server.device_port, server.enroll_port, server.admin_port];
    let mut flood = Vec::with_capacity(flood_n);
    let mut not_connected = 0;
    for i in 0..flood_n {
        let port = ports[i % ports.len()];
        match tokio::time::timeout(
            Duration::from_secs(2),
            TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        {
            Ok(Ok(stream)) => flood.push(stream),
            _ => not_connected += 1,
        }
    }
    // Meanwhile the well-behaved client is served on every listener.
    let device_during = answers(&anna.client, "/v1/me", Duration::from_secs(5)).await;
    let enroll_during = answers(&enroll_good, "/pki/root.pem", Duration::from_secs(5)).await;
    let admin_during = answers(&admin_good, "/v1/openapi.json", Duration::from_secs(5)).await;
    // Past 300 per address and listener, connections are closed at once;
    // the rest when their handshake does not come within 3 s.
    let mut closed_at_once = 0;
    for stream in &mut flood {
        if closed_by_server(stream, Duration::from_millis(2)).await {
            closed_at_once += 1;
        }
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut still_open = 0;
    for stream in &mut flood {
        if !closed_by_server(stream, Duration::from_millis(2)).await {
            still_open += 1;
        }
    }
    drop(flood);
    assert!(
        closed_at_once >= flood_n.saturating_sub(3 * 300 + not_connected),
        "only {closed_at_once} of {flood_n} flood connections were closed at once"
    );
    assert_eq!(
        still_open, 0,
        "flood connections outlived the handshake timeout"
    );

    // 2. Slowloris: 200 TLS connections to the enrollment listener that
    // trickle a request header, one line a second.
    let slow_n = 200.min(fd_headroom());
    let flooder = DeviceClient::anonymous(
        &format!("127.0.0.1:{}", server.enroll_port),
        "localhost",
        &root,
    )
    .unwrap();
    let mut slow = Vec::with_capacity(slow_n);
    for _ in 0..slow_n {
        let mut tls = flooder.connect().await.unwrap();
        tls.write_all(b"GET /pki/root.pem HTTP/1.1\r\nhost: localhost\r\n")
            .await
            .unwrap();
        tls.flush().await.unwrap();
        slow.push(tls);
    }
    let slowloris_started = Instant::now();
    let enroll_slowloris = answers(&enroll_good, "/pki/root.pem", Duration::from_secs(5)).await;
    let mut dropped = vec![false; slow.len()];
    for round in 0..6 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for (i, tls) in slow.iter_mut().enumerate() {
            if dropped[i] {
                continue;
            }
            let line = format!("x-slow-{round}: 1\r\n");
            if tls.write_all(line.as_bytes()).await.is_err() || tls.flush().await.is_err() {
                dropped[i] = true;
            }
        }
    }
    // The server cut them at the header timeout (3 s): reading gives the
    // close, or a 408, never the document.
    let mut cut = 0;
    for tls in &mut slow {
        let mut buf = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_millis(200), tls.read_to_end(&mut buf)).await;
        let served = String::from_utf8_lossy(&buf).contains("BEGIN CERTIFICATE");
        if !served && read.is_ok() {
            cut += 1;
        }
    }
    drop(slow);
    assert_eq!(
        cut,
        slow_n,
        "slowloris connections not cut within {:?}",
        slowloris_started.elapsed()
    );

    // 3. Memory stayed bounded, and the flooding address is served again.
    let rss_after = rss_kib(&server);
    let from_flooder = enroll(&server, &root, "ben@example.org").await;
    answers(&from_flooder.client, "/v1/me", Duration::from_secs(5)).await;
    println!(
        "connection flood: {flood_n} connections ({not_connected} not connected, {closed_at_once} closed at once), \
         device {device_during:?}, enrollment {enroll_during:?}, admin {admin_during:?} during the flood; \
         slowloris {slow_n} cut, enrollment {enroll_slowloris:?} meanwhile; \
         RSS {rss_before} KiB before, {rss_after} KiB after; {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
    assert!(
        rss_after < rss_before + 200 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_and_sign_in_floods_from_one_address_are_rate_limited() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = crate::admin::start_with_owner_and(&data, &[]);
    let root = root_der(&data);
    let rss_before = rss_kib(&server);

    // 500 enrollments with a wrong token from 127.0.0.1, 25 at a time.
    let flooder = DeviceClient::anonymous(
        &format!("127.0.0.1:{}", server.enroll_port),
        "localhost",
        &root,
    )
    .unwrap();
    let body = serde_json::to_vec(&serde_json::json!({
        "token": format!("kt1_{}_{}", "0".repeat(16), "0".repeat(64)),
        "csr": "-----BEGIN CERTIFICATE REQUEST-----\nAA==\n-----END CERTIFICATE REQUEST-----\n",
        "identity_key": "00".repeat(32), "platform": "linux", "device_name": "flood",
    }))
    .unwrap();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut retry_after_missing = 0;
    let mut good_enrolled = None;
    for wave in 0..20 {
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..25 {
            let (client, body) = (flooder.clone(), body.clone());
            requests.spawn(async move {
                client
                    .request("POST", "/v1/enroll", Some("application/json"), body)
                    .await
            });
        }
        if wave == 10 {
            // Mid-flood, a real device enrolls from another address.
            let t = Instant::now();
            let good = enroll_from(&server, &root, "anna@example.org", Some(GOOD)).await;
            good_enrolled = Some(t.elapsed());
            answers(&good.client, "/v1/me", Duration::from_secs(5)).await;
        }
        while let Some(done) = requests.join_next().await {
            let answer = done
                .unwrap()
                .expect("an enrollment request was not answered");
            *statuses.entry(answer.status).or_default() += 1;
            if answer.status == 429 && !answer.headers.contains_key("retry-after") {
                retry_after_missing += 1;
            }
        }
    }
    let rss_enroll = rss_kib(&server);
    let limited = statuses.get(&429).copied().unwrap_or(0);
    assert!(
        statuses.keys().all(|s| (400..500).contains(s)),
        "answers other than clean refusals: {statuses:?}"
    );
    assert!(
        limited >= 400,
        "only {limited} of 500 were rate limited: {statuses:?}"
    );
    assert_eq!(retry_after_missing, 0);

    // 300 sign-ins with a wrong password from 127.0.0.1, 20 at a time.
    let admin_flooder = DeviceClient::anonymous(
        &format!("127.0.0.1:{}", server.admin_port),
        "localhost",
        &root,
    )
    .unwrap();
    let wrong = serde_json::to_vec(
        &serde_json::json!({ "login": "nobody", "password": "not the password at all" }),
    )
    .unwrap();
    let mut sign_ins = std::collections::BTreeMap::<u16, usize>::new();
    for _ in 0..15 {
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let (client, body) = (admin_flooder.clone(), wrong.clone());
            requests.spawn(async move {
                client
                    .request("POST", "/v1/session", Some("application/json"), body)
                    .await
            });
        }
        while let Some(done) = requests.join_next().await {
            let answer = done.unwrap().expect("a sign-in was not answered");
            *sign_ins.entry(answer.status).or_default() += 1;
        }
    }
    assert!(
        sign_ins.keys().all(|s| *s == 401 || *s == 429),
        "sign-in answers: {sign_ins:?}"
    );
    assert!(
        sign_ins.get(&429).copied().unwrap_or(0) >= 250,
        "sign-ins not rate limited: {sign_ins:?}"
    );
    let rss_sign_in = rss_kib(&server);
    // The owner signs in from another address meanwhile.
    let t = Instant::now();
    let owner = good_client(server.admin_port, &root)
        .request(
            "POST",
            "/v1/session",
            Some("application/json"),
            serde_json::to_vec(&serde_json::json!({
                "login": "owner", "password": crate::admin::OWNER_PASSWORD
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(owner.status, 200, "{:?}", owner.json());
    let owner_sign_in = t.elapsed();

    // The flooding address recovers: after the refill, an enrollment from
    // it is judged on its merits again (a wrong token: 401, not 429).
    let mut recovered = None;
    for _ in 0..40 {
        let again = flooder
            .request("POST", "/v1/enroll", Some("application/json"), body.clone())
            .await
            .unwrap();
        if again.status != 429 {
            recovered = Some(again.status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        matches!(recovered, Some(s) if (400..500).contains(&s)),
        "the flooding address stayed refused: {recovered:?}"
    );
    let rss_after = rss_kib(&server);
    println!(
        "enrollment flood: {statuses:?}, a good device enrolled in {good_enrolled:?} meanwhile; \
         sign-in flood: {sign_ins:?}, the owner signed in in {owner_sign_in:?}; \
         RSS {rss_before} KiB before, {rss_enroll} KiB after the enrollments, {rss_sign_in} KiB after the sign-ins, {rss_after} KiB at the end; {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
    assert!(
        rss_after < rss_before + 150 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_holds_at_most_four_websockets() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start_on(&data, free_port(), free_port(), &[]);
    let root = root_der(&data);
    let anna = enroll(&server, &root, "anna@example.org").await;
    let open = || async {
        let tls = anna.client.connect().await.unwrap();
        tokio_tungstenite::client_async("wss://localhost/v1/ws", tls).await
    };
    let mut sockets = Vec::new();
    for _ in 0..4 {
        sockets.push(open().await.expect("a websocket within the limit").0);
    }
    match open().await {
        Err(tokio_tungstenite::tungstenite::Error::Http(answer)) => {
            assert_eq!(answer.status().as_u16(), 429);
            assert!(answer.headers().contains_key("retry-after"));
        }
        other => panic!("a fifth websocket was not refused: {:?}", other.map(|_| ())),
    }
    // Other requests of the device are unaffected.
    answers(&anna.client, "/v1/me", Duration::from_secs(5)).await;
    // Closing one frees its place (the server notices the close).
    let mut first = sockets.remove(0);
    first.close(None).await.unwrap();
    drop(first);
    let mut reopened = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok((ws, _)) = open().await {
            sockets.push(ws);
            reopened = true;
            break;
        }
    }
    assert!(reopened, "a closed websocket's place was not given back");
}
