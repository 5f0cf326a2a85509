-- The account's audit trail. Ids are UUIDv7: ordered by time, so that a page of events is a
-- range of ids. Each event is written in the transaction of the change it records.
CREATE TABLE events (
    id         UUID PRIMARY KEY,
    user_id    UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    type       TEXT NOT NULL,
    at         TIMESTAMPTZ NOT NULL,
    ip         TEXT,
    user_agent TEXT
);
CREATE INDEX events_user_id_idx ON events (user_id, id);
CREATE INDEX events_at_idx ON events (at);
