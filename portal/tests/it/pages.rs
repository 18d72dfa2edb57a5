use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use kontor_admin::role::Role;

use crate::{Browser, Harness, Page};

const PAGES: [&str; 13] = [
    "/portal/users",
    "/portal/invite",
    "/portal/import",
    "/portal/departments",
    "/portal/restrictions",
    "/portal/allow-list",
    "/portal/broadcast",
    "/portal/wipes",
    "/portal/audit",
    "/portal/archives",
    "/portal/integrations",
    "/portal/settings",
    "/portal/users?department=-&status=invited&text=a",
];

fn check_security_headers(path: &str, page: &Page) {
    let h = |name: &str| {
        page.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(
        h("content-security-policy"),
        kontor_portal::CONTENT_SECURITY_POLICY,
        "{path}"
    );
    let hsts = h("strict-transport-security");
    let max_age: u64 = hsts
        .strip_prefix("max-age=")
        .and_then(|r| r.split(';').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(max_age >= 31_536_000, "{path}: {hsts}");
    assert_eq!(h("x-frame-options"), "DENY", "{path}");
    assert_eq!(h("referrer-policy"), "no-referrer", "{path}");
    assert_eq!(h("x-content-type-options"), "nosniff", "{path}");
    assert_eq!(h("cache-control"), "no-store", "{path}");
}

/// No inline script or style: the CSP would block them, so a page that
/// had them would be broken in the browser.
fn check_no_inline_code(path: &str, page: &Page) {
    assert!(!page.body.contains("<script>"), "{path}");
    assert!(!page.body.contains(" style=\""), "{path}");
    assert!(!page.body.contains("<style"), "{path}");
    assert!(!page.body.contains(" onclick="), "{path}");
}

#[tokio::test]
async fn every_portal_answer_carries_the_security_headers_signed_in_or_not() {
    let h = Harness::new().await;
    let mut anonymous = h.browser();
    for path in [
        "/",
        "/portal",
        "/portal/",
        "/portal/sign-in",
        "/portal/users",
        "/portal/no-such-page",
        "/portal/static/portal.css",
        "/portal/static/portal.js",
        "/portal/lang/de?next=/portal/users",
    ] {
        let page = anonymous.get(path).await;
        check_security_headers(path, &page);
    }
    let refused = anonymous.post("/portal/sign-in", &[("login", "x")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    check_security_headers("POST /portal/sign-in", &refused);

    let mut owner = h.signed_in("owner").await;
    for path in PAGES {
        let page = owner.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
        check_security_headers(path, &page);
        check_no_inline_code(path, &page);
        assert!(page.body.contains("<html lang=\"en\">"), "{path}");
        assert!(page.body.contains("href=\"#main\""), "{path}: skip link");
        assert!(page.body.contains("<h1>"), "{path}");
    }
    let missing = owner.get("/portal/users/nobody@acme.test").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    check_security_headers("missing user", &missing);
    let no_csrf = owner.post("/portal/departments", &[("name", "hr")]).await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    check_security_headers("no csrf", &no_csrf);
}

#[tokio::test]
async fn the_admin_api_still_answers_beside_the_portal_and_keeps_its_fallback() {
    let h = Harness::new().await;
    let mut b = h.browser();
    let root = b.get("/").await;
    assert_eq!(root.status, StatusCode::SEE_OTHER);
    assert_eq!(root.location(), "/portal/");
    let api = b.get("/v1/no-such-route").await;
    assert_eq!(api.status, StatusCode::NOT_FOUND);
    assert!(api.body.contains("not_found"), "{}", api.body);
    let api = b.get("/v1/users").await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    // The portal's session cookie is the API's: a signed-in browser reads
    // the JSON API (GET needs no CSRF header), as the export links do.
    let mut owner = h.signed_in("owner").await;
    let api = owner.get("/v1/audit?format=jsonl").await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.body);
    assert!(api.body.contains("session.sign_in"), "{}", api.body);
}

#[tokio::test]
async fn sign_in_refuses_a_wrong_password_and_a_form_without_its_cookie() {
    let h = Harness::new().await;
    let mut b = h.browser();
    let form = b.get("/portal/sign-in").await;
    assert_eq!(form.status, StatusCode::OK);
    let csrf = form.csrf();
    let wrong = b
        .post(
            "/portal/sign-in",
            &[("csrf", &csrf), ("login", "owner"), ("password", "wrong")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(
        wrong.body.contains("Wrong name, password or code."),
        "{}",
        wrong.body
    );
    assert!(!b.cookies.contains_key("__Host-kontor_session"));

    // Another browser (no sign-in cookie) posting the same token: refused.
    let mut other = h.browser();
    let csrf = wrong.csrf();
    let forged = other
        .post(
            "/portal/sign-in",
            &[
                ("csrf", &csrf),
                ("login", "owner"),
                ("password", crate::PASSWORD),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(!other.cookies.contains_key("__Host-kontor_session"));

    let ok = b
        .post(
            "/portal/sign-in",
            &[
                ("csrf", &csrf),
                ("login", "owner"),
                ("password", crate::PASSWORD),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(ok.location(), "/portal/users");
    let set: Vec<&str> = ok
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    let session = set
        .iter()
        .find(|c| c.starts_with("__Host-kontor_session="))
        .unwrap();
    for attribute in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(session.contains(attribute), "{session}");
    }
    let users = b.get("/portal/users").await;
    assert_eq!(users.status, StatusCode::OK);

    // Signing out ends the session; pages go to the sign-in form.
    let csrf = users.csrf();
    let out = b.post("/portal/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), "/portal/sign-in?m=signed_out");
    let again = b.get("/portal/users").await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert!(again.location().starts_with("/portal/sign-in"));
}

#[tokio::test]
async fn an_expired_session_leads_to_the_sign_in_page_with_a_message() {
    let h = Harness::new().await;
    let mut b = h.browser();
    b.cookies
        .insert("__Host-kontor_session".into(), "0".repeat(64));
    let page = b.get("/portal/users").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/portal/sign-in?m=expired");
    let form = b.get(page.location()).await;
    assert!(
        form.body.contains("Your session has ended"),
        "{}",
        form.body
    );
}

#[tokio::test]
async fn a_form_without_the_session_csrf_token_or_from_another_site_changes_nothing() {
    let h = Harness::new().await;
    let mut b = h.signed_in("owner").await;
    let wrong = b
        .post(
            "/portal/departments",
            &[("csrf", &"f".repeat(64)), ("name", "hr")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(
        wrong.body.contains("This form has expired"),
        "{}",
        wrong.body
    );
    let csrf = b.csrf().await;
    let cross = b
        .send(
            Request::builder()
                .method("POST")
                .uri("/portal/departments")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header("sec-fetch-site", "cross-site"),
            Body::from(format!("csrf={csrf}&name=hr")),
        )
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    let page = b.get("/portal/departments").await;
    assert!(page.body.contains("No departments yet."), "{}", page.body);
    let ok = b
        .post(
            "/portal/departments",
            &[("csrf", &csrf), ("name", "hr"), ("closed", "1")],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(ok.location(), "/portal/departments?done=department");
    let page = b.get(ok.location()).await;
    assert!(
        page.body.contains("The department is saved."),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn the_menu_and_buttons_follow_the_role_and_the_service_refuses_anyway() {
    let h = Harness::new().await;
    h.account("helga", Role::Helpdesk).await;
    h.account("audrey", Role::Auditor).await;
    let mut owner = h.signed_in("owner").await;
    let csrf = owner.csrf().await;
    owner
        .post(
            "/portal/invite",
            &[("csrf", &csrf), ("user_id", "anna@acme.test")],
        )
        .await;

    let mut helga = h.signed_in("helga").await;
    let users = helga.get("/portal/users").await;
    assert!(users.body.contains("href=\"/portal/invite\""));
    assert!(!users.body.contains("href=\"/portal/audit\""));
    assert!(!users.body.contains("href=\"/portal/integrations\""));
    assert!(!users.body.contains("href=\"/portal/import\""));
    assert!(users.body.contains("value=\"block\""));
    assert!(
        !users.body.contains("value=\"move\""),
        "helpdesk may not move users"
    );
    let departments = helga.get("/portal/departments").await;
    assert!(!departments.body.contains("Add a department"));
    // Hidden, and refused when posted anyway.
    let csrf = helga.csrf().await;
    let refused = helga
        .post("/portal/departments", &[("csrf", &csrf), ("name", "x")])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("Your role does not allow this."));

    let mut audrey = h.signed_in("audrey").await;
    let home = audrey.get("/portal/").await;
    assert_eq!(home.location(), "/portal/audit");
    let audit = audrey.get("/portal/audit").await;
    assert!(!audit.body.contains("href=\"/portal/users\""));
    let users = audrey.get("/portal/users").await;
    assert_eq!(users.status, StatusCode::FORBIDDEN);
    assert!(
        !h.audit
            .query(&kontor_admin::audit::Filter {
                action: Some("access.refused".into()),
                ..Default::default()
            })
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn german_comes_from_accept_language_or_the_switcher_and_the_switcher_stays_on_the_portal() {
    let h = Harness::new().await;
    let mut b = h.browser();
    b.lang = Some("de-DE,de;q=0.9,en;q=0.5");
    let page = b.get("/portal/sign-in").await;
    assert!(page.body.contains("<html lang=\"de\">"));
    assert!(page.body.contains("Anmeldename"), "{}", page.body);

    let mut b = h.signed_in("owner").await;
    let switch = b.get("/portal/lang/de?next=%2Fportal%2Fusers").await;
    assert_eq!(switch.status, StatusCode::SEE_OTHER);
    assert_eq!(switch.location(), "/portal/users");
    let page = b.get("/portal/users").await;
    assert!(page.body.contains("<html lang=\"de\">"));
    assert!(page.body.contains("Benutzer"));
    assert!(page.body.contains(">English<"));
    for evil in [
        "https://evil.test/",
        "//evil.test/x",
        "/portal/..\\x",
        "/v1/users",
    ] {
        let switch = b
            .get(&format!(
                "/portal/lang/en?next={}",
                form_urlencoded::byte_serialize(evil.as_bytes()).collect::<String>()
            ))
            .await;
        assert_eq!(switch.location(), "/portal/", "{evil}");
    }
}

async fn invite(b: &mut Browser, user: &str, department: &str) -> Page {
    let csrf = b.csrf().await;
    b.post(
        "/portal/invite",
        &[
            ("csrf", &csrf),
            ("user_id", user),
            ("department", department),
            ("devices", "1"),
        ],
    )
    .await
}

#[tokio::test]
async fn an_invitation_shows_its_qr_code_and_managed_configurations() {
    let h = Harness::new().await;
    let mut b = h.signed_in("owner").await;
    let page = invite(&mut b, "anna@acme.test", "").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("src=\"data:image/svg+xml;base64,"));
    assert!(page.body.contains("id=\"apple-plist\""));
    assert!(
        page.body.contains("&lt;plist"),
        "the plist is escaped into <pre>"
    );
    assert!(page.body.contains("id=\"android-json\""));
    assert!(page.body.contains("kt1_"));
}

fn multipart(fields: &[(&str, Option<&str>, &str)]) -> (String, Vec<u8>) {
    let boundary = "----kontorTestBoundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, filename, value) in fields {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(f) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: text/csv\r\n\r\n").as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(value.as_bytes());
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn a_csv_upload_reports_every_line_and_a_bulk_block_is_previewed_before_it_applies() {
    let h = Harness::new().await;
    let mut b = h.signed_in("owner").await;
    let csrf = b.csrf().await;
    b.post("/portal/departments", &[("csrf", &csrf), ("name", "sales")])
        .await;
    let csv = "user_id,display_name,department\nben@acme.test,Ben,sales\nx,Bad Id,sales\ncarl@acme.test,Carl,sales\ndora@acme.test,Dora,nowhere\n";
    let (content_type, body) = multipart(&[
        ("csrf", None, &csrf),
        ("csv", Some("users.csv"), csv),
        ("csv_text", None, ""),
    ]);
    let report = b
        .send(
            Request::builder()
                .method("POST")
                .uri("/portal/import")
                .header(header::CONTENT_TYPE, content_type),
            Body::from(body),
        )
        .await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.body);
    assert!(
        report.body.contains("Imported 2 users; refused lines: 2."),
        "{}",
        report.body
    );
    assert!(
        report.body.contains("unknown department"),
        "{}",
        report.body
    );
    assert_eq!(report.body.matches("class=\"refused\"").count(), 2);

    // Filter by department, select both, preview, confirm.
    let list = b.get("/portal/users?department=sales").await;
    assert!(list.body.contains("2 users match."), "{}", list.body);
    let preview = b
        .post(
            "/portal/bulk",
            &[
                ("csrf", &csrf),
                ("action", "block"),
                ("scope", "selected"),
                ("user", "ben@acme.test"),
                ("user", "carl@acme.test"),
            ],
        )
        .await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
    assert!(preview.body.contains("Nothing has changed yet."));
    let blocked = h
        .admin
        .users(
            &h.admin
                .sign_in("owner", crate::PASSWORD, None, "-")
                .await
                .unwrap()
                .principal,
            &kontor_admin::directory::UserFilter {
                status: Some("blocked".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(blocked.is_empty(), "a preview changes nothing");
    let done = b
        .post(
            "/portal/bulk/apply",
            &[
                ("csrf", &csrf),
                ("action", "block"),
                ("user", "ben@acme.test"),
                ("user", "carl@acme.test"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(
        done.body.contains("applied to 2 users, 0 failed"),
        "{}",
        done.body
    );
    let list = b.get("/portal/users?department=sales&status=blocked").await;
    assert!(list.body.contains("2 users match."), "{}", list.body);

    // The same by filter: all users of sales, unblocked.
    let preview = b
        .post(
            "/portal/bulk",
            &[
                ("csrf", &csrf),
                ("action", "unblock"),
                ("scope", "filter"),
                ("f_department", "sales"),
            ],
        )
        .await;
    assert!(preview.body.contains("these 2 users"), "{}", preview.body);
}

#[tokio::test]
async fn the_barrier_matrix_saves_only_what_changed_and_the_trail_shows_it() {
    let h = Harness::new().await;
    let mut b = h.signed_in("owner").await;
    let csrf = b.csrf().await;
    for (name, closed) in [("hr", "1"), ("sales", "")] {
        let mut fields = vec![("csrf", csrf.as_str()), ("name", name)];
        if !closed.is_empty() {
            fields.push(("closed", closed));
        }
        b.post("/portal/departments", &fields).await;
    }
    let page = b.get("/portal/departments").await;
    // Pairs: ("", hr), ("", sales), (hr, sales), in that order.
    assert!(page.body.contains("hr ↔ sales"), "{}", page.body);
    let saved = b
        .post(
            "/portal/departments/matrix",
            &[
                ("csrf", &csrf),
                ("d0_name", "hr"),
                ("d0_closed", "1"),
                ("d1_name", "sales"),
                ("p0_a", ""),
                ("p0_b", "hr"),
                ("p1_a", ""),
                ("p1_b", "sales"),
                ("p2_a", "hr"),
                ("p2_b", "sales"),
                ("p2_messages", "1"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let page = b.get(saved.location()).await;
    assert!(page.body.contains("Changes saved: 1."), "{}", page.body);
    let trail = b.get("/portal/audit?action=barrier.put").await;
    assert!(trail.body.contains("hr|sales"), "{}", trail.body);
    assert!(
        trail
            .body
            .contains("href=\"/v1/audit?format=jsonl&amp;action=barrier.put\""),
        "{}",
        trail.body
    );
}

#[tokio::test]
async fn an_emm_integration_gets_its_own_key_only_account_and_the_key_works() {
    let h = Harness::new().await;
    let mut b = h.signed_in("owner").await;
    let csrf = b.csrf().await;
    let page = b
        .post(
            "/portal/integrations",
            &[("csrf", &csrf), ("label", "Intune"), ("account", "new-emm")],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let start = page.body.find("kak_").expect("the key is shown once");
    let key: String = page.body[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let p = h.admin.api_key(&key).await.unwrap();
    assert_eq!(p.role, kontor_admin::role::Role::Emm);
    assert_eq!(p.login, "emm: Intune");
    // Without a label nothing is created.
    let page = b
        .post(
            "/portal/integrations",
            &[("csrf", &csrf), ("label", ""), ("account", "new-emm")],
        )
        .await;
    assert_ne!(page.status, StatusCode::OK);
    let owner = h
        .admin
        .sign_in("owner", crate::PASSWORD, None, "-")
        .await
        .unwrap()
        .principal;
    let accounts = h.admin.accounts(&owner).await.unwrap();
    assert_eq!(accounts.iter().filter(|a| a["role"] == "emm").count(), 1);
}
