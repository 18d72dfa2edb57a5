//! Push hints against local stand-ins for APNs and FCM that check what
//! Apple and Google check: the provider token's ES256 signature and
//! claims, the topic and push type, the bearer token, and a payload that
//! carries nothing but the wake-up.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Version};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kontor_relay::bus::LocalBus;
use kontor_relay::push::{ApnsConfig, FcmConfig, PushConfig, PushOutcome, Pusher};
use kontor_relay::service::RelayConfig;
use kontor_relay::store::PushTarget;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use zeroize::Zeroizing;

use crate::service::{Org, Sqlite, envelope};

#[derive(Debug, Clone)]
struct Seen {
    path: String,
    version: Version,
    headers: HeaderMap,
    body: String,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// A stand-in push service on 127.0.0.1 speaking HTTP/2 (prior knowledge).
async fn stand_in() -> (String, Log) {
    async fn record(
        State(log): State<Log>,
        Path(rest): Path<String>,
        request: axum::extract::Request,
    ) -> StatusCode {
        let version = request.version();
        let headers = request.headers().clone();
        let body = axum::body::to_bytes(request.into_body(), 64 * 1024)
            .await
            .unwrap_or_default();
        log.lock().unwrap().push(Seen {
            path: rest,
            version,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        StatusCode::OK
    }
    let log: Log = Arc::default();
    let app = axum::Router::new()
        .route("/{*rest}", post(record))
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, log)
}

fn apns_key() -> (Vec<u8>, Vec<u8>) {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &ring::rand::SystemRandom::new(),
    )
    .unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8.as_ref(),
        &ring::rand::SystemRandom::new(),
    )
    .unwrap();
    (pkcs8.as_ref().to_vec(), pair.public_key().as_ref().to_vec())
}

fn config(apns_url: &str, fcm_url: &str, key: &[u8]) -> PushConfig {
    PushConfig {
        apns: Some(ApnsConfig {
            base_url: apns_url.to_owned(),
            team_id: "TEAM123456".into(),
            key_id: "KEY7654321".into(),
            key_pkcs8_der: Zeroizing::new(key.to_vec()),
            topic: "de.kontor.messenger".into(),
        }),
        fcm: Some(FcmConfig {
            base_url: fcm_url.to_owned(),
            project_id: "kontor-test".into(),
            access_token: Zeroizing::new("ya29.test-token".into()),
        }),
        coalesce: Duration::from_secs(60),
        roots: Vec::new(),
        danger_plaintext_http2: true,
    }
}

/// What APNs checks of a request.
fn check_apns(seen: &Seen, token: &str, public_key: &[u8]) {
    assert_eq!(seen.version, Version::HTTP_2);
    assert_eq!(seen.path, format!("3/device/{token}"));
    assert_eq!(seen.headers["apns-topic"], "de.kontor.messenger");
    assert_eq!(seen.headers["apns-push-type"], "background");
    assert_eq!(seen.headers["apns-priority"], "5");
    assert!(seen.headers.contains_key("apns-expiration"));
    let body: serde_json::Value = serde_json::from_str(&seen.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({ "aps": { "content-available": 1 } }),
        "nothing but the wake-up"
    );
    let jwt = seen.headers["authorization"]
        .to_str()
        .unwrap()
        .strip_prefix("bearer ")
        .unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(
        header,
        serde_json::json!({ "alg": "ES256", "kid": "KEY7654321" })
    );
    assert_eq!(claims["iss"], "TEAM123456");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(claims["iat"].as_u64().unwrap().abs_diff(now) < 3600);
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    assert_eq!(signature.len(), 64, "ES256 is r || s");
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public_key)
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
        .expect("the provider token verifies with the team's key");
}

#[tokio::test]
async fn apns_and_fcm_get_content_free_hints_with_valid_credentials() {
    let (apns_url, apns_log) = stand_in().await;
    let (fcm_url, fcm_log) = stand_in().await;
    let (key, public) = apns_key();
    let pusher = Pusher::new(config(&apns_url, &fcm_url, &key)).unwrap();
    let iphone = kontor_provisioning::DeviceId::from_bytes([1; 16]);
    let android = kontor_provisioning::DeviceId::from_bytes([2; 16]);
    let apns_token = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
    assert_eq!(
        pusher
            .hint(iphone, &PushTarget::Apns(apns_token.into()))
            .await
            .unwrap(),
        PushOutcome::Sent
    );
    assert_eq!(
        pusher
            .hint(android, &PushTarget::Fcm("fcm-registration-token".into()))
            .await
            .unwrap(),
        PushOutcome::Sent
    );
    let apns = apns_log.lock().unwrap().clone();
    assert_eq!(apns.len(), 1);
    check_apns(&apns[0], apns_token, &public);

    let fcm = fcm_log.lock().unwrap().clone();
    assert_eq!(fcm.len(), 1);
    assert_eq!(fcm[0].path, "v1/projects/kontor-test/messages:send");
    assert_eq!(fcm[0].headers["authorization"], "Bearer ya29.test-token");
    let body: serde_json::Value = serde_json::from_str(&fcm[0].body).unwrap();
    assert_eq!(body["message"]["token"], "fcm-registration-token");
    assert_eq!(
        body["message"]["data"],
        serde_json::json!({ "k": "1" }),
        "no content, sender or conversation"
    );
    assert!(body["message"].get("notification").is_none());

    // A bad APNs token never reaches Apple.
    let other = kontor_provisioning::DeviceId::from_bytes([3; 16]);
    assert!(
        pusher
            .hint(other, &PushTarget::Apns("not hex!".into()))
            .await
            .is_err()
    );
    assert_eq!(apns_log.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_burst_of_messages_gives_one_push_and_connected_devices_none() {
    let (apns_url, apns_log) = stand_in().await;
    let (fcm_url, _) = stand_in().await;
    let (key, public) = apns_key();
    let pusher = Arc::new(Pusher::new(config(&apns_url, &fcm_url, &key)).unwrap());
    let org = Org::new(&Sqlite, RelayConfig::default()).await;
    let anna = org.enroll("anna@example.org").await;
    let ben = org.enroll("ben@example.org").await;
    let carl = org.enroll("carl@example.org").await;
    let bus = LocalBus::default();
    let relay = org.relay_with_bus(bus.clone()).await.with_pusher(pusher);
    let token = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    relay
        .set_push(&ben.ctx, Some(PushTarget::Apns(token.into())))
        .await
        .unwrap();
    relay
        .set_push(&carl.ctx, Some(PushTarget::Apns(token.replace('0', "f"))))
        .await
        .unwrap();
    // Carl is connected here (a live subscription): he needs no push.
    let _carl_live = kontor_relay::bus::Bus::subscribe(&bus, carl.ctx.device_id)
        .await
        .unwrap();
    for i in 0..10 {
        relay
            .post_message(
                &anna.ctx,
                &envelope(&anna, &[&ben, &carl], i, None, &[], b"x"),
            )
            .await
            .unwrap();
    }
    // Pushes are sent in the background; wait for them (bounded).
    for _ in 0..100 {
        if !apns_log.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = apns_log.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        1,
        "10 messages in a burst for one offline device give one push"
    );
    check_apns(&seen[0], token, &public);
}
