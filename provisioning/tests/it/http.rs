//! The HTTP API: an end-to-end enrollment and revocation over a real
//! socket, and every kind of bad input through `oneshot`.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use kontor_provisioning::store::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

use crate::common::*;

async fn call(
    router: &axum::Router,
    method: &str,
    uri: &str,
    body: Vec<u8>,
    admin: bool,
) -> (StatusCode, Vec<u8>) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if admin {
        request = request.header("authorization", format!("Bearer {ADMIN_KEY}"));
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, bytes.to_vec())
}

/// A minimal HTTP/1.1 client over a real socket.
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    admin: bool,
) -> (u16, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = if admin {
        format!("Authorization: Bearer {ADMIN_KEY}\r\n")
    } else {
        String::new()
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n{auth}\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, response[split + 4..].to_vec())
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

#[tokio::test]
async fn enroll_from_token_then_revoke_shows_serial_in_crl() {
    let fx = Fixture::new(sqlite()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(kontor_provisioning::http::serve(
        listener,
        fx.router(),
        async {
            let _ = stopped.await;
        },
    ));

    // The admin makes a one-use token for a user.
    let body = serde_json::json!({ "binding": "user", "bound_to": "grace@example.org", "lifetime_seconds": 600 });
    let (status, created) = http(
        addr,
        "POST",
        "/v1/admin/tokens",
        body.to_string().as_bytes(),
        true,
    )
    .await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&created));
    let created = json(&created);
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(created["qr_svg"].as_str().unwrap().starts_with("<?xml"));
    let (status, _) = http(
        addr,
        "POST",
        "/v1/admin/tokens",
        body.to_string().as_bytes(),
        false,
    )
    .await;
    assert_eq!(status, 401, "admin routes need the key");

    // Listing shows no secret.
    let (status, listed) = http(addr, "GET", "/v1/admin/tokens", b"", true).await;
    assert_eq!(status, 200);
    let secret_part = token.rsplit('_').next().unwrap();
    assert!(!String::from_utf8_lossy(&listed).contains(secret_part));
    assert_eq!(json(&listed)[0]["bound_to"], "grace@example.org");

    // The device enrolls.
    let (_key, csr) = device_csr();
    let request = serde_json::json!({
        "token": token, "csr": csr, "identity_key": hex::encode([0x42u8; 32]),
        "platform": "ios", "device_name": "Grace's iPhone",
    });
    let (status, enrolled) = http(
        addr,
        "POST",
        "/v1/enroll",
        request.to_string().as_bytes(),
        false,
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&enrolled));
    let enrolled = json(&enrolled);
    assert_eq!(enrolled["relay_url"], RELAY_URL);
    assert_eq!(enrolled["policy"]["copy_paste"], false);
    let serial = enrolled["serial"].as_str().unwrap().to_owned();
    let device_id = enrolled["device_id"].as_str().unwrap().to_owned();

    // openssl accepts the chain it got.
    let chain = enrolled["chain"].as_str().unwrap();
    let parts: Vec<&str> = chain
        .split_inclusive("-----END CERTIFICATE-----\n")
        .collect();
    let dir = fx.dir.path();
    std::fs::write(dir.join("device.pem"), parts[0]).unwrap();
    std::fs::write(dir.join("issuing.pem"), parts[1]).unwrap();
    std::fs::write(dir.join("root.pem"), enrolled["root"].as_str().unwrap()).unwrap();
    let (ok, out) = run(
        "openssl",
        &[
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "issuing.pem",
            "device.pem",
        ],
        dir,
    );
    assert!(ok, "{out}");

    // The one-use token is used up now.
    let (status, again) = http(
        addr,
        "POST",
        "/v1/enroll",
        request.to_string().as_bytes(),
        false,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(json(&again)["error"]["code"], "token_used_up");

    // Before revocation the CRL is empty.
    let (status, crl) = http(addr, "GET", "/pki/crl.der", b"", false).await;
    assert_eq!(status, 200);
    let (_, parsed) = x509_parser::parse_x509_crl(&crl).unwrap();
    assert_eq!(parsed.iter_revoked_certificates().count(), 0);

    // The admin revokes the device; the CRL lists it and openssl accepts it.
    let revoke = serde_json::json!({ "device_id": device_id, "reason": "lost" });
    let (status, revoked) = http(
        addr,
        "POST",
        "/v1/admin/revocations",
        revoke.to_string().as_bytes(),
        true,
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&revoked));
    assert_eq!(json(&revoked)["revoked"][0], serial);
    assert!(
        fx.service
            .deny_list()
            .contains_raw(&hex::decode(&serial).unwrap())
    );
    let (status, crl) = http(addr, "GET", "/pki/crl.der", b"", false).await;
    assert_eq!(status, 200);
    let (_, parsed) = x509_parser::parse_x509_crl(&crl).unwrap();
    let listed: Vec<String> = parsed
        .iter_revoked_certificates()
        .map(|r| hex::encode(r.raw_serial()))
        .collect();
    assert_eq!(listed, vec![serial.clone()]);
    assert!(parsed.next_update().is_some());
    std::fs::write(dir.join("crl.der"), &crl).unwrap();
    let (ok, out) = run(
        "openssl",
        &[
            "crl",
            "-in",
            "crl.der",
            "-inform",
            "DER",
            "-CAfile",
            "issuing.pem",
            "-verify",
            "-noout",
        ],
        dir,
    );
    assert!(ok && out.contains("verify OK"), "{out}");
    // The generation-specific URL named in the certificate serves the same list.
    let (status, by_generation) = http(addr, "GET", "/pki/crl/1.der", b"", false).await;
    assert_eq!(status, 200);
    assert_eq!(by_generation, crl);

    // Renewal of the revoked certificate is refused.
    let renew = serde_json::json!({ "certificate": parts[0], "csr": csr });
    let (status, refused) = http(
        addr,
        "POST",
        "/v1/renew",
        renew.to_string().as_bytes(),
        false,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(json(&refused)["error"]["code"], "certificate_revoked");

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

fn openssl_csr(dir: &std::path::Path, name: &str, newkey: &[&str], extra: &[&str]) -> String {
    let key = format!("{name}.key");
    let out = format!("{name}.csr");
    let mut args = vec![
        "req",
        "-new",
        "-nodes",
        "-subj",
        "/CN=device",
        "-keyout",
        &key,
        "-out",
        &out,
    ];
    args.extend_from_slice(newkey);
    args.extend_from_slice(extra);
    let (ok, text) = run("openssl", &args, dir);
    assert!(ok, "{text}");
    std::fs::read_to_string(dir.join(out)).unwrap()
}

fn der_csr_to_pem(der: &[u8]) -> String {
    // openssl re-encodes without checking the signature.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.der"), der).unwrap();
    let (ok, text) = run(
        "openssl",
        &["req", "-inform", "DER", "-in", "in.der", "-outform", "PEM"],
        dir.path(),
    );
    assert!(ok, "{text}");
    text
}

#[tokio::test]
async fn bad_input_is_refused_with_a_code_nothing_issued_and_recorded() {
    let fx = Fixture::new(sqlite()).await;
    let router = fx.router();
    let store = fx.service.store();
    let dir = fx.dir.path();
    let user = TokenBinding::User("frank@example.org".into());
    let good_token = fx.token(user.clone(), 10).await;
    let (_, good_csr) = device_csr();

    // CSRs that must be refused.
    let rsa = openssl_csr(dir, "rsa", &["-newkey", "rsa:2048"], &[]);
    let small_rsa = openssl_csr(dir, "rsa1024", &["-newkey", "rsa:1024"], &[]);
    let p224 = openssl_csr(
        dir,
        "p224",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-224"],
        &[],
    );
    let odd_ext = openssl_csr(
        dir,
        "ext",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        &["-addext", "1.2.3.4=DER:0500"],
    );
    let good_der = {
        let (_, block) = x509_parser::pem::parse_x509_pem(good_csr.as_bytes()).unwrap();
        block.contents
    };
    let mut mis_signed = good_der.clone();
    let last = mis_signed.len() - 1;
    mis_signed[last] ^= 0x01;
    // One flipped bit in the signature's last byte: well-formed, wrongly signed.
    let mis_signed = der_csr_to_pem(&mis_signed);
    let malformed =
        "-----BEGIN CERTIFICATE REQUEST-----\nMIIBAAAA\n-----END CERTIFICATE REQUEST-----\n";

    // Tokens that must be refused.
    let spec = kontor_provisioning::token::TokenSpec {
        binding: user.clone(),
        max_uses: 1,
        lifetime_seconds: 60,
        label: String::new(),
    };
    let long_ago = now().unix_timestamp() - 3600;
    let (expired, record) =
        kontor_provisioning::token::generate(&spec, long_ago, &mut rng()).unwrap();
    store.insert_token(&record).await.unwrap();
    let (used_up, record) =
        kontor_provisioning::token::generate(&spec, now().unix_timestamp(), &mut rng()).unwrap();
    let record = TokenRecord { uses: 1, ..record };
    store.insert_token(&record).await.unwrap();
    let revoked = fx.token(user.clone(), 5).await;
    let revoked_id = revoked.split('_').nth(1).unwrap().to_owned();
    let (status, _) = call(
        &router,
        "POST",
        &format!("/v1/admin/tokens/{revoked_id}/revoke"),
        vec![],
        true,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let unknown = format!("kt1_{}_{}", "ab".repeat(8), "cd".repeat(32));
    let blocked_token = fx
        .token(TokenBinding::User("henry@example.org".into()), 5)
        .await;
    store
        .put_user(&DirectoryUser {
            user_id: "henry@example.org".into(),
            department: None,
            status: UserStatus::Blocked,
        })
        .await
        .unwrap();

    let body = |token: &str, csr: &str| {
        serde_json::json!({
            "token": token, "csr": csr, "identity_key": hex::encode([0x42u8; 32]),
            "platform": "android", "device_name": "Pixel",
        })
        .to_string()
        .into_bytes()
    };
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "malformed csr",
            body(&good_token, malformed),
            StatusCode::BAD_REQUEST,
            "malformed_csr",
        ),
        (
            "mis-signed csr",
            body(&good_token, &mis_signed),
            StatusCode::BAD_REQUEST,
            "csr_signature_invalid",
        ),
        (
            "rsa csr",
            body(&good_token, &rsa),
            StatusCode::BAD_REQUEST,
            "unsupported_key",
        ),
        (
            "undersized rsa",
            body(&good_token, &small_rsa),
            StatusCode::BAD_REQUEST,
            "unsupported_key",
        ),
        (
            "p-224 csr",
            body(&good_token, &p224),
            StatusCode::BAD_REQUEST,
            "unsupported_key",
        ),
        (
            "unknown extension",
            body(&good_token, &odd_ext),
            StatusCode::BAD_REQUEST,
            "csr_extension_unsupported",
        ),
        (
            "expired token",
            body(expired.expose_secret(), &good_csr),
            StatusCode::FORBIDDEN,
            "token_expired",
        ),
        (
            "used-up token",
            body(used_up.expose_secret(), &good_csr),
            StatusCode::FORBIDDEN,
            "token_used_up",
        ),
        (
            "revoked token",
            body(&revoked, &good_csr),
            StatusCode::FORBIDDEN,
            "token_revoked",
        ),
        (
            "unknown token",
            body(&unknown, &good_csr),
            StatusCode::UNAUTHORIZED,
            "token_unknown",
        ),
        (
            "garbage token",
            body("hello", &good_csr),
            StatusCode::UNAUTHORIZED,
            "token_unknown",
        ),
        (
            "blocked user",
            body(&blocked_token, &good_csr),
            StatusCode::FORBIDDEN,
            "user_blocked",
        ),
        (
            "oversize body",
            vec![b' '; 20 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            "not json",
            b"{\"token\": ".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_request",
        ),
        (
            "missing field",
            b"{\"token\": \"x\"}".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_request",
        ),
        (
            "bad identity key",
            serde_json::json!({
                "token": good_token, "csr": good_csr, "identity_key": "00",
                "platform": "android", "device_name": "Pixel",
            })
            .to_string()
            .into_bytes(),
            StatusCode::BAD_REQUEST,
            "invalid_identity_key",
        ),
        (
            "unknown platform",
            serde_json::json!({
                "token": good_token, "csr": good_csr, "identity_key": hex::encode([1u8; 32]),
                "platform": "symbian", "device_name": "Nokia",
            })
            .to_string()
            .into_bytes(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
    ];
    for (name, request, status, code) in cases {
        let before = store.attempts().await.unwrap().len();
        let (got, answer) = call(&router, "POST", "/v1/enroll", request, false).await;
        assert_eq!(got, status, "{name}: {}", String::from_utf8_lossy(&answer));
        let answer = json(&answer);
        assert_eq!(answer["error"]["code"], code, "{name}");
        assert!(
            !answer["error"]["message"].as_str().unwrap().is_empty(),
            "{name}"
        );
        let attempts = store.attempts().await.unwrap();
        assert_eq!(attempts.len(), before + 1, "{name}: attempt recorded");
        assert_eq!(attempts.last().unwrap().outcome, code, "{name}");
        assert!(
            !answer.to_string().contains(&good_token[20..]),
            "{name}: no secret in the answer"
        );
    }
    assert!(
        store
            .certificates_of_user("frank@example.org")
            .await
            .unwrap()
            .is_empty(),
        "nothing issued"
    );
    assert!(
        store
            .certificates_of_user("henry@example.org")
            .await
            .unwrap()
            .is_empty(),
        "nothing issued"
    );
    assert!(
        fx.service
            .list_tokens()
            .await
            .unwrap()
            .iter()
            .all(|t| t.uses == 0 || t.max_uses == 1)
    );

    // The good request still works afterwards.
    let (status, _) = call(
        &router,
        "POST",
        "/v1/enroll",
        body(&good_token, &good_csr),
        false,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn csr_asking_for_ca_gets_a_leaf_certificate() {
    // The rcgen trap: a CSR's requested extensions must not reach the certificate.
    let fx = Fixture::new(sqlite()).await;
    let token = fx.token(TokenBinding::User("ivan".into()), 1).await;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["evil.example".to_owned()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let enrolled = fx
        .service
        .enroll(&enroll_request(&token, &csr), now())
        .await
        .unwrap();
    let (_, block) = x509_parser::pem::parse_x509_pem(enrolled.chain.as_bytes()).unwrap();
    let cert = block.parse_x509().unwrap();
    assert!(!cert.is_ca());
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && !ku.key_cert_sign());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    let san = cert.subject_alternative_name().unwrap().unwrap().value;
    assert_eq!(san.general_names.len(), 1);
    assert!(format!("{:?}", san.general_names[0]).contains("urn:kontor:device:"));
}

#[tokio::test]
async fn renew_over_http_with_a_new_key_needs_the_old_keys_proof() {
    use kontor_provisioning::service::RENEW_PROOF_CONTEXT;
    use rcgen::SigningKey;

    let fx = Fixture::new(sqlite()).await;
    let router = fx.router();
    let token = fx.token(TokenBinding::User("judy".into()), 1).await;
    let (old_key, csr) = device_csr();
    let enrolled = fx
        .service
        .enroll(&enroll_request(&token, &csr), now())
        .await
        .unwrap();
    let cert_pem = enrolled
        .chain
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .unwrap()
        .to_owned();
    let (_new_key, new_csr) = device_csr();
    let (_, block) = x509_parser::pem::parse_x509_pem(new_csr.as_bytes()).unwrap();
    let mut message = RENEW_PROOF_CONTEXT.to_vec();
    message.extend_from_slice(&block.contents);
    let proof = hex::encode(old_key.sign(&message).unwrap());

    let body = |proof: Option<&str>| {
        let mut value = serde_json::json!({ "certificate": cert_pem, "csr": new_csr });
        if let Some(proof) = proof {
            value["proof"] = serde_json::Value::from(proof);
        }
        value.to_string().into_bytes()
    };
    let (status, answer) = call(&router, "POST", "/v1/renew", body(None), false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        json(&answer)["error"]["code"],
        "proof_of_possession_invalid"
    );
    let (status, answer) = call(&router, "POST", "/v1/renew", body(Some("zz")), false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        json(&answer)["error"]["code"],
        "proof_of_possession_invalid"
    );
    let (status, answer) = call(&router, "POST", "/v1/renew", body(Some(&proof)), false).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let renewed = json(&answer);
    assert_eq!(renewed["device_id"], enrolled.device_id);
    assert_ne!(renewed["serial"], enrolled.serial);

    let garbage = serde_json::json!({ "certificate": "nope", "csr": new_csr })
        .to_string()
        .into_bytes();
    let (status, answer) = call(&router, "POST", "/v1/renew", garbage, false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json(&answer)["error"]["code"], "certificate_unknown");

    let outcomes: Vec<String> = fx
        .service
        .store()
        .attempts()
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.kind == "renew")
        .map(|a| a.outcome)
        .collect();
    assert_eq!(
        outcomes,
        [
            "proof_of_possession_invalid",
            "proof_of_possession_invalid",
            "accepted",
            "certificate_unknown"
        ]
    );
}
