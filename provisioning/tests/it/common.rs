//! Helpers shared by the tests: a PKI in a temporary directory, device keys
//! and CSRs, the openssl and python3 binaries.

use std::path::Path;
use std::process::Command;

use kontor_provisioning::time::OffsetDateTime;
use kontor_provisioning::{Kek, Pki, PkiConfig};

pub const BASE_URL: &str = "https://enroll.example.org";

pub fn rng() -> impl rand::CryptoRng {
    rand::rng()
}

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

pub fn kek() -> Kek {
    Kek::from_bytes([7u8; 32])
}

pub fn new_pki(dir: &Path) -> Pki {
    Pki::open_or_create(
        dir,
        &kek(),
        PkiConfig::new("Example Org", BASE_URL),
        now(),
        &mut rng(),
    )
    .unwrap()
}

/// A device key and a CSR (PEM) signed by it.
pub fn device_csr() -> (rcgen::KeyPair, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = csr_for(&key);
    (key, csr)
}

pub fn csr_for(key: &rcgen::KeyPair) -> String {
    let mut params = rcgen::CertificateParams::new(vec!["ignored.example".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ignored");
    params.serialize_request(key).unwrap().pem().unwrap()
}

pub fn run(program: &str, args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

use std::sync::Arc;

use kontor_provisioning::http::{AppState, router};
use kontor_provisioning::service::{EnrollRequest, Service, ServiceConfig};
use kontor_provisioning::store::{PostgresStore, SqliteStore, Store, TokenBinding};
use kontor_provisioning::token::TokenSpec;

pub const ADMIN_KEY: &str = "test-admin-key";
pub const RELAY_URL: &str = "wss://relay.example.org";

pub struct Fixture<S> {
    pub dir: tempfile::TempDir,
    pub service: Arc<Service<S>>,
}

impl<S: Store> Fixture<S> {
    pub async fn new(store: S) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = new_pki(&dir.path().join("pki"));
        let config = ServiceConfig {
            relay_url: RELAY_URL.to_owned(),
            policy: serde_json::json!({ "copy_paste": false }),
        };
        let service = Arc::new(Service::new(pki, store, config).await.unwrap());
        Fixture { dir, service }
    }

    pub fn router(&self) -> axum::Router {
        router(AppState::new(
            self.service.clone(),
            Some(ADMIN_KEY),
            BASE_URL,
        ))
    }

    pub async fn token(&self, binding: TokenBinding, max_uses: u32) -> String {
        let spec = TokenSpec {
            binding,
            max_uses,
            lifetime_seconds: 3600,
            label: "test".into(),
        };
        let (token, _) = self.service.create_token(&spec, now()).await.unwrap();
        token.expose_secret().to_owned()
    }
}

pub fn enroll_request(token: &str, csr: &str) -> EnrollRequest {
    EnrollRequest {
        token: token.to_owned(),
        csr: csr.to_owned(),
        identity_key: hex::encode([0x42u8; 32]),
        platform: "android".to_owned(),
        device_name: "Pixel 9".to_owned(),
        user: None,
    }
}

pub fn sqlite() -> SqliteStore {
    SqliteStore::in_memory().unwrap()
}

/// A PostgreSQL store in a fresh schema, or `None` (after saying so) when
/// `KONTOR_TEST_POSTGRES_URL` is not set.
pub async fn postgres() -> Option<PostgresStore> {
    let Ok(url) = std::env::var("KONTOR_TEST_POSTGRES_URL") else {
        println!("skipped: KONTOR_TEST_POSTGRES_URL not set");
        return None;
    };
    let mut suffix = [0u8; 6];
    rand::Rng::fill_bytes(&mut rng(), &mut suffix);
    let schema = format!("prov_test_{}", hex::encode(suffix));
    Some(PostgresStore::connect(&url, &schema).await.unwrap())
}
