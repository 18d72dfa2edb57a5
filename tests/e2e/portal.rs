//! The admin portal in a real browser: `kontor serve` with an owner,
//! headless Chromium driven through Debian's chromedriver over the W3C
//! WebDriver protocol (a small client below, plain HTTP on 127.0.0.1), a
//! real agent enrolled from the managed configuration the portal showed.
//! Screenshots of every page land in `target/portal-screenshots/`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kontor_relay::client::DeviceClient;
use serde_json::{Value, json};

use crate::admin::{OWNER_PASSWORD, agent, start_with_owner, text};
use crate::serve::{free_port, root_der};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A WebDriver session in headless Chromium; the driver process ends with
/// it.
struct Browser {
    driver: Child,
    port: u16,
    session: String,
    shots: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One HTTP/1.1 exchange with chromedriver (JSON in, JSON out).
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> std::io::Result<Value> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    // chromedriver keeps the connection open despite `Connection: close`:
    // read exactly the announced body.
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let (split, head) = loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::other(
                "connection closed before the header end",
            ));
        }
        raw.extend_from_slice(&chunk[..n]);
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break (
                split,
                String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase(),
            );
        }
    };
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    loop {
        let have = raw.len() - (split + 4);
        let complete = match length {
            Some(len) => have >= len,
            None => raw.ends_with(b"0\r\n\r\n"),
        };
        if complete {
            break;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
    }
    let mut content = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest: &[u8] = &content;
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap_or(0);
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[..line_end])
                    .split(';')
                    .next()
                    .unwrap()
                    .trim(),
                16,
            )
            .unwrap_or(0);
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest = &rest[line_end + 2 + size + 2..];
        }
        content = out;
    }
    serde_json::from_slice(&content).map_err(std::io::Error::other)
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session, or `None`
    /// when chromedriver is not installed.
    fn start(shots: PathBuf) -> Option<Browser> {
        if !Path::new(CHROMEDRIVER).exists() {
            return None;
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(status) = http(port, "GET", "/status", None)
                && status["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"],
            },
        } } });
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            shots,
        };
        let created = browser.call("POST", "/session", Some(caps)).unwrap();
        browser.session = created["sessionId"].as_str().unwrap().to_owned();
        std::fs::create_dir_all(&browser.shots).unwrap();
        Some(browser)
    }

    /// A WebDriver command; `Err` carries the driver's error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let answer = http(self.port, method, path, body.as_ref()).map_err(|e| e.to_string())?;
        let value = answer["value"].clone();
        if let Some(error) = value.get("error").and_then(Value::as_str) {
            return Err(format!("{error}: {}", value["message"]));
        }
        Ok(value)
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let full = format!("/session/{}{path}", self.session);
        self.call(method, &full, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    fn url(&self) -> String {
        self.cmd("GET", "/url", None).as_str().unwrap().to_owned()
    }

    fn source(&self) -> String {
        self.cmd("GET", "/source", None)
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn try_find(&self, css: &str) -> Option<String> {
        let full = format!("/session/{}/element", self.session);
        self.call(
            "POST",
            &full,
            Some(json!({ "using": "css selector", "value": css })),
        )
        .ok()
        .map(|v| {
            v[ELEMENT]
                .as_str()
                .unwrap_or_else(|| panic!("find {css}: {v}"))
                .to_owned()
        })
    }

    /// The element for `css`, waiting up to 10 s for it.
    fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.try_find(css) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no element {css} on {}:\n{}",
                self.url(),
                self.source()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn find_all(&self, css: &str) -> Vec<String> {
        self.cmd(
            "POST",
            "/elements",
            Some(json!({ "using": "css selector", "value": css })),
        )
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[ELEMENT].as_str().unwrap().to_owned())
        .collect()
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/clear"), Some(json!({})));
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn text(&self, css: &str) -> String {
        let e = self.find(css);
        self.cmd("GET", &format!("/element/{e}/text"), None)
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn property(&self, element: &str, name: &str) -> Value {
        self.cmd("GET", &format!("/element/{element}/property/{name}"), None)
    }

    fn displayed(&self, css: &str) -> bool {
        let e = self.find(css);
        self.cmd("GET", &format!("/element/{e}/displayed"), None) == true
    }

    /// The `name` attribute of the focused element.
    fn focused_name(&self) -> String {
        let active = self.cmd("GET", "/element/active", None);
        let e = active[ELEMENT].as_str().unwrap().to_owned();
        self.cmd("GET", &format!("/element/{e}/attribute/name"), None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Presses keys on whatever has the focus, as a keyboard user would
    /// (`\u{E004}` Tab, `\u{E007}` Enter).
    fn keys(&self, keys: &str) {
        let mut actions = Vec::new();
        for k in keys.chars() {
            actions.push(json!({ "type": "keyDown", "value": k.to_string() }));
            actions.push(json!({ "type": "keyUp", "value": k.to_string() }));
        }
        self.cmd(
            "POST",
            "/actions",
            Some(json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] })),
        );
        self.cmd("DELETE", "/actions", None);
    }

    /// Waits until the page shows `needle` (bounded).
    fn wait_for_text(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.source().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "{needle:?} never appeared on {}:\n{}",
                self.url(),
                self.source()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&self, page: &str) {
        use base64::Engine as _;
        let png = self.cmd("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{page}: not a PNG");
        std::fs::write(self.shots.join(format!("{page}.png")), bytes).unwrap();
    }
}

fn screenshots_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::root().join("target"))
        .join("portal-screenshots")
}

#[test]
fn portal_in_a_browser_invite_import_bulk_block_barrier_wipe_audit_and_german() {
    let Some(b) = Browser::start(screenshots_dir()) else {
        println!("skipped: chromedriver not found");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = start_with_owner(&data);
    let ca = data.join("root.pem");
    let base = format!("https://localhost:{}", server.admin_port);

    // Sign-in: a wrong password is refused with a message.
    b.goto(&format!("{base}/"));
    assert!(b.url().ends_with("/portal/sign-in"), "{}", b.url());
    assert!(b.source().contains("<html lang=\"en\">"));
    b.screenshot("sign-in");
    b.type_into("#login", "owner");
    b.type_into("#password", "not the password");
    b.click("button[type=submit]");
    assert!(
        b.text("#signin-error")
            .contains("Wrong name, password or code"),
        "{}",
        b.source()
    );
    b.screenshot("sign-in-error");

    // The right one, with the keyboard alone: Tab to the field, type, Tab,
    // type, Enter submits the form.
    b.goto(&format!("{base}/portal/sign-in"));
    for _ in 0..15 {
        if b.focused_name() == "login" {
            break;
        }
        b.keys("\u{E004}");
    }
    assert_eq!(b.focused_name(), "login");
    b.keys("owner\u{E004}");
    assert_eq!(b.focused_name(), "password");
    b.keys(OWNER_PASSWORD);
    b.keys("\u{E007}");
    b.find("#user-count");
    assert!(b.url().ends_with("/portal/users"), "{}", b.url());
    // The skip link is the first stop for a keyboard user on a page.
    b.goto(&format!("{base}/portal/users"));
    b.keys("\u{E004}");
    let active = b.cmd("GET", "/element/active", None);
    let e = active[ELEMENT].as_str().unwrap().to_owned();
    assert_eq!(b.property(&e, "className"), "skip");

    // Departments: hr (closed) and sales.
    b.goto(&format!("{base}/portal/departments"));
    b.type_into("#dept-name", "hr");
    b.click("input[name=closed]");
    b.click("form[action='/portal/departments'] button");
    b.wait_for_text("The department is saved.");
    b.type_into("#dept-name", "sales");
    b.click("form[action='/portal/departments'] button");
    b.wait_for_text("sales");

    // Invite anna and bob to hr: the QR code shows, and the managed
    // configuration the portal shows enrolls a real agent.
    let mut homes = Vec::new();
    for (user, name) in [
        ("anna@acme.test", "Anna Berg"),
        ("bob@acme.test", "Bob Frei"),
    ] {
        b.goto(&format!("{base}/portal/invite"));
        b.screenshot("invite-form");
        b.type_into("#user_id", user);
        b.type_into("#display_name", name);
        b.click("#department option[value=hr]");
        b.click("form[action='/portal/invite'] button");
        assert!(b.displayed("#qr"), "{}", b.source());
        let qr = b.find("#qr");
        assert!(
            b.property(&qr, "naturalWidth").as_u64().unwrap() > 0,
            "the QR image loads under the CSP"
        );
        b.screenshot("invite");
        let plist = b.text("#apple-plist");
        assert!(plist.contains("<plist"), "{plist}");
        let short = user.split('@').next().unwrap();
        let config = dir.path().join(format!("{short}.plist"));
        std::fs::write(&config, &plist).unwrap();
        let home = dir.path().join(short);
        let out = agent(
            &home,
            "482913",
            &[
                "enroll",
                "--config",
                config.to_str().unwrap(),
                "--ca",
                ca.to_str().unwrap(),
                "--platform",
                "ios",
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
        homes.push(home);
    }
    let anna = homes[0].clone();
    // Activity for anna's chart.
    let out = agent(
        &anna,
        "482913",
        &["send", "--to", "bob@acme.test", "Hallo Bob"],
    );
    assert!(out.status.success(), "{}", text(&out));

    // CSV import with one bad line: the report names it.
    let csv = dir.path().join("users.csv");
    std::fs::write(
        &csv,
        "user_id,display_name,department\nben@acme.test,Ben Kurz,sales\nx,Too Short,sales\ncarl@acme.test,Carl Lang,sales\n",
    )
    .unwrap();
    b.goto(&format!("{base}/portal/import"));
    b.screenshot("import-form");
    let input = b.find("#csv");
    b.cmd(
        "POST",
        &format!("/element/{input}/value"),
        Some(json!({ "text": csv.to_str().unwrap() })),
    );
    b.click("form[action='/portal/import'] button");
    let summary = b.text("#import-summary");
    assert!(
        summary.contains("Imported 2 users; refused lines: 1."),
        "{summary}"
    );
    assert_eq!(b.find_all("#import-report tr.refused").len(), 1);
    assert!(
        b.text("#import-report tr.refused").contains("3"),
        "line 3 is the bad one"
    );
    b.screenshot("import");

    // Filter by department, select all, preview the bulk block, confirm.
    b.goto(&format!("{base}/portal/users"));
    b.screenshot("users");
    b.click("#f-department option[value=sales]");
    b.click("form.filters button[type=submit]");
    b.wait_for_text("2 users match.");
    b.click("input[data-select-all]");
    for e in b.find_all("input[name=user]") {
        assert_eq!(
            b.property(&e, "checked"),
            true,
            "select all ticks every row"
        );
    }
    b.screenshot("users-filtered");
    b.click("#bulk-action option[value=block]");
    b.click("#bulk button[type=submit]");
    b.wait_for_text("Nothing has changed yet.");
    assert_eq!(b.find_all("#preview-users li").len(), 2);
    b.screenshot("bulk-preview");
    b.click("#confirm");
    assert!(
        b.text("#bulk-summary")
            .contains("applied to 2 users, 0 failed")
    );
    b.screenshot("bulk-done");
    b.goto(&format!("{base}/portal/users?department=sales"));
    assert_eq!(
        b.find_all("[data-state=blocked]").len(),
        2,
        "{}",
        b.source()
    );

    // A barrier: hr and sales may exchange messages (pairs sorted: "",
    // hr, sales, so hr ↔ sales is the third).
    b.goto(&format!("{base}/portal/departments"));
    b.click("input[name=p2_messages]");
    b.click("#matrix button[type=submit]");
    b.wait_for_text("Changes saved: 1.");
    b.screenshot("departments");

    // Wipe anna's device: requested, then confirmed once the agent ran.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        b.goto(&format!("{base}/portal/users/anna@acme.test"));
        if !b.find_all("figure.chart rect.bar-sent").is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no activity chart: {}",
            b.source()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    b.find("#devices");
    b.screenshot("user");
    b.click("a[href^='/portal/devices/']");
    b.screenshot("wipe-confirm");
    b.click("#confirm-wipe");
    b.wait_for_text("The wipe is requested.");
    assert_eq!(
        b.find_all("#wipes [data-state=requested]").len(),
        1,
        "{}",
        b.source()
    );
    b.screenshot("wipes-requested");
    let out = agent(&anna, "482913", &["receive"]);
    assert!(text(&out).contains("wipe"), "{}", text(&out));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        b.goto(&format!("{base}/portal/wipes"));
        if !b.find_all("#wipes [data-state=confirmed]").is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "{}", b.source());
        std::thread::sleep(Duration::from_millis(200));
    }
    b.screenshot("wipes");

    // The audit trail shows all of it; its filter narrows it.
    b.goto(&format!("{base}/portal/audit"));
    let trail = b.source();
    for action in [
        "session.sign_in",
        "department.put",
        "user.invite",
        "user.import",
        "user.block",
        "barrier.put",
        "device.wipe",
    ] {
        assert!(trail.contains(action), "{action} not in the trail");
    }
    b.screenshot("audit");
    b.type_into("#a-action", "user.block");
    b.click("form.filters button[type=submit]");
    b.wait_for_text("entries shown");
    let rows = b.find_all("#audit tbody tr");
    assert!(!rows.is_empty());
    assert!(!b.source().contains(">device.wipe<"));
    assert!(
        b.source()
            .contains("/v1/audit?format=jsonl&amp;action=user.block")
    );
    b.screenshot("audit-filtered");

    // The other pages render.
    for page in [
        "restrictions",
        "allow-list",
        "broadcast",
        "archives",
        "integrations",
        "settings",
    ] {
        b.goto(&format!("{base}/portal/{page}"));
        b.find("main h1");
        b.screenshot(page);
    }

    // German, from the switcher, kept across pages.
    b.goto(&format!("{base}/portal/users"));
    b.click("a.lang");
    b.wait_for_text("<html lang=\"de\">");
    assert!(b.url().ends_with("/portal/users"), "{}", b.url());
    assert!(b.text("main h1").contains("Benutzer"));
    b.goto(&format!("{base}/portal/departments"));
    assert!(b.text("main h1").contains("Abteilungen"));
    b.screenshot("departments-de");
    b.goto(&format!("{base}/portal/users"));
    b.screenshot("users-de");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_pages_over_tls_carry_the_security_headers_on_every_answer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let server = start_with_owner(&data);
    let root = root_der(&data);
    let client = DeviceClient::anonymous(
        &format!("127.0.0.1:{}", server.admin_port),
        "localhost",
        &root,
    )
    .unwrap();
    let check = |what: &str, a: &kontor_relay::client::Answer| {
        let h = |name: &str| {
            a.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        assert_eq!(
            h("content-security-policy"),
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            "{what}"
        );
        let hsts = h("strict-transport-security");
        let age: u64 = hsts
            .trim_start_matches("max-age=")
            .split(';')
            .next()
            .unwrap()
            .parse()
            .unwrap_or(0);
        assert!(age >= 31_536_000, "{what}: {hsts}");
        assert_eq!(h("x-frame-options"), "DENY", "{what}");
        assert_eq!(h("referrer-policy"), "no-referrer", "{what}");
        assert_eq!(h("x-content-type-options"), "nosniff", "{what}");
        assert_eq!(h("cache-control"), "no-store", "{what}");
    };
    let get = |path: String, cookie: String| {
        let client = &client;
        async move {
            let headers: Vec<(&str, &str)> = if cookie.is_empty() {
                vec![]
            } else {
                vec![("cookie", cookie.as_str())]
            };
            client
                .request_with("GET", &path, &headers, Vec::new())
                .await
                .unwrap()
        }
    };

    // Signed out: sign-in page, redirects, errors, static files.
    let sign_in = get("/portal/sign-in".into(), String::new()).await;
    assert_eq!(sign_in.status, 200);
    check("sign-in", &sign_in);
    for path in [
        "/",
        "/portal/",
        "/portal/users",
        "/portal/nothing-here",
        "/portal/static/portal.css",
        "/portal/static/portal.js",
    ] {
        let a = get(path.into(), String::new()).await;
        check(path, &a);
    }

    // Sign in with the form over TLS.
    let page = String::from_utf8_lossy(&sign_in.body).into_owned();
    let at = page.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = &page[at..at + 64];
    let signin_cookie = sign_in.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let wrong = client
        .request_with(
            "POST",
            "/portal/sign-in",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("cookie", &signin_cookie),
            ],
            format!("csrf={csrf}&login=owner&password=wrong").into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(wrong.status, 401);
    check("wrong password", &wrong);
    let body = form_body(&[
        ("csrf", csrf),
        ("login", "owner"),
        ("password", OWNER_PASSWORD),
    ]);
    let signed = client
        .request_with(
            "POST",
            "/portal/sign-in",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("cookie", &signin_cookie),
            ],
            body.into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(signed.status, 303);
    check("signed in", &signed);
    let session = signed
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("__Host-kontor_session="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    for path in [
        "/portal/users",
        "/portal/users?department=-&status=blocked&platform=ios&enrollment=enrolled&text=a&active_days=3&inactive_days=9",
        "/portal/invite",
        "/portal/import",
        "/portal/departments",
        "/portal/restrictions",
        "/portal/allow-list",
        "/portal/broadcast",
        "/portal/wipes",
        "/portal/audit",
        "/portal/audit?since=2026-01-01T00:00&until=2099-01-01T00:00",
        "/portal/archives",
        "/portal/integrations",
        "/portal/settings",
        "/portal/users/nobody@acme.test",
        "/portal/archives/0000",
        "/portal/audit?since=yesterday",
        "/portal/lang/de?next=/portal/users",
    ] {
        let a = get(path.into(), session.clone()).await;
        assert!(
            matches!(a.status, 200 | 303 | 400 | 404),
            "{path}: {}",
            a.status
        );
        check(path, &a);
    }
    // A form without its CSRF field: refused, with the headers.
    let refused = client
        .request_with(
            "POST",
            "/portal/departments",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("cookie", &session),
            ],
            b"name=hr".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(refused.status, 403);
    check("no csrf", &refused);
}

fn form_body(fields: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        for b in v.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}
