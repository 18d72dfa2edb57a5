//! EMM integrations (API keys) and settings (the archive public key, the
//! administrator's own TOTP).

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use kontor_admin::Error;
use kontor_admin::role::Permission;
use kontor_admin::service::Admin;
use kontor_provisioning::store as pstore;
use kontor_relay::bus::Bus;
use kontor_relay::store::RelayStore;
use maud::html;
use serde_json::Value;

use super::or_error;
use crate::session::{Signed, SignedForm};
use crate::view::{self, maybe_time_ms, role_name, time_ms};

type App<P, S, B> = Arc<Admin<P, S, B>>;

/// `GET /portal/integrations`: API keys for EMM platforms and scripts.
pub async fn integrations<P, S, B>(s: Signed, State(admin): State<App<P, S, B>>) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let ctx = s.ctx.clone();
    or_error(&ctx, async {
        let keys = admin.api_keys(&s.p).await?;
        let accounts = admin.accounts(&s.p).await?;
        let body = html! {
            p { (ctx.t("keys.intro")) }
            h2 { (ctx.t("keys.list")) }
            @if keys.is_empty() {
                p { (ctx.t("keys.none")) }
            } @else {
                table class="list" id="api-keys" {
                    thead { tr {
                        th scope="col" { (ctx.t("keys.id")) }
                        th scope="col" { (ctx.t("keys.label")) }
                        th scope="col" { (ctx.t("keys.account")) }
                        th scope="col" { (ctx.t("keys.created")) }
                        th scope="col" { (ctx.t("keys.revoked")) }
                        th scope="col" { span class="sr-only" { (ctx.t("user.actions")) } }
                    } }
                    tbody {
                        @for k in &keys {
                            @let id = k["id"].as_str().unwrap_or("");
                            tr {
                                td { code { (id) } }
                                td { (k["label"].as_str().unwrap_or("")) }
                                td { (k["account"].as_str().unwrap_or("")) }
                                td { (time_ms(k["created_at_ms"].as_i64().unwrap_or(0))) }
                                td { (maybe_time_ms(k["revoked_at_ms"].as_i64())) }
                                td {
                                    @if k["revoked_at_ms"].is_null() {
                                        form method="post" action="/portal/integrations/revoke" class="inline" {
                                            (ctx.csrf_field())
                                            input type="hidden" name="id" value=(id);
                                            button type="submit" class="small danger" aria-label={ (ctx.t("keys.revoke")) " " (id) } { (ctx.t("keys.revoke")) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { (ctx.t("keys.create")) }
            form method="post" action="/portal/integrations" class="stack narrow" {
                (ctx.csrf_field())
                label for="key-label" { (ctx.t("keys.label")) }
                input id="key-label" name="label" type="text" required maxlength="200" placeholder="Intune";
                label for="key-account" { (ctx.t("keys.account")) }
                select id="key-account" name="account" aria-describedby="key-account-hint" {
                    option value="new-emm" { (ctx.t("keys.new_emm")) }
                    @for a in accounts.iter().filter(|a| a["disabled_at_ms"].is_null()) {
                        option value=(a["id"].as_str().unwrap_or("")) {
                            (a["login"].as_str().unwrap_or("")) " (" (role_label(&ctx, &a["role"])) ")"
                        }
                    }
                }
                p class="hint" id="key-account-hint" { (ctx.t("keys.account_hint")) }
                button type="submit" class="primary" { (ctx.t("keys.create_submit")) }
            }
        };
        Ok(view::page(&ctx, ctx.t("keys.title"), body))
    }
    .await)
}

fn role_label(ctx: &view::Ctx, role: &Value) -> &'static str {
    role.as_str()
        .and_then(kontor_admin::role::Role::parse)
        .map_or("", |r| role_name(ctx, r))
}

/// `POST /portal/integrations`: the new key, shown this once.
pub async fn create_key<P, S, B>(State(admin): State<App<P, S, B>>, f: SignedForm) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let ctx = f.ctx.clone();
    or_error(
        &ctx,
        async {
            let label = f.form.text("label").unwrap_or_default();
            let mut account = f.form.text("account").unwrap_or_default();
            if account == "new-emm" {
                // A key-only account with the emm role: its password is
                // random and never shown, so nobody signs in with it.
                let password = kontor_admin::auth::new_secret();
                let created = admin
                    .create_account(
                        &f.p,
                        &format!("emm: {}", label.trim()),
                        &password,
                        kontor_admin::role::Role::Emm,
                    )
                    .await?;
                account = created.id;
            }
            let key = admin.create_api_key(&f.p, &account, &label).await?;
            let body = html! {
                p class="notice" role="status" { (ctx.t("keys.created_text")) }
                p { code class="secret" id="api-key" { (key["key"].as_str().unwrap_or("")) } }
                p class="warning" { (ctx.t("keys.once")) }
                p { (ctx.t("keys.usage")) " " code { "Authorization: Bearer kak_…" } }
                p { a href="/portal/integrations" { (ctx.t("keys.back")) } }
            };
            Ok(view::page(&ctx, ctx.t("keys.created_title"), body))
        }
        .await,
    )
}

/// `POST /portal/integrations/revoke`.
pub async fn revoke_key<P, S, B>(State(admin): State<App<P, S, B>>, f: SignedForm) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let id = f.form.text("id").unwrap_or_default();
    let result = admin.revoke_api_key(&f.p, &id).await;
    or_error(
        &f.ctx,
        result.map(|()| view::done("/portal/integrations", "key_revoked")),
    )
}

/// `GET /portal/settings`: the account, TOTP, and (for owners) the
/// organisation's archive key.
pub async fn settings<P, S, B>(s: Signed, State(admin): State<App<P, S, B>>) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let ctx = s.ctx.clone();
    or_error(&ctx, async {
        // The service has no reader for the archive key; it is a public
        // key, shown only to those who may change it.
        let archive_key = if ctx.can(Permission::ManageAdmins) {
            admin.store().archive_key(&s.p.org).await?
        } else {
            None
        };
        let body = html! {
            h2 { (ctx.t("settings.account")) }
            dl class="facts" {
                dt { (ctx.t("settings.login")) } dd { (s.p.login) }
                dt { (ctx.t("settings.role")) } dd { (role_name(&ctx, s.p.role)) }
                dt { (ctx.t("settings.org")) } dd { (s.p.org) }
                dt { (ctx.t("settings.timeout")) } dd {
                    (ctx.t("settings.timeout_text")
                        .replace("{idle}", &(admin.config().session_idle.as_secs() / 60).to_string())
                        .replace("{absolute}", &(admin.config().session_absolute.as_secs() / 3600).to_string()))
                }
            }
            h2 { (ctx.t("settings.totp")) }
            p { (ctx.t("settings.totp_intro")) }
            form method="post" action="/portal/settings/totp" {
                (ctx.csrf_field())
                button type="submit" { (ctx.t("settings.totp_enable")) }
            }
            @if ctx.can(Permission::ManageAdmins) {
                h2 { (ctx.t("settings.archive_key")) }
                p { (ctx.t("settings.archive_key_intro")) }
                p { (ctx.t("settings.archive_key_current")) ": "
                    @if let Some(k) = &archive_key { code id="archive-key" { (k) } } @else { (ctx.t("settings.archive_key_none")) } }
                form method="post" action="/portal/settings/archive-key" class="stack narrow" {
                    (ctx.csrf_field())
                    label for="public_key" { (ctx.t("settings.archive_key_new")) }
                    input id="public_key" name="public_key" type="text" required minlength="64" maxlength="64" pattern="[0-9a-fA-F]{64}" autocomplete="off";
                    button type="submit" { (ctx.t("settings.archive_key_save")) }
                }
            }
        };
        Ok(view::page(&ctx, ctx.t("settings.title"), body))
    }
    .await)
}

/// `POST /portal/settings/archive-key`.
pub async fn set_archive_key<P, S, B>(State(admin): State<App<P, S, B>>, f: SignedForm) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let key = f.form.text("public_key").unwrap_or_default();
    let result = admin.set_archive_key(&f.p, &key).await;
    or_error(
        &f.ctx,
        result.map(|()| view::done("/portal/settings", "archive_key")),
    )
}

/// `POST /portal/settings/totp`: turns TOTP on and shows the secret, its
/// URI and a QR code for an authenticator app, this once.
pub async fn enable_totp<P, S, B>(State(admin): State<App<P, S, B>>, f: SignedForm) -> Response
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    let ctx = f.ctx.clone();
    or_error(&ctx, async {
        let v = admin.enable_totp(&f.p).await?;
        let uri = v["uri"].as_str().unwrap_or("");
        let qr = qrcode::QrCode::with_error_correction_level(uri.as_bytes(), qrcode::EcLevel::M)
            .map(|c| {
                c.render::<qrcode::render::svg::Color<'_>>()
                    .min_dimensions(200, 200)
                    .build()
            })
            .map_err(|_| Error::Invalid("the TOTP URI does not fit a QR code".into()))?;
        let body = html! {
            p class="notice" role="status" { (ctx.t("settings.totp_done")) }
            figure class="qr" {
                img src=(view::svg_data_uri(&qr)) width="200" height="200" alt=(ctx.t("settings.totp_qr_alt"));
            }
            dl class="facts" {
                dt { (ctx.t("settings.totp_secret")) } dd { code class="secret" id="totp-secret" { (v["secret"].as_str().unwrap_or("")) } }
                dt { (ctx.t("settings.totp_uri")) } dd { code class="secret wrap" { (uri) } }
            }
            p class="warning" { (ctx.t("settings.totp_once")) }
            p { a href="/portal/settings" { (ctx.t("settings.back")) } }
        };
        Ok(view::page(&ctx, ctx.t("settings.totp_title"), body))
    }
    .await)
}
