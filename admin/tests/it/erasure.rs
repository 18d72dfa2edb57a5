//! Removing a user erases them from every store `kontor serve` keeps in
//! its SQLite file (administration, audit mapping, provisioning, relay)
//! and from every registered eraser; the tables are read back directly.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::StatusCode;
use kontor_admin::erasure::{BoxFuture, UserEraser};
use kontor_provisioning::DeviceId;
use kontor_relay::service::DeviceContext;
use kontor_relay::store::{
    BlobRecord, BlobStore, CommandStore, DeviceStateStore, Group, GroupMember, GroupRole,
    GroupStore, MessageStore, NewMessage, PushTarget,
};
use sha2::Digest;

use crate::{Auth, Harness};

const ANNA: &str = "anna@acme.test";
const BOB: &str = "bob@acme.test";

/// An eraser that records its calls and fails while `fail` is set.
#[derive(Default)]
struct Recorder {
    calls: std::sync::Mutex<Vec<(String, String, Vec<DeviceId>)>>,
    fail: AtomicBool,
}

impl UserEraser for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn export_user<'a>(
        &'a self,
        _org: &'a str,
        user_id: &'a str,
        devices: &'a [DeviceId],
    ) -> BoxFuture<'a, kontor_admin::Result<serde_json::Value>> {
        Box::pin(
            async move { Ok(serde_json::json!({ "user": user_id, "devices": devices.len() })) },
        )
    }

    fn erase_user<'a>(
        &'a self,
        org: &'a str,
        user_id: &'a str,
        devices: &'a [DeviceId],
    ) -> BoxFuture<'a, kontor_admin::Result<u64>> {
        Box::pin(async move {
            self.calls
                .lock()
                .unwrap()
                .push((org.to_owned(), user_id.to_owned(), devices.to_vec()));
            if self.fail.load(Ordering::SeqCst) {
                return Err(kontor_admin::Error::Store("connector down".into()));
            }
            Ok(1)
        })
    }
}

/// Every `table.column` of the database file holding `needle`, as text or
/// bytes.
fn naming(db: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let c = rusqlite::Connection::open(db).unwrap();
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let mut found = Vec::new();
    for table in tables {
        let mut stmt = c.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let names: Vec<String> = stmt.column_names().map(str::to_owned).collect();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for (i, name) in names.iter().enumerate() {
                let bytes = match row.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => t,
                    _ => continue,
                };
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(format!("{table}.{name}"));
                }
            }
        }
    }
    found.dedup();
    found
}

/// A user made through the API, with `devices` enrolled.
async fn user_with_devices(
    h: &Harness,
    owner: &Auth,
    user: &str,
    devices: u32,
) -> Vec<DeviceContext> {
    let a = h
        .json(
            "POST",
            "/v1/users",
            owner,
            serde_json::json!({"user_id": user, "display_name": format!("Name of {user}"), "devices": devices}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.json);
    let token = a.json["token"].as_str().unwrap().to_owned();
    let mut out = Vec::new();
    for _ in 0..devices {
        out.push(h.enroll_with(&token, user).await.unwrap());
    }
    out
}

/// Relay rows for Anna's devices and Bob's: push targets, messages both
/// ways, an upload each, a command, a group.
async fn use_the_relay(h: &Harness, anna: &[DeviceContext], bob: &DeviceContext) {
    let s = h.relay.store();
    let now = kontor_provisioning::time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let message = |from: DeviceId, id: u8, to: Vec<DeviceId>, blob: [u8; 16]| NewMessage {
        sender_device: from,
        message_id: [id; 16],
        group_id: None,
        body_hash: sha2::Sha256::digest([id]).into(),
        body: vec![id; 40],
        // Laid out like the protocol's header: version, message id, sender.
        deliveries: to
            .into_iter()
            .map(|d| {
                let mut header = vec![1];
                header.extend_from_slice(&[id; 16]);
                header.extend_from_slice(from.as_bytes());
                header.resize(305, 0x55);
                (d, header)
            })
            .collect(),
        blob_ids: vec![blob],
        received_at_ms: now,
        expires_at_ms: now + 86_400_000,
    };
    for (n, device) in anna.iter().enumerate() {
        s.set_push_target(
            device.device_id,
            Some(&PushTarget::Apns(format!("anna-token-{n}"))),
        )
        .await
        .unwrap();
        s.queue_command(device.device_id, "policy", "{}", now)
            .await
            .unwrap();
    }
    s.set_push_target(bob.device_id, Some(&PushTarget::Fcm("bob-token".into())))
        .await
        .unwrap();
    for (id, owner) in [(0x0a, anna[0].device_id), (0x0b, bob.device_id)] {
        s.put_blob(&BlobRecord {
            id: [id; 16],
            owner_device: owner,
            bytes: vec![id; 10],
            created_at_ms: now,
            expires_at_ms: now + 86_400_000,
        })
        .await
        .unwrap();
    }
    let to_anna: Vec<DeviceId> = anna.iter().map(|d| d.device_id).collect();
    s.store_message(&message(bob.device_id, 1, to_anna, [0x0b; 16]), 100)
        .await
        .unwrap();
    s.store_message(
        &message(anna[0].device_id, 2, vec![bob.device_id], [0x0a; 16]),
        100,
    )
    .await
    .unwrap();
    s.create_group(&Group {
        id: [0x0c; 16],
        name: "Team".into(),
        created_by: ANNA.into(),
        created_at_ms: now,
        members: [ANNA, BOB]
            .iter()
            .map(|u| GroupMember {
                user_id: (*u).into(),
                role: GroupRole::Admin,
            })
            .collect(),
    })
    .await
    .unwrap();
}

/// Where Anna (her id, her devices' ids as bytes and hex, her serials)
/// is still named: each needle with the columns holding it.
fn where_named(h: &Harness, anna: &[DeviceContext]) -> Vec<(String, Vec<String>)> {
    let mut needles: Vec<(String, Vec<u8>)> = vec![(ANNA.into(), ANNA.as_bytes().to_vec())];
    for d in anna {
        needles.push((
            format!("{} bytes", d.device_id),
            d.device_id.as_bytes().to_vec(),
        ));
        needles.push((
            d.device_id.to_string(),
            d.device_id.to_string().into_bytes(),
        ));
        needles.push((d.serial.to_string(), d.serial.to_string().into_bytes()));
    }
    needles
        .into_iter()
        .map(|(name, needle)| (name, naming(&h.db(), &needle)))
        .filter(|(_, found)| !found.is_empty())
        .collect()
}

/// What is left is what erasure keeps on purpose: the revoked serials
/// (they keep the CRL and deny-list refusing the devices), device ids in
/// audit entries (hash-chained; nothing links them to her any more), and
/// her device id in the header of the message she sent Bob, which is his
/// until he fetches it or it expires.
fn only_what_erasure_keeps(h: &Harness, anna: &[DeviceContext]) {
    for (needle, found) in where_named(h, anna) {
        for column in &found {
            let kept = column == "revocations.serial"
                || (column.starts_with("admin_audit.") && needle != ANNA)
                || (column == "relay_queue.delivery" && needle.ends_with(" bytes"));
            assert!(kept, "{needle} still in {column} ({found:?})");
        }
    }
}

#[tokio::test]
async fn removing_a_user_erases_every_store_and_leaves_others_and_the_trail_intact() {
    let recorder = Arc::new(Recorder::default());
    let h = Harness::on_disk(vec![recorder.clone()]).await;
    let owner = h.sign_in("owner").await;
    let anna = user_with_devices(&h, &owner, ANNA, 2).await;
    let bob = user_with_devices(&h, &owner, BOB, 1).await.remove(0);
    use_the_relay(&h, &anna, &bob).await;

    // The export names every kind of row the erasure will delete.
    let export = h
        .call("GET", "/v1/users/anna@acme.test/export", &owner, None)
        .await;
    assert_eq!(export.status, StatusCode::OK, "{}", export.json);
    let j = &export.json;
    assert_eq!(j["certificates"].as_array().unwrap().len(), 2);
    assert_eq!(j["devices"].as_array().unwrap().len(), 2);
    assert!(j["device_commands"].as_array().unwrap().len() >= 2, "{j}");
    let rows = &j["relay_rows"];
    assert_eq!(rows["device_states"], 2, "{rows}");
    assert_eq!(rows["queued_messages"], 2, "{rows}");
    assert_eq!(rows["sent_message_ids"], 1, "{rows}");
    assert_eq!(rows["attachments_uploaded"], 1, "{rows}");
    assert_eq!(rows["group_memberships"], 1, "{rows}");
    assert_eq!(rows["groups_they_created"], 1, "{rows}");
    assert_eq!(j["other_components"]["recorder"]["devices"], 2);
    assert_eq!(j["enrollment_attempts"].as_array().unwrap().len(), 2);

    // The scan sees her in every store before.
    let before: Vec<String> = where_named(&h, &anna)
        .into_iter()
        .flat_map(|(_, found)| found)
        .collect();
    for column in [
        "admin_users.user_id",
        "admin_audit_pseudonyms.clear",
        "certificates.user_id",
        "enrollment_attempts.device_id",
        "tokens.bound_to",
        "relay_devices.device",
        "relay_commands.device",
        "relay_group_members.user_id",
    ] {
        assert!(before.iter().any(|c| c == column), "{column}: {before:?}");
    }

    let removed = h
        .call("DELETE", "/v1/users/anna@acme.test", &owner, None)
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.json);

    // Her devices are refused, and every store is clean of her.
    for device in &anna {
        assert!(h.relay.still_allowed(device).await.is_err());
        assert!(
            h.relay
                .authenticate(device.device_id, device.serial)
                .await
                .is_err()
        );
    }
    let calls = recorder.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert_eq!((calls[0].0.as_str(), calls[0].1.as_str()), ("acme", ANNA));
    let mut devices: Vec<DeviceId> = anna.iter().map(|d| d.device_id).collect();
    devices.sort_by_key(|d| d.to_string());
    assert_eq!(calls[0].2, devices);
    only_what_erasure_keeps(&h, &anna);
    // Once Bob fetched her message, not even its header names her device.
    let pending = h
        .relay
        .store()
        .pending(bob.device_id, 0, &[], 10)
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    h.relay
        .store()
        .ack(bob.device_id, &[pending[0].seq])
        .await
        .unwrap();
    for (needle, found) in where_named(&h, &anna) {
        assert!(
            found
                .iter()
                .all(|c| c == "revocations.serial"
                    || (c.starts_with("admin_audit.") && needle != ANNA)),
            "{needle}: {found:?}"
        );
    }
    assert!(
        naming(&h.db(), b"Name of anna").is_empty(),
        "her display name is gone too"
    );

    // The trail verifies, records the erasure with its counts, and no
    // longer maps her pseudonym.
    assert!(h.audit.verify().unwrap().is_intact());
    let erase = h.audited("user.erase");
    assert_eq!(erase.len(), 1);
    assert!(kontor_admin::audit::is_pseudonym(&erase[0].target));
    assert_eq!(h.named(&erase[0].target), erase[0].target);
    let detail = &erase[0].detail;
    assert_eq!(detail["provisioning"]["certificates"], 2, "{detail}");
    assert_eq!(detail["relay"]["devices"], 2, "{detail}");
    assert_eq!(detail["others"]["recorder"], 1, "{detail}");

    // Bob is untouched: enrolled, allowed, his group and upload kept.
    assert!(h.relay.still_allowed(&bob).await.is_ok());
    assert!(
        h.relay
            .authenticate(bob.device_id, bob.serial)
            .await
            .is_ok()
    );
    let s = h.relay.store();
    let team = s.group([0x0c; 16]).await.unwrap().unwrap();
    assert_eq!(team.created_by, "");
    assert_eq!(team.members.len(), 1);
    assert_eq!(team.members[0].user_id, BOB);
    assert_eq!(s.blob_owner([0x0b; 16]).await.unwrap(), Some(bob.device_id));
    assert_eq!(s.blob_owner([0x0a; 16]).await.unwrap(), None);
    assert!(
        s.device_state(bob.device_id)
            .await
            .unwrap()
            .unwrap()
            .push
            .is_some()
    );
    assert_eq!(
        h.call("GET", "/v1/users/bob@acme.test", &owner, None)
            .await
            .status,
        StatusCode::OK
    );
    let bobs = h
        .call("GET", "/v1/users/bob@acme.test/export", &owner, None)
        .await;
    assert_eq!(bobs.json["certificates"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_removal_that_failed_half_way_refuses_the_user_at_once_and_a_retry_finishes_it() {
    let recorder = Arc::new(Recorder::default());
    recorder.fail.store(true, Ordering::SeqCst);
    let h = Harness::on_disk(vec![recorder.clone()]).await;
    let owner = h.sign_in("owner").await;
    let anna = user_with_devices(&h, &owner, ANNA, 2).await;
    let bob = user_with_devices(&h, &owner, BOB, 1).await.remove(0);
    use_the_relay(&h, &anna, &bob).await;

    let failed = h
        .call("DELETE", "/v1/users/anna@acme.test", &owner, None)
        .await;
    assert!(failed.status.is_server_error(), "{}", failed.status);
    // Refused already, though not erased yet: she can be removed again.
    for device in &anna {
        assert!(h.relay.still_allowed(device).await.is_err());
    }
    assert_eq!(
        h.call("GET", "/v1/users/anna@acme.test", &owner, None)
            .await
            .status,
        StatusCode::OK
    );

    recorder.fail.store(false, Ordering::SeqCst);
    let removed = h
        .call("DELETE", "/v1/users/anna@acme.test", &owner, None)
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.json);
    let calls = recorder.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].2.len(), 2, "the retry still knew her devices");
    only_what_erasure_keeps(&h, &anna);
    assert!(h.audit.verify().unwrap().is_intact());
    let outcomes: Vec<String> = h
        .audited("user.remove")
        .iter()
        .map(|e| format!("{:?}", e.outcome))
        .collect();
    assert_eq!(outcomes, ["Requested", "Failed", "Requested", "Done"]);
    assert!(h.relay.still_allowed(&bob).await.is_ok());
}
