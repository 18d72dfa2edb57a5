//! The MDM clients against local stand-ins that check what NanoMDM and the
//! Android Management API check (auth, content type, body shape), and can
//! be told to fail, to exercise retries, backoff and dead letters.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use kontor_mdm_connector::clients::{
    self, AmapiClient, AmapiConfig, EnrollmentId, Error, HttpConfig, NanoMdmClient, NanoMdmConfig,
    ResourceName, Secret, StaticToken, parse_nanomdm_answer, parse_retry_after,
};
use kontor_mdm_connector::outbox::{
    Deliverer, DelivererConfig, Delivery, EntryState, Outbox, OutboxConfig, Transport,
};
use serde_json::{Value, json};
use time::OffsetDateTime;

const API_KEY: &str = "nano-api-key-for-tests";
const TOKEN: &str = "ya29.test-access-token";

/// A failure the stand-in answers with instead of doing its work.
#[derive(Clone, Copy)]
enum Fail {
    Status500,
    TooMany { retry_after_s: u64 },
    Slow,
}

/// A request the stand-in accepted or refused.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    idempotency_key: Option<String>,
    status: u16,
}

#[derive(Clone, Default)]
struct StandIn {
    failures: Arc<Mutex<VecDeque<Fail>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl StandIn {
    fn fail_next(&self, fails: &[Fail]) {
        self.failures.lock().unwrap().extend(fails.iter().copied());
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Records the request; answers a scripted failure if one is queued.
    async fn enter(&self, method: &str, uri: &Uri, headers: &HeaderMap) -> Option<Response> {
        let fail = self.failures.lock().unwrap().pop_front();
        let response = match fail {
            None => None,
            Some(Fail::Status500) => Some(
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(json!({"error": {"code": 500, "message": "Internal error encountered.", "status": "INTERNAL"}})),
                )
                    .into_response(),
            ),
            Some(Fail::TooMany { retry_after_s }) => Some(
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, retry_after_s.to_string())],
                    axum::Json(json!({"error": {"code": 429, "message": "Quota exceeded.", "status": "RESOURCE_EXHAUSTED"}})),
                )
                    .into_response(),
            ),
            Some(Fail::Slow) => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                None
            }
        };
        self.seen.lock().unwrap().push(Seen {
            method: method.into(),
            path: uri.path().into(),
            query: uri.query().map(str::to_owned),
            idempotency_key: headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            status: response.as_ref().map_or(200, |r| r.status().as_u16()),
        });
        response
    }

    fn note_status(&self, status: StatusCode) {
        if let Some(last) = self.seen.lock().unwrap().last_mut() {
            last.status = status.as_u16();
        }
    }
}

fn nanomdm_router(state: StandIn) -> Router {
    Router::new()
        .route("/v1/enqueue/{ids}", put(nanomdm_enqueue))
        .route("/v1/push/{ids}", get(nanomdm_push))
        .with_state(state)
}

fn nanomdm_refusal(headers: &HeaderMap) -> Option<Response> {
    let expected = clients::nanomdm_basic_auth(&Secret::new(API_KEY));
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if auth != Some(expected.as_str()) {
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic realm=\"nanomdm\"")],
                "Unauthorized\n",
            )
                .into_response(),
        );
    }
    if headers.get("idempotency-key").is_none() {
        return Some((StatusCode::BAD_REQUEST, "no idempotency key").into_response());
    }
    None
}

fn per_id(ids: &str) -> Value {
    let mut status = serde_json::Map::new();
    for (n, id) in ids.split(',').enumerate() {
        status.insert(
            id.to_owned(),
            json!({"push_result": format!("8B16D295-AB2C-EAB9-90FF-{n:012}")}),
        );
    }
    Value::Object(status)
}

async fn nanomdm_enqueue(
    State(s): State<StandIn>,
    Path(ids): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = s.enter("PUT", &uri, &headers).await {
        return response;
    }
    let refused = nanomdm_refusal(&headers).or_else(|| {
        let xml = headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes() == b"application/xml");
        (!xml).then(|| (StatusCode::UNSUPPORTED_MEDIA_TYPE, "want application/xml").into_response())
    });
    if let Some(response) = refused {
        s.note_status(response.status());
        return response;
    }
    // What NanoMDM's command decoder insists on.
    let command = plist::Value::from_reader_xml(&body[..]).ok().and_then(|v| {
        let dict = v.into_dictionary()?;
        let uuid = dict.get("CommandUUID")?.as_string()?.to_owned();
        let request_type = dict
            .get("Command")?
            .as_dictionary()?
            .get("RequestType")?
            .as_string()?
            .to_owned();
        Some((uuid, request_type))
    });
    let Some((uuid, request_type)) = command else {
        s.note_status(StatusCode::BAD_REQUEST);
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"command_error": "decoding command: missing RequestType"})),
        )
            .into_response();
    };
    let no_push = uri.query() == Some("nopush=1");
    let mut answer = json!({"command_uuid": uuid, "request_type": request_type});
    if no_push {
        answer["no_push"] = Value::Bool(true);
    } else {
        answer["status"] = per_id(&ids);
    }
    axum::Json(answer).into_response()
}

async fn nanomdm_push(
    State(s): State<StandIn>,
    Path(ids): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Some(response) = s.enter("GET", &uri, &headers).await {
        return response;
    }
    if let Some(response) = nanomdm_refusal(&headers) {
        s.note_status(response.status());
        return response;
    }
    axum::Json(json!({"status": per_id(&ids)})).into_response()
}

fn google_error(status: StatusCode, name: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": status.as_u16(), "message": message, "status": name}})),
    )
        .into_response()
}

/// Bearer token and a JSON body, as Google's front end checks them.
#[allow(
    clippy::result_large_err,
    reason = "a test stand-in: the refusal is returned to axum at once"
)]
fn amapi_refusal(headers: &HeaderMap, body: &[u8]) -> Result<Value, Response> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {TOKEN}")) {
        return Err(google_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
        ));
    }
    if headers.get("idempotency-key").is_none() {
        return Err(google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "no key",
        ));
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let parsed = serde_json::from_slice::<Value>(body).ok().filter(|_| json);
    parsed.ok_or_else(|| {
        google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Invalid JSON payload received.",
        )
    })
}

fn amapi_router(state: StandIn) -> Router {
    Router::new()
        .route("/v1/enterprises/{e}/devices/{d}", post(amapi_issue_command))
        .route("/v1/enterprises/{e}/enrollmentTokens", post(amapi_token))
        .route("/v1/enterprises/{e}/policies/{p}", patch(amapi_policy))
        .with_state(state)
}

async fn amapi_issue_command(
    State(s): State<StandIn>,
    Path((e, d)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = s.enter("POST", &uri, &headers).await {
        return response;
    }
    let command = match amapi_refusal(&headers, &body) {
        Ok(v) => v,
        Err(response) => {
            s.note_status(response.status());
            return response;
        }
    };
    let Some(device) = d.strip_suffix(":issueCommand") else {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such method");
    };
    let Some(kind) = command.get("type").and_then(Value::as_str) else {
        s.note_status(StatusCode::BAD_REQUEST);
        return google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Command type must be specified.",
        );
    };
    axum::Json(json!({
        "name": format!("enterprises/{e}/devices/{device}/operations/1620000000000"),
        "metadata": {
            "@type": "type.googleapis.com/google.android.devicemanagement.v1.Command",
            "type": kind,
            "createTime": "2026-11-02T09:30:00Z",
            "userName": format!("enterprises/{e}/users/u1")
        }
    }))
    .into_response()
}

async fn amapi_token(
    State(s): State<StandIn>,
    Path(e): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = s.enter("POST", &uri, &headers).await {
        return response;
    }
    let request = match amapi_refusal(&headers, &body) {
        Ok(v) => v,
        Err(response) => {
            s.note_status(response.status());
            return response;
        }
    };
    axum::Json(json!({
        "name": format!("enterprises/{e}/enrollmentTokens/tok1"),
        "value": "ABCDEFGHIJKLMNOPQRST",
        "expirationTimestamp": "2026-11-02T10:30:00Z",
        "policyName": request.get("policyName").cloned().unwrap_or(Value::Null),
        "qrCode": "{\"android.app.extra.PROVISIONING_DEVICE_ADMIN_COMPONENT_NAME\":\"com.google.android.apps.work.clouddpc/.receivers.CloudDeviceAdminReceiver\"}"
    }))
    .into_response()
}

async fn amapi_policy(
    State(s): State<StandIn>,
    Path((e, p)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = s.enter("PATCH", &uri, &headers).await {
        return response;
    }
    let mut policy = match amapi_refusal(&headers, &body) {
        Ok(v) => v,
        Err(response) => {
            s.note_status(response.status());
            return response;
        }
    };
    policy["name"] = Value::String(format!("enterprises/{e}/policies/{p}"));
    policy["version"] = Value::from(2);
    axum::Json(policy).into_response()
}

async fn serve(router: Router, addr: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    addr
}

async fn start(router: Router) -> SocketAddr {
    serve(router, "127.0.0.1:0".parse().unwrap()).await
}

fn http(addr: SocketAddr) -> HttpConfig {
    HttpConfig {
        timeout: Duration::from_secs(1),
        danger_plaintext_http: true,
        ..HttpConfig::new(format!("http://{addr}/"))
    }
}

fn nanomdm(addr: SocketAddr, key: &str) -> NanoMdmClient {
    NanoMdmClient::new(NanoMdmConfig {
        http: http(addr),
        api_key: Secret::new(key),
        target: clients::NANOMDM_TARGET.into(),
    })
    .unwrap()
}

fn amapi(addr: SocketAddr, token: &str) -> AmapiClient {
    AmapiClient::new(
        AmapiConfig {
            http: http(addr),
            target: clients::AMAPI_TARGET.into(),
        },
        Arc::new(StaticToken(Secret::new(token))),
    )
    .unwrap()
}

const PLIST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>Command</key>
	<dict>
		<key>RequestType</key>
		<string>ProfileList</string>
	</dict>
	<key>CommandUUID</key>
	<string>fedd659e-fc3c-4e35-8bb1-c8f51ae542a5</string>
</dict>
</plist>
"#;

fn ids(list: &[&str]) -> Vec<EnrollmentId> {
    list.iter()
        .map(|id| EnrollmentId::parse(id).unwrap())
        .collect()
}

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

fn memory_outbox() -> Arc<Outbox> {
    Arc::new(
        Outbox::with_connection(
            rusqlite::Connection::open_in_memory().unwrap(),
            OutboxConfig::default(),
        )
        .unwrap(),
    )
}

#[tokio::test]
async fn nanomdm_enqueue_sends_plist_basic_auth_and_idempotency_key() {
    let stand_in = StandIn::default();
    let addr = start(nanomdm_router(stand_in.clone())).await;
    let client = nanomdm(addr, API_KEY);
    let answer = client
        .enqueue(
            &ids(&[
                "99385AF6-44CB-5621-A678-A321F4D9A2C8",
                "E9085AF6-DCCB-5661-A678-BCE8F4D9A2C8",
            ]),
            PLIST.as_bytes(),
            "enqueue-1",
        )
        .await
        .unwrap();
    assert_eq!(
        answer.command_uuid.as_deref(),
        Some("fedd659e-fc3c-4e35-8bb1-c8f51ae542a5")
    );
    assert_eq!(answer.request_type.as_deref(), Some("ProfileList"));
    assert_eq!(answer.status.len(), 2);
    assert!(!answer.has_errors());
    let seen = stand_in.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "PUT");
    assert_eq!(
        seen[0].path,
        "/v1/enqueue/99385AF6-44CB-5621-A678-A321F4D9A2C8,E9085AF6-DCCB-5661-A678-BCE8F4D9A2C8"
    );
    assert_eq!(seen[0].idempotency_key.as_deref(), Some("enqueue-1"));

    let pushed = client
        .push(&ids(&["99385AF6-44CB-5621-A678-A321F4D9A2C8"]), "push-1")
        .await
        .unwrap();
    assert!(
        pushed.status["99385AF6-44CB-5621-A678-A321F4D9A2C8"]
            .push_result
            .is_some()
    );
    assert_eq!(stand_in.seen()[1].method, "GET");

    let entry = client
        .enqueue_entry(&ids(&["A"]), PLIST.as_bytes(), true, "k")
        .unwrap();
    assert_eq!(entry.url_path, "/v1/enqueue/A?nopush=1");
}

#[tokio::test]
async fn nanomdm_with_a_wrong_key_is_refused_and_the_entry_dead_lettered() {
    let stand_in = StandIn::default();
    let addr = start(nanomdm_router(stand_in.clone())).await;
    let client = nanomdm(addr, "wrong-key");
    let err = client
        .enqueue(&ids(&["A"]), PLIST.as_bytes(), "k1")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NanoMdm { status: 401, .. }), "{err}");
    assert!(!err.to_string().contains("wrong-key"));

    let outbox = memory_outbox();
    let id = outbox
        .enqueue(
            &client
                .enqueue_entry(&ids(&["A"]), PLIST.as_bytes(), false, "k2")
                .unwrap(),
            t0(),
        )
        .unwrap();
    let deliverer = Deliverer::new(outbox.clone(), DelivererConfig::default())
        .route(clients::NANOMDM_TARGET, Arc::new(client));
    let report = deliverer.run_once(t0()).await.unwrap();
    assert_eq!(report.dead, 1);
    let entry = outbox.get(id).unwrap().unwrap();
    assert_eq!(
        (entry.state, entry.last_status),
        (EntryState::Dead, Some(401))
    );
    assert_eq!(entry.answer.as_deref(), Some(&b"Unauthorized\n"[..]));
}

#[tokio::test]
async fn a_command_without_request_type_never_reaches_the_outbox() {
    let client = nanomdm("127.0.0.1:9".parse().unwrap(), API_KEY);
    let bad = PLIST.replace("RequestType", "Nothing");
    let err = client
        .enqueue_entry(&ids(&["A"]), bad.as_bytes(), false, "k")
        .unwrap_err();
    assert!(err.to_string().contains("RequestType"), "{err}");
    assert!(
        client
            .enqueue_entry(&ids(&["A"]), b"not a plist", false, "k")
            .is_err()
    );
    assert!(EnrollmentId::parse("A,B").is_err());
    assert!(EnrollmentId::parse("../x").is_err());
    assert!(client.push_entry(&[], "k").is_err());
}

#[test]
fn nanomdm_answers_parse_per_enrollment() {
    // The shape of a 207 from NanoMDM's OpenAPI document.
    let answer = parse_nanomdm_answer(
        br#"{
            "status": {
                "99385AF6-44CB-5621-A678-A321F4D9A2C8": {"push_result": "5736F13F-E2A2-E8B9-E21C-3973BDAA4054"},
                "E9085AF6-DCCB-5661-A678-BCE8F4D9A2C8": {"push_error": "no push info", "command_error": ""}
            },
            "command_uuid": "9b7c63eb-14b4-4739-96b0-750a5c967371",
            "request_type": "ProvisioningProfileList"
        }"#,
    )
    .unwrap();
    assert!(answer.has_errors());
    let failed = &answer.status["E9085AF6-DCCB-5661-A678-BCE8F4D9A2C8"];
    assert_eq!(failed.push_error.as_deref(), Some("no push info"));
    assert_eq!(failed.command_error, None);
    let no_push = parse_nanomdm_answer(
        br#"{"no_push": true, "command_uuid": "598544b5-b681-4ce2-8914-ba7f45ff5c02", "request_type": "CertificateList"}"#,
    )
    .unwrap();
    assert!(no_push.no_push && no_push.status.is_empty());
    assert!(parse_nanomdm_answer(b"[]").is_err());
}

#[tokio::test]
async fn amapi_calls_send_bearer_json_and_parse_answers() {
    let stand_in = StandIn::default();
    let addr = start(amapi_router(stand_in.clone())).await;
    let client = amapi(addr, TOKEN);
    let device = ResourceName::device("LC00abc123", "3a1f5e").unwrap();
    let op = client
        .issue_command(
            &device,
            &json!({"type": "LOCK", "duration": "600s"}),
            "cmd-1",
        )
        .await
        .unwrap();
    assert_eq!(
        op.name,
        "enterprises/LC00abc123/devices/3a1f5e/operations/1620000000000"
    );
    assert!(!op.done);
    assert_eq!(op.metadata.unwrap()["type"], "LOCK");

    let enterprise = ResourceName::enterprise("LC00abc123").unwrap();
    let token = client
        .create_enrollment_token(
            &enterprise,
            &json!({"policyName": "enterprises/LC00abc123/policies/kontor", "duration": "3600s"}),
            "tok-1",
        )
        .await
        .unwrap();
    assert_eq!(token.value.expose(), "ABCDEFGHIJKLMNOPQRST");
    assert_eq!(
        token.policy_name.as_deref(),
        Some("enterprises/LC00abc123/policies/kontor")
    );
    assert!(!format!("{token:?}").contains("ABCDEFGHIJ"));

    let policy = ResourceName::policy("LC00abc123", "kontor").unwrap();
    let patched = client
        .patch_policy(
            &policy,
            &json!({"applications": [{"packageName": "de.kontor.app", "installType": "FORCE_INSTALLED"}]}),
            &["applications"],
            "pol-1",
        )
        .await
        .unwrap();
    assert_eq!(patched["version"], 2);

    let seen = stand_in.seen();
    assert_eq!(
        seen.iter().map(|s| s.path.as_str()).collect::<Vec<_>>(),
        vec![
            "/v1/enterprises/LC00abc123/devices/3a1f5e:issueCommand",
            "/v1/enterprises/LC00abc123/enrollmentTokens",
            "/v1/enterprises/LC00abc123/policies/kontor",
        ]
    );
    assert_eq!(seen[2].query.as_deref(), Some("updateMask=applications"));
    assert_eq!(
        seen.iter()
            .map(|s| s.idempotency_key.clone().unwrap())
            .collect::<Vec<_>>(),
        vec!["cmd-1", "tok-1", "pol-1"]
    );
}

#[tokio::test]
async fn amapi_errors_map_to_google_errors() {
    let stand_in = StandIn::default();
    let addr = start(amapi_router(stand_in.clone())).await;
    let device = ResourceName::device("LC00abc123", "3a1f5e").unwrap();
    let err = amapi(addr, "expired")
        .issue_command(&device, &json!({"type": "REBOOT"}), "k")
        .await
        .unwrap_err();
    match &err {
        Error::Google { status, error } => {
            assert_eq!(*status, 401);
            assert_eq!(error.status.as_deref(), Some("UNAUTHENTICATED"));
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("401 UNAUTHENTICATED"), "{err}");
    assert!(!err.to_string().contains("expired"));

    let client = amapi(addr, TOKEN);
    assert!(
        client
            .issue_command_entry(&device, &json!({"duration": "1s"}), "k")
            .unwrap_err()
            .to_string()
            .contains("needs a type")
    );
    let enterprise = ResourceName::enterprise("LC00abc123").unwrap();
    assert!(
        client
            .issue_command_entry(&enterprise, &json!({"type": "LOCK"}), "k")
            .is_err()
    );
    assert!(ResourceName::parse("enterprises/LC1/devices/../x").is_err());
    assert_eq!(
        ResourceName::parse("enterprises/LC1/devices/d1").unwrap(),
        ResourceName::device("LC1", "d1").unwrap()
    );
    let policy = ResourceName::policy("LC1", "p").unwrap();
    assert!(
        client
            .patch_policy_entry(&policy, &json!({}), &["a&b"], "k")
            .is_err()
    );
}

#[tokio::test]
async fn amapi_500_then_429_are_retried_with_backoff_and_retry_after() {
    let stand_in = StandIn::default();
    stand_in.fail_next(&[Fail::Status500, Fail::TooMany { retry_after_s: 30 }]);
    let addr = start(amapi_router(stand_in.clone())).await;
    let client = Arc::new(amapi(addr, TOKEN));
    let outbox = memory_outbox();
    let device = ResourceName::device("LC00abc123", "3a1f5e").unwrap();
    let id = outbox
        .enqueue(
            &client
                .issue_command_entry(&device, &json!({"type": "LOCK"}), "lock-3a1f5e-1")
                .unwrap(),
            t0(),
        )
        .unwrap();
    let deliverer = Deliverer::new(outbox.clone(), DelivererConfig::default())
        .route(client.target(), client.clone());

    assert_eq!(deliverer.run_once(t0()).await.unwrap().retried, 1);
    let entry = outbox.get(id).unwrap().unwrap();
    assert_eq!((entry.last_status, entry.attempts), (Some(500), 1));
    let wait = entry.next_attempt - t0();
    assert!(wait > time::Duration::ZERO && wait <= time::Duration::seconds(2));

    let t1 = t0() + time::Duration::hours(1);
    assert_eq!(deliverer.run_once(t1).await.unwrap().retried, 1);
    let entry = outbox.get(id).unwrap().unwrap();
    assert_eq!(entry.last_status, Some(429));
    assert_eq!(entry.next_attempt, t1 + time::Duration::seconds(30));
    assert_eq!(deliverer.run_once(t1).await.unwrap().taken, 0);

    let t2 = t1 + time::Duration::seconds(30);
    assert_eq!(deliverer.run_once(t2).await.unwrap().done, 1);
    let entry = outbox.get(id).unwrap().unwrap();
    assert_eq!(entry.state, EntryState::Done);
    let op = clients::parse_operation(entry.answer.as_deref().unwrap()).unwrap();
    assert!(op.name.ends_with("/operations/1620000000000"));
    // Three attempts, one idempotency key.
    let seen = stand_in.seen();
    assert_eq!(
        seen.iter().map(|s| s.status).collect::<Vec<_>>(),
        vec![500, 429, 200]
    );
    assert!(
        seen.iter()
            .all(|s| s.idempotency_key.as_deref() == Some("lock-3a1f5e-1"))
    );
}

#[tokio::test]
async fn a_timeout_is_a_retry() {
    let stand_in = StandIn::default();
    stand_in.fail_next(&[Fail::Slow]);
    let addr = start(nanomdm_router(stand_in.clone())).await;
    let client = nanomdm(addr, API_KEY);
    let entry = client
        .push_entry(&ids(&["A"]), "slow-1")
        .map(|new| kontor_mdm_connector::outbox::Entry {
            id: kontor_mdm_connector::outbox::EntryId(1),
            target: new.target,
            method: new.method,
            url_path: new.url_path,
            content_type: new.content_type,
            body: new.body,
            idempotency_key: new.idempotency_key,
            state: EntryState::Pending,
            attempts: 0,
            next_attempt: t0(),
            created: t0(),
            updated: t0(),
            last_status: None,
            last_error: None,
            answer: None,
        })
        .unwrap();
    match client.send(&entry).await {
        Delivery::Failed { error } => assert!(error.contains("timed out"), "{error}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn nothing_is_lost_while_the_mdm_is_down_and_all_arrives_when_it_is_back() {
    // Find a free port, then leave it closed: the MDM is down.
    let addr = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let client = Arc::new(nanomdm(addr, API_KEY));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kontor.db");
    let keys = ["settings-1", "settings-2", "settings-3"];
    {
        let outbox = Arc::new(Outbox::open(&path, OutboxConfig::default()).unwrap());
        for key in keys {
            outbox
                .enqueue(
                    &client
                        .enqueue_entry(
                            &ids(&["E9085AF6-DCCB-5661-A678-BCE8F4D9A2C8"]),
                            PLIST.as_bytes(),
                            false,
                            key,
                        )
                        .unwrap(),
                    t0(),
                )
                .unwrap();
        }
        let deliverer = Deliverer::new(outbox.clone(), DelivererConfig::default())
            .route(client.target(), client.clone());
        let report = deliverer.run_once(t0()).await.unwrap();
        assert_eq!((report.taken, report.retried), (3, 3));
        for entry in outbox.list(&Default::default()).unwrap() {
            assert_eq!(entry.state, EntryState::Pending);
            assert!(entry.last_error.unwrap().contains("could not connect"));
        }
        // Kontor restarts too.
    }
    let stand_in = StandIn::default();
    serve(nanomdm_router(stand_in.clone()), addr).await;
    let outbox = Arc::new(Outbox::open(&path, OutboxConfig::default()).unwrap());
    let deliverer = Deliverer::new(outbox.clone(), DelivererConfig::default())
        .route(client.target(), client.clone());
    let report = deliverer
        .run_once(t0() + time::Duration::minutes(10))
        .await
        .unwrap();
    assert_eq!(report.done, 3);
    let mut delivered: Vec<String> = stand_in
        .seen()
        .into_iter()
        .filter(|s| s.status == 200)
        .filter_map(|s| s.idempotency_key)
        .collect();
    delivered.sort();
    assert_eq!(delivered, keys);
}

#[test]
fn plain_http_needs_the_danger_flag() {
    let err = NanoMdmClient::new(NanoMdmConfig {
        http: HttpConfig::new("http://mdm.example.org"),
        api_key: Secret::new(API_KEY),
        target: "nanomdm".into(),
    })
    .err()
    .unwrap();
    assert!(err.to_string().contains("https://"), "{err}");
    assert!(
        NanoMdmClient::new(NanoMdmConfig {
            http: HttpConfig::new("https://mdm.example.org"),
            api_key: Secret::new(API_KEY),
            target: "nanomdm".into(),
        })
        .is_ok()
    );
}

#[test]
fn secrets_print_redacted() {
    let config = NanoMdmConfig {
        http: HttpConfig::new("https://mdm.example.org"),
        api_key: Secret::new(API_KEY),
        target: "nanomdm".into(),
    };
    let printed = format!("{config:?}");
    assert!(printed.contains("[redacted]") && !printed.contains(API_KEY));
}

#[test]
fn retry_after_as_seconds_or_http_date() {
    let now = OffsetDateTime::from_unix_timestamp(784_111_777).unwrap(); // Sun, 06 Nov 1994 08:49:37 GMT
    assert_eq!(
        parse_retry_after("120", now),
        Some(Duration::from_secs(120))
    );
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:51:37 GMT", now),
        Some(Duration::from_secs(120))
    );
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
        Some(Duration::ZERO)
    );
    assert_eq!(parse_retry_after("soon", now), None);
    assert_eq!(parse_retry_after("-5", now), None);
}
