//! Two `kontor serve` nodes on one PostgreSQL and NATS, as a large
//! organisation runs them: a certificate revoked through one node is
//! refused by the other at once, not only after that node restarts.

use std::time::{Duration, Instant};

use kontor_relay::client::DeviceClient;

use crate::relay_crash::{Enrolled, enroll, scale_out_args};
use crate::serve::{Server, free_port, root_der, start_on};

/// `GET /v1/me` of `device` through `node`: the HTTP status, or `None`
/// when the node refused the connection (the TLS handshake).
async fn me_on(node: &Server, root: &[u8], device: &Enrolled) -> Option<u16> {
    let client = DeviceClient::new(
        &format!("127.0.0.1:{}", node.device_port),
        "localhost",
        root,
        &device.chain,
        &device.tls_key,
    )
    .unwrap();
    client
        .request("GET", "/v1/me", None, Vec::new())
        .await
        .ok()
        .map(|a| a.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_revoked_through_one_node_is_refused_by_the_other_at_once() {
    let Some(scale_out) = scale_out_args() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let node_a = start_on(&data_a, free_port(), free_port(), &scale_out);
    // The second node shares the organisation's CA and sealing key.
    std::fs::create_dir_all(data_b.join("pki")).unwrap();
    for entry in std::fs::read_dir(data_a.join("pki")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), data_b.join("pki").join(entry.file_name())).unwrap();
    }
    std::fs::copy(data_a.join("kek.hex"), data_b.join("kek.hex")).unwrap();
    let node_b = start_on(&data_b, free_port(), free_port(), &scale_out);
    let root = root_der(&data_a);
    assert_eq!(root, root_der(&data_b), "both nodes serve one CA");

    let lost = enroll(&node_a, &root, "anna@example.org").await;
    let kept = enroll(&node_a, &root, "ben@example.org").await;
    assert_eq!(me_on(&node_b, &root, &lost).await, Some(200));
    assert_eq!(me_on(&node_b, &root, &kept).await, Some(200));

    // Revoked through node A's enrollment API (the admin's "device lost").
    let admin = DeviceClient::anonymous(
        &format!("127.0.0.1:{}", node_a.enroll_port),
        "localhost",
        &root,
    )
    .unwrap();
    let revoked = admin
        .request_with(
            "POST",
            "/v1/admin/revocations",
            &[
                ("authorization", "Bearer test-admin"),
                ("content-type", "application/json"),
            ],
            serde_json::to_vec(&serde_json::json!({
                "device_id": hex::encode(lost.device_id), "reason": "lost",
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    assert!(
        revoked.status < 300,
        "{} {:?}",
        revoked.status,
        revoked.json()
    );
    assert_ne!(me_on(&node_a, &root, &lost).await, Some(200));

    // Node B learns of it from the announcement on the bus, well before
    // its own 30-second re-read of the revocations would.
    let since = Instant::now();
    while me_on(&node_b, &root, &lost).await == Some(200) {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "node B still serves a certificate revoked through node A"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(me_on(&node_b, &root, &kept).await, Some(200));
    let log = std::fs::read_to_string(data_b.with_extension("log")).unwrap();
    assert!(
        log.contains("revocations made on other nodes now refused here"),
        "node B's log does not tell of the revocation"
    );
}
