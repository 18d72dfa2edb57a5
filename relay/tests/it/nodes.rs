//! Several relay nodes on one PostgreSQL and one NATS: a message stored
//! through node A is announced to the subscriber on node B.

use std::time::Duration;

use kontor_relay::bus::{Bus, HintKind, NatsBus};
use kontor_relay::service::RelayConfig;

use crate::service::{Org, Postgres, envelope, postgres_url};

fn nats_url() -> Option<String> {
    let url = std::env::var("KONTOR_TEST_NATS_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() {
        println!("skipped: KONTOR_TEST_NATS_URL not set");
    }
    url
}

fn namespace() -> String {
    format!("test-{}", hex::encode(rand::random::<[u8; 6]>()))
}

#[tokio::test]
async fn a_hint_published_on_one_node_reaches_a_subscriber_on_another() {
    let Some(url) = nats_url() else { return };
    let ns = namespace();
    let node_a = NatsBus::connect(&url, &ns).await.unwrap();
    let node_b = NatsBus::connect(&url, &ns).await.unwrap();
    let other_ns = NatsBus::connect(&url, &namespace()).await.unwrap();
    let device = kontor_provisioning::DeviceId::from_bytes([4; 16]);
    let mut on_b = node_b.subscribe(device).await.unwrap();
    let mut elsewhere = other_ns.subscribe(device).await.unwrap();
    // Subscriptions are set up asynchronously on the server: retry a few
    // publishes until one arrives (bounded).
    let mut got = None;
    for _ in 0..20 {
        node_a
            .publish(kontor_relay::bus::Hint {
                device,
                kind: HintKind::Command,
            })
            .await
            .unwrap();
        if let Ok(hint) = tokio::time::timeout(Duration::from_millis(250), on_b.recv()).await {
            got = hint;
            break;
        }
    }
    let hint = got.expect("node B heard node A");
    assert_eq!((hint.device, hint.kind), (device, HintKind::Command));
    // Another namespace hears nothing.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), elsewhere.recv())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_revocation_announced_on_one_node_is_heard_by_every_node_of_its_namespace() {
    let Some(url) = nats_url() else { return };
    let ns = namespace();
    let node_a = NatsBus::connect(&url, &ns).await.unwrap();
    let node_b = NatsBus::connect(&url, &ns).await.unwrap();
    let other_ns = NatsBus::connect(&url, &namespace()).await.unwrap();
    let mut on_b = node_b.revocations();
    let elsewhere = other_ns.revocations();
    // As with hints: the subscription is set up asynchronously, so
    // announce until one arrives (bounded).
    let mut heard = false;
    for _ in 0..20 {
        node_a.announce_revocation().await.unwrap();
        if let Ok(changed) = tokio::time::timeout(Duration::from_millis(250), on_b.changed()).await
        {
            changed.unwrap();
            heard = true;
            break;
        }
    }
    assert!(heard, "node B heard node A's revocation");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !elsewhere.has_changed().unwrap(),
        "another namespace heard it"
    );

    // A single node's bus tells its own node.
    let local = kontor_relay::bus::LocalBus::default();
    let mut mine = local.revocations();
    local.announce_revocation().await.unwrap();
    assert!(mine.has_changed().unwrap());
    mine.mark_unchanged();
    assert!(!mine.has_changed().unwrap());
}

#[tokio::test]
async fn two_nodes_on_one_database_deliver_a_message_posted_on_the_other() {
    let (Some(pg), Some(nats)) = (postgres_url(), nats_url()) else {
        return;
    };
    let ns = namespace();
    // One organisation, two relay nodes: each its own bus and database
    // connections, one schema.
    let postgres = Postgres::new(pg.clone());
    let org = Org::new(&postgres, RelayConfig::default()).await;
    let anna = org.enroll("anna@example.org").await;
    let ben = org.enroll("ben@example.org").await;
    let bus_a = NatsBus::connect(&nats, &ns).await.unwrap();
    let bus_b = NatsBus::connect(&nats, &ns).await.unwrap();
    let node_a = org.relay_with_bus(bus_a).await;
    // Node B has its own connections to the same schema.
    let store_b =
        kontor_relay::store::postgres::PostgresStore::connect(&pg, org.relay.store().schema())
            .await
            .unwrap();
    let node_b = kontor_relay::service::Relay::new(
        store_b,
        org.service.store().clone(),
        org.service.deny_list(),
        bus_b,
        RelayConfig::default(),
    );
    let mut ben_on_b = node_b.bus().subscribe(ben.ctx.device_id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    node_a
        .post_message(
            &anna.ctx,
            &envelope(&anna, &[&ben], 1, None, &[], b"ueber Knoten"),
        )
        .await
        .unwrap();
    let hint = tokio::time::timeout(Duration::from_secs(5), ben_on_b.recv())
        .await
        .expect("hint in time")
        .unwrap();
    assert_eq!(
        (hint.device, hint.kind),
        (ben.ctx.device_id, HintKind::Message)
    );
    // Node B reads the message from the shared database.
    let waiting = node_b.fetch(&ben.ctx, &[], 10).await.unwrap();
    assert_eq!(waiting.len(), 1);
    let frame = kontor_relay::wire::decode_frame(&kontor_relay::wire::encode_frame(
        0,
        0,
        &waiting[0].delivery,
        &waiting[0].body,
    ))
    .unwrap();
    let opened = kontor_crypto::open(&frame.sealed, &ben.key, None, &anna.key.public()).unwrap();
    assert_eq!(&opened.plaintext[..], b"ueber Knoten");
    postgres.finish().await;
}
