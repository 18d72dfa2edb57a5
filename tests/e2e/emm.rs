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
    let has = |actor: &str, action: &str| {
        entries
            .iter()
            .any(|e| e["actor"] == actor && e["action"] == action)
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
