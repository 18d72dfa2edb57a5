//! `kontor serve` as an operator starts it: data directory created, both
//! listeners over TLS, the device API refusing clients without a
//! certificate, the same CA after a restart.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use crate::root;

pub struct Server {
    pub child: Child,
    pub device_port: u16,
    pub enroll_port: u16,
    pub admin_port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn start(data: &std::path::Path) -> Server {
    start_on(data, free_port(), free_port(), &[])
}

/// Starts `kontor serve` on given ports, with the admin key `test-admin`
/// and `extra` arguments.
pub fn start_on(
    data: &std::path::Path,
    device_port: u16,
    enroll_port: u16,
    extra: &[String],
) -> Server {
    let admin_port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kontor"))
        .args(["serve", "--admin-key", "test-admin", "--data-dir"])
        .arg(data)
        .args(["--device-listen", &format!("127.0.0.1:{device_port}")])
        .args(["--enroll-listen", &format!("127.0.0.1:{enroll_port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
        .args(["--org-id", "acme"])
        .args(extra)
        .current_dir(root())
        .stdout(Stdio::piped())
        // The server's log, beside its data directory, for the tests to read.
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(data.with_extension("log"))
                .unwrap(),
        )
        .env("RUST_LOG", "debug")
        .spawn()
        .expect("kontor serve starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    // The last start-up line names the root CA; wait for it (bounded).
    for _ in 0..10 {
        match lines.next() {
            Some(Ok(line)) if line.contains("root CA") => {
                return Server {
                    child,
                    device_port,
                    enroll_port,
                    admin_port,
                };
            }
            Some(Ok(_)) => continue,
            _ => break,
        }
    }
    let _ = child.kill();
    panic!("kontor serve did not start");
}

fn curl(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn serve_answers_over_tls_and_keeps_its_ca_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data);
    let ca = data.join("root.pem");
    let ca = ca.to_str().unwrap();
    let root_pem = std::fs::read_to_string(ca).unwrap();

    // Enrollment API: TLS with the organisation's server certificate, HSTS.
    let (code, text) = curl(&[
        "-i",
        "--cacert",
        ca,
        &format!("https://localhost:{}/pki/root.pem", server.enroll_port),
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.to_lowercase()
            .contains("strict-transport-security: max-age=63072000"),
        "{text}"
    );
    assert!(text.contains(root_pem.trim()), "{text}");
    let (code, text) = curl(&[
        "--cacert",
        ca,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("https://localhost:{}/pki/crl.der", server.enroll_port),
    ]);
    assert_eq!((code, text.as_str()), (Some(0), "200"));

    // Device API: no client certificate, no connection.
    let (code, text) = curl(&[
        "--cacert",
        ca,
        &format!("https://localhost:{}/v1/me", server.device_port),
    ]);
    assert_ne!(code, Some(0), "{text}");

    // TLS 1.1 is refused.
    let (code, _) = curl(&[
        "--cacert",
        ca,
        "--tls-max",
        "1.1",
        &format!("https://localhost:{}/pki/root.pem", server.enroll_port),
    ]);
    assert_ne!(code, Some(0));

    drop(server);
    let again = start(&data);
    assert_eq!(
        std::fs::read_to_string(data.join("root.pem")).unwrap(),
        root_pem
    );
    let (code, text) = curl(&[
        "--cacert",
        ca,
        &format!("https://localhost:{}/pki/root.pem", again.enroll_port),
    ]);
    assert_eq!(code, Some(0), "{text}");
}

/// Creates a one-use enrollment token for `user` through the admin API.
pub async fn create_token(server: &Server, root: &[u8], user: &str) -> String {
    let enroll = kontor_relay::client::DeviceClient::anonymous(
        &format!("127.0.0.1:{}", server.enroll_port),
        "localhost",
        root,
    )
    .unwrap();
    let token = enroll
        .request_with(
            "POST",
            "/v1/admin/tokens",
            &[("authorization", "Bearer test-admin"), ("content-type", "application/json")],
            serde_json::to_vec(&serde_json::json!({ "binding": "user", "bound_to": user, "lifetime_seconds": 600 }))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(token.status, 201, "{:?}", token.json());
    token.json()["token"].as_str().unwrap().to_owned()
}

/// The organisation root (DER) a started server wrote.
pub fn root_der(data: &std::path::Path) -> Vec<u8> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_file(data.join("root.pem"))
        .unwrap()
        .to_vec()
}
