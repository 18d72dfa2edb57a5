//! What an administrator or an API client hands the admin API as text: the
//! user CSV import (with the product's row limit), and the small fields
//! that are parsed by hand: API keys from the `Authorization` header, RFC
//! 3339 times in audit queries, allow-list entries and the check of a user
//! id against them, scopes and user states.
//!
//! Input layout for the text fields: lines; the first line is the field,
//! the second a user id, the third a department.
#![no_main]

use std::sync::LazyLock;

use kontor_admin::directory::{self, Scope, UserStatus};
use kontor_admin::service::AdminConfig;
use kontor_admin::{audit, auth};
use libfuzzer_sys::fuzz_target;

static IMPORT_ROWS_MAX: LazyLock<usize> =
    LazyLock::new(|| AdminConfig::new("org", "Org", "https://kontor.example.org").import_rows_max);

fuzz_target!(|data: &[u8]| {
    if let Ok((rows, refused)) = directory::parse_import(data, *IMPORT_ROWS_MAX) {
        assert!(rows.len() + refused.len() <= *IMPORT_ROWS_MAX);
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let field = lines.next().unwrap_or_default();
    let user_id = lines.next().unwrap_or_default();
    let department = lines.next();
    if let Some((id, secret)) = auth::parse_api_key(field) {
        assert_eq!(id.len(), 16);
        assert_eq!(secret.len(), 64);
    }
    let _ = audit::parse_rfc3339_ms(field);
    if directory::check_allow_list_entry(field).is_ok() {
        let _ = directory::allow_list_admits(field, user_id, department);
    }
    let _ = directory::check_user_id(field);
    let _ = Scope::parse(field);
    let _ = UserStatus::parse(field);
});
