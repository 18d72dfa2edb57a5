//! The EMM API: JSON over HTTPS on the admin listener, authenticated by an
//! integration's API key (`Authorization: Bearer kak_…` of an account with
//! the `emm` role; keys are stored hashed by the administration). SCIM 2.0
//! under `/scim/v2`, webhooks from MDMs under `/emm/v1/webhooks`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use kontor_admin::directory::{RestrictionSettings, Scope};
use kontor_admin::service::Principal;
use kontor_provisioning::store as pstore;
use kontor_relay::bus::Bus;
use kontor_relay::store::RelayStore;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::service::{ConfigurationRequest, Connector, Error, Format, WipeRequest};

/// The OpenAPI description of the EMM API.
pub const OPENAPI: &str = include_str!("../openapi.json");

type App<P, S, B> = Arc<Connector<P, S, B>>;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            Error::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
            Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Error::Admin(e) => (e.status(), e.code()),
            Error::Store(_) | Error::Payload(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            Error::Mdm(_) => (StatusCode::BAD_GATEWAY, "mdm"),
        };
        // A failure of ours names no detail to the client; the log has it.
        let message = match &self {
            Error::Admin(e) => e.public_message(),
            _ if !status.is_server_error() => self.to_string(),
            Error::Mdm(_) => "mdm command not queued".to_owned(),
            _ => "internal error".to_owned(),
        };
        if status.is_server_error() {
            // Debug: the detail some Display forms leave out (admin's Unavailable).
            tracing::error!(error = ?self, "emm request failed");
        }
        (
            status,
            axum::Json(serde_json::json!({ "error": code, "message": message })),
        )
            .into_response()
    }
}

/// The EMM API router (no fallback: it is merged with the admin API's).
pub fn router<P, S, B>(connector: App<P, S, B>) -> Router
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    // The admin API's security headers on every answer.
    kontor_admin::http::with_security_headers(
        Router::new()
            .route("/emm/v1/openapi.json", get(openapi))
            .route(
                "/emm/v1/configurations",
                post(Api::<P, S, B>::configuration),
            )
            .route(
                "/emm/v1/configurations/bulk",
                post(Api::<P, S, B>::bulk_configuration),
            )
            .route("/emm/v1/wipe", post(Api::<P, S, B>::wipe))
            .route(
                "/emm/v1/policy/{scope}/{id}",
                put(Api::<P, S, B>::set_policy).delete(Api::<P, S, B>::clear_policy),
            )
            .route("/emm/v1/commands", get(Api::<P, S, B>::commands))
            .route("/emm/v1/webhooks/nanomdm", post(Api::<P, S, B>::nanomdm))
            .route("/emm/v1/webhooks/android", post(Api::<P, S, B>::android))
            .layer(axum::extract::DefaultBodyLimit::max(1024 * 1024))
            .with_state(connector),
    )
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, Error> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ct = content_type.trim();
    if !(ct.starts_with("application/json") || ct.starts_with("application/scim+json")) {
        return Err(Error::Invalid(
            "content type must be application/json".into(),
        ));
    }
    serde_json::from_slice(body).map_err(|e| Error::Invalid(format!("body: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Bulk {
    department: String,
    uses: u32,
    format: Format,
}

struct Api<P, S, B>(std::marker::PhantomData<(P, S, B)>);

impl<P, S, B> Api<P, S, B>
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    /// The integration calling: API keys only (no sessions, so no CSRF).
    async fn who(c: &Connector<P, S, B>, headers: &HeaderMap) -> Result<Principal, Error> {
        let key = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(Error::Admin(kontor_admin::Error::Unauthenticated(
                "use Authorization: Bearer with the integration's API key",
            )))?;
        Ok(c.admin().api_key(key.trim()).await?)
    }

    async fn configuration(
        State(c): State<App<P, S, B>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response, Error> {
        let p = Self::who(&c, &headers).await?;
        let req: ConfigurationRequest = json_body(&headers, &body)?;
        Ok((
            StatusCode::CREATED,
            axum::Json(c.configuration(&p, &req).await?),
        )
            .into_response())
    }

    async fn bulk_configuration(
        State(c): State<App<P, S, B>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response, Error> {
        let p = Self::who(&c, &headers).await?;
        let req: Bulk = json_body(&headers, &body)?;
        Ok((
            StatusCode::CREATED,
            axum::Json(
                c.bulk_configuration(&p, &req.department, req.uses, req.format)
                    .await?,
            ),
        )
            .into_response())
    }

    async fn wipe(
        State(c): State<App<P, S, B>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response, Error> {
        let p = Self::who(&c, &headers).await?;
        let req: WipeRequest = json_body(&headers, &body)?;
        let out = c.wipe(&p, &req).await?;
        Ok((
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({ "devices": out })),
        )
            .into_response())
    }

    fn scope(text: &str) -> Result<Scope, Error> {
        Scope::parse(text).ok_or_else(|| {
            Error::Invalid(format!(
                "scope {text:?}: use org, department, group or user"
            ))
        })
    }

    async fn set_policy(
        State(c): State<App<P, S, B>>,
        headers: HeaderMap,
        Path((scope, id)): Path<(String, String)>,
        body: Bytes,
    ) -> Result<Response, Error> {
        let p = Self::who(&c, &headers).await?;
        let settings: RestrictionSettings = json_body(&headers, &body)?;
        Ok(axum::Json(
            c.policy(&p, Self::scope(&scope)?, &id, Some(settings))
                .await?,
        )
        .into_response())
    }

    async fn clear_policy(
        State(c): State<App<P, S, B>>,
        headers: HeaderMap,
        Path((scope, id)): Path<(String, String)>,
    ) -> Result<Response, Error> {
        let p = Self::who(&c, &headers).await?;
        Ok(axum::Json(c.policy(&p, Self::scope(&scope)?, &id, None).await?).into_response())
    }

    async fn nanomdm(
        State(c): State<App<P, S, B>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response, Error> {
        let p = Self::who(&c, &headers).await?;
        let correlated = c.nanomdm_event(&p, &body).await?;
        Ok(axum::Json(serde_json::json!({ "correlated": correlated })).into_response())
    }

    async fn android(
        State(c): State<App<P, S, B>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response, Error> {
        let p = Self::who(&c, &headers).await?;
        let correlated = c.android_event(&p, &body).await?;
        Ok(axum::Json(serde_json::json!({ "correlated": correlated })).into_response())
    }

    async fn commands(
        State(c): State<App<P, S, B>>,
        headers: HeaderMap,
    ) -> Result<Response, Error> {
        let p = Self::who(&c, &headers).await?;
        Ok(axum::Json(serde_json::json!({ "commands": c.commands(&p).await? })).into_response())
    }
}

type ScimApp<P, S, B> = Arc<crate::scim_service::Scim<P, S, B>>;

fn scim_answer(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/scim+json"),
    );
    response
}

fn scim_error(e: crate::scim::ScimError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    scim_answer(status, e.to_json())
}

fn scim_result(
    status: StatusCode,
    r: Result<serde_json::Value, crate::scim::ScimError>,
) -> Response {
    match r {
        Ok(v) => scim_answer(status, v),
        Err(e) => scim_error(e),
    }
}

/// The SCIM 2.0 router (`/scim/v2`), for directory sync from Entra ID,
/// Okta and others; authenticated like the EMM API.
pub fn scim_router<P, S, B>(scim: ScimApp<P, S, B>) -> Router
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    kontor_admin::http::with_security_headers(
        Router::new()
            .route(
                "/scim/v2/ServiceProviderConfig",
                get(Scim::<P, S, B>::config),
            )
            .route(
                "/scim/v2/Users",
                get(Scim::<P, S, B>::list_users).post(Scim::<P, S, B>::create_user),
            )
            .route(
                "/scim/v2/Users/{id}",
                get(Scim::<P, S, B>::get_user)
                    .put(Scim::<P, S, B>::replace_user)
                    .patch(Scim::<P, S, B>::patch_user)
                    .delete(Scim::<P, S, B>::delete_user),
            )
            .route(
                "/scim/v2/Groups",
                get(Scim::<P, S, B>::list_groups).post(Scim::<P, S, B>::create_group),
            )
            .route(
                "/scim/v2/Groups/{id}",
                get(Scim::<P, S, B>::get_group)
                    .patch(Scim::<P, S, B>::patch_group)
                    .delete(Scim::<P, S, B>::delete_group),
            )
            .layer(axum::extract::DefaultBodyLimit::max(1024 * 1024))
            .with_state(scim),
    )
}

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    filter: Option<String>,
    #[serde(default, rename = "startIndex")]
    start_index: Option<String>,
    #[serde(default)]
    count: Option<String>,
    #[serde(default)]
    attributes: Option<String>,
    #[serde(default, rename = "excludedAttributes")]
    excluded_attributes: Option<String>,
}

struct Scim<P, S, B>(std::marker::PhantomData<(P, S, B)>);

impl<P, S, B> Scim<P, S, B>
where
    P: pstore::Store + Clone + 'static,
    S: RelayStore,
    B: Bus,
{
    async fn who(
        s: &crate::scim_service::Scim<P, S, B>,
        headers: &HeaderMap,
    ) -> Result<Principal, Response> {
        let key = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let unauthorised = |detail: String| {
            scim_error(crate::scim::ScimError {
                status: 401,
                scim_type: None,
                detail,
            })
        };
        let Some(key) = key else {
            return Err(unauthorised(
                "use Authorization: Bearer with the integration's API key".into(),
            ));
        };
        s.admin()
            .api_key(key.trim())
            .await
            .map_err(|e| unauthorised(e.to_string()))
    }

    fn list_query(
        raw: Option<String>,
    ) -> Result<(Option<String>, crate::scim::Page), crate::scim::ScimError> {
        let uri: axum::http::Uri = format!("/?{}", raw.unwrap_or_default())
            .parse()
            .map_err(|_| crate::scim::Error::InvalidSyntax("malformed query".into()))?;
        let q = axum::extract::Query::<ListQuery>::try_from_uri(&uri)
            .map_err(|e| crate::scim::Error::InvalidSyntax(e.body_text()))?
            .0;
        // Attribute selection is not supported: whole resources are returned.
        let _ = (&q.attributes, &q.excluded_attributes);
        let page = crate::scim::Page::from_query(q.start_index.as_deref(), q.count.as_deref())?;
        Ok((q.filter, page))
    }

    async fn config() -> Response {
        scim_answer(
            StatusCode::OK,
            crate::scim_service::service_provider_config(),
        )
    }

    async fn list_users(
        State(s): State<ScimApp<P, S, B>>,
        headers: HeaderMap,
        axum::extract::RawQuery(q): axum::extract::RawQuery,
    ) -> Response {
        let p = match Self::who(&s, &headers).await {
            Ok(p) => p,
            Err(r) => return r,
        };
        let (filter, page) = match Self::list_query(q) {
            Ok(x) => x,
            Err(e) => return scim_error(e),
        };
        scim_result(
            StatusCode::OK,
            s.list_users(&p, filter.as_deref(), page).await,
        )
    }

    async fn create_user(
        State(s): State<ScimApp<P, S, B>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let p = match Self::who(&s, &headers).await {
            Ok(p) => p,
            Err(r) => return r,
        };
        scim_result(StatusCode::CREATED, s.create_user(&p, &body).await)
    }

    async fn get_user(
        State(s): State<ScimApp<P, S, B>>,
        headers: HeaderMap,
        Path(id): Path<String>,
    ) -> Response {
        let p = match Self::who(&s, &headers).await {
            Ok(p) => p,
            Err(r) => return r,
        };
        scim_result(StatusCode::OK, s.get_user(&p, &id).await)
    }

    async fn replace_user(
        State(s): State<ScimApp<P, S, B>>,
        headers: HeaderMap,
        Path(id): Path<String>,
        body: Bytes,
    ) -> Response {
        let p = match Self::who(&s, &headers).await {
            Ok(p) => p,
            Err(r) => return r,
        };
        scim_result(StatusCode::OK, s.replace_user(&p, &id, &body).await)
    }

    async fn patch_user(
        State(s): State<ScimApp<P, S, B>>,
        headers: HeaderMap,
        Path(id): Path<String>,
        body: Bytes,
    ) -> Response {
        let p = match Self::who(&s, &headers).await {
            Ok(p) => p,
            Err(r) => return r,
        };
        scim_result(StatusCode::OK, s.patch_user(&p, &id, &body).await)
    }

    async fn delete_user(
        State(s): State<ScimApp<P, S, B>>,
        headers: HeaderMap,
        Path(id): Path<String>,
    ) -> Response {
        let p = match Self::who(&s, &headers).await {
            Ok(p) => p,
            Err(r) => return r,
        };
        match s.delete_user(&p, &id).await {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => scim_error(e),
        }
    }

    async fn list_groups(
        State(s): State<ScimApp<P, S, B>>,
        headers: HeaderMap,
        axum::extract::RawQuery(q): axum::extract::RawQuery,
    ) -> Response {
        let p = match Self::who(&s, &headers).await {
            Ok(p) => p,
            Err(r) => return r,
        };
        let (filter, page) = match Self::list_query(q) {
            Ok(x) => x,
            Err(e) => return scim_error(e),
        };
        scim_result(
            StatusCode::OK,
            s.list_groups(&p, filter.as_deref(), page).await,
        )
    }

    async fn create_group(
        State(s): State<ScimApp<P, S, B>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let p = match Self::who(&s, &headers).await {
            Ok(p) => p,
            Err(r) => return r,
        };
        scim_result(StatusCode::CREATED, s.create_group(&p, &body).await)
    }

    async fn get_group(
        State(s): State<ScimApp<P, S, B>>,
        headers: HeaderMap,
        Path(id): Path<String>,
    ) -> Response {
        let p = match Self::who(&s, &headers).await {
            Ok(p) => p,
            Err(r) => return r,
        };
        scim_result(StatusCode::OK, s.get_group(&p, &id).await)
    }

    async fn patch_group(
        State(s): State<ScimApp<P, S, B>>,
        headers: HeaderMap,
        Path(id): Path<String>,
        body: Bytes,
    ) -> Response {
        let p = match Self::who(&s, &headers).await {
            Ok(p) => p,
            Err(r) => return r,
        };
        scim_result(StatusCode::OK, s.patch_group(&p, &id, &body).await)
    }

    async fn delete_group(
        State(s): State<ScimApp<P, S, B>>,
        headers: HeaderMap,
        Path(id): Path<String>,
    ) -> Response {
        let p = match Self::who(&s, &headers).await {
            Ok(p) => p,
            Err(r) => return r,
        };
        match s.delete_group(&p, &id).await {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => scim_error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failure_of_ours_names_no_internal_detail_to_the_emm() {
        let detail = "disk I/O error at /var/lib/kontor/connector.sqlite";
        for (e, expected) in [
            (Error::Payload(detail.into()), "internal error"),
            (Error::Mdm(detail.into()), "mdm command not queued"),
            (
                Error::Admin(kontor_admin::Error::Store(detail.into())),
                "internal error",
            ),
        ] {
            let response = e.into_response();
            assert!(response.status().is_server_error());
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["message"], expected);
            assert!(!body.to_string().contains("disk I/O"), "{body}");
        }
        let refused = Error::Invalid("platform \"x\" is unknown".into()).into_response();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    }
}
