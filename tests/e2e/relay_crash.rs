//! Kill -9 of `kontor serve` while a device sends: every message that got
//! a 2xx is delivered after the restart, and none twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use kontor_crypto::{IdentitySecret, MessageId, Recipient, Sender};
use kontor_relay::client::DeviceClient;
use kontor_relay::wire::{self, PostedEnvelope};

use crate::serve::{Server, create_token, root_der, start_on};

/// A device enrolled through the API directly (no agent): a test's own client.
pub struct Enrolled {
    pub device_id: [u8; 16],
    pub key: IdentitySecret,
    pub client: DeviceClient,
}

pub async fn enroll(server: &Server, root: &[u8], user: &str) -> Enrolled {
    let enroll = DeviceClient::anonymous(
        &format!("127.0.0.1:{}", server.enroll_port),
        "localhost",
        root,
    )
    .unwrap();
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
    let client = DeviceClient::new(
        &format!("127.0.0.1:{}", server.device_port),
        "localhost",
        root,
        answer["chain"].as_str().unwrap(),
        &tls_key.serialize_der(),
    )
    .unwrap();
    Enrolled {
        device_id,
        key,
        client,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_survives_kill_9_and_none_arrives_twice_on_sqlite() {
    kill_9_while_sending(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_survives_kill_9_and_none_arrives_twice_on_postgresql() {
    let pg = std::env::var("KONTOR_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let nats = std::env::var("KONTOR_TEST_NATS_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let (Some(pg), Some(nats)) = (pg, nats) else {
        println!("skipped: KONTOR_TEST_POSTGRES_URL or KONTOR_TEST_NATS_URL not set");
        return;
    };
    let deployment = format!("e2e_{}", hex::encode(rand::random::<[u8; 6]>()));
    kill_9_while_sending(&[
        "--postgres".into(),
        pg,
        "--nats".into(),
        nats,
        "--deployment".into(),
        deployment,
    ])
    .await;
}

async fn kill_9_while_sending(extra: &[String]) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (device_port, enroll_port) = (crate::serve::free_port(), crate::serve::free_port());
    let mut server = start_on(&data, device_port, enroll_port, extra);
    let root = root_der(&data);
    let anna = Arc::new(enroll(&server, &root, "anna@example.org").await);
    let ben = enroll(&server, &root, "ben@example.org").await;
    let ben_recipient = Recipient {
        device_id: kontor_crypto::DeviceId(ben.device_id),
        identity: ben.key.public(),
    };

    // Anna sends as fast as she can; each 2xx is recorded.
    let acked = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (anna, acked) = (anna.clone(), acked.clone());
        tokio::spawn(async move {
            let mut confirmed = Vec::new();
            for i in 0u32..150 {
                let mut id = [0u8; 16];
                id[..4].copy_from_slice(&i.to_be_bytes());
                let sealed = kontor_crypto::seal(
                    &mut kontor_crypto::os_rng(),
                    MessageId(id),
                    Sender {
                        device_id: kontor_crypto::DeviceId(anna.device_id),
                        identity: &anna.key,
                    },
                    &[ben_recipient],
                    format!("nachricht {i}").as_bytes(),
                )
                .unwrap();
                let deliveries: Vec<&[u8]> = sealed
                    .deliveries()
                    .iter()
                    .map(|d| &d.as_bytes()[..])
                    .collect();
                let envelope = PostedEnvelope::encode(None, &[], &deliveries, sealed.body());
                match anna
                    .client
                    .request(
                        "POST",
                        "/v1/messages",
                        Some(wire::ENVELOPE_CONTENT_TYPE),
                        envelope,
                    )
                    .await
                {
                    Ok(answer) if answer.status == 201 => {
                        confirmed.push(i);
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    // The server is gone: stop sending.
                    Err(_) => break,
                    Ok(answer) => panic!("unexpected answer {} {:?}", answer.status, answer.json()),
                }
            }
            confirmed
        })
    };
    // Kill -9 in the middle of the stream (bounded wait).
    for _ in 0..500 {
        if acked.load(Ordering::SeqCst) >= 40 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    server.child.kill().unwrap();
    let _ = server.child.wait();
    let confirmed = sender.await.unwrap();
    assert!(
        confirmed.len() >= 40 && confirmed.len() < 150,
        "killed after {} acknowledged messages",
        confirmed.len()
    );
    drop(server);

    let _again = start_on(&data, device_port, enroll_port, extra);
    let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
    for _ in 0..20 {
        let batch = ben
            .client
            .request("GET", "/v1/messages", None, Vec::new())
            .await
            .unwrap();
        assert_eq!(batch.status, 200);
        let frames = wire::decode_batch(&batch.body).unwrap();
        if frames.is_empty() {
            break;
        }
        let mut seqs = Vec::new();
        for frame in frames {
            let opened =
                kontor_crypto::open(&frame.sealed, &ben.key, None, &anna.key.public()).unwrap();
            let text = String::from_utf8(opened.plaintext.to_vec()).unwrap();
            let n: u32 = text.strip_prefix("nachricht ").unwrap().parse().unwrap();
            *seen.entry(n).or_default() += 1;
            seqs.push(frame.seq);
        }
        let ack = ben
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
    for i in &confirmed {
        assert_eq!(
            seen.get(i),
            Some(&1),
            "acknowledged message {i} delivered {:?} times",
            seen.get(i)
        );
    }
    assert!(
        seen.values().all(|&n| n == 1),
        "a message arrived twice: {seen:?}"
    );
}
