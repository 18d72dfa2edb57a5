//! `kontor demo`: the product on this machine, step by step. It starts
//! `kontor serve` on a temporary data directory, signs in to the admin API
//! as the organisation's owner, sets a department policy and a closed
//! area, invites four employees and enrolls their devices zero-touch from
//! the managed configuration an EMM would push, exchanges messages between
//! them, shows a safety number, a barrier, a broadcast, an admin wipe and a
//! wipe by wrong PINs, checks that no plaintext reached the server's disk,
//! and verifies the audit trail.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use kontor_agent::agent::{Agent, Conversation, EnrollOptions};
use kontor_managed_config::{android, apple, decode};
use kontor_relay::client::DeviceClient;

/// Options of `kontor demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the temporary directory (server and devices) for a look afterwards.
    #[arg(long)]
    keep: bool,
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

const OWNER_PASSWORD: &str = "demo owner password, not for production";

/// Creates the organisation's first owner in a fresh data directory, as
/// `kontor admin create-owner` does.
async fn create_owner(data: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(data)?;
    let db = data.join("kontor.db");
    let store = kontor_admin::store::AdminStore::open(&db)?;
    let audit = kontor_admin::audit::AuditLog::open(&db)?;
    kontor_admin::service::create_owner(
        &store,
        &audit,
        "demo-gmbh",
        "Demo GmbH",
        "owner",
        OWNER_PASSWORD,
    )
    .await?;
    Ok(())
}

/// The admin API over TLS with a signed-in session.
struct AdminApi {
    client: DeviceClient,
    cookie: String,
    csrf: String,
}

impl AdminApi {
    async fn sign_in(port: u16, root_der: &[u8]) -> anyhow::Result<Self> {
        let client = DeviceClient::anonymous(&format!("127.0.0.1:{port}"), "localhost", root_der)?;
        let body = serde_json::json!({ "login": "owner", "password": OWNER_PASSWORD });
        let answer = client
            .request_with(
                "POST",
                "/v1/session",
                &[("content-type", "application/json")],
                body.to_string().into_bytes(),
            )
            .await?;
        if answer.status != 200 {
            bail!("sign-in refused: {}", answer.code());
        }
        let cookie = answer
            .headers
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .context("no session cookie")?
            .to_owned();
        let csrf = answer.json()["csrf_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Ok(AdminApi {
            client,
            cookie,
            csrf,
        })
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<kontor_relay::client::Answer> {
        let mut headers = vec![
            ("cookie", self.cookie.as_str()),
            ("x-csrf-token", self.csrf.as_str()),
        ];
        let bytes = match body {
            Some(b) => {
                headers.push(("content-type", "application/json"));
                b.to_string().into_bytes()
            }
            None => Vec::new(),
        };
        Ok(self
            .client
            .request_with(method, path, &headers, bytes)
            .await?)
    }

    async fn expect(
        &self,
        method: &str,
        path: &str,
        body: serde_json::Value,
        status: u16,
    ) -> anyhow::Result<()> {
        let answer = self.call(method, path, Some(body)).await?;
        if answer.status != status {
            bail!("{method} {path}: {}", answer.code());
        }
        Ok(())
    }
}

fn start_server(
    data: &Path,
    device_port: u16,
    enroll_port: u16,
    admin_port: u16,
) -> anyhow::Result<Server> {
    let exe = std::env::current_exe().context("cannot find the kontor binary")?;
    let mut child = Command::new(exe)
        .args(["serve", "--data-dir"])
        .arg(data)
        .args(["--device-listen", &format!("127.0.0.1:{device_port}")])
        .args(["--enroll-listen", &format!("127.0.0.1:{enroll_port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
        .args(["--org-id", "demo-gmbh"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start kontor serve")?;
    let stdout = child.stdout.take().context("no server output")?;
    let server = Server(child);
    for line in BufReader::new(stdout).lines().take(10) {
        let line = line?;
        println!("    server: {}", line.trim_start_matches("kontor: "));
        if line.contains("root CA") {
            return Ok(server);
        }
    }
    bail!("kontor serve did not start")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn scan(dir: &Path, needle: &[u8], files: &mut usize) -> anyhow::Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if scan(&path, needle, files)? {
                return Ok(true);
            }
        } else {
            *files += 1;
            if contains(&std::fs::read(&path)?, needle) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(demo(args))
}

async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("kontor-demo-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let root_dir = if args.keep {
        tmp.keep()
    } else {
        tmp.path().to_owned()
    };
    let data = root_dir.join("server");
    let mut step = 0;
    let mut say = |text: &str| {
        step += 1;
        println!("\n[{step}] {text}");
    };

    say("The organisation starts its own Kontor server (SQLite, its own CA, TLS everywhere).");
    let (device_port, enroll_port, admin_port) = (free_port()?, free_port()?, free_port()?);
    create_owner(&data).await?;
    let server = start_server(&data, device_port, enroll_port, admin_port)?;
    let ca_pem = std::fs::read_to_string(data.join("root.pem"))?;
    let root_der = {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(ca_pem.as_bytes())?.to_vec()
    };

    say(
        "The owner signs in to the admin API, makes Sales' policy (pictures only, no copying) and HR a closed area.",
    );
    let admin = AdminApi::sign_in(admin_port, &root_der).await?;
    admin
        .expect(
            "PUT",
            "/v1/departments/vertrieb",
            serde_json::json!({ "closed": false }),
            204,
        )
        .await?;
    admin
        .expect(
            "PUT",
            "/v1/departments/personal",
            serde_json::json!({ "closed": true }),
            204,
        )
        .await?;
    admin
        .expect(
            "PUT",
            "/v1/restrictions/department/vertrieb",
            serde_json::json!({ "attachments": ["images"], "copy_paste": false }),
            200,
        )
        .await?;

    say(
        "The admin invites four employees; each invitation is a one-use token in a managed configuration the EMM pushes.",
    );
    let users = [
        ("anna@example.org", "ios", None),
        ("ben@example.org", "android", None),
        ("clara@example.org", "android", Some("vertrieb")),
        ("dora@example.org", "ios", Some("personal")),
    ];
    let mut configs = Vec::new();
    for (user, platform, department) in users {
        let invitation = admin
            .call(
                "POST",
                "/v1/users",
                Some(serde_json::json!({ "user_id": user, "department": department })),
            )
            .await?;
        if invitation.status != 201 {
            bail!("invitation refused: {}", invitation.code());
        }
        let invitation = invitation.json();
        // The EMM adds its own PIN rule: three wrong PINs wipe the phone.
        let field = if platform == "ios" {
            "apple_plist"
        } else {
            "android_json"
        };
        let config = invitation["managed_config"][field]
            .as_str()
            .unwrap_or_default();
        let decoded = if platform == "ios" {
            decode::apple_plist(config.as_bytes())?
        } else {
            decode::json(config.as_bytes())?
        };
        let mut policy = decoded.policy;
        policy.pin.max_failed_attempts = 3;
        let (format, bytes) = if platform == "ios" {
            (
                "Apple managed app configuration (plist)",
                apple::configuration_plist(&policy)?,
            )
        } else {
            (
                "Android restrictions bundle (JSON)",
                android::bundle_json(&policy)?,
            )
        };
        println!(
            "    {user:<20} {:<9} {platform:<8} gets an {format} with its token",
            department.unwrap_or("-")
        );
        configs.push((user, platform, bytes));
    }

    say(
        "Each phone enrolls zero-touch: it makes its keys, sends a CSR with the token, gets its certificate. The user only picks a PIN.",
    );
    let mut agents = Vec::new();
    for (user, platform, config) in &configs {
        let dir = root_dir.join(user.split('@').next().unwrap_or("device"));
        let agent = Agent::enroll(
            &dir,
            EnrollOptions {
                managed_config: config.as_bytes(),
                ca_pem: &ca_pem,
                pin: "482913",
                device_name: "demo phone",
                platform,
            },
        )
        .await?;
        println!(
            "    {user:<20} enrolled as device {}",
            agent.status()?.device_id
        );
        agents.push(agent);
    }

    say("Anna writes to Ben while Ben's phone is offline; the server keeps only ciphertext.");
    let marker = "Treffen um 10 Uhr in Raum 2.14";
    let sent = agents[0]
        .send_text(&Conversation::User("ben@example.org".into()), marker)
        .await?;
    println!(
        "    sealed for {} device(s), accepted by the server",
        sent.devices
    );

    say("Ben's phone comes online and catches up; then he answers.");
    let ben = agents.remove(1);
    let (ben, received) = ben.receive().await?;
    let ben = ben.context("Ben's device is still enrolled")?;
    for m in &received.messages {
        println!("    Ben reads from {}: {:?}", m.from_user, m.text);
    }
    ben.send_text(
        &Conversation::User("anna@example.org".into()),
        "Passt, bis gleich!",
    )
    .await?;
    let anna = agents.remove(0);
    let (anna, received) = anna.receive().await?;
    let anna = anna.context("Anna's device is still enrolled")?;
    for m in &received.messages {
        println!("    Anna reads from {}: {:?}", m.from_user, m.text);
    }

    say("Anna starts a group with Ben and Clara; one message, sealed once per member device.");
    let group = anna
        .create_group(
            "Projekt Nord",
            &["ben@example.org".into(), "clara@example.org".into()],
        )
        .await?;
    let group_id = Conversation::parse(&format!("group:{group}"))?;
    let sent = anna.send_text(&group_id, "Kick-off morgen um 9").await?;
    println!("    group:{group}, sealed for {} device(s)", sent.devices);
    let clara = agents.remove(0);
    let (clara, received) = clara.receive().await?;
    let clara = clara.context("Clara's device is still enrolled")?;
    for m in &received.messages {
        println!("    Clara reads in {}: {:?}", m.conversation, m.text);
    }

    say("Anna sends Ben a file: encrypted on her phone, stored by the server as an opaque blob.");
    let report: Vec<u8> = b"Quartalsbericht Q3 -- vertraulich\n".repeat(2000);
    anna.send_file(
        &Conversation::User("ben@example.org".into()),
        "bericht.txt",
        "text/plain",
        &report,
    )
    .await?;
    let (ben, _) = ben.receive().await?;
    let ben = ben.context("Ben's device is still enrolled")?;
    let index = ben
        .inbox()?
        .iter()
        .position(|m| m.attachment.is_some())
        .context("the file arrived")?;
    let (attachment, bytes) = ben.fetch_file(index).await?;
    println!(
        "    Ben saves {} ({} bytes, intact: {})",
        attachment.name,
        bytes.len(),
        bytes == report
    );

    say(
        "Clara's department allows pictures only and no copying: her phone refuses, naming the policy.",
    );
    match clara
        .send_file(
            &Conversation::User("anna@example.org".into()),
            "liste.xlsx",
            "application/vnd.ms-excel",
            b"x",
        )
        .await
    {
        Err(e) => println!("    sending a spreadsheet: {e}"),
        Ok(_) => bail!("a forbidden file was sent"),
    }
    match clara.export_text(0) {
        Err(e) => println!("    copying a message: {e}"),
        Ok(_) => bail!("copying was allowed"),
    }

    say("Anna and Ben compare safety numbers to be sure no one swapped their keys.");
    for (_, number) in anna.safety_number("ben@example.org").await? {
        println!("    {number}");
    }

    say("Nothing readable reached the server's disk.");
    let mut files = 0;
    let found =
        scan(&data, marker.as_bytes(), &mut files)? || scan(&data, b"Quartalsbericht", &mut files)?;
    println!(
        "    scanned the server's data directory: plaintext {}",
        if found { "FOUND" } else { "not found" }
    );
    if found {
        bail!("plaintext found on the server");
    }

    say(
        "HR is a closed area: Ben cannot write to Dora; the relay refuses and the audit trail records it.",
    );
    let dora = agents.remove(0);
    match ben
        .send_text(
            &Conversation::User("dora@example.org".into()),
            "Frage zum Urlaub",
        )
        .await
    {
        Err(e) => println!("    Ben to Dora: {e}"),
        Ok(_) => bail!("the barrier let a message through"),
    }
    drop(dora);

    say("The admin broadcasts to every phone; it arrives as a message from the administration.");
    admin
        .expect(
            "POST",
            "/v1/broadcasts",
            serde_json::json!({ "text": "Das Büro bleibt am Freitag geschlossen." }),
            202,
        )
        .await?;
    let (anna, received) = anna.receive().await?;
    let anna = anna.context("Anna's device is still enrolled")?;
    for m in &received.messages {
        println!("    Anna reads from {}: {:?}", m.from_user, m.text);
    }

    say(
        "Ben leaves the company: the admin wipes his phone; at its next contact it destroys its data and confirms.",
    );
    let ben_id = ben.status()?.device_id;
    admin
        .expect(
            "POST",
            &format!("/v1/devices/{ben_id}/wipe"),
            serde_json::json!({}),
            202,
        )
        .await?;
    let ben_dir = ben.dir();
    let (ben, received) = ben.receive().await?;
    println!(
        "    wipe confirmed by the device: {}",
        received.wiped && ben.is_none()
    );
    let wipes = admin.call("GET", "/v1/wipes", None).await?;
    let state = wipes.json()["wipes"][0]["state"].clone();
    if state != "confirmed" {
        bail!(
            "the admin API shows the wipe as {}: {}",
            state,
            String::from_utf8_lossy(&wipes.body)
        );
    }
    println!("    the admin API shows the wipe as {state}");
    match Agent::open(&ben_dir, "482913") {
        Err(e) => println!("    opening Ben's phone afterwards: {e}"),
        Ok(_) => bail!("a wiped store opened"),
    }

    say("Clara's phone is stolen; the thief guesses the PIN three times (the policy's limit).");
    let clara_dir = clara.dir();
    drop(clara);
    for guess in ["000000", "123456", "111111"] {
        match Agent::open(&clara_dir, guess) {
            Err(e) => println!("    PIN {guess}: {e}"),
            Ok(_) => bail!("a wrong PIN opened the store"),
        }
    }
    match Agent::open(&clara_dir, "482913") {
        Err(e) => println!("    even the right PIN now: {e}"),
        Ok(_) => bail!("a wiped store opened"),
    }
    drop(anna);

    say("Every admin action, enrollment, refusal and wipe is in the hash-chained audit trail.");
    let trail = admin
        .call("GET", "/v1/audit?limit=10000", None)
        .await?
        .json();
    let entries = trail["entries"].as_array().map_or(0, Vec::len);
    drop(server);
    let report = kontor_admin::audit::verify_database(&data.join("kontor.db"))?;
    println!("    {entries} entries; kontor audit verify: {report}");
    if !report.is_intact() {
        bail!("the audit trail does not verify");
    }

    println!(
        "\nDone in {:.1?}: four devices enrolled from admin invitations, 1:1, group and file messages end to end, restrictions and a barrier enforced, a broadcast, two devices wiped, the audit trail intact.",
        started.elapsed()
    );
    if args.keep {
        println!("Everything is kept in {}", root_dir.display());
    }
    Ok(ExitCode::SUCCESS)
}
