//! SCIM request bodies as Entra ID and Okta send them: Users and Groups
//! (POST, PUT) and PATCH requests, applied to a fixed user and group, and
//! PUT's replace.
#![no_main]

use std::sync::LazyLock;

use kontor_mdm_connector::scim::{
    self, PatchRequest, ScimGroup, ScimUser, apply_group_patch, apply_user_patch,
};
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
    if let Ok(user) = ScimUser::from_json(data) {
        let _ = user.to_json("https://kontor.example.org/scim/v2");
        let _ = scim::replace_user(&mut USER.clone(), user);
    }
    if let Ok(group) = ScimGroup::from_json(data) {
        let _ = group.to_json("https://kontor.example.org/scim/v2", true);
        let _ = scim::replace_group(&mut GROUP.clone(), group);
    }
    if let Ok(patch) = PatchRequest::from_json(data) {
        let mut user = USER.clone();
        let before = user.clone();
        if apply_user_patch(&mut user, &patch).is_err() {
            assert_eq!(user, before, "a failed PATCH changed the user");
        }
        let mut group = GROUP.clone();
        let before = group.clone();
        if apply_group_patch(&mut group, &patch).is_err() {
            assert_eq!(group, before, "a failed PATCH changed the group");
        }
    }
});
