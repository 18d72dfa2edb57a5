//! Kill -9 of `kontor serve` while two devices send: every message that
//! got a 2xx is delivered after the restart, and none twice, also those
//! the senders retried across the crash.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kontor_crypto::IdentitySecret;
use kontor_relay::client::DeviceClient;
use kontor_relay::wire;

use crate::faults::{Load, assert_exactly_once, recipient};
use crate::serve::{Server, create_token, root_der, start_on};

/// A device enrolled through the API directly (no agent): a test's own client.
pub struct Enrolled {
    pub device_id: [u8; 16],
    pub key: IdentitySecret,
    pub client: DeviceClient,
    /// The device's certificate chain (PEM) and TLS key (PKCS#8 DER), for
    /// a second client, to another node say.
    pub chain: String,
    pub tls_key: Vec<u8>,
}

pub async fn enroll(server: &Server, root: &[u8], user: &str) -> Enrolled {
    enroll_from(server, root, user, None).await
}

/// As [`enroll`], connecting from the local address `local` (127.0.0.2,
/// say) where given, for enrollment and the device client.
pub async fn enroll_from(
    server: &Server,
    root: &[u8],
    user: &str,
    local: Option<std::net::IpAddr>,
) -> Enrolled {
    let bind = |client: DeviceClient| match local {
        Some(ip) => client.from_local_address(ip),
        None => client,
    };
    let enroll = bind(
        DeviceClient::anonymous(
            &format!("127.0.0.1:{}", server.enroll_port),
            "localhost",
            root,
        )
        .unwrap(),
    );
    let token = create_token(server, root, user).await;
    let tls_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&tls_key)
        .unwrap()
        .pem()
        .unwrap();
    let key = IdentitySecret::generate(&mut kontor_crypto::os_rng());
    let body = serde_json::json!({
        "token": token, "csr": csr, "identity_key": key.public().to_hex(),
        "platform": "linux", "device_name": "e2e",
    });
    let enrolled = enroll
        .request(
            "POST",
            "/v1/enroll",
            Some("application/json"),
            serde_json::to_vec(&body).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(enrolled.status, 200, "{:?}", enrolled.json());
    let answer = enrolled.json();
    let mut device_id = [0u8; 16];
    hex::decode_to_slice(answer["device_id"].as_str().unwrap(), &mut device_id).unwrap();
    let client = bind(
        DeviceClient::new(
            &format!("127.0.0.1:{}", server.device_port),
            "localhost",
            root,
            answer["chain"].as_str().unwrap(),
            &tls_key.serialize_der(),
        )
        .unwrap(),
    );
    Enrolled {
        device_id,
        key,
        client,
        chain: answer["chain"].as_str().unwrap().to_owned(),
        tls_key: tls_key.serialize_der(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_survives_kill_9_and_none_arrives_twice_on_sqlite() {
    kill_9_while_sending(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_survives_kill_9_and_none_arrives_twice_on_postgresql() {
    let Some(scale_out) = scale_out_args() else {
        return;
    };
    kill_9_while_sending(&scale_out).await;
}

/// `kontor serve`'s arguments for PostgreSQL and NATS (the test services)
/// under a deployment name of its own; `None`, saying so, when either
/// service is not configured. Dropping it drops the deployment's schemas,
/// so the shared test database does not fill up with them: declare it
/// before the servers that use it.
pub fn scale_out_args() -> Option<ScaleOut> {
    let pg = std::env::var("KONTOR_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let nats = std::env::var("KONTOR_TEST_NATS_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let (Some(pg), Some(nats)) = (pg, nats) else {
        println!("skipped: KONTOR_TEST_POSTGRES_URL or KONTOR_TEST_NATS_URL not set");
        return None;
    };
    let deployment = format!("e2e_{}", hex::encode(rand::random::<[u8; 6]>()));
    Some(ScaleOut {
        args: [
            "--postgres".into(),
            pg,
            "--nats".into(),
            nats,
            "--deployment".into(),
            deployment,
        ],
    })
}

/// See [`scale_out_args`]: the arguments, as a slice of them.
pub struct ScaleOut {
    args: [String; 6],
}

impl std::ops::Deref for ScaleOut {
    type Target = [String];

    fn deref(&self) -> &[String] {
        &self.args
    }
}

impl Drop for ScaleOut {
    fn drop(&mut self) {
        let (url, deployment) = (self.args[1].clone(), self.args[5].clone());
        // A runtime of its own on a thread of its own: drop may run inside
        // the test's runtime, which must not block.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!(
                        "DROP SCHEMA IF EXISTS {deployment}_provisioning CASCADE; \
                         DROP SCHEMA IF EXISTS {deployment}_relay CASCADE;"
                    ))
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => println!("could not drop the test deployment's schemas: {e}"),
            Err(_) => println!("dropping the test deployment's schemas panicked"),
        }
    }
}

async fn kill_9_while_sending(extra: &[String]) {
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (device_port, enroll_port) = (crate::serve::free_port(), crate::serve::free_port());
    let mut server = start_on(&data, device_port, enroll_port, extra);
    let root = root_der(&data);
    let anna = Arc::new(enroll(&server, &root, "anna@example.org").await);
    let dora = Arc::new(enroll(&server, &root, "dora@example.org").await);
    let ben = enroll(&server, &root, "ben@example.org").await;

    // Two devices send to ben at once; each retries a message (the same
    // sealed bytes, as an agent does) until it gets a 2xx, through the
    // crash and the restart.
    let from_anna = Load::start(anna.clone(), recipient(&ben), 0, 2_000);
    let from_dora = Load::start(dora.clone(), recipient(&ben), 0, 2_000);
    assert!(
        from_anna.wait_acked(30, Duration::from_secs(20)).await
            && from_dora.wait_acked(30, Duration::from_secs(20)).await,
        "the load did not start"
    );
    server.child.kill().unwrap();
    let _ = server.child.wait();
    let at_kill = (from_anna.acked(), from_dora.acked());
    drop(server);

    let _again = start_on(&data, device_port, enroll_port, extra);
    // Both senders carry on by themselves after the restart.
    assert!(
        from_anna
            .wait_acked(at_kill.0 + 20, Duration::from_secs(30))
            .await
            && from_dora
                .wait_acked(at_kill.1 + 20, Duration::from_secs(30))
                .await,
        "sending did not resume after the restart"
    );
    let anna_tally = from_anna.finish().await;
    let dora_tally = from_dora.finish().await;
    // Ben tells the two senders apart by the key that opens each message.
    let (from_a, from_d) = drain_two(&ben, &anna.key.public(), &dora.key.public()).await;
    println!(
        "kill -9: {} + {} acknowledged ({} + {} before the kill), answers {:?} / {:?}, {:.1} s in all",
        anna_tally.acked.len(),
        dora_tally.acked.len(),
        at_kill.0,
        at_kill.1,
        anna_tally.answers,
        dora_tally.answers,
        started.elapsed().as_secs_f64()
    );
    for tally in [&anna_tally, &dora_tally] {
        assert!(
            tally
                .answers
                .keys()
                .all(|a| a == "200" || a == "201" || a == "transport"),
            "unexpected answers: {:?}",
            tally.answers
        );
    }
    assert_exactly_once(&anna_tally, &from_a);
    assert_exactly_once(&dora_tally, &from_d);
}

/// Drains `device`'s queue of messages from two senders, counting each
/// sender's message numbers apart.
async fn drain_two(
    device: &Enrolled,
    a: &kontor_crypto::IdentityPublic,
    b: &kontor_crypto::IdentityPublic,
) -> (BTreeMap<u32, usize>, BTreeMap<u32, usize>) {
    let (mut from_a, mut from_b) = (BTreeMap::new(), BTreeMap::new());
    for _ in 0..200 {
        let batch = device
            .client
            .request("GET", "/v1/messages", None, Vec::new())
            .await
            .unwrap();
        assert_eq!(batch.status, 200);
        let frames = wire::decode_batch(&batch.body).unwrap();
        if frames.is_empty() {
            return (from_a, from_b);
        }
        let mut seqs = Vec::new();
        for frame in frames {
            let (opened, into) = match kontor_crypto::open(&frame.sealed, &device.key, None, a) {
                Ok(opened) => (opened, &mut from_a),
                Err(_) => (
                    kontor_crypto::open(&frame.sealed, &device.key, None, b).unwrap(),
                    &mut from_b,
                ),
            };
            let text = String::from_utf8(opened.plaintext.to_vec()).unwrap();
            let n: u32 = text.strip_prefix("nachricht ").unwrap().parse().unwrap();
            *into.entry(n).or_default() += 1;
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
        assert_eq!(ack.status, 200);
    }
    panic!("the queue did not drain");
}
