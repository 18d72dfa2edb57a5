//! Users: the filtered list with bulk actions (previewed before they
//! apply), a user's page (devices, activity, block, wipe), invitations
//! and the CSV import.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::Response;
use kontor_admin::Error;
use kontor_admin::directory::UserFilter;
use kontor_admin::role::Permission;
use kontor_admin::service::{Admin, BulkAction, BulkRequest, InviteRequest};
use kontor_provisioning::store as pstore;
use kontor_relay::bus::Bus;
use kontor_relay::store::RelayStore;
use maud::{Markup, html};
use serde_json::Value;

use super::{or_error, query_pairs, query_text};
use crate::session::{Form, Signed, SignedForm};
use crate::view::{self, Ctx, badge, encode, maybe_time_ms, time_ms};

type App<P, S, B> = Arc<Admin<P, S, B>>;

/// The filter fields, as the query string and the bulk form name them.
const FILTER_FIELDS: [&str; 7] = [
    "department",
    "status",
    "platform",
    "enrollment",
    "text",
    "active_days",
    "inactive_days",
];

fn filter_of(get: impl Fn(&str) -> Option<String>) -> Result<UserFilter, Error> {
    let days = |name: &str| -> Result<Option<u32>, Error> {
        get(name)
            .map(|v| {
                v.parse::<u32>()
                    .map_err(|_| Error::Invalid(format!("{name} must be a number of days")))
            })
            .transpose()
    };
    // "(none)" selects users in no department (the service's empty name).
    let department = get("department").map(|d| if d == "-" { String::new() } else { d });
    Ok(UserFilter {
        department,
        status: get("status"),
        platform: get("platform"),
        enrollment: get("enrollment"),
        inactive_days: days("inactive_days")?,
        active_days: days("active_days")?,
        text: get("text"),
    })
}

/// Department names, for selects (empty when the role may not read them).
async fn departments<P, S, B>(
    admin: &Admin<P, S, B>,
    s: &kontor_admin::service::Principal,
) -> Vec<String>
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    if !s.role.allows(Permission::ReadDirectory) {
        return Vec::new();
    }
    match admin.barriers(s).await {
        Ok(b) => b["departments"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

fn select(name: &str, id: &str, current: Option<&str>, options: &[(String, String)]) -> Markup {
    html! {
        select name=(name) id=(id) {
            @for (value, label) in options {
                @if current == Some(value.as_str()) {
                    option value=(value) selected { (label) }
                } @else {
                    option value=(value) { (label) }
                }
            }
        }
    }
}

/// `GET /portal/users`: the list with filters, selection and bulk actions.
pub async fn list<P, S, B>(s: Signed, State(admin): State<App<P, S, B>>, uri: Uri) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let ctx = s.ctx.clone();
    or_error(&ctx, async {
        let q = query_pairs(&uri);
        let get = |name: &str| query_text(&q, name);
        let filter = filter_of(get)?;
        let users = admin.users(&s.p, &filter).await?;
        let departments = departments(&admin, &s.p).await;
        let any = || (String::new(), ctx.t("users.any").to_owned());
        let mut dept_options = vec![any(), ("-".to_owned(), ctx.t("users.no_department").to_owned())];
        dept_options.extend(departments.iter().map(|d| (d.clone(), d.clone())));
        let status_options = vec![
            any(),
            ("invited".into(), ctx.t("state.invited").into()),
            ("active".into(), ctx.t("state.active").into()),
            ("blocked".into(), ctx.t("state.blocked").into()),
        ];
        let platform_options = vec![
            any(),
            ("ios".into(), "iOS".into()),
            ("android".into(), "Android".into()),
        ];
        let enrollment_options = vec![
            any(),
            ("enrolled".into(), ctx.t("users.enrolled").into()),
            ("not_enrolled".into(), ctx.t("users.not_enrolled").into()),
        ];
        let mut actions: Vec<(String, String)> = Vec::new();
        for (value, key, needs) in [
            ("block", "bulk.block", Permission::Block),
            ("unblock", "bulk.unblock", Permission::Block),
            ("move", "bulk.move", Permission::ManagePolicy),
            ("invite", "bulk.invite", Permission::Invite),
            ("wipe", "bulk.wipe", Permission::Wipe),
        ] {
            if ctx.can(needs) {
                actions.push((value.to_owned(), ctx.t(key).to_owned()));
            }
        }
        let mut move_options = vec![(String::new(), ctx.t("users.no_department").to_owned())];
        move_options.extend(departments.iter().map(|d| (d.clone(), d.clone())));
        let current = |name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let body = html! {
            form method="get" action="/portal/users" class="filters" {
                fieldset {
                    legend { (ctx.t("users.filter")) }
                    div class="grid" {
                        div { label for="f-department" { (ctx.t("users.department")) }
                              (select("department", "f-department", current("department").as_deref(), &dept_options)) }
                        div { label for="f-status" { (ctx.t("users.status")) }
                              (select("status", "f-status", current("status").as_deref(), &status_options)) }
                        div { label for="f-platform" { (ctx.t("users.platform")) }
                              (select("platform", "f-platform", current("platform").as_deref(), &platform_options)) }
                        div { label for="f-enrollment" { (ctx.t("users.enrollment")) }
                              (select("enrollment", "f-enrollment", current("enrollment").as_deref(), &enrollment_options)) }
                        div { label for="f-text" { (ctx.t("users.text")) }
                              input id="f-text" name="text" type="search" value=(current("text").unwrap_or_default()); }
                        div { label for="f-active" { (ctx.t("users.active_days")) }
                              input id="f-active" name="active_days" type="number" min="1" max="3650" value=(current("active_days").unwrap_or_default()); }
                        div { label for="f-inactive" { (ctx.t("users.inactive_days")) }
                              input id="f-inactive" name="inactive_days" type="number" min="1" max="3650" value=(current("inactive_days").unwrap_or_default()); }
                    }
                    div class="buttons" {
                        button type="submit" { (ctx.t("users.apply_filter")) }
                        a href="/portal/users" { (ctx.t("users.clear_filter")) }
                    }
                }
            }
            p id="user-count" { (ctx.t("users.count").replace("{n}", &users.len().to_string())) }
            @if users.is_empty() {
                p { (ctx.t("users.none")) }
            } @else {
                form method="post" action="/portal/bulk" id="bulk" {
                    (ctx.csrf_field())
                    @for name in FILTER_FIELDS {
                        @if let Some(v) = current(name) {
                            input type="hidden" name={ "f_" (name) } value=(v);
                        }
                    }
                    @if !actions.is_empty() {
                        fieldset class="bulk" {
                            legend { (ctx.t("bulk.legend")) }
                            div class="grid" {
                                div { label for="bulk-action" { (ctx.t("bulk.action")) }
                                      (select("action", "bulk-action", None, &actions)) }
                                @if ctx.can(Permission::ManagePolicy) {
                                    div { label for="bulk-department" { (ctx.t("bulk.target_department")) }
                                          (select("target_department", "bulk-department", None, &move_options)) }
                                }
                                div {
                                    span class="label" { (ctx.t("bulk.apply_to")) }
                                    label class="check" { input type="radio" name="scope" value="selected" checked; " " (ctx.t("bulk.selected")) }
                                    label class="check" { input type="radio" name="scope" value="filter"; " " (ctx.t("bulk.all_matching").replace("{n}", &users.len().to_string())) }
                                }
                            }
                            div class="buttons" { button type="submit" { (ctx.t("bulk.preview")) } }
                        }
                    }
                    table class="list" {
                        caption class="sr-only" { (ctx.t("users.caption")) }
                        thead { tr {
                            th scope="col" {
                                label class="check" hidden data-select-all-label {
                                    input type="checkbox" data-select-all="user";
                                    span class="sr-only" { (ctx.t("users.select_all")) }
                                }
                            }
                            th scope="col" { (ctx.t("users.user_id")) }
                            th scope="col" { (ctx.t("users.name")) }
                            th scope="col" { (ctx.t("users.department")) }
                            th scope="col" { (ctx.t("users.status")) }
                            th scope="col" class="num" { (ctx.t("users.devices")) }
                            th scope="col" { (ctx.t("users.platform")) }
                            th scope="col" { (ctx.t("users.last_seen")) }
                        } }
                        tbody {
                            @for u in &users {
                                tr {
                                    td { input type="checkbox" name="user" value=(u.user_id)
                                            aria-label={ (ctx.t("users.select_one")) " " (u.user_id) }; }
                                    td { a href={ "/portal/users/" (encode(&u.user_id)) } { (u.user_id) } }
                                    td { (u.display_name) }
                                    td { (u.department.as_deref().unwrap_or("–")) }
                                    td { (badge(&ctx, u.status.as_str())) }
                                    td class="num" { (u.devices) }
                                    td { (u.platforms.join(", ")) }
                                    td { (maybe_time_ms(u.last_seen_ms)) }
                                }
                            }
                        }
                    }
                }
            }
        };
        Ok(view::page(&ctx, ctx.t("users.title"), body))
    }
    .await)
}

/// The bulk request a form describes (`f_*` filter fields, `user`
/// checkboxes, `scope`, `action`, `target_department`).
fn bulk_request(form: &Form, dry_run: bool) -> Result<BulkRequest, Error> {
    let operation = match form.get("action").unwrap_or("") {
        "block" => BulkAction::Block,
        "unblock" => BulkAction::Unblock,
        "move" => BulkAction::Move {
            department: form.text("target_department"),
        },
        "invite" => BulkAction::Invite,
        "wipe" => BulkAction::Wipe,
        other => return Err(Error::Invalid(format!("unknown bulk action {other:?}"))),
    };
    let (filter, users) = if form.get("scope") == Some("filter") {
        (Some(filter_of(|n| form.text(&format!("f_{n}")))?), None)
    } else {
        let users = form.all("user");
        if users.is_empty() {
            return Err(Error::Invalid("select at least one user".into()));
        }
        (None, Some(users))
    };
    Ok(BulkRequest {
        filter,
        users,
        operation,
        dry_run,
    })
}

fn action_name(ctx: &Ctx, form: &Form) -> &'static str {
    match form.get("action").unwrap_or("") {
        "block" => ctx.t("bulk.block"),
        "unblock" => ctx.t("bulk.unblock"),
        "move" => ctx.t("bulk.move"),
        "invite" => ctx.t("bulk.invite"),
        "wipe" => ctx.t("bulk.wipe"),
        _ => "",
    }
}

/// `POST /portal/bulk`: the dry run, and a form to confirm it.
pub async fn bulk_preview<P, S, B>(State(admin): State<App<P, S, B>>, f: SignedForm) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let ctx = f.ctx.clone();
    or_error(&ctx, async {
        let req = bulk_request(&f.form, true)?;
        let preview = admin.bulk(&f.p, &req).await?;
        let users: Vec<&str> = preview["users"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let n = users.len().to_string();
        let body = html! {
            p { (ctx.t("bulk.preview_text").replace("{action}", action_name(&ctx, &f.form)).replace("{n}", &n)) }
            @if f.form.get("action") == Some("move") {
                p { (ctx.t("bulk.target_department")) ": "
                    strong { (f.form.text("target_department").unwrap_or_else(|| ctx.t("users.no_department").to_owned())) } }
            }
            @if f.form.get("action") == Some("wipe") {
                p class="warning" role="alert" { (ctx.t("bulk.wipe_warning")) }
            }
            ul id="preview-users" class="columns" { @for u in &users { li { (u) } } }
            @if users.is_empty() {
                p { (ctx.t("bulk.nothing")) }
                p { a href="/portal/users" { (ctx.t("bulk.cancel")) } }
            } @else {
                form method="post" action="/portal/bulk/apply" class="buttons" {
                    (ctx.csrf_field())
                    input type="hidden" name="action" value=(f.form.get("action").unwrap_or(""));
                    @if let Some(d) = f.form.text("target_department") {
                        input type="hidden" name="target_department" value=(d);
                    }
                    // The exact users previewed, not the filter again: what
                    // is confirmed is what was shown.
                    @for u in &users { input type="hidden" name="user" value=(u); }
                    button type="submit" id="confirm" class={ @if f.form.get("action") == Some("wipe") { "danger" } @else { "primary" } } {
                        (ctx.t("bulk.confirm").replace("{action}", action_name(&ctx, &f.form)).replace("{n}", &n))
                    }
                    a href="/portal/users" { (ctx.t("bulk.cancel")) }
                }
            }
        };
        Ok(view::page(&ctx, ctx.t("bulk.preview_title"), body))
    }
    .await)
}

/// `POST /portal/bulk/apply`: applies, then shows each user's outcome.
pub async fn bulk_apply<P, S, B>(State(admin): State<App<P, S, B>>, f: SignedForm) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let ctx = f.ctx.clone();
    or_error(&ctx, async {
        let req = bulk_request(&f.form, false)?;
        let out = admin.bulk(&f.p, &req).await?;
        let results = out["results"].as_array().cloned().unwrap_or_default();
        let failed = out["failed"].as_u64().unwrap_or(0);
        let body = html! {
            p role="status" class="notice" id="bulk-summary" {
                (ctx.t("bulk.summary")
                    .replace("{action}", action_name(&ctx, &f.form))
                    .replace("{n}", &results.len().to_string())
                    .replace("{failed}", &failed.to_string()))
            }
            table class="list" {
                thead { tr {
                    th scope="col" { (ctx.t("users.user_id")) }
                    th scope="col" { (ctx.t("bulk.outcome")) }
                    th scope="col" { (ctx.t("bulk.detail")) }
                } }
                tbody {
                    @for r in &results {
                        tr {
                            td { a href={ "/portal/users/" (encode(r["user_id"].as_str().unwrap_or(""))) } { (r["user_id"].as_str().unwrap_or("")) } }
                            td { (badge(&ctx, r["outcome"].as_str().unwrap_or(""))) }
                            td { (result_detail(&ctx, &r["detail"])) }
                        }
                    }
                }
            }
            p { a href="/portal/users" { (ctx.t("bulk.back_to_users")) } }
        };
        Ok(view::page(&ctx, ctx.t("bulk.done_title"), body))
    }
    .await)
}

fn result_detail(ctx: &Ctx, detail: &Value) -> Markup {
    html! {
        @if let Some(m) = detail["message"].as_str() {
            span class="error" { (m) }
        } @else if let Some(token) = detail["token"].as_str() {
            (ctx.t("invite.token")) ": " code class="secret" { (token) }
            " · " (ctx.t("invite.expires")) " " (time_ms(detail["expires_at"].as_i64().unwrap_or(0) * 1000))
        } @else if let Some(n) = detail["devices"].as_u64() {
            (ctx.t("bulk.devices_wiped").replace("{n}", &n.to_string()))
        }
    }
}

/// `GET /portal/users/{id}`: the user, their devices, activity and
/// effective restrictions.
pub async fn detail<P, S, B>(
    s: Signed,
    State(admin): State<App<P, S, B>>,
    Path(id): Path<String>,
) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let ctx = s.ctx.clone();
    or_error(&ctx, async {
        let v = admin.user(&s.p, &id).await?;
        let u = &v["user"];
        let status = u["status"].as_str().unwrap_or("");
        let devices = v["devices"].as_array().cloned().unwrap_or_default();
        let activity = v["activity"].as_array().cloned().unwrap_or_default();
        let base = format!("/portal/users/{}", encode(&id));
        let body = html! {
            dl class="facts" {
                dt { (ctx.t("users.user_id")) } dd { (id) }
                dt { (ctx.t("users.name")) } dd { (u["display_name"].as_str().unwrap_or("")) }
                dt { (ctx.t("users.department")) } dd { (u["department"].as_str().unwrap_or("–")) }
                dt { (ctx.t("users.status")) } dd id="user-status" { (badge(&ctx, status)) }
                dt { (ctx.t("users.created")) } dd { (time_ms(u["created_at_ms"].as_i64().unwrap_or(0))) }
                dt { (ctx.t("users.last_seen")) } dd { (maybe_time_ms(u["last_seen_ms"].as_i64())) }
            }
            div class="buttons" {
                @if ctx.can(Permission::Block) {
                    @if status == "blocked" {
                        form method="post" action={ (base) "/unblock" } class="inline" {
                            (ctx.csrf_field())
                            button type="submit" { (ctx.t("user.unblock")) }
                        }
                    } @else {
                        form method="post" action={ (base) "/block" } class="inline" {
                            (ctx.csrf_field())
                            button type="submit" { (ctx.t("user.block")) }
                        }
                    }
                }
                @if ctx.can(Permission::Wipe) && !devices.is_empty() {
                    a class="button danger" href={ (base) "/wipe" } { (ctx.t("user.wipe_all")) }
                }
            }
            h2 { (ctx.t("user.devices")) }
            @if devices.is_empty() {
                p { (ctx.t("user.no_devices")) }
            } @else {
                table class="list" id="devices" {
                    thead { tr {
                        th scope="col" { (ctx.t("user.device_id")) }
                        th scope="col" { (ctx.t("users.platform")) }
                        th scope="col" { (ctx.t("user.device_name")) }
                        th scope="col" { (ctx.t("user.enrolled")) }
                        th scope="col" { (ctx.t("user.cert_expires")) }
                        th scope="col" { (ctx.t("users.last_seen")) }
                        @if ctx.can(Permission::Wipe) { th scope="col" { span class="sr-only" { (ctx.t("user.actions")) } } }
                    } }
                    tbody {
                        @for d in &devices {
                            @let device = d["device_id"].as_str().unwrap_or("");
                            tr {
                                td { code { (device) } }
                                td { (d["platform"].as_str().unwrap_or("")) }
                                td { (d["name"].as_str().unwrap_or("–")) }
                                td { (time_ms(d["enrolled_at"].as_i64().unwrap_or(0) * 1000)) }
                                td { (time_ms(d["certificate_expires"].as_i64().unwrap_or(0) * 1000)) }
                                td { (maybe_time_ms(d["last_seen_ms"].as_i64())) }
                                @if ctx.can(Permission::Wipe) {
                                    td { a class="button danger small" href={ "/portal/devices/" (device) "/wipe" }
                                          aria-label={ (ctx.t("user.wipe_device")) " " (device) } { (ctx.t("user.wipe_device")) } }
                                }
                            }
                        }
                    }
                }
            }
            h2 { (ctx.t("user.activity")) }
            (activity_chart(&ctx, &activity))
            h2 { (ctx.t("user.restrictions")) }
            (restrictions_table(&ctx, &v["restrictions"]))
        };
        Ok(view::page(&ctx, &format!("{} {id}", ctx.t("user.title")), body))
    }
    .await)
}

/// The effective restrictions as a table of managed-config keys.
pub fn restrictions_table(ctx: &Ctx, keys: &Value) -> Markup {
    html! {
        table class="list narrow" {
            thead { tr { th scope="col" { (ctx.t("restrictions.setting")) } th scope="col" { (ctx.t("restrictions.value")) } } }
            tbody {
                @if let Some(o) = keys.as_object() {
                    @for (k, v) in o {
                        tr {
                            td { code { (k) } }
                            td { @match v {
                                Value::Bool(true) => (ctx.t("restrictions.allowed")),
                                Value::Bool(false) => (ctx.t("restrictions.forbidden")),
                                Value::Array(a) if a.is_empty() => (ctx.t("restrictions.none")),
                                Value::Array(a) => (a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")),
                                other => (other.to_string()),
                            } }
                        }
                    }
                }
            }
        }
    }
}

/// Messages per day as SVG bars (sent and received side by side), the
/// last 30 days with activity, with the numbers in a table for screen
/// readers and for reading exact values.
fn activity_chart(ctx: &Ctx, days: &[Value]) -> Markup {
    if days.is_empty() {
        return html! { p { (ctx.t("user.no_activity")) } };
    }
    let days: Vec<(String, i64, i64)> = days
        .iter()
        .rev()
        .take(30)
        .rev()
        .map(|d| {
            (
                d["day"].as_str().unwrap_or("").to_owned(),
                d["sent"].as_i64().unwrap_or(0).max(0),
                d["received"].as_i64().unwrap_or(0).max(0),
            )
        })
        .collect();
    let max = days.iter().map(|d| d.1.max(d.2)).max().unwrap_or(1).max(1);
    let (height, top, bottom, slot) = (160i64, 10i64, 24i64, 40i64);
    let width = 40 + slot * i64::try_from(days.len()).unwrap_or(30);
    let plot = height - top - bottom;
    let mut svg = String::new();
    for (i, (day, sent, received)) in days.iter().enumerate() {
        let x = 40 + slot * i64::try_from(i).unwrap_or(0);
        for (offset, count, class) in [(6, *sent, "bar-sent"), (20, *received, "bar-received")] {
            let h = count * plot / max;
            let y = top + plot - h;
            svg.push_str(&format!(
                "<rect class=\"{class}\" x=\"{}\" y=\"{y}\" width=\"12\" height=\"{h}\"><title>{} {}: {count}</title></rect>",
                x + offset,
                escape(day),
                escape(if class == "bar-sent" { ctx.t("user.sent") } else { ctx.t("user.received") }),
            ));
        }
        let label = day.get(5..).unwrap_or(day);
        svg.push_str(&format!(
            "<text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x + slot / 2,
            height - 6,
            escape(label)
        ));
    }
    svg.push_str(&format!(
        "<line class=\"axis-line\" x1=\"36\" y1=\"{0}\" x2=\"{width}\" y2=\"{0}\"/><text class=\"axis\" x=\"32\" y=\"{1}\" text-anchor=\"end\">{max}</text><text class=\"axis\" x=\"32\" y=\"{0}\" text-anchor=\"end\">0</text>",
        top + plot,
        top + 10,
    ));
    html! {
        figure class="chart" {
            svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="chart-title"
                viewBox={ "0 0 " (width) " " (height) } width=(width) height=(height) {
                title id="chart-title" { (ctx.t("user.activity_chart")) }
                (view::trusted(svg))
            }
            figcaption {
                span class="key key-sent" {} " " (ctx.t("user.sent")) "  "
                span class="key key-received" {} " " (ctx.t("user.received"))
            }
        }
        details {
            summary { (ctx.t("user.activity_numbers")) }
            table class="list narrow" {
                thead { tr { th scope="col" { (ctx.t("user.day")) } th scope="col" class="num" { (ctx.t("user.sent")) } th scope="col" class="num" { (ctx.t("user.received")) } } }
                tbody { @for (day, sent, received) in &days { tr { td { (day) } td class="num" { (sent) } td class="num" { (received) } } } }
            }
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `POST /portal/users/{id}/block`.
pub async fn block<P, S, B>(
    State(admin): State<App<P, S, B>>,
    Path(id): Path<String>,
    f: SignedForm,
) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let result = admin
        .set_blocked(&f.p, std::slice::from_ref(&id), true)
        .await;
    or_error(
        &f.ctx,
        result.map(|()| view::done(&format!("/portal/users/{}", encode(&id)), "blocked")),
    )
}

/// `POST /portal/users/{id}/unblock`.
pub async fn unblock<P, S, B>(
    State(admin): State<App<P, S, B>>,
    Path(id): Path<String>,
    f: SignedForm,
) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let result = admin
        .set_blocked(&f.p, std::slice::from_ref(&id), false)
        .await;
    or_error(
        &f.ctx,
        result.map(|()| view::done(&format!("/portal/users/{}", encode(&id)), "unblocked")),
    )
}

fn wipe_confirm(ctx: &Ctx, action: &str, what: Markup, back: &str) -> Response {
    let body = html! {
        p class="warning" role="alert" { (ctx.t("wipe.warning")) }
        (what)
        form method="post" action=(action) class="stack narrow" {
            (ctx.csrf_field())
            label class="check" {
                input type="checkbox" name="revoke_now" value="1";
                " " (ctx.t("wipe.revoke_now"))
            }
            p class="hint" { (ctx.t("wipe.revoke_now_hint")) }
            div class="buttons" {
                button type="submit" class="danger" id="confirm-wipe" { (ctx.t("wipe.confirm")) }
                a href=(back) { (ctx.t("bulk.cancel")) }
            }
        }
    };
    view::page(ctx, ctx.t("wipe.title"), body)
}

/// `GET /portal/users/{id}/wipe`: what wiping every device of a user does.
pub async fn wipe_user_confirm<P, S, B>(
    s: Signed,
    State(admin): State<App<P, S, B>>,
    Path(id): Path<String>,
) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let ctx = s.ctx.clone();
    or_error(&ctx, async {
        let v = admin.user(&s.p, &id).await?;
        let n = v["devices"].as_array().map_or(0, Vec::len);
        let base = format!("/portal/users/{}", encode(&id));
        let what = html! { p { (ctx.t("wipe.user_text").replace("{user}", &id).replace("{n}", &n.to_string())) } };
        Ok(wipe_confirm(&ctx, &format!("{base}/wipe"), what, &base))
    }
    .await)
}

/// `POST /portal/users/{id}/wipe`.
pub async fn wipe_user<P, S, B>(
    State(admin): State<App<P, S, B>>,
    Path(id): Path<String>,
    f: SignedForm,
) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let result = admin
        .wipe_user(&f.p, &id, f.form.checked("revoke_now"))
        .await;
    or_error(&f.ctx, result.map(|_| view::done("/portal/wipes", "wipe")))
}

/// `GET /portal/devices/{id}/wipe`.
pub async fn wipe_device_confirm<P, S, B>(
    s: Signed,
    State(_): State<App<P, S, B>>,
    Path(id): Path<String>,
) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let ctx = &s.ctx;
    if !ctx.can(Permission::Wipe) {
        return view::error_page(ctx, &Error::Forbidden("wipe"));
    }
    let what = html! { p { (ctx.t("wipe.device_text")) " " code { (id) } } };
    wipe_confirm(
        ctx,
        &format!("/portal/devices/{}/wipe", encode(&id)),
        what,
        "/portal/users",
    )
}

/// `POST /portal/devices/{id}/wipe`.
pub async fn wipe_device<P, S, B>(
    State(admin): State<App<P, S, B>>,
    Path(id): Path<String>,
    f: SignedForm,
) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let result = admin
        .wipe_device(&f.p, &id, f.form.checked("revoke_now"))
        .await;
    or_error(&f.ctx, result.map(|_| view::done("/portal/wipes", "wipe")))
}

/// `GET /portal/invite`.
pub async fn invite_form<P, S, B>(s: Signed, State(admin): State<App<P, S, B>>) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let ctx = &s.ctx;
    if !ctx.can(Permission::Invite) {
        return view::error_page(ctx, &Error::Forbidden("invite"));
    }
    let departments = departments(&admin, &s.p).await;
    let mut options = vec![(String::new(), ctx.t("users.no_department").to_owned())];
    options.extend(departments.iter().map(|d| (d.clone(), d.clone())));
    let body = html! {
        p { (ctx.t("invite.intro")) }
        form method="post" action="/portal/invite" class="stack narrow" {
            (ctx.csrf_field())
            label for="user_id" { (ctx.t("invite.user_id")) }
            input id="user_id" name="user_id" type="text" required minlength="3" maxlength="254" autocomplete="off" aria-describedby="user-id-hint";
            p class="hint" id="user-id-hint" { (ctx.t("invite.user_id_hint")) }
            label for="display_name" { (ctx.t("invite.display_name")) }
            input id="display_name" name="display_name" type="text" maxlength="200";
            label for="department" { (ctx.t("users.department")) }
            (select("department", "department", None, &options))
            label for="devices" { (ctx.t("invite.devices")) }
            input id="devices" name="devices" type="number" min="1" max="10" value="1";
            button type="submit" class="primary" { (ctx.t("invite.submit")) }
        }
    };
    view::page(ctx, ctx.t("invite.title"), body)
}

/// `POST /portal/invite`: the invitation with its QR code and the managed
/// configuration for Apple and Android EMMs.
pub async fn invite<P, S, B>(State(admin): State<App<P, S, B>>, f: SignedForm) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let ctx = f.ctx.clone();
    or_error(&ctx, async {
        let devices = f
            .form
            .text("devices")
            .map(|d| d.parse::<u32>().map_err(|_| Error::Invalid("devices must be 1 to 10".into())))
            .transpose()?;
        let req = InviteRequest {
            user_id: f.form.text("user_id").unwrap_or_default(),
            display_name: f.form.text("display_name"),
            department: f.form.text("department"),
            devices,
        };
        let v = admin.invite(&f.p, &req).await?;
        let qr = view::svg_data_uri(v["qr_svg"].as_str().unwrap_or(""));
        let body = html! {
            p class="notice" role="status" { (ctx.t("invite.done").replace("{user}", &req.user_id)) }
            div class="invite" {
                figure class="qr" {
                    img id="qr" src=(qr) width="256" height="256"
                        alt=(ctx.t("invite.qr_alt").replace("{user}", &req.user_id));
                    figcaption { (ctx.t("invite.qr_caption")) }
                }
                dl class="facts" {
                    dt { (ctx.t("invite.token")) } dd { code class="secret" id="token" { (v["token"].as_str().unwrap_or("")) } }
                    dt { (ctx.t("invite.expires")) } dd { (time_ms(v["expires_at"].as_i64().unwrap_or(0) * 1000)) }
                    dt { (ctx.t("invite.devices")) } dd { (v["max_uses"].as_u64().unwrap_or(1)) }
                }
            }
            p class="hint" { (ctx.t("invite.once")) }
            h2 { (ctx.t("invite.apple")) }
            p { (ctx.t("invite.apple_hint")) }
            pre id="apple-plist" tabindex="0" { (v["managed_config"]["apple_plist"].as_str().unwrap_or("")) }
            h2 { (ctx.t("invite.android")) }
            p { (ctx.t("invite.android_hint")) }
            pre id="android-json" tabindex="0" { (v["managed_config"]["android_json"].as_str().unwrap_or("")) }
            p { a href="/portal/invite" { (ctx.t("invite.another")) } " · "
                a href={ "/portal/users/" (encode(&req.user_id)) } { (ctx.t("invite.to_user")) } }
        };
        Ok(view::page(&ctx, ctx.t("invite.result_title"), body))
    }
    .await)
}

/// `GET /portal/import`.
pub async fn import_form<P, S, B>(s: Signed, State(_): State<App<P, S, B>>) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let ctx = &s.ctx;
    if !ctx.can(Permission::ManagePolicy) {
        return view::error_page(ctx, &Error::Forbidden("manage_policy"));
    }
    let body = html! {
        p { (ctx.t("import.intro")) }
        pre class="example" { "user_id,display_name,department\nanna@example.com,Anna Berg,hr\nben@example.com,Ben Kurz,\n" }
        form method="post" action="/portal/import" enctype="multipart/form-data" class="stack narrow" {
            (ctx.csrf_field())
            label for="csv" { (ctx.t("import.file")) }
            input id="csv" name="csv" type="file" accept=".csv,text/csv";
            label for="csv_text" { (ctx.t("import.or_paste")) }
            textarea id="csv_text" name="csv_text" rows="6" {}
            label class="check" { input type="checkbox" name="dry_run" value="1"; " " (ctx.t("import.dry_run")) }
            button type="submit" class="primary" { (ctx.t("import.submit")) }
        }
    };
    view::page(ctx, ctx.t("import.title"), body)
}

/// `POST /portal/import`: imports (or checks) and shows the report per
/// line. The import is synchronous: the report is the progress display.
pub async fn import<P, S, B>(State(admin): State<App<P, S, B>>, f: SignedForm) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let ctx = f.ctx.clone();
    or_error(&ctx, async {
        let csv = f
            .form
            .get("csv")
            .filter(|c| !c.trim().is_empty())
            .or_else(|| f.form.get("csv_text"))
            .unwrap_or("")
            .replace("\r\n", "\n");
        if csv.trim().is_empty() {
            return Err(Error::Invalid("choose a CSV file or paste its lines".into()));
        }
        let dry_run = f.form.checked("dry_run");
        let report = admin.import(&f.p, csv.as_bytes(), dry_run).await?;
        let lines = report["lines"].as_array().cloned().unwrap_or_default();
        let accepted = report["accepted"].as_u64().unwrap_or(0);
        let refused = report["refused"].as_u64().unwrap_or(0);
        let summary = if dry_run { ctx.t("import.summary_dry") } else { ctx.t("import.summary") };
        let body = html! {
            p class="notice" role="status" id="import-summary" {
                (summary.replace("{accepted}", &accepted.to_string()).replace("{refused}", &refused.to_string()))
            }
            @let total = (accepted + refused).max(1);
            progress max=(total) value=(accepted) aria-label=(ctx.t("import.progress")) { (accepted) "/" (total) }
            table class="list" id="import-report" {
                thead { tr {
                    th scope="col" class="num" { (ctx.t("import.line")) }
                    th scope="col" { (ctx.t("users.user_id")) }
                    th scope="col" { (ctx.t("bulk.outcome")) }
                    th scope="col" { (ctx.t("import.reason")) }
                } }
                tbody {
                    @for l in &lines {
                        @let outcome = l["outcome"].as_str().unwrap_or("");
                        tr class=(if outcome == "refused" { "refused" } else { "" }) {
                            td class="num" { (l["line"].as_u64().unwrap_or(0)) }
                            td { (l["user_id"].as_str().unwrap_or("–")) }
                            td { (badge(&ctx, outcome)) }
                            td { (l["reason"].as_str().unwrap_or("")) }
                        }
                    }
                }
            }
            p { a href="/portal/import" { (ctx.t("import.again")) } " · " a href="/portal/users" { (ctx.t("bulk.back_to_users")) } }
        };
        Ok(view::page(&ctx, ctx.t("import.report_title"), body))
    }
    .await)
}
