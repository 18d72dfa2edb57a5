//! Sessions in the browser: the sign-in form, the session cookie the JSON
//! API uses too, the CSRF field on every form, the language switcher, and
//! the extractors every page starts with.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Extension, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use kontor_admin::Error;
use kontor_admin::auth;
use kontor_admin::http::SESSION_COOKIE;
use kontor_admin::service::{Admin, Principal};
use kontor_provisioning::store as pstore;
use kontor_relay::bus::Bus;
use kontor_relay::store::RelayStore;
use maud::html;

use crate::i18n::{LANG_COOKIE, Lang};
use crate::view::{self, Ctx, Who};

type App<P, S, B> = Arc<Admin<P, S, B>>;

/// Binds the sign-in form to the browser that loaded it (double submit):
/// a cross-site page cannot read it, so it cannot sign a victim into the
/// attacker's account.
const SIGN_IN_COOKIE: &str = "__Host-kontor_signin";

/// Most form fields read from one request.
const FIELDS_MAX: usize = 20_000;

/// The value of cookie `name`.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A signed-in administrator: every page's first extractor. Without a live
/// session the request goes to the sign-in page.
pub struct Signed {
    pub ctx: Ctx,
    pub p: Principal,
    token: String,
}

impl<P, S, B> FromRequestParts<App<P, S, B>> for Signed
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        admin: &App<P, S, B>,
    ) -> Result<Self, Self::Rejection> {
        let anonymous = Ctx::new(&parts.headers, &parts.uri, None);
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(Redirect::to("/portal/sign-in").into_response());
        };
        let p = match admin.session(token).await {
            Ok(p) => p,
            Err(e) => return Err(view::error_page(&anonymous, &e)),
        };
        let who = Who {
            login: p.login.clone(),
            org: p.org.clone(),
            role: p.role,
            csrf: p.csrf.clone().unwrap_or_default(),
        };
        Ok(Signed {
            ctx: Ctx::new(&parts.headers, &parts.uri, Some(who)),
            p,
            token: token.to_owned(),
        })
    }
}

/// A form posted by a signed-in administrator, its CSRF field checked.
pub struct SignedForm {
    pub ctx: Ctx,
    pub p: Principal,
    pub form: Form,
    token: String,
}

impl<P, S, B> FromRequest<App<P, S, B>> for SignedForm
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    type Rejection = Response;

    async fn from_request(request: Request, admin: &App<P, S, B>) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        let signed = Signed::from_request_parts(&mut parts, admin).await?;
        let fail = |e: Error| view::error_page(&signed.ctx, &e);
        // Browsers say where a request comes from; a cross-site form post
        // is refused before its body is read.
        if parts
            .headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == "cross-site")
        {
            return Err(fail(Error::Csrf));
        }
        let bytes = axum::body::to_bytes(body, crate::BODY_BYTES_MAX)
            .await
            .map_err(|_| fail(Error::Invalid("the form is too large".into())))?;
        let form = Form::parse(&parts.headers, &bytes).map_err(fail)?;
        let want = signed.p.csrf.as_deref().unwrap_or("");
        let given = form.get("csrf").unwrap_or("");
        if want.is_empty() || !auth::hashes_equal(given.as_bytes(), want.as_bytes()) {
            return Err(fail(Error::Csrf));
        }
        Ok(SignedForm {
            ctx: signed.ctx,
            p: signed.p,
            form,
            token: signed.token,
        })
    }
}

/// The fields of a posted form, in order (a name may repeat: checkboxes).
#[derive(Debug, Default)]
pub struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    /// Parses an `application/x-www-form-urlencoded` or
    /// `multipart/form-data` body; anything else is refused.
    pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Form, Error> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim();
        let fields: Vec<(String, String)> =
            if content_type.starts_with("application/x-www-form-urlencoded") {
                form_urlencoded::parse(body)
                    .take(FIELDS_MAX + 1)
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            } else if content_type.starts_with("multipart/form-data") {
                let boundary = content_type
                    .split(';')
                    .find_map(|p| p.trim().strip_prefix("boundary="))
                    .map(|b| b.trim_matches('"'))
                    .ok_or(Error::Invalid("multipart form without boundary".into()))?;
                multipart(body, boundary)?
            } else {
                return Err(Error::UnsupportedMediaType(
                    "application/x-www-form-urlencoded",
                ));
            };
        if fields.len() > FIELDS_MAX {
            return Err(Error::Invalid("the form has too many fields".into()));
        }
        Ok(Form { fields })
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `name`, trimmed, if not empty.
    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.fields
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Whether a checkbox `name` was ticked.
    pub fn checked(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// The parts of a `multipart/form-data` body as (name, text) pairs. Files
/// are read as UTF-8 text (the only upload is a CSV file).
fn multipart(body: &[u8], boundary: &str) -> Result<Vec<(String, String)>, Error> {
    let bad = || Error::Invalid("malformed multipart form".into());
    if boundary.is_empty() || boundary.len() > 200 {
        return Err(bad());
    }
    let delimiter = format!("\r\n--{boundary}");
    // The first delimiter has no CRLF before it.
    let mut data = Vec::with_capacity(body.len() + 2);
    data.extend_from_slice(b"\r\n");
    data.extend_from_slice(body);
    let mut out = Vec::new();
    let mut rest: &[u8] = &data;
    let first = find(rest, delimiter.as_bytes()).ok_or_else(bad)?;
    rest = &rest[first + delimiter.len()..];
    loop {
        if rest.starts_with(b"--") {
            return Ok(out);
        }
        rest = rest.strip_prefix(b"\r\n").ok_or_else(bad)?;
        let end = find(rest, delimiter.as_bytes()).ok_or_else(bad)?;
        let part = &rest[..end];
        rest = &rest[end + delimiter.len()..];
        let split = find(part, b"\r\n\r\n").ok_or_else(bad)?;
        let head = String::from_utf8_lossy(&part[..split]);
        let content = &part[split + 4..];
        let name = head
            .lines()
            .find(|l| {
                l.to_ascii_lowercase()
                    .starts_with("content-disposition: form-data")
            })
            .and_then(|l| {
                l.split(';')
                    .find_map(|p| p.trim().strip_prefix("name="))
                    .map(|n| n.trim_matches('"').to_owned())
            })
            .ok_or_else(bad)?;
        out.push((name, String::from_utf8_lossy(content).into_owned()));
        if out.len() > FIELDS_MAX {
            return Err(Error::Invalid("the form has too many fields".into()));
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `GET /portal/`: the first page the role may use.
pub async fn home<P, S, B>(s: Signed, State(_): State<App<P, S, B>>) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    Redirect::to(view::home_of(s.p.role)).into_response()
}

/// `GET /portal/sign-in`.
pub async fn sign_in_page(headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::new(&headers, &uri, None);
    let message = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "m")
        .and_then(|(_, v)| match v.as_ref() {
            "expired" => Some(ctx.t("signin.expired")),
            "signed_out" => Some(ctx.t("signin.signed_out")),
            _ => None,
        });
    sign_in_form(&ctx, StatusCode::OK, None, message, "")
}

fn sign_in_form(
    ctx: &Ctx,
    status: StatusCode,
    error: Option<String>,
    message: Option<&str>,
    login: &str,
) -> Response {
    let token = auth::new_secret();
    let body = html! {
        @if let Some(m) = message {
            p class="notice" role="status" { (m) }
        }
        @if let Some(e) = &error {
            p class="error" role="alert" id="signin-error" { (e) }
        }
        form method="post" action="/portal/sign-in" class="stack narrow" {
            input type="hidden" name="csrf" value=(token.as_str());
            label for="login" { (ctx.t("signin.login")) }
            input id="login" name="login" type="text" autocomplete="username" required autofocus value=(login);
            label for="password" { (ctx.t("signin.password")) }
            input id="password" name="password" type="password" autocomplete="current-password" required;
            label for="totp" { (ctx.t("signin.totp")) }
            input id="totp" name="totp" type="text" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" aria-describedby="totp-hint";
            p class="hint" id="totp-hint" { (ctx.t("signin.totp_hint")) }
            button type="submit" { (ctx.t("signin.submit")) }
        }
    };
    let mut response = view::page_with_status(ctx, status, ctx.t("signin.title"), body);
    let cookie = format!(
        "{SIGN_IN_COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=3600",
        token.as_str()
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// `POST /portal/sign-in`: name, password and (when enabled) a TOTP code,
/// through [`Admin::sign_in`]; sets the session cookie the JSON API reads.
pub async fn sign_in<P, S, B>(
    State(admin): State<App<P, S, B>>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let ctx = Ctx::new(&headers, &uri, None);
    let form = match Form::parse(&headers, &body) {
        Ok(f) => f,
        Err(e) => return view::error_page(&ctx, &e),
    };
    let want = cookie(&headers, SIGN_IN_COOKIE).unwrap_or("");
    let given = form.get("csrf").unwrap_or("");
    let login = form.get("login").unwrap_or("").trim().to_owned();
    if want.is_empty() || !auth::hashes_equal(given.as_bytes(), want.as_bytes()) {
        return sign_in_form(
            &ctx,
            StatusCode::FORBIDDEN,
            Some(ctx.t("signin.form_expired").to_owned()),
            None,
            &login,
        );
    }
    let client = peer.map_or_else(
        || "-".to_owned(),
        |Extension(ConnectInfo(a))| a.ip().to_string(),
    );
    let password = form.get("password").unwrap_or("");
    let totp = form.text("totp");
    match admin
        .sign_in(&login, password, totp.as_deref(), &client)
        .await
    {
        Ok(signed) => {
            let max_age = admin.config().session_absolute.as_secs();
            let session = format!(
                "{SESSION_COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}",
                signed.token.as_str()
            );
            let mut response = Redirect::to(view::home_of(signed.principal.role)).into_response();
            if let Ok(v) = HeaderValue::from_str(&session) {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
            response.headers_mut().append(
                header::SET_COOKIE,
                HeaderValue::from_static(
                    "__Host-kontor_signin=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
                ),
            );
            response
        }
        Err(Error::Unauthenticated(_)) => sign_in_form(
            &ctx,
            StatusCode::UNAUTHORIZED,
            Some(ctx.t("signin.wrong").to_owned()),
            None,
            &login,
        ),
        Err(Error::RateLimited { retry_after_s }) => sign_in_form(
            &ctx,
            StatusCode::TOO_MANY_REQUESTS,
            Some(
                ctx.t("signin.rate_limited")
                    .replace("{n}", &retry_after_s.to_string()),
            ),
            None,
            &login,
        ),
        Err(e) => view::error_page(&ctx, &e),
    }
}

/// `POST /portal/sign-out`: ends the session, clears the cookie.
pub async fn sign_out<P, S, B>(State(admin): State<App<P, S, B>>, f: SignedForm) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    if let Err(e) = admin.sign_out(&f.p, &f.token).await {
        return view::error_page(&f.ctx, &e);
    }
    let mut response = Redirect::to("/portal/sign-in?m=signed_out").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "__Host-kontor_session=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    response
}

/// `GET /portal/lang/{lang}?next=…`: remembers the language in a cookie
/// and goes back to the page (only to a portal page: no open redirect).
pub async fn switch_language(Path(lang): Path<String>, uri: Uri) -> Response {
    let next = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v.into_owned())
        .filter(|n| {
            n.starts_with("/portal/")
                && !n.contains("//")
                && !n.contains('\\')
                && !n.starts_with("/portal/lang/")
        })
        .unwrap_or_else(|| "/portal/".to_owned());
    let mut response = Redirect::to(&next).into_response();
    if let Some(lang) = Lang::parse(&lang) {
        let cookie = format!(
            "{LANG_COOKIE}={}; Path=/; Secure; SameSite=Strict; Max-Age=31536000",
            lang.code()
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    response
}
