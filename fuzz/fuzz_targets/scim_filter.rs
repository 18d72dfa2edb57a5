//! SCIM query parameters: `filter` (for Users and Groups), matched against
//! a fixed user and group, and the paging parameters.
#![no_main]

use std::sync::LazyLock;

use kontor_mdm_connector::scim::{Page, ResourceKind, ScimGroup, ScimUser, parse_filter};
use libfuzzer_sys::fuzz_target;

static USER: LazyLock<ScimUser> = LazyLock::new(|| {
    ScimUser::from_json(include_bytes!(
        "../../fixtures/mdm-connector/scim/entra-create-user-department.json"
    ))
    .expect("the fixture parses")
});
static GROUP: LazyLock<ScimGroup> = LazyLock::new(|| {
    ScimGroup::from_json(include_bytes!(
        "../../fixtures/mdm-connector/scim/entra-create-group.json"
    ))
    .expect("the fixture parses")
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(filter) = parse_filter(text, ResourceKind::User) {
        let _ = filter.matches_user(&USER);
    }
    if let Ok(filter) = parse_filter(text, ResourceKind::Group) {
        let _ = filter.matches_group(&GROUP);
    }
    let (start, count) = text.split_once('&').unwrap_or((text, ""));
    if let Ok(page) = Page::from_query(Some(start), Some(count)) {
        let _ = page.offset();
    }
});
