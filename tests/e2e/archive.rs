//! Broadcasts and archive export as users and the archive's owner meet
//! them: `kontor serve` and agents as processes over real TLS, and
//! `kontor archive keygen|open` on the parts a device uploaded.
//!
//! No administration API queues `broadcast` and `archive` commands yet, so
//! the test queues them the way the relay's own code does, through its
//! SQLite store (the database `kontor serve` runs on), and reads the
//! receipts and uploaded blobs from there.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use kontor_crypto::{IdentitySecret, MessageId, Sender};
use kontor_managed_config::{
    Attachment, EnrollmentToken, OrgId, Policy, ServerUrl, UserIdentity, android,
};
use kontor_provisioning::DeviceId;
use kontor_relay::store::sqlite::SqliteStore;
use kontor_relay::store::{BlobStore, CommandStore};

use crate::kontor;
use crate::serve::{Server, create_token, root_der, start};

const PIN: &str = "246810";

fn agent(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kontor"))
        .args(["agent", "--dir"])
        .arg(dir)
        .args(args)
        .env("KONTOR_PIN", PIN)
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

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("JSON: {}", text(out)))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Enrolls `user` in `home`; `files` says whether the policy allows files.
async fn enroll(server: &Server, dir: &Path, user: &str, files: bool) -> std::path::PathBuf {
    let data = dir.join("server");
    let token = create_token(server, &root_der(&data), user).await;
    let mut policy = Policy::new(
        ServerUrl::parse(&format!("https://localhost:{}", server.enroll_port)).unwrap(),
        OrgId::parse("e2e-org").unwrap(),
    );
    policy.enrollment_token = Some(EnrollmentToken::parse(&token).unwrap());
    policy.user_identity = Some(UserIdentity::parse(user).unwrap());
    policy.restrictions.attachments = if files {
        Attachment::ALL.into_iter().collect()
    } else {
        [Attachment::Images].into_iter().collect()
    };
    let cfg = dir.join(format!("{user}.json"));
    std::fs::write(&cfg, android::bundle_json(&policy).unwrap()).unwrap();
    let home = dir.join(user);
    let ca = data.join("root.pem");
    let out = agent(
        &home,
        &[
            "enroll",
            "--config",
            cfg.to_str().unwrap(),
            "--ca",
            ca.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    home
}

fn device_id(home: &Path) -> [u8; 16] {
    let status = json(&agent(home, &["--json", "status"]));
    let mut id = [0u8; 16];
    hex::decode_to_slice(status["device_id"].as_str().unwrap(), &mut id).unwrap();
    id
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// Seals `content` with the keys in `home`'s store for device `to` and
/// posts it with `home`'s certificate, as a modified agent could.
async fn post_as(home: &Path, device_port: u16, to: [u8; 16], content: serde_json::Value) {
    let store = kontor_agent::store::LocalStore::unlock(home, PIN).unwrap();
    let identity =
        IdentitySecret::from_bytes(store.secret("identity").unwrap()[..].try_into().unwrap());
    let mut me = [0u8; 16];
    me.copy_from_slice(&store.secret("device_id").unwrap());
    let client = kontor_relay::client::DeviceClient::new(
        &format!("127.0.0.1:{device_port}"),
        "localhost",
        &store.secret("root").unwrap(),
        &store.secret_text("chain").unwrap(),
        &store.secret("tls_key").unwrap(),
    )
    .unwrap();
    let devices = client
        .request("GET", "/v1/users/ben@example.org/devices", None, Vec::new())
        .await
        .unwrap()
        .json();
    let key = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device_id"] == hex::encode(to))
        .unwrap()["identity_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut rng = kontor_crypto::os_rng();
    let message_id = MessageId::random(&mut rng);
    let sealed = kontor_crypto::seal(
        &mut rng,
        message_id,
        Sender {
            device_id: kontor_crypto::DeviceId(me),
            identity: &identity,
        },
        &[kontor_crypto::Recipient {
            device_id: kontor_crypto::DeviceId(to),
            identity: kontor_crypto::IdentityPublic::from_hex(&key).unwrap(),
        }],
        content.to_string().as_bytes(),
    )
    .unwrap();
    let delivery = &sealed.deliveries()[0].as_bytes()[..];
    let envelope =
        kontor_relay::wire::PostedEnvelope::encode(None, &[], &[delivery], sealed.body());
    let answer = client
        .request(
            "POST",
            "/v1/messages",
            Some(kontor_relay::wire::ENVELOPE_CONTENT_TYPE),
            envelope,
        )
        .await
        .unwrap();
    assert!(
        answer.status == 201 || answer.status == 200,
        "{:?}",
        answer.json()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_export_covers_from_inclusive_to_exclusive_and_broadcasts_show_as_administration() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = start(&data);
    let anna = enroll(&server, dir.path(), "anna@example.org", true).await;
    // Ben may send images only: his archive upload is no file send.
    let ben = enroll(&server, dir.path(), "ben@example.org", false).await;
    let ben_id = device_id(&ben);

    // Ben's store: "eins" (sent), "ARCHIV-MARKER zwei" and a file
    // (received), "vier" (sent). Distinct clock values, a few ms apart.
    let send = |from: &Path, to: &str, words: &str| {
        let out = agent(from, &["send", "--to", to, words]);
        assert!(out.status.success(), "{}", text(&out));
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    send(&ben, "anna@example.org", "eins");
    send(&anna, "ben@example.org", "ARCHIV-MARKER zwei");
    let file = dir.path().join("bericht.pdf");
    std::fs::write(&file, b"FILE-CONTENT-MARKER 0123456789").unwrap();
    let out = agent(
        &anna,
        &[
            "send-file",
            "--to",
            "ben@example.org",
            "--file",
            file.to_str().unwrap(),
            "--media-type",
            "application/pdf",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    std::thread::sleep(std::time::Duration::from_millis(5));
    let got = json(&agent(&ben, &["--json", "receive"]));
    assert_eq!(got["messages"].as_array().unwrap().len(), 2, "{got}");
    send(&ben, "anna@example.org", "vier");
    let inbox = json(&agent(&ben, &["--json", "inbox"]));
    let at = |words: &str| {
        inbox
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["text"].as_str().unwrap().contains(words))
            .unwrap()["sent_at_ms"]
            .as_i64()
            .unwrap()
    };
    let (from_ms, to_ms) = (at("zwei"), at("vier"));
    assert!(at("eins") < from_ms && from_ms < at("bericht.pdf") && at("bericht.pdf") < to_ms);

    // The archive's owner makes the key pair; the private key file is the
    // owner's alone and is never overwritten.
    let key = dir.path().join("archive.key");
    let out = kontor(&["archive", "keygen", "--out", key.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let archive_public = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(archive_public.len(), 64);
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let key_text = std::fs::read_to_string(&key).unwrap();
    assert_eq!(
        IdentitySecret::from_hex(key_text.trim())
            .unwrap()
            .public()
            .to_hex(),
        archive_public
    );
    let out = kontor(&["archive", "keygen", "--out", key.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&key).unwrap(), key_text);

    // The administration queues: a broadcast inside the range, a malformed
    // broadcast, an archive request with a short key, and a good one.
    let relay = SqliteStore::open(&data.join("kontor.db")).unwrap();
    let ben_device = DeviceId::from_bytes(ben_id);
    let request = "0123456789abcdef0123456789abcdef";
    let mut ids = Vec::new();
    for (kind, payload) in [
        (
            "broadcast",
            serde_json::json!({ "text": "Serverwartung heute um 18 Uhr", "sent_at_ms": from_ms + 1, "scope": "all" }),
        ),
        (
            "broadcast",
            serde_json::json!({ "text": "", "sent_at_ms": from_ms + 1, "scope": "all" }),
        ),
        (
            "archive",
            serde_json::json!({ "request": request, "from_ms": from_ms, "to_ms": to_ms, "archive_key": &archive_public[..62] }),
        ),
        (
            "archive",
            serde_json::json!({ "request": request, "from_ms": from_ms, "to_ms": to_ms, "archive_key": archive_public }),
        ),
    ] {
        ids.push(
            relay
                .queue_command(ben_device, kind, &payload.to_string(), now_ms())
                .await
                .unwrap(),
        );
    }

    let out = agent(&ben, &["receive"]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    for expected in [
        "from the administration (broadcast:all): Serverwartung heute um 18 Uhr",
        "refused a command: broadcast: `text` must have 1 to 4000 characters, not 0",
        &format!(
            "archive request {request}: refused (`archive_key` must be 64 hex digits (X25519))"
        ),
        &format!(
            "archive request {request}: exported 3 message(s) in 1 part(s) for the administration"
        ),
    ] {
        assert!(
            shown.contains(expected),
            "{expected:?} missing in:\n{shown}"
        );
    }

    // The broadcast is stored once, as from the administration; the
    // malformed one is not stored at all.
    let inbox = json(&agent(&ben, &["--json", "inbox"]));
    let broadcasts: Vec<&serde_json::Value> = inbox
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["kind"] == "broadcast")
        .collect();
    assert_eq!(broadcasts.len(), 1, "{inbox}");
    assert_eq!(broadcasts[0]["from_user"], "Administration");
    assert_eq!(broadcasts[0]["from_administration"], true);
    assert_eq!(broadcasts[0]["text"], "Serverwartung heute um 18 Uhr");
    assert_eq!(inbox.as_array().unwrap().len(), 5, "{inbox}");
    let out = agent(&ben, &["inbox"]);
    assert!(
        text(&out).contains("<- from the administration (broadcast:all): Serverwartung"),
        "{}",
        text(&out)
    );

    // A user cannot pose as the administration: Anna's own device seals a
    // message whose content claims the kind "broadcast"; Ben drops it.
    post_as(
        &anna,
        server.device_port,
        ben_id,
        serde_json::json!({
            "v": 1, "kind": "broadcast", "conversation": { "user": "ben@example.org" },
            "sent_at_ms": from_ms + 2, "text": "Gefälschte Durchsage",
        }),
    )
    .await;
    let got = json(&agent(&ben, &["--json", "receive"]));
    assert_eq!(got["messages"], serde_json::json!([]), "{got}");
    assert!(
        got["dropped"][0]
            .as_str()
            .unwrap()
            .contains("claims to be a broadcast of the administration"),
        "{got}"
    );
    let inbox = json(&agent(&ben, &["--json", "inbox"]));
    assert!(!inbox.to_string().contains("Gefälschte"), "{inbox}");

    // The receipts, in the order queued.
    let commands = relay.commands_of_device(ben_device).await.unwrap();
    let receipts: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| {
            let c = commands.iter().find(|c| c.id == *id).unwrap();
            serde_json::from_str(c.receipt.as_deref().expect("acknowledged")).unwrap()
        })
        .collect();
    assert_eq!(receipts[0], serde_json::json!({ "shown": true }));
    assert_eq!(
        receipts[1],
        serde_json::json!({ "applied": false, "reason": "`text` must have 1 to 4000 characters, not 0" })
    );
    assert_eq!(
        receipts[2],
        serde_json::json!({ "archived": false, "reason": "`archive_key` must be 64 hex digits (X25519)" })
    );
    assert_eq!(receipts[3]["archived"], true, "{}", receipts[3]);
    let parts = receipts[3]["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0]["messages"], 3);
    let mut blob = [0u8; 16];
    hex::decode_to_slice(parts[0]["blob"].as_str().unwrap(), &mut blob).unwrap();
    let sealed = relay
        .blob_for(blob, ben_device, now_ms())
        .await
        .unwrap()
        .expect("the part was uploaded")
        .bytes;
    assert_eq!(parts[0]["bytes"], sealed.len());
    // The relay, its database and its log hold the archive as ciphertext only.
    assert!(!contains(&sealed, b"ARCHIV-MARKER"));
    let mut files = vec![data.with_extension("log")];
    for entry in std::fs::read_dir(&data).unwrap().flatten() {
        if entry.path().is_file() {
            files.push(entry.path());
        }
    }
    for f in files {
        assert!(
            !contains(&std::fs::read(&f).unwrap(), b"ARCHIV-MARKER"),
            "{}",
            f.display()
        );
    }
    for entry in std::fs::read_dir(&ben).unwrap().flatten() {
        assert!(
            !contains(&std::fs::read(entry.path()).unwrap(), b"ARCHIV-MARKER"),
            "{} holds plaintext",
            entry.path().display()
        );
    }

    // The owner opens the part: exactly the range [from_ms, to_ms), in the
    // store's order, with file metadata but no file content.
    let part = dir.path().join("part1.bin");
    std::fs::write(&part, &sealed).unwrap();
    let out = kontor(&[
        "archive",
        "open",
        "--key",
        key.to_str().unwrap(),
        part.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let document: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(document["v"], 1);
    assert_eq!(document["request"], request);
    assert_eq!(document["user"], "ben@example.org");
    assert_eq!(document["device"], hex::encode(ben_id));
    assert_eq!(
        (document["from_ms"].as_i64(), document["to_ms"].as_i64()),
        (Some(from_ms), Some(to_ms))
    );
    assert!(document["exported_at_ms"].as_i64().unwrap() >= to_ms);
    let messages = document["messages"].as_array().unwrap();
    let summary: Vec<(&str, &str, &str)> = messages
        .iter()
        .map(|m| {
            (
                m["from"].as_str().unwrap(),
                m["kind"].as_str().unwrap(),
                m["text"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("anna@example.org", "text", "ARCHIV-MARKER zwei"),
            ("anna@example.org", "file", "[file bericht.pdf, 30 bytes]"),
            (
                "Administration",
                "broadcast",
                "Serverwartung heute um 18 Uhr"
            ),
        ]
    );
    assert_eq!(messages[0]["sent_at_ms"], from_ms);
    assert_eq!(messages[0]["conversation"], "user:anna@example.org");
    assert_eq!(messages[0]["attachment"], serde_json::Value::Null);
    assert_eq!(
        messages[1]["attachment"],
        serde_json::json!({ "name": "bericht.pdf", "media_type": "application/pdf", "bytes": 30 })
    );
    assert!(!contains(&out.stdout, b"FILE-CONTENT-MARKER"));
    assert!(
        text(&out).contains(&format!("sealed by device {}", hex::encode(ben_id))),
        "{}",
        text(&out)
    );

    // Another archive key cannot open it.
    let other = dir.path().join("other.key");
    assert!(
        kontor(&["archive", "keygen", "--out", other.to_str().unwrap()])
            .status
            .success()
    );
    let out = kontor(&[
        "archive",
        "open",
        "--key",
        other.to_str().unwrap(),
        part.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(
        text(&out).contains(part.to_str().unwrap()) && text(&out).contains("another archive key"),
        "{}",
        text(&out)
    );
    drop(server);
}

/// A part sealed here, as a device would: `open --out` writes it only when
/// every part opens, an altered part or the wrong key names the file and
/// changes nothing, and existing files are never overwritten.
#[test]
fn archive_open_writes_nothing_when_a_part_is_altered_or_the_key_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("archive.key");
    let out = kontor(&["archive", "keygen", "--out", key.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let public =
        kontor_crypto::IdentityPublic::from_hex(String::from_utf8(out.stdout).unwrap().trim())
            .unwrap();

    let mut rng = kontor_crypto::os_rng();
    let device = IdentitySecret::generate(&mut rng);
    let device_id = kontor_crypto::DeviceId([0x42; 16]);
    let seal = |document: serde_json::Value| {
        kontor_crypto::seal_archive_part(
            &mut kontor_crypto::os_rng(),
            MessageId::random(&mut kontor_crypto::os_rng()),
            Sender {
                device_id,
                identity: &device,
            },
            &public,
            document.to_string().as_bytes(),
        )
        .unwrap()
    };
    let document = |n: i64| {
        serde_json::json!({
            "v": 1, "request": "ab".repeat(16), "user": "clara@example.org", "device": "42".repeat(16),
            "from_ms": 0, "to_ms": 10, "exported_at_ms": 11,
            "messages": [{ "conversation": "user:ben@example.org", "from": "ben@example.org",
                           "sent_at_ms": n, "kind": "text", "text": format!("Nachricht {n}"), "attachment": null }],
        })
    };
    let good = dir.path().join("one.part");
    let second = dir.path().join("two.part");
    std::fs::write(&good, seal(document(1))).unwrap();
    std::fs::write(&second, seal(document(2))).unwrap();
    let mut altered_bytes = seal(document(3));
    let last = altered_bytes.len() - 1;
    altered_bytes[last] ^= 0x01;
    let altered = dir.path().join("three.part");
    std::fs::write(&altered, altered_bytes).unwrap();

    let out_dir = dir.path().join("opened");
    let open = |key: &Path, parts: &[&Path]| {
        let mut args = vec![
            "archive",
            "open",
            "--key",
            key.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ];
        args.extend(parts.iter().map(|p| p.to_str().unwrap()));
        kontor(&args)
    };

    // An altered part among good ones: named, and nothing is written.
    let out = open(&key, &[&good, &altered]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(altered.to_str().unwrap()) && text(&out).contains("altered"),
        "{}",
        text(&out)
    );
    assert!(!out_dir.exists());

    // The wrong key: named, nothing written.
    let other = dir.path().join("other.key");
    assert!(
        kontor(&["archive", "keygen", "--out", other.to_str().unwrap()])
            .status
            .success()
    );
    let out = open(&other, &[&good]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(good.to_str().unwrap()) && text(&out).contains("another archive key"),
        "{}",
        text(&out)
    );
    assert!(!out_dir.exists());

    // A key file that is no key.
    let junk = dir.path().join("junk.key");
    std::fs::write(&junk, "not a key\n").unwrap();
    let out = open(&junk, &[&good]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not an archive private key"),
        "{}",
        text(&out)
    );

    // Good parts: one owner-only .json each, byte for byte the document.
    let out = open(&key, &[&good, &second]);
    assert!(out.status.success(), "{}", text(&out));
    for (name, n) in [("one.json", 1), ("two.json", 2)] {
        let path = out_dir.join(name);
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(written, document(n));
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // Again: the files exist and are not overwritten.
    std::fs::write(out_dir.join("one.json"), b"kept").unwrap();
    let out = open(&key, &[&good]);
    assert!(!out.status.success() && text(&out).contains("never overwritten"));
    assert_eq!(std::fs::read(out_dir.join("one.json")).unwrap(), b"kept");

    // Printed instead: one document per line.
    let out = kontor(&[
        "archive",
        "open",
        "--key",
        key.to_str().unwrap(),
        good.to_str().unwrap(),
        second.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, [document(1), document(2)]);
}
