//! Behaviour of the admin API beyond authorisation: sessions, CSRF, TOTP
//! and sign-in limits; invitations, the allow-list, CSV import and bulk
//! operations; barriers and restrictions as the relay enforces them; wipe
//! states; and bad input that changes nothing.

use axum::http::{StatusCode, header};
use kontor_relay::service::Exchange;

use crate::{Auth, Harness};

fn j(v: serde_json::Value) -> serde_json::Value {
    v
}

#[tokio::test]
async fn sessions_use_a_strict_cookie_and_every_change_needs_the_csrf_token() {
    let h = Harness::new().await;
    let a = h
        .json(
            "POST",
            "/v1/session",
            &Auth::None,
            j(serde_json::json!({"login": "owner", "password": crate::PASSWORD})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let cookie = a.headers[header::SET_COOKIE].to_str().unwrap();
    for attribute in [
        "__Host-kontor_session=",
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
    ] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    for (name, _) in [
        ("strict-transport-security", ()),
        ("content-security-policy", ()),
        ("x-frame-options", ()),
        ("referrer-policy", ()),
    ] {
        assert!(a.headers.contains_key(name), "no {name}");
    }
    assert!(
        a.headers["strict-transport-security"]
            .to_str()
            .unwrap()
            .contains("max-age=63072000")
    );

    let session = h.sign_in("owner").await;
    let Auth::Session { cookie, csrf } = session.clone() else {
        unreachable!()
    };
    let without = Auth::Session {
        cookie: cookie.clone(),
        csrf: None,
    };
    let wrong = Auth::Session {
        cookie: cookie.clone(),
        csrf: Some("0".repeat(64)),
    };
    // Reads need no token; changes do.
    assert_eq!(
        h.call("GET", "/v1/users", &without, None).await.status,
        StatusCode::OK
    );
    for auth in [&without, &wrong] {
        let a = h
            .json(
                "PUT",
                "/v1/departments/hr",
                auth,
                serde_json::json!({"closed": true}),
            )
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
        assert_eq!(a.json["error"], "csrf");
    }
    assert_eq!(
        h.call("GET", "/v1/departments", &session, None).await.json["departments"],
        serde_json::json!([])
    );
    // A cross-site form post carries no JSON content type: refused, nothing changed.
    let form = h
        .call(
            "PUT",
            "/v1/departments/hr",
            &session,
            Some(("application/x-www-form-urlencoded", b"closed=true".to_vec())),
        )
        .await;
    assert_eq!(form.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        h.call("GET", "/v1/departments", &session, None).await.json["departments"],
        serde_json::json!([])
    );
    let a = h
        .json(
            "PUT",
            "/v1/departments/hr",
            &session,
            serde_json::json!({"closed": true}),
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert!(csrf.is_some());

    // Signing out ends the session.
    assert_eq!(
        h.call("DELETE", "/v1/session", &session, None).await.status,
        StatusCode::NO_CONTENT
    );
    let a = h.call("GET", "/v1/users", &session, None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.audited("session.sign_out").len(), 1);
}

#[tokio::test]
async fn idle_sessions_expire_and_a_disabled_admin_is_out_at_once() {
    let h = Harness::with(|c| c.session_idle = std::time::Duration::from_millis(300)).await;
    let owner_key = {
        let owner = h.sign_in("owner").await;
        h.key_for(&owner, "helper", "helpdesk").await
    };
    let helper = h.sign_in("helper").await;
    assert_eq!(
        h.call("GET", "/v1/users", &helper, None).await.status,
        StatusCode::OK
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let a = h.call("GET", "/v1/users", &helper, None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.json);
    assert!(a.json["message"].as_str().unwrap().contains("expired"));

    let helper = h.sign_in("helper").await;
    let accounts = h.call("GET", "/v1/accounts", &owner_key, None).await;
    assert_eq!(
        accounts.status,
        StatusCode::FORBIDDEN,
        "a helpdesk key cannot list accounts"
    );
    let owner = h.sign_in("owner").await;
    let accounts = h.call("GET", "/v1/accounts", &owner, None).await;
    let id = accounts.json["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["login"] == "helper")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = h
        .call("POST", &format!("/v1/accounts/{id}/disable"), &owner, None)
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.json);
    // Its session and its API key end at once.
    assert_eq!(
        h.call("GET", "/v1/users", &helper, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.call("GET", "/v1/users", &owner_key, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let again = h
        .json(
            "POST",
            "/v1/session",
            &Auth::None,
            serde_json::json!({"login": "helper", "password": crate::PASSWORD}),
        )
        .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    // An owner cannot lock themselves out.
    let me = accounts.json["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["login"] == "owner")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        h.call("POST", &format!("/v1/accounts/{me}/disable"), &owner, None)
            .await
            .status,
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn wrong_passwords_are_limited_and_audited_and_totp_codes_work_once() {
    let h = Harness::new().await;
    for _ in 0..5 {
        let a = h
            .json(
                "POST",
                "/v1/session",
                &Auth::None,
                serde_json::json!({"login": "owner", "password": "wrong password!!"}),
            )
            .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            a.json["message"],
            "not signed in: wrong name, password or code"
        );
    }
    // Now even the right password waits.
    let a = h
        .json(
            "POST",
            "/v1/session",
            &Auth::None,
            serde_json::json!({"login": "owner", "password": crate::PASSWORD}),
        )
        .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(a.headers.contains_key(header::RETRY_AFTER));
    let refused = h.audited("session.sign_in");
    assert_eq!(
        refused
            .iter()
            .filter(|e| e.outcome == kontor_admin::audit::Outcome::Refused)
            .count(),
        5
    );
    // An unknown name answers exactly like a wrong password.
    let a = h
        .json(
            "POST",
            "/v1/session",
            &Auth::None,
            serde_json::json!({"login": "nobody", "password": crate::PASSWORD}),
        )
        .await;
    assert_eq!(
        a.json["message"],
        "not signed in: wrong name, password or code"
    );

    let other = h.sign_in("other-owner").await;
    let totp = h.call("POST", "/v1/me/totp", &other, None).await;
    assert_eq!(totp.status, StatusCode::OK, "{}", totp.json);
    assert!(
        totp.json["uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/Kontor:other-owner?secret=")
    );
    let secret = base32_decode(totp.json["secret"].as_str().unwrap());
    let a = h
        .json(
            "POST",
            "/v1/session",
            &Auth::None,
            serde_json::json!({"login": "other-owner", "password": crate::PASSWORD}),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "a code is needed now");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let code = format!("{:06}", kontor_admin::auth::totp(&secret, now));
    let a = h
        .json(
            "POST",
            "/v1/session",
            &Auth::None,
            serde_json::json!({"login": "other-owner", "password": crate::PASSWORD, "totp": code}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    let a = h
        .json(
            "POST",
            "/v1/session",
            &Auth::None,
            serde_json::json!({"login": "other-owner", "password": crate::PASSWORD, "totp": code}),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "the same code twice");
}

fn base32_decode(text: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut buffer, mut bits, mut out) = (0u32, 0, Vec::new());
    for c in text.bytes() {
        buffer = (buffer << 5) | alphabet.iter().position(|&a| a == c).unwrap() as u32;
        bits += 5;
        if bits >= 8 {
            out.push((buffer >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    out
}

#[tokio::test]
async fn an_invitation_enrolls_its_user_and_the_allow_list_refuses_others() {
    let h = Harness::new().await;
    let owner = h.sign_in("owner").await;
    assert_eq!(
        h.call("PUT", "/v1/allow-list/@acme.test", &owner, None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let a = h
        .json(
            "POST",
            "/v1/users",
            &owner,
            serde_json::json!({"user_id": "eve@evil.test"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.json["message"]
            .as_str()
            .unwrap()
            .contains("not on the allow-list")
    );
    assert_eq!(
        h.call("GET", "/v1/users", &owner, None).await.json["count"],
        0
    );

    let a = h
        .json(
            "POST",
            "/v1/users",
            &owner,
            serde_json::json!({"user_id": "anna@acme.test", "display_name": "Anna Schmidt"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.json);
    let token = a.json["token"].as_str().unwrap();
    assert!(
        a.json["qr_svg"].as_str().unwrap().starts_with("<?xml")
            || a.json["qr_svg"].as_str().unwrap().contains("<svg")
    );
    // The snippets are real managed configurations carrying the token.
    let plist = a.json["managed_config"]["apple_plist"].as_str().unwrap();
    let decoded = kontor_managed_config::decode::apple_plist(plist.as_bytes()).unwrap();
    assert_eq!(
        decoded.policy.enrollment_token.as_ref().unwrap().expose(),
        token
    );
    assert_eq!(
        decoded.policy.user_identity.as_ref().unwrap().as_str(),
        "anna@acme.test"
    );
    let json = a.json["managed_config"]["android_json"].as_str().unwrap();
    assert_eq!(
        kontor_managed_config::decode::json(json.as_bytes())
            .unwrap()
            .policy,
        decoded.policy
    );
    assert_eq!(
        h.call("GET", "/v1/users/anna@acme.test", &owner, None)
            .await
            .json["user"]["status"],
        "invited"
    );
    h.enroll_with(token, "anna@acme.test").await.unwrap();
    let user = h
        .call("GET", "/v1/users/anna@acme.test", &owner, None)
        .await;
    assert_eq!(user.json["user"]["status"], "active");
    assert_eq!(user.json["devices"].as_array().unwrap().len(), 1);
    assert_eq!(user.json["devices"][0]["platform"], "ios");
    assert_eq!(h.audited("user.invite").len(), 2, "requested and done");
}

#[tokio::test]
async fn csv_import_reports_each_line_and_a_dry_run_writes_nothing() {
    let h = Harness::new().await;
    let owner = h.sign_in("owner").await;
    h.json(
        "PUT",
        "/v1/departments/hr",
        &owner,
        serde_json::json!({"closed": false}),
    )
    .await;
    let csv = "user_id,display_name,department\n\
               anna@acme.test,Anna,hr\n\
               bad id,Broken,\n\
               ben@acme.test,Ben,finance\n\
               carl@acme.test,Carl\n\
               dora@acme.test,Dora,\n";
    let dry = h
        .call(
            "POST",
            "/v1/users/import?dry_run=true",
            &owner,
            Some(("text/csv", csv.as_bytes().to_vec())),
        )
        .await;
    assert_eq!(dry.status, StatusCode::OK, "{}", dry.json);
    assert_eq!(dry.json["accepted"], 2);
    assert_eq!(dry.json["refused"], 3);
    assert_eq!(
        h.call("GET", "/v1/users", &owner, None).await.json["count"],
        0
    );
    let lines = dry.json["lines"].as_array().unwrap();
    let line = |n: u64| lines.iter().find(|l| l["line"] == n).unwrap().clone();
    assert_eq!(line(2)["outcome"], "would_create");
    assert!(line(3)["reason"].as_str().unwrap().contains("user id"));
    assert!(
        line(4)["reason"]
            .as_str()
            .unwrap()
            .contains("unknown department \"finance\"")
    );
    assert!(line(5)["reason"].as_str().unwrap().contains("fields"));
    let real = h
        .call(
            "POST",
            "/v1/users/import",
            &owner,
            Some(("text/csv", csv.as_bytes().to_vec())),
        )
        .await;
    assert_eq!(real.json["accepted"], 2);
    assert_eq!(
        h.call("GET", "/v1/users", &owner, None).await.json["count"],
        2
    );
    // Importing again refuses every line: they exist.
    let again = h
        .call(
            "POST",
            "/v1/users/import",
            &owner,
            Some(("text/csv", csv.as_bytes().to_vec())),
        )
        .await;
    assert_eq!(again.json["accepted"], 0);
    let bad = h
        .call(
            "POST",
            "/v1/users/import",
            &owner,
            Some(("text/csv", b"name\nx\n".to_vec())),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.json["message"].as_str().unwrap().contains("header"));
}

#[tokio::test]
async fn a_bulk_block_of_a_filtered_set_takes_effect_at_once_and_bad_selections_change_nothing() {
    let h = Harness::new().await;
    let owner = h.sign_in("owner").await;
    for d in ["hr", "sales"] {
        h.json(
            "PUT",
            &format!("/v1/departments/{d}"),
            &owner,
            serde_json::json!({"closed": false}),
        )
        .await;
    }
    let mut devices = Vec::new();
    for (user, dept) in [
        ("anna@acme.test", "hr"),
        ("ben@acme.test", "hr"),
        ("carl@acme.test", "sales"),
    ] {
        let a = h
            .json(
                "POST",
                "/v1/users",
                &owner,
                serde_json::json!({"user_id": user, "department": dept}),
            )
            .await;
        devices.push(
            h.enroll_with(a.json["token"].as_str().unwrap(), user)
                .await
                .unwrap(),
        );
    }
    let bulk = |body: serde_json::Value| h.json("POST", "/v1/users/bulk", &owner, body);
    let preview = bulk(serde_json::json!({"filter": {"department": "hr"}, "operation": {"action": "block"}, "dry_run": true})).await;
    assert_eq!(preview.json["count"], 2, "{}", preview.json);
    assert!(
        h.relay.still_allowed(&devices[0]).await.is_ok(),
        "a preview changes nothing"
    );
    // Invalid filters and unknown users: refused, nothing applied.
    let a =
        bulk(serde_json::json!({"filter": {"status": "gone"}, "operation": {"action": "block"}}))
            .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a =
        bulk(serde_json::json!({"filter": {"colour": "red"}, "operation": {"action": "block"}}))
            .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = bulk(serde_json::json!({"users": ["anna@acme.test", "ghost@acme.test"], "operation": {"action": "block"}})).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(
        a.json["message"]
            .as_str()
            .unwrap()
            .contains("ghost@acme.test")
    );
    assert!(h.relay.still_allowed(&devices[0]).await.is_ok());
    let a = bulk(serde_json::json!({"users": ["anna@acme.test"], "operation": {"action": "move", "department": "nowhere"}})).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);

    let done =
        bulk(serde_json::json!({"filter": {"department": "hr"}, "operation": {"action": "block"}}))
            .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.json);
    assert_eq!(done.json["count"], 2);
    for d in &devices[..2] {
        assert!(h.relay.still_allowed(d).await.is_err(), "blocked at once");
    }
    assert!(h.relay.still_allowed(&devices[2]).await.is_ok());
    let blocked = h
        .call("GET", "/v1/users?status=blocked", &owner, None)
        .await;
    assert_eq!(blocked.json["count"], 2);
    let a = h
        .call("POST", "/v1/users/anna@acme.test/unblock", &owner, None)
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert!(h.relay.still_allowed(&devices[0]).await.is_ok());
}

#[tokio::test]
async fn a_closed_department_is_enforced_by_the_relay_and_refusals_are_audited() {
    let h = Harness::new().await;
    let owner = h.sign_in("owner").await;
    h.json(
        "PUT",
        "/v1/departments/hr",
        &owner,
        serde_json::json!({"closed": true}),
    )
    .await;
    h.json(
        "PUT",
        "/v1/departments/sales",
        &owner,
        serde_json::json!({"closed": false}),
    )
    .await;
    let mut devices = Vec::new();
    for (user, dept) in [("anna@acme.test", "hr"), ("carl@acme.test", "sales")] {
        let a = h
            .json(
                "POST",
                "/v1/users",
                &owner,
                serde_json::json!({"user_id": user, "department": dept}),
            )
            .await;
        devices.push(
            h.enroll_with(a.json["token"].as_str().unwrap(), user)
                .await
                .unwrap(),
        );
    }
    let e = h
        .relay
        .devices_of_user(&devices[1], "anna@acme.test")
        .await
        .unwrap_err();
    assert!(matches!(e, kontor_relay::Error::Forbidden(_)), "{e}");
    // Wait for the refusal to reach the trail.
    let mut refused = Vec::new();
    for _ in 0..50 {
        refused = h.audited("relay.refused");
        if !refused.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(refused.len(), 1);
    // Users are named by pseudonym, which the mapping resolves.
    assert!(kontor_admin::audit::is_pseudonym(&refused[0].actor));
    assert_eq!(h.named(&refused[0].actor), "carl@acme.test");
    assert_eq!(h.named(&refused[0].target), "anna@acme.test");
    // The matrix opens messages but not groups.
    let a = h.json("PUT", "/v1/barriers", &owner, serde_json::json!({"a": "hr", "b": "sales", "messages": true, "groups": false, "files": false})).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.json);
    assert!(
        h.relay
            .devices_of_user(&devices[1], "anna@acme.test")
            .await
            .is_ok()
    );
    let e = h
        .relay
        .create_group(
            &devices[1],
            [5; 16],
            "joint",
            &["anna@acme.test".to_owned()],
        )
        .await
        .unwrap_err();
    assert!(matches!(e, kontor_relay::Error::Forbidden(_)), "{e}");
    // Moving Carl into HR lifts the barrier at once.
    let a = h
        .json(
            "PUT",
            "/v1/users/carl@acme.test/department",
            &owner,
            serde_json::json!({"department": "hr"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    h.relay
        .create_group(
            &devices[1],
            [6; 16],
            "joint",
            &["anna@acme.test".to_owned()],
        )
        .await
        .unwrap();
    let _ = Exchange::File;
}

#[tokio::test]
async fn restrictions_are_pushed_to_devices_and_the_relay_refuses_uploads_without_files() {
    let h = Harness::new().await;
    let owner = h.sign_in("owner").await;
    let a = h
        .json(
            "POST",
            "/v1/users",
            &owner,
            serde_json::json!({"user_id": "anna@acme.test"}),
        )
        .await;
    let device = h
        .enroll_with(a.json["token"].as_str().unwrap(), "anna@acme.test")
        .await
        .unwrap();
    h.relay
        .put_blob(&device, [1; 16], b"sealed".to_vec())
        .await
        .unwrap();
    let a = h
        .json(
            "PUT",
            "/v1/restrictions/org/acme",
            &owner,
            serde_json::json!({"attachments": ["images", "files"], "copy_paste": false}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.json);
    let a = h
        .json(
            "PUT",
            "/v1/restrictions/user/anna@acme.test",
            &owner,
            serde_json::json!({"attachments": []}),
        )
        .await;
    assert_eq!(a.json["users_updated"], 1);
    let commands = h.relay.commands(&device).await.unwrap();
    let last = commands.iter().rev().find(|c| c.kind == "policy").unwrap();
    let policy: serde_json::Value = serde_json::from_str(&last.payload).unwrap();
    assert_eq!(policy["allow_copy_paste"], false);
    assert_eq!(policy["allowed_attachments"], serde_json::json!([]));
    let e = h
        .relay
        .put_blob(&device, [2; 16], b"sealed".to_vec())
        .await
        .unwrap_err();
    assert!(matches!(e, kontor_relay::Error::Forbidden(_)), "{e}");
    let user = h
        .call("GET", "/v1/users/anna@acme.test", &owner, None)
        .await;
    assert_eq!(user.json["restrictions"]["allow_copy_paste"], false);
    // Unknown kinds and fields are refused and change nothing.
    for body in [
        serde_json::json!({"attachments": ["pdf"]}),
        serde_json::json!({"paste": true}),
    ] {
        let a = h
            .json("PUT", "/v1/restrictions/user/anna@acme.test", &owner, body)
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.json);
    }
    let a = h
        .call(
            "DELETE",
            "/v1/restrictions/user/anna@acme.test",
            &owner,
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    h.relay
        .put_blob(&device, [3; 16], b"sealed".to_vec())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_wipe_goes_from_requested_to_delivered_to_confirmed() {
    let h = Harness::new().await;
    let owner = h.sign_in("owner").await;
    let a = h
        .json(
            "POST",
            "/v1/users",
            &owner,
            serde_json::json!({"user_id": "anna@acme.test"}),
        )
        .await;
    let device = h
        .enroll_with(a.json["token"].as_str().unwrap(), "anna@acme.test")
        .await
        .unwrap();
    let a = h
        .call(
            "POST",
            &format!("/v1/devices/{}/wipe", device.device_id),
            &owner,
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.json);
    let state = || async {
        h.call("GET", "/v1/wipes", &owner, None).await.json["wipes"][0]["state"].clone()
    };
    assert_eq!(state().await, "requested");
    let commands = h.relay.commands(&device).await.unwrap();
    assert_eq!(state().await, "delivered");
    let wipe = commands.iter().find(|c| c.kind == "wipe").unwrap();
    h.relay
        .ack_command(&device, wipe.id, &serde_json::json!({"wiped": true}))
        .await
        .unwrap();
    assert_eq!(state().await, "confirmed");
    let bad = h.call("POST", "/v1/devices/zz/wipe", &owner, None).await;
    assert_eq!(bad.status, StatusCode::NOT_FOUND);
    let trail = h.audited("device.wipe");
    assert_eq!(trail.len(), 2);
    assert_eq!(trail[0].outcome, kontor_admin::audit::Outcome::Requested);
}

#[tokio::test]
async fn broadcasts_reach_every_device_of_the_scope() {
    let h = Harness::new().await;
    let owner = h.sign_in("owner").await;
    h.json(
        "PUT",
        "/v1/departments/hr",
        &owner,
        serde_json::json!({"closed": false}),
    )
    .await;
    let mut devices = Vec::new();
    for (user, dept) in [("anna@acme.test", Some("hr")), ("ben@acme.test", None)] {
        let a = h
            .json(
                "POST",
                "/v1/users",
                &owner,
                serde_json::json!({"user_id": user, "department": dept}),
            )
            .await;
        devices.push(
            h.enroll_with(a.json["token"].as_str().unwrap(), user)
                .await
                .unwrap(),
        );
    }
    let a = h
        .json(
            "POST",
            "/v1/broadcasts",
            &owner,
            serde_json::json!({"text": "HR meeting at 3", "department": "hr"}),
        )
        .await;
    assert_eq!(a.json["devices"], 1);
    let a = h
        .json(
            "POST",
            "/v1/broadcasts",
            &owner,
            serde_json::json!({"text": "Office closed Friday"}),
        )
        .await;
    assert_eq!(a.json["devices"], 2);
    let anna = h.relay.commands(&devices[0]).await.unwrap();
    let ben = h.relay.commands(&devices[1]).await.unwrap();
    assert_eq!(anna.iter().filter(|c| c.kind == "broadcast").count(), 2);
    assert_eq!(ben.iter().filter(|c| c.kind == "broadcast").count(), 1);
    for body in [
        serde_json::json!({"text": ""}),
        serde_json::json!({"text": "x".repeat(4001)}),
    ] {
        assert_eq!(
            h.json("POST", "/v1/broadcasts", &owner, body).await.status,
            StatusCode::BAD_REQUEST
        );
    }
    let a = h
        .json(
            "POST",
            "/v1/broadcasts",
            &owner,
            serde_json::json!({"text": "hi", "department": "nowhere"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn removing_a_user_revokes_erases_and_ends_their_invitations() {
    let h = Harness::new().await;
    let owner = h.sign_in("owner").await;
    let a = h
        .json(
            "POST",
            "/v1/users",
            &owner,
            serde_json::json!({"user_id": "anna@acme.test", "devices": 2}),
        )
        .await;
    let token = a.json["token"].as_str().unwrap().to_owned();
    let device = h.enroll_with(&token, "anna@acme.test").await.unwrap();
    assert_eq!(
        h.call("DELETE", "/v1/users/anna@acme.test", &owner, None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert!(h.relay.still_allowed(&device).await.is_err());
    assert!(
        h.enroll_with(&token, "anna@acme.test").await.is_err(),
        "the invitation's second use is gone"
    );
    assert_eq!(
        h.call("GET", "/v1/users/anna@acme.test", &owner, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_user_enrolled_with_an_emm_token_joins_the_directory_and_every_enrollment_is_audited() {
    let h = Harness::new().await;
    let owner = h.sign_in("owner").await;
    let device = h.enroll("dora@acme.test").await;
    let mut found = StatusCode::NOT_FOUND;
    for _ in 0..50 {
        found = h
            .call("GET", "/v1/users/dora@acme.test", &owner, None)
            .await
            .status;
        if found == StatusCode::OK {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(found, StatusCode::OK);
    let a = h
        .call(
            "POST",
            &format!("/v1/devices/{}/wipe", device.device_id),
            &owner,
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.json);
    let enrolled = h.audited_eventually("device.enroll", |_| true).await;
    assert_eq!(enrolled.len(), 1);
    assert_eq!(h.named(&enrolled[0].actor), "dora@acme.test");
    assert_eq!(enrolled[0].target, device.device_id.to_string());
    // A refused enrollment is recorded too, with its reason.
    assert!(
        h.enroll_with("kt1_0000000000000000_0000", "eve@acme.test")
            .await
            .is_err()
    );
    let refused: Vec<_> = h
        .audited_eventually("device.enroll", |e| {
            e.outcome == kontor_admin::audit::Outcome::Refused
        })
        .await
        .into_iter()
        .filter(|e| e.outcome == kontor_admin::audit::Outcome::Refused)
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
}

#[tokio::test]
async fn a_users_data_export_holds_their_records_and_no_secrets() {
    let h = Harness::new().await;
    let owner = h.sign_in("owner").await;
    let a = h
        .json(
            "POST",
            "/v1/users",
            &owner,
            serde_json::json!({"user_id": "anna@acme.test", "display_name": "Anna"}),
        )
        .await;
    let token = a.json["token"].as_str().unwrap().to_owned();
    let device = h.enroll_with(&token, "anna@acme.test").await.unwrap();
    h.call(
        "POST",
        &format!("/v1/devices/{}/wipe", device.device_id),
        &owner,
        None,
    )
    .await;
    let export = h
        .call("GET", "/v1/users/anna@acme.test/export", &owner, None)
        .await;
    assert_eq!(export.status, StatusCode::OK, "{}", export.json);
    let j = &export.json;
    assert_eq!(j["user"]["display_name"], "Anna");
    assert_eq!(j["certificates"].as_array().unwrap().len(), 1);
    assert_eq!(
        j["certificates"][0]["device_id"],
        device.device_id.to_string()
    );
    assert_eq!(j["wipes"].as_array().unwrap().len(), 1);
    assert!(
        j["audit_entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "user.invite")
    );
    let text = String::from_utf8_lossy(&export.body);
    assert!(
        !text.contains(&token),
        "the export shows the enrollment token"
    );
    assert_eq!(h.audited("user.export").len(), 1);
    assert_eq!(
        h.call("GET", "/v1/users/nobody@acme.test/export", &owner, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn retention_drops_old_activity_counts_and_archives_and_records_it() {
    let h = Harness::new().await;
    let owner = h.sign_in("owner").await;
    h.json(
        "POST",
        "/v1/users",
        &owner,
        serde_json::json!({"user_id": "anna@acme.test"}),
    )
    .await;
    h.admin
        .store()
        .add_activity("2020-01-01".into(), vec![("anna@acme.test".into(), 3, 4)])
        .await
        .unwrap();
    h.admin
        .store()
        .add_activity("2999-01-01".into(), vec![("anna@acme.test".into(), 1, 1)])
        .await
        .unwrap();
    h.json(
        "PUT",
        "/v1/settings/archive-key",
        &owner,
        serde_json::json!({"public_key": "33".repeat(32)}),
    )
    .await;
    let a = h
        .json(
            "POST",
            "/v1/archives",
            &owner,
            serde_json::json!({"users": ["anna@acme.test"], "from_ms": 0, "to_ms": 1}),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.json);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Nothing is due yet for the archive; the 2020 counts are.
    let run = h.admin.expire(now).await.unwrap();
    assert_eq!(
        (run.activity_rows, run.archives, run.audit_entries),
        (1, 0, 0)
    );
    let days = h
        .call("GET", "/v1/users/anna@acme.test/activity", &owner, None)
        .await
        .json;
    assert_eq!(days["days"].as_array().unwrap().len(), 1);
    // A year later the archive is gone too.
    assert_eq!(
        h.admin
            .expire(now + 365 * 86_400_000)
            .await
            .unwrap()
            .archives,
        1
    );
    assert_eq!(
        h.call("GET", "/v1/archives", &owner, None).await.json["archives"],
        serde_json::json!([])
    );
    assert_eq!(h.audited("retention.expire").len(), 2);
}

/// Every table of an SQLite database, and whether any text or blob in it
/// contains `needle`: (table, column) pairs that do.
async fn tables_naming(store: &kontor_admin::store::AdminStore, needle: &str) -> Vec<String> {
    let needle = needle.to_owned();
    store.call(move |c| Ok(naming(c, &needle))).await.unwrap()
}

fn naming(c: &rusqlite::Connection, needle: &str) -> Vec<String> {
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let mut found = Vec::new();
    for table in tables {
        let mut stmt = c.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let columns = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for i in 0..columns {
                let text = match row.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        String::from_utf8_lossy(t).into_owned()
                    }
                    _ => continue,
                };
                if text.contains(needle) {
                    found.push(format!("{table}.{i}"));
                }
            }
        }
    }
    found
}

#[tokio::test]
async fn removing_a_user_erases_them_and_leaves_only_a_pseudonym_in_the_trail() {
    let h = Harness::new().await;
    let owner = h.sign_in("owner").await;
    let a = h
        .json(
            "POST",
            "/v1/users",
            &owner,
            serde_json::json!({"user_id": "anna@acme.test", "display_name": "Anna Aal"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.json);
    h.call("PUT", "/v1/allow-list/anna@acme.test", &owner, None)
        .await;
    h.json(
        "PUT",
        "/v1/restrictions/user/anna@acme.test",
        &owner,
        serde_json::json!({"copy_paste": false}),
    )
    .await;
    h.call("POST", "/v1/users/anna@acme.test/block", &owner, None)
        .await;
    h.admin
        .store()
        .add_activity("2999-01-01".into(), vec![("anna@acme.test".into(), 1, 2)])
        .await
        .unwrap();

    // Written from now on under a pseudonym; reads resolve it, and the
    // filters still take the clear id.
    let trail = h
        .call("GET", "/v1/audit?target=anna@acme.test", &owner, None)
        .await;
    assert_eq!(trail.status, StatusCode::OK, "{}", trail.json);
    let entries = trail.json["entries"].as_array().unwrap();
    assert!(entries.len() >= 4, "{}", trail.json);
    let pseudonym = entries[0]["target"].as_str().unwrap().to_owned();
    assert!(kontor_admin::audit::is_pseudonym(&pseudonym), "{pseudonym}");
    assert!(entries.iter().all(|e| e["target"] == pseudonym.as_str()));
    assert_eq!(trail.json["names"][&pseudonym], "anna@acme.test");
    let jsonl = h
        .call(
            "GET",
            "/v1/audit?target=anna@acme.test&format=jsonl",
            &owner,
            None,
        )
        .await;
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&jsonl.body).lines().next().unwrap()).unwrap();
    assert_eq!(first["names"][&pseudonym], "anna@acme.test");
    let syslog = h.call("GET", "/v1/audit?format=syslog", &owner, None).await;
    assert!(!String::from_utf8_lossy(&syslog.body).contains("anna@acme.test"));
    let by_pseudonym = h
        .call(
            "GET",
            &format!("/v1/audit?target={pseudonym}"),
            &owner,
            None,
        )
        .await;
    assert_eq!(
        by_pseudonym.json["entries"].as_array().unwrap().len(),
        entries.len()
    );
    // Only the mapping holds the clear id; no entry does.
    assert!(
        h.audit
            .query(&Default::default())
            .unwrap()
            .iter()
            .all(|e| { !kontor_admin::audit::json_line(e).contains("anna@acme.test") })
    );

    let removed = h
        .call("DELETE", "/v1/users/anna@acme.test", &owner, None)
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.json);

    // Nothing the administration holds names her any more.
    assert_eq!(
        tables_naming(h.admin.store(), "anna@acme.test").await,
        Vec::<String>::new()
    );
    assert_eq!(
        tables_naming(h.admin.store(), "Anna Aal").await,
        Vec::<String>::new()
    );
    let audit_db = h.audit.clone();
    let in_trail_db = tokio::task::spawn_blocking(move || {
        let all = audit_db.query(&Default::default()).unwrap();
        (audit_db.names(&all).unwrap(), all)
    })
    .await
    .unwrap();
    assert!(!in_trail_db.0.contains_key(&pseudonym));
    assert!(!in_trail_db.0.values().any(|v| v.contains("anna")));
    assert!(
        in_trail_db
            .1
            .iter()
            .all(|e| !kontor_admin::audit::json_line(e).contains("anna@acme.test"))
    );
    // The trail keeps what was done, under the pseudonym alone, and verifies.
    let trail = h
        .call(
            "GET",
            &format!("/v1/audit?target={pseudonym}"),
            &owner,
            None,
        )
        .await;
    let actions: Vec<&str> = trail.json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"user.remove"), "{actions:?}");
    assert!(actions.contains(&"user.block"), "{actions:?}");
    assert_eq!(trail.json["names"], serde_json::json!({}));
    let gone = h
        .call("GET", "/v1/audit?target=anna@acme.test", &owner, None)
        .await;
    assert_eq!(gone.json["entries"], serde_json::json!([]));
    assert!(h.audit.verify().unwrap().is_intact());
}

#[tokio::test]
async fn a_users_data_export_holds_every_personal_datum_the_administration_keeps() {
    let h = Harness::new().await;
    let owner = h.sign_in("owner").await;
    let a = h
        .json(
            "POST",
            "/v1/users",
            &owner,
            serde_json::json!({"user_id": "anna@acme.test", "display_name": "Anna Aal"}),
        )
        .await;
    let token = a.json["token"].as_str().unwrap().to_owned();
    let device = h.enroll_with(&token, "anna@acme.test").await.unwrap();
    // The enrollment reaches the trail from provisioning's event task.
    h.audited_eventually("device.enroll", |_| true).await;
    h.call("PUT", "/v1/allow-list/anna@acme.test", &owner, None)
        .await;
    h.json(
        "PUT",
        "/v1/restrictions/user/anna@acme.test",
        &owner,
        serde_json::json!({"copy_paste": false}),
    )
    .await;
    h.admin
        .store()
        .add_activity("2999-01-01".into(), vec![("anna@acme.test".into(), 1, 2)])
        .await
        .unwrap();
    h.json(
        "PUT",
        "/v1/settings/archive-key",
        &owner,
        serde_json::json!({"public_key": "33".repeat(32)}),
    )
    .await;
    let archive = h
        .json(
            "POST",
            "/v1/archives",
            &owner,
            serde_json::json!({"users": ["anna@acme.test"], "from_ms": 0, "to_ms": 1}),
        )
        .await;
    assert_eq!(archive.status, StatusCode::ACCEPTED, "{}", archive.json);
    h.call(
        "POST",
        &format!("/v1/devices/{}/wipe", device.device_id),
        &owner,
        None,
    )
    .await;

    let export = h
        .call("GET", "/v1/users/anna@acme.test/export", &owner, None)
        .await;
    assert_eq!(export.status, StatusCode::OK, "{}", export.json);
    let j = &export.json;
    assert_eq!(j["user"]["display_name"], "Anna Aal");
    assert_eq!(j["user_restrictions"][0]["copy_paste"], false, "{j}");
    assert_eq!(j["on_allow_list"], true);
    assert_eq!(j["enrollment_directory"]["status"], "active");
    assert_eq!(j["enrollment_tokens"].as_array().unwrap().len(), 1);
    assert!(j["enrollment_tokens"][0].get("secret_hash").is_none());
    assert!(
        j["enrollment_attempts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["outcome"] == "accepted"),
        "{j}"
    );
    assert_eq!(j["certificates"].as_array().unwrap().len(), 1);
    assert_eq!(j["activity"][0]["sent"], 1);
    assert_eq!(j["wipes"].as_array().unwrap().len(), 1);
    assert_eq!(j["archive_requests"].as_array().unwrap().len(), 1);
    assert_eq!(
        j["archive_devices"][0]["device"],
        device.device_id.to_string()
    );
    // Audit entries by, about or naming her, pseudonyms resolved: the
    // archive request names her only in its detail.
    let audit = j["audit_entries"].as_array().unwrap();
    for action in [
        "user.invite",
        "allow_list.add",
        "restrictions.set",
        "archive.request",
        "device.wipe",
        "device.enroll",
    ] {
        let found = audit.iter().find(|e| e["action"] == action);
        let Some(found) = found else {
            panic!("{action} missing from {j}")
        };
        assert!(
            found["names"]
                .as_object()
                .unwrap()
                .values()
                .any(|v| v == "anna@acme.test"),
            "{action}: {found}"
        );
    }
    assert!(!String::from_utf8_lossy(&export.body).contains(&token));
}

#[tokio::test]
async fn audit_retention_deletes_old_entries_behind_a_checkpoint_and_records_the_run() {
    let h =
        Harness::with(|c| c.audit_retention = Some(std::time::Duration::from_secs(86_400))).await;
    let owner = h.sign_in("owner").await;
    h.json(
        "POST",
        "/v1/users",
        &owner,
        serde_json::json!({"user_id": "anna@acme.test"}),
    )
    .await;
    let before = h.audit.head().unwrap();
    assert!(before.seq > 3);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Within the day nothing goes.
    assert_eq!(h.admin.expire(now).await.unwrap().audit_entries, 0);
    // Two days on, everything written so far does.
    let run = h.admin.expire(now + 2 * 86_400_000).await.unwrap();
    assert_eq!(run.audit_entries, before.seq);
    let checkpoint = h.audit.checkpoint().unwrap().unwrap();
    assert_eq!(checkpoint.through_seq, before.seq);
    assert_eq!(checkpoint.hash, before.hash);
    let report = h.audit.verify().unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.checkpoint, Some(checkpoint));
    let recorded = h.audited("audit.retention");
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].detail["deleted"], before.seq);
    // Auditors see the run; the trail goes on.
    let trail = h.call("GET", "/v1/audit", &owner, None).await;
    assert_eq!(trail.json["entries"][0]["action"], "audit.retention");
    assert!(h.audit.verify().unwrap().is_intact());
}

/// Message counts are summed in memory and written once per
/// `ACTIVITY_FLUSH` (written per batch of events, they were a second
/// SQLite writer the relay's writer waited for); refusals still reach the
/// audit trail at once, and what was counted is written when the events
/// end.
#[tokio::test]
async fn activity_counts_are_written_once_a_second_and_refusals_at_once() {
    use kontor_admin::policy::PolicyEvent;
    use kontor_admin::service::ACTIVITY_FLUSH;
    let h = Harness::new().await;
    let (events, received) = tokio::sync::mpsc::unbounded_channel();
    let recorder = tokio::spawn(h.admin.clone().record_events(received));
    let posted = || PolicyEvent::Posted {
        from: "anna@acme.test".into(),
        to: vec!["ben@acme.test".into(), "carl@acme.test".into()],
    };
    let store = h.admin.store();
    let started = std::time::Instant::now();
    for _ in 0..3 {
        events.send(posted()).unwrap();
    }
    events
        .send(PolicyEvent::Refused(kontor_relay::service::Refusal {
            from_user: "anna@acme.test".into(),
            to_user: Some("dora@acme.test".into()),
            what: "messages",
        }))
        .unwrap();
    let refused = h.audited_eventually("relay.refused", |_| true).await;
    assert_eq!(refused.len(), 1, "the refusal waits for nothing");
    let counted = store.activity("anna@acme.test").await.unwrap();
    if started.elapsed() < ACTIVITY_FLUSH {
        assert!(counted.is_empty(), "counts written early: {counted:?}");
    }
    let until = started + 10 * ACTIVITY_FLUSH;
    let sent = loop {
        let rows = store.activity("anna@acme.test").await.unwrap();
        if !rows.is_empty() || std::time::Instant::now() > until {
            break rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(
        started.elapsed() >= ACTIVITY_FLUSH,
        "written before the flush"
    );
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!((sent[0].1, sent[0].2), (3, 0));
    let ben = store.activity("ben@acme.test").await.unwrap();
    assert_eq!((ben[0].1, ben[0].2), (0, 3));

    // The last counts are written when the events end, without waiting.
    events.send(posted()).unwrap();
    events.send(posted()).unwrap();
    drop(events);
    let ended = std::time::Instant::now();
    recorder.await.unwrap();
    assert!(
        ended.elapsed() < ACTIVITY_FLUSH,
        "the end waited for the flush"
    );
    let carl = store.activity("carl@acme.test").await.unwrap();
    assert_eq!((carl[0].1, carl[0].2), (0, 5));
}
