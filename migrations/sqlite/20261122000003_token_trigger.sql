-- A session row carries the hash of its current refresh token, and these triggers record
-- each new one in refresh_tokens within the same statement. Opening a session and rotating
-- its token are then each one atomic statement: one round trip, no explicit transaction.
ALTER TABLE sessions ADD COLUMN token_hash BLOB;

-- A refresh token is found by its hash: key the table by it directly (no rowid), so that
-- each rotation writes one B-tree fewer.
CREATE TABLE refresh_tokens_by_hash (
    token_hash BLOB PRIMARY KEY NOT NULL,
    session_id BLOB NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    generation INTEGER NOT NULL,
    issued_at  TEXT NOT NULL
) WITHOUT ROWID;
INSERT INTO refresh_tokens_by_hash (token_hash, session_id, generation, issued_at)
SELECT token_hash, session_id, generation, issued_at FROM refresh_tokens;
DROP TABLE refresh_tokens;
ALTER TABLE refresh_tokens_by_hash RENAME TO refresh_tokens;
CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);

CREATE TRIGGER sessions_record_first_token AFTER INSERT ON sessions
WHEN NEW.token_hash IS NOT NULL
BEGIN
    INSERT INTO refresh_tokens (token_hash, session_id, generation, issued_at)
    VALUES (NEW.token_hash, NEW.id, NEW.generation, NEW.rotated_at);
END;

CREATE TRIGGER sessions_record_rotated_token AFTER UPDATE OF generation ON sessions
WHEN NEW.token_hash IS NOT NULL AND NEW.generation <> OLD.generation
BEGIN
    INSERT INTO refresh_tokens (token_hash, session_id, generation, issued_at)
    VALUES (NEW.token_hash, NEW.id, NEW.generation, NEW.rotated_at);
END;
