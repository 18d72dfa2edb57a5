//! The administration end to end: `kontor serve` with its admin listener,
//! an owner created by `kontor admin create-owner`, real agents enrolled
//! from invitations the admin API made, and the admin's decisions taking
//! effect on them at once.

use std::path::Path;
use std::process::{Command, Output};

use kontor_relay::client::{Answer, DeviceClient};

use crate::serve::{Server, root_der};

pub const OWNER_PASSWORD: &str = "Kontor-e2e owner password";

pub fn agent(dir: &Path, pin: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kontor"))
        .args(["agent", "--dir"])
        .arg(dir)
        .args(args)
        .env("KONTOR_PIN", pin)
        .output()
        .unwrap()
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// An admin signed in over TLS, with the session cookie and CSRF token.
pub struct AdminSession {
    client: DeviceClient,
    cookie: String,
    csrf: String,
}

impl AdminSession {
    /// Creates the owner (before the server starts) is done by the caller;
    /// this signs in.
    pub async fn sign_in(server: &Server, root: &[u8], login: &str, password: &str) -> Self {
        let client = DeviceClient::anonymous(
            &format!("127.0.0.1:{}", server.admin_port),
            "localhost",
            root,
        )
        .unwrap();
        let a = client
            .request_with(
                "POST",
                "/v1/session",
                &[("content-type", "application/json")],
                serde_json::to_vec(&serde_json::json!({ "login": login, "password": password }))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(a.status, 200, "{:?}", a.json());
        let cookie = a.headers["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let csrf = a.json()["csrf_token"].as_str().unwrap().to_owned();
        AdminSession {
            client,
            cookie,
            csrf,
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> Answer {
        let mut headers = vec![
            ("cookie", self.cookie.as_str()),
            ("x-csrf-token", self.csrf.as_str()),
        ];
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

    /// `GET path` until `ready` accepts its JSON answer, for up to 10 s
    /// (the trail and the activity table are written by background
    /// tasks); returns the last answer.
    pub async fn get_until(
        &self,
        path: &str,
        ready: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let answer = self.call("GET", path, None).await.json();
            if ready(&answer) || std::time::Instant::now() > until {
                return answer;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// Creates the data directory and its owner `owner`, then starts the
/// server.
pub fn start_with_owner(data: &Path) -> Server {
    start_with_owner_and(data, &[])
}

/// As [`start_with_owner`], with `extra` arguments for `kontor serve`.
pub fn start_with_owner_and(data: &Path, extra: &[String]) -> Server {
    std::fs::create_dir_all(data).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kontor"))
        .args([
            "admin",
            "create-owner",
            "--login",
            "owner",
            "--org-id",
            "acme",
            "--data-dir",
        ])
        .arg(data)
        .env("KONTOR_ADMIN_PASSWORD", OWNER_PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    crate::serve::start_on(
        data,
        crate::serve::free_port(),
        crate::serve::free_port(),
        extra,
    )
}

/// Invites `user` and enrolls an agent for them from the invitation's
/// managed configuration.
pub async fn invite_and_enroll(
    admin: &AdminSession,
    dir: &Path,
    ca: &Path,
    user: &str,
    department: Option<&str>,
    pin: &str,
) -> std::path::PathBuf {
    let a = admin
        .call(
            "POST",
            "/v1/users",
            Some(serde_json::json!({ "user_id": user, "department": department })),
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.json());
    let config = dir.join(format!("{user}.plist"));
    std::fs::write(
        &config,
        a.json()["managed_config"]["apple_plist"].as_str().unwrap(),
    )
    .unwrap();
    let home = dir.join(user.split('@').next().unwrap());
    let out = agent(
        &home,
        pin,
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
    home
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barriers_restrictions_and_a_bulk_block_take_effect_on_real_agents_and_the_trail_verifies()
{
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = start_with_owner(&data);
    let root = root_der(&data);
    let ca = data.join("root.pem");
    let admin = AdminSession::sign_in(&server, &root, "owner", OWNER_PASSWORD).await;

    for (name, closed) in [("hr", true), ("sales", false)] {
        let a = admin
            .call(
                "PUT",
                &format!("/v1/departments/{name}"),
                Some(serde_json::json!({ "closed": closed })),
            )
            .await;
        assert_eq!(a.status, 204, "{:?}", a.json());
    }
    let anna = invite_and_enroll(
        &admin,
        dir.path(),
        &ca,
        "anna@acme.test",
        Some("hr"),
        "482913",
    )
    .await;
    let ben = invite_and_enroll(
        &admin,
        dir.path(),
        &ca,
        "ben@acme.test",
        Some("sales"),
        "482913",
    )
    .await;
    let carl = invite_and_enroll(
        &admin,
        dir.path(),
        &ca,
        "carl@acme.test",
        Some("sales"),
        "482913",
    )
    .await;

    // The barrier: Ben (sales) cannot write to Anna (closed HR).
    let out = agent(
        &ben,
        "482913",
        &["send", "--to", "anna@acme.test", "Hallo Anna"],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("anna@acme.test"), "{}", text(&out));
    // Ben and Carl, both in sales, can.
    let out = agent(
        &ben,
        "482913",
        &["send", "--to", "carl@acme.test", "Hallo Carl"],
    );
    assert!(out.status.success(), "{}", text(&out));
    // The refusal is in the trail, found by its filter.
    let refused = admin
        .get_until("/v1/audit?action=relay.refused&actor=ben@acme.test", |a| {
            !a["entries"].as_array().unwrap().is_empty()
        })
        .await;
    // The trail names users by pseudonym; the answer resolves them.
    let target = refused["entries"][0]["target"].as_str().unwrap_or_default();
    assert!(target.starts_with("pseudonym:"), "{refused}");
    assert_eq!(refused["names"][target], "anna@acme.test", "{refused}");

    // A restriction: sales may send no files and may not copy.
    let a = admin
        .call(
            "PUT",
            "/v1/restrictions/department/sales",
            Some(serde_json::json!({ "attachments": [], "copy_paste": false })),
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.json());
    let out = agent(&ben, "482913", &["receive"]);
    assert!(out.status.success(), "{}", text(&out));
    let file = dir.path().join("offer.pdf");
    std::fs::write(&file, b"%PDF-1.7 offer").unwrap();
    let out = agent(
        &ben,
        "482913",
        &[
            "send-file",
            "--to",
            "carl@acme.test",
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
    // Carl has not fetched the new policy yet: his agent would send, the relay refuses the upload.
    let out = agent(
        &carl,
        "482913",
        &[
            "send-file",
            "--to",
            "ben@acme.test",
            "--file",
            file.to_str().unwrap(),
            "--media-type",
            "application/pdf",
        ],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("attachments"), "{}", text(&out));
    let out = agent(&carl, "482913", &["receive"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = agent(&carl, "482913", &["copy", "--index", "0"]);
    assert!(
        !out.status.success() && text(&out).contains("`allow_copy_paste`"),
        "{}",
        text(&out)
    );

    // Activity: counts only, written once a second.
    let activity = admin
        .get_until("/v1/users/ben@acme.test/activity", |a| {
            a["days"][0]["sent"] == 1
        })
        .await;
    assert_eq!(activity["days"][0]["sent"], 1, "{activity}");

    // A broadcast to HR reaches Anna as a message from the administration.
    let a = admin
        .call(
            "POST",
            "/v1/broadcasts",
            Some(
                serde_json::json!({ "text": "Betriebsversammlung um 14 Uhr", "department": "hr" }),
            ),
        )
        .await;
    assert_eq!(a.status, 202, "{:?}", a.json());
    assert_eq!(a.json()["devices"], 1);
    let out = agent(&anna, "482913", &["receive"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("from the administration")
            && text(&out).contains("Betriebsversammlung"),
        "{}",
        text(&out)
    );

    // A bulk block of the filtered set (sales) takes effect at once.
    let preview = admin
        .call("POST", "/v1/users/bulk", Some(serde_json::json!({ "filter": { "department": "sales" }, "operation": { "action": "block" }, "dry_run": true })))
        .await;
    assert_eq!(preview.json()["count"], 2, "{:?}", preview.json());
    let done = admin
        .call("POST", "/v1/users/bulk", Some(serde_json::json!({ "filter": { "department": "sales" }, "operation": { "action": "block" } })))
        .await;
    assert_eq!(done.status, 200, "{:?}", done.json());
    let out = agent(&carl, "482913", &["receive"]);
    assert!(
        !out.status.success() && text(&out).contains("blocked"),
        "{}",
        text(&out)
    );
    let out = agent(&anna, "482913", &["receive"]);
    assert!(out.status.success(), "{}", text(&out));

    // Carl leaves and is erased: the trail keeps what was done under his
    // pseudonym only, and still verifies.
    let removed = admin.call("DELETE", "/v1/users/carl@acme.test", None).await;
    assert_eq!(removed.status, 204, "{:?}", removed.json());

    // The trail verifies; one changed byte in the stored trail fails it.
    drop(server);
    let verify = |data: &Path| {
        Command::new(env!("CARGO_BIN_EXE_kontor"))
            .args(["audit", "verify", "--data-dir"])
            .arg(data)
            .output()
            .unwrap()
    };
    let out = verify(&data);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("intact"), "{}", text(&out));
    let export = Command::new(env!("CARGO_BIN_EXE_kontor"))
        .args(["audit", "export", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(export.status.success(), "{}", text(&export));
    let lines = String::from_utf8_lossy(&export.stdout).into_owned();
    assert!(lines.contains("\"ben@acme.test\""), "ben is resolved");
    assert!(
        !lines.contains("carl@acme.test"),
        "the erased user is named"
    );
    assert!(
        lines
            .lines()
            .any(|l| l.contains("\"action\":\"user.remove\"") && l.contains("pseudonym:")),
        "{lines}"
    );
    let db = rusqlite_free_edit(&data.join("kontor.db"), b"ben@acme.test", b"bex@acme.test");
    assert!(db, "the trail names ben");
    let out = verify(&data);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("entry"), "{}", text(&out));
}

/// Changes one byte of one stored audit entry, as someone with write
/// access to the database would: the append-only triggers dropped first.
/// Returns whether an entry naming `from` was found.
fn rusqlite_free_edit(db: &Path, from: &[u8], to: &[u8]) -> bool {
    let conn = rusqlite::Connection::open(db).unwrap();
    let triggers: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'admin_audit'",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for t in triggers {
        conn.execute_batch(&format!("DROP TRIGGER \"{t}\""))
            .unwrap();
    }
    let (from, to) = (
        std::str::from_utf8(from).unwrap(),
        std::str::from_utf8(to).unwrap(),
    );
    // The trail names users by pseudonym: edit the entry of the pseudonym
    // that stands for `from`.
    let from: String = conn
        .query_row(
            "SELECT pseudonym FROM admin_audit_pseudonyms WHERE clear = ?1",
            [from],
            |r| r.get(0),
        )
        .unwrap_or_else(|_| from.to_owned());
    let to = format!("{to}-{}", &from[..from.len().min(12)]);
    conn.execute(
        "UPDATE admin_audit SET actor = ?2 WHERE seq = (SELECT MIN(seq) FROM admin_audit WHERE actor = ?1)",
        [from.as_str(), to.as_str()],
    )
    .unwrap()
        == 1
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_round_trip_yields_the_messages_of_the_range_only_and_every_access_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = start_with_owner(&data);
    let root = root_der(&data);
    let ca = data.join("root.pem");
    let owner = AdminSession::sign_in(&server, &root, "owner", OWNER_PASSWORD).await;
    // Separation of duties: an archivist requests and reads archives.
    let a = owner
        .call("POST", "/v1/accounts", Some(serde_json::json!({ "login": "archie", "password": OWNER_PASSWORD, "role": "archivist" })))
        .await;
    assert_eq!(a.status, 201, "{:?}", a.json());
    let key_file = dir.path().join("archive.key");
    let out = Command::new(env!("CARGO_BIN_EXE_kontor"))
        .args(["archive", "keygen", "--out"])
        .arg(&key_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let public = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let a = owner
        .call(
            "PUT",
            "/v1/settings/archive-key",
            Some(serde_json::json!({ "public_key": public })),
        )
        .await;
    assert_eq!(a.status, 204, "{:?}", a.json());

    let anna = invite_and_enroll(&owner, dir.path(), &ca, "anna@acme.test", None, "482913").await;
    let ben = invite_and_enroll(&owner, dir.path(), &ca, "ben@acme.test", None, "482913").await;
    let send = |message: &str| {
        let out = agent(&anna, "482913", &["send", "--to", "ben@acme.test", message]);
        assert!(out.status.success(), "{}", text(&out));
    };
    send("before the range");
    std::thread::sleep(std::time::Duration::from_millis(30));
    let from_ms = now_ms();
    send("inside the range, one");
    send("inside the range, two");
    let to_ms = now_ms();
    std::thread::sleep(std::time::Duration::from_millis(30));
    send("after the range");
    let out = agent(&ben, "482913", &["receive"]);
    assert!(out.status.success(), "{}", text(&out));

    let archivist = AdminSession::sign_in(&server, &root, "archie", OWNER_PASSWORD).await;
    let a = archivist
        .call("POST", "/v1/archives", Some(serde_json::json!({ "users": ["ben@acme.test"], "from_ms": from_ms, "to_ms": to_ms })))
        .await;
    assert_eq!(a.status, 202, "{:?}", a.json());
    let id = a.json()["id"].as_str().unwrap().to_owned();
    // An admin may not read archives; the archivist may not read users.
    let a = owner
        .call(
            "POST",
            "/v1/accounts",
            Some(
                serde_json::json!({ "login": "adam", "password": OWNER_PASSWORD, "role": "admin" }),
            ),
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.json());
    let adam = AdminSession::sign_in(&server, &root, "adam", OWNER_PASSWORD).await;
    assert_eq!(
        adam.call("GET", &format!("/v1/archives/{id}"), None)
            .await
            .status,
        403
    );
    assert_eq!(archivist.call("GET", "/v1/users", None).await.status, 403);

    let out = agent(&ben, "482913", &["receive"]);
    assert!(out.status.success(), "{}", text(&out));
    let status = archivist
        .call("GET", &format!("/v1/archives/{id}"), None)
        .await
        .json();
    assert_eq!(status["devices"][0]["state"], "exported", "{status}");
    let parts = status["parts"].as_array().unwrap().clone();
    assert!(!parts.is_empty(), "{status}");
    let mut files = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let a = archivist
            .call(
                "GET",
                &format!("/v1/archives/{id}/parts/{}", part["part"].as_str().unwrap()),
                None,
            )
            .await;
        assert_eq!(a.status, 200);
        let path = dir.path().join(format!("part{i}.kta"));
        std::fs::write(&path, &a.body).unwrap();
        files.push(path);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_kontor"))
        .args(["archive", "open", "--key"])
        .arg(&key_file)
        .args(&files)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let opened = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut texts = Vec::new();
    for line in opened.lines().filter(|l| l.starts_with('{')) {
        let doc: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(doc["request"], id.as_str());
        for m in doc["messages"].as_array().unwrap() {
            texts.push(m["text"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        texts,
        vec!["inside the range, one", "inside the range, two"],
        "{opened}"
    );
    // The server never held the text.
    for file in [data.join("kontor.db"), data.with_extension("log")] {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(16).any(|w| w == b"inside the range"),
            "{}",
            file.display()
        );
    }
    // Request and downloads are in the trail, with who did them.
    let trail = owner
        .call("GET", "/v1/audit?actor=archie", None)
        .await
        .json();
    let actions: Vec<&str> = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"archive.request"), "{trail}");
    assert_eq!(
        actions.iter().filter(|a| **a == "archive.download").count(),
        files.len(),
        "{trail}"
    );
}
