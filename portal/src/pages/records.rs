//! What happened: the audit trail with filters and exports, wipe states,
//! and archive requests with their parts.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::Response;
use kontor_admin::Error;
use kontor_admin::audit::{self, Filter};
use kontor_admin::service::Admin;
use kontor_provisioning::store as pstore;
use kontor_relay::bus::Bus;
use kontor_relay::store::RelayStore;
use maud::html;
use serde_json::Value;

use super::{or_error, query_pairs, query_text};
use crate::session::{Signed, SignedForm};
use crate::view::{self, badge, encode, maybe_time_ms, time_ms};

type App<P, S, B> = Arc<Admin<P, S, B>>;

/// Entries per audit page.
const AUDIT_PAGE: usize = 200;

/// A time from a `datetime-local` field (read as UTC) or RFC 3339, as
/// RFC 3339 and milliseconds.
fn utc_time(field: &str, text: &str) -> Result<(String, i64), Error> {
    let text = text.trim();
    let has_zone = text.ends_with('Z')
        || text.ends_with('z')
        || text
            .get(text.len().saturating_sub(6)..)
            .is_some_and(|z| z.starts_with('+') || z.starts_with('-'));
    let rfc = if has_zone {
        text.to_owned()
    } else if text.len() == 16 {
        format!("{text}:00Z")
    } else {
        format!("{text}Z")
    };
    let ms = audit::parse_rfc3339_ms(&rfc).map_err(|_| {
        Error::Invalid(format!(
            "{field} must be a date and time such as 2026-11-29T08:00"
        ))
    })?;
    Ok((rfc, ms))
}

/// `GET /portal/audit`: the trail of the organisation, filtered, with
/// export links to the JSON API (JSON lines, syslog).
pub async fn audit<P, S, B>(s: Signed, State(admin): State<App<P, S, B>>, uri: Uri) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let ctx = s.ctx.clone();
    or_error(&ctx, async {
        let q = query_pairs(&uri);
        let get = |n: &str| query_text(&q, n);
        let since = get("since").map(|t| utc_time("since", &t)).transpose()?;
        let until = get("until").map(|t| utc_time("until", &t)).transpose()?;
        let after_seq = get("after")
            .map(|a| a.parse::<u64>().map_err(|_| Error::Invalid("after must be a number".into())))
            .transpose()?;
        let filter = Filter {
            org: None,
            actor: get("actor"),
            action: get("action"),
            target: get("target"),
            since_ms: since.as_ref().map(|s| s.1),
            until_ms: until.as_ref().map(|u| u.1),
            after_seq,
            limit: AUDIT_PAGE,
        };
        let entries = admin.audit_entries(&s.p, filter).await?;
        let names = admin.audit_names(entries.clone()).await?;
        // A pseudonym shows its clear value while the mapping holds it; an
        // erased person's stays a pseudonym.
        let named = |text: &str| -> String {
            text.split(',')
                .map(|part| names.get(part).map_or(part, String::as_str))
                .collect::<Vec<_>>()
                .join(",")
        };
        // The export links carry the same filter to the JSON API.
        let mut export = form_urlencoded::Serializer::new(String::new());
        for name in ["actor", "action", "target"] {
            if let Some(v) = get(name) {
                export.append_pair(name, &v);
            }
        }
        if let Some((rfc, _)) = &since {
            export.append_pair("since", rfc);
        }
        if let Some((rfc, _)) = &until {
            export.append_pair("until", rfc);
        }
        let export = export.finish();
        let sep = if export.is_empty() { "" } else { "&" };
        let next = entries.last().filter(|_| entries.len() == AUDIT_PAGE).map(|e| {
            let mut more = form_urlencoded::Serializer::new(String::new());
            for (k, v) in q.iter().filter(|(k, _)| k != "after") {
                more.append_pair(k, v);
            }
            more.append_pair("after", &e.seq.to_string());
            format!("/portal/audit?{}", more.finish())
        });
        let field = |name: &str| get(name).unwrap_or_default();
        let body = html! {
            form method="get" action="/portal/audit" class="filters" {
                fieldset {
                    legend { (ctx.t("audit.filter")) }
                    div class="grid" {
                        div { label for="a-actor" { (ctx.t("audit.actor")) } input id="a-actor" name="actor" type="text" value=(field("actor")); }
                        div { label for="a-action" { (ctx.t("audit.action")) } input id="a-action" name="action" type="text" value=(field("action")) placeholder="user.block"; }
                        div { label for="a-target" { (ctx.t("audit.target")) } input id="a-target" name="target" type="text" value=(field("target")); }
                        div { label for="a-since" { (ctx.t("audit.since")) } input id="a-since" name="since" type="datetime-local" value=(field("since")); }
                        div { label for="a-until" { (ctx.t("audit.until")) } input id="a-until" name="until" type="datetime-local" value=(field("until")); }
                    }
                    p class="hint" { (ctx.t("audit.filter_hint")) }
                    div class="buttons" {
                        button type="submit" { (ctx.t("users.apply_filter")) }
                        a href="/portal/audit" { (ctx.t("users.clear_filter")) }
                    }
                }
            }
            p {
                (ctx.t("audit.export")) ": "
                a href={ "/v1/audit?format=jsonl" (sep) (export) } download="kontor-audit.jsonl" id="export-jsonl" { (ctx.t("audit.jsonl")) }
                " · "
                a href={ "/v1/audit?format=syslog" (sep) (export) } download="kontor-audit.log" id="export-syslog" { (ctx.t("audit.syslog")) }
            }
            p { (ctx.t("audit.count").replace("{n}", &entries.len().to_string())) }
            table class="list" id="audit" {
                thead { tr {
                    th scope="col" class="num" { "#" }
                    th scope="col" { (ctx.t("audit.time")) }
                    th scope="col" { (ctx.t("audit.actor")) }
                    th scope="col" { (ctx.t("audit.action")) }
                    th scope="col" { (ctx.t("audit.target")) }
                    th scope="col" { (ctx.t("audit.outcome")) }
                    th scope="col" { (ctx.t("audit.detail")) }
                } }
                tbody {
                    @for e in &entries {
                        tr {
                            td class="num" { (e.seq) }
                            td class="nowrap" { (time_ms(e.at_ms)) }
                            td title=(e.actor) { (named(&e.actor)) }
                            td { code { (e.action) } }
                            td class="wrap" title=(e.target) { (named(&e.target)) }
                            td { (badge(&ctx, e.outcome.as_str())) }
                            td class="wrap" { @if e.detail.as_object().is_some_and(|o| !o.is_empty()) { code { (named_detail(&e.detail, &names)) } } }
                        }
                    }
                }
            }
            @if let Some(next) = next {
                p { a href=(next) { (ctx.t("audit.next")) } }
            }
        };
        Ok(view::page(&ctx, ctx.t("audit.title"), body))
    }
    .await)
}

/// `GET /portal/wipes`: every wipe with its state.
pub async fn wipes<P, S, B>(s: Signed, State(admin): State<App<P, S, B>>) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let ctx = s.ctx.clone();
    or_error(&ctx, async {
        let mut wipes = admin.wipes(&s.p).await?;
        wipes.reverse();
        let body = html! {
            p { (ctx.t("wipes.intro")) }
            @if wipes.is_empty() {
                p { (ctx.t("wipes.none")) }
            } @else {
                table class="list" id="wipes" {
                    thead { tr {
                        th scope="col" { (ctx.t("users.user_id")) }
                        th scope="col" { (ctx.t("user.device_id")) }
                        th scope="col" { (ctx.t("wipes.state")) }
                        th scope="col" { (ctx.t("wipes.requested_by")) }
                        th scope="col" { (ctx.t("wipes.requested_at")) }
                        th scope="col" { (ctx.t("wipes.delivered_at")) }
                        th scope="col" { (ctx.t("wipes.confirmed_at")) }
                    } }
                    tbody {
                        @for w in &wipes {
                            tr {
                                td { a href={ "/portal/users/" (encode(w["user_id"].as_str().unwrap_or(""))) } { (w["user_id"].as_str().unwrap_or("")) } }
                                td { code { (w["device"].as_str().unwrap_or("")) } }
                                td { (badge(&ctx, w["state"].as_str().unwrap_or(""))) }
                                td { (w["requested_by"].as_str().unwrap_or("")) }
                                td { (maybe_time_ms(w["requested_at_ms"].as_i64())) }
                                td { (maybe_time_ms(w["delivered_at_ms"].as_i64())) }
                                td { (maybe_time_ms(w["confirmed_at_ms"].as_i64())) }
                            }
                        }
                    }
                }
            }
        };
        Ok(view::page(&ctx, ctx.t("wipes.title"), body))
    }
    .await)
}

/// `GET /portal/archives`: the requests and a form for a new one.
pub async fn archives<P, S, B>(s: Signed, State(admin): State<App<P, S, B>>) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let ctx = s.ctx.clone();
    or_error(&ctx, async {
        let list = admin.archives(&s.p).await?;
        let body = html! {
            p { (ctx.t("archives.intro")) }
            h2 { (ctx.t("archives.requests")) }
            @if list.is_empty() {
                p { (ctx.t("archives.none")) }
            } @else {
                table class="list" id="archives" {
                    thead { tr {
                        th scope="col" { (ctx.t("archives.id")) }
                        th scope="col" { (ctx.t("archives.users")) }
                        th scope="col" { (ctx.t("archives.range")) }
                        th scope="col" { (ctx.t("wipes.requested_by")) }
                        th scope="col" { (ctx.t("archives.status")) }
                        th scope="col" class="num" { (ctx.t("archives.parts")) }
                    } }
                    tbody {
                        @for a in &list {
                            @let id = a["id"].as_str().unwrap_or("");
                            tr {
                                td { a href={ "/portal/archives/" (id) } { code { (id) } } }
                                td class="wrap" { (users_of(&a["users"])) }
                                td class="nowrap" { (time_ms(a["from_ms"].as_i64().unwrap_or(0))) " – " (time_ms(a["to_ms"].as_i64().unwrap_or(0))) }
                                td { (a["requested_by"].as_str().unwrap_or("")) }
                                td { (summary(&a["devices"])) }
                                td class="num" { (a["parts"].as_array().map_or(0, Vec::len)) }
                            }
                        }
                    }
                }
            }
            h2 { (ctx.t("archives.new")) }
            form method="post" action="/portal/archives" class="stack narrow" {
                (ctx.csrf_field())
                label for="ar-users" { (ctx.t("archives.users")) }
                textarea id="ar-users" name="users" rows="3" required aria-describedby="ar-users-hint" {}
                p class="hint" id="ar-users-hint" { (ctx.t("archives.users_hint")) }
                label for="ar-from" { (ctx.t("archives.from")) }
                input id="ar-from" name="from" type="datetime-local" required;
                label for="ar-to" { (ctx.t("archives.to")) }
                input id="ar-to" name="to" type="datetime-local" required;
                p class="hint" { (ctx.t("archives.range_hint")) }
                button type="submit" class="primary" { (ctx.t("archives.submit")) }
            }
        };
        Ok(view::page(&ctx, ctx.t("archives.title"), body))
    }
    .await)
}

fn users_of(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// Device states of an archive as `state ×n` pairs.
fn summary(devices: &Value) -> String {
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for d in devices.as_array().into_iter().flatten() {
        *counts
            .entry(d["state"].as_str().unwrap_or("?"))
            .or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(s, n)| format!("{s} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `POST /portal/archives`.
pub async fn request_archive<P, S, B>(State(admin): State<App<P, S, B>>, f: SignedForm) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let ctx = f.ctx.clone();
    or_error(
        &ctx,
        async {
            let users: Vec<String> = f
                .form
                .get("users")
                .unwrap_or("")
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect();
            let (_, from_ms) = utc_time("from", f.form.get("from").unwrap_or(""))?;
            let (_, to_ms) = utc_time("to", f.form.get("to").unwrap_or(""))?;
            let out = admin.request_archive(&f.p, &users, from_ms, to_ms).await?;
            let id = out["id"].as_str().unwrap_or("");
            Ok(view::done(&format!("/portal/archives/{id}"), "archive"))
        }
        .await,
    )
}

/// `GET /portal/archives/{id}`: each device's state and the parts to
/// download (for `kontor archive open`).
pub async fn archive<P, S, B>(
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
        let a = admin.archive(&s.p, &id).await?;
        let devices = a["devices"].as_array().cloned().unwrap_or_default();
        let parts = a["parts"].as_array().cloned().unwrap_or_default();
        let body = html! {
            dl class="facts" {
                dt { (ctx.t("archives.id")) } dd { code { (id) } }
                dt { (ctx.t("archives.users")) } dd { (users_of(&a["users"])) }
                dt { (ctx.t("archives.range")) } dd { (time_ms(a["from_ms"].as_i64().unwrap_or(0))) " – " (time_ms(a["to_ms"].as_i64().unwrap_or(0))) }
                dt { (ctx.t("wipes.requested_by")) } dd { (a["requested_by"].as_str().unwrap_or("")) }
                dt { (ctx.t("wipes.requested_at")) } dd { (maybe_time_ms(a["created_at_ms"].as_i64())) }
            }
            h2 { (ctx.t("archives.devices")) }
            table class="list" id="archive-devices" {
                thead { tr {
                    th scope="col" { (ctx.t("user.device_id")) }
                    th scope="col" { (ctx.t("users.user_id")) }
                    th scope="col" { (ctx.t("archives.status")) }
                    th scope="col" { (ctx.t("import.reason")) }
                } }
                tbody {
                    @for d in &devices {
                        tr {
                            td { code { (d["device"].as_str().unwrap_or("")) } }
                            td { (d["user_id"].as_str().unwrap_or("")) }
                            td { (badge(&ctx, d["state"].as_str().unwrap_or(""))) }
                            td { (d["reason"].as_str().unwrap_or("")) }
                        }
                    }
                }
            }
            h2 { (ctx.t("archives.parts")) }
            @if parts.is_empty() {
                p { (ctx.t("archives.no_parts")) }
            } @else {
                p class="hint" { (ctx.t("archives.open_hint")) }
                ul id="archive-parts" {
                    @for p in &parts {
                        @let part = p["part"].as_str().unwrap_or("");
                        li { a href={ "/v1/archives/" (encode(&id)) "/parts/" (part) } download={ (part) ".kta" } { code { (part) } }
                             " (" (ctx.t("archives.bytes").replace("{n}", &p["bytes"].as_u64().unwrap_or(0).to_string())) ")" }
                    }
                }
            }
            p { a href="/portal/archives" { (ctx.t("archives.back")) } }
        };
        Ok(view::page(&ctx, ctx.t("archives.detail_title"), body))
    }
    .await)
}

/// The detail as JSON with each resolvable pseudonym replaced by its clear
/// value, for reading (the stored detail is unchanged).
fn named_detail(detail: &serde_json::Value, names: &audit::Names) -> String {
    fn walk(value: &mut serde_json::Value, names: &audit::Names) {
        match value {
            serde_json::Value::String(text) => {
                if let Some(clear) = names.get(text.as_str()) {
                    *text = clear.clone();
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| walk(v, names)),
            serde_json::Value::Object(fields) => fields.values_mut().for_each(|v| walk(v, names)),
            _ => {}
        }
    }
    let mut detail = detail.clone();
    walk(&mut detail, names);
    detail.to_string()
}
