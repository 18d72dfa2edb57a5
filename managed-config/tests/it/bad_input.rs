//! Bad inputs for every decoder: each gives an error naming the key and the
//! rule, or the syntax problem; none panics.

use kontor_managed_config::{Error, decode};

const BASE: &str = r#""server_url": "https://kontor.example.org", "organisation_id": "example""#;

/// Data-driven: `decoder(input)` fails with the message `expected`.
fn check(result: Result<decode::Decoded, Error>, expected: &str) {
    match result {
        Ok(d) => panic!("accepted, expected `{expected}`: {d:?}"),
        Err(e) => assert_eq!(e.to_string(), expected),
    }
}

fn json_with(extra: &str) -> Vec<u8> {
    format!("{{{BASE}, {extra}}}").into_bytes()
}

fn plist_with(entries: &str) -> Vec<u8> {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict>
<key>server_url</key><string>https://kontor.example.org</string>
<key>organisation_id</key><string>example</string>{entries}</dict></plist>"#
    )
    .into_bytes()
}

#[test]
fn json_bad_values_name_key_and_rule() {
    let j = |extra: &str| decode::json(&json_with(extra));
    check(
        j(r#""pin_min_length": 2"#),
        "key `pin_min_length`: must be between 4 and 16, got 2",
    );
    check(
        j(r#""pin_min_length": "6""#),
        "key `pin_min_length`: expected an integer, found a string",
    );
    check(
        j(r#""pin_min_length": 6.5"#),
        "key `pin_min_length`: expected an integer, found a real number",
    );
    check(
        j(r#""offline_grace_hours": 99999999999999999999"#),
        "key `offline_grace_hours`: expected an integer, found a real number",
    );
    check(
        j(r#""offline_grace_hours": 18446744073709551615"#),
        "key `offline_grace_hours`: must be between 1 and 720, got 18446744073709551615",
    );
    check(
        j(r#""allow_copy_paste": "true""#),
        "key `allow_copy_paste`: expected a boolean, found a string",
    );
    check(
        j(r#""allow_copy_paste": 1"#),
        "key `allow_copy_paste`: expected a boolean, found an integer",
    );
    check(
        j(r#""pin_kind": "emoji""#),
        "key `pin_kind`: must be one of digits, alphanumeric, got `emoji`",
    );
    check(
        j(r#""log_level": "trace""#),
        "key `log_level`: must be one of error, warn, info, debug, got `trace`",
    );
    check(
        j(r#""allowed_attachments": "images""#),
        "key `allowed_attachments`: expected an array of strings, found a string",
    );
    check(
        j(r#""allowed_attachments": ["images", 3]"#),
        "key `allowed_attachments`: expected an array of strings, found an array holding other values",
    );
    check(
        j(r#""allowed_attachments": ["images", "gifs"]"#),
        "key `allowed_attachments`: must be one of images, videos, audio, files, got `gifs`",
    );
    check(
        j(r#""allowed_attachments": ["audio", "audio"]"#),
        "key `allowed_attachments`: lists `audio` twice",
    );
    check(
        j(r#""config_version": "2""#),
        "key `config_version`: must be `1`, the version this app understands, got `2`",
    );
    check(
        j(r#""enrollment_token": "short""#),
        "key `enrollment_token`: must be 16 to 512 characters long, got 5",
    );
    check(
        j(r#""enrollment_token": "has spaces in the token""#),
        "key `enrollment_token`: must use only letters, digits and . _ ~ + / = -",
    );
    check(
        j("\"department\": \"a\\u0000b\""),
        "key `department`: must not contain control characters",
    );
}

#[test]
fn json_bad_required_keys() {
    check(
        decode::json(b"{}"),
        "key `server_url` is required but missing",
    );
    check(
        decode::json(br#"{"server_url": "https://kontor.example.org"}"#),
        "key `organisation_id` is required but missing",
    );
    check(
        decode::json(br#"{"server_url": "http://kontor.example.org", "organisation_id": "x"}"#),
        "key `server_url`: must be an https:// url with a host and no spaces",
    );
    check(
        decode::json(br#"{"server_url": "https://", "organisation_id": "x"}"#),
        "key `server_url`: must be 9 to 2048 characters long, got 8",
    );
    check(
        decode::json(br#"{"server_url": "https:///path", "organisation_id": "x"}"#),
        "key `server_url`: must be an https:// url with a host and no spaces",
    );
    check(
        decode::json(br#"{"server_url": "$SERVER$", "organisation_id": "x"}"#),
        "key `server_url` holds the unsubstituted emm variable `$SERVER$`",
    );
    check(
        decode::json(
            br#"{"server_url": "https://kontor.example.org", "organisation_id": "org id"}"#,
        ),
        "key `organisation_id`: must use only letters, digits, '.', '_' and '-'",
    );
}

#[test]
fn json_bad_documents() {
    check(
        decode::json(b""),
        "malformed json: EOF while parsing a value at line 1 column 0",
    );
    check(
        decode::json(b"{\"a\": }"),
        "malformed json: expected value at line 1 column 7",
    );
    check(
        decode::json(b"[1, 2]"),
        "json top level must be a dictionary, found an array",
    );
    check(
        decode::json(b"\xff\xfe"),
        "malformed json: expected value at line 1 column 1",
    );
    let deep = format!("{{{BASE}, \"x\": {}{}}}", "[".repeat(40), "]".repeat(40));
    check(
        decode::json(deep.as_bytes()),
        "input nests deeper than 32 levels",
    );
    let very_deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(decode::json(very_deep.as_bytes()).is_err());
    let huge = vec![b' '; kontor_managed_config::MAX_INPUT_BYTES + 1];
    check(
        decode::json(&huge),
        "input is 1048577 bytes, more than the limit of 1048576",
    );
    let many: String = (0..300).map(|i| format!(", \"k{i}\": 1")).collect();
    check(
        decode::json(format!("{{{BASE}{many}}}").as_bytes()),
        "input has more than 256 unknown keys",
    );
}

#[test]
fn android_bundle_json_bad_inputs() {
    let a = |extra: &str| decode::android_bundle_json(&json_with(extra));
    check(
        a(r#""remote_wipe": "yes""#),
        "key `remote_wipe`: expected a boolean, found a string",
    );
    check(
        a(r#""pin_max_failed_attempts": 21"#),
        "key `pin_max_failed_attempts`: must be between 3 and 20, got 21",
    );
    check(
        decode::android_bundle_json(b"\"text\""),
        "json top level must be a dictionary, found a string",
    );
    check(
        decode::android_bundle_json(b"{\"server_url\": nul}"),
        "malformed json: expected ident at line 1 column 19",
    );
}

#[test]
fn amapi_policy_bad_inputs() {
    check(
        decode::amapi_policy(br#"{"applications": []}"#, "com.kontor.messenger"),
        "no application with packageName `com.kontor.messenger` in the policy",
    );
    check(
        decode::amapi_policy(
            br#"{"applications": [{"packageName": "com.kontor.messenger", "managedConfiguration": 5}]}"#,
            "com.kontor.messenger",
        ),
        "json top level must be a dictionary, found an integer",
    );
    check(
        decode::amapi_policy(
            br#"{"applications": [{"packageName": "com.kontor.messenger", "managedConfiguration": {"pin_kind": true}}]}"#,
            "com.kontor.messenger",
        ),
        "key `server_url` is required but missing",
    );
}

#[test]
fn apple_plist_bad_inputs() {
    let p = |entries: &str| decode::apple_plist(&plist_with(entries));
    check(
        p("<key>pin_min_length</key><string>8</string>"),
        "key `pin_min_length`: expected an integer, found a string",
    );
    check(
        p("<key>pin_min_length</key><integer>17</integer>"),
        "key `pin_min_length`: must be between 4 and 16, got 17",
    );
    check(
        p("<key>remote_wipe</key><integer>1</integer>"),
        "key `remote_wipe`: expected a boolean, found an integer",
    );
    check(
        p("<key>department</key><data>AAEC</data>"),
        "key `department`: expected a string, found data",
    );
    check(
        p("<key>allowed_attachments</key><dict/>"),
        "key `allowed_attachments`: expected an array of strings, found a dictionary",
    );
    check(
        p("<key>offline_grace_hours</key><integer>18446744073709551615</integer>"),
        "key `offline_grace_hours`: must be between 1 and 720, got 18446744073709551615",
    );
    check(
        decode::apple_plist(br#"<?xml version="1.0"?><plist version="1.0"><array/></plist>"#),
        "plist top level must be a dictionary, found an array",
    );
    assert!(matches!(
        decode::apple_plist(b"<plist><dict><key>a</key></dict>"),
        Err(Error::Syntax { .. })
    ));
    assert!(matches!(
        decode::apple_plist(b"not a plist at all"),
        Err(Error::Syntax { .. })
    ));
    assert!(matches!(
        decode::apple_plist(b"bplist00\x00\x01"),
        Err(Error::Syntax { .. })
    ));
    assert!(matches!(
        decode::apple_plist(b""),
        Err(Error::Syntax { .. })
    ));
    let deep = format!("{}{}", "<array>".repeat(40), "</array>".repeat(40));
    check(
        p(&format!("<key>x</key>{deep}")),
        "input nests deeper than 32 levels",
    );
    // Deep enough to overflow the stack if anything recursed per level.
    let very_deep = format!(
        r#"<?xml version="1.0"?><plist version="1.0">{}{}</plist>"#,
        "<array>".repeat(65_000),
        "</array>".repeat(65_000)
    );
    check(
        decode::apple_plist(very_deep.as_bytes()),
        "input nests deeper than 32 levels",
    );
}

#[test]
fn apple_command_bad_inputs() {
    check(
        decode::apple_command(br#"<plist version="1.0"><dict><key>RequestType</key><string>Settings</string></dict></plist>"#),
        "key `server_url` is required but missing",
    );
    check(
        decode::apple_command(br#"<plist version="1.0"><dict><key>Configuration</key><string>x</string></dict></plist>"#),
        "plist top level must be a dictionary, found a string",
    );
}

#[test]
fn toml_bad_inputs() {
    let t = |extra: &str| {
        decode::toml(&format!(
            "server_url = \"https://kontor.example.org\"\norganisation_id = \"example\"\n{extra}"
        ))
    };
    check(
        t("pin_min_length = 3"),
        "key `pin_min_length`: must be between 4 and 16, got 3",
    );
    check(
        t("log_level = 3"),
        "key `log_level`: expected a string, found an integer",
    );
    check(
        t("remote_wipe = 1979-05-27T07:32:00Z"),
        "key `remote_wipe`: expected a boolean, found a date",
    );
    assert!(matches!(
        decode::toml("server_url = "),
        Err(Error::Syntax { format: "toml", .. })
    ));
    assert!(matches!(
        decode::toml("a = [1, 2"),
        Err(Error::Syntax { format: "toml", .. })
    ));
    let deep = format!("x = {}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(decode::toml(&deep).is_err());
}

/// A binary plist holding `date` under `expires`, next to the required keys.
fn binary_plist_with_date(date: std::time::SystemTime) -> Vec<u8> {
    let mut dict = plist::Dictionary::new();
    dict.insert("server_url".into(), "https://kontor.example.org".into());
    dict.insert("organisation_id".into(), "example".into());
    dict.insert("expires".into(), plist::Value::Date(date.into()));
    let mut out = Vec::new();
    plist::Value::Dictionary(dict)
        .to_writer_binary(&mut out)
        .unwrap();
    out
}

/// A binary plist can hold a date RFC 3339 cannot write (before the year 0;
/// plist refuses dates after 9999 itself), and plist's own formatter panics
/// on one. Found by the `managed_config_plist` fuzz target on 2026-11-29;
/// the input is kept as found in `fixtures/fuzz-regressions/`.
#[test]
fn a_plist_date_before_the_year_0_is_refused_not_a_panic() {
    let expected = "malformed plist: a date outside the years 0000 to 9999";
    let found = std::fs::read(
        crate::root()
            .join("fixtures/fuzz-regressions/managed_config_plist-date-before-year-0.bplist"),
    )
    .unwrap();
    check(decode::apple_plist(&found), expected);
    check(decode::apple_command(&found), expected);

    // The edge: 0000-01-01T00:00:00Z is the first instant RFC 3339 writes.
    let year_0 = std::time::UNIX_EPOCH - std::time::Duration::from_secs(62_167_219_200);
    let just_before = year_0 - std::time::Duration::from_secs(1);
    check(
        decode::apple_plist(&binary_plist_with_date(just_before)),
        expected,
    );
    // Year 0 itself is read (whatever the decoder then says of the key).
    if let Err(e) = decode::apple_plist(&binary_plist_with_date(year_0)) {
        assert!(
            !e.to_string().contains("a date outside"),
            "year 0 refused as out of range: {e}"
        );
    }
}
