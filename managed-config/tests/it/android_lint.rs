//! Android lint's `ValidRestrictions` rules, re-implemented over quick-xml and
//! run on the generated `app_restrictions.xml`, plus a check that every
//! resource it references exists in both languages. The rules follow lint's
//! RestrictionsDetector: required attributes, literal keys, unique keys,
//! entries and entryValues on choice and multi-select, a default on hidden,
//! numeric integer defaults, no default on bundle and bundle_array, at least
//! one child in a bundle and exactly one bundle in a bundle_array, at most 20
//! levels and 1000 restrictions.

use std::collections::{BTreeMap, BTreeSet};

use kontor_managed_config::android;
use kontor_managed_config::model::Lang;
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

const MAX_NESTING_DEPTH: usize = 20;
const MAX_RESTRICTIONS: usize = 1000;

#[derive(Debug, Default)]
struct Element {
    name: String,
    attrs: BTreeMap<String, String>,
    text: String,
    children: Vec<Element>,
}

fn element(tag: &BytesStart) -> Element {
    let attrs = tag
        .attributes()
        .map(|a| {
            let a = a.expect("well-formed attribute");
            let value = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .expect("attribute value");
            (a.key.as_ref().to_owned(), value.into_owned())
        })
        .collect();
    Element {
        name: tag.name().as_ref().to_owned(),
        attrs,
        ..Default::default()
    }
}

/// Parses `xml` into its root element.
fn parse(xml: &str) -> Element {
    let mut reader = Reader::from_str(xml);
    let mut stack = vec![Element::default()];
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(tag) => stack.push(element(&tag)),
            Event::Empty(tag) => stack
                .last_mut()
                .expect("open element")
                .children
                .push(element(&tag)),
            Event::End(_) => {
                let done = stack.pop().expect("open element");
                stack.last_mut().expect("parent").children.push(done);
            }
            Event::Text(t) => {
                let text = t.xml_content(quick_xml::XmlVersion::Implicit1_0);
                stack.last_mut().expect("open element").text.push_str(&text);
            }
            Event::GeneralRef(r) => {
                let name = r.to_string();
                let c = match name.as_str() {
                    "lt" => '<',
                    "gt" => '>',
                    "amp" => '&',
                    "apos" => '\'',
                    "quot" => '"',
                    other => panic!("unexpected entity {other}"),
                };
                stack.last_mut().expect("open element").text.push(c);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let mut document = stack.pop().expect("document");
    assert_eq!(document.children.len(), 1, "one root element");
    document.children.remove(0)
}

/// Every lint error in `xml`, as lint words it.
fn lint(xml: &str) -> Vec<String> {
    let root = parse(xml);
    let mut errors = Vec::new();
    if root.name != "restrictions" {
        errors.push(format!(
            "root element is <{}>, expected <restrictions>",
            root.name
        ));
    }
    let mut keys = BTreeSet::new();
    let mut count = 0;
    for child in &root.children {
        lint_restriction(child, 1, &mut keys, &mut count, &mut errors);
    }
    if count > MAX_RESTRICTIONS {
        errors.push(format!(
            "Invalid nested restriction: too many nested restrictions (was {count}, max {MAX_RESTRICTIONS})"
        ));
    }
    errors
}

fn lint_restriction(
    e: &Element,
    depth: usize,
    keys: &mut BTreeSet<String>,
    count: &mut usize,
    errors: &mut Vec<String>,
) {
    if e.name != "restriction" {
        errors.push(format!(
            "Unexpected tag <{}>, expected <restriction>",
            e.name
        ));
        return;
    }
    *count += 1;
    if depth > MAX_NESTING_DEPTH {
        errors.push(format!(
            "Invalid nested restriction: nesting depth {depth} too large (max {MAX_NESTING_DEPTH})"
        ));
        return;
    }
    let attr = |name: &str| e.attrs.get(&format!("android:{name}"));
    for required in ["key", "restrictionType", "title"] {
        if attr(required).is_none() {
            errors.push(format!("Missing required attribute android:{required}"));
        }
    }
    if let Some(key) = attr("key") {
        if key.starts_with('@') {
            errors.push(
                "Keys cannot be localized, they should be specified with a string literal".into(),
            );
        } else if !keys.insert(key.clone()) {
            errors.push(format!("Duplicate key {key}"));
        }
    }
    let kind = attr("restrictionType")
        .map(String::as_str)
        .unwrap_or_default();
    match kind {
        "choice" | "multi-select" => {
            for required in ["entries", "entryValues"] {
                if attr(required).is_none() {
                    errors.push(format!("Missing required attribute android:{required}"));
                }
            }
        }
        "hidden" if attr("defaultValue").is_none() => {
            errors.push("Missing required attribute android:defaultValue".into());
        }
        "integer" => {
            if let Some(d) = attr("defaultValue")
                && !d.starts_with("@integer/")
                && d.parse::<i32>().is_err()
            {
                errors.push("Invalid number".into());
            }
        }
        "bool" => {
            if let Some(d) = attr("defaultValue")
                && !d.starts_with("@bool/")
                && d != "true"
                && d != "false"
            {
                errors.push("Invalid boolean".into());
            }
        }
        "bundle" | "bundle_array" => {
            if attr("defaultValue").is_some() {
                errors.push(format!(
                    "Restriction type {kind} should not have a default value"
                ));
            }
        }
        "string" | "hidden" => {}
        other => errors.push(format!("Unknown restrictionType {other}")),
    }
    match kind {
        "bundle" if e.children.is_empty() => {
            errors
                .push("Restriction type bundle should have at least one nested restriction".into());
        }
        "bundle_array"
            if e.children.len() != 1
                || e.children[0]
                    .attrs
                    .get("android:restrictionType")
                    .map(String::as_str)
                    != Some("bundle") =>
        {
            errors.push("Expected exactly one child for restriction of type bundle_array".into());
        }
        "bundle" | "bundle_array" => {}
        _ if !e.children.is_empty() => {
            errors.push(format!(
                "Only bundle and bundle_array restrictions may nest, not {kind}"
            ));
        }
        _ => {}
    }
    for child in &e.children {
        lint_restriction(child, depth + 1, keys, count, errors);
    }
}

/// `@string/x` and `@array/x` names defined in a strings resource file, with
/// the number of items of each array.
fn resources(xml: &str) -> BTreeMap<String, usize> {
    let root = parse(xml);
    assert_eq!(root.name, "resources");
    root.children
        .iter()
        .map(|r| {
            let kind = if r.name == "string-array" {
                "array"
            } else {
                r.name.as_str()
            };
            (format!("@{kind}/{}", r.attrs["name"]), r.children.len())
        })
        .collect()
}

#[test]
fn generated_restrictions_pass_lint() {
    let xml = android::restrictions_xml().unwrap();
    assert_eq!(lint(&xml), Vec::<String>::new());
}

#[test]
fn generated_resources_define_every_reference_in_both_languages() {
    let en = resources(&android::strings_xml(Lang::En).unwrap());
    let de = resources(&android::strings_xml(Lang::De).unwrap());
    let root = parse(&android::restrictions_xml().unwrap());
    for r in &root.children {
        for (name, value) in &r.attrs {
            if !value.starts_with('@') || name == "xmlns:android" {
                continue;
            }
            assert!(
                en.contains_key(value),
                "{value} is not defined in values/strings.xml"
            );
            let untranslatable = name == "android:entryValues" || name == "android:defaultValue";
            assert!(
                untranslatable || de.contains_key(value),
                "{value} has no German translation"
            );
        }
        if let (Some(entries), Some(values)) = (
            r.attrs.get("android:entries"),
            r.attrs.get("android:entryValues"),
        ) {
            assert_eq!(
                en[entries], en[values],
                "{entries} and {values} differ in length"
            );
            assert_eq!(
                de[entries], en[values],
                "German {entries} differs in length"
            );
        }
    }
    // German never redefines the untranslatable arrays.
    assert!(
        de.keys()
            .all(|k| !k.ends_with("_entry_values") && !k.ends_with("_default"))
    );
}

/// Android resources need `'` escaped; the German and English texts are
/// full of them.
#[test]
fn apostrophes_are_escaped_in_resources() {
    for lang in Lang::ALL {
        let root = parse(&android::strings_xml(lang).unwrap());
        for s in root.children.iter().filter(|s| s.name == "string") {
            let unescaped = s
                .text
                .char_indices()
                .any(|(i, c)| c == '\'' && (i == 0 || s.text.as_bytes()[i - 1] != b'\\'));
            assert!(
                !unescaped,
                "unescaped apostrophe in {}: {}",
                s.attrs["name"], s.text
            );
        }
    }
}

const NS: &str = r#"xmlns:android="http://schemas.android.com/apk/res/android""#;

fn restriction(key: &str, kind: &str, extra: &str, children: &str) -> String {
    format!(
        r#"<restriction android:key="{key}" android:title="@string/t" android:restrictionType="{kind}" {extra}>{children}</restriction>"#
    )
}

/// Data-driven: each broken descriptor and the lint error it must give.
fn check(body: &str, expected: &[&str]) {
    let xml = format!("<restrictions {NS}>{body}</restrictions>");
    assert_eq!(lint(&xml), expected, "for {body}");
}

#[test]
fn lint_rules_catch_broken_descriptors() {
    check(
        &restriction("a", "bool", r#"android:defaultValue="true""#, ""),
        &[],
    );
    check(
        &restriction("a", "choice", "", ""),
        &[
            "Missing required attribute android:entries",
            "Missing required attribute android:entryValues",
        ],
    );
    check(
        &restriction("a", "multi-select", r#"android:entries="@array/e""#, ""),
        &["Missing required attribute android:entryValues"],
    );
    check(
        &restriction("a", "hidden", "", ""),
        &["Missing required attribute android:defaultValue"],
    );
    check(
        &restriction("a", "integer", r#"android:defaultValue="abc""#, ""),
        &["Invalid number"],
    );
    check(
        &format!(
            "{}{}",
            restriction("a", "bool", "", ""),
            restriction("a", "string", "", "")
        ),
        &["Duplicate key a"],
    );
    check(
        &restriction("@string/k", "bool", "", ""),
        &["Keys cannot be localized, they should be specified with a string literal"],
    );
    check(
        &restriction(
            "a",
            "bundle",
            r#"android:defaultValue="x""#,
            &restriction("b", "bool", "", ""),
        ),
        &["Restriction type bundle should not have a default value"],
    );
    check(
        &restriction("a", "bundle", "", ""),
        &["Restriction type bundle should have at least one nested restriction"],
    );
    check(
        &restriction("a", "bundle_array", "", &restriction("b", "string", "", "")),
        &["Expected exactly one child for restriction of type bundle_array"],
    );
    check(
        &restriction(
            "a",
            "bundle_array",
            "",
            &restriction("b", "bundle", "", &restriction("c", "bool", "", "")),
        ),
        &[],
    );
    check(
        "<wrongtag/>",
        &["Unexpected tag <wrongtag>, expected <restriction>"],
    );
    check(
        "<restriction/>",
        &[
            "Missing required attribute android:key",
            "Missing required attribute android:restrictionType",
            "Missing required attribute android:title",
            "Unknown restrictionType ",
        ],
    );
}

#[test]
fn lint_rules_enforce_nesting_limits() {
    let mut body = restriction("leaf", "string", "", "");
    for level in (0..MAX_NESTING_DEPTH).rev() {
        body = restriction(&format!("b{level}"), "bundle", "", &body);
    }
    check(
        &body,
        &["Invalid nested restriction: nesting depth 21 too large (max 20)"],
    );

    let many: String = (0..=MAX_RESTRICTIONS)
        .map(|i| restriction(&format!("k{i}"), "bool", "", ""))
        .collect();
    check(
        &many,
        &["Invalid nested restriction: too many nested restrictions (was 1001, max 1000)"],
    );
}
