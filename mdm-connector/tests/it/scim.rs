//! SCIM: the vendors' request samples parse, PATCH yields the expected
//! change sets, filters parse or fail naming the unsupported part, and
//! rendered answers match their golden files.

use std::path::PathBuf;

use kontor_mdm_connector::scim::{
    self, Email, Error, FilterAttr, ListResponse, Member, Meta, Name, Page, PatchRequest,
    ResourceKind, ScimError, ScimGroup, ScimType, ScimUser, UserChanges, apply_group_patch,
    apply_user_patch, parse_filter, replace_group, replace_user,
};
use serde_json::{Value, json};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/mdm-connector/scim")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Compares `value` with `golden/<name>`, or rewrites it when
/// `KONTOR_BLESS=1`.
fn golden(name: &str, value: &Value) {
    let path = dir().join("golden").join(name);
    let text = format!("{}\n", serde_json::to_string_pretty(value).unwrap());
    if std::env::var_os("KONTOR_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with KONTOR_BLESS=1", path.display()));
    assert_eq!(
        expected,
        text,
        "{} differs; review and run with KONTOR_BLESS=1 to update",
        path.display()
    );
}

fn user() -> ScimUser {
    ScimUser {
        id: Some("6764549bef60420686bc".into()),
        external_id: Some("6c75de36-30fa-4d2d-a196-6bdcdb6b6539".into()),
        user_name: "Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee".into(),
        name: Name {
            given_name: Some("givenName".into()),
            family_name: Some("familyName".into()),
            formatted: Some("givenName familyName".into()),
        },
        display_name: None,
        emails: vec![Email {
            value: "Test_User_11bb11bb-cc22-dd33-ee44-55ff55ff55ff@testuser.com".into(),
            primary: true,
            kind: Some("work".into()),
        }],
        active: true,
        department: Some("Station 3B".into()),
        meta: Meta::default(),
    }
}

fn group() -> ScimGroup {
    ScimGroup {
        id: Some("abf4dd94-a4c0-4f67-89c9-76b03340cb9b".into()),
        external_id: None,
        display_name: "Test SCIMv2".into(),
        members: vec![
            Member {
                value: "f648f8d5ea4e4cd38e9c".into(),
                display: None,
            },
            Member {
                value: "89bb1940-b905-4575-9e7f-6f887cfb368e".into(),
                display: None,
            },
            Member {
                value: "7f4bc1a3-285e-48ae-8202-5accb43efb0e".into(),
                display: None,
            },
        ],
        meta: Meta::default(),
    }
}

fn patch_user(name: &str) -> (ScimUser, UserChanges) {
    let patch = PatchRequest::from_json(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut user = user();
    let changes = apply_user_patch(&mut user, &patch).unwrap_or_else(|e| panic!("{name}: {e}"));
    (user, changes)
}

#[test]
fn entra_create_user_parses() {
    let user = ScimUser::from_json(&fixture("entra-create-user.json")).unwrap();
    assert_eq!(
        user.user_name,
        "Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee"
    );
    assert_eq!(
        user.external_id.as_deref(),
        Some("0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef")
    );
    assert_eq!(user.name.given_name.as_deref(), Some("givenName"));
    assert_eq!(user.emails.len(), 1);
    assert!(user.emails[0].primary);
    assert_eq!(user.emails[0].kind.as_deref(), Some("work"));
    assert!(user.active);
    assert_eq!(user.department, None);
    assert_eq!(user.id, None);
}

#[test]
fn entra_create_user_with_enterprise_department_parses() {
    let user = ScimUser::from_json(&fixture("entra-create-user-department.json")).unwrap();
    assert_eq!(user.department.as_deref(), Some("Station 3B"));
    assert_eq!(user.display_name.as_deref(), Some("Erika Mustermann"));
}

#[test]
fn okta_create_user_parses_and_ignores_password() {
    let user = ScimUser::from_json(&fixture("okta-create-user.json")).unwrap();
    assert_eq!(user.user_name, "test.user@okta.local");
    assert_eq!(user.external_id.as_deref(), Some("00ujl29u0le5T6Aj10h7"));
    assert_eq!(user.display_name.as_deref(), Some("Test User"));
    assert!(!format!("{user:?}").contains("1mz050nq"));
}

#[test]
fn okta_put_replaces_and_reports_only_changes() {
    let mut user = ScimUser {
        id: Some("23a35c27-23d3-4c03-b4c5-6443c09e7173".into()),
        ..ScimUser::from_json(&fixture("okta-create-user.json")).unwrap()
    };
    let incoming = ScimUser::from_json(&fixture("okta-replace-user.json")).unwrap();
    let changes = replace_user(&mut user, incoming).unwrap();
    assert_eq!(changes.given_name, Some(Some("Another".into())));
    // Okta's PUT leaves out displayName and externalId: they are cleared.
    assert_eq!(changes.display_name, Some(None));
    assert_eq!(changes.external_id, Some(None));
    assert_eq!(changes.user_name, None);
    assert_eq!(changes.active, None);
    assert_eq!(
        user.id.as_deref(),
        Some("23a35c27-23d3-4c03-b4c5-6443c09e7173")
    );
}

#[test]
fn put_with_another_id_is_a_mutability_error() {
    let mut user = user();
    let mut incoming = user.clone();
    incoming.id = Some("someone-else".into());
    let err = replace_user(&mut user, incoming).unwrap_err();
    assert_eq!(ScimError::from(&err).scim_type, Some(ScimType::Mutability));
}

#[test]
fn create_needs_schema_and_user_name() {
    for (body, needle) in [
        (json!({"userName": "a"}), "schemas"),
        (
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "userName": "a"}),
            "schemas must name",
        ),
        (
            json!({"schemas": [scim::USER_SCHEMA]}),
            "userName is required",
        ),
        (
            json!({"schemas": [scim::USER_SCHEMA], "userName": ""}),
            "userName is required",
        ),
        (
            json!({"schemas": [scim::USER_SCHEMA], "userName": 7}),
            "userName must be a string",
        ),
        (
            json!({"schemas": [scim::USER_SCHEMA], "userName": "a", "active": "maybe"}),
            "active must be a boolean",
        ),
    ] {
        let err = ScimUser::from_value(&body).unwrap_err();
        assert!(err.to_string().contains(needle), "{err} lacks {needle}");
        assert_eq!(ScimError::from(&err).status, 400);
    }
    assert!(matches!(
        ScimUser::from_json(b"{not json"),
        Err(Error::InvalidSyntax(_))
    ));
    let huge = vec![b' '; scim::BODY_BYTES_MAX + 1];
    assert_eq!(
        ScimError::from(ScimUser::from_json(&huge).unwrap_err()).status,
        413
    );
}

#[test]
fn attribute_names_and_schemas_are_case_insensitive() {
    let user = ScimUser::from_value(&json!({
        "Schemas": ["URN:IETF:PARAMS:SCIM:SCHEMAS:CORE:2.0:USER"],
        "USERNAME": "bjensen",
        "Active": "False",
        "Name": {"GivenName": "Barbara"}
    }))
    .unwrap();
    assert_eq!(user.user_name, "bjensen");
    assert!(!user.active);
    assert_eq!(user.name.given_name.as_deref(), Some("Barbara"));
}

#[test]
fn entra_patch_multi_valued_changes_work_email_and_family_name() {
    let (user, changes) = patch_user("entra-patch-user-multi.json");
    assert_eq!(user.emails[0].value, "updatedEmail@microsoft.com");
    assert_eq!(changes.family_name, Some(Some("updatedFamilyName".into())));
    assert_eq!(changes.emails.as_ref().map(Vec::len), Some(1));
    assert_eq!(changes.given_name, None);
    assert!(changes.ignored.is_empty());
}

#[test]
fn entra_patch_user_name() {
    let (_, changes) = patch_user("entra-patch-user-username.json");
    assert_eq!(
        changes.user_name.as_deref(),
        Some("5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com")
    );
}

#[test]
fn deactivation_as_each_idp_sends_it() {
    for name in [
        "entra-patch-deactivate.json",
        "entra-patch-deactivate-legacy.json",
        "okta-patch-deactivate.json",
    ] {
        let (user, changes) = patch_user(name);
        assert!(!user.active, "{name}");
        assert_eq!(
            changes,
            UserChanges {
                active: Some(false),
                ..UserChanges::default()
            },
            "{name}"
        );
    }
}

#[test]
fn entra_legacy_replace_applies_known_and_lists_ignored() {
    let (user, changes) = patch_user("entra-patch-replace-legacy.json");
    assert_eq!(user.display_name.as_deref(), Some("Pvlo"));
    assert_eq!(user.emails[0].value, "TestBcwqnm@test.microsoft.com");
    assert_eq!(changes.given_name, Some(Some("Gtfd".into())));
    assert_eq!(changes.family_name, Some(Some("Pkqf".into())));
    assert_eq!(changes.external_id, Some(Some("Eqpj".into())));
    assert_eq!(
        changes.ignored,
        vec!["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"]
    );
}

#[test]
fn entra_compliant_replace_takes_dotted_keys_without_path() {
    let (user, changes) = patch_user("entra-patch-replace-compliant.json");
    assert_eq!(user.emails[0].value, "TestMhvaes@test.microsoft.com");
    assert_eq!(changes.display_name, Some(Some("Bjfe".into())));
    assert_eq!(changes.given_name, Some(Some("Kkom".into())));
    assert_eq!(changes.family_name, Some(Some("Unua".into())));
    assert_eq!(changes.ignored.len(), 1);
}

#[test]
fn entra_patch_department_by_extension_path() {
    let (user, changes) = patch_user("entra-patch-department.json");
    assert_eq!(user.department.as_deref(), Some("Station 4A"));
    assert_eq!(changes.department, Some(Some("Station 4A".into())));
    assert_eq!(changes.ignored, vec!["nickName"]);
}

#[test]
fn okta_password_sync_is_ignored_by_name_only() {
    let (user, changes) = patch_user("okta-patch-password.json");
    assert_eq!(user, self::user());
    assert!(changes.is_empty());
    assert_eq!(changes.ignored, vec!["password"]);
    assert!(!format!("{changes:?}").contains("t0p-s3cret"));
}

/// One PATCH body (built inline) against the base user: its changes, or
/// the error kind and a part of its message.
fn check_user_patch(ops: Value, expected: Result<UserChanges, (ScimType, &str)>) {
    let body = json!({"schemas": [scim::PATCH_OP_SCHEMA], "Operations": ops});
    let mut user = user();
    let before = user.clone();
    let got = PatchRequest::from_value(&body).and_then(|p| apply_user_patch(&mut user, &p));
    match (got, expected) {
        (Ok(changes), Ok(expected)) => assert_eq!(changes, expected, "{body}"),
        (Err(err), Err((kind, needle))) => {
            assert_eq!(ScimError::from(&err).scim_type, Some(kind), "{body}: {err}");
            assert!(err.to_string().contains(needle), "{err} lacks {needle}");
            assert_eq!(user, before, "a failed patch must not change the user");
        }
        (got, expected) => panic!("{body}: got {got:?}, expected {expected:?}"),
    }
}

#[test]
fn user_patch_cases() {
    let none = UserChanges::default();
    check_user_patch(
        json!([{"op": "add", "path": "name", "value": {"givenName": "Erika"}}]),
        Ok(UserChanges {
            given_name: Some(Some("Erika".into())),
            ..none.clone()
        }),
    );
    check_user_patch(
        json!([{"op": "remove", "path": "name.formatted"}]),
        Ok(UserChanges {
            formatted_name: Some(None),
            ..none.clone()
        }),
    );
    check_user_patch(
        json!([{"op": "replace", "value": {
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "IT", "manager": {"value": "x"}}
        }}]),
        Ok(UserChanges {
            department: Some(Some("IT".into())),
            ignored: vec![
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager".into(),
            ],
            ..none.clone()
        }),
    );
    check_user_patch(
        json!([{"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"}]),
        Ok(UserChanges {
            department: Some(None),
            ..none.clone()
        }),
    );
    check_user_patch(
        json!([{"op": "add", "path": "emails", "value": [{"value": "home@example.org", "type": "home"}]}]),
        Ok(UserChanges {
            emails: Some(vec![
                user().emails[0].clone(),
                Email {
                    value: "home@example.org".into(),
                    primary: false,
                    kind: Some("home".into()),
                },
            ]),
            ..none.clone()
        }),
    );
    check_user_patch(
        json!([{"op": "remove", "path": "emails[type eq \"work\"]"}]),
        Ok(UserChanges {
            emails: Some(vec![]),
            ..none.clone()
        }),
    );
    check_user_patch(
        json!([{"op": "replace", "path": "phoneNumbers[type eq \"work\"].value", "value": "+49 30 1234"}]),
        Ok(UserChanges {
            ignored: vec!["phoneNumbers[type eq \"work\"].value".into()],
            ..none.clone()
        }),
    );
    check_user_patch(
        json!([{"op": "Replace", "path": "id", "value": "6764549bef60420686bc"}]),
        Ok(none.clone()),
    );
    check_user_patch(
        json!([{"op": "replace", "path": "active", "value": "yes"}]),
        Err((ScimType::InvalidValue, "active must be a boolean")),
    );
    check_user_patch(
        json!([{"op": "remove", "path": "userName"}]),
        Err((ScimType::InvalidValue, "userName")),
    );
    check_user_patch(
        json!([{"op": "replace", "path": "id", "value": "other"}]),
        Err((ScimType::Mutability, "id")),
    );
    check_user_patch(
        json!([{"op": "remove"}]),
        Err((ScimType::NoTarget, "remove needs a path")),
    );
    check_user_patch(
        json!([{"op": "remove", "path": "emails[type eq \"home\"]"}]),
        Err((ScimType::NoTarget, "matched no entry")),
    );
    check_user_patch(
        json!([{"op": "replace", "path": "emails[type co \"w\"].value", "value": "x@y"}]),
        Err((ScimType::InvalidPath, "not supported")),
    );
    check_user_patch(
        json!([{"op": "replace", "path": "active[value eq \"x\"]", "value": true}]),
        Err((ScimType::InvalidPath, "single-valued")),
    );
    check_user_patch(
        json!([{"op": "replace", "path": "name..givenName", "value": "x"}]),
        Err((ScimType::InvalidPath, "sub-attribute")),
    );
    check_user_patch(
        json!([{"op": "move", "path": "active", "value": true}]),
        Err((ScimType::InvalidSyntax, "op 'move' is not supported")),
    );
    check_user_patch(
        json!([{"op": "replace", "path": "displayName"}]),
        Err((ScimType::InvalidValue, "needs a value")),
    );
    // A later failing operation undoes the earlier ones.
    check_user_patch(
        json!([
            {"op": "replace", "path": "active", "value": false},
            {"op": "replace", "path": "id", "value": "other"}
        ]),
        Err((ScimType::Mutability, "id")),
    );
}

#[test]
fn patch_needs_the_patch_op_schema() {
    let err = PatchRequest::from_value(&json!({"Operations": [{"op": "remove", "path": "x"}]}))
        .unwrap_err();
    assert!(err.to_string().contains("PatchOp"), "{err}");
}

#[test]
fn groups_as_each_idp_creates_them() {
    let entra = ScimGroup::from_json(&fixture("entra-create-group.json")).unwrap();
    assert_eq!(entra.display_name, "displayName");
    assert_eq!(
        entra.external_id.as_deref(),
        Some("8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159")
    );
    assert!(entra.members.is_empty());
    let okta = ScimGroup::from_json(&fixture("okta-create-group.json")).unwrap();
    assert_eq!(okta.display_name, "Test SCIMv2");
    assert!(
        ScimGroup::from_value(&json!({"schemas": [scim::GROUP_SCHEMA]}))
            .unwrap_err()
            .to_string()
            .contains("displayName is required")
    );
}

fn patch_group(name: &str) -> (ScimGroup, scim::GroupChanges) {
    let patch = PatchRequest::from_json(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut group = group();
    let changes = apply_group_patch(&mut group, &patch).unwrap_or_else(|e| panic!("{name}: {e}"));
    (group, changes)
}

#[test]
fn group_rename_as_each_idp_sends_it() {
    let (_, entra) = patch_group("entra-patch-group-rename.json");
    assert_eq!(
        entra.display_name.as_deref(),
        Some("1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName")
    );
    let (group, okta) = patch_group("okta-patch-group-rename.json");
    assert_eq!(okta.display_name.as_deref(), Some("Test SCIMv20"));
    assert!(okta.members_added.is_empty() && okta.members_removed.is_empty());
    assert_eq!(group.members.len(), 3);
}

#[test]
fn group_members_add_and_remove_as_each_idp_sends_them() {
    // Entra adds a member that is already there: nothing changes.
    let (_, changes) = patch_group("entra-patch-group-add-members.json");
    assert!(changes.is_empty());

    let (group, changes) = patch_group("entra-patch-group-remove-members.json");
    assert_eq!(changes.members_removed, vec!["f648f8d5ea4e4cd38e9c"]);
    assert_eq!(group.members.len(), 2);

    let (_, changes) = patch_group("entra-patch-group-remove-member-compliant.json");
    assert_eq!(
        changes.members_removed,
        vec!["7f4bc1a3-285e-48ae-8202-5accb43efb0e"]
    );

    let (_, changes) = patch_group("okta-patch-group-members.json");
    assert_eq!(
        changes.members_removed,
        vec!["89bb1940-b905-4575-9e7f-6f887cfb368e"]
    );
    assert_eq!(
        changes.members_added,
        vec![Member {
            value: "23a35c27-23d3-4c03-b4c5-6443c09e7173".into(),
            display: Some("test.user@okta.local".into()),
        }]
    );

    let (group, changes) = patch_group("okta-patch-group-replace-members.json");
    assert_eq!(group.members.len(), 2);
    assert_eq!(changes.members_added.len(), 1);
    assert_eq!(
        changes.members_removed,
        vec![
            "f648f8d5ea4e4cd38e9c".to_owned(),
            "7f4bc1a3-285e-48ae-8202-5accb43efb0e".to_owned()
        ]
    );
}

#[test]
fn removing_a_non_member_is_not_an_error() {
    let patch = PatchRequest::from_value(&json!({
        "schemas": [scim::PATCH_OP_SCHEMA],
        "Operations": [{"op": "remove", "path": "members[value eq \"nobody\"]"}]
    }))
    .unwrap();
    let mut group = group();
    assert!(apply_group_patch(&mut group, &patch).unwrap().is_empty());
}

#[test]
fn group_patch_errors() {
    for (ops, kind) in [
        (
            json!([{"op": "replace", "path": "id", "value": "x"}]),
            ScimType::Mutability,
        ),
        (
            json!([{"op": "remove", "path": "displayName"}]),
            ScimType::InvalidValue,
        ),
        (
            json!([{"op": "add", "path": "members[value eq \"x\"]", "value": {"value": "x"}}]),
            ScimType::InvalidPath,
        ),
        (
            json!([{"op": "remove", "path": "members[display eq \"x\"]"}]),
            ScimType::InvalidFilter,
        ),
        (
            json!([{"op": "add", "path": "members", "value": [{"display": "no value"}]}]),
            ScimType::InvalidValue,
        ),
    ] {
        let patch = PatchRequest::from_value(
            &json!({"schemas": [scim::PATCH_OP_SCHEMA], "Operations": ops}),
        )
        .unwrap();
        let mut group = group();
        let err = apply_group_patch(&mut group, &patch).unwrap_err();
        assert_eq!(ScimError::from(&err).scim_type, Some(kind), "{ops}: {err}");
        assert_eq!(group, self::group());
    }
    let mut group = group();
    let mut incoming = group.clone();
    incoming.id = Some("x".into());
    assert!(matches!(
        replace_group(&mut group, incoming),
        Err(Error::Mutability(_))
    ));
}

fn describe(attr: &FilterAttr) -> String {
    match attr {
        FilterAttr::Id => "id".into(),
        FilterAttr::ExternalId => "externalId".into(),
        FilterAttr::UserName => "userName".into(),
        FilterAttr::DisplayName => "displayName".into(),
        FilterAttr::EmailValue { kind: None } => "emails.value".into(),
        FilterAttr::EmailValue { kind: Some(k) } => format!("emails[{k}].value"),
        FilterAttr::MemberValue => "members.value".into(),
    }
}

#[test]
fn filters_from_the_fixture() {
    let cases: Vec<Value> = serde_json::from_slice(&fixture("filters.json")).unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let filter = case["filter"].as_str().unwrap();
        let kind = match case["resource"].as_str().unwrap() {
            "User" => ResourceKind::User,
            _ => ResourceKind::Group,
        };
        match (parse_filter(filter, kind), case.get("error")) {
            (Ok(parsed), None) => {
                let got: Vec<Value> = parsed
                    .comparisons
                    .iter()
                    .map(|c| json!([describe(&c.attr), c.value]))
                    .collect();
                assert_eq!(Value::Array(got), case["expect"], "{filter}");
            }
            (Err(err), Some(needle)) => {
                let needle = needle.as_str().unwrap();
                assert!(
                    err.to_string().contains(needle),
                    "{filter}: {err} lacks {needle}"
                );
                assert_eq!(
                    ScimError::from(&err).scim_type,
                    Some(ScimType::InvalidFilter),
                    "{filter}"
                );
            }
            (got, _) => panic!("{filter}: unexpected {got:?}"),
        }
    }
}

#[test]
fn filters_match_users_and_groups() {
    let user = user();
    let matches = |f: &str| {
        parse_filter(f, ResourceKind::User)
            .unwrap()
            .matches_user(&user)
    };
    assert!(matches(
        "userName eq \"test_user_00AA00AA-bb11-cc22-dd33-44ee44ee44ee\""
    ));
    assert!(matches(
        "emails[type eq \"work\"].value eq \"Test_User_11bb11bb-cc22-dd33-ee44-55ff55ff55ff@testuser.com\""
    ));
    assert!(!matches(
        "emails[type eq \"home\"].value eq \"Test_User_11bb11bb-cc22-dd33-ee44-55ff55ff55ff@testuser.com\""
    ));
    // externalId and id are case-exact.
    assert!(!matches(
        "externalId eq \"6C75DE36-30fa-4d2d-a196-6bdcdb6b6539\""
    ));
    assert!(matches(
        "id eq \"6764549bef60420686bc\" and externalId eq \"6c75de36-30fa-4d2d-a196-6bdcdb6b6539\""
    ));
    let group = group();
    let matches = |f: &str| {
        parse_filter(f, ResourceKind::Group)
            .unwrap()
            .matches_group(&group)
    };
    assert!(matches("displayName eq \"test scimv2\""));
    assert!(matches("members eq \"f648f8d5ea4e4cd38e9c\""));
    assert!(!matches("members.value eq \"nobody\""));
}

#[test]
fn pages_follow_rfc7644() {
    assert_eq!(
        Page::from_query(None, None).unwrap(),
        Page {
            start_index: 1,
            count: scim::PAGE_COUNT_MAX
        }
    );
    let page = Page::from_query(Some("0"), Some("-5")).unwrap();
    assert_eq!((page.start_index, page.count, page.offset()), (1, 0, 0));
    let page = Page::from_query(Some("101"), Some("100000")).unwrap();
    assert_eq!((page.offset(), page.count), (100, scim::PAGE_COUNT_MAX));
    assert!(matches!(
        Page::from_query(Some("x"), None),
        Err(Error::InvalidValue(_))
    ));
}

fn rendered_user() -> ScimUser {
    let mut user = user();
    user.display_name = Some("Test User".into());
    user.meta = Meta {
        created: Some(utc(2026, 11, 2, 9, 30, 0)),
        last_modified: Some(utc(2026, 11, 3, 17, 5, 12)),
        version: Some("W/\"3\"".into()),
    };
    user
}

fn utc(y: i32, mo: u8, d: u8, h: u8, mi: u8, s: u8) -> time::OffsetDateTime {
    time::Date::from_calendar_date(y, time::Month::try_from(mo).unwrap(), d)
        .unwrap()
        .with_hms(h, mi, s)
        .unwrap()
        .assume_utc()
}

#[test]
fn rendered_user_matches_golden() {
    let value = rendered_user().to_json("https://kontor.example/scim/v2/");
    assert_eq!(
        value["meta"]["location"],
        "https://kontor.example/scim/v2/Users/6764549bef60420686bc"
    );
    // The rendering parses back to the same user (minus server-kept meta).
    let mut back = ScimUser::from_value(&value).unwrap();
    back.meta = rendered_user().meta;
    assert_eq!(back, rendered_user());
    golden("user.json", &value);
}

#[test]
fn rendered_group_matches_golden() {
    let group = group();
    let without = group.to_json("https://kontor.example/scim/v2", false);
    assert!(without.get("members").is_none());
    golden(
        "group.json",
        &group.to_json("https://kontor.example/scim/v2", true),
    );
}

#[test]
fn list_and_error_answers_match_golden() {
    let list = ListResponse {
        total_results: 3,
        start_index: 1,
        resources: vec![rendered_user().to_json("https://kontor.example/scim/v2")],
    };
    golden("list.json", &list.to_json());
    let errors = json!([
        ScimError::from(parse_filter("userName co \"x\"", ResourceKind::User).unwrap_err())
            .to_json(),
        ScimError::uniqueness("userName is already in use").to_json(),
        ScimError::not_found("user 5171a35d82074e068ce2 not found").to_json(),
    ]);
    assert_eq!(errors[0]["status"], "400");
    assert_eq!(errors[0]["scimType"], "invalidFilter");
    assert_eq!(errors[1]["status"], "409");
    golden("errors.json", &errors);
}
