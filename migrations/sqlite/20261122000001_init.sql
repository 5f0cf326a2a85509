-- authd schema, SQLite dialect. Ids are UUIDs stored as 16-byte blobs; times are RFC 3339 text.

CREATE TABLE users (
    id                  BLOB PRIMARY KEY NOT NULL,
    username            TEXT NOT NULL,
    -- lower-cased copies make usernames and e-mails unique without regard to case
    username_normalized TEXT NOT NULL,
    email               TEXT,
    email_normalized    TEXT,
    full_name           TEXT,
    password_hash       TEXT NOT NULL,
    created_at          TEXT NOT NULL,
    disabled_at         TEXT,
    CONSTRAINT users_username_key UNIQUE (username_normalized),
    CONSTRAINT users_email_key UNIQUE (email_normalized)
);

-- One row per login: the chain of refresh tokens that descends from it.
CREATE TABLE sessions (
    id              BLOB PRIMARY KEY NOT NULL,
    user_id         BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- generation of the session's current refresh token; rotation bumps it conditionally
    generation      INTEGER NOT NULL,
    created_at      TEXT NOT NULL,
    last_used_at    TEXT NOT NULL,
    rotated_at      TEXT NOT NULL,
    idle_expires_at TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    revoked_at      TEXT,
    revoke_reason   TEXT,
    ip              TEXT,
    user_agent      TEXT
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

-- Every refresh token ever issued, as a SHA-256 hash, so that a rotated one is recognised.
CREATE TABLE refresh_tokens (
    token_hash BLOB PRIMARY KEY NOT NULL,
    session_id BLOB NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    generation INTEGER NOT NULL,
    issued_at  TEXT NOT NULL
);
CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);

-- Access-token signing keys (Ed25519). At most one is active (signs); the others still verify.
CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY NOT NULL,
    algorithm   TEXT NOT NULL,
    private_key BLOB NOT NULL,
    public_key  BLOB NOT NULL,
    active      BOOLEAN NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (active) WHERE active;

-- Server-side random keys shared by every replica (e.g. the refresh-token derivation key).
CREATE TABLE server_secrets (
    name       TEXT PRIMARY KEY NOT NULL,
    secret     BLOB NOT NULL,
    created_at TEXT NOT NULL
);
