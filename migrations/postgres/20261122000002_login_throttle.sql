-- Consecutive failed logins per login name (existing or not), shared by every replica.
CREATE TABLE login_throttle (
    username_normalized TEXT PRIMARY KEY,
    failures            BIGINT NOT NULL,
    locked_until        TIMESTAMPTZ,
    updated_at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX login_throttle_updated_at_idx ON login_throttle (updated_at);
CREATE INDEX sessions_ip_idx ON sessions (ip);
