-- Login attempts are counted per subject before the password is checked: a login name
-- ("name:<normalized>") or a device cookie ("device:<id>"). Times are Unix milliseconds, so
-- that one statement can compute a lock's end on either database.
DROP TABLE login_throttle;
CREATE TABLE login_attempts (
    subject      TEXT PRIMARY KEY NOT NULL,
    -- attempts since the last success, each counted as a failure until it succeeds
    failures     INTEGER NOT NULL,
    locked_until INTEGER,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX login_attempts_updated_at_idx ON login_attempts (updated_at);

-- Client addresses no longer exempt anyone from a lock (device cookies do).
DROP INDEX sessions_ip_idx;

-- Expired sessions (and with them their refresh-token hashes) are deleted by age.
CREATE INDEX sessions_idle_expires_at_idx ON sessions (idle_expires_at);

-- Secrets sealed under AUTHD_MASTER_KEY (an AEAD; the row's key is the associated data).
ALTER TABLE signing_keys ADD COLUMN sealed BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE server_secrets ADD COLUMN sealed BOOLEAN NOT NULL DEFAULT FALSE;
