//! Every path and method relay/openapi.json documents is served, and
//! answers a request without a client certificate with the documented
//! error shape.

use tower::ServiceExt;

use crate::service::{Org, Sqlite};

#[tokio::test]
async fn every_documented_operation_is_served() {
    let org = Org::new(&Sqlite, kontor_relay::service::RelayConfig::default()).await;
    let app = kontor_relay::http::router(org.relay.clone());
    let doc: serde_json::Value = serde_json::from_str(kontor_relay::http::OPENAPI).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{id}", "00112233445566778899aabbccddeeff")
            .replace("{user}", "anna@example.org");
        for method in item.as_object().unwrap().keys() {
            operations += 1;
            let request = axum::http::Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&concrete)
                .body(axum::body::Body::empty())
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            assert!(status != 404 && status != 405, "{method} {path}: {status}");
            if path == "/v1/openapi.json" {
                assert_eq!(status, 200);
            } else if path != "/v1/ws" {
                // No certificate, no access: the documented error answer.
                assert_eq!(status, 403, "{method} {path}");
                let body = axum::body::to_bytes(response.into_body(), 4096)
                    .await
                    .unwrap();
                let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(json["error"]["code"], "device_refused");
            }
        }
    }
    assert!(operations >= 18, "only {operations} operations documented");
}
