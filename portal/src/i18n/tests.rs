use std::collections::BTreeSet;

use super::*;

fn keys(dict: &'static [(&'static str, &'static str)]) -> Vec<&'static str> {
    dict.iter().map(|(k, _)| *k).collect()
}

#[test]
fn english_and_german_have_the_same_keys_in_the_same_order_and_no_empty_text() {
    assert_eq!(keys(EN), keys(DE));
    let unique: BTreeSet<&str> = keys(EN).into_iter().collect();
    assert_eq!(unique.len(), EN.len(), "a key is defined twice");
    for (key, text) in EN.iter().chain(DE) {
        assert!(!text.trim().is_empty(), "{key} has no text");
    }
}

/// Every `t("…")` key the pages use, read from their source.
#[test]
fn every_key_the_pages_use_is_in_the_dictionaries() {
    let sources = [
        include_str!("../view.rs"),
        include_str!("../session.rs"),
        include_str!("../pages/users.rs"),
        include_str!("../pages/org.rs"),
        include_str!("../pages/records.rs"),
        include_str!("../pages/settings.rs"),
    ];
    let mut used = BTreeSet::new();
    for source in sources {
        for (i, _) in source.match_indices('"') {
            let rest = &source[i + 1..];
            let Some(end) = rest.find('"') else { continue };
            let word = &rest[..end];
            let prefixes = [
                "frame.",
                "menu.",
                "role.",
                "state.",
                "error.",
                "signin.",
                "users.",
                "bulk.",
                "user.",
                "wipe.",
                "wipes.",
                "invite.",
                "import.",
                "departments.",
                "restrictions.",
                "attachment.",
                "allow.",
                "broadcast.",
                "audit.",
                "archives.",
                "keys.",
                "settings.",
            ];
            if prefixes.iter().any(|p| word.starts_with(p))
                && word
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_')
            {
                used.insert(word.to_owned());
            }
        }
    }
    assert!(
        used.len() > 100,
        "the scan found too few keys: {}",
        used.len()
    );
    let missing: Vec<&String> = used.iter().filter(|k| !has_key(k)).collect();
    assert!(missing.is_empty(), "not in the dictionaries: {missing:?}");
}

#[test]
fn every_notice_a_page_redirects_with_is_in_the_dictionaries() {
    for notice in [
        "blocked",
        "unblocked",
        "wipe",
        "department",
        "department_deleted",
        "matrix",
        "restrictions",
        "allow_added",
        "allow_removed",
        "broadcast",
        "archive",
        "key_revoked",
        "archive_key",
    ] {
        assert!(has_key(&format!("done.{notice}")), "{notice}");
    }
}

#[test]
fn german_texts_differ_from_english_where_they_should() {
    assert_eq!(t(Lang::En, "signin.title"), "Sign in");
    assert_eq!(t(Lang::De, "signin.title"), "Anmelden");
    assert_eq!(t(Lang::De, "menu.users"), "Benutzer");
    // The switcher names the other language in that language.
    assert_eq!(t(Lang::En, "frame.switch_language"), "Deutsch");
    assert_eq!(t(Lang::De, "frame.switch_language"), "English");
}

fn check(accept: &str, expected: Lang) {
    assert_eq!(accept_language(accept), expected, "{accept:?}");
}

#[test]
fn accept_language_picks_the_preferred_of_english_and_german() {
    check("", Lang::En);
    check("de-DE,de;q=0.9,en;q=0.8", Lang::De);
    check("en-US,en;q=0.9,de;q=0.8", Lang::En);
    check("fr-FR,fr;q=0.9,de;q=0.5", Lang::De);
    check("fr", Lang::En);
    check("en;q=0.2, de;q=0.7", Lang::De);
    check("de;q=0", Lang::En);
    check("DE-at", Lang::De);
}
