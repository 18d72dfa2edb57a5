//! The authorisation matrix: every endpoint, for every role, for another
//! organisation's owner and for nobody. A role gets exactly what the
//! matrix in `role.rs` grants; another organisation's owner (who may do
//! everything in their own) sees none of this organisation's objects.

use axum::http::StatusCode;
use kontor_admin::role::{Permission, Role};

use crate::{Auth, Harness};

struct Endpoint {
    method: &'static str,
    path: String,
    body: Option<(&'static str, Vec<u8>)>,
    permission: Option<Permission>,
    /// Names an object of the first organisation: another organisation's
    /// owner gets 404.
    object: bool,
    /// The status an allowed caller gets, when not a 2xx.
    allowed_status: Option<StatusCode>,
}

fn json(v: serde_json::Value) -> Option<(&'static str, Vec<u8>)> {
    Some(("application/json", v.to_string().into_bytes()))
}

fn endpoints(tag: &str, device: &str, account: &str, key_id: &str, archive: &str) -> Vec<Endpoint> {
    use Permission as P;
    let anna = "anna@acme.test";
    let e = |method, path: String, body, permission, object| Endpoint {
        method,
        path,
        body,
        permission,
        object,
        allowed_status: None,
    };
    vec![
        e("GET", "/v1/session".into(), None, None, false),
        e(
            "GET",
            "/v1/accounts".into(),
            None,
            Some(P::ManageAdmins),
            false,
        ),
        e(
            "POST",
            "/v1/accounts".into(),
            json(
                serde_json::json!({"login": format!("new-{tag}"), "password": crate::PASSWORD, "role": "auditor"}),
            ),
            Some(P::ManageAdmins),
            false,
        ),
        e(
            "GET",
            "/v1/api-keys".into(),
            None,
            Some(P::ManageAdmins),
            false,
        ),
        e(
            "POST",
            "/v1/api-keys".into(),
            json(serde_json::json!({"account": account, "label": "x"})),
            Some(P::ManageAdmins),
            true,
        ),
        e(
            "GET",
            "/v1/users".into(),
            None,
            Some(P::ReadDirectory),
            false,
        ),
        e(
            "GET",
            "/v1/users?department=hr&status=active".into(),
            None,
            Some(P::ReadDirectory),
            false,
        ),
        e(
            "POST",
            "/v1/users".into(),
            json(serde_json::json!({"user_id": format!("new-{tag}@acme.test")})),
            Some(P::Invite),
            false,
        ),
        e(
            "POST",
            "/v1/users/import?dry_run=true".into(),
            Some((
                "text/csv",
                b"user_id,display_name,department\nzed@acme.test,Zed,\n".to_vec(),
            )),
            Some(P::ManagePolicy),
            false,
        ),
        e(
            "POST",
            "/v1/users/bulk".into(),
            json(
                serde_json::json!({"users": [anna], "operation": {"action": "block"}, "dry_run": true}),
            ),
            Some(P::Block),
            true,
        ),
        e(
            "GET",
            format!("/v1/users/{anna}"),
            None,
            Some(P::ReadDirectory),
            true,
        ),
        e(
            "GET",
            format!("/v1/users/{anna}/activity"),
            None,
            Some(P::ReadDirectory),
            true,
        ),
        e(
            "GET",
            format!("/v1/users/{anna}/export"),
            None,
            Some(P::RemoveUser),
            true,
        ),
        e(
            "POST",
            format!("/v1/users/{anna}/block"),
            None,
            Some(P::Block),
            true,
        ),
        e(
            "POST",
            format!("/v1/users/{anna}/unblock"),
            None,
            Some(P::Block),
            true,
        ),
        e(
            "PUT",
            format!("/v1/users/{anna}/department"),
            json(serde_json::json!({"department": "sales"})),
            Some(P::ManagePolicy),
            true,
        ),
        e(
            "GET",
            "/v1/departments".into(),
            None,
            Some(P::ReadDirectory),
            false,
        ),
        e(
            "PUT",
            "/v1/departments/legal".into(),
            json(serde_json::json!({"closed": true})),
            Some(P::ManagePolicy),
            false,
        ),
        e(
            "PUT",
            "/v1/barriers".into(),
            json(
                serde_json::json!({"a": "hr", "b": "sales", "messages": true, "groups": false, "files": false}),
            ),
            Some(P::ManagePolicy),
            true,
        ),
        e(
            "GET",
            "/v1/allow-list".into(),
            None,
            Some(P::ReadDirectory),
            false,
        ),
        e(
            "PUT",
            "/v1/allow-list/@acme.test".into(),
            None,
            Some(P::ManagePolicy),
            false,
        ),
        e(
            "DELETE",
            "/v1/allow-list/@acme.test".into(),
            None,
            Some(P::ManagePolicy),
            false,
        ),
        e(
            "GET",
            "/v1/restrictions".into(),
            None,
            Some(P::ReadDirectory),
            false,
        ),
        e(
            "PUT",
            format!("/v1/restrictions/user/{anna}"),
            json(serde_json::json!({"copy_paste": false})),
            Some(P::ManagePolicy),
            true,
        ),
        e(
            "PUT",
            "/v1/restrictions/department/hr".into(),
            json(serde_json::json!({"attachments": ["images"]})),
            Some(P::ManagePolicy),
            true,
        ),
        e(
            "DELETE",
            format!("/v1/restrictions/user/{anna}"),
            None,
            Some(P::ManagePolicy),
            true,
        ),
        e(
            "PUT",
            "/v1/restrictions/org/acme".into(),
            json(serde_json::json!({"forwarding": false})),
            Some(P::ManagePolicy),
            true,
        ),
        e(
            "POST",
            "/v1/broadcasts".into(),
            json(serde_json::json!({"text": "Fire drill at 10:00"})),
            Some(P::Broadcast),
            false,
        ),
        e("GET", "/v1/audit".into(), None, Some(P::ReadAudit), false),
        e("GET", "/v1/wipes".into(), None, Some(P::Wipe), false),
        e(
            "POST",
            format!("/v1/devices/{device}/wipe"),
            None,
            Some(P::Wipe),
            true,
        ),
        e(
            "POST",
            format!("/v1/users/{anna}/wipe"),
            None,
            Some(P::Wipe),
            true,
        ),
        e(
            "PUT",
            "/v1/settings/archive-key".into(),
            json(serde_json::json!({"public_key": "11".repeat(32)})),
            Some(P::ManageAdmins),
            false,
        ),
        e("GET", "/v1/archives".into(), None, Some(P::Archive), false),
        e(
            "POST",
            "/v1/archives".into(),
            json(serde_json::json!({"users": [anna], "from_ms": 0, "to_ms": 4_000_000_000_000i64})),
            Some(P::Archive),
            true,
        ),
        e(
            "GET",
            format!("/v1/archives/{archive}"),
            None,
            Some(P::Archive),
            true,
        ),
        Endpoint {
            allowed_status: Some(StatusCode::NOT_FOUND),
            ..e(
                "GET",
                format!("/v1/archives/{archive}/parts/00"),
                None,
                Some(P::Archive),
                true,
            )
        },
        e("POST", "/v1/me/totp".into(), None, None, false),
        e(
            "DELETE",
            format!("/v1/api-keys/{key_id}"),
            None,
            Some(P::ManageAdmins),
            true,
        ),
        e(
            "POST",
            format!("/v1/accounts/{account}/disable"),
            None,
            Some(P::ManageAdmins),
            true,
        ),
        e(
            "DELETE",
            "/v1/departments/legal".into(),
            None,
            Some(P::ManagePolicy),
            false,
        ),
        e(
            "DELETE",
            format!("/v1/users/{anna}"),
            None,
            Some(P::RemoveUser),
            true,
        ),
    ]
}

/// Who calls in one run of the matrix.
#[derive(Clone, Copy, Debug)]
enum Caller {
    Role(Role),
    OtherOrganisation,
    Nobody,
}

async fn run(caller: Caller) {
    let h = Harness::new().await;
    let owner = h.sign_in("owner").await;
    // The first organisation's objects.
    for (name, closed) in [("hr", true), ("sales", false)] {
        let a = h
            .json(
                "PUT",
                &format!("/v1/departments/{name}"),
                &owner,
                serde_json::json!({"closed": closed}),
            )
            .await;
        assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.json);
    }
    let a = h.json("POST", "/v1/users", &owner, serde_json::json!({"user_id": "anna@acme.test", "display_name": "Anna", "department": "hr"})).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.json);
    let token = a.json["token"].as_str().unwrap().to_owned();
    let device = h.enroll_with(&token, "anna@acme.test").await.unwrap();
    let a = h
        .json(
            "PUT",
            "/v1/settings/archive-key",
            &owner,
            serde_json::json!({"public_key": "22".repeat(32)}),
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.json);
    let a = h
        .json(
            "POST",
            "/v1/archives",
            &owner,
            serde_json::json!({"users": ["anna@acme.test"], "from_ms": 0, "to_ms": 1}),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.json);
    let archive = a.json["id"].as_str().unwrap().to_owned();
    let victim = h
        .json(
            "POST",
            "/v1/accounts",
            &owner,
            serde_json::json!({"login": "victim", "password": crate::PASSWORD, "role": "helpdesk"}),
        )
        .await;
    let account = victim.json["id"].as_str().unwrap().to_owned();
    let key = h
        .json(
            "POST",
            "/v1/api-keys",
            &owner,
            serde_json::json!({"account": account, "label": "victim's"}),
        )
        .await;
    let key_id = key.json["id"].as_str().unwrap().to_owned();

    let (auth, role) = match caller {
        Caller::Role(role) => (
            h.key_for(&owner, &format!("caller-{}", role.as_str()), role.as_str())
                .await,
            Some(role),
        ),
        Caller::OtherOrganisation => {
            let other = h.sign_in("other-owner").await;
            (h.key_for(&other, "other-caller", "owner").await, None)
        }
        Caller::Nobody => (Auth::None, None),
    };
    let mut forbidden = 0;
    let tag = format!("{caller:?}").to_lowercase().replace(['(', ')'], "");
    for e in endpoints(
        &tag,
        &device.device_id.to_string(),
        &account,
        &key_id,
        &archive,
    ) {
        let a = h.call(e.method, &e.path, &auth, e.body.clone()).await;
        let what = format!(
            "{caller:?} {} {}: {} {}",
            e.method,
            e.path,
            a.status,
            String::from_utf8_lossy(&a.body)
        );
        match caller {
            Caller::Nobody => {
                assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{what}");
                assert_eq!(a.json["error"], "unauthenticated", "{what}");
            }
            Caller::Role(_) => {
                let allowed = e.permission.is_none_or(|p| role.unwrap().allows(p));
                if allowed {
                    match e.allowed_status {
                        Some(s) => assert_eq!(a.status, s, "{what}"),
                        None => assert!(a.status.is_success(), "{what}"),
                    }
                } else {
                    assert_eq!(a.status, StatusCode::FORBIDDEN, "{what}");
                    assert_eq!(a.json["error"], "forbidden", "{what}");
                    forbidden += 1;
                }
            }
            Caller::OtherOrganisation => {
                if e.object {
                    assert_eq!(a.status, StatusCode::NOT_FOUND, "{what}");
                } else {
                    assert!(a.status.is_success(), "{what}");
                    let body = String::from_utf8_lossy(&a.body);
                    for secret in ["anna@acme.test", "victim", "\"hr\""] {
                        assert!(!body.contains(secret), "{what} shows {secret}");
                    }
                }
            }
        }
    }
    // Every refusal is in the audit trail.
    assert_eq!(h.audited("access.refused").len(), forbidden, "{caller:?}");
    // The first organisation's objects are untouched by the other one.
    if matches!(caller, Caller::OtherOrganisation | Caller::Nobody) {
        let a = h
            .call("GET", "/v1/users/anna@acme.test", &owner, None)
            .await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.json["user"]["status"], "active");
        assert_eq!(a.json["user"]["department"], "hr");
        assert!(h.relay.still_allowed(&device).await.is_ok());
    }
}

#[tokio::test]
async fn owner() {
    run(Caller::Role(Role::Owner)).await;
}

#[tokio::test]
async fn admin() {
    run(Caller::Role(Role::Admin)).await;
}

#[tokio::test]
async fn helpdesk() {
    run(Caller::Role(Role::Helpdesk)).await;
}

#[tokio::test]
async fn auditor() {
    run(Caller::Role(Role::Auditor)).await;
}

#[tokio::test]
async fn archivist() {
    run(Caller::Role(Role::Archivist)).await;
}

#[tokio::test]
async fn emm_integration() {
    run(Caller::Role(Role::Emm)).await;
}

#[tokio::test]
async fn another_organisations_owner() {
    run(Caller::OtherOrganisation).await;
}

#[tokio::test]
async fn nobody() {
    run(Caller::Nobody).await;
}

#[test]
fn every_route_of_the_router_is_in_the_matrix_and_the_openapi_document() {
    let doc: serde_json::Value = serde_json::from_str(kontor_admin::http::OPENAPI).unwrap();
    let routes: Vec<(String, String)> = endpoints("t", "d", "a", "k", "z")
        .iter()
        .map(|e| {
            (
                e.method.to_lowercase(),
                e.path.split('?').next().unwrap().to_owned(),
            )
        })
        .collect();
    let mut documented = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if path == "/v1/openapi.json" || (path == "/v1/session" && method != "get") {
                continue;
            }
            documented += 1;
            let pattern = path
                .replace("{user}", "anna@acme.test")
                .replace("{device}", "d")
                .replace("{account}", "a")
                .replace("{key}", "k")
                .replace("{archive}", "z")
                .replace("{part}", "00")
                .replace("{name}", "legal")
                .replace("{entry}", "@acme.test");
            let covered = routes.iter().any(|(m, p)| {
                m == method
                    && (p == &pattern
                        || (path.contains("{scope}") && p.starts_with("/v1/restrictions/")))
            });
            assert!(
                covered,
                "{method} {path} is documented but not in the matrix"
            );
        }
    }
    assert!(documented >= 35, "only {documented} operations documented");
}
