-- Relay tables, SQLite. Ids are 16-byte blobs; times are Unix milliseconds.

CREATE TABLE relay_bodies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body BLOB NOT NULL,
    expires_at_ms INTEGER NOT NULL
);

-- One row per recipient device; seq orders a device's queue.
CREATE TABLE relay_queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    device BLOB NOT NULL,
    body_id INTEGER NOT NULL REFERENCES relay_bodies (id),
    delivery BLOB NOT NULL,
    received_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
CREATE INDEX relay_queue_device ON relay_queue (device, seq);
CREATE INDEX relay_queue_body ON relay_queue (body_id);
CREATE INDEX relay_queue_expiry ON relay_queue (expires_at_ms);

-- Message ids each sender used, to tell retries from replays.
CREATE TABLE relay_seen (
    sender BLOB NOT NULL,
    message_id BLOB NOT NULL,
    body_hash BLOB NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    PRIMARY KEY (sender, message_id)
);

CREATE TABLE relay_groups (
    id BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE relay_group_members (
    group_id BLOB NOT NULL REFERENCES relay_groups (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX relay_group_members_user ON relay_group_members (user_id);

CREATE TABLE relay_blobs (
    id BLOB PRIMARY KEY,
    owner BLOB NOT NULL,
    bytes BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);

CREATE TABLE relay_blob_grants (
    blob_id BLOB NOT NULL REFERENCES relay_blobs (id) ON DELETE CASCADE,
    device BLOB NOT NULL,
    PRIMARY KEY (blob_id, device)
);

CREATE TABLE relay_commands (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device BLOB NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    acked_at_ms INTEGER,
    receipt TEXT
);
CREATE INDEX relay_commands_device ON relay_commands (device, id);

CREATE TABLE relay_devices (
    device BLOB PRIMARY KEY,
    push_kind TEXT,
    push_token TEXT,
    last_seen_ms INTEGER,
    wiped_at_ms INTEGER
);
