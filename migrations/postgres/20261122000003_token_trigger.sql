-- A session row carries the hash of its current refresh token, and these triggers record
-- each new one in refresh_tokens within the same statement. Opening a session and rotating
-- its token are then each one atomic statement: one round trip, no explicit transaction.
ALTER TABLE sessions ADD COLUMN token_hash BYTEA;

CREATE FUNCTION sessions_record_token() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO refresh_tokens (token_hash, session_id, generation, issued_at)
    VALUES (NEW.token_hash, NEW.id, NEW.generation, NEW.rotated_at);
    RETURN NULL;
END
$$;

CREATE TRIGGER sessions_record_first_token AFTER INSERT ON sessions
FOR EACH ROW WHEN (NEW.token_hash IS NOT NULL)
EXECUTE FUNCTION sessions_record_token();

CREATE TRIGGER sessions_record_rotated_token AFTER UPDATE OF generation ON sessions
FOR EACH ROW WHEN (NEW.token_hash IS NOT NULL AND NEW.generation <> OLD.generation)
EXECUTE FUNCTION sessions_record_token();
