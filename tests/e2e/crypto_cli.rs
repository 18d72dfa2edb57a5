//! `kontor crypto verify-vectors` and `kontor demo`.

use crate::{kontor, root, stdout};

#[test]
fn verify_vectors_passes_the_committed_vector_files() {
    for file in [
        "fixtures/vectors/envelope-v1.json",
        "fixtures/vectors/store-v1.json",
    ] {
        let out = kontor(&["crypto", "verify-vectors", file]);
        let text = stdout(&out);
        assert!(out.status.success(), "{file}: {text}");
        let last = text.lines().last().unwrap();
        assert!(last.ends_with(" passed, 0 failed"), "{file}: {last}");
    }
}

#[test]
fn verify_vectors_reports_a_tampered_case_and_exits_non_zero() {
    let json = std::fs::read_to_string(root().join("fixtures/vectors/envelope-v1.json")).unwrap();
    let mut vectors: serde_json::Value = serde_json::from_str(&json).unwrap();
    // Flip one hex digit of the first valid case's first sealed message.
    let sealed = vectors["valid"][0]["recipients"][0]["sealed"]
        .as_str()
        .unwrap()
        .to_owned();
    let flipped = if sealed.ends_with('0') { "1" } else { "0" };
    vectors["valid"][0]["recipients"][0]["sealed"] =
        serde_json::Value::String(format!("{}{flipped}", &sealed[..sealed.len() - 1]));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tampered.json");
    std::fs::write(&path, serde_json::to_string(&vectors).unwrap()).unwrap();

    let out = kontor(&["crypto", "verify-vectors", path.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAILED empty:"), "{text}");
    assert!(
        text.lines().last().unwrap().ends_with("passed, 1 failed"),
        "{text}"
    );
}

#[test]
fn verify_vectors_names_an_unreadable_or_foreign_file() {
    let out = kontor(&["crypto", "verify-vectors", "no/such/file.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot read vector file no/such/file.json")
    );
    let out = kontor(&["crypto", "verify-vectors", "Cargo.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a vector file"));
}

#[test]
fn demo_runs_the_product_and_shows_each_step() {
    let out = kontor(&["demo"]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Ben reads from anna@example.org: \"Treffen um 10 Uhr in Raum 2.14\""),
        "{text}"
    );
    assert!(
        text.contains("Anna reads from ben@example.org: \"Passt, bis gleich!\""),
        "{text}"
    );
    assert!(text.contains("Clara reads in group:"), "{text}");
    assert!(text.contains("intact: true"), "{text}");
    assert!(
        text.contains("forbidden by policy `allowed_attachments`"),
        "{text}"
    );
    assert!(
        text.contains("forbidden by policy `allow_copy_paste`"),
        "{text}"
    );
    assert!(
        text.contains("wipe confirmed by the device: true"),
        "{text}"
    );
    assert!(text.contains("plaintext not found"), "{text}");
    assert!(
        text.contains("Ben to Dora: server refused: forbidden"),
        "{text}"
    );
    assert!(text.contains("Anna reads from Administration:"), "{text}");
    assert!(
        text.contains("the admin API shows the wipe as \"confirmed\""),
        "{text}"
    );
    assert!(
        text.contains("kontor audit verify: audit trail intact"),
        "{text}"
    );
    assert!(
        text.contains("even the right PIN now: this device's Kontor data was wiped"),
        "{text}"
    );
    assert!(text.contains("Done in"), "{text}");
}

/// Runs the second implementation of protocol v1 (Python, on OpenSSL via
/// `cryptography`) over `files`; `None` where Python or the package is missing.
fn python_interop(files: &[&str]) -> Option<std::process::Output> {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import cryptography"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        println!("skipped: python3 with the cryptography package not found");
        return None;
    }
    Some(
        std::process::Command::new("python3")
            .arg("tests/interop/protocol_v1.py")
            .args(files)
            .current_dir(root())
            .output()
            .unwrap(),
    )
}

#[test]
fn a_second_implementation_on_openssl_agrees_with_every_vector() {
    let Some(out) = python_interop(&[
        "fixtures/vectors/envelope-v1.json",
        "fixtures/vectors/store-v1.json",
    ]) else {
        return;
    };
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.lines().last().unwrap().ends_with(" passed, 0 failed"),
        "{text}"
    );
    // And it can fail: one flipped digit in a sealed message.
    let json = std::fs::read_to_string(root().join("fixtures/vectors/envelope-v1.json")).unwrap();
    let mut vectors: serde_json::Value = serde_json::from_str(&json).unwrap();
    let sealed = vectors["valid"][1]["recipients"][0]["sealed"]
        .as_str()
        .unwrap()
        .to_owned();
    let flipped = if sealed.ends_with('0') { "1" } else { "0" };
    vectors["valid"][1]["recipients"][0]["sealed"] =
        serde_json::Value::String(format!("{}{flipped}", &sealed[..sealed.len() - 1]));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tampered.json");
    std::fs::write(&path, serde_json::to_string(&vectors).unwrap()).unwrap();
    let out = python_interop(&[path.to_str().unwrap()]).unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
}
