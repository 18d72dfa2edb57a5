//! The organisation's rules: departments and the barrier matrix,
//! restrictions per scope, the allow-list, and broadcasts.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use kontor_admin::Error;
use kontor_admin::directory::{Allowance, RestrictionSettings, Scope};
use kontor_admin::role::Permission;
use kontor_admin::service::Admin;
use kontor_provisioning::store as pstore;
use kontor_relay::bus::Bus;
use kontor_relay::store::RelayStore;
use maud::{Markup, html};
use serde_json::Value;

use super::or_error;
use crate::session::{Signed, SignedForm};
use crate::view::{self, Ctx};

type App<P, S, B> = Arc<Admin<P, S, B>>;

/// The attachment kinds a restriction can allow (the service checks them).
const ATTACHMENTS: [&str; 4] = ["images", "videos", "audio", "files"];

/// Departments with their closed flag, and every pair's allowance.
struct Matrix {
    departments: Vec<(String, bool)>,
    pairs: Vec<(String, String, Allowance)>,
}

fn matrix_of(v: &Value) -> Matrix {
    let departments: Vec<(String, bool)> = v["departments"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| {
                    Some((
                        d["name"].as_str()?.to_owned(),
                        d["closed"].as_bool().unwrap_or(false),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let stored: Vec<(String, String, Allowance)> = v["matrix"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| {
                    Some((
                        m["a"].as_str()?.to_owned(),
                        m["b"].as_str()?.to_owned(),
                        Allowance {
                            messages: m["messages"].as_bool().unwrap_or(false),
                            groups: m["groups"].as_bool().unwrap_or(false),
                            files: m["files"].as_bool().unwrap_or(false),
                        },
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    // Every unordered pair, "no department" (the empty name) included.
    let mut names: Vec<String> = departments.iter().map(|(n, _)| n.clone()).collect();
    names.push(String::new());
    names.sort();
    let mut pairs = Vec::new();
    for (i, a) in names.iter().enumerate() {
        for b in &names[i + 1..] {
            let allow = stored
                .iter()
                .find(|(x, y, _)| (x == a && y == b) || (x == b && y == a))
                .map(|(_, _, al)| *al)
                .unwrap_or_default();
            pairs.push((a.clone(), b.clone(), allow));
        }
    }
    Matrix { departments, pairs }
}

fn dept_label(ctx: &Ctx, name: &str) -> String {
    if name.is_empty() {
        ctx.t("users.no_department").to_owned()
    } else {
        name.to_owned()
    }
}

/// `GET /portal/departments`: departments, closed flags and the barrier
/// matrix, editable in one form.
pub async fn departments<P, S, B>(s: Signed, State(admin): State<App<P, S, B>>) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let ctx = s.ctx.clone();
    or_error(&ctx, async {
        let m = matrix_of(&admin.barriers(&s.p).await?);
        let edit = ctx.can(Permission::ManagePolicy);
        let body = html! {
            p { (ctx.t("departments.intro")) }
            @if m.departments.is_empty() {
                p { (ctx.t("departments.none")) }
            } @else {
                form method="post" action="/portal/departments/matrix" id="matrix" {
                    (ctx.csrf_field())
                    h2 { (ctx.t("departments.list")) }
                    table class="list narrow" {
                        thead { tr {
                            th scope="col" { (ctx.t("departments.name")) }
                            th scope="col" { (ctx.t("departments.closed")) }
                        } }
                        tbody {
                            @for (i, (name, closed)) in m.departments.iter().enumerate() {
                                tr {
                                    th scope="row" { (name) }
                                    td {
                                        input type="hidden" name={ "d" (i) "_name" } value=(name);
                                        input type="checkbox" name={ "d" (i) "_closed" } value="1" checked[*closed] disabled[!edit]
                                            aria-label={ (ctx.t("departments.closed")) ": " (name) };
                                    }
                                }
                            }
                        }
                    }
                    p class="hint" { (ctx.t("departments.closed_hint")) }
                    h2 { (ctx.t("departments.matrix")) }
                    p class="hint" { (ctx.t("departments.matrix_hint")) }
                    table class="list" {
                        thead { tr {
                            th scope="col" { (ctx.t("departments.pair")) }
                            th scope="col" { (ctx.t("departments.messages")) }
                            th scope="col" { (ctx.t("departments.groups")) }
                            th scope="col" { (ctx.t("departments.files")) }
                        } }
                        tbody {
                            @for (i, (a, b, allow)) in m.pairs.iter().enumerate() {
                                @let pair = format!("{} ↔ {}", dept_label(&ctx, a), dept_label(&ctx, b));
                                tr {
                                    th scope="row" {
                                        input type="hidden" name={ "p" (i) "_a" } value=(a);
                                        input type="hidden" name={ "p" (i) "_b" } value=(b);
                                        (pair)
                                    }
                                    @for (field, on, key) in [("messages", allow.messages, "departments.messages"), ("groups", allow.groups, "departments.groups"), ("files", allow.files, "departments.files")] {
                                        td { input type="checkbox" name={ "p" (i) "_" (field) } value="1" checked[on] disabled[!edit]
                                                aria-label={ (ctx.t(key)) ": " (pair) }; }
                                    }
                                }
                            }
                        }
                    }
                    @if edit { div class="buttons" { button type="submit" class="primary" { (ctx.t("departments.save")) } } }
                }
            }
            @if edit {
                h2 { (ctx.t("departments.add")) }
                form method="post" action="/portal/departments" class="stack narrow" {
                    (ctx.csrf_field())
                    label for="dept-name" { (ctx.t("departments.name")) }
                    input id="dept-name" name="name" type="text" required maxlength="200";
                    label class="check" { input type="checkbox" name="closed" value="1"; " " (ctx.t("departments.closed")) }
                    button type="submit" { (ctx.t("departments.add_submit")) }
                }
                @if !m.departments.is_empty() {
                    h2 { (ctx.t("departments.delete")) }
                    form method="post" action="/portal/departments/delete" class="stack narrow" {
                        (ctx.csrf_field())
                        label for="dept-delete" { (ctx.t("departments.name")) }
                        select id="dept-delete" name="name" {
                            @for (name, _) in &m.departments { option value=(name) { (name) } }
                        }
                        p class="hint" { (ctx.t("departments.delete_hint")) }
                        button type="submit" class="danger" { (ctx.t("departments.delete_submit")) }
                    }
                }
            }
        };
        Ok(view::page(&ctx, ctx.t("departments.title"), body))
    }
    .await)
}

/// `POST /portal/departments`: adds (or changes) a department.
pub async fn add_department<P, S, B>(State(admin): State<App<P, S, B>>, f: SignedForm) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let name = f.form.text("name").unwrap_or_default();
    let result = admin
        .put_department(&f.p, &name, f.form.checked("closed"))
        .await;
    or_error(
        &f.ctx,
        result.map(|()| view::done("/portal/departments", "department")),
    )
}

/// `POST /portal/departments/delete`.
pub async fn delete_department<P, S, B>(
    State(admin): State<App<P, S, B>>,
    f: SignedForm,
) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let name = f.form.text("name").unwrap_or_default();
    let result = admin.delete_department(&f.p, &name).await;
    or_error(
        &f.ctx,
        result.map(|()| view::done("/portal/departments", "department_deleted")),
    )
}

/// `POST /portal/departments/matrix`: saves what changed (closed flags,
/// pair allowances), each change through the service and its audit entry.
pub async fn save_matrix<P, S, B>(State(admin): State<App<P, S, B>>, f: SignedForm) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let ctx = f.ctx.clone();
    or_error(
        &ctx,
        async {
            let current = matrix_of(&admin.barriers(&f.p).await?);
            let mut changes = 0usize;
            for i in 0..current.departments.len() {
                let Some(name) = f.form.get(&format!("d{i}_name")) else {
                    continue;
                };
                let closed = f.form.checked(&format!("d{i}_closed"));
                let Some((_, was)) = current.departments.iter().find(|(n, _)| n == name) else {
                    continue;
                };
                if *was != closed {
                    admin.put_department(&f.p, name, closed).await?;
                    changes += 1;
                }
            }
            for i in 0..current.pairs.len() {
                let (Some(a), Some(b)) = (
                    f.form.get(&format!("p{i}_a")),
                    f.form.get(&format!("p{i}_b")),
                ) else {
                    continue;
                };
                let allow = Allowance {
                    messages: f.form.checked(&format!("p{i}_messages")),
                    groups: f.form.checked(&format!("p{i}_groups")),
                    files: f.form.checked(&format!("p{i}_files")),
                };
                let was = current
                    .pairs
                    .iter()
                    .find(|(x, y, _)| x == a && y == b)
                    .map(|(_, _, al)| *al);
                if was != Some(allow) {
                    admin.put_barrier(&f.p, a, b, allow).await?;
                    changes += 1;
                }
            }
            Ok(view::done(
                &format!("/portal/departments?n={changes}"),
                "matrix",
            ))
        }
        .await,
    )
}

/// `GET /portal/restrictions`: the settings per scope, and a form to set
/// them.
pub async fn restrictions<P, S, B>(s: Signed, State(admin): State<App<P, S, B>>) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let ctx = s.ctx.clone();
    or_error(&ctx, async {
        let v = admin.restrictions(&s.p).await?;
        let rows = v["restrictions"].as_array().cloned().unwrap_or_default();
        let departments: Vec<String> = matrix_of(&admin.barriers(&s.p).await?)
            .departments
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let edit = ctx.can(Permission::ManagePolicy);
        let tri = |name: &str, label: &'static str| {
            html! {
                div {
                    label for=(name) { (ctx.t(label)) }
                    select id=(name) name=(name) {
                        option value="" { (ctx.t("restrictions.unset")) }
                        option value="allow" { (ctx.t("restrictions.allowed")) }
                        option value="forbid" { (ctx.t("restrictions.forbidden")) }
                    }
                }
            }
        };
        let body = html! {
            p { (ctx.t("restrictions.intro")) }
            h2 { (ctx.t("restrictions.current")) }
            @if rows.is_empty() {
                p { (ctx.t("restrictions.empty")) }
            } @else {
                table class="list" id="restrictions" {
                    thead { tr {
                        th scope="col" { (ctx.t("restrictions.scope")) }
                        th scope="col" { (ctx.t("restrictions.target")) }
                        th scope="col" { (ctx.t("restrictions.settings")) }
                        @if edit { th scope="col" { span class="sr-only" { (ctx.t("user.actions")) } } }
                    } }
                    tbody {
                        @for r in &rows {
                            @let scope = r["scope"].as_str().unwrap_or("");
                            @let id = r["id"].as_str().unwrap_or("");
                            tr {
                                td { (scope_name(&ctx, scope)) }
                                td { (id) }
                                td { (settings_text(&ctx, &r["settings"])) }
                                @if edit {
                                    td {
                                        form method="post" action="/portal/restrictions/clear" class="inline" {
                                            (ctx.csrf_field())
                                            input type="hidden" name="scope" value=(scope);
                                            input type="hidden" name="target" value=(id);
                                            button type="submit" class="small" aria-label={ (ctx.t("restrictions.clear")) " " (scope) " " (id) } { (ctx.t("restrictions.clear")) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if edit {
                h2 { (ctx.t("restrictions.set")) }
                form method="post" action="/portal/restrictions" class="stack narrow" {
                    (ctx.csrf_field())
                    label for="scope" { (ctx.t("restrictions.scope")) }
                    select id="scope" name="scope" {
                        option value="org" { (ctx.t("restrictions.scope_org")) }
                        option value="department" { (ctx.t("restrictions.scope_department")) }
                        option value="user" { (ctx.t("restrictions.scope_user")) }
                    }
                    label for="target" { (ctx.t("restrictions.target")) }
                    input id="target" name="target" type="text" list="department-names" aria-describedby="target-hint";
                    datalist id="department-names" { @for d in &departments { option value=(d) {} } }
                    p class="hint" id="target-hint" { (ctx.t("restrictions.target_hint")) }
                    (tri("copy_paste", "restrictions.copy_paste"))
                    (tri("forwarding", "restrictions.forwarding"))
                    (tri("screenshots", "restrictions.screenshots"))
                    fieldset {
                        legend { (ctx.t("restrictions.attachments")) }
                        label class="check" { input type="checkbox" name="limit_attachments" value="1"; " " (ctx.t("restrictions.limit_attachments")) }
                        @for kind in ATTACHMENTS {
                            label class="check" { input type="checkbox" name="attachment" value=(kind); " " (attachment_name(&ctx, kind)) }
                        }
                    }
                    button type="submit" class="primary" { (ctx.t("restrictions.save")) }
                }
            }
        };
        Ok(view::page(&ctx, ctx.t("restrictions.title"), body))
    }
    .await)
}

fn scope_name(ctx: &Ctx, scope: &str) -> &'static str {
    match scope {
        "org" => ctx.t("restrictions.scope_org"),
        "department" => ctx.t("restrictions.scope_department"),
        "group" => ctx.t("restrictions.scope_group"),
        "user" => ctx.t("restrictions.scope_user"),
        _ => "",
    }
}

fn attachment_name(ctx: &Ctx, kind: &str) -> &'static str {
    match kind {
        "images" => ctx.t("attachment.images"),
        "videos" => ctx.t("attachment.videos"),
        "audio" => ctx.t("attachment.audio"),
        _ => ctx.t("attachment.files"),
    }
}

fn settings_text(ctx: &Ctx, s: &Value) -> Markup {
    let yes_no = |v: &Value| {
        if v.as_bool() == Some(true) {
            ctx.t("restrictions.allowed")
        } else {
            ctx.t("restrictions.forbidden")
        }
    };
    html! {
        ul class="plain" {
            @if !s["copy_paste"].is_null() { li { (ctx.t("restrictions.copy_paste")) ": " (yes_no(&s["copy_paste"])) } }
            @if !s["forwarding"].is_null() { li { (ctx.t("restrictions.forwarding")) ": " (yes_no(&s["forwarding"])) } }
            @if !s["screenshots"].is_null() { li { (ctx.t("restrictions.screenshots")) ": " (yes_no(&s["screenshots"])) } }
            @if let Some(a) = s["attachments"].as_array() {
                li { (ctx.t("restrictions.attachments")) ": "
                    @if a.is_empty() { (ctx.t("restrictions.none")) }
                    @else { (a.iter().filter_map(Value::as_str).map(|k| attachment_name(ctx, k)).collect::<Vec<_>>().join(", ")) } }
            }
        }
    }
}

fn scope_and_target(f: &SignedForm) -> Result<(Scope, String), Error> {
    let scope = f
        .form
        .get("scope")
        .and_then(Scope::parse)
        .ok_or_else(|| Error::Invalid("choose a scope".into()))?;
    let target = match scope {
        Scope::Org => f.p.org.clone(),
        _ => f
            .form
            .text("target")
            .ok_or_else(|| Error::Invalid("name the department or user".into()))?,
    };
    Ok((scope, target))
}

/// `POST /portal/restrictions`.
pub async fn set_restrictions<P, S, B>(State(admin): State<App<P, S, B>>, f: SignedForm) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let ctx = f.ctx.clone();
    or_error(
        &ctx,
        async {
            let (scope, target) = scope_and_target(&f)?;
            let tri = |name: &str| match f.form.get(name) {
                Some("allow") => Some(true),
                Some("forbid") => Some(false),
                _ => None,
            };
            let settings = RestrictionSettings {
                copy_paste: tri("copy_paste"),
                forwarding: tri("forwarding"),
                screenshots: tri("screenshots"),
                attachments: f.form.checked("limit_attachments").then(|| {
                    f.form
                        .all("attachment")
                        .into_iter()
                        .collect::<BTreeSet<_>>()
                }),
            };
            let n = admin
                .set_restrictions(&f.p, scope, &target, Some(settings))
                .await?;
            Ok(view::done(
                &format!("/portal/restrictions?n={n}"),
                "restrictions",
            ))
        }
        .await,
    )
}

/// `POST /portal/restrictions/clear`.
pub async fn clear_restrictions<P, S, B>(
    State(admin): State<App<P, S, B>>,
    f: SignedForm,
) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let ctx = f.ctx.clone();
    or_error(
        &ctx,
        async {
            let (scope, target) = scope_and_target(&f)?;
            let n = admin.set_restrictions(&f.p, scope, &target, None).await?;
            Ok(view::done(
                &format!("/portal/restrictions?n={n}"),
                "restrictions",
            ))
        }
        .await,
    )
}

/// `GET /portal/allow-list`.
pub async fn allow_list<P, S, B>(s: Signed, State(admin): State<App<P, S, B>>) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let ctx = s.ctx.clone();
    or_error(&ctx, async {
        let entries = admin.allow_list(&s.p).await?;
        let edit = ctx.can(Permission::ManagePolicy);
        let body = html! {
            p { (ctx.t("allow.intro")) }
            ul class="plain" {
                li { code { "anna@example.com" } " – " (ctx.t("allow.user")) }
                li { code { "@example.com" } " – " (ctx.t("allow.domain")) }
                li { code { "department:sales" } " – " (ctx.t("allow.department")) }
            }
            h2 { (ctx.t("allow.entries")) }
            @if entries.is_empty() {
                p { (ctx.t("allow.empty")) }
            } @else {
                table class="list narrow" id="allow-list" {
                    thead { tr { th scope="col" { (ctx.t("allow.entry")) } @if edit { th scope="col" { span class="sr-only" { (ctx.t("user.actions")) } } } } }
                    tbody {
                        @for e in &entries {
                            tr {
                                td { code { (e) } }
                                @if edit {
                                    td { form method="post" action="/portal/allow-list/remove" class="inline" {
                                        (ctx.csrf_field())
                                        input type="hidden" name="entry" value=(e);
                                        button type="submit" class="small" aria-label={ (ctx.t("allow.remove")) " " (e) } { (ctx.t("allow.remove")) }
                                    } }
                                }
                            }
                        }
                    }
                }
                p class="hint" { (ctx.t("allow.remove_hint")) }
            }
            @if edit {
                h2 { (ctx.t("allow.add")) }
                form method="post" action="/portal/allow-list" class="stack narrow" {
                    (ctx.csrf_field())
                    label for="entry" { (ctx.t("allow.entry")) }
                    input id="entry" name="entry" type="text" required;
                    button type="submit" { (ctx.t("allow.add_submit")) }
                }
            }
        };
        Ok(view::page(&ctx, ctx.t("allow.title"), body))
    }
    .await)
}

/// `POST /portal/allow-list`.
pub async fn allow<P, S, B>(State(admin): State<App<P, S, B>>, f: SignedForm) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let entry = f.form.text("entry").unwrap_or_default();
    let result = admin.set_allow_list_entry(&f.p, &entry, true).await;
    or_error(
        &f.ctx,
        result.map(|()| view::done("/portal/allow-list", "allow_added")),
    )
}

/// `POST /portal/allow-list/remove`.
pub async fn disallow<P, S, B>(State(admin): State<App<P, S, B>>, f: SignedForm) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let entry = f.form.text("entry").unwrap_or_default();
    let result = admin.set_allow_list_entry(&f.p, &entry, false).await;
    or_error(
        &f.ctx,
        result.map(|()| view::done("/portal/allow-list", "allow_removed")),
    )
}

/// `GET /portal/broadcast`.
pub async fn broadcast_form<P, S, B>(s: Signed, State(admin): State<App<P, S, B>>) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let ctx = s.ctx.clone();
    if !ctx.can(Permission::Broadcast) {
        return view::error_page(&ctx, &Error::Forbidden("broadcast"));
    }
    or_error(
        &ctx,
        async {
            let departments = matrix_of(&admin.barriers(&s.p).await?).departments;
            let body = html! {
                p { (ctx.t("broadcast.intro")) }
                form method="post" action="/portal/broadcast" class="stack narrow" {
                    (ctx.csrf_field())
                    label for="text" { (ctx.t("broadcast.text")) }
                    textarea id="text" name="text" rows="6" maxlength="4000" required {}
                    label for="bdept" { (ctx.t("broadcast.to")) }
                    select id="bdept" name="department" {
                        option value="" { (ctx.t("broadcast.everyone")) }
                        @for (d, _) in &departments { option value=(d) { (d) } }
                    }
                    button type="submit" class="primary" { (ctx.t("broadcast.send")) }
                }
            };
            Ok(view::page(&ctx, ctx.t("broadcast.title"), body))
        }
        .await,
    )
}

/// `POST /portal/broadcast`.
pub async fn broadcast<P, S, B>(State(admin): State<App<P, S, B>>, f: SignedForm) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let text = f.form.get("text").unwrap_or("").replace("\r\n", "\n");
    let department = f.form.text("department");
    let result = admin.broadcast(&f.p, &text, department.as_deref()).await;
    or_error(
        &f.ctx,
        result.map(|n| view::done(&format!("/portal/broadcast?n={n}"), "broadcast")),
    )
}
