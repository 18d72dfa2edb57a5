//! The outbox: idempotent enqueue, due order, backoff, dead-lettering,
//! the deliverer's verdicts, and nothing lost across a restart.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kontor_mdm_connector::outbox::{
    BoxFuture, Deliverer, DelivererConfig, Delivery, Entry, EntryId, EntryState, Error, Failure,
    ListFilter, Method, NewEntry, Outbox, OutboxConfig, RoundReport, Transport, Verdict, backoff,
    classify,
};
use time::OffsetDateTime;

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

fn secs(n: i64) -> time::Duration {
    time::Duration::seconds(n)
}

fn entry(key: &str) -> NewEntry {
    NewEntry {
        target: "nanomdm".into(),
        method: Method::Put,
        url_path: "/v1/enqueue/E9085AF6-DCCB-5661-A678-BCE8F4D9A2C8".into(),
        content_type: "application/xml".into(),
        body: format!("<plist>{key}</plist>").into_bytes(),
        idempotency_key: key.into(),
    }
}

fn memory() -> Outbox {
    Outbox::with_connection(
        rusqlite::Connection::open_in_memory().unwrap(),
        OutboxConfig::default(),
    )
    .unwrap()
}

#[test]
fn a_repeated_idempotency_key_returns_the_first_entry_and_changes_nothing() {
    let outbox = memory();
    let first = outbox.enqueue(&entry("k1"), t0()).unwrap();
    let mut other = entry("k1");
    other.body = b"different".to_vec();
    other.url_path = "/v1/push/X".into();
    let again = outbox.enqueue(&other, t0() + secs(5)).unwrap();
    assert_eq!(first, again);
    let stored = outbox.get(first).unwrap().unwrap();
    assert_eq!(stored.body, entry("k1").body);
    assert_eq!(stored.created, t0());
    assert_eq!(outbox.list(&ListFilter::default()).unwrap().len(), 1);
}

#[test]
fn due_returns_pending_entries_whose_time_has_come_oldest_first() {
    let outbox = memory();
    let a = outbox.enqueue(&entry("a"), t0()).unwrap();
    let b = outbox.enqueue(&entry("b"), t0() + secs(1)).unwrap();
    let c = outbox.enqueue(&entry("c"), t0() + secs(10)).unwrap();
    let ids = |v: Vec<Entry>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(ids(outbox.due(t0() + secs(1), 10).unwrap()), vec![a, b]);
    assert_eq!(ids(outbox.due(t0() + secs(10), 1).unwrap()), vec![a]);
    outbox.mark_done(a, 200, b"{}", t0() + secs(2)).unwrap();
    assert_eq!(ids(outbox.due(t0() + secs(60), 10).unwrap()), vec![b, c]);
}

#[test]
fn claim_leases_entries_so_they_are_not_taken_twice() {
    let outbox = memory();
    let a = outbox.enqueue(&entry("a"), t0()).unwrap();
    let lease = Duration::from_secs(300);
    assert_eq!(outbox.claim(t0(), 10, lease).unwrap()[0].id, a);
    assert!(outbox.claim(t0() + secs(1), 10, lease).unwrap().is_empty());
    // A crash before recording: the entry comes back after the lease.
    assert_eq!(outbox.claim(t0() + secs(300), 10, lease).unwrap()[0].id, a);
}

#[test]
fn backoff_doubles_is_capped_at_an_hour_and_has_jitter() {
    let config = OutboxConfig::default();
    for attempts in 1..30 {
        let full = Duration::from_secs(1u64 << attempts.min(20)).min(Duration::from_secs(3600));
        for id in 1..20 {
            let d = backoff(EntryId(id), attempts, &config);
            assert!(d <= full && d >= full / 2, "{attempts} {id}: {d:?}");
        }
    }
    // Entries failing together spread out.
    let spread: std::collections::HashSet<_> = (1..20)
        .map(|id| backoff(EntryId(id), 12, &config))
        .collect();
    assert!(spread.len() > 10);
    // And the schedule is reproducible.
    assert_eq!(
        backoff(EntryId(7), 5, &config),
        backoff(EntryId(7), 5, &config)
    );
}

#[test]
fn mark_failed_schedules_the_retry_and_records_the_error() {
    let outbox = memory();
    let id = outbox.enqueue(&entry("a"), t0()).unwrap();
    let state = outbox
        .mark_failed(id, "nanomdm: could not connect", t0())
        .unwrap();
    assert_eq!(state, EntryState::Pending);
    let stored = outbox.get(id).unwrap().unwrap();
    assert_eq!(stored.attempts, 1);
    assert_eq!(
        stored.last_error.as_deref(),
        Some("nanomdm: could not connect")
    );
    let wait = stored.next_attempt - t0();
    assert!(wait >= secs(1) && wait <= secs(2), "{wait}");
    assert!(outbox.due(t0(), 10).unwrap().is_empty());

    // Retry-After wins over the backoff, up to its cap.
    outbox
        .mark_retry(
            id,
            &Failure {
                error: "answered 429".into(),
                status: Some(429),
                answer: None,
                retry_after: Some(Duration::from_secs(120)),
            },
            t0(),
        )
        .unwrap();
    let stored = outbox.get(id).unwrap().unwrap();
    assert_eq!(stored.next_attempt, t0() + secs(120));
    assert_eq!(stored.last_status, Some(429));
}

#[test]
fn an_entry_dies_after_max_attempts_and_stays_visible_until_requeued() {
    let outbox = Outbox::with_connection(
        rusqlite::Connection::open_in_memory().unwrap(),
        OutboxConfig {
            max_attempts: 3,
            ..OutboxConfig::default()
        },
    )
    .unwrap();
    let id = outbox.enqueue(&entry("a"), t0()).unwrap();
    assert_eq!(
        outbox.mark_failed(id, "e1", t0()).unwrap(),
        EntryState::Pending
    );
    assert_eq!(
        outbox.mark_failed(id, "e2", t0()).unwrap(),
        EntryState::Pending
    );
    assert_eq!(
        outbox.mark_failed(id, "e3", t0()).unwrap(),
        EntryState::Dead
    );
    assert!(outbox.due(t0() + secs(86_400), 10).unwrap().is_empty());
    let dead = outbox
        .list(&ListFilter {
            state: Some(EntryState::Dead),
            ..ListFilter::default()
        })
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(dead[0].last_error.as_deref(), Some("e3"));

    // A late outcome does not revive it; requeue does.
    outbox.mark_done(id, 200, b"", t0()).unwrap();
    assert_eq!(outbox.get(id).unwrap().unwrap().state, EntryState::Dead);
    outbox.requeue(id, t0() + secs(5)).unwrap();
    let again = outbox.get(id).unwrap().unwrap();
    assert_eq!((again.state, again.attempts), (EntryState::Pending, 0));
    assert_eq!(outbox.due(t0() + secs(5), 10).unwrap().len(), 1);
}

#[test]
fn unknown_ids_are_reported() {
    let outbox = memory();
    assert!(matches!(
        outbox.mark_done(EntryId(99), 200, b"", t0()),
        Err(Error::NotFound(99))
    ));
    assert!(matches!(
        outbox.mark_failed(EntryId(99), "x", t0()),
        Err(Error::NotFound(99))
    ));
    assert!(outbox.get(EntryId(99)).unwrap().is_none());
}

#[test]
fn enqueue_checks_fields_and_limits() {
    let outbox = Outbox::with_connection(
        rusqlite::Connection::open_in_memory().unwrap(),
        OutboxConfig {
            body_bytes_max: 64,
            pending_max: 2,
            ..OutboxConfig::default()
        },
    )
    .unwrap();
    let cases: Vec<(NewEntry, &str)> = vec![
        (
            NewEntry {
                target: "NanoMDM".into(),
                ..entry("t")
            },
            "target",
        ),
        (
            NewEntry {
                url_path: "v1/enqueue".into(),
                ..entry("u")
            },
            "url path",
        ),
        (
            NewEntry {
                idempotency_key: "has space".into(),
                ..entry("k")
            },
            "idempotency key",
        ),
        (
            NewEntry {
                body: vec![b'x'; 65],
                ..entry("b")
            },
            "too large",
        ),
    ];
    for (new, needle) in cases {
        let err = outbox.enqueue(&new, t0()).unwrap_err();
        assert!(err.to_string().contains(needle), "{err} lacks {needle}");
    }
    outbox.enqueue(&entry("1"), t0()).unwrap();
    outbox.enqueue(&entry("2"), t0()).unwrap();
    assert!(matches!(
        outbox.enqueue(&entry("3"), t0()),
        Err(Error::Full { limit: 2 })
    ));
    // A repeat of a stored key is still answered when full.
    assert!(outbox.enqueue(&entry("1"), t0()).is_ok());
}

#[test]
fn the_shared_database_file_keeps_other_tables_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kontor.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);
             INSERT INTO users (name) VALUES ('erika'), ('max');",
        )
        .unwrap();
    }
    let outbox = Outbox::open(&path, OutboxConfig::default()).unwrap();
    let id = outbox.enqueue(&entry("a"), t0()).unwrap();
    outbox.mark_done(id, 200, b"ok", t0()).unwrap();
    drop(outbox);
    // Opening again is harmless (IF NOT EXISTS).
    drop(Outbox::open(&path, OutboxConfig::default()).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let names: Vec<String> = conn
        .prepare("SELECT name FROM users ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(names, vec!["erika", "max"]);
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(tables, vec!["mdm_outbox", "users"]);
}

#[test]
fn verdicts() {
    let answered = |status| Delivery::Answered {
        status,
        retry_after: None,
        body: Vec::new(),
    };
    for (status, verdict) in [
        (200, Verdict::Done),
        (204, Verdict::Done),
        (207, Verdict::Done),
        (301, Verdict::Dead),
        (400, Verdict::Dead),
        (401, Verdict::Dead),
        (403, Verdict::Dead),
        (404, Verdict::Dead),
        (408, Verdict::Retry),
        (409, Verdict::Dead),
        (429, Verdict::Retry),
        (500, Verdict::Retry),
        (502, Verdict::Retry),
        (503, Verdict::Retry),
    ] {
        assert_eq!(classify(&answered(status)), verdict, "{status}");
    }
    assert_eq!(
        classify(&Delivery::Failed {
            error: "timed out".into()
        }),
        Verdict::Retry
    );
}

/// A transport that answers from a script and records what it was sent.
#[derive(Default)]
pub struct Scripted {
    answers: Mutex<VecDeque<Delivery>>,
    pub seen: Mutex<Vec<(EntryId, String)>>,
}

impl Scripted {
    fn new(answers: Vec<Delivery>) -> Arc<Self> {
        Arc::new(Self {
            answers: Mutex::new(answers.into()),
            seen: Mutex::default(),
        })
    }
}

impl Transport for Scripted {
    fn send<'a>(&'a self, entry: &'a Entry) -> BoxFuture<'a, Delivery> {
        Box::pin(async move {
            self.seen
                .lock()
                .unwrap()
                .push((entry.id, entry.idempotency_key.clone()));
            self.answers
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Delivery::Answered {
                    status: 200,
                    retry_after: None,
                    body: b"{}".to_vec(),
                })
        })
    }
}

fn answer(status: u16, retry_after: Option<u64>, body: &[u8]) -> Delivery {
    Delivery::Answered {
        status,
        retry_after: retry_after.map(Duration::from_secs),
        body: body.to_vec(),
    }
}

#[tokio::test]
async fn the_deliverer_records_each_outcome() {
    let outbox = Arc::new(memory());
    let ids: Vec<EntryId> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .map(|k| outbox.enqueue(&entry(k), t0()).unwrap())
        .collect();
    let script = Scripted::new(vec![
        answer(200, None, br#"{"command_uuid":"x"}"#),
        answer(500, None, b"oops"),
        answer(429, Some(7), b""),
        answer(404, None, b"404 page not found"),
        Delivery::Failed {
            error: "nanomdm: could not connect".into(),
        },
        answer(408, None, b""),
    ]);
    let deliverer =
        Deliverer::new(outbox.clone(), DelivererConfig::default()).route("nanomdm", script.clone());
    let report = deliverer.run_once(t0()).await.unwrap();
    assert_eq!(
        report,
        RoundReport {
            taken: 6,
            done: 1,
            retried: 4,
            dead: 1
        }
    );
    let get = |i: usize| outbox.get(ids[i]).unwrap().unwrap();
    assert_eq!(get(0).state, EntryState::Done);
    assert_eq!(
        get(0).answer.as_deref(),
        Some(&br#"{"command_uuid":"x"}"#[..])
    );
    assert_eq!(
        (get(1).state, get(1).last_status),
        (EntryState::Pending, Some(500))
    );
    assert_eq!(get(2).next_attempt, t0() + secs(7));
    assert_eq!(get(3).state, EntryState::Dead);
    assert_eq!(get(3).answer.as_deref(), Some(&b"404 page not found"[..]));
    assert_eq!(get(3).last_status, Some(404));
    assert_eq!(
        get(4).last_error.as_deref(),
        Some("nanomdm: could not connect")
    );
    assert_eq!(get(5).state, EntryState::Pending);
    // Every send carried its own idempotency key.
    let seen = script.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 6);
    assert!(
        seen.iter()
            .zip(["a", "b", "c", "d", "e", "f"])
            .all(|((_, k), want)| k == want)
    );

    // Nothing is due until the earliest retry.
    assert_eq!(deliverer.run_once(t0()).await.unwrap().taken, 0);
    let later = deliverer.run_once(t0() + secs(3600)).await.unwrap();
    assert_eq!((later.taken, later.done), (4, 4));
}

#[tokio::test]
async fn an_entry_for_an_unrouted_target_is_retried_not_dropped() {
    let outbox = Arc::new(memory());
    let id = outbox
        .enqueue(
            &NewEntry {
                target: "amapi".into(),
                ..entry("a")
            },
            t0(),
        )
        .unwrap();
    let deliverer = Deliverer::new(outbox.clone(), DelivererConfig::default())
        .route("nanomdm", Scripted::new(vec![]));
    let report = deliverer.run_once(t0()).await.unwrap();
    assert_eq!(report.retried, 1);
    let stored = outbox.get(id).unwrap().unwrap();
    assert_eq!(stored.state, EntryState::Pending);
    assert!(stored.last_error.unwrap().contains("no transport"));
}

#[tokio::test]
async fn nothing_enqueued_is_lost_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kontor.db");
    let ids: Vec<EntryId> = {
        let outbox = Outbox::open(&path, OutboxConfig::default()).unwrap();
        let ids = (0..5)
            .map(|i| outbox.enqueue(&entry(&format!("k{i}")), t0()).unwrap())
            .collect();
        // One attempt failed before the "crash".
        outbox.mark_failed(EntryId(1), "down", t0()).unwrap();
        ids
        // Dropped here, as a process exit would.
    };
    let outbox = Arc::new(Outbox::open(&path, OutboxConfig::default()).unwrap());
    assert_eq!(
        outbox
            .list(&ListFilter {
                state: Some(EntryState::Pending),
                ..ListFilter::default()
            })
            .unwrap()
            .len(),
        5
    );
    let script = Scripted::new(vec![]);
    let deliverer =
        Deliverer::new(outbox.clone(), DelivererConfig::default()).route("nanomdm", script.clone());
    let report = deliverer.run_once(t0() + secs(3600)).await.unwrap();
    assert_eq!(report.done, 5);
    for id in ids {
        assert_eq!(outbox.get(id).unwrap().unwrap().state, EntryState::Done);
    }
}

#[tokio::test]
async fn run_delivers_when_woken_and_stops_on_shutdown() {
    let outbox = Arc::new(memory());
    let script = Scripted::new(vec![]);
    let deliverer = Arc::new(
        Deliverer::new(
            outbox.clone(),
            DelivererConfig {
                idle: Duration::from_secs(3600),
                ..DelivererConfig::default()
            },
        )
        .route("nanomdm", script.clone()),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = {
        let deliverer = deliverer.clone();
        tokio::spawn(async move {
            deliverer
                .run(async {
                    let _ = stopped.await;
                })
                .await;
        })
    };
    // Enqueued "now" so the real clock the loop uses finds it due.
    let id = outbox
        .enqueue(&entry("live"), OffsetDateTime::now_utc())
        .unwrap();
    deliverer.waker().notify_one();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while outbox.get(id).unwrap().unwrap().state != EntryState::Done {
        assert!(tokio::time::Instant::now() < deadline, "not delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("run stops on shutdown")
        .unwrap();
}
