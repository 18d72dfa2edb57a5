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

/// `request` as the enrolled `device` sends it: the identity `serve_tls`
/// takes from the verified client certificate.
fn as_device(
    mut request: axum::http::Request<axum::body::Body>,
    device: &crate::service::Device,
) -> axum::http::Request<axum::body::Body> {
    request
        .extensions_mut()
        .insert(kontor_relay::tls::PeerIdentity {
            device_id: device.ctx.device_id,
            serial: device.ctx.serial,
        });
    request
}

async fn json_of(response: axum::response::Response) -> serde_json::Value {
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

/// What axum's extractors refuse (a query that is no number, a GET of the
/// WebSocket path that is no upgrade, a body over the limit) is answered
/// in the documented JSON error shape, not axum's plain text, and with a
/// documented status.
#[tokio::test]
async fn refused_input_is_answered_in_the_documented_error_shape() {
    let org = Org::new(&Sqlite, kontor_relay::service::RelayConfig::default()).await;
    let device = org.enroll("anna@example.org").await;
    let app = kontor_relay::http::router(org.relay.clone());
    let cases = [
        (
            "GET",
            "/v1/messages?limit=abc",
            Vec::new(),
            400,
            "bad_request",
        ),
        (
            "GET",
            "/v1/messages?limit=-1",
            Vec::new(),
            400,
            "bad_request",
        ),
        ("GET", "/v1/ws", Vec::new(), 400, "bad_request"),
        (
            "POST",
            "/v1/messages/ack",
            vec![b' '; 100 * 1024],
            413,
            "too_large",
        ),
    ];
    for (method, uri, body, status, code) in cases {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body))
            .unwrap();
        let response = app
            .clone()
            .oneshot(as_device(request, &device))
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{method} {uri}");
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{method} {uri}"
        );
        assert!(response.headers().contains_key("strict-transport-security"));
        let answer = json_of(response).await;
        assert_eq!(answer["error"]["code"], code, "{method} {uri}: {answer}");
        assert!(answer["error"]["message"].is_string());
    }
    // Without a client certificate the WebSocket path is refused like
    // every other one.
    let request = axum::http::Request::get("/v1/ws")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(json_of(response).await["error"]["code"], "device_refused");
}

/// The document's `Command.kind` named only `policy` and `wipe`, but the
/// relay also queues `archive` and `broadcast` commands, which
/// `GET /v1/commands` then answered against the schema.
#[tokio::test]
async fn every_command_kind_the_relay_queues_is_documented() {
    let org = Org::new(&Sqlite, kontor_relay::service::RelayConfig::default()).await;
    let device = org.enroll("anna@example.org").await;
    let doc: serde_json::Value = serde_json::from_str(kontor_relay::http::OPENAPI).unwrap();
    let documented: Vec<&str> =
        doc["components"]["schemas"]["Command"]["properties"]["kind"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
    // Every kind the relay takes, and nothing else.
    for kind in ["policy", "wipe", "archive", "broadcast"] {
        org.relay
            .queue_command(device.ctx.device_id, kind, &serde_json::json!({}))
            .await
            .unwrap();
    }
    assert!(
        org.relay
            .queue_command(device.ctx.device_id, "reboot", &serde_json::json!({}))
            .await
            .is_err()
    );
    let app = kontor_relay::http::router(org.relay.clone());
    let request = axum::http::Request::get("/v1/commands")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app.oneshot(as_device(request, &device)).await.unwrap();
    assert_eq!(response.status(), 200);
    let answer = json_of(response).await;
    let kinds: Vec<&str> = answer["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 4);
    for kind in kinds {
        assert!(documented.contains(&kind), "{kind} is not documented");
    }
}
