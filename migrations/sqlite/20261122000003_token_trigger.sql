-- A session row carries the hash of its current refresh token, and these triggers record
-- each new one in refresh_tokens within the same statement. Opening a session and rotating
-- its token are then each one atomic statement: one round trip, no explicit transaction.
ALTER TABLE sessions ADD COLUMN token_hash BLOB;

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
