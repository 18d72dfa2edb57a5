use proptest::prelude::*;
use serde_json::json;

use super::*;

const T0: i64 = 1_700_000_000_000;

fn new_entry(i: u64) -> NewEntry {
    NewEntry {
        org: "acme".to_owned(),
        actor: if i.is_multiple_of(2) { "alice" } else { "bob" }.to_owned(),
        action: if i.is_multiple_of(3) {
            "device.wipe"
        } else {
            "user.create"
        }
        .to_owned(),
        target: format!("target-{}", i % 5),
        outcome: Outcome::Done,
        detail: json!({ "n": i }),
    }
}

/// A trail of `n` entries, entry `i` written at `T0 + 1000 * i`.
fn log_of(n: u64) -> AuditLog {
    let log = AuditLog::open_in_memory().unwrap();
    for i in 1..=n {
        let entry = log
            .append(new_entry(i), T0 + 1000 * i64::try_from(i).unwrap())
            .unwrap();
        assert_eq!(entry.seq, i);
    }
    log
}

fn chain_of(n: u64) -> Vec<Entry> {
    let mut head = Head::GENESIS;
    (1..=n)
        .map(|i| {
            let entry = Entry::after(&head, new_entry(i), T0 + i64::try_from(i).unwrap());
            head = Head::of(&entry);
            entry
        })
        .collect()
}

fn sql(log: &AuditLog, sql: &str) -> rusqlite::Result<()> {
    log.lock().execute_batch(sql)
}

const DROP_TRIGGERS: &str = "
    DROP TRIGGER admin_audit_no_update;
    DROP TRIGGER admin_audit_no_delete;
    DROP TRIGGER admin_audit_at_end;
    DROP TRIGGER admin_audit_head_no_delete;
    DROP TRIGGER admin_audit_head_forward;
";

/// Tampers with a trail of 50 by raw SQL, triggers dropped as an attacker
/// would, and checks what verification says.
fn check_tamper(tamper: &str, expected: &str) {
    let log = log_of(50);
    sql(&log, DROP_TRIGGERS).unwrap();
    sql(&log, tamper).unwrap();
    let report = log.verify().unwrap();
    assert_eq!(
        report.problem.map(|p| p.to_string()).as_deref(),
        Some(expected),
        "after {tamper}"
    );
}

#[test]
fn a_chain_of_50_verifies() {
    let log = log_of(50);
    let report = log.verify().unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.entries, 50);
    assert_eq!(report.last, log.head().unwrap());
    assert_eq!(report.last.seq, 50);
    assert_eq!(
        report.to_string(),
        format!(
            "audit trail intact: 50 entries, head {}",
            hex::encode(report.last.hash)
        )
    );

    let all = log
        .query(&Filter {
            limit: 100,
            ..Filter::default()
        })
        .unwrap();
    assert_eq!(all.len(), 50);
    assert_eq!(all[0].prev_hash, GENESIS_HASH);
    assert_eq!(verify_chain(all.into_iter(), Some(report.last)), report);
}

#[test]
fn an_empty_trail_verifies() {
    let log = AuditLog::open_in_memory().unwrap();
    let report = log.verify().unwrap();
    assert!(report.is_intact());
    assert_eq!(report.entries, 0);
    assert_eq!(log.head().unwrap(), Head::GENESIS);
}

#[test]
fn entry_hash_covers_the_documented_bytes() {
    let detail = json!({ "b": [1, "ü"], "a": null });
    let mut input = b"kontor-audit-v1\0".to_vec();
    input.extend([7u8; 32]);
    input.extend(42u64.to_be_bytes());
    input.extend((-5i64).to_be_bytes());
    for field in [
        "org",
        "al",
        "user.create",
        "",
        "refused",
        r#"{"a":null,"b":[1,"ü"]}"#,
    ] {
        input.extend(u32::try_from(field.len()).unwrap().to_be_bytes());
        input.extend(field.as_bytes());
    }
    let expected: [u8; 32] = Sha256::digest(&input).into();
    assert_eq!(
        entry_hash(
            &[7; 32],
            42,
            -5,
            "org",
            "al",
            "user.create",
            "",
            Outcome::Refused,
            &detail
        ),
        expected
    );
}

#[test]
fn entry_hash_keeps_fields_apart() {
    let detail = json!({});
    let hash = |actor: &str, action: &str| {
        entry_hash(
            &GENESIS_HASH,
            1,
            0,
            "",
            actor,
            action,
            "t",
            Outcome::Done,
            &detail,
        )
    };
    assert_ne!(hash("ab", "c"), hash("a", "bc"));
}

/// Entry 17's detail loses one byte's worth of meaning.
#[test]
fn edited_detail_is_detected() {
    check_tamper(
        r#"UPDATE admin_audit SET detail = '{"n":18}' WHERE seq = 17"#,
        "entry 17: hash does not match its content (edited)",
    );
}

#[test]
fn edited_actor_is_detected() {
    check_tamper(
        "UPDATE admin_audit SET actor = 'alicf' WHERE seq = 24",
        "entry 24: hash does not match its content (edited)",
    );
}

#[test]
fn edited_time_is_detected() {
    check_tamper(
        "UPDATE admin_audit SET at_ms = at_ms + 1 WHERE seq = 3",
        "entry 3: hash does not match its content (edited)",
    );
}

#[test]
fn unreadable_values_are_detected() {
    check_tamper(
        "UPDATE admin_audit SET detail = '{' WHERE seq = 9",
        "entry 9: stored detail is malformed (edited)",
    );
    check_tamper(
        "UPDATE admin_audit SET outcome = 'forgiven' WHERE seq = 9",
        "entry 9: stored outcome is malformed (edited)",
    );
    check_tamper(
        "UPDATE admin_audit SET hash = substr(hash, 1, 31) WHERE seq = 9",
        "entry 9: stored hash is malformed (edited)",
    );
    check_tamper(
        "UPDATE admin_audit SET actor = x'616c696365' WHERE seq = 9",
        "entry 9: stored actor is malformed (edited)",
    );
}

#[test]
fn deleted_middle_entry_is_detected() {
    check_tamper(
        "DELETE FROM admin_audit WHERE seq = 18",
        "entry 18 expected, found 19 (entries deleted or reordered)",
    );
}

#[test]
fn deleted_first_entry_is_detected() {
    check_tamper(
        "DELETE FROM admin_audit WHERE seq = 1",
        "entry 1 expected, found 2 (entries deleted or reordered)",
    );
}

#[test]
fn deleted_last_entry_is_detected_by_the_head() {
    check_tamper(
        "DELETE FROM admin_audit WHERE seq = 50",
        "the trail ends at entry 49 but its head says 50 (entries deleted at the end)",
    );
}

#[test]
fn deleted_last_entry_and_head_moved_back_is_detected() {
    check_tamper(
        "DELETE FROM admin_audit WHERE seq = 50;
         UPDATE admin_audit_head SET seq = 49",
        "entry 49: hash differs from the head's (last entry or head rewritten)",
    );
}

#[test]
fn deleted_head_is_detected() {
    check_tamper(
        "DELETE FROM admin_audit_head",
        "the trail goes on to entry 50 but its head says 0 (head rewritten or deleted)",
    );
    check_tamper(
        "DROP TABLE admin_audit_head",
        "the trail goes on to entry 50 but its head says 0 (head rewritten or deleted)",
    );
}

#[test]
fn swapped_entries_are_detected() {
    // Swap the positions of entries 10 and 11.
    check_tamper(
        "UPDATE admin_audit SET seq = -10 WHERE seq = 10;
         UPDATE admin_audit SET seq = 10 WHERE seq = 11;
         UPDATE admin_audit SET seq = 11 WHERE seq = -10",
        "entry 10: hash does not match its content (edited)",
    );
    // Swap their contents, numbers staying in place.
    check_tamper(
        "CREATE TEMP TABLE t AS SELECT * FROM admin_audit WHERE seq IN (10, 11);
         UPDATE admin_audit SET (at_ms, org, actor, action, target, outcome, detail, prev_hash, hash)
           = (SELECT at_ms, org, actor, action, target, outcome, detail, prev_hash, hash
              FROM t WHERE t.seq = 21 - admin_audit.seq)
         WHERE seq IN (10, 11)",
        "entry 10: hash does not match its content (edited)",
    );
}

/// An attacker who recomputes the edited entry's own hash breaks the link
/// to the next entry.
#[test]
fn rehashed_entry_breaks_the_next_link() {
    let log = log_of(50);
    let mut entry = log
        .query(&Filter {
            after_seq: Some(29),
            limit: 1,
            ..Filter::default()
        })
        .unwrap()
        .remove(0);
    entry.actor = "mallory".to_owned();
    let hash = entry.computed_hash();
    sql(&log, DROP_TRIGGERS).unwrap();
    log.lock()
        .execute(
            "UPDATE admin_audit SET actor = 'mallory', hash = ?1 WHERE seq = 30",
            [&hash[..]],
        )
        .unwrap();
    let report = log.verify().unwrap();
    assert_eq!(
        report.problem.unwrap().to_string(),
        "entry 31: previous-hash link broken (entry 30 or 31 rewritten)"
    );
    assert_eq!(report.entries, 30);
}

/// Rewriting every entry from the first change on, and the head with
/// them, goes unnoticed: the limit the module documentation states.
#[test]
fn full_rechain_with_head_is_the_documented_limit() {
    let log = log_of(10);
    let mut entries = log.query(&Filter::default()).unwrap();
    entries[4].actor = "mallory".to_owned();
    let mut head = Head::of(&entries[3]);
    sql(&log, DROP_TRIGGERS).unwrap();
    for entry in &mut entries[4..] {
        entry.prev_hash = head.hash;
        entry.hash = entry.computed_hash();
        head = Head::of(entry);
        log.lock()
            .execute(
                "UPDATE admin_audit SET actor = ?1, prev_hash = ?2, hash = ?3 WHERE seq = ?4",
                rusqlite::params![
                    entry.actor,
                    &entry.prev_hash[..],
                    &entry.hash[..],
                    i64::try_from(entry.seq).unwrap()
                ],
            )
            .unwrap();
    }
    // Without the head the rewrite still shows.
    assert_eq!(
        log.verify().unwrap().problem,
        Some(Problem::HeadMismatch { seq: 10 })
    );
    log.lock()
        .execute("UPDATE admin_audit_head SET hash = ?1", [&head.hash[..]])
        .unwrap();
    assert!(log.verify().unwrap().is_intact());
}

#[test]
fn triggers_refuse_update_and_delete() {
    let log = log_of(3);
    for statement in [
        "UPDATE admin_audit SET actor = 'mallory' WHERE seq = 2",
        "DELETE FROM admin_audit WHERE seq = 3",
        "DELETE FROM admin_audit",
        "INSERT INTO admin_audit SELECT 7, at_ms, org, actor, action, target, outcome, detail, \
         prev_hash, hash FROM admin_audit WHERE seq = 3",
    ] {
        let err = sql(&log, statement).unwrap_err().to_string();
        assert!(
            err.contains("the audit trail is append-only"),
            "{statement}: {err}"
        );
    }
    let err = sql(&log, "DELETE FROM admin_audit_head").unwrap_err();
    assert!(err.to_string().contains("cannot be deleted"), "{err}");
    let err = sql(&log, "UPDATE admin_audit_head SET seq = 2").unwrap_err();
    assert!(err.to_string().contains("one entry at a time"), "{err}");
    assert!(log.verify().unwrap().is_intact());
    assert_eq!(log.head().unwrap().seq, 3);
}

/// Checks one filter against a trail of 30 entries, both in SQL and with
/// `Filter::matches`.
fn check_filter(filter: Filter, expected: &[u64]) {
    let log = log_of(30);
    let found: Vec<u64> = log.query(&filter).unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(found, expected, "{filter:?}");
    let all = log.query(&Filter::default()).unwrap();
    let matched: Vec<u64> = all
        .iter()
        .filter(|e| filter.matches(e))
        .map(|e| e.seq)
        .take(filter.limit)
        .collect();
    assert_eq!(matched, expected, "matches() for {filter:?}");
}

fn at(i: i64) -> i64 {
    T0 + 1000 * i
}

#[test]
fn filters_select_exactly() {
    let some = |s: &str| Some(s.to_owned());
    check_filter(
        Filter {
            actor: some("alice"),
            limit: 5,
            ..Filter::default()
        },
        &[2, 4, 6, 8, 10],
    );
    check_filter(
        Filter {
            action: some("device.wipe"),
            actor: some("bob"),
            ..Filter::default()
        },
        &[3, 9, 15, 21, 27],
    );
    check_filter(
        Filter {
            target: some("target-0"),
            ..Filter::default()
        },
        &[5, 10, 15, 20, 25, 30],
    );
    check_filter(
        Filter {
            target: some("target"),
            ..Filter::default()
        },
        &[],
    );
    check_filter(
        Filter {
            org: some("other"),
            ..Filter::default()
        },
        &[],
    );
    // Half-open: since is in, until is out.
    check_filter(
        Filter {
            since_ms: Some(at(4)),
            until_ms: Some(at(7)),
            ..Filter::default()
        },
        &[4, 5, 6],
    );
    check_filter(
        Filter {
            since_ms: Some(at(7)),
            until_ms: Some(at(7)),
            ..Filter::default()
        },
        &[],
    );
    check_filter(
        Filter {
            since_ms: Some(at(29) + 1),
            ..Filter::default()
        },
        &[30],
    );
    check_filter(
        Filter {
            after_seq: Some(27),
            ..Filter::default()
        },
        &[28, 29, 30],
    );
    check_filter(
        Filter {
            after_seq: Some(u64::MAX),
            ..Filter::default()
        },
        &[],
    );
}

#[test]
fn invalid_filters_are_rejected() {
    let check = |filter: Filter, expected: &str| {
        let err = filter.validate().unwrap_err().to_string();
        assert_eq!(err, format!("invalid audit filter: {expected}"));
        let log = AuditLog::open_in_memory().unwrap();
        assert!(matches!(log.query(&filter), Err(Error::InvalidFilter(_))));
    };
    check(
        Filter {
            limit: 0,
            ..Filter::default()
        },
        "limit must be at least 1",
    );
    check(
        Filter {
            limit: QUERY_LIMIT_MAX + 1,
            ..Filter::default()
        },
        "limit 10001 is above the maximum of 10000",
    );
    check(
        Filter {
            since_ms: Some(2),
            until_ms: Some(1),
            ..Filter::default()
        },
        "since (2) is after until (1)",
    );
    check(
        Filter {
            actor: Some(String::new()),
            ..Filter::default()
        },
        "actor is empty",
    );
    check(
        Filter {
            target: Some("x".repeat(FIELD_CHARS_MAX + 1)),
            ..Filter::default()
        },
        "target is longer than 512 characters",
    );
    assert!(
        Filter {
            limit: QUERY_LIMIT_MAX,
            ..Filter::default()
        }
        .validate()
        .is_ok()
    );
}

#[test]
fn bad_new_entries_are_rejected_and_nothing_written() {
    let log = log_of(2);
    let head = log.head().unwrap();
    let check = |change: &dyn Fn(&mut NewEntry), expected: &str| {
        let mut new = new_entry(3);
        change(&mut new);
        let err = log.append(new, T0).unwrap_err().to_string();
        assert_eq!(err, format!("invalid audit entry: {expected}"));
        assert_eq!(log.head().unwrap(), head);
        assert_eq!(log.query(&Filter::default()).unwrap().len(), 2);
    };
    check(&|n| n.actor.clear(), "actor is empty");
    check(&|n| n.target.clear(), "target is empty");
    check(&|n| n.action.clear(), "action is empty");
    check(
        &|n| n.actor = "a".repeat(513),
        "actor is 513 characters, above the limit of 512",
    );
    check(
        &|n| n.org = "ü".repeat(513),
        "org is 513 characters, above the limit of 512",
    );
    check(
        &|n| n.target = "a\nb".to_owned(),
        "target contains a control character",
    );
    check(
        &|n| n.org = "a\u{7f}".to_owned(),
        "org contains a control character",
    );
    for action in [
        "User.create",
        "1user",
        "user create",
        "user-create",
        "_x",
        "ä",
    ] {
        check(
            &|n| n.action = action.to_owned(),
            &format!(
                "action {action:?} must be lowercase letters, digits, '_' and '.', starting with a letter"
            ),
        );
    }
    check(
        &|n| n.detail = json!("x".repeat(DETAIL_BYTES_MAX)),
        "detail is 16386 bytes of JSON, above the limit of 16384",
    );
    // At the limits, accepted.
    let mut new = new_entry(3);
    new.actor = "a".repeat(FIELD_CHARS_MAX);
    new.org = String::new();
    new.action = "a0_.z".to_owned();
    new.detail = json!("x".repeat(DETAIL_BYTES_MAX - 2));
    assert_eq!(log.append(new, T0).unwrap().seq, 3);
    assert!(log.verify().unwrap().is_intact());
}

#[test]
fn syslog_line_has_the_rfc5424_shape() {
    let mut entry = chain_of(7).remove(6);
    entry.at_ms = 1_717_245_296_007; // 2024-06-01T12:34:56.007Z
    entry.org = r#"a"b]c\d"#.to_owned();
    entry.actor = "alice".to_owned();
    entry.action = "user.create".to_owned();
    entry.target = "bob@example.org".to_owned();
    entry.detail = json!({ "name": "Jürgen" });
    let hash = hex::encode(entry.hash);
    assert_eq!(
        syslog_line(&entry, "kontor-1.example.org"),
        format!(
            r#"<85>1 2024-06-01T12:34:56.007Z kontor-1.example.org kontor - user.create [kontor@32473 seq="7" org="a\"b\]c\\d" actor="alice" target="bob@example.org" outcome="done" hash="{hash}"] {{"name":"J\u00fcrgen"}}"#
        )
    );

    // Warnings for refused and failed; notice for requested.
    for (outcome, pri) in [
        (Outcome::Requested, "<85>1 "),
        (Outcome::Refused, "<84>1 "),
        (Outcome::Failed, "<84>1 "),
    ] {
        entry.outcome = outcome;
        assert!(syslog_line(&entry, "h").starts_with(pri), "{outcome}");
    }

    // MSGID printable ASCII without spaces, at most 32; empty fields are "-".
    entry.action = format!("Wipe now ä{}", "x".repeat(40));
    entry.actor = "line\nbreak".to_owned();
    let line = syslog_line(&entry, "");
    let fields: Vec<&str> = line.splitn(7, ' ').collect();
    assert_eq!(fields[1], "2024-06-01T12:34:56.007Z");
    assert_eq!(fields[2], "-");
    assert_eq!(fields[3], "kontor");
    assert_eq!(fields[4], "-");
    assert_eq!(fields[5], "Wipe_now__xxxxxxxxxxxxxxxxxxxxxx");
    assert_eq!(fields[5].len(), 32);
    assert!(line.contains("actor=\"line\u{FFFD}break\""), "{line}");
    assert!(!line.contains('\n'));
}

#[test]
fn syslog_timestamps_have_milliseconds() {
    let check =
        |at_ms: i64, expected: &str| assert_eq!(rfc3339_ms(at_ms).as_deref(), Some(expected));
    check(0, "1970-01-01T00:00:00.000Z");
    check(1, "1970-01-01T00:00:00.001Z");
    check(-1, "1969-12-31T23:59:59.999Z");
    check(1_000, "1970-01-01T00:00:01.000Z");
    check(253_402_300_799_999, "9999-12-31T23:59:59.999Z");
    assert_eq!(rfc3339_ms(253_402_300_800_000), None);
    assert_eq!(rfc3339_ms(i64::MIN), None);
    let mut entry = chain_of(1).remove(0);
    entry.at_ms = i64::MAX;
    assert!(syslog_line(&entry, "h").starts_with("<85>1 - h kontor - "));
}

#[test]
fn rfc3339_parses_to_milliseconds() {
    assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01Z").unwrap(), 1_000);
    assert_eq!(
        parse_rfc3339_ms("1970-01-01T01:00:00.0019+01:00").unwrap(),
        1
    );
    assert_eq!(parse_rfc3339_ms("1969-12-31T23:59:59.9995Z").unwrap(), -1);
    let err = parse_rfc3339_ms("yesterday").unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid time \"yesterday\": expected RFC 3339, like 2025-01-31T12:00:00Z"
    );
}

#[test]
fn json_line_round_trips() {
    let log = log_of(3);
    for entry in log.query(&Filter::default()).unwrap() {
        let line = json_line(&entry);
        assert!(!line.contains('\n'));
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["hash"], json!(hex::encode(entry.hash)));
        assert_eq!(value["outcome"], json!("done"));
        let back: Entry = serde_json::from_str(&line).unwrap();
        assert_eq!(back, entry);
    }
}

#[test]
fn file_trail_survives_reopening_and_leaves_other_tables_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kontor.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE relay_things (x INTEGER); INSERT INTO relay_things VALUES (1);",
        )
        .unwrap();
    }
    {
        let log = AuditLog::open(&path).unwrap();
        log.append(new_entry(1), T0).unwrap();
    }
    let log = AuditLog::open(&path).unwrap();
    assert_eq!(log.append(new_entry(2), T0).unwrap().seq, 2);
    drop(log);

    let report = verify_database(&path).unwrap();
    assert!(report.is_intact());
    assert_eq!(report.entries, 2);
    let conn = Connection::open(&path).unwrap();
    let x: i64 = conn
        .query_row("SELECT x FROM relay_things", [], |row| row.get(0))
        .unwrap();
    assert_eq!(x, 1);
}

#[test]
fn verify_database_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kontor.db");
    let err = verify_database(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("no database at {}", path.display())
    );
    assert!(!path.exists(), "verification must not create the database");

    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE other (x INTEGER)")
        .unwrap();
    let err = verify_database(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} holds no audit trail (table admin_audit is missing)",
            path.display()
        )
    );
}

#[test]
fn read_only_trail_refuses_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kontor.db");
    AuditLog::open(&path)
        .unwrap()
        .append(new_entry(1), T0)
        .unwrap();
    let log = AuditLog::open_read_only(&path).unwrap();
    assert!(matches!(
        log.append(new_entry(2), T0),
        Err(Error::Database(_))
    ));
    assert_eq!(log.query(&Filter::default()).unwrap().len(), 1);
}

#[test]
fn verify_chain_checks_numbers_links_and_head() {
    let chain = chain_of(5);
    let head = Head::of(&chain[4]);
    let check = |entries: Vec<Entry>, head: Option<Head>, expected: Option<Problem>| {
        assert_eq!(verify_chain(entries.into_iter(), head).problem, expected);
    };
    check(chain.clone(), Some(head), None);
    check(chain.clone(), None, None);
    check(chain[..4].to_vec(), None, None);
    check(
        chain[..4].to_vec(),
        Some(head),
        Some(Problem::EndsBeforeHead { last: 4, head: 5 }),
    );
    check(
        chain.clone(),
        Some(Head::of(&chain[3])),
        Some(Problem::EndsAfterHead { last: 5, head: 4 }),
    );
    check(
        vec![chain[0].clone(), chain[2].clone()],
        None,
        Some(Problem::OutOfSequence {
            expected: 2,
            found: 3,
        }),
    );
    check(
        vec![chain[0].clone(), chain[1].clone(), chain[1].clone()],
        None,
        Some(Problem::OutOfSequence {
            expected: 3,
            found: 2,
        }),
    );
    // A first entry that does not start from the genesis hash.
    let mut first = chain[0].clone();
    first.prev_hash = [1; 32];
    first.hash = first.computed_hash();
    check(vec![first], None, Some(Problem::BrokenLink { seq: 1 }));
}

fn mutation() -> impl Strategy<Value = usize> {
    0..8usize
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any single change to any stored field of any entry is reported.
    #[test]
    fn any_single_edit_is_detected(len in 1..12u64, index in 0..12usize, what in mutation(), byte in 0..32usize) {
        let mut chain = chain_of(len);
        let head = Head::of(chain.last().unwrap());
        let index = index % chain.len();
        let entry = &mut chain[index];
        match what {
            0 => entry.seq += 1,
            1 => entry.at_ms -= 1,
            2 => entry.org.push('x'),
            3 => { entry.actor.pop(); }
            4 => entry.outcome = Outcome::Failed,
            5 => entry.detail = json!({ "n": "edited" }),
            6 => entry.prev_hash[byte] ^= 1,
            _ => entry.hash[byte] ^= 1,
        }
        let report = verify_chain(chain.into_iter(), Some(head));
        prop_assert!(!report.is_intact());
        prop_assert!(report.entries <= u64::try_from(index).unwrap());
    }
}

// --- retention behind a checkpoint ------------------------------------------

#[test]
fn retention_deletes_the_oldest_behind_a_checkpoint_and_verify_starts_there() {
    let log = log_of(10);
    let fifth = log
        .query(&Filter {
            after_seq: Some(4),
            limit: 1,
            ..Filter::default()
        })
        .unwrap()
        .remove(0);
    // Entries 1 to 5 were written before T0 + 5500.
    let (checkpoint, deleted, record) = log
        .expire_before(T0 + 5_500, "acme", T0 + 99_000)
        .unwrap()
        .unwrap();
    assert_eq!(deleted, 5);
    assert_eq!(
        checkpoint,
        Checkpoint {
            through_seq: 5,
            hash: fifth.hash,
            at_ms: T0 + 99_000
        }
    );
    assert_eq!(log.checkpoint().unwrap(), Some(checkpoint));
    assert_eq!((record.seq, record.action.as_str()), (11, RETENTION_ACTION));
    assert_eq!(record.detail["through_seq"], 5);
    assert_eq!(record.detail["checkpoint_hash"], hex::encode(fifth.hash));
    let left: Vec<u64> = log
        .query(&Filter::default())
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(left, (6..=11).collect::<Vec<_>>());

    let report = log.verify().unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.entries, 6);
    assert_eq!(report.checkpoint, Some(checkpoint));
    assert!(
        report.to_string().ends_with(&format!(
            "(from the retention checkpoint: entries up to 5 deleted, the last of them hashed {})",
            hex::encode(fifth.hash)
        )),
        "{report}"
    );
    // The trail goes on, and nothing more is old enough.
    assert_eq!(log.append(new_entry(12), T0 + 100_000).unwrap().seq, 12);
    assert_eq!(log.expire_before(T0 + 5_500, "acme", T0).unwrap(), None);
    assert!(log.verify().unwrap().is_intact());
}

#[test]
fn retention_of_every_entry_keeps_the_chain_going() {
    let log = log_of(4);
    let head = log.head().unwrap();
    let (checkpoint, deleted, record) = log
        .expire_before(i64::MAX, "acme", T0 + 10_000)
        .unwrap()
        .unwrap();
    assert_eq!((checkpoint.through_seq, deleted), (4, 4));
    assert_eq!(record.seq, 5);
    assert_eq!(record.prev_hash, head.hash);
    assert_eq!(log.append(new_entry(6), T0).unwrap().seq, 6);
    let report = log.verify().unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.entries, 2);
}

#[test]
fn triggers_allow_deleting_only_behind_the_checkpoint() {
    let log = log_of(10);
    log.expire_before(T0 + 3_500, "acme", T0 + 20_000)
        .unwrap()
        .unwrap();
    for statement in [
        "DELETE FROM admin_audit WHERE seq = 7",
        "DELETE FROM admin_audit",
    ] {
        let err = sql(&log, statement).unwrap_err().to_string();
        assert!(err.contains("append-only"), "{statement}: {err}");
    }
    let err = sql(&log, "DELETE FROM admin_audit_checkpoint").unwrap_err();
    assert!(err.to_string().contains("cannot be deleted"), "{err}");
    let err = sql(&log, "UPDATE admin_audit_checkpoint SET through_seq = 2").unwrap_err();
    assert!(err.to_string().contains("only moves forward"), "{err}");
    assert!(log.verify().unwrap().is_intact());
}

#[test]
fn a_checkpoint_written_by_hand_is_detected() {
    let log = log_of(10);
    let fifth = log
        .query(&Filter {
            after_seq: Some(4),
            limit: 1,
            ..Filter::default()
        })
        .unwrap()
        .remove(0);
    // Someone with write access hides entries 1 to 5 behind a checkpoint
    // of their own: the chain from 6 on still links, but no retention
    // entry names the checkpoint.
    log.lock()
        .execute(
            "INSERT INTO admin_audit_checkpoint (id, through_seq, hash, at_ms) VALUES (1, 5, ?1, 0)",
            [&fifth.hash[..]],
        )
        .unwrap();
    sql(&log, "DELETE FROM admin_audit WHERE seq <= 5").unwrap();
    let report = log.verify().unwrap();
    assert_eq!(
        report.problem,
        Some(Problem::UnattestedCheckpoint { through_seq: 5 })
    );
    assert!(report.to_string().contains("written by hand"), "{report}");
}

#[test]
fn a_trail_from_before_the_privacy_migration_takes_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kontor.db");
    {
        // Version 1 as it was: the schema alone, no migrations table.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        let log = AuditLog::wrap(conn);
        for i in 1..=3 {
            log.append(new_entry(i), T0 + 1000 * i64::try_from(i).unwrap())
                .unwrap();
        }
    }
    let log = AuditLog::open(&path).unwrap();
    let versions: Vec<i64> = log
        .lock()
        .prepare("SELECT version FROM admin_audit_migrations ORDER BY version")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(versions, [1, 2]);
    log.expire_before(T0 + 1_500, "acme", T0 + 9_000)
        .unwrap()
        .unwrap();
    let report = verify_database(&path).unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.entries, 3);
}

// --- pseudonyms ---------------------------------------------------------------

#[test]
fn pseudonyms_are_keyed_stable_and_shaped() {
    let key = [7u8; 32];
    let anna = pseudonym(&key, "anna@acme.test");
    assert_eq!(anna, pseudonym(&key, "anna@acme.test"));
    assert_ne!(anna, pseudonym(&key, "ben@acme.test"));
    assert_ne!(anna, pseudonym(&[8u8; 32], "anna@acme.test"));
    assert!(is_pseudonym(&anna), "{anna}");
    assert_eq!(anna.len(), PSEUDONYM_PREFIX.len() + 32);
    assert!(!anna.contains("anna"));
    for not in ["anna", "pseudonym:", "pseudonym:xyz", &format!("{anna}0")] {
        assert!(!is_pseudonym(not), "{not}");
    }
}

#[test]
fn pseudonyms_resolve_through_the_mapping_until_forgotten() {
    let log = AuditLog::open_in_memory().unwrap();
    let key = [9u8; 32];
    let anna = pseudonym(&key, "anna@acme.test");
    let ben = pseudonym(&key, "ben@acme.test");
    log.remember("acme", &anna, "anna@acme.test").unwrap();
    log.remember("acme", &ben, "ben@acme.test").unwrap();
    let entry = |actor: &str, target: &str, detail: Value| NewEntry {
        org: "acme".into(),
        actor: actor.into(),
        action: "user.block".into(),
        target: target.into(),
        outcome: Outcome::Done,
        detail,
    };
    log.append(entry("owner", &anna, json!({})), T0).unwrap();
    log.append(entry(&ben, "-", json!({ "to": anna })), T0)
        .unwrap();
    log.append(entry("owner", &format!("{anna},{ben}"), json!({})), T0)
        .unwrap();
    // Entries written before pseudonyms name the user in clear.
    log.append(entry("owner", "anna@acme.test", json!({})), T0)
        .unwrap();

    let by_target = |target: &str| -> Vec<u64> {
        log.query(&Filter {
            target: Some(target.into()),
            ..Filter::default()
        })
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect()
    };
    assert_eq!(by_target("anna@acme.test"), [1, 4]);
    assert_eq!(by_target(&anna), [1]);
    let by_actor = log
        .query(&Filter {
            actor: Some("ben@acme.test".into()),
            ..Filter::default()
        })
        .unwrap();
    assert_eq!(by_actor.len(), 1);

    let all = log.query(&Filter::default()).unwrap();
    let names = log.names(&all).unwrap();
    assert_eq!(names.get(&anna).map(String::as_str), Some("anna@acme.test"));
    assert_eq!(names.get(&ben).map(String::as_str), Some("ben@acme.test"));
    let line: Value = serde_json::from_str(&json_line_named(&all[1], &names)).unwrap();
    assert_eq!(line["actor"], ben.as_str());
    assert_eq!(line["names"][&ben], "ben@acme.test");
    assert_eq!(line["names"][&anna], "anna@acme.test");
    assert_eq!(json_line_named(&all[3], &names), json_line(&all[3]));
    let concerning: Vec<u64> = log
        .concerning("acme", "anna@acme.test", &anna)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(concerning, [1, 2, 3, 4]);

    // Erasure: the mapping goes, the trail stays intact and pseudonymous.
    assert_eq!(log.forget("acme", "anna@acme.test", &[]).unwrap(), 1);
    let names = log.names(&all).unwrap();
    assert!(!names.contains_key(&anna));
    assert!(names.contains_key(&ben));
    assert_eq!(by_target("anna@acme.test"), [4]);
    assert!(log.verify().unwrap().is_intact());
}

#[test]
fn the_pseudonym_key_is_kept_once() {
    let log = AuditLog::open_in_memory().unwrap();
    assert_eq!(log.sealed_key("acme").unwrap(), None);
    assert_eq!(log.keep_sealed_key("acme", b"first", T0).unwrap(), b"first");
    assert_eq!(
        log.keep_sealed_key("acme", b"second", T0).unwrap(),
        b"first"
    );
    assert_eq!(
        log.sealed_key("acme").unwrap().as_deref(),
        Some(&b"first"[..])
    );
    let err = sql(&log, "UPDATE admin_audit_keys SET sealed = x'00'").unwrap_err();
    assert!(err.to_string().contains("never changes"), "{err}");
}
