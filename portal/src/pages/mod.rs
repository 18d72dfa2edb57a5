//! The portal's pages, one module per area. Every handler starts with a
//! `Signed` or `SignedForm` extractor and calls the administration service
//! with the caller's `Principal`; what it may not do is hidden here and
//! refused there.

pub mod org;
pub mod records;
pub mod settings;
pub mod users;

use axum::response::Response;
use kontor_admin::Error;

use crate::view::{self, Ctx};

/// The page, or the error page for what the service refused.
fn or_error(ctx: &Ctx, result: Result<Response, Error>) -> Response {
    result.unwrap_or_else(|e| view::error_page(ctx, &e))
}

/// The query string's pairs.
fn query_pairs(uri: &axum::http::Uri) -> Vec<(String, String)> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .take(100)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The first non-empty value of `name` in a query.
fn query_text(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}
