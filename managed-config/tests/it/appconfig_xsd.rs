//! The AppConfig specfile validated by xmllint against the community XSD.

use std::process::Command;

use kontor_managed_config::{BundleId, appconfig};

use crate::schema;

/// Runs `xmllint --noout --schema XSD` on `xml`; `None` when xmllint is not
/// installed outside CI (CI installs it, see .ci/run).
fn xmllint(xml: &str, name: &str) -> Option<(bool, String)> {
    let xsd = schema("appconfig/appconfig.xsd")?;
    let path = std::env::temp_dir().join(format!("kontor-{}-{name}.xml", std::process::id()));
    std::fs::write(&path, xml).expect("write temp file");
    let output = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&xsd)
        .arg(&path)
        .output();
    let _ = std::fs::remove_file(&path);
    match output {
        Ok(out) => Some((
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )),
        Err(e) if std::env::var_os("CI").is_none() => {
            println!("skipped: xmllint not runnable ({e}); install libxml2-utils");
            None
        }
        Err(e) => panic!("xmllint is required in CI: {e}"),
    }
}

#[test]
fn specfile_is_valid_against_the_xsd() {
    let xml = appconfig::specfile(&BundleId::default()).unwrap();
    if let Some((ok, log)) = xmllint(&xml, "specfile") {
        assert!(ok, "xmllint rejects the specfile:\n{log}");
    }
}

#[test]
fn specfile_with_another_bundle_id_is_valid() {
    let xml = appconfig::specfile(&BundleId::parse("de.example.kontor2").unwrap()).unwrap();
    if let Some((ok, log)) = xmllint(&xml, "specfile-other") {
        assert!(ok, "xmllint rejects the specfile:\n{log}");
    }
}

/// The check itself must be able to fail: a specfile with a key type the
/// XSD does not know is rejected.
#[test]
fn xmllint_rejects_a_broken_specfile() {
    let xml = appconfig::specfile(&BundleId::default())
        .unwrap()
        .replacen("<boolean keyName", "<bool keyName", 1)
        .replacen("</boolean>", "</bool>", 1);
    if let Some((ok, _)) = xmllint(&xml, "broken") {
        assert!(!ok, "xmllint accepted an invalid specfile");
    }
}
