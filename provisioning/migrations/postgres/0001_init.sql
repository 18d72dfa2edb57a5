-- provisioning, PostgreSQL: initial schema. Times are Unix seconds.
CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    secret_hash BYTEA NOT NULL,
    binding     TEXT NOT NULL,
    bound_to    TEXT NOT NULL,
    max_uses    BIGINT NOT NULL,
    uses        BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    label       TEXT NOT NULL
);

CREATE TABLE certificates (
    serial            TEXT PRIMARY KEY,
    device_id         TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    issuer_generation BIGINT NOT NULL,
    not_before        BIGINT NOT NULL,
    not_after         BIGINT NOT NULL,
    der               BYTEA NOT NULL,
    identity_key      BYTEA NOT NULL,
    platform          TEXT NOT NULL,
    device_name       TEXT NOT NULL,
    token_id          TEXT,
    renewed_from      TEXT,
    issued_at         BIGINT NOT NULL
);
CREATE INDEX certificates_device ON certificates (device_id);
CREATE INDEX certificates_user ON certificates (user_id);

CREATE TABLE revocations (
    serial            TEXT PRIMARY KEY,
    issuer_generation BIGINT NOT NULL,
    revoked_at        BIGINT NOT NULL,
    not_after         BIGINT NOT NULL,
    reason            TEXT NOT NULL
);

CREATE TABLE enrollment_attempts (
    id        BIGSERIAL PRIMARY KEY,
    at        BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    token_id  TEXT,
    user_id   TEXT,
    device_id TEXT,
    serial    TEXT
);

CREATE TABLE directory_users (
    user_id    TEXT PRIMARY KEY,
    department TEXT,
    status     TEXT NOT NULL
);

CREATE TABLE allow_list (
    entry TEXT PRIMARY KEY
);
