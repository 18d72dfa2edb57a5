-- Administration tables, SQLite. Times are Unix milliseconds.

CREATE TABLE admin_orgs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    archive_key TEXT,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE admin_accounts (
    id TEXT PRIMARY KEY,
    org TEXT NOT NULL REFERENCES admin_orgs (id),
    login TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    totp_secret BLOB,
    totp_last_step INTEGER,
    disabled_at_ms INTEGER,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE admin_sessions (
    token_hash BLOB PRIMARY KEY,
    account TEXT NOT NULL REFERENCES admin_accounts (id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    last_used_ms INTEGER NOT NULL
);
CREATE INDEX admin_sessions_account ON admin_sessions (account);

CREATE TABLE admin_api_keys (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL REFERENCES admin_accounts (id) ON DELETE CASCADE,
    secret_hash BLOB NOT NULL,
    label TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
);

CREATE TABLE admin_users (
    user_id TEXT PRIMARY KEY,
    org TEXT NOT NULL REFERENCES admin_orgs (id),
    display_name TEXT NOT NULL,
    department TEXT,
    status TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE INDEX admin_users_org ON admin_users (org, user_id);

CREATE TABLE admin_departments (
    org TEXT NOT NULL,
    name TEXT NOT NULL,
    closed INTEGER NOT NULL,
    PRIMARY KEY (org, name)
);

-- One row per unordered pair (dept_a < dept_b; '' is "no department").
CREATE TABLE admin_barriers (
    org TEXT NOT NULL,
    dept_a TEXT NOT NULL,
    dept_b TEXT NOT NULL,
    messages INTEGER NOT NULL,
    groups_ INTEGER NOT NULL,
    files INTEGER NOT NULL,
    PRIMARY KEY (org, dept_a, dept_b)
);

CREATE TABLE admin_allow_list (
    org TEXT NOT NULL,
    entry TEXT NOT NULL,
    PRIMARY KEY (org, entry)
);

CREATE TABLE admin_restrictions (
    org TEXT NOT NULL,
    scope TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    settings TEXT NOT NULL,
    PRIMARY KEY (org, scope, scope_id)
);

-- Counts only, never content.
CREATE TABLE admin_activity (
    user_id TEXT NOT NULL,
    day TEXT NOT NULL,
    sent INTEGER NOT NULL DEFAULT 0,
    received INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, day)
);

CREATE TABLE admin_wipes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org TEXT NOT NULL,
    user_id TEXT NOT NULL,
    device TEXT NOT NULL,
    command_id INTEGER NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at_ms INTEGER NOT NULL
);
CREATE INDEX admin_wipes_org ON admin_wipes (org, id);

CREATE TABLE admin_archives (
    id TEXT PRIMARY KEY,
    org TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    users TEXT NOT NULL,
    from_ms INTEGER NOT NULL,
    to_ms INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL
);

CREATE TABLE admin_archive_devices (
    archive TEXT NOT NULL REFERENCES admin_archives (id),
    device TEXT NOT NULL,
    user_id TEXT NOT NULL,
    command_id INTEGER NOT NULL,
    PRIMARY KEY (archive, device)
);

-- Sealed archive parts, copied from the relay's attachment store once the
-- device's receipt names them: only the archive key opens them.
CREATE TABLE admin_archive_parts (
    archive TEXT NOT NULL REFERENCES admin_archives (id),
    device TEXT NOT NULL,
    blob_id TEXT NOT NULL,
    bytes BLOB NOT NULL,
    PRIMARY KEY (archive, device, blob_id)
);

CREATE TABLE admin_broadcasts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org TEXT NOT NULL,
    sent_by TEXT NOT NULL,
    scope TEXT NOT NULL,
    devices INTEGER NOT NULL,
    sent_at_ms INTEGER NOT NULL
);
