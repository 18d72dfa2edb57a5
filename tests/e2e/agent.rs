//! The whole product as users run it: `kontor serve` and agents as separate
//! processes over real TLS, enrolled zero-touch from an Apple plist and an
//! Android bundle.

use std::path::Path;
use std::process::{Command, Output};

use kontor_managed_config::{
    EnrollmentToken, OrgId, Policy, ServerUrl, UserIdentity, android, apple,
};

use crate::serve::{Server, create_token, root_der, start};

const MARKER: &str = "GEHEIM-MARKER-4e1f";

fn agent(dir: &Path, pin: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kontor"))
        .args(["agent", "--dir"])
        .arg(dir)
        .args(args)
        .env("KONTOR_PIN", pin)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn policy(server: &Server, token: &str, user: &str) -> Policy {
    let mut policy = Policy::new(
        ServerUrl::parse(&format!("https://localhost:{}", server.enroll_port)).unwrap(),
        OrgId::parse("e2e-org").unwrap(),
    );
    policy.enrollment_token = Some(EnrollmentToken::parse(token).unwrap());
    policy.user_identity = Some(UserIdentity::parse(user).unwrap());
    policy.pin.max_failed_attempts = 3;
    policy
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_enroll_zero_touch_exchange_messages_and_a_wrong_pin_limit_wipes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = start(&data);
    let root = root_der(&data);
    let ca = data.join("root.pem");
    let ca = ca.to_str().unwrap();

    // Anna's iPhone gets an Apple plist, Ben's Android phone a bundle.
    let anna_cfg = dir.path().join("anna.plist");
    let token = create_token(&server, &root, "anna@example.org").await;
    std::fs::write(
        &anna_cfg,
        apple::configuration_plist(&policy(&server, &token, "anna@example.org")).unwrap(),
    )
    .unwrap();
    let ben_cfg = dir.path().join("ben.json");
    let token = create_token(&server, &root, "ben@example.org").await;
    std::fs::write(
        &ben_cfg,
        android::bundle_json(&policy(&server, &token, "ben@example.org")).unwrap(),
    )
    .unwrap();
    let (anna, ben) = (dir.path().join("anna"), dir.path().join("ben"));

    // A PIN below the policy's length is refused before anything happens.
    let out = agent(
        &anna,
        "12",
        &["enroll", "--config", anna_cfg.to_str().unwrap(), "--ca", ca],
    );
    assert!(
        !out.status.success() && text(&out).contains("PIN does not satisfy"),
        "{}",
        text(&out)
    );
    let out = agent(
        &anna,
        "482913",
        &[
            "enroll",
            "--config",
            anna_cfg.to_str().unwrap(),
            "--ca",
            ca,
            "--platform",
            "ios",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("enrolled anna@example.org"));
    let out = agent(
        &ben,
        "135790",
        &[
            "enroll",
            "--config",
            ben_cfg.to_str().unwrap(),
            "--ca",
            ca,
            "--platform",
            "android",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    // The one-use token is spent.
    let out = agent(
        &dir.path().join("ben2"),
        "135790",
        &["enroll", "--config", ben_cfg.to_str().unwrap(), "--ca", ca],
    );
    assert!(
        !out.status.success() && text(&out).contains("token"),
        "{}",
        text(&out)
    );

    // Ben is offline while Anna writes; he catches up later.
    let out = agent(
        &anna,
        "482913",
        &[
            "send",
            "--to",
            "ben@example.org",
            &format!("{MARKER}: Treffen um 10"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = agent(&ben, "135790", &["--json", "receive"]);
    assert!(out.status.success(), "{}", text(&out));
    let received: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        received["messages"][0]["text"],
        format!("{MARKER}: Treffen um 10")
    );
    assert_eq!(received["messages"][0]["from_user"], "anna@example.org");
    assert_eq!(
        received["messages"][0]["conversation"],
        "user:anna@example.org"
    );
    let out = agent(&ben, "135790", &["--json", "receive"]);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["messages"],
        serde_json::json!([])
    );
    let out = agent(&ben, "135790", &["inbox"]);
    assert!(text(&out).contains("Treffen um 10"));
    let out = agent(&ben, "135790", &["verify", "--user", "anna@example.org"]);
    assert!(
        out.status.success()
            && text(&out)
                .split_whitespace()
                .filter(|w| w.len() == 5)
                .count()
                >= 12,
        "{}",
        text(&out)
    );

    // Nothing readable on the server: not in its data directory, nor in the
    // devices' stores.
    let mut files = vec![data.with_extension("log")];
    files_under(&data, &mut files);
    files_under(&anna, &mut files);
    files_under(&ben, &mut files);
    assert!(files.len() > 5);
    assert!(
        std::fs::read_to_string(data.with_extension("log"))
            .unwrap()
            .contains("listening"),
        "the server logs"
    );
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        assert!(
            !contains(&bytes, MARKER.as_bytes()),
            "{} holds the plaintext",
            file.display()
        );
    }

    // Three wrong PINs (the policy's limit) wipe Ben's device.
    for left in [2, 1] {
        let out = agent(&ben, "000000", &["status"]);
        assert!(
            text(&out).contains(&format!("after {left} more wrong attempt(s)")),
            "{}",
            text(&out)
        );
    }
    let out = agent(&ben, "000000", &["status"]);
    assert!(text(&out).contains("wiped"), "{}", text(&out));
    let out = agent(&ben, "135790", &["status"]);
    assert!(
        !out.status.success() && text(&out).contains("wiped"),
        "{}",
        text(&out)
    );
    assert!(!ben.join("store.key").exists());
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_files_restrictions_and_a_remote_wipe() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = crate::admin::start_with_owner(&data);
    let root = root_der(&data);
    let ca = data.join("root.pem");
    let ca = ca.to_str().unwrap();
    let mut devices = Vec::new();
    for (user, files_allowed, copy_allowed) in [
        ("anna@example.org", true, false),
        ("ben@example.org", false, true),
        ("clara@example.org", true, true),
    ] {
        let token = create_token(&server, &root, user).await;
        let mut p = policy(&server, &token, user);
        p.restrictions.copy_paste = copy_allowed;
        p.restrictions.attachments = if files_allowed {
            kontor_managed_config::Attachment::ALL.into_iter().collect()
        } else {
            [kontor_managed_config::Attachment::Images]
                .into_iter()
                .collect()
        };
        let cfg = dir.path().join(format!("{user}.json"));
        std::fs::write(&cfg, android::bundle_json(&p).unwrap()).unwrap();
        let home = dir.path().join(user);
        let out = agent(
            &home,
            "246810",
            &["enroll", "--config", cfg.to_str().unwrap(), "--ca", ca],
        );
        assert!(out.status.success(), "{}", text(&out));
        devices.push(home);
    }
    let (anna, ben, clara) = (&devices[0], &devices[1], &devices[2]);

    // A group of three; a message to it reaches every member.
    let out = agent(
        anna,
        "246810",
        &[
            "--json",
            "group-create",
            "--name",
            "Projekt",
            "--member",
            "ben@example.org",
            "--member",
            "clara@example.org",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let group = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["group"]
        .as_str()
        .unwrap()
        .to_owned();
    let to_group = format!("group:{group}");
    let out = agent(
        anna,
        "246810",
        &["send", "--to", &to_group, "Hallo Projekt"],
    );
    assert!(out.status.success(), "{}", text(&out));
    for member in [ben, clara] {
        let out = agent(member, "246810", &["--json", "receive"]);
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            got["messages"][0]["text"],
            "Hallo Projekt",
            "{}",
            text(&out)
        );
        assert_eq!(got["messages"][0]["conversation"], to_group);
    }

    // A file: Anna may send files; Clara downloads and opens it.
    let file = dir.path().join("bericht.pdf");
    let content: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &content).unwrap();
    let out = agent(
        anna,
        "246810",
        &[
            "send-file",
            "--to",
            "clara@example.org",
            "--file",
            file.to_str().unwrap(),
            "--media-type",
            "application/pdf",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = agent(clara, "246810", &["--json", "receive"]);
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["messages"][0]["kind"], "file", "{}", text(&out));
    let inbox: serde_json::Value =
        serde_json::from_slice(&agent(clara, "246810", &["--json", "inbox"]).stdout).unwrap();
    let index = inbox
        .as_array()
        .unwrap()
        .iter()
        .position(|m| m["kind"] == "file")
        .unwrap();
    let saved = dir.path().join("saved.pdf");
    let out = agent(
        clara,
        "246810",
        &[
            "fetch-file",
            "--index",
            &index.to_string(),
            "--out",
            saved.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(&saved).unwrap(), content);
    // The server holds the file only as ciphertext, and logs none of it.
    let mut files = vec![data.with_extension("log")];
    files_under(&data, &mut files);
    for f in &files {
        assert!(
            !contains(&std::fs::read(f).unwrap(), &content[1000..1064]),
            "{} holds file content",
            f.display()
        );
    }

    // Ben's policy allows images only: a PDF is refused, naming the policy.
    let out = agent(
        ben,
        "246810",
        &[
            "send-file",
            "--to",
            "anna@example.org",
            "--file",
            file.to_str().unwrap(),
            "--media-type",
            "application/pdf",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("forbidden by policy `allowed_attachments`"),
        "{}",
        text(&out)
    );
    // Anna may not copy text out of Kontor; Ben may.
    let out = agent(anna, "246810", &["copy", "--index", "0"]);
    assert!(
        !out.status.success() && text(&out).contains("`allow_copy_paste`"),
        "{}",
        text(&out)
    );
    let out = agent(ben, "246810", &["copy", "--index", "0"]);
    assert!(
        out.status.success() && text(&out).contains("Hallo Projekt"),
        "{}",
        text(&out)
    );

    // The admin wipes Clara's device: at its next contact it destroys its
    // store and confirms; after that it can neither connect nor open.
    let clara_id = serde_json::from_slice::<serde_json::Value>(
        &agent(clara, "246810", &["--json", "status"]).stdout,
    )
    .unwrap()["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Clara enrolled with an EMM's token: she joined the directory then.
    let admin =
        crate::admin::AdminSession::sign_in(&server, &root, "owner", crate::admin::OWNER_PASSWORD)
            .await;
    let wipe = admin
        .call("POST", &format!("/v1/devices/{clara_id}/wipe"), None)
        .await;
    assert_eq!(wipe.status, 202, "{:?}", wipe.json());
    let helpdesk = admin
        .call(
            "POST",
            "/v1/accounts",
            Some(serde_json::json!({ "login": "auditor", "password": crate::admin::OWNER_PASSWORD, "role": "auditor" })),
        )
        .await;
    assert_eq!(helpdesk.status, 201, "{:?}", helpdesk.json());
    let auditor = crate::admin::AdminSession::sign_in(
        &server,
        &root,
        "auditor",
        crate::admin::OWNER_PASSWORD,
    )
    .await;
    let refused = auditor
        .call("POST", &format!("/v1/devices/{clara_id}/wipe"), None)
        .await;
    assert_eq!(refused.status, 403);
    let out = agent(clara, "246810", &["receive"]);
    assert!(
        out.status.success() && text(&out).contains("wiped by the administration"),
        "{}",
        text(&out)
    );
    assert!(!clara.join("store.key").exists());
    let out = agent(clara, "246810", &["status"]);
    assert!(
        !out.status.success() && text(&out).contains("wiped"),
        "{}",
        text(&out)
    );
    // Its certificate is revoked: listed in the CRL (revocation follows the
    // receipt asynchronously; bounded wait).
    let enroll = kontor_relay::client::DeviceClient::anonymous(
        &format!("127.0.0.1:{}", server.enroll_port),
        "localhost",
        &root,
    )
    .unwrap();
    let mut listed = false;
    for _ in 0..50 {
        let crl = enroll
            .request("GET", "/pki/crl.der", None, Vec::new())
            .await
            .unwrap();
        let path = dir.path().join("crl.der");
        std::fs::write(&path, &crl.body).unwrap();
        let out = Command::new("openssl")
            .args(["crl", "-inform", "DER", "-noout", "-text", "-in"])
            .arg(&path)
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).contains("Serial Number") {
            listed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(listed, "the wiped device's certificate was not revoked");
    // Messages to Clara are refused now.
    let out = agent(
        anna,
        "246810",
        &["send", "--to", "clara@example.org", "noch da?"],
    );
    assert!(!out.status.success(), "{}", text(&out));
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listening_device_receives_live_and_an_unreachable_server_is_named() {
    use std::io::BufRead;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = start(&data);
    let root = root_der(&data);
    let ca = data.join("root.pem");
    let ca = ca.to_str().unwrap();
    let mut homes = Vec::new();
    for user in ["anna@example.org", "ben@example.org"] {
        let token = create_token(&server, &root, user).await;
        let cfg = dir.path().join(format!("{user}.plist"));
        std::fs::write(
            &cfg,
            apple::configuration_plist(&policy(&server, &token, user)).unwrap(),
        )
        .unwrap();
        let home = dir.path().join(user);
        let out = agent(
            &home,
            "975310",
            &["enroll", "--config", cfg.to_str().unwrap(), "--ca", ca],
        );
        assert!(out.status.success(), "{}", text(&out));
        homes.push(home);
    }
    let mut listener = Command::new(env!("CARGO_BIN_EXE_kontor"))
        .args(["agent", "--dir"])
        .arg(&homes[1])
        .args(["--json", "listen", "--seconds", "20"])
        .env("KONTOR_PIN", "975310")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::io::BufReader::new(listener.stdout.take().unwrap()).lines();
    let reader = std::thread::spawn(move || {
        lines
            .map_while(Result::ok)
            .find(|line| line.contains("live!"))
    });
    // Give the listener time to unlock (scrypt) and connect.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let out = agent(
        &homes[0],
        "975310",
        &["send", "--to", "ben@example.org", "live!"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let line = reader
        .join()
        .unwrap()
        .expect("the listener printed the message");
    let _ = listener.kill();
    let _ = listener.wait();
    let got: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(got["message"]["from_user"], "anna@example.org");
    // Stored and acknowledged: nothing waits any more.
    let out = agent(&homes[1], "975310", &["--json", "receive"]);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["messages"],
        serde_json::json!([])
    );
    let inbox = agent(&homes[1], "975310", &["inbox"]);
    assert!(text(&inbox).contains("live!"));

    // The server goes away: a clear message, and nothing is lost locally.
    drop(server);
    let out = agent(
        &homes[0],
        "975310",
        &["send", "--to", "ben@example.org", "anyone there?"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("cannot reach the server"),
        "{}",
        text(&out)
    );
    let inbox = agent(&homes[1], "975310", &["inbox"]);
    assert!(inbox.status.success() && text(&inbox).contains("live!"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_message_is_dropped_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = start(&data);
    let root = root_der(&data);
    let ca = data.join("root.pem");
    let token = create_token(&server, &root, "ben@example.org").await;
    let cfg = dir.path().join("ben.plist");
    std::fs::write(
        &cfg,
        apple::configuration_plist(&policy(&server, &token, "ben@example.org")).unwrap(),
    )
    .unwrap();
    let ben = dir.path().join("ben");
    let out = agent(
        &ben,
        "864202",
        &[
            "--json",
            "enroll",
            "--config",
            cfg.to_str().unwrap(),
            "--ca",
            ca.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let ben_status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut ben_id = [0u8; 16];
    hex::decode_to_slice(ben_status["device_id"].as_str().unwrap(), &mut ben_id).unwrap();

    // Mallory is a real, enrolled colleague whose client alters a body after
    // sealing: the relay cannot tell, Ben's device must.
    let mallory = crate::relay_crash::enroll(&server, &root, "mallory@example.org").await;
    let directory = mallory
        .client
        .request("GET", "/v1/users/ben@example.org/devices", None, Vec::new())
        .await
        .unwrap();
    let ben_key = kontor_crypto::IdentityPublic::from_hex(
        directory.json()["devices"][0]["identity_key"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    for (i, tamper) in [(1u8, true), (2, false)] {
        let sealed = kontor_crypto::seal(
            &mut kontor_crypto::os_rng(),
            kontor_crypto::MessageId([i; 16]),
            kontor_crypto::Sender { device_id: kontor_crypto::DeviceId(mallory.device_id), identity: &mallory.key },
            &[kontor_crypto::Recipient { device_id: kontor_crypto::DeviceId(ben_id), identity: ben_key }],
            serde_json::json!({"v": 1, "kind": "text", "conversation": {"user": "ben@example.org"}, "sent_at_ms": 0,
                               "text": if tamper { "MANIPULIERT" } else { "echt" }})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let mut body = sealed.body().to_vec();
        if tamper {
            body[20] ^= 0x01;
        }
        let deliveries: Vec<&[u8]> = sealed
            .deliveries()
            .iter()
            .map(|d| &d.as_bytes()[..])
            .collect();
        let envelope = kontor_relay::wire::PostedEnvelope::encode(None, &[], &deliveries, &body);
        let posted = mallory
            .client
            .request(
                "POST",
                "/v1/messages",
                Some(kontor_relay::wire::ENVELOPE_CONTENT_TYPE),
                envelope,
            )
            .await
            .unwrap();
        assert_eq!(
            posted.status, 201,
            "the relay cannot check what it cannot read"
        );
    }
    let out = agent(&ben, "864202", &["--json", "receive"]);
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        got["dropped"],
        serde_json::json!(["failed at step body_hash"]),
        "{}",
        text(&out)
    );
    assert_eq!(got["messages"].as_array().unwrap().len(), 1);
    assert_eq!(got["messages"][0]["text"], "echt");
    let inbox = agent(&ben, "864202", &["inbox"]);
    assert!(!text(&inbox).contains("MANIPULIERT"), "{}", text(&inbox));
    // Both were acknowledged: the tampered one is not fetched again.
    let out = agent(&ben, "864202", &["--json", "receive"]);
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (got["messages"].clone(), got["dropped"].clone()),
        (serde_json::json!([]), serde_json::json!([]))
    );
}
