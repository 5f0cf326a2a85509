-- The TOTP second factor: at most one per user. `secret` is sealed under AUTHD_MASTER_KEY
-- when one is set (row "totp:<user id>"). A factor with no confirmed_at is an enrolment not
-- yet confirmed, and does not protect logins. last_step is the last time step accepted,
-- only ever advanced by a compare-and-set, so that each code is accepted at most once.
CREATE TABLE totp_factors (
    user_id      UUID PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret       BYTEA NOT NULL,
    sealed       BOOLEAN NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    confirmed_at TIMESTAMPTZ,
    last_step    BIGINT NOT NULL DEFAULT 0
);

-- Single-use recovery codes, stored as SHA-256 hashes.
CREATE TABLE recovery_codes (
    user_id   UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash BYTEA NOT NULL,
    used_at   TIMESTAMPTZ,
    PRIMARY KEY (user_id, code_hash)
);

-- Logins whose password was right, waiting for their second factor: the mfa_token's hash,
-- the throttle subject the login was counted on, and the device cookie it came with.
CREATE TABLE mfa_challenges (
    token_hash BYTEA PRIMARY KEY,
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    subject    TEXT NOT NULL,
    device_id  UUID,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX mfa_challenges_expires_at_idx ON mfa_challenges (expires_at);
CREATE INDEX mfa_challenges_user_id_idx ON mfa_challenges (user_id);
