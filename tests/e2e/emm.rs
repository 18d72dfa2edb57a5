//! The MDM connector end to end: an EMM integration fetches a device's
//! managed configuration, the agent enrolls from it zero-touch, the EMM
//! wipes the device by its serial number, and the audit trail shows the
//! chain.

use std::process::Command;

use kontor_relay::client::{Answer, DeviceClient};

use crate::admin::{AdminSession, OWNER_PASSWORD, agent, start_with_owner, text};
use crate::serve::root_der;

struct Emm {
    client: DeviceClient,
    key: String,
}

impl Emm {
    async fn call(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> Answer {
        let auth = format!("Bearer {}", self.key);
        let mut headers = vec![("authorization", auth.as_str())];
        let bytes = match body {
            Some(b) => {
                headers.push(("content-type", "application/json"));
                serde_json::to_vec(&b).unwrap()
            }
            None => Vec::new(),
        };
        self.client
            .request_with(method, path, &headers, bytes)
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emm_configures_a_device_which_enrolls_and_then_wipes_it_by_serial_number() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = start_with_owner(&data);
    let root = root_der(&data);
    let owner = AdminSession::sign_in(&server, &root, "owner", OWNER_PASSWORD).await;
    let a = owner
        .call(
            "POST",
            "/v1/accounts",
            Some(
                serde_json::json!({ "login": "intune", "password": OWNER_PASSWORD, "role": "emm" }),
            ),
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.json());
    let account = a.json()["id"].as_str().unwrap().to_owned();
    let k = owner
        .call(
            "POST",
            "/v1/api-keys",
            Some(serde_json::json!({ "account": account, "label": "Intune" })),
        )
        .await;
    assert_eq!(k.status, 201, "{:?}", k.json());
    let client = DeviceClient::anonymous(
        &format!("127.0.0.1:{}", server.admin_port),
        "localhost",
        &root,
    )
    .unwrap();
    let emm = Emm {
        client,
        key: k.json()["key"].as_str().unwrap().to_owned(),
    };

    // Bad input first: nothing changes.
    let wrong = Emm {
        client: DeviceClient::anonymous(
            &format!("127.0.0.1:{}", server.admin_port),
            "localhost",
            &root,
        )
        .unwrap(),
        key: format!("kak_{}_{}", "0".repeat(16), "0".repeat(64)),
    };
    assert_eq!(
        wrong.call("GET", "/emm/v1/commands", None).await.status,
        401
    );
    let a = emm
        .call(
            "POST",
            "/emm/v1/configurations",
            Some(serde_json::json!({ "user_id": "erik@acme.test", "format": "plist" })),
        )
        .await;
    assert_eq!(a.status, 400, "{:?}", a.json());
    let a = emm
        .call("POST", "/emm/v1/configurations", Some(serde_json::json!({ "user_id": "erik@acme.test", "format": "apple_plist", "device": { "serial": "no spaces allowed" } })))
        .await;
    assert_eq!(a.status, 400, "{:?}", a.json());
    assert_eq!(
        owner
            .call("GET", "/v1/users/erik@acme.test", None)
            .await
            .status,
        404,
        "nothing was created"
    );

    let a = emm
        .call(
            "POST",
            "/emm/v1/configurations",
            Some(serde_json::json!({
                "user_id": "erik@acme.test", "display_name": "Erik Example", "format": "apple_plist",
                "device": { "udid": "00008110-000A1B2C3D4E801E", "serial": "F2LXK0ABCD12" }
            })),
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.json());
    let config = dir.path().join("erik.plist");
    std::fs::write(&config, a.json()["configuration"].as_str().unwrap()).unwrap();
    let home = dir.path().join("erik");
    let ca = data.join("root.pem");
    let out = agent(
        &home,
        "482913",
        &[
            "enroll",
            "--config",
            config.to_str().unwrap(),
            "--ca",
            ca.to_str().unwrap(),
            "--platform",
            "ios",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let status: serde_json::Value =
        serde_json::from_slice(&agent(&home, "482913", &["--json", "status"]).stdout).unwrap();
    let device_id = status["device_id"].as_str().unwrap().to_owned();

    // Wipe by serial: unknown serials and ambiguous requests change nothing.
    let a = emm
        .call(
            "POST",
            "/emm/v1/wipe",
            Some(serde_json::json!({ "serial": "UNKNOWN123" })),
        )
        .await;
    assert_eq!(a.status, 404, "{:?}", a.json());
    let a = emm
        .call(
            "POST",
            "/emm/v1/wipe",
            Some(serde_json::json!({ "serial": "F2LXK0ABCD12", "user_id": "erik@acme.test" })),
        )
        .await;
    assert_eq!(a.status, 400, "{:?}", a.json());
    let a = emm
        .call(
            "POST",
            "/emm/v1/wipe",
            Some(serde_json::json!({ "serial": "F2LXK0ABCD12" })),
        )
        .await;
    assert_eq!(a.status, 202, "{:?}", a.json());
    assert_eq!(
        a.json()["devices"][0]["device"],
        device_id.as_str(),
        "{:?}",
        a.json()
    );
    let out = agent(&home, "482913", &["receive"]);
    assert!(
        out.status.success() && text(&out).contains("wiped"),
        "{}",
        text(&out)
    );
    assert!(!home.join("store.key").exists());

    // The chain in the audit trail.
    let trail = owner.call("GET", "/v1/audit?limit=1000", None).await.json();
    let entries = trail["entries"].as_array().unwrap();
    // Users are named by pseudonym; `names` resolves them.
    let has = |actor: &str, action: &str| {
        entries.iter().any(|e| {
            let named = e["actor"]
                .as_str()
                .and_then(|a| trail["names"][a].as_str())
                .unwrap_or_else(|| e["actor"].as_str().unwrap_or_default());
            named == actor && e["action"] == action
        })
    };
    assert!(has("intune", "emm.configuration"), "{trail}");
    assert!(has("intune", "user.invite"), "{trail}");
    assert!(has("erik@acme.test", "device.enroll"), "{trail}");
    assert!(has("intune", "emm.wipe"), "{trail}");
    assert!(has("intune", "device.wipe"), "{trail}");
    let wipes = owner.call("GET", "/v1/wipes", None).await.json();
    assert_eq!(wipes["wipes"][0]["state"], "confirmed", "{wipes}");
    drop(server);
    let out = Command::new(env!("CARGO_BIN_EXE_kontor"))
        .args(["audit", "verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

/// What the NanoMDM stand-in received: (enrollment ids, RequestType,
/// CommandUUID).
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, String, String)>>>;

/// A NanoMDM stand-in on loopback: checks what NanoMDM checks (HTTP Basic
/// auth `nanomdm:<key>`, a plist body with a Command dictionary and a
/// RequestType) and answers as NanoMDM does.
async fn nanomdm_stand_in(key: &str) -> (u16, Received) {
    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode};
    use base64::Engine;
    let received: Received = Default::default();
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("nanomdm:{key}"))
    );
    let handler = move |State(received): State<Received>,
                        Path(ids): Path<String>,
                        headers: HeaderMap,
                        body: axum::body::Bytes| {
        let expected = expected.clone();
        async move {
            if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str())
            {
                return (StatusCode::UNAUTHORIZED, "bad auth".to_owned());
            }
            let Ok(plist::Value::Dictionary(top)) = plist::Value::from_reader_xml(&body[..]) else {
                return (StatusCode::BAD_REQUEST, "not a plist".to_owned());
            };
            let uuid = top
                .get("CommandUUID")
                .and_then(|v| v.as_string())
                .unwrap_or_default()
                .to_owned();
            let request_type = top
                .get("Command")
                .and_then(|c| c.as_dictionary())
                .and_then(|c| c.get("RequestType"))
                .and_then(|v| v.as_string())
                .unwrap_or_default()
                .to_owned();
            if uuid.is_empty() || request_type.is_empty() {
                return (StatusCode::BAD_REQUEST, "no Command/RequestType".to_owned());
            }
            received
                .lock()
                .unwrap()
                .push((ids.clone(), request_type.clone(), uuid.clone()));
            let status: serde_json::Map<String, serde_json::Value> = ids
                .split(',')
                .map(|id| {
                    (
                        id.to_owned(),
                        serde_json::json!({ "push_result": "apns-id-1" }),
                    )
                })
                .collect();
            (StatusCode::OK, serde_json::json!({ "status": status, "command_uuid": uuid, "request_type": request_type }).to_string())
        }
    };
    let app = axum::Router::new()
        .route("/v1/enqueue/{ids}", axum::routing::put(handler))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, received)
}

async fn emm_for(server: &crate::serve::Server, root: &[u8], owner: &AdminSession) -> Emm {
    let a = owner
        .call(
            "POST",
            "/v1/accounts",
            Some(
                serde_json::json!({ "login": "entra", "password": OWNER_PASSWORD, "role": "emm" }),
            ),
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.json());
    let k = owner
        .call(
            "POST",
            "/v1/api-keys",
            Some(serde_json::json!({ "account": a.json()["id"], "label": "Entra ID and NanoMDM" })),
        )
        .await;
    assert_eq!(k.status, 201, "{:?}", k.json());
    Emm {
        client: DeviceClient::anonymous(
            &format!("127.0.0.1:{}", server.admin_port),
            "localhost",
            root,
        )
        .unwrap(),
        key: k.json()["key"].as_str().unwrap().to_owned(),
    }
}

impl Emm {
    async fn scim(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> Answer {
        let auth = format!("Bearer {}", self.key);
        let mut headers = vec![("authorization", auth.as_str())];
        let bytes = match body {
            Some(b) => {
                headers.push(("content-type", "application/scim+json"));
                serde_json::to_vec(&b).unwrap()
            }
            None => Vec::new(),
        };
        self.client
            .request_with(method, path, &headers, bytes)
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wipe_by_serial_reaches_nanomdm_and_its_result_confirms_it_and_scim_deactivation_blocks_at_once()
 {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let key_file = dir.path().join("nanomdm.key");
    std::fs::write(&key_file, "nano-secret-key\n").unwrap();
    let (mdm_port, received) = nanomdm_stand_in("nano-secret-key").await;
    let server = crate::admin::start_with_owner_and(
        &data,
        &[
            "--nanomdm-url".into(),
            format!("http://127.0.0.1:{mdm_port}"),
            "--nanomdm-api-key-file".into(),
            key_file.to_str().unwrap().into(),
            "--danger-mdm-plaintext-http".into(),
        ],
    );
    let root = root_der(&data);
    let ca = data.join("root.pem");
    let owner = AdminSession::sign_in(&server, &root, "owner", OWNER_PASSWORD).await;
    let emm = emm_for(&server, &root, &owner).await;

    // SCIM, as Entra ID provisions: create, find by filter, then set the department.
    let a = emm
        .scim(
            "POST",
            "/scim/v2/Users",
            Some(serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
                "externalId": "0a21f0f2-8d2a-4f8e-b5b6-2c4a5b8e9f01",
                "userName": "fiona@acme.test",
                "active": true,
                "displayName": "Fiona Example",
                "emails": [{ "primary": true, "type": "work", "value": "fiona@acme.test" }],
                "name": { "formatted": "Fiona Example", "familyName": "Example", "givenName": "Fiona" },
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": { "department": "Vertrieb" }
            })),
        )
        .await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["id"], "fiona@acme.test");
    let found = emm
        .scim(
            "GET",
            "/scim/v2/Users?filter=userName%20eq%20%22fiona@acme.test%22",
            None,
        )
        .await;
    assert_eq!(
        found.json()["totalResults"],
        1,
        "{}",
        String::from_utf8_lossy(&found.body)
    );
    let none = emm
        .scim(
            "GET",
            "/scim/v2/Users?filter=userName%20eq%20%22nobody@acme.test%22",
            None,
        )
        .await;
    assert_eq!(none.json()["totalResults"], 0);
    let bad = emm
        .scim("GET", "/scim/v2/Users?filter=userName%20gt%20%22a%22", None)
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.json()["scimType"],
        "invalidFilter",
        "{}",
        String::from_utf8_lossy(&bad.body)
    );
    let user = owner
        .call("GET", "/v1/users/fiona@acme.test", None)
        .await
        .json();
    assert_eq!(user["user"]["department"], "Vertrieb", "{user}");

    // The EMM fetches her iPhone's configuration; the phone enrolls.
    let a = emm
        .call(
            "POST",
            "/emm/v1/configurations",
            Some(serde_json::json!({ "user_id": "fiona@acme.test", "format": "apple_plist", "device": { "udid": "00008110-000A1B2C3D4E801E", "serial": "F2LXK0ABCD12" } })),
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.json());
    let config = dir.path().join("fiona.plist");
    std::fs::write(&config, a.json()["configuration"].as_str().unwrap()).unwrap();
    let home = dir.path().join("fiona");
    let out = agent(
        &home,
        "482913",
        &[
            "enroll",
            "--config",
            config.to_str().unwrap(),
            "--ca",
            ca.to_str().unwrap(),
            "--platform",
            "ios",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));

    // Entra deactivates her: blocked at once.
    let a = emm
        .scim(
            "PATCH",
            "/scim/v2/Users/fiona@acme.test",
            Some(serde_json::json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{ "op": "Replace", "path": "active", "value": "False" }]
            })),
        )
        .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["active"], false);
    let out = agent(&home, "482913", &["receive"]);
    assert!(
        !out.status.success() && text(&out).contains("blocked"),
        "{}",
        text(&out)
    );
    // Reactivated (as Okta sends it), she can receive again.
    let a = emm
        .scim(
            "PATCH",
            "/scim/v2/Users/fiona@acme.test",
            Some(serde_json::json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{ "op": "replace", "value": { "active": true } }] })),
        )
        .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));

    // A policy change from the EMM: the relay enforces it, the device gets
    // it, and NanoMDM gets the matching Settings command for the phone.
    let a = emm
        .call(
            "PUT",
            "/emm/v1/policy/user/fiona@acme.test",
            Some(serde_json::json!({ "copy_paste": false })),
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.json());
    assert_eq!(
        a.json()["mdm_commands"].as_array().unwrap().len(),
        1,
        "{:?}",
        a.json()
    );
    for _ in 0..100 {
        if !received.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let settings = received.lock().unwrap().remove(0);
    assert_eq!(settings.1, "Settings");
    let out = agent(&home, "482913", &["receive"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = agent(&home, "482913", &["copy", "--index", "0"]);
    assert!(
        !out.status.success() && text(&out).contains("`allow_copy_paste`"),
        "{}",
        text(&out)
    );

    // The phone is lost: the EMM wipes it by serial number. NanoMDM gets
    // RemoveApplication for the phone's UDID; the device wipes itself.
    let a = emm
        .call(
            "POST",
            "/emm/v1/wipe",
            Some(serde_json::json!({ "serial": "F2LXK0ABCD12" })),
        )
        .await;
    assert_eq!(a.status, 202, "{:?}", a.json());
    let command = a.json()["devices"][0]["mdm_command"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut got = Vec::new();
    for _ in 0..100 {
        got = received.lock().unwrap().clone();
        if !got.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        got,
        vec![(
            "00008110-000A1B2C3D4E801E".to_owned(),
            "RemoveApplication".to_owned(),
            command.clone()
        )]
    );
    let out = agent(&home, "482913", &["receive"]);
    assert!(
        out.status.success() && text(&out).contains("wiped"),
        "{}",
        text(&out)
    );

    // NanoMDM reports the device's answer; Kontor correlates it.
    let device_plist = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd"><plist version="1.0"><dict><key>CommandUUID</key><string>{command}</string><key>Status</key><string>Acknowledged</string><key>UDID</key><string>00008110-000A1B2C3D4E801E</string></dict></plist>"#
    );
    use base64::Engine;
    let event = serde_json::json!({
        "topic": "mdm.Connect", "event_id": "", "created_at": "2026-11-29T09:14:03.512Z",
        "acknowledge_event": {
            "udid": "00008110-000A1B2C3D4E801E", "status": "Acknowledged", "command_uuid": command,
            "raw_payload": base64::engine::general_purpose::STANDARD.encode(device_plist),
        }
    });
    let malformed = emm.call("POST", "/emm/v1/webhooks/nanomdm", Some(serde_json::json!({ "topic": "mdm.Connect", "acknowledge_event": { "raw_payload": "***" } }))).await;
    assert_eq!(malformed.status, 400, "{:?}", malformed.json());
    let a = emm
        .call("POST", "/emm/v1/webhooks/nanomdm", Some(event))
        .await;
    assert_eq!(a.status, 200, "{:?}", a.json());
    assert_eq!(a.json()["correlated"], true);
    let commands = emm.call("GET", "/emm/v1/commands", None).await.json();
    assert_eq!(
        commands["commands"][0]["status"], "acknowledged",
        "{commands}"
    );

    // The trail shows the chain, from the EMM's call to the MDM's answer.
    let trail = owner.call("GET", "/v1/audit?limit=1000", None).await.json();
    let entries = trail["entries"].as_array().unwrap();
    let has = |action: &str, outcome: &str| {
        entries
            .iter()
            .any(|e| e["action"] == action && e["outcome"] == outcome)
    };
    for (action, outcome) in [
        ("user.create", "done"),
        ("emm.configuration", "done"),
        ("device.enroll", "done"),
        ("user.block", "done"),
        ("emm.wipe", "done"),
        ("device.wipe", "done"),
        ("mdm.remove_application", "requested"),
        ("mdm.remove_application", "done"),
    ] {
        assert!(has(action, outcome), "{action} {outcome} missing: {trail}");
    }

    // Entra deletes her: removed, and gone from SCIM.
    let a = emm
        .scim("DELETE", "/scim/v2/Users/fiona@acme.test", None)
        .await;
    assert_eq!(a.status, 204, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(
        emm.scim("GET", "/scim/v2/Users/fiona@acme.test", None)
            .await
            .status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_emm_operation_is_served_and_refuses_callers_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = start_with_owner(&data);
    let root = root_der(&data);
    let client = DeviceClient::anonymous(
        &format!("127.0.0.1:{}", server.admin_port),
        "localhost",
        &root,
    )
    .unwrap();
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("../../mdm-connector/openapi.json")).unwrap();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let concrete = path
                .replace("{scope}", "user")
                .replace("{id}", "x@acme.test");
            let a = client
                .request_with(
                    &method.to_uppercase(),
                    &concrete,
                    &[("content-type", "application/json")],
                    b"{}".to_vec(),
                )
                .await
                .unwrap();
            operations += 1;
            // Discovery is public (RFC 7644, section 4).
            if path.ends_with("openapi.json") || path.ends_with("ServiceProviderConfig") {
                assert_eq!(a.status, 200, "{method} {path}");
                continue;
            }
            assert_eq!(
                a.status,
                401,
                "{method} {path}: {}",
                String::from_utf8_lossy(&a.body)
            );
            for h in [
                "strict-transport-security",
                "x-frame-options",
                "content-security-policy",
            ] {
                assert!(a.headers.contains_key(h), "{method} {path} lacks {h}");
            }
        }
    }
    assert!(operations >= 18, "{operations}");
}

/// Every `table.column` of the SQLite file at `db` whose text or bytes
/// contain `needle`.
fn columns_naming(db: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let c = rusqlite::Connection::open(db).unwrap();
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let mut found = Vec::new();
    for table in tables {
        let mut stmt = c.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let names: Vec<String> = stmt.column_names().map(str::to_owned).collect();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for (i, name) in names.iter().enumerate() {
                let bytes = match row.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => t,
                    _ => continue,
                };
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(format!("{table}.{name}"));
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_removal_erases_the_user_everywhere_the_connector_and_scim_included() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let key_file = dir.path().join("nanomdm.key");
    std::fs::write(&key_file, "nano-secret-key\n").unwrap();
    let (mdm_port, received) = nanomdm_stand_in("nano-secret-key").await;
    let server = crate::admin::start_with_owner_and(
        &data,
        &[
            "--nanomdm-url".into(),
            format!("http://127.0.0.1:{mdm_port}"),
            "--nanomdm-api-key-file".into(),
            key_file.to_str().unwrap().into(),
            "--danger-mdm-plaintext-http".into(),
        ],
    );
    let root = root_der(&data);
    let ca = data.join("root.pem");
    let owner = AdminSession::sign_in(&server, &root, "owner", OWNER_PASSWORD).await;
    let emm = emm_for(&server, &root, &owner).await;
    const UDID: &str = "00008110-000A1B2C3D4E9A7F";
    const SERIAL: &str = "G9ERASE00001";
    const EXTERNAL_ID: &str = "7c1e2d3f-0000-4abc-9def-0123456789ab";

    // Entra provisions Gina; the EMM configures her iPhone, which enrolls;
    // a policy change reaches NanoMDM as a Settings command.
    let a = emm
        .scim(
            "POST",
            "/scim/v2/Users",
            Some(serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "externalId": EXTERNAL_ID,
                "userName": "gina@acme.test",
                "displayName": "Gina Quendel",
                "emails": [{ "primary": true, "type": "work", "value": "gina.private@acme.test" }],
                "name": { "familyName": "Quendel", "givenName": "Gina" }
            })),
        )
        .await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    let a = emm
        .call(
            "POST",
            "/emm/v1/configurations",
            Some(serde_json::json!({ "user_id": "gina@acme.test", "format": "apple_plist", "device": { "udid": UDID, "serial": SERIAL } })),
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.json());
    let config = dir.path().join("gina.plist");
    std::fs::write(&config, a.json()["configuration"].as_str().unwrap()).unwrap();
    let home = dir.path().join("gina");
    let enroll = [
        "enroll",
        "--config",
        config.to_str().unwrap(),
        "--ca",
        ca.to_str().unwrap(),
        "--platform",
        "ios",
    ];
    let out = agent(&home, "482913", &enroll);
    assert!(out.status.success(), "{}", text(&out));
    let status: serde_json::Value =
        serde_json::from_slice(&agent(&home, "482913", &["--json", "status"]).stdout).unwrap();
    let device_id = status["device_id"].as_str().unwrap().to_owned();
    let a = emm
        .call(
            "PUT",
            "/emm/v1/policy/user/gina@acme.test",
            Some(serde_json::json!({ "copy_paste": false })),
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.json());
    for _ in 0..100 {
        if !received.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(received.lock().unwrap().len(), 1, "the Settings command");
    let out = agent(&home, "482913", &["receive"]);
    assert!(out.status.success(), "{}", text(&out));

    // `kontor admin export-user` shows what the connector and SCIM hold.
    let out = Command::new(env!("CARGO_BIN_EXE_kontor"))
        .args(["admin", "export-user", "--user", "gina@acme.test"])
        .args(["--server", &format!("localhost:{}", server.admin_port)])
        .arg("--ca")
        .arg(&ca)
        .env("KONTOR_API_KEY", &emm.key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let export: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let connector = &export["other_components"]["connector"];
    assert_eq!(connector["mdm_devices"][0]["udid"], UDID, "{export}");
    assert_eq!(connector["mdm_commands"][0]["kind"], "settings", "{export}");
    assert_eq!(
        connector["scim_attributes"]["external_id"], EXTERNAL_ID,
        "{export}"
    );
    assert_eq!(export["certificates"][0]["device_id"], device_id.as_str());
    assert_eq!(export["relay_rows"]["device_states"], 1, "{export}");

    // Scanned before: every store names her.
    let db = data.join("kontor.db");
    let before = columns_naming(&db, b"gina@acme.test");
    for column in [
        "admin_users.user_id",
        "certificates.user_id",
        "mdm_devices.user_id",
        "scim_users.user_id",
    ] {
        assert!(before.iter().any(|c| c == column), "{column}: {before:?}");
    }

    // An admin (not SCIM) removes her.
    let removed = owner.call("DELETE", "/v1/users/gina@acme.test", None).await;
    assert_eq!(removed.status, 204, "{:?}", removed.json());
    assert_eq!(
        emm.scim("GET", "/scim/v2/Users/gina@acme.test", None)
            .await
            .status,
        404
    );
    let out = agent(&home, "482913", &["receive"]);
    assert!(
        !out.status.success(),
        "her device is refused: {}",
        text(&out)
    );
    drop(server);
    let out = Command::new(env!("CARGO_BIN_EXE_kontor"))
        .args(["audit", "verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // No row names her. Her device's identifiers (Kontor's and the MDM's)
    // stay only in the hash-chained audit trail, where nothing links them
    // to her any more.
    for needle in [
        "gina@acme.test",
        "gina.private@acme.test",
        "Quendel",
        EXTERNAL_ID,
    ] {
        assert_eq!(
            columns_naming(&db, needle.as_bytes()),
            Vec::<String>::new(),
            "{needle}"
        );
    }
    let device_bytes = hex::decode(&device_id).unwrap();
    for needle in [
        UDID.as_bytes(),
        SERIAL.as_bytes(),
        device_id.as_bytes(),
        &device_bytes,
    ] {
        let found = columns_naming(&db, needle);
        assert!(
            found.iter().all(|c| c.starts_with("admin_audit.")),
            "{}: {found:?}",
            String::from_utf8_lossy(needle)
        );
    }
}
