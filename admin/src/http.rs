//! The admin API over HTTPS (no client certificates): JSON in and out,
//! sessions in a `__Host-` cookie with a CSRF token for people, API keys
//! (`Authorization: Bearer kak_…`) for scripts. Every answer carries the
//! security headers; every error is the JSON `{error, message}`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use kontor_provisioning::store as pstore;
use kontor_relay::bus::Bus;
use kontor_relay::store::RelayStore;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::audit::{self, Filter};
use crate::directory::{Allowance, RestrictionSettings, Scope, UserFilter};
use crate::error::{Error, Result};
use crate::role::Role;
use crate::service::{Admin, BulkRequest, InviteRequest, Principal};

/// The session cookie: `__Host-` binds it to this origin, HTTPS and path /.
pub const SESSION_COOKIE: &str = "__Host-kontor_session";
/// The header that carries the CSRF token on state changes.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The OpenAPI description of this API.
pub const OPENAPI: &str = include_str!("../openapi.json");

type App<P, S, B> = Arc<Admin<P, S, B>>;

/// The admin API router, with security headers on every answer.
pub fn router<P, S, B>(admin: App<P, S, B>) -> Router
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route(
            "/v1/session",
            post(Api::<P, S, B>::sign_in)
                .delete(Api::<P, S, B>::sign_out)
                .get(Api::<P, S, B>::me),
        )
        .route("/v1/me/totp", post(Api::<P, S, B>::enable_totp))
        .route(
            "/v1/accounts",
            get(Api::<P, S, B>::accounts).post(Api::<P, S, B>::create_account),
        )
        .route(
            "/v1/accounts/{id}/disable",
            post(Api::<P, S, B>::disable_account),
        )
        .route(
            "/v1/api-keys",
            get(Api::<P, S, B>::api_keys).post(Api::<P, S, B>::create_api_key),
        )
        .route("/v1/api-keys/{id}", delete(Api::<P, S, B>::revoke_api_key))
        .route(
            "/v1/users",
            get(Api::<P, S, B>::users).post(Api::<P, S, B>::invite),
        )
        .route("/v1/users/import", post(Api::<P, S, B>::import))
        .route("/v1/users/bulk", post(Api::<P, S, B>::bulk))
        .route(
            "/v1/users/{id}",
            get(Api::<P, S, B>::user).delete(Api::<P, S, B>::remove_user),
        )
        .route("/v1/users/{id}/activity", get(Api::<P, S, B>::activity))
        .route("/v1/users/{id}/export", get(Api::<P, S, B>::export_user))
        .route("/v1/users/{id}/block", post(Api::<P, S, B>::block))
        .route("/v1/users/{id}/unblock", post(Api::<P, S, B>::unblock))
        .route("/v1/users/{id}/department", put(Api::<P, S, B>::move_user))
        .route("/v1/users/{id}/wipe", post(Api::<P, S, B>::wipe_user))
        .route("/v1/devices/{id}/wipe", post(Api::<P, S, B>::wipe_device))
        .route("/v1/wipes", get(Api::<P, S, B>::wipes))
        .route("/v1/departments", get(Api::<P, S, B>::barriers))
        .route(
            "/v1/departments/{name}",
            put(Api::<P, S, B>::put_department).delete(Api::<P, S, B>::delete_department),
        )
        .route("/v1/barriers", put(Api::<P, S, B>::put_barrier))
        .route("/v1/allow-list", get(Api::<P, S, B>::allow_list))
        .route(
            "/v1/allow-list/{entry}",
            put(Api::<P, S, B>::allow).delete(Api::<P, S, B>::disallow),
        )
        .route("/v1/restrictions", get(Api::<P, S, B>::restrictions))
        .route(
            "/v1/restrictions/{scope}/{id}",
            put(Api::<P, S, B>::set_restrictions).delete(Api::<P, S, B>::clear_restrictions),
        )
        .route("/v1/broadcasts", post(Api::<P, S, B>::broadcast))
        .route("/v1/audit", get(Api::<P, S, B>::audit))
        .route(
            "/v1/settings/archive-key",
            put(Api::<P, S, B>::set_archive_key),
        )
        .route(
            "/v1/archives",
            get(Api::<P, S, B>::archives).post(Api::<P, S, B>::request_archive),
        )
        .route("/v1/archives/{id}", get(Api::<P, S, B>::archive))
        .route(
            "/v1/archives/{id}/parts/{part}",
            get(Api::<P, S, B>::archive_part),
        )
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(4 * 1024 * 1024))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(admin)
}

async fn not_found() -> Error {
    Error::NotFound("route".into())
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Adds the security headers of the admin API (HSTS, a strict CSP,
/// X-Frame-Options, Referrer-Policy, nosniff, no-store) to every answer of
/// `router`: for the other HTTPS listeners that answer without client
/// certificates (enrollment).
pub fn with_security_headers(router: Router) -> Router {
    router.layer(axum::middleware::map_response(security_headers))
}

/// Headers every admin answer carries.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    let set = |h: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(
        h,
        header::STRICT_TRANSPORT_SECURITY,
        "max-age=63072000; includeSubDomains",
    );
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    );
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::CACHE_CONTROL, "no-store");
    response
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.trim().starts_with("application/json") {
        return Err(Error::UnsupportedMediaType("application/json"));
    }
    serde_json::from_slice(body).map_err(|e| Error::Invalid(format!("body: {e}")))
}

fn query<T: DeserializeOwned>(raw: Option<String>) -> Result<T> {
    let raw = raw.unwrap_or_default();
    let uri: axum::http::Uri = format!("/?{raw}")
        .parse()
        .map_err(|_| Error::Invalid("malformed query string".into()))?;
    axum::extract::Query::<T>::try_from_uri(&uri)
        .map(|q| q.0)
        .map_err(|e| Error::Invalid(format!("query: {}", e.body_text())))
}

fn ok(value: serde_json::Value) -> Response {
    axum::Json(value).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    login: String,
    password: String,
    #[serde(default)]
    totp: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    login: String,
    password: String,
    role: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewApiKey {
    account: String,
    label: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Department {
    closed: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Barrier {
    a: String,
    b: String,
    messages: bool,
    groups: bool,
    files: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveTo {
    department: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WipeOptions {
    #[serde(default)]
    revoke_now: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Broadcast {
    text: String,
    #[serde(default)]
    department: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchiveKey {
    public_key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchiveRequest {
    users: Vec<String>,
    from_ms: i64,
    to_ms: i64,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DryRun {
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    until: Option<String>,
    #[serde(default)]
    after_seq: Option<u64>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    format: Option<String>,
}

fn rfc3339_ms(field: &str, text: &str) -> Result<i64> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            Error::Invalid(format!(
                "{field} must be an RFC 3339 time such as 2026-11-29T08:00:00Z"
            ))
        })?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| Error::Invalid(format!("{field} out of range")))
}

struct Api<P, S, B>(std::marker::PhantomData<(P, S, B)>);

impl<P, S, B> Api<P, S, B>
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    /// The caller, from the session cookie or an API key. State changes by
    /// session also need the session's CSRF token in `X-CSRF-Token`.
    async fn who(
        admin: &Admin<P, S, B>,
        headers: &HeaderMap,
        method: &Method,
    ) -> Result<Principal> {
        if let Some(auth) = headers.get(header::AUTHORIZATION) {
            let key = auth
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or(Error::Unauthenticated("use Authorization: Bearer kak_…"))?;
            return admin.api_key(key.trim()).await;
        }
        let token = cookie_value(headers, SESSION_COOKIE)
            .ok_or(Error::Unauthenticated("no session; sign in"))?;
        let principal = admin.session(token).await?;
        if !matches!(*method, Method::GET | Method::HEAD) {
            let given = headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let want = principal.csrf.as_deref().unwrap_or("");
            if want.is_empty() || !crate::auth::hashes_equal(given.as_bytes(), want.as_bytes()) {
                return Err(Error::Csrf);
            }
        }
        Ok(principal)
    }

    async fn sign_in(
        State(admin): State<App<P, S, B>>,
        peer: Option<Extension<ConnectInfo<SocketAddr>>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response> {
        let req: SignIn = json_body(&headers, &body)?;
        let client = peer.map_or_else(
            || "-".to_owned(),
            |Extension(ConnectInfo(a))| a.ip().to_string(),
        );
        let signed = admin
            .sign_in(&req.login, &req.password, req.totp.as_deref(), &client)
            .await?;
        let max_age = admin.config().session_absolute.as_secs();
        let cookie = format!(
            "{SESSION_COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}",
            signed.token.as_str()
        );
        let mut response = ok(serde_json::json!({
            "login": signed.principal.login,
            "org": signed.principal.org,
            "role": signed.principal.role,
            "csrf_token": signed.principal.csrf,
            "idle_timeout_s": admin.config().session_idle.as_secs(),
        }));
        response.headers_mut().insert(
            header::SET_COOKIE,
            HeaderValue::from_str(&cookie).map_err(|_| Error::Store("cookie".into()))?,
        );
        Ok(response)
    }

    async fn sign_out(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        if let Some(token) = cookie_value(&headers, SESSION_COOKIE) {
            admin.sign_out(&p, token).await?;
        }
        let mut response = StatusCode::NO_CONTENT.into_response();
        response.headers_mut().insert(
            header::SET_COOKIE,
            HeaderValue::from_static(
                "__Host-kontor_session=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
            ),
        );
        Ok(response)
    }

    async fn me(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        Ok(ok(
            serde_json::json!({ "login": p.login, "org": p.org, "role": p.role, "csrf_token": p.csrf }),
        ))
    }

    async fn enable_totp(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        Ok(ok(admin.enable_totp(&p).await?))
    }

    async fn accounts(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        Ok(ok(
            serde_json::json!({ "accounts": admin.accounts(&p).await? }),
        ))
    }

    async fn create_account(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        let req: NewAccount = json_body(&headers, &body)?;
        let role = Role::parse(&req.role).ok_or_else(|| {
            Error::Invalid(format!(
                "role {:?}: use owner, admin, helpdesk, auditor, archivist or emm",
                req.role
            ))
        })?;
        let a = admin
            .create_account(&p, &req.login, &req.password, role)
            .await?;
        Ok((
            StatusCode::CREATED,
            axum::Json(serde_json::json!({ "id": a.id, "login": a.login, "role": a.role })),
        )
            .into_response())
    }

    async fn disable_account(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        Path(id): Path<String>,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        admin.disable_account(&p, &id).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    async fn api_keys(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        Ok(ok(
            serde_json::json!({ "api_keys": admin.api_keys(&p).await? }),
        ))
    }

    async fn create_api_key(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        let req: NewApiKey = json_body(&headers, &body)?;
        let key = admin.create_api_key(&p, &req.account, &req.label).await?;
        Ok((StatusCode::CREATED, axum::Json(key)).into_response())
    }

    async fn revoke_api_key(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        Path(id): Path<String>,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        admin.revoke_api_key(&p, &id).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    async fn users(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        RawQuery(q): RawQuery,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        let filter: UserFilter = query(q)?;
        let users = admin.users(&p, &filter).await?;
        Ok(ok(
            serde_json::json!({ "count": users.len(), "users": users }),
        ))
    }

    async fn invite(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        let req: InviteRequest = json_body(&headers, &body)?;
        Ok((
            StatusCode::CREATED,
            axum::Json(admin.invite(&p, &req).await?),
        )
            .into_response())
    }

    async fn import(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        RawQuery(q): RawQuery,
        body: Bytes,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !content_type.trim().starts_with("text/csv") {
            return Err(Error::UnsupportedMediaType("text/csv"));
        }
        let DryRun { dry_run } = query(q)?;
        Ok(ok(admin.import(&p, &body, dry_run).await?))
    }

    async fn bulk(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        let req: BulkRequest = json_body(&headers, &body)?;
        Ok(ok(admin.bulk(&p, &req).await?))
    }

    async fn user(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        Path(id): Path<String>,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        Ok(ok(admin.user(&p, &id).await?))
    }

    async fn remove_user(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        Path(id): Path<String>,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        admin.remove_user(&p, &id).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    async fn activity(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        Path(id): Path<String>,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        Ok(ok(admin.activity(&p, &id).await?))
    }

    async fn export_user(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        Path(id): Path<String>,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        Ok(ok(admin.export_user(&p, &id).await?))
    }

    async fn block(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        Path(id): Path<String>,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        admin.set_blocked(&p, &[id], true).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    async fn unblock(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        Path(id): Path<String>,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        admin.set_blocked(&p, &[id], false).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    async fn move_user(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        Path(id): Path<String>,
        body: Bytes,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        let req: MoveTo = json_body(&headers, &body)?;
        admin
            .move_users(&p, &[id], req.department.as_deref())
            .await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    async fn wipe_user(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        Path(id): Path<String>,
        body: Bytes,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        let opts: WipeOptions = if body.is_empty() {
            WipeOptions::default()
        } else {
            json_body(&headers, &body)?
        };
        Ok((
            StatusCode::ACCEPTED,
            axum::Json(admin.wipe_user(&p, &id, opts.revoke_now).await?),
        )
            .into_response())
    }

    async fn wipe_device(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        Path(id): Path<String>,
        body: Bytes,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        let opts: WipeOptions = if body.is_empty() {
            WipeOptions::default()
        } else {
            json_body(&headers, &body)?
        };
        Ok((
            StatusCode::ACCEPTED,
            axum::Json(admin.wipe_device(&p, &id, opts.revoke_now).await?),
        )
            .into_response())
    }

    async fn wipes(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        Ok(ok(serde_json::json!({ "wipes": admin.wipes(&p).await? })))
    }

    async fn barriers(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        Ok(ok(admin.barriers(&p).await?))
    }

    async fn put_department(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        Path(name): Path<String>,
        body: Bytes,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        let req: Department = json_body(&headers, &body)?;
        admin.put_department(&p, &name, req.closed).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    async fn delete_department(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        Path(name): Path<String>,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        admin.delete_department(&p, &name).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    async fn put_barrier(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        let req: Barrier = json_body(&headers, &body)?;
        let allow = Allowance {
            messages: req.messages,
            groups: req.groups,
            files: req.files,
        };
        admin.put_barrier(&p, &req.a, &req.b, allow).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    async fn allow_list(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        Ok(ok(
            serde_json::json!({ "entries": admin.allow_list(&p).await? }),
        ))
    }

    async fn allow(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        Path(entry): Path<String>,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        admin.set_allow_list_entry(&p, &entry, true).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    async fn disallow(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        Path(entry): Path<String>,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        admin.set_allow_list_entry(&p, &entry, false).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    async fn restrictions(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        Ok(ok(admin.restrictions(&p).await?))
    }

    fn scope(text: &str) -> Result<Scope> {
        Scope::parse(text).ok_or_else(|| {
            Error::Invalid(format!(
                "scope {text:?}: use org, department, group or user"
            ))
        })
    }

    async fn set_restrictions(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        Path((scope, id)): Path<(String, String)>,
        body: Bytes,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        let scope = Self::scope(&scope)?;
        let settings: RestrictionSettings = json_body(&headers, &body)?;
        let users = admin
            .set_restrictions(&p, scope, &id, Some(settings))
            .await?;
        Ok(ok(serde_json::json!({ "users_updated": users })))
    }

    async fn clear_restrictions(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        Path((scope, id)): Path<(String, String)>,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        let scope = Self::scope(&scope)?;
        let users = admin.set_restrictions(&p, scope, &id, None).await?;
        Ok(ok(serde_json::json!({ "users_updated": users })))
    }

    async fn broadcast(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        let req: Broadcast = json_body(&headers, &body)?;
        let devices = admin
            .broadcast(&p, &req.text, req.department.as_deref())
            .await?;
        Ok((
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({ "devices": devices })),
        )
            .into_response())
    }

    async fn audit(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        RawQuery(q): RawQuery,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        let q: AuditQuery = query(q)?;
        let filter = Filter {
            org: None,
            actor: q.actor,
            action: q.action,
            target: q.target,
            since_ms: q
                .since
                .as_deref()
                .map(|t| rfc3339_ms("since", t))
                .transpose()?,
            until_ms: q
                .until
                .as_deref()
                .map(|t| rfc3339_ms("until", t))
                .transpose()?,
            after_seq: q.after_seq,
            limit: q.limit.unwrap_or(1000),
        };
        let entries = admin.audit_entries(&p, filter).await?;
        // Pseudonyms are resolved beside the entries, which stay as stored
        // and so verifiable; syslog lines keep them (below).
        let format = q.format.as_deref().unwrap_or("json");
        let names = if format == "syslog" {
            audit::Names::new()
        } else {
            admin.audit_names(entries.clone()).await?
        };
        match format {
            "json" => Ok(ok(
                serde_json::json!({ "entries": entries, "names": names }),
            )),
            "jsonl" => {
                let body: String = entries
                    .iter()
                    .map(|e| audit::json_line_named(e, &names) + "\n")
                    .collect();
                Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
            }
            "syslog" => {
                // Syslog lines go to a collector off the host, where erasure
                // cannot reach: they carry pseudonyms only.
                let host = admin.config().org_id.clone();
                let body: String = entries
                    .iter()
                    .map(|e| audit::syslog_line(e, &host) + "\n")
                    .collect();
                Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
            }
            other => Err(Error::Invalid(format!(
                "format {other:?}: use json, jsonl or syslog"
            ))),
        }
    }

    async fn set_archive_key(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        let req: ArchiveKey = json_body(&headers, &body)?;
        admin.set_archive_key(&p, &req.public_key).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    async fn archives(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        Ok(ok(
            serde_json::json!({ "archives": admin.archives(&p).await? }),
        ))
    }

    async fn request_archive(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        let req: ArchiveRequest = json_body(&headers, &body)?;
        let out = admin
            .request_archive(&p, &req.users, req.from_ms, req.to_ms)
            .await?;
        Ok((StatusCode::ACCEPTED, axum::Json(out)).into_response())
    }

    async fn archive(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        Path(id): Path<String>,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        Ok(ok(admin.archive(&p, &id).await?))
    }

    async fn archive_part(
        State(admin): State<App<P, S, B>>,
        method: Method,
        headers: HeaderMap,
        Path((id, part)): Path<(String, String)>,
    ) -> Result<Response> {
        let p = Self::who(&admin, &headers, &method).await?;
        let bytes = admin.archive_part(&p, &id, &part).await?;
        Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
    }
}
