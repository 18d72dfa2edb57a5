//! The page frame every portal page shares (skip link, header, menu,
//! notices), error pages and small formatting helpers.

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use kontor_admin::Error;
use kontor_admin::role::{Permission, Role};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::i18n::{self, Lang};

/// What a page needs to know about the request: language, who is signed
/// in, the CSRF token for its forms, where it is (for the language
/// switcher and the menu) and a notice to show.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub lang: Lang,
    pub who: Option<Who>,
    /// Path and query of this request, for the language switcher.
    pub here: String,
    /// Path alone, for the menu's `aria-current`.
    pub path: String,
    /// A translated notice for the top of the page (after a POST that
    /// redirected here with `?done=`).
    pub notice: Option<String>,
}

/// The signed-in administrator, as the frame shows them.
#[derive(Debug, Clone)]
pub struct Who {
    pub login: String,
    pub org: String,
    pub role: Role,
    pub csrf: String,
}

impl Ctx {
    /// The context of a request from its headers and URI.
    pub fn new(headers: &HeaderMap, uri: &Uri, who: Option<Who>) -> Ctx {
        let lang = i18n::lang_of(headers);
        let here = uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
        let mut notice = None;
        let mut n = String::new();
        let mut done = None;
        for (k, v) in form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "done" => done = Some(v.into_owned()),
                "n" if v.len() <= 9 && v.bytes().all(|b| b.is_ascii_digit()) => {
                    n = v.into_owned();
                }
                _ => {}
            }
        }
        if let Some(done) = done {
            // Only known notices: the query string is the visitor's to write.
            let key = format!("done.{done}");
            if i18n::has_key(&key) {
                notice = Some(i18n::lookup(lang, &key).replace("{n}", &n));
            }
        }
        Ctx {
            lang,
            who,
            here,
            path: uri.path().to_owned(),
            notice,
        }
    }

    /// The text of `key` in this request's language.
    pub fn t(&self, key: &'static str) -> &'static str {
        i18n::t(self.lang, key)
    }

    /// Whether the signed-in role may do `permission`.
    pub fn can(&self, permission: Permission) -> bool {
        self.who.as_ref().is_some_and(|w| w.role.allows(permission))
    }

    /// The hidden CSRF field every form carries.
    pub fn csrf_field(&self) -> Markup {
        let token = self.who.as_ref().map_or("", |w| w.csrf.as_str());
        html! { input type="hidden" name="csrf" value=(token); }
    }
}

/// One entry of the main menu: path, dictionary key, what it needs.
pub struct MenuEntry {
    pub path: &'static str,
    pub key: &'static str,
    pub needs: Option<Permission>,
}

/// The main menu in order; entries a role may not use are not shown.
pub const MENU: &[MenuEntry] = &[
    MenuEntry {
        path: "/portal/users",
        key: "menu.users",
        needs: Some(Permission::ReadDirectory),
    },
    MenuEntry {
        path: "/portal/invite",
        key: "menu.invite",
        needs: Some(Permission::Invite),
    },
    MenuEntry {
        path: "/portal/import",
        key: "menu.import",
        needs: Some(Permission::ManagePolicy),
    },
    MenuEntry {
        path: "/portal/departments",
        key: "menu.departments",
        needs: Some(Permission::ReadDirectory),
    },
    MenuEntry {
        path: "/portal/restrictions",
        key: "menu.restrictions",
        needs: Some(Permission::ReadDirectory),
    },
    MenuEntry {
        path: "/portal/allow-list",
        key: "menu.allow_list",
        needs: Some(Permission::ReadDirectory),
    },
    MenuEntry {
        path: "/portal/broadcast",
        key: "menu.broadcast",
        needs: Some(Permission::Broadcast),
    },
    MenuEntry {
        path: "/portal/wipes",
        key: "menu.wipes",
        needs: Some(Permission::Wipe),
    },
    MenuEntry {
        path: "/portal/audit",
        key: "menu.audit",
        needs: Some(Permission::ReadAudit),
    },
    MenuEntry {
        path: "/portal/archives",
        key: "menu.archives",
        needs: Some(Permission::Archive),
    },
    MenuEntry {
        path: "/portal/integrations",
        key: "menu.integrations",
        needs: Some(Permission::ManageAdmins),
    },
    MenuEntry {
        path: "/portal/settings",
        key: "menu.settings",
        needs: None,
    },
];

/// The first page a role may see.
pub fn home_of(role: Role) -> &'static str {
    MENU.iter()
        .find(|e| e.needs.is_none_or(|p| role.allows(p)))
        .map_or("/portal/settings", |e| e.path)
}

/// A whole page: the frame around `body`, `title` as `<title>` and `<h1>`.
pub fn page(ctx: &Ctx, title: &str, body: Markup) -> Response {
    page_with_status(ctx, StatusCode::OK, title, body)
}

/// A whole page with a status other than 200.
pub fn page_with_status(ctx: &Ctx, status: StatusCode, title: &str, body: Markup) -> Response {
    let other = match ctx.lang {
        Lang::En => Lang::De,
        Lang::De => Lang::En,
    };
    let switch_href = format!("/portal/lang/{}?next={}", other.code(), encode(&ctx.here));
    let markup = html! {
        (DOCTYPE)
        html lang=(ctx.lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " – Kontor" }
                link rel="stylesheet" href="/portal/static/portal.css";
                script src="/portal/static/portal.js" defer {}
            }
            body {
                a class="skip" href="#main" { (ctx.t("frame.skip")) }
                header class="top" {
                    span class="brand" { "Kontor" }
                    span class="sub" { (ctx.t("frame.console")) }
                    @if let Some(w) = &ctx.who {
                        span class="who" {
                            (w.login) " · " (role_name(ctx, w.role)) " · " (w.org)
                        }
                    }
                    a class="lang" href=(switch_href) hreflang=(other.code()) lang=(other.code()) {
                        (ctx.t("frame.switch_language"))
                    }
                    @if ctx.who.is_some() {
                        form method="post" action="/portal/sign-out" class="inline" {
                            (ctx.csrf_field())
                            button type="submit" class="link" { (ctx.t("frame.sign_out")) }
                        }
                    }
                }
                div class="frame" {
                    @if let Some(w) = &ctx.who {
                        nav aria-label=(ctx.t("frame.menu")) {
                            ul {
                                @for e in MENU.iter().filter(|e| e.needs.is_none_or(|p| w.role.allows(p))) {
                                    li {
                                        @if ctx.path == e.path || ctx.path.starts_with(&format!("{}/", e.path)) {
                                            a href=(e.path) aria-current="page" { (ctx.t(e.key)) }
                                        } @else {
                                            a href=(e.path) { (ctx.t(e.key)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    main id="main" tabindex="-1" {
                        h1 { (title) }
                        @if let Some(n) = &ctx.notice {
                            p class="notice" role="status" { (n) }
                        }
                        (body)
                    }
                }
            }
        }
    };
    let mut response = (status, markup).into_response();
    // Cannot fail: a constant.
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// The page for a refused or failed action. An expired session goes to
/// the sign-in page; a server fault says nothing internal (the detail goes
/// to the log).
pub fn error_page(ctx: &Ctx, error: &Error) -> Response {
    let status = error.status();
    if let Error::Unauthenticated(_) = error {
        return Redirect::to("/portal/sign-in?m=expired").into_response();
    }
    let message = match error {
        Error::Csrf => ctx.t("error.csrf").to_owned(),
        Error::Forbidden(_) => ctx.t("error.forbidden").to_owned(),
        _ if status.is_server_error() => {
            tracing::error!(error = %error, "portal request failed");
            ctx.t("error.internal").to_owned()
        }
        other => other.to_string(),
    };
    let title = if status.is_server_error() {
        ctx.t("error.title_internal")
    } else {
        ctx.t("error.title")
    };
    page_with_status(
        ctx,
        status,
        title,
        html! {
            p class="error" role="alert" { (message) }
            p { a href=(back_of(&ctx.path)) { (ctx.t("error.back")) } }
        },
    )
}

/// Where "back" leads from a failed POST: the page its form was on.
fn back_of(path: &str) -> &str {
    match path {
        p if p.starts_with("/portal/users/") || p.starts_with("/portal/bulk") => "/portal/users",
        p if p.starts_with("/portal/devices/") => "/portal/wipes",
        "/portal/departments/matrix" | "/portal/departments/delete" => "/portal/departments",
        "/portal/restrictions/clear" => "/portal/restrictions",
        "/portal/allow-list/remove" => "/portal/allow-list",
        "/portal/integrations/revoke" => "/portal/integrations",
        p if p.starts_with("/portal/settings") => "/portal/settings",
        p if p.starts_with("/portal/") => p,
        _ => "/portal/",
    }
}

/// `404` for an unknown portal path, with the portal's frame.
pub async fn not_found(headers: HeaderMap, uri: Uri) -> Response {
    let ctx = Ctx::new(&headers, &uri, None);
    page_with_status(
        &ctx,
        StatusCode::NOT_FOUND,
        ctx.t("error.not_found"),
        html! {
            p { (ctx.t("error.not_found_text")) }
            p { a href="/portal/" { (ctx.t("error.home")) } }
        },
    )
}

/// A 303 to `path` with a notice key.
pub fn done(path: &str, notice: &str) -> Response {
    let sep = if path.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{path}{sep}done={notice}")).into_response()
}

/// The translated role name.
pub fn role_name(ctx: &Ctx, role: Role) -> &'static str {
    ctx.t(match role {
        Role::Owner => "role.owner",
        Role::Admin => "role.admin",
        Role::Helpdesk => "role.helpdesk",
        Role::Auditor => "role.auditor",
        Role::Archivist => "role.archivist",
        Role::Emm => "role.emm",
    })
}

/// A status word as a badge (`invited`, `active`, `blocked`, wipe and
/// archive states): the text translated, the class for its colour.
pub fn badge(ctx: &Ctx, state: &str) -> Markup {
    let key = match state {
        "invited" => "state.invited",
        "active" => "state.active",
        "blocked" => "state.blocked",
        "requested" => "state.requested",
        "delivered" => "state.delivered",
        "confirmed" => "state.confirmed",
        "exported" => "state.exported",
        "refused" => "state.refused",
        "done" => "state.done",
        "failed" => "state.failed",
        "would_apply" => "state.would_apply",
        "created" => "state.created",
        "would_create" => "state.would_create",
        _ => "",
    };
    let text = if key.is_empty() { state } else { ctx.t(key) };
    html! { span class={ "badge badge-" (state) } data-state=(state) { (text) } }
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM UTC`.
pub fn time_ms(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => "-".to_owned(),
    }
}

/// An optional time in milliseconds, `–` when absent.
pub fn maybe_time_ms(ms: Option<i64>) -> String {
    ms.map_or_else(|| "–".to_owned(), time_ms)
}

/// Percent-encodes a query value or path segment.
pub fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// An image from SVG markup, as a `data:` URI (the CSP allows `data:`
/// images and no inline styles, which some SVG renderers emit).
pub fn svg_data_uri(svg: &str) -> String {
    use base64::Engine as _;
    format!(
        "data:image/svg+xml;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(svg.as_bytes())
    )
}

/// Pre-escaped markup, for SVG we build ourselves from numbers only.
pub fn trusted(markup: String) -> PreEscaped<String> {
    PreEscaped(markup)
}
