//! The connector's part of erasing a user (DSGVO Art. 17): its device
//! mappings, commands, their finished outbox entries and SCIM attributes
//! go; another user's rows and a command still to be delivered stay.

use kontor_mdm_connector::outbox::{Method, NewEntry, Outbox};
use kontor_mdm_connector::store::{ConnectorRows, ConnectorStore, MdmCommand, MdmDevice};
use kontor_provisioning::DeviceId;

fn mapping(token: &str, user: &str, udid: &str) -> MdmDevice {
    MdmDevice {
        token_id: token.into(),
        org: "acme".into(),
        user_id: user.into(),
        udid: Some(udid.into()),
        serial: Some(format!("SERIAL-{udid}")),
        android_device: None,
        enrollment_id: Some(udid.into()),
        created_at_ms: 1,
    }
}

fn command(id: &str, target: &str, device: Option<&str>, user: Option<&str>) -> MdmCommand {
    MdmCommand {
        command_id: id.into(),
        org: "acme".into(),
        platform: "apple".into(),
        kind: "settings".into(),
        mdm_target: target.into(),
        device: device.map(str::to_owned),
        user_id: user.map(str::to_owned),
        status: "sent".into(),
        detail: "{}".into(),
        created_at_ms: 1,
        updated_at_ms: 1,
    }
}

/// How many rows of `table` hold `needle` anywhere in their text.
fn rows_naming(db: &std::path::Path, table: &str, needle: &str) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    let columns: Vec<String> = c
        .prepare(&format!("SELECT * FROM {table}"))
        .unwrap()
        .column_names()
        .map(|n| format!("COALESCE(CAST({n} AS TEXT), '')"))
        .collect();
    c.query_row(
        &format!(
            "SELECT count(*) FROM {table} WHERE instr({}, ?1) > 0",
            columns.join(" || ' ' || ")
        ),
        [needle],
        |r| r.get(0),
    )
    .unwrap()
}

#[tokio::test]
async fn erasing_a_user_deletes_their_connector_rows_and_keeps_pending_deliveries_and_others() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kontor.db");
    let store = ConnectorStore::open(&db).unwrap();
    let outbox = Outbox::open(&db, Default::default()).unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE scim_users (user_id TEXT PRIMARY KEY, org TEXT NOT NULL, external_id TEXT, \
             given_name TEXT, family_name TEXT, emails TEXT NOT NULL); \
             INSERT INTO scim_users VALUES ('anna@acme.test', 'acme', 'ext-anna', 'Anna', 'Aal', '[]'); \
             INSERT INTO scim_users VALUES ('bob@acme.test', 'acme', 'ext-bob', 'Bob', 'Barsch', '[]');",
        )
        .unwrap();
    let anna_device = DeviceId::from_bytes([0xa1; 16]);
    store
        .put_device(mapping("tok-a", "anna@acme.test", "UDID-ANNA"))
        .await
        .unwrap();
    store
        .put_device(mapping("tok-b", "bob@acme.test", "UDID-BOB"))
        .await
        .unwrap();
    // Anna's commands: by user, by Kontor device, by MDM device only.
    store
        .put_command(command("c1", "UDID-ANNA", None, Some("anna@acme.test")))
        .await
        .unwrap();
    store
        .put_command(command("c2", "x", Some(&anna_device.to_string()), None))
        .await
        .unwrap();
    store
        .put_command(command("c3", "UDID-ANNA", None, None))
        .await
        .unwrap();
    store
        .put_command(command("c4", "UDID-BOB", None, Some("bob@acme.test")))
        .await
        .unwrap();
    let now = time::OffsetDateTime::now_utc();
    let entry = |key: &str, udid: &str| NewEntry {
        target: "nanomdm".into(),
        method: Method::Put,
        url_path: format!("/v1/enqueue/{udid}"),
        content_type: "application/x-apple-aspen-config".into(),
        body: b"<plist/>".to_vec(),
        idempotency_key: key.into(),
    };
    let done = outbox.enqueue(&entry("c1", "UDID-ANNA"), now).unwrap();
    outbox.mark_done(done, 200, b"", now).unwrap();
    outbox.enqueue(&entry("c3", "UDID-ANNA"), now).unwrap();
    let bobs = outbox.enqueue(&entry("c4", "UDID-BOB"), now).unwrap();
    outbox.mark_done(bobs, 200, b"", now).unwrap();

    let export = store
        .export_user("acme", "anna@acme.test", &[anna_device])
        .await
        .unwrap();
    assert_eq!(export["mdm_devices"][0]["udid"], "UDID-ANNA");
    assert_eq!(export["mdm_commands"].as_array().unwrap().len(), 3);
    assert_eq!(export["scim_attributes"]["family_name"], "Aal");

    let erased = store
        .erase_user("acme", "anna@acme.test", &[anna_device])
        .await
        .unwrap();
    assert_eq!(
        erased,
        ConnectorRows {
            devices: 1,
            commands: 3,
            outbox: 1,
            scim: 1
        }
    );
    assert_eq!(
        store
            .erase_user("acme", "anna@acme.test", &[anna_device])
            .await
            .unwrap(),
        ConnectorRows::default()
    );
    for table in ["mdm_devices", "mdm_commands", "scim_users"] {
        for needle in [
            "anna@acme.test",
            "UDID-ANNA",
            "Aal",
            &anna_device.to_string(),
        ] {
            assert_eq!(rows_naming(&db, table, needle), 0, "{table}: {needle}");
        }
        assert!(rows_naming(&db, table, "bob@acme.test") + rows_naming(&db, table, "UDID-BOB") > 0);
    }
    // The wipe or policy still on its way to her phone goes out; it
    // names only the MDM's device.
    assert_eq!(rows_naming(&db, "mdm_outbox", "UDID-ANNA"), 1);
    assert_eq!(rows_naming(&db, "mdm_outbox", "UDID-BOB"), 1);
    assert!(store.command("c4").await.unwrap().is_some());
}
