//! Kontor admin portal: the web console administrators use in a browser.
//!
//! Server-rendered HTML (maud) over the administration service
//! ([`kontor_admin::service::Admin`]): every page calls the same service
//! methods the JSON API calls, with the same [`Principal`], so the role
//! matrix, the organisation scoping and the audit trail apply unchanged.
//! The portal hides what a role may not do; the service refuses it anyway.
//!
//! Plain HTML forms (`application/x-www-form-urlencoded`, multipart for the
//! CSV upload) with the session's CSRF token in a hidden field; one small
//! script for progressive enhancement (select all); CSS and script are
//! compiled into the binary. Every answer carries a strict
//! Content-Security-Policy (no inline script or style) and the other
//! security headers.
//!
//! # Layout
//! - [`router`]: the routes under `/portal/…` and `GET /`.
//! - `i18n`: English and German dictionaries, [`Lang`].
//! - `session`: sign-in and sign-out, the `Signed` and `SignedForm`
//!   extractors (session cookie, CSRF field, language), form parsing.
//! - `view`: the page layout, menu, notices, error pages, formatting.
//! - `pages/`: one module per area: `users` (list, bulk, detail, wipe,
//!   invite, import), `org` (departments and barriers, restrictions,
//!   allow-list, broadcast), `records` (audit trail, wipes, archives),
//!   `settings` (EMM integrations' API keys, archive key, TOTP).
//!
//! [`Principal`]: kontor_admin::service::Principal

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use kontor_admin::service::Admin;
use kontor_provisioning::store as pstore;
use kontor_relay::bus::Bus;
use kontor_relay::store::RelayStore;

mod i18n;
mod pages;
mod session;
mod view;

pub use i18n::{Lang, t};

/// The Content-Security-Policy of every portal answer: only our own
/// script, style sheet and images (QR codes as `data:` images), forms only
/// to ourselves, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Largest request body the portal reads (the CSV upload is the biggest).
pub const BODY_BYTES_MAX: usize = 4 * 1024 * 1024;

const CSS: &str = include_str!("../static/portal.css");
const JS: &str = include_str!("../static/portal.js");

type App<P, S, B> = Arc<Admin<P, S, B>>;

/// The portal's routes: `GET /` (to `/portal/`) and everything under
/// `/portal/`. Sets no fallback, so it merges with the admin API's router,
/// which has one.
pub fn router<P, S, B>(admin: App<P, S, B>) -> Router
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    use pages::{org, records, settings, users};
    Router::new()
        .route("/", get(|| async { Redirect::to("/portal/") }))
        .route("/portal", get(|| async { Redirect::to("/portal/") }))
        .route("/portal/", get(session::home::<P, S, B>))
        .route("/portal/static/portal.css", get(css))
        .route("/portal/static/portal.js", get(js))
        .route("/portal/lang/{lang}", get(session::switch_language))
        .route(
            "/portal/sign-in",
            get(session::sign_in_page).post(session::sign_in::<P, S, B>),
        )
        .route("/portal/sign-out", post(session::sign_out::<P, S, B>))
        .route("/portal/users", get(users::list::<P, S, B>))
        // Not under /portal/users/: a user may be called "bulk".
        .route("/portal/bulk", post(users::bulk_preview::<P, S, B>))
        .route("/portal/bulk/apply", post(users::bulk_apply::<P, S, B>))
        .route("/portal/users/{id}", get(users::detail::<P, S, B>))
        .route("/portal/users/{id}/block", post(users::block::<P, S, B>))
        .route(
            "/portal/users/{id}/unblock",
            post(users::unblock::<P, S, B>),
        )
        .route(
            "/portal/users/{id}/wipe",
            get(users::wipe_user_confirm::<P, S, B>).post(users::wipe_user::<P, S, B>),
        )
        .route(
            "/portal/devices/{id}/wipe",
            get(users::wipe_device_confirm::<P, S, B>).post(users::wipe_device::<P, S, B>),
        )
        .route(
            "/portal/invite",
            get(users::invite_form::<P, S, B>).post(users::invite::<P, S, B>),
        )
        .route(
            "/portal/import",
            get(users::import_form::<P, S, B>).post(users::import::<P, S, B>),
        )
        .route(
            "/portal/departments",
            get(org::departments::<P, S, B>).post(org::add_department::<P, S, B>),
        )
        .route(
            "/portal/departments/matrix",
            post(org::save_matrix::<P, S, B>),
        )
        .route(
            "/portal/departments/delete",
            post(org::delete_department::<P, S, B>),
        )
        .route(
            "/portal/restrictions",
            get(org::restrictions::<P, S, B>).post(org::set_restrictions::<P, S, B>),
        )
        .route(
            "/portal/restrictions/clear",
            post(org::clear_restrictions::<P, S, B>),
        )
        .route(
            "/portal/allow-list",
            get(org::allow_list::<P, S, B>).post(org::allow::<P, S, B>),
        )
        .route("/portal/allow-list/remove", post(org::disallow::<P, S, B>))
        .route(
            "/portal/broadcast",
            get(org::broadcast_form::<P, S, B>).post(org::broadcast::<P, S, B>),
        )
        .route("/portal/audit", get(records::audit::<P, S, B>))
        .route("/portal/wipes", get(records::wipes::<P, S, B>))
        .route(
            "/portal/archives",
            get(records::archives::<P, S, B>).post(records::request_archive::<P, S, B>),
        )
        .route("/portal/archives/{id}", get(records::archive::<P, S, B>))
        .route(
            "/portal/integrations",
            get(settings::integrations::<P, S, B>).post(settings::create_key::<P, S, B>),
        )
        .route(
            "/portal/integrations/revoke",
            post(settings::revoke_key::<P, S, B>),
        )
        .route("/portal/settings", get(settings::settings::<P, S, B>))
        .route(
            "/portal/settings/archive-key",
            post(settings::set_archive_key::<P, S, B>),
        )
        .route(
            "/portal/settings/totp",
            post(settings::enable_totp::<P, S, B>),
        )
        // Not a fallback (the admin API owns that): unknown portal paths
        // get a portal page with the portal's headers.
        .route(
            "/portal/{*rest}",
            get(view::not_found).post(view::not_found),
        )
        .layer(axum::extract::DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(admin)
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
        .into_response()
}

/// Headers every portal answer carries, errors and redirects included.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    let set = |h: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    set(
        h,
        header::STRICT_TRANSPORT_SECURITY,
        "max-age=63072000; includeSubDomains",
    );
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::CACHE_CONTROL, "no-store");
    response
}
