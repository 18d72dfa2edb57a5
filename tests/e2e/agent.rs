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
    let mut files = Vec::new();
    files_under(&data, &mut files);
    files_under(&anna, &mut files);
    files_under(&ben, &mut files);
    assert!(files.len() > 5);
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
            text(&out).contains(&format!("{left} attempts left")),
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
