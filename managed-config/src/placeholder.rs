//! Finds EMM variable placeholders that the EMM left unsubstituted.
//!
//! When an EMM cannot resolve a variable (the user has no e-mail in its
//! directory, the admin used another EMM's syntax) it delivers the placeholder
//! text itself. Taking `{{mail}}` as the user's identity would enroll a device
//! for a user called `{{mail}}`, so the decoders report such values instead.
//!
//! Recognised forms, `NAME` being a letter followed by letters, digits, `_`
//! or `.`:
//!
//! | form | used by |
//! |---|---|
//! | `{{NAME}}` (spaces allowed inside) | Microsoft Intune |
//! | `{NAME}` | Workspace ONE |
//! | `$NAME$` | Ivanti / MobileIron |
//! | `${NAME}` | generic templates |
//! | `$NAME` (upper case) | Jamf Pro |
//! | `%NAME%` | SOTI, ManageEngine, Citrix |

/// The first placeholder in `text`, if any.
pub fn find(text: &str) -> Option<&str> {
    let bytes = text.as_bytes();
    for start in 0..bytes.len() {
        // Only ASCII marks start a placeholder, so `start` is a char boundary
        // whenever `text` is sliced there.
        let found = match bytes[start] {
            b'{' => braces(&text[start..]),
            b'$' => dollar(&text[start..]),
            b'%' => delimited(&text[start..], b'%'),
            _ => None,
        };
        if let Some(len) = found {
            return Some(&text[start..start + len]);
        }
    }
    None
}

/// Length of the name at the start of `s` (a letter, then letters, digits,
/// `_` or `.`), zero if there is none.
fn name_len(s: &[u8]) -> usize {
    match s.first() {
        Some(c) if c.is_ascii_alphabetic() => {
            1 + s[1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_' || **c == b'.')
                .count()
        }
        _ => 0,
    }
}

fn braces(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.starts_with(b"{{") {
        let inner = &b[2..];
        let lead = inner.iter().take_while(|c| **c == b' ').count();
        let n = name_len(&inner[lead..]);
        if n == 0 {
            return None;
        }
        let after = &inner[lead + n..];
        let trail = after.iter().take_while(|c| **c == b' ').count();
        return after[trail..]
            .starts_with(b"}}")
            .then_some(2 + lead + n + trail + 2);
    }
    let n = name_len(&b[1..]);
    (n > 0 && b.get(1 + n) == Some(&b'}')).then_some(n + 2)
}

fn dollar(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.get(1) == Some(&b'{') {
        let n = name_len(&b[2..]);
        return (n > 0 && b.get(2 + n) == Some(&b'}')).then_some(n + 3);
    }
    if let Some(len) = delimited(s, b'$') {
        return Some(len);
    }
    // Jamf's `$EMAIL`: upper case only, so prices like `$5` or words like
    // `$ave` are not mistaken for variables.
    let n = b[1..]
        .iter()
        .take_while(|c| c.is_ascii_uppercase() || **c == b'_')
        .count();
    let next = b.get(1 + n);
    (n >= 2 && !next.is_some_and(|c| c.is_ascii_alphanumeric())).then_some(n + 1)
}

fn delimited(s: &str, mark: u8) -> Option<usize> {
    let b = s.as_bytes();
    let n = name_len(&b[1..]);
    (n > 0 && b.get(1 + n) == Some(&mark)).then_some(n + 2)
}
