//! The portal in process: provisioning, relay and admin over SQLite, the
//! admin API and the portal merged as `kontor serve` merges them, called
//! without a socket by a tiny cookie-keeping "browser".

#![allow(missing_docs)]

mod pages;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use kontor_admin::audit::AuditLog;
use kontor_admin::policy::DirectoryPolicy;
use kontor_admin::service::{Admin, AdminConfig};
use kontor_admin::store::AdminStore;
use kontor_provisioning::service::{Service, ServiceConfig};
use kontor_provisioning::store::SqliteStore as PStore;
use kontor_provisioning::{Kek, Pki, PkiConfig};
use kontor_relay::bus::LocalBus;
use kontor_relay::service::{Relay, RelayConfig};
use kontor_relay::store::sqlite::SqliteStore;

pub const PASSWORD: &str = "correct horse battery staple";

pub type TheAdmin = Admin<PStore, SqliteStore, LocalBus>;

pub struct Harness {
    _dir: tempfile::TempDir,
    pub admin: Arc<TheAdmin>,
    pub router: axum::Router,
    pub audit: AuditLog,
}

/// An answer.
pub struct Page {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The value of the first `name="csrf"` field.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a csrf field")
            + 19;
        self.body[at..at + 64].to_owned()
    }
}

impl Harness {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let now = time::OffsetDateTime::now_utc();
        let pki = Pki::open_or_create(
            &dir.path().join("pki"),
            &Kek::from_bytes([7; 32]),
            PkiConfig::new("Test Org", "https://enroll.test"),
            now,
            &mut rand::rng(),
        )
        .unwrap();
        let pstore = PStore::in_memory().unwrap();
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
            .unwrap(),
        );
        let (policy, events) = DirectoryPolicy::new();
        let policy = Arc::new(policy);
        let relay = Arc::new(
            Relay::new(
                SqliteStore::in_memory().unwrap(),
                pstore,
                service.deny_list(),
                LocalBus::default(),
                RelayConfig::default(),
            )
            .with_policy(policy.clone()),
        );
        let store = AdminStore::open_in_memory().unwrap();
        let audit = AuditLog::open_in_memory().unwrap();
        let config = AdminConfig::new("acme", "Acme GmbH", "https://enroll.test:8444");
        let admin = Arc::new(
            Admin::new(service, relay, store.clone(), audit.clone(), policy, config)
                .await
                .unwrap(),
        );
        tokio::spawn(admin.clone().record_events(events));
        // As src/serve.rs merges them.
        let router =
            kontor_admin::http::router(admin.clone()).merge(kontor_portal::router(admin.clone()));
        kontor_admin::service::create_owner(&store, &audit, "acme", "Acme GmbH", "owner", PASSWORD)
            .await
            .unwrap();
        Harness {
            _dir: dir,
            admin,
            router,
            audit,
        }
    }

    pub fn browser(&self) -> Browser {
        Browser {
            router: self.router.clone(),
            cookies: BTreeMap::new(),
            lang: None,
        }
    }

    /// A browser signed in as `login` through the sign-in form.
    pub async fn signed_in(&self, login: &str) -> Browser {
        let mut b = self.browser();
        let form = b.get("/portal/sign-in").await;
        let csrf = form.csrf();
        let page = b
            .post(
                "/portal/sign-in",
                &[("csrf", &csrf), ("login", login), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        b
    }

    /// Creates an account of `role` for `login`.
    pub async fn account(&self, login: &str, role: kontor_admin::role::Role) {
        let owner = self
            .admin
            .sign_in("owner", PASSWORD, None, "-")
            .await
            .unwrap();
        self.admin
            .create_account(&owner.principal, login, PASSWORD, role)
            .await
            .unwrap();
    }
}

/// Keeps cookies like a browser; follows no redirects.
pub struct Browser {
    router: axum::Router,
    pub cookies: BTreeMap<String, String>,
    pub lang: Option<&'static str>,
}

impl Browser {
    pub async fn send(&mut self, request: axum::http::request::Builder, body: Body) -> Page {
        let mut request = request;
        if !self.cookies.is_empty() {
            let cookie = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            request = request.header(header::COOKIE, cookie);
        }
        if let Some(lang) = self.lang {
            request = request.header(header::ACCEPT_LANGUAGE, lang);
        }
        let response = tower::ServiceExt::oneshot(self.router.clone(), request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        for set in headers.get_all(header::SET_COOKIE) {
            let set = set.to_str().unwrap();
            let pair = set.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() || set.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Page {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        self.send(Request::builder().method("GET").uri(path), Body::empty())
            .await
    }

    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.send(
            Request::builder()
                .method("POST")
                .uri(path)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded"),
            Body::from(body),
        )
        .await
    }

    /// The CSRF token of the signed-in session (from any signed-in page).
    pub async fn csrf(&mut self) -> String {
        self.get("/portal/settings").await.csrf()
    }
}
