-- Relay tables, PostgreSQL. Ids are 16-byte blobs; times are Unix milliseconds.

CREATE TABLE relay_bodies (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    body BYTEA NOT NULL,
    expires_at_ms BIGINT NOT NULL
);

-- One row per recipient device; seq orders a device's queue.
CREATE TABLE relay_queue (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device BYTEA NOT NULL,
    body_id BIGINT NOT NULL REFERENCES relay_bodies (id),
    delivery BYTEA NOT NULL,
    received_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX relay_queue_device ON relay_queue (device, seq);
CREATE INDEX relay_queue_body ON relay_queue (body_id);
CREATE INDEX relay_queue_expiry ON relay_queue (expires_at_ms);

-- Message ids each sender used, to tell retries from replays.
CREATE TABLE relay_seen (
    sender BYTEA NOT NULL,
    message_id BYTEA NOT NULL,
    body_hash BYTEA NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    PRIMARY KEY (sender, message_id)
);

CREATE TABLE relay_groups (
    id BYTEA PRIMARY KEY,
    name TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE relay_group_members (
    group_id BYTEA NOT NULL REFERENCES relay_groups (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX relay_group_members_user ON relay_group_members (user_id);

CREATE TABLE relay_blobs (
    id BYTEA PRIMARY KEY,
    owner BYTEA NOT NULL,
    bytes BYTEA NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);

CREATE TABLE relay_blob_grants (
    blob_id BYTEA NOT NULL REFERENCES relay_blobs (id) ON DELETE CASCADE,
    device BYTEA NOT NULL,
    PRIMARY KEY (blob_id, device)
);

CREATE TABLE relay_commands (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device BYTEA NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    acked_at_ms BIGINT,
    receipt TEXT
);
CREATE INDEX relay_commands_device ON relay_commands (device, id);

CREATE TABLE relay_devices (
    device BYTEA PRIMARY KEY,
    push_kind TEXT,
    push_token TEXT,
    last_seen_ms BIGINT,
    wiped_at_ms BIGINT
);

