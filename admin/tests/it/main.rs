//! The administration in process: provisioning, relay and admin over
//! SQLite, the admin router called without TLS (the listener's TLS is
//! tested with the other listeners).

#![allow(missing_docs)]

mod api;
mod erasure;
mod matrix;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use kontor_admin::audit::AuditLog;
use kontor_admin::policy::DirectoryPolicy;
use kontor_admin::service::{Admin, AdminConfig};
use kontor_admin::store::AdminStore;
use kontor_provisioning::service::{EnrollRequest, Service, ServiceConfig};
use kontor_provisioning::store::{SqliteStore as PStore, TokenBinding};
use kontor_provisioning::token::TokenSpec;
use kontor_provisioning::{CertSerial, DeviceId, Kek, Pki, PkiConfig};
use kontor_relay::bus::LocalBus;
use kontor_relay::service::{DeviceContext, Relay, RelayConfig};
use kontor_relay::store::sqlite::SqliteStore;

pub type TheAdmin = Admin<PStore, SqliteStore, LocalBus>;

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub service: Arc<Service<PStore>>,
    pub relay: Arc<Relay<SqliteStore, PStore, LocalBus>>,
    pub admin: Arc<TheAdmin>,
    pub router: axum::Router,
    pub audit: AuditLog,
}

/// An answer: status, headers, body as JSON (or Null) and raw.
pub struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub json: serde_json::Value,
    pub body: Vec<u8>,
}

pub const PASSWORD: &str = "correct horse battery staple";

impl Harness {
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    pub async fn with(adjust: impl FnOnce(&mut AdminConfig)) -> Self {
        Self::build(adjust, false, Vec::new()).await
    }

    /// Everything in one SQLite file, `kontor.db` in [`Harness::dir`], as
    /// `kontor serve` keeps it, with `erasers` registered.
    pub async fn on_disk(erasers: Vec<Arc<dyn kontor_admin::erasure::UserEraser>>) -> Self {
        Self::build(|_| {}, true, erasers).await
    }

    pub fn db(&self) -> std::path::PathBuf {
        self.dir.path().join("kontor.db")
    }

    async fn build(
        adjust: impl FnOnce(&mut AdminConfig),
        on_disk: bool,
        erasers: Vec<Arc<dyn kontor_admin::erasure::UserEraser>>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("kontor.db");
        let now = time::OffsetDateTime::now_utc();
        let pki = Pki::open_or_create(
            &dir.path().join("pki"),
            &Kek::from_bytes([7; 32]),
            PkiConfig::new("Test Org", "https://enroll.test"),
            now,
            &mut rand::rng(),
        )
        .unwrap();
        let pstore = if on_disk {
            PStore::open(&db).unwrap()
        } else {
            PStore::in_memory().unwrap()
        };
        let (provisioning_tx, provisioning_events) = tokio::sync::mpsc::unbounded_channel();
        let service = Arc::new(
            Service::new(
                pki,
                pstore.clone(),
                ServiceConfig {
                    relay_url: "https://relay.test".into(),
                    policy: serde_json::json!({}),
                },
            )
            .await
            .unwrap()
            .with_events(provisioning_tx),
        );
        let (policy, events) = DirectoryPolicy::new();
        let policy = Arc::new(policy);
        let relay = Arc::new(
            Relay::new(
                if on_disk {
                    SqliteStore::open(&db).unwrap()
                } else {
                    SqliteStore::in_memory().unwrap()
                },
                pstore,
                service.deny_list(),
                LocalBus::default(),
                RelayConfig::default(),
            )
            .with_policy(policy.clone()),
        );
        let (store, audit) = if on_disk {
            (AdminStore::open(&db).unwrap(), AuditLog::open(&db).unwrap())
        } else {
            (
                AdminStore::open_in_memory().unwrap(),
                AuditLog::open_in_memory().unwrap(),
            )
        };
        let mut config = AdminConfig::new("acme", "Acme GmbH", "https://enroll.test:8444");
        adjust(&mut config);
        let mut admin = Admin::new(
            service.clone(),
            relay.clone(),
            store.clone(),
            audit.clone(),
            policy,
            config,
        )
        .await
        .unwrap();
        for eraser in erasers {
            admin = admin.with_eraser(eraser);
        }
        let admin = Arc::new(admin);
        tokio::spawn(admin.clone().record_events(events));
        tokio::spawn(admin.clone().record_provisioning(provisioning_events));
        let router = kontor_admin::http::router(admin.clone());
        let h = Harness {
            dir,
            service,
            relay,
            admin,
            router,
            audit,
        };
        kontor_admin::service::create_owner(
            &store,
            &h.audit,
            "acme",
            "Acme GmbH",
            "owner",
            PASSWORD,
        )
        .await
        .unwrap();
        kontor_admin::service::create_owner(
            &store,
            &h.audit,
            "other",
            "Other AG",
            "other-owner",
            PASSWORD,
        )
        .await
        .unwrap();
        h
    }

    /// Sends a request; `auth` is an API key (Bearer) or a cookie header
    /// with its CSRF token.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        auth: &Auth,
        body: Option<(&str, Vec<u8>)>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        match auth {
            Auth::None => {}
            Auth::Key(key) => {
                request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
            }
            Auth::Session { cookie, csrf } => {
                request = request.header(header::COOKIE, cookie.clone());
                if let Some(csrf) = csrf {
                    request = request.header("x-csrf-token", csrf.clone());
                }
            }
        }
        let request = match body {
            Some((content_type, bytes)) => request
                .header(header::CONTENT_TYPE, content_type)
                .body(Body::from(bytes)),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = tower::ServiceExt::oneshot(self.router.clone(), request)
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        Answer {
            status,
            headers,
            json,
            body,
        }
    }

    pub async fn json(
        &self,
        method: &str,
        path: &str,
        auth: &Auth,
        body: serde_json::Value,
    ) -> Answer {
        self.call(
            method,
            path,
            auth,
            Some(("application/json", body.to_string().into_bytes())),
        )
        .await
    }

    /// Signs in and returns the session.
    pub async fn sign_in(&self, login: &str) -> Auth {
        let a = self
            .json(
                "POST",
                "/v1/session",
                &Auth::None,
                serde_json::json!({ "login": login, "password": PASSWORD }),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.json);
        let set_cookie = a.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        Auth::Session {
            cookie,
            csrf: a.json["csrf_token"].as_str().map(str::to_owned),
        }
    }

    /// An account of `role` in the owner's organisation (or the other
    /// one), and an API key for it.
    pub async fn key_for(&self, owner: &Auth, login: &str, role: &str) -> Auth {
        let a = self
            .json(
                "POST",
                "/v1/accounts",
                owner,
                serde_json::json!({ "login": login, "password": PASSWORD, "role": role }),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.json);
        let id = a.json["id"].as_str().unwrap().to_owned();
        let k = self
            .json(
                "POST",
                "/v1/api-keys",
                owner,
                serde_json::json!({ "account": id, "label": "tests" }),
            )
            .await;
        assert_eq!(k.status, StatusCode::CREATED, "{}", k.json);
        Auth::Key(k.json["key"].as_str().unwrap().to_owned())
    }

    /// Enrolls a device for `user` with a fresh user-bound token.
    pub async fn enroll(&self, user: &str) -> DeviceContext {
        let now = time::OffsetDateTime::now_utc();
        let spec = TokenSpec {
            binding: TokenBinding::User(user.into()),
            max_uses: 1,
            lifetime_seconds: 3600,
            label: "test".into(),
        };
        let (token, _) = self.service.create_token(&spec, now).await.unwrap();
        self.enroll_with(token.expose_secret(), user).await.unwrap()
    }

    pub async fn enroll_with(
        &self,
        token: &str,
        user: &str,
    ) -> Result<DeviceContext, kontor_provisioning::Error> {
        let now = time::OffsetDateTime::now_utc();
        let tls_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .serialize_request(&tls_key)
            .unwrap()
            .pem()
            .unwrap();
        let enrolled = self
            .service
            .enroll(
                &EnrollRequest {
                    token: token.to_owned(),
                    csr,
                    identity_key: hex::encode([9u8; 32]),
                    platform: "ios".into(),
                    device_name: format!("{user} phone"),
                    user: None,
                },
                now,
            )
            .await?;
        let device_id = DeviceId::from_hex(&enrolled.device_id).unwrap();
        let serial = CertSerial::from_hex(&enrolled.serial).unwrap();
        Ok(self.relay.authenticate(device_id, serial).await.unwrap())
    }

    /// The audit entries with this action.
    /// What a pseudonym in the trail stands for (unchanged if it is none,
    /// or erased).
    pub fn named(&self, text: &str) -> String {
        self.audit
            .names_of(&[text.to_owned()])
            .unwrap()
            .remove(text)
            .unwrap_or_else(|| text.to_owned())
    }

    /// Entries of `action`, waiting (up to 10 s) until there is one that
    /// `wanted` accepts: provisioning's events (enrollments, revocations)
    /// reach the trail from a background task, after the act.
    pub async fn audited_eventually(
        &self,
        action: &str,
        wanted: impl Fn(&kontor_admin::audit::Entry) -> bool,
    ) -> Vec<kontor_admin::audit::Entry> {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let entries = self.audited(action);
            if entries.iter().any(&wanted) || std::time::Instant::now() > until {
                return entries;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub fn audited(&self, action: &str) -> Vec<kontor_admin::audit::Entry> {
        self.audit
            .query(&kontor_admin::audit::Filter {
                action: Some(action.to_owned()),
                limit: 10_000,
                ..Default::default()
            })
            .unwrap()
    }
}

#[derive(Clone, Debug)]
pub enum Auth {
    None,
    Key(String),
    Session {
        cookie: String,
        csrf: Option<String>,
    },
}
